/* Unit tests for the SASL PLAIN / LOGIN state machine and the base64 codec:
 * every response also fed split at every offset, bad base64, "*" cancel,
 * authzid, NUL in the middle, overlong input, and the policy helpers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "passdb.h"
#include "postern/sasl.h"

static char *
b64(const void *data, size_t len)
{
	size_t cap = (len + 2) / 3 * 4 + 1;
	char *out = malloc(cap);
	assert_non_null(out);
	assert_int_equal(pt_base64_encode(data, len, out, cap), cap - 1);
	return out;
}

/* ---- base64 ---- */

static void
test_base64_vectors(void **state)
{
	(void)state;
	static const char *const v[][2] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		char enc[32];
		unsigned char dec[32];
		size_t n;
		assert_int_equal(pt_base64_encode(v[i][0], strlen(v[i][0]), enc, sizeof enc), strlen(v[i][1]));
		assert_string_equal(enc, v[i][1]);
		assert_int_equal(pt_base64_decode(v[i][1], strlen(v[i][1]), dec, sizeof dec, &n), 0);
		assert_int_equal(n, strlen(v[i][0]));
		assert_memory_equal(dec, v[i][0], n);
	}
	char small[4];
	assert_int_equal(pt_base64_encode("foo", 3, small, sizeof small), (size_t)-1);
	/* All byte values survive a round trip. */
	unsigned char all[256], back[256];
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	char *e = b64(all, sizeof all);
	size_t n;
	assert_int_equal(pt_base64_decode(e, strlen(e), back, sizeof back, &n), 0);
	assert_int_equal(n, 256);
	assert_memory_equal(all, back, 256);
	free(e);
}

static void
test_base64_bad(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"Zm9v YmFy", "Zm9v\r\n", "Zm9=", "=Zm9", "Z===", "Zg=a", "Zg==Zg==", "Zm8=Zm8=",
		"Zm9", "Zg", "Z", "Zm9v!", "Zh==", /* non-zero bits after the last byte */
		"Zm9=", "Zm+/_-==", "\x80\x81==",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		unsigned char out[64];
		size_t n;
		if (pt_base64_decode(bad[i], strlen(bad[i]), out, sizeof out, &n) != -1)
			fail_msg("accepted bad base64 \"%s\"", bad[i]);
	}
	unsigned char out[2];
	size_t n;
	struct pt_base64_dec d;
	pt_base64_dec_init(&d);
	assert_int_equal(pt_base64_dec_feed(&d, "Zm9vYmFy", 8, out, sizeof out, &n), -2);
}

/* The decoder carries its state across pieces: any split gives the same
 * bytes, and a bad byte is caught in whichever piece it lands. */
static void
test_base64_split_every_offset(void **state)
{
	(void)state;
	const char *enc = "AGFsaWNlAHNlY3JldA==";
	unsigned char whole[64];
	size_t wn;
	assert_int_equal(pt_base64_decode(enc, strlen(enc), whole, sizeof whole, &wn), 0);
	for (size_t k = 0; k <= strlen(enc); k++) {
		struct pt_base64_dec d;
		unsigned char out[64];
		size_t n1, n2;
		pt_base64_dec_init(&d);
		assert_int_equal(pt_base64_dec_feed(&d, enc, k, out, sizeof out, &n1), 0);
		assert_int_equal(pt_base64_dec_feed(&d, enc + k, strlen(enc) - k, out + n1, sizeof out - n1, &n2), 0);
		assert_int_equal(pt_base64_dec_final(&d), 0);
		assert_int_equal(n1 + n2, wn);
		assert_memory_equal(out, whole, wn);
	}
	const char *bad = "AGFsaW!lAHNl";
	for (size_t k = 0; k <= strlen(bad); k++) {
		struct pt_base64_dec d;
		unsigned char out[64];
		size_t n;
		pt_base64_dec_init(&d);
		int r1 = pt_base64_dec_feed(&d, bad, k, out, sizeof out, &n);
		int r2 = pt_base64_dec_feed(&d, bad + k, strlen(bad) - k, out, sizeof out, &n);
		assert_true(r1 == -1 || r2 == -1);
	}
}

/* ---- PLAIN ---- */

/* Runs one response through the machine in two pieces split at k. */
static enum pt_sasl_status
step_split(struct pt_sasl *s, const char *line, size_t k)
{
	size_t len = strlen(line);
	if (k > len)
		k = len;
	enum pt_sasl_status st = pt_sasl_feed(s, line, k);
	if (st != PT_SASL_CHALLENGE)
		return st;
	return pt_sasl_step(s, line + k, len - k);
}

static void
test_plain_initial(void **state)
{
	(void)state;
	char *resp = b64("\0alice\0secret", 13);
	struct pt_sasl *s = pt_sasl_new(PT_SASL_PLAIN);
	assert_int_equal(pt_sasl_start(s, resp, strlen(resp)), PT_SASL_DONE);
	assert_string_equal(pt_sasl_user(s), "alice");
	assert_string_equal(pt_sasl_password(s), "secret");
	assert_string_equal(pt_sasl_authzid(s), "");
	/* Once done, further lines change nothing. */
	assert_int_equal(pt_sasl_step(s, "AAAA", 4), PT_SASL_DONE);
	assert_string_equal(pt_sasl_user(s), "alice");
	pt_sasl_free(s);
	free(resp);
}

static void
test_plain_challenge_split_every_offset(void **state)
{
	(void)state;
	char *resp = b64("alice\0alice\0pass word", 21);
	for (size_t k = 0; k <= strlen(resp); k++) {
		struct pt_sasl *s = pt_sasl_new(PT_SASL_PLAIN);
		assert_int_equal(pt_sasl_start(s, NULL, 0), PT_SASL_CHALLENGE);
		assert_string_equal(pt_sasl_challenge(s), "");
		assert_int_equal(step_split(s, resp, k), PT_SASL_DONE);
		assert_string_equal(pt_sasl_user(s), "alice");
		assert_string_equal(pt_sasl_authzid(s), "alice");
		assert_string_equal(pt_sasl_password(s), "pass word");
		pt_sasl_free(s);
	}
	free(resp);
}

static enum pt_sasl_status
plain_once(const void *msg, size_t len, struct pt_sasl **out)
{
	char *resp = b64(msg, len);
	struct pt_sasl *s = pt_sasl_new(PT_SASL_PLAIN);
	pt_sasl_start(s, NULL, 0);
	enum pt_sasl_status st = pt_sasl_step(s, resp, strlen(resp));
	free(resp);
	if (out)
		*out = s;
	else
		pt_sasl_free(s);
	return st;
}

static void
test_plain_bad_content(void **state)
{
	(void)state;
	struct pt_sasl *s;
	/* authzid naming someone else: no master users, refused. */
	assert_int_equal(plain_once("bob\0alice\0secret", 16, &s), PT_SASL_FAILED);
	assert_string_equal(pt_sasl_user(s), "");
	assert_string_equal(pt_sasl_password(s), "");
	assert_non_null(strstr(pt_sasl_error(s), "authorization identity"));
	pt_sasl_free(s);
	/* NUL in the middle of the password: not truncated, refused. */
	assert_int_equal(plain_once("\0alice\0sec\0ret", 14, &s), PT_SASL_FAILED);
	assert_null(strstr(pt_sasl_error(s), "sec"));
	pt_sasl_free(s);
	assert_int_equal(plain_once("alicesecret", 11, NULL), PT_SASL_FAILED);
	assert_int_equal(plain_once("alice\0secret", 12, NULL), PT_SASL_FAILED);
	assert_int_equal(plain_once("\0\0secret", 8, NULL), PT_SASL_FAILED);      /* empty user */
	assert_int_equal(plain_once("\0ali\nce\0secret", 14, NULL), PT_SASL_FAILED); /* control char */
	assert_int_equal(plain_once("", 0, NULL), PT_SASL_FAILED);
	/* An empty password decodes; the passdb refuses it like a wrong one. */
	assert_int_equal(plain_once("\0alice\0", 7, &s), PT_SASL_DONE);
	assert_string_equal(pt_sasl_password(s), "");
	pt_sasl_free(s);
}

static void
test_plain_lengths(void **state)
{
	(void)state;
	char msg[2000];
	/* Longest user and password accepted, one more byte refused. */
	memset(msg, 0, sizeof msg);
	memset(msg + 1, 'u', PT_SASL_USER_MAX);
	memset(msg + 2 + PT_SASL_USER_MAX, 'p', PT_SASL_PASS_MAX);
	assert_int_equal(plain_once(msg, 2 + PT_SASL_USER_MAX + PT_SASL_PASS_MAX, NULL), PT_SASL_DONE);
	memset(msg, 0, sizeof msg);
	memset(msg + 1, 'u', PT_SASL_USER_MAX + 1);
	assert_int_equal(plain_once(msg, 3 + PT_SASL_USER_MAX + 1, NULL), PT_SASL_FAILED);
	memset(msg, 0, sizeof msg);
	msg[1] = 'u';
	memset(msg + 3, 'p', PT_SASL_PASS_MAX + 1);
	assert_int_equal(plain_once(msg, 3 + PT_SASL_PASS_MAX + 1, NULL), PT_SASL_FAILED);

	/* Overlong lines: refused as undecodable, whole or in pieces. */
	char *big = malloc(PT_SASL_RESPONSE_MAX + 8);
	memset(big, 'A', PT_SASL_RESPONSE_MAX + 4);
	big[PT_SASL_RESPONSE_MAX + 4] = '\0';
	struct pt_sasl *s = pt_sasl_new(PT_SASL_PLAIN);
	pt_sasl_start(s, NULL, 0);
	assert_int_equal(pt_sasl_step(s, big, strlen(big)), PT_SASL_MALFORMED);
	assert_string_equal(pt_sasl_error(s), "response too long");
	pt_sasl_free(s);
	s = pt_sasl_new(PT_SASL_PLAIN);
	pt_sasl_start(s, NULL, 0);
	enum pt_sasl_status st = PT_SASL_CHALLENGE;
	for (size_t off = 0; off < strlen(big) && st == PT_SASL_CHALLENGE; off += 100)
		st = pt_sasl_feed(s, big + off, strlen(big) - off < 100 ? strlen(big) - off : 100);
	assert_int_equal(st, PT_SASL_MALFORMED);
	pt_sasl_free(s);
	/* Within the line limit but decoding past what PLAIN can hold. */
	big[PT_SASL_RESPONSE_MAX] = '\0';
	s = pt_sasl_new(PT_SASL_PLAIN);
	assert_int_equal(pt_sasl_start(s, big, strlen(big)), PT_SASL_MALFORMED);
	pt_sasl_free(s);
	free(big);
}

static void
test_plain_bad_base64_and_cancel(void **state)
{
	(void)state;
	static const char *const bad[] = { "AGFsaWNl!AHNl", "AGFs aWNl", "AGFsaWNlAHNlY3JldA=", "=", "**" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct pt_sasl *s = pt_sasl_new(PT_SASL_PLAIN);
		pt_sasl_start(s, NULL, 0);
		assert_int_equal(pt_sasl_step(s, bad[i], strlen(bad[i])), PT_SASL_MALFORMED);
		assert_string_equal(pt_sasl_error(s), "Invalid base64 data in continued response");
		pt_sasl_free(s);
	}
	struct pt_sasl *s = pt_sasl_new(PT_SASL_PLAIN);
	pt_sasl_start(s, NULL, 0);
	assert_int_equal(pt_sasl_step(s, "*", 1), PT_SASL_CANCELLED);
	assert_int_equal(pt_sasl_step(s, "AAAA", 4), PT_SASL_CANCELLED);
	pt_sasl_free(s);
	/* "*" as an initial response cancels too; "=" is an empty response. */
	s = pt_sasl_new(PT_SASL_PLAIN);
	assert_int_equal(pt_sasl_start(s, "*", 1), PT_SASL_CANCELLED);
	pt_sasl_free(s);
	s = pt_sasl_new(PT_SASL_PLAIN);
	assert_int_equal(pt_sasl_start(s, "=", 1), PT_SASL_FAILED);
	pt_sasl_free(s);
	/* A response without start is a protocol bug, refused. */
	s = pt_sasl_new(PT_SASL_PLAIN);
	assert_int_equal(pt_sasl_step(s, "AAAA", 4), PT_SASL_FAILED);
	pt_sasl_free(s);
}

/* ---- LOGIN ---- */

static void
test_login_split_every_offset(void **state)
{
	(void)state;
	char *u = b64("alice", 5), *p = b64("s3cr:t pw", 9);
	size_t maxk = strlen(u) > strlen(p) ? strlen(u) : strlen(p);
	for (size_t k = 0; k <= maxk; k++) {
		struct pt_sasl *s = pt_sasl_new(PT_SASL_LOGIN);
		assert_int_equal(pt_sasl_start(s, NULL, 0), PT_SASL_CHALLENGE);
		unsigned char dec[32];
		size_t n;
		const char *ch = pt_sasl_challenge(s);
		assert_int_equal(pt_base64_decode(ch, strlen(ch), dec, sizeof dec, &n), 0);
		assert_memory_equal(dec, "Username:", 9);
		assert_int_equal(step_split(s, u, k), PT_SASL_CHALLENGE);
		ch = pt_sasl_challenge(s);
		assert_int_equal(pt_base64_decode(ch, strlen(ch), dec, sizeof dec, &n), 0);
		assert_memory_equal(dec, "Password:", 9);
		assert_int_equal(step_split(s, p, k), PT_SASL_DONE);
		assert_string_equal(pt_sasl_user(s), "alice");
		assert_string_equal(pt_sasl_password(s), "s3cr:t pw");
		pt_sasl_free(s);
	}
	/* The user name as initial response (AUTH LOGIN dXNlcg==). */
	struct pt_sasl *s = pt_sasl_new(PT_SASL_LOGIN);
	assert_int_equal(pt_sasl_start(s, u, strlen(u)), PT_SASL_CHALLENGE);
	assert_string_equal(pt_sasl_challenge(s), "UGFzc3dvcmQ6");
	assert_int_equal(pt_sasl_step(s, p, strlen(p)), PT_SASL_DONE);
	assert_string_equal(pt_sasl_user(s), "alice");
	pt_sasl_free(s);
	free(u);
	free(p);
}

static void
test_login_bad(void **state)
{
	(void)state;
	char *nul_user = b64("ali\0ce", 6), *nul_pass = b64("pa\0ss", 5), *u = b64("alice", 5);
	struct pt_sasl *s = pt_sasl_new(PT_SASL_LOGIN);
	pt_sasl_start(s, NULL, 0);
	assert_int_equal(pt_sasl_step(s, nul_user, strlen(nul_user)), PT_SASL_FAILED);
	pt_sasl_free(s);

	s = pt_sasl_new(PT_SASL_LOGIN);
	pt_sasl_start(s, NULL, 0);
	assert_int_equal(pt_sasl_step(s, "", 0), PT_SASL_FAILED);  /* empty user */
	pt_sasl_free(s);

	s = pt_sasl_new(PT_SASL_LOGIN);
	pt_sasl_start(s, NULL, 0);
	assert_int_equal(pt_sasl_step(s, u, strlen(u)), PT_SASL_CHALLENGE);
	assert_int_equal(pt_sasl_step(s, nul_pass, strlen(nul_pass)), PT_SASL_FAILED);
	assert_string_equal(pt_sasl_password(s), "");
	pt_sasl_free(s);

	s = pt_sasl_new(PT_SASL_LOGIN);
	pt_sasl_start(s, NULL, 0);
	assert_int_equal(pt_sasl_step(s, u, strlen(u)), PT_SASL_CHALLENGE);
	assert_int_equal(pt_sasl_step(s, "*", 1), PT_SASL_CANCELLED);
	pt_sasl_free(s);

	s = pt_sasl_new(PT_SASL_LOGIN);
	pt_sasl_start(s, NULL, 0);
	assert_int_equal(pt_sasl_step(s, "YWxp Y2U=", 9), PT_SASL_MALFORMED);
	pt_sasl_free(s);

	/* Empty password: decodes, the passdb refuses it. */
	s = pt_sasl_new(PT_SASL_LOGIN);
	pt_sasl_start(s, u, strlen(u));
	assert_int_equal(pt_sasl_step(s, "", 0), PT_SASL_DONE);
	assert_string_equal(pt_sasl_password(s), "");
	pt_sasl_free(s);
	free(nul_user);
	free(nul_pass);
	free(u);
}

static void
test_mech_names(void **state)
{
	(void)state;
	assert_int_equal(pt_sasl_mech_parse("PLAIN"), PT_SASL_PLAIN);
	assert_int_equal(pt_sasl_mech_parse("plain"), PT_SASL_PLAIN);
	assert_int_equal(pt_sasl_mech_parse("LoGiN"), PT_SASL_LOGIN);
	assert_int_equal(pt_sasl_mech_parse("CRAM-MD5"), PT_SASL_NONE);
	assert_int_equal(pt_sasl_mech_parse(""), PT_SASL_NONE);
	assert_int_equal(pt_sasl_mech_parse(NULL), PT_SASL_NONE);
	assert_string_equal(pt_sasl_mech_name(PT_SASL_LOGIN), "LOGIN");
	assert_null(pt_sasl_new(PT_SASL_NONE));
	pt_sasl_free(NULL);
}

/* ---- policy helpers on a real config ---- */

static struct pt_config *
conf_from(const char *text)
{
	struct pt_config *c = pt_config_parse("test.conf", text, strlen(text));
	assert_non_null(c);
	pt_config_declare_core(c);
	if (!pt_config_owner(c, "auth_mechanisms"))
		pt_config_declare(c, "auth", pt_auth_params);
	return c;
}

static void
test_policy(void **state)
{
	(void)state;
	struct pt_config *c = conf_from("");
	assert_int_equal(pt_config_finish(c), 0);
	assert_true(pt_sasl_mech_enabled(c, PT_SASL_PLAIN));   /* Dovecot's default: plain */
	assert_false(pt_sasl_mech_enabled(c, PT_SASL_LOGIN));
	assert_true(pt_conf_bool(c, "disable_plaintext_auth"));
	assert_int_equal(pt_conf_int(c, "auth_failure_delay"), 2);
	assert_true(pt_conf_bool(c, "auth_throttle"));
	/* Dovecot's "secured": TLS, or the client uses the server's own address. */
	assert_true(pt_sasl_plaintext_allowed(c, 1, "192.0.2.7", "192.0.2.1"));
	assert_false(pt_sasl_plaintext_allowed(c, 0, "192.0.2.7", "192.0.2.1"));
	assert_true(pt_sasl_plaintext_allowed(c, 0, "127.0.0.1", "127.0.0.1"));
	assert_true(pt_sasl_plaintext_allowed(c, 0, "::ffff:127.0.0.1", "127.0.0.1"));
	assert_false(pt_sasl_plaintext_allowed(c, 0, "127.0.0.2", "127.0.0.1"));
	assert_true(pt_sasl_plaintext_allowed(c, 0, "::1", "::1"));
	assert_false(pt_sasl_plaintext_allowed(c, 0, "bogus", "bogus"));
	pt_config_free(c);

	c = conf_from("auth_mechanisms = PLAIN, login\ndisable_plaintext_auth = no\nauth_failure_delay = 0\n");
	assert_int_equal(pt_config_finish(c), 0);
	assert_true(pt_sasl_mech_enabled(c, PT_SASL_LOGIN));
	assert_true(pt_sasl_mech_enabled(c, PT_SASL_PLAIN));
	assert_true(pt_sasl_plaintext_allowed(c, 0, "192.0.2.7", "192.0.2.1"));
	pt_config_free(c);

	c = conf_from("auth_mechanisms = plain cram-md5\n");
	assert_int_equal(pt_config_finish(c), 1);
	assert_non_null(strstr(pt_config_error(c, 0), "test.conf:1:"));
	assert_non_null(strstr(pt_config_error(c, 0), "cram-md5"));
	pt_config_free(c);
	c = conf_from("auth_failure_delay = 2m\n");
	assert_int_equal(pt_config_finish(c), 1);  /* above the 60 s bound */
	pt_config_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64_vectors),
		cmocka_unit_test(test_base64_bad),
		cmocka_unit_test(test_base64_split_every_offset),
		cmocka_unit_test(test_plain_initial),
		cmocka_unit_test(test_plain_challenge_split_every_offset),
		cmocka_unit_test(test_plain_bad_content),
		cmocka_unit_test(test_plain_lengths),
		cmocka_unit_test(test_plain_bad_base64_and_cancel),
		cmocka_unit_test(test_login_split_every_offset),
		cmocka_unit_test(test_login_bad),
		cmocka_unit_test(test_mech_names),
		cmocka_unit_test(test_policy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
