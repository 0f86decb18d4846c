/* The pgsql module's query templates: %s/%u/%d/%1..%9 become $N
 * parameters (never spliced into the SQL: an injection is one value),
 * quotes around a lone placeholder go, a placeholder inside a longer
 * literal or a '$' is refused; and its config file parser. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgsql/pgsql_int.h"

static void
compiles(const char *tmpl, const char *sql, const char *kinds)
{
	struct pqt q;
	char why[300] = "";
	int rc = pqt_compile(tmpl, &q, why, sizeof why);
	if (rc != 0)
		fprintf(stderr, "%s: %s\n", tmpl, why);
	assert_int_equal(rc, 0);
	assert_string_equal(q.sql, sql);
	assert_int_equal(q.nparams, strlen(kinds));
	for (size_t i = 0; i < q.nparams; i++)
		assert_int_equal(q.kind[i], kinds[i]);
	pqt_free(&q);
}

static void
refused(const char *tmpl, const char *why_part)
{
	struct pqt q;
	char why[300] = "";
	assert_int_equal(pqt_compile(tmpl, &q, why, sizeof why), -1);
	assert_null(q.sql);
	if (!strstr(why, why_part))
		fprintf(stderr, "%s: %s\n", tmpl, why);
	assert_non_null(strstr(why, why_part));
}

static void
test_compile(void **state)
{
	(void)state;
	/* Postfix's usual quoted form: the quotes go, $1 is the whole key */
	compiles("SELECT forw FROM aliases WHERE alias='%s'", "SELECT forw FROM aliases WHERE alias=$1", "s");
	/* bare placeholders are parameters too */
	compiles("SELECT x FROM t WHERE a = %s AND b = %s", "SELECT x FROM t WHERE a = $1 AND b = $1", "s");
	compiles("SELECT x FROM t WHERE u = '%u' AND d = '%d' AND tld = '%1' AND k = '%U'",
	         "SELECT x FROM t WHERE u = $1 AND d = $2 AND tld = $3 AND k = $1", "ud1");
	/* literals without placeholders stay; %% is a percent; '' inside */
	compiles("SELECT 'it''s', '100%%' FROM t WHERE a LIKE %s || '%%'",
	         "SELECT 'it''s', '100%' FROM t WHERE a LIKE $1 || '%'", "s");
	compiles("SELECT \"Weird\"\"Col\" FROM t WHERE a = %s", "SELECT \"Weird\"\"Col\" FROM t WHERE a = $1", "s");
	/* an E'' literal: \' does not end it, so '%s' after it is still seen */
	compiles("SELECT E'a\\'b' FROM t WHERE a = '%s'", "SELECT E'a\\'b' FROM t WHERE a = $1", "s");
	/* "x'%s'" where the quote is doubled: a literal holding '%s' -- refused */
	refused("SELECT 'x''%s''' FROM t", "cannot be a parameter");
	refused("SELECT x FROM t WHERE a = '%u@example.org'", "cannot be a parameter");
	refused("SELECT x FROM t WHERE a LIKE '%s%'", "cannot be a parameter");
	refused("SELECT x FROM t WHERE a = $1", "'$'");
	refused("SELECT $$x$$ FROM t WHERE a = %s", "'$'");
	refused("SELECT x FROM t WHERE a = %q", "bad % sequence");
	refused("SELECT x FROM t WHERE a = '%s", "string literal");
	refused("SELECT 'abc", "unterminated");
	refused("SELECT \"abc FROM t", "unterminated");
	refused("SELECT x FROM t WHERE a = '100%'", "bad % sequence");
	refused("", "empty");
	/* a prefixed literal is no string parameter */
	refused("SELECT x FROM t WHERE a = E'%s'", "prefixed literal");
	refused("SELECT x FROM t WHERE a = U&'%s'", "prefixed literal");
	compiles("SELECT x FROM t WHERE a IN('%s')", "SELECT x FROM t WHERE a IN($1)", "s");
	/* comments: -- would swallow the joined lines; C-style ones are copied */
	refused("SELECT x FROM t WHERE a = %s -- the key", "-- comment");
	compiles("SELECT x /* don't %s */ FROM t WHERE a = %s", "SELECT x /* don't %s */ FROM t WHERE a = $1", "s");
	refused("SELECT x /* open FROM t", "unterminated /*");
}

static void
values(const char *tmpl, const char *key, int want, const char *joined)
{
	struct pqt q;
	char why[300];
	assert_int_equal(pqt_compile(tmpl, &q, why, sizeof why), 0);
	char buf[2000], got[2000] = "";
	const char *vals[PQT_MAX_PARAMS];
	int rc = pqt_values(&q, key, buf, sizeof buf, vals);
	assert_int_equal(rc, want);
	if (rc == 1) {
		for (size_t i = 0; i < q.nparams; i++) {
			strcat(got, vals[i]);
			strcat(got, "|");
		}
		assert_string_equal(got, joined);
	}
	pqt_free(&q);
}

static void
test_values(void **state)
{
	(void)state;
	/* the injection attempts are values, whole */
	values("SELECT 1 WHERE a = '%s'", "'; DROP TABLE users; --", 1, "'; DROP TABLE users; --|");
	values("SELECT 1 WHERE a = '%s'", "' OR '1'='1", 1, "' OR '1'='1|");
	values("SELECT 1 WHERE a = %u AND b = %d", "bob@Mail.Example.org", 1, "bob|Mail.Example.org|");
	values("SELECT 1 WHERE a = %u", "bob", 1, "bob|");
	/* %d, %1.. of a key without that part: no query (Postfix) */
	values("SELECT 1 WHERE a = %d", "bob", 0, NULL);
	values("SELECT 1 WHERE a = %u", "@example.org", 0, NULL);
	values("SELECT 1 WHERE a = %1 AND b = %2 AND c = %3", "u@mail.example.org", 1, "org|example|mail|");
	values("SELECT 1 WHERE a = %3", "u@example.org", 0, NULL);
	/* too long for the buffer: not a query */
	char big[3000];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = 0;
	values("SELECT 1 WHERE a = %s", big, -1, NULL);
}

static void
test_format(void **state)
{
	(void)state;
	char out[100];
	assert_int_equal(pqt_format("%s", "bob@example.org", out, sizeof out), 1);
	assert_string_equal(out, "bob@example.org");
	assert_int_equal(pqt_format("smtp:[%d]", "bob@mbox1.example", out, sizeof out), 1);
	assert_string_equal(out, "smtp:[mbox1.example]");
	assert_int_equal(pqt_format("%u+x 100%%", "bob@example.org", out, sizeof out), 1);
	assert_string_equal(out, "bob+x 100%");
	assert_int_equal(pqt_format("%d", "bob", out, sizeof out), 0);
	assert_int_equal(pqt_format("%q", "bob", out, sizeof out), -1);
	assert_int_equal(pqt_format("%s%s%s", "bobbobbob", out, 10), -1);
}

static int nreports;
static char reports[8192];

static void
report(void *arg, int is_error, const char *msg)
{
	(void)arg;
	(void)is_error;
	nreports++;
	strncat(reports, msg, sizeof reports - strlen(reports) - 2);
	strcat(reports, "\n");
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
test_config(void **state)
{
	(void)state;
	char path[] = "/tmp/pgsqlcfXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	write_file(path, "# comment\n"
	                 "hosts = db1.example, inet:db2.example:5433 unix:/run/postgresql\n"
	                 "dbname = mail\n"
	                 "user = postern\n"
	                 "password = secret\n"
	                 "query = SELECT goto FROM alias\n"
	                 "    WHERE address = '%s' AND active\n"
	                 "password_query = SELECT password, host FROM users WHERE name = '%u'\n"
	                 "result_format = smtp:[%s]\n"
	                 "expansion_limit = 5\n"
	                 "domain = Example.ORG, example.net\n"
	                 "timeout = 5s\n"
	                 "pool_size = 3\n"
	                 "bogus = 1\n");
	struct pcf cf;
	nreports = 0;
	reports[0] = 0;
	assert_int_equal(pcf_load(path, &cf, report, NULL), 1);
	assert_int_equal(nreports, 1);
	assert_non_null(strstr(reports, ":14: unknown setting \"bogus\""));
	assert_int_equal(cf.nhost, 3);
	assert_string_equal(cf.host[1], "inet:db2.example:5433");
	assert_string_equal(cf.dbname, "mail");
	assert_int_equal(cf.have_query, 1);
	assert_string_equal(cf.query.sql, "SELECT goto FROM alias WHERE address = $1 AND active");
	assert_int_equal(cf.have_password_query, 1);
	assert_int_equal(cf.have_user_query, 0);
	assert_int_equal(cf.expansion_limit, 5);
	assert_int_equal(cf.timeout_s, 5);
	assert_int_equal(cf.pool_size, 3);
	assert_int_equal(pcf_domain_ok(&cf, "bob@example.org"), 1);
	assert_int_equal(pcf_domain_ok(&cf, "bob@EXAMPLE.net"), 1);
	assert_int_equal(pcf_domain_ok(&cf, "bob@example.com"), 0);
	assert_int_equal(pcf_domain_ok(&cf, "bob"), 0);
	assert_int_equal(pcf_domain_ok(&cf, "@example.org"), 0);
	pcf_free(&cf);

	/* each problem at its line; no dbname; old Postfix interface */
	write_file(path, "hosts = localhost\n"
	                 "query = SELECT a FROM t WHERE b = '%u@example.org'\n"
	                 "user_query = SELECT uid FROM t WHERE name = %x\n"
	                 "table = users\n"
	                 "pool_size = 99\n");
	nreports = 0;
	reports[0] = 0;
	assert_int_equal(pcf_load(path, &cf, report, NULL), 5);
	assert_non_null(strstr(reports, ":2: query: %u inside a longer string literal"));
	assert_non_null(strstr(reports, ":3: user_query: bad % sequence"));
	assert_non_null(strstr(reports, ":4: \"table\" (Postfix's old interface)"));
	assert_non_null(strstr(reports, ":5: pool_size: \"99\" is not a number"));
	assert_non_null(strstr(reports, ": dbname is not set"));
	pcf_free(&cf);

	/* a connect string instead; no query at all */
	write_file(path, "connect = host=db.example dbname=mail\n");
	nreports = 0;
	reports[0] = 0;
	assert_int_equal(pcf_load(path, &cf, report, NULL), 1);
	assert_non_null(strstr(reports, "no query, password_query or user_query"));
	pcf_free(&cf);

	unlink(path);
	nreports = 0;
	assert_int_equal(pcf_load(path, &cf, report, NULL), 1);
	assert_non_null(strstr(reports, "cannot open"));
	pcf_free(&cf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compile),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
