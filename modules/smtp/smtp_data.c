/* DATA decoder, BDAT converter and the bounded message buffer. The DATA
 * end is recognised only as CR LF "." CR LF where the first CR LF is a real
 * one: every other spelling of a line end (bare LF, bare CR) either ends a
 * content line (normalize) or refuses the message (reject), but can never
 * end the message -- that is what makes SMTP smuggling impossible. */
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"

/* ---- message buffer ---- */

enum { H_LINESTART, H_NAME, H_VALUE };

void
smtp_msgbuf_init(struct smtp_msgbuf *b, size_t limit, size_t header_limit)
{
	memset(b, 0, sizeof(*b));
	b->limit = limit;
	b->header_limit = header_limit;
	b->in_header = 1;
	b->hstate = H_LINESTART;
}

/* Messages are received into memory; this caps what all sessions of the
 * process hold together (smtpd_message_buffer_limit), so many parallel
 * large transactions get a temporary error instead of exhausting RAM.
 * Buffers belong to the loop thread only. */
static size_t buffered_total;
static size_t buffered_limit;

void
smtp_msgbuf_set_budget(size_t limit)
{
	buffered_limit = limit;
}

size_t
smtp_msgbuf_buffered(void)
{
	return buffered_total;
}

static int
grow(struct smtp_msgbuf *b, size_t need)
{
	size_t cap = b->cap ? b->cap : 8192;
	char *p;

	if (b->len + need <= b->cap)
		return 0;
	while (cap < b->len + need) {
		if (cap > ((size_t)-1) / 2)
			return -1;
		cap *= 2;
	}
	if (buffered_limit && buffered_total - b->cap + cap > buffered_limit)
		return -1;
	p = realloc(b->p, cap);
	if (p == NULL)
		return -1;
	buffered_total += cap - b->cap;
	b->p = p;
	b->cap = cap;
	return 0;
}

/* Stop storing once the message is refused: the rest is only counted. */
static void
drop_storage(struct smtp_msgbuf *b)
{
	buffered_total -= b->cap;
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

int
smtp_msgbuf_failed(const struct smtp_msgbuf *b)
{
	return b->too_big || b->header_too_big || b->oom;
}

int
smtp_msgbuf_put_trace(struct smtp_msgbuf *b, const char *s, size_t n)
{
	if (smtp_msgbuf_failed(b))
		return -1;
	if (grow(b, n) < 0) {
		b->oom = 1;
		drop_storage(b);
		return -1;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	return 0;
}

static int
is_ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

/* RFC 5322 header section: field lines "name:" and continuation lines;
 * it ends at the first empty line or the first line that is neither. */
static void
scan_header(struct smtp_msgbuf *b, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && b->in_header; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (b->hstate) {
		case H_LINESTART:
			if (c == '\n')
				b->in_header = 0;
			else if (c == ' ' || c == '\t')
				b->hstate = H_VALUE;
			else if (is_ftext(c))
				b->hstate = H_NAME;
			else
				b->in_header = 0;
			break;
		case H_NAME:
			if (c == ':')
				b->hstate = H_VALUE;
			else if (!is_ftext(c))
				b->in_header = 0;
			break;
		default:
			if (c == '\n')
				b->hstate = H_LINESTART;
			break;
		}
	}
	if (!b->in_header && i > 0)
		i--;  /* the byte that ended the header section is body */
	b->header_bytes += i;
	if (b->header_limit && b->header_bytes > b->header_limit && !b->header_too_big) {
		b->header_too_big = 1;
		drop_storage(b);
	}
}

void
smtp_msgbuf_put(struct smtp_msgbuf *b, const char *s, size_t n)
{
	if (n == 0)
		return;
	b->content += n;
	if (b->limit && b->content > b->limit && !b->too_big) {
		b->too_big = 1;
		drop_storage(b);
	}
	if (b->in_header)
		scan_header(b, s, n);
	if (smtp_msgbuf_failed(b))
		return;
	if (grow(b, n) < 0) {
		b->oom = 1;
		drop_storage(b);
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

void
smtp_msgbuf_finish(struct smtp_msgbuf *b)
{
	if (b->content > 0 && b->len > 0 && b->p[b->len - 1] != '\n')
		smtp_msgbuf_put(b, "\n", 1);
}

void
smtp_msgbuf_free(struct smtp_msgbuf *b)
{
	drop_storage(b);
}

/* ---- DATA decoder ---- */

enum {
	ST_BOL = 0,     /* line start after a real CR LF (or the DATA line) */
	ST_BOL_BARE,    /* line start after a bare CR or LF: no dot rules */
	ST_TEXT,        /* inside a line */
	ST_CR,          /* CR seen inside a line */
	ST_DOT,         /* "." at ST_BOL */
	ST_DOT_CR,      /* "." CR at ST_BOL: only LF now ends the message */
};

void
smtp_data_init(struct smtp_data_dec *d, enum smtp_bare_policy policy)
{
	d->state = ST_BOL;
	d->policy = (unsigned char)policy;
}

enum smtp_data_status
smtp_data_feed(struct smtp_data_dec *d, const char *in, size_t n, size_t *used,
               struct smtp_msgbuf *out)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = (unsigned char)in[i];

		switch (d->state) {
		case ST_TEXT:
		case ST_BOL_BARE:
			if (c != '\r' && c != '\n') {
				size_t j = i + 1;
				while (j < n && in[j] != '\r' && in[j] != '\n')
					j++;
				smtp_msgbuf_put(out, in + i, j - i);
				d->state = ST_TEXT;
				i = j;
				continue;
			}
			/* FALLTHROUGH */
		case ST_BOL:
			if (c == '\r') {
				d->state = ST_CR;
			} else if (c == '\n') {
				if (d->policy == SMTP_BARE_REJECT)
					goto bare;
				smtp_msgbuf_put(out, "\n", 1);
				d->state = d->policy == SMTP_BARE_LOCAL ? ST_BOL : ST_BOL_BARE;
			} else if (c == '.' && d->state == ST_BOL) {
				d->state = ST_DOT;
			} else {
				smtp_msgbuf_put(out, in + i, 1);
				d->state = ST_TEXT;
			}
			i++;
			break;
		case ST_CR:
			if (c == '\n') {
				smtp_msgbuf_put(out, "\n", 1);
				d->state = ST_BOL;
				i++;
			} else {
				/* Bare CR: it ended a line; c starts the next one. */
				if (d->policy == SMTP_BARE_REJECT)
					goto bare;
				smtp_msgbuf_put(out, "\n", 1);
				d->state = ST_BOL_BARE;
			}
			break;
		case ST_DOT:
			if (c == '\r') {
				d->state = ST_DOT_CR;
			} else if (c == '\n') {
				if (d->policy == SMTP_BARE_LOCAL)
					goto end;
				/* "." ended by a bare LF is content, kept visible. */
				if (d->policy == SMTP_BARE_REJECT)
					goto bare;
				smtp_msgbuf_put(out, ".\n", 2);
				d->state = ST_BOL_BARE;
			} else {
				/* Dot-stuffed line: the leading dot goes. */
				smtp_msgbuf_put(out, in + i, 1);
				d->state = ST_TEXT;
			}
			i++;
			break;
		case ST_DOT_CR:
			if (c == '\n')
				goto end;
			if (d->policy == SMTP_BARE_REJECT)
				goto bare;
			smtp_msgbuf_put(out, ".\n", 2);
			d->state = ST_BOL_BARE;
			break;
		default:
			d->state = ST_TEXT;
			break;
		}
	}
	*used = n;
	return SMTP_DATA_MORE;
end:
	*used = i + 1;
	d->state = ST_BOL;
	return SMTP_DATA_END;
bare:
	*used = i + 1;
	return SMTP_DATA_BARE;
}

/* ---- BDAT ---- */

void
smtp_bdat_feed(struct smtp_bdat_conv *c, const char *in, size_t n, struct smtp_msgbuf *out)
{
	size_t i = 0;

	if (n == 0)
		return;
	if (c->pending_cr) {
		c->pending_cr = 0;
		if (in[0] == '\n') {
			smtp_msgbuf_put(out, "\n", 1);
			i = 1;
		} else {
			smtp_msgbuf_put(out, "\r", 1);
		}
	}
	while (i < n) {
		const char *cr = memchr(in + i, '\r', n - i);
		size_t j = cr ? (size_t)(cr - in) : n;

		smtp_msgbuf_put(out, in + i, j - i);
		i = j;
		if (i >= n)
			break;
		if (i + 1 >= n) {
			c->pending_cr = 1;
			return;
		}
		if (in[i + 1] == '\n') {
			smtp_msgbuf_put(out, "\n", 1);
			i += 2;
		} else {
			smtp_msgbuf_put(out, "\r", 1);
			i++;
		}
	}
}

void
smtp_bdat_finish(struct smtp_bdat_conv *c, struct smtp_msgbuf *out)
{
	if (c->pending_cr) {
		c->pending_cr = 0;
		smtp_msgbuf_put(out, "\r", 1);
	}
}
