/* The in-place rewrite: a folder whose messages only grow (the first
 * write of a pristine mbox puts an X-UID into every message) is rewritten
 * over itself, back to front, with a small journal instead of a copy of
 * the file.
 *
 * The new file is a list of pieces, each a literal (storage headers) or a
 * run of old bytes moved to an offset at or above their old one. Written
 * from the end down, a piece only overwrites old bytes that pieces above
 * it (already written) came from. Each write covers a chunk [c, F) whose
 * sources all lie below c, so a chunk cut short by a crash is redone from
 * intact bytes; the journal (postern.rewrite beside the index: the pieces,
 * then the progress F) is all a recovery needs to finish the job.
 *
 * Order: the journal (pieces) synced and renamed into place, the file
 * extended to its new size (fallocate: a full disk fails here, before any
 * byte moved), state "extended" synced; then chunks, each followed by the
 * progress (a plain write: it survives the death of the process, the
 * page cache being the file). Every RW_BATCH bytes the mbox is synced and
 * the synced progress written and synced: after a reboot (the journal
 * names the boot) the recovery starts from there. Mail another program
 * appends after a crash lands beyond the new end and stays. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "postern/fdio.h"
#include "postern/log.h"
#include "mbox_store.h"

#define JOURNAL_NAME "postern.rewrite"
/* The header, then two progress slots written in turn, then the plan.
 * Each slot has a 4 KiB block of its own: a write torn by a power cut
 * (a page, a sector) leaves the other slot whole. Version 1 kept both in
 * one 512-byte sector; its journals are still read and finished. */
#define J_MAGIC "PTREWRITE2\n"
#define J_MAGIC1 "PTREWRITE1\n"
struct j_layout {
	off_t slot0, step, data;
};
static const struct j_layout J_V2 = { 4096, 4096, 3 * 4096 };
static const struct j_layout J_V1 = { 512, 256, 1024 };
#define J_DONE 2                       /* slot state: the mbox holds the new text */
#define RW_CHUNK (8 * 1024 * 1024)     /* most bytes one write moves */
#define RW_BATCH (64 * 1024 * 1024)    /* bytes between two syncs */
#define RW_KICK (4 * 1024 * 1024)      /* writeback started every this much */

int (*ms_rewrite_fault)(int step);
int ms_rewrite_copy_only;
size_t ms_rewrite_lit_max = 16 * 1024 * 1024;   /* held twice in memory while journalled */
static int fault_step;

/* The test hook: what this step does instead of its work. */
static int
fault(void)
{
	if (ms_rewrite_fault == NULL)
		return 0;
	int what = ms_rewrite_fault(fault_step++);
	if (what == MS_FAULT_EXIT)
		_exit(0);
	if (what == MS_FAULT_ENOSPC)
		errno = ENOSPC;
	return what;
}

static void
add_piece(struct ms_plan *pl, int64_t dst, int64_t src, size_t len, int lit)
{
	/* A piece holds at most 1 GiB (its length is 32 bits). */
	while (len > (1u << 30)) {
		add_piece(pl, dst, src, 1u << 30, lit);
		dst += 1 << 30;
		src += 1 << 30;
		len -= 1u << 30;
	}
	if (len == 0)
		return;
	if (!lit && dst < src)
		pl->bad = 1;
	struct ms_piece *q = pl->n ? &pl->p[pl->n - 1] : NULL;
	if (q && q->lit == (uint32_t)lit && q->dst + q->len == dst && q->src + q->len == src &&
	    (uint64_t)q->len + len <= (1u << 30)) {
		q->len += (uint32_t)len;
		return;
	}
	if (pl->n == pl->cap) {
		size_t cap = pl->cap ? pl->cap * 2 : 4096;
		struct ms_piece *np = realloc(pl->p, cap * sizeof *np);
		if (np == NULL) {
			pl->oom = 1;
			return;
		}
		pl->p = np;
		pl->cap = cap;
	}
	pl->p[pl->n++] = (struct ms_piece){ dst, src, (uint32_t)len, (uint32_t)lit };
}

static void
add_lit(struct ms_plan *pl, int64_t dst, const char *p, size_t len)
{
	int64_t at = (int64_t)pl->lits.len;
	pt_strbuf_put(&pl->lits, p, len);
	if (pl->lits.oom)
		pl->oom = 1;
	add_piece(pl, dst, at, len, 1);
}

void
ms_plan_free(struct ms_plan *pl)
{
	free(pl->p);
	pt_strbuf_free(&pl->lits);
	memset(pl, 0, sizeof *pl);
}

/* The kept header fields of one message as runs (ms_header_kept). */
struct runs {
	size_t (*r)[2];
	size_t n, cap, total;
	int oom;
};

static void
kept_run(void *arg, size_t off, size_t n)
{
	struct runs *k = arg;
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 8;
		size_t (*nr)[2] = realloc(k->r, cap * sizeof *nr);
		if (nr == NULL) {
			k->oom = 1;
			return;
		}
		k->r = nr;
		k->cap = cap;
	}
	k->r[k->n][0] = off;
	k->r[k->n][1] = n;
	k->n++;
	k->total += n;
}

/* Two last bytes of what the plan writes so far (the old code's last2). */
static int
plan_last2(const struct ms_plan *pl, int fd, char out[2])
{
	out[0] = out[1] = '\n';
	int need = 2;
	for (size_t i = pl->n; i-- > 0 && need > 0;) {
		const struct ms_piece *q = &pl->p[i];
		size_t take = q->len < (uint32_t)need ? q->len : (size_t)need;
		char b[2];
		if (q->lit)
			memcpy(b, pl->lits.p + q->src + q->len - take, take);
		else if (ms_pread_all(fd, b, take, q->src + q->len - (int64_t)take) != 0)
			return -1;
		memcpy(out + need - take, b, take);
		need -= (int)take;
	}
	return 0;
}

#ifndef NDEBUG
/* Debug builds: what MS_PLAIN stands for, read from the file. */
static void
check_plain(struct ms_window *w, const struct ms_msg *r, size_t fend)
{
	size_t hdr_rel = (size_t)(r->hdr_off - r->from_off);
	size_t body_rel = (size_t)(r->body_off - r->from_off);
	const char *src = ms_window_get(w, r->from_off, body_rel);
	struct runs k = { 0 };
	struct pt_strbuf clen = { 0 };
	size_t e = src ? ms_header_kept(src + hdr_rel, body_rel - hdr_rel, kept_run, &k, &clen) : 0;
	int ok = src == NULL || (src[hdr_rel - 1] == '\n' && e == fend && clen.len == 0 &&
	                         k.n == (fend ? 1u : 0u) && (fend == 0 || (k.r[0][0] == 0 && k.r[0][1] == fend)));
	free(k.r);
	pt_strbuf_free(&clen);
	if (!ok) {
		pt_error("MS_PLAIN record at %lld does not match its header", (long long)r->from_off);
		abort();
	}
}
#endif

/* The new layout from message s on: pieces, and the new records in nm
 * (*nw of them); complete also when a run moves down (pl->bad: not for
 * the in-place rewrite, the copying one writes it). */
int
ms_plan_build(struct ms_folder *f, size_t s, int64_t eof, struct ms_plan *pl, struct ms_msg *nm,
              size_t *nw)
{
	size_t live0 = ms_first_live(f);
	struct ms_window w = { .fd = f->fd, .base = -1 };
	struct pt_strbuf clen = { 0 }, blk = { 0 }, tmp = { 0 };
	struct runs runs = { 0 };
	int64_t off0 = f->m[s].from_off, pos = off0;
	pl->off0 = off0;
	pl->old_eof = eof;
	size_t k = 0;
	int rc = 0;
	int have_prev = s > 0, prev_gone = 0;
	for (size_t i = s; i < f->n && rc == 0 && !pl->oom; i++) {
		struct ms_msg r = f->m[i];
		int64_t span = ms_span_end(f, i, eof) - r.from_off;
		if (r.state & MS_EXPUNGE) {
			prev_gone = 1;
			continue;
		}
		if (prev_gone && have_prev) {
			char last2[2] = { '\n', '\n' };
			if (pl->n == 0 && off0 >= 2) {
				if (ms_pread_all(f->fd, last2, 2, off0 - 2) != 0)
					rc = -1;
			} else if (plan_last2(pl, f->fd, last2) != 0) {
				rc = -1;
			}
			if (rc == 0 && !(last2[0] == '\n' && last2[1] == '\n')) {
				add_lit(pl, pos, "\n", 1);
				pos++;
			}
		}
		prev_gone = 0;
		have_prev = 1;
		int64_t delta = pos - r.from_off;
		if (!(r.state & MS_DIRTY)) {
			add_piece(pl, pos, r.from_off, (size_t)span, 0);
			ms_msg_move(&r, delta);
			pos += span;
			nm[k++] = r;
			continue;
		}
		size_t hdr_rel = (size_t)(r.hdr_off - r.from_off);
		size_t body_rel = (size_t)(r.body_off - r.from_off);
		clen.len = 0;
		blk.len = 0;
		runs.n = runs.total = 0;
		int from_lf, fields_lf;
		size_t fend;
		if (r.state & MS_PLAIN) {
			/* The parse saw fields only, then the empty line: the
			 * header needs no read (a first write of a big folder
			 * would read all of it again). */
			from_lf = fields_lf = 1;
			fend = body_rel - hdr_rel - 1;
			if (fend)
				kept_run(&runs, 0, fend);
#ifndef NDEBUG
			check_plain(&w, &r, fend);
#endif
		} else {
			const char *src = ms_window_get(&w, r.from_off, body_rel);
			if (src == NULL) {
				rc = -1;
				break;
			}
			from_lf = hdr_rel > 0 && src[hdr_rel - 1] == '\n';
			fend = ms_header_kept(src + hdr_rel, body_rel - hdr_rel, kept_run, &runs, &clen);
			fields_lf = runs.n == 0 ||
			            src[hdr_rel + runs.r[runs.n - 1][0] + runs.r[runs.n - 1][1] - 1] == '\n';
		}
		size_t new_hdr = hdr_rel + (from_lf ? 0 : 1);
		struct ms_block kb;
		ms_block_of(f, &r, i == live0, &kb);
		kb.clen = clen.p;
		kb.clen_len = clen.len;
		long bl = fend == (size_t)-1 || runs.oom ? -1 : ms_block_render(&kb, 0, &blk);
		if (bl < 0) {
			errno = ENOMEM;
			rc = -1;
			break;
		}
		size_t rest = hdr_rel + fend;
		/* From_ line, kept fields, block, then the rest as is; a damaged
		 * end (From_ line or last field without LF) must not have the
		 * block glued to it: then an LF, or the block before the fields. */
		int64_t at = pos, blk_at = 0;
		add_piece(pl, at, r.from_off, hdr_rel, 0);
		at += (int64_t)hdr_rel;
		if (!from_lf) {
			add_lit(pl, at, "\n", 1);
			at++;
		}
		if (!fields_lf) {
			blk_at = at - pos;
			add_lit(pl, at, blk.p, blk.len);
			at += (int64_t)blk.len;
		}
		for (size_t q = 0; q < runs.n; q++) {
			add_piece(pl, at, r.from_off + (int64_t)(hdr_rel + runs.r[q][0]), runs.r[q][1], 0);
			at += (int64_t)runs.r[q][1];
		}
		if (fields_lf) {
			blk_at = at - pos;
			add_lit(pl, at, blk.p, blk.len);
			at += (int64_t)blk.len;
		}
		add_piece(pl, at, r.from_off + (int64_t)rest, (size_t)(span - (int64_t)rest), 0);
		at += span - (int64_t)rest;
		int64_t out_len = at - pos;
		int64_t grow = out_len - span;
		int64_t end_rel = r.end - r.from_off + grow;
		if (!from_lf || !fields_lf) {
			/* A missing LF was put in: the wire form changes (rare; the
			 * message is put together to measure it). */
			const char *all = ms_window_get(&w, r.from_off, (size_t)span);
			tmp.len = 0;
			if (all) {
				pt_strbuf_put(&tmp, all, hdr_rel);
				if (!from_lf)
					pt_strbuf_put(&tmp, "\n", 1);
				if (!fields_lf)
					pt_strbuf_put(&tmp, blk.p, blk.len);
				for (size_t q = 0; q < runs.n; q++)
					pt_strbuf_put(&tmp, all + hdr_rel + runs.r[q][0], runs.r[q][1]);
				if (fields_lf)
					pt_strbuf_put(&tmp, blk.p, blk.len);
				pt_strbuf_put(&tmp, all + rest, (size_t)(span - (int64_t)rest));
			}
			if (all == NULL || tmp.oom || (int64_t)tmp.len != out_len) {
				rc = -1;
				break;
			}
			r.info.size = ms_wire_size(tmp.p + new_hdr, (size_t)end_rel - new_hdr, NULL,
			                           (r.state & MS_RD) != 0);
		}
		r.body_off = pos + (r.body_off - r.from_off) + grow;
		r.from_off = pos;
		r.hdr_off = pos + (int64_t)new_hdr;
		r.blk_off = pos + blk_at;
		r.blk_len = (uint32_t)bl;
		r.meta_len = (uint32_t)bl;
		r.end = pos + end_rel;
		r.state = (r.state & ~(MS_DIRTY | MS_HAS_BASE | MS_PLAIN)) | (i == live0 ? MS_HAS_BASE : 0);
		ms_msg_disk_set(f, &r);
		pos += out_len;
		nm[k++] = r;
	}
	free(w.p);
	pt_strbuf_free(&clen);
	pt_strbuf_free(&blk);
	pt_strbuf_free(&tmp);
	free(runs.r);
	if (pl->oom)
		errno = ENOMEM;
	pl->new_end = pos;
	*nw = k;
	return rc == 0 && !pl->oom ? 0 : -1;
}

/* ---- the journal ---- */

struct j_head {
	char magic[16];
	uint64_t ino, dev;
	int64_t off0, old_eof, new_end;
	uint64_t npieces, lit_len;
	uint64_t data_len;             /* encoded pieces and literals */
	uint64_t data_sum;
	uint64_t sum;
};

/* On disk the plan is compact (a 100k folder: 4 MB instead of 12): each
 * piece a 32-bit length (top bit: literal), a copy then its 64-bit old
 * offset; new offsets and literal offsets follow from the order. Then the
 * literals, runs of spaces (the X-UID padding) as 0xFF n; 0xFF 0 is 0xFF. */
static int
plan_encode(const struct ms_plan *pl, struct pt_strbuf *b)
{
	int64_t dst = pl->off0, lit = 0;
	for (size_t i = 0; i < pl->n; i++) {
		const struct ms_piece *q = &pl->p[i];
		if (q->dst != dst || (q->lit && q->src != lit)) {
			errno = EINVAL;
			return -1;
		}
		uint32_t w = q->len | (q->lit ? 0x80000000u : 0);
		pt_strbuf_put(b, (const char *)&w, 4);
		if (!q->lit)
			pt_strbuf_put(b, (const char *)&q->src, 8);
		else
			lit += q->len;
		dst += q->len;
	}
	/* Verbatim up to the next 0xFF or run of three spaces, in one piece:
	 * the literals may hold megabytes of moved text, with a padded
	 * X-UID line every few kilobytes. */
	const char *p = pl->lits.p, *end = p + pl->lits.len;
	const char *ff = NULL, *sp = NULL;
	if (pl->lits.len) {
		ff = memchr(p, 0xff, pl->lits.len);
		sp = memmem(p, pl->lits.len, "   ", 3);
	}
	for (const char *i = p; i < end;) {
		if (ff && ff < i)
			ff = memchr(i, 0xff, (size_t)(end - i));
		if (sp && sp < i)
			sp = memmem(i, (size_t)(end - i), "   ", 3);
		const char *next = end;
		if (ff && ff < next)
			next = ff;
		if (sp && sp < next)
			next = sp;
		pt_strbuf_put(b, i, (size_t)(next - i));
		i = next;
		if (i == end)
			break;
		if ((unsigned char)*i == 0xff) {
			pt_strbuf_put(b, "\xff\0", 2);
			i++;
			continue;
		}
		size_t n = 0;
		while (i + n < end && i[n] == ' ' && n < 255)
			n++;
		unsigned char e[2] = { 0xff, (unsigned char)n };
		pt_strbuf_put(b, (const char *)e, 2);
		i += n;
	}
	if (b->oom)
		errno = ENOMEM;
	return b->oom ? -1 : 0;
}

static int
plan_decode(struct ms_plan *pl, const char *d, size_t len, size_t npieces, size_t lit_len)
{
	size_t at = 0;
	int64_t dst = pl->off0, lit = 0;
	pl->p = malloc((npieces ? npieces : 1) * sizeof *pl->p);
	if (pl->p == NULL)
		return -1;
	pl->cap = npieces;
	for (pl->n = 0; pl->n < npieces; pl->n++) {
		uint32_t w;
		if (len - at < 4)
			return -1;
		memcpy(&w, d + at, 4);
		at += 4;
		struct ms_piece *q = &pl->p[pl->n];
		q->dst = dst;
		q->len = w & 0x7fffffffu;
		q->lit = w >> 31;
		if (q->lit) {
			q->src = lit;
			lit += q->len;
		} else {
			if (len - at < 8)
				return -1;
			memcpy(&q->src, d + at, 8);
			at += 8;
		}
		dst += q->len;
	}
	if ((uint64_t)lit != lit_len || dst != pl->new_end)
		return -1;
	const unsigned char *p = (const unsigned char *)d;
	while (at < len) {
		const unsigned char *x = memchr(p + at, 0xff, len - at);
		size_t plain = x ? (size_t)(x - p) - at : len - at;
		pt_strbuf_put(&pl->lits, d + at, plain);
		at += plain;
		if (at == len)
			break;
		/* 0xFF n: n spaces; 0xFF 0: 0xFF itself. */
		if (at + 1 >= len)
			return -1;
		if (p[at + 1] == 0) {
			pt_strbuf_put(&pl->lits, "\xff", 1);
		} else {
			char sp[255];
			memset(sp, ' ', p[at + 1]);
			pt_strbuf_put(&pl->lits, sp, p[at + 1]);
		}
		at += 2;
	}
	return pl->lits.oom || pl->lits.len != lit_len ? -1 : 0;
}

struct j_slot {
	uint64_t seq;
	uint64_t state;                /* 0 committed, 1 file extended, 2 done */
	int64_t live;                  /* frontier as last written */
	int64_t synced;                /* frontier the last sync covered */
	char boot[48];
	uint64_t sum;
};

/* FNV-1a-like, eight bytes at a step (the journal of a 100k folder is
 * 12 MB: byte-wise it took 17 ms). */
static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		h = (h ^ w) * 1099511628211ull;
		h ^= h >> 29;
	}
	for (; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ull;
	return h;
}

#define FNV0 14695981039346656037ull

const char *(*ms_rewrite_boot)(void) = ms_boot_id;

/* This boot's id into a slot (empty when unknown). */
static void
boot_put(char out[48])
{
	const char *b = ms_rewrite_boot();
	memset(out, 0, 48);
	snprintf(out, 48, "%s", b ? b : "");
}

/* Was the slot written in this boot? Journals of older versions kept the
 * id's trailing newline. */
static int
same_boot(const char slot[48], const char *boot)
{
	size_t n = strnlen(slot, 48);
	while (n > 0 && (slot[n - 1] == '\n' || slot[n - 1] == ' '))
		n--;
	return boot != NULL && n > 0 && strlen(boot) == n && memcmp(slot, boot, n) == 0;
}

struct journal {
	int fd;
	struct j_layout at;
	uint64_t seq;
	struct j_slot s;
	int64_t since_sync;
};

static int
slot_write(struct journal *j)
{
	j->s.seq = ++j->seq;
	j->s.sum = fnv(FNV0, &j->s, offsetof(struct j_slot, sum));
	if (fault() == MS_FAULT_ENOSPC)
		return -1;
	return pt_pwrite_all(j->fd, &j->s, sizeof j->s, j->at.slot0 + (off_t)(j->seq & 1) * j->at.step);
}

static void
journal_path(const struct ms_folder *f, char *p, size_t n, const char *suffix)
{
	snprintf(p, n, "%s/%s%s", f->idxdir, JOURNAL_NAME, suffix);
}

static int
journal_create(struct ms_folder *f, const struct ms_plan *pl, struct journal *j)
{
	char path[MS_PATH_MAX + 32], tmp[MS_PATH_MAX + 40];
	journal_path(f, path, sizeof path, "");
	journal_path(f, tmp, sizeof tmp, ".tmp");
	if (ms_mkdirs(f->idxdir, 1) != 0)
		return -1;
	int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	struct j_head h;
	struct stat sb;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, J_MAGIC, sizeof J_MAGIC - 1);
	if (fstat(f->fd, &sb) != 0) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	h.ino = (uint64_t)sb.st_ino;
	h.dev = (uint64_t)sb.st_dev;
	h.off0 = pl->off0;
	h.old_eof = pl->old_eof;
	h.new_end = pl->new_end;
	h.npieces = pl->n;
	h.lit_len = pl->lits.len;
	struct pt_strbuf enc = { 0 };
	if (plan_encode(pl, &enc) != 0) {
		pt_strbuf_free(&enc);
		close(fd);
		unlink(tmp);
		return -1;
	}
	h.data_len = enc.len;
	h.data_sum = fnv(FNV0, enc.p, enc.len);
	h.sum = fnv(FNV0, &h, offsetof(struct j_head, sum));
	memset(j, 0, sizeof *j);
	j->fd = fd;
	j->at = J_V2;
	j->s.live = j->s.synced = pl->new_end;
	boot_put(j->s.boot);
	int rc = pt_pwrite_all(fd, &h, sizeof h, 0) == 0 && slot_write(j) == 0 &&
	         pt_pwrite_all(fd, enc.p, enc.len, J_V2.data) == 0 ? 0 : -1;
	pt_strbuf_free(&enc);
	if (rc == 0 && fault() == MS_FAULT_ENOSPC)
		rc = -1;
	if (rc == 0 && (fsync(fd) != 0 || rename(tmp, path) != 0 || pt_fsync_dir(f->idxdir) != 0))
		rc = -1;
	if (rc != 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		errno = e;
		return -1;
	}
	return 0;
}

static void
journal_drop(struct ms_folder *f, struct journal *j)
{
	char path[MS_PATH_MAX + 32];
	journal_path(f, path, sizeof path, "");
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
	if (unlink(path) == 0)
		pt_fsync_dir(f->idxdir);
}

/* The rewrite is complete and the mbox synced: the journal first says
 * so (synced), then goes (the directory synced). An unlink a power cut
 * undoes would otherwise bring back a journal whose synced frontier is
 * older than the text, and a recovery in the next boot would redo chunks
 * from sources already overwritten. 0 when a journal that comes back is
 * harmless (marked done, or its removal durable). */
static int
journal_finish(struct ms_folder *f, struct journal *j)
{
	char path[MS_PATH_MAX + 32];
	journal_path(f, path, sizeof path, "");
	j->s.state = J_DONE;
	j->s.synced = j->s.live;
	int marked = slot_write(j) == 0 && fdatasync(j->fd) == 0;
	if (fault() == MS_FAULT_ENOSPC)
		marked = 0;
	close(j->fd);
	j->fd = -1;
	int gone = unlink(path) == 0 && pt_fsync_dir(f->idxdir) == 0;
	return marked || gone ? 0 : -1;
}

/* The file grows to its new size (allocated: no ENOSPC later), then the
 * journal says so (synced before the first byte moves). */
static int
extend(struct ms_folder *f, const struct ms_plan *pl, struct journal *j)
{
	if (pl->new_end > pl->old_eof) {
		int r = fault() == MS_FAULT_ENOSPC ? -1 :
		        posix_fallocate(f->fd, (off_t)pl->old_eof, (off_t)(pl->new_end - pl->old_eof));
		if (r > 0)
			errno = r;
		if (r != 0)
			return -1;
	}
	j->s.state = 1;
	if (fault() == MS_FAULT_ENOSPC || fdatasync(f->fd) != 0 || slot_write(j) != 0 ||
	    fdatasync(j->fd) != 0)
		return -1;
	return 0;
}

/* Reads of adjacent file ranges into scattered places, in one preadv. */
#define GATHER_MAX 512

struct gather {
	int fd;
	int64_t off;                   /* file offset of iov[0] */
	int64_t len;
	int n;
	struct iovec iov[GATHER_MAX];
};

static int
gather_flush(struct gather *g)
{
	struct iovec *v = g->iov;
	int n = g->n;
	int64_t off = g->off, left = g->len;
	while (left > 0) {
		ssize_t r = preadv(g->fd, v, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			return -1;
		}
		off += r;
		left -= r;
		while (n > 0 && (size_t)r >= v->iov_len) {
			r -= (ssize_t)v->iov_len;
			v++;
			n--;
		}
		if (n > 0) {
			v->iov_base = (char *)v->iov_base + r;
			v->iov_len -= (size_t)r;
		}
	}
	g->n = 0;
	g->len = 0;
	return 0;
}

static int
gather_add(struct gather *g, char *to, int64_t off, size_t n)
{
	if (g->n && (g->off + g->len != off || g->n == GATHER_MAX) && gather_flush(g) != 0)
		return -1;
	if (g->n == 0)
		g->off = off;
	g->iov[g->n].iov_base = to;
	g->iov[g->n].iov_len = n;
	g->n++;
	g->len += (int64_t)n;
	return 0;
}

/* The mbox synced up to the frontier, then the journal says so: a
 * recovery in another boot starts there. */
static int
sync_point(int fd, struct journal *j)
{
	if (fault() == MS_FAULT_ENOSPC || fdatasync(fd) != 0)
		return -1;
	j->s.synced = j->s.live;
	j->since_sync = 0;
	return slot_write(j) == 0 && fdatasync(j->fd) == 0 ? 0 : -1;
}

/* Write the pieces below the frontier j->s.live, back to front.
 *
 * After a power cut any of the writes since the last sync may be on the
 * disk, and the recovery redoes them all from the synced frontier: their
 * sources must still hold the old bytes. So a chunk that would overwrite
 * a source of a chunk written since the last sync waits for a sync. */
static int
run(int fd, const struct ms_plan *pl, struct journal *j)
{
	char *cbuf = NULL;
	int rc = 0;
	int64_t F = j->s.live, kick = F;
	/* Old bytes read by the chunks since the last sync (one span). */
	int64_t bsrc_lo = INT64_MAX, bsrc_hi = INT64_MIN;
	/* Left by a process that died in this boot: what it wrote and read
	 * since its last sync is synced first, as if this run had done it. */
	if (j->s.live != j->s.synced && sync_point(fd, j) != 0)
		return -1;
	/* The last piece with something below F. */
	size_t k = pl->n;
	while (k > 0 && pl->p[k - 1].dst >= F)
		k--;
	if (k > 0 && (cbuf = malloc(RW_CHUNK)) == NULL)
		return -1;
	while (k > 0 && rc == 0) {
		/* Grow the chunk [c, F) down over pieces while the sources of
		 * everything in it stay below its start. */
		int64_t c = F, need = pl->off0, lo = INT64_MAX, hi = INT64_MIN;
		while (k > 0) {
			const struct ms_piece *q = &pl->p[k - 1];
			int64_t a = q->dst, b = q->dst + q->len < c ? q->dst + q->len : c;
			if (!q->lit && q->dst == q->src) {
				/* Bytes that stay where they are: nothing to write. */
				if (c < F)
					break;
				c = F = a;
				k--;
				continue;
			}
			int64_t start = a;
			if (start < F - RW_CHUNK)
				start = F - RW_CHUNK;
			int64_t nd = need;
			if (!q->lit) {
				int64_t d = q->dst - q->src;
				if (b - d > nd)
					nd = b - d;
			}
			if (start < nd)
				start = nd;
			if (start >= b)
				break;
			if (!q->lit) {
				/* Sources far apart (a big expunged message between):
				 * not in one read. */
				int64_t d = q->dst - q->src;
				int64_t nlo = start - d < lo ? start - d : lo, nhi = b - d > hi ? b - d : hi;
				if (c < F && nhi - nlo > 2 * (int64_t)RW_CHUNK)
					break;
				lo = nlo;
				hi = nhi;
			}
			need = nd;
			c = start;
			if (start > a)
				break;
			k--;
		}
		if (c >= F)
			continue;
		/* The chunk put together: literals copied, old bytes read
		 * straight into place (one preadv per run of adjacent
		 * sources, all below c). */
		struct gather g = { .fd = fd };
		int64_t src_lo = INT64_MAX, src_hi = INT64_MIN;
		for (size_t q = k ? k - 1 : 0; q < pl->n && rc == 0; q++) {
			const struct ms_piece *p = &pl->p[q];
			if (p->dst >= F)
				break;
			int64_t a = p->dst > c ? p->dst : c, b = p->dst + p->len < F ? p->dst + p->len : F;
			if (b <= a)
				continue;
			if (p->lit) {
				memcpy(cbuf + (a - c), pl->lits.p + p->src + (a - p->dst), (size_t)(b - a));
				continue;
			}
			int64_t sa = p->src + (a - p->dst);
			if (gather_add(&g, cbuf + (a - c), sa, (size_t)(b - a)) != 0)
				rc = -1;
			if (sa < src_lo)
				src_lo = sa;
			if (sa + (b - a) > src_hi)
				src_hi = sa + (b - a);
		}
		if (rc != 0 || gather_flush(&g) != 0) {
			rc = -1;
			break;
		}
		/* [c, F) holds sources of chunks not yet synced: sync them
		 * first (before this chunk's own sources count). */
		if (c < bsrc_hi && F > bsrc_lo) {
			if (sync_point(fd, j) != 0) {
				rc = -1;
				break;
			}
			bsrc_lo = INT64_MAX;
			bsrc_hi = INT64_MIN;
		}
		if (src_lo < bsrc_lo)
			bsrc_lo = src_lo;
		if (src_hi > bsrc_hi)
			bsrc_hi = src_hi;
		int what = fault();
		if (what == MS_FAULT_HALF) {
			/* A write cut short by the end of the process. */
			pt_pwrite_all(fd, cbuf, (size_t)(F - c) / 2, c);
			_exit(0);
		}
		if (what == MS_FAULT_ENOSPC || pt_pwrite_all(fd, cbuf, (size_t)(F - c), c) != 0) {
			rc = -1;
			break;
		}
		j->since_sync += F - c;
		/* Start the disk on what is written (the sync waits less). */
		if (kick - c >= RW_KICK) {
			sync_file_range(fd, (off_t)c, (off_t)(kick - c), SYNC_FILE_RANGE_WRITE);
			kick = c;
		}
		F = c;
		j->s.live = F;
		if (j->since_sync >= RW_BATCH) {
			if (sync_point(fd, j) != 0) {
				rc = -1;
				break;
			}
			bsrc_lo = INT64_MAX;
			bsrc_hi = INT64_MIN;
		} else if (slot_write(j) != 0) {
			rc = -1;
		}
	}
	if (rc == 0 && (fault() == MS_FAULT_ENOSPC || fdatasync(fd) != 0))
		rc = -1;
	int e = errno;
	free(cbuf);
	errno = e;
	return rc;
}

static int ms_rewrite_pending(const struct ms_folder *f);

/* Text moved up by d bytes goes in chunks of at most d (their sources
 * lie below them), and a chunk that overwrites the sources of chunks
 * not yet synced waits for a sync: a region moved by a few bytes costs
 * a write, a journal write and a sync every few bytes (a 1 GB tail
 * moved by 51 bytes: 20 million of each, under the folder's lock). The
 * copying rewrite writes the region twice whatever the shift. So the
 * in-place rewrite is declined when its estimated overhead, a sync
 * counted as 256 KiB of writing (about a millisecond of a disk) and a
 * chunk as 4 KiB (two system calls), exceeds the region plus 64 MiB: a
 * few hundred syncs (the first write of a pristine 100k-message folder
 * needs about 350) are not worth a second copy of the region. */
#define RW_SYNC_COST (256 * 1024)
#define RW_CHUNK_COST 4096
#define RW_ALLOW (64.0 * 1024 * 1024)

static int
too_many_chunks(const struct ms_plan *pl)
{
	double chunks = 0, syncs = 0;
	for (size_t i = 0; i < pl->n; i++) {
		const struct ms_piece *q = &pl->p[i];
		if (q->lit || q->dst == q->src)
			continue;
		double d = (double)(q->dst - q->src);
		chunks += (double)q->len / (d < RW_CHUNK ? d : RW_CHUNK);
		syncs += (double)q->len / d;
	}
	double region = (double)(pl->new_end - pl->off0);
	return syncs * RW_SYNC_COST + chunks * RW_CHUNK_COST > region + RW_ALLOW;
}

/* A run moved up by d bytes is written in chunks that each wait for a
 * sync every d bytes; a literal in the journal waits for none but is
 * written twice. The runs moved less than RW_LIT_BELOW go into the
 * journal, up to ms_rewrite_lit_max bytes, smallest shifts first.
 * Measured on the first write of a pristine 100k folder (410 MB, ~680
 * sync points when all is moved): its first 4 MB as literals (d < 64
 * KiB) took away ~380 sync points, 0.76 -> 0.67 s; its first 14 MB (d <
 * 256 KiB) no more, the journal's second copy costing what the last
 * syncs saved. */
#define RW_LIT_BELOW (64 * 1024)

static int
plan_literalize(int fd, struct ms_plan *pl)
{
	/* The bytes per shift class (log2 of d); the classes taken are
	 * those below the first that does not fit in the budget. */
	double by_class[64] = { 0 };
	int top = 0;
	for (size_t i = 0; i < pl->n; i++) {
		const struct ms_piece *q = &pl->p[i];
		int64_t d = q->dst - q->src;
		if (q->lit || d <= 0 || d >= RW_LIT_BELOW)
			continue;
		int b = 63 - __builtin_clzll((unsigned long long)d);
		by_class[b] += q->len;
		if (b + 1 > top)
			top = b + 1;
	}
	double sum = 0;
	int take = 0;
	while (take < top && sum + by_class[take] <= (double)ms_rewrite_lit_max)
		sum += by_class[take++];
	if (sum == 0)
		return 0;
	int64_t below = (int64_t)1 << take;
	struct ms_plan np;
	memset(&np, 0, sizeof np);
	np.off0 = pl->off0;
	np.old_eof = pl->old_eof;
	np.new_end = pl->new_end;
	struct ms_window w = { .fd = fd, .base = -1 };
	int rc = 0;
	for (size_t i = 0; i < pl->n && rc == 0 && !np.oom; i++) {
		const struct ms_piece *q = &pl->p[i];
		int64_t d = q->dst - q->src;
		if (q->lit) {
			add_lit(&np, q->dst, pl->lits.p + q->src, q->len);
		} else if (d > 0 && d < below) {
			for (size_t at = 0; at < q->len && rc == 0;) {
				size_t n = q->len - at < RW_CHUNK ? q->len - at : RW_CHUNK;
				const char *b = ms_window_get(&w, q->src + (int64_t)at, n);
				if (b == NULL)
					rc = -1;
				else
					add_lit(&np, q->dst + (int64_t)at, b, n);
				at += n;
			}
		} else {
			add_piece(&np, q->dst, q->src, q->len, 0);
		}
	}
	free(w.p);
	if (rc != 0 || np.oom) {
		if (np.oom)
			errno = ENOMEM;
		ms_plan_free(&np);
		return -1;
	}
	ms_plan_free(pl);
	*pl = np;
	return 0;
}

/* The file now holds the rewritten messages from s on: so does the list. */
void
ms_rewrite_list_put(struct ms_folder *f, size_t s, const struct ms_msg *nm, size_t nw)
{
	for (size_t k = 0; k < nw; k++)
		ms_rec_touch(f, s + k);
	memcpy(f->m + s, nm, nw * sizeof *nm);
	f->n = s + nw;
}

int
ms_rewrite_in_place(struct ms_folder *f, size_t s, int64_t eof, struct ms_plan *plan,
                    const struct ms_msg *nm, size_t nw, struct pt_status *st)
{
	/* Without a boot id a recovery cannot tell a dead process (go on
	 * from the last write) from a reboot (go back to the last sync):
	 * going back after a mere crash re-reads overwritten sources. */
	if (ms_rewrite_copy_only || ms_rewrite_boot() == NULL)
		return 0;
	/* Something moves down (an expunge, storage headers that shrink):
	 * the copying rewrite does that. */
	if (plan->bad || plan->new_end < eof)
		return 0;
	/* Failing (memory, a short read) it leaves the plan as it was: the
	 * copying rewrite takes it. */
	if (plan_literalize(f->fd, plan) != 0)
		return 0;
	if (too_many_chunks(plan))
		return 0;
	fault_step = 0;
	struct journal j = { .fd = -1 };
	if (journal_create(f, plan, &j) != 0) {
		pt_status_set(st, 451, "", "Cannot write mailbox rewrite journal: %s", strerror(errno));
		return -1;
	}
	if (extend(f, plan, &j) != 0) {
		/* Nothing moved yet: back to the old size, no journal. */
		int e = errno;
		if (ftruncate(f->fd, (off_t)eof) == 0)
			journal_drop(f, &j);
		else
			close(j.fd);
		pt_status_set(st, 451, "", "Cannot rewrite mailbox: %s", strerror(e));
		f->known_valid = 0;
		return -1;
	}
	if (run(f->fd, plan, &j) != 0) {
		/* Once more from the journal (a passing error), else the
		 * journal stays: the next lock of the folder finishes. */
		int e = errno;
		close(j.fd);
		struct pt_status again;
		if (ms_rewrite_recover(f, &again) == 0 && !ms_rewrite_pending(f)) {
			ms_rewrite_list_put(f, s, nm, nw);
			return 1;
		}
		pt_error("mailbox %s: in-place rewrite stopped (%s); it finishes at the next open",
		         f->path, strerror(e));
		pt_status_set(st, 451, "", "Cannot rewrite mailbox: %s", strerror(e));
		f->known_valid = 0;
		return -1;
	}
	if (journal_finish(f, &j) != 0) {
		/* The text is complete; the journal stays (the next open
		 * finishes it without moving a byte). */
		int e = errno;
		pt_error("mailbox %s: cannot retire the rewrite journal: %s", f->path, strerror(e));
		f->known_valid = 0;
		pt_status_set(st, 451, "", "Cannot rewrite mailbox: %s", strerror(e));
		return -1;
	}
	ms_rewrite_list_put(f, s, nm, nw);
	return 1;
}

/* Is a journal left for f? */
static int
ms_rewrite_pending(const struct ms_folder *f)
{
	char path[MS_PATH_MAX + 32];
	journal_path(f, path, sizeof path, "");
	return access(path, F_OK) == 0;
}

/* Is [from, to) of fd all zero bytes? */
static int
all_zero(int fd, int64_t from, int64_t to)
{
	char buf[65536];
	while (from < to) {
		size_t n = to - from < (int64_t)sizeof buf ? (size_t)(to - from) : sizeof buf;
		if (ms_pread_all(fd, buf, n, from) != 0)
			return 0;
		for (size_t i = 0; i < n; i++)
			if (buf[i])
				return 0;
		from += (int64_t)n;
	}
	return 1;
}

int
ms_rewrite_recover(struct ms_folder *f, struct pt_status *st)
{
	char path[MS_PATH_MAX + 32], tmp[MS_PATH_MAX + 40];
	journal_path(f, path, sizeof path, "");
	journal_path(f, tmp, sizeof tmp, ".tmp");
	/* Not renamed into place: the mbox was not touched. */
	unlink(tmp);
	int jfd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (jfd < 0)
		return 0;
	struct j_head h;
	struct j_slot sl[2];
	struct ms_plan pl;
	memset(&pl, 0, sizeof pl);
	struct stat sb, jsb;
	int ok = ms_pread_all(jfd, (char *)&h, sizeof h, 0) == 0;
	int v1 = ok && memcmp(h.magic, J_MAGIC1, sizeof J_MAGIC1 - 1) == 0;
	struct j_layout at = v1 ? J_V1 : J_V2;
	ok = ok && (v1 || memcmp(h.magic, J_MAGIC, sizeof J_MAGIC - 1) == 0) &&
	     h.sum == fnv(FNV0, &h, offsetof(struct j_head, sum)) && fstat(f->fd, &sb) == 0 &&
	     h.ino == (uint64_t)sb.st_ino && h.dev == (uint64_t)sb.st_dev && h.off0 >= 0 &&
	     h.old_eof >= h.off0 && h.new_end >= h.old_eof && fstat(jfd, &jsb) == 0 &&
	     jsb.st_size >= at.data && h.data_len <= (uint64_t)(jsb.st_size - at.data) &&
	     h.npieces <= h.data_len / 4 && h.lit_len < SIZE_MAX / 2;
	const struct j_slot *cur = NULL;
	if (ok) {
		for (int i = 0; i < 2; i++) {
			if (ms_pread_all(jfd, (char *)&sl[i], sizeof sl[i], at.slot0 + (off_t)i * at.step) != 0 ||
			    sl[i].sum != fnv(FNV0, &sl[i], offsetof(struct j_slot, sum)))
				continue;
			if (cur == NULL || sl[i].seq > cur->seq)
				cur = &sl[i];
		}
		/* A known state, the frontiers inside the rewrite, the synced
		 * one never below the last written. */
		ok = cur != NULL && cur->state <= J_DONE && cur->live >= h.off0 &&
		     cur->live <= cur->synced && cur->synced <= h.new_end;
	}
	if (ok) {
		pl.off0 = h.off0;
		pl.new_end = h.new_end;
		char *enc = h.data_len < SIZE_MAX / 2 ? malloc(h.data_len ? (size_t)h.data_len : 1) : NULL;
		ok = enc && ms_pread_all(jfd, enc, (size_t)h.data_len, at.data) == 0 &&
		     h.data_sum == fnv(FNV0, enc, (size_t)h.data_len) &&
		     plan_decode(&pl, enc, (size_t)h.data_len, (size_t)h.npieces, (size_t)h.lit_len) == 0;
		free(enc);
		/* Every piece inside the rewrite and the old file. */
		for (size_t i = 0; ok && i < pl.n; i++) {
			const struct ms_piece *q = &pl.p[i];
			ok = q->dst >= h.off0 && q->dst + q->len <= h.new_end &&
			     (q->lit ? q->src >= 0 && (uint64_t)(q->src + q->len) <= h.lit_len
			             : q->src >= h.off0 && q->src + q->len <= h.old_eof && q->src <= q->dst);
		}
	}
	if (!ok) {
		/* Not for this file, or damaged: keep it aside, never apply it
		 * blindly. */
		char aside[MS_PATH_MAX + 64];
		snprintf(aside, sizeof aside, "%s.%ld", path, (long)time(NULL));
		rename(path, aside);
		pt_warn("mailbox %s: rewrite journal does not match, kept as %s", f->path, aside);
		close(jfd);
		ms_plan_free(&pl);
		return 0;
	}
	pl.off0 = h.off0;
	pl.old_eof = h.old_eof;
	pl.new_end = h.new_end;
	struct journal j;
	memset(&j, 0, sizeof j);
	j.fd = jfd;
	j.at = at;
	j.s = *cur;
	j.seq = cur->seq;
	/* After a reboot only what was synced counts. */
	if (!same_boot(cur->boot, ms_rewrite_boot()))
		j.s.live = j.s.synced;
	boot_put(j.s.boot);
	int rc = 0;
	if (cur->state == J_DONE) {
		/* Finished and synced; only its removal was lost. */
		journal_drop(f, &j);
		ms_plan_free(&pl);
		return 0;
	}
	/* Extended already: a file shorter than that is another one. */
	if (cur->state != 0 && sb.st_size < h.new_end) {
		char aside[MS_PATH_MAX + 64];
		snprintf(aside, sizeof aside, "%s.%ld", path, (long)time(NULL));
		rename(path, aside);
		pt_warn("mailbox %s: rewrite journal does not match, kept as %s", f->path, aside);
		close(jfd);
		ms_plan_free(&pl);
		return 0;
	}
	if (cur->state == 0) {
		/* Died before the file was extended (and synced as such): the
		 * mbox still holds the old text, plus perhaps zeros we added
		 * or mail appended since. */
		int64_t size = sb.st_size, ext = h.new_end - h.old_eof;
		if (ext > 0 && size >= h.new_end && all_zero(f->fd, h.old_eof, h.new_end)) {
			j.s.live = h.new_end;
			if (extend(f, &pl, &j) != 0)
				rc = -1;
			else
				rc = run(f->fd, &pl, &j);
		} else {
			if (ext > 0 && size > h.old_eof && size <= h.new_end &&
			    all_zero(f->fd, h.old_eof, size) && ftruncate(f->fd, (off_t)h.old_eof) != 0)
				rc = -1;
			if (rc == 0) {
				journal_drop(f, &j);
				ms_plan_free(&pl);
				f->known_valid = 0;
				return 0;
			}
		}
	} else {
		rc = run(f->fd, &pl, &j);
	}
	ms_plan_free(&pl);
	if (rc != 0) {
		close(jfd);
		pt_status_set(st, 451, "SERVERBUG", "Cannot finish interrupted mailbox rewrite: %s",
		              strerror(errno));
		return -1;
	}
	if (journal_finish(f, &j) != 0) {
		pt_status_set(st, 451, "SERVERBUG", "Cannot retire mailbox rewrite journal: %s",
		              strerror(errno));
		return -1;
	}
	pt_warn("mailbox %s: finished an interrupted rewrite", f->path);
	f->known_valid = 0;
	return 0;
}
