/* Internal interface of the IMAP module: the post-login session, its view
 * of the selected folder, command dispatch and reply helpers. Shared by
 * the module's files (and its unit tests / fuzzers) only. */
#ifndef POSTERN_IMAP_H
#define POSTERN_IMAP_H

#include <stddef.h>
#include <stdint.h>

#include "postern/conn.h"
#include "postern/event.h"
#include "postern/mailbox.h"
#include "postern/services.h"
#include "postern/session.h"
#include "postern/strbuf.h"
#include "imap_arg.h"

enum imap_state { IMAP_NOT_AUTH, IMAP_AUTH, IMAP_SELECTED, IMAP_LOGOUT };

struct imap_session {
	struct pt_conn *conn;
	enum imap_state state;
	struct pt_user user;
	char session_id[32];
	const struct pt_mailbox_ops *mbx;
	struct pt_mstore *ms;

	/* selected folder */
	struct pt_mbox *mb;
	char *selected;               /* its name (UTF-8) */
	int readonly;                 /* EXAMINE */
	/* What the session has told the client about each message (its
	 * MODSEQ as last told or fetched): sequence number = index + 1.
	 * Differences between this and the store's list are what sync
	 * reports (EXISTS, EXPUNGE, FETCH FLAGS). */
	struct pt_msg_brief *view;
	size_t nview, capview;
	size_t nkeywords_sent;        /* keyword table size last announced in FLAGS */
	/* What the store last said of view entries whose messages another
	 * session expunged, kept until our EXPUNGE for them goes out (FETCH
	 * RFC822.SIZE / INTERNALDATE still answer); ascending UIDs. */
	struct pt_msg_info *ghosts;
	size_t nghosts;

	/* SEARCHRES (RFC 5182): the last SEARCH RETURN (SAVE) result as
	 * ascending UIDs, "$" in a set; emptied with the selection. UIDs
	 * expunged since simply no longer resolve. */
	uint32_t *saved;
	size_t nsaved;

	/* A command whose reply is too long to queue at once (FETCH 1:* of a
	 * big folder, BODY[] of a 20 MB message; the conn's output buffer is
	 * capped) sets cont before returning and pauses input. While cont is
	 * set the reader dispatches nothing more, on_drain calls cont(s) to
	 * queue the next chunk, and cont clears itself (and resumes input)
	 * after its tagged reply. If the session ends first, cont_free(s)
	 * releases its state. */
	void (*cont)(struct imap_session *s);
	void (*cont_free)(struct imap_session *s);
	void *cont_state;

	/* RFC 7162: CONDSTORE enabled (ENABLE, or a command that uses it):
	 * flag changes carry MODSEQ; QRESYNC enabled: expunges are told as
	 * VANISHED (imap_condstore.c). */
	int condstore, qresync;
	int search_modseq;            /* the last imap_search_eval used MODSEQ */
	int search_expunged;          /* ... met a message another session expunged
	                                 that it could not judge (its text gone) */

	int idling;
	char *idle_tag;
	struct pt_timer *idle_timer;

	uint32_t uidvalidity;         /* of the selected folder, as announced */
	uint32_t uid_seen_max;        /* highest UID ever in the view: newer ones are new mail */
	int cmd_uid;                  /* the running command is a UID variant */
	int rev2;                     /* ENABLE IMAP4rev2 (RFC 9051): no \Recent/RECENT,
	                                 ESEARCH answers SEARCH, SELECT without UNSEEN */
	uint64_t cmd_start_ms;        /* for Dovecot's "(0.001 + 0.000 secs)" */
	struct pt_strbuf *capture;    /* unit tests: replies go here when conn is NULL */

	struct pt_timer *idle_poll_timer; /* IDLE: folder checked for news */
	int idle_wd[2];               /* IDLE: inotify watches (mbox, index dir) */
	int idle_nwd;                 /* how many are armed (0: polling only) */
	int idle_rearm;               /* the mbox did not exist: watch it once it does */
	struct pt_deferred idle_wake; /* IDLE: a sync queued by an inotify event */
	unsigned bad_commands;        /* BYE after too many */

	/* counters for the Disconnected log line */
	unsigned long long bytes_in, bytes_out;
	unsigned expunged, deleted;
	unsigned fetch_hdr_count, fetch_body_count;
	unsigned long long fetch_hdr_bytes, fetch_body_bytes;
};

/* A configured special-use folder (imap_special_use). */
#define IMAP_SPECIAL_MAX 16
enum imap_auto { IMAP_AUTO_NO, IMAP_AUTO_CREATE, IMAP_AUTO_SUBSCRIBE };
struct imap_special {
	char name[512];               /* UTF-8, as in the store */
	char use[16];                 /* "\Sent", canonical case */
	enum imap_auto autocreate;
};
/* "Sent:\Sent:subscribe" into *out (may be NULL: only checked); 0 or -1.
 * imap_special_use.c. */
int imap_special_parse(const char *item, struct imap_special *out);
/* The canonical spelling of a special-use attribute (RFC 6154 §2), NULL
 * when s is none. */
const char *imap_special_attr(const char *s, size_t len);
/* At login: create (and subscribe) the configured folders that are
 * missing (auto = create / subscribe). */
void imap_special_autocreate(struct imap_session *s);
/* The special-use attributes of folders, read once per command: the
 * recorded ones (CREATE ... USE) over the configured ones (with_config);
 * imap_special_of gives "" for a folder without. */
struct imap_special_table;
struct imap_special_table *imap_special_load(struct imap_session *s, int with_config);
const char *imap_special_of(const struct imap_special_table *t, const char *name);
size_t imap_special_count(const struct imap_special_table *t);
const char *imap_special_name(const struct imap_special_table *t, size_t i);
const char *imap_special_use(const struct imap_special_table *t, size_t i);
void imap_special_free(struct imap_special_table *t);

/* Settings from the config (module.c fills them in init). */
struct imap_settings {
	const struct pt_config *conf;
	size_t max_line;              /* imap_max_line_length */
	size_t max_literal;           /* imap_max_literal_size */
	unsigned idle_notify_ms;      /* imap_idle_notify_interval */
	int idle_inotify;             /* imap_idle_inotify */
	unsigned login_timeout_ms;    /* imap_login_timeout */
	unsigned autologout_ms;       /* imap_autologout */
	struct imap_special special[IMAP_SPECIAL_MAX]; /* imap_special_use */
	size_t nspecial;
};
extern struct imap_settings imap_set;

/* Mailbox names on the wire are UTF-8, not modified UTF-7: the running
 * command's session enabled IMAP4rev2 (set by the dispatcher, one
 * command at a time in the mail process). imap_session.c. */
extern int imap_names_utf8;

/* Post-login capabilities (CAPABILITY, and the login's reply). */
#define IMAP_CAPS_POSTLOGIN \
	"IMAP4rev1 IMAP4rev2 SASL-IR ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=ORDEREDSUBJECT " \
	"LITERAL+ NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN MULTIAPPEND CATENATE BINARY " \
	"ESEARCH ESORT SEARCHRES STATUS=SIZE LIST-EXTENDED LIST-STATUS SPECIAL-USE CREATE-SPECIAL-USE" \
	" QUOTA QUOTA=RES-STORAGE COMPRESS=DEFLATE CONDSTORE QRESYNC I18NLEVEL=1"

/* Listener hook (imap_login.c): pre-login on a fresh connection. */
void imap_login_accept(struct pt_conn *c, const struct pt_listener *l);
/* Module stop: drop the records of logins handed to mail processes. */
void imap_login_stop(void);
/* Service "session:imap" (imap_session.c), in the user's mail process. */
extern const struct pt_session_ops imap_session_ops;

/* A command handler. uid: called as "UID <command>". args: the command's
 * arguments after its name (parsed; literals already read). */
typedef void imap_cmd_fn(struct imap_session *s, const char *tag, const struct imap_arg *args,
                         size_t nargs, int uid);

/* ---- replies (imap_reply.c) ---- */
/* "TAG OK text" etc.; status is "OK", "NO" or "BAD". */
void imap_tagged(struct imap_session *s, const char *tag, const char *status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* "* text" + CRLF */
void imap_untagged(struct imap_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Raw bytes (literal data). */
void imap_write(struct imap_session *s, const void *data, size_t len);
/* A string as IMAP quoted string, or a literal {n} when it needs one. */
void imap_append_astring(struct pt_strbuf *b, const char *s, size_t len);
/* A mailbox name as it goes on the wire: modified UTF-7 (UTF-8 for an
 * IMAP4rev2 session), as an astring. */
void imap_append_mailbox_name(struct pt_strbuf *b, const char *name);
/* The bit of a settable system flag ("\Seen", any case), 0 for \Recent
 * or an unknown one; whether a keyword is a valid atom (RFC 3501 §9). */
uint32_t imap_system_flag(const char *name);
int imap_keyword_valid(const char *s, size_t len);
/* "(\Seen \Answered kw1)" for flags + keyword bits of the selected folder. */
void imap_append_flags(struct imap_session *s, struct pt_strbuf *b, uint32_t flags, uint64_t kw);
/* Dovecot's completion: "TAG OK [code] What completed (0.001 + 0.000 secs)."
 * (code may be NULL). */
void imap_completed(struct imap_session *s, const char *tag, const char *code, const char *what);
/* Any tagged answer with Dovecot's timing: "TAG status [code] text (0.001
 * + 0.000 secs)." (text without its final period; code may be NULL). */
void imap_tagged_timed(struct imap_session *s, const char *tag, const char *status, const char *code,
                       const char *text);
/* "* FLAGS (...)" and "* OK [PERMANENTFLAGS (...)] Flags permitted." for
 * the selected folder's current keyword table. */
void imap_send_flags(struct imap_session *s);

/* ---- view and sync (imap_sync.c) ---- */
/* Re-read the store and tell the client what changed: new EXISTS/RECENT,
 * FETCH FLAGS for changed flags, and (only when allow_expunge: not during
 * FETCH, STORE, SEARCH — RFC 3501 §7.4.1) EXPUNGE for vanished UIDs. */
void imap_sync(struct imap_session *s, int allow_expunge);
/* After our own flag change: tell what the store's merged state of
 * view entries idx[0..n) says beyond the view (another session's). */
void imap_sync_these(struct imap_session *s, const size_t *idx, size_t n);
/* Sequence number (1-based) of uid in the view, 0 when not there. */
uint32_t imap_view_seq(const struct imap_session *s, uint32_t uid);
/* The first view entry with a UID >= uid (nview when none). */
size_t imap_view_lower(const struct imap_session *s, uint64_t uid);
/* Resolve a sequence set (uid = UID set) to view indexes, ascending and
 * unique; *idx malloc'd (caller frees). -1 on a syntax error or a sequence
 * number beyond the view (BAD / NO), 0 otherwise. */
int imap_resolve_set(const struct imap_session *s, const char *set, size_t len, int uid,
                     size_t **idx, size_t *n);
/* Fill the view from the store after open (SELECT/EXAMINE); 0 or -1.
 * What SELECT reports of it comes from the same pass: messages with
 * \Recent, the first without \Seen (1-based, 0 none), the highest
 * MODSEQ among them. */
struct imap_view_sums {
	size_t recent, first_unseen;
	uint64_t modseq;
	/* imap_view_load_since: the entries with a MODSEQ above since, in
	 * view order, while at most IMAP_SINCE_MAX (else over is set): a
	 * QRESYNC SELECT then needs no second walk of a big view. */
#define IMAP_SINCE_MAX 64
	int collected, over;
	size_t nsince, since_idx[IMAP_SINCE_MAX];
};
int imap_view_load(struct imap_session *s, struct imap_view_sums *sums);
int imap_view_load_since(struct imap_session *s, struct imap_view_sums *sums, int collect, uint64_t since);
/* Drop the selection (CLOSE, UNSELECT, SELECT of another, LOGOUT). */
void imap_view_clear(struct imap_session *s);
/* Remove view entry idx (after our own EXPUNGE sent "* seq EXPUNGE"). */
void imap_view_remove(struct imap_session *s, size_t idx);
/* Store index of view entry idx, or (size_t)-1 when the message is gone. */
size_t imap_view_store_index(const struct imap_session *s, size_t idx);
/* The last known info of a view entry whose message is gone; NULL if none. */
const struct pt_msg_info *imap_view_ghost(const struct imap_session *s, uint32_t uid);

/* SEARCH keys (after RETURN / CHARSET) evaluated over the view, after a
 * sync that sends no EXPUNGE: the matching view indexes, ascending, in
 * *hits (malloc'd). 0, or -1 with the BAD/NO sent. imap_search_cmd.c. */
int imap_search_eval(struct imap_session *s, const char *tag, const char *cmd, const struct imap_arg *args,
                     size_t nargs, size_t **hits, size_t *nhits);

/* The store's info of view entry vi (an info() answer), NULL when the
 * store no longer has it. imap_search_cmd.c. */
const struct pt_msg_info *imap_view_info(struct imap_session *s, size_t vi);

/* Send the untagged lines in out (taken over) and the tagged OK "what
 * completed", in pieces when the client reads slowly. */
void imap_search_reply(struct imap_session *s, const char *tag, struct pt_strbuf *out, const char *what);

/* ---- commands implemented in separate files ---- */
imap_cmd_fn imap_cmd_fetch;      /* imap_fetch.c  */
imap_cmd_fn imap_cmd_search;     /* imap_search_cmd.c */
imap_cmd_fn imap_cmd_sort;       /* imap_sort.c: SORT (ESORT) and THREAD */
imap_cmd_fn imap_cmd_thread;
imap_cmd_fn imap_cmd_store;      /* imap_store.c  */
imap_cmd_fn imap_cmd_copy;       /* imap_copy.c: COPY and MOVE (move flag in name) */
imap_cmd_fn imap_cmd_move;
imap_cmd_fn imap_cmd_append;     /* imap_append.c */
imap_cmd_fn imap_cmd_idle;       /* imap_idle.c */
imap_cmd_fn imap_cmd_getquota, imap_cmd_getquotaroot, imap_cmd_setquota; /* imap_quota.c */
imap_cmd_fn imap_cmd_compress;   /* imap_compress.c */
/* imap_mailbox_cmd.c */
imap_cmd_fn imap_cmd_select, imap_cmd_examine, imap_cmd_create, imap_cmd_delete, imap_cmd_rename,
	imap_cmd_subscribe, imap_cmd_unsubscribe, imap_cmd_list, imap_cmd_lsub, imap_cmd_status,
	imap_cmd_namespace;

/* ---- CONDSTORE / QRESYNC (imap_condstore.c, RFC 7162) ---- */
/* ENABLE's names: adds " CONDSTORE" / " QRESYNC" to enabled for those it
 * enables now; 1 when name is one of them. */
int imap_condstore_enable(struct imap_session *s, const char *name, struct pt_strbuf *enabled);
/* A CONDSTORE enabling command runs (RFC 7162 §3.1): on from now, and
 * the first time with a folder selected its HIGHESTMODSEQ is told. */
void imap_condstore_on(struct imap_session *s);
/* The selected folder's HIGHESTMODSEQ (after a sync). */
uint64_t imap_highest_modseq(const struct imap_session *s);
/* The same when the view's highest MODSEQ is known (view_max). */
uint64_t imap_highest_modseq_above(const struct imap_session *s, uint64_t view_max);
/* "HIGHESTMODSEQ n" into buf when QRESYNC is on (the tagged OK of
 * EXPUNGE), else NULL. */
const char *imap_modseq_code(struct imap_session *s, char *buf, size_t len);
/* "* VANISHED [(EARLIER) ]set" for ascending uids (none: nothing). */
void imap_vanished_send(struct imap_session *s, const uint32_t *uids, size_t n, int earlier);
/* VANISHED (EARLIER) for the UIDs of set (NULL: 1:UIDNEXT-1) that are no
 * longer in the folder (nor in the view). 0, or -1 on a bad set. */
int imap_vanished_earlier(struct imap_session *s, const char *set, size_t len);
/* The same, only UIDs expunged after modseq (0: every missing one). */
int imap_vanished_since(struct imap_session *s, const char *set, size_t len, uint64_t modseq);
/* SELECT/EXAMINE parameters "(CONDSTORE)" / "(QRESYNC (...))": parsed
 * into q; 0, or -1 with the BAD text in err. */
struct imap_qresync {
	int condstore, qresync;
	uint32_t uidvalidity;
	uint64_t modseq;
	const char *known;            /* known-uids set text, or NULL */
	size_t known_len;
};
int imap_select_params(struct imap_session *s, const struct imap_arg *list, struct imap_qresync *q,
                       char *err, size_t errlen);
/* After SELECT's responses: VANISHED (EARLIER) and FETCH of what changed
 * since q's modseq (when its UIDVALIDITY matches); sums, if not NULL, from
 * imap_view_load_since with that modseq. */
void imap_qresync_select(struct imap_session *s, const struct imap_qresync *q,
                         const struct imap_view_sums *sums);
/* A mod-sequence value (1..2^63-1): 0 or -1. zero_ok: 0 allowed. */
int imap_modseq_parse(const char *s, size_t len, int zero_ok, uint64_t *out);

/* ---- IDLE (imap_idle.c) ---- */
/* A line from the client while idling ("DONE" ends it). */
void imap_idle_line(struct imap_session *s, const char *line, size_t len);
/* Stop timers (session end). */
void imap_idle_stop(struct imap_session *s);

/* ---- shared by the command files ---- */
/* Expunge the given view entries (\Deleted ones for EXPUNGE/CLOSE, all of
 * them for MOVE) from the store and, unless silent, tell "* n EXPUNGE".
 * 0, or -1 with st filled. */
int imap_expunge_view(struct imap_session *s, const size_t *idx, size_t n, int silent,
                      struct pt_status *st);
/* "TAG NO [CODE] text" from a store failure. */
void imap_store_error(struct imap_session *s, const char *tag, const struct pt_status *st);
/* A mailbox-name argument decoded from modified UTF-7 into a malloc'd
 * UTF-8 string ("INBOX" in any case becomes "INBOX"); NULL when invalid. */
char *imap_mailbox_arg(const struct imap_arg *a);
/* STATUS items (RFC 3501 + SIZE, RFC 8438): whether list is a non-empty
 * list of known items (else the first bad one is copied into bad); the
 * "* STATUS" line of folder name for them, 0 or -1 with st. */
int imap_status_items_valid(const struct imap_arg *list, char *bad, size_t badlen);
int imap_status_send(struct imap_session *s, const char *name, const struct imap_arg *list,
                     struct pt_status *st);
/* The answer to a mailbox argument imap_mailbox_arg refused. */
void imap_mailbox_invalid(struct imap_session *s, const char *tag, const char *cmd, const struct imap_arg *a);

#endif
