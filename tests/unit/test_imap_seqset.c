/* IMAP sequence sets: parsing (ranges, "*", reversed ranges, refusals),
 * membership with "*" resolved per folder, compact formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imap/imap_msg.h"

static int
parse(const char *s, struct imap_seqset *set)
{
	return imap_seqset_parse(s, strlen(s), set);
}

static void
test_parse_ranges_and_star(void **state)
{
	(void)state;
	struct imap_seqset set;
	assert_int_equal(parse("1:3,5,7:*", &set), 0);
	assert_int_equal(set.n, 3);
	assert_int_equal(set.r[0].lo, 1);
	assert_int_equal(set.r[0].hi, 3);
	assert_int_equal(set.r[1].lo, 5);
	assert_int_equal(set.r[1].hi, 5);
	assert_int_equal(set.r[2].lo, 7);
	assert_int_equal(set.r[2].hi, IMAP_SEQ_STAR);
	uint32_t in[] = { 1, 2, 3, 5, 7, 8, 10 }, out[] = { 4, 6, 11 };
	for (size_t i = 0; i < sizeof in / sizeof *in; i++)
		assert_true(imap_seqset_contains(&set, in[i], 10));
	for (size_t i = 0; i < sizeof out / sizeof *out; i++)
		assert_false(imap_seqset_contains(&set, out[i], 10));
	imap_seqset_free(&set);
	assert_null(set.r);
}

static void
test_reversed_ranges(void **state)
{
	(void)state;
	struct imap_seqset set;
	assert_int_equal(parse("9:4", &set), 0);
	assert_int_equal(set.r[0].lo, 4);
	assert_int_equal(set.r[0].hi, 9);
	assert_true(imap_seqset_contains(&set, 4, 20));
	assert_true(imap_seqset_contains(&set, 9, 20));
	assert_false(imap_seqset_contains(&set, 10, 20));
	imap_seqset_free(&set);

	/* "*:4" is 4..star when star >= 4, star..4 when the folder is smaller */
	assert_int_equal(parse("*:4", &set), 0);
	assert_true(imap_seqset_contains(&set, 4, 6));
	assert_true(imap_seqset_contains(&set, 6, 6));
	assert_false(imap_seqset_contains(&set, 3, 6));
	assert_true(imap_seqset_contains(&set, 2, 2));
	assert_true(imap_seqset_contains(&set, 3, 2));
	assert_false(imap_seqset_contains(&set, 1, 2));
	imap_seqset_free(&set);

	assert_int_equal(parse("*", &set), 0);
	assert_true(imap_seqset_contains(&set, 12, 12));
	assert_false(imap_seqset_contains(&set, 11, 12));
	imap_seqset_free(&set);
	/* 4294967295 is a number, never "*" */
	assert_int_equal(parse("4:4294967295", &set), 0);
	assert_false(imap_seqset_contains(&set, 3, 3));
	assert_true(imap_seqset_contains(&set, 4, 3));
	assert_true(imap_seqset_contains(&set, 4294967295u, 3));
	imap_seqset_free(&set);
	assert_int_equal(parse("4294967295", &set), 0);
	assert_false(imap_seqset_contains(&set, 3, 3));
	imap_seqset_free(&set);
	assert_int_equal(parse("4294967295:*", &set), 0);
	assert_true(imap_seqset_contains(&set, 3, 3));
	imap_seqset_free(&set);
	assert_int_equal(parse("4294967296", &set), -1);
}

static void
test_refusals(void **state)
{
	(void)state;
	const char *bad[] = { "", "0", "0:3", "3:0", "1,", ",1", "1::2", "1:", ":1", "a",
		"1 2", "01", "1,,2", "4294967296", "1:99999999999", "-1", "1:*x", "**" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct imap_seqset set = { (void *)1, 9 };
		assert_int_equal(imap_seqset_parse(bad[i], strlen(bad[i]), &set), -1);
		assert_null(set.r);
		assert_int_equal(set.n, 0);
	}
	struct imap_seqset set;
	assert_int_equal(parse("4294967294", &set), 0);
	assert_int_equal(set.r[0].lo, 4294967294u);
	imap_seqset_free(&set);
	/* the largest UID is accepted; it means the same as "*" at the top */
	assert_int_equal(parse("1:4294967295", &set), 0);
	assert_true(imap_seqset_contains(&set, 77, 100));
	imap_seqset_free(&set);
}

/* Every prefix of a valid set is parsed from an exact-size copy: no read
 * past len (ASan), and the answer matches the grammar. */
static void
test_every_prefix(void **state)
{
	(void)state;
	const char *full = "12:3,5,700:*,*:9";
	size_t n = strlen(full);
	for (size_t i = 0; i <= n; i++) {
		char *copy = malloc(i ? i : 1);
		memcpy(copy, full, i);
		struct imap_seqset set;
		int rc = imap_seqset_parse(copy, i, &set);
		int want = (i == 0 || full[i - 1] == ',' || full[i - 1] == ':') ? -1 : 0;
		assert_int_equal(rc, want);
		imap_seqset_free(&set);
		free(copy);
	}
}

static void
test_format(void **state)
{
	(void)state;
	struct pt_strbuf b = { 0 };
	uint32_t v[] = { 1, 2, 3, 7, 9, 10, 10, 12 };
	imap_seqset_format(v, sizeof v / sizeof *v, &b);
	assert_string_equal(b.p, "1:3,7,9:10,12");
	pt_strbuf_free(&b);
	uint32_t one[] = { 42 };
	imap_seqset_format(one, 1, &b);
	assert_string_equal(b.p, "42");
	pt_strbuf_free(&b);
	uint32_t top[] = { 4294967294u, 4294967295u };
	imap_seqset_format(top, 2, &b);
	assert_string_equal(b.p, "4294967294:4294967295");
	pt_strbuf_free(&b);
	imap_seqset_format(NULL, 0, &b);
	assert_null(b.p);
	/* what is formatted parses back to the same members */
	imap_seqset_format(v, sizeof v / sizeof *v, &b);
	struct imap_seqset set;
	assert_int_equal(imap_seqset_parse(b.p, b.len, &set), 0);
	for (uint32_t i = 1; i <= 13; i++) {
		int member = 0;
		for (size_t k = 0; k < sizeof v / sizeof *v; k++)
			member |= v[k] == i;
		assert_int_equal(imap_seqset_contains(&set, i, 13), member);
	}
	imap_seqset_free(&set);
	pt_strbuf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_ranges_and_star),
		cmocka_unit_test(test_reversed_ranges),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
