/* The credential cache of lookup-module passdbs (core/passdb_cache.c),
 * through pt_passdb_check with a fake source that counts how often it is
 * asked: the same password is answered from the cache, a different one
 * always reaches the source, refusals for the negative TTL, temporary
 * failures never; no TTL, no cache; a forked process remembers nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "passdb.h"
#include "postern/map.h"

static int asked;
static int down;                 /* the source answers -1 */
static unsigned ttl = 60, negative_ttl = 60;

static void *
fake_open(const char *arg, enum pt_map_format fmt, char *err, size_t errlen)
{
	(void)arg;
	(void)fmt;
	(void)err;
	(void)errlen;
	static int handle;
	return &handle;
}

static void
fake_close(void *h)
{
	(void)h;
}

static char *
fake_lookup(void *h, const char *key, int *tempfail)
{
	(void)h;
	(void)key;
	*tempfail = 0;
	return NULL;
}

static int
fake_check(const char *arg, pt_map_report_fn *report, void *rarg)
{
	(void)arg;
	(void)report;
	(void)rarg;
	return 0;
}

/* "alice" with "current" (or, for "hashed", the stored hash of "current"). */
static int
fake_passdb(void *h, const char *user, const char *password, char **stored, char *host, size_t hostlen,
            char *why, size_t whylen)
{
	(void)h;
	asked++;
	if (down) {
		snprintf(why, whylen, "directory unavailable");
		return -1;
	}
	if (strcmp(user, "alice") != 0) {
		snprintf(why, whylen, "unknown user");
		return 0;
	}
	snprintf(host, hostlen, "mbox1.example");
	if (strcmp(password, "current") == 0)
		return 1;
	snprintf(why, whylen, "password mismatch");
	(void)stored;
	return 0;
}

static void
fake_ttl(void *h, unsigned *t, unsigned *n)
{
	(void)h;
	*t = ttl;
	*n = negative_ttl;
}

static const struct pt_map_type_ops fake_ops = {
	.open = fake_open, .close = fake_close, .lookup = fake_lookup, .check = fake_check,
	.passdb = fake_passdb, .cache_ttl = fake_ttl,
};

static int
check(const char *user, const char *password, char *proxy)
{
	struct pt_passdb_req q = { user, password, "imap", "192.0.2.1" };
	char why[200], p[PT_AUTH_PROXY_MAX];
	int r = pt_passdb_check_proxy("fakecache:x", &q, why, sizeof why, p, sizeof p);
	if (proxy)
		strcpy(proxy, p);
	return r;
}

static int
setup(void **state)
{
	(void)state;
	asked = down = 0;
	ttl = negative_ttl = 60;
	pt_passdb_cache_flush();
	return 0;
}

static void
test_same_password_from_cache(void **state)
{
	char proxy[PT_AUTH_PROXY_MAX];
	(void)state;
	assert_int_equal(check("alice", "current", proxy), 1);
	assert_int_equal(asked, 1);
	assert_string_equal(proxy, "mbox1.example");
	proxy[0] = 0;
	assert_int_equal(check("alice", "current", proxy), 1);
	assert_int_equal(asked, 1);
	/* the proxy destination is remembered with the answer */
	assert_string_equal(proxy, "mbox1.example");
	/* answered from the cache with the source down */
	down = 1;
	assert_int_equal(check("alice", "current", NULL), 1);
	assert_int_equal(asked, 1);
	/* another password is asked, and a temporary failure not remembered */
	assert_int_equal(check("alice", "changed", NULL), -1);
	assert_int_equal(asked, 2);
	assert_int_equal(check("alice", "changed", NULL), -1);
	assert_int_equal(asked, 3);
	/* the user name is part of the key */
	assert_int_equal(check("Alice", "current", NULL), -1);
	assert_int_equal(asked, 4);
}

static void
test_refusals(void **state)
{
	(void)state;
	assert_int_equal(check("alice", "guess", NULL), 0);
	assert_int_equal(check("alice", "guess", NULL), 0);
	assert_int_equal(check("nobody", "guess", NULL), 0);
	assert_int_equal(check("nobody", "guess", NULL), 0);
	assert_int_equal(asked, 2);
	/* a remembered refusal never refuses another password */
	assert_int_equal(check("alice", "current", NULL), 1);
	assert_int_equal(asked, 3);
	assert_int_equal(pt_passdb_cache_count(), 3);
	pt_passdb_cache_flush();
	assert_int_equal(pt_passdb_cache_count(), 0);
	assert_int_equal(check("alice", "guess", NULL), 0);
	assert_int_equal(asked, 4);
}

static void
test_ttls(void **state)
{
	(void)state;
	ttl = negative_ttl = 0;
	assert_int_equal(check("alice", "current", NULL), 1);
	assert_int_equal(check("alice", "current", NULL), 1);
	assert_int_equal(asked, 2);
	assert_int_equal(pt_passdb_cache_count(), 0);
	/* good ones only */
	ttl = 1;
	assert_int_equal(check("alice", "guess", NULL), 0);
	assert_int_equal(check("alice", "guess", NULL), 0);
	assert_int_equal(asked, 4);
	assert_int_equal(check("alice", "current", NULL), 1);
	assert_int_equal(check("alice", "current", NULL), 1);
	assert_int_equal(asked, 5);
	/* expired after its TTL */
	usleep(1100 * 1000);
	assert_int_equal(check("alice", "current", NULL), 1);
	assert_int_equal(asked, 6);
}

static void
test_fork_forgets(void **state)
{
	(void)state;
	assert_int_equal(check("alice", "current", NULL), 1);
	assert_int_equal(asked, 1);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* a process of its own makes its own key: nothing remembered */
		int r = check("alice", "current", NULL);
		_exit(r == 1 && asked == 2 && pt_passdb_cache_count() == 1 ? 0 : 1);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(check("alice", "current", NULL), 1);
	assert_int_equal(asked, 1);
}

int
main(void)
{
	assert_int_equal(pt_map_type_register("fakecache", &fake_ops), 0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_same_password_from_cache, setup),
		cmocka_unit_test_setup(test_refusals, setup),
		cmocka_unit_test_setup(test_ttls, setup),
		cmocka_unit_test_setup(test_fork_forgets, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
