/* The pgsql module's parts: the pgsql_table(5)-style config file
 * (pgsql_cf.c), query templates turned into parameterised statements
 * (pgsql_query.c), and the backend: its connections and queries
 * (pgsql_backend.c) on core's cache and thread pool
 * (postern/lookup_backend.h). */
#ifndef POSTERN_PGSQL_INT_H
#define POSTERN_PGSQL_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "postern/map.h"

#define PCF_MAX_HOSTS 8
#define PCF_MAX_DOMAINS 64
/* %s %u %d %1..%9: at most this many distinct parameters per query. */
#define PQT_MAX_PARAMS 12

/* A query template made safe: the SQL text with $1.. where the template
 * had %s/%u/%d/%1..%9 (quotes around a lone placeholder removed), and
 * what each $N stands for. The key's pieces only ever travel as
 * parameters of PQsendQueryParams, never inside the SQL text. */
struct pqt {
	char *sql;
	size_t nparams;
	char kind[PQT_MAX_PARAMS];    /* 's' 'u' 'd' '1'..'9' for $1.. */
};

struct pcf {
	char path[1024];
	char *host[PCF_MAX_HOSTS];    /* "host", "host:port", "inet:host:port", "unix:/dir" */
	size_t nhost;
	char *dbname, *user, *password;
	char *connect;                /* a libpq conninfo string instead of the above */
	struct pqt query;             /* maps */
	struct pqt password_query;    /* passdb: a "password" column (+ "host", "proxy") */
	struct pqt user_query;        /* userdb: "uid" "gid" "home" "host" ("user"/"name") */
	int have_query, have_password_query, have_user_query;
	char *result_format;          /* maps: %s the value, %u %d its parts, %% */
	unsigned expansion_limit;     /* maps: more values = an error (0 no limit) */
	char *domain[PCF_MAX_DOMAINS];/* maps: only user@these keys are looked up */
	size_t ndomain;
	unsigned timeout_s;           /* connect and each query */
	unsigned cache_ttl_s, cache_negative_ttl_s;
	unsigned pool_size;           /* connections (threads) per file and process */
	unsigned retry_max_s;         /* longest wait between connect attempts */
	int proxy;                    /* passdb: logins go to the "host" column's host */
};

/* Parse the file: 0, or the number of errors (each reported as
 * "PATH:LINE: message"); cf is filled either way (free with pcf_free). */
int pcf_load(const char *path, struct pcf *cf, pt_map_report_fn *report, void *arg);
void pcf_free(struct pcf *cf);
/* Whether key may be looked up under the domain setting (no list: all). */
int pcf_domain_ok(const struct pcf *cf, const char *key);

/* Turn a template into SQL with $N parameters: 0, or -1 with why. %s the
 * key, %u its local part (all of it without an @), %d its domain, %1..%9
 * the domain's labels from the right (Postfix), %% a percent; the
 * upper-case %S %U %D the same. A placeholder alone inside single quotes
 * ('%s', as Postfix configurations write it) loses the quotes; one
 * elsewhere inside a string literal ('%u@x', LIKE '%s%'), a '$', or an
 * unknown % sequence is refused. */
int pqt_compile(const char *tmpl, struct pqt *out, char *why, size_t whylen);
void pqt_free(struct pqt *q);
/* The values of q's parameters for key (each a pointer into buf): 1 done,
 * 0 the key lacks a part the query needs (%d without @, %3 of a two-label
 * domain: no query, as Postfix), -1 key too long. */
int pqt_values(const struct pqt *q, const char *key, char *buf, size_t buflen, const char **vals);
/* Apply result_format to one value: 1 done, 0 skip the value (%d of a
 * value without @), -1 a bad % sequence or out too small. */
int pqt_format(const char *fmt, const char *value, char *out, size_t outlen);

/* ---- the backend ---- */
struct pbackend;
struct pt_lookup;
/* The map handle: core's cache and thread pool (postern/lookup_backend.h)
 * around a pbackend (pt_lookup_arg). Cached answers: for 'm' the values
 * joined with ", "; for 'u'/'p' the user record (enum pt_lookup_field),
 * extra being the proxy column. An empty key or one not UTF-8 is not
 * found. */
struct pt_lookup *pbackend_open(const char *path, char *err, size_t errlen);
const struct pcf *pbackend_cf(const struct pbackend *b);

#endif
