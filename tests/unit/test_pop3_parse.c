/* Unit tests for the pop3 module's pure parts: command lines, message
 * numbers, argument splitting, pop3_uidl_format (expansion and check),
 * dot-stuffing (fed at every split of the input) and the TOP cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pop3/pop3.h"

static void
cmd_is(const char *line, enum pop3_verb verb, const char *name, const char *arg)
{
	struct pop3_cmd c;

	pop3_parse_command(line, strlen(line), &c);
	assert_int_equal(c.verb, verb);
	assert_string_equal(c.name, name);
	assert_int_equal(c.arglen, strlen(arg));
	assert_memory_equal(c.arg, arg, c.arglen);
}

static void
test_commands(void **state)
{
	(void)state;
	cmd_is("CAPA", POP3_CAPA, "CAPA", "");
	cmd_is("capa", POP3_CAPA, "CAPA", "");
	cmd_is("User alice", POP3_USER, "USER", "alice");
	/* A password keeps its spaces, leading and trailing ones too. */
	cmd_is("PASS  my secret ", POP3_PASS, "PASS", " my secret ");
	cmd_is("AUTH PLAIN AGFsaWNlAHNlY3JldA==", POP3_AUTH, "AUTH", "PLAIN AGFsaWNlAHNlY3JldA==");
	cmd_is("STLS", POP3_STLS, "STLS", "");
	cmd_is("QUIT", POP3_QUIT, "QUIT", "");
	cmd_is("STAT", POP3_STAT, "STAT", "");
	cmd_is("LIST 1", POP3_LIST, "LIST", "1");
	cmd_is("uidl", POP3_UIDL, "UIDL", "");
	cmd_is("RETR 2", POP3_RETR, "RETR", "2");
	cmd_is("TOP 1 0", POP3_TOP, "TOP", "1 0");
	cmd_is("DELE 3", POP3_DELE, "DELE", "3");
	cmd_is("RSET", POP3_RSET, "RSET", "");
	cmd_is("NOOP", POP3_NOOP, "NOOP", "");
	cmd_is("APOP a b", POP3_APOP, "APOP", "a b");
	cmd_is("LAST", POP3_LAST, "LAST", "");
	cmd_is("FOO bar", POP3_UNKNOWN, "FOO", "bar");
	cmd_is("", POP3_UNKNOWN, "", "");
	cmd_is(" STAT", POP3_UNKNOWN, "", "STAT");
	cmd_is("STATS", POP3_UNKNOWN, "STATS", "");
	cmd_is("STA", POP3_UNKNOWN, "STA", "");
	/* Control bytes never reach a reply or a log as they came. */
	cmd_is("X\x01Y", POP3_UNKNOWN, "X?Y", "");
	/* A keyword longer than the name buffer is cut and matches nothing. */
	cmd_is("RETRRETRRETRRETRRETR 1", POP3_UNKNOWN, "RETRRETRRETRRET", "1");
	cmd_is("CAPAAAAAAAAAAAAAAAAA", POP3_UNKNOWN, "CAPAAAAAAAAAAAA", "");
	assert_string_equal(pop3_verb_name(POP3_TOP), "TOP");
	assert_string_equal(pop3_verb_name((enum pop3_verb)999), "");
}

static void
test_embedded_nul(void **state)
{
	struct pop3_cmd c;
	static const char line[] = "USER a\0b";

	(void)state;
	pop3_parse_command(line, sizeof(line) - 1, &c);
	assert_int_equal(c.verb, POP3_USER);
	assert_int_equal(c.arglen, 3);
	pop3_parse_command("QU\0IT", 5, &c);
	assert_int_equal(c.verb, POP3_UNKNOWN);
}

static void
test_numbers(void **state)
{
	uint32_t v = 7;

	(void)state;
	assert_int_equal(pop3_parse_number("1", 1, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(pop3_parse_number("0", 1, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(pop3_parse_number("0004294967295", 13, &v), 0);
	assert_int_equal(v, 4294967295u);
	assert_int_equal(pop3_parse_number("4294967296", 10, &v), -2);
	assert_int_equal(pop3_parse_number("99999999999999999999999", 23, &v), -2);
	assert_int_equal(pop3_parse_number("", 0, &v), -1);
	assert_int_equal(pop3_parse_number("-1", 2, &v), -1);
	assert_int_equal(pop3_parse_number("+1", 2, &v), -1);
	assert_int_equal(pop3_parse_number("1a", 2, &v), -1);
	assert_int_equal(pop3_parse_number(" 1", 2, &v), -1);
	/* Only len bytes count. */
	assert_int_equal(pop3_parse_number("12x", 2, &v), 0);
	assert_int_equal(v, 12);
}

static void
test_split_args(void **state)
{
	const char *w[2];
	size_t wl[2];

	(void)state;
	assert_int_equal(pop3_split_args("", 0, w, wl, 2), 0);
	assert_int_equal(pop3_split_args("   ", 3, w, wl, 2), 0);
	assert_int_equal(pop3_split_args("1", 1, w, wl, 2), 1);
	assert_int_equal(wl[0], 1);
	assert_int_equal(pop3_split_args(" 1  20 ", 7, w, wl, 2), 2);
	assert_memory_equal(w[0], "1", 1);
	assert_int_equal(wl[1], 2);
	assert_memory_equal(w[1], "20", 2);
	assert_int_equal(pop3_split_args("1 2 3", 5, w, wl, 2), 3);
}

static void
uidl_is(const char *fmt, uint32_t uid, uint32_t v, const char *expect)
{
	char out[POP3_UIDL_MAX], err[256];

	assert_int_equal(pop3_uidl_format_check(fmt, err, sizeof(err)), 0);
	assert_int_equal(pop3_uidl_format(fmt, uid, v, out, sizeof(out)), strlen(expect));
	assert_string_equal(out, expect);
}

static void
test_uidl_format(void **state)
{
	(void)state;
	/* The reference: UID 1, UIDVALIDITY 1795848815 -> 000000016b0a7a6f. */
	uidl_is("%08Xu%08Xv", 1, 1795848815u, "000000016b0a7a6f");
	uidl_is("%08Xu%08Xv", 0xabcdef12u, 1, "abcdef1200000001");
	uidl_is("%u", 42, 7, "42");
	uidl_is("%v.%u", 42, 7, "7.42");
	uidl_is("%Xu", 255, 7, "ff");
	uidl_is("%10u", 5, 0, "0000000005");
	uidl_is("%{uidvalidity}-%{uid}", 3, 9, "9-3");
	uidl_is("x%%%u", 3, 9, "x%3");
	uidl_is("%08Xv%08Xu", 1, 2, "0000000200000001");
}

static void
uidl_bad(const char *fmt, const char *reason_part)
{
	char err[256] = "";

	assert_int_equal(pop3_uidl_format_check(fmt, err, sizeof(err)), -1);
	assert_non_null(strstr(err, reason_part));
}

static void
test_uidl_check(void **state)
{
	char out[8];

	(void)state;
	uidl_bad("%m", "unsupported variable %m");
	uidl_bad("%08Xu%g", "unsupported variable %g");
	uidl_bad("%f", "unsupported");
	uidl_bad("%{md5}", "unsupported");
	uidl_bad("%{uid", "unsupported");
	uidl_bad("%", "unsupported");
	uidl_bad("%08X", "unsupported");
	uidl_bad("%999u", "unsupported");
	uidl_bad("%v", "UID");
	uidl_bad("", "UID");
	uidl_bad("a b%u", "printable");
	uidl_bad("%u%20u%20u%20u%20u", "70");
	/* A bad format or a short buffer gives an error, never a cut UIDL. */
	assert_int_equal(pop3_uidl_format("%m", 1, 1, out, sizeof(out)), (size_t)-1);
	assert_int_equal(pop3_uidl_format("%08Xu%08Xv", 1, 1, out, sizeof(out)), (size_t)-1);
	assert_int_equal(pop3_uidl_format("%u", 1, 1, out, 0), (size_t)-1);
}

/* Dot-stuff input in two pieces split at off, through a small window
 * (cap) to exercise partial copies. */
static char *
stuff_split(const char *in, size_t len, size_t off, size_t cap, size_t *outlen)
{
	char *out = malloc(len * 2 + 1), win[8];
	size_t o = 0;
	int bol = 1;
	const char *pieces[2] = { in, in + off };
	size_t plen[2] = { off, len - off };

	assert_true(cap <= sizeof(win));
	for (int p = 0; p < 2; p++) {
		size_t i = 0;
		while (i < plen[p]) {
			size_t w = 0, used = pop3_dot_stuff(pieces[p] + i, plen[p] - i, win, cap, &w, &bol);
			assert_true(used > 0 || w > 0);
			memcpy(out + o, win, w);
			o += w;
			i += used;
		}
	}
	*outlen = o;
	return out;
}

static void
test_dot_stuff(void **state)
{
	static const char in[] = ".a\r\nb.\r\n..c\r\n.\r\nend.\r\n.";
	static const char want[] = "..a\r\nb.\r\n...c\r\n..\r\nend.\r\n..";
	size_t len = sizeof(in) - 1;

	(void)state;
	for (size_t off = 0; off <= len; off++)
		for (size_t cap = 2; cap <= 8; cap++) {
			size_t n;
			char *out = stuff_split(in, len, off, cap, &n);
			assert_int_equal(n, sizeof(want) - 1);
			assert_memory_equal(out, want, n);
			free(out);
		}
}

static void
test_top_end(void **state)
{
	static const char msg[] = "A: 1\r\nB: 2\r\n\r\nline1\r\nline2\r\nline3";
	size_t hdr = 14, len = sizeof(msg) - 1;

	(void)state;
	assert_int_equal(pop3_top_end(msg, len, hdr, 0), hdr);
	assert_int_equal(pop3_top_end(msg, len, hdr, 1), hdr + 7);
	assert_int_equal(pop3_top_end(msg, len, hdr, 2), hdr + 14);
	assert_int_equal(pop3_top_end(msg, len, hdr, 3), len);
	assert_int_equal(pop3_top_end(msg, len, hdr, 1000), len);
	/* A header-only message, and a hdr_len beyond the data. */
	assert_int_equal(pop3_top_end(msg, hdr, hdr, 5), hdr);
	assert_int_equal(pop3_top_end(msg, 5, hdr, 5), 5);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_embedded_nul),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_split_args),
		cmocka_unit_test(test_uidl_format),
		cmocka_unit_test(test_uidl_check),
		cmocka_unit_test(test_dot_stuff),
		cmocka_unit_test(test_top_end),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
