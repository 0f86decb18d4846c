/* Internals of the transport module shared by its files and its unit
 * tests (not an ABI: no other module includes it). */
#ifndef TRANSPORT_H
#define TRANSPORT_H

#include <stddef.h>

#include "postern/map.h"
#include "postern/services.h"
#include "postern/transport.h"

struct transport_conf {
	struct pt_map_list *maps;     /* transport_maps, in order */
	char default_transport[300];  /* "smtp", "error", "smtp:[relay]:25" */
	char relay_transport[300];    /* for relay_domains */
	char relayhost[256];          /* "" = the recipient domain (MX) */
	char delim[16];               /* recipient_delimiter */
};

/* transport(5) lookup: user+ext@domain, user@domain, domain, .parent
 * domains, then *; without a match mydestination is local, relay_domains
 * take relay_transport, the rest default_transport. 0 (out filled) or -1
 * when a map could not be consulted (out is then a "retry" route). */
int transport_route(const struct transport_conf *c, const char *address, struct pt_route *out);

/* The connectionless transports (transport_simple.c). */
extern const struct pt_transport_ops transport_error_ops, transport_retry_ops, transport_discard_ops;

/* Turn "transport:nexthop" into a route. An empty nexthop means the
 * default one (smtp/relay: relayhost, else the domain, written out as
 * "host:port"; others: the domain); an empty transport means
 * class_default (itself "transport[:nexthop]"). Any transport name is
 * taken: a module may provide it. 0, or -1 when value is malformed (out
 * is then a "retry" route naming the problem). */
int transport_parse_result(const char *value, const char *class_default, const char *domain,
                           const char *relayhost, struct pt_route *out);

/* "[host]:port", "[host]", "host:port", "host" -> nexthop ("[host]" keeps
 * the brackets: no MX lookup) and port (25 when absent). 0 or -1. */
int transport_parse_nexthop(const char *s, char *host, size_t hostlen, unsigned *port);

#endif
