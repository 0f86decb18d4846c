/* libFuzzer target: arbitrary message bytes formatted as one mbox delivery,
 * parsed back with the mbox reader: exactly one message whose text is the
 * envelope headers plus the input after the documented transformation
 * (CRLF -> LF, mailbox header fields stripped from the header section,
 * mboxrd ">From " quoting, the quoting marker, final LF), checked against a naive re-implementation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mbox/mbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Line by line with copies: deliberately simple, sharing no code with
 * mbox_format_body. */
static char *
reference(const char *in, size_t len, size_t *outlen)
{
	static const char *const strip[] = { "x-imapbase", "x-imap", "x-uid", "status", "x-status",
		"x-keywords", "content-length", "x-postern-quoting" };
	char *out = malloc(2 * len + 2);
	size_t o = 0;
	int header = 1, dropping = 0;
	size_t start = 0;
	while (start < len) {
		size_t end = start;
		while (end < len && in[end] != '\n')
			end++;
		int has_lf = end < len;
		char *line = malloc(end - start + 1);
		size_t ll = end - start;
		memcpy(line, in + start, ll);
		if (has_lf && ll && line[ll - 1] == '\r')
			ll--;
		start = end + 1;
		int keep = 1;
		if (header) {
			if (ll == 0) {
				header = 0;
			} else if (line[0] == ' ' || line[0] == '\t') {
				keep = !dropping;
			} else {
				dropping = 0;
				size_t nl = 0;
				while (nl < ll && line[nl] != ':' && line[nl] != ' ' && line[nl] != '\t')
					nl++;
				size_t c = nl;
				while (c < ll && (line[c] == ' ' || line[c] == '\t'))
					c++;
				if (c < ll && line[c] == ':')
					for (size_t k = 0; k < sizeof strip / sizeof strip[0]; k++)
						if (strlen(strip[k]) == nl && strncasecmp(line, strip[k], nl) == 0)
							dropping = 1;
				keep = !dropping;
			}
		}
		if (keep) {
			size_t q = 0;
			while (q < ll && line[q] == '>')
				q++;
			if (ll - q >= 5 && strncmp(line + q, "From ", 5) == 0)
				out[o++] = '>';
			memcpy(out + o, line, ll);
			o += ll;
			out[o++] = '\n';
		}
		free(line);
	}
	*outlen = o;
	return out;
}

struct one {
	int n;
	struct mbox_msg m;
};

static int
keep_first(void *arg, const struct mbox_msg *m)
{
	struct one *o = arg;
	if (o->n++ == 0)
		o->m = *m;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A NUL in the first bytes separates an envelope sender, so that
	 * odd senders (control bytes, spaces) are fuzzed too. */
	char sender[64] = "fuzz@example.com.ar";
	const char *msg = (const char *)data;
	size_t len = size;
	const uint8_t *nul = memchr(data, 0, size < sizeof sender ? size : sizeof sender);
	if (nul) {
		memcpy(sender, data, (size_t)(nul - data));
		sender[nul - data] = '\0';
		if (memchr(sender, '\0', (size_t)(nul - data)) == NULL) {
			msg = (const char *)nul + 1;
			len = size - (size_t)(nul - data) - 1;
		}
	}
	struct pt_user u = { .name = "fuzz", .uid = 1, .gid = 1, .home = "/nonexistent" };
	struct pt_delivery d = { "Q", sender, "r@example.com.ar", "o@example.com.ar", &u, msg, len,
		                 1795846087 };
	struct pt_strbuf b = { 0 };
	if (mbox_format(&d, &b) != 0)
		abort();
	struct one o = { 0 };
	off_t junk = -1;
	mbox_parse(b.p, b.len, keep_first, &o, &junk);
	if (o.n != 1 || junk != 0)
		abort();
	const char *nl = memchr(b.p, '\n', b.len);
	if (nl == NULL || o.m.from_off != 0 || o.m.from_len != (size_t)(nl - b.p) ||
	    !(o.m.hdr_off <= o.m.body_off && o.m.body_off <= o.m.end) ||
	    (size_t)o.m.end + 1 != b.len || b.p[b.len - 1] != '\n')
		abort();
	size_t rlen;
	char *want = reference(msg, len, &rlen);
	/* The quoting marker closes the header section (the first empty
	 * line, or the end). */
	size_t split = rlen;
	for (size_t i = 0; i < rlen; i++)
		if (want[i] == '\n' && (i == 0 || want[i - 1] == '\n')) {
			split = i;
			break;
		}
	size_t ml = strlen(MBOX_RD_MARKER);
	want = realloc(want, rlen + ml + 1);
	memmove(want + split + ml, want + split, rlen - split);
	memcpy(want + split, MBOX_RD_MARKER, ml);
	rlen += ml;
	/* Control bytes of the sender are '?' in the envelope lines. */
	char clean[64];
	size_t sl = strlen(sender);
	for (size_t i = 0; i <= sl; i++)
		clean[i] = (i < sl && ((unsigned char)sender[i] < 0x20 || sender[i] == 0x7f)) ? '?'
		                                                                            : sender[i];
	char env[512];
	int el = snprintf(env, sizeof env, "Return-Path: <%s>\nX-Original-To: o@example.com.ar\n"
	                  "Delivered-To: r@example.com.ar\n", clean);
	const char *text = b.p + o.m.hdr_off;
	size_t tlen = (size_t)(o.m.end - o.m.hdr_off);
	if (tlen != (size_t)el + rlen || memcmp(text, env, (size_t)el) != 0 ||
	    memcmp(text + el, want, rlen) != 0)
		abort();
	free(want);
	/* No stored line may start a message. (A CR LF may survive: only one
	 * CR before each LF belongs to the line end, "x\r\r\n" keeps one.) */
	for (size_t i = 0; i < tlen; i++)
		if ((i == 0 || text[i - 1] == '\n') && tlen - i >= 5 && memcmp(text + i, "From ", 5) == 0)
			abort();
	/* The incremental reader agrees when fed in two pieces. */
	size_t cut = len ? (size_t)data[0] * b.len / 256 : 0;
	struct mbox_reader r;
	struct one o2 = { 0 };
	mbox_reader_init(&r, keep_first, &o2);
	mbox_reader_feed(&r, b.p, cut);
	mbox_reader_feed(&r, b.p + cut, b.len - cut);
	mbox_reader_finish(&r);
	if (o2.n != 1 || memcmp(&o2.m, &o.m, sizeof o.m) != 0)
		abort();
	pt_strbuf_free(&b);
	return 0;
}
