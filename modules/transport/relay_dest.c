/* Next-hop resolution for the SMTP client: MX records by preference (equal
 * ones shuffled), then each exchange's A and AAAA records; "[host]" skips
 * the MX step; a domain without MX records is its own exchange (RFC 5321
 * 5.1). Lookups go through the non-blocking resolver. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/log.h"
#include "relay_int.h"

/* Exchanges whose addresses are looked up (Postfix's smtp_mx_address_limit
 * caps addresses; this caps the lookups). */
#define RELAY_MAX_MX 5

static unsigned
default_rnd(void *arg)
{
	(void)arg;
	return (unsigned)random();
}

static int
mx_cmp(const void *a, const void *b)
{
	const struct relay_mx *x = a, *y = b;
	return x->pref < y->pref ? -1 : x->pref > y->pref;
}

long
relay_mx_order(const struct pt_dns_rr *rr, size_t n, struct relay_mx *out, size_t cap,
               unsigned (*rnd)(void *arg), void *arg)
{
	size_t k = 0, nmx = 0;
	int null_mx = 0;
	for (size_t i = 0; i < n; i++) {
		if (rr[i].type != PT_DNS_MX)
			continue;
		nmx++;
		const char *name = rr[i].text;
		if (!name[0] || strcmp(name, ".") == 0) {
			null_mx = 1;
			continue;
		}
		int dup = 0;
		for (size_t j = 0; j < k; j++)
			if (strcasecmp(out[j].name, name) == 0) {
				/* The same exchange twice: keep its best preference. */
				if (rr[i].pref < out[j].pref)
					out[j].pref = rr[i].pref;
				dup = 1;
			}
		if (dup || k == cap)
			continue;
		snprintf(out[k].name, sizeof out[k].name, "%s", name);
		out[k].pref = rr[i].pref;
		k++;
	}
	if (null_mx && nmx == 1)
		return -1;
	if (!rnd)
		rnd = default_rnd;
	/* Shuffle first (Fisher-Yates), then a stable sort by preference keeps
	 * equal-preference exchanges in that random order. */
	for (size_t i = k; i > 1; i--) {
		size_t j = rnd(arg) % i;
		struct relay_mx t = out[i - 1];
		out[i - 1] = out[j];
		out[j] = t;
	}
	for (size_t i = 1; i < k; i++) {
		struct relay_mx t = out[i];
		size_t j = i;
		while (j > 0 && mx_cmp(&out[j - 1], &t) > 0) {
			out[j] = out[j - 1];
			j--;
		}
		out[j] = t;
	}
	return (long)k;
}

/* ---- asynchronous resolution ---- */

struct host_lookup {
	char name[256];
	struct relay_addr a4[RELAY_MAX_ADDRS], a6[RELAY_MAX_ADDRS];
	size_t n4, n6;
	enum pt_dns_status st4, st6;
	int pending;
};

struct resolve {
	struct pt_loop *loop;
	char name[256];               /* without brackets */
	unsigned port;
	relay_resolve_fn *done;
	void *arg;
	struct host_lookup host[RELAY_MAX_MX];
	size_t nhost;
	int pending;                  /* address queries out */
	int mx_tempfail;
	struct relay_addr lit;        /* IP literal */
};

static void
set_sa(struct relay_addr *a, const char *ip, unsigned port)
{
	memset(&a->sa, 0, sizeof a->sa);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&a->sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->sa;
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		a->salen = sizeof *s4;
	} else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		a->salen = sizeof *s6;
	} else {
		a->salen = 0;
	}
	snprintf(a->ip, sizeof a->ip, "%s", ip);
}

/* "1.2.3.4", "::1" or "IPv6:::1" (address literal syntax). */
static int
ip_literal(const char *s, char *ip, size_t iplen)
{
	unsigned char b[16];
	if (strncasecmp(s, "IPv6:", 5) == 0)
		s += 5;
	if (inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1) {
		snprintf(ip, iplen, "%s", s);
		return 1;
	}
	return 0;
}

static void
finish(struct resolve *r)
{
	struct relay_addr v[RELAY_MAX_ADDRS];
	size_t n = 0;
	int temp = r->mx_tempfail, nx = 0;
	/* IPv4 first: loopback and most next hops have it; IPv6 follows. */
	for (size_t h = 0; h < r->nhost; h++) {
		struct host_lookup *hl = &r->host[h];
		for (size_t i = 0; i < hl->n4 && n < RELAY_MAX_ADDRS; i++)
			v[n++] = hl->a4[i];
		for (size_t i = 0; i < hl->n6 && n < RELAY_MAX_ADDRS; i++)
			v[n++] = hl->a6[i];
		if (hl->st4 == PT_DNS_TEMPFAIL || hl->st6 == PT_DNS_TEMPFAIL)
			temp = 1;
		if (hl->st4 == PT_DNS_NXDOMAIN)
			nx = 1;
	}
	struct pt_status err;
	memset(&err, 0, sizeof err);
	if (n == 0) {
		const char *nm = r->nhost ? r->host[0].name : r->name;
		if (temp)
			pt_status_set(&err, 450, "4.4.3", "Host or domain name not found. Name service error for "
			              "name=%s type=A: Host not found, try again", nm);
		else if (nx)
			pt_status_set(&err, 550, "5.4.4", "Host or domain name not found. Name service error for "
			              "name=%s type=A: Host not found", nm);
		else
			pt_status_set(&err, 550, "5.4.4", "Host or domain name not found. Name service error for "
			              "name=%s type=AAAA: Host found but no data record of requested type", nm);
	}
	r->done(r->arg, v, n, &err);
	free(r);
}

static void
finish_fire(struct pt_loop *loop, void *arg)
{
	(void)loop;
	finish(arg);
}

static void
addr_answer(struct resolve *r, struct host_lookup *hl, int v6, const struct pt_dns_answer *ans)
{
	enum pt_dns_type want = v6 ? PT_DNS_AAAA : PT_DNS_A;
	struct relay_addr *dst = v6 ? hl->a6 : hl->a4;
	size_t *nd = v6 ? &hl->n6 : &hl->n4;
	if (v6)
		hl->st6 = ans->status;
	else
		hl->st4 = ans->status;
	for (size_t i = 0; ans->status == PT_DNS_OK && i < ans->n && *nd < RELAY_MAX_ADDRS; i++) {
		if (ans->rr[i].type != want)
			continue;
		struct relay_addr *a = &dst[(*nd)++];
		snprintf(a->host, sizeof a->host, "%s", hl->name);
		set_sa(a, ans->rr[i].text, r->port);
		if (!a->salen)
			(*nd)--;
	}
	if (--r->pending == 0)
		finish(r);
}

/* The query callbacks get one small record naming which lookup it was. */
struct qref {
	struct resolve *r;
	size_t host;
	int v6;
};

static void
addr_cb(void *arg, const struct pt_dns_answer *ans)
{
	struct qref q = *(struct qref *)arg;
	free(arg);
	addr_answer(q.r, &q.r->host[q.host], q.v6, ans);
}

static void
lookup_addrs(struct resolve *r)
{
	/* Count first so an early answer cannot finish the lookup midway. */
	r->pending = 1;
	for (size_t h = 0; h < r->nhost; h++) {
		r->host[h].st4 = r->host[h].st6 = PT_DNS_TEMPFAIL;
		for (int v6 = 0; v6 < 2; v6++) {
			struct qref *q = malloc(sizeof *q);
			if (q) {
				q->r = r;
				q->host = h;
				q->v6 = v6;
			}
			r->pending++;
			if (!q || pt_dns_query(r->loop, r->host[h].name, v6 ? PT_DNS_AAAA : PT_DNS_A, addr_cb, q) != 0) {
				free(q);
				r->pending--;
			}
		}
	}
	/* Every query refused at once: finish from the loop all the same. */
	if (--r->pending == 0 && !pt_timer_add(r->loop, 0, finish_fire, r))
		finish(r);
}

static void
mx_cb(void *arg, const struct pt_dns_answer *ans)
{
	struct resolve *r = arg;
	if (ans->status == PT_DNS_NXDOMAIN || ans->status == PT_DNS_TEMPFAIL) {
		struct pt_status err;
		if (ans->status == PT_DNS_NXDOMAIN)
			pt_status_set(&err, 550, "5.4.4", "Host or domain name not found. Name service error for "
			              "name=%s type=MX: Host not found", r->name);
		else
			pt_status_set(&err, 450, "4.4.3", "Host or domain name not found. Name service error for "
			              "name=%s type=MX: Host not found, try again", r->name);
		r->done(r->arg, NULL, 0, &err);
		free(r);
		return;
	}
	struct relay_mx mx[RELAY_MAX_MX];
	long k = ans->status == PT_DNS_OK ? relay_mx_order(ans->rr, ans->n, mx, RELAY_MAX_MX, NULL, NULL) : 0;
	if (k < 0) {
		struct pt_status err;
		pt_status_set(&err, 556, "5.1.10", "Domain %s does not accept mail (nullMX)", r->name);
		r->done(r->arg, NULL, 0, &err);
		free(r);
		return;
	}
	if (k == 0) {
		/* No MX: the domain itself is the exchange. */
		snprintf(r->host[0].name, sizeof r->host[0].name, "%s", r->name);
		r->nhost = 1;
	} else {
		for (long i = 0; i < k; i++)
			snprintf(r->host[i].name, sizeof r->host[i].name, "%s", mx[i].name);
		r->nhost = (size_t)k;
	}
	lookup_addrs(r);
}

static void
literal_fire(struct pt_loop *loop, void *arg)
{
	(void)loop;
	struct resolve *r = arg;
	struct pt_status err;
	memset(&err, 0, sizeof err);
	r->done(r->arg, &r->lit, 1, &err);
	free(r);
}

int
relay_resolve(struct pt_loop *loop, const char *nexthop, unsigned port, relay_resolve_fn *done, void *arg)
{
	struct resolve *r = calloc(1, sizeof *r);
	if (!r)
		return -1;
	r->loop = loop;
	r->port = port ? port : 25;
	r->done = done;
	r->arg = arg;
	int bracket = nexthop[0] == '[';
	size_t n = strlen(nexthop);
	if (bracket) {
		if (n < 3 || nexthop[n - 1] != ']') {
			free(r);
			return -1;
		}
		snprintf(r->name, sizeof r->name, "%.*s", (int)(n - 2), nexthop + 1);
	} else {
		snprintf(r->name, sizeof r->name, "%s", nexthop);
	}
	n = strlen(r->name);
	if (n && r->name[n - 1] == '.')
		r->name[n - 1] = 0;
	char ip[64];
	if (ip_literal(r->name, ip, sizeof ip)) {
		snprintf(r->lit.host, sizeof r->lit.host, "%s", ip);
		set_sa(&r->lit, ip, r->port);
		if (!pt_timer_add(loop, 0, literal_fire, r)) {
			free(r);
			return -1;
		}
		return 0;
	}
	if (bracket) {
		snprintf(r->host[0].name, sizeof r->host[0].name, "%s", r->name);
		r->nhost = 1;
		lookup_addrs(r);
		return 0;
	}
	if (pt_dns_query(loop, r->name, PT_DNS_MX, mx_cb, r) != 0) {
		free(r);
		return -1;
	}
	return 0;
}
