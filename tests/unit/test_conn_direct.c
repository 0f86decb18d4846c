/* Unit tests of a reply written outside a core frame on a plaintext conn
 * without on_drain (the SMTP banner, the 250 after a delivery): it is on
 * the socket at once, order and the output limit hold when the socket is
 * full, a dead peer still closes the conn, and conns with on_drain keep
 * the buffered path their drain callback relies on. */
#include <errno.h>
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

struct srv {
	struct pt_conn *c;
	int closes;
	int drains;
	char reason[160];
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

static void
srv_on_read(struct pt_conn *c)
{
	size_t len;

	pt_conn_rbuf(c, &len);
	pt_conn_consume(c, len);
}

static void
srv_on_close(struct pt_conn *c, const char *reason)
{
	struct srv *s = pt_conn_proto(c);

	s->closes++;
	snprintf(s->reason, sizeof s->reason, "%s", reason);
	s->c = NULL;
}

static void
srv_on_drain(struct pt_conn *c)
{
	struct srv *s = pt_conn_proto(c);

	s->drains++;
}

static const struct pt_conn_handlers plain_handlers = { srv_on_read, srv_on_close, NULL };
static const struct pt_conn_handlers drain_handlers = { srv_on_read, srv_on_close, srv_on_drain };

static int
open_pair(struct pt_loop *loop, struct srv *s, const struct pt_conn_handlers *h)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	s->c = pt_conn_new(loop, sv[0], NULL);
	assert_non_null(s->c);
	pt_conn_set_handlers(s->c, h, s);
	return sv[1];
}

static size_t
read_avail(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t r = recv(fd, buf + got, cap - got, MSG_DONTWAIT);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

static void
test_reply_outside_frame_is_sent_at_once(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = { 0 };
	int fd = open_pair(loop, &s, &plain_handlers);
	char back[64];

	(void)state;
	/* The loop does not run: only a direct send puts it on the socket. */
	assert_int_equal(pt_conn_printf(s.c, "220 %s ESMTP\r\n", "mx.example.com.ar"), 0);
	assert_int_equal(pt_conn_pending_output(s.c), 0);
	assert_int_equal(read_avail(fd, back, sizeof back), 29);
	assert_memory_equal(back, "220 mx.example.com.ar ESMTP\r\n", 29);
	assert_int_equal(pt_conn_write(s.c, "250 2.0.0 Ok\r\n", 14), 0);
	assert_int_equal(read_avail(fd, back, sizeof back), 14);
	assert_memory_equal(back, "250 2.0.0 Ok\r\n", 14);
	assert_int_equal(s.closes, 0);
	pt_conn_close(s.c, "done");
	close(fd);
	pt_loop_free(loop);
}

/* A peer that does not read: what the socket does not take is buffered
 * behind what it took, in order, up to the output limit. */
static void
test_full_socket_keeps_order_and_limit(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = { 0 };
	int fd = open_pair(loop, &s, &plain_handlers);
	size_t chunk = 64 * 1024, queued = 0, total = 4 * chunk, got = 0;
	char *data = malloc(total), *back = malloc(total);

	(void)state;
	for (size_t i = 0; i < total; i++)
		data[i] = (char)(i % 251);
	for (size_t off = 0; off < total; off += chunk)
		assert_int_equal(pt_conn_write(s.c, data + off, chunk), 0);
	/* The first write went straight out, the rest waits in order. */
	assert_true(pt_conn_pending_output(s.c) > 0);
	assert_true(pt_conn_pending_output(s.c) < total);
	for (int round = 0; round < 2000 && got < total; round++) {
		pump(loop, 1);
		got += read_avail(fd, back + got, total - got);
	}
	assert_int_equal(got, total);
	assert_memory_equal(back, data, total);
	assert_int_equal(pt_conn_pending_output(s.c), 0);

	/* Now fill the socket and the buffer: the limit still closes. */
	int r = 0;
	while ((r = pt_conn_write(s.c, data, chunk)) == 0) {
		queued += chunk;
		assert_true(queued < 64 * (size_t)PT_CONN_WBUF_MAX);
		assert_true(pt_conn_pending_output(s.c) <= PT_CONN_WBUF_MAX);
	}
	assert_int_equal(r, -1);
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "error: output limit exceeded");
	close(fd);
	free(data);
	free(back);
	pt_loop_free(loop);
}

static void
test_dead_peer_still_closes(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = { 0 };
	int fd = open_pair(loop, &s, &plain_handlers);

	(void)state;
	close(fd);
	/* The direct send fails (EPIPE); the loop reports it as before. */
	assert_int_equal(pt_conn_write(s.c, "250 2.0.0 Ok\r\n", 14), 0);
	pump(loop, 5);
	assert_int_equal(s.closes, 1);
	assert_true(strcmp(s.reason, "eof") == 0 || strncmp(s.reason, "error: ", 7) == 0);
	pt_loop_free(loop);
}

/* IMAP and POP3 continue their output from on_drain: for them a write
 * stays buffered until the loop sends it and calls on_drain. */
static void
test_conn_with_on_drain_stays_buffered(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = { 0 };
	int fd = open_pair(loop, &s, &drain_handlers);
	char back[64];

	(void)state;
	assert_int_equal(pt_conn_write(s.c, "* OK\r\n", 6), 0);
	assert_int_equal(pt_conn_pending_output(s.c), 6);
	assert_int_equal(read_avail(fd, back, sizeof back), 0);
	pump(loop, 2);
	assert_int_equal(read_avail(fd, back, sizeof back), 6);
	assert_int_equal(s.drains, 1);
	pt_conn_close(s.c, "done");
	close(fd);
	pt_loop_free(loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_outside_frame_is_sent_at_once),
		cmocka_unit_test(test_full_socket_keeps_order_and_limit),
		cmocka_unit_test(test_dead_peer_still_closes),
		cmocka_unit_test(test_conn_with_on_drain_stays_buffered),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
