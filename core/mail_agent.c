/* The mail agent: one per generation, forked by the master beside the auth
 * agent with the master's privileges. It takes sessions from the worker
 * (request + the session socket), looks the user up, and passes each to
 * that user's live mail process or forks a new one. A mail process that
 * went idle asks to retire; once acknowledged it gets nothing more and the
 * next session of that user starts a fresh process. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log_int.h"
#include "metrics_int.h"
#include "postern/event.h"
#include "loader.h"
#include "postern/log.h"
#include "postern/map.h"
#include "postern/module.h"
#include "postern/services.h"
#include "process.h"
#include "proctitle.h"
#include "queue.h"
#include "runtime.h"
#include "session_int.h"

struct mproc {
	struct pt_user user;
	pid_t pid;
	int ctl;              /* -1 once the process closed it */
	int retiring;         /* acknowledged: sends it nothing more */
	struct mproc *next;
};

static struct {
	struct pt_loop *loop;
	const struct pt_config *conf;
	int worker;
	int sfd;
	int as_root;
	struct mproc *procs;
} AG = { .worker = -1, .sfd = -1 };

static void
reply(uint32_t id, pid_t pid, const char *code, const char *reason)
{
	struct pt_session_reply r = { .id = id, .ok = code == NULL, .pid = pid };
	unsigned char buf[PT_SESSION_WIRE_MAX];
	if (code) {
		snprintf(r.code, sizeof r.code, "%s", code);
		snprintf(r.reason, sizeof r.reason, "%s", reason);
	}
	int n = pt_session_wire_reply_encode(&r, buf, sizeof buf);
	if (n > 0 && pt_agent_send(AG.worker, (const char *)buf, (size_t)n, -1) != 0)
		pt_log(PT_LOG_ERROR, "cannot answer the worker: %s", strerror(errno));
}

static void
mproc_close_ctl(struct mproc *p)
{
	if (p->ctl >= 0) {
		pt_loop_unwatch(AG.loop, p->ctl);
		close(p->ctl);
	}
	p->ctl = -1;
	p->retiring = 1;
}

static void
mproc_remove(struct mproc *gone)
{
	for (struct mproc **pp = &AG.procs; *pp; pp = &(*pp)->next)
		if (*pp == gone) {
			*pp = gone->next;
			mproc_close_ctl(gone);
			free(gone);
			return;
		}
}

static void
ctl_readable(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	struct mproc *p = arg;
	(void)loop;
	(void)events;
	for (;;) {
		char buf[64];
		int rfd = -1;
		ssize_t n = pt_agent_recv(fd, buf, sizeof buf, &rfd);
		if (rfd >= 0)
			close(rfd);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			/* Exiting (or crashed): the reaper removes the entry. */
			mproc_close_ctl(p);
			return;
		}
		if (pt_session_wire_type((unsigned char *)buf, (size_t)n) == PT_SW_RETIRE) {
			/* From here on new sessions of this user go to a new process;
			 * those sent before this point are already in its socket. */
			p->retiring = 1;
			unsigned char ack = PT_SW_ACK;
			if (pt_agent_send(fd, (const char *)&ack, 1, -1) != 0) {
				mproc_close_ctl(p);
				return;
			}
		}
	}
}

/* session_fd: the socket being handed over, which the child must not keep
 * a stray copy of (its client would never see the session end). */
static struct mproc *
mproc_fork(const struct pt_user *u, int session_fd)
{
	struct mproc *p = calloc(1, sizeof *p);
	int cv[2];
	if (p == NULL)
		return NULL;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cv) != 0) {
		free(p);
		return NULL;
	}
	pid_t agent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		close(cv[0]);
		close(cv[1]);
		free(p);
		return NULL;
	}
	if (pid == 0) {
		/* Nothing of the agent's may reach the user's process. */
		close(cv[0]);
		close(session_fd);
		free(p);
		for (struct mproc *o = AG.procs, *next; o; o = next) {
			next = o->next;
			if (o->ctl >= 0)
				close(o->ctl);
			free(o);
		}
		AG.procs = NULL;
		close(AG.worker);
		close(AG.sfd);
		pt_loop_free(AG.loop);
		pt_mail_process_main(cv[1], u, AG.conf, AG.as_root, agent);
	}
	close(cv[1]);
	pt_metrics_proc_add(pid, "mail");
	int flags = fcntl(cv[0], F_GETFL);
	if (flags >= 0)
		fcntl(cv[0], F_SETFL, flags | O_NONBLOCK);
	p->user = *u;
	p->pid = pid;
	p->ctl = cv[0];
	pt_loop_watch(AG.loop, p->ctl, PT_EV_READ, ctl_readable, p);
	p->next = AG.procs;
	AG.procs = p;
	return p;
}

static struct mproc *
mproc_live(const struct pt_user *u)
{
	for (struct mproc *p = AG.procs; p; p = p->next)
		if (!p->retiring && p->ctl >= 0 && p->user.uid == u->uid && p->user.gid == u->gid &&
		    strcmp(p->user.name, u->name) == 0)
			return p;
	return NULL;
}

static void
take_session(unsigned char *buf, size_t len, int fd)
{
	uint32_t id = 0;
	struct pt_session_info info;
	if (pt_session_wire_request_decode(buf, len, &id, &info) != 0 || fd < 0) {
		pt_log(PT_LOG_WARNING, "malformed session request (%zu bytes) ignored", len);
		if (len >= 5 && buf[0] == PT_SW_REQUEST)
			reply(id, 0, "UNAVAILABLE", "malformed request");
		return;
	}
	struct pt_user u;
	int rc = pt_user_lookup(info.user, &u);
	if (rc <= 0) {
		pt_log(PT_LOG_WARNING, "session %s: user %s %s", info.session_id, info.user,
		       rc == 0 ? "unknown to the userdb" : "lookup failed");
		reply(id, 0, "UNAVAILABLE", rc == 0 ? "user unknown to the userdb" : "userdb lookup failed");
		return;
	}
	if (AG.as_root && u.uid == 0) {
		pt_log(PT_LOG_ERROR, "session %s: refusing to run a mail process as uid 0 for %s",
		       info.session_id, info.user);
		reply(id, 0, "UNAVAILABLE", "mail processes never run as root");
		return;
	}
	/* The live process may have died a moment ago: one retry with a new. */
	for (int attempt = 0; attempt < 2; attempt++) {
		struct mproc *p = mproc_live(&u);
		int fresh = p == NULL;
		if (fresh && (p = mproc_fork(&u, fd)) == NULL) {
			pt_log(PT_LOG_ERROR, "session %s: cannot start a mail process for %s: %s", info.session_id,
			       info.user, strerror(errno));
			reply(id, 0, "UNAVAILABLE", "cannot start a mail process");
			return;
		}
		if (pt_agent_send(p->ctl, (const char *)buf, len, fd) == 0) {
			reply(id, p->pid, NULL, NULL);
			return;
		}
		pt_log(PT_LOG_WARNING, "session %s: mail process %ld of %s does not take sessions: %s",
		       info.session_id, (long)p->pid, info.user, strerror(errno));
		mproc_close_ctl(p);
		if (fresh)
			kill(p->pid, SIGTERM);
	}
	reply(id, 0, "UNAVAILABLE", "the mail process does not take sessions");
}

static void
shutdown_all(void)
{
	for (struct mproc *p = AG.procs; p; p = p->next)
		kill(p->pid, SIGTERM);
	pt_loop_stop(AG.loop);
}

static void
worker_readable(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	(void)loop;
	(void)events;
	(void)arg;
	unsigned char buf[PT_SESSION_WIRE_MAX];
	for (;;) {
		int sfd = -1;
		ssize_t n = pt_agent_recv(fd, (char *)buf, sizeof buf, &sfd);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && errno == EMSGSIZE) {
			if (sfd >= 0)
				close(sfd);
			continue;
		}
		if (n <= 0) {
			if (sfd >= 0)
				close(sfd);
			/* The worker is gone, and with it every relay. */
			shutdown_all();
			return;
		}
		take_session(buf, (size_t)n, sfd);
		if (sfd >= 0)
			close(sfd);
	}
}

static void
reap(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (struct mproc *p = AG.procs; p; p = p->next) {
			if (p->pid != pid)
				continue;
			pt_metrics_proc_del(pid);
			if (WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM)
				pt_log(PT_LOG_WARNING, "mail process %ld of %s killed by signal %d", (long)pid,
				       p->user.name, WTERMSIG(status));
			else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
				pt_log(PT_LOG_WARNING, "mail process %ld of %s exited with status %d", (long)pid,
				       p->user.name, WEXITSTATUS(status));
			mproc_remove(p);
			break;
		}
	}
}

static void
agent_signal(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	(void)loop;
	(void)events;
	(void)arg;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGCHLD)
			reap();
		else
			shutdown_all();
	}
}

static void __attribute__((noreturn))
agent_main(const struct pt_config *conf, int fd)
{
	pt_process_child_setup();
	pt_log_set_default_service("mail-agent");
	pt_proctitle_set("mail-agent");
	pt_live_conf = conf;
	AG.conf = conf;
	AG.worker = fd;
	AG.as_root = geteuid() == 0;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	AG.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	AG.loop = pt_loop_new();
	if (AG.sfd < 0 || AG.loop == NULL) {
		pt_log(PT_LOG_FATAL, "mail agent: cannot set up its loop: %s", strerror(errno));
		_exit(1);
	}
	int flags = fcntl(fd, F_GETFL);
	if (flags >= 0)
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	/* A userdb from a lookup module (ldap:FILE) answers here; the agent
	 * only starts mail processes, so it may wait for the directory (up
	 * to its timeout) rather than refuse a login whose answer is not
	 * cached in this process yet. */
	struct pt_ctx ctx = { .conf = conf, .loop = AG.loop, .as_root = AG.as_root, .role = PT_ROLE_AGENT };
	if (pt_modules_init(&ctx) != 0) {
		pt_log(PT_LOG_FATAL, "mail agent: module initialisation failed");
		_exit(1);
	}
	pt_map_set_may_block(1);
	pt_loop_watch(AG.loop, AG.sfd, PT_EV_READ, agent_signal, NULL);
	pt_loop_watch(AG.loop, fd, PT_EV_READ, worker_readable, NULL);
	pt_loop_run(AG.loop);
	/* Mail processes have PDEATHSIG too; this only waits politely. */
	for (int i = 0; i < 50 && AG.procs; i++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		reap();
	}
	_exit(0);
}

pid_t
pt_mail_agent_spawn(const struct pt_config *conf, int *worker_fd, const int *close_fds, size_t nclose)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		pt_log(PT_LOG_ERROR, "mail agent: socketpair: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		pt_log(PT_LOG_ERROR, "mail agent: fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		for (size_t i = 0; i < nclose; i++)
			if (close_fds[i] >= 0)
				close(close_fds[i]);
		agent_main(conf, sv[1]);
	}
	close(sv[1]);
	*worker_fd = sv[0];
	return pid;
}
