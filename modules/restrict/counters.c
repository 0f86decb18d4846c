/* Counters with expiry shared by every Lua policy of the process (rate
 * limits, greylisting): a bounded hash table, expired entries swept as
 * they are met and when the table is full. Loop thread only. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "restrict.h"

struct counter {
	struct counter *next;
	long long value, created, expires;
	char key[];
};

#define NBUCKETS 4096u
static struct counter *buckets[NBUCKETS];
static size_t ncounters;

static uint32_t
hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h & (NBUCKETS - 1);
}

static void
sweep(long long now)
{
	for (size_t b = 0; b < NBUCKETS; b++)
		for (struct counter **pp = &buckets[b]; *pp;) {
			struct counter *c = *pp;
			if (c->expires <= now) {
				*pp = c->next;
				free(c);
				ncounters--;
			} else {
				pp = &c->next;
			}
		}
}

/* The live entry for key, dropping an expired one on the way. */
static struct counter *
find(const char *key, long long now, struct counter ***slot)
{
	struct counter **pp = &buckets[hash(key)];
	while (*pp) {
		struct counter *c = *pp;
		if (c->expires <= now) {
			*pp = c->next;
			free(c);
			ncounters--;
			continue;
		}
		if (strcmp(c->key, key) == 0) {
			if (slot)
				*slot = pp;
			return c;
		}
		pp = &c->next;
	}
	return NULL;
}

static struct counter *
create(const char *key, long long ttl, long long now)
{
	if (ncounters >= RESTRICT_COUNTERS_MAX)
		sweep(now);
	if (ncounters >= RESTRICT_COUNTERS_MAX)
		return NULL;
	size_t len = strlen(key);
	struct counter *c = malloc(sizeof *c + len + 1);
	if (c == NULL)
		return NULL;
	memcpy(c->key, key, len + 1);
	c->value = 0;
	c->created = now;
	c->expires = now + (ttl > 0 ? ttl : 1);
	uint32_t h = hash(key);
	c->next = buckets[h];
	buckets[h] = c;
	ncounters++;
	return c;
}

long long
restrict_counter_add(const char *key, long long delta, long long ttl, long long now)
{
	struct counter *c = find(key, now, NULL);
	if (c == NULL && (c = create(key, ttl, now)) == NULL)
		return -1;
	c->value += delta;
	return c->value;
}

int
restrict_counter_get(const char *key, long long now, long long *value, long long *created)
{
	struct counter *c = find(key, now, NULL);
	if (c == NULL)
		return 0;
	*value = c->value;
	*created = c->created;
	return 1;
}

int
restrict_counter_set(const char *key, long long value, long long ttl, long long now)
{
	struct counter *c = find(key, now, NULL);
	if (c != NULL) {
		c->expires = now + (ttl > 0 ? ttl : 1);
	} else if ((c = create(key, ttl, now)) == NULL) {
		return -1;
	}
	c->value = value;
	return 0;
}

void
restrict_counter_del(const char *key)
{
	struct counter **slot;
	if (find(key, -1, &slot) != NULL) {
		struct counter *c = *slot;
		*slot = c->next;
		free(c);
		ncounters--;
	}
}

void
restrict_counters_clear(void)
{
	sweep(INT64_MAX);
}

size_t
restrict_counters_count(void)
{
	return ncounters;
}

void
restrict_counters_clear_prefix(const char *prefix)
{
	size_t plen = strlen(prefix);
	for (size_t b = 0; b < NBUCKETS; b++)
		for (struct counter **pp = &buckets[b]; *pp;) {
			struct counter *c = *pp;
			if (strncmp(c->key, prefix, plen) == 0) {
				*pp = c->next;
				free(c);
				ncounters--;
			} else {
				pp = &c->next;
			}
		}
}
