/* Unit tests of the worker <-> mail agent <-> mail process messages:
 * round trips, every truncation and every single-byte corruption of a
 * request decoded safely, field limits, replies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "session_int.h"

static struct pt_session_info
sample(void)
{
	struct pt_session_info i = {
		.protocol = "imap", .user = "alice", .mech = "PLAIN", .session_id = "vaGQAVBh5Ip",
		.handoff = "a001\0x", .handoff_len = 6, .peer_addr = "192.0.2.7", .local_addr = "::1",
		.peer_port = 50123, .local_port = 993, .tls = 1,
	};
	return i;
}

static void
test_request_round_trip(void **state)
{
	(void)state;
	unsigned char buf[PT_SESSION_WIRE_MAX];
	struct pt_session_info in = sample(), out;
	int n = pt_session_wire_request_encode(77, &in, buf, sizeof buf);
	assert_true(n > 12);
	assert_int_equal(pt_session_wire_type(buf, (size_t)n), PT_SW_REQUEST);
	uint32_t id = 0;
	assert_int_equal(pt_session_wire_request_decode(buf, (size_t)n, &id, &out), 0);
	assert_int_equal(id, 77);
	assert_string_equal(out.protocol, "imap");
	assert_string_equal(out.user, "alice");
	assert_string_equal(out.mech, "PLAIN");
	assert_string_equal(out.session_id, "vaGQAVBh5Ip");
	assert_string_equal(out.peer_addr, "192.0.2.7");
	assert_string_equal(out.local_addr, "::1");
	assert_int_equal(out.peer_port, 50123);
	assert_int_equal(out.local_port, 993);
	assert_int_equal(out.tls, 1);
	assert_int_equal(out.handoff_len, 6);
	assert_memory_equal(out.handoff, "a001\0x", 6);
}

static void
test_request_optional_fields_empty(void **state)
{
	(void)state;
	unsigned char buf[PT_SESSION_WIRE_MAX];
	struct pt_session_info in = { .protocol = "pop3", .user = "bob" }, out;
	int n = pt_session_wire_request_encode(1, &in, buf, sizeof buf);
	assert_true(n > 0);
	uint32_t id;
	assert_int_equal(pt_session_wire_request_decode(buf, (size_t)n, &id, &out), 0);
	assert_string_equal(out.mech, "");
	assert_string_equal(out.peer_addr, "");
	assert_null(out.handoff);
	assert_int_equal(out.handoff_len, 0);
	assert_int_equal(out.tls, 0);
}

/* A SEQPACKET message arrives whole or not at all, but a short or damaged
 * one must be refused, never read past. */
static void
test_request_every_truncation_refused(void **state)
{
	(void)state;
	unsigned char buf[PT_SESSION_WIRE_MAX];
	struct pt_session_info in = sample(), out;
	int n = pt_session_wire_request_encode(5, &in, buf, sizeof buf);
	for (int len = 0; len < n; len++) {
		unsigned char *copy = malloc((size_t)len + 1);
		memcpy(copy, buf, (size_t)len);
		uint32_t id;
		assert_int_equal(pt_session_wire_request_decode(copy, (size_t)len, &id, &out), -1);
		free(copy);
	}
	/* One byte too many is refused as well. */
	buf[n] = 'x';
	uint32_t id;
	assert_int_equal(pt_session_wire_request_decode(buf, (size_t)n + 1, &id, &out), -1);
}

static void
test_request_every_corruption_is_safe(void **state)
{
	(void)state;
	unsigned char buf[PT_SESSION_WIRE_MAX];
	struct pt_session_info in = sample(), out;
	int n = pt_session_wire_request_encode(5, &in, buf, sizeof buf);
	static const unsigned char vals[] = { 0, 1, 'A', '/', 0xff };
	for (int at = 0; at < n; at++) {
		for (size_t v = 0; v < sizeof vals; v++) {
			unsigned char *copy = malloc((size_t)n);
			memcpy(copy, buf, (size_t)n);
			copy[at] = vals[v];
			uint32_t id;
			if (pt_session_wire_request_decode(copy, (size_t)n, &id, &out) == 0) {
				/* Accepted: every string ends inside the message. */
				assert_true(strlen(out.protocol) < PT_SESSION_PROTO_MAX);
				assert_true(strlen(out.user) < PT_SESSION_NAME_MAX);
				assert_true(out.handoff_len <= PT_SESSION_HANDOFF_MAX);
				assert_true(out.protocol[0] && out.user[0]);
			}
			free(copy);
		}
	}
}

static void
test_request_limits(void **state)
{
	(void)state;
	unsigned char buf[PT_SESSION_WIRE_MAX];
	char big[PT_SESSION_HANDOFF_MAX + 1], name[PT_SESSION_NAME_MAX + 1];
	memset(big, 'h', sizeof big);
	memset(name, 'u', sizeof name);
	name[PT_SESSION_NAME_MAX] = '\0';
	struct pt_session_info in = sample();
	in.handoff = big;
	in.handoff_len = PT_SESSION_HANDOFF_MAX;
	assert_true(pt_session_wire_request_encode(1, &in, buf, sizeof buf) > 0);
	in.handoff_len = PT_SESSION_HANDOFF_MAX + 1;
	assert_int_equal(pt_session_wire_request_encode(1, &in, buf, sizeof buf), -1);
	in = sample();
	in.user = name;
	assert_int_equal(pt_session_wire_request_encode(1, &in, buf, sizeof buf), -1);
	name[PT_SESSION_NAME_MAX - 1] = '\0';
	assert_true(pt_session_wire_request_encode(1, &in, buf, sizeof buf) > 0);
	in = sample();
	in.user = "";
	assert_int_equal(pt_session_wire_request_encode(1, &in, buf, sizeof buf), -1);
	in = sample();
	in.protocol = NULL;
	assert_int_equal(pt_session_wire_request_encode(1, &in, buf, sizeof buf), -1);
	/* A protocol that is not a plain word never names a service. */
	in = sample();
	in.protocol = "../x";
	assert_int_equal(pt_session_wire_request_encode(1, &in, buf, sizeof buf), -1);
	in = sample();
	assert_int_equal(pt_session_wire_request_encode(1, &in, buf, 20), -1);
}

static void
test_reply_round_trip(void **state)
{
	(void)state;
	unsigned char buf[512];
	struct pt_session_reply ok = { .id = 9, .ok = 1, .pid = 1234 }, r;
	int n = pt_session_wire_reply_encode(&ok, buf, sizeof buf);
	assert_int_equal(n, 9);
	assert_int_equal(pt_session_wire_reply_decode(buf, (size_t)n, &r), 0);
	assert_int_equal(r.ok, 1);
	assert_int_equal(r.id, 9);
	assert_int_equal(r.pid, 1234);

	struct pt_session_reply fail = { .id = 10, .ok = 0, .code = "LIMIT", .reason = "too many" };
	n = pt_session_wire_reply_encode(&fail, buf, sizeof buf);
	assert_true(n > 5);
	assert_int_equal(pt_session_wire_reply_decode(buf, (size_t)n, &r), 0);
	assert_int_equal(r.ok, 0);
	assert_int_equal(r.id, 10);
	assert_string_equal(r.code, "LIMIT");
	assert_string_equal(r.reason, "too many");
	for (int len = 0; len < n; len++)
		assert_int_equal(pt_session_wire_reply_decode(buf, (size_t)len, &r), -1);
}

static void
test_reply_refuses_bad_messages(void **state)
{
	(void)state;
	struct pt_session_reply r;
	unsigned char zero_pid[9] = { 'K', 1, 0, 0, 0, 0, 0, 0, 0 };
	assert_int_equal(pt_session_wire_reply_decode(zero_pid, 9, &r), -1);
	unsigned char no_nul[] = { 'F', 1, 0, 0, 0, 'L', 'I' };
	assert_int_equal(pt_session_wire_reply_decode(no_nul, sizeof no_nul, &r), -1);
	unsigned char empty_code[] = { 'F', 1, 0, 0, 0, 0, 'x', 0 };
	assert_int_equal(pt_session_wire_reply_decode(empty_code, sizeof empty_code, &r), -1);
	unsigned char trailing[] = { 'F', 1, 0, 0, 0, 'L', 0, 'x', 0, 'y' };
	assert_int_equal(pt_session_wire_reply_decode(trailing, sizeof trailing, &r), -1);
	unsigned char other[] = { 'Q', 1, 0, 0, 0, 0, 0, 0, 0 };
	assert_int_equal(pt_session_wire_reply_decode(other, sizeof other, &r), -1);
	unsigned char big[600];
	memset(big, 'a', sizeof big);
	big[0] = 'F';
	big[sizeof big - 1] = 0;
	assert_int_equal(pt_session_wire_reply_decode(big, sizeof big, &r), -1);
	struct pt_session_reply none = { .id = 1 };
	unsigned char buf[64];
	assert_int_equal(pt_session_wire_reply_encode(&none, buf, sizeof buf), -1);
	assert_int_equal(pt_session_wire_type(buf, 0), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_round_trip),
		cmocka_unit_test(test_request_optional_fields_empty),
		cmocka_unit_test(test_request_every_truncation_refused),
		cmocka_unit_test(test_request_every_corruption_is_safe),
		cmocka_unit_test(test_request_limits),
		cmocka_unit_test(test_reply_round_trip),
		cmocka_unit_test(test_reply_refuses_bad_messages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
