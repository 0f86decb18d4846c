/* The shared metrics table: made by the master before it forks, so every
 * process of the instance inherits one MAP_SHARED mapping and adds to it
 * with atomics, no IPC. Registration (rare: at init, or a label seen for
 * the first time) takes a robust process-shared mutex; an increment is a
 * relaxed atomic add on a handle each process keeps. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "metrics_int.h"

const double pt_metrics_bounds[PT_METRICS_BUCKETS] = {
	0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300,
};

#define CACHE_SIZE 4096  /* per-process handle cache, a power of two */

static struct {
	struct pt_metrics_header *h;
	struct pt_metric *slots;
	size_t size;
	/* slot index + 1 by hash of name and labels; 0 = empty. Racy by
	 * design (pool threads): a lost entry only costs a locked lookup. */
	_Atomic uint32_t cache[CACHE_SIZE];
} T;

/* Counts when there is no table (CLI verbs, tests) or it is full. */
static struct pt_metric dummy;

static size_t
table_size(void)
{
	size_t head = (sizeof(struct pt_metrics_header) + 4095) & ~(size_t)4095;
	return head + (size_t)PT_METRICS_SLOTS * sizeof(struct pt_metric);
}

static size_t
slots_offset(void)
{
	return (sizeof(struct pt_metrics_header) + 4095) & ~(size_t)4095;
}

const struct pt_metrics_header *
pt_metrics_table(void)
{
	return T.h;
}

int
pt_metrics_create(int qdirfd, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	char tmp[64];
	size_t size = table_size();
	/* A fresh name only this process uses, made exclusively (the queue
	 * directory belongs to mail_owner: never through its links), then
	 * renamed over the old table. */
	snprintf(tmp, sizeof tmp, PT_METRICS_FILE ".%ld.tmp", (long)getpid());
	unlinkat(qdirfd, tmp, 0);
	int fd = openat(qdirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return -1;
	}
	if (ftruncate(fd, (off_t)size) != 0 || (geteuid() == 0 && fchown(fd, uid, gid) != 0) ||
	    fchmod(fd, 0640) != 0) {
		snprintf(err, errlen, "cannot size or own %s: %s", tmp, strerror(errno));
		goto fail;
	}
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %s: %s", tmp, strerror(errno));
		goto fail;
	}
	struct pt_metrics_header *h = p;
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	/* A process killed while registering must not block the others. */
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	int rc = pthread_mutex_init(&h->lock, &a);
	pthread_mutexattr_destroy(&a);
	if (rc != 0) {
		snprintf(err, errlen, "cannot initialise the metrics lock: %s", strerror(rc));
		munmap(p, size);
		goto fail;
	}
	h->nslots = PT_METRICS_SLOTS;
	h->nprocs = PT_METRICS_PROCS;
	h->size = size;
	h->master_pid = getpid();
	h->started = (int64_t)time(NULL);
	/* The magic last: a reader never takes a half-made table. */
	memcpy(h->magic, PT_METRICS_MAGIC, sizeof h->magic);
	if (renameat(qdirfd, tmp, qdirfd, PT_METRICS_FILE) != 0) {
		snprintf(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
		munmap(p, size);
		goto fail;
	}
	close(fd);
	T.h = h;
	T.slots = (struct pt_metric *)((char *)p + slots_offset());
	T.size = size;
	memset((void *)T.cache, 0, sizeof T.cache);
	pt_metrics_proc_add(getpid(), "master");
	return 0;
fail:
	close(fd);
	unlinkat(qdirfd, tmp, 0);
	return -1;
}

void
pt_metrics_detach(void)
{
	/* Private zero pages in its place, not a hole: a handle this process
	 * inherited still points there, and may count into nothing. */
	if (T.h && mmap(T.h, T.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		munmap(T.h, T.size);
	T.h = NULL;
	T.slots = NULL;
	T.size = 0;
}

void
pt_metrics_proc_add(pid_t pid, const char *role)
{
	if (!T.h || pid <= 0)
		return;
	for (unsigned i = 0; i < PT_METRICS_PROCS; i++) {
		struct pt_metrics_proc *p = &T.h->procs[i];
		int32_t free_pid = 0;
		/* The role first would race a reader; it reads the pid, then
		 * the role, and checks the pid again. */
		if (atomic_load_explicit(&p->pid, memory_order_relaxed) != 0)
			continue;
		snprintf(p->role, sizeof p->role, "%s", role);
		if (atomic_compare_exchange_strong(&p->pid, &free_pid, (int32_t)pid))
			return;
	}
}

void
pt_metrics_proc_del(pid_t pid)
{
	if (!T.h || pid <= 0)
		return;
	for (unsigned i = 0; i < PT_METRICS_PROCS; i++) {
		int32_t want = (int32_t)pid;
		if (atomic_compare_exchange_strong(&T.h->procs[i].pid, &want, 0))
			return;
	}
}

/* ---- registration ---- */

static uint32_t
key_hash(const char *name, const char *labels)
{
	uint32_t h = 2166136261u;
	for (const char *s = name; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	h = (h ^ '{') * 16777619u;
	for (const char *s = labels; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* "k="v",k2="v2"" from the NULL-terminated pairs, escaped as OpenMetrics
 * wants (\\, \", \n); other control bytes become '?'. Cut to the room. */
static void
build_labels(char *out, size_t room, va_list ap)
{
	size_t o = 0;
	out[0] = '\0';
	for (;;) {
		const char *k = va_arg(ap, const char *);
		if (!k)
			break;
		const char *v = va_arg(ap, const char *);
		if (!v)
			v = "";
		size_t kl = strlen(k);
		/* key, =", at least the closing " and the NUL */
		if (o + (o ? 1 : 0) + kl + 4 > room)
			break;
		if (o)
			out[o++] = ',';
		memcpy(out + o, k, kl);
		o += kl;
		out[o++] = '=';
		out[o++] = '"';
		for (; *v; v++) {
			unsigned char ch = (unsigned char)*v;
			char esc = ch == '\\' ? '\\' : ch == '"' ? '"' : ch == '\n' ? 'n' : 0;
			size_t need = esc ? 2 : 1;
			if (o + need + 2 > room)
				break;
			if (esc) {
				out[o++] = '\\';
				out[o++] = esc;
			} else {
				out[o++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
			}
		}
		out[o++] = '"';
		out[o] = '\0';
	}
}

static struct pt_metric *
find_locked(const char *name, const char *labels, uint32_t used)
{
	for (uint32_t i = 0; i < used && i < PT_METRICS_SLOTS; i++) {
		struct pt_metric *m = &T.slots[i];
		if (atomic_load_explicit(&m->ready, memory_order_acquire) &&
		    strncmp(m->name, name, sizeof m->name) == 0 && strncmp(m->labels, labels, sizeof m->labels) == 0)
			return m;
	}
	return NULL;
}

static struct pt_metric *
reg(int type, const char *name, const char *help, va_list ap)
{
	char labels[PT_METRICS_LABELS];
	build_labels(labels, sizeof labels, ap);
	if (!T.h || strlen(name) >= PT_METRICS_NAME)
		return &dummy;
	uint32_t h = key_hash(name, labels);
	for (uint32_t probe = 0; probe < 8; probe++) {
		uint32_t ix = atomic_load_explicit(&T.cache[(h + probe) & (CACHE_SIZE - 1)], memory_order_relaxed);
		if (ix == 0)
			break;
		struct pt_metric *m = &T.slots[ix - 1];
		if (strncmp(m->name, name, sizeof m->name) == 0 && strncmp(m->labels, labels, sizeof m->labels) == 0)
			return (int)m->type == type ? m : &dummy;
	}
	int rc = pthread_mutex_lock(&T.h->lock);
	if (rc == EOWNERDEAD)
		pthread_mutex_consistent(&T.h->lock);
	else if (rc != 0)
		return &dummy;
	uint32_t used = atomic_load_explicit(&T.h->used, memory_order_relaxed);
	struct pt_metric *m = find_locked(name, labels, used);
	if (!m && used < PT_METRICS_SLOTS) {
		/* A slot a dead registrant left half-written is simply reused:
		 * used moves only once the slot is ready. */
		m = &T.slots[used];
		memset(m, 0, sizeof *m);
		m->type = (uint32_t)type;
		snprintf(m->name, sizeof m->name, "%s", name);
		snprintf(m->labels, sizeof m->labels, "%s", labels);
		snprintf(m->help, sizeof m->help, "%s", help ? help : "");
		atomic_store_explicit(&m->ready, 1, memory_order_release);
		atomic_store_explicit(&T.h->used, used + 1, memory_order_release);
	} else if (!m) {
		atomic_fetch_add_explicit(&T.h->dropped, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&T.h->lock);
	if (!m)
		return &dummy;
	for (uint32_t probe = 0; probe < 8; probe++) {
		_Atomic uint32_t *c = &T.cache[(h + probe) & (CACHE_SIZE - 1)];
		uint32_t empty = 0;
		if (atomic_compare_exchange_strong(c, &empty, (uint32_t)(m - T.slots) + 1))
			break;
	}
	return (int)m->type == type ? m : &dummy;
}

struct pt_metric *
pt_metric_counter(const char *name, const char *help, ...)
{
	va_list ap;
	va_start(ap, help);
	struct pt_metric *m = reg(PT_MT_COUNTER, name, help, ap);
	va_end(ap);
	return m;
}

struct pt_metric *
pt_metric_gauge(const char *name, const char *help, ...)
{
	va_list ap;
	va_start(ap, help);
	struct pt_metric *m = reg(PT_MT_GAUGE, name, help, ap);
	va_end(ap);
	return m;
}

struct pt_metric *
pt_metric_histogram(const char *name, const char *help, ...)
{
	va_list ap;
	va_start(ap, help);
	struct pt_metric *m = reg(PT_MT_HISTOGRAM, name, help, ap);
	va_end(ap);
	return m;
}

/* ---- the hot path ---- */

void
pt_metric_add(struct pt_metric *m, int64_t delta)
{
	atomic_fetch_add_explicit(&m->v[0], (uint64_t)delta, memory_order_relaxed);
}

void
pt_metric_set(struct pt_metric *m, int64_t value)
{
	atomic_store_explicit(&m->v[0], (uint64_t)value, memory_order_relaxed);
}

void
pt_metric_observe(struct pt_metric *m, double value)
{
	if (!(value >= 0))
		value = 0;
	size_t b = 0;
	while (b < PT_METRICS_BUCKETS && value > pt_metrics_bounds[b])
		b++;
	atomic_fetch_add_explicit(&m->v[b], 1, memory_order_relaxed);
	double us = value * 1e6;
	atomic_fetch_add_explicit(&m->v[PT_METRICS_BUCKETS + 1], us < 1.8e19 ? (uint64_t)us : 0,
	                          memory_order_relaxed);
}
