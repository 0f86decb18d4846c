/* The machinery the lookup modules (ldap:, pgsql:) share, so each keeps
 * only what talks to its server: a cache of answers, positive and
 * negative, each for its TTL, in front of a queue served by a pool of
 * threads, each owning one connection (opened when first needed, reopened
 * when it breaks).
 *
 * An event loop never waits here: a lookup not in the cache is queued and
 * answered "pending" (map.h's pending rule), and the caller asks again
 * when a thread has filled the entry. A failure is remembered for a
 * second for its key; with a backoff set, a server that cannot be reached
 * (or stops answering) is not tried again before it (0.5 s doubling up to
 * retry_max), and lookups fail at once meanwhile: callers get their 4xx
 * without each waiting out a timeout. Threads that may block (agents,
 * pool jobs, CLI) wait for the entry instead. */
#ifndef POSTERN_LOOKUP_BACKEND_H
#define POSTERN_LOOKUP_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "postern/config.h"
#include "postern/map.h"

/* At most this many threads (connections) per backend. */
#define PT_LOOKUP_MAX_THREADS 16

/* What a backend does with its server; arg is pt_lookup_new's. Each call
 * runs on one of the pool's threads, with no lock held. */
struct pt_lookup_ops {
	/* A new connection, or NULL with why. */
	void *(*connect)(void *arg, char *why, size_t whylen);
	/* Look key up on conn (kind as given to pt_lookup_get: 'm' a map,
	 * 'p' passdb, 'u' userdb; key folded to lower case): 1 found with a
	 * malloc'd *val, 0 not found, -1 failure (why), -2 the connection
	 * broke (closed and tried once more on a new one), -3 no answer in
	 * time (closed; with a backoff the server counts as down). */
	int (*query)(void *arg, void *conn, char kind, const char *key, char **val, char *why, size_t whylen);
	void (*disconnect)(void *arg, void *conn);
	/* Optional: whether key (as given to pt_lookup_get) may be asked at
	 * all; 0 answers "not found" at once. */
	int (*key_ok)(void *arg, const char *key);
	/* Optional: frees arg, last thing pt_lookup_free does. */
	void (*release)(void *arg);
	/* Tests only: the clock in ms (NULL: CLOCK_MONOTONIC). */
	uint64_t (*now_ms)(void);
};

struct pt_lookup_settings {
	const char *type;             /* "ldap": log lines "TYPE PATH: ..." */
	const char *path;             /* the config file (copied) */
	unsigned ttl_s, negative_ttl_s;
	unsigned threads;             /* 1 to PT_LOOKUP_MAX_THREADS */
	/* How long a caller that may block waits at most for an answer (a
	 * safety net: the thread answers within its own timeouts). */
	unsigned wait_s;
	/* 0: no backoff (every lookup may try to connect). Else the longest
	 * wait between connect attempts. */
	unsigned retry_max_s;
	/* For reasons: server ("database") in "database unavailable" and
	 * "database unreachable, next try in N ms"; record ("database row")
	 * in "unusable database row". */
	const char *server, *record;
	/* Entries kept at most (0: 20000); tests set a small one. */
	size_t cache_max;
};

struct pt_lookup;
/* Threads start with the first lookup. NULL when out of memory (arg
 * released then, with ops.release). */
struct pt_lookup *pt_lookup_new(const struct pt_lookup_ops *ops, const struct pt_lookup_settings *s, void *arg);
/* Stops and joins the threads (each finishes its lookup at hand and
 * disconnects), frees every entry, answered or still queued, and releases
 * arg. */
void pt_lookup_free(struct pt_lookup *lk);
void *pt_lookup_arg(const struct pt_lookup *lk);
/* The cached answer for (kind, key): 1 found (*val malloc'd), 0 not
 * found, -1 temporary failure (pending when the thread may not block:
 * noted with pt_map_note_pending). Case is folded (ASCII); a key of
 * more than 1098 bytes is not found. */
int pt_lookup_get(struct pt_lookup *lk, char kind, const char *key, char **val);

/* ---- a module's map type and passdb/userdb source ----
 *
 * The handle of a map type's ops is the struct pt_lookup (open returns
 * it); these are its ops. User records ('u', 'p') are LF-terminated
 * fields in this order; extra is the backend's own (ldap: the entry's
 * DN, pgsql: the proxy column). */
enum pt_lookup_field {
	PT_LF_NAME, PT_LF_UID, PT_LF_GID, PT_LF_HOME, PT_LF_HOST, PT_LF_PASSWORD, PT_LF_EXTRA,
	PT_LF_COUNT
};
void pt_lookup_map_close(void *h);
/* 'm' lookups: the value, or NULL with *tempfail set on a failure. */
char *pt_lookup_map_lookup(void *h, const char *key, int *tempfail);
/* 'u' lookups: as pt_map_type_ops.userdb (name "" = the login name;
 * uid/gid not decimal leave out's; a field too long for out: -1). */
int pt_lookup_map_userdb(void *h, const char *user, struct pt_user *out);
/* The core's credential cache keeps a passdb answer as long as this
 * cache keeps the record it came from: ttl and negative ttl. */
void pt_lookup_map_cache_ttl(void *h, unsigned *ttl_s, unsigned *negative_ttl_s);
/* passdb's record of user ('p'), split into f: 1, 0 unknown user (why),
 * -1 unavailable or unusable (why). *rec goes to pt_lookup_rec_free. */
int pt_lookup_passdb_rec(struct pt_lookup *lk, const char *user, char **rec, char *f[PT_LF_COUNT], char *why,
                         size_t whylen);
/* why = "unusable RECORD" (the settings' record): a record passdb cannot
 * use. */
void pt_lookup_rec_unusable(const struct pt_lookup *lk, char *why, size_t whylen);
/* Wipes (password hashes) and frees a record; NULL is fine. */
void pt_lookup_rec_free(char *rec);

/* A pt_map_report_fn that logs (errors as errors, the rest warnings). */
void pt_lookup_log_report(void *arg, int is_error, const char *msg);
/* open's err for a config file with n errors (reported with the above):
 * "PATH: N errors in the TYPE config (logged above)". */
void pt_lookup_config_errors(char *err, size_t errlen, const char *type, const char *path, int n);
/* Register type's ops; logs "TYPE: cannot register the map type". 0/-1. */
int pt_lookup_register(const char *type, const struct pt_map_type_ops *ops);
/* Check the passdb and userdb settings that name "TYPE:FILE" with
 * check(FILE, 'p' or 'u', ...), its reports going to pt_conf_error. 0, or
 * -1 when one had errors. */
int pt_lookup_check_sources(const struct pt_config *conf, const char *type,
                            int (*check)(const char *arg, char what, pt_map_report_fn *report, void *rarg));

#endif
