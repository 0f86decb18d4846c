/* Test-only module that runs in the delivery agent and mail processes
 * only: its init and stop count their calls and the role they saw, behind
 * the service "test:roletest", so the loader test can see which roles ran
 * the hooks. */
#include "postern/module.h"
#include "postern/services.h"

struct roletest_counts {
	int inits, stops;
	unsigned last_role;
};

static struct roletest_counts counts;

static int
roletest_init(struct pt_ctx *ctx)
{
	counts.inits++;
	counts.last_role = ctx->role;
	return pt_service_register("test:roletest", &counts);
}

static void
roletest_stop(struct pt_ctx *ctx)
{
	counts.stops++;
	counts.last_role = ctx->role;
}

__attribute__((visibility("default"))) const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "roletest",
	.roles = PT_ROLE_DELIVERY | PT_ROLE_MAIL,
	.init = roletest_init,
	.stop = roletest_stop,
};
