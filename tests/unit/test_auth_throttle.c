/* Unit tests for the per-address failure throttle, on a fake clock: the
 * 2, 4, 8, 15 s schedule, reset on success, expiry, IPv6 /64 grouping and
 * the bounded table. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>

#include "passdb.h"

static void
test_schedule(void **state)
{
	(void)state;
	struct pt_throttle *t = pt_throttle_new(100);
	uint64_t now = 1000000;
	static const uint64_t want[] = { 0, 2000, 4000, 8000, 15000, 15000, 15000, 15000, 15000, 15000 };

	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		assert_int_equal(pt_throttle_delay_ms(t, "192.0.2.1", now), want[i]);
		pt_throttle_failure(t, "192.0.2.1", now);
		assert_int_equal(pt_throttle_failures(t, "192.0.2.1", now), i + 1);
		now += 20000;
	}
	/* Another client is not slowed by this one's failures. */
	assert_int_equal(pt_throttle_delay_ms(t, "192.0.2.2", now), 0);
	/* A success clears the address. */
	pt_throttle_success(t, "192.0.2.1", now);
	assert_int_equal(pt_throttle_delay_ms(t, "192.0.2.1", now), 0);
	assert_int_equal(pt_throttle_failures(t, "192.0.2.1", now), 0);
	pt_throttle_free(t);
}

static void
test_expiry(void **state)
{
	(void)state;
	struct pt_throttle *t = pt_throttle_new(100);
	uint64_t now = 5;
	pt_throttle_failure(t, "198.51.100.7", now);
	pt_throttle_failure(t, "198.51.100.7", now);
	assert_int_equal(pt_throttle_delay_ms(t, "198.51.100.7", now + PT_THROTTLE_EXPIRE_MS - 1), 4000);
	/* A new failure renews the hour. */
	pt_throttle_failure(t, "198.51.100.7", now + PT_THROTTLE_EXPIRE_MS - 1);
	assert_int_equal(pt_throttle_delay_ms(t, "198.51.100.7", now + PT_THROTTLE_EXPIRE_MS + 10), 8000);
	now += 2 * (uint64_t)PT_THROTTLE_EXPIRE_MS;
	assert_int_equal(pt_throttle_delay_ms(t, "198.51.100.7", now), 0);
	assert_int_equal(pt_throttle_size(t), 0);
	/* After expiry the count starts over. */
	pt_throttle_failure(t, "198.51.100.7", now);
	assert_int_equal(pt_throttle_delay_ms(t, "198.51.100.7", now), 2000);
	pt_throttle_free(t);
}

static void
test_address_keys(void **state)
{
	(void)state;
	struct pt_throttle *t = pt_throttle_new(100);
	pt_throttle_failure(t, "2001:db8:1:2::1", 0);
	/* Same /64, other spelling and other interface id: same client. */
	assert_int_equal(pt_throttle_failures(t, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", 0), 1);
	assert_int_equal(pt_throttle_failures(t, "2001:0db8:0001:0002::9", 0), 1);
	assert_int_equal(pt_throttle_failures(t, "2001:db8:1:3::1", 0), 0);
	/* IPv4-mapped IPv6 is the IPv4 client. */
	pt_throttle_failure(t, "::ffff:192.0.2.44", 0);
	assert_int_equal(pt_throttle_failures(t, "192.0.2.44", 0), 1);
	assert_int_equal(pt_throttle_failures(t, "192.0.2.45", 0), 0);
	/* Odd strings (unix sockets, empty) still count, among themselves. */
	pt_throttle_failure(t, "", 0);
	pt_throttle_failure(t, NULL, 0);
	assert_int_equal(pt_throttle_failures(t, "", 0), 2);
	pt_throttle_free(t);
}

static void
test_bounded_table(void **state)
{
	(void)state;
	struct pt_throttle *t = pt_throttle_new(3);
	pt_throttle_failure(t, "10.0.0.1", 100);
	pt_throttle_failure(t, "10.0.0.2", 200);
	pt_throttle_failure(t, "10.0.0.3", 300);
	pt_throttle_failure(t, "10.0.0.4", 400);   /* evicts the idlest: .1 */
	assert_int_equal(pt_throttle_size(t), 3);
	assert_int_equal(pt_throttle_failures(t, "10.0.0.1", 400), 0);
	assert_int_equal(pt_throttle_failures(t, "10.0.0.4", 400), 1);
	pt_throttle_failure(t, "10.0.0.2", 500);   /* refresh .2 */
	pt_throttle_failure(t, "10.0.0.5", 600);   /* evicts .3 now */
	assert_int_equal(pt_throttle_failures(t, "10.0.0.3", 600), 0);
	assert_int_equal(pt_throttle_failures(t, "10.0.0.2", 600), 2);
	char a[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(a, sizeof a, "10.1.%d.%d", i / 256, i % 256);
		pt_throttle_failure(t, a, 1000 + (uint64_t)i);
	}
	assert_int_equal(pt_throttle_size(t), 3);
	pt_throttle_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_schedule),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_address_keys),
		cmocka_unit_test(test_bounded_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
