/* Delivery to the /file and |command destinations of trusted aliases:
 * a locked, fsynced mbox-style append, and /bin/sh -c with the message on
 * stdin and the envelope only in environment variables. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "postern/event.h"
#include "alias.h"
#include "postern/fdio.h"
#include "postern/log.h"
#include "postern/strbuf.h"

#define ALIAS_LOCK_WAIT_MS 30000
#define ALIAS_OUTPUT_KEEP 300

/* Header values come from the envelope: keep them on one line. */
static void
abuf_header(struct pt_strbuf *b, const char *name, const char *value)
{
	pt_strbuf_puts(b, name);
	for (const char *p = value; *p; p++)
		pt_strbuf_put(b, (*p == '\r' || *p == '\n') ? " " : p, 1);
	pt_strbuf_put(b, "\n", 1);
}

char *
alias_format_message(const struct pt_delivery *d, int mbox, size_t *len)
{
	struct pt_strbuf b = { 0 };
	const char *sender = d->sender && *d->sender ? d->sender : "MAILER-DAEMON";
	char date[64];
	struct tm tm;
	time_t t = d->arrival ? d->arrival : time(NULL);
	if (!localtime_r(&t, &tm) || !strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm))
		snprintf(date, sizeof(date), "Thu Jan  1 00:00:00 1970");
	pt_strbuf_puts(&b, "From ");
	for (const char *p = sender; *p; p++)
		pt_strbuf_put(&b, (*p == ' ' || *p == '\r' || *p == '\n' || *p == '\t') ? "_" : p, 1);
	pt_strbuf_puts(&b, "  ");
	pt_strbuf_puts(&b, date);
	pt_strbuf_put(&b, "\n", 1);
	char rp[600];
	snprintf(rp, sizeof(rp), "<%s>", d->sender ? d->sender : "");
	abuf_header(&b, "Return-Path: ", rp);
	if (d->orig_recipient && *d->orig_recipient)
		abuf_header(&b, "X-Original-To: ", d->orig_recipient);
	if (d->recipient && *d->recipient)
		abuf_header(&b, "Delivered-To: ", d->recipient);

	/* body lines that start with "From " get '>' (Postfix local(8)) */
	size_t pos = 0;
	while (pos < d->len) {
		const char *ls = d->data + pos;
		const char *nl = memchr(ls, '\n', d->len - pos);
		size_t ll = nl ? (size_t)(nl - ls) + 1 : d->len - pos;
		if (ll >= 5 && memcmp(ls, "From ", 5) == 0)
			pt_strbuf_put(&b, ">", 1);
		pt_strbuf_put(&b, ls, ll);
		pos += ll;
	}
	if (d->len && d->data[d->len - 1] != '\n')
		pt_strbuf_put(&b, "\n", 1);
	if (mbox)
		pt_strbuf_put(&b, "\n", 1);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	if (!b.p)
		pt_strbuf_put(&b, "", 0);
	*len = b.len;
	return b.p;
}

/* Postfix's mapping of write errors to DSN classes (mbox_dsn). */
static void
alias_file_error(struct pt_status *st, int err, const char *what, const char *path)
{
	int code = 550;
	const char *dsn = "5.2.0";
	if (err == EAGAIN || err == EWOULDBLOCK || err == ESTALE || err == EINTR || err == ENOLCK) {
		code = 450;
		dsn = "4.2.0";
	} else if (err == ENOSPC) {
		code = 452;
		dsn = "4.3.0";
	} else if (err == EDQUOT || err == EFBIG) {
		code = 552;
		dsn = "5.2.2";
	} else if (err == EIO || err == ENOMEM) {
		code = 451;
		dsn = "4.3.0";
	}
	pt_status_set(st, code, dsn, "cannot %s file %s: %s", what, path, strerror(err));
}

static int
alias_lock(int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	for (int waited = 0;; waited += 100) {
		if (fcntl(fd, F_SETLK, &fl) == 0)
			return 0;
		if ((errno != EAGAIN && errno != EACCES) || waited >= ALIAS_LOCK_WAIT_MS)
			return -1;
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

static void
alias_deliver_file(const struct pt_delivery *d, const char *path, struct pt_status *st)
{
	size_t len;
	char *msg = alias_format_message(d, 1, &len);
	if (!msg) {
		pt_status_set(st, 451, "4.3.0", "out of memory");
		return;
	}
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0) {
		alias_file_error(st, errno, "open", path);
		free(msg);
		return;
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !(S_ISREG(sb.st_mode) || S_ISCHR(sb.st_mode))) {
		pt_status_set(st, 550, "5.2.0", "cannot append to %s: not a regular file", path);
		goto out;
	}
	int regular = S_ISREG(sb.st_mode);
	off_t orig = 0;
	if (regular) {
		if (alias_lock(fd) < 0) {
			alias_file_error(st, errno == EACCES ? EAGAIN : errno, "lock", path);
			goto out;
		}
		orig = lseek(fd, 0, SEEK_END);
		if (orig < 0) {
			alias_file_error(st, errno, "seek in", path);
			goto out;
		}
	}
	if (pt_write_all(fd, msg, len) != 0 || (regular && fsync(fd) < 0)) {
		int e = errno;
		/* never leave half a message behind */
		if (regular && ftruncate(fd, orig) < 0)
			pt_log(PT_LOG_ERROR, "alias: cannot truncate %s back to %lld bytes: %s", path,
			       (long long)orig, strerror(errno));
		alias_file_error(st, e, "append to", path);
		goto out;
	}
	pt_status_set(st, 0, "2.0.0", "delivered to file: %s", path);
out:
	close(fd);  /* also drops the fcntl lock */
	free(msg);
}

/* Still root (the agent should have switched): append from a child that
 * runs as default_privs, never as root. */
static void
alias_deliver_file_as(const struct alias_conf *conf, const struct pt_delivery *d,
                      const char *path, struct pt_status *st)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		pt_status_set(st, 451, "4.3.0", "cannot deliver to file: %s", strerror(errno));
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		pt_status_set(st, 451, "4.3.0", "cannot deliver to file: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return;
	}
	if (pid == 0) {
		struct pt_status cs;
		close(p[0]);
		if (conf->privs_uid == 0 || setgroups(0, NULL) < 0 || setgid(conf->privs_gid) < 0 ||
		    setuid(conf->privs_uid) < 0)
			pt_status_set(&cs, 451, "4.3.0", "cannot switch to default_privs for %s", path);
		else
			alias_deliver_file(d, path, &cs);
		ssize_t w = write(p[1], &cs, sizeof(cs));
		_exit(w == (ssize_t)sizeof(cs) ? 0 : 1);
	}
	close(p[1]);
	struct pt_status cs;
	ssize_t got = pt_read_full(p[0], &cs, sizeof(cs));
	close(p[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got == (ssize_t)sizeof(cs)) {
		cs.dsn[sizeof(cs.dsn) - 1] = 0;
		cs.text[sizeof(cs.text) - 1] = 0;
		*st = cs;
	} else {
		pt_status_set(st, 451, "4.3.0", "file delivery to %s failed without a status", path);
	}
}

static void
alias_env_add(char **env, size_t *n, const char *name, const char *value)
{
	if (!value)
		value = "";
	size_t a = strlen(name), b = strlen(value);
	char *e = malloc(a + b + 2);
	if (!e)
		return;
	memcpy(e, name, a);
	e[a] = '=';
	memcpy(e + a + 1, value, b + 1);
	/* an environment string must not carry a line break into headers of
	 * whatever the command writes */
	for (char *p = e; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	env[(*n)++] = e;
}


static void
alias_command_status(struct pt_status *st, int wstatus, const char *cmd, const char *out)
{
	char shown[160];
	snprintf(shown, sizeof(shown), "%s", cmd);
	const char *sep = *out ? ". Command output: " : "";
	if (WIFEXITED(wstatus)) {
		int x = WEXITSTATUS(wstatus);
		if (x == 0) {
			pt_status_set(st, 0, "2.0.0", "delivered to command: %s", shown);
			return;
		}
		int code = 550;
		const char *dsn = "5.3.0";
		switch (x) {
		case 75: code = 450; dsn = "4.3.0"; break;      /* EX_TEMPFAIL */
		case 67: dsn = "5.1.1"; break;                  /* EX_NOUSER */
		case 68: dsn = "5.1.2"; break;                  /* EX_NOHOST */
		case 77: dsn = "5.7.1"; break;                  /* EX_NOPERM */
		}
		pt_status_set(st, code, dsn, "Command died with status %d: \"%s\"%s%s", x, shown, sep, out);
		return;
	}
	pt_status_set(st, 450, "4.3.0", "Command died with signal %d: \"%s\"%s%s",
	              WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0, shown, sep, out);
}

static void
alias_child(const struct alias_conf *conf, const struct pt_delivery *d, const char *cmd,
            int in, int out)
{
	setpgid(0, 0);
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
		_exit(75);
	for (int fd = 3; fd < 1024; fd++)
		close(fd);
	signal(SIGPIPE, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (geteuid() == 0) {
		/* the agent should have switched already; never run root's shell */
		if (setgroups(0, NULL) < 0 || setgid(conf->privs_gid) < 0 ||
		    setuid(conf->privs_uid) < 0 || conf->privs_uid == 0)
			_exit(75);
	}
	char pwbuf[2048];
	struct passwd pw, *pwr = NULL;
	getpwuid_r(geteuid(), &pw, pwbuf, sizeof(pwbuf), &pwr);
	const char *home = pwr ? pwr->pw_dir : "/";
	if (chdir(home) < 0 && chdir("/") < 0)
		_exit(75);

	char *env[20];
	size_t n = 0;
	const char *rcpt = d->recipient ? d->recipient : "";
	const char *at = strrchr(rcpt, '@');
	char local[256];
	snprintf(local, sizeof(local), "%.*s", at ? (int)(at - rcpt) : (int)strlen(rcpt), rcpt);
	alias_env_add(env, &n, "PATH", "/usr/bin:/bin");
	alias_env_add(env, &n, "SHELL", "/bin/sh");
	alias_env_add(env, &n, "HOME", home);
	alias_env_add(env, &n, "LOGNAME", pwr ? pwr->pw_name : "");
	alias_env_add(env, &n, "USER", pwr ? pwr->pw_name : "");
	alias_env_add(env, &n, "SENDER", d->sender);
	alias_env_add(env, &n, "RECIPIENT", rcpt);
	alias_env_add(env, &n, "ORIGINAL_RECIPIENT", d->orig_recipient ? d->orig_recipient : rcpt);
	alias_env_add(env, &n, "LOCAL", local);
	alias_env_add(env, &n, "DOMAIN", at ? at + 1 : "");
	alias_env_add(env, &n, "QUEUE_ID", d->queue_id);
	env[n] = NULL;
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	execve("/bin/sh", argv, env);
	_exit(75);
}

static void
alias_deliver_command(const struct alias_conf *conf, const struct pt_delivery *d,
                      const char *cmd, struct pt_status *st)
{
	size_t len;
	char *msg = alias_format_message(d, 0, &len);
	if (!msg) {
		pt_status_set(st, 451, "4.3.0", "out of memory");
		return;
	}
	/* stdin is a socket so that a command that stops reading gives EPIPE
	 * through MSG_NOSIGNAL instead of a SIGPIPE for the whole agent */
	int in[2], out[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) < 0) {
		pt_status_set(st, 451, "4.3.0", "cannot run command: %s", strerror(errno));
		free(msg);
		return;
	}
	if (pipe2(out, O_CLOEXEC) < 0) {
		pt_status_set(st, 451, "4.3.0", "cannot run command: %s", strerror(errno));
		close(in[0]);
		close(in[1]);
		free(msg);
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		pt_status_set(st, 451, "4.3.0", "cannot run command: %s", strerror(errno));
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		free(msg);
		return;
	}
	if (pid == 0)
		alias_child(conf, d, cmd, in[1], out[1]);
	close(in[1]);
	close(out[1]);
	int wfd = in[0], rfd = out[0];
	fcntl(wfd, F_SETFL, O_NONBLOCK);
	fcntl(rfd, F_SETFL, O_NONBLOCK);

	uint64_t deadline = pt_mono_ms() + (uint64_t)conf->command_time_limit * 1000;
	char output[ALIAS_OUTPUT_KEEP + 1];
	size_t olen = 0, off = 0;
	int timed_out = 0, status = 0, reaped = 0;
	while (wfd >= 0 || rfd >= 0) {
		uint64_t now = pt_mono_ms();
		if (now >= deadline) {
			timed_out = 1;
			break;
		}
		struct pollfd pf[2];
		int np = 0;
		if (wfd >= 0)
			pf[np++] = (struct pollfd){ .fd = wfd, .events = POLLOUT };
		if (rfd >= 0)
			pf[np++] = (struct pollfd){ .fd = rfd, .events = POLLIN };
		uint64_t wait = deadline - now;
		if (poll(pf, (nfds_t)np, wait > 1000 ? 1000 : (int)wait) < 0 && errno != EINTR)
			break;
		if (wfd >= 0) {
			ssize_t w = send(wfd, msg + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0)
				off += (size_t)w;
			if ((w < 0 && errno != EAGAIN && errno != EINTR) || off == len) {
				/* done, or the command stopped reading: its status decides */
				close(wfd);
				wfd = -1;
			}
		}
		if (rfd >= 0) {
			char buf[4096];
			ssize_t r = read(rfd, buf, sizeof(buf));
			if (r > 0) {
				size_t keep = (size_t)r;
				if (keep > ALIAS_OUTPUT_KEEP - olen)
					keep = ALIAS_OUTPUT_KEEP - olen;
				memcpy(output + olen, buf, keep);
				olen += keep;
			} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(rfd);
				rfd = -1;
			}
		}
	}
	/* output closed: the command is done or about to be */
	while (!timed_out && !reaped) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid) {
			reaped = 1;
			break;
		}
		if (r < 0 && errno != EINTR)
			break;
		if (pt_mono_ms() >= deadline) {
			timed_out = 1;
			break;
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (timed_out) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		pt_status_set(st, 550, "5.3.0", "Command time limit exceeded: \"%.160s\"", cmd);
	} else if (reaped) {
		output[olen] = 0;
		for (size_t i = 0; i < olen; i++)
			if ((unsigned char)output[i] < 0x20 || output[i] == 0x7f)
				output[i] = ' ';
		while (olen && output[olen - 1] == ' ')
			output[--olen] = 0;
		alias_command_status(st, status, cmd, output);
	} else {
		pt_status_set(st, 451, "4.3.0", "cannot wait for command: %s", strerror(errno));
	}
	if (wfd >= 0)
		close(wfd);
	if (rfd >= 0)
		close(rfd);
	free(msg);
}

void
alias_deliver_special(const struct alias_conf *conf, const struct pt_delivery *d,
                      enum pt_alias_target kind, const char *target, struct pt_status *st)
{
	if (kind == PT_ALIAS_FILE) {
		if (target[0] != '/') {
			pt_status_set(st, 550, "5.3.5", "file destination is not an absolute path: %s", target);
			return;
		}
		if (geteuid() == 0)
			alias_deliver_file_as(conf, d, target, st);
		else
			alias_deliver_file(d, target, st);
	} else if (kind == PT_ALIAS_COMMAND) {
		alias_deliver_command(conf, d, target, st);
	} else {
		pt_status_set(st, 550, "5.3.5", "not a file or command destination: %s", target);
	}
}
