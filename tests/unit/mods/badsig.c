/* Test-only module with the right ABI number but another build signature. */
#include "postern/module.h"

__attribute__((visibility("default"))) const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = "abi=1,ptr=4,long=4",
	.name = "badsig",
};
