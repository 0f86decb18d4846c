/* libFuzzer target: the DATA decoder and the BDAT converter. The first
 * input byte picks the bare-newline policy and a split point; the decoder
 * must give the same result whole and split, never store a CR (normalize),
 * and never end except right after CR LF "." CR LF. BDAT: chunking
 * never changes the stored bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum smtp_data_status
run(const char *in, size_t n, size_t cut, enum smtp_bare_policy pol, struct smtp_msgbuf *b, size_t *used)
{
	struct smtp_data_dec d;
	enum smtp_data_status st;
	size_t u1 = 0, u2 = 0;

	smtp_data_init(&d, pol);
	smtp_msgbuf_init(b, 1 << 20, 4096);
	st = smtp_data_feed(&d, in, cut, &u1, b);
	if (u1 > cut)
		abort();
	if (st != SMTP_DATA_MORE) {
		*used = u1;
		return st;
	}
	if (u1 != cut)
		abort();
	st = smtp_data_feed(&d, in + cut, n - cut, &u2, b);
	if (u2 > n - cut)
		abort();
	*used = cut + u2;
	return st;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_msgbuf a, b;
	size_t ua, ub, cut;
	enum smtp_bare_policy pol;
	enum smtp_data_status sa, sb;
	const char *in;

	if (size < 1)
		return 0;
	pol = (data[0] & 1) ? SMTP_BARE_REJECT : SMTP_BARE_NORMALIZE;
	in = (const char *)data + 1;
	size--;
	cut = size ? (data[0] >> 1) % (size + 1) : 0;

	sa = run(in, size, size, pol, &a, &ua);
	sb = run(in, size, cut, pol, &b, &ub);
	if (sa != sb || ua != ub || a.len != b.len || a.content != b.content ||
	    (a.len && memcmp(a.p, b.p, a.len) != 0))
		abort();
	if (sa == SMTP_DATA_END) {
		/* Ended exactly after CR LF "." CR LF (or "." CR LF at the start). */
		if (ua < 3 || memcmp(in + ua - 3, ".\r\n", 3) != 0)
			abort();
		if (ua > 3 && (ua < 5 || memcmp(in + ua - 5, "\r\n", 2) != 0))
			abort();
	}
	if (pol == SMTP_BARE_NORMALIZE && a.len && memchr(a.p, '\r', a.len))
		abort();
	if (pol == SMTP_BARE_NORMALIZE && sa == SMTP_DATA_BARE)
		abort();
	smtp_msgbuf_free(&a);
	smtp_msgbuf_free(&b);

	/* BDAT: the same bytes as two chunks equal one chunk. */
	struct smtp_bdat_conv c1 = {0}, c2 = {0};
	smtp_msgbuf_init(&a, 0, 0);
	smtp_msgbuf_init(&b, 0, 0);
	smtp_bdat_feed(&c1, in, size, &a);
	smtp_bdat_finish(&c1, &a);
	smtp_bdat_feed(&c2, in, cut, &b);
	smtp_bdat_feed(&c2, in + cut, size - cut, &b);
	smtp_bdat_finish(&c2, &b);
	if (a.len != b.len || (a.len && memcmp(a.p, b.p, a.len) != 0))
		abort();
	smtp_msgbuf_free(&a);
	smtp_msgbuf_free(&b);
	return 0;
}
