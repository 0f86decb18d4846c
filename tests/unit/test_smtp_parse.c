/* Unit tests for the SMTP command, path and ESMTP parameter parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/smtp_parse.h"

static void
cmd_is(const char *line, enum smtp_verb verb, const char *arg)
{
	struct smtp_cmd c;

	smtp_parse_command(line, strlen(line), &c);
	assert_int_equal(c.verb, verb);
	if (arg) {
		assert_int_equal(c.arglen, strlen(arg));
		assert_memory_equal(c.arg, arg, c.arglen);
	}
}

static void
test_command_verbs(void **state)
{
	(void)state;
	cmd_is("EHLO client.example", SMTP_VERB_EHLO, "client.example");
	cmd_is("ehlo   client.example  ", SMTP_VERB_EHLO, "client.example");
	cmd_is("HeLo x", SMTP_VERB_HELO, "x");
	cmd_is("MAIL FROM:<a@b>", SMTP_VERB_MAIL, "FROM:<a@b>");
	cmd_is("RCPT TO:<a@b> NOTIFY=NEVER", SMTP_VERB_RCPT, "TO:<a@b> NOTIFY=NEVER");
	cmd_is("DATA", SMTP_VERB_DATA, "");
	cmd_is("BDAT 10 LAST", SMTP_VERB_BDAT, "10 LAST");
	cmd_is("RSET", SMTP_VERB_RSET, "");
	cmd_is("NOOP hello", SMTP_VERB_NOOP, "hello");
	cmd_is("QUIT", SMTP_VERB_QUIT, "");
	cmd_is("VRFY alice", SMTP_VERB_VRFY, "alice");
	cmd_is("HELP", SMTP_VERB_HELP, "");
	cmd_is("STARTTLS", SMTP_VERB_STARTTLS, "");
	cmd_is("starttls", SMTP_VERB_STARTTLS, "");
	cmd_is("AUTH PLAIN", SMTP_VERB_AUTH, "PLAIN");
	cmd_is("ETRN x", SMTP_VERB_ETRN, "x");
	cmd_is("EXPN x", SMTP_VERB_EXPN, "x");
	cmd_is("DATA\tx", SMTP_VERB_DATA, "x");
}

static void
test_command_unknown(void **state)
{
	(void)state;
	cmd_is("FOO", SMTP_VERB_UNKNOWN, NULL);
	cmd_is("", SMTP_VERB_UNKNOWN, NULL);
	cmd_is("MAILX FROM:<a>", SMTP_VERB_UNKNOWN, NULL);
	cmd_is("MAIL:FROM", SMTP_VERB_UNKNOWN, NULL);
	cmd_is(" MAIL FROM:<a>", SMTP_VERB_UNKNOWN, NULL);
	cmd_is("DAT", SMTP_VERB_UNKNOWN, NULL);
	cmd_is("STARTTLSX", SMTP_VERB_UNKNOWN, NULL);
	cmd_is("\x01\x02", SMTP_VERB_UNKNOWN, NULL);
	/* A NUL inside the line does not hide a verb suffix. */
	struct smtp_cmd c;
	smtp_parse_command("DATA\0x", 6, &c);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_string_equal(smtp_verb_name(SMTP_VERB_EHLO), "ehlo");
	assert_string_equal(smtp_verb_name(SMTP_VERB_COUNT), "unknown");
}

/* Parse s as a path; returns 0/-1 and the address. */
static int
path(const char *s, int allow_null, struct smtp_path *p, const char **rest)
{
	size_t rl;
	const char *r = NULL;
	int rc = smtp_parse_path(s, strlen(s), allow_null, p, &r, &rl);

	if (rest)
		*rest = r;
	return rc;
}

static void
path_ok(const char *s, const char *addr)
{
	struct smtp_path p;

	if (path(s, 1, &p, NULL) != 0)
		fail_msg("path %s rejected", s);
	assert_string_equal(p.addr, addr);
	assert_int_equal(p.addrlen, strlen(addr));
}

static void
path_bad(const char *s)
{
	struct smtp_path p;

	if (path(s, 1, &p, NULL) == 0)
		fail_msg("path %s accepted", s);
}

static void
test_path_valid(void **state)
{
	struct smtp_path p;
	const char *rest;
	char local[128];

	(void)state;
	path_ok("<alice@example.com>", "alice@example.com");
	path_ok("  <alice@example.com>", "alice@example.com");
	path_ok("<a.b+tag@sub.example.com>", "a.b+tag@sub.example.com");
	path_ok("<!#$%&'*+-/=?^_`{|}~@x.y>", "!#$%&'*+-/=?^_`{|}~@x.y");
	path_ok("<nodomain>", "nodomain");
	path_ok("<postmaster>", "postmaster");
	path_ok("<Postmaster>", "Postmaster");
	path_ok("alice@example.com", "alice@example.com");
	path_ok("<a@[127.0.0.1]>", "a@[127.0.0.1]");
	path_ok("<a@[IPv6:::1]>", "a@[IPv6:::1]");
	path_ok("<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]");
	path_ok("<a@[x-tag:stuff]>", "a@[x-tag:stuff]");
	path_ok("<a@host-1.ex_ample.com>", "a@host-1.ex_ample.com");
	path_ok("<a@b>", "a@b");

	/* Null sender. */
	assert_int_equal(path("<>", 1, &p, NULL), 0);
	assert_true(p.is_null);
	assert_string_equal(p.addr, "");
	assert_int_equal(path("<> SIZE=10", 1, &p, &rest), 0);
	assert_string_equal(rest, "SIZE=10");

	/* Source routes are parsed and dropped. */
	path_ok("<@relay.example:alice@example.com>", "alice@example.com");
	path_ok("<@r1.example,@r2.example:alice@example.com>", "alice@example.com");

	/* Quoted local parts, with escapes. */
	path_ok("<\"john doe\"@example.com>", "\"john doe\"@example.com");
	assert_int_equal(path("<\"a\\\"b\\\\c\"@x>", 1, &p, NULL), 0);
	assert_int_equal(smtp_path_local(&p, local, sizeof(local), 0), 5);
	assert_string_equal(local, "a\"b\\c");
	assert_string_equal(smtp_path_domain(&p), "x");
	path_ok("<\"\"@example.com>", "\"\"@example.com");

	/* Local part case folding for lookups; domain. */
	assert_int_equal(path("<Alice@Example.COM>", 1, &p, NULL), 0);
	assert_int_equal(smtp_path_local(&p, local, sizeof(local), 1), 5);
	assert_string_equal(local, "alice");
	assert_string_equal(smtp_path_domain(&p), "Example.COM");
	assert_int_equal(path("<bob>", 1, &p, NULL), 0);
	assert_false(p.has_domain);
	assert_string_equal(smtp_path_domain(&p), "");
	assert_int_equal(smtp_path_local(&p, local, 3, 0), -1);

	/* Parameters after the path. */
	assert_int_equal(path("<a@b> SIZE=100 BODY=8BITMIME", 1, &p, &rest), 0);
	assert_string_equal(rest, "SIZE=100 BODY=8BITMIME");
	assert_int_equal(path("<a@b>", 1, &p, &rest), 0);
	assert_string_equal(rest, "");
}

static void
test_path_utf8(void **state)
{
	struct smtp_path p;

	(void)state;
	/* RFC 6531: UTF-8 local parts and U-label domains. */
	assert_int_equal(path("<j\xc3\xb6rg@b\xc3\xbc" "cher.example>", 1, &p, NULL), 0);
	assert_true(p.utf8);
	assert_int_equal(path("<\xe7\x94\xb0\xe4\xb8\xad@\xe4\xbe\x8b\xe3\x81\x88.jp>", 1, &p, NULL), 0);
	assert_true(p.utf8);
	assert_int_equal(path("<plain@ascii.example>", 1, &p, NULL), 0);
	assert_false(p.utf8);
	/* Malformed UTF-8: overlong, lone continuation, truncated, surrogate. */
	path_bad("<\xc0\xafx@example.com>");
	path_bad("<\x80x@example.com>");
	path_bad("<x\xe4\xb8@example.com>");
	path_bad("<x\xed\xa0\x80@example.com>");
	path_bad("<x\xf5\x80\x80\x80@example.com>");
	assert_true(smtp_utf8_valid((const unsigned char *)"\xf0\x9f\x98\x80", 4));
	assert_false(smtp_utf8_valid((const unsigned char *)"\xf0\x9f\x98", 3));
	assert_false(smtp_utf8_valid((const unsigned char *)"\xe0\x80\x80", 3));
}

static void
test_path_invalid(void **state)
{
	struct smtp_path p;
	char big[600];

	(void)state;
	path_bad("");
	path_bad("   ");
	path_bad("<");
	path_bad("<alice@example.com");
	path_bad("alice@example.com>");
	path_bad("<alice@>");
	path_bad("<@example.com>");
	path_bad("<alice@@example.com>");
	path_bad("<alice@example..com>");
	path_bad("<alice@.example.com>");
	path_bad("<alice@example.com.>");
	path_bad("<alice@-example.com>");
	path_bad("<alice@example-.com>");
	path_bad("<.alice@example.com>");
	path_bad("<alice.@example.com>");
	path_bad("<al..ice@example.com>");
	path_bad("<al ice@example.com>");
	path_bad("<al(ice@example.com>");
	path_bad("<alice@exa mple.com>");
	path_bad("<\"unterminated@example.com>");
	path_bad("<\"bad\\\x01\"@x>");
	path_bad("<\"ctl\x01\"@x>");
	path_bad("<a@b>junk");
	path_bad("<a@b><c@d>");
	path_bad("<a@[1.2.3]>");
	path_bad("<a@[999.1.1.1]>");
	path_bad("<a@[IPv6:zz::1]>");
	path_bad("<a@[]>");
	path_bad("<a@[1.2.3.4>");
	path_bad("<@relay.example,alice@example.com>");
	path_bad("<@relay.example alice@example.com>");
	path_bad("<a\r@b>");
	path_bad("<a@b\n>");
	path_bad("<a\0b@c>");
	/* Null path refused where not allowed (RCPT). */
	assert_int_equal(path("<>", 0, &p, NULL), -1);
	/* Overlong: a 63-byte label is fine, 64 is not; the path is <= 256. */
	memset(big, 'a', sizeof(big));
	memcpy(big, "<x@", 3);
	memcpy(big + 3 + 63, ">", 2);
	assert_int_equal(smtp_parse_path(big, 3 + 63 + 1, 1, &p, NULL, NULL), 0);
	memset(big, 'a', sizeof(big));
	memcpy(big, "<x@", 3);
	big[3 + 64] = '>';
	assert_int_equal(smtp_parse_path(big, 3 + 64 + 1, 1, &p, NULL, NULL), -1);
	/* Local part of 300 bytes: path over 256 octets. */
	memset(big, 'a', sizeof(big));
	big[0] = '<';
	memcpy(big + 300, "@b>", 3);
	assert_int_equal(smtp_parse_path(big, 303, 1, &p, NULL, NULL), -1);
	/* Exactly 256 with brackets is accepted, 257 is not. */
	memset(big, 'a', sizeof(big));
	big[0] = '<';
	memcpy(big + 251, "@b.c>", 5);  /* "<" + 250 'a' + "@b.c" + ">" = 256 */
	assert_int_equal(smtp_parse_path(big, 256, 1, &p, NULL, NULL), 0);
	assert_int_equal(p.addrlen, 254);
	memset(big, 'a', sizeof(big));
	big[0] = '<';
	memcpy(big + 252, "@b.c>", 5);  /* 257 */
	assert_int_equal(smtp_parse_path(big, 257, 1, &p, NULL, NULL), -1);
}

static void
test_mail_params(void **state)
{
	struct smtp_mail_params mp;
	const char *s;

	(void)state;
	s = "";
	assert_int_equal(smtp_parse_mail_params(s, 0, &mp), SMTP_PARAM_OK);
	assert_false(mp.has_size);
	s = "SIZE=5120000 BODY=8BITMIME SMTPUTF8";
	assert_int_equal(smtp_parse_mail_params(s, strlen(s), &mp), SMTP_PARAM_OK);
	assert_true(mp.has_size);
	assert_int_equal(mp.size, 5120000);
	assert_int_equal(mp.body, SMTP_BODY_8BITMIME);
	assert_true(mp.smtputf8);
	s = "size=0 body=7bit";
	assert_int_equal(smtp_parse_mail_params(s, strlen(s), &mp), SMTP_PARAM_OK);
	assert_int_equal(mp.body, SMTP_BODY_7BIT);
	assert_int_equal(mp.size, 0);
	s = "SIZE=12x";
	assert_int_equal(smtp_parse_mail_params(s, strlen(s), &mp), SMTP_PARAM_BAD_SIZE);
	s = "SIZE=";
	assert_int_equal(smtp_parse_mail_params(s, strlen(s), &mp), SMTP_PARAM_UNSUPPORTED);
	s = "SIZE=99999999999999999999999";
	assert_int_equal(smtp_parse_mail_params(s, strlen(s), &mp), SMTP_PARAM_BAD_SIZE);
	s = "SIZE=-1";
	assert_int_equal(smtp_parse_mail_params(s, strlen(s), &mp), SMTP_PARAM_BAD_SIZE);
	s = "BODY=BINARYMIME";
	assert_int_equal(smtp_parse_mail_params(s, strlen(s), &mp), SMTP_PARAM_UNSUPPORTED);
	assert_string_equal(mp.bad, "BODY=BINARYMIME");
	s = "SIZE=10 RET=HDRS";
	assert_int_equal(smtp_parse_mail_params(s, strlen(s), &mp), SMTP_PARAM_UNSUPPORTED);
	assert_string_equal(mp.bad, "RET=HDRS");
	s = "X\x01Y";
	assert_int_equal(smtp_parse_mail_params(s, strlen(s), &mp), SMTP_PARAM_UNSUPPORTED);
	assert_string_equal(mp.bad, "X?Y");
	s = "SMTPUTF8=yes";
	assert_int_equal(smtp_parse_mail_params(s, strlen(s), &mp), SMTP_PARAM_UNSUPPORTED);
}

static void
test_rcpt_params(void **state)
{
	char bad[64];
	const char *s;

	(void)state;
	assert_int_equal(smtp_parse_rcpt_params("", 0, bad, sizeof(bad)), SMTP_PARAM_OK);
	s = "  ";
	assert_int_equal(smtp_parse_rcpt_params(s, strlen(s), bad, sizeof(bad)), SMTP_PARAM_OK);
	s = "NOTIFY=NEVER ORCPT=rfc822;a@b";
	assert_int_equal(smtp_parse_rcpt_params(s, strlen(s), bad, sizeof(bad)), SMTP_PARAM_UNSUPPORTED);
	assert_string_equal(bad, "NOTIFY=NEVER");
}

static void
test_bdat_args(void **state)
{
	unsigned long long n;
	int last;

	(void)state;
	assert_int_equal(smtp_parse_bdat("100", 3, &n, &last), 0);
	assert_int_equal(n, 100);
	assert_false(last);
	assert_int_equal(smtp_parse_bdat("0 LAST", 6, &n, &last), 0);
	assert_int_equal(n, 0);
	assert_true(last);
	assert_int_equal(smtp_parse_bdat("5 last", 6, &n, &last), 0);
	assert_true(last);
	assert_int_equal(smtp_parse_bdat("", 0, &n, &last), -1);
	assert_int_equal(smtp_parse_bdat("x", 1, &n, &last), -1);
	assert_int_equal(smtp_parse_bdat("5 FIRST", 7, &n, &last), -1);
	assert_int_equal(smtp_parse_bdat("5 LAST x", 8, &n, &last), -1);
	assert_int_equal(smtp_parse_bdat("-5", 2, &n, &last), -1);
	assert_int_equal(smtp_parse_bdat("99999999999999999999", 20, &n, &last), -1);
}

static void
test_helo_word(void **state)
{
	const char *w = NULL;

	(void)state;
	assert_int_equal(smtp_parse_helo("client.example", 14, &w), 14);
	assert_int_equal(smtp_parse_helo("a b", 3, &w), 1);
	assert_memory_equal(w, "a", 1);
	assert_int_equal(smtp_parse_helo("", 0, &w), 0);
	assert_int_equal(smtp_parse_helo("   ", 3, &w), 0);
}

/* Every prefix of a valid command line parses without crashing and gives
 * a verdict; the full line gives the expected one (parsers are line-based,
 * so splitting means truncation here). */
static void
test_path_every_prefix(void **state)
{
	const char *s = "<@r.example:\"q \\\" x\"@[IPv6:2001:db8::1]> SIZE=10 BODY=7BIT";
	struct smtp_path p;
	const char *rest;
	size_t rl;

	(void)state;
	for (size_t i = 0; i <= strlen(s); i++) {
		int rc = smtp_parse_path(s, i, 1, &p, &rest, &rl);
		if (i < (size_t)(strchr(s, '>') - s) + 1)
			assert_int_equal(rc, -1);
		else
			assert_int_equal(rc, 0);
	}
	assert_string_equal(p.addr, "\"q \\\" x\"@[IPv6:2001:db8::1]");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command_verbs),
		cmocka_unit_test(test_command_unknown),
		cmocka_unit_test(test_path_valid),
		cmocka_unit_test(test_path_utf8),
		cmocka_unit_test(test_path_invalid),
		cmocka_unit_test(test_mail_params),
		cmocka_unit_test(test_rcpt_params),
		cmocka_unit_test(test_bdat_args),
		cmocka_unit_test(test_helo_word),
		cmocka_unit_test(test_path_every_prefix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
