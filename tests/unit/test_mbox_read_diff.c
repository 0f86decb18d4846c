/* The fast paths of the mbox reader (skipping plain lines a block at a
 * time) and of the wire size (bare LFs counted a block at a time) against
 * the line-by-line models of mbox_read_ref.h: the same messages, junk and
 * count for every input and every way of splitting it across feeds, and
 * the same sizes. Hand-written edge cases, every cut of small inputs, and
 * random inputs in random chunks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "mbox/mbox.h"
#include "mbox/mbox_store.h"
#include "mbox_read_ref.h"

/* A small fixed PRNG: reproducible failures, no libc rand state. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t
rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return n ? (uint32_t)(rng % n) : 0;
}

struct got {
	struct ref_list l;
	off_t junk;
	unsigned long count;
};

/* The real reader, the input cut at cuts[0..ncuts) (ascending). */
static void
real_parse(const char *s, size_t len, const size_t *cuts, size_t ncuts, struct got *g)
{
	struct mbox_reader r;
	memset(g, 0, sizeof *g);
	mbox_reader_init(&r, ref_add, &g->l);
	size_t at = 0;
	for (size_t i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : len;
		assert_int_equal(mbox_reader_feed(&r, s + at, to - at), 0);
		at = to;
	}
	assert_int_equal(mbox_reader_finish(&r), 0);
	g->junk = r.junk;
	g->count = r.count;
}

static void
assert_like_ref(const char *s, size_t len, const struct ref_list *want, off_t want_junk,
                const struct got *g)
{
	if (g->l.n != want->n || g->junk != want_junk || g->count != want->n ||
	    (want->n && memcmp(g->l.m, want->m, want->n * sizeof *want->m) != 0)) {
		/* Say which input, for a failure worth reading. */
		fprintf(stderr, "differs on %zu bytes: \"", len);
		for (size_t i = 0; i < len && i < 400; i++)
			fprintf(stderr, s[i] == '\n' ? "\\n" : s[i] == '\r' ? "\\r" : "%c", s[i]);
		fprintf(stderr, "\" (%zu vs %zu messages, junk %lld vs %lld)\n", g->l.n, want->n,
		        (long long)g->junk, (long long)want_junk);
		fail();
	}
}

/* Whole, split at every offset, byte by byte, and (when small) at every
 * pair of offsets: all like the reference. */
static void
check_all_splits(const char *s, size_t len, int pairs)
{
	struct ref_list want = { 0 };
	off_t junk;
	ref_parse(s, len, &want, &junk);
	struct got g;
	real_parse(s, len, NULL, 0, &g);
	assert_like_ref(s, len, &want, junk, &g);
	free(g.l.m);
	for (size_t a = 0; a <= len; a++) {
		real_parse(s, len, &a, 1, &g);
		assert_like_ref(s, len, &want, junk, &g);
		free(g.l.m);
		for (size_t b = a; pairs && b <= len; b++) {
			size_t cuts[2] = { a, b };
			real_parse(s, len, cuts, 2, &g);
			assert_like_ref(s, len, &want, junk, &g);
			free(g.l.m);
		}
	}
	size_t *cuts = calloc(len + 1, sizeof *cuts);
	assert_non_null(cuts);
	for (size_t i = 0; i < len; i++)
		cuts[i] = i;
	real_parse(s, len, cuts, len, &g);
	assert_like_ref(s, len, &want, junk, &g);
	free(g.l.m);
	free(cuts);
	free(want.m);
}

#define DATE "Sat Nov 28 06:08:07 2026"

static const char *const edge_cases[] = {
	"",
	"\n",
	"\n\n\n",
	"only junk\nno From_ line at all\n",
	"only junk without LF",
	"junk\nFrom a\nH: 1\n\nbody\n",
	/* "From " in a body: after an empty line it splits, without one only
	 * a real-looking From_ line does. */
	"From a " DATE "\nH: 1\n\ntext\n\nFrom b\nH: 2\n\nx\n",
	"From a " DATE "\nH: 1\n\ntext\nFrom b\nmore\n",
	"From a " DATE "\nH: 1\n\ntext\nFrom b " DATE "\nH: 2\n\n",
	"From a " DATE "\nH: 1\n\n>From b " DATE "\n>>From c\n\n",
	"From a\nH: 1\n\nFro\nFrom\nFrom  \nF\n\nF\nFrom x\n",
	/* Blank lines at the very end; an empty body; a From_ line alone. */
	"From a\nH: 1\n\nbody\n\n\n\n",
	"From a\nH: 1\n\n",
	"From a\nH: 1\n",
	"From a\n\nFrom b\n\n\nFrom c\n",
	"From a",
	"From a\n",
	/* Last line without LF, in the header and in the body. */
	"From a\nH: 1",
	"From a\nH: 1\n\nbody\nlast",
	"From a\nH: 1\n\nbody\n\nFrom b",
	"From a\nH: 1\n\nbody\n\nFro",
	/* CRLF files: "\r\n" is no empty line. */
	"From a\r\nH: 1\r\n\r\nb\r\n\r\nFrom b\r\nH: 2\r\n\r\n",
	"From a " DATE "\r\nH: 1\r\n\r\nb\r\nFrom b " DATE "\r\n",
	"From a\nH: 1\n\nx\r\n\r\nFrom b\n\r\n\nFrom c\n",
	/* Header lines that start with F, and a From_ line in a header. */
	"From a\nFrom: x\nFoo: y\nF\n\nbody\n",
	"From a\nH: 1\nFrom b " DATE "\nH: 2\n\nbody\n",
	"From a\nH: 1\nFrom b\n\nbody\n",
	/* Empty lines right after the From_ line, and LF LF F patterns. */
	"From a\n\n\nF\n\nFrom b\n",
	"From a\nH\n\n\nF\n\n\nFrom b\n\n",
};

static void
test_edge_cases_every_split(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof edge_cases / sizeof edge_cases[0]; k++)
		check_all_splits(edge_cases[k], strlen(edge_cases[k]), 1);
}

/* Lines longer than the reader keeps (MBOX_FROM_LINE_MAX): a real-looking
 * From_ line that long without an empty line before it does not split;
 * one of exactly the maximum does. */
static void
test_long_lines(void **state)
{
	(void)state;
	for (size_t extra = 0; extra < 3; extra++) {
		size_t from_len = MBOX_FROM_LINE_MAX - 1 + extra;   /* 1023, 1024, 1025 */
		char *s = malloc(8 * MBOX_FROM_LINE_MAX);
		assert_non_null(s);
		size_t n = 0;
		n += (size_t)sprintf(s + n, "From a " DATE "\nH: 1\n\nbody\n");
		/* "From " + sender padding + " " DATE = from_len bytes. */
		size_t pad = from_len - 5 - 1 - strlen(DATE);
		memcpy(s + n, "From ", 5);
		n += 5;
		memset(s + n, 'x', pad);
		n += pad;
		n += (size_t)sprintf(s + n, " " DATE "\nH: 2\n\n");
		/* A long body line, a long line starting with F. */
		memset(s + n, 'y', 1500);
		n += 1500;
		s[n++] = '\n';
		s[n++] = 'F';
		memset(s + n, 'z', 1500);
		n += 1500;
		s[n++] = '\n';
		check_all_splits(s, n, 0);
		struct ref_list want = { 0 };
		off_t junk;
		ref_parse(s, n, &want, &junk);
		assert_int_equal(want.n, from_len <= MBOX_FROM_LINE_MAX ? 2 : 1);
		free(want.m);
		free(s);
	}
}

/* Random mailboxes out of the pieces that matter, fed in random chunks. */
static size_t
random_mbox(char *s, size_t cap)
{
	static const char *const pieces[] = {
		"From a " DATE "\n", "From b\n", "From ", "From", "Fro", "F", ">From x\n",
		"From: x\n", "H: v\n", "\n", "\n\n", "\r\n", "\r", "text line\n",
		"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n",
		"X-UID: 7\n", "Status: RO\n", "X-Keywords: a\n", "Content-Length: 3\n",
		"X-IMAPbase: 1 2\n", " cont\n", "\tcont\n", MBOX_RD_MARKER, "X-Status: F\r\n",
		"Status: O\r\n", "Content-Length: 1\r\n\r",
	};
	size_t n = 0;
	size_t want = rnd((uint32_t)cap);
	while (n < want) {
		const char *p = pieces[rnd(sizeof pieces / sizeof pieces[0])];
		size_t l = strlen(p);
		if (rnd(8) == 0) {
			/* A run of one byte: long lines, long blank runs. */
			char c = "xF\n\r "[rnd(5)];
			l = rnd(300);
			if (n + l > cap)
				break;
			memset(s + n, c, l);
			n += l;
			continue;
		}
		if (n + l > cap)
			break;
		memcpy(s + n, p, l);
		n += l;
	}
	return n;
}

static void
test_random_inputs_random_chunks(void **state)
{
	(void)state;
	enum { CAP = 6000 };
	char *s = malloc(CAP);
	size_t *cuts = malloc(CAP * sizeof *cuts);
	assert_non_null(s);
	assert_non_null(cuts);
	for (int iter = 0; iter < 3000; iter++) {
		size_t n = random_mbox(s, CAP);
		struct ref_list want = { 0 };
		off_t junk;
		ref_parse(s, n, &want, &junk);
		for (int round = 0; round < 4; round++) {
			/* Chunks of 1..max bytes, max small or large. */
			uint32_t max = round == 0 ? 3 : round == 1 ? 40 : round == 2 ? 700 : 5000;
			size_t nc = 0;
			for (size_t at = rnd(max); at < n; at += 1 + rnd(max))
				cuts[nc++] = at;
			struct got g;
			real_parse(s, n, cuts, nc, &g);
			assert_like_ref(s, n, &want, junk, &g);
			free(g.l.m);
		}
		free(want.m);
	}
	free(cuts);
	free(s);
}

/* ms_wire_size: as long as the wire form ms_wire_form writes (which
 * converts line by line), header part too, with and without mboxrd. */
static void
check_wire(const char *p, size_t len)
{
	for (int rd = 0; rd <= 1; rd++) {
		struct pt_strbuf b = { 0 };
		size_t form_hdr = 0, size_hdr = 0;
		assert_int_equal(ms_wire_form(p, len, &b, &form_hdr, rd), 0);
		uint64_t size = ms_wire_size(p, len, &size_hdr, rd);
		assert_int_equal(size, b.len);
		assert_int_equal(size, ms_wire_size(p, len, NULL, rd));
		assert_int_equal(size_hdr, form_hdr);
		pt_strbuf_free(&b);
	}
}

/* What the store does per message at a load: header parse and size in
 * one (ms_header_parse_size) -- the same header and the same size as
 * ms_header_parse and ms_wire_size apart. */
static void
check_message(const char *s, const struct mbox_msg *m)
{
	const char *p = s + m->hdr_off;
	size_t hdr_len = (size_t)(m->body_off - m->hdr_off), len = (size_t)(m->end - m->hdr_off);
	static struct ms_hdr a, b;        /* big (keyword names) */
	ms_header_parse(p, hdr_len, &a);
	uint64_t size = ms_header_parse_size(p, hdr_len, len, &b);
	assert_memory_equal(&a, &b, sizeof a);
	assert_int_equal(size, ms_wire_size(p, len, NULL, a.rd));
	check_wire(p, len);
}

static void
check_messages(const char *s, size_t len)
{
	struct ref_list l = { 0 };
	off_t junk;
	ref_parse(s, len, &l, &junk);
	for (size_t i = 0; i < l.n; i++)
		check_message(s, &l.m[i]);
	free(l.m);
}

static void
test_wire_size_edge_cases(void **state)
{
	(void)state;
	static const char *const msgs[] = {
		"", "\n", "\r\n", "\r", "\n\n", "\r\n\r\n",
		"H: 1\n\nbody\n", "H: 1\r\n\r\nbody\r\n", "H: 1\n\nmixed\r\nlines\n\r\r\n\n",
		"X-UID: 5\nStatus: RO\nH: 1\nX-Keywords: a\n\n>From x\n>>From y\nFrom z\n",
		"H: 1\n\n\n\n\n", "no header line\n", "H: 1", "H: 1\n\nno final LF",
		"H: 1\n\n\r", "H: 1\n\n\n\r\n\r\r\n\n\r",
	};
	for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++)
		check_wire(msgs[i], strlen(msgs[i]));
	for (size_t k = 0; k < sizeof edge_cases / sizeof edge_cases[0]; k++) {
		check_wire(edge_cases[k], strlen(edge_cases[k]));
		check_messages(edge_cases[k], strlen(edge_cases[k]));
	}
	/* Storage fields (dropped) among kept ones, CRLF and LF, with and
	 * without the mboxrd marker, header ending at LF, CRLF or the end. */
	static const char *const mboxes[] = {
		"From a\nX-UID: 5\nH: 1\r\nStatus: RO\r\nX-Keywords: k\n cont\n\nbody\r\n\n",
		"From a\nH: 1\r\nX-Status: A\n\r\nFrom x\nbody\n",
		"From a\n" MBOX_RD_MARKER "X-UID: 1\n\n>From x\n>>From y\r\n",
		"From a\nStatus: O\nX-UID: 1",
		"From a\nContent-Length: 0\r\n\r\r\n\n\n",
		"From a\nX-UID: 1\n\nFrom b\nStatus: R\n\r\n\nFrom c\n\n",
	};
	for (size_t k = 0; k < sizeof mboxes / sizeof mboxes[0]; k++)
		check_messages(mboxes[k], strlen(mboxes[k]));
}

/* The body is one piece: its size is its length plus its bare LFs, at
 * every length and alignment around the block sizes (8, 16, and the
 * 255-block counter flush). */
static void
test_wire_size_body_counts(void **state)
{
	(void)state;
	enum { MAXB = 16 * 255 * 2 + 64 };
	char *buf = malloc(MAXB + 32);
	assert_non_null(buf);
	for (int iter = 0; iter < 4000; iter++) {
		size_t align = rnd(16);
		char *p = buf + align;
		size_t n = iter < 2000 ? (size_t)rnd(80) : (size_t)rnd(MAXB);
		/* Dense in LF and CR, or mostly text. */
		const char *alpha = rnd(2) ? "\n\r\n\ra" : "abcdefgh\n\r\n";
		size_t na = strlen(alpha);
		p[0] = '\n';        /* no header: the empty line, then the body */
		for (size_t i = 1; i < n + 1; i++)
			p[i] = alpha[rnd((uint32_t)na)];
		uint64_t want = (n + 1) + 1 + ref_bare_lfs(p + 1, n);
		assert_int_equal(ms_wire_size(p, n + 1, NULL, 0), want);
		check_wire(p, n + 1);
	}
	/* All LFs, a body of a few full counter flushes. */
	memset(buf, '\n', MAXB);
	assert_int_equal(ms_wire_size(buf, MAXB, NULL, 0), 2 * (uint64_t)MAXB);
	free(buf);
}

static void
test_wire_size_random_messages(void **state)
{
	(void)state;
	enum { CAP = 3000 };
	char *s = malloc(CAP);
	assert_non_null(s);
	for (int iter = 0; iter < 3000; iter++) {
		size_t n = random_mbox(s, CAP);
		check_wire(s, n);
		/* And each message the reader finds, as the store sizes it. */
		struct ref_list l = { 0 };
		off_t junk;
		ref_parse(s, n, &l, &junk);
		for (size_t i = 0; i < l.n; i++)
			check_message(s, &l.m[i]);
		free(l.m);
	}
	free(s);
}

/* ms_from_date computes UTC by arithmetic: the same times as libc's
 * timegm (and the zone's offset as localtime_r gives it) for every date
 * it accepts, in zones with and without DST, including leap days,
 * overflowing days (Feb 31), second 60 and DST changes. */
static time_t
ref_from_date(int year, int mon, int day, int hh, int mm, int ss, int zone, int have_zone,
              int *tz)
{
	struct tm tm = { 0 };
	tm.tm_year = year - 1900;
	tm.tm_mon = mon;
	tm.tm_mday = day;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	time_t tg = timegm(&tm);
	if (have_zone) {
		*tz = zone;
		return tg - (time_t)zone * 60;
	}
	struct tm lt;
	localtime_r(&tg, &lt);
	long off = lt.tm_gmtoff;
	time_t t = tg - off;
	localtime_r(&t, &lt);
	if (lt.tm_gmtoff != off) {
		t = tg - lt.tm_gmtoff;
		localtime_r(&t, &lt);
	}
	*tz = (int)(lt.tm_gmtoff / 60);
	return t;
}

static void
test_from_date_like_libc(void **state)
{
	(void)state;
	static const char *const zones[] = {
		"UTC0", "EST5EDT,M3.2.0,M11.1.0", "CET-1CEST,M3.5.0,M10.5.0/3", "<+0530>-5:30",
		"<-03>3",
	};
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	static const int years[] = { 1970, 1971, 1972, 1999, 2000, 2024, 2026, 2038, 2100, 2400,
		9999 };
	const char *was = getenv("TZ");
	char *saved = was ? strdup(was) : NULL;
	for (size_t z = 0; z < sizeof zones / sizeof zones[0]; z++) {
		setenv("TZ", zones[z], 1);
		tzset();
		for (int iter = 0; iter < 20000; iter++) {
			int year = iter < 2000 ? years[rnd(sizeof years / sizeof years[0])]
			                       : 1970 + (int)rnd(8030);
			int m = (int)rnd(12), d = 1 + (int)rnd(31), hh = (int)rnd(24);
			int mi = (int)rnd(60), ss = (int)rnd(61);
			if (iter % 7 == 0) {
				/* Around the DST changes of the zones above. */
				static const int dst_months[] = { 2, 9, 10 };
				m = dst_months[rnd(3)];
				d = 1 + (int)rnd(31);
				hh = 1 + (int)rnd(3);
			}
			int have_zone = iter % 5 == 0;
			int zone = have_zone ? ((int)rnd(24) - 12) * 60 + 30 * (int)rnd(2) : 0;
			char line[128];
			if (have_zone)
				snprintf(line, sizeof line, "From a Sun %s %2d %02d:%02d:%02d %c%04d %d",
				         mon[m], d, hh, mi, ss, zone < 0 ? '-' : '+',
				         (abs(zone) / 60) * 100 + abs(zone) % 60, year);
			else
				snprintf(line, sizeof line, "From a Sun %s %2d %02d:%02d:%02d %d", mon[m], d,
				         hh, mi, ss, year);
			int tz = -1, ref_tz = -2;
			time_t got = ms_from_date(line, strlen(line), &tz);
			time_t want = ref_from_date(year, m, d, hh, mi, ss, zone, have_zone, &ref_tz);
			if (got != want || tz != ref_tz) {
				fprintf(stderr, "TZ=%s \"%s\": %lld/%d, libc %lld/%d\n", zones[z], line,
				        (long long)got, tz, (long long)want, ref_tz);
				fail();
			}
		}
	}
	if (saved)
		setenv("TZ", saved, 1);
	else
		unsetenv("TZ");
	free(saved);
	tzset();
}

/* A numeric zone that is not hhmm (a mailbox anyone may have written:
 * digits enough to overflow an int, minutes past 59) counts as none. */
static void
test_from_date_odd_zone(void **state)
{
	(void)state;
	const char *was = getenv("TZ");
	char *saved = was ? strdup(was) : NULL;
	setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3", 1);
	tzset();
	int tz0 = 0;
	time_t none = ms_from_date("From a Sun Jan  4 10:00:00 2026", 31, &tz0);
	assert_true(none != 0);
	static const char *const odd[] = { "+99999999999999999999", "-2147483648", "+9999", "+0960",
		"+12345", "+123" };
	for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
		char line[128];
		snprintf(line, sizeof line, "From a Sun Jan  4 10:00:00 %s 2026", odd[i]);
		int tz = -1;
		assert_true(ms_from_date(line, strlen(line), &tz) == none);
		assert_int_equal(tz, tz0);
	}
	int tz = 0;
	assert_true(ms_from_date("From a Sun Jan  4 10:00:00 +0100 2026", 37, &tz) == none);
	assert_int_equal(tz, 60);
	if (saved)
		setenv("TZ", saved, 1);
	else
		unsetenv("TZ");
	tzset();
	free(saved);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_edge_cases_every_split),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_random_inputs_random_chunks),
		cmocka_unit_test(test_wire_size_edge_cases),
		cmocka_unit_test(test_wire_size_body_counts),
		cmocka_unit_test(test_wire_size_random_messages),
		cmocka_unit_test(test_from_date_like_libc),
		cmocka_unit_test(test_from_date_odd_zone),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
