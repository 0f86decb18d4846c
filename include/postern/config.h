/* Configuration: parameters are declared in tables by their owner (core or
 * a module); the core parses main.cf syntax, expands $name, converts to the
 * declared type and validates. Values are read through typed accessors. */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum pt_type {
	PT_STR = 1,     /* any string (after $expansion) */
	PT_BOOL,        /* yes/no, true/false, on/off, 1/0 */
	PT_INT,         /* integer, no suffix */
	PT_SIZE,        /* bytes; suffixes k, m, g (1024-based), e.g. 10m */
	PT_TIME,        /* seconds; Postfix units s m h d w, e.g. 300s, 5m, 1h */
	PT_LIST,        /* comma and/or white space separated words */
	PT_CIDR_LIST,   /* addresses / CIDR blocks, [::1]/128 accepted */
	PT_HOSTPORT_LIST, /* [ADDR:]PORT items, [v6]:PORT; empty = none */
	PT_PATH,        /* file system path (absolute or relative) */
};

struct pt_config;

/* Extra validation after type conversion; write a one-line reason into err
 * and return -1 to refuse. */
typedef int pt_param_validator(const char *value, char *err, size_t errlen);

struct pt_param {
	const char *name;
	enum pt_type type;
	const char *def;              /* default, before expansion; NULL = "" */
	pt_param_validator *validate; /* optional */
	const char *doc;              /* one line for `postern config` docs */
	long long min, max;           /* PT_INT/SIZE/TIME bounds; both 0 = none */
};

struct pt_list {
	size_t n;
	char **v;
};

struct pt_cidr {
	int family;                   /* AF_INET or AF_INET6 */
	unsigned char addr[16];       /* network order; v4 uses the first 4 */
	int prefix;                   /* 0..32 or 0..128 */
};

struct pt_cidr_list {
	size_t n;
	struct pt_cidr *v;
};

struct pt_hostport {
	char host[64];                /* "" = every inet_interfaces address */
	uint16_t port;
};

struct pt_hostport_list {
	size_t n;
	struct pt_hostport *v;
};

/* Typed accessors. The name must be declared by the core or by a loaded
 * module (asking for an undeclared name aborts: it is a programming error).
 * Returned pointers stay valid as long as the config lives. */
const char *pt_conf_str(const struct pt_config *c, const char *name);
int pt_conf_bool(const struct pt_config *c, const char *name);
long long pt_conf_int(const struct pt_config *c, const char *name); /* INT, SIZE (bytes), TIME (seconds) */
const struct pt_list *pt_conf_list(const struct pt_config *c, const char *name);
const struct pt_cidr_list *pt_conf_cidrs(const struct pt_config *c, const char *name);
const struct pt_hostport_list *pt_conf_hostports(const struct pt_config *c, const char *name);
/* 1 when the file sets it, 0 when it has its default. */
int pt_conf_isset(const struct pt_config *c, const char *name);
/* Path of the config file, and the line that set name (0 = default). */
const char *pt_conf_file(const struct pt_config *c);
int pt_conf_line(const struct pt_config *c, const char *name);

/* Per-listener settings (`submission.smtpd_relay_restrictions = ...`):
 * the config a listener's sessions read, holding that listener's values
 * and the file's for everything else; every accessor above works on it.
 * c itself for a listener without overrides or an unknown name. Lives as
 * long as c. */
const struct pt_config *pt_conf_listener(const struct pt_config *c, const char *listener);
/* The listeners that have a view of their own, for a module that builds
 * state per listener (i from 0; NULL past the last). */
const char *pt_conf_listener_name(const struct pt_config *c, size_t i);

/* Report a config error "FILE:LINE: message" for name's line (module check
 * hooks); counts toward the failure of check/reload. */
void pt_conf_error(const struct pt_config *c, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Helpers shared by modules. */
int pt_cidr_parse(const char *s, struct pt_cidr *out);          /* 0 ok */
int pt_cidr_match(const struct pt_cidr *net, const struct sockaddr *sa);
int pt_cidr_list_match(const struct pt_cidr_list *l, const struct sockaddr *sa);
/* A list in PT_CIDR_LIST syntax (commas/white space; `/path` items name a
 * file of items, # comments). 0 ok; -1 with a reason quoting the bad item. */
int pt_cidr_list_parse(const char *s, struct pt_cidr_list *out, char *err, size_t errlen);
void pt_cidr_list_free(struct pt_cidr_list *l);

#endif
