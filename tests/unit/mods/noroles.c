/* Test-only module that declares no process role: the loader must refuse
 * it (its init would run nowhere). */
#include "postern/module.h"

__attribute__((visibility("default"))) const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "noroles",
};
