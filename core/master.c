/* The supervising master: validates the config, binds the listeners (so a
 * root master can take low ports), forks the worker (network, queue; runs
 * as mail_owner) and the local delivery agent, restarts them with backoff
 * when they crash, reloads on SIGHUP by starting a new generation beside
 * the old one (which drains its sessions), and stops on SIGTERM. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config_int.h"
#include "loader.h"
#include "log_int.h"
#include "net.h"
#include "postern/event.h"
#include "postern/log.h"
#include "passdb.h"
#include "process.h"
#include "queue.h"
#include "runtime.h"
#include "session_int.h"

#define MAX_GENERATIONS 8
#define RESTART_BACKOFF_MAX_MS 30000
#define DRAIN_LIMIT_MS (10 * 60 * 1000)

struct generation {
	struct pt_config *conf;
	struct pt_listen_sock *socks;
	size_t nsocks;
	pid_t worker, local, auth, mail;
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
	unsigned backoff_ms;
	time_t started;
	struct pt_timer *restart_timer;
	struct pt_timer *stop_timer;
	int signal_fd;
	/* The generation whose listening sockets a forked child keeps. */
	struct generation *child_keep;
} M;

/* ---------- shared process plumbing ---------- */

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
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	/* Listening sockets stay with the master and the worker serving them:
	 * an agent holding one would keep a port bound after a reload. */
	for (int i = 0; i < MAX_GENERATIONS; i++) {
		struct generation *g = &M.gen[i];
		if (!g->in_use || g == M.child_keep)
			continue;
		for (size_t k = 0; k < g->nsocks; k++)
			if (g->socks[k].fd >= 0) {
				close(g->socks[k].fd);
				/* A grandchild (mail process) runs this again: the
				 * number may be reused by then. */
				g->socks[k].fd = -1;
			}
	}
	if (M.signal_fd > 0)
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

static struct pt_loop *worker_loop;
static struct pt_timer *drain_timer;
static uint64_t drain_started;

static void
worker_exit(int status)
{
	struct pt_ctx ctx = { .conf = pt_live_conf, .loop = worker_loop, .as_root = M.as_root, .role = "worker" };
	pt_queue_stop();
	pt_modules_stop(&ctx);
	_exit(status);
}

static void
worker_drain_check(struct pt_loop *loop, void *arg)
{
	(void)arg;
	drain_timer = NULL;
	if (pt_conn_count() == 0 || pt_loop_now(loop) - drain_started > DRAIN_LIMIT_MS) {
		pt_conn_close_all("shutdown");
		pt_loop_stop(loop);
		return;
	}
	drain_timer = pt_timer_add(loop, 100, worker_drain_check, NULL);
}

static void
worker_signal(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	(void)events;
	(void)arg;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			pt_listen_stop(loop);
			pt_conn_close_all("shutdown");
			pt_loop_stop(loop);
		} else if (si.ssi_signo == SIGUSR1 && drain_timer == NULL) {
			/* Old generation after a reload: no new sessions, no queue
			 * runs; finish what is in flight. */
			pt_log(PT_LOG_INFO, "draining: %zu session(s) in progress", pt_conn_count());
			pt_listen_stop(loop);
			pt_queue_stop();
			drain_started = pt_loop_now(loop);
			drain_timer = pt_timer_add(loop, 0, worker_drain_check, NULL);
		} else if (si.ssi_signo == SIGUSR2) {
			pt_queue_flush_now();
		}
	}
}

static void
worker_main(struct generation *g, int local_fd, int auth_fd, int mail_fd)
{
	M.child_keep = g;
	pt_process_child_setup();
	pt_log_set_default_service("worker");
	pt_live_conf = g->conf;
	if (M.as_root && pt_process_drop_privileges(M.owner_uid, M.owner_gid) != 0) {
		pt_log(PT_LOG_FATAL, "cannot drop privileges to mail_owner: %s", strerror(errno));
		_exit(1);
	}

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

	worker_loop = pt_loop_new();
	if (worker_loop == NULL || sfd < 0) {
		pt_log(PT_LOG_FATAL, "cannot create the event loop: %s", strerror(errno));
		_exit(1);
	}
	pt_loop_watch(worker_loop, sfd, PT_EV_READ, worker_signal, NULL);
	pt_work_set_threads((int)pt_conf_int(g->conf, "worker_threads"));

	char err[512];
	if (pt_tls_configure(g->conf, err, sizeof err) != 0) {
		pt_log(PT_LOG_FATAL, "%s", err);
		_exit(1);
	}
	pt_auth_set_agent_fd(auth_fd);
	pt_session_set_agent(worker_loop, mail_fd);
	if (pt_auth_init(g->conf) != 0)
		_exit(1);
	struct pt_ctx ctx = { .conf = g->conf, .loop = worker_loop, .as_root = M.as_root, .role = "worker" };
	if (pt_modules_init(&ctx) != 0) {
		pt_log(PT_LOG_FATAL, "module initialisation failed");
		_exit(1);
	}
	if (pt_queue_start(worker_loop, g->conf, local_fd) != 0)
		_exit(1);
	if (pt_listen_start(worker_loop, g->conf, g->socks, g->nsocks) != 0) {
		pt_log(PT_LOG_FATAL, "cannot start listeners");
		_exit(1);
	}
	pt_loop_run(worker_loop);
	worker_exit(0);
}

/* ---------- master: generations ---------- */

static const char *
gen_role(const struct generation *g, pid_t pid)
{
	if (pid == g->worker)
		return "worker";
	if (pid == g->local)
		return "local delivery agent";
	if (pid == g->auth)
		return "auth agent";
	if (pid == g->mail)
		return "mail agent";
	return "child";
}

static int
open_listeners(struct generation *g, struct generation *prev)
{
	char err[512];
	for (size_t i = 0; i < pt_modules_count(); i++) {
		const struct pt_module *m = pt_modules_get(i);
		if (!pt_protocol_enabled(g->conf, m->name))
			continue;
		for (const struct pt_listener_decl *d = m->listeners; d && d->param; d++) {
			if (pt_listen_open(g->conf, d, &g->socks, &g->nsocks, prev ? prev->socks : NULL,
			                   prev ? prev->nsocks : 0, err, sizeof err) != 0) {
				pt_log(PT_LOG_ERROR, "%s", err);
				/* At start the admin is watching the terminal, not the log. */
				if (prev == NULL)
					fprintf(stderr, "postern: %s\n", err);
				return -1;
			}
		}
	}
	return 0;
}

static int
start_processes(struct generation *g)
{
	int local_fd = -1;
	g->local = pt_local_spawn(g->conf, &local_fd);
	if (g->local < 0) {
		g->local = 0;
		pt_log(PT_LOG_ERROR, "cannot start the local delivery agent");
		return -1;
	}
	/* Only root needs a separate process to read /etc/shadow or run PAM;
	 * rootless checks run on the worker's pool threads. */
	int auth_fd = -1;
	g->auth = 0;
	if (M.as_root) {
		g->auth = pt_auth_agent_spawn(g->conf, &auth_fd);
		if (g->auth < 0) {
			g->auth = 0;
			close(local_fd);
			return -1;
		}
	}
	/* Post-login sessions: the per-user mail processes hang off it. */
	int mail_fd = -1;
	const int inherited[2] = { local_fd, auth_fd };
	g->mail = pt_mail_agent_spawn(g->conf, &mail_fd, inherited, 2);
	if (g->mail < 0) {
		g->mail = 0;
		pt_log(PT_LOG_ERROR, "cannot start the mail agent");
		close(local_fd);
		if (auth_fd >= 0)
			close(auth_fd);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		pt_log(PT_LOG_ERROR, "fork: %s", strerror(errno));
		close(local_fd);
		if (auth_fd >= 0)
			close(auth_fd);
		close(mail_fd);
		return -1;
	}
	if (pid == 0)
		worker_main(g, local_fd, auth_fd, mail_fd);
	close(local_fd);
	if (auth_fd >= 0)
		close(auth_fd);
	close(mail_fd);
	g->worker = pid;
	M.started = time(NULL);
	return 0;
}

static void
signal_generation(struct generation *g, int sig)
{
	if (g->worker > 0)
		kill(g->worker, sig);
	if (sig != SIGUSR1 && sig != SIGUSR2) {
		if (g->local > 0)
			kill(g->local, sig);
		if (g->auth > 0)
			kill(g->auth, sig);
		if (g->mail > 0)
			kill(g->mail, sig);
	}
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
	memset(g, 0, sizeof *g);
}

static int
all_children_gone(void)
{
	for (int i = 0; i < MAX_GENERATIONS; i++) {
		struct generation *g = &M.gen[i];
		if (g->in_use && (g->worker > 0 || g->local > 0 || g->auth > 0 || g->mail > 0))
			return 0;
	}
	return 1;
}

static void
restart_current(struct pt_loop *loop, void *arg)
{
	(void)arg;
	M.restart_timer = NULL;
	struct generation *g = &M.gen[M.current];
	if (M.stopping || g->worker > 0 || g->local > 0 || g->auth > 0 || g->mail > 0)
		return;
	pt_log(PT_LOG_INFO, "restarting worker processes");
	if (start_processes(g) != 0) {
		M.backoff_ms = M.backoff_ms ? M.backoff_ms * 2 : 1000;
		if (M.backoff_ms > RESTART_BACKOFF_MAX_MS)
			M.backoff_ms = RESTART_BACKOFF_MAX_MS;
		M.restart_timer = pt_timer_add(loop, M.backoff_ms, restart_current, NULL);
	}
}

static void
reap_children(struct pt_loop *loop)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < MAX_GENERATIONS; i++) {
			struct generation *g = &M.gen[i];
			if (!g->in_use || (pid != g->worker && pid != g->local && pid != g->auth && pid != g->mail))
				continue;
			const char *role = gen_role(g, pid);
			int expected = M.stopping || g->draining;
			if (WIFSIGNALED(status))
				pt_log(expected ? PT_LOG_INFO : PT_LOG_WARNING, "%s (pid %ld) killed by signal %d",
				       role, (long)pid, WTERMSIG(status));
			else if (!expected || WEXITSTATUS(status) != 0)
				pt_log(expected ? PT_LOG_INFO : PT_LOG_WARNING, "%s (pid %ld) exited with status %d",
				       role, (long)pid, WEXITSTATUS(status));
			if (pid == g->worker)
				g->worker = 0;
			else if (pid == g->local)
				g->local = 0;
			else if (pid == g->mail)
				g->mail = 0;
			else
				g->auth = 0;
			if (g->draining) {
				/* The agents of a drained generation end with its worker. */
				if (g->worker == 0)
					signal_generation(g, SIGTERM);
				if (g->worker == 0 && g->local == 0 && g->auth == 0 && g->mail == 0)
					free_generation(g, 0);
			} else if (!M.stopping) {
				/* One process of the live generation died: restart all of
				 * it together, with a backoff that resets after a calm
				 * minute, so a crash loop cannot spin. */
				signal_generation(g, SIGTERM);
				if (g->worker == 0 && g->local == 0 && g->auth == 0 && g->mail == 0 &&
				    M.restart_timer == NULL) {
					if (time(NULL) - M.started > 60)
						M.backoff_ms = 0;
					M.backoff_ms = M.backoff_ms ? M.backoff_ms * 2 : 1000;
					if (M.backoff_ms > RESTART_BACKOFF_MAX_MS)
						M.backoff_ms = RESTART_BACKOFF_MAX_MS;
					pt_log(PT_LOG_WARNING, "restarting in %u ms", M.backoff_ms);
					M.restart_timer = pt_timer_add(loop, M.backoff_ms, restart_current, NULL);
				}
			}
			break;
		}
	}
	if (M.stopping && all_children_gone())
		pt_loop_stop(loop);
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

static void
reload(struct pt_loop *loop)
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
		if (c)
			pt_config_free(c);
		/* The failed load replaced nothing the old generation uses, but
		 * the loader's module list must match the live config again. */
		pt_modules_restore();
		return;
	}
	char err[512];
	if (pt_tls_configure(c, err, sizeof err) != 0) {
		pt_log(PT_LOG_ERROR, "reload refused: %s", err);
		pt_config_free(c);
		pt_modules_restore();
		return;
	}
	int slot = -1;
	for (int i = 0; i < MAX_GENERATIONS; i++)
		if (!M.gen[i].in_use) {
			slot = i;
			break;
		}
	if (slot < 0) {
		pt_log(PT_LOG_ERROR, "reload refused: too many generations still draining");
		pt_config_free(c);
		pt_modules_restore();
		return;
	}
	struct generation *g = &M.gen[slot];
	memset(g, 0, sizeof *g);
	g->in_use = 1;
	g->conf = c;
	if (open_listeners(g, old) != 0) {
		pt_log(PT_LOG_ERROR, "reload refused: keeping the running configuration");
		give_back_sockets(g, old);
		pt_listen_close_all(g->socks, g->nsocks);
		pt_config_free(c);
		memset(g, 0, sizeof *g);
		pt_modules_restore();
		return;
	}
	pt_modules_save();
	if (start_processes(g) != 0) {
		pt_log(PT_LOG_ERROR, "reload: cannot start the new generation; keeping the old one");
		pt_listen_close_all(g->socks, g->nsocks);
		pt_config_free(c);
		memset(g, 0, sizeof *g);
		return;
	}
	/* The old worker stops accepting and finishes its sessions. */
	old->draining = 1;
	signal_generation(old, SIGUSR1);
	pt_listen_close_all(old->socks, old->nsocks);
	old->socks = NULL;
	old->nsocks = 0;
	if (old->worker == 0 && old->local == 0 && old->auth == 0 && old->mail == 0)
		free_generation(old, 0);
	M.current = slot;
	pt_live_conf = c;
	pt_log_open(pt_conf_str(c, "maillog_file"));
	(void)loop;
	pt_log(PT_LOG_INFO, "reload: configuration reloaded");
}

static void
stop_timeout(struct pt_loop *loop, void *arg)
{
	(void)arg;
	M.stop_timer = NULL;
	for (int i = 0; i < MAX_GENERATIONS; i++)
		if (M.gen[i].in_use)
			signal_generation(&M.gen[i], SIGKILL);
	(void)loop;
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
		case SIGHUP:
			if (!M.stopping)
				reload(loop);
			break;
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
			/* Graceful, but bounded: stop within a second. */
			M.stop_timer = pt_timer_add(loop, 800, stop_timeout, NULL);
			if (all_children_gone())
				pt_loop_stop(loop);
			break;
		}
	}
}

/* ---------- pid file ---------- */

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

static pid_t
read_pid_file(const char *path)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return 0;
	long pid = 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid > 0 ? (pid_t)pid : 0;
}

static int
write_pid_file(const char *path)
{
	pid_t other = read_pid_file(path);
	if (other > 0 && other != getpid() && kill(other, 0) == 0) {
		fprintf(stderr, "postern: already running (pid %ld, %s)\n", (long)other, path);
		return -1;
	}
	if (mkdir_parents(path, 0755) != 0) {
		fprintf(stderr, "postern: cannot create the directory of %s: %s\n", path, strerror(errno));
		return -1;
	}
	char tmp[600];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "we");
	if (f == NULL || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "postern: cannot write %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Gone, or a zombie waiting for its parent to reap it (a server started
 * by a supervisor that has not collected it yet has stopped all the same). */
static int
process_gone(pid_t pid)
{
	if (kill(pid, 0) != 0)
		return 1;
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return 1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *paren = strrchr(buf, ')');
	return paren && paren[1] == ' ' && paren[2] == 'Z';
}

int
pt_cmd_signal(const char *conf, int sig)
{
	struct pt_config *c = pt_runtime_load(conf);
	if (c == NULL)
		return 1;
	int errors = pt_runtime_print_errors(c, stderr);
	/* A broken config must not keep an admin from stopping the server;
	 * a reload would only be refused by it. */
	if (errors > 0 && sig != SIGTERM) {
		fprintf(stderr, "postern: not reloading: fix the configuration first\n");
		pt_config_free(c);
		return 1;
	}
	char path[512];
	snprintf(path, sizeof path, "%s", pt_conf_str(c, "pid_file"));
	if (path[0] == '\0') {
		fprintf(stderr, "postern: pid_file is not usable in %s\n", conf);
		pt_config_free(c);
		return 1;
	}
	pt_config_free(c);
	pid_t pid = read_pid_file(path);
	if (pid <= 0 || kill(pid, 0) != 0) {
		fprintf(stderr, "postern: not running (no live pid in %s)\n", path);
		return 1;
	}
	if (kill(pid, sig) != 0) {
		fprintf(stderr, "postern: cannot signal pid %ld: %s\n", (long)pid, strerror(errno));
		return 1;
	}
	if (sig != SIGTERM)
		return 0;
	for (int i = 0; i < 100; i++) {
		if (process_gone(pid))
			return 0;
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	fprintf(stderr, "postern: pid %ld did not stop within 10 seconds\n", (long)pid);
	return 1;
}

/* ---------- run ---------- */

static int
prepare_directories(const struct pt_config *c)
{
	const char *qdir = pt_conf_str(c, "queue_directory");
	if (mkdir_parents(qdir, 0755) != 0 || (mkdir(qdir, 0755) != 0 && errno != EEXIST)) {
		fprintf(stderr, "postern: cannot create queue_directory %s: %s\n", qdir, strerror(errno));
		return -1;
	}
	if (M.as_root && chown(qdir, M.owner_uid, M.owner_gid) != 0) {
		fprintf(stderr, "postern: cannot chown %s to mail_owner: %s\n", qdir, strerror(errno));
		return -1;
	}
	return 0;
}

int
pt_cmd_run(const char *conf, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	memset(&M, 0, sizeof M);
	M.conf_path = conf;
	M.as_root = geteuid() == 0;
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
	const char *logfile = pt_conf_str(c, "maillog_file");
	if (pt_log_open(logfile) != 0) {
		fprintf(stderr, "postern: cannot open maillog_file %s: %s\n", logfile, strerror(errno));
		return 1;
	}
	pt_log_set_default_service("master");
	if (prepare_directories(c) != 0)
		return 1;
	snprintf(M.pid_file, sizeof M.pid_file, "%s", pt_conf_str(c, "pid_file"));
	if (write_pid_file(M.pid_file) != 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);

	char err[512];
	if (pt_tls_configure(c, err, sizeof err) != 0) {
		fprintf(stderr, "postern: %s\n", err);
		unlink(M.pid_file);
		return 1;
	}
	struct generation *g = &M.gen[0];
	g->in_use = 1;
	g->conf = c;
	if (open_listeners(g, NULL) != 0) {
		unlink(M.pid_file);
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
		unlink(M.pid_file);
		return 1;
	}
	pt_loop_watch(M.loop, sfd, PT_EV_READ, master_signal, NULL);
	pt_log(PT_LOG_INFO, "starting Postern %s (%s, %zu module%s)", POSTERN_VERSION,
	       M.as_root ? "privilege-separated as root" : "rootless", pt_modules_count(),
	       pt_modules_count() == 1 ? "" : "s");
	if (start_processes(g) != 0) {
		unlink(M.pid_file);
		return 1;
	}
	pt_loop_run(M.loop);
	for (int i = 0; i < MAX_GENERATIONS; i++)
		if (M.gen[i].in_use)
			free_generation(&M.gen[i], 1);
	pt_log(PT_LOG_INFO, "stopped");
	if (read_pid_file(M.pid_file) == getpid())
		unlink(M.pid_file);
	pt_loop_free(M.loop);
	close(sfd);
	return 0;
}
