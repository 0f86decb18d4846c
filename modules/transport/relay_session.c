/* One outbound SMTP connection: resolve the next hop, connect (trying the
 * addresses in order), greeting, EHLO (HELO on 5xx), STARTTLS, then mail
 * transactions (MAIL, RCPT, DATA pipelined when offered) until the
 * destination has no more work for it. Every step has a deadline. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "postern/log.h"
#include "relay_int.h"

enum sstate { S_RESOLVE, S_CONNECT, S_GREETING, S_EHLO, S_HELO, S_STARTTLS, S_TLS, S_IDLE, S_RSET,
	S_MAIL, S_RCPT, S_DATA, S_BODY, S_DOT, S_QUIT };

/* Keep this much body queued on the socket, no more. */
#define BODY_LOW_WATER (64 * 1024)

struct relay_session {
	struct pt_loop *loop;
	struct relay_dest *dest;
	struct relay_settings set;
	struct relay_job *job;
	struct relay_io *io;
	struct relay_addr addr[RELAY_MAX_ADDRS];
	size_t naddr, cur;
	enum sstate state;
	struct relay_reply reply;
	struct relay_ext ext;
	struct pt_timer *timer;
	char hostip[340];             /* "host[ip]" */
	char relay[360];              /* "host[ip]:port" */
	struct pt_status last_err;
	char last_relay[360];
	/* the transaction */
	int pipelined, mail_ok;
	size_t rcpt_next, naccepted;
	struct relay_enc enc;
	struct relay_session *next_idle;
	int *alive;                   /* cleared when the session is freed */
	unsigned io_gen;              /* bumped whenever io is replaced */
};

static void session_start_transaction(struct relay_session *ss);
static void session_try_next(struct relay_session *ss);
static void session_after_job(struct relay_session *ss);

/* ---------- small helpers ---------- */

static void
timer_fire(struct pt_loop *loop, void *arg);

static void
arm(struct relay_session *ss, unsigned ms)
{
	if (ss->timer)
		pt_timer_cancel(ss->loop, ss->timer);
	ss->timer = pt_timer_add(ss->loop, ms ? ms : 1, timer_fire, ss);
}

static void
disarm(struct relay_session *ss)
{
	if (ss->timer)
		pt_timer_cancel(ss->loop, ss->timer);
	ss->timer = NULL;
}

static int
send_line(struct relay_session *ss, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
send_line(struct relay_session *ss, const char *fmt, ...)
{
	char buf[1200];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof buf - 2)
		return -1;
	buf[n++] = '\r';
	buf[n++] = '\n';
	return relay_io_write(ss->io, buf, (size_t)n);
}

/* Status from a reply: its code, its enhanced code (class made to agree
 * with the reply's) or class.0.0. */
static void
reply_status(struct relay_session *ss, struct pt_status *st, const char *fmt_in_reply_to)
{
	const struct relay_reply *r = &ss->reply;
	char dsn[16], one[400];
	if (r->dsn[0])
		snprintf(dsn, sizeof dsn, "%s", r->dsn);
	else
		snprintf(dsn, sizeof dsn, "%d.0.0", r->code / 100);
	dsn[0] = (char)('0' + r->code / 100);
	relay_reply_oneline(r, one, sizeof one);
	pt_status_set(st, r->code, dsn, "host %s said: %s (in reply to %s)", ss->hostip, one, fmt_in_reply_to);
}

void
relay_session_close(struct relay_session *ss)
{
	disarm(ss);
	relay_io_free(ss->io);
	ss->io = NULL;
	if (ss->alive)
		*ss->alive = 0;
	free(ss);
}

struct relay_session *
relay_session_next_idle(struct relay_session *ss)
{
	return ss->next_idle;
}

void
relay_session_set_next_idle(struct relay_session *ss, struct relay_session *next)
{
	ss->next_idle = next;
}

/* The session ends; err (may be NULL) when it never got to work. */
static void
session_end(struct relay_session *ss, const struct pt_status *err)
{
	struct relay_dest *d = ss->dest;
	char relay[360];
	snprintf(relay, sizeof relay, "%s", ss->last_relay[0] ? ss->last_relay : "none");
	if (ss->state == S_IDLE)
		d->ops->unidle(d, ss);
	relay_session_close(ss);
	d->ops->gone(d, err, relay);
}

/* The job's recipients without an outcome get st; the job is finished. */
static void
job_fail(struct relay_session *ss, const struct pt_status *st, const char *relay)
{
	struct relay_job *job = ss->job;
	ss->job = NULL;
	if (!job)
		return;
	relay_job_fail_rest(job, st, relay);
	relay_job_finish(job);
}

/* Trouble in a transaction: the rest of the job gets st, the connection
 * is dropped. */
static void
session_abort(struct relay_session *ss, int code, const char *dsn, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
session_abort(struct relay_session *ss, int code, const char *dsn, const char *fmt, ...)
{
	struct pt_status st;
	char text[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	pt_status_set(&st, code, dsn, "%s", text);
	job_fail(ss, &st, ss->relay);
	session_end(ss, NULL);
}

/* Before a transaction: this address failed; note why, try the next. */
static void
addr_fail(struct relay_session *ss, int code, const char *dsn, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
addr_fail(struct relay_session *ss, int code, const char *dsn, const char *fmt, ...)
{
	char text[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	pt_status_set(&ss->last_err, code, dsn, "%s", text);
	pt_log_as("smtp", PT_LOG_INFO, "%s%s%s", ss->job ? ss->job->queue_id : "", ss->job ? ": " : "", text);
	disarm(ss);
	relay_io_free(ss->io);
	ss->io = NULL;
	ss->io_gen++;
	ss->cur++;
	session_try_next(ss);
}

static const char *
phase(const struct relay_session *ss)
{
	switch (ss->state) {
	case S_CONNECT:
	case S_GREETING: return "receiving the initial server greeting";
	case S_EHLO: return "performing the EHLO handshake";
	case S_HELO: return "performing the HELO handshake";
	case S_STARTTLS:
	case S_TLS: return "performing the STARTTLS handshake";
	case S_RSET: return "sending RSET";
	case S_MAIL: return "sending MAIL FROM";
	case S_RCPT: return "sending RCPT TO";
	case S_DATA: return "sending DATA command";
	case S_BODY: return "sending message body";
	case S_DOT: return "sending end of data -- message may be sent more than once";
	default: return "talking to it";
	}
}

static int
in_transaction(const struct relay_session *ss)
{
	return ss->state >= S_MAIL && ss->state <= S_DOT;
}

/* Connection trouble (timeout, lost, garbage) in whatever state. */
static void
session_trouble(struct relay_session *ss, const char *what)
{
	if (ss->state == S_IDLE || ss->state == S_QUIT) {
		session_end(ss, NULL);
		return;
	}
	if (ss->state == S_RSET) {
		/* A cached connection went stale: the job tries a fresh one. */
		struct relay_job *job = ss->job;
		ss->job = NULL;
		struct relay_dest *d = ss->dest;
		relay_session_close(ss);
		d->ops->requeue(d, job);
		d->ops->gone(d, NULL, "none");
		return;
	}
	if (in_transaction(ss)) {
		session_abort(ss, 450, "4.4.2", "%s with %s while %s", what, ss->hostip, phase(ss));
		return;
	}
	if (ss->state == S_CONNECT) {
		addr_fail(ss, 450, "4.4.1", "connect to %s: %s", ss->relay,
		          strcmp(what, "conversation") == 0 ? "Connection timed out" : relay_io_error(ss->io));
		return;
	}
	if (strcmp(what, "conversation") == 0)
		addr_fail(ss, 450, "4.4.2", "conversation with %s timed out while %s", ss->hostip, phase(ss));
	else
		addr_fail(ss, 450, "4.4.2", "%s with %s while %s", what, ss->hostip, phase(ss));
}

static void
timer_fire(struct pt_loop *loop, void *arg)
{
	(void)loop;
	struct relay_session *ss = arg;
	ss->timer = NULL;
	if (ss->state == S_IDLE) {
		ss->dest->ops->unidle(ss->dest, ss);
		ss->state = S_QUIT;
		if (send_line(ss, "QUIT") != 0) {
			session_end(ss, NULL);
			return;
		}
		arm(ss, ss->set.quit_ms);
		return;
	}
	if (ss->state == S_QUIT) {
		session_end(ss, NULL);
		return;
	}
	if (in_transaction(ss)) {
		session_abort(ss, 450, "4.4.2", "conversation with %s timed out while %s", ss->hostip, phase(ss));
		return;
	}
	session_trouble(ss, "conversation");
}

/* ---------- connecting ---------- */

static int io_cb(struct relay_io *io, enum relay_io_event ev, void *arg);

static void
session_try_next(struct relay_session *ss)
{
	while (ss->cur < ss->naddr) {
		const struct relay_addr *a = &ss->addr[ss->cur];
		snprintf(ss->hostip, sizeof ss->hostip, "%s[%s]", a->host, a->ip);
		snprintf(ss->relay, sizeof ss->relay, "%s:%u", ss->hostip, ss->dest->port ? ss->dest->port : 25);
		ss->io = relay_io_connect(ss->loop, a, io_cb, ss);
		if (ss->io) {
			ss->state = S_CONNECT;
			relay_reply_reset(&ss->reply);
			arm(ss, ss->set.connect_ms);
			return;
		}
		char text[300];
		snprintf(text, sizeof text, "connect to %s: %s", ss->relay, strerror(errno));
		pt_status_set(&ss->last_err, 450, "4.4.1", "%s", text);
		pt_log_as("smtp", PT_LOG_INFO, "%s: %s", ss->job ? ss->job->queue_id : "-", text);
		ss->cur++;
	}
	/* Every address failed: the job gets the last reason. */
	struct pt_status err = ss->last_err;
	if (!err.code)
		pt_status_set(&err, 450, "4.4.1", "no route to %s", ss->dest->nexthop);
	ss->state = S_RESOLVE;
	job_fail(ss, &err, ss->last_relay[0] ? ss->last_relay : "none");
	session_end(ss, &err);
}

static void
resolved(void *arg, const struct relay_addr *v, size_t n, const struct pt_status *err)
{
	struct relay_session *ss = arg;
	if (n == 0) {
		job_fail(ss, err, "none");
		session_end(ss, err);
		return;
	}
	memcpy(ss->addr, v, n * sizeof *v);
	ss->naddr = n;
	ss->cur = 0;
	session_try_next(ss);
}

struct relay_session *
relay_session_new(struct pt_loop *loop, struct relay_dest *d, struct relay_job *job,
                  const struct relay_settings *s)
{
	struct relay_session *ss = calloc(1, sizeof *ss);
	if (!ss)
		return NULL;
	ss->loop = loop;
	ss->dest = d;
	ss->set = *s;
	ss->job = job;
	ss->state = S_RESOLVE;
	gettimeofday(&job->t_session, NULL);
	if (relay_resolve(loop, d->nexthop, d->port, resolved, ss) != 0) {
		free(ss);
		return NULL;
	}
	return ss;
}

/* ---------- the dialogue ---------- */

static int
name_is_ip(const char *s)
{
	unsigned char b[16];
	return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

/* Greeting, EHLO/HELO and (maybe) TLS done: work. */
static void
session_established(struct relay_session *ss)
{
	snprintf(ss->last_relay, sizeof ss->last_relay, "%s", ss->relay);
	if (ss->job)
		session_start_transaction(ss);
	else
		session_after_job(ss);
}

static void
send_ehlo(struct relay_session *ss)
{
	ss->state = S_EHLO;
	if (send_line(ss, "EHLO %s", ss->set.helo_name) != 0) {
		session_trouble(ss, "lost connection");
		return;
	}
	arm(ss, ss->set.helo_ms);
}

static void
on_ehlo(struct relay_session *ss)
{
	int c = ss->reply.code;
	int tls = relay_io_is_tls(ss->io);
	char one[400];
	relay_reply_oneline(&ss->reply, one, sizeof one);
	if (c / 100 == 5 && !tls) {
		ss->state = S_HELO;
		if (send_line(ss, "HELO %s", ss->set.helo_name) != 0) {
			session_trouble(ss, "lost connection");
			return;
		}
		arm(ss, ss->set.helo_ms);
		return;
	}
	if (c / 100 != 2) {
		addr_fail(ss, c, c / 100 == 5 ? "5.0.0" : "4.0.0", "host %s said: %s (in reply to EHLO command)",
		          ss->hostip, one);
		return;
	}
	relay_ehlo_parse(&ss->reply, &ss->ext);
	if (!tls && ss->set.tls != RELAY_TLS_NONE && ss->ext.starttls) {
		ss->state = S_STARTTLS;
		if (send_line(ss, "STARTTLS") != 0) {
			session_trouble(ss, "lost connection");
			return;
		}
		arm(ss, ss->set.starttls_ms);
		return;
	}
	if (!tls && ss->set.tls == RELAY_TLS_ENCRYPT) {
		addr_fail(ss, 450, "4.7.4", "TLS is required, but was not offered by host %s", ss->hostip);
		return;
	}
	session_established(ss);
}

static void
on_starttls(struct relay_session *ss)
{
	int c = ss->reply.code;
	char one[400];
	relay_reply_oneline(&ss->reply, one, sizeof one);
	if (c / 100 != 2) {
		if (ss->set.tls == RELAY_TLS_ENCRYPT) {
			addr_fail(ss, 450, "4.7.5", "TLS is required, but host %s refused to start TLS: %s", ss->hostip, one);
			return;
		}
		/* Opportunistic: go on in plaintext. */
		session_established(ss);
		return;
	}
	size_t left;
	relay_io_rbuf(ss->io, &left);
	if (left) {
		/* Whatever follows the 220 was sent before any TLS: a response
		 * injection. Never read it as if it came through TLS. */
		addr_fail(ss, 450, "4.7.0", "host %s sent %zu byte(s) of pipelined data after its 220 reply to "
		          "STARTTLS; TLS session refused", ss->hostip, left);
		return;
	}
	const char *sni = name_is_ip(ss->addr[ss->cur].host) ? NULL : ss->addr[ss->cur].host;
	if (relay_io_starttls(ss->io, sni) != 0) {
		if (ss->set.tls == RELAY_TLS_ENCRYPT) {
			addr_fail(ss, 450, "4.7.5", "TLS is required, but our TLS engine is unavailable");
			return;
		}
		session_trouble(ss, "lost connection");
		return;
	}
	ss->state = S_TLS;
	arm(ss, ss->set.starttls_ms);
}

/* ---------- the transaction ---------- */

static int
send_rcpt(struct relay_session *ss, size_t i)
{
	return send_line(ss, "RCPT TO:<%s>", ss->job->rcpt[i].address);
}

static void
session_start_transaction(struct relay_session *ss)
{
	struct relay_job *job = ss->job;
	gettimeofday(&job->t_xfer, NULL);
	for (size_t i = 0; i < job->nrcpt; i++)
		job->rcpt[i].accepted = 0;
	ss->mail_ok = 0;
	ss->naccepted = 0;
	ss->rcpt_next = 0;
	if (job->need_utf8 && !ss->ext.smtputf8) {
		struct pt_status st;
		pt_status_set(&st, 550, "5.6.7", "SMTPUTF8 is required, but was not offered by host %s", ss->hostip);
		job_fail(ss, &st, ss->relay);
		session_after_job(ss);
		return;
	}
	unsigned long long size = relay_encoded_size(job->data, job->len);
	if (ss->ext.size && ss->ext.size_limit && size > ss->ext.size_limit) {
		struct pt_status st;
		pt_status_set(&st, 552, "5.3.4", "message size %llu exceeds size limit %llu of server %s", size,
		              ss->ext.size_limit, ss->hostip);
		job_fail(ss, &st, ss->relay);
		session_after_job(ss);
		return;
	}
	char params[120] = "";
	size_t pl = 0;
	if (ss->ext.size)
		pl += (size_t)snprintf(params + pl, sizeof params - pl, " SIZE=%llu", size);
	if (job->need_8bit && ss->ext.eightbitmime)
		pl += (size_t)snprintf(params + pl, sizeof params - pl, " BODY=8BITMIME");
	if (job->need_utf8)
		snprintf(params + pl, sizeof params - pl, " SMTPUTF8");
	ss->pipelined = ss->ext.pipelining;
	ss->state = S_MAIL;
	int bad = send_line(ss, "MAIL FROM:<%s>%s", job->sender, params) != 0;
	if (ss->pipelined) {
		/* RFC 2920: the whole envelope and DATA in one go. */
		for (size_t i = 0; !bad && i < job->nrcpt; i++)
			bad = send_rcpt(ss, i) != 0;
		if (!bad)
			bad = send_line(ss, "DATA") != 0;
	}
	if (bad) {
		session_trouble(ss, "lost connection");
		return;
	}
	arm(ss, ss->set.mail_ms);
}

static void
pump_body(struct relay_session *ss)
{
	char buf[16384];
	while (!ss->enc.done && relay_io_pending(ss->io) < BODY_LOW_WATER) {
		size_t n = relay_encode(&ss->enc, ss->job->data, ss->job->len, buf, sizeof buf);
		if (relay_io_write(ss->io, buf, n) != 0) {
			session_trouble(ss, "lost connection");
			return;
		}
	}
	if (ss->enc.done) {
		ss->state = S_DOT;
		arm(ss, ss->set.data_done_ms);
	} else {
		arm(ss, ss->set.data_xfer_ms);
	}
}

/* Every RCPT reply is in: DATA, or the job ends without one. */
static void
after_rcpts(struct relay_session *ss)
{
	if (ss->pipelined) {
		ss->state = S_DATA;
		arm(ss, ss->set.data_init_ms);
		return;
	}
	if (ss->naccepted == 0) {
		relay_job_finish(ss->job);
		ss->job = NULL;
		session_after_job(ss);
		return;
	}
	ss->state = S_DATA;
	if (send_line(ss, "DATA") != 0) {
		session_trouble(ss, "lost connection");
		return;
	}
	arm(ss, ss->set.data_init_ms);
}

static void
on_transaction_reply(struct relay_session *ss)
{
	struct relay_job *job = ss->job;
	int c = ss->reply.code;
	struct pt_status st;
	switch (ss->state) {
	case S_MAIL:
		if (c / 100 == 2) {
			ss->mail_ok = 1;
		} else {
			reply_status(ss, &st, "MAIL FROM command");
			for (size_t i = 0; i < job->nrcpt; i++)
				if (!job->rcpt[i].final)
					relay_rcpt_set(&job->rcpt[i], st.code, st.dsn, ss->relay, "%s", st.text);
		}
		if (!ss->pipelined && !ss->mail_ok) {
			relay_job_finish(job);
			ss->job = NULL;
			session_after_job(ss);
			return;
		}
		ss->state = S_RCPT;
		if (!ss->pipelined && send_rcpt(ss, 0) != 0) {
			session_trouble(ss, "lost connection");
			return;
		}
		arm(ss, ss->set.rcpt_ms);
		return;
	case S_RCPT: {
		struct relay_rcpt *r = &job->rcpt[ss->rcpt_next];
		if (ss->mail_ok && !r->final) {
			if (c / 100 == 2) {
				r->accepted = 1;
				ss->naccepted++;
			} else {
				reply_status(ss, &st, "RCPT TO command");
				relay_rcpt_set(r, st.code, st.dsn, ss->relay, "%s", st.text);
			}
		}
		ss->rcpt_next++;
		if (ss->rcpt_next < job->nrcpt) {
			if (!ss->pipelined && send_rcpt(ss, ss->rcpt_next) != 0) {
				session_trouble(ss, "lost connection");
				return;
			}
			arm(ss, ss->set.rcpt_ms);
			return;
		}
		after_rcpts(ss);
		return;
	}
	case S_DATA:
		if (c == 354) {
			if (ss->naccepted == 0) {
				/* A server that takes DATA with no recipient: end an empty
				 * message; nothing is delivered by it. */
				ss->state = S_DOT;
				if (relay_io_write(ss->io, ".\r\n", 3) != 0) {
					session_trouble(ss, "lost connection");
					return;
				}
				arm(ss, ss->set.data_done_ms);
				return;
			}
			ss->state = S_BODY;
			relay_enc_init(&ss->enc);
			pump_body(ss);
			return;
		}
		if (ss->naccepted) {
			reply_status(ss, &st, "DATA command");
			for (size_t i = 0; i < job->nrcpt; i++)
				if (job->rcpt[i].accepted && !job->rcpt[i].final)
					relay_rcpt_set(&job->rcpt[i], st.code, st.dsn, ss->relay, "%s", st.text);
		}
		relay_job_finish(job);
		ss->job = NULL;
		session_after_job(ss);
		return;
	case S_BODY:
		/* A reply before the end of the body: the server gave up on it. */
		session_abort(ss, 450, "4.4.2", "host %s replied before the end of the message body; lost "
		              "connection while sending message body", ss->hostip);
		return;
	case S_DOT: {
		char one[400];
		relay_reply_oneline(&ss->reply, one, sizeof one);
		if (c / 100 != 2)
			reply_status(ss, &st, "end of DATA command");
		for (size_t i = 0; i < job->nrcpt; i++) {
			struct relay_rcpt *r = &job->rcpt[i];
			if (!r->accepted || r->final)
				continue;
			if (c / 100 == 2)
				relay_rcpt_set(r, 0, ss->reply.dsn[0] == '2' ? ss->reply.dsn : "2.0.0", ss->relay, "%s", one);
			else
				relay_rcpt_set(r, st.code, st.dsn, ss->relay, "%s", st.text);
		}
		relay_job_finish(job);
		ss->job = NULL;
		session_after_job(ss);
		return;
	}
	default:
		return;
	}
}

/* The job is done: the next waiting one (after RSET), or idle. */
static void
session_after_job(struct relay_session *ss)
{
	ss->job = NULL;
	if (ss->dest->ops->free_for_work(ss->dest, ss))
		return;
	ss->state = S_IDLE;
	ss->dest->ops->idle(ss->dest, ss);
	arm(ss, ss->set.cache_ms);
}

void
relay_session_reuse(struct relay_session *ss, struct relay_job *job)
{
	if (ss->state == S_IDLE)
		ss->dest->ops->unidle(ss->dest, ss);
	ss->job = job;
	gettimeofday(&job->t_session, NULL);
	ss->state = S_RSET;
	if (send_line(ss, "RSET") != 0) {
		session_trouble(ss, "lost connection");
		return;
	}
	arm(ss, ss->set.rset_ms);
}

/* One complete reply, by state. */
static void
on_reply(struct relay_session *ss)
{
	int c = ss->reply.code;
	char one[400];
	switch (ss->state) {
	case S_GREETING:
		if (c / 100 != 2) {
			relay_reply_oneline(&ss->reply, one, sizeof one);
			addr_fail(ss, c, c / 100 == 5 ? "5.0.0" : "4.0.0", "host %s refused to talk to me: %s", ss->hostip, one);
			return;
		}
		send_ehlo(ss);
		return;
	case S_EHLO:
		on_ehlo(ss);
		return;
	case S_HELO:
		relay_reply_oneline(&ss->reply, one, sizeof one);
		if (c / 100 != 2) {
			addr_fail(ss, c, c / 100 == 5 ? "5.0.0" : "4.0.0", "host %s said: %s (in reply to HELO command)",
			          ss->hostip, one);
			return;
		}
		memset(&ss->ext, 0, sizeof ss->ext);
		if (ss->set.tls == RELAY_TLS_ENCRYPT) {
			addr_fail(ss, 450, "4.7.4", "TLS is required, but was not offered by host %s", ss->hostip);
			return;
		}
		session_established(ss);
		return;
	case S_STARTTLS:
		on_starttls(ss);
		return;
	case S_RSET:
		if (c / 100 != 2) {
			session_trouble(ss, "lost connection");
			return;
		}
		session_start_transaction(ss);
		return;
	case S_QUIT:
		session_end(ss, NULL);
		return;
	case S_IDLE:
		/* Unsolicited (a 421 before closing): this connection is done. */
		session_end(ss, NULL);
		return;
	default:
		on_transaction_reply(ss);
		return;
	}
}

/* Replies in the input buffer, one after the other. 1 when ss or its io
 * is gone (a handler ended the session or moved to another address). */
static int
read_replies(struct relay_session *ss)
{
	struct relay_io *io = ss->io;
	unsigned gen = ss->io_gen;
	int alive = 1;
	ss->alive = &alive;
	for (;;) {
		size_t len, used = 0;
		const char *buf = relay_io_rbuf(io, &len);
		if (len == 0 || ss->state == S_TLS || ss->state == S_CONNECT)
			break;
		int rc = relay_reply_feed(&ss->reply, buf, len, &used);
		relay_io_consume(io, used);
		if (rc == 0)
			break;
		if (rc < 0)
			session_trouble(ss, "protocol error (malformed reply)");
		else {
			disarm(ss);
			on_reply(ss);
		}
		if (!alive)
			return 1;
		if (ss->io_gen != gen) {
			ss->alive = NULL;
			return 1;
		}
		relay_reply_reset(&ss->reply);
	}
	ss->alive = NULL;
	return 0;
}

static int
io_cb(struct relay_io *io, enum relay_io_event ev, void *arg)
{
	struct relay_session *ss = arg;
	unsigned gen = ss->io_gen;
	int alive = 1;
	switch (ev) {
	case RELAY_IO_CONNECTED:
		ss->state = S_GREETING;
		arm(ss, ss->set.helo_ms);
		return 0;
	case RELAY_IO_INPUT:
		return read_replies(ss);
	case RELAY_IO_DRAINED:
		if (ss->state != S_BODY)
			return 0;
		ss->alive = &alive;
		pump_body(ss);
		if (!alive)
			return 1;
		ss->alive = NULL;
		return ss->io_gen != gen;
	case RELAY_IO_TLS_DONE:
		pt_log_as("smtp", PT_LOG_INFO, "Untrusted TLS connection established to %s: %s with cipher %s",
		          ss->relay, relay_io_tls_version(io), relay_io_tls_cipher(io));
		ss->alive = &alive;
		send_ehlo(ss);
		if (!alive)
			return 1;
		ss->alive = NULL;
		return ss->io_gen != gen;
	case RELAY_IO_EOF:
		session_trouble(ss, "lost connection");
		return 1;
	case RELAY_IO_ERROR:
		if (ss->state == S_TLS) {
			addr_fail(ss, 450, "4.7.5", "Cannot start TLS with %s: %s", ss->hostip, relay_io_error(io));
			return 1;
		}
		session_trouble(ss, "lost connection");
		return 1;
	}
	return 0;
}
