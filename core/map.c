/* Maps: postmap/postalias-syntax text files parsed straight into an
 * open-addressing hash table, re-read when the file changes. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "postern/event.h"
#include "map.h"
#include "postern/config.h"
#include "postern/fdio.h"
#include "postern/strbuf.h"
#include "postern/log.h"
#include "postern/lookup_backend.h"
#include "event_int.h"
#include "loader.h"

/* Offsets are 32-bit to keep a million-entry table small. */
#define MAP_MAX_BYTES ((size_t)2 << 30)
#define MAP_MAX_LOGICAL_LINE (1024 * 1024)
#define MAP_MAX_REPORTS 100
#define MAP_RECHECK_MS 1000

struct map_entry {
	uint32_t key, val;            /* arena offsets, NUL-terminated */
	uint32_t line;
};

struct map_slot {
	uint32_t hash;
	uint32_t entry;               /* index + 1; 0 = empty */
};

struct pt_map_table {
	char *arena;
	size_t alen, acap;
	struct map_entry *ent;
	size_t n, cap;
	struct map_slot *slots;
	size_t nslots;                /* power of two */
};

static uint32_t
map_hash_folded(const char *s, size_t *lenp)
{
	/* FNV-1a over the lower-cased bytes. */
	uint32_t h = 2166136261u;
	size_t i = 0;
	for (; s[i]; i++) {
		h ^= (unsigned char)tolower((unsigned char)s[i]);
		h *= 16777619u;
	}
	if (lenp)
		*lenp = i;
	return h;
}

static int
map_key_equal_folded(const char *stored, const char *query)
{
	/* stored is lower case already */
	for (; *stored && *query; stored++, query++)
		if (*stored != (char)tolower((unsigned char)*query))
			return 0;
	return *stored == *query;
}

static const struct map_entry *
map_table_find(const struct pt_map_table *t, const char *key)
{
	if (!t || !t->nslots)
		return NULL;
	uint32_t h = map_hash_folded(key, NULL);
	size_t mask = t->nslots - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		const struct map_slot *s = &t->slots[i];
		if (!s->entry)
			return NULL;
		if (s->hash == h) {
			const struct map_entry *e = &t->ent[s->entry - 1];
			if (map_key_equal_folded(t->arena + e->key, key))
				return e;
		}
	}
}

static int
map_table_grow_slots(struct pt_map_table *t)
{
	size_t nn = t->nslots ? t->nslots * 2 : 1024;
	struct map_slot *ns = calloc(nn, sizeof(*ns));
	if (!ns)
		return -1;
	for (size_t i = 0; i < t->nslots; i++) {
		struct map_slot s = t->slots[i];
		if (!s.entry)
			continue;
		size_t j = s.hash & (nn - 1);
		while (ns[j].entry)
			j = (j + 1) & (nn - 1);
		ns[j] = s;
	}
	free(t->slots);
	t->slots = ns;
	t->nslots = nn;
	return 0;
}

static int
map_arena_reserve(struct pt_map_table *t, size_t more)
{
	if (t->alen + more <= t->acap)
		return 0;
	size_t nc = t->acap ? t->acap : 4096;
	while (nc < t->alen + more)
		nc *= 2;
	if (nc > MAP_MAX_BYTES * 2)
		return -1;
	char *na = realloc(t->arena, nc);
	if (!na)
		return -1;
	t->arena = na;
	t->acap = nc;
	return 0;
}

/* Parser state shared by the line handlers. */
struct map_parse {
	const char *name;
	enum pt_map_format fmt;
	pt_map_report_fn *report;
	void *arg;
	int errors, reports;
	int oom;
	struct pt_map_table *t;
};

static void
map_report(struct map_parse *p, int is_error, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
map_report(struct map_parse *p, int is_error, int line, const char *fmt, ...)
{
	if (is_error)
		p->errors++;
	if (!p->report || p->reports > MAP_MAX_REPORTS)
		return;
	char msg[600];
	int off;
	if (++p->reports > MAP_MAX_REPORTS) {
		snprintf(msg, sizeof(msg), "%s: too many problems, stopped reporting", p->name);
		p->report(p->arg, 1, msg);
		return;
	}
	off = line ? snprintf(msg, sizeof(msg), "%s:%d: ", p->name, line)
	           : snprintf(msg, sizeof(msg), "%s: ", p->name);
	if (off < 0 || (size_t)off >= sizeof(msg))
		off = 0;
	if (!is_error) {
		int w = snprintf(msg + off, sizeof(msg) - off, "warning: ");
		if (w > 0 && (size_t)w < sizeof(msg) - off)
			off += w;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + off, sizeof(msg) - off, fmt, ap);
	va_end(ap);
	p->report(p->arg, is_error, msg);
}

/* A key for a message: printable, bounded. */
static void
map_show(char *out, size_t outlen, const char *s, size_t n)
{
	size_t j = 0;
	for (size_t i = 0; i < n && j + 4 < outlen; i++)
		out[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (n > outlen - 4 && j + 3 < outlen) {
		out[j++] = '.';
		out[j++] = '.';
		out[j++] = '.';
	}
	out[j] = 0;
}

static void
map_insert(struct map_parse *p, int line, const char *key, size_t klen,
           const char *val, size_t vlen)
{
	struct pt_map_table *t = p->t;
	if (t->n >= UINT32_MAX - 1 || map_arena_reserve(t, klen + vlen + 2) < 0) {
		p->oom = 1;
		return;
	}
	if (t->alen + klen + vlen + 2 > UINT32_MAX) {
		map_report(p, 1, line, "map too large");
		return;
	}
	size_t koff = t->alen;
	char *k = t->arena + koff;
	for (size_t i = 0; i < klen; i++)
		k[i] = (char)tolower((unsigned char)key[i]);
	k[klen] = 0;
	const struct map_entry *dup = map_table_find(t, k);
	if (dup) {
		char shown[80];
		map_show(shown, sizeof(shown), key, klen);
		map_report(p, 0, line, "duplicate entry \"%s\" ignored (first at line %u)",
		           shown, (unsigned)dup->line);
		return;
	}
	memcpy(k + klen + 1, val, vlen);
	k[klen + 1 + vlen] = 0;
	t->alen += klen + vlen + 2;

	if (t->n == t->cap) {
		struct map_entry *ne = pt_array_grow(t->ent, &t->cap, sizeof(*ne), 256);
		if (!ne) {
			p->oom = 1;
			return;
		}
		t->ent = ne;
	}
	if ((t->n + 1) * 2 > t->nslots && map_table_grow_slots(t) < 0) {
		p->oom = 1;
		return;
	}
	t->ent[t->n] = (struct map_entry){ (uint32_t)koff, (uint32_t)(koff + klen + 1), (uint32_t)line };
	uint32_t h = map_hash_folded(k, NULL);
	size_t mask = t->nslots - 1, j = h & mask;
	while (t->slots[j].entry)
		j = (j + 1) & mask;
	t->slots[j] = (struct map_slot){ h, (uint32_t)(t->n + 1) };
	t->n++;
}

static int
map_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static void
map_logical_key_value(struct map_parse *p, int line, const char *s, size_t n)
{
	size_t k = 0;
	while (k < n && !map_is_space(s[k]))
		k++;
	size_t v = k;
	while (v < n && map_is_space(s[v]))
		v++;
	size_t e = n;
	while (e > v && map_is_space(s[e - 1]))
		e--;
	if (v == e) {
		char shown[80];
		map_show(shown, sizeof(shown), s, k);
		map_report(p, 1, line, "expected format: key whitespace value (\"%s\" has no value)", shown);
		return;
	}
	map_insert(p, line, s, k, s + v, e - v);
}

static void
map_logical_alias(struct map_parse *p, int line, const char *s, size_t n)
{
	char qbuf[1024];
	const char *name = s;
	size_t nlen = 0, i = 0;
	if (s[0] == '"') {
		/* "a b": value -- quoted names may hold white space and colons */
		for (i = 1; i < n && s[i] != '"'; i++) {
			if (s[i] == '\\' && i + 1 < n)
				i++;
			if (nlen + 1 >= sizeof(qbuf)) {
				map_report(p, 1, line, "alias name too long");
				return;
			}
			qbuf[nlen++] = s[i];
		}
		if (i >= n) {
			map_report(p, 1, line, "unterminated quoted alias name");
			return;
		}
		name = qbuf;
		i++;
	} else {
		while (i < n && s[i] != ':' && !map_is_space(s[i]))
			i++;
		nlen = i;
	}
	while (i < n && map_is_space(s[i]))
		i++;
	if (i >= n || s[i] != ':') {
		char shown[80];
		map_show(shown, sizeof(shown), s, n < 40 ? n : 40);
		map_report(p, 1, line, "need name: value pair, got \"%s\"", shown);
		return;
	}
	if (nlen == 0) {
		map_report(p, 1, line, "empty alias name");
		return;
	}
	i++;
	while (i < n && map_is_space(s[i]))
		i++;
	size_t e = n;
	while (e > i && map_is_space(s[e - 1]))
		e--;
	if (e == i) {
		char shown[80];
		map_show(shown, sizeof(shown), name, nlen);
		map_report(p, 1, line, "alias \"%s\" has no value", shown);
		return;
	}
	map_insert(p, line, name, nlen, s + i, e - i);
}

static void
map_logical(struct map_parse *p, int line, const char *s, size_t n)
{
	/* length first: an over-long joined entry arrives with n past its data */
	if (n > MAP_MAX_LOGICAL_LINE) {
		map_report(p, 1, line, "entry longer than %d bytes", MAP_MAX_LOGICAL_LINE);
		return;
	}
	if (memchr(s, 0, n)) {
		map_report(p, 1, line, "NUL byte in line");
		return;
	}
	if (p->fmt == PT_MAP_ALIASES)
		map_logical_alias(p, line, s, n);
	else
		map_logical_key_value(p, line, s, n);
}

/* The table even when some lines had errors (the good entries), for
 * checks that look at every value; NULL only when nothing was parsed. */
static struct pt_map_table *
map_table_parse_all(const char *name, const char *text, size_t len, enum pt_map_format fmt,
                    pt_map_report_fn *report, void *arg, int *nerrors)
{
	struct map_parse p = { .name = name, .fmt = fmt, .report = report, .arg = arg };
	int dummy;
	if (!nerrors)
		nerrors = &dummy;
	*nerrors = 0;
	if (len >= MAP_MAX_BYTES) {
		map_report(&p, 1, 0, "file too large (%zu bytes)", len);
		*nerrors = p.errors;
		return NULL;
	}
	p.t = calloc(1, sizeof(*p.t));
	if (!p.t || map_arena_reserve(p.t, len + len / 8 + 16) < 0) {
		pt_map_table_free(p.t);
		*nerrors = 1;
		return NULL;
	}

	/* A logical line is one physical line, or several joined by a space
	 * when continuation lines (leading white space) follow; joined holds
	 * the latter case. */
	char *joined = NULL;
	size_t jlen = 0, jcap = 0;
	const char *cur = NULL;
	size_t curlen = 0;
	int curline = 0, lineno = 0, toolong = 0;
	size_t pos = 0;
	while (pos < len && !p.oom) {
		const char *ls = text + pos;
		const char *nl = memchr(ls, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - ls) : len - pos;
		pos += ll + (nl ? 1 : 0);
		lineno++;
		if (ll && ls[ll - 1] == '\r')
			ll--;
		size_t f = 0;
		while (f < ll && map_is_space(ls[f]))
			f++;
		if (f == ll || ls[f] == '#')
			continue;             /* blank lines and comments */
		if (f > 0) {
			if (!cur) {
				map_report(&p, 1, lineno, "continuation line without a preceding entry");
				continue;
			}
			if (toolong || curlen + 1 + (ll - f) > MAP_MAX_LOGICAL_LINE) {
				toolong = 1;      /* reported when the entry ends */
				continue;
			}
			if (cur != joined) {
				if (jcap < curlen + 1) {
					jcap = curlen + 1 + (ll - f) + 256;
					char *nj = realloc(joined, jcap);
					if (!nj) {
						p.oom = 1;
						break;
					}
					joined = nj;
				}
				memcpy(joined, cur, curlen);
				jlen = curlen;
				cur = joined;
			}
			if (jlen + 1 + (ll - f) > jcap) {
				size_t nc = (jlen + 1 + (ll - f)) * 2;
				char *nj = realloc(joined, nc);
				if (!nj) {
					p.oom = 1;
					break;
				}
				joined = nj;
				jcap = nc;
				cur = joined;
			}
			joined[jlen++] = ' ';
			memcpy(joined + jlen, ls + f, ll - f);
			jlen += ll - f;
			curlen = jlen;
			continue;
		}
		if (cur)
			map_logical(&p, curline, cur, toolong ? MAP_MAX_LOGICAL_LINE + 1 : curlen);
		cur = ls;
		curlen = ll;
		curline = lineno;
		toolong = 0;
	}
	if (cur && !p.oom)
		map_logical(&p, curline, cur, toolong ? MAP_MAX_LOGICAL_LINE + 1 : curlen);
	free(joined);
	if (p.oom) {
		map_report(&p, 1, 0, "out of memory");
	}
	*nerrors = p.errors;
	if (p.oom) {
		pt_map_table_free(p.t);
		return NULL;
	}
	return p.t;
}

struct pt_map_table *
pt_map_table_parse(const char *name, const char *text, size_t len, enum pt_map_format fmt,
                   pt_map_report_fn *report, void *arg, int *nerrors)
{
	int dummy;
	if (!nerrors)
		nerrors = &dummy;
	struct pt_map_table *t = map_table_parse_all(name, text, len, fmt, report, arg, nerrors);
	if (t && *nerrors) {
		pt_map_table_free(t);
		return NULL;
	}
	return t;
}

void
pt_map_table_free(struct pt_map_table *t)
{
	if (!t)
		return;
	free(t->arena);
	free(t->ent);
	free(t->slots);
	free(t);
}

const char *
pt_map_table_get(const struct pt_map_table *t, const char *key)
{
	const struct map_entry *e = map_table_find(t, key);
	return e ? t->arena + e->val : NULL;
}

int
pt_map_table_line(const struct pt_map_table *t, const char *key)
{
	const struct map_entry *e = map_table_find(t, key);
	return e ? (int)e->line : 0;
}

size_t
pt_map_table_count(const struct pt_map_table *t)
{
	return t ? t->n : 0;
}

static int
map_read_fd(int fd, const struct stat *st, char **text, size_t *len)
{
	if (!S_ISREG(st->st_mode)) {
		errno = S_ISDIR(st->st_mode) ? EISDIR : EINVAL;
		return -1;
	}
	if ((size_t)st->st_size >= MAP_MAX_BYTES) {
		errno = EFBIG;
		return -1;
	}
	/* The file may grow while we read it: the bound is checked again. */
	return pt_read_all(fd, MAP_MAX_BYTES - 1, text, len);
}

static int
map_read_file_st(const char *path, char **text, size_t *len, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -1;
	int rc = -1;
	if (fstat(fd, st) == 0)
		rc = map_read_fd(fd, st, text, len);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

int
pt_map_read_file(const char *path, char **text, size_t *len)
{
	struct stat st;
	return map_read_file_st(path, text, len, &st);
}

int
pt_map_spec_path(const char *spec, char *path, size_t pathlen, char *err, size_t errlen)
{
	static const char *const text_types[] = { "hash", "texthash", "btree", "lmdb", "cdb",
		"dbm", "sdbm", NULL };
	const char *p = spec;
	char mtype[32];
	/* A module's type: ARG names its config file. */
	if (pt_map_spec_module(spec, mtype, sizeof mtype, &p))
		goto file;
	if (!strncmp(p, "proxy:", 6))
		p += 6;               /* no proxymap process here: read it directly */
	const char *colon = strchr(p, ':');
	const char *slash = strchr(p, '/');
	if (colon && (!slash || colon < slash)) {
		size_t tl = (size_t)(colon - p);
		int ok = 0;
		for (int i = 0; text_types[i]; i++)
			if (strlen(text_types[i]) == tl && !strncmp(p, text_types[i], tl))
				ok = 1;
		if (!ok) {
			snprintf(err, errlen, "unsupported map type \"%.*s\" in \"%s\" "
			         "(supported: hash, texthash, and a loaded module's, e.g. ldap with "
			         "`module ldap`)", (int)(tl > 40 ? 40 : tl), p, spec);
			return -1;
		}
		p = colon + 1;
	}
file:
	if (!*p) {
		snprintf(err, errlen, "map \"%s\" names no file", spec);
		return -1;
	}
	if (strlen(p) >= pathlen) {
		snprintf(err, errlen, "map file name too long");
		return -1;
	}
	strcpy(path, p);
	return 0;
}

int
pt_map_check(const char *spec, enum pt_map_format fmt, pt_map_report_fn *report, void *arg,
             size_t *entries)
{
	return pt_map_check_each(spec, fmt, report, arg, entries, NULL, NULL);
}

int
pt_map_check_each(const char *spec, enum pt_map_format fmt, pt_map_report_fn *report, void *arg,
                  size_t *entries, pt_map_entry_fn *each, void *each_arg)
{
	char path[4096], err[300], msg[4400];
	if (entries)
		*entries = 0;
	char mtype[32];
	const char *marg;
	if (pt_map_spec_module(spec, mtype, sizeof mtype, &marg)) {
		/* The module validates its own config; entries are in the
		 * directory, not listed here. Loaded but not registered yet
		 * (its check hook has not run): it checks the file itself. */
		const struct pt_map_type_ops *ops = pt_map_type_get(mtype);
		return ops && ops->check ? ops->check(marg, report, arg) : 0;
	}
	if (pt_map_spec_path(spec, path, sizeof(path), err, sizeof(err)) < 0) {
		if (report)
			report(arg, 1, err);
		return -1;
	}
	char *text;
	size_t len;
	if (pt_map_read_file(path, &text, &len) < 0) {
		snprintf(msg, sizeof(msg), "%s: cannot open: %s", path, strerror(errno));
		if (report)
			report(arg, 1, msg);
		return 1;
	}
	int nerr;
	struct pt_map_table *t = map_table_parse_all(path, text, len, fmt, report, arg, &nerr);
	free(text);
	if (!t && nerr == 0)
		nerr = 1;
	if (entries && nerr == 0)
		*entries = pt_map_table_count(t);
	/* The entries that parsed are shown even when other lines failed:
	 * one run reports every problem. */
	for (size_t i = 0; each && t && i < t->n; i++) {
		const struct map_entry *e = &t->ent[i];
		nerr += each(each_arg, path, (int)e->line, t->arena + e->key, t->arena + e->val);
	}
	pt_map_table_free(t);
	return nerr;
}

/* ---- live maps ---- */

struct map_ident {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

struct pt_map {
	/* A module's map: every call goes to ops with h. */
	const struct pt_map_type_ops *ops;
	void *h;
	pthread_mutex_t mu;
	char *path;
	enum pt_map_format fmt;
	struct pt_map_table *t;       /* live table; NULL until a file loaded */
	uid_t owner;
	struct map_ident seen;        /* last file examined, loaded or refused */
	int have_seen, seen_ok;
	int missing_logged;
	uint64_t last_check_ms;
};


static void
map_ident_of(const struct stat *st, struct map_ident *id)
{
	memset(id, 0, sizeof(*id));
	id->dev = st->st_dev;
	id->ino = st->st_ino;
	id->size = st->st_size;
	id->mtime = st->st_mtim;
	id->ctime = st->st_ctim;
}

static int
map_ident_same(const struct map_ident *a, const struct map_ident *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Called with m->mu held. */
static int
map_check_locked(struct pt_map *m, int force)
{
	uint64_t now = pt_mono_ms();
	if (!force && m->have_seen && now - m->last_check_ms < MAP_RECHECK_MS)
		return 0;
	m->last_check_ms = now;

	struct stat st;
	if (stat(m->path, &st) < 0) {
		if (!m->missing_logged)
			pt_log(PT_LOG_ERROR, "%s: cannot open: %s%s", m->path, strerror(errno),
			       m->t ? "; keeping the previous contents" : "");
		m->missing_logged = 1;
		m->have_seen = 1;
		m->seen_ok = 0;
		memset(&m->seen, 0, sizeof(m->seen));
		return -1;
	}
	m->missing_logged = 0;
	struct map_ident id;
	map_ident_of(&st, &id);
	if (m->have_seen && map_ident_same(&id, &m->seen))
		return m->seen_ok ? 0 : -1;

	char *text;
	size_t len;
	if (map_read_file_st(m->path, &text, &len, &st) < 0) {
		pt_log(PT_LOG_ERROR, "%s: cannot read: %s%s", m->path, strerror(errno),
		       m->t ? "; keeping the previous contents" : "");
		m->have_seen = 1;
		m->seen_ok = 0;
		memset(&m->seen, 0, sizeof(m->seen));
		return -1;
	}
	/* identify by what was actually read, so a later change is seen */
	map_ident_of(&st, &m->seen);
	m->have_seen = 1;
	int nerr;
	struct pt_map_table *t = pt_map_table_parse(m->path, text, len, m->fmt, pt_lookup_log_report,
	                                            NULL, &nerr);
	free(text);
	if (!t) {
		m->seen_ok = 0;
		pt_log(PT_LOG_ERROR, "%s: not loaded (%d error%s)%s", m->path, nerr,
		       nerr == 1 ? "" : "s", m->t ? "; keeping the previous contents" : "");
		return -1;
	}
	m->seen_ok = 1;
	int reload = m->t != NULL;
	pt_map_table_free(m->t);
	m->t = t;
	m->owner = st.st_uid;
	if (reload)
		pt_log(PT_LOG_INFO, "%s: reloaded, %zu entries", m->path, t->n);
	return 1;
}

struct pt_map *
pt_map_open(const char *spec, enum pt_map_format fmt, char *err, size_t errlen)
{
	char path[4096];
	if (pt_map_spec_path(spec, path, sizeof(path), err, errlen) < 0)
		return NULL;
	char mtype[32];
	const char *marg;
	if (pt_map_spec_module(spec, mtype, sizeof mtype, &marg)) {
		const struct pt_map_type_ops *ops = pt_map_type_get(mtype);
		if (!ops || !ops->open || !ops->lookup) {
			snprintf(err, errlen, "map type \"%s\" is not available in this process "
			         "(module %s not initialised)", mtype, mtype);
			return NULL;
		}
		struct pt_map *mm = calloc(1, sizeof(*mm));
		if (!mm || !(mm->path = strdup(marg))) {
			free(mm);
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		mm->ops = ops;
		mm->fmt = fmt;
		if (!(mm->h = ops->open(marg, fmt, err, errlen))) {
			free(mm->path);
			free(mm);
			return NULL;
		}
		return mm;
	}
	struct pt_map *m = calloc(1, sizeof(*m));
	if (!m || !(m->path = strdup(path))) {
		free(m);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->fmt = fmt;
	pthread_mutex_init(&m->mu, NULL);
	pthread_mutex_lock(&m->mu);
	map_check_locked(m, 1);
	pthread_mutex_unlock(&m->mu);
	return m;
}

void
pt_map_close(struct pt_map *m)
{
	if (!m)
		return;
	if (m->ops) {
		m->ops->close(m->h);
		free(m->path);
		free(m);
		return;
	}
	pthread_mutex_destroy(&m->mu);
	pt_map_table_free(m->t);
	free(m->path);
	free(m);
}

/* refresh: re-read a changed file first (the event loop's lookups);
 * 0: answer from what is loaded, never touching the file (Lua calls). */
static char *
map_lookup(struct pt_map *m, const char *key, int *tempfail, uid_t *owner, int refresh)
{
	int tf = 0;
	char *val = NULL;
	if (m->ops) {
		/* never a wait on a loop thread: the pending rule in map.h */
		val = m->ops->lookup(m->h, key, &tf);
		if (val)
			tf = 0;
		if (owner)
			*owner = (uid_t)-1;   /* no file owner: no /file or |command rights */
		if (tempfail)
			*tempfail = tf;
		return val;
	}
	pthread_mutex_lock(&m->mu);
	if (refresh)
		map_check_locked(m, 0);
	if (!m->t) {
		tf = 1;
	} else {
		const char *v = pt_map_table_get(m->t, key);
		if (v && !(val = strdup(v)))
			tf = 1;
		if (owner)
			*owner = m->owner;
	}
	pthread_mutex_unlock(&m->mu);
	if (tempfail)
		*tempfail = tf;
	return val;
}

char *
pt_map_lookup(struct pt_map *m, const char *key, int *tempfail, uid_t *owner)
{
	return map_lookup(m, key, tempfail, owner, 1);
}

char *
pt_map_lookup_loaded(struct pt_map *m, const char *key, int *tempfail)
{
	return map_lookup(m, key, tempfail, NULL, 0);
}

int
pt_map_refresh(struct pt_map *m)
{
	if (m->ops)
		return 0;             /* a directory has no file to re-read */
	pthread_mutex_lock(&m->mu);
	int rc = map_check_locked(m, 1);
	pthread_mutex_unlock(&m->mu);
	return rc;
}

const char *
pt_map_path(const struct pt_map *m)
{
	return m->path;
}

size_t
pt_map_count(struct pt_map *m)
{
	if (m->ops)
		return 0;
	pthread_mutex_lock(&m->mu);
	size_t n = pt_map_table_count(m->t);
	pthread_mutex_unlock(&m->mu);
	return n;
}

/* ---------- lists of maps ---------- */

struct pt_map_list {
	size_t n;
	struct pt_map *map[];
};

struct pt_map_list *
pt_map_list_open(const struct pt_list *specs, enum pt_map_format fmt, const char *param, char *err, size_t errlen)
{
	struct pt_map_list *l = calloc(1, sizeof *l + specs->n * sizeof l->map[0]);
	if (l == NULL) {
		snprintf(err, errlen, "%s: out of memory", param);
		return NULL;
	}
	for (size_t i = 0; i < specs->n; i++) {
		char why[300];
		struct pt_map *m = pt_map_open(specs->v[i], fmt, why, sizeof why);
		if (m == NULL) {
			snprintf(err, errlen, "%s: %s", param, why);
			pt_map_list_close(l);
			return NULL;
		}
		l->map[l->n++] = m;
	}
	return l;
}

void
pt_map_list_close(struct pt_map_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++)
		pt_map_close(l->map[i]);
	free(l);
}

char *
pt_map_list_lookup(struct pt_map_list *l, const char *key, int *tempfail, uid_t *owner)
{
	int temp = 0;
	for (size_t i = 0; l && i < l->n; i++) {
		int tf = 0;
		char *v = pt_map_lookup(l->map[i], key, &tf, owner);
		if (v) {
			*tempfail = 0;
			return v;
		}
		temp |= tf;
	}
	*tempfail = temp;
	return NULL;
}

size_t
pt_map_list_count(const struct pt_map_list *l)
{
	return l ? l->n : 0;
}

struct pt_map *
pt_map_list_get(const struct pt_map_list *l, size_t i)
{
	return l && i < l->n ? l->map[i] : NULL;
}

/* ---------- map types provided by modules ---------- */

#define MAP_TYPES_MAX 8
static struct {
	char name[32];
	const struct pt_map_type_ops *ops;
} map_types[MAP_TYPES_MAX];
static size_t n_map_types;
static pthread_mutex_t map_types_mu = PTHREAD_MUTEX_INITIALIZER;

int
pt_map_type_register(const char *type, const struct pt_map_type_ops *ops)
{
	if (!type || !ops || strlen(type) >= sizeof map_types[0].name)
		return -1;
	pthread_mutex_lock(&map_types_mu);
	size_t i = 0;
	while (i < n_map_types && strcmp(map_types[i].name, type) != 0)
		i++;
	if (i == n_map_types) {
		if (n_map_types == MAP_TYPES_MAX) {
			pthread_mutex_unlock(&map_types_mu);
			return -1;
		}
		snprintf(map_types[i].name, sizeof map_types[i].name, "%s", type);
		n_map_types++;
	}
	map_types[i].ops = ops;
	pthread_mutex_unlock(&map_types_mu);
	return 0;
}

const struct pt_map_type_ops *
pt_map_type_get(const char *type)
{
	const struct pt_map_type_ops *ops = NULL;
	pthread_mutex_lock(&map_types_mu);
	for (size_t i = 0; i < n_map_types && !ops; i++)
		if (strcmp(map_types[i].name, type) == 0)
			ops = map_types[i].ops;
	pthread_mutex_unlock(&map_types_mu);
	return ops;
}

int
pt_map_spec_module(const char *spec, char *type, size_t typelen, const char **arg)
{
	const char *p = spec;
	if (!p)
		return 0;
	if (!strncmp(p, "proxy:", 6))
		p += 6;
	size_t n = 0;
	while (p[n] && (isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == '-'))
		n++;
	if (p[n] != ':' || n == 0 || n >= typelen)
		return 0;
	static const char *const text_types[] = { "hash", "texthash", "btree", "lmdb", "cdb",
		"dbm", "sdbm", "passwd-file", NULL };
	for (int i = 0; text_types[i]; i++)
		if (strlen(text_types[i]) == n && !strncmp(p, text_types[i], n))
			return 0;
	memcpy(type, p, n);
	type[n] = 0;
	if (!pt_map_type_get(type) && !pt_module_loaded(type))
		return 0;
	*arg = p + n + 1;
	return 1;
}

static _Thread_local int map_may_block = -1;   /* -1: not said */
static _Thread_local unsigned long map_pending;

void
pt_map_set_may_block(int yes)
{
	map_may_block = yes;
}

/* Unless the thread said: a thread running an event loop never waits;
 * any other (pool jobs, agent threads, CLI verbs) may. */
int
pt_map_may_block(void)
{
	return map_may_block >= 0 ? map_may_block : !pt_loop_on_thread();
}

void
pt_map_note_pending(void)
{
	map_pending++;
}

unsigned long
pt_map_pending_count(void)
{
	return map_pending;
}

uint64_t
pt_map_retry_ms(uint64_t waited_ms)
{
	uint64_t d = waited_ms / 4;
	return d < 2 ? 2 : d > 50 ? 50 : d;
}

/* passdb/userdb sources: one handle per spec, kept for the process. */
struct pt_map_source {
	char *spec;
	const struct pt_map_type_ops *ops;
	void *h;
	struct pt_map_source *next;
};
static struct pt_map_source *map_sources;
static pthread_mutex_t map_sources_mu = PTHREAD_MUTEX_INITIALIZER;

struct pt_map_source *
pt_map_source_get(const char *spec, int want_userdb, char *err, size_t errlen)
{
	char type[32];
	const char *arg;
	const struct pt_map_type_ops *ops;
	if (!pt_map_spec_module(spec, type, sizeof type, &arg) || !(ops = pt_map_type_get(type))) {
		snprintf(err, errlen, "\"%.64s\" names no loaded lookup module", spec);
		return NULL;
	}
	if (want_userdb ? !ops->userdb : !ops->passdb) {
		snprintf(err, errlen, "map type %s offers no %s", type, want_userdb ? "userdb" : "passdb");
		return NULL;
	}
	pthread_mutex_lock(&map_sources_mu);
	struct pt_map_source *s = map_sources;
	while (s && (strcmp(s->spec, spec) != 0 || s->ops != ops))
		s = s->next;
	if (!s && (s = calloc(1, sizeof *s)) != NULL) {
		s->ops = ops;
		if (!(s->spec = strdup(spec)) || !(s->h = ops->open(arg, PT_MAP_KEY_VALUE, err, errlen))) {
			if (!s->spec)
				snprintf(err, errlen, "out of memory");
			free(s->spec);
			free(s);
			s = NULL;
		} else {
			s->next = map_sources;
			map_sources = s;
		}
	} else if (!s) {
		snprintf(err, errlen, "out of memory");
	}
	pthread_mutex_unlock(&map_sources_mu);
	return s;
}

int
pt_map_source_passdb(struct pt_map_source *s, const char *user, const char *password,
                     char **stored, char *host, size_t hostlen, char *why, size_t whylen)
{
	*stored = NULL;
	if (host && hostlen)
		host[0] = '\0';
	return s->ops->passdb(s->h, user, password, stored, host, hostlen, why, whylen);
}

int
pt_map_source_userdb(struct pt_map_source *s, const char *user, struct pt_user *out)
{
	return s->ops->userdb(s->h, user, out);
}

void
pt_map_source_cache_ttl(struct pt_map_source *s, unsigned *ttl_s, unsigned *negative_ttl_s)
{
	*ttl_s = *negative_ttl_s = 0;
	if (s->ops->cache_ttl)
		s->ops->cache_ttl(s->h, ttl_s, negative_ttl_s);
}
