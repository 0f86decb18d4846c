/* Test-only module that needs the "hello" service (the hello module
 * provides it). */
#include "postern/module.h"

static const char *const deps[] = { "hello", 0 };
static const struct pt_param params[] = {
	{ .name = "needdep_value", .type = PT_INT, .def = "7", .doc = "test value" },
	{ 0 },
};

__attribute__((visibility("default"))) const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "needdep",
	.depends = deps,
	.params = params,
	.roles = PT_ROLE_WORKER,
};
