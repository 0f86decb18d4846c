/* One message's way through the queue: resolve recipients (routing,
 * aliases, users), hand the deliveries to the local agent, then make the
 * outcome durable (bounce queued, remaining recipients rewritten, or the
 * file removed) before anyone is told "done". */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "postern/log.h"
#include "queue_int.h"
#include "relay.h"

struct qstate pt_qs = { .local_fd = -1 };

/* Items per agent request: keeps each request well inside one datagram. */
#define AGENT_CHUNK 200
/* An agent that does not answer in this time has its deliveries deferred. */
#define AGENT_TIMEOUT_MS (10 * 60 * 1000)

struct target {
	size_t rcpt;                  /* index in q.rcpt */
	int kind;                     /* enum pt_agent_kind */
	char *final;                  /* final address (to=) */
	struct pt_user user;
	char *target, *owner;
	struct pt_status st;
	int answered;
};

struct qmsg {
	struct pt_qfile q;
	const char *where;            /* file's subdirectory, or NULL */
	pt_qmsg_done_fn *done;
	void *done_arg;
	struct timeval t0;            /* attempt start */
	double t_before;              /* seconds from arrival to attempt start */
	struct target *t;
	size_t nt, cap;
	struct pt_status *rst;        /* per recipient: code -1 = see targets */
	size_t outstanding;           /* agent requests without an answer */
	struct pt_relay_batch *relay; /* smtp-routed recipients (core/relay.c) */
	/* storage stage */
	struct pt_qfile bounce;
	int have_bounce;
	struct pt_qfile *fwd;         /* copies for remote alias targets */
	size_t nfwd;
	/* Inline delivery in which every recipient failed for good: the
	 * client hears the failure at DATA instead of a bounce later. */
	int may_refuse;               /* an SMTP client waits on the answer */
	unsigned flush_generation;    /* pt_qmgr_flush_generation() at the start */
	int refused;
	struct pt_status refusal;
	int keep;                     /* recipients remain: file rewritten */
	int store_failed;
	unsigned dirs;                /* subdirectories to fsync */
	struct qmsg *next_sync;
	struct qmsg *next_inflight;
};

static struct qmsg *inflight;

int
pt_qmsg_busy(const char *id)
{
	for (struct qmsg *m = inflight; m; m = m->next_inflight)
		if (strcmp(m->q.id, id) == 0)
			return 1;
	return 0;
}

/* done() never runs inside pt_queue_submit: callers expect it later. */
struct done_call {
	pt_qmsg_done_fn *fn;
	void *arg;
	struct pt_status st;
	char id[24];
};

static void
done_fire(struct pt_loop *loop, void *arg)
{
	(void)loop;
	struct done_call *c = arg;
	c->fn(c->arg, &c->st, c->id);
	free(c);
}

static void
done_later(pt_qmsg_done_fn *fn, void *arg, const struct pt_status *st, const char *id)
{
	struct done_call *c = malloc(sizeof *c);
	if (!c || !pt_timer_add(pt_qs.loop, 0, done_fire, c)) {
		free(c);
		fn(arg, st, id);
		return;
	}
	c->fn = fn;
	c->arg = arg;
	c->st = *st;
	snprintf(c->id, sizeof c->id, "%s", id);
}

/* ---------- small helpers ---------- */

void
pt_queue_new_id(char out[24])
{
	static unsigned long long last;
	static unsigned counter;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	unsigned long long now = (unsigned long long)tv.tv_sec * 1000000ULL + (unsigned long long)tv.tv_usec;
	if (now <= last) {
		now = last;
		counter++;
	} else {
		counter = 0;
	}
	if (counter > 0xff) {
		now = last + 1;
		counter = 0;
	}
	last = now;
	/* Seconds, microseconds, a bit of the pid and a counter: unique across
	 * the processes that may make ids at the same time. */
	snprintf(out, 24, "%08llX%05llX%02X%02X", (now / 1000000ULL) & 0xffffffffULL, now % 1000000ULL,
	         (unsigned)getpid() & 0xff, counter & 0xff);
}

const char *
pt_queue_myorigin(const struct pt_config *conf)
{
	const char *o = pt_conf_str(conf, "myorigin");
	return o ? o : "";
}

char *
pt_queue_qualify(const char *addr, const char *origin)
{
	if (!addr)
		return NULL;
	if (strchr(addr, '@') || !addr[0] || !origin || !origin[0])
		return strdup(addr);
	size_t n = strlen(addr) + strlen(origin) + 2;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s@%s", addr, origin);
	return s;
}

static double
elapsed(const struct timeval *a, const struct timeval *b)
{
	double d = (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_usec - a->tv_usec) / 1e6;
	return d < 0 ? 0 : d;
}

void
pt_queue_fmt_delay(double d, char *out, size_t len)
{
	if (d < 0.005)
		snprintf(out, len, "0");
	else if (d < 0.1)
		snprintf(out, len, "%.2f", d);
	else if (d < 10)
		snprintf(out, len, "%.1f", d);
	else
		snprintf(out, len, "%.0f", d);
}

static void
qmsg_free(struct qmsg *m)
{
	for (size_t i = 0; i < m->nt; i++) {
		free(m->t[i].final);
		free(m->t[i].target);
		free(m->t[i].owner);
	}
	free(m->t);
	free(m->rst);
	pt_relay_batch_free(m->relay);
	pt_qfile_free(&m->q);
	if (m->have_bounce)
		pt_qfile_free(&m->bounce);
	for (size_t i = 0; i < m->nfwd; i++)
		pt_qfile_free(&m->fwd[i]);
	free(m->fwd);
	free(m);
}

/* ---------- recipient resolution ---------- */

/* A target that is a remote alias member: forwarded in a new message. */
#define TARGET_FORWARD 100
#define FORWARD_PENDING (-3)

static struct target *
target_add(struct qmsg *m, size_t rcpt, int kind, const char *final)
{
	if (m->nt == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 8;
		struct target *t = realloc(m->t, cap * sizeof *t);
		if (!t)
			return NULL;
		m->t = t;
		m->cap = cap;
	}
	struct target *t = &m->t[m->nt];
	memset(t, 0, sizeof *t);
	t->rcpt = rcpt;
	t->kind = kind;
	t->final = strdup(final);
	if (!t->final)
		return NULL;
	m->nt++;
	return t;
}

static void
split_address(const char *addr, char *local, size_t llen, const char **domain)
{
	const char *at = strrchr(addr, '@');
	size_t n = at ? (size_t)(at - addr) : strlen(addr);
	if (n >= llen)
		n = llen - 1;
	for (size_t i = 0; i < n; i++)
		local[i] = (char)tolower((unsigned char)addr[i]);
	local[n] = 0;
	*domain = at ? at + 1 : "";
}

/* A local name to its mailbox owner; recipient_delimiter extensions fall
 * back to the base name. */
static int
lookup_user(const char *local, struct pt_user *u)
{
	int rc = pt_user_lookup(local, u);
	if (rc == 0 && pt_qs.delimiter[0]) {
		char base[256];
		size_t n = strcspn(local, pt_qs.delimiter);
		if (n > 0 && local[n] && n < sizeof base) {
			memcpy(base, local, n);
			base[n] = 0;
			rc = pt_user_lookup(base, u);
		}
	}
	return rc;
}

static int
is_local_domain(const char *domain)
{
	return !domain[0] || pt_domain_is_local(domain);
}

/* The mailbox target for a local name, or the reason there is none. */
static void
resolve_user(struct qmsg *m, size_t i, const char *local, const char *final)
{
	struct pt_user u;
	int rc = lookup_user(local, &u);
	if (rc < 0) {
		pt_status_set(&m->rst[i], 451, "4.3.0", "temporary failure in user lookup for \"%s\"", local);
		return;
	}
	if (rc == 0) {
		/* Several targets may share the recipient: only a lone one can
		 * carry the recipient's status. */
		struct target *t = target_add(m, i, PT_AGENT_MAILBOX, final);
		if (!t) {
			pt_status_set(&m->rst[i], 451, "4.3.0", "out of memory");
			return;
		}
		pt_status_set(&t->st, 550, "5.1.1", "unknown user: \"%s\"", local);
		t->answered = 1;
		return;
	}
	struct target *t = target_add(m, i, PT_AGENT_MAILBOX, final);
	if (!t) {
		pt_status_set(&m->rst[i], 451, "4.3.0", "out of memory");
		return;
	}
	t->user = u;
}

struct expand_ctx {
	struct qmsg *m;
	size_t rcpt;
	const char *address;
};

static void
alias_emit(void *arg, const char *target, enum pt_alias_target kind, const char *owner)
{
	struct expand_ctx *x = arg;
	struct qmsg *m = x->m;
	if (kind == PT_ALIAS_FILE || kind == PT_ALIAS_COMMAND) {
		struct target *t = target_add(m, x->rcpt, kind == PT_ALIAS_FILE ? PT_AGENT_FILE
		                                                                : PT_AGENT_COMMAND, x->address);
		if (t) {
			t->target = strdup(target);
			t->owner = owner ? strdup(owner) : NULL;
			if (!t->target) {
				pt_status_set(&t->st, 451, "4.3.0", "out of memory");
				t->answered = 1;
			}
		}
		return;
	}
	if (kind != PT_ALIAS_ADDRESS)
		return;
	char local[256];
	const char *domain;
	split_address(target, local, sizeof local, &domain);
	char *final = pt_queue_qualify(target, pt_qs.myorigin);
	if (!final)
		return;
	if (is_local_domain(domain)) {
		resolve_user(m, x->rcpt, local, final);
	} else {
		/* As Postfix's local(8): a remote alias member leaves in a new
		 * message (made in attempt_finish) that routing then relays. */
		struct target *t = target_add(m, x->rcpt, TARGET_FORWARD, final);
		if (t) {
			/* Never sent to the agent; make_forwards answers it. */
			t->answered = 1;
			t->st.code = FORWARD_PENDING;
			t->target = strdup(final);
			t->owner = owner && owner[0] ? pt_queue_qualify(owner, pt_qs.myorigin) : NULL;
			if (!t->target)
				pt_status_set(&t->st, 451, "4.3.0", "out of memory");
		}
	}
	free(final);
}

static void
resolve_local(struct qmsg *m, size_t i)
{
	const struct pt_qrcpt *r = &m->q.rcpt[i];
	char local[256];
	const char *domain;
	split_address(r->address, local, sizeof local, &domain);
	char *final = pt_queue_qualify(r->address, pt_qs.myorigin);
	if (!final) {
		pt_status_set(&m->rst[i], 451, "4.3.0", "out of memory");
		return;
	}
	const struct pt_alias_ops *al = r->state == PT_QRCPT_RESOLVED ? NULL : pt_service_get(PT_SVC_ALIAS);
	if (al && al->expand) {
		struct expand_ctx x = { m, i, final };
		struct pt_status st = { 0 };
		size_t before = m->nt;
		int rc = al->expand(local, alias_emit, &x, &st);
		if (rc == -1) {
			m->nt = before;
			pt_status_set(&m->rst[i], 451, st.dsn[0] ? st.dsn : "4.3.0", "%s",
			              st.text[0] ? st.text : "alias database unavailable");
		} else if (rc == -2) {
			pt_status_set(&m->rst[i], 550, st.dsn[0] ? st.dsn : "5.4.6", "%s",
			              st.text[0] ? st.text : "mail forwarding loop");
		} else if (rc == 0) {
			resolve_user(m, i, local, final);
		} else if (m->nt == before) {
			pt_status_set(&m->rst[i], 0, "2.0.0", "alias expands to nothing");
		}
	} else {
		resolve_user(m, i, local, final);
	}
	free(final);
}

static void
resolve_rcpt(struct qmsg *m, size_t i)
{
	const struct pt_qrcpt *r = &m->q.rcpt[i];
	const struct pt_route_ops *ro = pt_service_get(PT_SVC_ROUTE);
	char local[256];
	const char *domain;
	split_address(r->address, local, sizeof local, &domain);
	if (r->state == PT_QRCPT_RESOLVED || !ro || !ro->route) {
		if (is_local_domain(domain))
			resolve_local(m, i);
		else
			pt_status_set(&m->rst[i], 550, "5.1.2",
			              "mail for %s is not deliverable here: no relay transport", domain);
		return;
	}
	struct pt_route rt;
	memset(&rt, 0, sizeof rt);
	if (ro->route(r->address, &rt) < 0) {
		pt_status_set(&m->rst[i], 451, "4.3.0", "transport table lookup failure");
		return;
	}
	switch (rt.kind) {
	case PT_ROUTE_LOCAL:
		resolve_local(m, i);
		break;
	case PT_ROUTE_ERROR: {
		/* error:5.1.1 text keeps its status; plain text is 5.0.0. */
		const char *t = rt.text;
		char dsn[8] = "5.0.0";
		if (t[0] == '5' && t[1] == '.' && strchr(t, ' ') && strchr(t, ' ') - t < 8) {
			memcpy(dsn, t, (size_t)(strchr(t, ' ') - t));
			dsn[strchr(t, ' ') - t] = 0;
			t = strchr(t, ' ') + 1;
		}
		pt_status_set(&m->rst[i], 550, dsn, "%s", t[0] ? t : "delivery refused by transport table");
		break;
	}
	case PT_ROUTE_RETRY:
		pt_status_set(&m->rst[i], 450, "4.0.0", "%s", rt.text[0] ? rt.text : "delivery temporarily suspended");
		break;
	case PT_ROUTE_DISCARD:
		pt_status_set(&m->rst[i], 0, "2.0.0", "discarded%s%s", rt.text[0] ? ": " : "", rt.text);
		break;
	case PT_ROUTE_SMTP:
		/* The outcome comes from the SMTP client (pt_qmsg_attempt). */
		if (pt_relay_batch_add(&m->relay, i, r->address, r->orig, &rt) != 0)
			pt_status_set(&m->rst[i], 451, "4.3.0", "out of memory");
		break;
	default:
		pt_status_set(&m->rst[i], 550, "5.1.2", "mail for %s is not deliverable here: no relay transport",
		              domain);
		break;
	}
}

/* "Delivered-To: addr" among the headers means we delivered it before:
 * another delivery would loop. */
static int
already_delivered_to(const char *data, size_t len, const char *addr)
{
	size_t alen = strlen(addr);
	const char *p = data, *end = data + len;
	while (p < end && *p != '\n') {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		if ((size_t)(le - p) >= 13 && strncasecmp(p, "Delivered-To:", 13) == 0) {
			const char *v = p + 13;
			while (v < le && (*v == ' ' || *v == '\t'))
				v++;
			const char *ve = le;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r'))
				ve--;
			if ((size_t)(ve - v) == alen && strncasecmp(v, addr, alen) == 0)
				return 1;
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	return 0;
}

static void
resolve_all(struct qmsg *m)
{
	for (size_t i = 0; i < m->q.nrcpt; i++) {
		m->rst[i].code = -1;
		int st = m->q.rcpt[i].state;
		if (st == PT_QRCPT_PENDING || st == PT_QRCPT_RESOLVED)
			resolve_rcpt(m, i);
	}
	/* One copy per mailbox / file / command, and loop detection. */
	for (size_t i = 0; i < m->nt; i++) {
		struct target *t = &m->t[i];
		if (t->answered)
			continue;
		for (size_t k = 0; k < i; k++) {
			const struct target *o = &m->t[k];
			if (o->kind != t->kind || (o->answered && o->st.code == -2))
				continue;
			int same = t->kind == PT_AGENT_MAILBOX ? strcmp(o->user.name, t->user.name) == 0 && !o->answered
			                                       : o->target && t->target && strcmp(o->target, t->target) == 0;
			if (same) {
				t->st.code = -2; /* duplicate: silently dropped */
				t->answered = 1;
				break;
			}
		}
		/* Delivered-To names the recipient before alias expansion (as
		 * Postfix's local(8) writes it), so a loop shows at either level. */
		const char *envelope_rcpt = m->q.rcpt[t->rcpt].address;
		const char *looped = already_delivered_to(m->q.data, m->q.len, t->final) ? t->final
		                     : already_delivered_to(m->q.data, m->q.len, envelope_rcpt) ? envelope_rcpt : NULL;
		if (!t->answered && looped) {
			pt_status_set(&t->st, 554, "5.4.6", "mail forwarding loop for %s", looped);
			t->answered = 1;
		}
	}
}

/* ---------- the agent link ---------- */

struct agent_req {
	uint32_t seq;
	struct qmsg *m;
	size_t first, n;              /* targets covered (indexes into answer order) */
	size_t *idx;
	struct pt_timer *timer;
	struct agent_req *next;
};

static struct agent_req *agent_pending;
static uint32_t agent_seq;
static int agent_sndbuf;              /* the agent socket's send buffer */

static void attempt_finish(struct qmsg *m);

static void
agent_req_complete(struct agent_req *r, const struct pt_agent_resp *resp, const char *why)
{
	struct agent_req **pp = &agent_pending;
	while (*pp && *pp != r)
		pp = &(*pp)->next;
	if (*pp)
		*pp = r->next;
	if (r->timer && resp) {
		pt_timer_cancel(pt_qs.loop, r->timer);
	}
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
		t->answered = 1;
	}
	struct qmsg *m = r->m;
	free(r->idx);
	free(r);
	if (--m->outstanding == 0)
		attempt_finish(m);
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

static int message_memfd(const struct qmsg *m);

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

/* One request for targets idx[0..n). A small message goes inline after
 * the request; otherwise (or when they do not fit together) the message
 * goes as a memfd, made on first need and kept in *memfd for the
 * message's other requests. */
static int
agent_send(struct qmsg *m, int *memfd, size_t *idx, size_t n)
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
		items[i].kind = t->kind;
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

static int
message_memfd(const struct qmsg *m)
{
	int fd = memfd_create("postern-msg", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -1;
	const char *p = m->q.data;
	size_t left = m->q.len;
	while (left) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			close(fd);
			return -1;
		}
		p += w;
		left -= (size_t)w;
	}
	/* The agent maps it: nobody may change it under the delivery. */
	fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
	return fd;
}

/* ---------- an attempt ---------- */

/* The SMTP client has an outcome for every smtp-routed recipient. */
static void
relay_done(void *arg)
{
	struct qmsg *m = arg;
	if (--m->outstanding == 0)
		attempt_finish(m);
}

static int next_may_refuse;

/* An attempt for a message an SMTP client is waiting on. */
static void
pt_qmsg_attempt_smtp(struct pt_qfile *q, pt_qmsg_done_fn *done, void *arg)
{
	next_may_refuse = 1;
	pt_qmsg_attempt(q, NULL, done, arg);
	next_may_refuse = 0;
}

static void prestore_work(void *arg);
static void prestore_done(void *arg);
static void attempt_dispatch(struct qmsg *m);
static void message_complete(struct qmsg *m);

void
pt_qmsg_attempt(struct pt_qfile *q, const char *where, pt_qmsg_done_fn *done, void *arg)
{
	struct qmsg *m = calloc(1, sizeof *m);
	if (m)
		m->rst = calloc(q->nrcpt ? q->nrcpt : 1, sizeof *m->rst);
	if (!m || !m->rst) {
		free(m);
		pt_qfile_free(q);
		struct pt_status st;
		pt_status_set(&st, 451, "4.3.0", "Error: queue file write error");
		if (done)
			done_later(done, arg, &st, "");
		return;
	}
	m->q = *q;
	memset(q, 0, sizeof *q);
	m->where = where;
	m->done = done;
	m->done_arg = arg;
	m->may_refuse = next_may_refuse;
	m->flush_generation = pt_qmgr_flush_generation();
	m->next_inflight = inflight;
	inflight = m;
	pt_qs.inflight++;
	gettimeofday(&m->t0, NULL);
	m->t_before = difftime(m->t0.tv_sec, m->q.arrival);
	if (m->t_before < 0)
		m->t_before = 0;

	resolve_all(m);
	if (m->relay && !m->where && m->done) {
		/* A remote server may take minutes: the message is made durable
		 * and acknowledged first, then relayed (as Postfix queues). */
		if (pt_work_submit(pt_qs.loop, prestore_work, prestore_done, m) != 0) {
			prestore_work(m);
			prestore_done(m);
		}
		return;
	}
	attempt_dispatch(m);
}

static void
prestore_work(void *arg)
{
	struct qmsg *m = arg;
	if (pt_qfile_store(pt_qs.qdir, PT_QDIR_ACTIVE, &m->q) != 0 || pt_qdir_sync(pt_qs.qdir, PT_QDIR_ACTIVE) != 0) {
		pt_error("%s: queue file write error: %s", m->q.id, strerror(errno));
		m->store_failed = 1;
	}
}

static void
prestore_done(void *arg)
{
	struct qmsg *m = arg;
	if (m->store_failed) {
		message_complete(m);
		return;
	}
	struct pt_status st;
	memset(&st, 0, sizeof st);
	snprintf(st.dsn, sizeof st.dsn, "2.0.0");
	done_later(m->done, m->done_arg, &st, m->q.id);
	m->done = NULL;
	m->where = PT_QDIR_ACTIVE;
	attempt_dispatch(m);
}

/* Send the resolved targets on their way: the SMTP client for relayed
 * recipients, the delivery agent for the rest. */
static void
attempt_dispatch(struct qmsg *m)
{
	if (m->relay) {
		struct pt_relay_msg rm = { .queue_id = m->q.id, .sender = m->q.sender, .data = m->q.data,
			.len = m->q.len, .arrival = m->q.arrival };
		m->outstanding++;
		pt_relay_batch_start(m->relay, pt_qs.loop, &rm, m->rst, relay_done, m);
	}
	size_t *idx = malloc((m->nt ? m->nt : 1) * sizeof *idx);
	size_t n = 0;
	for (size_t i = 0; idx && i < m->nt; i++)
		if (!m->t[i].answered)
			idx[n++] = i;
	if (n == 0 || !idx) {
		free(idx);
		if (m->outstanding == 0)
			attempt_finish(m);
		return;
	}
	int memfd = -1;
	/* Hold a reference while sending so an early answer cannot finish
	 * the message under us. */
	m->outstanding++;
	size_t sent = 0;
	for (size_t off = 0; pt_qs.local_fd >= 0 && off < n; off += AGENT_CHUNK) {
		size_t k = n - off < AGENT_CHUNK ? n - off : AGENT_CHUNK;
		if (agent_send(m, &memfd, idx + off, k) != 0)
			break;
		sent = off + k;
	}
	if (memfd >= 0)
		close(memfd);
	for (size_t i = sent; i < n; i++) {
		struct target *t = &m->t[idx[i]];
		pt_status_set(&t->st, 451, "4.3.0", "%s", pt_qs.local_fd >= 0 ? "cannot pass the message to the local delivery agent"
		                                                          : "local delivery agent is not running");
		t->answered = 1;
	}
	free(idx);
	if (--m->outstanding == 0)
		attempt_finish(m);
}

/* ---------- outcome ---------- */

static void
log_result(struct qmsg *m, const char *to, const char *orig, const struct pt_status *st, const char *relay)
{
	struct timeval now;
	gettimeofday(&now, NULL);
	double d_deliver = elapsed(&m->t0, &now);
	double total = m->t_before + d_deliver;
	char a[16], b[16], c[16], d[16], all[16];
	pt_queue_fmt_delay(m->t_before, a, sizeof a);
	pt_queue_fmt_delay(0, b, sizeof b);
	pt_queue_fmt_delay(0, c, sizeof c);
	pt_queue_fmt_delay(d_deliver, d, sizeof d);
	pt_queue_fmt_delay(total, all, sizeof all);
	const char *status = st->code == 0 ? "sent" : st->code >= 500 ? "bounced" : "deferred";
	char origpart[600] = "";
	if (orig && orig[0] && strcasecmp(orig, to) != 0)
		snprintf(origpart, sizeof origpart, ", orig_to=<%s>", orig);
	pt_log_as("local", PT_LOG_INFO, "%s: to=<%s>%s, relay=%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)",
	          m->q.id, to, origpart, relay, all, a, b, c, d, st->dsn[0] ? st->dsn : "2.0.0", status,
	          st->text[0] ? st->text : "delivered to mailbox");
}

struct rlist {
	struct pt_dsn_rcpt *v;
	size_t n;
};

static void
rlist_add(struct rlist *l, const char *addr, const char *orig, const struct pt_status *st)
{
	struct pt_dsn_rcpt *v = realloc(l->v, (l->n + 1) * sizeof *v);
	if (!v)
		return;
	l->v = v;
	v[l->n].address = addr;
	v[l->n].orig = orig;
	v[l->n].dsn = st->dsn;
	v[l->n].text = st->text;
	v[l->n].delayed = 0;
	l->n++;
}

static int
make_bounce(struct qmsg *m, struct rlist *failed)
{
	char id[24];
	pt_queue_new_id(id);
	struct pt_dsn_info in = { .myhostname = pt_qs.myhostname, .mydomain_origin = pt_qs.myorigin,
		.queue_id = m->q.id, .bounce_id = id, .sender = m->q.sender, .arrival = m->q.arrival,
		.now = time(NULL), .ret = m->q.ret, .envid = m->q.envid };
	size_t len;
	char *text = pt_dsn_build(&in, failed->v, failed->n, m->q.data, m->q.len, &len);
	if (!text)
		return -1;
	struct pt_qfile *b = &m->bounce;
	memset(b, 0, sizeof *b);
	snprintf(b->id, sizeof b->id, "%s", id);
	b->sender = strdup("");
	b->arrival = in.now;
	b->submit_uid = (uid_t)-1;
	b->data = text;
	b->len = len;
	b->protocol = strdup("bounce");
	if (!b->sender || !b->protocol || pt_qfile_add_rcpt(b, m->q.sender, m->q.sender, NULL) != 0) {
		pt_qfile_free(b);
		return -1;
	}
	m->have_bounce = 1;
	pt_log_as("bounce", PT_LOG_INFO, "%s: sender non-delivery notification: %s", m->q.id, id);
	return 0;
}

/* One new message per (queue recipient, envelope sender) carrying the
 * remote members of an alias, with Delivered-To of the alias so a copy
 * that comes back is caught as a loop. The targets are answered "sent
 * (forwarded as ID)"; without memory they stay temporary failures and the
 * alias is retried. */
static void
make_forwards(struct qmsg *m)
{
	for (size_t k = 0; k < m->nt; k++) {
		struct target *t = &m->t[k];
		if (t->kind != TARGET_FORWARD || t->st.code != FORWARD_PENDING)
			continue;
		int dup = 0;
		for (size_t j = 0; j < k; j++)
			if (m->t[j].kind == TARGET_FORWARD && m->t[j].st.code == 0 && strcasecmp(m->t[j].final, t->final) == 0)
				dup = 1;
		if (dup) {
			t->st.code = -2; /* duplicate: silently dropped */
			continue;
		}
		const char *sender = t->owner ? t->owner : m->q.sender;
		struct pt_qfile *f = NULL;
		for (size_t j = 0; j < m->nfwd; j++)
			if (m->fwd[j].submit_uid == (uid_t)t->rcpt && strcmp(m->fwd[j].sender, sender) == 0)
				f = &m->fwd[j];
		if (!f) {
			struct pt_qfile *v = realloc(m->fwd, (m->nfwd + 1) * sizeof *v);
			const char *rcpt = m->q.rcpt[t->rcpt].address;
			size_t hlen = strlen(rcpt) + 16;
			char *data = v ? malloc(hlen + m->q.len) : NULL;
			if (v)
				m->fwd = v;
			if (!data) {
				pt_status_set(&t->st, 451, "4.3.0", "cannot forward: out of memory");
				continue;
			}
			f = &m->fwd[m->nfwd];
			memset(f, 0, sizeof *f);
			int n = snprintf(data, hlen, "Delivered-To: %s\n", rcpt);
			memcpy(data + n, m->q.data, m->q.len);
			f->data = data;
			f->len = (size_t)n + m->q.len;
			pt_queue_new_id(f->id);
			f->sender = strdup(sender);
			f->arrival = time(NULL);
			/* Groups by queue recipient while being built; reset below. */
			f->submit_uid = (uid_t)t->rcpt;
			f->protocol = strdup("forward");
			m->nfwd++;
			if (!f->sender || !f->protocol) {
				pt_status_set(&t->st, 451, "4.3.0", "cannot forward: out of memory");
				continue;
			}
		}
		if (pt_qfile_add_rcpt(f, t->final, m->q.rcpt[t->rcpt].orig, m->q.rcpt[t->rcpt].notify) != 0) {
			pt_status_set(&t->st, 451, "4.3.0", "cannot forward: out of memory");
		} else {
			pt_status_set(&t->st, 0, "2.0.0", "forwarded as %s", f->id);
		}
	}
	/* Drop copies that ended up without recipients. */
	size_t out = 0;
	for (size_t j = 0; j < m->nfwd; j++) {
		if (m->fwd[j].nrcpt == 0) {
			pt_qfile_free(&m->fwd[j]);
			continue;
		}
		m->fwd[j].submit_uid = (uid_t)-1;
		m->fwd[out++] = m->fwd[j];
	}
	m->nfwd = out;
}

static void store_work(void *arg);
static void store_done(void *arg);

static void
attempt_finish(struct qmsg *m)
{
	struct rlist failed = { 0 };
	size_t nrcpt = m->q.nrcpt;
	struct pt_qrcpt *old = m->q.rcpt;
	struct pt_qrcpt *keep = calloc(nrcpt * 2 + m->nt + 1, sizeof *keep);
	size_t nkeep = 0;
	time_t now = time(NULL);
	time_t lifetime = m->q.sender[0] ? pt_qs.lifetime : pt_qs.bounce_lifetime;
	int expired = pt_queue_expired(m->q.arrival, now, lifetime);
	if (!keep) {
		/* Without memory nothing can be decided: keep the file as it is. */
		m->keep = -1;
		goto store;
	}
	make_forwards(m);

	size_t settled = 0; /* delivered, forwarded or deferred: not a refusal */
	for (size_t i = 0; i < nrcpt; i++) {
		struct pt_qrcpt *r = &old[i];
		if (r->state != PT_QRCPT_PENDING && r->state != PT_QRCPT_RESOLVED)
			continue;
		const char *orig = r->orig && r->orig[0] ? r->orig : r->address;
		int requeue_orig = 0;
		struct pt_status *why = NULL;
		if (m->rst[i].code != -1) {
			struct pt_status *st = &m->rst[i];
			if (pt_qs.soft_bounce && st->code >= 500)
				st->code = 450;
			/* The SMTP client logged its recipients already. */
			if (!pt_relay_batch_has(m->relay, i))
				log_result(m, r->address, r->orig, st, st->code == 0 ? "none" : "local");
			if (st->code >= 500 || (st->code >= 400 && expired))
				rlist_add(&failed, r->address, orig, st);
			else if (st->code >= 400) {
				requeue_orig = 1;
				why = st;
			}
			if (st->code < 500)
				settled++;
		}
		for (size_t k = 0; k < m->nt; k++) {
			struct target *t = &m->t[k];
			if (t->rcpt != i || t->st.code == -2)
				continue;
			if (pt_qs.soft_bounce && t->st.code >= 500)
				t->st.code = 450;
			log_result(m, t->final, orig, &t->st, "local");
			if (t->st.code < 500)
				settled++;
			if (t->st.code >= 500 || (t->st.code >= 400 && expired)) {
				rlist_add(&failed, t->final, orig, &t->st);
			} else if (t->st.code >= 400) {
				if (t->kind == PT_AGENT_MAILBOX && t->user.name[0]) {
					struct pt_qrcpt *nr = &keep[nkeep++];
					nr->address = strdup(t->final);
					nr->orig = r->orig ? strdup(r->orig) : NULL;
					nr->notify = r->notify ? strdup(r->notify) : NULL;
					nr->state = PT_QRCPT_RESOLVED;
					snprintf(nr->dsn, sizeof nr->dsn, "%s", t->st.dsn);
					nr->reason = strdup(t->st.text);
				} else {
					requeue_orig = 1;
					why = &t->st;
				}
			}
		}
		if (requeue_orig) {
			struct pt_qrcpt *nr = &keep[nkeep++];
			nr->address = strdup(r->address);
			nr->orig = r->orig ? strdup(r->orig) : NULL;
			nr->notify = r->notify ? strdup(r->notify) : NULL;
			nr->state = r->state;
			snprintf(nr->dsn, sizeof nr->dsn, "%s", why->dsn);
			nr->reason = strdup(why->text);
		}
	}

	int all_full = failed.n > 0;
	for (size_t i = 0; i < failed.n; i++)
		if (strcmp(failed.v[i].dsn, "5.2.2") != 0)
			all_full = 0;
	if (all_full && m->may_refuse && !m->where && m->done && settled == 0 && nkeep == 0) {
		/* Every mailbox was full and nothing else happened: with the
		 * client still on the line, refuse at DATA (552 5.2.2) rather
		 * than bounce. Other failures bounce, as Postfix's. */
		m->refused = 1;
		pt_status_set(&m->refusal, 552, "5.2.2", "<%s>: Mailbox full (%s)", failed.v[0].address, failed.v[0].text);
		pt_log_as("qmgr", PT_LOG_INFO, "%s: refused at end of data: %d %s %s", m->q.id, m->refusal.code,
		          m->refusal.dsn, m->refusal.text);
	} else if (failed.n) {
		if (!m->q.sender[0])
			pt_log_as("bounce", PT_LOG_WARNING, "%s: undeliverable notification to <> discarded (double bounce)",
			          m->q.id);
		else if (make_bounce(m, &failed) != 0)
			pt_error("%s: cannot create the non-delivery notification: out of memory", m->q.id);
	}
	free(failed.v);

	/* The failed ones' strings live in old until here. */
	for (size_t i = 0; i < nrcpt; i++) {
		free(old[i].address);
		free(old[i].orig);
		free(old[i].notify);
		free(old[i].reason);
	}
	free(old);
	m->q.rcpt = keep;
	m->q.nrcpt = nkeep;
	m->keep = nkeep > 0;
	if (m->keep) {
		m->q.attempts++;
		m->q.next_retry = now + pt_queue_backoff(m->q.attempts, pt_qs.min_backoff, pt_qs.max_backoff);
	}
store:
	if (!m->keep && !m->have_bounce && !m->nfwd && !m->where) {
		/* Fast path: everything delivered with fsync, nothing to store. */
		store_done(m);
		return;
	}
	if (pt_work_submit(pt_qs.loop, store_work, store_done, m) != 0) {
		store_work(m);
		store_done(m);
	}
}

/* Pool thread: the writes and file fsyncs; directory fsyncs are batched
 * afterwards across messages. */
enum { DIR_ACTIVE = 1, DIR_DEFERRED = 2 };

static void
store_work(void *arg)
{
	struct qmsg *m = arg;
	if (m->keep < 0) {
		m->store_failed = 1;
		return;
	}
	/* The bounce first: once the original forgets its failed recipients,
	 * the notice about them must already be safe. */
	if (m->have_bounce) {
		if (pt_qfile_store(pt_qs.qdir, PT_QDIR_ACTIVE, &m->bounce) != 0) {
			pt_error("%s: cannot store the bounce %s: %s", m->q.id, m->bounce.id, strerror(errno));
			m->store_failed = 1;
			return;
		}
		m->dirs |= DIR_ACTIVE;
		if (pt_qdir_sync(pt_qs.qdir, PT_QDIR_ACTIVE) != 0) {
			m->store_failed = 1;
			return;
		}
	}
	/* Forwarded copies too, before the alias counts as delivered. */
	for (size_t j = 0; j < m->nfwd; j++) {
		if (pt_qfile_store(pt_qs.qdir, PT_QDIR_ACTIVE, &m->fwd[j]) != 0) {
			pt_error("%s: cannot store the forwarded copy %s: %s", m->q.id, m->fwd[j].id, strerror(errno));
			m->store_failed = 1;
			return;
		}
		m->dirs |= DIR_ACTIVE;
	}
	if (m->nfwd && pt_qdir_sync(pt_qs.qdir, PT_QDIR_ACTIVE) != 0) {
		m->store_failed = 1;
		return;
	}
	if (m->keep) {
		if (pt_qfile_store(pt_qs.qdir, PT_QDIR_DEFERRED, &m->q) != 0) {
			pt_error("%s: queue file write error: %s", m->q.id, strerror(errno));
			m->store_failed = 1;
			return;
		}
		m->dirs |= DIR_DEFERRED;
		if (m->where && strcmp(m->where, PT_QDIR_ACTIVE) == 0) {
			char p[2048];
			snprintf(p, sizeof p, "%s/%s/%s", pt_qs.qdir, PT_QDIR_ACTIVE, m->q.id);
			/* Durable in deferred/ first (the dirsync below), a
			 * leftover in active/ is resolved at start. */
			if (pt_qdir_sync(pt_qs.qdir, PT_QDIR_DEFERRED) == 0)
				unlink(p);
			m->dirs |= DIR_ACTIVE;
		}
	} else if (m->where) {
		char p[2048];
		snprintf(p, sizeof p, "%s/%s/%s", pt_qs.qdir, m->where, m->q.id);
		if (unlink(p) != 0 && errno != ENOENT)
			pt_error("%s: cannot remove queue file: %s", m->q.id, strerror(errno));
		m->dirs |= strcmp(m->where, PT_QDIR_ACTIVE) == 0 ? DIR_ACTIVE : DIR_DEFERRED;
	}
}

/* Group commit of directory fsyncs: one fsync per directory serves every
 * message that asked before it started. */
static struct qmsg *sync_waiting, *sync_running;
static unsigned sync_running_dirs;
static int sync_failed;

static void sync_start(void);

static void
sync_work(void *arg)
{
	(void)arg;
	sync_failed = 0;
	if ((sync_running_dirs & DIR_ACTIVE) && pt_qdir_sync(pt_qs.qdir, PT_QDIR_ACTIVE) != 0)
		sync_failed = 1;
	if ((sync_running_dirs & DIR_DEFERRED) && pt_qdir_sync(pt_qs.qdir, PT_QDIR_DEFERRED) != 0)
		sync_failed = 1;
}

static void message_complete(struct qmsg *m);

static void
sync_done(void *arg)
{
	(void)arg;
	struct qmsg *list = sync_running;
	sync_running = NULL;
	while (list) {
		struct qmsg *nx = list->next_sync;
		if (sync_failed)
			list->store_failed = 1;
		message_complete(list);
		list = nx;
	}
	if (sync_waiting)
		sync_start();
}

static void
sync_start(void)
{
	sync_running = sync_waiting;
	sync_waiting = NULL;
	sync_running_dirs = 0;
	for (struct qmsg *m = sync_running; m; m = m->next_sync)
		sync_running_dirs |= m->dirs;
	if (pt_work_submit(pt_qs.loop, sync_work, sync_done, NULL) != 0) {
		sync_work(NULL);
		sync_done(NULL);
	}
}

static void
store_done(void *arg)
{
	struct qmsg *m = arg;
	if (m->store_failed || !m->dirs) {
		message_complete(m);
		return;
	}
	m->next_sync = sync_waiting;
	sync_waiting = m;
	if (!sync_running)
		sync_start();
}

static void
message_complete(struct qmsg *m)
{
	struct pt_status st;
	memset(&st, 0, sizeof st);
	if (m->store_failed) {
		pt_status_set(&st, 451, "4.3.0", "Error: queue file write error");
		/* Keep what is on disk as it was: the next run retries it. */
		if (m->where)
			pt_qmgr_note(m->q.id, m->where, time(NULL) + pt_qs.min_backoff);
	} else if (m->refused) {
		st = m->refusal;
		pt_qmgr_forget(m->q.id);
		pt_log_as("qmgr", PT_LOG_INFO, "%s: removed", m->q.id);
	} else {
		snprintf(st.dsn, sizeof st.dsn, "2.0.0");
		if (m->keep) {
			/* A flush that came while this attempt ran applies to it. */
			int flushed = m->flush_generation != pt_qmgr_flush_generation();
			pt_qmgr_note(m->q.id, PT_QDIR_DEFERRED, flushed ? 0 : m->q.next_retry);
		} else {
			pt_qmgr_forget(m->q.id);
			pt_log_as("qmgr", PT_LOG_INFO, "%s: removed", m->q.id);
		}
	}
	if (m->done)
		done_later(m->done, m->done_arg, &st, m->q.id);
	struct qmsg **pp = &inflight;
	while (*pp && *pp != m)
		pp = &(*pp)->next_inflight;
	if (*pp)
		*pp = m->next_inflight;
	if (m->have_bounce && !m->store_failed) {
		struct pt_qfile b = m->bounce;
		m->have_bounce = 0;
		memset(&m->bounce, 0, sizeof m->bounce);
		pt_log_as("qmgr", PT_LOG_INFO, "%s: from=<>, size=%zu, nrcpt=1 (queue active)", b.id, b.len);
		pt_qmsg_attempt(&b, PT_QDIR_ACTIVE, NULL, NULL);
	}
	for (size_t j = 0; j < m->nfwd && !m->store_failed; j++) {
		struct pt_qfile f = m->fwd[j];
		memset(&m->fwd[j], 0, sizeof m->fwd[j]);
		pt_log_as("qmgr", PT_LOG_INFO, "%s: from=<%s>, size=%zu, nrcpt=%zu (queue active)", f.id, f.sender,
		          f.len, f.nrcpt);
		pt_qmsg_attempt(&f, PT_QDIR_ACTIVE, NULL, NULL);
	}
	char id[24];
	snprintf(id, sizeof id, "%s", m->q.id);
	qmsg_free(m);
	pt_qs.inflight--;
	pt_qmgr_attempt_done(id);
}

/* ---------- submission (services.h) ---------- */

static char *
dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* "ID: message-id=<...>" as Postfix's cleanup logs it: admins follow a
 * message from the sender's Message-Id to the queue id. */
static void
log_message_id(const struct pt_qfile *q)
{
	const char *p = q->data, *end = q->data + q->len;
	while (p < end && *p != '\n') {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		if (le - p > 11 && strncasecmp(p, "Message-ID:", 11) == 0) {
			const char *v = p + 11;
			while (v < le && (*v == ' ' || *v == '\t'))
				v++;
			int n = (int)(le - v);
			if (n > 0 && v[n - 1] == '\r')
				n--;
			if (n > 500)
				n = 500;
			pt_log_as("cleanup", PT_LOG_INFO, "%s: message-id=%.*s", q->id, n, v);
			return;
		}
		p = nl ? nl + 1 : end;
	}
}

int
pt_queue_submit(struct pt_loop *loop, const char *queue_id, const struct pt_envelope *env,
                const char *data, size_t len,
                void (*done)(void *arg, const struct pt_status *st, const char *queue_id), void *arg)
{
	(void)loop;
	struct pt_qfile q;
	memset(&q, 0, sizeof q);
	q.submit_uid = (uid_t)-1;
	/* A draining generation (after a reload) still takes the messages its
	 * open sessions finish; only its queue runs have stopped. */
	if (!pt_qs.loop || !env || env->nrcpt == 0 || !queue_id || !pt_qid_valid(queue_id))
		return -1;
	snprintf(q.id, sizeof q.id, "%s", queue_id);
	q.arrival = time(NULL);
	q.sender = strdup(env->sender ? env->sender : "");
	q.client_name = dup_or_null(env->client_name);
	q.client_address = dup_or_null(env->client_address);
	q.helo = dup_or_null(env->helo);
	q.protocol = dup_or_null(env->protocol);
	q.sasl_username = dup_or_null(env->sasl_username);
	q.envid = dup_or_null(env->envid);
	q.ret = dup_or_null(env->ret);
	q.data = malloc(len + 1);
	q.len = len;
	if (!q.sender || !q.data)
		goto oom;
	memcpy(q.data, data, len);
	q.data[len] = 0;
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct pt_envelope_rcpt *r = &env->rcpt[i];
		if (!r->address || pt_qfile_add_rcpt(&q, r->address, r->orig ? r->orig : r->address, r->notify) != 0)
			goto oom;
	}
	log_message_id(&q);
	pt_log_as("qmgr", PT_LOG_INFO, "%s: from=<%s>, size=%zu, nrcpt=%zu (queue active)", q.id, q.sender, q.len,
	          q.nrcpt);
	pt_qmsg_attempt_smtp(&q, done, arg);
	return 0;
oom:
	pt_qfile_free(&q);
	return -1;
}
