/* Reading the metrics table: a checked copy (the file is writable by
 * mail_owner's processes, so a root reader trusts none of it), the values
 * computed when read (queue sizes and age from the queue directory,
 * resident memory per process role from /proc), and the OpenMetrics text. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "metrics_int.h"
#include "postern/strbuf.h"
#include "queue.h"

static struct pt_msnap_item *
snap_add(struct pt_msnap *s, int type, const char *name, const char *help, const char *labels)
{
	if (s->n == s->cap) {
		struct pt_msnap_item *v = pt_array_grow(s->v, &s->cap, sizeof *v, 64);
		if (!v)
			return NULL;
		s->v = v;
	}
	struct pt_msnap_item *it = &s->v[s->n++];
	memset(it, 0, sizeof *it);
	it->type = type;
	snprintf(it->name, sizeof it->name, "%s", name);
	snprintf(it->help, sizeof it->help, "%s", help);
	snprintf(it->labels, sizeof it->labels, "%s", labels);
	return it;
}

static int
name_ok(const char *n)
{
	if (!*n || (*n >= '0' && *n <= '9'))
		return 0;
	for (; *n; n++)
		if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') || *n == '_' ||
		      *n == ':'))
			return 0;
	return 1;
}

static void
copy_text(char *dst, const char *src, size_t size)
{
	memcpy(dst, src, size);
	dst[size - 1] = '\0';
	for (char *p = dst; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

/* Labels as the registrar writes them: k="v" pairs, quotes escaped. Any
 * other shape would break the exposition a scraper parses. */
static int
labels_ok(const char *l)
{
	while (*l) {
		const char *k = l;
		while ((*l >= 'a' && *l <= 'z') || (*l >= 'A' && *l <= 'Z') || (*l >= '0' && *l <= '9') || *l == '_')
			l++;
		if (l == k || l[0] != '=' || l[1] != '"')
			return 0;
		for (l += 2; *l && *l != '"'; l++)
			if (*l == '\\' && (l[1] == '\\' || l[1] == '"' || l[1] == 'n'))
				l++;
			else if (*l == '\\')
				return 0;
		if (*l != '"')
			return 0;
		l++;
		if (*l == ',')
			l++;
		else if (*l)
			return 0;
	}
	return 1;
}

/* ---- computed when read ---- */

/* The arrival time (the "T" record near the start of a queue file), or
 * the file's mtime when it cannot be read. */
static int64_t
arrival_of(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char buf[4096];
	struct stat st;
	int64_t t = -1;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -1;
	}
	ssize_t n = read(fd, buf, sizeof buf - 1);
	if (n > 0) {
		buf[n] = '\0';
		const char *p = strstr(buf, "\nT ");
		if (p) {
			char *end;
			long long v = strtoll(p + 3, &end, 10);
			if (end != p + 3 && *end == '\n' && v > 0)
				t = v;
		}
	}
	if (t < 0)
		t = (int64_t)st.st_mtime;
	close(fd);
	return t;
}

static void
add_queue(struct pt_msnap *s, const char *qdir)
{
	static const char *const subs[] = { PT_QDIR_ACTIVE, PT_QDIR_DEFERRED, PT_QDIR_INCOMING, PT_QDIR_MAILDROP };
	int64_t oldest = -1;
	for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
		char path[4200], labels[64];
		snprintf(path, sizeof path, "%s/%s", qdir, subs[i]);
		uint64_t count = 0;
		int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		if (!d && dfd >= 0)
			close(dfd);
		int parse = i < 2; /* ages of what the queue manager holds */
		struct dirent *e;
		while (d && (e = readdir(d))) {
			if (e->d_name[0] == '.' || strstr(e->d_name, ".tmp"))
				continue;
			count++;
			if (parse) {
				int64_t t = arrival_of(dirfd(d), e->d_name);
				if (t > 0 && (oldest < 0 || t < oldest))
					oldest = t;
			}
		}
		if (d)
			closedir(d);
		snprintf(labels, sizeof labels, "queue=\"%s\"", subs[i]);
		struct pt_msnap_item *it = snap_add(s, PT_MT_GAUGE, "postern_queue_messages",
		                                    "messages in the queue directory, per queue", labels);
		if (it)
			it->v[0] = count;
	}
	struct pt_msnap_item *it = snap_add(s, PT_MT_GAUGE, "postern_queue_oldest_age_seconds",
	                                    "age of the oldest message in the active and deferred queues (0: empty)", "");
	if (it) {
		int64_t age = oldest > 0 ? (int64_t)time(NULL) - oldest : 0;
		it->v[0] = (uint64_t)(age > 0 ? age : 0);
	}
}

static long long
rss_of(pid_t pid)
{
	char path[64], buf[128];
	snprintf(path, sizeof path, "/proc/%ld/statm", (long)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	unsigned long long size, res;
	if (sscanf(buf, "%llu %llu", &size, &res) != 2)
		return -1;
	return (long long)res * sysconf(_SC_PAGESIZE);
}

/* The parent of pid, from /proc (0 when gone). */
static pid_t
ppid_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	char state;
	long ppid;
	if (!p || sscanf(p + 1, " %c %ld", &state, &ppid) != 2 || state == 'Z')
		return 0;
	return (pid_t)ppid;
}

/* Resident memory per role, of the processes the table lists that are
 * still the master's: itself, its children, and the mail agents'
 * children (an entry a killed agent could not remove, or a pid used
 * again since, is not counted). */
static void
add_memory(struct pt_msnap *s, const struct pt_metrics_header *h)
{
	struct role { char name[28]; uint64_t rss, n; } roles[16];
	struct entry { pid_t pid, ppid; char role[28]; } *e = calloc(PT_METRICS_PROCS, sizeof *e);
	size_t nroles = 0, ne = 0;
	pid_t master = (pid_t)h->master_pid;
	if (!e)
		return;
	for (unsigned i = 0; i < PT_METRICS_PROCS; i++) {
		const struct pt_metrics_proc *p = &h->procs[i];
		int32_t pid = atomic_load_explicit(&p->pid, memory_order_acquire);
		if (pid <= 0)
			continue;
		copy_text(e[ne].role, p->role, sizeof e[ne].role);
		if (atomic_load_explicit(&p->pid, memory_order_acquire) != pid || !name_ok(e[ne].role))
			continue;
		e[ne].pid = pid;
		e[ne].ppid = ppid_of(pid);
		if (e[ne].ppid > 0)
			ne++;
	}
	for (size_t i = 0; i < ne; i++) {
		int ours = e[i].pid == master || e[i].ppid == master;
		for (size_t k = 0; !ours && k < ne; k++)
			ours = e[k].pid == e[i].ppid && e[k].ppid == master && strcmp(e[k].role, "mail_agent") == 0;
		long long rss = ours ? rss_of(e[i].pid) : -1;
		if (rss < 0)
			continue;
		size_t r = 0;
		while (r < nroles && strcmp(roles[r].name, e[i].role) != 0)
			r++;
		if (r == nroles) {
			if (nroles == sizeof roles / sizeof roles[0])
				continue;
			memcpy(roles[r].name, e[i].role, sizeof roles[r].name);
			roles[r].rss = roles[r].n = 0;
			nroles++;
		}
		roles[r].rss += (uint64_t)rss;
		roles[r].n++;
	}
	free(e);
	for (size_t r = 0; r < nroles; r++) {
		char labels[64];
		snprintf(labels, sizeof labels, "role=\"%s\"", roles[r].name);
		struct pt_msnap_item *it = snap_add(s, PT_MT_GAUGE, "postern_process_resident_bytes",
		                                    "resident memory of the server's processes, summed per role", labels);
		if (it)
			it->v[0] = roles[r].rss;
		it = snap_add(s, PT_MT_GAUGE, "postern_processes", "running processes per role", labels);
		if (it)
			it->v[0] = roles[r].n;
	}
}

int
pt_msnap_take(const void *table, size_t size, const char *qdir, struct pt_msnap *s)
{
	memset(s, 0, sizeof *s);
	const struct pt_metrics_header *h = table;
	size_t head = (sizeof *h + 4095) & ~(size_t)4095;
	if (!h || size < head + (size_t)PT_METRICS_SLOTS * sizeof(struct pt_metric) ||
	    memcmp(h->magic, PT_METRICS_MAGIC, sizeof h->magic) != 0) {
		errno = EINVAL;
		return -1;
	}
	const struct pt_metric *slots = (const struct pt_metric *)((const char *)table + head);
	uint32_t used = atomic_load_explicit(&((struct pt_metrics_header *)h)->used, memory_order_acquire);
	if (used > PT_METRICS_SLOTS)
		used = PT_METRICS_SLOTS;
	s->master_pid = h->master_pid;
	s->started = h->started;
	s->dropped = atomic_load_explicit(&((struct pt_metrics_header *)h)->dropped, memory_order_relaxed);
	for (uint32_t i = 0; i < used; i++) {
		struct pt_metric *m = (struct pt_metric *)&slots[i];
		if (!atomic_load_explicit(&m->ready, memory_order_acquire))
			continue;
		int type = (int)m->type;
		if (type < PT_MT_COUNTER || type > PT_MT_HISTOGRAM)
			continue;
		struct pt_msnap_item *it = snap_add(s, type, "", "", "");
		if (!it)
			return -1;
		copy_text(it->name, m->name, sizeof it->name);
		copy_text(it->labels, m->labels, sizeof it->labels);
		copy_text(it->help, m->help, sizeof it->help);
		if (!name_ok(it->name) || !labels_ok(it->labels)) {
			s->n--;
			continue;
		}
		for (int k = 0; k < PT_METRICS_VALUES; k++)
			it->v[k] = atomic_load_explicit(&m->v[k], memory_order_relaxed);
	}
	struct pt_msnap_item *it = snap_add(s, PT_MT_GAUGE, "postern_start_time_seconds",
	                                    "when the master started (unix time)", "");
	if (it)
		it->v[0] = (uint64_t)s->started;
	if (qdir)
		add_queue(s, qdir);
	add_memory(s, h);
	return 0;
}

void
pt_msnap_free(struct pt_msnap *s)
{
	free(s->v);
	memset(s, 0, sizeof *s);
}

static int
item_cmp(const void *a, const void *b)
{
	const struct pt_msnap_item *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->labels, y->labels);
}

void
pt_msnap_sort(struct pt_msnap *s)
{
	if (s->n > 1)
		qsort(s->v, s->n, sizeof *s->v, item_cmp);
}

int64_t
pt_msnap_value(const struct pt_msnap_item *it)
{
	return (int64_t)it->v[0];
}

static const char *
type_word(int t)
{
	return t == PT_MT_COUNTER ? "counter" : t == PT_MT_GAUGE ? "gauge" : "histogram";
}

static void
sample(struct pt_strbuf *b, const char *name, const char *suffix, const char *labels, const char *extra)
{
	pt_strbuf_printf(b, "%s%s", name, suffix);
	if (labels[0] || extra)
		pt_strbuf_printf(b, "{%s%s%s}", labels, labels[0] && extra ? "," : "", extra ? extra : "");
	pt_strbuf_puts(b, " ");
}

char *
pt_msnap_openmetrics(const struct pt_msnap *s, size_t *len)
{
	struct pt_strbuf b = { 0 };
	const char *family = NULL;
	int family_type = 0;
	for (size_t i = 0; i < s->n; i++) {
		const struct pt_msnap_item *it = &s->v[i];
		if (!family || strcmp(family, it->name) != 0) {
			family = it->name;
			family_type = it->type;
			pt_strbuf_printf(&b, "# TYPE %s %s\n", it->name, type_word(it->type));
			if (it->help[0]) {
				pt_strbuf_printf(&b, "# HELP %s ", it->name);
				for (const char *h = it->help; *h; h++) {
					if (*h == '\\' || *h == '"')
						pt_strbuf_put(&b, "\\", 1);
					pt_strbuf_put(&b, h, 1);
				}
				pt_strbuf_puts(&b, "\n");
			}
		} else if (it->type != family_type || (i > 0 && strcmp(s->v[i - 1].labels, it->labels) == 0)) {
			continue; /* one type per family, one sample per label set */
		}
		if (it->type == PT_MT_COUNTER) {
			sample(&b, it->name, "_total", it->labels, NULL);
			pt_strbuf_printf(&b, "%" PRIu64 "\n", it->v[0]);
		} else if (it->type == PT_MT_GAUGE) {
			sample(&b, it->name, "", it->labels, NULL);
			pt_strbuf_printf(&b, "%" PRId64 "\n", (int64_t)it->v[0]);
		} else {
			uint64_t cum = 0;
			for (int k = 0; k <= PT_METRICS_BUCKETS; k++) {
				char le[48];
				cum += it->v[k];
				if (k < PT_METRICS_BUCKETS)
					snprintf(le, sizeof le, "le=\"%g\"", pt_metrics_bounds[k]);
				else
					snprintf(le, sizeof le, "le=\"+Inf\"");
				sample(&b, it->name, "_bucket", it->labels, le);
				pt_strbuf_printf(&b, "%" PRIu64 "\n", cum);
			}
			sample(&b, it->name, "_count", it->labels, NULL);
			pt_strbuf_printf(&b, "%" PRIu64 "\n", cum);
			sample(&b, it->name, "_sum", it->labels, NULL);
			pt_strbuf_printf(&b, "%.6f\n", (double)it->v[PT_METRICS_BUCKETS + 1] / 1e6);
		}
	}
	pt_strbuf_puts(&b, "# EOF\n");
	if (!b.p || b.oom) {
		pt_strbuf_free(&b);
		return NULL;
	}
	*len = b.len;
	return b.p;
}
