/* Core-internal side of maps: the in-memory table built from a map file's
 * text, exposed for unit tests, fuzzing and `postern map`. */
#ifndef POSTERN_CORE_MAP_H
#define POSTERN_CORE_MAP_H

#include <stddef.h>

#include "postern/map.h"

struct pt_map_table;

/* Parse text (len bytes, need not be NUL-terminated) named name in
 * messages. Returns the table, or NULL when there were errors (*nerrors
 * counts them; every one went to report) or memory ran out. */
struct pt_map_table *pt_map_table_parse(const char *name, const char *text, size_t len,
                                        enum pt_map_format fmt, pt_map_report_fn *report,
                                        void *arg, int *nerrors);
void pt_map_table_free(struct pt_map_table *t);
/* Value for key (folded to lower case here), or NULL. Valid until free. */
const char *pt_map_table_get(const struct pt_map_table *t, const char *key);
size_t pt_map_table_count(const struct pt_map_table *t);
/* Line where key was defined (0 if absent). */
int pt_map_table_line(const struct pt_map_table *t, const char *key);

/* Read a whole file into memory (NUL-terminated for convenience). 0, or
 * -1 with errno set. The map files are bounded: more than 2 GiB is EFBIG. */
int pt_map_read_file(const char *path, char **text, size_t *len);

#endif
