/* The SMTP client's bookkeeping: a message attempt's smtp-routed
 * recipients become one job per next hop; each destination runs at most
 * default_destination_concurrency_limit sessions, hands a finished
 * session the next waiting job (RSET between) or caches it for a short
 * while; outcomes are logged as Postfix's smtp(8) does. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "config_int.h"
#include "postern/log.h"
#include "relay_int.h"
#include "queue.h"
#include "runtime.h"

/* ---------- settings ---------- */

int
relay_tls_level_parse(const char *v, enum relay_tls_level *out)
{
	if (!v || !*v || strcasecmp(v, "may") == 0)
		*out = RELAY_TLS_MAY;
	else if (strcasecmp(v, "none") == 0)
		*out = RELAY_TLS_NONE;
	else if (strcasecmp(v, "encrypt") == 0)
		*out = RELAY_TLS_ENCRYPT;
	else
		return -1;
	return 0;
}

static unsigned
conf_ms(const char *name, unsigned def_s)
{
	const struct pt_config *c = pt_live_conf;
	if (!c || !pt_config_owner(c, name))
		return def_s * 1000u;
	long long v = pt_conf_int(c, name);
	if (v <= 0)
		v = def_s;
	if (v > 24 * 3600)
		v = 24 * 3600;
	return (unsigned)v * 1000u;
}

void
relay_settings_load(struct relay_settings *s)
{
	const struct pt_config *c = pt_live_conf;
	s->connect_ms = conf_ms("smtp_connect_timeout", 30);
	s->helo_ms = conf_ms("smtp_helo_timeout", 300);
	s->mail_ms = conf_ms("smtp_mail_timeout", 300);
	s->rcpt_ms = conf_ms("smtp_rcpt_timeout", 300);
	s->data_init_ms = conf_ms("smtp_data_init_timeout", 120);
	s->data_xfer_ms = conf_ms("smtp_data_xfer_timeout", 180);
	s->data_done_ms = conf_ms("smtp_data_done_timeout", 600);
	s->starttls_ms = conf_ms("smtp_starttls_timeout", 300);
	s->rset_ms = conf_ms("smtp_rset_timeout", 20);
	s->quit_ms = conf_ms("smtp_quit_timeout", 300);
	s->cache_ms = conf_ms("smtp_connection_cache_time_limit", 2);
	s->tls = RELAY_TLS_MAY;
	if (c && pt_config_owner(c, "smtp_tls_security_level") &&
	    relay_tls_level_parse(pt_conf_str(c, "smtp_tls_security_level"), &s->tls) != 0)
		s->tls = RELAY_TLS_MAY;
	const char *helo = c && pt_config_owner(c, "smtp_helo_name") ? pt_conf_str(c, "smtp_helo_name") : NULL;
	if (!helo || !*helo)
		helo = c ? pt_conf_str(c, "myhostname") : NULL;
	snprintf(s->helo_name, sizeof s->helo_name, "%s", helo && *helo ? helo : "localhost");
	s->concurrency = 20;
	if (c && pt_config_owner(c, "default_destination_concurrency_limit")) {
		long long v = pt_conf_int(c, "default_destination_concurrency_limit");
		s->concurrency = v > 0 ? (unsigned)v : 1;
	}
}

/* ---------- outcomes and logging ---------- */

void
relay_rcpt_set(struct relay_rcpt *r, int code, const char *dsn, const char *relay, const char *fmt, ...)
{
	char text[sizeof r->out->text];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	pt_status_set(r->out, code, dsn, "%s", text);
	snprintf(r->relay, sizeof r->relay, "%s", relay ? relay : "none");
	r->final = 1;
}

void
relay_job_fail_rest(struct relay_job *job, const struct pt_status *st, const char *relay)
{
	for (size_t i = 0; i < job->nrcpt; i++)
		if (!job->rcpt[i].final)
			relay_rcpt_set(&job->rcpt[i], st->code, st->dsn, relay, "%s", st->text);
}

static double
secs(const struct timeval *a, const struct timeval *b)
{
	if (!a->tv_sec || !b->tv_sec)
		return 0;
	double d = (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_usec - a->tv_usec) / 1e6;
	return d < 0 ? 0 : d;
}


void
relay_job_finish(struct relay_job *job)
{
	struct timeval now;
	gettimeofday(&now, NULL);
	/* delays=a/b/c/d: before the queue manager, waiting for a session,
	 * connection setup, transmission (as Postfix). */
	double b, c = 0, d = 0;
	if (job->t_session.tv_sec) {
		b = secs(&job->t_start, &job->t_session);
		if (job->t_xfer.tv_sec) {
			c = secs(&job->t_session, &job->t_xfer);
			d = secs(&job->t_xfer, &now);
		} else {
			c = secs(&job->t_session, &now);
		}
	} else {
		b = secs(&job->t_start, &now);
	}
	char fa[16], fb[16], fc[16], fd[16], all[16];
	pt_queue_fmt_delay(job->t_before, fa, sizeof fa);
	pt_queue_fmt_delay(b, fb, sizeof fb);
	pt_queue_fmt_delay(c, fc, sizeof fc);
	pt_queue_fmt_delay(d, fd, sizeof fd);
	pt_queue_fmt_delay(job->t_before + b + c + d, all, sizeof all);
	for (size_t i = 0; i < job->nrcpt; i++) {
		struct relay_rcpt *r = &job->rcpt[i];
		if (!r->final)
			relay_rcpt_set(r, 451, "4.3.0", "none", "delivery attempt ended without an outcome");
		const struct pt_status *st = r->out;
		const char *status = st->code == 0 ? "sent" : st->code >= 500 ? "bounced" : "deferred";
		char origpart[600] = "";
		if (r->orig && r->orig[0] && strcasecmp(r->orig, r->address) != 0)
			snprintf(origpart, sizeof origpart, ", orig_to=<%s>", r->orig);
		pt_log_as("smtp", PT_LOG_INFO, "%s: to=<%s>%s, relay=%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)",
		          job->queue_id, r->address, origpart, r->relay, all, fa, fb, fc, fd,
		          st->dsn[0] ? st->dsn : (st->code ? "4.0.0" : "2.0.0"), status, st->text);
	}
	job->done(job);
}

/* ---------- destinations ---------- */

static struct relay_dest *dests;

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

void
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

int
relay_dest_session_free_for_work(struct relay_dest *d, struct relay_session *ss)
{
	struct relay_job *job = wait_pop(d);
	if (!job)
		return 0;
	relay_session_reuse(ss, job);
	return 1;
}

void
relay_dest_session_idle(struct relay_dest *d, struct relay_session *ss)
{
	/* Newest first: the most recently used connection is the likeliest
	 * to still be alive. */
	relay_session_set_next_idle(ss, d->idle);
	d->idle = ss;
}

void
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

void
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
pt_relay_close_idle(void)
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

/* ---------- batches (the queue's side) ---------- */

struct batch_entry {
	size_t idx;
	char *address, *orig;
	char nexthop[256];
	unsigned port;
};

struct pt_relay_batch {
	struct batch_entry *e;
	size_t n, cap;
	struct relay_job *jobs;
	size_t njobs, remaining;
	struct relay_rcpt *rcpts;
	char queue_id[24];
	char *sender;
	struct pt_loop *loop;
	void (*done)(void *arg);
	void *arg;
};

int
pt_relay_batch_add(struct pt_relay_batch **bp, size_t i, const char *address, const char *orig,
                   const struct pt_route *rt)
{
	struct pt_relay_batch *b = *bp;
	if (!b) {
		b = calloc(1, sizeof *b);
		if (!b)
			return -1;
		*bp = b;
	}
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4;
		struct batch_entry *e = realloc(b->e, cap * sizeof *e);
		if (!e)
			return -1;
		b->e = e;
		b->cap = cap;
	}
	struct batch_entry *e = &b->e[b->n];
	memset(e, 0, sizeof *e);
	e->idx = i;
	e->address = strdup(address);
	e->orig = orig ? strdup(orig) : NULL;
	if (!e->address || (orig && !e->orig)) {
		free(e->address);
		free(e->orig);
		return -1;
	}
	snprintf(e->nexthop, sizeof e->nexthop, "%s", rt->nexthop);
	e->port = rt->port ? rt->port : 25;
	b->n++;
	return 0;
}

int
pt_relay_batch_has(const struct pt_relay_batch *b, size_t i)
{
	for (size_t k = 0; b && k < b->n; k++)
		if (b->e[k].idx == i)
			return 1;
	return 0;
}

static void
batch_done_fire(struct pt_loop *loop, void *arg)
{
	(void)loop;
	struct pt_relay_batch *b = arg;
	b->done(b->arg);
}

static void
job_done(struct relay_job *job)
{
	struct pt_relay_batch *b = job->owner;
	if (--b->remaining == 0 && !pt_timer_add(b->loop, 0, batch_done_fire, b))
		b->done(b->arg);
}

static int
non_ascii(const char *s)
{
	return s && relay_is_8bit(s, strlen(s));
}

void
pt_relay_batch_start(struct pt_relay_batch *b, struct pt_loop *loop, const struct pt_relay_msg *msg,
                     struct pt_status *st, void (*done)(void *arg), void *arg)
{
	struct relay_settings set;
	relay_settings_load(&set);
	b->loop = loop;
	b->done = done;
	b->arg = arg;
	snprintf(b->queue_id, sizeof b->queue_id, "%s", msg->queue_id);
	b->sender = strdup(msg->sender ? msg->sender : "");
	b->jobs = calloc(b->n ? b->n : 1, sizeof *b->jobs);
	b->rcpts = calloc(b->n ? b->n : 1, sizeof *b->rcpts);
	if (!b->sender || !b->jobs || !b->rcpts) {
		for (size_t k = 0; k < b->n; k++)
			pt_status_set(&st[b->e[k].idx], 451, "4.3.0", "out of memory");
		b->remaining = 1;
		if (!pt_timer_add(loop, 0, batch_done_fire, b))
			done(arg);
		return;
	}
	struct timeval now;
	gettimeofday(&now, NULL);
	double before = difftime(now.tv_sec, msg->arrival);
	int body8 = relay_is_8bit(msg->data, msg->len);
	/* Group by next hop: recipients of one destination share a job; the
	 * rcpt array is laid out job after job. */
	size_t nr = 0;
	for (size_t k = 0; k < b->n; k++) {
		struct batch_entry *e = &b->e[k];
		int seen = 0;
		for (size_t p = 0; p < k; p++)
			if (b->e[p].port == e->port && strcasecmp(b->e[p].nexthop, e->nexthop) == 0)
				seen = 1;
		if (seen)
			continue;
		struct relay_job *job = &b->jobs[b->njobs++];
		job->queue_id = b->queue_id;
		job->sender = b->sender;
		job->data = msg->data;
		job->len = msg->len;
		job->rcpt = &b->rcpts[nr];
		job->need_8bit = body8;
		job->need_utf8 = non_ascii(b->sender);
		job->t_start = now;
		job->t_before = before < 0 ? 0 : before;
		job->done = job_done;
		job->owner = b;
		job->dest = dest_get(loop, e->nexthop, e->port, &set);
		for (size_t p = k; p < b->n; p++) {
			struct batch_entry *o = &b->e[p];
			if (o->port != e->port || strcasecmp(o->nexthop, e->nexthop) != 0)
				continue;
			struct relay_rcpt *r = &b->rcpts[nr++];
			r->address = o->address;
			r->orig = o->orig;
			r->out = &st[o->idx];
			memset(r->out, 0, sizeof *r->out);
			if (non_ascii(o->address))
				job->need_utf8 = 1;
			job->nrcpt++;
		}
	}
	b->remaining = b->njobs;
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
}

void
pt_relay_batch_free(struct pt_relay_batch *b)
{
	if (!b)
		return;
	for (size_t k = 0; k < b->n; k++) {
		free(b->e[k].address);
		free(b->e[k].orig);
	}
	free(b->e);
	free(b->jobs);
	free(b->rcpts);
	free(b->sender);
	free(b);
}
