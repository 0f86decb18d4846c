/* SEARCH keys (RFC 3501 §6.4.4): every key against three messages, each
 * positive and negative; decoded header and body text; dates in the
 * message's zone; errors for bad keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <strings.h>

#include "imap/imap_msg.h"
#include "imap/imap_msg_int.h"
#include "postern/unicode_casemap.h"

/* ---- arguments from a test string: atoms, "quoted", ( lists ) ---- */

struct argv {
	struct imap_arg *a;
	size_t n;
};

static void
args_free(struct imap_arg *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)a[i].s);
		if (a[i].type == IMAP_ARG_LIST)
			args_free(a[i].list, a[i].n);
	}
	free(a);
}

static size_t
build(const char *s, size_t *p, struct imap_arg **out)
{
	struct imap_arg *a = NULL;
	size_t n = 0;
	for (;;) {
		while (s[*p] == ' ')
			(*p)++;
		if (s[*p] == '\0' || s[*p] == ')') {
			if (s[*p] == ')')
				(*p)++;
			*out = a;
			return n;
		}
		a = realloc(a, (n + 1) * sizeof *a);
		struct imap_arg *x = &a[n++];
		memset(x, 0, sizeof *x);
		if (s[*p] == '(') {
			(*p)++;
			x->type = IMAP_ARG_LIST;
			x->n = build(s, p, &x->list);
		} else if (s[*p] == '"') {
			size_t st = ++*p;
			while (s[*p] != '"')
				(*p)++;
			x->type = IMAP_ARG_STRING;
			x->len = *p - st;
			x->s = strndup(s + st, x->len);
			(*p)++;
		} else {
			size_t st = *p;
			while (s[*p] && s[*p] != ' ' && s[*p] != '(' && s[*p] != ')')
				(*p)++;
			x->type = IMAP_ARG_ATOM;
			x->len = *p - st;
			x->s = strndup(s + st, x->len);
		}
	}
}

/* ---- three messages ---- */

static const char msg1[] =
	"Date: Sun, 10 Mar 2024 08:00:00 +0100\r\n"
	"From: =?iso-8859-1?q?J=F6rg_M=FCller?= <joerg@example.de>\r\n"
	"To: Alice <alice@example.com>\r\n"
	"Cc: carol@example.org\r\n"
	"Bcc: dave@hidden.example\r\n"
	"Subject: =?UTF-8?B?R3LDvMOfZQ==?= aus\r\n"
	" =?utf-8?q?Berlin?=\r\n"
	"X-Spam-Flag: NO\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"Das Caf=C3=A9 ist ge=\r\n"
	"=C3=B6ffnet. Invoice #42\r\n";

static const char msg2[] =
	"Date: not a date\r\n"
	"From: bob@example.com\r\n"
	"To: alice@example.com\r\n"
	"Subject: Quarterly numbers\r\n"
	"X-Foreign: =?koi8-r?B?8NLJ18XU?= =?us-ascii?q?plain?=\r\n"
	"Content-Type: multipart/alternative; boundary=\"b\"\r\n"
	"\r\n"
	"--b\r\n"
	"Content-Type: text/plain\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"VGhlIHNlY3JldCB3b3JkIGlzIFNXT1JERklTSA==\r\n"
	"--b\r\n"
	"Content-Type: text/html; charset=iso-8859-1\r\n"
	"\r\n"
	"<p>na\xefve</p>\r\n"
	"--b--\r\n";

static struct imap_msg *parsed[2];
static struct pt_msg_info infos[3];

static const struct imap_msg *
load(void *arg)
{
	intptr_t i = (intptr_t)arg;
	return i < 2 ? parsed[i] : NULL; /* message 3 cannot be read */
}

static int loads;

static const struct imap_msg *
load_counted(void *arg)
{
	loads++;
	return load(arg);
}

static const struct imap_msg *
load_one(void *arg)
{
	return arg;
}

static int
keyword_bit(void *arg, const char *name)
{
	(void)arg;
	if (strcasecmp(name, "$Work") == 0)
		return 0;
	if (strcasecmp(name, "Later") == 0)
		return 5;
	return -1;
}

static int
setup(void **state)
{
	(void)state;
	parsed[0] = imap_msg_parse(msg1, sizeof msg1 - 1);
	parsed[1] = imap_msg_parse(msg2, sizeof msg2 - 1);
	/* internal dates: 1: 10-Mar-2024 23:30 -0500 (11-Mar in UTC);
	 * 2: 01-Jan-2024 00:10 +0100 (31-Dec-2023 in UTC); 3: 15-Jun-2024 12:00 UTC */
	time_t t1, t2, t3;
	int tz;
	imap_datetime_parse("10-Mar-2024 23:30:00 -0500", 26, &t1, &tz);
	infos[0] = (struct pt_msg_info){ 10, PT_F_SEEN | PT_F_ANSWERED, 1u, 1000, t1, -300, 1 };
	imap_datetime_parse("01-Jan-2024 00:10:00 +0100", 26, &t2, &tz);
	infos[1] = (struct pt_msg_info){ 20, PT_F_RECENT, 1u << 5, 5000, t2, 60, 2 };
	imap_datetime_parse("15-Jun-2024 12:00:00 +0000", 26, &t3, &tz);
	infos[2] = (struct pt_msg_info){ 30, PT_F_DELETED | PT_F_FLAGGED | PT_F_DRAFT | PT_F_RECENT | PT_F_SEEN,
		0, 300, t3, 0, 3 };
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	imap_msg_free(parsed[0]);
	imap_msg_free(parsed[1]);
	return 0;
}

/* The sequence numbers (of 1..3) that match, as "1 3". */
static char *
run(const char *query)
{
	static char res[64];
	struct imap_arg *a;
	size_t p = 0, n = build(query, &p, &a);
	char err[128];
	struct imap_search *s = imap_search_parse(a, n, err, sizeof err);
	if (s == NULL)
		fail_msg("%s: %s", query, err);
	struct imap_search_env env = { 3, 30, keyword_bit, NULL, NULL };
	res[0] = '\0';
	for (int i = 0; i < 3; i++) {
		struct imap_search_msg m = { (uint32_t)i + 1, &infos[i], load, (void *)(intptr_t)i, NULL };
		if (imap_search_match(s, &env, &m)) {
			size_t l = strlen(res);
			snprintf(res + l, sizeof res - l, "%s%d", l ? " " : "", i + 1);
		}
	}
	imap_search_free(s);
	args_free(a, n);
	return res;
}

static void
test_flags(void **state)
{
	(void)state;
	assert_string_equal(run("ALL"), "1 2 3");
	assert_string_equal(run("ANSWERED"), "1");
	assert_string_equal(run("UNANSWERED"), "2 3");
	assert_string_equal(run("DELETED"), "3");
	assert_string_equal(run("UNDELETED"), "1 2");
	assert_string_equal(run("DRAFT"), "3");
	assert_string_equal(run("UNDRAFT"), "1 2");
	assert_string_equal(run("FLAGGED"), "3");
	assert_string_equal(run("UNFLAGGED"), "1 2");
	assert_string_equal(run("SEEN"), "1 3");
	assert_string_equal(run("UNSEEN"), "2");
	assert_string_equal(run("RECENT"), "2 3");
	assert_string_equal(run("OLD"), "1");
	assert_string_equal(run("NEW"), "2");        /* recent and unseen */
	assert_string_equal(run("seen"), "1 3");     /* keys in any case */
	assert_string_equal(run("KEYWORD $work"), "1");
	assert_string_equal(run("KEYWORD Later"), "2");
	assert_string_equal(run("KEYWORD Unknown"), "");
	assert_string_equal(run("UNKEYWORD $Work"), "2 3");
	assert_string_equal(run("UNKEYWORD Unknown"), "1 2 3");
}

static void
test_sizes_sets(void **state)
{
	(void)state;
	assert_string_equal(run("LARGER 999"), "1 2");
	assert_string_equal(run("LARGER 1000"), "2");
	assert_string_equal(run("SMALLER 1000"), "3");
	assert_string_equal(run("SMALLER 300"), "");
	assert_string_equal(run("2:*"), "2 3");
	assert_string_equal(run("1,3"), "1 3");
	assert_string_equal(run("*"), "3");
	assert_string_equal(run("UID 20:*"), "2 3");
	assert_string_equal(run("UID 1:15"), "1");
	assert_string_equal(run("UID *"), "3");
	assert_string_equal(run("UID 40:*"), "3"); /* "*" is 30: 30:40 */
	assert_string_equal(run("UID 31:40"), "");
	assert_string_equal(run("UID 5"), "");
}

static void
test_headers(void **state)
{
	(void)state;
	/* encoded words are decoded: iso-8859-1 and utf-8, Q and B */
	assert_string_equal(run("FROM \"j\xc3\xb6rg m\xc3\xbcller\""), "1");
	assert_string_equal(run("FROM joerg@EXAMPLE.de"), "1");
	assert_string_equal(run("FROM bob"), "2");
	assert_string_equal(run("FROM nobody"), "");
	assert_string_equal(run("TO alice"), "1 2");
	assert_string_equal(run("TO carol"), "");
	assert_string_equal(run("CC carol"), "1");
	assert_string_equal(run("CC alice"), "");
	assert_string_equal(run("BCC hidden"), "1");
	assert_string_equal(run("BCC carol"), "");
	/* adjacent encoded words join without the space between them */
	assert_string_equal(run("SUBJECT \"Gr\xc3\xbc\xc3\x9f""e ausBerlin\""), "");
	assert_string_equal(run("SUBJECT \"Gr\xc3\xbc\xc3\x9f""e aus Berlin\""), "1");
	assert_string_equal(run("SUBJECT quarterly"), "2");
	assert_string_equal(run("SUBJECT R3LDvMOfZQ"), "");  /* not the raw text */
	/* i;unicode-casemap (I18NLEVEL=1): non-ASCII letters fold too, and
	 * sharp s stays itself (no simple titlecase) */
	assert_string_equal(run("SUBJECT \"GR\xc3\x9c\""), "1");
	assert_string_equal(run("SUBJECT \"gr\xc3\xbc\xc3\x9f\""), "1");
	assert_string_equal(run("SUBJECT \"gruss\""), "");
	assert_string_equal(run("HEADER X-Spam-Flag no"), "1");
	assert_string_equal(run("HEADER X-Spam-Flag yes"), "");
	assert_string_equal(run("HEADER x-spam-flag \"\""), "1");  /* has the field */
	assert_string_equal(run("HEADER Content-Type \"\""), "1 2");
	assert_string_equal(run("HEADER X-Missing \"\""), "");
	/* charsets it cannot convert stay as sent; the others are decoded */
	assert_string_equal(run("HEADER X-Foreign \"=?koi8-r?B?8NLJ18XU?= plain\""), "2");
	assert_string_equal(run("HEADER X-Foreign us-ascii"), "");
	assert_string_equal(run("NOT HEADER X-Missing \"\""), "1 2 3");
}

static void
test_body_text(void **state)
{
	(void)state;
	/* quoted-printable with a soft line break, decoded */
	assert_string_equal(run("BODY \"caf\xc3\xa9 ist ge\xc3\xb6""ffnet\""), "1");
	assert_string_equal(run("BODY invoice"), "1");
	assert_string_equal(run("BODY \"=C3=A9\""), "");
	/* base64 text part inside multipart/alternative */
	assert_string_equal(run("BODY swordfish"), "2");
	assert_string_equal(run("BODY VGhlIHNlY3JldC"), "");
	/* ISO-8859-1 text compared as UTF-8 */
	assert_string_equal(run("BODY \"na\xc3\xafve\""), "2");
	/* BODY does not look at the header; TEXT does */
	assert_string_equal(run("BODY quarterly"), "");
	assert_string_equal(run("TEXT quarterly"), "2");
	assert_string_equal(run("TEXT swordfish"), "2");
	assert_string_equal(run("TEXT alice@example.com"), "1 2");
	assert_string_equal(run("TEXT nothing-like-this"), "");
	assert_string_equal(run("TEXT \"\""), "1 2");
}

static void
test_dates(void **state)
{
	(void)state;
	/* INTERNALDATE by the day in the message's own zone */
	assert_string_equal(run("ON 10-Mar-2024"), "1");
	assert_string_equal(run("ON 11-Mar-2024"), "");
	assert_string_equal(run("ON 1-Jan-2024"), "2");
	assert_string_equal(run("BEFORE 10-Mar-2024"), "2");
	assert_string_equal(run("BEFORE 11-Mar-2024"), "1 2");
	assert_string_equal(run("SINCE 10-Mar-2024"), "1 3");
	assert_string_equal(run("SINCE 16-Jun-2024"), "");
	assert_string_equal(run("SINCE \"1-Jan-2024\""), "1 2 3");
	/* Date: header; message 2's is unparsable, message 3 unreadable */
	assert_string_equal(run("SENTON 10-Mar-2024"), "1");
	assert_string_equal(run("SENTON 9-Mar-2024"), "");
	assert_string_equal(run("SENTBEFORE 11-Mar-2024"), "1");
	assert_string_equal(run("SENTBEFORE 10-Mar-2024"), "");
	assert_string_equal(run("SENTSINCE 10-Mar-2024"), "1");
	assert_string_equal(run("SENTSINCE 11-Mar-2024"), "");
}

static void
test_combinations(void **state)
{
	(void)state;
	assert_string_equal(run("NOT SEEN"), "2");
	assert_string_equal(run("NOT NOT SEEN"), "1 3");
	assert_string_equal(run("OR DELETED ANSWERED"), "1 3");
	assert_string_equal(run("OR (DELETED FLAGGED) NEW"), "2 3");
	assert_string_equal(run("SEEN RECENT"), "3");
	assert_string_equal(run("(SEEN) (RECENT)"), "3");
	assert_string_equal(run("(SEEN (RECENT (DRAFT)))"), "3");
	assert_string_equal(run("OR FROM bob NOT 1:2"), "2 3");
	assert_string_equal(run("NOT (OR 1 2)"), "3");
	assert_string_equal(run("UNDELETED OR SUBJECT quarterly BODY invoice"), "1 2");
}

static void
parse_error(const char *query, const char *want)
{
	struct imap_arg *a;
	size_t p = 0, n = build(query, &p, &a);
	char err[128] = "";
	struct imap_search *s = imap_search_parse(a, n, err, sizeof err);
	assert_null(s);
	assert_string_equal(err, want);
	args_free(a, n);
}

static void
test_errors(void **state)
{
	(void)state;
	parse_error("FOO", "Unknown argument FOO");
	parse_error("SEEN BAR", "Unknown argument BAR");
	parse_error("\"SEEN\"", "Unknown argument SEEN");
	parse_error("", "Missing argument");
	parse_error("FROM", "Missing argument");
	parse_error("HEADER X-A", "Missing argument");
	parse_error("OR SEEN", "Missing argument");
	parse_error("NOT", "Missing argument");
	parse_error("()", "Missing argument");
	parse_error("KEYWORD", "Missing argument");
	parse_error("FROM (a)", "Missing argument");
	parse_error("UID", "Missing argument");
	parse_error("SINCE 32-Jan-2024", "Invalid search date parameter: 32-Jan-2024");
	parse_error("BEFORE yesterday", "Invalid search date parameter: yesterday");
	parse_error("LARGER ten", "Invalid search number parameter: ten");
	parse_error("SMALLER -1", "Invalid search number parameter: -1");
	parse_error("UID 0:3", "Invalid uidset: 0:3");
	parse_error("1:x", "Unknown argument 1:x");
	parse_error("0", "Unknown argument 0");
	/* deep nesting is refused, not a stack overflow */
	char deep[2000] = "";
	for (int i = 0; i < 300; i++)
		strcat(deep, "NOT ");
	strcat(deep, "SEEN");
	parse_error(deep, "Search query too deeply nested");
}

static void
test_needs_text_and_load(void **state)
{
	(void)state;
	const char *cheap[] = { "SEEN 1:2 UID 5 LARGER 3 ON 1-Jan-2024 KEYWORD x", "NOT OR NEW OLD" };
	const char *costly[] = { "SEEN OR FROM x NEW", "NOT BODY x", "SENTON 1-Jan-2024", "HEADER a b",
		"TEXT x", "(1 (SUBJECT y))" };
	for (size_t i = 0; i < 2; i++) {
		struct imap_arg *a;
		size_t p = 0, n = build(cheap[i], &p, &a);
		char err[128];
		struct imap_search *s = imap_search_parse(a, n, err, sizeof err);
		assert_non_null(s);
		assert_false(imap_search_needs_text(s));
		loads = 0;
		struct imap_search_env env = { 3, 30, keyword_bit, NULL, NULL };
		struct imap_search_msg m = { 1, &infos[0], load_counted, (void *)0, NULL };
		(void)imap_search_match(s, &env, &m);
		assert_int_equal(loads, 0);
		imap_search_free(s);
		args_free(a, n);
	}
	for (size_t i = 0; i < sizeof costly / sizeof *costly; i++) {
		struct imap_arg *a;
		size_t p = 0, n = build(costly[i], &p, &a);
		char err[128];
		struct imap_search *s = imap_search_parse(a, n, err, sizeof err);
		assert_non_null(s);
		assert_true(imap_search_needs_text(s));
		imap_search_free(s);
		args_free(a, n);
	}
	/* several text keys load the message once */
	struct imap_arg *a;
	size_t p = 0, n = build("FROM j TO alice BODY caf TEXT invoice SUBJECT berlin", &p, &a);
	char err[128];
	struct imap_search *s = imap_search_parse(a, n, err, sizeof err);
	struct imap_search_env env = { 3, 30, NULL, NULL, NULL };
	struct imap_search_msg m = { 1, &infos[0], load_counted, (void *)0, NULL };
	loads = 0;
	assert_int_equal(imap_search_match(s, &env, &m), 1);
	assert_int_equal(loads, 1);
	imap_search_free(s);
	args_free(a, n);
}

/* The sequence numbers of msgs (LF line ends are fine) that query matches. */
static char *
run_on(const char *const *msgs, size_t nm, const char *query)
{
	static char res[128];
	struct imap_arg *a;
	size_t p = 0, n = build(query, &p, &a);
	char err[128];
	struct imap_search *s = imap_search_parse(a, n, err, sizeof err);
	if (s == NULL)
		fail_msg("%s: %s", query, err);
	struct imap_search_env env = { (uint32_t)nm, (uint32_t)nm, NULL, NULL, NULL };
	res[0] = '\0';
	for (size_t i = 0; i < nm; i++) {
		struct imap_msg *pm = imap_msg_parse(msgs[i], strlen(msgs[i]));
		struct pt_msg_info info = { (uint32_t)i + 1, 0, 0, strlen(msgs[i]), 0, 0, 1 };
		struct imap_search_msg m = { (uint32_t)i + 1, &info, load_one, pm, NULL };
		if (imap_search_match(s, &env, &m)) {
			size_t l = strlen(res);
			snprintf(res + l, sizeof res - l, "%s%zu", l ? " " : "", i + 1);
		}
		imap_msg_free(pm);
	}
	imap_search_free(s);
	args_free(a, n);
	return res;
}

/* FROM/TO/CC/BCC compare addresses, not header text: comments and spaces
 * inside an address drop out, the display name (or an old-style comment
 * name) and group names count; HEADER FROM stays textual. */
static void
test_address_keys(void **state)
{
	(void)state;
	static const char *const m[] = {
		"From: user-from@domain.org\nTo: user-to@domain.org\n\nb1\n",
		"From: RealFrom <user-from@domain.org>\nTo: RealTo <user-to@domain.org>\n\nb2\n",
		"From: <user-from (comment)@ (comment) domain.org>\nTo: <user-to@domain.org>\n\nb3\n",
		"From: user-from@domain.org (RealFrom)\nTo: user-to@domain.org (RealTo)\n\nb4\n",
		"From: user-from1@domain.org, user-from2@domain.org\n\nb5\n",
		("To: groupname: groupuser1@domain.org, groupuser2@domain.org;,\n"
		 "  groupname2: groupuser3@domain.org;\nFrom: =?utf-8?q?J=C3=B6rg?= <j@x.org>\n\nb6\n"),
	};
	size_t n = sizeof m / sizeof *m;
	assert_string_equal(run_on(m, n, "FROM user-from@domain.org"), "1 2 3 4");
	assert_string_equal(run_on(m, n, "TO user-to@domain.org"), "1 2 3 4");
	assert_string_equal(run_on(m, n, "FROM realfrom"), "2 4");
	assert_string_equal(run_on(m, n, "FROM ealfro"), "2 4");
	assert_string_equal(run_on(m, n, "FROM ser-fro"), "1 2 3 4 5");
	assert_string_equal(run_on(m, n, "FROM comment"), "");
	assert_string_equal(run_on(m, n, "HEADER FROM comment"), "3");
	assert_string_equal(run_on(m, n, "FROM user-from2"), "5");
	assert_string_equal(run_on(m, n, "TO groupname2"), "6");
	assert_string_equal(run_on(m, n, "TO groupuser3"), "6");
	assert_string_equal(run_on(m, n, "TO groupuser4"), "");
	assert_string_equal(run_on(m, n, "FROM \"j\xc3\xb6rg <j@x\""), "6");
	assert_string_equal(run_on(m, n, "CC \"\""), "");
	assert_string_equal(run_on(m, n, "TO \"\""), "1 2 3 4 6");
}

/* FROM with a letters-and-digits needle skips the address text of plain
 * values that cannot hold it (imap_search.c addr_cannot_match): over
 * random values of atoms, white space and "<>@.-_+" (and some with
 * quotes, commas, comments), the answer must be the full comparison's:
 * the needle in the value's address text (imap_msg_address_text). */
static void
test_address_quick_reject(void **state)
{
	(void)state;
	static const char alpha[] = "ab1ab1  \t<>@.-_+";
	static const char odd[] = "\"(),:;";
	srand(15);
	for (int round = 0; round < 20000; round++) {
		char v[40], needle[5], msg[128];
		size_t vl = 1 + (size_t)rand() % 30;
		for (size_t i = 0; i < vl; i++)
			v[i] = round % 10 == 0 && rand() % 8 == 0 ? odd[rand() % 6] : alpha[rand() % (sizeof alpha - 1)];
		v[vl] = '\0';
		size_t nl = 1 + (size_t)rand() % 3;
		for (size_t i = 0; i < nl; i++)
			needle[i] = "ab1B"[rand() % 4];
		needle[nl] = '\0';
		snprintf(msg, sizeof msg, "From: %s\n\nbody\n", v);
		const char *one[1] = { msg };
		char q[32];
		snprintf(q, sizeof q, "FROM %s", needle);
		int got = strcmp(run_on(one, 1, q), "1") == 0;
		/* The reference: unfolded value -> address text -> case-blind find. */
		struct pt_strbuf raw = { 0 }, txt = { 0 };
		pt_hdr_unfold(v, vl, &raw);
		imap_msg_address_text(raw.p, raw.len, &txt);
		int want = 0;
		for (size_t i = 0; !want && txt.len >= nl && i + nl <= txt.len; i++)
			want = strncasecmp(txt.p + i, needle, nl) == 0;
		if (raw.len == 0)
			want = 0;
		if (got != want)
			fail_msg("FROM %s on \"%s\" (text \"%s\"): %d, want %d", needle, v, txt.p ? txt.p : "",
			         got, want);
		pt_strbuf_free(&raw);
		pt_strbuf_free(&txt);
	}
}

/* NIL where a string is wanted is the text "NIL" (an astring). */
static void
test_nil_is_text(void **state)
{
	(void)state;
	struct imap_arg args[2] = {
		{ IMAP_ARG_ATOM, "SUBJECT", 7, NULL, 0 },
		{ IMAP_ARG_NIL, "nil", 3, NULL, 0 },
	};
	char err[128];
	struct imap_search *s = imap_search_parse(args, 2, err, sizeof err);
	assert_non_null(s);
	struct imap_msg *pm = imap_msg_parse("Subject: NIL\r\n\r\n", 16);
	struct pt_msg_info info = { 1, 0, 0, 16, 0, 0, 1 };
	struct imap_search_env env = { 1, 1, NULL, NULL, NULL };
	struct imap_search_msg m = { 1, &info, load_one, pm, NULL };
	assert_int_equal(imap_search_match(s, &env, &m), 1);
	imap_search_free(s);
	imap_msg_free(pm);
}

/* A literal search string may hold any byte, NUL included. */
static void
test_literal_bytes(void **state)
{
	(void)state;
	struct imap_arg args[2] = {
		{ IMAP_ARG_ATOM, "BODY", 4, NULL, 0 },
		{ IMAP_ARG_LITERAL, "Invoice\0#42", 11, NULL, 0 },
	};
	char err[128];
	struct imap_search *s = imap_search_parse(args, 2, err, sizeof err);
	assert_non_null(s);
	struct imap_search_env env = { 3, 30, NULL, NULL, NULL };
	struct imap_search_msg m = { 1, &infos[0], load, (void *)0, NULL };
	assert_int_equal(imap_search_match(s, &env, &m), 0);
	imap_search_free(s);
	args[1].len = 7;
	s = imap_search_parse(args, 2, err, sizeof err);
	assert_int_equal(imap_search_match(s, &env, &m), 1);
	imap_search_free(s);
}

/* A needle matches as i;unicode-casemap says, whichever scan imap_search.c
 * takes (Horspool, the casemap's KMP for short needles, the casemap after
 * a miss on non-ASCII text, at once on a body known not to be ASCII, by
 * the needle's table built once): random subjects and bodies of ASCII
 * letters, a ligature "fi", fullwidth A, A ring, a stray octet (subjects
 * only); ASCII and non-ASCII needles; two keys over one body. */
static void
test_needle_is_casemap(void **state)
{
	(void)state;
	static const char *const tok[] = { "a", "A", "b", "f", "i", "x", "\xef\xac\x81", "\xef\xbc\xa1",
		                           "\xc3\x85", "\xff" };
	static const char *const ntok[] = { "a", "A", "b", "B", "f", "F", "i", "I", "x", "\xef\xac\x81",
		                            "\xc3\xa5" };
	srand(7);
	for (int round = 0; round < 4000; round++) {
		char subj[128], body[128], needle[32], msg[320], q[96];
		size_t sl = 0, bl = 0, nl = 0;
		int nt = 1 + rand() % 12;
		for (int i = 0; i < nt; i++) {
			const char *t = tok[rand() % (round % 3 ? 6 : 10)];
			memcpy(subj + sl, t, strlen(t));
			sl += strlen(t);
			t = tok[rand() % (round % 3 ? 6 : 9)];
			memcpy(body + bl, t, strlen(t));
			bl += strlen(t);
		}
		subj[sl] = body[bl] = '\0';
		int nn = 1 + rand() % 5;
		for (int i = 0; i < nn; i++) {
			const char *t = ntok[rand() % (round % 2 ? 9 : 11)];
			memcpy(needle + nl, t, strlen(t));
			nl += strlen(t);
		}
		needle[nl] = '\0';
		snprintf(msg, sizeof msg, "Subject: %s\nContent-Type: text/plain; charset=utf-8\n\n%s\n", subj, body);
		const char *one[1] = { msg };
		snprintf(q, sizeof q, "HEADER SUBJECT %s", needle);
		int got = strcmp(run_on(one, 1, q), "1") == 0;
		int want = pt_casemap_contains(subj, sl, needle, nl);
		if (got != want)
			fail_msg("%s on \"%s\": %d, want %d", q, subj, got, want);
		/* The body: alone, and after another key that reads it first. */
		snprintf(q, sizeof q, "BODY %s", needle);
		got = strcmp(run_on(one, 1, q), "1") == 0;
		want = pt_casemap_contains(body, bl, needle, nl);
		if (got != want)
			fail_msg("%s on \"%s\": %d, want %d", q, body, got, want);
		snprintf(q, sizeof q, "NOT BODY qqq BODY %s", needle);
		got = strcmp(run_on(one, 1, q), "1") == 0;
		if (got != want)
			fail_msg("%s on \"%s\": %d, want %d", q, body, got, want);
	}
}

/* SEARCH BODY with a needle whose last octets match the body everywhere
 * and whose first does not ("b" then a's, over a's): Horspool compares
 * the whole needle at every position (needle x body, minutes here) until
 * its budget hands over to KMP, which stays linear. Also a hit past the
 * handover, and in another case. */
static void
test_body_substring_handover(void **state)
{
	(void)state;
	enum { BODY = 2000000, NEEDLE = 60000 };
	static const char head[] = "Subject: run\r\n\r\n";
	char *msg = malloc(sizeof head + BODY + 3);
	char *needle = malloc(NEEDLE);
	assert_non_null(msg);
	assert_non_null(needle);
	memcpy(msg, head, sizeof head - 1);
	memset(msg + sizeof head - 1, 'a', BODY);
	memcpy(msg + sizeof head - 1 + BODY, "\r\n", 3);
	size_t mlen = sizeof head - 1 + BODY + 2;
	needle[0] = 'B';
	memset(needle + 1, 'A', NEEDLE - 1);
	struct imap_arg args[2] = {
		{ IMAP_ARG_ATOM, "BODY", 4, NULL, 0 },
		{ IMAP_ARG_LITERAL, needle, NEEDLE, NULL, 0 },
	};
	char err[128];
	struct imap_search_env env = { 1, 1, NULL, NULL, NULL };
	struct pt_msg_info info = { 1, 0, 0, mlen, 0, 0, 1 };
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int round = 0; round < 2; round++) {
		/* Round 1: a 'b' three quarters in, where the needle starts. */
		if (round == 1)
			msg[sizeof head - 1 + BODY / 4 * 3] = 'b';
		struct imap_msg *pm = imap_msg_parse(msg, mlen);
		assert_non_null(pm);
		struct imap_search *s = imap_search_parse(args, 2, err, sizeof err);
		assert_non_null(s);
		struct imap_search_msg m = { 1, &info, load_one, pm, NULL };
		assert_int_equal(imap_search_match(s, &env, &m), round);
		imap_search_free(s);
		imap_msg_free(pm);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	/* Generous: well under a second with the handover, minutes without. */
	assert_true(secs < 20.0);
	free(needle);
	free(msg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_address_quick_reject),
		cmocka_unit_test(test_sizes_sets),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_body_text),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_combinations),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_needs_text_and_load),
		cmocka_unit_test(test_literal_bytes),
		cmocka_unit_test(test_address_keys),
		cmocka_unit_test(test_nil_is_text),
		cmocka_unit_test(test_body_substring_handover),
		cmocka_unit_test(test_needle_is_casemap),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
