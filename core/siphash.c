/* SipHash-2-4, written from the algorithm's description (two rounds per
 * 8-byte word, four to finish), and the process's table key. */
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "postern/siphash.h"

static uint64_t
rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static uint64_t
le64(const uint8_t *p)
{
	uint64_t w = 0;
	for (int i = 7; i >= 0; i--)
		w = w << 8 | p[i];
	return w;
}

static void
rounds(uint64_t *v, int n)
{
	while (n--) {
		v[0] += v[1];
		v[1] = rotl(v[1], 13);
		v[1] ^= v[0];
		v[0] = rotl(v[0], 32);
		v[2] += v[3];
		v[3] = rotl(v[3], 16);
		v[3] ^= v[2];
		v[0] += v[3];
		v[3] = rotl(v[3], 21);
		v[3] ^= v[0];
		v[2] += v[1];
		v[1] = rotl(v[1], 17);
		v[1] ^= v[2];
		v[2] = rotl(v[2], 32);
	}
}

static void
word(struct pt_sip *s, uint64_t m)
{
	s->v[3] ^= m;
	rounds(s->v, 2);
	s->v[0] ^= m;
}

void
pt_sip_init(struct pt_sip *s, const uint8_t key[16])
{
	uint64_t k0 = le64(key), k1 = le64(key + 8);
	s->v[0] = k0 ^ 0x736f6d6570736575ull;
	s->v[1] = k1 ^ 0x646f72616e646f6dull;
	s->v[2] = k0 ^ 0x6c7967656e657261ull;
	s->v[3] = k1 ^ 0x7465646279746573ull;
	s->tail = 0;
	s->len = 0;
}

void
pt_sip_update(struct pt_sip *s, const void *data, size_t n)
{
	const uint8_t *p = data;
	/* Fill the pending word first, then whole words, then keep the rest. */
	while (n > 0 && (s->len & 7) != 0) {
		s->tail |= (uint64_t)*p++ << (8 * (s->len & 7));
		s->len++;
		n--;
		if ((s->len & 7) == 0) {
			word(s, s->tail);
			s->tail = 0;
		}
	}
	for (; n >= 8; p += 8, n -= 8, s->len += 8)
		word(s, le64(p));
	for (; n > 0; n--, s->len++)
		s->tail |= (uint64_t)*p++ << (8 * (s->len & 7));
}

uint64_t
pt_sip_final(struct pt_sip *s)
{
	word(s, s->tail | (uint64_t)(s->len & 0xff) << 56);
	s->v[2] ^= 0xff;
	rounds(s->v, 4);
	return s->v[0] ^ s->v[1] ^ s->v[2] ^ s->v[3];
}

uint64_t
pt_siphash(const uint8_t key[16], const void *p, size_t n)
{
	struct pt_sip s;
	pt_sip_init(&s, key);
	pt_sip_update(&s, p, n);
	return pt_sip_final(&s);
}

static uint8_t table_key[16];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void
table_key_make(void)
{
	size_t got = 0;
	while (got < sizeof table_key) {
		ssize_t r = getrandom(table_key + got, sizeof table_key - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	if (got < sizeof table_key) {
		/* No entropy source (a broken sandbox): still unknown from
		 * outside, if weaker. */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t a = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30, b = (uint64_t)getpid();
		memcpy(table_key, &a, 8);
		memcpy(table_key + 8, &b, 8);
	}
}

const uint8_t *
pt_table_key(void)
{
	pthread_once(&table_once, table_key_make);
	return table_key;
}

uint64_t
pt_table_hash(const char *s)
{
	return pt_siphash(pt_table_key(), s, strlen(s));
}
