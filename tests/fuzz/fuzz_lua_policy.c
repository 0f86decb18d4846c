/* libFuzzer target: arbitrary text as a policy file. Loading compiles it
 * (text only), runs its chunk and its tests under small budgets; whatever
 * it does, it must end (refused or loaded) without crashing the host. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "restrict/restrict.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	if (path[0] == '\0') {
		struct restrict_lua_limits lim = { 1u << 20, 20000, 1000 };
		restrict_lua_set_limits(&lim);
		snprintf(path, sizeof path, "/tmp/fuzz_lua_policy.%d.lua", (int)getpid());
	}
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	char err[512];
	restrict_lua_validate(path, err, sizeof err);
	restrict_counters_clear();
	unlink(path);
	return 0;
}
