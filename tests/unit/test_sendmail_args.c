/* Unit tests for the sendmail command line, address lists and local
 * message preparation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sendmail.h"

#define ARGV(...) (char *[]){ "sendmail", __VA_ARGS__, NULL }
#define ARGC(...) ((int)(sizeof((char *[]){ "sendmail", __VA_ARGS__ }) / sizeof(char *)))
#define PARSE(o, ...) pt_sendmail_parse(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (o))

static void
test_flags(void **state)
{
	(void)state;
	struct pt_sm_opts o;
	assert_int_equal(PARSE(&o, "-t", "-i", "-f", "root@x", "-F", "Root User", "alice"), 0);
	assert_true(o.extract);
	assert_true(o.ignore_dots);
	assert_string_equal(o.sender, "root@x");
	assert_string_equal(o.fullname, "Root User");
	assert_int_equal(o.nrcpt, 1);
	assert_string_equal(o.rcpt[0], "alice");
	assert_int_equal(o.mode, PT_SM_DELIVER);
	pt_sendmail_opts_free(&o);

	/* What cron runs. */
	assert_int_equal(PARSE(&o, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"), 0);
	assert_string_equal(o.fullname, "CronDaemon");
	assert_string_equal(o.body, "8BITMIME");
	assert_true(o.ignore_dots);
	assert_string_equal(o.rcpt[0], "root");
	pt_sendmail_opts_free(&o);

	assert_int_equal(PARSE(&o, "-oi", "-odi", "-fbob@y", "-CFILE", "-oQ/var/spool", "a, b,c"), 0);
	assert_true(o.ignore_dots);
	assert_string_equal(o.sender, "bob@y");
	assert_string_equal(o.conf, "FILE");
	assert_int_equal(o.nrcpt, 3);
	assert_string_equal(o.rcpt[1], "b");
	assert_string_equal(o.rcpt[2], "c");
	pt_sendmail_opts_free(&o);

	assert_int_equal(PARSE(&o, "-C", "/etc/p.conf", "-r", "me@z", "-B", "7BIT", "--", "-notaflag"), 0);
	assert_string_equal(o.conf, "/etc/p.conf");
	assert_string_equal(o.sender, "me@z");
	assert_string_equal(o.rcpt[0], "-notaflag");
	pt_sendmail_opts_free(&o);

	/* getopt grouping */
	assert_int_equal(PARSE(&o, "-ti", "x"), 0);
	assert_true(o.extract && o.ignore_dots);
	pt_sendmail_opts_free(&o);

	assert_int_equal(PARSE(&o, "-bs"), 0);
	assert_int_equal(o.mode, PT_SM_SMTP);
	assert_int_equal(PARSE(&o, "-bp"), 0);
	assert_int_equal(o.mode, PT_SM_MAILQ);
	assert_int_equal(PARSE(&o, "-bi"), 0);
	assert_int_equal(o.mode, PT_SM_NEWALIASES);
	assert_int_equal(PARSE(&o, "-q"), 0);
	assert_int_equal(o.mode, PT_SM_FLUSH);
	assert_int_equal(PARSE(&o, "-bm", "-N", "SUCCESS", "-R", "HDRS", "-V", "env1", "u"), 0);
	assert_string_equal(o.notify, "SUCCESS");
	assert_string_equal(o.ret, "HDRS");
	assert_string_equal(o.envid, "env1");
	pt_sendmail_opts_free(&o);
}

static void
test_refusals(void **state)
{
	(void)state;
	struct pt_sm_opts o;
	assert_int_equal(PARSE(&o, "alice\nBcc: x"), PT_EX_USAGE);
	assert_non_null(strstr(o.err, "CR or LF"));
	assert_int_equal(PARSE(&o, "-f", "a@b\r"), PT_EX_USAGE);
	assert_int_equal(PARSE(&o, "-F", "Name\nX-Header: 1", "alice"), PT_EX_USAGE);
	assert_int_equal(PARSE(&o, "-Z"), PT_EX_USAGE);
	assert_non_null(strstr(o.err, "-Z"));
	assert_int_equal(PARSE(&o, "-bd"), PT_EX_USAGE);
	assert_int_equal(PARSE(&o, "-bx"), PT_EX_USAGE);
	assert_int_equal(PARSE(&o, "-B", "9BIT"), PT_EX_USAGE);
	assert_int_equal(PARSE(&o, "-f"), PT_EX_USAGE);
	assert_non_null(strstr(o.err, "requires a value"));
	pt_sendmail_opts_free(&o);
}

static void
test_address_lists(void **state)
{
	(void)state;
	char **v = NULL;
	size_t n = 0;
	assert_int_equal(pt_sendmail_parse_addresses(
		"Alice <alice@x>, bob@y (Bob, the builder), \"Doe, John\" <john@z>, "
		"team: c@d, e@f;, <@relay:g@h>, \"q u\"@i", &v, &n), 0);
	const char *want[] = { "alice@x", "bob@y", "john@z", "c@d", "e@f", "g@h", "\"q u\"@i" };
	assert_int_equal(n, 7);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(v[i], want[i]);
		free(v[i]);
	}
	free(v);
	v = NULL;
	n = 0;
	assert_int_equal(pt_sendmail_parse_addresses("  ,, undisclosed-recipients:;", &v, &n), 0);
	assert_int_equal(n, 0);
	free(v);
}

static struct pt_sm_prep
prep(void)
{
	struct pt_sm_prep p = { .from_addr = "root@example.com.ar", .fullname = "Root",
		.myhostname = "mail.example.com.ar", .msgid_local = "20261128065311.ABC", .now = 1795848791 };
	return p;
}

static void
test_prepare_adds_headers(void **state)
{
	(void)state;
	struct pt_sm_prep p = prep();
	char **r = NULL;
	size_t n = 0, len;
	const char in[] = "hi there\r\nsecond line\r\n";
	char *m = pt_sendmail_prepare(in, sizeof in - 1, &p, &len, &r, &n);
	assert_non_null(m);
	assert_int_equal(strlen(m), len);
	assert_non_null(strstr(m, "From: Root <root@example.com.ar>\n"));
	assert_non_null(strstr(m, "\nDate: "));
	assert_non_null(strstr(m, "Message-Id: <20261128065311.ABC@mail.example.com.ar>\n"));
	/* Not headers: the text becomes the body after an empty line. */
	assert_non_null(strstr(m, ">\n\nhi there\nsecond line\n"));
	assert_null(strchr(m, '\r'));
	assert_int_equal(n, 0);
	free(m);
}

static void
test_prepare_keeps_existing_and_extracts(void **state)
{
	(void)state;
	struct pt_sm_prep p = prep();
	p.extract = 1;
	char **r = NULL;
	size_t n = 0, len;
	const char in[] =
		"From MAILER-DAEMON Sat Nov 28 06:53:10 2026\n"
		"From: Someone <someone@example.com.ar>\n"
		"To: Alice <alice@example.com.ar>,\n"
		"\tbob@example.com.ar\n"
		"Cc: \"Doe, J\" <carol@example.com.ar>\n"
		"Bcc: secret@example.com.ar\n"
		"Date: Sat, 28 Nov 2026 06:53:10 +0000\n"
		"Message-ID: <x@y>\n"
		"Subject: s\n"
		"\n"
		"body\n"
		"Bcc: not a header here\n"
		".\n"
		"after dot\n";
	char *m = pt_sendmail_prepare(in, sizeof in - 1, &p, &len, &r, &n);
	assert_non_null(m);
	assert_int_equal(n, 4);
	assert_string_equal(r[0], "alice@example.com.ar");
	assert_string_equal(r[1], "bob@example.com.ar");
	assert_string_equal(r[2], "carol@example.com.ar");
	assert_string_equal(r[3], "secret@example.com.ar");
	for (size_t i = 0; i < n; i++)
		free(r[i]);
	free(r);
	/* mbox From_ line dropped, Bcc header gone, nothing added twice. */
	assert_true(strncmp(m, "From: Someone", 13) == 0);
	assert_null(strstr(m, "secret@"));
	assert_null(strstr(m, "Message-Id: <20261128"));
	assert_null(strstr(m, "Root <root"));
	assert_non_null(strstr(m, "\n\nbody\nBcc: not a header here\n"));
	/* Without -i the lone dot ends the message. */
	assert_null(strstr(m, "after dot"));
	free(m);

	/* With -i it is just a line. */
	p.ignore_dots = 1;
	p.extract = 0;
	r = NULL;
	n = 0;
	m = pt_sendmail_prepare(in, sizeof in - 1, &p, &len, &r, &n);
	assert_non_null(strstr(m, "\n.\nafter dot\n"));
	assert_int_equal(n, 0);
	free(m);
}

static void
test_prepare_display_name_quoting(void **state)
{
	(void)state;
	struct pt_sm_prep p = prep();
	p.fullname = "Doe, \"J\"";
	char **r = NULL;
	size_t n = 0, len;
	char *m = pt_sendmail_prepare("Subject: x\n\nb\n", 14, &p, &len, &r, &n);
	assert_non_null(strstr(m, "From: \"Doe, \\\"J\\\"\" <root@example.com.ar>\n"));
	assert_non_null(strstr(m, "Subject: x\n"));
	free(m);
	/* Empty input still gives a well-formed message. */
	m = pt_sendmail_prepare("", 0, &p, &len, &r, &n);
	assert_non_null(m);
	assert_non_null(strstr(m, "Message-Id:"));
	assert_true(len >= 2 && m[len - 1] == '\n');
	free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_address_lists),
		cmocka_unit_test(test_prepare_adds_headers),
		cmocka_unit_test(test_prepare_keeps_existing_and_extracts),
		cmocka_unit_test(test_prepare_display_name_quoting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
