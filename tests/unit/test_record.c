/* Unit tests for the decision record: the writer thread takes events from
 * the three calls and writes them in batches (a delivery written before
 * its transaction gets the sender afterwards, and one written after gets
 * it at once), deliveries in their transaction's batch are folded into
 * its row (not beyond the fold cap), the store is mode 0600 in a 0700
 * directory, no password field exists, address splitting, retention by
 * age and by size, and a schema-2 store is read and migrated. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "config_int.h"
#include "postern/record.h"
#include "record_int.h"
#include "runtime.h"

static char dir[256], path[400];

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/pt-record-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/rec/decisions.db", dir);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct pt_config *
conf(const char *extra)
{
	char text[1200];
	snprintf(text, sizeof text, "queue_directory = %s\ndecision_log_file = %s\n%s", dir, path, extra);
	struct pt_config *c = pt_runtime_load_text("test.conf", text, strlen(text));
	assert_non_null(c);
	assert_int_equal(pt_config_error_count(c), 0);
	return c;
}

static long long
scalar(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	long long v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
text_is(sqlite3 *db, const char *sql, const char *want)
{
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), want);
	sqlite3_finalize(st);
}

static long long
ms_now(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void
test_events_written(void **state)
{
	(void)state;
	struct pt_config *c = conf("");
	/* Not open: calls do nothing. */
	pt_record_login("imap", "nobody-yet", "127.0.0.1", 1, NULL);
	assert_int_equal(pt_record_open(c), 0);
	struct pt_status sent = { 0, "2.0.0", "delivered to mailbox" };
	/* The delivery first (local delivery can beat the 250). */
	pt_record_delivery("local", "ABCDEF0123", "alice@example.com", "sysadmin@example.com", "local", 0.5, &sent);
	struct pt_record_rcpt rc[2] = { { "sysadmin@example.com", "250 2.1.5 Ok", "permit_mynetworks" },
		{ "x@other.test", "554 5.7.1 <x@other.test>: Relay access denied", "reject_unauth_destination" } };
	struct pt_record_smtp t = { .service = "smtpd", .outcome = "accepted", .queue_id = "ABCDEF0123",
		.message_id = "<m1@test>", .client_address = "192.0.2.1", .client_name = "unknown", .helo = "h.test",
		.sender = "Bob@Example.COM", .rcpt = rc, .nrcpt = 2, .stage = "END-OF-MESSAGE",
		.reply = "250 2.0.0 Ok: queued as ABCDEF0123", .trace = "RCPT <x>:\n  a -> b\n", .size = 123,
		.refused = 1, .started_ms = ms_now() - 1000 };
	pt_record_smtp(&t);
	pt_record_delivery("local", "ABCDEF0123", "bob@example.com", "sysadmin@example.com", "local", 0.6, &sent);
	pt_record_login("pop3", "alice", "127.0.0.1", 0, "password mismatch");
	pt_record_close();
	pt_config_free(c);

	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	char d[400];
	snprintf(d, sizeof d, "%s/rec", dir);
	assert_int_equal(stat(d, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	char err[600];
	sqlite3 *db = pt_record_db_open(path, 0, err, sizeof err);
	assert_non_null(db);
	/* One batch: both deliveries (one written before the transaction)
	 * are folded into its row, in the order they came. */
	assert_int_equal(scalar(db, "SELECT count(*) FROM event"), 2);
	assert_int_equal(scalar(db, "SELECT count(*) FROM event WHERE kind = 'smtp' AND dlv LIKE"
	                            " '%alice@example.com%' || char(28) || '%bob@example.com%'"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM event WHERE instr(dlv, char(31) || '=delivered'"
	                            " || char(31) || '=local' || char(31) || '=local' || char(31) || '=2.0.0' || char(31)"
	                            " || '=delivered to mailbox' || char(31) || '2' || char(31) || 'alice@example.com'"
	                            " || char(31) || char(31) || char(30) || '3' || char(31) || 'sysadmin@example.com')"),
	                 1);
	/* The deliveries' recipients list the row; the sender once (lower-cased). */
	assert_int_equal(scalar(db, "SELECT count(DISTINCT j.value) FROM term, json_each(term.evs) j"
	                            " WHERE t IN ('s=bob@example.com', 's@example.com', 'r=bob@example.com',"
	                            " 'r=alice@example.com', 'o=sysadmin@example.com', 'r=sysadmin@example.com')"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM term WHERE t = 'o=sysadmin@example.com'"), 1);
	/* A folded delivery's id would have been its own: after the row's, within the cap. */
	assert_int_equal(scalar(db, "SELECT count(*) FROM event WHERE kind = 'smtp' AND"
	                            " CAST(substr(dlv, 1, instr(dlv, char(31)) - 1) AS INTEGER) / 4096 - ts"
	                            " BETWEEN 900 AND 10000"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM event WHERE rcpts LIKE '%2' || char(31) || 'x@other.test'"
	                            " || char(31) || '%' || char(31) || 'reject_unauth_destination%'"), 1);
	/* Event ids are in time order. */
	assert_int_equal(scalar(db, "SELECT count(*) FROM event WHERE id / 4096 != ts"), 0);
	text_is(db, "SELECT reply FROM event WHERE kind = 'login'", "password mismatch");
	text_is(db, "SELECT outcome FROM event WHERE kind = 'login'", "failed");
	assert_int_equal(scalar(db, "SELECT size FROM event WHERE kind = 'smtp'"), 123);
	assert_int_equal(scalar(db, "SELECT count(*) FROM pragma_table_info('event') WHERE name LIKE '%pass%'"), 0);
	sqlite3_close(db);
}

static void
test_split(void **state)
{
	(void)state;
	char l[64], d[64];
	pt_record_split("<Alice@Example.COM>", l, sizeof l, d, sizeof d);
	assert_string_equal(l, "alice");
	assert_string_equal(d, "example.com");
	pt_record_split("sysadmin@", l, sizeof l, d, sizeof d);
	assert_string_equal(l, "sysadmin");
	assert_string_equal(d, "");
	pt_record_split("@dom.test", l, sizeof l, d, sizeof d);
	assert_string_equal(l, "");
	assert_string_equal(d, "dom.test");
	pt_record_split("\"a@b\"@c.test", l, sizeof l, d, sizeof d);
	assert_string_equal(l, "\"a@b\"");
	assert_string_equal(d, "c.test");
	pt_record_split("postmaster", l, 4, d, sizeof d);
	assert_string_equal(l, "pos");
	assert_string_equal(d, "");
}

static void
test_message_id(void **state)
{
	(void)state;
	char mid[64];
	const char *m = "Received: x\r\nMessage-Id:\r\n  <a@b>  \r\nSubject: s\r\n\r\nMessage-ID: <no@body>\r\n";
	pt_record_message_id(m, strlen(m), mid, sizeof mid);
	assert_string_equal(mid, "<a@b>");
	pt_record_message_id("Subject: x\n\nbody\n", 17, mid, sizeof mid);
	assert_string_equal(mid, "");
}

static void
fill(sqlite3 *db, int n, long long ts, int trace)
{
	char *big = malloc((size_t)trace + 1);
	assert_non_null(big);
	memset(big, 'x', (size_t)trace);
	big[trace] = '\0';
	sqlite3_stmt *e, *a;
	assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO event(id, ts, kind, outcome, trace) VALUES(?1 * 4096, ?1,"
	                                    " 'smtp', 'accepted', ?2)", -1, &e, NULL), SQLITE_OK);
	/* A posting row per event, as a batch of one writes it. */
	assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO term(t, last, evs) VALUES('s=a@b', ?1, json_array(?1))",
	                                    -1, &a, NULL), SQLITE_OK);
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	for (int i = 0; i < n; i++) {
		sqlite3_reset(e);
		sqlite3_bind_int64(e, 1, ts + i);
		sqlite3_bind_text(e, 2, big, -1, SQLITE_STATIC);
		assert_int_equal(sqlite3_step(e), SQLITE_DONE);
		sqlite3_reset(a);
		sqlite3_bind_int64(a, 1, sqlite3_last_insert_rowid(db));
		assert_int_equal(sqlite3_step(a), SQLITE_DONE);
	}
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_finalize(e);
	sqlite3_finalize(a);
	free(big);
}

static void
test_retention(void **state)
{
	(void)state;
	char err[600];
	unlink(path);
	sqlite3 *db = pt_record_db_open(path, 1, err, sizeof err);
	assert_non_null(db);
	long long now = (long long)time(NULL) * 1000;
	fill(db, 10, now - 40LL * 86400 * 1000, 10);
	fill(db, 5, now - 1000, 10);
	assert_int_equal(pt_record_prune(db, 30 * 86400, 0), 10);
	assert_int_equal(scalar(db, "SELECT count(*) FROM event"), 5);
	assert_int_equal(scalar(db, "SELECT count(*) FROM term"), 5);
	/* A row with two deliveries folded in is three events. */
	char sql[400];
	snprintf(sql, sizeof sql, "INSERT INTO event(id, ts, kind, outcome, dlv) VALUES(%lld * 4096, %lld, 'smtp',"
	         " 'accepted', 'd1' || char(28) || 'd2')", now - 40LL * 86400 * 1000, now - 40LL * 86400 * 1000);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(pt_record_prune(db, 30 * 86400, 0), 3);
	/* By size: the oldest go until the used pages fit. */
	fill(db, 2000, now - 500000, 2000);
	fill(db, 3, now, 10);
	long pruned = pt_record_prune(db, 0, 512 * 1024);
	assert_true(pruned > 0);
	long long used = (scalar(db, "PRAGMA page_count") - scalar(db, "PRAGMA freelist_count")) *
	                 scalar(db, "PRAGMA page_size");
	assert_true(used <= 512 * 1024);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM event WHERE ts >= %lld", now);
	assert_int_equal(scalar(db, sql), 3);
	assert_int_equal(scalar(db, "SELECT count(*) FROM event"), scalar(db, "SELECT count(*) FROM term"));
	sqlite3_close(db);
}

/* A delivery whose transaction began longer ago than the fold cap, or
 * whose transaction is in another batch, keeps a row of its own (with the
 * transaction's sender). */
static void
test_not_folded(void **state)
{
	(void)state;
	struct pt_config *c = conf("");
	assert_int_equal(pt_record_open(c), 0);
	struct pt_status sent = { 0, "2.0.0", "delivered to mailbox" };
	struct pt_record_rcpt rc = { "alice@example.com", "250 2.1.5 Ok", NULL };
	struct pt_record_smtp t = { .service = "smtpd", .outcome = "accepted", .queue_id = "OLD0000001",
		.client_address = "192.0.2.1", .sender = "slow@example.com", .rcpt = &rc, .nrcpt = 1,
		.started_ms = ms_now() - PT_RECORD_FOLD_MS - 5000 };
	pt_record_smtp(&t);
	pt_record_delivery("local", "OLD0000001", "alice@example.com", NULL, "local", 15, &sent);
	/* Folded, every recipient delivered: not kept in the writer's cache;
	 * a further copy (an alias's) in a later batch gets the sender from
	 * the store. */
	struct pt_record_smtp t2 = { .service = "smtpd", .outcome = "accepted", .queue_id = "NEW0000001",
		.client_address = "192.0.2.1", .sender = "quick@example.com", .message_id = "<q@test>", .rcpt = &rc,
		.nrcpt = 1, .started_ms = ms_now() - 100 };
	pt_record_smtp(&t2);
	pt_record_delivery("local", "NEW0000001", "alice@example.com", "staff@example.com", "local", 0.1, &sent);
	usleep(1500 * 1000);
	pt_record_delivery("local", "NEW0000001", "bob@example.com", "staff@example.com", "local", 1.6, &sent);
	pt_record_close();
	/* A later batch (another writer run): a row, sender from the store. */
	assert_int_equal(pt_record_open(c), 0);
	pt_record_delivery("local", "OLD0000001", "alice@example.com", NULL, "local", 16, &sent);
	pt_record_close();
	pt_config_free(c);
	char err[600];
	sqlite3 *db = pt_record_db_open(path, 0, err, sizeof err);
	assert_non_null(db);
	assert_int_equal(scalar(db, "SELECT count(*) FROM event WHERE dlv IS NOT NULL"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM event WHERE kind = 'delivery' AND sender = 'quick@example.com'"
	                            " AND message_id = '<q@test>' AND rcpts LIKE '2' || char(31) || 'bob@%'"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM event WHERE kind = 'delivery' AND sender = 'slow@example.com'"),
	                 2);
	assert_int_equal(scalar(db, "SELECT count(DISTINCT j.value) FROM term, json_each(term.evs) j"
	                            " WHERE t = 's=quick@example.com'"), 2);
	sqlite3_close(db);
}

/* Schema 2 (no dlv): `postern why` reads it as it is; the writer adds the
 * column on open and every older event stays. */
static void
test_schema2_read_and_migrated(void **state)
{
	(void)state;
	char err[600], d[400];
	snprintf(d, sizeof d, "%s/rec", dir);
	assert_int_equal(mkdir(d, 0700), 0);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
		"PRAGMA page_size=16384; PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL;"
		"CREATE TABLE event(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL,"
		" outcome TEXT NOT NULL, service TEXT, queue_id TEXT, message_id TEXT, client TEXT, client_name TEXT,"
		" helo TEXT, sender TEXT, user TEXT, stage TEXT, rule TEXT, reply TEXT, relay TEXT, dsn TEXT,"
		" size INTEGER, delay REAL, refused INTEGER NOT NULL DEFAULT 0, trace TEXT, rcpts TEXT);"
		"CREATE INDEX event_queue ON event(queue_id) WHERE queue_id IS NOT NULL;"
		"CREATE INDEX event_msgid ON event(message_id) WHERE message_id IS NOT NULL AND kind = 'smtp';"
		"CREATE TABLE term(last INTEGER NOT NULL, t TEXT NOT NULL, evs TEXT NOT NULL, PRIMARY KEY(last, t))"
		" WITHOUT ROWID;"
		"CREATE INDEX term_t ON term(t);"
		"INSERT INTO event(id, ts, kind, outcome, queue_id, sender) VALUES(4096000, 1000, 'smtp', 'accepted',"
		" 'Q2', 'old@example.com');"
		"INSERT INTO event(id, ts, kind, outcome, queue_id, sender, delay) VALUES(4100096, 1001, 'delivery',"
		" 'delivered', 'Q2', 'old@example.com', 0.5);"
		"INSERT INTO term(t, last, evs) VALUES('s=old@example.com', 4100096, '[4096000,4100096]');"
		"PRAGMA user_version=2", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	chmod(path, 0600);
	db = pt_record_db_open(path, 0, err, sizeof err);
	assert_non_null(db);
	assert_int_equal(scalar(db, "PRAGMA user_version"), 2);
	assert_int_equal(scalar(db, "SELECT count(*) FROM event"), 2);
	sqlite3_close(db);
	db = pt_record_db_open(path, 1, err, sizeof err);
	assert_non_null(db);
	assert_int_equal(scalar(db, "PRAGMA user_version"), PT_RECORD_SCHEMA);
	assert_int_equal(scalar(db, "SELECT count(*) FROM event WHERE dlv IS NULL AND queue_id = 'Q2'"), 2);
	assert_int_equal(scalar(db, "SELECT count(*) FROM term"), 1);
	text_is(db, "PRAGMA integrity_check", "ok");
	sqlite3_close(db);
	/* Opening again changes nothing; a newer schema is refused. */
	db = pt_record_db_open(path, 1, err, sizeof err);
	assert_non_null(db);
	assert_int_equal(scalar(db, "PRAGMA user_version"), PT_RECORD_SCHEMA);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=9", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_null(pt_record_db_open(path, 1, err, sizeof err));
	assert_null(pt_record_db_open(path, 0, err, sizeof err));
}

/* A schema-1 store (never released) is set aside whole, not refused. */
static void
test_schema1_set_aside(void **state)
{
	(void)state;
	char err[600], old[500], d[400];
	snprintf(d, sizeof d, "%s/rec", dir);
	assert_int_equal(mkdir(d, 0700), 0);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE addr(x); INSERT INTO addr VALUES(1); PRAGMA user_version=1",
	                              NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	db = pt_record_db_open(path, 1, err, sizeof err);
	assert_non_null(db);
	assert_int_equal(scalar(db, "PRAGMA user_version"), PT_RECORD_SCHEMA);
	assert_int_equal(scalar(db, "SELECT count(*) FROM event"), 0);
	sqlite3_close(db);
	snprintf(old, sizeof old, "%s.schema1", path);
	assert_int_equal(sqlite3_open(old, &db), SQLITE_OK);
	assert_int_equal(scalar(db, "SELECT count(*) FROM addr"), 1);
	sqlite3_close(db);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_message_id),
		cmocka_unit_test_setup_teardown(test_events_written, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema1_set_aside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_folded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema2_read_and_migrated, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
