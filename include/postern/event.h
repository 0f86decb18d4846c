/* The event loop (epoll) with timers, and a worker thread pool for slow
 * work (fsync, password hashing) whose completions run back on the loop. */
#ifndef POSTERN_EVENT_H
#define POSTERN_EVENT_H

#include <stdint.h>

struct pt_loop;
struct pt_timer;

#define PT_EV_READ  1u
#define PT_EV_WRITE 2u
#define PT_EV_ERROR 4u  /* EPOLLERR / EPOLLHUP */

typedef void pt_io_cb(struct pt_loop *loop, int fd, unsigned events, void *arg);
typedef void pt_timer_cb(struct pt_loop *loop, void *arg);

struct pt_loop *pt_loop_new(void);
void pt_loop_free(struct pt_loop *loop);
/* Run until pt_loop_stop(); returns 0, or -1 on an epoll failure. */
int pt_loop_run(struct pt_loop *loop);
void pt_loop_stop(struct pt_loop *loop);
/* Milliseconds of a monotonic clock, cached per loop iteration. */
uint64_t pt_loop_now(struct pt_loop *loop);
/* The same clock read now (outside a loop, other threads). */
uint64_t pt_mono_ms(void);

/* Watch fd for events (PT_EV_READ | PT_EV_WRITE); re-adding modifies. */
int pt_loop_watch(struct pt_loop *loop, int fd, unsigned events, pt_io_cb *cb, void *arg);
int pt_loop_unwatch(struct pt_loop *loop, int fd);

/* One-shot timer after ms milliseconds. The handle is valid until it fires
 * or is cancelled; cancelling a fired timer is a bug (the callback owns it). */
struct pt_timer *pt_timer_add(struct pt_loop *loop, uint64_t ms, pt_timer_cb *cb, void *arg);
void pt_timer_cancel(struct pt_loop *loop, struct pt_timer *t);

/* Deferred calls: how an answer that is ready now still comes "later".
 * pt_defer queues cb(loop, arg) to run from the loop once the current
 * callback has returned, in the order queued, before the loop waits for
 * I/O again (calls queued while deferred calls run wait one round, so a
 * call that re-queues itself cannot starve I/O). The caller owns d,
 * zeroed before first use (no allocation, so pt_defer cannot fail), and
 * keeps it valid until the call ran or pt_defer_cancel took it back;
 * queuing a queued d moves it to the end.
 * pt_loop_free runs the calls still queued (a deferred free is never lost).
 * A service whose answer is ready inside the call defers it through
 * here (the callback rule in services.h). */
struct pt_deferred {
	struct pt_deferred *next, *prev;  /* the loop's; NULL when not queued */
	pt_timer_cb *cb;
	void *arg;
};
void pt_defer(struct pt_loop *loop, struct pt_deferred *d, pt_timer_cb *cb, void *arg);
/* Take back a queued call (no-op when it is not queued: ran or never was). */
void pt_defer_cancel(struct pt_loop *loop, struct pt_deferred *d);
/* 1 while d is queued. */
int pt_defer_queued(const struct pt_deferred *d);

/* Run work(arg) on a pool thread, then done(arg) on the loop thread. The
 * pool is created on first use with pt_work_threads (default 4). */
typedef void pt_work_fn(void *arg);
int pt_work_submit(struct pt_loop *loop, pt_work_fn *work, pt_work_fn *done, void *arg);
void pt_work_set_threads(int n);

#endif
