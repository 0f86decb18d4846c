/* The real mbox.so through the loader: its parameters and defaults, the
 * mail_location check reported as FILE:LINE, and the mailstore service it
 * registers delivering with the configured settings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "config_int.h"
#include "confcheck.h"
#include "loader.h"
#include "runtime.h"
#include "postern/services.h"

static const char *
moddir(void)
{
	const char *d = getenv("POSTERN_MODULES");
	return d ? d : "build/modules";
}

static struct pt_config *
load(const char *extra)
{
	char text[4096];
	snprintf(text, sizeof text, "module mbox %s/mbox.so\n%s", moddir(), extra);
	struct pt_config *c = pt_runtime_load_text("test.conf", text, strlen(text));
	assert_non_null(c);
	return c;
}

static void
test_defaults(void **state)
{
	(void)state;
	struct pt_config *c = load("");
	assert_int_equal(pt_config_error_count(c), 0);
	assert_string_equal(pt_conf_str(c, "mail_location"), "mbox:~/mail:INBOX=/var/mail/%u");
	assert_int_equal(pt_conf_int(c, "mailbox_size_limit"), 51200000);
	assert_int_equal(pt_conf_int(c, "mbox_lock_timeout"), 10);
	assert_int_equal(pt_conf_int(c, "mbox_dotlock_stale_time"), 300);
	assert_string_equal(pt_config_owner(c, "mail_location"), "mbox");
	pt_config_free(c);
}

static void
test_bad_mail_location_has_file_and_line(void **state)
{
	(void)state;
	struct pt_config *c = load("myhostname = x.example\nmail_location = mbox:~/mail:INBOX=/var/mail/%x\n");
	assert_true(has_error(c, "test.conf:3: mail_location: INBOX \"/var/mail/%x\": unknown variable %x"));
	pt_config_free(c);
	c = load("mail_location = maildir:~/Maildir\n");
	assert_true(has_error(c, "test.conf:2: mail_location: \"maildir:~/Maildir\" is not an mbox location"));
	pt_config_free(c);
	c = load("mail_location = mbox:~/mail:FOO=bar\n");
	assert_true(has_error(c, "test.conf:2: mail_location: unknown option FOO"));
	pt_config_free(c);
}

/* Load with stderr (where the log goes in tests) captured into out. */
static struct pt_config *
load_capturing(const char *extra, char *out, size_t outlen)
{
	char tmpl[] = "/tmp/test_mbox_module_log_XXXXXX";
	int fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	unlink(tmpl);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	struct pt_config *c = load(extra);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	ssize_t n = pread(fd, out, outlen - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	return c;
}

static void
test_mailbox_limit_below_message_limit_warns(void **state)
{
	(void)state;
	char log[2048];
	struct pt_config *c = load_capturing("message_size_limit = 10240000\nmailbox_size_limit = 1000000\n",
	                                     log, sizeof log);
	assert_int_equal(pt_config_error_count(c), 0);
	assert_non_null(strstr(log, "test.conf:3: mailbox_size_limit is smaller than message_size_limit "
	                            "(1000000 < 10240000)"));
	pt_config_free(c);
	c = load_capturing("message_size_limit = 0\n", log, sizeof log);
	assert_non_null(strstr(log, "(51200000 < no limit)"));
	pt_config_free(c);
	c = load_capturing("message_size_limit = 0\nmailbox_size_limit = 0\n", log, sizeof log);
	assert_null(strstr(log, "mailbox_size_limit"));
	pt_config_free(c);
}

static void
test_service_delivers_with_configured_settings(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_mbox_module_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char extra[512];
	snprintf(extra, sizeof extra,
	         "mail_location = mbox:%s/m:INBOX=%s/%%u\nmailbox_size_limit = 200\n"
	         "message_size_limit = 100\n",
	         dir, dir);
	struct pt_config *c = load(extra);
	assert_int_equal(pt_config_error_count(c), 0);
	struct pt_ctx ctx = { c, NULL, 0, PT_ROLE_DELIVERY };
	assert_int_equal(pt_modules_init(&ctx), 0);
	const struct pt_mailstore_ops *ms = pt_service_get(PT_SVC_MAILSTORE);
	assert_non_null(ms);
	struct pt_user u = { "someone", getuid(), getgid(), "/nonexistent", "" };
	struct pt_delivery d = { "Q", "a@b", "someone@b", NULL, &u, "S: 1\n\nx\n", 9, 1795846087 };
	struct pt_status st;
	ms->deliver(&d, 1, &st);
	assert_int_equal(st.code, 0);
	char path[600];
	snprintf(path, sizeof path, "%s/someone", dir);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	/* mailbox_size_limit = 200 from the file: the next one no longer fits. */
	char big[300];
	memset(big, 'z', sizeof big);
	d.data = big;
	d.len = sizeof big;
	ms->deliver(&d, 1, &st);
	assert_int_equal(st.code, 552);
	assert_string_equal(st.dsn, "5.2.2");
	pt_modules_stop(&ctx);
	unlink(path);
	rmdir(dir);
	pt_config_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_bad_mail_location_has_file_and_line),
		cmocka_unit_test(test_mailbox_limit_below_message_limit_warns),
		cmocka_unit_test(test_service_delivers_with_configured_settings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
