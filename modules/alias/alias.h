/* Internals of the alias module shared by its files and its unit tests
 * (not an ABI: no other module includes it). */
#ifndef ALIAS_H
#define ALIAS_H

#include <stddef.h>
#include <sys/types.h>

#include "postern/map.h"
#include "postern/services.h"

/* ---- aliases(5) right-hand sides: alias_parse.c ---- */
/* One destination of a value. text is unquoted: the path for FILE and
 * INCLUDE, the shell command for COMMAND, the address or local name for
 * ADDRESS (a leading backslash, "\user", is kept: it means "no further
 * aliasing"). Return non-zero to stop the walk. */
typedef int alias_target_fn(void *arg, enum pt_alias_target kind, const char *text);
/* Walk the destinations of value: separated by commas or white space
 * outside double quotes; a |command runs to the next comma. Returns 0, or
 * what fn returned to stop. */
int alias_parse_value(const char *value, alias_target_fn *fn, void *arg);
/* An :include: file's text as one value: comment lines dropped, lines
 * joined by commas. malloc'd, or NULL out of memory. */
char *alias_include_text(const char *text, size_t len);

/* ---- expansion: alias_expand.c ---- */
struct alias_conf {
	struct pt_map_list *maps;     /* alias_maps, in order */
	char delim[16];               /* recipient_delimiter characters */
	unsigned command_time_limit;  /* seconds */
	uid_t privs_uid;              /* default_privs, used when still root */
	gid_t privs_gid;
};
/* Limits that keep a hostile or broken alias file from exploding. */
#define ALIAS_MAX_DEPTH 20
#define ALIAS_MAX_TARGETS 1000
#define ALIAS_MAX_INCLUDE (1024 * 1024)

typedef void alias_emit_fn(void *arg, const char *target, enum pt_alias_target kind,
                           const char *owner);
/* The service's expand/exists against conf (see services.h). */
int alias_expand(const struct alias_conf *conf, const char *local, alias_emit_fn *emit,
                 void *arg, struct pt_status *st);
int alias_exists(const struct alias_conf *conf, const char *local);
/* Value of name in the first map that has it, with the recipient_delimiter
 * fallback (user+tag, then user). 1 found (*value malloc'd, *owner = file
 * owner), 0 not found, -1 temporary error. */
int alias_lookup(const struct alias_conf *conf, const char *name, char **value, uid_t *owner);

/* ---- /file and |command delivery: alias_deliver.c ---- */
void alias_deliver_special(const struct alias_conf *conf, const struct pt_delivery *d,
                           enum pt_alias_target kind, const char *target,
                           struct pt_status *st);
/* The message as written to a file or a command's stdin: From_ line,
 * Return-Path, X-Original-To, Delivered-To, the message with ">From "
 * quoting, and (mbox) a blank line after it. malloc'd, length in *len. */
char *alias_format_message(const struct pt_delivery *d, int mbox, size_t *len);

#endif
