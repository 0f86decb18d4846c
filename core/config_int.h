/* Core-internal side of the configuration: loading a file, declaring the
 * parameter tables of the core and of loaded modules, and dumping values.
 * Life of a config: parse (syntax, module lines) -> declare each owner's
 * table -> finish (unknown names, $expansion, types, validators) -> use. */
#ifndef POSTERN_CONFIG_INT_H
#define POSTERN_CONFIG_INT_H

#include <stdio.h>

#include "postern/config.h"

/* Syntax pass. Never NULL except out of memory; errors are kept inside
 * (pt_config_error_count / pt_config_error). A missing file is an error
 * "FILE: cannot open: reason". text != NULL parses that buffer instead of
 * reading path (path still names it in messages; used by tests/fuzzing). */
struct pt_config *pt_config_parse(const char *path, const char *text, size_t len);
void pt_config_free(struct pt_config *c);

/* `module NAME [PATH]` lines in file order. */
size_t pt_config_module_count(const struct pt_config *c);
const char *pt_config_module_name(const struct pt_config *c, size_t i);
const char *pt_config_module_path(const struct pt_config *c, size_t i); /* NULL = default */
int pt_config_module_line(const struct pt_config *c, size_t i);
/* The loader could not use module i: its parameters are unknown to the
 * config, so pt_config_finish reports them as unchecked, not as typos. */
void pt_config_module_failed(struct pt_config *c, size_t i);

/* Declare owner's parameters (table ends with name == NULL). Declaring a
 * name twice is an error naming both owners. The core's own table is
 * declared by pt_config_declare_core(). */
int pt_config_declare(struct pt_config *c, const char *owner, const struct pt_param *params);
int pt_config_declare_core(struct pt_config *c);

/* Resolve: unknown parameters (with a did-you-mean suggestion), $name and
 * ${name} expansion (loops detected), `< file` values, type conversion,
 * bounds, validators. Returns the number of errors (0 = usable). */
int pt_config_finish(struct pt_config *c);

/* Add an error "FILE:LINE: message" (line 0: "FILE: message"). */
void pt_config_add_error(struct pt_config *c, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int pt_config_error_count(const struct pt_config *c);
const char *pt_config_error(const struct pt_config *c, int i);

/* `postern config`: "name = value" per declared parameter, sorted by
 * name; only_set: those the file sets; names: only these (unknown name ->
 * "postern: unknown parameter NAME" on stderr, returns 1). */
int pt_config_dump(const struct pt_config *c, FILE *out, int only_set, char **names, int nnames);

/* `postern config -d`: declared default and doc of each parameter (names:
 * only these); markdown: the reference tables of docs/CONFIG.md. */
int pt_config_doc(const struct pt_config *c, FILE *out, int markdown, char **names, int nnames);

/* Per-listener settings: `LISTENER.PARAM = value` lines (Postfix's
 * master.cf -o). The loader declares the listeners that take them (named
 * as their *_listen parameter without "_listen"), the parameters one
 * listener may override, and the modules' built-in listener values
 * (which a file line replaces), before pt_config_finish. */
void pt_config_declare_listener(struct pt_config *c, const char *name);
void pt_config_declare_listener_param(struct pt_config *c, const char *param);
void pt_config_declare_listener_default(struct pt_config *c, const char *listener,
	const char *param, const char *value);
/* After pt_config_finish: refuse unknown listeners and parameters that
 * cannot be set per listener (FILE:LINE), then build each listener's view
 * (values checked by the parameter's own type and validator; their
 * errors name the override's line). Returns the error count of c. */
int pt_config_finish_listeners(struct pt_config *c);
/* A declared listener name (whether or not it overrides anything). */
int pt_config_listener_known(const struct pt_config *c, const char *name);

/* Owner of a declared parameter ("core" or module name), or NULL. */
const char *pt_config_owner(const struct pt_config *c, const char *name);

#endif
