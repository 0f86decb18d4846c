/* The lookup modules' shared cache, queue and thread pool
 * (core/lookup_backend.c), with a fake server whose answers, connects and
 * failures the test sets, and a clock of its own: lookups go out in the
 * order asked, answers are cached (found, not found, each for its TTL;
 * failures for a second), connects back off after a failure, a broken
 * connection is replaced once, and shutdown with lookups still queued
 * frees everything (run under ASan: no leak), a full cache drops expired
 * answers first but never one a caller still waits for; the map type's ops and the
 * passdb/userdb records on top. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "postern/lookup_backend.h"
#include "postern/map.h"
#include "postern/services.h"

#define MAX_SEEN 128

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t clock;
	int gate_closed;              /* queries wait while set */
	int in_query;                 /* queries waiting at the gate */
	char seen[MAX_SEEN][40];      /* "kind:key" in the order queried */
	size_t nseen;
	int connects, disconnects;
	int connect_fails;            /* connect answers NULL while set */
	int connect_gate;             /* connects wait while set */
	int in_connect;               /* connects waiting at it */
	int broken_once;              /* "broken" answers -2 once */
} F = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static int conn_token;

static uint64_t
fake_now(void)
{
	pthread_mutex_lock(&F.mu);
	uint64_t t = F.clock;
	pthread_mutex_unlock(&F.mu);
	return t;
}

static void
advance(uint64_t ms)
{
	pthread_mutex_lock(&F.mu);
	F.clock += ms;
	pthread_mutex_unlock(&F.mu);
}

static void *
fake_connect(void *arg, char *why, size_t whylen)
{
	(void)arg;
	pthread_mutex_lock(&F.mu);
	F.connects++;
	F.in_connect++;
	pthread_cond_broadcast(&F.cv);
	while (F.connect_gate)
		pthread_cond_wait(&F.cv, &F.mu);
	F.in_connect--;
	int fail = F.connect_fails;
	pthread_mutex_unlock(&F.mu);
	if (fail) {
		snprintf(why, whylen, "connection refused");
		return NULL;
	}
	return &conn_token;
}

static void
fake_disconnect(void *arg, void *conn)
{
	(void)arg;
	assert_ptr_equal(conn, &conn_token);
	pthread_mutex_lock(&F.mu);
	F.disconnects++;
	pthread_mutex_unlock(&F.mu);
}

/* "no..." not found, "broken" -2 once, "slow" -3, "err" -1, else found:
 * 'u'/'p' "user..." a user record, "badrec" one too short, "longhost" one
 * with a host too long; else "v:KIND:KEY". */
static int
fake_query(void *arg, void *conn, char kind, const char *key, char **val, char *why, size_t whylen)
{
	(void)arg;
	assert_ptr_equal(conn, &conn_token);
	pthread_mutex_lock(&F.mu);
	if (F.nseen < MAX_SEEN)
		snprintf(F.seen[F.nseen++], sizeof F.seen[0], "%c:%s", kind, key);
	F.in_query++;
	pthread_cond_broadcast(&F.cv);
	while (F.gate_closed)
		pthread_cond_wait(&F.cv, &F.mu);
	F.in_query--;
	int broken = !strcmp(key, "broken") && F.broken_once;
	if (broken)
		F.broken_once = 0;
	pthread_mutex_unlock(&F.mu);
	if (broken) {
		snprintf(why, whylen, "server closed the connection");
		return -2;
	}
	if (!strcmp(key, "slow")) {
		snprintf(why, whylen, "no answer");
		return -3;
	}
	if (!strcmp(key, "err")) {
		snprintf(why, whylen, "syntax error");
		return -1;
	}
	if (!strncmp(key, "no", 2))
		return 0;
	char buf[400];
	if (!strcmp(key, "badrec")) {
		snprintf(buf, sizeof buf, "a\nb\n");
	} else if (kind != 'm' && !strcmp(key, "longhost")) {
		char host[300];
		memset(host, 'h', sizeof host - 1);
		host[sizeof host - 1] = 0;
		snprintf(buf, sizeof buf, "\n\n\n/h\n%s\n\n\n", host);
	} else if (kind != 'm' && !strncmp(key, "user", 4)) {
		/* a user record: name uid gid home host password extra */
		snprintf(buf, sizeof buf, "\n1001\nx\n/home/%s\nmx2\n%s\nextra\n", key, kind == 'p' ? "{X}h" : "");
	} else {
		snprintf(buf, sizeof buf, "v:%c:%s", kind, key);
	}
	*val = strdup(buf);
	return *val ? 1 : -1;
}

static const struct pt_lookup_ops fake_ops = {
	.connect = fake_connect,
	.query = fake_query,
	.disconnect = fake_disconnect,
	.now_ms = fake_now,
};

static int
setup(void **state)
{
	(void)state;
	pthread_mutex_lock(&F.mu);
	F.clock = 1000000;
	F.gate_closed = F.in_query = 0;
	F.nseen = 0;
	F.connects = F.disconnects = F.connect_fails = F.broken_once = 0;
	F.connect_gate = F.in_connect = 0;
	pthread_mutex_unlock(&F.mu);
	pt_map_set_may_block(1);
	return 0;
}

static size_t
nseen(void)
{
	pthread_mutex_lock(&F.mu);
	size_t n = F.nseen;
	pthread_mutex_unlock(&F.mu);
	return n;
}

static int
connects(void)
{
	pthread_mutex_lock(&F.mu);
	int n = F.connects;
	pthread_mutex_unlock(&F.mu);
	return n;
}

static void
gate(int closed)
{
	pthread_mutex_lock(&F.mu);
	F.gate_closed = closed;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
}

static void
wait_in_query(int n)
{
	pthread_mutex_lock(&F.mu);
	while (F.in_query < n)
		pthread_cond_wait(&F.cv, &F.mu);
	pthread_mutex_unlock(&F.mu);
}

static struct pt_lookup *
make_max(unsigned threads, unsigned ttl, unsigned negative_ttl, unsigned retry_max, size_t cache_max)
{
	struct pt_lookup_settings s = {
		.cache_max = cache_max,
		.type = "fake",
		.path = "/test.cf",
		.ttl_s = ttl,
		.negative_ttl_s = negative_ttl,
		.threads = threads,
		.wait_s = 30,
		.retry_max_s = retry_max,
		.server = "database",
		.record = "database row",
	};
	struct pt_lookup *lk = pt_lookup_new(&fake_ops, &s, NULL);
	assert_non_null(lk);
	return lk;
}

static struct pt_lookup *
make(unsigned threads, unsigned ttl, unsigned negative_ttl, unsigned retry_max)
{
	return make_max(threads, ttl, negative_ttl, retry_max, 0);
}

/* get and compare: rc, and the value when found */
static void
expect(struct pt_lookup *lk, char kind, const char *key, int rc, const char *val)
{
	char *v = (char *)"unset";
	assert_int_equal(pt_lookup_get(lk, kind, key, &v), rc);
	if (rc == 1) {
		assert_string_equal(v, val);
		free(v);
	} else {
		assert_null(v);
	}
}

static void
test_cache(void **state)
{
	(void)state;
	struct pt_lookup *lk = make(1, 60, 10, 0);
	expect(lk, 'm', "Alice@Example.ORG", 1, "v:m:alice@example.org");
	assert_int_equal(nseen(), 1);
	/* a hit, whatever the case */
	expect(lk, 'm', "alice@example.org", 1, "v:m:alice@example.org");
	assert_int_equal(nseen(), 1);
	/* the kind is part of the key */
	expect(lk, 'u', "alice@example.org", 1, "v:u:alice@example.org");
	assert_int_equal(nseen(), 2);
	/* negative entries */
	expect(lk, 'm', "nobody", 0, NULL);
	expect(lk, 'm', "nobody", 0, NULL);
	assert_int_equal(nseen(), 3);
	/* the negative TTL ends first, then the positive one */
	advance(10000);
	expect(lk, 'm', "nobody", 0, NULL);
	expect(lk, 'm', "alice@example.org", 1, "v:m:alice@example.org");
	assert_int_equal(nseen(), 4);
	advance(50000);
	expect(lk, 'm', "alice@example.org", 1, "v:m:alice@example.org");
	assert_int_equal(nseen(), 5);
	/* a failure answers -1 for a second */
	expect(lk, 'm', "err", -1, NULL);
	expect(lk, 'm', "err", -1, NULL);
	assert_int_equal(nseen(), 6);
	advance(1000);
	expect(lk, 'm', "err", -1, NULL);
	assert_int_equal(nseen(), 7);
	/* a key too long is not found, and not asked */
	char big[1200];
	memset(big, 'k', sizeof big - 1);
	big[sizeof big - 1] = 0;
	expect(lk, 'm', big, 0, NULL);
	assert_int_equal(nseen(), 7);
	/* one connection for all of it */
	assert_int_equal(connects(), 1);
	pt_lookup_free(lk);
	assert_int_equal(F.disconnects, 1);
}

/* TTL 0: still kept a second, for the callers told "pending". */
static void
test_ttl_zero(void **state)
{
	(void)state;
	struct pt_lookup *lk = make(1, 0, 0, 0);
	expect(lk, 'm', "a", 1, "v:m:a");
	expect(lk, 'm', "no", 0, NULL);
	expect(lk, 'm', "a", 1, "v:m:a");
	expect(lk, 'm', "no", 0, NULL);
	assert_int_equal(nseen(), 2);
	advance(1000);
	expect(lk, 'm', "a", 1, "v:m:a");
	expect(lk, 'm', "no", 0, NULL);
	assert_int_equal(nseen(), 4);
	pt_lookup_free(lk);
}

/* A thread that may not block is told "pending" (and it is counted), and
 * finds the answer when it asks again. Lookups go out in the order asked,
 * a key asked again while queued only once. */
static void
test_pending_and_order(void **state)
{
	(void)state;
	struct pt_lookup *lk = make(1, 60, 60, 0);
	gate(1);
	pt_map_set_may_block(0);
	unsigned long pending = pt_map_pending_count();
	expect(lk, 'm', "k0", -1, NULL);
	wait_in_query(1);
	static const char *const keys[] = { "k5", "k1", "k4", "k2", "k3" };
	for (size_t i = 0; i < 5; i++)
		expect(lk, 'm', keys[i], -1, NULL);
	expect(lk, 'm', "k1", -1, NULL);
	expect(lk, 'u', "k1", -1, NULL);
	assert_int_equal(pt_map_pending_count() - pending, 8);
	gate(0);
	pt_map_set_may_block(1);
	/* the last one asked: all before it are done when it is */
	expect(lk, 'u', "k1", 1, "v:u:k1");
	pt_map_set_may_block(0);
	expect(lk, 'm', "k0", 1, "v:m:k0");
	expect(lk, 'm', "k4", 1, "v:m:k4");
	assert_int_equal(pt_map_pending_count() - pending, 8);
	static const char *const order[] = { "m:k0", "m:k5", "m:k1", "m:k4", "m:k2", "m:k3", "u:k1" };
	assert_int_equal(nseen(), 7);
	for (size_t i = 0; i < 7; i++)
		assert_string_equal(F.seen[i], order[i]);
	pt_lookup_free(lk);
}

/* Connects after a failure wait 0.5 s, doubling up to retry_max; a
 * connect that works resets that; a broken connection is replaced once
 * at once; a server that does not answer counts as down. */
static void
test_backoff(void **state)
{
	(void)state;
	struct pt_lookup *lk = make(1, 60, 60, 2);
	F.connect_fails = 1;
	expect(lk, 'm', "a", -1, NULL);
	assert_int_equal(connects(), 1);
	/* the failure is cached for the key... */
	expect(lk, 'm', "a", -1, NULL);
	/* ...and other keys fail at once during the backoff */
	advance(499);
	expect(lk, 'm', "b", -1, NULL);
	assert_int_equal(connects(), 1);
	advance(1);
	expect(lk, 'm', "c", -1, NULL);
	assert_int_equal(connects(), 2);
	/* next wait 1 s */
	advance(999);
	expect(lk, 'm', "d", -1, NULL);
	assert_int_equal(connects(), 2);
	advance(1);
	expect(lk, 'm', "e", -1, NULL);
	assert_int_equal(connects(), 3);
	/* next 2 s (retry_max), and then no longer */
	advance(1999);
	expect(lk, 'm', "f", -1, NULL);
	assert_int_equal(connects(), 3);
	advance(1);
	expect(lk, 'm', "g", -1, NULL);
	assert_int_equal(connects(), 4);
	advance(2000);
	expect(lk, 'm', "h", -1, NULL);
	assert_int_equal(connects(), 5);
	/* the server is back */
	F.connect_fails = 0;
	advance(2000);
	expect(lk, 'm', "a", 1, "v:m:a");
	assert_int_equal(connects(), 6);
	assert_int_equal(nseen(), 1);
	/* broken: closed, a new connection, the same key again */
	F.broken_once = 1;
	expect(lk, 'm', "broken", 1, "v:m:broken");
	assert_int_equal(connects(), 7);
	assert_int_equal(F.disconnects, 1);
	assert_int_equal(nseen(), 3);
	/* no answer in time: closed, and down for the first backoff again */
	expect(lk, 'm', "slow", -1, NULL);
	assert_int_equal(F.disconnects, 2);
	advance(499);
	expect(lk, 'm', "i", -1, NULL);
	assert_int_equal(connects(), 7);
	advance(1);
	expect(lk, 'm', "i", -1, NULL);   /* its failure, cached */
	expect(lk, 'm', "j", 1, "v:m:j");
	assert_int_equal(connects(), 8);
	pt_lookup_free(lk);
	assert_int_equal(F.disconnects, 3);
}

/* Threads of the pool that fail to connect at the same time are one
 * outage: the wait is the first (0.5 s) and the next doubles once (1 s),
 * not once per thread. */
static void
test_backoff_threads(void **state)
{
	(void)state;
	struct pt_lookup *lk = make(4, 60, 60, 8);
	F.connect_fails = 1;
	pthread_mutex_lock(&F.mu);
	F.connect_gate = 1;
	pthread_mutex_unlock(&F.mu);
	pt_map_set_may_block(0);
	static const char *const keys[] = { "a", "b", "c", "d" };
	for (size_t i = 0; i < 4; i++)
		expect(lk, 'm', keys[i], -1, NULL);
	pthread_mutex_lock(&F.mu);
	while (F.in_connect < 4)
		pthread_cond_wait(&F.cv, &F.mu);
	F.connect_gate = 0;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
	/* all four failed */
	pt_map_set_may_block(1);
	for (size_t i = 0; i < 4; i++)
		expect(lk, 'm', keys[i], -1, NULL);
	assert_int_equal(connects(), 4);
	advance(499);
	expect(lk, 'm', "e", -1, NULL);
	assert_int_equal(connects(), 4);
	advance(1);
	expect(lk, 'm', "f", -1, NULL);
	assert_int_equal(connects(), 5);
	advance(999);
	expect(lk, 'm', "g", -1, NULL);
	assert_int_equal(connects(), 5);
	advance(1);
	expect(lk, 'm', "h", -1, NULL);
	assert_int_equal(connects(), 6);
	pt_lookup_free(lk);
}

/* Without a backoff every lookup may try to connect; a connection broken
 * twice in a row fails the lookup. */
static void
test_no_backoff(void **state)
{
	(void)state;
	struct pt_lookup *lk = make(1, 60, 60, 0);
	F.connect_fails = 1;
	expect(lk, 'm', "a", -1, NULL);
	expect(lk, 'm', "b", -1, NULL);
	assert_int_equal(connects(), 2);
	F.connect_fails = 0;
	expect(lk, 'm', "c", 1, "v:m:c");
	assert_int_equal(connects(), 3);
	/* -3 without a backoff: closed, the next lookup connects again */
	expect(lk, 'm', "slow", -1, NULL);
	expect(lk, 'm', "d", 1, "v:m:d");
	assert_int_equal(connects(), 4);
	pt_lookup_free(lk);
	assert_int_equal(F.disconnects, 2);
}

static void *
open_gate_later(void *arg)
{
	(void)arg;
	struct timespec ts = { 0, 200 * 1000000L };
	nanosleep(&ts, NULL);
	gate(0);
	return NULL;
}

/* Shutdown while the pool's threads are in a query and more lookups are
 * queued: the threads finish theirs and disconnect, and every entry
 * (answered, queued) is freed. */
static void
test_shutdown_pending(void **state)
{
	(void)state;
	struct pt_lookup *lk = make(3, 60, 60, 0);
	gate(1);
	pt_map_set_may_block(0);
	char key[32];
	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof key, "key%d", i);
		expect(lk, 'p', key, -1, NULL);
	}
	wait_in_query(3);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, open_gate_later, NULL), 0);
	pt_lookup_free(lk);
	pthread_join(t, NULL);
	assert_true(nseen() >= 3 && nseen() <= 50);
	assert_int_equal(F.connects, 3);
	assert_int_equal(F.disconnects, 3);
}

/* A full cache drops the expired answers first, and only when that is
 * not enough all the others; an answer dropped is asked again. */
static void
test_eviction(void **state)
{
	(void)state;
	struct pt_lookup *lk = make_max(1, 60, 10, 0, 4);
	expect(lk, 'm', "a", 1, "v:m:a");
	expect(lk, 'm', "b", 1, "v:m:b");
	expect(lk, 'm', "no1", 0, NULL);
	expect(lk, 'm', "no2", 0, NULL);
	assert_int_equal(nseen(), 4);
	/* the negative answers expire; the fifth key drops them only */
	advance(10000);
	expect(lk, 'm', "c", 1, "v:m:c");
	assert_int_equal(nseen(), 5);
	expect(lk, 'm', "a", 1, "v:m:a");
	expect(lk, 'm', "b", 1, "v:m:b");
	assert_int_equal(nseen(), 5);
	expect(lk, 'm', "no1", 0, NULL);
	assert_int_equal(nseen(), 6);
	assert_string_equal(F.seen[5], "m:no1");
	/* full of live answers (a b c no1): a new key drops them all */
	expect(lk, 'm', "d", 1, "v:m:d");
	assert_int_equal(nseen(), 7);
	expect(lk, 'm', "d", 1, "v:m:d");
	assert_int_equal(nseen(), 7);
	expect(lk, 'm', "a", 1, "v:m:a");
	assert_int_equal(nseen(), 8);
	assert_string_equal(F.seen[7], "m:a");
	pt_lookup_free(lk);
}

struct churn {
	struct pt_lookup *lk;
	const char *prefix;
	int rounds, bad;
};

/* Blocking lookups of new keys, each answer checked. */
static void *
churn(void *arg)
{
	struct churn *c = arg;
	pt_map_set_may_block(1);
	for (int i = 0; i < c->rounds; i++) {
		char key[40], want[60], *v = NULL;
		snprintf(key, sizeof key, "%s%d", c->prefix, i);
		snprintf(want, sizeof want, "v:m:%s", key);
		if (pt_lookup_get(c->lk, 'm', key, &v) != 1 || strcmp(v, want) != 0)
			c->bad++;
		free(v);
	}
	return NULL;
}

/* A caller waiting for its answer wakes after the worker let go of the
 * entry; another caller that fills the cache in between must not drop
 * (free) it under the waiter. Two callers insert new keys into a cache
 * of two entries, each one's insertion sweeping while the other may be
 * about to wake (the window is narrow: many rounds; ASan catches the
 * use after free, without it the answers go wrong or it crashes). */
static void
test_sweep_spares_waiter(void **state)
{
	(void)state;
	struct pt_lookup *lk = make_max(2, 60, 60, 0, 2);
	struct churn a = { lk, "a", 20000, 0 }, b = { lk, "b", 20000, 0 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, churn, &a), 0);
	churn(&b);
	pthread_join(t, NULL);
	assert_int_equal(a.bad, 0);
	assert_int_equal(b.bad, 0);
	pt_lookup_free(lk);
}

/* A caller that may block waits wait_s for an answer that does not come,
 * then gets a temporary failure (the deadline and the condition on the
 * same, monotonic, clock: a mismatch would end the wait at once). */
static void
test_wait_limit(void **state)
{
	(void)state;
	struct pt_lookup_settings s = { .type = "fake", .path = "/t.cf", .ttl_s = 60, .threads = 1, .wait_s = 1 };
	struct pt_lookup *lk = pt_lookup_new(&fake_ops, &s, NULL);
	assert_non_null(lk);
	gate(1);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	expect(lk, 'm', "late", -1, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= 900);
	gate(0);
	pt_lookup_free(lk);
}

/* Threads start with the first lookup; an unused backend has none. */
static void
test_unused(void **state)
{
	(void)state;
	struct pt_lookup *lk = make(4, 60, 60, 0);
	pt_lookup_free(lk);
	assert_int_equal(F.connects, 0);
	pt_lookup_free(NULL);
}

static int released;

static int
no_x(void *arg, const char *key)
{
	(void)arg;
	return !strchr(key, 'x');
}

static void
release(void *arg)
{
	released++;
	free(arg);
}

/* Keys the backend refuses are not found without a query; its arg is
 * released with the rest. */
static void
test_key_ok_release(void **state)
{
	(void)state;
	struct pt_lookup_ops ops = fake_ops;
	ops.key_ok = no_x;
	ops.release = release;
	struct pt_lookup_settings s = { .type = "fake", .path = "/t.cf", .ttl_s = 60, .threads = 1, .wait_s = 30 };
	char *arg = strdup("the backend");
	struct pt_lookup *lk = pt_lookup_new(&ops, &s, arg);
	assert_non_null(lk);
	assert_ptr_equal(pt_lookup_arg(lk), arg);
	expect(lk, 'm', "box", 0, NULL);
	expect(lk, 'm', "bag", 1, "v:m:bag");
	assert_int_equal(nseen(), 1);
	released = 0;
	pt_lookup_free(lk);
	assert_int_equal(released, 1);
}

/* The map type's ops and the passdb record on the handle. */
static void
test_map_ops(void **state)
{
	(void)state;
	struct pt_lookup *lk = make(2, 60, 10, 0);
	int tf = -1;
	char *v = pt_lookup_map_lookup(lk, "A", &tf);
	assert_string_equal(v, "v:m:a");
	assert_int_equal(tf, 0);
	free(v);
	assert_null(pt_lookup_map_lookup(lk, "nope", &tf));
	assert_int_equal(tf, 0);
	assert_null(pt_lookup_map_lookup(lk, "err", &tf));
	assert_int_equal(tf, 1);

	struct pt_user u = { .uid = (uid_t)-1, .gid = (gid_t)-1 };
	assert_int_equal(pt_lookup_map_userdb(lk, "User1", &u), 1);
	assert_string_equal(u.name, "User1");     /* no name field: the login */
	assert_int_equal(u.uid, 1001);
	assert_int_equal(u.gid, (gid_t)-1);       /* "x": not a number */
	assert_string_equal(u.home, "/home/user1");
	assert_string_equal(u.host, "mx2");
	assert_int_equal(pt_lookup_map_userdb(lk, "nobody", &u), 0);
	assert_int_equal(pt_lookup_map_userdb(lk, "err", &u), -1);
	assert_int_equal(pt_lookup_map_userdb(lk, "badrec", &u), -1);
	assert_int_equal(pt_lookup_map_userdb(lk, "longhost", &u), -1);
	char big[100];
	memset(big, 'u', sizeof big - 1);
	big[sizeof big - 1] = 0;
	memcpy(big, "user", 4);
	assert_int_equal(pt_lookup_map_userdb(lk, big, &u), -1);   /* the name */

	char why[100], *rec, *f[PT_LF_COUNT];
	assert_int_equal(pt_lookup_passdb_rec(lk, "user2", &rec, f, why, sizeof why), 1);
	assert_string_equal(f[PT_LF_PASSWORD], "{X}h");
	assert_string_equal(f[PT_LF_HOST], "mx2");
	assert_string_equal(f[PT_LF_EXTRA], "extra");
	pt_lookup_rec_free(rec);
	assert_int_equal(pt_lookup_passdb_rec(lk, "nobody", &rec, f, why, sizeof why), 0);
	assert_string_equal(why, "unknown user");
	assert_int_equal(pt_lookup_passdb_rec(lk, "err", &rec, f, why, sizeof why), -1);
	assert_string_equal(why, "database unavailable");
	assert_int_equal(pt_lookup_passdb_rec(lk, "badrec", &rec, f, why, sizeof why), -1);
	assert_string_equal(why, "unusable database row");
	why[0] = 0;
	pt_lookup_rec_unusable(lk, why, sizeof why);
	assert_string_equal(why, "unusable database row");
	pt_lookup_rec_free(NULL);

	unsigned ttl = 0, neg = 0;
	pt_lookup_map_cache_ttl(lk, &ttl, &neg);
	assert_int_equal(ttl, 60);
	assert_int_equal(neg, 10);
	pt_lookup_map_close(lk);

	char err[200];
	pt_lookup_config_errors(err, sizeof err, "pgsql", "/etc/p.cf", 1);
	assert_string_equal(err, "/etc/p.cf: 1 error in the pgsql config (logged above)");
	pt_lookup_config_errors(err, sizeof err, "ldap", "/etc/l.cf", 3);
	assert_string_equal(err, "/etc/l.cf: 3 errors in the ldap config (logged above)");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_cache, setup),
		cmocka_unit_test_setup(test_ttl_zero, setup),
		cmocka_unit_test_setup(test_pending_and_order, setup),
		cmocka_unit_test_setup(test_backoff, setup),
		cmocka_unit_test_setup(test_backoff_threads, setup),
		cmocka_unit_test_setup(test_no_backoff, setup),
		cmocka_unit_test_setup(test_shutdown_pending, setup),
		cmocka_unit_test_setup(test_eviction, setup),
		cmocka_unit_test_setup(test_sweep_spares_waiter, setup),
		cmocka_unit_test_setup(test_wait_limit, setup),
		cmocka_unit_test_setup(test_unused, setup),
		cmocka_unit_test_setup(test_key_ok_release, setup),
		cmocka_unit_test_setup(test_map_ops, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
