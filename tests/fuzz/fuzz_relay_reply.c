/* libFuzzer target: server output through the outbound client's reply
 * parser (fed in the chunks the first byte chooses), EHLO keyword parsing
 * and the one-line form quoted in bounces; plus the DATA encoder, whose
 * output must never contain a bare LF or a lone "." line. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/relay_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_encoding(const char *in, size_t len)
{
	size_t cap = 2 * len + 16;
	char *out = malloc(cap);
	if (out == NULL)
		return;
	struct relay_enc e;
	relay_enc_init(&e);
	size_t n = 0;
	/* Small output windows exercise the resumable state. */
	while (!e.done && n + 8 <= cap) {
		size_t got = relay_encode(&e, in, len, out + n, 8);
		if (got == 0 && !e.done)
			break;
		n += got;
	}
	if (e.done) {
		for (size_t i = 0; i < n; i++) {
			if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r'))
				abort(); /* bare LF on the wire */
			if (out[i] == '\r' && (i + 1 >= n || out[i + 1] != '\n'))
				abort(); /* bare CR on the wire */
		}
		/* Only the final terminator may be a line holding one dot. */
		for (size_t i = 0; i + 5 < n; i++)
			if (memcmp(out + i, "\r\n.\r\n", 5) == 0 && i + 5 != n)
				abort();
		/* SIZE= counts everything but the final ".CRLF". */
		if (n != relay_encoded_size(in, len) + 3)
			abort();
	}
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t chunk = (data[0] % 16) + 1;
	const char *p = (const char *)data + 1;
	size_t left = size - 1;
	struct relay_reply *r = malloc(sizeof *r);
	if (r == NULL)
		return 0;
	relay_reply_reset(r);
	while (left > 0) {
		size_t take = left < chunk ? left : chunk, used = 0;
		int rc = relay_reply_feed(r, p, take, &used);
		if (used > take)
			abort();
		if (rc != 0) {
			struct relay_ext ext;
			char one[RELAY_REPLY_TEXT_MAX + 64];
			relay_ehlo_parse(r, &ext);
			relay_reply_oneline(r, one, sizeof one);
			if (strlen(one) >= sizeof one)
				abort();
			relay_reply_reset(r);
			if (used == 0)
				used = take; /* a malformed reply still consumed its bytes */
		}
		p += used;
		left -= used;
	}
	free(r);
	check_encoding((const char *)data + 1, size - 1);
	return 0;
}
