/* The IMAP command reader (RFC 3501 §4, §9; RFC 7888 literals): framing
 * that survives reads split anywhere, then a parse of the whole command
 * into tag, name and argument tree. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_parse.h"

void
imap_reader_init(struct imap_reader *r, size_t max_line, size_t max_literal)
{
	memset(r, 0, sizeof(*r));
	r->max_line = max_line;
	r->max_literal = max_literal;
}

void
imap_reader_reset(struct imap_reader *r)
{
	r->buf.len = 0;
	r->buf.oom = 0;
	if (r->buf.p)
		r->buf.p[0] = 0;
	/* A big APPEND's buffer is not kept for the next command. */
	if (r->buf.cap > 65536) {
		pt_strbuf_free(&r->buf);
		r->buf.max = 0;
	}
	r->line_len = 0;
	r->lit_left = 0;
	r->in_literal = 0;
	r->cr = 0;
	r->nlits = 0;
	r->total = 0;
}

void
imap_reader_free(struct imap_reader *r)
{
	pt_strbuf_free(&r->buf);
	free(r->lits);
	r->lits = NULL;
	r->nlits = r->caplits = 0;
}

int
imap_reader_busy(const struct imap_reader *r)
{
	return r->buf.len > 0 || r->in_literal || r->line_len > 0;
}

/* "{123}" or "{123+}" at the end of the current line: 1 with *n, *plus. */
static int
literal_marker(const struct imap_reader *r, size_t *mark, size_t *n, int *plus)
{
	const char *b = r->buf.p;
	size_t end = r->buf.len, start = end - r->line_len, p;

	if (b == NULL || end == start || b[end - 1] != '}')
		return 0;
	p = end - 1;
	*plus = 0;
	if (p > start && b[p - 1] == '+') {
		*plus = 1;
		p--;
	}
	size_t digits_end = p;
	while (p > start && b[p - 1] >= '0' && b[p - 1] <= '9')
		p--;
	if (p == digits_end || p == start || b[p - 1] != '{' || digits_end - p > 19)
		return 0;
	unsigned long long v = 0;
	for (size_t i = p; i < digits_end; i++)
		v = v * 10 + (unsigned)(b[i] - '0');
	*mark = p - 1;
	*n = v > SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)v;
	return 1;
}

static int
add_literal(struct imap_reader *r, size_t mark, size_t data, size_t len)
{
	if (r->nlits == r->caplits) {
		size_t cap = r->caplits ? r->caplits * 2 : 4;
		struct imap_lit *l = realloc(r->lits, cap * sizeof(*l));
		if (l == NULL)
			return -1;
		r->lits = l;
		r->caplits = cap;
	}
	r->lits[r->nlits].mark = mark;
	r->lits[r->nlits].data = data;
	r->lits[r->nlits].len = len;
	r->nlits++;
	return 0;
}

enum imap_read
imap_reader_feed(struct imap_reader *r, const char *data, size_t len, size_t *used)
{
	size_t i = 0;

	while (i < len) {
		if (r->in_literal) {
			size_t take = len - i < r->lit_left ? len - i : r->lit_left;
			pt_strbuf_put(&r->buf, data + i, take);
			r->lit_left -= take;
			i += take;
			if (r->lit_left == 0)
				r->in_literal = 0;
			continue;
		}
		const char *lf = memchr(data + i, '\n', len - i);
		size_t seg = lf ? (size_t)(lf - (data + i)) : len - i;
		/* The CR before LF is not part of the line's length. */
		size_t text = seg;
		if (lf && seg > 0 && data[i + seg - 1] == '\r')
			text--;
		if (r->line_len + text > r->max_line) {
			*used = i + seg + (lf ? 1 : 0);
			return IMAP_READ_TOO_LONG;
		}
		pt_strbuf_put(&r->buf, data + i, seg);
		r->line_len += seg;
		r->cr = seg > 0 ? data[i + seg - 1] == '\r' : r->cr;
		i += seg;
		if (!lf)
			break;
		i++; /* the LF */
		if (r->cr && r->buf.len > 0) {
			r->buf.len--;
			r->line_len--;
			r->buf.p[r->buf.len] = 0;
		}
		r->cr = 0;
		size_t mark, n;
		int plus;
		if (r->buf.oom || !literal_marker(r, &mark, &n, &plus)) {
			*used = i;
			return IMAP_READ_COMMAND;
		}
		if (n > r->max_literal || r->total + n > r->max_literal + r->max_line) {
			*used = i;
			return plus ? IMAP_READ_LITERAL_PLUS_TOO_BIG : IMAP_READ_LITERAL_TOO_BIG;
		}
		if (add_literal(r, mark, r->buf.len, n) != 0) {
			*used = i;
			return IMAP_READ_COMMAND; /* parse reports the damage */
		}
		r->total += n;
		r->line_len = 0;
		r->lit_left = n;
		r->in_literal = n > 0;
		if (!plus) {
			*used = i;
			return IMAP_READ_CONTINUE;
		}
	}
	*used = len;
	return IMAP_READ_MORE;
}

void
imap_reader_tag(const struct imap_reader *r, char *out, size_t outlen)
{
	size_t n = 0;

	while (r->buf.p && n < r->buf.len && r->buf.p[n] != ' ' && n + 1 < outlen)
		n++;
	if (n == 0 || outlen < 2) {
		snprintf(out, outlen, "*");
		return;
	}
	memcpy(out, r->buf.p, n);
	out[n] = 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)out[i] < 0x21 || (unsigned char)out[i] > 0x7e)
			out[i] = '?';
}

/* ---- parsing a framed command ---- */

struct parser {
	const char *b;
	size_t p, end;
	const struct imap_lit *lits;
	size_t nlits;
	size_t count;
	char *error;
	size_t errlen;
};

static char *
copy_text(const char *s, size_t n)
{
	char *c = malloc(n + 1);

	if (c) {
		memcpy(c, s, n);
		c[n] = 0;
	}
	return c;
}

void
imap_args_free(struct imap_arg *args, size_t n)
{
	if (args == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		if (args[i].type == IMAP_ARG_LIST)
			imap_args_free(args[i].list, args[i].n);
		else
			free((char *)args[i].s);
	}
	free(args);
}

static int
fail(struct parser *ps, const char *why)
{
	if (ps->error[0] == 0)
		snprintf(ps->error, ps->errlen, "%s", why);
	return -1;
}

static int
is_atom_char(unsigned char c)
{
	return c > 0x20 && c != 0x7f && c != '(' && c != ')' && c != '"' && c != '{';
}

/* Whether an atom so far is a FETCH attribute whose '[' opens a section
 * (which may hold spaces and parentheses). Anywhere else '[' is an
 * ordinary ATOM-CHAR (RFC 3501 §9): "a[b" is a mailbox name. */
static int
section_name(const char *s, size_t n)
{
	static const char *const names[] = { "BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && strncasecmp(s, names[i], n) == 0)
			return 1;
	return 0;
}

static int parse_items(struct parser *ps, struct imap_arg **out, size_t *nout, int depth);

static int
parse_atom(struct parser *ps, struct imap_arg *a)
{
	size_t start = ps->p;
	int bracket = 0;

	while (ps->p < ps->end) {
		unsigned char c = (unsigned char)ps->b[ps->p];
		if (bracket) {
			/* A FETCH section keeps spaces and parentheses inside [...]. */
			if (c < 0x20 || c == 0x7f)
				return fail(ps, "Invalid characters in atom");
			if (c == '[')
				bracket++;
			else if (c == ']')
				bracket--;
			ps->p++;
			continue;
		}
		if (c == '[' && section_name(ps->b + start, ps->p - start)) {
			bracket = 1;
			ps->p++;
			continue;
		}
		if (!is_atom_char(c))
			break;
		ps->p++;
	}
	if (bracket)
		return fail(ps, "Missing ']'");
	if (ps->p == start)
		return fail(ps, "Unexpected character");
	size_t n = ps->p - start;
	a->type = n == 3 && strncasecmp(ps->b + start, "NIL", 3) == 0 ? IMAP_ARG_NIL : IMAP_ARG_ATOM;
	a->s = copy_text(ps->b + start, n);
	a->len = n;
	return a->s ? 0 : fail(ps, "Out of memory");
}

static int
parse_quoted(struct parser *ps, struct imap_arg *a)
{
	size_t start = ++ps->p, n = 0;
	char *out;

	/* First pass: find the end and the unescaped length. */
	while (ps->p < ps->end && ps->b[ps->p] != '"') {
		/* TEXT-CHAR: no NUL (a C string must stay whole); CR/LF cannot
		 * occur, the framing ends lines there. */
		if (ps->b[ps->p] == 0)
			return fail(ps, "Invalid characters in quoted string");
		if (ps->b[ps->p] == '\\') {
			ps->p++;
			if (ps->p >= ps->end || (ps->b[ps->p] != '"' && ps->b[ps->p] != '\\'))
				return fail(ps, "Invalid escape in quoted string");
		}
		ps->p++;
		n++;
	}
	if (ps->p >= ps->end)
		return fail(ps, "Missing '\"'");
	out = malloc(n + 1);
	if (out == NULL)
		return fail(ps, "Out of memory");
	size_t k = 0;
	for (size_t i = start; i < ps->p; i++) {
		if (ps->b[i] == '\\')
			i++;
		out[k++] = ps->b[i];
	}
	out[k] = 0;
	ps->p++; /* closing quote */
	a->type = IMAP_ARG_STRING;
	a->s = out;
	a->len = k;
	return 0;
}

static int
parse_literal(struct parser *ps, struct imap_arg *a)
{
	for (size_t i = 0; i < ps->nlits; i++) {
		if (ps->lits[i].mark != ps->p)
			continue;
		a->type = IMAP_ARG_LITERAL;
		a->s = copy_text(ps->b + ps->lits[i].data, ps->lits[i].len);
		a->len = ps->lits[i].len;
		if (a->s == NULL)
			return fail(ps, "Out of memory");
		ps->p = ps->lits[i].data + ps->lits[i].len;
		return 0;
	}
	return fail(ps, "Unexpected '{'");
}

static int
parse_value(struct parser *ps, struct imap_arg *a, int depth)
{
	if (++ps->count > IMAP_ARGS_MAX)
		return fail(ps, "Too many arguments");
	switch (ps->b[ps->p]) {
	case '(':
		if (depth >= IMAP_ARG_DEPTH_MAX)
			return fail(ps, "Too deep nesting");
		ps->p++;
		a->type = IMAP_ARG_LIST;
		if (parse_items(ps, &a->list, &a->n, depth + 1) != 0)
			return -1;
		if (ps->p >= ps->end || ps->b[ps->p] != ')')
			return fail(ps, "Missing ')'");
		ps->p++;
		return 0;
	case '"':
		return parse_quoted(ps, a);
	case '{':
		return parse_literal(ps, a);
	default:
		return parse_atom(ps, a);
	}
}

/* Items separated by single spaces, until the end or a ')' (not eaten). */
static int
parse_items(struct parser *ps, struct imap_arg **out, size_t *nout, int depth)
{
	struct imap_arg *v = NULL;
	size_t n = 0, cap = 0;

	*out = NULL;
	*nout = 0;
	while (ps->p < ps->end && ps->b[ps->p] != ')') {
		if (n > 0) {
			if (ps->b[ps->p] != ' ') {
				imap_args_free(v, n);
				return fail(ps, "Missing space between arguments");
			}
			ps->p++;
			if (ps->p >= ps->end || ps->b[ps->p] == ' ' || ps->b[ps->p] == ')') {
				imap_args_free(v, n);
				return fail(ps, "Unexpected space");
			}
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			struct imap_arg *nv = realloc(v, ncap * sizeof(*nv));
			if (nv == NULL) {
				imap_args_free(v, n);
				return fail(ps, "Out of memory");
			}
			v = nv;
			cap = ncap;
		}
		memset(&v[n], 0, sizeof(v[n]));
		if (parse_value(ps, &v[n], depth) != 0) {
			imap_args_free(v, n + 1);
			return -1;
		}
		n++;
	}
	if (depth == 0 && ps->p < ps->end) {
		imap_args_free(v, n);
		return fail(ps, "Unexpected ')'");
	}
	*out = v;
	*nout = n;
	return 0;
}

/* A tag: ASTRING-CHAR except '+' (RFC 3501 §9). */
static int
is_tag_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\+", c);
}

int
imap_command_parse(struct imap_reader *r, struct imap_command *cmd)
{
	struct parser ps = { .b = r->buf.p ? r->buf.p : "", .end = r->buf.len, .lits = r->lits,
	                     .nlits = r->nlits, .error = cmd->error, .errlen = sizeof(cmd->error) };
	size_t start;
	int rc = -1;

	memset(cmd, 0, sizeof(*cmd));
	if (r->buf.oom) {
		fail(&ps, "Out of memory");
		goto out;
	}
	start = 0;
	while (ps.p < ps.end && is_tag_char((unsigned char)ps.b[ps.p]))
		ps.p++;
	if (ps.p == start || ps.p >= ps.end || ps.b[ps.p] != ' ') {
		fail(&ps, "Error in IMAP command received by server.");
		goto out;
	}
	cmd->tag = copy_text(ps.b, ps.p);
	start = ++ps.p;
	while (ps.p < ps.end && ps.b[ps.p] != ' ' && is_atom_char((unsigned char)ps.b[ps.p]) &&
	       ps.b[ps.p] != '[')
		ps.p++;
	if (ps.p == start) {
		fail(&ps, "Error in IMAP command received by server.");
		goto out;
	}
	cmd->name = copy_text(ps.b + start, ps.p - start);
	if (cmd->tag == NULL || cmd->name == NULL) {
		fail(&ps, "Out of memory");
		goto out;
	}
	if (ps.p < ps.end) {
		if (ps.b[ps.p] != ' ' || ps.p + 1 >= ps.end) {
			fail(&ps, "Unexpected character after command name");
			goto out;
		}
		ps.p++;
		if (parse_items(&ps, &cmd->args, &cmd->nargs, 0) != 0)
			goto out;
	}
	rc = 0;
out:
	imap_reader_reset(r);
	return rc;
}

void
imap_command_free(struct imap_command *cmd)
{
	free(cmd->tag);
	free(cmd->name);
	imap_args_free(cmd->args, cmd->nargs);
	cmd->tag = cmd->name = NULL;
	cmd->args = NULL;
	cmd->nargs = 0;
}
