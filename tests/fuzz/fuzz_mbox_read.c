/* libFuzzer target: the mbox reader on arbitrary bytes. Spans must be
 * ordered and inside the input, and feeding the input in three pieces must
 * give exactly the messages of the one-piece parse. Both must equal the
 * line-by-line model of tests/unit/mbox_read_ref.h (the reader skips
 * plain lines a block at a time), and so must the fed-in-many-chunks
 * parse; each message's wire size must equal the length of its wire form
 * (ms_wire_size counts bare LFs a block at a time). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mbox/mbox.h"
#include "mbox/mbox_store.h"
#include "../unit/mbox_read_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct ref_list whole = { 0 }, parts = { 0 };
	off_t junk;
	mbox_parse(s, size, ref_add, &whole, &junk);
	if (junk < 0 || (size_t)junk > size)
		abort();
	off_t prev_end = junk;
	for (size_t i = 0; i < whole.n; i++) {
		const struct mbox_msg *m = &whole.m[i];
		if (m->from_off < prev_end || m->hdr_off < m->from_off + (off_t)m->from_len ||
		    m->body_off < m->hdr_off || m->end < m->body_off || (size_t)m->end > size ||
		    memcmp(s + m->from_off, "From ", 5) != 0)
			abort();
		prev_end = m->end;
	}
	size_t a = size ? data[0] % (size + 1) : 0;
	size_t b = size ? data[size - 1] % (size + 1) : 0;
	if (a > b) {
		size_t t = a;
		a = b;
		b = t;
	}
	struct mbox_reader r;
	mbox_reader_init(&r, ref_add, &parts);
	mbox_reader_feed(&r, s, a);
	mbox_reader_feed(&r, s + a, b - a);
	mbox_reader_feed(&r, s + b, size - b);
	mbox_reader_finish(&r);
	if (parts.n != whole.n || r.junk != junk ||
	    (whole.n && memcmp(parts.m, whole.m, whole.n * sizeof *whole.m) != 0))
		abort();
	struct ref_list ref = { 0 };
	off_t ref_junk;
	ref_parse(s, size, &ref, &ref_junk);
	if (ref.n != whole.n || ref_junk != junk || r.count != ref.n ||
	    (ref.n && memcmp(ref.m, whole.m, ref.n * sizeof *ref.m) != 0))
		abort();
	/* Many small pieces, their sizes from the input's bytes (1..16). */
	struct ref_list small = { 0 };
	mbox_reader_init(&r, ref_add, &small);
	for (size_t at = 0, k = 0; at < size; k++) {
		size_t step = 1 + (size_t)(data[k % size] & 15);
		if (step > size - at)
			step = size - at;
		mbox_reader_feed(&r, s + at, step);
		at += step;
	}
	mbox_reader_finish(&r);
	if (small.n != ref.n || r.junk != junk ||
	    (ref.n && memcmp(small.m, ref.m, ref.n * sizeof *ref.m) != 0))
		abort();
	/* The whole input as one message text, and each message. */
	for (size_t i = 0; i <= whole.n; i++) {
		const char *p = i < whole.n ? s + whole.m[i].hdr_off : s;
		size_t n = i < whole.n ? (size_t)(whole.m[i].end - whole.m[i].hdr_off) : size;
		for (int rd = 0; rd <= 1; rd++) {
			struct pt_strbuf b = { 0 };
			size_t form_hdr = 0, size_hdr = 0;
			if (ms_wire_form(p, n, &b, &form_hdr, rd) != 0)
				abort();
			if (ms_wire_size(p, n, &size_hdr, rd) != b.len || size_hdr != form_hdr)
				abort();
			pt_strbuf_free(&b);
		}
	}
	/* Header parse and size in one, as a load does it. */
	static struct ms_hdr ha, hb;
	for (size_t i = 0; i < whole.n; i++) {
		const struct mbox_msg *m = &whole.m[i];
		const char *p = s + m->hdr_off;
		size_t hl = (size_t)(m->body_off - m->hdr_off), n = (size_t)(m->end - m->hdr_off);
		ms_header_parse(p, hl, &ha);
		uint64_t sz = ms_header_parse_size(p, hl, n, &hb);
		if (memcmp(&ha, &hb, sizeof ha) != 0 || sz != ms_wire_size(p, n, NULL, ha.rd))
			abort();
	}
	free(ref.m);
	free(small.m);
	free(whole.m);
	free(parts.m);
	return 0;
}
