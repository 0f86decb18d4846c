/* IMAP sequence sets ("1:3,5,7:*", RFC 3501 §9 sequence-set): parse,
 * membership with "*" resolved late, and compact formatting of UID lists. */
#include <stdlib.h>
#include <string.h>

#include "imap_msg.h"

/* nz-number or "*"; advances *p. 0, or -1 (0, leading junk, past 2^32-1). */
static int
parse_num(const char *s, size_t len, size_t *p, uint64_t *v)
{
	if (*p < len && s[*p] == '*') {
		(*p)++;
		*v = IMAP_SEQ_STAR;
		return 0;
	}
	if (*p >= len || s[*p] < '1' || s[*p] > '9')
		return -1;
	uint64_t n = 0;
	while (*p < len && s[*p] >= '0' && s[*p] <= '9') {
		n = n * 10 + (uint64_t)(s[*p] - '0');
		if (n > UINT32_MAX)
			return -1;
		(*p)++;
	}
	*v = n;
	return 0;
}

int
imap_seqset_parse(const char *s, size_t len, struct imap_seqset *out)
{
	out->r = NULL;
	out->n = 0;
	size_t cap = 0, p = 0;
	if (len == 0)
		return -1;
	for (;;) {
		uint64_t lo, hi;
		if (parse_num(s, len, &p, &lo) != 0)
			goto bad;
		hi = lo;
		if (p < len && s[p] == ':') {
			p++;
			if (parse_num(s, len, &p, &hi) != 0)
				goto bad;
		}
		/* Ranges with "*" stay as sent; the order is settled once "*"
		 * has a value (imap_seqset_contains). */
		if (lo > hi && lo != IMAP_SEQ_STAR) {
			uint64_t t = lo;
			lo = hi;
			hi = t;
		}
		if (out->n == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			struct imap_range *r = realloc(out->r, ncap * sizeof *r);
			if (r == NULL)
				goto bad;
			out->r = r;
			cap = ncap;
		}
		out->r[out->n].lo = lo;
		out->r[out->n].hi = hi;
		out->n++;
		if (p == len)
			return 0;
		if (s[p] != ',')
			goto bad;
		p++;
	}
bad:
	imap_seqset_free(out);
	return -1;
}

int
imap_seqset_contains(const struct imap_seqset *set, uint32_t v, uint32_t star)
{
	for (size_t i = 0; i < set->n; i++) {
		uint64_t lo = set->r[i].lo == IMAP_SEQ_STAR ? star : set->r[i].lo;
		uint64_t hi = set->r[i].hi == IMAP_SEQ_STAR ? star : set->r[i].hi;
		if (lo > hi) {
			uint64_t t = lo;
			lo = hi;
			hi = t;
		}
		if (v >= lo && v <= hi)
			return 1;
	}
	return 0;
}

void
imap_seqset_free(struct imap_seqset *set)
{
	free(set->r);
	set->r = NULL;
	set->n = 0;
}

void
imap_seqset_format(const uint32_t *v, size_t n, struct pt_strbuf *out)
{
	size_t i = 0;
	int first = 1;
	while (i < n) {
		uint32_t lo = v[i], hi = v[i];
		i++;
		/* duplicates are folded in; a value out of order starts a new run */
		while (i < n && (v[i] == hi || (hi != UINT32_MAX && v[i] == hi + 1))) {
			hi = v[i];
			i++;
		}
		if (lo == hi)
			pt_strbuf_printf(out, "%s%u", first ? "" : ",", lo);
		else
			pt_strbuf_printf(out, "%s%u:%u", first ? "" : ",", lo, hi);
		first = 0;
	}
}
