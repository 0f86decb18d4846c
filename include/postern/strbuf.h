/* A growable NUL-terminated text buffer for building messages, queue
 * files and traces. Out of memory (or past max, when max is set) it stops
 * growing and sets oom; callers check once at the end. */
#ifndef POSTERN_STRBUF_H
#define POSTERN_STRBUF_H

#include <stddef.h>

struct pt_strbuf {
	char *p;                      /* NULL until the first byte */
	size_t len, cap;
	size_t max;                   /* 0 = no limit */
	int oom;
};

void pt_strbuf_put(struct pt_strbuf *b, const void *s, size_t n);
void pt_strbuf_puts(struct pt_strbuf *b, const char *s);
void pt_strbuf_printf(struct pt_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Room for n more bytes and the NUL without another realloc, for writers
 * that fill p + len themselves (then they move len and end with a NUL):
 * 0, or -1 with oom set. */
int pt_strbuf_reserve(struct pt_strbuf *b, size_t n);
void pt_strbuf_free(struct pt_strbuf *b);

/* Growing an array of any element type when it is full: returns v
 * reallocated to twice *cap elements of size bytes (first when *cap is
 * 0) and updates *cap, or NULL when memory or size_t runs out (v and
 * *cap are then as before). */
void *pt_array_grow(void *v, size_t *cap, size_t size, size_t first);

#endif
