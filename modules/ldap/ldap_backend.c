/* One backend per config file: the cache, the queue and the thread that
 * owns the directory connection (reused, reopened when it breaks, trying
 * each URI in turn) are core's (postern/lookup_backend.h); here are the
 * connection, the search and its result, and the password check by bind.
 * A failure (directory down, timeout) is remembered for one second, so
 * callers get their 4xx at once instead of each waiting out a timeout. */
#include <ldap.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ldap_int.h"
#include "postern/lookup_backend.h"

/* Idle connections kept for password checks by bind (LDAPv3 binds again
 * on the same connection): a login costs one round trip, not a connect. */
#define BIND_POOL 4

struct lbackend {
	struct lcf cf;
	pthread_mutex_t bind_mu;
	LDAP *bind_idle[BIND_POOL];
	size_t nbind_idle;
};

const struct lcf *
lbackend_cf(const struct lbackend *b)
{
	return &b->cf;
}

/* ---- the connection ---- */

static int
sasl_quiet(LDAP *ld, unsigned flags, void *defaults, void *in)
{
	(void)ld;
	(void)flags;
	(void)defaults;
	(void)in;
	return LDAP_SUCCESS;          /* EXTERNAL asks nothing */
}

static void
set_timeouts(LDAP *ld, unsigned secs)
{
	struct timeval tv = { (time_t)secs, 0 };
	ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
	ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv);
}

/* A connection to the first URI that answers, TLS and the service bind
 * done (bind_as NULL) -- or, for a password check, no bind yet. */
static LDAP *
conn_open(const struct lcf *cf, int service_bind, char *why, size_t whylen)
{
	for (size_t i = 0; i < cf->nuri; i++) {
		LDAP *ld = NULL;
		int rc = ldap_initialize(&ld, cf->uri[i]);
		if (rc != LDAP_SUCCESS) {
			snprintf(why, whylen, "%s: %s", cf->uri[i], ldap_err2string(rc));
			continue;
		}
		int v3 = LDAP_VERSION3, off = 0;
		ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
		ldap_set_option(ld, LDAP_OPT_REFERRALS, &off);
		set_timeouts(ld, cf->timeout_s);
		int req = cf->tls_require_cert ? LDAP_OPT_X_TLS_DEMAND : LDAP_OPT_X_TLS_NEVER;
		ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &req);
		if (cf->tls_ca_cert_file)
			ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, cf->tls_ca_cert_file);
		if (cf->tls_cert)
			ldap_set_option(ld, LDAP_OPT_X_TLS_CERTFILE, cf->tls_cert);
		if (cf->tls_key)
			ldap_set_option(ld, LDAP_OPT_X_TLS_KEYFILE, cf->tls_key);
		ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &off);
		if (cf->start_tls && strncmp(cf->uri[i], "ldaps:", 6) != 0 &&
		    (rc = ldap_start_tls_s(ld, NULL, NULL)) != LDAP_SUCCESS) {
			snprintf(why, whylen, "%s: StartTLS: %s", cf->uri[i], ldap_err2string(rc));
			ldap_unbind_ext_s(ld, NULL, NULL);
			continue;
		}
		if (service_bind && cf->bind == LCF_BIND_SIMPLE) {
			struct berval cred = { strlen(cf->bind_pw), cf->bind_pw };
			rc = ldap_sasl_bind_s(ld, cf->bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
		} else if (service_bind && cf->bind == LCF_BIND_SASL_EXTERNAL) {
			rc = ldap_sasl_interactive_bind_s(ld, NULL, "EXTERNAL", NULL, NULL, LDAP_SASL_QUIET,
			                                  sasl_quiet, NULL);
		} else {
			rc = LDAP_SUCCESS;
		}
		if (rc != LDAP_SUCCESS) {
			snprintf(why, whylen, "%s: bind: %s", cf->uri[i], ldap_err2string(rc));
			ldap_unbind_ext_s(ld, NULL, NULL);
			continue;
		}
		return ld;
	}
	if (!cf->nuri)
		snprintf(why, whylen, "no server_host");
	return NULL;
}

/* Values a caller can use: no NUL or line ends (they would split the
 * cached record, or an alias list). */
static int
value_ok(const struct berval *v)
{
	return v->bv_len > 0 && !memchr(v->bv_val, 0, v->bv_len) && !memchr(v->bv_val, '\n', v->bv_len) &&
	       !memchr(v->bv_val, '\r', v->bv_len);
}

static void
append(char **buf, size_t *len, const char *s, size_t n, const char *sep)
{
	size_t sl = *len && sep ? strlen(sep) : 0;
	/* not realloc: the old buffer (a record with a password hash) is
	 * wiped before it is freed */
	char *nb = malloc(*len + sl + n + 1);
	if (!nb)
		return;
	if (*buf) {
		memcpy(nb, *buf, *len);
		pt_lookup_rec_free(*buf);
	}
	if (sl)
		memcpy(nb + *len, sep, sl);
	memcpy(nb + *len + sl, s, n);
	*len += sl + n;
	nb[*len] = 0;
	*buf = nb;
}

/* The first usable value of attr in entry, "" without one. */
static void
first_value(LDAP *ld, LDAPMessage *entry, const char *attr, char **buf, size_t *len)
{
	struct berval **vals = attr && *attr ? ldap_get_values_len(ld, entry, attr) : NULL;
	int done = 0;
	for (size_t i = 0; vals && vals[i] && !done; i++)
		if (value_ok(vals[i])) {
			append(buf, len, vals[i]->bv_val, vals[i]->bv_len, NULL);
			done = 1;
		}
	ldap_value_free_len(vals);
	append(buf, len, "\n", 1, NULL);
}

/* Run one search for key on conn (pt_lookup_ops.query): 1 found (*val),
 * 0 none, -1 directory trouble (why), -2 the connection broke (try again
 * on a new one), -3 no answer within the timeout (not tried again: a slow
 * directory would be searched twice). */
static int
search(void *arg, void *conn, char kind, const char *key, char **val, char *why, size_t whylen)
{
	const struct lcf *cf = &((struct lbackend *)arg)->cf;
	LDAP *ld = conn;
	char filter[4096];
	int x = lfilter_expand(kind == 'm' ? cf->query_filter : cf->user_filter, key, filter, sizeof filter);
	if (x == 0)
		return 0;
	if (x < 0) {
		snprintf(why, whylen, "key too long for the filter");
		return 0;
	}
	char *attrs[LCF_MAX_ATTRS + 8];
	size_t na = 0;
	if (kind == 'm') {
		for (size_t i = 0; i < cf->nresult; i++)
			attrs[na++] = cf->result_attribute[i];
	} else {
		attrs[na++] = cf->name_attribute;
		attrs[na++] = cf->uid_attribute;
		attrs[na++] = cf->gid_attribute;
		attrs[na++] = cf->home_attribute;
		attrs[na++] = cf->host_attribute;
		if (kind == 'p' && cf->pass_attribute)
			attrs[na++] = cf->pass_attribute;
	}
	attrs[na] = NULL;
	struct timeval tv = { (time_t)cf->timeout_s, 0 };
	LDAPMessage *res = NULL;
	int rc = ldap_search_ext_s(ld, cf->search_base, cf->scope, filter, attrs, 0, NULL, NULL, &tv,
	                           kind == 'm' ? (int)cf->size_limit : 2, &res);
	if (rc == LDAP_TIMEOUT) {
		snprintf(why, whylen, "search: no answer within %u s", cf->timeout_s);
		ldap_msgfree(res);
		return -3;
	}
	if (rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR || rc == LDAP_UNAVAILABLE || rc == LDAP_BUSY) {
		snprintf(why, whylen, "search: %s", ldap_err2string(rc));
		ldap_msgfree(res);
		return -2;
	}
	if (rc == LDAP_NO_SUCH_OBJECT) {
		ldap_msgfree(res);
		return 0;
	}
	if (rc == LDAP_SIZELIMIT_EXCEEDED && kind != 'm') {
		snprintf(why, whylen, "more than one entry matches the user filter");
		ldap_msgfree(res);
		return -1;
	}
	if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) {
		snprintf(why, whylen, "search: %s", ldap_err2string(rc));
		ldap_msgfree(res);
		return -1;
	}
	char *out = NULL;
	size_t len = 0;
	int entries = 0;
	for (LDAPMessage *e = ldap_first_entry(ld, res); e; e = ldap_next_entry(ld, e)) {
		entries++;
		if (kind == 'm') {
			for (size_t i = 0; i < cf->nresult; i++) {
				struct berval **vals = ldap_get_values_len(ld, e, cf->result_attribute[i]);
				for (size_t k = 0; vals && vals[k]; k++)
					if (value_ok(vals[k]))
						append(&out, &len, vals[k]->bv_val, vals[k]->bv_len, ", ");
				ldap_value_free_len(vals);
			}
			continue;
		}
		if (entries > 1) {
			snprintf(why, whylen, "more than one entry matches the user filter");
			pt_lookup_rec_free(out);
			ldap_msgfree(res);
			return -1;
		}
		/* the record's fields (enum pt_lookup_field), the DN last */
		first_value(ld, e, cf->name_attribute, &out, &len);
		first_value(ld, e, cf->uid_attribute, &out, &len);
		first_value(ld, e, cf->gid_attribute, &out, &len);
		first_value(ld, e, cf->home_attribute, &out, &len);
		first_value(ld, e, cf->host_attribute, &out, &len);
		first_value(ld, e, kind == 'p' ? cf->pass_attribute : NULL, &out, &len);
		char *dn = ldap_get_dn(ld, e);
		if (dn && !strchr(dn, '\n'))
			append(&out, &len, dn, strlen(dn), NULL);
		ldap_memfree(dn);
		append(&out, &len, "\n", 1, NULL);
	}
	ldap_msgfree(res);
	if (!out) {
		/* entries whose attributes are all missing: not found */
		return 0;
	}
	*val = out;
	return 1;
}

static void *
lk_connect(void *arg, char *why, size_t whylen)
{
	struct lbackend *b = arg;
	return conn_open(&b->cf, 1, why, whylen);
}

static void
lk_disconnect(void *arg, void *conn)
{
	(void)arg;
	ldap_unbind_ext_s(conn, NULL, NULL);
}

static void
lk_release(void *arg)
{
	struct lbackend *b = arg;
	for (size_t i = 0; i < b->nbind_idle; i++)
		ldap_unbind_ext_s(b->bind_idle[i], NULL, NULL);
	pthread_mutex_destroy(&b->bind_mu);
	lcf_free(&b->cf);
	free(b);
}

static const struct pt_lookup_ops ldap_lookup_ops = {
	.connect = lk_connect,
	.query = search,
	.disconnect = lk_disconnect,
	.release = lk_release,
};

struct pt_lookup *
lbackend_open(const char *path, char *err, size_t errlen)
{
	struct lbackend *b = calloc(1, sizeof *b);
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&b->bind_mu, NULL);
	int n = lcf_load(path, &b->cf, pt_lookup_log_report, NULL);
	if (n) {
		lk_release(b);
		pt_lookup_config_errors(err, errlen, "ldap", path, n);
		return NULL;
	}
	/* One thread, no backoff: each lookup may try the URIs again. A
	 * blocking caller waits for connect, bind and search (a few times
	 * the timeout); that bound is a safety net. */
	struct pt_lookup_settings s = {
		.type = "ldap",
		.path = b->cf.path,
		.ttl_s = b->cf.cache_ttl_s,
		.negative_ttl_s = b->cf.cache_negative_ttl_s,
		.threads = 1,
		.wait_s = b->cf.timeout_s * 4 + 2,
		.server = "directory",
		.record = "directory entry",
	};
	struct pt_lookup *lk = pt_lookup_new(&ldap_lookup_ops, &s, b);
	if (!lk)
		snprintf(err, errlen, "out of memory");
	return lk;
}

int
lbackend_bind_check(struct lbackend *b, const char *dn, const char *password, char *why, size_t whylen)
{
	/* An empty password is an unauthenticated bind (RFC 4513 5.1.2),
	 * which a server accepts: never a login. */
	if (!dn || !*dn || !password || !*password) {
		snprintf(why, whylen, "empty password");
		return 0;
	}
	struct berval cred = { strlen(password), (char *)password };
	int rc = LDAP_SERVER_DOWN;
	LDAP *ld = NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		int reused = 0;
		pthread_mutex_lock(&b->bind_mu);
		if (b->nbind_idle > 0) {
			ld = b->bind_idle[--b->nbind_idle];
			reused = 1;
		}
		pthread_mutex_unlock(&b->bind_mu);
		if (!ld && !(ld = conn_open(&b->cf, 0, why, whylen)))
			return -1;
		rc = ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
		if (reused && (rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR)) {
			/* An idle connection the server dropped (a restart): the
			 * others are as old, all go, and a new one is made. */
			ldap_unbind_ext_s(ld, NULL, NULL);
			ld = NULL;
			pthread_mutex_lock(&b->bind_mu);
			while (b->nbind_idle > 0)
				ldap_unbind_ext_s(b->bind_idle[--b->nbind_idle], NULL, NULL);
			pthread_mutex_unlock(&b->bind_mu);
			continue;
		}
		break;
	}
	int answered = rc == LDAP_SUCCESS || rc == LDAP_INVALID_CREDENTIALS ||
	               rc == LDAP_INAPPROPRIATE_AUTH || rc == LDAP_UNWILLING_TO_PERFORM;
	if (ld) {
		/* kept for the next check when the server answered */
		pthread_mutex_lock(&b->bind_mu);
		if (answered && b->nbind_idle < BIND_POOL) {
			b->bind_idle[b->nbind_idle++] = ld;
			ld = NULL;
		}
		pthread_mutex_unlock(&b->bind_mu);
		if (ld)
			ldap_unbind_ext_s(ld, NULL, NULL);
	}
	if (rc == LDAP_SUCCESS)
		return 1;
	if (answered) {
		snprintf(why, whylen, "password mismatch");
		return 0;
	}
	snprintf(why, whylen, "bind: %s", ldap_err2string(rc));
	return -1;
}
