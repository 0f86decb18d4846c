/* The Lua sandbox: a state with a memory cap (counting allocator), an
 * instruction and time budget per call (count hook, plus the C functions
 * of lua_strlib.c charging their work), text chunks only, an _ENV holding
 * the safe parts of the standard library, and a fresh global table for
 * every call.
 *
 * Once a budget is spent the call is aborted: the hook then fires before
 * every instruction and raises again, and pcall/xpcall re-raise instead
 * of catching, so nothing of the policy runs any more. xpcall's message
 * handler runs after the stack unwound, as an ordinary (hooked) call:
 * Lua runs a real message handler from inside the error, where an error
 * raised by the count hook would re-enter the handler with hooks off. */
#include <lauxlib.h>
#include <limits.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_int.h"

#define HOOK_STEP 1000
/* An allocation burst this large moves the next hook up to the next
 * instruction, so copying big strings in a loop cannot outrun the clock;
 * every ALLOC_PER_UNIT bytes count as one instruction. */
#define ALLOC_FORCE_HOOK (256 * 1024)
#define ALLOC_PER_UNIT 64
#define HOOK_MASK (LUA_MASKCOUNT | LUA_MASKRET)
/* Nested pcall/xpcall levels. An error caught inside a coroutine is
 * recovered from lua_resume's level, so the C stack limit does not bound
 * this nesting, and unwinding N levels (an overrun re-raised at each)
 * costs O(N^2) in C, between two instructions. */
#define PCALL_DEPTH_MAX 100

static void budget_hook(lua_State *L, lua_Debug *ar);

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
	if (p != NULL) {
		m->used = m->used - osize + nsize;
		if (nsize > osize) {
			m->grown += nsize - osize;
			/* lua_sethook only stores fields (lua.c calls it from a
			 * signal handler), so it is safe in the middle of the VM. */
			if (m->grown >= ALLOC_FORCE_HOOK && m->running != NULL && !m->forced) {
				m->forced = 1;
				lua_sethook(m->running, budget_hook, HOOK_MASK, 1);
			}
		}
	}
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
abort_call(lua_State *L, struct lua_call *call, const char *what)
{
	call->aborted = 1;
	lua_Debug where;
	if (lua_getstack(L, 0, &where) && lua_getinfo(L, "Sl", &where) && where.currentline > 0)
		RS_SNPRINTF(call->abort_msg, "%s:%d: %s", where.short_src, where.currentline, what);
	else if (lua_getstack(L, 1, &where) && lua_getinfo(L, "Sl", &where) && where.currentline > 0)
		RS_SNPRINTF(call->abort_msg, "%s:%d: %s", where.short_src, where.currentline, what);
	else
		RS_SNPRINTF(call->abort_msg, "%s: %s", call->pol->path, what);
	/* From now on the hook raises before every instruction. */
	lua_sethook(call->co, budget_hook, HOOK_MASK, 1);
}

/* Raise if a budget is spent (or was already). */
static void
check_budget(lua_State *L, struct lua_call *call)
{
	struct lua_budget_mem *m = &call->pol->mem;
	if (m->grown > 0) {
		call->instr += (long long)(m->grown / ALLOC_PER_UNIT);
		m->grown = 0;
	}
	call->unclocked = 0;
	const char *what = NULL;
	if (call->aborted)
		what = "";
	else if (call->instr > call->instr_limit)
		what = "instruction budget exceeded";
	else if (call->time_ms > 0 && elapsed_ms(&call->start) > call->time_ms)
		what = "time limit exceeded";
	else if (m->hit)
		what = "memory limit exceeded";
	if (what == NULL)
		return;
	if (!call->aborted)
		abort_call(L, call, what);
	rethrow_abort(L, call);
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
	struct lua_budget_mem *m = &call->pol->mem;
	if (m->forced) {
		/* Moved up by an allocation: back to the normal step. */
		m->forced = 0;
		call->instr += 1;
		if (!call->aborted)
			lua_sethook(L, budget_hook, HOOK_MASK, HOOK_STEP);
	} else {
		call->instr += call->aborted ? 1 : HOOK_STEP;
	}
	check_budget(L, call);
}

void
lua_sandbox_charge(lua_State *L, long long units)
{
	struct lua_call *call = lua_sandbox_call(L);
	if (call == NULL)
		return;
	if (units > LLONG_MAX / 4)
		units = LLONG_MAX / 4;
	call->instr += units;
	call->unclocked += units;
	if (call->aborted || call->instr > call->instr_limit || call->unclocked >= HOOK_STEP ||
	    call->pol->mem.hit)
		check_budget(L, call);
}

/* After a protected call: an overrun or a memory error goes on up. */
static void
reraise_overrun(lua_State *L)
{
	struct lua_call *call = lua_sandbox_call(L);
	if (call && !call->aborted && call->pol->mem.hit)
		abort_call(L, call, "memory limit exceeded");
	if (call && call->aborted)
		rethrow_abort(L, call);
}

static void
pcall_enter(lua_State *L)
{
	struct lua_call *call = lua_sandbox_call(L);
	if (call != NULL && ++call->pcall_depth > PCALL_DEPTH_MAX) {
		call->pcall_depth--;
		luaL_error(L, "more than %d nested pcall/xpcall", PCALL_DEPTH_MAX);
	}
}

/* Every way out of a protected call passes here (return or continuation). */
static void
pcall_leave(lua_State *L)
{
	struct lua_call *call = lua_sandbox_call(L);
	if (call != NULL && call->pcall_depth > 0)
		call->pcall_depth--;
}

static int
finish_pcall(lua_State *L, int status, lua_KContext extra)
{
	pcall_leave(L);
	reraise_overrun(L);
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
	pcall_enter(L);
	int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finish_pcall);
	return finish_pcall(L, status, 0);
}

/* xpcall(f, handler, ...): stack f, handler, then what f returned or its
 * error; the handler gets the error after the unwinding. */
static int
xpcall_handled(lua_State *L, int status, lua_KContext ctx)
{
	(void)status;
	(void)ctx;
	pcall_leave(L);
	reraise_overrun(L);
	/* false, then the handler's result (or the error it raised) */
	lua_pushboolean(L, 0);
	lua_insert(L, -2);
	return 2;
}

static int
xpcall_called(lua_State *L, int status, lua_KContext ctx)
{
	(void)ctx;
	pcall_leave(L);
	reraise_overrun(L);
	if (status == LUA_OK || status == LUA_YIELD) {
		lua_pushboolean(L, 1);
		lua_replace(L, 1);
		lua_remove(L, 2);
		return lua_gettop(L);
	}
	lua_settop(L, 3);                     /* f, handler, error */
	lua_pushvalue(L, 2);
	lua_insert(L, 3);                     /* f, handler, handler, error */
	pcall_enter(L);
	int st = lua_pcallk(L, 1, 1, 0, 0, xpcall_handled);
	return xpcall_handled(L, st, 0);
}

static int
sandbox_xpcall(lua_State *L)
{
	int n = lua_gettop(L);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushvalue(L, 1);
	lua_rotate(L, 3, 1);                  /* f, handler, f, args... */
	pcall_enter(L);
	int status = lua_pcallk(L, n - 2, LUA_MULTRET, 0, 0, xpcall_called);
	return xpcall_called(L, status, 0);
}

/* ---- read-only tables ----
 * The libraries and, after the chunk ran, the policy's globals are shared
 * by every call: they are turned in place into empty tables whose
 * metatable reads from a hidden copy and refuses writes. */

static int
frozen_newindex(lua_State *L)
{
	return luaL_error(L, "attempt to modify a read-only table");
}

static int
frozen_len(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)lua_rawlen(L, lua_upvalueindex(1)));
	return 1;
}

static int
frozen_iter(lua_State *L)
{
	lua_settop(L, 2);
	if (lua_next(L, lua_upvalueindex(1)))
		return 2;
	lua_pushnil(L);
	return 1;
}

static int
frozen_pairs(lua_State *L)
{
	lua_pushvalue(L, lua_upvalueindex(1));   /* the iterator */
	lua_pushvalue(L, 1);
	lua_pushnil(L);
	return 3;
}

static int
is_frozen(lua_State *L, int idx)
{
	if (!lua_getmetatable(L, idx))
		return 0;
	lua_pushliteral(L, "__newindex");
	lua_rawget(L, -2);
	int r = lua_tocfunction(L, -1) == frozen_newindex;
	lua_pop(L, 2);
	return r;
}

/* Make the table at idx read-only (runs protected: it allocates). */
static void
freeze(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	if (is_frozen(L, idx))
		return;
	lua_newtable(L);                              /* hidden */
	int hidden = lua_gettop(L);
	if (lua_getmetatable(L, idx))
		lua_setmetatable(L, hidden);          /* keeps an __index chain */
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_rawset(L, hidden);
	}
	/* Clearing existing fields during traversal is allowed. */
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		lua_pushvalue(L, -1);
		lua_pushnil(L);
		lua_rawset(L, idx);
	}
	lua_createtable(L, 0, 5);
	lua_pushvalue(L, hidden);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, frozen_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushvalue(L, hidden);
	lua_pushcclosure(L, frozen_len, 1);
	lua_setfield(L, -2, "__len");
	lua_pushvalue(L, hidden);
	lua_pushcclosure(L, frozen_iter, 1);
	lua_pushcclosure(L, frozen_pairs, 1);
	lua_setfield(L, -2, "__pairs");
	lua_pushliteral(L, "read-only");
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, idx);
	lua_settop(L, hidden - 1);
}

static int
sandbox_rawset(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checkany(L, 2);
	luaL_checkany(L, 3);
	if (is_frozen(L, 1))
		return luaL_error(L, "attempt to modify a read-only table");
	lua_settop(L, 3);
	lua_rawset(L, 1);
	return 1;
}

/* Finalizers would run outside any call's budget: refuse __gc. */
static int
sandbox_setmetatable(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	if (lua_type(L, 2) == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "__gc metamethods are not allowed in policies");
	}
	lua_settop(L, 2);
	if (lua_getmetatable(L, 1)) {
		lua_pushliteral(L, "__metatable");
		if (lua_rawget(L, -2) != LUA_TNIL)
			return luaL_error(L, "cannot change a protected metatable");
	}
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

/* Registry keys: the sandbox environment (the chunk's _ENV, sealed after
 * load) and the metatable of every call's global table. */
static const char env_key = 'E';
static const char call_mt_key = 'M';

static void
build_env(lua_State *L)
{
	static const char *const base[] = { "assert", "error", "ipairs", "next", "pairs",
		"rawequal", "rawget", "rawlen", "select", "tonumber", "tostring", "type",
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
	static const luaL_Reg own[] = { { "pcall", sandbox_pcall }, { "xpcall", sandbox_xpcall },
		{ "setmetatable", sandbox_setmetatable }, { "rawset", sandbox_rawset },
		{ "print", sandbox_print }, { NULL, NULL } };
	lua_pushvalue(L, env);
	luaL_setfuncs(L, own, 0);
	lua_pop(L, 1);

	/* Library tables: the policy gets its own read-only copies, so the
	 * shared string metatable (string methods) is the only route to the
	 * real string table, and it is hidden. */
	lua_getfield(L, g, "string");
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");                  /* no bytecode out */
	lua_newtable(L);
	copy_fields(L, lua_gettop(L) - 1, string_safe);
	freeze(L, -1);
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
		freeze(L, -1);
		lua_setfield(L, env, *lib);
		lua_pop(L, 1);
	}
	lua_getfield(L, g, "os");
	lua_newtable(L);
	copy_fields(L, lua_gettop(L) - 1, os_safe);
	freeze(L, -1);
	lua_setfield(L, env, "os");
	lua_pop(L, 1);
	lua_getfield(L, g, "postern");
	freeze(L, -1);
	lua_setfield(L, env, "postern");
	lua_pushvalue(L, env);
	lua_setfield(L, env, "_G");
	/* Every call's globals: reads fall through to env, the metatable is
	 * out of reach (setmetatable/getmetatable see "protected"). */
	lua_createtable(L, 0, 2);
	lua_pushvalue(L, env);
	lua_setfield(L, -2, "__index");
	lua_pushliteral(L, "protected");
	lua_setfield(L, -2, "__metatable");
	lua_rawsetp(L, LUA_REGISTRYINDEX, &call_mt_key);
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
	/* Into the real tables, so that string methods ("x"):find() get the
	 * metered versions too. */
	lua_strlib_install(L);
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

static int
seal(lua_State *L)
{
	lua_rawgetp(L, LUA_REGISTRYINDEX, &env_key);
	freeze(L, -1);
	return 0;
}

int
lua_sandbox_seal(lua_State *L)
{
	lua_pushcfunction(L, seal);
	if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
		lua_pop(L, 1);
		return -1;
	}
	return 0;
}

void
lua_sandbox_push_call_env(lua_State *L)
{
	lua_createtable(L, 0, 1);
	lua_pushvalue(L, -1);
	lua_setfield(L, -2, "_G");
	lua_rawgetp(L, LUA_REGISTRYINDEX, &call_mt_key);
	lua_setmetatable(L, -2);
}

void
lua_sandbox_arm(struct lua_call *call)
{
	*(struct lua_call **)lua_getextraspace(call->co) = call;
	lua_sethook(call->co, budget_hook, HOOK_MASK, HOOK_STEP);
	clock_gettime(CLOCK_MONOTONIC, &call->start);
}

int
lua_sandbox_resume(struct lua_call *call, int nargs, int *nres)
{
	struct lua_policy *pol = call->pol;
	lua_State *L = pol->L;
	/* Every function of the file shares the chunk's _ENV upvalue: point
	 * it at this call's globals (calls paused on DNS interleave). */
	if (call->env_ref != LUA_NOREF && pol->chunk_ref != LUA_NOREF) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, pol->chunk_ref);
		lua_rawgeti(L, LUA_REGISTRYINDEX, call->env_ref);
		if (lua_setupvalue(L, -2, 1) == NULL)
			lua_pop(L, 1);
		lua_pop(L, 1);
	}
	pol->mem.hit = 0;
	pol->mem.grown = 0;
	pol->mem.forced = 0;
	pol->mem.running = call->co;
	if (!call->aborted)
		lua_sethook(call->co, budget_hook, HOOK_MASK, HOOK_STEP);
	int status = lua_resume(call->co, L, nargs, nres);
	pol->mem.running = NULL;
	if (status != LUA_OK && status != LUA_YIELD && !call->aborted && pol->mem.hit) {
		call->aborted = 1;
		RS_SNPRINTF(call->abort_msg, "%s: memory limit exceeded", pol->path);
	}
	return status;
}
