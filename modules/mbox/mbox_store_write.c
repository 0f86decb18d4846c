/* Writing one folder's metadata back: in place when a message's storage
 * headers keep their length, else by a crash-safe rewrite (the recovery
 * copy first, restored by ms_recover at the next open). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "postern/fdio.h"
#include "postern/log.h"
#include "mbox_store.h"

#define CHUNK (256 * 1024)
#define RECOVER_NAME "postern.recover"

/* ---- writing ---- */

/* n bytes from off, all of them: a short read means the file changed
 * under us (EIO). */
int
ms_pread_all(int fd, char *p, size_t n, int64_t off)
{
	ssize_t r = pt_pread_full(fd, p, n, (off_t)off);
	if (r >= 0 && (size_t)r != n)
		errno = EIO;
	return r >= 0 && (size_t)r == n ? 0 : -1;
}

void
ms_block_of(const struct ms_folder *f, const struct ms_msg *r, int base, struct ms_block *k)
{
	memset(k, 0, sizeof *k);
	k->uid = r->info.uid;
	k->flags = r->info.flags & PT_F_SYSTEM;
	k->old = (r->state & MS_OLD) != 0;
	k->keywords = r->info.keywords;
	k->kwnames = (const char *const *)f->kw;
	k->nkwnames = f->nkw;
	k->base = base;
	k->validity = f->uidvalidity;
	k->last_uid = f->uidnext - 1;
}

/* Try to write r's block in place. 1 done, 0 does not fit, -1 error. */
int
ms_write_in_place(struct ms_folder *f, struct ms_msg *r, int base)
{
	if (r->blk_len == 0 || r->blk_len > 64 * 1024)
		return 0;
	char *old = malloc(r->blk_len);
	struct pt_strbuf clen = { 0 }, out = { 0 };
	int rc = -1;
	if (old == NULL || ms_pread_all(f->fd, old, r->blk_len, r->blk_off) != 0)
		goto out;
	struct pt_strbuf other = { 0 };
	ms_header_strip(old, r->blk_len, &other, &clen);
	/* The block must still be only storage headers. */
	if (other.len != 0) {
		pt_strbuf_free(&other);
		rc = 0;
		goto out;
	}
	struct ms_block k;
	ms_block_of(f, r, base, &k);
	k.clen = clen.p;
	k.clen_len = clen.len;
	if (ms_block_render(&k, r->blk_len, &out) < 0) {
		rc = 0;
		goto out;
	}
	rc = pt_pwrite_all(f->fd, out.p, out.len, r->blk_off) == 0 ? 1 : -1;
	if (rc == 1) {
		r->state = (r->state & ~(MS_DIRTY | MS_HAS_BASE | MS_PLAIN)) | (base ? MS_HAS_BASE : 0);
		ms_msg_disk_set(f, r);
	}
out:
	free(old);
	pt_strbuf_free(&clen);
	pt_strbuf_free(&out);
	return rc;
}

/* Copy [off, off+len) of the mbox to the recovery file (complete and
 * synced before it gets its final name). Returns its fd (read position
 * irrelevant) and the header length. */
static int
write_recovery(struct ms_folder *f, int64_t off, int64_t len, int64_t new_len, size_t *hdr_len)
{
	char path[MS_PATH_MAX + 32], tmp[MS_PATH_MAX + 40];
	snprintf(path, sizeof path, "%s/%s", f->idxdir, RECOVER_NAME);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if (ms_mkdirs(f->idxdir, 1) != 0)
		return -1;
	int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	char head[128];
	int hl = snprintf(head, sizeof head, "PTRECOVER1 %lld %lld %lld %llu\n", (long long)off,
	                  (long long)len, (long long)new_len, (unsigned long long)f->known.st_ino);
	int rc = pt_pwrite_all(fd, head, (size_t)hl, 0) == 0 ? 0 : -1;
	/* In the kernel (no copy through this process) where it can; the
	 * plain way for what it leaves. */
	int64_t done = 0;
	while (rc == 0 && done < len) {
		off_t in = (off_t)(off + done), out = (off_t)(hl + done);
		ssize_t k = copy_file_range(f->fd, &in, fd, &out, (size_t)(len - done), 0);
		if (k <= 0)
			break;
		done += k;
	}
	char *buf = rc == 0 && done < len ? malloc(CHUNK) : NULL;
	if (rc == 0 && done < len && buf == NULL)
		rc = -1;
	while (rc == 0 && done < len) {
		size_t n = (size_t)(len - done) < CHUNK ? (size_t)(len - done) : CHUNK;
		if (ms_pread_all(f->fd, buf, n, off + done) != 0 ||
		    pt_pwrite_all(fd, buf, n, hl + done) != 0)
			rc = -1;
		done += (int64_t)n;
	}
	free(buf);
	if (rc == 0 && (fsync(fd) != 0 || rename(tmp, path) != 0 || pt_fsync_dir(f->idxdir) != 0))
		rc = -1;
	if (rc != 0) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	*hdr_len = (size_t)hl;
	return fd;
}

static void
drop_recovery(struct ms_folder *f)
{
	char path[MS_PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/%s", f->idxdir, RECOVER_NAME);
	/* Durably gone: a copy a power cut brings back would roll the
	 * folder back to it at the next open. */
	if (unlink(path) == 0)
		pt_fsync_dir(f->idxdir);
}

int
ms_recover(struct ms_folder *f, struct pt_status *st)
{
	char path[MS_PATH_MAX + 32], tmp[MS_PATH_MAX + 40];
	snprintf(path, sizeof path, "%s/%s", f->idxdir, RECOVER_NAME);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if (ms_rewrite_recover(f, st) != 0)
		return -1;
	/* An unfinished copy: the mbox was not touched yet. */
	unlink(tmp);
	int rfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (rfd < 0)
		return 0;
	char head[128] = { 0 };
	ssize_t hn = pread(rfd, head, sizeof head - 1, 0);
	long long off, len, new_len;
	unsigned long long ino;
	char *nl = hn > 0 ? strchr(head, '\n') : NULL;
	struct stat rsb, sb;
	if (nl == NULL || sscanf(head, "PTRECOVER1 %lld %lld %lld %llu", &off, &len, &new_len, &ino) != 4 ||
	    fstat(rfd, &rsb) != 0 || fstat(f->fd, &sb) != 0 || off < 0 || len < 0 || new_len < 0 ||
	    rsb.st_size != (off_t)(nl + 1 - head) + len || (unsigned long long)sb.st_ino != ino) {
		/* Not for this file (replaced since): keep it aside, never
		 * apply it blindly. */
		char aside[MS_PATH_MAX + 64];
		snprintf(aside, sizeof aside, "%s.%ld", path, (long)time(NULL));
		rename(path, aside);
		pt_warn("mailbox %s: recovery copy does not match, kept as %s", f->path, aside);
		close(rfd);
		return 0;
	}
	size_t hl = (size_t)(nl + 1 - head);
	/* Mail appended after the interrupted rewrite stays behind it. */
	int64_t tail_from = off + (len > new_len ? len : new_len);
	int64_t tail_len = sb.st_size > tail_from ? sb.st_size - tail_from : 0;
	char *tailbuf = tail_len ? malloc((size_t)tail_len) : NULL;
	char *buf = malloc(CHUNK);
	int rc = buf && (tail_len == 0 || (tailbuf && ms_pread_all(f->fd, tailbuf, (size_t)tail_len,
	                                                          tail_from) == 0)) ? 0 : -1;
	for (int64_t done = 0; rc == 0 && done < len;) {
		size_t n = (size_t)(len - done) < CHUNK ? (size_t)(len - done) : CHUNK;
		if (ms_pread_all(rfd, buf, n, (int64_t)hl + done) != 0 ||
		    pt_pwrite_all(f->fd, buf, n, off + done) != 0)
			rc = -1;
		done += (int64_t)n;
	}
	if (rc == 0 && tail_len)
		rc = pt_pwrite_all(f->fd, tailbuf, (size_t)tail_len, off + len);
	if (rc == 0 && (ftruncate(f->fd, (off_t)(off + len + tail_len)) != 0 || fsync(f->fd) != 0))
		rc = -1;
	free(buf);
	free(tailbuf);
	close(rfd);
	if (rc != 0) {
		pt_status_set(st, 451, "SERVERBUG", "Cannot restore interrupted mailbox rewrite: %s",
		              strerror(errno));
		return -1;
	}
	if (unlink(path) == 0)
		pt_fsync_dir(f->idxdir);
	pt_warn("mailbox %s: restored %lld bytes from an interrupted rewrite", f->path, len);
	f->known_valid = 0;
	return 0;
}

/* Span of message i on disk: up to the next From_ line or EOF. */
int64_t
ms_span_end(const struct ms_folder *f, size_t i, int64_t eof)
{
	return i + 1 < f->n ? f->m[i + 1].from_off : eof;
}

size_t
ms_first_live(const struct ms_folder *f)
{
	size_t j = 0;
	while (j < f->n && (f->m[j].state & MS_EXPUNGE))
		j++;
	return j;
}

/* The rewrite's I/O in big pieces (a first write of a big folder moves
 * every message: two syscalls per message were a third of its time):
 * sequential reads of the recovery copy through a window (ms_window_get), sequential
 * writes of the mbox through a buffer. */
#define RW_BUF (1024 * 1024)

const char *
ms_window_get(struct ms_window *w, int64_t rel, size_t n)
{
	if (rel >= w->base && rel + (int64_t)n <= w->base + (int64_t)w->len)
		return w->p + (rel - w->base);
	size_t want = n > RW_BUF * 4 ? n : RW_BUF * 4;
	if (want > w->cap) {
		char *q = realloc(w->p, want);
		if (q == NULL)
			return NULL;
		w->p = q;
		w->cap = want;
	}
	ssize_t got = pt_pread_full(w->fd, w->p, want, (off_t)(w->skip + rel));
	if (got < 0 || (size_t)got < n) {
		if (got >= 0)
			errno = EIO;
		w->len = 0;
		return NULL;
	}
	w->base = rel;
	w->len = (size_t)got;
	return w->p;
}

struct wr_buffer {
	int fd;
	int64_t at;                    /* file offset of p[0] */
	struct pt_strbuf b;
};

static int
wr_flush(struct wr_buffer *w)
{
	if (w->b.len == 0)
		return 0;
	if (pt_pwrite_all(w->fd, w->b.p, w->b.len, w->at) != 0)
		return -1;
	w->at += (int64_t)w->b.len;
	w->b.len = 0;
	return 0;
}

static int
wr_put(struct wr_buffer *w, const char *p, size_t n)
{
	if (w->b.len + n > RW_BUF && wr_flush(w) != 0)
		return -1;
	if (n > RW_BUF)
		return pt_pwrite_all(w->fd, p, n, w->at) == 0 ? (w->at += (int64_t)n, 0) : -1;
	pt_strbuf_put(&w->b, p, n);
	return w->b.oom ? -1 : 0;
}

/* Rewrite from message s to the end of the file: the plan (ms_plan_build)
 * written over the old text in place when it only moves text up, else
 * from a recovery copy of the old text. */
static int
rewrite(struct ms_folder *f, size_t s, int64_t eof, struct pt_status *st)
{
	size_t cnt = f->n - s, nw = 0;
	struct ms_msg *nm = malloc((cnt ? cnt : 1) * sizeof *nm);
	struct ms_plan pl;
	memset(&pl, 0, sizeof pl);
	int rc = -1;
	if (nm == NULL || ms_plan_build(f, s, eof, &pl, nm, &nw) != 0) {
		pt_status_set(st, 451, "", "Cannot rewrite mailbox: %s", strerror(errno ? errno : ENOMEM));
		goto out;
	}
	int64_t off0 = pl.off0;
	/* Text that only moves up is rewritten over itself (no copy) when
	 * the region is big enough for the copy's second write to matter:
	 * below that the copy costs little. */
	int ip = pl.new_end >= eof && eof - off0 >= (int64_t)f->set->rewrite_copy_below
	         ? ms_rewrite_in_place(f, s, eof, &pl, nm, nw, st) : 0;
	if (ip != 0) {
		rc = ip > 0 ? 0 : -1;
		goto out;
	}
	size_t hl;
	int rfd = write_recovery(f, off0, eof - off0, pl.new_end - off0, &hl);
	if (rfd < 0) {
		pt_status_set(st, 451, "", "Cannot write mailbox recovery copy: %s", strerror(errno));
		goto out;
	}
	struct ms_window rw = { .fd = rfd, .skip = (int64_t)hl };
	struct wr_buffer wb = { .fd = f->fd, .at = off0 };
	rc = 0;
	for (size_t i = 0; i < pl.n && rc == 0; i++) {
		const struct ms_piece *q = &pl.p[i];
		if (q->lit) {
			rc = wr_put(&wb, pl.lits.p + q->src, q->len);
			continue;
		}
		for (size_t at = 0; at < q->len && rc == 0;) {
			size_t n = q->len - at < RW_BUF ? q->len - at : RW_BUF;
			const char *src = ms_window_get(&rw, q->src - off0 + (int64_t)at, n);
			rc = src ? wr_put(&wb, src, n) : -1;
			at += n;
		}
	}
	if (rc == 0)
		rc = wr_flush(&wb);
	pt_strbuf_free(&wb.b);
	free(rw.p);
	if (rc == 0 && (wb.at != pl.new_end || ftruncate(f->fd, (off_t)pl.new_end) != 0 ||
	                fdatasync(f->fd) != 0))
		rc = -1;
	int e = errno;
	close(rfd);
	if (rc != 0) {
		/* Put the original bytes back now; if that fails too, the
		 * recovery copy stays for the next open. */
		struct pt_status ignore;
		if (ms_recover(f, &ignore) != 0)
			pt_error("mailbox %s: rewrite failed and the restore too; recovery copy kept",
			         f->path);
		f->known_valid = 0;
		pt_status_set(st, 451, "", "Cannot rewrite mailbox: %s", strerror(e ? e : EIO));
		goto out;
	}
	drop_recovery(f);
	ms_rewrite_list_put(f, s, nm, nw);
out:
	free(nm);
	ms_plan_free(&pl);
	return rc;
}

int
ms_folder_write(struct ms_folder *f, struct pt_status *st)
{
	if (f->fd < 0)
		return 0;
	f->dirty_hint = 1;             /* until all is written */
	/* Records 1..clean_below-1 are known to need nothing (a sync that
	 * only read new mail): not scanned. */
	size_t skip = f->clean_below > 1 && f->clean_below <= f->n ? f->clean_below : 1;
	f->clean_below = 0;
	/* Pending flag changes go into the mbox with everything else. */
	for (size_t i = 0; i < f->n; i = i ? i + 1 : skip)
		if ((f->m[i].state & (MS_LAZY | MS_DIRTY)) == MS_LAZY)
			f->m[i].state |= MS_DIRTY;
	size_t live0 = ms_first_live(f);
	if (live0 < f->n && (!f->base_ok || live0 != 0 || !(f->m[live0].state & MS_HAS_BASE)))
		f->m[live0].state |= MS_DIRTY;
	int any = 0;
	size_t s = f->n;
	for (size_t i = 0; i < f->n; i = i ? i + 1 : skip) {
		struct ms_msg *r = &f->m[i];
		if (r->state & MS_EXPUNGE) {
			s = i;
			any = 1;
			break;
		}
		if (!(r->state & MS_DIRTY))
			continue;
		any = 1;
		int rc = ms_write_in_place(f, r, i == live0);
		if (rc < 0) {
			pt_status_set(st, 451, "", "Cannot write mailbox: %s", strerror(errno));
			f->known_valid = 0;
			return -1;
		}
		if (rc == 0) {
			s = i;
			break;
		}
	}
	if (!any) {
		f->base_ok = 1;
		return 0;
	}
	if (!f->writable) {
		pt_status_set(st, 450, "NOPERM", "Mailbox is read-only");
		return -1;
	}
	struct stat sb;
	if (fstat(f->fd, &sb) != 0) {
		pt_status_set(st, 451, "", "Cannot stat mailbox: %s", strerror(errno));
		return -1;
	}
	if (s < f->n) {
		if (rewrite(f, s, sb.st_size, st) != 0)
			return -1;
	} else if (fdatasync(f->fd) != 0) {
		pt_status_set(st, 451, "", "Cannot write mailbox: %s", strerror(errno));
		f->known_valid = 0;
		return -1;
	}
	f->base_ok = 1;
	f->nkw_written = f->nkw;
	if (fstat(f->fd, &f->known) == 0)
		f->known_valid = 1;
	/* The mbox (synced) holds every change now. */
	ms_flog_drop(f);
	f->dirty_hint = 0;
	ms_shared_bump(f);
	ms_index_save(f);
	return 0;
}
