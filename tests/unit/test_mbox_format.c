/* mbox formatting: From_ line, envelope headers, header stripping, From
 * quoting and line-end handling, checked against Postfix's recorded output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "mbox/mbox.h"

#define T_0608 ((time_t)1795846087) /* Sat Nov 28 06:08:07 2026 UTC */

static struct pt_user carol = { "carol", 1003, 1003, "/home/carol", "" };

/* Format one delivery and return a NUL-terminated copy. */
static char *
fmt(const char *sender, const char *rcpt, const char *orig, const char *data, size_t len,
    time_t when)
{
	struct pt_delivery d = { "Q1", sender, rcpt, orig, &carol, data, len, when };
	struct pt_strbuf b = { 0 };
	assert_int_equal(mbox_format(&d, &b), 0);
	char *s = malloc(b.len + 1);
	assert_non_null(s);
	memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	pt_strbuf_free(&b);
	return s;
}

static char *
body(const char *data)
{
	struct pt_strbuf b = { 0 };
	assert_int_equal(mbox_format_body(data, strlen(data), &b), 0);
	char *s = malloc(b.len + 1);
	assert_non_null(s);
	if (b.len)
		memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	pt_strbuf_free(&b);
	return s;
}

static void
expect_body(const char *in, const char *out)
{
	char *got = body(in);
	assert_string_equal(got, out);
	free(got);
}

static void
test_asctime(void **state)
{
	(void)state;
	char d[32];
	mbox_asctime(T_0608, d);
	assert_string_equal(d, "Sat Nov 28 06:08:07 2026");
	mbox_asctime((time_t)1793513287, d); /* day < 10: space padded like asctime */
	assert_string_equal(d, "Sun Nov  1 06:08:07 2026");
}

static void
test_from_line_and_envelope_headers(void **state)
{
	(void)state;
	const char *data = "Received: by x\nSubject: hi\n\nbody\n";
	char *s = fmt("carol@example.com.ar", "alice@example.com.ar", "sysadmin@example.com.ar",
	              data, strlen(data), T_0608);
	assert_string_equal(s, "From carol@example.com.ar  Sat Nov 28 06:08:07 2026\n"
	                       "Return-Path: <carol@example.com.ar>\n"
	                       "X-Original-To: sysadmin@example.com.ar\n"
	                       "Delivered-To: alice@example.com.ar\n"
	                       "Received: by x\nSubject: hi\n"
	                       "X-Postern-Quoting: mboxrd\n\nbody\n\n");
	free(s);
	/* No original recipient: no X-Original-To line. */
	s = fmt("a@b", "c@d", NULL, data, strlen(data), T_0608);
	assert_null(strstr(s, "X-Original-To"));
	assert_non_null(strstr(s, "\nDelivered-To: c@d\nReceived: by x\n"));
	free(s);
	s = fmt("a@b", "c@d", "", data, strlen(data), T_0608);
	assert_null(strstr(s, "X-Original-To"));
	free(s);
}

static void
test_null_sender_is_mailer_daemon(void **state)
{
	(void)state;
	const char *data = "Subject: bounce\n\nx\n";
	char *s = fmt("", "alice@example.com.ar", "alice@example.com.ar", data, strlen(data), T_0608);
	assert_string_equal(s, "From MAILER-DAEMON  Sat Nov 28 06:08:07 2026\n"
	                       "Return-Path: <>\n"
	                       "X-Original-To: alice@example.com.ar\n"
	                       "Delivered-To: alice@example.com.ar\n"
	                       "Subject: bounce\nX-Postern-Quoting: mboxrd\n\nx\n\n");
	free(s);
}

static void
test_envelope_control_bytes_cannot_inject_lines(void **state)
{
	(void)state;
	const char *data = "S: x\n\nb\n";
	char *s = fmt("ev\nil@x", "r\r\n@y", "o\n\nFrom x", data, strlen(data), T_0608);
	assert_string_equal(s, "From ev?il@x  Sat Nov 28 06:08:07 2026\n"
	                       "Return-Path: <ev?il@x>\n"
	                       "X-Original-To: o??From x\n"
	                       "Delivered-To: r??@y\n"
	                       "S: x\nX-Postern-Quoting: mboxrd\n\nb\n\n");
	free(s);
}

/* Section 1d of POSTFIX-DOVECOT-TRANSCRIPTS.txt, with mboxrd quoting (Postfix
 * keeps ">From " as is) and the marker line. */
static void
test_reference_1d_quoting(void **state)
{
	(void)state;
	static const char msg[] =
		"Received: from client.example.com.ar (localhost [127.0.0.1])\n"
		"\tby mail.example.com.ar (Postfix) with ESMTP id E92991029C6\n"
		"\tfor <carol@example.com.ar>; Sat, 28 Nov 2026 06:53:14 +0000 (UTC)\n"
		"Subject: quoting test\n"
		"Message-Id: <20261128065314.E92991029C6@mail.example.com.ar>\n"
		"Date: Sat, 28 Nov 2026 06:53:14 +0000 (UTC)\n"
		"From: alice@example.com.ar\n"
		"\n"
		"From the desk of the sysadmin (body line starting with \"From \")\n"
		">From an already quoted line\n"
		".a line that started with one dot (sent dot-stuffed as \"..a line\")\n"
		"..two dots\n"
		"From\n"
		"last line without trailing newline";
	static const char want[] =
		"From alice@example.com.ar  Sat Nov 28 06:53:14 2026\n"
		"Return-Path: <alice@example.com.ar>\n"
		"X-Original-To: carol@example.com.ar\n"
		"Delivered-To: carol@example.com.ar\n"
		"Received: from client.example.com.ar (localhost [127.0.0.1])\n"
		"\tby mail.example.com.ar (Postfix) with ESMTP id E92991029C6\n"
		"\tfor <carol@example.com.ar>; Sat, 28 Nov 2026 06:53:14 +0000 (UTC)\n"
		"Subject: quoting test\n"
		"Message-Id: <20261128065314.E92991029C6@mail.example.com.ar>\n"
		"Date: Sat, 28 Nov 2026 06:53:14 +0000 (UTC)\n"
		"From: alice@example.com.ar\n"
		"X-Postern-Quoting: mboxrd\n"
		"\n"
		">From the desk of the sysadmin (body line starting with \"From \")\n"
		">>From an already quoted line\n"
		".a line that started with one dot (sent dot-stuffed as \"..a line\")\n"
		"..two dots\n"
		"From\n"
		"last line without trailing newline\n"
		"\n";
	time_t t = T_0608 + 45 * 60 + 7;
	char *s = fmt("alice@example.com.ar", "carol@example.com.ar", "carol@example.com.ar", msg,
	              strlen(msg), t);
	assert_string_equal(s, want);
	free(s);
	/* With the final LF SMTP gives, the bytes are the same. */
	char with_lf[sizeof msg + 1];
	snprintf(with_lf, sizeof with_lf, "%s\n", msg);
	s = fmt("alice@example.com.ar", "carol@example.com.ar", "carol@example.com.ar", with_lf,
	        strlen(with_lf), t);
	assert_string_equal(s, want);
	free(s);
}

static void
test_from_quoting_rules(void **state)
{
	(void)state;
	expect_body("A: b\n\nFrom x\n", "A: b\n\n>From x\n");
	/* mboxrd: any number of '>' before "From " gains one more. */
	expect_body("A: b\n\n>From x\n>>From y\n", "A: b\n\n>>From x\n>>>From y\n");
	expect_body("A: b\n\n>From\n>from x\n> From y\n>>x\n", "A: b\n\n>From\n>from x\n> From y\n>>x\n");
	expect_body("A: b\n\nFrom\nFrom:x\nfrom y\nFROM z\n From w\nFrom \n",
	            "A: b\n\nFrom\nFrom:x\nfrom y\nFROM z\n From w\n>From \n");
	/* Every line, the header section too (no valid field starts "From "). */
	expect_body("From nobody\nA: b\n\nx\n", ">From nobody\nA: b\n\nx\n");
	expect_body("A: b\n\nFrom a\nFrom b\n\nFrom c", "A: b\n\n>From a\n>From b\n\n>From c\n");
}

static void
test_header_stripping(void **state)
{
	(void)state;
	expect_body("Received: r\n"
	            "X-IMAPbase: 1795846111 0000000005\n"
	            "x-imap: 1 2\n"
	            "X-UID: 7\n"
	            "STATUS: RO\n"
	            "X-Status: A\n"
	            "X-Keywords: $Junk\n"
	            "  NonJunk\n"
	            "\tmore\n"
	            "Content-Length: 12\n"
	            "Status : O\n"
	            "Subject: kept\n"
	            "\n"
	            "Status: body lines are untouched\n"
	            "X-UID: 9\n"
	            "Content-Length: 1\n",
	            "Received: r\n"
	            "Subject: kept\n"
	            "\n"
	            "Status: body lines are untouched\n"
	            "X-UID: 9\n"
	            "Content-Length: 1\n");
	/* Fields that merely look alike stay; continuation lines follow their
	 * own field. */
	expect_body("X-UIDL: u\nStatusx: 1\nX-Status-Report: 2\nSubject: a\n b\nX-UID: 3\n c\nTo: t\n",
	            "X-UIDL: u\nStatusx: 1\nX-Status-Report: 2\nSubject: a\n b\nTo: t\n");
	/* A stripped last field with no body at all. */
	expect_body("Subject: s\nStatus: RO", "Subject: s\n");
	assert_true(mbox_header_is_internal("content-length", 14));
	assert_true(mbox_header_is_internal("X-Postern-Quoting", 17));
	assert_false(mbox_header_is_internal("Content-Lengt", 13));
}

static void
test_line_ends(void **state)
{
	(void)state;
	expect_body("", "");
	expect_body("x", "x\n");
	expect_body("x\n", "x\n");
	expect_body("A: b\n\nx\n\n\n", "A: b\n\nx\n\n\n");
	expect_body("A: b\r\nStatus: RO\r\n\r\nline\r\nlone\rcr\r\nFrom y\r\nend\r",
	            "A: b\n\nline\nlone\rcr\n>From y\nend\r\n");
	expect_body("\n\n", "\n\n");
	/* Empty data still gives a complete message and the separator. */
	char *s = fmt("a@b", "c@d", NULL, "", 0, T_0608);
	assert_string_equal(s, "From a@b  Sat Nov 28 06:08:07 2026\nReturn-Path: <a@b>\n"
	                       "Delivered-To: c@d\nX-Postern-Quoting: mboxrd\n\n");
	free(s);
}

static void
test_format_appends(void **state)
{
	(void)state;
	struct pt_delivery d = { "Q1", "a@b", "c@d", NULL, &carol, "S: 1\n\nx\n", 8, T_0608 };
	struct pt_strbuf b = { 0 };
	assert_int_equal(mbox_format(&d, &b), 0);
	size_t one = b.len;
	assert_int_equal(mbox_format(&d, &b), 0);
	assert_int_equal(b.len, 2 * one);
	assert_memory_equal(b.p, b.p + one, one);
	pt_strbuf_free(&b);
}

int
main(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_asctime),
		cmocka_unit_test(test_from_line_and_envelope_headers),
		cmocka_unit_test(test_null_sender_is_mailer_daemon),
		cmocka_unit_test(test_envelope_control_bytes_cannot_inject_lines),
		cmocka_unit_test(test_reference_1d_quoting),
		cmocka_unit_test(test_from_quoting_rules),
		cmocka_unit_test(test_header_stripping),
		cmocka_unit_test(test_line_ends),
		cmocka_unit_test(test_format_appends),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
