/* The decision record's writer (postern/record.h). The calls copy an event
 * into one allocation and append it to a list under a mutex: nothing on
 * the SMTP path waits for the disk. A thread of the worker takes the list
 * every RECORD_FLUSH_MS (sooner when RECORD_BATCH events wait) and writes
 * it in one SQLite transaction, WAL with synchronous=NORMAL: no fsync but
 * at checkpoints, and committed batches survive any crash of the process.
 * Large batches matter: each commit rewrites the index pages it touched.
 * Deliveries get their message's sender and Message-ID from the SMTP
 * transaction that queued it (whichever of the two is written first), so
 * `postern why --from` finds the copies too. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sqlite3.h>

#include "postern/header.h"
#include "postern/log.h"
#include "postern/record.h"
#include "postern/strbuf.h"
#include "queue.h"
#include "record_int.h"

#define RECORD_FLUSH_MS 500
#define RECORD_BATCH 2048
/* Events waiting beyond this are dropped (and counted): a store that
 * cannot keep up must not eat the worker's memory. */
#define RECORD_MAX_PENDING 50000
#define RETENTION_EVERY_S 60
#define FIELD_MAX 2000
#define TRACE_MAX 16000

enum field { F_OUTCOME, F_SERVICE, F_QID, F_MID, F_CLIENT, F_CLIENT_NAME, F_HELO, F_SENDER, F_USER, F_STAGE,
	F_RULE, F_REPLY, F_RELAY, F_DSN, F_TRACE, NFIELDS };

enum kind { K_SMTP, K_DELIVERY, K_LOGIN };
static const char *const kind_name[] = { "smtp", "delivery", "login" };

struct rec_addr {
	int role;
	const char *address, *reply, *rule;
};

struct rec {
	struct rec *next;
	long long ts;
	enum kind kind;
	long long size;
	double delay;
	int has_size, has_delay;
	unsigned refused;
	const char *f[NFIELDS];
	size_t naddr;
	struct rec_addr *addr;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	int running;                 /* events are taken */
	int have_thread;
	int stop;
	struct rec *head, *tail;
	size_t n;
	unsigned long dropped;
	char path[1024];
	long long max_age, max_size;
} R = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static long long
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t
cap_len(const char *s, size_t max)
{
	return s ? strnlen(s, max) : 0;
}

/* One allocation: the struct, the address array, then the strings. */
static struct rec *
rec_build(enum kind kind, const char *const f[NFIELDS], const struct rec_addr *a, size_t na)
{
	size_t total = sizeof(struct rec) + na * sizeof(struct rec_addr);
	for (int i = 0; i < NFIELDS; i++)
		if (f[i])
			total += cap_len(f[i], i == F_TRACE ? TRACE_MAX : FIELD_MAX) + 1;
	for (size_t i = 0; i < na; i++)
		total += cap_len(a[i].address, FIELD_MAX) + cap_len(a[i].reply, FIELD_MAX) +
		         cap_len(a[i].rule, FIELD_MAX) + 3;
	struct rec *r = malloc(total);
	if (!r)
		return NULL;
	memset(r, 0, sizeof *r);
	r->kind = kind;
	r->ts = now_ms();
	r->addr = (struct rec_addr *)(r + 1);
	r->naddr = na;
	char *p = (char *)(r->addr + na);
#define COPY(dst, src, max) do { \
		size_t l_ = cap_len((src), (max)); \
		memcpy(p, (src) ? (src) : "", l_); \
		p[l_] = '\0'; \
		(dst) = p; \
		p += l_ + 1; \
	} while (0)
	for (int i = 0; i < NFIELDS; i++)
		if (f[i])
			COPY(r->f[i], f[i], i == F_TRACE ? TRACE_MAX : FIELD_MAX);
	for (size_t i = 0; i < na; i++) {
		r->addr[i].role = a[i].role;
		COPY(r->addr[i].address, a[i].address, FIELD_MAX);
		COPY(r->addr[i].reply, a[i].reply, FIELD_MAX);
		COPY(r->addr[i].rule, a[i].rule, FIELD_MAX);
		if (!a[i].reply)
			r->addr[i].reply = NULL;
		if (!a[i].rule)
			r->addr[i].rule = NULL;
	}
#undef COPY
	return r;
}

static void
rec_push(struct rec *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&R.mu);
	if (!R.running || R.stop || R.n >= RECORD_MAX_PENDING) {
		if (R.running)
			R.dropped++;
		pthread_mutex_unlock(&R.mu);
		free(r);
		return;
	}
	if (R.tail)
		R.tail->next = r;
	else
		R.head = r;
	R.tail = r;
	/* The first event starts the writer's RECORD_FLUSH_MS wait; a full
	 * batch ends it early. */
	if (++R.n == 1 || R.n == RECORD_BATCH)
		pthread_cond_signal(&R.cv);
	pthread_mutex_unlock(&R.mu);
}

static int
recording(void)
{
	/* A racy peek is enough: a missed event at start or stop is harmless. */
	return __atomic_load_n(&R.running, __ATOMIC_RELAXED);
}

/* ---- the calls modules make ---- */

void
pt_record_smtp(const struct pt_record_smtp *t)
{
	if (!recording() || !t)
		return;
	const char *f[NFIELDS] = { 0 };
	f[F_OUTCOME] = t->outcome ? t->outcome : "unknown";
	f[F_SERVICE] = t->service;
	f[F_QID] = t->queue_id && *t->queue_id ? t->queue_id : NULL;
	f[F_MID] = t->message_id && *t->message_id ? t->message_id : NULL;
	f[F_CLIENT] = t->client_address;
	f[F_CLIENT_NAME] = t->client_name;
	f[F_HELO] = t->helo;
	f[F_SENDER] = t->sender;
	f[F_USER] = t->sasl_username;
	f[F_STAGE] = t->stage;
	f[F_RULE] = t->rule && *t->rule ? t->rule : NULL;
	f[F_REPLY] = t->reply;
	f[F_TRACE] = t->trace && *t->trace ? t->trace : NULL;
	size_t na = t->nrcpt + (t->sender != NULL);
	struct rec_addr stack[16], *a = na <= 16 ? stack : calloc(na, sizeof *a);
	if (!a)
		return;
	size_t k = 0;
	if (t->sender)
		a[k++] = (struct rec_addr){ PT_ADDR_SENDER, t->sender, NULL, NULL };
	for (size_t i = 0; i < t->nrcpt; i++)
		a[k++] = (struct rec_addr){ PT_ADDR_RCPT, t->rcpt[i].address, t->rcpt[i].reply,
		                            t->rcpt[i].rule && *t->rcpt[i].rule ? t->rcpt[i].rule : NULL };
	struct rec *r = rec_build(K_SMTP, f, a, k);
	if (a != stack)
		free(a);
	if (!r)
		return;
	r->size = (long long)t->size;
	r->has_size = t->size > 0;
	if (t->started_ms > 0)
		r->ts = t->started_ms;
	r->refused = t->refused;
	rec_push(r);
}

void
pt_record_pickup(const struct pt_qfile *q)
{
	if (!recording() || !q)
		return;
	char who[64], mid[1000];
	snprintf(who, sizeof who, "local uid %lu", (unsigned long)q->submit_uid);
	pt_record_message_id(q->data, q->len, mid, sizeof mid);
	struct pt_record_rcpt stack[16], *rc = q->nrcpt <= 16 ? stack : calloc(q->nrcpt, sizeof *rc);
	if (!rc)
		return;
	for (size_t i = 0; i < q->nrcpt; i++)
		rc[i] = (struct pt_record_rcpt){ q->rcpt[i].address, "accepted", NULL };
	struct pt_record_smtp e = { .service = "pickup", .outcome = "accepted", .queue_id = q->id,
		.message_id = mid[0] ? mid : NULL, .client_name = who, .sender = q->sender, .rcpt = rc,
		.nrcpt = q->nrcpt, .stage = "pickup", .size = q->len };
	pt_record_smtp(&e);
	if (rc != stack)
		free(rc);
}

void
pt_record_delivery(const char *transport, const char *queue_id, const char *to, const char *orig,
                   const char *relay, double delay, const struct pt_status *st)
{
	if (!recording() || !st)
		return;
	const char *f[NFIELDS] = { 0 };
	char reply[300];
	snprintf(reply, sizeof reply, "%s", st->text[0] ? st->text : st->code == 0 ? "delivered" : "");
	f[F_OUTCOME] = st->code == 0 ? "delivered" : st->code >= 500 ? "bounced" : "deferred";
	f[F_SERVICE] = transport;
	f[F_QID] = queue_id;
	f[F_RELAY] = relay;
	f[F_DSN] = st->dsn[0] ? st->dsn : st->code == 0 ? "2.0.0" : st->code >= 500 ? "5.0.0" : "4.0.0";
	f[F_REPLY] = reply;
	struct rec_addr a[2];
	size_t na = 0;
	a[na++] = (struct rec_addr){ PT_ADDR_RCPT, to ? to : "", NULL, NULL };
	if (orig && *orig && (!to || strcasecmp(orig, to) != 0))
		a[na++] = (struct rec_addr){ PT_ADDR_ORIG, orig, NULL, NULL };
	struct rec *r = rec_build(K_DELIVERY, f, a, na);
	if (!r)
		return;
	r->delay = delay;
	r->has_delay = 1;
	rec_push(r);
}

void
pt_record_login(const char *service, const char *user, const char *client_address, int result,
                const char *reason)
{
	if (!recording())
		return;
	const char *f[NFIELDS] = { 0 };
	f[F_OUTCOME] = result == 1 ? "ok" : result < 0 ? "tempfail" : "failed";
	f[F_SERVICE] = service;
	f[F_USER] = user ? user : "";
	f[F_CLIENT] = client_address;
	f[F_REPLY] = result == 1 ? NULL : reason;
	rec_push(rec_build(K_LOGIN, f, NULL, 0));
}

void
pt_record_message_id(const char *data, size_t len, char *out, size_t outlen)
{
	struct pt_hdr_iter it;
	struct pt_hdr_field fl;
	out[0] = '\0';
	if (!data)
		return;
	pt_hdr_iter_init(&it, data, len, 0);
	while (pt_hdr_next(&it, &fl)) {
		if (!pt_hdr_name_is(&fl, "Message-ID"))
			continue;
		struct pt_strbuf v = { 0 };
		pt_hdr_unfold(fl.value, fl.value_len, &v);
		const char *s = v.p ? v.p : "";
		size_t n = v.len;
		while (n && (*s == ' ' || *s == '\t'))
			s++, n--;
		while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
			n--;
		snprintf(out, outlen, "%.*s", (int)n, s);
		pt_strbuf_free(&v);
		return;
	}
}

/* ---- the writer thread ---- */

struct writer {
	sqlite3 *db;
	sqlite3_stmt *ins_event, *ins_addr, *find_msg, *orphans, *set_sender;
	int failing;                 /* the last batch failed: log once per streak */
};

static void
bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static int
add_addr(struct writer *w, long long ev, int n, int role, const char *address, const char *reply,
         const char *rule)
{
	char local[256], domain[256];
	pt_record_split(address, local, sizeof local, domain, sizeof domain);
	sqlite3_stmt *s = w->ins_addr;
	sqlite3_reset(s);
	sqlite3_bind_int64(s, 1, ev);
	sqlite3_bind_int(s, 2, n);
	sqlite3_bind_int(s, 3, role);
	bind_text(s, 4, local);
	bind_text(s, 5, domain);
	bind_text(s, 6, address ? address : "");
	bind_text(s, 7, reply);
	bind_text(s, 8, rule);
	return sqlite3_step(s) == SQLITE_DONE ? 0 : -1;
}

/* The sender row given to a delivery after the fact; n past any address
 * the event was written with. */
#define BACKFILL_N 1000

static int
write_one(struct writer *w, struct rec *r)
{
	char sender[FIELD_MAX + 1] = "", mid[FIELD_MAX + 1] = "";
	int have_sender = 0;
	if (r->kind == K_DELIVERY && r->f[F_QID]) {
		sqlite3_stmt *q = w->find_msg;
		sqlite3_reset(q);
		bind_text(q, 1, r->f[F_QID]);
		if (sqlite3_step(q) == SQLITE_ROW) {
			const unsigned char *s = sqlite3_column_text(q, 0), *m = sqlite3_column_text(q, 1);
			snprintf(sender, sizeof sender, "%s", s ? (const char *)s : "");
			snprintf(mid, sizeof mid, "%s", m ? (const char *)m : "");
			have_sender = 1;
			r->f[F_SENDER] = sender;
			if (m)
				r->f[F_MID] = mid;
		}
		sqlite3_reset(q);
	}
	sqlite3_stmt *s = w->ins_event;
	sqlite3_reset(s);
	sqlite3_bind_int64(s, 1, r->ts);
	bind_text(s, 2, kind_name[r->kind]);
	for (int i = 0; i < NFIELDS; i++)
		bind_text(s, 3 + i, r->f[i]);
	if (r->has_size)
		sqlite3_bind_int64(s, 3 + NFIELDS, r->size);
	else
		sqlite3_bind_null(s, 3 + NFIELDS);
	if (r->has_delay)
		sqlite3_bind_double(s, 4 + NFIELDS, r->delay);
	else
		sqlite3_bind_null(s, 4 + NFIELDS);
	sqlite3_bind_int(s, 5 + NFIELDS, (int)r->refused);
	if (sqlite3_step(s) != SQLITE_DONE)
		return -1;
	long long ev = sqlite3_last_insert_rowid(w->db);
	for (size_t i = 0; i < r->naddr; i++)
		if (add_addr(w, ev, (int)i, r->addr[i].role, r->addr[i].address, r->addr[i].reply, r->addr[i].rule) != 0)
			return -1;
	if (have_sender && add_addr(w, ev, BACKFILL_N, PT_ADDR_SENDER, sender, NULL, NULL) != 0)
		return -1;
	/* Deliveries written before their transaction (local delivery can
	 * finish before the client hears 250): give them its sender now. */
	if (r->kind == K_SMTP && r->f[F_QID] && r->f[F_SENDER]) {
		long long ids[64];
		int nid = 0;
		sqlite3_stmt *o = w->orphans;
		sqlite3_reset(o);
		bind_text(o, 1, r->f[F_QID]);
		while (nid < 64 && sqlite3_step(o) == SQLITE_ROW)
			ids[nid++] = sqlite3_column_int64(o, 0);
		sqlite3_reset(o);
		for (int i = 0; i < nid; i++) {
			sqlite3_stmt *u = w->set_sender;
			sqlite3_reset(u);
			sqlite3_bind_int64(u, 1, ids[i]);
			bind_text(u, 2, r->f[F_SENDER]);
			bind_text(u, 3, r->f[F_MID]);
			if (sqlite3_step(u) != SQLITE_DONE ||
			    add_addr(w, ids[i], BACKFILL_N, PT_ADDR_SENDER, r->f[F_SENDER], NULL, NULL) != 0)
				return -1;
		}
	}
	return 0;
}

static void
write_batch(struct writer *w, struct rec *list)
{
	int ok = sqlite3_exec(w->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
	size_t n = 0;
	for (struct rec *r = list; ok && r; r = r->next, n++)
		ok = write_one(w, r) == 0;
	if (ok)
		ok = sqlite3_exec(w->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
	if (!ok) {
		if (!w->failing)
			pt_log(PT_LOG_ERROR, "decision record %s: cannot write: %s (events are lost until it works again)",
			       R.path, sqlite3_errmsg(w->db));
		sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
	} else if (w->failing) {
		pt_log(PT_LOG_INFO, "decision record %s: writing again", R.path);
	}
	w->failing = !ok;
}

static int
writer_prepare(struct writer *w)
{
	static const char *const sql[] = {
		("INSERT INTO event(ts, kind, outcome, service, queue_id, message_id, client, client_name, helo, sender,"
		 " user, stage, rule, reply, relay, dsn, trace, size, delay, refused)"
		 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"),
		"INSERT INTO addr(ev, n, role, local, domain, address, reply, rule) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
		("SELECT sender, message_id FROM event WHERE queue_id = ?1 AND kind = 'smtp' AND sender IS NOT NULL"
		 " ORDER BY id DESC LIMIT 1"),
		"SELECT id FROM event WHERE queue_id = ?1 AND kind = 'delivery' AND sender IS NULL",
		"UPDATE event SET sender = ?2, message_id = coalesce(message_id, ?3) WHERE id = ?1",
	};
	sqlite3_stmt **st[] = { &w->ins_event, &w->ins_addr, &w->find_msg, &w->orphans, &w->set_sender };
	for (size_t i = 0; i < sizeof st / sizeof st[0]; i++)
		if (sqlite3_prepare_v3(w->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, st[i], NULL) != SQLITE_OK)
			return -1;
	return 0;
}

static void
writer_close(struct writer *w)
{
	sqlite3_stmt *st[] = { w->ins_event, w->ins_addr, w->find_msg, w->orphans, w->set_sender };
	for (size_t i = 0; i < sizeof st / sizeof st[0]; i++)
		sqlite3_finalize(st[i]);
	sqlite3_close(w->db);
}

static void
free_list(struct rec *r)
{
	while (r) {
		struct rec *next = r->next;
		free(r);
		r = next;
	}
}

static void
retention(struct writer *w)
{
	long n = pt_record_prune(w->db, R.max_age, R.max_size);
	if (n > 0)
		pt_log(PT_LOG_INFO, "decision record %s: %ld old event(s) removed (decision_log_max_age, "
		       "decision_log_max_size)", R.path, n);
}

static void *
writer_main(void *arg)
{
	(void)arg;
	/* Its own name in top -H and /proc (its CPU is what the record costs). */
	pthread_setname_np(pthread_self(), "record");
	struct writer w = { 0 };
	char err[600];
	w.db = pt_record_db_open(R.path, 1, err, sizeof err);
	if (!w.db || writer_prepare(&w) != 0) {
		pt_log(PT_LOG_ERROR, "decision record: %s; running without it",
		       w.db ? sqlite3_errmsg(w.db) : err);
		if (w.db)
			writer_close(&w);
		pthread_mutex_lock(&R.mu);
		__atomic_store_n(&R.running, 0, __ATOMIC_RELAXED);
		free_list(R.head);
		R.head = R.tail = NULL;
		R.n = 0;
		pthread_mutex_unlock(&R.mu);
		return NULL;
	}
	retention(&w);
	time_t last_retention = time(NULL);
	long long last_size_check = 0;
	for (;;) {
		pthread_mutex_lock(&R.mu);
		while (!R.head && !R.stop)
			pthread_cond_wait(&R.cv, &R.mu);
		if (R.n < RECORD_BATCH && !R.stop) {
			/* Let a batch gather; RECORD_BATCH events wake us sooner. */
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_nsec += RECORD_FLUSH_MS * 1000000L;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&R.cv, &R.mu, &until);
		}
		struct rec *list = R.head;
		unsigned long dropped = R.dropped;
		R.head = R.tail = NULL;
		R.n = 0;
		R.dropped = 0;
		int stop = R.stop;
		pthread_mutex_unlock(&R.mu);
		if (dropped)
			pt_log(PT_LOG_WARNING, "decision record: %lu event(s) dropped (the writer fell behind)", dropped);
		if (list)
			write_batch(&w, list);
		free_list(list);
		if (stop)
			break;
		time_t now = time(NULL);
		long long ms = now_ms();
		if (now - last_retention >= RETENTION_EVERY_S) {
			retention(&w);
			last_retention = now;
		} else if (R.max_size > 0 && ms - last_size_check >= 1000) {
			/* Size is cheap to ask (three pragmas): once a second. */
			last_size_check = ms;
			retention(&w);
		}
	}
	writer_close(&w);
	return NULL;
}

int
pt_record_open(const struct pt_config *c)
{
	const char *path = pt_conf_str(c, "decision_log_file");
	if (!path || !*path || R.running)
		return 0;
	/* The writer is the process's only SQLite user: no global memory
	 * statistics (a mutex round trip on every allocation it makes). */
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	snprintf(R.path, sizeof R.path, "%s", path);
	R.max_age = pt_conf_int(c, "decision_log_max_age");
	R.max_size = pt_conf_int(c, "decision_log_max_size");
	R.stop = 0;
	__atomic_store_n(&R.running, 1, __ATOMIC_RELAXED);
	if (pthread_create(&R.thread, NULL, writer_main, NULL) != 0) {
		__atomic_store_n(&R.running, 0, __ATOMIC_RELAXED);
		pt_log(PT_LOG_ERROR, "decision record: cannot start its thread; running without it");
		return -1;
	}
	R.have_thread = 1;
	return 0;
}

void
pt_record_close(void)
{
	pthread_mutex_lock(&R.mu);
	int had = R.have_thread;
	R.stop = 1;
	pthread_cond_signal(&R.cv);
	pthread_mutex_unlock(&R.mu);
	if (had) {
		pthread_join(R.thread, NULL);
		R.have_thread = 0;
	}
	pthread_mutex_lock(&R.mu);
	__atomic_store_n(&R.running, 0, __ATOMIC_RELAXED);
	free_list(R.head);
	R.head = R.tail = NULL;
	R.n = 0;
	pthread_mutex_unlock(&R.mu);
}
