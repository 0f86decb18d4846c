/* Missing Date:/Message-Id:/From: repair (Postfix cleanup's, for
 * local_header_rewrite_clients or always_add_missing_headers). */
#ifndef POSTERN_SMTP_HEADERS_H
#define POSTERN_SMTP_HEADERS_H

#include <stddef.h>
#include <time.h>

#include "postern/strbuf.h"

struct smtp_header_fill {
	const char *sender;           /* envelope sender, "" for <> */
	const char *queue_id;
	const char *myhostname;
	time_t now;
};

/* msg: the message with LF line ends whose first trace_len bytes are the
 * trace headers we added (Received). 0: nothing missing, out untouched;
 * 1: out holds the message with the missing fields appended to its header
 * section; -1: out of memory. */
int smtp_add_missing_headers(const char *msg, size_t len, size_t trace_len,
                             const struct smtp_header_fill *f, struct pt_strbuf *out);
/* local_header_rewrite_clients: syntax check (0, or -1 with err) and
 * whether a client qualifies. */
int smtp_rewrite_clients_check(const char *value, char *err, size_t errlen);
int smtp_rewrite_client_matches(const char *value, const char *peer, const char *local,
                                int authenticated);

#endif
