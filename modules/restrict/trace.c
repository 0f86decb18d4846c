/* Decision traces: the growable text an evaluation writes as it goes, and
 * the log lines Postfix admins grep for (NOQUEUE: reject: ...). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/log.h"
#include "restrict.h"

static const char *
str_or(const char *s, const char *def)
{
	return s && *s ? s : def;
}

void
restrict_log_reject(const struct pt_policy_request *req, const struct pt_verdict *v,
                    const char *prefix)
{
	char to[600] = "";
	if (req->recipient && (req->stage == PT_STAGE_RCPT || req->stage == PT_STAGE_VRFY ||
	                       req->stage == PT_STAGE_DATA || req->stage == PT_STAGE_END_OF_DATA))
		RS_SNPRINTF(to, " to=<%s>", req->recipient);
	char from[600] = "";
	if (req->sender)
		RS_SNPRINTF(from, " from=<%s>", req->sender);
	char helo[300] = "";
	if (req->helo_name && *req->helo_name)
		RS_SNPRINTF(helo, " helo=<%s>", req->helo_name);
	pt_log_as(str_or(req->log_service, "smtpd"), PT_LOG_INFO, "%s: %s: %s from %s[%s]: %s;%s%s proto=%s%s rule=%s",
	          str_or(req->queue_id, "NOQUEUE"), prefix, restrict_stage_name(req->stage),
	          str_or(req->client_name, "unknown"), str_or(req->client_address, "unknown"),
	          v->reply, from, to, str_or(req->protocol_name, "SMTP"), helo, v->rule);
}

void
restrict_log_accept(const struct pt_policy_request *req, const struct pt_verdict *v)
{
	/* Postfix's "NOQUEUE: hold: RCPT from NAME[IP]: <rcpt>: ... triggers
	 * HOLD action; from=<> to=<> proto=ESMTP helo=<>", with rule=. */
	struct pt_verdict line = *v;
	const char *what = v->kind == PT_VERDICT_HOLD ? "HOLD" : "DISCARD";
	if (req->recipient && *req->recipient)
		RS_SNPRINTF(line.reply, "<%s>: Recipient address triggers %s action", req->recipient, what);
	else
		RS_SNPRINTF(line.reply, "%s triggers %s action", restrict_stage_name(req->stage), what);
	restrict_log_reject(req, &line, v->kind == PT_VERDICT_HOLD ? "hold" : "discard");
}
