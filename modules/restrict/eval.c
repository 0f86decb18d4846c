/* The walk over the restriction lists due at a stage: item by item, with
 * Postfix's meaning of permit/reject/defer, warn_if_reject, DEFER_IF_*,
 * and the decision trace; items may finish later (DNS, Lua). */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "postern/event.h"
#include "postern/map.h"
#include "postern/log.h"
#include "postern/metrics.h"

static struct restrict_setup *live_setup;
/* Listeners with chains of their own (submission.smtpd_relay_restrictions). */
static struct {
	char name[32];
	struct restrict_setup *s;
} live_listener[RESTRICT_MAX_LISTENERS];

struct restrict_setup *
restrict_live_setup(void)
{
	return live_setup;
}

struct restrict_setup *
restrict_listener_setup(const char *listener)
{
	for (size_t i = 0; listener && *listener && i < RESTRICT_MAX_LISTENERS; i++)
		if (live_listener[i].s && strcmp(live_listener[i].name, listener) == 0)
			return live_listener[i].s;
	return live_setup;
}

void
restrict_set_live_setup(struct restrict_setup *s)
{
	struct restrict_setup *old = live_setup;
	live_setup = s;
	restrict_setup_unref(old);
	if (s == NULL)
		restrict_set_listener_setup(NULL, NULL);
}

void
restrict_set_listener_setup(const char *listener, struct restrict_setup *s)
{
	if (listener == NULL) {
		for (size_t i = 0; i < RESTRICT_MAX_LISTENERS; i++) {
			restrict_setup_unref(live_listener[i].s);
			live_listener[i].s = NULL;
		}
		return;
	}
	for (size_t i = 0; i < RESTRICT_MAX_LISTENERS; i++)
		if (live_listener[i].s == NULL || strcmp(live_listener[i].name, listener) == 0) {
			struct restrict_setup *old = live_listener[i].s;
			snprintf(live_listener[i].name, sizeof live_listener[i].name, "%s", listener);
			live_listener[i].s = s;
			restrict_setup_unref(old);
			return;
		}
	restrict_setup_unref(s);
}

const char *
restrict_stage_name(enum pt_stage st)
{
	switch (st) {
	case PT_STAGE_CONNECT: return "CONNECT";
	case PT_STAGE_HELO: return "HELO";
	case PT_STAGE_MAIL: return "MAIL";
	case PT_STAGE_RCPT: return "RCPT";
	case PT_STAGE_DATA: return "DATA";
	case PT_STAGE_END_OF_DATA: return "END-OF-MESSAGE";
	case PT_STAGE_VRFY: return "VRFY";
	case PT_STAGE_ETRN: return "ETRN";
	}
	return "?";
}

const char *
restrict_eval_subject(const struct restrict_eval *e, enum restrict_class cls)
{
	static char client[400];
	const struct pt_policy_request *r = &e->req;
	switch (cls) {
	case RESTRICT_CLASS_CLIENT:
		RS_SNPRINTF(client, "%s[%s]",
		         r->client_name && *r->client_name ? r->client_name : "unknown",
		         r->client_address ? r->client_address : "unknown");
		return client;
	case RESTRICT_CLASS_HELO: return r->helo_name ? r->helo_name : "";
	case RESTRICT_CLASS_SENDER: return r->sender ? r->sender : "";
	case RESTRICT_CLASS_RECIPIENT: return r->recipient ? r->recipient : "";
	case RESTRICT_CLASS_DATA: return "DATA";
	case RESTRICT_CLASS_EOD: return "END-OF-MESSAGE";
	}
	return "";
}

/* The lists due at a stage. With smtpd_delay_reject (Postfix's default)
 * client, HELO and sender decisions wait for RCPT, so that the client
 * learns which recipient was refused and why. */
static void
plan(struct restrict_eval *e)
{
	int delay = e->s->delay_reject;
	e->norder = 0;
#define ADD(l) (e->order[e->norder++] = (l))
	switch (e->req.stage) {
	case PT_STAGE_CONNECT:
		if (!delay)
			ADD(RL_CLIENT);
		break;
	case PT_STAGE_HELO:
		if (!delay)
			ADD(RL_HELO);
		break;
	case PT_STAGE_MAIL:
		if (!delay)
			ADD(RL_SENDER);
		break;
	case PT_STAGE_RCPT:
		if (delay) {
			ADD(RL_CLIENT);
			ADD(RL_HELO);
			ADD(RL_SENDER);
		}
		ADD(RL_RELAY);
		ADD(RL_RECIPIENT);
		break;
	case PT_STAGE_DATA:
		ADD(RL_DATA);
		break;
	case PT_STAGE_END_OF_DATA:
		ADD(RL_EOD);
		break;
	case PT_STAGE_VRFY:
	case PT_STAGE_ETRN:
		break;
	}
#undef ADD
}

static void
deliver(struct pt_loop *loop, void *arg)
{
	struct restrict_eval *e = arg;

	(void)loop;
	e->done(e->arg, &e->v);
	pt_strbuf_free(&e->trace);
	restrict_setup_unref(e->s);
	free(e->strs);
	free(e);
}

/* The verdict is ready: done() runs from the loop (never inside
 * svc_evaluate), or at once for a loop-less evaluation. */
static void
answer(struct restrict_eval *e)
{
	if (e->loop)
		pt_defer(e->loop, &e->answer, deliver, e);
	else
		deliver(NULL, e);
}

/* Per stage, verdict and deciding rule; stages with no list to run
 * decide nothing and are not counted. */
static void
count_verdict(const struct restrict_eval *e)
{
	static const char *const word[] = { "accept", "reject", "defer", "discard", "hold" };
	if (e->norder == 0 && e->v.kind != PT_VERDICT_REJECT && e->v.kind != PT_VERDICT_DEFER)
		return;
	pt_metric_inc(pt_metric_counter("postern_smtpd_decisions", "restriction verdicts per stage and deciding rule",
	                                "stage", restrict_stage_name(e->req.stage), "result",
	                                (unsigned)e->v.kind < 5 ? word[e->v.kind] : "other", "rule",
	                                e->v.rule[0] ? e->v.rule : "none", NULL));
}

static void
finish(struct restrict_eval *e)
{
	count_verdict(e);
	if (e->v.kind == PT_VERDICT_REJECT || e->v.kind == PT_VERDICT_DEFER)
		restrict_log_reject(&e->req, &e->v, "reject");
	pt_strbuf_printf(&e->trace, "result: %s%s%s\n",
	                    e->v.reply[0] ? e->v.reply : "accept",
	                    e->v.rule[0] ? " rule=" : "", e->v.rule);
	e->v.trace = e->trace.p ? e->trace.p : "";
	/* An accept logs nothing, as in Postfix: its trace goes to the caller
	 * (the smtp module keeps it in the decision record, `postern why`).
	 * HOLD and DISCARD get Postfix's one line. */
	if (e->v.kind == PT_VERDICT_HOLD || e->v.kind == PT_VERDICT_DISCARD)
		restrict_log_accept(&e->req, &e->v);
	answer(e);
}

static void
finish_reject(struct restrict_eval *e, const char *reply, const char *rule)
{
	/* DEFER_IF_REJECT: a later reject becomes a temporary one. */
	if (reply[0] == '5' && e->defer_if_reject[0]) {
		pt_strbuf_printf(&e->trace, "defer_if_reject turns: %s\n", reply);
		reply = e->defer_if_reject;
	}
	e->v.kind = reply[0] == '4' ? PT_VERDICT_DEFER : PT_VERDICT_REJECT;
	RS_SNPRINTF(e->v.reply, "%s", reply);
	RS_SNPRINTF(e->v.rule, "%s", rule);
	finish(e);
}

static void
finish_accept(struct restrict_eval *e)
{
	if (e->defer_if_permit[0]) {
		finish_reject(e, e->defer_if_permit, "DEFER_IF_PERMIT");
		return;
	}
	e->v.kind = e->discard ? PT_VERDICT_DISCARD : e->hold ? PT_VERDICT_HOLD : PT_VERDICT_ACCEPT;
	finish(e);
}

static void
item_label(const struct restrict_item *it, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s%s%s", it->name, it->arg ? " " : "", it->arg ? it->arg : "");
}

/* Account for the result of the current item; returns 1 when the
 * evaluation has finished (e is freed then). */
static int
apply(struct restrict_eval *e, enum item_result r)
{
	const struct restrict_chain *ch = &e->s->chains[e->order[e->oi]];
	const struct restrict_item *it = &ch->v[e->ii];
	char label[300];
	item_label(it, label, sizeof label);
	const char *rule = e->rule[0] ? e->rule : label;

	if (it->kind == RI_WARN_IF_REJECT) {
		e->warn_next = 1;
		pt_strbuf_printf(&e->trace, "%s: %s\n", ch->param, label);
		e->ii++;
		return 0;
	}
	int warn = e->warn_next;
	e->warn_next = 0;
	switch (r) {
	case R_NEXT:
		pt_strbuf_printf(&e->trace, "%s: %s -> no decision%s%s\n", ch->param, label,
		                    e->note[0] ? ": " : "", e->note);
		e->ii++;
		break;
	case R_PERMIT:
		pt_strbuf_printf(&e->trace, "%s: %s -> permit%s%s\n", ch->param, label,
		                    e->note[0] ? ": " : "", e->note);
		RS_SNPRINTF(e->v.rule, "%s", rule);
		e->oi++;
		e->ii = 0;
		break;
	case R_REJECT:
		if (warn) {
			pt_strbuf_printf(&e->trace, "%s: %s -> reject_warning: %s\n", ch->param,
			                    label, e->reply);
			struct pt_verdict w;
			memset(&w, 0, sizeof w);
			RS_SNPRINTF(w.reply, "%s", e->reply);
			RS_SNPRINTF(w.rule, "%s", rule);
			restrict_log_reject(&e->req, &w, "reject_warning");
			e->ii++;
			break;
		}
		pt_strbuf_printf(&e->trace, "%s: %s -> %s: %s\n", ch->param, label,
		                    e->reply[0] == '4' ? "defer" : "reject", e->reply);
		finish_reject(e, e->reply, rule);
		return 1;
	case R_PENDING:
		break;
	}
	e->note[0] = '\0';
	e->rule[0] = '\0';
	e->reply[0] = '\0';
	return 0;
}

static void run(struct restrict_eval *e);

/* A lookup module answered "pending": the item is asked again shortly
 * (map lookups have no side effects), the loop never waits; after the
 * bound its temporary failure stands. 1 when a retry is due. */
#define LOOKUP_BOUND_MS 30000

static void
lookup_again(struct pt_loop *loop, void *arg)
{
	struct restrict_eval *e = arg;
	(void)loop;
	e->lookup_timer = NULL;
	run(e);
}

static int
lookup_wait(struct restrict_eval *e)
{
	if (!e->loop)
		return 0;
	uint64_t now = pt_loop_now(e->loop);
	if (!e->lookup_since)
		e->lookup_since = now;
	if (now - e->lookup_since >= LOOKUP_BOUND_MS)
		return 0;
	e->lookup_timer = pt_timer_add(e->loop, pt_map_retry_ms(now - e->lookup_since), lookup_again, e);
	if (!e->lookup_timer)
		return 0;
	e->reply[0] = e->rule[0] = e->note[0] = '\0';
	e->in_run = 0;
	return 1;
}

static void
run(struct restrict_eval *e)
{
	e->in_run = 1;
	for (;;) {
		if (e->oi >= e->norder) {
			if (!e->final_done && (e->req.stage == PT_STAGE_RCPT || e->req.stage == PT_STAGE_VRFY)) {
				e->final_done = 1;
				if (e->s->reject_unlisted_recipient || e->req.stage == PT_STAGE_VRFY) {
					unsigned long p0 = pt_map_pending_count();
					enum item_result r = restrict_item_unlisted(e, "Recipient address");
					if (pt_map_pending_count() != p0 && lookup_wait(e)) {
						e->final_done = 0;
						return;
					}
					if (r == R_REJECT) {
						pt_strbuf_printf(&e->trace, "smtpd_reject_unlisted_recipient -> "
						                    "reject: %s\n", e->reply);
						finish_reject(e, e->reply, "smtpd_reject_unlisted_recipient");
						return;
					}
				}
			}
			finish_accept(e);
			return;
		}
		const struct restrict_chain *ch = &e->s->chains[e->order[e->oi]];
		if (e->ii >= ch->n) {
			if (ch->n == 0)
				pt_strbuf_printf(&e->trace, "%s: (empty)\n", ch->param);
			e->oi++;
			e->ii = 0;
			continue;
		}
		e->resumed = 0;
		unsigned long p0 = pt_map_pending_count();
		enum item_result r = restrict_item_eval(e, ch, &ch->v[e->ii]);
		if (r != R_PENDING && pt_map_pending_count() != p0 && lookup_wait(e))
			return;
		if (r == R_PENDING) {
			if (!e->resumed) {
				e->in_run = 0;
				return;          /* restrict_eval_item_done() continues */
			}
			r = e->resumed_result;
		}
		if (apply(e, r))
			return;
	}
}

void
restrict_eval_item_done(struct restrict_eval *e, enum item_result r)
{
	if (e->in_run) {
		/* Finished before the item returned (a synchronous callback). */
		e->resumed = 1;
		e->resumed_result = r;
		return;
	}
	if (apply(e, r))
		return;
	run(e);
}

enum item_result
restrict_eval_action(struct restrict_eval *e, const struct restrict_chain *ch,
                     const struct restrict_action *a)
{
	char reply[512];
	switch (a->kind) {
	case RESTRICT_ACT_OK:
		return R_PERMIT;
	case RESTRICT_ACT_DUNNO:
		return R_NEXT;
	case RESTRICT_ACT_REJECT:
	case RESTRICT_ACT_DEFER:
		restrict_action_reply(a, ch->cls, restrict_eval_subject(e, ch->cls), e->reply,
		                      sizeof e->reply);
		return R_REJECT;
	case RESTRICT_ACT_DEFER_IF_REJECT:
	case RESTRICT_ACT_DEFER_IF_PERMIT:
		restrict_action_reply(a, ch->cls, restrict_eval_subject(e, ch->cls), reply, sizeof reply);
		snprintf(a->kind == RESTRICT_ACT_DEFER_IF_REJECT ? e->defer_if_reject : e->defer_if_permit,
		         sizeof e->defer_if_reject, "%s", reply);
		RS_SNPRINTF(e->note, "%s %s",
		         a->kind == RESTRICT_ACT_DEFER_IF_REJECT ? "DEFER_IF_REJECT" : "DEFER_IF_PERMIT",
		         reply);
		return R_NEXT;
	case RESTRICT_ACT_WARN:
	case RESTRICT_ACT_INFO:
		pt_log_as(e->req.log_service && *e->req.log_service ? e->req.log_service : "smtpd",
		          a->kind == RESTRICT_ACT_WARN ? PT_LOG_WARNING : PT_LOG_INFO,
		          "%s: %s: %s from %s[%s]: <%s>: %s",
		          e->req.queue_id && *e->req.queue_id ? e->req.queue_id : "NOQUEUE",
		          a->kind == RESTRICT_ACT_WARN ? "warn" : "info", restrict_stage_name(e->req.stage),
		          e->req.client_name ? e->req.client_name : "unknown",
		          e->req.client_address ? e->req.client_address : "unknown",
		          restrict_eval_subject(e, ch->cls), a->text);
		RS_SNPRINTF(e->note, "%s %s",
		         a->kind == RESTRICT_ACT_WARN ? "WARN" : "INFO", a->text);
		return R_NEXT;
	case RESTRICT_ACT_PREPEND: {
		size_t len = strlen(e->v.prepend);
		if (len + strlen(a->text) + 2 <= sizeof e->v.prepend)
			snprintf(e->v.prepend + len, sizeof e->v.prepend - len, "%s%s",
			         len ? "\n" : "", a->text);
		RS_SNPRINTF(e->note, "PREPEND %s", a->text);
		return R_NEXT;
	}
	case RESTRICT_ACT_HOLD:
		e->hold = 1;
		RS_SNPRINTF(e->note, "HOLD %s", a->text);
		return R_NEXT;
	case RESTRICT_ACT_DISCARD:
		e->discard = 1;
		RS_SNPRINTF(e->note, "DISCARD %s", a->text);
		return R_PERMIT;
	}
	return R_NEXT;
}

/* Strings of the request are copied: the caller's buffers may change
 * (the next pipelined command) while a DNS answer or a policy is awaited. */
static int
copy_request(struct restrict_eval *e, const struct pt_policy_request *req)
{
	const char *const *src[] = { &req->protocol_name, &req->client_address, &req->client_name,
		&req->reverse_client_name, &req->helo_name, &req->sender, &req->recipient,
		&req->queue_id, &req->sasl_username, &req->sasl_method,
		&req->encryption_protocol, &req->encryption_cipher, &req->listener, &req->log_service };
	const char **dst[] = { &e->req.protocol_name, &e->req.client_address, &e->req.client_name,
		&e->req.reverse_client_name, &e->req.helo_name, &e->req.sender, &e->req.recipient,
		&e->req.queue_id, &e->req.sasl_username, &e->req.sasl_method,
		&e->req.encryption_protocol, &e->req.encryption_cipher, &e->req.listener,
		&e->req.log_service };
	size_t n = sizeof src / sizeof src[0], total = 1;
	for (size_t i = 0; i < n; i++)
		if (*src[i])
			total += strlen(*src[i]) + 1;
	if ((e->strs = malloc(total)) == NULL)
		return -1;
	char *p = e->strs;
	for (size_t i = 0; i < n; i++) {
		if (*src[i] == NULL) {
			*dst[i] = NULL;
			continue;
		}
		size_t len = strlen(*src[i]);
		memcpy(p, *src[i], len + 1);
		*dst[i] = p;
		p += len + 1;
	}
	e->req.stage = req->stage;
	e->req.recipient_count = req->recipient_count;
	e->req.size = req->size;
	e->req.pipelined_early = req->pipelined_early;
	e->req.client_sa = NULL;
	if (req->client_sa) {
		size_t len = req->client_sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
		             : sizeof(struct sockaddr_in);
		memcpy(&e->sa, req->client_sa, len);
		e->have_sa = 1;
	} else if (req->client_address && restrict_sockaddr_parse(req->client_address, &e->sa) == 0) {
		e->have_sa = 1;
	}
	if (e->have_sa)
		e->req.client_sa = (const struct sockaddr *)&e->sa;
	return 0;
}

int
restrict_evaluate(struct restrict_setup *s, struct pt_loop *loop,
                  const struct pt_policy_request *req,
                  void (*done)(void *arg, const struct pt_verdict *v), void *arg)
{
	if (s == NULL)
		s = restrict_listener_setup(req->listener);
	struct restrict_eval *e = calloc(1, sizeof *e);
	if (e == NULL)
		return -1;
	e->loop = loop;
	e->done = done;
	e->arg = arg;
	if (s == NULL || copy_request(e, req) < 0) {
		/* Never accept by accident: no memory means try again later. */
		e->v.kind = PT_VERDICT_DEFER;
		RS_SNPRINTF(e->v.reply, "451 4.3.0 Error: %s",
		         s == NULL ? "restrictions not configured" : "out of memory");
		RS_SNPRINTF(e->v.rule, "internal");
		answer(e);
		return 0;
	}
	restrict_setup_ref(s);
	e->s = s;
	e->trace.max = RESTRICT_TRACE_MAX;
	plan(e);
	run(e);
	return 0;
}
