/* The smtp module's part of the decision record (postern/record.h): each
 * transaction is kept as it goes -- every recipient with the reply it got
 * and the rule behind it, the restriction traces, the reply that ended it
 * -- and reported once when it ends (queued, refused, RSET, QUIT, lost
 * connection). A refusal outside a transaction (CONNECT, HELO, MAIL
 * before HELO) is reported at once. The log keeps only Postfix's lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "postern/conn.h"
#include "postern/record.h"
#include "postern/strbuf.h"
#include "smtp_session.h"

/* A transaction with thousands of recipients keeps the start of its
 * trace; the replies of every recipient are kept. */
#define REC_TRACE_MAX 8192

struct smtp_rec_rcpt {
	char *address, *reply, *rule;
};

struct smtp_txn_rec {
	struct smtp_rec_rcpt *v;
	size_t n, cap;
	struct pt_strbuf trace;
	char *pending_rule;          /* the rule that let the RCPT in waiting */
	char *final_reply, *final_rule;
	const char *final_stage;
	const char *outcome;         /* set when the message was queued or discarded */
	char *message_id;
	unsigned long long size;
	unsigned refused;
	long long started_ms;        /* the MAIL command: the story's time */
	/* The session's strings may be gone when the transaction is reported
	 * (a lost connection): copies taken while they were valid. */
	char *client, *client_name, *helo, *sasl_user, *service;
};

static char *
dup0(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void
set_str(char **dst, const char *src)
{
	char *n = dup0(src);
	free(*dst);
	*dst = n;
}

/* The listener the client came in on (smtpd, submission, smtps). */
static const char *
listener_of(const struct smtp_session *s)
{
	return s->listener[0] ? s->listener : s->service;
}

static struct smtp_txn_rec *
rec_of(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;
	if (!t)
		return NULL;
	if (!t->rec) {
		struct smtp_txn_rec *r = calloc(1, sizeof *r);
		if (!r)
			return NULL;
		r->client = dup0(s->client_addr);
		r->client_name = dup0(s->client_name);
		r->service = dup0(listener_of(s));
		r->trace.max = REC_TRACE_MAX;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		r->started_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		t->rec = r;
	}
	/* HELO and AUTH may change within a transaction's life: the latest. */
	if (s->helo && (!t->rec->helo || strcmp(t->rec->helo, s->helo) != 0))
		set_str(&t->rec->helo, s->helo);
	if (s->sasl_username && !t->rec->sasl_user)
		t->rec->sasl_user = dup0(s->sasl_username);
	return t->rec;
}

/* Lines of a restriction trace worth keeping: lists that decided or ran
 * an item; "(empty)" lists and a bare "result: accept" say nothing. */
static void
add_trace(struct pt_strbuf *b, const char *stage, const char *to, const char *trace)
{
	if (!trace || !*trace)
		return;
	int head = 0;
	for (const char *p = trace; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		int skip = len == 0 || (len >= 9 && memcmp(p + len - 9, ": (empty)", 9) == 0) ||
		           (len == 14 && memcmp(p, "result: accept", 14) == 0);
		if (!skip) {
			if (!head) {
				if (to)
					pt_strbuf_printf(b, "%s <%s>:\n", stage, to);
				else
					pt_strbuf_printf(b, "%s:\n", stage);
				head = 1;
			}
			pt_strbuf_printf(b, "  %.*s\n", (int)len, p);
		}
		p += len;
		if (*p == '\n')
			p++;
	}
}

static void
rcpt_add(struct smtp_txn_rec *r, const char *address, const char *reply, const char *rule)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 4;
		struct smtp_rec_rcpt *v = realloc(r->v, cap * sizeof *v);
		if (!v)
			return;
		r->v = v;
		r->cap = cap;
	}
	struct smtp_rec_rcpt *e = &r->v[r->n];
	e->address = dup0(address);
	e->reply = dup0(reply);
	e->rule = rule && *rule ? dup0(rule) : NULL;
	if (!e->address) {
		free(e->reply);
		free(e->rule);
		return;
	}
	r->n++;
}

/* A refusal with no transaction to hold it: its own event. */
static void
standalone(struct smtp_session *s, const char *stage, const char *reply, const char *rule, const char *trace,
           const char *sender)
{
	struct pt_strbuf b = { 0 };
	add_trace(&b, stage, NULL, trace);
	struct pt_record_smtp e = {
		.service = listener_of(s), .outcome = reply && reply[0] == '4' ? "deferred" : "rejected",
		.client_address = s->client_addr, .client_name = s->client_name,
		.helo = s->helo_pending ? s->helo_pending : s->helo,
		.sasl_username = s->sasl_username, .sender = sender, .stage = stage, .reply = reply, .rule = rule,
		.trace = b.p, .refused = 1,
	};
	pt_record_smtp(&e);
	pt_strbuf_free(&b);
}

void
smtp_rec_begin(struct smtp_session *s)
{
	if (!s->local)
		rec_of(s);
}

void
smtp_rec_refusal(struct smtp_session *s, const char *stage, const char *reply, const char *rule, const char *to,
                 const char *sender)
{
	if (s->local)
		return;
	struct smtp_txn_rec *r = rec_of(s);
	if (!r) {
		standalone(s, stage, reply, rule, NULL, sender);
		return;
	}
	r->refused++;
	if (to) {
		rcpt_add(r, to, reply, rule);
		return;
	}
	set_str(&r->final_reply, reply);
	set_str(&r->final_rule, rule);
	r->final_stage = stage;
}

void
smtp_rec_verdict(struct smtp_session *s, const struct pt_verdict *v, const char *stage, const char *to)
{
	if (s->local || !v)
		return;
	int refused = v->kind == PT_VERDICT_REJECT || v->kind == PT_VERDICT_DEFER;
	struct smtp_txn_rec *r = rec_of(s);
	if (!r) {
		if (refused)
			standalone(s, stage, v->reply, v->rule, v->trace, NULL);
		return;
	}
	add_trace(&r->trace, stage, to, v->trace);
	if (refused)
		smtp_rec_refusal(s, stage, v->reply, v->rule, to, NULL);
	else if (to)
		set_str(&r->pending_rule, v->rule);
}

void
smtp_rec_rcpt_ok(struct smtp_session *s, const char *to, const char *reply)
{
	struct smtp_txn_rec *r = s->local ? NULL : rec_of(s);
	if (!r)
		return;
	rcpt_add(r, to, reply, r->pending_rule);
	free(r->pending_rule);
	r->pending_rule = NULL;
}

void
smtp_rec_message(struct smtp_session *s, const char *data, size_t len)
{
	struct smtp_txn_rec *r = s->local ? NULL : rec_of(s);
	if (!r)
		return;
	char mid[1000];
	pt_record_message_id(data, len, mid, sizeof mid);
	set_str(&r->message_id, mid[0] ? mid : NULL);
	r->size = len;
}

void
smtp_rec_outcome(struct smtp_session *s, const char *outcome, const char *stage, const char *reply)
{
	struct smtp_txn_rec *r = s->local ? NULL : rec_of(s);
	if (!r)
		return;
	r->outcome = outcome;
	r->final_stage = stage;
	set_str(&r->final_reply, reply);
	free(r->final_rule);
	r->final_rule = NULL;
}

static void
rec_free(struct smtp_txn_rec *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].address);
		free(r->v[i].reply);
		free(r->v[i].rule);
	}
	free(r->v);
	pt_strbuf_free(&r->trace);
	free(r->pending_rule);
	free(r->final_reply);
	free(r->final_rule);
	free(r->message_id);
	free(r->client);
	free(r->client_name);
	free(r->helo);
	free(r->sasl_user);
	free(r->service);
	free(r);
}

void
smtp_rec_txn_end(struct smtp_txn *t)
{
	struct smtp_txn_rec *r = t->rec;
	if (!r)
		return;
	t->rec = NULL;
	const char *outcome = r->outcome, *reply = r->final_reply, *rule = r->final_rule, *stage = r->final_stage;
	size_t accepted = 0;
	const struct smtp_rec_rcpt *last_refused = NULL;
	for (size_t i = 0; i < r->n; i++) {
		if (r->v[i].reply && r->v[i].reply[0] == '2')
			accepted++;
		else
			last_refused = &r->v[i];
	}
	if (!outcome) {
		if (reply)
			outcome = reply[0] == '4' ? "deferred" : "rejected";
		else if (accepted == 0 && last_refused) {
			outcome = last_refused->reply && last_refused->reply[0] == '4' ? "deferred" : "rejected";
			reply = last_refused->reply;
			rule = last_refused->rule;
			stage = "RCPT";
		} else
			outcome = "abandoned";
	}
	struct pt_record_rcpt stack[32], *rc = r->n <= 32 ? stack : calloc(r->n, sizeof *rc);
	if (rc) {
		for (size_t i = 0; i < r->n; i++)
			rc[i] = (struct pt_record_rcpt){ r->v[i].address, r->v[i].reply, r->v[i].rule };
		struct pt_record_smtp e = {
			.service = r->service, .outcome = outcome, .queue_id = t->id[0] ? t->id : NULL,
			.message_id = r->message_id, .client_address = r->client, .client_name = r->client_name,
			.helo = r->helo, .sasl_username = r->sasl_user, .sender = t->sender.addr, .rcpt = rc,
			.nrcpt = r->n, .stage = stage, .reply = reply, .rule = rule, .trace = r->trace.p,
			.size = r->size, .refused = r->refused, .started_ms = r->started_ms,
		};
		pt_record_smtp(&e);
		if (rc != stack)
			free(rc);
	}
	rec_free(r);
}
