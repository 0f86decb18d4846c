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
	/* One line, under the queue id when there is one (NOQUEUE before the
	 * first accepted recipient: `postern why` ties it to the id by the
	 * "ID: client=" line the same process logs right after). */
	char trace[3000];
	size_t o = 0;
	for (const char *t = v->trace; t && *t && o + 3 < sizeof trace; t++) {
		if (*t == '\n') {
			if (t[1] == '\0')
				break;
			trace[o++] = ';';
			trace[o++] = ' ';
		} else {
			trace[o++] = *t;
		}
	}
	trace[o] = '\0';
	pt_log_as(str_or(req->log_service, "smtpd"), PT_LOG_INFO, "%s: policy: %s from %s[%s]: %s%s%s%s rule=%s trace=[%s]",
	          str_or(req->queue_id, "NOQUEUE"), restrict_stage_name(req->stage),
	          str_or(req->client_name, "unknown"), str_or(req->client_address, "unknown"),
	          v->kind == PT_VERDICT_HOLD ? "hold" : v->kind == PT_VERDICT_DISCARD ? "discard" : "accept",
	          req->recipient && *req->recipient ? " to=<" : "",
	          req->recipient && *req->recipient ? req->recipient : "",
	          req->recipient && *req->recipient ? ">" : "", v->rule[0] ? v->rule : "-", trace);
}
