/* The supervising master: takes the queue directory's lock (one queue, one
 * master), validates the config, binds the listeners (so a root master can
 * take low ports), forks the worker (network, queue; runs as mail_owner)
 * and the agents the loaded modules need (local delivery, auth, mail),
 * restarts only the process
 * that died (a new agent is handed to the running worker, whose sessions
 * carry on), replaces a worker whose event loop stopped turning
 * (watchdog), reloads on SIGHUP by starting a new generation beside the
 * old one (which drains its sessions), and stops on SIGTERM. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config_int.h"
#include "loader.h"
#include "log_int.h"
#include "metrics_int.h"
#include "net.h"
#include "postern/event.h"
#include "postern/log.h"
#include "passdb.h"
#include "process.h"
#include "pidfile.h"
#include "proctitle.h"
#include "queue.h"
#include "queue_int.h"
#include "record_int.h"
#include "runtime.h"
#include "session_int.h"

#define MAX_GENERATIONS 8
#define DRAIN_LIMIT_MS (10 * 60 * 1000)
/* Restart backoff per process kind: a child that ran STABLE_MS before it
 * died is restarted at once; quick deaths in a row wait longer each time,
 * up to the cap, so a crash loop cannot spin. */
#define STABLE_MS 10000
#define RESTART_FIRST_MS 100
#define RESTART_BACKOFF_MAX_MS 5000
/* The worker's loop bumps the heartbeat this often; the master looks
 * every WATCHDOG_CHECK_MS, and a stuck worker that ignores SIGABRT gets
 * SIGKILL after WATCHDOG_KILL_MS. */
#define HEARTBEAT_MS 500
#define WATCHDOG_CHECK_MS 1000
#define WATCHDOG_KILL_MS 1000
/* How long a starting master waits for its ports (see bind_listeners). */
#define BIND_RETRY_MS 3000

enum role { ROLE_WORKER, ROLE_LOCAL, ROLE_AUTH, ROLE_MAIL, NROLES };

static const char *const role_name[NROLES] = { "worker", "local delivery agent", "auth agent", "mail agent" };
/* Control message to the worker: a new agent of this kind, its socket attached. */
static const char role_tag[NROLES] = { 'W', 'L', 'A', 'M' };
/* The role label of the memory metrics (postern stats). */
static const char *const role_metric[NROLES] = { "worker", "delivery", "auth", "mail_agent" };

/* One page shared by the master and a generation's worker. */
struct heartbeat {
	uint64_t beats;
};

struct generation {
	struct pt_config *conf;
	struct pt_listen_sock *socks;
	size_t nsocks;
	pid_t pid[NROLES];
	uint64_t born[NROLES];   /* master loop clock at fork */
	int ctl;                 /* master's end of the worker's control socket, or -1 */
	struct heartbeat *hb;
	uint64_t hb_last;        /* beats last seen, and when they last changed */
	uint64_t hb_seen_ms;
	uint64_t abort_ms;       /* watchdog: SIGABRT sent then; 0 = not stuck */
	int restart_all;         /* the worker died: restart everything once all are gone */
	unsigned restart_delay;
	int draining;
	int in_use;
};

static struct {
	const char *conf_path;
	struct pt_loop *loop;
	struct generation gen[MAX_GENERATIONS];
	int current;
	int stopping;
	int as_root;
	uid_t owner_uid;
	gid_t owner_gid;
	char pid_file[512];
	char pid_base[256];
	int pid_dirfd;
	int lock_fd;
	unsigned backoff_ms[NROLES];
	struct pt_timer *restart_timer[NROLES];
	struct pt_timer *stop_timer;
	struct pt_timer *watchdog_timer;
	int signal_fd;
	/* The pid a child forked from this process expects as its parent,
	 * and in a child, the process that forked it. */
	pid_t self;
	pid_t parent;
	/* The generation whose listening sockets a forked child keeps. */
	struct generation *child_keep;
} M = { .pid_dirfd = -1, .lock_fd = -1, .signal_fd = -1 };

/* ---------- shared process plumbing ---------- */

void
pt_process_watch_parent(void)
{
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	/* The parent may have died before the line above: the signal would
	 * then never come, and this process would live on as an orphan. */
	if (M.parent > 0 && getppid() != M.parent)
		_exit(0);
}

void
pt_process_child_setup(void)
{
	sigset_t none;
	sigemptyset(&none);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	/* A mailbox hitting RLIMIT_FSIZE must fail the write with EFBIG (and
	 * be truncated back), not kill the delivery agent. */
	signal(SIGXFSZ, SIG_IGN);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* The kernel clears the parent-death signal on every uid or gid
	 * change: a child that switches users calls pt_process_watch_parent()
	 * again afterwards. */
	M.parent = M.self;
	pt_process_watch_parent();
	M.self = getpid();
	long page = sysconf(_SC_PAGESIZE);
	for (int i = 0; i < MAX_GENERATIONS; i++) {
		struct generation *g = &M.gen[i];
		if (!g->in_use)
			continue;
		/* Only the master may hold a control socket: the worker sees the
		 * master's death as end-of-file on its own end. */
		if (g->ctl >= 0)
			close(g->ctl);
		g->ctl = -1;
		if (g == M.child_keep)
			continue;
		if (g->hb)
			munmap(g->hb, (size_t)page);
		g->hb = NULL;
		/* Listening sockets stay with the master and the worker serving
		 * them: an agent holding one would keep a port bound after a
		 * reload, or after the master died. */
		for (size_t k = 0; k < g->nsocks; k++)
			if (g->socks[k].fd >= 0) {
				close(g->socks[k].fd);
				/* A grandchild (mail process) runs this again: the
				 * number may be reused by then. */
				g->socks[k].fd = -1;
			}
	}
	/* The queue lock belongs to the master alone, so that it goes with it. */
	if (M.lock_fd >= 0)
		close(M.lock_fd);
	M.lock_fd = -1;
	if (M.pid_dirfd >= 0)
		close(M.pid_dirfd);
	M.pid_dirfd = -1;
	if (M.signal_fd >= 0)
		close(M.signal_fd);
	M.signal_fd = -1;
}

int
pt_process_drop_privileges(uid_t uid, gid_t gid)
{
	if (geteuid() != 0)
		return 0;
	if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0)
		return -1;
	/* Paranoia: regaining root must be impossible now. */
	if (uid != 0 && setuid(0) == 0)
		return -1;
	return 0;
}

/* ---------- worker process ---------- */

static struct {
	struct pt_loop *loop;
	struct pt_timer *drain_timer;
	uint64_t drain_started;
	struct heartbeat *hb;
	int ctl;
	int auth_fd;
} W = { .ctl = -1, .auth_fd = -1 };

static void
worker_exit(int status)
{
	struct pt_ctx ctx = { .conf = pt_live_conf, .loop = W.loop, .as_root = M.as_root, .role = PT_ROLE_WORKER };
	pt_queue_stop();
	pt_modules_stop(&ctx);
	pt_record_close();
	_exit(status);
}

static void
worker_drain_check(struct pt_loop *loop, void *arg)
{
	(void)arg;
	W.drain_timer = NULL;
	if (pt_conn_count() == 0 || pt_loop_now(loop) - W.drain_started > DRAIN_LIMIT_MS) {
		pt_conn_close_all("shutdown");
		pt_loop_stop(loop);
		return;
	}
	W.drain_timer = pt_timer_add(loop, 100, worker_drain_check, NULL);
}

static void
worker_stop_now(struct pt_loop *loop)
{
	pt_listen_stop(loop);
	pt_conn_close_all("shutdown");
	pt_loop_stop(loop);
}

static void
worker_signal(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	(void)events;
	(void)arg;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			worker_stop_now(loop);
		} else if (si.ssi_signo == SIGUSR1 && W.drain_timer == NULL) {
			/* Old generation after a reload: no new sessions, no queue
			 * runs; finish what is in flight. */
			pt_log(PT_LOG_INFO, "draining: %zu session(s) in progress", pt_conn_count());
			pt_listen_stop(loop);
			pt_queue_stop();
			W.drain_started = pt_loop_now(loop);
			W.drain_timer = pt_timer_add(loop, 0, worker_drain_check, NULL);
		} else if (si.ssi_signo == SIGUSR2) {
			pt_queue_flush_now();
		}
	}
}

/* The master hands over a restarted agent, or is gone (end of file). */
static void
worker_ctl(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	(void)events;
	(void)arg;
	for (;;) {
		char msg[8];
		int afd = -1;
		ssize_t n = pt_agent_recv(fd, msg, sizeof msg, &afd);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && errno == EMSGSIZE)
			continue;
		if (n <= 0) {
			if (afd >= 0)
				close(afd);
			/* Closed only by the master's death (a kill -9 it could not
			 * announce): nobody supervises this worker any more, and the
			 * next master needs its ports. */
			pt_log(PT_LOG_WARNING, "the master is gone: stopping");
			pt_loop_unwatch(loop, fd);
			close(fd);
			W.ctl = -1;
			worker_stop_now(loop);
			return;
		}
		if (n != 1 || afd < 0) {
			if (afd >= 0)
				close(afd);
			continue;
		}
		if (msg[0] == role_tag[ROLE_LOCAL]) {
			pt_qagent_detach();
			pt_qagent_attach(afd);
			pt_log(PT_LOG_INFO, "new local delivery agent: retrying queued mail");
			/* Mail deferred while the agent was away need not wait for
			 * its backoff. */
			pt_queue_flush_now();
		} else if (msg[0] == role_tag[ROLE_AUTH]) {
			pt_auth_set_agent_fd(afd);
			if (W.auth_fd >= 0)
				close(W.auth_fd);
			W.auth_fd = afd;
			pt_log(PT_LOG_INFO, "new auth agent");
		} else if (msg[0] == role_tag[ROLE_MAIL]) {
			pt_session_set_agent(loop, afd);
			pt_log(PT_LOG_INFO, "new mail agent");
		} else {
			close(afd);
		}
	}
}

/* A timer, so it runs only when the loop turns: a stuck loop stops the
 * beats, and the master's watchdog notices. */
static void
worker_beat(struct pt_loop *loop, void *arg)
{
	(void)arg;
	__atomic_add_fetch(&W.hb->beats, 1, __ATOMIC_RELAXED);
	pt_timer_add(loop, HEARTBEAT_MS, worker_beat, NULL);
}

static void
worker_main(struct generation *g, int local_fd, int auth_fd, int mail_fd, int ctl_fd)
{
	M.child_keep = g;
	pt_process_child_setup();
	pt_log_set_default_service("worker");
	pt_log_set_name(pt_conf_str(g->conf, "syslog_name"));
	pt_proctitle_set("worker");
	pt_live_conf = g->conf;
	if (M.as_root) {
		if (pt_process_drop_privileges(M.owner_uid, M.owner_gid) != 0) {
			pt_log(PT_LOG_FATAL, "cannot drop privileges to mail_owner: %s", strerror(errno));
			_exit(1);
		}
		/* The uid change cleared the parent-death signal. */
		pt_process_watch_parent();
	}
	W.hb = g->hb;
	W.ctl = ctl_fd;
	W.auth_fd = auth_fd;

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

	W.loop = pt_loop_new();
	if (W.loop == NULL || sfd < 0) {
		pt_log(PT_LOG_FATAL, "cannot create the event loop: %s", strerror(errno));
		_exit(1);
	}
	pt_loop_watch(W.loop, sfd, PT_EV_READ, worker_signal, NULL);
	int flags = fcntl(ctl_fd, F_GETFL);
	if (flags >= 0)
		fcntl(ctl_fd, F_SETFL, flags | O_NONBLOCK);
	pt_loop_watch(W.loop, ctl_fd, PT_EV_READ, worker_ctl, NULL);
	pt_work_set_threads((int)pt_conf_int(g->conf, "worker_threads"));
	pt_record_open(g->conf);

	char err[512];
	if (pt_tls_configure(g->conf, err, sizeof err) != 0) {
		pt_log(PT_LOG_FATAL, "%s", err);
		_exit(1);
	}
	pt_auth_set_agent_fd(auth_fd);
	pt_session_set_agent(W.loop, mail_fd);
	if (pt_auth_init(g->conf) != 0)
		_exit(1);
	struct pt_ctx ctx = { .conf = g->conf, .loop = W.loop, .as_root = M.as_root, .role = PT_ROLE_WORKER };
	if (pt_modules_init(&ctx) != 0) {
		pt_log(PT_LOG_FATAL, "module initialisation failed");
		_exit(1);
	}
	if (pt_queue_start(W.loop, g->conf, local_fd) != 0)
		_exit(1);
	if (pt_listen_start(W.loop, g->conf, g->socks, g->nsocks) != 0) {
		pt_log(PT_LOG_FATAL, "cannot start listeners");
		_exit(1);
	}
	if (W.hb)
		pt_timer_add(W.loop, 0, worker_beat, NULL);
	pt_loop_run(W.loop);
	worker_exit(0);
}

/* ---------- master: generations ---------- */

static int
role_of(const struct generation *g, pid_t pid)
{
	for (int r = 0; r < NROLES; r++)
		if (g->pid[r] > 0 && g->pid[r] == pid)
			return r;
	return -1;
}

static int
alive_count(const struct generation *g)
{
	int n = 0;
	for (int r = 0; r < NROLES; r++)
		n += g->pid[r] > 0;
	return n;
}

static int
generation_init(struct generation *g, struct pt_config *c)
{
	memset(g, 0, sizeof *g);
	g->in_use = 1;
	g->conf = c;
	g->ctl = -1;
	void *p = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	               -1, 0);
	/* Without the page the worker simply has no watchdog. */
	g->hb = p == MAP_FAILED ? NULL : p;
	return 0;
}

/* One listener declaration's sockets. retry_busy: at start, a port in
 * use is reported as -2 (quietly) so that the caller may try again. */
static int
open_one(struct generation *g, struct generation *prev, const struct pt_listener_decl *d, int retry_busy)
{
	char err[512];
	if (pt_listen_open(g->conf, d, &g->socks, &g->nsocks, prev ? prev->socks : NULL, prev ? prev->nsocks : 0,
	                   err, sizeof err) == 0)
		return 0;
	if (retry_busy && strstr(err, strerror(EADDRINUSE)))
		return -2;
	pt_log(PT_LOG_ERROR, "%s", err);
	/* At start the admin is watching the terminal, not the log. */
	if (prev == NULL)
		fprintf(stderr, "postern: %s\n", err);
	return -1;
}

static int
open_listeners(struct generation *g, struct generation *prev, int retry_busy)
{
	for (size_t i = 0; i < pt_modules_count(); i++) {
		const struct pt_module *m = pt_modules_get(i);
		if (!pt_protocol_enabled(g->conf, m->name))
			continue;
		for (const struct pt_listener_decl *d = m->listeners; d && d->param; d++) {
			int rc = open_one(g, prev, d, retry_busy);
			if (rc != 0)
				return rc;
		}
	}
	/* The core's own listener: the metrics endpoint (off when empty). */
	return open_one(g, prev, &pt_metrics_listener, retry_busy);
}

/* An agent runs only for a loaded module that needs it (the PT_ROLE_*
 * bits in module.h): the delivery agent for a module that runs there,
 * the mail agent for one that hands logged-in sessions from its
 * listeners to mail processes, and as root the auth agent for one whose
 * sessions check passwords (rootless, checks run on the worker's pool
 * threads). */
static int
agent_needed(const struct generation *g, enum role r)
{
	for (size_t i = 0; i < pt_modules_count(); i++) {
		const struct pt_module *m = pt_modules_get(i);
		int serves = m->listeners && m->listeners->param && pt_protocol_enabled(g->conf, m->name);
		if (r == ROLE_LOCAL && (m->roles & PT_ROLE_DELIVERY))
			return 1;
		if (r == ROLE_MAIL && serves && (m->roles & PT_ROLE_MAIL))
			return 1;
		if (r == ROLE_AUTH && M.as_root && serves && (m->roles & PT_ROLE_AUTH))
			return 1;
	}
	return 0;
}

/* Forks an agent of kind r; *fd is the worker's end of its socket. */
static pid_t
spawn_agent(struct generation *g, enum role r, int *fd, const int *close_fds, size_t nclose)
{
	pid_t pid = -1;
	*fd = -1;
	if (r == ROLE_LOCAL) {
		pid = pt_local_spawn(g->conf, fd);
		if (pid < 0)
			pt_log(PT_LOG_ERROR, "cannot start the local delivery agent");
	} else if (r == ROLE_AUTH) {
		pid = pt_auth_agent_spawn(g->conf, fd);
	} else if (r == ROLE_MAIL) {
		pid = pt_mail_agent_spawn(g->conf, fd, close_fds, nclose);
		if (pid < 0)
			pt_log(PT_LOG_ERROR, "cannot start the mail agent");
	}
	if (pid > 0) {
		g->pid[r] = pid;
		g->born[r] = pt_mono_ms();
		pt_metrics_proc_add(pid, role_metric[r]);
	}
	return pid;
}

static void
kill_started(struct generation *g)
{
	for (int r = 0; r < NROLES; r++)
		if (g->pid[r] > 0)
			kill(g->pid[r], SIGTERM);
}

/* The worker's ends of the agent sockets, once the worker has them (or
 * failed to start); later children must not inherit a stale number. */
static void
close_agent_fds(int local_fd, int auth_fd, int mail_fd)
{
	if (local_fd >= 0)
		close(local_fd);
	if (auth_fd >= 0)
		close(auth_fd);
	if (mail_fd >= 0)
		close(mail_fd);
	pt_auth_default_agent_fd = -1;
}

/* Starts every process of g; on failure the ones started are told to
 * stop and -1 is returned (g->restart_all is then set). */
static int
start_processes(struct generation *g)
{
	int local_fd = -1, auth_fd = -1, mail_fd = -1, cv[2] = { -1, -1 };
	g->restart_all = 1;
	if (agent_needed(g, ROLE_LOCAL) && spawn_agent(g, ROLE_LOCAL, &local_fd, NULL, 0) < 0)
		goto fail;
	if (agent_needed(g, ROLE_AUTH) && spawn_agent(g, ROLE_AUTH, &auth_fd, NULL, 0) < 0)
		goto fail;
	/* Post-login sessions: the per-user mail processes hang off it. */
	const int inherited[2] = { local_fd, auth_fd };
	if (agent_needed(g, ROLE_MAIL) && spawn_agent(g, ROLE_MAIL, &mail_fd, inherited, 2) < 0)
		goto fail;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cv) != 0) {
		pt_log(PT_LOG_ERROR, "worker control socket: %s", strerror(errno));
		goto fail;
	}
	if (g->ctl >= 0)
		close(g->ctl);
	g->ctl = cv[0];
	if (g->hb) {
		g->hb_last = __atomic_load_n(&g->hb->beats, __ATOMIC_RELAXED);
		g->hb_seen_ms = pt_mono_ms();
	}
	g->abort_ms = 0;
	pid_t pid = fork();
	if (pid < 0) {
		pt_log(PT_LOG_ERROR, "fork: %s", strerror(errno));
		goto fail;
	}
	if (pid == 0)
		worker_main(g, local_fd, auth_fd, mail_fd, cv[1]);
	close(cv[1]);
	close_agent_fds(local_fd, auth_fd, mail_fd);
	g->pid[ROLE_WORKER] = pid;
	g->born[ROLE_WORKER] = pt_mono_ms();
	pt_metrics_proc_add(pid, role_metric[ROLE_WORKER]);
	g->restart_all = 0;
	char line[256];
	size_t o = 0;
	for (int r = 0; r < NROLES; r++)
		if (g->pid[r] > 0 && o < sizeof line)
			o += (size_t)snprintf(line + o, sizeof line - o, "%s%s (pid %ld)", o ? ", " : "", role_name[r],
			                      (long)g->pid[r]);
	pt_log(PT_LOG_INFO, "started %s", line);
	return 0;
fail:
	if (cv[1] >= 0)
		close(cv[1]);
	close_agent_fds(local_fd, auth_fd, mail_fd);
	kill_started(g);
	return -1;
}

/* A restarted agent joins the running worker: its sessions carry on. */
static int
restart_agent(struct generation *g, enum role r)
{
	int fd;
	if (spawn_agent(g, r, &fd, NULL, 0) < 0)
		return -1;
	char tag = role_tag[r];
	if (g->ctl < 0 || pt_agent_send(g->ctl, &tag, 1, fd) != 0) {
		/* The worker is gone too; the agent sees end of file and exits,
		 * and the whole generation restarts. */
		pt_log(PT_LOG_WARNING, "cannot hand the new %s to the worker: %s", role_name[r],
		       g->ctl < 0 ? "no worker" : strerror(errno));
	}
	close(fd);
	if (r == ROLE_AUTH)
		pt_auth_default_agent_fd = -1;
	pt_log(PT_LOG_INFO, "started %s (pid %ld)", role_name[r], (long)g->pid[r]);
	return 0;
}

static void
signal_generation(struct generation *g, int sig)
{
	if (g->pid[ROLE_WORKER] > 0)
		kill(g->pid[ROLE_WORKER], sig);
	if (sig != SIGUSR1 && sig != SIGUSR2)
		for (int r = ROLE_LOCAL; r < NROLES; r++)
			if (g->pid[r] > 0)
				kill(g->pid[r], sig);
}

static void
free_generation(struct generation *g, int close_socks)
{
	if (close_socks)
		pt_listen_close_all(g->socks, g->nsocks);
	else
		free(g->socks);
	if (g->conf && g->conf != pt_live_conf)
		pt_config_free(g->conf);
	if (g->ctl >= 0)
		close(g->ctl);
	if (g->hb)
		munmap(g->hb, (size_t)sysconf(_SC_PAGESIZE));
	memset(g, 0, sizeof *g);
	g->ctl = -1;
}

static int
all_children_gone(void)
{
	for (int i = 0; i < MAX_GENERATIONS; i++)
		if (M.gen[i].in_use && alive_count(&M.gen[i]) > 0)
			return 0;
	return 1;
}

static unsigned
next_backoff(enum role r, uint64_t uptime)
{
	if (uptime >= STABLE_MS)
		M.backoff_ms[r] = 0;
	else if (M.backoff_ms[r] == 0)
		M.backoff_ms[r] = RESTART_FIRST_MS;
	else if ((M.backoff_ms[r] *= 2) > RESTART_BACKOFF_MAX_MS)
		M.backoff_ms[r] = RESTART_BACKOFF_MAX_MS;
	return M.backoff_ms[r];
}

static void restart_due(struct pt_loop *loop, void *arg);

static void
schedule_restart(enum role r, unsigned ms)
{
	if (M.restart_timer[r] == NULL)
		M.restart_timer[r] = pt_timer_add(M.loop, ms, restart_due, (void *)(intptr_t)r);
}

static void
maybe_restart_all(struct generation *g)
{
	if (g->restart_all && alive_count(g) == 0 && !M.stopping) {
		pt_log(PT_LOG_WARNING, "restarting in %u ms", g->restart_delay);
		schedule_restart(ROLE_WORKER, g->restart_delay);
	}
}

static void
restart_due(struct pt_loop *loop, void *arg)
{
	(void)loop;
	enum role r = (enum role)(intptr_t)arg;
	M.restart_timer[r] = NULL;
	struct generation *g = &M.gen[M.current];
	if (M.stopping)
		return;
	if (r == ROLE_WORKER) {
		if (!g->restart_all || alive_count(g) > 0)
			return;
		pt_log(PT_LOG_INFO, "restarting worker processes");
		if (start_processes(g) != 0) {
			g->restart_delay = next_backoff(ROLE_WORKER, 0);
			maybe_restart_all(g);
		}
		return;
	}
	/* A dead worker takes the whole generation down and back up. */
	if (g->restart_all || g->pid[r] > 0 || g->pid[ROLE_WORKER] <= 0)
		return;
	if (restart_agent(g, r) != 0)
		schedule_restart(r, next_backoff(r, 0));
}

/* The worker died: its local delivery agent sees end of file, finishes
 * the appends in flight and exits by itself; a SIGTERM would cut an
 * append short. It finishes in a slot of its own, so the restart does
 * not wait for it (a delivery it finishes unheard is made again: a
 * duplicate, never a truncated message). */
static void
retire_local_agent(struct generation *g)
{
	if (g->pid[ROLE_LOCAL] <= 0)
		return;
	for (int i = 0; i < MAX_GENERATIONS; i++) {
		struct generation *slot = &M.gen[i];
		if (slot->in_use)
			continue;
		memset(slot, 0, sizeof *slot);
		slot->ctl = -1;
		slot->in_use = 1;
		slot->draining = 1;
		slot->pid[ROLE_LOCAL] = g->pid[ROLE_LOCAL];
		slot->born[ROLE_LOCAL] = g->born[ROLE_LOCAL];
		g->pid[ROLE_LOCAL] = 0;
		return;
	}
	/* No free slot: it gets SIGTERM with the rest. */
}

static void
child_died(struct generation *g, enum role r, int status)
{
	pid_t pid = g->pid[r];
	int expected = M.stopping || g->draining;
	if (WIFSIGNALED(status))
		pt_log(expected ? PT_LOG_INFO : PT_LOG_WARNING, "%s (pid %ld) killed by signal %d", role_name[r],
		       (long)pid, WTERMSIG(status));
	else if (!expected || WEXITSTATUS(status) != 0)
		pt_log(expected ? PT_LOG_INFO : PT_LOG_WARNING, "%s (pid %ld) exited with status %d", role_name[r],
		       (long)pid, WEXITSTATUS(status));
	uint64_t uptime = pt_mono_ms() - g->born[r];
	g->pid[r] = 0;
	pt_metrics_proc_del(pid);
	if (r == ROLE_WORKER) {
		if (g->ctl >= 0)
			close(g->ctl);
		g->ctl = -1;
		g->abort_ms = 0;
	}
	if (g->draining) {
		/* The agents of a drained generation end with its worker. */
		if (g->pid[ROLE_WORKER] == 0)
			signal_generation(g, SIGTERM);
		if (alive_count(g) == 0)
			free_generation(g, 0);
		return;
	}
	if (M.stopping)
		return;
	if (r == ROLE_WORKER && !g->restart_all) {
		/* The worker relays every session and holds every agent's
		 * socket: with it gone, the generation starts afresh. */
		g->restart_all = 1;
		g->restart_delay = next_backoff(ROLE_WORKER, uptime);
		retire_local_agent(g);
		signal_generation(g, SIGTERM);
	}
	if (g->restart_all) {
		maybe_restart_all(g);
		return;
	}
	/* Only this agent: the worker and its sessions carry on. */
	unsigned delay = next_backoff(r, uptime);
	pt_log(PT_LOG_WARNING, "restarting the %s in %u ms", role_name[r], delay);
	schedule_restart(r, delay);
}

static void
reap_children(struct pt_loop *loop)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < MAX_GENERATIONS; i++) {
			struct generation *g = &M.gen[i];
			int r = g->in_use ? role_of(g, pid) : -1;
			if (r < 0)
				continue;
			child_died(g, (enum role)r, status);
			break;
		}
	}
	if (M.stopping && all_children_gone())
		pt_loop_stop(loop);
}

/* The watchdog: a worker whose heartbeat has not moved for
 * worker_watchdog_timeout gets SIGABRT (a core, where they are enabled),
 * then SIGKILL; its death restarts the generation. Acknowledged mail is
 * safe in the queue files. */
static void
watchdog(struct pt_loop *loop, void *arg)
{
	(void)arg;
	M.watchdog_timer = NULL;
	uint64_t now = pt_mono_ms();
	for (int i = 0; i < MAX_GENERATIONS; i++) {
		struct generation *g = &M.gen[i];
		pid_t pid = g->pid[ROLE_WORKER];
		if (!g->in_use || pid <= 0 || g->hb == NULL)
			continue;
		uint64_t beats = __atomic_load_n(&g->hb->beats, __ATOMIC_RELAXED);
		if (beats != g->hb_last) {
			g->hb_last = beats;
			g->hb_seen_ms = now;
			continue;
		}
		if (g->abort_ms) {
			if (now - g->abort_ms >= WATCHDOG_KILL_MS)
				kill(pid, SIGKILL);
			continue;
		}
		long long limit = pt_conf_int(g->conf, "worker_watchdog_timeout");
		if (limit <= 0 || now - g->hb_seen_ms < (uint64_t)limit * 1000u)
			continue;
		pt_log(PT_LOG_ERROR, "worker %ld stuck for %llus, replacing", (long)pid,
		       (unsigned long long)((now - g->hb_seen_ms) / 1000u));
		kill(pid, SIGABRT);
		/* A stopped process acts on nothing but SIGKILL until continued. */
		kill(pid, SIGCONT);
		g->abort_ms = now;
	}
	M.watchdog_timer = pt_timer_add(loop, WATCHDOG_CHECK_MS, watchdog, NULL);
}

/* pt_listen_open moves sockets it can reuse out of the old generation
 * (their fd there becomes -1); a refused reload must return them. */
static void
give_back_sockets(struct generation *g, struct generation *old)
{
	for (size_t i = 0; i < g->nsocks; i++)
		for (size_t k = 0; k < old->nsocks; k++)
			if (old->socks[k].fd < 0 && g->socks[i].fd >= 0 &&
			    old->socks[k].info.port == g->socks[i].info.port &&
			    strcmp(old->socks[k].info.addr, g->socks[i].info.addr) == 0) {
				old->socks[k].fd = g->socks[i].fd;
				g->socks[i].fd = -1;
			}
}

/* 0 when the new configuration is in use; -1 with the reason in why. */
static int
reload(struct pt_loop *loop, char *why, size_t whylen)
{
	pt_log(PT_LOG_INFO, "reload: reading %s", M.conf_path);
	struct generation *old = &M.gen[M.current];
	struct pt_config *c = pt_runtime_load(M.conf_path);
	if (c == NULL || pt_config_error_count(c) > 0) {
		int n = c ? pt_config_error_count(c) : 0;
		for (int i = 0; i < n; i++)
			pt_log(PT_LOG_ERROR, "reload refused: %s", pt_config_error(c, i));
		if (c == NULL)
			pt_log(PT_LOG_ERROR, "reload refused: out of memory");
		pt_log(PT_LOG_ERROR, "reload refused: keeping the running configuration");
		if (n > 1)
			snprintf(why, whylen, "%s (and %d more errors)", pt_config_error(c, 0), n - 1);
		else
			snprintf(why, whylen, "%s", n ? pt_config_error(c, 0) : "out of memory");
		if (c)
			pt_config_free(c);
		/* The failed load replaced nothing the old generation uses, but
		 * the loader's module list must match the live config again. */
		pt_modules_restore();
		return -1;
	}
	char err[512];
	if (pt_tls_configure(c, err, sizeof err) != 0) {
		pt_log(PT_LOG_ERROR, "reload refused: %s", err);
		snprintf(why, whylen, "%s", err);
		pt_config_free(c);
		pt_modules_restore();
		return -1;
	}
	int slot = -1;
	for (int i = 0; i < MAX_GENERATIONS; i++)
		if (!M.gen[i].in_use) {
			slot = i;
			break;
		}
	if (slot < 0) {
		pt_log(PT_LOG_ERROR, "reload refused: too many generations still draining");
		snprintf(why, whylen, "too many generations still draining");
		pt_config_free(c);
		pt_modules_restore();
		return -1;
	}
	struct generation *g = &M.gen[slot];
	generation_init(g, c);
	if (open_listeners(g, old, 0) != 0) {
		pt_log(PT_LOG_ERROR, "reload refused: keeping the running configuration");
		snprintf(why, whylen, "cannot open the listeners (see the log)");
		give_back_sockets(g, old);
		pt_listen_close_all(g->socks, g->nsocks);
		g->socks = NULL;
		g->conf = NULL;
		free_generation(g, 0);
		pt_config_free(c);
		pt_modules_restore();
		return -1;
	}
	pt_modules_save();
	if (start_processes(g) != 0) {
		pt_log(PT_LOG_ERROR, "reload: cannot start the new generation; keeping the old one");
		snprintf(why, whylen, "cannot start the new generation's processes (see the log)");
		pt_listen_close_all(g->socks, g->nsocks);
		g->socks = NULL;
		g->nsocks = 0;
		/* Started agents still have to be reaped: drain the slot. */
		g->draining = 1;
		if (alive_count(g) == 0) {
			g->conf = NULL;
			free_generation(g, 0);
			pt_config_free(c);
		}
		return -1;
	}
	/* The old worker stops accepting and finishes its sessions. */
	old->draining = 1;
	old->restart_all = 0;
	signal_generation(old, SIGUSR1);
	pt_listen_close_all(old->socks, old->nsocks);
	old->socks = NULL;
	old->nsocks = 0;
	if (alive_count(old) == 0)
		free_generation(old, 0);
	M.current = slot;
	pt_live_conf = c;
	pt_log_set_name(pt_conf_str(c, "syslog_name"));
	pt_log_open(pt_conf_str(c, "maillog_file"));
	(void)loop;
	pt_metric_inc(pt_metric_counter("postern_reloads", "configuration reloads (new generations started)", NULL));
	pt_log(PT_LOG_INFO, "reload: configuration reloaded");
	return 0;
}

/* `postern reload` waits for the master's answer: after each SIGHUP the
 * master writes "PID ok" or "PID refused: REASON" (PID: the sender of the
 * signal) to PIDFILE.reload beside the pid file, in the same trusted
 * directory, under a temporary name then renamed (a reader sees a whole
 * answer). */
void
pt_pid_reload_answer_name(char *out, size_t len, const char *pid_base)
{
	snprintf(out, len, "%.240s.reload", pid_base);
}

static void
write_reload_answer(pid_t sender, const char *why)
{
	if (M.pid_dirfd < 0)
		return;
	char name[300], tmp[340], buf[700];
	pt_pid_reload_answer_name(name, sizeof name, M.pid_base);
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", name, (long)getpid());
	int len = snprintf(buf, sizeof buf, "%ld %s%.600s\n", (long)sender, why ? "refused: " : "ok",
	                   why ? why : "");
	unlinkat(M.pid_dirfd, tmp, 0);
	int fd = openat(M.pid_dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	int ok = write(fd, buf, (size_t)len) == len;
	if (close(fd) != 0 || !ok || renameat(M.pid_dirfd, tmp, M.pid_dirfd, name) != 0)
		unlinkat(M.pid_dirfd, tmp, 0);
}

/* Stop, bounded: what is still alive 800 ms after SIGTERM is killed, but
 * the local delivery agent finishes the appends it is writing first (it
 * bounds that itself at 10 s; a kill mid-append would leave the mbox to
 * be repaired at its next lock), so it gets until STOP_LOCAL_MS. */
#define STOP_GRACE_MS 800
#define STOP_LOCAL_MS 11000

/* POSTERN_STOP_GRACE_MS (100 ms to 10 min) lengthens the grace for a
 * daemon run under valgrind, whose children need seconds to write their
 * leak reports at exit; not a parameter: production wants the bound. */
static long
stop_grace_ms(void)
{
	const char *v = getenv("POSTERN_STOP_GRACE_MS");
	char *end;
	long ms = v ? strtol(v, &end, 10) : 0;

	if (v == NULL || end == v || *end != '\0' || ms < 100 || ms > 600000)
		return STOP_GRACE_MS;
	return ms;
}

static void
stop_timeout(struct pt_loop *loop, void *arg)
{
	int last = arg != NULL;

	M.stop_timer = NULL;
	for (int i = 0; i < MAX_GENERATIONS; i++) {
		struct generation *g = &M.gen[i];

		if (!g->in_use)
			continue;
		for (int r = 0; r < NROLES; r++)
			if (g->pid[r] > 0 && (last || r != ROLE_LOCAL))
				kill(g->pid[r], SIGKILL);
	}
	if (!last) {
		long grace = stop_grace_ms();
		M.stop_timer = pt_timer_add(loop, grace < STOP_LOCAL_MS ? STOP_LOCAL_MS - grace : 1, stop_timeout, &M);
	}
}

static void
master_signal(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	(void)events;
	(void)arg;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			reap_children(loop);
			break;
		case SIGHUP: {
			char why[600] = "";
			if (M.stopping)
				snprintf(why, sizeof why, "the server is stopping");
			else if (reload(loop, why, sizeof why) != 0 && why[0] == '\0')
				snprintf(why, sizeof why, "see the log");
			write_reload_answer((pid_t)si.ssi_pid, why[0] ? why : NULL);
			break;
		}
		case SIGUSR2:
			signal_generation(&M.gen[M.current], SIGUSR2);
			break;
		case SIGTERM:
		case SIGINT:
			if (M.stopping)
				break;
			pt_log(PT_LOG_INFO, "stopping");
			M.stopping = 1;
			for (int i = 0; i < MAX_GENERATIONS; i++)
				if (M.gen[i].in_use)
					signal_generation(&M.gen[i], SIGTERM);
			/* Graceful, but bounded (stop_timeout). */
			M.stop_timer = pt_timer_add(loop, stop_grace_ms(), stop_timeout, NULL);
			if (all_children_gone())
				pt_loop_stop(loop);
			break;
		}
	}
}

/* ---------- the queue lock: one queue, one master ---------- */

/* The process holding a flock on the file (dev, ino), from /proc/locks
 * (kernel bookkeeping, which no file content can forge); 0 if none. */
static pid_t
flock_holder(dev_t dev, ino_t ino)
{
	FILE *f = fopen("/proc/locks", "re");
	if (f == NULL)
		return 0;
	char line[256];
	pid_t found = 0;
	while (found == 0 && fgets(line, sizeof line, f)) {
		/* "N: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE START END";
		 * waiters show as "N: -> FLOCK ...". */
		const char *p = strchr(line, ':');
		char kind[16], how[16], rw[16];
		long pid;
		unsigned maj, min;
		unsigned long long ino_seen;
		if (p == NULL || strstr(line, "->") ||
		    sscanf(p + 1, "%15s %15s %15s %ld %x:%x:%llu", kind, how, rw, &pid, &maj, &min, &ino_seen) != 7)
			continue;
		if (strcmp(kind, "FLOCK") == 0 && pid > 0 && ino_seen == (unsigned long long)ino &&
		    maj == major(dev) && min == minor(dev))
			found = (pid_t)pid;
	}
	fclose(f);
	return found;
}

static int
mkdir_parents(const char *path, mode_t mode)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return 0;
}

/* The master of the queue directory qdir, or 0 when none runs. */
pid_t
pt_pid_queue_master(const char *qdir)
{
	struct stat st;
	if (stat(qdir, &st) != 0 || !S_ISDIR(st.st_mode))
		return 0;
	return flock_holder(st.st_dev, st.st_ino);
}

/* Before anything is changed: an exclusive lock on the queue directory
 * itself (a directory nobody can swap for another, unlike a file in it),
 * held by the master alone, so it is gone the instant the master is. */
static int
lock_queue(const char *qdir)
{
	if (mkdir_parents(qdir, 0755) != 0 || (mkdir(qdir, 0755) != 0 && errno != EEXIST)) {
		fprintf(stderr, "postern: cannot create queue_directory %s: %s\n", qdir, strerror(errno));
		return -1;
	}
	int fd = open(qdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "postern: cannot open queue_directory %s: %s\n", qdir, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		struct stat st;
		pid_t other = fstat(fd, &st) == 0 ? flock_holder(st.st_dev, st.st_ino) : 0;
		close(fd);
		if (e == EWOULDBLOCK && other > 0)
			fprintf(stderr, "postern: already running: the master with pid %ld serves queue_directory %s\n",
			        (long)other, qdir);
		else if (e == EWOULDBLOCK)
			fprintf(stderr, "postern: already running: another master serves queue_directory %s\n", qdir);
		else
			fprintf(stderr, "postern: cannot lock queue_directory %s: %s\n", qdir, strerror(e));
		return -1;
	}
	M.lock_fd = fd;
	return 0;
}

/* ---------- pid file ---------- */

/* Root writes into, or believes, only a directory no other user can
 * change. */
static int
dir_trusted(const struct stat *st)
{
	return st->st_uid == 0 && !(st->st_mode & (S_IWGRP | S_IWOTH));
}

void
pt_pid_split_path(const char *path, char *dir, size_t dirlen, char *base, size_t baselen)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL) {
		snprintf(dir, dirlen, ".");
		snprintf(base, baselen, "%s", path);
	} else if (slash == path) {
		snprintf(dir, dirlen, "/");
		snprintf(base, baselen, "%s", slash + 1);
	} else {
		snprintf(dir, dirlen, "%.*s", (int)(slash - path), path);
		snprintf(base, baselen, "%s", slash + 1);
	}
}

/* Opens the directory of a pid file. As root it must be a directory only
 * root can change; a symbolic link is followed only when it sits in such
 * a directory itself (so nobody else can have planted it). *why says
 * what is wrong on -1. */
int
pt_pid_open_dir(const char *dir, const char **why)
{
	int as_root = geteuid() == 0;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (as_root ? O_NOFOLLOW : 0));
	if (fd < 0 && (errno == ELOOP || errno == ENOTDIR) && as_root) {
		char parent[512], base[256];
		struct stat pst;
		pt_pid_split_path(dir, parent, sizeof parent, base, sizeof base);
		if (stat(parent, &pst) != 0 || !dir_trusted(&pst)) {
			*why = "it is a symbolic link in a directory another user can change";
			errno = EPERM;
			return -1;
		}
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (fd < 0) {
		*why = strerror(errno);
		return -1;
	}
	struct stat st;
	if (as_root && (fstat(fd, &st) != 0 || !dir_trusted(&st))) {
		*why = "it belongs to, or is writable by, another user than root";
		close(fd);
		errno = EPERM;
		return -1;
	}
	return fd;
}

/* The pid in the file base of dirfd; 0 when absent, not a plain file, or
 * (as root) not root's. */
pid_t
pt_pid_read_at(int dirfd, const char *base)
{
	int fd = openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return 0;
	struct stat st;
	char buf[32];
	ssize_t n = -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (geteuid() != 0 || st.st_uid == 0))
		n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	long pid = strtol(buf, NULL, 10);
	return pid > 0 ? (pid_t)pid : 0;
}

/* An older version let the worker (mail_owner) create $queue_directory/pid:
 * root takes it back before trusting it. */
static void
reclaim_queue_pid_dir(const char *qdir, const char *dir)
{
	char want[600];
	snprintf(want, sizeof want, "%s/pid", qdir);
	if (!M.as_root || strcmp(want, dir) != 0)
		return;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && !dir_trusted(&st) && (st.st_uid == M.owner_uid || st.st_uid == 0)) {
		if (fchown(fd, 0, 0) == 0 && fchmod(fd, 0755) == 0)
			fprintf(stderr, "postern: %s belonged to mail_owner; it is root's now\n", dir);
	}
	close(fd);
}

static int
write_pid_file(const char *path, const char *qdir)
{
	char dir[512];
	pt_pid_split_path(path, dir, sizeof dir, M.pid_base, sizeof M.pid_base);
	if (M.pid_base[0] == '\0') {
		fprintf(stderr, "postern: pid_file %s names no file\n", path);
		return -1;
	}
	if (mkdir_parents(path, 0755) != 0) {
		fprintf(stderr, "postern: cannot create the directory of %s: %s\n", path, strerror(errno));
		return -1;
	}
	reclaim_queue_pid_dir(qdir, dir);
	const char *why = NULL;
	int dfd = pt_pid_open_dir(dir, &why);
	if (dfd < 0) {
		fprintf(stderr, "postern: cannot use the directory of pid_file %s: %s\n", path, why);
		return -1;
	}
	/* A temporary name only this process uses, made exclusively (never
	 * through a link), then renamed over the pid file. */
	char tmp[300];
	snprintf(tmp, sizeof tmp, "%.200s.%ld.tmp", M.pid_base, (long)getpid());
	unlinkat(dfd, tmp, 0);
	int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	char buf[32];
	int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
	if (fd < 0 || write(fd, buf, (size_t)len) != len || close(fd) != 0 ||
	    renameat(dfd, tmp, dfd, M.pid_base) != 0) {
		fprintf(stderr, "postern: cannot write %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			unlinkat(dfd, tmp, 0);
		close(dfd);
		return -1;
	}
	M.pid_dirfd = dfd;
	return 0;
}

static void
remove_pid_file(void)
{
	if (M.pid_dirfd < 0)
		return;
	if (pt_pid_read_at(M.pid_dirfd, M.pid_base) == getpid()) {
		char answer[300];
		pt_pid_reload_answer_name(answer, sizeof answer, M.pid_base);
		unlinkat(M.pid_dirfd, answer, 0);
		unlinkat(M.pid_dirfd, M.pid_base, 0);
	}
	close(M.pid_dirfd);
	M.pid_dirfd = -1;
}

/* ---------- run ---------- */

static int
prepare_directories(const char *qdir)
{
	/* Through the locked descriptor: the name may have been swapped since. */
	if (M.as_root && fchown(M.lock_fd, M.owner_uid, M.owner_gid) != 0) {
		fprintf(stderr, "postern: cannot chown %s to mail_owner: %s\n", qdir, strerror(errno));
		return -1;
	}
	return 0;
}

/* A master started right after the previous one was killed may find its
 * ports still held by the old worker, which stops as soon as it sees its
 * master gone: wait a little for them. */
static int
bind_listeners(struct generation *g)
{
	uint64_t start = pt_mono_ms();
	for (;;) {
		int last = pt_mono_ms() - start >= BIND_RETRY_MS;
		int rc = open_listeners(g, NULL, !last);
		if (rc != -2)
			return rc;
		pt_listen_close_all(g->socks, g->nsocks);
		g->socks = NULL;
		g->nsocks = 0;
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

int
pt_cmd_run(const char *conf, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	memset(&M, 0, sizeof M);
	M.lock_fd = M.pid_dirfd = M.signal_fd = -1;
	M.conf_path = conf;
	M.as_root = geteuid() == 0;
	M.self = getpid();
	struct pt_config *c = pt_runtime_load(conf);
	if (c == NULL)
		return 1;
	if (pt_runtime_print_errors(c, stderr) > 0) {
		pt_config_free(c);
		return 1;
	}
	pt_live_conf = c;
	pt_modules_save();
	if (M.as_root) {
		const char *owner = pt_conf_str(c, "mail_owner");
		struct passwd *pw = getpwnam(owner);
		if (pw == NULL) {
			fprintf(stderr, "postern: mail_owner \"%s\" is not a user on this system (create it, e.g. adduser --system --group %s)\n",
			        owner, owner);
			return 1;
		}
		if (pw->pw_uid == 0) {
			fprintf(stderr, "postern: mail_owner \"%s\" must not be root\n", owner);
			return 1;
		}
		M.owner_uid = pw->pw_uid;
		M.owner_gid = pw->pw_gid;
	}
	char qdir[512];
	snprintf(qdir, sizeof qdir, "%s", pt_conf_str(c, "queue_directory"));
	if (lock_queue(qdir) != 0)
		return 1;
	const char *logfile = pt_conf_str(c, "maillog_file");
	pt_log_set_name(pt_conf_str(c, "syslog_name"));
	if (pt_log_open(logfile) != 0) {
		fprintf(stderr, "postern: cannot open maillog_file %s: %s\n", logfile, strerror(errno));
		return 1;
	}
	pt_log_set_default_service("master");
	pt_proctitle_set("master");
	if (prepare_directories(qdir) != 0)
		return 1;
	/* Before any fork: every process of the instance inherits the table. */
	char merr[512];
	if (pt_metrics_create(M.lock_fd, 0, M.as_root ? M.owner_gid : getegid(), merr, sizeof merr) != 0)
		pt_log(PT_LOG_WARNING, "metrics: %s: running without them", merr);
	snprintf(M.pid_file, sizeof M.pid_file, "%s", pt_conf_str(c, "pid_file"));
	if (write_pid_file(M.pid_file, qdir) != 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);

	char err[512];
	if (pt_tls_configure(c, err, sizeof err) != 0) {
		fprintf(stderr, "postern: %s\n", err);
		remove_pid_file();
		return 1;
	}
	struct generation *g = &M.gen[0];
	generation_init(g, c);
	if (bind_listeners(g) != 0) {
		remove_pid_file();
		return 1;
	}

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	M.signal_fd = sfd;
	M.loop = pt_loop_new();
	if (sfd < 0 || M.loop == NULL) {
		fprintf(stderr, "postern: cannot set up the master loop: %s\n", strerror(errno));
		remove_pid_file();
		return 1;
	}
	pt_loop_watch(M.loop, sfd, PT_EV_READ, master_signal, NULL);
	pt_log(PT_LOG_INFO, "starting Postern %s (%s, %zu module%s)", POSTERN_VERSION,
	       M.as_root ? "privilege-separated as root" : "rootless", pt_modules_count(),
	       pt_modules_count() == 1 ? "" : "s");
	if (start_processes(g) != 0) {
		remove_pid_file();
		return 1;
	}
	M.watchdog_timer = pt_timer_add(M.loop, WATCHDOG_CHECK_MS, watchdog, NULL);
	pt_loop_run(M.loop);
	for (int i = 0; i < MAX_GENERATIONS; i++)
		if (M.gen[i].in_use)
			free_generation(&M.gen[i], 1);
	pt_log(PT_LOG_INFO, "stopped");
	remove_pid_file();
	pt_loop_free(M.loop);
	close(sfd);
	close(M.lock_fd);
	M.lock_fd = -1;
	return 0;
}
