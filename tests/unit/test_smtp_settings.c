/* Unit tests for the smtp module's parameters: Postfix defaults, values,
 * validation of bad values, the reference-counted settings snapshot, and
 * the idle session's memory budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config_int.h"
#include "passdb.h"
#include "smtp/smtp.h"

static struct pt_config *
load(const char *text, int *errors)
{
	struct pt_config *c = pt_config_parse("test.cf", text, strlen(text));

	assert_non_null(c);
	pt_config_declare_core(c);
	pt_config_declare(c, "core", pt_auth_params);
	pt_config_declare(c, "smtp", smtp_params);
	*errors = pt_config_finish(c);
	return c;
}

static void
test_defaults(void **state)
{
	int errors;
	struct pt_config *c = load("myhostname = mail.example.com.ar\n", &errors);
	struct smtp_settings *s;

	(void)state;
	assert_int_equal(errors, 0);
	s = smtp_settings_new(c);
	assert_non_null(s);
	assert_string_equal(s->hostname, "mail.example.com.ar");
	assert_string_equal(s->banner, "mail.example.com.ar ESMTP Postern");
	assert_false(s->helo_required);
	assert_int_equal(s->rcpt_limit, 1000);
	assert_int_equal(s->line_limit, 2048);
	assert_int_equal(s->hard_errors, 20);
	assert_int_equal(s->soft_errors, 10);
	assert_int_equal(s->error_sleep_ms, 1000);
	assert_int_equal(s->timeout_ms, 300000);
	assert_int_equal(s->header_limit, 102400);
	assert_int_equal(s->size_limit, 10240000);
	assert_false(s->bare_reject);
	assert_int_equal(s->tls_level, SMTP_TLS_MAY);
	assert_true(s->tls_auth_only);
	assert_false(s->vrfy_disabled);
	assert_true(s->smtputf8);
	/* AUTH: Dovecot's auth_mechanisms default (plain), Postfix's header default. */
	assert_true(s->sasl_enable);
	assert_true(s->mech_plain);
	assert_false(s->mech_login);
	assert_true(s->plaintext_disabled);
	assert_false(s->auth_header);
	assert_int_equal(s->name_timeout_ms, 3000);
	assert_string_equal(pt_conf_str(c, "smtpd_listen"), "25");
	assert_int_equal(pt_conf_hostports(c, "submission_listen")->v[0].port, 587);
	assert_int_equal(pt_conf_hostports(c, "smtps_listen")->v[0].port, 465);
	smtp_settings_put(s);
	pt_config_free(c);
}

static void
test_values(void **state)
{
	int errors;
	struct pt_config *c = load("myhostname = mx.test\nsmtpd_banner = $myhostname ready\n"
	                           "smtpd_helo_required = yes\nsmtpd_recipient_limit = 5\n"
	                           "smtpd_timeout = 2m\nsmtpd_forbid_bare_newline = yes\n"
	                           "smtpd_tls_security_level = encrypt\nheader_size_limit = 1k\n"
	                           "message_size_limit = 0\ndisable_vrfy_command = yes\n"
	                           "smtpd_error_sleep_time = 3s\n"
	                           "auth_mechanisms = login plain\nsmtpd_sasl_auth_enable = no\n"
	                           "disable_plaintext_auth = no\nsmtpd_sasl_authenticated_header = yes\n"
	                           "smtpd_client_name_timeout = 0\n", &errors);
	struct smtp_settings *s;

	(void)state;
	assert_int_equal(errors, 0);
	s = smtp_settings_new(c);
	assert_string_equal(s->banner, "mx.test ready");
	assert_true(s->helo_required);
	assert_int_equal(s->rcpt_limit, 5);
	assert_int_equal(s->timeout_ms, 120000);
	assert_true(s->bare_reject);
	assert_int_equal(s->tls_level, SMTP_TLS_ENCRYPT);
	assert_int_equal(s->header_limit, 1024);
	assert_int_equal(s->size_limit, 0);
	assert_true(s->vrfy_disabled);
	assert_int_equal(s->error_sleep_ms, 3000);
	assert_false(s->sasl_enable);
	assert_true(s->mech_plain);
	assert_true(s->mech_login);
	assert_false(s->plaintext_disabled);
	assert_true(s->auth_header);
	assert_int_equal(s->name_timeout_ms, 0);
	smtp_settings_put(s);
	pt_config_free(c);

	c = load("myhostname = mx.test\nsmtpd_forbid_bare_newline = no\nsmtpd_tls_security_level = none\n", &errors);
	assert_int_equal(errors, 0);
	s = smtp_settings_new(c);
	assert_false(s->bare_reject);
	assert_int_equal(s->tls_level, SMTP_TLS_NONE);
	smtp_settings_put(s);
	pt_config_free(c);
}

static void
test_bad_values(void **state)
{
	static const char *const bad[] = {
		"smtpd_forbid_bare_newline = sometimes\n",
		"smtpd_tls_security_level = dane\n",
		"smtpd_line_length_limit = 100\n",
		"smtpd_recipient_limit = 0\n",
		"smtpd_helo_required = perhaps\n",
		"smtpd_timeout = forever\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int errors;
		struct pt_config *c = load(bad[i], &errors);
		if (errors == 0)
			fail_msg("accepted: %s", bad[i]);
		assert_non_null(strstr(pt_config_error(c, 0), "test.cf:1:"));
		pt_config_free(c);
	}
}

static void
test_snapshot_refcount(void **state)
{
	int errors;
	struct pt_config *c = load("myhostname = one.test\n", &errors);
	struct smtp_settings *a, *b, *held;

	(void)state;
	a = smtp_settings_new(c);
	smtp_settings_install(a);
	held = smtp_settings_get();          /* a session on the old values */
	assert_ptr_equal(held, a);
	pt_config_free(c);
	c = load("myhostname = two.test\n", &errors);
	b = smtp_settings_new(c);
	smtp_settings_install(b);            /* reload */
	assert_string_equal(held->hostname, "one.test");
	assert_string_equal(smtp_settings_get()->hostname, "two.test");
	smtp_settings_put(b);
	smtp_settings_put(held);             /* last user of the old snapshot */
	smtp_settings_install(NULL);
	pt_config_free(c);
}

static void
test_idle_session_budget(void **state)
{
	(void)state;
	/* The whole idle session (plus its HELO name) stays far below 4 KiB;
	 * envelope and message buffers exist only inside a transaction. */
	assert_true(smtp_session_idle_size() + 256 < 1024);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_snapshot_refcount),
		cmocka_unit_test(test_idle_session_budget),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
