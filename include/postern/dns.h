/* Non-blocking DNS: queries go out on UDP (TCP on truncation) to
 * dns_servers or /etc/resolv.conf's nameservers; answers come back as a
 * callback on the loop. */
#ifndef POSTERN_DNS_H
#define POSTERN_DNS_H

#include <stddef.h>

struct pt_loop;

enum pt_dns_type { PT_DNS_A = 1, PT_DNS_NS = 2, PT_DNS_CNAME = 5, PT_DNS_PTR = 12,
	PT_DNS_MX = 15, PT_DNS_TXT = 16, PT_DNS_AAAA = 28 };
enum pt_dns_status { PT_DNS_OK, PT_DNS_NXDOMAIN, PT_DNS_NODATA, PT_DNS_TEMPFAIL };

struct pt_dns_rr {
	enum pt_dns_type type;
	unsigned pref;                /* MX preference */
	char text[256];               /* A/AAAA printable address, PTR/MX/CNAME name, TXT */
};
struct pt_dns_answer {
	enum pt_dns_status status;
	size_t n;
	struct pt_dns_rr *rr;
};

typedef void pt_dns_cb(void *arg, const struct pt_dns_answer *ans);
/* Start a lookup; cb runs later on loop (never before return). 0 or -1. */
int pt_dns_query(struct pt_loop *loop, const char *name, enum pt_dns_type type, pt_dns_cb *cb, void *arg);
/* Reverse name for an address: "2.0.0.127.in-addr.arpa" / ip6.arpa. */
int pt_dns_reverse_name(const char *addr, char *out, size_t outlen);

#endif
