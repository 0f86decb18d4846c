/* Making an attempt's outcome durable: file writes and file fsyncs on a
 * pool thread, then one directory fsync per directory shared by every
 * message that asked before it started (group commit). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "postern/log.h"
#include "queue_msg.h"

/* Pool thread: the bounce, the forwarded copies, then the original's new
 * state; directory fsyncs are batched afterwards across messages. */
static void
store_work(void *arg)
{
	struct qmsg *m = arg;
	if (m->keep < 0) {
		m->store_failed = 1;
		return;
	}
	/* The bounce first: once the original forgets its failed recipients,
	 * the notice about them must already be safe. */
	if (m->have_bounce) {
		if (pt_qfile_store(pt_qs.qdir, PT_QDIR_ACTIVE, &m->bounce) != 0) {
			pt_error("%s: cannot store the bounce %s: %s", m->q.id, m->bounce.id, strerror(errno));
			m->store_failed = 1;
			return;
		}
		m->dirs |= QDIR_ACTIVE;
		if (pt_qdir_sync(pt_qs.qdir, PT_QDIR_ACTIVE) != 0) {
			m->store_failed = 1;
			return;
		}
	}
	/* Forwarded copies too, before the alias counts as delivered. */
	for (size_t j = 0; j < m->nfwd; j++) {
		if (pt_qfile_store(pt_qs.qdir, PT_QDIR_ACTIVE, &m->fwd[j].q) != 0) {
			pt_error("%s: cannot store the forwarded copy %s: %s", m->q.id, m->fwd[j].q.id, strerror(errno));
			m->store_failed = 1;
			return;
		}
		m->dirs |= QDIR_ACTIVE;
	}
	if (m->nfwd && pt_qdir_sync(pt_qs.qdir, PT_QDIR_ACTIVE) != 0) {
		m->store_failed = 1;
		return;
	}
	if (m->keep) {
		if (pt_qfile_store(pt_qs.qdir, PT_QDIR_DEFERRED, &m->q) != 0) {
			pt_error("%s: queue file write error: %s", m->q.id, strerror(errno));
			m->store_failed = 1;
			return;
		}
		m->dirs |= QDIR_DEFERRED;
		if (m->where && strcmp(m->where, PT_QDIR_ACTIVE) == 0) {
			char p[2048];
			snprintf(p, sizeof p, "%s/%s/%s", pt_qs.qdir, PT_QDIR_ACTIVE, m->q.id);
			/* Durable in deferred/ first (the dirsync below), a
			 * leftover in active/ is resolved at start. */
			if (pt_qdir_sync(pt_qs.qdir, PT_QDIR_DEFERRED) == 0)
				unlink(p);
			m->dirs |= QDIR_ACTIVE;
		}
	} else if (m->where) {
		char p[2048];
		snprintf(p, sizeof p, "%s/%s/%s", pt_qs.qdir, m->where, m->q.id);
		if (unlink(p) != 0 && errno != ENOENT)
			pt_error("%s: cannot remove queue file: %s", m->q.id, strerror(errno));
		m->dirs |= strcmp(m->where, PT_QDIR_ACTIVE) == 0 ? QDIR_ACTIVE : QDIR_DEFERRED;
	}
}

/* ---------- group commit of directory fsyncs ---------- */

static struct qmsg *sync_waiting, *sync_running;
static unsigned sync_running_dirs;
static int sync_failed;

static void sync_start(void);

static void
sync_work(void *arg)
{
	(void)arg;
	sync_failed = 0;
	if ((sync_running_dirs & QDIR_ACTIVE) && pt_qdir_sync(pt_qs.qdir, PT_QDIR_ACTIVE) != 0)
		sync_failed = 1;
	if ((sync_running_dirs & QDIR_DEFERRED) && pt_qdir_sync(pt_qs.qdir, PT_QDIR_DEFERRED) != 0)
		sync_failed = 1;
}

static void
sync_done(void *arg)
{
	(void)arg;
	struct qmsg *list = sync_running;
	sync_running = NULL;
	while (list) {
		struct qmsg *nx = list->next_sync;
		if (sync_failed)
			list->store_failed = 1;
		list->stored(list);
		list = nx;
	}
	if (sync_waiting)
		sync_start();
}

static void
sync_start(void)
{
	sync_running = sync_waiting;
	sync_waiting = NULL;
	sync_running_dirs = 0;
	for (struct qmsg *m = sync_running; m; m = m->next_sync)
		sync_running_dirs |= m->dirs;
	if (pt_work_submit(pt_qs.loop, sync_work, sync_done, NULL) != 0) {
		sync_work(NULL);
		sync_done(NULL);
	}
}

static void
store_done(void *arg)
{
	struct qmsg *m = arg;
	if (m->store_failed || !m->dirs) {
		m->stored(m);
		return;
	}
	m->next_sync = sync_waiting;
	sync_waiting = m;
	if (!sync_running)
		sync_start();
}

void
qstore_commit(struct qmsg *m, qmsg_step_fn *stored)
{
	m->stored = stored;
	if (!m->keep && !m->have_bounce && !m->nfwd && !m->where) {
		/* Fast path: everything delivered with fsync, nothing to store. */
		stored(m);
		return;
	}
	if (pt_work_submit(pt_qs.loop, store_work, store_done, m) != 0) {
		store_work(m);
		store_done(m);
	}
}

/* ---------- accepted before delivery ---------- */

static void
accept_work(void *arg)
{
	struct qmsg *m = arg;
	if (pt_qfile_store(pt_qs.qdir, PT_QDIR_ACTIVE, &m->q) != 0 || pt_qdir_sync(pt_qs.qdir, PT_QDIR_ACTIVE) != 0) {
		pt_error("%s: queue file write error: %s", m->q.id, strerror(errno));
		m->store_failed = 1;
	}
}

static void
accept_done(void *arg)
{
	struct qmsg *m = arg;
	if (!m->store_failed)
		m->where = PT_QDIR_ACTIVE;
	m->stored(m);
}

void
qstore_accept(struct qmsg *m, qmsg_step_fn *stored)
{
	m->stored = stored;
	if (pt_work_submit(pt_qs.loop, accept_work, accept_done, m) != 0) {
		accept_work(m);
		accept_done(m);
	}
}
