/* The queue file: a checksummed text envelope followed by the message,
 * stored crash-safely (write to incoming/, fsync, rename, directory fsync). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "postern/fdio.h"
#include "postern/strbuf.h"
#include "queue.h"

/* Layout, one record per line, fields TAB-separated and %XX-escaped ("-"
 * is a missing value, "=text" a present one):
 *   POSTERN-QUEUE 1
 *   I id / S sender / T arrival / N next retry / A attempts / U uid
 *   C client name, address, helo, protocol, sasl user / E envid, ret
 *   R state, dsn, address, original, notify, last reason   (per recipient)
 *   M length, then the message bytes
 *   Z FNV-1a 64 of everything before it (lower-case hex)
 * Bumped when the record set changes; older servers refuse newer files
 * instead of misreading them. */
#define QF_MAGIC "POSTERN-QUEUE 1\n"
#define QF_MAX_RCPT 100000

/* A field value: NULL is "-", a string is "=" and the string with every
 * byte that could end a field or a line (and '%' itself) as %XX, so any
 * address, and the empty one, survives the round trip. */
static void
sb_field(struct pt_strbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	if (!s) {
		pt_strbuf_puts(b, "-");
		return;
	}
	pt_strbuf_puts(b, "=");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x21 || *p == 0x7f || *p == '%') {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			pt_strbuf_put(b, e, 3);
		} else {
			pt_strbuf_put(b, p, 1);
		}
	}
}

static uint64_t
fnv1a(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

int
pt_qfile_encode(const struct pt_qfile *q, char **out, size_t *outlen)
{
	struct pt_strbuf b = { 0 };
	pt_strbuf_puts(&b, QF_MAGIC);
	pt_strbuf_puts(&b, "I ");
	pt_strbuf_puts(&b, q->id);
	pt_strbuf_puts(&b, "\nS ");
	sb_field(&b, q->sender ? q->sender : "");
	pt_strbuf_printf(&b, "\nT %" PRId64 "\nN %" PRId64 "\nA %u\nU %" PRId64 "\n", (int64_t)q->arrival,
	          (int64_t)q->next_retry, q->attempts,
	          q->submit_uid == (uid_t)-1 ? (int64_t)-1 : (int64_t)q->submit_uid);
	pt_strbuf_puts(&b, "C ");
	sb_field(&b, q->client_name);
	pt_strbuf_puts(&b, "\t");
	sb_field(&b, q->client_address);
	pt_strbuf_puts(&b, "\t");
	sb_field(&b, q->helo);
	pt_strbuf_puts(&b, "\t");
	sb_field(&b, q->protocol);
	pt_strbuf_puts(&b, "\t");
	sb_field(&b, q->sasl_username);
	pt_strbuf_puts(&b, "\nE ");
	sb_field(&b, q->envid);
	pt_strbuf_puts(&b, "\t");
	sb_field(&b, q->ret);
	pt_strbuf_puts(&b, "\n");
	for (size_t i = 0; i < q->nrcpt; i++) {
		const struct pt_qrcpt *r = &q->rcpt[i];
		pt_strbuf_printf(&b, "R %d\t", r->state);
		sb_field(&b, r->dsn[0] ? r->dsn : NULL);
		pt_strbuf_puts(&b, "\t");
		sb_field(&b, r->address);
		pt_strbuf_puts(&b, "\t");
		sb_field(&b, r->orig);
		pt_strbuf_puts(&b, "\t");
		sb_field(&b, r->notify);
		pt_strbuf_puts(&b, "\t");
		sb_field(&b, r->reason);
		pt_strbuf_puts(&b, "\n");
	}
	pt_strbuf_printf(&b, "M %zu\n", q->len);
	pt_strbuf_put(&b, q->data ? q->data : "", q->len);
	pt_strbuf_printf(&b, "\nZ %016" PRIx64 "\n", fnv1a(b.p ? b.p : "", b.len));
	if (b.oom) {
		free(b.p);
		errno = ENOMEM;
		return -1;
	}
	*out = b.p;
	*outlen = b.len;
	return 0;
}

/* ---- decoding ---- */

struct reader {
	const char *p, *end;
	char *err;
	size_t errlen;
};

static int __attribute__((format(printf, 2, 3)))
rd_fail(struct reader *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err, r->errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* Next line without its LF; -1 when the input ends without one. */
static int
rd_line(struct reader *r, const char **line, size_t *len)
{
	const char *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
	if (!nl)
		return -1;
	*line = r->p;
	*len = (size_t)(nl - r->p);
	r->p = nl + 1;
	return 0;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode one %XX field; *out NULL for "-". -1 on bad escapes. */
static int
field_decode(const char *s, size_t n, char **out)
{
	*out = NULL;
	if (n == 1 && s[0] == '-')
		return 0;
	if (n == 0 || s[0] != '=')
		return -1;
	s++;
	n--;
	char *v = malloc(n + 1);
	if (!v)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%') {
			int h, l;
			if (i + 2 >= n || (h = hexval(s[i + 1])) < 0 || (l = hexval(s[i + 2])) < 0 ||
			    (h == 0 && l == 0)) {
				free(v);
				return -1;
			}
			v[o++] = (char)(h << 4 | l);
			i += 2;
		} else if (c < 0x21 || c == 0x7f) {
			free(v);
			return -1;
		} else {
			v[o++] = (char)c;
		}
	}
	v[o] = 0;
	*out = v;
	return 0;
}

/* Split a line into exactly n TAB-separated decoded fields. */
static int
fields_decode(const char *s, size_t len, char **out, size_t n)
{
	size_t k = 0;
	const char *p = s, *end = s + len;
	for (k = 0; k < n; k++)
		out[k] = NULL;
	for (k = 0; k < n; k++) {
		const char *tab = memchr(p, '\t', (size_t)(end - p));
		const char *fe = tab ? tab : end;
		if ((k + 1 < n) != (tab != NULL))
			goto bad;
		if (fe == p || field_decode(p, (size_t)(fe - p), &out[k]) < 0)
			goto bad;
		p = tab ? tab + 1 : end;
	}
	return 0;
bad:
	for (size_t i = 0; i < n; i++) {
		free(out[i]);
		out[i] = NULL;
	}
	return -1;
}

static int
parse_i64(const char *s, size_t len, int64_t *out)
{
	char tmp[32];
	if (len == 0 || len >= sizeof tmp)
		return -1;
	memcpy(tmp, s, len);
	tmp[len] = 0;
	char *e;
	errno = 0;
	long long v = strtoll(tmp, &e, 10);
	if (errno || *e || e == tmp || (tmp[0] != '-' && (tmp[0] < '0' || tmp[0] > '9')))
		return -1;
	*out = v;
	return 0;
}

/* Expect "K value" with key K; value points after "K ". */
static int
rd_record(struct reader *r, char key, const char **val, size_t *vlen)
{
	const char *line;
	size_t len;
	if (rd_line(r, &line, &len) < 0)
		return rd_fail(r, "truncated before the '%c' record", key);
	if (len < 2 || line[0] != key || line[1] != ' ')
		return rd_fail(r, "expected '%c' record", key);
	*val = line + 2;
	*vlen = len - 2;
	return 0;
}

static int
rd_number(struct reader *r, char key, int64_t *out)
{
	const char *v;
	size_t n;
	if (rd_record(r, key, &v, &n) < 0)
		return -1;
	if (parse_i64(v, n, out) < 0)
		return rd_fail(r, "bad number in '%c' record", key);
	return 0;
}

int
pt_qfile_decode(const char *buf, size_t len, struct pt_qfile *q, char *err, size_t errlen)
{
	struct reader r = { buf, buf + len, err, errlen };
	const char *v;
	size_t vn;
	int64_t num;
	char *f[6];
	memset(q, 0, sizeof *q);
	q->submit_uid = (uid_t)-1;
	snprintf(err, errlen, "damaged");

	/* The checksum line is last; verify it before trusting anything. */
	if (len < strlen(QF_MAGIC) || memcmp(buf, QF_MAGIC, strlen(QF_MAGIC)) != 0)
		return rd_fail(&r, "not a queue file (bad magic)");
	if (len < 20 || buf[len - 1] != '\n' || memcmp(buf + len - 20, "\nZ ", 3) != 0)
		return rd_fail(&r, "truncated (no checksum record)");
	{
		/* Exactly as written (lower-case hex), so no byte of it can change
		 * unnoticed either. */
		uint64_t want = 0;
		for (size_t i = len - 17; i < len - 1; i++) {
			int c = buf[i];
			if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
				return rd_fail(&r, "bad checksum record");
			want = want << 4 | (uint64_t)hexval(c);
		}
		if (fnv1a(buf, len - 20) != want)
			return rd_fail(&r, "checksum mismatch");
	}
	r.end = buf + len - 19; /* up to and including the LF before "Z" */
	r.p = buf + strlen(QF_MAGIC);

	if (rd_record(&r, 'I', &v, &vn) < 0)
		goto fail;
	if (vn >= sizeof q->id) {
		rd_fail(&r, "queue id too long");
		goto fail;
	}
	memcpy(q->id, v, vn);
	q->id[vn] = 0;
	if (!pt_qid_valid(q->id)) {
		rd_fail(&r, "bad queue id");
		goto fail;
	}
	if (rd_record(&r, 'S', &v, &vn) < 0)
		goto fail;
	if (field_decode(v, vn, &q->sender) < 0 || !q->sender) {
		rd_fail(&r, "bad sender record");
		goto fail;
	}
	if (rd_number(&r, 'T', &num) < 0)
		goto fail;
	q->arrival = (time_t)num;
	if (rd_number(&r, 'N', &num) < 0)
		goto fail;
	q->next_retry = (time_t)num;
	if (rd_number(&r, 'A', &num) < 0)
		goto fail;
	if (num < 0 || num > 1000000) {
		rd_fail(&r, "bad attempt count");
		goto fail;
	}
	q->attempts = (unsigned)num;
	if (rd_number(&r, 'U', &num) < 0)
		goto fail;
	q->submit_uid = num < 0 ? (uid_t)-1 : (uid_t)num;
	if (rd_record(&r, 'C', &v, &vn) < 0)
		goto fail;
	if (fields_decode(v, vn, f, 5) < 0) {
		rd_fail(&r, "bad client record");
		goto fail;
	}
	q->client_name = f[0];
	q->client_address = f[1];
	q->helo = f[2];
	q->protocol = f[3];
	q->sasl_username = f[4];
	if (rd_record(&r, 'E', &v, &vn) < 0)
		goto fail;
	if (fields_decode(v, vn, f, 2) < 0) {
		rd_fail(&r, "bad DSN record");
		goto fail;
	}
	q->envid = f[0];
	q->ret = f[1];

	for (;;) {
		const char *line;
		size_t ln;
		const char *save = r.p;
		if (rd_line(&r, &line, &ln) < 0) {
			rd_fail(&r, "truncated in recipients");
			goto fail;
		}
		if (ln >= 2 && line[0] == 'M' && line[1] == ' ') {
			r.p = save;
			break;
		}
		if (ln < 4 || line[0] != 'R' || line[1] != ' ' || line[2] < '0' || line[2] > '3' ||
		    line[3] != '\t') {
			rd_fail(&r, "bad recipient record");
			goto fail;
		}
		if (q->nrcpt >= QF_MAX_RCPT) {
			rd_fail(&r, "too many recipients");
			goto fail;
		}
		if (fields_decode(line + 4, ln - 4, f, 5) < 0 || !f[1] || !f[1][0] ||
		    (f[0] && strlen(f[0]) >= sizeof q->rcpt[0].dsn)) {
			for (int i = 0; i < 5; i++)
				free(f[i]);
			rd_fail(&r, "bad recipient record");
			goto fail;
		}
		struct pt_qrcpt *nr = realloc(q->rcpt, (q->nrcpt + 1) * sizeof *nr);
		if (!nr) {
			for (int i = 0; i < 5; i++)
				free(f[i]);
			rd_fail(&r, "out of memory");
			goto fail;
		}
		q->rcpt = nr;
		struct pt_qrcpt *rc = &q->rcpt[q->nrcpt++];
		memset(rc, 0, sizeof *rc);
		rc->state = line[2] - '0';
		if (f[0])
			snprintf(rc->dsn, sizeof rc->dsn, "%s", f[0]);
		free(f[0]);
		rc->address = f[1];
		rc->orig = f[2];
		rc->notify = f[3];
		rc->reason = f[4];
	}
	if (rd_number(&r, 'M', &num) < 0)
		goto fail;
	/* What remains is the message plus the LF that precedes "Z". */
	if (num < 0 || (uint64_t)num != (uint64_t)(r.end - r.p) - 1 || r.end[-1] != '\n') {
		rd_fail(&r, "message length mismatch");
		goto fail;
	}
	q->len = (size_t)num;
	q->data = malloc(q->len + 1);
	if (!q->data) {
		rd_fail(&r, "out of memory");
		goto fail;
	}
	memcpy(q->data, r.p, q->len);
	q->data[q->len] = 0;
	return 0;
fail:
	pt_qfile_free(q);
	return -1;
}

void
pt_qfile_free(struct pt_qfile *q)
{
	free(q->sender);
	free(q->client_name);
	free(q->client_address);
	free(q->helo);
	free(q->protocol);
	free(q->sasl_username);
	free(q->envid);
	free(q->ret);
	for (size_t i = 0; i < q->nrcpt; i++) {
		free(q->rcpt[i].address);
		free(q->rcpt[i].orig);
		free(q->rcpt[i].notify);
		free(q->rcpt[i].reason);
	}
	free(q->rcpt);
	free(q->data);
	memset(q, 0, sizeof *q);
	q->submit_uid = (uid_t)-1;
}

static int
dupstr(char **dst, const char *s)
{
	*dst = NULL;
	if (!s)
		return 0;
	*dst = strdup(s);
	return *dst ? 0 : -1;
}

int
pt_qfile_add_rcpt(struct pt_qfile *q, const char *address, const char *orig, const char *notify)
{
	struct pt_qrcpt *nr = realloc(q->rcpt, (q->nrcpt + 1) * sizeof *nr);
	if (!nr)
		return -1;
	q->rcpt = nr;
	struct pt_qrcpt *r = &nr[q->nrcpt];
	memset(r, 0, sizeof *r);
	if (dupstr(&r->address, address) < 0 || dupstr(&r->orig, orig) < 0 ||
	    dupstr(&r->notify, notify) < 0) {
		free(r->address);
		free(r->orig);
		free(r->notify);
		return -1;
	}
	q->nrcpt++;
	return 0;
}

int
pt_qfile_dup(const struct pt_qfile *s, struct pt_qfile *d)
{
	memset(d, 0, sizeof *d);
	memcpy(d->id, s->id, sizeof d->id);
	d->arrival = s->arrival;
	d->next_retry = s->next_retry;
	d->attempts = s->attempts;
	d->submit_uid = s->submit_uid;
	d->len = s->len;
	if (dupstr(&d->sender, s->sender) < 0 || dupstr(&d->client_name, s->client_name) < 0 ||
	    dupstr(&d->client_address, s->client_address) < 0 || dupstr(&d->helo, s->helo) < 0 ||
	    dupstr(&d->protocol, s->protocol) < 0 || dupstr(&d->sasl_username, s->sasl_username) < 0 ||
	    dupstr(&d->envid, s->envid) < 0 || dupstr(&d->ret, s->ret) < 0)
		goto fail;
	d->data = malloc(s->len + 1);
	if (!d->data)
		goto fail;
	if (s->len)
		memcpy(d->data, s->data, s->len);
	d->data[s->len] = 0;
	for (size_t i = 0; i < s->nrcpt; i++) {
		const struct pt_qrcpt *r = &s->rcpt[i];
		if (pt_qfile_add_rcpt(d, r->address, r->orig, r->notify) < 0 ||
		    dupstr(&d->rcpt[i].reason, r->reason) < 0)
			goto fail;
		d->rcpt[i].state = r->state;
		memcpy(d->rcpt[i].dsn, r->dsn, sizeof r->dsn);
	}
	return 0;
fail:
	pt_qfile_free(d);
	return -1;
}

size_t
pt_qfile_pending(const struct pt_qfile *q)
{
	size_t n = 0;
	for (size_t i = 0; i < q->nrcpt; i++)
		n += q->rcpt[i].state == PT_QRCPT_PENDING || q->rcpt[i].state == PT_QRCPT_RESOLVED;
	return n;
}

int
pt_qid_valid(const char *id)
{
	size_t n = strlen(id);
	if (n < 6 || n > 20)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'A' && id[i] <= 'F')))
			return 0;
	return 1;
}

/* ---- storage ---- */

int
pt_qdir_sync(const char *qdir, const char *subdir)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/%s", qdir, subdir) >= (int)sizeof path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return pt_fsync_dir(path);
}

int
pt_qfile_store(const char *qdir, const char *subdir, const struct pt_qfile *q)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	char *img;
	size_t len;
	if (!pt_qid_valid(q->id)) {
		errno = EINVAL;
		return -1;
	}
	if (snprintf(tmp, sizeof tmp, "%s/%s/%s", qdir, PT_QDIR_INCOMING, q->id) >= (int)sizeof tmp ||
	    snprintf(dst, sizeof dst, "%s/%s/%s", qdir, subdir, q->id) >= (int)sizeof dst) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (pt_qfile_encode(q, &img, &len) < 0)
		return -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		int e = errno;
		free(img);
		errno = e;
		return -1;
	}
	int rc = pt_write_all(fd, img, len);
	if (rc == 0)
		rc = fsync(fd);
	int e = errno;
	if (close(fd) < 0 && rc == 0) {
		rc = -1;
		e = errno;
	}
	free(img);
	if (rc == 0 && rename(tmp, dst) < 0) {
		rc = -1;
		e = errno;
	}
	if (rc < 0) {
		unlink(tmp);
		errno = e;
	}
	return rc;
}

static int
read_file(const char *path, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	size_t cap = (size_t)st.st_size + 1, n = 0;
	char *b = malloc(cap);
	if (!b) {
		close(fd);
		return -1;
	}
	for (;;) {
		if (n == cap) {
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				close(fd);
				return -1;
			}
			b = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, b + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(b);
			close(fd);
			errno = e;
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	*out = b;
	*len = n;
	return 0;
}

int
pt_qfile_load(const char *qdir, const char *subdir, const char *id, struct pt_qfile *q,
              char *err, size_t errlen)
{
	char path[PATH_MAX];
	char *img;
	size_t len;
	memset(q, 0, sizeof *q);
	if (!pt_qid_valid(id)) {
		snprintf(err, errlen, "bad queue id");
		return -2;
	}
	if (snprintf(path, sizeof path, "%s/%s/%s", qdir, subdir, id) >= (int)sizeof path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (read_file(path, &img, &len) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	int rc = pt_qfile_decode(img, len, q, err, errlen);
	free(img);
	if (rc < 0)
		return -2;
	if (strcmp(q->id, id) != 0) {
		snprintf(err, errlen, "file name does not match its queue id %s", q->id);
		pt_qfile_free(q);
		return -2;
	}
	return 0;
}

int
pt_qfile_quarantine(const char *qdir, const char *subdir, const char *id)
{
	char from[PATH_MAX], to[PATH_MAX];
	snprintf(from, sizeof from, "%s/%s/%s", qdir, subdir, id);
	snprintf(to, sizeof to, "%s/%s/%s", qdir, PT_QDIR_CORRUPT, id);
	if (rename(from, to) < 0)
		return -1;
	pt_qdir_sync(qdir, PT_QDIR_CORRUPT);
	return pt_qdir_sync(qdir, subdir);
}

int
pt_qfile_remove(const char *qdir, const char *subdir, const char *id)
{
	char path[PATH_MAX];
	if (!pt_qid_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	snprintf(path, sizeof path, "%s/%s/%s", qdir, subdir, id);
	if (unlink(path) < 0)
		return -1;
	return pt_qdir_sync(qdir, subdir);
}

static int
ensure_dir(const char *path, mode_t mode, uid_t owner, gid_t group, char *err, size_t errlen)
{
	struct stat st;
	if (mkdir(path, mode) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s is not a directory", path);
		return -1;
	}
	/* mkdir honours the umask; the modes here are the contract. */
	if ((owner != (uid_t)-1 || group != (gid_t)-1) &&
	    (st.st_uid != owner || st.st_gid != group) && geteuid() == 0 &&
	    chown(path, owner, group) < 0) {
		snprintf(err, errlen, "cannot chown %s: %s", path, strerror(errno));
		return -1;
	}
	if ((st.st_mode & 07777) != mode && chmod(path, mode) < 0) {
		snprintf(err, errlen, "cannot chmod %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* The maildrop: anyone may create a file there (-wx for others, sticky:
 * nobody else may rename or remove it), nobody but its owner may list it,
 * and it is setgid, so each file a user drops gets the directory's group,
 * the server's own, whatever the user's groups are. sendmail writes 0640:
 * the server reads the file through that group, no other user can, and
 * no setgid program is needed. The file's owner tells who sent it. */
static int
maildrop_group(const char *path, gid_t group, char *err, size_t errlen)
{
	struct stat st;
	gid_t want = group != (gid_t)-1 ? group : getegid();
	if (lstat(path, &st) < 0) {
		snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
		return -1;
	}
	/* An owner may give its directory any group it is a member of; a
	 * chown clears the setgid bit, so the mode is set again after it. */
	if (st.st_gid != want && chown(path, (uid_t)-1, want) < 0) {
		snprintf(err, errlen, "cannot give %s the group %lu: %s", path, (unsigned long)want, strerror(errno));
		return -1;
	}
	if (chmod(path, PT_QDIR_MAILDROP_MODE) < 0 || lstat(path, &st) < 0) {
		snprintf(err, errlen, "cannot chmod %s: %s", path, strerror(errno));
		return -1;
	}
	if ((st.st_mode & 07777) != PT_QDIR_MAILDROP_MODE || st.st_gid != want) {
		snprintf(err, errlen, "%s must be mode %04o with group %lu (it is %04o, group %lu)", path,
		         PT_QDIR_MAILDROP_MODE, (unsigned long)want, (unsigned)(st.st_mode & 07777),
		         (unsigned long)st.st_gid);
		return -1;
	}
	return 0;
}

int
pt_qdir_setup(const char *qdir, uid_t owner, gid_t group, char *err, size_t errlen)
{
	static const struct { const char *name; mode_t mode; } dirs[] = {
		{ PT_QDIR_INCOMING, 0700 }, { PT_QDIR_ACTIVE, 0700 }, { PT_QDIR_DEFERRED, 0700 },
		{ PT_QDIR_CORRUPT, 0700 }, { PT_QDIR_PID, 0755 }, { PT_QDIR_PRIVATE, 0700 },
		{ PT_QDIR_MAILDROP, PT_QDIR_MAILDROP_MODE }, { PT_QDIR_PUBLIC, 0755 },
	};
	char path[PATH_MAX];
	if (!qdir || !qdir[0]) {
		snprintf(err, errlen, "queue_directory is empty");
		return -1;
	}
	if (ensure_dir(qdir, 0755, (uid_t)-1, (gid_t)-1, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		if (snprintf(path, sizeof path, "%s/%s", qdir, dirs[i].name) >= (int)sizeof path) {
			snprintf(err, errlen, "queue_directory path too long");
			return -1;
		}
		if (ensure_dir(path, dirs[i].mode, owner, group, err, errlen) < 0)
			return -1;
		if (strcmp(dirs[i].name, PT_QDIR_MAILDROP) == 0 && maildrop_group(path, group, err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* ---- retry schedule ---- */

time_t
pt_queue_backoff(unsigned attempts, time_t minimal, time_t maximal)
{
	if (minimal < 1)
		minimal = 1;
	if (maximal < minimal)
		maximal = minimal;
	time_t d = minimal;
	for (unsigned i = 1; i < attempts && d < maximal; i++)
		d = d > maximal / 2 ? maximal : d * 2;
	return d > maximal ? maximal : d;
}

int
pt_queue_expired(time_t arrival, time_t now, time_t lifetime)
{
	return now - arrival >= lifetime;
}
