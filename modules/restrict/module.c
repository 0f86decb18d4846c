/* The restrict module's descriptor: Postfix's smtpd_*_restrictions
 * parameters and Lua policy limits, `postern check` validation, and the
 * restriction service the smtp module asks at each stage. */
#include <stdio.h>
#include <string.h>

#include "postern/log.h"
#include "postern/module.h"
#include "postern/services.h"
#include "restrict.h"


static void
apply_limits(const struct pt_config *c)
{
	struct restrict_lua_limits lim = {
		.memory = (size_t)pt_conf_int(c, "lua_policy_memory_limit"),
		.instructions = pt_conf_int(c, "lua_policy_instruction_limit"),
		.time_ms = pt_conf_int(c, "lua_policy_time_limit") * 1000,
	};
	restrict_lua_set_limits(&lim);
}

static void
warn_style(const struct restrict_setup *s, const struct pt_config *c)
{
	if (s->style_warning)
		pt_warn("%s:%d: mynetworks = %s names a mynetworks_style; using mynetworks_style = %s "
		        "(write mynetworks_style = %s, or list networks in mynetworks)",
		        pt_conf_file(c), pt_conf_line(c, "mynetworks"), pt_conf_str(c, "mynetworks"),
		        pt_conf_str(c, "mynetworks"), pt_conf_str(c, "mynetworks"));
}

static int
svc_evaluate(struct pt_loop *loop, const struct pt_policy_request *req,
             void (*done)(void *arg, const struct pt_verdict *v), void *arg)
{
	restrict_evaluate(NULL, loop, req, done, arg);
	return 0;
}

static const struct pt_restrict_ops restrict_ops = { svc_evaluate };

static int
restrict_init(struct pt_ctx *ctx)
{
	apply_limits(ctx->conf);
	struct restrict_setup *s = restrict_setup_build(ctx->conf, 1);
	if (s == NULL) {
		pt_error("restrict: the restriction lists cannot be set up");
		return -1;
	}
	if (strcmp(ctx->role ? ctx->role : "", "local") != 0)
		warn_style(s, ctx->conf);
	restrict_set_live_setup(s);
	pt_service_register(PT_SVC_RESTRICT, &restrict_ops);
	return 0;
}

static int
restrict_reload(struct pt_ctx *ctx)
{
	apply_limits(ctx->conf);
	struct restrict_setup *s = restrict_setup_build(ctx->conf, 1);
	if (s == NULL) {
		pt_error("restrict: reload refused, the previous restrictions stay in force");
		return -1;
	}
	warn_style(s, ctx->conf);
	restrict_set_live_setup(s);
	/* Re-read every policy; one that fails keeps its running version. */
	restrict_lua_reload_all();
	return 0;
}

static void
restrict_stop(struct pt_ctx *ctx)
{
	(void)ctx;
	restrict_set_live_setup(NULL);
	restrict_lua_shutdown();
}

/* Validate everything a reload would build, without touching the live
 * state: list syntax, map specs, mynetworks, and each Lua policy compiled
 * and run against its own tests in a scratch state. */
static int
restrict_check(const struct pt_config *c)
{
	apply_limits(c);
	struct restrict_setup *s = restrict_setup_build(c, 0);
	if (s == NULL)
		return 1;
	warn_style(s, c);
	int errors = 0;
	for (int l = 0; l < RL_COUNT; l++) {
		const struct restrict_chain *ch = &s->chains[l];
		for (size_t i = 0; i < ch->n; i++) {
			if (ch->v[i].kind != RI_CHECK_LUA_POLICY)
				continue;
			char err[512];
			if (restrict_lua_validate(ch->v[i].arg, err, sizeof err) < 0) {
				pt_conf_error(c, ch->param, "check_lua_policy %s: %s", ch->v[i].arg, err);
				errors++;
			}
		}
	}
	restrict_setup_unref(s);
	return errors ? 1 : 0;
}

POSTERN_MODULE_EXPORT const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "restrict",
	.depends = NULL,
	.params = restrict_params,
	.listeners = NULL,
	.init = restrict_init,
	.reload = restrict_reload,
	.stop = restrict_stop,
	.check = restrict_check,
};
