/* Unit tests for Lua policies: the sandbox (no io/os.execute/require/
 * debug/load/bytecode, __gc refused), the memory cap, the instruction
 * budget that pcall cannot swallow, errors and invalid returns as 451
 * 4.3.5 with file:line, load-time refusal, the policy test table, reload
 * keeping the old version, the postern library, the examples, and a
 * policy inside a restriction list. */
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
	/* memory cap, also through pcall */
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
	/* a good one is swapped in; SIGHUP's reload_all re-reads too */
	f = fopen(path, "w");
	fputs("return function(a) return 'REJECT version four' end, { { expect = 'REJECT' } }\n", f);
	fclose(f);
	assert_int_equal(restrict_lua_check_file(slot), 1);
	restrict_lua_call(slot, NULL, &q, capture, &o);
	assert_string_equal(o.r.action.text, "version four");
	f = fopen(path, "w");
	fputs("return function(a) return 'REJECT version five' end\n", f);
	fclose(f);
	restrict_lua_reload_all();
	restrict_lua_call(slot, NULL, &q, capture, &o);
	assert_string_equal(o.r.action.text, "version five");
	/* the file disappears: keep serving */
	unlink(path);
	assert_int_equal(restrict_lua_check_file(slot), 0);
	restrict_lua_call(slot, NULL, &q, capture, &o);
	assert_string_equal(o.r.action.text, "version five");
	restrict_lua_close(slot);
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
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
