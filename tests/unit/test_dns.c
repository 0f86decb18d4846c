/* Unit tests for the resolver against a fake DNS server on 127.0.0.1 (UDP
 * and TCP, in a thread): A, AAAA, MX, PTR, TXT, CNAME chains, NXDOMAIN,
 * NODATA, SERVFAIL, retries, forged ids, truncation -> TCP, dns_servers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <poll.h>
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

/* ---- the fake server ---- */

static int srv_udp = -1, srv_tcp = -1, srv_stop[2];
static unsigned srv_port;
static pthread_t srv_thread;
static int drop1_seen, udp_queries;

static size_t
put_name(unsigned char *o, const char *name)
{
	size_t w = 0;
	const char *p = name;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		o[w++] = (unsigned char)l;
		memcpy(o + w, p, l);
		w += l;
		p += l + (dot ? 1 : 0);
	}
	o[w++] = 0;
	return w;
}

/* Append one RR: owner NULL = pointer to the question name. */
static size_t
put_rr(unsigned char *o, const char *owner, unsigned type, const unsigned char *rd, size_t rdlen)
{
	size_t w = 0;
	if (owner) {
		w = put_name(o, owner);
	} else {
		o[w++] = 0xC0;
		o[w++] = 12;
	}
	unsigned char fixed[10] = { (unsigned char)(type >> 8), (unsigned char)type, 0, 1, 0, 0, 1, 0,
		(unsigned char)(rdlen >> 8), (unsigned char)rdlen };
	memcpy(o + w, fixed, 10);
	w += 10;
	memcpy(o + w, rd, rdlen);
	return w + rdlen;
}

/* Build the reply to query q; 0 = send nothing. */
static size_t
answer(const unsigned char *q, size_t qlen, int tcp, unsigned char *r, int *forge_first)
{
	char name[256] = "";
	size_t o = 12, w = 0;
	while (o < qlen && q[o]) {
		if (w)
			name[w++] = '.';
		memcpy(name + w, q + o + 1, q[o]);
		w += q[o];
		o += 1 + q[o];
	}
	name[w] = 0;
	for (char *p = name; *p; p++)
		*p = (char)tolower((unsigned char)*p);    /* names are case-blind */
	size_t qend = o + 5;
	unsigned qtype = (unsigned)q[o + 1] << 8 | q[o + 2];
	memcpy(r, q, qend);
	r[2] = 0x81;                  /* QR, RD */
	r[3] = 0x80;                  /* RA, NOERROR */
	size_t len = qend;
	unsigned an = 0;
	unsigned char rd[300];
	*forge_first = 0;
	if (!strcmp(name, "a.test") && qtype == 1) {
		inet_pton(AF_INET, "192.0.2.1", rd);
		len += put_rr(r + len, NULL, 1, rd, 4);
		inet_pton(AF_INET, "192.0.2.2", rd);
		len += put_rr(r + len, NULL, 1, rd, 4);
		an = 2;
	} else if (!strcmp(name, "v6.test") && qtype == 28) {
		inet_pton(AF_INET6, "2001:db8::1", rd);
		len += put_rr(r + len, NULL, 28, rd, 16);
		an = 1;
	} else if (!strcmp(name, "mx.test") && qtype == 15) {
		rd[0] = 0;
		rd[1] = 20;
		len += put_rr(r + len, NULL, 15, rd, 2 + put_name(rd + 2, "mx2.test"));
		rd[1] = 10;
		len += put_rr(r + len, NULL, 15, rd, 2 + put_name(rd + 2, "mx1.test"));
		an = 2;
	} else if (!strcmp(name, "cname.test") && (qtype == 1 || qtype == 5)) {
		len += put_rr(r + len, NULL, 5, rd, put_name(rd, "real.test"));
		inet_pton(AF_INET, "6.6.6.6", rd);
		len += put_rr(r + len, "other.test", 1, rd, 4);
		inet_pton(AF_INET, "192.0.2.9", rd);
		len += put_rr(r + len, "real.test", 1, rd, 4);
		an = 3;
	} else if (!strcmp(name, "1.2.0.192.in-addr.arpa") && qtype == 12) {
		len += put_rr(r + len, NULL, 12, rd, put_name(rd, "host.test"));
		an = 1;
	} else if (!strcmp(name, "nx.test")) {
		r[3] = 0x83;
	} else if (!strcmp(name, "fail.test")) {
		r[3] = 0x82;
	} else if (!strcmp(name, "big.test") && qtype == 16) {
		if (!tcp) {
			r[2] |= 0x02;     /* TC: ask again over TCP */
		} else {
			memcpy(rd, "\x06hello \x05world", 13);
			len += put_rr(r + len, NULL, 16, rd, 13);
			an = 1;
		}
	} else if (!strcmp(name, "spoof.test") && qtype == 1) {
		inet_pton(AF_INET, "192.0.2.7", rd);
		len += put_rr(r + len, NULL, 1, rd, 4);
		an = 1;
		*forge_first = 1;
	} else if (!strcmp(name, "drop1.test") && qtype == 1) {
		if (drop1_seen++ == 0)
			return 0;
		inet_pton(AF_INET, "192.0.2.8", rd);
		len += put_rr(r + len, NULL, 1, rd, 4);
		an = 1;
	} else if (!strcmp(name, "silent.test")) {
		return 0;
	}
	r[6] = (unsigned char)(an >> 8);
	r[7] = (unsigned char)an;
	return len;
}

static void *
server_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd pf[3] = { { srv_udp, POLLIN, 0 }, { srv_tcp, POLLIN, 0 }, { srv_stop[0], POLLIN, 0 } };
		if (poll(pf, 3, -1) < 0)
			continue;
		if (pf[2].revents)
			return NULL;
		unsigned char q[512], r[2048];
		int forge;
		if (pf[0].revents) {
			struct sockaddr_storage from;
			socklen_t fl = sizeof(from);
			ssize_t n = recvfrom(srv_udp, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
			if (n < 12)
				continue;
			udp_queries++;
			size_t len = answer(q, (size_t)n, 0, r, &forge);
			if (!len)
				continue;
			if (forge) {
				unsigned char f[2048];
				memcpy(f, r, len);
				f[1] ^= 0x5a;     /* wrong id */
				sendto(srv_udp, f, len, 0, (struct sockaddr *)&from, fl);
			}
			sendto(srv_udp, r, len, 0, (struct sockaddr *)&from, fl);
		}
		if (pf[1].revents) {
			int c = accept(srv_tcp, NULL, NULL);
			if (c < 0)
				continue;
			unsigned char lenb[2];
			if (recv(c, lenb, 2, MSG_WAITALL) == 2) {
				size_t ql = (size_t)lenb[0] << 8 | lenb[1];
				if (ql <= sizeof(q) && recv(c, q, ql, MSG_WAITALL) == (ssize_t)ql) {
					size_t len = answer(q, ql, 1, r + 2, &forge);
					r[0] = (unsigned char)(len >> 8);
					r[1] = (unsigned char)len;
					/* dribble it out in two parts: partial reads must work */
					send(c, r, 3, MSG_NOSIGNAL);
					usleep(20000);
					send(c, r + 3, len - 1, MSG_NOSIGNAL);
				}
			}
			close(c);
		}
	}
}

/* ---- running queries ---- */

struct result {
	int done, returned_first;
	int *returned;
	struct pt_dns_answer ans;
	struct pt_dns_rr rr[8];
	struct pt_loop *loop;
	int *pending;
};

static void
on_answer(void *arg, const struct pt_dns_answer *a)
{
	struct result *r = arg;
	r->done = 1;
	r->returned_first = *r->returned;
	r->ans = *a;
	r->ans.rr = r->rr;
	for (size_t i = 0; i < a->n && i < 8; i++)
		r->rr[i] = a->rr[i];
	if (--*r->pending == 0)
		pt_loop_stop(r->loop);
}

static void
on_guard(struct pt_loop *loop, void *arg)
{
	(void)arg;
	pt_loop_stop(loop);
}

/* Resolve several names at once on one loop. */
static void
resolve_many(const char *const *names, const enum pt_dns_type *types, struct result *res, int n)
{
	struct pt_loop *loop = pt_loop_new();
	assert_non_null(loop);
	int pending = n, returned = 0;
	for (int i = 0; i < n; i++) {
		memset(&res[i], 0, sizeof(res[i]));
		res[i].loop = loop;
		res[i].pending = &pending;
		res[i].returned = &returned;
		assert_int_equal(pt_dns_query(loop, names[i], types[i], on_answer, &res[i]), 0);
	}
	returned = 1;
	struct pt_timer *guard = pt_timer_add(loop, 10000, on_guard, NULL);
	pt_loop_run(loop);
	if (pending == 0)
		pt_timer_cancel(loop, guard);
	pt_dns_shutdown();
	pt_loop_free(loop);
	for (int i = 0; i < n; i++) {
		assert_true(res[i].done);
		assert_true(res[i].returned_first);   /* never called back early */
	}
}

static struct result
resolve(const char *name, enum pt_dns_type type)
{
	struct result r;
	resolve_many(&name, &type, &r, 1);
	return r;
}

static void
use_fake_server(void)
{
	char s[64];
	snprintf(s, sizeof(s), "127.0.0.1:%u", srv_port);
	const char *v[] = { s };
	assert_int_equal(pt_dns_set_servers(v, 1), 0);
	pt_dns_set_timeout(300, 2);
}

static void
test_record_types(void **state)
{
	(void)state;
	use_fake_server();
	struct result r = resolve("a.test", PT_DNS_A);
	assert_int_equal(r.ans.status, PT_DNS_OK);
	assert_int_equal(r.ans.n, 2);
	assert_string_equal(r.rr[0].text, "192.0.2.1");
	assert_string_equal(r.rr[1].text, "192.0.2.2");
	r = resolve("V6.Test.", PT_DNS_AAAA);
	assert_int_equal(r.ans.status, PT_DNS_OK);
	assert_string_equal(r.rr[0].text, "2001:db8::1");
	/* MX sorted by preference */
	r = resolve("mx.test", PT_DNS_MX);
	assert_int_equal(r.ans.n, 2);
	assert_int_equal(r.rr[0].pref, 10);
	assert_string_equal(r.rr[0].text, "mx1.test");
	assert_int_equal(r.rr[1].pref, 20);
	assert_string_equal(r.rr[1].text, "mx2.test");
	char rev[128];
	assert_int_equal(pt_dns_reverse_name("192.0.2.1", rev, sizeof(rev)), 0);
	r = resolve(rev, PT_DNS_PTR);
	assert_int_equal(r.ans.status, PT_DNS_OK);
	assert_string_equal(r.rr[0].text, "host.test");
	/* the chain is followed; records off the chain are ignored */
	r = resolve("cname.test", PT_DNS_A);
	assert_int_equal(r.ans.n, 1);
	assert_string_equal(r.rr[0].text, "192.0.2.9");
	r = resolve("cname.test", PT_DNS_CNAME);
	assert_int_equal(r.ans.n, 1);
	assert_string_equal(r.rr[0].text, "real.test");
}

static void
test_negative_answers(void **state)
{
	(void)state;
	use_fake_server();
	struct result r = resolve("nx.test", PT_DNS_A);
	assert_int_equal(r.ans.status, PT_DNS_NXDOMAIN);
	assert_int_equal(r.ans.n, 0);
	r = resolve("nodata.test", PT_DNS_MX);
	assert_int_equal(r.ans.status, PT_DNS_NODATA);
	r = resolve("a.test", PT_DNS_MX);
	assert_int_equal(r.ans.status, PT_DNS_NODATA);
	r = resolve("fail.test", PT_DNS_A);
	assert_int_equal(r.ans.status, PT_DNS_TEMPFAIL);
	r = resolve("silent.test", PT_DNS_A);
	assert_int_equal(r.ans.status, PT_DNS_TEMPFAIL);
}

static void
test_retry_forgery_and_tcp(void **state)
{
	(void)state;
	use_fake_server();
	drop1_seen = 0;
	struct result r = resolve("drop1.test", PT_DNS_A);
	assert_int_equal(r.ans.status, PT_DNS_OK);
	assert_string_equal(r.rr[0].text, "192.0.2.8");
	assert_int_equal(drop1_seen, 2);
	/* a reply with the wrong id is ignored, the real one taken */
	r = resolve("spoof.test", PT_DNS_A);
	assert_int_equal(r.ans.n, 1);
	assert_string_equal(r.rr[0].text, "192.0.2.7");
	/* TC=1 over UDP: asked again over TCP, read in pieces */
	r = resolve("big.test", PT_DNS_TXT);
	assert_int_equal(r.ans.status, PT_DNS_OK);
	assert_string_equal(r.rr[0].text, "hello world");
}

static void
test_concurrent_and_failover(void **state)
{
	(void)state;
	/* first server is dead (nothing listens): the second answers */
	char good[64];
	snprintf(good, sizeof(good), "[::ffff:127.0.0.1]:%u", srv_port);
	int dead = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	bind(dead, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(dead, (struct sockaddr *)&sa, &sl);
	char bad[64];
	snprintf(bad, sizeof(bad), "127.0.0.1:%u", ntohs(sa.sin_port));
	close(dead);
	const char *v[] = { bad, good };
	assert_int_equal(pt_dns_set_servers(v, 2), 0);
	pt_dns_set_timeout(300, 2);
	const char *names[] = { "a.test", "mx.test", "nx.test", "v6.test" };
	enum pt_dns_type types[] = { PT_DNS_A, PT_DNS_MX, PT_DNS_A, PT_DNS_AAAA };
	struct result res[4];
	resolve_many(names, types, res, 4);
	assert_int_equal(res[0].ans.n, 2);
	assert_string_equal(res[1].rr[0].text, "mx1.test");
	assert_int_equal(res[2].ans.status, PT_DNS_NXDOMAIN);
	assert_string_equal(res[3].rr[0].text, "2001:db8::1");
}

static void
test_dns_servers_parameter(void **state)
{
	(void)state;
	char text[128];
	int n = snprintf(text, sizeof(text), "dns_servers = 127.0.0.1:%u\n", srv_port);
	struct pt_config *c = pt_config_parse("test.conf", text, (size_t)n);
	assert_non_null(c);
	assert_int_equal(pt_config_declare_core(c), 0);
	assert_int_equal(pt_config_finish(c), 0);
	pt_live_conf = c;
	assert_int_equal(pt_dns_set_servers(NULL, 0), 0);
	struct result r = resolve("a.test", PT_DNS_A);
	assert_int_equal(r.ans.status, PT_DNS_OK);
	pt_live_conf = NULL;
	pt_config_free(c);
	const char *badv[] = { "not-an-address" };
	assert_int_equal(pt_dns_set_servers(badv, 1), -1);
	const char *badp[] = { "127.0.0.1:0" };
	assert_int_equal(pt_dns_set_servers(badp, 1), -1);
}

static void
test_bad_names_refused(void **state)
{
	(void)state;
	struct pt_loop *loop = pt_loop_new();
	char longlabel[80], longname[300];
	memset(longlabel, 'a', 64);
	strcpy(longlabel + 64, ".test");
	for (int i = 0; i < 290; i += 2)
		memcpy(longname + i, "a.", 2);
	strcpy(longname + 290, "test");
	const char *bad[] = { "", ".", "a..b", "a b.test", longlabel, longname, "a\nb" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(pt_dns_query(loop, bad[i], PT_DNS_A, on_answer, NULL), -1);
	pt_loop_free(loop);
}

static void
test_reverse_names(void **state)
{
	(void)state;
	char out[128];
	assert_int_equal(pt_dns_reverse_name("127.0.0.2", out, sizeof(out)), 0);
	assert_string_equal(out, "2.0.0.127.in-addr.arpa");
	assert_int_equal(pt_dns_reverse_name("2001:db8::1", out, sizeof(out)), 0);
	assert_string_equal(out, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
	assert_int_equal(pt_dns_reverse_name("nope", out, sizeof(out)), -1);
	assert_int_equal(pt_dns_reverse_name("127.0.0.2", out, 10), -1);
}

/* Every truncation of a valid compressed reply parses or is refused, and
 * pointer loops are refused. */
static void
test_parser_truncation_and_loops(void **state)
{
	(void)state;
	unsigned char q[512], r[2048];
	int ql = pt_dns_build_query(q, sizeof(q), 0x1234, "mx.test", PT_DNS_MX);
	assert_true(ql > 0);
	int forge;
	size_t len = answer(q, (size_t)ql, 0, r, &forge);
	struct pt_dns_answer a;
	int rc, tc;
	assert_int_equal(pt_dns_parse_response(r, len, "mx.test", PT_DNS_MX, &a, &rc, &tc), 0);
	assert_int_equal(a.n, 2);
	pt_dns_answer_free(&a);
	for (size_t cut = 0; cut < len; cut++) {
		if (pt_dns_parse_response(r, cut, "mx.test", PT_DNS_MX, &a, &rc, &tc) == 0) {
			assert_true(a.n < 2);
			pt_dns_answer_free(&a);
		}
	}
	/* the wrong question is not an answer */
	assert_int_equal(pt_dns_parse_response(r, len, "other.test", PT_DNS_MX, &a, &rc, &tc), -1);
	assert_int_equal(pt_dns_parse_response(r, len, "mx.test", PT_DNS_A, &a, &rc, &tc), -1);
	/* a name that points at itself */
	unsigned char loop[64];
	memcpy(loop, r, 12);
	loop[4] = 0; loop[5] = 1; loop[6] = 0; loop[7] = 0;
	loop[12] = 0xC0;
	loop[13] = 12;
	memset(loop + 14, 0, 4);
	assert_int_equal(pt_dns_parse_response(loop, 18, NULL, PT_DNS_A, &a, &rc, &tc), -1);
	/* a forward pointer */
	loop[13] = 16;
	assert_int_equal(pt_dns_parse_response(loop, 18, NULL, PT_DNS_A, &a, &rc, &tc), -1);
}

static int
setup(void **state)
{
	(void)state;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	srv_tcp = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(srv_tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(srv_tcp, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(srv_tcp, 16) < 0)
		return -1;
	getsockname(srv_tcp, (struct sockaddr *)&sa, &sl);
	srv_port = ntohs(sa.sin_port);
	srv_udp = socket(AF_INET, SOCK_DGRAM, 0);
	if (bind(srv_udp, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	if (pipe(srv_stop) < 0)
		return -1;
	return pthread_create(&srv_thread, NULL, server_main, NULL);
}

static int
teardown(void **state)
{
	(void)state;
	if (write(srv_stop[1], "x", 1) != 1)
		return -1;
	pthread_join(srv_thread, NULL);
	close(srv_udp);
	close(srv_tcp);
	close(srv_stop[0]);
	close(srv_stop[1]);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_types),
		cmocka_unit_test(test_negative_answers),
		cmocka_unit_test(test_retry_forgery_and_tcp),
		cmocka_unit_test(test_concurrent_and_failover),
		cmocka_unit_test(test_dns_servers_parameter),
		cmocka_unit_test(test_bad_names_refused),
		cmocka_unit_test(test_reverse_names),
		cmocka_unit_test(test_parser_truncation_and_loops),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
