/* The outcome of one attempt: log every delivery, then decide what the
 * queue file becomes (recipients to retry, with RESOLVED mailboxes), the
 * bounce for the failed ones, the forwarded copies for remote alias
 * members, or a refusal at DATA. Nothing is written here (queue_store.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "postern/log.h"
#include "postern/transport.h"
#include "queue_msg.h"

static double
elapsed(const struct timeval *a, const struct timeval *b)
{
	double d = (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_usec - a->tv_usec) / 1e6;
	return d < 0 ? 0 : d;
}

/* The log line of an outcome decided here, not by a transport (routing
 * and alias failures, unknown users, loops, forwards). */
static void
outcome_log(const struct qmsg *m, const char *to, const char *orig, const struct pt_status *st, const char *relay)
{
	struct timeval now;
	gettimeofday(&now, NULL);
	/* Before the attempt, then the attempt; no connection to wait for. */
	double delays[4] = { m->t_before, 0, 0, elapsed(&m->t0, &now) };
	pt_delivery_log("local", m->q.id, to, orig, relay, delays, st);
}

/* ---------- bounces ---------- */

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

/* ---------- forwards ---------- */

/* The copy for queue recipient rcpt and this sender, made on first need
 * with Delivered-To of the recipient (a copy that comes back is caught
 * as a loop). NULL without memory. */
static struct pt_qfile *
forward_for(struct qmsg *m, size_t rcpt, const char *sender)
{
	for (size_t j = 0; j < m->nfwd; j++)
		if (m->fwd[j].rcpt == rcpt && m->fwd[j].q.sender && strcmp(m->fwd[j].q.sender, sender) == 0)
			return &m->fwd[j].q;
	struct forward *v = realloc(m->fwd, (m->nfwd + 1) * sizeof *v);
	if (!v)
		return NULL;
	m->fwd = v;
	const char *addr = m->q.rcpt[rcpt].address;
	size_t hlen = strlen(addr) + 16;
	char *data = malloc(hlen + m->q.len);
	if (!data)
		return NULL;
	struct forward *f = &m->fwd[m->nfwd++];
	memset(f, 0, sizeof *f);
	f->rcpt = rcpt;
	int n = snprintf(data, hlen, "Delivered-To: %s\n", addr);
	memcpy(data + n, m->q.data, m->q.len);
	f->q.data = data;
	f->q.len = (size_t)n + m->q.len;
	pt_queue_new_id(f->q.id);
	f->q.submit_uid = (uid_t)-1;
	f->q.sender = strdup(sender);
	f->q.arrival = time(NULL);
	f->q.protocol = strdup("forward");
	if (!f->q.sender || !f->q.protocol)
		return NULL; /* stays without recipients: dropped below */
	return &f->q;
}

/* One new message per (queue recipient, envelope sender) carrying the
 * remote members of an alias. The targets are answered "sent (forwarded
 * as ID)"; without memory they stay temporary failures and the alias is
 * retried. */
static void
make_forwards(struct qmsg *m)
{
	for (size_t k = 0; k < m->nt; k++) {
		struct target *t = &m->t[k];
		if (t->state != TARGET_FORWARD_PENDING)
			continue;
		t->state = TARGET_DONE;
		int dup = 0;
		for (size_t j = 0; j < k; j++)
			if (m->t[j].kind == TARGET_FORWARD && m->t[j].state == TARGET_DONE && m->t[j].st.code == 0 &&
			    strcasecmp(m->t[j].final, t->final) == 0)
				dup = 1;
		if (dup) {
			t->state = TARGET_DUPLICATE;
			continue;
		}
		const struct pt_qrcpt *r = &m->q.rcpt[t->rcpt];
		struct pt_qfile *f = forward_for(m, t->rcpt, t->owner ? t->owner : m->q.sender);
		if (!f || pt_qfile_add_rcpt(f, t->final, r->orig, r->notify) != 0)
			pt_status_set(&t->st, 451, "4.3.0", "cannot forward: out of memory");
		else
			pt_status_set(&t->st, 0, "2.0.0", "forwarded as %s", f->id);
	}
	/* Drop copies that ended up without recipients. */
	size_t out = 0;
	for (size_t j = 0; j < m->nfwd; j++) {
		if (m->fwd[j].q.nrcpt == 0) {
			pt_qfile_free(&m->fwd[j].q);
			continue;
		}
		m->fwd[out++] = m->fwd[j];
	}
	m->nfwd = out;
}

/* ---------- the decision ---------- */

static void
keep_rcpt(struct pt_qrcpt *nr, const char *address, const struct pt_qrcpt *r, enum pt_qrcpt_state state,
          const struct pt_status *why)
{
	nr->address = strdup(address);
	nr->orig = r->orig ? strdup(r->orig) : NULL;
	nr->notify = r->notify ? strdup(r->notify) : NULL;
	nr->state = (int)state;
	snprintf(nr->dsn, sizeof nr->dsn, "%s", why->dsn);
	nr->reason = strdup(why->text);
}

void
qoutcome_settle(struct qmsg *m)
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
		return;
	}
	make_forwards(m);

	size_t settled = 0; /* delivered, forwarded or deferred: not a refusal */
	for (size_t i = 0; i < nrcpt; i++) {
		struct pt_qrcpt *r = &old[i];
		if (r->state != PT_QRCPT_PENDING && r->state != PT_QRCPT_RESOLVED)
			continue;
		const char *orig = r->orig && r->orig[0] ? r->orig : r->address;
		const struct pt_status *requeue_why = NULL; /* the recipient itself stays */
		if (m->rr[i].how != RCPT_BY_TARGETS) {
			struct pt_status *st = &m->rr[i].st;
			if (pt_qs.soft_bounce && st->code >= 500)
				st->code = 450;
			/* A transport logged its recipients already. */
			if (m->rr[i].how == RCPT_DECIDED)
				outcome_log(m, r->address, r->orig, st, st->code == 0 ? "none" : "local");
			if (st->code >= 500 || (st->code >= 400 && expired))
				rlist_add(&failed, r->address, orig, st);
			else if (st->code >= 400)
				requeue_why = st;
			if (st->code < 500)
				settled++;
		}
		for (size_t k = 0; k < m->nt; k++) {
			struct target *t = &m->t[k];
			if (t->rcpt != i || t->state == TARGET_DUPLICATE)
				continue;
			if (pt_qs.soft_bounce && t->st.code >= 500)
				t->st.code = 450;
			/* The local transport logged the targets it delivered. */
			if (t->state != TARGET_DELIVERED)
				outcome_log(m, t->final, orig, &t->st, "local");
			if (t->st.code < 500)
				settled++;
			if (t->st.code >= 500 || (t->st.code >= 400 && expired)) {
				rlist_add(&failed, t->final, orig, &t->st);
			} else if (t->st.code >= 400) {
				/* A known mailbox is retried as itself: no second
				 * expansion, no duplicate for the targets done. */
				if (t->kind == TARGET_MAILBOX && t->user.name[0])
					keep_rcpt(&keep[nkeep++], t->final, r, PT_QRCPT_RESOLVED, &t->st);
				else
					requeue_why = &t->st;
			}
		}
		if (requeue_why)
			keep_rcpt(&keep[nkeep++], r->address, r, (enum pt_qrcpt_state)r->state, requeue_why);
	}

	int all_full = failed.n > 0;
	for (size_t i = 0; i < failed.n; i++)
		if (strcmp(failed.v[i].dsn, "5.2.2") != 0)
			all_full = 0;
	if (all_full && m->client_waits && !m->where && settled == 0 && nkeep == 0) {
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
}
