/* libFuzzer target: header address qualification (core/addrlist.c) of a
 * field value and of a whole header section. Invariants: only whole
 * "@origin" / ".domain" insertions, as many as reported; no change means
 * an exact copy; a second pass over the result changes nothing (an
 * inserted text never joins or splits a token). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "postern/addrlist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct pt_addr_qualify Q = { "origin.example", "dom" };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct pt_strbuf out = { 0 }, again = { 0 };
	int n = pt_addrlist_qualify(in, size, &Q, &out);
	if (n < 0)
		goto done;
	size_t grown = out.len - size;
	if (out.len < size)
		abort();
	if (n == 0 && (out.len != size || (size && memcmp(out.p, in, size) != 0)))
		abort();
	/* a insertions of "@origin.example" (15) and b of ".dom" (4), a + b = n */
	int ok = 0;
	for (size_t a = 0; a <= (size_t)n && !ok; a++)
		ok = a * 15 + ((size_t)n - a) * 4 == grown;
	if (!ok)
		abort();
	if (n > 0 && pt_addrlist_qualify(out.p, out.len, &Q, &again) > 0)
		abort();
	pt_strbuf_free(&out);
	pt_strbuf_free(&again);

	/* The same bytes as a message. */
	int rc = pt_hdr_qualify(in, size, &Q, &out);
	if (rc == 0 && out.p != NULL)
		abort();
	if (rc == 1) {
		if (out.len <= size)
			abort();
		again.len = 0;
		if (pt_hdr_qualify(out.p, out.len, &Q, &again) == 1)
			abort();
	}
done:
	pt_strbuf_free(&out);
	pt_strbuf_free(&again);
	return 0;
}
