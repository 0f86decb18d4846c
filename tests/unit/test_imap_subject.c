/* RFC 5256 §2.1 base subject extraction (SORT SUBJECT, THREAD) and the
 * i;unicode-casemap comparison: leaders, trailers, blobs, "[fwd: ...]",
 * encoded words, and whether the subject counts as a reply. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imap/imap_msg.h"

static void
check(const char *in, const char *want, int want_reply)
{
	struct pt_strbuf b = { 0 };
	int reply = -1;

	imap_base_subject(in, strlen(in), &b, &reply);
	assert_string_equal(b.p ? b.p : "", want);
	assert_int_equal(reply, want_reply);
	pt_strbuf_free(&b);
}

static void
test_leaders_and_trailers(void **state)
{
	(void)state;
	check("hello", "hello", 0);
	check("Re: hello", "hello", 1);
	check("RE:hello", "hello", 1);
	check("Re: Re: re: hello", "hello", 1);
	check("Fwd: hello", "hello", 1);
	check("FW: hello", "hello", 1);
	check("fwd : hello", "hello", 1);
	check("Re[2]: hello", "hello", 1);
	check("[list] Re: hello", "hello", 1);
	check("[list] hello", "hello", 0);
	check("[list] [other] Re: [list] hello", "hello", 1);
	check("hello (fwd)", "hello", 1);
	check("hello (FWD)  (fwd) ", "hello", 1);
	check("[Fwd: Re: hello]", "hello", 1);
	check("[fwd: [fwd: hello] ]", "hello", 1);
	check("  hello \t  world  ", "hello world", 0);
	/* a blob that is all there is stays */
	check("[list]", "[list]", 0);
	check("Re: [list]", "[list]", 1);
	/* not leaders */
	check("Rex: hello", "Rex: hello", 0);
	check("Re hello", "Re hello", 0);
	check("hello: Re: x", "hello: Re: x", 0);
	check("", "", 0);
	check("Re:", "", 1);
}

static void
test_encoded_words(void **state)
{
	(void)state;
	check("=?utf-8?q?Re=3A_gr=C3=BC=C3=9Fe?=", "gr\xc3\xbc\xc3\x9f" "e", 1);
	check("=?iso-8859-1?q?Fwd:_caf=E9?= (fwd)", "caf\xc3\xa9", 1);
}

static void
test_casemap(void **state)
{
	(void)state;
	assert_int_equal(imap_casemap_cmp("abc", 3, "ABC", 3), 0);
	assert_true(imap_casemap_cmp("abc", 3, "abd", 3) < 0);
	assert_true(imap_casemap_cmp("ab", 2, "abc", 3) < 0);
	/* letters fold to upper case: "_" (0x5f) sorts after "a" (as "A", 0x41) */
	assert_true(imap_casemap_cmp("_", 1, "a", 1) > 0);
	/* i;unicode-casemap (I18NLEVEL=1): e acute is "E" U+0301, between
	 * "e" and "f"; the three sigmas are one */
	assert_true(imap_casemap_cmp("\xc3\xa9", 2, "z", 1) < 0);
	assert_true(imap_casemap_cmp("\xc3\xa9", 2, "e", 1) > 0);
	assert_true(imap_casemap_cmp("\xc3\xa9", 2, "f", 1) < 0);
	assert_int_equal(imap_casemap_cmp("\xcf\x82", 2, "\xce\xa3", 2), 0);
	/* the Re:/Fwd: leaders stay ASCII words */
	struct pt_strbuf b = { 0 };
	int reply = 0;
	imap_base_subject("\xc5\x95" "e: x", 6, &b, &reply);
	assert_string_equal(b.p, "\xc5\x95" "e: x");
	assert_int_equal(reply, 0);
	pt_strbuf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_leaders_and_trailers),
		cmocka_unit_test(test_encoded_words),
		cmocka_unit_test(test_casemap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
