/* SMTP server replies as the client reads them: multi-line replies
 * assembled from input that may arrive in any pieces, and the EHLO
 * keywords that decide what the client may use. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "relay_int.h"

void
relay_reply_reset(struct relay_reply *r)
{
	r->code = 0;
	r->dsn[0] = 0;
	r->text[0] = 0;
	r->len = 0;
	r->nlines = 0;
	r->llen = 0;
	r->malformed = 0;
}

/* "X.Y.Z " at the start of a line's text, class matching the reply's. */
static void
take_dsn(struct relay_reply *r, const char *t, size_t n)
{
	size_t i = 0;
	if (n < 5 || (t[0] != '2' && t[0] != '4' && t[0] != '5') || t[0] != r->line[0] || t[1] != '.')
		return;
	i = 2;
	size_t d = i;
	while (i < n && isdigit((unsigned char)t[i]) && i - d < 3)
		i++;
	if (i == d || i >= n || t[i] != '.')
		return;
	d = ++i;
	while (i < n && isdigit((unsigned char)t[i]) && i - d < 3)
		i++;
	if (i == d || (i < n && t[i] != ' '))
		return;
	if (i >= sizeof r->dsn)
		return;
	memcpy(r->dsn, t, i);
	r->dsn[i] = 0;
}

/* One complete line in r->line: 1 when it ends the reply, 0 when more
 * lines follow, -1 when it is not a reply line. */
static int
take_line(struct relay_reply *r)
{
	const char *l = r->line;
	size_t n = r->llen;
	if (n && l[n - 1] == '\r')
		n--;
	if (n < 3 || !isdigit((unsigned char)l[0]) || !isdigit((unsigned char)l[1]) ||
	    !isdigit((unsigned char)l[2]) || (n > 3 && l[3] != ' ' && l[3] != '-') || l[0] < '2' || l[0] > '5')
		return -1;
	int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	if (r->nlines == 0 && n > 4)
		take_dsn(r, l + 4, n - 4);
	/* Keep what fits; a reply is never cut in its last line's code. */
	size_t room = sizeof r->text - 1 - r->len;
	size_t add = (r->nlines ? 1 : 0) + n;
	if (add <= room) {
		if (r->nlines)
			r->text[r->len++] = '\n';
		memcpy(r->text + r->len, l, n);
		r->len += n;
		r->text[r->len] = 0;
	}
	r->nlines++;
	r->code = code;
	return n == 3 || l[3] == ' ';
}

int
relay_reply_feed(struct relay_reply *r, const char *data, size_t len, size_t *used)
{
	size_t i = 0;
	while (i < len) {
		char c = data[i++];
		if (c != '\n') {
			/* Over-long lines are cut; the rest of the line is dropped. */
			if (r->llen < sizeof r->line)
				r->line[r->llen++] = c;
			continue;
		}
		int end = take_line(r);
		r->llen = 0;
		if (end < 0) {
			r->malformed = 1;
			*used = i;
			return -1;
		}
		if (end) {
			*used = i;
			return 1;
		}
	}
	*used = i;
	return 0;
}

void
relay_reply_oneline(const struct relay_reply *r, char *out, size_t outlen)
{
	if (!outlen)
		return;
	size_t n = r->len < outlen - 1 ? r->len : outlen - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)r->text[i];
		out[i] = c == '\n' ? ' ' : (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	out[n] = 0;
}

void
relay_ehlo_parse(const struct relay_reply *r, struct relay_ext *ext)
{
	memset(ext, 0, sizeof *ext);
	const char *p = r->text;
	int first = 1;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		/* The first line is the greeting name, not an extension. */
		if (!first && n > 4) {
			const char *kw = p + 4;
			size_t kn = n - 4;
			size_t wl = 0;
			while (wl < kn && kw[wl] != ' ' && kw[wl] != '=')
				wl++;
			if (wl == 10 && strncasecmp(kw, "PIPELINING", 10) == 0)
				ext->pipelining = 1;
			else if (wl == 8 && strncasecmp(kw, "STARTTLS", 8) == 0)
				ext->starttls = 1;
			else if (wl == 8 && strncasecmp(kw, "8BITMIME", 8) == 0)
				ext->eightbitmime = 1;
			else if (wl == 8 && strncasecmp(kw, "SMTPUTF8", 8) == 0)
				ext->smtputf8 = 1;
			else if (wl == 4 && strncasecmp(kw, "SIZE", 4) == 0) {
				ext->size = 1;
				if (wl < kn) {
					char num[32];
					size_t k = 0;
					const char *v = kw + wl + 1;
					while (v < kw + kn && k < sizeof num - 1 && isdigit((unsigned char)*v))
						num[k++] = *v++;
					num[k] = 0;
					ext->size_limit = k ? strtoull(num, NULL, 10) : 0;
				}
			}
		}
		first = 0;
		if (!nl)
			break;
		p = nl + 1;
	}
}
