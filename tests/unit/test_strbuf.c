/* The shared growable text buffer: growth, printf, the max cap, reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "postern/strbuf.h"

static void
test_grows_and_terminates(void **state)
{
	(void)state;
	struct pt_strbuf b = { 0 };
	pt_strbuf_puts(&b, "Final-Recipient: ");
	pt_strbuf_printf(&b, "rfc822; %s", "alice@example.com.ar");
	pt_strbuf_put(&b, "\n", 1);
	assert_string_equal(b.p, "Final-Recipient: rfc822; alice@example.com.ar\n");
	assert_int_equal(b.len, strlen(b.p));
	for (int i = 0; i < 10000; i++)
		pt_strbuf_printf(&b, "%05d", i);
	assert_int_equal(b.len, 46 + 50000);
	assert_memory_equal(b.p + b.len - 5, "09999", 5);
	assert_false(b.oom);
	pt_strbuf_free(&b);
	assert_null(b.p);
	assert_int_equal(b.len, 0);
}

static void
test_max_cuts_without_overflow(void **state)
{
	(void)state;
	struct pt_strbuf b = { .max = 16 };
	pt_strbuf_puts(&b, "0123456789");
	pt_strbuf_puts(&b, "abcdef"); /* 16 bytes + NUL is over the cap */
	assert_true(b.oom);
	assert_string_equal(b.p, "0123456789");
	pt_strbuf_printf(&b, "%s", "more");
	assert_string_equal(b.p, "0123456789");
	pt_strbuf_free(&b);
}

static void
test_array_grow(void **state)
{
	(void)state;
	size_t cap = 0;
	int *v = pt_array_grow(NULL, &cap, sizeof *v, 4);
	assert_non_null(v);
	assert_int_equal(cap, 4);
	for (int i = 0; i < 4; i++)
		v[i] = i;
	int *w = pt_array_grow(v, &cap, sizeof *w, 4);
	assert_non_null(w);
	assert_int_equal(cap, 8);
	assert_int_equal(w[3], 3);
	/* A size that would overflow leaves the array and its capacity alone. */
	size_t huge = (size_t)-1 / 4;
	assert_null(pt_array_grow(w, &huge, 4, 4));
	assert_int_equal(huge, (size_t)-1 / 4);
	size_t zero = 0;
	assert_null(pt_array_grow(NULL, &zero, 0, 4));
	assert_null(pt_array_grow(NULL, &zero, 8, 0));
	free(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grows_and_terminates),
		cmocka_unit_test(test_max_cuts_without_overflow),
		cmocka_unit_test(test_array_grow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
