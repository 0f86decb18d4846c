/* Header address qualification (include/postern/addrlist.h): bare local
 * parts get @origin, dotless domains .domain, and nothing else of a field
 * changes: display names, quoted strings with commas, comments, groups,
 * source routes, folding; what cannot be read for certain stays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postern/addrlist.h"
#include "config_int.h"
#include "runtime.h"

static const struct pt_addr_qualify BOTH = { "example.org", "example.org" };
static const struct pt_addr_qualify ORIGIN = { "example.org", NULL };

static void
check(const struct pt_addr_qualify *q, const char *in, const char *want, int changes)
{
	struct pt_strbuf out = { 0 };
	int n = pt_addrlist_qualify(in, strlen(in), q, &out);
	pt_strbuf_put(&out, "", 0);
	if (strcmp(out.p, want) != 0 || n != changes)
		fail_msg("in  [%s]\nout [%s] (%d changes)\nwant[%s] (%d)", in, out.p, n, want, changes);
	pt_strbuf_free(&out);
}

static void
test_bare_and_dotless(void **state)
{
	(void)state;
	check(&BOTH, " alice", " alice@example.org", 1);
	check(&BOTH, " alice, bob", " alice@example.org, bob@example.org", 2);
	check(&BOTH, " bob@host", " bob@host.example.org", 1);
	check(&ORIGIN, " bob@host", " bob@host", 0);
	check(&BOTH, " carol@mail.example.net", " carol@mail.example.net", 0);
	check(&BOTH, " a.b.c", " a.b.c@example.org", 1);
	check(&BOTH, " dan@[192.0.2.1]", " dan@[192.0.2.1]", 0);
	check(&BOTH, "alice", "alice@example.org", 1);
	check(&BOTH, "", "", 0);
	check(&BOTH, "   ", "   ", 0);
	struct pt_addr_qualify none = { "", NULL };
	check(&none, " alice", " alice", 0);
}

static void
test_display_names_and_comments(void **state)
{
	(void)state;
	check(&BOTH, " Alice Smith <alice>", " Alice Smith <alice@example.org>", 1);
	check(&BOTH, " \"Smith, Alice\" <alice>, bob", " \"Smith, Alice\" <alice@example.org>, bob@example.org", 2);
	check(&BOTH, " \"a <b> c, d\" <e@f.g>", " \"a <b> c, d\" <e@f.g>", 0);
	check(&BOTH, " alice (Alice, the boss)", " alice@example.org (Alice, the boss)", 1);
	check(&BOTH, " alice (nested (comment, here)) , bob", " alice@example.org (nested (comment, here)) , bob@example.org", 2);
	check(&BOTH, " (lead) alice", " (lead) alice@example.org", 1);
	check(&BOTH, " \"quoted local\"", " \"quoted local\"@example.org", 1);
	check(&BOTH, " \"esc\\\"aped, x\" <x>", " \"esc\\\"aped, x\" <x@example.org>", 1);
	check(&BOTH, " J. Smith <js>", " J. Smith <js@example.org>", 1);
	check(&BOTH, " <alice> (Alice)", " <alice@example.org> (Alice)", 1);
	check(&BOTH, " =?utf-8?q?J=C3=B6rg?= <joerg>", " =?utf-8?q?J=C3=B6rg?= <joerg@example.org>", 1);
	/* A display name without brackets is no address. */
	check(&BOTH, " John Smith", " John Smith", 0);
}

static void
test_groups_routes_folding(void **state)
{
	(void)state;
	check(&BOTH, " undisclosed-recipients:;", " undisclosed-recipients:;", 0);
	check(&BOTH, " Team: alice, Bob <bob>;, carol", " Team: alice@example.org, Bob <bob@example.org>;, carol@example.org", 3);
	check(&BOTH, " <@relay.example,@other:alice>", " <@relay.example,@other:alice@example.org>", 1);
	check(&BOTH, " alice,\n bob,\r\n\tcarol@host", " alice@example.org,\n bob@example.org,\r\n\tcarol@host.example.org", 3);
	check(&BOTH, " alice,, ,bob,", " alice@example.org,, ,bob@example.org,", 2);
	check(&BOTH, " <>", " <>", 0);
}

static void
test_unreadable_left_alone(void **state)
{
	(void)state;
	check(&BOTH, " \"unterminated, alice", " \"unterminated, alice", 0);
	check(&BOTH, " alice, (open comment", " alice@example.org, (open comment", 1);
	check(&BOTH, " bob, <alice", " bob@example.org, <alice", 1);
	check(&BOTH, " a <b> <c>", " a <b> <c>", 0);
	check(&BOTH, " <b> junk@x", " <b> junk@x", 0);
	check(&BOTH, " alice@", " alice@", 0);
	check(&BOTH, " @host", " @host", 0);
	check(&BOTH, " alice.", " alice.", 0);
	check(&BOTH, " bob@host.", " bob@host.", 0);
	check(&BOTH, " a\\b", " a\\b", 0);
	check(&BOTH, " a>b, c", " a>b, c@example.org", 1);
	check(&BOTH, " x@[1.2.3.4]y", " x@[1.2.3.4]y", 0);
	check(&BOTH, " x@[unterminated", " x@[unterminated", 0);
}

static void
hdr(const char *in, const char *want)
{
	struct pt_strbuf out = { 0 };
	int rc = pt_hdr_qualify(in, strlen(in), &BOTH, &out);
	if (want == NULL) {
		assert_int_equal(rc, 0);
		assert_null(out.p);
		return;
	}
	assert_int_equal(rc, 1);
	assert_string_equal(out.p, want);
	pt_strbuf_free(&out);
}

static void
test_header_section(void **state)
{
	(void)state;
	hdr("To: alice\nSubject: alice\nCc: bob\n\nTo: body\n",
	    "To: alice@example.org\nSubject: alice\nCc: bob@example.org\n\nTo: body\n");
	hdr("From: Root <root>\r\nSender: root\r\nReply-To: x@y\r\n\r\nbody\r\n",
	    "From: Root <root@example.org>\r\nSender: root@example.org\r\nReply-To: x@y.example.org\r\n\r\nbody\r\n");
	hdr("resent-to: a\nRESENT-FROM: b\nResent-Reply-To: c\nBcc: d\n\n",
	    "resent-to: a@example.org\nRESENT-FROM: b@example.org\nResent-Reply-To: c@example.org\nBcc: d@example.org\n\n");
	/* Folded field: the continuation lines are part of it. */
	hdr("To: alice,\n  bob\nX: y\n\n", "To: alice@example.org,\n  bob@example.org\nX: y\n\n");
	/* The section ends at its empty line, or at the first non-field line. */
	hdr("Subject: hi\nnot a field\nTo: alice\n\n", NULL);
	hdr("Errors-To: a\nReturn-Receipt-To: b\nDisposition-Notification-To: c\nApparently-To: d\n\n",
	    "Errors-To: a@example.org\nReturn-Receipt-To: b@example.org\nDisposition-Notification-To: c@example.org\n"
	    "Apparently-To: d@example.org\n\n");
	hdr("To: a@b.c\nDelivered-To: alice\nX-To: alice\nTo-Do: x\nResent-Subject: y\n\n", NULL);
	hdr("", NULL);
	/* No header section at all, only a body. */
	hdr("\nTo: alice\n", NULL);
	/* A message without the empty line (all header). */
	hdr("To: alice", "To: alice@example.org");

	struct pt_addr_qualify off = { NULL, "" };
	struct pt_strbuf out = { 0 };
	assert_int_equal(pt_hdr_qualify("To: alice\n\n", 11, &off, &out), 0);
	assert_null(out.p);
}

static void
test_config_values(void **state)
{
	(void)state;
	static const char conf[] = "myhostname = mail.example.com\nmydomain = example.com\nmyorigin = $mydomain\n";
	struct pt_config *c = pt_runtime_load_text("t.conf", conf, sizeof conf - 1);
	assert_non_null(c);
	struct pt_addr_qualify q;
	pt_addr_qualify_init(&q, c);
	assert_string_equal(q.origin, "example.com");
	assert_null(q.domain);   /* append_dot_mydomain = no: Postfix 3 */
	pt_config_free(c);

	static const char conf2[] = "myhostname = mail.example.com\nappend_at_myorigin = no\nappend_dot_mydomain = yes\n";
	c = pt_runtime_load_text("t.conf", conf2, sizeof conf2 - 1);
	assert_non_null(c);
	pt_addr_qualify_init(&q, c);
	assert_null(q.origin);
	assert_string_equal(q.domain, "example.com");
	pt_config_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bare_and_dotless),
		cmocka_unit_test(test_display_names_and_comments),
		cmocka_unit_test(test_groups_routes_folding),
		cmocka_unit_test(test_unreadable_left_alone),
		cmocka_unit_test(test_header_section),
		cmocka_unit_test(test_config_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
