/* Unit tests for the decision record: the writer thread takes events from
 * the three calls and writes them in batches (a delivery written before
 * its transaction gets the sender afterwards, and one written after gets
 * it at once), the store is mode 0600 in a 0700 directory, no password
 * field exists, address splitting, and retention by age and by size. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
		.refused = 1 };
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
	assert_int_equal(scalar(db, "SELECT count(*) FROM event"), 4);
	assert_int_equal(scalar(db, "SELECT count(*) FROM event WHERE kind = 'delivery' AND sender = 'Bob@Example.COM'"
	                            " AND message_id = '<m1@test>'"), 2);
	/* Both deliveries are found by the sender, lower-cased (the search
	 * terms, record_db.c). */
	assert_int_equal(scalar(db, "SELECT count(DISTINCT j.value) FROM term, json_each(term.evs) j"
	                            " WHERE t = 's=bob@example.com'"), 3);
	assert_int_equal(scalar(db, "SELECT count(DISTINCT j.value) FROM term, json_each(term.evs) j"
	                            " WHERE t = 's@example.com'"), 3);
	assert_int_equal(scalar(db, "SELECT count(DISTINCT j.value) FROM term, json_each(term.evs) j"
	                            " WHERE t = 'o=sysadmin@example.com'"), 2);
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
	/* By size: the oldest go until the used pages fit. */
	fill(db, 2000, now - 500000, 2000);
	fill(db, 3, now, 10);
	long pruned = pt_record_prune(db, 0, 512 * 1024);
	assert_true(pruned > 0);
	long long used = (scalar(db, "PRAGMA page_count") - scalar(db, "PRAGMA freelist_count")) *
	                 scalar(db, "PRAGMA page_size");
	assert_true(used <= 512 * 1024);
	char sql[128];
	snprintf(sql, sizeof sql, "SELECT count(*) FROM event WHERE ts >= %lld", now);
	assert_int_equal(scalar(db, sql), 3);
	assert_int_equal(scalar(db, "SELECT count(*) FROM event"), scalar(db, "SELECT count(*) FROM term"));
	sqlite3_close(db);
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
