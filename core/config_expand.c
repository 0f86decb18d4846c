/* Configuration finish: unknown names with did-you-mean, $name / ${name}
 * expansion with loop and depth detection, `< file` values, then typing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_priv.h"
#include "postern/strbuf.h"

int pt_cfg_unreadable_includes_ok;

/* ---- did you mean ---- */

/* Optimal string alignment distance (a swap of neighbours counts once),
 * cut off early: only names within 2 edits are of interest. */
static int
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int d[3][66];
	int best = 99;

	if (la > 64 || lb > 64 || (la > lb ? la - lb : lb - la) > 2)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		int *cur = d[i % 3], *prev = d[(i - 1) % 3], *prev2 = d[(i + 1) % 3];

		cur[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int cost = a[i - 1] != b[j - 1];
			int v = prev[j] + 1;

			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			if (prev[j - 1] + cost < v)
				v = prev[j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < v)
				v = prev2[j - 2] + 1;
			cur[j] = v;
		}
	}
	best = d[la % 3][lb];
	return best;
}

int
pt_cfg_distance(const char *a, const char *b)
{
	return edit_distance(a, b);
}

const char *
pt_cfg_suggest(const struct pt_config *c, const char *name)
{
	const char *best = NULL, *prefix = NULL;
	int best_d = 3;
	size_t len = strlen(name);

	for (size_t i = 0; i < c->nslots; i++) {
		const struct pt_cfg_slot *s = &c->slots[i];
		int d;

		if (s->decl == NULL)
			continue;
		d = edit_distance(name, s->name);
		if (d < best_d || (d == best_d && best && strcmp(s->name, best) < 0)) {
			if (d < (int)len) {
				best_d = d;
				best = s->name;
			}
		}
		/* "message_size" -> "message_size_limit": the shortest completion. */
		if (len >= 4 && strncmp(s->name, name, len) == 0 &&
			(prefix == NULL || strlen(s->name) < strlen(prefix) ||
			 (strlen(s->name) == strlen(prefix) && strcmp(s->name, prefix) < 0)))
			prefix = s->name;
	}
	if (best != NULL)
		return best;
	if (prefix != NULL)
		return prefix;
	/* "myhostname_x" -> "myhostname": the longest declared prefix. */
	for (size_t i = 0; i < c->nslots; i++) {
		const struct pt_cfg_slot *s = &c->slots[i];
		size_t l = strlen(s->name);

		if (s->decl != NULL && l >= 4 && l < len && strncmp(name, s->name, l) == 0 &&
			(prefix == NULL || l > strlen(prefix)))
			prefix = s->name;
	}
	return prefix;
}

/* ---- expansion ---- */

/* Values longer than PT_CFG_MAX_VALUE are an error the caller reports;
 * running out of memory while reading the config is fatal. */
static int
buf_add(struct pt_strbuf *b, const char *s, size_t n)
{
	if (b->len + n > PT_CFG_MAX_VALUE)
		return -1;
	pt_strbuf_put(b, s, n);
	if (b->oom) {
		fprintf(stderr, "postern: out of memory\n");
		abort();
	}
	return 0;
}

struct expander {
	struct pt_config *c;
	struct pt_cfg_slot *chain[PT_CFG_MAX_DEPTH + 2];
	int depth;
};

static int resolve(struct expander *x, struct pt_cfg_slot *s);

static void
slot_error(struct pt_config *c, struct pt_cfg_slot *s, const char *fmt, const char *a, const char *b)
{
	char msg[900];

	snprintf(msg, sizeof msg, fmt, a, b);
	if (s->raw != NULL)
		pt_cfg_error_at(c, s->line, 0, "%s", msg);
	else
		pt_cfg_error_at(c, 0, 1, "%s (in the default of %s, declared by %s)", msg, s->name, s->owner);
	s->failed = 1;
}

static int
is_name_char(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
}

/* Index of the '}' closing the "${" whose body starts at t[0], or n. */
static size_t
closing_brace(const char *t, size_t n)
{
	int open = 1;

	for (size_t i = 0; i < n; i++) {
		if (t[i] == '{')
			open++;
		else if (t[i] == '}' && --open == 0)
			return i;
	}
	return n;
}

static int
value_of(struct expander *x, struct pt_cfg_slot *s, const char *t, size_t n, const char **out)
{
	char *name = strndup(t, n);
	struct pt_cfg_slot *ref;

	if (name == NULL)
		abort();
	ref = pt_cfg_find(x->c, name);

	if (ref == NULL || ref->decl == NULL) {
		const char *hint = pt_cfg_suggest(x->c, name);
		char more[300] = "";

		if (hint != NULL)
			snprintf(more, sizeof more, " (did you mean \"%s\"?)", hint);
		if (strlen(name) > 200)
			slot_error(x->c, s, "unknown parameter \"%.200s...\" in $expansion%s", name, more);
		else
			slot_error(x->c, s, "unknown parameter \"%s\" in $expansion%s", name, more);
		free(name);
		return -1;
	}
	free(name);
	if (resolve(x, ref) < 0) {
		s->failed = 1;
		return -1;
	}
	*out = ref->value ? ref->value : "";
	return 0;
}

static int
expand_text(struct expander *x, struct pt_cfg_slot *s, const char *t, size_t n, struct pt_strbuf *out, int nest)
{
	size_t i = 0;

	if (x->depth + nest > PT_CFG_MAX_DEPTH) {
		slot_error(x->c, s, "parameter expansion of %s nests deeper than %s levels", s->name, "100");
		return -1;
	}
	while (i < n) {
		const char *dollar = memchr(t + i, '$', n - i);
		size_t plain = dollar ? (size_t)(dollar - (t + i)) : n - i;
		const char *val;

		if (buf_add(out, t + i, plain) < 0)
			goto too_long;
		i += plain;
		if (i >= n)
			break;
		i++; /* the '$' */
		if (i < n && t[i] == '$') {
			if (buf_add(out, "$", 1) < 0)
				goto too_long;
			i++;
		} else if (i < n && t[i] == '{') {
			size_t body = i + 1, end = body + closing_brace(t + body, n - body), ne = body;

			while (ne < end && is_name_char((unsigned char)t[ne]))
				ne++;
			if (end >= n) {
				slot_error(x->c, s, "missing '}' after '${' in the value of %s%s", s->name, "");
				return -1;
			}
			if (ne == body || (ne < end && t[ne] != '?' && t[ne] != ':')) {
				slot_error(x->c, s, "bad ${...} in the value of %s (expected ${name}, ${name?text} or ${name:text})%s",
					s->name, "");
				return -1;
			}
			if (value_of(x, s, t + body, ne - body, &val) < 0)
				return -1;
			if (ne == end) {
				if (buf_add(out, val, strlen(val)) < 0)
					goto too_long;
			} else if ((t[ne] == '?') == (*val != '\0')) {
				/* ${name?text}: text when name is non-empty; ${name:text}: when empty. */
				if (expand_text(x, s, t + ne + 1, end - ne - 1, out, nest + 1) < 0)
					return -1;
			}
			i = end + 1;
		} else if (i < n && is_name_char((unsigned char)t[i])) {
			size_t ne = i;

			while (ne < n && is_name_char((unsigned char)t[ne]))
				ne++;
			if (value_of(x, s, t + i, ne - i, &val) < 0)
				return -1;
			if (buf_add(out, val, strlen(val)) < 0)
				goto too_long;
			i = ne;
		} else {
			slot_error(x->c, s, "'$' not followed by a parameter name in the value of %s (write $$ for a literal $)%s",
				s->name, "");
			return -1;
		}
	}
	return 0;
too_long:
	slot_error(x->c, s, "the value of %s is longer than %s after expansion", s->name, "1 MiB");
	return -1;
}

static void
report_loop(struct expander *x, struct pt_cfg_slot *s)
{
	char msg[800];
	size_t len = 0;
	int start = x->depth - 1, at = -1;

	while (start > 0 && x->chain[start] != s)
		start--;
	for (int i = start; i < x->depth; i++) {
		const char *nm = x->chain[i]->name;

		if (at < 0 && x->chain[i]->raw != NULL)
			at = i;
		if (len < sizeof msg - 256)
			len += (size_t)snprintf(msg + len, sizeof msg - len, "%.100s -> ", nm);
		x->chain[i]->failed = 1;
	}
	snprintf(msg + len, sizeof msg - len, "%.100s", s->name);
	if (at >= 0)
		pt_cfg_error_at(x->c, x->chain[at]->line, 0, "parameter expansion loop: %s", msg);
	else
		pt_cfg_error_at(x->c, 0, 1, "parameter expansion loop in defaults: %s", msg);
}

static int
read_include(struct expander *x, struct pt_cfg_slot *s, const char *raw)
{
	const char *p = raw + 1, *e = raw + strlen(raw);
	char err[300], *path, *data;
	size_t n;

	while (*p == ' ' || *p == '\t')
		p++;
	if (p == e) {
		slot_error(x->c, s, "missing file name after '<' in the value of %s%s", s->name, "");
		return -1;
	}
	path = strdup(p);
	if (path == NULL)
		abort();
	data = pt_cfg_read_file(path, PT_CFG_MAX_INCLUDE, &n, err, sizeof err);
	if (data == NULL && errno == EACCES && pt_cfg_unreadable_includes_ok) {
		/* A client verb run by an ordinary user (sendmail from cron or
		 * mailx) never uses these values: the TLS key is root's. */
		data = strdup("");
		n = 0;
		if (data == NULL)
			abort();
	}
	if (data == NULL) {
		slot_error(x->c, s, "cannot read %.300s: %s", path, err);
		free(path);
		return -1;
	}
	free(path);
	if (memchr(data, '\0', n) != NULL) {
		free(data);
		slot_error(x->c, s, "the file named by %s contains a NUL byte%s", s->name, "");
		return -1;
	}
	s->value = data;
	s->shown = strdup(raw);
	if (s->shown == NULL)
		abort();
	return 0;
}

static int
resolve(struct expander *x, struct pt_cfg_slot *s)
{
	const char *raw;
	struct pt_strbuf out = {0};
	int rc = 0;

	if (s->state == PT_CFG_DONE)
		return s->failed ? -1 : 0;
	if (s->state == PT_CFG_BUSY) {
		report_loop(x, s);
		return -1;
	}
	if (x->depth >= PT_CFG_MAX_DEPTH) {
		slot_error(x->c, s, "parameter expansion of %s nests deeper than %s levels", s->name, "100");
		s->state = PT_CFG_DONE;
		return -1;
	}
	s->state = PT_CFG_BUSY;
	x->chain[x->depth++] = s;
	raw = s->raw ? s->raw : s->decl->def ? s->decl->def : "";
	if (raw[0] == '<') {
		rc = read_include(x, s, raw);
	} else {
		rc = expand_text(x, s, raw, strlen(raw), &out, 0);
		s->value = out.p ? out.p : strdup("");
		if (s->value == NULL)
			abort();
	}
	if (rc == 0 && !s->failed && s->hook != NULL) {
		char err[600] = "";

		if (s->hook(x->c, s->raw != NULL, &s->value, &s->shown, err, sizeof err) < 0) {
			slot_error(x->c, s, "%s%s", err, "");
			rc = -1;
		}
	}
	x->depth--;
	s->state = PT_CFG_DONE;
	if (s->failed) {
		/* Users of a broken value see it empty rather than half expanded. */
		free(s->value);
		s->value = strdup("");
		if (s->value == NULL)
			abort();
		return -1;
	}
	return rc;
}

static int
cmp_line(const void *a, const void *b)
{
	const struct pt_cfg_slot *x = *(const struct pt_cfg_slot *const *)a;
	const struct pt_cfg_slot *y = *(const struct pt_cfg_slot *const *)b;

	return (x->line > y->line) - (x->line < y->line);
}

/* A refused value reads as the parameter's default afterwards, so the
 * module checks that still run (one `postern check` reports everything)
 * see a sane value instead of a half-converted one, and add no follow-on
 * complaints. The slot stays failed: the config is never served. */
static void
read_as_default(struct pt_config *c, struct pt_cfg_slot *s)
{
	struct expander x = {.c = c};
	char *raw = s->raw;
	int nerrors = c->nerrors, truncated = c->truncated;
	char err[600];

	pt_cfg_free_values(s);
	s->raw = NULL;
	s->state = PT_CFG_NEW;
	s->failed = 0;
	if (resolve(&x, s) == 0 && !s->failed && pt_cfg_convert(s, err, sizeof err) < 0) {
		pt_cfg_free_values(s);
		s->value = strdup("");
		if (s->value == NULL)
			abort();
	}
	s->raw = raw;
	s->failed = 1;
	/* Whatever the default said was said at its own slot already. */
	while (c->nerrors > nerrors)
		free(c->errors[--c->nerrors].msg);
	c->truncated = truncated;
}

static void
check_value(struct pt_config *c, struct pt_cfg_slot *s)
{
	char err[600] = "";
	int bad = pt_cfg_convert(s, err, sizeof err) < 0;

	if (!bad && s->decl->validate != NULL && s->decl->validate(s->value, err, sizeof err) != 0)
		bad = 1;
	if (!bad)
		return;
	if (s->raw != NULL) {
		pt_cfg_error_at(c, s->line, 0, "invalid value for %s: %s", s->name, err);
		read_as_default(c, s);
		return;
	}
	pt_cfg_error_at(c, 0, 1, "invalid default for %s (declared by %s): %s", s->name, s->owner, err);
	s->failed = 1;
}

/* A module that did not load declared nothing, so every parameter of its
 * own looks unknown: one error naming them (after the module line's own)
 * says more than a "did you mean" per line. Near misses of parameters
 * that are known are still typos and reported one by one. */
static void
report_unknown(struct pt_config *c, struct pt_cfg_slot **unknown, size_t n)
{
	char failed[256] = "", names[512] = "";
	size_t fl = 0, nl = 0, unchecked = 0;
	int first_line = 0;

	for (size_t i = 0; i < c->nmodules; i++)
		if (c->modules[i].failed && fl < sizeof failed)
			fl += (size_t)snprintf(failed + fl, sizeof failed - fl, "%s%s", fl ? ", " : "",
				c->modules[i].name);
	for (size_t i = 0; i < n; i++) {
		const char *hint = pt_cfg_suggest(c, unknown[i]->name);

		if (hint != NULL) {
			pt_config_add_error(c, unknown[i]->line, "unknown parameter \"%.200s\" (did you mean \"%s\"?)",
				unknown[i]->name, hint);
		} else if (fl == 0) {
			pt_config_add_error(c, unknown[i]->line, "unknown parameter \"%.200s\"", unknown[i]->name);
		} else {
			if (unchecked++ == 0)
				first_line = unknown[i]->line;
			if (nl < sizeof names)
				nl += (size_t)snprintf(names + nl, sizeof names - nl, "%s%.100s", nl ? ", " : "",
					unknown[i]->name);
		}
	}
	if (unchecked > 0)
		pt_config_add_error(c, first_line, "%zu parameter%s not checked, because module %s did not load: %s%s",
			unchecked, unchecked == 1 ? "" : "s", failed, names, nl >= sizeof names ? "..." : "");
}

int
pt_config_finish(struct pt_config *c)
{
	struct expander x = {.c = c};
	struct pt_cfg_slot **unknown;
	size_t nunknown = 0;

	if (c->finished)
		return c->nerrors;
	c->finished = 1;
	unknown = malloc((c->nslots + 1) * sizeof *unknown);
	if (unknown == NULL)
		abort();
	for (size_t i = 0; i < c->nslots; i++)
		if (c->slots[i].raw != NULL && c->slots[i].decl == NULL)
			unknown[nunknown++] = &c->slots[i];
	qsort(unknown, nunknown, sizeof *unknown, cmp_line);
	report_unknown(c, unknown, nunknown);
	free(unknown);
	for (size_t i = 0; i < c->nslots; i++) {
		x.depth = 0;
		if (c->slots[i].decl != NULL)
			resolve(&x, &c->slots[i]);
	}
	for (size_t i = 0; i < c->nslots; i++) {
		struct pt_cfg_slot *s = &c->slots[i];

		if (s->decl != NULL && !s->failed)
			check_value(c, s);
	}
	pt_cfg_sort_errors(c);
	return c->nerrors;
}
