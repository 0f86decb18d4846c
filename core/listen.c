/* Listening sockets: binding per [ADDR:]PORT lists, inet_interfaces and
 * inet_protocols (master side), then accepting with per-service and
 * per-client connection limits and implicit TLS (worker side). */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config_int.h"
#include "conn_int.h"
#include "loader.h"
#include "net.h"
#include "postern/log.h"
#include "postern/metrics.h"

#define LISTEN_BACKLOG 511
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100
#define TLS_HANDSHAKE_TIMEOUT_MS 60000   /* whole handshake, not per read */
#define COUNT_BUCKETS 256

/* ---------- binding (master) ---------- */

struct bind_addr {
	char addr[64];
	int explicit_addr;   /* named by the admin: failing to bind is an error */
};

static int
family_of(const char *addr)
{
	return strchr(addr, ':') ? AF_INET6 : AF_INET;
}

static int
make_sockaddr(const char *addr, unsigned port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof *ss);
	if (family_of(addr) == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof *s6;
		return inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1 ? 0 : -1;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*len = sizeof *s4;
		return inet_pton(AF_INET, addr, &s4->sin_addr) == 1 ? 0 : -1;
	}
}

static void
format_hostport(char *buf, size_t len, const char *addr, unsigned port)
{
	if (family_of(addr) == AF_INET6)
		snprintf(buf, len, "[%s]:%u", addr, port);
	else
		snprintf(buf, len, "%s:%u", addr, port);
}

/* inet_protocols: "all", or a list of ipv4 / ipv6. */
static void
allowed_families(const struct pt_config *conf, int *v4, int *v6, int *all)
{
	const char *p = pt_config_owner(conf, "inet_protocols") ? pt_conf_str(conf, "inet_protocols") : "all";

	*v4 = *v6 = *all = 0;
	if (!p || !*p || strstr(p, "all")) {
		*v4 = *v6 = *all = 1;
		return;
	}
	*v4 = strstr(p, "ipv4") != NULL;
	*v6 = strstr(p, "ipv6") != NULL;
}

static void
copy_addr(char *dst, size_t len, const char *item)
{
	size_t n = strlen(item);

	if (n >= 2 && item[0] == '[' && item[n - 1] == ']' && n - 2 < len) {
		memcpy(dst, item + 1, n - 2);
		dst[n - 2] = '\0';
	} else {
		snprintf(dst, len, "%s", item);
	}
}

/* Addresses for an item without ADDR: each inet_interfaces entry. */
static size_t
interface_addrs(const struct pt_config *conf, struct bind_addr **out)
{
	const struct pt_list *l = pt_config_owner(conf, "inet_interfaces")
	                          ? pt_conf_list(conf, "inet_interfaces") : NULL;
	static const struct pt_list all_default = {0, NULL};
	size_t n = 0, cap;
	struct bind_addr *v;

	if (!l)
		l = &all_default;
	cap = 2 * (l->n ? l->n : 1);
	v = calloc(cap, sizeof *v);
	if (!v)
		return 0;
	if (l->n == 0) {
		snprintf(v[n++].addr, sizeof v->addr, "0.0.0.0");
		snprintf(v[n++].addr, sizeof v->addr, "::");
	}
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->v[i], "all") == 0) {
			snprintf(v[n++].addr, sizeof v->addr, "0.0.0.0");
			snprintf(v[n++].addr, sizeof v->addr, "::");
		} else if (strcmp(l->v[i], "loopback-only") == 0) {
			snprintf(v[n++].addr, sizeof v->addr, "127.0.0.1");
			snprintf(v[n++].addr, sizeof v->addr, "::1");
		} else {
			copy_addr(v[n].addr, sizeof v->addr, l->v[i]);
			v[n++].explicit_addr = 1;
		}
	}
	*out = v;
	return n;
}

/* A socket of the previous generation bound to the same address. */
static int
take_reused(struct pt_listen_sock *reuse, size_t nreuse, const struct sockaddr_storage *want,
            size_t *from)
{
	for (size_t k = 0; k < nreuse; k++) {
		struct sockaddr_storage have;
		socklen_t hl = sizeof have;

		if (reuse[k].fd < 0 || getsockname(reuse[k].fd, (struct sockaddr *)&have, &hl) != 0 ||
		    have.ss_family != want->ss_family)
			continue;
		if (want->ss_family == AF_INET) {
			const struct sockaddr_in *a = (const void *)&have, *b = (const void *)want;

			if (a->sin_port != b->sin_port || a->sin_addr.s_addr != b->sin_addr.s_addr)
				continue;
		} else {
			const struct sockaddr_in6 *a = (const void *)&have, *b = (const void *)want;

			if (a->sin6_port != b->sin6_port ||
			    memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) != 0)
				continue;
		}
		*from = k;
		return reuse[k].fd;
	}
	return -1;
}

/* Bind one address; returns the fd, -2 to skip quietly (warned), or -1
 * with err set. */
static int
bind_one(const struct pt_listener_decl *decl, const char *addr, unsigned port, int skippable,
         char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char hp[96];
	int fd, one = 1, e;

	format_hostport(hp, sizeof hp, addr, port);
	if (make_sockaddr(addr, port, &ss, &sl) < 0) {
		snprintf(err, errlen, "cannot bind %s (%s): not an IP address", hp, decl->param);
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		e = errno;
		goto fail;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		e = errno;
		close(fd);
		goto fail;
	}
	return fd;
fail:
	if (skippable && ss.ss_family == AF_INET6 &&
	    (e == EAFNOSUPPORT || e == EADDRNOTAVAIL || e == EPROTONOSUPPORT)) {
		pt_log(PT_LOG_WARNING, "IPv6 unavailable, not listening on %s (%s): %s", hp, decl->param,
		       strerror(e));
		return -2;
	}
	snprintf(err, errlen, "cannot bind %s (%s): %s", hp, decl->param, strerror(e));
	return -1;
}

void
pt_listener_name(const char *param, char *out, size_t len)
{
	size_t n = strlen(param);

	if (n > 7 && strcmp(param + n - 7, "_listen") == 0)
		n -= 7;
	snprintf(out, len, "%.*s", (int)n, param);
}

static int
append_sock(struct pt_listen_sock **socks, size_t *nsocks, int fd,
            const struct pt_listener_decl *decl, const char *addr, unsigned port)
{
	struct pt_listen_sock *ns = realloc(*socks, (*nsocks + 1) * sizeof *ns);
	struct pt_listen_sock *s;

	if (!ns)
		return -1;
	*socks = ns;
	s = &ns[(*nsocks)++];
	memset(s, 0, sizeof *s);
	s->fd = fd;
	s->decl = decl;
	s->info.service = decl->service;
	pt_listener_name(decl->param, s->info.name, sizeof s->info.name);
	s->info.implicit_tls = decl->implicit_tls;
	snprintf(s->info.addr, sizeof s->info.addr, "%s", addr);
	s->info.port = port;
	snprintf(s->param, sizeof s->param, "%s", decl->param);
	return 0;
}

int
pt_listen_open(const struct pt_config *conf, const struct pt_listener_decl *decl,
               struct pt_listen_sock **socks, size_t *nsocks,
               struct pt_listen_sock *reuse, size_t nreuse,
               char *err, size_t errlen)
{
	const struct pt_hostport_list *hps = pt_conf_hostports(conf, decl->param);
	size_t start = *nsocks, *moved_from = NULL, nmoved = 0;
	int v4, v6, all, rc = 0;

	allowed_families(conf, &v4, &v6, &all);
	moved_from = calloc(hps->n * 2 + nreuse + 1, sizeof *moved_from);
	if (!moved_from) {
		snprintf(err, errlen, "%s: out of memory", decl->param);
		return -1;
	}
	for (size_t i = 0; rc == 0 && i < hps->n; i++) {
		struct bind_addr one, *addrs = &one;
		size_t naddrs = 1;

		if (hps->v[i].host[0]) {
			memset(&one, 0, sizeof one);
			copy_addr(one.addr, sizeof one.addr, hps->v[i].host);
			one.explicit_addr = 1;
		} else {
			naddrs = interface_addrs(conf, &addrs);
			if (naddrs == 0) {
				snprintf(err, errlen, "%s: out of memory", decl->param);
				rc = -1;
				break;
			}
		}
		for (size_t a = 0; rc == 0 && a < naddrs; a++) {
			const char *addr = addrs[a].addr;
			unsigned port = hps->v[i].port;
			int fam = family_of(addr), fd;
			struct sockaddr_storage ss;
			socklen_t sl;
			size_t from = 0;

			if ((fam == AF_INET && !v4) || (fam == AF_INET6 && !v6)) {
				if (addrs[a].explicit_addr) {
					char hp[96];

					format_hostport(hp, sizeof hp, addr, port);
					snprintf(err, errlen, "cannot bind %s (%s): %s is disabled by inet_protocols",
					         hp, decl->param, fam == AF_INET ? "IPv4" : "IPv6");
					rc = -1;
				}
				continue;
			}
			if (make_sockaddr(addr, port, &ss, &sl) == 0 &&
			    (fd = take_reused(reuse, nreuse, &ss, &from)) >= 0) {
				reuse[from].fd = -1;
				moved_from[nmoved++] = from;
			} else {
				fd = bind_one(decl, addr, port, all && !addrs[a].explicit_addr, err, errlen);
				if (fd == -2)
					continue;
				if (fd < 0) {
					rc = -1;
					break;
				}
				moved_from[nmoved++] = (size_t)-1;
			}
			if (append_sock(socks, nsocks, fd, decl, addr, port) < 0) {
				snprintf(err, errlen, "%s: out of memory", decl->param);
				if (moved_from[nmoved - 1] == (size_t)-1)
					close(fd);
				else
					reuse[moved_from[nmoved - 1]].fd = fd;
				nmoved--;
				rc = -1;
			}
		}
		if (addrs != &one)
			free(addrs);
	}
	if (rc != 0) {
		/* Change nothing: close what this call bound, return what it took. */
		for (size_t i = start, m = 0; i < *nsocks; i++, m++) {
			if (moved_from[m] == (size_t)-1)
				close((*socks)[i].fd);
			else
				reuse[moved_from[m]].fd = (*socks)[i].fd;
		}
		*nsocks = start;
	}
	free(moved_from);
	return rc;
}

void
pt_listen_close_all(struct pt_listen_sock *socks, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (socks[i].fd >= 0)
			close(socks[i].fd);
	free(socks);
}

/* ---------- accepting (worker) ---------- */

/* A started listener. Connections point at its info, so it lives until
 * it is stopped and its last connection closed. */
struct listener {
	struct pt_listener info;
	const struct pt_listener_decl *decl;
	struct pt_loop *loop;
	int fd;
	int stopped;
	size_t refs;
	long long service_limit, client_limit;
	long long reserve;              /* of service_limit, only for mynetworks */
	struct pt_cidr_list trusted;    /* mynetworks */
	struct pt_timer *resume_timer;
	uint64_t last_warning;
	uint64_t last_refusal_log;
	unsigned long refusals_unlogged;
	/* postern stats: connections taken, open, refused per limit */
	struct pt_metric *m_total, *m_open, *m_refused_service, *m_refused_client;
	struct listener *next;
};

/* Open connections per "service\n" and per "service\naddress". */
struct count {
	struct count *next;
	unsigned n;
	char key[];
};

static struct listener *listeners;
static struct count *counts[COUNT_BUCKETS];

static unsigned
key_hash(const char *k)
{
	unsigned h = 2166136261u;

	for (; *k; k++)
		h = (h ^ (unsigned char)*k) * 16777619u;
	return h % COUNT_BUCKETS;
}

static struct count **
count_slot(const char *service, const char *addr, char *key, size_t keylen)
{
	struct count **pp;

	snprintf(key, keylen, "%s\n%s", service, addr);
	for (pp = &counts[key_hash(key)]; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->key, key) == 0)
			break;
	return pp;
}

static unsigned
count_get(const char *service, const char *addr)
{
	char key[160];
	struct count **pp = count_slot(service, addr, key, sizeof key);

	return *pp ? (*pp)->n : 0;
}

static int
count_add(const char *service, const char *addr, int delta)
{
	char key[160];
	struct count **pp = count_slot(service, addr, key, sizeof key);

	if (!*pp) {
		size_t kl = strlen(key) + 1;
		struct count *c;

		if (delta < 0)
			return 0;
		c = malloc(sizeof *c + kl);
		if (!c)
			return -1;
		c->next = NULL;
		c->n = 0;
		memcpy(c->key, key, kl);
		*pp = c;
	}
	if (delta < 0 && (*pp)->n > 0)
		(*pp)->n--;
	else if (delta > 0)
		(*pp)->n++;
	if ((*pp)->n == 0) {
		struct count *dead = *pp;

		*pp = dead->next;
		free(dead);
	}
	return 0;
}

static void
listener_free(struct listener *l)
{
	pt_cidr_list_free(&l->trusted);
	free(l);
}

static void
listener_unref(struct listener *l)
{
	if (--l->refs == 0 && l->stopped)
		listener_free(l);
}

/* What a connection was counted under at accept. A trusted front's
 * session later takes its client's address (pt_conn_forwarded_client:
 * IMAP ID, XCLIENT), and the release must take off what accept added,
 * or the front's count only grows until the host refuses it. */
struct conn_count {
	struct listener *l;
	char addr[INET6_ADDRSTRLEN];
};

static void
on_conn_release(struct pt_conn *c, void *arg)
{
	struct conn_count *cc = arg;
	struct listener *l = cc->l;

	(void)c;
	count_add(l->info.service, "", -1);
	count_add(l->info.service, cc->addr, -1);
	pt_metric_add(l->m_open, -1);
	free(cc);
	listener_unref(l);
}

static void
on_handshake_close(struct pt_conn *c, const char *reason)
{
	const struct pt_listener *l = pt_conn_listener(c);

	if (strncmp(reason, "error: ", 7) == 0)
		reason += 7;
	pt_log_as(l->service, PT_LOG_INFO, "SSL_accept error from unknown[%s]: %s",
	          pt_conn_peer_addr(c), reason);
}

static void
on_handshake_done(struct pt_conn *c, void *arg)
{
	struct listener *l = arg;

	pt_conn_set_handlers(c, NULL, NULL);
	pt_conn_set_timeout(c, 0);
	pt_conn_set_deadline(c, 0);
	l->decl->on_accept(c, &l->info);
}

static void accept_ready(struct pt_loop *loop, int fd, unsigned events, void *arg);

static void
accept_resume(struct pt_loop *loop, void *arg)
{
	struct listener *l = arg;

	l->resume_timer = NULL;
	if (!l->stopped)
		pt_loop_watch(loop, l->fd, PT_EV_READ, accept_ready, l);
}

/* Out of descriptors: a level-triggered listener would spin, so stop
 * watching it for a moment and say so (once a second at most). */
static void
accept_pause(struct listener *l, int err)
{
	uint64_t now = pt_loop_now(l->loop);

	if (now - l->last_warning >= 1000 || l->last_warning == 0) {
		l->last_warning = now;
		pt_log_as(l->info.service, PT_LOG_WARNING,
		          "accept on %s:%u: %s: not accepting for %d ms (%zu connections open)",
		          l->info.addr, l->info.port, strerror(err), ACCEPT_PAUSE_MS, pt_conn_count());
	}
	pt_loop_unwatch(l->loop, l->fd);
	if (!l->resume_timer)
		l->resume_timer = pt_timer_add(l->loop, ACCEPT_PAUSE_MS, accept_resume, l);
}

/* A refusal under a flood comes thousands of times a second: log the
 * first, then at most one line a second with how many went unlogged. */
static int
refusal_log_due(struct listener *l, unsigned long *skipped)
{
	uint64_t now = pt_loop_now(l->loop);

	if (l->last_refusal_log != 0 && now - l->last_refusal_log < 1000) {
		l->refusals_unlogged++;
		return 0;
	}
	l->last_refusal_log = now;
	*skipped = l->refusals_unlogged;
	l->refusals_unlogged = 0;
	return 1;
}

static void
accept_one(struct listener *l, int cfd)
{
	struct pt_conn *c = pt_conn_new(l->loop, cfd, &l->info);
	const char *peer;
	unsigned svc_n, cli_n;
	unsigned long skipped = 0;
	long long svc_limit;
	int trusted;

	if (!c) {
		close(cfd);
		return;
	}
	peer = pt_conn_peer_addr(c);
	pt_metric_inc(l->m_total);
	svc_n = count_get(l->info.service, "");
	/* mynetworks clients may use the reserve and are exempt from the
	 * per-client limit (Postfix exempts them from anvil's limits too):
	 * a flood from outside cannot take the slots the LAN needs. */
	trusted = l->trusted.n > 0 && pt_cidr_list_match(&l->trusted, pt_conn_peer_sa(c));
	svc_limit = l->service_limit;
	if (!trusted && l->reserve > 0)
		svc_limit = l->service_limit > l->reserve ? l->service_limit - l->reserve : 0;
	if (l->service_limit > 0 && svc_n >= svc_limit) {
		if (refusal_log_due(l, &skipped))
			pt_log_as(l->info.service, PT_LOG_WARNING,
			          "service %s has reached its connection limit %lld%s: refusing connection "
			          "from unknown[%s] (%lu more refused since the last such line)",
			          l->info.service, svc_limit,
			          svc_limit < l->service_limit
			              ? " for clients outside mynetworks (service_connection_limit - "
			                "mynetworks_reserved_connections)"
			              : " (service_connection_limit)",
			          peer, skipped);
		pt_metric_inc(l->m_refused_service);
		pt_conn_close(c, "service_connection_limit");
		return;
	}
	cli_n = trusted ? 0 : count_get(l->info.service, peer);
	if (l->client_limit > 0 && cli_n >= l->client_limit) {
		if (refusal_log_due(l, &skipped))
			pt_log_as(l->info.service, PT_LOG_WARNING,
			          "Connection concurrency limit exceeded: %u from unknown[%s] for service %s "
			          "(client_connection_limit = %lld) (%lu more refused since the last such line)",
			          cli_n + 1, peer, l->info.service, l->client_limit, skipped);
		pt_metric_inc(l->m_refused_client);
		pt_conn_close(c, "client_connection_limit");
		return;
	}
	struct conn_count *cc = malloc(sizeof(*cc));
	if (cc == NULL || count_add(l->info.service, "", 1) < 0) {
		free(cc);
		pt_conn_close(c, "error: out of memory");
		return;
	}
	if (count_add(l->info.service, peer, 1) < 0) {
		count_add(l->info.service, "", -1);
		free(cc);
		pt_conn_close(c, "error: out of memory");
		return;
	}
	cc->l = l;
	snprintf(cc->addr, sizeof cc->addr, "%s", peer);
	l->refs++;
	pt_metric_inc(l->m_open);
	pt_conn_set_release(c, on_conn_release, cc);
	if (l->info.implicit_tls) {
		static const struct pt_conn_handlers hs = {NULL, on_handshake_close, NULL};

		if (!pt_tls_enabled()) {
			pt_log_as(l->info.service, PT_LOG_WARNING,
			          "%s:%u needs TLS but ssl_cert/ssl_key are not set: closing connection from %s",
			          l->info.addr, l->info.port, peer);
			pt_conn_close(c, "error: TLS unavailable");
			return;
		}
		pt_conn_set_handlers(c, &hs, NULL);
		/* A deadline, not an idle timeout: a client trickling one byte at
		 * a time must not hold the handshake open. */
		pt_conn_set_deadline(c, TLS_HANDSHAKE_TIMEOUT_MS);
		pt_conn_tls_accept(c, on_handshake_done, l);
		return;
	}
	l->decl->on_accept(c, &l->info);
}

static void
accept_ready(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	struct listener *l = arg;

	(void)loop;
	(void)events;
	for (int i = 0; i < ACCEPT_BATCH && !l->stopped; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				accept_pause(l, errno);
			else if (errno != EAGAIN && errno != EWOULDBLOCK)
				pt_log_as(l->info.service, PT_LOG_WARNING, "accept on %s:%u: %s",
				          l->info.addr, l->info.port, strerror(errno));
			return;
		}
		accept_one(l, cfd);
	}
}

static long long
conf_int_opt(const struct pt_config *conf, const char *name)
{
	return pt_config_owner(conf, name) ? pt_conf_int(conf, name) : 0;
}

/* mynetworks_style's networks from this host's interfaces: "host" gives
 * each address, "subnet" (and the obsolete "class") its subnet. */
static int
style_networks(const char *style, struct pt_cidr_list *out)
{
	struct ifaddrs *ifa, *i;
	int subnet = strcmp(style, "host") != 0;

	if (getifaddrs(&ifa) < 0)
		return -1;
	for (i = ifa; i; i = i->ifa_next) {
		struct pt_cidr net, *nv;
		const unsigned char *a, *m;
		size_t alen;

		if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
			continue;
		memset(&net, 0, sizeof net);
		net.family = i->ifa_addr->sa_family;
		if (net.family == AF_INET) {
			a = (const unsigned char *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr;
			m = i->ifa_netmask ? (const unsigned char *)&((struct sockaddr_in *)i->ifa_netmask)->sin_addr : NULL;
			alen = 4;
		} else {
			a = (const unsigned char *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
			m = i->ifa_netmask ? (const unsigned char *)&((struct sockaddr_in6 *)i->ifa_netmask)->sin6_addr : NULL;
			alen = 16;
		}
		net.prefix = subnet && m ? 0 : (int)alen * 8;
		for (size_t k = 0; k < alen; k++) {
			net.addr[k] = subnet && m ? a[k] & m[k] : a[k];
			if (subnet && m)
				net.prefix += __builtin_popcount(m[k]);
		}
		nv = realloc(out->v, (out->n + 1) * sizeof *nv);
		if (!nv) {
			freeifaddrs(ifa);
			return -1;
		}
		out->v = nv;
		out->v[out->n++] = net;
	}
	freeifaddrs(ifa);
	return 0;
}

/* mynetworks as the restrict module reads it: a CIDR list, a style word,
 * or (unset) mynetworks_style. Empty on any error: then nobody gets the
 * reserve, which only makes the limits stricter. */
static void
trusted_networks(const struct pt_config *conf, struct pt_cidr_list *out)
{
	const char *v = pt_config_owner(conf, "mynetworks") ? pt_conf_str(conf, "mynetworks") : "";
	const char *style = pt_config_owner(conf, "mynetworks_style") ? pt_conf_str(conf, "mynetworks_style")
	                                                              : "host";
	char word[16] = "", err[200];

	out->n = 0;
	out->v = NULL;
	if (!v)
		v = "";
	if (sscanf(v, " %15s", word) == 1 &&
	    (strcmp(word, "host") == 0 || strcmp(word, "subnet") == 0 || strcmp(word, "class") == 0))
		style = word;
	else if (v[strspn(v, " \t,")] != '\0') {
		if (pt_cidr_list_parse(v, out, err, sizeof err) < 0)
			pt_log(PT_LOG_WARNING, "mynetworks: %s: no connection slots reserved", err);
		return;
	} else if (pt_conf_isset(conf, "mynetworks")) {
		return;  /* set to empty: nobody is trusted */
	}
	if (style_networks(style, out) < 0)
		pt_cidr_list_free(out);
}

/* Same labels in every generation: the counters go on across reloads. */
static void
listener_metrics(struct listener *l)
{
	char where[80];
	const char *svc = l->info.service;

	format_hostport(where, sizeof where, l->info.addr, l->info.port);
	l->m_total = pt_metric_counter("postern_connections", "connections accepted (refused ones included)",
	                               "service", svc, "listener", where, NULL);
	l->m_open = pt_metric_gauge("postern_connections_open", "connections open now", "service", svc,
	                            "listener", where, NULL);
	l->m_refused_service = pt_metric_counter("postern_connections_refused", "connections refused by a limit",
	                                         "service", svc, "listener", where, "limit",
	                                         "service_connection_limit", NULL);
	l->m_refused_client = pt_metric_counter("postern_connections_refused", "connections refused by a limit",
	                                        "service", svc, "listener", where, "limit",
	                                        "client_connection_limit", NULL);
}

int
pt_listen_start(struct pt_loop *loop, const struct pt_config *conf,
                struct pt_listen_sock *socks, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct listener *l;

		if (socks[i].fd < 0 || !socks[i].decl)
			continue;
		l = calloc(1, sizeof *l);
		if (!l)
			return -1;
		l->info = socks[i].info;
		l->decl = socks[i].decl;
		l->loop = loop;
		l->fd = socks[i].fd;
		l->refs = 1;  /* held by the listener list until stopped */
		l->service_limit = conf_int_opt(conf, "service_connection_limit");
		l->client_limit = conf_int_opt(conf, "client_connection_limit");
		l->reserve = conf_int_opt(conf, "mynetworks_reserved_connections");
		trusted_networks(conf, &l->trusted);
		listener_metrics(l);
		if (pt_loop_watch(loop, l->fd, PT_EV_READ, accept_ready, l) < 0) {
			pt_log(PT_LOG_ERROR, "cannot watch %s:%u: %s", l->info.addr, l->info.port,
			       strerror(errno));
			listener_free(l);
			return -1;
		}
		l->next = listeners;
		listeners = l;
	}
	return 0;
}

void
pt_listen_stop(struct pt_loop *loop)
{
	struct listener **pp = &listeners;

	while (*pp) {
		struct listener *l = *pp;

		if (l->loop != loop) {
			pp = &l->next;
			continue;
		}
		*pp = l->next;
		pt_loop_unwatch(loop, l->fd);
		if (l->resume_timer)
			pt_timer_cancel(loop, l->resume_timer);
		l->resume_timer = NULL;
		l->stopped = 1;
		listener_unref(l);
	}
}

/* ---------- config check ---------- */

struct endpoint {
	unsigned char bin[16];
	int fam;
	unsigned port;
	int wildcard;
	const char *param;
	char shown[96];
};

/* Would a bind of b fail because a is bound? Same family and port, and
 * the same address or either one the wildcard (Linux refuses an address
 * beside a listening wildcard even with SO_REUSEADDR; IPV6_V6ONLY keeps
 * the families apart). */
static int
endpoints_collide(const struct endpoint *a, const struct endpoint *b)
{
	if (a->fam != b->fam || a->port != b->port)
		return 0;
	return a->wildcard || b->wildcard ||
	       memcmp(a->bin, b->bin, a->fam == AF_INET ? 4 : 16) == 0;
}

static int
check_one_addr(const struct pt_config *conf, const char *param, const char *addr, unsigned port,
               struct endpoint **v, size_t *n)
{
	struct endpoint e;
	memset(&e, 0, sizeof e);
	e.fam = family_of(addr);
	if (inet_pton(e.fam, addr, e.bin) != 1)
		return 0;      /* not an address: the value check said so */
	static const unsigned char zero[16];
	e.wildcard = memcmp(e.bin, zero, e.fam == AF_INET ? 4 : 16) == 0;
	e.port = port;
	e.param = param;
	format_hostport(e.shown, sizeof e.shown, addr, port);
	for (size_t i = 0; i < *n; i++) {
		const struct endpoint *o = &(*v)[i];
		if (!endpoints_collide(o, &e))
			continue;
		if (o->param == param)
			pt_conf_error(conf, param, "%s: %s collides with %s in the same list", param, e.shown,
			              o->shown);
		else
			pt_conf_error(conf, param, "%s: %s collides with %s of %s (line %d): two listeners cannot "
			              "share an address and port", param, e.shown, o->shown, o->param,
			              pt_conf_line(conf, o->param));
		return 1;
	}
	struct endpoint *nv = realloc(*v, (*n + 1) * sizeof *nv);
	if (nv == NULL)
		return 0;
	*v = nv;
	nv[(*n)++] = e;
	return 0;
}

int
pt_listen_check(const struct pt_config *conf)
{
	struct endpoint *v = NULL;
	size_t n = 0;
	int v4, v6, all, errors = 0;

	allowed_families(conf, &v4, &v6, &all);
	for (size_t m = 0; m < pt_modules_count(); m++) {
		const struct pt_module *mod = pt_modules_get(m);
		if (!pt_protocol_enabled(conf, mod->name))
			continue;
		for (const struct pt_listener_decl *d = mod->listeners; d && d->param; d++) {
			if (pt_config_owner(conf, d->param) == NULL)
				continue;
			const struct pt_hostport_list *hps = pt_conf_hostports(conf, d->param);
			int reported = 0;
			for (size_t i = 0; i < hps->n && !reported; i++) {
				struct bind_addr one, *addrs = &one;
				size_t naddrs = 1;
				if (hps->v[i].host[0]) {
					memset(&one, 0, sizeof one);
					copy_addr(one.addr, sizeof one.addr, hps->v[i].host);
				} else if ((naddrs = interface_addrs(conf, &addrs)) == 0) {
					continue;
				}
				for (size_t a = 0; a < naddrs && !reported; a++) {
					int fam = family_of(addrs[a].addr);
					if ((fam == AF_INET && !v4) || (fam == AF_INET6 && !v6))
						continue;
					reported = check_one_addr(conf, d->param, addrs[a].addr, hps->v[i].port, &v, &n);
				}
				if (addrs != &one)
					free(addrs);
			}
			errors += reported;
		}
	}
	free(v);
	return errors;
}
