/* The SMTP server session: the RFC 5321 command state machine with
 * PIPELINING, DATA and BDAT intake, STARTTLS, limits, restriction checks
 * through the restrict service, and hand-off to the queue. One small
 * struct per connection; message buffers exist only during a transaction. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "postern/address.h"
#include "postern/addrlist.h"
#include "postern/conn.h"
#include "postern/event.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/map.h"
#include "postern/services.h"
#include "smtp.h"
#include "smtp_client_name.h"
#include "smtp_data.h"
#include "smtp_parse.h"
#include "smtp_headers.h"
#include "smtp_received.h"
#include "smtp_session.h"

size_t
smtp_session_idle_size(void)
{
	return sizeof(struct smtp_session);
}

static void session_input(struct smtp_session *s);
static void keep_names(struct smtp_session *s, const char *name, const char *reverse);

/* ---- replies, errors, logging ---- */

static void
reply_raw(struct smtp_session *s, const char *text)
{
	if (s->gone)
		return;
	pt_conn_printf(s->conn, "%s\r\n", text);
}

static void count_error(struct smtp_session *s, const char *text);
static void check_error_limit(struct smtp_session *s);

/* Every reply goes through here: 4xx/5xx count as errors, and past
 * smtpd_soft_error_limit an error reply waits smtpd_error_sleep_time on a
 * timer (the loop keeps serving everyone else). */

static void
sleep_done(struct pt_loop *loop, void *arg)
{
	struct smtp_session *s = arg;

	(void)loop;
	s->sleep_timer = NULL;
	s->async = 0;
	if (s->delayed) {
		reply_raw(s, s->delayed);
		free(s->delayed);
		s->delayed = NULL;
	}
	smtp_session_continue(s);
}

static void
vreply(struct smtp_session *s, const char *fmt, va_list ap)
{
	char buf[1024];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (buf[0] == '4' || buf[0] == '5') {
		count_error(s, buf);
		if (s->state != SS_CLOSING && s->errors > s->set->soft_errors &&
		    s->set->error_sleep_ms > 0 && !s->gone && !s->async) {
			s->delayed = strdup(buf);
			if (s->delayed) {
				s->async = 1;
				pt_conn_pause(s->conn);
				s->sleep_timer = pt_timer_add(s->loop, s->set->error_sleep_ms, sleep_done, s);
				return;
			}
		}
	}
	reply_raw(s, buf);
}

void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
}

static void
count_error(struct smtp_session *s, const char *text)
{
	/* 421 is our own goodbye, not the client's error. */
	if (strncmp(text, "421", 3) != 0)
		s->errors++;
}

/* ---- deadlines: smtpd_per_request_deadline, smtpd_min_data_rate,
 * smtpd_envelope_deadline ---- */

/* The next request's clock starts now (with per-request deadlines only
 * a complete line restarts it; partial input never does). */
void
smtp_request_begin(struct smtp_session *s)
{
	s->last_input = pt_loop_now(s->loop);
}

static void
data_begin(struct smtp_session *s)
{
	s->data_deadline = pt_loop_now(s->loop) + s->set->timeout_ms;
	s->rate_rem = 0;
}

/* Postfix 3.7's DATA/BDAT deadline: n message bytes buy
 * n/smtpd_min_data_rate seconds, never more than smtpd_timeout from now. */
void
smtp_data_credit(struct smtp_session *s, size_t n)
{
	uint64_t cap = pt_loop_now(s->loop) + s->set->timeout_ms, units;
	unsigned rate = s->set->min_data_rate;

	if (n == 0)
		return;
	if (!s->set->per_request_deadline || rate == 0) {
		s->data_deadline = cap;
		return;
	}
	units = (uint64_t)n * 1000u + s->rate_rem;
	s->data_deadline += units / rate;
	s->rate_rem = (unsigned)(units % rate);
	if (s->data_deadline > cap)
		s->data_deadline = cap;
}

/* Before DATA/BDAT of a transaction: the envelope deadline runs. */
static int
in_envelope(const struct smtp_session *s)
{
	return (s->state == SS_CMD || s->state == SS_AUTH) &&
	       !(s->txn && (s->txn->data_started || s->txn->bdat_started));
}

/* When the session times out unless something happens first. */
static uint64_t
session_due(const struct smtp_session *s)
{
	uint64_t due = s->last_input + s->set->timeout_ms;

	if (s->state == SS_DATA || s->state == SS_BDAT)
		due = s->data_deadline;
	if (s->set->envelope_deadline_ms && in_envelope(s) &&
	    s->envelope_start + s->set->envelope_deadline_ms < due)
		due = s->envelope_start + s->set->envelope_deadline_ms;
	return due;
}

/* Postfix names the last command in upper case in its log lines. */
static const char *
verb_upper(const struct smtp_session *s, char *buf, size_t len)
{
	const char *n = s->state == SS_DATA ? "data" : s->state == SS_BDAT ? "bdat" :
	                s->total[s->last_verb] ? smtp_verb_name(s->last_verb) : "connect";
	size_t i;

	for (i = 0; n[i] && i + 1 < len; i++)
		buf[i] = (char)(n[i] >= 'a' && n[i] <= 'z' ? n[i] - 'a' + 'A' : n[i]);
	buf[i] = 0;
	return buf;
}

const char *
smtp_proto_name(const struct smtp_session *s)
{
	return s->esmtp ? "ESMTP" : "SMTP";
}

/* Postfix's "NOQUEUE: reject: RCPT from NAME[IP]: reply; from=<> to=<> ..." */
void
smtp_log_reject(struct smtp_session *s, const char *stage, const char *text, const char *to, const char *rule)
{
	const char *id = s->txn && s->txn->id[0] ? s->txn->id : "NOQUEUE";
	char tobuf[SMTP_PATH_MAX + 8] = "";

	if (to)
		snprintf(tobuf, sizeof(tobuf), " to=<%s>", to);
	if (s->txn)
		pt_log_as(s->service, PT_LOG_INFO, "%s: reject: %s from %s[%s]: %s; from=<%s>%s proto=%s helo=<%s> rule=%s",
		          id, stage, s->client_name, s->client_addr, text, s->txn->sender.addr, tobuf,
		          smtp_proto_name(s), s->helo ? s->helo : "", rule);
	else
		pt_log_as(s->service, PT_LOG_INFO, "%s: reject: %s from %s[%s]: %s;%s proto=%s helo=<%s> rule=%s",
		          id, stage, s->client_name, s->client_addr, text, tobuf,
		          smtp_proto_name(s), s->helo ? s->helo : "", rule);
	smtp_rec_refusal(s, stage, text, rule, to, NULL);
}

/* Disconnect counters in Postfix's order and shape: name=ok[/total]. */
static void
log_disconnect(struct smtp_session *s)
{
	static const enum smtp_verb order[] = {
		SMTP_VERB_HELO, SMTP_VERB_EHLO, SMTP_VERB_STARTTLS, SMTP_VERB_AUTH, SMTP_VERB_MAIL,
		SMTP_VERB_RCPT, SMTP_VERB_DATA, SMTP_VERB_BDAT, SMTP_VERB_RSET, SMTP_VERB_NOOP,
		SMTP_VERB_VRFY, SMTP_VERB_ETRN, SMTP_VERB_EXPN, SMTP_VERB_HELP, SMTP_VERB_XCLIENT,
		SMTP_VERB_QUIT, SMTP_VERB_UNKNOWN,
	};
	char buf[512];
	size_t n = 0;
	unsigned ok = 0, total = 0;

	buf[0] = 0;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		enum smtp_verb v = order[i];
		if (s->total[v] == 0)
			continue;
		ok += s->ok[v];
		total += s->total[v];
		if (s->ok[v] == s->total[v])
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s=%u", smtp_verb_name(v), s->ok[v]);
		else
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s=%u/%u", smtp_verb_name(v),
			                      s->ok[v], s->total[v]);
		if (n >= sizeof(buf))
			n = sizeof(buf) - 1;
	}
	if (ok == total)
		pt_log_as(s->service, PT_LOG_INFO, "disconnect from %s[%s]%s commands=%u",
		          s->client_name, s->client_addr, buf, ok);
	else
		pt_log_as(s->service, PT_LOG_INFO, "disconnect from %s[%s]%s commands=%u/%u",
		          s->client_name, s->client_addr, buf, ok, total);
}

/* ---- transactions ---- */

static void
txn_free(struct smtp_txn *t)
{
	if (t == NULL)
		return;
	smtp_rec_txn_end(t);
	for (size_t i = 0; i < t->nrcpt; i++)
		free(t->rcpt[i]);
	free(t->rcpt);
	free(t->prepend);
	smtp_msgbuf_free(&t->msg);
	free(t);
}

void
smtp_txn_reset(struct smtp_session *s)
{
	txn_free(s->txn);
	s->txn = NULL;
}

static void
session_reset_helo(struct smtp_session *s)
{
	smtp_txn_reset(s);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = 0;
}

static void
session_free(struct smtp_session *s)
{
	pt_defer_cancel(s->loop, &s->reap);
	if (s->idle_timer)
		pt_timer_cancel(s->loop, s->idle_timer);
	if (s->sleep_timer)
		pt_timer_cancel(s->loop, s->sleep_timer);
	if (s->lookup_timer)
		pt_timer_cancel(s->loop, s->lookup_timer);
	smtp_txn_reset(s);
	free(s->helo);
	free(s->helo_pending);
	free(s->sasl_username);
	smtp_auth_abort(s);
	smtp_client_name_cancel(s->lookup);
	free(s->names);
	free(s->reject_all);
	free(s->delayed);
	smtp_settings_put(s->set);
	free(s);
}

void
smtp_session_release(struct smtp_session *s)
{
	log_disconnect(s);
	s->gone = 1;
	s->conn = NULL;
	session_free(s);
}

void
smtp_session_restart(struct smtp_session *s, const char *name)
{
	session_reset_helo(s);
	if (name) {
		free(s->names);
		s->names = NULL;
		s->client_name = s->reverse_name = "unknown";
		keep_names(s, name, name);
	}
}

static void
reap(struct pt_loop *loop, void *arg)
{
	(void)loop;
	session_free(arg);
}

int
smtp_session_answered(struct smtp_session *s)
{
	s->async = 0;
	if (!s->gone)
		return 1;
	session_free(s);
	return 0;
}

void
smtp_close_with(struct smtp_session *s, const char *text)
{
	reply_raw(s, text);
	s->state = SS_CLOSING;
	if (!s->gone)
		pt_conn_close_after_write(s->conn);
}

/* ---- commands ---- */

static void
sanitize(char *p)
{
	for (; *p; p++)
		if ((unsigned char)*p < 0x21 || (unsigned char)*p == 0x7f)
			*p = '?';
}

/* Postfix's printable(): anything but printable ASCII becomes '?'. */
void
smtp_printable(char *p)
{
	for (; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
}

static int
starttls_offered(struct smtp_session *s)
{
	return s->set->tls_level != SMTP_TLS_NONE && !s->local && !pt_conn_is_tls(s->conn) &&
	       pt_conn_tls_available(s->conn);
}

static void
ehlo_reply(struct smtp_session *s)
{
	char size[48], auth[64];
	int starttls = starttls_offered(s);

	if (s->set->size_limit)
		snprintf(size, sizeof(size), "250-SIZE %zu", s->set->size_limit);
	else
		snprintf(size, sizeof(size), "250-SIZE");
	/* Postfix's order: ... STARTTLS, AUTH, ENHANCEDSTATUSCODES ... */
	pt_conn_printf(s->conn, "250-%s\r\n250-PIPELINING\r\n%s\r\n%s%s250-ENHANCEDSTATUSCODES\r\n"
	               "250-8BITMIME\r\n%s%s250 CHUNKING\r\n", s->set->hostname, size,
	               starttls ? "250-STARTTLS\r\n" : "", smtp_auth_ehlo_line(s, auth, sizeof(auth)),
	               s->set->smtputf8 ? "250-SMTPUTF8\r\n" : "", smtp_xclient_ehlo_line(s));
}

static void
helo_verdict(struct smtp_session *s, const struct pt_verdict *v)
{
	enum smtp_verb verb = s->cmd_verb_pending ? SMTP_VERB_EHLO : SMTP_VERB_HELO;

	if (smtp_verdict_refuses(s, v, verb == SMTP_VERB_EHLO ? "EHLO" : "HELO", NULL)) {
		free(s->helo_pending);
		s->helo_pending = NULL;
		return;
	}
	s->ok[verb]++;
	smtp_txn_reset(s);
	free(s->helo);
	s->helo = s->helo_pending;
	s->helo_pending = NULL;
	s->esmtp = verb == SMTP_VERB_EHLO;
	if (s->esmtp)
		ehlo_reply(s);
	else
		smtp_reply(s, "250 %s", s->set->hostname);
}

static void
cmd_helo(struct smtp_session *s, const struct smtp_cmd *c)
{
	const char *w;
	size_t n = smtp_parse_helo(c->arg, c->arglen, &w);

	if (n == 0) {
		smtp_reply(s, "501 Syntax: %s hostname", c->verb == SMTP_VERB_EHLO ? "EHLO" : "HELO");
		return;
	}
	if (n > 255)
		n = 255;
	free(s->helo_pending);
	s->helo_pending = strndup(w, n);
	if (s->helo_pending == NULL) {
		smtp_reply(s, "451 4.3.0 Error: insufficient system resources");
		return;
	}
	sanitize(s->helo_pending);
	s->cmd_verb_pending = c->verb == SMTP_VERB_EHLO;
	smtp_policy(s, PT_STAGE_HELO, NULL, helo_verdict);
}

static int
need_helo(struct smtp_session *s)
{
	if (s->set->helo_required && s->helo == NULL) {
		smtp_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return 1;
	}
	return 0;
}

/* MAIL refused before a transaction began: the decision record gets the
 * sender it asked for. */
static void
mail_refused(struct smtp_session *s, const struct smtp_cmd *c, const char *reply, const char *rule)
{
	struct smtp_path p;
	const char *rest;
	size_t restlen;
	int have = c->arglen >= 5 && strncasecmp(c->arg, "FROM:", 5) == 0 &&
	           smtp_parse_path(c->arg + 5, c->arglen - 5, 1, &p, &rest, &restlen) == 0;
	smtp_rec_refusal(s, "MAIL", reply, rule, NULL, have ? p.addr : NULL);
}

static int
need_tls(struct smtp_session *s)
{
	/* submission and smtps: encrypt by their built-in values, as Debian's
	 * master.cf (-o smtpd_tls_security_level=encrypt). */
	if (s->set->tls_level == SMTP_TLS_ENCRYPT && !s->local && !pt_conn_is_tls(s->conn)) {
		smtp_reply(s, "530 5.7.0 Must issue a STARTTLS command first");
		return 1;
	}
	return 0;
}

static void
mail_verdict(struct smtp_session *s, const struct pt_verdict *v)
{
	if (smtp_verdict_refuses(s, v, "MAIL", NULL)) {
		smtp_txn_reset(s);
		return;
	}
	s->ok[SMTP_VERB_MAIL]++;
	smtp_reply(s, "250 2.1.0 Ok");
}

static void
cmd_mail(struct smtp_session *s, const struct smtp_cmd *c)
{
	struct smtp_txn *t;
	const char *rest;
	size_t restlen;

	if (need_helo(s)) {
		mail_refused(s, c, "503 5.5.1 Error: send HELO/EHLO first", "smtpd_helo_required");
		return;
	}
	if (need_tls(s)) {
		mail_refused(s, c, "530 5.7.0 Must issue a STARTTLS command first", "smtpd_tls_security_level");
		return;
	}
	if (s->set->auth_required && !s->local && s->sasl_username == NULL) {
		/* RFC 4954 section 6 (smtpd_sasl_auth_required: submission and
		 * smtps by default): for authenticated users only. */
		smtp_reply(s, "530 5.7.0 Authentication required");
		mail_refused(s, c, "530 5.7.0 Authentication required", "smtpd_sasl_auth_required");
		return;
	}
	if (s->txn) {
		smtp_reply(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (c->arglen < 5 || strncasecmp(c->arg, "FROM:", 5) != 0) {
		smtp_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		smtp_reply(s, "451 4.3.0 Error: insufficient system resources");
		return;
	}
	if (smtp_parse_path(c->arg + 5, c->arglen - 5, 1, &t->sender, &rest, &restlen) != 0) {
		free(t);
		smtp_reply(s, "501 5.1.7 Bad sender address syntax");
		return;
	}
	switch (smtp_parse_mail_params(rest, restlen, &t->params)) {
	case SMTP_PARAM_OK:
		break;
	case SMTP_PARAM_BAD_SIZE:
		free(t);
		smtp_reply(s, "501 5.5.4 Bad message size syntax");
		return;
	default:
		smtp_reply(s, "555 5.5.4 Unsupported option: %s", t->params.bad);
		free(t);
		return;
	}
	if (t->params.smtputf8 && !s->set->smtputf8) {
		free(t);
		smtp_reply(s, "555 5.5.4 Unsupported option: SMTPUTF8");
		return;
	}
	if (t->sender.utf8 && !t->params.smtputf8) {
		free(t);
		smtp_reply(s, "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
		return;
	}
	s->txn = t;
	smtp_rec_begin(s);
	if (s->set->size_limit && t->params.has_size && t->params.size > s->set->size_limit) {
		smtp_log_reject(s, "MAIL", "552 5.3.4 Message size exceeds fixed limit", NULL, "message_size_limit");
		smtp_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		smtp_txn_reset(s);
		return;
	}
	smtp_policy(s, PT_STAGE_MAIL, NULL, mail_verdict);
}

/* A lookup answered "pending" (a directory server's answer is on its
 * way, postern/map.h): RCPT asks again shortly (pt_map_retry_ms), with
 * the connection paused, and gives 451 after the bound. */
#define RCPT_LOOKUP_BOUND_MS 30000

/* The answer of local_recipient_check/relay_recipient_check when a
 * lookup could not be made: 1 while answers are still on their way
 * (pending since p0, within the bound), else 451 sent and -1. */
static int
recipient_tempfail(struct smtp_session *s, const struct smtp_path *p, unsigned long p0, const char *param)
{
	char text[SMTP_PATH_MAX + 64];

	if (pt_map_pending_count() != p0 && pt_loop_now(s->loop) - s->lookup_since < RCPT_LOOKUP_BOUND_MS)
		return 1;
	snprintf(text, sizeof(text), "451 4.3.0 <%s>: Temporary lookup failure", p->addr);
	smtp_log_reject(s, "RCPT", text, p->addr, param);
	smtp_reply(s, "%s", text);
	return -1;
}

/* Opened by the module's init in the worker (module.c). */
struct pt_map_list *smtp_relay_recipient_maps;

/* relay_recipient_maps (Postfix's): a recipient in relay_domains must be
 * listed as user+ext@domain, user@domain or @domain (any value), else
 * 550; a table that cannot answer (a directory down) gives 451, never an
 * accept. Same return values as local_recipient_check. */
static int
relay_recipient_check(struct smtp_session *s, const struct smtp_path *p, unsigned long p0)
{
	char local[SMTP_PATH_MAX + 1], key[2 * SMTP_PATH_MAX + 2];
	const char *dom = smtp_path_domain(p);
	int tempfail;

	if (smtp_relay_recipient_maps == NULL || !p->has_domain || !pt_domain_is_relay(dom))
		return 0;
	if (smtp_path_local(p, local, sizeof(local), 1) < 0)
		goto unknown;
	/* Every key is asked before a pending answer is waited for, as in
	 * local_recipient_check: their queries then run together. */
	for (int step = 0; step < 3; step++) {
		if (step == 1) {
			size_t cut = pt_local_base_len(local, s->set->recipient_delimiter);
			if (cut == 0)
				continue;
			local[cut] = 0;
		}
		int n = step < 2 ? snprintf(key, sizeof(key), "%s@%s", local, dom)
		                 : snprintf(key, sizeof(key), "@%s", dom);
		if (n < 0 || (size_t)n >= sizeof(key))
			goto unknown;
		/* the domain as the maps store it: lower case */
		for (char *c = strrchr(key, '@'); *c; c++)
			*c = (char)tolower((unsigned char)*c);
		char *v = pt_map_list_lookup(smtp_relay_recipient_maps, key, &tempfail, NULL);
		if (v != NULL) {
			free(v);
			return 0;
		}
		if (tempfail && pt_map_pending_count() == p0)
			return recipient_tempfail(s, p, p0, "relay_recipient_maps");
	}
	if (pt_map_pending_count() != p0)
		return recipient_tempfail(s, p, p0, "relay_recipient_maps");
unknown:
	{
		char text[SMTP_PATH_MAX + 96];
		snprintf(text, sizeof(text),
		         "550 5.1.1 <%s>: Recipient address rejected: User unknown in relay recipient table",
		         p->addr);
		smtp_log_reject(s, "RCPT", text, p->addr, "relay_recipient_maps");
		smtp_reply(s, "%s", text);
	}
	return -1;
}

/* Is this local recipient someone? 0 yes; 1 not known yet (lookups
 * pending since p0, no reply sent); otherwise -1 and a reply was sent.
 * A recipient in relay_domains goes to relay_recipient_check. */
static int
local_recipient_check(struct smtp_session *s, const struct smtp_path *p, unsigned long p0)
{
	char local[SMTP_PATH_MAX + 1];
	struct pt_user u;
	const struct pt_alias_ops *alias = pt_service_get(PT_SVC_ALIAS);
	int r;

	if (p->has_domain && !pt_domain_is_local(smtp_path_domain(p)))
		return relay_recipient_check(s, p, p0);
	if (smtp_path_local(p, local, sizeof(local), 1) < 0)
		goto unknown;
	/* RFC 5321 4.5.1: postmaster must always be accepted. */
	if (strcmp(local, "postmaster") == 0)
		return 0;
	/* A lookup that is only pending does not stop the others: they all
	 * start now, and the next try finds their answers together. */
	for (int pass = 0; pass < 2; pass++) {
		r = pt_user_lookup(local, &u);
		if (r < 0 && pt_map_pending_count() == p0)
			goto tempfail;
		if (r > 0)
			return 0;
		if (alias && alias->exists) {
			r = alias->exists(local);
			if (r < 0 && pt_map_pending_count() == p0)
				goto tempfail;
			if (r > 0)
				return 0;
		}
		/* alice+tag: try again without the extension. */
		size_t cut = pt_local_base_len(local, s->set->recipient_delimiter);
		if (cut == 0)
			break;
		local[cut] = 0;
	}
	if (pt_map_pending_count() != p0)
		goto tempfail;        /* not unknown before every answer is in */
unknown:
	{
		char text[SMTP_PATH_MAX + 96];
		snprintf(text, sizeof(text),
		         "550 5.1.1 <%s>: Recipient address rejected: User unknown in local recipient table",
		         p->addr);
		smtp_log_reject(s, "RCPT", text, p->addr, "local_recipient_maps");
		smtp_reply(s, "%s", text);
	}
	return -1;
tempfail:
	return recipient_tempfail(s, p, p0, "local_recipient_maps");
}

static void
rcpt_accept(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;
	char *a;

	if (t->nrcpt == t->rcap) {
		size_t cap = t->rcap ? t->rcap * 2 : 4;
		char **v = realloc(t->rcpt, cap * sizeof(*v));
		if (v == NULL) {
			smtp_reply(s, "451 4.3.0 Error: insufficient system resources");
			return;
		}
		t->rcpt = v;
		t->rcap = cap;
	}
	a = strdup(t->pending.addr);
	if (a == NULL) {
		smtp_reply(s, "451 4.3.0 Error: insufficient system resources");
		return;
	}
	t->rcpt[t->nrcpt++] = a;
	smtp_rec_rcpt_ok(s, a, "250 2.1.5 Ok");
	if (t->id[0] == 0) {
		pt_queue_new_id(t->id);
		if (s->sasl_username)
			pt_log_as(s->service, PT_LOG_INFO, "%s: client=%s[%s], sasl_method=%s, sasl_username=%s",
			          t->id, s->client_name, s->client_addr, s->sasl_method, s->sasl_username);
		else
			pt_log_as(s->service, PT_LOG_INFO, "%s: client=%s[%s]", t->id, s->client_name,
			          s->client_addr);
	}
	s->ok[SMTP_VERB_RCPT]++;
	smtp_reply(s, "250 2.1.5 Ok");
}

static void rcpt_local(struct smtp_session *s);

static void
rcpt_lookup_again(struct pt_loop *loop, void *arg)
{
	struct smtp_session *s = arg;

	(void)loop;
	s->lookup_timer = NULL;
	if (!smtp_session_answered(s))
		return;
	rcpt_local(s);
	smtp_session_continue(s);
}

/* The local recipient check, and the accept; run again from a timer
 * while the userdb or alias answer is pending (the loop never waits). */
static void
rcpt_local(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;
	unsigned long p0 = pt_map_pending_count();
	int r;

	if (t == NULL)
		return;
	r = local_recipient_check(s, &t->pending, p0);
	if (r == 1) {
		s->lookup_timer = pt_timer_add(s->loop, pt_map_retry_ms(pt_loop_now(s->loop) - s->lookup_since),
		                               rcpt_lookup_again, s);
		if (s->lookup_timer != NULL) {
			s->async = 1;
			pt_conn_pause(s->conn);
			return;
		}
		smtp_reply(s, "451 4.3.0 <%s>: Temporary lookup failure", t->pending.addr);
		return;
	}
	if (r == 0)
		rcpt_accept(s);
}

static void
rcpt_verdict(struct smtp_session *s, const struct pt_verdict *v)
{
	struct smtp_txn *t = s->txn;

	if (t == NULL)
		return;
	if (s->local) {
		/* The local user may send anywhere, to anyone: what cannot be
		 * delivered bounces, as with `sendmail ADDRESS`. */
		rcpt_accept(s);
		return;
	}
	if (v == NULL) {
		/* No restrict module: never an open relay. */
		const char *dom = smtp_path_domain(&t->pending);
		if (t->pending.has_domain && !pt_domain_is_local(dom) && !pt_domain_is_relay(dom) &&
		    s->sasl_username == NULL) {
			char text[SMTP_PATH_MAX + 64];
			snprintf(text, sizeof(text), "554 5.7.1 <%s>: Relay access denied", t->pending.addr);
			smtp_log_reject(s, "RCPT", text, t->pending.addr, "reject_unauth_destination");
			smtp_reply(s, "%s", text);
			return;
		}
	} else if (smtp_verdict_refuses(s, v, "RCPT", t->pending.addr)) {
		return;
	}
	s->lookup_since = pt_loop_now(s->loop);
	rcpt_local(s);
}

static void
cmd_rcpt(struct smtp_session *s, const struct smtp_cmd *c)
{
	struct smtp_txn *t = s->txn;
	const char *rest;
	size_t restlen;
	char bad[64];

	if (need_helo(s))
		return;
	if (t == NULL) {
		smtp_reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (t->bdat_started) {
		smtp_reply(s, "503 5.5.1 Error: RCPT after BDAT");
		return;
	}
	if (c->arglen < 3 || strncasecmp(c->arg, "TO:", 3) != 0) {
		smtp_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (smtp_parse_path(c->arg + 3, c->arglen - 3, 0, &t->pending, &rest, &restlen) != 0) {
		smtp_reply(s, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	if (smtp_parse_rcpt_params(rest, restlen, bad, sizeof(bad)) != SMTP_PARAM_OK) {
		smtp_reply(s, "555 5.5.4 Unsupported option: %s", bad);
		return;
	}
	if (t->pending.utf8 && !t->params.smtputf8) {
		smtp_reply(s, "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
		return;
	}
	if (t->nrcpt >= s->set->rcpt_limit) {
		smtp_reply(s, "452 4.5.3 Error: too many recipients");
		smtp_rec_refusal(s, "RCPT", "452 4.5.3 Error: too many recipients", "smtpd_recipient_limit",
		                 t->pending.addr, NULL);
		return;
	}
	smtp_policy(s, PT_STAGE_RCPT, t->pending.addr, rcpt_verdict);
}

/* Start storing a message: the Received header first. */
static int
message_start(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;
	struct smtp_received_info r;
	char hdr[2048];
	int n, tls = pt_conn_is_tls(s->conn);

	memset(&r, 0, sizeof(r));
	r.helo = s->helo;
	r.client_name = s->client_name;
	r.client_addr = s->client_addr;
	r.myhostname = s->set->hostname;
	r.protocol = smtp_protocol_name(s->esmtp, tls, s->sasl_username != NULL, t->params.smtputf8);
	r.queue_id = t->id;
	r.rcpt = t->nrcpt == 1 ? t->rcpt[0] : NULL;
	r.auth_sender = s->set->auth_header ? s->sasl_username : NULL;
	if (tls) {
		r.tls_version = pt_conn_tls_version(s->conn);
		r.tls_cipher = pt_conn_tls_cipher(s->conn);
		r.tls_bits = pt_conn_tls_bits(s->conn);
	}
	r.when = time(NULL);
	smtp_msgbuf_init(&t->msg, s->set->size_limit, s->set->header_limit);
	n = smtp_received_format(&r, hdr, sizeof(hdr));
	if (n < 0 || smtp_msgbuf_put_trace(&t->msg, hdr, (size_t)n) != 0)
		return -1;
	if (t->prepend && smtp_msgbuf_put_trace(&t->msg, t->prepend, strlen(t->prepend)) != 0)
		return -1;
	return 0;
}

static void
data_verdict(struct smtp_session *s, const struct pt_verdict *v)
{
	struct smtp_txn *t = s->txn;

	if (t == NULL || smtp_verdict_refuses(s, v, "DATA", NULL))
		return;
	if (message_start(s) != 0) {
		smtp_msgbuf_free(&t->msg);
		smtp_reply(s, "451 4.3.0 Error: insufficient system resources");
		return;
	}
	smtp_data_init(&t->dec, s->local ? SMTP_BARE_LOCAL : s->set->bare_reject ? SMTP_BARE_REJECT :
	               SMTP_BARE_NORMALIZE);
	t->data_started = 1;
	s->state = SS_DATA;
	data_begin(s);
	smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static int
need_rcpt(struct smtp_session *s)
{
	if (s->txn == NULL || s->txn->nrcpt == 0) {
		if (s->txn == NULL)
			smtp_reply(s, "503 5.5.1 Error: need RCPT command");
		else
			smtp_reply(s, "554 5.5.1 Error: no valid recipients");
		return 1;
	}
	return 0;
}

static void
cmd_data(struct smtp_session *s, const struct smtp_cmd *c)
{
	if (need_helo(s))
		return;
	if (c->arglen) {
		smtp_reply(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (need_rcpt(s))
		return;
	if (s->txn->bdat_started) {
		smtp_reply(s, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	smtp_policy(s, PT_STAGE_DATA, NULL, data_verdict);
}

/* ---- BDAT (RFC 3030) ---- */

static void
cmd_bdat(struct smtp_session *s, const struct smtp_cmd *c)
{
	unsigned long long count;
	int last;

	if (smtp_parse_bdat(c->arg, c->arglen, &count, &last) != 0) {
		/* Without a size the chunk cannot be skipped: the stream is lost. */
		smtp_close_with(s, "501 5.5.4 Syntax: BDAT count [LAST]");
		return;
	}
	s->bdat_left = s->bdat_size = count;
	s->bdat_last = (unsigned char)last;
	s->bdat_error = NULL;
	s->state = SS_BDAT;
	data_begin(s);
	if (s->set->helo_required && s->helo == NULL)
		s->bdat_error = "503 5.5.1 Error: send HELO/EHLO first";
	else if (s->txn == NULL)
		s->bdat_error = "503 5.5.1 Error: need RCPT command";
	else if (s->txn->nrcpt == 0)
		s->bdat_error = "554 5.5.1 Error: no valid recipients";
	if (s->bdat_error) {
		if (s->txn)
			smtp_txn_reset(s);
		return;
	}
	if (!s->txn->bdat_started) {
		if (message_start(s) != 0) {
			s->bdat_error = "451 4.3.0 Error: insufficient system resources";
			smtp_txn_reset(s);
			return;
		}
		s->txn->bdat_started = 1;
	}
}

static void
bdat_input(struct smtp_session *s)
{
	size_t n, take;
	const char *in = pt_conn_rbuf(s->conn, &n);

	take = s->bdat_left < n ? (size_t)s->bdat_left : n;
	if (take > 0) {
		if (s->bdat_error == NULL && s->txn)
			smtp_bdat_feed(&s->txn->bconv, in, take, &s->txn->msg);
		pt_conn_consume(s->conn, take);
		s->bdat_left -= take;
		smtp_data_credit(s, take);
	}
	if (s->bdat_left > 0)
		return;
	s->state = SS_CMD;
	smtp_request_begin(s);
	if (s->bdat_error) {
		smtp_reply(s, "%s", s->bdat_error);
		s->bdat_error = NULL;
		return;
	}
	if (!s->bdat_last) {
		s->ok[SMTP_VERB_BDAT]++;
		smtp_reply(s, "250 2.0.0 Ok: %llu bytes", s->bdat_size);
		return;
	}
	smtp_bdat_finish(&s->txn->bconv, &s->txn->msg);
	smtp_message_end(s);
}

/* ---- STARTTLS and the rest ---- */

static void
cmd_starttls(struct smtp_session *s, const struct smtp_cmd *c)
{
	if (c->arglen) {
		smtp_reply(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (pt_conn_is_tls(s->conn)) {
		smtp_reply(s, "554 5.5.1 Error: TLS already active");
		return;
	}
	if (s->set->tls_level == SMTP_TLS_NONE || !pt_conn_tls_available(s->conn)) {
		smtp_reply(s, "502 5.5.1 Error: command not implemented");
		return;
	}
	if (s->txn) {
		smtp_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	s->ok[SMTP_VERB_STARTTLS]++;
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	/* RFC 3207: forget everything learnt before TLS, and everything the
	 * client pipelined behind STARTTLS (pt_conn_starttls discards it). */
	session_reset_helo(s);
	free(s->sasl_username);
	s->sasl_username = NULL;
	s->sasl_method = NULL;
	if (pt_conn_starttls(s->conn) != 0) {
		smtp_reply(s, "454 4.7.0 TLS not available due to local problem");
	} else {
		s->tls_started = 1;
		/* The whole handshake, however slowly its bytes come. */
		s->tls_deadline = 1;
		pt_conn_set_deadline(s->conn, s->set->starttls_timeout_ms);
	}
}

static void
cmd_vrfy(struct smtp_session *s, const struct smtp_cmd *c)
{
	char arg[SMTP_PATH_MAX + 1];
	size_t n = c->arglen < SMTP_PATH_MAX ? c->arglen : SMTP_PATH_MAX;

	if (s->set->vrfy_disabled) {
		smtp_reply(s, "502 5.5.1 VRFY command is disabled");
		return;
	}
	if (c->arglen == 0) {
		smtp_reply(s, "501 5.5.4 Syntax: VRFY address");
		return;
	}
	memcpy(arg, c->arg, n);
	arg[n] = 0;
	sanitize(arg);
	/* Never confirms nor denies: address harvesting learns nothing. */
	s->ok[SMTP_VERB_VRFY]++;
	smtp_reply(s, "252 2.0.0 %s", arg);
}

static void
dispatch(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_cmd c;

	smtp_parse_command(line, len, &c);
	s->last_verb = c.verb;
	s->total[c.verb]++;
	if (s->reject_all && c.verb != SMTP_VERB_QUIT && c.verb != SMTP_VERB_NOOP && c.verb != SMTP_VERB_RSET) {
		smtp_reply(s, "503 5.5.1 Error: access denied");
		return;
	}
	switch (c.verb) {
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
		cmd_helo(s, &c);
		break;
	case SMTP_VERB_MAIL:
		cmd_mail(s, &c);
		break;
	case SMTP_VERB_RCPT:
		cmd_rcpt(s, &c);
		break;
	case SMTP_VERB_DATA:
		cmd_data(s, &c);
		break;
	case SMTP_VERB_BDAT:
		cmd_bdat(s, &c);
		break;
	case SMTP_VERB_RSET:
		if (c.arglen) {
			smtp_reply(s, "501 5.5.4 Syntax: RSET");
			break;
		}
		smtp_txn_reset(s);
		s->ok[c.verb]++;
		smtp_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_NOOP:
		s->ok[c.verb]++;
		smtp_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_QUIT:
		s->ok[c.verb]++;
		s->quit = 1;
		smtp_close_with(s, "221 2.0.0 Bye");
		break;
	case SMTP_VERB_VRFY:
		cmd_vrfy(s, &c);
		break;
	case SMTP_VERB_HELP: {
		/* Only what this session could use now, as EHLO offers it. */
		char auth[64];
		int starttls = starttls_offered(s);
		s->ok[c.verb]++;
		smtp_reply(s, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP%s%s",
		      starttls ? " STARTTLS" : "", smtp_auth_ehlo_line(s, auth, sizeof(auth))[0] ? " AUTH" : "");
		break;
	}
	case SMTP_VERB_STARTTLS:
		cmd_starttls(s, &c);
		break;
	case SMTP_VERB_AUTH:
		smtp_auth_command(s, &c);
		break;
	case SMTP_VERB_XCLIENT:
		smtp_xclient_command(s, &c);
		break;
	default:
		smtp_reply(s, "500 5.5.2 Error: command not recognized");
		break;
	}
}

/* smtpd_hard_error_limit: after the error reply itself has gone out. */
static void
check_error_limit(struct smtp_session *s)
{
	char text[320];

	if (s->errors >= s->set->hard_errors && s->state != SS_CLOSING && !s->gone && !s->delayed) {
		char vb[16];
		pt_log_as(s->service, PT_LOG_WARNING, "%s[%s]: too many errors after %s",
		          s->client_name, s->client_addr, verb_upper(s, vb, sizeof(vb)));
		snprintf(text, sizeof(text), "421 4.7.0 %s Error: too many errors", s->set->hostname);
		smtp_close_with(s, text);
	}
}

/* Handle everything complete in the input buffer, in order (PIPELINING),
 * until a command needs to wait. */
static void
session_input(struct smtp_session *s)
{
	while (!s->gone && !s->async && s->state != SS_CLOSING) {
		if (s->state == SS_DATA) {
			size_t n;
			pt_conn_rbuf(s->conn, &n);
			if (n == 0)
				break;
			smtp_data_input(s);
			continue;
		}
		if (s->state == SS_BDAT) {
			size_t n;
			pt_conn_rbuf(s->conn, &n);
			if (n == 0 && s->bdat_left > 0)
				break;
			bdat_input(s);
			check_error_limit(s);
			continue;
		}
		const char *line;
		size_t len;
		if (s->state == SS_AUTH) {
			int eol, rc = pt_conn_getline(s->conn, smtp_auth_line_limit(s), &line, &len, &eol);
			if (rc == 0)
				break;
			smtp_request_begin(s);
			smtp_auth_response(s, line, len, rc);
			check_error_limit(s);
			continue;
		}
		int eol, rc = pt_conn_getline(s->conn, s->set->line_limit, &line, &len, &eol);
		if (rc == 0)
			break;
		smtp_request_begin(s);
		if (rc < 0) {
			s->total[SMTP_VERB_UNKNOWN]++;
			smtp_reply(s, "500 5.5.0 Error: line too long");
		} else if (eol == 1 && s->set->bare_reject && !s->local) {
			char text[320];
			snprintf(text, sizeof(text), "521 5.5.2 %s Error: bare <LF> received", s->set->hostname);
			smtp_close_with(s, text);
			break;
		} else {
			dispatch(s, line, len);
			/* After STARTTLS nothing buffered is ours to read; the
			 * core calls on_read again once the handshake is done. */
			if (s->tls_started) {
				s->tls_started = 0;
				break;
			}
		}
		check_error_limit(s);
	}
}

void
smtp_session_continue(struct smtp_session *s)
{
	if (s->gone)
		return;
	/* The answer's reply may have been the last error allowed. */
	check_error_limit(s);
	if (s->gone || s->async || s->state == SS_CLOSING)
		return;
	/* The wait was the server's: the client's clock starts again. */
	smtp_request_begin(s);
	pt_conn_resume(s->conn);
	/* Commands pipelined behind the one that waited. */
	session_input(s);
}

/* ---- connection hooks ---- */

static void
on_read(struct pt_conn *c)
{
	struct smtp_session *s = pt_conn_proto(c);

	if (s->tls_deadline) {
		/* The STARTTLS handshake is done (this call says so). */
		s->tls_deadline = 0;
		pt_conn_set_deadline(c, 0);
		smtp_request_begin(s);
	}
	/* Without per-request deadlines any input restarts the clock. */
	if (!s->set->per_request_deadline)
		s->last_input = pt_loop_now(s->loop);
	session_input(s);
}

static void
on_close(struct pt_conn *c, const char *reason)
{
	struct smtp_session *s = pt_conn_proto(c);

	char vb[16];

	if (s->state != SS_CLOSING && !s->quit && reason && strcmp(reason, "shutdown") != 0)
		pt_log_as(s->service, PT_LOG_INFO, "lost connection after %s from %s[%s]",
		          verb_upper(s, vb, sizeof(vb)), s->client_name, s->client_addr);
	if (s->lookup) {
		/* Gone before the banner: Postfix logs the connect anyway. */
		smtp_client_name_cancel(s->lookup);
		s->lookup = NULL;
		s->async = 0;
		pt_log_as(s->service, PT_LOG_INFO, "connect from %s[%s]", s->client_name, s->client_addr);
	}
	log_disconnect(s);
	s->gone = 1;
	s->conn = NULL;
	if (s->idle_timer) {
		pt_timer_cancel(s->loop, s->idle_timer);
		s->idle_timer = NULL;
	}
	if (s->sleep_timer) {
		pt_timer_cancel(s->loop, s->sleep_timer);
		s->sleep_timer = NULL;
		s->async = 0;
	}
	/* One of our handlers may be running below us (a reply that hit the
	 * output limit): the free waits for the loop. An answer still owed
	 * by a service (which holds s and has no cancel) frees it instead. */
	if (!s->async)
		pt_defer(s->loop, &s->reap, reap, s);
}

static const struct pt_conn_handlers handlers = { on_read, on_close, NULL };

static void
idle_check(struct pt_loop *loop, void *arg)
{
	struct smtp_session *s = arg;
	uint64_t now = pt_loop_now(loop), due;
	char text[320], vb[16];

	s->idle_timer = NULL;
	/* Time the server spends waiting is not the client's idle time; a
	 * STARTTLS handshake has its own deadline on the conn. */
	if (s->async || s->state == SS_CLOSING || s->tls_deadline) {
		if (s->async)
			s->last_input = now;
		s->idle_timer = pt_timer_add(loop, s->set->timeout_ms, idle_check, s);
		return;
	}
	due = session_due(s);
	if (now < due) {
		s->idle_timer = pt_timer_add(loop, due - now, idle_check, s);
		return;
	}
	if (s->state == SS_DATA || s->state == SS_BDAT)
		pt_log_as(s->service, PT_LOG_INFO, "timeout after %s (%zu bytes) from %s[%s]",
		          verb_upper(s, vb, sizeof(vb)), s->txn ? s->txn->msg.len : (size_t)0,
		          s->client_name, s->client_addr);
	else
		pt_log_as(s->service, PT_LOG_INFO, "timeout after %s from %s[%s]",
		          verb_upper(s, vb, sizeof(vb)), s->client_name, s->client_addr);
	snprintf(text, sizeof(text), "421 4.4.2 %s Error: timeout exceeded", s->set->hostname);
	smtp_txn_reset(s);
	smtp_close_with(s, text);
}

static void
connect_verdict(struct smtp_session *s, const struct pt_verdict *v)
{
	if (v && (v->kind == PT_VERDICT_REJECT || v->kind == PT_VERDICT_DEFER)) {
		pt_log_as(s->service, PT_LOG_INFO, "NOQUEUE: reject: CONNECT from %s[%s]: %s; proto=SMTP",
		          s->client_name, s->client_addr, v->reply);
		smtp_rec_verdict(s, v, "CONNECT", NULL);
		if (v->kind == PT_VERDICT_DEFER || v->reply[0] == '4') {
			smtp_close_with(s, v->reply);
			return;
		}
		/* RFC 5321 3.1: a 554 greeting, then 503 to all but QUIT. */
		reply_raw(s, v->reply);
		s->reject_all = strdup(v->reply);
		return;
	}
	if (!s->gone)
		pt_conn_printf(s->conn, "220 %s\r\n", s->set->banner);
}

static void
keep_names(struct smtp_session *s, const char *name, const char *reverse)
{
	size_t nl = strlen(name), rl = strlen(reverse);

	if (strcmp(name, "unknown") == 0 && strcmp(reverse, "unknown") == 0)
		return;
	s->names = malloc(nl + rl + 2);
	if (s->names == NULL)
		return;
	memcpy(s->names, name, nl + 1);
	memcpy(s->names + nl + 1, reverse, rl + 1);
	s->client_name = s->names;
	s->reverse_name = s->names + nl + 1;
}

/* The name is known (or "unknown"): log the connection, then the
 * CONNECT stage and the banner. */
static void
client_named(void *arg, const char *name, const char *reverse)
{
	struct smtp_session *s = arg;

	s->lookup = NULL;
	s->async = 0;
	keep_names(s, name, reverse);
	if (strcmp(s->client_name, "unknown") == 0 && strcmp(s->reverse_name, "unknown") != 0)
		pt_log_as(s->service, PT_LOG_WARNING, "hostname %s does not resolve to address %s",
		          s->reverse_name, s->client_addr);
	pt_log_as(s->service, PT_LOG_INFO, "connect from %s[%s]", s->client_name, s->client_addr);
	smtp_policy(s, PT_STAGE_CONNECT, NULL, connect_verdict);
	smtp_session_continue(s);
}

/* A session in its first state, owning conn's handlers. */
/* listener: whose settings (NULL: the file's); service: the log tag
 * (NULL: the settings' syslog_name/smtpd). */
static struct smtp_session *
session_new(struct pt_conn *conn, const char *listener, const char *service, const char *client_addr,
            const char *client_name)
{
	struct smtp_session *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		pt_conn_close(conn, "out of memory");
		return NULL;
	}
	s->conn = conn;
	s->loop = pt_conn_loop(conn);
	s->set = smtp_settings_for(listener);
	snprintf(s->listener, sizeof s->listener, "%s", listener ? listener : "");
	s->service = service ? service : s->set->log_tag;
	s->client_addr = client_addr;
	s->client_name = s->reverse_name = client_name;
	s->state = SS_CMD;
	s->last_verb = SMTP_VERB_UNKNOWN;
	s->last_input = s->envelope_start = pt_loop_now(s->loop);
	pt_conn_set_handlers(conn, &handlers, s);
	if (s->set->timeout_ms)
		s->idle_timer = pt_timer_add(s->loop, session_due(s) - s->last_input, idle_check, s);
	return s;
}

/* `sendmail -bs`: Postfix's stand-alone smtpd treats a client that is no
 * socket as localhost [127.0.0.1], asks no name, and greets at once. */
int
smtp_session_local(struct pt_conn *conn, const struct pt_local_sink *sink)
{
	struct smtp_session *s = session_new(conn, NULL, "sendmail", "127.0.0.1", "localhost");

	if (s == NULL)
		return -1;
	s->local = sink;
	pt_log_as(s->service, PT_LOG_INFO, "connect from %s[%s]", s->client_name, s->client_addr);
	pt_conn_printf(conn, "220 %s\r\n", s->set->banner);
	return 0;
}

void
smtp_session_accept(struct pt_conn *conn, const struct pt_listener *l)
{
	struct smtp_session *s = session_new(conn, l && l->name[0] ? l->name : NULL, NULL,
	                                     pt_conn_peer_addr(conn), "unknown");

	if (s == NULL)
		return;
	/* The name first (Postfix logs and checks it from the start); what
	 * the client sends meanwhile waits in the buffer. */
	s->lookup = smtp_client_name_start(s->loop, s->client_addr, s->set->hosts_file, s->set->name_timeout_ms,
	                                   client_named, s);
	if (s->lookup == NULL) {
		/* Out of memory: no name, as when the lookup is disabled. */
		client_named(s, "unknown", "unknown");
		return;
	}
	s->async = 1;
	pt_conn_pause(conn);
}
