/* access(5) actions, as maps and Lua policies return them, and the reply
 * lines they turn into. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "restrict.h"

static const char *const class_names[] = {
	[RESTRICT_CLASS_CLIENT] = "Client host",
	[RESTRICT_CLASS_HELO] = "Helo command",
	[RESTRICT_CLASS_SENDER] = "Sender address",
	[RESTRICT_CLASS_RECIPIENT] = "Recipient address",
	[RESTRICT_CLASS_DATA] = "Data command",
	[RESTRICT_CLASS_EOD] = "End-of-data",
};

const char *
restrict_class_name(enum restrict_class cls)
{
	return class_names[cls];
}

static const struct {
	const char *word;
	enum restrict_act kind;
	int text;                     /* 0 none allowed, 1 optional, 2 required */
} verbs[] = {
	{ "OK", RESTRICT_ACT_OK, 0 },
	{ "DUNNO", RESTRICT_ACT_DUNNO, 0 },
	{ "REJECT", RESTRICT_ACT_REJECT, 1 },
	{ "DEFER", RESTRICT_ACT_DEFER, 1 },
	{ "DEFER_IF_REJECT", RESTRICT_ACT_DEFER_IF_REJECT, 1 },
	{ "DEFER_IF_PERMIT", RESTRICT_ACT_DEFER_IF_PERMIT, 1 },
	{ "WARN", RESTRICT_ACT_WARN, 1 },
	{ "INFO", RESTRICT_ACT_INFO, 1 },
	{ "PREPEND", RESTRICT_ACT_PREPEND, 2 },
	{ "HOLD", RESTRICT_ACT_HOLD, 1 },
	{ "DISCARD", RESTRICT_ACT_DISCARD, 1 },
};

/* Reply text goes on the wire: printable ASCII only, so that a policy can
 * never inject a line break or a control byte into the SMTP stream. */
static int
text_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch > 0x7e)
			return 0;
	}
	return 1;
}

/* "d.ddd.ddd " at the start of text: its length (without the space), or 0. */
static size_t
dsn_prefix(const char *s, size_t len)
{
	size_t i = 0;
	if (i >= len || !(s[i] == '2' || s[i] == '4' || s[i] == '5'))
		return 0;
	i++;
	for (int part = 0; part < 2; part++) {
		if (i >= len || s[i] != '.')
			return 0;
		i++;
		size_t start = i;
		while (i < len && isdigit((unsigned char)s[i]) && i - start < 3)
			i++;
		if (i == start)
			return 0;
	}
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

/* A header line "Name: value": a printable name without ':' or space. */
static int
header_ok(const char *s)
{
	const char *colon = strchr(s, ':');
	if (colon == NULL || colon == s)
		return 0;
	for (const char *p = s; p < colon; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			return 0;
	return 1;
}

int
restrict_action_parse(const char *s, size_t len, struct restrict_action *out,
                      char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	while (len > 0 && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0) {
		snprintf(err, errlen, "empty action");
		return -1;
	}
	if (memchr(s, '\0', len) != NULL || !text_ok(s, len)) {
		snprintf(err, errlen, "action contains a control or non-ASCII character");
		return -1;
	}
	size_t wlen = 0;
	while (wlen < len && s[wlen] != ' ' && s[wlen] != '\t')
		wlen++;
	const char *text = s + wlen;
	size_t tlen = len - wlen;
	while (tlen > 0 && (*text == ' ' || *text == '\t'))
		text++, tlen--;
	if (tlen > RESTRICT_TEXT_MAX) {
		snprintf(err, errlen, "action text longer than %d bytes", RESTRICT_TEXT_MAX);
		return -1;
	}

	int textrule = -1;
	if (wlen == 3 && (s[0] == '4' || s[0] == '5') && isdigit((unsigned char)s[1]) &&
	    isdigit((unsigned char)s[2])) {
		out->kind = s[0] == '4' ? RESTRICT_ACT_DEFER : RESTRICT_ACT_REJECT;
		out->code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
		textrule = 1;
	} else {
		for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
			if (strlen(verbs[i].word) == wlen && strncasecmp(s, verbs[i].word, wlen) == 0) {
				out->kind = verbs[i].kind;
				textrule = verbs[i].text;
				break;
			}
		if (textrule < 0) {
			snprintf(err, errlen, "unknown action \"%.*s\"", (int)(wlen > 60 ? 60 : wlen), s);
			return -1;
		}
		switch (out->kind) {
		case RESTRICT_ACT_REJECT: out->code = 554; break;
		case RESTRICT_ACT_DEFER:
		case RESTRICT_ACT_DEFER_IF_REJECT:
		case RESTRICT_ACT_DEFER_IF_PERMIT: out->code = 450; break;
		default: break;
		}
	}
	if (textrule == 0 && tlen > 0) {
		snprintf(err, errlen, "action %.*s takes no text", (int)wlen, s);
		return -1;
	}
	if (textrule == 2 && tlen == 0) {
		snprintf(err, errlen, "action %.*s needs a text", (int)wlen, s);
		return -1;
	}
	if (out->code != 0) {
		size_t d = dsn_prefix(text, tlen);
		if (d > 0) {
			if (text[0] != (char)('0' + out->code / 100)) {
				snprintf(err, errlen, "status code %d and enhanced code %.*s disagree",
				         out->code, (int)d, text);
				return -1;
			}
			if (d >= sizeof out->dsn) {
				snprintf(err, errlen, "enhanced status code too long");
				return -1;
			}
			memcpy(out->dsn, text, d);
			out->dsn[d] = '\0';
			text += d;
			tlen -= d;
			while (tlen > 0 && *text == ' ')
				text++, tlen--;
		}
	}
	memcpy(out->text, text, tlen);
	out->text[tlen] = '\0';
	if (out->kind == RESTRICT_ACT_PREPEND && !header_ok(out->text)) {
		snprintf(err, errlen, "PREPEND needs a header line \"Name: value\"");
		return -1;
	}
	return 0;
}

void
restrict_action_reply(const struct restrict_action *a, enum restrict_class cls,
                      const char *subject, char *out, size_t outlen)
{
	int code = a->code ? a->code : 554;
	char dsn[12];
	if (a->dsn[0] != '\0')
		RS_SNPRINTF(dsn, "%s", a->dsn);
	else
		RS_SNPRINTF(dsn, "%d.7.1", (code / 100) % 10);
	snprintf(out, outlen, "%d %s <%s>: %s rejected: %s", code, dsn, subject,
	         restrict_class_name(cls), a->text[0] ? a->text : "Access denied");
}
