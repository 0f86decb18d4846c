/* Growable text buffer (include/postern/strbuf.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/strbuf.h"

/* Room for n more bytes and the terminator; 0 or -1 (oom set). */
static int
grow(struct pt_strbuf *b, size_t n)
{
	if (b->oom)
		return -1;
	size_t want = b->len + n + 1;
	if (want < b->len || (b->max && want > b->max)) {
		b->oom = 1;
		return -1;
	}
	if (want <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (p == NULL) {
		b->oom = 1;
		return -1;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

int
pt_strbuf_reserve(struct pt_strbuf *b, size_t n)
{
	return grow(b, n);
}

void
pt_strbuf_put(struct pt_strbuf *b, const void *s, size_t n)
{
	if (grow(b, n) != 0)
		return;
	if (n)
		memcpy(b->p + b->len, s, n);  /* s may be NULL when n is 0 */
	b->len += n;
	b->p[b->len] = '\0';
}

void
pt_strbuf_puts(struct pt_strbuf *b, const char *s)
{
	pt_strbuf_put(b, s, strlen(s));
}

void
pt_strbuf_printf(struct pt_strbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = 1;
		return;
	}
	if (grow(b, (size_t)n) != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
pt_strbuf_free(struct pt_strbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

void *
pt_array_grow(void *v, size_t *cap, size_t size, size_t first)
{
	size_t n = *cap ? *cap * 2 : first;
	if (size == 0 || n == 0 || (*cap && n < *cap) || n > (size_t)-1 / size)
		return NULL;
	void *nv = realloc(v, n * size);
	if (nv == NULL)
		return NULL;
	*cap = n;
	return nv;
}
