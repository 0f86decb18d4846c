/* The local delivery agent: a separate process that keeps the master's
 * privileges and appends mail through the mailstore service, batching
 * concurrent deliveries per user (group commit) on its own threads, each
 * thread writing with the recipient's file system identity. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config_int.h"
#include "loader.h"
#include "log_int.h"
#include "postern/log.h"
#include "postern/module.h"
#include "process.h"
#include "proctitle.h"
#include "queue.h"

/* Deliveries to one user taken in one mailstore call (one lock, one
 * fsync); more wait for the next round. */
#define BATCH_MAX 256
#define MAX_GROUPS 256

struct job {
	struct pt_agent_req req;
	const char *data;
	size_t maplen;
	char *copy;                   /* data, when it came inline */
	size_t left;
	struct pt_status *st;
	struct job *next_done;
};

struct task {
	struct job *job;
	size_t idx;
	struct task *next;
};

/* Pending mailbox deliveries of one user; busy while a thread appends. */
struct ubox {
	char name[64];
	struct task *head, *tail;
	int busy;
	struct ubox *next;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_mutex_t send_mu;
	struct ubox *boxes;
	struct task *special_head, *special_tail;
	int stopping;
	int terminating;              /* SIGTERM: take no new work */
	int inflight;                 /* batches being written or replied */
	pthread_cond_t idle;          /* inflight dropped to 0 */
	int sock;
	int as_root;
	uid_t nobody_uid;
	gid_t nobody_gid;
} A = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
	.send_mu = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER };

/* How long a stop waits for appends in flight. A cut one is repaired at
 * the mailbox's next lock anyway (the append record in the dotlock); the
 * wait only keeps a stop from making that repair necessary. */
#define STOP_WAIT_S 10

static void
job_free(struct job *j)
{
	if (j->data && j->maplen)
		munmap((void *)j->data, j->maplen);
	free(j->copy);
	pt_agent_req_free(&j->req);
	free(j->st);
	free(j);
}

static void
job_reply(struct job *j)
{
	static char buf[PT_AGENT_MSG_MAX];
	struct pt_agent_resp r = { j->req.seq, j->req.n, j->st };
	pthread_mutex_lock(&A.send_mu);
	ssize_t n = pt_agent_resp_encode(&r, buf, sizeof buf);
	if (n < 0 || pt_agent_send(A.sock, buf, (size_t)n, -1) < 0)
		pt_error("%s: cannot report delivery results to the queue manager: %s", j->req.queue_id,
		         n < 0 ? "message too large" : strerror(errno));
	pthread_mutex_unlock(&A.send_mu);
	job_free(j);
}

/* Per-thread credentials: setfsuid/setfsgid and the raw setgroups system
 * call change only the calling thread (glibc's setgroups() would change
 * every thread of the process). */
/* getgrouplist() walks the user databases (about 0.2 ms with Debian's
 * "files systemd"), once per delivery without a cache: a minute-old answer
 * is fresh enough for group membership. */
#define GROUP_CACHE_SIZE 64
#define GROUP_CACHE_TTL 60

static struct {
	pthread_mutex_t mu;
	struct {
		char name[sizeof ((struct pt_user *)0)->name];
		gid_t gid;
		time_t at;
		int ng;
		gid_t groups[MAX_GROUPS];
	} e[GROUP_CACHE_SIZE];
	unsigned next;
} group_cache = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int
user_groups(const struct pt_user *u, gid_t *groups)
{
	time_t now = time(NULL);
	pthread_mutex_lock(&group_cache.mu);
	for (unsigned i = 0; i < GROUP_CACHE_SIZE; i++) {
		if (group_cache.e[i].at && now - group_cache.e[i].at < GROUP_CACHE_TTL &&
		    group_cache.e[i].gid == u->gid && strcmp(group_cache.e[i].name, u->name) == 0) {
			int ng = group_cache.e[i].ng;
			memcpy(groups, group_cache.e[i].groups, (size_t)ng * sizeof *groups);
			pthread_mutex_unlock(&group_cache.mu);
			return ng;
		}
	}
	pthread_mutex_unlock(&group_cache.mu);
	int ng = MAX_GROUPS;
	if (getgrouplist(u->name, u->gid, groups, &ng) < 0) {
		ng = 1;
		groups[0] = u->gid;
	}
	pthread_mutex_lock(&group_cache.mu);
	unsigned i = group_cache.next++ % GROUP_CACHE_SIZE;
	snprintf(group_cache.e[i].name, sizeof group_cache.e[i].name, "%s", u->name);
	group_cache.e[i].gid = u->gid;
	group_cache.e[i].at = now;
	group_cache.e[i].ng = ng;
	memcpy(group_cache.e[i].groups, groups, (size_t)ng * sizeof *groups);
	pthread_mutex_unlock(&group_cache.mu);
	return ng;
}

static int
become_user(const struct pt_user *u)
{
	gid_t groups[MAX_GROUPS];
	int ng = user_groups(u, groups);
	if (syscall(SYS_setgroups, (size_t)ng, groups) != 0)
		return -1;
	setfsgid(u->gid);
	setfsuid(u->uid);
	/* setfsuid reports the previous id; read back to be sure it took. */
	if ((uid_t)setfsuid((uid_t)-1) != u->uid || (gid_t)setfsgid((gid_t)-1) != u->gid)
		return -1;
	return 0;
}

static void
become_root(void)
{
	setfsuid(0);
	setfsgid(0);
	gid_t g = 0;
	syscall(SYS_setgroups, (size_t)1, &g);
}

static void
fill_delivery(struct pt_delivery *d, const struct job *j, const struct pt_agent_item *it)
{
	memset(d, 0, sizeof *d);
	d->queue_id = j->req.queue_id;
	d->sender = j->req.sender;
	d->recipient = it->recipient;
	d->orig_recipient = it->orig;
	d->user = &it->user;
	d->data = j->data;
	d->len = (size_t)j->req.len;
	d->arrival = (time_t)j->req.arrival;
}

static void
deliver_mailbox_batch(struct task **t, size_t n)
{
	const struct pt_mailstore_ops *ms = pt_service_get(PT_SVC_MAILSTORE);
	struct pt_delivery d[BATCH_MAX];
	struct pt_status st[BATCH_MAX];
	memset(st, 0, n * sizeof st[0]);
	for (size_t i = 0; i < n; i++)
		fill_delivery(&d[i], t[i]->job, &t[i]->job->req.item[t[i]->idx]);
	const struct pt_user *u = d[0].user;
	if (!ms) {
		for (size_t i = 0; i < n; i++)
			pt_status_set(&st[i], 451, "4.3.0", "mail system configuration error: no mailstore (module mbox not loaded)");
	} else if (A.as_root && u->uid == 0 && strcmp(u->name, "root") != 0) {
		/* A uid-0 alias of root from a userdb is someone's mistake, not a
		 * reason to write as root. */
		for (size_t i = 0; i < n; i++)
			pt_status_set(&st[i], 550, "5.7.1", "refusing delivery as uid 0 for user %s", u->name);
	} else if (A.as_root && become_user(u) != 0) {
		become_root();
		for (size_t i = 0; i < n; i++)
			pt_status_set(&st[i], 451, "4.3.0", "cannot switch to user %s: %s", u->name, strerror(errno));
	} else {
		ms->deliver(d, n, st);
		if (A.as_root)
			become_root();
	}
	for (size_t i = 0; i < n; i++)
		t[i]->job->st[t[i]->idx] = st[i];
}

/* /file and |command targets run in a child process that becomes
 * default_privs for good: a command must never inherit root. */
static void
deliver_special(struct task *t)
{
	const struct pt_alias_ops *al = pt_service_get(PT_SVC_ALIAS);
	struct job *j = t->job;
	const struct pt_agent_item *it = &j->req.item[t->idx];
	struct pt_status st = { 0 };
	struct pt_delivery d;
	fill_delivery(&d, j, it);
	struct pt_user nobody = { .uid = A.nobody_uid, .gid = A.nobody_gid };
	snprintf(nobody.name, sizeof nobody.name, "default_privs");
	d.user = &nobody;
	if (!al || !al->deliver_special) {
		pt_status_set(&st, 451, "4.3.0", "no alias service for %s", it->target);
		j->st[t->idx] = st;
		return;
	}
	if (!A.as_root) {
		al->deliver_special(&d, it->kind == PT_AGENT_FILE ? PT_ALIAS_FILE : PT_ALIAS_COMMAND,
		                    it->target, &st);
		j->st[t->idx] = st;
		return;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0) {
		pt_status_set(&st, 451, "4.3.0", "pipe: %s", strerror(errno));
		j->st[t->idx] = st;
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		pt_status_set(&st, 451, "4.3.0", "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		j->st[t->idx] = st;
		return;
	}
	if (pid == 0) {
		close(p[0]);
		if (setgroups(0, NULL) != 0 || setgid(A.nobody_gid) != 0 || setuid(A.nobody_uid) != 0 ||
		    getuid() == 0) {
			pt_status_set(&st, 451, "4.3.0", "cannot switch to default_privs");
		} else {
			al->deliver_special(&d, it->kind == PT_AGENT_FILE ? PT_ALIAS_FILE : PT_ALIAS_COMMAND,
			                    it->target, &st);
		}
		ssize_t w = write(p[1], &st, sizeof st);
		_exit(w == (ssize_t)sizeof st ? 0 : 1);
	}
	close(p[1]);
	ssize_t r;
	do
		r = read(p[0], &st, sizeof st);
	while (r < 0 && errno == EINTR);
	close(p[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (r != (ssize_t)sizeof st)
		pt_status_set(&st, 451, "4.3.0", "delivery to %s failed: helper process died", it->target);
	j->st[t->idx] = st;
}

static void *
agent_thread(void *arg)
{
	(void)arg;
	struct task *batch[BATCH_MAX];
	pthread_mutex_lock(&A.mu);
	for (;;) {
		if (A.terminating)
			break;
		struct ubox *b = A.boxes;
		while (b && (b->busy || !b->head))
			b = b->next;
		size_t n = 0;
		struct task *special = NULL;
		if (b) {
			b->busy = 1;
			while (b->head && n < BATCH_MAX) {
				batch[n++] = b->head;
				b->head = b->head->next;
			}
			if (!b->head)
				b->tail = NULL;
		} else if (A.special_head) {
			special = A.special_head;
			A.special_head = special->next;
			if (!A.special_head)
				A.special_tail = NULL;
		} else if (A.stopping) {
			break;
		} else {
			pthread_cond_wait(&A.cv, &A.mu);
			continue;
		}
		A.inflight++;
		pthread_mutex_unlock(&A.mu);
		if (b)
			deliver_mailbox_batch(batch, n);
		else
			deliver_special(special);
		pthread_mutex_lock(&A.mu);

		struct job *done = NULL;
		if (b) {
			b->busy = 0;
			for (size_t i = 0; i < n; i++) {
				if (--batch[i]->job->left == 0) {
					batch[i]->job->next_done = done;
					done = batch[i]->job;
				}
				free(batch[i]);
			}
			if (!b->head) {
				struct ubox **pp = &A.boxes;
				while (*pp != b)
					pp = &(*pp)->next;
				*pp = b->next;
				free(b);
			} else {
				pthread_cond_signal(&A.cv);
			}
		} else {
			if (--special->job->left == 0)
				done = special->job;
			free(special);
		}
		if (done) {
			pthread_mutex_unlock(&A.mu);
			while (done) {
				struct job *nx = done->next_done;
				job_reply(done);
				done = nx;
			}
			pthread_mutex_lock(&A.mu);
		}
		if (--A.inflight == 0)
			pthread_cond_broadcast(&A.idle);
	}
	pthread_mutex_unlock(&A.mu);
	return NULL;
}

/* SIGTERM (a stop, or the master's death through PDEATHSIG): no new
 * deliveries start, those in flight finish and report, then the process
 * ends. What was not started stays in the queue for the next agent. */
static void *
signal_thread(void *arg)
{
	sigset_t *set = arg;
	int sig = 0;
	while (sigwait(set, &sig) != 0)
		;
	pthread_mutex_lock(&A.mu);
	A.terminating = 1;
	pthread_cond_broadcast(&A.cv);
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += STOP_WAIT_S;
	while (A.inflight > 0)
		if (pthread_cond_timedwait(&A.idle, &A.mu, &deadline) == ETIMEDOUT)
			break;
	int left = A.inflight;
	pthread_mutex_unlock(&A.mu);
	if (left)
		pt_warn("delivery agent: stopping with %d deliveries still being written", left);
	_exit(0);
}

/* Queue a decoded request's deliveries; takes ownership of j. */
static int
job_enqueue(struct job *j)
{
	struct task **tasks = calloc(j->req.n, sizeof *tasks);
	if (!tasks)
		return -1;
	for (size_t i = 0; i < j->req.n; i++) {
		tasks[i] = calloc(1, sizeof **tasks);
		if (!tasks[i]) {
			for (size_t k = 0; k < i; k++)
				free(tasks[k]);
			free(tasks);
			return -1;
		}
		tasks[i]->job = j;
		tasks[i]->idx = i;
	}
	/* One wakeup per piece of work a thread can take (a special task, a
	 * user's box that had nothing waiting): a broadcast would wake every
	 * thread to fight over the mutex for one delivery. */
	int wake = 0;
	pthread_mutex_lock(&A.mu);
	j->left = j->req.n;
	for (size_t i = 0; i < j->req.n; i++) {
		struct task *t = tasks[i];
		const struct pt_agent_item *it = &j->req.item[i];
		if (it->kind != PT_AGENT_MAILBOX) {
			if (A.special_tail)
				A.special_tail->next = t;
			else
				A.special_head = t;
			A.special_tail = t;
			wake++;
			continue;
		}
		struct ubox *b = A.boxes;
		while (b && strcmp(b->name, it->user.name) != 0)
			b = b->next;
		if (!b) {
			b = calloc(1, sizeof *b);
			if (!b) {
				pt_status_set(&j->st[i], 451, "4.3.0", "out of memory");
				j->left--;
				free(t);
				continue;
			}
			snprintf(b->name, sizeof b->name, "%s", it->user.name);
			/* New users go last: those already waiting come first. */
			struct ubox **pp = &A.boxes;
			while (*pp)
				pp = &(*pp)->next;
			*pp = b;
		}
		if (b->tail) {
			b->tail->next = t;
		} else {
			b->head = t;
			/* A busy box is picked up again by the thread writing it. */
			if (!b->busy)
				wake++;
		}
		b->tail = t;
	}
	int finished = j->left == 0;
	while (wake-- > 0)
		pthread_cond_signal(&A.cv);
	pthread_mutex_unlock(&A.mu);
	free(tasks);
	if (finished)
		job_reply(j);
	return 0;
}

static void
reply_error(uint32_t seq, size_t n, int code, const char *dsn, const char *text)
{
	static char buf[PT_AGENT_MSG_MAX];
	struct pt_status *st = calloc(n ? n : 1, sizeof *st);
	if (!st)
		return;
	for (size_t i = 0; i < n; i++)
		pt_status_set(&st[i], code, dsn, "%s", text);
	struct pt_agent_resp r = { seq, n, st };
	pthread_mutex_lock(&A.send_mu);
	ssize_t len = pt_agent_resp_encode(&r, buf, sizeof buf);
	if (len > 0)
		pt_agent_send(A.sock, buf, (size_t)len, -1);
	pthread_mutex_unlock(&A.send_mu);
	free(st);
}

int
pt_local_serve(const struct pt_config *conf, int sock, int as_root)
{
	static char buf[PT_AGENT_MSG_MAX];
	int nthreads = 4;
	if (conf && pt_config_owner(conf, "worker_threads"))
		nthreads = (int)pt_conf_int(conf, "worker_threads");
	/* These threads mostly wait for fsync: enough of them that an alias
	 * fanning out to several mailboxes writes them all at once. */
	nthreads = nthreads * 2 < 8 ? 8 : nthreads * 2;
	if (nthreads > 64)
		nthreads = 64;
	A.sock = sock;
	A.as_root = as_root;
	A.stopping = 0;
	A.nobody_uid = 65534;
	A.nobody_gid = 65534;
	if (conf && pt_config_owner(conf, "default_privs")) {
		struct passwd *pw = getpwnam(pt_conf_str(conf, "default_privs"));
		if (pw) {
			A.nobody_uid = pw->pw_uid;
			A.nobody_gid = pw->pw_gid;
		}
	}
	pthread_t *th = calloc((size_t)nthreads, sizeof *th);
	if (!th)
		return -1;
	int started = 0;
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&th[started], NULL, agent_thread, NULL) == 0)
			started++;
	if (started == 0) {
		free(th);
		return -1;
	}
	for (;;) {
		int fd;
		ssize_t n = pt_agent_recv(sock, buf, sizeof buf, &fd);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EMSGSIZE)
				continue;
			pt_error("delivery agent: receive: %s", strerror(errno));
			break;
		}
		struct job *j = calloc(1, sizeof *j);
		if (!j || pt_agent_req_decode(buf, (size_t)n, &j->req) != 0) {
			pt_error("delivery agent: malformed request ignored");
			free(j);
			if (fd >= 0)
				close(fd);
			continue;
		}
		j->st = calloc(j->req.n, sizeof *j->st);
		if (j->st && fd < 0 && (j->req.data || j->req.len == 0)) {
			/* Inline (or empty): buf is reused by the next receive. */
			j->copy = malloc((size_t)j->req.len + 1);
			if (!j->copy) {
				reply_error(j->req.seq, j->req.n, 451, "4.3.0", "out of memory");
				job_free(j);
				continue;
			}
			if (j->req.len)
				memcpy(j->copy, j->req.data, (size_t)j->req.len);
			j->copy[j->req.len] = 0;
			j->req.data = NULL;
			j->data = j->copy;
			if (job_enqueue(j) != 0) {
				reply_error(j->req.seq, j->req.n, 451, "4.3.0", "out of memory");
				job_free(j);
			}
			continue;
		}
		if (fd >= 0 && j->req.data) {
			/* Both an fd and inline data: not what the worker sends. */
			reply_error(j->req.seq, j->req.n, 451, "4.3.0", "malformed request");
			close(fd);
			job_free(j);
			continue;
		}
		if (fd < 0 || !j->st) {
			reply_error(j->req.seq, j->req.n, 451, "4.3.0", "no message data");
			if (fd >= 0)
				close(fd);
			job_free(j);
			continue;
		}
		if (j->req.len == 0) {
			j->data = "";
		} else {
			void *m = mmap(NULL, (size_t)j->req.len, PROT_READ, MAP_PRIVATE, fd, 0);
			if (m == MAP_FAILED) {
				reply_error(j->req.seq, j->req.n, 451, "4.3.0", "cannot map message data");
				close(fd);
				job_free(j);
				continue;
			}
			j->data = m;
			j->maplen = (size_t)j->req.len;
		}
		close(fd);
		if (job_enqueue(j) != 0) {
			reply_error(j->req.seq, j->req.n, 451, "4.3.0", "out of memory");
			job_free(j);
		}
	}
	pthread_mutex_lock(&A.mu);
	A.stopping = 1;
	pthread_cond_broadcast(&A.cv);
	pthread_mutex_unlock(&A.mu);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	free(th);
	return 0;
}

pid_t
pt_local_spawn(const struct pt_config *conf, int *worker_fd)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	/* Room for a burst of requests without blocking either side. */
	int sz = 4 * PT_AGENT_MSG_MAX;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	pid_t pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid > 0) {
		close(sv[1]);
		*worker_fd = sv[0];
		return pid;
	}
	close(sv[0]);
	pt_process_child_setup();
	pt_log_set_default_service("local");
	pt_proctitle_set("delivery");
	struct pt_ctx ctx = { .conf = conf, .loop = pt_loop_new(), .as_root = geteuid() == 0, .role = PT_ROLE_DELIVERY };
	if (pt_modules_init(&ctx) != 0) {
		pt_log(PT_LOG_FATAL, "delivery agent: module initialisation failed");
		_exit(1);
	}
	/* Blocked in every thread (they inherit the mask): only
	 * signal_thread takes them. */
	static sigset_t stop_set;
	sigemptyset(&stop_set);
	sigaddset(&stop_set, SIGTERM);
	sigaddset(&stop_set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
	pthread_t sig_th;
	if (pthread_create(&sig_th, NULL, signal_thread, &stop_set) != 0)
		pthread_sigmask(SIG_UNBLOCK, &stop_set, NULL);
	else
		pthread_detach(sig_th);
	int rc = pt_local_serve(conf, sv[1], geteuid() == 0);
	pt_modules_stop(&ctx);
	_exit(rc == 0 ? 0 : 1);
}
