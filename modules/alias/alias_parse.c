/* aliases(5) right-hand sides: splitting a value into destinations and
 * telling addresses, /files, |commands and :include: files apart. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alias.h"

static int
alias_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static int
alias_classify(char *tok, alias_target_fn *fn, void *arg)
{
	size_t n = strlen(tok);
	while (n && alias_is_space(tok[n - 1]))
		tok[--n] = 0;
	if (tok[0] == '|') {
		char *cmd = tok + 1;
		while (alias_is_space(*cmd))
			cmd++;
		return *cmd ? fn(arg, PT_ALIAS_COMMAND, cmd) : 0;
	}
	if (tok[0] == '/')
		return fn(arg, PT_ALIAS_FILE, tok);
	if (strncasecmp(tok, ":include:", 9) == 0) {
		char *path = tok + 9;
		while (alias_is_space(*path))
			path++;
		return *path ? fn(arg, PT_ALIAS_INCLUDE, path) : 0;
	}
	if (tok[0] == '<' && n >= 2 && tok[n - 1] == '>') {
		tok[n - 1] = 0;
		tok++;
	}
	return *tok ? fn(arg, PT_ALIAS_ADDRESS, tok) : 0;
}

int
alias_parse_value(const char *value, alias_target_fn *fn, void *arg)
{
	char *buf = malloc(strlen(value) + 1);
	if (!buf)
		return -1;
	const char *p = value;
	int rc = 0;
	while (*p && !rc) {
		while (*p == ',' || alias_is_space(*p))
			p++;
		if (!*p)
			break;
		/* a command may hold white space; only a comma ends it */
		int command = p[0] == '|' || (p[0] == '"' && p[1] == '|');
		int quoted = 0;
		size_t n = 0;
		while (*p) {
			char c = *p;
			if (quoted) {
				if (c == '\\' && p[1]) {
					buf[n++] = p[1];
					p += 2;
					continue;
				}
				if (c == '"')
					quoted = 0;
				else
					buf[n++] = c;
				p++;
				continue;
			}
			if (c == '"') {
				quoted = 1;
				p++;
				continue;
			}
			if (!command && alias_is_space(c) && n == 9 && strncasecmp(buf, ":include:", 9) == 0) {
				/* ":include: /path" names one file */
				while (alias_is_space(*p))
					p++;
				continue;
			}
			if (c == ',' || (!command && alias_is_space(c)))
				break;
			buf[n++] = c;
			p++;
		}
		buf[n] = 0;
		rc = alias_classify(buf, fn, arg);
	}
	free(buf);
	return rc;
}

char *
alias_include_text(const char *text, size_t len)
{
	char *out = malloc(len + 1), *o = out;
	if (!out)
		return NULL;
	size_t pos = 0;
	while (pos < len) {
		const char *ls = text + pos;
		const char *nl = memchr(ls, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - ls) : len - pos;
		pos += ll + (nl ? 1 : 0);
		size_t f = 0;
		while (f < ll && alias_is_space(ls[f]))
			f++;
		if (f == ll || ls[f] == '#')
			continue;
		for (size_t i = f; i < ll; i++)
			*o++ = ls[i] ? ls[i] : ' ';
		*o++ = ',';
	}
	if (o > out)
		o--;              /* the last comma; there was room for it */
	*o = 0;
	return out;
}
