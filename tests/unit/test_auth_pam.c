/* Unit tests for system users: PAM service "postern" and the shadow
 * fallback, with a throwaway user made by useradd and removed afterwards.
 * Needs root; skipped with a message otherwise. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config_int.h"
#include "passdb.h"
#include "postern/event.h"
#include "postern/services.h"

static char user[32];
static int have_user;

static int
sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int
setup(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "test_auth_pam: not root, PAM/shadow tests skipped (need useradd)\n");
		return 0;
	}
	snprintf(user, sizeof user, "ptauth%ld", (long)getpid() % 100000);
	if (sh("useradd -M -N -s /usr/sbin/nologin %s >/dev/null 2>&1", user) != 0 ||
	    sh("echo '%s:Tr0ub4dor&3' | chpasswd", user) != 0) {
		fprintf(stderr, "test_auth_pam: useradd/chpasswd failed, tests skipped\n");
		sh("userdel %s >/dev/null 2>&1", user);
		return 0;
	}
	have_user = 1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	if (have_user)
		sh("userdel %s >/dev/null 2>&1", user);
	return 0;
}

static void
test_pam(void **state)
{
	(void)state;
	if (!have_user)
		skip();
	char why[200];
	struct pt_passdb_req ok = { user, "Tr0ub4dor&3", "imap", "192.0.2.1" };
	struct pt_passdb_req bad = { user, "Tr0ub4dor&4", "imap", "192.0.2.1" };
	struct pt_passdb_req ghost = { "ptnosuchuser", "whatever", "imap", "192.0.2.1" };
	assert_int_equal(pt_passdb_check("pam", &ok, why, sizeof why), 1);
	assert_int_equal(pt_passdb_check("pam", &bad, why, sizeof why), 0);
	assert_int_equal(pt_passdb_check("pam", &ghost, why, sizeof why), 0);
	assert_string_equal(why, "unknown user");
	/* Unknown users cost a hash too, so timing does not reveal them. */
	unsigned long before = pt_ct_compare_count();
	assert_int_equal(pt_passdb_check("pam", &ghost, why, sizeof why), 0);
	assert_true(pt_ct_compare_count() > before);
	struct pt_passdb_req empty = { user, "", "imap", "" };
	assert_int_equal(pt_passdb_check("pam", &empty, why, sizeof why), 0);
	/* Through PAM directly too, with a service file that may not exist
	 * (PAM then uses "other"). */
	assert_int_equal(pt_pam_verify("postern", &ok, why, sizeof why), 1);
	assert_int_equal(pt_pam_verify("postern", &bad, why, sizeof why), 0);
}

static void
test_shadow_fallback(void **state)
{
	(void)state;
	if (!have_user)
		skip();
	char why[200];
	assert_int_equal(pt_shadow_verify(user, "Tr0ub4dor&3", why, sizeof why), 1);
	assert_int_equal(pt_shadow_verify(user, "tr0ub4dor&3", why, sizeof why), 0);
	assert_string_equal(why, "password mismatch");
	assert_int_equal(pt_shadow_verify("ptnosuchuser", "x", why, sizeof why), 0);
	assert_string_equal(why, "unknown user");
	assert_int_equal(pt_shadow_verify(user, "", why, sizeof why), 0);
	/* A locked account never logs in, by either path. */
	assert_int_equal(sh("usermod -L %s", user), 0);
	assert_int_equal(pt_shadow_verify(user, "Tr0ub4dor&3", why, sizeof why), 0);
	assert_string_equal(why, "account locked or without password");
	struct pt_passdb_req ok = { user, "Tr0ub4dor&3", "imap", "" };
	assert_int_equal(pt_passdb_check("pam", &ok, why, sizeof why), 0);
	assert_int_equal(sh("usermod -U %s", user), 0);
	assert_int_equal(pt_passdb_check("pam", &ok, why, sizeof why), 1);
}

static struct pt_loop *loop;
static int answered, result;

static void
on_done(void *arg, int r)
{
	(void)arg;
	answered++;
	result = r;
	pt_loop_stop(loop);
}

static void
watchdog(struct pt_loop *l, void *arg)
{
	*(int *)arg = 1;
	pt_loop_stop(l);
}

static int
verify(const char *pw)
{
	int fired = 0, before = answered;
	const struct pt_auth_ops *ops = pt_service_get(PT_SVC_AUTH);
	assert_int_equal(ops->verify(loop, user, pw, "smtp", "192.0.2.9", on_done, NULL), 0);
	struct pt_timer *wd = pt_timer_add(loop, 30000, watchdog, &fired);
	while (answered == before && !fired)
		pt_loop_run(loop);
	assert_false(fired);
	pt_timer_cancel(loop, wd);
	return result;
}

/* The root agent checks for a worker through PAM. */
static void
test_pam_through_agent(void **state)
{
	(void)state;
	if (!have_user)
		skip();
	const char *text = "passdb = pam\n";
	struct pt_config *c = pt_config_parse("test.conf", text, strlen(text));
	pt_config_declare_core(c);
	if (!pt_config_owner(c, "auth_failure_delay"))
		pt_config_declare(c, "auth", pt_auth_params);
	assert_int_equal(pt_config_finish(c), 0);
	int fd;
	pid_t pid = pt_auth_agent_spawn(c, &fd);
	assert_true(pid > 0);
	loop = pt_loop_new();
	assert_int_equal(pt_auth_configure("pam", 0, 0), 0);
	pt_auth_set_agent_fd(fd);
	assert_int_equal(verify("Tr0ub4dor&3"), 1);
	assert_int_equal(verify("wrong"), 0);
	pt_auth_set_agent_fd(-1);
	close(fd);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	pt_auth_shutdown();
	pt_loop_free(loop);
	pt_config_free(c);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pam),
		cmocka_unit_test(test_shadow_fallback),
		cmocka_unit_test(test_pam_through_agent),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
