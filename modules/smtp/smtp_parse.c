/* SMTP command-line parsing: verbs, RFC 5321 paths (with RFC 6531 UTF-8),
 * ESMTP parameters. Everything here is bounded and allocation-free so the
 * fuzzers can hammer it directly. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtp_parse.h"

static const struct {
	const char *word;
	enum smtp_verb verb;
} verbs[] = {
	{"HELO", SMTP_VERB_HELO}, {"EHLO", SMTP_VERB_EHLO}, {"MAIL", SMTP_VERB_MAIL},
	{"RCPT", SMTP_VERB_RCPT}, {"DATA", SMTP_VERB_DATA}, {"BDAT", SMTP_VERB_BDAT},
	{"RSET", SMTP_VERB_RSET}, {"NOOP", SMTP_VERB_NOOP}, {"QUIT", SMTP_VERB_QUIT},
	{"VRFY", SMTP_VERB_VRFY}, {"HELP", SMTP_VERB_HELP}, {"STARTTLS", SMTP_VERB_STARTTLS},
	{"AUTH", SMTP_VERB_AUTH}, {"ETRN", SMTP_VERB_ETRN}, {"EXPN", SMTP_VERB_EXPN},
	{"XCLIENT", SMTP_VERB_XCLIENT},
};

static const char *const verb_names[SMTP_VERB_COUNT] = {
	"unknown", "helo", "ehlo", "mail", "rcpt", "data", "bdat", "rset", "noop",
	"quit", "vrfy", "help", "starttls", "auth", "etrn", "expn", "xclient",
};

const char *
smtp_verb_name(enum smtp_verb v)
{
	if ((unsigned)v >= SMTP_VERB_COUNT)
		return "unknown";
	return verb_names[v];
}

static int
is_sp(char c)
{
	return c == ' ' || c == '\t';
}

void
smtp_parse_command(const char *line, size_t len, struct smtp_cmd *out)
{
	size_t i = 0;

	out->verb = SMTP_VERB_UNKNOWN;
	out->arg = "";
	out->arglen = 0;
	while (i < len && i < 9 && ((line[i] >= 'A' && line[i] <= 'Z') || (line[i] >= 'a' && line[i] <= 'z')))
		i++;
	if (i == 0 || (i < len && !is_sp(line[i])))
		return;
	for (size_t k = 0; k < sizeof(verbs) / sizeof(verbs[0]); k++) {
		if (strlen(verbs[k].word) == i && strncasecmp(line, verbs[k].word, i) == 0) {
			out->verb = verbs[k].verb;
			break;
		}
	}
	if (out->verb == SMTP_VERB_UNKNOWN)
		return;
	while (i < len && is_sp(line[i]))
		i++;
	size_t end = len;
	while (end > i && is_sp(line[end - 1]))
		end--;
	out->arg = line + i;
	out->arglen = end - i;
}

/* ---- UTF-8 ---- */

int
smtp_utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i];
		size_t n;
		unsigned cp;

		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			n = 1; cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2; cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3; cp = c & 0x07;
		} else {
			return 0;
		}
		if (len - i <= n)
			return 0;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

/* ---- paths ---- */

/* RFC 5322 atext, plus any non-ASCII byte (checked as UTF-8 afterwards). */
static int
is_atext(unsigned char c)
{
	if (c >= 0x80)
		return 1;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int
is_letdig(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

/* Domain = sub-domain *("." sub-domain); labels of letters, digits,
 * hyphens (not first or last), UTF-8 U-labels. Underscores are tolerated
 * inside labels: they exist in real host names and harm nothing here.
 * Returns bytes consumed, 0 if no valid domain starts at s. */
static size_t
scan_domain(const unsigned char *s, size_t len)
{
	size_t i = 0;

	for (;;) {
		size_t start = i;
		if (i >= len || !is_letdig(s[i]))
			return 0;
		while (i < len && (is_letdig(s[i]) || s[i] == '-' || s[i] == '_'))
			i++;
		if (s[i - 1] == '-' || i - start > 63)
			return 0;
		if (i < len && s[i] == '.' && i + 1 < len && is_letdig(s[i + 1])) {
			i++;
			continue;
		}
		break;
	}
	return i > 255 ? 0 : i;
}

/* "[" ( IPv4 / "IPv6:" IPv6 / tag ":" dcontent ) "]"; bytes consumed or 0. */
static size_t
scan_literal(const unsigned char *s, size_t len)
{
	size_t end;
	char buf[64];

	if (len < 3 || s[0] != '[')
		return 0;
	for (end = 1; end < len && s[end] != ']'; end++)
		if (s[end] < 33 || s[end] > 126 || s[end] == '[' || s[end] == '\\')
			return 0;
	if (end >= len || end == 1 || end - 1 >= sizeof(buf))
		return 0;
	memcpy(buf, s + 1, end - 1);
	buf[end - 1] = 0;
	unsigned char bin[16];
	if (strncasecmp(buf, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, buf + 5, bin) != 1)
			return 0;
	} else if (strchr(buf, ':') != NULL) {
		/* General-address-literal: Standardized-tag ":" dcontent. */
		size_t t = 0;
		while (buf[t] && buf[t] != ':' && (is_letdig((unsigned char)buf[t]) || buf[t] == '-'))
			t++;
		if (t == 0 || buf[t] != ':' || buf[t + 1] == 0 || buf[t - 1] == '-')
			return 0;
	} else {
		/* inet_pton accepts exactly dotted-quad decimal: what RFC 5321 wants. */
		if (inet_pton(AF_INET, buf, bin) != 1)
			return 0;
	}
	return end + 1;
}

/* Local-part = Dot-string / Quoted-string; bytes consumed or 0. */
static size_t
scan_local(const unsigned char *s, size_t len)
{
	size_t i = 0;

	if (len == 0)
		return 0;
	if (s[0] == '"') {
		i = 1;
		while (i < len && s[i] != '"') {
			if (s[i] == '\\') {
				if (i + 1 >= len || s[i + 1] < 32 || s[i + 1] > 126)
					return 0;
				i += 2;
			} else if ((s[i] >= 32 && s[i] <= 126) || s[i] >= 0x80) {
				i++;
			} else {
				return 0;
			}
		}
		if (i >= len)
			return 0;
		return i + 1;
	}
	for (;;) {
		size_t start = i;
		while (i < len && is_atext(s[i]))
			i++;
		if (i == start)
			return 0;
		if (i < len && s[i] == '.') {
			i++;
			continue;
		}
		return i;
	}
}

/* Mailbox (local [@ domain]) at s; fills addr fields; bytes consumed or 0. */
static size_t
scan_mailbox(const unsigned char *s, size_t len, struct smtp_path *out)
{
	size_t n = scan_local(s, len), d = 0;

	if (n == 0)
		return 0;
	out->local_len = n;
	if (n < len && s[n] == '@') {
		if (n + 1 < len && s[n + 1] == '[') {
			d = scan_literal(s + n + 1, len - n - 1);
			out->literal = 1;
		} else {
			d = scan_domain(s + n + 1, len - n - 1);
		}
		if (d == 0)
			return 0;
		out->has_domain = 1;
		n += 1 + d;
	}
	if (n > SMTP_PATH_MAX - 2)
		return 0;
	memcpy(out->addr, s, n);
	out->addr[n] = 0;
	out->addrlen = n;
	return n;
}

int
smtp_parse_path(const char *str, size_t len, int allow_null, struct smtp_path *out,
                const char **rest, size_t *restlen)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, n;

	memset(out, 0, sizeof(*out));
	while (i < len && is_sp(str[i]))
		i++;
	if (i >= len)
		return -1;
	if (s[i] == '<') {
		i++;
		if (i < len && s[i] == '>') {
			if (!allow_null)
				return -1;
			out->is_null = 1;
			i++;
			goto params;
		}
		/* A-d-l ":" — a source route, obsolete: parsed and ignored. */
		if (i < len && s[i] == '@') {
			for (;;) {
				i++;
				n = scan_domain(s + i, len - i);
				if (n == 0)
					return -1;
				i += n;
				if (i < len && s[i] == ',' && i + 1 < len && s[i + 1] == '@') {
					i++;
					continue;
				}
				break;
			}
			if (i >= len || s[i] != ':')
				return -1;
			i++;
		}
		n = scan_mailbox(s + i, len - i, out);
		if (n == 0)
			return -1;
		i += n;
		if (i >= len || s[i] != '>')
			return -1;
		i++;
	} else {
		n = scan_mailbox(s + i, len - i, out);
		if (n == 0)
			return -1;
		i += n;
	}
params:
	if (i < len && !is_sp(str[i]))
		return -1;
	for (size_t k = 0; k < out->addrlen; k++) {
		if ((unsigned char)out->addr[k] >= 0x80) {
			out->utf8 = 1;
			break;
		}
	}
	if (out->utf8 && !smtp_utf8_valid((const unsigned char *)out->addr, out->addrlen))
		return -1;
	while (i < len && is_sp(str[i]))
		i++;
	if (rest)
		*rest = str + i;
	if (restlen)
		*restlen = len - i;
	return 0;
}

int
smtp_path_local(const struct smtp_path *p, char *out, size_t outlen, int fold)
{
	size_t o = 0;
	const char *s = p->addr;
	size_t n = p->local_len;

	if (outlen == 0)
		return -1;
	if (n > 0 && s[0] == '"') {
		for (size_t i = 1; i + 1 < n; i++) {
			char c = s[i];
			if (c == '\\' && i + 2 < n)
				c = s[++i];
			if (o + 1 >= outlen)
				return -1;
			out[o++] = c;
		}
	} else {
		if (n + 1 > outlen)
			return -1;
		memcpy(out, s, n);
		o = n;
	}
	out[o] = 0;
	if (fold)
		for (size_t i = 0; i < o; i++)
			if (out[i] >= 'A' && out[i] <= 'Z')
				out[i] = (char)(out[i] - 'A' + 'a');
	return (int)o;
}

const char *
smtp_path_domain(const struct smtp_path *p)
{
	if (!p->has_domain)
		return "";
	return p->addr + p->local_len + 1;
}

/* ---- ESMTP parameters ---- */

static int
parse_ull(const char *s, size_t len, unsigned long long *out)
{
	unsigned long long v = 0;

	if (len == 0 || len > 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 0;
}

static void
copy_bad(char *bad, size_t badlen, const char *s, size_t len)
{
	if (badlen == 0)
		return;
	if (len >= badlen)
		len = badlen - 1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		bad[i] = (c < 32 || c > 126) ? '?' : (char)c;
	}
	bad[len] = 0;
}

/* Next space-separated word of s[*pos..len). */
static int
next_word(const char *s, size_t len, size_t *pos, const char **w, size_t *wl)
{
	size_t i = *pos;

	while (i < len && is_sp(s[i]))
		i++;
	if (i >= len)
		return 0;
	*w = s + i;
	while (i < len && !is_sp(s[i]))
		i++;
	*wl = (size_t)(s + i - *w);
	*pos = i;
	return 1;
}

enum smtp_param_result
smtp_parse_mail_params(const char *s, size_t len, struct smtp_mail_params *out)
{
	size_t pos = 0, wl;
	const char *w;

	memset(out, 0, sizeof(*out));
	while (next_word(s, len, &pos, &w, &wl)) {
		if (wl > 5 && strncasecmp(w, "SIZE=", 5) == 0) {
			if (parse_ull(w + 5, wl - 5, &out->size) < 0) {
				copy_bad(out->bad, sizeof(out->bad), w, wl);
				return SMTP_PARAM_BAD_SIZE;
			}
			out->has_size = 1;
		} else if (wl == 9 && strncasecmp(w, "BODY=7BIT", 9) == 0) {
			out->body = SMTP_BODY_7BIT;
		} else if (wl == 13 && strncasecmp(w, "BODY=8BITMIME", 13) == 0) {
			out->body = SMTP_BODY_8BITMIME;
		} else if (wl == 8 && strncasecmp(w, "SMTPUTF8", 8) == 0) {
			out->smtputf8 = 1;
		} else {
			copy_bad(out->bad, sizeof(out->bad), w, wl);
			return SMTP_PARAM_UNSUPPORTED;
		}
	}
	return SMTP_PARAM_OK;
}

enum smtp_param_result
smtp_parse_rcpt_params(const char *s, size_t len, char *bad, size_t badlen)
{
	size_t pos = 0, wl;
	const char *w;

	if (next_word(s, len, &pos, &w, &wl)) {
		copy_bad(bad, badlen, w, wl);
		return SMTP_PARAM_UNSUPPORTED;
	}
	if (badlen)
		bad[0] = 0;
	return SMTP_PARAM_OK;
}

int
smtp_parse_bdat(const char *s, size_t len, unsigned long long *count, int *last)
{
	size_t pos = 0, wl;
	const char *w;

	*last = 0;
	if (!next_word(s, len, &pos, &w, &wl) || parse_ull(w, wl, count) < 0)
		return -1;
	if (next_word(s, len, &pos, &w, &wl)) {
		if (wl != 4 || strncasecmp(w, "LAST", 4) != 0)
			return -1;
		*last = 1;
		if (next_word(s, len, &pos, &w, &wl))
			return -1;
	}
	return 0;
}

size_t
smtp_parse_helo(const char *s, size_t len, const char **word)
{
	size_t pos = 0, wl = 0;
	const char *w = s;

	if (!next_word(s, len, &pos, &w, &wl))
		return 0;
	*word = w;
	return wl;
}
