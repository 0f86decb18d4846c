/* Internals of the configuration shared by core/config*.c and params.c. */
#ifndef POSTERN_CONFIG_PRIV_H
#define POSTERN_CONFIG_PRIV_H

#include <stddef.h>
#include <stdio.h>

#include "config_int.h"

#define PT_CFG_MAX_LINE (64 * 1024)
#define PT_CFG_MAX_FILE (16 * 1024 * 1024)
#define PT_CFG_MAX_INCLUDE (1024 * 1024)   /* `< file` values, CIDR files */
#define PT_CFG_MAX_DEPTH 100
#define PT_CFG_MAX_VALUE (1024 * 1024)
#define PT_CFG_MAX_ERRORS 1000

/* Runs on a value after $expansion (core parameters whose meaning is more
 * than a type: myhostname's computed default, myorigin's /file form).
 * May replace *value (malloc'ed) and set *shown to what `postern config`
 * prints instead. -1 with err filled refuses the value. */
typedef int pt_cfg_hook(struct pt_config *c, int isset, char **value, char **shown,
	char *err, size_t errlen);

enum pt_cfg_state { PT_CFG_NEW, PT_CFG_BUSY, PT_CFG_DONE };

struct pt_cfg_slot {
	char *name;
	/* From the file. */
	char *raw;                    /* NULL = not set in the file */
	int line;
	/* From the declaring table. */
	const struct pt_param *decl;  /* NULL = not declared (yet) */
	char *owner;
	size_t decl_order;
	pt_cfg_hook *hook;
	/* Resolved by pt_config_finish. */
	enum pt_cfg_state state;
	int failed;                   /* an error was reported for it */
	char *value;                  /* expanded (and hooked) value */
	char *shown;                  /* what dump prints; NULL = value */
	long long num;
	int boolean;
	struct pt_list list;
	struct pt_cidr_list cidrs;
	struct pt_hostport_list hostports;
};

struct pt_cfg_module {
	char *name;
	char *path;
	int line;
	int failed;                   /* the loader could not use it */
};

struct pt_cfg_error {
	int line;
	char *msg;
};

/* A `LISTENER.PARAM = value` line, or a module's built-in value for a
 * listener (line 0). */
struct pt_cfg_override {
	char *listener;
	char *param;
	char *raw;
	int line;
};

/* A listener that takes per-listener settings, and its view: a whole
 * config whose overridden slots hold the listener's values and every
 * other slot the file's (NULL while nothing is overridden). */
struct pt_cfg_listener {
	char *name;
	struct pt_config *view;
};

struct pt_config {
	char *path;
	struct pt_cfg_slot *slots;
	size_t nslots, slots_cap;
	size_t *hash;                 /* slot index + 1; 0 = empty */
	size_t hash_cap;
	size_t ndeclared;
	struct pt_cfg_module *modules;
	size_t nmodules;
	struct pt_cfg_error *errors;
	int nerrors;
	int truncated;                /* error list hit PT_CFG_MAX_ERRORS */
	int finished;
	/* Per-listener settings (config_listener.c). */
	struct pt_cfg_override *overrides;   /* file lines, in file order */
	size_t noverrides;
	struct pt_cfg_override *builtins;    /* modules' listener defaults */
	size_t nbuiltins;
	char **listener_params;              /* names one listener may override */
	size_t nlistener_params;
	struct pt_cfg_listener *listeners;
	size_t nlisteners;
	const struct pt_config *root;        /* a view: the config it belongs to */
	const char *view_name;               /* a view: its listener */
};

/* config.c */
struct pt_cfg_slot *pt_cfg_find(const struct pt_config *c, const char *name);
struct pt_cfg_slot *pt_cfg_slot_get(struct pt_config *c, const char *name);
/* Like pt_config_add_error but line 0 prints "FILE:0:" (bad defaults). */
void pt_cfg_error_at(struct pt_config *c, int line, int show_zero, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void pt_cfg_set_hook(struct pt_config *c, const char *name, pt_cfg_hook *hook);
void pt_cfg_sort_errors(struct pt_config *c);

/* config_listener.c */
/* The syntax pass met "LISTENER.PARAM = value" (name is the whole dotted
 * name, value trimmed). */
void pt_cfg_override_line(struct pt_config *c, const char *name, size_t namelen,
	const char *value, size_t valuelen, int line);
void pt_cfg_listeners_free(struct pt_config *c);
/* One listener may override param; the reference's listener section. */
int pt_cfg_listener_param(const struct pt_config *c, const char *param);
void pt_cfg_doc_listeners(const struct pt_config *c, FILE *out);
/* Add "FILE:LINE: message" found while checking view v to its root,
 * unless the root has it already (a view repeats the file's errors). */
void pt_cfg_view_error(const struct pt_config *v, int line, const char *msg);
/* `postern config`: the listener section, and one LISTENER.PARAM name. */
void pt_cfg_dump_listeners(const struct pt_config *c, FILE *out, int only_set);
int pt_cfg_dump_dotted(const struct pt_config *c, FILE *out, int only_set, const char *name);

/* config_expand.c */
/* Best declared name for an unknown one, or NULL. */
const char *pt_cfg_suggest(const struct pt_config *c, const char *name);
/* Edits between a and b (a swap of neighbours counts once); 99 when far. */
int pt_cfg_distance(const char *a, const char *b);

/* config_expand.c: when set, a `< /path` value whose file the caller may
 * not read becomes "" instead of an error (sendmail, mailq, newaliases
 * run by ordinary users; the server and `postern check` keep the error). */
extern int pt_cfg_unreadable_includes_ok;

/* config_types.c */
/* Reads a regular file of at most max bytes into a NUL-terminated buffer.
 * NULL with a reason in err (strerror, "not a regular file", too large). */
char *pt_cfg_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen);
/* Converts slot->value to the declared type; -1 with a reason in err. */
int pt_cfg_convert(struct pt_cfg_slot *s, char *err, size_t errlen);
int pt_cfg_split_list(const char *s, struct pt_list *out);
void pt_cfg_free_list(struct pt_list *l);
void pt_cfg_free_values(struct pt_cfg_slot *s);
int pt_cfg_parse_hostports(const char *s, struct pt_hostport_list *out, char *err, size_t errlen);
/* realloc / strndup that abort with a message when memory runs out. */
void *pt_cfg_xrealloc(void *p, size_t n);
char *pt_cfg_xstrndup(const char *s, size_t n);

#endif
