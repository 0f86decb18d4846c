/* The real mbox.so through the loader registers the mailbox service in
 * the mail process, and it uses the configured mail_location. */
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
#include "loader.h"
#include "runtime.h"
#include "postern/mailbox.h"
#include "postern/services.h"

static void
test_mailbox_service_uses_configured_location(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_mstore_mod_XXXXXX";
	assert_non_null(mkdtemp(dir));
	const char *mods = getenv("POSTERN_MODULES");
	char text[1024];
	snprintf(text, sizeof text, "module mbox %s/mbox.so\nmail_location = mbox:%s/m:INBOX=%s/%%u\n",
	         mods ? mods : "build/modules", dir, dir);
	struct pt_config *c = pt_runtime_load_text("test.conf", text, strlen(text));
	assert_non_null(c);
	assert_int_equal(pt_config_error_count(c), 0);
	struct pt_ctx ctx = { c, NULL, 0, PT_ROLE_MAIL };
	assert_int_equal(pt_modules_init(&ctx), 0);
	const struct pt_mailbox_ops *ops = pt_service_get(PT_SVC_MAILBOX);
	assert_non_null(ops);
	struct pt_user u = { "someone", getuid(), getgid(), "/nonexistent", "" };
	struct pt_status st;
	struct pt_mstore *ms = ops->store_open(&u, &st);
	assert_non_null(ms);
	struct pt_append ap = { "Subject: x\r\n\r\nhi\r\n", 18, 0, NULL, 0, 0, 0 };
	uint32_t v, uid;
	assert_int_equal(ops->append(ms, "INBOX", &ap, 1, &v, &uid, &st), 0);
	assert_int_equal(uid, 1);
	assert_int_equal(ops->create(ms, "Sent", &st), 0);
	ops->store_close(ms);
	char path[600];
	struct stat sb;
	snprintf(path, sizeof path, "%s/someone", dir);
	assert_int_equal(stat(path, &sb), 0);
	snprintf(path, sizeof path, "%s/m/Sent", dir);
	assert_int_equal(stat(path, &sb), 0);
	pt_modules_stop(&ctx);
	pt_config_free(c);
	char cmd[200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mailbox_service_uses_configured_location),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
