/* libFuzzer target: the action a Lua policy returns. The first byte picks
 * how the policy hands the fuzz bytes back (as is, uppercased, or after a
 * gsub), so the Lua string -> action path sees every byte sequence; a
 * result is either an error (451 4.3.5) or an action that parses. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "restrict/restrict.h"

static struct restrict_lua_slot *slot;

static void
done(void *arg, const struct restrict_lua_result *r)
{
	*(int *)arg = 1;
	if (!r->error && (r->action.kind < RESTRICT_ACT_DUNNO || r->action.kind > RESTRICT_ACT_DISCARD))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (slot == NULL) {
		char path[] = "/tmp/fuzz_lua_action.XXXXXX";
		int fd = mkstemp(path);
		static const char text[] =
			"return function(a)\n"
			"  local mode, s = a.helo_name, a.sender\n"
			"  if mode == '1' then return s:upper() end\n"
			"  if mode == '2' then return (s:gsub('%s+', ' ')) end\n"
			"  return s\n"
			"end\n";
		if (fd < 0 || write(fd, text, sizeof text - 1) != (ssize_t)(sizeof text - 1))
			abort();
		close(fd);
		char err[256];
		slot = restrict_lua_open(path, err, sizeof err);
		unlink(path);
		if (slot == NULL)
			abort();
	}
	if (size == 0)
		return 0;
	char mode[2] = { (char)('0' + data[0] % 3), '\0' };
	char *s = malloc(size);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	struct pt_policy_request q;
	memset(&q, 0, sizeof q);
	q.stage = PT_STAGE_RCPT;
	q.helo_name = mode;
	q.sender = s;
	int called = 0;
	restrict_lua_call(slot, NULL, &q, done, &called);
	if (!called)
		abort();
	free(s);
	return 0;
}
