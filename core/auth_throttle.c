/* Per-address login failure throttle: each recent failure makes the next
 * attempt from that address wait longer (2, 4, 8, 15 s), like Dovecot's
 * anvil auth penalty, so password guessing slows to a crawl. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "passdb.h"

#define NBUCKETS 1024
#define KEYLEN PT_THROTTLE_KEYLEN

struct tentry {
	struct tentry *next;
	char key[KEYLEN];
	unsigned failures;
	uint64_t last_ms;
};

struct pt_throttle {
	pthread_mutex_t lock;
	struct tentry *bucket[NBUCKETS];
	size_t n, max;
};

static const uint64_t penalty_ms[] = { 0, 2000, 4000, 8000, 15000 };

struct pt_throttle *
pt_throttle_new(size_t max_entries)
{
	struct pt_throttle *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	t->max = max_entries ? max_entries : 1;
	return t;
}

void
pt_throttle_free(struct pt_throttle *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < NBUCKETS; i++)
		while (t->bucket[i]) {
			struct tentry *e = t->bucket[i];
			t->bucket[i] = e->next;
			free(e);
		}
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* IPv6 users usually own a /64: counting single addresses there would let
 * one client rotate through 2^64 fresh ones. */
void
pt_throttle_key(const char *addr, char key[KEYLEN])
{
	unsigned char a6[16];
	struct in_addr a4;

	if (!addr)
		addr = "";
	if (inet_pton(AF_INET, addr, &a4) == 1) {
		inet_ntop(AF_INET, &a4, key, KEYLEN);
		return;
	}
	if (inet_pton(AF_INET6, addr, a6) == 1) {
		static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (memcmp(a6, v4mapped, 12) == 0) {
			inet_ntop(AF_INET, a6 + 12, key, KEYLEN);
			return;
		}
		memset(a6 + 8, 0, 8);
		inet_ntop(AF_INET6, a6, key, KEYLEN - 4);
		strcat(key, "/64");
		return;
	}
	size_t n = strlen(addr);
	if (n >= KEYLEN)
		n = KEYLEN - 1;
	memcpy(key, addr, n);
	key[n] = '\0';
}

static unsigned
hash_key(const char *k)
{
	unsigned h = 2166136261u;
	for (; *k; k++)
		h = (h ^ (unsigned char)*k) * 16777619u;
	return h % NBUCKETS;
}

static int
expired(const struct tentry *e, uint64_t now)
{
	return now >= e->last_ms && now - e->last_ms >= PT_THROTTLE_EXPIRE_MS;
}

static void
unlink_entry(struct pt_throttle *t, struct tentry **pp)
{
	struct tentry *e = *pp;
	*pp = e->next;
	free(e);
	t->n--;
}

static struct tentry **
find(struct pt_throttle *t, const char *key, uint64_t now)
{
	struct tentry **pp = &t->bucket[hash_key(key)];
	while (*pp) {
		if (expired(*pp, now)) {
			unlink_entry(t, pp);
			continue;
		}
		if (strcmp((*pp)->key, key) == 0)
			return pp;
		pp = &(*pp)->next;
	}
	return NULL;
}

/* Full table: drop expired entries, then the one idle longest. */
static void
make_room(struct pt_throttle *t, uint64_t now)
{
	struct tentry **oldest = NULL;

	for (size_t i = 0; i < NBUCKETS; i++) {
		struct tentry **pp = &t->bucket[i];
		while (*pp) {
			if (expired(*pp, now)) {
				unlink_entry(t, pp);
				continue;
			}
			if (!oldest || (*pp)->last_ms < (*oldest)->last_ms)
				oldest = pp;
			pp = &(*pp)->next;
		}
	}
	if (t->n >= t->max && oldest)
		unlink_entry(t, oldest);
}

uint64_t
pt_throttle_delay_ms(struct pt_throttle *t, const char *addr, uint64_t now_ms)
{
	char key[KEYLEN];
	uint64_t d = 0;

	pt_throttle_key(addr, key);
	pthread_mutex_lock(&t->lock);
	struct tentry **pp = find(t, key, now_ms);
	if (pp) {
		unsigned f = (*pp)->failures;
		d = penalty_ms[f < 4 ? f : 4];
	}
	pthread_mutex_unlock(&t->lock);
	return d;
}

void
pt_throttle_failure(struct pt_throttle *t, const char *addr, uint64_t now_ms)
{
	char key[KEYLEN];

	pt_throttle_key(addr, key);
	pthread_mutex_lock(&t->lock);
	struct tentry **pp = find(t, key, now_ms);
	struct tentry *e = pp ? *pp : NULL;
	if (!e) {
		if (t->n >= t->max)
			make_room(t, now_ms);
		e = calloc(1, sizeof *e);
		if (e) {
			memcpy(e->key, key, KEYLEN);
			unsigned h = hash_key(key);
			e->next = t->bucket[h];
			t->bucket[h] = e;
			t->n++;
		}
	}
	if (e) {
		if (e->failures < 1000)
			e->failures++;
		e->last_ms = now_ms;
	}
	pthread_mutex_unlock(&t->lock);
}

void
pt_throttle_success(struct pt_throttle *t, const char *addr, uint64_t now_ms)
{
	char key[KEYLEN];

	pt_throttle_key(addr, key);
	pthread_mutex_lock(&t->lock);
	struct tentry **pp = find(t, key, now_ms);
	if (pp)
		unlink_entry(t, pp);
	pthread_mutex_unlock(&t->lock);
}

unsigned
pt_throttle_failures(struct pt_throttle *t, const char *addr, uint64_t now_ms)
{
	char key[KEYLEN];
	unsigned f = 0;

	pt_throttle_key(addr, key);
	pthread_mutex_lock(&t->lock);
	struct tentry **pp = find(t, key, now_ms);
	if (pp)
		f = (*pp)->failures;
	pthread_mutex_unlock(&t->lock);
	return f;
}

size_t
pt_throttle_size(const struct pt_throttle *t)
{
	return t->n;
}
