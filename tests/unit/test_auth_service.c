/* Unit tests for the PT_SVC_AUTH service on a real event loop: checks on
 * the pool and through the auth agent, one answer for unknown users and
 * wrong passwords, the delays asked of the timer (fake clock: recorded,
 * not waited for), failure log lines without passwords, the agent's wire
 * format, and a dead agent giving temporary failures. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config_int.h"
#include "log_int.h"
#include "passdb.h"
#include "passwd_file.h"
#include "postern/event.h"
#include "postern/services.h"

static struct pt_loop *loop;
static char dir[64], users[128], logpath[128];

/* Fake clock and a timer that records the delay and fires at once. */
static uint64_t fake_now = 1000000;
static uint64_t asked[64];
static int nasked;

static uint64_t
fake_clock(struct pt_loop *l)
{
	(void)l;
	return fake_now;
}

static struct pt_timer *
record_timer(struct pt_loop *l, uint64_t ms, void (*cb)(struct pt_loop *, void *), void *arg)
{
	if (nasked < 64)
		asked[nasked++] = ms;
	return pt_timer_add(l, 0, cb, arg);
}

static const struct pt_auth_hooks hooks = { fake_clock, record_timer, pt_timer_cancel };

static int answered, last_result, by_result[3];

static void
on_done(void *arg, int result)
{
	(void)arg;
	answered++;
	by_result[result + 1]++;
	last_result = result;
	pt_loop_stop(loop);
}

static int wd_fired;

static void
watchdog(struct pt_loop *l, void *arg)
{
	(void)arg;
	wd_fired = 1;
	pt_loop_stop(l);
}

/* Runs the loop until `target` answers arrived (or the watchdog). */
static void
run_until(int target)
{
	while (answered < target) {
		wd_fired = 0;
		struct pt_timer *wd = pt_timer_add(loop, 20000, watchdog, NULL);
		pt_loop_run(loop);
		if (wd_fired)
			fail_msg("no answer within 20 s");
		pt_timer_cancel(loop, wd);
	}
}

/* One verify, run until answered (or a 20 s real-time watchdog). */
static int
verify(const char *user, const char *password, const char *rip)
{
	const struct pt_auth_ops *ops = pt_service_get(PT_SVC_AUTH);
	assert_non_null(ops);
	nasked = 0;
	int before = answered;
	assert_int_equal(ops->verify(loop, user, password, "smtp", rip, on_done, NULL), 0);
	/* done() never runs inside verify() */
	assert_int_equal(answered, before);
	run_until(before + 1);
	return last_result;
}

static char *
read_log(void)
{
	static char buf[65536];
	FILE *f = fopen(logpath, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/pt-authsvc-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(users, sizeof users, "%s/users", dir);
	snprintf(logpath, sizeof logpath, "%s/log", dir);
	FILE *f = fopen(users, "w");
	assert_non_null(f);
	fputs("alice:{PLAIN}wonderland:1000:1000::/home/alice\n"
	      "bob:{SHA512-CRYPT}$6$pt.salt1$1O84qijyeyJEZX63ww.XT2TPzxqeVnP2bOtfhjnONXfEm9Fw"
	      "Jyfx4wjtudIyXhwn2zTBFzzt41ZvEvK49ziU7/\n"
	      "nopass\n", f);
	fclose(f);
	assert_int_equal(pt_log_open(logpath), 0);
	loop = pt_loop_new();
	assert_non_null(loop);
	pt_auth_set_hooks(&hooks);
	char spec[200];
	snprintf(spec, sizeof spec, "passwd-file:%s", users);
	assert_int_equal(pt_auth_configure(spec, 2000, 1), 0);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	pt_auth_shutdown();
	pt_auth_set_hooks(NULL);
	pt_log_close();
	pt_loop_free(loop);
	pt_passwd_file_cache_clear();
	unlink(users);
	unlink(logpath);
	rmdir(dir);
	return 0;
}

static void
test_pool_good_and_bad(void **state)
{
	(void)state;
	assert_int_equal(verify("alice", "wonderland", "192.0.2.10"), 1);
	assert_int_equal(nasked, 0);  /* success: no waiting */
	assert_int_equal(verify("Alice", "wonderland", "192.0.2.10"), 1);

	/* Wrong password and unknown user: the same answer after the same
	 * delay; only the log line tells them apart. */
	assert_int_equal(verify("alice", "Wonderland", "192.0.2.11"), 0);
	assert_int_equal(nasked, 1);
	assert_int_equal(asked[0], 2000);
	assert_int_equal(verify("nosuchuser", "guess-1234", "192.0.2.12"), 0);
	assert_int_equal(nasked, 1);
	assert_int_equal(asked[0], 2000);
	assert_int_equal(verify("nopass", "anything", "192.0.2.13"), 0);
	assert_int_equal(verify("alice", "", "192.0.2.14"), 0);

	char *log = read_log();
	assert_non_null(strstr(log, "auth failed: user=<alice>, rip=192.0.2.11, service=smtp: password mismatch"));
	assert_non_null(strstr(log, "auth failed: user=<nosuchuser>, rip=192.0.2.12, service=smtp: unknown user"));
	assert_non_null(strstr(log, "auth failed: user=<nopass>, rip=192.0.2.13"));
	assert_non_null(strstr(log, "auth failed: user=<alice>, rip=192.0.2.14, service=smtp: empty password"));
	/* Never a password in the log. */
	assert_null(strstr(log, "Wonderland"));
	assert_null(strstr(log, "wonderland"));
	assert_null(strstr(log, "guess-1234"));
	assert_null(strstr(log, "anything"));
}

static void
test_crypt_user_on_pool(void **state)
{
	(void)state;
	assert_int_equal(verify("bob", "builder", "192.0.2.20"), 1);
	assert_int_equal(verify("bob", "bulder", "192.0.2.20"), 0);
}

/* The tenth bad attempt from one address waits: each attempt is held
 * 0, 2, 4, 8, 15, 15... s before its check, then failures wait 2 s more. */
static void
test_throttle_through_service(void **state)
{
	(void)state;
	static const uint64_t hold[] = { 0, 2000, 4000, 8000, 15000, 15000, 15000, 15000, 15000, 15000 };
	for (int i = 0; i < 10; i++) {
		assert_int_equal(verify("alice", "bad", "198.51.100.1"), 0);
		if (hold[i]) {
			assert_int_equal(nasked, 2);
			assert_int_equal(asked[0], hold[i]);
			assert_int_equal(asked[1], 2000);
		} else {
			assert_int_equal(nasked, 1);
			assert_int_equal(asked[0], 2000);
		}
		fake_now += 1000;
	}
	assert_int_equal(pt_throttle_failures(pt_auth_throttle(), "198.51.100.1", fake_now), 10);
	/* Another address is not held. */
	assert_int_equal(verify("alice", "wonderland", "198.51.100.2"), 1);
	assert_int_equal(nasked, 0);
	/* The right password is held too (no oracle), then clears the count. */
	assert_int_equal(verify("alice", "wonderland", "198.51.100.1"), 1);
	assert_int_equal(nasked, 1);
	assert_int_equal(asked[0], 15000);
	assert_int_equal(verify("alice", "wonderland", "198.51.100.1"), 1);
	assert_int_equal(nasked, 0);
	/* An hour later the address starts over. */
	assert_int_equal(verify("alice", "bad", "198.51.100.3"), 0);
	fake_now += PT_THROTTLE_EXPIRE_MS;
	assert_int_equal(verify("alice", "bad", "198.51.100.3"), 0);
	assert_int_equal(nasked, 1);
}

static void
test_settings(void **state)
{
	(void)state;
	char spec[200];
	snprintf(spec, sizeof spec, "passwd-file:%s", users);
	/* auth_throttle = no, auth_failure_delay = 0 */
	assert_int_equal(pt_auth_configure(spec, 0, 0), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(verify("alice", "bad", "203.0.113.1"), 0);
		assert_int_equal(nasked, 1);
		assert_int_equal(asked[0], 0);
	}
	assert_int_equal(pt_throttle_failures(pt_auth_throttle(), "203.0.113.1", fake_now), 0);
	assert_int_equal(pt_auth_configure("ldap:whatever", 0, 0), -1);
	assert_int_equal(pt_auth_configure(spec, 2000, 1), 0);
	/* Oversize input: a plain failure after the usual delay. */
	char big[2000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(verify("alice", big, "203.0.113.2"), 0);
	assert_int_equal(asked[0], 2000);
	assert_int_equal(verify(big, "pw", "203.0.113.3"), 0);
}

/* ---- issue #11 items 8 and 9 ---- */

/* Timers at 1/50 of the asked delay in real time, so the order of
 * answers follows the delays. */
static struct pt_timer *
scaled_timer(struct pt_loop *l, uint64_t ms, void (*cb)(struct pt_loop *, void *), void *arg)
{
	if (nasked < 64)
		asked[nasked++] = ms;
	return pt_timer_add(l, ms / 50, cb, arg);
}

static const struct pt_auth_hooks scaled_hooks = { fake_clock, scaled_timer, pt_timer_cancel };

static int order[16], norder;

static void
on_done_tagged(void *arg, int result)
{
	(void)result;
	if (norder < 16)
		order[norder++] = (int)(intptr_t)arg;
	answered++;
	by_result[result + 1]++;
	if (answered >= 6)
		pt_loop_stop(loop);
}

/* Parallel attempts from one address wait in line: each starts only
 * after the previous answer, so the throttle's hold grows with every
 * failure (without the line all five were held 0 s, side by side: five
 * guesses per auth_failure_delay). Another address is not slowed. */
static void
test_parallel_attempts_wait_in_line(void **state)
{
	const struct pt_auth_ops *ops = pt_service_get(PT_SVC_AUTH);
	(void)state;
	pt_auth_set_hooks(&scaled_hooks);
	nasked = norder = answered = 0;
	for (int i = 1; i <= 5; i++)
		assert_int_equal(ops->verify(loop, "alice", "guess", "imap", "198.51.100.77", on_done_tagged,
		                             (void *)(intptr_t)i), 0);
	assert_int_equal(ops->verify(loop, "alice", "wonderland", "imap", "198.51.100.78", on_done_tagged,
	                             (void *)(intptr_t)9), 0);
	run_until(6);
	pt_auth_set_hooks(&hooks);
	/* The good login from elsewhere first, then the line in order. */
	assert_int_equal(norder, 6);
	assert_int_equal(order[0], 9);
	for (int i = 1; i <= 5; i++)
		assert_int_equal(order[i], i);
	/* fail, hold 2 s, fail, hold 4 s, fail, hold 8 s, fail, hold 15 s, fail */
	static const uint64_t want[] = { 2000, 2000, 2000, 4000, 2000, 8000, 2000, 15000, 2000 };
	assert_int_equal(nasked, 9);
	for (int i = 0; i < 9; i++)
		assert_int_equal(asked[i], want[i]);
	assert_int_equal(pt_throttle_failures(pt_auth_throttle(), "198.51.100.77", fake_now), 5);
}

/* Clock that moves `tick` ms at every reading: a check "costs" one tick. */
static uint64_t tick;

static uint64_t
ticking_clock(struct pt_loop *l)
{
	(void)l;
	fake_now += tick;
	return fake_now;
}

static const struct pt_auth_hooks ticking_hooks = { ticking_clock, record_timer, pt_timer_cancel };

/* A failure is answered auth_failure_delay after its check began: what
 * the check cost is taken off the delay, for an unknown user and a
 * wrong password alike (the ~30 ms difference of the issue cannot show). */
static void
test_failure_due_from_check_start(void **state)
{
	(void)state;
	pt_auth_set_hooks(&ticking_hooks);
	static const uint64_t ticks[] = { 0, 30, 700, 5000 };
	for (size_t i = 0; i < sizeof ticks / sizeof ticks[0]; i++) {
		char rip[32];
		tick = ticks[i];
		uint64_t want = tick < 2000 ? 2000 - tick : 0;
		snprintf(rip, sizeof rip, "192.0.2.%zu", 100 + 2 * i);
		assert_int_equal(verify("alice", "Wonderland", rip), 0);
		assert_int_equal(nasked, 1);
		assert_int_equal(asked[0], want);
		snprintf(rip, sizeof rip, "192.0.2.%zu", 101 + 2 * i);
		assert_int_equal(verify("nosuchuser", "Wonderland", rip), 0);
		assert_int_equal(nasked, 1);
		assert_int_equal(asked[0], want);
	}
	tick = 0;
	pt_auth_set_hooks(&hooks);
}

/* Clients that hang up while waiting cannot pile up requests: past
 * LINE_MAX_PER_ADDR waiting, more are failed without a check. */
static void
test_line_is_bounded(void **state)
{
	const struct pt_auth_ops *ops = pt_service_get(PT_SVC_AUTH);
	(void)state;
	pt_auth_set_hooks(&scaled_hooks);
	answered = 0;
	memset(by_result, 0, sizeof by_result);
	/* 40 at once, the right password: 32 wait in line, 8 are refused. */
	for (int i = 0; i < 40; i++)
		assert_int_equal(ops->verify(loop, "alice", "wonderland", "imap", "198.51.100.90", on_done, NULL), 0);
	run_until(40);
	pt_auth_set_hooks(&hooks);
	assert_int_equal(by_result[2], 32);
	assert_int_equal(by_result[1], 8);
	assert_non_null(strstr(read_log(), "too many attempts waiting from this address"));

	/* auth_max_waiting_per_address: a webmail or NAT address may be
	 * given a longer line. */
	pt_auth_set_line_max(45);
	pt_auth_set_hooks(&scaled_hooks);
	answered = 0;
	memset(by_result, 0, sizeof by_result);
	for (int i = 0; i < 50; i++)
		assert_int_equal(ops->verify(loop, "alice", "wonderland", "imap", "198.51.100.91", on_done, NULL), 0);
	run_until(50);
	pt_auth_set_hooks(&hooks);
	pt_auth_set_line_max(32);
	assert_int_equal(by_result[2], 45);
	assert_int_equal(by_result[1], 5);
}

static struct pt_config *
conf_for(const char *passdb)
{
	char text[300];
	snprintf(text, sizeof text, "passdb = %s\n", passdb);
	struct pt_config *c = pt_config_parse("test.conf", text, strlen(text));
	pt_config_declare_core(c);
	if (!pt_config_owner(c, "auth_failure_delay"))
		pt_config_declare(c, "auth", pt_auth_params);
	assert_int_equal(pt_config_finish(c), 0);
	return c;
}

/* pt_auth_init reads its settings from the config, with or without the
 * auth table declared (defaults then). */
static void
test_init_from_config(void **state)
{
	(void)state;
	char text[400];
	snprintf(text, sizeof text, "passdb = passwd-file:%s\nauth_failure_delay = 0\nauth_throttle = no\n", users);
	struct pt_config *c = pt_config_parse("test.conf", text, strlen(text));
	pt_config_declare_core(c);
	if (!pt_config_owner(c, "auth_failure_delay"))
		pt_config_declare(c, "auth", pt_auth_params);
	assert_int_equal(pt_config_finish(c), 0);
	assert_int_equal(pt_auth_init(c), 0);
	assert_int_equal(verify("alice", "bad", "203.0.113.50"), 0);
	assert_int_equal(nasked, 1);
	assert_int_equal(asked[0], 0);
	assert_int_equal(pt_throttle_failures(pt_auth_throttle(), "203.0.113.50", fake_now), 0);
	pt_config_free(c);

	snprintf(text, sizeof text, "passdb = passwd-file:%s\n", users);
	c = pt_config_parse("test.conf", text, strlen(text));
	pt_config_declare_core(c);
	assert_int_equal(pt_config_finish(c), 0);
	assert_int_equal(pt_auth_init(c), 0);
	assert_int_equal(verify("alice", "bad", "203.0.113.51"), 0);
	assert_int_equal(asked[0], 2000);
	assert_int_equal(pt_throttle_failures(pt_auth_throttle(), "203.0.113.51", fake_now), 1);
	pt_config_free(c);
}

static void
test_agent(void **state)
{
	(void)state;
	char spec[200];
	snprintf(spec, sizeof spec, "passwd-file:%s", users);
	struct pt_config *c = conf_for(spec);
	int fd = -1;
	pid_t pid = pt_auth_agent_spawn(c, &fd);
	assert_true(pid > 0);
	assert_true(fd >= 0);
	pt_auth_set_agent_fd(fd);
	assert_int_equal(verify("alice", "wonderland", "192.0.2.30"), 1);
	assert_int_equal(verify("bob", "builder", "192.0.2.30"), 1);
	assert_int_equal(verify("alice", "nope", "192.0.2.31"), 0);
	assert_int_equal(verify("ghost", "nope", "192.0.2.32"), 0);
	/* Several at once: answers match their requests. */
	const struct pt_auth_ops *ops = pt_service_get(PT_SVC_AUTH);
	int before = answered;
	memset(by_result, 0, sizeof by_result);
	for (int i = 0; i < 6; i++) {
		ops->verify(loop, "alice", i % 2 ? "wonderland" : "bad", "imap", "192.0.2.33", on_done, NULL);
	}
	run_until(before + 6);
	assert_int_equal(by_result[2], 3);
	assert_int_equal(by_result[1], 3);
	char *log = read_log();
	assert_non_null(strstr(log, "user=<ghost>, rip=192.0.2.32, service=smtp: unknown user"));
	assert_null(strstr(log, "nope"));
	/* The agent exits when its socket closes. */
	pt_auth_set_agent_fd(-1);
	close(fd);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	pt_config_free(c);
}

static void
test_agent_dies(void **state)
{
	(void)state;
	char spec[200];
	snprintf(spec, sizeof spec, "passwd-file:%s", users);
	struct pt_config *c = conf_for(spec);
	int fd = -1;
	pid_t pid = pt_auth_agent_spawn(c, &fd);
	assert_true(pid > 0);
	pt_auth_set_agent_fd(fd);
	assert_int_equal(verify("alice", "wonderland", "192.0.2.40"), 1);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	/* No hang, no false success: a temporary failure, at once. */
	assert_int_equal(verify("alice", "wonderland", "192.0.2.40"), -1);
	assert_int_equal(nasked, 0);
	assert_int_equal(verify("alice", "wonderland", "192.0.2.40"), -1);
	assert_non_null(strstr(read_log(), "auth agent"));
	pt_auth_set_agent_fd(-1);
	close(fd);
	/* Back on the pool. */
	assert_int_equal(verify("alice", "wonderland", "192.0.2.40"), 1);

	/* Switching agents answers what the old one still owed (temporary). */
	pid = pt_auth_agent_spawn(c, &fd);
	assert_true(pid > 0);
	kill(pid, SIGSTOP);
	pt_auth_set_agent_fd(fd);
	const struct pt_auth_ops *ops = pt_service_get(PT_SVC_AUTH);
	int before = answered;
	assert_int_equal(ops->verify(loop, "alice", "wonderland", "smtp", "192.0.2.41", on_done, NULL), 0);
	assert_int_equal(answered, before);
	pt_auth_set_agent_fd(-1);
	/* From the loop, like every answer (never inside the call). */
	assert_int_equal(answered, before);
	run_until(before + 1);
	assert_int_equal(last_result, -1);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(fd);
	pt_config_free(c);
}

static void
test_wire_format(void **state)
{
	(void)state;
	unsigned char buf[PT_AUTH_WIRE_MAX];
	struct pt_passdb_req in = { "alice", "pw", "smtp", "192.0.2.1" }, out;
	uint32_t id;
	int len = pt_auth_wire_request_encode(77, &in, buf, sizeof buf);
	assert_true(len > 0);
	assert_int_equal(pt_auth_wire_request_decode(buf, (size_t)len, &id, &out), 0);
	assert_int_equal(id, 77);
	assert_string_equal(out.user, "alice");
	assert_string_equal(out.password, "pw");
	assert_string_equal(out.service, "smtp");
	assert_string_equal(out.rip, "192.0.2.1");
	/* Every truncation, an extra byte and a wrong tag are refused. */
	for (int k = 0; k < len; k++) {
		len = pt_auth_wire_request_encode(77, &in, buf, sizeof buf);
		assert_int_equal(pt_auth_wire_request_decode(buf, (size_t)k, &id, &out), -1);
	}
	len = pt_auth_wire_request_encode(77, &in, buf, sizeof buf);
	buf[len] = 'x';
	assert_int_equal(pt_auth_wire_request_decode(buf, (size_t)len + 1, &id, &out), -1);
	buf[0] = 'R';
	assert_int_equal(pt_auth_wire_request_decode(buf, (size_t)len, &id, &out), -1);
	char big[PT_AUTH_WIRE_MAX];
	memset(big, 'p', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	struct pt_passdb_req huge = { "alice", big, "smtp", "" };
	assert_int_equal(pt_auth_wire_request_encode(1, &huge, buf, sizeof buf), -1);

	int result;
	char why[64];
	len = pt_auth_wire_reply_encode(9, -1, "unknown user", buf, sizeof buf);
	assert_true(len > 0);
	assert_int_equal(pt_auth_wire_reply_decode(buf, (size_t)len, &id, &result, why, sizeof why), 0);
	assert_int_equal(id, 9);
	assert_int_equal(result, -1);
	assert_string_equal(why, "unknown user");
	buf[5] = 7;  /* not a result */
	assert_int_equal(pt_auth_wire_reply_decode(buf, (size_t)len, &id, &result, why, sizeof why), -1);
	len = pt_auth_wire_reply_encode(9, 1, "", buf, sizeof buf);
	assert_int_equal(pt_auth_wire_reply_decode(buf, (size_t)len - 1, &id, &result, why, sizeof why), -1);
	assert_int_equal(pt_auth_wire_reply_encode(9, 2, "", buf, sizeof buf), -1);
}

/* The reply's optional second string: a good login's proxy destination. */
static void
test_wire_proxy(void **state)
{
	(void)state;
	unsigned char buf[700];
	uint32_t id;
	int result;
	char why[200], proxy[PT_AUTH_PROXY_MAX];
	int len = pt_auth_wire_reply_encode_proxy(7, 1, "", "10.1.0.2:143", buf, sizeof buf);
	assert_true(len > 0);
	assert_int_equal(pt_auth_wire_reply_decode_proxy(buf, (size_t)len, &id, &result, why, sizeof why, proxy,
	                                                 sizeof proxy), 0);
	assert_int_equal(id, 7);
	assert_int_equal(result, 1);
	assert_string_equal(proxy, "10.1.0.2:143");
	/* The old decoder still reads it; a reply without one says "". */
	assert_int_equal(pt_auth_wire_reply_decode(buf, (size_t)len, &id, &result, why, sizeof why), 0);
	len = pt_auth_wire_reply_encode(8, 0, "password mismatch", buf, sizeof buf);
	assert_int_equal(pt_auth_wire_reply_decode_proxy(buf, (size_t)len, &id, &result, why, sizeof why, proxy,
	                                                 sizeof proxy), 0);
	assert_string_equal(proxy, "");
	/* A third string, or a second without its NUL, is refused. */
	len = pt_auth_wire_reply_encode_proxy(7, 1, "", "h", buf, sizeof buf);
	assert_int_equal(pt_auth_wire_reply_decode_proxy(buf, (size_t)len - 1, &id, &result, why, sizeof why,
	                                                 proxy, sizeof proxy), -1);
	memcpy(buf + len, "x", 2);
	assert_int_equal(pt_auth_wire_reply_decode_proxy(buf, (size_t)len + 2, &id, &result, why, sizeof why,
	                                                 proxy, sizeof proxy), -1);
}

/* passdb proxy fields: proxy=y host= [port=]; without the flag, none. */
static void
test_passdb_proxy_fields(void **state)
{
	(void)state;
	char path[] = "/tmp/pt-proxy-users-XXXXXX", spec[200], why[200], proxy[PT_AUTH_PROXY_MAX];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "a:{PLAIN}pw:::::: proxy=y host=10.1.0.2\n"
	                   "b:{PLAIN}pw:::::: proxy host=10.1.0.3 port=1143\n"
	                   "c:{PLAIN}pw:::::: host=10.1.0.4\n"
	                   "d:{PLAIN}pw:::::: proxy=y host=fd00::4 port=143\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	snprintf(spec, sizeof spec, "passwd-file:%s", path);
	struct pt_passdb_req r = { "a", "pw", "imap", "" };
	assert_int_equal(pt_passdb_check_proxy(spec, &r, why, sizeof why, proxy, sizeof proxy), 1);
	assert_string_equal(proxy, "10.1.0.2");
	r.user = "b";
	assert_int_equal(pt_passdb_check_proxy(spec, &r, why, sizeof why, proxy, sizeof proxy), 1);
	assert_string_equal(proxy, "10.1.0.3:1143");
	r.user = "c";
	assert_int_equal(pt_passdb_check_proxy(spec, &r, why, sizeof why, proxy, sizeof proxy), 1);
	assert_string_equal(proxy, "");
	r.user = "d";
	assert_int_equal(pt_passdb_check_proxy(spec, &r, why, sizeof why, proxy, sizeof proxy), 1);
	assert_string_equal(proxy, "[fd00::4]:143");
	/* A wrong password says nothing of where the user lives. */
	r.user = "a";
	r.password = "nope";
	assert_int_equal(pt_passdb_check_proxy(spec, &r, why, sizeof why, proxy, sizeof proxy), 0);
	assert_string_equal(proxy, "");
	unlink(path);
}

static void
test_passdb_check_direct(void **state)
{
	(void)state;
	char why[200], spec[200];
	struct pt_passdb_req r = { "alice", "wonderland", "pop3", "" };
	snprintf(spec, sizeof spec, "passwd-file:%s", users);
	assert_int_equal(pt_passdb_check(spec, &r, why, sizeof why), 1);
	assert_int_equal(pt_passdb_check("passwd-file:/nonexistent/users", &r, why, sizeof why), -1);
	assert_non_null(strstr(why, "cannot be read"));
	assert_int_equal(pt_passdb_check("nis", &r, why, sizeof why), -1);
	assert_int_equal(pt_passdb_spec_check("passwd-file:", why, sizeof why), -1);
	assert_int_equal(pt_passdb_spec_check("pam", why, sizeof why), 0);
	struct pt_passdb_req empty = { "", "x", "pop3", "" };
	assert_int_equal(pt_passdb_check(spec, &empty, why, sizeof why), 0);
	char name[80];
	pt_auth_log_name("a\x01" "b\nc\xff", name, sizeof name);
	assert_string_equal(name, "a?b?c?");
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool_good_and_bad),
		cmocka_unit_test(test_crypt_user_on_pool),
		cmocka_unit_test(test_throttle_through_service),
		cmocka_unit_test(test_settings),
		cmocka_unit_test(test_parallel_attempts_wait_in_line),
		cmocka_unit_test(test_failure_due_from_check_start),
		cmocka_unit_test(test_line_is_bounded),
		cmocka_unit_test(test_init_from_config),
		cmocka_unit_test(test_agent),
		cmocka_unit_test(test_agent_dies),
		cmocka_unit_test(test_wire_format),
		cmocka_unit_test(test_passdb_check_direct),
		cmocka_unit_test(test_wire_proxy),
		cmocka_unit_test(test_passdb_proxy_fields),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
