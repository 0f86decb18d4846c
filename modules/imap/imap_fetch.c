/* FETCH and UID FETCH (RFC 3501 §6.4.5, §7.4.2): the implicit \Seen, one
 * untagged FETCH per message, literals streamed in chunks so that neither
 * a 1:* over a big folder nor one huge message overruns the conn's output
 * buffer (the session's cont hook resumes us when output drains).
 *
 * A message another session expunged stays in our view until we may send
 * EXPUNGE (§7.4.1 forbids it during FETCH). What we still know of it (UID,
 * flags, and size and date as of before this command's sync) is answered
 * as usual, as Dovecot does from its index (imaptest "expunge" checks it).
 * Its text is gone: body sections come as NIL, ENVELOPE/BODY/BODYSTRUCTURE
 * and a size or date no longer known are left out (RFC 2180 §4.1.3), and
 * the command still ends OK (the lead's call: the client learns of the
 * expunge at its next NOOP instead of retrying a failed FETCH), with
 * [EXPUNGEISSUED] when an item asked for could not be answered, in
 * Dovecot 2.3's words. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/conn.h"
#include "postern/log.h"
#include "imap.h"
#include "imap_fetch.h"
#include "imap_msg.h"

/* Queue no more than this before waiting for the client to read: bounds
 * a session's output memory well below the conn's hard cap. */
#define FETCH_HIGH_WATER (256 * 1024)
/* Literal data is queued in pieces of this size. */
#define FETCH_CHUNK (64 * 1024)

struct fetch_run {
	char *tag;
	int uid;
	struct imap_fetch_req req;
	size_t *idx, n, pos;          /* view indexes; the one being sent */
	unsigned char *implicit_flags; /* per idx: \Seen set now, FLAGS not asked */
	/* Per idx: the store's info from before this command's sync, for
	 * messages that sync then found expunged. */
	struct pt_msg_info *snap;
	unsigned char *have_snap;
	int view_only;                /* only UID and FLAGS: the view knows them */
	int no_info, no_text;         /* the message being sent is gone: its
	                                 size/date, its text are not known */

	/* the message being sent */
	struct pt_msg_info cur;
	int started;
	size_t item;                  /* next item to send */
	int nsent;                    /* items sent (for the separating space) */
	int flags_done;
	struct pt_msg_text text;
	int have_text;
	struct imap_msg *parsed;
	struct pt_strbuf data;        /* a section's octets when not a plain slice */
	const char *lit;              /* literal being streamed */
	size_t litlen, litpos;

	/* Every text item reads only cached header fields (ENVELOPE,
	 * HEADER.FIELDS of those): the store's header_fields, copied here,
	 * stands for the message. */
	int hdr_only;
	struct pt_strbuf hdr;
	struct pt_strbuf item_buf;    /* send_item's, kept across items */

	int failed;
	int unknown_cte;              /* a BINARY item's part had an unknown encoding */
	int expunged;                 /* an item of a gone message was left out or NIL */
	struct pt_strbuf nulfix;      /* BODY octets with NUL made 0x80 (as Dovecot) */
};

static size_t
output_pending(const struct imap_session *s)
{
	return s->conn ? pt_conn_pending_output(s->conn) : 0;
}

static void
run_message_done(struct imap_session *s, struct fetch_run *r)
{
	if (r->have_text)
		s->mbx->release(s->mb, &r->text);
	r->have_text = 0;
	memset(&r->text, 0, sizeof r->text);
	imap_msg_free(r->parsed);
	r->parsed = NULL;
	pt_strbuf_free(&r->data);
	memset(&r->data, 0, sizeof r->data);
	pt_strbuf_free(&r->nulfix);
	memset(&r->nulfix, 0, sizeof r->nulfix);
	r->lit = NULL;
	r->litlen = r->litpos = 0;
	r->started = 0;
	r->item = 0;
	r->nsent = 0;
	r->flags_done = 0;
}

static void
run_free(struct imap_session *s, struct fetch_run *r)
{
	if (!r)
		return;
	run_message_done(s, r);
	pt_strbuf_free(&r->hdr);
	pt_strbuf_free(&r->item_buf);
	imap_fetch_req_free(&r->req);
	free(r->idx);
	free(r->implicit_flags);
	free(r->snap);
	free(r->have_snap);
	free(r->tag);
	free(r);
}

static size_t
store_index(const struct imap_session *s, size_t vi)
{
	return s->mbx->find(s->mb, s->view[vi].uid);
}

/* Remember what the store knows of each message before syncing, so one
 * that another session expunged can still be answered without its text. */
static void
run_snapshot(struct imap_session *s, struct fetch_run *r)
{
	r->view_only = 1;
	for (size_t i = 0; i < r->req.n; i++)
		if (r->req.items[i].kind != IMAP_FI_UID && r->req.items[i].kind != IMAP_FI_FLAGS &&
		    r->req.items[i].kind != IMAP_FI_MODSEQ)
			r->view_only = 0;
	if (r->view_only || r->n == 0)
		return;
	r->snap = malloc(r->n * sizeof *r->snap);
	r->have_snap = calloc(r->n, 1);
	if (!r->snap || !r->have_snap)
		return;   /* without it such messages count as gone */
	for (size_t i = 0; i < r->n; i++) {
		size_t si = store_index(s, r->idx[i]);

		if (si != (size_t)-1) {
			r->snap[i] = *s->mbx->info(s->mb, si);
			r->have_snap[i] = 1;
		}
	}
}

/* Can the cached header fields answer every text item of the request? */
static int
req_hdr_only(const struct imap_session *s, const struct imap_fetch_req *q)
{
	if (s->mbx->header_fields == NULL || !q->needs_text)
		return 0;
	for (size_t i = 0; i < q->n; i++) {
		const struct imap_fetch_item *it = &q->items[i];
		switch (it->kind) {
		case IMAP_FI_UID:
		case IMAP_FI_FLAGS:
		case IMAP_FI_MODSEQ:
		case IMAP_FI_INTERNALDATE:
		case IMAP_FI_SIZE:
		case IMAP_FI_ENVELOPE:
			break;
		case IMAP_FI_SECTION:
			if (it->sec.nparts != 0 || it->sec.kind != IMAP_SEC_HEADER_FIELDS)
				return 0;
			for (size_t k = 0; k < it->sec.nfields; k++)
				if (!pt_header_cached(it->sec.fields[k], strlen(it->sec.fields[k])))
					return 0;
			break;
		default:
			return 0;
		}
	}
	return 1;
}

/* The message's cached header fields as its text: 1 done, 0 not cached
 * (read it), -1 failed (st). */
static int
run_header_text(struct imap_session *s, struct fetch_run *r, uint32_t uid, struct pt_status *st)
{
	const char *h;
	size_t len;
	int rc = s->mbx->header_fields(s->mb, uid, &h, &len, st);

	if (rc != 1)
		return rc;
	/* Copied: the store's pointer lasts only to its next call, and a
	 * paused reply resumes later. */
	r->hdr.len = 0;
	pt_strbuf_put(&r->hdr, h, len);
	if (r->hdr.oom) {
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return -1;
	}
	r->text.data = r->hdr.p;
	r->text.len = r->text.hdr_len = len;
	r->text.priv = NULL;
	return 1;
}

/* Set \Seen on every unseen message the command reads with a non-PEEK
 * item, in one store call, before anything is sent: the FETCH replies
 * then carry the new flags (as Dovecot does). */
static void
run_mark_seen(struct imap_session *s, struct fetch_run *r)
{
	struct pt_flag_update *u;
	struct pt_flag_change *c;
	struct pt_status st = { 0 };
	size_t nu = 0;

	if (!r->req.sets_seen || s->readonly || r->n == 0)
		return;
	u = malloc(r->n * sizeof *u);
	c = calloc(r->n, sizeof *c);
	r->implicit_flags = calloc(r->n, 1);
	if (!u || !c || !r->implicit_flags) {
		free(u);
		free(c);
		return;
	}
	for (size_t i = 0; i < r->n; i++) {
		size_t si = store_index(s, r->idx[i]);
		const struct pt_msg_info *m;

		if (si == (size_t)-1)
			continue;
		m = s->mbx->info(s->mb, si);
		if (m->flags & PT_F_SEEN)
			continue;
		u[nu].uid = m->uid;
		u[nu].flags = (m->flags & PT_F_SYSTEM) | PT_F_SEEN;
		u[nu].keywords = m->keywords;
		c[nu].uid = m->uid;
		c[nu].add = PT_F_SEEN;
		nu++;
		r->implicit_flags[i] = 1;
	}
	/* A change where the store takes one: flags set by another process
	 * since our sync stay. */
	if (nu > 0 && (s->mbx->change_flags ? s->mbx->change_flags(s->mb, c, nu, &st) :
	                                      s->mbx->set_flags(s->mb, u, nu, &st)) != 0) {
		pt_warn("imap(%s): setting \\Seen in %s failed: %s", s->user.name,
		        s->selected ? s->selected : "?", st.text);
		memset(r->implicit_flags, 0, r->n);
		nu = 0;
	}
	free(u);
	free(c);
	for (size_t i = 0; i < r->n && nu > 0; i++) {
		struct pt_msg_brief *v = &s->view[r->idx[i]];
		size_t si;

		if (!r->implicit_flags[i])
			continue;
		/* The view follows what the store now says, so the sync after
		 * the command does not report this change a second time. */
		si = store_index(s, r->idx[i]);
		if (si != (size_t)-1) {
			const struct pt_msg_info *m = s->mbx->info(s->mb, si);

			v->flags = m->flags | PT_F_SEEN;
			v->keywords = m->keywords;
			if (m->modseq > v->modseq)
				v->modseq = m->modseq;
		} else {
			v->flags |= PT_F_SEEN;
		}
		if (r->req.want_flags)
			r->implicit_flags[i] = 0;
	}
}

static void
put_sep(struct imap_session *s, struct fetch_run *r)
{
	if (r->nsent++ > 0)
		imap_write(s, " ", 1);
}

static void
send_flags(struct imap_session *s, struct fetch_run *r, const struct pt_msg_brief *v)
{
	struct pt_strbuf b = { 0 };

	pt_strbuf_puts(&b, "FLAGS ");
	imap_append_flags(s, &b, v->flags, v->keywords);
	put_sep(s, r);
	if (!b.oom)
		imap_write(s, b.p, b.len);
	else
		r->failed = 1;
	pt_strbuf_free(&b);
	r->flags_done = 1;
}

/* The octets of a body item: a slice of the message, or built by the
 * message library into r->data. */
static void
item_octets(struct fetch_run *r, const struct imap_fetch_item *it, const char **p, size_t *len)
{
	const char *d = r->text.data;
	size_t dl = r->text.len, hl = r->text.hdr_len <= dl ? r->text.hdr_len : dl;

	switch (it->kind) {
	case IMAP_FI_RFC822:
		*p = d, *len = dl;
		return;
	case IMAP_FI_RFC822_HEADER:
		*p = d, *len = hl;
		return;
	case IMAP_FI_RFC822_TEXT:
		*p = d + hl, *len = dl - hl;
		return;
	default:
		break;
	}
	if (it->kind == IMAP_FI_BINARY) {
		/* RFC 3516: the part decoded (checked known at message start). */
		pt_strbuf_free(&r->data);
		memset(&r->data, 0, sizeof r->data);
		if (it->sec.nparts == 0)
			pt_strbuf_put(&r->data, d, dl);
		else if (r->parsed)
			(void)imap_msg_binary(r->parsed, &it->sec, &r->data);
		if (r->data.oom)
			r->failed = 1;
		*p = r->data.oom || !r->data.p ? "" : r->data.p;
		*len = r->data.oom ? 0 : r->data.len;
	} else if (it->sec.nparts == 0 && it->sec.kind == IMAP_SEC_ALL) {
		*p = d, *len = dl;
	} else if (it->sec.nparts == 0 && it->sec.kind == IMAP_SEC_HEADER) {
		*p = d, *len = hl;
	} else if (it->sec.nparts == 0 && it->sec.kind == IMAP_SEC_TEXT) {
		*p = d + hl, *len = dl - hl;
	} else {
		pt_strbuf_free(&r->data);
		memset(&r->data, 0, sizeof r->data);
		if (r->parsed)
			imap_msg_section(r->parsed, &it->sec, &r->data);
		if (r->data.oom)
			r->failed = 1;
		*p = r->data.oom || !r->data.p ? "" : r->data.p;
		*len = r->data.oom ? 0 : r->data.len;
	}
	if (it->partial) {
		size_t off = it->off < *len ? it->off : *len;
		size_t cnt = *len - off < it->count ? *len - off : it->count;

		*p += off;
		*len = cnt;
	}
	/* A string or literal may not carry NUL (RFC 3501 §4.3); only
	 * BINARY's literal8 may. An appended binary message read with BODY
	 * gets 0x80 for each NUL, as Dovecot does. */
	if (it->kind != IMAP_FI_BINARY && *len > 0 && memchr(*p, 0, *len) != NULL) {
		pt_strbuf_free(&r->nulfix);
		memset(&r->nulfix, 0, sizeof r->nulfix);
		pt_strbuf_put(&r->nulfix, *p, *len);
		if (r->nulfix.oom) {
			r->failed = 1;
			*len = 0;
			return;
		}
		for (size_t i = 0; i < r->nulfix.len; i++)
			if (r->nulfix.p[i] == 0)
				r->nulfix.p[i] = (char)0x80;
		*p = r->nulfix.p;
	}
}

/* BINARY.SIZE: the octets BINARY[part] gives (whole message: its size). */
static size_t
binary_size(struct fetch_run *r, const struct imap_fetch_item *it)
{
	struct pt_strbuf b = { 0 };
	size_t n;

	if (it->sec.nparts == 0 || !r->parsed)
		return it->sec.nparts == 0 ? r->text.len : 0;
	(void)imap_msg_binary(r->parsed, &it->sec, &b);
	if (b.oom)
		r->failed = 1;
	n = b.oom ? 0 : b.len;
	pt_strbuf_free(&b);
	return n;
}

static int
item_is_header(const struct imap_fetch_item *it)
{
	if (it->kind == IMAP_FI_RFC822_HEADER)
		return 1;
	return it->kind == IMAP_FI_SECTION && (it->sec.kind == IMAP_SEC_HEADER ||
	       it->sec.kind == IMAP_SEC_HEADER_FIELDS || it->sec.kind == IMAP_SEC_HEADER_FIELDS_NOT ||
	       it->sec.kind == IMAP_SEC_MIME);
}

/* Send one non-literal item, or the head of a literal (then r->lit is
 * set and the data follows in chunks). */
static void
send_item(struct imap_session *s, struct fetch_run *r, const struct imap_fetch_item *it,
          const struct pt_msg_brief *v, const struct pt_msg_info *m)
{
	/* The run's buffer, emptied: an ENVELOPE grew a new one from 256
	 * octets (two or three reallocs) for every message. */
	struct pt_strbuf b = r->item_buf;
	memset(&r->item_buf, 0, sizeof r->item_buf);
	b.len = 0;
	b.oom = 0;
	char date[32];
	const char *p;
	size_t len;

	switch (it->kind) {
	case IMAP_FI_UID:
		pt_strbuf_printf(&b, "UID %u", v->uid);
		break;
	case IMAP_FI_FLAGS:
		r->item_buf = b;
		send_flags(s, r, v);
		return;
	case IMAP_FI_MODSEQ:
		pt_strbuf_printf(&b, "MODSEQ (%llu)", (unsigned long long)(v->modseq ? v->modseq : 1));
		break;
	case IMAP_FI_INTERNALDATE:
		imap_datetime_format(m->internal_date, m->tz_minutes, date);
		pt_strbuf_printf(&b, "INTERNALDATE \"%s\"", date);
		break;
	case IMAP_FI_SIZE:
		pt_strbuf_printf(&b, "RFC822.SIZE %llu", (unsigned long long)m->size);
		break;
	case IMAP_FI_ENVELOPE:
		pt_strbuf_puts(&b, "ENVELOPE ");
		imap_msg_envelope(r->parsed, &b);
		break;
	case IMAP_FI_BODY:
	case IMAP_FI_BODYSTRUCTURE:
		pt_strbuf_puts(&b, it->kind == IMAP_FI_BODY ? "BODY " : "BODYSTRUCTURE ");
		imap_msg_bodystructure(r->parsed, it->kind == IMAP_FI_BODYSTRUCTURE, &b);
		break;
	case IMAP_FI_BINARY_SIZE:
		pt_strbuf_printf(&b, "%s %zu", it->name, binary_size(r, it));
		break;
	case IMAP_FI_SECTION:
	case IMAP_FI_BINARY:
	case IMAP_FI_RFC822:
	case IMAP_FI_RFC822_HEADER:
	case IMAP_FI_RFC822_TEXT:
		item_octets(r, it, &p, &len);
		if (item_is_header(it)) {
			s->fetch_hdr_count++;
			s->fetch_hdr_bytes += len;
		} else {
			s->fetch_body_count++;
			s->fetch_body_bytes += len;
		}
		if (len == 0) {
			pt_strbuf_printf(&b, "%s \"\"", it->name);
		} else {
			/* literal8 (RFC 3516) when the decoded octets hold a NUL */
			int lit8 = it->kind == IMAP_FI_BINARY && memchr(p, 0, len) != NULL;
			pt_strbuf_printf(&b, "%s %s{%zu}\r\n", it->name, lit8 ? "~" : "", len);
			r->lit = p;
			r->litlen = len;
			r->litpos = 0;
		}
		break;
	}
	put_sep(s, r);
	if (!b.oom)
		imap_write(s, b.p, b.len);
	else
		r->failed = 1;
	if (b.oom || b.cap > 65536)
		pt_strbuf_free(&b);
	else
		r->item_buf = b;
}

static int
item_is_octets(const struct imap_fetch_item *it)
{
	return it->kind == IMAP_FI_SECTION || it->kind == IMAP_FI_BINARY || it->kind == IMAP_FI_RFC822 ||
	       it->kind == IMAP_FI_RFC822_HEADER || it->kind == IMAP_FI_RFC822_TEXT;
}

/* Can the item be answered for the current message? */
static int
item_known(const struct fetch_run *r, const struct imap_fetch_item *it)
{
	switch (it->kind) {
	case IMAP_FI_INTERNALDATE:
	case IMAP_FI_SIZE:
		return !r->no_info;
	case IMAP_FI_ENVELOPE:
	case IMAP_FI_BODY:
	case IMAP_FI_BODYSTRUCTURE:
	case IMAP_FI_BINARY_SIZE:
		return !r->no_text;
	default:
		return 1;   /* UID, FLAGS; body sections as NIL when gone */
	}
}

/* Open the next message for sending: 1 ready, 0 skipped (unreadable or
 * nothing known to say; r->pos moved on). */
static int
run_message_start(struct imap_session *s, struct fetch_run *r)
{
	size_t vi = r->idx[r->pos], si = store_index(s, vi);
	struct pt_status st = { 0 };

	r->no_info = r->no_text = 0;
	if (si != (size_t)-1) {
		r->cur = *s->mbx->info(s->mb, si);
	} else if (r->have_snap && r->have_snap[r->pos]) {
		r->cur = r->snap[r->pos];
	} else if (imap_view_ghost(s, s->view[vi].uid)) {
		r->cur = *imap_view_ghost(s, s->view[vi].uid);
	} else {
		memset(&r->cur, 0, sizeof r->cur);
		r->cur.uid = s->view[vi].uid;
		r->no_info = 1;
	}
	int from_cache = r->hdr_only && si != (size_t)-1 ? run_header_text(s, r, s->view[vi].uid, &st) : 0;
	if (from_cache == 1) {
		r->parsed = imap_msg_parse(r->text.data, r->text.len);
		if (!r->parsed) {
			r->failed = 1;
			run_message_done(s, r);
			r->pos++;
			return 0;
		}
	} else if (r->req.needs_text && si == (size_t)-1) {
		r->no_text = 1;
	} else if (r->req.needs_text && (from_cache < 0 ||
	           s->mbx->read(s->mb, s->view[vi].uid, &r->text, &st) != 0)) {
		if (store_index(s, vi) != (size_t)-1 && strcmp(st.dsn, "NONEXISTENT") != 0) {
			pt_warn("imap(%s): reading UID %u of %s failed: %s", s->user.name,
			        s->view[vi].uid, s->selected ? s->selected : "?", st.text);
			r->failed = 1;
			r->pos++;
			return 0;
		}
		r->no_text = 1;
	} else if (r->req.needs_text) {
		r->have_text = 1;
		if (r->req.needs_parse) {
			r->parsed = imap_msg_parse(r->text.data, r->text.len);
			if (!r->parsed) {
				r->failed = 1;
				run_message_done(s, r);
				r->pos++;
				return 0;
			}
		}
	}
	/* RFC 3516: a part whose encoding we cannot undo fails the command
	 * with [UNKNOWN-CTE]; the message is left out of the reply. */
	for (size_t k = 0; r->parsed && k < r->req.n; k++) {
		const struct imap_fetch_item *it = &r->req.items[k];
		if ((it->kind == IMAP_FI_BINARY || it->kind == IMAP_FI_BINARY_SIZE) &&
		    imap_msg_binary(r->parsed, &it->sec, NULL) != 0) {
			r->unknown_cte = 1;
			run_message_done(s, r);
			r->pos++;
			return 0;
		}
	}
	if (r->no_info || r->no_text) {
		size_t k = 0;
		for (size_t j = 0; j < r->req.n; j++)
			if (!item_known(r, &r->req.items[j]) || (r->no_text && item_is_octets(&r->req.items[j])))
				r->expunged = 1;
		while (k < r->req.n && !item_known(r, &r->req.items[k]))
			k++;
		if (k == r->req.n) {
			r->pos++;   /* nothing known to say about it */
			return 0;
		}
	}
	{
		char head[48];
		int n = snprintf(head, sizeof head, "* %zu FETCH (", vi + 1);

		imap_write(s, head, (size_t)n);
	}
	r->started = 1;
	return 1;
}

/* Queue output until done (1) or until the client must read first (0). */
static int
run_step(struct imap_session *s, struct fetch_run *r)
{
	while (r->pos < r->n) {
		size_t vi;

		if (output_pending(s) > FETCH_HIGH_WATER)
			return 0;
		if (!r->started && !run_message_start(s, r))
			continue;
		vi = r->idx[r->pos];
		while (r->lit || r->item < r->req.n) {
			if (output_pending(s) > FETCH_HIGH_WATER)
				return 0;
			if (r->lit) {
				size_t left = r->litlen - r->litpos;
				size_t n = left < FETCH_CHUNK ? left : FETCH_CHUNK;

				imap_write(s, r->lit + r->litpos, n);
				r->litpos += n;
				if (r->litpos == r->litlen)
					r->lit = NULL;
				continue;
			}
			const struct imap_fetch_item *it = &r->req.items[r->item];

			if (r->implicit_flags && r->implicit_flags[r->pos] && !r->flags_done &&
			    it->kind != IMAP_FI_UID) {
				send_flags(s, r, &s->view[vi]);
				continue;
			}
			if (!item_known(r, it)) {
				r->item++;
				continue;
			}
			if (r->no_text && item_is_octets(it)) {
				put_sep(s, r);
				imap_write(s, it->name, strlen(it->name));
				imap_write(s, " NIL", 4);
				r->item++;
				continue;
			}
			send_item(s, r, it, &s->view[vi], &r->cur);
			r->item++;
		}
		imap_write(s, ")\r\n", 3);
		run_message_done(s, r);
		r->pos++;
	}
	return 1;
}

static void
run_finish(struct imap_session *s, struct fetch_run *r)
{
	/* Flag changes and new mail may be told now; expunges may not
	 * (RFC 3501 §7.4.1): sequence numbers must stay as the client knows. */
	imap_sync(s, 0);
	if (r->failed)
		imap_tagged(s, r->tag, "NO",
		            "[SERVERBUG] Internal error occurred. Refer to server log for more information.");
	else if (r->unknown_cte)
		imap_tagged(s, r->tag, "NO", "[UNKNOWN-CTE] Unknown Content-Transfer-Encoding.");
	else if (r->expunged)
		imap_tagged_timed(s, r->tag, "OK", "EXPUNGEISSUED", "Some messages were already expunged");
	else
		imap_completed(s, r->tag, NULL, "Fetch");
}

static void
fetch_cont(struct imap_session *s)
{
	struct fetch_run *r = s->cont_state;

	if (!r || !run_step(s, r))
		return;
	s->cont = NULL;
	s->cont_free = NULL;
	s->cont_state = NULL;
	run_finish(s, r);
	run_free(s, r);
	if (s->conn)
		pt_conn_resume(s->conn);
}

static void
fetch_cont_free(struct imap_session *s)
{
	run_free(s, s->cont_state);
	s->cont = NULL;
	s->cont_free = NULL;
	s->cont_state = NULL;
}

void
imap_cmd_fetch(struct imap_session *s, const char *tag, const struct imap_arg *args, size_t nargs,
               int uid)
{
	const char *cmd = uid ? "UID FETCH" : "FETCH";
	struct fetch_run *r;
	char err[160];

	if (s->state != IMAP_SELECTED || !s->mb) {
		imap_tagged(s, tag, "BAD", "No mailbox selected.");
		return;
	}
	if (nargs < 2 || args[0].type != IMAP_ARG_ATOM) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid arguments.", cmd);
		return;
	}
	r = calloc(1, sizeof *r);
	if (!r || !(r->tag = strdup(tag))) {
		free(r);
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return;
	}
	r->uid = uid;
	if (imap_fetch_parse(args + 1, nargs - 1, uid, &r->req, err, sizeof err) != 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: %s", cmd, err);
		run_free(s, r);
		return;
	}
	if (imap_resolve_set(s, args[0].s, args[0].len, uid, &r->idx, &r->n) != 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid messageset", cmd);
		run_free(s, r);
		return;
	}
	/* Bring the store up to date (never expunging from the view) so a
	 * message another session expunged is known gone, not read stale. */
	if (r->req.want_modseq)
		imap_condstore_on(s);   /* RFC 7162 §3.1: an enabling command */
	if (r->req.vanished && !s->qresync) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: QRESYNC not enabled", cmd);
		run_free(s, r);
		return;
	}
	/* A FETCH that sets \Seen reports the change's MODSEQ (§3.1). */
	if (s->condstore && r->req.sets_seen && imap_fetch_add_modseq(&r->req) != 0) {
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		run_free(s, r);
		return;
	}
	r->hdr_only = req_hdr_only(s, &r->req);
	run_snapshot(s, r);
	imap_sync(s, 0);
	if (r->req.vanished)
		imap_vanished_since(s, args[0].s, args[0].len, r->req.changedsince);
	if (r->req.has_changedsince) {
		/* Only what changed after the given mod-sequence (§3.1.4.1). */
		size_t k = 0;
		for (size_t i = 0; i < r->n; i++)
			if (s->view[r->idx[i]].modseq > r->req.changedsince) {
				if (r->snap && r->have_snap) {
					r->snap[k] = r->snap[i];
					r->have_snap[k] = r->have_snap[i];
				}
				r->idx[k++] = r->idx[i];
			}
		r->n = k;
	}
	run_mark_seen(s, r);
	if (run_step(s, r)) {
		run_finish(s, r);
		run_free(s, r);
		return;
	}
	/* The rest goes out as the client reads: no other command runs
	 * meanwhile (their replies would interleave with ours). */
	s->cont = fetch_cont;
	s->cont_free = fetch_cont_free;
	s->cont_state = r;
	if (s->conn)
		pt_conn_pause(s->conn);
}
