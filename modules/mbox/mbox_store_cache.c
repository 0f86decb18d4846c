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
 * last one wins, which only costs cached fields, never correctness. */
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

#define HC_MAGIC "PTHC0001"
#define HC_NAME "postern.hcache"
#define HC_SAVE_EVERY 300      /* seconds: a long session saves at a sync */
#define HC_WINDOW (128 * 1024) /* read-ahead of headers for a run of misses */

struct hc_head {
	char magic[8];
	uint32_t uidvalidity, nrec;
	uint64_t blob_len;
	uint64_t sum;                  /* of the records and the blob */
};

struct hc_rec {
	uint32_t uid, len;             /* the block: [off, off+len) of the blob */
	uint64_t off;
	uint64_t size;                 /* pt_msg_info.size */
	int64_t date;                  /* pt_msg_info.internal_date */
	uint64_t hdr_len;              /* header octets less the storage headers */
	uint64_t body_len;
};

struct ms_cache {
	uint32_t uidvalidity;
	/* The file as loaded (read-only mapping), records ascending by UID. */
	void *map;
	size_t map_len;
	const struct hc_rec *frec;
	size_t nfrec;
	const char *fblob;
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

/* The text identity of message r (see the top of the file). */
static void
rec_ident(const struct ms_msg *r, struct hc_rec *out)
{
	out->uid = r->info.uid;
	out->size = r->info.size;
	out->date = (int64_t)r->info.internal_date;
	out->hdr_len = (uint64_t)(r->body_off - r->hdr_off) - r->meta_len;
	out->body_len = (uint64_t)(r->end - r->body_off);
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
	    h.blob_len != len - sizeof h - (uint64_t)h.nrec * sizeof(struct hc_rec))
		goto bad;
	const struct hc_rec *rec = (const struct hc_rec *)(const void *)((const char *)map + sizeof h);
	const char *blob = (const char *)map + sizeof h + (size_t)h.nrec * sizeof *rec;
	if (hc_sum(0xcbf29ce484222325ull, rec, len - sizeof h) != h.sum)
		goto bad;
	for (uint32_t i = 0; i < h.nrec; i++) {
		const struct hc_rec *r = &rec[i];
		if (r->uid == 0 || (i && r->uid <= rec[i - 1].uid) || r->len < 2 ||
		    r->len > HC_BLOCK_MAX || r->off > h.blob_len || r->len > h.blob_len - r->off ||
		    memcmp(blob + r->off + r->len - 2, "\r\n", 2) != 0)
			goto bad;
	}
	close(fd);
	c->map = map;
	c->map_len = len;
	c->frec = rec;
	c->nfrec = h.nrec;
	c->fblob = blob;
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
	else
		r = rec_find(v, n, uid);
	if (r != (size_t)-1)
		*cur = r + 1;
	return r;
}

int
ms_cache_extract(const char *hdr, size_t len, struct pt_strbuf *out)
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
		if (fl.raw_len < 2 || fl.raw[fl.raw_len - 1] != '\n' || fl.raw[fl.raw_len - 2] != '\r')
			return -1;
		pt_strbuf_put(out, fl.raw, fl.raw_len);
		if (out->len - start > HC_BLOCK_MAX - 2)
			return -1;
	}
	pt_strbuf_put(out, "\r\n", 2);
	return out->oom ? -1 : 0;
}

/* Keep block [p, p+len) as uid's (message r). The returned pointer: the
 * kept copy, valid until the next call. */
static const char *
learn(struct ms_cache *c, const struct ms_msg *r, const char *p, size_t len)
{
	size_t k = added_find(c, r->info.uid);
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

static void
drop_window(struct ms_cache *c)
{
	pt_strbuf_free(&c->win);
	memset(&c->win, 0, sizeof c->win);
	c->win_len = 0;
}

/* Where message i's From_ line up to its body lies in memory, read with
 * the headers of the messages after it when they are near (one pread for
 * a run of small messages instead of one each; a big body ends the run),
 * or NULL when the file is not as f->m describes (then read() catches
 * up). The window lasts while f's file state does, and to the next sync. */
static const char *
window(struct ms_cache *c, const struct ms_folder *f, size_t i)
{
	const struct ms_msg *r = &f->m[i];
	if (c->win_len && r->from_off >= c->win_off && r->body_off <= c->win_off + (int64_t)c->win_len &&
	    f->known_valid && c->win_ino == f->known.st_ino && c->win_size == f->known.st_size &&
	    c->win_mtime.tv_sec == f->known.st_mtim.tv_sec &&
	    c->win_mtime.tv_nsec == f->known.st_mtim.tv_nsec)
		return c->win.p + (r->from_off - c->win_off);
	drop_window(c);
	if (!ms_folder_current((struct ms_folder *)f))
		return NULL;
	size_t j = i;
	while (j + 1 < f->n && f->m[j + 1].body_off - r->from_off <= HC_WINDOW)
		j++;
	size_t n = (size_t)(f->m[j].body_off - r->from_off);
	if (pt_strbuf_reserve(&c->win, n) != 0)
		return NULL;
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

static int hc_enabled = 1;

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
	                 ms_mbox_find(mb, uid) != (size_t)-1 ? window(c, f, i) : NULL;
	if (at != NULL) {
		const struct ms_msg *r = &f->m[i];
		size_t n = (size_t)(r->body_off - r->from_off);
		if (n < 5 || memcmp(at, "From ", 5) != 0) {
			drop_window(c);
			pt_status_set(st, 451, "", "Mailbox changed meanwhile, try again");
			goto out;
		}
		size_t skip = (size_t)(r->hdr_off - r->from_off);
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
	struct hc_rec *out = malloc((f->n ? f->n : 1) * sizeof *out);
	struct pt_strbuf blob = { 0 };
	if (out == NULL)
		return -1;
	size_t n = 0, a = 0, b = 0;
	for (size_t i = 0; i < f->n; i++) {
		const struct ms_msg *r = &f->m[i];
		uint32_t uid = r->info.uid;
		while (a < c->nadd && c->add[a].uid < uid)
			a++;
		while (b < c->nfrec && c->frec[b].uid < uid)
			b++;
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
		n++;
	}
	int rc = -1;
	if (blob.oom)
		goto done;
	struct hc_head h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, HC_MAGIC, 8);
	h.uidvalidity = c->uidvalidity;
	h.nrec = (uint32_t)n;
	h.blob_len = blob.len;
	/* The sum runs over records and blob as one stream: the same
	 * eight-octet steps as the load's single pass need the records to
	 * be a multiple of eight long (they are: 48 octets). */
	h.sum = hc_sum(hc_sum(0xcbf29ce484222325ull, out, n * sizeof *out), blob.p ? blob.p : "",
	               blob.len);
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
	free(c);
	mb->hc = NULL;
}
