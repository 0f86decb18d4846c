/* Building a usable config: syntax, the core's and the modules'
 * parameter tables, resolution, module checks. */
#include <stdio.h>

#include "config_int.h"
#include "config_priv.h"
#include "loader.h"
#include "net.h"
#include "passdb.h"
#include "runtime.h"

const struct pt_config *pt_live_conf;

/* Core parameter tables that live beside the code using them. */
static void
extra_declare(struct pt_config *c)
{
	pt_config_declare(c, "core", pt_auth_params);
}

/* Per-listener settings: the listeners of modules that name parameters
 * one listener may override, those parameters (and the core's), and the
 * modules' built-in listener values. */
static void
declare_listeners(struct pt_config *c)
{
	pt_config_declare_listener_param(c, "syslog_name");
	for (size_t i = 0; i < pt_modules_count(); i++) {
		const struct pt_module *m = pt_modules_get(i);

		if (m->listener_params == NULL)
			continue;
		for (const char *const *p = m->listener_params; *p; p++)
			pt_config_declare_listener_param(c, *p);
		for (const struct pt_listener_decl *d = m->listeners; d && d->param; d++) {
			char name[32];

			pt_listener_name(d->param, name, sizeof name);
			pt_config_declare_listener(c, name);
		}
	}
	for (size_t i = 0; i < pt_modules_count(); i++)
		for (const struct pt_listener_setting *s = pt_modules_get(i)->listener_defaults; s && s->listener; s++)
			pt_config_declare_listener_default(c, s->listener, s->param, s->value);
}

static struct pt_config *
load(const char *path, const char *text, size_t len, int checks)
{
	struct pt_config *c = pt_config_parse(path, text, len);
	if (c == NULL)
		return NULL;
	/* Go on after every kind of error: one `postern check` lists every
	 * problem (a misspelt parameter does not hide a misspelt restriction
	 * or a broken map). The modules that did load run their checks; a
	 * check hook's complaint about a parameter that already has an error
	 * is dropped as a follow-on (pt_conf_error). */
	pt_config_declare_core(c);
	extra_declare(c);
	int loaded = pt_modules_load(c) == 0;
	if (loaded)
		declare_listeners(c);
	pt_config_finish(c);
	/* Broken module lines leave the listeners unknown: no guesses. */
	if (loaded)
		pt_config_finish_listeners(c);
	if (checks)
		pt_modules_check(c);
	pt_cfg_sort_errors(c);
	return c;
}

struct pt_config *
pt_runtime_load_text(const char *path, const char *text, size_t len)
{
	return load(path, text, len, 1);
}

struct pt_config *
pt_runtime_load(const char *path)
{
	return load(path, NULL, 0, 1);
}

struct pt_config *
pt_runtime_load_params(const char *path)
{
	return load(path, NULL, 0, 0);
}

int
pt_runtime_print_errors(const struct pt_config *c, FILE *out)
{
	int n = pt_config_error_count(c);
	for (int i = 0; i < n; i++)
		fprintf(out, "%s\n", pt_config_error(c, i));
	return n;
}
