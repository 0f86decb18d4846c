/* The header cache beside each folder's index (ROOT/.imap/NAME/
 * postern.hcache): per message, the header fields pt_header_cached()
 * names, as header_fields() gives them, so ENVELOPE, SEARCH FROM/HEADER,
 * SORT and THREAD need not read and parse the mbox again (Dovecot answers
 * those from its dovecot.index.cache the same way).
 *
 * A record is keyed by UID and holds what identifies the message's text
 * apart from where it lies: its wire size, its From_ date, its header
 * octets without the storage headers and its body octets. A record is used
 * only while the folder's message of that UID still has all four, so an
 * outside writer (mailx, local delivery, Dovecot) that changes a message
 * costs exactly that message's record, while rewrites that only move
 * messages (an expunge, a flag rewrite, Dovecot's own rewrite) keep
 * every record. Another UIDVALIDITY drops the whole file.
 *
 * The file is written whole to a temporary name and renamed over (never
 * rewritten in place), at close and at a sync after HC_SAVE_EVERY; a load
 * maps it read-only and checks its head, a checksum over everything and
 * each record's bounds: anything odd and it is ignored (and replaced by
 * the next save). Two opens of a folder each save their own merge; the
 * last one wins, which only costs cached fields, never correctness.
 *
 * A record also keeps the SORT keys imap_sort derived from its fields
 * (sort_key_put: base subject, FROM key) and, per kind, the key's rank
 * among all keys of that kind in the file, numbered at each save: a
 * second session sorts 100 000 messages by those integers without
 * parsing a header or comparing a string (Dovecot keeps sort positions
 * in its index likewise). Keys follow the identity like the fields do;
 * a key learnt since the load has no rank and is compared as a string
 * (ranks agree with string order, so the two mix). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mbox_store.h"
#include "postern/fdio.h"
#include "postern/header.h"
#include "postern/log.h"

#define HC_MAGIC "PTHC0004"     /* 0004: SORT keys by i;unicode-casemap, the Message-ID index */
#define HC_NAME "postern.hcache"
#define HC_SAVE_EVERY 300      /* seconds: a long session saves at a sync */
#define HC_WINDOW (256 * 1024) /* read-ahead for a run of header misses or reads */

static int hc_enabled = 1;

/* The file: head, nrec records, nidx Message-ID index entries, blob. */
struct hc_head {
	char magic[8];
	uint32_t uidvalidity, nrec;
	uint64_t blob_len;
	uint64_t sum;                  /* of the records, the index, the blob */
	uint32_t nidx, pad;
};

/* The Message-ID index: per record, a hash of each id its Message-ID
 * fields hold as SEARCH HEADER compares them (ms_cache_msgid_keys), or
 * 0 for a record whose fields could hold any; ascending by (hash, rec).
 * A lookup gives candidates (the search still compares each), so a
 * hash collision costs a comparison, never an answer. */
struct hc_idx {
	uint32_t hash, rec;
};

struct hc_rec {
	uint32_t uid, len;             /* the block: [off, off+len) of the blob */
	uint64_t off;
	uint64_t size;                 /* pt_msg_info.size */
	int64_t date;                  /* pt_msg_info.internal_date */
	uint64_t hdr_len;              /* header octets less the storage headers */
	uint64_t body_len;
	/* Sort keys (PT_SKEY_*), each NUL-terminated, klen counting the NUL,
	 * HC_NOKEY when not known; in the file at [koff, +klen[0]) and
	 * then [.., +klen[1]) of the blob. rank: 0 none, else 1.. */
	uint64_t koff;
	uint32_t klen[PT_SKEY_KINDS];
	uint32_t rank[PT_SKEY_KINDS];
};

#define HC_NOKEY UINT32_MAX

/* A sort key learnt by this open (its own offsets per kind into kblob). */
struct hc_kadd {
	struct hc_rec id;              /* uid, identity and klen[] */
	uint64_t koff[PT_SKEY_KINDS];
};

struct ms_cache {
	uint32_t uidvalidity;
	/* The file as loaded (read-only mapping), records ascending by UID. */
	void *map;
	size_t map_len;
	const struct hc_rec *frec;
	size_t nfrec;
	const char *fblob;
	const struct hc_idx *fidx;
	size_t nfidx;
	/* Learnt by this open: records (off into blob) ascending by UID
	 * while sorted, else sorted on the next lookup. */
	struct hc_rec *add;
	size_t nadd, capadd;
	int sorted;
	struct pt_strbuf blob;
	size_t pending;                /* learnt since the last save */
	/* Where the last lookup ended: commands go through a folder in UID
	 * order, so the next one is usually the next entry. */
	size_t cur_m, cur_f, cur_a;
	time_t saved_at;
	struct pt_strbuf tmp;          /* a block that could not be kept */
	/* Headers read ahead (see window()): [win_off, +win_len) of the file
	 * with that identity. */
	struct pt_strbuf win;
	int64_t win_off;
	size_t win_len;
	ino_t win_ino;
	off_t win_size;
	struct timespec win_mtime;
	int advised;                   /* POSIX_FADV_SEQUENTIAL given for adv_ino */
	ino_t adv_ino;
	size_t cur_r;                  /* ms_cache_read's cursor in f->m */
	/* Sort keys learnt by this open, ascending by UID while ksorted. */
	struct hc_kadd *kadd;
	size_t nkadd, capkadd;
	int ksorted;
	struct pt_strbuf kblob;
	size_t cur_km, cur_kf, cur_ka; /* sort_key's own cursors */
	struct pt_strbuf ans;          /* answer_get's last answer */
};

static uint64_t
hc_sum(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	/* Eight octets a step: a 30 MB cache sums in a few ms. */
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, s, 8);
		h = (h ^ w) * 0x100000001b3ull;
		h ^= h >> 29;
		s += 8;
		n -= 8;
	}
	while (n--)
		h = (h ^ *s++) * 0x100000001b3ull;
	return h;
}

/* The same function of the octets as four interleaved lanes (the
 * multiplications of one lane no longer wait for the previous one's):
 * the load checks the whole cache file, 80 MB for 100k messages, at a
 * new session's first header search; a quarter of its time was this. */
#define HC_STEP(x, w) ((x) = ((x) ^ (w)) * 0x100000001b3ull, (x) ^= (x) >> 29)
static uint64_t
hc_sum4(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	/* Four variables, not an array: kept in registers. */
	uint64_t a = h, b = h ^ 0x9e3779b97f4a7c15ull, c = h ^ 0xc2b2ae3d27d4eb4full, d = h ^ 0x165667b19e3779f9ull;
	while (n >= 32) {
		uint64_t w0, w1, w2, w3;
		memcpy(&w0, s, 8);
		memcpy(&w1, s + 8, 8);
		memcpy(&w2, s + 16, 8);
		memcpy(&w3, s + 24, 8);
		HC_STEP(a, w0);
		HC_STEP(b, w1);
		HC_STEP(c, w2);
		HC_STEP(d, w3);
		s += 32;
		n -= 32;
	}
	h = a ^ (b << 17 | b >> 47) ^ (c << 31 | c >> 33) ^ (d << 47 | d >> 17);
	return hc_sum(h, s, n);
}

/* The file's sum: its three parts one after the other. */
static uint64_t
file_sum(const void *rec, size_t rlen, const void *idx, size_t ilen, const void *blob, size_t blen)
{
	uint64_t h = hc_sum4(0xcbf29ce484222325ull, rec, rlen);
	h = hc_sum4(h, idx, ilen);
	return hc_sum4(h, blob, blen);
}

/* The text identity of message r (see the top of the file). */
static void
rec_ident(const struct ms_msg *r, struct hc_rec *out)
{
	out->uid = r->info.uid;
	out->size = r->info.size;
	out->date = (int64_t)r->info.internal_date;
	out->hdr_len = (uint64_t)(r->body_off - r->hdr_off) - r->meta_len;
	out->body_len = (uint64_t)(r->end - r->body_off);
	out->koff = 0;
	for (int k = 0; k < PT_SKEY_KINDS; k++) {
		out->klen[k] = HC_NOKEY;
		out->rank[k] = 0;
	}
}

static int
rec_matches(const struct hc_rec *c, const struct ms_msg *r)
{
	struct hc_rec id;
	rec_ident(r, &id);
	return c->uid == id.uid && c->size == id.size && c->date == id.date &&
	       c->hdr_len == id.hdr_len && c->body_len == id.body_len;
}

static void
drop_file(struct ms_cache *c)
{
	if (c->map != NULL)
		munmap(c->map, c->map_len);
	c->map = NULL;
	c->map_len = 0;
	c->frec = NULL;
	c->nfrec = 0;
	c->fblob = NULL;
	c->fidx = NULL;
	c->nfidx = 0;
}

static void
drop_added(struct ms_cache *c)
{
	free(c->add);
	c->add = NULL;
	c->nadd = c->capadd = 0;
	c->sorted = 1;
	pt_strbuf_free(&c->blob);
	memset(&c->blob, 0, sizeof c->blob);
	free(c->kadd);
	c->kadd = NULL;
	c->nkadd = c->capkadd = 0;
	c->ksorted = 1;
	pt_strbuf_free(&c->kblob);
	memset(&c->kblob, 0, sizeof c->kblob);
	c->pending = 0;
}

static void
cache_path(const struct ms_folder *f, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s/%s", f->idxdir, HC_NAME);
}

/* Map the file when it is sound and of this UIDVALIDITY; else leave the
 * cache empty. */
static void
load(struct ms_cache *c, const struct ms_folder *f)
{
	char path[MS_PATH_MAX + 32];
	cache_path(f, path, sizeof path);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	struct stat sb;
	struct hc_head h;
	void *map = MAP_FAILED;
	size_t len = 0;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size < sizeof h ||
	    (uint64_t)sb.st_size > SIZE_MAX)
		goto bad;
	len = (size_t)sb.st_size;
	map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		goto bad;
	memcpy(&h, map, sizeof h);
	if (memcmp(h.magic, HC_MAGIC, 8) != 0 || h.uidvalidity != f->uidvalidity ||
	    h.nrec > (len - sizeof h) / sizeof(struct hc_rec) ||
	    h.nidx > (len - sizeof h - (uint64_t)h.nrec * sizeof(struct hc_rec)) / sizeof(struct hc_idx) ||
	    h.blob_len != len - sizeof h - (uint64_t)h.nrec * sizeof(struct hc_rec) -
	                  (uint64_t)h.nidx * sizeof(struct hc_idx))
		goto bad;
	const struct hc_rec *rec = (const struct hc_rec *)(const void *)((const char *)map + sizeof h);
	const struct hc_idx *idx = (const struct hc_idx *)(const void *)(rec + h.nrec);
	const char *blob = (const char *)(idx + h.nidx);
	if (file_sum(rec, (size_t)h.nrec * sizeof *rec, idx, (size_t)h.nidx * sizeof *idx, blob,
	             (size_t)h.blob_len) != h.sum)
		goto bad;
	for (uint32_t i = 0; i < h.nidx; i++)
		if (idx[i].rec >= h.nrec || (i && (idx[i].hash < idx[i - 1].hash ||
		    (idx[i].hash == idx[i - 1].hash && idx[i].rec <= idx[i - 1].rec))))
			goto bad;
	for (uint32_t i = 0; i < h.nrec; i++) {
		const struct hc_rec *r = &rec[i];
		if (r->uid == 0 || (i && r->uid <= rec[i - 1].uid) || r->len < 2 ||
		    r->len > HC_BLOCK_MAX || r->off > h.blob_len || r->len > h.blob_len - r->off ||
		    memcmp(blob + r->off + r->len - 2, "\r\n", 2) != 0)
			goto bad;
		/* Keys: inside the blob, each ending in its NUL; a rank only
		 * with a key. */
		uint64_t at = r->koff;
		if (at > h.blob_len)
			goto bad;
		for (int k = 0; k < PT_SKEY_KINDS; k++) {
			if (r->klen[k] == HC_NOKEY) {
				if (r->rank[k] != 0)
					goto bad;
				continue;
			}
			if (r->klen[k] < 1 || r->klen[k] > HC_BLOCK_MAX + 1 || r->klen[k] > h.blob_len - at ||
			    blob[at + r->klen[k] - 1] != '\0')
				goto bad;
			at += r->klen[k];
		}
	}
	close(fd);
	c->map = map;
	c->map_len = len;
	c->frec = rec;
	c->nfrec = h.nrec;
	c->fblob = blob;
	c->fidx = idx;
	c->nfidx = h.nidx;
	return;
bad:
	pt_info("mbox: header cache %s is not usable, rebuilding it", path);
	if (map != MAP_FAILED)
		munmap(map, len);
	close(fd);
}

static struct ms_cache *
cache_get(struct pt_mbox *mb)
{
	struct ms_cache *c = mb->hc;
	if (c != NULL && c->uidvalidity == mb->f.uidvalidity)
		return c;
	if (c != NULL) {
		/* A new UIDVALIDITY: nothing learnt holds any more. */
		drop_file(c);
		drop_added(c);
	} else {
		if ((c = calloc(1, sizeof *c)) == NULL)
			return NULL;
		c->sorted = 1;
		c->ksorted = 1;
		c->saved_at = time(NULL);
		mb->hc = c;
	}
	c->uidvalidity = mb->f.uidvalidity;
	load(c, &mb->f);
	return c;
}

static int
cmp_rec(const void *a, const void *b)
{
	const struct hc_rec *x = a, *y = b;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static size_t
rec_find(const struct hc_rec *v, size_t n, uint32_t uid)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo].uid == uid ? lo : (size_t)-1;
}

/* The learnt record of uid, or (size_t)-1. */
static size_t
added_find(struct ms_cache *c, uint32_t uid)
{
	if (!c->sorted) {
		/* Only the newest of a UID is kept (see learn): no ties. */
		qsort(c->add, c->nadd, sizeof *c->add, cmp_rec);
		c->sorted = 1;
	}
	return rec_find(c->add, c->nadd, uid);
}

/* Message uid of the folder / record uid of a list ascending by UID,
 * trying *cur and the one after it before searching; *cur is left after
 * the entry found. */
static size_t
msg_at(const struct ms_folder *f, size_t *cur, uint32_t uid)
{
	size_t r = (size_t)-1;
	if (*cur < f->n && f->m[*cur].info.uid == uid)
		r = *cur;
	else if (*cur + 1 < f->n && f->m[*cur + 1].info.uid == uid)
		r = *cur + 1;
	else if (*cur > 0 && *cur - 1 < f->n && f->m[*cur - 1].info.uid == uid)
		r = *cur - 1;   /* the same one again (sort_key, then its put) */
	else
		r = ms_folder_find(f, uid);
	if (r != (size_t)-1)
		*cur = r + 1;
	return r;
}

static size_t
rec_at(const struct hc_rec *v, size_t n, size_t *cur, uint32_t uid)
{
	size_t r = (size_t)-1;
	if (*cur < n && v[*cur].uid == uid)
		r = *cur;
	else if (*cur + 1 < n && v[*cur + 1].uid == uid)
		r = *cur + 1;
	else if (n && v[n - 1].uid >= uid)
		r = rec_find(v, n, uid);   /* (past the last: none, no search) */
	if (r != (size_t)-1)
		*cur = r + 1;
	return r;
}

/* raw: hdr is as stored (LF line ends), written in its wire form. */
static int
extract(const char *hdr, size_t len, struct pt_strbuf *out, int raw)
{
	struct pt_hdr_iter it;
	struct pt_hdr_field fl;
	size_t start = out->len;
	pt_hdr_iter_init(&it, hdr, len, 0);
	while (pt_hdr_next(&it, &fl)) {
		if (!pt_header_cached(fl.name, fl.name_len))
			continue;
		/* Kept as it is, so HEADER.FIELDS gives the same octets; a last
		 * field without its line end is left to a full read. */
		if (fl.raw_len < 2 - (size_t)raw || fl.raw[fl.raw_len - 1] != '\n' ||
		    (!raw && fl.raw[fl.raw_len - 2] != '\r'))
			return -1;
		/* The wire form: each LF without a CR before it (in the field)
		 * gets one, as ms_wire_form writes it. */
		if (pt_strbuf_reserve(out, 2 * fl.raw_len) != 0)
			return -1;
		const char *q = fl.raw, *e = fl.raw + fl.raw_len;
		char *o = out->p + out->len;
		while (q < e) {
			const char *nl = memchr(q, '\n', (size_t)(e - q));
			size_t k = (size_t)((nl ? nl : e) - q);
			memcpy(o, q, k);
			o += k;
			if (nl == NULL)
				break;
			if (nl == fl.raw || nl[-1] != '\r')
				*o++ = '\r';
			*o++ = '\n';
			q = nl + 1;
		}
		out->len = (size_t)(o - out->p);
		out->p[out->len] = '\0';
		if (out->len - start > HC_BLOCK_MAX - 2)
			return -1;
	}
	pt_strbuf_put(out, "\r\n", 2);
	return out->oom ? -1 : 0;
}

int
ms_cache_extract(const char *hdr, size_t len, struct pt_strbuf *out)
{
	return extract(hdr, len, out, 0);
}

int
ms_cache_extract_raw(const char *hdr, size_t len, struct pt_strbuf *out)
{
	return extract(hdr, len, out, 1);
}

/* Keep block [p, p+len) as uid's (message r). The returned pointer: the
 * kept copy, valid until the next call. */
static const char *
learn(struct ms_cache *c, const struct ms_msg *r, const char *p, size_t len)
{
	/* Learnt in UID order (a command's pass): past the last, no search. */
	size_t k = c->sorted && (c->nadd == 0 || c->add[c->nadd - 1].uid < r->info.uid) ? (size_t)-1 :
	           added_find(c, r->info.uid);
	struct hc_rec nr;
	rec_ident(r, &nr);
	nr.len = (uint32_t)len;
	nr.off = c->blob.len;
	size_t before = c->blob.len;
	pt_strbuf_put(&c->blob, p, len);
	if (c->blob.oom)
		return NULL;
	if (k != (size_t)-1) {
		c->add[k] = nr;   /* the old block's octets stay unused */
	} else {
		if (c->nadd == c->capadd) {
			size_t cap = c->capadd ? c->capadd * 2 : 1024;
			struct hc_rec *v = realloc(c->add, cap * sizeof *v);
			if (v == NULL) {
				c->blob.len = before;
				return NULL;
			}
			c->add = v;
			c->capadd = cap;
		}
		if (c->nadd && c->add[c->nadd - 1].uid > nr.uid)
			c->sorted = 0;
		c->add[c->nadd++] = nr;
	}
	c->pending++;
	return c->blob.p + nr.off;
}

/* The learnt key record of uid, or (size_t)-1. */
static int
cmp_kadd(const void *a, const void *b)
{
	const struct hc_kadd *x = a, *y = b;
	return x->id.uid < y->id.uid ? -1 : x->id.uid > y->id.uid;
}

static size_t
kadd_find(struct ms_cache *c, uint32_t uid)
{
	if (!c->ksorted) {
		/* One record per UID (see ms_cache_sort_key_put): no ties. */
		qsort(c->kadd, c->nkadd, sizeof *c->kadd, cmp_kadd);
		c->ksorted = 1;
	}
	size_t lo = 0, hi = c->nkadd;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->kadd[mid].id.uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < c->nkadd && c->kadd[lo].id.uid == uid ? lo : (size_t)-1;
}

/* Ranks of out[0..n)'s keys, kind by kind: equal keys one rank, in
 * strcmp order (what imap_sort compares). */
static const char *rank_base;
static const struct hc_rec *rank_recs;
static int rank_kind;

static const char *
rank_key(const struct hc_rec *r, int kind)
{
	uint64_t at = r->koff;
	for (int k = 0; k < kind; k++)
		if (r->klen[k] != HC_NOKEY)
			at += r->klen[k];
	return rank_base + at;
}

static int
cmp_rank(const void *pa, const void *pb)
{
	const struct hc_rec *a = &rank_recs[*(const uint32_t *)pa], *b = &rank_recs[*(const uint32_t *)pb];
	return strcmp(rank_key(a, rank_kind), rank_key(b, rank_kind));
}

static void
rank_keys(struct hc_rec *out, size_t n, const char *blob)
{
	uint32_t *ord = malloc((n ? n : 1) * sizeof *ord);
	if (ord == NULL)
		return;   /* no ranks: keys compare as strings */
	rank_base = blob;
	rank_recs = out;
	for (int k = 0; k < PT_SKEY_KINDS; k++) {
		size_t m = 0;
		for (size_t i = 0; i < n; i++)
			if (out[i].klen[k] != HC_NOKEY)
				ord[m++] = (uint32_t)i;
		rank_kind = k;
		qsort(ord, m, sizeof *ord, cmp_rank);
		uint32_t rank = 0;
		for (size_t i = 0; i < m; i++) {
			if (i == 0 || cmp_rank(&ord[i - 1], &ord[i]) != 0)
				rank++;
			out[ord[i]].rank[k] = rank;
		}
	}
	free(ord);
}

int
ms_cache_sort_key(struct pt_mbox *mb, uint32_t uid, int kind, const char **key, uint32_t *rank)
{
	*key = NULL;
	*rank = 0;
	if (!hc_enabled || kind < 0 || kind >= PT_SKEY_KINDS)
		return 0;
	struct ms_cache *c = cache_get(mb);
	if (c == NULL)
		return 0;
	const struct ms_folder *f = &mb->f;
	size_t i = msg_at(f, &c->cur_km, uid);
	if (i == (size_t)-1)
		return 0;
	const struct ms_msg *r = &f->m[i];
	if (c->nkadd) {
		size_t k;
		if (c->ksorted && c->cur_ka < c->nkadd && c->kadd[c->cur_ka].id.uid == uid)
			k = c->cur_ka;
		else if (c->ksorted && c->kadd[c->nkadd - 1].id.uid < uid)
			k = (size_t)-1;   /* past the last learnt */
		else
			k = kadd_find(c, uid);
		if (k != (size_t)-1) {
			c->cur_ka = k + 1;
			if (c->kadd[k].id.klen[kind] != HC_NOKEY && rec_matches(&c->kadd[k].id, r)) {
				*key = c->kblob.p + c->kadd[k].koff[kind];
				return 1;
			}
		}
	}
	size_t k = rec_at(c->frec, c->nfrec, &c->cur_kf, uid);
	if (k == (size_t)-1 || c->frec[k].klen[kind] == HC_NOKEY || !rec_matches(&c->frec[k], r))
		return 0;
	rank_base = c->fblob;
	*key = rank_key(&c->frec[k], kind);
	*rank = c->frec[k].rank[kind];
	return 1;
}

void
ms_cache_sort_key_put(struct pt_mbox *mb, uint32_t uid, int kind, const char *key, size_t len)
{
	if (!hc_enabled || kind < 0 || kind >= PT_SKEY_KINDS || len > HC_BLOCK_MAX)
		return;
	struct ms_cache *c = cache_get(mb);
	size_t i = c != NULL ? msg_at(&mb->f, &c->cur_km, uid) : (size_t)-1;
	if (i == (size_t)-1)
		return;
	const struct ms_msg *r = &mb->f.m[i];
	/* Keys come in UID order (a SORT's pass): past the last one learnt
	 * is new, no search. */
	size_t k = c->nkadd == 0 || (c->ksorted && c->kadd[c->nkadd - 1].id.uid < uid) ? (size_t)-1 :
	           c->ksorted && c->kadd[c->nkadd - 1].id.uid == uid ? c->nkadd - 1 : kadd_find(c, uid);
	if (k != (size_t)-1 && !rec_matches(&c->kadd[k].id, r)) {
		/* Another text under that UID: the old keys go. */
		rec_ident(r, &c->kadd[k].id);
	} else if (k == (size_t)-1) {
		if (c->nkadd == c->capkadd) {
			size_t cap = c->capkadd ? c->capkadd * 2 : 1024;
			struct hc_kadd *v = realloc(c->kadd, cap * sizeof *v);
			if (v == NULL)
				return;
			c->kadd = v;
			c->capkadd = cap;
		}
		if (c->nkadd && c->kadd[c->nkadd - 1].id.uid > uid)
			c->ksorted = 0;
		k = c->nkadd++;
		memset(&c->kadd[k], 0, sizeof c->kadd[k]);
		rec_ident(r, &c->kadd[k].id);
	}
	size_t before = c->kblob.len;
	pt_strbuf_put(&c->kblob, key, len);
	pt_strbuf_put(&c->kblob, "", 1);
	if (c->kblob.oom) {
		c->kblob.len = before;
		c->kblob.oom = 0;
		return;
	}
	c->kadd[k].koff[kind] = before;
	c->kadd[k].id.klen[kind] = (uint32_t)(len + 1);
	c->pending++;
}

/* ---- answers (postern.answer.NAME beside the cache) ----
 * head, then the answer's octets. fp: over the UIDVALIDITY and each
 * message's UID, number and text identity (see the top), so the answer
 * is only given back for the same messages as they were. */
#define ANS_MAGIC "PTAN0002"    /* 0002: THREAD subjects by i;unicode-casemap */
struct ans_head {
	char magic[8];
	uint32_t uidvalidity, pad;
	uint64_t n, fp, len, sum;
};

/* 0 with the fingerprint and the file's path, -1 when name is not one
 * or a message is not the folder's. */
static int
answer_fp(struct pt_mbox *mb, const char *name, const uint32_t *uids, const uint32_t *nums, size_t n,
          uint64_t *fp, char *path, size_t pathlen)
{
	const struct ms_folder *f = &mb->f;
	size_t nl = strlen(name);
	if (!hc_enabled || nl == 0 || nl > 32 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != nl ||
	    f->idxdir == NULL)
		return -1;
	snprintf(path, pathlen, "%s/postern.answer.%s", f->idxdir, name);
	uint64_t h = hc_sum(0xcbf29ce484222325ull, &f->uidvalidity, sizeof f->uidvalidity);
	size_t cur = 0;
	for (size_t k = 0; k < n; k++) {
		size_t i = msg_at(f, &cur, uids[k]);
		if (i == (size_t)-1)
			return -1;
		struct hc_rec id;
		rec_ident(&f->m[i], &id);
		uint64_t w[6] = { id.uid, nums[k], id.size, (uint64_t)id.date, id.hdr_len, id.body_len };
		h = hc_sum(h, w, sizeof w);
	}
	*fp = h;
	return 0;
}

int
ms_cache_answer_get(struct pt_mbox *mb, const char *name, const uint32_t *uids, const uint32_t *nums,
                    size_t n, const char **data, size_t *len)
{
	char path[MS_PATH_MAX + 64];
	uint64_t fp;
	*data = NULL;
	*len = 0;
	struct ms_cache *c = hc_enabled ? cache_get(mb) : NULL;
	if (c == NULL || answer_fp(mb, name, uids, nums, n, &fp, path, sizeof path) != 0)
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	struct ans_head h;
	struct stat sb;
	int ok = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
	         pt_read_full(fd, &h, sizeof h) == (ssize_t)sizeof h && memcmp(h.magic, ANS_MAGIC, 8) == 0 &&
	         h.uidvalidity == mb->f.uidvalidity && h.n == n && h.fp == fp &&
	         (uint64_t)sb.st_size == sizeof h + h.len && h.len <= (64u << 20);
	c->ans.len = 0;
	c->ans.oom = 0;
	if (ok && pt_strbuf_reserve(&c->ans, (size_t)h.len + 1) == 0 &&
	    pt_read_full(fd, c->ans.p, (size_t)h.len) == (ssize_t)h.len &&
	    hc_sum(0xcbf29ce484222325ull, c->ans.p, (size_t)h.len) == h.sum) {
		c->ans.len = (size_t)h.len;
		*data = c->ans.p;
		*len = c->ans.len;
	}
	close(fd);
	return *data != NULL;
}

void
ms_cache_answer_put(struct pt_mbox *mb, const char *name, const uint32_t *uids, const uint32_t *nums,
                    size_t n, const char *data, size_t len)
{
	char path[MS_PATH_MAX + 64], tmp[MS_PATH_MAX + 96];
	struct ans_head h;
	memset(&h, 0, sizeof h);
	if (answer_fp(mb, name, uids, nums, n, &h.fp, path, sizeof path) != 0 ||
	    ms_mkdirs(mb->f.idxdir, 1) != 0)
		return;
	memcpy(h.magic, ANS_MAGIC, 8);
	h.uidvalidity = mb->f.uidvalidity;
	h.n = n;
	h.len = len;
	h.sum = hc_sum(0xcbf29ce484222325ull, data, len);
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	int rc = pt_write_all(fd, &h, sizeof h);
	if (rc == 0 && len)
		rc = pt_write_all(fd, data, len);
	if (close(fd) != 0)
		rc = -1;
	/* Like the cache: no fsync, a torn file fails its length or sum. */
	if (rc != 0 || rename(tmp, path) != 0)
		unlink(tmp);
}

void
ms_cache_unlink(const char *dir)
{
	char p[MS_PATH_MAX + 64];
	snprintf(p, sizeof p, "%s/%s", dir, HC_NAME);
	unlink(p);
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "postern.answer.", 15) != 0)
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
}

static void
drop_window(struct ms_cache *c)
{
	pt_strbuf_free(&c->win);
	memset(&c->win, 0, sizeof c->win);
	c->win_len = 0;
}

/* Where message i's From_ line up to its body (whole: to its end) lies
 * in memory, read with the messages after it while they fit in
 * HC_WINDOW (one pread for a run of small messages instead of one each,
 * and one check of the file's state per run, not two stats a message),
 * or NULL when the file is not as f->m describes (then read() catches
 * up), or for whole, when the message alone is bigger than the window.
 * The window lasts while f's file state does, and to the next sync. */
static const char *
window(struct ms_cache *c, const struct ms_folder *f, size_t i, int whole)
{
	const struct ms_msg *r = &f->m[i];
	int64_t need = whole ? r->end : r->body_off;
	if (c->win_len && r->from_off >= c->win_off && need <= c->win_off + (int64_t)c->win_len &&
	    f->known_valid && c->win_ino == f->known.st_ino && c->win_size == f->known.st_size &&
	    c->win_mtime.tv_sec == f->known.st_mtim.tv_sec &&
	    c->win_mtime.tv_nsec == f->known.st_mtim.tv_nsec)
		return c->win.p + (r->from_off - c->win_off);
	if (whole && r->end - r->from_off > HC_WINDOW)
		return NULL;
	drop_window(c);
	if (!ms_folder_current((struct ms_folder *)f))
		return NULL;
	size_t j = i;
	while (j + 1 < f->n && f->m[j + 1].end - r->from_off <= HC_WINDOW)
		j++;
	size_t n = (size_t)(f->m[j].end - r->from_off);
	if (j == i && !whole && n > HC_WINDOW)
		n = (size_t)(r->body_off - r->from_off);   /* a big message: its header */
	if (pt_strbuf_reserve(&c->win, n) != 0)
		return NULL;
	if (!c->advised || c->adv_ino != f->known.st_ino) {
		/* Walks go through the file in order: a larger read-ahead. */
		(void)posix_fadvise(f->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
		c->advised = 1;
		c->adv_ino = f->known.st_ino;
	}
	if (pt_pread_full(f->fd, c->win.p, n, r->from_off) != (ssize_t)n) {
		drop_window(c);
		return NULL;
	}
	c->win_off = r->from_off;
	c->win_len = n;
	c->win_ino = f->known.st_ino;
	c->win_size = f->known.st_size;
	c->win_mtime = f->known.st_mtim;
	return c->win.p;
}

/* The cache object without loading the file (a read needs only the
 * window): uidvalidity 0 makes cache_get load it at its first use. */
static struct ms_cache *
cache_obj(struct pt_mbox *mb)
{
	if (mb->hc == NULL) {
		struct ms_cache *c = calloc(1, sizeof *c);
		if (c == NULL)
			return NULL;
		c->sorted = 1;
		c->ksorted = 1;
		c->saved_at = time(NULL);
		mb->hc = c;
	}
	return mb->hc;
}

int
ms_cache_read(struct pt_mbox *mb, uint32_t uid, struct pt_msg_text *out, struct pt_status *st)
{
	struct ms_folder *f = &mb->f;
	struct ms_cache *c = cache_obj(mb);
	if (c == NULL || f->fd < 0 || !f->known_valid)
		return 0;
	/* Each read still checks the file (one stat): a reader that does not
	 * sync between reads (POP3's RETR) must see another session's
	 * expunge as the full path does. */
	if (!ms_folder_text_current(f))
		return 0;
	size_t i = msg_at(f, &c->cur_r, uid);
	if (i == (size_t)-1 || ms_mbox_find(mb, uid) == (size_t)-1)
		return 0;
	const char *at = window(c, f, i, 1);
	if (at == NULL)
		return 0;
	const struct ms_msg *r = &f->m[i];
	size_t n = (size_t)(r->end - r->from_off);
	if (n < 5 || memcmp(at, "From ", 5) != 0) {
		drop_window(c);
		return 0;
	}
	struct pt_strbuf wire = { 0 };
	size_t skip = (size_t)(r->hdr_off - r->from_off);
	/* Room for the CRs of a message of bare LFs at once (no regrowth). */
	if (pt_strbuf_reserve(&wire, n + n / 16 + 64) != 0 ||
	    ms_wire_form(at + skip, n - skip, &wire, &out->hdr_len, (r->state & MS_RD) != 0) != 0 ||
	    wire.oom) {
		pt_strbuf_free(&wire);
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return -1;
	}
	out->data = wire.p;
	out->len = wire.len;
	out->priv = wire.p;
	return 1;
}

void
mbox_header_cache_enable(int on)
{
	hc_enabled = on;
}

int
ms_cache_header(struct pt_mbox *mb, uint32_t uid, const char **hdr, size_t *len,
                struct pt_status *st)
{
	*hdr = NULL;
	*len = 0;
	if (!hc_enabled)
		return 0;   /* callers read the message, as before the cache */
	struct ms_folder *f = &mb->f;
	struct ms_cache *c = cache_get(mb);
	size_t i = c != NULL ? msg_at(f, &c->cur_m, uid) : ms_folder_find(f, uid);
	/* Only messages of the folder's list are asked for (the caller's
	 * view is no newer than it): a record that matches one answers. */
	if (c != NULL && i != (size_t)-1) {
		const struct ms_msg *r = &f->m[i];
		size_t k = (size_t)-1;
		if (c->nadd) {
			if (!c->sorted)
				(void)added_find(c, 0);
			k = rec_at(c->add, c->nadd, &c->cur_a, uid);
		}
		if (k != (size_t)-1 && rec_matches(&c->add[k], r)) {
			*hdr = c->blob.p + c->add[k].off;
			*len = c->add[k].len;
			return 1;
		}
		k = rec_at(c->frec, c->nfrec, &c->cur_f, uid);
		if (k != (size_t)-1 && rec_matches(&c->frec[k], r)) {
			*hdr = c->fblob + c->frec[k].off;
			*len = c->frec[k].len;
			return 1;
		}
	}
	/* Not known: the header alone when the file is as the list says
	 * (no need to read the body), else through read (which catches up). */
	struct pt_strbuf wire = { 0 }, blk = { 0 };
	struct pt_msg_text t = { 0 };
	const char *h = NULL;
	size_t hlen = 0;
	int rc = -1, have_t = 0;
	const char *at = i != (size_t)-1 && c != NULL && f->fd >= 0 &&
	                 ms_mbox_find(mb, uid) != (size_t)-1 ? window(c, f, i, 0) : NULL;
	if (at != NULL) {
		const struct ms_msg *r = &f->m[i];
		size_t n = (size_t)(r->body_off - r->from_off);
		if (n < 5 || memcmp(at, "From ", 5) != 0) {
			drop_window(c);
			pt_status_set(st, 451, "", "Mailbox changed meanwhile, try again");
			goto out;
		}
		size_t skip = (size_t)(r->hdr_off - r->from_off);
		if (!(r->state & MS_RD)) {
			/* The cached fields straight from the mbox's header (no
			 * wire form of all of it first); mboxrd quoting aside. */
			if (ms_cache_extract_raw(at + skip, n - skip, &blk) != 0) {
				if (blk.oom) {
					pt_status_set(st, 451, "SERVERBUG", "Out of memory");
					goto out;
				}
				rc = 0;
				goto out;
			}
			goto extracted;
		}
		if (ms_wire_form(at + skip, n - skip, &wire, &hlen, (r->state & MS_RD) != 0) != 0 ||
		    wire.oom) {
			pt_status_set(st, 451, "SERVERBUG", "Out of memory");
			goto out;
		}
		h = wire.p;
		if (hlen > wire.len)
			hlen = wire.len;
	} else {
		if (ms_mbox_read(mb, uid, &t, st) != 0)
			goto out;
		have_t = 1;
		h = t.data;
		hlen = t.hdr_len;
		i = ms_folder_find(f, uid);
	}
	if (ms_cache_extract(h ? h : "", hlen, &blk) != 0) {
		rc = 0;
		goto out;
	}
extracted:;
	const char *kept = c != NULL && i != (size_t)-1 ? learn(c, &f->m[i], blk.p, blk.len) : NULL;
	if (kept == NULL) {
		/* Not kept (no memory for it): answer from a copy. */
		if (c == NULL && (mb->hc = c = calloc(1, sizeof *c)) == NULL) {
			pt_status_set(st, 451, "SERVERBUG", "Out of memory");
			goto out;
		}
		pt_strbuf_free(&c->tmp);
		c->tmp = blk;
		memset(&blk, 0, sizeof blk);
		kept = c->tmp.p;
		*len = c->tmp.len;
	} else {
		*len = blk.len;
	}
	*hdr = kept;
	rc = 1;
out:
	if (have_t)
		ms_mbox_release(mb, &t);
	pt_strbuf_free(&wire);
	pt_strbuf_free(&blk);
	return rc;
}

/* ---- the Message-ID index ---- */

uint32_t
ms_cache_msgid_hash(const char *key, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)key[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (unsigned char)(ch + 32);
		h = (h ^ ch) * 16777619u;
	}
	return h ? h : 1;
}

/* SEARCH HEADER compares a field's value trimmed of blanks, in place,
 * when it is one line without an encoded word ("=?"); else unfolded and
 * decoded (imap_search.c's match_header). An id "<...>" (one '>', at
 * its end) is a substring of a text exactly when, at one of the text's
 * '<', the run up to the first '>' after it is that id: those runs are
 * the keys. A value not so plain could hold any id after its decoding,
 * and one with other than ASCII characters could under i;unicode-casemap
 * (a fullwidth '<', a Kelvin sign for 'k'): key 0, a candidate for every
 * lookup. */
/* Octets of keys one Message-ID field may hash: a real one holds one id
 * of well under a line (RFC 5322: 998). */
#define MSGID_HASH_BUDGET 65536

void
ms_cache_msgid_keys(const char *blk, size_t len, void (*add)(void *arg, uint32_t h), void *arg)
{
	struct pt_hdr_iter it;
	struct pt_hdr_field fl;
	pt_hdr_iter_init(&it, blk, len, 0);
	while (pt_hdr_next(&it, &fl)) {
		if (!pt_hdr_name_is(&fl, "message-id"))
			continue;
		const char *v = fl.value;
		size_t a = 0, b = fl.value_len;
		while (a < b && (v[a] == ' ' || v[a] == '\t'))
			a++;
		while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
			b--;
		int plain = memchr(v + a, '\r', b - a) == NULL && memchr(v + a, '\n', b - a) == NULL;
		for (size_t k = a; plain && k < b; k++)
			plain = !((unsigned char)v[k] >= 0x80 || (v[k] == '=' && k + 1 < b && v[k + 1] == '?'));
		if (!plain) {
			add(arg, 0);
			continue;
		}
		/* The first '>' after a '<' serves every later '<' before it,
		 * so each octet is searched once; the keys' octets hashed are
		 * bounded too ("<<<<...>" would hash O(n^2) of them): past the
		 * bound the field stands for any id, as a decoded one does. */
		const char *gt = NULL;
		size_t hashed = 0;
		for (size_t k = a; k < b; k++) {
			if (v[k] != '<')
				continue;
			if (gt == NULL || gt < v + k) {
				gt = memchr(v + k, '>', b - k);
				if (gt == NULL)
					break;   /* no '>' after this '<', nor after a later one */
			}
			size_t klen = (size_t)(gt - (v + k)) + 1;
			hashed += klen;
			if (hashed > MSGID_HASH_BUDGET) {
				add(arg, 0);
				break;
			}
			add(arg, ms_cache_msgid_hash(v + k, klen));
		}
	}
}

struct idx_acc {
	struct hc_idx *v;
	size_t n, cap;
	uint32_t rec;
	int oom;
};

static void
idx_add(void *arg, uint32_t h)
{
	struct idx_acc *a = arg;
	if (a->oom)
		return;
	/* A repeated id is dropped once the entries are sorted:
	 * looking back here for one would be O(k^2) in a record's k ids. */
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 4096;
		struct hc_idx *v = realloc(a->v, cap * sizeof *v);
		if (v == NULL) {
			a->oom = 1;
			return;
		}
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = (struct hc_idx){ h, a->rec };
}

static int
cmp_idx(const void *pa, const void *pb)
{
	const struct hc_idx *a = pa, *b = pb;
	if (a->hash != b->hash)
		return a->hash < b->hash ? -1 : 1;
	return a->rec < b->rec ? -1 : a->rec > b->rec;
}

static int
cmp_u32(const void *pa, const void *pb)
{
	uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
	return a < b ? -1 : a > b;
}

/* Entries of hash h: [*lo, *hi) of the file's index. */
static void
idx_range(const struct ms_cache *c, uint32_t h, size_t *lo, size_t *hi)
{
	size_t a = 0, b = c->nfidx;
	while (a < b) {
		size_t mid = a + (b - a) / 2;
		if (c->fidx[mid].hash < h)
			a = mid + 1;
		else
			b = mid;
	}
	*lo = a;
	while (a < c->nfidx && c->fidx[a].hash == h)
		a++;
	*hi = a;
}

int
ms_cache_msgid(struct pt_mbox *mb, const char *key, size_t len, uint32_t **uids, size_t *n)
{
	*uids = NULL;
	*n = 0;
	if (!hc_enabled || len < 2 || key[0] != '<' || key[len - 1] != '>' || memchr(key, '>', len - 1) != NULL)
		return 0;
	struct ms_cache *c = cache_get(mb);
	const struct ms_folder *f = &mb->f;
	if (c == NULL || c->nfrec == 0)
		return 0;   /* nothing kept: every message is to be read anyway */
	size_t lo, hi, lo0, hi0;
	idx_range(c, ms_cache_msgid_hash(key, len), &lo, &hi);
	idx_range(c, 0, &lo0, &hi0);
	/* The file's records that name the id (or could), and every message
	 * of the list the file has no record of its text for (new, changed,
	 * or dropped from the file): those are looked at as before. */
	size_t cap = (hi - lo) + (hi0 - lo0) + 16, m = 0;
	uint32_t *v = malloc(cap * sizeof *v);
	if (v == NULL)
		return 0;
	for (size_t k = lo; k < hi; k++)
		v[m++] = c->frec[c->fidx[k].rec].uid;
	for (size_t k = lo0; k < hi0; k++)
		v[m++] = c->frec[c->fidx[k].rec].uid;
	size_t b = 0;
	for (size_t i = 0; i < f->n; i++) {
		const struct ms_msg *r = &f->m[i];
		while (b < c->nfrec && c->frec[b].uid < r->info.uid)
			b++;
		if (b < c->nfrec && rec_matches(&c->frec[b], r))
			continue;
		if (m == cap) {
			cap *= 2;
			uint32_t *nv = realloc(v, cap * sizeof *nv);
			if (nv == NULL) {
				free(v);
				return 0;
			}
			v = nv;
		}
		v[m++] = r->info.uid;
	}
	qsort(v, m, sizeof *v, cmp_u32);
	size_t u = 0;
	for (size_t k = 0; k < m; k++)
		if (u == 0 || v[k] != v[u - 1])
			v[u++] = v[k];
	*uids = v;
	*n = u;
	return 1;
}

/* Write the merge of the file's and the learnt records that still match
 * the folder's messages; then serve from the new file. */
static int
save(struct pt_mbox *mb, struct ms_cache *c)
{
	const struct ms_folder *f = &mb->f;
	char path[MS_PATH_MAX + 32], tmp[MS_PATH_MAX + 48];
	if (f->uidvalidity != c->uidvalidity || f->idxdir == NULL)
		return -1;
	(void)added_find(c, 0);   /* sorts */
	(void)kadd_find(c, 0);
	struct hc_rec *out = malloc((f->n ? f->n : 1) * sizeof *out);
	struct pt_strbuf blob = { 0 };
	if (out == NULL)
		return -1;
	size_t n = 0, a = 0, b = 0, ka = 0;
	for (size_t i = 0; i < f->n; i++) {
		const struct ms_msg *r = &f->m[i];
		uint32_t uid = r->info.uid;
		while (a < c->nadd && c->add[a].uid < uid)
			a++;
		while (b < c->nfrec && c->frec[b].uid < uid)
			b++;
		while (ka < c->nkadd && c->kadd[ka].id.uid < uid)
			ka++;
		const struct hc_rec *src = NULL;
		const char *base = NULL;
		if (a < c->nadd && rec_matches(&c->add[a], r)) {
			src = &c->add[a];
			base = c->blob.p;
		} else if (b < c->nfrec && rec_matches(&c->frec[b], r)) {
			src = &c->frec[b];
			base = c->fblob;
		}
		if (src == NULL)
			continue;
		out[n] = *src;
		out[n].off = blob.len;
		pt_strbuf_put(&blob, base + src->off, src->len);
		/* Its keys: learnt now, else the file's (of this text). */
		const struct hc_kadd *lk = ka < c->nkadd && rec_matches(&c->kadd[ka].id, r) ? &c->kadd[ka] : NULL;
		const struct hc_rec *fk = b < c->nfrec && rec_matches(&c->frec[b], r) ? &c->frec[b] : NULL;
		out[n].koff = blob.len;
		uint64_t fat = fk != NULL ? fk->koff : 0;
		for (int k = 0; k < PT_SKEY_KINDS; k++) {
			out[n].klen[k] = HC_NOKEY;
			out[n].rank[k] = 0;
			if (lk != NULL && lk->id.klen[k] != HC_NOKEY) {
				pt_strbuf_put(&blob, c->kblob.p + lk->koff[k], lk->id.klen[k]);
				out[n].klen[k] = lk->id.klen[k];
			} else if (fk != NULL && fk->klen[k] != HC_NOKEY) {
				pt_strbuf_put(&blob, c->fblob + fat, fk->klen[k]);
				out[n].klen[k] = fk->klen[k];
			}
			if (fk != NULL && fk->klen[k] != HC_NOKEY)
				fat += fk->klen[k];
		}
		n++;
	}
	if (!blob.oom)
		rank_keys(out, n, blob.p);
	int rc = -1;
	struct idx_acc ia = { NULL, 0, 0, 0, 0 };
	if (blob.oom)
		goto done;
	/* The Message-ID index over what is written. */
	for (size_t k = 0; k < n && !ia.oom; k++) {
		ia.rec = (uint32_t)k;
		ms_cache_msgid_keys(blob.p + out[k].off, out[k].len, idx_add, &ia);
	}
	if (ia.oom)
		goto done;
	if (ia.n) {
		qsort(ia.v, ia.n, sizeof *ia.v, cmp_idx);
		/* One entry per (hash, record): a reader refuses repeats. */
		size_t m = 1;
		for (size_t k = 1; k < ia.n; k++)
			if (ia.v[k].hash != ia.v[m - 1].hash || ia.v[k].rec != ia.v[m - 1].rec)
				ia.v[m++] = ia.v[k];
		ia.n = m;
	}
	struct hc_head h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, HC_MAGIC, 8);
	h.uidvalidity = c->uidvalidity;
	h.nrec = (uint32_t)n;
	h.blob_len = blob.len;
	h.nidx = (uint32_t)ia.n;
	h.sum = file_sum(out, n * sizeof *out, ia.v ? (const void *)ia.v : "", ia.n * sizeof *ia.v,
	                 blob.p ? blob.p : "", blob.len);
	cache_path(f, path, sizeof path);
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
	if (ms_mkdirs(f->idxdir, 1) != 0)
		goto done;
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		goto done;
	rc = pt_write_all(fd, &h, sizeof h);
	if (rc == 0 && n)
		rc = pt_write_all(fd, out, n * sizeof *out);
	if (rc == 0 && ia.n)
		rc = pt_write_all(fd, ia.v, ia.n * sizeof *ia.v);
	if (rc == 0 && blob.len)
		rc = pt_write_all(fd, blob.p, blob.len);
	if (close(fd) != 0)
		rc = -1;
	/* A cache: no fsync; a torn file fails its sum and is rebuilt. */
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -1;
	if (rc != 0)
		unlink(tmp);
done:
	free(out);
	free(ia.v);
	pt_strbuf_free(&blob);
	return rc;
}

_Static_assert(sizeof(struct hc_rec) % 8 == 0, "records keep the sum's 8-octet steps aligned");
_Static_assert(sizeof(struct hc_head) % 8 == 0, "records start 8-aligned");

void
ms_cache_tick(struct pt_mbox *mb)
{
	struct ms_cache *c = mb->hc;
	if (c != NULL)
		drop_window(c);
	if (c == NULL || c->pending == 0 || time(NULL) - c->saved_at < HC_SAVE_EVERY)
		return;
	c->saved_at = time(NULL);
	/* Saved: serve from the new file, not from this open's heap. */
	if (save(mb, c) == 0) {
		drop_file(c);
		drop_added(c);
		load(c, &mb->f);
	}
}

void
ms_cache_close(struct pt_mbox *mb)
{
	struct ms_cache *c = mb->hc;
	if (c == NULL)
		return;
	if (c->pending)
		(void)save(mb, c);
	drop_file(c);
	drop_added(c);
	drop_window(c);
	pt_strbuf_free(&c->tmp);
	pt_strbuf_free(&c->ans);
	free(c);
	mb->hc = NULL;
}
