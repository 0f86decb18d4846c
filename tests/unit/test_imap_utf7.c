/* Modified UTF-7 mailbox names (RFC 3501 §5.1.3): both directions, the
 * RFC's own example, and strict refusal of every non-canonical spelling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imap/imap_msg.h"

struct pair { const char *utf8, *utf7; };
static const struct pair pairs[] = {
	{ "INBOX", "INBOX" },
	{ "", "" },
	{ "&", "&-" },
	{ "Tom & Jerry", "Tom &- Jerry" },
	/* RFC 3501 §5.1.3 */
	{ "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	  "~peter/mail/&U,BTFw-/&ZeVnLIqe-" },
	{ "Entw\xc3\xbcrfe", "Entw&APw-rfe" },
	{ "\xc3\xa4\xc3\xb6\xc3\xbc", "&AOQA9gD8-" },
	{ "Gel\xc3\xb6scht/Sp\xc3\xa4ter", "Gel&APY-scht/Sp&AOQ-ter" },
	/* U+1F600 as a surrogate pair */
	{ "\xf0\x9f\x98\x80", "&2D3eAA-" },
	{ "a\tb", "a&AAk-b" },
	{ "\xd0\x9f\xd1\x80\xd0\xb8", "&BB8EQAQ4-" },
};

static void
test_roundtrip(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
		struct pt_strbuf b = { 0 };
		assert_int_equal(imap_utf7_encode(pairs[i].utf8, strlen(pairs[i].utf8), &b), 0);
		assert_string_equal(b.p ? b.p : "", pairs[i].utf7);
		pt_strbuf_free(&b);
		assert_int_equal(imap_utf7_decode(pairs[i].utf7, strlen(pairs[i].utf7), &b), 0);
		assert_string_equal(b.p ? b.p : "", pairs[i].utf8);
		pt_strbuf_free(&b);
	}
}

static void
test_decode_refuses(void **state)
{
	(void)state;
	const char *bad[] = {
		"&",              /* unterminated */
		"&AOQ",           /* unterminated run */
		"&AOQ-&APY-",     /* two runs back to back: one would do */
		"&AEE-",          /* 'A' must be written directly */
		"&ACY-",          /* '&' must be "&-" */
		"&AOR-",          /* nonzero padding bits */
		"&AOQA-",         /* a whole extra base64 digit */
		"&A-",            /* too short for one unit */
		"&2D0-",          /* lone high surrogate */
		"&3gA-",          /* lone low surrogate */
		"&2D3YPQ-",       /* high followed by high */
		"&AOQ/-",         /* '/' is not modified base64 */
		"&AOQ=-",         /* no '=' padding */
		"a\x80\x62",      /* 8-bit (then "b") */
		"a\tb",           /* control character sent directly */
		"&AAA-",          /* NUL */
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct pt_strbuf b = { 0 };
		pt_strbuf_puts(&b, "keep");
		assert_int_equal(imap_utf7_decode(bad[i], strlen(bad[i]), &b), -1);
		assert_string_equal(b.p, "keep"); /* nothing appended on error */
		pt_strbuf_free(&b);
	}
	/* "-" outside a shift is an ordinary character */
	struct pt_strbuf b = { 0 };
	assert_int_equal(imap_utf7_decode("x&--", 4, &b), 0);
	assert_string_equal(b.p, "x&-");
	pt_strbuf_free(&b);
	/* "&-" right after a run is fine (it is not a second run) */
	assert_int_equal(imap_utf7_decode("&AOQ-&-", 7, &b), 0);
	assert_string_equal(b.p, "\xc3\xa4&");
	pt_strbuf_free(&b);
}

static void
test_encode_refuses_bad_utf8(void **state)
{
	(void)state;
	const char *bad[] = {
		"\xc3",             /* truncated */
		"\xc0\xaf",         /* overlong '/' */
		"\xed\xa0\x80",     /* surrogate */
		"\xf4\x90\x80\x80", /* past U+10FFFF */
		"\xff",
		"ok\xe2\x82",       /* truncated at the end */
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct pt_strbuf b = { 0 };
		assert_int_equal(imap_utf7_encode(bad[i], strlen(bad[i]), &b), -1);
		assert_true(b.p == NULL || b.len == 0);
		pt_strbuf_free(&b);
	}
	struct pt_strbuf b = { 0 };
	assert_int_equal(imap_utf7_encode("a\0b", 3, &b), -1);
	pt_strbuf_free(&b);
}

/* Every prefix of valid names, copied to exact-size buffers: no over-read,
 * and a decoded prefix re-encodes to itself. */
static void
test_every_prefix(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof pairs / sizeof *pairs; k++) {
		const char *full = pairs[k].utf7;
		size_t n = strlen(full);
		for (size_t i = 0; i <= n; i++) {
			char *copy = malloc(i ? i : 1);
			memcpy(copy, full, i);
			struct pt_strbuf d = { 0 }, e = { 0 };
			if (imap_utf7_decode(copy, i, &d) == 0) {
				assert_int_equal(imap_utf7_encode(d.p ? d.p : "", d.len, &e), 0);
				assert_int_equal(e.len, i);
				assert_memory_equal(e.p ? e.p : "", copy, i);
			}
			pt_strbuf_free(&d);
			pt_strbuf_free(&e);
			free(copy);
		}
		full = pairs[k].utf8;
		n = strlen(full);
		for (size_t i = 0; i <= n; i++) {
			char *copy = malloc(i ? i : 1);
			memcpy(copy, full, i);
			struct pt_strbuf e = { 0 };
			(void)imap_utf7_encode(copy, i, &e);
			pt_strbuf_free(&e);
			free(copy);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_decode_refuses),
		cmocka_unit_test(test_encode_refuses_bad_utf8),
		cmocka_unit_test(test_every_prefix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
