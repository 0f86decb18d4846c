/* The SMTP session's state, shared by the files that drive it:
 * smtp_session.c (commands, transactions, the queue), smtp_auth.c (AUTH)
 * and the client-name lookup before the banner. Private to the module. */
#ifndef SMTP_SESSION_H
#define SMTP_SESSION_H

#include <stdint.h>

#include "postern/event.h"
#include "postern/services.h"
#include "postern/submit.h"
#include "smtp.h"
#include "smtp_data.h"
#include "smtp_parse.h"

struct pt_conn;
struct pt_loop;
struct pt_sasl;
struct pt_timer;
struct smtp_name_lookup;

enum sess_state {
	SS_CMD,          /* reading command lines */
	SS_DATA,         /* inside DATA content */
	SS_BDAT,         /* inside a BDAT chunk */
	SS_AUTH,         /* reading SASL responses to a 334 challenge */
	SS_CLOSING,      /* last reply written; ignore input */
};

/* A mail transaction: from MAIL to the end of DATA/BDAT, or RSET. */
struct smtp_txn {
	struct smtp_path sender;
	struct smtp_mail_params params;
	char id[24];                /* queue id, given at the first RCPT */
	char **rcpt;
	size_t nrcpt, rcap;
	struct smtp_path pending;   /* RCPT waiting for its verdict */
	int bdat_started;
	int data_started;
	int discard;                /* a DISCARD verdict: accept, deliver nothing */
	char *prepend;              /* PREPEND header lines from verdicts */
	struct smtp_txn_rec *rec;   /* its decision record so far (smtp_record.c) */
	struct smtp_data_dec dec;
	struct smtp_bdat_conv bconv;
	struct smtp_msgbuf msg;
};

struct smtp_session {
	struct pt_conn *conn;
	struct pt_loop *loop;
	struct smtp_settings *set;
	const char *service;        /* log tag: "postern/submission/smtpd" (the
	                               settings' syslog_name), "sendmail" */
	char listener[32];          /* "submission"; "" for sendmail -bs */
	const char *client_addr;
	const char *client_name;    /* forward-confirmed name, or "unknown" */
	const char *reverse_name;   /* PTR name, or "unknown" */
	char *names;                /* storage behind the two names */
	struct smtp_name_lookup *lookup; /* before the banner */
	char *helo;                 /* NULL until HELO/EHLO */
	char *helo_pending;         /* HELO name awaiting its verdict */
	struct smtp_txn *txn;
	char *sasl_username;        /* NULL = not authenticated */
	const char *sasl_method;    /* "PLAIN" / "LOGIN" with sasl_username */
	struct pt_sasl *sasl;       /* an AUTH exchange in progress */
	char *reject_all;           /* connect-stage rejection: 503 to everything */
	char *delayed;              /* an error reply held for smtpd_error_sleep_time */
	struct pt_timer *idle_timer;
	struct pt_timer *sleep_timer;
	/* RCPT waiting for a directory's answer (map.h's pending rule). */
	struct pt_timer *lookup_timer;
	uint64_t lookup_since;
	uint64_t last_input;        /* per-request deadline: when this request began */
	uint64_t data_deadline;     /* DATA/BDAT: smtpd_timeout moved by smtpd_min_data_rate */
	uint64_t envelope_start;    /* greeting or end of the last message */
	unsigned rate_rem;          /* smtpd_min_data_rate credit below 1 ms */
	unsigned long long bdat_left, bdat_size;
	const char *bdat_error;     /* reply owed after skipping a refused chunk */
	unsigned errors;
	unsigned short ok[SMTP_VERB_COUNT], total[SMTP_VERB_COUNT];
	enum smtp_verb last_verb;
	unsigned char state;
	unsigned char esmtp, bdat_last, quit;
	unsigned char async;        /* an answer is owed (restrict, queue, auth, name
	                               lookup, error sleep): input waits for it */
	unsigned char gone;         /* the conn closed; conn is NULL */
	unsigned char auth_state;   /* enum pt_sasl_mech of the exchange in progress */
	unsigned char cmd_verb_pending;
	unsigned char tls_started;
	unsigned char tls_deadline; /* smtpd_starttls_timeout set on the conn */
	/* `sendmail -bs` (Postfix's smtpd -S): the local user on stdin/stdout;
	 * no restrictions, AUTH or TLS; messages go to this sink. */
	const struct pt_local_sink *local;
	struct pt_deferred reap;    /* the free, queued by on_close */
};

/* A reply line (error replies count toward the error limits). */
void smtp_reply(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Waiting on services. Every answer (restrict, auth, queue, the name
 * lookup) comes from the loop after the call that asked returned
 * (services.h), so our handlers never nest and a request needs no
 * "inside the call" state: the asker calls the service, then on success
 * sets async and pauses the conn. The session's lifetime: on_close may
 * run deep inside one of our handlers (a reply that hit the output limit),
 * so it never frees at once; it queues the free with pt_defer, or, while
 * an answer is owed (the service holds s and has no cancel), leaves it to
 * that answer. An answer callback therefore starts with
 * smtp_session_answered() and ends with smtp_session_continue(). */
/* async is over. 0: the conn closed meanwhile and s is freed: return. */
int smtp_session_answered(struct smtp_session *s);

/* Shared by smtp_session.c and smtp_message.c (the end of a message). */
void smtp_txn_reset(struct smtp_session *s);
void smtp_request_begin(struct smtp_session *s);
void smtp_close_with(struct smtp_session *s, const char *text);
void smtp_message_end(struct smtp_session *s);
void smtp_data_input(struct smtp_session *s);
void smtp_data_credit(struct smtp_session *s, size_t n);
/* After handling an answer: enforce the error limit, then (nothing else
 * owed) resume reading and run the commands pipelined behind. */
void smtp_session_continue(struct smtp_session *s);
/* Printable copy of client-supplied text for logs and headers. */
void smtp_printable(char *p);
/* "ESMTP" / "SMTP" for logs and policy requests. */
const char *smtp_proto_name(const struct smtp_session *s);
/* Postfix's "NOQUEUE: reject: RCPT from NAME[IP]: reply; from=<> to=<> ...
 * rule=RULE", and the refusal noted in the decision record. */
void smtp_log_reject(struct smtp_session *s, const char *stage, const char *text, const char *to,
                     const char *rule);

/* smtp_record.c: the decision record (postern/record.h). A refusal (to:
 * the recipient refused, NULL: the command; sender: the MAIL FROM address
 * of a refusal outside a transaction, or NULL). */
void smtp_rec_refusal(struct smtp_session *s, const char *stage, const char *reply, const char *rule,
                      const char *to, const char *sender);
/* MAIL began a transaction: its record starts (and its time). */
void smtp_rec_begin(struct smtp_session *s);
/* A restriction verdict: its trace, and the refusal when it refused. */
void smtp_rec_verdict(struct smtp_session *s, const struct pt_verdict *v, const char *stage, const char *to);
/* A recipient accepted, with the reply it got. */
void smtp_rec_rcpt_ok(struct smtp_session *s, const char *to, const char *reply);
/* The message as queued: its Message-ID and size. */
void smtp_rec_message(struct smtp_session *s, const char *data, size_t len);
/* How the transaction ended when not by a refusal (accepted, discarded). */
void smtp_rec_outcome(struct smtp_session *s, const char *outcome, const char *stage, const char *reply);
/* The transaction is over: report it (once) and free its record. */
void smtp_rec_txn_end(struct smtp_txn *t);

/* smtp_policy.c: the restrict service. */
typedef void smtp_verdict_fn(struct smtp_session *s, const struct pt_verdict *v);
/* Ask the restrict service (when loaded) about this stage; then() runs
 * with its verdict, or with NULL when there is no restrict module. While
 * the answer is pending the connection is paused. */
void smtp_policy(struct smtp_session *s, enum pt_stage stage, const char *rcpt, smtp_verdict_fn *then);
/* The verdict as a reply; 1 when it refused the command. */
int smtp_verdict_refuses(struct smtp_session *s, const struct pt_verdict *v, const char *stage,
                         const char *to);

/* The conn is no longer ours (relayed by the submission proxy, or closed
 * while it was being set up): log the session's summary and free it. */
void smtp_session_release(struct smtp_session *s);
/* XCLIENT: forget HELO and the transaction; name (NULL: keep) becomes the
 * client's name. */
void smtp_session_restart(struct smtp_session *s, const char *name);

/* smtp_xclient.c: Postfix's XCLIENT from smtpd_authorized_xclient_hosts,
 * and the front's side of a proxied submission login. */
const char *smtp_xclient_ehlo_line(const struct smtp_session *s);
void smtp_xclient_command(struct smtp_session *s, const struct smtp_cmd *c);
/* After a good AUTH whose passdb entry names another host: relay the
 * session there. 1 under way (async set); 0 could not start. */
int smtp_proxy_login(struct smtp_session *s, const char *user, const char *dest);

/* smtp_auth.c */
/* The "250-AUTH PLAIN LOGIN" line for EHLO ("" when AUTH is not offered
 * on this connection now). */
const char *smtp_auth_ehlo_line(const struct smtp_session *s, char *buf, size_t len);
void smtp_auth_command(struct smtp_session *s, const struct smtp_cmd *c);
/* SS_AUTH: one response line (rc < 0: it was too long). */
void smtp_auth_response(struct smtp_session *s, const char *line, size_t len, int rc);
/* Forget an exchange in progress (session end). */
void smtp_auth_abort(struct smtp_session *s);
/* Longest response line an exchange accepts. */
size_t smtp_auth_line_limit(const struct smtp_session *s);

#endif
