/* libFuzzer target: modified UTF-7 both ways. Whatever decodes must
 * encode back to the same bytes (one spelling per name), whatever encodes
 * must decode back; sequence sets, the RFC 5256 base subject (idempotent)
 * and the SORT address keys on the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_msg.h"
#include "imap/imap_msg_int.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	struct pt_strbuf d = { 0 }, e = { 0 };
	if (imap_utf7_decode(copy, size, &d) == 0) {
		if (imap_utf7_encode(d.p ? d.p : "", d.len, &e) != 0)
			abort();
		if (e.len != size || memcmp(e.p ? e.p : "", copy, size) != 0)
			abort();
	}
	pt_strbuf_free(&d);
	pt_strbuf_free(&e);
	if (imap_utf7_encode(copy, size, &e) == 0) {
		for (size_t i = 0; i < e.len; i++)
			if ((unsigned char)e.p[i] < 0x20 || (unsigned char)e.p[i] > 0x7e)
				abort();
		if (imap_utf7_decode(e.p ? e.p : "", e.len, &d) != 0)
			abort();
		if (d.len != size || memcmp(d.p ? d.p : "", copy, size) != 0)
			abort();
	}
	pt_strbuf_free(&d);
	pt_strbuf_free(&e);

	struct imap_seqset set;
	if (imap_seqset_parse(copy, size, &set) == 0) {
		if (set.n == 0)
			abort();
		for (size_t i = 0; i < set.n; i++)
			if (set.r[i].lo == 0 || set.r[i].hi == 0)
				abort();
		(void)imap_seqset_contains(&set, 7, 100);
		imap_seqset_free(&set);
	}
	/* A base subject has no leader or trailer left: extracting again
	 * changes nothing (when it holds no encoded word to decode again). */
	struct pt_strbuf b1 = { 0 }, b2 = { 0 }, mb = { 0 }, disp = { 0 };
	int reply;
	imap_base_subject(copy, size, &b1, &reply);
	if (b1.p == NULL || b1.p[b1.len] != 0)
		abort();
	if (memchr(b1.p, 0, b1.len) == NULL && strstr(b1.p, "=?") == NULL) {
		imap_base_subject(b1.p, b1.len, &b2, &reply);
		if (b2.len != b1.len || memcmp(b1.p, b2.p, b1.len) != 0 || reply)
			abort();
	}
	imap_msg_first_address(copy, size, &mb, &disp);
	pt_strbuf_free(&b1);
	pt_strbuf_free(&b2);
	pt_strbuf_free(&mb);
	pt_strbuf_free(&disp);
	free(copy);
	return 0;
}
