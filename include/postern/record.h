/* The decision record: what Postern decided and why, kept by Postern
 * itself (SQLite under the state directory, `decision_log_file`) whatever
 * the log does, and searched by `postern why`. Modules report each SMTP
 * transaction, delivery attempt and login here; the core owns the store.
 *
 * The calls never block and never fail the caller: the event is copied
 * into memory and written in batches by a thread of the worker (one
 * database transaction per batch, no fsync per message). In a process
 * that keeps no record (CLI verbs, sendmail, agents) they do nothing.
 * Never pass a password. */
#ifndef POSTERN_RECORD_H
#define POSTERN_RECORD_H

#include <stddef.h>

#include "postern/services.h"

/* One recipient of an SMTP transaction and the answer it got. */
struct pt_record_rcpt {
	const char *address;          /* as the client gave it */
	const char *reply;            /* "250 2.1.5 Ok" or the refusal */
	const char *rule;             /* the rule that decided, or NULL */
};

/* An SMTP transaction (MAIL to the end of the message, RSET or the end of
 * the session), or a refusal outside one (CONNECT, HELO, a MAIL refused
 * before it began). */
struct pt_record_smtp {
	const char *service;          /* listener: smtpd, submission, smtps; pickup */
	const char *outcome;          /* accepted, rejected, deferred, abandoned, discarded */
	const char *queue_id;         /* NULL before the first accepted recipient */
	const char *message_id;       /* Message-ID header, or NULL */
	const char *client_address, *client_name, *helo;
	const char *sasl_username;    /* NULL: not authenticated */
	const char *sender;           /* MAIL FROM ("" for <>), NULL: none given */
	const struct pt_record_rcpt *rcpt;
	size_t nrcpt;
	const char *stage;            /* where it was decided: CONNECT HELO MAIL RCPT DATA END-OF-MESSAGE */
	const char *reply;            /* the reply that decided the transaction */
	const char *rule;             /* the rule behind that reply, or NULL */
	const char *trace;            /* restriction trace, LF-separated lines, or NULL */
	unsigned long long size;      /* message bytes, 0 when none came */
	unsigned refused;             /* commands and recipients refused */
	long long started_ms;         /* when it began (ms since the epoch); 0 = now */
};
void pt_record_smtp(const struct pt_record_smtp *r);

/* A delivery attempt of one recipient (pt_delivery_log reports every one
 * by itself: transports need not call this). */
void pt_record_delivery(const char *transport, const char *queue_id, const char *to, const char *orig,
                        const char *relay, double delay, const struct pt_status *st);

/* A login attempt: result 1 ok, 0 refused, -1 temporary failure; reason
 * says why it failed ("password mismatch", "unknown user", ...). */
void pt_record_login(const char *service, const char *user, const char *client_address, int result,
                     const char *reason);

/* The Message-ID field value of a message (LF or CRLF header), trimmed, at
 * most outlen-1 bytes; "" when there is none. */
void pt_record_message_id(const char *data, size_t len, char *out, size_t outlen);

#endif
