/* Routing a recipient as Postfix's trivial-rewrite does: transport_maps in
 * transport(5)'s lookup order, then mydestination / relay_domains /
 * default_transport. The result names a transport; which module carries
 * it out is the queue's business (postern/transport.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/address.h"
#include "transport.h"

static void
route_copy(char *dst, size_t dstlen, const char *s, size_t n)
{
	if (n >= dstlen)
		n = dstlen - 1;
	memcpy(dst, s, n);
	dst[n] = 0;
}

static int
route_port(const char *s, unsigned *port)
{
	static const struct { const char *name; unsigned port; } svc[] = {
		{ "smtp", 25 }, { "submission", 587 }, { "smtps", 465 }, { "submissions", 465 },
	};
	if (!*s)
		return -1;
	if (isdigit((unsigned char)*s)) {
		unsigned long v = 0;
		for (const char *p = s; *p; p++) {
			if (!isdigit((unsigned char)*p))
				return -1;
			v = v * 10 + (unsigned)(*p - '0');
			if (v > 65535)
				return -1;
		}
		if (v == 0)
			return -1;
		*port = (unsigned)v;
		return 0;
	}
	for (size_t i = 0; i < sizeof(svc) / sizeof(svc[0]); i++)
		if (strcmp(s, svc[i].name) == 0) {
			*port = svc[i].port;
			return 0;
		}
	return -1;
}

static int
route_host_ok(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':'))
			return 0;
	}
	return 1;
}

int
transport_parse_nexthop(const char *s, char *host, size_t hostlen, unsigned *port)
{
	*port = 25;
	const char *portstr = NULL;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close)
			return -1;
		const char *h = s + 1;
		size_t hl = (size_t)(close - h);
		if (hl > 5 && strncasecmp(h, "ipv6:", 5) == 0) {
			h += 5;
			hl -= 5;
		}
		if (!route_host_ok(h, hl) || hl + 3 > hostlen)
			return -1;
		host[0] = '[';
		memcpy(host + 1, h, hl);
		host[hl + 1] = ']';
		host[hl + 2] = 0;
		if (close[1] == ':')
			portstr = close + 2;
		else if (close[1])
			return -1;
	} else {
		const char *colon = strchr(s, ':');
		size_t hl = colon ? (size_t)(colon - s) : strlen(s);
		if (!route_host_ok(s, hl) || memchr(s, ':', hl) || hl >= hostlen)
			return -1;
		route_copy(host, hostlen, s, hl);
		if (colon)
			portstr = colon + 1;
	}
	if (portstr && route_port(portstr, port) < 0)
		return -1;
	return 0;
}

/* A route the queue defers with this text (Postfix's retry transport). */
static void
route_retry(struct pt_route *out, const char *fmt, const char *what)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->transport, sizeof(out->transport), "retry");
	snprintf(out->nexthop, sizeof(out->nexthop), fmt, what);
}

/* A transport name: what a module may register (letters, digits, - _). */
static int
route_transport_ok(const char *t)
{
	if (!*t)
		return 0;
	for (; *t; t++)
		if (!(isalnum((unsigned char)*t) || *t == '-' || *t == '_'))
			return 0;
	return 1;
}

int
transport_parse_result(const char *value, const char *class_default, const char *domain,
                       const char *relayhost, struct pt_route *out)
{
	memset(out, 0, sizeof(*out));
	while (isspace((unsigned char)*value))
		value++;
	const char *colon = strchr(value, ':');
	size_t tl = colon ? (size_t)(colon - value) : strlen(value);
	char transport[sizeof(out->transport)];
	if (tl >= sizeof(transport)) {
		route_retry(out, "4.3.5 invalid transport in \"%.100s\"", value);
		return -1;
	}
	route_copy(transport, sizeof(transport), value, tl);
	char nexthop[300] = "";
	if (colon) {
		const char *nh = colon + 1;
		size_t nl = strlen(nh);
		while (nl && isspace((unsigned char)nh[nl - 1]))
			nl--;
		route_copy(nexthop, sizeof(nexthop), nh, nl);
	}
	if (!transport[0]) {
		/* ":nexthop" keeps the transport the class would have had */
		if (!class_default || !*class_default || strchr(class_default, ':') == class_default)
			class_default = "smtp";
		struct pt_route base;
		if (transport_parse_result(class_default, NULL, domain, relayhost, &base) < 0) {
			*out = base;
			return -1;
		}
		if (!nexthop[0]) {
			*out = base;
			return 0;
		}
		const char *bc = strchr(class_default, ':');
		size_t bl = bc ? (size_t)(bc - class_default) : strlen(class_default);
		char rebuilt[400];
		snprintf(rebuilt, sizeof(rebuilt), "%.*s:%s", (int)bl, class_default, nexthop);
		return transport_parse_result(rebuilt, NULL, domain, relayhost, out);
	}
	for (char *p = transport; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (!route_transport_ok(transport)) {
		route_retry(out, "4.3.5 invalid transport in \"%.100s\"", value);
		return -1;
	}
	snprintf(out->transport, sizeof(out->transport), "%s", transport);
	if (strcmp(transport, "smtp") == 0 || strcmp(transport, "relay") == 0) {
		/* The SMTP client's next hop, checked here so a bad one is a
		 * configuration error, and written out with its port. */
		const char *nh = nexthop[0] ? nexthop : relayhost && *relayhost ? relayhost : domain;
		char host[256];
		unsigned port;
		if (!nh || !*nh) {
			route_retry(out, "4.3.5 no next hop for %s", transport);
			return -1;
		}
		if (transport_parse_nexthop(nh, host, sizeof(host), &port) < 0) {
			route_retry(out, "4.3.5 invalid next hop \"%.100s\"", nh);
			return -1;
		}
		snprintf(out->nexthop, sizeof(out->nexthop), "%s:%u", host, port);
		return 0;
	}
	/* local, error, retry, discard and module transports: the nexthop
	 * is theirs to read; empty means the domain (error(8) reports it). */
	snprintf(out->nexthop, sizeof(out->nexthop), "%.255s", nexthop[0] ? nexthop : domain);
	return 0;
}

static int
route_lookup(const struct transport_conf *c, const char *key, char **value)
{
	int temp = 0;
	*value = pt_map_list_lookup(c->maps, key, &temp, NULL);
	if (*value)
		return 1;
	return temp ? -1 : 0;
}

/* Try the transport(5) keys in order; 1 found, 0 none, -1 lookup failure. */
static int
route_find(const struct transport_conf *c, const char *local, const char *domain, char **value)
{
	char key[600];
	int rc;
	if (*domain) {
		snprintf(key, sizeof(key), "%s@%s", local, domain);
		if ((rc = route_lookup(c, key, value)) != 0)
			return rc;
		size_t base = pt_local_base_len(local, c->delim);
		if (base) {
			snprintf(key, sizeof(key), "%.*s@%s", (int)base, local, domain);
			if ((rc = route_lookup(c, key, value)) != 0)
				return rc;
		}
		if ((rc = route_lookup(c, domain, value)) != 0)
			return rc;
		/* sub.example.com matches ".example.com", then ".com" */
		for (const char *p = strchr(domain, '.'); p; p = strchr(p + 1, '.'))
			if ((rc = route_lookup(c, p, value)) != 0)
				return rc;
	}
	return route_lookup(c, "*", value);
}

int
transport_route(const struct transport_conf *c, const char *address, struct pt_route *out)
{
	memset(out, 0, sizeof(*out));
	char local[300], domain[300];
	const char *at = strrchr(address, '@');
	if (at) {
		route_copy(local, sizeof(local), address, (size_t)(at - address));
		snprintf(domain, sizeof(domain), "%s", at + 1);
	} else {
		snprintf(local, sizeof(local), "%s", address);
		domain[0] = 0;
	}
	size_t dl = strlen(domain);
	if (dl && domain[dl - 1] == '.')
		domain[--dl] = 0;
	for (char *p = domain; *p; p++)
		*p = (char)tolower((unsigned char)*p);

	int is_local = !domain[0] || pt_domain_is_local(domain);
	int is_relay = !is_local && pt_domain_is_relay(domain);
	const char *class_default = is_local ? "local"
	                          : is_relay ? c->relay_transport : c->default_transport;
	const char *relayhost = is_local ? "" : c->relayhost;

	char *value = NULL;
	int rc = route_find(c, local, domain, &value);
	if (rc < 0) {
		route_retry(out, "%s", "4.3.0 transport table lookup failure");
		return -1;
	}
	if (rc > 0) {
		transport_parse_result(value, class_default, domain, relayhost, out);
		free(value);
		return 0;
	}
	transport_parse_result(class_default, NULL, domain, relayhost, out);
	return 0;
}
