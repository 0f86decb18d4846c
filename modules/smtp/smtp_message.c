/* End of a message: the end-of-data restriction stage, header repair,
 * the queue submission and its answer to the client (DATA and BDAT). */
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

/* ---- end of message: the queue ---- */

static void
queue_done(void *arg, const struct pt_status *st, const char *queue_id)
{
	struct smtp_session *s = arg;

	if (!smtp_session_answered(s))
		return;
	/* The next envelope's deadline starts with this answer; the queue's
	 * time was not the client's. */
	s->envelope_start = pt_loop_now(s->loop);
	smtp_request_begin(s);
	pt_metric_inc(pt_metric_counter("postern_smtpd_messages", "messages at end of data: accepted, or refused by the queue",
	                                "service", s->listener[0] ? s->listener : "sendmail", "result",
	                                st == NULL || st->code == 0 ? "accepted" : st->code >= 500 ? "rejected" : "deferred",
	                                NULL));
	if (st == NULL || st->code == 0) {
		const char *id = queue_id && *queue_id ? queue_id : (s->txn ? s->txn->id : "");
		char text[80];
		s->ok[s->last_verb]++;
		s->errors = 0;
		snprintf(text, sizeof(text), "250 2.0.0 Ok: queued as %s", id);
		smtp_rec_outcome(s, "accepted", "END-OF-MESSAGE", text);
		smtp_reply(s, "%s", text);
	} else {
		char text[400];
		snprintf(text, sizeof(text), "%d %s %s", st->code,
		         st->dsn[0] ? st->dsn : (st->code >= 500 ? "5.3.0" : "4.3.0"),
		         st->text[0] ? st->text : "Error: queue file write error");
		smtp_rec_refusal(s, "END-OF-MESSAGE", text, "queue", NULL, NULL);
		smtp_reply(s, "%s", text);
	}
	smtp_txn_reset(s);
	smtp_session_continue(s);
}

static void
eod_verdict(struct smtp_session *s, const struct pt_verdict *v)
{
	struct smtp_txn *t = s->txn;
	struct pt_envelope env;
	struct pt_envelope_rcpt *rc;
	int rcode;

	if (t == NULL)
		return;
	if (smtp_verdict_refuses(s, v, "END-OF-MESSAGE", NULL)) {
		smtp_txn_reset(s);
		return;
	}
	if (t->discard) {
		pt_log_as(s->service, PT_LOG_INFO, "%s: discard: END-OF-MESSAGE from %s[%s]", t->id,
		          s->client_name, s->client_addr);
		smtp_rec_message(s, t->msg.p, t->msg.len);
		smtp_rec_outcome(s, "discarded", "END-OF-MESSAGE", "250 2.0.0 Ok: queued as (discarded)");
		s->ok[s->last_verb]++;
		pt_metric_inc(pt_metric_counter("postern_smtpd_messages",
		                                "messages at end of data: accepted, or refused by the queue",
		                                "service", s->listener[0] ? s->listener : "sendmail", "result", "discarded", NULL));
		smtp_reply(s, "250 2.0.0 Ok: queued as %s", t->id);
		smtp_txn_reset(s);
		return;
	}
	rc = calloc(t->nrcpt, sizeof(*rc));
	if (rc == NULL) {
		smtp_reply(s, "451 4.3.0 Error: insufficient system resources");
		smtp_txn_reset(s);
		return;
	}
	for (size_t i = 0; i < t->nrcpt; i++) {
		rc[i].address = t->rcpt[i];
		rc[i].orig = t->rcpt[i];
	}
	memset(&env, 0, sizeof(env));
	env.sender = t->sender.addr;
	env.nrcpt = t->nrcpt;
	env.rcpt = rc;
	env.client_name = s->client_name;
	env.client_address = s->client_addr;
	env.helo = s->helo ? s->helo : "";
	env.protocol = smtp_protocol_name(s->esmtp, pt_conn_is_tls(s->conn), s->sasl_username != NULL,
	                                  t->params.smtputf8);
	env.sasl_username = s->sasl_username;
	env.body_8bit = t->params.body == SMTP_BODY_8BITMIME;
	env.smtputf8 = t->params.smtputf8;
	/* Postfix cleanup's repair of a bare message from this host. */
	struct pt_strbuf fixed = { 0 }, qualified = { 0 };
	const char *data = t->msg.p;
	size_t dlen = t->msg.len;
	/* Local submission is this host's own client by definition. */
	int local_client = s->local ||
	                   smtp_rewrite_client_matches(s->set->rewrite_clients, pt_conn_peer_addr(s->conn),
	                                               pt_conn_local_addr(s->conn), s->sasl_username != NULL);
	if (local_client || s->set->always_add_headers) {
		struct smtp_header_fill f = { t->sender.addr, t->id, s->set->hostname, time(NULL) };
		if (smtp_add_missing_headers(t->msg.p, t->msg.len, 0, &f, &fixed) == 1) {
			data = fixed.p;
			dlen = fixed.len;
		}
	}
	/* ... and its qualification of bare header addresses (only for mail
	 * of this host's clients: a remote sender's headers are its own). */
	if (local_client && pt_hdr_qualify_local(data, dlen, &qualified) == 1) {
		data = qualified.p;
		dlen = qualified.len;
	}
	smtp_rec_message(s, data, dlen);
	if (s->local)
		rcode = s->local->submit(s->local->sink, s->loop, t->id, &env, data, dlen, queue_done, s);
	else
		rcode = pt_queue_submit(s->loop, t->id, &env, data, dlen, queue_done, s);
	pt_strbuf_free(&fixed);
	pt_strbuf_free(&qualified);
	free(rc);
	if (rcode != 0) {
		smtp_reply(s, "451 4.3.0 Error: queue file write error");
		smtp_txn_reset(s);
		return;
	}
	/* queue_done comes from the loop; input waits for it. */
	s->async = 1;
	pt_conn_pause(s->conn);
}

/* The content is complete (DATA end or BDAT LAST). */
void
smtp_message_end(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;

	s->state = SS_CMD;
	s->envelope_start = pt_loop_now(s->loop);
	smtp_request_begin(s);
	smtp_msgbuf_finish(&t->msg);
	if (t->msg.too_big) {
		pt_log_as(s->service, PT_LOG_WARNING, "%s: queue file size limit exceeded", t->id);
		smtp_rec_refusal(s, "END-OF-MESSAGE", "552 5.3.4 Error: message file too big", "message_size_limit",
		                 NULL, NULL);
		smtp_reply(s, "552 5.3.4 Error: message file too big");
		smtp_txn_reset(s);
		return;
	}
	if (t->msg.header_too_big) {
		pt_log_as(s->service, PT_LOG_WARNING, "%s: message header size limit exceeded", t->id);
		smtp_rec_refusal(s, "END-OF-MESSAGE", "552 5.3.4 Error: message header size exceeds limit",
		                 "header_size_limit", NULL, NULL);
		smtp_reply(s, "552 5.3.4 Error: message header size exceeds limit");
		smtp_txn_reset(s);
		return;
	}
	if (t->msg.oom) {
		smtp_reply(s, "451 4.3.0 Error: insufficient system resources");
		smtp_txn_reset(s);
		return;
	}
	smtp_policy(s, PT_STAGE_END_OF_DATA, NULL, eod_verdict);
}

void
smtp_data_input(struct smtp_session *s)
{
	size_t n, used = 0;
	const char *in = pt_conn_rbuf(s->conn, &n);
	enum smtp_data_status st;

	if (n == 0)
		return;
	st = smtp_data_feed(&s->txn->dec, in, n, &used, &s->txn->msg);
	pt_conn_consume(s->conn, used);
	smtp_data_credit(s, used);
	if (st == SMTP_DATA_BARE) {
		char text[320];
		pt_log_as(s->service, PT_LOG_INFO, "%s: reject: DATA from %s[%s]: bare <LF> received",
		          s->txn->id, s->client_name, s->client_addr);
		snprintf(text, sizeof(text), "521 5.5.2 %s Error: bare <LF> received", s->set->hostname);
		smtp_txn_reset(s);
		smtp_close_with(s, text);
	} else if (st == SMTP_DATA_END) {
		smtp_message_end(s);
	}
}

