/* The mail store as IMAP and POP3 see it: a user's folders, and one open
 * folder's messages with UIDs, flags and keywords. The mbox module provides
 * it (service PT_SVC_MAILBOX) in the per-user mail process, which already
 * runs as the user: every call is blocking and touches only that user's
 * files. Metadata is Dovecot-compatible (X-IMAPbase, X-UID, Status,
 * X-Status, X-Keywords in the mbox; an index beside it only caches).
 *
 * Names are IMAP mailbox names in UTF-8 as the client sent them (after
 * modified-UTF-7 decoding is the protocol's business), '/' is the
 * hierarchy separator, "INBOX" (any case) is the user's INBOX. */
#ifndef POSTERN_MAILBOX_H
#define POSTERN_MAILBOX_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "postern/services.h"

#define PT_SVC_MAILBOX "mailbox"

/* System flags (bit values are stable: the index stores them). */
#define PT_F_SEEN     0x01u
#define PT_F_ANSWERED 0x02u
#define PT_F_FLAGGED  0x04u
#define PT_F_DELETED  0x08u
#define PT_F_DRAFT    0x10u
#define PT_F_RECENT   0x20u   /* read-only: first seen by this open (see sync) */
#define PT_F_SYSTEM   0x1fu   /* the settable ones */

/* Keywords per folder: a folder has at most this many distinct keyword
 * names; message keyword sets are bit masks over the folder's table. */
#define PT_KEYWORDS_MAX 64

/* LIST attributes. */
#define PT_MB_NOSELECT      0x01u  /* a directory only (\Noselect) */
#define PT_MB_NOINFERIORS   0x02u  /* cannot have children (\NoInferiors) */
#define PT_MB_HASCHILDREN   0x04u
#define PT_MB_HASNOCHILDREN 0x08u
#define PT_MB_MARKED        0x10u
#define PT_MB_UNMARKED      0x20u
#define PT_MB_NONEXISTENT   0x40u  /* only subscribed, no folder (LSUB/LIST-EXTENDED) */

struct pt_mstore;     /* one user's folders */
struct pt_mbox;       /* one open folder */

struct pt_msg_info {
	uint32_t uid;
	uint32_t flags;               /* PT_F_* */
	uint64_t keywords;            /* bit i = keyword_name(i) */
	uint64_t size;                /* RFC822.SIZE: octets of the wire form */
	time_t internal_date;         /* INTERNALDATE (From_ line / APPEND date) */
	int tz_minutes;               /* its zone offset east of UTC, for display */
	uint64_t modseq;              /* CONDSTORE: of its last flag change or arrival (> 0) */
};

/* What a session keeps of each message of its view: the part of
 * pt_msg_info that a sync compares. */
struct pt_msg_brief {
	uint32_t uid;
	uint32_t flags;               /* PT_F_*, PT_F_RECENT included */
	uint64_t keywords;
	uint64_t modseq;
};

struct pt_mbox_status {
	uint32_t messages, recent, unseen, uidnext, uidvalidity;
	uint32_t first_unseen_seq;    /* 1-based sequence of the first unseen, 0 none */
	uint64_t size;                /* sum of RFC822.SIZE (STATUS=SIZE) */
	uint64_t deleted_size;        /* the same of \Deleted ones (DELETED-STORAGE) */
	uint32_t deleted;             /* messages with \Deleted (IMAP4rev2 STATUS DELETED) */
	uint64_t highestmodseq;       /* CONDSTORE (RFC 7162) */
};

/* A message's wire form: CRLF line ends, none of the storage headers
 * (Status, X-Status, X-UID, X-IMAPbase, X-IMAP, X-Keywords, Content-Length),
 * ">From " lines as stored. len == RFC822.SIZE. */
struct pt_msg_text {
	const char *data;
	size_t len;
	size_t hdr_len;               /* header section incl. its empty line */
	void *priv;                   /* owned by the store */
};

/* One flag change: the message's new complete state. */
struct pt_flag_update {
	uint32_t uid;
	uint32_t flags;               /* PT_F_SYSTEM bits */
	uint64_t keywords;
};

/* One relative flag change (+FLAGS / -FLAGS): bits to set, then bits to
 * clear, applied to the message's state as it is in the file now. */
struct pt_flag_change {
	uint32_t uid;
	uint32_t add, remove;         /* PT_F_SYSTEM bits */
	uint64_t kw_add, kw_remove;   /* keyword bits */
};

/* One message to append (APPEND, COPY, MOVE). data may have CRLF or LF
 * line ends; the store writes LF and quotes "From " lines. */
struct pt_append {
	const char *data;
	size_t len;
	uint32_t flags;               /* PT_F_SYSTEM bits */
	const char *const *keywords;  /* names, or NULL */
	size_t nkeywords;
	time_t internal_date;         /* 0 = now */
	int tz_minutes;
};

/* Every call returns 0 on success, or -1 with st filled: code 4xx for a
 * temporary failure (lock timeout, I/O error), 5xx for a permanent one;
 * st->text is a short reason fit for the client ("Mailbox doesn't exist:
 * foo", "Mailbox already exists"), dsn "" or one of:
 *   "NONEXISTENT", "ALREADYEXISTS", "NOPERM", "INUSE", "LIMIT",
 *   "OVERQUOTA", "CANNOT", "SERVERBUG"  (RFC 5530 response codes) */
struct pt_mailbox_ops {
	/* ---- folders ---- */
	struct pt_mstore *(*store_open)(const struct pt_user *user, struct pt_status *st);
	void (*store_close)(struct pt_mstore *ms);
	/* Every folder (INBOX first, then the rest sorted) with PT_MB_* flags;
	 * directories without an mbox file come as PT_MB_NOSELECT. */
	int (*list)(struct pt_mstore *ms, void (*emit)(void *arg, const char *name, unsigned attrs),
	            void *arg, struct pt_status *st);
	/* create: name may end in '/' (a directory for children only);
	 * parents are created as needed. delete: INBOX refused; a folder with
	 * children keeps its directory (becomes \Noselect). rename: INBOX
	 * renamed moves its messages to the new folder and leaves INBOX empty
	 * (RFC 3501); children move with their parent. */
	int (*create)(struct pt_mstore *ms, const char *name, struct pt_status *st);
	int (*remove)(struct pt_mstore *ms, const char *name, struct pt_status *st);
	int (*rename)(struct pt_mstore *ms, const char *from, const char *to, struct pt_status *st);
	/* Subscriptions (kept in a file in the store root). */
	int (*subscribe)(struct pt_mstore *ms, const char *name, int on, struct pt_status *st);
	int (*subscriptions)(struct pt_mstore *ms, void (*emit)(void *arg, const char *name),
	                     void *arg, struct pt_status *st);
	/* STATUS without opening for the session. */
	int (*status)(struct pt_mstore *ms, const char *name, struct pt_mbox_status *out,
	              struct pt_status *st);
	/* Append messages to a folder (one lock, one fsync for all); uids[i]
	 * gets each new UID, *uidvalidity the folder's (for APPENDUID/COPYUID).
	 * Nothing is appended when any fails. */
	int (*append)(struct pt_mstore *ms, const char *name, const struct pt_append *msgs, size_t n,
	              uint32_t *uidvalidity, uint32_t *uids, struct pt_status *st);

	/* ---- an open folder ---- */
	/* readonly: EXAMINE (nothing is written, \Recent is not consumed). */
	struct pt_mbox *(*open)(struct pt_mstore *ms, const char *name, int readonly,
	                        struct pt_status *st);
	void (*close)(struct pt_mbox *mb);
	/* Bring the message list up to date with the file (deliveries, other
	 * sessions, other programs). Cheap when nothing changed (stat only).
	 * Sets *changed when the list or any flag differs from before: 2
	 * when only new messages were added at the end (the list before is
	 * unchanged, flags included), else 1. The first sync of a
	 * read-write open takes \Recent for new messages. */
	int (*sync)(struct pt_mbox *mb, int *changed, struct pt_status *st);
	/* The list as of the last sync, in ascending UID order. An info
	 * answer stays valid until the next sync of mb or seven more info
	 * calls, whichever comes first: copy what is kept longer. */
	size_t (*count)(const struct pt_mbox *mb);
	const struct pt_msg_info *(*info)(const struct pt_mbox *mb, size_t index);
	/* index of uid, or (size_t)-1 */
	size_t (*find)(const struct pt_mbox *mb, uint32_t uid);
	uint32_t (*uidvalidity)(const struct pt_mbox *mb);
	uint32_t (*uidnext)(const struct pt_mbox *mb);
	/* Keyword table of the folder. keyword_index: its bit, creating it when
	 * create is set (and the table has room), else -1. */
	size_t (*keyword_count)(const struct pt_mbox *mb);
	const char *(*keyword_name)(const struct pt_mbox *mb, size_t i);
	int (*keyword_index)(struct pt_mbox *mb, const char *name, int create);
	/* Read one message (wire form); release when done. */
	int (*read)(struct pt_mbox *mb, uint32_t uid, struct pt_msg_text *out, struct pt_status *st);
	void (*release)(struct pt_mbox *mb, struct pt_msg_text *t);
	/* Write flag changes (one lock for all; in place when the padding
	 * allows, else a rewrite). Messages gone meanwhile are skipped. */
	int (*set_flags)(struct pt_mbox *mb, const struct pt_flag_update *u, size_t n,
	                 struct pt_status *st);
	/* Remove these messages for good (EXPUNGE / UID EXPUNGE / MOVE). */
	int (*expunge)(struct pt_mbox *mb, const uint32_t *uids, size_t n, struct pt_status *st);
	/* A file descriptor or path to watch for outside changes (IDLE):
	 * the folder's mbox path. */
	const char *(*path)(const struct pt_mbox *mb);
	/* Like set_flags, but each change is applied to the state read from
	 * the file under the same lock, so a concurrent change of other flags
	 * by another session is kept (set_flags from a stale list would undo
	 * it). The list (info) afterwards has those messages' merged state.
	 * May be NULL in other implementations: callers fall back to
	 * set_flags. */
	int (*change_flags)(struct pt_mbox *mb, const struct pt_flag_change *c, size_t n,
	                    struct pt_status *st);

	/* ---- per-folder special use (RFC 6154 CREATE-SPECIAL-USE) ----
	 * A folder's use is a string of attributes as the client gave them
	 * ("\Sent \Trash"), kept by the store beside the subscriptions.
	 * special_uses emits every recorded (name, use); set_special_use
	 * records use for name, NULL or "" forgets it. May be NULL in other
	 * implementations (then nothing is recorded). */
	int (*special_uses)(struct pt_mstore *ms, void (*emit)(void *arg, const char *name, const char *use),
	                    void *arg, struct pt_status *st);
	int (*set_special_use)(struct pt_mstore *ms, const char *name, const char *use,
	                       struct pt_status *st);

	/* ---- quota (RFC 9208 STORAGE) ----
	 * The limit on folder name's file and its size now, in octets (*limit
	 * 0 = none). The limit holds per folder (each mbox file on its own, as
	 * Postfix's local enforces mailbox_size_limit), so each folder is its
	 * own quota root. May be NULL (no quota). */
	int (*quota)(struct pt_mstore *ms, const char *name, uint64_t *used, uint64_t *limit,
	             struct pt_status *st);
	/* ---- change notification (IDLE) ----
	 * The directory where the folder's index beside the mbox is saved
	 * (files there are replaced by rename): with path, what an inotify
	 * watch covers to hear of every change. May be NULL. */
	const char *(*index_dir)(const struct pt_mbox *mb);
	/* ---- CONDSTORE (RFC 7162) ----
	 * The folder's highest mod-sequence as of the last sync: never lower
	 * than any message's modseq, raised by every flag change, arrival and
	 * expunge, and never going back for one UIDVALIDITY (also across a
	 * lost index). May be NULL in other implementations. */
	uint64_t (*highest_modseq)(const struct pt_mbox *mb);
	/* change_flags that leaves every message whose modseq (as in the
	 * file, under the lock) is above unchangedsince alone and marks it
	 * in refused[k] (STORE UNCHANGEDSINCE, RFC 7162 §3.1.3). May be
	 * NULL. */
	int (*change_flags_cond)(struct pt_mbox *mb, const struct pt_flag_change *c, size_t n,
	                         uint64_t unchangedsince, unsigned char *refused, struct pt_status *st);
	/* ---- header cache ----
	 * The fields pt_header_cached() names of message uid, as a header
	 * section: each such field of the message's wire-form header as it
	 * is there (folded lines, CRLF), in order, then the empty line.
	 * Served from the folder's header cache, or read from the message's
	 * header now and kept there. 1 with *hdr (valid until the next call
	 * on mb, its sync or close), 0 when the message's fields cannot be
	 * cached (too big, a field without a line end: read it instead), -1
	 * with st as read would fail. May be NULL. */
	int (*header_fields)(struct pt_mbox *mb, uint32_t uid, const char **hdr, size_t *len,
	                     struct pt_status *st);
	/* QRESYNC's VANISHED (EARLIER): the UIDs expunged after modseq as
	 * *n ranges (lo, hi) in *ranges (malloc'd, ascending; a range may
	 * also cover UIDs that never were, or still are, there). -1 when the
	 * store does not know that far back (the caller then names every
	 * missing UID). May be NULL. */
	int (*vanished_since)(struct pt_mbox *mb, uint64_t modseq, uint32_t **ranges, size_t *n);
	/* Would sync find nothing new (a few stats)? 1 yes, 0 it must look.
	 * Lets a caller skip what it does around a sync of a big folder.
	 * May be NULL. */
	int (*uptodate)(struct pt_mbox *mb);
	/* ---- sort keys, kept with the header cache ----
	 * A SORT key the caller derived from message uid's cached fields
	 * (kind PT_SKEY_*), kept with that message's cache record while its
	 * text is unchanged. sort_key: 1 with *key (NUL-terminated, valid
	 * until the next call on mb) and *rank, else 0. A rank is the key's
	 * place among every ranked key of the folder (1 the lowest, equal
	 * keys equal ranks, 0 none): two ranked keys compare as their ranks
	 * do, so a sort of ranked keys compares no string. sort_key_put
	 * keeps key (len octets, no NUL) for uid. Both may be NULL. */
	int (*sort_key)(struct pt_mbox *mb, uint32_t uid, int kind, const char **key, uint32_t *rank);
	void (*sort_key_put)(struct pt_mbox *mb, uint32_t uid, int kind, const char *key, size_t len);
	/* An answer computed from the cached fields of messages uids[0..n)
	 * (with nums[k], the number each has in it), kept under name
	 * ([a-z0-9-], at most 32): answer_get gives it back (1 with *data,
	 * valid until the next call on mb) only for the same messages with
	 * the same texts and numbers, else 0. Both may be NULL. */
	int (*answer_get)(struct pt_mbox *mb, const char *name, const uint32_t *uids, const uint32_t *nums,
	                  size_t n, const char **data, size_t *len);
	void (*answer_put)(struct pt_mbox *mb, const char *name, const uint32_t *uids, const uint32_t *nums,
	                   size_t n, const char *data, size_t len);
	/* SEARCH HEADER Message-ID with an id "<...>" (key, len octets:
	 * '<', no other '>', then '>'): the UIDs (ascending, malloc'd) of
	 * every message of the store's list whose Message-ID fields could
	 * hold key as SEARCH compares them (case-insensitive substring of
	 * the value) -- each match is among them, others may be too. 1 with
	 * *uids and *n, 0 when the store cannot say (then every message is
	 * to be looked at). May be NULL. */
	int (*msgid_candidates)(struct pt_mbox *mb, const char *key, size_t len, uint32_t **uids, size_t *n);
	/* Messages [from, from + n) of the list as info() gives them, in
	 * brief: what a big folder's SELECT reads of every message, in one
	 * call (the caller checks from + n <= count). May be NULL (then
	 * info() it is). */
	void (*briefs)(const struct pt_mbox *mb, size_t from, size_t n, struct pt_msg_brief *out);
};

/* sort_key kinds: RFC 5256 base subject; first From mailbox's local part
 * (SORT FROM), both as imap_sort compares them. */
enum { PT_SKEY_SUBJECT = 0, PT_SKEY_FROM = 1, PT_SKEY_KINDS = 2 };

/* Header fields the header cache holds: what ENVELOPE, SORT, THREAD and
 * the SEARCH address/subject keys read, and what common clients ask in
 * BODY.PEEK[HEADER.FIELDS (...)]. name: len bytes, any case. */
static inline int
pt_header_cached(const char *name, size_t len)
{
	static const char *const names[] = {
		"date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to",
		"message-id", "references", "content-type", "priority", "x-priority", "importance",
		"newsgroups", "list-post", "disposition-notification-to",
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		const char *n = names[i];
		size_t k = 0;
		while (k < len && n[k] != '\0') {
			char c = name[k];
			if (c >= 'A' && c <= 'Z')
				c = (char)(c + 32);
			if (c != n[k])
				break;
			k++;
		}
		if (k == len && n[k] == '\0')
			return 1;
	}
	return 0;
}

#endif
