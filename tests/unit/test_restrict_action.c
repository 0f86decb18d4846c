/* Unit tests for access(5) action parsing (what maps and Lua policies
 * return) and the reply lines actions turn into. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "restrict/restrict.h"

static int
parse(const char *s, struct restrict_action *a)
{
	char err[200];
	return restrict_action_parse(s, strlen(s), a, err, sizeof err);
}

static void
test_valid(void **state)
{
	(void)state;
	struct restrict_action a;
	assert_int_equal(parse("OK", &a), 0);
	assert_int_equal(a.kind, RESTRICT_ACT_OK);
	assert_int_equal(parse("  dunno\t", &a), 0);
	assert_int_equal(a.kind, RESTRICT_ACT_DUNNO);
	assert_int_equal(parse("REJECT", &a), 0);
	assert_int_equal(a.kind, RESTRICT_ACT_REJECT);
	assert_int_equal(a.code, 554);
	assert_string_equal(a.text, "");
	assert_int_equal(parse("REJECT go away", &a), 0);
	assert_string_equal(a.text, "go away");
	assert_int_equal(parse("reject 5.7.2 no thanks", &a), 0);
	assert_string_equal(a.dsn, "5.7.2");
	assert_string_equal(a.text, "no thanks");
	assert_int_equal(parse("DEFER later", &a), 0);
	assert_int_equal(a.kind, RESTRICT_ACT_DEFER);
	assert_int_equal(a.code, 450);
	assert_int_equal(parse("550 5.1.1 no such user", &a), 0);
	assert_int_equal(a.kind, RESTRICT_ACT_REJECT);
	assert_int_equal(a.code, 550);
	assert_string_equal(a.dsn, "5.1.1");
	assert_string_equal(a.text, "no such user");
	assert_int_equal(parse("421 closing", &a), 0);
	assert_int_equal(a.kind, RESTRICT_ACT_DEFER);
	assert_int_equal(a.code, 421);
	assert_int_equal(parse("DEFER_IF_PERMIT greylisted", &a), 0);
	assert_int_equal(a.kind, RESTRICT_ACT_DEFER_IF_PERMIT);
	assert_int_equal(parse("DEFER_IF_REJECT", &a), 0);
	assert_int_equal(a.kind, RESTRICT_ACT_DEFER_IF_REJECT);
	assert_int_equal(parse("PREPEND X-Policy: checked", &a), 0);
	assert_int_equal(a.kind, RESTRICT_ACT_PREPEND);
	assert_string_equal(a.text, "X-Policy: checked");
	assert_int_equal(parse("HOLD", &a), 0);
	assert_int_equal(a.kind, RESTRICT_ACT_HOLD);
	assert_int_equal(parse("DISCARD spam", &a), 0);
	assert_int_equal(a.kind, RESTRICT_ACT_DISCARD);
	assert_int_equal(parse("WARN odd client", &a), 0);
	assert_int_equal(a.kind, RESTRICT_ACT_WARN);
	assert_int_equal(parse("INFO noted", &a), 0);
	assert_int_equal(a.kind, RESTRICT_ACT_INFO);
}

static void
test_invalid(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "   ", "FOO", "OK please", "DUNNO x", "PREPEND", "PREPEND no colon",
		"PREPEND : empty name", "REJECT line\r\nbreak", "REJECT tab\tinside\x01",
		"REJECT caf\xc3\xa9", "250 ok", "600 x", "45 x", "4500 x", "550 4.1.1 mismatch",
		"450 5.1.1 mismatch", "FILTER smtp:x", "REDIRECT a@b", "BCC a@b",
	};
	struct restrict_action a;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (parse(bad[i], &a) == 0)
			fail_msg("accepted bad action \"%s\"", bad[i]);
	/* embedded NUL */
	char err[200];
	assert_int_equal(restrict_action_parse("OK\0x", 4, &a, err, sizeof err), -1);
	/* too long text */
	char longtext[RESTRICT_TEXT_MAX + 20];
	memcpy(longtext, "REJECT ", 7);
	memset(longtext + 7, 'x', sizeof longtext - 8);
	longtext[sizeof longtext - 1] = '\0';
	assert_int_equal(parse(longtext, &a), -1);
}

static void
test_reply(void **state)
{
	(void)state;
	struct restrict_action a;
	char out[512];
	assert_int_equal(parse("REJECT", &a), 0);
	restrict_action_reply(&a, RESTRICT_CLASS_RECIPIENT, "x@y.test", out, sizeof out);
	assert_string_equal(out, "554 5.7.1 <x@y.test>: Recipient address rejected: Access denied");
	assert_int_equal(parse("DEFER try later", &a), 0);
	restrict_action_reply(&a, RESTRICT_CLASS_SENDER, "s@z.test", out, sizeof out);
	assert_string_equal(out, "450 4.7.1 <s@z.test>: Sender address rejected: try later");
	assert_int_equal(parse("550 5.1.1 nope", &a), 0);
	restrict_action_reply(&a, RESTRICT_CLASS_CLIENT, "unknown[192.0.2.1]", out, sizeof out);
	assert_string_equal(out, "550 5.1.1 <unknown[192.0.2.1]>: Client host rejected: nope");
	assert_int_equal(parse("521 bye", &a), 0);
	restrict_action_reply(&a, RESTRICT_CLASS_HELO, "h", out, sizeof out);
	assert_string_equal(out, "521 5.7.1 <h>: Helo command rejected: bye");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_reply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
