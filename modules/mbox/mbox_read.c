/* Splitting an mbox into messages: an incremental line scanner that
 * reports each message's From_ line, header and body as file offsets, so
 * delivery checks, tests and the IMAP/POP3 side read mailboxes of any size
 * the same way without copying them. */
#include <ctype.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "mbox.h"

static const char *const weekdays[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", NULL };
static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
	"Sep", "Oct", "Nov", "Dec", NULL };

static int
word_in(const char *w, size_t len, const char *const *set)
{
	for (size_t i = 0; set[i]; i++)
		if (len == 3 && memcmp(w, set[i], 3) == 0)
			return 1;
	return 0;
}

static int
all_digits(const char *w, size_t len, size_t min, size_t max)
{
	if (len < min || len > max)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!isdigit((unsigned char)w[i]))
			return 0;
	return 1;
}

/* hh:mm or hh:mm:ss */
static int
is_time(const char *w, size_t len)
{
	if (len != 5 && len != 8)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((i % 3 == 2) ? w[i] != ':' : !isdigit((unsigned char)w[i]))
			return 0;
	return 1;
}

int
mbox_from_line_valid(const char *line, size_t len)
{
	if (len < 5 || memcmp(line, "From ", 5) != 0)
		return 0;
	/* Words after "From ": SENDER Www Mmm dd hh:mm[:ss] [TZ] yyyy [...] */
	const char *w[8];
	size_t wl[8], nw = 0, i = 5;
	while (i < len && nw < 8) {
		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (i == len)
			break;
		w[nw] = line + i;
		while (i < len && line[i] != ' ' && line[i] != '\t')
			i++;
		wl[nw] = (size_t)(line + i - w[nw]);
		nw++;
	}
	if (nw < 6)
		return 0;
	if (!word_in(w[1], wl[1], weekdays) || !word_in(w[2], wl[2], months) ||
	    !all_digits(w[3], wl[3], 1, 2) || !is_time(w[4], wl[4]))
		return 0;
	if (all_digits(w[5], wl[5], 4, 4))
		return 1;
	return nw >= 7 && all_digits(w[6], wl[6], 4, 4);
}

void
mbox_reader_init(struct mbox_reader *r, mbox_msg_cb *cb, void *arg)
{
	memset(r, 0, sizeof *r);
	r->cb = cb;
	r->arg = arg;
	r->empty_off = -1;
}

static void
emit(struct mbox_reader *r, off_t end)
{
	r->cur.end = end;
	if (!r->in_body || r->cur.body_off > end)
		r->cur.body_off = end;
	r->count++;
	if (r->stop == 0 && r->cb)
		r->stop = r->cb(r->arg, &r->cur);
}

/* One complete line: off/total its place and length (without LF), head
 * its first bytes (min(total, sizeof r->line) of them). */
static void
on_line(struct mbox_reader *r, const char *head, off_t off, size_t total, int has_lf)
{
	size_t have = total < sizeof r->line ? total : sizeof r->line;
	int from = total >= 5 && memcmp(head, "From ", 5) == 0;
	/* After an empty line (or as the first line) any "From " line starts
	 * a message; without the empty line only a real-looking From_ line
	 * does, so unquoted body text of other writers stays in its message. */
	if (from && (!r->in_msg || r->prev_empty ||
	             (have == total && mbox_from_line_valid(head, total)))) {
		if (r->in_msg)
			emit(r, r->prev_empty ? r->empty_off : off);
		else
			r->junk = off;
		r->in_msg = 1;
		r->in_body = 0;
		r->cur.from_off = off;
		r->cur.from_len = total;
		r->cur.hdr_off = off + (off_t)total + (has_lf ? 1 : 0);
		r->cur.body_off = r->cur.hdr_off;
		r->prev_empty = 0;
		return;
	}
	if (!r->in_msg)
		r->junk = off + (off_t)total + (has_lf ? 1 : 0);
	if (r->in_msg && !r->in_body && total == 0 && has_lf) {
		r->in_body = 1;
		r->cur.body_off = off + 1;
	}
	r->prev_empty = total == 0 && has_lf;
	if (r->prev_empty)
		r->empty_off = off;
}

#ifdef __SSE2__
/* 0xff at each of p[0..16) that is LF with 'F' or also after it. */
static inline __m128i
lf_then(const char *p, __m128i lf, __m128i ef, __m128i also)
{
	__m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
	__m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + 1));
	__m128i next = _mm_or_si128(_mm_cmpeq_epi8(b, ef), _mm_cmpeq_epi8(b, also));
	return _mm_and_si128(_mm_cmpeq_epi8(a, lf), next);
}
#endif

/* The first i with p[i] == LF and p[i + 1] == 'F' (or, with empty_too,
 * LF): the next line start that may matter, or SIZE_MAX if none is in
 * [0, len). 16 (SSE2) or 8 (SWAR) positions per step instead of a memchr
 * per line: the body lines of a big mailbox are most of its bytes. */
static size_t
next_line_of_interest(const char *p, size_t len, int empty_too)
{
	size_t i = 0;
	if (len < 2)
		return SIZE_MAX;
#ifdef __SSE2__
	const __m128i lf = _mm_set1_epi8('\n'), ef = _mm_set1_epi8('F');
	const __m128i also = empty_too ? lf : ef;
	/* 64 bytes a step while nothing is found (most of a body), then 16
	 * to place the hit. */
	for (; i + 65 <= len; i += 64) {
		__m128i h0 = lf_then(p + i, lf, ef, also), h1 = lf_then(p + i + 16, lf, ef, also);
		__m128i h2 = lf_then(p + i + 32, lf, ef, also), h3 = lf_then(p + i + 48, lf, ef, also);
		if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(h0, h1), _mm_or_si128(h2, h3))))
			break;
	}
	for (; i + 17 <= len; i += 16) {
		int m = _mm_movemask_epi8(lf_then(p + i, lf, ef, also));
		if (m)
			return i + (size_t)__builtin_ctz((unsigned)m);
	}
#else
	for (; i + 9 <= len; i += 8) {
		uint64_t a, b;
		memcpy(&a, p + i, 8);
		memcpy(&b, p + i + 1, 8);
		uint64_t next = mbox_bytes_eq(b, 'F') | (empty_too ? mbox_bytes_eq(b, '\n') : 0);
		if (mbox_bytes_eq(a, '\n') & next)
			break;        /* the byte loop below finds which one */
	}
#endif
	for (; i + 1 < len; i++)
		if (p[i] == '\n' && (p[i + 1] == 'F' || (empty_too && p[i + 1] == '\n')))
			return i;
	return SIZE_MAX;
}

/* At a line start inside a message, where the line is neither a "From "
 * candidate nor (in the header) the empty line: consume every whole line
 * up to the next one that might be, with exactly the state on_line would
 * leave. Inside a body only "From " lines and whether the line before one
 * was empty matter; inside the header also the empty line that ends it.
 * Returns the bytes consumed (0: no LF in buf, the byte path goes on). */
static size_t
skip_plain_lines(struct mbox_reader *r, const char *buf, size_t len)
{
	size_t i = next_line_of_interest(buf, len, !r->in_body);
	if (i == SIZE_MAX) {
		/* Through the last LF; the partial line after it (no 'F' at its
		 * start, or none yet) is the byte path's. A byte loop: it runs
		 * once per feed, over the tail of one line. */
		i = len;
		while (i > 0 && buf[i - 1] != '\n')
			i--;
		if (i == 0)
			return 0;
		i--;
	}
	/* The line ending at i is the last skipped: empty iff it starts there
	 * (buf starts a line). */
	r->prev_empty = i == 0 || buf[i - 1] == '\n';
	if (r->prev_empty)
		r->empty_off = r->off + (off_t)i;
	return i + 1;
}

int
mbox_reader_feed(struct mbox_reader *r, const char *buf, size_t len)
{
	while (len > 0 && r->stop == 0) {
		if (r->in_msg && r->line_total == 0 && buf[0] != 'F' &&
		    (r->in_body || buf[0] != '\n')) {
			size_t k = skip_plain_lines(r, buf, len);
			if (k > 0) {
				r->off += (off_t)k;
				buf += k;
				len -= k;
				r->line_off = r->off;
				continue;
			}
		}
		const char *nl = memchr(buf, '\n', len);
		size_t chunk = nl ? (size_t)(nl - buf) : len;
		if (nl && r->line_total == 0) {
			/* A whole line in buf (the common case): looked at in place,
			 * no copy of every line of a big mailbox. */
			on_line(r, buf, r->line_off, chunk, 1);
			r->off += (off_t)chunk + 1;
			buf += chunk + 1;
			len -= chunk + 1;
			r->line_off = r->off;
			continue;
		}
		if (r->line_total < sizeof r->line) {
			size_t room = sizeof r->line - r->line_total;
			memcpy(r->line + r->line_total, buf, chunk < room ? chunk : room);
		}
		r->line_total += chunk;
		r->off += (off_t)chunk;
		buf += chunk;
		len -= chunk;
		if (nl) {
			on_line(r, r->line, r->line_off, r->line_total, 1);
			r->off++;
			buf++;
			len--;
			r->line_off = r->off;
			r->line_total = 0;
		}
	}
	return r->stop;
}

int
mbox_reader_finish(struct mbox_reader *r)
{
	if (r->stop)
		return r->stop;
	if (r->line_total > 0) {
		/* A last line without LF (a damaged mbox) still counts. */
		on_line(r, r->line, r->line_off, r->line_total, 0);
		r->line_total = 0;
		r->line_off = r->off;
	}
	if (r->in_msg) {
		emit(r, r->prev_empty ? r->empty_off : r->off);
		r->in_msg = 0;
	} else {
		r->junk = r->off;
	}
	return r->stop;
}

int
mbox_parse(const char *buf, size_t len, mbox_msg_cb *cb, void *arg, off_t *junk)
{
	struct mbox_reader r;
	mbox_reader_init(&r, cb, arg);
	int rc = mbox_reader_feed(&r, buf, len);
	if (rc == 0)
		rc = mbox_reader_finish(&r);
	if (junk)
		*junk = r.junk;
	return rc;
}
