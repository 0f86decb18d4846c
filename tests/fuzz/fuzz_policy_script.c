/* libFuzzer target: `postern policy test --script` files through the
 * parser; every step it returns must be well-formed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy_script.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pt_pscript_step *v;
	size_t n;
	char err[256];
	if (pt_policy_script_parse((const char *)data, size, &v, &n, err, sizeof err) < 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (memchr(v[i].arg, '\0', sizeof v[i].arg) == NULL ||
		    memchr(v[i].expect, '\0', sizeof v[i].expect) == NULL)
			abort();
		if (v[i].has_expect && (v[i].expect[0] < '0' || v[i].expect[0] > '9'))
			abort();
	}
	free(v);
	return 0;
}
