/* The pgsql module: the map type "pgsql:FILE" (alias_maps, transport_maps,
 * access maps, ...) and the passdb/userdb source of the same name, on
 * libpq. Only a site with `module pgsql` loads libpq. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pgsql_int.h"
#include "postern/config.h"
#include "postern/lookup_backend.h"
#include "postern/module.h"
#include "postern/services.h"

static void *
pmap_open(const char *arg, enum pt_map_format fmt, char *err, size_t errlen)
{
	(void)fmt;
	return pbackend_open(arg, err, errlen);
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
	char *rec, *f[PT_LF_COUNT];
	int rc = pt_lookup_passdb_rec(h, user, &rec, f, why, whylen);
	if (rc <= 0)
		return rc;
	rc = f[PT_LF_PASSWORD][0] ? 2 : 0;
	if (rc == 2 && !(*stored = strdup(f[PT_LF_PASSWORD])))
		rc = -1;
	if (rc == 0)
		snprintf(why, whylen, "user has no password");
	/* A front: the file's proxy = yes or the row's proxy column sends
	 * the user's logins to the row's host. */
	if (rc > 0 && (pbackend_cf(pt_lookup_arg(h))->proxy || truthy(f[PT_LF_EXTRA])) && host && hostlen)
		snprintf(host, hostlen, "%s", f[PT_LF_HOST]);
	pt_lookup_rec_free(rec);
	return rc;
}

static const struct pt_map_type_ops pgsql_map_ops = {
	.open = pmap_open,
	.close = pt_lookup_map_close,
	.lookup = pt_lookup_map_lookup,
	.check = pmap_check,
	.passdb = pmap_passdb,
	.userdb = pt_lookup_map_userdb,
	.cache_ttl = pt_lookup_map_cache_ttl,
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
	return pt_lookup_register("pgsql", &pgsql_map_ops);
}

/* `postern check`, start and reload: the type is known from here on (the
 * other modules' checks of alias_maps etc. come to pmap_check), and the
 * passdb/userdb files are checked for their query. */
static int
pgsql_check(const struct pt_config *conf)
{
	pt_map_type_register("pgsql", &pgsql_map_ops);
	return pt_lookup_check_sources(conf, "pgsql", check_file);
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
