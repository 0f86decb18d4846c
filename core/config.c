/* Configuration: main.cf syntax pass, the parameter table, errors, typed
 * accessors and `postern config` output. Expansion lives in config_expand.c,
 * type conversion in config_types.c. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_priv.h"


/* ---- errors ---- */

static void
add_error_v(struct pt_config *c, int line, int show_zero, const char *fmt, va_list ap)
{
	char msg[1024];
	char *full;
	int n;

	if (c->truncated)
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	if (c->nerrors >= PT_CFG_MAX_ERRORS) {
		c->truncated = 1;
		line = 0;
		show_zero = 0;
		snprintf(msg, sizeof msg, "too many errors, stopping after %d", PT_CFG_MAX_ERRORS);
	}
	if (line > 0 || show_zero)
		n = snprintf(NULL, 0, "%s:%d: %s", c->path, line, msg);
	else
		n = snprintf(NULL, 0, "%s: %s", c->path, msg);
	full = pt_cfg_xrealloc(NULL, (size_t)n + 1);
	if (line > 0 || show_zero)
		snprintf(full, (size_t)n + 1, "%s:%d: %s", c->path, line, msg);
	else
		snprintf(full, (size_t)n + 1, "%s: %s", c->path, msg);
	c->errors = pt_cfg_xrealloc(c->errors, sizeof *c->errors * (size_t)(c->nerrors + 1));
	c->errors[c->nerrors].line = line;
	c->errors[c->nerrors].msg = full;
	c->nerrors++;
}

void
pt_config_add_error(struct pt_config *c, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_error_v(c, line, 0, fmt, ap);
	va_end(ap);
}

void
pt_cfg_error_at(struct pt_config *c, int line, int show_zero, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_error_v(c, line, show_zero, fmt, ap);
	va_end(ap);
}

int
pt_config_error_count(const struct pt_config *c)
{
	return c ? c->nerrors : 1;
}

const char *
pt_config_error(const struct pt_config *c, int i)
{
	if (c == NULL || i < 0 || i >= c->nerrors)
		return NULL;
	return c->errors[i].msg;
}

/* Stable, so errors on one line keep the order they were found in; the
 * "too many errors" line stays last. */
void
pt_cfg_sort_errors(struct pt_config *c)
{
	int n = c->nerrors - (c->truncated ? 1 : 0);

	for (int i = 1; i < n; i++) {
		struct pt_cfg_error e = c->errors[i];
		int j = i - 1;

		while (j >= 0 && c->errors[j].line > e.line) {
			c->errors[j + 1] = c->errors[j];
			j--;
		}
		c->errors[j + 1] = e;
	}
}

/* ---- name -> slot hash (FNV-1a, open addressing) ---- */

static uint64_t
hash_name(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static void
hash_insert(struct pt_config *c, size_t idx)
{
	size_t mask = c->hash_cap - 1;
	size_t i = hash_name(c->slots[idx].name) & mask;

	while (c->hash[i] != 0)
		i = (i + 1) & mask;
	c->hash[i] = idx + 1;
}

static void
hash_grow(struct pt_config *c)
{
	size_t cap = c->hash_cap ? c->hash_cap * 2 : 64;

	free(c->hash);
	c->hash = pt_cfg_xrealloc(NULL, cap * sizeof *c->hash);
	memset(c->hash, 0, cap * sizeof *c->hash);
	c->hash_cap = cap;
	for (size_t i = 0; i < c->nslots; i++)
		hash_insert(c, i);
}

struct pt_cfg_slot *
pt_cfg_find(const struct pt_config *c, const char *name)
{
	size_t mask, i;

	if (c == NULL || c->hash_cap == 0)
		return NULL;
	mask = c->hash_cap - 1;
	i = hash_name(name) & mask;
	while (c->hash[i] != 0) {
		struct pt_cfg_slot *s = &c->slots[c->hash[i] - 1];

		if (strcmp(s->name, name) == 0)
			return s;
		i = (i + 1) & mask;
	}
	return NULL;
}

struct pt_cfg_slot *
pt_cfg_slot_get(struct pt_config *c, const char *name)
{
	struct pt_cfg_slot *s = pt_cfg_find(c, name);

	if (s != NULL)
		return s;
	if (c->nslots == c->slots_cap) {
		c->slots_cap = c->slots_cap ? c->slots_cap * 2 : 64;
		c->slots = pt_cfg_xrealloc(c->slots, c->slots_cap * sizeof *c->slots);
	}
	s = &c->slots[c->nslots];
	memset(s, 0, sizeof *s);
	s->name = pt_cfg_xstrndup(name, strlen(name));
	c->nslots++;
	if (c->nslots * 2 > c->hash_cap)
		hash_grow(c);
	else
		hash_insert(c, c->nslots - 1);
	return s;
}

void
pt_cfg_set_hook(struct pt_config *c, const char *name, pt_cfg_hook *hook)
{
	struct pt_cfg_slot *s = pt_cfg_find(c, name);

	if (s != NULL && s->decl != NULL)
		s->hook = hook;
}

/* ---- syntax pass ---- */

static int
is_name_char(int ch)
{
	return isalnum(ch) || ch == '_';
}

static int
is_blank(int ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v';
}

static void
trim(const char **s, const char **e)
{
	while (*s < *e && is_blank((unsigned char)**s))
		(*s)++;
	while (*e > *s && is_blank((unsigned char)(*e)[-1]))
		(*e)--;
}

static void
module_line(struct pt_config *c, const char *s, const char *e, int line)
{
	const char *tok[3], *tend[3];
	int n = 0;
	size_t i;
	char *name;

	while (s < e) {
		while (s < e && is_blank((unsigned char)*s))
			s++;
		if (s == e)
			break;
		if (n == 3) {
			pt_config_add_error(c, line, "too many words in module line (expected: module NAME [PATH])");
			return;
		}
		tok[n] = s;
		while (s < e && !is_blank((unsigned char)*s))
			s++;
		tend[n++] = s;
	}
	if (n < 2) {
		pt_config_add_error(c, line, "missing module name (expected: module NAME [PATH])");
		return;
	}
	for (const char *p = tok[1]; p < tend[1]; p++) {
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_')) {
			pt_config_add_error(c, line, "bad module name \"%.*s\" (use a-z, 0-9 and _)",
				(int)(tend[1] - tok[1] > 200 ? 200 : tend[1] - tok[1]), tok[1]);
			return;
		}
	}
	name = pt_cfg_xstrndup(tok[1], (size_t)(tend[1] - tok[1]));
	for (i = 0; i < c->nmodules; i++) {
		if (strcmp(c->modules[i].name, name) == 0) {
			pt_config_add_error(c, line, "module \"%s\" is loaded twice (lines %d and %d)",
				name, c->modules[i].line, line);
			free(name);
			return;
		}
	}
	c->modules = pt_cfg_xrealloc(c->modules, sizeof *c->modules * (c->nmodules + 1));
	c->modules[c->nmodules].name = name;
	c->modules[c->nmodules].path = n == 3 ? pt_cfg_xstrndup(tok[2], (size_t)(tend[2] - tok[2])) : NULL;
	c->modules[c->nmodules].line = line;
	c->modules[c->nmodules].failed = 0;
	c->nmodules++;
}

/* One logical line: "name = value" or "module NAME [PATH]". */
static void
logical_line(struct pt_config *c, const char *s, size_t len, int line)
{
	const char *e = s + len, *eq, *ns, *ne, *vs, *ve;
	struct pt_cfg_slot *slot;

	if (memchr(s, '\0', len) != NULL) {
		pt_config_add_error(c, line, "NUL byte in line");
		return;
	}
	eq = memchr(s, '=', len);
	if (len >= 6 && memcmp(s, "module", 6) == 0 && (len == 6 || is_blank((unsigned char)s[6]))) {
		const char *p = s + 6;

		while (p < e && is_blank((unsigned char)*p))
			p++;
		if (p == e || *p != '=') {
			module_line(c, s, e, line);
			return;
		}
	}
	if (eq == NULL) {
		ns = s;
		ne = e;
		trim(&ns, &ne);
		pt_config_add_error(c, line, "missing '=' after parameter name \"%.*s\"",
			(int)(ne - ns > 200 ? 200 : ne - ns), ns);
		return;
	}
	ns = s;
	ne = eq;
	trim(&ns, &ne);
	if (ns == ne) {
		pt_config_add_error(c, line, "missing parameter name before '='");
		return;
	}
	vs = eq + 1;
	ve = e;
	trim(&vs, &ve);
	if (memchr(ns, '.', (size_t)(ne - ns)) != NULL) {
		/* LISTENER.PARAM: one listener's value (config_listener.c). */
		pt_cfg_override_line(c, ns, (size_t)(ne - ns), vs, (size_t)(ve - vs), line);
		return;
	}
	for (const char *p = ns; p < ne; p++) {
		if (!is_name_char((unsigned char)*p)) {
			pt_config_add_error(c, line, "bad parameter name \"%.*s\" (use letters, digits and _)",
				(int)(ne - ns > 200 ? 200 : ne - ns), ns);
			return;
		}
	}
	{
		char *name = pt_cfg_xstrndup(ns, (size_t)(ne - ns));

		slot = pt_cfg_slot_get(c, name);
		free(name);
	}
	free(slot->raw);
	slot->raw = pt_cfg_xstrndup(vs, (size_t)(ve - vs));
	slot->line = line;
}

struct logical {
	char *buf;
	size_t len, cap;
	int line;         /* 0 = none pending */
	int too_long;
};

static void
logical_append(struct logical *l, const char *s, size_t n)
{
	if (l->too_long)
		return;
	if (l->len + n + 1 > PT_CFG_MAX_LINE) {
		l->too_long = 1;
		return;
	}
	if (l->len + n + 1 > l->cap) {
		l->cap = (l->len + n + 1) * 2;
		l->buf = pt_cfg_xrealloc(l->buf, l->cap);
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void
logical_flush(struct pt_config *c, struct logical *l)
{
	if (l->line == 0)
		return;
	if (l->too_long)
		pt_config_add_error(c, l->line, "line too long (over %d bytes)", PT_CFG_MAX_LINE);
	else
		logical_line(c, l->buf, l->len, l->line);
	l->line = 0;
	l->len = 0;
	l->too_long = 0;
}

static void
parse_text(struct pt_config *c, const char *text, size_t len)
{
	struct logical l = {0};
	const char *p = text, *end = text + len;
	int lineno = 0;
	int orphan_reported = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *q = p, *te = le;

		lineno++;
		while (q < le && is_blank((unsigned char)*q))
			q++;
		if (q == le || *q == '#') {
			/* Blank and comment lines neither start nor end a logical line. */
		} else if ((size_t)(le - p) > PT_CFG_MAX_LINE) {
			logical_flush(c, &l);
			pt_config_add_error(c, lineno, "line too long (over %d bytes)", PT_CFG_MAX_LINE);
			/* Its continuation lines belong to a line we refused. */
			l.line = 0;
			orphan_reported = 1;
		} else if (q != p) {
			if (l.line == 0) {
				if (!orphan_reported)
					pt_config_add_error(c, lineno,
						"continuation line (starts with white space) before any parameter");
				orphan_reported = 1;
			} else {
				trim(&q, &te);
				logical_append(&l, " ", 1);
				logical_append(&l, q, (size_t)(te - q));
			}
		} else {
			logical_flush(c, &l);
			orphan_reported = 0;
			l.line = lineno;
			logical_append(&l, p, (size_t)(le - p));
		}
		p = nl ? nl + 1 : end;
	}
	logical_flush(c, &l);
	free(l.buf);
}

struct pt_config *
pt_config_parse(const char *path, const char *text, size_t len)
{
	struct pt_config *c = calloc(1, sizeof *c);

	if (c == NULL)
		return NULL;
	c->path = pt_cfg_xstrndup(path ? path : "-", strlen(path ? path : "-"));
	hash_grow(c);
	if (text == NULL) {
		char err[256];
		size_t n;
		char *buf = pt_cfg_read_file(c->path, PT_CFG_MAX_FILE, &n, err, sizeof err);

		if (buf == NULL) {
			pt_config_add_error(c, 0, "cannot open: %s", err);
			return c;
		}
		parse_text(c, buf, n);
		free(buf);
	} else if (len > PT_CFG_MAX_FILE) {
		pt_config_add_error(c, 0, "file too large (over %d MiB)", PT_CFG_MAX_FILE / (1024 * 1024));
	} else {
		parse_text(c, text, len);
	}
	return c;
}

void
pt_config_free(struct pt_config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nslots; i++) {
		struct pt_cfg_slot *s = &c->slots[i];

		free(s->name);
		free(s->raw);
		free(s->owner);
		pt_cfg_free_values(s);
	}
	free(c->slots);
	free(c->hash);
	for (size_t i = 0; i < c->nmodules; i++) {
		free(c->modules[i].name);
		free(c->modules[i].path);
	}
	free(c->modules);
	for (int i = 0; i < c->nerrors; i++)
		free(c->errors[i].msg);
	free(c->errors);
	pt_cfg_listeners_free(c);
	free(c->path);
	free(c);
}

/* ---- module lines ---- */

size_t
pt_config_module_count(const struct pt_config *c)
{
	return c->nmodules;
}

const char *
pt_config_module_name(const struct pt_config *c, size_t i)
{
	return i < c->nmodules ? c->modules[i].name : NULL;
}

const char *
pt_config_module_path(const struct pt_config *c, size_t i)
{
	return i < c->nmodules ? c->modules[i].path : NULL;
}

int
pt_config_module_line(const struct pt_config *c, size_t i)
{
	return i < c->nmodules ? c->modules[i].line : 0;
}

void
pt_config_module_failed(struct pt_config *c, size_t i)
{
	if (i < c->nmodules)
		c->modules[i].failed = 1;
}

/* ---- declaring tables ---- */

int
pt_config_declare(struct pt_config *c, const char *owner, const struct pt_param *params)
{
	int bad = 0;

	if (params == NULL)
		return 0;
	if (c->finished) {
		pt_config_add_error(c, 0, "%s: parameters declared after the configuration was finished", owner);
		return -1;
	}
	for (const struct pt_param *p = params; p->name != NULL; p++) {
		struct pt_cfg_slot *s;
		int ok = p->name[0] != '\0';

		for (const char *q = p->name; *q; q++)
			if (!is_name_char((unsigned char)*q))
				ok = 0;
		if (!ok || p->type < PT_STR || p->type > PT_PATH) {
			pt_cfg_error_at(c, 0, 1, "bad declaration of parameter \"%s\" by %s", p->name, owner);
			bad = -1;
			continue;
		}
		s = pt_cfg_slot_get(c, p->name);
		if (s->decl != NULL) {
			pt_cfg_error_at(c, 0, 1, "parameter \"%s\" is declared by both %s and %s",
				p->name, s->owner, owner);
			bad = -1;
			continue;
		}
		s->decl = p;
		s->owner = pt_cfg_xstrndup(owner, strlen(owner));
		s->decl_order = c->ndeclared++;
	}
	return bad;
}

const char *
pt_config_owner(const struct pt_config *c, const char *name)
{
	struct pt_cfg_slot *s = pt_cfg_find(c, name);

	return s && s->decl ? s->owner : NULL;
}

/* ---- accessors ---- */

static const struct pt_cfg_slot *
need(const struct pt_config *c, const char *name, const char *what)
{
	const struct pt_cfg_slot *s = pt_cfg_find(c, name);

	if (s == NULL || s->decl == NULL) {
		fprintf(stderr, "postern: %s of undeclared parameter \"%s\" (programming error)\n", what, name);
		abort();
	}
	if (!c->finished) {
		fprintf(stderr, "postern: %s of \"%s\" before the configuration was finished\n", what, name);
		abort();
	}
	return s;
}

static void
wrong_type(const char *name, const char *what)
{
	fprintf(stderr, "postern: %s of parameter \"%s\" of another type (programming error)\n", what, name);
	abort();
}

const char *
pt_conf_str(const struct pt_config *c, const char *name)
{
	const struct pt_cfg_slot *s = need(c, name, "pt_conf_str");

	return s->value ? s->value : "";
}

int
pt_conf_bool(const struct pt_config *c, const char *name)
{
	const struct pt_cfg_slot *s = need(c, name, "pt_conf_bool");

	if (s->decl->type != PT_BOOL)
		wrong_type(name, "pt_conf_bool");
	return s->boolean;
}

long long
pt_conf_int(const struct pt_config *c, const char *name)
{
	const struct pt_cfg_slot *s = need(c, name, "pt_conf_int");

	if (s->decl->type != PT_INT && s->decl->type != PT_SIZE && s->decl->type != PT_TIME)
		wrong_type(name, "pt_conf_int");
	return s->num;
}

/* Every type has its words split out, so pt_conf_list also serves PT_STR
 * parameters whose value is a list of words with a special form. */
const struct pt_list *
pt_conf_list(const struct pt_config *c, const char *name)
{
	return &need(c, name, "pt_conf_list")->list;
}

const struct pt_cidr_list *
pt_conf_cidrs(const struct pt_config *c, const char *name)
{
	const struct pt_cfg_slot *s = need(c, name, "pt_conf_cidrs");

	if (s->decl->type != PT_CIDR_LIST)
		wrong_type(name, "pt_conf_cidrs");
	return &s->cidrs;
}

const struct pt_hostport_list *
pt_conf_hostports(const struct pt_config *c, const char *name)
{
	const struct pt_cfg_slot *s = need(c, name, "pt_conf_hostports");

	if (s->decl->type != PT_HOSTPORT_LIST)
		wrong_type(name, "pt_conf_hostports");
	return &s->hostports;
}

int
pt_conf_isset(const struct pt_config *c, const char *name)
{
	return need(c, name, "pt_conf_isset")->raw != NULL;
}

const char *
pt_conf_file(const struct pt_config *c)
{
	return c->path;
}

int
pt_conf_line(const struct pt_config *c, const char *name)
{
	const struct pt_cfg_slot *s = need(c, name, "pt_conf_line");

	return s->raw ? s->line : 0;
}

void
pt_conf_error(const struct pt_config *c, const char *name, const char *fmt, ...)
{
	/* The config is handed to check hooks as const, but its error list is
	 * bookkeeping, not configuration: hooks may add to it. */
	struct pt_config *mc = (struct pt_config *)c;
	const struct pt_cfg_slot *s = pt_cfg_find(c, name);
	va_list ap;

	/* Checks run even when parameters failed (one run reports all); what
	 * they say about a value already refused is a follow-on. */
	if (s != NULL && s->failed)
		return;
	va_start(ap, fmt);
	if (c->root != NULL) {
		/* A listener's view: the error belongs to the file's config,
		 * at the line of the value the view uses. */
		char msg[1024];

		vsnprintf(msg, sizeof msg, fmt, ap);
		pt_cfg_view_error(c, s && s->raw ? s->line : 0, msg);
	} else {
		add_error_v(mc, s && s->raw ? s->line : 0, 0, fmt, ap);
	}
	va_end(ap);
}

/* ---- `postern config` ---- */

static int
cmp_slot_name(const void *a, const void *b)
{
	const struct pt_cfg_slot *x = *(const struct pt_cfg_slot *const *)a;
	const struct pt_cfg_slot *y = *(const struct pt_cfg_slot *const *)b;

	return strcmp(x->name, y->name);
}

static void
dump_one(const struct pt_cfg_slot *s, FILE *out)
{
	const char *v = s->shown ? s->shown : s->value ? s->value : "";

	if (*v)
		fprintf(out, "%s = %s\n", s->name, v);
	else
		fprintf(out, "%s =\n", s->name);
}

int
pt_config_dump(const struct pt_config *c, FILE *out, int only_set, char **names, int nnames)
{
	int rc = 0;

	if (names != NULL && nnames > 0) {
		for (int i = 0; i < nnames; i++) {
			const struct pt_cfg_slot *s = pt_cfg_find(c, names[i]);

			if (strchr(names[i], '.') != NULL) {
				rc |= pt_cfg_dump_dotted(c, out, only_set, names[i]);
				continue;
			}
			if (s == NULL || s->decl == NULL) {
				fprintf(stderr, "postern: unknown parameter \"%s\"\n", names[i]);
				rc = 1;
				continue;
			}
			if (!only_set || s->raw != NULL)
				dump_one(s, out);
		}
		return rc;
	}
	{
		const struct pt_cfg_slot **v = pt_cfg_xrealloc(NULL, (c->nslots + 1) * sizeof *v);
		size_t n = 0;

		for (size_t i = 0; i < c->nslots; i++)
			if (c->slots[i].decl != NULL && (!only_set || c->slots[i].raw != NULL))
				v[n++] = &c->slots[i];
		qsort(v, n, sizeof *v, cmp_slot_name);
		for (size_t i = 0; i < n; i++)
			dump_one(v[i], out);
		free(v);
		pt_cfg_dump_listeners(c, out, only_set);
	}
	return rc;
}
