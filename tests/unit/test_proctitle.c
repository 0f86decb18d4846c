/* Process titles (core/proctitle.c) on a made-up argument area laid out
 * as exec lays it out: the strings move to the heap with argv/environ
 * following them, the title fills the area, NUL-padded, with the byte the
 * kernel checks (the last argument's NUL) set when the title is shorter,
 * cut when longer; control bytes never reach it; the comm name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proctitle.h"

extern char **environ;

static char area[] = "/usr/sbin/postern\0run\0-c\0/etc/p.conf\0HOME=/root\0PATH=/bin\0";
#define ARGV_END (sizeof "/usr/sbin/postern run -c /etc/p.conf")  /* bytes up to the last NUL incl. */
#define AREA_LEN (sizeof area - 1)

static void
comm_is(const char *want)
{
	char buf[32] = "";
	FILE *f = fopen("/proc/thread-self/comm", "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof buf, f));
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	assert_string_equal(buf, want);
}

static void
test_area(void **state)
{
	(void)state;
	char *argv[5] = { area, area + 18, area + 22, area + 25, NULL };
	char *env[3] = { area + 37, area + 48, NULL };
	assert_string_equal(argv[3], "/etc/p.conf");
	assert_string_equal(env[1], "PATH=/bin");
	char **saved_env = environ;
	environ = env;
	pt_proctitle_init(4, argv);
	environ = saved_env;

	/* The strings moved, intact. */
	assert_true(argv[0] < area || argv[0] >= area + sizeof area);
	assert_string_equal(argv[0], "/usr/sbin/postern");
	assert_string_equal(argv[3], "/etc/p.conf");
	assert_true(env[0] < area || env[0] >= area + sizeof area);
	assert_string_equal(env[0], "HOME=/root");
	assert_string_equal(env[1], "PATH=/bin");

	/* A short title: NULs after it, and the last argument's NUL made
	 * non-NUL so the kernel shows the title alone. */
	pt_proctitle_set("worker");
	assert_string_equal(area, "postern: worker");
	for (size_t i = strlen("postern: worker"); i < AREA_LEN; i++)
		if (i != ARGV_END - 1)
			assert_int_equal(area[i], 0);
	assert_int_not_equal(area[ARGV_END - 1], 0);
	comm_is("postern-worker");

	/* Longer than the arguments: into the environment's bytes. */
	pt_proctitle_set("imap [%s %s]", "a-rather-long-user-name", "192.0.2.7");
	assert_string_equal(area, "postern: imap [a-rather-long-user-name 192.0.2.7]");
	comm_is("postern-imap");

	/* Longer than the whole area: cut, still NUL-terminated. */
	char big[200];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	pt_proctitle_set("%s", big);
	assert_int_equal(strlen(area), AREA_LEN - 1);
	assert_int_equal(area[AREA_LEN - 1], 0);
	comm_is("postern-xxxxxxx");

	/* Control bytes from a user name never reach ps or the terminal. */
	pt_proctitle_set("imap [ev\x1b[2Jil\n 127.0.0.1]");
	assert_string_equal(area, "postern: imap [ev?[2Jil? 127.0.0.1]");

	/* The mail process's title follows its sessions. */
	pt_proctitle_mail_user("alice", 1);
	assert_string_equal(area, "postern: mail [alice]");
	void *a = pt_proctitle_session_add("pop3", "192.0.2.7");
	assert_string_equal(area, "postern: pop3 [alice 192.0.2.7]");
	void *b = pt_proctitle_session_add("imap", "192.0.2.8");
	assert_string_equal(area, "postern: imap+pop3 [alice, 2 sessions]");
	void *c = pt_proctitle_session_add("imap", "192.0.2.9");
	assert_string_equal(area, "postern: imap+pop3 [alice, 3 sessions]");
	pt_proctitle_session_del(a);
	assert_string_equal(area, "postern: imap [alice, 2 sessions]");
	pt_proctitle_session_del(c);
	assert_string_equal(area, "postern: imap [alice 192.0.2.8]");
	pt_proctitle_session_del(b);
	assert_string_equal(area, "postern: imap [alice]");
	pt_proctitle_session_del(NULL);

	/* verbose_proctitle = no: neither the user nor an address. */
	pt_proctitle_mail_user("alice", 0);
	assert_string_equal(area, "postern: imap");
	void *d = pt_proctitle_session_add("pop3", "192.0.2.7");
	assert_string_equal(area, "postern: pop3");
	pt_proctitle_session_del(d);
	pt_proctitle_mail_user("alice", 1);
	assert_string_equal(area, "postern: pop3 [alice]");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_area),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
