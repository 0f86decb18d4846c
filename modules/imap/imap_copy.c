/* COPY / UID COPY and MOVE / UID MOVE (RFC 6851): messages appended to
 * the target in one store call with their flags, keywords and dates;
 * COPYUID (RFC 4315) names the new UIDs; MOVE then expunges the sources,
 * sending COPYUID in an untagged OK before the EXPUNGEs. */
#include <stdlib.h>
#include <string.h>

#include "imap.h"
#include "imap_msg.h"

static void
copy_common(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid, int move)
{
	const char *cmd = move ? (uid ? "UID MOVE" : "MOVE") : (uid ? "UID COPY" : "COPY");
	struct pt_status st = { 0 };
	size_t *idx = NULL, nidx = 0;

	if (n != 2 || a[0].type != IMAP_ARG_ATOM || !imap_arg_is_string(&a[1])) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid arguments.", cmd);
		return;
	}
	if (move && s->readonly) {
		imap_tagged(s, tag, "NO", "Mailbox is read-only.");
		return;
	}
	char *name = imap_mailbox_arg(&a[1]);
	if (name == NULL) {
		imap_mailbox_invalid(s, tag, cmd, &a[1]);
		return;
	}
	if (imap_resolve_set(s, a[0].s, a[0].len, uid, &idx, &nidx) != 0) {
		free(name);
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid %s", cmd, uid ? "uidset" : "messageset");
		return;
	}
	/* All or nothing (RFC 3501 §6.4.7: a failed COPY leaves the target as
	 * it was), as Dovecot 2.3 does: when another session expunged any of
	 * the set, nothing is copied or moved and the answer is NO
	 * [EXPUNGEISSUED] (RFC 2180 §4.4.1) after the EXPUNGEs (COPY and MOVE
	 * may send them; Dovecot does for both), in Dovecot's words. */
	int gone = 0;
	for (size_t i = 0; i < nidx && !gone; i++)
		gone = imap_view_store_index(s, idx[i]) == (size_t)-1;
	if (gone || nidx == 0) {
		free(name);
		free(idx);
		imap_sync(s, 1);
		if (gone)
			imap_tagged_timed(s, tag, "NO", "EXPUNGEISSUED", "Some of the requested messages no longer exist");
		else
			imap_tagged(s, tag, "OK", "No messages found.");
		return;
	}

	struct pt_append *msgs = calloc(nidx, sizeof(*msgs));
	struct pt_msg_text *texts = calloc(nidx, sizeof(*texts));
	const char **kwnames = calloc(nidx * PT_KEYWORDS_MAX + 1, sizeof(*kwnames));
	uint32_t *src = calloc(nidx, sizeof(*src)), *dst = calloc(nidx, sizeof(*dst));
	size_t nread = 0;
	int rc = -1, text_gone = 0;
	if (!msgs || !texts || !kwnames || !src || !dst) {
		pt_status_set(&st, 451, "SERVERBUG", "Out of memory");
		goto out;
	}
	for (size_t i = 0; i < nidx; i++) {
		const struct pt_msg_info *m = s->mbx->info(s->mb, imap_view_store_index(s, idx[i]));
		if (s->mbx->read(s->mb, m->uid, &texts[i], &st) != 0) {
			/* Expunged by another session since our last sync: its
			 * text is gone, so nothing is copied (RFC 2180 4.4 allows
			 * NO); not the target's NONEXISTENT, so no TRYCREATE. */
			if (strcmp(st.dsn, "NONEXISTENT") == 0)
				text_gone = 1;
			goto out;
		}
		nread++;
		const char **kw = kwnames + i * PT_KEYWORDS_MAX;
		size_t nk = 0;
		for (size_t b = 0; b < PT_KEYWORDS_MAX && b < s->mbx->keyword_count(s->mb); b++)
			if (m->keywords & ((uint64_t)1 << b))
				kw[nk++] = s->mbx->keyword_name(s->mb, b);
		msgs[i].data = texts[i].data;
		msgs[i].len = texts[i].len;
		msgs[i].flags = m->flags & PT_F_SYSTEM;
		msgs[i].keywords = nk ? kw : NULL;
		msgs[i].nkeywords = nk;
		msgs[i].internal_date = m->internal_date;
		msgs[i].tz_minutes = m->tz_minutes;
		src[i] = m->uid;
	}
	uint32_t uidvalidity = 0;
	rc = s->mbx->append(s->ms, name, msgs, nidx, &uidvalidity, dst, &st);
	if (rc == 0) {
		struct pt_strbuf code = { 0 };
		pt_strbuf_printf(&code, "COPYUID %u ", uidvalidity);
		imap_seqset_format(src, nidx, &code);
		pt_strbuf_puts(&code, " ");
		imap_seqset_format(dst, nidx, &code);
		for (size_t i = 0; i < nread; i++)
			s->mbx->release(s->mb, &texts[i]);
		nread = 0;
		if (move) {
			imap_untagged(s, "OK [%s] Moved UIDs.", code.oom ? "" : code.p);
			if (imap_expunge_view(s, idx, nidx, 0, &st) != 0) {
				pt_strbuf_free(&code);
				imap_store_error(s, tag, &st);
				goto out;
			}
			imap_sync(s, 1);
			imap_completed(s, tag, NULL, "Move");
		} else {
			imap_sync(s, 1);
			imap_completed(s, tag, code.oom ? NULL : code.p, "Copy");
		}
		pt_strbuf_free(&code);
	}
out:
	for (size_t i = 0; i < nread; i++)
		s->mbx->release(s->mb, &texts[i]);
	if (rc != 0 && text_gone) {
		imap_sync(s, 1);
		imap_tagged_timed(s, tag, "NO", "EXPUNGEISSUED", "Some of the requested messages no longer exist");
	} else if (rc != 0) {
		if (strcmp(st.dsn, "NONEXISTENT") == 0)
			imap_tagged(s, tag, "NO", "[TRYCREATE] %s", st.text[0] ? st.text : "Mailbox doesn't exist");
		else
			imap_store_error(s, tag, &st);
	}
	free(msgs);
	free(texts);
	free(kwnames);
	free(src);
	free(dst);
	free(idx);
	free(name);
}

void
imap_cmd_copy(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	copy_common(s, tag, a, n, uid, 0);
}

void
imap_cmd_move(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	copy_common(s, tag, a, n, uid, 1);
}
