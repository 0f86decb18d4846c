/* i;unicode-casemap (RFC 5051; core/unicode_casemap.c). Each expected form
 * below is read off UnicodeData.txt (Unicode 15.0, Debian unicode-data):
 * field 14 is the simple titlecase mapping, field 5 the decomposition;
 * the comment at each case names the fields used. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "postern/unicode_casemap.h"

/* fold(in) == want, and cmp/contains agree with it. */
static void
check_form(const char *in, size_t inlen, const char *want, size_t wantlen)
{
	struct pt_strbuf b = { 0 };

	pt_casemap_fold(in, inlen, &b);
	assert_false(b.oom);
	if (b.len != wantlen || memcmp(b.p ? b.p : "", want, wantlen) != 0) {
		print_error("fold of %zu octets: got %zu octets, want %zu\n", inlen, b.len, wantlen);
		fail();
	}
	/* a string and its form are equal, and each contains the other */
	assert_int_equal(pt_casemap_cmp(in, inlen, want, wantlen), 0);
	assert_true(pt_casemap_contains(in, inlen, want, wantlen));
	assert_true(pt_casemap_contains(want, wantlen, in, inlen));
	/* the in-place fold gives the same */
	struct pt_strbuf c = { 0 };
	pt_strbuf_put(&c, in, inlen);
	pt_casemap_fold_buf(&c);
	assert_int_equal(c.len, wantlen);
	assert_memory_equal(c.p, want, wantlen);
	pt_strbuf_free(&c);
	pt_strbuf_free(&b);
}

#define FORM(in, want) check_form(in, sizeof(in) - 1, want, sizeof(want) - 1)
#define EQ(a, b) assert_int_equal(pt_casemap_cmp(a, sizeof(a) - 1, b, sizeof(b) - 1), 0)
#define NE(a, b) assert_int_not_equal(pt_casemap_cmp(a, sizeof(a) - 1, b, sizeof(b) - 1), 0)
#define HAS(h, n) has(h, sizeof(h) - 1, n, sizeof(n) - 1)
#define LT(a, b) do { \
	assert_true(pt_casemap_cmp(a, sizeof(a) - 1, b, sizeof(b) - 1) < 0); \
	assert_true(pt_casemap_cmp(b, sizeof(b) - 1, a, sizeof(a) - 1) > 0); \
} while (0)

static void
test_ascii(void **state)
{
	(void)state;
	/* ASCII: a-z to A-Z, nothing else changes (i;ascii-casemap's answers) */
	FORM("Hello, World_0~", "HELLO, WORLD_0~");
	FORM("", "");
	EQ("abc", "ABC");
	LT("abc", "abd");
	LT("ab", "abc");
	LT("a", "_");        /* "A" 0x41 < "_" 0x5F, as before */
	LT("", "a");
	/* every ASCII octet */
	for (int c = 0; c < 128; c++) {
		char in = (char)c, want = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
		check_form(&in, 1, &want, 1);
	}
}

static void
test_rfc5051_steps(void **state)
{
	(void)state;
	/* U+00E1 a acute: field 14 = 00C1, 00C1 field 5 = 0041 0301 */
	FORM("\xc3\xa1", "A\xcc\x81");
	/* U+00C1: its own titlecase; decomposes alike */
	EQ("\xc3\xa1", "\xc3\x81");
	/* and the decomposed spelling is the same string */
	EQ("\xc3\xa1", "a\xcc\x81");
	/* U+01C6 dz caron: field 14 = 01C5, field 5 of 01C5 = <compat> 0044
	 * 017E, 017E -> 017D (field 14) = 005A 030C: "DZ" + caron */
	FORM("\xc7\x86", "DZ\xcc\x8c");
	/* U+01C4 (field 14 = 01C5) and U+01C5 itself: the same form */
	EQ("\xc7\x84", "\xc7\x86");
	EQ("\xc7\x85", "\xc7\x86");
	/* U+FB01 fi ligature: no titlecase, field 5 = <compat> 0066 0069,
	 * each titlecased: "FI"; so it equals "fi" and "FI" */
	FORM("\xef\xac\x81", "FI");
	EQ("\xef\xac\x81", "fi");
	EQ("\xef\xac\x81", "Fi");
	/* U+212A KELVIN SIGN: field 5 = 004B */
	FORM("\xe2\x84\xaa", "K");
	/* U+2126 OHM SIGN: field 5 = 03A9; U+03C9 omega: field 14 = 03A9 */
	EQ("\xe2\x84\xa6", "\xcf\x89");
	/* U+00BD one half: <fraction> 0031 2044 0032 */
	FORM("\xc2\xbd", "1\xe2\x81\x84" "2");
	/* U+FF21 fullwidth A: <wide> 0041; U+FF41 fullwidth a: <wide> 0061 -> 0041 */
	EQ("\xef\xbc\xa1", "a");
	EQ("\xef\xbd\x81", "A");
	/* U+1F80: field 14 = 1F88 = 1F08 0345; 1F08 = 0391 0313; 0345: field 14 = 0399 */
	FORM("\xe1\xbe\x80", "\xce\x91\xcc\x93\xce\x99");
	/* U+FDFA: the longest form, 18 Arabic letters and 2 spaces (33 octets) */
	{
		struct pt_strbuf b = { 0 };
		pt_casemap_fold("\xef\xb7\xba", 3, &b);
		assert_int_equal(b.len, 33);
		pt_strbuf_free(&b);
	}
}

static void
test_language_cases(void **state)
{
	(void)state;
	/* Greek sigma: U+03C3 and final U+03C2 both have field 14 = 03A3 */
	FORM("\xcf\x83", "\xce\xa3");
	FORM("\xcf\x82", "\xce\xa3");
	EQ("\xce\xbf\xce\xb4\xcf\x8c\xcf\x82", "\xce\x9f\xce\x94\xce\x8c\xce\xa3"); /* odos, ODOS */
	/* German sharp s U+00DF: no field 14, no field 5 -- stays itself, so
	 * it is neither "ss" nor capital sharp s U+1E9E (also unmapped) */
	FORM("\xc3\x9f", "\xc3\x9f");
	NE("\xc3\x9f", "ss");
	NE("\xc3\x9f", "SS");
	NE("\xc3\x9f", "\xe1\xba\x9e");
	FORM("stra\xc3\x9f" "e", "STRA\xc3\x9f" "E");
	/* Turkish: dotless i U+0131 has field 14 = 0049, so it equals "i";
	 * dotted capital I U+0130 has no titlecase and field 5 = 0049 0307,
	 * so it is "I" + combining dot, not "i" */
	FORM("\xc4\xb1", "I");
	EQ("\xc4\xb1", "i");
	FORM("\xc4\xb0", "I\xcc\x87");
	NE("\xc4\xb0", "i");
	EQ("\xc4\xb0", "i\xcc\x87");
	/* long s U+017F: field 14 = 0053 */
	EQ("\xc5\xbf", "s");
	/* Cyrillic: U+0436 zhe, field 14 = 0416 */
	EQ("\xd0\xb6", "\xd0\x96");
	/* Hangul syllable U+AC01 (gag) = jamo 1100 1161 11A8 (chapter 3.12) */
	FORM("\xea\xb0\x81", "\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8");
	FORM("\xea\xb0\x80", "\xe1\x84\x80\xe1\x85\xa1");
	/* CJK ideograph U+4E00: no mapping */
	FORM("\xe4\xb8\x80", "\xe4\xb8\x80");
	/* outside the BMP: U+10428 Deseret small long i, field 14 = 10400 */
	FORM("\xf0\x90\x90\xa8", "\xf0\x90\x90\x80");
	/* U+1D400 mathematical bold A: <font> 0041 */
	FORM("\xf0\x9d\x90\x80", "A");
}

static void
test_invalid_utf8(void **state)
{
	(void)state;
	/* bad octets stand for themselves; the rest still folds */
	FORM("a\xff" "b", "A\xff" "B");
	FORM("\x80", "\x80");
	FORM("x\xc3", "X\xc3");                     /* cut short at the end */
	FORM("\xc3(", "\xc3(");                     /* no continuation */
	FORM("\xc0\xaf", "\xc0\xaf");               /* overlong "/" */
	FORM("\xe0\x80\xaf", "\xe0\x80\xaf");       /* overlong, 3 octets */
	FORM("\xed\xa0\x80", "\xed\xa0\x80");       /* surrogate D800 */
	FORM("\xf4\x90\x80\x80", "\xf4\x90\x80\x80"); /* past U+10FFFF */
	FORM("\xf8\x88\x80\x80\x80", "\xf8\x88\x80\x80\x80");
	FORM("\xc3\xa1\xff\xc3\xa1", "A\xcc\x81\xff" "A\xcc\x81");
	/* a lone lead octet before a valid one: each on its own */
	FORM("\xe2\xc3\xa1", "\xe2" "A\xcc\x81");
	assert_true(pt_casemap_contains("xx\xffyy", 5, "\xffY", 2));
	assert_int_equal(pt_casemap_cmp("\xff", 1, "\xfe", 1), 1);
	/* NULs are octets like any other */
	check_form("a\0b", 3, "A\0B", 3);
}

static void
test_order(void **state)
{
	(void)state;
	/* order is octet order of the forms */
	LT("e", "\xc3\xa9");      /* "E" < "E" U+0301 */
	LT("\xc3\xa9", "f");      /* "E" U+0301 < "F" */
	LT("ea", "\xc3\xa9");     /* "EA" < "E" U+0301: a combining mark's lead 0xCC is past ASCII */
	LT("Z", "\xc3\x9f");      /* "Z" < 0xC3 0x9F */
	LT("\xce\xb1", "\xd0\xb0"); /* Greek before Cyrillic (0xCE < 0xD0) */
	/* ties broken by nothing but the forms */
	EQ("M\xc3\xbcller", "M\xc3\x9cLLER");
	LT("M\xc3\xbcller", "Mz");
}

/* pt_casemap_contains, and the same answer from the needle prepared
 * once (pt_casemap_needle_in), asked twice. */
static int
has(const char *h, size_t hlen, const char *n, size_t nlen)
{
	int want = pt_casemap_contains(h, hlen, n, nlen);
	struct pt_casemap_needle cn;
	assert_int_equal(pt_casemap_needle_init(&cn, n, nlen), 0);
	assert_int_equal(pt_casemap_needle_in(&cn, h, hlen), want);
	assert_int_equal(pt_casemap_needle_in(&cn, h, hlen), want);
	pt_casemap_needle_free(&cn);
	return want;
}

static void
test_contains(void **state)
{
	(void)state;
	assert_true(HAS("abc", ""));
	assert_true(pt_casemap_contains(NULL, 0, "", 0));
	assert_true(has(NULL, 0, "", 0));
	assert_false(has(NULL, 0, "a", 1));
	assert_false(HAS("", "a"));
	assert_true(HAS("Hello World", "o w"));
	assert_false(HAS("Hello World", "ow"));
	/* M\u00fcller in "Herr M\u00dcLLER" */
	assert_true(HAS("Herr M\xc3\x9cLLER", "m\xc3\xbcller"));
	/* the ligature is found by "fi" and finds "FI" */
	assert_true(HAS("a \xef\xac\x81le", "FIL"));
	assert_true(HAS("PROFIT", "\xef\xac\x81"));
	/* the base letter matches inside a decomposed accented one */
	assert_true(HAS("caf\xc3\xa9", "CAFE"));
	assert_false(HAS("cafe", "caf\xc3\xa9"));
	/* sigma in any form */
	assert_true(HAS("\xce\xbb\xcf\x8c\xce\xb3\xce\xbf\xcf\x82", "\xce\xbf\xcf\x83"));
	/* Knuth-Morris-Pratt fallbacks in the folded text */
	assert_true(HAS("aaaab", "AAB"));
	assert_true(HAS("\xc3\xa1\xc3\xa1\xc3\xa1x", "\xc3\x81\xc3\x81x"));
	/* a long needle (heap tables) */
	char hay[2000], nd[600];
	memset(hay, 'q', sizeof hay);
	memset(nd, 'Q', sizeof nd);
	assert_true(has(hay, sizeof hay, nd, sizeof nd));
	nd[599] = 'r';
	assert_false(has(hay, sizeof hay, nd, sizeof nd));
	/* a long non-ASCII needle */
	char nd2[900];
	for (size_t i = 0; i < sizeof nd2; i += 3)
		memcpy(nd2 + i, "\xef\xac\x81", 3);
	char hay2[500];
	for (size_t i = 0; i < sizeof hay2; i += 2)
		memcpy(hay2 + i, "fi", 2);
	assert_true(has(hay2, sizeof hay2, nd2, 3 * 100));
	assert_false(has(hay2, sizeof hay2, nd2, sizeof nd2));
}

/* Bounded work: a form is at most 33 octets per input character, and a
 * long string of the longest folds without trouble. */
static void
test_expansion(void **state)
{
	(void)state;
	size_t n = 3 * 10000;
	char *s = malloc(n);
	assert_non_null(s);
	for (size_t i = 0; i < n; i += 3)
		memcpy(s + i, "\xef\xb7\xba", 3);
	struct pt_strbuf b = { 0 };
	pt_casemap_fold(s, n, &b);
	assert_int_equal(b.len, 33 * 10000);
	assert_int_equal(pt_casemap_cmp(s, n, b.p, b.len), 0);
	pt_strbuf_free(&b);
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ascii),
		cmocka_unit_test(test_rfc5051_steps),
		cmocka_unit_test(test_language_cases),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_contains),
		cmocka_unit_test(test_expansion),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
