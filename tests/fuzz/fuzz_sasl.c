/* libFuzzer target for the SASL PLAIN / LOGIN decoders: the first byte
 * picks the mechanism and where lines split, the rest is client lines
 * separated by '\n'. Checks invariants, not just absence of crashes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "postern/sasl.h"

static void
check_done(const struct pt_sasl *s)
{
	/* Credentials handed out are C strings of sane lengths, no controls
	 * in the name. */
	const char *u = pt_sasl_user(s), *p = pt_sasl_password(s), *z = pt_sasl_authzid(s);
	if (strlen(u) == 0 || strlen(u) > PT_SASL_USER_MAX || strlen(p) > PT_SASL_PASS_MAX)
		abort();
	for (const char *c = u; *c; c++)
		if ((unsigned char)*c < 0x20)
			abort();
	if (*z && strcmp(z, u) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	enum pt_sasl_mech m = (data[0] & 1) ? PT_SASL_LOGIN : PT_SASL_PLAIN;
	int initial = (data[0] >> 1) & 1;
	size_t split = data[0] >> 2;
	const char *p = (const char *)data + 1, *end = (const char *)data + size;

	struct pt_sasl *s = pt_sasl_new(m);
	if (!s)
		return 0;
	enum pt_sasl_status st;
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	if (initial) {
		const char *e = nl ? nl : end;
		st = pt_sasl_start(s, p, (size_t)(e - p));
		p = nl ? nl + 1 : end;
	} else {
		st = pt_sasl_start(s, NULL, 0);
	}
	while (st == PT_SASL_CHALLENGE && p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end;
		size_t len = (size_t)(e - p), k = split < len ? split : len;
		st = pt_sasl_feed(s, p, k);
		if (st == PT_SASL_CHALLENGE)
			st = pt_sasl_step(s, p + k, len - k);
		p = nl ? nl + 1 : end;
		if (st == PT_SASL_CHALLENGE && strlen(pt_sasl_challenge(s)) == 0 && m == PT_SASL_LOGIN)
			abort();  /* LOGIN always prompts with text */
	}
	if (st == PT_SASL_DONE)
		check_done(s);
	pt_sasl_free(s);

	/* The decoder and encoder agree: decode(encode(x)) == x. */
	char enc[2 * 4096 / 3 + 8];
	unsigned char dec[4096];
	size_t n = size - 1 > 3000 ? 3000 : size - 1, got;
	if (pt_base64_encode(data + 1, n, enc, sizeof enc) == (size_t)-1)
		abort();
	if (pt_base64_decode(enc, strlen(enc), dec, sizeof dec, &got) != 0 || got != n ||
	    memcmp(dec, data + 1, n) != 0)
		abort();
	/* Whatever decodes re-encodes to the same text (strict, canonical). */
	if (pt_base64_decode((const char *)data + 1, size - 1, dec, sizeof dec, &got) == 0) {
		char re[sizeof dec * 4 / 3 + 8];
		if (pt_base64_encode(dec, got, re, sizeof re) != size - 1 ||
		    memcmp(re, data + 1, size - 1) != 0)
			abort();
	}
	return 0;
}
