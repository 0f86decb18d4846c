/* The pgsql module: the map type "pgsql:FILE" (alias_maps, transport_maps,
 * access maps, ...) and the passdb/userdb source of the same name, on
 * libpq. Only a site with `module pgsql` loads libpq. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pgsql_int.h"
#include "postern/config.h"
#include "postern/log.h"
#include "postern/module.h"
#include "postern/services.h"

static void *
pmap_open(const char *arg, enum pt_map_format fmt, char *err, size_t errlen)
{
	(void)fmt;
	return pbackend_open(arg, err, errlen);
}

static void
pmap_close(void *h)
{
	pbackend_close(h);
}

static char *
pmap_lookup(void *h, const char *key, int *tempfail)
{
	char *val = NULL;
	int rc = pbackend_get(h, 'm', key, &val);
	*tempfail = rc < 0;
	return rc == 1 ? val : NULL;
}

/* what: 'm' a map (needs query), 'p' passdb, 'u' userdb. */
static int
check_file(const char *arg, char what, pt_map_report_fn *report, void *rarg)
{
	struct pcf cf;
	int n = pcf_load(arg, &cf, report, rarg);
	const char *missing = NULL;
	if (what == 'm' && !cf.have_query)
		missing = "query";
	else if (what == 'p' && !cf.have_password_query)
		missing = "password_query";
	else if (what == 'u' && !cf.have_user_query)
		missing = "user_query";
	if (missing && !n) {
		char msg[1200];
		snprintf(msg, sizeof msg, "%s: %s is not set", arg,  missing);
		if (report)
			report(rarg, 1, msg);
		n++;
	}
	pcf_free(&cf);
	return n;
}

static int
pmap_check(const char *arg, pt_map_report_fn *report, void *rarg)
{
	return check_file(arg, 'm', report, rarg);
}

/* A cached user record, LF-separated: name, uid, gid, home, host,
 * password, proxy. */
struct urec {
	char *f[7];
};

static int
split_rec(char *val, struct urec *r)
{
	char *p = val;
	for (int i = 0; i < 7; i++) {
		char *nl = strchr(p, '\n');
		if (!nl)
			return -1;
		*nl = 0;
		r->f[i] = p;
		p = nl + 1;
	}
	return 0;
}

static int
truthy(const char *v)
{
	return !strcasecmp(v, "y") || !strcasecmp(v, "yes") || !strcasecmp(v, "t") || !strcasecmp(v, "true") ||
	       !strcmp(v, "1");
}

static int
pmap_passdb(void *h, const char *user, const char *password, char **stored, char *host, size_t hostlen,
            char *why, size_t whylen)
{
	(void)password;           /* the core checks it against the hash */
	struct pbackend *b = h;
	char *val = NULL;
	int rc = pbackend_get(b, 'p', user, &val);
	if (rc < 0) {
		snprintf(why, whylen, "database unavailable");
		return -1;
	}
	if (rc == 0) {
		snprintf(why, whylen, "unknown user");
		return 0;
	}
	struct urec r;
	if (split_rec(val, &r) < 0) {
		memset(val, 0, strlen(val));
		free(val);
		snprintf(why, whylen, "unusable database row");
		return -1;
	}
	rc = r.f[5][0] ? 2 : 0;
	if (rc == 2 && !(*stored = strdup(r.f[5])))
		rc = -1;
	if (rc == 0)
		snprintf(why, whylen, "user has no password");
	/* A front: the file's proxy = yes or the row's proxy column sends
	 * the user's logins to the row's host. */
	if (rc > 0 && (pbackend_cf(b)->proxy || truthy(r.f[6])) && host && hostlen)
		snprintf(host, hostlen, "%s", r.f[4]);
	memset(val, 0, strlen(val));
	free(val);
	return rc;
}

static int
pmap_userdb(void *h, const char *user, struct pt_user *out)
{
	char *val = NULL;
	int rc = pbackend_get(h, 'u', user, &val);
	if (rc <= 0)
		return rc;
	struct urec r;
	if (split_rec(val, &r) < 0) {
		free(val);
		return -1;
	}
	const char *name = r.f[0][0] ? r.f[0] : user;
	if (strlen(name) >= sizeof out->name || strlen(r.f[3]) >= sizeof out->home ||
	    strlen(r.f[4]) >= sizeof out->host) {
		free(val);
		return -1;
	}
	snprintf(out->name, sizeof out->name, "%s", name);
	char *end;
	unsigned long v;
	if (r.f[1][0] && (v = strtoul(r.f[1], &end, 10), !*end))
		out->uid = (uid_t)v;
	if (r.f[2][0] && (v = strtoul(r.f[2], &end, 10), !*end))
		out->gid = (gid_t)v;
	snprintf(out->home, sizeof out->home, "%s", r.f[3]);
	/* the host column: where this user's mail lives */
	snprintf(out->host, sizeof out->host, "%s", r.f[4]);
	free(val);
	return 1;
}

/* The core's credential cache keeps a checked password as long as this
 * file's cache keeps the row it was checked against. */
static void
pmap_cache_ttl(void *h, unsigned *ttl_s, unsigned *negative_ttl_s)
{
	*ttl_s = pbackend_cf(h)->cache_ttl_s;
	*negative_ttl_s = pbackend_cf(h)->cache_negative_ttl_s;
}

static const struct pt_map_type_ops pgsql_map_ops = {
	.open = pmap_open,
	.close = pmap_close,
	.lookup = pmap_lookup,
	.check = pmap_check,
	.passdb = pmap_passdb,
	.userdb = pmap_userdb,
	.cache_ttl = pmap_cache_ttl,
};

/* Registered when the module is loaded, in whatever order the module
 * lines come (as the ldap module): the alias, transport and restrict
 * modules open their pgsql: maps in their own init. */
__attribute__((constructor)) static void
pgsql_loaded(void)
{
	pt_map_type_register("pgsql", &pgsql_map_ops);
}

static int
pgsql_init(struct pt_ctx *ctx)
{
	(void)ctx;
	if (pt_map_type_register("pgsql", &pgsql_map_ops) != 0) {
		pt_log(PT_LOG_ERROR, "pgsql: cannot register the map type");
		return -1;
	}
	return 0;
}

struct check_ctx {
	const struct pt_config *conf;
	const char *param;
};

static void
check_report(void *arg, int is_error, const char *msg)
{
	const struct check_ctx *c = arg;
	if (is_error)
		pt_conf_error(c->conf, c->param, "%s: %s", c->param, msg);
}

/* `postern check`, start and reload: the type is known from here on (the
 * other modules' checks of alias_maps etc. come to pmap_check), and the
 * passdb/userdb files are checked for their query. */
static int
pgsql_check(const struct pt_config *conf)
{
	pt_map_type_register("pgsql", &pgsql_map_ops);
	static const char *const params[] = { "passdb", "userdb" };
	int bad = 0;
	for (size_t i = 0; i < 2; i++) {
		const char *v = pt_conf_str(conf, params[i]);
		struct check_ctx c = { conf, params[i] };
		if (v && strncmp(v, "pgsql:", 6) == 0 && check_file(v + 6, i == 0 ? 'p' : 'u', check_report, &c) != 0)
			bad = 1;
	}
	return bad ? -1 : 0;
}

POSTERN_MODULE_EXPORT const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "pgsql",
	.depends = NULL,
	.params = NULL,
	.roles = PT_ROLE_WORKER | PT_ROLE_DELIVERY | PT_ROLE_MAIL | PT_ROLE_CLI | PT_ROLE_SENDMAIL | PT_ROLE_AGENT,
	.init = pgsql_init,
	.stop = NULL,
	.check = pgsql_check,
	.provides = NULL,
};
