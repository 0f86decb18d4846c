/* Named interfaces modules offer each other through the core's registry.
 * A module registers its ops table in init(); users look it up by name
 * (NULL when the providing module is not loaded) and never include another
 * module's headers.
 *
 * The callback rule, kept by every provider of an asynchronous call here
 * (restrict evaluate, auth verify, pt_queue_submit, the local-smtp sink,
 * and pt_dns_query in dns.h):
 *   A call that takes a completion callback either returns 0, and then
 *   the callback runs exactly once, later, from the loop -- never before
 *   the call returned, even when the answer was known at once (the
 *   provider hands it to pt_defer, event.h) -- or returns -1, and the
 *   callback never runs.
 * So a caller needs no "inside the call" state: it asks, and on 0 notes
 * that an answer is owed. There is no cancel: arg must stay valid until
 * the answer came (a session that closed meanwhile is freed by it).
 * Blocking calls (userdb lookup, mailstore deliver, alias expand) take no
 * completion callback; alias expand's emit is an iterator run inside it. */
#ifndef POSTERN_SERVICES_H
#define POSTERN_SERVICES_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

struct pt_loop;

int pt_service_register(const char *name, const void *ops);
const void *pt_service_get(const char *name);

/* Reply/status of one delivery or check: code 0 = success, 4xx temporary,
 * 5xx permanent; dsn "5.2.2"; text for logs and bounces. */
struct pt_status {
	int code;
	char dsn[16];                 /* also RFC 5530 words ("ALREADYEXISTS") */
	char text[256];
};
void pt_status_set(struct pt_status *st, int code, const char *dsn, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ---- users: who exists and where their mail lives ("userdb") ---- */
#define PT_SVC_USERDB "userdb"
struct pt_user {
	char name[64];
	uid_t uid;
	gid_t gid;
	char home[256];
	/* The host that keeps this user's mailbox (Dovecot's `host` field,
	 * from a passwd-file line's `host=` / `userdb_host=` extra field or a
	 * directory); "" = this machine. "ADDR", "NAME", "ADDR:PORT" or
	 * "[V6]:PORT". The passdb's proxy flag sends logins there; inbound
	 * SMTP goes there by transport_maps (README "Scaling out"). */
	char host[256];
};
struct pt_userdb_ops {
	/* 1 found (out filled), 0 no such user, -1 temporary failure. */
	int (*lookup)(const char *user, struct pt_user *out);
};
/* The core provides a default userdb (system passwd, getpwnam_r) until a
 * module registers another; this call looks up through whichever is live. */
int pt_user_lookup(const char *user, struct pt_user *out);

/* ---- mailstore: local delivery (the mbox module) ---- */
#define PT_SVC_MAILSTORE "mailstore"
struct pt_delivery {
	const char *queue_id;
	const char *sender;           /* envelope sender, "" for <> */
	const char *recipient;        /* final address: Delivered-To */
	const char *orig_recipient;   /* as the client gave it: X-Original-To */
	const struct pt_user *user;   /* mailbox owner */
	const char *data;             /* message, LF line ends, starting with
	                                 the Received header the core added */
	size_t len;
	time_t arrival;
};
struct pt_mailstore_ops {
	/* Blocking (run on a pool thread or in the delivery process, already
	 * running as the recipient when root). Appends n deliveries that all
	 * go to the same user's INBOX under one lock and one fsync (group
	 * commit); st[i] tells each one's fate. Never leaves a partial message. */
	void (*deliver)(const struct pt_delivery *d, size_t n, struct pt_status *st);
};

/* ---- alias expansion (the alias module) ---- */
#define PT_SVC_ALIAS "alias"
enum pt_alias_target { PT_ALIAS_ADDRESS, PT_ALIAS_FILE, PT_ALIAS_COMMAND, PT_ALIAS_INCLUDE };
struct pt_alias_ops {
	/* Expand a local part (already lower-cased, without domain).
	 * emit is called per final target; returns 1 expanded, 0 not an alias,
	 * -1 temporary error, -2 loop (st filled). */
	int (*expand)(const char *local, void (*emit)(void *arg, const char *target,
	              enum pt_alias_target kind, const char *owner), void *arg,
	              struct pt_status *st);
	int (*exists)(const char *local);
	/* Deliver to a /file or |command target found in an alias file whose
	 * owner allowed it (owner = that file's owner name). Blocking; runs in
	 * the delivery agent, which has already switched to default_privs. */
	void (*deliver_special)(const struct pt_delivery *d, enum pt_alias_target kind,
	                        const char *target, struct pt_status *st);
};

/* ---- routing (the transport module; the core has a local-only default) ---- */
#define PT_SVC_ROUTE "route"
/* Where a recipient goes: a transport by name (postern/transport.h) and
 * its argument, as a transport(5) result "transport:nexthop" says. */
struct pt_route {
	char transport[32];           /* "local", "smtp", "error", a module's own */
	char nexthop[300];            /* "[host]:port", error text, ...; "" = the
	                                 transport's default */
};
struct pt_route_ops {
	/* 0, or -1 when a table could not be consulted (out is then a
	 * "retry" route saying so). */
	int (*route)(const char *address, struct pt_route *out);
};
/* Local-part and domain tests every module shares (mydestination etc.). */
int pt_domain_is_local(const char *domain);      /* mydestination */
int pt_domain_is_relay(const char *domain);      /* relay_domains (subdomains too) */

/* ---- restriction evaluation (the restrict module) ---- */
#define PT_SVC_RESTRICT "restrict"
enum pt_stage { PT_STAGE_CONNECT, PT_STAGE_HELO, PT_STAGE_MAIL, PT_STAGE_RCPT,
	PT_STAGE_DATA, PT_STAGE_END_OF_DATA, PT_STAGE_VRFY, PT_STAGE_ETRN };
/* Postfix policy-delegation attributes. */
struct pt_policy_request {
	enum pt_stage stage;
	const char *protocol_name;    /* SMTP / ESMTP */
	const char *client_address, *client_name, *reverse_client_name;
	const char *helo_name, *sender, *recipient, *queue_id;
	const char *sasl_username, *sasl_method, *encryption_protocol, *encryption_cipher;
	unsigned recipient_count;
	unsigned long long size;
	const struct sockaddr *client_sa;
	int pipelined_early;          /* client talked before the banner / reply */
	/* The listener the client came to ("submission"): its chains and
	 * per-listener values apply (pt_conf_listener). NULL/"" = the file's. */
	const char *listener;
	/* Log tag for lines about this request ("postern/submission/smtpd",
	 * see log.h); NULL = "smtpd". */
	const char *log_service;
};
enum pt_verdict_kind { PT_VERDICT_ACCEPT, PT_VERDICT_REJECT, PT_VERDICT_DEFER,
	PT_VERDICT_DISCARD, PT_VERDICT_HOLD };
struct pt_verdict {
	enum pt_verdict_kind kind;
	char reply[512];              /* "554 5.7.1 <x>: Relay access denied" */
	char rule[160];               /* "reject_unauth_destination", "policy.lua:12" */
	char prepend[512];            /* header lines to add (PREPEND), LF-separated */
	/* Decision trace of this evaluation, one "LIST: ITEM -> RESULT" line
	 * each (LF-separated); valid only during done(). Copy it into
	 * pt_envelope.trace for accepted mail (`postern why`). May be NULL. */
	const char *trace;
};
struct pt_restrict_ops {
	/* Evaluate the chains due at this stage (with smtpd_delay_reject, the
	 * client/helo/sender chains are evaluated at RCPT). The callback rule
	 * above: 0 and done runs later from the loop, or -1 (out of memory). */
	int (*evaluate)(struct pt_loop *loop, const struct pt_policy_request *req,
	                void (*done)(void *arg, const struct pt_verdict *v), void *arg);
};

/* ---- authentication (passdb) ---- */
#define PT_SVC_AUTH "auth"
struct pt_auth_ops {
	/* Check a password off the loop; done(arg, 1 ok / 0 bad / -1 temporary)
	 * by the callback rule above (0, or -1 and no done). */
	int (*verify)(struct pt_loop *loop, const char *user, const char *password,
	              const char *service, const char *client_address,
	              void (*done)(void *arg, int result), void *arg);
};

/* Inside the done() of a verify that answered 1: "HOST[:PORT]" when the
 * passdb sends this user's logins to another host (Dovecot's proxy=y
 * host=), else NULL. The submission proxy reads it (session.h). */
const char *pt_auth_proxy_dest(void);

/* ---- the queue (core) ---- */
struct pt_envelope_rcpt {
	const char *address;          /* as resolved (after alias expansion) */
	const char *orig;             /* as the client gave it */
	const char *notify;           /* DSN NOTIFY= or NULL */
};
struct pt_envelope {
	const char *sender;           /* "" for <> */
	size_t nrcpt;
	const struct pt_envelope_rcpt *rcpt;
	const char *client_name, *client_address, *helo, *protocol;
	const char *sasl_username;
	int body_8bit, smtputf8;
	const char *ret;              /* DSN RET= */
	const char *envid;
	const char *trace;            /* decision trace for `postern why` */
};
/* Take a complete message (LF line ends, trace headers included) into the
 * queue. done runs on the loop when the message is durable (queued or
 * delivered with fsync): code 0 and queue_id, or a temporary/permanent
 * failure to report to the client. The callback rule above: 0, or -1 and
 * no done. The data is copied before return. */
int pt_queue_submit(struct pt_loop *loop, const char *queue_id, const struct pt_envelope *env,
                    const char *data, size_t len,
                    void (*done)(void *arg, const struct pt_status *st, const char *queue_id),
                    void *arg);
/* New unique queue id (uppercase hex, like Postfix's short ids). */
void pt_queue_new_id(char out[24]);

#endif
