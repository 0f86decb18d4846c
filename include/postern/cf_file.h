/* Postfix *_table(5)-style settings files for modules (ldap:, pgsql:):
 * "name = value" lines, # comments, a line starting with white space
 * continues the previous one. Problems go to a pt_map_report_fn as
 * "FILE:LINE: message" ("FILE: message" when not about one line). */
#ifndef POSTERN_CF_FILE_H
#define POSTERN_CF_FILE_H

#include <stddef.h>

#include "postern/map.h"

struct pt_cf {
	const char *path;
	int line;                     /* of the setting being applied; 0 = none */
	int errors;
	pt_map_report_fn *report;
	void *arg;
	/* ldap's historical reading, kept as it was: a first line starting
	 * with white space is a setting, a physical line past 4094 bytes goes
	 * on as the next line, an over-long setting is cut silently, a number
	 * may start with '-'. 0 reports each of those as an error. */
	int lax;
};

/* Calls setting(c, name, value) for each setting with c->line at its
 * first line, both trimmed. Returns 0, or -1 when the file cannot be
 * opened (reported). Ends with c->line 0. */
int pt_cf_read(struct pt_cf *c, void (*setting)(struct pt_cf *c, const char *name, const char *value));

void pt_cf_bad(struct pt_cf *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* yes/true/1, no/false/0; anything else is reported and 0. */
int pt_cf_yesno(struct pt_cf *c, const char *name, const char *v);
/* A decimal from lo to hi, "s" allowed after it ("10s"); else reported and lo. */
unsigned pt_cf_number(struct pt_cf *c, const char *name, const char *v, unsigned lo, unsigned hi);
void pt_cf_set_str(char **dst, const char *v);
/* "a, b c" into out as up to max strdup'd words, after freeing the n
 * there were; returns the new count. */
size_t pt_cf_split(struct pt_cf *c, const char *name, const char *v, char **out, size_t n, size_t max);

#endif
