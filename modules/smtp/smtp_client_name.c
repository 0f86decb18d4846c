/* The client's host name before the banner: the hosts file first
 * (smtpd_hosts_file, /etc/hosts by default, as the system resolver's
 * "files dns" order does), then PTR and a forward
 * lookup that must list the client's address, all bounded by one timer so
 * a dead name server costs a client at most the timeout. */
#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "postern/dns.h"
#include "postern/event.h"
#include "smtp_client_name.h"

#define HOSTS_MAX (8u << 20)

struct smtp_name_lookup {
	struct pt_loop *loop;
	smtp_name_cb *cb;
	void *arg;
	struct pt_timer *timer;
	struct pt_deferred early;  /* an answer known at start, sent from the loop */
	int pending;               /* DNS queries not yet answered */
	int done;                  /* answered or cancelled */
	char addr[64];
	char ptr[SMTP_NAME_MAX];
	char name[SMTP_NAME_MAX];  /* the early answer's name */
	char *hosts_file;          /* NULL: DNS only */
};

/* ---- addresses and names ---- */

static int
addr_bytes(const char *s, unsigned char out[16])
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct in_addr a4;

	if (inet_pton(AF_INET, s, &a4) == 1) {
		memcpy(out, mapped, 12);
		memcpy(out + 12, &a4, 4);
		return 0;
	}
	return inet_pton(AF_INET6, s, out) == 1 ? 0 : -1;
}

int
smtp_addr_equal(const char *a, const char *b)
{
	unsigned char x[16], y[16];

	return a && b && addr_bytes(a, x) == 0 && addr_bytes(b, y) == 0 && memcmp(x, y, 16) == 0;
}

static int
is_v4(const char *addr)
{
	unsigned char b[16];
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return addr_bytes(addr, b) == 0 && memcmp(b, mapped, 12) == 0;
}

int
smtp_client_name_valid(const char *name)
{
	size_t n = strlen(name), label = 0;
	int alpha = 0;
	unsigned char b[16];

	if (n == 0 || n > 255 || name[0] == '.' || name[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0 || name[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_')
			return 0;
		if (label == 0 && c == '-')
			return 0;
		if (++label > 63)
			return 0;
		if (!isdigit(c))
			alpha = 1;
	}
	/* "1.2.3.4" in a PTR record must not pass for a name. */
	return alpha && addr_bytes(name, b) != 0;
}

/* ---- hosts(5) ---- */

/* Call fn for each entry line: its address and its names. Stops when fn
 * returns nonzero and returns that. */
typedef int hosts_line_fn(const char *addr, char *const *names, size_t nnames, void *arg);

static int
hosts_walk(const char *text, size_t len, hosts_line_fn *fn, void *arg)
{
	size_t pos = 0;

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		char line[1024], *words[16], *save = NULL;
		size_t ll = end - pos, nw = 0;

		if (ll >= sizeof(line))
			ll = sizeof(line) - 1;
		memcpy(line, text + pos, ll);
		line[ll] = 0;
		pos = end + 1;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		for (char *w = strtok_r(line, " \t\r\v\f", &save); w && nw < 16; w = strtok_r(NULL, " \t\r\v\f", &save))
			words[nw++] = w;
		if (nw < 2)
			continue;
		int r = fn(words[0], words + 1, nw - 1, arg);
		if (r)
			return r;
	}
	return 0;
}

struct name_find {
	const char *addr;
	char *out;
	size_t outlen;
};

static int
find_name(const char *addr, char *const *names, size_t nnames, void *arg)
{
	struct name_find *f = arg;

	(void)nnames;
	if (!smtp_addr_equal(addr, f->addr) || strlen(names[0]) >= f->outlen)
		return 0;
	memcpy(f->out, names[0], strlen(names[0]) + 1);
	return 1;
}

int
smtp_hosts_name(const char *text, size_t len, const char *addr, char *out, size_t outlen)
{
	struct name_find f = { addr, out, outlen };

	return hosts_walk(text, len, find_name, &f);
}

struct has_find {
	const char *name, *addr;
};

static int
find_has(const char *addr, char *const *names, size_t nnames, void *arg)
{
	struct has_find *f = arg;

	if (!smtp_addr_equal(addr, f->addr))
		return 0;
	for (size_t i = 0; i < nnames; i++)
		if (strcasecmp(names[i], f->name) == 0)
			return 1;
	return 0;
}

int
smtp_hosts_has(const char *text, size_t len, const char *name, const char *addr)
{
	struct has_find f = { name, addr };

	return hosts_walk(text, len, find_has, &f);
}

/* The file is read again only when it (or its name) changed; workers
 * share the copy. */
static struct {
	pthread_mutex_t lock;
	char *path;
	char *text;
	size_t len;
	struct stat st;
	int have;
} hosts = { PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0, { 0 }, 0 };

static void
hosts_refresh_locked(const char *path)
{
	struct stat st;
	FILE *f;

	if (hosts.path == NULL || strcmp(hosts.path, path) != 0) {
		char *copy = strdup(path);
		if (copy == NULL)
			return;
		free(hosts.path);
		hosts.path = copy;
		hosts.have = 0;
	}
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > HOSTS_MAX) {
		free(hosts.text);
		hosts.text = NULL;
		hosts.len = 0;
		hosts.have = 0;
		return;
	}
	if (hosts.have && st.st_ino == hosts.st.st_ino && st.st_mtime == hosts.st.st_mtime &&
	    st.st_size == hosts.st.st_size)
		return;
	f = fopen(path, "re");
	if (f == NULL)
		return;
	char *buf = malloc((size_t)st.st_size + 1);
	size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
	fclose(f);
	if (buf == NULL)
		return;
	free(hosts.text);
	hosts.text = buf;
	hosts.len = n;
	hosts.st = st;
	hosts.have = 1;
}

/* Under the lock: fn over the current hosts text. */
static int
with_hosts(const char *path, int (*fn)(const char *text, size_t len, void *arg), void *arg)
{
	int r = 0;

	if (path == NULL || *path == 0)
		return 0;
	pthread_mutex_lock(&hosts.lock);
	hosts_refresh_locked(path);
	if (hosts.text)
		r = fn(hosts.text, hosts.len, arg);
	pthread_mutex_unlock(&hosts.lock);
	return r;
}

static int
hosts_name_cb(const char *text, size_t len, void *arg)
{
	struct name_find *f = arg;

	return smtp_hosts_name(text, len, f->addr, f->out, f->outlen);
}

static int
hosts_has_cb(const char *text, size_t len, void *arg)
{
	struct has_find *f = arg;

	return smtp_hosts_has(text, len, f->name, f->addr);
}

/* ---- the asynchronous lookup ---- */

static void
maybe_free(struct smtp_name_lookup *l)
{
	if (l->done && l->pending == 0 && l->timer == NULL && !pt_defer_queued(&l->early)) {
		free(l->hosts_file);
		free(l);
	}
}

static void
finish(struct smtp_name_lookup *l, const char *name, const char *reverse)
{
	if (l->done)
		return;
	l->done = 1;
	if (l->timer) {
		pt_timer_cancel(l->loop, l->timer);
		l->timer = NULL;
	}
	l->cb(l->arg, name, reverse);
	maybe_free(l);
}

static void
on_timeout(struct pt_loop *loop, void *arg)
{
	struct smtp_name_lookup *l = arg;

	(void)loop;
	l->timer = NULL;
	finish(l, "unknown", l->ptr[0] ? l->ptr : "unknown");
}

static void
on_forward(void *arg, const struct pt_dns_answer *ans)
{
	struct smtp_name_lookup *l = arg;
	enum pt_dns_type want = is_v4(l->addr) ? PT_DNS_A : PT_DNS_AAAA;
	int match = 0;

	l->pending--;
	if (l->done) {
		maybe_free(l);
		return;
	}
	for (size_t i = 0; ans && ans->status == PT_DNS_OK && i < ans->n; i++)
		if (ans->rr[i].type == want && smtp_addr_equal(ans->rr[i].text, l->addr))
			match = 1;
	finish(l, match ? l->ptr : "unknown", l->ptr);
}

static void
on_ptr(void *arg, const struct pt_dns_answer *ans)
{
	struct smtp_name_lookup *l = arg;

	l->pending--;
	if (l->done) {
		maybe_free(l);
		return;
	}
	for (size_t i = 0; ans && ans->status == PT_DNS_OK && i < ans->n; i++)
		if (ans->rr[i].type == PT_DNS_PTR && smtp_client_name_valid(ans->rr[i].text) &&
		    strlen(ans->rr[i].text) < sizeof(l->ptr)) {
			memcpy(l->ptr, ans->rr[i].text, strlen(ans->rr[i].text) + 1);
			break;
		}
	if (l->ptr[0] == 0) {
		finish(l, "unknown", "unknown");
		return;
	}
	struct has_find hf = { l->ptr, l->addr };
	if (with_hosts(l->hosts_file, hosts_has_cb, &hf)) {
		finish(l, l->ptr, l->ptr);
		return;
	}
	if (pt_dns_query(l->loop, l->ptr, is_v4(l->addr) ? PT_DNS_A : PT_DNS_AAAA, on_forward, l) != 0) {
		finish(l, "unknown", l->ptr);
		return;
	}
	l->pending++;
}

static void
early_fire(struct pt_loop *loop, void *arg)
{
	struct smtp_name_lookup *l = arg;

	(void)loop;
	finish(l, l->name, l->ptr);
}

/* Decided without DNS: the answer still comes from the loop, after
 * smtp_client_name_start returned (the service rule, services.h). */
static struct smtp_name_lookup *
answer_early(struct smtp_name_lookup *l, const char *name, const char *reverse)
{
	snprintf(l->name, sizeof(l->name), "%s", name);
	snprintf(l->ptr, sizeof(l->ptr), "%s", reverse);
	pt_defer(l->loop, &l->early, early_fire, l);
	return l;
}

struct smtp_name_lookup *
smtp_client_name_start(struct pt_loop *loop, const char *addr, const char *hosts_file, unsigned timeout_ms,
                       smtp_name_cb *cb, void *arg)
{
	char name[SMTP_NAME_MAX], rev[300];
	struct smtp_name_lookup *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->loop = loop;
	l->cb = cb;
	l->arg = arg;
	if (timeout_ms == 0 || addr == NULL || strlen(addr) >= sizeof(l->addr))
		return answer_early(l, "unknown", "unknown");
	struct name_find nf = { addr, name, sizeof(name) };
	if (with_hosts(hosts_file, hosts_name_cb, &nf) && smtp_client_name_valid(name))
		return answer_early(l, name, name);
	if (pt_dns_reverse_name(addr, rev, sizeof(rev)) < 0 ||
	    (hosts_file && *hosts_file && (l->hosts_file = strdup(hosts_file)) == NULL))
		return answer_early(l, "unknown", "unknown");
	memcpy(l->addr, addr, strlen(addr) + 1);
	if (pt_dns_query(loop, rev, PT_DNS_PTR, on_ptr, l) != 0)
		return answer_early(l, "unknown", "unknown");
	l->pending = 1;
	l->timer = pt_timer_add(loop, timeout_ms, on_timeout, l);
	/* Without a timer the resolver's own timeouts still end the wait. */
	return l;
}

void
smtp_client_name_cancel(struct smtp_name_lookup *l)
{
	if (l == NULL)
		return;
	l->done = 1;
	pt_defer_cancel(l->loop, &l->early);
	if (l->timer) {
		pt_timer_cancel(l->loop, l->timer);
		l->timer = NULL;
	}
	maybe_free(l);
}
