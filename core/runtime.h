/* The process-wide live configuration and the loaded modules: what every
 * verb and process builds first. */
#ifndef POSTERN_RUNTIME_H
#define POSTERN_RUNTIME_H

#include <stdio.h>

#include "postern/config.h"
#include "postern/module.h"

/* The config this process serves with (services read it: mydestination...). */
extern const struct pt_config *pt_live_conf;

/* Parse path, declare the core's and every named module's parameters
 * (loading the modules), resolve, run module check hooks. Always returns a
 * config (NULL only out of memory); pt_config_error_count() tells whether
 * it is usable. */
struct pt_config *pt_runtime_load(const char *path);
/* Parameters only, without the module check hooks (which compile Lua
 * policies and run their self-tests, open maps...): for verbs that read a
 * few values and serve nothing, such as sendmail and mailq. */
struct pt_config *pt_runtime_load_params(const char *path);
/* The same from a buffer (path names it in messages): tests. */
struct pt_config *pt_runtime_load_text(const char *path, const char *text, size_t len);
/* Print every error of c on out, one per line; returns the count. */
int pt_runtime_print_errors(const struct pt_config *c, FILE *out);

#endif
