/* Library functions whose cost depends on their data, rewritten or wrapped
 * so that every step of work is charged to the running call's budget
 * (lua_sandbox_charge raises when it is spent):
 *   - string.find/match/gmatch/gsub: a Lua 5.4 pattern matcher of our own
 *     that counts its steps. Backtracking patterns ("a*a*a*...b") cost
 *     exponential time in Lua's lstrlib inside a single C call, where the
 *     count hook never fires; here each step is counted instead.
 *   - table.insert/remove/move/concat/unpack/sort: they loop over ranges
 *     that a table's length (a border of a sparse table can be 2^40) or
 *     the arguments choose; they charge the range before touching it and
 *     work on the table itself (raw access, no metamethods), so no C
 *     function runs a loop the budget does not see.
 *   - string.pack/unpack/packsize, tonumber, os.date, utf8.*: scans of
 *     their string arguments that allocate little; charged by size. The
 *     other string functions build a result as large as their work, and
 *     allocations are charged (lua_sandbox.c).
 * What remains unmetered costs at most one pass over memory the policy
 * holds (bounded by lua_policy_memory_limit) per VM instruction. */
/* memmem is GNU (_GNU_SOURCE comes from the build). */
#include <ctype.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "lua_int.h"

/* Bytes scanned per budget unit (one unit ~ one VM instruction). */
#define BYTES_PER_UNIT 32
/* Pattern steps are charged in batches: the charge checks the clock. */
#define STEP_BATCH 4096
#define MAX_CAPTURES 32
#define MAX_DEPTH 200             /* recursion of the matcher, as lstrlib */
#define CAP_OPEN (-1)
#define CAP_POS (-2)

static void
charge_bytes(lua_State *L, size_t n)
{
	lua_sandbox_charge(L, 1 + (long long)(n / BYTES_PER_UNIT));
}

/* A range of n elements (saturating: a wrapped range is just too much). */
static void
charge_count(lua_State *L, lua_Unsigned n)
{
	lua_sandbox_charge(L, n >= (lua_Unsigned)LLONG_MAX / 2 ? LLONG_MAX / 2 : 1 + (long long)n);
}

/* ---- the pattern matcher ---- */

struct matcher {
	lua_State *L;
	const char *s0, *s_end;       /* subject */
	const char *p_end;            /* pattern */
	long long steps;              /* not yet charged */
	int depth;
	int ncap;
	struct {
		const char *at;
		ptrdiff_t len;            /* CAP_OPEN, CAP_POS or a length */
	} cap[MAX_CAPTURES];
};

static void
step(struct matcher *m, long long n)
{
	m->steps += n;
	if (m->steps >= STEP_BATCH) {
		long long s = m->steps;
		m->steps = 0;
		lua_sandbox_charge(m->L, s);
	}
}

static void
settle(struct matcher *m)
{
	if (m->steps > 0) {
		long long s = m->steps;
		m->steps = 0;
		lua_sandbox_charge(m->L, s);
	}
}

/* Does c belong to class letter cl (%a, %d, ...; upper case negates)? A
 * letter that names no class stands for itself. */
static int
in_class(int c, int cl)
{
	int r;
	switch (tolower(cl)) {
	case 'a': r = isalpha(c); break;
	case 'c': r = iscntrl(c); break;
	case 'd': r = isdigit(c); break;
	case 'g': r = isgraph(c); break;
	case 'l': r = islower(c); break;
	case 'p': r = ispunct(c); break;
	case 's': r = isspace(c); break;
	case 'u': r = isupper(c); break;
	case 'w': r = isalnum(c); break;
	case 'x': r = isxdigit(c); break;
	case 'z': r = c == 0; break;   /* deprecated, still in 5.4 */
	default: return cl == c;
	}
	if (isupper(cl))
		r = !r;
	return r != 0;
}

/* set points at '[', close at its ']'. */
static int
in_set(struct matcher *m, int c, const char *set, const char *close)
{
	const char *p = set + 1;
	int negate = 0;
	if (*p == '^') {
		negate = 1;
		p++;
	}
	step(m, 1 + (close - p) / 8);
	while (p < close) {
		if (*p == '%' && p + 1 < close) {
			if (in_class(c, (unsigned char)p[1]))
				return !negate;
			p += 2;
		} else if (p + 2 < close && p[1] == '-') {
			if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
				return !negate;
			p += 3;
		} else {
			if ((unsigned char)*p == c)
				return !negate;
			p++;
		}
	}
	return negate;
}

/* End of the single-character item starting at p. */
static const char *
item_end(struct matcher *m, const char *p)
{
	if (*p == '%') {
		if (p + 1 >= m->p_end)
			luaL_error(m->L, "malformed pattern (ends with '%%')");
		return p + 2;
	}
	if (*p == '[') {
		p++;
		if (p < m->p_end && *p == '^')
			p++;
		/* The first character of a set may be ']' itself. */
		do {
			if (p >= m->p_end)
				luaL_error(m->L, "malformed pattern (missing ']')");
			if (*p++ == '%' && p < m->p_end)
				p++;
		} while (p >= m->p_end || *p != ']');
		return p + 1;
	}
	return p + 1;
}

static int
item_match(struct matcher *m, const char *s, const char *p, const char *ep)
{
	if (s >= m->s_end)
		return 0;
	int c = (unsigned char)*s;
	switch (*p) {
	case '.': return 1;
	case '%': return in_class(c, (unsigned char)p[1]);
	case '[': return in_set(m, c, p, ep - 1);
	default: return (unsigned char)*p == c;
	}
}

static const char *match(struct matcher *m, const char *s, const char *p);

static const char *
greedy(struct matcher *m, const char *s, const char *p, const char *ep)
{
	ptrdiff_t n = 0;
	while (item_match(m, s + n, p, ep)) {
		n++;
		step(m, 1);
	}
	for (; n >= 0; n--) {
		const char *r = match(m, s + n, ep + 1);
		if (r)
			return r;
	}
	return NULL;
}

static const char *
lazy(struct matcher *m, const char *s, const char *p, const char *ep)
{
	for (;;) {
		const char *r = match(m, s, ep + 1);
		if (r)
			return r;
		if (!item_match(m, s, p, ep))
			return NULL;
		s++;
	}
}

static const char *
open_capture(struct matcher *m, const char *s, const char *p, ptrdiff_t what)
{
	if (m->ncap >= MAX_CAPTURES)
		luaL_error(m->L, "too many captures");
	m->cap[m->ncap].at = s;
	m->cap[m->ncap].len = what;
	m->ncap++;
	const char *r = match(m, s, p);
	if (r == NULL)
		m->ncap--;
	return r;
}

static const char *
close_capture(struct matcher *m, const char *s, const char *p)
{
	int i = m->ncap - 1;
	while (i >= 0 && m->cap[i].len != CAP_OPEN)
		i--;
	if (i < 0)
		luaL_error(m->L, "invalid pattern capture");
	m->cap[i].len = s - m->cap[i].at;
	const char *r = match(m, s, p);
	if (r == NULL)
		m->cap[i].len = CAP_OPEN;
	return r;
}

static const char *
balanced(struct matcher *m, const char *s, const char *p)
{
	if (p + 1 >= m->p_end)
		luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
	if (s >= m->s_end || *s != p[0])
		return NULL;
	int open = p[0], close = p[1], depth = 1;
	while (++s < m->s_end) {
		step(m, 1);
		if (*s == close) {
			if (--depth == 0)
				return s + 1;
		} else if (*s == open) {
			depth++;
		}
	}
	return NULL;
}

static const char *
backref(struct matcher *m, const char *s, int digit)
{
	int i = digit - '1';
	if (i < 0 || i >= m->ncap || m->cap[i].len == CAP_OPEN)
		luaL_error(m->L, "invalid capture index %%%d", i + 1);
	ptrdiff_t len = m->cap[i].len;
	if (len < 0)
		return NULL;              /* a position capture matches nothing */
	step(m, 1 + len / BYTES_PER_UNIT);
	if (m->s_end - s >= len && memcmp(m->cap[i].at, s, (size_t)len) == 0)
		return s + len;
	return NULL;
}

/* Match pattern p at s: the end of the match, or NULL. Plain items loop;
 * captures and quantifiers recurse, at most MAX_DEPTH deep. */
static const char *
match(struct matcher *m, const char *s, const char *p)
{
	if (++m->depth > MAX_DEPTH)
		luaL_error(m->L, "pattern too complex");
	for (;;) {
		step(m, 1);
		if (p >= m->p_end)
			break;
		if (*p == '(') {
			if (p + 1 < m->p_end && p[1] == ')')
				s = open_capture(m, s, p + 2, CAP_POS);
			else
				s = open_capture(m, s, p + 1, CAP_OPEN);
			break;
		}
		if (*p == ')') {
			s = close_capture(m, s, p + 1);
			break;
		}
		if (*p == '$' && p + 1 == m->p_end) {
			if (s != m->s_end)
				s = NULL;
			break;
		}
		if (*p == '%' && p + 1 < m->p_end) {
			if (p[1] == 'b') {
				s = balanced(m, s, p + 2);
				if (s == NULL)
					break;
				p += 4;
				continue;
			}
			if (p[1] == 'f') {
				p += 2;
				if (p >= m->p_end || *p != '[')
					luaL_error(m->L, "missing '[' after '%%f' in pattern");
				const char *ep = item_end(m, p);
				int before = s == m->s0 ? 0 : (unsigned char)s[-1];
				int here = s < m->s_end ? (unsigned char)*s : 0;
				if (in_set(m, before, p, ep - 1) || !in_set(m, here, p, ep - 1)) {
					s = NULL;
					break;
				}
				p = ep;
				continue;
			}
			if (isdigit((unsigned char)p[1])) {
				s = backref(m, s, (unsigned char)p[1]);
				if (s == NULL)
					break;
				p += 2;
				continue;
			}
		}
		const char *ep = item_end(m, p);
		int hit = item_match(m, s, p, ep);
		char q = ep < m->p_end ? *ep : 0;
		if (q == '?') {
			const char *r;
			if (hit && (r = match(m, s + 1, ep + 1)) != NULL) {
				s = r;
				break;
			}
			p = ep + 1;
			continue;
		}
		if (q == '+') {
			s = hit ? greedy(m, s + 1, p, ep) : NULL;
			break;
		}
		if (q == '*') {
			s = greedy(m, s, p, ep);
			break;
		}
		if (q == '-') {
			s = lazy(m, s, p, ep);
			break;
		}
		if (!hit) {
			s = NULL;
			break;
		}
		s++;
		p = ep;
	}
	m->depth--;
	return s;
}

static void
matcher_init(struct matcher *m, lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
	m->L = L;
	m->s0 = s;
	m->s_end = s + ls;
	m->p_end = p + lp;
	m->steps = 0;
	m->depth = 0;
	m->ncap = 0;
}

/* Capture i of the match s..e (the whole match when there are none). */
static void
push_capture(struct matcher *m, int i, const char *s, const char *e)
{
	if (i >= m->ncap) {
		if (i != 0)
			luaL_error(m->L, "invalid capture index %%%d", i + 1);
		lua_pushlstring(m->L, s, (size_t)(e - s));
		return;
	}
	ptrdiff_t len = m->cap[i].len;
	if (len == CAP_OPEN)
		luaL_error(m->L, "unfinished capture");
	if (len == CAP_POS)
		lua_pushinteger(m->L, (lua_Integer)(m->cap[i].at - m->s0) + 1);
	else
		lua_pushlstring(m->L, m->cap[i].at, (size_t)len);
}

static int
push_captures(struct matcher *m, const char *s, const char *e, int whole)
{
	int n = (m->ncap == 0 && whole) ? 1 : m->ncap;
	luaL_checkstack(m->L, n, "too many captures");
	for (int i = 0; i < n; i++)
		push_capture(m, i, s, e);
	return n;
}

/* Lua 5.4's rule for a start position. */
static size_t
start_pos(lua_Integer pos, size_t len)
{
	if (pos > 0)
		return (size_t)pos;
	if (pos == 0 || pos < -(lua_Integer)len)
		return 1;
	return len + (size_t)pos + 1;
}

static int
no_specials(const char *p, size_t lp)
{
	for (size_t i = 0; i < lp; i++)
		if (strchr("^$*+?.([%-", p[i]) != NULL && p[i] != '\0')
			return 0;
	return 1;
}

static int
find_or_match(lua_State *L, int find)
{
	size_t ls, lp;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
	if (init > ls) {
		lua_pushnil(L);
		return 1;
	}
	if (find && (lua_toboolean(L, 4) || no_specials(p, lp))) {
		/* memmem is linear (two-way), unlike a naive search. */
		charge_bytes(L, ls - init + lp);
		const char *hit = memmem(s + init, ls - init, p, lp);
		if (hit == NULL) {
			lua_pushnil(L);
			return 1;
		}
		lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
		lua_pushinteger(L, (lua_Integer)(hit - s + lp));
		return 2;
	}
	struct matcher m;
	int anchor = lp > 0 && *p == '^';
	if (anchor) {
		p++;
		lp--;
	}
	matcher_init(&m, L, s, ls, p, lp);
	const char *at = s + init;
	do {
		m.ncap = 0;
		m.depth = 0;
		const char *e = match(&m, at, p);
		if (e != NULL) {
			settle(&m);
			if (find) {
				lua_pushinteger(L, (lua_Integer)(at - s) + 1);
				lua_pushinteger(L, (lua_Integer)(e - s));
				return push_captures(&m, NULL, NULL, 0) + 2;
			}
			return push_captures(&m, at, e, 1);
		}
	} while (at++ < m.s_end && !anchor);
	settle(&m);
	lua_pushnil(L);
	return 1;
}

static int
str_find(lua_State *L)
{
	return find_or_match(L, 1);
}

static int
str_match(lua_State *L)
{
	return find_or_match(L, 0);
}

/* gmatch's iterator: upvalues subject, pattern, next offset, end of the
 * last match (-1 none), so an empty match is not repeated there. */
static int
gmatch_next(lua_State *L)
{
	size_t ls, lp;
	const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
	const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
	lua_Integer pos = lua_tointeger(L, lua_upvalueindex(3));
	lua_Integer last = lua_tointeger(L, lua_upvalueindex(4));
	struct matcher m;
	matcher_init(&m, L, s, ls, p, lp);
	for (const char *at = s + pos; at <= m.s_end; at++) {
		m.ncap = 0;
		m.depth = 0;
		const char *e = match(&m, at, p);
		if (e != NULL && e - s != last) {
			settle(&m);
			lua_pushinteger(L, e - s);
			lua_copy(L, -1, lua_upvalueindex(3));
			lua_replace(L, lua_upvalueindex(4));
			return push_captures(&m, at, e, 1);
		}
	}
	settle(&m);
	lua_pushinteger(L, (lua_Integer)ls + 1);
	lua_replace(L, lua_upvalueindex(3));
	return 0;
}

static int
str_gmatch(lua_State *L)
{
	size_t ls;
	luaL_checklstring(L, 1, &ls);
	luaL_checkstring(L, 2);
	size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
	if (init > ls)
		init = ls + 1;
	lua_settop(L, 2);
	lua_pushinteger(L, (lua_Integer)init);
	lua_pushinteger(L, -1);
	lua_pushcclosure(L, gmatch_next, 4);
	return 1;
}

static void
add_replacement(struct matcher *m, luaL_Buffer *b, const char *s, const char *e, int kind)
{
	lua_State *L = m->L;
	if (kind == LUA_TSTRING || kind == LUA_TNUMBER) {
		size_t lr;
		const char *r = lua_tolstring(L, 3, &lr);
		step(m, 1 + (long long)(lr / BYTES_PER_UNIT));
		const char *pct;
		while ((pct = memchr(r, '%', lr)) != NULL) {
			luaL_addlstring(b, r, (size_t)(pct - r));
			pct++;
			if (pct >= r + lr)
				luaL_error(L, "invalid use of '%%' in replacement string");
			if (*pct == '%') {
				luaL_addchar(b, '%');
			} else if (*pct == '0') {
				luaL_addlstring(b, s, (size_t)(e - s));
			} else if (isdigit((unsigned char)*pct)) {
				push_capture(m, *pct - '1', s, e);
				luaL_tolstring(L, -1, NULL);
				lua_remove(L, -2);
				luaL_addvalue(b);
			} else {
				luaL_error(L, "invalid use of '%%' in replacement string");
			}
			lr -= (size_t)(pct + 1 - r);
			r = pct + 1;
		}
		luaL_addlstring(b, r, lr);
		return;
	}
	settle(m);
	if (kind == LUA_TFUNCTION) {
		lua_pushvalue(L, 3);
		int n = push_captures(m, s, e, 1);
		lua_call(L, n, 1);
	} else {
		push_capture(m, 0, s, e);
		lua_gettable(L, 3);
	}
	if (!lua_toboolean(L, -1)) {
		lua_pop(L, 1);
		luaL_addlstring(b, s, (size_t)(e - s));
	} else if (!lua_isstring(L, -1)) {
		luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
	} else {
		luaL_addvalue(b);
	}
}

static int
str_gsub(lua_State *L)
{
	size_t ls, lp;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	int kind = lua_type(L, 3);
	lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
	luaL_argexpected(L, kind == LUA_TNUMBER || kind == LUA_TSTRING || kind == LUA_TFUNCTION ||
	                 kind == LUA_TTABLE, 3, "string/function/table");
	int anchor = lp > 0 && *p == '^';
	if (anchor) {
		p++;
		lp--;
	}
	struct matcher m;
	matcher_init(&m, L, s, ls, p, lp);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	const char *at = s, *last = NULL;
	lua_Integer n = 0;
	while (n < max) {
		m.ncap = 0;
		m.depth = 0;
		const char *e = match(&m, at, p);
		if (e != NULL && e != last) {
			n++;
			add_replacement(&m, &b, at, e, kind);
			at = last = e;
		} else if (at < m.s_end) {
			luaL_addchar(&b, *at++);
		} else {
			break;
		}
		if (anchor)
			break;
	}
	settle(&m);
	luaL_addlstring(&b, at, (size_t)(m.s_end - at));
	luaL_pushresult(&b);
	lua_pushinteger(L, n);
	return 2;
}

/* ---- table functions: raw access, ranges charged first ---- */

static lua_Integer
raw_len(lua_State *L, int idx)
{
	return (lua_Integer)lua_rawlen(L, idx);
}

static int
tab_insert(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_Integer e = raw_len(L, 1) + 1, pos;
	switch (lua_gettop(L)) {
	case 2:
		pos = e;
		break;
	case 3:
		pos = luaL_checkinteger(L, 2);
		luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)e, 2, "position out of bounds");
		charge_count(L, (lua_Unsigned)(e - pos));
		for (lua_Integer i = e; i > pos; i--) {
			lua_rawgeti(L, 1, i - 1);
			lua_rawseti(L, 1, i);
		}
		break;
	default:
		return luaL_error(L, "wrong number of arguments to 'insert'");
	}
	lua_pushvalue(L, -1);
	lua_rawseti(L, 1, pos);
	return 0;
}

static int
tab_remove(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_Integer size = raw_len(L, 1);
	lua_Integer pos = luaL_optinteger(L, 2, size);
	if (pos != size)
		luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 2, "position out of bounds");
	charge_count(L, size > pos ? (lua_Unsigned)(size - pos) : 0);
	lua_rawgeti(L, 1, pos);
	for (; pos < size; pos++) {
		lua_rawgeti(L, 1, pos + 1);
		lua_rawseti(L, 1, pos);
	}
	lua_pushnil(L);
	lua_rawseti(L, 1, pos);
	return 1;
}

static int
tab_move(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_Integer f = luaL_checkinteger(L, 2);
	lua_Integer e = luaL_checkinteger(L, 3);
	lua_Integer t = luaL_checkinteger(L, 4);
	int tt = !lua_isnoneornil(L, 5) ? 5 : 1;
	luaL_checktype(L, tt, LUA_TTABLE);
	if (e >= f) {
		luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
		lua_Integer n = e - f + 1;
		luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
		charge_count(L, (lua_Unsigned)n);
		if (t > e || t <= f || (tt != 1 && !lua_rawequal(L, 1, tt))) {
			for (lua_Integer i = 0; i < n; i++) {
				lua_rawgeti(L, 1, f + i);
				lua_rawseti(L, tt, t + i);
			}
		} else {
			for (lua_Integer i = n - 1; i >= 0; i--) {
				lua_rawgeti(L, 1, f + i);
				lua_rawseti(L, tt, t + i);
			}
		}
	}
	lua_pushvalue(L, tt);
	return 1;
}

static int
tab_concat(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	size_t lsep;
	const char *sep = luaL_optlstring(L, 2, "", &lsep);
	lua_Integer i = luaL_optinteger(L, 3, 1);
	lua_Integer last = luaL_opt(L, luaL_checkinteger, 4, raw_len(L, 1));
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	if (i <= last)
		charge_count(L, (lua_Unsigned)last - (lua_Unsigned)i);
	for (; i <= last; i++) {
		lua_rawgeti(L, 1, i);
		if (!lua_isstring(L, -1))
			return luaL_error(L, "invalid value (at index %I) in table for 'concat'",
			                  (LUAI_UACINT)i);
		luaL_addvalue(&b);
		if (i != last)
			luaL_addlstring(&b, sep, lsep);
		if (i == LUA_MAXINTEGER)
			break;
	}
	luaL_pushresult(&b);
	return 1;
}

static int
tab_unpack(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_Integer i = luaL_optinteger(L, 2, 1);
	lua_Integer e = luaL_opt(L, luaL_checkinteger, 3, raw_len(L, 1));
	if (i > e)
		return 0;
	lua_Unsigned n = (lua_Unsigned)e - (lua_Unsigned)i;
	if (n >= (unsigned int)INT_MAX || !lua_checkstack(L, (int)(++n)))
		return luaL_error(L, "too many results to unpack");
	charge_count(L, n);
	for (; i < e; i++)
		lua_rawgeti(L, 1, i);
	lua_rawgeti(L, 1, e);
	return (int)n;
}

/* table.sort: heapsort, so no input makes it quadratic; every comparison
 * is charged (string comparisons by their length). */
static int
sort_less(lua_State *L, int a, int b)
{
	if (!lua_isnil(L, 2)) {
		lua_sandbox_charge(L, 1);
		lua_pushvalue(L, 2);
		lua_pushvalue(L, a - 1);
		lua_pushvalue(L, b - 2);
		lua_call(L, 2, 1);
		int r = lua_toboolean(L, -1);
		lua_pop(L, 1);
		return r;
	}
	size_t la = 0, lb = 0;
	if (lua_type(L, a) == LUA_TSTRING && lua_type(L, b) == LUA_TSTRING) {
		lua_tolstring(L, a, &la);
		lua_tolstring(L, b, &lb);
	}
	charge_bytes(L, la < lb ? la : lb);
	return lua_compare(L, a, b, LUA_OPLT);
}

static void
sift_down(lua_State *L, lua_Integer root, lua_Integer end)
{
	for (;;) {
		lua_Integer child = 2 * root;
		if (child > end)
			return;
		lua_rawgeti(L, 1, child);
		if (child + 1 <= end) {
			lua_rawgeti(L, 1, child + 1);
			if (sort_less(L, -2, -1)) {
				lua_remove(L, -2);
				child++;
			} else {
				lua_pop(L, 1);
			}
		}
		lua_rawgeti(L, 1, root);
		if (!sort_less(L, -1, -2)) {
			lua_pop(L, 2);
			return;
		}
		/* swap root and child: stack child_value, root_value */
		lua_rawseti(L, 1, child);
		lua_rawseti(L, 1, root);
		root = child;
	}
}

static int
tab_sort(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_Integer n = raw_len(L, 1);
	luaL_argcheck(L, n < INT_MAX, 1, "array too big");
	if (!lua_isnoneornil(L, 2))
		luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_settop(L, 2);
	for (lua_Integer i = n / 2; i >= 1; i--)
		sift_down(L, i, n);
	for (lua_Integer end = n; end > 1; end--) {
		lua_rawgeti(L, 1, 1);
		lua_rawgeti(L, 1, end);
		lua_rawseti(L, 1, 1);
		lua_rawseti(L, 1, end);
		sift_down(L, 1, end - 1);
	}
	return 0;
}

/* ---- wrappers charging by the size of the string arguments ---- */

static int
metered(lua_State *L)
{
	int n = lua_gettop(L);
	size_t bytes = 0;
	for (int i = 1; i <= n; i++)
		if (lua_type(L, i) == LUA_TSTRING)
			bytes += lua_rawlen(L, i);
	charge_bytes(L, bytes);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, n, LUA_MULTRET);
	return lua_gettop(L);
}

/* string.rep: charge the result before building it. */
static int
metered_rep(lua_State *L)
{
	size_t l, lsep = 0;
	luaL_checklstring(L, 1, &l);
	lua_Integer n = luaL_checkinteger(L, 2);
	luaL_optlstring(L, 3, "", &lsep);
	if (n > 0 && (l + lsep) > 0) {
		if ((lua_Unsigned)n > (lua_Unsigned)(SIZE_MAX / 2) / (l + lsep))
			return luaL_error(L, "resulting string too large");
		charge_bytes(L, (size_t)n * (l + lsep));
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

static void
wrap(lua_State *L, int lib, const char *name, lua_CFunction how)
{
	if (lua_getfield(L, lib, name) != LUA_TFUNCTION) {
		lua_pop(L, 1);
		return;
	}
	lua_pushcclosure(L, how, 1);
	lua_setfield(L, lib, name);
}

void
lua_strlib_install(lua_State *L)
{
	/* byte, char, format, lower, upper, reverse, sub: their work is
	 * proportional to what they allocate, which the allocator charges. */
	static const char *const string_metered[] = { "pack", "unpack", "packsize", NULL };
	static const char *const utf8_metered[] = { "len", "offset", "codepoint", "char", NULL };
	lua_getglobal(L, "string");
	int lib = lua_gettop(L);
	for (const char *const *n = string_metered; *n; n++)
		wrap(L, lib, *n, metered);
	wrap(L, lib, "rep", metered_rep);
	static const luaL_Reg pat[] = { { "find", str_find }, { "match", str_match },
		{ "gmatch", str_gmatch }, { "gsub", str_gsub }, { NULL, NULL } };
	luaL_setfuncs(L, pat, 0);
	lua_pop(L, 1);
	lua_getglobal(L, "utf8");
	lib = lua_gettop(L);
	for (const char *const *n = utf8_metered; *n; n++)
		wrap(L, lib, *n, metered);
	lua_pop(L, 1);
	lua_getglobal(L, "table");
	static const luaL_Reg tab[] = { { "insert", tab_insert }, { "remove", tab_remove },
		{ "move", tab_move }, { "concat", tab_concat }, { "unpack", tab_unpack },
		{ "sort", tab_sort }, { NULL, NULL } };
	luaL_setfuncs(L, tab, 0);
	lua_pop(L, 1);
	lua_getglobal(L, "os");
	wrap(L, lua_gettop(L), "date", metered);
	lua_pop(L, 1);
	lua_pushglobaltable(L);
	wrap(L, lua_gettop(L), "tonumber", metered);
	lua_pop(L, 1);
}
