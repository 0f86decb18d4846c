/* Password schemes of Dovecot's passwd-file ({SHA512-CRYPT}, {SHA256-CRYPT},
 * {BLF-CRYPT}, {CRYPT}, {PLAIN}) and the constant-time comparison they use. */
#include <crypt.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "passdb.h"

static atomic_ulong ct_compares;

/* Every byte is looked at whatever the contents, so the time taken tells
 * nothing about where two secrets differ. Lengths are public here: callers
 * that must hide a length compare digests instead. */
int
pt_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	const unsigned char *x = a, *y = b;
	size_t n = alen < blen ? alen : blen;
	unsigned char diff = (unsigned char)(alen != blen);

	atomic_fetch_add(&ct_compares, 1);
	for (size_t i = 0; i < n; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

unsigned long
pt_ct_compare_count(void)
{
	return atomic_load(&ct_compares);
}

struct scheme {
	const char *name;
	enum pt_pwscheme id;
	const char *prefixes[4];  /* accepted crypt(3) setting prefixes; none = any */
};

static const struct scheme schemes[] = {
	{ "SHA512-CRYPT", PT_PWS_SHA512_CRYPT, { "$6$", NULL } },
	{ "SHA256-CRYPT", PT_PWS_SHA256_CRYPT, { "$5$", NULL } },
	{ "BLF-CRYPT", PT_PWS_BLF_CRYPT, { "$2y$", "$2b$", "$2a$", NULL } },
	{ "CRYPT", PT_PWS_CRYPT, { NULL } },
	{ "PLAIN", PT_PWS_PLAIN, { NULL } },
	{ "CLEAR", PT_PWS_PLAIN, { NULL } },
	{ "CLEARTEXT", PT_PWS_PLAIN, { NULL } },
	{ NULL, 0, { NULL } },
};

static const struct scheme *
scheme_by_name(const char *name, size_t len)
{
	for (const struct scheme *s = schemes; s->name; s++)
		if (strlen(s->name) == len && strncasecmp(s->name, name, len) == 0)
			return s;
	return NULL;
}

/* Splits "{SCHEME}rest"; a value without braces is {CRYPT}, Dovecot's
 * default_pass_scheme for passwd-file. */
static const struct scheme *
scheme_split(const char *stored, const char **rest, char *err, size_t errlen)
{
	if (stored[0] != '{') {
		*rest = stored;
		return scheme_by_name("CRYPT", 5);
	}
	const char *close = strchr(stored, '}');
	if (!close) {
		snprintf(err, errlen, "password scheme has no closing '}'");
		return NULL;
	}
	const struct scheme *s = scheme_by_name(stored + 1, (size_t)(close - stored - 1));
	if (!s) {
		snprintf(err, errlen, "unknown password scheme {%.*s}",
		         (int)(close - stored - 1 > 32 ? 32 : close - stored - 1), stored + 1);
		return NULL;
	}
	*rest = close + 1;
	return s;
}

static int
crypt_setting_ok(const char *hash)
{
	/* Characters crypt(3) hashes are made of; anything else is a typo or a
	 * hash from another scheme family. */
	if (*hash == '\0' || *hash == '*' || *hash == '!')
		return 0;
	for (const char *p = hash; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("$./=,-_", *p)))
			return 0;
	return 1;
}

int
pt_pwscheme_check(const char *stored, enum pt_pwscheme *id, char *err, size_t errlen)
{
	const char *hash;
	const struct scheme *s = scheme_split(stored, &hash, err, errlen);

	if (!s)
		return -1;
	if (id)
		*id = s->id;
	if (s->id == PT_PWS_PLAIN)
		return 0;
	if (!crypt_setting_ok(hash)) {
		snprintf(err, errlen, "{%s} value is not a crypt(3) hash", s->name);
		return -1;
	}
	if (s->prefixes[0]) {
		int ok = 0;
		for (int i = 0; s->prefixes[i]; i++)
			if (strncmp(hash, s->prefixes[i], strlen(s->prefixes[i])) == 0)
				ok = 1;
		if (!ok) {
			snprintf(err, errlen, "{%s} hash must start with %s", s->name, s->prefixes[0]);
			return -1;
		}
	}
	return 0;
}

/* {PLAIN}: digests are compared so that neither the contents nor the
 * length of the stored password leak through timing. */
static int
plain_verify(const char *stored, const char *password)
{
	unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)stored, strlen(stored), a);
	SHA256((const unsigned char *)password, strlen(password), b);
	int eq = pt_ct_equal(a, sizeof a, b, sizeof b);
	OPENSSL_cleanse(a, sizeof a);
	OPENSSL_cleanse(b, sizeof b);
	return eq;
}

static int
crypt_verify(const char *hash, const char *password)
{
	struct crypt_data *cd = calloc(1, sizeof *cd);
	if (!cd)
		return -1;
	int r = 0;
	const char *out = crypt_rn(password, hash, cd, sizeof *cd);
	if (!out || out[0] == '*')
		r = -1;  /* unsupported or malformed setting: not the user's fault */
	else
		r = pt_ct_equal(out, strlen(out), hash, strlen(hash));
	OPENSSL_cleanse(cd, sizeof *cd);
	free(cd);
	return r;
}

int
pt_pwscheme_verify(const char *stored, const char *password)
{
	char err[128];
	const char *hash;
	const struct scheme *s;

	if (!stored || !password || pt_pwscheme_check(stored, NULL, err, sizeof err) < 0)
		return -1;
	s = scheme_split(stored, &hash, err, sizeof err);
	if (s->id == PT_PWS_PLAIN)
		return plain_verify(hash, password);
	return crypt_verify(hash, password);
}

/* A real hash with the cost of the default scheme: checking an unknown
 * user against it takes as long as checking a known one. */
/* Debian's default for system users: PAM answers for unknown users as
 * slowly as for known ones. */
void
pt_pwscheme_dummy_verify_system(const char *password)
{
	static const char dummy[] = "$y$j9T$tRNymuDipV8bosmVWPr/j1$ycNsCpfFXGDTfmkP1.fp.8spkQQE4L/4Xn.J9XM4lQ5";
	(void)crypt_verify(dummy, password ? password : "");
}

void
pt_pwscheme_dummy_verify(const char *password)
{
	static const char dummy[] =
		"$6$rounds=5000$postern.dummy$2i4Yek/nBix.23A4OBGaACCj0/8jZ6ufo.aNP6.D2G4"
		"0amgidiLcIL5PiA9VpI9liKcgL592M0fhZ2jTWy7ke/";
	(void)crypt_verify(dummy, password ? password : "");
}

const char *
pt_pwscheme_name(enum pt_pwscheme id)
{
	for (const struct scheme *s = schemes; s->name; s++)
		if (s->id == id)
			return s->name;
	return "?";
}
