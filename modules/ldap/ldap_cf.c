/* One ldap_table(5)-style file per map: "name = value" lines, # comments,
 * a line starting with white space continues the previous one. Postfix's
 * names where it has them (server_host, search_base, query_filter,
 * result_attribute, bind, bind_dn, bind_pw, start_tls, timeout, ...);
 * the user fields follow Dovecot's ldap passdb/userdb. */
#include <ctype.h>
#include <errno.h>
#include <ldap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ldap_int.h"

struct lcf_ctx {
	struct lcf *cf;
	int line, errors;
	pt_map_report_fn *report;
	void *arg;
	unsigned port;
	char *hosts;
};

static void __attribute__((format(printf, 2, 3)))
bad(struct lcf_ctx *c, const char *fmt, ...)
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
yesno(struct lcf_ctx *c, const char *name, const char *v)
{
	if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1"))
		return 1;
	if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0"))
		return 0;
	bad(c, "%s: \"%s\" is not yes or no", name, v);
	return 0;
}

static unsigned
number(struct lcf_ctx *c, const char *name, const char *v, unsigned lo, unsigned hi)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (*end == 's' && end[1] == 0)
		end++;                /* "10s" */
	if (!*v || *end || errno || n < lo || n > hi) {
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

/* "a, b c" into up to max strdup'd words. */
static size_t
split_list(struct lcf_ctx *c, const char *name, const char *v, char **out, size_t max)
{
	size_t n = 0;
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
setting(struct lcf_ctx *c, const char *name, const char *v)
{
	struct lcf *cf = c->cf;
	if (!strcmp(name, "server_host") || !strcmp(name, "uris") || !strcmp(name, "hosts")) {
		set_str(&c->hosts, v);
	} else if (!strcmp(name, "server_port")) {
		c->port = number(c, name, v, 1, 65535);
	} else if (!strcmp(name, "search_base") || !strcmp(name, "base")) {
		set_str(&cf->search_base, v);
	} else if (!strcmp(name, "scope")) {
		if (!strcasecmp(v, "sub") || !strcasecmp(v, "subtree"))
			cf->scope = LDAP_SCOPE_SUBTREE;
		else if (!strcasecmp(v, "one") || !strcasecmp(v, "onelevel"))
			cf->scope = LDAP_SCOPE_ONELEVEL;
		else if (!strcasecmp(v, "base"))
			cf->scope = LDAP_SCOPE_BASE;
		else
			bad(c, "scope: \"%s\" is not sub, one or base", v);
	} else if (!strcmp(name, "query_filter")) {
		set_str(&cf->query_filter, v);
	} else if (!strcmp(name, "result_attribute")) {
		for (size_t i = 0; i < cf->nresult; i++)
			free(cf->result_attribute[i]);
		cf->nresult = split_list(c, name, v, cf->result_attribute, LCF_MAX_ATTRS);
	} else if (!strcmp(name, "bind")) {
		if (!strcasecmp(v, "sasl"))
			cf->bind = LCF_BIND_SASL_EXTERNAL;
		else
			cf->bind = yesno(c, name, v) ? LCF_BIND_SIMPLE : LCF_BIND_NONE;
	} else if (!strcmp(name, "sasl_mechs")) {
		if (strcasecmp(v, "EXTERNAL") != 0)
			bad(c, "sasl_mechs: only EXTERNAL is supported");
	} else if (!strcmp(name, "bind_dn")) {
		set_str(&cf->bind_dn, v);
	} else if (!strcmp(name, "bind_pw")) {
		set_str(&cf->bind_pw, v);
	} else if (!strcmp(name, "start_tls")) {
		cf->start_tls = yesno(c, name, v);
	} else if (!strcmp(name, "tls_ca_cert_file")) {
		set_str(&cf->tls_ca_cert_file, v);
	} else if (!strcmp(name, "tls_cert")) {
		set_str(&cf->tls_cert, v);
	} else if (!strcmp(name, "tls_key")) {
		set_str(&cf->tls_key, v);
	} else if (!strcmp(name, "tls_require_cert")) {
		cf->tls_require_cert = yesno(c, name, v);
	} else if (!strcmp(name, "timeout")) {
		cf->timeout_s = number(c, name, v, 1, 600);
	} else if (!strcmp(name, "cache_ttl")) {
		cf->cache_ttl_s = number(c, name, v, 0, 86400);
	} else if (!strcmp(name, "cache_negative_ttl")) {
		cf->cache_negative_ttl_s = number(c, name, v, 0, 86400);
	} else if (!strcmp(name, "size_limit")) {
		cf->size_limit = number(c, name, v, 1, 100000);
	} else if (!strcmp(name, "version")) {
		if (strcmp(v, "3") != 0)
			bad(c, "version: only 3 is supported");
	} else if (!strcmp(name, "user_filter")) {
		set_str(&cf->user_filter, v);
	} else if (!strcmp(name, "name_attribute")) {
		set_str(&cf->name_attribute, v);
	} else if (!strcmp(name, "uid_attribute")) {
		set_str(&cf->uid_attribute, v);
	} else if (!strcmp(name, "gid_attribute")) {
		set_str(&cf->gid_attribute, v);
	} else if (!strcmp(name, "home_attribute")) {
		set_str(&cf->home_attribute, v);
	} else if (!strcmp(name, "host_attribute")) {
		set_str(&cf->host_attribute, v);
	} else if (!strcmp(name, "proxy")) {
		cf->proxy = yesno(c, name, v);
	} else if (!strcmp(name, "pass_attribute")) {
		set_str(&cf->pass_attribute, v);
	} else {
		bad(c, "unknown setting \"%s\"", name);
	}
}

static void
logical_line(struct lcf_ctx *c, char *s)
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

/* Each server_host word as a URI: "host", "host:port" or a URI. */
static void
hosts_to_uris(struct lcf_ctx *c)
{
	struct lcf *cf = c->cf;
	char *words[LCF_MAX_URIS];
	size_t n = split_list(c, "server_host", c->hosts ? c->hosts : "localhost", words, LCF_MAX_URIS);
	for (size_t i = 0; i < n; i++) {
		char buf[600];
		if (strstr(words[i], "://"))
			snprintf(buf, sizeof buf, "%s", words[i]);
		else if (strchr(words[i], ':') && words[i][0] != '[')
			snprintf(buf, sizeof buf, "ldap://%s", words[i]);
		else
			snprintf(buf, sizeof buf, "ldap://%s:%u", words[i], c->port ? c->port : 389);
		if (ldap_is_ldap_url(buf) == 0 && strncmp(buf, "ldapi://", 8) != 0) {
			bad(c, "server_host: \"%s\" is not an LDAP URI", words[i]);
		} else {
			cf->uri[cf->nuri++] = strdup(buf);
		}
		free(words[i]);
	}
}

int
lcf_load(const char *path, struct lcf *cf, pt_map_report_fn *report, void *arg)
{
	memset(cf, 0, sizeof *cf);
	snprintf(cf->path, sizeof cf->path, "%s", path);
	cf->scope = LDAP_SCOPE_SUBTREE;
	cf->timeout_s = 10;
	cf->cache_ttl_s = 60;
	cf->cache_negative_ttl_s = 10;
	cf->size_limit = 1000;
	cf->tls_require_cert = 1;
	struct lcf_ctx c = { .cf = cf, .report = report, .arg = arg };
	FILE *f = fopen(path, "re");
	if (!f) {
		bad(&c, "cannot open: %s", strerror(errno));
		return c.errors;
	}
	char line[4096], logical[16384];
	int have = 0, lineno = 0, start = 0;
	logical[0] = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		size_t n = strlen(line);
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
			}
			continue;
		}
		if (have) {
			c.line = start;
			logical_line(&c, logical);
		}
		snprintf(logical, sizeof logical, "%s", p);
		have = 1;
		start = lineno;
	}
	if (have) {
		c.line = start;
		logical_line(&c, logical);
	}
	fclose(f);
	c.line = 0;
	hosts_to_uris(&c);
	free(c.hosts);
	if (!cf->search_base)
		bad(&c, "search_base is not set");
	if (!cf->query_filter)
		cf->query_filter = strdup("(mailacceptinggeneralid=%s)");
	if (!cf->nresult)
		cf->result_attribute[cf->nresult++] = strdup("maildrop");
	if (!cf->user_filter)
		cf->user_filter = strdup("(&(objectClass=posixAccount)(uid=%u))");
	if (!cf->name_attribute)
		cf->name_attribute = strdup("uid");
	if (!cf->uid_attribute)
		cf->uid_attribute = strdup("uidNumber");
	if (!cf->gid_attribute)
		cf->gid_attribute = strdup("gidNumber");
	if (!cf->home_attribute)
		cf->home_attribute = strdup("homeDirectory");
	if (!cf->host_attribute)
		cf->host_attribute = strdup("mailHost");
	if (cf->bind == LCF_BIND_SIMPLE && (!cf->bind_dn || !cf->bind_pw))
		bad(&c, "bind = yes needs bind_dn and bind_pw");
	char probe[2048];
	if (lfilter_expand(cf->query_filter, "x@y", probe, sizeof probe) < 0)
		bad(&c, "query_filter: bad %% sequence (%%s, %%u, %%d, %%%%)");
	if (lfilter_expand(cf->user_filter, "x@y", probe, sizeof probe) < 0)
		bad(&c, "user_filter: bad %% sequence (%%s, %%u, %%d, %%%%)");
	return c.errors;
}

void
lcf_free(struct lcf *cf)
{
	for (size_t i = 0; i < cf->nuri; i++)
		free(cf->uri[i]);
	for (size_t i = 0; i < cf->nresult; i++)
		free(cf->result_attribute[i]);
	free(cf->bind_dn);
	if (cf->bind_pw) {
		memset(cf->bind_pw, 0, strlen(cf->bind_pw));
		free(cf->bind_pw);
	}
	free(cf->tls_ca_cert_file);
	free(cf->tls_cert);
	free(cf->tls_key);
	free(cf->search_base);
	free(cf->query_filter);
	free(cf->user_filter);
	free(cf->name_attribute);
	free(cf->uid_attribute);
	free(cf->gid_attribute);
	free(cf->home_attribute);
	free(cf->host_attribute);
	free(cf->pass_attribute);
	memset(cf, 0, sizeof *cf);
}
