/* The decision record's writer (postern/record.h). The calls copy an event
 * into one allocation and append it to a list under a mutex: nothing on
 * the SMTP path waits for the disk. A thread of the worker takes the list
 * every RECORD_FLUSH_MS (sooner when RECORD_BATCH events wait) and writes
 * it in one SQLite transaction, WAL with synchronous=NORMAL: no fsync but
 * at checkpoints, and committed batches survive any crash of the process.
 * Large batches matter: each commit rewrites the index pages it touched.
 * Deliveries get their message's sender and Message-ID from the SMTP
 * transaction that queued it (whichever of the two is written first), so
 * `postern why --from` finds the copies too. What the writer does per
 * event is kept small (record_db.c: no index on time, search terms as
 * per-batch posting lists, a delivery in its transaction's batch folded
 * into the transaction's row): its CPU is what the record costs. */
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
/* Deliveries folded into one transaction's row at most (a larger fan-out
 * goes on in rows of their own): bounds the row a reader parses. */
#define FOLD_MAX 256

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
	/* The writer's, per batch: the sequence number its id starts from;
	 * a transaction's folded deliveries; a delivery folded into one. */
	unsigned seq0;
	unsigned nfold;
	int folded;
	struct rec *fold, *fold_tail, *fold_next;
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

/* The sender and Message-ID of recently written transactions by queue
 * id, in sets of QWAYS (a full set forgets its oldest): a delivery gets
 * them from here without a query; a miss asks the store. */
#define QCACHE 16384
#define QWAYS 4
struct qent {
	char qid[40];
	char *sender, *mid;
};

/* Deliveries written before their transaction, waiting for its sender. */
#define ORPHANS_MAX 256
struct orphan {
	char qid[40];
	long long id;
};

/* The batch's search terms: each distinct term once (text in the
 * writer's arena), with the list of its events (chained through ids). */
struct tgroup {
	size_t off;
	uint32_t hash;
	size_t head, tail;           /* indexes into ids */
	long long last;
};
struct tid {
	long long id;
	size_t next;                 /* SIZE_MAX: end */
};

struct writer {
	sqlite3 *db;
	struct rec **ftab;           /* the batch's transactions by queue id */
	size_t nftab;
	struct pt_strbuf dbuf;       /* a row's folded deliveries (dlv) */
	sqlite3_stmt *ins_event, *ins_term, *find_msg, *set_sender;
	int failing;                 /* the last batch failed: log once per streak */
	unsigned seq;                /* low bits of the next event id */
	struct qent *qc;
	struct orphan orphans[ORPHANS_MAX];
	size_t norphans;
	struct pt_strbuf arena, buf; /* terms of the batch; rcpts and posting lists */
	struct tgroup *groups;
	size_t ngroups, capgroups;
	size_t *slots;               /* open addressing: group index + 1, 0 = free */
	size_t nslots;
	struct tid *ids;
	size_t nids, capids;
};

static void
bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static uint32_t
hash_str(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static void
qcache_put(struct writer *w, const char *qid, const char *sender, const char *mid)
{
	if (!w->qc || strlen(qid) >= sizeof w->qc[0].qid)
		return;
	struct qent *set = &w->qc[hash_str(qid) & (QCACHE - QWAYS)], *e = NULL;
	for (int i = 0; i < QWAYS && !e; i++)
		if (strcmp(set[i].qid, qid) == 0)
			e = &set[i];
	if (!e) {
		/* The oldest of the set goes: the others move up. */
		char *old = set[QWAYS - 1].sender;
		memmove(set + 1, set, (QWAYS - 1) * sizeof *set);
		e = set;
		e->qid[0] = '\0';
		e->sender = old;
		e->mid = NULL;
	} else if (e->sender && strcmp(e->sender, sender) == 0 && !mid == !e->mid && (!mid || strcmp(e->mid, mid) == 0))
		return;
	/* One allocation: the sender, then the Message-ID. */
	size_t ls = strlen(sender), lm = mid ? strlen(mid) : 0;
	char *snd = malloc(ls + lm + 2);
	if (!snd)
		return;
	memcpy(snd, sender, ls + 1);
	if (mid)
		memcpy(snd + ls + 1, mid, lm + 1);
	free(e->sender);
	snprintf(e->qid, sizeof e->qid, "%s", qid);
	e->sender = snd;
	e->mid = mid ? snd + ls + 1 : NULL;
}

static const struct qent *
qcache_get(struct writer *w, const char *qid)
{
	if (!w->qc)
		return NULL;
	const struct qent *set = &w->qc[hash_str(qid) & (QCACHE - QWAYS)];
	for (int i = 0; i < QWAYS; i++)
		if (set[i].sender && strcmp(set[i].qid, qid) == 0)
			return &set[i];
	return NULL;
}

static int
grow_slots(struct writer *w)
{
	size_t n = w->nslots ? w->nslots * 2 : 4096;
	size_t *v = calloc(n, sizeof *v);
	if (!v)
		return -1;
	for (size_t g = 0; g < w->ngroups; g++) {
		size_t i = w->groups[g].hash & (n - 1);
		while (v[i])
			i = (i + 1) & (n - 1);
		v[i] = g + 1;
	}
	free(w->slots);
	w->slots = v;
	w->nslots = n;
	return 0;
}

static void
add_term(struct writer *w, const char *t, long long id)
{
	if (w->arena.oom)
		return;
	if ((w->ngroups + 1) * 2 > w->nslots && grow_slots(w) != 0) {
		w->arena.oom = 1;
		return;
	}
	uint32_t h = hash_str(t);
	size_t i = h & (w->nslots - 1);
	struct tgroup *g = NULL;
	for (; w->slots[i]; i = (i + 1) & (w->nslots - 1)) {
		struct tgroup *c = &w->groups[w->slots[i] - 1];
		if (c->hash == h && strcmp(w->arena.p + c->off, t) == 0) {
			g = c;
			break;
		}
	}
	/* The same term twice for one event (two recipients in one domain). */
	if (g && w->ids[g->tail].id == id)
		return;
	if (w->nids == w->capids) {
		size_t cap = w->capids ? w->capids * 2 : 4096;
		struct tid *v = realloc(w->ids, cap * sizeof *v);
		if (!v) {
			w->arena.oom = 1;
			return;
		}
		w->ids = v;
		w->capids = cap;
	}
	if (!g) {
		if (w->ngroups == w->capgroups) {
			size_t cap = w->capgroups ? w->capgroups * 2 : 1024;
			struct tgroup *v = realloc(w->groups, cap * sizeof *v);
			if (!v) {
				w->arena.oom = 1;
				return;
			}
			w->groups = v;
			w->capgroups = cap;
		}
		size_t off = w->arena.len;
		pt_strbuf_put(&w->arena, t, strlen(t) + 1);
		if (w->arena.oom)
			return;
		g = &w->groups[w->ngroups++];
		*g = (struct tgroup){ off, h, w->nids, w->nids, id };
		w->slots[i] = w->ngroups;
	} else {
		w->ids[g->tail].next = w->nids;
		g->tail = w->nids;
		if (id > g->last)
			g->last = id;
	}
	w->ids[w->nids++] = (struct tid){ id, SIZE_MAX };
}

static void
add_addr_terms(struct writer *w, long long id, int role, const char *address)
{
	/* As `postern why` makes them when it checks a folded row's events. */
	char t[2][600];
	pt_record_addr_terms(role, address, t);
	for (int i = 0; i < 2; i++)
		if (t[i][0])
			add_term(w, t[i], id);
}

/* An address list field: RS and US inside (and FS: dlv) become '?'. */
static void
put_field(struct pt_strbuf *b, const char *s)
{
	static const char sep[] = { PT_RECORD_RS, PT_RECORD_US, PT_RECORD_FS, '\0' };
	while (s && *s) {
		size_t n = strcspn(s, sep);
		pt_strbuf_put(b, s, n);
		s += n;
		if (*s) {
			pt_strbuf_put(b, "?", 1);
			s++;
		}
	}
}

static void
put_addrs(struct pt_strbuf *b, const struct rec *r)
{
	for (size_t i = 0; i < r->naddr; i++) {
		char head[3] = { PT_RECORD_RS, (char)('0' + r->addr[i].role), PT_RECORD_US };
		pt_strbuf_put(b, i ? head : head + 1, i ? 3 : 2);
		put_field(b, r->addr[i].address);
		pt_strbuf_put(b, head + 2, 1);
		put_field(b, r->addr[i].reply);
		pt_strbuf_put(b, head + 2, 1);
		put_field(b, r->addr[i].rule);
	}
}

static const char *
rcpts_text(struct writer *w, const struct rec *r)
{
	struct pt_strbuf *b = &w->buf;
	b->len = 0;
	b->oom = 0;  /* one event's failure is not the next one's */
	put_addrs(b, r);
	if (b->oom || !b->p)
		return NULL;
	b->p[b->len] = '\0';
	return b->p;
}

static long long
rec_id(const struct rec *r)
{
	return r->ts * PT_RECORD_ID_SCALE + (long long)(r->seq0 & (PT_RECORD_ID_SCALE - 1));
}

/* A transaction's folded deliveries as event.dlv (record_int.h). */
static const char *
dlv_text(struct writer *w, const struct rec *t)
{
	static const char hex[] = "0123456789abcdef";
	struct pt_strbuf *b = &w->dbuf;
	b->len = 0;
	b->oom = 0;
	for (const struct rec *d = t->fold; d; d = d->fold_next) {
		char num[48];
		size_t n = sizeof num;
		/* By hand, as write_terms: ids are positive. */
		for (unsigned long long v = (unsigned long long)rec_id(d); v; v /= 10)
			num[--n] = (char)('0' + v % 10);
		if (d != t->fold)
			pt_strbuf_put(b, (const char[]){ PT_RECORD_FS }, 1);
		pt_strbuf_put(b, num + n, sizeof num - n);
		/* The delay's bits: the reader gets the very double back. */
		uint64_t bits;
		memcpy(&bits, &d->delay, sizeof bits);
		num[0] = PT_RECORD_US;
		for (int i = 0; i < 16; i++)
			num[1 + i] = hex[(bits >> (60 - 4 * i)) & 15];
		pt_strbuf_put(b, num, 17);
		static const enum field fields[] = { F_OUTCOME, F_SERVICE, F_RELAY, F_DSN, F_REPLY };
		for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
			const char *v = d->f[fields[i]];
			pt_strbuf_put(b, (const char[]){ PT_RECORD_US, '=' }, v ? 2 : 1);
			put_field(b, v);
		}
		pt_strbuf_put(b, (const char[]){ PT_RECORD_US }, 1);
		put_addrs(b, d);
	}
	if (b->oom || !b->p)
		return NULL;
	b->p[b->len] = '\0';
	return b->p;
}

/* The reader matches a folded row's events by their own addresses
 * (record_int.h): they must be stored as the terms were made. */
static int
addrs_plain(const struct rec *r)
{
	static const char sep[] = { PT_RECORD_RS, PT_RECORD_US, PT_RECORD_FS, '\0' };
	for (size_t i = 0; i < r->naddr; i++)
		if (r->addr[i].address[strcspn(r->addr[i].address, sep)])
			return 0;
	return 1;
}

/* A transaction's sender for the deliveries written before it. */
static int
adopt_orphans(struct writer *w, const struct rec *r)
{
	for (size_t i = 0; i < w->norphans;) {
		if (strcmp(w->orphans[i].qid, r->f[F_QID]) != 0) {
			i++;
			continue;
		}
		sqlite3_stmt *u = w->set_sender;
		sqlite3_reset(u);
		sqlite3_bind_int64(u, 1, w->orphans[i].id);
		bind_text(u, 2, r->f[F_SENDER]);
		bind_text(u, 3, r->f[F_MID]);
		if (sqlite3_step(u) != SQLITE_DONE)
			return -1;
		add_addr_terms(w, w->orphans[i].id, PT_ADDR_SENDER, r->f[F_SENDER]);
		w->orphans[i] = w->orphans[--w->norphans];
	}
	return 0;
}

static int
write_one(struct writer *w, struct rec *r)
{
	int have_sender = 0;
	if (r->kind == K_DELIVERY && r->f[F_QID]) {
		const struct qent *e = qcache_get(w, r->f[F_QID]);
		if (e) {
			r->f[F_SENDER] = e->sender;
			if (e->mid)
				r->f[F_MID] = e->mid;
			have_sender = 1;
		} else {
			/* Not written lately (a retry hours later, a restart):
			 * the store knows. */
			sqlite3_stmt *q = w->find_msg;
			sqlite3_reset(q);
			bind_text(q, 1, r->f[F_QID]);
			if (sqlite3_step(q) == SQLITE_ROW) {
				const unsigned char *snd = sqlite3_column_text(q, 0), *m = sqlite3_column_text(q, 1);
				qcache_put(w, r->f[F_QID], snd ? (const char *)snd : "", (const char *)m);
				e = qcache_get(w, r->f[F_QID]);
			}
			sqlite3_reset(q);
			if (e) {
				r->f[F_SENDER] = e->sender;
				if (e->mid)
					r->f[F_MID] = e->mid;
				have_sender = 1;
			}
		}
	}
	sqlite3_stmt *s = w->ins_event;
	sqlite3_reset(s);
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
	sqlite3_bind_int64(s, 6 + NFIELDS, r->ts);
	bind_text(s, 7 + NFIELDS, r->naddr ? rcpts_text(w, r) : NULL);
	const char *dlv = r->fold ? dlv_text(w, r) : NULL;
	if (r->fold && !dlv)
		return -1;
	bind_text(s, 8 + NFIELDS, dlv);
	/* The id: the time, and a sequence number (given in list order)
	 * that moves on past an id taken (many events in one millisecond). */
	long long id = rec_id(r);
	sqlite3_bind_int64(s, 1, id);
	int rc = sqlite3_step(s);
	for (int tries = 1; rc == SQLITE_CONSTRAINT && tries < (int)PT_RECORD_ID_SCALE; tries++) {
		id = r->ts * PT_RECORD_ID_SCALE + (long long)(w->seq++ & (PT_RECORD_ID_SCALE - 1));
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, id);
		rc = sqlite3_step(s);
	}
	if (rc != SQLITE_DONE)
		return -1;
	for (size_t i = 0; i < r->naddr; i++)
		add_addr_terms(w, id, r->addr[i].role, r->addr[i].address);
	/* A folded delivery's recipients list the row; its sender terms are
	 * the transaction's, listed already. */
	for (const struct rec *d = r->fold; d; d = d->fold_next)
		for (size_t i = 0; i < d->naddr; i++)
			add_addr_terms(w, id, d->addr[i].role, d->addr[i].address);
	if (have_sender)
		add_addr_terms(w, id, PT_ADDR_SENDER, r->f[F_SENDER]);
	else if (r->kind == K_DELIVERY && r->f[F_QID] && strlen(r->f[F_QID]) < sizeof w->orphans[0].qid) {
		/* Local delivery can finish before the client hears 250: its
		 * transaction comes in a later batch. */
		if (w->norphans == ORPHANS_MAX)
			memmove(w->orphans, w->orphans + 1, --w->norphans * sizeof w->orphans[0]);
		struct orphan *o = &w->orphans[w->norphans++];
		snprintf(o->qid, sizeof o->qid, "%s", r->f[F_QID]);
		o->id = id;
	}
	char t[600];
	if (r->f[F_CLIENT] && *r->f[F_CLIENT] && snprintf(t, sizeof t, "c=%s", r->f[F_CLIENT]) < (int)sizeof t)
		add_term(w, t, id);
	if (r->f[F_USER] && snprintf(t, sizeof t, "u=%s", r->f[F_USER]) < (int)sizeof t) {
		for (char *p = t + 2; *p; p++)
			*p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
		add_term(w, t, id);
	}
	if (r->kind == K_SMTP && r->refused > 0)
		add_term(w, "x", id);
	if (r->kind == K_SMTP && r->f[F_QID] && r->f[F_SENDER] && w->norphans && adopt_orphans(w, r) != 0)
		return -1;
	return 0;
}

/* The batch's posting lists: one term row per distinct term. */
static int
write_terms(struct writer *w)
{
	if (w->arena.oom)
		return -1;
	struct pt_strbuf *b = &w->buf;
	for (size_t gi = 0; gi < w->ngroups; gi++) {
		const struct tgroup *g = &w->groups[gi];
		b->len = 0;
		b->oom = 0;
		pt_strbuf_put(b, "[", 1);
		for (size_t k = g->head; k != SIZE_MAX; k = w->ids[k].next) {
			/* Ids are positive: digits by hand, printf is slow. */
			char num[24];
			size_t n = sizeof num;
			for (unsigned long long v = (unsigned long long)w->ids[k].id; v; v /= 10)
				num[--n] = (char)('0' + v % 10);
			if (k != g->head)
				pt_strbuf_put(b, ",", 1);
			pt_strbuf_put(b, num + n, sizeof num - n);
		}
		pt_strbuf_put(b, "]", 1);
		if (b->oom)
			return -1;
		b->p[b->len] = '\0';
		sqlite3_stmt *s = w->ins_term;
		sqlite3_reset(s);
		sqlite3_bind_text(s, 1, w->arena.p + g->off, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, g->last);
		sqlite3_bind_text(s, 3, b->p, (int)b->len, SQLITE_STATIC);
		if (sqlite3_step(s) != SQLITE_DONE)
			return -1;
	}
	return 0;
}

/* Transactions the deliveries of a later batch may ask for go into the
 * cache. One whose every recipient has a final delivery folded into its
 * row expects none (an alias's further copies may still come: the store
 * answers those), and saves the entry. */
static void
cache_txn(struct writer *w, const struct rec *t)
{
	if (t->nfold > 0 && t->nfold < FOLD_MAX) {
		size_t rcpts = 0;
		for (size_t i = 0; i < t->naddr; i++)
			rcpts += t->addr[i].role == PT_ADDR_RCPT;
		int final = t->nfold >= rcpts;
		for (const struct rec *d = t->fold; final && d; d = d->fold_next)
			final = strcmp(d->f[F_OUTCOME], "deferred") != 0;
		if (final)
			return;
	}
	qcache_put(w, t->f[F_QID], t->f[F_SENDER], t->f[F_MID]);
}

/* One row per message: each delivery of the batch whose transaction is in
 * the batch too (began at most PT_RECORD_FOLD_MS before it) goes into
 * the transaction's row. Also gives every event its sequence number in
 * list order, so a folded delivery's id is the one its row would have had,
 * and puts the transactions into the cache (cache_txn) for the deliveries
 * left unfolded. */
static void
fold_batch(struct writer *w, struct rec *list)
{
	size_t n = 0, ntxn = 0;
	for (struct rec *r = list; r; r = r->next) {
		r->seq0 = w->seq++;
		n++;
		ntxn += r->kind == K_SMTP && r->f[F_QID] && r->f[F_SENDER];
	}
	if (ntxn == 0)
		return;
	struct rec **tab = NULL;
	size_t mask = 0;
	if (n * 2 > w->nftab) {
		size_t ns = 64;
		while (ns < n * 2)
			ns *= 2;
		struct rec **v = malloc(ns * sizeof *v);
		if (v) {
			free(w->ftab);
			w->ftab = v;
			w->nftab = ns;
		}
	}
	if (n * 2 <= w->nftab) {
		/* Without the table (no memory): no folding, a row each. */
		tab = w->ftab;
		mask = w->nftab - 1;
		memset(tab, 0, w->nftab * sizeof *tab);
	}
	for (struct rec *r = list; tab && r; r = r->next) {
		if (r->kind != K_SMTP || !r->f[F_QID] || !r->f[F_SENDER])
			continue;
		size_t i = hash_str(r->f[F_QID]) & mask;
		while (tab[i] && strcmp(tab[i]->f[F_QID], r->f[F_QID]) != 0)
			i = (i + 1) & mask;
		if (tab[i])
			tab[i]->nfold = FOLD_MAX;  /* two transactions, one queue id: neither takes any */
		else if (addrs_plain(r))
			tab[i] = r;
	}
	for (struct rec *d = list; tab && d; d = d->next) {
		if (d->kind != K_DELIVERY || !d->f[F_QID])
			continue;
		size_t i = hash_str(d->f[F_QID]) & mask;
		struct rec *t;
		while ((t = tab[i]) && strcmp(t->f[F_QID], d->f[F_QID]) != 0)
			i = (i + 1) & mask;
		if (!t || d->ts < t->ts || d->ts - t->ts > PT_RECORD_FOLD_MS || t->nfold >= FOLD_MAX || !addrs_plain(d))
			continue;
		if (t->fold_tail)
			t->fold_tail->fold_next = d;
		else
			t->fold = d;
		t->fold_tail = d;
		t->nfold++;
		d->folded = 1;
	}
	/* Before any delivery of the batch is written: an unfolded one finds
	 * its transaction whatever the order. */
	for (struct rec *r = list; r; r = r->next)
		if (r->kind == K_SMTP && r->f[F_QID] && r->f[F_SENDER])
			cache_txn(w, r);
}

static void
write_batch(struct writer *w, struct rec *list)
{
	fold_batch(w, list);
	w->arena.len = 0;
	w->arena.oom = 0;
	w->ngroups = w->nids = 0;
	if (w->slots)
		memset(w->slots, 0, w->nslots * sizeof *w->slots);
	size_t orphans_before = w->norphans;
	struct orphan saved[ORPHANS_MAX];
	memcpy(saved, w->orphans, orphans_before * sizeof saved[0]);
	int ok = sqlite3_exec(w->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
	for (struct rec *r = list; ok && r; r = r->next)
		ok = r->folded || write_one(w, r) == 0;
	if (ok)
		ok = write_terms(w) == 0;
	if (ok)
		ok = sqlite3_exec(w->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
	if (!ok) {
		if (!w->failing)
			pt_log(PT_LOG_ERROR, "decision record %s: cannot write: %s (events are lost until it works again)",
			       R.path, sqlite3_errmsg(w->db));
		sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
		/* The orphans of the lost batch were never written. */
		memcpy(w->orphans, saved, orphans_before * sizeof saved[0]);
		w->norphans = orphans_before;
	} else if (w->failing) {
		pt_log(PT_LOG_INFO, "decision record %s: writing again", R.path);
	}
	w->failing = !ok;
}

static int
writer_prepare(struct writer *w)
{
	static const char *const sql[] = {
		("INSERT INTO event(id, kind, outcome, service, queue_id, message_id, client, client_name, helo, sender,"
		 " user, stage, rule, reply, relay, dsn, trace, size, delay, refused, ts, rcpts, dlv)"
		 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,"
		 " ?22, ?23)"),
		/* (last, t) is taken again only when a later batch lists an
		 * event's sender after the fact: the lists are joined. */
		("INSERT INTO term(t, last, evs) VALUES(?1, ?2, ?3) ON CONFLICT(last, t) DO UPDATE SET"
		 " evs = substr(evs, 1, length(evs) - 1) || ',' || substr(excluded.evs, 2)"),
		("SELECT sender, message_id FROM event WHERE queue_id = ?1 AND kind = 'smtp' AND sender IS NOT NULL"
		 " ORDER BY id DESC LIMIT 1"),
		"UPDATE event SET sender = ?2, message_id = coalesce(message_id, ?3) WHERE id = ?1",
	};
	sqlite3_stmt **st[] = { &w->ins_event, &w->ins_term, &w->find_msg, &w->set_sender };
	for (size_t i = 0; i < sizeof st / sizeof st[0]; i++)
		if (sqlite3_prepare_v3(w->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, st[i], NULL) != SQLITE_OK)
			return -1;
	w->qc = calloc(QCACHE, sizeof *w->qc);
	return 0;
}

static void
writer_close(struct writer *w)
{
	sqlite3_stmt *st[] = { w->ins_event, w->ins_term, w->find_msg, w->set_sender };
	for (size_t i = 0; i < sizeof st / sizeof st[0]; i++)
		sqlite3_finalize(st[i]);
	sqlite3_close(w->db);
	for (size_t i = 0; w->qc && i < QCACHE; i++) {
		free(w->qc[i].sender);
	}
	free(w->qc);
	free(w->ftab);
	pt_strbuf_free(&w->dbuf);
	free(w->groups);
	free(w->slots);
	free(w->ids);
	pt_strbuf_free(&w->arena);
	pt_strbuf_free(&w->buf);
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
