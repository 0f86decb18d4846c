/* One backend per config file and process: the cache, the queue and the
 * pool of threads, each owning one PostgreSQL connection (opened when
 * first needed, reopened when it breaks, not tried again before a backoff
 * of 0.5 s doubling up to retry_max while the server cannot be reached),
 * are core's (postern/lookup_backend.h); here are the connection, the
 * query and its result.
 *
 * Every query goes out with PQsendQueryParams: the key's pieces are
 * parameters, never SQL text (pgsql_query.c). */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/event.h"
#include "pgsql_int.h"
#include "postern/lookup_backend.h"

struct pbackend {
	struct pcf cf;
};

const struct pcf *
pbackend_cf(const struct pbackend *b)
{
	return &b->cf;
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
		uint64_t now = pt_mono_ms();
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
	/* not realloc: the old buffer (a record with a password hash) is
	 * wiped before it is freed */
	char *nb = malloc(*len + sl + n + 1);
	if (!nb)
		return;
	if (*buf) {
		memcpy(nb, *buf, *len);
		pt_lookup_rec_free(*buf);
	}
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

/* Run one lookup on conn (pt_lookup_ops.query): 1 found (*val), 0 none,
 * -1 trouble (why), -2 the connection broke (try again on a new one), -3
 * no answer in time. */
static int
run_query(void *arg, void *conn, char kind, const char *key, char **val, char *why, size_t whylen)
{
	const struct pcf *cf = &((struct pbackend *)arg)->cf;
	PGconn *c = conn;
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
	if (!PQsendQueryParams(c, q->sql, (int)q->nparams, NULL, vals, NULL, NULL, 0)) {
		first_line(why, whylen, "send: ", PQerrorMessage(c));
		return PQstatus(c) == CONNECTION_BAD ? -2 : -1;
	}
	uint64_t deadline = pt_mono_ms() + (uint64_t)cf->timeout_s * 1000;
	char *out = NULL;
	size_t len = 0, count = 0;
	int rc = 0, nres = 0;
	for (;;) {
		int w = wait_ready(c, deadline);
		if (w < 0) {
			pt_lookup_rec_free(out);
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
		pt_lookup_rec_free(out);
		return rc;
	}
	*val = out;
	return 1;
}

static void *
lk_connect(void *arg, char *why, size_t whylen)
{
	struct pbackend *b = arg;
	return conn_open(&b->cf, why, whylen);
}

static void
lk_disconnect(void *arg, void *conn)
{
	(void)arg;
	PQfinish(conn);
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

static int
lk_key_ok(void *arg, const char *key)
{
	(void)arg;
	return *key && utf8_ok((const unsigned char *)key);
}

static void
lk_release(void *arg)
{
	struct pbackend *b = arg;
	pcf_free(&b->cf);
	free(b);
}

static const struct pt_lookup_ops pgsql_lookup_ops = {
	.connect = lk_connect,
	.query = run_query,
	.disconnect = lk_disconnect,
	.key_ok = lk_key_ok,
	.release = lk_release,
};

struct pt_lookup *
pbackend_open(const char *path, char *err, size_t errlen)
{
	struct pbackend *b = calloc(1, sizeof *b);
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	int n = pcf_load(path, &b->cf, pt_lookup_log_report, NULL);
	if (n) {
		lk_release(b);
		pt_lookup_config_errors(err, errlen, "pgsql", path, n);
		return NULL;
	}
	/* A blocking caller waits for a thread's connect per host, the
	 * query, and once more on a new connection; that bound is a safety
	 * net. */
	struct pt_lookup_settings s = {
		.type = "pgsql",
		.path = b->cf.path,
		.ttl_s = b->cf.cache_ttl_s,
		.negative_ttl_s = b->cf.cache_negative_ttl_s,
		.threads = b->cf.pool_size,
		.wait_s = b->cf.timeout_s * (unsigned)(2 * b->cf.nhost + 4) + 2,
		.retry_max_s = b->cf.retry_max_s,
		.server = "database",
		.record = "database row",
	};
	struct pt_lookup *lk = pt_lookup_new(&pgsql_lookup_ops, &s, b);
	if (!lk)
		snprintf(err, errlen, "out of memory");
	return lk;
}
