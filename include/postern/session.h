/* Post-login sessions (IMAP, POP3): the Dovecot login/mail split.
 *
 * The protocol module's pre-login side runs in the worker (as mail_owner,
 * with no access to mailboxes): greeting, capabilities, STARTTLS, and the
 * login through PT_SVC_AUTH. After a successful login it calls
 * pt_session_handoff(): the core starts (or reuses) the user's mail
 * process, which runs as the user (plus mail_privileged_group), and from
 * then on the worker only relays bytes between the client (TLS stays in
 * the worker) and that process. One mail process serves all sessions of
 * one user and exits after the last one ends.
 *
 * In the mail process the core calls the protocol's session service
 * ("session:imap", "session:pop3", registered by the module's init when
 * ctx->role is PT_ROLE_MAIL) with a plaintext pt_conn whose peer/local address
 * and is_tls report the original client connection. */
#ifndef POSTERN_SESSION_H
#define POSTERN_SESSION_H

#include <stddef.h>

#include "postern/services.h"

struct pt_conn;

#define PT_SESSION_HANDOFF_MAX 2048   /* bytes of protocol state passed on */

struct pt_session_info {
	const char *protocol;         /* "imap" / "pop3": service "session:" + this */
	const char *user;             /* authenticated login name */
	const char *mech;             /* "PLAIN", "LOGIN", "USER" (for logs) */
	const char *session_id;       /* for log lines of both sides */
	/* Protocol state the post-login side needs to continue, e.g. the
	 * IMAP tag of the LOGIN command. Opaque to the core. */
	const void *handoff;
	size_t handoff_len;
	/* Filled by the core in the mail process (ignored by handoff): */
	const char *peer_addr, *local_addr;
	unsigned peer_port, local_port;
	int tls;
};

/* Worker side, after a successful login: hand c over. Input the client
 * already sent beyond the login command (still buffered in c) goes to the
 * mail process first. The conn's handlers then belong to the core until
 * it closes; the protocol's on_close is NOT called afterwards (it frees
 * its pre-login state before calling this, or in failed()).
 *
 * failed(c, arg, code, why) runs on the loop instead when no mail process
 * can take the session; c is untouched and still the protocol's:
 *   code "LIMIT"  : mail_max_userip_connections reached for user+IP
 *   code "UNAVAILABLE": user unknown to userdb, fork/exec failure, ...
 *   code "CLOSED" : the client's conn closed (idle timeout, shutdown)
 *                   while the mail agent was answering; failed() runs
 *                   from inside the close, writes are dropped, and the
 *                   protocol's on_close is not called: free state here.
 * Returns 0 when the handoff is under way, -1 on immediate failure (then
 * failed() is not called). */
int pt_session_handoff(struct pt_conn *c, const struct pt_session_info *info,
                       void (*failed)(struct pt_conn *c, void *arg, const char *code,
                                      const char *why),
                       void *arg);

/* Submission on a front (Postfix + Dovecot's proxy shape): a client that
 * passed AUTH here and whose passdb entry names another host
 * (pt_auth_proxy_dest(), inside the verify's done()) is relayed to that
 * host's submission port (proxy_submission_port; proxy_tls applies). The
 * core says EHLO there, passes the client on with XCLIENT ADDR PORT NAME
 * HELO LOGIN (the host must list the front in
 * smtpd_authorized_xclient_hosts), says EHLO again with the client's
 * name, then answers the client's AUTH with 235 and relays bytes.
 * done(c, arg, code, why) runs later, from the loop, exactly once:
 *   "OK"          the relay runs; c belongs to the core now (free state,
 *                 never touch c again)
 *   "UNAVAILABLE" the host is down or refused: c is the module's again
 *                 (handlers restored, paused input resumed): reply 454
 *   "CLOSED"      the client left meanwhile (inside its close): free state
 * Returns 0, or -1 at once (nothing changed). */
struct pt_smtp_proxy_info {
	const char *user;             /* the authenticated name (XCLIENT LOGIN) */
	const char *dest;             /* pt_auth_proxy_dest() */
	const char *helo;             /* the client's EHLO name */
	const char *client_name;      /* its verified name or "unknown" */
	const char *myhostname;       /* our EHLO name at the host */
	const char *service;          /* log tag */
};
int pt_session_proxy_smtp(struct pt_conn *c, const struct pt_smtp_proxy_info *info,
                          void (*done)(struct pt_conn *c, void *arg, const char *code, const char *why),
                          void *arg);

/* What a protocol module registers as service "session:PROTOCOL". start
 * runs in the user's mail process on its loop: take c (set handlers,
 * reply to the login, serve). user is the userdb entry the process runs
 * as. The info strings live only during the call. */
struct pt_session_ops {
	void (*start)(struct pt_conn *c, const struct pt_session_info *info,
	              const struct pt_user *user);
};

#endif
