/* Unit tests of the event loop (timers, watches changed during dispatch,
 * stop from a signal handler) and of the work pool. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "event_int.h"
#include "postern/event.h"

/* ---------- timers ---------- */

struct order {
	int fired[64];
	int n;
	int stop_after;
	struct pt_timer *victim;
};

struct tagged {
	struct order *o;
	int tag;
};

static void
record_timer(struct pt_loop *loop, void *arg)
{
	struct tagged *t = arg;

	t->o->fired[t->o->n++] = t->tag;
	if (t->o->n == t->o->stop_after)
		pt_loop_stop(loop);
}

static void
stop_timer(struct pt_loop *loop, void *arg)
{
	(void)arg;
	pt_loop_stop(loop);
}

static void
test_timers_fire_in_order(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct order o = {.stop_after = 5};
	struct tagged t[5] = {{&o, 30}, {&o, 10}, {&o, 20}, {&o, 11}, {&o, 0}};

	(void)state;
	assert_non_null(loop);
	/* Equal deadlines fire in the order they were added (10 before 11). */
	pt_timer_add(loop, 30, record_timer, &t[0]);
	pt_timer_add(loop, 10, record_timer, &t[1]);
	pt_timer_add(loop, 20, record_timer, &t[2]);
	pt_timer_add(loop, 10, record_timer, &t[3]);
	pt_timer_add(loop, 0, record_timer, &t[4]);
	assert_int_equal(pt_loop_run(loop), 0);
	assert_int_equal(o.n, 5);
	assert_int_equal(o.fired[0], 0);
	assert_int_equal(o.fired[1], 10);
	assert_int_equal(o.fired[2], 11);
	assert_int_equal(o.fired[3], 20);
	assert_int_equal(o.fired[4], 30);
	assert_int_equal(pt_loop_timer_count(loop), 0);
	pt_loop_free(loop);
}

static void
test_timer_waits_its_time(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	uint64_t start;

	(void)state;
	start = pt_loop_now(loop);
	pt_timer_add(loop, 40, stop_timer, NULL);
	pt_loop_run(loop);
	assert_true(pt_loop_now(loop) - start >= 40);
	assert_true(pt_loop_now(loop) - start < 1000);
	pt_loop_free(loop);
}

static void
test_timer_cancel(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct order o = {.stop_after = 1};
	struct tagged a = {&o, 1}, b = {&o, 2};
	struct pt_timer *ta;

	(void)state;
	ta = pt_timer_add(loop, 5, record_timer, &a);
	pt_timer_add(loop, 20, record_timer, &b);
	pt_timer_cancel(loop, ta);
	pt_loop_run(loop);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.fired[0], 2);
	pt_loop_free(loop);
}

static void
cancel_victim(struct pt_loop *loop, void *arg)
{
	struct tagged *t = arg;

	t->o->fired[t->o->n++] = t->tag;
	pt_timer_cancel(loop, t->o->victim);
	t->o->victim = NULL;
}

static void
test_timer_cancel_inside_callback(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct order o = {.stop_after = 2};
	struct tagged a = {&o, 1}, b = {&o, 2}, c = {&o, 3};

	(void)state;
	/* a and b are due in the same round: a cancels b before it fires. */
	pt_timer_add(loop, 5, cancel_victim, &a);
	o.victim = pt_timer_add(loop, 5, record_timer, &b);
	pt_timer_add(loop, 30, record_timer, &c);
	pt_loop_run(loop);
	assert_int_equal(o.n, 2);
	assert_int_equal(o.fired[0], 1);
	assert_int_equal(o.fired[1], 3);
	pt_loop_free(loop);
}

struct many {
	uint64_t last_when;
	int fired, bad_order, expected;
	uint64_t *when;
};

struct many_item {
	struct many *m;
	uint64_t when;
};

static void
many_timer(struct pt_loop *loop, void *arg)
{
	struct many_item *it = arg;

	if (it->when < it->m->last_when)
		it->m->bad_order++;
	it->m->last_when = it->when;
	if (++it->m->fired == it->m->expected)
		pt_loop_stop(loop);
}

static void
test_many_timers(void **state)
{
	enum { N = 20000 };
	struct pt_loop *loop = pt_loop_new();
	struct many m = {0};
	struct many_item *items = calloc(N, sizeof *items);
	struct pt_timer **handles = calloc(N, sizeof *handles);
	uint64_t base = pt_loop_now(loop);

	(void)state;
	srand(7);
	for (int i = 0; i < N; i++) {
		uint64_t ms = (uint64_t)(rand() % 60);

		items[i].m = &m;
		handles[i] = pt_timer_add(loop, ms, many_timer, &items[i]);
		/* The deadline is taken from the clock at the time of adding. */
		items[i].when = pt_loop_now(loop) + ms;
		assert_true(items[i].when >= base + ms);
		assert_non_null(handles[i]);
	}
	/* Cancel every third one: the heap must stay consistent. */
	for (int i = 0; i < N; i += 3) {
		pt_timer_cancel(loop, handles[i]);
		handles[i] = NULL;
	}
	m.expected = N - (N + 2) / 3;
	assert_int_equal(pt_loop_timer_count(loop), (size_t)m.expected);
	pt_loop_run(loop);
	assert_int_equal(m.fired, m.expected);
	assert_int_equal(m.bad_order, 0);
	assert_int_equal(pt_loop_timer_count(loop), 0);
	free(items);
	free(handles);
	pt_loop_free(loop);
}

/* A timer that re-arms itself with 0 ms must not starve I/O. */
struct starve {
	int rearms;
	int io_seen;
	int fds[2];
};

static void
rearm_timer(struct pt_loop *loop, void *arg)
{
	struct starve *s = arg;

	s->rearms++;
	if (s->io_seen || s->rearms > 100000) {
		pt_loop_stop(loop);
		return;
	}
	pt_timer_add(loop, 0, rearm_timer, s);
}

static void
starve_io(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	struct starve *s = arg;
	char b[8];

	(void)events;
	assert_true(read(fd, b, sizeof b) > 0);
	s->io_seen = 1;
	pt_loop_unwatch(loop, fd);
}

static void
test_zero_timer_does_not_starve_io(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct starve s = {0};

	(void)state;
	assert_int_equal(pipe(s.fds), 0);
	assert_int_equal(write(s.fds[1], "x", 1), 1);
	pt_loop_watch(loop, s.fds[0], PT_EV_READ, starve_io, &s);
	pt_timer_add(loop, 0, rearm_timer, &s);
	pt_loop_run(loop);
	assert_int_equal(s.io_seen, 1);
	assert_true(s.rearms < 10);
	close(s.fds[0]);
	close(s.fds[1]);
	pt_loop_free(loop);
}

/* ---------- watches changed during dispatch ---------- */

struct pair {
	int rfd, wfd;
	int calls;
	struct pair *other;
	int *total;
	int replaced_fd;
};

static void
late_cb(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	int *calls = arg;

	(void)loop;
	(void)fd;
	(void)events;
	(*calls)++;
}

static int late_calls;
static int late_pipe[2] = {-1, -1};

/* The first of two ready pipes to run closes the other one, frees its
 * object, and opens a new pipe that likely reuses the closed fd number:
 * the stale queued event must reach neither. */
static void
pair_cb(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	struct pair *p = arg;
	char b[8];

	(void)events;
	p->calls++;
	(*p->total)++;
	assert_true(read(fd, b, sizeof b) > 0);
	if (p->other) {
		struct pair *o = p->other;

		pt_loop_unwatch(loop, o->rfd);
		close(o->rfd);
		close(o->wfd);
		o->other = NULL;
		free(o);
		p->other = NULL;
		assert_int_equal(pipe(late_pipe), 0);
		pt_loop_watch(loop, late_pipe[0], PT_EV_READ, late_cb, &late_calls);
	}
	pt_loop_unwatch(loop, fd);
	pt_timer_add(loop, 20, stop_timer, NULL);
}

static void
test_unwatch_and_free_during_dispatch(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct pair *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
	int fa[2], fb[2], total = 0;

	(void)state;
	assert_int_equal(pipe(fa), 0);
	assert_int_equal(pipe(fb), 0);
	*a = (struct pair){fa[0], fa[1], 0, b, &total, -1};
	*b = (struct pair){fb[0], fb[1], 0, a, &total, -1};
	assert_int_equal(write(fa[1], "a", 1), 1);
	assert_int_equal(write(fb[1], "b", 1), 1);
	pt_loop_watch(loop, fa[0], PT_EV_READ, pair_cb, a);
	pt_loop_watch(loop, fb[0], PT_EV_READ, pair_cb, b);
	late_calls = 0;
	pt_loop_run(loop);
	assert_int_equal(total, 1);
	assert_int_equal(late_calls, 0);
	/* Whichever survived is still intact; the new pipe works normally. */
	assert_int_equal(write(late_pipe[1], "z", 1), 1);
	pt_timer_add(loop, 20, stop_timer, NULL);
	pt_loop_run(loop);
	assert_true(late_calls >= 1);
	pt_loop_unwatch(loop, late_pipe[0]);
	if (a->calls) {
		close(fa[0]);
		close(fa[1]);
		free(a);
	} else {
		close(fb[0]);
		close(fb[1]);
		free(b);
	}
	close(late_pipe[0]);
	close(late_pipe[1]);
	pt_loop_free(loop);
}

static void
write_ready(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	int *n = arg;

	(void)fd;
	if (events & PT_EV_WRITE)
		(*n)++;
	/* Switch to read-only interest by re-watching (modify). */
	pt_loop_watch(loop, fd, PT_EV_READ, write_ready, arg);
	pt_timer_add(loop, 20, stop_timer, NULL);
}

static void
test_rewatch_modifies_events(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	int fds[2], n = 0;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(pt_loop_watch(loop, fds[1], PT_EV_WRITE, write_ready, &n), 0);
	pt_loop_run(loop);
	/* Write interest was dropped after the first call: no busy loop. */
	assert_int_equal(n, 1);
	assert_int_equal(pt_loop_unwatch(loop, fds[1]), 0);
	assert_int_equal(pt_loop_unwatch(loop, fds[1]), -1);
	close(fds[0]);
	close(fds[1]);
	pt_loop_free(loop);
}

static void
now_cb(struct pt_loop *loop, void *arg)
{
	uint64_t *diff = arg, before = pt_loop_now(loop);
	struct timespec ts = {0, 20 * 1000000};

	nanosleep(&ts, NULL);
	*diff = pt_loop_now(loop) - before;
	pt_loop_stop(loop);
}

static void
test_now_is_cached_per_iteration(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	uint64_t diff = 99;

	(void)state;
	pt_timer_add(loop, 1, now_cb, &diff);
	pt_loop_run(loop);
	assert_int_equal(diff, 0);
	pt_loop_free(loop);
}

static struct pt_loop *signal_loop;

static void
on_alarm(int sig)
{
	(void)sig;
	pt_loop_stop(signal_loop);
}

static void
test_stop_from_signal_handler(void **state)
{
	struct sigaction sa, old;
	struct itimerval it = {{0, 0}, {0, 30000}};

	(void)state;
	signal_loop = pt_loop_new();
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, &old);
	setitimer(ITIMER_REAL, &it, NULL);
	/* No timers, no fds: only the signal can end this run. */
	assert_int_equal(pt_loop_run(signal_loop), 0);
	sigaction(SIGALRM, &old, NULL);
	pt_loop_free(signal_loop);
}

/* ---------- work pool ---------- */

struct job_state {
	pthread_t loop_thread;
	int submitted, done, done_off_loop, worked_on_loop;
	int worked[2000];
	struct pt_loop *loop;
};

struct job {
	struct job_state *s;
	int i;
};

static void
job_work(void *arg)
{
	struct job *j = arg;

	if (pthread_equal(pthread_self(), j->s->loop_thread))
		__atomic_add_fetch(&j->s->worked_on_loop, 1, __ATOMIC_SEQ_CST);
	j->s->worked[j->i] = 1;
}

static void
job_done(void *arg)
{
	struct job *j = arg;
	struct job_state *s = j->s;

	if (!pthread_equal(pthread_self(), s->loop_thread))
		s->done_off_loop++;
	assert_int_equal(s->worked[j->i], 1);
	free(j);
	if (++s->done == s->submitted)
		pt_loop_stop(s->loop);
}

static void
test_work_pool_completions_on_loop(void **state)
{
	static struct job_state s;

	(void)state;
	memset(&s, 0, sizeof s);
	pt_work_set_threads(3);
	s.loop = pt_loop_new();
	s.loop_thread = pthread_self();
	for (int i = 0; i < 2000; i++) {
		struct job *j = malloc(sizeof *j);

		j->s = &s;
		j->i = i;
		assert_int_equal(pt_work_submit(s.loop, job_work, job_done, j), 0);
		s.submitted++;
	}
	pt_timer_add(s.loop, 10000, stop_timer, NULL);  /* safety net */
	pt_loop_run(s.loop);
	assert_int_equal(s.done, 2000);
	assert_int_equal(s.done_off_loop, 0);
	assert_int_equal(s.worked_on_loop, 0);
	pt_loop_free(s.loop);
}

static void
slow_work(void *arg)
{
	struct timespec ts = {0, 20 * 1000000};

	(void)arg;
	nanosleep(&ts, NULL);
}

static void
count_done(void *arg)
{
	(*(int *)arg)++;
}

static void
test_loop_free_waits_for_jobs(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	int done = 0;

	(void)state;
	for (int i = 0; i < 6; i++)
		assert_int_equal(pt_work_submit(loop, slow_work, count_done, &done), 0);
	/* Freeing the loop waits for running jobs and runs their done(). */
	pt_loop_free(loop);
	assert_int_equal(done, 6);
}

/* ---------- deferred calls ---------- */

struct dstate {
	struct pt_deferred d[4];
	int fired[4];
	int n;
	int timer_fired;
};

static struct dstate *DS;

static void
dfire(struct pt_loop *loop, void *arg)
{
	int tag = (int)(intptr_t)arg;

	if (DS->n < 4)
		DS->fired[DS->n] = tag;
	DS->n++;
	/* 0 queues itself again until the timer fired: it must not starve it. */
	if (tag == 0 && !DS->timer_fired)
		pt_defer(loop, &DS->d[0], dfire, (void *)(intptr_t)0);
	if (tag == 1)
		pt_defer_cancel(loop, &DS->d[2]); /* same batch: never runs */
}

static void
dstop(struct pt_loop *loop, void *arg)
{
	(void)arg;
	DS->timer_fired = 1;
	pt_loop_stop(loop);
}

static void
test_defer_runs_later_in_order(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct dstate ds;

	(void)state;
	memset(&ds, 0, sizeof ds);
	DS = &ds;
	pt_defer(loop, &ds.d[0], dfire, (void *)(intptr_t)0);
	pt_defer(loop, &ds.d[1], dfire, (void *)(intptr_t)1);
	pt_defer(loop, &ds.d[2], dfire, (void *)(intptr_t)2);
	pt_defer(loop, &ds.d[3], dfire, (void *)(intptr_t)3);
	/* Never inside the call that queued them. */
	assert_int_equal(ds.n, 0);
	assert_true(pt_defer_queued(&ds.d[3]));
	pt_defer_cancel(loop, &ds.d[3]);
	assert_false(pt_defer_queued(&ds.d[3]));
	pt_defer_cancel(loop, &ds.d[3]);        /* twice: harmless */
	pt_timer_add(loop, 20, dstop, NULL);
	pt_loop_run(loop);
	/* In order; 2 cancelled by 1 in the same batch, 3 before; 0 kept
	 * re-queuing itself and the timer still fired. */
	assert_true(ds.timer_fired);
	assert_int_equal(ds.fired[0], 0);
	assert_int_equal(ds.fired[1], 1);
	assert_int_equal(ds.fired[2], 0);
	assert_true(pt_defer_queued(&ds.d[0]));
	int before = ds.n;
	/* What is still queued runs when the loop is freed. */
	pt_loop_free(loop);
	assert_int_equal(ds.n, before + 1);
}

static void
dstop_when_fired(struct pt_loop *loop, void *arg)
{
	dfire(loop, arg);
	pt_loop_stop(loop);
}

static void
test_defer_before_waiting_for_io(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct dstate ds;

	(void)state;
	memset(&ds, 0, sizeof ds);
	DS = &ds;
	/* Nothing else to do for 5 s: the deferred call must not wait. */
	struct pt_timer *t = pt_timer_add(loop, 5000, dstop, NULL);
	uint64_t start = pt_loop_now(loop);
	pt_defer(loop, &ds.d[3], dstop_when_fired, (void *)(intptr_t)3);
	pt_loop_run(loop);
	assert_int_equal(ds.n, 1);
	assert_false(ds.timer_fired);
	assert_true(pt_loop_now(loop) - start < 2500);
	pt_timer_cancel(loop, t);
	pt_loop_free(loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timers_fire_in_order),
		cmocka_unit_test(test_timer_waits_its_time),
		cmocka_unit_test(test_timer_cancel),
		cmocka_unit_test(test_timer_cancel_inside_callback),
		cmocka_unit_test(test_many_timers),
		cmocka_unit_test(test_zero_timer_does_not_starve_io),
		cmocka_unit_test(test_unwatch_and_free_during_dispatch),
		cmocka_unit_test(test_rewatch_modifies_events),
		cmocka_unit_test(test_now_is_cached_per_iteration),
		cmocka_unit_test(test_stop_from_signal_handler),
		cmocka_unit_test(test_work_pool_completions_on_loop),
		cmocka_unit_test(test_loop_free_waits_for_jobs),
		cmocka_unit_test(test_defer_runs_later_in_order),
		cmocka_unit_test(test_defer_before_waiting_for_io),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
