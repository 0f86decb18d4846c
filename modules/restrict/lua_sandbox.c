/* The Lua sandbox: a state with a memory cap (counting allocator), an
 * instruction and time budget per call (count hook), text chunks only, and
 * an _ENV holding the safe parts of the standard library. pcall and
 * xpcall are replaced so that a budget overrun cannot be caught. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_int.h"

#define HOOK_STEP 1000

static void *
budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct lua_budget_mem *m = ud;
	if (ptr == NULL)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		m->used -= osize;
		return NULL;
	}
	if (nsize > osize && m->used - osize + nsize > m->limit) {
		m->hit = 1;
		return NULL;
	}
	void *p = realloc(ptr, nsize);
	if (p != NULL)
		m->used = m->used - osize + nsize;
	return p;
}

struct lua_call *
lua_sandbox_call(lua_State *L)
{
	return *(struct lua_call **)lua_getextraspace(L);
}

static long long
elapsed_ms(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000LL + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* Raise the overrun again: once a budget is spent, nothing in the policy
 * may go on running. */
static int
rethrow_abort(lua_State *L, struct lua_call *call)
{
	lua_pushstring(L, call->abort_msg);
	return lua_error(L);
}

static void
budget_hook(lua_State *L, lua_Debug *ar)
{
	struct lua_call *call = lua_sandbox_call(L);
	if (call == NULL)
		return;
	if (ar->event == LUA_HOOKRET) {
		lua_Debug up;
		if (!lua_getstack(L, 1, &up) && lua_getinfo(L, "l", ar))
			call->ret_line = ar->currentline;
		return;
	}
	call->instr += HOOK_STEP;
	const char *what = NULL;
	if (call->aborted)
		what = "";
	else if (call->instr > call->instr_limit)
		what = "instruction budget exceeded";
	else if (call->time_ms > 0 && elapsed_ms(&call->start) > call->time_ms)
		what = "time limit exceeded";
	else if (call->pol->mem.hit)
		what = "memory limit exceeded";
	if (what == NULL)
		return;
	if (!call->aborted) {
		call->aborted = 1;
		lua_Debug where;
		if (lua_getstack(L, 0, &where) && lua_getinfo(L, "Sl", &where) && where.currentline > 0)
			RS_SNPRINTF(call->abort_msg, "%s:%d: %s", where.short_src,
			         where.currentline, what);
		else
			RS_SNPRINTF(call->abort_msg, "%s: %s", call->pol->path, what);
	}
	rethrow_abort(L, call);
}

static int
finish_pcall(lua_State *L, int status, lua_KContext extra)
{
	struct lua_call *call = lua_sandbox_call(L);
	if (call && !call->aborted && call->pol->mem.hit) {
		call->aborted = 1;
		RS_SNPRINTF(call->abort_msg, "%s: memory limit exceeded",
		         call->pol->path);
	}
	if (call && call->aborted)
		return rethrow_abort(L, call);
	if (status != LUA_OK && status != LUA_YIELD) {
		lua_pushboolean(L, 0);
		lua_pushvalue(L, -2);
		return 2;
	}
	return lua_gettop(L) - (int)extra;
}

static int
sandbox_pcall(lua_State *L)
{
	luaL_checkany(L, 1);
	lua_pushboolean(L, 1);
	lua_insert(L, 1);
	int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finish_pcall);
	return finish_pcall(L, status, 0);
}

static int
sandbox_xpcall(lua_State *L)
{
	int n = lua_gettop(L);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushboolean(L, 1);
	lua_pushvalue(L, 1);
	lua_rotate(L, 3, 2);          /* f, handler, true, f, args... */
	int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_pcall);
	return finish_pcall(L, status, 2);
}

/* Finalizers would run outside any call's budget: refuse __gc. */
static int
sandbox_setmetatable(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	if (lua_type(L, 2) == LUA_TTABLE && lua_getfield(L, 2, "__gc") != LUA_TNIL)
		return luaL_error(L, "__gc metamethods are not allowed in policies");
	lua_settop(L, 2);
	if (lua_getmetatable(L, 1) && lua_getfield(L, -1, "__metatable") != LUA_TNIL)
		return luaL_error(L, "cannot change a protected metatable");
	lua_settop(L, 2);
	luaL_argexpected(L, lua_isnoneornil(L, 2) || lua_istable(L, 2), 2, "nil or table");
	lua_setmetatable(L, 1);
	return 1;
}

static int
sandbox_print(lua_State *L)
{
	/* print() goes to the mail log, like postern.log("info", ...). */
	int n = lua_gettop(L);       /* before luaL_buffinit's placeholder */
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (int i = 1; i <= n; i++) {
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
		if (i < n)
			luaL_addchar(&b, '\t');
	}
	luaL_pushresult(&b);
	lua_getglobal(L, "postern");
	lua_getfield(L, -1, "log");
	lua_pushstring(L, "info");
	lua_pushvalue(L, -4);
	lua_call(L, 2, 0);
	return 0;
}

static void
copy_fields(lua_State *L, int from, const char *const *names)
{
	for (; *names; names++) {
		lua_getfield(L, from, *names);
		lua_setfield(L, -2, *names);
	}
}

/* Registry key of the sandbox environment table. */
static const char env_key = 'E';

static void
build_env(lua_State *L)
{
	static const char *const base[] = { "assert", "error", "ipairs", "next", "pairs",
		"rawequal", "rawget", "rawlen", "rawset", "select", "tonumber", "tostring", "type",
		"getmetatable", "_VERSION", NULL };
	static const char *const os_safe[] = { "time", "clock", "date", "difftime", NULL };
	static const char *const string_safe[] = { "byte", "char", "find", "format", "gmatch",
		"gsub", "len", "lower", "match", "rep", "reverse", "sub", "upper", "pack",
		"packsize", "unpack", NULL };

	lua_newtable(L);                              /* env */
	int env = lua_gettop(L);
	lua_pushglobaltable(L);
	int g = lua_gettop(L);
	lua_pushvalue(L, env);
	copy_fields(L, g, base);
	lua_pop(L, 1);
	lua_pushcfunction(L, sandbox_pcall);
	lua_setfield(L, env, "pcall");
	lua_pushcfunction(L, sandbox_xpcall);
	lua_setfield(L, env, "xpcall");
	lua_pushcfunction(L, sandbox_setmetatable);
	lua_setfield(L, env, "setmetatable");
	lua_pushcfunction(L, sandbox_print);
	lua_setfield(L, env, "print");

	/* Library tables: the policy gets its own copies, so the shared
	 * string metatable (string methods) is the only route to string. */
	lua_getfield(L, g, "string");
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");                  /* no bytecode out */
	lua_newtable(L);
	copy_fields(L, lua_gettop(L) - 1, string_safe);
	lua_setfield(L, env, "string");
	lua_pop(L, 1);
	static const char *const libs[] = { "table", "math", "utf8", NULL };
	for (const char *const *lib = libs; *lib; lib++) {
		lua_getfield(L, g, *lib);
		lua_newtable(L);
		lua_pushnil(L);
		while (lua_next(L, -3)) {
			lua_pushvalue(L, -2);
			lua_insert(L, -2);
			lua_settable(L, -4);
		}
		lua_setfield(L, env, *lib);
		lua_pop(L, 1);
	}
	lua_getfield(L, g, "os");
	lua_newtable(L);
	copy_fields(L, lua_gettop(L) - 1, os_safe);
	lua_setfield(L, env, "os");
	lua_pop(L, 1);
	lua_getfield(L, g, "postern");
	lua_setfield(L, env, "postern");
	lua_pushvalue(L, env);
	lua_setfield(L, env, "_G");
	lua_pop(L, 1);                                /* globals */
	lua_rawsetp(L, LUA_REGISTRYINDEX, &env_key);  /* pops env */
}

static int
open_all(lua_State *L)
{
	luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
	luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
	luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
	luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
	luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
	luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 1);
	luaL_requiref(L, "postern", lua_lib_open_postern, 1);
	lua_settop(L, 0);
	/* Hide the shared string metatable: getmetatable('') must not hand
	 * out the real string library for rewriting. */
	lua_pushliteral(L, "");
	if (lua_getmetatable(L, -1)) {
		lua_pushliteral(L, "protected");
		lua_setfield(L, -2, "__metatable");
	}
	lua_settop(L, 0);
	build_env(L);
	return 0;
}

lua_State *
lua_sandbox_new(struct lua_budget_mem *mem)
{
	lua_State *L = lua_newstate(budget_alloc, mem);
	if (L == NULL)
		return NULL;
	*(struct lua_call **)lua_getextraspace(L) = NULL;
	lua_pushcfunction(L, open_all);
	if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
		lua_close(L);
		return NULL;
	}
	/* The collector never stops: `collectgarbage` is not given out. */
	lua_gc(L, LUA_GCGEN, 0, 0);
	return L;
}

int
lua_sandbox_load(lua_State *L, const char *text, size_t len, const char *path,
                 char *err, size_t errlen)
{
	char chunk[1100];
	RS_SNPRINTF(chunk, "@%s", path);
	/* Mode "t": bytecode could break the VM's invariants. */
	if (luaL_loadbufferx(L, text, len, chunk, "t") != LUA_OK) {
		snprintf(err, errlen, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "load error");
		lua_pop(L, 1);
		return -1;
	}
	lua_rawgetp(L, LUA_REGISTRYINDEX, &env_key);
	if (lua_setupvalue(L, -2, 1) == NULL)
		lua_pop(L, 1);
	return 0;
}

void
lua_sandbox_arm(struct lua_call *call)
{
	*(struct lua_call **)lua_getextraspace(call->co) = call;
	lua_sethook(call->co, budget_hook, LUA_MASKCOUNT | LUA_MASKRET, HOOK_STEP);
	clock_gettime(CLOCK_MONOTONIC, &call->start);
}

int
lua_sandbox_resume(struct lua_call *call, int nargs, int *nres)
{
	call->pol->mem.hit = 0;
	int status = lua_resume(call->co, call->pol->L, nargs, nres);
	if (status != LUA_OK && status != LUA_YIELD && !call->aborted && call->pol->mem.hit) {
		call->aborted = 1;
		RS_SNPRINTF(call->abort_msg, "%s: memory limit exceeded",
		         call->pol->path);
	}
	return status;
}
