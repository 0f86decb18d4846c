/* The per-user mail process: forked by the mail agent, runs as the user
 * (plus mail_privileged_group), serves every post-login session of that
 * user with the protocol's "session:PROTO" service, and exits after the
 * last one once the agent agreed (retire/ack, so no session is lost in
 * between). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_int.h"
#include "loader.h"
#include "log_int.h"
#include "metrics_int.h"
#include "net.h"
#include "postern/event.h"
#include "postern/log.h"
#include "process.h"
#include "proctitle.h"
#include "queue.h"
#include "runtime.h"
#include "session_int.h"

#define MAX_GROUPS 256

/* ---------- one session ---------- */

struct served {
	void (*done)(void *arg);
	void *arg;
	void *title;          /* its part of the process title */
};

static void
served_release(struct pt_conn *c, void *arg)
{
	struct served *s = arg;
	(void)c;
	pt_proctitle_session_del(s->title);
	s->done(s->arg);
	free(s);
}

int
pt_session_serve(struct pt_loop *loop, int fd, const struct pt_session_info *info,
                 const struct pt_user *user, void (*done)(void *arg), void *arg)
{
	struct served *s = calloc(1, sizeof *s);
	struct pt_conn *c = s ? pt_conn_new(loop, fd, NULL) : NULL;
	if (c == NULL) {
		pt_log(PT_LOG_ERROR, "session %s of %s: cannot set up the connection: out of memory",
		       info->session_id, info->user);
		free(s);
		close(fd);
		done(arg);
		return -1;
	}
	s->done = done;
	s->arg = arg;
	pt_conn_set_origin(c, info->peer_addr, info->peer_port, info->local_addr, info->local_port,
	                   info->tls);
	pt_conn_set_release(c, served_release, s);
	s->title = pt_proctitle_session_add(info->protocol, info->peer_addr);

	char tag[PT_SESSION_PROTO_MAX + PT_SESSION_NAME_MAX + 4];
	snprintf(tag, sizeof tag, "%s(%s)", info->protocol, info->user);
	pt_log_set_default_service(tag);

	char name[PT_SESSION_PROTO_MAX + 16];
	snprintf(name, sizeof name, "session:%s", info->protocol);
	const struct pt_session_ops *ops = pt_service_get(name);
	if (ops == NULL || ops->start == NULL) {
		pt_log(PT_LOG_ERROR, "no service %s (is the %s module loaded?): session %s closed", name,
		       info->protocol, info->session_id);
		pt_conn_close(c, "no session service");
		return -1;
	}
	ops->start(c, info, user);
	return 0;
}

/* ---------- the process ---------- */

static struct {
	struct pt_loop *loop;
	int ctl;
	struct pt_user user;
	size_t sessions;
	int retire_sent;
	int acked;            /* the agent sends nothing more */
} P = { .ctl = -1 };

static void
maybe_exit(void)
{
	if (P.sessions > 0)
		return;
	if (P.acked) {
		pt_loop_stop(P.loop);
		return;
	}
	if (!P.retire_sent) {
		unsigned char m = PT_SW_RETIRE;
		if (pt_agent_send(P.ctl, (const char *)&m, 1, -1) == 0)
			P.retire_sent = 1;
		else
			pt_loop_stop(P.loop);  /* the agent is gone: nothing more can come */
	}
}

static void
session_done(void *arg)
{
	(void)arg;
	P.sessions--;
	maybe_exit();
}

static void
ctl_readable(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	(void)events;
	(void)arg;
	unsigned char buf[PT_SESSION_WIRE_MAX];
	for (;;) {
		int sfd = -1;
		ssize_t n = pt_agent_recv(fd, (char *)buf, sizeof buf, &sfd);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (sfd >= 0)
				close(sfd);
			return;
		}
		if (n <= 0) {
			if (sfd >= 0)
				close(sfd);
			/* The agent went away: no more sessions will come. */
			pt_loop_unwatch(loop, fd);
			P.acked = 1;
			maybe_exit();
			return;
		}
		int type = pt_session_wire_type(buf, (size_t)n);
		if (type == PT_SW_ACK) {
			if (sfd >= 0)
				close(sfd);
			P.acked = 1;
			maybe_exit();
			continue;
		}
		uint32_t id;
		struct pt_session_info info;
		if (type != PT_SW_REQUEST || sfd < 0 ||
		    pt_session_wire_request_decode(buf, (size_t)n, &id, &info) != 0) {
			pt_log(PT_LOG_WARNING, "mail process: malformed message from the agent ignored");
			if (sfd >= 0)
				close(sfd);
			continue;
		}
		/* Also after our retire request: the agent sent it before it saw
		 * the request; the ack that follows only means nothing more. */
		P.sessions++;
		pt_session_serve(loop, sfd, &info, &P.user, session_done, NULL);
	}
}

/* mail_privileged_group as a gid: a name, or a number. */
static gid_t
privileged_gid(const struct pt_config *conf)
{
	const char *priv = conf ? pt_conf_str(conf, "mail_privileged_group") : "";
	if (priv == NULL || *priv == '\0')
		return (gid_t)-1;
	char *end;
	errno = 0;
	unsigned long v = strtoul(priv, &end, 10);
	if (*end == '\0' && errno == 0)
		return (gid_t)v;
	struct group *gr = getgrnam(priv);
	return gr ? gr->gr_gid : (gid_t)-1;
}

/* The user's identity, with mail_privileged_group only as the saved
 * set-group-ID: neither the effective gid, the file system gid nor a
 * supplementary group, so every folder is opened with the user's rights
 * alone. The mbox module's dotlock code switches this thread's fsgid to
 * it (setfsgid accepts the saved gid without a capability) for the few
 * calls that create or remove the INBOX's dotlock in the spool, and back.
 * Why this is enough: nothing a client sends reaches a credential call
 * (only mbox_lock.c makes one, with the configured gid, around its own
 * link/unlink); and the user cannot take the process over from outside:
 * it is not dumpable, and its saved gid differs from the user's, which
 * alone makes the kernel refuse ptrace and /proc/PID/mem to the user.
 * Only code execution inside the process could raise the group again,
 * as with Dovecot's mail_privileged_group. */
static int
become_user(const struct pt_user *u, const struct pt_config *conf)
{
	gid_t groups[MAX_GROUPS + 1];
	int ng = MAX_GROUPS;
	if (getgrouplist(u->name, u->gid, groups, &ng) < 0) {
		ng = 1;
		groups[0] = u->gid;
	}
	/* A real member of the group (in /etc/group) keeps it: that is the
	 * administrator's choice, not something this process adds. */
	gid_t priv = privileged_gid(conf);
	gid_t saved = priv != (gid_t)-1 ? priv : u->gid;
	if (setgroups((size_t)ng, groups) != 0 || setresgid(u->gid, u->gid, saved) != 0 ||
	    setresuid(u->uid, u->uid, u->uid) != 0)
		return -1;
	if (setuid(0) == 0 || geteuid() != u->uid || getegid() != u->gid)
		return -1;
	/* The process inherited the root agent's memory (the config, the TLS
	 * key among it): the user must not be able to read it with ptrace or
	 * /proc/PID/mem. */
	prctl(PR_SET_DUMPABLE, 0);
	return 0;
}

void
pt_mail_process_main(int ctl, const struct pt_user *user, const struct pt_config *conf,
                     int as_root, pid_t agent)
{
	pt_process_child_setup();
	/* The user's code must not reach the shared counters: what this
	 * process does was counted in the worker (logins happen there). */
	pt_metrics_detach();
	pt_live_conf = conf;
	P.user = *user;
	P.ctl = ctl;
	pt_log_set_default_service("mail");
	if (as_root) {
		if (user->uid == 0) {
			pt_log(PT_LOG_ERROR, "mail process for %s refused: uid 0", user->name);
			_exit(1);
		}
		if (become_user(user, conf) != 0) {
			pt_log(PT_LOG_ERROR, "mail process for %s: cannot switch to uid %ld gid %ld: %s", user->name,
			       (long)user->uid, (long)user->gid, strerror(errno));
			_exit(1);
		}
	}
	pt_proctitle_mail_user(user->name, pt_conf_bool(conf, "verbose_proctitle"));
	/* A credential change clears the parent-death signal: set it again,
	 * and catch an agent that died before this line. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != agent)
		_exit(0);
	P.loop = pt_loop_new();
	if (P.loop == NULL) {
		pt_log(PT_LOG_FATAL, "mail process: cannot create the event loop: %s", strerror(errno));
		_exit(1);
	}
	int flags = fcntl(ctl, F_GETFL);
	if (flags >= 0)
		fcntl(ctl, F_SETFL, flags | O_NONBLOCK);
	struct pt_ctx ctx = { .conf = conf, .loop = P.loop, .as_root = as_root, .role = PT_ROLE_MAIL };
	if (pt_modules_init(&ctx) != 0) {
		pt_log(PT_LOG_FATAL, "mail process for %s: module initialisation failed", user->name);
		_exit(1);
	}
	pt_loop_watch(P.loop, ctl, PT_EV_READ, ctl_readable, NULL);
	pt_loop_run(P.loop);
	pt_conn_close_all("shutdown");
	pt_modules_stop(&ctx);
	_exit(0);
}
