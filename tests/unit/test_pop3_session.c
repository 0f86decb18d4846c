/* Unit tests of the POP3 post-login session over a socketpair, against an
 * in-memory mailbox service: replies of every transaction command, the
 * fixed message list, dot-stuffing and the final CRLF, pipelining,
 * streaming a message larger than the output buffer limit, and the
 * UPDATE state (expunge + \Seen at QUIT; nothing on a dropped connection
 * or when the expunge fails). */
#include <poll.h>
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

#include "net.h"
#include "pop3/pop3.h"
#include "postern/event.h"
#include "postern/mailbox.h"
#include "postern/services.h"

/* ---- the fake store ---- */

struct fake_msg {
	uint32_t uid, flags;
	char *data;
	size_t len, hdr_len;
};

static struct {
	struct fake_msg m[8];
	size_t n;
	struct pt_msg_info info[8];
	int fail_open, fail_expunge;
	uint32_t expunged[8];
	size_t nexpunged;
	struct pt_flag_update seen[8];
	size_t nseen;
	int reads, releases, closed, store_closed;
} F;

static int dummy_store, dummy_box;

static struct pt_mstore *
f_store_open(const struct pt_user *u, struct pt_status *st)
{
	(void)u;
	(void)st;
	return (struct pt_mstore *)&dummy_store;
}

static void f_store_close(struct pt_mstore *ms) { (void)ms; F.store_closed++; }

static struct pt_mbox *
f_open(struct pt_mstore *ms, const char *name, int ro, struct pt_status *st)
{
	(void)ms;
	assert_string_equal(name, "INBOX");
	assert_int_equal(ro, 0);
	if (F.fail_open) {
		pt_status_set(st, 451, "INUSE", "mailbox is locked");
		return NULL;
	}
	return (struct pt_mbox *)&dummy_box;
}

static void f_close(struct pt_mbox *mb) { (void)mb; F.closed++; }

static int
f_sync(struct pt_mbox *mb, int *changed, struct pt_status *st)
{
	(void)mb;
	(void)st;
	*changed = 0;
	return 0;
}

static size_t f_count(const struct pt_mbox *mb) { (void)mb; return F.n; }

static const struct pt_msg_info *
f_info(const struct pt_mbox *mb, size_t i)
{
	(void)mb;
	F.info[i].uid = F.m[i].uid;
	F.info[i].flags = F.m[i].flags;
	F.info[i].size = F.m[i].len;
	return &F.info[i];
}

static size_t
f_find(const struct pt_mbox *mb, uint32_t uid)
{
	(void)mb;
	for (size_t i = 0; i < F.n; i++)
		if (F.m[i].uid == uid)
			return i;
	return (size_t)-1;
}

static uint32_t f_uidvalidity(const struct pt_mbox *mb) { (void)mb; return 1795848815u; }

static int
f_read(struct pt_mbox *mb, uint32_t uid, struct pt_msg_text *out, struct pt_status *st)
{
	size_t i = f_find(mb, uid);

	if (i == (size_t)-1) {
		pt_status_set(st, 550, "NONEXISTENT", "no such message");
		return -1;
	}
	F.reads++;
	out->data = F.m[i].data;
	out->len = F.m[i].len;
	out->hdr_len = F.m[i].hdr_len;
	out->priv = &F;
	return 0;
}

static void
f_release(struct pt_mbox *mb, struct pt_msg_text *t)
{
	(void)mb;
	assert_ptr_equal(t->priv, &F);
	F.releases++;
}

static int
f_set_flags(struct pt_mbox *mb, const struct pt_flag_update *u, size_t n, struct pt_status *st)
{
	(void)mb;
	(void)st;
	for (size_t i = 0; i < n; i++)
		F.seen[F.nseen++] = u[i];
	return 0;
}

static int
f_expunge(struct pt_mbox *mb, const uint32_t *uids, size_t n, struct pt_status *st)
{
	(void)mb;
	if (F.fail_expunge) {
		pt_status_set(st, 451, "", "I/O error");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		F.expunged[F.nexpunged++] = uids[i];
	return 0;
}

static const struct pt_mailbox_ops fake_ops = {
	.store_open = f_store_open, .store_close = f_store_close, .open = f_open, .close = f_close,
	.sync = f_sync, .count = f_count, .info = f_info, .find = f_find, .uidvalidity = f_uidvalidity,
	.read = f_read, .release = f_release, .set_flags = f_set_flags, .expunge = f_expunge,
};

static void
add_msg(uint32_t uid, uint32_t flags, const char *hdr, const char *body)
{
	struct fake_msg *m = &F.m[F.n++];
	size_t hl = strlen(hdr), bl = strlen(body);

	m->uid = uid;
	m->flags = flags;
	m->data = malloc(hl + bl + 1);
	memcpy(m->data, hdr, hl);
	memcpy(m->data + hl, body, bl + 1);
	m->len = hl + bl;
	m->hdr_len = hl;
}

#define HDR1 "Subject: one\r\nFrom: a@b\r\n\r\n"
#define BODY1 "line1\r\n.dot line\r\nline3\r\n"
#define HDR2 "Subject: two\r\n\r\n"
#define BODY2 "no final line end"
#define HDR3 "Subject: three\r\n\r\n"
#define BODY3 "x\r\n"

/* ---- the session under test ---- */

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

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	memset(&F, 0, sizeof(F));
	add_msg(1, 0, HDR1, BODY1);
	add_msg(2, PT_F_SEEN, HDR2, BODY2);
	add_msg(5, 0, HDR3, BODY3);
	fx->set = calloc(1, sizeof(*fx->set));
	fx->set->refs = 1;
	fx->set->uidl_format = strdup("%08Xu%08Xv");
	fx->set->autologout_ms = 600000;
	pop3_settings_install(fx->set);
	pt_service_register(PT_SVC_MAILBOX, &fake_ops);
	fx->loop = pt_loop_new();
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;

	if (fx->fd >= 0)
		close(fx->fd);
	pump(fx->loop, 5);
	/* Every message read was released, the folder and store closed. */
	assert_int_equal(F.reads, F.releases);
	assert_int_equal(F.closed, F.fail_open ? 0 : 1);
	assert_int_equal(F.store_closed, 1);
	pop3_settings_install(NULL);
	pt_loop_free(fx->loop);
	for (size_t i = 0; i < F.n; i++)
		free(F.m[i].data);
	free(fx);
	return 0;
}

/* Read what the server sends until want bytes came (or 3 s passed). */
static char *
read_n(struct fixture *fx, size_t want)
{
	char *buf = malloc(want + 1);
	size_t got = 0;

	for (int i = 0; i < 3000 && got < want; i++) {
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

/* Start a session as the mail process does after the hand-off. */
static void
start(struct fixture *fx)
{
	int sv[2];
	struct pt_session_info info = { .protocol = "pop3", .user = "alice", .mech = "PLAIN",
	                                 .session_id = "testsession" };
	struct pt_user u = { .name = "alice", .uid = 1000, .gid = 1000, .home = "/home/alice" };

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct pt_conn *c = pt_conn_new(fx->loop, sv[0], NULL);
	assert_non_null(c);
	fx->fd = sv[1];
	pop3_session_start(c, &info, &u);
}

/* The server closed: EOF after whatever was pending. */
static void
expect_closed(struct fixture *fx)
{
	char b;

	pump(fx->loop, 5);
	assert_int_equal(recv(fx->fd, &b, 1, MSG_DONTWAIT), 0);
}

static void
test_transaction(void **state)
{
	struct fixture *fx = *state;
	size_t s1 = strlen(HDR1 BODY1), s2 = strlen(HDR2 BODY2), s3 = strlen(HDR3 BODY3);
	char buf[256];

	start(fx);
	expect(fx, "+OK Logged in.\r\n");
	snprintf(buf, sizeof(buf), "+OK 3 %zu\r\n", s1 + s2 + s3);
	exchange(fx, "STAT\r\n", buf);
	snprintf(buf, sizeof(buf), "+OK 3 messages:\r\n1 %zu\r\n2 %zu\r\n3 %zu\r\n.\r\n", s1, s2, s3);
	exchange(fx, "LIST\r\n", buf);
	snprintf(buf, sizeof(buf), "+OK 2 %zu\r\n", s2);
	exchange(fx, "list 2\r\n", buf);
	exchange(fx, "UIDL\r\n", "+OK\r\n1 000000016b0a7a6f\r\n2 000000026b0a7a6f\r\n3 000000056b0a7a6f\r\n.\r\n");
	exchange(fx, "UIDL 3\r\n", "+OK 3 000000056b0a7a6f\r\n");
	/* RETR: the size LIST gave, a dot-stuffed body, and ".". */
	snprintf(buf, sizeof(buf), "+OK %zu octets\r\n" HDR1 "line1\r\n..dot line\r\nline3\r\n.\r\n", s1);
	exchange(fx, "RETR 1\r\n", buf);
	/* A message without a final line end gets one before the dot. */
	snprintf(buf, sizeof(buf), "+OK %zu octets\r\n" HDR2 BODY2 "\r\n.\r\n", s2);
	exchange(fx, "RETR 2\r\n", buf);
	exchange(fx, "TOP 1 0\r\n", "+OK\r\n" HDR1 ".\r\n");
	exchange(fx, "TOP 1 2\r\n", "+OK\r\n" HDR1 "line1\r\n..dot line\r\n.\r\n");
	exchange(fx, "TOP 1\r\n", "-ERR Invalid size: \r\n");
	exchange(fx, "TOP 1 x\r\n", "-ERR Invalid size: x\r\n");
	exchange(fx, "RETR 4\r\n", "-ERR There's no message 4.\r\n");
	exchange(fx, "RETR 0\r\n", "-ERR There's no message 0.\r\n");
	exchange(fx, "RETR x\r\n", "-ERR Invalid message number: x\r\n");
	exchange(fx, "RETR 99999999999\r\n", "-ERR Message number too large: 99999999999\r\n");
	exchange(fx, "RETR\r\n", "-ERR Invalid message number: \r\n");
	exchange(fx, "DELE 3\r\n", "+OK Marked to be deleted.\r\n");
	exchange(fx, "DELE 3\r\n", "-ERR Message is deleted.\r\n");
	exchange(fx, "RETR 3\r\n", "-ERR Message is deleted.\r\n");
	snprintf(buf, sizeof(buf), "+OK 2 %zu\r\n", s1 + s2);
	exchange(fx, "STAT\r\n", buf);
	snprintf(buf, sizeof(buf), "+OK 2 messages:\r\n1 %zu\r\n2 %zu\r\n.\r\n", s1, s2);
	exchange(fx, "LIST\r\n", buf);
	exchange(fx, "UIDL\r\n", "+OK\r\n1 000000016b0a7a6f\r\n2 000000026b0a7a6f\r\n.\r\n");
	exchange(fx, "RSET\r\n", "+OK\r\n");
	snprintf(buf, sizeof(buf), "+OK 3 %zu\r\n", s1 + s2 + s3);
	exchange(fx, "STAT\r\n", buf);
	exchange(fx, "NOOP\r\n", "+OK\r\n");
	exchange(fx, "FOO bar\r\n", "-ERR Unknown command: FOO\r\n");
	exchange(fx, "USER bob\r\n", "-ERR Unknown command: USER\r\n");
	exchange(fx, "CAPA\r\n", "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n.\r\n");
	/* RSET cleared the RETRs too; retrieve 1 again and delete 2. */
	snprintf(buf, sizeof(buf), "+OK %zu octets\r\n" HDR1 "line1\r\n..dot line\r\nline3\r\n.\r\n", s1);
	exchange(fx, "RETR 1\r\n", buf);
	exchange(fx, "DELE 2\r\n", "+OK Marked to be deleted.\r\n");
	exchange(fx, "QUIT\r\n", "+OK Logging out.\r\n");
	expect_closed(fx);
	assert_int_equal(F.nexpunged, 1);
	assert_int_equal(F.expunged[0], 2);
	/* \Seen for the retrieved message 1 (2 was deleted, 3 not read). */
	assert_int_equal(F.nseen, 1);
	assert_int_equal(F.seen[0].uid, 1);
	assert_int_equal(F.seen[0].flags, PT_F_SEEN);
}

/* The list is fixed at login: a message arriving later is not shown. */
static void
test_fixed_list(void **state)
{
	struct fixture *fx = *state;
	char buf[64];

	start(fx);
	expect(fx, "+OK Logged in.\r\n");
	add_msg(9, 0, "S: x\r\n\r\n", "new\r\n");
	snprintf(buf, sizeof(buf), "+OK 3 %zu\r\n",
	         strlen(HDR1 BODY1) + strlen(HDR2 BODY2) + strlen(HDR3 BODY3));
	exchange(fx, "STAT\r\n", buf);
	exchange(fx, "RETR 4\r\n", "-ERR There's no message 4.\r\n");
}

static void
test_drop_changes_nothing(void **state)
{
	struct fixture *fx = *state;

	start(fx);
	expect(fx, "+OK Logged in.\r\n");
	exchange(fx, "DELE 1\r\n", "+OK Marked to be deleted.\r\n");
	send_cmd(fx, "RETR 2\r\n");
	free(read_n(fx, 10));
	close(fx->fd);
	fx->fd = -1;
	pump(fx->loop, 10);
	assert_int_equal(F.nexpunged, 0);
	assert_int_equal(F.nseen, 0);
	assert_int_equal(F.closed, 1);
}

static void
test_expunge_failure(void **state)
{
	struct fixture *fx = *state;

	F.fail_expunge = 1;
	start(fx);
	expect(fx, "+OK Logged in.\r\n");
	exchange(fx, "DELE 1\r\n", "+OK Marked to be deleted.\r\n");
	exchange(fx, "QUIT\r\n",
	         "-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.\r\n");
	expect_closed(fx);
	assert_int_equal(F.nexpunged, 0);
}

static void
test_open_failure(void **state)
{
	struct fixture *fx = *state;

	F.fail_open = 1;
	start(fx);
	expect(fx, "-ERR [IN-USE] Couldn't open INBOX: mailbox is locked\r\n");
	expect_closed(fx);
}

static void
test_no_flag_updates(void **state)
{
	struct fixture *fx = *state;
	char buf[256];

	fx->set->no_flag_updates = 1;
	start(fx);
	expect(fx, "+OK Logged in.\r\n");
	snprintf(buf, sizeof(buf), "+OK %zu octets\r\n" HDR3 BODY3 ".\r\n", strlen(HDR3 BODY3));
	exchange(fx, "RETR 3\r\n", buf);
	exchange(fx, "QUIT\r\n", "+OK Logging out.\r\n");
	assert_int_equal(F.nseen, 0);
}

/* Many commands in one packet are answered in order. */
static void
test_pipelining(void **state)
{
	struct fixture *fx = *state;
	char buf[512];
	size_t s3 = strlen(HDR3 BODY3);

	start(fx);
	expect(fx, "+OK Logged in.\r\n");
	send_cmd(fx, "RETR 3\r\nNOOP\r\nTOP 3 0\r\nDELE 1\r\nSTAT\r\nQUIT\r\nNOOP\r\n");
	snprintf(buf, sizeof(buf), "+OK %zu octets\r\n" HDR3 BODY3 ".\r\n+OK\r\n+OK\r\n" HDR3 ".\r\n"
	         "+OK Marked to be deleted.\r\n+OK 2 %zu\r\n+OK Logging out.\r\n", s3,
	         strlen(HDR2 BODY2) + s3);
	expect(fx, buf);
	expect_closed(fx);
	assert_int_equal(F.nexpunged, 1);
}

/* A message bigger than the connection's whole output limit goes out in
 * pieces as the client reads: nothing is lost, the session survives. */
static void
test_big_message(void **state)
{
	struct fixture *fx = *state;
	size_t lines = 100000, linelen = 60;
	size_t len = lines * linelen;
	char *body = malloc(len + 1), head[64];

	for (size_t i = 0; i < lines; i++) {
		memset(body + i * linelen, i % 2 ? 'a' : '.', linelen - 2);
		memcpy(body + i * linelen + linelen - 2, "\r\n", 2);
	}
	body[len] = 0;
	assert_true(len > PT_CONN_WBUF_MAX);
	add_msg(7, 0, "S: big\r\n\r\n", body);
	free(body);
	start(fx);
	expect(fx, "+OK Logged in.\r\n");
	send_cmd(fx, "RETR 4\r\nNOOP\r\n");
	int hl = snprintf(head, sizeof(head), "+OK %zu octets\r\n", len + 10);
	/* Every other line starts with a dot and gets one more. */
	size_t total = (size_t)hl + 10 + len + lines / 2 + 3 + 5;
	char *got = read_n(fx, total);
	assert_int_equal(strlen(got), total);
	assert_memory_equal(got, head, (size_t)hl);
	assert_memory_equal(got + total - 8, ".\r\n+OK\r\n", 8);
	assert_memory_equal(got + hl + 10, "..", 2);
	free(got);
}

/* RFC 1939 section 3: the autologout timer ends the session without the
 * UPDATE state. */
static void
test_autologout(void **state)
{
	struct fixture *fx = *state;

	fx->set->autologout_ms = 30;
	start(fx);
	expect(fx, "+OK Logged in.\r\n");
	exchange(fx, "DELE 1\r\n", "+OK Marked to be deleted.\r\n");
	pump(fx->loop, 100);
	expect_closed(fx);
	assert_int_equal(F.nexpunged, 0);
}

static void
test_bad_command_limit(void **state)
{
	struct fixture *fx = *state;

	start(fx);
	expect(fx, "+OK Logged in.\r\n");
	for (int i = 1; i < POP3_SESSION_BAD_MAX; i++)
		exchange(fx, "BOGUS\r\n", "-ERR Unknown command: BOGUS\r\n");
	exchange(fx, "BOGUS\r\n", "-ERR Unknown command: BOGUS\r\n-ERR Too many bad commands.\r\n");
	expect_closed(fx);
	assert_int_equal(F.nexpunged, 0);
}

static void
test_long_line(void **state)
{
	struct fixture *fx = *state;
	char line[POP3_LINE_MAX + 10];

	start(fx);
	expect(fx, "+OK Logged in.\r\n");
	memset(line, 'N', sizeof(line) - 3);
	memcpy(line + sizeof(line) - 3, "\r\n", 3);
	exchange(fx, line, "-ERR Input line too long.\r\n");
	expect_closed(fx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_transaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fixed_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drop_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expunge_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_flag_updates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelining, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_autologout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_command_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
