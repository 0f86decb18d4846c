/* The mbox reader: message boundaries, header/body spans, junk, damaged
 * endings, and the same result whatever way the input is split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mbox/mbox.h"

#define MAXMSG 32

struct result {
	struct mbox_msg m[MAXMSG];
	size_t n;
	off_t junk;
	int stop_after;               /* stop when this many were seen (0 = never) */
};

static int
collect(void *arg, const struct mbox_msg *m)
{
	struct result *r = arg;
	assert_true(r->n < MAXMSG);
	r->m[r->n++] = *m;
	return r->stop_after && r->n == (size_t)r->stop_after ? 7 : 0;
}

static void
parse_whole(const char *s, size_t len, struct result *r)
{
	memset(r, 0, sizeof *r);
	assert_int_equal(mbox_parse(s, len, collect, r, &r->junk), 0);
}

/* Feed in pieces cut at the given offsets. */
static void
parse_pieces(const char *s, size_t len, const size_t *cuts, size_t ncuts, struct result *r)
{
	struct mbox_reader rd;
	memset(r, 0, sizeof *r);
	mbox_reader_init(&rd, collect, r);
	size_t at = 0;
	for (size_t i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : len;
		assert_int_equal(mbox_reader_feed(&rd, s + at, to - at), 0);
		at = to;
	}
	assert_int_equal(mbox_reader_finish(&rd), 0);
	r->junk = rd.junk;
}

static void
assert_same(const struct result *a, const struct result *b)
{
	assert_int_equal(a->n, b->n);
	assert_int_equal(a->junk, b->junk);
	for (size_t i = 0; i < a->n; i++) {
		assert_int_equal(a->m[i].from_off, b->m[i].from_off);
		assert_int_equal(a->m[i].from_len, b->m[i].from_len);
		assert_int_equal(a->m[i].hdr_off, b->m[i].hdr_off);
		assert_int_equal(a->m[i].body_off, b->m[i].body_off);
		assert_int_equal(a->m[i].end, b->m[i].end);
	}
}

static const char *const shapes[] = {
	"",
	"\n",
	("From a  Sat Nov 28 06:08:07 2026\nH: 1\n\nbody\n\n"
	 "From b  Sat Nov 28 06:08:08 2026\nH: 2\n\nb2\n\n"),   /* one mbox of two messages */
	"junk line\nmore junk\nFrom a x\nH: 1\n",
	"From a\nH: 1\n\ntext\nFrom here on, no date\n\n",
	"From a\nH: 1\n\ntext\nFrom b  Sat Nov 28 06:08:07 2026\nH: 2\n\n",
	"From a\nH: x\n\nbody without final newline",
	"From a\nH: x\n\nFrom b\nH: y\n",
	"From a\n",
	"From a",
	"From a\n\n\n\nFrom b\n\nx\n\n\n",
	"From a\nH: x\n\nFrom",
	"From MAILER-DAEMON  Thu Jan  1 00:00:00 1970 +0000 1970\nS: 1\n\n>From x\n\n",
	"Fro",
	"From a\r\nH: 1\r\n\r\nb\r\n\r\nFrom b\r\n",
};

static void
test_split_at_every_offset(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
		const char *s = shapes[k];
		size_t len = strlen(s);
		struct result whole, part;
		parse_whole(s, len, &whole);
		for (size_t cut = 0; cut <= len; cut++) {
			parse_pieces(s, len, &cut, 1, &part);
			assert_same(&whole, &part);
		}
		/* Byte by byte. */
		size_t *cuts = calloc(len + 1, sizeof *cuts);
		for (size_t i = 0; i < len; i++)
			cuts[i] = i;
		parse_pieces(s, len, cuts, len, &part);
		assert_same(&whole, &part);
		free(cuts);
	}
}

static void
test_two_messages(void **state)
{
	(void)state;
	const char *s = shapes[2];
	struct result r;
	parse_whole(s, strlen(s), &r);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.junk, 0);
	assert_int_equal(r.m[0].from_off, 0);
	assert_int_equal(r.m[0].from_len, strlen("From a  Sat Nov 28 06:08:07 2026"));
	assert_memory_equal(s + r.m[0].hdr_off, "H: 1\n\nbody\n", r.m[0].end - r.m[0].hdr_off);
	assert_memory_equal(s + r.m[0].body_off, "body\n", r.m[0].end - r.m[0].body_off);
	assert_int_equal(r.m[0].end - r.m[0].hdr_off, 11);
	assert_int_equal(r.m[1].from_off, r.m[0].end + 1);
	assert_int_equal(r.m[1].end - r.m[1].body_off, 3);
	assert_memory_equal(s + r.m[1].body_off, "b2\n", 3);
	assert_int_equal(r.m[1].end, (off_t)strlen(s) - 1);
}

static void
test_junk_before_first_from(void **state)
{
	(void)state;
	struct result r;
	parse_whole(shapes[3], strlen(shapes[3]), &r);
	assert_int_equal(r.junk, 20);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.m[0].from_off, 20);
	/* No From_ line at all: everything is junk, no message. */
	parse_whole("not an mbox\n", 12, &r);
	assert_int_equal(r.n, 0);
	assert_int_equal(r.junk, 12);
	parse_whole("", 0, &r);
	assert_int_equal(r.n, 0);
	assert_int_equal(r.junk, 0);
}

static void
test_from_without_blank_line(void **state)
{
	(void)state;
	struct result r;
	/* Unquoted "From " text of another writer stays in its message... */
	parse_whole(shapes[4], strlen(shapes[4]), &r);
	assert_int_equal(r.n, 1);
	/* ...but a real From_ line starts a message even without the empty
	 * line before it. */
	parse_whole(shapes[5], strlen(shapes[5]), &r);
	assert_int_equal(r.n, 2);
	assert_memory_equal(shapes[5] + r.m[0].body_off, "text\n", 5);
	assert_int_equal(r.m[0].end - r.m[0].body_off, 5);
}

static void
test_damaged_and_empty_messages(void **state)
{
	(void)state;
	struct result r;
	const char *s = shapes[6];
	parse_whole(s, strlen(s), &r);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.m[0].end, (off_t)strlen(s));
	assert_memory_equal(s + r.m[0].body_off, "body without final newline", 26);
	/* No body: the empty line is the separator, not a header end. */
	s = shapes[7];
	parse_whole(s, strlen(s), &r);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.m[0].end - r.m[0].hdr_off, 5);
	assert_int_equal(r.m[0].body_off, r.m[0].end);
	assert_int_equal(r.m[1].end, (off_t)strlen(s));
	/* A From_ line alone. */
	parse_whole("From a\n", 7, &r);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.m[0].hdr_off, 7);
	assert_int_equal(r.m[0].end, 7);
	parse_whole("From a", 6, &r);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.m[0].from_len, 6);
	assert_int_equal(r.m[0].end, 6);
	/* Several empty lines: only the last one separates. */
	s = shapes[10];
	parse_whole(s, strlen(s), &r);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.m[0].hdr_off, 7);
	assert_int_equal(r.m[0].end, 9);
	assert_int_equal(r.m[1].end - r.m[1].body_off, 3);
}

static void
test_from_line_validity(void **state)
{
	(void)state;
#define V(s) mbox_from_line_valid(s, strlen(s))
	assert_true(V("From carol@example.com.ar  Sat Nov 28 06:08:07 2026"));
	assert_true(V("From MAILER-DAEMON  Sun Nov  1 06:08:07 2026"));
	assert_true(V("From a Sun Nov 1 06:08 2026"));
	assert_true(V("From a Sun Nov 1 06:08:07 +0100 2026"));
	assert_true(V("From a Sun Nov 1 06:08:07 2026 remote from x"));
	assert_false(V("From here on, no date"));
	assert_false(V("From a Sun Nov 1 06:08:07"));
	assert_false(V("From a Sun Foo 1 06:08:07 2026"));
	assert_false(V("From a Sun Nov 100 06:08:07 2026"));
	assert_false(V("From a Sun Nov 1 6:08:07 2026"));
	assert_false(V("From a Sun Nov 1 06:08:07 26"));
	assert_false(V(">From a Sun Nov 1 06:08:07 2026"));
	assert_false(V("From"));
#undef V
}

static void
test_callback_stops(void **state)
{
	(void)state;
	const char *s = shapes[2];
	struct result r;
	memset(&r, 0, sizeof r);
	r.stop_after = 1;
	assert_int_equal(mbox_parse(s, strlen(s), collect, &r, NULL), 7);
	assert_int_equal(r.n, 1);
}

/* What delivery writes parses back into the same messages. */
static void
test_formatted_messages_round_trip(void **state)
{
	(void)state;
	struct pt_user u = { "u", 1, 1, "/h", "" };
	const char *bodies[] = { "S: 1\n\nFrom a\n\nFrom b  Sat Nov 28 06:08:07 2026\n",
	                         "", "S: 3\n\n\n\n", "no header line\nFrom x" };
	struct pt_strbuf b = { 0 };
	size_t n = sizeof bodies / sizeof bodies[0];
	for (size_t i = 0; i < n; i++) {
		struct pt_delivery d = { "Q", "s@x", "r@y", NULL, &u, bodies[i], strlen(bodies[i]),
		                         1795846087 };
		assert_int_equal(mbox_format(&d, &b), 0);
	}
	struct result r;
	parse_whole(b.p, b.len, &r);
	assert_int_equal(r.n, n);
	for (size_t i = 0; i < n; i++) {
		struct pt_strbuf want = { 0 };
		assert_int_equal(mbox_format_body(bodies[i], strlen(bodies[i]), &want), 0);
		/* The quoting marker closes the header section. */
		size_t split = mbox_header_end(want.p, want.len), ml = strlen(MBOX_RD_MARKER);
		want.p = realloc(want.p, want.len + ml + 1);
		memmove(want.p + split + ml, want.p + split, want.len - split);
		memcpy(want.p + split, MBOX_RD_MARKER, ml);
		want.len += ml;
		const char *env = "Return-Path: <s@x>\nDelivered-To: r@y\n";
		size_t el = strlen(env);
		assert_int_equal(r.m[i].end - r.m[i].hdr_off, (off_t)(el + want.len));
		assert_memory_equal(b.p + r.m[i].hdr_off, env, el);
		if (want.len)
			assert_memory_equal(b.p + r.m[i].hdr_off + el, want.p, want.len);
		pt_strbuf_free(&want);
	}
	pt_strbuf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_at_every_offset),
		cmocka_unit_test(test_two_messages),
		cmocka_unit_test(test_junk_before_first_from),
		cmocka_unit_test(test_from_without_blank_line),
		cmocka_unit_test(test_damaged_and_empty_messages),
		cmocka_unit_test(test_from_line_validity),
		cmocka_unit_test(test_callback_stops),
		cmocka_unit_test(test_formatted_messages_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
