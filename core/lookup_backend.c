/* The lookup modules' cache, queue, thread pool and reconnect with
 * backoff (postern/lookup_backend.h); the modules keep connect, query and
 * the parsing of results. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "postern/event.h"
#include "postern/config.h"
#include "postern/log.h"
#include "postern/lookup_backend.h"
#include "postern/services.h"

#define NBUCKET 1024
#define CACHE_MAX 20000
#define FAIL_TTL_MS 1000
/* An answer is kept at least this long whatever the TTL (0 included), so
 * the callers that were told "pending" find it when they ask again. */
#define MIN_TTL_MS 1000
#define BACKOFF_FIRST_MS 500
/* kind byte + key + NUL */
#define KEY_MAX 1100

enum ent_state { ENT_PENDING, ENT_DONE, ENT_FAILED };

struct ent {
	char *key;                    /* kind byte + folded key */
	char *val;                    /* DONE: NULL = not found */
	enum ent_state state;
	uint64_t expires;             /* ms, monotonic */
	int queued;
	/* callers in the blocking wait for this entry: a sweep leaves it
	 * (they read it when they wake, after the worker let go of it) */
	unsigned waiters;
	struct ent *hnext;            /* hash chain */
	struct ent *qnext;            /* work queue */
};

struct pt_lookup {
	struct pt_lookup_ops ops;
	void *arg;
	char *type, *path, *server, *record;
	unsigned ttl_s, negative_ttl_s, threads, wait_s, retry_max_s;
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	struct ent *bucket[NBUCKET];
	size_t count, cache_max;
	struct ent *qhead, *qtail;
	pthread_t thread[PT_LOOKUP_MAX_THREADS];
	size_t nthread;
	int stopping;
	/* the server's health, shared by the pool (under mu) */
	uint64_t down_until;
	unsigned backoff_ms;
};


/* The engine's clock: the test's when it set one. */
static uint64_t
pt_lookup_now_ms(const struct pt_lookup *lk)
{
	return lk && lk->ops.now_ms ? lk->ops.now_ms() : pt_mono_ms();
}

static size_t
hash(const char *s)
{
	size_t h = 5381;
	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

struct pt_lookup *
pt_lookup_new(const struct pt_lookup_ops *ops, const struct pt_lookup_settings *s, void *arg)
{
	struct pt_lookup *lk = calloc(1, sizeof *lk);
	if (!lk) {
		if (ops->release)
			ops->release(arg);
		return NULL;
	}
	lk->ops = *ops;
	lk->arg = arg;
	lk->type = strdup(s->type ? s->type : "lookup");
	lk->path = strdup(s->path ? s->path : "");
	lk->server = strdup(s->server ? s->server : "server");
	lk->record = strdup(s->record ? s->record : "record");
	if (!lk->type || !lk->path || !lk->server || !lk->record) {
		free(lk->type);
		free(lk->path);
		free(lk->server);
		free(lk->record);
		free(lk);
		if (ops->release)
			ops->release(arg);
		return NULL;
	}
	lk->ttl_s = s->ttl_s;
	lk->negative_ttl_s = s->negative_ttl_s;
	lk->threads = s->threads < 1 ? 1 : s->threads > PT_LOOKUP_MAX_THREADS ? PT_LOOKUP_MAX_THREADS : s->threads;
	lk->wait_s = s->wait_s;
	lk->retry_max_s = s->retry_max_s;
	lk->cache_max = s->cache_max ? s->cache_max : CACHE_MAX;
	lk->backoff_ms = BACKOFF_FIRST_MS;
	pthread_mutex_init(&lk->mu, NULL);
	pthread_cond_init(&lk->work, NULL);
	/* the blocking wait's deadline is monotonic like the rest: a clock
	 * step must not cut it short or stretch it */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&lk->done, &ca);
	pthread_condattr_destroy(&ca);
	return lk;
}

void
pt_lookup_rec_free(char *rec)
{
	if (rec) {
		/* user records carry password hashes (OPENSSL_cleanse: a
		 * memset before free may be optimised away) */
		OPENSSL_cleanse(rec, strlen(rec));
		free(rec);
	}
}

static void
ent_free(struct ent *e)
{
	free(e->key);
	pt_lookup_rec_free(e->val);
	free(e);
}

void
pt_lookup_free(struct pt_lookup *lk)
{
	if (!lk)
		return;
	pthread_mutex_lock(&lk->mu);
	lk->stopping = 1;
	pthread_cond_broadcast(&lk->work);
	pthread_mutex_unlock(&lk->mu);
	for (size_t i = 0; i < lk->nthread; i++)
		pthread_join(lk->thread[i], NULL);
	for (size_t i = 0; i < NBUCKET; i++)
		for (struct ent *e = lk->bucket[i], *n; e; e = n) {
			n = e->hnext;
			ent_free(e);
		}
	pthread_mutex_destroy(&lk->mu);
	pthread_cond_destroy(&lk->work);
	pthread_cond_destroy(&lk->done);
	if (lk->ops.release)
		lk->ops.release(lk->arg);
	free(lk->type);
	free(lk->path);
	free(lk->server);
	free(lk->record);
	free(lk);
}

void *
pt_lookup_arg(const struct pt_lookup *lk)
{
	return lk->arg;
}

static struct ent **
slot(struct pt_lookup *lk, const char *key)
{
	struct ent **pp = &lk->bucket[hash(key) & (NBUCKET - 1)];
	while (*pp && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->hnext;
	return pp;
}

/* Drop expired answers, or all answers (not pending ones: a thread holds
 * them; nor those a caller still waits on). */
static void
sweep(struct pt_lookup *lk, uint64_t now, int all)
{
	for (size_t i = 0; i < NBUCKET; i++)
		for (struct ent **pp = &lk->bucket[i]; *pp;) {
			struct ent *e = *pp;
			if (e->state != ENT_PENDING && !e->queued && !e->waiters && (all || e->expires <= now)) {
				*pp = e->hnext;
				ent_free(e);
				lk->count--;
			} else {
				pp = &e->hnext;
			}
		}
}

/* The lookup of key (kind byte first) with this thread's connection
 * *conn, made or remade as needed within the backoff. */
static int
lookup(struct pt_lookup *lk, void **conn, const char *key, char **val, char *why, size_t whylen)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!*conn) {
			if (lk->retry_max_s) {
				pthread_mutex_lock(&lk->mu);
				uint64_t until = lk->down_until, now = pt_lookup_now_ms(lk);
				pthread_mutex_unlock(&lk->mu);
				if (now < until) {
					snprintf(why, whylen, "%s unreachable, next try in %llu ms", lk->server,
					         (unsigned long long)(until - now));
					return -1;
				}
			}
			*conn = lk->ops.connect(lk->arg, why, whylen);
			if (lk->retry_max_s) {
				pthread_mutex_lock(&lk->mu);
				if (*conn) {
					lk->backoff_ms = BACKOFF_FIRST_MS;
					lk->down_until = 0;
				} else {
					/* Only the first failure of an outage sets the wait
					 * and doubles the next: the pool's threads that tried
					 * at the same time fail within that wait and leave it
					 * (else N threads would double it N times at once). */
					uint64_t now = pt_lookup_now_ms(lk);
					if (now >= lk->down_until) {
						lk->down_until = now + lk->backoff_ms;
						lk->backoff_ms *= 2;
						if (lk->backoff_ms > lk->retry_max_s * 1000)
							lk->backoff_ms = lk->retry_max_s * 1000;
					}
				}
				pthread_mutex_unlock(&lk->mu);
			}
			if (!*conn)
				return -1;
		}
		int rc = lk->ops.query(lk->arg, *conn, key[0], key + 1, val, why, whylen);
		if (rc >= -1)
			return rc;
		lk->ops.disconnect(lk->arg, *conn);
		*conn = NULL;
		if (rc == -3) {
			/* a server that does not answer: the others in the queue
			 * fail at once for a while instead of each waiting */
			if (lk->retry_max_s) {
				pthread_mutex_lock(&lk->mu);
				lk->down_until = pt_lookup_now_ms(lk) + lk->backoff_ms;
				pthread_mutex_unlock(&lk->mu);
			}
			return -1;
		}
		/* A broken connection (a restarted server): once more on a
		 * new one. */
	}
	return -1;
}

static void *
worker(void *arg)
{
	struct pt_lookup *lk = arg;
	void *conn = NULL;
	pthread_mutex_lock(&lk->mu);
	for (;;) {
		while (!lk->qhead && !lk->stopping)
			pthread_cond_wait(&lk->work, &lk->mu);
		if (lk->stopping)
			break;
		struct ent *e = lk->qhead;
		lk->qhead = e->qnext;
		if (!lk->qhead)
			lk->qtail = NULL;
		char *key = strdup(e->key);
		pthread_mutex_unlock(&lk->mu);

		char why[400] = "";
		char *val = NULL;
		int rc = key ? lookup(lk, &conn, key, &val, why, sizeof why) : -1;
		if (rc < 0)
			pt_log(PT_LOG_WARNING, "%s %s: lookup of \"%.100s\" failed: %s", lk->type, lk->path,
			       key ? key + 1 : "?", why[0] ? why : "out of memory");
		free(key);

		pthread_mutex_lock(&lk->mu);
		uint64_t now = pt_lookup_now_ms(lk);
		e->queued = 0;
		pt_lookup_rec_free(e->val);
		e->val = rc == 1 ? val : NULL;
		if (rc != 1)
			pt_lookup_rec_free(val);
		e->state = rc < 0 ? ENT_FAILED : ENT_DONE;
		uint64_t ttl = (uint64_t)(rc == 1 ? lk->ttl_s : lk->negative_ttl_s) * 1000;
		e->expires = now + (rc < 0 ? FAIL_TTL_MS : ttl < MIN_TTL_MS ? MIN_TTL_MS : ttl);
		pthread_cond_broadcast(&lk->done);
	}
	pthread_mutex_unlock(&lk->mu);
	if (conn)
		lk->ops.disconnect(lk->arg, conn);
	return NULL;
}

/* Called with lk->mu held: the pool's threads, once (again only when
 * none could be started). Signals blocked: they go to the process's own
 * threads. */
static int
start_threads(struct pt_lookup *lk)
{
	if (lk->nthread)
		return 0;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (unsigned i = 0; i < lk->threads; i++)
		if (pthread_create(&lk->thread[lk->nthread], NULL, worker, lk) == 0)
			lk->nthread++;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return lk->nthread ? 0 : -1;
}

int
pt_lookup_get(struct pt_lookup *lk, char kind, const char *key, char **val)
{
	char k[KEY_MAX];
	size_t n = strlen(key);
	*val = NULL;
	if (n + 2 > sizeof k || (lk->ops.key_ok && !lk->ops.key_ok(lk->arg, key)))
		return 0;
	k[0] = kind;
	for (size_t i = 0; i <= n; i++)
		k[i + 1] = (char)(key[i] >= 'A' && key[i] <= 'Z' ? key[i] + 32 : key[i]);
	int may_block = pt_map_may_block();
	pthread_mutex_lock(&lk->mu);
	uint64_t now = pt_lookup_now_ms(lk);
	struct ent **pp = slot(lk, k), *e = *pp;
	if (e && e->state != ENT_PENDING && e->expires <= now && !e->queued) {
		/* expired: ask again */
		e->state = ENT_PENDING;
	}
	if (!e) {
		if (lk->count >= lk->cache_max) {
			sweep(lk, now, 0);
			if (lk->count >= lk->cache_max)
				sweep(lk, now, 1);
			pp = slot(lk, k);
		}
		e = calloc(1, sizeof *e);
		if (!e || !(e->key = strdup(k))) {
			free(e);
			pthread_mutex_unlock(&lk->mu);
			return -1;
		}
		e->state = ENT_PENDING;
		*pp = e;
		lk->count++;
	}
	if (e->state == ENT_PENDING && !e->queued) {
		if (start_threads(lk) < 0) {
			e->state = ENT_FAILED;
			e->expires = now + FAIL_TTL_MS;
		} else {
			e->queued = 1;
			e->qnext = NULL;
			if (lk->qtail)
				lk->qtail->qnext = e;
			else
				lk->qhead = e;
			lk->qtail = e;
			pthread_cond_signal(&lk->work);
		}
	}
	if (e->state == ENT_PENDING && may_block) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += (time_t)lk->wait_s;
		/* between the worker's broadcast and this thread taking mu again,
		 * another caller's insertion may sweep: the count keeps e */
		e->waiters++;
		while (e->state == ENT_PENDING && !lk->stopping)
			if (pthread_cond_timedwait(&lk->done, &lk->mu, &until) == ETIMEDOUT)
				break;
		e->waiters--;
	}
	int rc;
	if (e->state == ENT_PENDING) {
		pt_map_note_pending();
		rc = -1;
	} else if (e->state == ENT_FAILED) {
		rc = -1;
	} else if (e->val) {
		*val = strdup(e->val);
		rc = *val ? 1 : -1;
	} else {
		rc = 0;
	}
	pthread_mutex_unlock(&lk->mu);
	return rc;
}

/* ---- a module's map type and passdb/userdb source ---- */

/* also the file maps' report (core/map.c) */
void
pt_lookup_log_report(void *arg, int is_error, const char *msg)
{
	(void)arg;
	pt_log(is_error ? PT_LOG_ERROR : PT_LOG_WARNING, "%s", msg);
}

void
pt_lookup_config_errors(char *err, size_t errlen, const char *type, const char *path, int n)
{
	snprintf(err, errlen, "%s: %d error%s in the %s config (logged above)", path, n, n == 1 ? "" : "s", type);
}

/* Split an LF-terminated record into its fields in place: 0, or -1 when
 * it has fewer. */
static int
split(char *rec, char **f)
{
	char *p = rec;
	for (size_t i = 0; i < PT_LF_COUNT; i++) {
		char *nl = strchr(p, '\n');
		if (!nl)
			return -1;
		*nl = 0;
		f[i] = p;
		p = nl + 1;
	}
	return 0;
}

void
pt_lookup_map_close(void *h)
{
	pt_lookup_free(h);
}

char *
pt_lookup_map_lookup(void *h, const char *key, int *tempfail)
{
	char *val = NULL;
	int rc = pt_lookup_get(h, 'm', key, &val);
	*tempfail = rc < 0;
	return rc == 1 ? val : NULL;
}

int
pt_lookup_map_userdb(void *h, const char *user, struct pt_user *out)
{
	char *val = NULL;
	int rc = pt_lookup_get(h, 'u', user, &val);
	if (rc <= 0)
		return rc;
	char *f[PT_LF_COUNT];
	if (split(val, f) < 0) {
		pt_lookup_rec_free(val);
		return -1;
	}
	const char *name = f[PT_LF_NAME][0] ? f[PT_LF_NAME] : user;
	if (strlen(name) >= sizeof out->name || strlen(f[PT_LF_HOME]) >= sizeof out->home ||
	    strlen(f[PT_LF_HOST]) >= sizeof out->host) {
		pt_lookup_rec_free(val);
		return -1;
	}
	snprintf(out->name, sizeof out->name, "%s", name);
	char *end;
	unsigned long v;
	if (f[PT_LF_UID][0] && (v = strtoul(f[PT_LF_UID], &end, 10), !*end))
		out->uid = (uid_t)v;
	if (f[PT_LF_GID][0] && (v = strtoul(f[PT_LF_GID], &end, 10), !*end))
		out->gid = (gid_t)v;
	snprintf(out->home, sizeof out->home, "%s", f[PT_LF_HOME]);
	/* where this user's mail lives */
	snprintf(out->host, sizeof out->host, "%s", f[PT_LF_HOST]);
	pt_lookup_rec_free(val);
	return 1;
}

void
pt_lookup_map_cache_ttl(void *h, unsigned *ttl_s, unsigned *negative_ttl_s)
{
	const struct pt_lookup *lk = h;
	*ttl_s = lk->ttl_s;
	*negative_ttl_s = lk->negative_ttl_s;
}

int
pt_lookup_passdb_rec(struct pt_lookup *lk, const char *user, char **rec, char *f[PT_LF_COUNT], char *why,
                     size_t whylen)
{
	int rc = pt_lookup_get(lk, 'p', user, rec);
	if (rc < 0) {
		snprintf(why, whylen, "%s unavailable", lk->server);
		return -1;
	}
	if (rc == 0) {
		snprintf(why, whylen, "unknown user");
		return 0;
	}
	if (split(*rec, f) < 0) {
		pt_lookup_rec_free(*rec);
		*rec = NULL;
		pt_lookup_rec_unusable(lk, why, whylen);
		return -1;
	}
	return 1;
}

void
pt_lookup_rec_unusable(const struct pt_lookup *lk, char *why, size_t whylen)
{
	snprintf(why, whylen, "unusable %s", lk->record);
}

int
pt_lookup_register(const char *type, const struct pt_map_type_ops *ops)
{
	if (pt_map_type_register(type, ops) != 0) {
		pt_log(PT_LOG_ERROR, "%s: cannot register the map type", type);
		return -1;
	}
	return 0;
}

struct check_ctx {
	const struct pt_config *conf;
	const char *param;
};

static void
check_report(void *arg, int is_error, const char *msg)
{
	const struct check_ctx *c = arg;
	if (is_error)
		pt_conf_error(c->conf, c->param, "%s: %s", c->param, msg);
}

int
pt_lookup_check_sources(const struct pt_config *conf, const char *type,
                        int (*check)(const char *arg, char what, pt_map_report_fn *report, void *rarg))
{
	static const char *const params[] = { "passdb", "userdb" };
	int bad = 0;
	for (size_t i = 0; i < 2; i++) {
		const char *v = pt_conf_str(conf, params[i]), *arg;
		char vtype[32];
		struct check_ctx c = { conf, params[i] };
		/* split as passdb/userdb themselves do */
		if (pt_map_spec_module(v, vtype, sizeof vtype, &arg) && strcmp(vtype, type) == 0 &&
		    check(arg, i == 0 ? 'p' : 'u', check_report, &c) != 0)
			bad = 1;
	}
	return bad ? -1 : 0;
}
