/* Unit tests for the SMTP client driven through its transport entry
 * (relay_deliver, as the queue calls it) against a scripted server thread
 * on 127.0.0.1: per-recipient outcomes
 * (2xx sent, 5xx quoted with the command it answered), the body on the
 * wire (CRLF, dot-stuffing), several next hops in one batch (one down),
 * connection reuse across batches, done() never before return, and no
 * leaks once idle connections are closed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/relay_int.h"

/* ---------- scripted server ---------- */

static int srv_fd = -1, srv_stop[2];
static unsigned srv_port;
static pthread_t srv_thread;
static int srv_accepts, srv_rsets;
static char srv_data[8192];
static size_t srv_data_len;
static char srv_mail[512];

static int
readline(int c, char *buf, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		char ch;
		ssize_t r = recv(c, &ch, 1, 0);
		if (r <= 0)
			return -1;
		buf[n++] = ch;
		if (ch == '\n')
			break;
	}
	buf[n] = 0;
	return (int)n;
}

static void
say(int c, const char *s)
{
	send(c, s, strlen(s), MSG_NOSIGNAL);
}

static void
serve(int c)
{
	char line[1024];
	say(c, "220 fake.test ESMTP\r\n");
	int nrcpt = 0;
	while (readline(c, line, sizeof line) > 0) {
		if (strncmp(line, "EHLO", 4) == 0) {
			say(c, "250-fake.test\r\n250-PIPELINING\r\n250 SIZE 100000\r\n");
		} else if (strncmp(line, "MAIL", 4) == 0) {
			snprintf(srv_mail, sizeof srv_mail, "%s", line);
			nrcpt = 0;
			say(c, "250 2.1.0 Ok\r\n");
		} else if (strncmp(line, "RCPT TO:<bad", 12) == 0) {
			say(c, "550-5.1.1 <bad@a.test>: Recipient address rejected:\r\n550 5.1.1 User unknown\r\n");
		} else if (strncmp(line, "RCPT", 4) == 0) {
			nrcpt++;
			say(c, "250 2.1.5 Ok\r\n");
		} else if (strncmp(line, "DATA", 4) == 0) {
			if (!nrcpt) {
				say(c, "554 5.5.1 Error: no valid recipients\r\n");
				continue;
			}
			say(c, "354 go ahead\r\n");
			srv_data_len = 0;
			for (;;) {
				int n = readline(c, line, sizeof line);
				if (n <= 0 || strcmp(line, ".\r\n") == 0)
					break;
				if (srv_data_len + (size_t)n < sizeof srv_data) {
					memcpy(srv_data + srv_data_len, line, (size_t)n);
					srv_data_len += (size_t)n;
				}
			}
			srv_data[srv_data_len] = 0;
			say(c, "250 2.0.0 Ok: queued as ABC123\r\n");
		} else if (strncmp(line, "RSET", 4) == 0) {
			srv_rsets++;
			say(c, "250 2.0.0 Ok\r\n");
		} else if (strncmp(line, "QUIT", 4) == 0) {
			say(c, "221 2.0.0 Bye\r\n");
			break;
		} else {
			say(c, "502 5.5.2 Error: command not recognized\r\n");
		}
	}
	close(c);
}

static void *
server_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd pf[2] = { { srv_fd, POLLIN, 0 }, { srv_stop[0], POLLIN, 0 } };
		if (poll(pf, 2, -1) < 0)
			continue;
		if (pf[1].revents)
			return NULL;
		int c = accept(srv_fd, NULL, NULL);
		if (c < 0)
			continue;
		srv_accepts++;
		serve(c);
	}
}

static unsigned
unused_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bind(fd, (struct sockaddr *)&a, sizeof a);
	getsockname(fd, (struct sockaddr *)&a, &al);
	close(fd);
	return ntohs(a.sin_port);
}

static int
setup(void **state)
{
	(void)state;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	srv_fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(srv_fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(srv_fd, 8), 0);
	getsockname(srv_fd, (struct sockaddr *)&a, &al);
	srv_port = ntohs(a.sin_port);
	assert_int_equal(pipe(srv_stop), 0);
	pthread_create(&srv_thread, NULL, server_main, NULL);
	/* The module loads these from its parameters; values for the test. */
	struct relay_settings set = { .connect_ms = 5000, .helo_ms = 5000, .mail_ms = 5000, .rcpt_ms = 5000,
		.data_init_ms = 5000, .data_xfer_ms = 5000, .data_done_ms = 5000, .starttls_ms = 5000,
		.rset_ms = 5000, .quit_ms = 5000, .cache_ms = 2000, .tls = RELAY_TLS_MAY, .helo_name = "client.test",
		.concurrency = 20 };
	relay_configure(&set);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	relay_close_idle();
	assert_int_equal(write(srv_stop[1], "x", 1), 1);
	pthread_join(srv_thread, NULL);
	close(srv_fd);
	close(srv_stop[0]);
	close(srv_stop[1]);
	return 0;
}

/* ---------- driving a batch ---------- */

struct run {
	struct pt_loop *loop;
	int done;
};

static void
batch_done(void *arg)
{
	struct run *r = arg;
	r->done++;
	pt_loop_stop(r->loop);
}

static const char MSG[] = "Subject: hi\n\n.dotted line\nplain\n.\nend";

/* A recipient for 127.0.0.1 at port, as routing writes the next hop. */
static struct pt_transport_rcpt
rcpt(const char *address, const char *orig, unsigned port)
{
	static char hops[8][64];
	static unsigned k;
	char *nh = hops[k++ % 8];
	snprintf(nh, 64, "[127.0.0.1]:%u", port);
	struct pt_transport_rcpt r = { .address = address, .orig = orig, .nexthop = nh };
	return r;
}

static void
run_deliver(struct pt_transport_rcpt *r, size_t n)
{
	struct run run = { pt_loop_new(), 0 };
	struct pt_transport_msg m = { "ABCDEF0123", "sender@here.test", MSG, sizeof MSG - 1, time(NULL) };
	relay_deliver(run.loop, &m, r, n, batch_done, &run);
	assert_int_equal(run.done, 0);
	pt_loop_run(run.loop);
	assert_int_equal(run.done, 1);
	/* Cached connections belong to this loop: close them before it goes. */
	relay_close_idle();
	pt_loop_free(run.loop);
}

static void
test_outcomes_and_wire_format(void **state)
{
	(void)state;
	struct pt_transport_rcpt r[2] = { rcpt("good@a.test", "good@a.test", srv_port),
		rcpt("bad@a.test", NULL, srv_port) };
	run_deliver(r, 2);
	assert_int_equal(r[0].st.code, 0);
	assert_string_equal(r[0].st.dsn, "2.0.0");
	assert_string_equal(r[0].st.text, "250 2.0.0 Ok: queued as ABC123");
	assert_int_equal(r[1].st.code, 550);
	assert_string_equal(r[1].st.dsn, "5.1.1");
	assert_string_equal(r[1].st.text, "host 127.0.0.1[127.0.0.1] said: 550-5.1.1 <bad@a.test>: Recipient address "
	                                  "rejected: 550 5.1.1 User unknown (in reply to RCPT TO command)");
	assert_string_equal(srv_data, "Subject: hi\r\n\r\n..dotted line\r\nplain\r\n..\r\nend\r\n");
	char want[64];
	snprintf(want, sizeof want, "MAIL FROM:<sender@here.test> SIZE=%zu\r\n", strlen(srv_data));
	assert_string_equal(srv_mail, want);
}

static void
test_two_next_hops_one_down(void **state)
{
	(void)state;
	unsigned down = unused_port();
	struct pt_transport_rcpt r[3] = { rcpt("x@down.test", NULL, down), rcpt("y@up.test", NULL, srv_port),
		rcpt("z@down.test", NULL, down) };
	run_deliver(r, 3);
	assert_int_equal(r[1].st.code, 0);
	char want[200];
	snprintf(want, sizeof want, "connect to 127.0.0.1[127.0.0.1]:%u: Connection refused", down);
	for (int i = 0; i < 3; i += 2) {
		assert_int_equal(r[i].st.code / 100, 4);
		assert_string_equal(r[i].st.dsn, "4.4.1");
		assert_string_equal(r[i].st.text, want);
	}
}

static void
test_bad_next_hop_deferred(void **state)
{
	(void)state;
	struct pt_transport_rcpt r[2] = { { .address = "x@a.test", .nexthop = "[unclosed" },
		rcpt("good@a.test", NULL, srv_port) };
	run_deliver(r, 2);
	assert_int_equal(r[0].st.code, 450);
	assert_string_equal(r[0].st.dsn, "4.3.5");
	assert_int_equal(r[1].st.code, 0);
}

static void
test_connection_reused_across_messages(void **state)
{
	(void)state;
	struct pt_loop *loop = pt_loop_new();
	int before = srv_accepts, rsets = srv_rsets;
	for (int k = 0; k < 3; k++) {
		struct pt_transport_rcpt r[1] = { rcpt("good@a.test", NULL, srv_port) };
		struct run run = { loop, 0 };
		struct pt_transport_msg m = { "ABCDEF0124", "", MSG, sizeof MSG - 1, time(NULL) };
		relay_deliver(loop, &m, r, 1, batch_done, &run);
		pt_loop_run(loop);
		assert_int_equal(run.done, 1);
		assert_int_equal(r[0].st.code, 0);
	}
	assert_int_equal(srv_accepts - before, 1);
	assert_int_equal(srv_rsets - rsets, 2);
	/* The null sender goes out as MAIL FROM:<>. */
	assert_int_equal(strncmp(srv_mail, "MAIL FROM:<> SIZE=", 18), 0);
	relay_close_idle();
	pt_loop_free(loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outcomes_and_wire_format),
		cmocka_unit_test(test_two_next_hops_one_down),
		cmocka_unit_test(test_bad_next_hop_deferred),
		cmocka_unit_test(test_connection_reused_across_messages),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
