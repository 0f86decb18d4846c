/* The store's text work, without I/O: reading Dovecot-compatible metadata
 * headers (X-IMAPbase, X-UID, Status, X-Status, X-Keywords) from a header
 * section, rendering them back as one padded block, the wire form (CRLF,
 * storage headers hidden) and the From_ line's date. */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "mbox_store.h"

enum field { F_OTHER, F_BASE, F_IMAP, F_UID, F_STATUS, F_XSTATUS, F_KEYWORDS, F_CLEN, F_QUOTE };

static enum field
field_kind(const char *line, size_t len)
{
	static const struct {
		const char *name;
		size_t len;
		enum field kind;
	} names[] = {
		{ "X-IMAPbase", 10, F_BASE }, { "X-IMAP", 6, F_IMAP }, { "X-UID", 5, F_UID },
		{ "Status", 6, F_STATUS }, { "X-Status", 8, F_XSTATUS }, { "X-Keywords", 10, F_KEYWORDS },
		{ "Content-Length", 14, F_CLEN }, { "X-Postern-Quoting", 17, F_QUOTE },
	};
	/* Every storage header starts with X, S or C: most fields of a
	 * message are told apart by their first octet (this runs for every
	 * field of every message read). */
	int f0 = len ? ((unsigned char)line[0] | 0x20) : 0;
	if (f0 != 'x' && f0 != 's' && f0 != 'c')
		return F_OTHER;
	size_t n = 0;
	while (n < len && line[n] != ':' && line[n] != ' ' && line[n] != '\t')
		n++;
	size_t c = n;
	while (c < len && (line[c] == ' ' || line[c] == '\t'))
		c++;
	if (n == 0 || c >= len || line[c] != ':')
		return F_OTHER;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i].len == n && strncasecmp(names[i].name, line, n) == 0)
			return names[i].kind;
	return F_OTHER;
}

/* One header field with its continuation lines: [off, off+len) incl. the
 * final LF; value the text after the colon (first line only), set for
 * storage fields only (kind != F_OTHER). */
struct hfield {
	size_t off, len;
	enum field kind;
	const char *value;
	size_t vlen;                  /* to the end of the field (all lines) */
};

/* Next field at *pos; 0 at the end of the header section (the empty line
 * or the end of input). */
static int
next_field(const char *p, size_t len, size_t *pos, struct hfield *f)
{
	size_t i = *pos;
	if (i >= len || p[i] == '\n' || (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n'))
		return 0;
	f->off = i;
	const char *nl = memchr(p + i, '\n', len - i);
	size_t first_end = nl ? (size_t)(nl - p) : len;
	f->kind = field_kind(p + i, first_end - i);
	size_t j = nl ? first_end + 1 : len;
	while (j < len && (p[j] == ' ' || p[j] == '\t')) {
		nl = memchr(p + j, '\n', len - j);
		j = nl ? (size_t)(nl - p) + 1 : len;
	}
	f->len = j - i;
	/* Only storage fields' values are read: no colon search for the
	 * other fields (every field of every message at a folder's load). */
	f->value = NULL;
	f->vlen = 0;
	if (f->kind != F_OTHER) {
		const char *colon = memchr(p + i, ':', first_end - i);
		f->value = colon ? colon + 1 : p + first_end;
		f->vlen = (size_t)(p + j - f->value);
	}
	*pos = j;
	return 1;
}

static void
words(const char *v, size_t vlen, char (*out)[64], size_t *n, size_t skip)
{
	size_t i = 0, w = 0;
	while (i < vlen) {
		while (i < vlen && isspace((unsigned char)v[i]))
			i++;
		size_t s = i;
		while (i < vlen && !isspace((unsigned char)v[i]))
			i++;
		if (i == s)
			break;
		if (w++ < skip)
			continue;
		if (*n < PT_KEYWORDS_MAX && i - s < 64) {
			memcpy(out[*n], v + s, i - s);
			out[*n][i - s] = '\0';
			if (ms_keyword_valid(out[*n]))
				(*n)++;
		}
	}
}

static int
parse_u32(const char *v, size_t vlen, size_t *i, uint32_t *out)
{
	while (*i < vlen && (v[*i] == ' ' || v[*i] == '\t'))
		(*i)++;
	unsigned long long x = 0;
	size_t s = *i;
	while (*i < vlen && isdigit((unsigned char)v[*i]) && *i - s < 12)
		x = x * 10 + (unsigned)(v[(*i)++] - '0');
	if (*i == s || x > 0xffffffffull)
		return -1;
	*out = (uint32_t)x;
	return 0;
}

static size_t bare_lfs(const char *s, size_t n);

#define HDR_KW_END (offsetof(struct ms_hdr, kw) + sizeof ((struct ms_hdr *)0)->kw)
#define HDR_BASE_KW_END (offsetof(struct ms_hdr, base_kw) + sizeof ((struct ms_hdr *)0)->base_kw)
_Static_assert(HDR_KW_END <= offsetof(struct ms_hdr, base_kw), "kw before base_kw");

/* ms_header_parse; meta_bare (if not NULL) gets the bare LFs of the
 * storage fields. */
static void
header_parse(const char *hdr, size_t len, struct ms_hdr *h, size_t *meta_bare)
{
	/* All of it but the keyword name arrays (8 KB, read only up to nkw
	 * and nbase_kw): not 8 KB cleared per message of a load. */
	char *z = (char *)h;
	memset(z, 0, offsetof(struct ms_hdr, kw));
	memset(z + HDR_KW_END, 0, offsetof(struct ms_hdr, base_kw) - HDR_KW_END);
	memset(z + HDR_BASE_KW_END, 0, sizeof *h - HDR_BASE_KW_END);
	size_t pos = 0, prev_end = 0;
	int contiguous = 1, seen = 0;
	struct hfield f;
	while (next_field(hdr, len, &pos, &f)) {
		if (f.kind == F_OTHER)
			continue;
		if (seen && f.off != prev_end)
			contiguous = 0;
		if (!seen)
			h->blk_off = (int64_t)f.off;
		seen = 1;
		prev_end = f.off + f.len;
		h->meta_len += (uint32_t)f.len;
		if (meta_bare)
			*meta_bare += bare_lfs(hdr + f.off, f.len);
		size_t i = 0;
		switch (f.kind) {
		case F_BASE:
			if (!h->has_base && parse_u32(f.value, f.vlen, &i, &h->base_validity) == 0 &&
			    parse_u32(f.value, f.vlen, &i, &h->base_last) == 0 && h->base_validity != 0) {
				h->has_base = 1;
				words(f.value + i, f.vlen - i, h->base_kw, &h->nbase_kw, 0);
			}
			break;
		case F_UID:
			if (!h->has_uid && parse_u32(f.value, f.vlen, &i, &h->uid) == 0 && h->uid != 0)
				h->has_uid = 1;
			break;
		case F_STATUS:
			for (i = 0; i < f.vlen; i++) {
				if (f.value[i] == 'R')
					h->flags |= PT_F_SEEN;
				else if (f.value[i] == 'O')
					h->old = 1;
			}
			break;
		case F_XSTATUS:
			for (i = 0; i < f.vlen; i++) {
				switch (f.value[i]) {
				case 'A': h->flags |= PT_F_ANSWERED; break;
				case 'F': h->flags |= PT_F_FLAGGED; break;
				case 'T': h->flags |= PT_F_DRAFT; break;
				case 'D': h->flags |= PT_F_DELETED; break;
				default: break;
				}
			}
			break;
		case F_KEYWORDS:
			words(f.value, f.vlen, h->kw, &h->nkw, 0);
			break;
		case F_CLEN:
			h->clen_len += (uint32_t)f.len;
			break;
		case F_QUOTE:
			/* Kept verbatim like Content-Length (rewrites carry it). */
			h->clen_len += (uint32_t)f.len;
			h->rd = f.vlen >= 6 && memmem(f.value, f.vlen, "mboxrd", 6) != NULL;
			break;
		default:
			break;
		}
	}
	if (seen && contiguous)
		h->blk_len = (uint32_t)(prev_end - (size_t)h->blk_off);
	else
		h->blk_off = 0;
	h->fields_end = pos;
}

void
ms_header_parse(const char *hdr, size_t len, struct ms_hdr *h)
{
	header_parse(hdr, len, h, NULL);
}

/* cb for [s, s+n) (whole lines); with rd, each /^>+From / line loses
 * its first '>' (mboxrd's unquoting). */
static int
emit(const char *s, size_t n, int rd, int (*cb)(void *arg, const char *s, size_t n), void *arg)
{
	if (!rd)
		return cb(arg, s, n);
	size_t from = 0;
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(s + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - s) + 1 : n;
		if (mbox_line_quoted(s + i, e - i, 1)) {
			if (i > from && cb(arg, s + from, i - from) != 0)
				return -1;
			from = i + 1;
		}
		i = e;
	}
	return n > from ? cb(arg, s + from, n - from) : 0;
}

/* Walk the kept lines of a message's header part (its fields but the
 * storage headers, then the empty line): cb(arg, line, len_with_lf).
 * *hdr_end: where the body starts. */
static int
kept_header(const char *p, size_t len, size_t *hdr_end, int rd,
            int (*cb)(void *arg, const char *s, size_t n), void *arg)
{
	size_t pos = 0;
	struct hfield f;
	while (next_field(p, len, &pos, &f))
		if (f.kind == F_OTHER && emit(p + f.off, f.len, rd, cb, arg) != 0)
			return -1;
	/* The empty line (if any) belongs to the header part. */
	size_t body = pos;
	if (pos < len) {
		const char *nl = memchr(p + pos, '\n', len - pos);
		body = nl ? (size_t)(nl - p) + 1 : len;
		if (cb(arg, p + pos, body - pos) != 0)
			return -1;
	}
	*hdr_end = body;
	return 0;
}

/* The same for the whole message: header part, then the body. */
static int
kept_lines(const char *p, size_t len, size_t *hdr_end, int rd,
           int (*cb)(void *arg, const char *s, size_t n), void *arg)
{
	if (kept_header(p, len, hdr_end, rd, cb, arg) != 0)
		return -1;
	if (*hdr_end < len && emit(p + *hdr_end, len - *hdr_end, rd, cb, arg) != 0)
		return -1;
	return 0;
}

struct wire_acc {
	uint64_t size;
	uint64_t at_hdr;
	struct pt_strbuf *b;
};

/* Bare LFs (not preceded by CR) in [s, s+n); an LF at s counts (a CR
 * before the piece is not looked at). Every message's size at the first
 * load of a folder counts its whole body here, so 16 (SSE2) or 8 (SWAR)
 * bytes a step rather than a memchr per line: an LF is bare where the
 * byte before it is no CR, compared a block at a time with the block
 * shifted by one. */
static size_t
bare_lfs(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	size_t c = s[0] == '\n', i = 1;
#ifdef __SSE2__
	const __m128i lf = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r');
	const __m128i zero = _mm_setzero_si128();
	while (i + 16 <= n) {
		/* Byte counters: at most 255 blocks before they are summed. */
		size_t blocks = (n - i) / 16 < 255 ? (n - i) / 16 : 255;
		__m128i acc = zero;
		for (size_t k = 0; k < blocks; k++, i += 16) {
			__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
			__m128i w = _mm_loadu_si128((const __m128i *)(const void *)(s + i - 1));
			/* 0xff (-1) per bare LF. */
			acc = _mm_sub_epi8(acc, _mm_andnot_si128(_mm_cmpeq_epi8(w, cr),
			                                         _mm_cmpeq_epi8(v, lf)));
		}
		__m128i sum = _mm_sad_epu8(acc, zero);
		c += (size_t)_mm_cvtsi128_si32(sum) + (size_t)_mm_extract_epi16(sum, 4);
	}
#else
	for (; i + 8 <= n; i += 8) {
		uint64_t v, w;
		memcpy(&v, s + i, 8);
		memcpy(&w, s + i - 1, 8);
		uint64_t m = mbox_bytes_eq(v, '\n') & ~mbox_bytes_eq(w, '\r');
		/* One 0/1 per byte, summed into the top byte. */
		c += (size_t)(((m >> 7) * 0x0101010101010101ull) >> 56);
	}
#endif
	for (; i < n; i++)
		if (s[i] == '\n' && s[i - 1] != '\r')
			c++;
	return c;
}

static int
count_cb(void *arg, const char *s, size_t n)
{
	struct wire_acc *a = arg;
	a->size += n + bare_lfs(s, n);
	return 0;
}

uint64_t
ms_wire_size(const char *p, size_t len, size_t *hdr_len, int rd)
{
	struct wire_acc a = { 0, 0, NULL };
	size_t hdr_end = 0;
	/* Header part first, to report its size. */
	kept_lines(p, len, &hdr_end, rd, count_cb, &a);
	if (hdr_len) {
		struct wire_acc h = { 0, 0, NULL };
		size_t dummy;
		kept_lines(p, hdr_end, &dummy, rd, count_cb, &h);
		*hdr_len = (size_t)h.size;
	}
	return a.size;
}

uint64_t
ms_header_parse_size(const char *p, size_t hdr_len, size_t len, struct ms_hdr *h)
{
	size_t meta_bare = 0;
	header_parse(p, hdr_len, h, &meta_bare);
	/* mboxrd unquoting shortens lines one by one: the general walk. */
	if (h->rd)
		return ms_wire_size(p, len, NULL, 1);
	/* Otherwise ms_wire_size's pieces (kept fields, the empty line, the
	 * body) and the dropped storage fields tile [p, p+len), and no piece
	 * starts with an LF that has a CR before it (a field never starts
	 * with LF; the empty line and the body follow an LF): so the kept
	 * octets and bare LFs are the whole text's less the dropped fields'.
	 * One pass over the message instead of a second walk of its fields;
	 * the fields walked here are the same, as the header ends at the same
	 * line whether the walk stops at hdr_len or len. */
	return (uint64_t)len + bare_lfs(p, len) - h->meta_len - meta_bare;
}

/* Append [s, s+n) with each bare LF as CRLF: line by line (memchr and
 * memcpy), not octet by octet -- SEARCH BODY puts every message of a
 * folder through here. */
static int
form_cb(void *arg, const char *s, size_t n)
{
	struct wire_acc *a = arg;
	struct pt_strbuf *b = a->b;
	/* A big piece is counted first rather than given double room. */
	size_t room = n > 65536 ? n + bare_lfs(s, n) : 2 * n;
	if (pt_strbuf_reserve(b, room) != 0)
		return -1;
	char *o = b->p + b->len;
	const char *e = s + n, *q = s;
	while (q < e) {
		const char *nl = memchr(q, '\n', (size_t)(e - q));
		if (nl == NULL) {
			memcpy(o, q, (size_t)(e - q));
			o += e - q;
			break;
		}
		size_t k = (size_t)(nl - q);
		memcpy(o, q, k);
		o += k;
		/* A CR before it counts only inside this piece (as ever). */
		if (nl == s || nl[-1] != '\r')
			*o++ = '\r';
		*o++ = '\n';
		q = nl + 1;
	}
	b->len = (size_t)(o - b->p);
	b->p[b->len] = '\0';
	return 0;
}

int
ms_wire_form(const char *p, size_t len, struct pt_strbuf *b, size_t *hdr_len, int rd)
{
	struct wire_acc a = { 0, 0, b };
	size_t start = b->len, hdr_end = 0;
	if (kept_header(p, len, &hdr_end, rd, form_cb, &a) != 0)
		return -1;
	/* Header octets: what the header part wrote (no second pass). */
	if (hdr_len)
		*hdr_len = b->len - start;
	if (hdr_end < len && emit(p + hdr_end, len - hdr_end, rd, form_cb, &a) != 0)
		return -1;
	return 0;
}

static int
month_of(const char *w)
{
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
		"Aug", "Sep", "Oct", "Nov", "Dec" };
	/* strncmp(w, months[i], 3) written out: a call per month for every
	 * candidate word of every From_ line was most of a load's date
	 * parsing. Byte by byte, so a shorter (NUL-ended) w stops early. */
	for (int i = 0; i < 12; i++)
		if (w[0] == months[i][0] && w[1] == months[i][1] && w[2] == months[i][2])
			return i;
	return -1;
}

/* sscanf's "%d" without sscanf (a mailbox has one date per message):
 * blanks, an optional sign, then digits. */
static const char *
scan_int(const char *q, int *out)
{
	while (*q == ' ' || *q == '\t')
		q++;
	int neg = *q == '-';
	if (*q == '+' || *q == '-')
		q++;
	if (!isdigit((unsigned char)*q))
		return NULL;
	long v = 0;
	while (isdigit((unsigned char)*q)) {
		if (v < 100000000)
			v = v * 10 + (*q - '0');
		q++;
	}
	*out = (int)(neg ? -v : v);
	return q;
}

/* timegm for the fields ms_from_date accepts (year 1970-9999, mon 0-11,
 * day 1-31, hh 0-23, mm 0-59, ss 0-60), by arithmetic: libc's timegm was
 * a third of the date's cost at a big folder's first read. Linear in
 * day and second as timegm's normalisation is (Feb 31 = Mar 3, ss 60 =
 * the next minute's 0). */
static time_t
utc_time(int year, int mon, int day, int hh, int mm, int ss)
{
	static const int before[12] = { 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334 };
	int64_t y = year - 1;   /* leap days of the years before this one */
	int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	int64_t days = (int64_t)(year - 1970) * 365 + (y / 4 - y / 100 + y / 400) -
	               (1969 / 4 - 1969 / 100 + 1969 / 400) + before[mon] + (mon > 1 && leap) +
	               day - 1;
	int64_t v = days * 86400 + hh * 3600 + mm * 60 + ss;
	/* A 32-bit time_t cannot hold it: timegm's -1. */
	if ((int64_t)(time_t)v != v)
		return (time_t)-1;
	return (time_t)v;
}

/* mktime for local time without its tzset per call (a stat of
 * /etc/localtime each time, 100k times for a big folder's first read):
 * UTC first (tg), then the zone's offset at that instant (again when a
 * DST change lies in between). */
static time_t
local_mktime(time_t tg, int *tz)
{
	if (tg == (time_t)-1)
		return (time_t)-1;
	struct tm lt;
	if (localtime_r(&tg, &lt) == NULL)
		return (time_t)-1;
	long off = lt.tm_gmtoff;
	time_t t = tg - off;
	if (localtime_r(&t, &lt) == NULL)
		return (time_t)-1;
	if (lt.tm_gmtoff != off) {
		t = tg - lt.tm_gmtoff;
		if (localtime_r(&t, &lt) == NULL)
			return (time_t)-1;
	}
	*tz = (int)(lt.tm_gmtoff / 60);
	return t;
}

time_t
ms_from_date(const char *line, size_t len, int *tz)
{
	*tz = 0;
	/* Find "Www Mmm dd hh:mm[:ss] [TZ] yyyy" anywhere after "From ":
	 * the sender may itself hold spaces. */
	char buf[MBOX_FROM_LINE_MAX + 1];
	if (len > MBOX_FROM_LINE_MAX)
		len = MBOX_FROM_LINE_MAX;
	memcpy(buf, line, len);
	buf[len] = '\0';
	for (size_t i = 5; i + 4 < len; i++) {
		if (buf[i - 1] != ' ' || buf[i + 3] != ' ')
			continue;
		int mon = month_of(buf + i + 4);
		if (mon < 0 || i + 8 > len || buf[i + 7] != ' ')
			continue;
		int day, hh, mm, ss = 0, year;
		const char *q = scan_int(buf + i + 8, &day);
		if (q)
			q = scan_int(q, &hh);
		if (q && *q == ':')
			q = scan_int(q + 1, &mm);
		else
			q = NULL;
		if (q == NULL)
			continue;
		if (*q == ':') {
			const char *r = scan_int(q + 1, &ss);
			if (r)
				q = r;
		}
		while (*q == ' ')
			q++;
		int zone = 0, have_zone = 0;
		if ((*q == '+' || *q == '-') && isdigit((unsigned char)q[1])) {
			/* hhmm; anything else (a mailbox anyone may have written)
			 * is no zone: local time, as without one. */
			int v = 0;
			const char *e = scan_int(q + 1, &v);
			if (e && e - (q + 1) == 4 && v / 100 <= 23 && v % 100 <= 59) {
				zone = (v / 100) * 60 + v % 100;
				if (*q == '-')
					zone = -zone;
				have_zone = 1;
			}
			while (*q && *q != ' ')
				q++;
		} else if (isalpha((unsigned char)*q)) {
			while (*q && *q != ' ')
				q++;
		}
		while (*q == ' ')
			q++;
		if (scan_int(q, &year) == NULL || year < 1970 || year > 9999 || day < 1 || day > 31 ||
		    hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 60)
			continue;
		time_t tg = utc_time(year, mon, day, hh, mm, ss);
		if (have_zone) {
			*tz = zone;
			return tg - (time_t)zone * 60;
		}
		time_t t = local_mktime(tg, tz);
		if (t == (time_t)-1) {
			*tz = 0;
			return 0;
		}
		return t;
	}
	return 0;
}

int
ms_keyword_valid(const char *name)
{
	if (name[0] == '\0' || name[0] == '\\' || strlen(name) > 63)
		return 0;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f || strchr("(){%*\"\\]", *p))
			return 0;
	return 1;
}


long
ms_block_render(const struct ms_block *k, size_t want, struct pt_strbuf *b)
{
	size_t start = b->len;
	char line[64];
	if (k->base) {
		int n = snprintf(line, sizeof line, "X-IMAPbase: %u %010u", k->validity, k->last_uid);
		pt_strbuf_put(b, line, (size_t)n);
		for (size_t i = 0; i < k->nkwnames; i++) {
			pt_strbuf_put(b, " ", 1);
			pt_strbuf_put(b, k->kwnames[i], strlen(k->kwnames[i]));
		}
		pt_strbuf_put(b, "\n", 1);
	}
	int n = snprintf(line, sizeof line, "X-UID: %u", k->uid);
	pt_strbuf_put(b, line, (size_t)n);
	size_t pad_at = b->len;
	pt_strbuf_put(b, "\n", 1);
	if ((k->flags & PT_F_SEEN) || k->old) {
		pt_strbuf_put(b, "Status: ", 8);
		if (k->flags & PT_F_SEEN)
			pt_strbuf_put(b, "R", 1);
		if (k->old)
			pt_strbuf_put(b, "O", 1);
		pt_strbuf_put(b, "\n", 1);
	}
	if (k->flags & (PT_F_ANSWERED | PT_F_FLAGGED | PT_F_DRAFT | PT_F_DELETED)) {
		pt_strbuf_put(b, "X-Status: ", 10);
		if (k->flags & PT_F_ANSWERED)
			pt_strbuf_put(b, "A", 1);
		if (k->flags & PT_F_FLAGGED)
			pt_strbuf_put(b, "F", 1);
		if (k->flags & PT_F_DRAFT)
			pt_strbuf_put(b, "T", 1);
		if (k->flags & PT_F_DELETED)
			pt_strbuf_put(b, "D", 1);
		pt_strbuf_put(b, "\n", 1);
	}
	if (k->keywords) {
		pt_strbuf_put(b, "X-Keywords:", 11);
		for (size_t i = 0; i < k->nkwnames && i < 64; i++)
			if (k->keywords & (1ull << i)) {
				pt_strbuf_put(b, " ", 1);
				pt_strbuf_put(b, k->kwnames[i], strlen(k->kwnames[i]));
			}
		pt_strbuf_put(b, "\n", 1);
	}
	if (k->clen && k->clen_len)
		pt_strbuf_put(b, k->clen, k->clen_len);
	if (b->oom) {
		b->len = start;
		return -1;
	}
	size_t natural = b->len - start;
	size_t pad = want ? 0 : MS_PAD;
	if (want) {
		if (natural > want) {
			b->len = start;
			return -1;
		}
		pad = want - natural;
	}
	if (pt_strbuf_reserve(b, pad) != 0) {
		b->len = start;
		return -1;
	}
	memmove(b->p + pad_at + pad, b->p + pad_at, b->len - pad_at);
	memset(b->p + pad_at, ' ', pad);
	b->len += pad;
	b->p[b->len] = '\0';
	return (long)(b->len - start);
}

size_t
ms_header_strip(const char *hdr, size_t len, struct pt_strbuf *out, struct pt_strbuf *clen)
{
	size_t pos = 0;
	struct hfield f;
	while (next_field(hdr, len, &pos, &f)) {
		if (f.kind == F_OTHER) {
			pt_strbuf_put(out, hdr + f.off, f.len);
		} else if ((f.kind == F_CLEN || f.kind == F_QUOTE) && clen) {
			pt_strbuf_put(clen, hdr + f.off, f.len);
		}
	}
	return out->oom || (clen && clen->oom) ? (size_t)-1 : pos;
}

size_t
ms_header_kept(const char *hdr, size_t len, void (*run)(void *arg, size_t off, size_t n),
               void *arg, struct pt_strbuf *clen)
{
	size_t pos = 0, at = 0, n = 0;
	struct hfield f;
	while (next_field(hdr, len, &pos, &f)) {
		if (f.kind == F_OTHER) {
			if (n && at + n == f.off) {
				n += f.len;
			} else {
				if (n)
					run(arg, at, n);
				at = f.off;
				n = f.len;
			}
		} else if ((f.kind == F_CLEN || f.kind == F_QUOTE) && clen) {
			pt_strbuf_put(clen, hdr + f.off, f.len);
		}
	}
	if (n)
		run(arg, at, n);
	return clen && clen->oom ? (size_t)-1 : pos;
}

/* ---- expunged UIDs (QRESYNC VANISHED) ---- */

static int
van_cmp(const void *a, const void *b)
{
	const struct ms_vanished *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

void
ms_vanished_add(struct ms_folder *f, const uint32_t *uids, size_t n, uint64_t modseq)
{
	if (n == 0)
		return;
	/* Runs of consecutive UIDs become one range each. */
	size_t runs = 1;
	for (size_t i = 1; i < n; i++)
		if (uids[i] != uids[i - 1] + 1)
			runs++;
	struct ms_vanished *v = realloc(f->van, (f->nvan + runs) * sizeof *v);
	if (v == NULL) {
		/* Not kept: the list is complete only from here on. */
		f->van_floor = modseq;
		return;
	}
	f->van = v;
	size_t k = f->nvan;
	v[k] = (struct ms_vanished){ uids[0], uids[0], modseq };
	for (size_t i = 1; i < n; i++) {
		if (uids[i] == v[k].hi + 1)
			v[k].hi = uids[i];
		else
			v[++k] = (struct ms_vanished){ uids[i], uids[i], modseq };
	}
	size_t total = k + 1;
	qsort(v, total, sizeof *v, van_cmp);
	/* Touching ranges of one expunge join; overlapping ones (never
	 * expected: a UID goes once) join with the later mod-sequence, so
	 * nothing is left out. */
	size_t w = 0;
	for (size_t i = 1; i < total; i++) {
		struct ms_vanished *c = &v[w];
		if (v[i].lo <= c->hi || (v[i].lo == c->hi + 1 && v[i].modseq == c->modseq)) {
			if (v[i].hi > c->hi)
				c->hi = v[i].hi;
			if (v[i].modseq > c->modseq)
				c->modseq = v[i].modseq;
		} else {
			v[++w] = v[i];
		}
	}
	total = w + 1;
	/* Bounded: beyond MS_VAN_MAX ranges neighbours merge pairwise (the
	 * later mod-sequence wins, the gap between them joins: a superset,
	 * which RFC 7162 allows; the caller leaves out UIDs still there). */
	while (total > MS_VAN_MAX) {
		size_t o = 0;
		for (size_t i = 0; i < total; i += 2) {
			struct ms_vanished m = v[i];
			if (i + 1 < total) {
				m.hi = v[i + 1].hi;
				if (v[i + 1].modseq > m.modseq)
					m.modseq = v[i + 1].modseq;
			}
			v[o++] = m;
		}
		total = o;
	}
	f->nvan = total;
}

int
ms_vanished_since(const struct ms_folder *f, uint64_t modseq, uint32_t **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (f->van_floor == 0 || modseq < f->van_floor)
		return -1;
	size_t k = 0;
	for (size_t i = 0; i < f->nvan; i++)
		if (f->van[i].modseq > modseq)
			k++;
	if (k == 0)
		return 0;
	uint32_t *r = malloc(2 * k * sizeof *r);
	if (r == NULL)
		return -1;
	k = 0;
	for (size_t i = 0; i < f->nvan; i++)
		if (f->van[i].modseq > modseq) {
			r[2 * k] = f->van[i].lo;
			r[2 * k + 1] = f->van[i].hi;
			k++;
		}
	*out = r;
	*n = k;
	return 0;
}
