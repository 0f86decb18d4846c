/* Unit tests of the worker side of post-login sessions against a fake
 * mail agent on the same loop: the relay (pipelined input first, both
 * directions, closing), failures handed back on the loop with the conn
 * untouched, the user+IP limit, a lost agent, a client leaving while the
 * agent answers, backpressure; and the mail-process side serve. */
#include <errno.h>
#include <fcntl.h>
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

#include "config_int.h"
#include "conn_int.h"
#include "net.h"
#include "postern/event.h"
#include "postern/services.h"
#include "queue.h"
#include "runtime.h"
#include "session_int.h"

enum agent_mode { AGENT_OK, AGENT_FAIL, AGENT_HOLD };

struct agent {
	int fd;
	enum agent_mode mode;
	int requests;
	uint32_t last_id;
	int sessfd[4];
	int nsess;
	char user[64], proto[32], handoff[64], peer[64];
	int tls;
};

struct proto {
	struct pt_conn *c;
	int failed;
	char code[16];
	char got[4096];
	int closes;
};

static struct pt_loop *loop;
static struct agent A;

static void
stop_timer(struct pt_loop *l, void *arg)
{
	(void)arg;
	pt_loop_stop(l);
}

static void
pump(unsigned ms)
{
	pt_timer_add(loop, ms, stop_timer, NULL);
	pt_loop_run(loop);
}

static void
agent_reply(uint32_t id, int ok)
{
	struct pt_session_reply r = { .id = id, .ok = ok, .pid = 4242 };
	if (!ok) {
		snprintf(r.code, sizeof r.code, "UNAVAILABLE");
		snprintf(r.reason, sizeof r.reason, "user unknown to the userdb");
	}
	unsigned char buf[512];
	int n = pt_session_wire_reply_encode(&r, buf, sizeof buf);
	assert_true(n > 0);
	assert_int_equal(pt_agent_send(A.fd, (const char *)buf, (size_t)n, -1), 0);
}

static void
agent_read(struct pt_loop *l, int fd, unsigned events, void *arg)
{
	(void)l;
	(void)events;
	(void)arg;
	unsigned char buf[PT_SESSION_WIRE_MAX];
	int sfd = -1;
	ssize_t n = pt_agent_recv(fd, (char *)buf, sizeof buf, &sfd);
	if (n <= 0) {
		pt_loop_unwatch(loop, fd);
		return;
	}
	uint32_t id;
	struct pt_session_info info;
	assert_int_equal(pt_session_wire_request_decode(buf, (size_t)n, &id, &info), 0);
	assert_true(sfd >= 0);
	A.requests++;
	A.last_id = id;
	snprintf(A.user, sizeof A.user, "%s", info.user);
	snprintf(A.proto, sizeof A.proto, "%s", info.protocol);
	snprintf(A.handoff, sizeof A.handoff, "%.*s", (int)info.handoff_len, (const char *)info.handoff);
	snprintf(A.peer, sizeof A.peer, "%s", info.peer_addr);
	A.tls = info.tls;
	if (A.mode == AGENT_FAIL) {
		close(sfd);
		agent_reply(id, 0);
		return;
	}
	assert_true(A.nsess < 4);
	A.sessfd[A.nsess++] = sfd;
	if (A.mode == AGENT_OK)
		agent_reply(id, 1);
}

static void
failed_cb(struct pt_conn *c, void *arg, const char *code, const char *why)
{
	struct proto *p = arg;
	(void)c;
	(void)why;
	p->failed++;
	snprintf(p->code, sizeof p->code, "%s", code);
}

static void
proto_read(struct pt_conn *c)
{
	struct proto *p = pt_conn_proto(c);
	const char *line;
	size_t len;
	int eol;
	while (pt_conn_getline(c, 1000, &line, &len, &eol) == 1) {
		if (strcmp(line, "LOGIN") == 0) {
			struct pt_session_info info = { .protocol = "echo", .user = "alice", .mech = "PLAIN",
				.session_id = "S1", .handoff = "tag1", .handoff_len = 4 };
			int before = p->failed;
			assert_int_equal(pt_session_handoff(c, &info, failed_cb, p), 0);
			/* Not from inside the call: on the loop. */
			assert_int_equal(p->failed, before);
			return;
		}
		size_t o = strlen(p->got);
		snprintf(p->got + o, sizeof p->got - o, "%s|", line);
	}
}

static void
proto_close(struct pt_conn *c, const char *reason)
{
	struct proto *p = pt_conn_proto(c);
	(void)reason;
	p->closes++;
}

static const struct pt_conn_handlers proto_handlers = { .on_read = proto_read, .on_close = proto_close };

/* A client conn with the fake protocol; *cli gets the test's end. */
static struct pt_conn *
client(struct proto *p, int *cli)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	memset(p, 0, sizeof *p);
	p->c = pt_conn_new(loop, sv[1], NULL);
	assert_non_null(p->c);
	pt_conn_set_handlers(p->c, &proto_handlers, p);
	*cli = sv[0];
	return p->c;
}

static void
send_str(int fd, const char *s)
{
	assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* Everything readable now, as a string ("" when nothing; "<EOF>" at end). */
static const char *
recv_now(int fd)
{
	static char buf[8192];
	ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
	if (n == 0)
		return "<EOF>";
	if (n < 0)
		return "";
	buf[n] = '\0';
	return buf;
}

static int
setup(void **state)
{
	(void)state;
	loop = pt_loop_new();
	memset(&A, 0, sizeof A);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	A.fd = sv[1];
	pt_session_set_agent(loop, sv[0]);
	pt_loop_watch(loop, A.fd, PT_EV_READ, agent_read, NULL);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	pt_session_set_agent(loop, -1);
	pump(1);
	pt_conn_close_all("test end");
	if (A.fd >= 0) {
		pt_loop_unwatch(loop, A.fd);
		close(A.fd);
	}
	for (int i = 0; i < A.nsess; i++)
		close(A.sessfd[i]);
	pt_loop_free(loop);
	loop = NULL;
	pt_live_conf = NULL;
	return 0;
}

static void
test_relay_both_ways_pipelined_input_first(void **state)
{
	(void)state;
	static struct proto p; /* the conn outlives the test body until teardown */
	int cli;
	client(&p, &cli);
	send_str(cli, "LOGIN\r\nearly one\r\nearly two\r\n");
	pump(50);
	assert_int_equal(A.requests, 1);
	assert_string_equal(A.user, "alice");
	assert_string_equal(A.proto, "echo");
	assert_string_equal(A.handoff, "tag1");
	assert_string_equal(A.peer, "local");
	assert_int_equal(A.tls, 0);
	assert_int_equal(p.failed, 0);
	assert_string_equal(p.got, "");
	assert_int_equal(pt_session_count(), 1);
	assert_string_equal(recv_now(A.sessfd[0]), "early one\r\nearly two\r\n");
	send_str(A.sessfd[0], "* from the mail process\r\n");
	pump(20);
	assert_string_equal(recv_now(cli), "* from the mail process\r\n");
	send_str(cli, "a1 NOOP\r\n");
	pump(20);
	assert_string_equal(recv_now(A.sessfd[0]), "a1 NOOP\r\n");
	assert_string_equal(p.got, "");
	/* The mail process ends the session: its last words reach the client. */
	send_str(A.sessfd[0], "* BYE\r\n");
	close(A.sessfd[0]);
	A.nsess = 0;
	pump(20);
	assert_string_equal(recv_now(cli), "* BYE\r\n");
	assert_string_equal(recv_now(cli), "<EOF>");
	assert_int_equal(pt_session_count(), 0);
	/* The protocol's handlers are not called after the handoff. */
	assert_int_equal(p.closes, 0);
	close(cli);
}

static void
test_client_leaving_closes_the_mail_side(void **state)
{
	(void)state;
	static struct proto p; /* the conn outlives the test body until teardown */
	int cli;
	client(&p, &cli);
	send_str(cli, "LOGIN\r\n");
	pump(30);
	assert_int_equal(A.nsess, 1);
	send_str(cli, "last words\r\n");
	close(cli);
	pump(30);
	assert_string_equal(recv_now(A.sessfd[0]), "last words\r\n");
	assert_string_equal(recv_now(A.sessfd[0]), "<EOF>");
	assert_int_equal(pt_session_count(), 0);
	assert_int_equal(p.closes, 0);
}

static void
test_agent_failure_gives_the_conn_back(void **state)
{
	(void)state;
	static struct proto p; /* the conn outlives the test body until teardown */
	int cli;
	A.mode = AGENT_FAIL;
	client(&p, &cli);
	send_str(cli, "LOGIN\r\nnext\r\n");
	pump(30);
	assert_int_equal(p.failed, 1);
	assert_string_equal(p.code, "UNAVAILABLE");
	/* The protocol's handlers again, with the input that waited. */
	assert_string_equal(p.got, "next|");
	send_str(cli, "more\r\n");
	pump(20);
	assert_string_equal(p.got, "next|more|");
	assert_int_equal(pt_session_count(), 0);
	close(cli);
	pump(20);
	assert_int_equal(p.closes, 1);
}

static void
test_userip_limit(void **state)
{
	(void)state;
	const char *text = "mail_max_userip_connections = 1\n";
	struct pt_config *conf = pt_runtime_load_text("test.conf", text, strlen(text));
	assert_int_equal(pt_config_error_count(conf), 0);
	pt_live_conf = conf;
	struct proto p1, p2;
	int c1, c2;
	client(&p1, &c1);
	client(&p2, &c2);
	send_str(c1, "LOGIN\r\n");
	pump(30);
	send_str(c2, "LOGIN\r\n");
	pump(30);
	assert_int_equal(A.requests, 1);
	assert_int_equal(p2.failed, 1);
	assert_string_equal(p2.code, "LIMIT");
	/* The first session ends: the slot is free again. */
	close(A.sessfd[0]);
	A.sessfd[0] = -1;
	pump(30);
	assert_string_equal(recv_now(c1), "<EOF>");
	send_str(c2, "LOGIN\r\n");
	pump(30);
	assert_int_equal(A.requests, 2);
	assert_int_equal(p2.failed, 1);
	assert_int_equal(pt_session_count(), 1);
	close(c1);
	close(c2);
	pump(20);
	pt_live_conf = NULL;
	pt_config_free(conf);
}

static void
test_without_agent_fails_on_the_loop(void **state)
{
	(void)state;
	pt_session_set_agent(loop, -1);
	static struct proto p; /* the conn outlives the test body until teardown */
	int cli;
	client(&p, &cli);
	send_str(cli, "LOGIN\r\n");
	pump(30);
	assert_int_equal(p.failed, 1);
	assert_string_equal(p.code, "UNAVAILABLE");
	assert_int_equal(A.requests, 0);
	close(cli);
}

static void
test_agent_lost_while_pending(void **state)
{
	(void)state;
	A.mode = AGENT_HOLD;
	static struct proto p; /* the conn outlives the test body until teardown */
	int cli;
	client(&p, &cli);
	send_str(cli, "LOGIN\r\nafter\r\n");
	pump(30);
	assert_int_equal(A.requests, 1);
	assert_int_equal(p.failed, 0);
	pt_loop_unwatch(loop, A.fd);
	close(A.fd);
	A.fd = -1;
	pump(30);
	assert_int_equal(p.failed, 1);
	assert_string_equal(p.code, "UNAVAILABLE");
	assert_string_equal(p.got, "after|");
	close(cli);
}

static void
test_client_closed_while_pending(void **state)
{
	(void)state;
	A.mode = AGENT_HOLD;
	static struct proto p; /* the conn outlives the test body until teardown */
	int cli;
	struct pt_conn *c = client(&p, &cli);
	send_str(cli, "LOGIN\r\n");
	pump(30);
	assert_int_equal(A.requests, 1);
	pt_conn_close(c, "shutdown");
	assert_int_equal(p.failed, 1);
	assert_string_equal(p.code, "CLOSED");
	assert_int_equal(p.closes, 0);
	/* The late answer: the worker drops its end, the session ends. */
	agent_reply(A.last_id, 1);
	pump(30);
	assert_string_equal(recv_now(A.sessfd[0]), "<EOF>");
	assert_int_equal(pt_session_count(), 0);
	close(cli);
}

static void
test_backpressure_towards_a_slow_client(void **state)
{
	(void)state;
	static struct proto p; /* the conn outlives the test body until teardown */
	int cli;
	struct pt_conn *c = client(&p, &cli);
	send_str(cli, "LOGIN\r\n");
	pump(30);
	int m = A.sessfd[0];
	fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
	const size_t total = 4 * 1024 * 1024;
	size_t sent = 0, got = 0, max_pending = 0;
	unsigned char chunk[16384];
	int rounds = 0;
	/* The client does not read: the mail process must be held back. */
	while (sent < total && rounds++ < 200) {
		for (size_t i = 0; i < sizeof chunk; i++)
			chunk[i] = (unsigned char)((sent + i) % 251);
		ssize_t n = send(m, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0)
			sent += (size_t)n;
		pump(1);
		size_t pend = pt_conn_pending_output(c);
		if (pend > max_pending)
			max_pending = pend;
	}
	assert_true(sent < total);
	assert_true(max_pending <= 2 * PT_CONN_RBUF_MAX);
	/* Now the client reads everything, intact and in order. */
	for (rounds = 0; got < sent && rounds < 2000; rounds++) {
		unsigned char buf[65536];
		ssize_t n;
		while ((n = recv(cli, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
			for (ssize_t i = 0; i < n; i++)
				assert_int_equal(buf[i], (unsigned char)((got + (size_t)i) % 251));
			got += (size_t)n;
		}
		pump(1);
	}
	assert_int_equal(got, sent);
	close(cli);
}

/* ---------- the mail process side ---------- */

static struct {
	int started;
	char peer[64], local[64];
	unsigned peer_port, local_port;
	int tls, tls_available, family;
	int done;
} SV;

static void
served_start(struct pt_conn *c, const struct pt_session_info *info, const struct pt_user *user)
{
	SV.started++;
	snprintf(SV.peer, sizeof SV.peer, "%s", pt_conn_peer_addr(c));
	snprintf(SV.local, sizeof SV.local, "%s", pt_conn_local_addr(c));
	SV.peer_port = pt_conn_peer_port(c);
	SV.local_port = pt_conn_local_port(c);
	SV.tls = pt_conn_is_tls(c);
	SV.tls_available = pt_conn_tls_available(c);
	SV.family = pt_conn_peer_sa(c)->sa_family;
	pt_conn_printf(c, "hello %s %.*s\r\n", user->name, (int)info->handoff_len, (const char *)info->handoff);
}

static const struct pt_session_ops served_ops = { .start = served_start };

static void
served_done(void *arg)
{
	(void)arg;
	SV.done++;
}

static void
test_serve_reports_the_client_origin(void **state)
{
	(void)state;
	memset(&SV, 0, sizeof SV);
	pt_service_register("session:utest", &served_ops);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct pt_session_info info = { .protocol = "utest", .user = "alice", .session_id = "S9",
		.handoff = "t7", .handoff_len = 2, .peer_addr = "192.0.2.9", .peer_port = 40000,
		.local_addr = "192.0.2.1", .local_port = 993, .tls = 1 };
	struct pt_user u = { .name = "alice", .uid = 1000, .gid = 1000 };
	assert_int_equal(pt_session_serve(loop, sv[1], &info, &u, served_done, NULL), 0);
	assert_int_equal(SV.started, 1);
	assert_string_equal(SV.peer, "192.0.2.9");
	assert_string_equal(SV.local, "192.0.2.1");
	assert_int_equal(SV.peer_port, 40000);
	assert_int_equal(SV.local_port, 993);
	assert_int_equal(SV.tls, 1);
	assert_int_equal(SV.tls_available, 0);
	assert_int_equal(SV.family, AF_INET);
	pump(20);
	assert_string_equal(recv_now(sv[0]), "hello alice t7\r\n");
	assert_int_equal(SV.done, 0);
	close(sv[0]);
	pump(20);
	assert_int_equal(SV.done, 1);
}

static void
test_serve_without_service_closes(void **state)
{
	(void)state;
	memset(&SV, 0, sizeof SV);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct pt_session_info info = { .protocol = "nosuch", .user = "alice", .session_id = "S1",
		.peer_addr = "::1", .local_addr = "::1" };
	struct pt_user u = { .name = "alice" };
	assert_int_equal(pt_session_serve(loop, sv[1], &info, &u, served_done, NULL), -1);
	assert_int_equal(SV.done, 1);
	assert_string_equal(recv_now(sv[0]), "<EOF>");
	close(sv[0]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_relay_both_ways_pipelined_input_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_leaving_closes_the_mail_side, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent_failure_gives_the_conn_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_userip_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_without_agent_fails_on_the_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent_lost_while_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_closed_while_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backpressure_towards_a_slow_client, setup, teardown),
		cmocka_unit_test_setup_teardown(test_serve_reports_the_client_origin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_serve_without_service_closes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
