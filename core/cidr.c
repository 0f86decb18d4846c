/* CIDR blocks: parsing (IPv4, IPv6, bracketed IPv6, files of items) and
 * matching client addresses, IPv4-mapped IPv6 included. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_priv.h"

/* 0 ok, -1 bad syntax, -2 host bits set beyond the prefix. */
static int
cidr_parse(const char *s, struct pt_cidr *out)
{
	char buf[128];
	char *addr = buf, *slash;
	size_t len = strlen(s);
	int max, prefix = -1;

	memset(out, 0, sizeof *out);
	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, s, len + 1);
	slash = strchr(buf, '/');
	if (slash != NULL) {
		const char *p = slash + 1;

		*slash = '\0';
		if (*p == '\0' || strlen(p) > 3)
			return -1;
		prefix = 0;
		for (; *p; p++) {
			if (!isdigit((unsigned char)*p))
				return -1;
			prefix = prefix * 10 + (*p - '0');
		}
	}
	if (addr[0] == '[') {
		size_t al = strlen(addr);

		if (al < 3 || addr[al - 1] != ']')
			return -1;
		addr[al - 1] = '\0';
		addr++;
	}
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	if (prefix > max)
		return -1;
	out->prefix = prefix < 0 ? max : prefix;
	for (int bit = out->prefix; bit < max; bit++)
		if (out->addr[bit / 8] & (0x80 >> (bit % 8)))
			return -2;
	return 0;
}

int
pt_cidr_parse(const char *s, struct pt_cidr *out)
{
	return s != NULL && cidr_parse(s, out) == 0 ? 0 : -1;
}

static int
prefix_equal(const unsigned char *a, const unsigned char *b, int prefix)
{
	int whole = prefix / 8, rest = prefix % 8;

	if (memcmp(a, b, (size_t)whole) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((a[whole] ^ b[whole]) & (0xff00 >> rest) & 0xff) == 0;
}

int
pt_cidr_match(const struct pt_cidr *net, const struct sockaddr *sa)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (net == NULL || sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		return net->family == AF_INET &&
			prefix_equal(net->addr, (const unsigned char *)&in->sin_addr, net->prefix);
	}
	if (sa->sa_family == AF_INET6) {
		const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;

		if (net->family == AF_INET6)
			return prefix_equal(net->addr, a, net->prefix);
		/* A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d. */
		return net->family == AF_INET && memcmp(a, mapped, 12) == 0 &&
			prefix_equal(net->addr, a + 12, net->prefix);
	}
	return 0;
}

int
pt_cidr_list_match(const struct pt_cidr_list *l, const struct sockaddr *sa)
{
	if (l == NULL)
		return 0;
	for (size_t i = 0; i < l->n; i++)
		if (pt_cidr_match(&l->v[i], sa))
			return 1;
	return 0;
}

void
pt_cidr_list_free(struct pt_cidr_list *l)
{
	if (l == NULL)
		return;
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

struct cidr_acc {
	struct pt_cidr_list *out;
	size_t cap;
};

static void
bad_item(const char *item, const char *where, int why, char *err, size_t errlen)
{
	if (why == -2) {
		/* Say which network was probably meant, as Postfix does. */
		struct pt_cidr net;
		char addr[INET6_ADDRSTRLEN] = "?", item_copy[128];
		char *slash;

		snprintf(item_copy, sizeof item_copy, "%s", item);
		slash = strchr(item_copy, '/');
		if (slash != NULL) {
			*slash = '\0';
			if (pt_cidr_parse(item_copy, &net) == 0) {
				int prefix = atoi(slash + 1);

				for (int bit = prefix; bit < (net.family == AF_INET ? 32 : 128); bit++)
					net.addr[bit / 8] &= (unsigned char)~(0x80 >> (bit % 8));
				inet_ntop(net.family, net.addr, addr, sizeof addr);
				snprintf(err, errlen, "%s\"%.200s\" has host bits set (did you mean \"%s%s%s/%d\"?)",
					where, item, net.family == AF_INET6 ? "[" : "", addr,
					net.family == AF_INET6 ? "]" : "", prefix);
				return;
			}
		}
	}
	snprintf(err, errlen, "%sbad address or network \"%.200s\"", where, item);
}

static int
add_item(struct cidr_acc *a, const char *item, const char *where, char *err, size_t errlen)
{
	struct pt_cidr net;
	int rc = cidr_parse(item, &net);

	if (rc < 0) {
		bad_item(item, where, rc, err, errlen);
		return -1;
	}
	if (a->out->n == a->cap) {
		struct pt_cidr *v;

		a->cap = a->cap ? a->cap * 2 : 8;
		v = realloc(a->out->v, a->cap * sizeof *v);
		if (v == NULL)
			abort();
		a->out->v = v;
	}
	a->out->v[a->out->n++] = net;
	return 0;
}

static int
add_file(struct cidr_acc *a, const char *path, char *err, size_t errlen)
{
	char why[256], where[300];
	size_t len;
	char *data = pt_cfg_read_file(path, PT_CFG_MAX_INCLUDE, &len, why, sizeof why);
	int lineno = 0, rc = 0;
	char *line, *next;

	if (data == NULL) {
		snprintf(err, errlen, "cannot read %.200s: %s", path, why);
		return -1;
	}
	for (line = data; rc == 0 && line != NULL && line < data + len; line = next) {
		struct pt_list items;
		char *hash;

		next = memchr(line, '\n', (size_t)(data + len - line));
		if (next != NULL)
			*next++ = '\0';
		lineno++;
		if (strlen(line) != (size_t)((next ? next - 1 : data + len) - line)) {
			snprintf(err, errlen, "%.200s:%d: NUL byte in line", path, lineno);
			rc = -1;
			break;
		}
		hash = strchr(line, '#');
		if (hash != NULL)
			*hash = '\0';
		pt_cfg_split_list(line, &items);
		snprintf(where, sizeof where, "%.200s:%d: ", path, lineno);
		for (size_t i = 0; rc == 0 && i < items.n; i++) {
			if (items.v[i][0] == '/') {
				snprintf(err, errlen, "%sfile \"%.200s\" named inside a file (not allowed)",
					where, items.v[i]);
				rc = -1;
			} else {
				rc = add_item(a, items.v[i], where, err, errlen);
			}
		}
		pt_cfg_free_list(&items);
	}
	free(data);
	return rc;
}

int
pt_cidr_list_parse(const char *s, struct pt_cidr_list *out, char *err, size_t errlen)
{
	struct cidr_acc a = {.out = out};
	struct pt_list items;
	int rc = 0;

	out->n = 0;
	out->v = NULL;
	pt_cfg_split_list(s ? s : "", &items);
	for (size_t i = 0; rc == 0 && i < items.n; i++) {
		if (items.v[i][0] == '/')
			rc = add_file(&a, items.v[i], err, errlen);
		else
			rc = add_item(&a, items.v[i], "", err, errlen);
	}
	pt_cfg_free_list(&items);
	if (rc < 0)
		pt_cidr_list_free(out);
	return rc;
}
