/* SipHash-2-4: the reference vectors (key 00..0f, message 00..len-1),
 * any split of the input across updates, and the table key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postern/siphash.h"

static void
test_vectors(void **state)
{
	(void)state;
	uint8_t key[16], msg[64];
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 64; i++)
		msg[i] = (uint8_t)i;
	assert_true(pt_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ull);
	assert_true(pt_siphash(key, msg, 8) == 0x93f5f5799a932462ull);
	assert_true(pt_siphash(key, msg, 15) == 0xa129ca6149be45e5ull);
	assert_true(pt_siphash(key, msg, 63) == 0x958a324ceb064572ull);
}

static void
test_any_split(void **state)
{
	(void)state;
	uint8_t key[16], msg[200];
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)(i * 7 + 1);
	for (int i = 0; i < 200; i++)
		msg[i] = (uint8_t)(i * 31);
	srand(15);
	for (size_t n = 0; n <= sizeof msg; n++) {
		uint64_t whole = pt_siphash(key, msg, n);
		struct pt_sip s;
		pt_sip_init(&s, key);
		for (size_t at = 0; at < n;) {
			size_t k = (size_t)rand() % 20;
			if (k > n - at)
				k = n - at;
			pt_sip_update(&s, msg + at, k);
			at += k;
		}
		assert_true(pt_sip_final(&s) == whole);
	}
}

static void
test_table_key(void **state)
{
	(void)state;
	const uint8_t *k = pt_table_key();
	static const uint8_t zero[16];
	assert_memory_not_equal(k, zero, 16);
	assert_ptr_equal(pt_table_key(), k);
	assert_true(pt_table_hash("abc") == pt_siphash(k, "abc", 3));
	assert_true(pt_table_hash("abc") != pt_table_hash("abd"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_any_split),
		cmocka_unit_test(test_table_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
