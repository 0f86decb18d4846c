/* The trusted client networks: mynetworks as a CIDR list (IPv6, /file
 * items), or derived from mynetworks_style on this host's interfaces. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "restrict.h"

static int
append(struct pt_cidr_list *l, const struct pt_cidr *c)
{
	for (size_t i = 0; i < l->n; i++)
		if (memcmp(&l->v[i], c, sizeof *c) == 0)
			return 0;
	struct pt_cidr *v = realloc(l->v, (l->n + 1) * sizeof *v);
	if (v == NULL)
		return -1;
	l->v = v;
	l->v[l->n++] = *c;
	return 0;
}

static int
mask_prefix(const unsigned char *mask, size_t len)
{
	int p = 0;
	for (size_t i = 0; i < len; i++)
		for (int b = 7; b >= 0; b--) {
			if (!(mask[i] & (1u << b)))
				return p;
			p++;
		}
	return p;
}

static void
clear_host_bits(struct pt_cidr *c)
{
	int bytes = c->family == AF_INET ? 4 : 16;
	for (int bit = c->prefix; bit < bytes * 8; bit++)
		c->addr[bit / 8] &= (unsigned char)~(0x80 >> (bit % 8));
}

int
restrict_mynetworks_style(const char *style, struct pt_cidr_list *out, char *err, size_t errlen)
{
	int host = strcmp(style, "host") == 0, klass = strcmp(style, "class") == 0;
	if (!host && !klass && strcmp(style, "subnet") != 0) {
		snprintf(err, errlen, "unknown mynetworks_style \"%.60s\" (host, subnet or class)", style);
		return -1;
	}
	struct ifaddrs *ifa;
	if (getifaddrs(&ifa) < 0) {
		snprintf(err, errlen, "cannot list network interfaces: %s", strerror(errno));
		return -1;
	}
	out->n = 0;
	out->v = NULL;
	int rc = 0;
	for (struct ifaddrs *i = ifa; i != NULL && rc == 0; i = i->ifa_next) {
		if (i->ifa_addr == NULL)
			continue;
		struct pt_cidr c;
		memset(&c, 0, sizeof c);
		const unsigned char *mask = NULL;
		if (i->ifa_addr->sa_family == AF_INET) {
			c.family = AF_INET;
			memcpy(c.addr, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
			c.prefix = 32;
			if (i->ifa_netmask)
				mask = (const unsigned char *)&((struct sockaddr_in *)i->ifa_netmask)->sin_addr;
			if (!host && mask)
				c.prefix = mask_prefix(mask, 4);
			if (klass) {
				/* Postfix: the class A/B/C network of the address. */
				unsigned first = c.addr[0];
				c.prefix = first < 128 ? 8 : first < 192 ? 16 : first < 224 ? 24 : 32;
			}
		} else if (i->ifa_addr->sa_family == AF_INET6) {
			c.family = AF_INET6;
			memcpy(c.addr, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16);
			c.prefix = 128;
			if (i->ifa_netmask)
				mask = (const unsigned char *)&((struct sockaddr_in6 *)i->ifa_netmask)->sin6_addr;
			/* IPv6 has no classes: class behaves as subnet. */
			if (!host && mask)
				c.prefix = mask_prefix(mask, 16);
		} else {
			continue;
		}
		clear_host_bits(&c);
		if (append(out, &c) < 0) {
			snprintf(err, errlen, "out of memory");
			rc = -1;
		}
	}
	freeifaddrs(ifa);
	if (rc < 0) {
		free(out->v);
		out->v = NULL;
		out->n = 0;
	}
	return rc;
}

int
restrict_mynetworks_build(const char *mynetworks, int mynetworks_set, const char *style,
                          struct pt_cidr_list *out, int *style_warning,
                          char *err, size_t errlen)
{
	*style_warning = 0;
	out->n = 0;
	out->v = NULL;
	char word[16];
	if (mynetworks_set && sscanf(mynetworks, " %15s", word) == 1 &&
	    (strcmp(word, "subnet") == 0 || strcmp(word, "host") == 0 || strcmp(word, "class") == 0)) {
		char rest[2];
		if (sscanf(mynetworks, " %*15s %1s", rest) == 1) {
			snprintf(err, errlen, "mynetworks: the style \"%s\" must stand alone", word);
			return -1;
		}
		*style_warning = 1;
		return restrict_mynetworks_style(word, out, err, errlen);
	}
	if (!mynetworks_set || mynetworks[strspn(mynetworks, " \t,")] == '\0') {
		if (mynetworks_set)
			return 0;      /* set to empty: nobody is trusted */
		return restrict_mynetworks_style(style, out, err, errlen);
	}
	return pt_cidr_list_parse(mynetworks, out, err, errlen);
}

int
restrict_sockaddr_parse(const char *addr, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (addr == NULL)
		return -1;
	if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		return 0;
	}
	char buf[64];
	const char *a = addr;
	if (strncasecmp(a, "IPv6:", 5) == 0)
		a += 5;
	size_t len = strlen(a);
	if (len >= 2 && a[0] == '[' && a[len - 1] == ']' && len - 2 < sizeof buf) {
		memcpy(buf, a + 1, len - 2);
		buf[len - 2] = '\0';
		a = buf;
	}
	if (inet_pton(AF_INET6, a, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		return 0;
	}
	return -1;
}

int
restrict_mynetworks_match(const struct pt_cidr_list *nets, const struct sockaddr *sa)
{
	return sa != NULL && pt_cidr_list_match(nets, sa);
}
