/* The ldap module's parts: the ldap_table(5)-style config file
 * (ldap_cf.c), filter templates with RFC 4515 escaping (ldap_filter.c),
 * and the backend: its connection and searches (ldap_backend.c) on core's
 * cache and thread (postern/lookup_backend.h). */
#ifndef POSTERN_LDAP_INT_H
#define POSTERN_LDAP_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "postern/map.h"

#define LCF_MAX_URIS 8
#define LCF_MAX_ATTRS 8

enum lcf_bind { LCF_BIND_NONE, LCF_BIND_SIMPLE, LCF_BIND_SASL_EXTERNAL };

struct lcf {
	char path[1024];
	char *uri[LCF_MAX_URIS];      /* ldap://host:port/, ldaps://, ldapi:// */
	size_t nuri;
	enum lcf_bind bind;
	char *bind_dn, *bind_pw;
	int start_tls;
	char *tls_ca_cert_file, *tls_cert, *tls_key;
	int tls_require_cert;
	char *search_base;
	int scope;                    /* LDAP_SCOPE_* */
	char *query_filter;           /* maps: %s %u %d */
	char *result_attribute[LCF_MAX_ATTRS];
	size_t nresult;
	unsigned timeout_s;
	unsigned cache_ttl_s, cache_negative_ttl_s;
	unsigned size_limit;
	/* passdb/userdb */
	char *user_filter;            /* %u: the login name */
	char *name_attribute, *uid_attribute, *gid_attribute, *home_attribute;
	char *host_attribute, *pass_attribute;
	int proxy;                    /* passdb: logins go to host_attribute's host */
};

/* Parse the file: 0, or the number of errors (each reported as
 * "PATH:LINE: message"); cf is filled either way (free with lcf_free). */
int lcf_load(const char *path, struct lcf *cf, pt_map_report_fn *report, void *arg);
void lcf_free(struct lcf *cf);

/* RFC 4515 value escaping: the bytes * ( ) \ NUL and anything not
 * printable ASCII as \XX. -1 when out is too small. */
int lfilter_escape(const char *in, char *out, size_t outlen);
/* Expand a template: %s the key, %u its local part (all of it without
 * an @), %d its domain, %% a percent; every value escaped. 1 done, 0 the
 * template needs a part the key lacks (%d without @: no query, as
 * Postfix), -1 too long or a bad % sequence. */
int lfilter_expand(const char *tmpl, const char *key, char *out, size_t outlen);

/* ---- the backend ---- */
struct lbackend;
struct pt_lookup;
/* The map handle: core's cache and thread (postern/lookup_backend.h)
 * around an lbackend (pt_lookup_arg). Cached answers: for 'm' the values
 * joined with ", "; for 'u'/'p' the user record (enum pt_lookup_field),
 * extra being the entry's DN. */
struct pt_lookup *lbackend_open(const char *path, char *err, size_t errlen);
/* Bind as dn with password on a connection of its own (blocking, bounded
 * by the timeout): 1 accepted, 0 refused, -1 the directory cannot say. */
int lbackend_bind_check(struct lbackend *b, const char *dn, const char *password, char *why, size_t whylen);
const struct lcf *lbackend_cf(const struct lbackend *b);

#endif
