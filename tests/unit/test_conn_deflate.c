/* The conn's deflate layer (COMPRESS=DEFLATE): raw deflate both ways,
 * output whole after a sync flush, input inflated only into the room
 * given (a bomb never grows past it), broken or ended streams refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include "conn_int.h"

struct sink {
	unsigned char *p;
	size_t len;
};

static int
put(void *arg, const void *p, size_t n)
{
	struct sink *s = arg;
	s->p = realloc(s->p, s->len + n);
	assert_non_null(s->p);
	memcpy(s->p + s->len, p, n);
	s->len += n;
	return 0;
}

/* Compress like a client: raw deflate, sync flush. */
static size_t
client_deflate(const void *in, size_t n, unsigned char *out, size_t cap)
{
	z_stream z = { 0 };
	assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (unsigned char *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_SYNC_FLUSH), Z_OK);
	assert_int_equal(z.avail_in, 0);
	size_t len = cap - z.avail_out;
	deflateEnd(&z);
	return len;
}

static void
feed(struct pt_zstream *z, const unsigned char *p, size_t n)
{
	size_t room;
	char *in = pt_zstream_in_room(z, &room);
	assert_true(room >= n);
	memcpy(in, p, n);
	pt_zstream_in_added(z, n);
}

static void
test_output_round_trip(void **state)
{
	(void)state;
	struct pt_zstream *z = pt_zstream_new(NULL, 0);
	struct sink s = { 0 };
	assert_non_null(z);
	assert_false(pt_zstream_dirty(z));
	assert_int_equal(pt_zstream_deflate(z, "* OK first\r\n", 12, 0, put, &s), 0);
	assert_true(pt_zstream_dirty(z));
	assert_int_equal(pt_zstream_deflate(z, NULL, 0, 1, put, &s), 0);
	assert_false(pt_zstream_dirty(z));
	/* a sync flush ends in an empty stored block: 00 00 ff ff */
	assert_true(s.len >= 4);
	assert_memory_equal(s.p + s.len - 4, "\x00\x00\xff\xff", 4);
	unsigned char out[64];
	z_stream in = { 0 };
	assert_int_equal(inflateInit2(&in, -15), Z_OK);
	in.next_in = s.p;
	in.avail_in = (uInt)s.len;
	in.next_out = out;
	in.avail_out = sizeof out;
	assert_int_equal(inflate(&in, Z_SYNC_FLUSH), Z_OK);
	assert_int_equal(sizeof out - in.avail_out, 12);
	assert_memory_equal(out, "* OK first\r\n", 12);
	inflateEnd(&in);
	/* nothing new: a flush adds nothing */
	size_t before = s.len;
	assert_int_equal(pt_zstream_deflate(z, NULL, 0, 1, put, &s), 0);
	assert_int_equal(s.len, before);
	free(s.p);
	pt_zstream_free(z);
}

static void
test_input_bounded_by_room(void **state)
{
	(void)state;
	/* 8 MiB of one byte is a few KiB compressed */
	size_t big = 8u << 20;
	char *plain = malloc(big);
	unsigned char *wire = malloc(64 * 1024);
	assert_non_null(plain);
	assert_non_null(wire);
	memset(plain, 'a', big);
	size_t wl = client_deflate(plain, big, wire, 64 * 1024);
	assert_true(wl < 16 * 1024);
	struct pt_zstream *z = pt_zstream_new(wire, wl);
	assert_non_null(z);
	assert_true(pt_zstream_in_pending(z));
	char room[4096];
	size_t total = 0;
	/* each call makes at most the room it is given */
	for (;;) {
		ssize_t n = pt_zstream_inflate(z, room, sizeof room);
		assert_true(n >= 0 && (size_t)n <= sizeof room);
		if (n == 0)
			break;
		total += (size_t)n;
	}
	assert_int_equal(total, big);
	assert_false(pt_zstream_in_pending(z));
	free(plain);
	free(wire);
	pt_zstream_free(z);
}

static void
test_input_split_anywhere(void **state)
{
	(void)state;
	const char *text = "a1 NOOP\r\na2 LIST \"\" *\r\n";
	unsigned char wire[256];
	size_t wl = client_deflate(text, strlen(text), wire, sizeof wire);
	for (size_t cut = 0; cut <= wl; cut++) {
		/* the first part arrived with the COMPRESS line, the rest later */
		struct pt_zstream *z = pt_zstream_new(wire, cut);
		assert_non_null(z);
		char out[256];
		size_t got = 0;
		ssize_t n;
		while ((n = pt_zstream_inflate(z, out + got, sizeof out - got)) > 0)
			got += (size_t)n;
		assert_int_equal(n, 0);
		feed(z, wire + cut, wl - cut);
		while ((n = pt_zstream_inflate(z, out + got, sizeof out - got)) > 0)
			got += (size_t)n;
		assert_int_equal(n, 0);
		assert_int_equal(got, strlen(text));
		assert_memory_equal(out, text, got);
		pt_zstream_free(z);
	}
}

static void
test_broken_and_ended_streams(void **state)
{
	(void)state;
	char out[64];
	/* not deflate at all (reserved block type 3) */
	struct pt_zstream *z = pt_zstream_new("\xff\xff\xff\xff garbage", 12);
	assert_non_null(z);
	assert_int_equal(pt_zstream_inflate(z, out, sizeof out), -1);
	pt_zstream_free(z);
	/* a final block: the client may never end its stream */
	unsigned char wire[64];
	z_stream c = { 0 };
	assert_int_equal(deflateInit2(&c, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	c.next_in = (unsigned char *)"x";
	c.avail_in = 1;
	c.next_out = wire;
	c.avail_out = sizeof wire;
	assert_int_equal(deflate(&c, Z_FINISH), Z_STREAM_END);
	size_t wl = sizeof wire - c.avail_out;
	deflateEnd(&c);
	z = pt_zstream_new(wire, wl);
	assert_non_null(z);
	assert_int_equal(pt_zstream_inflate(z, out, sizeof out), -1);
	pt_zstream_free(z);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_output_round_trip),
		cmocka_unit_test(test_input_bounded_by_room),
		cmocka_unit_test(test_input_split_anywhere),
		cmocka_unit_test(test_broken_and_ended_streams),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
