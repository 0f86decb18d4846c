/* One message in an attempt, shared by the attempt's stages: queue.c
 * drives it through resolve (queue_resolve.c), delivery (queue_transport.c:
 * one deliver call per transport, the local one -- queue_agent.c -- among
 * them), outcome (queue_outcome.c) and storage (queue_store.c).
 * A stage that finishes later calls back through the function it was
 * handed, never by name. */
#ifndef POSTERN_QUEUE_MSG_H
#define POSTERN_QUEUE_MSG_H

#include <sys/time.h>

#include "postern/transport.h"
#include "queue_int.h"

/* Where one recipient's outcome comes from. */
enum rcpt_how {
	RCPT_BY_TARGETS,   /* its targets (mailboxes, files, commands, forwards) */
	RCPT_DECIDED,      /* st, decided here (plus its targets, if any) */
	RCPT_TRANSPORT,    /* st, set and logged by a transport (queue_transport.c) */
};
struct rcpt_res {
	enum rcpt_how how;
	struct pt_status st;
};

enum target_kind { TARGET_MAILBOX, TARGET_FILE, TARGET_COMMAND,
	TARGET_FORWARD /* a remote alias member: leaves in a new message */ };
enum target_state {
	TARGET_PENDING,          /* for the local transport */
	TARGET_DONE,             /* st holds its outcome, decided here: logged at outcome */
	TARGET_DELIVERED,        /* st set and logged by the local transport */
	TARGET_DUPLICATE,        /* same mailbox/file/command as an earlier one: dropped */
	TARGET_FORWARD_PENDING,  /* the forwarded copy is made at outcome time */
};

/* One final destination of a recipient (after alias expansion). The local
 * transport (queue_agent.c) gets it as its pt_transport_rcpt.detail. */
struct target {
	size_t rcpt;                  /* index in q.rcpt */
	const char *envelope;         /* q.rcpt[rcpt].address, until the outcome (Delivered-To) */
	enum target_kind kind;
	enum target_state state;
	char *final;                  /* final address (to=) */
	struct pt_user user;          /* MAILBOX */
	char *target;                 /* /file, |command, forward address */
	char *owner;                  /* alias file owner, forward sender */
	struct pt_status st;
};

/* A forwarded copy being built: one per (queue recipient, sender). */
struct forward {
	struct pt_qfile q;
	size_t rcpt;
};

struct qmsg;
typedef void qmsg_step_fn(struct qmsg *m);

struct qmsg {
	struct pt_qfile q;
	const char *where;            /* file's subdirectory, or NULL */
	int client_waits;
	pt_qmsg_done_fn *done;
	void *done_arg;
	struct timeval t0;            /* attempt start */
	/* resolve re-run while a lookup module's answers are pending
	 * (postern/map.h): when the first try began, and its timer */
	uint64_t resolve_since;
	struct pt_timer *resolve_timer;
	double t_before;              /* seconds from arrival to attempt start */
	struct rcpt_res *rr;          /* per recipient */
	struct target *t;
	size_t nt, cap;
	size_t outstanding;           /* deliveries without an answer (+1 while dispatching) */
	struct xgroup *xg;            /* recipients and local targets per transport */
	size_t nxg;
	struct pt_transport_msg xmsg; /* what the transports were given */
	/* outcome */
	struct pt_qfile bounce;
	int have_bounce;
	struct forward *fwd;
	size_t nfwd;
	int refused;                  /* refused at DATA: st in refusal */
	struct pt_status refusal;
	int keep;                     /* 1 recipients remain (file rewritten); -1 undecided (no memory) */
	/* storage */
	int store_failed;
	unsigned dirs;                /* subdirectories to fsync (QDIR_*) */
	qmsg_step_fn *stored;         /* queue_store.c calls it when done */
	struct qmsg *next_sync;
	struct qmsg *next_inflight;
};

/* queue_resolve.c: route and expand every pending recipient into m->rr
 * and m->t (duplicates and loops marked); each recipient routed to a
 * transport by name, and each target left PENDING for the "local" one,
 * is added to its transport's group (qtransport_add*). */
void qresolve_all(struct qmsg *m);

/* queue_transport.c: recipient i goes to transport ops (nexthop copied);
 * RCPT_TRANSPORT from now. 0 or -1 (no memory). */
struct xgroup;
int qtransport_add(struct qmsg *m, size_t i, const struct pt_transport_ops *ops, const char *nexthop);
/* Target k goes to transport ops with itself as the detail; its outcome
 * comes back into m->t[k] (TARGET_DELIVERED). 0 or -1 (no memory). */
int qtransport_add_target(struct qmsg *m, size_t k, const struct pt_transport_ops *ops);
/* 1 when a transport of the message says PT_TRANSPORT_SLOW. */
int qtransport_slow(const struct qmsg *m);
/* One deliver call per transport; each adds one to m->outstanding and
 * calls answered(m) when its outcomes are in m->rr and m->t. */
void qtransport_dispatch(struct qmsg *m, qmsg_step_fn *answered);
void qtransport_free(struct qmsg *m);

/* queue_outcome.c: every delivery has an outcome: log it, decide what
 * stays (m->q rewritten, m->keep), build the bounce and forwarded copies,
 * or the refusal. Synchronous. */
void qoutcome_settle(struct qmsg *m);

/* queue_store.c: make the decided outcome durable, then m->stored(m)
 * (store_failed set when it could not be). qstore_accept: the message as
 * it is into active/ first (then m->where is active/). */
enum { QDIR_ACTIVE = 1, QDIR_DEFERRED = 2 };
void qstore_commit(struct qmsg *m, qmsg_step_fn *stored);
void qstore_accept(struct qmsg *m, qmsg_step_fn *stored);

#endif
