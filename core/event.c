/* The event loop: level-triggered epoll over a per-fd watch table,
 * one-shot timers kept in a binary min-heap (O(log n) add/cancel/fire),
 * and a FIFO of deferred calls (O(1), caller-owned nodes). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "event_int.h"
#include "postern/strbuf.h"

/* A watched fd. The generation goes into epoll's data word so an event
 * queued for an fd that was unwatched (and maybe reused by a new socket)
 * in the same batch is recognised as stale and skipped. */
struct watch {
	pt_io_cb *cb;
	void *arg;
	unsigned events;
	uint32_t gen;
	int active;
};

struct pt_timer {
	uint64_t when;
	uint64_t seq;         /* ties fire in the order they were added */
	size_t idx;           /* position in the heap */
	pt_timer_cb *cb;
	void *arg;
};

struct pt_loop {
	int epfd;
	int wakefd;
	volatile sig_atomic_t stop;
	int running;
	uint64_t now;
	struct watch *watches;
	size_t nwatches;
	struct pt_timer **heap;
	size_t nheap, heapcap;
	uint64_t next_seq;
	struct pt_deferred deferred;  /* circular list head of queued calls */
	struct pt_work_loop *work;
};

uint64_t
pt_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
loop_on_wake(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	uint64_t v;

	(void)events;
	(void)arg;
	while (read(fd, &v, sizeof v) < 0 && errno == EINTR)
		;
	if (loop->work)
		pt_work_loop_drain(loop, loop->work);
}

struct pt_loop *
pt_loop_new(void)
{
	struct pt_loop *loop = calloc(1, sizeof *loop);

	if (!loop)
		return NULL;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	loop->now = pt_mono_ms();
	loop->deferred.next = loop->deferred.prev = &loop->deferred;
	if (loop->epfd < 0 || loop->wakefd < 0 ||
	    pt_loop_watch(loop, loop->wakefd, PT_EV_READ, loop_on_wake, NULL) < 0) {
		if (loop->epfd >= 0)
			close(loop->epfd);
		if (loop->wakefd >= 0)
			close(loop->wakefd);
		free(loop->watches);
		free(loop);
		return NULL;
	}
	return loop;
}

/* ---- deferred calls ---- */

static void
defer_unlink(struct pt_deferred *d)
{
	d->prev->next = d->next;
	d->next->prev = d->prev;
	d->next = d->prev = NULL;
}

void
pt_defer(struct pt_loop *loop, struct pt_deferred *d, pt_timer_cb *cb, void *arg)
{
	if (d->next)
		defer_unlink(d);
	d->cb = cb;
	d->arg = arg;
	d->prev = loop->deferred.prev;
	d->next = &loop->deferred;
	loop->deferred.prev->next = d;
	loop->deferred.prev = d;
}

void
pt_defer_cancel(struct pt_loop *loop, struct pt_deferred *d)
{
	(void)loop;
	if (d && d->next)
		defer_unlink(d);
}

int
pt_defer_queued(const struct pt_deferred *d)
{
	return d->next != NULL;
}

/* Run the calls queued so far; those they queue wait for the next round.
 * The batch is moved to a local head first, so a call may cancel another
 * of the same batch (unlinking works on whichever list holds it). */
static void
run_deferred(struct pt_loop *loop)
{
	struct pt_deferred batch;

	if (loop->deferred.next == &loop->deferred)
		return;
	batch.next = loop->deferred.next;
	batch.prev = loop->deferred.prev;
	batch.next->prev = &batch;
	batch.prev->next = &batch;
	loop->deferred.next = loop->deferred.prev = &loop->deferred;
	while (batch.next != &batch) {
		struct pt_deferred *d = batch.next;

		defer_unlink(d);
		d->cb(loop, d->arg);
	}
}

void
pt_loop_free(struct pt_loop *loop)
{
	if (!loop)
		return;
	/* Queued calls still run (they may be the free of a session that
	 * closed as the loop stopped); what they queue runs too. */
	while (loop->deferred.next != &loop->deferred)
		run_deferred(loop);
	if (loop->work)
		pt_work_loop_free(loop, loop->work);
	loop->work = NULL;
	for (size_t i = 0; i < loop->nheap; i++)
		free(loop->heap[i]);
	free(loop->heap);
	free(loop->watches);
	close(loop->wakefd);
	close(loop->epfd);
	free(loop);
}

uint64_t
pt_loop_now(struct pt_loop *loop)
{
	return loop->now;
}

void
pt_loop_stop(struct pt_loop *loop)
{
	loop->stop = 1;
	pt_loop_wake(loop);
}

void
pt_loop_wake(struct pt_loop *loop)
{
	uint64_t one = 1;
	int saved = errno;

	/* EAGAIN means the counter is already non-zero: the loop wakes anyway. */
	if (write(loop->wakefd, &one, sizeof one) < 0) {
	}
	errno = saved;
}

struct pt_work_loop *
pt_loop_work_state(struct pt_loop *loop)
{
	return loop->work;
}

void
pt_loop_set_work_state(struct pt_loop *loop, struct pt_work_loop *w)
{
	loop->work = w;
}

size_t
pt_loop_timer_count(const struct pt_loop *loop)
{
	return loop->nheap;
}

static uint32_t
to_epoll(unsigned events)
{
	uint32_t e = 0;

	if (events & PT_EV_READ)
		e |= EPOLLIN;
	if (events & PT_EV_WRITE)
		e |= EPOLLOUT;
	return e;
}

int
pt_loop_watch(struct pt_loop *loop, int fd, unsigned events, pt_io_cb *cb, void *arg)
{
	struct epoll_event ev;
	struct watch *w;

	if (fd < 0 || !cb) {
		errno = EINVAL;
		return -1;
	}
	if ((size_t)fd >= loop->nwatches) {
		size_t n = loop->nwatches ? loop->nwatches : 64;
		struct watch *nw;

		while (n <= (size_t)fd)
			n *= 2;
		nw = realloc(loop->watches, n * sizeof *nw);
		if (!nw)
			return -1;
		memset(nw + loop->nwatches, 0, (n - loop->nwatches) * sizeof *nw);
		loop->watches = nw;
		loop->nwatches = n;
	}
	w = &loop->watches[fd];
	if (w->active && w->events == events) {
		w->cb = cb;
		w->arg = arg;
		return 0;
	}
	if (!w->active)
		w->gen++;
	memset(&ev, 0, sizeof ev);
	ev.events = to_epoll(events);
	ev.data.u64 = (uint64_t)w->gen << 32 | (uint32_t)fd;
	if (w->active) {
		if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 &&
		    (errno != ENOENT || epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0))
			return -1;
	} else if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 &&
	           (errno != EEXIST || epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)) {
		return -1;
	}
	w->active = 1;
	w->events = events;
	w->cb = cb;
	w->arg = arg;
	return 0;
}

int
pt_loop_unwatch(struct pt_loop *loop, int fd)
{
	struct watch *w;

	if (fd < 0 || (size_t)fd >= loop->nwatches || !loop->watches[fd].active)
		return -1;
	w = &loop->watches[fd];
	w->active = 0;
	w->gen++;
	w->cb = NULL;
	w->arg = NULL;
	/* The fd may already be closed (the kernel then dropped it itself). */
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	return 0;
}

/* Heap order: earlier deadline first, then insertion order. */
static int
timer_before(const struct pt_timer *a, const struct pt_timer *b)
{
	return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void
heap_set(struct pt_loop *loop, size_t i, struct pt_timer *t)
{
	loop->heap[i] = t;
	t->idx = i;
}

static void
heap_up(struct pt_loop *loop, size_t i)
{
	struct pt_timer *t = loop->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!timer_before(t, loop->heap[parent]))
			break;
		heap_set(loop, i, loop->heap[parent]);
		i = parent;
	}
	heap_set(loop, i, t);
}

static void
heap_down(struct pt_loop *loop, size_t i)
{
	struct pt_timer *t = loop->heap[i];

	for (;;) {
		size_t l = 2 * i + 1, m = i;
		struct pt_timer *best = t;

		if (l < loop->nheap && timer_before(loop->heap[l], best)) {
			m = l;
			best = loop->heap[l];
		}
		if (l + 1 < loop->nheap && timer_before(loop->heap[l + 1], best))
			m = l + 1;
		if (m == i)
			break;
		heap_set(loop, i, loop->heap[m]);
		i = m;
	}
	heap_set(loop, i, t);
}

static void
heap_remove(struct pt_loop *loop, size_t i)
{
	struct pt_timer *last = loop->heap[--loop->nheap];

	if (i == loop->nheap)
		return;
	heap_set(loop, i, last);
	if (i > 0 && timer_before(last, loop->heap[(i - 1) / 2]))
		heap_up(loop, i);
	else
		heap_down(loop, i);
}

struct pt_timer *
pt_timer_add(struct pt_loop *loop, uint64_t ms, pt_timer_cb *cb, void *arg)
{
	struct pt_timer *t;

	if (loop->nheap == loop->heapcap) {
		struct pt_timer **nh = pt_array_grow(loop->heap, &loop->heapcap, sizeof *nh, 16);

		if (!nh)
			return NULL;
		loop->heap = nh;
	}
	t = malloc(sizeof *t);
	if (!t)
		return NULL;
	/* Outside pt_loop_run the cached clock may be old: a timer armed
	 * between runs must still wait its full time. */
	if (!loop->running)
		loop->now = pt_mono_ms();
	t->when = ms > UINT64_MAX - loop->now ? UINT64_MAX : loop->now + ms;
	t->seq = loop->next_seq++;
	t->cb = cb;
	t->arg = arg;
	loop->heap[loop->nheap++] = t;
	heap_up(loop, loop->nheap - 1);
	return t;
}

void
pt_timer_cancel(struct pt_loop *loop, struct pt_timer *t)
{
	if (!t)
		return;
	if (t->idx < loop->nheap && loop->heap[t->idx] == t)
		heap_remove(loop, t->idx);
	free(t);
}

/* Fire due timers. Timers added while firing wait for the next round,
 * so a callback that re-arms itself with 0 ms cannot starve I/O. */
static void
run_timers(struct pt_loop *loop)
{
	uint64_t limit = loop->next_seq;

	while (loop->nheap > 0 && !loop->stop) {
		struct pt_timer *t = loop->heap[0];
		pt_timer_cb *cb;
		void *arg;

		if (t->when > loop->now || t->seq >= limit)
			break;
		heap_remove(loop, 0);
		cb = t->cb;
		arg = t->arg;
		free(t);
		cb(loop, arg);
	}
}

static int
next_timeout(struct pt_loop *loop)
{
	struct pt_timer *t;

	if (loop->deferred.next != &loop->deferred)
		return 0;
	if (loop->nheap == 0)
		return -1;
	t = loop->heap[0];
	if (t->when <= loop->now)
		return 0;
	if (t->when - loop->now > INT_MAX)
		return INT_MAX;
	return (int)(t->when - loop->now);
}

static void
dispatch(struct pt_loop *loop, const struct epoll_event *ev)
{
	int fd = (int)(uint32_t)ev->data.u64;
	uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
	struct watch *w;
	unsigned events = 0;

	if ((size_t)fd >= loop->nwatches)
		return;
	w = &loop->watches[fd];
	if (!w->active || w->gen != gen)
		return;
	if (ev->events & EPOLLIN)
		events |= PT_EV_READ;
	if (ev->events & EPOLLOUT)
		events |= PT_EV_WRITE;
	if (ev->events & (EPOLLERR | EPOLLHUP))
		events |= PT_EV_ERROR;
	w->cb(loop, fd, events, w->arg);
}

/* Whether this thread is inside pt_loop_run: a slow lookup backend
 * (postern/map.h) never makes such a thread wait. */
static _Thread_local int loop_depth;

int
pt_loop_on_thread(void)
{
	return loop_depth > 0;
}

static int loop_run(struct pt_loop *loop);

int
pt_loop_run(struct pt_loop *loop)
{
	loop_depth++;
	int rc = loop_run(loop);
	loop_depth--;
	return rc;
}

static int
loop_run(struct pt_loop *loop)
{
	struct epoll_event evs[64];

	loop->stop = 0;
	loop->running = 1;
	while (!loop->stop) {
		int n;

		loop->now = pt_mono_ms();
		run_timers(loop);
		if (!loop->stop)
			run_deferred(loop);
		if (loop->stop)
			break;
		n = epoll_wait(loop->epfd, evs, 64, next_timeout(loop));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			loop->running = 0;
			return -1;
		}
		loop->now = pt_mono_ms();
		for (int i = 0; i < n && !loop->stop; i++)
			dispatch(loop, &evs[i]);
		/* Answers this batch owes go out before the next wait. */
		if (!loop->stop)
			run_deferred(loop);
	}
	loop->running = 0;
	return 0;
}
