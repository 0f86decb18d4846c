/* Delivery through the transports, the local one included: one group per
 * transport, one deliver call per group. A group's entries are recipients
 * routed to a transport by name (their outcomes land in the recipients'
 * results, RCPT_TRANSPORT) or local targets after alias expansion (their
 * outcomes land in the targets, TARGET_DELIVERED, and count for their
 * recipients at outcome time); either way the transport logged them. */
#include <stdlib.h>
#include <string.h>

#include "queue_msg.h"

struct xentry {
	size_t idx;                   /* recipient index, or target index */
	int is_target;
	char *nexthop;                /* owned copy behind r[k].nexthop */
};

struct xgroup {
	struct qmsg *m;
	const struct pt_transport_ops *ops;
	qmsg_step_fn *answered;
	struct pt_transport_rcpt *r;
	struct xentry *e;             /* what r[k] stands for */
	size_t n, cap;
};

/* A new entry at the end of ops's group (made on first need), or NULL
 * without memory. */
static struct pt_transport_rcpt *
group_entry(struct qmsg *m, const struct pt_transport_ops *ops, size_t idx, int is_target, const char *nexthop)
{
	struct xgroup *g = NULL;
	for (size_t k = 0; k < m->nxg; k++)
		if (m->xg[k].ops == ops)
			g = &m->xg[k];
	if (!g) {
		struct xgroup *v = realloc(m->xg, (m->nxg + 1) * sizeof *v);
		if (!v)
			return NULL;
		m->xg = v;
		g = &m->xg[m->nxg++];
		memset(g, 0, sizeof *g);
		g->m = m;
		g->ops = ops;
	}
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 4;
		struct pt_transport_rcpt *r = realloc(g->r, cap * sizeof *r);
		if (r)
			g->r = r;
		struct xentry *e = r ? realloc(g->e, cap * sizeof *e) : NULL;
		if (!e)
			return NULL;
		g->e = e;
		g->cap = cap;
	}
	char *copy = strdup(nexthop);
	if (!copy)
		return NULL;
	g->e[g->n] = (struct xentry){ idx, is_target, copy };
	struct pt_transport_rcpt *r = &g->r[g->n++];
	memset(r, 0, sizeof *r);
	r->nexthop = copy;
	return r;
}

int
qtransport_add(struct qmsg *m, size_t i, const struct pt_transport_ops *ops, const char *nexthop)
{
	struct pt_transport_rcpt *r = group_entry(m, ops, i, 0, nexthop ? nexthop : "");
	if (!r)
		return -1;
	r->address = m->q.rcpt[i].address;
	r->orig = m->q.rcpt[i].orig;
	m->rr[i].how = RCPT_TRANSPORT;
	return 0;
}

int
qtransport_add_target(struct qmsg *m, size_t k, const struct pt_transport_ops *ops)
{
	/* m->t no longer grows: resolution is over. */
	const struct target *t = &m->t[k];
	struct pt_transport_rcpt *r = group_entry(m, ops, k, 1, "");
	if (!r)
		return -1;
	r->address = t->final;
	r->orig = m->q.rcpt[t->rcpt].orig;
	r->detail = t;
	return 0;
}

int
qtransport_slow(const struct qmsg *m)
{
	for (size_t k = 0; k < m->nxg; k++)
		if (m->xg[k].ops->flags & PT_TRANSPORT_SLOW)
			return 1;
	return 0;
}

static void
group_done(void *arg)
{
	struct xgroup *g = arg;
	struct qmsg *m = g->m;
	for (size_t k = 0; k < g->n; k++) {
		const struct xentry *e = &g->e[k];
		if (e->is_target) {
			m->t[e->idx].st = g->r[k].st;
			m->t[e->idx].state = TARGET_DELIVERED;
		} else {
			m->rr[e->idx].st = g->r[k].st;
		}
	}
	g->answered(m);
}

void
qtransport_dispatch(struct qmsg *m, qmsg_step_fn *answered)
{
	/* Valid until the last group is done: it lives in the message. */
	m->xmsg = (struct pt_transport_msg){ .queue_id = m->q.id, .sender = m->q.sender, .data = m->q.data,
		.len = m->q.len, .arrival = m->q.arrival };
	for (size_t k = 0; k < m->nxg; k++) {
		struct xgroup *g = &m->xg[k];
		if (g->n == 0)
			continue; /* its first entry found no memory */
		g->answered = answered;
		m->outstanding++;
		g->ops->deliver(pt_qs.loop, &m->xmsg, g->r, g->n, group_done, g);
	}
}

void
qtransport_free(struct qmsg *m)
{
	for (size_t k = 0; k < m->nxg; k++) {
		struct xgroup *g = &m->xg[k];
		for (size_t j = 0; j < g->n; j++)
			free(g->e[j].nexthop);
		free(g->e);
		free(g->r);
	}
	free(m->xg);
}
