/* The Received header, Postfix-shaped:
 *   Received: from HELO (NAME [IP])
 *   	(using TLSv1.3 with cipher X (256/256 bits))
 *   	(Authenticated sender: USER)
 *   	by MYHOSTNAME (Postern) with ESMTPS id ID
 *   	for <rcpt>; Sat, 28 Nov 2026 06:08:07 +0000 (UTC)
 * Client-supplied words are already sanitized by the session (no CR/LF). */
#include <stdio.h>
#include <string.h>

#include "smtp_received.h"

const char *
smtp_protocol_name(int esmtp, int tls, int auth, int utf8)
{
	static const char *const plain[8] = {
		"SMTP", "ESMTP", "ESMTPS", "ESMTPS", "ESMTPA", "ESMTPA", "ESMTPSA", "ESMTPSA",
	};
	static const char *const u8[8] = {
		"UTF8SMTP", "UTF8SMTP", "UTF8SMTPS", "UTF8SMTPS",
		"UTF8SMTPA", "UTF8SMTPA", "UTF8SMTPSA", "UTF8SMTPSA",
	};
	int i = (esmtp ? 1 : 0) | (tls ? 2 : 0) | (auth ? 4 : 0);

	/* TLS and AUTH exist only in ESMTP, so they imply it. */
	return utf8 ? u8[i] : plain[i];
}

int
smtp_received_format(const struct smtp_received_info *r, char *out, size_t outlen)
{
	char date[64], tls[256] = "", addr[80], forpart[300] = "", auth[300] = "";
	struct tm tm;
	int n;

	if (localtime_r(&r->when, &tm) == NULL ||
	    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm) == 0)
		return -1;
	/* Postfix marks IPv6 clients the way address literals are written. */
	snprintf(addr, sizeof(addr), "%s%s", strchr(r->client_addr, ':') ? "IPv6:" : "", r->client_addr);
	if (r->tls_version && r->tls_cipher)
		snprintf(tls, sizeof(tls), "\t(using %s with cipher %s (%d/%d bits))\n",
		         r->tls_version, r->tls_cipher, r->tls_bits, r->tls_bits);
	if (r->auth_sender)
		snprintf(auth, sizeof(auth), "\t(Authenticated sender: %s)\n", r->auth_sender);
	if (r->rcpt)
		snprintf(forpart, sizeof(forpart), "\n\tfor <%s>", r->rcpt);
	n = snprintf(out, outlen, "Received: from %s (%s [%s])\n%s%s\tby %s (Postern) with %s id %s%s; %s\n",
	             r->helo ? r->helo : r->client_name, r->client_name, addr, tls, auth,
	             r->myhostname, r->protocol, r->queue_id, forpart, date);
	if (n < 0 || (size_t)n >= outlen)
		return -1;
	return n;
}
