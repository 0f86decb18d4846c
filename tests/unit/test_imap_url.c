/* IMAP URLs for CATENATE (RFC 5092 as RFC 4469 uses them): the relative
 * and absolute forms of a message or part on this server, and what is
 * refused (another user or host, URLAUTH, a search, dot components,
 * broken escapes, numbers out of range). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imap/imap_catenate.h"

static const struct imap_url_self self = {
	.user = "alice", .hosts = { "localhost", "mail.example.com", "127.0.0.1", "::1" }, .port = 10143,
};

static int
parse(const char *s, struct imap_url *u)
{
	return imap_url_parse(s, strlen(s), &self, u);
}

static void
test_forms(void **state)
{
	(void)state;
	struct imap_url u;

	assert_int_equal(parse("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER", &u), 0);
	assert_string_equal(u.mailbox, "Drafts");
	assert_int_equal(u.uidvalidity, 385759045);
	assert_int_equal(u.uid, 20);
	assert_string_equal(u.section, "HEADER");
	assert_int_equal(u.partial, 0);
	imap_url_free(&u);

	assert_int_equal(parse("/a/b%20c/;UID=7/;SECTION=1.2.MIME/;PARTIAL=10.20", &u), 0);
	assert_string_equal(u.mailbox, "a/b c");
	assert_int_equal(u.uidvalidity, 0);
	assert_string_equal(u.section, "1.2.MIME");
	assert_true(u.partial && u.offset == 10 && u.length == 20);
	imap_url_free(&u);

	assert_int_equal(parse(";UID=3/;PARTIAL=5", &u), 0);
	assert_null(u.mailbox);
	assert_true(u.uid == 3 && u.partial && u.offset == 5 && u.length == 0);
	imap_url_free(&u);

	const char *ok[] = {
		"imap://alice@localhost/INBOX/;UID=1",
		"IMAP://alice;AUTH=*@MAIL.example.com:10143/INBOX;UIDVALIDITY=9/;UID=1",
		"imap://127.0.0.1:143/INBOX/;UID=1",
		"imap://[::1]:993/INBOX/;UID=1",
		"imap://;AUTH=PLAIN@localhost/INBOX/;UID=1",
		"/%C3%A9t%C3%A9/;UID=1",
		"/INBOX/;UID=4294967295",
	};
	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
		if (parse(ok[i], &u) != 0)
			fail_msg("refused: %s", ok[i]);
		imap_url_free(&u);
	}
}

static void
test_refused(void **state)
{
	(void)state;
	struct imap_url u;
	const char *bad[] = {
		"", "/", "/INBOX", "/INBOX;UIDVALIDITY=1", "INBOX/;UID=1",
		"imap://bob@localhost/INBOX/;UID=1",          /* another user */
		"imap://bob;AUTH=*@localhost/INBOX/;UID=1",
		"imap://@localhost/INBOX/;UID=1",
		"imap://alice@elsewhere.example/INBOX/;UID=1", /* another host */
		"imap://alice@localhost:25/INBOX/;UID=1",      /* another port */
		"imap://alice@localhost:/INBOX/;UID=1",
		"imap://[::2]/INBOX/;UID=1",
		"imap://localhost",
		"/INBOX/;UID=0", "/INBOX/;UID=01", "/INBOX/;UID=4294967296", "/INBOX/;UID=x",
		"/INBOX;UIDVALIDITY=0/;UID=1",
		"/INBOX;UIDVALIDITY=1;UID=1",                  /* no '/' between */
		"/INBOX/;UID=1;SECTION=1",
		"/INBOX/;SECTION=1/;UID=1",                    /* out of order */
		"/INBOX/;UID=1/;SECTION=",
		"/INBOX/;UID=1/;PARTIAL=1.0", "/INBOX/;UID=1/;PARTIAL=.5", "/INBOX/;UID=1/;PARTIAL=1.05",
		"/INBOX/;UID=1/;URLAUTH=anonymous:internal:0123",
		"/INBOX;EXPIRE=2030-01-01T00:00:00Z/;UID=1",
		"/INBOX/;UID=1/;FOO=1",
		"/INBOX?ALL", "/INBOX/;UID=1#x", "/IN BOX/;UID=1",
		"/../x/;UID=1", "/a/../b/;UID=1", "/a/./b/;UID=1", "/a//b/;UID=1", "/a/;UID=1/..",
		"/%2e%2E/x/;UID=1", "/a/%2E/;UID=1", "/a/..;UID=1",
		"/a%00b/;UID=1", "/a%0Ab/;UID=1", "/a%zz/;UID=1", "/a%4/;UID=1", "/a%/;UID=1",
		"/%C3/;UID=1", "/%C0%AF/;UID=1", "/%FF/;UID=1",
		";UID=1;UID=2", ";;UID=1",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		if (parse(bad[i], &u) == 0) {
			imap_url_free(&u);
			fail_msg("accepted: %s", bad[i]);
		}
	}
	/* a URL with a NUL inside is refused, not cut at it */
	assert_int_equal(imap_url_parse("/INBOX/;UID=1\0x", 15, &self, &u), -1);
	/* without a user, no user part is accepted */
	struct imap_url_self anon = self;
	anon.user = NULL;
	assert_int_equal(imap_url_parse("imap://alice@localhost/INBOX/;UID=1", 35, &anon, &u), -1);
}

/* Every prefix of a good URL parses or is refused without reading past
 * its end (ASan watches), and a refused one leaves nothing to free. */
static void
test_every_prefix(void **state)
{
	(void)state;
	const char *full = "imap://alice;AUTH=*@[::1]:993/a%20b/c;UIDVALIDITY=5/;UID=6/;SECTION=1.HEADER/;PARTIAL=1.2";
	for (size_t n = 0; n <= strlen(full); n++) {
		char *p = malloc(n + 1);
		memcpy(p, full, n);
		p[n] = '\0';
		struct imap_url u;
		if (imap_url_parse(p, n, &self, &u) == 0)
			imap_url_free(&u);
		else
			assert_null(u.mailbox);
		free(p);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forms),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_every_prefix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
