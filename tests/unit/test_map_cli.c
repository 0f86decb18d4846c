/* Unit tests for `postern map`: check, query (postmap -q exit codes),
 * syntax guessing, and the answer to postmap/postalias habits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static char tmpdir[256];
static char out[8192], err[8192];

static void
put(const char *name, const char *text)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
slurp_fd(int fd, char *buf, size_t len)
{
	lseek(fd, 0, SEEK_SET);
	ssize_t n = read(fd, buf, len - 1);
	buf[n > 0 ? n : 0] = 0;
}

/* Run `postern map ARGS...` in this process, capturing stdout/stderr. */
static int
run(const char *a1, const char *a2, const char *a3, const char *a4)
{
	char *argv[6] = { "map", (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL };
	int argc = 1;
	while (argc < 5 && argv[argc])
		argc++;
	char o[300], e[300];
	snprintf(o, sizeof(o), "%s/stdout", tmpdir);
	snprintf(e, sizeof(e), "%s/stderr", tmpdir);
	int fo = open(o, O_RDWR | O_CREAT | O_TRUNC, 0600), fe = open(e, O_RDWR | O_CREAT | O_TRUNC, 0600);
	fflush(stdout);
	fflush(stderr);
	int so = dup(1), se = dup(2);
	dup2(fo, 1);
	dup2(fe, 2);
	assert_int_equal(chdir(tmpdir), 0);
	int rc = pt_cmd_map("/nonexistent.conf", argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(so, 1);
	dup2(se, 2);
	close(so);
	close(se);
	slurp_fd(fo, out, sizeof(out));
	slurp_fd(fe, err, sizeof(err));
	close(fo);
	close(fe);
	return rc;
}

static void
test_check(void **state)
{
	(void)state;
	put("transport", "example.com.ar    local:\n.example.com.ar    local:\n");
	put("aliases", "sysadmin: gacanepa, jdoe\nuser1: user1,\n  user2\n");
	put("lists", "# guessed from the first entry\nstaff: alice, bob\n");
	put("broken", "a: b\nbroken line\n");
	assert_int_equal(run("check", "transport", NULL, NULL), 0);
	assert_string_equal(out, "transport: 2 entries, no errors (key value syntax)\n");
	assert_int_equal(run("check", "hash:aliases", NULL, NULL), 0);
	assert_string_equal(out, "hash:aliases: 2 entries, no errors (aliases(5) syntax)\n");
	assert_int_equal(run("check", "lists", NULL, NULL), 0);
	assert_non_null(strstr(out, "aliases(5) syntax"));
	assert_int_equal(run("check", "broken", NULL, NULL), 1);
	assert_string_equal(err, "broken:2: need name: value pair, got \"broken line\"\n"
	                    "postern map: broken: 1 error; the server keeps using the last good version\n");
	/* forced syntax */
	assert_int_equal(run("check", "-m", "aliases", NULL), 0);
	assert_non_null(strstr(out, "key value syntax"));
	assert_int_equal(run("check", "-a", "transport", NULL), 1);
	assert_int_equal(run("check", "missing", NULL, NULL), 1);
	assert_non_null(strstr(err, "missing: cannot open: No such file or directory"));
}

static void
test_query(void **state)
{
	(void)state;
	put("transport", "example.com.ar    local:\n.example.com.ar    local:\n");
	put("aliases", "sysadmin: gacanepa, jdoe\n");
	put("broken", "a: b\nbroken line\n");
	assert_int_equal(run("query", "transport", "EXAMPLE.com.ar", NULL), 0);
	assert_string_equal(out, "local:\n");
	assert_int_equal(run("query", "texthash:aliases", "sysadmin", NULL), 0);
	assert_string_equal(out, "gacanepa, jdoe\n");
	assert_int_equal(run("query", "aliases", "nobody", NULL), 1);
	assert_string_equal(out, "");
	assert_int_equal(run("query", "broken", "a", NULL), 2);
	assert_int_equal(run("query", "missing", "a", NULL), 2);
	assert_int_equal(run("query", "pcre:/x", "a", NULL), 2);
	assert_non_null(strstr(err, "unsupported map type \"pcre\""));
}

static void
test_usage_and_habits(void **state)
{
	(void)state;
	put("transport", "example.com.ar local:\n");
	put("aliases", "sysadmin: gacanepa, jdoe\n");
	assert_int_equal(run(NULL, NULL, NULL, NULL), 2);
	assert_non_null(strstr(err, "usage: postern map check"));
	assert_int_equal(run("query", "transport", NULL, NULL), 2);
	assert_string_equal(err, "postern map: query needs FILE KEY\n");
	assert_int_equal(run("check", "-x", "transport", NULL), 2);
	assert_int_equal(run("frobnicate", "a", "b", NULL), 2);
	/* `postern map FILE` and postmap/postalias habits get an explanation */
	assert_int_equal(run("transport", NULL, NULL, NULL), 0);
	assert_non_null(strstr(out, "postern reads transport directly: no postmap step"));
	assert_non_null(strstr(out, "postern map check transport"));
	assert_non_null(strstr(out, "postern map query transport KEY"));
	assert_int_equal(run("postalias", "aliases", NULL, NULL), 0);
	assert_non_null(strstr(out, "no postalias step"));
	assert_non_null(strstr(out, "1 entry, no errors (aliases(5) syntax)"));
}

static int
setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_map_cli.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_usage_and_habits),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
