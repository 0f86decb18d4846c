/* Unit test of the recipient_delimiter rule (include/postern/address.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "postern/address.h"

static void
test_local_base_len(void **state)
{
	(void)state;
	assert_int_equal(pt_local_base_len("alice+tag", "+"), 5);
	assert_int_equal(pt_local_base_len("alice-x+y", "+-"), 5);  /* the first one found */
	assert_int_equal(pt_local_base_len("alice", "+"), 0);
	assert_int_equal(pt_local_base_len("+tag", "+"), 0);
	assert_int_equal(pt_local_base_len("alice+", "+"), 5);
	assert_int_equal(pt_local_base_len("alice+tag", ""), 0);
	assert_int_equal(pt_local_base_len("alice+tag", NULL), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_local_base_len),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
