/* libFuzzer target: the sandbox's step-counting pattern matcher
 * (lua_strlib.c) against Lua 5.4's own string library. Input: one byte
 * choosing find/match/gsub/gmatch and the start position, then pattern
 * NUL subject. Both must give the same results or the same error. Inputs
 * are kept small and with few quantifiers so that the stock matcher, which
 * has no budget, stays fast. */
#include <lauxlib.h>
#include <lualib.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "restrict/lua_int.h"

static lua_State *
new_state(int metered)
{
	lua_State *L = luaL_newstate();
	*(struct lua_call **)lua_getextraspace(L) = NULL;     /* no budget */
	luaL_openlibs(L);
	if (metered)
		lua_strlib_install(L);
	return L;
}

/* Run string.<fn>(s, p, init[, repl]) and render every result as text. */
static void
run(lua_State *L, const char *fn, const char *p, size_t lp, const char *s, size_t ls,
    int init, char *out, size_t outlen)
{
	lua_settop(L, 0);
	if (strcmp(fn, "gmatch") == 0) {
		/* collect up to 8 iterations inside a Lua chunk */
		luaL_loadstring(L, "local s, p, i = ... local r = {} local n = 0 "
		                   "for a, b in string.gmatch(s, p, i) do n = n + 1 "
		                   "r[#r + 1] = tostring(a) .. '/' .. tostring(b) "
		                   "if n == 8 then break end end return table.concat(r, ',')");
	} else {
		lua_getglobal(L, "string");
		lua_getfield(L, -1, fn);
		lua_remove(L, -2);
	}
	lua_pushlstring(L, s, ls);
	lua_pushlstring(L, p, lp);
	lua_pushinteger(L, init);
	int nargs = 3;
	if (strcmp(fn, "gsub") == 0) {
		lua_pushliteral(L, "<%0%1>");
		nargs = 4;
	}
	int st = lua_pcall(L, nargs, LUA_MULTRET, 0);
	size_t o = 0;
	int top = lua_gettop(L);
	o += (size_t)snprintf(out + o, outlen - o, "%d:", st);
	for (int i = 1; i <= top && o < outlen; i++) {
		size_t l = 0;
		const char *v = luaL_tolstring(L, i, &l);
		o += (size_t)snprintf(out + o, outlen - o, "[%.*s]", (int)(l > 200 ? 200 : l), v);
		lua_pop(L, 1);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static lua_State *stock, *ours;
	if (stock == NULL) {
		stock = new_state(0);
		ours = new_state(1);
	}
	if (size < 2 || size > 128)
		return 0;
	const char *fns[] = { "find", "match", "gsub", "gmatch" };
	const char *fn = fns[data[0] & 3];
	int init = ((data[0] >> 2) & 15) - 4;
	const char *p = (const char *)data + 1;
	const char *nul = memchr(p, '\0', size - 1);
	size_t lp = nul ? (size_t)(nul - p) : size - 1;
	const char *s = nul ? nul + 1 : "";
	size_t ls = nul ? size - 1 - lp - 1 : 0;
	size_t quant = 0;
	for (size_t i = 0; i < lp; i++)
		quant += p[i] == '*' || p[i] == '+' || p[i] == '-' || p[i] == '?';
	if (lp > 24 || ls > 48 || quant > 4)
		return 0;
	char a[4096], b[4096];
	run(stock, fn, p, lp, s, ls, init, a, sizeof a);
	run(ours, fn, p, lp, s, ls, init, b, sizeof b);
	if (strcmp(a, b) != 0) {
		fprintf(stderr, "string.%s differs:\n stock: %s\n ours:  %s\n", fn, a, b);
		abort();
	}
	return 0;
}
