/* Modified UTF-7 mailbox names (RFC 3501 §5.1.3) to and from UTF-8, with
 * strict validation so that every name has exactly one spelling. */
#include <string.h>

#include "imap_msg.h"
#include "imap_msg_int.h"

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* One UTF-8 sequence at s[*p]: its code point, or -1 (overlong, surrogate,
 * past U+10FFFF, truncated). */
static long
utf8_next(const unsigned char *s, size_t len, size_t *p)
{
	unsigned c = s[*p];
	size_t n;
	long cp, min;
	if (c < 0x80) {
		(*p)++;
		return c;
	} else if ((c & 0xe0) == 0xc0) {
		n = 1; cp = c & 0x1f; min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		n = 2; cp = c & 0x0f; min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		n = 3; cp = c & 0x07; min = 0x10000;
	} else {
		return -1;
	}
	if (len - *p < n + 1)
		return -1;
	for (size_t i = 1; i <= n; i++) {
		if ((s[*p + i] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (s[*p + i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*p += n + 1;
	return cp;
}

static void
utf8_put(struct pt_strbuf *out, unsigned long cp)
{
	unsigned char b[4];
	size_t n;
	if (cp < 0x80) {
		b[0] = (unsigned char)cp; n = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3f)); n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f)); n = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | (cp >> 18));
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f)); n = 4;
	}
	pt_strbuf_put(out, b, n);
}

int
imap_utf7_encode(const char *in, size_t len, struct pt_strbuf *out)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t start = out->len, p = 0;
	while (p < len) {
		if (s[p] >= 0x20 && s[p] <= 0x7e) {
			if (s[p] == '&')
				pt_strbuf_put(out, "&-", 2);
			else
				pt_strbuf_put(out, &s[p], 1);
			p++;
			continue;
		}
		/* a run of characters outside printable ASCII: one shift */
		unsigned long bits = 0;
		int nbits = 0;
		pt_strbuf_put(out, "&", 1);
		while (p < len && !(s[p] >= 0x20 && s[p] <= 0x7e)) {
			long cp = utf8_next(s, len, &p);
			if (cp <= 0) /* NUL has no place in a name */
				goto bad;
			unsigned units[2], nu = 0;
			if (cp >= 0x10000) {
				units[nu++] = 0xd800 | (unsigned)((cp - 0x10000) >> 10);
				units[nu++] = 0xdc00 | (unsigned)((cp - 0x10000) & 0x3ff);
			} else {
				units[nu++] = (unsigned)cp;
			}
			for (unsigned u = 0; u < nu; u++) {
				bits = (bits << 16) | units[u];
				nbits += 16;
				while (nbits >= 6) {
					nbits -= 6;
					pt_strbuf_put(out, &b64chars[(bits >> nbits) & 0x3f], 1);
				}
				bits &= (1ul << nbits) - 1;
			}
		}
		if (nbits > 0)
			pt_strbuf_put(out, &b64chars[(bits << (6 - nbits)) & 0x3f], 1);
		pt_strbuf_put(out, "-", 1);
	}
	return 0;
bad:
	out->len = start;
	if (out->p != NULL)
		out->p[start] = '\0';
	return -1;
}

int
imap_utf7_decode(const char *in, size_t len, struct pt_strbuf *out)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t start = out->len, p = 0;
	int prev_shift = 0; /* the last thing was a base64 run: another may not follow */
	while (p < len) {
		if (s[p] < 0x20 || s[p] > 0x7e)
			goto bad;
		if (s[p] != '&') {
			pt_strbuf_put(out, &s[p], 1);
			p++;
			prev_shift = 0;
			continue;
		}
		p++;
		if (p < len && s[p] == '-') {
			pt_strbuf_put(out, "&", 1);
			p++;
			prev_shift = 0;
			continue;
		}
		if (prev_shift)
			goto bad; /* "&AGQ-&AGQ-" must be written as one run */
		unsigned long bits = 0;
		int nbits = 0;
		unsigned high = 0; /* pending high surrogate */
		size_t nunits = 0;
		while (p < len && s[p] != '-') {
			int v = imap_b64val(s[p], ',');
			if (v < 0)
				goto bad;
			bits = (bits << 6) | (unsigned)v;
			nbits += 6;
			p++;
			if (nbits < 16)
				continue;
			nbits -= 16;
			unsigned u = (unsigned)(bits >> nbits) & 0xffff;
			bits &= (1ul << nbits) - 1;
			nunits++;
			if (high) {
				if (u < 0xdc00 || u > 0xdfff)
					goto bad;
				utf8_put(out, 0x10000 + (((unsigned long)high - 0xd800) << 10) + (u - 0xdc00));
				high = 0;
			} else if (u >= 0xd800 && u <= 0xdbff) {
				high = u;
			} else if (u >= 0xdc00 && u <= 0xdfff) {
				goto bad;
			} else if (u == 0 || (u >= 0x20 && u <= 0x7e)) {
				goto bad; /* printable ASCII must be written directly */
			} else {
				utf8_put(out, u);
			}
		}
		/* unterminated, empty, a lone surrogate, or leftover bits that
		 * are a whole base64 digit or not zero */
		if (p >= len || nunits == 0 || high || nbits >= 6 || bits != 0)
			goto bad;
		p++;
		prev_shift = 1;
	}
	return out->oom ? -1 : 0;
bad:
	out->len = start;
	if (out->p != NULL)
		out->p[start] = '\0';
	return -1;
}
