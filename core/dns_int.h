/* Core-internal side of the resolver: where queries go, the wire format
 * (exposed for unit tests and fuzzing), and teardown. */
#ifndef POSTERN_DNS_INT_H
#define POSTERN_DNS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "postern/dns.h"

/* Name servers as "IP", "IP:PORT" or "[IPv6]:PORT"; n == 0 goes back to
 * dns_servers of the live config, else /etc/resolv.conf. 0, or -1 when an
 * entry is not an address (nothing changes then). */
int pt_dns_set_servers(const char *const *servers, size_t n);
/* Per-attempt timeout and attempts per server (defaults 2000 ms, 2). */
void pt_dns_set_timeout(unsigned ms, unsigned attempts);

/* A query message for name/type with id; returns its length or -1. */
int pt_dns_build_query(unsigned char *buf, size_t buflen, uint16_t id, const char *name,
                       enum pt_dns_type type);
/* Parse a response. qname NULL skips the question check. Fills out
 * (out->rr malloc'd; free with pt_dns_answer_free) and returns 0; *rcode
 * and *truncated (may be NULL) tell the header's RCODE and TC bit. -1 for
 * a malformed message or one that does not answer this question. */
int pt_dns_parse_response(const unsigned char *msg, size_t len, const char *qname,
                          enum pt_dns_type qtype, struct pt_dns_answer *out, int *rcode,
                          int *truncated);
void pt_dns_answer_free(struct pt_dns_answer *a);

/* Drop every pending query without calling back (process exit, tests). */
void pt_dns_shutdown(void);

#endif
