/* Unit tests for the SMTP client's next hops: MX ordering (preference,
 * shuffled ties, duplicates, null MX), and resolution through a fake DNS
 * server on 127.0.0.1: MX then A/AAAA in order, no MX -> the domain's own
 * address, [host] skips MX, IP literals, NXDOMAIN bounces, SERVFAIL
 * defers, null MX bounces. */
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

#include "dns_int.h"
#include "transport/relay_int.h"

/* ---------- MX ordering ---------- */

static struct pt_dns_rr
mx(unsigned pref, const char *name)
{
	struct pt_dns_rr r;
	memset(&r, 0, sizeof r);
	r.type = PT_DNS_MX;
	r.pref = pref;
	snprintf(r.text, sizeof r.text, "%s", name);
	return r;
}

static unsigned
seq_rnd(void *arg)
{
	unsigned *s = arg;
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void
test_mx_order(void **state)
{
	(void)state;
	struct pt_dns_rr rr[6] = { mx(30, "c.test"), mx(10, "a.test"), mx(20, "b.test"), mx(10, "A.TEST"),
		mx(5, "z.test"), mx(0, "x") };
	rr[5].type = PT_DNS_A;        /* other records are ignored */
	struct relay_mx out[8];
	unsigned seed = 1;
	long n = relay_mx_order(rr, 6, out, 8, seq_rnd, &seed);
	assert_int_equal(n, 4);       /* a.test twice (case-blind) counts once */
	assert_string_equal(out[0].name, "z.test");
	assert_string_equal(out[1].name, "a.test");
	assert_string_equal(out[2].name, "b.test");
	assert_string_equal(out[3].name, "c.test");
	/* cap */
	n = relay_mx_order(rr, 6, out, 2, seq_rnd, &seed);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].pref <= out[1].pref, 1);
}

static void
test_mx_ties_shuffled(void **state)
{
	(void)state;
	struct pt_dns_rr rr[4] = { mx(10, "one.test"), mx(10, "two.test"), mx(10, "three.test"), mx(50, "last.test") };
	int first_seen[3] = { 0 };
	for (unsigned seed = 1; seed < 200; seed++) {
		unsigned s = seed;
		struct relay_mx out[4];
		assert_int_equal(relay_mx_order(rr, 4, out, 4, seq_rnd, &s), 4);
		assert_string_equal(out[3].name, "last.test");
		for (int i = 0; i < 3; i++)
			if (strcmp(out[0].name, rr[i].text) == 0)
				first_seen[i] = 1;
	}
	/* Every equal-preference exchange gets to be first sometimes. */
	assert_true(first_seen[0] && first_seen[1] && first_seen[2]);
}

static void
test_null_mx(void **state)
{
	(void)state;
	struct pt_dns_rr rr[2] = { mx(0, ""), mx(10, "real.test") };
	struct relay_mx out[4];
	assert_int_equal(relay_mx_order(rr, 1, out, 4, NULL, NULL), -1);
	rr[0] = mx(0, ".");
	assert_int_equal(relay_mx_order(rr, 1, out, 4, NULL, NULL), -1);
	/* "." beside real exchanges is not a null MX: it is skipped. */
	assert_int_equal(relay_mx_order(rr, 2, out, 4, NULL, NULL), 1);
	assert_string_equal(out[0].name, "real.test");
	assert_int_equal(relay_mx_order(rr, 0, out, 4, NULL, NULL), 0);
}

/* ---------- the fake DNS server ---------- */

static int srv_fd = -1, srv_stop[2];
static unsigned srv_port;
static pthread_t srv_thread;

static size_t
put_name(unsigned char *o, const char *name)
{
	size_t w = 0;
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		o[w++] = (unsigned char)l;
		memcpy(o + w, name, l);
		w += l;
		name += l + (dot ? 1 : 0);
	}
	o[w++] = 0;
	return w;
}

static size_t
put_rr(unsigned char *o, unsigned type, const unsigned char *rd, size_t rdlen)
{
	unsigned char hdr[12] = { 0xC0, 12, (unsigned char)(type >> 8), (unsigned char)type, 0, 1, 0, 0, 1, 0,
		(unsigned char)(rdlen >> 8), (unsigned char)rdlen };
	memcpy(o, hdr, 12);
	memcpy(o + 12, rd, rdlen);
	return 12 + rdlen;
}

static size_t
put_mx(unsigned char *o, unsigned pref, const char *name)
{
	unsigned char rd[300];
	rd[0] = (unsigned char)(pref >> 8);
	rd[1] = (unsigned char)pref;
	return put_rr(o, 15, rd, 2 + put_name(rd + 2, name));
}

static size_t
put_addr(unsigned char *o, const char *ip)
{
	unsigned char rd[16];
	if (inet_pton(AF_INET, ip, rd) == 1)
		return put_rr(o, 1, rd, 4);
	inet_pton(AF_INET6, ip, rd);
	return put_rr(o, 28, rd, 16);
}

static size_t
answer(const unsigned char *q, size_t qlen, unsigned char *r)
{
	char name[256] = "";
	size_t o = 12, w = 0;
	while (o < qlen && q[o] && w + q[o] + 2 < sizeof name) {
		if (w)
			name[w++] = '.';
		memcpy(name + w, q + o + 1, q[o]);
		w += q[o];
		o += 1 + q[o];
	}
	name[w] = 0;
	for (char *p = name; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	size_t qend = o + 5;
	unsigned qt = (unsigned)q[o + 1] << 8 | q[o + 2];
	memcpy(r, q, qend);
	r[2] = 0x81;
	r[3] = 0x80;
	size_t len = qend;
	unsigned an = 0;
#define IS(n, t) (strcmp(name, n) == 0 && qt == (t))
	if (IS("mx.test", 15)) {
		len += put_mx(r + len, 20, "mx2.test");
		len += put_mx(r + len, 10, "mx1.test");
		an = 2;
	} else if (IS("mx1.test", 1)) {
		len += put_addr(r + len, "192.0.2.1");
		an = 1;
	} else if (IS("mx2.test", 1)) {
		len += put_addr(r + len, "192.0.2.2");
		an = 1;
	} else if (IS("mx2.test", 28)) {
		len += put_addr(r + len, "2001:db8::2");
		an = 1;
	} else if (IS("mx.test", 1)) {
		len += put_addr(r + len, "192.0.2.9");
		an = 1;
	} else if (IS("nomx.test", 1)) {
		len += put_addr(r + len, "192.0.2.5");
		an = 1;
	} else if (IS("null.test", 15)) {
		len += put_mx(r + len, 0, "");
		an = 1;
	} else if (IS("deadmx.test", 15)) {
		len += put_mx(r + len, 10, "nx.test");
		an = 1;
	} else if (strcmp(name, "nx.test") == 0) {
		r[3] = 0x83;
	} else if (strcmp(name, "fail.test") == 0) {
		r[3] = 0x82;
	}
#undef IS
	r[6] = (unsigned char)(an >> 8);
	r[7] = (unsigned char)an;
	return len;
}

static void *
server_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd pf[2] = { { srv_fd, POLLIN, 0 }, { srv_stop[0], POLLIN, 0 } };
		if (poll(pf, 2, -1) < 0)
			continue;
		if (pf[1].revents)
			return NULL;
		unsigned char q[512], r[2048];
		struct sockaddr_storage from;
		socklen_t fl = sizeof from;
		ssize_t n = recvfrom(srv_fd, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
		if (n < 17)
			continue;
		size_t len = answer(q, (size_t)n, r);
		sendto(srv_fd, r, len, 0, (struct sockaddr *)&from, fl);
	}
}

static int
setup(void **state)
{
	(void)state;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	srv_fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_int_equal(bind(srv_fd, (struct sockaddr *)&a, sizeof a), 0);
	getsockname(srv_fd, (struct sockaddr *)&a, &al);
	srv_port = ntohs(a.sin_port);
	assert_int_equal(pipe(srv_stop), 0);
	pthread_create(&srv_thread, NULL, server_main, NULL);
	char s[64];
	snprintf(s, sizeof s, "127.0.0.1:%u", srv_port);
	const char *servers[1] = { s };
	assert_int_equal(pt_dns_set_servers(servers, 1), 0);
	pt_dns_set_timeout(500, 1);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	assert_int_equal(write(srv_stop[1], "x", 1), 1);
	pthread_join(srv_thread, NULL);
	close(srv_fd);
	close(srv_stop[0]);
	close(srv_stop[1]);
	pt_dns_shutdown();
	return 0;
}

/* ---------- resolution ---------- */

struct result {
	struct pt_loop *loop;
	int called;
	size_t n;
	struct relay_addr v[RELAY_MAX_ADDRS];
	struct pt_status err;
};

static void
on_resolved(void *arg, const struct relay_addr *v, size_t n, const struct pt_status *err)
{
	struct result *r = arg;
	r->called++;
	r->n = n;
	if (n)
		memcpy(r->v, v, n * sizeof *v);
	r->err = *err;
	pt_loop_stop(r->loop);
}

static struct result *
resolve(const char *nexthop, unsigned port)
{
	static struct result r;
	memset(&r, 0, sizeof r);
	r.loop = pt_loop_new();
	assert_int_equal(relay_resolve(r.loop, nexthop, port, on_resolved, &r), 0);
	assert_int_equal(r.called, 0);   /* never before return */
	pt_loop_run(r.loop);
	assert_int_equal(r.called, 1);
	pt_loop_free(r.loop);
	return &r;
}

static unsigned
port_of(const struct relay_addr *a)
{
	if (a->sa.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
}

static void
test_resolve_mx(void **state)
{
	(void)state;
	struct result *r = resolve("mx.test", 25);
	assert_int_equal(r->n, 3);
	assert_string_equal(r->v[0].host, "mx1.test");
	assert_string_equal(r->v[0].ip, "192.0.2.1");
	assert_string_equal(r->v[1].host, "mx2.test");
	assert_string_equal(r->v[1].ip, "192.0.2.2");
	assert_string_equal(r->v[2].ip, "2001:db8::2");
	assert_int_equal(r->v[2].sa.ss_family, AF_INET6);
	assert_int_equal(port_of(&r->v[0]), 25);
}

static void
test_resolve_bracket_skips_mx(void **state)
{
	(void)state;
	struct result *r = resolve("[mx.test]", 2525);
	assert_int_equal(r->n, 1);
	assert_string_equal(r->v[0].host, "mx.test");
	assert_string_equal(r->v[0].ip, "192.0.2.9");
	assert_int_equal(port_of(&r->v[0]), 2525);
}

static void
test_resolve_no_mx_uses_domain(void **state)
{
	(void)state;
	struct result *r = resolve("nomx.test", 25);
	assert_int_equal(r->n, 1);
	assert_string_equal(r->v[0].host, "nomx.test");
	assert_string_equal(r->v[0].ip, "192.0.2.5");
}

static void
test_resolve_literals(void **state)
{
	(void)state;
	struct result *r = resolve("[127.0.0.1]", 10025);
	assert_int_equal(r->n, 1);
	assert_string_equal(r->v[0].host, "127.0.0.1");
	assert_string_equal(r->v[0].ip, "127.0.0.1");
	assert_int_equal(port_of(&r->v[0]), 10025);
	r = resolve("[IPv6:::1]", 25);
	assert_int_equal(r->n, 1);
	assert_string_equal(r->v[0].ip, "::1");
	r = resolve("192.0.2.77", 25);
	assert_int_equal(r->n, 1);
	assert_string_equal(r->v[0].ip, "192.0.2.77");
	struct pt_loop *loop = pt_loop_new();
	assert_int_equal(relay_resolve(loop, "[unclosed", 25, on_resolved, NULL), -1);
	pt_loop_free(loop);
}

static void
test_resolve_failures(void **state)
{
	(void)state;
	struct result *r = resolve("nx.test", 25);
	assert_int_equal(r->n, 0);
	assert_int_equal(r->err.code / 100, 5);
	assert_string_equal(r->err.dsn, "5.4.4");
	assert_non_null(strstr(r->err.text, "Host or domain name not found. Name service error for name=nx.test type=MX"));
	r = resolve("fail.test", 25);
	assert_int_equal(r->err.code / 100, 4);
	assert_string_equal(r->err.dsn, "4.4.3");
	r = resolve("null.test", 25);
	assert_int_equal(r->err.code / 100, 5);
	assert_string_equal(r->err.dsn, "5.1.10");
	assert_non_null(strstr(r->err.text, "nullMX"));
	/* The MX exists, its exchange does not. */
	r = resolve("deadmx.test", 25);
	assert_int_equal(r->n, 0);
	assert_int_equal(r->err.code / 100, 5);
	assert_non_null(strstr(r->err.text, "name=nx.test"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mx_order),
		cmocka_unit_test(test_mx_ties_shuffled),
		cmocka_unit_test(test_null_mx),
		cmocka_unit_test(test_resolve_mx),
		cmocka_unit_test(test_resolve_bracket_skips_mx),
		cmocka_unit_test(test_resolve_no_mx_uses_domain),
		cmocka_unit_test(test_resolve_literals),
		cmocka_unit_test(test_resolve_failures),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
