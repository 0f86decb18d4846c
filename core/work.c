/* The work pool: threads run slow jobs (fsync, password hashing) off the
 * loop; each finished job's done() runs back on its loop's thread, woken
 * through the loop's eventfd. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "event_int.h"

struct job {
	pt_work_fn *work;
	pt_work_fn *done;
	void *arg;
	struct pt_work_loop *wl;
	struct job *next;
};

/* Finished jobs of one loop, waiting for that loop to run done(). */
struct pt_work_loop {
	struct pt_loop *loop;
	pthread_mutex_t mu;
	pthread_cond_t idle;
	struct job *head, *tail;
	size_t inflight;       /* submitted, work() not finished yet */
};

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static struct job *queue_head, *queue_tail;
static int pool_wanted = 4;
static int pool_running;
static pid_t pool_pid;

static void *
pool_thread(void *unused)
{
	(void)unused;
	for (;;) {
		struct job *j;
		struct pt_work_loop *wl;

		pthread_mutex_lock(&pool_mu);
		while (!queue_head)
			pthread_cond_wait(&pool_cv, &pool_mu);
		j = queue_head;
		queue_head = j->next;
		if (!queue_head)
			queue_tail = NULL;
		pthread_mutex_unlock(&pool_mu);

		if (j->work)
			j->work(j->arg);
		j->next = NULL;
		wl = j->wl;
		/* Wake while holding wl->mu: pt_work_loop_free() cannot free the
		 * loop until inflight drops, which happens under the same lock. */
		pthread_mutex_lock(&wl->mu);
		if (wl->tail)
			wl->tail->next = j;
		else
			wl->head = j;
		wl->tail = j;
		pt_loop_wake(wl->loop);
		wl->inflight--;
		pthread_cond_broadcast(&wl->idle);
		pthread_mutex_unlock(&wl->mu);
	}
	return NULL;
}

/* Start threads up to pool_wanted; called with pool_mu held. Pool threads
 * block every signal so signals reach the loop thread (signalfd). */
static int
pool_grow_locked(void)
{
	sigset_t all, old;

	if (pool_pid != getpid()) {
		/* A forked child inherits no threads: start afresh. */
		pool_running = 0;
		pool_pid = getpid();
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (pool_running < pool_wanted) {
		pthread_t t;

		if (pthread_create(&t, NULL, pool_thread, NULL) != 0)
			break;
		pthread_detach(t);
		pool_running++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return pool_running > 0 ? 0 : -1;
}

void
pt_work_set_threads(int n)
{
	pthread_mutex_lock(&pool_mu);
	pool_wanted = n < 1 ? 1 : n;
	if (pool_running > 0 && pool_pid == getpid())
		pool_grow_locked();
	pthread_mutex_unlock(&pool_mu);
}

static struct pt_work_loop *
work_loop_get(struct pt_loop *loop)
{
	struct pt_work_loop *wl = pt_loop_work_state(loop);

	if (wl)
		return wl;
	wl = calloc(1, sizeof *wl);
	if (!wl)
		return NULL;
	wl->loop = loop;
	pthread_mutex_init(&wl->mu, NULL);
	pthread_cond_init(&wl->idle, NULL);
	pt_loop_set_work_state(loop, wl);
	return wl;
}

int
pt_work_submit(struct pt_loop *loop, pt_work_fn *work, pt_work_fn *done, void *arg)
{
	struct pt_work_loop *wl = work_loop_get(loop);
	struct job *j;

	if (!wl)
		return -1;
	j = calloc(1, sizeof *j);
	if (!j)
		return -1;
	j->work = work;
	j->done = done;
	j->arg = arg;
	j->wl = wl;
	pthread_mutex_lock(&pool_mu);
	if ((pool_running == 0 || pool_pid != getpid()) && pool_grow_locked() < 0) {
		pthread_mutex_unlock(&pool_mu);
		free(j);
		errno = EAGAIN;
		return -1;
	}
	pthread_mutex_lock(&wl->mu);
	wl->inflight++;
	pthread_mutex_unlock(&wl->mu);
	if (queue_tail)
		queue_tail->next = j;
	else
		queue_head = j;
	queue_tail = j;
	pthread_cond_signal(&pool_cv);
	pthread_mutex_unlock(&pool_mu);
	return 0;
}

void
pt_work_loop_drain(struct pt_loop *loop, struct pt_work_loop *wl)
{
	struct job *j;

	(void)loop;
	pthread_mutex_lock(&wl->mu);
	j = wl->head;
	wl->head = wl->tail = NULL;
	pthread_mutex_unlock(&wl->mu);
	while (j) {
		struct job *next = j->next;

		if (j->done)
			j->done(j->arg);
		free(j);
		j = next;
	}
}

/* Wait for this loop's jobs still running, then run their done() so the
 * objects they own are released. */
void
pt_work_loop_free(struct pt_loop *loop, struct pt_work_loop *wl)
{
	pthread_mutex_lock(&wl->mu);
	while (wl->inflight > 0)
		pthread_cond_wait(&wl->idle, &wl->mu);
	pthread_mutex_unlock(&wl->mu);
	pt_work_loop_drain(loop, wl);
	pthread_mutex_destroy(&wl->mu);
	pthread_cond_destroy(&wl->idle);
	free(wl);
}
