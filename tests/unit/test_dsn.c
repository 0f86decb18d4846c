/* Unit tests for RFC 3464 bounce generation (Postfix wording). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

static const char orig_msg[] =
	"Received: from client.example.com.ar (localhost [127.0.0.1])\n"
	"\tby mail.example.com.ar (Postern) with ESMTP id 575F91029A1\n"
	"From: Probe <probe@example.com.ar>\n"
	"Subject: probe\n"
	"\n"
	"body line 1\n"
	"SECRET BODY\n";

static struct pt_dsn_info
info(void)
{
	struct pt_dsn_info in = {
		.myhostname = "mail.example.com.ar",
		.mydomain_origin = "example.com.ar",
		.queue_id = "575F91029A1",
		.bounce_id = "5B75C102A34",
		.sender = "alice@example.com.ar",
		.arrival = 1795848812,
		.now = 1795848813,
	};
	return in;
}

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static void
test_bounce_structure(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	struct pt_dsn_info in = info();
	struct pt_dsn_rcpt r[2] = {
		{ "carol@example.com.ar", "carol@example.com.ar", "5.2.2",
		  "cannot update mailbox /var/mail/carol for user carol. error writing message: File too large", 0 },
		{ "nosuchuser@sub.example.com.ar", NULL, "5.1.1", "unknown user: \"nosuchuser\"", 0 },
	};
	size_t len;
	char *m = pt_dsn_build(&in, r, 2, orig_msg, sizeof orig_msg - 1, &len);
	assert_non_null(m);
	assert_int_equal(strlen(m), len);
	assert_non_null(strstr(m, "From: Mail Delivery System <MAILER-DAEMON@example.com.ar>\n"));
	assert_non_null(strstr(m, "Subject: Undelivered Mail Returned to Sender\n"));
	assert_non_null(strstr(m, "To: alice@example.com.ar\n"));
	assert_non_null(strstr(m, "Auto-Submitted: auto-replied\n"));
	assert_non_null(strstr(m, "Content-Type: multipart/report; report-type=delivery-status;\n"
	                          "\tboundary=\"575F91029A1.1795848812/mail.example.com.ar\"\n"));
	assert_non_null(strstr(m, "Date: Sat, 28 Nov 2026 06:53:33 +0000 (UTC)\n"));
	assert_non_null(strstr(m, "Message-Id: <20261128065333.5B75C102A34@mail.example.com.ar>\n"));
	assert_non_null(strstr(m, "This is the mail system at host mail.example.com.ar.\n"));
	assert_non_null(strstr(m, "I'm sorry to have to inform you that your message could not\n"));
	/* Folded like Postfix's notice. */
	assert_non_null(strstr(m, "<carol@example.com.ar>: cannot update mailbox /var/mail/carol for user\n"
	                          "    carol. error writing message: File too large\n"));
	assert_non_null(strstr(m, "<nosuchuser@sub.example.com.ar>: unknown user: \"nosuchuser\"\n"));
	assert_non_null(strstr(m, "Reporting-MTA: dns; mail.example.com.ar\n"));
	assert_non_null(strstr(m, "Arrival-Date: Sat, 28 Nov 2026 06:53:32 +0000 (UTC)\n"));
	assert_non_null(strstr(m, "\nFinal-Recipient: rfc822; carol@example.com.ar\n"
	                          "Original-Recipient: rfc822;carol@example.com.ar\n"
	                          "Action: failed\nStatus: 5.2.2\n"
	                          "Diagnostic-Code: x-unix; cannot update mailbox"));
	assert_non_null(strstr(m, "\nFinal-Recipient: rfc822; nosuchuser@sub.example.com.ar\n"
	                          "Action: failed\nStatus: 5.1.1\n"));
	assert_non_null(strstr(m, "Content-Type: message/rfc822\n"));
	assert_non_null(strstr(m, "Return-Path: <alice@example.com.ar>\nReceived: from client"));
	assert_non_null(strstr(m, "SECRET BODY\n"));
	/* Three parts and the closing delimiter, last. */
	assert_int_equal(count(m, "\n--575F91029A1.1795848812/mail.example.com.ar\n"), 3);
	const char *end = "\n--575F91029A1.1795848812/mail.example.com.ar--\n";
	assert_true(len > strlen(end));
	assert_string_equal(m + len - strlen(end), end);
	/* LF line ends only. */
	assert_null(strchr(m, '\r'));
	free(m);
}

static void
test_expanded_from_and_headers_only(void **state)
{
	(void)state;
	struct pt_dsn_info in = info();
	in.ret = "HDRS";
	struct pt_dsn_rcpt r = { "alice@example.com.ar", "sysadmin@example.com.ar", "5.4.6",
		"mail forwarding loop for alice@example.com.ar", 0 };
	size_t len;
	char *m = pt_dsn_build(&in, &r, 1, orig_msg, sizeof orig_msg - 1, &len);
	assert_non_null(m);
	assert_non_null(strstr(m, "<alice@example.com.ar> (expanded from <sysadmin@example.com.ar>): mail\n"
	                          "    forwarding loop for alice@example.com.ar\n"));
	assert_non_null(strstr(m, "Content-Type: text/rfc822-headers\n"));
	assert_non_null(strstr(m, "Subject: probe\n"));
	assert_null(strstr(m, "SECRET BODY"));
	free(m);

	/* Over the return limit: headers only as well. */
	in.ret = NULL;
	size_t big = 60000;
	char *msg = malloc(big + 1);
	memcpy(msg, orig_msg, sizeof orig_msg - 1);
	memset(msg + sizeof orig_msg - 1, 'x', big - (sizeof orig_msg - 1));
	msg[big] = 0;
	m = pt_dsn_build(&in, &r, 1, msg, big, &len);
	assert_non_null(m);
	assert_true(len < 10000);
	assert_non_null(strstr(m, "Content-Type: text/rfc822-headers\n"));
	free(m);
	free(msg);
}

/* Text that tries to inject headers or end the report stays on its line,
 * and a message containing our boundary gets another one. */
static void
test_hostile_text_and_boundary(void **state)
{
	(void)state;
	struct pt_dsn_info in = info();
	in.sender = "evil@example.com.ar\nBcc: victim@example.com";
	struct pt_dsn_rcpt r = { "x@example.com.ar\r\nX-Injected: 1", NULL, "5.0.0", "bad\n\nthing", 0 };
	const char msg[] = "Subject: x\n\n--575F91029A1.1795848812/mail.example.com.ar--\ntext\n";
	size_t len;
	char *m = pt_dsn_build(&in, &r, 1, msg, sizeof msg - 1, &len);
	assert_non_null(m);
	assert_null(strstr(m, "\nBcc:"));
	assert_null(strstr(m, "\nX-Injected"));
	assert_null(strstr(m, "\r"));
	assert_non_null(strstr(m, "boundary=\"575F91029A1.1795848812.1/mail.example.com.ar\""));
	assert_int_equal(count(m, "\n--575F91029A1.1795848812.1/mail.example.com.ar\n"), 3);
	free(m);
}

static void
test_delay_warning(void **state)
{
	(void)state;
	struct pt_dsn_info in = info();
	struct pt_dsn_rcpt r = { "bob@example.com.ar", NULL, "4.2.1", "mailbox is locked", 1 };
	size_t len;
	char *m = pt_dsn_build(&in, &r, 1, orig_msg, sizeof orig_msg - 1, &len);
	assert_non_null(m);
	assert_non_null(strstr(m, "Subject: Delayed Mail (still being retried)\n"));
	assert_non_null(strstr(m, "Action: delayed\nStatus: 4.2.1\n"));
	free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounce_structure),
		cmocka_unit_test(test_expanded_from_and_headers_only),
		cmocka_unit_test(test_hostile_text_and_boundary),
		cmocka_unit_test(test_delay_warning),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
