/* One pgsql_table(5)-style file per map or source: "name = value" lines,
 * # comments, a line starting with white space continues the previous
 * one. Postfix's names (hosts, dbname, user, password, query,
 * result_format, expansion_limit, domain) plus a libpq conninfo string
 * (connect), the passdb/userdb queries (password_query, user_query, as
 * Dovecot's sql driver) and the pool/cache settings. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pgsql_int.h"

struct pcf_ctx {
	struct pcf *cf;
	int line, errors;
	pt_map_report_fn *report;
	void *arg;
};

static void __attribute__((format(printf, 2, 3)))
bad(struct pcf_ctx *c, const char *fmt, ...)
{
	char msg[600], full[1800];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	c->errors++;
	if (c->line)
		snprintf(full, sizeof full, "%s:%d: %s", c->cf->path, c->line, msg);
	else
		snprintf(full, sizeof full, "%s: %s", c->cf->path, msg);
	if (c->report)
		c->report(c->arg, 1, full);
}

static int
yesno(struct pcf_ctx *c, const char *name, const char *v)
{
	if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1"))
		return 1;
	if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0"))
		return 0;
	bad(c, "%s: \"%s\" is not yes or no", name, v);
	return 0;
}

static unsigned
number(struct pcf_ctx *c, const char *name, const char *v, unsigned lo, unsigned hi)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (*end == 's' && end[1] == 0)
		end++;                /* "10s" */
	if (!*v || *v == '-' || *end || errno || n < lo || n > hi) {
		bad(c, "%s: \"%s\" is not a number from %u to %u", name, v, lo, hi);
		return lo;
	}
	return (unsigned)n;
}

static void
set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
}

/* "a, b c" into up to max strdup'd words; the old ones freed. */
static size_t
split_list(struct pcf_ctx *c, const char *name, const char *v, char **out, size_t n, size_t max)
{
	for (size_t i = 0; i < n; i++) {
		free(out[i]);
		out[i] = NULL;
	}
	n = 0;
	char *copy = strdup(v), *save = NULL;
	for (char *w = copy ? strtok_r(copy, " ,\t", &save) : NULL; w; w = strtok_r(NULL, " ,\t", &save)) {
		if (n == max) {
			bad(c, "%s: more than %zu values", name, max);
			break;
		}
		out[n++] = strdup(w);
	}
	free(copy);
	return n;
}

static void
set_query(struct pcf_ctx *c, const char *name, const char *v, struct pqt *q, int *have)
{
	char why[300];
	pqt_free(q);
	*have = 0;
	if (pqt_compile(v, q, why, sizeof why) < 0) {
		bad(c, "%s: %s", name, why);
		return;
	}
	*have = 1;
}

static void
setting(struct pcf_ctx *c, const char *name, const char *v)
{
	struct pcf *cf = c->cf;
	if (!strcmp(name, "hosts")) {
		cf->nhost = split_list(c, name, v, cf->host, cf->nhost, PCF_MAX_HOSTS);
	} else if (!strcmp(name, "dbname")) {
		set_str(&cf->dbname, v);
	} else if (!strcmp(name, "user")) {
		set_str(&cf->user, v);
	} else if (!strcmp(name, "password")) {
		set_str(&cf->password, v);
	} else if (!strcmp(name, "connect")) {
		set_str(&cf->connect, v);
	} else if (!strcmp(name, "query")) {
		set_query(c, name, v, &cf->query, &cf->have_query);
	} else if (!strcmp(name, "password_query")) {
		set_query(c, name, v, &cf->password_query, &cf->have_password_query);
	} else if (!strcmp(name, "user_query")) {
		set_query(c, name, v, &cf->user_query, &cf->have_user_query);
	} else if (!strcmp(name, "result_format")) {
		char probe[20000];
		if (pqt_format(v, "x@y", probe, sizeof probe) < 0)
			bad(c, "result_format: bad %% sequence (%%s, %%u, %%d, %%%%)");
		set_str(&cf->result_format, v);
	} else if (!strcmp(name, "expansion_limit")) {
		cf->expansion_limit = number(c, name, v, 0, 100000);
	} else if (!strcmp(name, "domain")) {
		cf->ndomain = split_list(c, name, v, cf->domain, cf->ndomain, PCF_MAX_DOMAINS);
		for (size_t i = 0; i < cf->ndomain; i++) {
			if (cf->domain[i] && strchr(cf->domain[i], ':'))
				bad(c, "domain: \"%s\": only domain names are supported here, not tables",
				    cf->domain[i]);
			for (char *p = cf->domain[i]; p && *p; p++)
				*p = (char)tolower((unsigned char)*p);
		}
	} else if (!strcmp(name, "timeout") || !strcmp(name, "connect_timeout")) {
		cf->timeout_s = number(c, name, v, 1, 600);
	} else if (!strcmp(name, "cache_ttl")) {
		cf->cache_ttl_s = number(c, name, v, 0, 86400);
	} else if (!strcmp(name, "cache_negative_ttl")) {
		cf->cache_negative_ttl_s = number(c, name, v, 0, 86400);
	} else if (!strcmp(name, "pool_size")) {
		cf->pool_size = number(c, name, v, 1, 16);
	} else if (!strcmp(name, "retry_max")) {
		cf->retry_max_s = number(c, name, v, 1, 3600);
	} else if (!strcmp(name, "proxy")) {
		cf->proxy = yesno(c, name, v);
	} else if (!strcmp(name, "select_field") || !strcmp(name, "table") || !strcmp(name, "where_field") ||
	           !strcmp(name, "additional_conditions") || !strcmp(name, "select_function")) {
		bad(c, "\"%s\" (Postfix's old interface) is not supported: write a query", name);
	} else {
		bad(c, "unknown setting \"%s\"", name);
	}
}

static void
logical_line(struct pcf_ctx *c, char *s)
{
	char *eq = strchr(s, '=');
	if (!eq) {
		bad(c, "need \"name = value\"");
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
		bad(c, "empty setting name");
		return;
	}
	setting(c, s, v);
}

int
pcf_load(const char *path, struct pcf *cf, pt_map_report_fn *report, void *arg)
{
	memset(cf, 0, sizeof *cf);
	snprintf(cf->path, sizeof cf->path, "%s", path);
	cf->timeout_s = 10;
	cf->cache_ttl_s = 60;
	cf->cache_negative_ttl_s = 10;
	cf->pool_size = 2;
	cf->retry_max_s = 10;
	struct pcf_ctx c = { .cf = cf, .report = report, .arg = arg };
	FILE *f = fopen(path, "re");
	if (!f) {
		bad(&c, "cannot open: %s", strerror(errno));
		return c.errors;
	}
	char line[4096], logical[16384];
	int have = 0, lineno = 0, start = 0, toolong = 0;
	logical[0] = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		size_t n = strlen(line);
		if (n == sizeof line - 1 && line[n - 1] != '\n') {
			c.line = lineno;
			bad(&c, "line longer than %zu bytes", sizeof line - 2);
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
			} else if (!toolong) {
				c.line = start;
				bad(&c, "setting longer than %zu bytes", sizeof logical - 1);
				toolong = 1;
			}
			continue;
		}
		if (p != line) {
			c.line = lineno;
			bad(&c, "continuation line without a setting before it");
			continue;
		}
		if (have && !toolong) {
			c.line = start;
			logical_line(&c, logical);
		}
		snprintf(logical, sizeof logical, "%s", p);
		have = 1;
		toolong = 0;
		start = lineno;
	}
	if (have && !toolong) {
		c.line = start;
		logical_line(&c, logical);
	}
	fclose(f);
	c.line = 0;
	if (cf->connect && (cf->nhost || cf->dbname || cf->user || cf->password))
		bad(&c, "connect and hosts/dbname/user/password: one or the other");
	if (!cf->connect && !cf->dbname)
		bad(&c, "dbname is not set (or a connect string)");
	if (!cf->have_query && !cf->have_password_query && !cf->have_user_query && !c.errors)
		bad(&c, "no query, password_query or user_query");
	if (!cf->result_format)
		cf->result_format = strdup("%s");
	return c.errors;
}

int
pcf_domain_ok(const struct pcf *cf, const char *key)
{
	if (!cf->ndomain)
		return 1;
	const char *at = strrchr(key, '@');
	if (!at || at == key || !at[1])
		return 0;
	for (size_t i = 0; i < cf->ndomain; i++)
		if (cf->domain[i] && !strcasecmp(cf->domain[i], at + 1))
			return 1;
	return 0;
}

void
pcf_free(struct pcf *cf)
{
	for (size_t i = 0; i < cf->nhost; i++)
		free(cf->host[i]);
	for (size_t i = 0; i < cf->ndomain; i++)
		free(cf->domain[i]);
	free(cf->dbname);
	free(cf->user);
	if (cf->password) {
		memset(cf->password, 0, strlen(cf->password));
		free(cf->password);
	}
	if (cf->connect) {
		/* may hold a password too */
		memset(cf->connect, 0, strlen(cf->connect));
		free(cf->connect);
	}
	pqt_free(&cf->query);
	pqt_free(&cf->password_query);
	pqt_free(&cf->user_query);
	free(cf->result_format);
	memset(cf, 0, sizeof *cf);
}
