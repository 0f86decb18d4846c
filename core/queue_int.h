/* Private to the worker's queue files. Layers, each calling only the ones
 * below it (no file calls back up except through a function pointer it
 * was handed):
 *   queue_submit.c   pt_queue_submit: a message an SMTP client waits on
 *   queue_mgr.c      scheduling: index, retries, pickup, flush, the lock
 *   queue.c          one message's attempt (pt_qmsg_attempt), driving
 *   queue_resolve.c, queue_transport.c, queue_outcome.c, queue_store.c
 *   queue_agent.c    the "local" transport, reached through the service
 *                    registry like any transport (never called by name)
 *   queue_util.c, queue_file.c, queue_proto.c, dsn.c  (leaves) */
#ifndef POSTERN_QUEUE_INT_H
#define POSTERN_QUEUE_INT_H

#include "queue.h"

/* The worker's queue settings and counters (queue_util.c; loaded by
 * pt_queue_start). */
struct qstate {
	struct pt_loop *loop;
	const struct pt_config *conf;
	char qdir[1024];
	char myhostname[256];
	char myorigin[256];
	char delimiter[8];
	time_t min_backoff, max_backoff, lifetime, bounce_lifetime, run_delay;
	int soft_bounce;
	int local_fd;
	int local_none;    /* no module runs in a delivery agent: none started */
	int running;       /* pt_queue_start done, not stopped */
	int have_lock;     /* this worker owns the queue directory's files */
	size_t inflight;   /* attempts started by the manager and not finished */
};
extern struct qstate pt_qs;

/* ---- one attempt (queue.c) and its one completion channel ---- */

/* What became of the message's file. */
enum pt_qfate {
	PT_QFATE_REMOVED,     /* nothing left to do: no file any more */
	PT_QFATE_DEFERRED,    /* recipients remain, in deferred/ until next_retry */
	PT_QFATE_UNCHANGED,   /* the outcome could not be stored: what is on
	                         disk (in `where`, if anything) is as before */
};
enum pt_qevent {
	/* Durable in active/ before a long delivery (a remote server): a
	 * waiting client may hear "queued" now. FINISHED follows. */
	PT_QEV_ACCEPTED,
	PT_QEV_FINISHED,      /* the last event of an attempt */
};
struct pt_qoutcome {
	enum pt_qevent event;
	const char *id;
	/* For a waiting client: 0 (queued or delivered), a refusal at DATA
	 * (552 5.2.2 when every mailbox is full), or 451 4.3.0 when nothing
	 * could be stored. */
	struct pt_status st;
	enum pt_qfate fate;           /* FINISHED only */
	const char *where;            /* UNCHANGED: subdirectory of the file, or NULL */
	time_t next_retry;            /* DEFERRED */
	/* Bounce and forwarded copies, durable in active/: the callee takes
	 * them over (entries are zeroed after being moved out). */
	struct pt_qfile *spawned;
	size_t nspawned;
};
/* Runs synchronously when the event happens (possibly before
 * pt_qmsg_attempt returns); anyone it tells further must be told later. */
typedef void pt_qmsg_done_fn(void *arg, struct pt_qoutcome *o);

/* Attempt delivery of q's pending recipients now (q is taken over).
 * where: the subdirectory holding its file, or NULL when it has none yet.
 * client_waits: an SMTP client is on the line for the answer (only then
 * may a failure be a refusal instead of a bounce). done runs for each
 * event; FINISHED exactly once. */
void pt_qmsg_attempt(struct pt_qfile *q, const char *where, int client_waits, pt_qmsg_done_fn *done,
                     void *arg);
/* 1 while a message with this id is in an attempt in this process. */
int pt_qmsg_busy(const char *id);

/* ---- the manager (queue_mgr.c) ---- */

typedef void pt_queue_done_fn(void *arg, const struct pt_status *st, const char *queue_id);
/* Attempt a message a client waits on (no file yet, q taken over); done
 * runs later on the loop, once, when the message is durable or refused.
 * -1 (no memory): q freed, done never runs. */
int pt_qmgr_submit(struct pt_qfile *q, pt_queue_done_fn *done, void *arg);

/* ---- the "local" transport: the agent link (queue_agent.c) ---- */
/* Register it under PT_SVC_TRANSPORT("local") (after the modules' init:
 * it replaces a module's, with a warning). */
void pt_qagent_provide(void);
void pt_qagent_attach(int fd);
void pt_qagent_detach(void);

#endif
