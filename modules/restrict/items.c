/* The restriction items that decide from the request alone, from the
 * config, from access maps or from a Lua policy (the DNS-based ones are in
 * items_dns.c). Reply codes and texts are Postfix's. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "postern/log.h"
#include "postern/map.h"

#define ADDR_MAX 1024

static int
empty(const char *s)
{
	return s == NULL || *s == '\0';
}

static enum item_result
reject(struct restrict_eval *e, const char *fmt, const char *a, const char *b)
{
	RS_SNPRINTF(e->reply, fmt, a, b);
	return R_REJECT;
}

/* ---- access maps ---- */

/* Look up keys in order; 1 found (*value malloc'd), 0 none, -1 tempfail. */
static int
map_find(struct pt_map *m, const char *const *keys, size_t nkeys, char **value, const char **key)
{
	for (size_t i = 0; i < nkeys; i++) {
		if (keys[i] == NULL || keys[i][0] == '\0')
			continue;
		int tempfail = 0;
		char *v = pt_map_lookup(m, keys[i], &tempfail, NULL);
		if (v) {
			*value = v;
			*key = keys[i];
			return 1;
		}
		if (tempfail)
			return -1;
	}
	return 0;
}

#define KEYS_MAX 24
struct keyset {
	const char *k[KEYS_MAX];
	size_t n;
	char store[KEYS_MAX][ADDR_MAX + 2];
};

static void
keys_add(struct keyset *ks, const char *s)
{
	if (ks->n < KEYS_MAX)
		ks->k[ks->n++] = s;
}

static void
keys_addf(struct keyset *ks, const char *fmt, const char *a)
{
	if (ks->n >= KEYS_MAX)
		return;
	snprintf(ks->store[ks->n], sizeof ks->store[0], fmt, a);
	ks->k[ks->n] = ks->store[ks->n];
	ks->n++;
}

/* A domain and its parents (Postfix's parent_domain_matches_subdomains
 * covers smtpd_access_maps: "example.com" matches sub.example.com). */
static void
keys_domain(struct keyset *ks, const char *domain)
{
	for (const char *d = domain; d && *d; ) {
		keys_addf(ks, "%s", d);
		d = strchr(d, '.');
		if (d)
			d++;
	}
}

static void
keys_address(struct keyset *ks, const char *addr)
{
	char local[ADDR_MAX + 1], domain[ADDR_MAX + 1];
	int has_domain;
	if (empty(addr)) {
		keys_add(ks, "<>");    /* smtpd_null_access_lookup_key */
		return;
	}
	if (restrict_addr_split(addr, local, sizeof local, domain, sizeof domain, &has_domain) < 0)
		return;
	for (char *p = local; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (has_domain) {
		char full[2 * ADDR_MAX + 2];
		RS_SNPRINTF(full, "%s@%s", local, domain);
		keys_addf(ks, "%s", full);
		keys_domain(ks, domain);
	} else {
		keys_addf(ks, "%s", local);
	}
	keys_addf(ks, "%s@", local);
}

static void
keys_client(struct keyset *ks, const struct pt_policy_request *r)
{
	if (!empty(r->client_name) && strcmp(r->client_name, "unknown") != 0)
		keys_domain(ks, r->client_name);
	if (empty(r->client_address))
		return;
	keys_addf(ks, "%s", r->client_address);
	/* IPv4 networks by dropping octets: 1.2.3.4 -> 1.2.3 -> 1.2 -> 1. */
	if (strchr(r->client_address, ':') == NULL) {
		char a[64];
		RS_SNPRINTF(a, "%s", r->client_address);
		char *dot;
		while ((dot = strrchr(a, '.')) != NULL) {
			*dot = '\0';
			keys_addf(ks, "%s", a);
		}
	}
}

static enum item_result
check_access(struct restrict_eval *e, const struct restrict_chain *ch,
             const struct restrict_item *it)
{
	struct keyset *ks = malloc(sizeof *ks);
	if (ks == NULL)
		return reject(e, "451 4.3.0 %s%s: Temporary lookup failure", "", "");
	ks->n = 0;
	const struct pt_policy_request *r = &e->req;
	const char *subject = "";
	switch (it->kind) {
	case RI_CHECK_CLIENT_ACCESS:
		keys_client(ks, r);
		subject = restrict_eval_subject(e, RESTRICT_CLASS_CLIENT);
		break;
	case RI_CHECK_HELO_ACCESS:
		if (!empty(r->helo_name))
			keys_domain(ks, r->helo_name);
		subject = r->helo_name ? r->helo_name : "";
		break;
	case RI_CHECK_SENDER_ACCESS:
		if (r->sender == NULL) {
			free(ks);
			return R_NEXT;
		}
		keys_address(ks, r->sender);
		subject = r->sender;
		break;
	default:
		if (empty(r->recipient)) {
			free(ks);
			return R_NEXT;
		}
		keys_address(ks, r->recipient);
		subject = r->recipient;
		break;
	}
	char *value = NULL;
	const char *key = NULL;
	int found = map_find(it->map, ks->k, ks->n, &value, &key);
	enum item_result res = R_NEXT;
	if (found < 0) {
		res = reject(e, "451 4.3.0 <%s>: Temporary lookup failure%s", subject, "");
	} else if (found > 0) {
		struct restrict_action a;
		char why[200];
		RS_SNPRINTF(e->note, "key %.200s = %.300s", key, value);
		if (restrict_action_parse(value, strlen(value), &a, why, sizeof why) < 0) {
			pt_warn("%s: %s: bad action for key %s: %s", it->name, it->arg, key, why);
			res = reject(e, "451 4.3.5 Server configuration problem%s%s", "", "");
		} else {
			res = restrict_eval_action(e, ch, &a);
		}
	}
	free(value);
	free(ks);
	return res;
}

/* ---- the recipient table (reject_unlisted_recipient) ---- */

enum item_result
restrict_item_unlisted(struct restrict_eval *e, const char *class_name)
{
	const char *rcpt = e->req.recipient;
	char local[ADDR_MAX + 1], domain[ADDR_MAX + 1];
	int has_domain;
	if (empty(rcpt) || restrict_addr_split(rcpt, local, sizeof local, domain, sizeof domain,
	                                       &has_domain) < 0)
		return R_NEXT;
	if (has_domain && !pt_domain_is_local(domain)) {
		/* Not ours to list; a route that says "error" refuses it here
		 * as Postfix does (default_transport = error). */
		const struct pt_route_ops *route = pt_service_get(PT_SVC_ROUTE);
		struct pt_route rt;
		memset(&rt, 0, sizeof rt);
		if (route && route->route(rcpt, &rt) >= 0 && strcmp(rt.transport, "error") == 0) {
			RS_SNPRINTF(e->reply, "550 5.1.1 <%s>: %s rejected: %s", rcpt,
			         class_name, rt.nexthop[0] ? rt.nexthop : domain);
			return R_REJECT;
		}
		return R_NEXT;
	}
	if (strpbrk(local, "@%!") != NULL || local[0] == '\0')
		return R_NEXT;        /* routed local parts are the relay test's */
	for (char *p = local; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	/* RFC 5321 4.5.1: postmaster is always accepted. */
	if (strcmp(local, "postmaster") == 0)
		return R_NEXT;
	struct pt_user u;
	int found = pt_user_lookup(local, &u);
	if (found != 1) {
		const struct pt_alias_ops *alias = pt_service_get(PT_SVC_ALIAS);
		if (alias && alias->exists && alias->exists(local) == 1)
			found = 1;
	}
	if (found == 1)
		return R_NEXT;
	if (found < 0) {
		RS_SNPRINTF(e->reply, "451 4.3.0 <%s>: %s rejected: Temporary lookup failure",
		         rcpt, class_name);
		return R_REJECT;
	}
	snprintf(e->reply, sizeof e->reply,
	         "550 5.1.1 <%s>: %s rejected: User unknown in local recipient table", rcpt, class_name);
	return R_REJECT;
}

/* ---- Lua policies ---- */

static void
lua_done(void *arg, const struct restrict_lua_result *res)
{
	struct restrict_eval *e = arg;
	const struct restrict_chain *ch = &e->s->chains[e->order[e->oi]];
	enum item_result r;
	RS_SNPRINTF(e->rule, "%s", res->where);
	if (res->error) {
		/* Never an accept: a broken policy is a temporary failure. */
		RS_SNPRINTF(e->reply, "451 4.3.5 Server configuration problem");
		RS_SNPRINTF(e->note, "%s", res->why);
		r = R_REJECT;
	} else {
		r = restrict_eval_action(e, ch, &res->action);
	}
	restrict_eval_item_done(e, r);
}

enum item_result
restrict_item_eval(struct restrict_eval *e, const struct restrict_chain *ch,
                   const struct restrict_item *it)
{
	const struct pt_policy_request *r = &e->req;
	const char *subj = restrict_eval_subject(e, ch->cls);
	const char *cls = restrict_class_name(ch->cls);
	switch (it->kind) {
	case RI_PERMIT:
		return R_PERMIT;
	case RI_REJECT:
		return reject(e, "554 5.7.1 <%s>: %s rejected: Access denied", subj, cls);
	case RI_DEFER:
		return reject(e, "450 4.3.2 <%s>: %s rejected: Try again later", subj, cls);
	case RI_WARN_IF_REJECT:
		return R_NEXT;
	case RI_PERMIT_MYNETWORKS:
		return e->have_sa && restrict_mynetworks_match(&e->s->mynetworks,
		                                               (const struct sockaddr *)&e->sa)
		       ? R_PERMIT : R_NEXT;
	case RI_PERMIT_SASL_AUTHENTICATED:
		return empty(r->sasl_username) ? R_NEXT : R_PERMIT;
	case RI_REJECT_INVALID_HELO: {
		if (empty(r->helo_name))
			return R_NEXT;
		int bad = restrict_helo_invalid(r->helo_name);
		if (bad == 1)
			return reject(e, "501 5.5.2 <%s>: Helo command rejected: Invalid name%s",
			              r->helo_name, "");
		if (bad == 2)
			return reject(e, "501 5.5.2 <%s>: Helo command rejected: invalid ip address%s",
			              r->helo_name, "");
		return R_NEXT;
	}
	case RI_REJECT_NON_FQDN_HELO:
		if (empty(r->helo_name) || restrict_helo_fqdn(r->helo_name))
			return R_NEXT;
		return reject(e, "504 5.5.2 <%s>: Helo command rejected: need fully-qualified hostname%s",
		              r->helo_name, "");
	case RI_REJECT_NON_FQDN_SENDER:
		if (empty(r->sender) || restrict_addr_fqdn(r->sender))
			return R_NEXT;
		return reject(e, "504 5.5.2 <%s>: Sender address rejected: need fully-qualified address%s",
		              r->sender, "");
	case RI_REJECT_NON_FQDN_RECIPIENT:
		if (empty(r->recipient) || restrict_addr_fqdn(r->recipient))
			return R_NEXT;
		return reject(e, "504 5.5.2 <%s>: Recipient address rejected: need fully-qualified "
		              "address%s", r->recipient, "");
	case RI_REJECT_UNAUTH_DESTINATION:
	case RI_DEFER_UNAUTH_DESTINATION:
		if (empty(r->recipient) || restrict_rcpt_is_authorized(r->recipient))
			return R_NEXT;
		return reject(e, it->kind == RI_REJECT_UNAUTH_DESTINATION
		              ? "554 5.7.1 <%s>: Relay access denied%s"
		              : "454 4.7.1 <%s>: Relay access denied%s", r->recipient, "");
	case RI_PERMIT_AUTH_DESTINATION:
		return !empty(r->recipient) && restrict_rcpt_is_authorized(r->recipient)
		       ? R_PERMIT : R_NEXT;
	case RI_REJECT_UNAUTH_PIPELINING:
		if (!r->pipelined_early)
			return R_NEXT;
		return reject(e, "503 5.5.0 <%s>: %s rejected: Improper use of SMTP command pipelining",
		              subj, cls);
	case RI_REJECT_UNLISTED_RECIPIENT:
		return restrict_item_unlisted(e, "Recipient address");
	case RI_CHECK_CLIENT_ACCESS:
	case RI_CHECK_HELO_ACCESS:
	case RI_CHECK_SENDER_ACCESS:
	case RI_CHECK_RECIPIENT_ACCESS:
		return check_access(e, ch, it);
	case RI_CHECK_LUA_POLICY:
		restrict_lua_call(it->lua, e->loop, &e->req, lua_done, e);
		return R_PENDING;
	case RI_REJECT_SENDER_LOGIN_MISMATCH:
	case RI_REJECT_KNOWN_SENDER_LOGIN_MISMATCH:
	case RI_REJECT_AUTH_SENDER_LOGIN_MISMATCH:
	case RI_REJECT_UNAUTH_SENDER_LOGIN_MISMATCH:
		return restrict_item_sender_login(e, it);
	case RI_REJECT_UNKNOWN_HELO:
	case RI_REJECT_UNKNOWN_SENDER_DOMAIN:
	case RI_REJECT_UNKNOWN_RECIPIENT_DOMAIN:
	case RI_REJECT_UNKNOWN_CLIENT_HOSTNAME:
	case RI_REJECT_UNKNOWN_REVERSE_CLIENT_HOSTNAME:
	case RI_REJECT_RBL_CLIENT:
		return restrict_item_dns(e, ch, it);
	}
	return R_NEXT;
}
