/* Per-listener settings, as Postfix's master.cf `-o name=value`: a line
 * `LISTENER.PARAM = value` (submission.smtpd_relay_restrictions = ...)
 * gives one listener its own value of a parameter. Each listener with
 * such values gets a view: a whole config built from the same file with
 * those slots replaced, resolved by the same code ($expansion, types,
 * validators), so a module reads a listener's parameters with the usual
 * accessors on pt_conf_listener(conf, name) and never knows which values
 * are overridden. A $name in a view expands to the listener's value, as
 * it does in a Postfix service started with -o. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_priv.h"


static const char *listener_names(const struct pt_config *c, char *buf, size_t len);

static int
listener_char(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
}

static int
param_char(int ch)
{
	return listener_char(ch) || (ch >= 'A' && ch <= 'Z');
}

/* Add or replace (a later line wins, as for a parameter set twice). */
static void
override_set(struct pt_cfg_override **v, size_t *n, const char *listener, size_t llen,
             const char *param, size_t plen, const char *raw, size_t rlen, int line)
{
	for (size_t i = 0; i < *n; i++) {
		struct pt_cfg_override *o = &(*v)[i];

		if (strlen(o->listener) == llen && memcmp(o->listener, listener, llen) == 0 &&
		    strlen(o->param) == plen && memcmp(o->param, param, plen) == 0) {
			free(o->raw);
			o->raw = pt_cfg_xstrndup(raw, rlen);
			o->line = line;
			return;
		}
	}
	*v = pt_cfg_xrealloc(*v, sizeof **v * (*n + 1));
	(*v)[*n].listener = pt_cfg_xstrndup(listener, llen);
	(*v)[*n].param = pt_cfg_xstrndup(param, plen);
	(*v)[*n].raw = pt_cfg_xstrndup(raw, rlen);
	(*v)[*n].line = line;
	(*n)++;
}

void
pt_cfg_override_line(struct pt_config *c, const char *name, size_t namelen, const char *value,
                     size_t valuelen, int line)
{
	const char *dot = memchr(name, '.', namelen);
	size_t llen = (size_t)(dot - name), plen = namelen - llen - 1;
	int ok = llen > 0 && plen > 0;

	for (size_t i = 0; ok && i < llen; i++)
		ok = listener_char((unsigned char)name[i]);
	for (size_t i = 0; ok && i < plen; i++)
		ok = param_char((unsigned char)dot[1 + i]);
	if (!ok) {
		pt_config_add_error(c, line, "bad name \"%.*s\" (expected parameter, or LISTENER.parameter "
		                    "for one listener, e.g. submission.smtpd_relay_restrictions)",
		                    (int)(namelen > 200 ? 200 : namelen), name);
		return;
	}
	override_set(&c->overrides, &c->noverrides, name, llen, dot + 1, plen, value, valuelen, line);
}

void
pt_config_declare_listener(struct pt_config *c, const char *name)
{
	if (pt_config_listener_known(c, name))
		return;
	c->listeners = pt_cfg_xrealloc(c->listeners, sizeof *c->listeners * (c->nlisteners + 1));
	c->listeners[c->nlisteners].name = pt_cfg_xstrndup(name, strlen(name));
	c->listeners[c->nlisteners].view = NULL;
	c->nlisteners++;
}

static int
listener_param(const struct pt_config *c, const char *param)
{
	for (size_t i = 0; i < c->nlistener_params; i++)
		if (strcmp(c->listener_params[i], param) == 0)
			return 1;
	return 0;
}

int
pt_cfg_listener_param(const struct pt_config *c, const char *param)
{
	return listener_param(c->root ? c->root : c, param);
}

/* The reference's section (postern config --markdown). */
void
pt_cfg_doc_listeners(const struct pt_config *c, FILE *out)
{
	char known[300];

	fprintf(out, "\n### Per-listener settings\n\n"
	        "`LISTENER.PARAMETER = value` gives one listener its own value (Postfix's master.cf `-o`); "
	        "LISTENER is a `*_listen` parameter without `_listen` (%s). The parameters marked "
	        "*(per listener)* above can be set so. Built-in values, which a line in the file replaces:\n\n"
	        "| listener | parameter | value |\n| --- | --- | --- |\n", listener_names(c, known, sizeof known));
	for (size_t i = 0; i < c->nlisteners; i++)
		for (size_t k = 0; k < c->nbuiltins; k++) {
			const struct pt_cfg_override *o = &c->builtins[k];
			const struct pt_cfg_slot *s = pt_cfg_find(c, o->param);

			if (strcmp(o->listener, c->listeners[i].name) == 0 && s != NULL && s->decl != NULL)
				fprintf(out, "| %s | `%s` | %s |\n", o->listener, o->param, o->raw);
		}
}

void
pt_config_declare_listener_param(struct pt_config *c, const char *param)
{
	if (listener_param(c, param))
		return;
	c->listener_params = pt_cfg_xrealloc(c->listener_params, sizeof *c->listener_params * (c->nlistener_params + 1));
	c->listener_params[c->nlistener_params++] = pt_cfg_xstrndup(param, strlen(param));
}

void
pt_config_declare_listener_default(struct pt_config *c, const char *listener, const char *param,
                                   const char *value)
{
	override_set(&c->builtins, &c->nbuiltins, listener, strlen(listener), param, strlen(param),
	             value, strlen(value), 0);
}

int
pt_config_listener_known(const struct pt_config *c, const char *name)
{
	if (c->root != NULL)
		c = c->root;
	for (size_t i = 0; i < c->nlisteners; i++)
		if (strcmp(c->listeners[i].name, name) == 0)
			return 1;
	return 0;
}

/* ---- errors ---- */

static int
has_error(const struct pt_config *c, const char *full)
{
	for (int i = 0; i < c->nerrors; i++)
		if (strcmp(c->errors[i].msg, full) == 0)
			return 1;
	return 0;
}

static void
root_add(struct pt_config *c, int line, const char *full)
{
	if (c->truncated || has_error(c, full))
		return;
	if (c->nerrors >= PT_CFG_MAX_ERRORS) {
		/* Let the common path write the "too many errors" line. */
		pt_cfg_error_at(c, 0, 0, "%s", full);
		return;
	}
	c->errors = pt_cfg_xrealloc(c->errors, sizeof *c->errors * (size_t)(c->nerrors + 1));
	c->errors[c->nerrors].line = line;
	c->errors[c->nerrors].msg = pt_cfg_xstrndup(full, strlen(full));
	c->nerrors++;
}

void
pt_cfg_view_error(const struct pt_config *v, int line, const char *msg)
{
	/* Error lists are bookkeeping, not configuration (see pt_conf_error). */
	struct pt_config *root = (struct pt_config *)v->root;
	int n = line > 0 ? snprintf(NULL, 0, "%s:%d: %s", root->path, line, msg)
	                 : snprintf(NULL, 0, "%s: %s", root->path, msg);
	char *full = pt_cfg_xrealloc(NULL, (size_t)n + 1);

	if (line > 0)
		snprintf(full, (size_t)n + 1, "%s:%d: %s", root->path, line, msg);
	else
		snprintf(full, (size_t)n + 1, "%s: %s", root->path, msg);
	root_add(root, line, full);
	free(full);
	pt_cfg_sort_errors(root);
}

/* ---- views ---- */

static const char *
listener_names(const struct pt_config *c, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < c->nlisteners && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "", c->listeners[i].name);
	if (c->nlisteners == 0)
		snprintf(buf, len, "none: no loaded module has listeners that take them");
	return buf;
}

/* A file line that names a listener and a parameter it may override. */
static int
override_valid(struct pt_config *c, const struct pt_cfg_override *o)
{
	const struct pt_cfg_slot *s = pt_cfg_find(c, o->param);

	if (!pt_config_listener_known(c, o->listener)) {
		char known[300];

		pt_config_add_error(c, o->line, "unknown listener \"%.100s\" in %.100s.%.100s (listeners with "
		                    "per-listener settings: %s)", o->listener, o->listener, o->param,
		                    listener_names(c, known, sizeof known));
		return 0;
	}
	if (s == NULL || s->decl == NULL) {
		const char *hint = pt_cfg_suggest(c, o->param);

		if (hint != NULL)
			pt_config_add_error(c, o->line, "unknown parameter \"%.200s\" in %s.%.200s (did you mean \"%s\"?)",
			                    o->param, o->listener, o->param, hint);
		else
			pt_config_add_error(c, o->line, "unknown parameter \"%.200s\" in %s.%.200s", o->param,
			                    o->listener, o->param);
		return 0;
	}
	if (!listener_param(c, o->param)) {
		pt_config_add_error(c, o->line, "%s cannot be set per listener (%s.%s): only the parameters the "
		                    "listener's sessions read can (smtpd_* and syslog_name; see \"Per-listener "
		                    "settings\" in the README)", o->param, o->listener, o->param);
		return 0;
	}
	return 1;
}

static void
view_apply(struct pt_config *v, const struct pt_cfg_override *o)
{
	struct pt_cfg_slot *s = pt_cfg_find(v, o->param);

	if (s == NULL || s->decl == NULL)
		return;  /* a built-in value for a module that is not loaded */
	free(s->raw);
	s->raw = pt_cfg_xstrndup(o->raw, strlen(o->raw));
	s->line = o->line;
}

static struct pt_config *
view_build(struct pt_config *c, const char *listener, const int *valid)
{
	struct pt_config *v = calloc(1, sizeof *v);
	int any = 0;

	if (v == NULL) {
		fprintf(stderr, "postern: out of memory\n");
		abort();
	}
	v->path = pt_cfg_xstrndup(c->path, strlen(c->path));
	v->root = c;
	for (size_t i = 0; i < c->nslots; i++) {
		const struct pt_cfg_slot *s = &c->slots[i];
		struct pt_cfg_slot *d;

		if (s->decl == NULL && s->raw == NULL)
			continue;
		d = pt_cfg_slot_get(v, s->name);
		d->raw = s->raw ? pt_cfg_xstrndup(s->raw, strlen(s->raw)) : NULL;
		d->line = s->line;
		d->decl = s->decl;
		d->owner = s->owner ? pt_cfg_xstrndup(s->owner, strlen(s->owner)) : NULL;
		d->decl_order = s->decl_order;
		d->hook = s->hook;
	}
	v->ndeclared = c->ndeclared;
	for (size_t i = 0; i < c->nbuiltins; i++)
		if (strcmp(c->builtins[i].listener, listener) == 0) {
			const struct pt_cfg_slot *s = pt_cfg_find(c, c->builtins[i].param);

			view_apply(v, &c->builtins[i]);
			any |= s != NULL && s->decl != NULL;
		}
	for (size_t i = 0; i < c->noverrides; i++)
		if (valid[i] && strcmp(c->overrides[i].listener, listener) == 0) {
			view_apply(v, &c->overrides[i]);
			any = 1;
		}
	if (!any) {
		pt_config_free(v);
		return NULL;
	}
	pt_config_finish(v);
	/* The view repeats the file's own errors; only new ones are added. */
	for (int i = 0; i < v->nerrors; i++)
		root_add(c, v->errors[i].line, v->errors[i].msg);
	return v;
}

int
pt_config_finish_listeners(struct pt_config *c)
{
	int *valid = pt_cfg_xrealloc(NULL, sizeof *valid * (c->noverrides + 1));

	for (size_t i = 0; i < c->noverrides; i++)
		valid[i] = override_valid(c, &c->overrides[i]);
	for (size_t i = 0; i < c->nlisteners; i++) {
		struct pt_cfg_listener *l = &c->listeners[i];

		if (l->view == NULL) {
			l->view = view_build(c, l->name, valid);
			if (l->view != NULL)
				l->view->view_name = l->name;
		}
	}
	free(valid);
	pt_cfg_sort_errors(c);
	return c->nerrors;
}

const struct pt_config *
pt_conf_listener(const struct pt_config *c, const char *listener)
{
	if (c->root != NULL)
		c = c->root;
	for (size_t i = 0; listener != NULL && i < c->nlisteners; i++)
		if (strcmp(c->listeners[i].name, listener) == 0)
			return c->listeners[i].view ? c->listeners[i].view : c;
	return c;
}

const char *
pt_conf_listener_name(const struct pt_config *c, size_t i)
{
	if (c->root != NULL)
		c = c->root;
	for (size_t k = 0; k < c->nlisteners; k++)
		if (c->listeners[k].view != NULL && i-- == 0)
			return c->listeners[k].name;
	return NULL;
}

void
pt_cfg_listeners_free(struct pt_config *c)
{
	for (size_t i = 0; i < c->noverrides; i++) {
		free(c->overrides[i].listener);
		free(c->overrides[i].param);
		free(c->overrides[i].raw);
	}
	free(c->overrides);
	for (size_t i = 0; i < c->nbuiltins; i++) {
		free(c->builtins[i].listener);
		free(c->builtins[i].param);
		free(c->builtins[i].raw);
	}
	free(c->builtins);
	for (size_t i = 0; i < c->nlistener_params; i++)
		free(c->listener_params[i]);
	free(c->listener_params);
	for (size_t i = 0; i < c->nlisteners; i++) {
		free(c->listeners[i].name);
		pt_config_free(c->listeners[i].view);
	}
	free(c->listeners);
}

/* ---- `postern config` ---- */

static void
dump_value(FILE *out, const char *listener, const struct pt_cfg_slot *s)
{
	const char *v = s->shown ? s->shown : s->value ? s->value : "";

	fprintf(out, "%s.%s =%s%s\n", listener, s->name, *v ? " " : "", v);
}

static int
set_in_file(const struct pt_config *c, const char *listener, const char *param)
{
	for (size_t i = 0; i < c->noverrides; i++)
		if (strcmp(c->overrides[i].listener, listener) == 0 && strcmp(c->overrides[i].param, param) == 0)
			return 1;
	return 0;
}

static int
cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* After the global values: each listener's overridden parameters with
 * the value it uses (only_set: only those its file lines set), in the
 * syntax of the file, so the output can be pasted back. */
void
pt_cfg_dump_listeners(const struct pt_config *c, FILE *out, int only_set)
{
	for (size_t i = 0; i < c->nlisteners; i++) {
		const struct pt_cfg_listener *l = &c->listeners[i];
		const char **names;
		size_t n = 0;

		if (l->view == NULL)
			continue;
		names = pt_cfg_xrealloc(NULL, sizeof *names * (c->noverrides + c->nbuiltins + 1));
		for (size_t k = 0; k < c->noverrides + c->nbuiltins; k++) {
			const struct pt_cfg_override *o = k < c->noverrides ? &c->overrides[k]
			                                                    : &c->builtins[k - c->noverrides];
			const struct pt_cfg_slot *s = pt_cfg_find(l->view, o->param);
			int dup = 0;

			if (strcmp(o->listener, l->name) != 0 || s == NULL || s->decl == NULL ||
			    !listener_param(c, o->param) || (only_set && !set_in_file(c, l->name, o->param)))
				continue;
			for (size_t j = 0; j < n; j++)
				dup |= strcmp(names[j], o->param) == 0;
			if (!dup)
				names[n++] = o->param;
		}
		qsort(names, n, sizeof *names, cmp_name);
		for (size_t k = 0; k < n; k++)
			dump_value(out, l->name, pt_cfg_find(l->view, names[k]));
		free(names);
	}
}

/* `postern config submission.smtpd_relay_restrictions`: the value that
 * listener uses, overridden or not (only_set: only a file line's). */
int
pt_cfg_dump_dotted(const struct pt_config *c, FILE *out, int only_set, const char *name)
{
	const char *dot = strchr(name, '.');
	char listener[64];
	const struct pt_cfg_slot *s;

	if (c->root != NULL)
		c = c->root;
	if (dot == NULL || (size_t)(dot - name) >= sizeof listener) {
		fprintf(stderr, "postern: unknown listener in \"%s\"\n", name);
		return 1;
	}
	memcpy(listener, name, (size_t)(dot - name));
	listener[dot - name] = '\0';
	if (!pt_config_listener_known(c, listener)) {
		char known[300];

		fprintf(stderr, "postern: unknown listener \"%s\" (listeners with per-listener settings: %s)\n",
		        listener, listener_names(c, known, sizeof known));
		return 1;
	}
	s = pt_cfg_find(pt_conf_listener(c, listener), dot + 1);
	if (s == NULL || s->decl == NULL) {
		fprintf(stderr, "postern: unknown parameter \"%s\"\n", dot + 1);
		return 1;
	}
	if (!only_set || set_in_file(c, listener, dot + 1))
		dump_value(out, listener, s);
	return 0;
}
