/* POP3 command-line parsing (RFC 1939 keywords and arguments), Dovecot's
 * pop3_uidl_format expansion, and the dot-stuffing and TOP cut used when
 * sending a message. Pure functions: the unit tests and the fuzzer call
 * them directly. */
#include <stdio.h>
#include <string.h>

#include "pop3.h"

static const char *const verb_names[] = {
	[POP3_UNKNOWN] = "", [POP3_CAPA] = "CAPA", [POP3_USER] = "USER", [POP3_PASS] = "PASS",
	[POP3_AUTH] = "AUTH", [POP3_STLS] = "STLS", [POP3_QUIT] = "QUIT", [POP3_APOP] = "APOP",
	[POP3_STAT] = "STAT", [POP3_LIST] = "LIST", [POP3_UIDL] = "UIDL", [POP3_RETR] = "RETR",
	[POP3_TOP] = "TOP", [POP3_DELE] = "DELE", [POP3_RSET] = "RSET", [POP3_NOOP] = "NOOP",
	[POP3_LAST] = "LAST",
};

const char *
pop3_verb_name(enum pop3_verb v)
{
	return (unsigned)v < sizeof(verb_names) / sizeof(verb_names[0]) ? verb_names[v] : "";
}

void
pop3_parse_command(const char *line, size_t len, struct pop3_cmd *out)
{
	size_t i = 0, n = 0;

	memset(out, 0, sizeof(*out));
	/* The keyword runs to the first space; anything after it is the
	 * argument, kept byte for byte (a password may hold spaces). */
	while (i < len && line[i] != ' ') {
		char ch = line[i];
		if (n + 1 < sizeof(out->name)) {
			if (ch >= 'a' && ch <= 'z')
				ch = (char)(ch - 'a' + 'A');
			else if ((unsigned char)ch < 0x20 || (unsigned char)ch >= 0x7f)
				ch = '?';
			out->name[n++] = ch;
		}
		i++;
	}
	out->name[n] = 0;
	if (i < len) {
		out->arg = line + i + 1;
		out->arglen = len - i - 1;
	} else {
		out->arg = line + len;
		out->arglen = 0;
	}
	out->verb = POP3_UNKNOWN;
	/* A keyword longer than the buffer matched nothing. */
	if (i != n)
		return;
	for (size_t v = 1; v < sizeof(verb_names) / sizeof(verb_names[0]); v++)
		if (strcmp(out->name, verb_names[v]) == 0) {
			out->verb = (enum pop3_verb)v;
			return;
		}
}

int
pop3_parse_number(const char *s, size_t len, uint32_t *out)
{
	uint64_t v = 0;

	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
	}
	for (size_t i = 0; i < len; i++) {
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > UINT32_MAX)
			return -2;
	}
	*out = (uint32_t)v;
	return 0;
}

size_t
pop3_split_args(const char *arg, size_t len, const char **w, size_t *wl, size_t max)
{
	size_t n = 0, i = 0;

	while (i < len) {
		while (i < len && arg[i] == ' ')
			i++;
		if (i == len)
			break;
		size_t start = i;
		while (i < len && arg[i] != ' ')
			i++;
		if (n == max)
			return max + 1;
		w[n] = arg + start;
		wl[n] = i - start;
		n++;
	}
	return n;
}

/* ---- pop3_uidl_format ---- */

enum uidl_var { UIDL_NONE, UIDL_UID, UIDL_VALIDITY, UIDL_PERCENT };

/* One %-directive at fmt (which points at '%'). Fills width, hex and the
 * variable; returns its length, or 0 when unknown (*bad gets the
 * offending text's length for the message). */
static size_t
uidl_directive(const char *fmt, unsigned *width, int *hex, enum uidl_var *var)
{
	size_t i = 1;

	*width = 0;
	*hex = 0;
	*var = UIDL_NONE;
	if (fmt[i] == '%') {
		*var = UIDL_PERCENT;
		return 2;
	}
	while (fmt[i] >= '0' && fmt[i] <= '9') {
		*width = *width * 10 + (unsigned)(fmt[i] - '0');
		if (*width > 20)
			return 0;
		i++;
	}
	if (fmt[i] == 'X') {
		*hex = 1;
		i++;
	}
	if (fmt[i] == 'u') {
		*var = UIDL_UID;
		return i + 1;
	}
	if (fmt[i] == 'v') {
		*var = UIDL_VALIDITY;
		return i + 1;
	}
	if (fmt[i] == '{') {
		const char *end = strchr(fmt + i, '}');
		if (end == NULL)
			return 0;
		size_t nl = (size_t)(end - (fmt + i + 1));
		if (nl == 3 && strncmp(fmt + i + 1, "uid", 3) == 0)
			*var = UIDL_UID;
		else if (nl == 11 && strncmp(fmt + i + 1, "uidvalidity", 11) == 0)
			*var = UIDL_VALIDITY;
		else
			return 0;
		return (size_t)(end - fmt) + 1;
	}
	return 0;
}

int
pop3_uidl_format_check(const char *fmt, char *err, size_t errlen)
{
	char out[POP3_UIDL_MAX];
	int has_uid = 0;

	for (const char *p = fmt; *p; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			snprintf(err, errlen, "a UIDL is printable ASCII without spaces (RFC 1939)");
			return -1;
		}
		if (*p != '%')
			continue;
		unsigned width;
		int hex;
		enum uidl_var var;
		size_t n = uidl_directive(p, &width, &hex, &var);
		if (n == 0) {
			size_t show = strcspn(p + 1, "%");
			snprintf(err, errlen, "unsupported variable %%%.*s (known: %%u, %%v, %%{uid}, "
			         "%%{uidvalidity}, with a width and X for hex, e.g. %%08Xu)",
			         (int)(show > 16 ? 16 : show), p + 1);
			return -1;
		}
		if (var == UIDL_UID)
			has_uid = 1;
		p += n - 1;
	}
	if (!has_uid) {
		snprintf(err, errlen, "must contain the UID (%%u): UIDLs have to be unique");
		return -1;
	}
	/* The longest result (every number at its widest) must fit. */
	if (pop3_uidl_format(fmt, UINT32_MAX, UINT32_MAX, out, sizeof(out)) == (size_t)-1 ||
	    strlen(out) > 70) {
		snprintf(err, errlen, "gives UIDLs longer than 70 characters (RFC 1939 limit)");
		return -1;
	}
	return 0;
}

size_t
pop3_uidl_format(const char *fmt, uint32_t uid, uint32_t uidvalidity, char *out, size_t cap)
{
	size_t n = 0;

	if (cap == 0)
		return (size_t)-1;
	for (const char *p = fmt; *p; p++) {
		char piece[32];
		int len;

		if (*p != '%') {
			piece[0] = *p;
			len = 1;
		} else {
			unsigned width;
			int hex;
			enum uidl_var var;
			size_t dl = uidl_directive(p, &width, &hex, &var);
			if (dl == 0)
				return (size_t)-1;
			p += dl - 1;
			if (var == UIDL_PERCENT) {
				piece[0] = '%';
				len = 1;
			} else {
				uint32_t v = var == UIDL_UID ? uid : uidvalidity;
				len = snprintf(piece, sizeof(piece), hex ? "%0*x" : "%0*u", (int)width, v);
			}
		}
		if (n + (size_t)len + 1 > cap)
			return (size_t)-1;
		memcpy(out + n, piece, (size_t)len);
		n += (size_t)len;
	}
	out[n] = 0;
	return n;
}

/* ---- sending messages ---- */

size_t
pop3_dot_stuff(const char *src, size_t len, char *dst, size_t cap, size_t *outlen, int *bol)
{
	size_t i = 0, o = 0;

	while (i < len) {
		if (*bol && src[i] == '.') {
			if (o + 2 > cap)
				break;
			dst[o++] = '.';
			dst[o++] = '.';
			*bol = 0;
			i++;
			continue;
		}
		/* Copy up to the next line end in one go. */
		const char *lf = memchr(src + i, '\n', len - i);
		size_t run = lf ? (size_t)(lf - (src + i)) + 1 : len - i;
		if (run > cap - o)
			run = cap - o;
		if (run == 0)
			break;
		memcpy(dst + o, src + i, run);
		o += run;
		i += run;
		*bol = dst[o - 1] == '\n';
	}
	*outlen = o;
	return i;
}

size_t
pop3_top_end(const char *data, size_t len, size_t hdr_len, uint32_t lines)
{
	size_t end = hdr_len > len ? len : hdr_len;

	while (lines > 0 && end < len) {
		const char *lf = memchr(data + end, '\n', len - end);
		end = lf ? (size_t)(lf - data) + 1 : len;
		lines--;
	}
	return end;
}
