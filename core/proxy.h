/* The front's login proxy (core/proxy.c): relay a logged-in IMAP or POP3
 * client to the host that keeps the user's mailbox. */
#ifndef POSTERN_PROXY_H
#define POSTERN_PROXY_H

#include "postern/session.h"

struct pt_conn;

typedef void pt_proxy_failed_fn(struct pt_conn *c, void *arg, const char *code, const char *why);

/* Called by pt_session_handoff for a login whose passdb entry names a
 * backend (dest "HOST", "HOST:PORT", "[V6]:PORT"). Takes c over as the
 * hand-off does; failed() runs later, from the loop, with "UNAVAILABLE"
 * (backend down, refused, timed out) or "CLOSED", handing c back. 0, or -1
 * at once (nothing changed). The password is copied (and wiped after). */
int pt_proxy_start(struct pt_conn *c, const struct pt_session_info *info, const char *dest,
                   const char *password, pt_proxy_failed_fn *failed, void *arg);

#endif
