/* The queue end to end in one process: pt_queue_submit through a real
 * delivery agent (pt_local_serve on a thread) into a fake mailstore;
 * fast path, deferral and retry, bounces, loops, recovery at start,
 * damaged files, and group commit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_int.h"
#include "postern/event.h"
#include "postern/services.h"
#include "postern/transport.h"
#include "queue.h"
#include "queue_int.h"
#include "runtime.h"

/* ---------- fakes ---------- */

#define MAXREC 2000
static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char user[64];
	char rcpt[128];
	char sender[128];
	char data[4096];
	size_t len;
	unsigned long sum;            /* of all the message's bytes */
} rec[MAXREC];
static size_t nrec, ncalls, max_batch;
static int locked = 1;          /* "locked" user's mailbox refuses */
static unsigned deliver_us = 2000;
static int in_deliver, max_in_deliver; /* calls running at once */

static void
fake_deliver(const struct pt_delivery *d, size_t n, struct pt_status *st)
{
	pthread_mutex_lock(&rec_mu);
	ncalls++;
	if (++in_deliver > max_in_deliver)
		max_in_deliver = in_deliver;
	if (n > max_batch)
		max_batch = n;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(d[i].user->name, "locked") == 0 && locked) {
			pt_status_set(&st[i], 450, "4.2.0", "mailbox is locked");
			continue;
		}
		if (nrec < MAXREC) {
			snprintf(rec[nrec].user, sizeof rec[nrec].user, "%s", d[i].user->name);
			snprintf(rec[nrec].rcpt, sizeof rec[nrec].rcpt, "%s", d[i].recipient);
			snprintf(rec[nrec].sender, sizeof rec[nrec].sender, "%s", d[i].sender);
			snprintf(rec[nrec].data, sizeof rec[nrec].data, "%.*s", (int)d[i].len, d[i].data);
			rec[nrec].len = d[i].len;
			rec[nrec].sum = 0;
			for (size_t k = 0; k < d[i].len; k++)
				rec[nrec].sum += (unsigned char)d[i].data[k];
			nrec++;
		}
		pt_status_set(&st[i], 0, "2.0.0", "delivered to mailbox");
	}
	pthread_mutex_unlock(&rec_mu);
	usleep(deliver_us); /* long enough for others to queue up behind */
	pthread_mutex_lock(&rec_mu);
	in_deliver--;
	pthread_mutex_unlock(&rec_mu);
}

static const struct pt_mailstore_ops fake_store = { fake_deliver };

static int
fake_lookup(const char *user, struct pt_user *out)
{
	const char *known[] = { "alice", "bob", "carol", "locked" };
	for (size_t i = 0; i < 4; i++) {
		if (strcmp(user, known[i]) == 0) {
			memset(out, 0, sizeof *out);
			snprintf(out->name, sizeof out->name, "%s", user);
			out->uid = getuid();
			out->gid = getgid();
			snprintf(out->home, sizeof out->home, "/nonexistent");
			return 1;
		}
	}
	return 0;
}

static const struct pt_userdb_ops fake_users = { fake_lookup };

static size_t
count_for(const char *user)
{
	size_t n = 0;
	pthread_mutex_lock(&rec_mu);
	for (size_t i = 0; i < nrec; i++)
		n += strcmp(rec[i].user, user) == 0;
	pthread_mutex_unlock(&rec_mu);
	return n;
}

/* ---------- harness ---------- */

static char qdir[64];
static struct pt_loop *loop;
static struct pt_config *conf;
static pthread_t agent;
static int agent_fd = -1;

struct agent_arg {
	int fd;
};

static void *
agent_main(void *arg)
{
	struct agent_arg *a = arg;
	pt_local_serve(conf, a->fd, 0);
	close(a->fd);
	free(a);
	return NULL;
}

static int
count_files(const char *sub)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", qdir, sub);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static const char *extra_conf = "";

static struct pt_config *
make_conf(void)
{
	char text[1024];
	snprintf(text, sizeof text,
	         "queue_directory = %s\nmyhostname = mail.example.com.ar\nmydomain = example.com.ar\n"
	         "myorigin = example.com.ar\nmydestination = example.com.ar, localhost\n"
	         "minimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n"
	         "maillog_file = /dev/null\n%s",
	         qdir, extra_conf);
	struct pt_config *c = pt_config_parse("test.conf", text, strlen(text));
	assert_non_null(c);
	pt_config_declare_core(c);
	assert_int_equal(pt_config_finish(c), 0);
	return c;
}

static void
start_queue(int with_agent)
{
	loop = pt_loop_new();
	assert_non_null(loop);
	int sv[2] = { -1, -1 };
	if (with_agent) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
		struct agent_arg *a = malloc(sizeof *a);
		a->fd = sv[1];
		assert_int_equal(pthread_create(&agent, NULL, agent_main, a), 0);
		agent_fd = sv[0];
	}
	assert_int_equal(pt_queue_start(loop, conf, with_agent ? sv[0] : -1), 0);
}

static int run_until(int (*pred)(void), unsigned ms);
static int idle(void);
static int never(void);

static void
stop_queue(int with_agent)
{
	/* Outcomes still being stored finish first. */
	assert_true(run_until(idle, 5000));
	run_until(never, 20); /* done() callbacks already scheduled */
	pt_queue_stop();
	/* Closing the worker's end lets the agent thread finish. */
	pt_qagent_detach();
	if (with_agent)
		pthread_join(agent, NULL);
	pt_loop_free(loop);
	loop = NULL;
}

static int (*run_pred)(void);
static uint64_t run_deadline;

static void
run_check(struct pt_loop *l, void *arg)
{
	(void)arg;
	if (run_pred() || pt_loop_now(l) > run_deadline)
		pt_loop_stop(l);
	else
		pt_timer_add(l, 5, run_check, NULL);
}

static int
run_until(int (*pred)(void), unsigned ms)
{
	run_pred = pred;
	run_deadline = pt_loop_now(loop) + ms;
	pt_timer_add(loop, 0, run_check, NULL);
	pt_loop_run(loop);
	return pred();
}

static int
setup(void **state)
{
	(void)state;
	snprintf(qdir, sizeof qdir, "/tmp/pt-qflow-XXXXXX");
	assert_non_null(mkdtemp(qdir));
	conf = make_conf();
	pt_live_conf = conf;
	pt_service_register(PT_SVC_MAILSTORE, &fake_store);
	pt_service_register(PT_SVC_USERDB, &fake_users);
	nrec = ncalls = max_batch = 0;
	locked = 1;
	deliver_us = 2000;
	in_deliver = max_in_deliver = 0;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	pt_live_conf = NULL;
	pt_config_free(conf);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", qdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---------- submissions ---------- */

struct result {
	int called;
	int code;
	char id[24];
};

static void
on_done(void *arg, const struct pt_status *st, const char *id)
{
	struct result *r = arg;
	r->called++;
	r->code = st->code;
	snprintf(r->id, sizeof r->id, "%s", id);
}

static int
submit(const char *sender, const char **rcpts, size_t n, const char *data, struct result *r)
{
	struct pt_envelope_rcpt er[16];
	for (size_t i = 0; i < n; i++) {
		er[i].address = rcpts[i];
		er[i].orig = rcpts[i];
		er[i].notify = NULL;
	}
	struct pt_envelope env = { .sender = sender, .nrcpt = n, .rcpt = er, .client_name = "localhost",
		.client_address = "127.0.0.1", .helo = "client", .protocol = "ESMTP" };
	char id[24];
	pt_queue_new_id(id);
	return pt_queue_submit(loop, id, &env, data, strlen(data), on_done, r);
}

static struct result *cur;
static int
cur_done(void)
{
	return cur->called > 0;
}

static const char msg[] = "Received: from client by mail\nSubject: t\n\nhello\n";

static void
test_fast_path_no_queue_file(void **state)
{
	(void)state;
	start_queue(1);
	struct result r = { 0 };
	const char *rc[] = { "alice@example.com.ar", "Bob@EXAMPLE.com.ar", "alice@localhost" };
	assert_int_equal(submit("carol@example.com.ar", rc, 3, msg, &r), 0);
	assert_int_equal(r.called, 0); /* never before submit returns */
	cur = &r;
	assert_true(run_until(cur_done, 5000));
	assert_int_equal(r.code, 0);
	assert_int_equal(count_for("alice"), 1); /* duplicates dropped */
	assert_int_equal(count_for("bob"), 1);
	assert_int_equal(count_files(PT_QDIR_DEFERRED), 0);
	assert_int_equal(count_files(PT_QDIR_ACTIVE), 0);
	assert_int_equal(count_files(PT_QDIR_INCOMING), 0);
	assert_non_null(strstr(rec[0].data, "Subject: t"));
	stop_queue(1);
}

static int
deferred_then_delivered(void)
{
	return count_for("locked") == 1 && count_files(PT_QDIR_DEFERRED) == 0;
}

static void
test_deferral_is_durable_and_retried(void **state)
{
	(void)state;
	start_queue(1);
	struct result r = { 0 };
	const char *rc[] = { "alice@example.com.ar", "locked@example.com.ar" };
	assert_int_equal(submit("carol@example.com.ar", rc, 2, msg, &r), 0);
	cur = &r;
	assert_true(run_until(cur_done, 5000));
	assert_int_equal(r.code, 0);
	assert_int_equal(count_for("alice"), 1);
	assert_int_equal(count_files(PT_QDIR_DEFERRED), 1);
	/* The file keeps only what remains, with the reason. */
	struct pt_qfile q;
	char err[256];
	assert_int_equal(pt_qfile_load(qdir, PT_QDIR_DEFERRED, r.id, &q, err, sizeof err), 0);
	assert_int_equal(q.nrcpt, 1);
	assert_string_equal(q.rcpt[0].address, "locked@example.com.ar");
	assert_int_equal(q.rcpt[0].state, PT_QRCPT_RESOLVED);
	assert_string_equal(q.rcpt[0].reason, "mailbox is locked");
	assert_int_equal(q.attempts, 1);
	pt_qfile_free(&q);
	/* Released: the next retry (backoff 1s) delivers, alice only once. */
	locked = 0;
	pt_queue_flush_now();
	assert_true(run_until(deferred_then_delivered, 8000));
	assert_int_equal(count_for("alice"), 1);
	stop_queue(1);
}

static int
bounce_arrived(void)
{
	return count_for("carol") == 1;
}

static void
test_unknown_user_bounces_to_sender(void **state)
{
	(void)state;
	start_queue(1);
	struct result r = { 0 };
	const char *rc[] = { "alice@example.com.ar", "nosuchuser@example.com.ar" };
	assert_int_equal(submit("carol@example.com.ar", rc, 2, msg, &r), 0);
	cur = &r;
	assert_true(run_until(cur_done, 5000));
	assert_int_equal(r.code, 0);
	assert_true(run_until(bounce_arrived, 5000));
	size_t i;
	for (i = 0; i < nrec && strcmp(rec[i].user, "carol"); i++)
		;
	assert_string_equal(rec[i].sender, "");
	assert_non_null(strstr(rec[i].data, "Subject: Undelivered Mail Returned to Sender"));
	assert_non_null(strstr(rec[i].data, "<nosuchuser@example.com.ar>: unknown user: \"nosuchuser\""));
	assert_non_null(strstr(rec[i].data, "Status: 5.1.1"));
	assert_non_null(strstr(rec[i].data, "Received: by mail.example.com.ar (Postern)"));
	assert_true(run_until(idle, 5000));
	assert_int_equal(count_files(PT_QDIR_ACTIVE), 0);
	stop_queue(1);
}

static int
idle(void)
{
	return pt_qs.inflight == 0;
}

static int
bounced(void)
{
	return count_for("bob") == 1;
}

static int
bob_one(void)
{
	return count_for("bob") >= 1 && count_files(PT_QDIR_DEFERRED) == 0 && count_files(PT_QDIR_ACTIVE) == 0;
}

static int
never(void)
{
	return 0;
}

static int
two_done(void)
{
	return cur[0].called && cur[1].called;
}

static void
test_loop_and_double_bounce(void **state)
{
	(void)state;
	start_queue(1);
	struct result r[2] = { { 0 }, { 0 } };
	const char *rc[] = { "alice@example.com.ar" };
	const char looped[] = "Received: x\nDelivered-To: ALICE@example.com.ar\nSubject: l\n\nbody\n";
	/* Loop: bounced 5.4.6 to the sender (bob). */
	assert_int_equal(submit("bob@example.com.ar", rc, 1, looped, &r[0]), 0);
	/* Unknown user from <>: never a bounce to <>. */
	const char *rc2[] = { "ghost@example.com.ar" };
	assert_int_equal(submit("", rc2, 1, msg, &r[1]), 0);
	cur = r;
	assert_true(run_until(two_done, 5000));
	assert_int_equal(r[0].code, 0);
	assert_int_equal(r[1].code, 0);
	assert_true(run_until(bounced, 5000));
	assert_int_equal(count_for("alice"), 0);
	size_t i;
	for (i = 0; i < nrec && strcmp(rec[i].user, "bob"); i++)
		;
	assert_non_null(strstr(rec[i].data, "mail forwarding loop for alice@example.com.ar"));
	assert_non_null(strstr(rec[i].data, "Status: 5.4.6"));
	/* Nothing else: the double bounce was dropped, nothing queued. */
	assert_true(run_until(idle, 5000));
	assert_int_equal(nrec, 1);
	assert_int_equal(count_files(PT_QDIR_ACTIVE), 0);
	assert_int_equal(count_files(PT_QDIR_DEFERRED), 0);
	stop_queue(1);
}

static int
all_in_queue(void)
{
	return cur->called;
}

static void
test_no_agent_queues_then_recovery(void **state)
{
	(void)state;
	/* No agent: the message is stored (durable) and acknowledged. */
	start_queue(0);
	struct result r = { 0 };
	const char *rc[] = { "bob@example.com.ar" };
	assert_int_equal(submit("alice@example.com.ar", rc, 1, msg, &r), 0);
	cur = &r;
	assert_true(run_until(all_in_queue, 5000));
	assert_int_equal(r.code, 0);
	assert_int_equal(count_files(PT_QDIR_DEFERRED), 1);
	stop_queue(0);

	/* Leftovers a crash could leave: a half-written incoming file, a
	 * damaged file, a stray name, and the same id in active/ and
	 * deferred/ (crash between the two steps of a rewrite). */
	char p[256];
	snprintf(p, sizeof p, "%s/incoming/ABCDEF012345", qdir);
	FILE *f = fopen(p, "w");
	fputs("POSTERN-QUEUE 1\nI ABCDEF012345\nS =", f);
	fclose(f);
	snprintf(p, sizeof p, "%s/deferred/0123456789AB", qdir);
	f = fopen(p, "w");
	fputs("POSTERN-QUEUE 1\ngarbage\n", f);
	fclose(f);
	snprintf(p, sizeof p, "%s/deferred/not-an-id", qdir);
	f = fopen(p, "w");
	fclose(f);
	char from[256], to[256];
	snprintf(from, sizeof from, "%s/deferred/%s", qdir, r.id);
	snprintf(to, sizeof to, "%s/active/%s", qdir, r.id);
	assert_int_equal(link(from, to), 0);

	start_queue(1);
	assert_true(run_until(bob_one, 8000));
	assert_int_equal(count_files(PT_QDIR_INCOMING), 0);
	assert_int_equal(count_files(PT_QDIR_CORRUPT), 2);
	/* Give a duplicate the chance to show up: it must not. */
	run_until(never, 1500);
	assert_int_equal(count_for("bob"), 1);
	assert_int_equal(count_files(PT_QDIR_DEFERRED), 0);
	assert_int_equal(count_files(PT_QDIR_ACTIVE), 0);
	stop_queue(1);
}

static struct result many[200];
static int
all_many(void)
{
	for (size_t i = 0; i < 200; i++)
		if (!many[i].called)
			return 0;
	return 1;
}

static void
test_group_commit(void **state)
{
	(void)state;
	start_queue(1);
	memset(many, 0, sizeof many);
	const char *rc[] = { "alice@example.com.ar" };
	for (size_t i = 0; i < 200; i++)
		assert_int_equal(submit("carol@example.com.ar", rc, 1, msg, &many[i]), 0);
	assert_true(run_until(all_many, 20000));
	for (size_t i = 0; i < 200; i++)
		assert_int_equal(many[i].code, 0);
	assert_int_equal(count_for("alice"), 200);
	/* Concurrent deliveries to one mailbox share calls (one lock + one
	 * fsync each in the real mailstore). */
	assert_true(ncalls < 200);
	assert_true(max_batch > 1);
	stop_queue(1);
}

/* One message to three users: each mailbox gets its own agent thread at
 * once (every ready mailbox wakes a thread), not one after the other. */
static void
test_fanout_delivers_in_parallel(void **state)
{
	(void)state;
	start_queue(1);
	/* A first delivery, so that every agent thread is waiting for work
	 * (not still starting up) when the fan-out arrives. */
	struct result r0 = { 0 };
	const char *one[] = { "alice@example.com.ar" };
	assert_int_equal(submit("carol@example.com.ar", one, 1, msg, &r0), 0);
	cur = &r0;
	assert_true(run_until(cur_done, 5000));
	run_until(never, 50);
	deliver_us = 100000;
	max_in_deliver = 0;
	struct result r = { 0 };
	const char *rc[] = { "alice@example.com.ar", "bob@example.com.ar", "carol@example.com.ar" };
	assert_int_equal(submit("carol@example.com.ar", rc, 3, msg, &r), 0);
	cur = &r;
	assert_true(run_until(cur_done, 5000));
	assert_int_equal(r.code, 0);
	assert_int_equal(count_for("alice") + count_for("bob") + count_for("carol"), 4);
	assert_int_equal(max_in_deliver, 3);
	stop_queue(1);
}

/* Messages at and around the inline limit and far above it (memfd)
 * reach the mailstore whole, byte for byte. */
static void
test_message_sizes_reach_the_store_whole(void **state)
{
	(void)state;
	start_queue(1);
	size_t sizes[] = { 1, PT_AGENT_INLINE_MAX - 1, PT_AGENT_INLINE_MAX, PT_AGENT_INLINE_MAX + 1,
		           PT_AGENT_MSG_MAX, 3 * PT_AGENT_MSG_MAX };
	const char *rc[] = { "alice@example.com.ar", "bob@example.com.ar" };
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		size_t len = sizes[k];
		char *data = malloc(len + 1);
		unsigned long sum = 0;
		for (size_t i = 0; i < len; i++) {
			data[i] = i % 64 == 63 ? '\n' : (char)('A' + (i * 7 + k) % 26);
			sum += (unsigned char)data[i];
		}
		data[len] = 0;
		struct result r = { 0 };
		size_t before = nrec;
		assert_int_equal(submit("carol@example.com.ar", rc, 2, data, &r), 0);
		cur = &r;
		assert_true(run_until(cur_done, 5000));
		assert_int_equal(r.code, 0);
		assert_int_equal(nrec, before + 2);
		for (size_t i = before; i < nrec; i++) {
			assert_int_equal(rec[i].len, len);
			assert_int_equal(rec[i].sum, sum);
		}
		free(data);
	}
	stop_queue(1);
}

/* A burst the agent has not read yet: once its socket buffer is a
 * quarter full, messages go as memfds again (inline ones would fill it
 * some twenty times faster and turn a burst into 451s). The test plays
 * the agent and reads nothing until every message was sent. */
static void
test_burst_falls_back_to_memfd(void **state)
{
	(void)state;
	loop = pt_loop_new();
	assert_non_null(loop);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	int sz = 4 * PT_AGENT_MSG_MAX; /* as pt_local_spawn sets it */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	assert_int_equal(pt_queue_start(loop, conf, sv[0]), 0);
	static char data[4001];
	memset(data, 'x', sizeof data - 1);
	memcpy(data, "Subject: burst\n\n", 16);
	memset(many, 0, sizeof many);
	const char *rc[] = { "alice@example.com.ar" };
	for (size_t i = 0; i < 200; i++)
		assert_int_equal(submit("carol@example.com.ar", rc, 1, data, &many[i]), 0);
	size_t inline_n = 0, memfd_n = 0, last_inline = 0;
	static char buf[PT_AGENT_MSG_MAX];
	/* Every request is queued already: a missing one fails, never hangs. */
	fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
	for (size_t i = 0; i < 200; i++) {
		int fd;
		ssize_t n = pt_agent_recv(sv[1], buf, sizeof buf, &fd);
		assert_true(n > 0);
		struct pt_agent_req req;
		assert_int_equal(pt_agent_req_decode(buf, (size_t)n, &req), 0);
		assert_int_equal(req.len, strlen(data));
		if (fd >= 0) {
			assert_null(req.data);
			char head[16];
			assert_int_equal(pread(fd, head, sizeof head, (off_t)req.len - sizeof head), (ssize_t)sizeof head);
			assert_memory_equal(head, data + sizeof data - 1 - sizeof head, sizeof head);
			close(fd);
			memfd_n++;
		} else {
			assert_non_null(req.data);
			assert_memory_equal(req.data + req.len - 16, data + sizeof data - 1 - 16, 16);
			inline_n++;
			last_inline = i;
		}
		struct pt_status st[1];
		memset(st, 0, sizeof st);
		pt_status_set(&st[0], 0, "2.0.0", "delivered to mailbox");
		struct pt_agent_resp resp = { req.seq, 1, st };
		char out[1024];
		ssize_t rn = pt_agent_resp_encode(&resp, out, sizeof out);
		assert_true(rn > 0);
		assert_int_equal(pt_agent_send(sv[1], out, (size_t)rn, -1), 0);
		pt_agent_req_free(&req);
	}
	/* The first ones went inline, the rest of the burst as memfds. */
	assert_true(inline_n >= 1);
	assert_true(memfd_n >= 100);
	assert_int_equal(last_inline, inline_n - 1);
	assert_true(run_until(all_many, 5000));
	for (size_t i = 0; i < 200; i++)
		assert_int_equal(many[i].code, 0);
	assert_int_equal(count_files(PT_QDIR_DEFERRED), 0);
	run_until(never, 20);
	pt_queue_stop();
	pt_qagent_detach();
	close(sv[1]);
	pt_loop_free(loop);
	loop = NULL;
}

/* Nothing acknowledged when the queue cannot store the message. */
static void
test_store_failure_is_451(void **state)
{
	(void)state;
	start_queue(0);
	char from[128], to[128];
	snprintf(from, sizeof from, "%s/deferred", qdir);
	snprintf(to, sizeof to, "%s/deferred.away", qdir);
	assert_int_equal(rename(from, to), 0);
	struct result r = { 0 };
	const char *rc[] = { "bob@example.com.ar" };
	assert_int_equal(submit("alice@example.com.ar", rc, 1, msg, &r), 0);
	cur = &r;
	assert_true(run_until(all_in_queue, 5000));
	assert_int_equal(r.code, 451);
	assert_int_equal(count_files(PT_QDIR_INCOMING), 0);
	assert_int_equal(rename(to, from), 0);
	stop_queue(0);
}

static int
expired_bounce(void)
{
	return count_for("carol") == 1;
}

/* Past maximal_queue_lifetime a deferred recipient is bounced with its
 * last reason. */
static void
test_lifetime_expiry_bounces(void **state)
{
	(void)state;
	pt_config_free(conf);
	extra_conf = "maximal_queue_lifetime = 1s\n";
	conf = make_conf();
	extra_conf = "";
	pt_live_conf = conf;
	start_queue(1);
	struct result r = { 0 };
	const char *rc[] = { "locked@example.com.ar" };
	assert_int_equal(submit("carol@example.com.ar", rc, 1, msg, &r), 0);
	cur = &r;
	assert_true(run_until(cur_done, 5000));
	assert_int_equal(r.code, 0);
	assert_int_equal(count_files(PT_QDIR_DEFERRED), 1);
	assert_true(run_until(expired_bounce, 8000));
	size_t i;
	for (i = 0; i < nrec && strcmp(rec[i].user, "carol"); i++)
		;
	assert_non_null(strstr(rec[i].data, "<locked@example.com.ar>: mailbox is locked"));
	assert_non_null(strstr(rec[i].data, "Action: failed"));
	assert_true(run_until(idle, 5000));
	assert_int_equal(count_files(PT_QDIR_DEFERRED), 0);
	assert_int_equal(count_for("locked"), 0);
	stop_queue(1);
}

static void
test_submit_refuses_bad_input(void **state)
{
	(void)state;
	start_queue(0);
	struct result r = { 0 };
	struct pt_envelope env = { .sender = "a@b", .nrcpt = 0 };
	assert_int_equal(pt_queue_submit(loop, "ABCDEF012345", &env, "x", 1, on_done, &r), -1);
	struct pt_envelope_rcpt er = { "alice@example.com.ar", NULL, NULL };
	env.nrcpt = 1;
	env.rcpt = &er;
	assert_int_equal(pt_queue_submit(loop, "../../etc/x", &env, "x", 1, on_done, &r), -1);
	assert_int_equal(r.called, 0);
	stop_queue(0);
}

/* ---------- local is a transport like the others ---------- */

/* Stands in front of the registered "local" transport: the queue must find
 * it by name at each attempt, as it finds any transport. */
static const struct pt_transport_ops *real_local;
static size_t spy_calls, spy_n;
static char spy_addr[4][128];
static int spy_detail_ok;

static void
spy_deliver(struct pt_loop *l, const struct pt_transport_msg *m, struct pt_transport_rcpt *r, size_t n,
            void (*done)(void *arg), void *arg)
{
	spy_calls++;
	spy_n = n;
	spy_detail_ok = 1;
	for (size_t i = 0; i < n; i++) {
		if (i < 4)
			snprintf(spy_addr[i], sizeof spy_addr[i], "%s", r[i].address);
		spy_detail_ok &= r[i].detail != NULL && strcmp(r[i].nexthop, "") == 0;
	}
	real_local->deliver(l, m, r, n, done, arg);
}

static const struct pt_transport_ops spy_ops = { 0, spy_deliver };

/* A "local" registered before the queue starts (as a module's init would):
 * bounces everything, and must not be the one that delivers. */
static void
hijack_deliver(struct pt_loop *l, const struct pt_transport_msg *m, struct pt_transport_rcpt *r, size_t n,
               void (*done)(void *arg), void *arg)
{
	(void)l;
	(void)m;
	(void)done;
	(void)arg;
	for (size_t i = 0; i < n; i++)
		pt_status_set(&r[i].st, 550, "5.7.1", "hijacked");
	fail_msg("a module's \"local\" transport was called");
}

static const struct pt_transport_ops hijack_ops = { 0, hijack_deliver };

static void
test_local_is_a_transport_found_by_name(void **state)
{
	(void)state;
	pt_service_register(PT_SVC_TRANSPORT("local"), &hijack_ops);
	start_queue(1);
	/* The queue's start put the core's provider back over the module's. */
	real_local = pt_transport_get("local");
	assert_non_null(real_local);
	assert_ptr_not_equal(real_local, &hijack_ops);
	pt_service_register(PT_SVC_TRANSPORT("local"), &spy_ops);
	spy_calls = 0;

	struct result r = { 0 };
	/* An alias-free fan-out: two users, one of them twice (one target). */
	const char *rc[] = { "alice@example.com.ar", "bob@example.com.ar", "Alice@localhost" };
	assert_int_equal(submit("carol@example.com.ar", rc, 3, msg, &r), 0);
	cur = &r;
	assert_true(run_until(cur_done, 5000));
	assert_int_equal(r.code, 0);
	/* One deliver call for the message, one rcpt per target. */
	assert_int_equal(spy_calls, 1);
	assert_int_equal(spy_n, 2);
	assert_true(spy_detail_ok);
	assert_string_equal(spy_addr[0], "alice@example.com.ar");
	assert_string_equal(spy_addr[1], "bob@example.com.ar");
	assert_int_equal(count_for("alice"), 1);
	assert_int_equal(count_for("bob"), 1);

	/* Unknown users and loops are decided before any transport: nothing
	 * to deliver, no call. */
	spy_calls = 0;
	struct result r2 = { 0 };
	const char *rc2[] = { "nosuchuser@example.com.ar" };
	assert_int_equal(submit("", rc2, 1, msg, &r2), 0);
	cur = &r2;
	assert_true(run_until(cur_done, 5000));
	assert_int_equal(spy_calls, 0);

	pt_service_register(PT_SVC_TRANSPORT("local"), real_local);
	stop_queue(1);
}

/* Without the delivery agent the local transport still answers from the
 * loop, never inside deliver (the callback rule), and the mail waits. */
static int in_spy;
static int answered_inside;

struct spy_call {
	void (*done)(void *arg);
	void *arg;
};

static void
spy_done_check(void *arg)
{
	answered_inside |= in_spy;
	struct spy_call c = *(struct spy_call *)arg;
	free(arg);
	c.done(c.arg);
}

static void
spy_later_deliver(struct pt_loop *l, const struct pt_transport_msg *m, struct pt_transport_rcpt *r, size_t n,
                  void (*done)(void *arg), void *arg)
{
	struct spy_call *c = malloc(sizeof *c);
	assert_non_null(c);
	*c = (struct spy_call){ done, arg };
	in_spy = 1;
	real_local->deliver(l, m, r, n, spy_done_check, c);
	in_spy = 0;
}

static const struct pt_transport_ops spy_later_ops = { 0, spy_later_deliver };

static void
test_local_without_agent_answers_later(void **state)
{
	(void)state;
	start_queue(0);
	real_local = pt_transport_get("local");
	pt_service_register(PT_SVC_TRANSPORT("local"), &spy_later_ops);
	answered_inside = 0;
	struct result r = { 0 };
	const char *rc[] = { "alice@example.com.ar" };
	assert_int_equal(submit("carol@example.com.ar", rc, 1, msg, &r), 0);
	cur = &r;
	assert_true(run_until(cur_done, 5000));
	assert_int_equal(r.code, 0); /* queued */
	assert_false(answered_inside);
	assert_int_equal(count_for("alice"), 0);
	assert_true(run_until(idle, 5000));
	assert_int_equal(count_files(PT_QDIR_DEFERRED), 1);
	pt_service_register(PT_SVC_TRANSPORT("local"), real_local);
	stop_queue(0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fast_path_no_queue_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deferral_is_durable_and_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_user_bounces_to_sender, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop_and_double_bounce, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_agent_queues_then_recovery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fanout_delivers_in_parallel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_sizes_reach_the_store_whole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_burst_falls_back_to_memfd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_failure_is_451, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lifetime_expiry_bounces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_submit_refuses_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local_is_a_transport_found_by_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local_without_agent_answers_later, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
