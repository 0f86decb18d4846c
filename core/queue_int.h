/* Private to the worker's queue files (queue.c: one message's delivery
 * attempt and its durable outcome; queue_mgr.c: scheduling, recovery,
 * pickup). */
#ifndef POSTERN_QUEUE_INT_H
#define POSTERN_QUEUE_INT_H

#include "queue.h"

typedef void pt_qmsg_done_fn(void *arg, const struct pt_status *st, const char *queue_id);

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
	int running;       /* pt_queue_start done, not stopped */
	int have_lock;     /* this worker owns the queue directory's files */
	size_t inflight;   /* messages in an attempt or being stored */
};
extern struct qstate pt_qs;

/* Attempt delivery of q's pending recipients now (q is taken over).
 * where: the subdirectory holding its file, or NULL when it has none
 * yet. done (may be NULL) runs once the outcome is durable: code 0, or
 * 451 4.3.0 when nothing could be stored. */
void pt_qmsg_attempt(struct pt_qfile *q, const char *where, pt_qmsg_done_fn *done, void *arg);

/* 1 while a message with this id is in an attempt in this process. */
int pt_qmsg_busy(const char *id);

/* Queue manager index (queue_mgr.c): a file was written / removed. */
void pt_qmgr_note(const char *id, const char *where, time_t next_retry);
void pt_qmgr_forget(const char *id);
/* Changes with every `postern queue flush`. */
unsigned pt_qmgr_flush_generation(void);
/* An attempt finished (in-flight accounting, lock hand-over). */
void pt_qmgr_attempt_done(const char *id);

/* Agent link (queue.c). */
void pt_qagent_attach(int fd);
void pt_qagent_detach(void);

#endif
