/* Postfix cleanup's missing-header repair for mail from this host's own
 * clients (local_header_rewrite_clients, always_add_missing_headers): a
 * message without Date:, Message-Id: or From: gets them at the end of its
 * header section, so what a script or smtp-source sends reads as mail. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "smtp_headers.h"

/* Where the header section ends (offset of its empty line, or of the
 * first line that is not a header field), and which of the three fields
 * it has. Folded lines belong to the field above them. */
static size_t
scan_header(const char *p, size_t len, int *have_date, int *have_msgid, int *have_from)
{
	size_t o = 0;

	while (o < len) {
		const char *nl = memchr(p + o, '\n', len - o);
		size_t end = nl ? (size_t)(nl - p) + 1 : len;
		size_t n = end - o;
		const char *l = p + o;

		if (n == 0 || l[0] == '\n' || (l[0] == '\r' && n > 1 && l[1] == '\n'))
			return o;
		if (l[0] != ' ' && l[0] != '\t') {
			const char *colon = memchr(l, ':', n);
			if (colon == NULL)
				return o;
			size_t name = (size_t)(colon - l);
			for (size_t i = 0; i < name; i++)
				if ((unsigned char)l[i] <= ' ' || (unsigned char)l[i] >= 127)
					return o;
			if (name == 4 && strncasecmp(l, "Date", 4) == 0)
				*have_date = 1;
			else if (name == 10 && strncasecmp(l, "Message-Id", 10) == 0)
				*have_msgid = 1;
			else if (name == 4 && strncasecmp(l, "From", 4) == 0)
				*have_from = 1;
		}
		o = end;
	}
	return o;
}

int
smtp_add_missing_headers(const char *msg, size_t len, size_t trace_len, const struct smtp_header_fill *f,
                         struct pt_strbuf *out)
{
	int have_date = 0, have_msgid = 0, have_from = 0;

	if (trace_len > len)
		trace_len = len;
	size_t hend = trace_len + scan_header(msg + trace_len, len - trace_len, &have_date, &have_msgid,
	                                      &have_from);
	if (have_date && have_msgid && have_from)
		return 0;

	struct tm tm;
	char stamp[32], date[96];
	localtime_r(&f->now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm);

	pt_strbuf_put(out, msg, hend);
	/* A header section cut short by a body line without the empty line
	 * still ends with LF here: every scanned line did. */
	if (hend > 0 && msg[hend - 1] != '\n')
		pt_strbuf_put(out, "\n", 1);
	if (!have_msgid)
		pt_strbuf_printf(out, "Message-Id: <%s.%s@%s>\n", stamp, f->queue_id, f->myhostname);
	if (!have_date)
		pt_strbuf_printf(out, "Date: %s\n", date);
	if (!have_from)
		pt_strbuf_printf(out, "From: %s\n", f->sender[0] ? f->sender : "MAILER-DAEMON");
	/* A message that had no empty line before its body (or none at all)
	 * gets one, so the added fields cannot be read as body text. */
	if (hend == len || (msg[hend] != '\n' && msg[hend] != '\r'))
		pt_strbuf_put(out, "\n", 1);
	pt_strbuf_put(out, msg + hend, len - hend);
	return out->oom ? -1 : 1;
}

int
smtp_rewrite_clients_check(const char *value, char *err, size_t errlen)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s", value ? value : "");
	for (char *save = NULL, *w = strtok_r(buf, " ,\t", &save); w; w = strtok_r(NULL, " ,\t", &save)) {
		if (strcmp(w, "permit_inet_interfaces") != 0 && strcmp(w, "permit_sasl_authenticated") != 0 &&
		    strcmp(w, "static:all") != 0) {
			snprintf(err, errlen, "\"%.100s\" is not supported here (use permit_inet_interfaces, "
			         "permit_sasl_authenticated or static:all)", w);
			return -1;
		}
	}
	return 0;
}

int
smtp_rewrite_client_matches(const char *value, const char *peer, const char *local, int authenticated)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s", value ? value : "");
	for (char *save = NULL, *w = strtok_r(buf, " ,\t", &save); w; w = strtok_r(NULL, " ,\t", &save)) {
		if (strcmp(w, "static:all") == 0)
			return 1;
		if (strcmp(w, "permit_sasl_authenticated") == 0 && authenticated)
			return 1;
		/* The client is this host when it reaches us from the address it
		 * connected to (Postfix: one of the inet_interfaces addresses). */
		if (strcmp(w, "permit_inet_interfaces") == 0 && peer && local && strcmp(peer, local) == 0)
			return 1;
	}
	return 0;
}
