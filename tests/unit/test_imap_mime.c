/* The IMAP message library on real-world-shaped messages: ENVELOPE,
 * BODY/BODYSTRUCTURE, BODY[section], malformed input, limits, and every
 * prefix of a message parsed from an exact-size buffer. Expected strings
 * are written out by hand from RFC 3501 §7.4.2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imap/imap_msg.h"
#include "imap/imap_msg_int.h"

/* The text with each LF made CRLF (the wire form), malloc'd. */
static char *
crlf(const char *s, size_t *len)
{
	size_t n = strlen(s), k = 0;
	char *w = malloc(2 * n + 1);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			w[k++] = '\r';
		w[k++] = s[i];
	}
	w[k] = '\0';
	*len = k;
	return w;
}

struct parsed {
	char *text;
	size_t len;
	struct imap_msg *m;
};

static struct parsed
parse_lf(const char *s)
{
	struct parsed p;
	p.text = crlf(s, &p.len);
	p.m = imap_msg_parse(p.text, p.len);
	assert_non_null(p.m);
	return p;
}

static void
done(struct parsed *p)
{
	imap_msg_free(p->m);
	free(p->text);
}

static void
check_envelope(const struct imap_msg *m, const char *want)
{
	struct pt_strbuf b = { 0 };
	imap_msg_envelope(m, &b);
	assert_string_equal(b.p, want);
	pt_strbuf_free(&b);
}

static void
check_structure(const struct imap_msg *m, int extended, const char *want)
{
	struct pt_strbuf b = { 0 };
	imap_msg_bodystructure(m, extended, &b);
	assert_string_equal(b.p, want);
	pt_strbuf_free(&b);
}

/* The section's octets, with want's LFs made CRLF. */
static void
check_section(const struct imap_msg *m, const char *sec, const char *want_lf)
{
	struct imap_section s;
	assert_int_equal(imap_section_parse(sec, strlen(sec), &s), 0);
	struct pt_strbuf b = { 0 };
	imap_msg_section(m, &s, &b);
	size_t wl;
	char *want = crlf(want_lf, &wl);
	assert_non_null(b.p);
	assert_string_equal(b.p, want);
	assert_int_equal(b.len, wl);
	free(want);
	pt_strbuf_free(&b);
	imap_section_free(&s);
}

static const char mixed[] =
	"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\n"
	"From: Fred Foobar <foobar@Blurdybloop.example>\n"
	"Subject: =?utf-8?q?caf=C3=A9?= test\n"
	"To: mooch@owatagu.siam.edu.example, \"Joe Q. Public\" <jqp@x.example>,\n"
	" A Group: ed@x.example, <jj@y.example>; undisclosed-recipients:;\n"
	"Cc: <@relay.example,@b.example:route@c.example> (ignored), bare (Comment Name)\n"
	"Message-Id: <B27397-0100000@Blurdybloop.example>\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/mixed; boundary=\"XX\"\n"
	"\n"
	"preamble\n"
	"--XX\n"
	"Content-Type: text/plain; charset=utf-8\n"
	"Content-Transfer-Encoding: quoted-printable\n"
	"\n"
	"Hello caf=C3=A9\n"
	"--XX\n"
	"Content-Type: application/pdf; name=\"a.pdf\"\n"
	"Content-Disposition: attachment; filename=\"a.pdf\"\n"
	"Content-Transfer-Encoding: base64\n"
	"Content-ID: <part2@x>\n"
	"Content-Description: the report\n"
	"Content-Language: en, de\n"
	"Content-Location: http://x.example/a.pdf\n"
	"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
	"\n"
	"JVBERi0xLjQK\n"
	"--XX\n"
	"Content-Type: message/rfc822\n"
	"\n"
	"From: inner@example.org\n"
	"Subject: inner\n"
	"\n"
	"inner body\n"
	"--XX--\n"
	"epilogue\n";

static void
test_mixed_envelope(void **state)
{
	(void)state;
	struct parsed p = parse_lf(mixed);
	check_envelope(p.m,
		"(\"Mon, 7 Feb 1994 21:52:25 -0800 (PST)\" \"=?utf-8?q?caf=C3=A9?= test\" "
		"((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) "
		"((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) "
		"((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) "
		"((NIL NIL \"mooch\" \"owatagu.siam.edu.example\")(\"Joe Q. Public\" NIL \"jqp\" \"x.example\")"
		"(NIL NIL \"A Group\" NIL)(NIL NIL \"ed\" \"x.example\")(NIL NIL \"jj\" \"y.example\")(NIL NIL NIL NIL)"
		"(NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
		"((NIL \"@relay.example,@b.example\" \"route\" \"c.example\")(\"Comment Name\" NIL \"bare\" \"MISSING_DOMAIN\")) "
		"NIL NIL \"<B27397-0100000@Blurdybloop.example>\")");
	done(&p);
}

static const char mixed_text[] =
	"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" 15 0";
static const char mixed_pdf[] =
	"(\"APPLICATION\" \"PDF\" (\"NAME\" \"a.pdf\") \"<part2@x>\" \"the report\" \"BASE64\" 12";
static const char mixed_inner_env[] =
	"(NIL \"inner\" ((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"inner\" \"example.org\")) "
	"((NIL NIL \"inner\" \"example.org\")) NIL NIL NIL NIL NIL)";

static void
test_mixed_structure(void **state)
{
	(void)state;
	struct parsed p = parse_lf(mixed);
	char want[4096];
	/* MD5 is the Content-MD5 value when there is one.
	 * rfc822 body: "From: inner@example.org\r\n" (25) + "Subject: inner\r\n" (16)
	 * + "\r\n" + "inner body" (10) = 53 octets, 3 lines */
	snprintf(want, sizeof want,
		"(%s NIL NIL NIL NIL)"
		"%s \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"ATTACHMENT\" (\"FILENAME\" \"a.pdf\")) (\"en\" \"de\") \"http://x.example/a.pdf\")"
		"(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 53 %s "
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 10 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL) "
		"\"MIXED\" (\"BOUNDARY\" \"XX\") NIL NIL NIL)",
		mixed_text, mixed_pdf, mixed_inner_env);
	check_structure(p.m, 1, want);
	snprintf(want, sizeof want,
		"(%s)%s)(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 53 %s "
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 10 0) 3) \"MIXED\")",
		mixed_text, mixed_pdf, mixed_inner_env);
	check_structure(p.m, 0, want);
	done(&p);
}

static void
test_mixed_sections(void **state)
{
	(void)state;
	struct parsed p = parse_lf(mixed);
	check_section(p.m, "", mixed);
	check_section(p.m, "HEADER.FIELDS (to SUBJECT)",
		"Subject: =?utf-8?q?caf=C3=A9?= test\n"
		"To: mooch@owatagu.siam.edu.example, \"Joe Q. Public\" <jqp@x.example>,\n"
		" A Group: ed@x.example, <jj@y.example>; undisclosed-recipients:;\n\n");
	check_section(p.m, "header.fields.not (To Cc \"Message-Id\" Date From Subject Mime-Version)",
		"Content-Type: multipart/mixed; boundary=\"XX\"\n\n");
	check_section(p.m, "HEADER.FIELDS (X-None)", "\n");
	check_section(p.m, "1", "Hello caf=C3=A9");
	check_section(p.m, "1.MIME", "Content-Type: text/plain; charset=utf-8\n"
		"Content-Transfer-Encoding: quoted-printable\n\n");
	check_section(p.m, "2", "JVBERi0xLjQK");
	check_section(p.m, "3", "From: inner@example.org\nSubject: inner\n\ninner body");
	check_section(p.m, "3.MIME", "Content-Type: message/rfc822\n\n");
	check_section(p.m, "3.HEADER", "From: inner@example.org\nSubject: inner\n\n");
	check_section(p.m, "3.HEADER.FIELDS (subject)", "Subject: inner\n\n");
	check_section(p.m, "3.TEXT", "inner body");
	check_section(p.m, "3.1", "inner body");
	check_section(p.m, "3.1.MIME", "From: inner@example.org\nSubject: inner\n\n");
	/* nonexistent parts, and HEADER/TEXT of a part that holds no message */
	check_section(p.m, "4", "");
	check_section(p.m, "1.1", "");
	check_section(p.m, "3.2", "");
	check_section(p.m, "1.HEADER", "");
	check_section(p.m, "1.TEXT", "");
	check_section(p.m, "99.MIME", "");
	/* TEXT: everything after the header's empty line */
	const char *body = strstr(mixed, "\n\npreamble") + 2;
	check_section(p.m, "TEXT", body);
	done(&p);
}

static const char alternative[] =
	"From: \"Smith, John\" <john@example.com>\n"
	"To: a@example.com\n"
	"Subject: Nested \"alt\" \\o/\n"
	"Content-Type: multipart/mixed; boundary=outer\n"
	"\n"
	"--outer\n"
	"Content-Type: multipart/alternative; boundary=\"inner\"\n"
	"\n"
	"--inner\n"
	"Content-Type: text/plain\n"
	"\n"
	"plain line 1\n"
	"plain line 2\n"
	"--inner\n"
	"Content-Type: text/html; charset=\"iso-8859-1\"\n"
	"Content-Transfer-Encoding: 8bit\n"
	"\n"
	"<p>html</p>\n"
	"--inner--\n"
	"\n"
	"--outer\n"
	"Content-Type: image/png\n"
	"Content-Transfer-Encoding: base64\n"
	"Content-Disposition: inline\n"
	"\n"
	"iVBORw0KGgo=\n"
	"--outer--\n";

static void
test_nested_alternative(void **state)
{
	(void)state;
	struct parsed p = parse_lf(alternative);
	/* quotes and backslashes escaped; a quoted display name unquoted */
	check_envelope(p.m,
		"(NIL \"Nested \\\"alt\\\" \\\\o/\" ((\"Smith, John\" NIL \"john\" \"example.com\")) "
		"((\"Smith, John\" NIL \"john\" \"example.com\")) ((\"Smith, John\" NIL \"john\" \"example.com\")) "
		"((NIL NIL \"a\" \"example.com\")) NIL NIL NIL NIL)");
	/* text/plain: "plain line 1\r\nplain line 2" = 26 octets, 1 line;
	 * the inner multipart ends before the CRLF that precedes "--outer" */
	check_structure(p.m, 1,
		"(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 26 1 NIL NIL NIL NIL)"
		"(\"TEXT\" \"HTML\" (\"CHARSET\" \"iso-8859-1\") NIL NIL \"8BIT\" 11 0 NIL NIL NIL NIL) "
		"\"ALTERNATIVE\" (\"BOUNDARY\" \"inner\") NIL NIL NIL)"
		"(\"IMAGE\" \"PNG\" NIL NIL NIL \"BASE64\" 12 NIL (\"INLINE\" NIL) NIL NIL) "
		"\"MIXED\" (\"BOUNDARY\" \"outer\") NIL NIL NIL)");
	check_section(p.m, "1.1", "plain line 1\nplain line 2");
	check_section(p.m, "1.2", "<p>html</p>");
	check_section(p.m, "1.2.MIME", "Content-Type: text/html; charset=\"iso-8859-1\"\n"
		"Content-Transfer-Encoding: 8bit\n\n");
	check_section(p.m, "2", "iVBORw0KGgo=");
	check_section(p.m, "1", "--inner\nContent-Type: text/plain\n\nplain line 1\nplain line 2\n"
		"--inner\nContent-Type: text/html; charset=\"iso-8859-1\"\nContent-Transfer-Encoding: 8bit\n\n"
		"<p>html</p>\n--inner--\n");
	check_section(p.m, "1.3", "");
	done(&p);
}

static void
test_missing_boundary(void **state)
{
	(void)state;
	/* no boundary parameter, and a boundary that never occurs: text/plain */
	struct parsed p = parse_lf("Content-Type: multipart/mixed\n\n--x\nhello\n--x--\n");
	check_structure(p.m, 0, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 19 3)");
	check_section(p.m, "1", "--x\nhello\n--x--\n");
	check_section(p.m, "2", "");
	done(&p);
	p = parse_lf("Content-Type: multipart/mixed; boundary=zz\n\nno delimiters\n");
	check_structure(p.m, 0, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 15 1)");
	done(&p);
	/* no close delimiter: the last part runs to the end */
	p = parse_lf("Content-Type: multipart/mixed; boundary=zz\n\n--zz\n\none\n--zz\n\ntwo\n");
	check_structure(p.m, 0,
		"((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 3 0)"
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 5 1) \"MIXED\")");
	check_section(p.m, "2", "two\n");
	done(&p);
	/* "--zzz" is not a delimiter of "zz"; "--zz  " (trailing blanks) is */
	p = parse_lf("Content-Type: multipart/mixed; boundary=zz\n\n--zz  \n\na\n--zzz\nb\n--zz--\n");
	check_section(p.m, "1", "a\n--zzz\nb");
	done(&p);
}

static void
test_header_only_and_empty(void **state)
{
	(void)state;
	/* header without body, without even the empty line */
	struct parsed p = parse_lf("Subject: just a header\nFrom: a@b.example");
	check_structure(p.m, 1, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)");
	check_envelope(p.m, "(NIL \"just a header\" ((NIL NIL \"a\" \"b.example\")) ((NIL NIL \"a\" \"b.example\")) "
		"((NIL NIL \"a\" \"b.example\")) NIL NIL NIL NIL NIL)");
	check_section(p.m, "HEADER", "Subject: just a header\nFrom: a@b.example");
	check_section(p.m, "HEADER.FIELDS (FROM)", "From: a@b.example\n\n");
	check_section(p.m, "TEXT", "");
	check_section(p.m, "1", "");
	done(&p);

	struct imap_msg *m = imap_msg_parse("", 0);
	assert_non_null(m);
	check_envelope(m, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	check_structure(m, 1, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)");
	check_section(m, "", "");
	check_section(m, "HEADER", "");
	check_section(m, "HEADER.FIELDS (x)", "\n");
	check_section(m, "1.MIME", "");
	imap_msg_free(m);

	/* only a body: the header is the empty line */
	p = parse_lf("\nbody only\n");
	check_section(p.m, "HEADER", "\n");
	check_section(p.m, "TEXT", "body only\n");
	done(&p);
}

static void
test_folded_and_encoded_headers(void **state)
{
	(void)state;
	struct parsed p = parse_lf(
		"Subject: a folded\n"
		"\tsubject line\n"
		"From: =?iso-8859-1?q?J=F6rg?= <joerg@example.de>\n"
		"To: undisclosed-recipients:;\n"
		"In-Reply-To: <a@b>\n"
		"Date:   Tue, 1 Jul 2003 10:52:37 +0200  \n"
		"\n"
		"x\n");
	check_envelope(p.m,
		"(\"Tue, 1 Jul 2003 10:52:37 +0200\" \"a folded\tsubject line\" "
		"((\"=?iso-8859-1?q?J=F6rg?=\" NIL \"joerg\" \"example.de\")) "
		"((\"=?iso-8859-1?q?J=F6rg?=\" NIL \"joerg\" \"example.de\")) "
		"((\"=?iso-8859-1?q?J=F6rg?=\" NIL \"joerg\" \"example.de\")) "
		"((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL NIL \"<a@b>\" NIL)");
	/* folded lines are kept as they are in sections */
	check_section(p.m, "HEADER.FIELDS (Subject)", "Subject: a folded\n\tsubject line\n\n");
	done(&p);

	/* 8-bit text goes out as a literal; sender and reply-to kept when given */
	p = parse_lf("Subject: Gr\xc3\xbc\xc3\x9f""e\nFrom: a@x\nSender: s@x\nReply-To: r@x\n\n");
	check_envelope(p.m, "(NIL {7}\r\nGr\xc3\xbc\xc3\x9f""e ((NIL NIL \"a\" \"x\")) ((NIL NIL \"s\" \"x\")) "
		"((NIL NIL \"r\" \"x\")) NIL NIL NIL NIL NIL)");
	done(&p);
}

/* RFC 3501 7.4.2: an empty (or blank, or folded-blank) Sender:/Reply-To:
 * is as if absent, so from is repeated there; an empty To: stays NIL. */
static void
test_blank_sender_reply_to(void **state)
{
	(void)state;
	const char *from = "((\"Real Name\" NIL \"user\" \"domain\"))";
	char want[512];
	snprintf(want, sizeof want, "(NIL NIL %s %s %s NIL NIL NIL NIL NIL)", from, from, from);
	struct parsed p = parse_lf("From: user@domain (Real Name)\nSender: \nReply-To:\n\nbody\n");
	check_envelope(p.m, want);
	done(&p);
	p = parse_lf("From: user@domain (Real Name)\nSender:  \t\n \nReply-To: \n\t\nTo: \n\n");
	check_envelope(p.m, want);
	done(&p);
	/* a later non-blank one is used */
	p = parse_lf("From: user@domain (Real Name)\nSender:\nSender: s@x\n\n");
	snprintf(want, sizeof want, "(NIL NIL %s ((NIL NIL \"s\" \"x\")) %s NIL NIL NIL NIL NIL)", from, from);
	check_envelope(p.m, want);
	done(&p);
}

static void
test_bare_lf(void **state)
{
	(void)state;
	const char *msg = "Subject: lf\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\nContent-Type: text/html\n\n<b>\n--b--\n";
	struct imap_msg *m = imap_msg_parse(msg, strlen(msg));
	check_structure(m, 0, "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 3 0)"
		"(\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 3 0) \"MIXED\")");
	struct imap_section s;
	struct pt_strbuf b = { 0 };
	assert_int_equal(imap_section_parse("2.MIME", 6, &s), 0);
	imap_msg_section(m, &s, &b);
	assert_string_equal(b.p, "Content-Type: text/html\n\n");
	pt_strbuf_free(&b);
	check_envelope(m, "(NIL \"lf\" NIL NIL NIL NIL NIL NIL NIL NIL)");
	imap_msg_free(m);
}

static void
test_digest_and_encoded_rfc822(void **state)
{
	(void)state;
	/* parts of multipart/digest default to message/rfc822 */
	struct parsed p = parse_lf("Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: s\n\nb\n--d--\n");
	check_structure(p.m, 0, "((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 15 "
		"(NIL \"s\" NIL NIL NIL NIL NIL NIL NIL NIL) "
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 1 0) 2) \"DIGEST\")");
	check_section(p.m, "1.HEADER", "Subject: s\n\n");
	done(&p);
	/* a base64 message/rfc822 cannot be looked into: a plain leaf */
	p = parse_lf("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeA0KDQp5\n");
	check_structure(p.m, 0, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"BASE64\" 22 1)");
	done(&p);
}

static void
test_section_parse(void **state)
{
	(void)state;
	struct imap_section s;
	assert_int_equal(imap_section_parse("1.2.3.HEADER.FIELDS.NOT (A \"B c\")", 33, &s), 0);
	assert_int_equal(s.nparts, 3);
	assert_int_equal(s.part[2], 3);
	assert_int_equal(s.kind, IMAP_SEC_HEADER_FIELDS_NOT);
	assert_int_equal(s.nfields, 2);
	assert_string_equal(s.fields[1], "B c");
	imap_section_free(&s);
	assert_int_equal(imap_section_parse("text", 4, &s), 0);
	assert_int_equal(s.kind, IMAP_SEC_TEXT);
	assert_int_equal(imap_section_parse("4.mime", 6, &s), 0);
	assert_int_equal(s.kind, IMAP_SEC_MIME);
	assert_int_equal(imap_section_parse("", 0, &s), 0);
	assert_int_equal(s.kind, IMAP_SEC_ALL);
	const char *bad[] = { "MIME", "0", "1.0", "1.", ".1", "1..2", "HEADERS", "HEADER.FIELDS",
		"HEADER.FIELDS ()", "HEADER.FIELDS (a", "HEADER.FIELDS (a) ", "HEADER.FIELDS  (a)",
		"1.TEXT.1", "TEXTX", "x", "4294967296", "HEADER.FIELDS (a:b)",
		"1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28.29.30.31.32.33" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(imap_section_parse(bad[i], strlen(bad[i]), &s), -1);
}

/* Every output of a message for all of its sections. */
static void
exercise(const struct imap_msg *m)
{
	static const char *secs[] = { "", "HEADER", "TEXT", "HEADER.FIELDS (To From)",
		"HEADER.FIELDS.NOT (To)", "1", "1.MIME", "2", "2.MIME", "3", "3.HEADER", "3.TEXT",
		"3.1", "3.1.MIME", "1.1", "1.2", "2.1", "3.HEADER.FIELDS (Subject)" };
	struct pt_strbuf b = { 0 };
	imap_msg_envelope(m, &b);
	imap_msg_bodystructure(m, 1, &b);
	imap_msg_bodystructure(m, 0, &b);
	for (size_t i = 0; i < sizeof secs / sizeof *secs; i++) {
		struct imap_section s;
		assert_int_equal(imap_section_parse(secs[i], strlen(secs[i]), &s), 0);
		imap_msg_section(m, &s, &b);
		imap_section_free(&s);
	}
	assert_false(b.oom);
	pt_strbuf_free(&b);
}

static void
test_every_prefix(void **state)
{
	(void)state;
	const char *msgs[] = { mixed, alternative };
	for (size_t k = 0; k < 2; k++) {
		size_t n;
		char *full = crlf(msgs[k], &n);
		for (size_t i = 0; i <= n; i++) {
			char *c = malloc(i ? i : 1);
			memcpy(c, full, i);
			struct imap_msg *m = imap_msg_parse(c, i);
			assert_non_null(m);
			exercise(m);
			imap_msg_free(m);
			free(c);
		}
		free(full);
	}
}

static void
test_limits(void **state)
{
	(void)state;
	/* 200 nested multiparts: parsed to the depth bound, the rest is text */
	struct pt_strbuf b = { 0 };
	for (int i = 0; i < 200; i++)
		pt_strbuf_printf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i);
	pt_strbuf_puts(&b, "\r\ndeep\r\n");
	struct imap_msg *m = imap_msg_parse(b.p, b.len);
	assert_non_null(m);
	struct pt_strbuf out = { 0 };
	imap_msg_bodystructure(m, 1, &out);
	size_t depth = 0;
	while (out.p[depth] == '(')
		depth++;
	assert_true(depth >= 30 && depth <= 40);
	pt_strbuf_free(&out);
	exercise(m);
	imap_msg_free(m);
	pt_strbuf_free(&b);

	/* 5000 parts: the list stops at the bound */
	pt_strbuf_puts(&b, "Content-Type: multipart/mixed; boundary=p\r\n\r\n");
	for (int i = 0; i < 5000; i++)
		pt_strbuf_puts(&b, "--p\r\n\r\nx\r\n");
	pt_strbuf_puts(&b, "--p--\r\n");
	m = imap_msg_parse(b.p, b.len);
	assert_non_null(m);
	imap_msg_bodystructure(m, 0, &out);
	size_t parts = 0;
	for (const char *q = out.p; (q = strstr(q, "\"PLAIN\"")) != NULL; q++)
		parts++;
	assert_true(parts >= 900 && parts < 1000);
	pt_strbuf_free(&out);
	struct imap_section s;
	assert_int_equal(imap_section_parse("5", 1, &s), 0);
	imap_msg_section(m, &s, &out);
	assert_string_equal(out.p, "x");
	pt_strbuf_free(&out);
	imap_msg_free(m);
	pt_strbuf_free(&b);
}

/* BINARY[part] (RFC 3516): base64 and quoted-printable undone, other
 * encodings as they are or refused, multipart/message parts untouched. */
static void
check_binary(const struct imap_msg *m, const char *sec, int want_rc, const char *want, size_t wantlen)
{
	struct imap_section s;
	assert_int_equal(imap_section_parse(sec, strlen(sec), &s), 0);
	struct pt_strbuf b = { 0 };
	assert_int_equal(imap_msg_binary(m, &s, NULL), want_rc);
	assert_int_equal(imap_msg_binary(m, &s, &b), want_rc);
	if (want_rc == 0) {
		assert_int_equal(b.len, wantlen);
		assert_memory_equal(b.p, want, wantlen);
	}
	pt_strbuf_free(&b);
	imap_section_free(&s);
}

static void
test_binary(void **state)
{
	(void)state;
	struct parsed p = parse_lf("Subject: b\n"
	                           "Content-Type: multipart/mixed; boundary=B\n\n"
	                           "--B\nContent-Transfer-Encoding: BASE64\n\nAGEB\n/w==\n"
	                           "--B\nContent-Transfer-Encoding: quoted-printable\n\na=3Db=\nc\n"
	                           "--B\nContent-Transfer-Encoding: x-gzip\n\nzz\n"
	                           "--B\nContent-Transfer-Encoding: 8bit\n\nplain\n"
	                           "--B\nContent-Type: message/rfc822\nContent-Transfer-Encoding: 7bit\n\n"
	                           "Subject: in\nContent-Transfer-Encoding: base64\n\naGk=\n"
	                           "--B--\n");
	check_binary(p.m, "1", 0, "\0a\1\xff", 4);
	check_binary(p.m, "2", 0, "a=bc", 4);
	check_binary(p.m, "3", -1, NULL, 0);
	check_binary(p.m, "4", 0, "plain", 5);
	check_binary(p.m, "5.1", 0, "hi", 2);   /* the embedded message's body */
	check_binary(p.m, "9", 0, "", 0);       /* no such part */
	check_binary(p.m, "", 0, p.text, p.len);
	free(p.text);
	imap_msg_free(p.m);
}

/* imap_msg_put_nstring (ENVELOPE, BODYSTRUCTURE): NIL, a quoted string
 * with '"' and '\\' escaped, a literal for CR, LF, NUL or 8-bit. */
static void
test_put_nstring(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		size_t len;
		const char *want;
		size_t wlen;
	} cases[] = {
		{ NULL, 0, "NIL", 3 },
		{ "", 0, "\"\"", 2 },
		{ "plain text", 10, "\"plain text\"", 12 },
		{ "a\"b\\c\"", 6, "\"a\\\"b\\\\c\\\"\"", 11 },
		{ "\\", 1, "\"\\\\\"", 4 },
		{ "x\r\ny", 4, "{4}\r\nx\r\ny", 9 },
		{ "a\0\"", 3, "{3}\r\na\0\"", 8 },
		{ "\"\xc3\xbc", 3, "{3}\r\n\"\xc3\xbc", 8 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct pt_strbuf b = { 0 };
		pt_strbuf_puts(&b, "(");
		imap_msg_put_nstring(&b, cases[i].s, cases[i].len);
		assert_false(b.oom);
		assert_int_equal(b.len, cases[i].wlen + 1);
		assert_memory_equal(b.p + 1, cases[i].want, cases[i].wlen);
		assert_int_equal(b.p[b.len], '\0');
		pt_strbuf_free(&b);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mixed_envelope),
		cmocka_unit_test(test_mixed_structure),
		cmocka_unit_test(test_mixed_sections),
		cmocka_unit_test(test_nested_alternative),
		cmocka_unit_test(test_missing_boundary),
		cmocka_unit_test(test_header_only_and_empty),
		cmocka_unit_test(test_folded_and_encoded_headers),
		cmocka_unit_test(test_blank_sender_reply_to),
		cmocka_unit_test(test_bare_lf),
		cmocka_unit_test(test_digest_and_encoded_rfc822),
		cmocka_unit_test(test_section_parse),
		cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_binary),
		cmocka_unit_test(test_put_nstring),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
