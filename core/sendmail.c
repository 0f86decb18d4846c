/* `postern sendmail` and the sendmail / mailq / newaliases names: local
 * submission drops the message into queue_directory/maildrop/ (written,
 * fsynced, renamed), where the running server picks it up; the file's
 * owner records who sent it. Works while the server is down too. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"
#include "config_int.h"
#include "config_priv.h"
#include "loader.h"
#include "queue.h"
#include "runtime.h"
#include "sendmail.h"

#pragma weak pt_cmd_map

#define DEFAULT_CONF "/etc/postern/postern.conf"
#define SMTP_LINE_MAX 2048

static struct pt_config *
load_conf(const char *prog, const char *path)
{
	pt_cfg_unreadable_includes_ok = 1;
	struct pt_config *c = pt_runtime_load(path);
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

static char *
read_all(FILE *f, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *b = malloc(cap);
	if (!b)
		return NULL;
	for (;;) {
		if (n == cap) {
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				return NULL;
			}
			b = nb;
			cap *= 2;
		}
		size_t r = fread(b + n, 1, cap - n, f);
		n += r;
		if (r == 0) {
			if (ferror(f)) {
				free(b);
				return NULL;
			}
			break;
		}
	}
	*len = n;
	return b;
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

static int
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
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
	int rc = write_all(fd, img, len), unreadable = 0;
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
	int sfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sfd >= 0) {
		fsync(sfd);
		close(sfd);
	}
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

static int
submit(const struct submission *s, const char *raw, size_t rawlen, char **args, size_t nargs)
{
	char **rcpt = NULL;
	size_t nrcpt = 0;
	int rc = PT_EX_OK;
	struct pt_qfile q;
	memset(&q, 0, sizeof q);
	q.submit_uid = getuid();
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
	for (size_t i = 0; i < nrcpt; i++) {
		char *a = pt_queue_qualify(rcpt[i], origin);
		if (!a || pt_qfile_add_rcpt(&q, a, rcpt[i], s->notify) != 0) {
			free(a);
			goto oom;
		}
		free(a);
	}
	q.arrival = tv.tv_sec;
	q.protocol = strdup("local");
	q.envid = s->envid ? strdup(s->envid) : NULL;
	q.ret = s->ret ? strdup(s->ret) : NULL;
	rc = maildrop_write(s->prog, pt_conf_str(s->conf, "queue_directory"), &q);
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

/* ---------- -bs: a minimal SMTP dialogue on stdin/stdout ---------- */

static int
smtp_getline(char *buf, size_t cap)
{
	if (!fgets(buf, (int)cap, stdin))
		return -1;
	size_t n = strlen(buf);
	if (n == cap - 1 && buf[n - 1] != '\n') {
		int c;
		while ((c = getchar()) != EOF && c != '\n')
			;
		return -2;
	}
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = 0;
	return (int)n;
}

static void
reply(const char *s)
{
	fputs(s, stdout);
	fputs("\r\n", stdout);
	fflush(stdout);
}

/* "<addr> [params]" after "FROM:" / "TO:" -> malloc'd addr, or NULL. */
static char *
smtp_path(const char *arg)
{
	while (*arg == ' ')
		arg++;
	if (*arg != '<')
		return NULL;
	const char *end = strchr(arg, '>');
	if (!end)
		return NULL;
	return strndup(arg + 1, (size_t)(end - arg - 1));
}

static int
smtp_session(struct submission *base)
{
	char line[SMTP_LINE_MAX], msg[512];
	char *from = NULL;
	char **rcpt = NULL;
	size_t nrcpt = 0;
	int failures = 0;
	const char *host = pt_conf_str(base->conf, "myhostname");
	snprintf(msg, sizeof msg, "220 %s ESMTP Postern", host);
	reply(msg);
	for (;;) {
		int n = smtp_getline(line, sizeof line);
		if (n == -1)
			break;
		if (n == -2) {
			reply("500 5.5.2 Error: line too long");
			continue;
		}
		if (strncasecmp(line, "HELO", 4) == 0 || strncasecmp(line, "EHLO", 4) == 0) {
			snprintf(msg, sizeof msg, "%s %s", line[0] == 'E' || line[0] == 'e' ? "250-" : "250 ", host);
			reply(msg);
			if (line[0] == 'E' || line[0] == 'e') {
				reply("250-PIPELINING");
				reply("250-8BITMIME");
				reply("250 ENHANCEDSTATUSCODES");
			}
		} else if (strncasecmp(line, "MAIL FROM:", 10) == 0) {
			if (from) {
				reply("503 5.5.1 Error: nested MAIL command");
				continue;
			}
			from = smtp_path(line + 10);
			reply(from ? "250 2.1.0 Ok" : "501 5.1.7 Bad sender address syntax");
		} else if (strncasecmp(line, "RCPT TO:", 8) == 0) {
			char *a = from ? smtp_path(line + 8) : NULL;
			char **nv = a && a[0] ? realloc(rcpt, (nrcpt + 1) * sizeof *nv) : NULL;
			if (!from) {
				reply("503 5.5.1 Error: need MAIL command");
			} else if (!nv) {
				free(a);
				reply("501 5.1.3 Bad recipient address syntax");
			} else {
				rcpt = nv;
				rcpt[nrcpt++] = a;
				reply("250 2.1.5 Ok");
			}
		} else if (strcasecmp(line, "DATA") == 0) {
			if (!nrcpt) {
				reply(from ? "554 5.5.1 Error: no valid recipients" : "503 5.5.1 Error: need RCPT command");
				continue;
			}
			reply("354 End data with <CR><LF>.<CR><LF>");
			size_t cap = 65536, len = 0;
			char *data = malloc(cap);
			int ended = 0, oom = !data;
			while ((n = smtp_getline(line, sizeof line)) != -1) {
				if (n == -2)
					continue;
				if (strcmp(line, ".") == 0) {
					ended = 1;
					break;
				}
				const char *l = line[0] == '.' ? line + 1 : line;
				size_t ll = strlen(l);
				if (!oom && len + ll + 2 > cap) {
					char *nd = realloc(data, cap * 2 + ll);
					if (nd) {
						data = nd;
						cap = cap * 2 + ll;
					} else {
						oom = 1;
					}
				}
				if (!oom) {
					memcpy(data + len, l, ll);
					len += ll;
					data[len++] = '\n';
				}
			}
			if (!ended) {
				free(data);
				break;
			}
			struct submission s = *base;
			s.sender = from;
			s.ignore_dots = 1;
			s.extract = 0;
			int rc = oom ? PT_EX_TEMPFAIL : submit(&s, data, len, rcpt, nrcpt);
			free(data);
			if (rc == 0) {
				reply("250 2.0.0 Ok: queued");
			} else {
				failures++;
				reply(rc == PT_EX_DATAERR ? "552 5.3.4 Error: message file too big"
				                          : "451 4.3.0 Error: queue file write error");
			}
			goto reset;
		} else if (strcasecmp(line, "RSET") == 0) {
			reply("250 2.0.0 Ok");
			goto reset;
		} else if (strcasecmp(line, "NOOP") == 0) {
			reply("250 2.0.0 Ok");
		} else if (strcasecmp(line, "QUIT") == 0) {
			reply("221 2.0.0 Bye");
			break;
		} else {
			reply("502 5.5.2 Error: command not recognized");
		}
		continue;
reset:
		free(from);
		from = NULL;
		for (size_t i = 0; i < nrcpt; i++)
			free(rcpt[i]);
		free(rcpt);
		rcpt = NULL;
		nrcpt = 0;
	}
	free(from);
	for (size_t i = 0; i < nrcpt; i++)
		free(rcpt[i]);
	free(rcpt);
	return failures ? PT_EX_TEMPFAIL : PT_EX_OK;
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
		rc = smtp_session(&s);
	} else {
		size_t len;
		char *raw = read_all(stdin, &len);
		if (!raw) {
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
