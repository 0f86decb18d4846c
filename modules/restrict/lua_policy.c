/* Lua policy files: loading (compile, run the chunk, run its own tests),
 * keeping the live version per path with reload on file change (a
 * refused version leaves the old one running; SIGHUP starts a new
 * generation, which loads them afresh), and calls that
 * may pause on DNS. Policies run inline on the loop: the instruction and
 * time budgets bound how long one call can hold it, and no hand-off to a
 * pool thread (with locking of the shared state) is paid per RCPT. */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua_int.h"
#include "postern/dns.h"
#include "postern/event.h"
#include "postern/fdio.h"
#include "postern/log.h"
#include "postern/metrics.h"

#define POLICY_FILE_MAX (1024 * 1024)
#define CHECK_INTERVAL_MS 1000

struct restrict_lua_slot {
	struct restrict_lua_slot *next;
	int opens;
	char *path;
	struct lua_policy *cur;
	struct stat loaded;           /* file identity of cur */
	struct stat refused;          /* last version that was refused */
	int have_refused;
	struct timespec last_check;
};

static struct restrict_lua_slot *slots;
static struct restrict_lua_limits limits = { 8u << 20, 1000000, 1000 };

void
restrict_lua_set_limits(const struct restrict_lua_limits *lim)
{
	limits = *lim;
}

static void
policy_unref(struct lua_policy *pol)
{
	if (pol == NULL || --pol->refs > 0)
		return;
	if (pol->L)
		lua_close(pol->L);
	free(pol->path);
	free(pol);
}

/* ---- running code on a coroutine under the budget ---- */

struct prep {
	struct lua_call *call;
	int fn_ref;                   /* function to call */
	const struct pt_policy_request *req; /* real call: its attributes */
	int entry_ref;                /* test: the test entry (request table) */
	int nargs;
	int fresh_env;                /* give the call its own globals */
};

static const char *
state_name(enum pt_stage st)
{
	return st == PT_STAGE_HELO ? "HELO" : restrict_stage_name(st);
}

static void
set_str(lua_State *L, const char *name, const char *v)
{
	lua_pushstring(L, v ? v : "");
	lua_setfield(L, -2, name);
}

static void
push_attributes(lua_State *L, const struct pt_policy_request *r)
{
	lua_createtable(L, 0, 20);
	set_str(L, "request", "smtpd_access_policy");
	set_str(L, "protocol_state", r ? state_name(r->stage) : "RCPT");
	set_str(L, "protocol_name", r ? r->protocol_name : "ESMTP");
	static const char *const names[] = { "client_address", "client_name",
		"reverse_client_name", "helo_name", "sender", "recipient", "queue_id",
		"sasl_method", "sasl_username", "encryption_protocol", "encryption_cipher", NULL };
	for (int i = 0; names[i]; i++) {
		const char *v = NULL;
		if (r) {
			const char *const vals[] = { r->client_address, r->client_name,
				r->reverse_client_name, r->helo_name, r->sender, r->recipient, r->queue_id,
				r->sasl_method, r->sasl_username, r->encryption_protocol,
				r->encryption_cipher };
			v = vals[i];
		}
		set_str(L, names[i], v);
	}
	lua_pushinteger(L, r ? (lua_Integer)r->recipient_count : 0);
	lua_setfield(L, -2, "recipient_count");
	lua_pushinteger(L, r ? (lua_Integer)r->size : 0);
	lua_setfield(L, -2, "size");
}

/* Runs protected on the policy's main thread: a memory error while
 * setting up must not escape as a panic. */
static int
prepare(lua_State *L)
{
	struct prep *p = lua_touserdata(L, 1);
	lua_State *co = lua_newthread(L);
	p->call->co = co;
	p->call->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	if (p->fresh_env) {
		lua_sandbox_push_call_env(L);
		p->call->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, p->fn_ref);
	p->nargs = 0;
	if (p->req || p->entry_ref != LUA_NOREF) {
		push_attributes(L, p->req);
		if (p->entry_ref != LUA_NOREF) {
			/* Raw reads: a metamethod here would run outside any budget. */
			lua_rawgeti(L, LUA_REGISTRYINDEX, p->entry_ref);
			lua_pushliteral(L, "request");
			if (lua_rawget(L, -2) == LUA_TTABLE) {
				lua_pushnil(L);
				while (lua_next(L, -2)) {
					lua_pushvalue(L, -2);
					lua_insert(L, -2);
					lua_rawset(L, -6);
				}
			}
			lua_pop(L, 2);
		}
		p->nargs = 1;
	}
	if (!lua_checkstack(co, p->nargs + 1))
		return luaL_error(L, "out of memory");
	lua_xmove(L, co, p->nargs + 1);
	return 0;
}

static void
call_free(struct lua_call *call)
{
	lua_State *L = call->pol->L;
	if (call->co_ref != LUA_NOREF && call->co_ref != 0)
		luaL_unref(L, LUA_REGISTRYINDEX, call->co_ref);
	if (call->env_ref != LUA_NOREF && call->env_ref != 0)
		luaL_unref(L, LUA_REGISTRYINDEX, call->env_ref);
	policy_unref(call->pol);
	free(call);
}

/* "file.lua:12: message" -> where = "file.lua:12". */
static void
split_where(const char *msg, const char *path, char *where, size_t wlen)
{
	const char *p = msg;
	while ((p = strchr(p, ':')) != NULL) {
		const char *d = p + 1;
		size_t nd = strspn(d, "0123456789");
		if (nd > 0 && d[nd] == ':') {
			snprintf(where, wlen, "%.*s", (int)(d + nd - msg), msg);
			return;
		}
		p++;
	}
	snprintf(where, wlen, "%s", path);
}

/* Turn a finished run into a result (or a pending state). */
static int
collect(struct lua_call *call, int status, int nres, struct restrict_lua_result *res)
{
	lua_State *co = call->co;
	memset(res, 0, sizeof *res);
	if (status == LUA_YIELD && call->dns_pending)
		return 0;
	res->error = 1;
	if (status == LUA_YIELD) {
		RS_SNPRINTF(res->why, "policy yielded outside postern.dns");
		RS_SNPRINTF(res->where, "%s", call->pol->path);
	} else if (status != LUA_OK) {
		const char *msg = call->aborted ? call->abort_msg
		                  : lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1)
		                  : "error object is not a string";
		split_where(msg, call->pol->path, res->where, sizeof res->where);
		/* "file:12: boom" -> why "boom" (where already says file:12) */
		size_t wl = strlen(res->where);
		if (strncmp(msg, res->where, wl) == 0 && msg[wl] == ':' && msg[wl + 1] == ' ')
			msg += wl + 2;
		RS_SNPRINTF(res->why, "%s", msg);
	} else if (call->chunk) {
		res->error = 0;       /* what a chunk returns is checked by policy_load */
	} else {
		RS_SNPRINTF(res->where, "%s:%d", call->pol->path, call->ret_line);
		if (nres < 1 || lua_type(co, -nres) != LUA_TSTRING) {
			RS_SNPRINTF(res->why, "policy returned %s, not an action string",
			         nres < 1 ? "nothing" : luaL_typename(co, -nres));
		} else {
			size_t len;
			const char *s = lua_tolstring(co, -nres, &len);
			char err[200];
			if (restrict_action_parse(s, len, &res->action, err, sizeof err) < 0)
				RS_SNPRINTF(res->why, "invalid action: %s", err);
			else
				res->error = 0;
		}
	}
	return 1;
}

/* Start fn_ref on a new coroutine; returns 1 finished (res filled), 0
 * pending on DNS. */
static int
start(struct lua_call *call, int fn_ref, const struct pt_policy_request *req, int entry_ref,
      struct restrict_lua_result *res)
{
	lua_State *L = call->pol->L;
	struct prep p = { call, fn_ref, req, entry_ref, 0, !call->chunk };
	call->co_ref = LUA_NOREF;
	call->env_ref = LUA_NOREF;
	call->instr_limit = limits.instructions;
	call->time_ms = limits.time_ms;
	lua_pushcfunction(L, prepare);
	lua_pushlightuserdata(L, &p);
	call->pol->mem.hit = 0;
	if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
		memset(res, 0, sizeof *res);
		res->error = 1;
		RS_SNPRINTF(res->why, "cannot start: %s",
		         lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "memory limit exceeded");
		RS_SNPRINTF(res->where, "%s", call->pol->path);
		lua_pop(L, 1);
		return 1;
	}
	lua_sandbox_arm(call);
	int nres = 0;
	int status = lua_sandbox_resume(call, p.nargs, &nres);
	return collect(call, status, nres, res);
}

static void
log_error(const struct restrict_lua_result *r)
{
	pt_log_as("smtpd", PT_LOG_ERROR, "lua policy %s: %s", r->where, r->why);
}

/* Calls, errors (overruns included) and budget overruns per policy file. */
static void
count_call(const struct lua_call *call, const struct restrict_lua_result *res)
{
	const char *pol = call->pol && call->pol->path ? call->pol->path : "-";
	pt_metric_inc(pt_metric_counter("postern_lua_calls", "Lua policy calls", "policy", pol, NULL));
	if (res->error)
		pt_metric_inc(pt_metric_counter("postern_lua_errors", "Lua policy calls that failed (451 4.3.5)",
		                                "policy", pol, NULL));
	if (call->aborted)
		pt_metric_inc(pt_metric_counter("postern_lua_budget_overruns",
		                                "Lua policy calls stopped by the instruction, time or memory budget",
		                                "policy", pol, NULL));
}

static void
finish_real(struct lua_call *call, const struct restrict_lua_result *res)
{
	count_call(call, res);
	if (res->error)
		log_error(res);
	restrict_lua_done *done = call->done;
	void *arg = call->done_arg;
	call_free(call);
	done(arg, res);
}

struct resume_args {
	struct lua_call *call;
	const struct pt_dns_answer *ans;
};

static int
push_resume_values(lua_State *L)
{
	struct resume_args *a = lua_touserdata(L, 1);
	lua_lib_push_dns(L, a->ans);
	if (!lua_checkstack(a->call->co, 2))
		return luaL_error(L, "out of memory");
	lua_xmove(L, a->call->co, 2);
	return 0;
}

void
lua_policy_resume(struct lua_call *call, const struct pt_dns_answer *ans)
{
	lua_State *L = call->pol->L;
	struct restrict_lua_result res;
	struct resume_args a = { call, ans };
	lua_pushcfunction(L, push_resume_values);
	lua_pushlightuserdata(L, &a);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
		lua_pop(L, 1);
		memset(&res, 0, sizeof res);
		res.error = 1;
		RS_SNPRINTF(res.why, "memory limit exceeded");
		RS_SNPRINTF(res.where, "%s", call->pol->path);
		finish_real(call, &res);
		return;
	}
	/* The budget counts instructions, not the wait for the answer. */
	clock_gettime(CLOCK_MONOTONIC, &call->start);
	int nres = 0;
	int status = lua_sandbox_resume(call, 2, &nres);
	if (collect(call, status, nres, &res))
		finish_real(call, &res);
}

/* ---- loading ---- */

static char *
read_policy(const char *path, size_t *len, struct stat *st, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
		return NULL;
	}
	char *buf = NULL;
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		snprintf(err, errlen, "not a regular file");
		goto out;
	}
	if (st->st_size > POLICY_FILE_MAX) {
		snprintf(err, errlen, "larger than %d bytes", POLICY_FILE_MAX);
		goto out;
	}
	buf = malloc((size_t)st->st_size + 1);
	if (buf == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	ssize_t got = pt_read_full(fd, buf, (size_t)st->st_size);
	if (got != (ssize_t)st->st_size) {
		snprintf(err, errlen, "read error: %s", got < 0 ? strerror(errno) : "file shrank");
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[got] = '\0';
	*len = (size_t)got;
out:
	close(fd);
	return buf;
}

/* The action matches the expectation: equal, or expect followed by a
 * space ("REJECT" matches "REJECT go away"). */
static int
expect_matches(const char *expect, const char *got)
{
	size_t n = strlen(expect);
	return strncmp(expect, got, n) == 0 && (got[n] == '\0' || got[n] == ' ');
}

static int
run_tests(struct lua_policy *pol, char *err, size_t errlen)
{
	lua_State *L = pol->L;
	if (pol->tests_ref == LUA_NOREF)
		return 0;
	lua_rawgeti(L, LUA_REGISTRYINDEX, pol->tests_ref);
	lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
	lua_pop(L, 1);
	int rc = 0;
	for (lua_Integer i = 1; i <= n && rc == 0; i++) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, pol->tests_ref);
		lua_rawgeti(L, -1, i);
		if (!lua_istable(L, -1)) {
			snprintf(err, errlen, "test %lld is not a table", (long long)i);
			lua_pop(L, 2);
			return -1;
		}
		/* Raw reads: no metamethod of the tests table runs unbudgeted. */
		char name[100], expect[RESTRICT_TEXT_MAX + 1];
		lua_pushliteral(L, "name");
		lua_rawget(L, -2);
		RS_SNPRINTF(name, "%s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "");
		lua_pushliteral(L, "expect");
		lua_rawget(L, -3);
		if (lua_type(L, -1) != LUA_TSTRING) {
			snprintf(err, errlen, "test %lld%s%s%s has no expect string", (long long)i,
			         name[0] ? " (" : "", name, name[0] ? ")" : "");
			lua_pop(L, 4);
			return -1;
		}
		RS_SNPRINTF(expect, "%s", lua_tostring(L, -1));
		lua_pushliteral(L, "now");
		lua_rawget(L, -4);
		long long now = lua_isinteger(L, -1) ? (long long)lua_tointeger(L, -1) : 0;
		lua_pop(L, 3);
		int entry_ref = luaL_ref(L, LUA_REGISTRYINDEX);
		lua_pop(L, 1);

		struct lua_call *call = calloc(1, sizeof *call);
		if (call == NULL) {
			luaL_unref(L, LUA_REGISTRYINDEX, entry_ref);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		call->pol = pol;
		pol->refs++;
		call->testing = 1;
		call->fixture_ref = entry_ref;
		call->now_override = now;
		struct restrict_lua_result res;
		start(call, pol->fn_ref, NULL, entry_ref, &res);
		char got[RESTRICT_TEXT_MAX + 64];
		if (res.error)
			RS_SNPRINTF(got, "error (%s)", res.why);
		else if (lua_type(call->co, -1) == LUA_TSTRING)
			RS_SNPRINTF(got, "%s", lua_tostring(call->co, -1));
		else
			RS_SNPRINTF(got, "?");
		int ok = strcmp(expect, "error") == 0 ? res.error : !res.error && expect_matches(expect, got);
		if (!ok) {
			snprintf(err, errlen, "test %lld%s%s%s failed: expected \"%s\", got \"%s\"",
			         (long long)i, name[0] ? " (" : "", name, name[0] ? ")" : "", expect, got);
			rc = -1;
		}
		call_free(call);
		luaL_unref(L, LUA_REGISTRYINDEX, entry_ref);
	}
	lua_lib_clear_test_counters();
	return rc;
}

/* Compile path, run its chunk, keep the function it returns, run its
 * tests. NULL with the reason in err. */
static struct lua_policy *
policy_load(const char *path, struct stat *st, char *err, size_t errlen)
{
	size_t len;
	char *text = read_policy(path, &len, st, err, errlen);
	if (text == NULL)
		return NULL;
	struct lua_policy *pol = calloc(1, sizeof *pol);
	if (pol == NULL || (pol->path = strdup(path)) == NULL) {
		free(pol);
		free(text);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pol->refs = 1;
	pol->mem.limit = limits.memory;
	pol->fn_ref = pol->tests_ref = pol->chunk_ref = LUA_NOREF;
	pol->L = lua_sandbox_new(&pol->mem);
	if (pol->L == NULL) {
		free(text);
		snprintf(err, errlen, "cannot create a Lua state within lua_policy_memory_limit");
		policy_unref(pol);
		return NULL;
	}
	lua_State *L = pol->L;
	int rc = lua_sandbox_load(L, text, len, path, err, errlen);
	free(text);
	if (rc < 0) {
		policy_unref(pol);
		return NULL;
	}
	pol->chunk_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	struct lua_call *call = calloc(1, sizeof *call);
	if (call == NULL) {
		snprintf(err, errlen, "out of memory");
		policy_unref(pol);
		return NULL;
	}
	call->pol = pol;
	pol->refs++;
	call->chunk = 1;
	struct restrict_lua_result res;
	start(call, pol->chunk_ref, NULL, LUA_NOREF, &res);
	lua_State *co = call->co;
	if (res.error) {
		snprintf(err, errlen, "%s", res.why);
	} else if (lua_gettop(co) < 1 || !lua_isfunction(co, 1)) {
		snprintf(err, errlen, "the file must return a function (and optionally a tests table)");
		res.error = 1;
	} else if (lua_gettop(co) >= 2 && !lua_isnil(co, 2) && !lua_istable(co, 2)) {
		snprintf(err, errlen, "the second value returned must be a tests table");
		res.error = 1;
	} else {
		lua_settop(co, 2);
		lua_xmove(co, L, 2);
		pol->tests_ref = lua_istable(L, -1) ? luaL_ref(L, LUA_REGISTRYINDEX) : (lua_pop(L, 1), LUA_NOREF);
		pol->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
		/* What the file set up is shared by every call: read-only. */
		if (lua_sandbox_seal(L) < 0) {
			snprintf(err, errlen, "memory limit exceeded");
			res.error = 1;
		}
	}
	call_free(call);
	if (res.error || run_tests(pol, err, errlen) < 0) {
		policy_unref(pol);
		return NULL;
	}
	return pol;
}

/* ---- slots: the live version per path ---- */

static int
same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Try the file's current contents: 1 swapped in, -1 refused (the old
 * version keeps running). */
static int
slot_reload(struct restrict_lua_slot *slot)
{
	char err[512];
	struct stat st;
	memset(&st, 0, sizeof st);
	struct lua_policy *pol = policy_load(slot->path, &st, err, sizeof err);
	if (pol == NULL) {
		pt_log_as("smtpd", PT_LOG_ERROR,
		          "lua policy %s: new version refused, the previous one stays in use: %s",
		          slot->path, err);
		slot->refused = st;
		slot->have_refused = 1;
		return -1;
	}
	policy_unref(slot->cur);
	slot->cur = pol;
	slot->loaded = st;
	slot->have_refused = 0;
	pt_log_as("smtpd", PT_LOG_INFO, "lua policy %s: loaded", slot->path);
	return 1;
}

int
restrict_lua_check_file(struct restrict_lua_slot *slot)
{
	struct stat st;
	clock_gettime(CLOCK_MONOTONIC, &slot->last_check);
	if (stat(slot->path, &st) < 0)
		return 0;             /* gone: keep serving what we have */
	if (same_file(&st, &slot->loaded))
		return 0;
	if (slot->have_refused && same_file(&st, &slot->refused))
		return -1;
	return slot_reload(slot);
}

static void
maybe_check_file(struct restrict_lua_slot *slot)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long long ms = (now.tv_sec - slot->last_check.tv_sec) * 1000LL +
	               (now.tv_nsec - slot->last_check.tv_nsec) / 1000000;
	if (ms >= CHECK_INTERVAL_MS)
		restrict_lua_check_file(slot);
}

struct restrict_lua_slot *
restrict_lua_open(const char *path, char *err, size_t errlen)
{
	for (struct restrict_lua_slot *s = slots; s; s = s->next)
		if (strcmp(s->path, path) == 0) {
			s->opens++;
			return s;
		}
	struct restrict_lua_slot *slot = calloc(1, sizeof *slot);
	if (slot == NULL || (slot->path = strdup(path)) == NULL) {
		free(slot);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	slot->cur = policy_load(path, &slot->loaded, err, errlen);
	if (slot->cur == NULL) {
		free(slot->path);
		free(slot);
		return NULL;
	}
	clock_gettime(CLOCK_MONOTONIC, &slot->last_check);
	slot->opens = 1;
	slot->next = slots;
	slots = slot;
	return slot;
}

int
restrict_lua_validate(const char *path, char *err, size_t errlen)
{
	struct stat st;
	struct lua_policy *pol = policy_load(path, &st, err, errlen);
	if (pol == NULL)
		return -1;
	policy_unref(pol);
	return 0;
}

void
restrict_lua_close(struct restrict_lua_slot *slot)
{
	if (slot == NULL || --slot->opens > 0)
		return;
	for (struct restrict_lua_slot **pp = &slots; *pp; pp = &(*pp)->next)
		if (*pp == slot) {
			*pp = slot->next;
			break;
		}
	policy_unref(slot->cur);
	free(slot->path);
	free(slot);
}

void
restrict_lua_shutdown(void)
{
	while (slots) {
		slots->opens = 1;
		restrict_lua_close(slots);
	}
}

void
restrict_lua_call(struct restrict_lua_slot *slot, struct pt_loop *loop,
                  const struct pt_policy_request *req, restrict_lua_done *done, void *arg)
{
	struct restrict_lua_result res;
	if (slot == NULL) {
		memset(&res, 0, sizeof res);
		res.error = 1;
		RS_SNPRINTF(res.why, "policy not loaded");
		RS_SNPRINTF(res.where, "check_lua_policy");
		done(arg, &res);
		return;
	}
	maybe_check_file(slot);
	struct lua_call *call = calloc(1, sizeof *call);
	if (call == NULL) {
		memset(&res, 0, sizeof res);
		res.error = 1;
		RS_SNPRINTF(res.why, "out of memory");
		RS_SNPRINTF(res.where, "%s", slot->path);
		done(arg, &res);
		return;
	}
	call->pol = slot->cur;
	call->pol->refs++;
	call->loop = loop;
	call->done = done;
	call->done_arg = arg;
	if (start(call, call->pol->fn_ref, req, LUA_NOREF, &res))
		finish_real(call, &res);
}
