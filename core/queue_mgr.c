/* The queue manager in the worker: recovery at start, the retry schedule,
 * periodic scans, flush, and pickup of locally submitted mail from the
 * maildrop directory. One worker at a time owns the queue files (a lock
 * in pid/), so an old generation draining after a reload and the new one
 * never deliver the same file twice. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config_int.h"
#include "postern/event.h"
#include "postern/log.h"
#include "queue_int.h"
#include "record_int.h"

#define TICK_MS 1000
/* Queue files retried at once; fresh mail from SMTP is not limited here. */
#define MAX_RETRY_INFLIGHT 50
/* A maildrop file larger than this is refused (message_size_limit plus
 * room for the envelope). */
#define PICKUP_SLACK (1024 * 1024)

struct entry {
	char id[24];
	const char *where;
	time_t next;
};

static struct {
	struct entry *v;
	size_t n, cap;
	struct pt_timer *tick;
	int lock_fd;
	int inotify_fd;
	time_t last_scan;
	size_t retry_inflight;
	char **picking;               /* maildrop names in progress */
	size_t npicking;
} M = { .lock_fd = -1, .inotify_fd = -1 };

/* ---------- index ---------- */

static struct entry *
find(const char *id)
{
	for (size_t i = 0; i < M.n; i++)
		if (strcmp(M.v[i].id, id) == 0)
			return &M.v[i];
	return NULL;
}

static void
note(const char *id, const char *where, time_t next_retry)
{
	struct entry *e = find(id);
	if (!e) {
		if (M.n == M.cap) {
			size_t cap = M.cap ? M.cap * 2 : 64;
			struct entry *v = realloc(M.v, cap * sizeof *v);
			if (!v)
				return; /* the next directory scan finds it */
			M.v = v;
			M.cap = cap;
		}
		e = &M.v[M.n++];
		snprintf(e->id, sizeof e->id, "%s", id);
	}
	e->where = where;
	e->next = next_retry;
}

static void
forget(const char *id)
{
	struct entry *e = find(id);
	if (e)
		*e = M.v[--M.n];
}

static void
release_lock(void)
{
	if (M.lock_fd >= 0) {
		close(M.lock_fd);
		M.lock_fd = -1;
	}
	pt_qs.have_lock = 0;
}

/* ---------- recovery and scans ---------- */

static void
clean_incoming(void)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", pt_qs.qdir, PT_QDIR_INCOMING);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		/* Never renamed into place, so never acknowledged. */
		if (unlinkat(dirfd(d), e->d_name, 0) == 0)
			pt_log_as("qmgr", PT_LOG_INFO, "%s: removed incomplete queue file", e->d_name);
	}
	closedir(d);
}

static void
scan_dir(const char *sub)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", pt_qs.qdir, sub);
	DIR *d = opendir(path);
	if (!d) {
		pt_error("cannot open %s: %s", path, strerror(errno));
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *id = de->d_name;
		if (id[0] == '.')
			continue;
		if (!pt_qid_valid(id)) {
			pt_warn("%s/%s: not a queue file name; moved to %s", sub, id, PT_QDIR_CORRUPT);
			pt_qfile_quarantine(pt_qs.qdir, sub, id);
			continue;
		}
		if (strcmp(sub, PT_QDIR_ACTIVE) == 0) {
			/* Crash between writing deferred/ID and removing active/ID:
			 * deferred/ holds the newer state (also true while a
			 * rewrite is between those two steps right now). */
			char other[PATH_MAX];
			struct stat st;
			snprintf(other, sizeof other, "%s/%s/%s", pt_qs.qdir, PT_QDIR_DEFERRED, id);
			if (stat(other, &st) == 0) {
				pt_qfile_remove(pt_qs.qdir, sub, id);
				struct entry *e = find(id);
				if (e)
					e->where = PT_QDIR_DEFERRED;
				continue;
			}
		}
		if (find(id) || pt_qmsg_busy(id))
			continue;
		struct pt_qfile q;
		char err[256];
		int rc = pt_qfile_load(pt_qs.qdir, sub, id, &q, err, sizeof err);
		if (rc == -2) {
			pt_error("%s: damaged queue file (%s); moved to %s/", id, err, PT_QDIR_CORRUPT);
			pt_qfile_quarantine(pt_qs.qdir, sub, id);
			continue;
		}
		if (rc != 0) {
			pt_error("%s: %s", id, err);
			continue;
		}
		note(id, strcmp(sub, PT_QDIR_ACTIVE) == 0 ? PT_QDIR_ACTIVE : PT_QDIR_DEFERRED,
		             strcmp(sub, PT_QDIR_ACTIVE) == 0 ? 0 : q.next_retry);
		pt_qfile_free(&q);
	}
	closedir(d);
}

static void
scan_all(void)
{
	scan_dir(PT_QDIR_ACTIVE);
	scan_dir(PT_QDIR_DEFERRED);
	M.last_scan = time(NULL);
}

static int
take_lock(void)
{
	if (pt_qs.have_lock)
		return 1;
	char path[PATH_MAX];
	/* private/, not pid/: as root the master makes pid/ for its own pid
	 * file, and the worker (mail_owner) could not create the lock there. */
	snprintf(path, sizeof path, "%s/%s/qmgr.lock", pt_qs.qdir, PT_QDIR_PRIVATE);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		close(fd);
		return 0;
	}
	M.lock_fd = fd;
	pt_qs.have_lock = 1;
	clean_incoming();
	scan_all();
	return 1;
}

/* ---------- attempts: every one starts here and ends in run_event ---------- */

/* Bumped by each flush: attempts that were running when it came retry
 * as soon as they end instead of after their backoff. */
static unsigned flush_generation;

enum run_origin { RUN_CLIENT, RUN_PICKUP, RUN_RETRY, RUN_SPAWNED };
struct tell;

struct run {
	struct tell *tell;            /* the one answer this run gives, made with it */
	enum run_origin origin;
	unsigned flush_generation;    /* at the start */
	int told;                     /* RUN_CLIENT: the client has its answer */
	pt_queue_done_fn *client_done;
	void *client_arg;
	char name[256];               /* RUN_PICKUP: the maildrop file */
};

/* Whoever waits hears later on the loop, never inside the call that
 * started the attempt (services.h). Allocated with its run, so telling
 * cannot fail: a run answers at most once (the client at acceptance or
 * at the end, a pickup or retry at the end). */
struct tell {
	struct pt_deferred node;
	pt_queue_done_fn *fn;
	void *arg;
	struct pt_status st;
	char id[24];
};

static void
tell_fire(struct pt_loop *loop, void *arg)
{
	(void)loop;
	struct tell *c = arg;
	c->fn(c->arg, &c->st, c->id);
	free(c);
}

static void
tell_later(struct run *r, pt_queue_done_fn *fn, void *arg, const struct pt_status *st, const char *id)
{
	struct tell *c = r->tell;
	if (!c)
		return;
	r->tell = NULL;
	c->fn = fn;
	c->arg = arg;
	c->st = *st;
	snprintf(c->id, sizeof c->id, "%s", id);
	pt_defer(pt_qs.loop, &c->node, tell_fire, c);
}

static void
run_free(struct run *r)
{
	if (r) {
		free(r->tell);
		free(r);
	}
}

static void retry_done(void *arg, const struct pt_status *st, const char *id);
static void pickup_done(void *arg, const struct pt_status *st, const char *id);
static int run_start(struct pt_qfile *q, const char *where, struct run *r);

static struct run *
run_new(enum run_origin origin)
{
	struct run *r = calloc(1, sizeof *r);
	if (r && !(r->tell = calloc(1, sizeof *r->tell))) {
		free(r);
		return NULL;
	}
	if (r)
		r->origin = origin;
	return r;
}

static void
run_event(void *arg, struct pt_qoutcome *o)
{
	struct run *r = arg;
	if (o->event == PT_QEV_ACCEPTED) {
		if (r->origin == RUN_CLIENT && !r->told)
			tell_later(r, r->client_done, r->client_arg, &o->st, o->id);
		r->told = 1;
		return;
	}
	switch (o->fate) {
	case PT_QFATE_UNCHANGED:
		if (o->where)
			note(o->id, o->where, time(NULL) + pt_qs.min_backoff);
		break;
	case PT_QFATE_DEFERRED:
		/* A flush that came while this attempt ran applies to it. */
		note(o->id, PT_QDIR_DEFERRED, r->flush_generation != flush_generation ? 0 : o->next_retry);
		break;
	case PT_QFATE_REMOVED:
		forget(o->id);
		pt_log_as("qmgr", PT_LOG_INFO, "%s: removed", o->id);
		break;
	}
	if (r->origin == RUN_CLIENT && !r->told)
		tell_later(r, r->client_done, r->client_arg, &o->st, o->id);
	else if (r->origin == RUN_PICKUP)
		tell_later(r, pickup_done, r, &o->st, o->id);
	else if (r->origin == RUN_RETRY)
		tell_later(r, retry_done, NULL, &o->st, o->id);
	if (r->origin != RUN_PICKUP)
		run_free(r);
	for (size_t j = 0; j < o->nspawned; j++) {
		struct pt_qfile *f = &o->spawned[j];
		pt_log_as("qmgr", PT_LOG_INFO, "%s: from=<%s>, size=%zu, nrcpt=%zu (queue active)", f->id, f->sender,
		          f->len, f->nrcpt);
		run_start(f, PT_QDIR_ACTIVE, run_new(RUN_SPAWNED));
	}
	pt_qs.inflight--;
	/* After a stop, the lock goes with the last attempt. */
	if (!pt_qs.running && pt_qs.inflight == 0)
		release_lock();
}

/* Start an attempt (q is taken over). -1 when r is NULL (no memory):
 * the file, if any, stays for a later run. */
static int
run_start(struct pt_qfile *q, const char *where, struct run *r)
{
	if (!r) {
		pt_qfile_free(q);
		return -1;
	}
	r->flush_generation = flush_generation;
	pt_qs.inflight++;
	pt_qmsg_attempt(q, where, r->origin == RUN_CLIENT, run_event, r);
	return 0;
}

int
pt_qmgr_submit(struct pt_qfile *q, pt_queue_done_fn *done, void *arg)
{
	struct run *r = run_new(RUN_CLIENT);
	if (r) {
		r->client_done = done;
		r->client_arg = arg;
	}
	/* No memory for the run: -1 and done never runs (the caller answers). */
	return run_start(q, NULL, r);
}

/* ---------- retries ---------- */

static void
retry_done(void *arg, const struct pt_status *st, const char *id)
{
	(void)arg;
	(void)st;
	(void)id;
	if (M.retry_inflight)
		M.retry_inflight--;
}

static void
run_due(void)
{
	time_t now = time(NULL);
	for (size_t i = 0; i < M.n && M.retry_inflight < MAX_RETRY_INFLIGHT; i++) {
		struct entry *e = &M.v[i];
		if (e->next > now || pt_qmsg_busy(e->id))
			continue;
		struct pt_qfile q;
		char err[256], id[24];
		const char *where = e->where;
		snprintf(id, sizeof id, "%s", e->id);
		int rc = pt_qfile_load(pt_qs.qdir, where, id, &q, err, sizeof err);
		if (rc == -2) {
			pt_error("%s: damaged queue file (%s); moved to %s/", id, err, PT_QDIR_CORRUPT);
			pt_qfile_quarantine(pt_qs.qdir, where, id);
			forget(id);
			i--;
			continue;
		}
		if (rc != 0) {
			if (errno == ENOENT) {
				forget(id); /* deleted by `postern queue delete` */
				i--;
			} else {
				e->next = now + pt_qs.min_backoff;
				pt_error("%s", err);
			}
			continue;
		}
		pt_log_as("qmgr", PT_LOG_INFO, "%s: from=<%s>, size=%zu, nrcpt=%zu (queue active)", q.id, q.sender,
		          q.len, pt_qfile_pending(&q));
		if (run_start(&q, where, run_new(RUN_RETRY)) != 0) {
			e->next = now + pt_qs.min_backoff;
			continue;
		}
		M.retry_inflight++;
	}
}

/* ---------- pickup ---------- */

static int
picking(const char *name)
{
	for (size_t i = 0; i < M.npicking; i++)
		if (strcmp(M.picking[i], name) == 0)
			return 1;
	return 0;
}

static void
picking_remove(const char *name)
{
	for (size_t i = 0; i < M.npicking; i++)
		if (strcmp(M.picking[i], name) == 0) {
			free(M.picking[i]);
			M.picking[i] = M.picking[--M.npicking];
			return;
		}
}

static void
pickup_done(void *arg, const struct pt_status *st, const char *id)
{
	struct run *p = arg;
	(void)id;
	if (st->code == 0) {
		char path[PATH_MAX];
		snprintf(path, sizeof path, "%s/%s/%s", pt_qs.qdir, PT_QDIR_MAILDROP, p->name);
		/* Durable in the queue (or delivered) now: a crash before this
		 * unlink gives a duplicate, never a loss. */
		unlink(path);
	}
	picking_remove(p->name);
	run_free(p);
}

static char *
prepend_received(const char *data, size_t len, const char *id, uid_t uid, size_t *outlen)
{
	char date[64], hdr[512];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm);
	int n = snprintf(hdr, sizeof hdr, "Received: by %s (Postern, from userid %lu)\n\tid %s; %s\n",
	                 pt_qs.myhostname, (unsigned long)uid, id, date);
	if (n < 0 || (size_t)n >= sizeof hdr)
		return NULL;
	char *out = malloc((size_t)n + len + 1);
	if (!out)
		return NULL;
	memcpy(out, hdr, (size_t)n);
	memcpy(out + n, data, len);
	out[n + len] = 0;
	*outlen = (size_t)n + len;
	return out;
}

/* Remove what a local user left in the maildrop that is no submission.
 * The maildrop is ours and sticky: we may remove any entry, except a
 * directory with something in it; that one is reported only now and
 * then, or a user could fill the log at every scan. */
static void
discard(int dfd, const char *name, const char *why)
{
	static time_t last_stuck;
	struct stat st;
	unsigned long uid = fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? (unsigned long)st.st_uid : 0;
	if (unlinkat(dfd, name, 0) == 0 || (errno == EISDIR && unlinkat(dfd, name, AT_REMOVEDIR) == 0)) {
		pt_warn("pickup: %s from uid %lu: %s; removed", name, uid, why);
		return;
	}
	time_t now = time(NULL);
	if (now - last_stuck >= 600) {
		last_stuck = now;
		pt_warn("pickup: %s from uid %lu: %s, and cannot be removed: %s", name, uid, why, strerror(errno));
	}
}

static void
pickup_file(int dfd, const char *name)
{
	char err[256];
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		/* sendmail renames a file into place only once we can read it:
		 * its owner changed the mode or group since, or it is a link. */
		if (errno == EACCES || errno == ELOOP)
			discard(dfd, name, errno == EACCES ? "not readable by the server" : "a symbolic link");
		return;
	}
	struct stat st;
	long long limit = pt_conf_int(pt_qs.conf, "message_size_limit");
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
	    (limit > 0 && st.st_size > limit + PICKUP_SLACK)) {
		/* Links could make us read someone else's file; size: refuse. */
		close(fd);
		discard(dfd, name, "not a plain file of a reasonable size");
		return;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	ssize_t got = buf ? read(fd, buf, (size_t)st.st_size + 1) : -1;
	close(fd);
	if (got != st.st_size) {
		free(buf);
		return; /* still being written or unreadable: next round */
	}
	struct pt_qfile q;
	int drc = pt_qfile_decode(buf, (size_t)got, &q, err, sizeof err);
	if (drc != 0 || q.nrcpt == 0) {
		free(buf);
		if (drc == 0) {
			pt_qfile_free(&q);
			snprintf(err, sizeof err, "no recipients");
		}
		pt_warn("pickup: %s from uid %lu: damaged submission (%s); moved to %s/", name,
		        (unsigned long)st.st_uid, err, PT_QDIR_CORRUPT);
		char to[PATH_MAX];
		snprintf(to, sizeof to, "%s/%s/%s", pt_qs.qdir, PT_QDIR_CORRUPT, name);
		char from[PATH_MAX];
		snprintf(from, sizeof from, "%s/%s/%s", pt_qs.qdir, PT_QDIR_MAILDROP, name);
		rename(from, to);
		return;
	}
	free(buf);
	struct run *p = run_new(RUN_PICKUP);
	char **pk = realloc(M.picking, (M.npicking + 1) * sizeof *pk);
	if (!p || !pk) {
		run_free(p);
		if (pk)
			M.picking = pk;
		pt_qfile_free(&q);
		return;
	}
	M.picking = pk;
	M.picking[M.npicking] = strdup(name);
	if (!M.picking[M.npicking]) {
		run_free(p);
		pt_qfile_free(&q);
		return;
	}
	M.npicking++;
	snprintf(p->name, sizeof p->name, "%s", name);
	/* The file's owner is who submitted it, whatever it claims. */
	pt_queue_new_id(q.id);
	q.submit_uid = st.st_uid;
	q.arrival = time(NULL);
	q.next_retry = 0;
	q.attempts = 0;
	size_t nlen;
	char *nd = prepend_received(q.data, q.len, q.id, st.st_uid, &nlen);
	if (nd) {
		free(q.data);
		q.data = nd;
		q.len = nlen;
	}
	/* Only the envelope (as sendmail -f / recipients allow) comes from
	 * the user; the rest is ours to say. */
	free(q.protocol);
	q.protocol = strdup("local");
	free(q.client_name);
	free(q.client_address);
	free(q.helo);
	free(q.sasl_username);
	q.client_name = q.client_address = q.helo = q.sasl_username = NULL;
	for (size_t i = 0; i < q.nrcpt; i++) {
		q.rcpt[i].state = PT_QRCPT_PENDING;
		q.rcpt[i].dsn[0] = 0;
		free(q.rcpt[i].reason);
		q.rcpt[i].reason = NULL;
	}
	pt_log_as("pickup", PT_LOG_INFO, "%s: uid=%lu from=<%s>", q.id, (unsigned long)st.st_uid, q.sender);
	pt_record_pickup(&q);
	pt_log_as("qmgr", PT_LOG_INFO, "%s: from=<%s>, size=%zu, nrcpt=%zu (queue active)", q.id, q.sender, q.len,
	          q.nrcpt);
	run_start(&q, NULL, p);
}

static void
pickup_scan(void)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", pt_qs.qdir, PT_QDIR_MAILDROP);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	time_t now = time(NULL);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.') {
			/* A sendmail that died while writing leaves a dot file. */
			struct stat st;
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
			    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && now - st.st_mtime > 86400)
				unlinkat(dirfd(d), e->d_name, 0);
			continue;
		}
		if (!picking(e->d_name))
			pickup_file(dirfd(d), e->d_name);
	}
	closedir(d);
}

/* ---------- the tick ---------- */

static void
tick(struct pt_loop *loop, void *arg)
{
	(void)arg;
	M.tick = NULL;
	if (!pt_qs.running)
		return;
	if (take_lock()) {
		if (time(NULL) - M.last_scan >= pt_qs.run_delay)
			scan_all();
		pickup_scan();
		run_due();
	}
	M.tick = pt_timer_add(loop, TICK_MS, tick, NULL);
}

static void
inotify_readable(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	(void)events;
	(void)arg;
	char buf[4096];
	while (read(fd, buf, sizeof buf) > 0)
		;
	if (pt_qs.running && pt_qs.have_lock)
		pickup_scan();
	(void)loop;
}

static void
load_params(const struct pt_config *conf)
{
	pt_qs.conf = conf;
	snprintf(pt_qs.qdir, sizeof pt_qs.qdir, "%s", pt_conf_str(conf, "queue_directory"));
	snprintf(pt_qs.myhostname, sizeof pt_qs.myhostname, "%s", pt_conf_str(conf, "myhostname"));
	snprintf(pt_qs.myorigin, sizeof pt_qs.myorigin, "%s", pt_queue_myorigin(conf));
	snprintf(pt_qs.delimiter, sizeof pt_qs.delimiter, "%s", pt_conf_str(conf, "recipient_delimiter"));
	pt_qs.min_backoff = (time_t)pt_conf_int(conf, "minimal_backoff_time");
	pt_qs.max_backoff = (time_t)pt_conf_int(conf, "maximal_backoff_time");
	pt_qs.lifetime = (time_t)pt_conf_int(conf, "maximal_queue_lifetime");
	pt_qs.bounce_lifetime = (time_t)pt_conf_int(conf, "bounce_queue_lifetime");
	pt_qs.run_delay = (time_t)pt_conf_int(conf, "queue_run_delay");
	pt_qs.soft_bounce = pt_conf_bool(conf, "soft_bounce");
	if (pt_qs.run_delay < 1)
		pt_qs.run_delay = 1;
}

/* Pending sendmail files are readable by the maildrop's group, ours:
 * another member of it could read them. */
static void
warn_shared_group(void)
{
	struct group *g = getgrgid(getegid());
	struct passwd *pw = getpwuid(geteuid());
	for (char **m = g ? g->gr_mem : NULL; m && *m; m++)
		if (!pw || strcmp(*m, pw->pw_name) != 0) {
			pt_warn("queue: group %s also has the member %s, who can read pending sendmail submissions in "
			        "%s/; give mail_owner a group of its own", g->gr_name, *m, PT_QDIR_MAILDROP);
			return;
		}
}

int
pt_queue_start(struct pt_loop *loop, const struct pt_config *conf, int local_fd)
{
	char err[512];
	pt_qs.loop = loop;
	load_params(conf);
	/* A restart in the same process (tests) starts from the disk. */
	M.n = 0;
	M.retry_inflight = 0;
	if (pt_qdir_setup(pt_qs.qdir, (uid_t)-1, (gid_t)-1, err, sizeof err) != 0) {
		pt_log(PT_LOG_FATAL, "queue: %s", err);
		return -1;
	}
	warn_shared_group();
	pt_qs.running = 1;
	pt_qs.local_none = local_fd < 0;
	pt_qagent_provide();
	pt_qagent_attach(local_fd);
	if (!take_lock())
		pt_log_as("qmgr", PT_LOG_INFO, "queue files are still owned by the previous generation; waiting");
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", pt_qs.qdir, PT_QDIR_MAILDROP);
	M.inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (M.inotify_fd >= 0 && (inotify_add_watch(M.inotify_fd, path, IN_MOVED_TO | IN_CLOSE_WRITE) < 0 ||
	                          pt_loop_watch(loop, M.inotify_fd, PT_EV_READ, inotify_readable, NULL) != 0)) {
		close(M.inotify_fd);
		M.inotify_fd = -1;
	}
	M.tick = pt_timer_add(loop, 0, tick, NULL);
	return 0;
}

void
pt_queue_stop(void)
{
	if (!pt_qs.running)
		return;
	pt_qs.running = 0;
	if (M.tick)
		pt_timer_cancel(pt_qs.loop, M.tick);
	M.tick = NULL;
	if (M.inotify_fd >= 0) {
		pt_loop_unwatch(pt_qs.loop, M.inotify_fd);
		close(M.inotify_fd);
		M.inotify_fd = -1;
	}
	/* In-flight messages finish; the lock goes with the last of them. */
	if (pt_qs.inflight == 0)
		release_lock();
}

void
pt_queue_flush_now(void)
{
	flush_generation++;
	for (size_t i = 0; i < M.n; i++)
		M.v[i].next = 0;
	M.last_scan = 0;
	pt_log_as("qmgr", PT_LOG_INFO, "flush requested: retrying %zu queued message(s)", M.n);
	if (pt_qs.running && M.tick) {
		pt_timer_cancel(pt_qs.loop, M.tick);
		M.tick = pt_timer_add(pt_qs.loop, 0, tick, NULL);
	}
}
