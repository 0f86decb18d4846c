/* reject_sender_login_mismatch and its variants: which SASL login may use
 * which envelope sender, from smtpd_sender_login_maps ("address  login[,
 * login...]"), with Postfix's replies. The maps belong to the setup, so a
 * reload swaps them with everything else. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eval.h"
#include "postern/map.h"

#define LOGIN_ADDR_MAX 1024

static int
is_login_item(enum restrict_item_kind k)
{
	return k == RI_REJECT_SENDER_LOGIN_MISMATCH || k == RI_REJECT_KNOWN_SENDER_LOGIN_MISMATCH ||
	       k == RI_REJECT_AUTH_SENDER_LOGIN_MISMATCH || k == RI_REJECT_UNAUTH_SENDER_LOGIN_MISMATCH;
}

int
restrict_login_maps_open(struct restrict_setup *s, const struct pt_config *c, int open_resources)
{
	const struct pt_list *l = pt_conf_list(c, "smtpd_sender_login_maps");
	size_t n = l ? l->n : 0;
	int errors = 0;

	/* An item without a table would refuse every authenticated sender. */
	for (int li = 0; li < RL_COUNT && n == 0; li++)
		for (size_t i = 0; i < s->chains[li].n; i++)
			if (is_login_item(s->chains[li].v[i].kind)) {
				pt_conf_error(c, s->chains[li].param, "%s needs smtpd_sender_login_maps",
				              s->chains[li].v[i].name);
				return -1;
			}
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char path[1024], why[256];
		if (pt_map_spec_path(l->v[i], path, sizeof path, why, sizeof why) < 0) {
			pt_conf_error(c, "smtpd_sender_login_maps", "%s", why);
			errors++;
		}
	}
	if (errors || !open_resources)
		return errors ? -1 : 0;
	char why[400];
	s->login_maps = pt_map_list_open(l, PT_MAP_KEY_VALUE, "smtpd_sender_login_maps", why, sizeof why);
	if (s->login_maps == NULL) {
		pt_conf_error(c, "smtpd_sender_login_maps", "%s", why);
		return -1;
	}
	return 0;
}

void
restrict_login_maps_close(struct restrict_setup *s)
{
	pt_map_list_close(s->login_maps);
	s->login_maps = NULL;
}

/* The owners listed for sender: 1 (malloc'd value in *owners), 0 none,
 * -1 a table cannot be read. Keys as Postfix tries them: the address,
 * the bare local part when the domain is ours, then "@domain". */
static int
find_owners(const struct restrict_setup *s, const char *sender, char **owners)
{
	char local[LOGIN_ADDR_MAX + 1], domain[LOGIN_ADDR_MAX + 1];
	char keys[3][2 * LOGIN_ADDR_MAX + 3];
	int has_domain, nkeys = 0;

	if (restrict_addr_split(sender, local, sizeof local, domain, sizeof domain, &has_domain) < 0)
		return 0;
	for (char *p = local; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (has_domain) {
		RS_SNPRINTF(keys[nkeys], "%s@%s", local, domain);
		nkeys++;
		if (pt_domain_is_local(domain)) {
			RS_SNPRINTF(keys[nkeys], "%s", local);
			nkeys++;
		}
		RS_SNPRINTF(keys[nkeys], "@%s", domain);
		nkeys++;
	} else {
		RS_SNPRINTF(keys[nkeys], "%s", local);
		nkeys++;
	}
	for (int k = 0; k < nkeys; k++) {
		int tempfail = 0;
		char *v = pt_map_list_lookup(s->login_maps, keys[k], &tempfail, NULL);
		if (v) {
			*owners = v;
			return 1;
		}
		if (tempfail)
			return -1;
	}
	return 0;
}

static int
owned_by(const char *owners, const char *login)
{
	size_t ll = strlen(login);

	for (const char *p = owners; *p; ) {
		p += strspn(p, ", \t");
		size_t n = strcspn(p, ", \t");
		if (n == ll && n > 0 && strncasecmp(p, login, n) == 0)
			return 1;
		p += n;
	}
	return 0;
}

enum item_result
restrict_item_sender_login(struct restrict_eval *e, const struct restrict_item *it)
{
	const struct pt_policy_request *r = &e->req;
	const char *login = r->sasl_username && *r->sasl_username ? r->sasl_username : NULL;
	char *owners = NULL;

	if (r->sender == NULL || *r->sender == '\0')
		return R_NEXT;
	if ((it->kind == RI_REJECT_AUTH_SENDER_LOGIN_MISMATCH && !login) ||
	    (it->kind == RI_REJECT_UNAUTH_SENDER_LOGIN_MISMATCH && login))
		return R_NEXT;
	int found = find_owners(e->s, r->sender, &owners);
	if (found < 0) {
		RS_SNPRINTF(e->reply, "451 4.3.0 <%s>: Temporary lookup failure", r->sender);
		return R_REJECT;
	}
	if (found)
		RS_SNPRINTF(e->note, "owners %.300s", owners);
	enum item_result res = R_NEXT;
	if (login) {
		int mismatch = found ? !owned_by(owners, login)
		                     : it->kind != RI_REJECT_KNOWN_SENDER_LOGIN_MISMATCH;
		if (mismatch) {
			RS_SNPRINTF(e->reply, "553 5.7.1 <%s>: Sender address rejected: not owned by user %s",
			            r->sender, login);
			res = R_REJECT;
		}
	} else if (found) {
		RS_SNPRINTF(e->reply, "553 5.7.1 <%s>: Sender address rejected: not logged in as owner",
		            r->sender);
		res = R_REJECT;
	}
	free(owners);
	return res;
}
