/* The Received trace header (RFC 5321 section 4.4) the server prepends to
 * every message it accepts, in Postfix's layout. */
#ifndef SMTP_RECEIVED_H
#define SMTP_RECEIVED_H

#include <stddef.h>
#include <time.h>

struct smtp_received_info {
	const char *helo;          /* NULL when the client never said HELO/EHLO */
	const char *client_name;   /* "unknown" without reverse DNS */
	const char *client_addr;   /* "127.0.0.1", "::1" */
	const char *myhostname;
	const char *protocol;      /* smtp_protocol_name() */
	const char *queue_id;
	const char *rcpt;          /* the one recipient, or NULL */
	const char *auth_sender;   /* smtpd_sasl_authenticated_header: the user, or NULL */
	const char *tls_version;   /* NULL without TLS */
	const char *tls_cipher;
	int tls_bits;
	time_t when;
};

/* "SMTP", "ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA" (RFC 3848) and the
 * "UTF8SMTP"... forms of RFC 6531 for SMTPUTF8 transactions. */
const char *smtp_protocol_name(int esmtp, int tls, int auth, int utf8);

/* Write the header (LF line ends, folded with a TAB) into out; returns
 * its length, or -1 when it does not fit. */
int smtp_received_format(const struct smtp_received_info *r, char *out, size_t outlen);

#endif
