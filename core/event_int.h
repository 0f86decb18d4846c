/* Core-internal hooks between the event loop and the work pool: the loop
 * owns one eventfd that wakes it from other threads or signal handlers. */
#ifndef POSTERN_EVENT_INT_H
#define POSTERN_EVENT_INT_H

#include "postern/event.h"

/* Wake the loop from any thread (async-signal-safe: one write(2)). */
void pt_loop_wake(struct pt_loop *loop);

/* Per-loop state of the work pool, created by work.c on first submit.
 * The loop calls pt_work_loop_drain() when woken, and pt_work_loop_free()
 * from pt_loop_free(). */
struct pt_work_loop;
struct pt_work_loop *pt_loop_work_state(struct pt_loop *loop);
void pt_loop_set_work_state(struct pt_loop *loop, struct pt_work_loop *w);
void pt_work_loop_drain(struct pt_loop *loop, struct pt_work_loop *w);
void pt_work_loop_free(struct pt_loop *loop, struct pt_work_loop *w);

/* 1 when the calling thread is running an event loop (pt_loop_run). */
int pt_loop_on_thread(void);

/* Number of timers pending (tests, leak checks). */
size_t pt_loop_timer_count(const struct pt_loop *loop);

#endif
