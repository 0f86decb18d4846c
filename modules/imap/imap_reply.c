/* IMAP replies: tagged and untagged lines, strings in the shortest form
 * the grammar allows (atom, quoted, literal), flag lists, and Dovecot's
 * completion texts with timings. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "postern/event.h"
#include "postern/conn.h"
#include "imap.h"

void
imap_write(struct imap_session *s, const void *data, size_t len)
{
	s->bytes_out += len;
	if (s->conn)
		pt_conn_write(s->conn, data, len);
	else if (s->capture)
		pt_strbuf_put(s->capture, data, len);
}

static void
send_line(struct imap_session *s, const char *prefix, const char *status, const char *fmt, va_list ap)
{
	struct pt_strbuf b = { 0 };

	pt_strbuf_puts(&b, prefix);
	if (status) {
		pt_strbuf_puts(&b, " ");
		pt_strbuf_puts(&b, status);
	}
	pt_strbuf_puts(&b, " ");
	char small[512];
	va_list cp;
	va_copy(cp, ap);
	int n = vsnprintf(small, sizeof(small), fmt, cp);
	va_end(cp);
	if (n >= 0 && (size_t)n < sizeof(small)) {
		pt_strbuf_put(&b, small, (size_t)n);
	} else if (n >= 0) {
		char *big = NULL;
		if (vasprintf(&big, fmt, ap) >= 0) {
			pt_strbuf_puts(&b, big);
			free(big);
		}
	}
	pt_strbuf_puts(&b, "\r\n");
	if (!b.oom)
		imap_write(s, b.p, b.len);
	pt_strbuf_free(&b);
}

void
imap_tagged(struct imap_session *s, const char *tag, const char *status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_line(s, tag, status, fmt, ap);
	va_end(ap);
}

void
imap_untagged(struct imap_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_line(s, "*", NULL, fmt, ap);
	va_end(ap);
}


void
imap_completed(struct imap_session *s, const char *tag, const char *code, const char *what)
{
	uint64_t now = pt_mono_ms();
	uint64_t ms = s->cmd_start_ms && now >= s->cmd_start_ms ? now - s->cmd_start_ms : 0;

	/* Dovecot reports a floor of 1 ms for the command's own time. */
	if (ms == 0)
		ms = 1;
	imap_tagged(s, tag, "OK", "%s%s%s%s completed (%llu.%03llu + 0.000 secs).", code ? "[" : "",
	            code ? code : "", code ? "] " : "", what, (unsigned long long)(ms / 1000),
	            (unsigned long long)(ms % 1000));
}

void
imap_tagged_timed(struct imap_session *s, const char *tag, const char *status, const char *code,
                  const char *text)
{
	uint64_t now = pt_mono_ms();
	uint64_t ms = s->cmd_start_ms && now >= s->cmd_start_ms ? now - s->cmd_start_ms : 0;

	if (ms == 0)
		ms = 1;
	imap_tagged(s, tag, status, "%s%s%s%s (%llu.%03llu + 0.000 secs).", code ? "[" : "", code ? code : "",
	            code ? "] " : "", text, (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000));
}

/* ATOM-CHAR: anything but atom-specials (RFC 3501 §9), 7-bit printable. */
static int
atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\]", c);
}

void
imap_append_astring(struct pt_strbuf *b, const char *s, size_t len)
{
	int atom = len > 0, quoted = 1;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!atom_char(c))
			atom = 0;
		if (c == '\r' || c == '\n' || c == 0 || c >= 0x80)
			quoted = 0;
	}
	if (atom && !(len == 3 && strncasecmp(s, "NIL", 3) == 0)) {
		pt_strbuf_put(b, s, len);
	} else if (quoted) {
		pt_strbuf_put(b, "\"", 1);
		for (size_t i = 0; i < len; i++) {
			if (s[i] == '"' || s[i] == '\\')
				pt_strbuf_put(b, "\\", 1);
			pt_strbuf_put(b, &s[i], 1);
		}
		pt_strbuf_put(b, "\"", 1);
	} else {
		pt_strbuf_printf(b, "{%zu}\r\n", len);
		pt_strbuf_put(b, s, len);
	}
}

static const struct {
	uint32_t bit;
	const char *name;
} system_flags[] = {
	{ PT_F_ANSWERED, "\\Answered" }, { PT_F_FLAGGED, "\\Flagged" }, { PT_F_DELETED, "\\Deleted" },
	{ PT_F_SEEN, "\\Seen" },         { PT_F_DRAFT, "\\Draft" },     { PT_F_RECENT, "\\Recent" },
};

uint32_t
imap_system_flag(const char *name)
{
	for (size_t i = 0; i < sizeof(system_flags) / sizeof(system_flags[0]); i++)
		if (system_flags[i].bit != PT_F_RECENT && strcasecmp(name, system_flags[i].name) == 0)
			return system_flags[i].bit;
	return 0;
}

int
imap_keyword_valid(const char *s, size_t len)
{
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c))
			return 0;
	}
	return 1;
}

void
imap_append_flags(struct imap_session *s, struct pt_strbuf *b, uint32_t flags, uint64_t kw)
{
	int first = 1;

	pt_strbuf_put(b, "(", 1);
	for (size_t i = 0; i < sizeof(system_flags) / sizeof(system_flags[0]); i++) {
		if (!(flags & system_flags[i].bit))
			continue;
		if (system_flags[i].bit == PT_F_RECENT && s && s->rev2)
			continue;   /* RFC 9051 has no \Recent */
		if (!first)
			pt_strbuf_put(b, " ", 1);
		pt_strbuf_puts(b, system_flags[i].name);
		first = 0;
	}
	if (kw && s->mb && s->mbx) {
		size_t n = s->mbx->keyword_count(s->mb);
		for (size_t i = 0; i < n && i < PT_KEYWORDS_MAX; i++) {
			const char *name;
			if (!(kw & ((uint64_t)1 << i)) || (name = s->mbx->keyword_name(s->mb, i)) == NULL)
				continue;
			if (!first)
				pt_strbuf_put(b, " ", 1);
			pt_strbuf_puts(b, name);
			first = 0;
		}
	}
	pt_strbuf_put(b, ")", 1);
}

void
imap_send_flags(struct imap_session *s)
{
	struct pt_strbuf b = { 0 };
	size_t nkw = s->mb ? s->mbx->keyword_count(s->mb) : 0;
	uint64_t all = nkw >= 64 ? UINT64_MAX : (((uint64_t)1 << nkw) - 1);

	imap_append_flags(s, &b, PT_F_SYSTEM, all);
	if (!b.oom)
		imap_untagged(s, "FLAGS %s", b.p);
	if (s->readonly) {
		imap_untagged(s, "OK [PERMANENTFLAGS ()] Read-only mailbox.");
	} else {
		/* \* only while new keywords still fit the folder's table. */
		if (b.len > 0)
			b.len--; /* drop ")" */
		pt_strbuf_puts(&b, nkw < PT_KEYWORDS_MAX ? " \\*)" : ")");
		if (!b.oom)
			imap_untagged(s, "OK [PERMANENTFLAGS %s] Flags permitted.", b.p);
	}
	pt_strbuf_free(&b);
	s->nkeywords_sent = nkw;
}
