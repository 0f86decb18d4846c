/* One delivery as the bytes appended to an mbox: From_ line, envelope
 * headers, the message transformed for mboxrd storage (every line that
 * starts with any number of '>' then "From " gains one '>'; readers take
 * one off again, so the octets round-trip exactly). Pure: no I/O, so the
 * fuzzer and the delivery code share exactly the same transformation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mbox.h"

/* Callers reserve first (pt_strbuf_reserve); appends never fail. */
static void
buf_put(struct pt_strbuf *b, const char *s, size_t n)
{
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* Envelope values end up on header lines: a CR or LF in them would let a
 * sender inject lines (or a fake From_ line), so control bytes become '?'. */
static void
buf_put_clean(struct pt_strbuf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		b->p[b->len++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
}

void
mbox_asctime(time_t t, char out[32])
{
	/* asctime's fixed English names: mbox readers parse them, locale must
	 * not change them. */
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	if (localtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11) {
		memset(&tm, 0, sizeof tm);
		tm.tm_mday = 1;
		tm.tm_year = 70;
		tm.tm_wday = 4;
	}
	long long year = (long long)tm.tm_year + 1900;
	/* The year is bounded so the line always fits. */
	if (year < 0)
		year = 0;
	if (year > 9999)
		year = 9999;
	/* GCC cannot see that the fields are short; bound the copy instead. */
	char tmp[96];
	int n = snprintf(tmp, sizeof tmp, "%s %s %2d %02d:%02d:%02d %lld", days[tm.tm_wday], months[tm.tm_mon],
	                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, year);
	if (n < 0)
		n = 0;
	if (n > 31)
		n = 31;
	memcpy(out, tmp, (size_t)n);
	out[n] = '\0';
}

int
mbox_header_is_internal(const char *name, size_t len)
{
	static const char *const names[] = { "X-IMAPbase", "X-IMAP", "X-UID", "Status", "X-Status",
		"X-Keywords", "Content-Length", "X-Postern-Quoting" };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
			return 1;
	return 0;
}

/* Is line (without LF) a header field the mailbox owns? The name runs up
 * to the colon; white space before the colon is tolerated (obs syntax). */
static int
line_is_internal_field(const char *line, size_t len)
{
	size_t n = 0;
	while (n < len && line[n] != ':' && line[n] != ' ' && line[n] != '\t')
		n++;
	size_t c = n;
	while (c < len && (line[c] == ' ' || line[c] == '\t'))
		c++;
	if (n == 0 || c >= len || line[c] != ':')
		return 0;
	return mbox_header_is_internal(line, n);
}

int
mbox_line_quoted(const char *line, size_t len, int min_gt)
{
	size_t i = 0;
	while (i < len && line[i] == '>')
		i++;
	return i >= (size_t)min_gt && len - i >= 5 && memcmp(line + i, "From ", 5) == 0;
}

/* Not the header iterator: a stored line may keep one CR ("x\r\r\n" in
 * arrives as "x\r\n"), and a "\r" line is text here, where the iterator
 * would end the header section at it (fuzz_mbox_roundtrip pins this). */
size_t
mbox_header_end(const char *p, size_t len)
{
	for (size_t i = 0; i < len;) {
		if (p[i] == '\n')
			return i;
		const char *nl = memchr(p + i, '\n', len - i);
		i = nl ? (size_t)(nl - p) + 1 : len;
	}
	return len;
}

int
mbox_format_body(const char *data, size_t len, struct pt_strbuf *b)
{
	/* Worst case: every line gains '>' (a quoted line is >= 5 bytes + LF)
	 * plus a final LF. */
	size_t bound = len + len / 5 + 2;
	if (len > SIZE_MAX / 2 || pt_strbuf_reserve(b, bound) != 0)
		return -1;
	int in_header = 1, skipping = 0;
	size_t i = 0;
	while (i < len) {
		const char *nl = memchr(data + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - data) : len;
		size_t ll = end - i;
		/* CR LF is stored as LF; a lone CR elsewhere stays. */
		if (nl && ll > 0 && data[end - 1] == '\r')
			ll--;
		const char *line = data + i;
		i = nl ? end + 1 : len;
		if (in_header) {
			if (ll == 0) {
				in_header = 0;
			} else if (line[0] == ' ' || line[0] == '\t') {
				if (skipping)
					continue;
			} else {
				skipping = line_is_internal_field(line, ll);
				if (skipping)
					continue;
			}
		}
		if (mbox_line_quoted(line, ll, 0))
			buf_put(b, ">", 1);
		buf_put(b, line, ll);
		buf_put(b, "\n", 1);
	}
	b->p[b->len] = '\0';
	return 0;
}

int
mbox_format(const struct pt_delivery *d, struct pt_strbuf *b)
{
	size_t start = b->len;
	const char *sender = d->sender ? d->sender : "";
	const char *rcpt = d->recipient ? d->recipient : "";
	const char *orig = d->orig_recipient;
	char date[32];
	mbox_asctime(d->arrival, date);
	size_t env = strlen(sender) * 2 + strlen(rcpt) + (orig ? strlen(orig) : 0) + strlen(date) +
	             128;
	if (pt_strbuf_reserve(b, env) != 0)
		return -1;
	buf_put(b, "From ", 5);
	if (*sender)
		buf_put_clean(b, sender);
	else
		buf_put(b, "MAILER-DAEMON", 13);
	buf_put(b, "  ", 2);
	buf_put(b, date, strlen(date));
	buf_put(b, "\nReturn-Path: <", 15);
	buf_put_clean(b, sender);
	buf_put(b, ">\n", 2);
	if (orig && *orig) {
		buf_put(b, "X-Original-To: ", 15);
		buf_put_clean(b, orig);
		buf_put(b, "\n", 1);
	}
	buf_put(b, "Delivered-To: ", 14);
	buf_put_clean(b, rcpt);
	buf_put(b, "\n", 1);
	size_t body = b->len;
	size_t ml = strlen(MBOX_RD_MARKER);
	if (mbox_format_body(d->data, d->len, b) != 0 || pt_strbuf_reserve(b, ml + 1) != 0) {
		b->len = start;
		return -1;
	}
	/* The marker closes the header section: this message is mboxrd. */
	size_t split = body + mbox_header_end(b->p + body, b->len - body);
	memmove(b->p + split + ml, b->p + split, b->len - split);
	memcpy(b->p + split, MBOX_RD_MARKER, ml);
	b->len += ml;
	buf_put(b, "\n", 1);
	b->p[b->len] = '\0';
	return 0;
}
