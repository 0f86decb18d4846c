/* Restriction items that ask the DNS: unknown HELO host, unknown sender or
 * recipient domain, unknown client host names, DNSBLs. Each lookup goes
 * out through pt_dns_query and the walk resumes from its callback. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "eval.h"
#include "postern/dns.h"
#include "postern/log.h"

#define ADDR_MAX 1024

static const struct restrict_item *
current_item(struct restrict_eval *e, const struct restrict_chain **ch)
{
	*ch = &e->s->chains[e->order[e->oi]];
	return &(*ch)->v[e->ii];
}

static void dns_answer(void *arg, const struct pt_dns_answer *ans);

static enum item_result
ask(struct restrict_eval *e, const char *name, enum pt_dns_type type)
{
	if (pt_dns_query(e->loop, name, type, dns_answer, e) < 0) {
		e->dns_tempfail = 1;
		return R_NEXT;        /* the caller treats it as a failed lookup */
	}
	return R_PENDING;
}

/* Which record types prove that a name exists, in asking order. */
static const enum pt_dns_type helo_types[] = { PT_DNS_A, PT_DNS_AAAA, PT_DNS_MX };
static const enum pt_dns_type domain_types[] = { PT_DNS_MX, PT_DNS_A, PT_DNS_AAAA };

static int
is_literal_or_ip(const char *s)
{
	struct in_addr a;
	struct in6_addr a6;
	return s[0] == '[' || inet_pton(AF_INET, s, &a) == 1 || inet_pton(AF_INET6, s, &a6) == 1;
}

/* The reply for a name that was not found (or could not be checked). */
static enum item_result
exists_verdict(struct restrict_eval *e, const struct restrict_item *it)
{
	const struct pt_policy_request *r = &e->req;
	if (e->dns_found)
		return R_NEXT;
	const char *subject, *what;
	const char *code = "450 4.1.8";
	switch (it->kind) {
	case RI_REJECT_UNKNOWN_HELO:
		subject = r->helo_name;
		what = "Helo command rejected: Host not found";
		code = "450 4.7.1";
		break;
	case RI_REJECT_UNKNOWN_SENDER_DOMAIN:
		subject = r->sender;
		what = "Sender address rejected: Domain not found";
		break;
	default:
		subject = r->recipient;
		what = "Recipient address rejected: Domain not found";
		code = "450 4.1.2";
		break;
	}
	if (e->dns_tempfail) {
		/* Postfix's unknown_address_tempfail_action: defer_if_permit. */
		RS_SNPRINTF(e->defer_if_permit, "450 4.4.3 <%s>: %s", subject, what);
		RS_SNPRINTF(e->note, "DNS temporary failure: DEFER_IF_PERMIT");
		return R_NEXT;
	}
	RS_SNPRINTF(e->reply, "%s <%s>: %s", code, subject, what);
	return R_REJECT;
}

static enum item_result
exists_next(struct restrict_eval *e, const struct restrict_item *it)
{
	const enum pt_dns_type *types = it->kind == RI_REJECT_UNKNOWN_HELO ? helo_types : domain_types;
	while (!e->dns_found && e->dns_step < 3) {
		enum item_result r = ask(e, e->dns_name, types[e->dns_step]);
		if (r == R_PENDING)
			return r;
		e->dns_step++;
	}
	return exists_verdict(e, it);
}

static void
client_reply(struct restrict_eval *e, int reverse)
{
	snprintf(e->reply, sizeof e->reply,
	         "450 4.7.25 Client host rejected: cannot find your %shostname, [%s]",
	         reverse ? "reverse " : "", e->req.client_address ? e->req.client_address : "unknown");
}

static enum item_result
rbl_start(struct restrict_eval *e, const struct restrict_item *it)
{
	const char *addr = e->req.client_address;
	char rev[256];
	if (addr == NULL || pt_dns_reverse_name(addr, rev, sizeof rev) < 0)
		return R_NEXT;
	/* "4.3.2.1.in-addr.arpa" -> "4.3.2.1.<rbl domain>" */
	char *suffix = strstr(rev, ".in-addr.arpa");
	if (suffix == NULL)
		suffix = strstr(rev, ".ip6.arpa");
	if (suffix == NULL)
		return R_NEXT;
	*suffix = '\0';
	size_t dlen = strcspn(it->arg, "=");
	RS_SNPRINTF(e->dns_name, "%s.%.*s", rev, (int)dlen, it->arg);
	e->dns_step = 0;
	return ask(e, e->dns_name, PT_DNS_A);
}

/* Continue the current item with a DNS answer; returns its result or
 * R_PENDING when another lookup went out. */
static enum item_result
step(struct restrict_eval *e, const struct restrict_item *it, const struct pt_dns_answer *ans)
{
	const char *addr = e->req.client_address ? e->req.client_address : "";
	switch (it->kind) {
	case RI_REJECT_UNKNOWN_HELO:
	case RI_REJECT_UNKNOWN_SENDER_DOMAIN:
	case RI_REJECT_UNKNOWN_RECIPIENT_DOMAIN:
		if (ans->status == PT_DNS_OK && ans->n > 0) {
			e->dns_found = 1;
		} else if (ans->status == PT_DNS_NXDOMAIN) {
			e->dns_step = 3;       /* the name does not exist at all */
			return exists_verdict(e, it);
		} else if (ans->status == PT_DNS_TEMPFAIL) {
			e->dns_tempfail = 1;
		}
		e->dns_step++;
		return exists_next(e, it);
	case RI_REJECT_UNKNOWN_REVERSE_CLIENT_HOSTNAME:
		if (ans->status == PT_DNS_OK && ans->n > 0)
			return R_NEXT;
		client_reply(e, 1);
		return R_REJECT;
	case RI_REJECT_UNKNOWN_CLIENT_HOSTNAME:
		if (e->dns_step == 0) {
			if (ans->status != PT_DNS_OK || ans->n == 0) {
				client_reply(e, 0);
				return R_REJECT;
			}
			/* The name must map back to the client's address. */
			RS_SNPRINTF(e->dns_name, "%s", ans->rr[0].text);
			e->dns_step = 1;
			return ask(e, e->dns_name, strchr(addr, ':') ? PT_DNS_AAAA : PT_DNS_A);
		}
		if (ans->status == PT_DNS_OK) {
			struct sockaddr_storage want, got;
			if (restrict_sockaddr_parse(addr, &want) == 0)
				for (size_t i = 0; i < ans->n; i++)
					if (restrict_sockaddr_parse(ans->rr[i].text, &got) == 0 &&
					    want.ss_family == got.ss_family &&
					    (want.ss_family == AF_INET
					     ? memcmp(&((struct sockaddr_in *)&want)->sin_addr,
					              &((struct sockaddr_in *)&got)->sin_addr, 4) == 0
					     : memcmp(&((struct sockaddr_in6 *)&want)->sin6_addr,
					              &((struct sockaddr_in6 *)&got)->sin6_addr, 16) == 0)) {
						RS_SNPRINTF(e->note, "%s", e->dns_name);
						return R_NEXT;
					}
		}
		client_reply(e, 0);
		return R_REJECT;
	case RI_REJECT_RBL_CLIENT: {
		if (e->dns_step == 0) {
			if (ans->status != PT_DNS_OK || ans->n == 0)
				return R_NEXT;   /* listed nowhere, or DNSBL down: go on */
			const char *filter = strchr(it->arg, '=');
			int hit = filter == NULL;
			for (size_t i = 0; !hit && i < ans->n; i++)
				hit = strcmp(ans->rr[i].text, filter + 1) == 0;
			if (!hit)
				return R_NEXT;
			RS_SNPRINTF(e->dns_extra, "%s", ans->rr[0].text);
			e->dns_step = 1;
			return ask(e, e->dns_name, PT_DNS_TXT);
		}
		size_t dlen = strcspn(it->arg, "=");
		char reason[300] = "";
		if (ans->status == PT_DNS_OK && ans->n > 0) {
			size_t o = 0;
			for (const char *p = ans->rr[0].text; *p && o + 1 < sizeof reason; p++)
				reason[o++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
			reason[o] = '\0';
		}
		snprintf(e->reply, sizeof e->reply,
		         "554 5.7.1 Service unavailable; Client host [%s] blocked using %.*s%s%s", addr,
		         (int)dlen, it->arg, reason[0] ? "; " : "", reason);
		return R_REJECT;
	}
	default:
		return R_NEXT;
	}
}

static void
dns_answer(void *arg, const struct pt_dns_answer *ans)
{
	struct restrict_eval *e = arg;
	const struct restrict_chain *ch;
	const struct restrict_item *it = current_item(e, &ch);
	enum item_result r = step(e, it, ans);
	if (r != R_PENDING)
		restrict_eval_item_done(e, r);
}

enum item_result
restrict_item_dns(struct restrict_eval *e, const struct restrict_chain *ch,
                  const struct restrict_item *it)
{
	(void)ch;
	const struct pt_policy_request *r = &e->req;
	char local[ADDR_MAX + 1], domain[ADDR_MAX + 1];
	int has_domain;
	e->dns_step = 0;
	e->dns_found = 0;
	e->dns_tempfail = 0;
	switch (it->kind) {
	case RI_REJECT_UNKNOWN_HELO:
		if (r->helo_name == NULL || *r->helo_name == '\0' || is_literal_or_ip(r->helo_name) ||
		    restrict_helo_invalid(r->helo_name))
			return R_NEXT;
		RS_SNPRINTF(e->dns_name, "%s", r->helo_name);
		return exists_next(e, it);
	case RI_REJECT_UNKNOWN_SENDER_DOMAIN:
	case RI_REJECT_UNKNOWN_RECIPIENT_DOMAIN: {
		const char *a = it->kind == RI_REJECT_UNKNOWN_SENDER_DOMAIN ? r->sender : r->recipient;
		if (a == NULL || *a == '\0' ||
		    restrict_addr_split(a, local, sizeof local, domain, sizeof domain, &has_domain) < 0 ||
		    !has_domain || domain[0] == '\0' || domain[0] == '[')
			return R_NEXT;
		/* Never for a domain we are the final destination (or relay) for. */
		if (pt_domain_is_local(domain) || pt_domain_is_relay(domain))
			return R_NEXT;
		RS_SNPRINTF(e->dns_name, "%s", domain);
		return exists_next(e, it);
	}
	case RI_REJECT_UNKNOWN_REVERSE_CLIENT_HOSTNAME:
	case RI_REJECT_UNKNOWN_CLIENT_HOSTNAME: {
		int reverse = it->kind == RI_REJECT_UNKNOWN_REVERSE_CLIENT_HOSTNAME;
		/* Trust what the SMTP server already found, when it says. */
		const char *known = reverse ? r->reverse_client_name : r->client_name;
		if (known != NULL) {
			if (*known && strcmp(known, "unknown") != 0)
				return R_NEXT;
			client_reply(e, reverse);
			return R_REJECT;
		}
		char rev[256];
		if (r->client_address == NULL ||
		    pt_dns_reverse_name(r->client_address, rev, sizeof rev) < 0) {
			client_reply(e, reverse);
			return R_REJECT;
		}
		enum item_result res = ask(e, rev, PT_DNS_PTR);
		if (res != R_PENDING) {
			client_reply(e, reverse);
			return R_REJECT;
		}
		return res;
	}
	case RI_REJECT_RBL_CLIENT:
		return rbl_start(e, it);
	default:
		return R_NEXT;
	}
}
