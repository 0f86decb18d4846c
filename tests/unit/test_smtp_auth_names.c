/* Unit tests for the pure pieces behind AUTH and client names: hosts(5)
 * lookups in both directions, which PTR answers may name a client,
 * address comparison, and the Received header of an authenticated
 * client (smtpd_sasl_authenticated_header). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/smtp_client_name.h"
#include "smtp/smtp_received.h"

static const char hosts[] =
	"# comment line 10.0.0.1 nothere\n"
	"127.0.0.1\tlocalhost\n"
	"127.0.1.1 box.example.test box   # trailing comment\n"
	"\n"
	"   \t\n"
	"10.1.2.3 first.example.test\n"
	"10.1.2.3 second.example.test\n"
	"::1 ip6-localhost ip6-loopback\n"
	"2001:db8::5 six.example.test\r\n"
	"not-an-address name.example.test\n"
	"192.0.2.7";                  /* no name, no newline */

static void
test_hosts_reverse(void **state)
{
	char out[SMTP_NAME_MAX];

	(void)state;
	assert_int_equal(smtp_hosts_name(hosts, strlen(hosts), "127.0.0.1", out, sizeof(out)), 1);
	assert_string_equal(out, "localhost");
	assert_int_equal(smtp_hosts_name(hosts, strlen(hosts), "127.0.1.1", out, sizeof(out)), 1);
	assert_string_equal(out, "box.example.test");
	/* The first line for an address wins, as getnameinfo's files source. */
	assert_int_equal(smtp_hosts_name(hosts, strlen(hosts), "10.1.2.3", out, sizeof(out)), 1);
	assert_string_equal(out, "first.example.test");
	/* Compared as addresses, not text. */
	assert_int_equal(smtp_hosts_name(hosts, strlen(hosts), "0:0:0::1", out, sizeof(out)), 1);
	assert_string_equal(out, "ip6-localhost");
	assert_int_equal(smtp_hosts_name(hosts, strlen(hosts), "2001:DB8:0::5", out, sizeof(out)), 1);
	assert_string_equal(out, "six.example.test");
	/* Not listed, commented out, or a line without a name. */
	assert_int_equal(smtp_hosts_name(hosts, strlen(hosts), "10.0.0.1", out, sizeof(out)), 0);
	assert_int_equal(smtp_hosts_name(hosts, strlen(hosts), "192.0.2.7", out, sizeof(out)), 0);
	assert_int_equal(smtp_hosts_name(hosts, strlen(hosts), "127.0.0.2", out, sizeof(out)), 0);
	/* A name longer than the buffer is not cut short into another name. */
	assert_int_equal(smtp_hosts_name(hosts, strlen(hosts), "127.0.1.1", out, 5), 0);
	/* Only the given length is read. */
	assert_int_equal(smtp_hosts_name(hosts, 10, "127.0.0.1", out, sizeof(out)), 0);
	assert_int_equal(smtp_hosts_name("", 0, "127.0.0.1", out, sizeof(out)), 0);
}

static void
test_hosts_forward(void **state)
{
	(void)state;
	assert_true(smtp_hosts_has(hosts, strlen(hosts), "box", "127.0.1.1"));
	assert_true(smtp_hosts_has(hosts, strlen(hosts), "BOX.example.TEST", "127.0.1.1"));
	assert_true(smtp_hosts_has(hosts, strlen(hosts), "second.example.test", "10.1.2.3"));
	assert_true(smtp_hosts_has(hosts, strlen(hosts), "ip6-loopback", "::1"));
	assert_false(smtp_hosts_has(hosts, strlen(hosts), "box", "127.0.0.1"));
	assert_false(smtp_hosts_has(hosts, strlen(hosts), "trailing", "127.0.1.1"));
	assert_false(smtp_hosts_has(hosts, strlen(hosts), "name.example.test", "127.0.0.1"));
}

static void
test_name_valid(void **state)
{
	static const char *const good[] = {
		"localhost", "mail.example.com", "a-b.example", "x_y.example", "1a.example",
		"123.example.com", "a.b.c.d.e.f",
	};
	static const char *const bad[] = {
		"", ".", "a..b", ".a", "a.", "-a.example", "a-.example", "a b", "a\nb", "1.2.3.4",
		"::1", "127.0.0.1", "exa$mple.com", "unknown[1.2.3.4]",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(smtp_client_name_valid(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(smtp_client_name_valid(bad[i]));
}

static void
test_addr_equal(void **state)
{
	(void)state;
	assert_true(smtp_addr_equal("127.0.0.1", "127.0.0.1"));
	assert_true(smtp_addr_equal("::ffff:127.0.0.1", "127.0.0.1"));
	assert_true(smtp_addr_equal("2001:db8::1", "2001:0DB8:0:0::1"));
	assert_false(smtp_addr_equal("127.0.0.1", "127.0.0.2"));
	assert_false(smtp_addr_equal("127.0.0.1", "localhost"));
	assert_false(smtp_addr_equal(NULL, "127.0.0.1"));
}

static void
test_received_authenticated(void **state)
{
	struct smtp_received_info r = {
		.helo = "laptop", .client_name = "unknown", .client_addr = "192.0.2.9",
		.myhostname = "mail.example.com.ar", .protocol = "ESMTPSA", .queue_id = "1A2B3C",
		.rcpt = "bob@example.com.ar", .auth_sender = "alice", .when = 1795846087,
		.tls_version = "TLSv1.3", .tls_cipher = "TLS_AES_256_GCM_SHA384", .tls_bits = 256,
	};
	char out[1024];

	(void)state;
	setenv("TZ", "UTC", 1);
	assert_true(smtp_received_format(&r, out, sizeof(out)) > 0);
	assert_string_equal(out,
		"Received: from laptop (unknown [192.0.2.9])\n"
		"\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\n"
		"\t(Authenticated sender: alice)\n"
		"\tby mail.example.com.ar (Postern) with ESMTPSA id 1A2B3C\n"
		"\tfor <bob@example.com.ar>; Sat, 28 Nov 2026 06:08:07 +0000 (UTC)\n");
	r.auth_sender = NULL;
	assert_true(smtp_received_format(&r, out, sizeof(out)) > 0);
	assert_null(strstr(out, "Authenticated sender"));
	assert_non_null(strstr(out, "with ESMTPSA id 1A2B3C"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hosts_reverse),
		cmocka_unit_test(test_hosts_forward),
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_addr_equal),
		cmocka_unit_test(test_received_authenticated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
