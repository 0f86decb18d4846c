/* core/cf_file.c, the reader of the ldap/pgsql .cf files: what a setting
 * callback sees (trimmed name and value, the setting's first line), the
 * FILE:LINE reports, and the differences of the lax (ldap) reading. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "postern/cf_file.h"

static char seen[4096], reports[4096];

static void
report(void *arg, int is_error, const char *msg)
{
	(void)arg;
	(void)is_error;
	strncat(reports, msg, sizeof reports - strlen(reports) - 2);
	strcat(reports, "|");
}

static void
setting(struct pt_cf *c, const char *name, const char *v)
{
	char one[600];
	snprintf(one, sizeof one, "%d[%s][%s]|", c->line, name, v);
	strncat(seen, one, sizeof seen - strlen(seen) - 1);
	if (!strcmp(name, "n"))
		pt_cf_number(c, name, v, 0, 10);
}

static int
read_text(const char *text, int lax, char *path, size_t pathlen)
{
	snprintf(path, pathlen, "/tmp/test_cf_file.XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	seen[0] = reports[0] = 0;
	struct pt_cf c = { .path = path, .report = report, .lax = lax };
	assert_int_equal(pt_cf_read(&c, setting), 0);
	assert_int_equal(c.line, 0);
	unlink(path);
	return c.errors;
}

static void
test_settings(void **state)
{
	(void)state;
	char path[64], want[512];
	int errors = read_text("# c\n a = b\nname =  va lue\r\n\tmore \n\nx\n= y\nn = 10s\nn = -0\n", 0, path, sizeof path);
	assert_string_equal(seen, "3[name][va lue more]|8[n][10s]|9[n][-0]|");
	snprintf(want, sizeof want,
	         "%s:2: continuation line without a setting before it|%s:6: need \"name = value\"|"
	         "%s:7: empty setting name|%s:9: n: \"-0\" is not a number from 0 to 10|",
	         path, path, path, path);
	assert_string_equal(reports, want);
	assert_int_equal(errors, 4);
	/* ldap's reading: the indented first line is a setting, "-0" a number */
	errors = read_text(" a = b\nn = -0\n", 1, path, sizeof path);
	assert_string_equal(seen, "1[a][b]|2[n][-0]|");
	assert_int_equal(errors, 0);
}

static void
test_helpers(void **state)
{
	(void)state;
	reports[0] = 0;
	struct pt_cf c = { .path = "f.cf", .report = report };
	assert_int_equal(pt_cf_yesno(&c, "p", "TRUE"), 1);
	assert_int_equal(pt_cf_yesno(&c, "p", "0"), 0);
	assert_int_equal(pt_cf_yesno(&c, "p", "maybe"), 0);
	assert_int_equal(pt_cf_number(&c, "t", "600", 1, 600), 600);
	assert_int_equal(pt_cf_number(&c, "t", "601", 1, 600), 1);
	char *w[2] = { NULL, NULL };
	size_t n = pt_cf_split(&c, "h", "a, b", w, 0, 2);
	assert_int_equal(n, 2);
	assert_string_equal(w[1], "b");
	c.line = 4;
	n = pt_cf_split(&c, "h", "c d,e", w, n, 2);
	assert_int_equal(n, 2);
	assert_string_equal(w[0], "c");
	free(w[0]);
	free(w[1]);
	assert_string_equal(reports, "f.cf: p: \"maybe\" is not yes or no|"
	                             "f.cf: t: \"601\" is not a number from 1 to 600|"
	                             "f.cf:4: h: more than 2 values|");
	assert_int_equal(c.errors, 3);
	c.path = "/nonexistent/x.cf";
	assert_int_equal(pt_cf_read(&c, setting), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_settings),
		cmocka_unit_test(test_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
