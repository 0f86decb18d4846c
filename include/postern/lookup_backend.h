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
	 * wait between connect attempts, and down ("database") names the
	 * server in "database unreachable, next try in N ms". */
	unsigned retry_max_s;
	const char *down;
};

struct pt_lookup;
/* Threads start with the first lookup. NULL when out of memory. */
struct pt_lookup *pt_lookup_new(const struct pt_lookup_ops *ops, const struct pt_lookup_settings *s, void *arg);
/* Stops and joins the threads (each finishes its lookup at hand and
 * disconnects), then frees every entry, answered or still queued. */
void pt_lookup_free(struct pt_lookup *lk);
/* The cached answer for (kind, key): 1 found (*val malloc'd), 0 not
 * found, -1 temporary failure (pending when the thread may not block:
 * noted with pt_map_note_pending). Case is folded (ASCII); a key over
 * 1000 bytes is not found. */
int pt_lookup_get(struct pt_lookup *lk, char kind, const char *key, char **val);
/* The monotonic clock in ms (lk's ops.now_ms when set; lk may be NULL). */
uint64_t pt_lookup_now_ms(const struct pt_lookup *lk);

/* ---- for the modules' map type and passdb/userdb glue ---- */

/* A pt_map_report_fn that logs (errors as errors, the rest warnings). */
void pt_lookup_log_report(void *arg, int is_error, const char *msg);
/* Split an LF-terminated record into n fields in place: 0, or -1 when it
 * has fewer. */
int pt_lookup_split(char *rec, char **f, size_t n);
/* Fill out from a record's fields (name "" = user; uid/gid as decimals,
 * anything else leaves out's value): 1, or -1 when a field is too long. */
struct pt_user;
int pt_lookup_fill_user(struct pt_user *out, const char *user, const char *name, const char *uid,
                        const char *gid, const char *home, const char *host);
/* Register type's ops; logs "TYPE: cannot register the map type". 0/-1. */
int pt_lookup_register(const char *type, const struct pt_map_type_ops *ops);
/* Check the passdb and userdb settings that name "TYPE:FILE" with
 * check(FILE, 'p' or 'u', ...), its reports going to pt_conf_error. 0, or
 * -1 when one had errors. */
int pt_lookup_check_sources(const struct pt_config *conf, const char *type,
                            int (*check)(const char *arg, char what, pt_map_report_fn *report, void *rarg));

#endif
