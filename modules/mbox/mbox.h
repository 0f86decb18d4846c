/* Internal interface of the mbox module: mailbox paths, the pure From_/
 * header formatting, locking, delivery and the reusable mbox reader. Only
 * the module's own files and its unit tests / fuzzers include this. */
#ifndef POSTERN_MBOX_H
#define POSTERN_MBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "postern/services.h"
#include "postern/strbuf.h"

/* Settings delivery runs with (module.c fills them from the config; tests
 * set them directly). */
struct mbox_settings {
	const char *mail_location;    /* "mbox:ROOT[:INBOX=PATH][:KEY=VALUE]" */
	off_t size_limit;             /* mailbox_size_limit, 0 = none */
	unsigned lock_timeout_ms;     /* fcntl + dotlock wait */
	unsigned dotlock_stale_s;     /* older dotlocks are removed */
	gid_t priv_gid;               /* mail_privileged_group, (gid_t)-1 = none */
	int flag_fsync;               /* mbox_flag_fsync: fdatasync the flag log */
	off_t rewrite_copy_below;     /* mbox_rewrite_copy_below: smaller rewrites keep the full copy */
};

/* ---- mbox_path.c ---- */

/* Syntax check of a mail_location value: 0, or -1 with a reason in err. */
int mbox_location_check(const char *location, char *err, size_t errlen);
/* The INBOX file of user: INBOX=PATH expanded, or ROOT/inbox. Refuses
 * user names that could leave the spool (st: 550 5.1.3) and paths that do
 * not fit (st: 451 4.3.5). 0 ok, -1 with st filled. */
int mbox_inbox_path(const char *location, const struct pt_user *user, char *out, size_t outlen,
                    struct pt_status *st);

/* ---- mbox_format.c: one delivery as mbox bytes, no I/O ---- */
/* Output goes into a pt_strbuf (include/postern/strbuf.h). */
/* Header line that says a message's ">From " quoting is mboxrd (every
 * /^>*From / line has one '>' more than the original). Messages without
 * it (Postfix local(8), older Postern: mboxo, only "From " quoted) are
 * served as stored, so their sizes never change. A storage header: hidden
 * from clients, stripped from incoming mail, kept by rewrites. */
#define MBOX_RD_MARKER "X-Postern-Quoting: mboxrd\n"
/* Append d formatted as one mbox message: From_ line, Return-Path,
 * X-Original-To (when d->orig_recipient is set), Delivered-To, then
 * d->data with CRLF -> LF, mailbox-owned header fields stripped from the
 * header section, lines matching /^>*From / quoted with one more '>',
 * MBOX_RD_MARKER at the end of the header section, a final LF, and the
 * empty separator line. 0, or -1 out of memory (b unchanged in length). */
int mbox_format(const struct pt_delivery *d, struct pt_strbuf *b);
/* Does the line match /^>{min_gt,}From /? */
int mbox_line_quoted(const char *line, size_t len, int min_gt);
/* Offset of the empty line that ends the header section of p (len when
 * there is none). */
size_t mbox_header_end(const char *p, size_t len);
/* Only the data transformation (no envelope lines, no separator, no
 * marker). */
int mbox_format_body(const char *data, size_t len, struct pt_strbuf *b);
/* "Sat Nov 28 06:08:07 2026" (asctime, local time, C locale). */
void mbox_asctime(time_t t, char out[32]);
/* 1 if the header field name (without colon) belongs to the mailbox and is
 * stripped from incoming mail. */
int mbox_header_is_internal(const char *name, size_t len);

/* ---- mbox_lock.c: fcntl write lock, then NAME.lock (Debian Policy 11.6) ---- */

struct mbox_lock {
	int fd;                       /* mailbox, fcntl-locked */
	int ofd;                      /* lock taken as an OFD lock */
	int dotlocked;
	int dotlock_privileged;       /* created with priv_gid as fsgid */
	gid_t saved_fsgid;
	int dfd;                      /* the mailbox's directory */
	int dfd_owned;                /* opened by mbox_lock (closed by unlock) */
	int lockfd;                   /* our dotlock file while held */
	size_t rec_base;              /* length of its pid/host lines */
	int recording;                /* an append record is in it */
	int rec_found;                /* a dead holder's record, to apply */
	off_t rec_start, rec_end;
	long rec_pid;
	char dotname[256 + 8];        /* NAME.lock in dfd */
	char dotlock[4096 + 8];       /* its full path, for messages */
};
/* Lock the open mailbox fd whose path is path. 0, or -1 with st filled
 * (450 4.2.0 on timeout or when no dotlock can be made). A lock left by
 * a dead holder is taken over at once, and its unfinished append cut. */
int mbox_lock(struct mbox_lock *lk, int fd, const char *path, const struct mbox_settings *s,
              struct pt_status *st);
/* The same for the file name in the open directory dirfd (kept open by
 * the caller until unlock); path is only for messages. */
int mbox_lock_at(struct mbox_lock *lk, int fd, int dirfd, const char *name, const char *path,
                 const struct mbox_settings *s, struct pt_status *st);
/* Release in reverse order (dotlock, then fcntl). */
void mbox_unlock(struct mbox_lock *lk, const struct mbox_settings *s);
/* Around an append of [start, end) to the locked mailbox: the record that
 * lets the next locker cut it if this process dies meanwhile (synced
 * before begin returns 0). */
int mbox_append_begin(struct mbox_lock *lk, off_t start, off_t end);
void mbox_append_end(struct mbox_lock *lk);
/* Run with fsgid = gid on the calling thread only; returns the previous
 * fsgid, or (gid_t)-1 when the switch was refused (no CAP_SETGID). */
gid_t mbox_fsgid_enter(gid_t gid);
void mbox_fsgid_leave(gid_t saved);

/* ---- mbox_deliver.c ---- */

/* The mailstore deliver operation with explicit settings. */
void mbox_deliver_with(const struct mbox_settings *s, const struct pt_delivery *d, size_t n,
                       struct pt_status *st);
/* The service's deliver, using the settings module.c installed. */
void mbox_deliver(const struct pt_delivery *d, size_t n, struct pt_status *st);
void mbox_settings_install(const struct mbox_settings *s);

/* ---- mbox_read.c: incremental mbox splitter ---- */

/* One message; offsets are absolute from the start of the mbox. The text
 * is [hdr_off, end); the From_ line [from_off, hdr_off) and the separating
 * empty line before the next From_ line belong to no message. */
struct mbox_msg {
	off_t from_off;               /* "From " of the From_ line */
	size_t from_len;              /* From_ line without its LF */
	off_t hdr_off;                /* first header line */
	off_t body_off;               /* after the header's empty line (= end if none) */
	off_t end;                    /* end of the message text */
};
typedef int mbox_msg_cb(void *arg, const struct mbox_msg *m);

#define MBOX_FROM_LINE_MAX 1024

struct mbox_reader {
	mbox_msg_cb *cb;
	void *arg;
	off_t off;                    /* bytes consumed so far */
	off_t junk;                   /* bytes before the first From_ line */
	int in_msg, in_body;
	int prev_empty;               /* the previous complete line was empty */
	off_t empty_off;              /* where that empty line starts */
	off_t line_off;               /* start of the current line */
	size_t line_total;            /* its length so far */
	char line[MBOX_FROM_LINE_MAX];/* its first bytes */
	struct mbox_msg cur;
	unsigned long count;          /* messages reported */
	int stop;                     /* a callback's non-zero return */
};
void mbox_reader_init(struct mbox_reader *r, mbox_msg_cb *cb, void *arg);
/* Feed the next bytes; a callback returning non-zero stops the reader
 * (feed then returns that value). */
int mbox_reader_feed(struct mbox_reader *r, const char *buf, size_t len);
/* End of input: reports the last message. */
int mbox_reader_finish(struct mbox_reader *r);
/* Whole buffer at once. Returns the callback's stop value or 0. */
int mbox_parse(const char *buf, size_t len, mbox_msg_cb *cb, void *arg, off_t *junk);
/* A From_ line ("From SENDER DATE", without LF) that looks real: a sender
 * word and an asctime-like date. Used where no empty line precedes it. */
int mbox_from_line_valid(const char *line, size_t len);

/* ---- mbox_store*.c: the mailbox service for IMAP/POP3 ---- */

struct pt_mailbox_ops;
struct pt_mstore;
extern const struct pt_mailbox_ops mbox_store_ops;
/* The settings store_open uses (module.c installs them with delivery's). */
void mbox_store_settings_install(const struct mbox_settings *s);
/* mbox_header_cache: whether header_fields keeps and uses the header
 * cache (off: it answers 0, so callers read the message). */
void mbox_header_cache_enable(int on);
/* store_open with explicit settings (tests). */
struct pt_mstore *mbox_store_open_with(const struct mbox_settings *s, const struct pt_user *user,
                                       struct pt_status *st);

#ifndef __SSE2__
/* Without SSE2 (the .deb on other architectures) the scans go a word at
 * a time: 0x80 in each byte of w equal to c, 0 elsewhere (exact: no
 * borrow runs from one byte into the next). */
static inline uint64_t
mbox_bytes_eq(uint64_t w, unsigned char c)
{
	uint64_t x = w ^ (0x0101010101010101ull * c);
	uint64_t t = ((x & 0x7f7f7f7f7f7f7f7full) + 0x7f7f7f7f7f7f7f7full) | x;
	return ~t & 0x8080808080808080ull;
}
#endif

#endif
