/* Recipients routed to a transport other than local: one group per
 * transport, one deliver call per group; the outcomes land in the
 * recipients' results (RCPT_TRANSPORT: the transport logged them). */
#include <stdlib.h>
#include <string.h>

#include "queue_msg.h"

struct xgroup {
	struct qmsg *m;
	const struct pt_transport_ops *ops;
	qmsg_step_fn *answered;
	struct pt_transport_rcpt *r;
	size_t *idx;                  /* recipient index of r[k] */
	char **nexthop;               /* owned copies behind r[k].nexthop */
	size_t n, cap;
};

int
qtransport_add(struct qmsg *m, size_t i, const struct pt_transport_ops *ops, const char *nexthop)
{
	struct xgroup *g = NULL;
	for (size_t k = 0; k < m->nxg; k++)
		if (m->xg[k].ops == ops)
			g = &m->xg[k];
	if (!g) {
		struct xgroup *v = realloc(m->xg, (m->nxg + 1) * sizeof *v);
		if (!v)
			return -1;
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
		size_t *idx = r ? realloc(g->idx, cap * sizeof *idx) : NULL;
		if (idx)
			g->idx = idx;
		char **nh = idx ? realloc(g->nexthop, cap * sizeof *nh) : NULL;
		if (!nh)
			return -1;
		g->nexthop = nh;
		g->cap = cap;
	}
	char *copy = strdup(nexthop ? nexthop : "");
	if (!copy)
		return -1;
	const struct pt_qrcpt *q = &m->q.rcpt[i];
	struct pt_transport_rcpt *r = &g->r[g->n];
	memset(r, 0, sizeof *r);
	r->address = q->address;
	r->orig = q->orig;
	r->nexthop = copy;
	g->nexthop[g->n] = copy;
	g->idx[g->n] = i;
	g->n++;
	m->rr[i].how = RCPT_TRANSPORT;
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
	for (size_t k = 0; k < g->n; k++)
		g->m->rr[g->idx[k]].st = g->r[k].st;
	g->answered(g->m);
}

void
qtransport_dispatch(struct qmsg *m, qmsg_step_fn *answered)
{
	/* Valid until the last group is done: it lives in the message. */
	m->xmsg = (struct pt_transport_msg){ .queue_id = m->q.id, .sender = m->q.sender, .data = m->q.data,
		.len = m->q.len, .arrival = m->q.arrival };
	for (size_t k = 0; k < m->nxg; k++) {
		struct xgroup *g = &m->xg[k];
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
			free(g->nexthop[j]);
		free(g->nexthop);
		free(g->idx);
		free(g->r);
	}
	free(m->xg);
}
