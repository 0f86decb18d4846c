/* Module loader: dlopen only the modules the config names, check their
 * descriptors, declare their parameters, run their hooks in dependency
 * order. */
#ifndef POSTERN_LOADER_H
#define POSTERN_LOADER_H

#include <stddef.h>

#include "postern/module.h"

struct pt_config;

/* Load every `module` line of c (errors go into c as FILE:LINE) and
 * declare the modules' parameter tables. Returns the number of errors. */
int pt_modules_load(struct pt_config *c);
/* Modules of the last pt_modules_load, in init order (dependencies
 * first); after a load with errors, those that loaded (for checks only:
 * such a config is never served). */
size_t pt_modules_count(void);
/* A module of that name is loaded. */
int pt_module_loaded(const char *name);
/* Whether module's listeners open: a module that declares a protocol
 * only when `protocols` lists it (or is empty); every other always. */
int pt_protocol_enabled(const struct pt_config *c, const char *module);
const struct pt_module *pt_modules_get(size_t i);
const struct pt_module *pt_modules_find(const char *name);
/* init/stop of the loaded modules whose roles include ctx->role (one
 * PT_ROLE_* bit). init stops at the first failure and returns -1. */
int pt_modules_init(struct pt_ctx *ctx);
void pt_modules_stop(struct pt_ctx *ctx);
/* Run each module's check hook against c; returns the number of failing
 * modules (their messages are already in c). */
int pt_modules_check(const struct pt_config *c);
/* Remember the current list / put it back (reload of a refused config). */
void pt_modules_save(void);
void pt_modules_restore(void);

#endif
