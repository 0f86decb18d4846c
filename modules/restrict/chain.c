/* Restriction lists: the item vocabulary, parsing a list value into items
 * (opening their maps and Lua policies), and the setup one config gives. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/log.h"
#include "postern/map.h"
#include "restrict.h"

static const struct {
	const char *name;
	enum restrict_item_kind kind;
	int arg;                      /* takes one argument word */
} items[] = {
	{ "permit", RI_PERMIT, 0 },
	{ "reject", RI_REJECT, 0 },
	{ "defer", RI_DEFER, 0 },
	{ "warn_if_reject", RI_WARN_IF_REJECT, 0 },
	{ "permit_mynetworks", RI_PERMIT_MYNETWORKS, 0 },
	{ "permit_sasl_authenticated", RI_PERMIT_SASL_AUTHENTICATED, 0 },
	{ "reject_invalid_helo_hostname", RI_REJECT_INVALID_HELO, 0 },
	{ "reject_invalid_hostname", RI_REJECT_INVALID_HELO, 0 },
	{ "reject_non_fqdn_helo_hostname", RI_REJECT_NON_FQDN_HELO, 0 },
	{ "reject_non_fqdn_hostname", RI_REJECT_NON_FQDN_HELO, 0 },
	{ "reject_unknown_helo_hostname", RI_REJECT_UNKNOWN_HELO, 0 },
	{ "reject_unknown_hostname", RI_REJECT_UNKNOWN_HELO, 0 },
	{ "reject_unknown_sender_domain", RI_REJECT_UNKNOWN_SENDER_DOMAIN, 0 },
	{ "reject_non_fqdn_sender", RI_REJECT_NON_FQDN_SENDER, 0 },
	{ "reject_non_fqdn_recipient", RI_REJECT_NON_FQDN_RECIPIENT, 0 },
	{ "reject_unknown_recipient_domain", RI_REJECT_UNKNOWN_RECIPIENT_DOMAIN, 0 },
	{ "reject_unauth_destination", RI_REJECT_UNAUTH_DESTINATION, 0 },
	{ "defer_unauth_destination", RI_DEFER_UNAUTH_DESTINATION, 0 },
	{ "permit_auth_destination", RI_PERMIT_AUTH_DESTINATION, 0 },
	{ "reject_unauth_pipelining", RI_REJECT_UNAUTH_PIPELINING, 0 },
	{ "reject_unlisted_recipient", RI_REJECT_UNLISTED_RECIPIENT, 0 },
	{ "check_recipient_maps", RI_REJECT_UNLISTED_RECIPIENT, 0 },
	{ "reject_unknown_client_hostname", RI_REJECT_UNKNOWN_CLIENT_HOSTNAME, 0 },
	{ "reject_unknown_client", RI_REJECT_UNKNOWN_CLIENT_HOSTNAME, 0 },
	{ "reject_unknown_reverse_client_hostname", RI_REJECT_UNKNOWN_REVERSE_CLIENT_HOSTNAME, 0 },
	{ "reject_rbl_client", RI_REJECT_RBL_CLIENT, 1 },
	{ "check_client_access", RI_CHECK_CLIENT_ACCESS, 1 },
	{ "check_helo_access", RI_CHECK_HELO_ACCESS, 1 },
	{ "check_sender_access", RI_CHECK_SENDER_ACCESS, 1 },
	{ "check_recipient_access", RI_CHECK_RECIPIENT_ACCESS, 1 },
	{ "check_lua_policy", RI_CHECK_LUA_POLICY, 1 },
	{ "reject_sender_login_mismatch", RI_REJECT_SENDER_LOGIN_MISMATCH, 0 },
	{ "reject_known_sender_login_mismatch", RI_REJECT_KNOWN_SENDER_LOGIN_MISMATCH, 0 },
	{ "reject_authenticated_sender_login_mismatch", RI_REJECT_AUTH_SENDER_LOGIN_MISMATCH, 0 },
	{ "reject_unauthenticated_sender_login_mismatch", RI_REJECT_UNAUTH_SENDER_LOGIN_MISMATCH, 0 },
};

static const struct {
	const char *param;
	enum restrict_class cls;
} lists[RL_COUNT] = {
	[RL_CLIENT] = { "smtpd_client_restrictions", RESTRICT_CLASS_CLIENT },
	[RL_HELO] = { "smtpd_helo_restrictions", RESTRICT_CLASS_HELO },
	[RL_SENDER] = { "smtpd_sender_restrictions", RESTRICT_CLASS_SENDER },
	[RL_RELAY] = { "smtpd_relay_restrictions", RESTRICT_CLASS_RECIPIENT },
	[RL_RECIPIENT] = { "smtpd_recipient_restrictions", RESTRICT_CLASS_RECIPIENT },
	[RL_DATA] = { "smtpd_data_restrictions", RESTRICT_CLASS_DATA },
	[RL_EOD] = { "smtpd_end_of_data_restrictions", RESTRICT_CLASS_EOD },
};

static void
item_free(struct restrict_item *it)
{
	if (it->map)
		pt_map_close(it->map);
	if (it->lua)
		restrict_lua_close(it->lua);
	free(it->arg);
}

void
restrict_chain_free(struct restrict_chain *ch)
{
	for (size_t i = 0; i < ch->n; i++)
		item_free(&ch->v[i]);
	free(ch->v);
	ch->v = NULL;
	ch->n = 0;
}

/* An RBL argument: "domain" or "domain=127.0.0.2" with a valid domain. */
static int
rbl_arg_ok(const char *s)
{
	size_t dlen = strcspn(s, "=");
	if (dlen == 0 || dlen > 200)
		return 0;
	for (size_t i = 0; i < dlen; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '-' || ch == '.' || ch == '_'))
			return 0;
	}
	return 1;
}

int
restrict_chain_parse(struct restrict_chain *ch, const struct pt_list *words,
                     int open_resources, char *err, size_t errlen)
{
	ch->n = 0;
	ch->v = words->n ? calloc(words->n, sizeof *ch->v) : NULL;
	if (words->n && ch->v == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t w = 0; w < words->n; w++) {
		const char *word = words->v[w];
		size_t k;
		for (k = 0; k < sizeof items / sizeof items[0]; k++)
			if (strcmp(items[k].name, word) == 0)
				break;
		if (k == sizeof items / sizeof items[0]) {
			snprintf(err, errlen, "unknown restriction \"%.80s\"", word);
			goto fail;
		}
		struct restrict_item *it = &ch->v[ch->n++];
		it->kind = items[k].kind;
		it->name = items[k].name;
		if (!items[k].arg)
			continue;
		if (w + 1 >= words->n) {
			snprintf(err, errlen, "%s needs an argument", word);
			goto fail;
		}
		const char *arg = words->v[++w];
		if ((it->arg = strdup(arg)) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		char why[256];
		switch (it->kind) {
		case RI_REJECT_RBL_CLIENT:
			if (!rbl_arg_ok(arg)) {
				snprintf(err, errlen, "reject_rbl_client: bad DNSBL domain \"%.80s\"", arg);
				goto fail;
			}
			break;
		case RI_CHECK_LUA_POLICY:
			if (arg[0] != '/') {
				snprintf(err, errlen, "check_lua_policy: \"%.80s\" is not an absolute path", arg);
				goto fail;
			}
			if (open_resources && (it->lua = restrict_lua_open(arg, why, sizeof why)) == NULL) {
				snprintf(err, errlen, "check_lua_policy %s: %s", arg, why);
				goto fail;
			}
			break;
		default: {
			char path[1024];
			if (pt_map_spec_path(arg, path, sizeof path, why, sizeof why) < 0) {
				snprintf(err, errlen, "%s: %s", it->name, why);
				goto fail;
			}
			if (open_resources &&
			    (it->map = pt_map_open(arg, PT_MAP_KEY_VALUE, why, sizeof why)) == NULL) {
				snprintf(err, errlen, "%s %s: %s", it->name, arg, why);
				goto fail;
			}
			break;
		}
		}
	}
	return 0;
fail:
	restrict_chain_free(ch);
	return -1;
}

void
restrict_setup_ref(struct restrict_setup *s)
{
	s->refs++;
}

void
restrict_setup_unref(struct restrict_setup *s)
{
	if (s == NULL || --s->refs > 0)
		return;
	for (int l = 0; l < RL_COUNT; l++)
		restrict_chain_free(&s->chains[l]);
	pt_cidr_list_free(&s->mynetworks);
	restrict_login_maps_close(s);
	pt_map_list_close(s->lua_maps);
	free(s);
}

static int
same_map(struct pt_map *m, const char *path)
{
	return m != NULL && strcmp(pt_map_path(m), path) == 0;
}

struct pt_map *
restrict_setup_find_map(struct restrict_setup *s, const char *spec)
{
	char path[1024], why[256];
	if (s == NULL || pt_map_spec_path(spec, path, sizeof path, why, sizeof why) < 0)
		return NULL;
	for (size_t i = 0; i < pt_map_list_count(s->lua_maps); i++)
		if (same_map(pt_map_list_get(s->lua_maps, i), path))
			return pt_map_list_get(s->lua_maps, i);
	for (int l = 0; l < RL_COUNT; l++)
		for (size_t i = 0; i < s->chains[l].n; i++)
			if (same_map(s->chains[l].v[i].map, path))
				return s->chains[l].v[i].map;
	for (size_t i = 0; i < pt_map_list_count(s->login_maps); i++)
		if (same_map(pt_map_list_get(s->login_maps, i), path))
			return pt_map_list_get(s->login_maps, i);
	return NULL;
}

/* lua_policy_maps: checked always, opened (read) only with the rest of
 * the resources, i.e. at start and reload, never during a call. */
static int
lua_maps_open(struct restrict_setup *s, const struct pt_config *c, int open_resources)
{
	const struct pt_list *l = pt_conf_list(c, "lua_policy_maps");
	if (l == NULL || l->n == 0)
		return 0;
	int errors = 0;
	for (size_t i = 0; i < l->n; i++) {
		char path[1024], why[256];
		if (pt_map_spec_path(l->v[i], path, sizeof path, why, sizeof why) < 0) {
			pt_conf_error(c, "lua_policy_maps", "%s", why);
			errors++;
		}
	}
	if (errors || !open_resources)
		return errors ? -1 : 0;
	char why[400];
	s->lua_maps = pt_map_list_open(l, PT_MAP_KEY_VALUE, "lua_policy_maps", why, sizeof why);
	if (s->lua_maps == NULL) {
		pt_conf_error(c, "lua_policy_maps", "%s", why);
		return -1;
	}
	return 0;
}

/* Postfix refuses a configuration where no list stops relaying. */
static int
has_relay_control(const struct restrict_setup *s)
{
	static const enum restrict_list rl[] = { RL_RELAY, RL_RECIPIENT };
	for (size_t i = 0; i < 2; i++) {
		const struct restrict_chain *ch = &s->chains[rl[i]];
		for (size_t k = 0; k < ch->n; k++)
			switch (ch->v[k].kind) {
			case RI_REJECT_UNAUTH_DESTINATION:
			case RI_DEFER_UNAUTH_DESTINATION:
			case RI_REJECT:
			case RI_DEFER:
				return 1;
			default:
				break;
			}
	}
	return 0;
}

struct restrict_setup *
restrict_setup_build(const struct pt_config *c, int open_resources)
{
	struct restrict_setup *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->refs = 1;
	int errors = 0;
	for (int l = 0; l < RL_COUNT; l++) {
		struct restrict_chain *ch = &s->chains[l];
		ch->param = lists[l].param;
		ch->cls = lists[l].cls;
		char err[512];
		if (restrict_chain_parse(ch, pt_conf_list(c, ch->param), open_resources,
		                         err, sizeof err) < 0) {
			pt_conf_error(c, ch->param, "%s", err);
			errors++;
		}
		ch->param = lists[l].param;
		ch->cls = lists[l].cls;
	}
	if (errors == 0 && !has_relay_control(s)) {
		pt_conf_error(c, "smtpd_recipient_restrictions",
		              "in smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at "
		              "least one of reject_unauth_destination, defer_unauth_destination, "
		              "reject or defer");
		errors++;
	}
	char err[512];
	if (restrict_mynetworks_build(pt_conf_str(c, "mynetworks"), pt_conf_isset(c, "mynetworks"),
	                              pt_conf_str(c, "mynetworks_style"), &s->mynetworks,
	                              &s->style_warning, err, sizeof err) < 0) {
		pt_conf_error(c, "mynetworks", "%s", err);
		errors++;
	}
	if (errors == 0 && restrict_login_maps_open(s, c, open_resources) < 0)
		errors++;
	if (errors == 0 && lua_maps_open(s, c, open_resources) < 0)
		errors++;
	s->delay_reject = pt_conf_bool(c, "smtpd_delay_reject");
	s->reject_unlisted_recipient = pt_conf_bool(c, "smtpd_reject_unlisted_recipient");
	if (errors) {
		restrict_setup_unref(s);
		return NULL;
	}
	return s;
}
