/* Unit tests for restriction list evaluation: the seed's rules with
 * Postfix's replies, list semantics (permit ends one list, delay_reject,
 * warn_if_reject, DEFER_IF_*), every request-only item, access maps,
 * implicit unlisted-recipient check, decision trace, config errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_int.h"
#include "runtime.h"
#include "restrict/restrict.h"

static char tmpdir[128];
static struct pt_config *conf;
static struct restrict_setup *setup_now;

static struct pt_config *
load(const char *text, int expect_errors)
{
	struct pt_config *c = pt_config_parse("test.conf", text, strlen(text));
	assert_non_null(c);
	assert_int_equal(pt_config_declare_core(c), 0);
	assert_int_equal(pt_config_declare(c, "restrict", restrict_params), 0);
	int errs = pt_config_finish(c);
	if (!expect_errors && errs) {
		for (int i = 0; i < pt_config_error_count(c); i++)
			print_error("%s\n", pt_config_error(c, i));
		fail();
	}
	return c;
}

/* Use config text (plus the seed's basics) for the next evaluations. */
static void
use(const char *extra)
{
	char text[4096];
	snprintf(text, sizeof text,
	         "mydestination = example.com.ar, localhost\n"
	         "relay_domains = $mydestination, relay.test\n"
	         "mynetworks = 127.0.0.1/32\n%s", extra);
	if (setup_now)
		restrict_setup_unref(setup_now);
	pt_live_conf = NULL;
	if (conf)
		pt_config_free(conf);
	conf = load(text, 0);
	pt_live_conf = conf;
	setup_now = restrict_setup_build(conf, 1);
	if (setup_now == NULL) {
		for (int i = 0; i < pt_config_error_count(conf); i++)
			print_error("%s\n", pt_config_error(conf, i));
		fail();
	}
}

#define SEED "smtpd_helo_restrictions = permit_mynetworks, reject_invalid_helo_hostname\n" \
	"smtpd_sender_restrictions = permit_mynetworks, reject_unknown_sender_domain\n" \
	"smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"

struct outcome {
	int called;
	struct pt_verdict v;
	char trace[8192];
};

static void
capture(void *arg, const struct pt_verdict *v)
{
	struct outcome *o = arg;
	o->called++;
	o->v = *v;
	snprintf(o->trace, sizeof o->trace, "%s", v->trace ? v->trace : "");
	o->v.trace = NULL;
}

struct req {
	enum pt_stage stage;
	const char *client, *helo, *sender, *rcpt, *sasl;
	int pipelined;
	int connect;                  /* PT_STAGE_CONNECT is 0 */
};

static struct outcome
eval(struct req r)
{
	struct pt_policy_request q;
	memset(&q, 0, sizeof q);
	q.stage = r.connect ? PT_STAGE_CONNECT : r.stage ? r.stage : PT_STAGE_RCPT;
	q.protocol_name = "ESMTP";
	q.client_address = r.client ? r.client : "127.0.0.2";
	q.client_name = "client2.example.com.ar";
	q.helo_name = r.helo ? r.helo : "client2.example.com.ar";
	q.sender = r.sender ? r.sender : "someone@example.com.ar";
	q.recipient = r.rcpt;
	q.sasl_username = r.sasl;
	q.pipelined_early = r.pipelined;
	struct outcome o;
	memset(&o, 0, sizeof o);
	assert_int_equal(restrict_evaluate(setup_now, NULL, &q, capture, &o), 0);
	assert_int_equal(o.called, 1);   /* nothing here waits on DNS */
	return o;
}

#define ACCEPTED(o) do { if ((o).v.kind != PT_VERDICT_ACCEPT) \
	fail_msg("expected accept, got %s (%s)\n%s", (o).v.reply, (o).v.rule, (o).trace); } while (0)
#define REPLY(o, text) do { if (strcmp((o).v.reply, (text)) != 0) \
	fail_msg("expected \"%s\", got \"%s\"\n%s", (text), (o).v.reply, (o).trace); } while (0)

static void
test_seed_helo_rule(void **state)
{
	(void)state;
	use(SEED);
	struct outcome o = eval((struct req){ .helo = "bad..host", .rcpt = "root@example.com.ar" });
	assert_int_equal(o.v.kind, PT_VERDICT_REJECT);
	REPLY(o, "501 5.5.2 <bad..host>: Helo command rejected: Invalid name");
	assert_string_equal(o.v.rule, "reject_invalid_helo_hostname");
	o = eval((struct req){ .helo = "-bad.example.com.ar", .rcpt = "root@example.com.ar" });
	REPLY(o, "501 5.5.2 <-bad.example.com.ar>: Helo command rejected: Invalid name");
	o = eval((struct req){ .helo = "bad!host", .rcpt = "root@example.com.ar" });
	REPLY(o, "501 5.5.2 <bad!host>: Helo command rejected: Invalid name");
	o = eval((struct req){ .helo = "[999.1.1.1]", .rcpt = "root@example.com.ar" });
	REPLY(o, "501 5.5.2 <[999.1.1.1]>: Helo command rejected: invalid ip address");
	static const char *const fine[] = { "bad_host.example.com.ar", "1.2.3.4", "localhost",
		"[127.0.0.2]" };
	for (size_t i = 0; i < 4; i++) {
		o = eval((struct req){ .helo = fine[i], .rcpt = "root@example.com.ar" });
		ACCEPTED(o);
	}
	/* from mynetworks the same HELO passes (permit_mynetworks first) */
	o = eval((struct req){ .client = "127.0.0.1", .helo = "bad..host", .rcpt = "root@example.com.ar" });
	ACCEPTED(o);
	/* smtpd_delay_reject = yes: HELO itself is not refused */
	o = eval((struct req){ .stage = PT_STAGE_HELO, .helo = "bad..host" });
	ACCEPTED(o);
	o = eval((struct req){ .stage = PT_STAGE_MAIL, .helo = "bad..host" });
	ACCEPTED(o);
}

static void
test_seed_relay_rule(void **state)
{
	(void)state;
	/* Debian's default smtpd_relay_restrictions defers first */
	use(SEED);
	struct outcome o = eval((struct req){ .rcpt = "victim@other.test" });
	assert_int_equal(o.v.kind, PT_VERDICT_DEFER);
	REPLY(o, "454 4.7.1 <victim@other.test>: Relay access denied");
	assert_string_equal(o.v.rule, "defer_unauth_destination");
	/* emptied: the tutorial's reject_unauth_destination decides */
	use(SEED "smtpd_relay_restrictions =\n");
	o = eval((struct req){ .rcpt = "victim@other.test" });
	assert_int_equal(o.v.kind, PT_VERDICT_REJECT);
	REPLY(o, "554 5.7.1 <victim@other.test>: Relay access denied");
	assert_string_equal(o.v.rule, "reject_unauth_destination");
	o = eval((struct req){ .rcpt = "victim%other.test@example.com.ar" });
	REPLY(o, "554 5.7.1 <victim%other.test@example.com.ar>: Relay access denied");
	o = eval((struct req){ .rcpt = "\"victim@other.test\"@example.com.ar" });
	REPLY(o, "554 5.7.1 <\"victim@other.test\"@example.com.ar>: Relay access denied");
	/* controls: our domain, a subdomain via relay_domains, mynetworks */
	o = eval((struct req){ .rcpt = "root@example.com.ar" });
	ACCEPTED(o);
	o = eval((struct req){ .rcpt = "nosuchuser@sub.example.com.ar" });
	ACCEPTED(o);
	o = eval((struct req){ .client = "127.0.0.1", .rcpt = "victim@other.test" });
	ACCEPTED(o);
	assert_string_equal(o.v.rule, "permit_mynetworks");
	/* SASL-authenticated clients relay (default relay restrictions, and
	 * no tutorial recipient list, which would refuse them as Postfix does) */
	use(SEED "smtpd_recipient_restrictions =\n");
	o = eval((struct req){ .rcpt = "victim@other.test", .sasl = "alice" });
	ACCEPTED(o);
	assert_string_equal(o.v.rule, "permit_sasl_authenticated");
}

static void
test_unlisted_recipient(void **state)
{
	(void)state;
	use(SEED);
	struct outcome o = eval((struct req){ .rcpt = "nosuchuser@example.com.ar" });
	REPLY(o, "550 5.1.1 <nosuchuser@example.com.ar>: Recipient address rejected: User unknown "
	      "in local recipient table");
	assert_string_equal(o.v.rule, "smtpd_reject_unlisted_recipient");
	/* from mynetworks too (it is not a restriction list) */
	o = eval((struct req){ .client = "127.0.0.1", .rcpt = "nosuchuser@example.com.ar" });
	assert_int_equal(o.v.kind, PT_VERDICT_REJECT);
	o = eval((struct req){ .rcpt = "Root@Example.COM.AR" });
	ACCEPTED(o);
	o = eval((struct req){ .rcpt = "root" });
	ACCEPTED(o);
	o = eval((struct req){ .rcpt = "PostMaster@example.com.ar" });
	ACCEPTED(o);
	o = eval((struct req){ .stage = PT_STAGE_VRFY, .client = "127.0.0.1", .rcpt = "nosuch" });
	REPLY(o, "550 5.1.1 <nosuch>: Recipient address rejected: User unknown in local recipient table");
	use(SEED "smtpd_reject_unlisted_recipient = no\n");
	o = eval((struct req){ .rcpt = "nosuchuser@example.com.ar" });
	ACCEPTED(o);
	use(SEED "smtpd_reject_unlisted_recipient = no\n"
	    "smtpd_recipient_restrictions = reject_unlisted_recipient, permit_mynetworks, "
	    "reject_unauth_destination\n");
	o = eval((struct req){ .client = "127.0.0.1", .rcpt = "nosuchuser@example.com.ar" });
	assert_int_equal(o.v.kind, PT_VERDICT_REJECT);
	assert_string_equal(o.v.rule, "reject_unlisted_recipient");
}

static void
test_list_semantics(void **state)
{
	(void)state;
	/* permit ends its own list only: the next list still rejects */
	use("smtpd_client_restrictions = permit\n"
	    "smtpd_helo_restrictions = reject\n"
	    "smtpd_recipient_restrictions = reject_unauth_destination\n");
	struct outcome o = eval((struct req){ .rcpt = "root@example.com.ar" });
	REPLY(o, "554 5.7.1 <client2.example.com.ar>: Helo command rejected: Access denied");
	assert_string_equal(o.v.rule, "reject");
	/* defer and the client class */
	use("smtpd_client_restrictions = defer\n");
	o = eval((struct req){ .rcpt = "root@example.com.ar" });
	assert_int_equal(o.v.kind, PT_VERDICT_DEFER);
	REPLY(o, "450 4.3.2 <client2.example.com.ar[127.0.0.2]>: Client host rejected: Try again later");
	/* warn_if_reject turns the next item's reject into a log line */
	use("smtpd_helo_restrictions = warn_if_reject, reject_invalid_helo_hostname\n");
	o = eval((struct req){ .helo = "bad..host", .rcpt = "root@example.com.ar" });
	ACCEPTED(o);
	assert_non_null(strstr(o.trace, "reject_warning: 501 5.5.2 <bad..host>"));
	/* ...and only the next one */
	use("smtpd_helo_restrictions = warn_if_reject, permit_sasl_authenticated, "
	    "reject_invalid_helo_hostname\n");
	o = eval((struct req){ .helo = "bad..host", .rcpt = "root@example.com.ar" });
	assert_int_equal(o.v.kind, PT_VERDICT_REJECT);
	/* smtpd_delay_reject = no: each list at its own stage */
	use(SEED "smtpd_delay_reject = no\nsmtpd_client_restrictions = reject\n");
	o = eval((struct req){ .stage = PT_STAGE_HELO, .helo = "bad..host" });
	REPLY(o, "501 5.5.2 <bad..host>: Helo command rejected: Invalid name");
	o = eval((struct req){ .connect = 1 });
	REPLY(o, "554 5.7.1 <client2.example.com.ar[127.0.0.2]>: Client host rejected: Access denied");
	o = eval((struct req){ .helo = "bad..host", .rcpt = "root@example.com.ar" });
	ACCEPTED(o);   /* client and HELO lists are not repeated at RCPT */
	/* DATA and END-OF-DATA lists */
	use("smtpd_data_restrictions = reject_unauth_pipelining\n"
	    "smtpd_end_of_data_restrictions = reject\n");
	o = eval((struct req){ .stage = PT_STAGE_DATA, .pipelined = 1 });
	REPLY(o, "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining");
	o = eval((struct req){ .stage = PT_STAGE_DATA });
	ACCEPTED(o);
	o = eval((struct req){ .stage = PT_STAGE_END_OF_DATA });
	REPLY(o, "554 5.7.1 <END-OF-MESSAGE>: End-of-data rejected: Access denied");
}

static void
test_items(void **state)
{
	(void)state;
	use("smtpd_helo_restrictions = reject_non_fqdn_helo_hostname\n"
	    "smtpd_sender_restrictions = reject_non_fqdn_sender\n"
	    "smtpd_recipient_restrictions = reject_non_fqdn_recipient, reject_unauth_destination\n"
	    "smtpd_relay_restrictions =\n"
	    "smtpd_reject_unlisted_recipient = no\n");
	struct outcome o = eval((struct req){ .helo = "localhost", .rcpt = "root@example.com.ar" });
	REPLY(o, "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname");
	o = eval((struct req){ .sender = "someone@localhost", .rcpt = "root@example.com.ar" });
	REPLY(o, "504 5.5.2 <someone@localhost>: Sender address rejected: need fully-qualified address");
	o = eval((struct req){ .sender = "", .rcpt = "root@example.com.ar" });
	ACCEPTED(o);   /* the null sender is never "not fully qualified" */
	o = eval((struct req){ .rcpt = "root" });
	REPLY(o, "504 5.5.2 <root>: Recipient address rejected: need fully-qualified address");
	o = eval((struct req){ .rcpt = "root@example.com.ar" });
	ACCEPTED(o);
	/* permit_auth_destination */
	use("smtpd_recipient_restrictions = permit_auth_destination, reject\n"
	    "smtpd_relay_restrictions =\n");
	o = eval((struct req){ .rcpt = "root@example.com.ar" });
	ACCEPTED(o);
	assert_string_equal(o.v.rule, "permit_auth_destination");
	o = eval((struct req){ .rcpt = "x@other.test" });
	REPLY(o, "554 5.7.1 <x@other.test>: Recipient address rejected: Access denied");
}

static void
write_file(const char *name, const char *text, char *path, size_t pathlen)
{
	snprintf(path, pathlen, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
test_access_maps(void **state)
{
	(void)state;
	char cpath[300], spath[300], rpath[300], hpath[300], text[2048];
	write_file("client_access",
	           "192.0.2.66 REJECT you again\n"
	           "198.51.100 550 5.7.1 whole net blocked\n"
	           "bad.client.test DEFER try later\n"
	           "203.0.113.5 OK\n", cpath, sizeof cpath);
	write_file("sender_access",
	           "spammer@example.net REJECT\n"
	           "example.org DEFER_IF_PERMIT graylisted\n"
	           "boss@ WARN boss seen\n"
	           "<> DUNNO\n"
	           "weird.test FROBNICATE\n", spath, sizeof spath);
	write_file("recipient_access",
	           "tagged@example.com.ar PREPEND X-Tagged: yes\n"
	           "held@example.com.ar HOLD\n"
	           "gone@example.com.ar DISCARD\n", rpath, sizeof rpath);
	write_file("helo_access", "evil.test REJECT no evil\n", hpath, sizeof hpath);
	snprintf(text, sizeof text,
	         "smtpd_reject_unlisted_recipient = no\n"
	         "smtpd_relay_restrictions =\n"
	         "smtpd_client_restrictions = check_client_access hash:%s\n"
	         "smtpd_helo_restrictions = check_helo_access hash:%s\n"
	         "smtpd_sender_restrictions = check_sender_access hash:%s\n"
	         "smtpd_recipient_restrictions = check_recipient_access hash:%s, permit_mynetworks, "
	         "reject_unauth_destination\n", cpath, hpath, spath, rpath);
	use(text);
	struct outcome o = eval((struct req){ .client = "192.0.2.66", .rcpt = "root@example.com.ar" });
	REPLY(o, "554 5.7.1 <client2.example.com.ar[192.0.2.66]>: Client host rejected: you again");
	assert_true(strncmp(o.v.rule, "check_client_access hash:", 25) == 0);
	o = eval((struct req){ .client = "198.51.100.7", .rcpt = "root@example.com.ar" });
	REPLY(o, "550 5.7.1 <client2.example.com.ar[198.51.100.7]>: Client host rejected: whole net blocked");
	o = eval((struct req){ .client = "203.0.113.5", .helo = "sub.evil.test", .rcpt = "root@example.com.ar" });
	REPLY(o, "554 5.7.1 <sub.evil.test>: Helo command rejected: no evil");
	o = eval((struct req){ .sender = "Spammer@Example.NET", .rcpt = "root@example.com.ar" });
	REPLY(o, "554 5.7.1 <Spammer@Example.NET>: Sender address rejected: Access denied");
	/* DEFER_IF_PERMIT: accepted at the end -> deferred */
	o = eval((struct req){ .sender = "x@mail.example.org", .rcpt = "root@example.com.ar" });
	assert_int_equal(o.v.kind, PT_VERDICT_DEFER);
	REPLY(o, "450 4.7.1 <x@mail.example.org>: Sender address rejected: graylisted");
	/* ...but a reject stays a reject */
	o = eval((struct req){ .sender = "x@mail.example.org", .rcpt = "v@other.test" });
	REPLY(o, "554 5.7.1 <v@other.test>: Relay access denied");
	o = eval((struct req){ .sender = "boss@anywhere.test", .rcpt = "root@example.com.ar" });
	ACCEPTED(o);
	assert_non_null(strstr(o.trace, "WARN boss seen"));
	o = eval((struct req){ .sender = "", .rcpt = "root@example.com.ar" });
	ACCEPTED(o);
	/* a value that is not an action: temporary failure, never accept */
	o = eval((struct req){ .sender = "a@weird.test", .rcpt = "root@example.com.ar" });
	assert_int_equal(o.v.kind, PT_VERDICT_DEFER);
	REPLY(o, "451 4.3.5 Server configuration problem");
	o = eval((struct req){ .rcpt = "tagged@example.com.ar" });
	ACCEPTED(o);
	assert_string_equal(o.v.prepend, "X-Tagged: yes");
	o = eval((struct req){ .rcpt = "held@example.com.ar" });
	assert_int_equal(o.v.kind, PT_VERDICT_HOLD);
	o = eval((struct req){ .rcpt = "gone@example.com.ar" });
	assert_int_equal(o.v.kind, PT_VERDICT_DISCARD);
	/* a map file that disappears keeps its last contents (never fail open) */
	unlink(hpath);
	sleep(1);                /* maps re-check their file at most once a second */
	o = eval((struct req){ .client = "203.0.113.5", .helo = "sub.evil.test", .rcpt = "root@example.com.ar" });
	REPLY(o, "554 5.7.1 <sub.evil.test>: Helo command rejected: no evil");
}

static void
test_trace(void **state)
{
	(void)state;
	use(SEED "smtpd_relay_restrictions =\n");
	struct outcome o = eval((struct req){ .rcpt = "victim@other.test" });
	assert_non_null(strstr(o.trace, "smtpd_client_restrictions: (empty)\n"));
	assert_non_null(strstr(o.trace, "smtpd_helo_restrictions: permit_mynetworks -> no decision\n"));
	assert_non_null(strstr(o.trace, "smtpd_helo_restrictions: reject_invalid_helo_hostname -> no decision\n"));
	assert_non_null(strstr(o.trace, "smtpd_recipient_restrictions: reject_unauth_destination -> "
	                                "reject: 554 5.7.1 <victim@other.test>: Relay access denied\n"));
	assert_non_null(strstr(o.trace, "result: 554 5.7.1 <victim@other.test>: Relay access denied "
	                                "rule=reject_unauth_destination\n"));
	o = eval((struct req){ .client = "127.0.0.1", .rcpt = "victim@other.test" });
	assert_non_null(strstr(o.trace, "smtpd_recipient_restrictions: permit_mynetworks -> permit\n"));
	assert_non_null(strstr(o.trace, "result: accept rule=permit_mynetworks\n"));
}

static void
test_config_errors(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"smtpd_helo_restrictions = permit_mynetwork\n",
		"smtpd_client_restrictions = check_client_access\n",
		"smtpd_client_restrictions = reject_rbl_client bad/domain\n",
		"smtpd_client_restrictions = check_lua_policy relative.lua\n",
		"smtpd_client_restrictions = check_lua_policy /nonexistent/p.lua\n",
		"smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = permit_mynetworks\n",
		"mynetworks = 10.0.0.0/8 subnet\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char text[1024];
		snprintf(text, sizeof text, "mydestination = example.com.ar\n%s", bad[i]);
		struct pt_config *c = load(text, 1);
		if (pt_config_error_count(c) == 0) {
			struct restrict_setup *s = restrict_setup_build(c, 1);
			if (s != NULL)
				fail_msg("config accepted: %s", bad[i]);
			assert_true(pt_config_error_count(c) > 0);
		}
		pt_config_free(c);
	}
	/* a good one with every item name parses */
	struct pt_config *c = load(
		"smtpd_client_restrictions = permit_mynetworks permit_sasl_authenticated "
		"reject_unknown_client_hostname reject_unknown_reverse_client_hostname "
		"reject_rbl_client zen.example.org=127.0.0.2 warn_if_reject reject defer permit\n"
		"smtpd_helo_restrictions = reject_invalid_helo_hostname reject_non_fqdn_helo_hostname "
		"reject_unknown_helo_hostname\n"
		"smtpd_sender_restrictions = reject_unknown_sender_domain reject_non_fqdn_sender\n"
		"smtpd_recipient_restrictions = reject_non_fqdn_recipient reject_unknown_recipient_domain "
		"reject_unauth_pipelining reject_unlisted_recipient permit_auth_destination "
		"reject_unauth_destination defer_unauth_destination\n", 0);
	struct restrict_setup *s = restrict_setup_build(c, 1);
	assert_non_null(s);
	assert_int_equal(s->chains[RL_CLIENT].n, 9);
	assert_string_equal(s->chains[RL_CLIENT].v[4].arg, "zen.example.org=127.0.0.2");
	restrict_setup_unref(s);
	pt_config_free(c);
}

/* `postern check` (no open_resources): every bad item of a list is named,
 * near misses get a suggestion, and the good items stay in the setup so
 * their own checks (Lua tests, maps) still run. */
static void
test_check_mode_reports_every_item(void **state)
{
	(void)state;
	struct pt_config *c = load(
		"mydestination = example.com.ar\n"
		"smtpd_client_restrictions = permit_mynetwork, check_lua_policy /p.lua, rejct, frobnicate\n"
		"smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destinaton\n", 0);
	struct restrict_setup *s = restrict_setup_build(c, 0);
	assert_non_null(s);
	assert_int_equal(s->check_errors, 2);
	assert_int_equal(pt_config_error_count(c), 2);
	assert_string_equal(pt_config_error(c, 0),
	                    "test.conf:2: unknown restriction \"permit_mynetwork\" (did you mean \"permit_mynetworks\"?); "
	                    "unknown restriction \"rejct\" (did you mean \"reject\"?); "
	                    "unknown restriction \"frobnicate\"");
	assert_string_equal(pt_config_error(c, 1),
	                    "test.conf:3: unknown restriction \"reject_unauth_destinaton\" "
	                    "(did you mean \"reject_unauth_destination\"?)");
	/* The good items are kept: the policy is still there to be tried. */
	assert_int_equal(s->chains[RL_CLIENT].n, 1);
	assert_int_equal(s->chains[RL_CLIENT].v[0].kind, RI_CHECK_LUA_POLICY);
	assert_string_equal(s->chains[RL_CLIENT].v[0].arg, "/p.lua");
	assert_int_equal(s->chains[RL_RECIPIENT].n, 1);
	restrict_setup_unref(s);
	/* With resources (start, reload) the same config builds nothing. */
	assert_null(restrict_setup_build(c, 1));
	pt_config_free(c);
}

static void
test_no_setup_never_accepts(void **state)
{
	(void)state;
	struct pt_policy_request q;
	memset(&q, 0, sizeof q);
	q.stage = PT_STAGE_RCPT;
	q.recipient = "victim@other.test";
	struct outcome o;
	memset(&o, 0, sizeof o);
	restrict_set_live_setup(NULL);
	restrict_evaluate(NULL, NULL, &q, capture, &o);
	assert_int_equal(o.called, 1);
	assert_int_equal(o.v.kind, PT_VERDICT_DEFER);
}

static int
group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_restrict.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	if (setup_now)
		restrict_setup_unref(setup_now);
	pt_live_conf = NULL;
	if (conf)
		pt_config_free(conf);
	restrict_lua_shutdown();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_helo_rule),
		cmocka_unit_test(test_seed_relay_rule),
		cmocka_unit_test(test_unlisted_recipient),
		cmocka_unit_test(test_list_semantics),
		cmocka_unit_test(test_items),
		cmocka_unit_test(test_access_maps),
		cmocka_unit_test(test_trace),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_check_mode_reports_every_item),
		cmocka_unit_test(test_no_setup_never_accepts),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
