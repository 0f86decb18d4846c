/* Unit tests for the Received header and protocol names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/smtp_received.h"

static void
test_protocol_names(void **state)
{
	(void)state;
	assert_string_equal(smtp_protocol_name(0, 0, 0, 0), "SMTP");
	assert_string_equal(smtp_protocol_name(1, 0, 0, 0), "ESMTP");
	assert_string_equal(smtp_protocol_name(1, 1, 0, 0), "ESMTPS");
	assert_string_equal(smtp_protocol_name(1, 0, 1, 0), "ESMTPA");
	assert_string_equal(smtp_protocol_name(1, 1, 1, 0), "ESMTPSA");
	assert_string_equal(smtp_protocol_name(1, 1, 1, 1), "UTF8SMTPSA");
	assert_string_equal(smtp_protocol_name(1, 0, 0, 1), "UTF8SMTP");
}

static void
test_received_plain(void **state)
{
	struct smtp_received_info r = {
		.helo = "client.example.com.ar", .client_name = "localhost", .client_addr = "127.0.0.1",
		.myhostname = "mail.example.com.ar", .protocol = "ESMTP", .queue_id = "9F2EA102036",
		.rcpt = "sysadmin@example.com.ar", .when = 1795846087,
	};
	char out[1024];

	(void)state;
	setenv("TZ", "UTC", 1);
	assert_true(smtp_received_format(&r, out, sizeof(out)) > 0);
	assert_string_equal(out,
		"Received: from client.example.com.ar (localhost [127.0.0.1])\n"
		"\tby mail.example.com.ar (Postern) with ESMTP id 9F2EA102036\n"
		"\tfor <sysadmin@example.com.ar>; Sat, 28 Nov 2026 06:08:07 +0000 (UTC)\n");
	/* Several recipients: no "for". No HELO: the client name stands in. */
	r.rcpt = NULL;
	r.helo = NULL;
	assert_true(smtp_received_format(&r, out, sizeof(out)) > 0);
	assert_string_equal(out,
		"Received: from localhost (localhost [127.0.0.1])\n"
		"\tby mail.example.com.ar (Postern) with ESMTP id 9F2EA102036; Sat, 28 Nov 2026 06:08:07 +0000 (UTC)\n");
	/* Too small a buffer is an error, not a truncated header. */
	assert_int_equal(smtp_received_format(&r, out, 40), -1);
}

static void
test_received_tls_v6(void **state)
{
	struct smtp_received_info r = {
		.helo = "c", .client_name = "unknown", .client_addr = "::1",
		.myhostname = "mx", .protocol = "ESMTPS", .queue_id = "ABC", .rcpt = "a@b",
		.tls_version = "TLSv1.3", .tls_cipher = "TLS_AES_256_GCM_SHA384", .tls_bits = 256,
		.when = 0,
	};
	char out[1024];

	(void)state;
	setenv("TZ", "UTC", 1);
	assert_true(smtp_received_format(&r, out, sizeof(out)) > 0);
	assert_string_equal(out,
		"Received: from c (unknown [IPv6:::1])\n"
		"\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\n"
		"\tby mx (Postern) with ESMTPS id ABC\n"
		"\tfor <a@b>; Thu, 01 Jan 1970 00:00:00 +0000 (UTC)\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_protocol_names),
		cmocka_unit_test(test_received_plain),
		cmocka_unit_test(test_received_tls_v6),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
