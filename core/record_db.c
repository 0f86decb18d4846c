/* The decision record's store: one SQLite file in WAL mode (readers never
 * wait for the writer, a crash at any instant leaves every committed
 * batch intact), its schema, and retention by age and size. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "record_int.h"

/* event: one row per SMTP transaction, delivery attempt or login. Its id
 * is ts * PT_RECORD_ID_SCALE + a sequence number, so the table itself is
 * in time order: time windows and "newest first" need no index. Its
 * addresses (sender, recipients with the reply each got, the original
 * recipient of a delivery) are in the row itself (rcpts, see
 * record_int.h). term: what `postern why` searches by besides time and
 * queue id -- addresses (whole and by domain), client, login user,
 * refusals -- as posting lists: one row per term per batch the writer
 * wrote, listing (JSON array) the events of the batch that have it. Under
 * load a batch holds many events with the same client, sender domain or
 * recipient: one row serves them all, which is most of what makes the
 * record cheap to write (each b-tree row costs the writer a microsecond
 * or so). last: the newest event listed; rows in its order, so that
 * retention drops a posting row once its newest event is gone. A delivery's
 * Message-ID is its transaction's: only transactions are indexed by it.
 * Most deliveries have no row of their own: they arrive in the batch of
 * their transaction and are folded into its row (dlv, record_int.h). */
static const char schema[] =
	"CREATE TABLE event("
	" id INTEGER PRIMARY KEY,"
	" ts INTEGER NOT NULL,"          /* milliseconds since the epoch */
	" kind TEXT NOT NULL,"           /* smtp, delivery, login */
	" outcome TEXT NOT NULL,"
	" service TEXT, queue_id TEXT, message_id TEXT,"
	" client TEXT, client_name TEXT, helo TEXT,"
	" sender TEXT, user TEXT,"
	" stage TEXT, rule TEXT, reply TEXT,"
	" relay TEXT, dsn TEXT, size INTEGER, delay REAL,"
	" refused INTEGER NOT NULL DEFAULT 0,"
	" trace TEXT, rcpts TEXT,"
	" dlv TEXT);"                    /* deliveries folded into a transaction's row (record_int.h) */
	"CREATE INDEX event_queue ON event(queue_id) WHERE queue_id IS NOT NULL;"
	"CREATE INDEX event_msgid ON event(message_id) WHERE message_id IS NOT NULL AND kind = 'smtp';"
	"CREATE TABLE term(last INTEGER NOT NULL, t TEXT NOT NULL, evs TEXT NOT NULL, PRIMARY KEY(last, t))"
	" WITHOUT ROWID;"
	"CREATE INDEX term_t ON term(t);";

static int
exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -1;
}

static long long
pragma_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	long long v = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* The file exists with mode 0600 before SQLite sees it: SQLite gives its
 * -wal and -shm files the database's mode, so none of them is ever
 * readable by others, whatever the umask. */
static int
make_file(const char *path, char *err, size_t errlen)
{
	char dir[1024];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
			return -1;
		}
	}
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && (st.st_mode & 077) && fchmod(fd, st.st_mode & 0700) != 0) {
		snprintf(err, errlen, "cannot chmod %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

sqlite3 *
pt_record_db_open(const char *path, int create, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	if (create && make_file(path, err, errlen) != 0)
		return NULL;
	int flags = (create ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY) | SQLITE_OPEN_NOMUTEX;
	if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	long long version = pragma_int(db, "PRAGMA user_version");
	if (!create) {
		if (version < PT_RECORD_SCHEMA_OLDEST || version > PT_RECORD_SCHEMA) {
			snprintf(err, errlen, "%s: not a decision record of this version (schema %lld, want %d to %d)",
			         path, version, PT_RECORD_SCHEMA_OLDEST, PT_RECORD_SCHEMA);
			sqlite3_close(db);
			return NULL;
		}
		return db;
	}
	if (version == 1) {
		/* Schema 1 (an index per field, an addr table) was never
		 * released: it is set aside whole, as decisions.db.schema1
		 * (readable with sqlite3), and a new record begins. */
		sqlite3_close(db);
		char from[1100], to[1100];
		for (int i = 0; i < 3; i++) {
			const char *suffix = i == 0 ? "" : i == 1 ? "-wal" : "-shm";
			snprintf(from, sizeof from, "%s%s", path, suffix);
			snprintf(to, sizeof to, "%s.schema1%s", path, suffix);
			if (rename(from, to) != 0 && errno != ENOENT) {
				snprintf(err, errlen, "%s: schema 1, cannot move it to %s: %s", path, to, strerror(errno));
				return NULL;
			}
		}
		return pt_record_db_open(path, create, err, errlen);
	}
	/* auto_vacuum must be chosen before the first table: size retention
	 * gives freed pages back to the file system (incremental_vacuum). */
	if ((version == 0 && exec(db, "PRAGMA page_size=16384; PRAGMA auto_vacuum=INCREMENTAL", err, errlen) != 0) ||
	    exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=33554432;"
	         " PRAGMA wal_autocheckpoint=1024; PRAGMA cache_size=-16384", 
	         err, errlen) != 0)
		goto fail;
	if (version == 0) {
		/* Two workers (a reload) may race here: the exclusive
		 * transaction makes one create and the other see it made. */
		if (exec(db, "BEGIN IMMEDIATE", err, errlen) != 0)
			goto fail;
		version = pragma_int(db, "PRAGMA user_version");
		if (version == 0) {
			char sql[64];
			snprintf(sql, sizeof sql, "PRAGMA user_version=%d", PT_RECORD_SCHEMA);
			if (exec(db, schema, err, errlen) != 0 || exec(db, sql, err, errlen) != 0) {
				sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
				goto fail;
			}
			version = PT_RECORD_SCHEMA;
		}
		if (exec(db, "COMMIT", err, errlen) != 0)
			goto fail;
	}
	if (version == 2) {
		/* Schema 2 lacks only event.dlv: the column is added (SQLite
		 * changes the table's definition, no row is rewritten; the old
		 * rows read NULL there, one row per event as before). Under the
		 * write lock, as a reload's second worker may be here too. */
		if (exec(db, "BEGIN IMMEDIATE", err, errlen) != 0)
			goto fail;
		version = pragma_int(db, "PRAGMA user_version");
		if (version == 2) {
			char sql[64];
			snprintf(sql, sizeof sql, "PRAGMA user_version=%d", PT_RECORD_SCHEMA);
			if (exec(db, "ALTER TABLE event ADD COLUMN dlv TEXT", err, errlen) != 0 ||
			    exec(db, sql, err, errlen) != 0) {
				sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
				goto fail;
			}
			version = PT_RECORD_SCHEMA;
		}
		if (exec(db, "COMMIT", err, errlen) != 0)
			goto fail;
	}
	if (version != PT_RECORD_SCHEMA) {
		snprintf(err, errlen, "%s: schema version %lld, this postern writes %d (move the file away)", path,
		         version, PT_RECORD_SCHEMA);
		goto fail;
	}
	return db;
fail:
	if (strncmp(err, path, strlen(path)) != 0) {
		char tmp[512];
		snprintf(tmp, sizeof tmp, "%s", err);
		snprintf(err, errlen, "%s: %s", path, tmp);
	}
	sqlite3_close(db);
	return NULL;
}

int
pt_record_term(char *out, size_t len, char role, const char *local, const char *domain)
{
	/* By hand: the writer makes several per event, snprintf is slow. */
	size_t ll = local ? strlen(local) : 0, dl = strlen(domain), n = local ? ll + dl + 3 : dl + 2;
	if (n >= len)
		return -1;
	char *p = out;
	*p++ = role;
	if (local) {
		*p++ = '=';
		memcpy(p, local, ll);
		p += ll;
	}
	*p++ = '@';
	memcpy(p, domain, dl + 1);
	return (int)n;
}

char
pt_record_role_letter(int role)
{
	return role == PT_ADDR_SENDER ? 's' : role == PT_ADDR_ORIG ? 'o' : 'r';
}

void
pt_record_addr_terms(int role, const char *address, char out[2][600])
{
	char local[256], domain[256];
	char r = pt_record_role_letter(role);
	pt_record_split(address, local, sizeof local, domain, sizeof domain);
	if (pt_record_term(out[0], 600, r, local, domain) <= 0)
		out[0][0] = '\0';
	if (pt_record_term(out[1], 600, r, NULL, domain) <= 0)
		out[1][0] = '\0';
}

void
pt_record_split(const char *addr, char *local, size_t llen, char *domain, size_t dlen)
{
	const char *a = addr ? addr : "";
	size_t n = strlen(a);
	if (n >= 2 && a[0] == '<' && a[n - 1] == '>') {
		a++;
		n -= 2;
	}
	const char *at = NULL;
	for (size_t i = 0; i < n; i++)
		if (a[i] == '@')
			at = a + i;
	size_t ln = at ? (size_t)(at - a) : n;
	size_t dn = at ? n - ln - 1 : 0;
	if (ln >= llen)
		ln = llen - 1;
	if (dn >= dlen)
		dn = dlen - 1;
	for (size_t i = 0; i < ln; i++)
		local[i] = (char)tolower((unsigned char)a[i]);
	local[ln] = '\0';
	for (size_t i = 0; i < dn; i++)
		domain[i] = (char)tolower((unsigned char)at[1 + i]);
	domain[dn] = '\0';
}

/* Delete the oldest `chunk` rows (older than before_id, or any), and
 * the posting rows whose events are all gone; one transaction per chunk,
 * so a large prune never holds the write lock for long. A row's folded
 * deliveries go with it (by age: at most PT_RECORD_FOLD_MS early). Returns
 * the number of events deleted (rows and the deliveries folded in them),
 * the rows in *rows. */
static long
delete_chunk(sqlite3 *db, long long before_id, int chunk, long *rows)
{
	char sql[512];
	sqlite3_stmt *e = NULL, *t = NULL;
	long n = -1;
	snprintf(sql, sizeof sql, "DELETE FROM event WHERE id IN (SELECT id FROM event %s ORDER BY id LIMIT %d)"
	         " RETURNING length(dlv) - length(replace(dlv, char(28), '')) + 1",
	         before_id >= 0 ? "WHERE id < ?1" : "", chunk);
	if (sqlite3_prepare_v2(db, sql, -1, &e, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "DELETE FROM term WHERE last < coalesce((SELECT min(id) FROM event), 1 << 62)",
	                       -1, &t, NULL) != SQLITE_OK)
		goto out;
	if (before_id >= 0)
		sqlite3_bind_int64(e, 1, before_id);
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	long events = 0;
	int rc;
	*rows = 0;
	while ((rc = sqlite3_step(e)) == SQLITE_ROW) {
		events += 1 + (sqlite3_column_type(e, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(e, 0));
		++*rows;
	}
	if (rc != SQLITE_DONE) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		goto out;
	}
	n = events;
	if (sqlite3_step(t) != SQLITE_DONE || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		n = -1;
	}
out:
	sqlite3_finalize(e);
	sqlite3_finalize(t);
	return n;
}

static long long
used_bytes(sqlite3 *db)
{
	long long pages = pragma_int(db, "PRAGMA page_count"), freel = pragma_int(db, "PRAGMA freelist_count"),
	          size = pragma_int(db, "PRAGMA page_size");
	if (pages < 0 || freel < 0 || size < 0)
		return -1;
	return (pages - freel) * size;
}

long
pt_record_prune(sqlite3 *db, long long max_age, long long max_size)
{
	long total = 0, n, rows;
	if (max_age > 0) {
		long long cutoff = ((long long)time(NULL) * 1000 - max_age * 1000) * PT_RECORD_ID_SCALE;
		while ((n = delete_chunk(db, cutoff, 5000, &rows)) > 0)
			total += n;
	}
	if (max_size > 0) {
		/* The oldest rows, by what each row freed in the chunk before
		 * (count(*) would read the whole table: no index covers every
		 * row); 64 to learn it. A chunk frees only the pages it
		 * empties, so the estimate is low: three quarters of what it
		 * says at a time, till under the limit. */
		long long used, per_row = 0, want = 64;
		while ((used = used_bytes(db)) > max_size) {
			if (per_row > 0)
				want = (used - max_size) / per_row * 3 / 4 + 1;
			if (want > 20000)
				want = 20000;
			if ((n = delete_chunk(db, -1, (int)want, &rows)) <= 0)
				break;
			long long after = used_bytes(db);
			if (after >= 0 && after < used)
				per_row = (used - after) / rows + 1;
			else if (per_row == 0)
				want *= 2;  /* no page freed yet */
			total += n;
		}
	}
	if (total > 0)
		sqlite3_exec(db, "PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
	return total;
}
