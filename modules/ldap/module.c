/* The ldap module: the map type "ldap:FILE" (alias_maps, transport_maps,
 * access maps, ...) and the passdb/userdb source of the same name, on
 * OpenLDAP's libldap. Only a site with `module ldap` loads libldap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldap_int.h"
#include "postern/config.h"
#include "postern/log.h"
#include "postern/lookup_backend.h"
#include "postern/module.h"
#include "postern/services.h"

static void *
lmap_open(const char *arg, enum pt_map_format fmt, char *err, size_t errlen)
{
	(void)fmt;
	return lbackend_open(arg, err, errlen);
}

static void
lmap_close(void *h)
{
	lbackend_close(h);
}

static char *
lmap_lookup(void *h, const char *key, int *tempfail)
{
	char *val = NULL;
	int rc = lbackend_get(h, 'm', key, &val);
	*tempfail = rc < 0;
	return rc == 1 ? val : NULL;
}

static int
lmap_check(const char *arg, pt_map_report_fn *report, void *rarg)
{
	struct lcf cf;
	int n = lcf_load(arg, &cf, report, rarg);
	lcf_free(&cf);
	return n;
}

/* A cached user record, LF-separated: dn, name, uid, gid, home, host,
 * stored password. */
struct urec {
	char *f[7];
};

static int
lmap_passdb(void *h, const char *user, const char *password, char **stored, char *host, size_t hostlen,
            char *why, size_t whylen)
{
	struct lbackend *b = h;
	char *val = NULL;
	int rc = lbackend_get(b, 'p', user, &val);
	if (rc < 0) {
		snprintf(why, whylen, "directory unavailable");
		return -1;
	}
	if (rc == 0) {
		snprintf(why, whylen, "unknown user");
		return 0;
	}
	struct urec r;
	if (pt_lookup_split(val, r.f, 7) < 0 || !r.f[0][0]) {
		free(val);
		snprintf(why, whylen, "unusable directory entry");
		return -1;
	}
	if (lbackend_cf(b)->pass_attribute) {
		/* A stored {SCHEME}hash: the core checks it. */
		rc = r.f[6][0] ? 2 : 0;
		if (rc == 2 && !(*stored = strdup(r.f[6])))
			rc = -1;
		if (rc == 0)
			snprintf(why, whylen, "user has no password");
	} else {
		/* Bind as the entry found (its DN, never a string built from
		 * the login name). */
		rc = lbackend_bind_check(b, r.f[0], password, why, whylen);
	}
	/* A front (proxy = yes): the user's logins go to their mail host. */
	if (rc > 0 && lbackend_cf(b)->proxy && host && hostlen)
		snprintf(host, hostlen, "%s", r.f[5]);
	memset(val, 0, strlen(val));
	free(val);
	return rc;
}

static int
lmap_userdb(void *h, const char *user, struct pt_user *out)
{
	char *val = NULL;
	int rc = lbackend_get(h, 'u', user, &val);
	if (rc <= 0)
		return rc;
	struct urec r;
	if (pt_lookup_split(val, r.f, 7) < 0) {
		free(val);
		return -1;
	}
	/* The mail host (host_attribute): where this user's mail lives. */
	rc = pt_lookup_fill_user(out, user, r.f[1], r.f[2], r.f[3], r.f[4], r.f[5]);
	free(val);
	return rc;
}

/* The core remembers passdb answers (its credential cache) as long as
 * this file's cache keeps entries: cache_ttl, cache_negative_ttl. */
static void
lmap_cache_ttl(void *h, unsigned *ttl_s, unsigned *negative_ttl_s)
{
	const struct lcf *cf = lbackend_cf(h);
	*ttl_s = cf->cache_ttl_s;
	*negative_ttl_s = cf->cache_negative_ttl_s;
}

static const struct pt_map_type_ops ldap_map_ops = {
	.open = lmap_open,
	.close = lmap_close,
	.lookup = lmap_lookup,
	.check = lmap_check,
	.passdb = lmap_passdb,
	.userdb = lmap_userdb,
	.cache_ttl = lmap_cache_ttl,
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
