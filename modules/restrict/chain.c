/* Restriction lists: the item vocabulary, parsing a list value into items
 * (opening their maps and Lua policies), and the setup one config gives. */
#include <stdarg.h>
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

/* Edits (insert, delete, change, swap of neighbours) from a to b, cut
 * off at 3: only near misses make a suggestion. */
static int
near_miss(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int row[3][64];
	if (la >= 63 || lb >= 63 || (la > lb ? la - lb : lb - la) > 2)
		return 3;
	for (size_t j = 0; j <= lb; j++)
		row[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		int *cur = row[i % 3], *up = row[(i - 1) % 3], *up2 = row[(i + 1) % 3];
		cur[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int v = up[j - 1] + (a[i - 1] != b[j - 1]);
			if (up[j] + 1 < v)
				v = up[j] + 1;
			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && up2[j - 2] + 1 < v)
				v = up2[j - 2] + 1;
			cur[j] = v;
		}
	}
	return row[la % 3][lb] < 3 ? row[la % 3][lb] : 3;
}

/* Append one problem to err ("; " between them): a list may have several. */
static void
add_problem(char *err, size_t errlen, int *problems, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
add_problem(char *err, size_t errlen, int *problems, const char *fmt, ...)
{
	size_t used = *problems ? strlen(err) : 0;
	if (*problems && used + 2 < errlen) {
		memcpy(err + used, "; ", 3);
		used += 2;
	}
	va_list ap;
	va_start(ap, fmt);
	if (used < errlen)
		vsnprintf(err + used, errlen - used, fmt, ap);
	va_end(ap);
	(*problems)++;
}

int
restrict_chain_parse(struct restrict_chain *ch, const struct pt_list *words,
                     int open_resources, char *err, size_t errlen)
{
	int problems = 0;
	ch->n = 0;
	ch->v = words->n ? calloc(words->n, sizeof *ch->v) : NULL;
	if (words->n && ch->v == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* Every item is looked at, so one `postern check` names every typo;
	 * the items that parsed stay in ch (for the checks of their own). */
	for (size_t w = 0; w < words->n; w++) {
		const char *word = words->v[w];
		size_t k, best = 0;
		int best_d = 3;
		for (k = 0; k < sizeof items / sizeof items[0]; k++) {
			if (strcmp(items[k].name, word) == 0)
				break;
			int d = near_miss(word, items[k].name);
			if (d < best_d) {
				best_d = d;
				best = k;
			}
		}
		if (k == sizeof items / sizeof items[0]) {
			if (best_d < 3)
				add_problem(err, errlen, &problems, "unknown restriction \"%.80s\" (did you mean \"%s\"?)",
				            word, items[best].name);
			else
				add_problem(err, errlen, &problems, "unknown restriction \"%.80s\"", word);
			continue;
		}
		if (items[k].arg && w + 1 >= words->n) {
			add_problem(err, errlen, &problems, "%s needs an argument", word);
			continue;
		}
		struct restrict_item *it = &ch->v[ch->n++];
		it->kind = items[k].kind;
		it->name = items[k].name;
		if (!items[k].arg)
			continue;
		const char *arg = words->v[++w];
		if ((it->arg = strdup(arg)) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		char why[256];
		int bad = 0;
		switch (it->kind) {
		case RI_REJECT_RBL_CLIENT:
			if ((bad = !rbl_arg_ok(arg)))
				add_problem(err, errlen, &problems, "reject_rbl_client: bad DNSBL domain \"%.80s\"", arg);
			break;
		case RI_CHECK_LUA_POLICY:
			if ((bad = arg[0] != '/'))
				add_problem(err, errlen, &problems, "check_lua_policy: \"%.80s\" is not an absolute path",
				            arg);
			else if ((bad = open_resources && (it->lua = restrict_lua_open(arg, why, sizeof why)) == NULL))
				add_problem(err, errlen, &problems, "check_lua_policy %s: %s", arg, why);
			break;
		default: {
			char path[1024];
			if ((bad = pt_map_spec_path(arg, path, sizeof path, why, sizeof why) < 0))
				add_problem(err, errlen, &problems, "%s: %s", it->name, why);
			else if ((bad = open_resources &&
			                (it->map = pt_map_open(arg, PT_MAP_KEY_VALUE, why, sizeof why)) == NULL))
				add_problem(err, errlen, &problems, "%s %s: %s", it->name, arg, why);
			break;
		}
		}
		if (bad) {
			item_free(it);
			memset(it, 0, sizeof *it);
			ch->n--;
		}
	}
	return problems ? -1 : 0;
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
	/* Without open_resources these only check names: worth doing after
	 * other errors too (one `postern check` reports everything). */
	if ((errors == 0 || !open_resources) && restrict_login_maps_open(s, c, open_resources) < 0)
		errors++;
	if ((errors == 0 || !open_resources) && lua_maps_open(s, c, open_resources) < 0)
		errors++;
	s->delay_reject = pt_conf_bool(c, "smtpd_delay_reject");
	s->reject_unlisted_recipient = pt_conf_bool(c, "smtpd_reject_unlisted_recipient");
	s->check_errors = errors;
	if (errors && open_resources) {
		restrict_setup_unref(s);
		return NULL;
	}
	return s;
}
