/* The credential cache of passdb sources from lookup modules (ldap:,
 * pgsql:): a login answered by the source is remembered for the source's
 * cache_ttl (good) or cache_negative_ttl (refused), so a client that logs
 * in again with the same password is answered without asking the
 * directory (no search, no bind), and a client retrying a wrong password
 * does not hammer it.
 *
 * The key is HMAC-SHA256 under a random key of this process over
 * (source, user, password): neither the password nor anything that could
 * be checked against guesses without that key is kept, and nothing goes
 * to disk. Remembered is the answer for that exact password only, so a
 * different password (a changed one) is never refused from here: it
 * misses and goes to the source. The processes of a generation start
 * empty, so `postern reload` flushes it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "postern/event.h"
#include "passdb.h"
#include "postern/sasl.h"

#define NBUCKET 4096
/* Bounded: the oldest entry goes when a new one would exceed it. */
#define CACHE_MAX 20000
#define WHY_MAX 64

struct centry {
	unsigned char digest[32];
	int result;                        /* 1 good, 0 refused */
	uint64_t expires;                  /* ms, monotonic */
	char why[WHY_MAX];
	char *proxy;                       /* good logins only; NULL = "" */
	struct centry *hnext;              /* bucket chain */
	struct centry *older, *newer;      /* insertion order */
};

static struct {
	pthread_mutex_t mu;
	pid_t pid;                         /* the key is this process's */
	unsigned char key[32];
	struct centry *bucket[NBUCKET];
	struct centry *oldest, *newest;
	size_t count;
} C = { .mu = PTHREAD_MUTEX_INITIALIZER };


static void
entry_free(struct centry *e)
{
	free(e->proxy);
	OPENSSL_cleanse(e, sizeof *e);
	free(e);
}

/* Unlink e from its bucket and the age list (C.mu held). */
static void
entry_drop(struct centry *e)
{
	struct centry **pp = &C.bucket[e->digest[0] | (e->digest[1] & 0x0f) << 8];
	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	if (e->older)
		e->older->newer = e->newer;
	else
		C.oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else
		C.newest = e->older;
	C.count--;
	entry_free(e);
}

static void
flush_locked(void)
{
	while (C.oldest)
		entry_drop(C.oldest);
}

/* A key of this process (a forked child makes its own and forgets the
 * parent's entries); -1 when no random bytes are to be had. C.mu held. */
static int
key_ready(void)
{
	pid_t pid = getpid();
	if (C.pid == pid)
		return 0;
	flush_locked();
	if (RAND_bytes(C.key, sizeof C.key) != 1)
		return -1;
	C.pid = pid;
	return 0;
}

/* HMAC over "spec NUL user NUL password" (none holds a NUL); the
 * assembled copy with the password is wiped at once. C.mu held. */
static int
digest_of(const char *spec, const struct pt_passdb_req *req, unsigned char out[32])
{
	size_t sl = strlen(spec), ul = strlen(req->user), pl = strlen(req->password);
	if (sl > 1024 || ul > PT_SASL_USER_MAX || pl > PT_SASL_PASS_MAX)
		return -1;
	unsigned char buf[1024 + PT_SASL_USER_MAX + PT_SASL_PASS_MAX + 2];
	memcpy(buf, spec, sl);
	buf[sl] = 0;
	memcpy(buf + sl + 1, req->user, ul);
	buf[sl + 1 + ul] = 0;
	memcpy(buf + sl + ul + 2, req->password, pl);
	unsigned len = 0;
	int ok = key_ready() == 0 &&
	         HMAC(EVP_sha256(), C.key, sizeof C.key, buf, sl + ul + 2 + pl, out, &len) != NULL && len == 32;
	OPENSSL_cleanse(buf, sizeof buf);
	return ok ? 0 : -1;
}

static struct centry *
find_locked(const unsigned char d[32])
{
	for (struct centry *e = C.bucket[d[0] | (d[1] & 0x0f) << 8]; e; e = e->hnext)
		if (CRYPTO_memcmp(e->digest, d, 32) == 0)
			return e;
	return NULL;
}

int
pt_passdb_cache_lookup(const char *spec, const struct pt_passdb_req *req, char *why, size_t whylen,
                       char *proxy, size_t proxylen)
{
	unsigned char d[32];
	int r = -2;

	pthread_mutex_lock(&C.mu);
	if (digest_of(spec, req, d) == 0) {
		struct centry *e = find_locked(d);
		if (e && e->expires <= pt_mono_ms()) {
			entry_drop(e);
			e = NULL;
		}
		if (e) {
			r = e->result;
			if (r == 1 && proxy && proxylen)
				snprintf(proxy, proxylen, "%s", e->proxy ? e->proxy : "");
			if (r == 0)
				snprintf(why, whylen, "%s (cached)", e->why);
		}
	}
	pthread_mutex_unlock(&C.mu);
	OPENSSL_cleanse(d, sizeof d);
	return r;
}

void
pt_passdb_cache_store(const char *spec, const struct pt_passdb_req *req, int result, const char *why,
                      const char *proxy, unsigned ttl_s)
{
	unsigned char d[32];

	if (ttl_s == 0 || (result != 0 && result != 1))
		return;
	struct centry *n = calloc(1, sizeof *n);
	if (!n)
		return;
	if (result == 1 && proxy && proxy[0] && !(n->proxy = strdup(proxy))) {
		free(n);
		return;
	}
	n->result = result;
	snprintf(n->why, sizeof n->why, "%s", result == 0 && why && why[0] ? why : "password mismatch");
	pthread_mutex_lock(&C.mu);
	if (digest_of(spec, req, d) != 0) {
		pthread_mutex_unlock(&C.mu);
		entry_free(n);
		return;
	}
	struct centry *old = find_locked(d);
	if (old)
		entry_drop(old);
	while (C.count >= CACHE_MAX && C.oldest)
		entry_drop(C.oldest);
	memcpy(n->digest, d, sizeof d);
	OPENSSL_cleanse(d, sizeof d);
	n->expires = pt_mono_ms() + (uint64_t)ttl_s * 1000;
	struct centry **b = &C.bucket[n->digest[0] | (n->digest[1] & 0x0f) << 8];
	n->hnext = *b;
	*b = n;
	n->older = C.newest;
	if (C.newest)
		C.newest->newer = n;
	else
		C.oldest = n;
	C.newest = n;
	C.count++;
	pthread_mutex_unlock(&C.mu);
}

void
pt_passdb_cache_flush(void)
{
	pthread_mutex_lock(&C.mu);
	flush_locked();
	pthread_mutex_unlock(&C.mu);
}

size_t
pt_passdb_cache_count(void)
{
	pthread_mutex_lock(&C.mu);
	size_t n = C.count;
	pthread_mutex_unlock(&C.mu);
	return n;
}
