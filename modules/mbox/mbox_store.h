/* Internal interface of the mailbox store (IMAP/POP3 view of mbox files):
 * per-message metadata as parsed from and written to the mbox, the index
 * cache, the crash-safe rewrite, and the folder object shared by the
 * store's files. Only mbox_store*.c and their tests include this. */
#ifndef POSTERN_MBOX_STORE_H
#define POSTERN_MBOX_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "postern/mailbox.h"
#include "mbox.h"

/* Spaces added to a freshly written X-UID line: room for later flag and
 * keyword changes in place (Dovecot leaves ~40-50 bytes too). */
#define MS_PAD 50
#define MS_PATH_MAX 4096
#define MS_NAME_MAX 255

/* ms_msg.state bits */
#define MS_OLD      0x01u  /* Status has 'O': not \Recent */
#define MS_DIRTY    0x02u  /* metadata on disk differs from this record */
#define MS_EXPUNGE  0x04u  /* to be removed by the next write */
#define MS_HAS_BASE 0x08u  /* its block holds an X-IMAPbase line */
#define MS_RD       0x10u  /* mboxrd quoting (MBOX_RD_MARKER): unquote */
#define MS_LAZY     0x20u  /* flags differ from the mbox: pending in the flag
                            * log (postern.flags), written to the mbox later */
#define MS_PLAIN    0x40u  /* as parsed: From_ line with LF, then only fields
                            * that are no storage header, then one empty
                            * line: a rewrite needs not read its header.
                            * In memory only (never in an index). */
/* The system flags the mbox holds for a message (as last read or
 * written), in state bits 16..20; keywords in ms_msg.disk_kw. */
#define MS_DISK_SHIFT 16
#define MS_DISK_MASK  (PT_F_SYSTEM << MS_DISK_SHIFT)

/* One message of the file as last read (or written). */
struct ms_msg {
	int64_t from_off, hdr_off, body_off, end;
	int64_t blk_off;               /* contiguous storage-header lines */
	uint32_t blk_len;              /* their length; 0 = none usable */
	uint32_t meta_len;             /* all storage-header bytes in the header */
	uint32_t clen_len;             /* of those, Content-Length lines */
	uint32_t state;                /* MS_* */
	struct pt_msg_info info;       /* flags: PT_F_SYSTEM bits only */
	uint64_t disk_kw;              /* keywords as in the mbox (see MS_LAZY) */
};

/* What one header section says (mbox_store_meta.c). */
struct ms_hdr {
	int has_base, has_uid;
	int rd;                        /* MBOX_RD_MARKER present */
	uint32_t base_validity, base_last, uid;
	uint32_t flags;                /* PT_F_SYSTEM */
	int old;
	char kw[PT_KEYWORDS_MAX][64];  /* X-Keywords names in order */
	size_t nkw;
	char base_kw[PT_KEYWORDS_MAX][64];
	size_t nbase_kw;
	int64_t blk_off;               /* relative to the header start */
	uint32_t blk_len, meta_len, clen_len;
	size_t fields_end;             /* where the fields end (the empty line) */
};

/* ---- mbox_store_meta.c: pure text work ---- */

/* Parse a header section [hdr, hdr+len) (may include its empty line).
 * kw and base_kw hold names up to nkw / nbase_kw only (not cleared past). */
void ms_header_parse(const char *hdr, size_t len, struct ms_hdr *h);
/* Octets of the wire form of message text [p, p+len) (storage headers
 * dropped, bare LF counted as CRLF, with rd one '>' off /^>+From /
 * lines); *hdr_len the header part of it. */
uint64_t ms_wire_size(const char *p, size_t len, size_t *hdr_len, int rd);
/* ms_header_parse(p, hdr_len, h) and the wire size of the message text
 * [p, p+len) (its header part being [p, p+hdr_len), as the reader found
 * it): ms_wire_size(p, len, NULL, h->rd) at one pass over the text. */
uint64_t ms_header_parse_size(const char *p, size_t hdr_len, size_t len, struct ms_hdr *h);
/* Append the wire form of [p, p+len) to b. 0 or -1 (memory). */
int ms_wire_form(const char *p, size_t len, struct pt_strbuf *b, size_t *hdr_len, int rd);
/* The From_ line's date as a time (local time as mbox_asctime writes it);
 * *tz its zone offset in minutes. 0 when none can be found. */
time_t ms_from_date(const char *line, size_t len, int *tz);
/* Render a storage block: [X-IMAPbase] X-UID, Status, X-Status,
 * X-Keywords, then clen (Content-Length lines kept verbatim). With
 * want > 0 the X-UID line is padded so the block is exactly want bytes
 * (-1 when it does not fit); with want == 0 MS_PAD spaces are added.
 * base_kw: NULL = no X-IMAPbase line. Returns the length, -1 no fit or
 * memory. */
struct ms_block {
	uint32_t uid, flags;
	int old;
	uint64_t keywords;
	const char *const *kwnames;    /* the folder table */
	size_t nkwnames;
	int base;                      /* write X-IMAPbase */
	uint32_t validity, last_uid;
	const char *clen;              /* Content-Length lines, or NULL */
	size_t clen_len;
};
long ms_block_render(const struct ms_block *blk, size_t want, struct pt_strbuf *b);
/* Copy the header fields of [hdr, hdr+len) that are not storage headers
 * to out, Content-Length lines to clen (may be NULL). Returns where the
 * fields end (the empty line, or len), (size_t)-1 out of memory. */
size_t ms_header_strip(const char *hdr, size_t len, struct pt_strbuf *out, struct pt_strbuf *clen);
/* ms_header_strip's walk giving the kept fields as runs of hdr instead
 * of a copy: run(arg, off, n) for each run of adjacent kept fields, in
 * order. Same return. */
size_t ms_header_kept(const char *hdr, size_t len, void (*run)(void *arg, size_t off, size_t n),
                      void *arg, struct pt_strbuf *clen);
/* Valid keyword for the table (an IMAP atom, not a system flag). */
int ms_keyword_valid(const char *name);

/* ---- mbox_store_file.c: folder state, index, rewrite ---- */

struct ms_shared;

/* One range of expunged UIDs and the mod-sequence of its expunge; at
 * most MS_VAN_MAX of them are kept (neighbours merge beyond). */
#define MS_VAN_MAX 1024
struct ms_vanished {
	uint32_t lo, hi;
	uint64_t modseq;
};

struct ms_folder {
	/* In one allocation (strs): fixed arrays cost 12 KiB an open. */
	char *name;                    /* normalised ("INBOX", "a/b") */
	char *path;                    /* the mbox file */
	char *idxdir;                  /* ROOT/.imap/NAME */
	char *root;
	char *strs;
	const struct mbox_settings *set;  /* &set_own */
	struct mbox_settings set_own;  /* priv_gid only for INBOX */
	int dfd;                       /* the file's directory; -1: absent */
	const char *leaf;              /* the file's name in it */
	int fd;                        /* -1: file absent */
	int writable;
	struct stat known;             /* of the file as msgs describe it */
	int known_valid;
	unsigned long gen;             /* ms_shared generation seen */
	struct ms_shared *sh;
	uint32_t uidvalidity, uidnext;
	char *kw[PT_KEYWORDS_MAX];
	size_t nkw;
	size_t nkw_written;            /* table size as in X-IMAPbase on disk */
	/* The message list. After an index load it lives in a private
	 * mapping of the index file (map, map_len): untouched pages stay the
	 * page cache's, shared by every open of the folder; a write copies
	 * only its page; records added go to anonymous room mapped after it
	 * (map_len covers both; cap counts it), beyond that to the heap. */
	struct ms_msg *m;
	size_t n, cap;
	void *map;
	size_t map_len;
	/* The index file's brief of each of its records, mapped with them
	 * (NULL: none): brief_n entries, for f->m while it is brief_m, and
	 * only for records no one changed since (brief_touched: a bit per
	 * record, NULL = none). Whatever changes a record's UID, flags,
	 * keywords, MODSEQ or MS_OLD, or puts another record in its place,
	 * says so first with ms_rec_touch (or drops them all with
	 * ms_brief_drop). Debug builds check each brief handed out. */
	const struct pt_msg_brief *brief;
	const struct ms_msg *brief_m;
	size_t brief_n;
	uint64_t *brief_touched;
	int base_ok;                   /* first message's X-IMAPbase is current */
	uint64_t highest_modseq;       /* CONDSTORE: 0 until the first load */
	int64_t junk;                  /* bytes before the first From_ line */
	/* The flag log (postern.flags beside the index) as last replayed:
	 * flag changes not yet in the mbox (mbox_store_index.c). */
	struct stat log_known;
	int log_valid;                 /* log_known describes it (or its absence) */
	/* Expunged UIDs (struct ms_vanished, kept in the index): complete
	 * for expunges with mod-sequences above van_floor. */
	struct ms_vanished *van;
	size_t nvan;
	uint64_t van_floor;
	int locked;                    /* ms_folder_lock holds the mbox lock */
	int dirty_hint;                /* 0: no MS_DIRTY/MS_EXPUNGE record (no scan) */
	size_t not_old_hint;           /* 0: every record MS_OLD (no scan); else unknown */
	/* The append log (postern.tail beside the index): as last read or
	 * written (st_ino 0: absent), and the mbox state the index with the
	 * log's batches read so far describes; tail_valid: both known. */
	struct stat tail_known;
	struct stat tail_end;
	size_t tail_n;                 /* records and UIDNEXT at tail_end */
	uint32_t tail_uidnext;
	int tail_valid;
	/* index_defer: ms_index_save only notes in index_deferred that a
	 * save was asked for (the caller logs a batch to the append log
	 * instead, or saves after all). */
	int index_defer, index_deferred;
	/* For the next ms_folder_write only: records 1..clean_below-1 are
	 * neither MS_DIRTY, MS_EXPUNGE nor MS_LAZY (0: unknown). */
	size_t clean_below;
};

int ms_folder_init(struct ms_folder *f, const char *root, const char *name, const char *path,
                   const struct mbox_settings *set, struct pt_status *st);
void ms_folder_free(struct ms_folder *f);
/* Bring f->m up to date with the file (index, tail parse, or full parse;
 * messages needing UIDs come back MS_DIRTY). Caller holds the lock when
 * the file is writable. *changed when it had to look. */
int ms_folder_load(struct ms_folder *f, int *changed, struct pt_status *st);
/* Is the file as f->known (and no other open in this process wrote)? */
int ms_folder_current(struct ms_folder *f);
/* The same for the messages' text alone (the flag log not looked at):
 * one stat. */
int ms_folder_text_current(struct ms_folder *f);
/* Write every MS_DIRTY / MS_EXPUNGE record (in place where the padding
 * allows, else a crash-safe rewrite), fsync, save the index. Lock held. */
int ms_folder_write(struct ms_folder *f, struct pt_status *st);
/* mbox_store_write.c, for the append fast path and raw reads: n bytes
 * at off or -1 (a short read is EIO); message r's storage headers written
 * over themselves (base: the first message's X-IMAPbase too), -1 when
 * they no longer fit there. */
int ms_pread_all(int fd, char *p, size_t n, int64_t off);
int ms_write_in_place(struct ms_folder *f, struct ms_msg *r, int base);
/* Record r's text now starts delta bytes further on, unchanged. */
static inline void
ms_msg_move(struct ms_msg *r, int64_t delta)
{
	r->from_off += delta;
	r->hdr_off += delta;
	r->body_off += delta;
	r->end += delta;
	if (r->blk_len)
		r->blk_off += delta;
}
/* Is the folder's file a regular file (not a symlink)? 0, or -1 with
 * st (NONEXISTENT, or NOPERM for a symlink). */
int ms_folder_exists(struct ms_folder *f, struct pt_status *st);
/* Its size in octets (mailbox_size_limit's measure); same refusals. */
int ms_folder_size(struct ms_folder *f, off_t *size, struct pt_status *st);
/* Open/lock helpers. lock: opens the file (creating it when create),
 * restores a leftover rewrite first. */
int ms_folder_lock(struct ms_folder *f, struct mbox_lock *lk, int create, struct pt_status *st);
void ms_folder_unlock(struct ms_folder *f, struct mbox_lock *lk);
/* Keyword table index, adding when add (and room). */
int ms_folder_keyword(struct ms_folder *f, const char *name, int add);
/* Room for want records in f->m: on the heap, or in the anonymous room
 * that follows a mapped index (then no copy). */
int ms_folder_reserve(struct ms_folder *f, size_t want);
/* Let go of f->m (heap or mapping); n and cap become 0. */
void ms_folder_drop_msgs(struct ms_folder *f);
/* A new mod-sequence for one change (the same for every message it
 * touches): above every one handed out, never 0. */
uint64_t ms_folder_next_modseq(struct ms_folder *f);
/* Binary search by UID in f->m. */
size_t ms_folder_find(const struct ms_folder *f, uint32_t uid);
/* Assign the folder a UIDVALIDITY from the store counter. */
uint32_t ms_new_uidvalidity(const char *root);
/* Append formatted messages (one lock held by caller). */
int ms_folder_append(struct ms_folder *f, struct mbox_lock *lk, const struct pt_append *msgs,
                     size_t n, uint32_t *uids, struct pt_status *st);
/* Read one message's stored text [hdr_off, end) into b (checked). */
int ms_folder_read_raw(struct ms_folder *f, size_t i, struct pt_strbuf *b, struct pt_status *st);
/* mbox_store_rewrite.c: the rewrite in place (no copy) of a folder
 * whose text only moves up, back to front, with a journal beside the
 * index. 1 done, 0 not such a rewrite (nothing changed), -1 failed (st;
 * a journal left behind is finished by the next ms_recover). */
/* Sequential reads of a file through a 4 MB window (both rewrites'
 * sources): [skip + rel, skip + rel + n), or NULL with errno set (EIO
 * for a file shorter than asked). Zero-initialised but fd (and skip);
 * p is the caller's to free. */
struct ms_window {
	int fd;
	int64_t skip;                  /* bytes of the file before offset 0 */
	int64_t base;                  /* offset of p[0] */
	size_t len, cap;
	char *p;
};
const char *ms_window_get(struct ms_window *w, int64_t rel, size_t n);
/* ---- mbox_store_rewrite.c: a rewrite's new layout, and writing it
 * over the old text ---- */

/* The text from message s on as pieces: literals (storage headers) and
 * runs of old bytes. */
struct ms_piece {
	int64_t dst;                   /* offset in the new file */
	int64_t src;                   /* old offset, or offset in lits */
	uint32_t len;
	uint32_t lit;
};

struct ms_plan {
	struct ms_piece *p;
	size_t n, cap;
	struct pt_strbuf lits;
	int64_t off0, old_eof, new_end;
	int bad;                       /* a run moves down: not for the in-place way */
	int oom;
};
/* Build it; nm gets the new records (*nw of them). -1 error (errno). */
int ms_plan_build(struct ms_folder *f, size_t s, int64_t eof, struct ms_plan *pl, struct ms_msg *nm,
                  size_t *nw);
void ms_plan_free(struct ms_plan *pl);
/* The file now holds the rewritten messages from s on: so does the list. */
void ms_rewrite_list_put(struct ms_folder *f, size_t s, const struct ms_msg *nm, size_t nw);
/* The plan written over the old text (journalled, crash- and power-cut
 * safe): 1 done, 0 not this way (the plan stays valid, maybe with more
 * literals), -1 error. */
int ms_rewrite_in_place(struct ms_folder *f, size_t s, int64_t eof, struct ms_plan *plan,
                        const struct ms_msg *nm, size_t nw, struct pt_status *st);
/* Finish an in-place rewrite a crash interrupted (ms_recover calls it). */
int ms_rewrite_recover(struct ms_folder *f, struct pt_status *st);
/* Tests only: called at each step of an in-place rewrite (numbered from
 * 0 per rewrite); the answer is what the step does instead. */
enum { MS_FAULT_NONE, MS_FAULT_EXIT, MS_FAULT_HALF, MS_FAULT_ENOSPC };
extern int (*ms_rewrite_fault)(int step);
extern int ms_rewrite_copy_only;   /* tests: always the copying rewrite */
/* The most bytes of moved text the journal takes as literals (tests
 * lower it to exercise moves and the mix). */
extern size_t ms_rewrite_lit_max;
extern const char *(*ms_rewrite_boot)(void); /* tests: this boot's id (ms_boot_id) */
/* The storage block of record r as it is now (mbox_store_write.c). */
struct ms_block;
void ms_block_of(const struct ms_folder *f, const struct ms_msg *r, int base, struct ms_block *k);
size_t ms_first_live(const struct ms_folder *f);  /* first record not expunged */
int64_t ms_span_end(const struct ms_folder *f, size_t i, int64_t eof); /* next From_ or eof */
/* Finish a rewrite a crash interrupted (recovery copy in idxdir). */
int ms_recover(struct ms_folder *f, struct pt_status *st);
/* Forget the in-process state of path (remove/rename). */
void ms_shared_bump(struct ms_folder *f);

/* ---- mbox_store_index.c ---- */
/* A checksum for torn or damaged files (not an adversary's). */
uint64_t ms_sum64(uint64_t h, const void *p, size_t n);
/* This boot's id, read once per process; NULL when unknown. */
const char *ms_boot_id(void);
int ms_index_save(struct ms_folder *f);
/* The same in another form, for tests: the previous format (no briefs,
 * what an upgrade finds), or the first brief not its record's. */
enum { MS_INDEX_BRIEFS, MS_INDEX_OLD, MS_INDEX_SKEWED };
int ms_index_save_as(struct ms_folder *f, int form);
/* Load the index; 1 loaded and matches st exactly, 2 loaded but stale
 * (f gets uidvalidity/uidnext/kw only; *idx_size etc. describe its file),
 * 0 none/corrupt. */
int ms_index_load(struct ms_folder *f, const struct stat *sb, struct stat *idx_sb);
/* Does the index describe exactly this file state (head only)? */
int ms_index_matches(const struct ms_folder *f, const struct stat *sb);
/* The index's briefs of records [from, from + n) that no one changed
 * since the load (their flags: PT_F_SYSTEM bits and MS_BRIEF_OLD for
 * MS_OLD): out[k] and got[k] = 1 for each, got[k] = 0 for the rest
 * (read those from f->m). */
#define MS_BRIEF_OLD 0x80000000u
void ms_index_briefs(const struct ms_folder *f, size_t from, size_t n, struct pt_msg_brief *out,
                     unsigned char *got);
void ms_brief_touch_(struct ms_folder *f, size_t i);
void ms_brief_drop(struct ms_folder *f);
/* Record i of f->m (or r) is about to change. */
static inline void
ms_rec_touch(struct ms_folder *f, size_t i)
{
	if (f->brief != NULL && i < f->brief_n)
		ms_brief_touch_(f, i);
}

/* The flag log: STORE's changes go there (fdatasync'd) instead of into
 * the mbox, which gets them at the next ms_folder_write. Append records
 * the current state of f->m[idx[k]]: 0, 1 when the log has grown past
 * its bound (write the mbox now), -1 on failure. Lock held. */
int ms_flog_append(struct ms_folder *f, const size_t *idx, size_t n);
/* Apply the log to f->m: a record counts while the message's mbox state
 * is still the one it was made on (else the mbox was written since, by
 * us or another program, and wins). Only the part past what was replayed
 * when from_known. With the lock held (locked), stale records are
 * dropped from the file. */
void ms_flog_replay(struct ms_folder *f, int from_known, int locked);
/* Has the log changed since the last replay? 1 yes (or unknown). */
int ms_flog_changed(const struct ms_folder *f);
/* The mbox holds every change now: remove the log. Lock held. */
void ms_flog_drop(struct ms_folder *f);
/* Make r's mbox state its current one (after a write of its block). */
void ms_msg_disk_set(struct ms_folder *f, struct ms_msg *r);

/* The append log (postern.tail): APPEND/COPY add their records there
 * instead of rewriting the index, which stays as it was (mapped by other
 * opens); batches chain by mbox state, a torn or unchained one is
 * ignored (the mbox tail is parsed instead). Compacted by a full save. */
/* Apply the log's batches that continue from *end (an mbox state; f->m
 * describes it) to f->m; *end becomes the state reached. from_known: only
 * the part past what was read before. Returns batches applied. */
int ms_tail_apply(struct ms_folder *f, struct stat *end, int from_known);
/* After an append under the lock that took the list from pre (pre_n
 * records, UIDNEXT pre_uidnext) to f->known: record f->m[at[k]] (changed
 * old records) and the new records f->m[pre_n..n). 0 done, 1 done but the
 * log wants compacting (ms_index_save), -1 not possible (ms_index_save). */
int ms_tail_append(struct ms_folder *f, const struct stat *pre, size_t pre_n,
                   uint32_t pre_uidnext, const size_t *at, size_t nat);
/* Append fast path (mbox_store_file.c): write the first message's
 * X-IMAPbase in place (not synced: the append's fdatasync covers it),
 * leaving pending flag changes in the flag log. 1 done, 0 not possible
 * here (use ms_folder_write), -1 error. */
int ms_folder_write_base(struct ms_folder *f, struct pt_status *st);
/* Read the messages appended past f->known (same file, grown) into f->m.
 * 0 done and clean, 1 done but some record needs a write, -1 not
 * possible (use ms_folder_load). */
int ms_folder_load_tail(struct ms_folder *f, struct pt_status *st);
/* The same, only when nothing but an append can have happened since
 * f->known: no writer of this process (generation), no flag log, and the
 * index with its append log still describing f->known (ms_tail_at). Then
 * f->m[0..n) as they were stay untouched. Lock held. */
int ms_folder_load_appended(struct ms_folder *f, struct pt_status *st);
/* Do the index and the append log on disk describe exactly sb, as this
 * open last read or wrote them (no store writer since)? */
int ms_tail_at(const struct ms_folder *f, const struct stat *sb);

/* Expunged UIDs with their mod-sequences (ms_folder.van, saved in the
 * index): ranges, merged when there are too many (then a range may name
 * UIDs that were never expunged, which VANISHED (EARLIER) allows). */
/* Record uids[0..n) (ascending) as expunged at modseq (in memory; the
 * next ms_index_save keeps it). */
void ms_vanished_add(struct ms_folder *f, const uint32_t *uids, size_t n, uint64_t modseq);
/* The UID ranges expunged after modseq as (lo, hi) pairs in *out
 * (malloc'd, ascending) and *n. 0, or -1 when the list does not reach
 * back that far (or was lost). */
int ms_vanished_since(const struct ms_folder *f, uint64_t modseq, uint32_t **out, size_t *n);

/* The directory holding the last component of rel (a checked folder
 * name), opened from root one component at a time with O_NOFOLLOW, so no
 * folder path leaves the mail root through a symlink (root's own last
 * component included). create: missing directories are made (0700).
 * Returns the fd; -2 when a directory is missing (and !create); -1 with
 * st (a symlink: NOPERM). *leaf: rel's last component. */
int ms_dir_open(const char *root, const char *rel, int create, const char **leaf,
                struct pt_status *st);
/* The status for a failed open/stat of a folder path component. */
int ms_errno_status(int err, const char *name, struct pt_status *st);

/* mkdir -p with mode 0700 for the store's directories. */
int ms_mkdirs(const char *path, int include_last);

/* ---- mbox_store.c / mbox_store_mbox.c ---- */

struct pt_mstore {
	struct mbox_settings set;
	struct pt_user user;
	char *location;                /* these three follow the struct */
	char *root;
	char *inbox;
};

/* The session's list as of its last sync is f->m[0..nview) itself while
 * the file state has not moved since (the idle case: no second copy per
 * message); an operation that reloads f->m first copies the list to
 * snap, which then serves as the list until the next sync. */
struct ms_info_ring;
struct pt_mbox {
	struct pt_mstore *ms;
	struct ms_folder f;
	int readonly;
	int synced;
	int stale;                     /* file state moved since the view */
	int recent_by_state;           /* \Recent = not MS_OLD (read-only opens) */
	size_t nview;
	struct pt_msg_info *snap;      /* NULL: the list is f->m[0..nview) */
	uint32_t *recent;              /* else: UIDs whose \Recent this open took */
	size_t nrecent;
	struct ms_info_ring *ring;     /* info()'s answers */
	struct ms_cache *hc;           /* header cache, NULL until first used */
	int snap_on_change;            /* lock_and_load: snap_take before a reload */
};

/* Normalise and check a folder name ("inbox" -> "INBOX"); -1 with st. */
int ms_name_check(const char *name, char *out, size_t outlen, struct pt_status *st);
/* The mbox file of a (normalised) name. */
int ms_name_path(const struct pt_mstore *ms, const char *name, char *out, size_t outlen);

struct pt_mbox *ms_mbox_open(struct pt_mstore *ms, const char *name, int readonly,
                             struct pt_status *st);
void ms_mbox_close(struct pt_mbox *mb);
int ms_mbox_sync(struct pt_mbox *mb, int *changed, struct pt_status *st);
int ms_mbox_uptodate(struct pt_mbox *mb);
size_t ms_mbox_count(const struct pt_mbox *mb);
const struct pt_msg_info *ms_mbox_info(const struct pt_mbox *mb, size_t i);
size_t ms_mbox_find(const struct pt_mbox *mb, uint32_t uid);
void ms_mbox_briefs(const struct pt_mbox *mb, size_t from, size_t n, struct pt_msg_brief *out);
uint32_t ms_mbox_uidvalidity(const struct pt_mbox *mb);
uint32_t ms_mbox_uidnext(const struct pt_mbox *mb);
size_t ms_mbox_keyword_count(const struct pt_mbox *mb);
const char *ms_mbox_keyword_name(const struct pt_mbox *mb, size_t i);
int ms_mbox_keyword_index(struct pt_mbox *mb, const char *name, int create);
int ms_mbox_read(struct pt_mbox *mb, uint32_t uid, struct pt_msg_text *out, struct pt_status *st);
void ms_mbox_release(struct pt_mbox *mb, struct pt_msg_text *t);
int ms_mbox_set_flags(struct pt_mbox *mb, const struct pt_flag_update *u, size_t n,
                      struct pt_status *st);
int ms_mbox_change_flags(struct pt_mbox *mb, const struct pt_flag_change *c, size_t n,
                         struct pt_status *st);
int ms_mbox_expunge(struct pt_mbox *mb, const uint32_t *uids, size_t n, struct pt_status *st);
const char *ms_mbox_path(const struct pt_mbox *mb);
const char *ms_mbox_index_dir(const struct pt_mbox *mb);
uint64_t ms_mbox_highest_modseq(const struct pt_mbox *mb);
/* ---- mbox_store_cache.c: the header cache (postern.hcache) ---- */
int ms_cache_header(struct pt_mbox *mb, uint32_t uid, const char **hdr, size_t *len,
                    struct pt_status *st);
/* A message's wire form read through the cache's window (a run of
 * neighbours in one pread, one stat of the file a message): 1 done (out as
 * ms_mbox_read gives it), 0 not so (read it the usual way), -1 st. */
int ms_cache_read(struct pt_mbox *mb, uint32_t uid, struct pt_msg_text *out, struct pt_status *st);
/* At sync: save what was learnt when it has waited long enough. */
void ms_cache_tick(struct pt_mbox *mb);
/* At close: save what was learnt, free the cache. */
void ms_cache_close(struct pt_mbox *mb);
/* The cached fields of a wire-form header [hdr, hdr+len) as
 * header_fields gives them, appended to out: 0, or -1 when they cannot
 * be cached (a field without a line end, over HC_BLOCK_MAX). */
#define HC_BLOCK_MAX 16384
/* sort_key / sort_key_put of the store's ops (mailbox.h). */
int ms_cache_sort_key(struct pt_mbox *mb, uint32_t uid, int kind, const char **key, uint32_t *rank);
void ms_cache_sort_key_put(struct pt_mbox *mb, uint32_t uid, int kind, const char *key, size_t len);
int ms_cache_answer_get(struct pt_mbox *mb, const char *name, const uint32_t *uids, const uint32_t *nums,
                        size_t n, const char **data, size_t *len);
void ms_cache_answer_put(struct pt_mbox *mb, const char *name, const uint32_t *uids, const uint32_t *nums,
                         size_t n, const char *data, size_t len);
int ms_cache_msgid(struct pt_mbox *mb, const char *key, size_t len, uint32_t **uids, size_t *n);
/* The Message-ID index keys of a cached block (see mbox_store_cache.c):
 * add(arg, hash) for each; hash 0 stands for "could hold any id". */
void ms_cache_msgid_keys(const char *blk, size_t len, void (*add)(void *arg, uint32_t h), void *arg);
/* The hash of an id as the index keeps it (ASCII case folded, never 0). */
uint32_t ms_cache_msgid_hash(const char *key, size_t len);
/* Remove the cache files (header cache, kept answers) of index dir dir. */
void ms_cache_unlink(const char *dir);
int ms_cache_extract(const char *hdr, size_t len, struct pt_strbuf *out);
/* The same from a header as the mbox holds it (LF line ends, storage
 * headers in place; no mboxrd quoting): what ms_cache_extract gives for
 * its wire form. */
int ms_cache_extract_raw(const char *hdr, size_t len, struct pt_strbuf *out);

int ms_mbox_vanished_since(struct pt_mbox *mb, uint64_t modseq, uint32_t **ranges, size_t *n);
int ms_mbox_change_flags_cond(struct pt_mbox *mb, const struct pt_flag_change *c, size_t n,
                              uint64_t unchangedsince, unsigned char *refused, struct pt_status *st);

#endif
