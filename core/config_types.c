/* Configuration typing: turns an expanded value into the declared type
 * (bool, int, size, time, lists, CIDR and [ADDR:]PORT lists), and the one
 * careful file reader used for config files, `< file` values and lists. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_priv.h"
#include "postern/fdio.h"

char *
pt_cfg_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	/* O_NONBLOCK: a FIFO or device named by mistake must not hang us. */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s", strerror(e));
		errno = e;
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s", S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
		close(fd);
		return NULL;
	}
	if (pt_read_all(fd, max, &buf, len) != 0) {
		if (errno == ENOMEM)
			abort();
		if (errno != EFBIG)
			snprintf(err, errlen, "%s", strerror(errno));
		else if (max >= 1024 * 1024)
			snprintf(err, errlen, "file too large (over %zu MiB)", max / (1024 * 1024));
		else
			snprintf(err, errlen, "file too large (over %zu bytes)", max);
		close(fd);
		return NULL;
	}
	close(fd);
	return buf;
}

static int
is_sep(int ch)
{
	return ch == ',' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

int
pt_cfg_split_list(const char *s, struct pt_list *out)
{
	size_t cap = 0;

	out->n = 0;
	out->v = NULL;
	while (*s) {
		const char *b;

		while (*s && is_sep((unsigned char)*s))
			s++;
		if (!*s)
			break;
		b = s;
		while (*s && !is_sep((unsigned char)*s))
			s++;
		if (out->n == cap) {
			char **v;

			cap = cap ? cap * 2 : 8;
			v = realloc(out->v, cap * sizeof *v);
			if (v == NULL)
				abort();
			out->v = v;
		}
		out->v[out->n] = strndup(b, (size_t)(s - b));
		if (out->v[out->n] == NULL)
			abort();
		out->n++;
	}
	return 0;
}

void
pt_cfg_free_list(struct pt_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

void
pt_cfg_free_values(struct pt_cfg_slot *s)
{
	free(s->value);
	free(s->shown);
	s->value = s->shown = NULL;
	pt_cfg_free_list(&s->list);
	pt_cidr_list_free(&s->cidrs);
	free(s->hostports.v);
	s->hostports.v = NULL;
	s->hostports.n = 0;
}

/* Unsigned decimal digits at *p; -1 on none, -2 on overflow. */
static int
parse_digits(const char **p, unsigned long long *out)
{
	unsigned long long v = 0;
	const char *s = *p;
	int overflow = 0;

	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (ULLONG_MAX - d) / 10)
			overflow = 1;
		v = v * 10 + d;
	}
	*p = s;
	*out = v;
	return overflow ? -2 : 0;
}

static int
parse_bool(const char *v, int *out)
{
	static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return *out = 1, 0;
		if (strcasecmp(v, no[i]) == 0)
			return *out = 0, 0;
	}
	return -1;
}

static int
parse_int(const char *v, long long *out, char *err, size_t errlen)
{
	const char *p = v;
	int neg = 0, rc;
	unsigned long long u;

	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	rc = parse_digits(&p, &u);
	if (rc == -1 || *p != '\0') {
		snprintf(err, errlen, "\"%.200s\" is not a whole number", v);
		return -1;
	}
	if (rc == -2 || u > (unsigned long long)LLONG_MAX + (unsigned long long)neg) {
		snprintf(err, errlen, "\"%.200s\" is out of range", v);
		return -1;
	}
	*out = neg ? (long long)(0 - u) : (long long)u;
	return 0;
}

static int
scaled(const char *v, unsigned long long u, unsigned long long mul, long long *out, char *err, size_t errlen)
{
	if (u > (unsigned long long)LLONG_MAX / mul) {
		snprintf(err, errlen, "\"%.200s\" is out of range", v);
		return -1;
	}
	*out = (long long)(u * mul);
	return 0;
}

static int
parse_size(const char *v, long long *out, char *err, size_t errlen)
{
	const char *p = v;
	unsigned long long u, mul = 1;
	int rc = parse_digits(&p, &u);

	if (rc != -1) {
		switch (tolower((unsigned char)*p)) {
		case 'k': mul = 1024ULL; p++; break;
		case 'm': mul = 1024ULL * 1024; p++; break;
		case 'g': mul = 1024ULL * 1024 * 1024; p++; break;
		default: break;
		}
		if (tolower((unsigned char)*p) == 'b')
			p++;
	}
	if (rc == -1 || *p != '\0') {
		snprintf(err, errlen, "\"%.200s\" is not a size (bytes, or a number with k, m or g)", v);
		return -1;
	}
	if (rc == -2) {
		snprintf(err, errlen, "\"%.200s\" is out of range", v);
		return -1;
	}
	return scaled(v, u, mul, out, err, errlen);
}

static int
parse_time(const char *v, long long *out, char *err, size_t errlen)
{
	const char *p = v;
	unsigned long long u, mul = 1;
	int rc = parse_digits(&p, &u);

	if (rc != -1 && *p != '\0' && p[1] == '\0') {
		switch (tolower((unsigned char)*p)) {
		case 's': mul = 1; p++; break;
		case 'm': mul = 60; p++; break;
		case 'h': mul = 3600; p++; break;
		case 'd': mul = 86400; p++; break;
		case 'w': mul = 7 * 86400; p++; break;
		default: break;
		}
	}
	if (rc == -1 || *p != '\0') {
		snprintf(err, errlen, "\"%.200s\" is not a time (a number with s, m, h, d or w)", v);
		return -1;
	}
	if (rc == -2) {
		snprintf(err, errlen, "\"%.200s\" is out of range", v);
		return -1;
	}
	return scaled(v, u, mul, out, err, errlen);
}

static int
parse_port(const char *s, uint16_t *out)
{
	unsigned long long u;
	const char *p = s;

	if (strlen(s) > 5 || parse_digits(&p, &u) != 0 || *p != '\0' || u < 1 || u > 65535)
		return -1;
	*out = (uint16_t)u;
	return 0;
}

static int
parse_hostport(const char *item, struct pt_hostport *hp, char *err, size_t errlen)
{
	const char *colon, *port;
	char host[64];
	unsigned char bin[16];
	size_t hl;

	memset(hp, 0, sizeof *hp);
	if (item[0] == '[') {
		const char *close = strchr(item, ']');

		if (close == NULL || close[1] != ':') {
			snprintf(err, errlen, "\"%.200s\": expected [ADDRESS]:PORT", item);
			return -1;
		}
		hl = (size_t)(close - item - 1);
		port = close + 2;
		if (hl >= sizeof host) {
			snprintf(err, errlen, "\"%.200s\": not an IP address", item);
			return -1;
		}
		memcpy(host, item + 1, hl);
		host[hl] = '\0';
		if (inet_pton(AF_INET6, host, bin) != 1 && inet_pton(AF_INET, host, bin) != 1) {
			snprintf(err, errlen, "\"%.200s\": \"%s\" is not an IP address", item, host);
			return -1;
		}
	} else if ((colon = strchr(item, ':')) == NULL) {
		port = item;
		host[0] = '\0';
	} else if (strchr(colon + 1, ':') != NULL) {
		snprintf(err, errlen, "\"%.200s\": write IPv6 addresses in brackets, as [ADDRESS]:PORT", item);
		return -1;
	} else {
		hl = (size_t)(colon - item);
		port = colon + 1;
		if (hl >= sizeof host || hl == 0) {
			snprintf(err, errlen, "\"%.200s\": %s", item,
				hl ? "not an IP address" : "missing address before ':'");
			return -1;
		}
		memcpy(host, item, hl);
		host[hl] = '\0';
		if (inet_pton(AF_INET, host, bin) != 1) {
			snprintf(err, errlen, "\"%.200s\": \"%s\" is not an IP address (host names are not allowed)",
				item, host);
			return -1;
		}
	}
	if (parse_port(port, &hp->port) < 0) {
		snprintf(err, errlen, "\"%.200s\": bad port \"%.20s\" (1 to 65535)", item, port);
		return -1;
	}
	memcpy(hp->host, host, strlen(host) + 1);
	return 0;
}

int
pt_cfg_parse_hostports(const char *s, struct pt_hostport_list *out, char *err, size_t errlen)
{
	struct pt_list items;

	out->n = 0;
	out->v = NULL;
	pt_cfg_split_list(s, &items);
	if (items.n > 0) {
		out->v = calloc(items.n, sizeof *out->v);
		if (out->v == NULL)
			abort();
	}
	for (size_t i = 0; i < items.n; i++) {
		if (parse_hostport(items.v[i], &out->v[out->n], err, errlen) < 0) {
			pt_cfg_free_list(&items);
			free(out->v);
			out->v = NULL;
			out->n = 0;
			return -1;
		}
		out->n++;
	}
	pt_cfg_free_list(&items);
	return 0;
}

static int
check_bounds(const struct pt_param *d, long long v, char *err, size_t errlen)
{
	if (d->min == 0 && d->max == 0)
		return 0;
	if (v < d->min) {
		snprintf(err, errlen, "%lld is below the minimum %lld", v, d->min);
		return -1;
	}
	if (v > d->max) {
		snprintf(err, errlen, "%lld is above the maximum %lld", v, d->max);
		return -1;
	}
	return 0;
}

int
pt_cfg_convert(struct pt_cfg_slot *s, char *err, size_t errlen)
{
	const struct pt_param *d = s->decl;
	const char *v = s->value ? s->value : "";

	pt_cfg_split_list(v, &s->list);
	switch (d->type) {
	case PT_STR:
	case PT_LIST:
		return 0;
	case PT_PATH:
		/* A path whose default is empty means "off" when empty (maillog_file). */
		if (*v == '\0' && d->def != NULL && d->def[0] != '\0') {
			snprintf(err, errlen, "empty path");
			return -1;
		}
		return 0;
	case PT_BOOL:
		if (parse_bool(v, &s->boolean) < 0) {
			snprintf(err, errlen, "\"%.200s\" is not a boolean (use yes or no)", v);
			return -1;
		}
		return 0;
	case PT_INT:
		if (parse_int(v, &s->num, err, errlen) < 0)
			return -1;
		return check_bounds(d, s->num, err, errlen);
	case PT_SIZE:
		if (parse_size(v, &s->num, err, errlen) < 0)
			return -1;
		return check_bounds(d, s->num, err, errlen);
	case PT_TIME:
		if (parse_time(v, &s->num, err, errlen) < 0)
			return -1;
		return check_bounds(d, s->num, err, errlen);
	case PT_CIDR_LIST:
		return pt_cidr_list_parse(v, &s->cidrs, err, errlen);
	case PT_HOSTPORT_LIST:
		return pt_cfg_parse_hostports(v, &s->hostports, err, errlen);
	}
	snprintf(err, errlen, "unknown type");
	return -1;
}

/* The parser has no way to report "out of memory" per line: it stops. */
void *
pt_cfg_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL) {
		fprintf(stderr, "postern: out of memory\n");
		abort();
	}
	return q;
}

char *
pt_cfg_xstrndup(const char *s, size_t n)
{
	char *p = pt_cfg_xrealloc(NULL, n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}
