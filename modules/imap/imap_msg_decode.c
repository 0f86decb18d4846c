/* Text as SEARCH compares it: RFC 2047 encoded words in header values and
 * quoted-printable / base64 part bodies decoded, ISO-8859-1 made UTF-8. */
#include <string.h>

#include "imap_msg_int.h"

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}


/* base64, skipping anything that is not in the alphabet (line breaks). */
static void
base64_decode(const char *s, size_t n, struct pt_strbuf *out)
{
	unsigned long bits = 0;
	int nbits = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '=')
			break;
		int v = imap_b64val((unsigned char)s[i], '/');
		if (v < 0)
			continue;
		bits = (bits << 6) | (unsigned)v;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			char c = (char)((bits >> nbits) & 0xff);
			pt_strbuf_put(out, &c, 1);
			bits &= (1ul << nbits) - 1;
		}
	}
}

/* quoted-printable; in_header: "_" is a space (RFC 2047 Q). */
static void
qp_decode(const char *s, size_t n, int in_header, struct pt_strbuf *out)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '=') {
			int h, l;
			if (i + 2 < n && (h = hexval((unsigned char)s[i + 1])) >= 0
			    && (l = hexval((unsigned char)s[i + 2])) >= 0) {
				char d = (char)(h * 16 + l);
				pt_strbuf_put(out, &d, 1);
				i += 2;
				continue;
			}
			/* soft line break: "=" then optional blanks, then the line end */
			size_t j = i + 1;
			while (j < n && (s[j] == ' ' || s[j] == '\t'))
				j++;
			if (j < n && s[j] == '\r')
				j++;
			if (j < n && s[j] == '\n') {
				i = j;
				continue;
			}
			if (j == n) {
				i = j;
				continue;
			}
		} else if (c == '_' && in_header) {
			c = ' ';
		}
		pt_strbuf_put(out, &c, 1);
	}
}

int
imap_cte_decode(const char *enc, size_t enclen, const char *b, size_t n, struct pt_strbuf *out)
{
	int b64 = enc && imap_ascii_caseeq(enc, enclen, "base64");
	int qp = enc && imap_ascii_caseeq(enc, enclen, "quoted-printable");

	if (!b64 && !qp && enc && !imap_ascii_caseeq(enc, enclen, "7bit") &&
	    !imap_ascii_caseeq(enc, enclen, "8bit") && !imap_ascii_caseeq(enc, enclen, "binary"))
		return -1;
	if (out == NULL)
		return 0;
	if (b64)
		base64_decode(b, n, out);
	else if (qp)
		qp_decode(b, n, 0, out);
	else
		pt_strbuf_put(out, b, n);
	if (out->p == NULL)
		pt_strbuf_put(out, "", 0);
	return 0;
}

static void
latin1_to_utf8(const char *s, size_t n, struct pt_strbuf *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			pt_strbuf_put(out, &s[i], 1);
		} else {
			char u[2] = { (char)(0xc0 | (c >> 6)), (char)(0x80 | (c & 0x3f)) };
			pt_strbuf_put(out, u, 2);
		}
	}
}

static int
charset_known(const char *cs, size_t n, int *latin1)
{
	*latin1 = imap_ascii_caseeq(cs, n, "iso-8859-1") || imap_ascii_caseeq(cs, n, "latin1")
	          || imap_ascii_caseeq(cs, n, "iso_8859-1") || imap_ascii_caseeq(cs, n, "windows-1252");
	return *latin1 || imap_ascii_caseeq(cs, n, "utf-8") || imap_ascii_caseeq(cs, n, "us-ascii")
	       || imap_ascii_caseeq(cs, n, "utf8");
}

/* "=?charset?Q|B?text?=" at s[i]: its end (past "?="), or 0. */
static size_t
encoded_word(const char *s, size_t n, size_t i, struct pt_strbuf *out)
{
	if (n - i < 8 || s[i] != '=' || s[i + 1] != '?')
		return 0;
	size_t cs = i + 2, p = cs;
	while (p < n && s[p] != '?' && s[p] != ' ')
		p++;
	if (p >= n || s[p] != '?' || p == cs || p + 3 >= n || s[p + 2] != '?')
		return 0;
	char enc = s[p + 1];
	size_t ts = p + 3, te = ts;
	while (te + 1 < n && !(s[te] == '?' && s[te + 1] == '=') && s[te] != ' ')
		te++;
	if (te + 1 >= n || s[te] != '?' || s[te + 1] != '=')
		return 0;
	/* RFC 2231 language: "utf-8*en" */
	size_t csl = p - cs;
	const char *star = memchr(s + cs, '*', csl);
	if (star != NULL)
		csl = (size_t)(star - (s + cs));
	int latin1;
	if (!charset_known(s + cs, csl, &latin1))
		return 0;
	struct pt_strbuf raw = { 0 };
	if (enc == 'B' || enc == 'b')
		base64_decode(s + ts, te - ts, &raw);
	else if (enc == 'Q' || enc == 'q')
		qp_decode(s + ts, te - ts, 1, &raw);
	else
		return 0;
	if (latin1)
		latin1_to_utf8(raw.p ? raw.p : "", raw.len, out);
	else
		pt_strbuf_put(out, raw.p ? raw.p : "", raw.len);
	pt_strbuf_free(&raw);
	return te + 2;
}

void
imap_msg_decode_header(const char *v, size_t len, struct pt_strbuf *out)
{
	size_t i = 0, run = 0;
	size_t after_word = (size_t)-1; /* end of the last encoded word */
	while (i < len) {
		if (v[i] == '=' && i + 1 < len && v[i + 1] == '?') {
			struct pt_strbuf w = { 0 };
			size_t e = encoded_word(v, len, i, &w);
			if (e > 0) {
				/* white space between two encoded words is dropped */
				int only_space = after_word != (size_t)-1 && after_word == run;
				for (size_t k = run; only_space && k < i; k++)
					only_space = v[k] == ' ' || v[k] == '\t' || v[k] == '\r' || v[k] == '\n';
				if (!only_space)
					pt_strbuf_put(out, v + run, i - run);
				pt_strbuf_put(out, w.p ? w.p : "", w.len);
				pt_strbuf_free(&w);
				i = run = after_word = e;
				continue;
			}
			pt_strbuf_free(&w);
		}
		i++;
	}
	if (len > run) /* v may be NULL for an empty value */
		pt_strbuf_put(out, v + run, len - run);
}

void
imap_msg_decode_body(const struct imap_msg *m, const struct imap_part *p, struct pt_strbuf *out)
{
	const char *b = m->data + p->body_off;
	size_t n = p->body_len;
	struct pt_strbuf enc = { 0 };
	struct imap_ctype ct;
	int have_enc = imap_part_header(m, p, "content-transfer-encoding", &enc);
	imap_part_ctype(m, p, &ct);
	int latin1 = 0;
	const char *cs = imap_ctype_param(&ct, "charset");
	if (cs != NULL && ct.type != NULL && strcmp(ct.type, "text") == 0)
		(void)charset_known(cs, strlen(cs), &latin1);
	struct pt_strbuf raw = { 0 };
	const char *text = b;
	size_t tlen = n;
	if (have_enc && imap_ascii_caseeq(enc.p, enc.len, "base64")) {
		base64_decode(b, n, &raw);
		text = raw.p ? raw.p : "";
		tlen = raw.len;
	} else if (have_enc && imap_ascii_caseeq(enc.p, enc.len, "quoted-printable")) {
		qp_decode(b, n, 0, &raw);
		text = raw.p ? raw.p : "";
		tlen = raw.len;
	}
	if (latin1)
		latin1_to_utf8(text, tlen, out);
	else
		pt_strbuf_put(out, text, tlen);
	pt_strbuf_free(&raw);
	pt_strbuf_free(&enc);
	imap_ctype_free(&ct);
}
