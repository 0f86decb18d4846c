/* `postern sendmail` and the sendmail / mailq / newaliases names: local
 * submission drops the message into queue_directory/maildrop/ (written,
 * fsynced, renamed), where the running server picks it up; the file's
 * owner records who sent it. Works while the server is down too. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"
#include "config_int.h"
#include "config_priv.h"
#include "conn_int.h"
#include "loader.h"
#include "log_int.h"
#include "net.h"
#include "postern/addrlist.h"
#include "postern/event.h"
#include "postern/fdio.h"
#include "postern/submit.h"
#include "queue.h"
#include "runtime.h"
#include "sendmail.h"

#pragma weak pt_cmd_map

#define DEFAULT_CONF "/etc/postern/postern.conf"

static struct pt_config *
load_conf(const char *prog, const char *path)
{
	pt_cfg_unreadable_includes_ok = 1;
	struct pt_config *c = pt_runtime_load_params(path);
	pt_cfg_unreadable_includes_ok = 0;
	if (!c) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return NULL;
	}
	if (pt_runtime_print_errors(c, stderr) > 0) {
		fprintf(stderr, "%s: fix the configuration first\n", prog);
		pt_config_free(c);
		return NULL;
	}
	return c;
}

/* "<a@b>" -> "a@b", "<>" -> "" (the null sender). */
static char *
strip_brackets(const char *s)
{
	size_t n = strlen(s);
	if (n >= 2 && s[0] == '<' && s[n - 1] == '>')
		return strndup(s + 1, n - 2);
	return strdup(s);
}

/* 128 random bits in hex: a pending file's name tells nothing about when
 * or by whom it was made, and cannot be guessed. */
static int
random_name(char out[33])
{
	unsigned char r[16];
	size_t got = 0;
	while (got < sizeof r) {
		ssize_t n = getrandom(r + got, sizeof r - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof r; i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
	return 0;
}

/* The server reads a pending file through the maildrop's group (the
 * directory is setgid, see pt_qdir_setup) or as its owner. A file that
 * got neither (a maildrop not set up yet) is given the group if we may,
 * else refused: making it readable by everyone is not an option. */
static int
server_can_read(int fd, const struct stat *dir)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return 0;
	if (st.st_uid == dir->st_uid || st.st_gid == dir->st_gid)
		return 1;
	return fchown(fd, (uid_t)-1, dir->st_gid) == 0;
}

/* Drop a finished envelope + message into the maildrop: the server may
 * be down; mail flows when it starts. The file is ours (its owner tells
 * the server who sent it), mode 0640 with the server's group: no other
 * user can read it, and its random name cannot be listed or guessed. */
static int
maildrop_write(const char *prog, const char *qdir, const struct pt_qfile *q)
{
	char dir[PATH_MAX], name[33], tmp[34];
	char *img;
	size_t len;
	if (snprintf(dir, sizeof dir, "%s/%s", qdir, PT_QDIR_MAILDROP) >= (int)sizeof dir) {
		fprintf(stderr, "%s: queue_directory path too long\n", prog);
		return PT_EX_TEMPFAIL;
	}
	/* O_PATH: others may search the directory but not read it. */
	int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct stat dirst;
	if (dfd < 0 || fstat(dfd, &dirst) != 0) {
		fprintf(stderr, "%s: cannot use %s: %s (is the queue directory set up? `postern run` creates it)\n",
		        prog, dir, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return PT_EX_TEMPFAIL;
	}
	if (pt_qfile_encode(q, &img, &len) != 0) {
		fprintf(stderr, "%s: out of memory\n", prog);
		close(dfd);
		return PT_EX_TEMPFAIL;
	}
	int fd = -1;
	for (int tries = 0; fd < 0 && tries < 5; tries++) {
		if (random_name(name) != 0)
			break;
		snprintf(tmp, sizeof tmp, ".%s", name);
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		fprintf(stderr, "%s: cannot create a file in %s: %s (is the queue directory set up? "
		                "`postern run` creates it)\n", prog, dir, strerror(errno));
		free(img);
		close(dfd);
		return PT_EX_TEMPFAIL;
	}
	int rc = pt_write_all(fd, img, len), unreadable = 0;
	free(img);
	if (rc == 0 && !server_can_read(fd, &dirst))
		unreadable = rc = -1;
	if (rc == 0 && (fchmod(fd, PT_MAILDROP_FILE_MODE) != 0 || fsync(fd) != 0))
		rc = -1;
	if (close(fd) != 0)
		rc = -1;
	if (rc == 0 && renameat(dfd, tmp, dfd, name) != 0)
		rc = -1;
	if (rc != 0) {
		if (unreadable)
			fprintf(stderr, "%s: the server could not read a private file in %s (the maildrop must be "
			                "mode %04o with the server's group: `postern run` sets it up)\n", prog, dir,
			        PT_QDIR_MAILDROP_MODE);
		else
			fprintf(stderr, "%s: cannot write the message to %s: %s\n", prog, dir, strerror(errno));
		unlinkat(dfd, tmp, 0);
		close(dfd);
		return PT_EX_TEMPFAIL;
	}
	close(dfd);
	/* Only the directory's owner can read (and so fsync) it; others rely
	 * on the journal committing the rename and on a prompt pickup. */
	pt_fsync_dir(dir);
	return 0;
}

struct submission {
	const char *prog;
	const struct pt_config *conf;
	const char *user;
	const char *sender;           /* envelope sender, "" for <> */
	const char *fullname;
	int ignore_dots, extract;
	const char *notify, *ret, *envid;
};

/* Qualify and add the recipients, say who submitted, and drop q (id,
 * sender and data set) into the maildrop. */
static int
maildrop_finish(const struct submission *s, struct pt_qfile *q, char *const *rcpt, size_t nrcpt)
{
	const char *origin = pt_queue_myorigin(s->conf);
	for (size_t i = 0; i < nrcpt; i++) {
		char *a = pt_queue_qualify(rcpt[i], origin);
		if (!a || pt_qfile_add_rcpt(q, a, rcpt[i], s->notify) != 0) {
			free(a);
			fprintf(stderr, "%s: out of memory\n", s->prog);
			return PT_EX_TEMPFAIL;
		}
		free(a);
	}
	q->submit_uid = getuid();
	q->arrival = time(NULL);
	q->protocol = strdup("local");
	q->envid = s->envid ? strdup(s->envid) : NULL;
	q->ret = s->ret ? strdup(s->ret) : NULL;
	return maildrop_write(s->prog, pt_conf_str(s->conf, "queue_directory"), q);
}

static int
submit(const struct submission *s, const char *raw, size_t rawlen, char **args, size_t nargs)
{
	char **rcpt = NULL;
	size_t nrcpt = 0;
	int rc = PT_EX_OK;
	struct pt_qfile q;
	memset(&q, 0, sizeof q);
	for (size_t i = 0; i < nargs; i++)
		if (pt_sendmail_parse_addresses(args[i], &rcpt, &nrcpt) != 0)
			goto oom;
	const char *origin = pt_queue_myorigin(s->conf);
	const char *host = pt_conf_str(s->conf, "myhostname");
	char local_id[64];
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	localtime_r(&tv.tv_sec, &tm);
	char stamp[20];
	strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
	pt_queue_new_id(q.id);
	snprintf(local_id, sizeof local_id, "%s.%s", stamp, q.id);
	char *user_addr = pt_queue_qualify(s->user, origin);
	char *sender = s->sender ? pt_queue_qualify(s->sender, origin) : NULL;
	if (!user_addr || (s->sender && !sender)) {
		free(user_addr);
		free(sender);
		goto oom;
	}
	struct pt_sm_prep prep = { .from_addr = sender && sender[0] ? sender : user_addr, .fullname = s->fullname,
		.myhostname = host, .msgid_local = local_id, .now = tv.tv_sec, .ignore_dots = s->ignore_dots,
		.extract = s->extract };
	q.data = pt_sendmail_prepare(raw, rawlen, &prep, &q.len, &rcpt, &nrcpt);
	q.sender = sender ? sender : strdup(user_addr);
	free(user_addr);
	if (!q.data || !q.sender)
		goto oom;
	/* Postfix cleanup's append_at_myorigin / append_dot_mydomain for
	 * local mail: "To: alice" reads as alice@$myorigin in every client. */
	struct pt_addr_qualify qual;
	pt_addr_qualify_init(&qual, s->conf);
	struct pt_strbuf qualified = { 0 };
	int qrc = pt_hdr_qualify(q.data, q.len, &qual, &qualified);
	if (qrc < 0) {
		pt_strbuf_free(&qualified);
		goto oom;
	}
	if (qrc == 1) {
		free(q.data);
		q.data = qualified.p;
		q.len = qualified.len;
	}
	if (nrcpt == 0) {
		fprintf(stderr, "%s: no recipients specified\n", s->prog);
		rc = PT_EX_USAGE;
		goto out;
	}
	long long limit = pt_conf_int(s->conf, "message_size_limit");
	if (limit > 0 && (long long)q.len > limit) {
		fprintf(stderr, "%s: message of %zu bytes exceeds message_size_limit (%lld)\n", s->prog, q.len, limit);
		rc = PT_EX_DATAERR;
		goto out;
	}
	rc = maildrop_finish(s, &q, rcpt, nrcpt);
	goto out;
oom:
	fprintf(stderr, "%s: out of memory\n", s->prog);
	rc = PT_EX_TEMPFAIL;
out:
	for (size_t i = 0; i < nrcpt; i++)
		free(rcpt[i]);
	free(rcpt);
	pt_qfile_free(&q);
	return rc;
}

/* ---------- -bs: the SMTP module's session on stdin/stdout ---------- */

/* One `sendmail -bs` run: the submission defaults (-N, -R, -V, the user)
 * every message of the dialogue shares, and how many failed. */
struct local_run {
	struct submission base;
	unsigned failures;
};

/* An answer the sink owes the session, given on the next loop round
 * (the sink's contract, as pt_queue_submit's: never before return). */
struct sink_answer {
	struct pt_deferred later;
	void (*done)(void *arg, const struct pt_status *st, const char *queue_id);
	void *arg;
	struct pt_status st;
	char id[24];
};

static void
sink_answer_fire(struct pt_loop *loop, void *arg)
{
	struct sink_answer *a = arg;
	(void)loop;
	a->done(a->arg, &a->st, a->id);
	free(a);
}

/* The session accepted a message: into the maildrop, as `sendmail ADDR`
 * would drop it (envelope qualified with myorigin, the user's uid). */
static int
sink_submit(void *sink, struct pt_loop *loop, const char *queue_id, const struct pt_envelope *env,
            const char *data, size_t len,
            void (*done)(void *arg, const struct pt_status *st, const char *queue_id), void *arg)
{
	struct local_run *r = sink;
	struct sink_answer *a = calloc(1, sizeof *a);
	if (!a)
		return -1;
	pt_defer(loop, &a->later, sink_answer_fire, a);
	a->done = done;
	a->arg = arg;
	snprintf(a->id, sizeof a->id, "%s", queue_id);
	struct pt_qfile q;
	memset(&q, 0, sizeof q);
	snprintf(q.id, sizeof q.id, "%s", queue_id);
	q.sender = pt_queue_qualify(env->sender, pt_queue_myorigin(r->base.conf));
	q.data = malloc(len + 1);
	char **rcpt = calloc(env->nrcpt ? env->nrcpt : 1, sizeof *rcpt);
	int rc = PT_EX_TEMPFAIL;
	if (q.sender && q.data && rcpt) {
		memcpy(q.data, data, len);
		q.data[len] = 0;
		q.len = len;
		for (size_t i = 0; i < env->nrcpt; i++)
			rcpt[i] = (char *)env->rcpt[i].address;
		rc = maildrop_finish(&r->base, &q, rcpt, env->nrcpt);
	}
	free(rcpt);
	pt_qfile_free(&q);
	if (rc == PT_EX_OK) {
		pt_status_set(&a->st, 0, "2.0.0", "Ok");
	} else {
		r->failures++;
		pt_status_set(&a->st, 451, "4.3.0", "Error: queue file write error");
	}
	return 0;
}

/* stdin and stdout may be a terminal, pipes or files (epoll takes no
 * regular file) and a pt_conn serves one socket: a thread each way copies
 * between them and one end of a socketpair, the loop serves the other. */
struct pump {
	pthread_t thread;
	int from, to;
	int stop;                     /* readable (closed) = stop waiting on from; -1 = none */
	int shut;                     /* shutdown(to, SHUT_WR) at the end */
};

static void *
pump_run(void *arg)
{
	struct pump *p = arg;
	char buf[16384];
	for (;;) {
		struct pollfd pf[2] = { { p->from, POLLIN, 0 }, { p->stop, POLLIN, 0 } };
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		ssize_t n = read(p->from, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || pt_write_all(p->to, buf, (size_t)n) != 0)
			break;
	}
	if (p->shut)
		shutdown(p->to, SHUT_WR);
	return NULL;
}

static void
session_closed(struct pt_conn *c, void *arg)
{
	(void)c;
	pt_loop_stop(arg);
}

/* The log of a local user's dialogue goes where the server's goes when
 * the user may write there, else nowhere: never into the dialogue. */
static void
open_log(const struct pt_config *c)
{
	const char *file = pt_conf_str(c, "maillog_file");
	if (file[0] && strcmp(file, "stderr") != 0 && access(file, W_OK) != 0)
		file = "/dev/null";
	if (pt_log_open(file) != 0)
		pt_log_open("/dev/null");
	pt_log_set_default_service("sendmail");
}

static int
smtp_stdio(const char *conf_path, struct submission *base)
{
	struct local_run run = { .base = *base };
	const struct pt_local_sink sink = { sink_submit, &run };
	struct pt_loop *loop = pt_loop_new();
	struct pt_ctx ctx = { .conf = base->conf, .loop = loop, .as_root = geteuid() == 0, .role = PT_ROLE_SENDMAIL };
	int sp[2] = { -1, -1 }, stop[2] = { -1, -1 }, rc = PT_EX_TEMPFAIL;
	struct pump in = { .from = STDIN_FILENO, .shut = 1 }, out = { .to = STDOUT_FILENO, .stop = -1 };
	int in_started = 0, out_started = 0;

	open_log(base->conf);
	pt_live_conf = base->conf;
	if (!loop || pt_modules_init(&ctx) != 0) {
		fprintf(stderr, "%s: module initialisation failed\n", base->prog);
		goto out;
	}
	const struct pt_local_smtp_ops *ops = pt_service_get(PT_SVC_LOCAL_SMTP);
	if (!ops || !ops->start) {
		fprintf(stderr, "%s: -bs needs a module that serves SMTP (the smtp module): no `module smtp` line "
		        "in %s\n", base->prog, conf_path);
		rc = PT_EX_UNAVAILABLE;
		goto stop;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0 || pipe2(stop, O_CLOEXEC) != 0) {
		fprintf(stderr, "%s: %s\n", base->prog, strerror(errno));
		goto stop;
	}
	struct pt_conn *c = pt_conn_new(loop, sp[0], NULL);
	if (!c) {
		fprintf(stderr, "%s: out of memory\n", base->prog);
		close(sp[0]);
		goto stop;
	}
	sp[0] = -1; /* the conn's now */
	pt_conn_set_release(c, session_closed, loop);
	in.to = out.from = sp[1];
	in.stop = stop[0];
	in_started = pthread_create(&in.thread, NULL, pump_run, &in) == 0;
	out_started = in_started && pthread_create(&out.thread, NULL, pump_run, &out) == 0;
	if (!out_started || ops->start(c, &sink) != 0) {
		if (!out_started)
			fprintf(stderr, "%s: cannot start a thread\n", base->prog);
		pt_conn_close(c, "error");
	} else {
		pt_loop_run(loop);
	}
	rc = run.failures ? PT_EX_TEMPFAIL : PT_EX_OK;
stop:
	pt_modules_stop(&ctx);
out:
	/* The conn closed its end: the output pump reads to the end of what
	 * the session said; the input pump stops waiting for the user. */
	if (stop[1] >= 0)
		close(stop[1]);
	if (in_started)
		pthread_join(in.thread, NULL);
	if (out_started)
		pthread_join(out.thread, NULL);
	if (stop[0] >= 0)
		close(stop[0]);
	if (sp[1] >= 0)
		close(sp[1]);
	pt_live_conf = NULL;
	if (loop)
		pt_loop_free(loop);
	return rc;
}

/* ---------- newaliases ---------- */

static int
newaliases(const char *prog, const char *conf_path)
{
	struct pt_config *c = load_conf(prog, conf_path);
	if (!c)
		return PT_EX_TEMPFAIL;
	int rc = 0;
	if (!pt_config_owner(c, "alias_maps")) {
		printf("%s: the alias module is not loaded (no `module alias` line): there are no aliases to rebuild\n",
		       prog);
	} else {
		const struct pt_list *l = pt_conf_list(c, "alias_maps");
		printf("%s: alias files are read directly and reloaded by the server when they change; checking:\n",
		       prog);
		for (size_t i = 0; l && i < l->n; i++) {
			if (!pt_cmd_map) {
				printf("  %s (no map checker in this build)\n", l->v[i]);
				continue;
			}
			char *argv[] = { "map", "check", "-a", l->v[i], NULL };
			if (pt_cmd_map(conf_path, 4, argv) != 0)
				rc = 1;
		}
	}
	pt_config_free(c);
	return rc;
}

/* ---------- entry points ---------- */

int
pt_cmd_sendmail(const char *conf, int argc, char **argv)
{
	const char *prog = "sendmail";
	struct pt_sm_opts o;
	int rc = pt_sendmail_parse(argc, argv, &o);
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", prog, o.err);
		pt_sendmail_opts_free(&o);
		return rc;
	}
	if (o.conf)
		conf = o.conf;
	if (o.mode == PT_SM_MAILQ) {
		pt_sendmail_opts_free(&o);
		char *qargv[] = { "queue", "list", NULL };
		return pt_cmd_queue(conf, 2, qargv);
	}
	if (o.mode == PT_SM_NEWALIASES) {
		pt_sendmail_opts_free(&o);
		return newaliases("newaliases", conf);
	}
	if (o.mode == PT_SM_FLUSH) {
		pt_sendmail_opts_free(&o);
		return pt_cmd_signal(conf, SIGUSR2) == 0 ? 0 : PT_EX_TEMPFAIL;
	}
	struct pt_config *c = load_conf(prog, conf);
	if (!c) {
		pt_sendmail_opts_free(&o);
		return PT_EX_TEMPFAIL;
	}
	struct passwd *pw = getpwuid(getuid());
	char uname[64];
	snprintf(uname, sizeof uname, "%s", pw ? pw->pw_name : "nobody");
	char gecos[128] = "";
	if (pw && pw->pw_gecos)
		snprintf(gecos, sizeof gecos, "%.*s", (int)strcspn(pw->pw_gecos, ","), pw->pw_gecos);
	char *sender = o.sender ? strip_brackets(o.sender) : NULL;
	struct submission s = { .prog = prog, .conf = c, .user = uname, .sender = sender,
		.fullname = o.fullname ? o.fullname : (gecos[0] ? gecos : NULL), .ignore_dots = o.ignore_dots,
		.extract = o.extract, .notify = o.notify, .ret = o.ret, .envid = o.envid };
	if (o.mode == PT_SM_SMTP) {
		rc = smtp_stdio(conf, &s);
	} else {
		size_t len;
		char *raw;
		if (pt_read_all(STDIN_FILENO, 0, &raw, &len) != 0) {
			fprintf(stderr, "%s: cannot read the message: %s\n", prog, strerror(errno));
			rc = PT_EX_IOERR;
		} else {
			rc = submit(&s, raw, len, o.rcpt, o.nrcpt);
			free(raw);
		}
	}
	free(sender);
	pt_config_free(c);
	pt_sendmail_opts_free(&o);
	return rc;
}

int
pt_sendmail_personality(const char *argv0, int argc, char **argv)
{
	const char *conf = getenv("POSTERN_CONF");
	if (!conf || !*conf)
		conf = DEFAULT_CONF;
	if (strcmp(argv0, "sendmail") == 0)
		return pt_cmd_sendmail(conf, argc, argv);
	if (strcmp(argv0, "mailq") == 0) {
		char *qargv[] = { "queue", "list", NULL };
		return pt_cmd_queue(conf, 2, qargv);
	}
	if (strcmp(argv0, "newaliases") == 0)
		return newaliases("newaliases", conf);
	return -1;
}
