/* One pgsql_table(5)-style file per map or source: "name = value" lines,
 * # comments, a line starting with white space continues the previous
 * one. Postfix's names (hosts, dbname, user, password, query,
 * result_format, expansion_limit, domain) plus a libpq conninfo string
 * (connect), the passdb/userdb queries (password_query, user_query, as
 * Dovecot's sql driver) and the pool/cache settings. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pgsql_int.h"
#include "postern/cf_file.h"

/* pc first: the reader's callback gets &pc back */
struct pcf_ctx {
	struct pt_cf pc;
	struct pcf *cf;
};

static void
set_query(struct pt_cf *pc, const char *name, const char *v, struct pqt *q, int *have)
{
	char why[300];
	pqt_free(q);
	*have = 0;
	if (pqt_compile(v, q, why, sizeof why) < 0) {
		pt_cf_bad(pc, "%s: %s", name, why);
		return;
	}
	*have = 1;
}

static void
setting(struct pt_cf *pc, const char *name, const char *v)
{
	struct pcf *cf = ((struct pcf_ctx *)pc)->cf;
	if (!strcmp(name, "hosts")) {
		cf->nhost = pt_cf_split(pc, name, v, cf->host, cf->nhost, PCF_MAX_HOSTS);
	} else if (!strcmp(name, "dbname")) {
		pt_cf_set_str(&cf->dbname, v);
	} else if (!strcmp(name, "user")) {
		pt_cf_set_str(&cf->user, v);
	} else if (!strcmp(name, "password")) {
		pt_cf_set_str(&cf->password, v);
	} else if (!strcmp(name, "connect")) {
		pt_cf_set_str(&cf->connect, v);
	} else if (!strcmp(name, "query")) {
		set_query(pc, name, v, &cf->query, &cf->have_query);
	} else if (!strcmp(name, "password_query")) {
		set_query(pc, name, v, &cf->password_query, &cf->have_password_query);
	} else if (!strcmp(name, "user_query")) {
		set_query(pc, name, v, &cf->user_query, &cf->have_user_query);
	} else if (!strcmp(name, "result_format")) {
		char probe[20000];
		if (pqt_format(v, "x@y", probe, sizeof probe) < 0)
			pt_cf_bad(pc, "result_format: bad %% sequence (%%s, %%u, %%d, %%%%)");
		pt_cf_set_str(&cf->result_format, v);
	} else if (!strcmp(name, "expansion_limit")) {
		cf->expansion_limit = pt_cf_number(pc, name, v, 0, 100000);
	} else if (!strcmp(name, "domain")) {
		cf->ndomain = pt_cf_split(pc, name, v, cf->domain, cf->ndomain, PCF_MAX_DOMAINS);
		for (size_t i = 0; i < cf->ndomain; i++) {
			if (cf->domain[i] && strchr(cf->domain[i], ':'))
				pt_cf_bad(pc, "domain: \"%s\": only domain names are supported here, not tables",
				    cf->domain[i]);
			for (char *p = cf->domain[i]; p && *p; p++)
				*p = (char)tolower((unsigned char)*p);
		}
	} else if (!strcmp(name, "timeout") || !strcmp(name, "connect_timeout")) {
		cf->timeout_s = pt_cf_number(pc, name, v, 1, 600);
	} else if (!strcmp(name, "cache_ttl")) {
		cf->cache_ttl_s = pt_cf_number(pc, name, v, 0, 86400);
	} else if (!strcmp(name, "cache_negative_ttl")) {
		cf->cache_negative_ttl_s = pt_cf_number(pc, name, v, 0, 86400);
	} else if (!strcmp(name, "pool_size")) {
		cf->pool_size = pt_cf_number(pc, name, v, 1, 16);
	} else if (!strcmp(name, "retry_max")) {
		cf->retry_max_s = pt_cf_number(pc, name, v, 1, 3600);
	} else if (!strcmp(name, "proxy")) {
		cf->proxy = pt_cf_yesno(pc, name, v);
	} else if (!strcmp(name, "select_field") || !strcmp(name, "table") || !strcmp(name, "where_field") ||
	           !strcmp(name, "additional_conditions") || !strcmp(name, "select_function")) {
		pt_cf_bad(pc, "\"%s\" (Postfix's old interface) is not supported: write a query", name);
	} else {
		pt_cf_bad(pc, "unknown setting \"%s\"", name);
	}
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
	struct pcf_ctx c = { .pc = { .path = cf->path, .report = report, .arg = arg }, .cf = cf };
	if (pt_cf_read(&c.pc, setting) < 0)
		return c.pc.errors;
	if (cf->connect && (cf->nhost || cf->dbname || cf->user || cf->password))
		pt_cf_bad(&c.pc, "connect and hosts/dbname/user/password: one or the other");
	if (!cf->connect && !cf->dbname)
		pt_cf_bad(&c.pc, "dbname is not set (or a connect string)");
	if (!cf->have_query && !cf->have_password_query && !cf->have_user_query && !c.pc.errors)
		pt_cf_bad(&c.pc, "no query, password_query or user_query");
	if (!cf->result_format)
		cf->result_format = strdup("%s");
	return c.pc.errors;
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
