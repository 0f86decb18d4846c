/* One backend per config file and process: a small pool of threads, each
 * owning one PostgreSQL connection (opened when first needed, reopened
 * when it breaks), runs the queued lookups; a cache of answers, positive
 * and negative, each for its TTL, sits in front. An event loop never
 * waits here: a lookup not in the cache is queued and answered "pending"
 * (map.h), and the caller asks again when a thread has filled the entry.
 * A failure is remembered for a second for its key; a server that cannot
 * be reached (or stops answering) is not tried again before a backoff
 * (0.5 s doubling up to retry_max), during which lookups fail at once:
 * callers get their 4xx without each waiting out a timeout. Threads that
 * may block (agents, pool jobs, CLI) wait for the entry instead.
 *
 * Every query goes out with PQsendQueryParams: the key's pieces are
 * parameters, never SQL text (pgsql_query.c). */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgsql_int.h"
#include "postern/log.h"

#define CACHE_MAX 20000
#define FAIL_TTL_MS 1000
/* An answer is kept at least this long whatever the TTL (0 included), so
 * the callers that were told "pending" find it when they ask again. */
#define MIN_TTL_MS 1000
#define BACKOFF_FIRST_MS 500
#define MAX_THREADS 16

enum ent_state { ENT_PENDING, ENT_DONE, ENT_FAILED };

struct ent {
	char *key;                    /* kind byte + folded key */
	char *val;                    /* DONE: NULL = not found */
	enum ent_state state;
	uint64_t expires;             /* ms, monotonic */
	int queued;
	struct ent *hnext;            /* hash chain */
	struct ent *qnext;            /* work queue */
};

struct pbackend {
	struct pcf cf;
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	struct ent **bucket;
	size_t nbucket, count;
	struct ent *qhead, *qtail;
	pthread_t thread[MAX_THREADS];
	size_t nthread;
	int started, stopping;
	/* the server's health, shared by the pool (under mu) */
	uint64_t down_until;
	unsigned backoff_ms;
	unsigned long queries;
};

static uint64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static size_t
hash(const char *s)
{
	size_t h = 5381;
	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

const struct pcf *
pbackend_cf(const struct pbackend *b)
{
	return &b->cf;
}

static void
log_report(void *arg, int is_error, const char *msg)
{
	(void)arg;
	pt_log(is_error ? PT_LOG_ERROR : PT_LOG_WARNING, "%s", msg);
}

struct pbackend *
pbackend_open(const char *path, char *err, size_t errlen)
{
	struct pbackend *b = calloc(1, sizeof *b);
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	int n = pcf_load(path, &b->cf, log_report, NULL);
	if (n) {
		pcf_free(&b->cf);
		snprintf(err, errlen, "%s: %d error%s in the pgsql config (logged above)", path, n,
		         n == 1 ? "" : "s");
		free(b);
		return NULL;
	}
	b->nbucket = 1024;
	b->bucket = calloc(b->nbucket, sizeof *b->bucket);
	if (!b->bucket) {
		pcf_free(&b->cf);
		free(b);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	b->backoff_ms = BACKOFF_FIRST_MS;
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->work, NULL);
	pthread_cond_init(&b->done, NULL);
	return b;
}

static void
ent_free(struct ent *e)
{
	free(e->key);
	if (e->val) {
		/* user records carry password hashes */
		memset(e->val, 0, strlen(e->val));
		free(e->val);
	}
	free(e);
}

void
pbackend_close(struct pbackend *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->mu);
	b->stopping = 1;
	pthread_cond_broadcast(&b->work);
	pthread_mutex_unlock(&b->mu);
	for (size_t i = 0; i < b->nthread; i++)
		pthread_join(b->thread[i], NULL);
	for (size_t i = 0; i < b->nbucket; i++)
		for (struct ent *e = b->bucket[i], *n; e; e = n) {
			n = e->hnext;
			ent_free(e);
		}
	free(b->bucket);
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->work);
	pthread_cond_destroy(&b->done);
	pcf_free(&b->cf);
	free(b);
}

/* ---- a connection ---- */

static void
quiet_notices(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* The first line of libpq's message, for the log. */
static void
first_line(char *why, size_t whylen, const char *prefix, const char *msg)
{
	size_t n = msg ? strcspn(msg, "\r\n") : 0;
	snprintf(why, whylen, "%s%.*s", prefix, (int)(n > 300 ? 300 : n), msg ? msg : "");
}

/* Split a hosts word: "inet:host:port", "host:port", "[v6]:port", "host",
 * "unix:/socket/dir". */
static void
host_port(const char *w, char *host, size_t hostlen, char *port, size_t portlen)
{
	port[0] = 0;
	if (!strncmp(w, "unix:", 5)) {
		snprintf(host, hostlen, "%s", w + 5);
		return;
	}
	if (!strncmp(w, "inet:", 5))
		w += 5;
	if (w[0] == '[') {
		const char *close = strchr(w, ']');
		if (close) {
			snprintf(host, hostlen, "%.*s", (int)(close - w - 1), w + 1);
			if (close[1] == ':')
				snprintf(port, portlen, "%s", close + 2);
			return;
		}
	}
	const char *colon = strchr(w, ':');
	if (colon && !strchr(colon + 1, ':')) {
		snprintf(host, hostlen, "%.*s", (int)(colon - w), w);
		snprintf(port, portlen, "%s", colon + 1);
	} else {
		snprintf(host, hostlen, "%s", w);
	}
}

static PGconn *
connect_one(const struct pcf *cf, const char *hostword, char *why, size_t whylen)
{
	const char *kw[12], *val[12];
	size_t n = 0;
	char timeout[16], host[512], port[32];
	snprintf(timeout, sizeof timeout, "%u", cf->timeout_s < 2 ? 2 : cf->timeout_s);
	kw[n] = "connect_timeout", val[n++] = timeout;
	kw[n] = "client_encoding", val[n++] = "UTF8";
	kw[n] = "application_name", val[n++] = "postern";
	if (cf->connect) {
		kw[n] = "dbname", val[n++] = cf->connect;
	} else {
		if (hostword) {
			host_port(hostword, host, sizeof host, port, sizeof port);
			kw[n] = "host", val[n++] = host;
			if (port[0])
				kw[n] = "port", val[n++] = port;
		}
		kw[n] = "dbname", val[n++] = cf->dbname;
		if (cf->user)
			kw[n] = "user", val[n++] = cf->user;
		if (cf->password)
			kw[n] = "password", val[n++] = cf->password;
	}
	kw[n] = NULL, val[n] = NULL;
	/* expand_dbname: a connect string (key=value or postgresql:// URI)
	 * given as dbname; a plain dbname stays a name. */
	PGconn *c = PQconnectdbParams(kw, val, cf->connect ? 1 : 0);
	if (!c) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		char prefix[600];
		snprintf(prefix, sizeof prefix, "connect to %s: ", hostword ? hostword : cf->connect ? "(connect)" : "default");
		first_line(why, whylen, prefix, PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, quiet_notices, NULL);
	return c;
}

/* A connection to the first host that answers. */
static PGconn *
conn_open(const struct pcf *cf, char *why, size_t whylen)
{
	if (cf->connect || !cf->nhost)
		return connect_one(cf, NULL, why, whylen);
	for (size_t i = 0; i < cf->nhost; i++) {
		PGconn *c = connect_one(cf, cf->host[i], why, whylen);
		if (c)
			return c;
	}
	return NULL;
}

/* Until the connection has a result ready: 0, -1 timed out, -2 broken. */
static int
wait_ready(PGconn *c, uint64_t deadline)
{
	while (PQisBusy(c)) {
		uint64_t now = now_ms();
		if (now >= deadline)
			return -1;
		struct pollfd p = { .fd = PQsocket(c), .events = POLLIN };
		if (p.fd < 0)
			return -2;
		int r = poll(&p, 1, (int)(deadline - now));
		if (r < 0 && errno != EINTR)
			return -2;
		if (r > 0 && !PQconsumeInput(c))
			return -2;
	}
	return 0;
}

/* Values a caller can use: no line ends (they would split the cached
 * record, or an alias list). */
static int
value_ok(const char *v)
{
	return *v && !strpbrk(v, "\r\n");
}

static void
append(char **buf, size_t *len, const char *s, const char *sep)
{
	size_t n = strlen(s), sl = *len && sep ? strlen(sep) : 0;
	char *nb = realloc(*buf, *len + sl + n + 1);
	if (!nb)
		return;
	if (sl)
		memcpy(nb + *len, sep, sl);
	memcpy(nb + *len + sl, s, n);
	*len += sl + n;
	nb[*len] = 0;
	*buf = nb;
}

/* The column named one of names in the only row, "" without it; then LF. */
static void
field(PGresult *r, const char *const *names, char **buf, size_t *len)
{
	for (; *names; names++) {
		int col = PQfnumber(r, *names);
		if (col >= 0) {
			if (!PQgetisnull(r, 0, col) && value_ok(PQgetvalue(r, 0, col)))
				append(buf, len, PQgetvalue(r, 0, col), NULL);
			break;
		}
	}
	append(buf, len, "\n", NULL);
}

/* One result of a map query into out: 0, or -1 (why). */
static int
map_values(const struct pcf *cf, PGresult *r, char **out, size_t *len, size_t *count, char *why, size_t whylen)
{
	int rows = PQntuples(r), cols = PQnfields(r);
	for (int i = 0; i < rows; i++)
		for (int k = 0; k < cols; k++) {
			if (PQgetisnull(r, i, k) || !value_ok(PQgetvalue(r, i, k)))
				continue;
			char v[4096];
			int f = pqt_format(cf->result_format, PQgetvalue(r, i, k), v, sizeof v);
			if (f <= 0)
				continue;
			if (cf->expansion_limit && ++*count > cf->expansion_limit) {
				snprintf(why, whylen, "more than expansion_limit (%u) values", cf->expansion_limit);
				return -1;
			}
			append(out, len, v, ", ");
		}
	return 0;
}

/* An error that ended the session rather than the query: the server
 * shutting down or restarting (SQLSTATE class 57P: the FATAL it sends
 * before closing, which libpq may hand over before it sees the close),
 * a connection exception (08), or any FATAL/PANIC. */
static int
session_gone(const PGresult *r)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
	if (state && (!strncmp(state, "57P", 3) || !strncmp(state, "08", 2)))
		return 1;
	return sev && (!strcmp(sev, "FATAL") || !strcmp(sev, "PANIC"));
}

/* Run one lookup on c: 1 found (*val), 0 none, -1 trouble (why), -2 the
 * connection broke (try again on a new one), -3 no answer in time. */
static int
run_query(struct pbackend *b, PGconn *c, char kind, const char *key, char **val, char *why, size_t whylen)
{
	const struct pcf *cf = &b->cf;
	const struct pqt *q = kind == 'm' ? &cf->query : kind == 'p' ? &cf->password_query : &cf->user_query;
	int have = kind == 'm' ? cf->have_query : kind == 'p' ? cf->have_password_query : cf->have_user_query;
	if (!have) {
		snprintf(why, whylen, "no %s in the file",
		         kind == 'm' ? "query" : kind == 'p' ? "password_query" : "user_query");
		return -1;
	}
	if (kind == 'm' && !pcf_domain_ok(cf, key))
		return 0;
	char buf[4400];
	const char *vals[PQT_MAX_PARAMS];
	if (pqt_values(q, key, buf, sizeof buf, vals) <= 0)
		return 0;
	b->queries++;
	if (!PQsendQueryParams(c, q->sql, (int)q->nparams, NULL, vals, NULL, NULL, 0)) {
		first_line(why, whylen, "send: ", PQerrorMessage(c));
		return PQstatus(c) == CONNECTION_BAD ? -2 : -1;
	}
	uint64_t deadline = now_ms() + (uint64_t)cf->timeout_s * 1000;
	char *out = NULL;
	size_t len = 0, count = 0;
	int rc = 0, nres = 0;
	for (;;) {
		int w = wait_ready(c, deadline);
		if (w < 0) {
			free(out);
			if (w == -1) {
				snprintf(why, whylen, "no answer within %u s", cf->timeout_s);
				return -3;
			}
			first_line(why, whylen, "", PQerrorMessage(c));
			return -2;
		}
		PGresult *r = PQgetResult(c);
		if (!r)
			break;
		if (nres++ == 0 && rc == 0) {
			ExecStatusType st = PQresultStatus(r);
			if (st != PGRES_TUPLES_OK) {
				first_line(why, whylen, "query: ",
				           st == PGRES_FATAL_ERROR ? PQresultErrorMessage(r) : PQresStatus(st));
				rc = PQstatus(c) == CONNECTION_BAD || session_gone(r) ? -2 : -1;
			} else if (kind == 'm') {
				if (map_values(cf, r, &out, &len, &count, why, whylen) < 0)
					rc = -1;
			} else if (PQntuples(r) > 1) {
				snprintf(why, whylen, "more than one row for the user");
				rc = -1;
			} else if (PQntuples(r) == 1) {
				static const char *const name[] = { "user", "username", "name", NULL };
				static const char *const uid[] = { "uid", NULL }, *const gid[] = { "gid", NULL };
				static const char *const home[] = { "home", NULL }, *const host[] = { "host", NULL };
				static const char *const pass[] = { "password", NULL }, *const proxy[] = { "proxy", NULL };
				static const char *const none[] = { NULL };
				field(r, name, &out, &len);
				field(r, uid, &out, &len);
				field(r, gid, &out, &len);
				field(r, home, &out, &len);
				field(r, host, &out, &len);
				field(r, kind == 'p' ? pass : none, &out, &len);
				field(r, kind == 'p' ? proxy : none, &out, &len);
			}
		}
		PQclear(r);
	}
	if (rc < 0 || !out) {
		free(out);
		return rc;
	}
	*val = out;
	return 1;
}

static struct ent **
slot(struct pbackend *b, const char *key)
{
	struct ent **pp = &b->bucket[hash(key) & (b->nbucket - 1)];
	while (*pp && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->hnext;
	return pp;
}

/* Drop expired answers (not pending ones: a thread holds them). */
static void
sweep(struct pbackend *b, uint64_t now, int all)
{
	for (size_t i = 0; i < b->nbucket; i++)
		for (struct ent **pp = &b->bucket[i]; *pp;) {
			struct ent *e = *pp;
			if (e->state != ENT_PENDING && !e->queued && (all || e->expires <= now)) {
				*pp = e->hnext;
				ent_free(e);
				b->count--;
			} else {
				pp = &e->hnext;
			}
		}
}

/* The lookup of key (kind byte first) with this thread's connection *c,
 * made or remade as needed within the pool's backoff. */
static int
lookup(struct pbackend *b, PGconn **c, const char *key, char **val, char *why, size_t whylen)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!*c) {
			pthread_mutex_lock(&b->mu);
			uint64_t until = b->down_until, now = now_ms();
			pthread_mutex_unlock(&b->mu);
			if (now < until) {
				snprintf(why, whylen, "database unreachable, next try in %llu ms",
				         (unsigned long long)(until - now));
				return -1;
			}
			*c = conn_open(&b->cf, why, whylen);
			pthread_mutex_lock(&b->mu);
			if (*c) {
				b->backoff_ms = BACKOFF_FIRST_MS;
				b->down_until = 0;
			} else {
				b->down_until = now_ms() + b->backoff_ms;
				b->backoff_ms *= 2;
				if (b->backoff_ms > b->cf.retry_max_s * 1000)
					b->backoff_ms = b->cf.retry_max_s * 1000;
			}
			pthread_mutex_unlock(&b->mu);
			if (!*c)
				return -1;
		}
		int rc = run_query(b, *c, key[0], key + 1, val, why, whylen);
		if (rc >= -1)
			return rc;
		PQfinish(*c);
		*c = NULL;
		if (rc == -3) {
			/* a server that does not answer: the others in the queue
			 * fail at once for a while instead of each waiting */
			pthread_mutex_lock(&b->mu);
			b->down_until = now_ms() + b->backoff_ms;
			pthread_mutex_unlock(&b->mu);
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
	struct pbackend *b = arg;
	PGconn *conn = NULL;
	pthread_mutex_lock(&b->mu);
	for (;;) {
		while (!b->qhead && !b->stopping)
			pthread_cond_wait(&b->work, &b->mu);
		if (b->stopping)
			break;
		struct ent *e = b->qhead;
		b->qhead = e->qnext;
		if (!b->qhead)
			b->qtail = NULL;
		char *key = strdup(e->key);
		pthread_mutex_unlock(&b->mu);

		char why[400] = "";
		char *val = NULL;
		int rc = key ? lookup(b, &conn, key, &val, why, sizeof why) : -1;
		if (rc < 0)
			pt_log(PT_LOG_WARNING, "pgsql %s: lookup of \"%.100s\" failed: %s", b->cf.path,
			       key ? key + 1 : "?", why[0] ? why : "out of memory");
		free(key);

		pthread_mutex_lock(&b->mu);
		uint64_t now = now_ms();
		e->queued = 0;
		free(e->val);
		e->val = rc == 1 ? val : NULL;
		if (rc != 1)
			free(val);
		e->state = rc < 0 ? ENT_FAILED : ENT_DONE;
		uint64_t ttl = (uint64_t)(rc == 1 ? b->cf.cache_ttl_s : b->cf.cache_negative_ttl_s) * 1000;
		e->expires = now + (rc < 0 ? FAIL_TTL_MS : ttl < MIN_TTL_MS ? MIN_TTL_MS : ttl);
		pthread_cond_broadcast(&b->done);
	}
	pthread_mutex_unlock(&b->mu);
	if (conn)
		PQfinish(conn);
	return NULL;
}

/* Called with b->mu held: the pool's threads, once. */
static int
start_threads(struct pbackend *b)
{
	if (b->started)
		return b->nthread ? 0 : -1;
	b->started = 1;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (unsigned i = 0; i < b->cf.pool_size && b->nthread < MAX_THREADS; i++)
		if (pthread_create(&b->thread[b->nthread], NULL, worker, b) == 0)
			b->nthread++;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return b->nthread ? 0 : -1;
}

/* A key the database could hold: valid UTF-8 (the connection's
 * encoding; anything else would be refused by the server as an error,
 * which is no reason for a 4xx). */
static int
utf8_ok(const unsigned char *s)
{
	while (*s) {
		if (*s < 0x80) {
			s++;
			continue;
		}
		int n = (*s & 0xe0) == 0xc0 ? 1 : (*s & 0xf0) == 0xe0 ? 2 : (*s & 0xf8) == 0xf0 ? 3 : -1;
		if (n < 0 || *s == 0xc0 || *s == 0xc1 || *s > 0xf4)
			return 0;
		for (int i = 1; i <= n; i++)
			if ((s[i] & 0xc0) != 0x80)
				return 0;
		s += n + 1;
	}
	return 1;
}

int
pbackend_get(struct pbackend *b, char kind, const char *key, char **val)
{
	char k[1100];
	size_t n = strlen(key);
	*val = NULL;
	if (n + 2 > sizeof k || !n || !utf8_ok((const unsigned char *)key))
		return 0;
	k[0] = kind;
	for (size_t i = 0; i <= n; i++)
		k[i + 1] = (char)(key[i] >= 'A' && key[i] <= 'Z' ? key[i] + 32 : key[i]);
	int may_block = pt_map_may_block();
	pthread_mutex_lock(&b->mu);
	uint64_t now = now_ms();
	struct ent **pp = slot(b, k), *e = *pp;
	if (e && e->state != ENT_PENDING && e->expires <= now && !e->queued) {
		/* expired: ask again */
		e->state = ENT_PENDING;
	}
	if (!e) {
		if (b->count >= CACHE_MAX) {
			sweep(b, now, 0);
			if (b->count >= CACHE_MAX)
				sweep(b, now, 1);
			pp = slot(b, k);
		}
		e = calloc(1, sizeof *e);
		if (!e || !(e->key = strdup(k))) {
			free(e);
			pthread_mutex_unlock(&b->mu);
			return -1;
		}
		e->state = ENT_PENDING;
		*pp = e;
		b->count++;
	}
	if (e->state == ENT_PENDING && !e->queued) {
		if (start_threads(b) < 0) {
			e->state = ENT_FAILED;
			e->expires = now + FAIL_TTL_MS;
		} else {
			e->queued = 1;
			e->qnext = NULL;
			if (b->qtail)
				b->qtail->qnext = e;
			else
				b->qhead = e;
			b->qtail = e;
			pthread_cond_signal(&b->work);
		}
	}
	if (e->state == ENT_PENDING && may_block) {
		/* A thread answers within its timeouts (connect per host,
		 * query, once more on a new connection); this bound is a
		 * safety net. */
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)b->cf.timeout_s * (time_t)(2 * b->cf.nhost + 4) + 2;
		while (e->state == ENT_PENDING && !b->stopping)
			if (pthread_cond_timedwait(&b->done, &b->mu, &until) == ETIMEDOUT)
				break;
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
	pthread_mutex_unlock(&b->mu);
	return rc;
}
