/* postern why: answers "why did (or didn't) this mail arrive?" from the
 * decision record (record_db.c), whatever the log does: by queue id or
 * Message-ID, sender, recipient (also before alias expansion), client,
 * time, refusals and logins. Each event is told as a short story, newest
 * first; --json gives the same for scripts. Without a record (it is off,
 * or not written yet) a queue id is looked up in maillog_file instead.
 * A row may hold a transaction and the deliveries folded into it
 * (record_int.h): SQL finds the rows, and each event of a folded row is
 * checked by itself here (its own time and recipients) and held back
 * until no later row can hold a newer one. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cli.h"
#include "config_int.h"
#include "postern/strbuf.h"
#include "process.h"
#include "queue.h"
#include "record_int.h"
#include "runtime.h"

#define DEFAULT_LIMIT 50

static const char usage_text[] =
	"usage: postern why [QUEUEID | MESSAGE-ID] [--from ADDR] [--to ADDR] [--client IP]\n"
	"                   [--since WHEN] [--until WHEN] [--rejected] [--login USER]\n"
	"                   [--limit N] [--json]\n"
	"  ADDR: user@domain, user (any domain), user@ or @domain; --to also matches\n"
	"  the address the client gave before alias expansion.\n"
	"  WHEN: now, today, yesterday, 2h / 30m / 3d / 1w ago, YYYY-MM-DD[ HH:MM[:SS]][Z], @EPOCH\n";

struct why_opts {
	const char *id, *from, *to, *client, *login;
	long long since, until;      /* ms; -1 = open */
	int rejected, json;
	long limit;
};

/* ---- time words ---- */

static long long
local_midnight(time_t t, int days_back)
{
	struct tm tm;
	localtime_r(&t, &tm);
	tm.tm_mday -= days_back;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_isdst = -1;
	return (long long)mktime(&tm) * 1000;
}

/* ms since the epoch, or -1 when s is not a time. */
static long long
parse_when(const char *s, time_t now)
{
	char *end;
	if (strcmp(s, "now") == 0)
		return (long long)now * 1000;
	if (strcmp(s, "today") == 0)
		return local_midnight(now, 0);
	if (strcmp(s, "yesterday") == 0)
		return local_midnight(now, 1);
	if (s[0] == '@') {
		errno = 0;
		long long v = strtoll(s + 1, &end, 10);
		return errno || end == s + 1 || *end ? -1 : v * 1000;
	}
	if (isdigit((unsigned char)s[0])) {
		errno = 0;
		long long n = strtoll(s, &end, 10);
		if (!errno && end != s && end[0] && !end[1] && n >= 0 && n < 100000000LL) {
			long long unit = end[0] == 's' ? 1 : end[0] == 'm' ? 60 : end[0] == 'h' ? 3600 :
			                 end[0] == 'd' ? 86400 : end[0] == 'w' ? 604800 : 0;
			if (unit)
				return ((long long)now - n * unit) * 1000;
		}
	}
	struct tm tm;
	memset(&tm, 0, sizeof tm);
	const char *p = strptime(s, "%Y-%m-%d", &tm);
	if (!p)
		return -1;
	if (*p == 'T' || *p == ' ') {
		const char *q = strptime(p + 1, "%H:%M:%S", &tm);
		if (!q)
			q = strptime(p + 1, "%H:%M", &tm);
		if (!q)
			return -1;
		p = q;
	}
	if (strcmp(p, "Z") == 0)
		return (long long)timegm(&tm) * 1000;
	if (*p)
		return -1;
	tm.tm_isdst = -1;
	return (long long)mktime(&tm) * 1000;
}

/* ---- output ---- */

static void
json_str(FILE *out, const char *s)
{
	if (!s) {
		fputs("null", out);
		return;
	}
	putc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", out);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\u%04x", *p);
		else
			putc(*p, out);
	}
	putc('"', out);
}

/* What the record holds came from clients and remote servers (a
 * Message-ID, a remote reply, a policy's text): before it reaches a
 * terminal or a JSON parser, bytes that are not valid UTF-8 and control
 * characters (C0, DEL, C1: escape sequences) become '?'. keep_nl keeps
 * the line breaks of a trace. */
static char *
clean_text(const unsigned char *s, int keep_nl)
{
	if (!s)
		return NULL;
	size_t n = strlen((const char *)s);
	char *o = malloc(n + 1);
	if (!o)
		return NULL;
	size_t i = 0, k = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
		int ok = len > 0 && i + len <= n && !(len == 2 && c < 0xc2);
		for (size_t j = 1; ok && j < len; j++)
			ok = (s[i + j] & 0xc0) == 0x80;
		if (!ok) {
			o[k++] = '?';
			i++;
			continue;
		}
		int control = (len == 1 && (c < 0x20 || c == 0x7f) && !(c == '\n' && keep_nl)) ||
		              (len == 2 && c == 0xc2 && s[i + 1] < 0xa0);
		if (control) {
			o[k++] = '?';
			i += len;
			continue;
		}
		memcpy(o + k, s + i, len);
		k += len;
		i += len;
	}
	o[k] = '\0';
	return o;
}

static char *
clean(const unsigned char *s)
{
	return clean_text(s, 0);
}

enum col { C_ID, C_TS, C_KIND, C_OUTCOME, C_SERVICE, C_QID, C_MID, C_CLIENT, C_CLIENT_NAME, C_HELO, C_SENDER,
	C_USER, C_STAGE, C_RULE, C_REPLY, C_RELAY, C_DSN, C_SIZE, C_DELAY, C_REFUSED, C_TRACE, C_RCPTS, NCOLS };
static const char *const col_name[NCOLS] = { "id", "ts", "kind", "outcome", "service", "queue_id", "message_id",
	"client", "client_name", "helo", "sender", "user", "stage", "rule", "reply", "relay", "dsn", "size", "delay",
	"refused", "trace", "rcpts" };

struct addr_row {
	int role;
	char *address, *reply, *rule;
};

struct event {
	char *v[NCOLS];
	long long id, ts;
	struct addr_row *a;
	size_t na;
};

static const char *
role_name(int role)
{
	return role == PT_ADDR_SENDER ? "from" : role == PT_ADDR_ORIG ? "orig_to" : "to";
}

static void
fmt_time(long long ms, int utc, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (utc)
		gmtime_r(&t, &tm);
	else
		localtime_r(&t, &tm);
	strftime(out, len, utc ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &tm);
	if (utc) {
		size_t n = strlen(out);
		snprintf(out + n, len - n, ".%03dZ", (int)(ms % 1000));
	}
}

static void
print_json(FILE *out, const struct event *e, int first)
{
	char when[48];
	fmt_time(e->ts, 1, when, sizeof when);
	fprintf(out, "%s\n  {\"time\": \"%s\", \"ts\": %.3f", first ? "" : ",", when, (double)e->ts / 1000);
	for (int c = C_KIND; c < NCOLS; c++) {
		if (c == C_TRACE || c == C_RCPTS)
			continue;
		fprintf(out, ", \"%s\": ", col_name[c]);
		if (!e->v[c])
			fputs("null", out);
		else if (c == C_SIZE || c == C_REFUSED || c == C_DELAY)
			fputs(e->v[c], out);
		else
			json_str(out, e->v[c]);
	}
	fputs(", \"recipients\": [", out);
	int n = 0;
	for (size_t i = 0; i < e->na; i++) {
		if (e->a[i].role == PT_ADDR_SENDER)
			continue;
		fprintf(out, "%s{\"address\": ", n++ ? ", " : "");
		json_str(out, e->a[i].address);
		fprintf(out, ", \"role\": \"%s\", \"reply\": ", role_name(e->a[i].role));
		json_str(out, e->a[i].reply);
		fputs(", \"rule\": ", out);
		json_str(out, e->a[i].rule);
		putc('}', out);
	}
	fputs("], \"trace\": [", out);
	n = 0;
	for (const char *p = e->v[C_TRACE]; p && *p;) {
		size_t len = strcspn(p, "\n");
		char *line = strndup(p, len);
		if (line) {
			fputs(n++ ? ", " : "", out);
			json_str(out, line);
			free(line);
		}
		p += len;
		if (*p)
			p++;
	}
	fputs("]}", out);
}

static const char *
or_dash(const char *s)
{
	return s && *s ? s : "-";
}

/* The story of one event, a few indented lines under its time. */
static void
print_story(FILE *out, const struct event *e)
{
	char when[32];
	const char *const *v = (const char *const *)e->v;
	fmt_time(e->ts, 0, when, sizeof when);
	const char *kind = or_dash(v[C_KIND]);
	if (strcmp(kind, "login") == 0) {
		fprintf(out, "%s  login %s for %s from %s: %s", when, or_dash(v[C_SERVICE]),
		        v[C_USER] && *v[C_USER] ? v[C_USER] : "(no user name)", or_dash(v[C_CLIENT]), or_dash(v[C_OUTCOME]));
		if (v[C_REPLY] && *v[C_REPLY])
			fprintf(out, " (%s)", v[C_REPLY]);
		fputs("\n\n", out);
		return;
	}
	if (strcmp(kind, "delivery") == 0) {
		const char *to = NULL, *orig = NULL;
		for (size_t i = 0; i < e->na; i++) {
			if (e->a[i].role == PT_ADDR_RCPT)
				to = e->a[i].address;
			else if (e->a[i].role == PT_ADDR_ORIG)
				orig = e->a[i].address;
		}
		fprintf(out, "%s  delivery %s: %s\n", when, or_dash(v[C_QID]), or_dash(v[C_OUTCOME]));
		fprintf(out, "  to <%s>", to ? to : "");
		if (orig)
			fprintf(out, " (sent to <%s>)", orig);
		fprintf(out, " by %s, relay %s", or_dash(v[C_SERVICE]), or_dash(v[C_RELAY]));
		if (v[C_DELAY])
			fprintf(out, ", %.1f s after arrival", strtod(v[C_DELAY], NULL));
		fputc('\n', out);
		if (v[C_SENDER])
			fprintf(out, "  from <%s>%s%s\n", v[C_SENDER], v[C_MID] ? ", Message-ID " : "",
			        v[C_MID] ? v[C_MID] : "");
		fprintf(out, "  status %s: %s\n\n", or_dash(v[C_DSN]), or_dash(v[C_REPLY]));
		return;
	}
	fprintf(out, "%s  SMTP %s: %s\n", when, v[C_QID] ? v[C_QID] : "NOQUEUE", or_dash(v[C_OUTCOME]));
	fprintf(out, "  client %s[%s] on %s", or_dash(v[C_CLIENT_NAME]), or_dash(v[C_CLIENT]), or_dash(v[C_SERVICE]));
	if (v[C_HELO])
		fprintf(out, ", HELO %s", v[C_HELO]);
	if (v[C_USER])
		fprintf(out, ", authenticated as %s", v[C_USER]);
	fputc('\n', out);
	if (v[C_SENDER]) {
		fprintf(out, "  from <%s>", v[C_SENDER]);
		if (v[C_SIZE])
			fprintf(out, ", %s bytes", v[C_SIZE]);
		if (v[C_MID])
			fprintf(out, ", Message-ID %s", v[C_MID]);
		fputc('\n', out);
	}
	for (size_t i = 0; i < e->na; i++) {
		if (e->a[i].role != PT_ADDR_RCPT)
			continue;
		fprintf(out, "  to <%s>: %s", e->a[i].address, or_dash(e->a[i].reply));
		if (e->a[i].rule)
			fprintf(out, " (rule %s)", e->a[i].rule);
		fputc('\n', out);
	}
	if (v[C_REPLY]) {
		fprintf(out, "  %s: %s", or_dash(v[C_STAGE]), v[C_REPLY]);
		if (v[C_RULE])
			fprintf(out, " (rule %s)", v[C_RULE]);
		fputc('\n', out);
	}
	if (v[C_TRACE] && *v[C_TRACE]) {
		fputs("  trace:\n", out);
		for (const char *p = v[C_TRACE]; *p;) {
			size_t len = strcspn(p, "\n");
			fprintf(out, "    %.*s\n", (int)len, p);
			p += len;
			if (*p)
				p++;
		}
	}
	fputc('\n', out);
}

static void
event_free(struct event *e)
{
	for (int c = 0; c < NCOLS; c++)
		free(e->v[c]);
	for (size_t i = 0; i < e->na; i++) {
		free(e->a[i].address);
		free(e->a[i].reply);
		free(e->a[i].rule);
	}
	free(e->a);
}

/* The event's addresses from its rcpts column (record_int.h). */
static int
load_addrs(const unsigned char *text, struct event *e)
{
	for (const char *p = (const char *)text; p && *p;) {
		size_t len = strcspn(p, (const char[]){ PT_RECORD_RS, '\0' });
		char *rec = strndup(p, len);
		struct addr_row *a = realloc(e->a, (e->na + 1) * sizeof *a);
		if (!rec || !a) {
			free(rec);
			if (a)
				e->a = a;
			return -1;
		}
		e->a = a;
		char *f[4] = { rec, NULL, NULL, NULL };
		for (int i = 1; i < 4; i++) {
			char *us = f[i - 1] ? strchr(f[i - 1], PT_RECORD_US) : NULL;
			if (us) {
				*us = '\0';
				f[i] = us + 1;
			}
		}
		a[e->na].role = atoi(f[0]);
		a[e->na].address = clean((const unsigned char *)(f[1] ? f[1] : ""));
		a[e->na].reply = f[2] && *f[2] ? clean((const unsigned char *)f[2]) : NULL;
		a[e->na].rule = f[3] && *f[3] ? clean((const unsigned char *)f[3]) : NULL;
		e->na++;
		free(rec);
		p += len;
		if (*p)
			p++;
	}
	return 0;
}

/* ---- the query ---- */

struct query {
	struct pt_strbuf sql;
	const char *text[24];
	long long num[24];
	int is_text[24];
	int n;
	/* --to as the term conditions SQL applies (t = lo, or lo <= t < hi),
	 * per role letter: checked again for each event of a folded row. */
	struct { char role; const char *lo, *hi; } to[4];
	int nto;
};

static void
bind_text_arg(struct query *q, const char *s)
{
	q->is_text[q->n] = 1;
	q->text[q->n++] = s;
}

static void
bind_num_arg(struct query *q, long long v)
{
	q->is_text[q->n] = 0;
	q->num[q->n++] = v;
}

/* Events listed under a search term (record_db.c): cond is SQL on the
 * term table's t. */
static void
term_in(struct query *q, const char *cond)
{
	pt_strbuf_printf(&q->sql, " AND e.id IN (SELECT j.value FROM term, json_each(term.evs) AS j WHERE %s)", cond);
}

/* One address condition: "user@domain", "user" or "user@" (any domain),
 * "@domain", "<>" (the null sender); roles: term letters ("s", "ro"). */
static void
addr_cond(struct query *q, const char *arg, const char *roles, char terms[][600], int *nterms, int is_to)
{
	char local[256], domain[256], cond[600];
	struct pt_strbuf c = { 0 };
	if (strcmp(arg, "<>") == 0)
		local[0] = domain[0] = '\0';
	else
		pt_record_split(arg, local, sizeof local, domain, sizeof domain);
	for (const char *r = roles; *r; r++) {
		char *t = terms[(*nterms)++], *hi = terms[(*nterms)++];
		const char *lo = t, *hi_or_null = NULL;
		if (strcmp(arg, "<>") == 0 || (local[0] && domain[0])) {
			pt_record_term(t, 600, *r, local, domain);
			snprintf(cond, sizeof cond, "t = ?%d", q->n + 1);
			bind_text_arg(q, t);
		} else if (local[0]) {
			/* Any domain: the terms from "R=local@" up to "R=localA"
			 * ('A' follows '@'). */
			pt_record_term(t, 600, *r, local, "");
			size_t n = strlen(t);
			memcpy(hi, t, n);
			hi[n - 1] = 'A';
			hi[n] = '\0';
			snprintf(cond, sizeof cond, "(t >= ?%d AND t < ?%d)", q->n + 1, q->n + 2);
			bind_text_arg(q, t);
			bind_text_arg(q, hi);
			hi_or_null = hi;
		} else {
			pt_record_term(t, 600, *r, NULL, domain);
			snprintf(cond, sizeof cond, "t = ?%d", q->n + 1);
			bind_text_arg(q, t);
		}
		if (is_to && q->nto < 4) {
			q->to[q->nto].role = *r;
			q->to[q->nto].lo = lo;
			q->to[q->nto++].hi = hi_or_null;
		}
		pt_strbuf_printf(&c, "%s%s", r == roles ? "" : " OR ", cond);
	}
	term_in(q, c.p ? c.p : "0");
	pt_strbuf_free(&c);
}

/* Does one of an event's addresses (its rcpts text as stored, before
 * clean_text) give a term --to asks for? The same terms and comparisons
 * as the SQL on the term table (BINARY collation: bytewise). */
static int
to_matches(const struct query *q, const char *text)
{
	for (const char *p = text; p && *p;) {
		size_t len = strcspn(p, (const char[]){ PT_RECORD_RS, '\0' });
		const char *us = memchr(p, PT_RECORD_US, len);
		if (us) {
			const char *a = us + 1, *end = memchr(a, PT_RECORD_US, len - (size_t)(a - p));
			char addr[2048], t[2][600];
			size_t alen = (size_t)((end ? end : p + len) - a);
			if (alen < sizeof addr) {
				memcpy(addr, a, alen);
				addr[alen] = '\0';
				int role = atoi(p);
				char letter = pt_record_role_letter(role);
				pt_record_addr_terms(role, addr, t);
				for (int i = 0; i < q->nto; i++) {
					if (q->to[i].role != letter)
						continue;
					for (int k = 0; k < 2; k++) {
						if (!t[k][0])
							continue;
						if (q->to[i].hi ? strcmp(t[k], q->to[i].lo) >= 0 && strcmp(t[k], q->to[i].hi) < 0
						                : strcmp(t[k], q->to[i].lo) == 0)
							return 1;
					}
				}
			}
		}
		p += len;
		if (*p)
			p++;
	}
	return 0;
}

static int
in_window(const struct why_opts *o, long long id, long long ts)
{
	return (o->since < 0 || (id >= o->since * PT_RECORD_ID_SCALE && ts >= o->since)) &&
	       (o->until < 0 || (id < o->until * PT_RECORD_ID_SCALE && ts < o->until));
}

/* Events read but not yet told: a max-heap by id. */
struct heap {
	struct event **v;
	size_t n, cap;
};

static int
heap_push(struct heap *h, struct event *e)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct event **v = realloc(h->v, cap * sizeof *v);
		if (!v)
			return -1;
		h->v = v;
		h->cap = cap;
	}
	size_t i = h->n++;
	while (i > 0 && h->v[(i - 1) / 2]->id < e->id) {
		h->v[i] = h->v[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->v[i] = e;
	return 0;
}

static struct event *
heap_pop(struct heap *h)
{
	struct event *top = h->v[0], *last = h->v[--h->n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1]->id > h->v[c]->id)
			c++;
		if (h->v[c]->id <= last->id)
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
	return top;
}

static void
event_destroy(struct event *e)
{
	if (e) {
		event_free(e);
		free(e);
	}
}

/* A row's own event (the transaction, or an event never folded). */
static struct event *
row_event(sqlite3_stmt *st)
{
	struct event *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	for (int c = 0; c < NCOLS; c++)
		e->v[c] = clean_text(sqlite3_column_text(st, c), c == C_TRACE);
	e->id = sqlite3_column_int64(st, C_ID);
	e->ts = sqlite3_column_int64(st, C_TS);
	if (load_addrs(sqlite3_column_text(st, C_RCPTS), e) != 0) {
		event_destroy(e);
		return NULL;
	}
	return e;
}

/* One folded delivery (record_int.h), its fields cut out of the row's
 * dlv text in place. */
struct folded {
	long long id;
	const char *delay_hex, *f[5], *addrs;  /* outcome, service, relay, dsn, reply */
};

/* The next delivery of dlv (NUL-terminated, modified), or NULL at the
 * end; *next moves on. A malformed one is skipped. */
static int
next_folded(char **next, struct folded *d)
{
	while (*next && **next) {
		char *p = *next, *fs = strchr(p, PT_RECORD_FS);
		if (fs) {
			*fs = '\0';
			*next = fs + 1;
		} else {
			*next = p + strlen(p);
		}
		/* id, delay, five fields, then the addresses (with US of their own). */
		char *part[8], *q = p;
		int n = 0;
		for (; n < 7; n++) {
			char *us = strchr(q, PT_RECORD_US);
			if (!us)
				break;
			*us = '\0';
			part[n] = q;
			q = us + 1;
		}
		if (n < 7)
			continue;
		part[7] = q;
		char *end;
		errno = 0;
		d->id = strtoll(part[0], &end, 10);
		if (errno || end == part[0] || *end || d->id <= 0 || strlen(part[1]) != 16)
			continue;
		d->delay_hex = part[1];
		int ok = 1;
		for (int i = 0; i < 5; i++) {
			if (part[2 + i][0] == '\0')
				d->f[i] = NULL;
			else if (part[2 + i][0] == '=')
				d->f[i] = part[2 + i] + 1;
			else
				ok = 0;
		}
		if (!ok)
			continue;
		d->addrs = part[7];
		return 1;
	}
	return 0;
}

/* A folded delivery as the event it would have been in a row of its own:
 * queue id, sender and Message-ID are the transaction's (the writer gave
 * a delivery those of its transaction); the delay comes out as SQLite
 * turns a REAL into text. */
static struct event *
folded_event(sqlite3_stmt *st, sqlite3_stmt *real, const struct folded *d)
{
	struct event *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	e->id = d->id;
	e->ts = d->id / PT_RECORD_ID_SCALE;
	uint64_t bits = 0;
	for (int i = 0; i < 16; i++) {
		char c = d->delay_hex[i];
		bits = bits << 4 | (uint64_t)(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
	}
	double delay;
	memcpy(&delay, &bits, sizeof delay);
	if (delay == 0)
		delay = 0;  /* SQLite keeps -0.0 as 0 */
	sqlite3_reset(real);
	if (isnan(delay))
		sqlite3_bind_null(real, 1);  /* as SQLite stores a NaN */
	else
		sqlite3_bind_double(real, 1, delay);
	if (sqlite3_step(real) == SQLITE_ROW)
		e->v[C_DELAY] = clean(sqlite3_column_text(real, 0));
	sqlite3_reset(real);
	e->v[C_KIND] = strdup("delivery");
	e->v[C_REFUSED] = strdup("0");
	static const enum col fcol[5] = { C_OUTCOME, C_SERVICE, C_RELAY, C_DSN, C_REPLY };
	for (int i = 0; i < 5; i++)
		e->v[fcol[i]] = clean((const unsigned char *)d->f[i]);
	e->v[C_QID] = clean(sqlite3_column_text(st, C_QID));
	e->v[C_MID] = clean(sqlite3_column_text(st, C_MID));
	e->v[C_SENDER] = clean(sqlite3_column_text(st, C_SENDER));
	if (!e->v[C_KIND] || !e->v[C_REFUSED] || load_addrs((const unsigned char *)d->addrs, e) != 0) {
		event_destroy(e);
		return NULL;
	}
	return e;
}

struct teller {
	const struct why_opts *o;
	long shown;
	int more;
};

/* Tell one event, newest first; 1 when --limit is reached. */
static int
tell(struct teller *t, struct event *e)
{
	if (t->o->limit > 0 && t->shown == t->o->limit) {
		t->more = 1;
		return 1;
	}
	if (t->o->json)
		print_json(stdout, e, t->shown == 0);
	else
		print_story(stdout, e);
	t->shown++;
	return 0;
}

static int
run_query(sqlite3 *db, const struct why_opts *o)
{
	struct query q;
	memset(&q, 0, sizeof q);
	char terms[8][600], mid[1100], mid2[1100], client[600], user[600];
	int nterms = 0;
	/* Folded rows exist from schema 3 on; a folded delivery can answer
	 * no question about clients, refusals or logins. */
	sqlite3_stmt *ver = NULL;
	long long version = 0;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &ver, NULL) == SQLITE_OK && sqlite3_step(ver) == SQLITE_ROW)
		version = sqlite3_column_int64(ver, 0);
	sqlite3_finalize(ver);
	int have_dlv = version >= 3;
	int dlv_match = have_dlv && !o->client && !o->rejected && !o->login;
	/* A folded delivery's id is below its row's + hold_back. */
	long long fold_ms = dlv_match ? PT_RECORD_FOLD_MS : 0;
	long long hold_back = dlv_match ? (PT_RECORD_FOLD_MS + 1) * PT_RECORD_ID_SCALE : 0;
	pt_strbuf_printf(&q.sql, "SELECT e.id");
	for (int c = 1; c < NCOLS; c++)
		pt_strbuf_printf(&q.sql, ", e.%s", col_name[c]);
	pt_strbuf_printf(&q.sql, ", %s FROM event e WHERE 1", have_dlv ? "e.dlv" : "NULL");
	if (o->id) {
		if (pt_qid_valid(o->id)) {
			pt_strbuf_printf(&q.sql, " AND e.queue_id = ?%d", q.n + 1);
			bind_text_arg(&q, o->id);
		} else {
			/* A Message-ID with or without its angle brackets. */
			const char *m = o->id;
			size_t n = strlen(m);
			if (n >= 2 && m[0] == '<' && m[n - 1] == '>')
				snprintf(mid, sizeof mid, "%.*s", (int)(n - 2), m + 1);
			else
				snprintf(mid, sizeof mid, "%s", m);
			snprintf(mid2, sizeof mid2, "<%s>", mid);
			/* Only transactions are indexed by Message-ID: the
			 * deliveries come by their queue id (or in its row). */
			pt_strbuf_printf(&q.sql, " AND (e.message_id IN (?%d, ?%d) AND e.kind = 'smtp' OR e.queue_id IN"
			                 " (SELECT queue_id FROM event WHERE message_id IN (?%d, ?%d) AND kind = 'smtp'"
			                 " AND queue_id IS NOT NULL))", q.n + 1, q.n + 2, q.n + 1, q.n + 2);
			bind_text_arg(&q, mid);
			bind_text_arg(&q, mid2);
		}
	}
	if (o->from)
		addr_cond(&q, o->from, "s", terms, &nterms, 0);
	if (o->to)
		addr_cond(&q, o->to, "ro", terms, &nterms, 1);
	if (o->client) {
		char cond[32];
		snprintf(client, sizeof client, "c=%s", o->client);
		snprintf(cond, sizeof cond, "t = ?%d", q.n + 1);
		term_in(&q, cond);
		pt_strbuf_printf(&q.sql, " AND e.client = ?%d", q.n + 2);
		bind_text_arg(&q, client);
		bind_text_arg(&q, o->client);
	}
	/* The id is the time (record_int.h): a window is a range of the
	 * table, its start earlier by the fold cap (a delivery in the window
	 * may be in the row of a transaction before it); each event's own
	 * time is checked below. A delivery is never folded into a
	 * transaction after it: the end stays. */
	if (o->since >= 0) {
		pt_strbuf_printf(&q.sql, " AND e.id >= ?%d AND e.ts >= ?%d", q.n + 1, q.n + 2);
		bind_num_arg(&q, (o->since - fold_ms) * PT_RECORD_ID_SCALE);
		bind_num_arg(&q, o->since - fold_ms);
	}
	if (o->until >= 0) {
		pt_strbuf_printf(&q.sql, " AND e.id < ?%d AND e.ts < ?%d", q.n + 1, q.n + 2);
		bind_num_arg(&q, o->until * PT_RECORD_ID_SCALE);
		bind_num_arg(&q, o->until);
	}
	if (o->rejected) {
		/* By the "x" term, unless a window is narrower. */
		if (o->since < 0 && !o->from && !o->to && !o->client && !o->login && !o->id)
			term_in(&q, "t = 'x'");
		pt_strbuf_printf(&q.sql, " AND e.refused > 0 AND e.kind = 'smtp'");
	}
	if (o->login) {
		snprintf(user, sizeof user, "u=%s", o->login);
		for (char *p = user + 2; *p; p++)
			*p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
		char cond[32];
		snprintf(cond, sizeof cond, "t = ?%d", q.n + 1);
		term_in(&q, cond);
		pt_strbuf_printf(&q.sql, " AND e.user = ?%d COLLATE NOCASE AND e.kind = 'login'", q.n + 2);
		bind_text_arg(&q, user);
		bind_text_arg(&q, o->login);
	}
	pt_strbuf_printf(&q.sql, " ORDER BY e.id DESC");
	/* A row is one event when no folded delivery can match and no
	 * transaction's recipients are checked again below. */
	if (o->limit > 0 && (!have_dlv || (!dlv_match && !o->to)))
		pt_strbuf_printf(&q.sql, " LIMIT %ld", o->limit + 1);

	sqlite3_stmt *st = NULL, *real = NULL;
	struct heap h = { 0 };
	struct teller tl = { .o = o };
	int rc = 2, step = SQLITE_DONE, stop = 0, failed = 0;
	if (!q.sql.p || sqlite3_prepare_v2(db, q.sql.p, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT ?1", -1, &real, NULL) != SQLITE_OK) {
		fprintf(stderr, "postern why: %s\n", sqlite3_errmsg(db));
		goto out;
	}
	for (int i = 0; i < q.n; i++) {
		if (q.is_text[i])
			sqlite3_bind_text(st, i + 1, q.text[i], -1, SQLITE_STATIC);
		else
			sqlite3_bind_int64(st, i + 1, q.num[i]);
	}
	if (o->json)
		fputs("[", stdout);
	while (!stop && (step = sqlite3_step(st)) == SQLITE_ROW) {
		long long id = sqlite3_column_int64(st, C_ID);
		const unsigned char *dlv = sqlite3_column_text(st, NCOLS);
		int folded = dlv && *dlv;
		if (in_window(o, id, sqlite3_column_int64(st, C_TS)) &&
		    (!folded || !o->to || to_matches(&q, (const char *)sqlite3_column_text(st, C_RCPTS)))) {
			struct event *e = row_event(st);
			if (!e || heap_push(&h, e) != 0) {
				event_destroy(e);
				failed = 1;
				break;
			}
		}
		if (folded && dlv_match) {
			char *text = strdup((const char *)dlv), *next = text;
			struct folded d;
			if (!text) {
				failed = 1;
				break;
			}
			while (next_folded(&next, &d)) {
				if (!in_window(o, d.id, d.id / PT_RECORD_ID_SCALE) || (o->to && !to_matches(&q, d.addrs)))
					continue;
				struct event *e = folded_event(st, real, &d);
				if (!e || heap_push(&h, e) != 0) {
					event_destroy(e);
					failed = 1;
					break;
				}
			}
			free(text);
			if (failed)
				break;
		}
		/* No row after this one holds an event at or above id + hold_back. */
		while (!stop && h.n && h.v[0]->id >= id + hold_back) {
			struct event *e = heap_pop(&h);
			stop = tell(&tl, e);
			event_destroy(e);
		}
	}
	if (!failed && (stop || step == SQLITE_DONE)) {
		while (!stop && h.n) {
			struct event *e = heap_pop(&h);
			stop = tell(&tl, e);
			event_destroy(e);
		}
	}
	if (o->json)
		fputs(tl.shown ? "\n]\n" : "]\n", stdout);
	if (failed || (!stop && step != SQLITE_DONE)) {
		fprintf(stderr, "postern why: %s\n", failed ? "out of memory" : sqlite3_errmsg(db));
		goto out;
	}
	if (tl.more)
		fprintf(stderr, "postern why: only the newest %ld shown (--limit N, 0 for all)\n", o->limit);
	if (tl.shown == 0 && !o->json)
		fprintf(stderr, "postern why: no matching events\n");
	rc = tl.shown ? 0 : 1;
out:
	while (h.n)
		event_destroy(heap_pop(&h));
	free(h.v);
	sqlite3_finalize(st);
	sqlite3_finalize(real);
	pt_strbuf_free(&q.sql);
	return rc;
}

/* ---- without a record: the log ---- */

static int
grep_log(const char *logfile, const char *id)
{
	if (!logfile[0] || strcmp(logfile, "stderr") == 0 || strcmp(logfile, "/dev/stderr") == 0) {
		fprintf(stderr, "postern why: no decision record, and maillog_file is %s: nothing to search\n",
		        logfile[0] ? logfile : "syslog");
		return 2;
	}
	FILE *f = fopen(logfile, "r");
	if (!f) {
		fprintf(stderr, "postern why: %s: %s\n", logfile, strerror(errno));
		return 2;
	}
	char prefix[64];
	snprintf(prefix, sizeof prefix, "]: %s: ", id);
	char *line = NULL;
	size_t cap = 0;
	int found = 0;
	while (getline(&line, &cap, f) > 0) {
		if (strstr(line, prefix)) {
			fputs(line, stdout);
			found++;
		}
	}
	free(line);
	fclose(f);
	if (!found) {
		fprintf(stderr, "postern why: no log lines for %s in %s\n", id, logfile);
		return 1;
	}
	return 0;
}

/* As root, read the store as the user who writes it (mail_owner, or the
 * rootless server's user): no root process parses what the network-facing
 * worker wrote, and files SQLite makes beside it keep their owner. */
static int
become_owner(const char *path)
{
	struct stat st;
	if (geteuid() != 0 || stat(path, &st) != 0 || st.st_uid == 0)
		return 0;
	if (pt_process_drop_privileges(st.st_uid, st.st_gid) != 0) {
		fprintf(stderr, "postern why: cannot become the owner (uid %ld) of %s: %s\n", (long)st.st_uid, path,
		        strerror(errno));
		return -1;
	}
	return 0;
}

int
pt_cmd_why(const char *conf, int argc, char **argv)
{
	struct why_opts o = { .since = -1, .until = -1, .limit = DEFAULT_LIMIT };
	time_t now = time(NULL);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;
		if (strcmp(a, "--json") == 0) {
			o.json = 1;
			continue;
		}
		if (strcmp(a, "--rejected") == 0) {
			o.rejected = 1;
			continue;
		}
		if (strcmp(a, "--from") == 0)
			slot = &o.from;
		else if (strcmp(a, "--to") == 0)
			slot = &o.to;
		else if (strcmp(a, "--client") == 0)
			slot = &o.client;
		else if (strcmp(a, "--login") == 0)
			slot = &o.login;
		else if (strcmp(a, "--since") == 0 || strcmp(a, "--until") == 0 || strcmp(a, "--limit") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "postern why: option %s needs a value\n", a);
				return 2;
			}
			const char *val = argv[++i];
			if (strcmp(a, "--limit") == 0) {
				char *end;
				errno = 0;
				o.limit = strtol(val, &end, 10);
				if (errno || end == val || *end || o.limit < 0) {
					fprintf(stderr, "postern why: --limit %s is not a count\n", val);
					return 2;
				}
				continue;
			}
			long long t = parse_when(val, now);
			if (t < 0) {
				fprintf(stderr, "postern why: %s %s is not a time (now, today, yesterday, 2h, 3d, "
				        "YYYY-MM-DD[ HH:MM[:SS]][Z], @EPOCH)\n", a, val);
				return 2;
			}
			*(strcmp(a, "--since") == 0 ? &o.since : &o.until) = t;
			continue;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "postern why: unknown option %s\n%s", a, usage_text);
			return 2;
		} else if (!o.id) {
			o.id = a;
			continue;
		} else {
			fprintf(stderr, "postern why: unexpected argument %s\n", a);
			return 2;
		}
		if (i + 1 >= argc || !argv[i + 1][0]) {
			fprintf(stderr, "postern why: option %s needs a value\n", a);
			return 2;
		}
		*slot = argv[++i];
	}
	if (!o.id && !o.from && !o.to && !o.client && o.since < 0 && o.until < 0 && !o.rejected && !o.login) {
		fputs(usage_text, stderr);
		return 2;
	}
	struct pt_config *c = pt_runtime_load_params(conf);
	if (c == NULL || pt_runtime_print_errors(c, stderr) > 0) {
		if (c)
			pt_config_free(c);
		return 2;
	}
	char path[1024], logfile[1024];
	snprintf(path, sizeof path, "%s", pt_conf_str(c, "decision_log_file"));
	snprintf(logfile, sizeof logfile, "%s", pt_conf_str(c, "maillog_file"));
	pt_config_free(c);

	struct stat st;
	if (path[0] && stat(path, &st) != 0 && errno == EACCES) {
		fprintf(stderr, "postern why: %s: %s (the decision record is for root and mail_owner)\n", path,
		        strerror(errno));
		return 2;
	}
	if (!path[0] || access(path, F_OK) != 0) {
		if (!path[0])
			fprintf(stderr, "postern why: decision_log_file is empty: no decision record kept\n");
		else
			fprintf(stderr, "postern why: %s: no decision record yet\n", path);
		if (o.id && pt_qid_valid(o.id) && !o.from && !o.to && !o.client && !o.login && !o.rejected) {
			fprintf(stderr, "postern why: searching the log instead\n");
			return grep_log(logfile, o.id);
		}
		return 2;
	}
	if (become_owner(path) != 0)
		return 2;
	char err[600];
	sqlite3 *db = pt_record_db_open(path, 0, err, sizeof err);
	if (!db) {
		fprintf(stderr, "postern why: %s\n", err);
		return 2;
	}
	int rc = run_query(db, &o);
	sqlite3_close(db);
	return rc;
}
