/* Unit tests for the restrict module's address work: splitting with quotes
 * and source routes, HELO name syntax as Postfix judges it, FQDN tests,
 * and the relay test against every sender-specified routing trick. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config_int.h"
#include "runtime.h"
#include "restrict/restrict.h"

static struct pt_config *conf;

static void
test_split(void **state)
{
	(void)state;
	char local[300], domain[300];
	int has;
	assert_int_equal(restrict_addr_split("Alice@Example.COM.AR", local, sizeof local, domain,
	                                     sizeof domain, &has), 0);
	assert_string_equal(local, "Alice");
	assert_string_equal(domain, "example.com.ar");
	assert_int_equal(has, 1);
	/* quoted local part with @ inside: the last unquoted @ splits */
	assert_int_equal(restrict_addr_split("\"victim@other.test\"@example.com.ar", local,
	                                     sizeof local, domain, sizeof domain, &has), 0);
	assert_string_equal(local, "victim@other.test");
	assert_string_equal(domain, "example.com.ar");
	/* escaped quote inside a quoted string */
	assert_int_equal(restrict_addr_split("\"a\\\"b\"@x.test", local, sizeof local, domain,
	                                     sizeof domain, &has), 0);
	assert_string_equal(local, "a\"b");
	/* source route dropped */
	assert_int_equal(restrict_addr_split("@a.test,@b.test:user@c.test", local, sizeof local,
	                                     domain, sizeof domain, &has), 0);
	assert_string_equal(local, "user");
	assert_string_equal(domain, "c.test");
	/* one trailing dot dropped */
	assert_int_equal(restrict_addr_split("u@d.test.", local, sizeof local, domain, sizeof domain,
	                                     &has), 0);
	assert_string_equal(domain, "d.test");
	/* no domain */
	assert_int_equal(restrict_addr_split("postmaster", local, sizeof local, domain,
	                                     sizeof domain, &has), 0);
	assert_int_equal(has, 0);
	assert_string_equal(local, "postmaster");
	/* malformed: unbalanced quote, route without colon, too long for out */
	assert_int_equal(restrict_addr_split("\"abc@x.test", local, sizeof local, domain,
	                                     sizeof domain, &has), -1);
	assert_int_equal(restrict_addr_split("@a.test,@b.test", local, sizeof local, domain,
	                                     sizeof domain, &has), -1);
	char small[4];
	assert_int_equal(restrict_addr_split("abcdef@x", small, sizeof small, domain, sizeof domain,
	                                     &has), -1);
}

static void
test_helo_names(void **state)
{
	(void)state;
	/* Postfix 3.7 answers recorded in reference/ */
	assert_int_equal(restrict_helo_invalid("bad..host"), 1);
	assert_int_equal(restrict_helo_invalid("-bad.example.com.ar"), 1);
	assert_int_equal(restrict_helo_invalid("bad!host"), 1);
	assert_int_equal(restrict_helo_invalid("[999.1.1.1]"), 2);
	assert_int_equal(restrict_helo_invalid("bad_host.example.com.ar"), 0);
	assert_int_equal(restrict_helo_invalid("1.2.3.4"), 0);
	assert_int_equal(restrict_helo_invalid("localhost"), 0);
	assert_int_equal(restrict_helo_invalid("[127.0.0.2]"), 0);
	/* more of valid_hostname's rules */
	assert_int_equal(restrict_helo_invalid("host.example."), 0);
	assert_int_equal(restrict_helo_invalid("host.example.."), 1);
	assert_int_equal(restrict_helo_invalid(".host"), 1);
	assert_int_equal(restrict_helo_invalid("host-.example"), 1);
	assert_int_equal(restrict_helo_invalid("999.1.1.1"), 1);
	assert_int_equal(restrict_helo_invalid("[IPv6:::1]"), 0);
	assert_int_equal(restrict_helo_invalid("[IPv6:zz]"), 2);
	assert_int_equal(restrict_helo_invalid("[1.2.3.4"), 2);
	char label[80];
	memset(label, 'a', 64);
	label[64] = '\0';
	assert_int_equal(restrict_helo_invalid(label), 1);
	label[63] = '\0';
	assert_int_equal(restrict_helo_invalid(label), 0);
	char longname[400];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	for (size_t i = 50; i < sizeof longname - 1; i += 51)
		longname[i] = '.';
	assert_int_equal(restrict_helo_invalid(longname), 1);
}

static void
test_fqdn(void **state)
{
	(void)state;
	assert_true(restrict_helo_fqdn("mail.example.com"));
	assert_true(restrict_helo_fqdn("[192.0.2.1]"));
	assert_true(restrict_helo_fqdn("192.0.2.1"));
	assert_false(restrict_helo_fqdn("localhost"));
	assert_false(restrict_helo_fqdn("bad..host"));
	assert_true(restrict_addr_fqdn("a@example.com"));
	assert_true(restrict_addr_fqdn("a@[192.0.2.1]"));
	assert_false(restrict_addr_fqdn("a@localhost"));
	assert_false(restrict_addr_fqdn("nodomain"));
	assert_false(restrict_addr_fqdn("a@[300.1.1.1]"));
}

static void
test_relay_controls(void **state)
{
	(void)state;
	/* ours: local domains (any case, one trailing dot), no domain, relay domains */
	assert_true(restrict_rcpt_is_authorized("alice@example.com.ar"));
	assert_true(restrict_rcpt_is_authorized("alice@EXAMPLE.COM.AR"));
	assert_true(restrict_rcpt_is_authorized("alice@example.com.ar."));
	assert_true(restrict_rcpt_is_authorized("alice"));
	assert_true(restrict_rcpt_is_authorized("alice@relay.test"));
	assert_true(restrict_rcpt_is_authorized("alice@sub.relay.test"));
	/* a percent hack that ends at home is fine, as in Postfix */
	assert_true(restrict_rcpt_is_authorized("alice%example.com.ar@example.com.ar"));
	/* a source route through elsewhere to us is ignored: stays here */
	assert_true(restrict_rcpt_is_authorized("@other.test:alice@example.com.ar"));
}

static void
test_relay_tricks(void **state)
{
	(void)state;
	static const char *const tricks[] = {
		"victim@other.test",
		"victim@OTHER.TEST",
		"victim@other.test.",
		"victim@other.test..",
		"victim%other.test@example.com.ar",
		"victim%other.test@EXAMPLE.COM.AR",
		"victim%other.test@example.com.ar.",
		"victim%other.test",
		"other.test!victim@example.com.ar",
		"other.test!victim",
		"@example.com.ar:victim@other.test",
		"@example.com.ar,@relay.test:victim@other.test",
		"\"victim@other.test\"@example.com.ar",
		"\"victim%other.test\"@example.com.ar",
		"\"other.test!victim\"@example.com.ar",
		"victim@other.test@example.com.ar",
		"victim@other.test@EXAMPLE.COM.AR.",
		"a%b%victim@other.test",
		"victim%other.test%example.com.ar@example.com.ar",
		"x!other.test!victim@example.com.ar",
		/* untrusted routing through a relay domain (allow_untrusted_routing = no) */
		"victim%other.test@relay.test",
		"other.test!victim@relay.test",
		"\"victim@other.test\"@relay.test",
		/* literals and odd domains are never ours */
		"victim@[192.0.2.1]",
		"victim@",
		"victim@.example.com.ar",
		"victim@example.com.ar\"",
		"victim@exa mple.com.ar",
		"\"unbalanced@example.com.ar",
		"",
	};
	for (size_t i = 0; i < sizeof tricks / sizeof tricks[0]; i++) {
		if (restrict_rcpt_is_authorized(tricks[i]))
			fail_msg("relay trick accepted: %s", tricks[i]);
	}
	assert_false(restrict_rcpt_is_authorized(NULL));
}

static int
setup(void **state)
{
	(void)state;
	static const char text[] =
		"mydestination = example.com.ar, localhost\n"
		"relay_domains = relay.test\n";
	conf = pt_config_parse("test.conf", text, sizeof text - 1);
	if (!conf || pt_config_declare_core(conf) != 0 || pt_config_finish(conf) != 0)
		return -1;
	pt_live_conf = conf;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	pt_live_conf = NULL;
	pt_config_free(conf);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_helo_names),
		cmocka_unit_test(test_fqdn),
		cmocka_unit_test(test_relay_controls),
		cmocka_unit_test(test_relay_tricks),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
