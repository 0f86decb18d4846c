/* Unit tests for the password schemes: hashes made here with libcrypt's
 * own salt generator, every scheme right and wrong, malformed values, and
 * proof that comparisons go through the constant-time function. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passdb.h"

/* "{SCHEME}" + crypt(password) with a fresh salt for prefix. */
static void
make_hash(const char *scheme, const char *prefix, unsigned long rounds, const char *password,
          char *out, size_t outlen)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data cd;

	assert_non_null(crypt_gensalt_rn(prefix, rounds, NULL, 0, salt, sizeof salt));
	memset(&cd, 0, sizeof cd);
	const char *h = crypt_rn(password, salt, &cd, sizeof cd);
	assert_non_null(h);
	assert_true(h[0] != '*');
	snprintf(out, outlen, "%s%s", scheme, h);
}

static void
check_scheme(const char *scheme, const char *prefix, unsigned long rounds)
{
	char stored[512];
	enum pt_pwscheme id;
	char err[128];

	make_hash(scheme, prefix, rounds, "correct horse", stored, sizeof stored);
	assert_int_equal(pt_pwscheme_check(stored, &id, err, sizeof err), 0);
	assert_int_equal(pt_pwscheme_verify(stored, "correct horse"), 1);
	assert_int_equal(pt_pwscheme_verify(stored, "correct hors"), 0);
	assert_int_equal(pt_pwscheme_verify(stored, "correct horse "), 0);
	assert_int_equal(pt_pwscheme_verify(stored, ""), 0);
	assert_int_equal(pt_pwscheme_verify(stored, "Correct horse"), 0);
}

static void
test_sha512_crypt(void **state)
{
	(void)state;
	check_scheme("{SHA512-CRYPT}", "$6$", 5000);
	check_scheme("{sha512-crypt}", "$6$", 0);  /* scheme names ignore case */
}

static void
test_sha256_crypt(void **state)
{
	(void)state;
	check_scheme("{SHA256-CRYPT}", "$5$", 5000);
}

static void
test_blf_crypt(void **state)
{
	(void)state;
	check_scheme("{BLF-CRYPT}", "$2b$", 5);
	check_scheme("{BLF-CRYPT}", "$2y$", 5);
}

static void
test_crypt_any(void **state)
{
	(void)state;
	check_scheme("{CRYPT}", "$y$", 0);   /* yescrypt, Debian's default */
	check_scheme("{CRYPT}", "$6$", 0);
	check_scheme("{CRYPT}", "$1$", 0);   /* md5crypt: old but crypt(3) knows it */
	check_scheme("", "$y$", 0);          /* no braces = {CRYPT} */
}

static void
test_plain(void **state)
{
	(void)state;
	assert_int_equal(pt_pwscheme_verify("{PLAIN}s3cret", "s3cret"), 1);
	assert_int_equal(pt_pwscheme_verify("{PLAIN}s3cret", "s3cre"), 0);
	assert_int_equal(pt_pwscheme_verify("{PLAIN}s3cret", "s3cret!"), 0);
	assert_int_equal(pt_pwscheme_verify("{PLAIN}s3cret", ""), 0);
	assert_int_equal(pt_pwscheme_verify("{CLEAR}a:b}c", "a:b}c"), 1);
	assert_int_equal(pt_pwscheme_verify("{PLAIN}", ""), 1);  /* the passdb refuses empty ones */
}

static void
test_malformed(void **state)
{
	char err[128];
	(void)state;

	assert_int_equal(pt_pwscheme_check("{SHA1}abc", NULL, err, sizeof err), -1);
	assert_non_null(strstr(err, "unknown password scheme {SHA1}"));
	assert_int_equal(pt_pwscheme_check("{PLAIN", NULL, err, sizeof err), -1);
	assert_non_null(strstr(err, "closing"));
	assert_int_equal(pt_pwscheme_check("{SHA512-CRYPT}$5$abc$def", NULL, err, sizeof err), -1);
	assert_non_null(strstr(err, "must start with $6$"));
	assert_int_equal(pt_pwscheme_check("{BLF-CRYPT}$6$abc$def", NULL, err, sizeof err), -1);
	assert_int_equal(pt_pwscheme_check("{CRYPT}", NULL, err, sizeof err), -1);
	assert_int_equal(pt_pwscheme_check("{CRYPT}!locked", NULL, err, sizeof err), -1);
	assert_int_equal(pt_pwscheme_check("{CRYPT}$6$a b", NULL, err, sizeof err), -1);
	/* Unusable values never verify, whatever the password. */
	assert_int_equal(pt_pwscheme_verify("{SHA1}abc", "abc"), -1);
	assert_int_equal(pt_pwscheme_verify("{CRYPT}$9$nosuchalgo$xyz", "x"), -1);
	assert_int_equal(pt_pwscheme_verify("{CRYPT}*", ""), -1);
	assert_int_equal(pt_pwscheme_verify(NULL, "x"), -1);
	/* A truncated hash is refused by crypt or does not match. */
	char stored[512];
	make_hash("{SHA512-CRYPT}", "$6$", 5000, "pw", stored, sizeof stored);
	stored[strlen(stored) - 3] = '\0';
	assert_true(pt_pwscheme_verify(stored, "pw") <= 0);
}

static void
test_ct_equal(void **state)
{
	(void)state;
	unsigned char a[32], b[32];
	for (size_t i = 0; i < sizeof a; i++)
		a[i] = b[i] = (unsigned char)(i * 7);
	assert_true(pt_ct_equal(a, sizeof a, b, sizeof b));
	/* A difference at any position, in any bit, is seen. */
	for (size_t i = 0; i < sizeof a; i++)
		for (int bit = 0; bit < 8; bit++) {
			b[i] ^= (unsigned char)(1u << bit);
			assert_false(pt_ct_equal(a, sizeof a, b, sizeof b));
			b[i] ^= (unsigned char)(1u << bit);
		}
	assert_false(pt_ct_equal(a, 31, b, 32));
	assert_true(pt_ct_equal("", 0, "", 0));
}

/* Every verify of every scheme goes through pt_ct_equal (never memcmp or
 * strcmp, whose time depends on where the first difference is). */
static void
test_ct_used(void **state)
{
	char stored[512];
	(void)state;

	unsigned long before = pt_ct_compare_count();
	assert_int_equal(pt_pwscheme_verify("{PLAIN}abc", "abd"), 0);
	assert_int_equal(pt_ct_compare_count(), before + 1);
	make_hash("{BLF-CRYPT}", "$2b$", 4, "pw", stored, sizeof stored);
	before = pt_ct_compare_count();
	assert_int_equal(pt_pwscheme_verify(stored, "pw"), 1);
	assert_int_equal(pt_ct_compare_count(), before + 1);
	make_hash("{CRYPT}", "$y$", 0, "pw", stored, sizeof stored);
	before = pt_ct_compare_count();
	assert_int_equal(pt_pwscheme_verify(stored, "wrong"), 0);
	assert_int_equal(pt_ct_compare_count(), before + 1);
	/* The unknown-user path does a real comparison too. */
	before = pt_ct_compare_count();
	pt_pwscheme_dummy_verify("guess");
	assert_int_equal(pt_ct_compare_count(), before + 1);
}

static void
test_scheme_ids(void **state)
{
	enum pt_pwscheme id;
	char err[64];
	(void)state;
	assert_int_equal(pt_pwscheme_check("{PLAIN}x", &id, err, sizeof err), 0);
	assert_int_equal(id, PT_PWS_PLAIN);
	assert_string_equal(pt_pwscheme_name(id), "PLAIN");
	assert_int_equal(pt_pwscheme_check("$6$salt$hash", &id, err, sizeof err), 0);
	assert_int_equal(id, PT_PWS_CRYPT);
	assert_int_equal(pt_pwscheme_check("{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuu", &id, err, sizeof err), 0);
	assert_int_equal(id, PT_PWS_BLF_CRYPT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha512_crypt),
		cmocka_unit_test(test_sha256_crypt),
		cmocka_unit_test(test_blf_crypt),
		cmocka_unit_test(test_crypt_any),
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_ct_equal),
		cmocka_unit_test(test_ct_used),
		cmocka_unit_test(test_scheme_ids),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
