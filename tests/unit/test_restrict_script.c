/* Unit tests for the `postern policy test --script` format: sessions,
 * commands, expected reply lines, comments, CRLF, and every error with
 * its line number. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_script.h"

static void
test_parse(void **state)
{
	(void)state;
	static const char text[] =
		"# the seed's rules\n"
		"client 192.0.2.1 client.example\n"
		"helo bad..host\r\n"
		"   mail <someone@example.com>\n"
		"rcpt <alice@example.com>\n"
		"501 5.5.2 <bad..host>: Helo command rejected: Invalid name\n"
		"\n"
		"client 2001:db8::1\n"
		"sasl alice\n"
		"mail <>\n"
		"250\n"
		"rcpt victim@other.test\n"
		"554 5.7.1 <victim@other.test>: Relay access denied   \n"
		"ehlo x.example";
	struct pt_pscript_step *v;
	size_t n;
	char err[200];
	assert_int_equal(pt_policy_script_parse(text, sizeof text - 1, &v, &n, err, sizeof err), 0);
	assert_int_equal(n, 9);
	assert_int_equal(v[0].op, PT_PSCRIPT_CLIENT);
	assert_string_equal(v[0].arg, "192.0.2.1");
	assert_string_equal(v[0].arg2, "client.example");
	assert_int_equal(v[0].line, 2);
	assert_int_equal(v[0].has_expect, 0);
	assert_int_equal(v[1].op, PT_PSCRIPT_HELO);
	assert_string_equal(v[1].arg, "bad..host");
	assert_int_equal(v[2].op, PT_PSCRIPT_MAIL);
	assert_string_equal(v[2].arg, "someone@example.com");
	assert_int_equal(v[3].op, PT_PSCRIPT_RCPT);
	assert_int_equal(v[3].has_expect, 1);
	assert_int_equal(v[3].expect_line, 6);
	assert_string_equal(v[3].expect, "501 5.5.2 <bad..host>: Helo command rejected: Invalid name");
	assert_string_equal(v[4].arg, "2001:db8::1");
	assert_string_equal(v[4].arg2, "");
	assert_int_equal(v[5].op, PT_PSCRIPT_SASL);
	assert_string_equal(v[5].arg, "alice");
	assert_int_equal(v[6].op, PT_PSCRIPT_MAIL);
	assert_string_equal(v[6].arg, "");
	assert_string_equal(v[6].expect, "250");
	assert_string_equal(v[7].arg, "victim@other.test");
	assert_string_equal(v[7].expect, "554 5.7.1 <victim@other.test>: Relay access denied");
	assert_int_equal(v[8].op, PT_PSCRIPT_HELO);
	assert_string_equal(v[8].arg, "x.example");
	free(v);

	/* empty script: no steps */
	assert_int_equal(pt_policy_script_parse("# nothing\n\n", 11, &v, &n, err, sizeof err), 0);
	assert_int_equal(n, 0);
	free(v);
}

static void
test_errors(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *err;
	} bad[] = {
		{ "helo x\n", "1: a session starts with \"client ADDRESS\"" },
		{ "client 1.2.3.4\nfrobnicate x\n", "2: unknown command \"frobnicate\"" },
		{ "550 no command\n", "1: expected reply without a command before it" },
		{ "client 1.2.3.4\nrcpt <a@b>\n550\n550\n", "4: expected reply without a command" },
		{ "client 1.2.3.4\nrcpt <a@b>\n55 x\n", "3: a reply line is NNN [text]" },
		{ "client 1.2.3.4\nrcpt <a@b>\n5501\n", "3: a reply line is NNN [text]" },
		{ "client\n", "1: usage: client ADDRESS [NAME]" },
		{ "client 1.2.3.4 name extra\n", "1: usage: client ADDRESS [NAME]" },
		{ "client 1.2.3.4\nhelo\n", "2: usage: helo NAME" },
		{ "client 1.2.3.4\nhelo a b\n", "2: usage: helo NAME" },
		{ "client 1.2.3.4\nmail <a@b\n", "2: usage: mail <ADDRESS>" },
		{ "client 1.2.3.4\nrcpt <>\n", "2: usage: rcpt <ADDRESS>" },
		{ "client 1.2.3.4\nrcpt <a b@c>\n", "2: usage: rcpt <ADDRESS>" },
		{ "client 1.2.3.4\nrcpt\n", "2: usage: rcpt <ADDRESS>" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct pt_pscript_step *v = (void *)1;
		size_t n = 99;
		char err[200] = "";
		if (pt_policy_script_parse(bad[i].text, strlen(bad[i].text), &v, &n, err, sizeof err) == 0)
			fail_msg("accepted: %s", bad[i].text);
		if (strncmp(err, bad[i].err, strlen(bad[i].err)) != 0)
			fail_msg("for %s: error \"%s\", wanted \"%s\"", bad[i].text, err, bad[i].err);
	}
	/* a NUL byte in the file */
	struct pt_pscript_step *v;
	size_t n;
	char err[200];
	assert_int_equal(pt_policy_script_parse("client 1.2.3.4\nhelo a\0b\n", 24, &v, &n, err, sizeof err), -1);
	assert_non_null(strstr(err, "2: NUL"));
}

/* The parser only looks at len bytes: no reading past a buffer that is
 * not NUL-terminated, whatever the cut. */
static void
test_every_cut(void **state)
{
	(void)state;
	static const char text[] = "client 192.0.2.1 name\nhelo h\nmail <a@b>\nrcpt <c@d>\n250 2.1.5 Ok\n";
	for (size_t cut = 0; cut <= sizeof text - 1; cut++) {
		char *copy = malloc(cut ? cut : 1);
		memcpy(copy, text, cut);
		struct pt_pscript_step *v = NULL;
		size_t n = 0;
		char err[200];
		if (pt_policy_script_parse(copy, cut, &v, &n, err, sizeof err) == 0)
			free(v);
		free(copy);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_every_cut),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
