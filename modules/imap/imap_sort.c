/* SORT and THREAD (RFC 5256), SORT=DISPLAY (RFC 5957), ESORT (RFC 5267
 * RETURN options on SORT): the search keys pick the messages
 * (imap_search_eval), the header fields each needs are read once, then
 * sorted (ties by sequence number, as §3 asks) or threaded by
 * ORDEREDSUBJECT or REFERENCES. Strings compare by i;unicode-casemap
 * (RFC 5051; I18NLEVEL=1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "postern/header.h"
#include "postern/log.h"
#include "postern/siphash.h"
#include "postern/unicode_casemap.h"
#include "imap.h"
#include "imap_msg.h"
#include "imap_msg_int.h"

/* Header fields a command needs (load_fields' mask). */
enum { H_SUBJECT = 1, H_FROM = 2, H_TO = 4, H_CC = 8, H_DATE = 16 };

enum sort_key { K_ARRIVAL, K_CC, K_DATE, K_FROM, K_SIZE, K_SUBJECT, K_TO, K_DISPLAYFROM, K_DISPLAYTO };
#define SORT_KEYS_MAX 16

struct sort_crit {
	enum sort_key key;
	int reverse;
};

/* What one message contributes. Strings are owned, "" when absent. */
struct smsg {
	size_t idx;                   /* view index */
	uint32_t seq, id;             /* id: the number the reply uses */
	time_t arrival, date;
	uint64_t size;
	char *subject, *from, *to, *cc, *dfrom, *dto;
	uint32_t srank, frank;        /* the store's ranks of subject/from, 0 none */
	int reply;                    /* the subject was a reply/forward */
	char *msgid, **refs;          /* THREAD=REFERENCES */
	size_t nrefs;
};

static const char *
nz(const char *s)
{
	return s ? s : "";
}

/* The strings of one SORT/THREAD live in chunks freed together: a
 * malloc and a free for each of some 600 000 strings of a 100k folder
 * cost more than reading the fields did. Set by collect(), let go by
 * smsg_free() (one command at a time in a mail process). */
#define ARENA_CHUNK (256 * 1024)
struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	char data[];
};
static struct arena_chunk *arena;

static void
arena_free(void)
{
	while (arena != NULL) {
		struct arena_chunk *c = arena;
		arena = c->next;
		free(c);
	}
}

/* [p, p+n) NUL-terminated in the arena; NULL when out of memory. */
static char *
arena_copy(const char *p, size_t n)
{
	if (arena == NULL || arena->cap - arena->used < n + 1) {
		/* A string longer than a chunk gets a chunk of its own. */
		size_t cap = n + 1 > ARENA_CHUNK / 4 ? n + 1 : ARENA_CHUNK;
		struct arena_chunk *c = malloc(sizeof *c + cap);
		if (c == NULL)
			return NULL;
		c->used = 0;
		c->cap = cap;
		if (arena != NULL && cap != ARENA_CHUNK) {
			/* behind the current one, which keeps its room */
			c->next = arena->next;
			arena->next = c;
		} else {
			c->next = arena;
			arena = c;
		}
		memcpy(c->data, p, n);
		c->data[n] = '\0';
		c->used = n + 1;
		return c->data;
	}
	char *d = arena->data + arena->used;
	memcpy(d, p, n);
	d[n] = '\0';
	arena->used += n + 1;
	return d;
}

/* b's text kept in the arena; b is freed. NULL when out of memory. */
static char *
take(struct pt_strbuf *b)
{
	char *p = b->oom ? NULL : arena_copy(b->p ? b->p : "", b->len);
	pt_strbuf_free(b);
	memset(b, 0, sizeof(*b));
	return p;
}

/* For a string only ever compared by i;unicode-casemap (sort keys, base
 * subjects): kept as its canonical form, so comparing is strcmp. b is then
 * freed, or with keep left empty but allocated (a scratch buffer used
 * again for the next message). */
static char *
key_copy(struct pt_strbuf *b, int keep)
{
	pt_casemap_fold_buf(b);
	if (!keep)
		return take(b);
	char *p = b->oom ? NULL : arena_copy(b->p ? b->p : "", b->len);
	b->len = 0;
	b->oom = 0;
	return p;
}

static char *
take_key(struct pt_strbuf *b)
{
	return key_copy(b, 0);
}

/* load_fields' scratch buffers, kept across its messages (freed with the
 * arena): two mallocs and frees less per message of a 100k SORT. */
static struct pt_strbuf scratch_value, scratch_subject;

/* The ids in <...> of a References / In-Reply-To / Message-ID value,
 * white space inside dropped. */
static void
msgids(const char *v, size_t len, char ***out, size_t *n, size_t max)
{
	size_t i = 0;

	while (i < len && *n < max) {
		const char *lt = memchr(v + i, '<', len - i);
		if (lt == NULL)
			break;
		const char *gt = memchr(lt, '>', len - (size_t)(lt - v));
		if (gt == NULL)
			break;
		struct pt_strbuf b = { 0 };
		for (const char *c = lt + 1; c < gt; c++)
			if (*c != ' ' && *c != '\t' && *c != '\r' && *c != '\n')
				pt_strbuf_put(&b, c, 1);
		i = (size_t)(gt - v) + 1;
		if (b.len == 0) {
			pt_strbuf_free(&b);
			continue;
		}
		char **nv = realloc(*out, (*n + 1) * sizeof(*nv));
		char *id = take(&b);
		if (nv == NULL || id == NULL) {
			if (nv)
				*out = nv;
			return;
		}
		*out = nv;
		nv[(*n)++] = id;
	}
}

/* Set by SORT when its header keys are only SUBJECT and FROM: then the
 * store's kept sort keys (and ranks) stand for the header. */
static int use_skeys;
/* 0 when SORT's keys need no arrival, size or date: the store's list
 * entry is not asked for (a 100k SORT (SUBJECT) from kept ranks). */
static int need_info = 1;
/* 0 when no DISPLAYFROM/DISPLAYTO key: the first address's display name
 * (an RFC 2047 decoding per message) is not made. */
static int need_display = 1;

/* One kept key of m: its rank, and its string only when it has no rank
 * or strings is set (a ranked key's string is left unread, NULL: with
 * every key ranked no string is compared, see ranked_strings). */
static int
stored_key(struct imap_session *s, struct smsg *m, int kind, int strings)
{
	const char *k;
	uint32_t rank;
	char **str = kind == PT_SKEY_SUBJECT ? &m->subject : &m->from;

	if (s->mbx->sort_key(s->mb, s->view[m->idx].uid, kind, &k, &rank) != 1)
		return 0;
	*(kind == PT_SKEY_SUBJECT ? &m->srank : &m->frank) = rank;
	if (rank != 0 && !strings)
		return 1;
	return (*str = arena_copy(k, strlen(k))) != NULL;
}

/* m's subject/from keys as the store keeps them: 1 when all headers
 * asks for are there. */
static int
stored_keys(struct imap_session *s, struct smsg *m, int headers)
{
	if ((headers & H_SUBJECT) && !stored_key(s, m, PT_SKEY_SUBJECT, 0))
		return 0;
	if ((headers & H_FROM) && !stored_key(s, m, PT_SKEY_FROM, 0))
		return 0;
	return 1;
}

/* When some key of a kind has no rank, ranked ones compare as strings
 * with it: their strings are read now. 0, or -1 when they cannot be. */
static int
ranked_strings(struct imap_session *s, struct smsg *m, size_t nm, int headers)
{
	for (int kind = PT_SKEY_SUBJECT; kind <= PT_SKEY_FROM; kind++) {
		if (!(headers & (kind == PT_SKEY_SUBJECT ? H_SUBJECT : H_FROM)))
			continue;
		size_t unranked = 0;
		for (size_t k = 0; k < nm; k++)
			unranked += (kind == PT_SKEY_SUBJECT ? m[k].srank : m[k].frank) == 0;
		if (unranked == 0 || unranked == nm)
			continue;
		for (size_t k = 0; k < nm; k++) {
			char *str = kind == PT_SKEY_SUBJECT ? m[k].subject : m[k].from;
			uint32_t rank = kind == PT_SKEY_SUBJECT ? m[k].srank : m[k].frank;
			if (rank != 0 && str == NULL && !stored_key(s, &m[k], kind, 1))
				return -1;
		}
	}
	return 0;
}

/* Fill m's fields: arrival and size from the store's list, the rest
 * from the header of its message (read now, unless headers is 0). */
static void
load_fields(struct imap_session *s, struct smsg *m, int threading, int headers)
{
	struct pt_msg_text t;
	struct pt_status st = { 0 };
	int skeys = use_skeys && !threading && headers && s->mbx->sort_key != NULL && s->mbx->sort_key_put != NULL;

	/* Kept keys and no number key: the list entry is not needed. */
	if (skeys && !need_info && stored_keys(s, m, headers))
		return;
	const struct pt_msg_info *info = imap_view_info(s, m->idx);
	if (info == NULL) {
		/* Expunged by another session since the search: its keys are
		 * not known (sorted as empty), said by OK [EXPUNGEISSUED]. */
		s->search_expunged = 1;
		return;
	}
	m->arrival = info->internal_date;
	m->date = info->internal_date;
	m->size = info->size;
	if (!headers)
		return;
	if (skeys) {
		if (need_info && stored_keys(s, m, headers))
			return;
		/* Not (all) kept: from the header, as below, and kept then. */
		m->subject = m->from = NULL;
		m->srank = m->frank = 0;
	}
	/* Every field used here is in the store's header cache: the cached
	 * section when it has one, else the message. */
	const char *ch = NULL;
	size_t chlen = 0;
	int cached = s->mbx->header_fields != NULL ?
	             s->mbx->header_fields(s->mb, s->view[m->idx].uid, &ch, &chlen, &st) : 0;
	if (cached == 1) {
		memset(&t, 0, sizeof t);
		t.data = ch;
		t.len = t.hdr_len = chlen;
	} else if (cached < 0 || s->mbx->read(s->mb, s->view[m->idx].uid, &t, &st) != 0) {
		if (strcmp(st.dsn, "NONEXISTENT") == 0 || s->mbx->find(s->mb, s->view[m->idx].uid) == (size_t)-1)
			s->search_expunged = 1;
		else
			pt_warn("imap(%s): SORT could not read UID %u: %s", s->user.name, s->view[m->idx].uid,
			        st.text);
		return;
	}
	struct pt_hdr_iter it;
	struct pt_hdr_field f;
	int have_subject = 0, have_from = 0, have_to = 0, have_cc = 0, have_date = 0, have_refs = 0;
	char **irt = NULL;
	size_t nirt = 0;
	pt_hdr_iter_init(&it, t.data, t.hdr_len, 0);
	while (pt_hdr_next(&it, &f)) {
		/* Unfolded only when one of the fields asked for. */
		if (!((headers & H_SUBJECT) && pt_hdr_name_is(&f, "subject")) &&
		    !((headers & H_FROM) && pt_hdr_name_is(&f, "from")) &&
		    !((headers & H_TO) && pt_hdr_name_is(&f, "to")) &&
		    !((headers & H_CC) && pt_hdr_name_is(&f, "cc")) &&
		    !((headers & H_DATE) && pt_hdr_name_is(&f, "date")) &&
		    !(threading && (pt_hdr_name_is(&f, "message-id") || pt_hdr_name_is(&f, "references") ||
		                    pt_hdr_name_is(&f, "in-reply-to"))))
			continue;
		struct pt_strbuf v = scratch_value;
		v.len = 0;
		v.oom = 0;
		pt_hdr_unfold(f.value, f.value_len, &v);
		scratch_value = v;
		const char *vp = v.p ? v.p : "";
		if (!have_subject && (headers & H_SUBJECT) && pt_hdr_name_is(&f, "subject")) {
			scratch_subject.len = 0;
			scratch_subject.oom = 0;
			imap_base_subject(vp, v.len, &scratch_subject, &m->reply);
			m->subject = key_copy(&scratch_subject, 1);
			have_subject = 1;
		} else if (!have_from && (headers & H_FROM) && pt_hdr_name_is(&f, "from")) {
			struct pt_strbuf a = { 0 }, d = { 0 };
			imap_msg_first_address(vp, v.len, &a, need_display ? &d : NULL);
			m->from = take_key(&a);
			m->dfrom = need_display ? take_key(&d) : NULL;
			have_from = 1;
		} else if (!have_to && (headers & H_TO) && pt_hdr_name_is(&f, "to")) {
			struct pt_strbuf a = { 0 }, d = { 0 };
			imap_msg_first_address(vp, v.len, &a, need_display ? &d : NULL);
			m->to = take_key(&a);
			m->dto = need_display ? take_key(&d) : NULL;
			have_to = 1;
		} else if (!have_cc && (headers & H_CC) && pt_hdr_name_is(&f, "cc")) {
			struct pt_strbuf a = { 0 };
			imap_msg_first_address(vp, v.len, &a, NULL);
			m->cc = take_key(&a);
			have_cc = 1;
		} else if (!have_date && (headers & H_DATE) && pt_hdr_name_is(&f, "date")) {
			time_t when;
			int tz;
			/* An unparsable Date: leaves the internal date (§2.2). */
			if (imap_rfc822_date_parse(vp, v.len, &when, &tz) == 0)
				m->date = when;
			have_date = 1;
		} else if (threading && m->msgid == NULL && pt_hdr_name_is(&f, "message-id")) {
			char **ids = NULL;
			size_t n = 0;
			msgids(vp, v.len, &ids, &n, 1);
			if (n)
				m->msgid = ids[0];
			free(ids);
		} else if (threading && !have_refs && pt_hdr_name_is(&f, "references")) {
			msgids(vp, v.len, &m->refs, &m->nrefs, 1000);
			have_refs = 1;
		} else if (threading && nirt == 0 && pt_hdr_name_is(&f, "in-reply-to")) {
			msgids(vp, v.len, &irt, &nirt, 1);
		}
	}
	/* No References: the first id of In-Reply-To is the parent. */
	if (m->nrefs == 0 && nirt) {
		m->refs = irt;
		m->nrefs = nirt;
		irt = NULL;
		nirt = 0;
	}
	free(irt);   /* the ids are the arena's */
	if (cached != 1)
		s->mbx->release(s->mb, &t);
	/* An absent field keys as "" (nz); a present one without its copy
	 * (out of memory) is not kept. */
	uint32_t uid = s->view[m->idx].uid;
	if (skeys && (headers & H_SUBJECT) && !(have_subject && m->subject == NULL))
		s->mbx->sort_key_put(s->mb, uid, PT_SKEY_SUBJECT, nz(m->subject), strlen(nz(m->subject)));
	if (skeys && (headers & H_FROM) && !(have_from && m->from == NULL))
		s->mbx->sort_key_put(s->mb, uid, PT_SKEY_FROM, nz(m->from), strlen(nz(m->from)));
}

static void
smsg_free(struct smsg *m, size_t n)
{
	/* The strings are the arena's. */
	for (size_t i = 0; m != NULL && i < n; i++)
		free(m[i].refs);
	free(m);
	arena_free();
	pt_strbuf_free(&scratch_value);
	pt_strbuf_free(&scratch_subject);
	memset(&scratch_value, 0, sizeof scratch_value);
	memset(&scratch_subject, 0, sizeof scratch_subject);
}

/* The messages the search keys pick, with their fields; NULL with the
 * reply sent on error (an empty result is a non-NULL array, *n 0). */
static struct smsg *
collect(struct imap_session *s, const char *tag, const char *cmd, const struct imap_arg *keys, size_t nkeys,
        int uid, int threading, int headers, size_t *n)
{
	size_t *idx = NULL, nidx = 0;

	if (imap_search_eval(s, tag, cmd, keys, nkeys, &idx, &nidx) != 0)
		return NULL;
	struct smsg *m = calloc(nidx ? nidx : 1, sizeof(*m));
	if (m == NULL) {
		free(idx);
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return NULL;
	}
	for (size_t i = 0; i < nidx; i++) {
		m[i].idx = idx[i];
		m[i].seq = (uint32_t)(idx[i] + 1);
		m[i].id = uid ? s->view[idx[i]].uid : m[i].seq;
		load_fields(s, &m[i], threading, headers);
	}
	free(idx);
	*n = nidx;
	return m;
}

static int
charset_ok(const struct imap_arg *a)
{
	return imap_arg_is_string(a) && (strcasecmp(a->s, "US-ASCII") == 0 || strcasecmp(a->s, "UTF-8") == 0);
}

/* ---- SORT ---- */

static const struct sort_crit *sort_crits;
static size_t sort_ncrits;

static int
cmp_num(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

/* i;unicode-casemap order of two keys take_key() made: plain octet order. */
static int
cmp_str(const char *a, const char *b)
{
	return strcmp(nz(a), nz(b));
}

static int
sort_cmp(const void *pa, const void *pb)
{
	const struct smsg *a = pa, *b = pb;

	for (size_t i = 0; i < sort_ncrits; i++) {
		int c = 0;
		switch (sort_crits[i].key) {
		case K_ARRIVAL:
			c = cmp_num((uint64_t)a->arrival, (uint64_t)b->arrival);
			break;
		case K_DATE:
			c = a->date < b->date ? -1 : a->date > b->date;
			break;
		case K_SIZE:
			c = cmp_num(a->size, b->size);
			break;
		case K_SUBJECT:
			c = a->srank && b->srank ? cmp_num(a->srank, b->srank) : cmp_str(a->subject, b->subject);
			break;
		case K_FROM:
			c = a->frank && b->frank ? cmp_num(a->frank, b->frank) : cmp_str(a->from, b->from);
			break;
		case K_TO:
			c = cmp_str(a->to, b->to);
			break;
		case K_CC:
			c = cmp_str(a->cc, b->cc);
			break;
		case K_DISPLAYFROM:
			c = cmp_str(a->dfrom, b->dfrom);
			break;
		case K_DISPLAYTO:
			c = cmp_str(a->dto, b->dto);
			break;
		}
		if (c != 0)
			return sort_crits[i].reverse ? -c : c;
	}
	/* All keys equal: sequence order (RFC 5256 §3, not reversed). */
	return cmp_num(a->seq, b->seq);
}

static int
sort_cmp_ptr(const void *pa, const void *pb)
{
	return sort_cmp(*(const struct smsg *const *)pa, *(const struct smsg *const *)pb);
}

/* One message's key when a single criterion sorts: 24 octets to move
 * and compare instead of a message record. */
struct skey {
	const char *s;                /* a string key, else NULL */
	int64_t n;                    /* a number key */
	uint32_t seq, id;
	uint32_t rank;                /* s's rank in the store, 0 none */
};

static int
skey_cmp(const void *pa, const void *pb)
{
	const struct skey *a = pa, *b = pb;
	int c = a->s == NULL ? (a->n < b->n ? -1 : a->n > b->n) :
	        a->rank && b->rank ? cmp_num(a->rank, b->rank) : strcmp(a->s, b->s);

	if (c != 0)
		return sort_crits[0].reverse ? -c : c;
	return cmp_num(a->seq, b->seq);   /* ties: sequence order, never reversed */
}

/* A single SUBJECT or FROM criterion whose every key the store ranked:
 * ids in order of rank by one stable counting pass (m ascends by
 * sequence, the order of ties), comparing no string. 1 when done, 0
 * when not so (or out of memory). */
static int
sorted_by_rank(const struct smsg *m, size_t nm, uint32_t *ids)
{
	enum sort_key key = sort_crits[0].key;
	if (sort_ncrits != 1 || (key != K_SUBJECT && key != K_FROM))
		return 0;
	uint32_t top = 0;
	for (size_t k = 0; k < nm; k++) {
		uint32_t r = key == K_SUBJECT ? m[k].srank : m[k].frank;
		if (r == 0 || (k && m[k].seq <= m[k - 1].seq))
			return 0;
		if (r > top)
			top = r;
	}
	if (top > 64u * 1024 * 1024)
		return 0;
	size_t *start = calloc((size_t)top + 2, sizeof(*start));
	if (start == NULL)
		return 0;
	int rev = sort_crits[0].reverse;
	/* REVERSE turns the key order only: rank r goes to top + 1 - r. */
	for (size_t k = 0; k < nm; k++) {
		uint32_t r = key == K_SUBJECT ? m[k].srank : m[k].frank;
		start[(rev ? top + 1 - r : r) + 1]++;
	}
	for (size_t r = 1; r < (size_t)top + 2; r++)
		start[r] += start[r - 1];
	for (size_t k = 0; k < nm; k++) {
		uint32_t r = key == K_SUBJECT ? m[k].srank : m[k].frank;
		ids[start[rev ? top + 1 - r : r]++] = m[k].id;
	}
	free(start);
	return 1;
}

static const char **dist_keys;

static int
dist_cmp(const void *pa, const void *pb)
{
	return strcmp(dist_keys[*(const uint32_t *)pa], dist_keys[*(const uint32_t *)pb]);
}

/* One string criterion over v[0..nm) (ascending by sequence), every key
 * read: a folder's keys repeat (1000 senders for 100 000 messages), so
 * the distinct keys are gathered in a hash table and sorted, and the
 * messages go out by one stable counting pass over their key's rank --
 * instead of a merge sort comparing 1.7 million pairs of strings. 1 when
 * done, 0 when not so (or out of memory). */
static int
sorted_by_distinct(const struct skey *v, size_t nm, uint32_t *ids)
{
	if (nm < 2 || nm > UINT32_MAX / 4)
		return 0;
	for (size_t k = 0; k < nm; k++)
		if (v[k].s == NULL || (k && v[k].seq <= v[k - 1].seq))
			return 0;
	size_t cap = 16;
	while (cap < 2 * nm)
		cap *= 2;
	uint32_t *slot = calloc(cap, sizeof *slot);   /* distinct + 1, 0 free */
	uint32_t *of = malloc(nm * sizeof *of);       /* each message's distinct key */
	const char **keys = malloc(nm * sizeof *keys);
	uint32_t *ord = NULL, *rank = NULL, *start = NULL;
	int done = 0;
	if (slot == NULL || of == NULL || keys == NULL)
		goto out;
	uint32_t nd = 0;
	for (size_t k = 0; k < nm; k++) {
		/* Keyed: the keys come from mail; strings a sender picked to
		 * share a bucket would make this quadratic. */
		size_t h = (size_t)pt_table_hash(v[k].s) & (cap - 1);
		while (slot[h] != 0 && strcmp(keys[slot[h] - 1], v[k].s) != 0)
			h = (h + 1) & (cap - 1);
		if (slot[h] == 0) {
			keys[nd] = v[k].s;
			slot[h] = ++nd;
		}
		of[k] = slot[h] - 1;
	}
	ord = malloc(nd * sizeof *ord);
	rank = malloc(nd * sizeof *rank);
	start = calloc((size_t)nd + 1, sizeof *start);
	if (ord == NULL || rank == NULL || start == NULL)
		goto out;
	for (uint32_t d = 0; d < nd; d++)
		ord[d] = d;
	dist_keys = keys;
	qsort(ord, nd, sizeof *ord, dist_cmp);
	/* Distinct keys are distinct strings: rank = place in order, turned
	 * for REVERSE (ties keep sequence order either way). */
	int rev = sort_crits[0].reverse;
	for (uint32_t d = 0; d < nd; d++)
		rank[ord[d]] = rev ? nd - 1 - d : d;
	for (size_t k = 0; k < nm; k++)
		start[rank[of[k]] + 1]++;
	for (uint32_t r = 1; r < nd; r++)
		start[r] += start[r - 1];
	for (size_t k = 0; k < nm; k++)
		ids[start[rank[of[k]]]++] = v[k].id;
	done = 1;
out:
	free(slot);
	free(of);
	free(keys);
	free(ord);
	free(rank);
	free(start);
	return done;
}

/* The reply's numbers of m[0..nm) in sort_crits order (malloc'd), NULL
 * when out of memory. */
static uint32_t *
sorted_ids(struct smsg *m, size_t nm)
{
	uint32_t *ids = malloc((nm ? nm : 1) * sizeof(*ids));
	struct skey *v = sort_ncrits == 1 ? malloc((nm ? nm : 1) * sizeof(*v)) : NULL;

	if (ids == NULL) {
		free(v);
		return NULL;
	}
	if (sorted_by_rank(m, nm, ids)) {
		free(v);
		return ids;
	}
	if (v != NULL) {
		int strings = sort_crits[0].key != K_ARRIVAL && sort_crits[0].key != K_DATE &&
		              sort_crits[0].key != K_SIZE;
		for (size_t k = 0; k < nm; k++) {
			const struct smsg *x = &m[k];
			const char *str = NULL;
			int64_t num = 0;
			switch (sort_crits[0].key) {
			case K_ARRIVAL: num = (int64_t)x->arrival; break;
			case K_DATE: num = (int64_t)x->date; break;
			case K_SIZE: num = (int64_t)x->size; break;
			case K_SUBJECT: str = nz(x->subject); break;
			case K_FROM: str = nz(x->from); break;
			case K_TO: str = nz(x->to); break;
			case K_CC: str = nz(x->cc); break;
			case K_DISPLAYFROM: str = nz(x->dfrom); break;
			case K_DISPLAYTO: str = nz(x->dto); break;
			}
			uint32_t rank = sort_crits[0].key == K_SUBJECT ? x->srank :
			                sort_crits[0].key == K_FROM ? x->frank : 0;
			/* A ranked key whose string was left unread compares by
			 * rank only: no string for sorted_by_distinct. */
			if (rank && ((sort_crits[0].key == K_SUBJECT && x->subject == NULL) ||
			             (sort_crits[0].key == K_FROM && x->from == NULL)))
				strings = 0;
			v[k] = (struct skey){ str, num, x->seq, x->id, rank };
		}
		if (strings && sorted_by_distinct(v, nm, ids)) {
			free(v);
			return ids;
		}
		qsort(v, nm, sizeof(*v), skey_cmp);
		for (size_t k = 0; k < nm; k++)
			ids[k] = v[k].id;
		free(v);
		return ids;
	}
	/* Several criteria: through pointers (a record is large). */
	const struct smsg **ord = malloc((nm ? nm : 1) * sizeof(*ord));
	if (ord == NULL) {
		qsort(m, nm, sizeof(*m), sort_cmp);
		for (size_t k = 0; k < nm; k++)
			ids[k] = m[k].id;
		return ids;
	}
	for (size_t k = 0; k < nm; k++)
		ord[k] = &m[k];
	qsort(ord, nm, sizeof(*ord), sort_cmp_ptr);
	for (size_t k = 0; k < nm; k++)
		ids[k] = ord[k]->id;
	free(ord);
	return ids;
}

/* " n" appended (a 100k SORT reply is 100k of them). */
static void
put_id(struct pt_strbuf *out, uint32_t v)
{
	char b[12];
	size_t i = sizeof b;

	do {
		b[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	b[--i] = ' ';
	pt_strbuf_put(out, b + i, sizeof b - i);
}

static int
parse_criteria(const struct imap_arg *l, struct sort_crit *c, size_t *n)
{
	static const struct {
		const char *name;
		enum sort_key key;
	} names[] = { { "ARRIVAL", K_ARRIVAL }, { "CC", K_CC }, { "DATE", K_DATE }, { "FROM", K_FROM },
		      { "SIZE", K_SIZE }, { "SUBJECT", K_SUBJECT }, { "TO", K_TO },
		      { "DISPLAYFROM", K_DISPLAYFROM }, { "DISPLAYTO", K_DISPLAYTO } };
	int reverse = 0;

	*n = 0;
	if (l->type != IMAP_ARG_LIST || l->n == 0)
		return -1;
	for (size_t i = 0; i < l->n; i++) {
		const struct imap_arg *a = &l->list[i];
		if (a->type != IMAP_ARG_ATOM)
			return -1;
		if (strcasecmp(a->s, "REVERSE") == 0) {
			if (reverse)
				return -1;
			reverse = 1;
			continue;
		}
		size_t k;
		for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (strcasecmp(a->s, names[k].name) == 0)
				break;
		if (k == sizeof(names) / sizeof(names[0]) || *n == SORT_KEYS_MAX)
			return -1;
		c[*n].key = names[k].key;
		c[*n].reverse = reverse;
		(*n)++;
		reverse = 0;
	}
	return reverse || *n == 0 ? -1 : 0;
}

enum { RET_MIN = 1, RET_MAX = 2, RET_ALL = 4, RET_COUNT = 8 };

void
imap_cmd_sort(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	const char *cmd = uid ? "UID SORT" : "SORT";
	struct sort_crit crit[SORT_KEYS_MAX];
	size_t ncrit, i = 0;
	unsigned ret = 0;
	int esort = 0;

	/* SORT [RETURN (...)] (criteria) charset search-keys */
	if (n > 0 && a[0].type == IMAP_ARG_ATOM && strcasecmp(a[0].s, "RETURN") == 0) {
		if (n < 2 || a[1].type != IMAP_ARG_LIST)
			goto bad;
		for (size_t k = 0; k < a[1].n; k++) {
			const struct imap_arg *o = &a[1].list[k];
			unsigned bit = o->type != IMAP_ARG_ATOM ? 0 :
			               strcasecmp(o->s, "MIN") == 0 ? RET_MIN :
			               strcasecmp(o->s, "MAX") == 0 ? RET_MAX :
			               strcasecmp(o->s, "ALL") == 0 ? RET_ALL :
			               strcasecmp(o->s, "COUNT") == 0 ? RET_COUNT : 0;
			if (bit == 0)
				goto bad;
			ret |= bit;
		}
		if (ret == 0)
			ret = RET_ALL;
		esort = 1;
		i = 2;
	}
	if (n < i + 3 || parse_criteria(&a[i], crit, &ncrit) != 0 || !imap_arg_is_string(&a[i + 1]))
		goto bad;
	if (!charset_ok(&a[i + 1])) {
		imap_tagged(s, tag, "NO", "[BADCHARSET (US-ASCII UTF-8)] Unknown charset");
		return;
	}
	/* ARRIVAL and SIZE come from the store's list: no message is read */
	int headers = 0;
	for (size_t k = 0; k < ncrit; k++) {
		static const int need[] = { [K_ARRIVAL] = 0, [K_CC] = H_CC, [K_DATE] = H_DATE,
			[K_FROM] = H_FROM, [K_SIZE] = 0, [K_SUBJECT] = H_SUBJECT, [K_TO] = H_TO,
			[K_DISPLAYFROM] = H_FROM, [K_DISPLAYTO] = H_TO };
		headers |= need[crit[k].key];
	}
	/* SUBJECT and FROM keys the store may keep (not DISPLAYFROM's
	 * display names, nor TO, CC, DATE): then no header is parsed. */
	use_skeys = (headers & ~(H_SUBJECT | H_FROM)) == 0;
	need_info = 0;
	need_display = 0;
	for (size_t k = 0; k < ncrit; k++) {
		if (crit[k].key == K_DISPLAYFROM || crit[k].key == K_DISPLAYTO)
			need_display = 1;
		if (crit[k].key == K_DISPLAYFROM)
			use_skeys = 0;
		if (crit[k].key == K_ARRIVAL || crit[k].key == K_SIZE || crit[k].key == K_DATE)
			need_info = 1;
	}
	size_t nm = 0;
	struct smsg *m = collect(s, tag, cmd, a + i + 2, n - i - 2, uid, 0, headers, &nm);
	if (m != NULL && use_skeys && s->mbx->sort_key != NULL && ranked_strings(s, m, nm, headers) != 0) {
		/* A key kept a moment ago is gone (it cannot be, short of
		 * memory): the keys from the headers instead. */
		for (size_t k = 0; k < nm; k++) {
			m[k].subject = m[k].from = NULL;
			m[k].srank = m[k].frank = 0;
		}
		use_skeys = 0;
		for (size_t k = 0; k < nm; k++)
			load_fields(s, &m[k], 0, headers);
	}
	use_skeys = 0;
	need_info = 1;
	need_display = 1;
	if (m == NULL)
		return;
	sort_crits = crit;
	sort_ncrits = ncrit;
	uint32_t *ids = sorted_ids(m, nm);
	if (ids == NULL) {
		smsg_free(m, nm);
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return;
	}

	struct pt_strbuf out = { 0 };
	/* SORT ... MODSEQ n: the highest mod-sequence of what matched
	 * (RFC 7162 §3.1.5, sort-data's search-sort-mod-seq). */
	uint64_t top = 0;
	for (size_t k = 0; s->search_modseq && k < nm; k++)
		if (s->view[m[k].idx].modseq > top)
			top = s->view[m[k].idx].modseq;
	if (!esort) {
		pt_strbuf_puts(&out, "* SORT");
		for (size_t k = 0; k < nm; k++)
			put_id(&out, ids[k]);
		if (top)
			pt_strbuf_printf(&out, " (MODSEQ %llu)", (unsigned long long)top);
		pt_strbuf_puts(&out, "\r\n");
	} else {
		/* RFC 5267 §3.2: MIN/MAX the first/last in sort order, ALL
		 * in sort order (ranges only where it ascends), COUNT */
		pt_strbuf_printf(&out, "* ESEARCH (TAG \"%s\")%s", tag, uid ? " UID" : "");
		if ((ret & RET_MIN) && nm)
			pt_strbuf_printf(&out, " MIN %u", ids[0]);
		if ((ret & RET_MAX) && nm)
			pt_strbuf_printf(&out, " MAX %u", ids[nm - 1]);
		if ((ret & RET_ALL) && nm) {
			pt_strbuf_puts(&out, " ALL ");
			imap_seqset_format(ids, nm, &out);
		}
		if (ret & RET_COUNT)
			pt_strbuf_printf(&out, " COUNT %zu", nm);
		if (top)
			pt_strbuf_printf(&out, " MODSEQ %llu", (unsigned long long)top);
		pt_strbuf_puts(&out, "\r\n");
	}
	free(ids);
	smsg_free(m, nm);
	imap_search_reply(s, tag, &out, "Sort");
	return;
bad:
	imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid arguments.", cmd);
}

/* ---- THREAD ---- */

/* A node of the thread tree: a message (msg >= 0) or a dummy. */
struct node {
	long msg;                     /* index into the smsg array, -1 dummy */
	long parent, child, next;     /* node indexes, -1 none */
	char *id;                     /* Message-ID it stands for (owned by smsg or ids) */
};

struct forest {
	struct node *v;
	size_t n, cap;
	/* id -> node: open addressing over node indexes */
	long *slot;
	size_t nslot;
	const struct smsg *m;
	int oom;
};

static long
node_new(struct forest *f, long msg, char *id)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 64;
		struct node *v = realloc(f->v, cap * sizeof(*v));
		if (v == NULL) {
			f->oom = 1;
			return -1;
		}
		f->v = v;
		f->cap = cap;
	}
	f->v[f->n] = (struct node){ msg, -1, -1, -1, id };
	return (long)f->n++;
}

/* The node for id, made (as a dummy) when none; -1 out of memory. */
static long
node_for_id(struct forest *f, char *id)
{
	size_t mask = f->nslot - 1, h = (size_t)pt_table_hash(id) & mask;

	while (f->slot[h] >= 0) {
		if (strcmp(f->v[f->slot[h]].id, id) == 0)
			return f->slot[h];
		h = (h + 1) & mask;
	}
	long k = node_new(f, -1, id);
	if (k >= 0)
		f->slot[h] = k;
	return k;
}

/* Threads deeper than this are cut (the deeper message starts a thread
 * of its own): the tree walks recurse along a chain, and each link is
 * checked for loops by walking up, so depth costs stack and time. A
 * real thread is far shallower. */
#define THREAD_DEPTH_MAX 1000

/* Whether linking k under a node below p would make a loop (anc is
 * above p) or a chain past THREAD_DEPTH_MAX. */
static int
is_ancestor(const struct forest *f, long anc, long k)
{
	size_t depth = 0;

	for (long p = k; p >= 0; p = f->v[p].parent)
		if (p == anc || ++depth >= THREAD_DEPTH_MAX)
			return 1;
	return 0;
}

static void
unlink_node(struct forest *f, long k)
{
	long p = f->v[k].parent;

	if (p < 0)
		return;
	long *pp = &f->v[p].child;
	while (*pp >= 0 && *pp != k)
		pp = &f->v[*pp].next;
	if (*pp == k)
		*pp = f->v[k].next;
	f->v[k].parent = -1;
	f->v[k].next = -1;
}

/* k becomes p's first child: sibling order is settled by date later
 * (step 6), so no walk to the end. */
static void
add_child(struct forest *f, long p, long k)
{
	f->v[k].next = f->v[p].child;
	f->v[p].child = k;
	f->v[k].parent = p;
}

/* The date a node sorts by: its message's, or (dummy) its first child's. */
static const struct smsg *
node_msg(const struct forest *f, long k)
{
	while (k >= 0 && f->v[k].msg < 0)
		k = f->v[k].child;
	return k >= 0 ? &f->m[f->v[k].msg] : NULL;
}

static int
date_cmp_msgs(const struct smsg *a, const struct smsg *b)
{
	if (a == NULL || b == NULL)
		return a == b ? 0 : a == NULL ? 1 : -1;
	if (a->date != b->date)
		return a->date < b->date ? -1 : 1;
	return cmp_num(a->seq, b->seq);
}

static const struct forest *sib_forest;

static int
sib_cmp(const void *pa, const void *pb)
{
	return date_cmp_msgs(node_msg(sib_forest, *(const long *)pa), node_msg(sib_forest, *(const long *)pb));
}

/* Sort a sibling list by date (children first, so a dummy's date is its
 * first child's). A root list can be long: an array and qsort. */
static long
sort_siblings(struct forest *f, long first)
{
	size_t n = 0;

	for (long k = first; k >= 0; k = f->v[k].next) {
		f->v[k].child = sort_siblings(f, f->v[k].child);
		n++;
	}
	if (n < 2)
		return first;
	long *v = malloc(n * sizeof(*v));
	if (v == NULL) {
		f->oom = 1;
		return first;
	}
	n = 0;
	for (long k = first; k >= 0; k = f->v[k].next)
		v[n++] = k;
	sib_forest = f;
	qsort(v, n, sizeof(*v), sib_cmp);
	for (size_t i = 0; i + 1 < n; i++)
		f->v[v[i]].next = v[i + 1];
	f->v[v[n - 1]].next = -1;
	first = v[0];
	free(v);
	return first;
}

static void
put_node(const struct forest *f, long k, struct pt_strbuf *out)
{
	int first = 1;

	if (f->v[k].msg >= 0) {
		pt_strbuf_printf(out, "%u", f->m[f->v[k].msg].id);
		first = 0;
	}
	long c = f->v[k].child;
	if (c < 0)
		return;
	if (f->v[c].next < 0 && f->v[k].msg >= 0) {
		/* one child: the chain goes on in the same list */
		pt_strbuf_puts(out, " ");
		put_node(f, c, out);
		return;
	}
	if (!first)
		pt_strbuf_puts(out, " ");
	for (; c >= 0; c = f->v[c].next) {
		pt_strbuf_puts(out, "(");
		put_node(f, c, out);
		pt_strbuf_puts(out, ")");
	}
}

/* Step 3: drop dummies without children; replace the others by their
 * children, except a root dummy with several (it keeps them together). */
static long
prune(struct forest *f, long first, int root)
{
	long head = -1, *tail = &head;

	for (long k = first, next; k >= 0; k = next) {
		next = f->v[k].next;
		f->v[k].child = prune(f, f->v[k].child, 0);
		for (long c = f->v[k].child; c >= 0; c = f->v[c].next)
			f->v[c].parent = k;
		if (f->v[k].msg < 0 && f->v[k].child < 0)
			continue;
		if (f->v[k].msg < 0 && !(root && f->v[f->v[k].child].next >= 0)) {
			/* promote the children into this level */
			for (long c = f->v[k].child; c >= 0; c = f->v[c].next) {
				f->v[c].parent = f->v[k].parent;
				*tail = c;
				tail = &f->v[c].next;
			}
			*tail = -1;
			continue;
		}
		*tail = k;
		tail = &f->v[k].next;
		*tail = -1;
	}
	return head;
}

static const char *
node_subject(const struct forest *f, long k, int *reply)
{
	const struct smsg *m = f->v[k].msg >= 0 ? &f->m[f->v[k].msg] : node_msg(f, f->v[k].child);

	*reply = m ? m->reply : 0;
	return m ? nz(m->subject) : "";
}

/* The subject table of step 5: base subject (i;unicode-casemap) -> the
 * root standing for it; open addressing over slots of table indexes. */
struct subj_table {
	long *root;                   /* table entries: node indexes */
	long *slot;                   /* -1 free, else an index into root */
	size_t n, mask;
};

/* The slot of subj: holding its entry, or the free one to put it in. */
static size_t
subj_slot(const struct forest *f, const struct subj_table *t, const char *subj)
{
	/* Subjects are canonical (key_copy folded them): equal under the
	 * comparator means equal octets. */
	size_t h = (size_t)pt_table_hash(subj) & t->mask, len = strlen(subj);

	while (t->slot[h] >= 0) {
		int r;
		const char *ts = node_subject(f, t->root[t->slot[h]], &r);
		if (imap_casemap_cmp(ts, strlen(ts), subj, len) == 0)
			break;
		h = (h + 1) & t->mask;
	}
	return h;
}

static void
thread_references(struct forest *f, size_t nm, struct pt_strbuf *out)
{
	const struct smsg *m = f->m;
	size_t nslot = 64, total = 0;

	/* every id a message names, at most: a table at most half full */
	for (size_t i = 0; i < nm; i++)
		total += m[i].nrefs + 1;
	while (nslot < 2 * (total + 1))
		nslot *= 2;
	f->slot = malloc(nslot * sizeof(*f->slot));
	if (f->slot == NULL) {
		f->oom = 1;
		return;
	}
	f->nslot = nslot;
	for (size_t i = 0; i < nslot; i++)
		f->slot[i] = -1;
	/* (1) containers by Message-ID, links from References */
	for (size_t i = 0; i < nm && !f->oom; i++) {
		long k = m[i].msgid ? node_for_id(f, m[i].msgid) : -1;
		if (k >= 0 && f->v[k].msg >= 0)
			k = -1;   /* a duplicate Message-ID: a message of its own */
		if (k < 0 && !f->oom)
			k = node_new(f, (long)i, NULL);
		else if (k >= 0)
			f->v[k].msg = (long)i;
		if (k < 0)
			break;
		long prev = -1;
		for (size_t r = 0; r < m[i].nrefs; r++) {
			long c = node_for_id(f, m[i].refs[r]);
			if (c < 0)
				break;
			/* (B) link consecutive references unless linked or a loop */
			if (prev >= 0 && f->v[c].parent < 0 && c != prev && !is_ancestor(f, c, prev))
				add_child(f, prev, c);
			prev = c;
		}
		/* (C) the last reference is this message's parent */
		unlink_node(f, k);
		if (prev >= 0 && prev != k && !is_ancestor(f, k, prev))
			add_child(f, prev, k);
	}
	if (f->oom)
		return;
	/* (2) the root set */
	long roots = -1, *tail = &roots;
	for (size_t k = 0; k < f->n; k++) {
		if (f->v[k].parent >= 0)
			continue;
		*tail = (long)k;
		tail = &f->v[k].next;
		*tail = -1;
	}
	/* (3) prune dummies, (4) sort the roots by date */
	roots = prune(f, roots, 1);
	roots = sort_siblings(f, roots);
	/* (5) roots with the same base subject gathered */
	size_t nroots = 0, cap = 16;
	for (long k = roots; k >= 0; k = f->v[k].next)
		nroots++;
	while (cap < 2 * nroots + 2)
		cap *= 2;
	struct subj_table st = { calloc(nroots + 1, sizeof(long)), malloc(cap * sizeof(long)), 0, cap - 1 };
	if (st.root == NULL || st.slot == NULL) {
		free(st.root);
		free(st.slot);
		f->oom = 1;
		return;
	}
	for (size_t i = 0; i < cap; i++)
		st.slot[i] = -1;
	for (long k = roots; k >= 0; k = f->v[k].next) {
		int reply;
		const char *subj = node_subject(f, k, &reply);
		if (!subj[0])
			continue;
		size_t h = subj_slot(f, &st, subj);
		if (st.slot[h] < 0) {
			st.slot[h] = (long)st.n;
			st.root[st.n++] = k;
			continue;
		}
		long *tk = &st.root[st.slot[h]];
		int treply;
		node_subject(f, *tk, &treply);
		/* (A) a dummy, or a non-reply over a reply, stands for it */
		if ((f->v[k].msg < 0 && f->v[*tk].msg >= 0) ||
		    (f->v[k].msg >= 0 && f->v[*tk].msg >= 0 && treply && !reply))
			*tk = k;
	}
	/* the roots in an array: one taken out or replaced in O(1); pos[]
	 * finds a root's place (dummies made here are never looked up) */
	long *rv = malloc((nroots + 1) * sizeof(*rv));
	size_t *pos = malloc((f->n + 1) * sizeof(*pos));
	if (rv == NULL || pos == NULL) {
		free(rv);
		free(pos);
		free(st.root);
		free(st.slot);
		f->oom = 1;
		return;
	}
	size_t nr = 0;
	for (long k = roots; k >= 0; k = f->v[k].next) {
		pos[k] = nr;
		rv[nr++] = k;
	}
	for (size_t i = 0; i < nr; i++) {
		long k = rv[i];
		if (k < 0)
			continue;
		int reply;
		const char *subj = node_subject(f, k, &reply);
		if (!subj[0])
			continue;
		size_t h = subj_slot(f, &st, subj);
		if (st.slot[h] < 0 || st.root[st.slot[h]] == k)
			continue;
		long t = st.slot[h], c = st.root[t];
		int creply;
		node_subject(f, c, &creply);
		rv[i] = -1;   /* k leaves the root set */
		f->v[k].next = -1;
		if (f->v[c].msg < 0 && f->v[k].msg < 0) {
			/* (i) both dummies: k's children join c's, after c's
			 * first child (which gives c its subject, the table key) */
			long first = f->v[c].child;
			for (long ch = f->v[k].child, nx; ch >= 0; ch = nx) {
				nx = f->v[ch].next;
				f->v[ch].parent = c;
				f->v[ch].next = f->v[first].next;
				f->v[first].next = ch;
			}
			f->v[k].child = -1;
		} else if (f->v[c].msg < 0) {
			/* (ii) c a dummy: k joins its children */
			add_child(f, c, k);
		} else if (!creply && reply) {
			/* (iii) k a reply to c's subject */
			add_child(f, c, k);
		} else {
			/* (iv) a new dummy over both, in c's place */
			long d = node_new(f, -1, NULL);
			if (d < 0)
				break;
			rv[pos[c]] = d;
			add_child(f, d, c);
			add_child(f, d, k);
			st.root[t] = d;
		}
	}
	roots = -1;
	tail = &roots;
	for (size_t i = 0; i < nr; i++) {
		if (rv[i] < 0)
			continue;
		*tail = rv[i];
		tail = &f->v[rv[i]].next;
	}
	*tail = -1;
	free(rv);
	free(pos);
	free(st.root);
	free(st.slot);
	if (f->oom)
		return;
	/* (6) siblings by date everywhere below */
	for (long k = roots; k >= 0; k = f->v[k].next)
		f->v[k].child = sort_siblings(f, f->v[k].child);
	for (long k = roots; k >= 0; k = f->v[k].next) {
		pt_strbuf_puts(out, "(");
		put_node(f, k, out);
		pt_strbuf_puts(out, ")");
	}
}

static const struct smsg *subject_sort_base;

static int
subject_date_cmp(const void *pa, const void *pb)
{
	const struct smsg *a = &subject_sort_base[*(const size_t *)pa], *b = &subject_sort_base[*(const size_t *)pb];
	int c = cmp_str(a->subject, b->subject);

	return c ? c : date_cmp_msgs(a, b);
}

static int
first_date_cmp(const void *pa, const void *pb)
{
	const size_t *a = pa, *b = pb;   /* [first message, start, count] */

	return date_cmp_msgs(&subject_sort_base[a[0]], &subject_sort_base[b[0]]);
}

/* ORDEREDSUBJECT (RFC 5256 §3): by base subject then date; each run of
 * one subject a thread, its first message the parent of the others;
 * threads by their first message's date. */
static void
thread_orderedsubject(const struct smsg *m, size_t nm, struct pt_strbuf *out)
{
	size_t *order = malloc((nm ? nm : 1) * sizeof(*order));
	size_t *threads = malloc((nm ? nm : 1) * 3 * sizeof(*threads));

	if (order == NULL || threads == NULL) {
		free(order);
		free(threads);
		out->oom = 1;
		return;
	}
	for (size_t i = 0; i < nm; i++)
		order[i] = i;
	subject_sort_base = m;
	qsort(order, nm, sizeof(*order), subject_date_cmp);
	size_t nt = 0;
	for (size_t i = 0; i < nm;) {
		size_t j = i + 1;
		while (j < nm && cmp_str(m[order[j]].subject, m[order[i]].subject) == 0)
			j++;
		threads[3 * nt] = order[i];
		threads[3 * nt + 1] = i;
		threads[3 * nt + 2] = j - i;
		nt++;
		i = j;
	}
	qsort(threads, nt, 3 * sizeof(*threads), first_date_cmp);
	for (size_t t = 0; t < nt; t++) {
		size_t start = threads[3 * t + 1], count = threads[3 * t + 2];
		pt_strbuf_printf(out, "(%u", m[order[start]].id);
		if (count == 2)
			pt_strbuf_printf(out, " %u", m[order[start + 1]].id);
		else
			for (size_t k = 1; k < count; k++)
				pt_strbuf_printf(out, "%s(%u)", k == 1 ? " " : "", m[order[start + k]].id);
		pt_strbuf_puts(out, ")");
	}
	free(order);
	free(threads);
}

void
imap_cmd_thread(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	const char *cmd = uid ? "UID THREAD" : "THREAD";
	int refs;

	/* THREAD algorithm charset search-keys */
	if (n < 3 || a[0].type != IMAP_ARG_ATOM || !imap_arg_is_string(&a[1])) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid arguments.", cmd);
		return;
	}
	if (strcasecmp(a[0].s, "REFERENCES") == 0)
		refs = 1;
	else if (strcasecmp(a[0].s, "ORDEREDSUBJECT") == 0)
		refs = 0;
	else {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Unknown thread algorithm.", cmd);
		return;
	}
	if (!charset_ok(&a[1])) {
		imap_tagged(s, tag, "NO", "[BADCHARSET (US-ASCII UTF-8)] Unknown charset");
		return;
	}
	size_t nm = 0;
	/* The messages first, their fields only when the store has not
	 * kept this very answer (same messages, texts and numbers): a
	 * thread tree depends on nothing else. */
	int keep = s->mbx->answer_get != NULL && s->mbx->answer_put != NULL;
	struct smsg *m = collect(s, tag, cmd, a + 2, n - 2, uid, keep ? 0 : refs, keep ? 0 : H_SUBJECT | H_DATE, &nm);
	if (m == NULL)
		return;
	/* One kept answer per algorithm, numbering and whether the whole
	 * folder was asked (what clients ask again) or a part of it. */
	char name[40];
	snprintf(name, sizeof name, "thread-%s-%s-%s", refs ? "refs" : "subj", uid ? "uid" : "seq",
	         nm == s->nview ? "all" : "part");
	uint32_t *uids = keep ? malloc((nm ? nm : 1) * sizeof(*uids)) : NULL;
	uint32_t *nums = keep ? malloc((nm ? nm : 1) * sizeof(*nums)) : NULL;
	struct pt_strbuf out = { 0 };
	if (uids != NULL && nums != NULL) {
		for (size_t k = 0; k < nm; k++) {
			uids[k] = s->view[m[k].idx].uid;
			nums[k] = m[k].id;
		}
		const char *kept;
		size_t klen;
		if (s->mbx->answer_get(s->mb, name, uids, nums, nm, &kept, &klen) == 1)
			pt_strbuf_put(&out, kept, klen);
	}
	if (out.len) {
		free(uids);
		free(nums);
		smsg_free(m, nm);
		imap_search_reply(s, tag, &out, "Thread");
		return;
	}
	if (keep)
		for (size_t k = 0; k < nm; k++)
			load_fields(s, &m[k], refs, H_SUBJECT | H_DATE);
	pt_strbuf_puts(&out, "* THREAD ");
	if (refs) {
		struct forest f = { .m = m };
		thread_references(&f, nm, &out);
		if (f.oom)
			out.oom = 1;
		free(f.v);
		free(f.slot);
	} else {
		thread_orderedsubject(m, nm, &out);
	}
	/* no thread at all: "* THREAD" alone */
	if (out.len == 9)
		out.len = 8;
	pt_strbuf_puts(&out, "\r\n");
	if (uids != NULL && nums != NULL && !out.oom)
		s->mbx->answer_put(s->mb, name, uids, nums, nm, out.p, out.len);
	free(uids);
	free(nums);
	smsg_free(m, nm);
	imap_search_reply(s, tag, &out, "Thread");
}
