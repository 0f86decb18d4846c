/* The "local" transport (postern/transport.h), provided by the core: the
 * worker's link to the root delivery agent. The queue gives it the targets
 * of its alias expansion and user lookup (a mailbox, a /file, a |command);
 * they go out as requests on the SOCK_SEQPACKET socket (message inline or
 * as a sealed memfd), answers and timeouts come back per request. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "postern/event.h"
#include "postern/fdio.h"
#include "postern/log.h"
#include "queue_msg.h"

/* Items per agent request: keeps each request well inside one datagram. */
#define AGENT_CHUNK 200
/* An agent that does not answer in this time has its deliveries deferred. */
#define AGENT_TIMEOUT_MS (10 * 60 * 1000)

/* One deliver call of the local transport: its targets go out in one or
 * more agent requests; done runs when the last has its answer. */
struct local_call {
	const struct pt_transport_msg *msg;
	struct pt_transport_rcpt *rcpt;
	size_t n;
	size_t requests;              /* agent requests without an answer */
	struct timeval start;
	void (*done)(void *arg);
	void *arg;
	struct pt_deferred later;     /* the answer when no request went out */
};

struct agent_req {
	uint32_t seq;
	struct local_call *call;
	size_t first, n;              /* the call's rcpt[first..first+n) */
	struct pt_timer *timer;
	struct agent_req *next;
};

static struct agent_req *agent_pending;
static uint32_t agent_seq;
static int agent_sndbuf;              /* the agent socket's send buffer */

static double
since(const struct timeval *a)
{
	struct timeval now;
	gettimeofday(&now, NULL);
	double d = (double)(now.tv_sec - a->tv_sec) + (double)(now.tv_usec - a->tv_usec) / 1e6;
	return d < 0 ? 0 : d;
}

/* Every target has its status: log them, as every transport does, and
 * answer the queue. */
static void
call_finish(struct local_call *c)
{
	/* Before the delivery, then the delivery; no connection to wait for. */
	double before = difftime(c->start.tv_sec, c->msg->arrival);
	double delays[4] = { before < 0 ? 0 : before, 0, 0, since(&c->start) };
	for (size_t i = 0; i < c->n; i++) {
		struct pt_transport_rcpt *r = &c->rcpt[i];
		const struct target *t = r->detail;
		/* The queue's soft_bounce, applied before the line is written
		 * (the queue applies it to every outcome again). */
		if (pt_qs.soft_bounce && r->st.code >= 500)
			r->st.code = 450;
		if (r->st.code == 0 && !r->st.text[0])
			snprintf(r->st.text, sizeof r->st.text, "delivered to mailbox");
		const char *orig = r->orig && r->orig[0] ? r->orig : t->envelope;
		pt_delivery_log("local", c->msg->queue_id, r->address, orig, "local", delays, &r->st);
	}
	void (*done)(void *) = c->done;
	void *arg = c->arg;
	free(c);
	done(arg);
}

static void
call_later(struct pt_loop *loop, void *arg)
{
	(void)loop;
	call_finish(arg);
}

static void
agent_req_complete(struct agent_req *r, const struct pt_agent_resp *resp, const char *why)
{
	struct agent_req **pp = &agent_pending;
	while (*pp && *pp != r)
		pp = &(*pp)->next;
	if (*pp)
		*pp = r->next;
	if (r->timer && resp)
		pt_timer_cancel(pt_qs.loop, r->timer);
	r->timer = NULL;
	struct local_call *c = r->call;
	for (size_t i = 0; i < r->n; i++) {
		struct pt_status *st = &c->rcpt[r->first + i].st;
		if (resp && i < resp->n) {
			*st = resp->st[i];
			if (st->code == 0 && !st->dsn[0])
				snprintf(st->dsn, sizeof st->dsn, "2.0.0");
		} else {
			pt_status_set(st, 451, "4.3.0", "%s", why ? why : "delivery agent gave no answer");
		}
	}
	free(r);
	if (--c->requests == 0)
		call_finish(c);
}

static void
agent_timeout(struct pt_loop *loop, void *arg)
{
	(void)loop;
	struct agent_req *r = arg;
	r->timer = NULL;
	pt_warn("%s: local delivery agent did not answer in time", r->call->msg->queue_id);
	agent_req_complete(r, NULL, "local delivery agent timed out");
}

static void
agent_readable(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	(void)loop;
	(void)arg;
	static char buf[PT_AGENT_MSG_MAX];
	for (;;) {
		int xfd;
		ssize_t n = pt_agent_recv(fd, buf, sizeof buf, &xfd);
		if (xfd >= 0)
			close(xfd);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && errno == EMSGSIZE)
			continue;
		if (n <= 0) {
			if (!(events & PT_EV_ERROR) && n < 0)
				pt_error("local delivery agent: %s", strerror(errno));
			pt_error("local delivery agent went away; mail is queued until it is back");
			pt_qagent_detach();
			return;
		}
		struct pt_agent_resp resp;
		if (pt_agent_resp_decode(buf, (size_t)n, &resp) != 0) {
			pt_error("local delivery agent: malformed answer ignored");
			continue;
		}
		struct agent_req *r = agent_pending;
		while (r && r->seq != resp.seq)
			r = r->next;
		if (r)
			agent_req_complete(r, &resp, NULL);
		pt_agent_resp_free(&resp);
	}
}

void
pt_qagent_attach(int fd)
{
	pt_qs.local_fd = fd;
	if (fd >= 0) {
		socklen_t sl = sizeof agent_sndbuf;
		if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &agent_sndbuf, &sl) != 0)
			agent_sndbuf = 0;
		int fl = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
		pt_loop_watch(pt_qs.loop, fd, PT_EV_READ, agent_readable, NULL);
	}
}

void
pt_qagent_detach(void)
{
	if (pt_qs.local_fd >= 0) {
		pt_loop_unwatch(pt_qs.loop, pt_qs.local_fd);
		close(pt_qs.local_fd);
		pt_qs.local_fd = -1;
	}
	while (agent_pending) {
		struct agent_req *r = agent_pending;
		if (r->timer)
			pt_timer_cancel(pt_qs.loop, r->timer);
		r->timer = NULL;
		agent_req_complete(r, NULL, "local delivery agent is not running");
	}
}

static int
message_memfd(const struct pt_transport_msg *msg)
{
	int fd = memfd_create("postern-msg", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -1;
	if (pt_write_all(fd, msg->data, msg->len) != 0) {
		close(fd);
		return -1;
	}
	/* The agent maps it: nobody may change it under the delivery. */
	fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
	return fd;
}

/* Inline messages fill the socket buffer ~20 times faster than memfd
 * requests: only while it is mostly empty (always at low concurrency),
 * so a burst still has the room it had before. */
static int
agent_room_for(size_t len)
{
	int queued;
	if (agent_sndbuf <= 0 || ioctl(pt_qs.local_fd, SIOCOUTQ, &queued) != 0)
		return 0;
	return (size_t)queued + 2 * len < (size_t)agent_sndbuf / 4;
}

static const enum pt_agent_kind agent_kind[] = {
	[TARGET_MAILBOX] = PT_AGENT_MAILBOX, [TARGET_FILE] = PT_AGENT_FILE, [TARGET_COMMAND] = PT_AGENT_COMMAND,
};

/* One request for the call's rcpt[first..first+n). A small message goes
 * inline after the request; otherwise (or when they do not fit together)
 * the message goes as a memfd, made on first need and kept in *memfd for
 * the call's other requests. */
static int
agent_send(struct local_call *c, int *memfd, size_t first, size_t n)
{
	static char buf[PT_AGENT_MSG_MAX];
	const struct pt_transport_msg *msg = c->msg;
	struct pt_agent_item *items = calloc(n, sizeof *items);
	struct agent_req *r = calloc(1, sizeof *r);
	if (!items || !r) {
		free(items);
		free(r);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct pt_transport_rcpt *x = &c->rcpt[first + i];
		const struct target *t = x->detail;
		items[i].kind = agent_kind[t->kind];
		items[i].recipient = (char *)t->envelope;
		items[i].orig = x->orig && x->orig[0] ? (char *)x->orig : NULL;
		items[i].user = t->user;
		items[i].target = t->target;
		items[i].owner = t->owner;
	}
	struct pt_agent_req req = { .seq = ++agent_seq, .queue_id = (char *)msg->queue_id,
		.sender = (char *)msg->sender, .arrival = (int64_t)msg->arrival, .len = msg->len, .n = n, .item = items };
	ssize_t len = pt_agent_req_encode(&req, buf, sizeof buf);
	free(items);
	if (len >= 0 && *memfd < 0 && msg->len <= PT_AGENT_INLINE_MAX && msg->len <= sizeof buf - (size_t)len &&
	    agent_room_for((size_t)len + msg->len)) {
		memcpy(buf + len, msg->data, msg->len);
		len += (ssize_t)msg->len;
	} else if (len >= 0 && *memfd < 0 && (*memfd = message_memfd(msg)) < 0) {
		len = -1;
	}
	if (len < 0 || pt_agent_send(pt_qs.local_fd, buf, (size_t)len, *memfd) < 0) {
		free(r);
		return -1;
	}
	r->seq = req.seq;
	r->call = c;
	r->first = first;
	r->n = n;
	r->timer = pt_timer_add(pt_qs.loop, AGENT_TIMEOUT_MS, agent_timeout, r);
	r->next = agent_pending;
	agent_pending = r;
	c->requests++;
	return 0;
}

/* The "local" transport: every rcpt is a target of the queue's resolution
 * (detail: struct target), delivered by the root agent. */
static void
local_deliver(struct pt_loop *loop, const struct pt_transport_msg *msg, struct pt_transport_rcpt *rcpt, size_t n,
              void (*done)(void *arg), void *arg)
{
	struct local_call *c = calloc(1, sizeof *c);
	if (!c) {
		/* Nothing to defer the answer with: answered now, which the
		 * queue allows (it holds the attempt while dispatching). */
		for (size_t i = 0; i < n; i++) {
			pt_status_set(&rcpt[i].st, 451, "4.3.0", "out of memory");
			const struct target *t = rcpt[i].detail;
			double delays[4] = { 0, 0, 0, 0 };
			pt_delivery_log("local", msg->queue_id, rcpt[i].address, t->envelope, "local", delays, &rcpt[i].st);
		}
		done(arg);
		return;
	}
	*c = (struct local_call){ .msg = msg, .rcpt = rcpt, .n = n, .done = done, .arg = arg };
	gettimeofday(&c->start, NULL);
	int memfd = -1;
	size_t sent = 0;
	for (size_t off = 0; pt_qs.local_fd >= 0 && off < n; off += AGENT_CHUNK) {
		size_t k = n - off < AGENT_CHUNK ? n - off : AGENT_CHUNK;
		if (agent_send(c, &memfd, off, k) != 0)
			break;
		sent = off + k;
	}
	if (memfd >= 0)
		close(memfd);
	const char *why = pt_qs.local_fd >= 0 ? "cannot pass the message to the local delivery agent"
	                  : pt_qs.local_none ? "mail system configuration error: no local delivery "
	                                       "(no loaded module delivers, e.g. module mbox)"
	                                     : "local delivery agent is not running";
	for (size_t i = sent; i < n; i++)
		pt_status_set(&rcpt[i].st, 451, "4.3.0", "%s", why);
	/* Nothing out: the answer is ready, but comes from the loop (the
	 * callback rule of services.h). */
	if (c->requests == 0)
		pt_defer(loop, &c->later, call_later, c);
}

static const struct pt_transport_ops local_transport = { 0, local_deliver };

void
pt_qagent_provide(void)
{
	const void *had = pt_service_get(PT_SVC_TRANSPORT("local"));
	if (had && had != &local_transport)
		pt_warn("a module registered the transport \"local\": the core's delivery agent link replaces it");
	if (pt_service_register(PT_SVC_TRANSPORT("local"), &local_transport) != 0)
		pt_error("cannot register the transport \"local\": local mail stays queued");
}
