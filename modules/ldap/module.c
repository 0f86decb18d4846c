/* The ldap module: the map type "ldap:FILE" (alias_maps, transport_maps,
 * access maps, ...) and the passdb/userdb source of the same name, on
 * OpenLDAP's libldap. Only a site with `module ldap` loads libldap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldap_int.h"
#include "postern/config.h"
#include "postern/log.h"
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
	if (split_rec(val, &r) < 0 || !r.f[0][0]) {
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
	if (split_rec(val, &r) < 0) {
		free(val);
		return -1;
	}
	const char *name = r.f[1][0] ? r.f[1] : user;
	if (strlen(name) >= sizeof out->name || strlen(r.f[4]) >= sizeof out->home) {
		free(val);
		return -1;
	}
	snprintf(out->name, sizeof out->name, "%s", name);
	char *end;
	unsigned long v;
	if (r.f[2][0] && (v = strtoul(r.f[2], &end, 10), !*end))
		out->uid = (uid_t)v;
	if (r.f[3][0] && (v = strtoul(r.f[3], &end, 10), !*end))
		out->gid = (gid_t)v;
	snprintf(out->home, sizeof out->home, "%s", r.f[4]);
	/* The mail host (host_attribute): where this user's mail lives. */
	snprintf(out->host, sizeof out->host, "%s", r.f[5]);
	free(val);
	return 1;
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
	if (pt_map_type_register("ldap", &ldap_map_ops) != 0) {
		pt_log(PT_LOG_ERROR, "ldap: cannot register the map type");
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
 * other modules' checks of alias_maps etc. come to lmap_check), and the
 * passdb/userdb files are checked. */
static int
ldap_check(const struct pt_config *conf)
{
	pt_map_type_register("ldap", &ldap_map_ops);
	static const char *const params[] = { "passdb", "userdb" };
	int bad = 0;
	for (size_t i = 0; i < 2; i++) {
		const char *v = pt_conf_str(conf, params[i]);
		struct check_ctx c = { conf, params[i] };
		if (v && strncmp(v, "ldap:", 5) == 0 && lmap_check(v + 5, check_report, &c) != 0)
			bad = 1;
	}
	return bad ? -1 : 0;
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
