/* i;unicode-casemap (RFC 5051): include/postern/unicode_casemap.h. The
 * forms come from the generated tables (unicode_casemap_data.c); ASCII
 * never reaches them, so ASCII text costs what i;ascii-casemap did. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "postern/unicode_casemap.h"
#include "unicode_casemap_int.h"

#define HANGUL_FIRST 0xAC00u
#define HANGUL_LAST 0xD7A3u

static inline unsigned
ascii_upper(unsigned c)
{
	return c - 'a' < 26u ? c - 32u : c;
}

/* The code point of the well-formed UTF-8 sequence at s (s < end), its
 * length in *n; -1 when s[0] starts none (RFC 3629: no overlong form, no
 * surrogate, nothing past U+10FFFF, nothing cut short). */
static long
utf8_decode(const unsigned char *s, const unsigned char *end, size_t *n)
{
	unsigned c = s[0], lo = 0x80, hi = 0xBF;
	size_t need;
	uint32_t cp;

	if (c >= 0xC2 && c <= 0xDF) {
		need = 1;
		cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		need = 2;
		cp = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 3;
		cp = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return -1;
	}
	if ((size_t)(end - s) <= need)
		return -1;
	for (size_t k = 1; k <= need; k++) {
		unsigned x = s[k];
		if (x < lo || x > hi)
			return -1;
		cp = cp << 6 | (x & 0x3F);
		lo = 0x80;
		hi = 0xBF;
	}
	*n = need + 1;
	return (long)cp;
}

static size_t
utf8_put(uint32_t cp, unsigned char *o)
{
	if (cp < 0x800) {
		o[0] = (unsigned char)(0xC0 | cp >> 6);
		o[1] = (unsigned char)(0x80 | (cp & 0x3F));
		return 2;
	}
	o[0] = (unsigned char)(0xE0 | cp >> 12);
	o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
	o[2] = (unsigned char)(0x80 | (cp & 0x3F));
	return 3;
}

/* A walk over the canonical octets of one string. */
struct cm_iter {
	const unsigned char *s, *end;   /* input not yet read */
	const unsigned char *o, *oend;  /* octets of the current form not yet given */
	unsigned char tmp[12];          /* a Hangul syllable's jamo */
};

static void
cm_init(struct cm_iter *it, const char *s, size_t len)
{
	it->s = (const unsigned char *)(s != NULL ? s : "");
	it->end = it->s + (s != NULL ? len : 0);
	it->o = it->oend = NULL;
}

/* The form of the non-ASCII input at it->s into o..oend (never empty);
 * the input moves past it. */
static void
cm_form(struct cm_iter *it)
{
	size_t n;
	long cp = utf8_decode(it->s, it->end, &n);

	if (cp < 0) {
		/* a bad octet stands for itself */
		it->o = it->s++;
		it->oend = it->s;
		return;
	}
	const unsigned char *src = it->s;
	it->s += n;
	uint16_t e = ucm_stage2[(size_t)ucm_stage1[cp >> UCM_SHIFT] << UCM_SHIFT | ((size_t)cp & ((1u << UCM_SHIFT) - 1))];
	if (e != 0) {
		uint32_t m = ucm_maps[e - 1];
		it->o = ucm_blob + (m >> 8);
		it->oend = it->o + (m & 0xFF);
	} else if ((uint32_t)cp >= HANGUL_FIRST && (uint32_t)cp <= HANGUL_LAST) {
		/* Unicode 3.12: L V [T], each a 3-octet jamo */
		uint32_t si = (uint32_t)cp - HANGUL_FIRST, t = si % 28;
		size_t k = utf8_put(0x1100 + si / 588, it->tmp);
		k += utf8_put(0x1161 + si % 588 / 28, it->tmp + k);
		if (t != 0)
			k += utf8_put(0x11A7 + t, it->tmp + k);
		it->o = it->tmp;
		it->oend = it->tmp + k;
	} else {
		it->o = src;
		it->oend = it->s;
	}
}

/* The next canonical octet, or -1 at the end. */
static inline int
cm_next(struct cm_iter *it)
{
	if (it->o < it->oend)
		return *it->o++;
	if (it->s >= it->end)
		return -1;
	unsigned c = *it->s;
	if (c < 0x80) {
		it->s++;
		return (int)ascii_upper(c);
	}
	cm_form(it);
	return *it->o++;
}

void
pt_casemap_fold(const char *s, size_t len, struct pt_strbuf *out)
{
	struct cm_iter it;

	cm_init(&it, s, len);
	if (pt_strbuf_reserve(out, len) != 0)
		return;
	while (it.s < it.end) {
		/* an ASCII run in one copy, then one form */
		const unsigned char *a = it.s;
		while (it.s < it.end && *it.s < 0x80)
			it.s++;
		if (it.s > a) {
			size_t at = out->len;
			pt_strbuf_put(out, a, (size_t)(it.s - a));
			if (out->oom)
				return;
			for (size_t k = at; k < out->len; k++)
				out->p[k] = (char)ascii_upper((unsigned char)out->p[k]);
		}
		if (it.s < it.end) {
			cm_form(&it);
			pt_strbuf_put(out, it.o, (size_t)(it.oend - it.o));
		}
	}
}

void
pt_casemap_fold_buf(struct pt_strbuf *b)
{
	size_t i = 0;

	for (; i < b->len; i++) {
		unsigned char c = (unsigned char)b->p[i];
		if (c >= 0x80)
			break;
		b->p[i] = (char)ascii_upper(c);
	}
	if (i == b->len)
		return;
	struct pt_strbuf t = { .max = b->max };
	pt_strbuf_put(&t, b->p, i);
	pt_casemap_fold(b->p + i, b->len - i, &t);
	if (t.oom) {
		pt_strbuf_free(&t);
		b->oom = 1;
		return;
	}
	free(b->p);
	*b = t;
}

int
pt_casemap_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	struct cm_iter x, y;

	cm_init(&x, a, alen);
	cm_init(&y, b, blen);
	for (;;) {
		int p = cm_next(&x), q = cm_next(&y);
		if (p != q)
			return p < q ? -1 : 1;
		if (p < 0)
			return 0;
	}
}

/* One octet more of the text against the needle (Knuth-Morris-Pratt): the
 * matched length, nlen on a hit. */
static inline size_t
kmp_step(const unsigned char *nd, const size_t *fail, size_t k, unsigned ch)
{
	while (k > 0 && ch != nd[k])
		k = fail[k - 1];
	return ch == nd[k] ? k + 1 : k;
}

/* fail[i]: length of the longest proper prefix of nd[0..i] that is also
 * its suffix. */
static void
kmp_table(const unsigned char *nd, size_t nn, size_t *fail)
{
	fail[0] = 0;
	for (size_t j = 1, k = 0; j < nn; j++) {
		k = kmp_step(nd, fail, k, nd[j]);
		fail[j] = k;
	}
}

/* The form nd[0..nn) (nn > 0) in the form of hay. */
static int
scan(const unsigned char *nd, size_t nn, const size_t *fail, const char *hay, size_t hlen)
{
	int hit = 0;
	const unsigned char *p = (const unsigned char *)hay, *end = p + hlen;
	size_t k = 0;
	/* Octets that can start a match: the needle's first octet and, for a
	 * letter, its lower case; and any non-ASCII one (its form may begin
	 * with anything). Most of a text is skipped past at that test alone. */
	unsigned first = nd[0], alt = first - 'A' < 26u ? first + 32u : first;
	while (p < end && !hit) {
		if (k == 0) {
			while (p < end && *p != first && *p != alt && *p < 0x80)
				p++;
			if (p == end)
				break;
		}
		unsigned c = *p;
		if (c < 0x80) {
			p++;
			k = kmp_step(nd, fail, k, ascii_upper(c));
			hit = k == nn;
			continue;
		}
		struct cm_iter it = { .s = p, .end = end };
		cm_form(&it);
		p = it.s;
		for (const unsigned char *o = it.o; o < it.oend && !hit; o++) {
			k = kmp_step(nd, fail, k, *o);
			hit = k == nn;
		}
	}
	return hit;
}

int
pt_casemap_contains(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
	unsigned char nsmall[256];
	size_t fsmall[256];
	struct pt_strbuf nb = { 0 };
	const unsigned char *nd = nsmall;
	size_t nn = 0;

	if (nlen == 0)
		return 1;
	if (hay == NULL || hlen == 0)
		return 0;
	/* the needle's form, on the stack when it is short ASCII */
	size_t i = 0;
	for (; i < nlen && i < sizeof nsmall && (unsigned char)needle[i] < 0x80; i++)
		nsmall[i] = (unsigned char)ascii_upper((unsigned char)needle[i]);
	if (i == nlen) {
		nn = nlen;
	} else {
		pt_casemap_fold(needle, nlen, &nb);
		if (nb.oom) {
			pt_strbuf_free(&nb);
			return 0;
		}
		nd = (const unsigned char *)nb.p;
		nn = nb.len;
	}
	size_t *fail = nn <= sizeof fsmall / sizeof fsmall[0] ? fsmall : malloc(nn * sizeof *fail);
	if (fail == NULL) {
		pt_strbuf_free(&nb);
		return 0;
	}
	kmp_table(nd, nn, fail);
	int hit = scan(nd, nn, fail, hay, hlen);
	if (fail != fsmall)
		free(fail);
	pt_strbuf_free(&nb);
	return hit;
}

int
pt_casemap_needle_init(struct pt_casemap_needle *n, const char *needle, size_t nlen)
{
	memset(n, 0, sizeof *n);
	if (nlen == 0)
		return 0;
	struct pt_strbuf nb = { 0 };
	pt_casemap_fold(needle, nlen, &nb);
	if (nb.oom || nb.len == 0) {
		pt_strbuf_free(&nb);
		return -1;
	}
	size_t *fail = malloc(nb.len * sizeof *fail);
	if (fail == NULL) {
		pt_strbuf_free(&nb);
		return -1;
	}
	kmp_table((const unsigned char *)nb.p, nb.len, fail);
	n->form = nb.p;
	n->len = nb.len;
	n->fail = fail;
	return 0;
}

void
pt_casemap_needle_free(struct pt_casemap_needle *n)
{
	free(n->form);
	free(n->fail);
	memset(n, 0, sizeof *n);
}

int
pt_casemap_needle_in(const struct pt_casemap_needle *n, const char *hay, size_t hlen)
{
	if (n->len == 0)
		return 1;
	if (hay == NULL || hlen == 0)
		return 0;
	return scan((const unsigned char *)n->form, n->len, n->fail, hay, hlen);
}
