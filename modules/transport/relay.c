/* The SMTP client as a transport (postern/transport.h, "smtp" and
 * "relay"): a deliver call's recipients become one job per next hop; each
 * destination runs at most default_destination_concurrency_limit
 * sessions, hands a finished session the next waiting job (RSET between)
 * or caches it for a short while; outcomes are logged as Postfix's
 * smtp(8) does. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "postern/log.h"
#include "relay_int.h"
#include "transport.h"

/* ---------- settings ---------- */

int
relay_tls_level_parse(const char *v, enum relay_tls_level *out)
{
	if (strcmp(v, "may") == 0)
		*out = RELAY_TLS_MAY;
	else if (strcmp(v, "none") == 0)
		*out = RELAY_TLS_NONE;
	else if (strcmp(v, "encrypt") == 0)
		*out = RELAY_TLS_ENCRYPT;
	else
		return -1;
	return 0;
}

static unsigned
conf_ms(const struct pt_config *c, const char *name)
{
	return (unsigned)pt_conf_int(c, name) * 1000u;
}

/* The module's parameters (declared, with their defaults and limits, in
 * module.c's table: nothing to default here). */
void
relay_settings_load(const struct pt_config *c, struct relay_settings *s)
{
	s->connect_ms = conf_ms(c, "smtp_connect_timeout");
	s->helo_ms = conf_ms(c, "smtp_helo_timeout");
	s->mail_ms = conf_ms(c, "smtp_mail_timeout");
	s->rcpt_ms = conf_ms(c, "smtp_rcpt_timeout");
	s->data_init_ms = conf_ms(c, "smtp_data_init_timeout");
	s->data_xfer_ms = conf_ms(c, "smtp_data_xfer_timeout");
	s->data_done_ms = conf_ms(c, "smtp_data_done_timeout");
	s->starttls_ms = conf_ms(c, "smtp_starttls_timeout");
	s->rset_ms = conf_ms(c, "smtp_rset_timeout");
	s->quit_ms = conf_ms(c, "smtp_quit_timeout");
	s->cache_ms = conf_ms(c, "smtp_connection_cache_time_limit");
	if (relay_tls_level_parse(pt_conf_str(c, "smtp_tls_security_level"), &s->tls) != 0)
		s->tls = RELAY_TLS_MAY; /* the validator refused it already */
	const char *helo = pt_conf_str(c, "smtp_helo_name");
	if (!helo || !*helo)
		helo = pt_conf_str(c, "myhostname");
	snprintf(s->helo_name, sizeof s->helo_name, "%s", helo && *helo ? helo : "localhost");
	s->concurrency = (unsigned)pt_conf_int(c, "default_destination_concurrency_limit");
}

static struct relay_settings relay_live;

void
relay_configure(const struct relay_settings *s)
{
	relay_live = *s;
}

/* ---------- destinations ---------- */

static struct relay_dest *dests;

static int relay_dest_session_free_for_work(struct relay_dest *d, struct relay_session *ss);
static void relay_dest_session_idle(struct relay_dest *d, struct relay_session *ss);
static void relay_dest_session_unidle(struct relay_dest *d, struct relay_session *ss);
static void relay_dest_session_gone(struct relay_dest *d, const struct pt_status *failed, const char *relay);
static void relay_dest_requeue(struct relay_dest *d, struct relay_job *job);

static const struct relay_dest_ops dest_ops = {
	relay_dest_session_free_for_work, relay_dest_session_idle, relay_dest_session_unidle,
	relay_dest_session_gone, relay_dest_requeue,
};

static struct relay_dest *
dest_get(struct pt_loop *loop, const char *nexthop, unsigned port, const struct relay_settings *s)
{
	char key[300];
	snprintf(key, sizeof key, "%s:%u", nexthop, port);
	for (struct relay_dest *d = dests; d; d = d->next)
		if (strcasecmp(d->key, key) == 0) {
			d->set = *s;
			return d;
		}
	struct relay_dest *d = calloc(1, sizeof *d);
	if (!d)
		return NULL;
	d->ops = &dest_ops;
	d->loop = loop;
	d->set = *s;
	snprintf(d->key, sizeof d->key, "%s", key);
	snprintf(d->nexthop, sizeof d->nexthop, "%s", nexthop);
	d->port = port;
	d->wait_tail = &d->wait;
	d->next = dests;
	dests = d;
	return d;
}

static void
dest_maybe_free(struct relay_dest *d)
{
	if (d->nsessions || d->wait || d->idle)
		return;
	struct relay_dest **pp = &dests;
	while (*pp && *pp != d)
		pp = &(*pp)->next;
	if (*pp)
		*pp = d->next;
	free(d);
}

static struct relay_job *
wait_pop(struct relay_dest *d)
{
	struct relay_job *j = d->wait;
	if (j) {
		d->wait = j->next;
		if (!d->wait)
			d->wait_tail = &d->wait;
		j->next = NULL;
	}
	return j;
}

static void
wait_push(struct relay_dest *d, struct relay_job *job)
{
	job->next = NULL;
	*d->wait_tail = job;
	d->wait_tail = &job->next;
}

static void
relay_dest_requeue(struct relay_dest *d, struct relay_job *job)
{
	if (!job)
		return;
	job->next = d->wait;
	d->wait = job;
	if (d->wait_tail == &d->wait)
		d->wait_tail = &job->next;
}

static void
job_cannot_start(struct relay_job *job)
{
	struct pt_status st;
	pt_status_set(&st, 451, "4.3.0", "cannot start delivery to %s: out of resources", job->dest->nexthop);
	relay_job_fail_rest(job, &st, "none");
	relay_job_finish(job);
}

/* Start sessions for waiting jobs while the limit allows. */
static void
dest_run(struct relay_dest *d)
{
	while (d->wait && d->nsessions < d->set.concurrency) {
		struct relay_job *job = wait_pop(d);
		struct relay_session *ss = relay_session_new(d->loop, d, job, &d->set);
		if (!ss) {
			job_cannot_start(job);
			continue;
		}
		d->nsessions++;
	}
}

static void
dest_submit(struct relay_dest *d, struct relay_job *job)
{
	if (d->idle) {
		struct relay_session *ss = d->idle;
		relay_session_reuse(ss, job);
		return;
	}
	wait_push(d, job);
	dest_run(d);
}

static int
relay_dest_session_free_for_work(struct relay_dest *d, struct relay_session *ss)
{
	struct relay_job *job = wait_pop(d);
	if (!job)
		return 0;
	relay_session_reuse(ss, job);
	return 1;
}

static void
relay_dest_session_idle(struct relay_dest *d, struct relay_session *ss)
{
	/* Newest first: the most recently used connection is the likeliest
	 * to still be alive. */
	relay_session_set_next_idle(ss, d->idle);
	d->idle = ss;
}

static void
relay_dest_session_unidle(struct relay_dest *d, struct relay_session *ss)
{
	struct relay_session *prev = NULL;
	for (struct relay_session *s = d->idle; s; prev = s, s = relay_session_next_idle(s)) {
		if (s != ss)
			continue;
		if (prev)
			relay_session_set_next_idle(prev, relay_session_next_idle(s));
		else
			d->idle = relay_session_next_idle(s);
		relay_session_set_next_idle(s, NULL);
		return;
	}
}

static void
relay_dest_session_gone(struct relay_dest *d, const struct pt_status *failed, const char *relay)
{
	if (d->nsessions)
		d->nsessions--;
	if (failed && failed->code && d->nsessions == 0) {
		/* The destination is unreachable: the waiting jobs need not each
		 * wait through the same timeouts. */
		struct relay_job *job;
		while ((job = wait_pop(d)) != NULL) {
			relay_job_fail_rest(job, failed, relay);
			relay_job_finish(job);
		}
	}
	dest_run(d);
	dest_maybe_free(d);
}

void
relay_close_idle(void)
{
	struct relay_dest *d = dests;
	while (d) {
		struct relay_dest *next = d->next;
		while (d->idle) {
			struct relay_session *ss = d->idle;
			relay_dest_session_unidle(d, ss);
			relay_session_close(ss);
			if (d->nsessions)
				d->nsessions--;
		}
		dest_maybe_free(d);
		d = next;
	}
}

/* ---------- deliver (the transport service) ---------- */

struct relay_batch {
	struct pt_loop *loop;
	struct relay_job *jobs;
	size_t njobs, remaining;
	struct relay_rcpt *rcpts;
	void (*done)(void *arg);
	void *arg;
};

static void
batch_done_fire(struct pt_loop *loop, void *arg)
{
	(void)loop;
	struct relay_batch *b = arg;
	void (*done)(void *) = b->done;
	void *done_arg = b->arg;
	free(b->jobs);
	free(b->rcpts);
	free(b);
	done(done_arg);
}

static void
job_done(struct relay_job *job)
{
	struct relay_batch *b = job->owner;
	if (--b->remaining == 0 && !pt_timer_add(b->loop, 0, batch_done_fire, b))
		batch_done_fire(b->loop, b);
}

static int
non_ascii(const char *s)
{
	return s && relay_is_8bit(s, strlen(s));
}

/* Next hop of a recipient: routing's "host:port" / "[host]:port", or the
 * recipient's domain when it gave none. */
static int
rcpt_nexthop(const struct pt_transport_rcpt *r, char *host, size_t hostlen, unsigned *port)
{
	const char *nh = r->nexthop;
	if (!nh || !*nh) {
		const char *at = strrchr(r->address, '@');
		nh = at ? at + 1 : "";
	}
	return transport_parse_nexthop(nh, host, hostlen, port);
}

static void
rcpt_fail_now(const struct pt_transport_msg *msg, struct pt_transport_rcpt *r, int code, const char *dsn,
              const char *text)
{
	double d[4] = { difftime(time(NULL), msg->arrival), 0, 0, 0 };
	if (d[0] < 0)
		d[0] = 0;
	pt_status_set(&r->st, code, dsn, "%s", text);
	pt_delivery_log("smtp", msg->queue_id, r->address, r->orig, "none", d, &r->st);
}

void
relay_deliver(struct pt_loop *loop, const struct pt_transport_msg *msg, struct pt_transport_rcpt *rcpt, size_t n,
              void (*done)(void *arg), void *arg)
{
	struct relay_batch *b = calloc(1, sizeof *b);
	char (*host)[256] = calloc(n ? n : 1, sizeof *host);
	unsigned *port = calloc(n ? n : 1, sizeof *port);
	if (b) {
		b->loop = loop;
		b->done = done;
		b->arg = arg;
		b->jobs = calloc(n ? n : 1, sizeof *b->jobs);
		b->rcpts = calloc(n ? n : 1, sizeof *b->rcpts);
	}
	if (!b || !host || !port || !b->jobs || !b->rcpts) {
		for (size_t k = 0; k < n; k++)
			rcpt_fail_now(msg, &rcpt[k], 451, "4.3.0", "out of memory");
		free(host);
		free(port);
		if (b) {
			b->remaining = 1;
			job_done(&(struct relay_job){ .owner = b });
		} else {
			/* Not even that: the caller's done must still come later. */
			done(arg);
		}
		return;
	}
	struct timeval now;
	gettimeofday(&now, NULL);
	double before = difftime(now.tv_sec, msg->arrival);
	int body8 = relay_is_8bit(msg->data, msg->len);
	int *bad = calloc(n ? n : 1, sizeof *bad);
	for (size_t k = 0; k < n; k++) {
		memset(&rcpt[k].st, 0, sizeof rcpt[k].st);
		if (!bad)
			rcpt_fail_now(msg, &rcpt[k], 451, "4.3.0", "out of memory");
		else if (rcpt_nexthop(&rcpt[k], host[k], sizeof host[k], &port[k]) != 0) {
			rcpt_fail_now(msg, &rcpt[k], 450, "4.3.5", "invalid next hop");
			bad[k] = 1;
		}
	}
	/* Group by next hop: recipients of one destination share a job; the
	 * rcpt array is laid out job after job. */
	size_t nr = 0;
	for (size_t k = 0; bad && k < n; k++) {
		if (bad[k])
			continue;
		int seen = 0;
		for (size_t p = 0; p < k && !seen; p++)
			seen = !bad[p] && port[p] == port[k] && strcasecmp(host[p], host[k]) == 0;
		if (seen)
			continue;
		struct relay_job *job = &b->jobs[b->njobs++];
		job->queue_id = msg->queue_id;
		job->sender = msg->sender ? msg->sender : "";
		job->data = msg->data;
		job->len = msg->len;
		job->rcpt = &b->rcpts[nr];
		job->need_8bit = body8;
		job->need_utf8 = non_ascii(job->sender);
		job->t_start = now;
		job->t_before = before < 0 ? 0 : before;
		job->done = job_done;
		job->owner = b;
		job->dest = dest_get(loop, host[k], port[k], &relay_live);
		for (size_t p = k; p < n; p++) {
			if (bad[p] || port[p] != port[k] || strcasecmp(host[p], host[k]) != 0)
				continue;
			struct relay_rcpt *r = &b->rcpts[nr++];
			r->address = rcpt[p].address;
			r->orig = rcpt[p].orig;
			r->out = &rcpt[p].st;
			if (non_ascii(rcpt[p].address))
				job->need_utf8 = 1;
			job->nrcpt++;
		}
	}
	free(bad);
	free(host);
	free(port);
	/* One extra count while starting, so a job that ends at once cannot
	 * finish the batch under the loop. */
	b->remaining = b->njobs + 1;
	for (size_t j = 0; j < b->njobs; j++) {
		struct relay_job *job = &b->jobs[j];
		if (!job->dest) {
			struct pt_status fail;
			pt_status_set(&fail, 451, "4.3.0", "out of memory");
			relay_job_fail_rest(job, &fail, "none");
			relay_job_finish(job);
			continue;
		}
		dest_submit(job->dest, job);
	}
	job_done(&(struct relay_job){ .owner = b });
}
