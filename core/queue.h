/* Core-internal queue: the on-disk queue file format, the delivery agent
 * protocol, and the hooks the master and worker call to run the queue. */
#ifndef POSTERN_QUEUE_H
#define POSTERN_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "postern/config.h"
#include "postern/event.h"
#include "postern/services.h"

/* ---- lifecycle (master / worker) ---- */

/* Master, before it forks the worker: fork the local delivery agent (it
 * keeps the master's privileges, inits the modules of role PT_ROLE_DELIVERY).
 * *worker_fd is the worker's end of the agent socket. -1 on failure. */
pid_t pt_local_spawn(const struct pt_config *conf, int *worker_fd);
/* Worker, after module init: create/check queue_directory, remove
 * incoming/ leftovers, resume active/ and deferred/ files, start the
 * queue manager and the maildrop pickup. local_fd < 0: no agent, as no
 * loaded module delivers locally (local mail is deferred and retried). 0 ok, -1 (logged). */
int pt_queue_start(struct pt_loop *loop, const struct pt_config *conf, int local_fd);
void pt_queue_stop(void);
/* Ask the queue manager to retry every deferred message now. */
void pt_queue_flush_now(void);

/* ---- queue directory layout ---- */
#define PT_QDIR_INCOMING "incoming"
#define PT_QDIR_ACTIVE   "active"
#define PT_QDIR_DEFERRED "deferred"
#define PT_QDIR_CORRUPT  "corrupt"
#define PT_QDIR_MAILDROP "maildrop"
/* setgid + sticky, -wx for others: see pt_qdir_setup (core/queue_file.c). */
#define PT_QDIR_MAILDROP_MODE 03733
/* sendmail's pending files: the owner and the maildrop's (server's) group. */
#define PT_MAILDROP_FILE_MODE 0640
#define PT_QDIR_PUBLIC   "public"
#define PT_QDIR_PRIVATE  "private"
#define PT_QDIR_PID      "pid"
#define PT_QCTL_SOCKET   "public/qmgr"

/* ---- queue file (core/queue_file.c) ---- */
/* RESOLVED: pending, but alias expansion already resolved it to a local
 * user; a retry goes straight to that mailbox (no second expansion, so
 * no duplicate for the targets already delivered). */
enum pt_qrcpt_state { PT_QRCPT_PENDING = 0, PT_QRCPT_DONE = 1, PT_QRCPT_FAILED = 2,
	PT_QRCPT_RESOLVED = 3 };

struct pt_qrcpt {
	char *address;                /* as given (before alias expansion) */
	char *orig;                   /* original recipient, for orig_to / DSN */
	char *notify;                 /* DSN NOTIFY= or NULL */
	int state;                    /* enum pt_qrcpt_state */
	char dsn[8];                  /* last status, e.g. "4.2.1" */
	char *reason;                 /* last deferral / failure text or NULL */
};

struct pt_qfile {
	char id[24];
	char *sender;                 /* "" for <> */
	time_t arrival;
	time_t next_retry;            /* 0 = as soon as possible */
	unsigned attempts;
	uid_t submit_uid;             /* local submission: invoking user; else -1 (only that) */
	char *client_name, *client_address, *helo, *protocol, *sasl_username;
	char *envid, *ret;
	size_t nrcpt;
	struct pt_qrcpt *rcpt;
	char *data;                   /* message, LF line ends */
	size_t len;
};

/* Serialise to a malloc'd buffer (*out, *outlen). 0 or -1 (ENOMEM). */
int pt_qfile_encode(const struct pt_qfile *q, char **out, size_t *outlen);
/* Parse a complete file image. Damaged or truncated input gives -1 with a
 * reason in err and q left empty (nothing to free). */
int pt_qfile_decode(const char *buf, size_t len, struct pt_qfile *q, char *err, size_t errlen);
void pt_qfile_free(struct pt_qfile *q);
/* Deep copy; 0 or -1. */
int pt_qfile_dup(const struct pt_qfile *src, struct pt_qfile *dst);
/* Add a recipient (strings copied). 0 or -1. */
int pt_qfile_add_rcpt(struct pt_qfile *q, const char *address, const char *orig, const char *notify);
size_t pt_qfile_pending(const struct pt_qfile *q);

/* Durable store: write the image to qdir/incoming/ID, fsync, rename to
 * qdir/SUBDIR/ID. The caller fsyncs SUBDIR afterwards (pt_qdir_sync) so
 * several writes can share one directory fsync. 0 or -1 (errno kept,
 * nothing left behind). */
int pt_qfile_store(const char *qdir, const char *subdir, const struct pt_qfile *q);
int pt_qdir_sync(const char *qdir, const char *subdir);
/* Read qdir/SUBDIR/ID. 0 ok, -1 I/O error (errno), -2 damaged (err says
 * why; the caller quarantines it with pt_qfile_quarantine). */
int pt_qfile_load(const char *qdir, const char *subdir, const char *id,
                  struct pt_qfile *q, char *err, size_t errlen);
/* Move a damaged file to qdir/corrupt/ (kept for the admin). */
int pt_qfile_quarantine(const char *qdir, const char *subdir, const char *id);
/* Remove qdir/SUBDIR/ID and fsync the directory. */
int pt_qfile_remove(const char *qdir, const char *subdir, const char *id);
/* A queue id is 6..20 upper-case hex digits (also guards path names). */
int pt_qid_valid(const char *id);

/* Create the layout with safe modes (owner uid/gid when >= 0). 0 or -1
 * with a reason in err. */
int pt_qdir_setup(const char *qdir, uid_t owner, gid_t group, char *err, size_t errlen);

/* ---- retry schedule (core/queue_file.c) ---- */
/* Delay before the next attempt after `attempts` failed ones: doubles from
 * minimal up to maximal (seconds). */
time_t pt_queue_backoff(unsigned attempts, time_t minimal, time_t maximal);
/* 1 when a message that arrived at `arrival` is past its lifetime. */
int pt_queue_expired(time_t arrival, time_t now, time_t lifetime);

/* ---- bounces (core/dsn.c) ---- */
struct pt_dsn_rcpt {
	const char *address;          /* final recipient */
	const char *orig;             /* original recipient or NULL */
	const char *dsn;              /* "5.1.1" */
	const char *text;             /* "unknown user: \"x\"" */
	int delayed;                  /* 1: delay warning (Action: delayed) */
};
struct pt_dsn_info {
	const char *myhostname;       /* Reporting-MTA and "at host ..." */
	const char *mydomain_origin;  /* MAILER-DAEMON@this */
	const char *queue_id;         /* of the original message */
	const char *bounce_id;        /* of the notification */
	const char *sender;           /* original envelope sender (To: of the bounce) */
	time_t arrival;               /* of the original */
	time_t now;
	const char *ret;              /* "HDRS": headers only */
	const char *envid;
};
/* Build an RFC 3464 multipart/report non-delivery notice (LF line ends)
 * quoting the original message. Returns malloc'd text (*len) or NULL. */
char *pt_dsn_build(const struct pt_dsn_info *info, const struct pt_dsn_rcpt *r, size_t n,
                   const char *orig, size_t orig_len, size_t *len);

/* ---- delivery agent protocol (core/queue_proto.c) ---- */
enum pt_agent_kind { PT_AGENT_MAILBOX = 1, PT_AGENT_FILE = 2, PT_AGENT_COMMAND = 3 };

struct pt_agent_item {
	int kind;                     /* enum pt_agent_kind */
	char *recipient;              /* final address (Delivered-To) */
	char *orig;                   /* X-Original-To */
	struct pt_user user;          /* mailbox owner (kind MAILBOX) */
	char *target;                 /* /file or |command (FILE, COMMAND) */
	char *owner;                  /* alias file owner (FILE, COMMAND) */
};
struct pt_agent_req {
	uint32_t seq;
	char *queue_id;
	char *sender;
	int64_t arrival;
	uint64_t len;                 /* message bytes in the attached memfd */
	size_t n;
	struct pt_agent_item *item;
	/* decode: the message when it came inline, its len bytes right after
	 * the request in the same datagram (small messages: no memfd to make,
	 * map and close); points into the decoded buffer. Else NULL. */
	const char *data;
};
struct pt_agent_resp {
	uint32_t seq;
	size_t n;
	struct pt_status *st;
};

/* Largest encoded request or response: one SOCK_SEQPACKET datagram. */
#define PT_AGENT_MSG_MAX (128 * 1024)
/* Messages up to this size travel inline after the request. */
#define PT_AGENT_INLINE_MAX (64 * 1024)

/* Encode into buf (cap bytes); returns the length, or -1 when it does not
 * fit. Decode: 0, or -1 for a malformed message (never trusts lengths). */
ssize_t pt_agent_req_encode(const struct pt_agent_req *r, char *buf, size_t cap);
int pt_agent_req_decode(const char *buf, size_t len, struct pt_agent_req *r);
void pt_agent_req_free(struct pt_agent_req *r);
ssize_t pt_agent_resp_encode(const struct pt_agent_resp *r, char *buf, size_t cap);
int pt_agent_resp_decode(const char *buf, size_t len, struct pt_agent_resp *r);
void pt_agent_resp_free(struct pt_agent_resp *r);
/* Send/receive one datagram with an optional fd (SCM_RIGHTS). recv: bytes,
 * 0 on EOF, -1 error; *fd = -1 when none came. */
int pt_agent_send(int sock, const char *buf, size_t len, int fd);
ssize_t pt_agent_recv(int sock, char *buf, size_t cap, int *fd);

/* The agent's main loop over sock (core/local.c); used by pt_local_spawn
 * and by tests in-process. Returns when the peer closes. */
int pt_local_serve(const struct pt_config *conf, int sock, int as_root);

/* ---- helpers shared by queue files ---- */
/* myorigin value ("" when unset). */
const char *pt_queue_myorigin(const struct pt_config *conf);
/* A delay in seconds as Postfix logs it: "0", "0.01", "1.2", "14". */
void pt_queue_fmt_delay(double d, char *out, size_t len);
/* Append "@origin" to unqualified addresses; result malloc'd. */
char *pt_queue_qualify(const char *addr, const char *origin);

#endif
