/* libFuzzer target: how `postern why` reads the decision record's rows
 * (core/why_cli.c, compiled in here for its static functions): a
 * transaction row whose rcpts and dlv (its folded deliveries,
 * record_int.h) come from the input, beside a plain row, asked the
 * questions that parse them -- --to in its forms (re-matched per event),
 * time windows cutting the folded deliveries, --limit through the reorder
 * heap, stories and --json. Invariant: no crash, no leak, no undefined
 * behaviour (ASan, UBSan); the store is trusted less than that. */
#include <fcntl.h>

#include "why_cli.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char ddl[] =
	"CREATE TABLE event(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL, outcome TEXT NOT NULL,"
	" service TEXT, queue_id TEXT, message_id TEXT, client TEXT, client_name TEXT, helo TEXT, sender TEXT,"
	" user TEXT, stage TEXT, rule TEXT, reply TEXT, relay TEXT, dsn TEXT, size INTEGER, delay REAL,"
	" refused INTEGER NOT NULL DEFAULT 0, trace TEXT, rcpts TEXT, dlv TEXT);"
	"CREATE TABLE term(last INTEGER NOT NULL, t TEXT NOT NULL, evs TEXT NOT NULL, PRIMARY KEY(last, t))"
	" WITHOUT ROWID;"
	"PRAGMA user_version=3;";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static sqlite3 *db;
	static int null_fd, err_fd;
	if (!db) {
		/* The answers go nowhere; so do why's own complaints (stderr is
		 * libFuzzer's and the sanitizers' the rest of the time). */
		null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
		err_fd = dup(2);
		if (!freopen("/dev/null", "w", stdout) || null_fd < 0 || err_fd < 0 ||
		    sqlite3_open(":memory:", &db) != SQLITE_OK || sqlite3_exec(db, ddl, NULL, NULL, NULL) != SQLITE_OK)
			abort();
	}
	if (size < 1)
		return 0;
	/* The first byte picks the question; the rest is rcpts NUL dlv. */
	unsigned q = data[0];
	const char *text = (const char *)data + 1;
	size_t len = size - 1, cut = strnlen(text, len);
	char *rcpts = strndup(text, cut);
	char *dlv = strndup(cut < len ? text + cut + 1 : "", cut < len ? len - cut - 1 : 0);
	if (!rcpts || !dlv)
		abort();
	sqlite3_exec(db, "DELETE FROM event; DELETE FROM term", NULL, NULL, NULL);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "INSERT INTO event(id, ts, kind, outcome, queue_id, message_id, sender, rcpts, dlv)"
	                       " VALUES(1000 * 4096, 1000, 'smtp', 'accepted', 'ABCDEF0123', '<m@x>', 'bob@x', ?1, ?2),"
	                       " (1001 * 4096, 1001, 'smtp', 'accepted', 'ABCDEF0124', '<n@x>', 'bob@x', NULL, NULL)",
	                       -1, &st, NULL) != SQLITE_OK)
		abort();
	sqlite3_bind_text(st, 1, rcpts, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, dlv, -1, SQLITE_STATIC);
	sqlite3_step(st);
	sqlite3_finalize(st);
	sqlite3_exec(db, "INSERT INTO term(t, last, evs) VALUES('s=bob@x', 4100096, '[4096000,4100096]'),"
	             " ('r=alice@x', 4096000, '[4096000]'), ('r@x', 4096000, '[4096000]')", NULL, NULL, NULL);
	static const char *const to[] = { NULL, "alice@x", "alice", "@x", "<>" };
	struct why_opts o = { .since = -1, .until = -1, .limit = q & 4 ? 1 : 50, .json = q & 8 };
	o.to = to[(q >> 4) % 5];
	if (q & 1)
		o.since = 1001;
	if (q & 2)
		o.until = 1005;
	if (!o.to && !(q & 3))
		o.from = "bob";
	fflush(stderr);
	dup2(null_fd, 2);
	run_query(db, &o);
	fflush(stderr);
	dup2(err_fd, 2);
	free(rcpts);
	free(dlv);
	return 0;
}
