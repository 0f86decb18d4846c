/* The worker's link to the local delivery agent: pending targets go out as
 * requests on the SOCK_SEQPACKET socket (message inline or as a sealed
 * memfd), answers and timeouts come back per request. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "postern/fdio.h"
#include "postern/log.h"
#include "queue_msg.h"

/* Items per agent request: keeps each request well inside one datagram. */
#define AGENT_CHUNK 200
/* An agent that does not answer in this time has its deliveries deferred. */
#define AGENT_TIMEOUT_MS (10 * 60 * 1000)

struct agent_req {
	uint32_t seq;
	struct qmsg *m;
	qmsg_step_fn *answered;
	size_t n;                     /* targets covered */
	size_t *idx;                  /* their indexes in m->t, in item order */
	struct pt_timer *timer;
	struct agent_req *next;
};

static struct agent_req *agent_pending;
static uint32_t agent_seq;
static int agent_sndbuf;              /* the agent socket's send buffer */

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
	for (size_t i = 0; i < r->n; i++) {
		struct target *t = &r->m->t[r->idx[i]];
		if (resp && i < resp->n) {
			t->st = resp->st[i];
			if (t->st.code == 0 && !t->st.dsn[0])
				snprintf(t->st.dsn, sizeof t->st.dsn, "2.0.0");
		} else {
			pt_status_set(&t->st, 451, "4.3.0", "%s", why ? why : "delivery agent gave no answer");
		}
		t->state = TARGET_DONE;
	}
	struct qmsg *m = r->m;
	qmsg_step_fn *answered = r->answered;
	free(r->idx);
	free(r);
	answered(m);
}

static void
agent_timeout(struct pt_loop *loop, void *arg)
{
	(void)loop;
	struct agent_req *r = arg;
	r->timer = NULL;
	pt_warn("%s: local delivery agent did not answer in time", r->m->q.id);
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
message_memfd(const struct qmsg *m)
{
	int fd = memfd_create("postern-msg", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -1;
	if (pt_write_all(fd, m->q.data, m->q.len) != 0) {
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

/* One request for targets idx[0..n). A small message goes inline after
 * the request; otherwise (or when they do not fit together) the message
 * goes as a memfd, made on first need and kept in *memfd for the
 * message's other requests. */
static int
agent_send(struct qmsg *m, qmsg_step_fn *answered, int *memfd, size_t *idx, size_t n)
{
	static char buf[PT_AGENT_MSG_MAX];
	struct pt_agent_item *items = calloc(n, sizeof *items);
	struct agent_req *r = calloc(1, sizeof *r);
	if (!items || !r) {
		free(items);
		free(r);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct target *t = &m->t[idx[i]];
		items[i].kind = agent_kind[t->kind];
		items[i].recipient = m->q.rcpt[t->rcpt].address;
		const char *orig = m->q.rcpt[t->rcpt].orig;
		items[i].orig = orig && orig[0] ? (char *)orig : NULL;
		items[i].user = t->user;
		items[i].target = t->target;
		items[i].owner = t->owner;
	}
	struct pt_agent_req req = { .seq = ++agent_seq, .queue_id = m->q.id, .sender = m->q.sender,
		.arrival = (int64_t)m->q.arrival, .len = m->q.len, .n = n, .item = items };
	ssize_t len = pt_agent_req_encode(&req, buf, sizeof buf);
	free(items);
	if (len >= 0 && *memfd < 0 && m->q.len <= PT_AGENT_INLINE_MAX && m->q.len <= sizeof buf - (size_t)len &&
	    agent_room_for((size_t)len + m->q.len)) {
		memcpy(buf + len, m->q.data, m->q.len);
		len += (ssize_t)m->q.len;
	} else if (len >= 0 && *memfd < 0 && (*memfd = message_memfd(m)) < 0) {
		len = -1;
	}
	if (len < 0 || pt_agent_send(pt_qs.local_fd, buf, (size_t)len, *memfd) < 0) {
		free(r);
		return -1;
	}
	r->seq = req.seq;
	r->m = m;
	r->answered = answered;
	r->n = n;
	r->idx = malloc(n * sizeof *r->idx);
	if (!r->idx) {
		/* Sent already: the answer will find no request and be dropped;
		 * these deliveries count as deferred (a retry may duplicate). */
		free(r);
		return -1;
	}
	memcpy(r->idx, idx, n * sizeof *idx);
	r->timer = pt_timer_add(pt_qs.loop, AGENT_TIMEOUT_MS, agent_timeout, r);
	r->next = agent_pending;
	agent_pending = r;
	m->outstanding++;
	return 0;
}

void
qagent_dispatch(struct qmsg *m, qmsg_step_fn *answered)
{
	size_t *idx = malloc((m->nt ? m->nt : 1) * sizeof *idx);
	size_t n = 0;
	for (size_t i = 0; idx && i < m->nt; i++)
		if (m->t[i].state == TARGET_PENDING)
			idx[n++] = i;
	int memfd = -1;
	size_t sent = 0;
	for (size_t off = 0; pt_qs.local_fd >= 0 && off < n; off += AGENT_CHUNK) {
		size_t k = n - off < AGENT_CHUNK ? n - off : AGENT_CHUNK;
		if (agent_send(m, answered, &memfd, idx + off, k) != 0)
			break;
		sent = off + k;
	}
	if (memfd >= 0)
		close(memfd);
	const char *why = pt_qs.local_fd >= 0 ? "cannot pass the message to the local delivery agent"
	                  : pt_qs.local_none ? "mail system configuration error: no local delivery "
	                                       "(no loaded module delivers, e.g. module mbox)"
	                                     : "local delivery agent is not running";
	for (size_t i = sent; i < n; i++) {
		struct target *t = &m->t[idx[i]];
		pt_status_set(&t->st, 451, "4.3.0", "%s", why);
		t->state = TARGET_DONE;
	}
	for (size_t i = 0; !idx && i < m->nt; i++)
		if (m->t[i].state == TARGET_PENDING) {
			pt_status_set(&m->t[i].st, 451, "4.3.0", "%s", why);
			m->t[i].state = TARGET_DONE;
		}
	free(idx);
}
