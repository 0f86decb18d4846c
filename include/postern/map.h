/* Lookup tables for modules: "hash:PATH", "texthash:PATH" or a plain path
 * name a text file that is read straight into memory (no postmap step) and
 * re-read when it changes; a broken new version keeps the old contents. */
#ifndef POSTERN_MAP_H
#define POSTERN_MAP_H

#include <stddef.h>
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

#endif
