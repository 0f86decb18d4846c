/* Unit tests for the DATA decoder (end of data, dot-unstuffing, every SMTP
 * smuggling spelling, input split at every offset), the BDAT converter and
 * the bounded message buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/smtp_data.h"

struct result {
	enum smtp_data_status st;
	size_t used;       /* total input bytes consumed */
	char *content;     /* stored bytes, NUL-terminated copy */
	size_t len;
};

/* Feed input in pieces cut at the offsets in cuts[] (ascending, may be
 * empty) and stop at the first non-MORE status. */
static struct result
decode_cuts(const char *in, size_t n, enum smtp_bare_policy pol, const size_t *cuts, size_t ncuts)
{
	struct smtp_data_dec d;
	struct smtp_msgbuf b;
	struct result r = {SMTP_DATA_MORE, 0, NULL, 0};
	size_t pos = 0;

	smtp_data_init(&d, pol);
	smtp_msgbuf_init(&b, 0, 0);
	for (size_t k = 0; k <= ncuts; k++) {
		size_t end = k < ncuts ? cuts[k] : n, used = 0;
		if (end < pos)
			continue;
		r.st = smtp_data_feed(&d, in + pos, end - pos, &used, &b);
		assert_true(used <= end - pos);
		pos += used;
		if (r.st != SMTP_DATA_MORE)
			break;
		assert_int_equal(used, end - pos + used);
	}
	r.used = pos;
	r.len = b.len;
	r.content = calloc(1, b.len + 1);
	if (b.len)
		memcpy(r.content, b.p, b.len);
	smtp_msgbuf_free(&b);
	return r;
}

/* Decode whole, then at every single split point, then byte by byte: all
 * must agree. */
static struct result
decode_all_ways(const char *in, size_t n, enum smtp_bare_policy pol)
{
	struct result whole = decode_cuts(in, n, pol, NULL, 0);
	size_t *cuts = malloc((n + 1) * sizeof(*cuts));

	for (size_t k = 0; k <= n; k++) {
		struct result r = decode_cuts(in, n, pol, &k, 1);
		assert_int_equal(r.st, whole.st);
		assert_int_equal(r.used, whole.used);
		assert_int_equal(r.len, whole.len);
		assert_memory_equal(r.content, whole.content, r.len);
		free(r.content);
	}
	for (size_t k = 0; k < n; k++)
		cuts[k] = k + 1;
	struct result r = decode_cuts(in, n, pol, cuts, n);
	assert_int_equal(r.st, whole.st);
	assert_int_equal(r.used, whole.used);
	assert_int_equal(r.len, whole.len);
	assert_memory_equal(r.content, whole.content, r.len);
	free(r.content);
	free(cuts);
	return whole;
}

static void
expect(const char *in, size_t n, enum smtp_bare_policy pol, enum smtp_data_status st, size_t used,
       const char *content, size_t clen)
{
	struct result r = decode_all_ways(in, n, pol);

	assert_int_equal(r.st, st);
	assert_int_equal(r.used, used);
	if (content) {
		assert_int_equal(r.len, clen);
		assert_memory_equal(r.content, content, clen);
	}
	free(r.content);
}

#define S(x) x, sizeof(x) - 1

static void
test_end_of_data(void **state)
{
	(void)state;
	expect(S("Subject: hi\r\n\r\nbody\r\n.\r\n"), SMTP_BARE_NORMALIZE, SMTP_DATA_END, 24,
	       S("Subject: hi\n\nbody\n"));
	/* The empty message: "." right after the DATA line. */
	expect(S(".\r\n"), SMTP_BARE_NORMALIZE, SMTP_DATA_END, 3, "", 0);
	/* Bytes after the end are left for the command parser. */
	expect(S("a\r\n.\r\nQUIT\r\n"), SMTP_BARE_NORMALIZE, SMTP_DATA_END, 6, S("a\n"));
	/* Not finished yet. */
	expect(S("a\r\n.\r"), SMTP_BARE_NORMALIZE, SMTP_DATA_MORE, 5, S("a\n"));
	expect(S("a\r\n."), SMTP_BARE_NORMALIZE, SMTP_DATA_MORE, 4, S("a\n"));
	expect(S("a\r\n"), SMTP_BARE_NORMALIZE, SMTP_DATA_MORE, 3, S("a\n"));
	/* Binary and NUL bytes are content. */
	expect(S("\x00\xff\x01\r\n.\r\n"), SMTP_BARE_NORMALIZE, SMTP_DATA_END, 8, S("\x00\xff\x01\n"));
}

static void
test_dot_unstuffing(void **state)
{
	(void)state;
	expect(S("..a line\r\n...two\r\n.\r\n"), SMTP_BARE_NORMALIZE, SMTP_DATA_END, 21,
	       S(".a line\n..two\n"));
	expect(S("..\r\n.\r\n"), SMTP_BARE_NORMALIZE, SMTP_DATA_END, 7, S(".\n"));
	/* A dot not at the start of a line stays. */
	expect(S("a.b\r\n a.\r\n.\r\n"), SMTP_BARE_NORMALIZE, SMTP_DATA_END, 13, S("a.b\n a.\n"));
	/* ". " is a content line with its dot removed. */
	expect(S(". x\r\n.\r\n"), SMTP_BARE_NORMALIZE, SMTP_DATA_END, 8, S(" x\n"));
	/* An empty line, then the end. */
	expect(S("\r\n.\r\n"), SMTP_BARE_NORMALIZE, SMTP_DATA_END, 5, S("\n"));
}

static void
test_bare_newlines_normalized(void **state)
{
	(void)state;
	expect(S("a\nb\rc\r\n.\r\n"), SMTP_BARE_NORMALIZE, SMTP_DATA_END, 10, S("a\nb\nc\n"));
	expect(S("a\r\r\n.\r\n"), SMTP_BARE_NORMALIZE, SMTP_DATA_END, 7, S("a\n\n"));
	expect(S("a\n\n.\r\n"), SMTP_BARE_NORMALIZE, SMTP_DATA_MORE, 6, S("a\n\n.\n"));
}

/* sendmail -bs: the local user's LF is a line end, dot rules included. */
static void
test_bare_newlines_local(void **state)
{
	(void)state;
	expect(S("a\n.\n"), SMTP_BARE_LOCAL, SMTP_DATA_END, 4, S("a\n"));
	expect(S("a\n..b\n.\nQUIT\n"), SMTP_BARE_LOCAL, SMTP_DATA_END, 8, S("a\n.b\n"));
	expect(S("a\r\n.\r\n"), SMTP_BARE_LOCAL, SMTP_DATA_END, 6, S("a\n"));
	expect(S(".\n"), SMTP_BARE_LOCAL, SMTP_DATA_END, 2, "", 0);
	/* A bare CR is still no line end to dot rules. */
	expect(S("a\r.\r\n.\r\n"), SMTP_BARE_LOCAL, SMTP_DATA_END, 8, S("a\n.\n"));
}

static void
test_bare_newlines_rejected(void **state)
{
	(void)state;
	expect(S("a\nb\r\n.\r\n"), SMTP_BARE_REJECT, SMTP_DATA_BARE, 2, NULL, 0);
	expect(S("a\rb\r\n.\r\n"), SMTP_BARE_REJECT, SMTP_DATA_BARE, 3, NULL, 0);
	expect(S("ok\r\n.\r\n"), SMTP_BARE_REJECT, SMTP_DATA_END, 7, S("ok\n"));
	expect(S("a\r\n.\n"), SMTP_BARE_REJECT, SMTP_DATA_BARE, 5, NULL, 0);
	expect(S("a\r\n.\rx"), SMTP_BARE_REJECT, SMTP_DATA_BARE, 6, NULL, 0);
}

/* The SMTP smuggling spellings of "end of data": none may end the message;
 * the smuggled command stays inside the one message, and only the real
 * CRLF.CRLF at the end finishes it. */
static const struct {
	const char *name;
	const char *seq;
	size_t len;
	int has_bare;      /* contains a bare CR or LF (refused under "yes") */
} smuggle[] = {
	{"<LF>.<LF>", S("\n.\n"), 1},
	{"<CR>.<CR>", S("\r.\r"), 1},
	{"<LF>.<CR><LF>", S("\n.\r\n"), 1},
	{"<CR><LF>.<LF>", S("\r\n.\n"), 1},
	{"<CR><LF>.<CR>", S("\r\n.\r"), 1},
	{"<CR>.<LF>", S("\r.\n"), 1},
	{"<CR>.<CR><LF>", S("\r.\r\n"), 1},
	{"<LF>.<CR>", S("\n.\r"), 1},
	{"<CR><LF>.<CR><CR><LF>", S("\r\n.\r\r\n"), 1},
	{"<CR><LF><NUL>.<CR><LF>", S("\r\n\0.\r\n"), 0},
	{"<CR><LF>.<NUL><CR><LF>", S("\r\n.\0\r\n"), 0},
	{"<CR><LF>. <CR><LF>", S("\r\n. \r\n"), 0},
	{"<CR><LF>.<CR><NUL><LF>", S("\r\n.\r\0\n"), 1},
	{"<CR><CR><LF>.<CR><CR><LF>", S("\r\r\n.\r\r\n"), 1},
};

static void
test_smuggling_variants(void **state)
{
	const char head[] = "From: a@b\r\nSubject: s\r\n\r\nfirst message";
	const char evil[] = "MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nsmuggled\r\n";
	const char tail[] = "\r\n.\r\n";
	char in[512];

	(void)state;
	for (size_t v = 0; v < sizeof(smuggle) / sizeof(smuggle[0]); v++) {
		size_t n = 0;
		memcpy(in + n, head, sizeof(head) - 1); n += sizeof(head) - 1;
		memcpy(in + n, smuggle[v].seq, smuggle[v].len); n += smuggle[v].len;
		memcpy(in + n, evil, sizeof(evil) - 1); n += sizeof(evil) - 1;
		memcpy(in + n, tail, sizeof(tail) - 1); n += sizeof(tail) - 1;
		memcpy(in + n, "QUIT\r\n", 6);

		struct result r = decode_all_ways(in, n + 6, SMTP_BARE_NORMALIZE);
		if (r.st != SMTP_DATA_END || r.used != n)
			fail_msg("%s: ended at %zu of %zu (status %d)", smuggle[v].name, r.used, n, r.st);
		if (memmem(r.content, r.len, "MAIL FROM:<evil@x>\n", 19) == NULL)
			fail_msg("%s: smuggled text missing from the one message", smuggle[v].name);
		free(r.content);

		r = decode_all_ways(in, n + 6, SMTP_BARE_REJECT);
		if (smuggle[v].has_bare) {
			if (r.st != SMTP_DATA_BARE)
				fail_msg("%s: not refused under forbid_bare_newline=yes", smuggle[v].name);
		} else if (r.st != SMTP_DATA_END || r.used != n) {
			fail_msg("%s: strict mode ended at %zu of %zu", smuggle[v].name, r.used, n);
		}
		free(r.content);
	}
}

static void
test_msgbuf_limits(void **state)
{
	struct smtp_msgbuf b;
	char big[1000];

	(void)state;
	memset(big, 'x', sizeof(big));
	smtp_msgbuf_init(&b, 100, 0);
	assert_int_equal(smtp_msgbuf_put_trace(&b, "Received: x\n", 12), 0);
	smtp_msgbuf_put(&b, "S: a\n\n", 6);
	smtp_msgbuf_put(&b, big, 94);
	assert_false(smtp_msgbuf_failed(&b));  /* exactly the limit */
	assert_int_equal(b.len, 12 + 100);
	smtp_msgbuf_put(&b, "y", 1);
	assert_true(b.too_big);
	assert_true(smtp_msgbuf_failed(&b));
	assert_null(b.p);                      /* storage released */
	smtp_msgbuf_put(&b, big, sizeof(big)); /* still counted */
	assert_int_equal(b.content, 101 + sizeof(big));
	assert_int_equal(smtp_msgbuf_put_trace(&b, "x", 1), -1);
	smtp_msgbuf_free(&b);
}

static void
test_msgbuf_header_limit(void **state)
{
	struct smtp_msgbuf b;
	char line[64];

	(void)state;
	/* A big body after a small header is fine. */
	smtp_msgbuf_init(&b, 0, 50);
	smtp_msgbuf_put(&b, "Subject: x\n\n", 12);
	for (int i = 0; i < 100; i++)
		smtp_msgbuf_put(&b, "body body body body\n", 20);
	assert_false(smtp_msgbuf_failed(&b));
	assert_int_equal(b.header_bytes, 11);
	smtp_msgbuf_free(&b);

	/* Header lines (with continuations) past the limit. */
	smtp_msgbuf_init(&b, 0, 50);
	for (int i = 0; i < 5; i++) {
		snprintf(line, sizeof(line), "X-H%d: value\n\tcontinued\n", i);
		smtp_msgbuf_put(&b, line, strlen(line));
	}
	assert_true(b.header_too_big);
	assert_true(smtp_msgbuf_failed(&b));
	smtp_msgbuf_free(&b);

	/* A first line that is not a header field starts the body. */
	smtp_msgbuf_init(&b, 0, 10);
	smtp_msgbuf_put(&b, "this is not a header line at all\nmore\n", 38);
	assert_false(smtp_msgbuf_failed(&b));
	assert_int_equal(b.header_bytes, 4);
	smtp_msgbuf_free(&b);

	/* Split inside a field name. */
	smtp_msgbuf_init(&b, 0, 1000);
	smtp_msgbuf_put(&b, "Subj", 4);
	smtp_msgbuf_put(&b, "ect: a\n", 7);
	smtp_msgbuf_put(&b, "\nbody:\n", 7);
	assert_false(b.in_header);
	assert_int_equal(b.header_bytes, 11);
	smtp_msgbuf_free(&b);
}

static void
test_msgbuf_finish(void **state)
{
	struct smtp_msgbuf b;

	(void)state;
	smtp_msgbuf_init(&b, 0, 0);
	smtp_msgbuf_put(&b, "no newline", 10);
	smtp_msgbuf_finish(&b);
	assert_int_equal(b.len, 11);
	assert_int_equal(b.p[10], '\n');
	smtp_msgbuf_finish(&b);
	assert_int_equal(b.len, 11);
	smtp_msgbuf_free(&b);
}

static char *
bdat_chunks(const char *in, size_t n, const size_t *cuts, size_t ncuts, size_t *outlen)
{
	struct smtp_bdat_conv c = {0};
	struct smtp_msgbuf b;
	size_t pos = 0;
	char *res;

	smtp_msgbuf_init(&b, 0, 0);
	for (size_t k = 0; k <= ncuts; k++) {
		size_t end = k < ncuts ? cuts[k] : n;
		smtp_bdat_feed(&c, in + pos, end - pos, &b);
		pos = end;
	}
	smtp_bdat_finish(&c, &b);
	res = calloc(1, b.len + 1);
	if (b.len)
		memcpy(res, b.p, b.len);
	*outlen = b.len;
	smtp_msgbuf_free(&b);
	return res;
}

static void
test_bdat_conversion(void **state)
{
	const char in[] = "a\r\nb\rc\nd\r\r\n.\r\n\0z\r";
	const char want[] = "a\nb\rc\nd\r\n.\n\0z\r";
	size_t n = sizeof(in) - 1, len;
	char *r;

	(void)state;
	r = bdat_chunks(in, n, NULL, 0, &len);
	assert_int_equal(len, sizeof(want) - 1);
	assert_memory_equal(r, want, len);
	free(r);
	/* Every chunk boundary, including one between CR and LF. */
	for (size_t k = 0; k <= n; k++) {
		r = bdat_chunks(in, n, &k, 1, &len);
		assert_int_equal(len, sizeof(want) - 1);
		assert_memory_equal(r, want, len);
		free(r);
	}
	size_t cuts[sizeof(in)];
	for (size_t k = 0; k < n; k++)
		cuts[k] = k + 1;
	r = bdat_chunks(in, n, cuts, n, &len);
	assert_memory_equal(r, want, len);
	free(r);
}

/* All sessions' message buffers share smtpd_message_buffer_limit: a buffer
 * that would cross it fails (451 at the end of DATA) and freeing gives the
 * room back. */
static void
test_msgbuf_shared_budget(void **state)
{
	(void)state;
	char chunk[4096];
	memset(chunk, 'x', sizeof chunk);
	size_t base = smtp_msgbuf_buffered();
	smtp_msgbuf_set_budget(base + 20000);
	struct smtp_msgbuf a, b;
	smtp_msgbuf_init(&a, 1 << 20, 0);
	smtp_msgbuf_init(&b, 1 << 20, 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(smtp_msgbuf_put_trace(&a, chunk, sizeof chunk), 0); /* 16 KiB */
	assert_int_equal(smtp_msgbuf_put_trace(&b, chunk, sizeof chunk), -1);    /* 16 + 8 > 20 */
	assert_true(b.oom);
	assert_true(smtp_msgbuf_failed(&b));
	smtp_msgbuf_free(&b);
	smtp_msgbuf_free(&a);
	assert_int_equal(smtp_msgbuf_buffered(), base);
	smtp_msgbuf_init(&b, 1 << 20, 0);
	assert_int_equal(smtp_msgbuf_put_trace(&b, chunk, sizeof chunk), 0);
	smtp_msgbuf_free(&b);
	smtp_msgbuf_set_budget(0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_end_of_data),
		cmocka_unit_test(test_dot_unstuffing),
		cmocka_unit_test(test_bare_newlines_normalized),
		cmocka_unit_test(test_bare_newlines_local),
		cmocka_unit_test(test_bare_newlines_rejected),
		cmocka_unit_test(test_smuggling_variants),
		cmocka_unit_test(test_msgbuf_limits),
		cmocka_unit_test(test_msgbuf_header_limit),
		cmocka_unit_test(test_msgbuf_finish),
		cmocka_unit_test(test_msgbuf_shared_budget),
		cmocka_unit_test(test_bdat_conversion),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
