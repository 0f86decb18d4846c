/* Unit tests for the SMTP client's reply parser (single and multi-line
 * replies, input split at every offset, pipelined replies back to back,
 * enhanced status codes, malformed lines, over-long lines) and the EHLO
 * keyword parser. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/relay_int.h"

/* Feed text in pieces of the given sizes; collect complete replies'
 * "code|dsn|text" into out (one per line). Returns the last feed result. */
static int
feed_split(const char *text, size_t cut, char *out, size_t outlen)
{
	struct relay_reply *r = calloc(1, sizeof *r);
	relay_reply_reset(r);
	size_t len = strlen(text), w = 0;
	int last = 0;
	const char *pieces[2] = { text, text + cut };
	size_t plen[2] = { cut, len - cut };
	out[0] = 0;
	for (int p = 0; p < 2; p++) {
		const char *d = pieces[p];
		size_t n = plen[p];
		while (n) {
			size_t used = 0;
			last = relay_reply_feed(r, d, n, &used);
			assert_true(used <= n);
			d += used;
			n -= used;
			if (last == 1) {
				w += (size_t)snprintf(out + w, outlen - w, "%d|%s|%s\n", r->code, r->dsn, r->text);
				relay_reply_reset(r);
			} else if (last < 0) {
				free(r);
				return last;
			} else {
				assert_int_equal(n, 0);
			}
		}
	}
	free(r);
	return last;
}

static void
test_single_line(void **state)
{
	(void)state;
	char out[4096];
	assert_int_equal(feed_split("250 2.1.0 Ok\r\n", 0, out, sizeof out), 1);
	assert_string_equal(out, "250|2.1.0|250 2.1.0 Ok\n");
	/* Bare LF and a code alone are replies too. */
	assert_int_equal(feed_split("354\n", 0, out, sizeof out), 1);
	assert_string_equal(out, "354||354\n");
	/* No enhanced code: dsn stays empty. */
	feed_split("220 mx.example.com ESMTP\r\n", 0, out, sizeof out);
	assert_string_equal(out, "220||220 mx.example.com ESMTP\n");
}

static const char MULTI[] =
	"250-mx.example.com\r\n"
	"250-PIPELINING\r\n"
	"250-SIZE 10240000\r\n"
	"250-STARTTLS\r\n"
	"250-8BITMIME\r\n"
	"250 SMTPUTF8\r\n"
	"550-5.1.1 <nobody@example.com>: Recipient address rejected:\r\n"
	"550 5.1.1 User unknown in local recipient table\r\n"
	"354 End data with <CR><LF>.<CR><LF>\r\n";

static const char MULTI_EXPECT[] =
	"250||250-mx.example.com\n250-PIPELINING\n250-SIZE 10240000\n250-STARTTLS\n250-8BITMIME\n250 SMTPUTF8\n"
	"550|5.1.1|550-5.1.1 <nobody@example.com>: Recipient address rejected:\n"
	"550 5.1.1 User unknown in local recipient table\n"
	"354||354 End data with <CR><LF>.<CR><LF>\n";

static void
test_multiline_split_everywhere(void **state)
{
	(void)state;
	char out[4096];
	size_t len = strlen(MULTI);
	for (size_t cut = 0; cut <= len; cut++) {
		int rc = feed_split(MULTI, cut, out, sizeof out);
		assert_int_equal(rc, 1);
		assert_string_equal(out, MULTI_EXPECT);
	}
}

static void
test_byte_by_byte(void **state)
{
	(void)state;
	struct relay_reply r;
	relay_reply_reset(&r);
	size_t len = strlen(MULTI), replies = 0;
	for (size_t i = 0; i < len; i++) {
		size_t used = 0;
		int rc = relay_reply_feed(&r, MULTI + i, 1, &used);
		assert_int_equal(used, 1);
		if (rc == 1) {
			replies++;
			if (replies == 2) {
				assert_int_equal(r.code, 550);
				assert_string_equal(r.dsn, "5.1.1");
				assert_int_equal(r.nlines, 2);
			}
			relay_reply_reset(&r);
		} else {
			assert_int_equal(rc, 0);
		}
	}
	assert_int_equal(replies, 3);
}

static void
test_oneline_quoting(void **state)
{
	(void)state;
	struct relay_reply r;
	relay_reply_reset(&r);
	const char *t = "550-5.1.1 first\r\n550 5.1.1 second\x01\r\n";
	size_t used;
	assert_int_equal(relay_reply_feed(&r, t, strlen(t), &used), 1);
	char one[100];
	relay_reply_oneline(&r, one, sizeof one);
	/* Postfix keeps the codes and joins the lines with a space. */
	assert_string_equal(one, "550-5.1.1 first 550 5.1.1 second?");
	relay_reply_oneline(&r, one, 8);
	assert_string_equal(one, "550-5.1");
}

static void
test_malformed(void **state)
{
	(void)state;
	char out[512];
	assert_int_equal(feed_split("hello there\r\n", 3, out, sizeof out), -1);
	assert_int_equal(feed_split("25 short\r\n", 1, out, sizeof out), -1);
	assert_int_equal(feed_split("250x no separator\r\n", 5, out, sizeof out), -1);
	assert_int_equal(feed_split("650 not a reply class\r\n", 0, out, sizeof out), -1);
	/* A good first line, then garbage inside the same reply. */
	assert_int_equal(feed_split("250-ok\r\nxyz\r\n", 9, out, sizeof out), -1);
	/* Enhanced code of another class than the reply is not taken. */
	assert_int_equal(feed_split("450 5.1.1 mismatch\r\n", 0, out, sizeof out), 1);
	assert_string_equal(out, "450||450 5.1.1 mismatch\n");
	assert_int_equal(feed_split("250 2.0 not enhanced\r\n", 0, out, sizeof out), 1);
	assert_string_equal(out, "250||250 2.0 not enhanced\n");
}

static void
test_long_lines_and_many_lines(void **state)
{
	(void)state;
	struct relay_reply *r = calloc(1, sizeof *r);
	relay_reply_reset(r);
	/* One 10 kB line: kept cut, the reply still ends. */
	size_t n = 10000;
	char *big = malloc(n + 8);
	memcpy(big, "250 ", 4);
	memset(big + 4, 'x', n - 4);
	memcpy(big + n, "\r\n", 3);
	size_t used;
	assert_int_equal(relay_reply_feed(r, big, n + 2, &used), 1);
	assert_int_equal(used, n + 2);
	assert_int_equal(r->code, 250);
	assert_true(r->len < RELAY_REPLY_TEXT_MAX);
	relay_reply_reset(r);
	/* 500 continuation lines: text is bounded, code of the last line. */
	for (int i = 0; i < 500; i++) {
		const char *l = "250-some extension line here\r\n";
		assert_int_equal(relay_reply_feed(r, l, strlen(l), &used), 0);
	}
	assert_int_equal(relay_reply_feed(r, "251 done\r\n", 10, &used), 1);
	assert_int_equal(r->code, 251);
	assert_int_equal(r->nlines, 501);
	assert_true(r->len < RELAY_REPLY_TEXT_MAX);
	free(big);
	free(r);
}

static void
parse_ehlo(const char *text, struct relay_ext *ext)
{
	struct relay_reply r;
	relay_reply_reset(&r);
	size_t used;
	assert_int_equal(relay_reply_feed(&r, text, strlen(text), &used), 1);
	relay_ehlo_parse(&r, ext);
}

static void
test_ehlo_keywords(void **state)
{
	(void)state;
	struct relay_ext e;
	parse_ehlo(MULTI, &e);
	assert_int_equal(e.pipelining, 1);
	assert_int_equal(e.starttls, 1);
	assert_int_equal(e.eightbitmime, 1);
	assert_int_equal(e.smtputf8, 1);
	assert_int_equal(e.size, 1);
	assert_int_equal(e.size_limit, 10240000);
	/* Case-insensitive; SIZE without a number; the greeting line's words
	 * are not keywords. */
	parse_ehlo("250-PIPELINING greets you\r\n250-size\r\n250 starttls\r\n", &e);
	assert_int_equal(e.pipelining, 0);
	assert_int_equal(e.size, 1);
	assert_int_equal(e.size_limit, 0);
	assert_int_equal(e.starttls, 1);
	parse_ehlo("250 only.a.greeting\r\n", &e);
	assert_int_equal(e.pipelining + e.starttls + e.size + e.eightbitmime + e.smtputf8, 0);
	/* Look-alikes are not the keyword. */
	parse_ehlo("250-x\r\n250-STARTTLSX\r\n250 PIPELININGS\r\n", &e);
	assert_int_equal(e.starttls + e.pipelining, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_line),
		cmocka_unit_test(test_multiline_split_everywhere),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_oneline_quoting),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_long_lines_and_many_lines),
		cmocka_unit_test(test_ehlo_keywords),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
