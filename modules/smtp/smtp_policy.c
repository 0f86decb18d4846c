/* The smtp module's side of the restrict service: the Postfix policy
 * request a stage sends, waiting for the verdict with the connection
 * paused, and a verdict turned into the reply (or a PREPEND / DISCARD
 * noted on the transaction). */
#include <stdlib.h>
#include <string.h>

#include "postern/conn.h"
#include "postern/services.h"
#include "smtp_session.h"

struct policy_call {
	struct smtp_session *s;
	smtp_verdict_fn *then;
};

static void
policy_done(void *arg, const struct pt_verdict *v)
{
	struct policy_call *pc = arg;
	struct smtp_session *s = pc->s;
	smtp_verdict_fn *then = pc->then;

	free(pc);
	if (!smtp_session_answered(s))
		return;
	then(s, v);
	smtp_session_continue(s);
}

static void
fill_request(struct smtp_session *s, enum pt_stage stage, struct pt_policy_request *r, const char *rcpt)
{
	memset(r, 0, sizeof(*r));
	r->stage = stage;
	r->protocol_name = smtp_proto_name(s);
	r->client_address = s->client_addr;
	r->client_name = s->client_name;
	r->reverse_client_name = s->reverse_name;
	r->helo_name = stage == PT_STAGE_HELO && s->helo_pending ? s->helo_pending : (s->helo ? s->helo : "");
	r->sender = s->txn ? s->txn->sender.addr : "";
	r->recipient = rcpt ? rcpt : "";
	r->queue_id = s->txn && s->txn->id[0] ? s->txn->id : "";
	r->sasl_username = s->sasl_username ? s->sasl_username : "";
	r->sasl_method = s->sasl_username && s->sasl_method ? s->sasl_method : "";
	r->encryption_protocol = pt_conn_is_tls(s->conn) ? pt_conn_tls_version(s->conn) : "";
	r->encryption_cipher = pt_conn_is_tls(s->conn) ? pt_conn_tls_cipher(s->conn) : "";
	if (!r->encryption_protocol)
		r->encryption_protocol = "";
	if (!r->encryption_cipher)
		r->encryption_cipher = "";
	r->recipient_count = s->txn ? (unsigned)s->txn->nrcpt : 0;
	r->size = s->txn ? (s->txn->params.has_size ? s->txn->params.size : s->txn->msg.content) : 0;
	r->client_sa = pt_conn_peer_sa(s->conn);
	r->listener = s->listener;
	r->log_service = s->service;
}

/* Ask the restrict service (when loaded) about this stage; then() runs
 * with its verdict, or with NULL when there is no restrict module. While
 * the answer is pending the connection is paused. */
void
smtp_policy(struct smtp_session *s, enum pt_stage stage, const char *rcpt, smtp_verdict_fn *then)
{
	const struct pt_restrict_ops *ops = pt_service_get(PT_SVC_RESTRICT);
	struct pt_policy_request req;
	struct policy_call *pc;

	if (s->gone)
		return;
	/* Local submission: no access controls (Postfix's smtpd -S). */
	if (ops == NULL || ops->evaluate == NULL || s->local) {
		then(s, NULL);
		return;
	}
	pc = malloc(sizeof(*pc));
	if (pc == NULL) {
		smtp_reply(s, "451 4.3.0 Error: insufficient system resources");
		return;
	}
	pc->s = s;
	pc->then = then;
	fill_request(s, stage, &req, rcpt);
	if (ops->evaluate(s->loop, &req, policy_done, pc) != 0) {
		/* Refused outright (no callback coming): a temporary failure,
		 * never a silent accept. */
		free(pc);
		smtp_reply(s, "451 4.3.5 Server configuration problem");
		return;
	}
	/* policy_done comes from the loop; input waits for it. */
	s->async = 1;
	pt_conn_pause(s->conn);
}

/* The verdict as a reply; returns 1 when it refused the command. */
int
smtp_verdict_refuses(struct smtp_session *s, const struct pt_verdict *v, const char *stage, const char *to)
{
	if (v == NULL)
		return 0;
	smtp_rec_verdict(s, v, stage, to);
	switch (v->kind) {
	case PT_VERDICT_REJECT:
	case PT_VERDICT_DEFER:
		/* The restrict module logged it, with the rule that decided. */
		smtp_reply(s, "%s", v->reply);
		return 1;
	case PT_VERDICT_DISCARD:
		if (s->txn)
			s->txn->discard = 1;
		return 0;
	default:
		break;
	}
	if (v->prepend[0] && s->txn) {
		size_t old = s->txn->prepend ? strlen(s->txn->prepend) : 0, add = strlen(v->prepend);
		char *p = realloc(s->txn->prepend, old + add + 2);
		if (p) {
			memcpy(p + old, v->prepend, add);
			if (add == 0 || v->prepend[add - 1] != '\n')
				p[old + add++] = '\n';
			p[old + add] = 0;
			s->txn->prepend = p;
		}
	}
	return 0;
}

