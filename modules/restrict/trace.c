/* Decision traces: the growable text an evaluation writes as it goes, and
 * the log lines Postfix admins grep for (NOQUEUE: reject: ...). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/log.h"
#include "restrict.h"

#define TRACE_MAX (64 * 1024)

void
restrict_buf_printf(struct restrict_buf *b, const char *fmt, ...)
{
	if (b->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		size_t room = b->cap - b->len;
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = 1;
			return;
		}
		if (b->p != NULL && (size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t want = b->len + (size_t)n + 1;
		if (want > TRACE_MAX) {
			b->failed = 1;   /* a trace is a diagnosis aid: cut, never fail */
			return;
		}
		size_t cap = b->cap ? b->cap : 256;
		while (cap < want)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->failed = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

void
restrict_buf_free(struct restrict_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

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
	pt_log_as("smtpd", PT_LOG_INFO, "%s: %s: %s from %s[%s]: %s;%s%s proto=%s%s rule=%s",
	          str_or(req->queue_id, "NOQUEUE"), prefix, restrict_stage_name(req->stage),
	          str_or(req->client_name, "unknown"), str_or(req->client_address, "unknown"),
	          v->reply, from, to, str_or(req->protocol_name, "SMTP"), helo, v->rule);
}

void
restrict_log_accept(const struct pt_policy_request *req, const struct pt_verdict *v)
{
	if (req->queue_id == NULL || *req->queue_id == '\0')
		return;
	/* One line per rule, each under the queue id, so `postern why ID`
	 * finds the whole decision with a plain search of the log. */
	pt_log_as("smtpd", PT_LOG_INFO, "%s: policy: %s from %s[%s]: accept%s%s%s rule=%s",
	          req->queue_id, restrict_stage_name(req->stage),
	          str_or(req->client_name, "unknown"), str_or(req->client_address, "unknown"),
	          req->recipient ? " to=<" : "", req->recipient ? req->recipient : "",
	          req->recipient ? ">" : "", v->rule[0] ? v->rule : "(end of lists)");
	const char *t = v->trace;
	while (t && *t) {
		const char *nl = strchr(t, '\n');
		size_t len = nl ? (size_t)(nl - t) : strlen(t);
		pt_log_as("smtpd", PT_LOG_INFO, "%s: policy trace: %.*s", req->queue_id, (int)len, t);
		t += len + (nl != NULL);
	}
}
