/* Non-blocking stub resolver: one UDP socket per query (random port and
 * id), TCP when the answer is truncated, retries across the servers of
 * dns_servers or /etc/resolv.conf, answers parsed into pt_dns_answer. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config_int.h"
#include "dns_int.h"
#include "postern/event.h"
#include "postern/log.h"
#include "runtime.h"

#define DNS_MAX_SERVERS 8
#define DNS_MAX_ANSWERS 64
#define DNS_UDP_MAX 1232              /* EDNS-free replies are <= 512; be generous */
#define DNS_NAME_MAX 255

enum { DNS_RCODE_NOERROR = 0, DNS_RCODE_SERVFAIL = 2, DNS_RCODE_NXDOMAIN = 3 };

/* ---- wire format ---- */

int
pt_dns_build_query(unsigned char *buf, size_t buflen, uint16_t id, const char *name,
                   enum pt_dns_type type)
{
	size_t nl = strlen(name);
	if (nl && name[nl - 1] == '.')
		nl--;
	if (nl == 0 || nl > 253 || buflen < 12 + nl + 2 + 4)
		return -1;
	memset(buf, 0, 12);
	buf[0] = (unsigned char)(id >> 8);
	buf[1] = (unsigned char)id;
	buf[2] = 0x01;                /* RD */
	buf[5] = 1;                   /* QDCOUNT */
	size_t o = 12, start = 0;
	for (size_t i = 0; i <= nl; i++) {
		if (i == nl || name[i] == '.') {
			size_t ll = i - start;
			if (ll == 0 || ll > 63)
				return -1;
			buf[o++] = (unsigned char)ll;
			memcpy(buf + o, name + start, ll);
			o += ll;
			start = i + 1;
		} else {
			unsigned char c = (unsigned char)name[i];
			if (c <= 0x20 || c >= 0x7f)
				return -1;
		}
	}
	buf[o++] = 0;
	buf[o++] = (unsigned char)((unsigned)type >> 8);
	buf[o++] = (unsigned char)type;
	buf[o++] = 0;
	buf[o++] = 1;                 /* IN */
	return (int)o;
}

/* Read a possibly compressed name at *off into out (dotted, no trailing
 * dot, "" for the root). Advances *off past the name in place. 0 or -1. */
static int
dns_read_name(const unsigned char *msg, size_t len, size_t *off, char *out, size_t outlen)
{
	size_t o = *off, w = 0;
	int jumped = 0, hops = 0;
	for (;;) {
		if (o >= len)
			return -1;
		unsigned c = msg[o];
		if ((c & 0xC0) == 0xC0) {
			if (o + 1 >= len || ++hops > 32)
				return -1;
			size_t ptr = ((c & 0x3F) << 8) | msg[o + 1];
			if (!jumped)
				*off = o + 2;
			jumped = 1;
			if (ptr >= o)     /* only backwards: no loops */
				return -1;
			o = ptr;
			continue;
		}
		if (c & 0xC0)
			return -1;
		if (c == 0) {
			if (!jumped)
				*off = o + 1;
			break;
		}
		if (o + 1 + c > len)
			return -1;
		if (w + c + 2 > outlen || w + c + 1 > DNS_NAME_MAX)
			return -1;
		if (w)
			out[w++] = '.';
		for (unsigned i = 0; i < c; i++) {
			unsigned char ch = msg[o + 1 + i];
			out[w++] = (ch > 0x20 && ch < 0x7f && ch != '.') ? (char)ch : '?';
		}
		o += 1 + c;
	}
	out[w] = 0;
	return 0;
}

static int
dns_name_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la && a[la - 1] == '.')
		la--;
	if (lb && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

struct dns_raw {
	char owner[DNS_NAME_MAX + 1];
	struct pt_dns_rr rr;
};

static int
dns_rr_cmp(const void *a, const void *b)
{
	const struct pt_dns_rr *x = a, *y = b;
	return (x->pref > y->pref) - (x->pref < y->pref);
}

int
pt_dns_parse_response(const unsigned char *msg, size_t len, const char *qname,
                      enum pt_dns_type qtype, struct pt_dns_answer *out, int *rcode,
                      int *truncated)
{
	memset(out, 0, sizeof(*out));
	if (len < 12 || !(msg[2] & 0x80))
		return -1;
	int rc = msg[3] & 0x0F;
	if (rcode)
		*rcode = rc;
	if (truncated)
		*truncated = (msg[2] & 0x02) != 0;
	unsigned qd = (unsigned)msg[4] << 8 | msg[5];
	unsigned an = (unsigned)msg[6] << 8 | msg[7];
	size_t off = 12;
	char name[DNS_NAME_MAX + 1];
	if (qd != 1)
		return -1;
	if (dns_read_name(msg, len, &off, name, sizeof(name)) < 0 || off + 4 > len)
		return -1;
	unsigned t = (unsigned)msg[off] << 8 | msg[off + 1];
	unsigned cl = (unsigned)msg[off + 2] << 8 | msg[off + 3];
	off += 4;
	if (qname && (!dns_name_eq(name, qname) || t != (unsigned)qtype || cl != 1))
		return -1;
	if (!qname)
		qname = name;

	struct dns_raw *raw = NULL;
	size_t nraw = 0;
	if (an > DNS_MAX_ANSWERS)
		an = DNS_MAX_ANSWERS;
	if (an && !(raw = calloc(an, sizeof(*raw))))
		return -1;
	for (unsigned i = 0; i < an; i++) {
		struct dns_raw *r = &raw[nraw];
		if (dns_read_name(msg, len, &off, r->owner, sizeof(r->owner)) < 0 || off + 10 > len)
			goto bad;
		unsigned type = (unsigned)msg[off] << 8 | msg[off + 1];
		unsigned klass = (unsigned)msg[off + 2] << 8 | msg[off + 3];
		size_t rdlen = (size_t)msg[off + 8] << 8 | msg[off + 9];
		off += 10;
		if (off + rdlen > len)
			goto bad;
		size_t rd = off, end = off + rdlen;
		off = end;
		if (klass != 1)
			continue;
		r->rr.type = (enum pt_dns_type)type;
		switch (type) {
		case PT_DNS_A:
			if (rdlen != 4)
				goto bad;
			inet_ntop(AF_INET, msg + rd, r->rr.text, sizeof(r->rr.text));
			break;
		case PT_DNS_AAAA:
			if (rdlen != 16)
				goto bad;
			inet_ntop(AF_INET6, msg + rd, r->rr.text, sizeof(r->rr.text));
			break;
		case PT_DNS_MX:
			if (rdlen < 3)
				goto bad;
			r->rr.pref = (unsigned)msg[rd] << 8 | msg[rd + 1];
			rd += 2;
			/* the exchange is a name, read below */
			__attribute__((fallthrough));
		case PT_DNS_CNAME:
		case PT_DNS_PTR:
		case PT_DNS_NS: {
			size_t p = rd;
			if (dns_read_name(msg, len, &p, r->rr.text, sizeof(r->rr.text)) < 0 || p > end)
				goto bad;
			break;
		}
		case PT_DNS_TXT: {
			size_t w = 0;
			while (rd < end) {
				size_t sl = msg[rd++];
				if (rd + sl > end)
					goto bad;
				for (size_t k = 0; k < sl && w + 1 < sizeof(r->rr.text); k++)
					r->rr.text[w++] = (char)msg[rd + k];
				rd += sl;
			}
			r->rr.text[w] = 0;
			break;
		}
		default:
			continue;
		}
		nraw++;
	}

	/* follow the CNAME chain from the question to the records we want */
	char chain[9][DNS_NAME_MAX + 1];
	int nchain = 1;
	snprintf(chain[0], sizeof(chain[0]), "%s", qname);
	if (qtype != PT_DNS_CNAME) {
		for (int hop = 0; hop < 8; hop++) {
			int found = 0;
			for (size_t i = 0; i < nraw && !found; i++)
				if (raw[i].rr.type == PT_DNS_CNAME && dns_name_eq(raw[i].owner, chain[nchain - 1])) {
					snprintf(chain[nchain++], sizeof(chain[0]), "%s", raw[i].rr.text);
					found = 1;
				}
			if (!found)
				break;
		}
	}
	size_t n = 0;
	for (size_t i = 0; i < nraw; i++) {
		if (raw[i].rr.type != qtype)
			continue;
		for (int c = 0; c < nchain; c++)
			if (dns_name_eq(raw[i].owner, chain[c])) {
				raw[n++].rr = raw[i].rr;   /* compact in place: n <= i */
				break;
			}
	}
	if (n) {
		out->rr = malloc(n * sizeof(*out->rr));
		if (!out->rr)
			goto bad;
		for (size_t i = 0; i < n; i++)
			out->rr[i] = raw[i].rr;
		out->n = n;
		if (qtype == PT_DNS_MX)
			qsort(out->rr, n, sizeof(*out->rr), dns_rr_cmp);
	}
	free(raw);
	if (rc == DNS_RCODE_NXDOMAIN)
		out->status = PT_DNS_NXDOMAIN;
	else if (rc != DNS_RCODE_NOERROR)
		out->status = PT_DNS_TEMPFAIL;
	else
		out->status = n ? PT_DNS_OK : PT_DNS_NODATA;
	if (out->status != PT_DNS_OK) {
		free(out->rr);
		out->rr = NULL;
		out->n = 0;
	}
	return 0;
bad:
	free(raw);
	memset(out, 0, sizeof(*out));
	return -1;
}

void
pt_dns_answer_free(struct pt_dns_answer *a)
{
	free(a->rr);
	a->rr = NULL;
	a->n = 0;
}

int
pt_dns_reverse_name(const char *addr, char *out, size_t outlen)
{
	unsigned char b[16];
	if (inet_pton(AF_INET, addr, b) == 1) {
		int w = snprintf(out, outlen, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
		return w > 0 && (size_t)w < outlen ? 0 : -1;
	}
	if (inet_pton(AF_INET6, addr, b) == 1) {
		static const char hex[] = "0123456789abcdef";
		if (outlen < 64 + 9)
			return -1;
		size_t w = 0;
		for (int i = 15; i >= 0; i--) {
			out[w++] = hex[b[i] & 15];
			out[w++] = '.';
			out[w++] = hex[b[i] >> 4];
			out[w++] = '.';
		}
		memcpy(out + w, "ip6.arpa", 9);
		return 0;
	}
	return -1;
}

/* ---- servers ---- */

static struct {
	struct sockaddr_storage addr[DNS_MAX_SERVERS];
	socklen_t alen[DNS_MAX_SERVERS];
	size_t n;
	int explicit_set;             /* pt_dns_set_servers() with n > 0 */
	const void *conf_seen;        /* live config the list came from */
	unsigned timeout_ms, attempts;
} dns_cfg = { .timeout_ms = 2000, .attempts = 2 };

static int
dns_parse_server(const char *s, struct sockaddr_storage *ss, socklen_t *sl)
{
	char host[64];
	unsigned port = 53;
	const char *portstr = NULL;
	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || (size_t)(close - s - 1) >= sizeof(host))
			return -1;
		memcpy(host, s + 1, (size_t)(close - s - 1));
		host[close - s - 1] = 0;
		if (close[1] == ':')
			portstr = close + 2;
		else if (close[1])
			return -1;
	} else {
		const char *colon = strchr(s, ':');
		if (colon && strchr(colon + 1, ':'))
			colon = NULL;     /* a bare IPv6 address */
		size_t hl = colon ? (size_t)(colon - s) : strlen(s);
		if (hl >= sizeof(host))
			return -1;
		memcpy(host, s, hl);
		host[hl] = 0;
		if (colon)
			portstr = colon + 1;
	}
	if (portstr) {
		char *end;
		unsigned long p = strtoul(portstr, &end, 10);
		if (!*portstr || *end || p == 0 || p > 65535)
			return -1;
		port = (unsigned)p;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*sl = sizeof(*s4);
		return 0;
	}
	char *pct = strchr(host, '%');
	if (pct)
		*pct = 0;         /* scoped link-local: scope ignored */
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*sl = sizeof(*s6);
		return 0;
	}
	return -1;
}

int
pt_dns_set_servers(const char *const *servers, size_t n)
{
	if (n == 0) {
		dns_cfg.explicit_set = 0;
		dns_cfg.conf_seen = NULL;
		dns_cfg.n = 0;
		return 0;
	}
	struct sockaddr_storage a[DNS_MAX_SERVERS];
	socklen_t l[DNS_MAX_SERVERS];
	size_t k = 0;
	for (size_t i = 0; i < n && k < DNS_MAX_SERVERS; i++, k++)
		if (dns_parse_server(servers[i], &a[k], &l[k]) < 0)
			return -1;
	memcpy(dns_cfg.addr, a, sizeof(a[0]) * k);
	memcpy(dns_cfg.alen, l, sizeof(l[0]) * k);
	dns_cfg.n = k;
	dns_cfg.explicit_set = 1;
	return 0;
}

void
pt_dns_set_timeout(unsigned ms, unsigned attempts)
{
	dns_cfg.timeout_ms = ms ? ms : 2000;
	dns_cfg.attempts = attempts ? attempts : 1;
}

static void
dns_load_resolv_conf(void)
{
	dns_cfg.n = 0;
	FILE *f = fopen("/etc/resolv.conf", "re");
	char line[512];
	while (f && fgets(line, sizeof(line), f) && dns_cfg.n < DNS_MAX_SERVERS) {
		char kw[32], val[128];
		if (sscanf(line, "%31s %127s", kw, val) == 2 && strcmp(kw, "nameserver") == 0 &&
		    dns_parse_server(val, &dns_cfg.addr[dns_cfg.n], &dns_cfg.alen[dns_cfg.n]) == 0)
			dns_cfg.n++;
	}
	if (f)
		fclose(f);
	if (dns_cfg.n == 0)           /* resolv.conf(5): the local host */
		dns_parse_server("127.0.0.1", &dns_cfg.addr[0], &dns_cfg.alen[dns_cfg.n++]);
}

/* Servers follow dns_servers of the live config (re-read when it is
 * replaced), then resolv.conf; pt_dns_set_servers() overrides both. */
static void
dns_servers_refresh(void)
{
	if (dns_cfg.explicit_set)
		return;
	const void *c = pt_live_conf;
	if (dns_cfg.n && c == dns_cfg.conf_seen)
		return;
	dns_cfg.conf_seen = c;
	const struct pt_list *l = c && pt_config_owner(pt_live_conf, "dns_servers")
	                          ? pt_conf_list(pt_live_conf, "dns_servers") : NULL;
	if (l && l->n) {
		size_t k = 0;
		for (size_t i = 0; i < l->n && k < DNS_MAX_SERVERS; i++)
			if (dns_parse_server(l->v[i], &dns_cfg.addr[k], &dns_cfg.alen[k]) == 0)
				k++;
			else
				pt_warn("dns_servers: \"%s\" is not IP[:PORT]; ignored", l->v[i]);
		dns_cfg.n = k;
		if (k)
			return;
	}
	dns_load_resolv_conf();
}

/* ---- queries ---- */

struct dns_query {
	struct pt_loop *loop;
	char name[DNS_NAME_MAX + 1];
	enum pt_dns_type type;
	pt_dns_cb *cb;
	void *arg;
	uint16_t id;
	unsigned char q[300];
	size_t qlen;
	int fd, tcp;
	unsigned try;                 /* attempts made so far */
	int server;                   /* index used by the current attempt */
	struct pt_timer *timer;
	struct pt_deferred start;     /* the next attempt, from the loop */
	unsigned char *tbuf;          /* TCP: 2-byte length + message */
	size_t tlen, toff, tcap;
	int twrote;
	struct pt_dns_answer ans;
	struct dns_query *next, *prev;
};

static struct dns_query *dns_pending;

static void dns_attempt(struct dns_query *q);
static void dns_start(struct pt_loop *loop, void *arg);

static void
dns_close_socket(struct dns_query *q)
{
	if (q->fd >= 0) {
		pt_loop_unwatch(q->loop, q->fd);
		close(q->fd);
		q->fd = -1;
	}
	free(q->tbuf);
	q->tbuf = NULL;
	q->tlen = q->toff = q->tcap = 0;
	q->twrote = 0;
}

static void
dns_unlink(struct dns_query *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		dns_pending = q->next;
	if (q->next)
		q->next->prev = q->prev;
}

static void
dns_release(struct dns_query *q)
{
	dns_close_socket(q);
	if (q->timer)
		pt_timer_cancel(q->loop, q->timer);
	q->timer = NULL;
	pt_defer_cancel(q->loop, &q->start);
	dns_unlink(q);
	pt_dns_answer_free(&q->ans);
	free(q);
}

/* Deliver ans (status already set) and forget the query. */
static void
dns_finish(struct dns_query *q)
{
	struct pt_dns_answer ans = q->ans;
	pt_dns_cb *cb = q->cb;
	void *arg = q->arg;
	q->ans.rr = NULL;
	q->ans.n = 0;
	dns_release(q);
	cb(arg, &ans);
	pt_dns_answer_free(&ans);
}

static void
dns_fail_attempt(struct dns_query *q)
{
	dns_close_socket(q);
	if (q->timer) {
		pt_timer_cancel(q->loop, q->timer);
		q->timer = NULL;
	}
	dns_attempt(q);
}

static void
dns_on_timeout(struct pt_loop *loop, void *arg)
{
	(void)loop;
	struct dns_query *q = arg;
	q->timer = NULL;
	dns_fail_attempt(q);
}

/* A response for q arrived (UDP or TCP). Returns 0 when it is not an
 * answer to q (ignored: forged, stale or garbled), 1 when q moved on
 * (finished, next attempt, TCP) -- q may be freed then. */
static int
dns_on_message(struct dns_query *q, const unsigned char *msg, size_t len)
{
	if (len < 2 || ((unsigned)msg[0] << 8 | msg[1]) != q->id)
		return 0;
	struct pt_dns_answer a;
	int rcode = 0, tc = 0;
	if (pt_dns_parse_response(msg, len, q->name, q->type, &a, &rcode, &tc) < 0)
		return 0;
	if (tc && !q->tcp) {
		pt_dns_answer_free(&a);
		/* same server again, over TCP, without using up an attempt */
		q->tcp = 1;
		q->try--;
		dns_fail_attempt(q);
		return 1;
	}
	if (rcode != DNS_RCODE_NOERROR && rcode != DNS_RCODE_NXDOMAIN) {
		/* SERVFAIL, REFUSED...: another server may do better */
		pt_dns_answer_free(&a);
		dns_fail_attempt(q);
		return 1;
	}
	q->ans = a;
	dns_finish(q);
	return 1;
}

static void
dns_on_udp(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	(void)loop;
	(void)events;
	struct dns_query *q = arg;
	unsigned char buf[DNS_UDP_MAX];
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				dns_fail_attempt(q);   /* ICMP refused and the like */
			return;
		}
		if (dns_on_message(q, buf, (size_t)r))
			return;
	}
}

static void
dns_on_tcp(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	(void)loop;
	struct dns_query *q = arg;
	if (!q->twrote) {
		int err = 0;
		socklen_t el = sizeof(err);
		if ((events & PT_EV_ERROR) || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
			dns_fail_attempt(q);
			return;
		}
		while (q->toff < q->tlen) {
			ssize_t w = send(fd, q->tbuf + q->toff, q->tlen - q->toff, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return;
			if (w <= 0) {
				dns_fail_attempt(q);
				return;
			}
			q->toff += (size_t)w;
		}
		q->twrote = 1;
		q->tlen = q->toff = 0;
		pt_loop_watch(q->loop, fd, PT_EV_READ, dns_on_tcp, q);
		return;
	}
	for (;;) {
		if (q->tcap - q->tlen == 0) {
			size_t nc = q->tcap ? q->tcap * 2 : 1024;
			if (nc > 65537 * 2) {
				dns_fail_attempt(q);
				return;
			}
			unsigned char *nb = realloc(q->tbuf, nc);
			if (!nb) {
				dns_fail_attempt(q);
				return;
			}
			q->tbuf = nb;
			q->tcap = nc;
		}
		ssize_t r = recv(fd, q->tbuf + q->tlen, q->tcap - q->tlen, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0) {
			dns_fail_attempt(q);
			return;
		}
		q->tlen += (size_t)r;
		if (q->tlen >= 2) {
			size_t want = (size_t)q->tbuf[0] << 8 | q->tbuf[1];
			if (q->tlen >= want + 2) {
				unsigned char *m = q->tbuf;
				q->tbuf = NULL;       /* ours until the message is handled */
				q->tlen = q->tcap = 0;
				if (!dns_on_message(q, m + 2, want))
					dns_fail_attempt(q);  /* one message per TCP query */
				free(m);
				return;
			}
		}
	}
}

static void
dns_attempt(struct dns_query *q)
{
	if (q->try >= dns_cfg.attempts * dns_cfg.n || dns_cfg.n == 0) {
		q->ans.status = PT_DNS_TEMPFAIL;
		dns_finish(q);
		return;
	}
	q->server = (int)(q->try % dns_cfg.n);
	q->try++;
	const struct sockaddr *sa = (const struct sockaddr *)&dns_cfg.addr[q->server];
	q->fd = socket(sa->sa_family, (q->tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (q->fd < 0)
		goto failed;
	if (connect(q->fd, sa, dns_cfg.alen[q->server]) < 0 && errno != EINPROGRESS)
		goto failed;
	if (q->tcp) {
		q->tbuf = malloc(q->qlen + 2);
		if (!q->tbuf)
			goto failed;
		q->tbuf[0] = (unsigned char)(q->qlen >> 8);
		q->tbuf[1] = (unsigned char)q->qlen;
		memcpy(q->tbuf + 2, q->q, q->qlen);
		q->tlen = q->tcap = q->qlen + 2;
		q->toff = 0;
		if (pt_loop_watch(q->loop, q->fd, PT_EV_WRITE, dns_on_tcp, q) < 0)
			goto failed;
	} else {
		if (send(q->fd, q->q, q->qlen, 0) < 0 && errno != EAGAIN)
			goto failed;
		if (pt_loop_watch(q->loop, q->fd, PT_EV_READ, dns_on_udp, q) < 0)
			goto failed;
	}
	q->timer = pt_timer_add(q->loop, dns_cfg.timeout_ms, dns_on_timeout, q);
	if (!q->timer)
		goto failed;
	return;
failed:
	/* try the next attempt from the loop, never recursing deeply here */
	dns_close_socket(q);
	if (q->timer)
		pt_timer_cancel(q->loop, q->timer);
	q->timer = NULL;
	pt_defer(q->loop, &q->start, dns_start, q);
}

static void
dns_start(struct pt_loop *loop, void *arg)
{
	(void)loop;
	dns_attempt(arg);
}

int
pt_dns_query(struct pt_loop *loop, const char *name, enum pt_dns_type type, pt_dns_cb *cb, void *arg)
{
	struct dns_query *q = calloc(1, sizeof(*q));
	if (!q)
		return -1;
	uint16_t id;
	if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id))
		id = (uint16_t)(rand() ^ getpid());
	int ql = pt_dns_build_query(q->q, sizeof(q->q), id, name, type);
	if (ql < 0) {
		free(q);
		errno = EINVAL;
		return -1;
	}
	dns_servers_refresh();
	q->qlen = (size_t)ql;
	q->id = id;
	q->loop = loop;
	q->type = type;
	q->cb = cb;
	q->arg = arg;
	q->fd = -1;
	snprintf(q->name, sizeof(q->name), "%s", name);
	/* the first packet goes out from the loop: the callback must never
	 * run before pt_dns_query returns (services.h) */
	pt_defer(loop, &q->start, dns_start, q);
	q->next = dns_pending;
	if (dns_pending)
		dns_pending->prev = q;
	dns_pending = q;
	return 0;
}

void
pt_dns_shutdown(void)
{
	while (dns_pending)
		dns_release(dns_pending);
}
