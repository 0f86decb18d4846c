/* Postfix cleanup's missing-header repair for mail from this host's own
 * clients (local_header_rewrite_clients, always_add_missing_headers): a
 * message without Date:, Message-Id: or From: gets them at the end of its
 * header section, so what a script or smtp-source sends reads as mail. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "postern/header.h"
#include "smtp_headers.h"

int
smtp_add_missing_headers(const char *msg, size_t len, size_t trace_len, const struct smtp_header_fill *f,
                         struct pt_strbuf *out)
{
	int have_date = 0, have_msgid = 0, have_from = 0;

	if (trace_len > len)
		trace_len = len;
	/* The header section ends at its empty line or at the first line that
	 * is no field; folded lines belong to the field above them. */
	struct pt_hdr_iter it;
	struct pt_hdr_field fld;
	pt_hdr_iter_init(&it, msg + trace_len, len - trace_len, 1);
	while (pt_hdr_next(&it, &fld)) {
		have_date |= pt_hdr_name_is(&fld, "Date");
		have_msgid |= pt_hdr_name_is(&fld, "Message-Id");
		have_from |= pt_hdr_name_is(&fld, "From");
	}
	size_t hend = trace_len + pt_hdr_section_len(&it);
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
