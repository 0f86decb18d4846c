/* Unit tests for the IMAP command reader: framing (literals, LITERAL+,
 * limits, pipelining) with input split at every byte offset, and the
 * parse into tag, name and argument tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postern/strbuf.h"
#include "imap/imap_parse.h"

static void
dump_args(struct pt_strbuf *o, const struct imap_arg *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			pt_strbuf_puts(o, " ");
		switch (a[i].type) {
		case IMAP_ARG_ATOM:
			pt_strbuf_printf(o, "A:%s", a[i].s);
			break;
		case IMAP_ARG_STRING:
			pt_strbuf_printf(o, "S:%s", a[i].s);
			break;
		case IMAP_ARG_LITERAL:
			pt_strbuf_printf(o, "L%zu:", a[i].len);
			for (size_t k = 0; k < a[i].len; k++)
				pt_strbuf_printf(o, a[i].s[k] >= 0x20 && a[i].s[k] < 0x7f ? "%c" : "\\x%02x",
				                 (unsigned char)a[i].s[k]);
			break;
		case IMAP_ARG_NIL:
			pt_strbuf_puts(o, "NIL");
			break;
		case IMAP_ARG_LIST:
			pt_strbuf_puts(o, "(");
			dump_args(o, a[i].list, a[i].n);
			pt_strbuf_puts(o, ")");
			break;
		}
	}
}

/* Feed input in pieces cut at the given offsets; record every event and
 * parsed command as text. max_line / max_literal small enough to test. */
static char *
run(const char *in, size_t len, const size_t *cuts, size_t ncuts, size_t max_line, size_t max_lit)
{
	struct imap_reader r;
	struct pt_strbuf o = { 0 };
	size_t pos = 0;

	imap_reader_init(&r, max_line, max_lit);
	for (size_t c = 0; c <= ncuts; c++) {
		size_t end = c < ncuts ? cuts[c] : len;
		while (pos < end) {
			size_t used = 0;
			enum imap_read ev = imap_reader_feed(&r, in + pos, end - pos, &used);
			assert_true(used <= end - pos);
			pos += used;
			if (ev == IMAP_READ_MORE) {
				assert_int_equal(pos, end);
				break;
			}
			if (ev == IMAP_READ_CONTINUE) {
				pt_strbuf_puts(&o, "[+]");
			} else if (ev == IMAP_READ_COMMAND) {
				struct imap_command cmd;
				if (imap_command_parse(&r, &cmd) == 0) {
					pt_strbuf_printf(&o, "[%s|%s|", cmd.tag, cmd.name);
					dump_args(&o, cmd.args, cmd.nargs);
					pt_strbuf_puts(&o, "]");
				} else {
					pt_strbuf_printf(&o, "[BAD %s|%s]", cmd.tag ? cmd.tag : "-", cmd.error);
				}
				imap_command_free(&cmd);
			} else {
				char tag[64];
				imap_reader_tag(&r, tag, sizeof(tag));
				pt_strbuf_printf(&o, "[%s %s]",
				                 ev == IMAP_READ_TOO_LONG ? "TOOLONG" :
				                 ev == IMAP_READ_LITERAL_TOO_BIG ? "TOOBIG" : "TOOBIG+",
				                 tag);
				imap_reader_reset(&r);
			}
		}
	}
	imap_reader_free(&r);
	pt_strbuf_puts(&o, "");
	return o.p;
}

/* The same result whole, split at every offset, and fed byte by byte. */
static void
check(const char *in, size_t len, const char *want, size_t max_line, size_t max_lit)
{
	char *whole = run(in, len, NULL, 0, max_line, max_lit);
	assert_string_equal(whole, want);
	for (size_t cut = 1; cut < len; cut++) {
		char *s = run(in, len, &cut, 1, max_line, max_lit);
		assert_string_equal(s, want);
		free(s);
	}
	size_t *cuts = malloc(len * sizeof(*cuts));
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	char *bytes = run(in, len, cuts, len ? len - 1 : 0, max_line, max_lit);
	assert_string_equal(bytes, want);
	free(bytes);
	free(cuts);
	free(whole);
}

#define CHECK(in, want) check(in, sizeof(in) - 1, want, 1000, 1000)
#define CHECKL(in, want, ml, mlit) check(in, sizeof(in) - 1, want, ml, mlit)

static void
test_simple(void **state)
{
	(void)state;
	CHECK("a1 NOOP\r\n", "[a1|NOOP|]");
	CHECK("a1 noop\n", "[a1|noop|]");
	CHECK("x LOGIN alice secret\r\n", "[x|LOGIN|A:alice A:secret]");
	CHECK("x SELECT NIL\r\n", "[x|SELECT|NIL]");
}

static void
test_quoted(void **state)
{
	(void)state;
	CHECK("a LOGIN \"al ice\" \"p\\\"w\\\\d\"\r\n", "[a|LOGIN|S:al ice S:p\"w\\d]");
	CHECK("a LOGIN \"\" \"\"\r\n", "[a|LOGIN|S: S:]");
	CHECK("a LOGIN \"x\\y\" z\r\n", "[BAD a|Invalid escape in quoted string]");
	CHECK("a LOGIN \"open\r\n", "[BAD a|Missing '\"']");
	CHECK("a LOGIN \"x\0y\" z\r\n", "[BAD a|Invalid characters in quoted string]");
}

static void
test_literals(void **state)
{
	(void)state;
	CHECK("a LOGIN {5}\r\nal ce {3}\r\npw\n\r\n", "[+][+][a|LOGIN|L5:al ce L3:pw\\x0a]");
	/* LITERAL+: no continuation request. */
	CHECK("a LOGIN {5+}\r\nalice {2+}\r\npw\r\n", "[a|LOGIN|L5:alice L2:pw]");
	CHECK("a APPEND INBOX (\\Seen) {4}\r\na\0\r\n\r\n", "[+][a|APPEND|A:INBOX (A:\\Seen) L4:a\\x00\\x0d\\x0a]");
	CHECK("a X {0}\r\n\r\n", "[+][a|X|L0:]");
	/* A '{' that does not end the line is not a literal. */
	CHECK("a X {3} y\r\n", "[BAD a|Unexpected '{']");
}

static void
test_fetch_atoms(void **state)
{
	(void)state;
	CHECK("f FETCH 1:*,3 (UID BODY.PEEK[HEADER.FIELDS (From To)]<0.100> FLAGS)\r\n",
	      "[f|FETCH|A:1:*,3 (A:UID A:BODY.PEEK[HEADER.FIELDS (From To)]<0.100> A:FLAGS)]");
	CHECK("f UID FETCH 1 BODY[]\r\n", "[f|UID|A:FETCH A:1 A:BODY[]]");
	CHECK("f FETCH 1 BODY[1.2\r\n", "[BAD f|Missing ']']");
	CHECK("l LIST \"\" *\r\n", "[l|LIST|S: A:*]");
	CHECK("l LIST \"\" %/x\r\n", "[l|LIST|S: A:%/x]");
	/* '[' opens a section only after a FETCH attribute name */
	CHECK("f FETCH 1 (binary.peek[1] BINARY.SIZE[2])\r\n", "[f|FETCH|A:1 (A:binary.peek[1] A:BINARY.SIZE[2])]");
	CHECK("c CREATE a[b\r\n", "[c|CREATE|A:a[b]");
	CHECK("l LIST \"\" a[b%\r\n", "[l|LIST|S: A:a[b%]");
	CHECK("s SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}\r\n", "[s|SELECT|A:!#$&'+,-.0123456789:;<=>?@^_`|[}]");
	CHECK("s SELECT x[ y\r\n", "[s|SELECT|A:x[ A:y]");
}

static void
test_lists(void **state)
{
	(void)state;
	CHECK("s STORE 1 +FLAGS (\\Seen $Kw NIL)\r\n", "[s|STORE|A:1 A:+FLAGS (A:\\Seen A:$Kw NIL)]");
	CHECK("s X (a (b (c)) ())\r\n", "[s|X|(A:a (A:b (A:c)) ())]");
	CHECK("s X (a\r\n", "[BAD s|Missing ')']");
	CHECK("s X a)\r\n", "[BAD s|Unexpected ')']");
	CHECK("s X a  b\r\n", "[BAD s|Unexpected space]");
	CHECK("s X ((((((((((((((((((x))))))))))))))))))\r\n", "[BAD s|Too deep nesting]");
}

static void
test_bad_tags(void **state)
{
	(void)state;
	CHECK("\r\n", "[BAD -|Error in IMAP command received by server.]");
	CHECK("NOOP\r\n", "[BAD -|Error in IMAP command received by server.]");
	CHECK("a+ NOOP\r\n", "[BAD -|Error in IMAP command received by server.]");
	CHECK("a \r\n", "[BAD a|Error in IMAP command received by server.]");
}

static void
test_pipelining(void **state)
{
	(void)state;
	CHECK("1 NOOP\r\n2 LOGIN {1+}\r\nx y\r\n3 LOGOUT\r\n",
	      "[1|NOOP|][2|LOGIN|L1:x A:y][3|LOGOUT|]");
}

static void
test_limits(void **state)
{
	(void)state;
	const char *longline = "a NOOP 0123456789012345678901234567890123456789\r\n";
	char *s = run(longline, strlen(longline), NULL, 0, 20, 100);
	assert_string_equal(s, "[TOOLONG *]"); /* answered untagged */
	free(s);
	/* Exactly at the limit is fine (the CRLF is not counted). */
	s = run("a NOOP 12345\r\n", 14, NULL, 0, 12, 100);
	assert_string_equal(s, "[a|NOOP|A:12345]");
	free(s);
	/* A synchronizing literal too big: refused before its data comes,
	 * the next command reads normally. */
	CHECKL("a APPEND INBOX {101}\r\nb NOOP\r\n", "[TOOBIG a][b|NOOP|]", 1000, 100);
	CHECKL("a APPEND INBOX {101+}\r\n", "[TOOBIG+ a]", 1000, 100);
	/* 20 digits is no literal length: a syntax error, not a huge read. */
	CHECKL("a APPEND INBOX {99999999999999999999}\r\n", "[BAD a|Unexpected '{']", 1000, 100);
	CHECKL("a APPEND INBOX {9999999999999999999}\r\n", "[TOOBIG a]", 1000, 100);
}

static void
test_tag_of_partial(void **state)
{
	struct imap_reader r;
	size_t used;
	char tag[16];

	(void)state;
	imap_reader_init(&r, 100, 100);
	imap_reader_tag(&r, tag, sizeof(tag));
	assert_string_equal(tag, "*");
	assert_int_equal(imap_reader_feed(&r, "abc1 APP", 8, &used), IMAP_READ_MORE);
	assert_true(imap_reader_busy(&r));
	imap_reader_tag(&r, tag, sizeof(tag));
	assert_string_equal(tag, "abc1");
	imap_reader_reset(&r);
	assert_false(imap_reader_busy(&r));
	imap_reader_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),       cmocka_unit_test(test_quoted),
		cmocka_unit_test(test_literals),     cmocka_unit_test(test_fetch_atoms),
		cmocka_unit_test(test_lists),        cmocka_unit_test(test_bad_tags),
		cmocka_unit_test(test_pipelining),   cmocka_unit_test(test_limits),
		cmocka_unit_test(test_tag_of_partial),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
