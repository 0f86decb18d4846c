/* Unit tests for the restriction items that ask the DNS (unknown HELO
 * host, unknown sender/recipient domain, unknown client host names,
 * reject_rbl_client) and for postern.dns in a Lua policy (the call
 * pauses on the lookup and resumes with the answer), against a small
 * DNS responder on loopback. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config_int.h"
#include "dns_int.h"
#include "postern/event.h"
#include "runtime.h"
#include "restrict/restrict.h"

/* ---- the responder ---- */

static const struct {
	const char *name;
	int type;
	const char *data;
} zone[] = {
	{ "example.com", 15, "mail.example.com" },
	{ "mail.example.com", 1, "192.0.2.10" },
	{ "helo.example.com", 1, "192.0.2.20" },
	{ "aaaa-only.example.com", 28, "2001:db8::5" },
	{ "10.2.0.192.in-addr.arpa", 12, "mail.example.com" },
	{ "11.2.0.192.in-addr.arpa", 12, "liar.example.com" },
	{ "liar.example.com", 1, "192.0.2.99" },
	{ "66.2.0.192.rbl.test", 1, "127.0.0.2" },
	{ "66.2.0.192.rbl.test", 16, "listed: see https://rbl.test/" },
	{ "77.2.0.192.rbl.test", 1, "127.0.0.4" },
};
/* Names that exist without records (NODATA), and a name that times out. */
static const char *const empty_names[] = { "nodata.example.com", "rbl.test" };
static const char *const silent_name = "tempfail.example.com";

static int dns_fd = -1;
static unsigned short dns_port;
static pthread_t dns_thread;
static volatile int dns_stop;

static size_t
put_name(unsigned char *p, const char *name)
{
	size_t o = 0;
	while (*name) {
		size_t len = strcspn(name, ".");
		p[o++] = (unsigned char)len;
		memcpy(p + o, name, len);
		o += len;
		name += len + (name[len] == '.');
	}
	p[o++] = 0;
	return o;
}

static void *
dns_serve(void *arg)
{
	(void)arg;
	unsigned char q[512], r[1024];
	while (!dns_stop) {
		struct sockaddr_in from;
		socklen_t flen = sizeof from;
		ssize_t n = recvfrom(dns_fd, q, sizeof q, 0, (struct sockaddr *)&from, &flen);
		if (n < 17)
			continue;
		char name[256];
		size_t off = 12, o = 0;
		while (off < (size_t)n && q[off] && o + 64 < sizeof name) {
			size_t len = q[off];
			if (o)
				name[o++] = '.';
			memcpy(name + o, q + off + 1, len);
			o += len;
			off += len + 1;
		}
		name[o] = '\0';
		for (char *c = name; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c += 32;
		int qtype = q[off + 1] << 8 | q[off + 2];
		size_t qend = off + 5;
		if (strcmp(name, silent_name) == 0)
			continue;
		memcpy(r, q, qend);
		size_t w = qend;
		int an = 0, known = 0;
		for (size_t i = 0; i < sizeof zone / sizeof zone[0]; i++) {
			if (strcmp(zone[i].name, name) != 0)
				continue;
			known = 1;
			if (zone[i].type != qtype)
				continue;
			an++;
			r[w++] = 0xc0;
			r[w++] = 0x0c;
			r[w++] = 0;
			r[w++] = (unsigned char)qtype;
			r[w++] = 0;
			r[w++] = 1;
			memset(r + w, 0, 3);
			r[w + 3] = 60;
			w += 4;
			unsigned char rd[300];
			size_t rl = 0;
			if (qtype == 1) {
				inet_pton(AF_INET, zone[i].data, rd);
				rl = 4;
			} else if (qtype == 28) {
				inet_pton(AF_INET6, zone[i].data, rd);
				rl = 16;
			} else if (qtype == 15) {
				rd[0] = 0;
				rd[1] = 10;
				rl = 2 + put_name(rd + 2, zone[i].data);
			} else if (qtype == 16) {
				rl = strlen(zone[i].data);
				rd[0] = (unsigned char)rl;
				memcpy(rd + 1, zone[i].data, rl);
				rl++;
			} else {
				rl = put_name(rd, zone[i].data);
			}
			r[w++] = (unsigned char)(rl >> 8);
			r[w++] = (unsigned char)rl;
			memcpy(r + w, rd, rl);
			w += rl;
		}
		for (size_t i = 0; i < sizeof empty_names / sizeof empty_names[0]; i++)
			if (strcmp(empty_names[i], name) == 0)
				known = 1;
		r[2] = 0x81;
		r[3] = (unsigned char)(0x80 | (an || known ? 0 : 3));
		r[6] = 0;
		r[7] = (unsigned char)an;
		memset(r + 8, 0, 4);
		sendto(dns_fd, r, w, 0, (struct sockaddr *)&from, flen);
	}
	return NULL;
}

/* ---- evaluation helpers ---- */

static struct pt_config *conf;
static struct pt_loop *loop;
static struct restrict_setup *setup_now;
static char tmpdir[128];

static void
use(const char *lists)
{
	char text[2048];
	snprintf(text, sizeof text,
	         "mydestination = ours.test\nmynetworks = 127.0.0.1/32\n"
	         /* relay control must exist (Postfix's rule); it never decides here */
	         "smtpd_relay_restrictions = permit, reject\n"
	         "smtpd_reject_unlisted_recipient = no\n%s", lists);
	if (setup_now)
		restrict_setup_unref(setup_now);
	pt_live_conf = NULL;
	if (conf)
		pt_config_free(conf);
	conf = pt_config_parse("dns.conf", text, strlen(text));
	assert_non_null(conf);
	assert_int_equal(pt_config_declare_core(conf), 0);
	assert_int_equal(pt_config_declare(conf, "restrict", restrict_params), 0);
	assert_int_equal(pt_config_finish(conf), 0);
	pt_live_conf = conf;
	setup_now = restrict_setup_build(conf, 1);
	assert_non_null(setup_now);
}

struct outcome {
	int called;
	struct pt_verdict v;
	char trace[4096];
};

static void
capture(void *arg, const struct pt_verdict *v)
{
	struct outcome *o = arg;
	o->called++;
	o->v = *v;
	snprintf(o->trace, sizeof o->trace, "%s", v->trace ? v->trace : "");
	pt_loop_stop(loop);
}

static void
give_up(struct pt_loop *l, void *arg)
{
	(void)arg;
	pt_loop_stop(l);
}

static struct outcome
eval(const char *client, const char *client_name, const char *helo, const char *sender,
     const char *rcpt)
{
	struct pt_policy_request q;
	memset(&q, 0, sizeof q);
	q.stage = PT_STAGE_RCPT;
	q.protocol_name = "ESMTP";
	q.client_address = client;
	q.client_name = client_name;
	q.reverse_client_name = client_name;
	q.helo_name = helo;
	q.sender = sender;
	q.recipient = rcpt;
	struct outcome o;
	memset(&o, 0, sizeof o);
	restrict_evaluate(setup_now, loop, &q, capture, &o);
	if (!o.called) {
		struct pt_timer *t = pt_timer_add(loop, 20000, give_up, NULL);
		pt_loop_run(loop);
		if (o.called)
			pt_timer_cancel(loop, t);
	}
	assert_int_equal(o.called, 1);
	return o;
}

#define REPLY(o, text) do { if (strcmp((o).v.reply, (text)) != 0) \
	fail_msg("expected \"%s\", got \"%s\"\n%s", (text), (o).v.reply, (o).trace); } while (0)

static void
test_unknown_domains(void **state)
{
	(void)state;
	use("smtpd_sender_restrictions = reject_unknown_sender_domain\n"
	    "smtpd_recipient_restrictions = reject_unknown_recipient_domain, permit\n");
	struct outcome o = eval("192.0.2.1", NULL, "h", "a@nonexistent.test", "b@example.com");
	REPLY(o, "450 4.1.8 <a@nonexistent.test>: Sender address rejected: Domain not found");
	o = eval("192.0.2.1", NULL, "h", "a@example.com", "b@example.com");
	REPLY(o, "");                                   /* MX found */
	o = eval("192.0.2.1", NULL, "h", "a@aaaa-only.example.com", "b@example.com");
	REPLY(o, "");                                   /* AAAA found */
	o = eval("192.0.2.1", NULL, "h", "a@nodata.example.com", "b@example.com");
	REPLY(o, "450 4.1.8 <a@nodata.example.com>: Sender address rejected: Domain not found");
	o = eval("192.0.2.1", NULL, "h", "a@ours.test", "b@example.com");
	REPLY(o, "");                                   /* final destination: never looked up */
	o = eval("192.0.2.1", NULL, "h", "", "b@example.com");
	REPLY(o, "");
	o = eval("192.0.2.1", NULL, "h", "a@example.com", "b@nonexistent.test");
	REPLY(o, "450 4.1.2 <b@nonexistent.test>: Recipient address rejected: Domain not found");
	/* a DNS timeout: DEFER_IF_PERMIT, so a later permit becomes 450 */
	o = eval("192.0.2.1", NULL, "h", "a@tempfail.example.com", "b@example.com");
	REPLY(o, "450 4.4.3 <a@tempfail.example.com>: Sender address rejected: Domain not found");
	/* ...and a later reject stays a reject */
	use("smtpd_sender_restrictions = reject_unknown_sender_domain\n"
	    "smtpd_recipient_restrictions = reject_unauth_destination\n");
	o = eval("192.0.2.1", NULL, "h", "a@tempfail.example.com", "b@example.com");
	REPLY(o, "554 5.7.1 <b@example.com>: Relay access denied");
}

static void
test_unknown_helo(void **state)
{
	(void)state;
	use("smtpd_helo_restrictions = reject_unknown_helo_hostname\n"
	    "smtpd_recipient_restrictions = permit\n");
	struct outcome o = eval("192.0.2.1", NULL, "nonexistent.test", "", "b@ours.test");
	REPLY(o, "450 4.7.1 <nonexistent.test>: Helo command rejected: Host not found");
	o = eval("192.0.2.1", NULL, "helo.example.com", "", "b@ours.test");
	REPLY(o, "");
	o = eval("192.0.2.1", NULL, "example.com", "", "b@ours.test");
	REPLY(o, "");                                   /* MX is enough */
	o = eval("192.0.2.1", NULL, "[192.0.2.1]", "", "b@ours.test");
	REPLY(o, "");                                   /* literals are not looked up */
}

static void
test_client_hostnames(void **state)
{
	(void)state;
	use("smtpd_client_restrictions = reject_unknown_reverse_client_hostname\n"
	    "smtpd_recipient_restrictions = permit\n");
	struct outcome o = eval("192.0.2.10", NULL, "h", "", "b@ours.test");
	REPLY(o, "");
	o = eval("192.0.2.12", NULL, "h", "", "b@ours.test");
	REPLY(o, "450 4.7.25 Client host rejected: cannot find your reverse hostname, [192.0.2.12]");
	/* what the SMTP server already found is trusted */
	o = eval("192.0.2.12", "unknown", "h", "", "b@ours.test");
	assert_int_equal(o.v.kind, PT_VERDICT_DEFER);
	o = eval("192.0.2.12", "found.example", "h", "", "b@ours.test");
	REPLY(o, "");
	use("smtpd_client_restrictions = reject_unknown_client_hostname\n"
	    "smtpd_recipient_restrictions = permit\n");
	o = eval("192.0.2.10", NULL, "h", "", "b@ours.test");
	REPLY(o, "");                                   /* PTR and A agree */
	o = eval("192.0.2.11", NULL, "h", "", "b@ours.test");
	REPLY(o, "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.11]");
	o = eval("192.0.2.12", NULL, "h", "", "b@ours.test");
	REPLY(o, "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.12]");
}

static void
test_rbl(void **state)
{
	(void)state;
	use("smtpd_client_restrictions = reject_rbl_client rbl.test\n"
	    "smtpd_recipient_restrictions = permit\n");
	struct outcome o = eval("192.0.2.66", NULL, "h", "", "b@ours.test");
	REPLY(o, "554 5.7.1 Service unavailable; Client host [192.0.2.66] blocked using rbl.test; "
	      "listed: see https://rbl.test/");
	assert_string_equal(o.v.rule, "reject_rbl_client rbl.test");
	o = eval("192.0.2.1", NULL, "h", "", "b@ours.test");
	REPLY(o, "");
	o = eval("192.0.2.77", NULL, "h", "", "b@ours.test");
	REPLY(o, "554 5.7.1 Service unavailable; Client host [192.0.2.77] blocked using rbl.test");
	/* =filter: only that answer counts */
	use("smtpd_client_restrictions = reject_rbl_client rbl.test=127.0.0.4\n"
	    "smtpd_recipient_restrictions = permit\n");
	o = eval("192.0.2.66", NULL, "h", "", "b@ours.test");
	REPLY(o, "");
	o = eval("192.0.2.77", NULL, "h", "", "b@ours.test");
	assert_int_equal(o.v.kind, PT_VERDICT_REJECT);
}

static void
test_lua_dns(void **state)
{
	(void)state;
	char path[256];
	snprintf(path, sizeof path, "%s/dns.lua", tmpdir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("return function(a)\n"
	      "  local st, names = postern.dns(a.client_address:match('^(%d+)%.(%d+)%.(%d+)%.(%d+)$') and\n"
	      "    (a.client_address:gsub('^(%d+)%.(%d+)%.(%d+)%.(%d+)$', '%4.%3.%2.%1') .. '.in-addr.arpa'), 'PTR')\n"
	      "  if st ~= 'OK' then return 'REJECT no PTR: ' .. st end\n"
	      "  local st2, mx = postern.dns('example.com', 'MX')\n"
	      "  local ok, st3 = pcall(postern.dns, 'nonexistent.test', 'A')\n"
	      "  return 'REJECT ' .. names[1] .. ' ' .. mx[1] .. ' ' .. tostring(st3)\n"
	      "end\n", f);
	fclose(f);
	char text[512];
	snprintf(text, sizeof text, "smtpd_recipient_restrictions = check_lua_policy %s, permit\n", path);
	use(text);
	struct outcome o = eval("192.0.2.10", NULL, "h", "", "b@ours.test");
	REPLY(o, "554 5.7.1 <b@ours.test>: Recipient address rejected: mail.example.com 10 mail.example.com NXDOMAIN");
	o = eval("192.0.2.12", NULL, "h", "", "b@ours.test");
	REPLY(o, "554 5.7.1 <b@ours.test>: Recipient address rejected: no PTR: NXDOMAIN");
	/* two calls waiting on DNS at once, each resumed with its own answer */
	struct pt_policy_request q;
	memset(&q, 0, sizeof q);
	q.stage = PT_STAGE_RCPT;
	q.recipient = "b@ours.test";
	q.sender = "";
	struct outcome o1, o2;
	memset(&o1, 0, sizeof o1);
	memset(&o2, 0, sizeof o2);
	q.client_address = "192.0.2.10";
	restrict_evaluate(setup_now, loop, &q, capture, &o1);
	q.client_address = "192.0.2.12";
	restrict_evaluate(setup_now, loop, &q, capture, &o2);
	for (int i = 0; i < 2 && !(o1.called && o2.called); i++) {
		struct pt_timer *t = pt_timer_add(loop, 20000, give_up, NULL);
		pt_loop_run(loop);
		pt_timer_cancel(loop, t);
	}
	assert_int_equal(o1.called, 1);
	assert_int_equal(o2.called, 1);
	assert_non_null(strstr(o1.v.reply, "mail.example.com 10"));
	assert_non_null(strstr(o2.v.reply, "no PTR"));
}

static int
group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_restrict_dns.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	dns_fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(dns_fd, (struct sockaddr *)&a, sizeof a) < 0)
		return -1;
	socklen_t alen = sizeof a;
	getsockname(dns_fd, (struct sockaddr *)&a, &alen);
	dns_port = ntohs(a.sin_port);
	struct timeval tv = { 0, 200000 };
	setsockopt(dns_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (pthread_create(&dns_thread, NULL, dns_serve, NULL) != 0)
		return -1;
	char server[64];
	snprintf(server, sizeof server, "127.0.0.1:%u", dns_port);
	const char *servers[] = { server };
	pt_dns_set_servers(servers, 1);
	pt_dns_set_timeout(300, 1);
	loop = pt_loop_new();
	return loop ? 0 : -1;
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
	pt_dns_shutdown();
	pt_loop_free(loop);
	dns_stop = 1;
	pthread_join(dns_thread, NULL);
	close(dns_fd);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_domains),
		cmocka_unit_test(test_unknown_helo),
		cmocka_unit_test(test_client_hostnames),
		cmocka_unit_test(test_rbl),
		cmocka_unit_test(test_lua_dns),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
