/* The password database: `passdb = pam` (system users),
 * `passdb = passwd-file:PATH`, or `passdb = TYPE:ARG` from a lookup
 * module (ldap:FILE, map.h), checked synchronously here; the auth
 * service calls this from a pool thread or the auth agent. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "passdb.h"
#include "passwd_file.h"
#include "postern/map.h"
#include "postern/sasl.h"

#define PAM_SERVICE_NAME "postern"

static int
validate_mechanisms(const char *value, char *err, size_t errlen)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s", value);
	for (char *save = NULL, *w = strtok_r(buf, " ,\t", &save); w; w = strtok_r(NULL, " ,\t", &save))
		if (pt_sasl_mech_parse(w) == PT_SASL_NONE) {
			snprintf(err, errlen, "unsupported mechanism %s (plain and login are)", w);
			return -1;
		}
	return 0;
}

const struct pt_param pt_auth_params[] = {
	{ "disable_plaintext_auth", PT_BOOL, "yes", NULL,
	  "plaintext authentication only over TLS or from the server's own address", 0, 0 },
	{ "auth_mechanisms", PT_LIST, "plain", validate_mechanisms,
	  "SASL mechanisms offered: plain, login", 0, 0 },
	{ "auth_failure_delay", PT_TIME, "2s", NULL,
	  "time before a failed authentication is answered", 0, 60 },
	{ "auth_throttle", PT_BOOL, "yes", NULL,
	  "make clients wait longer after each failure from their address (2, 4, 8, 15 s)", 0, 0 },
	{ "auth_max_waiting_per_address", PT_INT, "32", NULL,
	  "logins from one client address that may wait for their check (checked one at a time); more are "
	  "refused: raise it for a webmail or NAT address many users log in from", 1, 100000 },
	{ NULL, 0, NULL, NULL, NULL, 0, 0 },
};

int
pt_passdb_spec_check(const char *spec, char *err, size_t errlen)
{
	if (!spec || strcmp(spec, "pam") == 0)
		return 0;
	if (strncmp(spec, "passwd-file:", 12) == 0) {
		if (spec[12] == '\0') {
			snprintf(err, errlen, "passwd-file: needs a path");
			return -1;
		}
		return 0;
	}
	char type[32];
	const char *arg;
	if (pt_map_spec_module(spec, type, sizeof type, &arg))
		return 0;
	snprintf(err, errlen, "unknown passdb \"%.64s\" (pam, passwd-file:PATH, or a lookup "
	         "module's TYPE:FILE with its module line, e.g. `module ldap` for ldap:FILE)", spec);
	return -1;
}

int
pt_auth_sources_check(const struct pt_config *c)
{
	static const char *const params[] = { "passdb", "userdb" };
	int bad = 0;
	for (size_t i = 0; i < 2; i++) {
		const char *v = pt_conf_str(c, params[i]);
		char type[32], err[200];
		const char *arg;
		if (!v || !strcmp(v, "pam") || !strcmp(v, "passwd") || !strncmp(v, "passwd-file:", 12))
			continue;
		if (pt_map_spec_module(v, type, sizeof type, &arg))
			continue;
		snprintf(err, sizeof err, "%s", v);
		char *colon = strchr(err, ':');
		if (colon)
			*colon = '\0';
		pt_conf_error(c, params[i], "%s = %s: no loaded module provides \"%s\" (add `module %s`)",
		              params[i], v, err, err);
		bad++;
	}
	return bad;
}

void
pt_auth_log_name(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return;
	for (size_t i = 0; in && in[i] && o + 1 < outlen && i < 64; i++) {
		unsigned char c = (unsigned char)in[i];
		out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[o] = '\0';
}

/* Dovecot's proxy fields of a passwd-file line: `proxy` (or proxy=y)
 * with `host=ADDR` and an optional `port=N`; host may carry the port too. */
static void
file_proxy(const char *extra, char *proxy, size_t proxylen)
{
	char host[256], port[8];

	if (!proxy || !proxylen || !pt_passwd_extra_flag(extra, "proxy") ||
	    !pt_passwd_extra_get(extra, "host", host, sizeof host) || host[0] == '\0')
		return;
	if (pt_passwd_extra_get(extra, "port", port, sizeof port) && port[0] &&
	    strspn(port, "0123456789") == strlen(port)) {
		if (strchr(host, ':'))  /* a bare IPv6 address */
			snprintf(proxy, proxylen, "[%s]:%s", host, port);
		else
			snprintf(proxy, proxylen, "%s:%s", host, port);
	} else {
		snprintf(proxy, proxylen, "%s", host);
	}
}

static int
file_check(const char *path, const struct pt_passdb_req *req, char *why, size_t whylen,
           char *proxy, size_t proxylen)
{
	struct pt_passwd_rec *rec = OPENSSL_zalloc(sizeof *rec);
	int r;

	if (!rec) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	r = pt_passwd_file_lookup(path, req->user, rec);
	if (r < 0) {
		snprintf(why, whylen, "passwd-file %s cannot be read", path);
	} else if (r == 0 || !rec->has_password) {
		snprintf(why, whylen, r == 0 ? "unknown user" : "user has no password");
		pt_pwscheme_dummy_verify(req->password);
		r = 0;
	} else {
		r = pt_pwscheme_verify(rec->password, req->password);
		if (r < 0)
			snprintf(why, whylen, "unusable password hash");
		else if (r == 0)
			snprintf(why, whylen, "password mismatch");
		else
			file_proxy(rec->extra, proxy, proxylen);
	}
	OPENSSL_clear_free(rec, sizeof *rec);
	return r;
}

/* A lookup module's source: it checks the password itself (an LDAP bind
 * as the user) or hands back the stored {SCHEME}hash checked here.
 * proxy (proxylen may be 0) gets the host the user's logins go to. */
static int
module_check(const char *spec, const struct pt_passdb_req *req, char *why, size_t whylen,
             char *proxy, size_t proxylen)
{
	char err[200];
	struct pt_map_source *src = pt_map_source_get(spec, 0, err, sizeof err);
	if (!src) {
		snprintf(why, whylen, "passdb: %s", err);
		return -1;
	}
	/* Answered before for this very password (cache_ttl), the source is
	 * not asked: within the TTL even while it is down (as Dovecot's auth
	 * cache). Any other password goes to the source. */
	unsigned ttl, negative_ttl;
	pt_map_source_cache_ttl(src, &ttl, &negative_ttl);
	if (ttl || negative_ttl) {
		int c = pt_passdb_cache_lookup(spec, req, why, whylen, proxy, proxylen);
		if (c == 1 || c == 0)
			return c;
	}
	/* The auth agent's threads and pool jobs may wait for a directory. */
	int was = pt_map_may_block();
	pt_map_set_may_block(1);
	char *stored = NULL;
	char host[256];
	int r = pt_map_source_passdb(src, req->user, req->password, &stored, host, sizeof host, why, whylen);
	pt_map_set_may_block(was);
	if (r == 2) {
		r = stored ? pt_pwscheme_verify(stored, req->password) : -1;
		if (r < 0)
			snprintf(why, whylen, "unusable password hash");
		else if (r == 0)
			snprintf(why, whylen, "password mismatch");
	} else if (r == 0) {
		/* unknown users answer as slowly as known ones */
		if (!why[0] || strstr(why, "unknown"))
			pt_pwscheme_dummy_verify(req->password);
	}
	if (stored)
		OPENSSL_clear_free(stored, strlen(stored));
	if (r == 1 && proxy && proxylen)
		snprintf(proxy, proxylen, "%s", host);
	/* Temporary failures are never remembered. */
	if (r == 1 || r == 0)
		pt_passdb_cache_store(spec, req, r, why, host, r == 1 ? ttl : negative_ttl);
	return r > 1 ? -1 : r;
}

int
pt_passdb_check(const char *spec, const struct pt_passdb_req *req, char *why, size_t whylen)
{
	return pt_passdb_check_proxy(spec, req, why, whylen, NULL, 0);
}

int
pt_passdb_check_proxy(const char *spec, const struct pt_passdb_req *req, char *why, size_t whylen,
                      char *proxy, size_t proxylen)
{
	char err[160];

	if (proxy && proxylen)
		proxy[0] = '\0';
	snprintf(why, whylen, "%s", "");
	if (pt_passdb_spec_check(spec, err, sizeof err) < 0) {
		snprintf(why, whylen, "%s", err);
		return -1;
	}
	if (!req->user || !*req->user || !req->password) {
		snprintf(why, whylen, "empty user name");
		return 0;
	}
	/* An empty password never proves anything, whatever the backend says. */
	if (!*req->password) {
		snprintf(why, whylen, "empty password");
		pt_pwscheme_dummy_verify("");
		return 0;
	}
	if (!spec || strcmp(spec, "pam") == 0)
		return pt_pam_verify(PAM_SERVICE_NAME, req, why, whylen);
	if (strncmp(spec, "passwd-file:", 12) == 0)
		return file_check(spec + 12, req, why, whylen, proxy, proxylen);
	return module_check(spec, req, why, whylen, proxy, proxylen);
}
