/* Non-delivery notifications: RFC 3464 multipart/report messages worded
 * as Postfix's bounce(8), so admins and users see what they know. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "postern/header.h"
#include "postern/strbuf.h"
#include "queue.h"

/* Postfix's bounce_size_limit: beyond it only the headers go back. */
#define DSN_RETURN_LIMIT 50000

/* RFC 5322 date as Postfix writes it: "Sat, 28 Nov 2026 06:53:19 +0000 (UTC)". */
static void
rfc822_date(time_t t, char *out, size_t len)
{
	struct tm tm;
	localtime_r(&t, &tm);
	if (strftime(out, len, "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm) == 0)
		snprintf(out, len, "Thu, 01 Jan 1970 00:00:00 +0000");
}

/* Texts come from status lines and addresses from the envelope: strip
 * anything that would break a header or the report's structure. */
static char *
clean(const char *s)
{
	if (!s)
		s = "";
	char *c = strdup(s);
	if (!c)
		return NULL;
	for (char *p = c; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return c;
}

/* "<addr> (expanded from <orig>): text", folded like Postfix's at about
 * 76 columns with a four-space indent. */
static void
notice_line(struct pt_strbuf *b, const struct pt_dsn_rcpt *r)
{
	char *addr = clean(r->address), *orig = clean(r->orig), *text = clean(r->text);
	char *line = NULL;
	if (!addr || !orig || !text) {
		b->oom = 1;
		goto out;
	}
	size_t n = strlen(addr) + strlen(orig) + strlen(text) + 64;
	line = malloc(n);
	if (!line) {
		b->oom = 1;
		goto out;
	}
	if (r->orig && r->orig[0] && strcasecmp(r->orig, r->address) != 0)
		snprintf(line, n, "<%s> (expanded from <%s>): %s", addr, orig, text);
	else
		snprintf(line, n, "<%s>: %s", addr, text);
	const char *p = line;
	int first = 1;
	while (*p) {
		size_t width = first ? 76 : 72;
		size_t left = strlen(p), take = left;
		if (left > width) {
			take = width;
			while (take > 20 && p[take] != ' ')
				take--;
			if (p[take] != ' ')
				take = width;
		}
		if (!first)
			pt_strbuf_put(b, "    ", 4);
		pt_strbuf_put(b, p, take);
		pt_strbuf_put(b, "\n", 1);
		p += take;
		while (*p == ' ')
			p++;
		first = 0;
	}
out:
	free(addr);
	free(orig);
	free(text);
	free(line);
}

/* End of the header block (offset of the empty line), or len. */
static size_t
header_end(const char *m, size_t len)
{
	struct pt_hdr_iter it;
	struct pt_hdr_field f;
	pt_hdr_iter_init(&it, m, len, 0);
	while (pt_hdr_next(&it, &f))
		;
	return pt_hdr_section_len(&it);
}

static int
contains_line(const char *m, size_t len, const char *line)
{
	size_t n = strlen(line);
	for (size_t i = 0; i + n <= len; i++)
		if ((i == 0 || m[i - 1] == '\n') && memcmp(m + i, line, n) == 0)
			return 1;
	return 0;
}

char *
pt_dsn_build(const struct pt_dsn_info *in, const struct pt_dsn_rcpt *r, size_t n,
             const char *orig, size_t orig_len, size_t *len)
{
	struct pt_strbuf b = { 0 };
	char now[64], arrival[64], boundary[200], marker[210], stamp[32];
	const char *host = in->myhostname && in->myhostname[0] ? in->myhostname : "localhost";
	const char *origin = in->mydomain_origin && in->mydomain_origin[0] ? in->mydomain_origin : host;
	char *sender = clean(in->sender);
	int delayed = n > 0;
	struct tm tm;
	if (!sender)
		return NULL;
	for (size_t i = 0; i < n; i++)
		delayed &= r[i].delayed;
	rfc822_date(in->now, now, sizeof now);
	rfc822_date(in->arrival, arrival, sizeof arrival);
	localtime_r(&in->now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);

	/* The boundary must not occur in the returned message. */
	snprintf(boundary, sizeof boundary, "%s.%lld/%s", in->queue_id, (long long)in->arrival, host);
	for (int k = 1; k < 100; k++) {
		snprintf(marker, sizeof marker, "--%s", boundary);
		if (!contains_line(orig, orig_len, marker))
			break;
		snprintf(boundary, sizeof boundary, "%s.%lld.%d/%s", in->queue_id,
		         (long long)in->arrival, k, host);
	}

	pt_strbuf_printf(&b, "Received: by %s (Postern)\n\tid %s; %s\n", host, in->bounce_id, now);
	pt_strbuf_printf(&b, "Date: %s\n", now);
	pt_strbuf_printf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\n", origin);
	pt_strbuf_printf(&b, "Subject: %s\n", delayed ? "Delayed Mail (still being retried)"
	                                       : "Undelivered Mail Returned to Sender");
	pt_strbuf_printf(&b, "To: %s\n", sender);
	pt_strbuf_printf(&b, "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n");
	pt_strbuf_printf(&b, "Content-Type: multipart/report; report-type=delivery-status;\n"
	              "\tboundary=\"%s\"\n", boundary);
	pt_strbuf_printf(&b, "Content-Transfer-Encoding: 8bit\n");
	pt_strbuf_printf(&b, "Message-Id: <%s.%s@%s>\n\n", stamp, in->bounce_id, host);
	pt_strbuf_printf(&b, "This is a MIME-encapsulated message.\n\n");

	pt_strbuf_printf(&b, "--%s\nContent-Description: Notification\n"
	              "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n",
	          boundary);
	pt_strbuf_printf(&b, "This is the mail system at host %s.\n\n", host);
	if (delayed)
		pt_strbuf_printf(&b, "####################################################################\n"
		              "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
		              "####################################################################\n\n"
		              "Your message could not be delivered for more than a while.\n"
		              "It will be retried until it is too old.\n\n");
	else
		pt_strbuf_printf(&b, "I'm sorry to have to inform you that your message could not\n"
		              "be delivered to one or more recipients. It's attached below.\n\n");
	pt_strbuf_printf(&b, "For further assistance, please send mail to postmaster.\n\n"
	              "If you do so, please include this problem report. You can\n"
	              "delete your own text from the attached returned message.\n\n"
	              "                   The mail system\n\n");
	for (size_t i = 0; i < n; i++)
		notice_line(&b, &r[i]);
	pt_strbuf_printf(&b, "\n");

	pt_strbuf_printf(&b, "--%s\nContent-Description: %s\nContent-Type: message/delivery-status\n\n",
	          boundary, "Delivery report");
	pt_strbuf_printf(&b, "Reporting-MTA: dns; %s\n", host);
	if (in->envid && in->envid[0]) {
		char *e = clean(in->envid);
		pt_strbuf_printf(&b, "Original-Envelope-Id: %s\n", e ? e : "");
		free(e);
	}
	pt_strbuf_printf(&b, "X-Postern-Queue-ID: %s\n", in->queue_id);
	pt_strbuf_printf(&b, "X-Postern-Sender: rfc822; %s\n", sender);
	pt_strbuf_printf(&b, "Arrival-Date: %s\n", arrival);
	for (size_t i = 0; i < n; i++) {
		char *a = clean(r[i].address), *o = clean(r[i].orig), *t = clean(r[i].text);
		const char *dsn = r[i].dsn && r[i].dsn[0] ? r[i].dsn : (r[i].delayed ? "4.0.0" : "5.0.0");
		pt_strbuf_printf(&b, "\nFinal-Recipient: rfc822; %s\n", a ? a : "");
		if (r[i].orig && r[i].orig[0])
			pt_strbuf_printf(&b, "Original-Recipient: rfc822;%s\n", o ? o : "");
		pt_strbuf_printf(&b, "Action: %s\nStatus: %s\n", r[i].delayed ? "delayed" : "failed", dsn);
		pt_strbuf_printf(&b, "Diagnostic-Code: x-unix; %s\n", t ? t : "");
		if (!a || !o || !t)
			b.oom = 1;
		free(a);
		free(o);
		free(t);
	}
	pt_strbuf_printf(&b, "\n");

	int headers_only = (in->ret && strcasecmp(in->ret, "HDRS") == 0) || orig_len > DSN_RETURN_LIMIT;
	size_t ret_len = headers_only ? header_end(orig, orig_len) : orig_len;
	pt_strbuf_printf(&b, "--%s\nContent-Description: %s\nContent-Type: %s\nContent-Transfer-Encoding: 8bit\n\n",
	          boundary, headers_only ? "Undelivered Message Headers" : "Undelivered Message",
	          headers_only ? "text/rfc822-headers" : "message/rfc822");
	pt_strbuf_printf(&b, "Return-Path: <%s>\n", sender);
	pt_strbuf_put(&b, orig, ret_len);
	if (ret_len && orig[ret_len - 1] != '\n')
		pt_strbuf_put(&b, "\n", 1);
	pt_strbuf_printf(&b, "\n--%s--\n", boundary);
	free(sender);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}
