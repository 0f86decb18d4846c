/* Search filters from templates. Every piece of the key that goes into a
 * filter is escaped as RFC 4515 section 3 requires, so a user name such
 * as "*)(uid=*" is a literal value that matches nothing. */
#include <stdio.h>
#include <string.h>

#include "ldap_int.h"

int
lfilter_escape(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		int esc = *p == '*' || *p == '(' || *p == ')' || *p == '\\' || *p < 0x20 || *p >= 0x7f;
		size_t need = esc ? 3 : 1;
		if (o + need >= outlen)
			return -1;
		if (esc) {
			out[o++] = '\\';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		} else {
			out[o++] = (char)*p;
		}
	}
	if (o >= outlen)
		return -1;
	out[o] = 0;
	return 0;
}

int
lfilter_expand(const char *tmpl, const char *key, char *out, size_t outlen)
{
	const char *at = strrchr(key, '@');
	char local[512], esc[1600];
	size_t o = 0;
	if (strlen(key) >= sizeof local)
		return -1;
	for (const char *t = tmpl; *t; t++) {
		const char *piece = NULL;
		if (*t != '%') {
			if (o + 1 >= outlen)
				return -1;
			out[o++] = *t;
			continue;
		}
		t++;
		switch (*t) {
		case '%':
			if (o + 1 >= outlen)
				return -1;
			out[o++] = '%';
			continue;
		case 's':
			piece = key;
			break;
		case 'u':
			if (at) {
				memcpy(local, key, (size_t)(at - key));
				local[at - key] = 0;
				piece = local;
			} else {
				piece = key;
			}
			break;
		case 'd':
			if (!at || !at[1])
				return 0;
			piece = at + 1;
			break;
		default:
			return -1;
		}
		if (lfilter_escape(piece, esc, sizeof esc) < 0)
			return -1;
		size_t n = strlen(esc);
		if (o + n >= outlen)
			return -1;
		memcpy(out + o, esc, n);
		o += n;
	}
	if (o >= outlen)
		return -1;
	out[o] = 0;
	return 1;
}
