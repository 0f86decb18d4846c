/* Unit tests of connections over socketpairs: getline at every split of
 * the input, over-long lines, input backpressure, output limit and
 * draining, idle timeout, closing from callbacks, pause/resume, memory. */
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
#include <netinet/in.h>

#include <cmocka.h>

#include "conn_int.h"
#include "net.h"

struct srv {
	struct pt_conn *c;
	size_t max;
	char log[16384];
	size_t loglen;
	int closes;
	char reason[160];
	int reads;
	int drains;
	/* behaviours */
	int hold;              /* do not consume input */
	int close_on_read;
	int quit_on_read;
	int pause_after_first;
	size_t max_rlen;
	size_t consumed;
	unsigned long sum;     /* of consumed bytes, to check integrity */
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
logf_(struct srv *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	s->loglen += (size_t)vsnprintf(s->log + s->loglen, sizeof s->log - s->loglen, fmt, ap);
	va_end(ap);
	assert_true(s->loglen < sizeof s->log);
}

static void
lines_on_read(struct pt_conn *c)
{
	struct srv *s = pt_conn_proto(c);
	const char *line;
	size_t len;
	int eol, r;

	s->reads++;
	while ((r = pt_conn_getline(c, s->max, &line, &len, &eol)) != 0) {
		if (r < 0) {
			logf_(s, "-1|");
			continue;
		}
		assert_int_equal(line[len], '\0');
		logf_(s, "%d:%.*s|", eol, (int)len, line);
		if (s->close_on_read) {
			pt_conn_close(c, "bye");
			/* Further use of the closed conn is harmless. */
			assert_int_equal(pt_conn_getline(c, s->max, &line, &len, &eol), 0);
			assert_int_equal(pt_conn_write(c, "x", 1), -1);
			return;
		}
		if (s->quit_on_read) {
			pt_conn_printf(c, "221 2.0.0 Bye %.*s\r\n", (int)len, line);
			pt_conn_close_after_write(c);
			return;
		}
		if (s->pause_after_first) {
			pt_conn_pause(c);
			return;
		}
	}
}

static void
raw_on_read(struct pt_conn *c)
{
	struct srv *s = pt_conn_proto(c);
	size_t len;
	const char *p = pt_conn_rbuf(c, &len);

	s->reads++;
	if (len > s->max_rlen)
		s->max_rlen = len;
	if (s->hold)
		return;
	for (size_t i = 0; i < len; i++)
		s->sum += (unsigned char)p[i];
	s->consumed += len;
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

static const struct pt_conn_handlers line_handlers = {lines_on_read, srv_on_close, srv_on_drain};
static const struct pt_conn_handlers raw_handlers = {raw_on_read, srv_on_close, srv_on_drain};

/* Server conn on sv[0]; returns the client fd. */
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

static void
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		assert_true(w > 0);
		p += w;
		n -= (size_t)w;
	}
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

/* ---------- getline ---------- */

static void
feed_and_check(const char *input, size_t n, size_t max, const char *expected, size_t split)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv *s = calloc(1, sizeof *s);
	int fd;

	s->max = max;
	fd = open_pair(loop, s, &line_handlers);
	if (split == (size_t)-1) {
		/* One byte at a time. */
		for (size_t i = 0; i < n; i++) {
			write_all(fd, input + i, 1);
			pump(loop, 1);
		}
	} else {
		write_all(fd, input, split);
		pump(loop, 1);
		write_all(fd, input + split, n - split);
		pump(loop, 1);
	}
	/* A loaded machine may fire the 1 ms stop timer before the read:
	 * give the loop more turns (up to 2 s) before judging. */
	for (int turn = 0; turn < 2000 && strcmp(s->log, expected) != 0; turn++)
		pump(loop, 1);
	if (strcmp(s->log, expected) != 0)
		fail_msg("split %zu: got \"%s\", want \"%s\"", split, s->log, expected);
	assert_int_equal(s->closes, 0);
	pt_conn_close(s->c, "done");
	assert_int_equal(s->closes, 1);
	assert_string_equal(s->reason, "done");
	close(fd);
	free(s);
	pt_loop_free(loop);
}

static void
check_every_split(const char *input, size_t max, const char *expected)
{
	size_t n = strlen(input);

	for (size_t k = 0; k <= n; k++)
		feed_and_check(input, n, max, expected, k);
	feed_and_check(input, n, max, expected, (size_t)-1);
}

static void
test_getline_every_split(void **state)
{
	(void)state;
	check_every_split("HELO a\r\nMAIL FROM:<x>\nbare\r\r\n\r\n"
	                  "0123456789ABCDEFG\r\nexactly16bytes!!\r\nseventeen-chars!!\nlast\r\n",
	                  16,
	                  "2:HELO a|1:MAIL FROM:<x>|2:bare\r|2:|-1|2:exactly16bytes!!|-1|2:last|");
}

static void
test_getline_long_line_dropped_to_its_end(void **state)
{
	(void)state;
	/* -1 once, even though the long line arrives in many pieces. */
	check_every_split("abcdefghijklmnopqrstuvwxyz0123456789abcdefghij\r\nok\r\n", 8, "-1|2:ok|");
	check_every_split("a\n123456789\nb\n", 8, "1:a|-1|1:b|");
	check_every_split("12345678\r\n12345678\r\r\n", 8, "2:12345678|-1|");
}

static void
test_getline_line_longer_than_buffer(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = (size_t)-1};
	size_t big = PT_CONN_RBUF_MAX + 5000;
	char *junk = malloc(big);
	int fd = open_pair(loop, &s, &line_handlers);

	(void)state;
	memset(junk, 'x', big);
	write_all(fd, junk, big);
	for (int i = 0; i < 20; i++)
		pump(loop, 1);
	write_all(fd, "\nok\n", 4);
	pump(loop, 5);
	/* A line that can never fit the input buffer is reported, not stuck. */
	assert_string_equal(s.log, "-1|1:ok|");
	pt_conn_close(s.c, "done");
	close(fd);
	free(junk);
	pt_loop_free(loop);
}

/* ---------- backpressure, output ---------- */

static void
test_input_backpressure(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.hold = 1};
	size_t total = 1024 * 1024, written = 0;
	char *data = malloc(total);
	unsigned long want_sum = 0;
	int fd = open_pair(loop, &s, &raw_handlers);

	(void)state;
	for (size_t i = 0; i < total; i++) {
		data[i] = (char)(i * 7 + i / 251);
		want_sum += (unsigned char)data[i];
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
	/* The server holds everything: its buffer stops at the limit and the
	 * kernel buffers fill until the writer gets EAGAIN. */
	for (int round = 0; round < 200; round++) {
		ssize_t w = write(fd, data + written, total - written);

		if (w > 0)
			written += (size_t)w;
		pump(loop, 1);
		if (w < 0 && errno == EAGAIN && s.max_rlen == PT_CONN_RBUF_MAX)
			break;
	}
	assert_true(written < total);
	assert_int_equal(s.max_rlen, PT_CONN_RBUF_MAX);
	{
		size_t len;

		pt_conn_rbuf(s.c, &len);
		assert_int_equal(len, PT_CONN_RBUF_MAX);
	}
	/* Consuming outside on_read reopens reading. */
	s.hold = 0;
	{
		size_t len;
		const char *p = pt_conn_rbuf(s.c, &len);

		for (size_t i = 0; i < len; i++)
			s.sum += (unsigned char)p[i];
		s.consumed += len;
		pt_conn_consume(s.c, len);
	}
	for (int round = 0; round < 5000 && s.consumed < total; round++) {
		if (written < total) {
			ssize_t w = write(fd, data + written, total - written);

			if (w > 0)
				written += (size_t)w;
		}
		pump(loop, 1);
	}
	assert_int_equal(s.consumed, total);
	assert_int_equal(s.sum, want_sum);
	assert_true(s.max_rlen <= PT_CONN_RBUF_MAX);
	pt_conn_close(s.c, "done");
	close(fd);
	free(data);
	pt_loop_free(loop);
}

static void
test_output_limit_closes(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {0};
	size_t chunk = 64 * 1024;
	char *junk = calloc(1, chunk);
	int fd = open_pair(loop, &s, &raw_handlers), r = 0;
	size_t queued = 0;

	(void)state;
	/* Nobody reads the client side and the loop does not run: the
	 * output buffer fills to the limit. */
	while (queued + chunk <= PT_CONN_WBUF_MAX) {
		assert_int_equal(pt_conn_write(s.c, junk, chunk), 0);
		queued += chunk;
	}
	assert_int_equal(pt_conn_pending_output(s.c), PT_CONN_WBUF_MAX);
	r = pt_conn_write(s.c, "x", 1);
	assert_int_equal(r, -1);
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "error: output limit exceeded");
	close(fd);
	free(junk);
	pt_loop_free(loop);
}

static void
test_output_flush_and_drain(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {0};
	size_t total = 600 * 1024, got = 0;
	char *data = malloc(total), *back = malloc(total);
	int fd = open_pair(loop, &s, &raw_handlers);

	(void)state;
	for (size_t i = 0; i < total; i++)
		data[i] = (char)(i % 253);
	assert_int_equal(pt_conn_write(s.c, data, total / 2), 0);
	assert_int_equal(pt_conn_printf(s.c, "%s", ""), 0);
	assert_int_equal(pt_conn_write(s.c, data + total / 2, total - total / 2), 0);
	for (int round = 0; round < 2000 && got < total; round++) {
		pump(loop, 1);
		got += read_avail(fd, back + got, total - got);
	}
	assert_int_equal(got, total);
	assert_memory_equal(back, data, total);
	assert_int_equal(pt_conn_pending_output(s.c), 0);
	assert_true(s.drains >= 1);
	/* Drained: the idle conn holds no buffers. */
	assert_true(pt_conn_memory(s.c) < 1024);
	pt_conn_close(s.c, "done");
	close(fd);
	free(data);
	free(back);
	pt_loop_free(loop);
}

static void
test_printf_long_reply(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {0};
	char big[3000], back[4000];
	int fd = open_pair(loop, &s, &raw_handlers);
	size_t got;

	(void)state;
	memset(big, 'q', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(pt_conn_printf(s.c, "250 %s\r\n", big), 0);
	pump(loop, 2);
	got = read_avail(fd, back, sizeof back);
	assert_int_equal(got, 4 + sizeof big - 1 + 2);
	assert_memory_equal(back, "250 qqq", 7);
	assert_memory_equal(back + got - 2, "\r\n", 2);
	pt_conn_close(s.c, "done");
	close(fd);
	pt_loop_free(loop);
}

/* ---------- timeouts and closing ---------- */

static void
test_idle_timeout(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100};
	int fd = open_pair(loop, &s, &line_handlers);
	uint64_t start = pt_loop_now(loop);

	(void)state;
	pt_conn_set_timeout(s.c, 60);
	/* Reads every 30 ms keep it alive well past 60 ms. */
	for (int i = 0; i < 6; i++) {
		write_all(fd, "NOOP\r\n", 6);
		pump(loop, 30);
		assert_int_equal(s.closes, 0);
	}
	assert_true(pt_loop_now(loop) - start >= 150);
	start = pt_loop_now(loop);
	pump(loop, 200);
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "timeout");
	close(fd);
	pt_loop_free(loop);
}

/* Issue #11 item 7 (slowloris): a byte every 20 ms keeps the idle timer
 * happy forever, but never moves the deadline. */
static void
test_deadline_ignores_trickle(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100};
	int fd = open_pair(loop, &s, &line_handlers);
	uint64_t start = pt_loop_now(loop);

	(void)state;
	pt_conn_set_timeout(s.c, 60);
	pt_conn_set_deadline(s.c, 150);
	for (int i = 0; i < 20 && s.closes == 0; i++) {
		write_all(fd, "N", 1);
		pump(loop, 20);
	}
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "timeout");
	assert_true(pt_loop_now(loop) - start >= 150);
	assert_true(pt_loop_now(loop) - start < 400);
	close(fd);
	pt_loop_free(loop);
}

/* Cleared (a login made it in time), only the idle timeout is left. */
static void
test_deadline_cleared(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100};
	int fd = open_pair(loop, &s, &line_handlers);

	(void)state;
	pt_conn_set_timeout(s.c, 60);
	pt_conn_set_deadline(s.c, 50);
	pt_conn_set_deadline(s.c, 0);
	for (int i = 0; i < 6; i++) {
		write_all(fd, "NOOP\r\n", 6);
		pump(loop, 30);
		assert_int_equal(s.closes, 0);
	}
	pt_conn_set_timeout(s.c, 0);
	pump(loop, 100);
	assert_int_equal(s.closes, 0);
	pt_conn_close(s.c, "done");
	close(fd);
	pt_loop_free(loop);
}

static void
test_close_inside_on_read(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100, .close_on_read = 1};
	int fd = open_pair(loop, &s, &line_handlers);

	(void)state;
	assert_int_equal(pt_conn_count(), 1);
	write_all(fd, "ONE\r\nTWO\r\n", 10);
	pump(loop, 5);
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "bye");
	assert_string_equal(s.log, "2:ONE|");
	assert_int_equal(pt_conn_count(), 0);
	close(fd);
	pt_loop_free(loop);
}

static void
test_close_after_write(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100, .quit_on_read = 1};
	int fd = open_pair(loop, &s, &line_handlers);
	char buf[100];
	ssize_t n;

	(void)state;
	write_all(fd, "QUIT\r\nNOT-READ\r\n", 16);
	pump(loop, 5);
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "closed");
	assert_string_equal(s.log, "2:QUIT|");
	n = read(fd, buf, sizeof buf);
	assert_int_equal(n, 20);
	assert_memory_equal(buf, "221 2.0.0 Bye QUIT\r\n", 20);
	assert_int_equal(read(fd, buf, sizeof buf), 0);  /* then EOF */
	close(fd);
	pt_loop_free(loop);
}

static void
test_eof(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100};
	int fd = open_pair(loop, &s, &line_handlers);

	(void)state;
	write_all(fd, "LAST\r\npartial", 13);
	close(fd);
	pump(loop, 5);
	/* Data before the EOF is delivered first, then one close. */
	assert_string_equal(s.log, "2:LAST|");
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "eof");
	pt_loop_free(loop);
}

static void
test_peer_reset_on_write(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {0};
	int fd = open_pair(loop, &s, &raw_handlers);

	(void)state;
	close(fd);
	pt_conn_write(s.c, "hello\r\n", 7);
	pump(loop, 5);
	assert_int_equal(s.closes, 1);
	/* Either the read side sees EOF or the write fails with EPIPE. */
	assert_true(strcmp(s.reason, "eof") == 0 || strncmp(s.reason, "error: ", 7) == 0);
	pt_loop_free(loop);
}

/* The peer read all we had sent, wrote its last line and hung up (no
 * reset, only a hang-up) while more output waited here: the flush meets
 * EPIPE first, and on a conn that asked for it the last line must still
 * be delivered (a mail process's "* BYE" relayed by the worker). */
static void
test_peer_last_words_before_epipe(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100};
	int fd = open_pair(loop, &s, &line_handlers);

	(void)state;
	pt_conn_keep_last_words(s.c);
	write_all(fd, "* BYE Too long argument.\r\n", 26);
	close(fd);
	/* Output first in line: on_drain makes it wait for the loop. */
	assert_int_equal(pt_conn_write(s.c, "xxxx", 4), 0);
	pump(loop, 5);
	assert_int_equal(s.drains, 1);  /* the dropped output counts as drained */
	assert_string_equal(s.log, "2:* BYE Too long argument.|");
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "eof");
	pt_loop_free(loop);
}

static void
resume_on_drain(struct pt_conn *c)
{
	struct srv *s = pt_conn_proto(c);

	s->drains++;
	pt_conn_resume(c);
}

static const struct pt_conn_handlers paused_until_drain_handlers = {lines_on_read, srv_on_close,
                                                                    resume_on_drain};

/* An owner that pauses input until its output drained (backpressure):
 * the dropped output counts as drained, or the conn, paused and with
 * nothing to write, would watch nothing and never deliver the last line
 * nor close. */
static void
test_peer_last_words_paused_until_drain(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100};
	int fd = open_pair(loop, &s, &paused_until_drain_handlers);

	(void)state;
	pt_conn_keep_last_words(s.c);
	write_all(fd, "* BYE Too long argument.\r\n", 26);
	close(fd);
	assert_int_equal(pt_conn_write(s.c, "xxxx", 4), 0);
	pt_conn_pause(s.c);
	pump(loop, 5);
	assert_int_equal(s.drains, 1);
	assert_string_equal(s.log, "2:* BYE Too long argument.|");
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "eof");
	pt_loop_free(loop);
}

/* The same on a conn that did not ask for last words (every client
 * conn): the failed write closes it, and what the peer sent before it
 * hung up is not run (a client that pipelines commands and hangs up is
 * not served them with the answers dropped). */
static void
test_peer_epipe_closes_without_last_words(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100};
	int fd = open_pair(loop, &s, &line_handlers);

	(void)state;
	write_all(fd, "A1 NOOP\r\nA2 NOOP\r\n", 18);
	close(fd);
	assert_int_equal(pt_conn_write(s.c, "xxxx", 4), 0);
	pump(loop, 5);
	assert_string_equal(s.log, "");
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "error: Broken pipe");
	pt_loop_free(loop);
}

/* The peer closes with our output unread: a reset (ECONNRESET), with
 * what it wrote before still queued here. */
static void
reset_after_lines(struct pt_loop *loop, struct srv *s, int fd)
{
	assert_int_equal(pt_conn_write(s->c, "* OK\r\n", 6), 0);
	pump(loop, 5);  /* sent; the peer never reads it */
	assert_int_equal(pt_conn_pending_output(s->c), 0);
	write_all(fd, "A1 NOOP\r\nA2 NOOP\r\n", 18);
	close(fd);
	pump(loop, 5);
}

static void
test_peer_reset_closes_without_last_words(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100};
	int fd = open_pair(loop, &s, &line_handlers);

	(void)state;
	reset_after_lines(loop, &s, fd);
	assert_string_equal(s.log, "");
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "error: Connection reset by peer");
	pt_loop_free(loop);
}

/* The same from a client over TCP that pipelines commands and resets
 * (RST, SO_LINGER 0) while an answer waits here: closed, nothing run. */
static void
test_tcp_client_reset_closes(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100};
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof a;
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), cl, sv;

	(void)state;
	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	cl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(cl, (struct sockaddr *)&a, sizeof a), 0);
	sv = accept(l, NULL, NULL);
	assert_true(sv >= 0);
	close(l);
	s.c = pt_conn_new(loop, sv, NULL);
	assert_non_null(s.c);
	pt_conn_set_handlers(s.c, &line_handlers, &s);
	write_all(cl, "A1 NOOP\r\nA2 NOOP\r\n", 18);
	assert_int_equal(setsockopt(cl, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
	close(cl);
	assert_int_equal(pt_conn_write(s.c, "* OK\r\n", 6), 0);
	pump(loop, 20);
	assert_string_equal(s.log, "");
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "error: Connection reset by peer");
	pt_loop_free(loop);
}

static void
test_peer_last_words_before_reset(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100};
	int fd = open_pair(loop, &s, &line_handlers);

	(void)state;
	pt_conn_keep_last_words(s.c);
	reset_after_lines(loop, &s, fd);
	assert_string_equal(s.log, "2:A1 NOOP|2:A2 NOOP|");
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "eof");
	pt_loop_free(loop);
}

static void
resume_timer(struct pt_loop *loop, void *arg)
{
	struct srv *s = arg;

	(void)loop;
	logf_(s, "R|");
	s->pause_after_first = 0;
	pt_conn_resume(s->c);
}

static void
test_pause_resume(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100, .pause_after_first = 1};
	int fd = open_pair(loop, &s, &line_handlers);

	(void)state;
	write_all(fd, "A\r\nB\r\n", 6);
	pump(loop, 5);
	assert_string_equal(s.log, "2:A|");
	/* Paused: new input is not delivered. */
	write_all(fd, "C\r\n", 3);
	pump(loop, 10);
	assert_string_equal(s.log, "2:A|");
	/* Resume delivers what was buffered (B) without new input arriving,
	 * then C from the kernel. */
	pt_timer_add(loop, 1, resume_timer, &s);
	pump(loop, 10);
	assert_string_equal(s.log, "2:A|R|2:B|2:C|");
	pt_conn_close(s.c, "done");
	close(fd);
	pt_loop_free(loop);
}

/* Pipelined lines, then the peer closes while the conn is paused: the
 * lines held back are all delivered before the EOF closes the conn
 * (sendmail -bs: commands behind a DATA end, then the end of stdin). */
static void
test_eof_behind_paused_input(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 100, .pause_after_first = 1};
	int fd = open_pair(loop, &s, &line_handlers);

	(void)state;
	write_all(fd, "A\r\nB\r\nC\r\n", 9);
	close(fd);
	pump(loop, 5);
	assert_string_equal(s.log, "2:A|");
	assert_int_equal(s.closes, 0);
	pt_timer_add(loop, 1, resume_timer, &s);
	pump(loop, 10);
	assert_string_equal(s.log, "2:A|R|2:B|2:C|");
	assert_int_equal(s.closes, 1);
	assert_string_equal(s.reason, "eof");
	pt_loop_free(loop);
}

static void
test_close_all_and_count(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s[3];
	int fds[3];

	(void)state;
	memset(s, 0, sizeof s);
	for (int i = 0; i < 3; i++) {
		s[i].max = 100;
		fds[i] = open_pair(loop, &s[i], &line_handlers);
	}
	assert_int_equal(pt_conn_count(), 3);
	pt_conn_close_all("shutdown");
	assert_int_equal(pt_conn_count(), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(s[i].closes, 1);
		assert_string_equal(s[i].reason, "shutdown");
		close(fds[i]);
	}
	pt_loop_free(loop);
}

static void
test_idle_memory_small(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {.max = 1000};
	int fd = open_pair(loop, &s, &line_handlers);
	char buf[64];

	(void)state;
	write_all(fd, "EHLO client.example\r\n", 21);
	pump(loop, 2);
	pt_conn_write(s.c, "250 ok\r\n", 8);
	pump(loop, 2);
	assert_int_equal(read_avail(fd, buf, sizeof buf), 8);
	print_message("idle plaintext conn holds %zu bytes\n", pt_conn_memory(s.c));
	assert_true(pt_conn_memory(s.c) < 1024);
	pt_conn_close(s.c, "done");
	close(fd);
	pt_loop_free(loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_getline_every_split),
		cmocka_unit_test(test_getline_long_line_dropped_to_its_end),
		cmocka_unit_test(test_getline_line_longer_than_buffer),
		cmocka_unit_test(test_input_backpressure),
		cmocka_unit_test(test_output_limit_closes),
		cmocka_unit_test(test_output_flush_and_drain),
		cmocka_unit_test(test_printf_long_reply),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_close_inside_on_read),
		cmocka_unit_test(test_close_after_write),
		cmocka_unit_test(test_eof),
		cmocka_unit_test(test_peer_reset_on_write),
		cmocka_unit_test(test_peer_last_words_before_epipe),
		cmocka_unit_test(test_peer_last_words_paused_until_drain),
		cmocka_unit_test(test_peer_epipe_closes_without_last_words),
		cmocka_unit_test(test_peer_reset_closes_without_last_words),
		cmocka_unit_test(test_tcp_client_reset_closes),
		cmocka_unit_test(test_peer_last_words_before_reset),
		cmocka_unit_test(test_pause_resume),
		cmocka_unit_test(test_eof_behind_paused_input),
		cmocka_unit_test(test_close_all_and_count),
		cmocka_unit_test(test_idle_memory_small),
		cmocka_unit_test(test_deadline_ignores_trickle),
		cmocka_unit_test(test_deadline_cleared),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
