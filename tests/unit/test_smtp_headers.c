/* Missing Date:/Message-Id:/From: repair and local_header_rewrite_clients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smtp/smtp_headers.h"

static const struct smtp_header_fill F = { "alice@example.com.ar", "ABC123", "mail.example.com.ar", 1795846087 };

static char *
fix(const char *msg, int *rc)
{
	struct pt_strbuf b = { 0 };
	*rc = smtp_add_missing_headers(msg, strlen(msg), 0, &F, &b);
	if (*rc != 1) {
		assert_null(b.p);
		return NULL;
	}
	return b.p;
}

static void
test_complete_message_untouched(void **state)
{
	(void)state;
	int rc;
	assert_null(fix("Received: from x\n\tby y\nFrom: a@b\nDATE: now\nmessage-id: <1@b>\n\nbody\n", &rc));
	assert_int_equal(rc, 0);
}

static void
test_missing_fields_appended_to_the_header(void **state)
{
	(void)state;
	int rc;
	char *out = fix("Received: from x\n\tby y\nSubject: hi\n\nFrom me\nDate: in the body\n", &rc);
	assert_int_equal(rc, 1);
	const char *mid = strstr(out, "Message-Id: <");
	const char *date = strstr(out, "\nDate: ");
	const char *from = strstr(out, "\nFrom: alice@example.com.ar\n");
	assert_non_null(mid);
	assert_non_null(date);
	assert_non_null(from);
	assert_non_null(strstr(mid, ".ABC123@mail.example.com.ar>\n"));
	const char *head = "Received: from x\n\tby y\nSubject: hi\nMessage-Id: <";
	assert_true(strncmp(out, head, strlen(head)) == 0);
	/* The body is kept as it was, after the one empty line. */
	const char *body = strstr(out, "\n\nFrom me\nDate: in the body\n");
	assert_non_null(body);
	assert_true(from < body);
	assert_null(strstr(body + 2, "Message-Id"));
	free(out);
}

static void
test_only_what_is_missing(void **state)
{
	(void)state;
	int rc;
	char *out = fix("From: Bob <bob@x>\nDate: Sat, 1 Jan 2000 00:00:00 +0000\n\nb\n", &rc);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(out, "Message-Id: "));
	assert_null(strstr(out, "alice@"));
	assert_null(strstr(strstr(out, "Date:") + 1, "Date:"));
	free(out);
}

static void
test_no_empty_line_or_no_header(void **state)
{
	(void)state;
	int rc;
	/* A body line that is not a header field ends the header section: the
	 * added fields go before it, with the empty line it lacked. */
	char *out = fix("Subject: s\nthis is body text\n", &rc);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(out, "\nFrom: alice@example.com.ar\n\nthis is body text\n"));
	free(out);
	out = fix("", &rc);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(out, "From: alice@example.com.ar\n\n"));
	free(out);
	/* Null sender. */
	struct pt_strbuf b = { 0 };
	struct smtp_header_fill f = F;
	f.sender = "";
	assert_int_equal(smtp_add_missing_headers("\nbody\n", 6, 0, &f, &b), 1);
	assert_non_null(strstr(b.p, "From: MAILER-DAEMON\n\nbody\n"));
	pt_strbuf_free(&b);
}

static void
test_every_prefix(void **state)
{
	(void)state;
	const char *m = "Received: a\n\tb\nSubject: x\nFrom: y\n\nbody\n";
	size_t n = strlen(m);
	for (size_t i = 0; i <= n; i++) {
		struct pt_strbuf b = { 0 };
		int rc = smtp_add_missing_headers(m, i, 0, &F, &b);
		assert_true(rc == 1);
		assert_true(b.len > i);
		pt_strbuf_free(&b);
	}
}

static void
test_rewrite_clients(void **state)
{
	(void)state;
	char err[256];
	assert_int_equal(smtp_rewrite_clients_check("permit_inet_interfaces, permit_sasl_authenticated", err,
	                                            sizeof err), 0);
	assert_int_equal(smtp_rewrite_clients_check("", err, sizeof err), 0);
	assert_int_equal(smtp_rewrite_clients_check("permit_mynetworks", err, sizeof err), -1);
	assert_non_null(strstr(err, "\"permit_mynetworks\" is not supported"));
	assert_true(smtp_rewrite_client_matches("permit_inet_interfaces", "127.0.0.1", "127.0.0.1", 0));
	assert_false(smtp_rewrite_client_matches("permit_inet_interfaces", "127.0.0.2", "127.0.0.1", 0));
	assert_true(smtp_rewrite_client_matches("permit_sasl_authenticated", "192.0.2.1", "127.0.0.1", 1));
	assert_false(smtp_rewrite_client_matches("permit_sasl_authenticated", "192.0.2.1", "127.0.0.1", 0));
	assert_true(smtp_rewrite_client_matches("static:all", "192.0.2.1", "127.0.0.1", 0));
	assert_false(smtp_rewrite_client_matches("", "127.0.0.1", "127.0.0.1", 1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_complete_message_untouched),
		cmocka_unit_test(test_missing_fields_appended_to_the_header),
		cmocka_unit_test(test_only_what_is_missing),
		cmocka_unit_test(test_no_empty_line_or_no_header),
		cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_rewrite_clients),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
