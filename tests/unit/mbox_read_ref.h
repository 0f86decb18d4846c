/* Reference models for the differential tests of the mbox reader and the
 * wire size (tests/unit/test_mbox_read_diff.c, tests/fuzz/fuzz_mbox_read.c):
 * the rules written out the slow, obvious way -- one line at a time, one
 * byte at a time -- so the fast paths of mbox_read.c and mbox_store_meta.c
 * can be compared with them on any input. */
#ifndef MBOX_READ_REF_H
#define MBOX_READ_REF_H

#include <stdlib.h>
#include <string.h>

#include "mbox/mbox.h"

struct ref_list {
	struct mbox_msg *m;
	size_t n, cap;
};

static inline int
ref_add(void *arg, const struct mbox_msg *m)
{
	struct ref_list *l = arg;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->m = realloc(l->m, l->cap * sizeof *l->m);
		if (l->m == NULL)
			abort();
	}
	l->m[l->n++] = *m;
	return 0;
}

/* The mbox splitting rules over the whole input, line by line: a "From "
 * line starts a message when it is the first one, follows an empty line,
 * or (up to MBOX_FROM_LINE_MAX bytes long) looks like a real From_ line;
 * the header ends at the first empty line; the empty line before a
 * From_ line separates and belongs to no message; a last line without
 * LF counts. */
static inline void
ref_parse(const char *s, size_t len, struct ref_list *out, off_t *junk_out)
{
	off_t junk = 0, empty_off = -1;
	int in_msg = 0, in_body = 0, prev_empty = 0;
	struct mbox_msg cur;
	memset(&cur, 0, sizeof cur);
	size_t pos = 0;
	while (pos < len) {
		const char *nl = memchr(s + pos, '\n', len - pos);
		size_t total = nl ? (size_t)(nl - (s + pos)) : len - pos;
		int has_lf = nl != NULL;
		off_t off = (off_t)pos, next = (off_t)(pos + total + (has_lf ? 1 : 0));
		int from = total >= 5 && memcmp(s + pos, "From ", 5) == 0;
		if (from && (!in_msg || prev_empty ||
		             (total <= MBOX_FROM_LINE_MAX && mbox_from_line_valid(s + pos, total)))) {
			if (in_msg) {
				cur.end = prev_empty ? empty_off : off;
				if (!in_body || cur.body_off > cur.end)
					cur.body_off = cur.end;
				ref_add(out, &cur);
			} else {
				junk = off;
			}
			in_msg = 1;
			in_body = 0;
			cur.from_off = off;
			cur.from_len = total;
			cur.hdr_off = next;
			cur.body_off = next;
			prev_empty = 0;
		} else {
			if (!in_msg)
				junk = next;
			if (in_msg && !in_body && total == 0 && has_lf) {
				in_body = 1;
				cur.body_off = off + 1;
			}
			prev_empty = total == 0 && has_lf;
			if (prev_empty)
				empty_off = off;
		}
		pos = (size_t)next;
	}
	if (in_msg) {
		cur.end = prev_empty ? empty_off : (off_t)len;
		if (!in_body || cur.body_off > cur.end)
			cur.body_off = cur.end;
		ref_add(out, &cur);
	} else {
		junk = (off_t)len;
	}
	*junk_out = junk;
}

/* LFs in [s, s+n) without a CR right before them inside the piece. */
static inline size_t
ref_bare_lfs(const char *s, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			c++;
	return c;
}

#endif
