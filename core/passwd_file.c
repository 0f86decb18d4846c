/* Parser and cache for Dovecot passwd-file user lists (passdb and userdb). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "passdb.h"
#include "passwd_file.h"
#include "postern/fdio.h"
#include "postern/log.h"

#define PASSWD_FILE_MAX_BYTES (64u * 1024 * 1024)
#define PASSWD_FILE_MAX_ERRORS 1000

struct perr {
	int line;
	char *msg;
};

struct pt_passwd_file {
	char *text;                    /* owned copy; entries point into it */
	size_t textlen;
	struct pt_passwd_entry *e;
	size_t n, cap;
	struct perr *err;
	int nerr, caperr;
	int unreadable;
};

static void
add_error(struct pt_passwd_file *f, const char *path, int line, const char *fmt, ...)
{
	char msg[512];
	int off;
	va_list ap;

	if (f->nerr >= PASSWD_FILE_MAX_ERRORS)
		return;
	if (f->nerr == f->caperr) {
		int cap = f->caperr ? f->caperr * 2 : 8;
		struct perr *n = realloc(f->err, (size_t)cap * sizeof *n);
		if (!n)
			return;
		f->err = n;
		f->caperr = cap;
	}
	off = line > 0 ? snprintf(msg, sizeof msg, "%s:%d: ", path, line)
	               : snprintf(msg, sizeof msg, "%s: ", path);
	if (off < 0 || (size_t)off >= sizeof msg)
		off = 0;
	va_start(ap, fmt);
	vsnprintf(msg + off, sizeof msg - (size_t)off, fmt, ap);
	va_end(ap);
	char *dup = strdup(msg);
	if (!dup)
		return;
	f->err[f->nerr].line = line;
	f->err[f->nerr].msg = dup;
	f->nerr++;
}

/* Decimal id, a user/group name (resolved by the consumer, as Dovecot
 * allows), or empty (-1). Refuses 0: mail must never be handled as root. */
static int
parse_id(const char *s, long long *out)
{
	long long v = 0;

	if (*s == '\0') {
		*out = -1;
		return 0;
	}
	if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_') {
		size_t n = strlen(s);
		if (n > 32 || strcmp(s, "root") == 0)
			return n > 32 ? -1 : -2;
		for (const char *p = s; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			      (*p >= '0' && *p <= '9') || strchr("_.-", *p)))
				return -1;
		*out = PT_PASSWD_ID_NAME;
		return 0;
	}
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
		if (v > 4294967294LL)
			return -1;
	}
	if (v == 0)
		return -2;
	*out = v;
	return 0;
}

static int
has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

/* A proxied user's host= (and port=): an address or a DNS name (the front
 * asks DNS without blocking), with a valid port if any. */
static int
proxy_host_check(const char *extra, char *err, size_t errlen)
{
	char host[256], port[16], addr[256];
	unsigned char buf[sizeof(struct in6_addr)];
	const char *a = host, *pstr = NULL;

	if (!pt_passwd_extra_get(extra, "host", host, sizeof host) || host[0] == '\0') {
		snprintf(err, errlen, "proxy without host=");
		return -1;
	}
	if (host[0] == '[') {
		char *close = strchr(host, ']');
		if (!close || (close[1] && close[1] != ':')) {
			snprintf(err, errlen, "bad host=%.100s", host);
			return -1;
		}
		snprintf(addr, sizeof addr, "%.*s", (int)(close - host - 1), host + 1);
		a = addr;
		pstr = close[1] ? close + 2 : NULL;
	} else if (strchr(host, ':') && strchr(host, ':') == strrchr(host, ':')) {
		char *colon = strchr(host, ':');
		snprintf(addr, sizeof addr, "%.*s", (int)(colon - host), host);
		a = addr;
		pstr = colon + 1;
	}
	if (inet_pton(AF_INET, a, buf) != 1 && inet_pton(AF_INET6, a, buf) != 1) {
		int name = a != addr || host[0] != '[';
		for (const char *c = a; name && *c; c++)
			name = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
			       *c == '.' || *c == '-';
		if (!name || !*a || *a == '.' || *a == '-') {
			snprintf(err, errlen, "host=%.100s is neither an IP address nor a host name", host);
			return -1;
		}
	}
	if (!pstr && pt_passwd_extra_get(extra, "port", port, sizeof port))
		pstr = port;
	if (pstr) {
		char *end;
		unsigned long v = strtoul(pstr, &end, 10);
		if (*pstr == '\0' || *end != '\0' || v == 0 || v > 65535) {
			snprintf(err, errlen, "bad proxy port %.16s", pstr);
			return -1;
		}
	}
	return 0;
}

/* Returns 0 and fills e, or -1 after reporting why the line is bad. */
static int
parse_line(struct pt_passwd_file *f, const char *path, int lineno, char *line,
           struct pt_passwd_entry *e)
{
	char *field[8] = { 0 };
	int nf = 0;
	char *p = line;
	char err[160];

	/* The eighth field (extra) keeps any further colons. */
	field[nf++] = p;
	while (nf < 8 && (p = strchr(p, ':')) != NULL) {
		*p++ = '\0';
		field[nf++] = p;
	}
	const char *user = field[0];
	if (*user == '\0') {
		add_error(f, path, lineno, "empty user name");
		return -1;
	}
	if (strlen(user) > PT_PASSWD_USER_MAX) {
		add_error(f, path, lineno, "user name longer than %d bytes", PT_PASSWD_USER_MAX);
		return -1;
	}
	for (const char *c = user; *c; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
			add_error(f, path, lineno, "user name contains white space or a control character");
			return -1;
		}
	memset(e, 0, sizeof *e);
	e->user = user;
	e->line = lineno;
	e->uid = e->gid = -1;
	e->uid_name = e->gid_name = "";
	e->gecos = e->home = e->shell = e->extra = "";
	if (nf >= 2 && field[1][0] != '\0') {
		if (has_ctl(field[1])) {
			add_error(f, path, lineno, "user %s: password contains a control character", user);
			return -1;
		}
		if (pt_pwscheme_check(field[1], NULL, err, sizeof err) < 0) {
			add_error(f, path, lineno, "user %s: %s", user, err);
			return -1;
		}
		e->password = field[1];
	}
	static const char *const idname[2] = { "uid", "gid" };
	for (int i = 0; i < 2; i++) {
		long long *dst = i ? &e->gid : &e->uid;
		if (nf < 3 + i)
			break;
		int r = parse_id(field[2 + i], dst);
		if (r == -2) {
			add_error(f, path, lineno, "user %s: %s 0 (root) is not allowed", user, idname[i]);
			return -1;
		}
		if (r < 0) {
			add_error(f, path, lineno, "user %s: bad %s '%.32s' (a number or a name is required)",
			          user, idname[i], field[2 + i]);
			return -1;
		}
		if (*dst == PT_PASSWD_ID_NAME)
			*(i ? &e->gid_name : &e->uid_name) = field[2 + i];
	}
	if (nf >= 5)
		e->gecos = field[4];
	if (nf >= 6) {
		e->home = field[5];
		if (*e->home && (e->home[0] != '/' || has_ctl(e->home) || strlen(e->home) > 255)) {
			add_error(f, path, lineno, "user %s: home must be an absolute path (under 256 bytes)", user);
			return -1;
		}
	}
	if (nf >= 7)
		e->shell = field[6];
	if (nf >= 8) {
		e->extra = field[7];
		if (strlen(e->extra) > 511) {
			add_error(f, path, lineno, "user %s: extra fields longer than 511 bytes", user);
			return -1;
		}
		if (pt_passwd_extra_flag(e->extra, "proxy") && proxy_host_check(e->extra, err, sizeof err) < 0) {
			/* Served here instead, the user would see an empty mailbox. */
			add_error(f, path, lineno, "user %s: %s", user, err);
			return -1;
		}
	}
	return 0;
}

static int
cmp_entry(const void *a, const void *b)
{
	const struct pt_passwd_entry *x = a, *y = b;
	int c = strcasecmp(x->user, y->user);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int
cmp_err(const void *a, const void *b)
{
	const struct perr *x = a, *y = b;
	return (x->line > y->line) - (x->line < y->line);
}

static int
blank_or_comment(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return *s == '\0' || *s == '#';
}

struct pt_passwd_file *
pt_passwd_file_parse(const char *path, const char *text, size_t len)
{
	struct pt_passwd_file *f = calloc(1, sizeof *f);
	if (!f)
		return NULL;
	f->text = malloc(len + 1);
	if (!f->text) {
		free(f);
		return NULL;
	}
	memcpy(f->text, text, len);
	f->text[len] = '\0';
	f->textlen = len;

	char *p = f->text, *end = f->text + len;
	for (int lineno = 1; p < end; lineno++) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *stop = nl ? nl : end;
		size_t ll = (size_t)(stop - p);
		char *line = p;
		p = nl ? nl + 1 : end;
		*stop = '\0';
		if (ll > 0 && line[ll - 1] == '\r')
			line[--ll] = '\0';
		if (memchr(line, '\0', ll)) {
			add_error(f, path, lineno, "NUL byte in line");
			continue;
		}
		if (ll > PT_PASSWD_LINE_MAX) {
			add_error(f, path, lineno, "line longer than %d bytes", PT_PASSWD_LINE_MAX);
			continue;
		}
		if (blank_or_comment(line))
			continue;
		if (f->n == f->cap) {
			size_t cap = f->cap ? f->cap * 2 : 16;
			struct pt_passwd_entry *ne = realloc(f->e, cap * sizeof *ne);
			if (!ne) {
				add_error(f, path, lineno, "out of memory");
				break;
			}
			f->e = ne;
			f->cap = cap;
		}
		if (parse_line(f, path, lineno, line, &f->e[f->n]) == 0)
			f->n++;
	}

	/* Sorted for lookups; of two spellings of one name the first line wins. */
	if (f->n > 1)
		qsort(f->e, f->n, sizeof *f->e, cmp_entry);
	size_t w = 0;
	for (size_t i = 0; i < f->n; i++) {
		if (w > 0 && strcasecmp(f->e[w - 1].user, f->e[i].user) == 0) {
			add_error(f, path, f->e[i].line, "duplicate user %s (first at line %d)",
			          f->e[i].user, f->e[w - 1].line);
			continue;
		}
		f->e[w++] = f->e[i];
	}
	f->n = w;
	if (f->nerr > 1)
		qsort(f->err, (size_t)f->nerr, sizeof *f->err, cmp_err);
	return f;
}

struct pt_passwd_file *
pt_passwd_file_load(const char *path)
{
	struct pt_passwd_file *f;
	char *buf = NULL;
	size_t len = 0;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int saved = 0;

	if (fd < 0) {
		saved = errno;
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		saved = errno;
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || (size_t)st.st_size > PASSWD_FILE_MAX_BYTES) {
		saved = S_ISDIR(st.st_mode) ? EISDIR : S_ISREG(st.st_mode) ? EFBIG : EINVAL;
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		saved = ENOMEM;
		goto fail;
	}
	/* One buffer of the file's size: no copy of the hashes is left in
	 * memory freed by a realloc. */
	ssize_t got = pt_read_full(fd, buf, (size_t)st.st_size);
	if (got < 0) {
		saved = errno;
		goto fail;
	}
	len = (size_t)got;
	close(fd);
	f = pt_passwd_file_parse(path, buf, len);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return f;
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	f = pt_passwd_file_parse(path, "", 0);
	if (f) {
		f->unreadable = 1;
		add_error(f, path, 0, "cannot read: %s", strerror(saved));
	}
	return f;
}

void
pt_passwd_file_free(struct pt_passwd_file *f)
{
	if (!f)
		return;
	for (int i = 0; i < f->nerr; i++)
		free(f->err[i].msg);
	free(f->err);
	free(f->e);
	if (f->text) {
		OPENSSL_cleanse(f->text, f->textlen);
		free(f->text);
	}
	free(f);
}

size_t
pt_passwd_file_count(const struct pt_passwd_file *f)
{
	return f->n;
}

const struct pt_passwd_entry *
pt_passwd_file_entry(const struct pt_passwd_file *f, size_t i)
{
	return i < f->n ? &f->e[i] : NULL;
}

const struct pt_passwd_entry *
pt_passwd_file_find(const struct pt_passwd_file *f, const char *user)
{
	size_t lo = 0, hi = f->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcasecmp(user, f->e[mid].user);
		if (c == 0)
			return &f->e[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

int
pt_passwd_file_error_count(const struct pt_passwd_file *f)
{
	return f->nerr;
}

const char *
pt_passwd_file_error(const struct pt_passwd_file *f, int i)
{
	return i >= 0 && i < f->nerr ? f->err[i].msg : NULL;
}

int
pt_passwd_file_unreadable(const struct pt_passwd_file *f)
{
	return f->unreadable;
}

/* ---- extra fields ---- */

int
pt_passwd_extra_get(const char *extra, const char *key, char *val, size_t vallen)
{
	size_t kl = strlen(key);
	const char *p = extra ? extra : "";

	if (vallen)
		val[0] = '\0';
	for (;;) {
		p += strspn(p, " \t");
		if (*p == '\0')
			return 0;
		size_t wl = strcspn(p, " \t");
		if (wl >= kl && strncasecmp(p, key, kl) == 0 && (wl == kl || p[kl] == '=')) {
			if (wl > kl && vallen) {
				size_t n = wl - kl - 1;
				if (n >= vallen)
					n = vallen - 1;
				memcpy(val, p + kl + 1, n);
				val[n] = '\0';
			}
			return 1;
		}
		p += wl;
	}
}

int
pt_passwd_extra_flag(const char *extra, const char *key)
{
	char v[8];

	if (!pt_passwd_extra_get(extra, key, v, sizeof v))
		return 0;
	return v[0] == '\0' || strcasecmp(v, "y") == 0 || strcasecmp(v, "yes") == 0 ||
	       strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0;
}

/* ---- the shared cache ---- */

struct cached {
	struct cached *next;
	char *path;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct pt_passwd_file *f;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cached *cache_head;

static int
same_stat(const struct cached *c, const struct stat *st)
{
	return c->dev == st->st_dev && c->ino == st->st_ino && c->size == st->st_size &&
	       c->mtime.tv_sec == st->st_mtim.tv_sec && c->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static struct cached *
cache_get(const char *path)
{
	struct cached *c;
	struct stat st;
	int have = stat(path, &st) == 0;

	for (c = cache_head; c; c = c->next)
		if (strcmp(c->path, path) == 0)
			break;
	if (c && have && same_stat(c, &st) && !pt_passwd_file_unreadable(c->f))
		return c;
	if (!c) {
		c = calloc(1, sizeof *c);
		if (!c || !(c->path = strdup(path))) {
			free(c);
			return NULL;
		}
		c->next = cache_head;
		cache_head = c;
	}
	struct pt_passwd_file *nf = pt_passwd_file_load(path);
	if (!nf)
		return c->f ? c : NULL;
	/* A missing file is said once, not at every login attempt. */
	int again = nf->unreadable && c->f && c->f->unreadable;
	for (int i = 0; !again && i < pt_passwd_file_error_count(nf); i++)
		pt_log(PT_LOG_ERROR, "passwd-file %s", pt_passwd_file_error(nf, i));
	pt_passwd_file_free(c->f);
	c->f = nf;
	if (have) {
		c->dev = st.st_dev;
		c->ino = st.st_ino;
		c->size = st.st_size;
		c->mtime = st.st_mtim;
	}
	return c;
}

static void
copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

int
pt_passwd_file_lookup(const char *path, const char *user, struct pt_passwd_rec *out)
{
	int r;

	pthread_mutex_lock(&cache_lock);
	struct cached *c = cache_get(path);
	if (!c || !c->f || pt_passwd_file_unreadable(c->f)) {
		r = -1;
	} else {
		const struct pt_passwd_entry *e = pt_passwd_file_find(c->f, user);
		r = e != NULL;
		if (e) {
			memset(out, 0, sizeof *out);
			copy_str(out->user, sizeof out->user, e->user);
			out->has_password = e->password != NULL && strlen(e->password) < sizeof out->password;
			if (out->has_password)
				copy_str(out->password, sizeof out->password, e->password);
			out->uid = e->uid;
			out->gid = e->gid;
			copy_str(out->uid_name, sizeof out->uid_name, e->uid_name);
			copy_str(out->gid_name, sizeof out->gid_name, e->gid_name);
			copy_str(out->home, sizeof out->home, e->home);
			copy_str(out->extra, sizeof out->extra, e->extra);
		}
	}
	pthread_mutex_unlock(&cache_lock);
	return r;
}

void
pt_passwd_file_cache_clear(void)
{
	pthread_mutex_lock(&cache_lock);
	while (cache_head) {
		struct cached *c = cache_head;
		cache_head = c->next;
		pt_passwd_file_free(c->f);
		free(c->path);
		free(c);
	}
	pthread_mutex_unlock(&cache_lock);
}
