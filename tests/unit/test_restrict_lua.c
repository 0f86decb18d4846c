/* Unit tests for Lua policies: the sandbox (no io/os.execute/require/
 * debug/load/bytecode, __gc refused), the memory cap, the instruction
 * budget that pcall cannot swallow, errors and invalid returns as 451
 * 4.3.5 with file:line, load-time refusal, the policy test table, reload
 * keeping the old version, the postern library, the examples, and a
 * policy inside a restriction list. test_escapes: every way out of the
 * budget found in issue #11 (xpcall's handler, backtracking patterns,
 * C loops over huge ranges, ...) ends as an error within the budget;
 * test_fresh_globals: no state through globals between calls;
 * test_map_lookup_confined: only the configuration's maps. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config_int.h"
#include "runtime.h"
#include "restrict/restrict.h"

static char tmpdir[128];
static int fileno_seq;

static const char *
policy_file(const char *text)
{
	static char path[256];
	snprintf(path, sizeof path, "%s/p%d.lua", tmpdir, ++fileno_seq);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

struct result {
	int called;
	struct restrict_lua_result r;
};

static void
capture(void *arg, const struct restrict_lua_result *r)
{
	struct result *out = arg;
	out->called++;
	out->r = *r;
}

static struct pt_policy_request
request(void)
{
	struct pt_policy_request q;
	memset(&q, 0, sizeof q);
	q.stage = PT_STAGE_RCPT;
	q.protocol_name = "ESMTP";
	q.client_address = "192.0.2.1";
	q.client_name = "client.example";
	q.helo_name = "client.example";
	q.sender = "s@example.net";
	q.recipient = "r@example.com";
	q.recipient_count = 2;
	return q;
}

/* Open path, call it once, close it. */
static struct result
call_once(const char *text)
{
	char err[512];
	const char *path = policy_file(text);
	struct restrict_lua_slot *slot = restrict_lua_open(path, err, sizeof err);
	if (slot == NULL)
		fail_msg("policy refused: %s", err);
	struct pt_policy_request q = request();
	struct result out;
	memset(&out, 0, sizeof out);
	restrict_lua_call(slot, NULL, &q, capture, &out);
	assert_int_equal(out.called, 1);
	restrict_lua_close(slot);
	return out;
}

static int
refused(const char *text, char *err, size_t errlen)
{
	const char *path = policy_file(text);
	struct restrict_lua_slot *slot = restrict_lua_open(path, err, errlen);
	if (slot) {
		restrict_lua_close(slot);
		return 0;
	}
	return 1;
}

static void
test_action_and_attributes(void **state)
{
	(void)state;
	struct result o = call_once(
		"return function(a)\n"
		"  return 'REJECT ' .. a.request .. ' ' .. a.protocol_state .. ' ' .. a.client_address ..\n"
		"    ' ' .. a.sender .. ' ' .. a.recipient .. ' ' .. a.recipient_count .. ' [' .. a.sasl_username .. ']'\n"
		"end\n");
	assert_int_equal(o.r.error, 0);
	assert_int_equal(o.r.action.kind, RESTRICT_ACT_REJECT);
	assert_string_equal(o.r.action.text,
	                    "smtpd_access_policy RCPT 192.0.2.1 s@example.net r@example.com 2 []");
	/* where = the file and the line of the return */
	if (strstr(o.r.where, ".lua:2") == NULL && strstr(o.r.where, ".lua:3") == NULL)
		fail_msg("where = %s", o.r.where);
}

static void
test_sandbox(void **state)
{
	(void)state;
	struct result o = call_once(
		"return function(a)\n"
		"  local t = {}\n"
		"  for _, n in ipairs({'io','require','debug','load','loadfile','dofile','package',\n"
		"                      'collectgarbage','coroutine','loadstring'}) do\n"
		"    t[#t+1] = n .. '=' .. type(_ENV[n])\n"
		"  end\n"
		"  t[#t+1] = 'execute=' .. type(os.execute) .. ' getenv=' .. type(os.getenv) ..\n"
		"    ' remove=' .. type(os.remove) .. ' exit=' .. type(os.exit)\n"
		"  t[#t+1] = 'dump=' .. type(string.dump) .. ' sdump=' .. type(('').dump)\n"
		"  t[#t+1] = 'time=' .. type(os.time) .. ' date=' .. type(os.date) .. ' clock=' .. type(os.clock)\n"
		"  t[#t+1] = 'smeta=' .. tostring(getmetatable(''))\n"
		"  return 'REJECT ' .. table.concat(t, ' ')\n"
		"end\n");
	assert_int_equal(o.r.error, 0);
	assert_string_equal(o.r.action.text,
	                    "io=nil require=nil debug=nil load=nil loadfile=nil dofile=nil package=nil "
	                    "collectgarbage=nil coroutine=nil loadstring=nil "
	                    "execute=nil getenv=nil remove=nil exit=nil dump=nil sdump=nil "
	                    "time=function date=function clock=function smeta=protected");
	/* reaching for them is an error -> 451 with file:line */
	o = call_once("return function(a)\n  local f = io.open('/etc/passwd')\n  return 'OK'\nend\n");
	assert_int_equal(o.r.error, 1);
	assert_non_null(strstr(o.r.where, ".lua:2"));
	o = call_once("return function(a)\n\n  os.execute('touch /tmp/pwned')\n  return 'OK'\nend\n");
	assert_int_equal(o.r.error, 1);
	assert_non_null(strstr(o.r.where, ".lua:3"));
	assert_int_equal(access("/tmp/pwned", F_OK), -1);
	/* finalizers would escape the budget: refused */
	o = call_once("return function(a) setmetatable({}, {__gc = function() end}) return 'OK' end\n");
	assert_int_equal(o.r.error, 1);
	o = call_once("return function(a) local t = setmetatable({}, {__index = function() return 'DUNNO' end})"
	              " return t.x end\n");
	assert_int_equal(o.r.error, 0);
	assert_int_equal(o.r.action.kind, RESTRICT_ACT_DUNNO);
}

static void
test_budgets(void **state)
{
	(void)state;
	struct restrict_lua_limits lim = { 2u << 20, 200000, 5000 };
	restrict_lua_set_limits(&lim);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct result o = call_once("return function(a)\n  while true do end\nend\n");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(o.r.error, 1);
	assert_non_null(strstr(o.r.why, "instruction budget exceeded"));
	assert_non_null(strstr(o.r.where, ".lua:2"));
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(secs < 2.0);
	/* pcall and xpcall cannot swallow the overrun */
	o = call_once("return function(a)\n"
	              "  while true do pcall(function() while true do end end) end\n"
	              "end\n");
	assert_int_equal(o.r.error, 1);
	assert_non_null(strstr(o.r.why, "instruction budget exceeded"));
	o = call_once("return function(a)\n"
	              "  for i = 1, 100 do xpcall(function() while true do end end, function(e) return e end) end\n"
	              "  return 'OK'\n"
	              "end\n");
	assert_int_equal(o.r.error, 1);
	/* memory cap, also through pcall (instructions enough that memory is
	 * what runs out first) */
	struct restrict_lua_limits memlim = { 2u << 20, 100000000, 5000 };
	restrict_lua_set_limits(&memlim);
	o = call_once("return function(a)\n"
	              "  local t = {}\n"
	              "  for i = 1, 1e7 do t[i] = string.rep('x', 64) .. i end\n"
	              "  return 'OK'\n"
	              "end\n");
	assert_int_equal(o.r.error, 1);
	assert_non_null(strstr(o.r.why, "memory"));
	o = call_once("return function(a)\n"
	              "  local ok = pcall(string.rep, 'x', 64 * 1024 * 1024)\n"
	              "  return ok and 'OK' or 'DUNNO'\n"
	              "end\n");
	assert_int_equal(o.r.error, 1);
	/* the state is still usable afterwards */
	o = call_once("return function(a) return 'DUNNO' end\n");
	assert_int_equal(o.r.error, 0);
	struct restrict_lua_limits def = { 8u << 20, 1000000, 1000 };
	restrict_lua_set_limits(&def);
}

static void
test_bad_returns(void **state)
{
	(void)state;
	static const char *const bodies[] = {
		"return nil", "return 42", "return {}", "return 'FROBNICATE'", "return 'REJECT a\\r\\nb'",
		"return ''", "return 'OK please'", "error('boom')", "error({})", "local x = nil; return x.y",
	};
	for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
		char text[200];
		snprintf(text, sizeof text, "return function(a)\n  %s\nend\n", bodies[i]);
		struct result o = call_once(text);
		if (!o.r.error)
			fail_msg("accepted: %s", bodies[i]);
		assert_non_null(strstr(o.r.where, ".lua"));
	}
	struct result o = call_once("return function(a)\n  error('boom')\nend\n");
	assert_non_null(strstr(o.r.where, ".lua:2"));
	assert_non_null(strstr(o.r.why, "boom"));
}

static int
dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
	(void)L;
	return fwrite(p, 1, sz, ud) == sz ? 0 : 1;
}

static void
test_load_refusals(void **state)
{
	(void)state;
	char err[512];
	assert_true(refused("return function(a) return 'OK' \n", err, sizeof err));
	assert_non_null(strstr(err, "lua:"));
	assert_true(refused("return 42\n", err, sizeof err));
	assert_true(refused("return function() end, 'not a table'\n", err, sizeof err));
	assert_true(refused("while true do end\n", err, sizeof err));
	assert_true(refused("error('at load')\n", err, sizeof err));
	assert_true(refused("local f = load('return 1')\nreturn function() return 'OK' end\n", err, sizeof err));
	/* bytecode is refused (text chunks only) */
	lua_State *L = luaL_newstate();
	assert_int_equal(luaL_loadstring(L, "return function() return 'OK' end"), LUA_OK);
	char path[256];
	snprintf(path, sizeof path, "%s/bytecode.lua", tmpdir);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	lua_dump(L, dump_writer, f, 0);
	fclose(f);
	lua_close(L);
	assert_null(restrict_lua_open(path, err, sizeof err));
	assert_non_null(strstr(err, "binary"));
}

static void
test_policy_tests_table(void **state)
{
	(void)state;
	char err[512];
	static const char policy[] =
		"local function p(a)\n"
		"  if a.sender == 'bad@example.net' then return 'REJECT bad sender' end\n"
		"  local st, recs = postern.dns(a.client_address, 'PTR')\n"
		"  if st ~= 'OK' then return 'DEFER no PTR' end\n"
		"  return 'DUNNO'\n"
		"end\n"
		"return p, {\n"
		"  { name = 'bad', request = { sender = 'bad@example.net' }, expect = 'REJECT' },\n"
		"  { request = { sender = 'bad@example.net' }, expect = 'REJECT bad sender' },\n"
		"  { request = { client_address = '192.0.2.1' }, dns = { ['192.0.2.1 PTR'] = { 'h.example' } }, expect = 'DUNNO' },\n"
		"  { request = { client_address = '192.0.2.2' }, expect = 'DEFER no PTR' },\n"
		"%s"
		"}\n";
	char text[2048];
	snprintf(text, sizeof text, policy, "");
	assert_false(refused(text, err, sizeof err));
	snprintf(text, sizeof text, policy, "  { name = 'wrong', request = { sender = 'ok@example.net' }, expect = 'REJECT' },\n");
	assert_true(refused(text, err, sizeof err));
	assert_non_null(strstr(err, "test 5 (wrong) failed: expected \"REJECT\""));
	/* prefix only on word boundaries */
	snprintf(text, sizeof text, policy, "  { request = { sender = 'bad@example.net' }, expect = 'REJECT bad' },\n");
	assert_false(refused(text, err, sizeof err));
	snprintf(text, sizeof text, policy, "  { request = { sender = 'bad@example.net' }, expect = 'REJ' },\n");
	assert_true(refused(text, err, sizeof err));
	/* expect = 'error' */
	assert_false(refused("return function(a) error('x') end, { { expect = 'error' } }\n", err, sizeof err));
	assert_true(refused("return function(a) return 'OK' end, { { expect = 'error' } }\n", err, sizeof err));
	assert_true(refused("return function(a) return 'OK' end, { 'not a table' }\n", err, sizeof err));
	assert_true(refused("return function(a) return 'OK' end, { { request = {} } }\n", err, sizeof err));
	/* tests do not leave counters behind */
	assert_false(refused("return function(a) postern.counter_incr('k', 60) return 'DUNNO' end,"
	                     " { { expect = 'DUNNO' } }\n", err, sizeof err));
	assert_int_equal(restrict_counters_count(), 0);
}

static void
test_reload_keeps_old(void **state)
{
	(void)state;
	char err[512], path[256];
	snprintf(path, sizeof path, "%s/reload.lua", tmpdir);
	FILE *f = fopen(path, "w");
	fputs("return function(a) return 'REJECT version one' end\n", f);
	fclose(f);
	struct restrict_lua_slot *slot = restrict_lua_open(path, err, sizeof err);
	assert_non_null(slot);
	struct pt_policy_request q = request();
	struct result o;
	memset(&o, 0, sizeof o);
	restrict_lua_call(slot, NULL, &q, capture, &o);
	assert_string_equal(o.r.action.text, "version one");
	/* a version that does not compile: refused, the old one runs */
	f = fopen(path, "w");
	fputs("return function(a) return 'REJECT version two' \n", f);
	fclose(f);
	assert_int_equal(restrict_lua_check_file(slot), -1);
	restrict_lua_call(slot, NULL, &q, capture, &o);
	assert_string_equal(o.r.action.text, "version one");
	/* one that fails its own tests: refused too */
	f = fopen(path, "w");
	fputs("return function(a) return 'REJECT version three' end, { { expect = 'OK' } }\n", f);
	fclose(f);
	assert_int_equal(restrict_lua_check_file(slot), -1);
	assert_int_equal(restrict_lua_check_file(slot), -1);   /* not retried while unchanged */
	restrict_lua_call(slot, NULL, &q, capture, &o);
	assert_string_equal(o.r.action.text, "version one");
	/* a good one is swapped in, and the next one too */
	f = fopen(path, "w");
	fputs("return function(a) return 'REJECT version four' end, { { expect = 'REJECT' } }\n", f);
	fclose(f);
	assert_int_equal(restrict_lua_check_file(slot), 1);
	restrict_lua_call(slot, NULL, &q, capture, &o);
	assert_string_equal(o.r.action.text, "version four");
	f = fopen(path, "w");
	fputs("return function(a) return 'REJECT version five' end\n", f);
	fclose(f);
	assert_int_equal(restrict_lua_check_file(slot), 1);
	restrict_lua_call(slot, NULL, &q, capture, &o);
	assert_string_equal(o.r.action.text, "version five");
	/* the file disappears: keep serving */
	unlink(path);
	assert_int_equal(restrict_lua_check_file(slot), 0);
	restrict_lua_call(slot, NULL, &q, capture, &o);
	assert_string_equal(o.r.action.text, "version five");
	restrict_lua_close(slot);
}

/* A live restriction setup whose lua_policy_maps names map_spec (a path
 * or NULL), as the worker has after loading its configuration. */
static struct pt_config *
live_config_with_maps(const char *map_path)
{
	char text[1024];
	snprintf(text, sizeof text,
	         "mydestination = example.com\nmynetworks = 127.0.0.1/32\n"
	         "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
	         "lua_policy_maps = %s%s\n", map_path ? "hash:" : "", map_path ? map_path : "");
	struct pt_config *c = pt_config_parse("t.conf", text, strlen(text));
	assert_non_null(c);
	assert_int_equal(pt_config_declare_core(c), 0);
	assert_int_equal(pt_config_declare(c, "restrict", restrict_params), 0);
	assert_int_equal(pt_config_finish(c), 0);
	pt_live_conf = c;
	struct restrict_setup *s = restrict_setup_build(c, 1);
	assert_non_null(s);
	restrict_set_live_setup(s);           /* takes the reference */
	return c;
}

static void
drop_live_config(struct pt_config *c)
{
	restrict_set_live_setup(NULL);
	pt_live_conf = NULL;
	pt_config_free(c);
}

static void
test_library(void **state)
{
	(void)state;
	char mpath[256];
	snprintf(mpath, sizeof mpath, "%s/blocked", tmpdir);
	FILE *f = fopen(mpath, "w");
	fputs("evil@example.net REJECT listed\n", f);
	fclose(f);
	struct pt_config *c = live_config_with_maps(mpath);
	char text[2048];
	snprintf(text, sizeof text,
	         "return function(a)\n"
	         "  local n = postern.counter_incr('calls:' .. a.client_address, 60)\n"
	         "  local v, age = postern.counter_get('calls:' .. a.client_address)\n"
	         "  local l, d = postern.split_address('\"x y\"@Example.COM')\n"
	         "  local m = postern.map_lookup('hash:%s', 'evil@example.net')\n"
	         "  local none = postern.map_lookup('hash:%s', 'nobody@example.net')\n"
	         "  return 'REJECT ' .. n .. ' ' .. v .. ' ' .. age .. ' ' .. l .. '/' .. d .. ' ' ..\n"
	         "    tostring(postern.cidr_match(a.client_address, '10.0.0.0/8 192.0.2.0/24')) .. ' ' ..\n"
	         "    tostring(postern.cidr_match(a.client_address, {'10.0.0.0/8'})) .. ' ' ..\n"
	         "    tostring(postern.cidr_match('2001:db8::1', '2001:db8::/32')) .. ' ' .. m .. ' ' .. tostring(none)\n"
	         "end\n", mpath, mpath);
	const char *path = policy_file(text);
	char err[512];
	struct restrict_lua_slot *slot = restrict_lua_open(path, err, sizeof err);
	assert_non_null(slot);
	struct pt_policy_request q = request();
	struct result o;
	memset(&o, 0, sizeof o);
	restrict_lua_call(slot, NULL, &q, capture, &o);
	assert_int_equal(o.r.error, 0);
	assert_string_equal(o.r.action.text, "1 1 0 x y/example.com true false true REJECT listed nil");
	restrict_lua_call(slot, NULL, &q, capture, &o);
	assert_true(strncmp(o.r.action.text, "2 2 ", 4) == 0);
	restrict_lua_close(slot);
	/* a counter is shared by every policy of the process */
	struct result o2 = call_once("return function(a) return 'REJECT ' .. postern.counter_incr('calls:' .. a.client_address, 60) end\n");
	assert_string_equal(o2.r.action.text, "3");
	restrict_counters_clear();
	/* bad arguments are errors, not crashes */
	o = call_once("return function(a) return postern.cidr_match('1.2.3.4', 'nonsense/99') end\n");
	assert_int_equal(o.r.error, 1);
	o = call_once("return function(a) return postern.dns('x.example', 'BOGUS') end\n");
	assert_int_equal(o.r.error, 1);
	o = call_once("return function(a) return postern.dns('x.example', 'A') end\n");
	assert_int_equal(o.r.error, 1);    /* no loop: not available */
	o = call_once("return function(a) postern.log('info', 'hello\\nworld') print('x', 1) return 'DUNNO' end\n");
	assert_int_equal(o.r.error, 0);
	drop_live_config(c);
}

/* Every body must end as an error (451) within the budget: with the old
 * sandbox each of these hung the worker or ran far past its limits. */
static void
test_escapes(void **state)
{
	(void)state;
	static const char *const bodies[] = {
		/* xpcall's message handler ran without the count hook */
		"xpcall(function() error('boom') end, function(e) while true do end end)",
		"xpcall(function() while true do end end, function(e) while true do end end)",
		"xpcall(error, function(e) local t = {} for i = 1, 1e9 do t[i % 10] = e end end, 'x')",
		"xpcall(function() error('x') end, function(e) return pcall(function() while true do end end) end)"
		" while true do end",
		"for i = 1, 1e9 do xpcall(error, function(e) return e end, i) end",
		"local function h(e) return xpcall(error, h, e) end xpcall(error, h, 'x') while true do end",
		/* pattern matching ran inside one C call, out of the hook's reach */
		"string.find(('a'):rep(22), ('a*'):rep(22) .. 'b')",
		"local s = ('a'):rep(30000) return s:find('.-.-.-.-b') and 'OK'",
		"local s = ('a'):rep(3000) for w in s:gmatch('a*a*a*a*b') do end",
		"local s = ('a'):rep(3000) return (s:gsub('(a-)(a-)(a-)b', '%1'))",
		"local s = ('a'):rep(1e6) local p = ('a'):rep(5e5) .. 'b' for i = 1, 1e9 do s:find(p, 1, true) end",
		"local s = ('('):rep(1e6) for i = 1, 1e9 do s:find('%b()') end",
		/* table functions looping in C over ranges the policy chooses */
		"table.move(setmetatable({}, {__index = type}), 1, 2^50, 1, setmetatable({}, {__newindex = type}))",
		"return table.concat(setmetatable({}, {__index = type}), '', 1, 2^50)",
		"local t = {} for i = 0, 50 do t[2^i] = i end table.insert(t, 1, 'x') table.remove(t, 1)"
		" for i = 1, 1e9 do table.insert(t, 1, 'x') end",
		"return table.unpack({}, 1, 1e8)",
		"local t = {} for i = 1, 1000 do t[i] = i end table.sort(t, function(a, b) while true do end end)",
		"local s = ('x'):rep(1e5) local t = {} for i = 1, 40 do t[i] = s end"
		" for i = 1, 1e9 do table.sort(t) end",
		/* scans of big strings in a loop */
		"local s = ('a'):rep(4e6) for i = 1, 1e9 do utf8.len(s) end",
		"local s = (' '):rep(4e6) for i = 1, 1e9 do tonumber(s) end",
		"local s = ('x'):rep(1e6) for i = 1, 1e9 do local t = s .. i end",
		"local f = (' '):rep(4e6) .. 'b' for i = 1, 1e9 do string.packsize(f) end",
		/* memory bombs */
		"return string.rep('x', 2^40)",
		"local s = string.rep('x', 1e6) for i = 1, 20 do s = s .. s end",
		"local t = {} for i = 1, 1e9 do t[i] = i end",
		"local t = {} for i = 1, 1e6 do t[i] = ('x'):rep(100) end return table.concat(t)",
		"return string.format('%99999d', 1)",
		/* recursion: Lua stack, C stack */
		"local function f() return 1 + f() end return f()",
		"local t = setmetatable({}, {__index = function(t, k) return t[k] end}) return t.x",
		"local t = setmetatable({}, {__tostring = function(t) return tostring(t) end}) return tostring(t)",
		"local function f() return pcall(f) end f() while true do end",
		/* metamethods, __close, error objects */
		"error(setmetatable({}, {__tostring = function() while true do end end}))",
		"print(setmetatable({}, {__tostring = function() while true do end end}))",
		"local x <close> = setmetatable({}, {__close = function() while true do end end}) return 'OK'",
		"pcall(function() local x <close> = setmetatable({}, {__close = function() while true do end end})"
		" while true do end end)",
		"setmetatable({}, {__gc = function() while true do end end})",
		"return coroutine.wrap(function() while true do end end)()",
		"for i = 1, 1e9 do print(i) end",
	};
	struct restrict_lua_limits lim = { 8u << 20, 1000000, 2000 };
	restrict_lua_set_limits(&lim);
	for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
		char text[1024];
		snprintf(text, sizeof text, "return function(a)\n  do %s end\n  return 'OK'\nend\n", bodies[i]);
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		struct result o = call_once(text);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (!o.r.error)
			fail_msg("not an error: %s", bodies[i]);
		if (getenv("LUA_ESCAPE_TIMES"))
			print_message("%.3f s %s: %s\n", (double)(t1.tv_sec - t0.tv_sec) +
			              (t1.tv_nsec - t0.tv_nsec) / 1e9, o.r.why, bodies[i]);
	}
	/* __gc is looked up raw: the metatable's own __index does not run */
	struct result o = call_once("return function(a) setmetatable({}, setmetatable({},"
	                            " {__index = function() while true do end end})) return 'DUNNO' end\n");
	assert_int_equal(o.r.error, 0);
	/* a finalizer added to a metatable after the fact is never run (Lua
	 * marks an object for finalization only at setmetatable) */
	o = call_once("local mt = {}\nlocal keep = setmetatable({}, mt)\n"
	                            "mt.__gc = function() while true do end end\n"
	                            "return function(a) return 'DUNNO' end\n");
	assert_int_equal(o.r.error, 0);
	/* the state still answers afterwards */
	o = call_once("return function(a) return 'DUNNO' end\n");
	assert_int_equal(o.r.error, 0);
	struct restrict_lua_limits def = { 8u << 20, 1000000, 1000 };
	restrict_lua_set_limits(&def);
}

/* The metered string functions keep Lua's results. */
static void
test_pattern_functions(void **state)
{
	(void)state;
	struct result o = call_once(
		"return function(a)\n"
		"  local r = {}\n"
		"  local function add(...) local t = table.pack(...) for i = 1, t.n do r[#r+1] = tostring(t[i]) end end\n"
		"  add(('hello world'):find('o w'))\n"
		"  add(('hello world'):find('o', 6))\n"
		"  add(('hello'):find('l+'))\n"
		"  add(('a.b'):find('.', 1, true))\n"
		"  add(('key = value'):match('^(%w+)%s*=%s*(%w+)$'))\n"
		"  add(('x@Example.COM'):match('@(.+)$'))\n"
		"  add(('THE (quick) fox'):find('%((%a+)%)'))\n"
		"  add(('f(a(b)c)d'):match('%b()'))\n"
		"  add(('THE (quick) fox'):find('%f[%a]%a+', 5))\n"
		"  add(('abcabc'):match('(a)(b)()'))\n"
		"  add(('aaa'):match('^(a-)a$'))\n"
		"  add(('abab'):match('(ab)%1'))\n"
		"  add(('[x]'):match('[]x[]+'))\n"
		"  add(('1.2.3.4'):match('^(%d+)%.(%d+)%.(%d+)%.(%d+)$'))\n"
		"  add(('hello world from lua'):gsub('(%w+)', '<%1>'))\n"
		"  add(('abc'):gsub('', '-'))\n"
		"  add(('hello'):gsub('l', {l = 'L'}))\n"
		"  add(('hello'):gsub('.', function(c) if c == 'e' then return 'E' end end))\n"
		"  add(('a,b,,c'):gsub(',', ';', 2))\n"
		"  add(('x = 1'):gsub('%s', '%%'))\n"
		"  local w = {} for k, v in ('a=1, b=2'):gmatch('(%w+)=(%w+)') do w[#w+1] = k .. v end add(table.concat(w, '+'))\n"
		"  local e = {} for x in ('abc'):gmatch('x*') do e[#e+1] = '[' .. x .. ']' end add(table.concat(e))\n"
		"  add(('abc'):find('b', -2))\n"
		"  add(('abc'):find('', 10))\n"
		"  add(pcall(string.find, 'x', '[a'))\n"
		"  add(pcall(string.find, 'x', '%'))\n"
		"  add(pcall(string.gsub, 'x', 'x', '%2'))\n"
		"  local t = {5, 2, 8, 1, 9, 3} table.sort(t) add(table.concat(t, ','))\n"
		"  table.sort(t, function(a, b) return a > b end) add(table.concat(t, ','))\n"
		"  table.insert(t, 1, 0) table.insert(t, 7) add(table.remove(t), table.remove(t, 1), #t)\n"
		"  add(table.concat(table.move({1, 2, 3}, 1, 3, 2), ','))\n"
		"  add(table.unpack({1, 2, 3}, 2))\n"
		"  add(string.rep('ab', 3, '-'), utf8.len('h\\u{e9}'), tonumber('0x10'), ('%d-%s'):format(4, 'x'))\n"
		"  return 'REJECT ' .. table.concat(r, ' ')\n"
		"end\n");
	assert_int_equal(o.r.error, 0);
	assert_string_equal(o.r.action.text,
		"5 7 8 8 3 4 2 2 key value Example.COM 5 11 quick (a(b)c) 6 10 a b 3 aa "
		"ab [x] 1 2 3 4 <hello> <world> <from> <lua> 4 -a-b-c- 4 heLLo 2 hEllo 5 "
		"a;b;,c 2 x%=%1 2 a1+b2 [][][][] 2 2 nil "
		"false malformed pattern (missing ']') false malformed pattern (ends with '%') "
		"false invalid capture index %2 "
		"1,2,3,5,8,9 9,8,5,3,2,1 7 0 6 1,1,2,3 2 3 ab-ab-ab 2 16 4-x");
}

/* Globals a call sets die with it; the libraries and what the file set
 * up at load are read-only; state only through postern.counter_*. */
static void
test_fresh_globals(void **state)
{
	(void)state;
	char err[512];
	const char *path = policy_file(
		"LOADED = 'at load'\n"
		"local G = _G\n"
		"return function(a)\n"
		"  local seen = tostring(n) .. ' ' .. tostring(_G.m) .. ' ' .. tostring(rawget(_G, 'k'))\n"
		"  n = (n or 0) + 1\n"
		"  _G.m = 1\n"
		"  rawset(_G, 'k', 1)\n"
		"  local ro = {}\n"
		"  for _, f in ipairs({\n"
		"    function() string.upper = nil end, function() rawset(string, 'x', 1) end,\n"
		"    function() postern.map_lookup = print end, function() table.insert = nil end,\n"
		"    function() G.LOADED = 'changed' end, function() G.newglobal = 1 end,\n"
		"    function() rawset(G, 'LOADED', 'changed') end, function() setmetatable(_G, nil) end,\n"
		"    function() setmetatable(string, {}) end, function() getmetatable(_G).__index = {} end,\n"
		"    function() math.pi = 3 end, function() os.time = nil end }) do\n"
		"    ro[#ro + 1] = pcall(f) and 'W' or 'r'\n"
		"  end\n"
		"  return 'REJECT ' .. seen .. ' ' .. LOADED .. ' ' .. table.concat(ro) .. ' ' ..\n"
		"    tostring(string.upper ~= nil) .. ' ' .. tostring(getmetatable(_G)) .. ' ' .. tostring(getmetatable(string))\n"
		"end\n");
	struct restrict_lua_slot *slot = restrict_lua_open(path, err, sizeof err);
	if (slot == NULL)
		fail_msg("refused: %s", err);
	struct pt_policy_request q = request();
	for (int i = 0; i < 3; i++) {
		struct result o;
		memset(&o, 0, sizeof o);
		restrict_lua_call(slot, NULL, &q, capture, &o);
		assert_int_equal(o.r.error, 0);
		assert_string_equal(o.r.action.text,
		                    "nil nil nil at load rrrrrrrrrrrr true protected read-only");
	}
	restrict_lua_close(slot);
	/* pairs and # still work on the read-only libraries */
	struct result o = call_once("return function(a) local n = 0 for k in pairs(string) do n = n + 1 end"
	                            " return 'REJECT ' .. tostring(n > 10) .. ' ' .. #string end\n");
	assert_int_equal(o.r.error, 0);
	assert_string_equal(o.r.action.text, "true 0");
}

/* postern.map_lookup: only maps the configuration names, already loaded;
 * in a policy's own tests, answers come from the test entry. */
static void
test_map_lookup_confined(void **state)
{
	(void)state;
	char mpath[256], other[256];
	snprintf(mpath, sizeof mpath, "%s/listed", tmpdir);
	snprintf(other, sizeof other, "%s/unlisted", tmpdir);
	FILE *f = fopen(mpath, "w");
	fputs("key1 value1\n", f);
	fclose(f);
	f = fopen(other, "w");
	fputs("secret leaked\n", f);
	fclose(f);
	struct pt_config *c = live_config_with_maps(mpath);
	char text[2048];
	/* the same file under another type prefix is the same map */
	snprintf(text, sizeof text, "return function(a) return 'REJECT ' .. postern.map_lookup('texthash:%s', 'KEY1') end\n", mpath);
	struct result o = call_once(text);
	assert_int_equal(o.r.error, 0);
	assert_string_equal(o.r.action.text, "value1");
	static const char *const specs[] = { "hash:/etc/hosts", "hash:/etc/passwd", "/etc/shadow",
		"hash:%s", "hash:%s/../unlisted", "proxy:hash:%s" };
	for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
		char spec[600];
		snprintf(spec, sizeof spec, specs[i], other);
		snprintf(text, sizeof text, "return function(a) return 'REJECT ' .. tostring(postern.map_lookup('%s', 'secret')) end\n", spec);
		o = call_once(text);
		if (!o.r.error)
			fail_msg("%s answered: %s", spec, o.r.action.text);
		assert_non_null(strstr(o.r.why, "lua_policy_maps"));
	}
	/* a change of the file is not read by a call (only at reload) */
	f = fopen(mpath, "w");
	fputs("key1 changed-on-disk\n", f);
	fclose(f);
	sleep(1);
	snprintf(text, sizeof text, "return function(a) return 'REJECT ' .. postern.map_lookup('hash:%s', 'key1') end\n", mpath);
	o = call_once(text);
	assert_string_equal(o.r.action.text, "value1");
	drop_live_config(c);
	/* tests: the entry's maps table, never a file */
	char err[512];
	snprintf(text, sizeof text,
	         "return function(a) return postern.map_lookup('hash:/etc/postern/blocked', a.sender) or 'DUNNO' end, {\n"
	         "  { request = { sender = 'evil@x' }, maps = { ['hash:/etc/postern/blocked'] = { ['evil@x'] = 'REJECT listed' } }, expect = 'REJECT listed' },\n"
	         "  { request = { sender = 'Evil@X' }, maps = { ['hash:/etc/postern/blocked'] = { ['evil@x'] = 'REJECT listed' } }, expect = 'REJECT listed' },\n"
	         "  { request = { sender = 'evil@x' }, expect = 'DUNNO' },\n"
	         "  { request = { sender = 'localhost' }, maps = { ['hash:/etc/hosts'] = {} }, expect = 'DUNNO' },\n"
	         "}\n");
	assert_false(refused(text, err, sizeof err));
}

/* The policy's own tests (postern check, policy test, every load and
 * reload) run under the same budget: a hostile test or tests table ends. */
static void
test_budgets_at_load(void **state)
{
	(void)state;
	char err[512];
	static const char *const files[] = {
		"xpcall(function() error('boom') end, function(e) while true do end end)\n"
		"return function(a) return 'OK' end\n",
		"string.find(('a'):rep(22), ('a*'):rep(22) .. 'b')\nreturn function(a) return 'OK' end\n",
		"return function(a) xpcall(error, function() while true do end end) end, { { expect = 'OK' } }\n",
		"return function(a) return 'OK' end, { setmetatable({}, {__index = function() while true do end end}) }\n",
		"return function(a) return 'OK' end, { { expect = 'OK', request = setmetatable({},"
		" {__index = function() while true do end end, __pairs = function() while true do end end}) } }\n",
		"return function(a) return 'OK' end, setmetatable({}, {__len = function() while true do end end,"
		" __index = function() while true do end end})\n",
		"return function(a) return 'OK' end, { { expect = 'OK', dns = setmetatable({}, {__index = function() while true do end end}) } }\n",
	};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		const char *path = policy_file(files[i]);
		(void)restrict_lua_validate(path, err, sizeof err);
		char *r = NULL;
		struct restrict_lua_slot *slot = restrict_lua_open(path, err, sizeof err);
		if (slot) {
			r = "loaded";
			restrict_lua_close(slot);
		}
		(void)r;
	}
	/* the hostile ones are refused */
	assert_true(refused(files[0], err, sizeof err));
	assert_non_null(strstr(err, "budget"));
	assert_true(refused(files[1], err, sizeof err));
	assert_true(refused(files[2], err, sizeof err));
}

static void
test_examples(void **state)
{
	(void)state;
	const char *src = getenv("POSTERN_SRC");
	char dir[512];
	snprintf(dir, sizeof dir, "%s/lua/examples", src ? src : "../..");
	static const char *const names[] = { "greylisting.lua", "ratelimit.lua", "blocklist.lua",
		"office_hours.lua" };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char path[700], err[512];
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (restrict_lua_validate(path, err, sizeof err) < 0)
			fail_msg("%s: %s", names[i], err);
	}
}

struct outcome {
	int called;
	struct pt_verdict v;
};

static void
verdict_capture(void *arg, const struct pt_verdict *v)
{
	struct outcome *o = arg;
	o->called++;
	o->v = *v;
	o->v.trace = NULL;
}

static void
test_in_a_list(void **state)
{
	(void)state;
	char p1[256], p2[256];
	snprintf(p1, sizeof p1, "%s", policy_file(
		"return function(a)\n"
		"  if a.sender == 'spam@example.net' then return 'REJECT No spam here' end\n"
		"  if a.sender == 'prep@example.net' then return 'PREPEND X-Checked: yes' end\n"
		"  if a.sender == 'err@example.net' then\n"
		"    error('policy bug')\n"
		"  end\n"
		"  return 'DUNNO'\n"
		"end\n"));
	snprintf(p2, sizeof p2, "%s", policy_file("return function(a) while true do end end\n"));
	char text[2048];
	snprintf(text, sizeof text,
	         "mydestination = example.com\nmynetworks = 127.0.0.1/32\n"
	         "smtpd_reject_unlisted_recipient = no\n"
	         "smtpd_sender_restrictions = check_lua_policy %s\n"
	         "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
	         "smtpd_end_of_data_restrictions = check_lua_policy %s\n", p1, p2);
	struct pt_config *c = pt_config_parse("t.conf", text, strlen(text));
	assert_non_null(c);
	assert_int_equal(pt_config_declare_core(c), 0);
	assert_int_equal(pt_config_declare(c, "restrict", restrict_params), 0);
	assert_int_equal(pt_config_finish(c), 0);
	pt_live_conf = c;
	struct restrict_setup *s = restrict_setup_build(c, 1);
	assert_non_null(s);
	struct pt_policy_request q = request();
	q.recipient = "root@example.com";
	struct outcome o;

	q.sender = "spam@example.net";
	memset(&o, 0, sizeof o);
	restrict_evaluate(s, NULL, &q, verdict_capture, &o);
	assert_int_equal(o.called, 1);
	assert_string_equal(o.v.reply, "554 5.7.1 <spam@example.net>: Sender address rejected: No spam here");
	assert_non_null(strstr(o.v.rule, ".lua:2"));

	q.sender = "err@example.net";
	memset(&o, 0, sizeof o);
	restrict_evaluate(s, NULL, &q, verdict_capture, &o);
	assert_int_equal(o.v.kind, PT_VERDICT_DEFER);
	assert_string_equal(o.v.reply, "451 4.3.5 Server configuration problem");
	assert_non_null(strstr(o.v.rule, ".lua:5"));

	q.sender = "prep@example.net";
	memset(&o, 0, sizeof o);
	restrict_evaluate(s, NULL, &q, verdict_capture, &o);
	assert_int_equal(o.v.kind, PT_VERDICT_ACCEPT);
	assert_string_equal(o.v.prepend, "X-Checked: yes");

	/* a runaway policy: 451 within its budget, never an accept */
	q.stage = PT_STAGE_END_OF_DATA;
	memset(&o, 0, sizeof o);
	restrict_evaluate(s, NULL, &q, verdict_capture, &o);
	assert_string_equal(o.v.reply, "451 4.3.5 Server configuration problem");

	/* postern check validates policies (compile + tests) */
	restrict_setup_unref(s);
	pt_live_conf = NULL;
	pt_config_free(c);
}

static int
group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_restrict_lua.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	restrict_lua_shutdown();
	restrict_counters_clear();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_action_and_attributes),
		cmocka_unit_test(test_sandbox),
		cmocka_unit_test(test_budgets),
		cmocka_unit_test(test_bad_returns),
		cmocka_unit_test(test_load_refusals),
		cmocka_unit_test(test_policy_tests_table),
		cmocka_unit_test(test_reload_keeps_old),
		cmocka_unit_test(test_library),
		cmocka_unit_test(test_examples),
		cmocka_unit_test(test_in_a_list),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_pattern_functions),
		cmocka_unit_test(test_fresh_globals),
		cmocka_unit_test(test_map_lookup_confined),
		cmocka_unit_test(test_budgets_at_load),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
