/* Lua policy internals shared by lua_sandbox.c (the state and its limits),
 * lua_lib.c (the `postern` library) and lua_policy.c (loading, tests,
 * reload, calls). */
#ifndef RESTRICT_LUA_INT_H
#define RESTRICT_LUA_INT_H

#include <lua.h>
#include <time.h>

#include "restrict.h"

struct pt_map;

/* Counting allocator state: one per lua_State. */
struct lua_budget_mem {
	size_t used, limit;
	int hit;                      /* an allocation was refused */
	size_t grown;                 /* bytes allocated since the hook last ran */
	lua_State *running;           /* coroutine of the call being resumed */
	int forced;                   /* the hook was moved up by an allocation */
};

/* postern.log/print lines one call may write. */
#define LUA_LOG_LINES_MAX 100

/* One loaded version of a policy file. */
struct lua_policy {
	int refs;
	lua_State *L;
	struct lua_budget_mem mem;
	int fn_ref;                   /* registry ref of the policy function */
	int tests_ref;                /* registry ref of its tests table or LUA_NOREF */
	int chunk_ref;                /* the file's chunk: its _ENV is every call's */
	char *path;
};

/* One execution on a coroutine of a policy's state (load, test, call). */
struct lua_call {
	struct lua_policy *pol;
	lua_State *co;
	int co_ref;
	long long instr, instr_limit; /* VM instructions + charged C work */
	long long unclocked;          /* units since the clock was last read */
	int env_ref;                  /* this call's global table (LUA_NOREF: the chunk's) */
	int logs;                     /* log lines written */
	int pcall_depth;              /* nested sandbox pcall/xpcall */
	struct timespec start;
	long long time_ms;
	int aborted;                  /* budget, time or memory overrun */
	char abort_msg[200];
	int ret_line;                 /* line of the top-level return */
	int chunk;                    /* running the file's chunk at load */
	/* Test mode: synchronous, with fixtures from the test entry. */
	int testing;
	int fixture_ref;              /* registry ref of the test entry */
	long long now_override;       /* 0 = real time */
	/* Real calls. */
	struct pt_loop *loop;
	int dns_pending;
	restrict_lua_done *done;
	void *done_arg;
};

/* lua_sandbox.c */
/* A new state with the counting allocator, the safe libraries and the
 * `postern` library; NULL out of memory. */
lua_State *lua_sandbox_new(struct lua_budget_mem *mem);
/* Compile text (never bytecode) as chunk "@path" with _ENV set to the
 * sandbox environment; pushes the function. 0, or -1 with err. */
int lua_sandbox_load(lua_State *L, const char *text, size_t len, const char *path,
                     char *err, size_t errlen);
/* Start/continue running co under the budget of call (hooks installed);
 * returns lua_resume's status with *nres results on co's stack. */
int lua_sandbox_resume(struct lua_call *call, int nargs, int *nres);
/* Arm the call's hook and limits on its coroutine. */
void lua_sandbox_arm(struct lua_call *call);
/* The call running on L (from the coroutine's extra space). */
struct lua_call *lua_sandbox_call(lua_State *L);
/* Charge units of work (about one VM instruction each) done by a C
 * function to the call running on L; raises an error that no pcall
 * catches once a budget is spent. */
void lua_sandbox_charge(lua_State *L, long long units);
/* Push a fresh global table for one call (reads fall through to the
 * policy's sealed globals); raises on memory errors. */
void lua_sandbox_push_call_env(lua_State *L);
/* After the chunk ran: its globals and the libraries become read-only. */
int lua_sandbox_seal(lua_State *L);

/* lua_strlib.c: metered string/table/utf8 functions into the libraries. */
void lua_strlib_install(lua_State *L);

/* lua_policy.c: continue a call whose DNS lookup answered. */
struct pt_dns_answer;
void lua_policy_resume(struct lua_call *call, const struct pt_dns_answer *ans);

/* lua_lib.c */
/* Push a DNS answer as postern.dns returns it (status, records): 2. */
int lua_lib_push_dns(lua_State *co, const struct pt_dns_answer *ans);
int lua_lib_open_postern(lua_State *L);
/* Test-mode counters live under this prefix and are dropped afterwards. */
#define LUA_TEST_COUNTER_PREFIX "\001test\001"
void lua_lib_clear_test_counters(void);

#endif
