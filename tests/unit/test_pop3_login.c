/* Unit tests of the POP3 pre-login side over a socketpair with a fake
 * auth service: greeting, CAPA per disable_plaintext_auth and client
 * address, USER/PASS and AUTH PLAIN/LOGIN replies (Dovecot's texts), the
 * same answer for unknown users and wrong passwords, pipelined logins
 * waiting for the check, bad-command and line limits, and a login that
 * reaches the session hand-off (which fails here: no mail agent runs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "conn_int.h"
#include "net.h"
#include "pop3/pop3.h"
#include "postern/event.h"
#include "postern/services.h"

/* ---- fake auth: alice/secret is the only good pair ---- */

struct pending {
	struct pt_deferred now;
	void (*done)(void *arg, int result);
	void *arg;
	int result;
};

static struct {
	int async;
	int calls;
	char last_user[64], last_pass[64], last_service[16], last_rip[64];
	struct pt_loop *loop;
} A;

static void
answer(struct pt_loop *loop, void *arg)
{
	struct pending *p = arg;

	(void)loop;
	p->done(p->arg, p->result);
	free(p);
}

static int
fake_verify(struct pt_loop *loop, const char *user, const char *password, const char *service,
            const char *client_address, void (*done)(void *arg, int result), void *arg)
{
	int result = strcmp(user, "alice") == 0 && strcmp(password, "secret") == 0 ? 1 : 0;

	A.calls++;
	snprintf(A.last_user, sizeof(A.last_user), "%s", user);
	snprintf(A.last_pass, sizeof(A.last_pass), "%s", password);
	snprintf(A.last_service, sizeof(A.last_service), "%s", service);
	snprintf(A.last_rip, sizeof(A.last_rip), "%s", client_address);
	if (strcmp(user, "tempfail") == 0)
		result = -1;
	struct pending *p = calloc(1, sizeof(*p));
	p->done = done;
	p->arg = arg;
	p->result = result;
	/* Known at once or after a while: from the loop either way, as the
	 * service rule (services.h) has it. */
	if (!A.async)
		pt_defer(loop, &p->now, answer, p);
	else
		pt_timer_add(loop, 20, answer, p);
	return 0;
}

static const struct pt_auth_ops fake_auth = { fake_verify };

/* ---- fixture ---- */

struct fixture {
	struct pt_loop *loop;
	int fd;
	struct pop3_settings *set;
};

static void
stop_timer(struct pt_loop *loop, void *arg)
{
	(void)arg;
	pt_loop_stop(loop);
}

static void
pump(struct pt_loop *loop, unsigned ms)
{
	pt_timer_add(loop, ms, stop_timer, NULL);
	pt_loop_run(loop);
}

/* One loop for every test: the core's hand-off keeps the loop it first
 * saw, as a process with one loop would. */
static struct pt_loop *group_loop;

static int
group_setup(void **state)
{
	(void)state;
	group_loop = pt_loop_new();
	return group_loop ? 0 : -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	pt_loop_free(group_loop);
	return 0;
}

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	memset(&A, 0, sizeof(A));
	fx->set = calloc(1, sizeof(*fx->set));
	fx->set->refs = 1;
	fx->set->uidl_format = strdup("%08Xu%08Xv");
	fx->set->login_timeout_ms = 60000;
	fx->set->plaintext_disabled = 1;
	fx->set->mech_plain = 1;
	fx->set->mech_login = 1;
	pop3_settings_install(fx->set);
	pt_service_register(PT_SVC_AUTH, &fake_auth);
	fx->loop = group_loop;
	fx->fd = -1;
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;

	if (fx->fd >= 0)
		close(fx->fd);
	/* Let pending checks and the hand-off's failure timer run out. */
	pump(fx->loop, 50);
	pop3_settings_install(NULL);
	free(fx);
	return 0;
}

static void
start(struct fixture *fx, const char *peer, const char *local)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct pt_conn *c = pt_conn_new(fx->loop, sv[0], NULL);
	assert_non_null(c);
	pt_conn_set_origin(c, peer, 40000, local, 110, 0);
	fx->fd = sv[1];
	pop3_login_accept(c, NULL);
}

static char *
read_n(struct fixture *fx, size_t want)
{
	char *buf = malloc(want + 1);
	size_t got = 0;

	for (int i = 0; i < 2000 && got < want; i++) {
		pump(fx->loop, 1);
		for (;;) {
			ssize_t r = recv(fx->fd, buf + got, want - got, MSG_DONTWAIT);
			if (r <= 0)
				break;
			got += (size_t)r;
		}
	}
	buf[got] = 0;
	return buf;
}

static void
expect(struct fixture *fx, const char *text)
{
	char *got = read_n(fx, strlen(text));

	assert_string_equal(got, text);
	free(got);
}

static void
send_cmd(struct fixture *fx, const char *text)
{
	assert_int_equal(write(fx->fd, text, strlen(text)), (ssize_t)strlen(text));
}

static void
exchange(struct fixture *fx, const char *cmd, const char *reply)
{
	send_cmd(fx, cmd);
	expect(fx, reply);
}

static void
expect_closed(struct fixture *fx)
{
	char b;

	pump(fx->loop, 5);
	assert_int_equal(recv(fx->fd, &b, 1, MSG_DONTWAIT), 0);
}

#define GREETING "+OK Postern ready.\r\n"
#define CAPA_HEAD "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
#define AUTH_FAILED "-ERR [AUTH] Authentication failed.\r\n"
#define PLAINTEXT_DISABLED \
	"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n"
#define HANDOFF_FAILED "-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.\r\n"

/* From the server's own address plaintext is allowed ("secured"). */
static void
test_capa_local(void **state)
{
	struct fixture *fx = *state;

	start(fx, "127.0.0.1", "127.0.0.1");
	expect(fx, GREETING);
	exchange(fx, "CAPA\r\n", CAPA_HEAD "USER\r\nSASL PLAIN LOGIN\r\n.\r\n");
	exchange(fx, "AUTH\r\n", "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
	/* No certificate in this test: STLS is neither listed nor possible. */
	exchange(fx, "STLS\r\n", "-ERR TLS support isn't enabled.\r\n");
	fx->set->mech_login = 0;
	exchange(fx, "CAPA\r\n", CAPA_HEAD "USER\r\nSASL PLAIN\r\n.\r\n");
	exchange(fx, "QUIT\r\n", "+OK Logging out\r\n");
	expect_closed(fx);
}

static void
test_plaintext_refused(void **state)
{
	struct fixture *fx = *state;

	start(fx, "127.0.0.2", "127.0.0.1");
	expect(fx, GREETING);
	exchange(fx, "CAPA\r\n", CAPA_HEAD ".\r\n");
	exchange(fx, "USER alice\r\n", PLAINTEXT_DISABLED);
	exchange(fx, "PASS secret\r\n", PLAINTEXT_DISABLED);
	exchange(fx, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", PLAINTEXT_DISABLED);
	exchange(fx, "AUTH\r\n", "+OK\r\n.\r\n");
	assert_int_equal(A.calls, 0);
	/* The same address in its v4-mapped form is still this host. */
	close(fx->fd);
	pump(fx->loop, 5);
	start(fx, "::ffff:127.0.0.1", "127.0.0.1");
	expect(fx, GREETING);
	exchange(fx, "USER alice\r\n", "+OK\r\n");
}

static void
test_plaintext_enabled(void **state)
{
	struct fixture *fx = *state;

	fx->set->plaintext_disabled = 0;
	start(fx, "127.0.0.2", "127.0.0.1");
	expect(fx, GREETING);
	exchange(fx, "CAPA\r\n", CAPA_HEAD "USER\r\nSASL PLAIN LOGIN\r\n.\r\n");
	exchange(fx, "USER alice\r\n", "+OK\r\n");
}

static void
test_user_pass(void **state)
{
	struct fixture *fx = *state;

	start(fx, "127.0.0.1", "127.0.0.1");
	expect(fx, GREETING);
	exchange(fx, "PASS secret\r\n", "-ERR No username given.\r\n");
	exchange(fx, "USER alice\r\n", "+OK\r\n");
	exchange(fx, "PASS wrong\r\n", AUTH_FAILED);
	assert_string_equal(A.last_user, "alice");
	assert_string_equal(A.last_service, "pop3");
	assert_string_equal(A.last_rip, "127.0.0.1");
	/* An unknown user gets the very same answer. */
	exchange(fx, "USER nobody-here\r\n", "+OK\r\n");
	exchange(fx, "PASS secret\r\n", AUTH_FAILED);
	/* PASS consumed the name: another PASS needs a USER first. */
	exchange(fx, "PASS secret\r\n", "-ERR No username given.\r\n");
	exchange(fx, "USER tempfail\r\n", "+OK\r\n");
	exchange(fx, "PASS x\r\n", "-ERR [SYS/TEMP] Temporary authentication failure.\r\n");
	/* A password with spaces arrives whole. */
	exchange(fx, "USER bob\r\n", "+OK\r\n");
	exchange(fx, "PASS  two words \r\n", AUTH_FAILED);
	assert_string_equal(A.last_pass, " two words ");
	/* The right password reaches the hand-off (no agent here: it fails
	 * and the session goes on). */
	exchange(fx, "USER alice\r\n", "+OK\r\n");
	exchange(fx, "PASS secret\r\n", HANDOFF_FAILED);
	exchange(fx, "NOOP\r\n", "-ERR Unknown command: NOOP\r\n");
}

static void
test_auth_plain(void **state)
{
	struct fixture *fx = *state;

	start(fx, "127.0.0.1", "127.0.0.1");
	expect(fx, GREETING);
	/* \0alice\0wrong */
	exchange(fx, "AUTH PLAIN AGFsaWNlAHdyb25n\r\n", AUTH_FAILED);
	assert_string_equal(A.last_user, "alice");
	/* Without the initial response: an empty challenge first. */
	exchange(fx, "AUTH PLAIN\r\n", "+ \r\n");
	exchange(fx, "AGFsaWNlAHdyb25n\r\n", AUTH_FAILED);
	exchange(fx, "AUTH PLAIN\r\n", "+ \r\n");
	exchange(fx, "*\r\n", "-ERR Authentication aborted by client.\r\n");
	exchange(fx, "auth plain !!!\r\n", "-ERR [AUTH] Invalid base64 data in continued response.\r\n");
	exchange(fx, "AUTH CRAM-MD5\r\n", "-ERR [AUTH] Unsupported authentication mechanism.\r\n");
	exchange(fx, "AUTH PLAIN a b\r\n", "-ERR Invalid AUTH parameters.\r\n");
	/* bob\0alice\0secret: a foreign authzid fails like a wrong password,
	 * and alice's password is never checked for it. */
	A.calls = 0;
	exchange(fx, "AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n", AUTH_FAILED);
	assert_int_equal(A.calls, 1);
	assert_string_equal(A.last_user, "");
	exchange(fx, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", HANDOFF_FAILED);
}

static void
test_auth_login(void **state)
{
	struct fixture *fx = *state;

	start(fx, "127.0.0.1", "127.0.0.1");
	expect(fx, GREETING);
	exchange(fx, "AUTH LOGIN\r\n", "+ VXNlcm5hbWU6\r\n");
	exchange(fx, "YWxpY2U=\r\n", "+ UGFzc3dvcmQ6\r\n");
	exchange(fx, "d3Jvbmc=\r\n", AUTH_FAILED);
	assert_string_equal(A.last_user, "alice");
	assert_string_equal(A.last_pass, "wrong");
	fx->set->mech_login = 0;
	exchange(fx, "AUTH LOGIN\r\n", "-ERR [AUTH] Unsupported authentication mechanism.\r\n");
}

/* Commands sent behind PASS wait for its answer, in order. */
static void
test_pipelined_async(void **state)
{
	struct fixture *fx = *state;

	A.async = 1;
	start(fx, "127.0.0.1", "127.0.0.1");
	expect(fx, GREETING);
	send_cmd(fx, "USER alice\r\nPASS wrong\r\nUSER bob\r\nPASS bad\r\nCAPA\r\n");
	expect(fx, "+OK\r\n" AUTH_FAILED "+OK\r\n" AUTH_FAILED CAPA_HEAD "USER\r\nSASL PLAIN LOGIN\r\n.\r\n");
	assert_int_equal(A.calls, 2);
}

/* The client leaves while its password is being checked. */
static void
test_close_during_check(void **state)
{
	struct fixture *fx = *state;

	A.async = 1;
	start(fx, "127.0.0.1", "127.0.0.1");
	expect(fx, GREETING);
	send_cmd(fx, "USER alice\r\nPASS secret\r\n");
	pump(fx->loop, 2);
	close(fx->fd);
	fx->fd = -1;
	pump(fx->loop, 50);
	assert_int_equal(A.calls, 1);
}

static void
test_bad_commands(void **state)
{
	struct fixture *fx = *state;

	start(fx, "127.0.0.1", "127.0.0.1");
	expect(fx, GREETING);
	exchange(fx, "STAT\r\n", "-ERR Unknown command: STAT\r\n");
	exchange(fx, "\r\n", "-ERR Unknown command: \r\n");
	exchange(fx, "FOO\r\n", "-ERR Too many invalid bad commands.\r\n");
	expect_closed(fx);
}

static void
test_long_line(void **state)
{
	struct fixture *fx = *state;
	char line[POP3_LINE_MAX + 20];

	start(fx, "127.0.0.1", "127.0.0.1");
	expect(fx, GREETING);
	memset(line, 'A', sizeof(line) - 3);
	memcpy(line + sizeof(line) - 3, "\r\n", 3);
	exchange(fx, line, "-ERR Input line too long.\r\n");
	expect_closed(fx);
}

/* Input split at every byte still gives the same replies. */
static void
test_byte_by_byte(void **state)
{
	struct fixture *fx = *state;
	const char *in = "USER alice\r\nPASS wrong\r\nAUTH PLAIN\r\nAGFsaWNlAHdyb25n\r\nQUIT\r\n";

	start(fx, "127.0.0.1", "127.0.0.1");
	expect(fx, GREETING);
	for (const char *p = in; *p; p++) {
		assert_int_equal(write(fx->fd, p, 1), 1);
		pump(fx->loop, 1);
	}
	expect(fx, "+OK\r\n" AUTH_FAILED "+ \r\n" AUTH_FAILED "+OK Logging out\r\n");
	expect_closed(fx);
}

static void
test_login_timeout(void **state)
{
	struct fixture *fx = *state;

	fx->set->login_timeout_ms = 30;
	start(fx, "127.0.0.1", "127.0.0.1");
	expect(fx, GREETING);
	pump(fx->loop, 100);
	expect_closed(fx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_capa_local, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plaintext_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plaintext_enabled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_user_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_login, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelined_async, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_during_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_commands, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_byte_by_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_login_timeout, setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
