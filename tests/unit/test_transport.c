/* Unit tests for the transport module: transport(5) lookup order and
 * result forms, and the mydestination / relay_domains / relayhost /
 * default_transport fallbacks, with the seed's transport map. */
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
#include "transport/transport.h"

static char tmpdir[256];
static struct pt_config *conf;

/* A list of one map (spec) or of none (NULL). */
static struct pt_map_list *
one_map(const char *spec)
{
	char *v[1] = { (char *)spec };
	struct pt_list l = { spec ? 1 : 0, v };
	char err[256];
	struct pt_map_list *ml = pt_map_list_open(&l, PT_MAP_KEY_VALUE, "transport_maps", err, sizeof(err));
	assert_non_null(ml);
	return ml;
}

static struct transport_conf *
make_conf(const char *map_text)
{
	struct transport_conf *c = calloc(1, sizeof(*c));
	if (map_text) {
		char path[400], spec[410];
		snprintf(path, sizeof(path), "%s/transport", tmpdir);
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		fputs(map_text, f);
		fclose(f);
		snprintf(spec, sizeof(spec), "hash:%s", path);
		c->maps = one_map(spec);
	} else {
		c->maps = one_map(NULL);
	}
	strcpy(c->default_transport, "smtp");
	strcpy(c->relay_transport, "relay");
	return c;
}

static void
free_conf(struct transport_conf *c)
{
	pt_map_list_close(c->maps);
	free(c);
}

static struct pt_route
route(struct transport_conf *c, const char *addr, int want_rc)
{
	struct pt_route r;
	memset(&r, 0x55, sizeof(r));
	assert_int_equal(transport_route(c, addr, &r), want_rc);
	return r;
}

/* The SMTP client's transports (smtp, or relay for relay_domains); the
 * next hop is written out with its port. */
static void
assert_smtp(const struct pt_route *r, const char *nexthop, unsigned port)
{
	assert_true(strcmp(r->transport, "smtp") == 0 || strcmp(r->transport, "relay") == 0);
	char want[300];
	snprintf(want, sizeof(want), "%s:%u", nexthop, port);
	assert_string_equal(r->nexthop, want);
}

static void
test_seed_transport_map(void **state)
{
	(void)state;
	struct transport_conf *c = make_conf("example.com.ar    local:\n.example.com.ar    local:\n");
	struct pt_route r = route(c, "alice@example.com.ar", 0);
	assert_string_equal(r.transport, "local");
	r = route(c, "alice@sub.example.com.ar", 0);
	assert_string_equal(r.transport, "local");
	r = route(c, "Alice@Deep.Sub.EXAMPLE.com.ar.", 0);
	assert_string_equal(r.transport, "local");
	r = route(c, "bob@other.test", 0);
	assert_smtp(&r, "other.test", 25);
	r = route(c, "bob@notexample.com.ar", 0);
	assert_smtp(&r, "notexample.com.ar", 25);
	free_conf(c);
}

static void
test_lookup_order(void **state)
{
	(void)state;
	struct transport_conf *c = make_conf(
		"vip@example.test     smtp:[vip.relay]:2525\n"
		"example.test         smtp:[domain.relay]\n"
		".example.test        smtp:[sub.relay]\n"
		".deep.example.test   smtp:[deep.relay]\n"
		"*                    smtp:[wild.relay]\n");
	strcpy(c->delim, "+");
	struct pt_route r = route(c, "vip@example.test", 0);
	assert_smtp(&r, "[vip.relay]", 2525);
	/* user+ext@domain falls back to user@domain */
	r = route(c, "VIP+news@example.test", 0);
	assert_smtp(&r, "[vip.relay]", 2525);
	r = route(c, "other@example.test", 0);
	assert_smtp(&r, "[domain.relay]", 25);
	/* the domain key does not cover subdomains; .domain does */
	r = route(c, "x@a.example.test", 0);
	assert_smtp(&r, "[sub.relay]", 25);
	/* the nearest parent wins */
	r = route(c, "x@b.deep.example.test", 0);
	assert_smtp(&r, "[deep.relay]", 25);
	r = route(c, "x@deep.example.test", 0);
	assert_smtp(&r, "[sub.relay]", 25);
	/* * catches the rest, local domains included (it overrides, as Postfix) */
	r = route(c, "x@elsewhere.test", 0);
	assert_smtp(&r, "[wild.relay]", 25);
	r = route(c, "alice@example.com.ar", 0);
	assert_smtp(&r, "[wild.relay]", 25);
	free_conf(c);

	/* without the delimiter, user+ext is a different key */
	c = make_conf("vip@example.test smtp:[vip.relay]\n");
	r = route(c, "vip+x@example.test", 0);
	assert_smtp(&r, "example.test", 25);
	free_conf(c);
}

static void
test_result_forms(void **state)
{
	(void)state;
	struct transport_conf *c = make_conf(
		"loop.test     smtp:[127.0.0.1]:2525\n"
		"mx.test       smtp:mx.example.net\n"
		"port.test     smtp:mail.example.net:587\n"
		"named.test    smtp:[mail.example.net]:submission\n"
		"v6.test       smtp:[ipv6:::1]:2526\n"
		"v6b.test      smtp:[2001:db8::5]\n"
		"relayed.test  relay:[gw.example.net]\n"
		"nohop.test    smtp:\n"
		"bare.test     smtp\n"
		"err.test      error:5.1.1 mailbox gone away\n"
		"errnone.test  error:\n"
		"retry.test    retry:4.3.2 maintenance until noon\n"
		"gone.test     discard:\n"
		"local.test    local\n"
		"hoponly.test  :[hop.example.net]:2500\n"
		"lmtp.test     lmtp:unix:/var/run/lmtp\n"
		"badport.test  smtp:[h]:99999\n"
		"UPPER.test    SMTP:[Up.Example]\n");
	struct pt_route r = route(c, "a@loop.test", 0);
	assert_smtp(&r, "[127.0.0.1]", 2525);
	r = route(c, "a@mx.test", 0);
	assert_smtp(&r, "mx.example.net", 25);
	r = route(c, "a@port.test", 0);
	assert_smtp(&r, "mail.example.net", 587);
	r = route(c, "a@named.test", 0);
	assert_smtp(&r, "[mail.example.net]", 587);
	r = route(c, "a@v6.test", 0);
	assert_smtp(&r, "[::1]", 2526);
	r = route(c, "a@v6b.test", 0);
	assert_smtp(&r, "[2001:db8::5]", 25);
	r = route(c, "a@relayed.test", 0);
	assert_smtp(&r, "[gw.example.net]", 25);
	/* empty nexthop: the recipient domain (MX lookup) */
	r = route(c, "a@nohop.test", 0);
	assert_smtp(&r, "nohop.test", 25);
	r = route(c, "a@bare.test", 0);
	assert_smtp(&r, "bare.test", 25);
	r = route(c, "a@err.test", 0);
	assert_string_equal(r.transport, "error");
	assert_string_equal(r.nexthop, "5.1.1 mailbox gone away");
	r = route(c, "a@errnone.test", 0);
	assert_string_equal(r.transport, "error");
	assert_string_equal(r.nexthop, "errnone.test");
	r = route(c, "a@retry.test", 0);
	assert_string_equal(r.transport, "retry");
	assert_string_equal(r.nexthop, "4.3.2 maintenance until noon");
	r = route(c, "a@gone.test", 0);
	assert_string_equal(r.transport, "discard");
	r = route(c, "a@local.test", 0);
	assert_string_equal(r.transport, "local");
	/* empty transport: the class default (smtp) with the given next hop */
	r = route(c, "a@hoponly.test", 0);
	assert_smtp(&r, "[hop.example.net]", 2500);
	/* any transport name: a module may carry it out (the queue defers
	 * when none does); what is malformed is deferred, never bounced */
	r = route(c, "a@lmtp.test", 0);
	assert_string_equal(r.transport, "lmtp");
	assert_string_equal(r.nexthop, "unix:/var/run/lmtp");
	r = route(c, "a@badport.test", 0);
	assert_string_equal(r.transport, "retry");
	assert_string_equal(r.nexthop, "4.3.5 invalid next hop \"[h]:99999\"");
	r = route(c, "a@upper.test", 0);
	assert_smtp(&r, "[Up.Example]", 25);
	free_conf(c);
}

static void
test_defaults_without_map(void **state)
{
	(void)state;
	struct transport_conf *c = make_conf(NULL);
	/* mydestination -> local, a bare name too */
	struct pt_route r = route(c, "alice@example.com.ar", 0);
	assert_string_equal(r.transport, "local");
	r = route(c, "alice@LOCALHOST", 0);
	assert_string_equal(r.transport, "local");
	r = route(c, "alice", 0);
	assert_string_equal(r.transport, "local");
	/* subdomains of mydestination are not local without a map entry */
	r = route(c, "alice@sub.example.com.ar", 0);
	assert_smtp(&r, "sub.example.com.ar", 25);
	/* relay_domains (and their subdomains) take relay_transport */
	r = route(c, "x@relay.test", 0);
	assert_smtp(&r, "relay.test", 25);
	r = route(c, "x@sub.relay.test", 0);
	assert_smtp(&r, "sub.relay.test", 25);
	/* relayhost applies to every non-local domain */
	strcpy(c->relayhost, "[smarthost.example]:587");
	r = route(c, "x@other.test", 0);
	assert_smtp(&r, "[smarthost.example]", 587);
	r = route(c, "x@relay.test", 0);
	assert_smtp(&r, "[smarthost.example]", 587);
	r = route(c, "alice@example.com.ar", 0);
	assert_string_equal(r.transport, "local");
	/* default_transport = error: the text is the domain (Postfix's reply
	 * "550 5.1.1 <victim@other.test>: Recipient address rejected: other.test") */
	c->relayhost[0] = 0;
	strcpy(c->default_transport, "error");
	r = route(c, "victim@other.test", 0);
	assert_string_equal(r.transport, "error");
	assert_string_equal(r.nexthop, "other.test");
	r = route(c, "x@relay.test", 0);
	assert_smtp(&r, "relay.test", 25);
	strcpy(c->default_transport, "smtp:[gw.test]:2525");
	r = route(c, "victim@other.test", 0);
	assert_smtp(&r, "[gw.test]", 2525);
	strcpy(c->relay_transport, "discard");
	r = route(c, "x@relay.test", 0);
	assert_string_equal(r.transport, "discard");
	free_conf(c);
}

static void
test_map_unavailable_defers(void **state)
{
	(void)state;
	struct transport_conf *c = make_conf(NULL);
	char spec[400];
	snprintf(spec, sizeof(spec), "hash:%s/none", tmpdir);
	pt_map_list_close(c->maps);
	c->maps = one_map(spec);
	struct pt_route r = route(c, "x@other.test", -1);
	assert_string_equal(r.transport, "retry");
	assert_string_equal(r.nexthop, "4.3.0 transport table lookup failure");
	free_conf(c);
}

static void
test_nexthop_parser(void **state)
{
	(void)state;
	char host[64];
	unsigned port;
	static const char *const bad[] = { "", "[unclosed", "[]", "host:", "host:x", "host:0",
		"host:65536", "[h]x", "[h]:", "a b", "h;rm", "[h]:25:26", "[a b]" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(transport_parse_nexthop(bad[i], host, sizeof(host), &port), -1);
	assert_int_equal(transport_parse_nexthop("[mx]:65535", host, sizeof(host), &port), 0);
	assert_string_equal(host, "[mx]");
	assert_int_equal(port, 65535);
	assert_int_equal(transport_parse_nexthop("mx.test", host, sizeof(host), &port), 0);
	assert_int_equal(port, 25);
	/* a host name too long for the buffer is refused, not cut */
	char longname[100];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	assert_int_equal(transport_parse_nexthop(longname, host, sizeof(host), &port), -1);
}

static int
setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_transport.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	static const char text[] =
		"mydestination = example.com.ar, localhost\n"
		"relay_domains = relay.test\n";
	conf = pt_config_parse("test.conf", text, sizeof(text) - 1);
	if (!conf || pt_config_declare_core(conf) != 0 || pt_config_finish(conf) != 0)
		return -1;
	pt_live_conf = conf;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	pt_live_conf = NULL;
	pt_config_free(conf);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_transport_map),
		cmocka_unit_test(test_lookup_order),
		cmocka_unit_test(test_result_forms),
		cmocka_unit_test(test_defaults_without_map),
		cmocka_unit_test(test_map_unavailable_defers),
		cmocka_unit_test(test_nexthop_parser),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
