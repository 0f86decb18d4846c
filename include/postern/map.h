/* Lookup tables for modules: "hash:PATH", "texthash:PATH" or a plain path
 * name a text file that is read straight into memory (no postmap step) and
 * re-read when it changes; a broken new version keeps the old contents.
 * "TYPE:ARG" with a TYPE a module registered (pt_map_type_register, e.g.
 * "ldap:/etc/postern/ldap-aliases.cf") goes to that module. */
#ifndef POSTERN_MAP_H
#define POSTERN_MAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct pt_map;

enum pt_map_format {
	PT_MAP_KEY_VALUE,             /* postmap(1): "key whitespace value" */
	PT_MAP_ALIASES,               /* postalias(1): "name: value" */
};

/* A problem found in a file, already formatted "FILE:LINE: message".
 * is_error 0 = a warning (duplicate key) that does not refuse the file. */
typedef void pt_map_report_fn(void *arg, int is_error, const char *msg);

/* Open a map. Only a malformed spec fails (NULL, reason in err); a missing
 * or broken file is logged and the map answers "temporary error" until a
 * valid file appears. Thread-safe: lookups may come from any thread. */
struct pt_map *pt_map_open(const char *spec, enum pt_map_format fmt, char *err, size_t errlen);
void pt_map_close(struct pt_map *m);

/* Look key up (case-insensitively). Returns a malloc'd copy of the value
 * (the caller frees it), or NULL: not found (*tempfail = 0) or the map
 * cannot be consulted (*tempfail = 1). owner (may be NULL) receives the
 * uid owning the file the answer came from. The file is stat'ed at most
 * once a second to pick up changes. */
char *pt_map_lookup(struct pt_map *m, const char *key, int *tempfail, uid_t *owner);

/* pt_map_lookup without looking at the file: the contents loaded so far
 * (at open, at a refresh or by an earlier pt_map_lookup), never a read of
 * the file, so a caller on the event loop (a Lua policy) cannot make it
 * parse a large file. No owner. */
char *pt_map_lookup_loaded(struct pt_map *m, const char *key, int *tempfail);

/* Check the file now (SIGHUP, newaliases): 1 reloaded, 0 unchanged,
 * -1 the file is missing or broken (errors logged; old contents kept). */
int pt_map_refresh(struct pt_map *m);

/* Path of the file behind the map, and entries in the live table. */
const char *pt_map_path(const struct pt_map *m);
size_t pt_map_count(struct pt_map *m);

/* Validate a map file without keeping it: each problem goes to report
 * (NULL = ignore). Returns the number of errors (0 = usable), or -1 for a
 * malformed spec (reported too); *entries (may be NULL) gets the count. */
int pt_map_check(const char *spec, enum pt_map_format fmt, pt_map_report_fn *report, void *arg,
                 size_t *entries);

/* pt_map_check that also hands every entry that parsed (in file order,
 * key folded to lower case) to each, which reports what it finds wrong
 * with the value and returns the number of errors it found (added to the
 * result). path is the file, line the entry's line, for "PATH:LINE:". */
typedef int pt_map_entry_fn(void *arg, const char *path, int line, const char *key, const char *value);
int pt_map_check_each(const char *spec, enum pt_map_format fmt, pt_map_report_fn *report, void *arg,
                      size_t *entries, pt_map_entry_fn *each, void *each_arg);

/* Split "type:path" into the file path; "hash", "texthash" and a plain
 * path are accepted (btree, lmdb, cdb, dbm too, read as text). 0 or -1. */
int pt_map_spec_path(const char *spec, char *path, size_t pathlen, char *err, size_t errlen);

/* A list parameter of maps (alias_maps, transport_maps, ...) searched in
 * order. open: NULL with err naming the bad item ("alias_maps: ..."),
 * where param names the list in messages. lookup: the first map's answer;
 * without one, *tempfail tells whether any map could not be consulted (a
 * later map may still answer while an earlier one is unavailable). */
struct pt_list;
struct pt_map_list;
struct pt_map_list *pt_map_list_open(const struct pt_list *specs, enum pt_map_format fmt, const char *param,
                                     char *err, size_t errlen);
void pt_map_list_close(struct pt_map_list *l);
char *pt_map_list_lookup(struct pt_map_list *l, const char *key, int *tempfail, uid_t *owner);
size_t pt_map_list_count(const struct pt_map_list *l);
struct pt_map *pt_map_list_get(const struct pt_map_list *l, size_t i);

/* ---- map types provided by modules (lookup backends) ----
 *
 * A module registers a type in init (and in its check hook, so `postern
 * check` knows it); "TYPE:ARG" specs then reach its ops. Such a backend
 * may be slow (a directory server), and an event loop must never wait
 * for it: on a thread that may not block (pt_map_may_block), a lookup whose answer is not at hand (cached)
 * starts the query in the background, calls pt_map_note_pending() and
 * answers "temporary failure". A caller on a loop that wants the real
 * answer compares pt_map_pending_count() before and after its lookups
 * and, when it grew, asks again a little later (a timer) instead of
 * replying 4xx: lookups have no side effects, so a step is re-run
 * whole. */
struct pt_user;
struct pt_map_type_ops {
	/* arg: what follows "TYPE:" (a config file). NULL with err on a bad
	 * spec or config. */
	void *(*open)(const char *arg, enum pt_map_format fmt, char *err, size_t errlen);
	void (*close)(void *h);
	/* As pt_map_lookup (the key as given; the backend folds case). */
	char *(*lookup)(void *h, const char *key, int *tempfail);
	/* Validate arg: errors reported ("FILE:LINE: ..."), their number. */
	int (*check)(const char *arg, pt_map_report_fn *report, void *rarg);
	/* Optional sources for `passdb = TYPE:ARG` / `userdb = TYPE:ARG`,
	 * on a handle from open (PT_MAP_KEY_VALUE).
	 * passdb: 1 password right (the backend checked it, e.g. an LDAP
	 * bind as the user), 0 unknown user or wrong password, -1 temporary
	 * failure, 2 found and *stored is a malloc'd "{SCHEME}hash" for the
	 * core to verify. May block (auth agent or pool thread). why gets a
	 * log reason, never the password. host (hostlen may be 0) gets the
	 * host this user's logins are proxied to ("" = none; Dovecot's
	 * proxy=y host=) when the answer is 1 or 2.
	 * userdb: 1 found (out filled; uid/gid left (uid_t)-1 fall back to
	 * mail_uid/mail_gid), 0 no such user, -1 temporary failure; obeys
	 * the pending rule above. */
	int (*passdb)(void *h, const char *user, const char *password, char **stored,
	              char *host, size_t hostlen, char *why, size_t whylen);
	int (*userdb)(void *h, const char *user, struct pt_user *out);
	/* Optional: how long the core may remember a passdb answer of this
	 * handle (its credential cache, passdb.h), in seconds: a good
	 * password for *ttl_s, a refused one for *negative_ttl_s; 0 = not
	 * at all. Without it nothing is remembered. */
	void (*cache_ttl)(void *h, unsigned *ttl_s, unsigned *negative_ttl_s);
};
/* 0, or -1 (table full, name too long). Registering a type again
 * replaces its ops. */
int pt_map_type_register(const char *type, const struct pt_map_type_ops *ops);
const struct pt_map_type_ops *pt_map_type_get(const char *type);
/* Split "TYPE:ARG" for a registered type (or a loaded module of that
 * name): 1 with type and arg copied, 0 not a module map type. */
int pt_map_spec_module(const char *spec, char *type, size_t typelen, const char **arg);

/* Per thread: whether this thread may wait for a slow backend. Unless
 * set, a thread running an event loop (pt_loop_run) may not, any other
 * (pool jobs, agent threads, CLI verbs) may. */
void pt_map_set_may_block(int yes);
int pt_map_may_block(void);
/* Per thread: lookups answered "pending" so far (see above). */
void pt_map_note_pending(void);
unsigned long pt_map_pending_count(void);
/* How long a caller waits before asking again, having waited so long
 * already: a few ms at first (a directory on the LAN answers in one or
 * two), growing to 50 ms (a slow one costs few wakeups). */
uint64_t pt_map_retry_ms(uint64_t waited_ms);

/* A source for passdb/userdb: a handle on "TYPE:ARG", opened once per
 * process and spec and kept (thread-safe). NULL with err when TYPE is
 * no registered type or has no such source. */
struct pt_map_source;
struct pt_map_source *pt_map_source_get(const char *spec, int want_userdb, char *err, size_t errlen);
int pt_map_source_passdb(struct pt_map_source *s, const char *user, const char *password,
                         char **stored, char *host, size_t hostlen, char *why, size_t whylen);
int pt_map_source_userdb(struct pt_map_source *s, const char *user, struct pt_user *out);
/* The source's cache TTLs (ops->cache_ttl), both 0 when it has none. */
void pt_map_source_cache_ttl(struct pt_map_source *s, unsigned *ttl_s, unsigned *negative_ttl_s);

#endif
