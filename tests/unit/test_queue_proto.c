/* Unit tests for the worker <-> delivery agent message format and fd
 * passing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "queue.h"

static void
sample(struct pt_agent_req *r, struct pt_agent_item it[3])
{
	memset(r, 0, sizeof *r);
	memset(it, 0, 3 * sizeof *it);
	r->seq = 42;
	r->queue_id = "ABCDEF0123";
	r->sender = "";
	r->arrival = 1795848812;
	r->len = 4096;
	r->n = 3;
	r->item = it;
	it[0].kind = PT_AGENT_MAILBOX;
	it[0].recipient = "alice@example.com.ar";
	it[0].orig = "sysadmin@example.com.ar";
	snprintf(it[0].user.name, sizeof it[0].user.name, "alice");
	it[0].user.uid = 1001;
	it[0].user.gid = 1001;
	snprintf(it[0].user.home, sizeof it[0].user.home, "/home/alice");
	it[1].kind = PT_AGENT_FILE;
	it[1].recipient = "archive@example.com.ar";
	it[1].target = "/var/log/archive";
	it[1].owner = "root";
	it[2].kind = PT_AGENT_COMMAND;
	it[2].recipient = "pipe@example.com.ar";
	it[2].target = "|/usr/bin/procmail -a x";
	it[2].owner = "root";
}

static void
test_request_roundtrip(void **state)
{
	(void)state;
	struct pt_agent_req r, d;
	struct pt_agent_item it[3];
	char buf[4096];
	sample(&r, it);
	ssize_t n = pt_agent_req_encode(&r, buf, sizeof buf);
	assert_true(n > 0);
	assert_int_equal(pt_agent_req_decode(buf, (size_t)n, &d), 0);
	assert_int_equal(d.seq, 42);
	assert_string_equal(d.queue_id, "ABCDEF0123");
	assert_string_equal(d.sender, "");
	assert_int_equal(d.arrival, 1795848812);
	assert_int_equal(d.len, 4096);
	assert_int_equal(d.n, 3);
	assert_int_equal(d.item[0].kind, PT_AGENT_MAILBOX);
	assert_string_equal(d.item[0].recipient, "alice@example.com.ar");
	assert_string_equal(d.item[0].orig, "sysadmin@example.com.ar");
	assert_string_equal(d.item[0].user.name, "alice");
	assert_int_equal(d.item[0].user.uid, 1001);
	assert_string_equal(d.item[0].user.home, "/home/alice");
	assert_null(d.item[0].target);
	assert_string_equal(d.item[2].target, "|/usr/bin/procmail -a x");
	assert_null(d.item[1].orig);
	pt_agent_req_free(&d);

	/* Every truncation and every trailing junk is refused. */
	for (ssize_t cut = 0; cut < n; cut++)
		assert_int_equal(pt_agent_req_decode(buf, (size_t)cut, &d), -1);
	buf[n] = 'x';
	assert_int_equal(pt_agent_req_decode(buf, (size_t)n + 1, &d), -1);
	/* Does not fit: -1, no overflow. */
	assert_int_equal(pt_agent_req_encode(&r, buf, 20), -1);
}

/* A small message travels inline right after the request: decode points
 * at it; anything but the whole message after the request is refused. */
static void
test_request_with_inline_message(void **state)
{
	(void)state;
	struct pt_agent_req r, d;
	struct pt_agent_item it[3];
	char buf[8192];
	char msg[4096];
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (char)('a' + i % 26);
	sample(&r, it);
	r.len = sizeof msg;
	ssize_t n = pt_agent_req_encode(&r, buf, sizeof buf);
	assert_true(n > 0);
	memcpy(buf + n, msg, sizeof msg);
	assert_int_equal(pt_agent_req_decode(buf, (size_t)n + sizeof msg, &d), 0);
	assert_int_equal(d.len, sizeof msg);
	assert_ptr_equal(d.data, buf + n);
	assert_memory_equal(d.data, msg, sizeof msg);
	assert_int_equal(d.n, 3);
	pt_agent_req_free(&d);
	assert_null(d.data);
	/* Without the message (it comes as a memfd): no data pointer. */
	assert_int_equal(pt_agent_req_decode(buf, (size_t)n, &d), 0);
	assert_null(d.data);
	pt_agent_req_free(&d);
	/* A byte short or a byte over is refused, at every length between. */
	for (size_t extra = 1; extra < sizeof msg; extra += 97)
		assert_int_equal(pt_agent_req_decode(buf, (size_t)n + extra, &d), -1);
	assert_int_equal(pt_agent_req_decode(buf, (size_t)n + sizeof msg - 1, &d), -1);
	buf[n + sizeof msg] = 'x';
	assert_int_equal(pt_agent_req_decode(buf, (size_t)n + sizeof msg + 1, &d), -1);
}

static void
test_request_hostile(void **state)
{
	(void)state;
	struct pt_agent_req r, d;
	struct pt_agent_item it[3];
	char buf[4096];
	sample(&r, it);
	/* A mailbox delivery without a user, an unknown kind: refused. */
	it[0].user.name[0] = 0;
	ssize_t n = pt_agent_req_encode(&r, buf, sizeof buf);
	assert_int_equal(pt_agent_req_decode(buf, (size_t)n, &d), -1);
	sample(&r, it);
	it[1].kind = 9;
	n = pt_agent_req_encode(&r, buf, sizeof buf);
	assert_int_equal(pt_agent_req_decode(buf, (size_t)n, &d), -1);
	/* Random bytes never crash and never decode. */
	srand(3);
	for (int k = 0; k < 2000; k++) {
		sample(&r, it);
		n = pt_agent_req_encode(&r, buf, sizeof buf);
		buf[rand() % n] = (char)rand();
		buf[rand() % n] = (char)rand();
		if (pt_agent_req_decode(buf, (size_t)n, &d) == 0)
			pt_agent_req_free(&d);
	}
}

static void
test_response_roundtrip(void **state)
{
	(void)state;
	struct pt_status st[2] = { { 0, "2.0.0", "delivered to mailbox" },
		{ 450, "4.2.1", "mailbox is locked" } };
	struct pt_agent_resp r = { 7, 2, st }, d;
	char buf[1024];
	ssize_t n = pt_agent_resp_encode(&r, buf, sizeof buf);
	assert_true(n > 0);
	assert_int_equal(pt_agent_resp_decode(buf, (size_t)n, &d), 0);
	assert_int_equal(d.seq, 7);
	assert_int_equal(d.n, 2);
	assert_int_equal(d.st[1].code, 450);
	assert_string_equal(d.st[1].dsn, "4.2.1");
	assert_string_equal(d.st[0].text, "delivered to mailbox");
	pt_agent_resp_free(&d);
	for (ssize_t cut = 0; cut < n; cut++)
		assert_int_equal(pt_agent_resp_decode(buf, (size_t)cut, &d), -1);
	st[0].code = 99;
	n = pt_agent_resp_encode(&r, buf, sizeof buf);
	assert_int_equal(pt_agent_resp_decode(buf, (size_t)n, &d), -1);
}

static void
test_fd_passing(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	int mfd = memfd_create("msg", MFD_CLOEXEC);
	assert_true(mfd >= 0);
	assert_int_equal(write(mfd, "hello\n", 6), 6);
	assert_int_equal(pt_agent_send(sv[0], "abc", 3, mfd), 0);
	close(mfd);
	char buf[16];
	int fd;
	assert_int_equal(pt_agent_recv(sv[1], buf, sizeof buf, &fd), 3);
	assert_true(fd >= 0);
	char got[8] = { 0 };
	assert_int_equal(pread(fd, got, 6, 0), 6);
	assert_string_equal(got, "hello\n");
	close(fd);
	/* Without fd; then EOF. */
	assert_int_equal(pt_agent_send(sv[0], "x", 1, -1), 0);
	assert_int_equal(pt_agent_recv(sv[1], buf, sizeof buf, &fd), 1);
	assert_int_equal(fd, -1);
	/* A datagram bigger than the buffer is an error, not a silent cut. */
	assert_int_equal(pt_agent_send(sv[0], "0123456789abcdefXYZ", 19, -1), 0);
	assert_int_equal(pt_agent_recv(sv[1], buf, sizeof buf, &fd), -1);
	close(sv[0]);
	assert_int_equal(pt_agent_recv(sv[1], buf, sizeof buf, &fd), 0);
	close(sv[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_roundtrip),
		cmocka_unit_test(test_request_with_inline_message),
		cmocka_unit_test(test_request_hostile),
		cmocka_unit_test(test_response_roundtrip),
		cmocka_unit_test(test_fd_passing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
