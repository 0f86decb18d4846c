/* Envelope addresses and HELO names as the restrictions see them: splitting
 * with quoting and source routes, host name syntax, and the relay test
 * that every sender-specified routing trick must fail. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "restrict.h"

#define ADDR_MAX 1024
#define ROUTE_DEPTH_MAX 8

int
restrict_addr_split(const char *addr, char *local, size_t locallen, char *domain,
                    size_t domainlen, int *has_domain)
{
	const char *a = addr;
	/* RFC 5321 source route "@a,@b:user@c": the route is ignored, as
	 * RFC 5321 section 3.6.1 allows and Postfix does. */
	if (*a == '@') {
		const char *colon = strchr(a, ':');
		if (colon == NULL)
			return -1;
		a = colon + 1;
	}
	size_t n = strlen(a);
	if (n > ADDR_MAX)
		return -1;
	int inq = 0;
	size_t at = n;
	for (size_t i = 0; i < n; i++) {
		char ch = a[i];
		if (inq) {
			if (ch == '\\' && i + 1 < n)
				i++;
			else if (ch == '"')
				inq = 0;
		} else if (ch == '"') {
			inq = 1;
		} else if (ch == '@') {
			at = i;
		}
	}
	if (inq)
		return -1;
	/* Unquote the local part: what the mailbox name really is. */
	size_t o = 0;
	inq = 0;
	for (size_t i = 0; i < at; i++) {
		char ch = a[i];
		if (ch == '"') {
			inq = !inq;
			continue;
		}
		if (inq && ch == '\\' && i + 1 < at)
			ch = a[++i];
		if (o + 1 >= locallen)
			return -1;
		local[o++] = ch;
	}
	local[o] = '\0';
	*has_domain = at < n;
	const char *d = at < n ? a + at + 1 : "";
	size_t dlen = strlen(d);
	if (dlen > 0 && d[dlen - 1] == '.')
		dlen--;
	if (dlen + 1 > domainlen)
		return -1;
	for (size_t i = 0; i < dlen; i++)
		domain[i] = (char)tolower((unsigned char)d[i]);
	domain[dlen] = '\0';
	return 0;
}

/* A domain we would compare against our lists: a host name, nothing else
 * (no literal, no quotes, no second trailing dot). */
static int
domain_plain(const char *d)
{
	if (*d == '\0' || *d == '.' || *d == '[')
		return 0;
	for (const char *p = d; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (!(isalnum(ch) || ch == '-' || ch == '_' || ch == '.'))
			return 0;
		if (ch == '.' && (p[1] == '.' || p[1] == '\0'))
			return 0;
	}
	return 1;
}

static int
has_routing(const char *local)
{
	return strpbrk(local, "@%!") != NULL;
}

/* Rewrite a local part that carries its own destination into an address:
 * "u@h" stays, "u%h" -> "u@h" (rightmost %), "h!u" -> "u@h" (first !). */
static int
unroute(const char *local, char *out, size_t outlen)
{
	if (strchr(local, '@') != NULL)
		return snprintf(out, outlen, "%s", local) < (int)outlen ? 0 : -1;
	const char *pct = strrchr(local, '%');
	if (pct != NULL)
		return snprintf(out, outlen, "%.*s@%s", (int)(pct - local), local, pct + 1) <
		       (int)outlen ? 0 : -1;
	const char *bang = strchr(local, '!');
	if (bang != NULL)
		return snprintf(out, outlen, "%s@%.*s", bang + 1, (int)(bang - local), local) <
		       (int)outlen ? 0 : -1;
	return -1;
}

static int
authorized(const char *addr, int depth)
{
	char local[ADDR_MAX + 1], domain[ADDR_MAX + 1];
	int has_domain;
	if (depth > ROUTE_DEPTH_MAX)
		return 0;
	if (restrict_addr_split(addr, local, sizeof local, domain, sizeof domain, &has_domain) < 0)
		return 0;
	int is_local;
	if (!has_domain)
		is_local = 1;          /* Postfix appends $myorigin: one of ours */
	else if (!domain_plain(domain))
		return 0;
	else
		is_local = pt_domain_is_local(domain);
	if (is_local) {
		/* Our own domain: the mail stays here unless the local part
		 * routes it on (user%other@us, other!user@us, "u@other"@us);
		 * then the inner destination decides. */
		if (!has_routing(local))
			return 1;
		char inner[ADDR_MAX + 1];
		if (unroute(local, inner, sizeof inner) < 0)
			return 0;
		return authorized(inner, depth + 1);
	}
	if (pt_domain_is_relay(domain))
		return !has_routing(local);   /* allow_untrusted_routing = no */
	return 0;
}

int
restrict_rcpt_is_authorized(const char *addr)
{
	if (addr == NULL || *addr == '\0')
		return 0;
	return authorized(addr, 0);
}

static int
valid_ipv4(const char *s)
{
	struct in_addr a;
	return inet_pton(AF_INET, s, &a) == 1;
}

/* Postfix's valid_hostname(): labels of letters, digits, '-' and '_',
 * at most 63 bytes each, no leading or trailing '-', not all numeric,
 * at most 255 bytes in all. */
static int
valid_hostname(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > 255)
		return 0;
	size_t label = 0;
	int non_numeric = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (isalpha(ch) || ch == '_') {
			non_numeric = 1;
		} else if (ch == '-') {
			if (label == 0)
				return 0;
			non_numeric = 1;
		} else if (!isdigit(ch)) {
			return 0;
		}
		if (++label > 63)
			return 0;
	}
	if (label == 0 || s[len - 1] == '-')
		return 0;
	return non_numeric;
}

/* "[1.2.3.4]" or "[IPv6:...]": 1 valid, 0 not. */
static int
valid_literal(const char *s)
{
	size_t len = strlen(s);
	if (len < 3 || s[0] != '[' || s[len - 1] != ']' || len > 80)
		return 0;
	char in[80];
	memcpy(in, s + 1, len - 2);
	in[len - 2] = '\0';
	if (strncasecmp(in, "IPv6:", 5) == 0) {
		struct in6_addr a6;
		return inet_pton(AF_INET6, in + 5, &a6) == 1;
	}
	return valid_ipv4(in);
}

/* Postfix drops one trailing dot ("host.example.") before checking. */
static void
trim_dot(const char *s, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s", s);
	size_t len = strlen(out);
	if (len > 1 && out[len - 1] == '.' && out[len - 2] != '.')
		out[len - 1] = '\0';
}

int
restrict_helo_invalid(const char *helo)
{
	char name[300];
	if (strlen(helo) >= sizeof name)
		return 1;
	if (helo[0] == '[')
		return valid_literal(helo) ? 0 : 2;
	trim_dot(helo, name, sizeof name);
	if (valid_hostname(name) || valid_ipv4(name))
		return 0;
	return 1;
}

int
restrict_helo_fqdn(const char *helo)
{
	char name[300];
	if (strlen(helo) >= sizeof name)
		return 0;
	if (helo[0] == '[')
		return valid_literal(helo);
	trim_dot(helo, name, sizeof name);
	if (valid_ipv4(name))
		return 1;
	return strchr(name, '.') != NULL && valid_hostname(name);
}

int
restrict_addr_fqdn(const char *addr)
{
	char local[ADDR_MAX + 1], domain[ADDR_MAX + 1];
	int has_domain;
	if (restrict_addr_split(addr, local, sizeof local, domain, sizeof domain, &has_domain) < 0)
		return 0;
	if (!has_domain)
		return 0;
	const char *at = strrchr(addr, '@');
	if (at != NULL && at[1] == '[')
		return valid_literal(at + 1);
	return strchr(domain, '.') != NULL && valid_hostname(domain);
}
