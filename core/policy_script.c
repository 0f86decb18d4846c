/* Parser of scripted policy sessions (format in policy_script.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_script.h"
#include "postern/strbuf.h"

#define SCRIPT_MAX_STEPS 100000

static int
word_is(const char *s, size_t len, const char *w)
{
	size_t wl = strlen(w);
	return len == wl && strncmp(s, w, wl) == 0;
}

/* "<a@b>" -> "a@b"; a bare address is accepted too. */
static int
take_address(const char *s, size_t len, char *out, size_t outlen)
{
	if (len >= 2 && s[0] == '<' && s[len - 1] == '>') {
		s++;
		len -= 2;
	} else if (len == 0 || memchr(s, '<', len) || memchr(s, '>', len)) {
		return -1;
	}
	if (len == 0 || len >= outlen || memchr(s, ' ', len))
		return -1;
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

int
pt_policy_script_parse(const char *text, size_t len, struct pt_pscript_step **steps,
                       size_t *n, char *err, size_t errlen)
{
	struct pt_pscript_step *v = NULL;
	size_t nv = 0, cap = 0;
	int lineno = 0, have_client = 0;
	const char *p = text, *end = text + len;
	*steps = NULL;
	*n = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		lineno++;
		const char *s = p;
		p = nl ? nl + 1 : end;
		while (s < le && (*s == ' ' || *s == '\t'))
			s++;
		const char *e = le;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			e--;
		if (s == e || *s == '#')
			continue;
		if (memchr(s, '\0', (size_t)(e - s))) {
			snprintf(err, errlen, "%d: NUL byte", lineno);
			goto fail;
		}
		if (isdigit((unsigned char)*s)) {
			if (nv == 0 || v[nv - 1].has_expect) {
				snprintf(err, errlen, "%d: expected reply without a command before it", lineno);
				goto fail;
			}
			if (e - s < 3 || !isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[2]) ||
			    (e - s > 3 && s[3] != ' ') || (size_t)(e - s) >= sizeof v->expect) {
				snprintf(err, errlen, "%d: a reply line is NNN [text]", lineno);
				goto fail;
			}
			v[nv - 1].has_expect = 1;
			v[nv - 1].expect_line = lineno;
			memcpy(v[nv - 1].expect, s, (size_t)(e - s));
			v[nv - 1].expect[e - s] = '\0';
			continue;
		}
		const char *w = s;
		while (s < e && *s != ' ' && *s != '\t')
			s++;
		size_t wl = (size_t)(s - w);
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		size_t al = (size_t)(e - s);
		struct pt_pscript_step st;
		memset(&st, 0, sizeof st);
		st.line = lineno;
		if (word_is(w, wl, "client")) {
			st.op = PT_PSCRIPT_CLIENT;
			size_t a1 = 0;
			while (a1 < al && s[a1] != ' ' && s[a1] != '\t')
				a1++;
			const char *s2 = s + a1;
			while (s2 < e && (*s2 == ' ' || *s2 == '\t'))
				s2++;
			if (a1 == 0 || a1 >= 64 || (size_t)(e - s2) >= sizeof st.arg2 ||
			    memchr(s2, ' ', (size_t)(e - s2))) {
				snprintf(err, errlen, "%d: usage: client ADDRESS [NAME]", lineno);
				goto fail;
			}
			memcpy(st.arg, s, a1);
			memcpy(st.arg2, s2, (size_t)(e - s2));
			have_client = 1;
		} else if (word_is(w, wl, "helo") || word_is(w, wl, "ehlo")) {
			st.op = PT_PSCRIPT_HELO;
			if (al == 0 || al >= 256 || memchr(s, ' ', al)) {
				snprintf(err, errlen, "%d: usage: helo NAME", lineno);
				goto fail;
			}
			memcpy(st.arg, s, al);
		} else if (word_is(w, wl, "sasl")) {
			st.op = PT_PSCRIPT_SASL;
			if (al >= 256 || memchr(s, ' ', al)) {
				snprintf(err, errlen, "%d: usage: sasl [USER]", lineno);
				goto fail;
			}
			memcpy(st.arg, s, al);
		} else if (word_is(w, wl, "mail") || word_is(w, wl, "rcpt")) {
			st.op = w[0] == 'm' ? PT_PSCRIPT_MAIL : PT_PSCRIPT_RCPT;
			/* "<>" is the null sender; RCPT needs an address */
			if (st.op == PT_PSCRIPT_MAIL && al == 2 && s[0] == '<' && s[1] == '>') {
				st.arg[0] = '\0';
			} else if (take_address(s, al, st.arg, sizeof st.arg) < 0) {
				snprintf(err, errlen, "%d: usage: %.4s <ADDRESS>", lineno, w);
				goto fail;
			}
		} else {
			snprintf(err, errlen, "%d: unknown command \"%.*s\" (client, helo, sasl, mail, rcpt "
			         "or an expected reply)", lineno, (int)(wl > 40 ? 40 : wl), w);
			goto fail;
		}
		if (!have_client) {
			snprintf(err, errlen, "%d: a session starts with \"client ADDRESS\"", lineno);
			goto fail;
		}
		if (nv == cap) {
			if (cap >= SCRIPT_MAX_STEPS) {
				snprintf(err, errlen, "%d: more than %d commands", lineno, SCRIPT_MAX_STEPS);
				goto fail;
			}
			struct pt_pscript_step *nvp = pt_array_grow(v, &cap, sizeof *v, 16);
			if (nvp == NULL) {
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
			v = nvp;
		}
		v[nv++] = st;
	}
	*steps = v;
	*n = nv;
	return 0;
fail:
	free(v);
	return -1;
}
