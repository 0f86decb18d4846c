/* Unit tests for the SMTP client's DATA encoder: LF -> CRLF, stored CRLF
 * kept single, bare CR as a line end, dot-stuffing, the CRLF.CRLF end,
 * output produced in pieces of every size equal to the whole, the SIZE=
 * estimate and the 8-bit check. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "transport/relay_int.h"

/* The whole encoding, produced with at most cap bytes per call. */
static char *
encode_all(const char *in, size_t len, size_t cap, size_t *outlen)
{
	struct relay_enc e;
	relay_enc_init(&e);
	size_t size = len * 3 + 16, w = 0;
	char *out = malloc(size);
	char *chunk = malloc(cap);
	int calls = 0;
	while (!e.done) {
		size_t n = relay_encode(&e, in, len, chunk, cap);
		assert_true(n <= cap);
		/* Every call makes progress once cap >= 3. */
		assert_true(n > 0);
		assert_true(w + n <= size);
		memcpy(out + w, chunk, n);
		w += n;
		assert_true(++calls < 100000);
	}
	free(chunk);
	out[w] = 0;
	*outlen = w;
	return out;
}

static void
check(const char *in, const char *expect)
{
	size_t len = strlen(in), elen = strlen(expect);
	for (size_t cap = 3; cap <= elen + 3; cap++) {
		size_t n;
		char *out = encode_all(in, len, cap, &n);
		assert_int_equal(n, elen);
		assert_memory_equal(out, expect, elen);
		free(out);
	}
	assert_int_equal(relay_encoded_size(in, len), elen - 3);
}

static void
test_crlf(void **state)
{
	(void)state;
	check("Subject: x\n\nbody\n", "Subject: x\r\n\r\nbody\r\n.\r\n");
	/* No final line end: one is added before the dot. */
	check("Subject: x\n\nno newline", "Subject: x\r\n\r\nno newline\r\n.\r\n");
	/* A stored CRLF stays one line end. */
	check("a\r\nb\n", "a\r\nb\r\n.\r\n");
	/* A bare CR ends the line (never sent bare). */
	check("a\rb\n", "a\r\nb\r\n.\r\n");
	check("", ".\r\n");
	check("\n", "\r\n.\r\n");
}

static void
test_dot_stuffing(void **state)
{
	(void)state;
	check(".\n", "..\r\n.\r\n");
	check("a\n.\nb\n", "a\r\n..\r\nb\r\n.\r\n");
	check("a\n..x\n.", "a\r\n...x\r\n..\r\n.\r\n");
	/* Only at the start of a line. */
	check("a.b\n x.\n", "a.b\r\n x.\r\n.\r\n");
	/* A would-be end of data inside the text (smuggling shapes). */
	check("x\n.\r\nMAIL FROM:<a@b>\n", "x\r\n..\r\nMAIL FROM:<a@b>\r\n.\r\n");
	check("x\r.\rRCPT\n", "x\r\n..\r\nRCPT\r\n.\r\n");
}

static void
test_large_and_binary(void **state)
{
	(void)state;
	size_t len = 200000;
	char *in = malloc(len);
	for (size_t i = 0; i < len; i++)
		in[i] = (i % 77 == 76) ? '\n' : (i % 77 == 0) ? '.' : (char)(0x20 + i % 90);
	size_t n1, n2;
	char *a = encode_all(in, len, 3, &n1);
	char *b = encode_all(in, len, 16384, &n2);
	assert_int_equal(n1, n2);
	assert_memory_equal(a, b, n1);
	/* No bare LF or CR in the output; every '.' at a line start doubled. */
	for (size_t i = 0; i < n1; i++) {
		if (a[i] == '\n')
			assert_true(i > 0 && a[i - 1] == '\r');
		if (a[i] == '\r')
			assert_true(i + 1 < n1 && a[i + 1] == '\n');
		if (i >= 2 && a[i - 1] == '\n' && a[i] == '.' && i + 3 < n1)
			assert_true(a[i + 1] == '.');
	}
	assert_int_equal(relay_encoded_size(in, len), n1 - 3);
	free(a);
	free(b);
	free(in);
}

static void
test_8bit(void **state)
{
	(void)state;
	assert_int_equal(relay_is_8bit("plain ascii\n", 12), 0);
	assert_int_equal(relay_is_8bit("caf\xc3\xa9\n", 6), 1);
	assert_int_equal(relay_is_8bit("", 0), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crlf),
		cmocka_unit_test(test_dot_stuffing),
		cmocka_unit_test(test_large_and_binary),
		cmocka_unit_test(test_8bit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
