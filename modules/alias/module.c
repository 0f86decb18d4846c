/* The alias module's descriptor: alias_maps and friends, the map check
 * for `postern check`, and the alias service (expand, exists, deliver). */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "postern/log.h"
#include "postern/module.h"
#include "postern/services.h"
#include "alias.h"

static const struct pt_param alias_params[] = {
	{ "alias_maps", PT_LIST, "hash:/etc/aliases", NULL,
	  "alias tables local delivery consults, in order (aliases(5) text files)", 0, 0 },
	{ "alias_database", PT_LIST, "hash:/etc/aliases", NULL,
	  "alias tables that newaliases checks and reloads", 0, 0 },
	{ "command_time_limit", PT_TIME, "1000s", NULL,
	  "longest run time of a |command alias destination", 1, 86400 },
	{ 0 },
};

/* The configuration of this process's generation. */
static struct alias_conf *alias_live;

static void
alias_conf_free(struct alias_conf *c)
{
	if (!c)
		return;
	pt_map_list_close(c->maps);
	free(c);
}

static struct alias_conf *
alias_conf_build(const struct pt_config *conf)
{
	struct alias_conf *c = calloc(1, sizeof(*c));
	char err[400];
	if (!c) {
		pt_error("alias: out of memory");
		return NULL;
	}
	c->maps = pt_map_list_open(pt_conf_list(conf, "alias_maps"), PT_MAP_ALIASES, "alias_maps", err, sizeof(err));
	if (!c->maps) {
		pt_error("%s", err);
		free(c);
		return NULL;
	}
	snprintf(c->delim, sizeof(c->delim), "%s", pt_conf_str(conf, "recipient_delimiter"));
	c->command_time_limit = (unsigned)pt_conf_int(conf, "command_time_limit");
	c->privs_uid = 65534;
	c->privs_gid = 65534;
	const char *privs = pt_conf_str(conf, "default_privs");
	char buf[2048];
	struct passwd pw, *res = NULL;
	if (getpwnam_r(privs, &pw, buf, sizeof(buf), &res) == 0 && res) {
		c->privs_uid = pw.pw_uid;
		c->privs_gid = pw.pw_gid;
	}
	return c;
}

static int
svc_expand(const char *local, void (*emit)(void *arg, const char *target,
           enum pt_alias_target kind, const char *owner), void *arg, struct pt_status *st)
{
	if (!alias_live) {
		pt_status_set(st, 451, "4.3.0", "alias module not configured");
		return -1;
	}
	return alias_expand(alias_live, local, emit, arg, st);
}

static int
svc_exists(const char *local)
{
	return alias_live ? alias_exists(alias_live, local) : -1;
}

static void
svc_deliver_special(const struct pt_delivery *d, enum pt_alias_target kind, const char *target,
                    struct pt_status *st)
{
	if (!alias_live) {
		pt_status_set(st, 451, "4.3.0", "alias module not configured");
		return;
	}
	alias_deliver_special(alias_live, d, kind, target, st);
}

static const struct pt_alias_ops alias_ops = { svc_expand, svc_exists, svc_deliver_special };

static int
alias_init(struct pt_ctx *ctx)
{
	struct alias_conf *c = alias_conf_build(ctx->conf);
	if (!c)
		return -1;
	alias_live = c;
	return pt_service_register(PT_SVC_ALIAS, &alias_ops);
}

static void
alias_stop(struct pt_ctx *ctx)
{
	(void)ctx;
	alias_conf_free(alias_live);
	alias_live = NULL;
}

struct alias_check_ctx {
	const struct pt_config *conf;
	const char *param;
};

static void
alias_check_report(void *arg, int is_error, const char *msg)
{
	struct alias_check_ctx *cc = arg;
	if (is_error)
		pt_conf_error(cc->conf, cc->param, "%s", msg);
	else
		pt_warn("%s", msg);
}

static int
alias_in_list(const struct pt_list *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return 1;
	return 0;
}

/* `postern check`, start and reload: the alias files must exist and
 * parse. A missing file is an error as it is at delivery time, where every
 * local recipient waits (deferred) until it appears; the server neither
 * starts nor reloads with one. */
static int
alias_check(const struct pt_config *conf)
{
	static const char *const names[] = { "alias_maps", "alias_database" };
	int bad = 0;
	for (size_t k = 0; k < 2; k++) {
		const struct pt_list *l = pt_conf_list(conf, names[k]);
		struct alias_check_ctx cc = { conf, names[k] };
		for (size_t i = 0; i < l->n; i++) {
			char path[4096], err[300];
			if (pt_map_spec_path(l->v[i], path, sizeof(path), err, sizeof(err)) < 0) {
				pt_conf_error(conf, names[k], "%s: %s", names[k], err);
				bad = 1;
				continue;
			}
			if (k == 1 && alias_in_list(pt_conf_list(conf, "alias_maps"), l->v[i]))
				continue;     /* the same file was just checked */
			if (access(path, F_OK) < 0) {
				/* alias_database is only newaliases' business: its
				 * default naming no file is no error. */
				if (k == 1 && !pt_conf_isset(conf, names[k]))
					continue;
				if (k == 0)
					pt_conf_error(conf, names[k], "%s: %s does not exist: local delivery would "
					              "defer every recipient until it does (create it; an empty file "
					              "is a valid table)", names[k], path);
				else
					pt_conf_error(conf, names[k], "%s: %s does not exist: newaliases would fail "
					              "(create it; an empty file is a valid table)", names[k], path);
				bad = 1;
				continue;
			}
			if (pt_map_check(l->v[i], PT_MAP_ALIASES, alias_check_report, &cc, NULL) != 0)
				bad = 1;
		}
	}
	return bad ? -1 : 0;
}

POSTERN_MODULE_EXPORT const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "alias",
	.depends = NULL,
	.params = alias_params,
	.listeners = NULL,
	/* Expansion where the queue resolves and for policy tests; /file and
	 * |command targets in the delivery agent. */
	.roles = PT_ROLE_WORKER | PT_ROLE_DELIVERY | PT_ROLE_CLI,
	.init = alias_init,
	.stop = alias_stop,
	.check = alias_check,
};
