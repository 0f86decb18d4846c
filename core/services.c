/* The service registry modules use to find each other, and the shared
 * tests every module needs on the live config (is this domain ours?). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "postern/services.h"
#include "runtime.h"

#define MAX_SERVICES 32

static struct {
	const char *name;
	const void *ops;
} registry[MAX_SERVICES];
static size_t nregistry;

int
pt_service_register(const char *name, const void *ops)
{
	for (size_t i = 0; i < nregistry; i++)
		if (strcmp(registry[i].name, name) == 0) {
			registry[i].ops = ops; /* re-init after reload replaces */
			return 0;
		}
	if (nregistry == MAX_SERVICES)
		return -1;
	registry[nregistry].name = name;
	registry[nregistry].ops = ops;
	nregistry++;
	return 0;
}

const void *
pt_service_get(const char *name)
{
	for (size_t i = 0; i < nregistry; i++)
		if (strcmp(registry[i].name, name) == 0)
			return registry[i].ops;
	return NULL;
}

void
pt_status_set(struct pt_status *st, int code, const char *dsn, const char *fmt, ...)
{
	st->code = code;
	snprintf(st->dsn, sizeof st->dsn, "%s", dsn ? dsn : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->text, sizeof st->text, fmt, ap);
	va_end(ap);
}

/* Compare a domain to a list item, ignoring case and one trailing dot. */
static int
domain_equal(const char *domain, size_t dlen, const char *item)
{
	size_t ilen = strlen(item);
	if (ilen > 0 && item[ilen - 1] == '.')
		ilen--;
	return dlen == ilen && strncasecmp(domain, item, dlen) == 0;
}

static size_t
domain_len(const char *domain)
{
	size_t len = strlen(domain);
	if (len > 0 && domain[len - 1] == '.')
		len--;
	return len;
}

int
pt_domain_is_local(const char *domain)
{
	if (pt_live_conf == NULL || domain == NULL)
		return 0;
	size_t dlen = domain_len(domain);
	if (dlen == 0)
		return 0;
	const struct pt_list *l = pt_conf_list(pt_live_conf, "mydestination");
	for (size_t i = 0; i < l->n; i++)
		if (domain_equal(domain, dlen, l->v[i]))
			return 1;
	return 0;
}

/* relay_domains matches subdomains too (Postfix's default
 * parent_domain_matches_subdomains includes relay_domains); an item that
 * starts with a dot matches only subdomains. */
int
pt_domain_is_relay(const char *domain)
{
	if (pt_live_conf == NULL || domain == NULL)
		return 0;
	size_t dlen = domain_len(domain);
	if (dlen == 0)
		return 0;
	const struct pt_list *l = pt_conf_list(pt_live_conf, "relay_domains");
	for (size_t i = 0; i < l->n; i++) {
		const char *item = l->v[i];
		int only_sub = item[0] == '.';
		if (only_sub)
			item++;
		size_t ilen = strlen(item);
		if (ilen > 0 && item[ilen - 1] == '.')
			ilen--;
		if (ilen == 0)
			continue;
		if (!only_sub && domain_equal(domain, dlen, item))
			return 1;
		if (dlen > ilen && domain[dlen - ilen - 1] == '.' &&
		    strncasecmp(domain + dlen - ilen, item, ilen) == 0)
			return 1;
	}
	return 0;
}
