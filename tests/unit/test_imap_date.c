/* IMAP date-time and date (RFC 3501 §9), INTERNALDATE formatting, and
 * RFC 5322 Date: parsing with its obsolete forms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imap/imap_msg.h"

/* 1996-07-17 09:44:25 UTC, the RFC's example moved to UTC */
#define T_RFC 837596665

static void
test_datetime_parse(void **state)
{
	(void)state;
	time_t t;
	int tz;
	const char *s = "17-Jul-1996 02:44:25 -0700";
	assert_int_equal(imap_datetime_parse(s, strlen(s), &t, &tz), 0);
	assert_int_equal(t, T_RFC);
	assert_int_equal(tz, -420);
	s = " 7-Jul-1996 02:44:25 +0530";
	assert_int_equal(imap_datetime_parse(s, strlen(s), &t, &tz), 0);
	assert_int_equal(t, T_RFC - 10 * 86400 - 7 * 3600 - 5 * 3600 - 30 * 60);
	assert_int_equal(tz, 330);
	s = "07-jul-1996 02:44:25 +0000";
	assert_int_equal(imap_datetime_parse(s, strlen(s), &t, &tz), 0);
	s = "29-Feb-2024 23:59:60 +0000"; /* leap day, leap second */
	assert_int_equal(imap_datetime_parse(s, strlen(s), &t, &tz), 0);

	const char *bad[] = { "", "17-Jul-1996", "17-Jul-1996 02:44:25", "32-Jul-1996 02:44:25 -0700",
		"29-Feb-2023 00:00:00 +0000", "17-Jux-1996 02:44:25 -0700", "17-Jul-96 02:44:25 -0700",
		"17-Jul-1996 24:00:00 -0700", "17-Jul-1996 02:60:25 -0700", "17-Jul-1996 02:44:25 -0760",
		"17-Jul-1996 02:44:25 -070", "17-Jul-1996 02:44:25 -0700 ", "17-Jul-1996 2:44:25 -0700",
		"0-Jul-1996 02:44:25 -0700", "17-Jul-1996 02:44:25 PST", " 7-Jul-1996 02:44:25 -7700",
		"17-Jul-1996 02:44:25 +2400" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(imap_datetime_parse(bad[i], strlen(bad[i]), &t, &tz), -1);
}

static void
test_date_parse(void **state)
{
	(void)state;
	time_t t;
	assert_int_equal(imap_date_parse("1-Feb-1994", 10, &t), 0);
	assert_int_equal(t, 760060800);
	assert_int_equal(imap_date_parse("01-feb-1994", 11, &t), 0);
	assert_int_equal(t, 760060800);
	assert_int_equal(imap_date_parse("1-Jan-1970", 10, &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(imap_date_parse("31-Dec-1969", 11, &t), 0);
	assert_int_equal(t, -86400);
	const char *bad[] = { "", "1-Feb", "1-Feb-94", "1 Feb 1994", "30-Feb-1994", "1-Feb-1994x", "x" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(imap_date_parse(bad[i], strlen(bad[i]), &t), -1);
}

static void
test_datetime_format(void **state)
{
	(void)state;
	char out[32];
	imap_datetime_format(T_RFC, -420, out);
	assert_string_equal(out, "17-Jul-1996 02:44:25 -0700");
	imap_datetime_format(0, 0, out);
	assert_string_equal(out, "01-Jan-1970 00:00:00 +0000");
	imap_datetime_format(T_RFC, 330, out);
	assert_string_equal(out, "17-Jul-1996 15:14:25 +0530");
	imap_datetime_format(-1, 0, out);
	assert_string_equal(out, "31-Dec-1969 23:59:59 +0000");
	/* what is formatted parses back */
	for (time_t t = 0; t < 4000000000LL; t += 86399 * 37) {
		time_t back;
		int tz;
		imap_datetime_format(t, -150, out);
		assert_int_equal(imap_datetime_parse(out, strlen(out), &back, &tz), 0);
		assert_int_equal(back, t);
		assert_int_equal(tz, -150);
	}
}

static void
test_rfc822_date(void **state)
{
	(void)state;
	struct { const char *s; time_t t; int tz; } ok[] = {
		{ "Wed, 17 Jul 1996 02:44:25 -0700", T_RFC, -420 },
		{ "17 Jul 1996 02:44:25 -0700", T_RFC, -420 },              /* no weekday */
		{ "Wed, 17 Jul 1996 02:44 -0700", T_RFC - 25, -420 },       /* no seconds */
		{ "Wed, 17 Jul 1996 02:44:25 PDT", T_RFC, -420 },
		{ "Wed, 17 Jul 1996 05:44:25 EDT", T_RFC, -240 },
		{ "Wed, 17 Jul 1996 04:44:25 CDT", T_RFC, -300 },
		{ "Wed, 17 Jul 1996 01:44:25 PST", T_RFC, -480 },
		{ "Wed, 17 Jul 1996 09:44:25 GMT", T_RFC, 0 },
		{ "Wed, 17 Jul 1996 09:44:25 UT", T_RFC, 0 },
		{ "Wed, 17 Jul 1996 09:44:25 Z", T_RFC, 0 },
		{ "Wed, 17 Jul 1996 09:44:25 A", T_RFC, 0 },                /* military: -0000 */
		{ "Wed, 17 Jul 96 02:44:25 -0700", T_RFC, -420 },           /* two-digit year */
		{ "Wed, 17 Jul 096 02:44:25 -0700", T_RFC, -420 },          /* three-digit year */
		{ "  Wed (day) , 17 (x) Jul 1996 02:44:25 -0700 (PDT)", T_RFC, -420 },
		{ "Wed 17 Jul 1996 02:44:25 -0700", T_RFC, -420 },
		{ "Wed, 17 Jul 1996 09:44:25", T_RFC, 0 },                  /* no zone */
		{ "Sat, 28 Nov 2026 06:53:11 +0000 (UTC)", 1795848791, 0 },
		{ "Mon, 1 Jan 2001 00:00:00 +0100", 978303600, 60 },
	};
	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
		time_t t;
		int tz;
		assert_int_equal(imap_rfc822_date_parse(ok[i].s, strlen(ok[i].s), &t, &tz), 0);
		assert_int_equal(t, ok[i].t);
		assert_int_equal(tz, ok[i].tz);
	}
	const char *bad[] = { "", "Wed,", "yesterday", "Wed, 17 Foo 1996 02:44:25 -0700",
		"Wed, 31 Feb 1996 02:44:25 -0700", "Wed, 17 Jul 1996", "Wed, 17 Jul 1996 25:00 -0700",
		"Wed, 17 Jul 1996 02:44:25 +07", "17 Jul" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		time_t t;
		int tz;
		assert_int_equal(imap_rfc822_date_parse(bad[i], strlen(bad[i]), &t, &tz), -1);
	}
}

/* Each prefix from an exact-size copy: no over-read; only complete
 * strings parse. */
static void
test_every_prefix(void **state)
{
	(void)state;
	const char *dt = " 7-Jul-1996 02:44:25 -0700", *hd = "Wed, 17 Jul 1996 02:44:25 -0700 (PDT)";
	for (size_t i = 0; i <= strlen(hd); i++) {
		char *c = malloc(i ? i : 1);
		time_t t;
		int tz;
		if (i <= strlen(dt)) {
			memcpy(c, dt, i);
			assert_int_equal(imap_datetime_parse(c, i, &t, &tz), i == strlen(dt) ? 0 : -1);
			(void)imap_date_parse(c, i, &t);
		}
		memcpy(c, hd, i);
		(void)imap_rfc822_date_parse(c, i, &t, &tz);
		free(c);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_datetime_parse),
		cmocka_unit_test(test_date_parse),
		cmocka_unit_test(test_datetime_format),
		cmocka_unit_test(test_rfc822_date),
		cmocka_unit_test(test_every_prefix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
