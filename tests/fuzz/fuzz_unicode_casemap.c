/* libFuzzer target: i;unicode-casemap (core/unicode_casemap.c) on any
 * octets. The canonical form is a fixed point (folding it again changes
 * nothing), a string equals its form and contains it both ways, the
 * in-place fold gives the same octets, and comparing two halves agrees
 * with the octet order of their forms. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "postern/unicode_casemap.h"

static int
sign(int v)
{
	return v < 0 ? -1 : v > 0;
}

static int
octet_cmp(const struct pt_strbuf *a, const struct pt_strbuf *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	int c = n ? memcmp(a->p, b->p, n) : 0;
	return c != 0 ? sign(c) : a->len < b->len ? -1 : a->len > b->len;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct pt_strbuf f = { 0 }, g = { 0 }, h = { 0 };

	pt_casemap_fold(s, size, &f);
	if (f.oom)
		abort();
	/* each input octet gives at most one form of at most 33 octets */
	if (f.len > 33 * size)
		abort();
	pt_casemap_fold(f.p, f.len, &g);
	if (g.len != f.len || memcmp(g.p, f.p, f.len) != 0)
		abort();
	if (pt_casemap_cmp(s, size, f.p, f.len) != 0)
		abort();
	if (!pt_casemap_contains(s, size, f.p, f.len) || !pt_casemap_contains(f.p, f.len, s, size))
		abort();
	pt_strbuf_put(&h, s, size);
	pt_casemap_fold_buf(&h);
	if (h.len != f.len || memcmp(h.p, f.p, f.len) != 0)
		abort();
	/* two halves: the comparator orders them as their forms do */
	size_t mid = size / 2;
	struct pt_strbuf a = { 0 }, b = { 0 };
	pt_casemap_fold(s, mid, &a);
	pt_casemap_fold(s + mid, size - mid, &b);
	int c = pt_casemap_cmp(s, mid, s + mid, size - mid);
	if (sign(c) != octet_cmp(&a, &b) || sign(pt_casemap_cmp(s + mid, size - mid, s, mid)) != -sign(c))
		abort();
	/* a form found in the other's form means contains() says so */
	if (a.len && b.len && memmem(b.p, b.len, a.p, a.len) != NULL && !pt_casemap_contains(s + mid, size - mid, s, mid))
		abort();
	pt_strbuf_free(&a);
	pt_strbuf_free(&b);
	pt_strbuf_free(&f);
	pt_strbuf_free(&g);
	pt_strbuf_free(&h);
	return 0;
}
