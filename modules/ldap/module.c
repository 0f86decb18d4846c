/* The ldap module: the map type "ldap:FILE" (alias_maps, transport_maps,
 * access maps, ...) and the passdb/userdb source of the same name, on
 * OpenLDAP's libldap. Only a site with `module ldap` loads libldap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldap_int.h"
#include "postern/config.h"
#include "postern/lookup_backend.h"
#include "postern/module.h"
#include "postern/services.h"

static void *
lmap_open(const char *arg, enum pt_map_format fmt, char *err, size_t errlen)
{
	(void)fmt;
	return lbackend_open(arg, err, errlen);
}

static int
lmap_check(const char *arg, pt_map_report_fn *report, void *rarg)
{
	struct lcf cf;
	int n = lcf_load(arg, &cf, report, rarg);
	lcf_free(&cf);
	return n;
}

static int
lmap_passdb(void *h, const char *user, const char *password, char **stored, char *host, size_t hostlen,
            char *why, size_t whylen)
{
	struct lbackend *b = pt_lookup_arg(h);
	char *rec, *f[PT_LF_COUNT];
	int rc = pt_lookup_passdb_rec(h, user, &rec, f, why, whylen);
	if (rc <= 0)
		return rc;
	const char *dn = f[PT_LF_EXTRA];
	if (!dn[0]) {
		pt_lookup_rec_free(rec);
		pt_lookup_rec_unusable(h, why, whylen);
		return -1;
	}
	if (lbackend_cf(b)->pass_attribute) {
		/* A stored {SCHEME}hash: the core checks it. */
		rc = f[PT_LF_PASSWORD][0] ? 2 : 0;
		if (rc == 2 && !(*stored = strdup(f[PT_LF_PASSWORD])))
			rc = -1;
		if (rc == 0)
			snprintf(why, whylen, "user has no password");
	} else {
		/* Bind as the entry found (its DN, never a string built from
		 * the login name). */
		rc = lbackend_bind_check(b, dn, password, why, whylen);
	}
	/* A front (proxy = yes): the user's logins go to their mail host. */
	if (rc > 0 && lbackend_cf(b)->proxy && host && hostlen)
		snprintf(host, hostlen, "%s", f[PT_LF_HOST]);
	pt_lookup_rec_free(rec);
	return rc;
}

static const struct pt_map_type_ops ldap_map_ops = {
	.open = lmap_open,
	.close = pt_lookup_map_close,
	.lookup = pt_lookup_map_lookup,
	.check = lmap_check,
	.passdb = lmap_passdb,
	.userdb = pt_lookup_map_userdb,
	.cache_ttl = pt_lookup_map_cache_ttl,
};

/* Registered when the module is loaded, in whatever order the module
 * lines come: the alias, transport and restrict modules open their
 * ldap: maps in their own init. Only a table of functions: the backends
 * start their threads when a map is opened. */
__attribute__((constructor)) static void
ldap_loaded(void)
{
	pt_map_type_register("ldap", &ldap_map_ops);
}

static int
ldap_init(struct pt_ctx *ctx)
{
	(void)ctx;
	return pt_lookup_register("ldap", &ldap_map_ops);
}

static int
check_source(const char *arg, char what, pt_map_report_fn *report, void *rarg)
{
	(void)what;
	return lmap_check(arg, report, rarg);
}

/* `postern check`, start and reload: the type is known from here on (the
 * other modules' checks of alias_maps etc. come to lmap_check), and the
 * passdb/userdb files are checked. */
static int
ldap_check(const struct pt_config *conf)
{
	pt_map_type_register("ldap", &ldap_map_ops);
	return pt_lookup_check_sources(conf, "ldap", check_source);
}

POSTERN_MODULE_EXPORT const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "ldap",
	.depends = NULL,
	.params = NULL,
	.roles = PT_ROLE_WORKER | PT_ROLE_DELIVERY | PT_ROLE_MAIL | PT_ROLE_CLI | PT_ROLE_SENDMAIL | PT_ROLE_AGENT,
	.init = ldap_init,
	.stop = NULL,
	.check = ldap_check,
	.provides = NULL,
};
