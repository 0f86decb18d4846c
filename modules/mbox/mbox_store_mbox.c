/* An open folder as a session sees it: the message list as of its last
 * sync (with \Recent taken by read-write opens), reading messages in wire
 * form, flag changes, expunge, and appending new messages with UIDs.
 * Read-only opens (EXAMINE, STATUS) never take \Recent or change flags,
 * but do write missing X-UID/X-IMAPbase so the UIDs they report stay.
 *
 * Flag changes are lazy (as Dovecot's mbox_lazy_writes): they go to the
 * flag log beside the index at once (fdatasync'd with mbox_flag_fsync;
 * every open of the folder, POP3's too, sees them from there) and into the mbox's Status/
 * X-Status/X-Keywords headers at the next write of the file: EXPUNGE,
 * an append through the store, the close of a read-write open (CLOSE,
 * SELECT of another folder, LOGOUT, POP3 QUIT), or when the log grows
 * past its bound. Programs that read the mbox file itself (mail(1),
 * mutt) see a change once the session that made it has closed the
 * folder, as with Dovecot. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mbox_store.h"
#include "postern/fdio.h"
#include "postern/log.h"

/* info() hands out copies: callers may hold a few at once (one message's
 * info across a read of another), none across a sync. */
#define RING 8
struct ms_info_ring {
	struct pt_msg_info v[RING];
	unsigned next;
};

struct pt_mbox *
ms_mbox_open(struct pt_mstore *ms, const char *name, int readonly, struct pt_status *st)
{
	char norm[MS_NAME_MAX + 1], path[MS_PATH_MAX];
	if (ms_name_check(name, norm, sizeof norm, st) != 0)
		return NULL;
	if (ms_name_path(ms, norm, path, sizeof path) != 0) {
		pt_status_set(st, 550, "CANNOT", "Invalid mailbox name");
		return NULL;
	}
	struct pt_mbox *mb = calloc(1, sizeof *mb);
	if (mb == NULL) {
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return NULL;
	}
	mb->ms = ms;
	mb->readonly = readonly;
	mb->ring = calloc(1, sizeof *mb->ring);
	if (mb->ring == NULL) {
		free(mb);
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return NULL;
	}
	if (ms_folder_init(&mb->f, ms->root, norm, path, &ms->set, st) != 0) {
		free(mb->ring);
		free(mb);
		return NULL;
	}
	/* Through the folder's directory fd: a symlink is refused. */
	if (strcmp(norm, "INBOX") != 0 && ms_folder_exists(&mb->f, st) != 0) {
		ms_mbox_close(mb);
		return NULL;
	}
	int changed;
	if (ms_mbox_sync(mb, &changed, st) != 0) {
		ms_mbox_close(mb);
		return NULL;
	}
	return mb;
}

/* Write pending flag changes into the mbox (see the top): at the close
 * of a read-write open. Failures leave them in the log. */
static void
flush_lazy(struct pt_mbox *mb)
{
	struct ms_folder *f = &mb->f;
	/* No log, no pending change (a write removes both together). */
	if (mb->readonly || f->fd < 0 || !f->writable || (f->log_valid && f->log_known.st_ino == 0))
		return;
	size_t i;
	struct mbox_lock lk;
	struct pt_status st;
	int ch;
	if (ms_folder_lock(f, &lk, 0, &st) != 0)
		return;
	if (ms_folder_load(f, &ch, &st) == 0) {
		for (i = 0; i < f->n && !(f->m[i].state & MS_LAZY);)
			i++;
		if (i < f->n && ms_folder_write(f, &st) != 0)
			pt_warn("mailbox %s: flag changes stay in the log: %s", f->path, st.text);
	}
	ms_folder_unlock(f, &lk);
}

void
ms_mbox_close(struct pt_mbox *mb)
{
	if (mb == NULL)
		return;
	flush_lazy(mb);
	ms_cache_close(mb);
	ms_folder_free(&mb->f);
	free(mb->snap);
	free(mb->recent);
	free(mb->ring);
	free(mb);
}

/* In an ascending UID list? */
static int
uid_in(const uint32_t *u, size_t n, uint32_t uid)
{
	/* Strictly ascending: a list spanning n UIDs holds all of them (the
	 * first open of a folder takes \Recent for every message), and
	 * info() asks once per message of a SEARCH or sync. */
	if (n && u[n - 1] - u[0] == n - 1)
		return uid >= u[0] && uid <= u[n - 1];
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (u[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && u[lo] == uid;
}

static uint32_t
view_uid(const struct pt_mbox *mb, size_t i)
{
	return mb->snap ? mb->snap[i].uid : mb->f.m[i].info.uid;
}

static size_t
view_find(const struct pt_mbox *mb, uint32_t uid)
{
	size_t lo = 0, hi = mb->nview;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (view_uid(mb, mid) < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < mb->nview && view_uid(mb, lo) == uid ? lo : (size_t)-1;
}

/* A message's flags as this open shows them: its own, and \Recent when
 * this open took it (or, read-only, while no one has). */
static uint32_t
flags_seen(const struct pt_mbox *mb, uint32_t flags, int old, uint32_t uid)
{
	flags &= PT_F_SYSTEM;
	if (mb->recent_by_state ? !old : uid_in(mb->recent, mb->nrecent, uid))
		flags |= PT_F_RECENT;
	return flags;
}

/* Message i of the list as the last sync left it, f->m being that list. */
static void
derive(const struct pt_mbox *mb, size_t i, struct pt_msg_info *out)
{
	const struct ms_msg *r = &mb->f.m[i];
	*out = r->info;
	out->flags = flags_seen(mb, r->info.flags, (r->state & MS_OLD) != 0, out->uid);
}

/* Before f->m may be reloaded outside a sync: keep the list as it is. */
static int
snap_take(struct pt_mbox *mb, struct pt_status *st)
{
	if (mb->snap != NULL || !mb->synced || mb->nview == 0)
		return 0;
	struct pt_msg_info *v = malloc(mb->nview * sizeof *v);
	if (v == NULL) {
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return -1;
	}
	for (size_t i = 0; i < mb->nview; i++)
		derive(mb, i, &v[i]);
	mb->snap = v;
	return 0;
}

/* After such an operation: f->m still is the list unless the file moved
 * (stale), the operation failed midway, or it removed messages. */
static void
snap_settle(struct pt_mbox *mb, int had_snap, int keep)
{
	if (had_snap || keep || mb->stale || mb->f.n != mb->nview)
		return;
	free(mb->snap);
	mb->snap = NULL;
}

/* Anything to write? A scan of a big list touches every record's cache
 * line: dirty_hint skips it while nothing can have made one dirty. */
static int
any_dirty(struct ms_folder *f)
{
	if (!f->base_ok && f->n > 0)
		return 1;
	if (!f->dirty_hint)
		return 0;
	for (size_t i = 0; i < f->n; i++)
		if (f->m[i].state & (MS_DIRTY | MS_EXPUNGE))
			return 1;
	f->dirty_hint = 0;
	return 0;
}

/* Lock, bring the file state up to date and store missing metadata
 * (UIDs). The lock stays held for the caller; *changed tells whether the
 * file state moved. */
static int
lock_and_load(struct pt_mbox *mb, struct mbox_lock *lk, int *changed, struct pt_status *st)
{
	struct ms_folder *f = &mb->f;
	if (ms_folder_lock(f, lk, 0, st) != 0)
		return -1;
	/* Only a list about to be reloaded needs its copy (snap_take). */
	if (mb->snap_on_change && !ms_folder_current(f) && snap_take(mb, st) != 0) {
		ms_folder_unlock(f, lk);
		return -1;
	}
	if (ms_folder_load(f, changed, st) != 0) {
		ms_folder_unlock(f, lk);
		return -1;
	}
	if (*changed)
		mb->stale = 1;
	return 0;
}

static int
write_if_needed(struct ms_folder *f, struct pt_status *st)
{
	if (f->fd < 0 || !f->writable || !any_dirty(f))
		return 0;
	return ms_folder_write(f, st);
}

/* Only new messages at the end of the file (a local delivery), seen by
 * a synced read-write open whose list is the file's as it knew it: the
 * new messages are read, take their \Recent and UIDs, and go to the
 * append log; nothing of the rest is looked at, copied or saved again
 * (the work follows the new mail, not the folder). 1 done, 0 not that
 * case (nothing changed: the full sync follows), -1 error. */
static int
sync_appended(struct pt_mbox *mb, int *changed, struct pt_status *st)
{
	struct ms_folder *f = &mb->f;
	if (!mb->synced || mb->stale || mb->snap != NULL || mb->readonly || mb->recent_by_state ||
	    f->fd < 0 || !f->writable || !f->known_valid || mb->nview != f->n || f->dirty_hint ||
	    f->not_old_hint || f->locked)
		return 0;
	struct mbox_lock lk;
	if (ms_folder_lock(f, &lk, 0, st) != 0)
		return -1;
	struct stat pre = f->known;
	size_t pre_n = f->n;
	uint32_t pre_uidnext = f->uidnext;
	struct ms_msg first, last;
	memset(&first, 0, sizeof first);
	memset(&last, 0, sizeof last);
	if (pre_n) {
		first = f->m[0];
		last = f->m[pre_n - 1];
	}
	struct pt_status ignore;
	int lt = ms_folder_load_appended(f, &ignore);
	if (lt < 0) {
		ms_folder_unlock(f, &lk);
		return 0;
	}
	/* From here f->m[0..pre_n) is still the session's list. */
	size_t ntaken = 0, nnew = f->n - pre_n;
	uint32_t *rec = malloc((mb->nrecent + nnew + 1) * sizeof *rec);
	if (rec == NULL) {
		mb->stale = 1;
		ms_folder_unlock(f, &lk);
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return -1;
	}
	/* \Recent of the new messages, under the lock that writes 'O'. */
	for (size_t i = pre_n; i < f->n; i++)
		if (!(f->m[i].state & MS_OLD)) {
			ms_rec_touch(f, i);
			f->m[i].state |= MS_OLD | MS_DIRTY;
			f->dirty_hint = 1;
			rec[mb->nrecent + ntaken++] = f->m[i].info.uid;
		}
	int rc = 0;
	if (ntaken || lt == 1 || !f->base_ok) {
		/* The full save the write would end with becomes a batch of
		 * the append log: the new records, and the first one when its
		 * X-IMAPbase was written. */
		f->index_defer = 1;
		f->index_deferred = 0;
		/* No flag log, nothing dirty before: the old records need no
		 * look (the first may get its X-IMAPbase). */
		f->clean_below = pre_n;
		rc = ms_folder_write(f, st);
		f->index_defer = 0;
		f->clean_below = 0;
	}
	if (rc == 0) {
		size_t at = 0;
		int nat = pre_n && memcmp(&first, &f->m[0], sizeof first) != 0;
		/* A rewrite that had to start in the old part (no room for the
		 * first message's X-IMAPbase) moved every later message: the
		 * last old one tells. */
		int moved = f->n < pre_n || (pre_n > 1 && memcmp(&last, &f->m[pre_n - 1], sizeof last) != 0);
		if (moved || ms_tail_append(f, &pre, pre_n, pre_uidnext, &at, (size_t)nat) != 0)
			ms_index_save(f);
		f->not_old_hint = 0;
	}
	f->index_deferred = 0;
	ms_folder_unlock(f, &lk);
	if (rc != 0) {
		/* Nothing was taken: the next (full) sync tries again. */
		for (size_t k = 0; k < ntaken; k++) {
			size_t i = ms_folder_find(f, rec[mb->nrecent + k]);
			if (i != (size_t)-1) {
				ms_rec_touch(f, i);
				f->m[i].state &= ~MS_OLD;
			}
		}
		free(rec);
		mb->stale = 1;
		return -1;
	}
	/* This open's \Recent: what it held (all still there) and what it
	 * took now, both ascending and the new UIDs above the old. */
	if (mb->nrecent)
		memcpy(rec, mb->recent, mb->nrecent * sizeof *rec);
	free(mb->recent);
	mb->recent = rec;
	mb->nrecent += ntaken;
	mb->nview = f->n;
	*changed = f->n != pre_n ? 2 : 0;
	return 1;
}

int
ms_mbox_sync(struct pt_mbox *mb, int *changed, struct pt_status *st)
{
	struct ms_folder *f = &mb->f;
	*changed = 0;
	ms_cache_tick(mb);
	if (mb->synced && !mb->stale && ms_folder_current(f))
		return 0;
	int fast = sync_appended(mb, changed, st);
	if (fast != 0)
		return fast < 0 ? -1 : 0;
	/* The list before, to tell what changed (and to stay the list if
	 * this sync fails). */
	if (snap_take(mb, st) != 0)
		return -1;
	struct mbox_lock lk;
	int ch;
	if (lock_and_load(mb, &lk, &ch, st) != 0)
		return -1;
	/* \Recent goes to the first read-write open that sees a message:
	 * 'O' is written under this same lock, so no other open gets it. */
	uint32_t *taken = NULL;
	size_t ntaken = 0;
	int by_state = mb->readonly || !f->writable;
	if (!by_state && f->not_old_hint) {
		for (size_t i = 0; i < f->n; i++)
			if (!(f->m[i].state & MS_OLD))
				ntaken++;
		if (ntaken && (taken = malloc(ntaken * sizeof *taken)) == NULL) {
			ms_folder_unlock(f, &lk);
			pt_status_set(st, 451, "SERVERBUG", "Out of memory");
			return -1;
		}
		ntaken = 0;
		for (size_t i = 0; taken && i < f->n; i++)
			if (!(f->m[i].state & MS_OLD)) {
				ms_rec_touch(f, i);
				f->m[i].state |= MS_OLD | MS_DIRTY;
				f->dirty_hint = 1;
				taken[ntaken++] = f->m[i].info.uid;
			}
	}
	int rc = write_if_needed(f, st);
	ms_folder_unlock(f, &lk);
	if (rc == 0 && !by_state)
		f->not_old_hint = 0;   /* every message is 'O' now */
	if (rc != 0) {
		/* Nothing was taken: the next sync tries again. */
		for (size_t i = 0; i < f->n; i++)
			if (uid_in(taken, ntaken, f->m[i].info.uid)) {
				ms_rec_touch(f, i);
				f->m[i].state &= ~MS_OLD;
			}
		free(taken);
		return -1;
	}
	/* This open's \Recent: what it took now, and what it held before
	 * of the messages still there (both lists ascending). */
	uint32_t *rec = NULL;
	size_t nrec = 0;
	/* An open that showed \Recent by state (the file was not writable
	 * for it) took none of it: now writable, it holds only what it took
	 * under this lock; what another open took meanwhile loses \Recent
	 * here (the diff below reports it). */
	if (!by_state) {
		size_t most = ntaken + (mb->recent_by_state ? 0 : mb->nrecent);
		if (most && (rec = malloc(most * sizeof *rec)) == NULL) {
			free(taken);
			pt_status_set(st, 451, "SERVERBUG", "Out of memory");
			return -1;
		}
		size_t a = 0, b = 0, nold = mb->recent_by_state ? 0 : mb->nrecent;
		while (a < ntaken || b < nold) {
			uint32_t u;
			int now = 1;
			if (b == nold || (a < ntaken && taken[a] < mb->recent[b])) {
				u = taken[a++];
			} else if (a == ntaken || mb->recent[b] < taken[a]) {
				u = mb->recent[b++];
				now = 0;
			} else {
				u = taken[a++];
				b++;
			}
			if (now || ms_folder_find(f, u) != (size_t)-1)
				rec[nrec++] = u;
		}
	}
	free(taken);
	free(mb->recent);
	mb->recent = rec;
	mb->nrecent = nrec;
	mb->recent_by_state = by_state;
	int diff = !mb->synced || f->n != mb->nview;
	for (size_t i = 0; !diff && i < f->n; i++) {
		struct pt_msg_info now;
		derive(mb, i, &now);
		const struct pt_msg_info *was = &mb->snap[i];
		diff = was->uid != now.uid || was->flags != now.flags || was->keywords != now.keywords ||
		       was->modseq != now.modseq;
	}
	free(mb->snap);
	mb->snap = NULL;
	mb->nview = f->n;
	mb->synced = 1;
	mb->stale = 0;
	*changed = diff;
	return 0;
}

int
ms_mbox_uptodate(struct pt_mbox *mb)
{
	return mb->synced && !mb->stale && ms_folder_current(&mb->f);
}

size_t
ms_mbox_count(const struct pt_mbox *mb)
{
	return mb->nview;
}

const struct pt_msg_info *
ms_mbox_info(const struct pt_mbox *mb, size_t i)
{
	if (i >= mb->nview)
		return NULL;
	if (mb->snap)
		return &mb->snap[i];
	struct ms_info_ring *ring = mb->ring;
	struct pt_msg_info *out = &ring->v[ring->next++ % RING];
	derive(mb, i, out);
	return out;
}

#ifndef NDEBUG
/* A change that did not ms_rec_touch its record shows here, in every
 * test run of a debug build. */
static void
check_briefs(const struct pt_mbox *mb, size_t from, const struct pt_msg_brief *o, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		struct pt_msg_info one;
		derive(mb, from + k, &one);
		if (one.uid != o[k].uid || one.flags != o[k].flags || one.keywords != o[k].keywords ||
		    one.modseq != o[k].modseq) {
			pt_error("mailbox %s: stale brief of UID %u", mb->f.path, one.uid);
			abort();
		}
	}
}
#endif

void
ms_mbox_briefs(const struct pt_mbox *mb, size_t from, size_t n, struct pt_msg_brief *out)
{
	unsigned char got[1024];
	struct pt_msg_info one;

	if (from >= mb->nview)
		return;
	if (n > mb->nview - from)
		n = mb->nview - from;
	/* The index's briefs where they are still the list's (24 bytes a
	 * message instead of the record's 112: a big folder's SELECT reads
	 * a fifth of the memory), the records elsewhere. */
	for (size_t c = 0; c < n; c += sizeof got) {
		size_t w = n - c < sizeof got ? n - c : sizeof got;
		struct pt_msg_brief *o = out + c;
		if (mb->snap == NULL)
			ms_index_briefs(&mb->f, from + c, w, o, got);
		else
			memset(got, 0, w);
		size_t k = 0;
		if (mb->snap == NULL && !mb->recent_by_state && mb->nrecent == 0) {
			/* The common case (this open holds no \Recent): the
			 * leading run of briefs in one tight pass. */
			while (k < w && got[k]) {
				o[k].flags &= PT_F_SYSTEM;
				k++;
			}
#ifndef NDEBUG
			check_briefs(mb, from + c, o, k);
#endif
		}
		for (; k < w; k++) {
			if (!got[k]) {
				const struct pt_msg_info *m = mb->snap ? &mb->snap[from + c + k] : &one;
				if (mb->snap == NULL)
					derive(mb, from + c + k, &one);
				o[k].uid = m->uid;
				o[k].flags = m->flags;
				o[k].keywords = m->keywords;
				o[k].modseq = m->modseq;
				continue;
			}
			o[k].flags = flags_seen(mb, o[k].flags, (o[k].flags & MS_BRIEF_OLD) != 0, o[k].uid);
#ifndef NDEBUG
			check_briefs(mb, from + c + k, &o[k], 1);
#endif
		}
	}
}

size_t
ms_mbox_find(const struct pt_mbox *mb, uint32_t uid)
{
	return view_find(mb, uid);
}

uint32_t
ms_mbox_uidvalidity(const struct pt_mbox *mb)
{
	return mb->f.uidvalidity;
}

uint32_t
ms_mbox_uidnext(const struct pt_mbox *mb)
{
	/* As of the last sync: at least one above the last message seen. */
	uint32_t n = mb->nview ? view_uid(mb, mb->nview - 1) + 1 : 1;
	return mb->f.uidnext > n ? mb->f.uidnext : n;
}

size_t
ms_mbox_keyword_count(const struct pt_mbox *mb)
{
	return mb->f.nkw;
}

const char *
ms_mbox_keyword_name(const struct pt_mbox *mb, size_t i)
{
	return i < mb->f.nkw ? mb->f.kw[i] : NULL;
}

int
ms_mbox_keyword_index(struct pt_mbox *mb, const char *name, int create)
{
	return ms_folder_keyword(&mb->f, name, create);
}

/* The file state must be current before offsets are used. */
static int
refresh(struct pt_mbox *mb, struct mbox_lock *lk, struct pt_status *st)
{
	int ch;
	if (lock_and_load(mb, lk, &ch, st) != 0)
		return -1;
	if (write_if_needed(&mb->f, st) != 0) {
		ms_folder_unlock(&mb->f, lk);
		return -1;
	}
	return 0;
}

int
ms_mbox_read(struct pt_mbox *mb, uint32_t uid, struct pt_msg_text *out, struct pt_status *st)
{
	struct ms_folder *f = &mb->f;
	memset(out, 0, sizeof *out);
	/* A run of reads (SEARCH BODY) through the cache's window: one pread
	 * per run of neighbours, one stat a message (not a malloc, a pread and
	 * two stats). */
	int fast = ms_cache_read(mb, uid, out, st);
	if (fast != 0)
		return fast < 0 ? -1 : 0;
	struct mbox_lock lk = { .fd = -1 };
	if (!ms_folder_current(f)) {
		int had = mb->snap != NULL;
		if (snap_take(mb, st) != 0)
			return -1;
		int rc = refresh(mb, &lk, st);
		snap_settle(mb, had, rc != 0);
		if (rc != 0)
			return -1;
	}
	size_t i = ms_folder_find(f, uid);
	struct pt_strbuf raw = { 0 }, wire = { 0 };
	int rc = -1;
	if (i == (size_t)-1 || view_find(mb, uid) == (size_t)-1) {
		pt_status_set(st, 550, "NONEXISTENT", "Message was expunged");
		goto out;
	}
	if (ms_folder_read_raw(f, i, &raw, st) != 0)
		goto out;
	const struct ms_msg *r = &f->m[i];
	size_t skip = (size_t)(r->hdr_off - r->from_off);
	if (ms_wire_form(raw.p + skip, raw.len - skip, &wire, &out->hdr_len,
	                 (r->state & MS_RD) != 0) != 0) {
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		goto out;
	}
	if (wire.p == NULL && (wire.p = malloc(1)) == NULL) {
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		goto out;
	}
	out->data = wire.p;
	out->len = wire.len;
	out->priv = wire.p;
	wire.p = NULL;
	rc = 0;
out:
	ms_folder_unlock(f, &lk);
	pt_strbuf_free(&raw);
	pt_strbuf_free(&wire);
	return rc;
}

void
ms_mbox_release(struct pt_mbox *mb, struct pt_msg_text *t)
{
	(void)mb;
	free(t->priv);
	memset(t, 0, sizeof *t);
}

/* A flag change that only appends to the flag log does not write the
 * mbox: while the file is exactly as this open knows it (nothing to
 * reload), an OFD lock on the mbox is enough. Every writer of this store
 * (and every fcntl-locking program) holds that lock too, so none runs
 * in between; a program that only dotlocks may rewrite the file at the
 * same time, which the log's records are made for (the mbox state they
 * were made on no longer matches where that program changed a message).
 * It spares the dotlock's file operations in the spool directory. 1 the
 * lock is held, 0 take the full lock. */
static int
fast_lock(struct pt_mbox *mb)
{
	struct ms_folder *f = &mb->f;
	if (!mb->synced || mb->stale || f->fd < 0 || !f->writable || !f->base_ok || f->locked ||
	    !f->log_valid || any_dirty(f))
		return 0;
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(f->fd, F_OFD_SETLK, &fl) != 0)
		return 0;
	if (ms_folder_current(f))
		return 1;
	fl.l_type = F_UNLCK;
	fcntl(f->fd, F_OFD_SETLK, &fl);
	return 0;
}

static void
fast_unlock(struct ms_folder *f)
{
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_UNLCK;
	fl.l_whence = SEEK_SET;
	fcntl(f->fd, F_OFD_SETLK, &fl);
}

/* Flag writes, absolute (u) or relative (c), one lock for all: the file
 * state is reloaded under that lock first, so relative changes apply to
 * what is really there now. */
static int
apply_flags(struct pt_mbox *mb, const struct pt_flag_update *u, const struct pt_flag_change *c,
            size_t n, uint64_t unchangedsince, unsigned char *refused, struct pt_status *st)
{
	struct ms_folder *f = &mb->f;
	if (mb->readonly) {
		pt_status_set(st, 550, "CANNOT", "Mailbox is read-only");
		return -1;
	}
	int had = mb->snap != NULL;
	struct mbox_lock lk = { .fd = -1 };
	int ch;
	int fast = fast_lock(mb);
	if (!fast) {
		mb->snap_on_change = 1;
		int lr = lock_and_load(mb, &lk, &ch, st);
		mb->snap_on_change = 0;
		if (lr != 0)
			return -1;
	}
	uint64_t kwmask = f->nkw >= 64 ? ~0ull : (1ull << f->nkw) - 1;
	uint64_t modseq = 0;           /* one for the whole change */
	/* Lazy (the flag log) unless the file is written now anyway. */
	int lazy = f->fd >= 0 && f->writable && !any_dirty(f);
	size_t *logged = lazy && n ? malloc(n * sizeof *logged) : NULL;
	size_t nlogged = 0;
	if (logged == NULL)
		lazy = 0;
	size_t next = 0;               /* changes come mostly in UID order */
	for (size_t k = 0; k < n; k++) {
		uint32_t want = u ? u[k].uid : c[k].uid;
		size_t i = next < f->n && f->m[next].info.uid == want ? next : ms_folder_find(f, want);
		if (i == (size_t)-1)
			continue;
		next = i + 1;
		ms_rec_touch(f, i);
		struct ms_msg *r = &f->m[i];
		uint32_t fl;
		uint64_t kw;
		if (refused != NULL && r->info.modseq > unchangedsince) {
			refused[k] = 1;   /* changed since the client looked */
			continue;
		}
		if (u) {
			fl = u[k].flags & PT_F_SYSTEM;
			kw = u[k].keywords & kwmask;
		} else {
			fl = ((r->info.flags | c[k].add) & ~c[k].remove) & PT_F_SYSTEM;
			kw = ((r->info.keywords | c[k].kw_add) & ~c[k].kw_remove) & kwmask;
		}
		if (r->info.flags != fl || r->info.keywords != kw) {
			r->info.flags = fl;
			r->info.keywords = kw;
			if (modseq == 0)
				modseq = ms_folder_next_modseq(f);
			r->info.modseq = modseq;
			uint32_t disk = (r->state & MS_DISK_MASK) >> MS_DISK_SHIFT;
			if (fl != disk || kw != r->disk_kw)
				r->state |= MS_LAZY;
			else
				r->state &= ~MS_LAZY;   /* back to what the mbox says */
			if (lazy) {
				logged[nlogged++] = i;
			} else {
				r->state |= MS_DIRTY;
				f->dirty_hint = 1;
			}
		}
	}
	int rc = 0;
	if (lazy && nlogged) {
		int lr = ms_flog_append(f, logged, nlogged);
		if (lr != 0) {
			/* No log (or too big a one): into the mbox now. */
			for (size_t k = 0; k < nlogged; k++)
				f->m[logged[k]].state |= MS_DIRTY;
			f->dirty_hint = 1;
			if (lr < 0)
				pt_warn("mailbox %s: flag log unusable, writing the mbox", f->path);
		}
		/* No ms_shared_bump: the log's new size tells every open, here
		 * too, which then replays only the new records. */
	}
	free(logged);
	if (fast && any_dirty(f)) {
		/* The mbox is to be written after all: the full lock (the OFD
		 * lock is the same one, kept), and the file as it is now. */
		mb->snap_on_change = 1;
		rc = lock_and_load(mb, &lk, &ch, st);
		mb->snap_on_change = 0;
		fast = rc != 0;
	}
	if (rc == 0)
		rc = write_if_needed(f, st);
	if (fast)
		fast_unlock(f);
	else
		ms_folder_unlock(f, &lk);
	/* Unchanged file: f->m, now with these flags, is the list again. */
	snap_settle(mb, had, rc != 0);
	if (rc != 0)
		return -1;
	for (size_t k = 0; mb->snap && k < n; k++) {
		uint32_t uid = u ? u[k].uid : c[k].uid;
		size_t j = view_find(mb, uid);
		size_t i = ms_folder_find(f, uid);
		if (j == (size_t)-1 || i == (size_t)-1)
			continue;
		mb->snap[j].flags = (mb->snap[j].flags & PT_F_RECENT) | f->m[i].info.flags;
		mb->snap[j].keywords = f->m[i].info.keywords;
		mb->snap[j].modseq = f->m[i].info.modseq;
	}
	return 0;
}

int
ms_mbox_set_flags(struct pt_mbox *mb, const struct pt_flag_update *u, size_t n,
                  struct pt_status *st)
{
	return apply_flags(mb, u, NULL, n, 0, NULL, st);
}

int
ms_mbox_change_flags(struct pt_mbox *mb, const struct pt_flag_change *c, size_t n,
                     struct pt_status *st)
{
	return apply_flags(mb, NULL, c, n, 0, NULL, st);
}

int
ms_mbox_change_flags_cond(struct pt_mbox *mb, const struct pt_flag_change *c, size_t n,
                          uint64_t unchangedsince, unsigned char *refused, struct pt_status *st)
{
	return apply_flags(mb, NULL, c, n, unchangedsince, refused, st);
}

int
ms_mbox_expunge(struct pt_mbox *mb, const uint32_t *uids, size_t n, struct pt_status *st)
{
	struct ms_folder *f = &mb->f;
	if (mb->readonly) {
		pt_status_set(st, 550, "CANNOT", "Mailbox is read-only");
		return -1;
	}
	/* Removed messages stay in the list until the next sync. */
	if (snap_take(mb, st) != 0)
		return -1;
	struct mbox_lock lk;
	int ch;
	if (lock_and_load(mb, &lk, &ch, st) != 0)
		return -1;
	size_t any = 0;
	for (size_t k = 0; k < n; k++) {
		size_t i = ms_folder_find(f, uids[k]);
		if (i != (size_t)-1 && !(f->m[i].state & MS_EXPUNGE)) {
			f->m[i].state |= MS_EXPUNGE;
			f->dirty_hint = 1;
			any++;
		}
	}
	/* An expunge is a change: HIGHESTMODSEQ moves, and the UIDs go to
	 * the expunge list with it (both saved with the index the write
	 * leaves). */
	if (any) {
		uint64_t ms = ms_folder_next_modseq(f);
		uint32_t *gone = malloc(any * sizeof *gone);
		size_t k = 0;
		for (size_t i = 0; gone && i < f->n && k < any; i++)
			if (f->m[i].state & MS_EXPUNGE)
				gone[k++] = f->m[i].info.uid;
		if (gone)
			ms_vanished_add(f, gone, k, ms);
		else
			f->van_floor = ms;     /* not kept: complete from here on */
		free(gone);
	}
	mb->stale = 1;
	int rc = write_if_needed(f, st);
	if (rc != 0)
		for (size_t i = 0; i < f->n; i++)
			f->m[i].state &= ~MS_EXPUNGE;
	ms_folder_unlock(f, &lk);
	return rc;
}

const char *
ms_mbox_path(const struct pt_mbox *mb)
{
	return mb->f.path;
}

/* Where the folder's index (and its CONDSTORE state) is saved: a write
 * there is a change IDLE must hear of even when the mbox is untouched. */
const char *
ms_mbox_index_dir(const struct pt_mbox *mb)
{
	return mb->f.idxdir;
}

int
ms_mbox_vanished_since(struct pt_mbox *mb, uint64_t modseq, uint32_t **ranges, size_t *n)
{
	return ms_vanished_since(&mb->f, modseq, ranges, n);
}

uint64_t
ms_mbox_highest_modseq(const struct pt_mbox *mb)
{
	/* As of the last sync: no lower than any message in the list. */
	uint64_t h = mb->f.highest_modseq;
	for (size_t i = mb->snap ? 0 : mb->nview; i < mb->nview; i++)
		if (mb->snap[i].modseq > h)
			h = mb->snap[i].modseq;
	return h ? h : 1;
}

/* ---- append ---- */

/* One message as mbox bytes with its storage block at the header's end. */
static int
format_one(struct ms_folder *f, const struct pt_append *a, uint32_t uid, uint64_t kw, int base,
           struct pt_strbuf *out)
{
	char date[32];
	mbox_asctime(a->internal_date ? a->internal_date : time(NULL), date);
	struct pt_strbuf body = { 0 }, blk = { 0 };
	int rc = -1;
	if (mbox_format_body(a->data, a->len, &body) != 0)
		goto out;
	/* Where the header section ends: the first empty line. */
	size_t split = mbox_header_end(body.p, body.len);
	/* The quoting marker rides in the block, verbatim like
	 * Content-Length. */
	struct ms_block k = { .uid = uid, .flags = a->flags & PT_F_SYSTEM, .old = 0,
	                      .keywords = kw, .kwnames = (const char *const *)f->kw,
	                      .nkwnames = f->nkw, .base = base, .validity = f->uidvalidity,
	                      .last_uid = f->uidnext - 1, .clen = MBOX_RD_MARKER,
	                      .clen_len = strlen(MBOX_RD_MARKER) };
	if (ms_block_render(&k, 0, &blk) < 0)
		goto out;
	pt_strbuf_puts(out, "From MAILER-DAEMON  ");
	pt_strbuf_puts(out, date);
	pt_strbuf_put(out, "\n", 1);
	pt_strbuf_put(out, body.p, split);
	pt_strbuf_put(out, blk.p, blk.len);
	pt_strbuf_put(out, body.p + split, body.len - split);
	pt_strbuf_put(out, "\n", 1);
	rc = out->oom ? -1 : 0;
out:
	pt_strbuf_free(&body);
	pt_strbuf_free(&blk);
	return rc;
}

int
ms_folder_append(struct ms_folder *f, struct mbox_lock *lk, const struct pt_append *msgs, size_t n,
                 uint32_t *uids, struct pt_status *st)
{
	if (!f->writable || f->fd < 0) {
		pt_status_set(st, 550, "NOPERM", "Mailbox is read-only");
		return -1;
	}
	uint64_t *kw = calloc(n ? n : 1, sizeof *kw);
	if (kw == NULL) {
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < msgs[i].nkeywords; k++) {
			int b = ms_folder_keyword(f, msgs[i].keywords[k], 1);
			if (b >= 0)
				kw[i] |= 1ull << b;
		}
	if (f->uidnext > UINT32_MAX - n - 1) {
		free(kw);
		pt_status_set(st, 550, "LIMIT", "UIDs exhausted for this mailbox");
		return -1;
	}
	uint32_t first = f->uidnext;
	/* The list as the index (and its append log) may describe it: the
	 * new records then go to the append log instead of a new index. */
	struct stat pre = f->known;
	size_t pre_n = f->n;
	int fast = f->known_valid;
	struct ms_msg m0;
	memset(&m0, 0, sizeof m0);
	if (pre_n)
		m0 = f->m[0];
	f->uidnext += (uint32_t)n;
	f->base_ok = 0;
	int has_live = f->n > 0;
	/* The first message's X-IMAPbase learns the new last UID before the
	 * messages land: a crash in between wastes UIDs, never reuses them.
	 * In place when that is all there is to write (the usual case). */
	int wb = has_live ? ms_folder_write_base(f, st) : 1;
	if (wb == 0) {
		fast = 0;
		wb = ms_folder_write(f, st) == 0 ? 1 : -1;
	}
	if (wb < 0) {
		free(kw);
		return -1;
	}
	struct stat sb;
	struct pt_strbuf out = { 0 };
	int rc = -1;
	if (fstat(f->fd, &sb) != 0) {
		pt_status_set(st, 451, "", "Cannot stat mailbox: %s", strerror(errno));
		goto out;
	}
	char last = '\n';
	if (sb.st_size > 0 && pread(f->fd, &last, 1, sb.st_size - 1) != 1)
		last = '\n';
	if (last != '\n')
		pt_strbuf_put(&out, "\n", 1);
	for (size_t i = 0; i < n; i++)
		if (format_one(f, &msgs[i], first + (uint32_t)i, kw[i], i == 0 && !has_live, &out) != 0)
			goto nomem;
	if (f->set->size_limit > 0 && (off_t)out.len > f->set->size_limit - sb.st_size) {
		pt_status_set(st, 552, "OVERQUOTA", "Quota exceeded (mailbox for user is full)");
		goto out;
	}
	int64_t off = sb.st_size;
	if (mbox_append_begin(lk, (off_t)off, (off_t)(off + (int64_t)out.len)) != 0) {
		pt_status_set(st, 451, "", "Cannot record the append: %s", strerror(errno));
		goto out;
	}
	if (pt_pwrite_all(f->fd, out.p, out.len, (off_t)off) != 0 || fdatasync(f->fd) != 0) {
		int e = errno;
		if (ftruncate(f->fd, sb.st_size) != 0 || fdatasync(f->fd) != 0)
			pt_status_set(st, 451, "", "Cannot truncate mailbox after failed append");
		if (e == ENOSPC || e == EDQUOT || e == EFBIG)
			pt_status_set(st, 452, "OVERQUOTA", "Not enough disk space");
		else
			pt_status_set(st, 451, "", "Cannot write mailbox: %s", strerror(e ? e : EIO));
		f->known_valid = 0;
		mbox_append_end(lk);
		goto out;
	}
	mbox_append_end(lk);
	for (size_t i = 0; i < n; i++)
		uids[i] = first + (uint32_t)i;
	int ch;
	/* The messages are safe; a failed re-read only delays the list. */
	struct pt_status ignore;
	int lt = fast ? ms_folder_load_tail(f, &ignore) : -1;
	if (lt < 0)
		ms_folder_load(f, &ch, &ignore);
	rc = 0;
	ms_shared_bump(f);
	if (lt == 0) {
		/* The first record changed when its block was written. */
		size_t at = 0;
		int t = ms_tail_append(f, &pre, pre_n, first, &at,
		                       pre_n && memcmp(&m0, &f->m[0], sizeof m0) != 0);
		if (t == 0)
			goto out;
	}
	/* As before the log: a full save (which, under the lock, also
	 * removes the log it now holds). */
	ms_index_save(f);
	goto out;
nomem:
	pt_status_set(st, 451, "SERVERBUG", "Out of memory");
out:
	pt_strbuf_free(&out);
	free(kw);
	return rc;
}
