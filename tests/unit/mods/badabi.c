/* Test-only module built for another ABI: the loader must refuse it. */
#include "postern/module.h"

__attribute__((visibility("default"))) const struct pt_module postern_module = {
	.abi = POSTERN_ABI + 41,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "badabi",
};
