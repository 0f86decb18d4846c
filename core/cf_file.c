/* Settings files of the ldap and pgsql modules (postern/cf_file.h). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/cf_file.h"

void
pt_cf_bad(struct pt_cf *c, const char *fmt, ...)
{
	char msg[600], full[1800];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	c->errors++;
	if (c->line)
		snprintf(full, sizeof full, "%s:%d: %s", c->path, c->line, msg);
	else
		snprintf(full, sizeof full, "%s: %s", c->path, msg);
	if (c->report)
		c->report(c->arg, 1, full);
}

int
pt_cf_yesno(struct pt_cf *c, const char *name, const char *v)
{
	if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1"))
		return 1;
	if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0"))
		return 0;
	pt_cf_bad(c, "%s: \"%s\" is not yes or no", name, v);
	return 0;
}

unsigned
pt_cf_number(struct pt_cf *c, const char *name, const char *v, unsigned lo, unsigned hi)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (*end == 's' && end[1] == 0)
		end++;                /* "10s" */
	/* strtoul takes "-1" as a huge number, "-0" as 0 */
	if (!*v || (*v == '-' && !c->lax) || *end || errno || n < lo || n > hi) {
		pt_cf_bad(c, "%s: \"%s\" is not a number from %u to %u", name, v, lo, hi);
		return lo;
	}
	return (unsigned)n;
}

void
pt_cf_set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
}

size_t
pt_cf_split(struct pt_cf *c, const char *name, const char *v, char **out, size_t n, size_t max)
{
	for (size_t i = 0; i < n; i++) {
		free(out[i]);
		out[i] = NULL;
	}
	n = 0;
	char *copy = strdup(v), *save = NULL;
	for (char *w = copy ? strtok_r(copy, " ,\t", &save) : NULL; w; w = strtok_r(NULL, " ,\t", &save)) {
		if (n == max) {
			pt_cf_bad(c, "%s: more than %zu values", name, max);
			break;
		}
		out[n++] = strdup(w);
	}
	free(copy);
	return n;
}

/* "name = value" with the white space around both taken off. */
static void
logical_line(struct pt_cf *c, char *s, void (*setting)(struct pt_cf *, const char *, const char *))
{
	char *eq = strchr(s, '=');
	if (!eq) {
		pt_cf_bad(c, "need \"name = value\"");
		return;
	}
	char *e = eq;
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	*e = 0;
	char *v = eq + 1;
	while (isspace((unsigned char)*v))
		v++;
	size_t n = strlen(v);
	while (n && isspace((unsigned char)v[n - 1]))
		v[--n] = 0;
	if (!*s) {
		pt_cf_bad(c, "empty setting name");
		return;
	}
	setting(c, s, v);
}

int
pt_cf_read(struct pt_cf *c, void (*setting)(struct pt_cf *c, const char *name, const char *value))
{
	c->line = 0;
	FILE *f = fopen(c->path, "re");
	if (!f) {
		pt_cf_bad(c, "cannot open: %s", strerror(errno));
		return -1;
	}
	char line[4096], logical[16384];
	int have = 0, lineno = 0, start = 0, toolong = 0;
	logical[0] = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		size_t n = strlen(line);
		if (!c->lax && n == sizeof line - 1 && line[n - 1] != '\n') {
			c->line = lineno;
			pt_cf_bad(c, "line longer than %zu bytes", sizeof line - 2);
			int ch;
			while ((ch = fgetc(f)) != EOF && ch != '\n')
				;
			continue;
		}
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = 0;
		char *p = line;
		while (isspace((unsigned char)*p))
			p++;
		if (!*p || *p == '#')
			continue;
		if (p != line && have) {
			if (strlen(logical) + 1 + strlen(p) < sizeof logical) {
				strcat(logical, " ");
				strcat(logical, p);
			} else if (!toolong && !c->lax) {
				c->line = start;
				pt_cf_bad(c, "setting longer than %zu bytes", sizeof logical - 1);
				toolong = 1;
			}
			continue;
		}
		if (p != line && !c->lax) {
			c->line = lineno;
			pt_cf_bad(c, "continuation line without a setting before it");
			continue;
		}
		if (have && !toolong) {
			c->line = start;
			logical_line(c, logical, setting);
		}
		snprintf(logical, sizeof logical, "%s", p);
		have = 1;
		toolong = 0;
		start = lineno;
	}
	if (have && !toolong) {
		c->line = start;
		logical_line(c, logical, setting);
	}
	fclose(f);
	c->line = 0;
	return 0;
}
