/* One message's attempt: resolve its recipients, hand the deliveries to
 * their transports (local among them), settle the outcome, make it
 * durable, and tell the caller through its one done callback. The stages
 * live in queue_resolve.c, queue_transport.c, queue_outcome.c,
 * queue_store.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "postern/event.h"
#include "postern/map.h"
#include "queue_msg.h"

/* A lookup module's answer pending (a directory server, postern/map.h):
 * the recipients are resolved again shortly (pt_map_retry_ms), up to the
 * bound; then what is still unknown is deferred (4.3.0) as any lookup
 * failure. */
#define RESOLVE_BOUND_MS 30000

static struct qmsg *inflight;

int
pt_qmsg_busy(const char *id)
{
	for (struct qmsg *m = inflight; m; m = m->next_inflight)
		if (strcmp(m->q.id, id) == 0)
			return 1;
	return 0;
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
	free(m->rr);
	qtransport_free(m);
	pt_qfile_free(&m->q);
	if (m->have_bounce)
		pt_qfile_free(&m->bounce);
	for (size_t i = 0; i < m->nfwd; i++)
		pt_qfile_free(&m->fwd[i].q);
	free(m->fwd);
	free(m);
}

static void
inflight_remove(struct qmsg *m)
{
	struct qmsg **pp = &inflight;
	while (*pp && *pp != m)
		pp = &(*pp)->next_inflight;
	if (*pp)
		*pp = m->next_inflight;
}

/* The outcome is durable (or could not be made so): the last event. */
static void
attempt_stored(struct qmsg *m)
{
	inflight_remove(m);
	struct pt_qoutcome o;
	memset(&o, 0, sizeof o);
	o.event = PT_QEV_FINISHED;
	o.id = m->q.id;
	struct pt_qfile *spawned = NULL;
	if (m->store_failed) {
		pt_status_set(&o.st, 451, "4.3.0", "Error: queue file write error");
		/* What is on disk stays as it was: the next run retries it. */
		o.fate = PT_QFATE_UNCHANGED;
		o.where = m->where;
	} else {
		if (m->refused)
			o.st = m->refusal;
		else
			snprintf(o.st.dsn, sizeof o.st.dsn, "2.0.0");
		o.fate = m->keep && !m->refused ? PT_QFATE_DEFERRED : PT_QFATE_REMOVED;
		o.next_retry = m->q.next_retry;
		/* The bounce and forwarded copies are safe in active/; without
		 * memory to hand them over, the next scan finds them there. */
		spawned = m->have_bounce || m->nfwd ? calloc(1 + m->nfwd, sizeof *spawned) : NULL;
		if (spawned && m->have_bounce) {
			spawned[o.nspawned++] = m->bounce;
			m->have_bounce = 0;
		}
		for (size_t j = 0; spawned && j < m->nfwd; j++)
			spawned[o.nspawned++] = m->fwd[j].q;
		if (spawned)
			m->nfwd = 0;
		o.spawned = spawned;
	}
	m->done(m->done_arg, &o);
	for (size_t j = 0; j < o.nspawned; j++)
		pt_qfile_free(&spawned[j]);
	free(spawned);
	qmsg_free(m);
}

/* One delivery stage has answered (a transport's deliver call, or the
 * dispatch itself): when none is left, settle and store. */
static void
attempt_answered(struct qmsg *m)
{
	if (--m->outstanding > 0)
		return;
	qoutcome_settle(m);
	qstore_commit(m, attempt_stored);
}

/* Send the resolved recipients and targets to their transports. */
static void
attempt_dispatch(struct qmsg *m)
{
	/* Held while dispatching, so an early answer cannot settle the
	 * message under us. */
	m->outstanding++;
	qtransport_dispatch(m, attempt_answered);
	attempt_answered(m);
}

static void
attempt_accepted(struct qmsg *m)
{
	if (m->store_failed) {
		attempt_stored(m);
		return;
	}
	struct pt_qoutcome o;
	memset(&o, 0, sizeof o);
	o.event = PT_QEV_ACCEPTED;
	o.id = m->q.id;
	snprintf(o.st.dsn, sizeof o.st.dsn, "2.0.0");
	m->done(m->done_arg, &o);
	attempt_dispatch(m);
}

static void attempt_resolve(struct qmsg *m);

void
pt_qmsg_attempt(struct pt_qfile *q, const char *where, int client_waits, pt_qmsg_done_fn *done, void *arg)
{
	struct qmsg *m = calloc(1, sizeof *m);
	if (m)
		m->rr = calloc(q->nrcpt ? q->nrcpt : 1, sizeof *m->rr);
	if (!m || !m->rr) {
		free(m);
		struct pt_qoutcome o;
		memset(&o, 0, sizeof o);
		o.event = PT_QEV_FINISHED;
		o.id = q->id;
		pt_status_set(&o.st, 451, "4.3.0", "Error: queue file write error");
		o.fate = PT_QFATE_UNCHANGED;
		o.where = where;
		done(arg, &o);
		pt_qfile_free(q);
		return;
	}
	m->q = *q;
	memset(q, 0, sizeof *q);
	m->where = where;
	m->client_waits = client_waits;
	m->done = done;
	m->done_arg = arg;
	m->next_inflight = inflight;
	inflight = m;
	gettimeofday(&m->t0, NULL);
	m->t_before = difftime(m->t0.tv_sec, m->q.arrival);
	if (m->t_before < 0)
		m->t_before = 0;
	m->resolve_since = pt_qs.loop ? pt_loop_now(pt_qs.loop) : 0;
	attempt_resolve(m);
}

/* Resolution is lookups only: dropping what a try built and trying again
 * changes nothing else. */
static void
resolve_reset(struct qmsg *m)
{
	for (size_t i = 0; i < m->nt; i++) {
		free(m->t[i].final);
		free(m->t[i].target);
		free(m->t[i].owner);
	}
	free(m->t);
	m->t = NULL;
	m->nt = m->cap = 0;
	memset(m->rr, 0, (m->q.nrcpt ? m->q.nrcpt : 1) * sizeof *m->rr);
	qtransport_free(m);
	m->xg = NULL;
	m->nxg = 0;
}

static void
resolve_again(struct pt_loop *loop, void *arg)
{
	struct qmsg *m = arg;
	(void)loop;
	m->resolve_timer = NULL;
	attempt_resolve(m);
}

static void
attempt_resolve(struct qmsg *m)
{
	unsigned long p0 = pt_map_pending_count();
	qresolve_all(m);
	if (pt_map_pending_count() != p0 && pt_qs.loop &&
	    pt_loop_now(pt_qs.loop) - m->resolve_since < RESOLVE_BOUND_MS) {
		resolve_reset(m);
		m->resolve_timer = pt_timer_add(pt_qs.loop, pt_map_retry_ms(pt_loop_now(pt_qs.loop) - m->resolve_since),
		                                resolve_again, m);
		if (m->resolve_timer)
			return;
		qresolve_all(m);      /* no timer: what is pending is deferred */
	}
	if (qtransport_slow(m) && !m->where && m->client_waits) {
		/* A remote server may take minutes: the message is made durable
		 * and acknowledged first, then relayed (as Postfix queues). */
		qstore_accept(m, attempt_accepted);
		return;
	}
	attempt_dispatch(m);
}
