/* libFuzzer target: the mbox reader on arbitrary bytes. Spans must be
 * ordered and inside the input, and feeding the input in three pieces must
 * give exactly the messages of the one-piece parse. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mbox/mbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct list {
	struct mbox_msg *m;
	size_t n, cap;
};

static int
add(void *arg, const struct mbox_msg *m)
{
	struct list *l = arg;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->m = realloc(l->m, l->cap * sizeof *l->m);
		if (l->m == NULL)
			abort();
	}
	l->m[l->n++] = *m;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct list whole = { 0 }, parts = { 0 };
	off_t junk;
	mbox_parse(s, size, add, &whole, &junk);
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
	mbox_reader_init(&r, add, &parts);
	mbox_reader_feed(&r, s, a);
	mbox_reader_feed(&r, s + a, b - a);
	mbox_reader_feed(&r, s + b, size - b);
	mbox_reader_finish(&r);
	if (parts.n != whole.n || r.junk != junk ||
	    (whole.n && memcmp(parts.m, whole.m, whole.n * sizeof *whole.m) != 0))
		abort();
	free(whole.m);
	free(parts.m);
	return 0;
}
