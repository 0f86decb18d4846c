/* The `postern` Lua library policies call: logging, CIDR matching, map
 * lookups, non-blocking DNS (the policy's coroutine yields until the
 * answer), counters with expiry shared by all connections, the time.
 * Map lookups reach only maps the configuration names, opened when it
 * loads: a call never reads a file. */
#include <ctype.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_int.h"
#include "postern/config.h"
#include "postern/dns.h"
#include "postern/log.h"
#include "postern/map.h"

static struct lua_call *
need_call(lua_State *L)
{
	struct lua_call *call = lua_sandbox_call(L);
	if (call == NULL)
		luaL_error(L, "postern library used outside a policy call");
	return call;
}

static int
lib_log(lua_State *L)
{
	struct lua_call *call = lua_sandbox_call(L);
	const char *level = "info", *msg;
	if (lua_gettop(L) >= 2) {
		level = luaL_checkstring(L, 1);
		msg = luaL_checkstring(L, 2);
	} else {
		msg = luaL_checkstring(L, 1);
	}
	enum pt_log_level lv = PT_LOG_INFO;
	if (strcmp(level, "warning") == 0 || strcmp(level, "warn") == 0)
		lv = PT_LOG_WARNING;
	else if (strcmp(level, "error") == 0)
		lv = PT_LOG_ERROR;
	else if (strcmp(level, "debug") == 0)
		lv = PT_LOG_DEBUG;
	else if (strcmp(level, "info") != 0)
		return luaL_argerror(L, 1, "level must be debug, info, warning or error");
	/* The policy's line: skip C frames (print calls us). */
	lua_Debug ar;
	int line = 0;
	for (int level = 1; line <= 0 && level < 4 && lua_getstack(L, level, &ar); level++)
		if (lua_getinfo(L, "l", &ar))
			line = ar.currentline;
	/* A runaway loop must not flood the mail log. */
	if (call != NULL && ++call->logs > LUA_LOG_LINES_MAX) {
		if (call->logs == LUA_LOG_LINES_MAX + 1)
			pt_log_as("smtpd", PT_LOG_WARNING, "lua: %s: more than %d log lines in one call, "
			          "dropping the rest", call->pol->path, LUA_LOG_LINES_MAX);
		return 0;
	}
	/* One log line per call: no line breaks from the policy into the log. */
	char clean[1024];
	size_t o = 0;
	for (const char *p = msg; *p && o + 1 < sizeof clean; p++)
		clean[o++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
	clean[o] = '\0';
	pt_log_as("smtpd", lv, "lua: %s:%d: %s%s", call && call->pol ? call->pol->path : "?", line,
	          call && call->testing ? "(test) " : "", clean);
	return 0;
}

static int
match_one(lua_State *L, const struct sockaddr *sa, const char *net)
{
	struct pt_cidr c;
	if (pt_cidr_parse(net, &c) < 0)
		return luaL_error(L, "cidr_match: bad network \"%s\"", net);
	return pt_cidr_match(&c, sa);
}

static int
lib_cidr_match(lua_State *L)
{
	const char *addr = luaL_checkstring(L, 1);
	struct sockaddr_storage ss;
	if (restrict_sockaddr_parse(addr, &ss) < 0) {
		lua_pushboolean(L, 0);
		return 1;
	}
	const struct sockaddr *sa = (const struct sockaddr *)&ss;
	int hit = 0;
	if (lua_istable(L, 2)) {
		lua_Integer n = luaL_len(L, 2);
		for (lua_Integer i = 1; i <= n && !hit; i++) {
			lua_sandbox_charge(L, 4);
			lua_geti(L, 2, i);
			hit = match_one(L, sa, luaL_checkstring(L, -1));
			lua_pop(L, 1);
		}
	} else {
		const char *nets = luaL_checkstring(L, 2);
		char item[128];
		while (*nets && !hit) {
			nets += strspn(nets, " \t,");
			size_t len = strcspn(nets, " \t,");
			if (len == 0)
				break;
			if (len >= sizeof item)
				return luaL_error(L, "cidr_match: network too long");
			memcpy(item, nets, len);
			item[len] = '\0';
			hit = match_one(L, sa, item);
			nets += len;
		}
	}
	lua_pushboolean(L, hit);
	return 1;
}

/* Test mode: answers from the test entry's maps table, keyed by the spec
 * as the policy writes it, then by the key (or the key in lower case). */
static int
fixture_map(lua_State *L, struct lua_call *call, const char *spec, const char *key)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, call->fixture_ref);
	lua_pushliteral(L, "maps");
	if (lua_rawget(L, -2) == LUA_TTABLE) {
		lua_pushstring(L, spec);
		if (lua_rawget(L, -2) == LUA_TTABLE) {
			lua_pushstring(L, key);
			if (lua_rawget(L, -2) == LUA_TSTRING)
				return 1;
			lua_pop(L, 1);
			luaL_Buffer b;
			char *low = luaL_buffinitsize(L, &b, strlen(key));
			for (size_t i = 0; key[i]; i++)
				low[i] = (char)tolower((unsigned char)key[i]);
			luaL_pushresultsize(&b, strlen(key));
			if (lua_rawget(L, -2) == LUA_TSTRING)
				return 1;
		}
	}
	lua_pushnil(L);
	return 1;
}

static int
lib_map_lookup(lua_State *L)
{
	struct lua_call *call = need_call(L);
	const char *spec = luaL_checkstring(L, 1);
	const char *key = luaL_checkstring(L, 2);
	if (call->testing)
		return fixture_map(L, call, spec, key);
	struct pt_map *m = restrict_setup_find_map(restrict_live_setup(), spec);
	if (m == NULL)
		return luaL_error(L, "map_lookup: %s is not a map of the configuration "
		                  "(list it in lua_policy_maps)", spec);
	lua_sandbox_charge(L, 1 + (long long)strlen(key) / 32);
	int tempfail = 0;
	char *v = pt_map_lookup_loaded(m, key, &tempfail);
	if (v == NULL) {
		if (tempfail)
			return luaL_error(L, "map_lookup: %s: temporary failure", spec);
		lua_pushnil(L);
		return 1;
	}
	lua_pushstring(L, v);
	free(v);
	return 1;
}

static const struct {
	const char *name;
	enum pt_dns_type type;
} dns_types[] = {
	{ "A", PT_DNS_A }, { "AAAA", PT_DNS_AAAA }, { "MX", PT_DNS_MX }, { "PTR", PT_DNS_PTR },
	{ "TXT", PT_DNS_TXT }, { "NS", PT_DNS_NS }, { "CNAME", PT_DNS_CNAME },
};

static const char *
status_name(enum pt_dns_status st)
{
	switch (st) {
	case PT_DNS_OK: return "OK";
	case PT_DNS_NXDOMAIN: return "NXDOMAIN";
	case PT_DNS_NODATA: return "NODATA";
	case PT_DNS_TEMPFAIL: return "TEMPFAIL";
	}
	return "TEMPFAIL";
}

/* Push status and the list of records; 2 values. */
static int
push_answer(lua_State *L, const struct pt_dns_answer *ans)
{
	lua_pushstring(L, status_name(ans->status));
	lua_createtable(L, (int)ans->n, 0);
	for (size_t i = 0; i < ans->n; i++) {
		if (ans->rr[i].type == PT_DNS_MX)
			lua_pushfstring(L, "%d %s", (int)ans->rr[i].pref, ans->rr[i].text);
		else
			lua_pushstring(L, ans->rr[i].text);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	return 2;
}

static void
dns_done(void *arg, const struct pt_dns_answer *ans)
{
	struct lua_call *call = arg;
	call->dns_pending = 0;
	lua_policy_resume(call, ans);
}

int
lua_lib_push_dns(lua_State *co, const struct pt_dns_answer *ans)
{
	return push_answer(co, ans);
}

/* Test mode: answers come from the test entry's dns table, keyed
 * "name TYPE", a list of records or a status string. */
static int
fixture_dns(lua_State *L, struct lua_call *call, const char *name, const char *type)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, call->fixture_ref);
	lua_pushliteral(L, "dns");
	if (lua_rawget(L, -2) == LUA_TTABLE) {
		lua_pushfstring(L, "%s %s", name, type);
		int t = lua_rawget(L, -2);
		if (t == LUA_TTABLE) {
			lua_pushstring(L, "OK");
			lua_insert(L, -2);
			return 2;
		}
		if (t == LUA_TSTRING) {
			lua_newtable(L);
			return 2;
		}
	}
	lua_pushstring(L, "NXDOMAIN");
	lua_newtable(L);
	return 2;
}

static int
lib_dns(lua_State *L)
{
	struct lua_call *call = need_call(L);
	const char *name = luaL_checkstring(L, 1);
	const char *tname = luaL_optstring(L, 2, "A");
	size_t k;
	for (k = 0; k < sizeof dns_types / sizeof dns_types[0]; k++)
		if (strcmp(dns_types[k].name, tname) == 0)
			break;
	if (k == sizeof dns_types / sizeof dns_types[0])
		return luaL_argerror(L, 2, "unknown record type");
	if (call->testing)
		return fixture_dns(L, call, name, tname);
	if (call->loop == NULL)
		return luaL_error(L, "postern.dns is only available inside a policy call");
	if (!lua_isyieldable(L))
		return luaL_error(L, "postern.dns cannot be called from here (C boundary)");
	call->dns_pending = 1;
	if (pt_dns_query(call->loop, name, dns_types[k].type, dns_done, call) < 0) {
		call->dns_pending = 0;
		lua_pushstring(L, "TEMPFAIL");
		lua_newtable(L);
		return 2;
	}
	/* Resumed by lua_policy_resume() with (status, records). */
	return lua_yield(L, 0);
}

static long long
now_of(struct lua_call *call)
{
	if (call && call->testing && call->now_override > 0)
		return call->now_override;
	return (long long)time(NULL);
}

static int
lib_now(lua_State *L)
{
	lua_pushinteger(L, now_of(lua_sandbox_call(L)));
	return 1;
}

/* Counter keys: tests get their own namespace, dropped after the run. */
static const char *
counter_key(lua_State *L, struct lua_call *call, int idx)
{
	size_t len;
	const char *key = luaL_checklstring(L, idx, &len);
	if (len == 0 || len > 512)
		luaL_argerror(L, idx, "counter keys are 1 to 512 bytes");
	if (call->testing) {
		lua_pushfstring(L, LUA_TEST_COUNTER_PREFIX "%s", key);
		lua_replace(L, idx);
		key = lua_tostring(L, idx);
	}
	return key;
}

static int
lib_counter_incr(lua_State *L)
{
	struct lua_call *call = need_call(L);
	const char *key = counter_key(L, call, 1);
	lua_Integer ttl = luaL_checkinteger(L, 2);
	lua_Integer delta = luaL_optinteger(L, 3, 1);
	long long v = restrict_counter_add(key, delta, ttl, now_of(call));
	if (v < 0 && restrict_counters_count() >= RESTRICT_COUNTERS_MAX)
		return luaL_error(L, "counter table full");
	lua_pushinteger(L, v);
	return 1;
}

static int
lib_counter_get(lua_State *L)
{
	struct lua_call *call = need_call(L);
	const char *key = counter_key(L, call, 1);
	long long now = now_of(call), value, created;
	if (!restrict_counter_get(key, now, &value, &created)) {
		lua_pushnil(L);
		return 1;
	}
	lua_pushinteger(L, value);
	lua_pushinteger(L, now - created);
	return 2;
}

static int
lib_counter_set(lua_State *L)
{
	struct lua_call *call = need_call(L);
	const char *key = counter_key(L, call, 1);
	lua_Integer value = luaL_checkinteger(L, 2);
	lua_Integer ttl = luaL_checkinteger(L, 3);
	if (restrict_counter_set(key, value, ttl, now_of(call)) < 0)
		return luaL_error(L, "counter table full");
	return 0;
}

static int
lib_counter_del(lua_State *L)
{
	struct lua_call *call = need_call(L);
	restrict_counter_del(counter_key(L, call, 1));
	return 0;
}

void
lua_lib_clear_test_counters(void)
{
	restrict_counters_clear_prefix(LUA_TEST_COUNTER_PREFIX);
}

static int
lib_split_address(lua_State *L)
{
	const char *addr = luaL_checkstring(L, 1);
	char local[1100], domain[1100];
	int has_domain;
	if (restrict_addr_split(addr, local, sizeof local, domain, sizeof domain, &has_domain) < 0) {
		lua_pushnil(L);
		return 1;
	}
	lua_pushstring(L, local);
	lua_pushstring(L, has_domain ? domain : "");
	return 2;
}

int
lua_lib_open_postern(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "log", lib_log },
		{ "cidr_match", lib_cidr_match },
		{ "map_lookup", lib_map_lookup },
		{ "dns", lib_dns },
		{ "now", lib_now },
		{ "counter_incr", lib_counter_incr },
		{ "counter_get", lib_counter_get },
		{ "counter_set", lib_counter_set },
		{ "counter_del", lib_counter_del },
		{ "split_address", lib_split_address },
		{ NULL, NULL },
	};
	luaL_newlib(L, fns);
	return 1;
}
