/* IMAP date-time (RFC 3501 §9: INTERNALDATE, APPEND, SEARCH dates) and
 * RFC 5322 Date: header parsing, including the obsolete forms mail still
 * carries (two-digit years, zone names, missing seconds or weekday). */
#include <stdio.h>
#include <string.h>

#include "imap_msg.h"

static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static int
lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int
month_index(const char *s, size_t len)
{
	if (len != 3)
		return -1;
	for (int i = 0; i < 12; i++)
		if (lower(s[0]) == lower(months[i][0]) && lower(s[1]) == lower(months[i][1])
		    && lower(s[2]) == lower(months[i][2]))
			return i;
	return -1;
}

static int
leap(long y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
month_days(long y, int m)
{
	static const int d[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	return m == 1 && leap(y) ? 29 : d[m];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (m 0-based); the
 * arithmetic is done here so the result never depends on the local zone. */
static long
days_from_civil(long y, int m, int d)
{
	long mm = m + 1;
	y -= mm <= 2;
	long era = (y >= 0 ? y : y - 399) / 400;
	long yoe = y - era * 400;
	long doy = (153 * (mm + (mm > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int
valid_ymd(long y, int m, int d)
{
	return y >= 1 && y <= 9999 && m >= 0 && m < 12 && d >= 1 && d <= month_days(y, m);
}

/* 1*max digits at s[*p]; -1 when there are none. */
static long
digits(const char *s, size_t len, size_t *p, size_t max, size_t *count)
{
	long v = 0;
	size_t n = 0;
	while (*p < len && n < max && is_digit(s[*p])) {
		v = v * 10 + (s[*p] - '0');
		(*p)++;
		n++;
	}
	if (count != NULL)
		*count = n;
	return n ? v : -1;
}

/* "d-Mon-yyyy" at s[*p] (day one or two digits, or space and a digit when
 * space_day). */
static int
parse_dmy(const char *s, size_t len, size_t *p, int space_day, long *y, int *m, int *d)
{
	if (space_day && *p < len && s[*p] == ' ')
		(*p)++;
	size_t n;
	long day = digits(s, len, p, 2, &n);
	if (day < 0 || *p >= len || s[*p] != '-')
		return -1;
	(*p)++;
	if (len - *p < 4)
		return -1;
	int mon = month_index(s + *p, 3);
	if (mon < 0 || s[*p + 3] != '-')
		return -1;
	*p += 4;
	long year = digits(s, len, p, 4, &n);
	if (year < 0 || n != 4 || !valid_ymd(year, mon, (int)day))
		return -1;
	*y = year;
	*m = mon;
	*d = (int)day;
	return 0;
}

/* "hh:mm" with ":ss" required or optional. */
static int
parse_hms(const char *s, size_t len, size_t *p, int need_sec, int *h, int *mi, int *se)
{
	size_t n;
	long hh = digits(s, len, p, 2, &n);
	if (hh < 0 || n != 2 || *p >= len || s[*p] != ':')
		return -1;
	(*p)++;
	long mm = digits(s, len, p, 2, &n);
	if (mm < 0 || n != 2)
		return -1;
	long ss = 0;
	if (*p < len && s[*p] == ':') {
		(*p)++;
		ss = digits(s, len, p, 2, &n);
		if (ss < 0 || n != 2)
			return -1;
	} else if (need_sec) {
		return -1;
	}
	if (hh > 23 || mm > 59 || ss > 60)
		return -1;
	*h = (int)hh;
	*mi = (int)mm;
	*se = (int)ss;
	return 0;
}

/* "+hhmm" / "-hhmm" -> minutes east; -1 on syntax. */
static int
parse_numeric_zone(const char *s, size_t len, size_t *p, int *tz)
{
	if (*p >= len || (s[*p] != '+' && s[*p] != '-'))
		return -1;
	int sign = s[*p] == '-' ? -1 : 1;
	size_t q = *p + 1, n;
	long v = digits(s, len, &q, 4, &n);
	/* No zone is a day or more away from UTC (and INTERNALDATE could not
	 * show one). */
	if (v < 0 || n != 4 || v % 100 > 59 || v / 100 > 23)
		return -1;
	*tz = sign * (int)((v / 100) * 60 + v % 100);
	*p = q;
	return 0;
}

int
imap_datetime_parse(const char *s, size_t len, time_t *t, int *tz_minutes)
{
	size_t p = 0;
	long y;
	int m, d, h, mi, se, tz;
	if (parse_dmy(s, len, &p, 1, &y, &m, &d) != 0 || p >= len || s[p] != ' ')
		return -1;
	p++;
	if (parse_hms(s, len, &p, 1, &h, &mi, &se) != 0 || p >= len || s[p] != ' ')
		return -1;
	p++;
	if (parse_numeric_zone(s, len, &p, &tz) != 0 || p != len)
		return -1;
	*t = (time_t)(days_from_civil(y, m, d) * 86400L + h * 3600L + mi * 60L + se - tz * 60L);
	*tz_minutes = tz;
	return 0;
}

int
imap_date_parse(const char *s, size_t len, time_t *t)
{
	size_t p = 0;
	long y;
	int m, d;
	if (parse_dmy(s, len, &p, 0, &y, &m, &d) != 0 || p != len)
		return -1;
	*t = (time_t)(days_from_civil(y, m, d) * 86400L);
	return 0;
}

void
imap_datetime_format(time_t t, int tz_minutes, char out[32])
{
	if (tz_minutes <= -24 * 60 || tz_minutes >= 24 * 60)
		tz_minutes = 0;
	long long local = (long long)t + tz_minutes * 60LL;
	long long days = local / 86400, secs = local % 86400;
	if (secs < 0) {
		secs += 86400;
		days--;
	}
	/* civil_from_days */
	long long z = days + 719468;
	long long era = (z >= 0 ? z : z - 146096) / 146097;
	long long doe = z - era * 146097;
	long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	long long y = yoe + era * 400;
	long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	long long mp = (5 * doy + 2) / 153;
	int d = (int)(doy - (153 * mp + 2) / 5 + 1);
	int m = (int)(mp < 10 ? mp + 3 : mp - 9);
	y += m <= 2;
	if (y < 0 || y > 9999) {
		y = 1970; m = 1; d = 1; secs = 0; /* out of the format's range */
	}
	int a = tz_minutes < 0 ? -tz_minutes : tz_minutes;
	snprintf(out, 32, "%02d-%s-%04lld %02d:%02d:%02d %c%02d%02d", d, months[m - 1], y,
	         (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60),
	         tz_minutes < 0 ? '-' : '+', a / 60, a % 60);
}

/* Folding white space and comments (nested) between RFC 5322 tokens. */
static void
skip_cfws(const char *s, size_t len, size_t *p)
{
	while (*p < len) {
		char c = s[*p];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			(*p)++;
		} else if (c == '(') {
			int depth = 0;
			while (*p < len) {
				if (s[*p] == '\\' && *p + 1 < len)
					(*p)++;
				else if (s[*p] == '(')
					depth++;
				else if (s[*p] == ')' && --depth == 0) {
					(*p)++;
					break;
				}
				(*p)++;
			}
		} else {
			return;
		}
	}
}

/* Zone names of RFC 5322 §4.3 (obs-zone). Military letters were defined
 * with the wrong sign in RFC 822, so RFC 5322 says to read them as -0000. */
static int
named_zone(const char *s, size_t n, int *tz)
{
	static const struct { const char *name; int hours; } z[] = {
		{ "UT", 0 }, { "GMT", 0 }, { "UTC", 0 }, { "Z", 0 },
		{ "EST", -5 }, { "EDT", -4 }, { "CST", -6 }, { "CDT", -5 },
		{ "MST", -7 }, { "MDT", -6 }, { "PST", -8 }, { "PDT", -7 },
	};
	for (size_t i = 0; i < sizeof z / sizeof *z; i++) {
		if (strlen(z[i].name) != n)
			continue;
		size_t k = 0;
		while (k < n && lower(s[k]) == lower(z[i].name[k]))
			k++;
		if (k == n) {
			*tz = z[i].hours * 60;
			return 0;
		}
	}
	if (n == 1 && ((s[0] >= 'a' && s[0] <= 'z' && s[0] != 'j') || (s[0] >= 'A' && s[0] <= 'Z' && s[0] != 'J'))) {
		*tz = 0;
		return 0;
	}
	return -1;
}

int
imap_rfc822_date_parse(const char *s, size_t len, time_t *t, int *tz_minutes)
{
	size_t p = 0, n;
	skip_cfws(s, len, &p);
	/* optional day-of-week: letters then ',' */
	size_t q = p;
	while (q < len && ((s[q] >= 'a' && s[q] <= 'z') || (s[q] >= 'A' && s[q] <= 'Z')))
		q++;
	if (q > p) {
		size_t r = q;
		skip_cfws(s, len, &r);
		if (r < len && s[r] == ',') {
			p = r + 1;
		} else if (q - p == 3 && month_index(s + p, 3) < 0) {
			p = q; /* "Tue 7 Jul ..." without the comma */
		}
	}
	skip_cfws(s, len, &p);
	long day = digits(s, len, &p, 2, &n);
	if (day < 0)
		return -1;
	skip_cfws(s, len, &p);
	if (p < len && s[p] == '-')
		p++; /* "7-Jul-96" seen in old software */
	if (len - p < 3)
		return -1;
	int mon = month_index(s + p, 3);
	if (mon < 0)
		return -1;
	p += 3;
	while (p < len && ((s[p] >= 'a' && s[p] <= 'z') || (s[p] >= 'A' && s[p] <= 'Z')))
		p++; /* "July" */
	skip_cfws(s, len, &p);
	if (p < len && s[p] == '-')
		p++;
	long year = digits(s, len, &p, 4, &n);
	if (year < 0)
		return -1;
	if (n == 2)
		year += year < 50 ? 2000 : 1900;
	else if (n == 3)
		year += 1900;
	if (!valid_ymd(year, mon, (int)day))
		return -1;
	skip_cfws(s, len, &p);
	int h, mi, se;
	if (parse_hms(s, len, &p, 0, &h, &mi, &se) != 0)
		return -1;
	skip_cfws(s, len, &p);
	int tz = 0;
	if (p < len && (s[p] == '+' || s[p] == '-')) {
		if (parse_numeric_zone(s, len, &p, &tz) != 0)
			return -1;
	} else if (p < len) {
		size_t e = p;
		while (e < len && ((s[e] >= 'a' && s[e] <= 'z') || (s[e] >= 'A' && s[e] <= 'Z')))
			e++;
		if (named_zone(s + p, e - p, &tz) != 0)
			tz = 0; /* unknown names: as -0000, the time itself is still good */
		p = e;
	}
	/* anything after the zone (comments, junk) does not spoil the date */
	*t = (time_t)(days_from_civil(year, mon, (int)day) * 86400L + h * 3600L + mi * 60L + se - tz * 60L);
	*tz_minutes = tz;
	return 0;
}
