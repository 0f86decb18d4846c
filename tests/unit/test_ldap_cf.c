/* The ldap module's filter templates (RFC 4515 escaping: an injection is
 * a literal value) and its config file parser. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ldap/ldap_int.h"

static void
test_escape(void **state)
{
	(void)state;
	char out[256];
	assert_int_equal(lfilter_escape("*)(uid=*", out, sizeof out), 0);
	assert_string_equal(out, "\\2a\\29\\28uid=\\2a");
	assert_int_equal(lfilter_escape("a\\b", out, sizeof out), 0);
	assert_string_equal(out, "a\\5cb");
	assert_int_equal(lfilter_escape("\x01\xc3\xa9", out, sizeof out), 0);
	assert_string_equal(out, "\\01\\c3\\a9");
	assert_int_equal(lfilter_escape("abcdef", out, 4), -1);
}

static void
test_expand(void **state)
{
	(void)state;
	char out[512];
	assert_int_equal(lfilter_expand("(mail=%s)", "Bob@Example.org", out, sizeof out), 1);
	assert_string_equal(out, "(mail=Bob@Example.org)");
	assert_int_equal(lfilter_expand("(&(uid=%u)(dc=%d))", "bob@example.org", out, sizeof out), 1);
	assert_string_equal(out, "(&(uid=bob)(dc=example.org))");
	assert_int_equal(lfilter_expand("(uid=%u)", "alice)(|(uid=*", out, sizeof out), 1);
	assert_string_equal(out, "(uid=alice\\29\\28|\\28uid=\\2a)");
	/* %d of a key without a domain: no query at all */
	assert_int_equal(lfilter_expand("(dc=%d)", "bob", out, sizeof out), 0);
	assert_int_equal(lfilter_expand("(x=100%%)", "k", out, sizeof out), 1);
	assert_string_equal(out, "(x=100%)");
	assert_int_equal(lfilter_expand("(x=%q)", "k", out, sizeof out), -1);
	assert_int_equal(lfilter_expand("(x=%s)", "kkkkkkkkkkkkkkkk", out, 10), -1);
}

static int nreports;
static char last[2048];

static void
report(void *arg, int is_error, const char *msg)
{
	(void)arg;
	(void)is_error;
	nreports++;
	snprintf(last, sizeof last, "%s", msg);
}

static void
test_config(void **state)
{
	(void)state;
	char path[] = "/tmp/ldapcfXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "# comment\n"
	                   "server_host = ldap1.example, ldaps://ldap2.example:636\n"
	                   "search_base = dc=example,dc=org\n"
	                   "query_filter = (&(objectClass=nisMailAlias)\n"
	                   "    (cn=%u))\n"
	                   "result_attribute = rfc822MailMember, mail\n"
	                   "scope = one\n"
	                   "timeout = 5\n"
	                   "proxy = yes\n"
	                   "bogus = 1\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct lcf cf;
	nreports = 0;
	assert_int_equal(lcf_load(path, &cf, report, NULL), 1);
	assert_int_equal(nreports, 1);
	assert_non_null(strstr(last, ":10: unknown setting \"bogus\""));
	assert_int_equal(cf.nuri, 2);
	assert_string_equal(cf.uri[0], "ldap://ldap1.example:389");
	assert_string_equal(cf.uri[1], "ldaps://ldap2.example:636");
	assert_string_equal(cf.query_filter, "(&(objectClass=nisMailAlias) (cn=%u))");
	assert_int_equal(cf.nresult, 2);
	assert_string_equal(cf.result_attribute[1], "mail");
	assert_int_equal(cf.timeout_s, 5);
	assert_int_equal(cf.proxy, 1);
	lcf_free(&cf);

	/* bind = yes without its DN and password; no search_base */
	FILE *f = fopen(path, "w");
	fputs("bind = yes\nquery_filter = (cn=%x)\n", f);
	fclose(f);
	nreports = 0;
	assert_int_equal(lcf_load(path, &cf, report, NULL), 3);
	lcf_free(&cf);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_expand),
		cmocka_unit_test(test_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
