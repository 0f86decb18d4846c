/* Query templates as parameterised statements. A pgsql_table(5) query is
 * written with %s/%u/%d where Postfix splices the quoted key into the
 * text; here each placeholder becomes a $N parameter of
 * PQsendQueryParams, so whatever the key holds ('; DROP TABLE users; --,
 * ' OR '1'='1) is one value compared as a whole, never SQL. The usual
 * WHERE name = '%s' keeps working: quotes around a lone placeholder are
 * dropped ($1 is already a string). A placeholder inside a longer
 * literal ('%u@example.org') cannot be a parameter and is refused, with
 * the way to write it ($1 || '@example.org' is %u || '@example.org'). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgsql_int.h"

static int
placeholder(char c)
{
	return c == 's' || c == 'u' || c == 'd' || c == 'S' || c == 'U' || c == 'D' || (c >= '1' && c <= '9');
}

static char
kind_of(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

struct sqlbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void
put(struct sqlbuf *s, const char *text, size_t n)
{
	if (s->oom)
		return;
	if (s->len + n + 1 > s->cap) {
		size_t cap = (s->len + n + 1) * 2;
		char *np = realloc(s->p, cap);
		if (!np) {
			s->oom = 1;
			return;
		}
		s->p = np;
		s->cap = cap;
	}
	memcpy(s->p + s->len, text, n);
	s->len += n;
	s->p[s->len] = 0;
}

/* $N for the placeholder kind k, numbered in order of first use (the
 * same kind twice is the same parameter). */
static int
param(struct pqt *q, struct sqlbuf *s, char k)
{
	size_t i;
	for (i = 0; i < q->nparams && q->kind[i] != k; i++)
		;
	if (i == q->nparams) {
		if (q->nparams == PQT_MAX_PARAMS)
			return -1;
		q->kind[q->nparams++] = k;
	}
	char num[16];
	int n = snprintf(num, sizeof num, "$%zu", i + 1);
	put(s, num, (size_t)n);
	return 0;
}

static int
ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
	       (unsigned char)c >= 0x80;
}

int
pqt_compile(const char *tmpl, struct pqt *q, char *why, size_t whylen)
{
	struct sqlbuf s = { 0 };
	memset(q, 0, sizeof *q);
	const char *t = tmpl;
	while (*t) {
		if (*t == '\'') {
			/* '%s' alone: the parameter itself -- unless a prefix
			 * (E'', B'', X'', U&'') makes it another kind of literal. */
			if (t[1] == '%' && placeholder(t[2]) && t[3] == '\'' && t[4] != '\'') {
				if (s.len > 0 && (ident_char(s.p[s.len - 1]) || s.p[s.len - 1] == '&')) {
					snprintf(why, whylen, "%%%c in a prefixed literal (E'', B'', U&'') cannot be "
					                      "a parameter", t[2]);
					goto fail;
				}
				if (param(q, &s, kind_of(t[2])) < 0)
					goto toomany;
				t += 4;
				continue;
			}
			/* An E'...' literal takes backslash escapes: \' does not end it. */
			int esc = s.len > 0 && (s.p[s.len - 1] == 'E' || s.p[s.len - 1] == 'e') &&
			          (s.len == 1 || !ident_char(s.p[s.len - 2]));
			put(&s, t++, 1);
			for (;;) {
				if (!*t) {
					snprintf(why, whylen, "unterminated string literal");
					goto fail;
				}
				if (esc && *t == '\\' && t[1]) {
					put(&s, t, 2);
					t += 2;
					continue;
				}
				if (*t == '\'' && t[1] == '\'') {
					put(&s, t, 2);
					t += 2;
					continue;
				}
				if (*t == '\'')
					break;
				if (*t == '%') {
					if (t[1] == '%') {
						put(&s, "%", 1);
						t += 2;
						continue;
					}
					if (placeholder(t[1]))
						snprintf(why, whylen,
						         "%%%c inside a longer string literal cannot be a parameter: write "
						         "'%%%c' alone, joined with || (e.g. %%%c || '@example.org')",
						         t[1], t[1], t[1]);
					else
						snprintf(why, whylen, "bad %% sequence (%%s, %%u, %%d, %%1..%%9, %%%%)");
					goto fail;
				}
				put(&s, t++, 1);
			}
			put(&s, t++, 1);
			continue;
		}
		if (*t == '"') {
			/* a quoted identifier: copied as it is */
			put(&s, t++, 1);
			while (*t && !(*t == '"' && t[1] != '"')) {
				if (*t == '"') {      /* "" inside */
					put(&s, t, 2);
					t += 2;
					continue;
				}
				if (*t == '%') {
					if (t[1] != '%') {
						snprintf(why, whylen, "%% inside a quoted identifier");
						goto fail;
					}
					put(&s, "%", 1);
					t += 2;
					continue;
				}
				put(&s, t++, 1);
			}
			if (!*t) {
				snprintf(why, whylen, "unterminated quoted identifier");
				goto fail;
			}
			put(&s, t++, 1);
			continue;
		}
		if (*t == '-' && t[1] == '-') {
			/* the file joins continuation lines: a -- comment would
			 * swallow the rest of the query */
			snprintf(why, whylen, "-- comment in the query: use /* */");
			goto fail;
		}
		if (*t == '/' && t[1] == '*') {
			/* copied as it is: quotes and % inside mean nothing */
			const char *end = strstr(t + 2, "*/");
			if (!end) {
				snprintf(why, whylen, "unterminated /* comment");
				goto fail;
			}
			put(&s, t, (size_t)(end + 2 - t));
			t = end + 2;
			continue;
		}
		if (*t == '$') {
			snprintf(why, whylen, "'$' in the query: write the key as %%s (the module makes the "
			                      "parameters), and no dollar quoting");
			goto fail;
		}
		if (*t == '%') {
			if (t[1] == '%') {
				put(&s, "%", 1);
				t += 2;
				continue;
			}
			if (!placeholder(t[1])) {
				snprintf(why, whylen, "bad %% sequence (%%s, %%u, %%d, %%1..%%9, %%%%)");
				goto fail;
			}
			if (param(q, &s, kind_of(t[1])) < 0)
				goto toomany;
			t += 2;
			continue;
		}
		put(&s, t++, 1);
	}
	if (s.oom || !s.p) {
		snprintf(why, whylen, s.oom ? "out of memory" : "empty query");
		goto fail;
	}
	q->sql = s.p;
	return 0;
toomany:
	snprintf(why, whylen, "too many different placeholders");
fail:
	free(s.p);
	memset(q, 0, sizeof *q);
	return -1;
}

void
pqt_free(struct pqt *q)
{
	free(q->sql);
	memset(q, 0, sizeof *q);
}

/* Label n (1 = rightmost) of domain into out: 0 none. */
static int
label(const char *domain, int n, char *out, size_t outlen)
{
	const char *end = domain + strlen(domain);
	for (;;) {
		const char *start = end;
		while (start > domain && start[-1] != '.')
			start--;
		if (--n == 0) {
			size_t len = (size_t)(end - start);
			if (!len || len >= outlen)
				return 0;
			memcpy(out, start, len);
			out[len] = 0;
			return 1;
		}
		if (start == domain)
			return 0;
		end = start - 1;
	}
}

int
pqt_values(const struct pqt *q, const char *key, char *buf, size_t buflen, const char **vals)
{
	const char *at = strrchr(key, '@');
	size_t used = 0;
	for (size_t i = 0; i < q->nparams; i++) {
		char piece[1100];
		switch (q->kind[i]) {
		case 's':
			if (strlen(key) >= sizeof piece)
				return -1;
			snprintf(piece, sizeof piece, "%s", key);
			break;
		case 'u':
			if (at && at == key)
				return 0;     /* "@domain": no local part, no query */
			if (strlen(key) >= sizeof piece)
				return -1;
			snprintf(piece, sizeof piece, "%.*s", at ? (int)(at - key) : (int)strlen(key), key);
			break;
		case 'd':
			if (!at || !at[1])
				return 0;
			snprintf(piece, sizeof piece, "%s", at + 1);
			break;
		default:              /* '1'..'9' */
			if (!at || !at[1] || !label(at + 1, q->kind[i] - '0', piece, sizeof piece))
				return 0;
			break;
		}
		size_t n = strlen(piece) + 1;
		if (used + n > buflen)
			return -1;
		memcpy(buf + used, piece, n);
		vals[i] = buf + used;
		used += n;
	}
	return 1;
}

int
pqt_format(const char *fmt, const char *value, char *out, size_t outlen)
{
	const char *at = strrchr(value, '@');
	size_t o = 0;
	for (const char *f = fmt; *f; f++) {
		const char *piece;
		size_t n;
		if (*f != '%') {
			piece = f;
			n = 1;
		} else {
			f++;
			switch (*f) {
			case '%':
				piece = "%";
				n = 1;
				break;
			case 's':
			case 'S':
				piece = value;
				n = strlen(value);
				break;
			case 'u':
			case 'U':
				piece = value;
				n = at ? (size_t)(at - value) : strlen(value);
				break;
			case 'd':
			case 'D':
				if (!at || !at[1])
					return 0; /* a value without a domain: skipped, as Postfix */
				piece = at + 1;
				n = strlen(piece);
				break;
			default:
				return -1;
			}
		}
		if (o + n >= outlen)
			return -1;
		memcpy(out + o, piece, n);
		o += n;
	}
	if (o >= outlen)
		return -1;
	out[o] = 0;
	return 1;
}
