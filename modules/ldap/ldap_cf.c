/* One ldap_table(5)-style file per map: "name = value" lines, # comments,
 * a line starting with white space continues the previous one. Postfix's
 * names where it has them (server_host, search_base, query_filter,
 * result_attribute, bind, bind_dn, bind_pw, start_tls, timeout, ...);
 * the user fields follow Dovecot's ldap passdb/userdb. */
#include <ldap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ldap_int.h"
#include "postern/cf_file.h"

/* pc first: the reader's callback gets &pc back */
struct lcf_ctx {
	struct pt_cf pc;
	struct lcf *cf;
	unsigned port;
	char *hosts;
};

static void
setting(struct pt_cf *pc, const char *name, const char *v)
{
	struct lcf_ctx *c = (struct lcf_ctx *)pc;
	struct lcf *cf = c->cf;
	if (!strcmp(name, "server_host") || !strcmp(name, "uris") || !strcmp(name, "hosts")) {
		pt_cf_set_str(&c->hosts, v);
	} else if (!strcmp(name, "server_port")) {
		c->port = pt_cf_number(pc, name, v, 1, 65535);
	} else if (!strcmp(name, "search_base") || !strcmp(name, "base")) {
		pt_cf_set_str(&cf->search_base, v);
	} else if (!strcmp(name, "scope")) {
		if (!strcasecmp(v, "sub") || !strcasecmp(v, "subtree"))
			cf->scope = LDAP_SCOPE_SUBTREE;
		else if (!strcasecmp(v, "one") || !strcasecmp(v, "onelevel"))
			cf->scope = LDAP_SCOPE_ONELEVEL;
		else if (!strcasecmp(v, "base"))
			cf->scope = LDAP_SCOPE_BASE;
		else
			pt_cf_bad(pc, "scope: \"%s\" is not sub, one or base", v);
	} else if (!strcmp(name, "query_filter")) {
		pt_cf_set_str(&cf->query_filter, v);
	} else if (!strcmp(name, "result_attribute")) {
		cf->nresult = pt_cf_split(pc, name, v, cf->result_attribute, cf->nresult, LCF_MAX_ATTRS);
	} else if (!strcmp(name, "bind")) {
		if (!strcasecmp(v, "sasl"))
			cf->bind = LCF_BIND_SASL_EXTERNAL;
		else
			cf->bind = pt_cf_yesno(pc, name, v) ? LCF_BIND_SIMPLE : LCF_BIND_NONE;
	} else if (!strcmp(name, "sasl_mechs")) {
		if (strcasecmp(v, "EXTERNAL") != 0)
			pt_cf_bad(pc, "sasl_mechs: only EXTERNAL is supported");
	} else if (!strcmp(name, "bind_dn")) {
		pt_cf_set_str(&cf->bind_dn, v);
	} else if (!strcmp(name, "bind_pw")) {
		pt_cf_set_str(&cf->bind_pw, v);
	} else if (!strcmp(name, "start_tls")) {
		cf->start_tls = pt_cf_yesno(pc, name, v);
	} else if (!strcmp(name, "tls_ca_cert_file")) {
		pt_cf_set_str(&cf->tls_ca_cert_file, v);
	} else if (!strcmp(name, "tls_cert")) {
		pt_cf_set_str(&cf->tls_cert, v);
	} else if (!strcmp(name, "tls_key")) {
		pt_cf_set_str(&cf->tls_key, v);
	} else if (!strcmp(name, "tls_require_cert")) {
		cf->tls_require_cert = pt_cf_yesno(pc, name, v);
	} else if (!strcmp(name, "timeout")) {
		cf->timeout_s = pt_cf_number(pc, name, v, 1, 600);
	} else if (!strcmp(name, "cache_ttl")) {
		cf->cache_ttl_s = pt_cf_number(pc, name, v, 0, 86400);
	} else if (!strcmp(name, "cache_negative_ttl")) {
		cf->cache_negative_ttl_s = pt_cf_number(pc, name, v, 0, 86400);
	} else if (!strcmp(name, "size_limit")) {
		cf->size_limit = pt_cf_number(pc, name, v, 1, 100000);
	} else if (!strcmp(name, "version")) {
		if (strcmp(v, "3") != 0)
			pt_cf_bad(pc, "version: only 3 is supported");
	} else if (!strcmp(name, "user_filter")) {
		pt_cf_set_str(&cf->user_filter, v);
	} else if (!strcmp(name, "name_attribute")) {
		pt_cf_set_str(&cf->name_attribute, v);
	} else if (!strcmp(name, "uid_attribute")) {
		pt_cf_set_str(&cf->uid_attribute, v);
	} else if (!strcmp(name, "gid_attribute")) {
		pt_cf_set_str(&cf->gid_attribute, v);
	} else if (!strcmp(name, "home_attribute")) {
		pt_cf_set_str(&cf->home_attribute, v);
	} else if (!strcmp(name, "host_attribute")) {
		pt_cf_set_str(&cf->host_attribute, v);
	} else if (!strcmp(name, "proxy")) {
		cf->proxy = pt_cf_yesno(pc, name, v);
	} else if (!strcmp(name, "pass_attribute")) {
		pt_cf_set_str(&cf->pass_attribute, v);
	} else {
		pt_cf_bad(pc, "unknown setting \"%s\"", name);
	}
}

/* Each server_host word as a URI: "host", "host:port" or a URI. */
static void
hosts_to_uris(struct lcf_ctx *c)
{
	struct lcf *cf = c->cf;
	char *words[LCF_MAX_URIS];
	size_t n = pt_cf_split(&c->pc, "server_host", c->hosts ? c->hosts : "localhost", words, 0, LCF_MAX_URIS);
	for (size_t i = 0; i < n; i++) {
		char buf[600];
		if (strstr(words[i], "://"))
			snprintf(buf, sizeof buf, "%s", words[i]);
		else if (strchr(words[i], ':') && words[i][0] != '[')
			snprintf(buf, sizeof buf, "ldap://%s", words[i]);
		else
			snprintf(buf, sizeof buf, "ldap://%s:%u", words[i], c->port ? c->port : 389);
		if (ldap_is_ldap_url(buf) == 0 && strncmp(buf, "ldapi://", 8) != 0) {
			pt_cf_bad(&c->pc, "server_host: \"%s\" is not an LDAP URI", words[i]);
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
	struct lcf_ctx c = { .pc = { .path = cf->path, .report = report, .arg = arg, .lax = 1 }, .cf = cf };
	if (pt_cf_read(&c.pc, setting) < 0)
		return c.pc.errors;
	hosts_to_uris(&c);
	free(c.hosts);
	if (!cf->search_base)
		pt_cf_bad(&c.pc, "search_base is not set");
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
		pt_cf_bad(&c.pc, "bind = yes needs bind_dn and bind_pw");
	char probe[2048];
	if (lfilter_expand(cf->query_filter, "x@y", probe, sizeof probe) < 0)
		pt_cf_bad(&c.pc, "query_filter: bad %% sequence (%%s, %%u, %%d, %%%%)");
	if (lfilter_expand(cf->user_filter, "x@y", probe, sizeof probe) < 0)
		pt_cf_bad(&c.pc, "user_filter: bad %% sequence (%%s, %%u, %%d, %%%%)");
	return c.pc.errors;
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
