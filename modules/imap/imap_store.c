/* STORE and UID STORE: FLAGS / +FLAGS / -FLAGS (.SILENT), keywords made
 * as needed in the folder's table, the untagged FETCH echo, no EXPUNGE
 * responses while it runs (RFC 3501 §7.4.1). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap.h"

enum store_op { STORE_SET, STORE_ADD, STORE_REMOVE };

/* Parse the flag arguments into system bits and keyword bits. create:
 * new keywords get a bit. 0; -1 with the reply sent. */
static int
parse_flags(struct imap_session *s, const char *tag, const char *cmd, const struct imap_arg *a, size_t n,
            int create, uint32_t *flags, uint64_t *kw)
{
	*flags = 0;
	*kw = 0;
	for (size_t i = 0; i < n; i++) {
		/* NIL is a valid keyword name here (an atom, not nil). */
		if (a[i].type != IMAP_ARG_ATOM && a[i].type != IMAP_ARG_NIL) {
			imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid flag.", cmd);
			return -1;
		}
		const char *f = a[i].s;
		if (f[0] == '\\') {
			uint32_t bit = imap_system_flag(f);
			if (bit == 0) {
				imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid system flag %s", cmd,
				            strcasecmp(f, "\\Recent") == 0 ? "\\Recent" : "");
				return -1;
			}
			*flags |= bit;
			continue;
		}
		if (!imap_keyword_valid(f, a[i].len)) {
			imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid keyword.", cmd);
			return -1;
		}
		int bit = s->mbx->keyword_index(s->mb, f, create);
		if (bit < 0 && create) {
			imap_tagged(s, tag, "NO", "[LIMIT] Too many keywords in this mailbox (%d max)",
			            PT_KEYWORDS_MAX);
			return -1;
		}
		if (bit >= 0 && bit < 64)
			*kw |= (uint64_t)1 << bit;
	}
	return 0;
}

void
imap_cmd_store(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	const char *cmd = uid ? "UID STORE" : "STORE";
	struct pt_status st = { 0 };
	size_t *idx = NULL, nidx = 0;

	if (n < 3 || a[0].type != IMAP_ARG_ATOM || a[1].type != IMAP_ARG_ATOM) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid arguments.", cmd);
		return;
	}
	const char *item = a[1].s;
	enum store_op op = STORE_SET;
	if (*item == '+' || *item == '-') {
		op = *item == '+' ? STORE_ADD : STORE_REMOVE;
		item++;
	}
	int silent = 0;
	if (strcasecmp(item, "FLAGS.SILENT") == 0)
		silent = 1;
	else if (strcasecmp(item, "FLAGS") != 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid arguments.", cmd);
		return;
	}
	if (s->readonly) {
		imap_tagged(s, tag, "NO", "Mailbox is read-only.");
		return;
	}
	/* "(\Seen \Draft)" or the same flags without parentheses. */
	const struct imap_arg *fl = &a[2];
	size_t nfl = n - 2;
	if (n == 3 && a[2].type == IMAP_ARG_LIST) {
		fl = a[2].list;
		nfl = a[2].n;
	}
	if (imap_resolve_set(s, a[0].s, a[0].len, uid, &idx, &nidx) != 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid %s", cmd,
		            uid ? "uidset" : "messageset");
		return;
	}
	/* Up to date before the flags are looked up (never expunging: the
	 * set above stays right): a keyword another session made since our
	 * last sync is unknown to our table, and -FLAGS of it would be lost. */
	imap_sync(s, 0);
	if (s->state != IMAP_SELECTED) {
		free(idx);
		return;   /* the folder was replaced: BYE sent */
	}
	uint32_t flags;
	uint64_t kw;
	if (parse_flags(s, tag, cmd, fl, nfl, op != STORE_REMOVE, &flags, &kw) != 0) {
		free(idx);
		return;
	}
	/* +FLAGS/-FLAGS go to the store as changes, applied to the file's
	 * state under its lock: computed here from our view they would
	 * undo what another session changed since our last sync. */
	int relative = op != STORE_SET && s->mbx->change_flags != NULL;
	struct pt_flag_update *u = NULL;
	struct pt_flag_change *c = NULL;
	if (nidx && (relative ? (c = calloc(nidx, sizeof(*c))) == NULL : (u = calloc(nidx, sizeof(*u))) == NULL)) {
		free(idx);
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return;
	}
	size_t nu = 0;
	for (size_t i = 0; i < nidx; i++) {
		size_t si = imap_view_store_index(s, idx[i]);
		if (si == (size_t)-1)
			continue;
		const struct pt_msg_info *m = s->mbx->info(s->mb, si);
		uint32_t cur = m->flags & PT_F_SYSTEM, nf = cur;
		uint64_t nk = m->keywords;
		switch (op) {
		case STORE_SET:
			nf = flags;
			nk = kw;
			break;
		case STORE_ADD:
			nf |= flags;
			nk |= kw;
			break;
		case STORE_REMOVE:
			nf &= ~flags;
			nk &= ~kw;
			break;
		}
		if ((nf & PT_F_DELETED) && !(cur & PT_F_DELETED))
			s->deleted++;
		if (relative) {
			c[nu].uid = m->uid;
			c[nu].add = op == STORE_ADD ? flags : 0;
			c[nu].remove = op == STORE_REMOVE ? flags : 0;
			c[nu].kw_add = op == STORE_ADD ? kw : 0;
			c[nu].kw_remove = op == STORE_REMOVE ? kw : 0;
			nu++;
			continue;
		}
		/* No skipping when nf looks unchanged: m is as of our last
		 * sync, and another session may have changed the file since
		 * (the store writes nothing for a message already so). */
		u[nu].uid = m->uid;
		u[nu].flags = nf;
		u[nu].keywords = nk;
		nu++;
	}
	int rc = 0;
	if (nu > 0)
		rc = relative ? s->mbx->change_flags(s->mb, c, nu, &st) : s->mbx->set_flags(s->mb, u, nu, &st);
	free(c);
	if (rc != 0) {
		free(u);
		free(idx);
		imap_store_error(s, tag, &st);
		return;
	}
	free(u);
	/* What was asked goes into the view before the sync: the sync then
	 * tells only what others changed meanwhile (with .SILENT too, or the
	 * client never learns it: RFC 3501 §6.4.6), and the store's list is
	 * the file's again, so a message another session expunged (its
	 * change was not applied) is known gone instead of echoed stale. */
	for (size_t i = 0; i < nidx; i++) {
		struct imap_view_msg *v = &s->view[idx[i]];
		uint32_t sys = v->flags & PT_F_SYSTEM;
		switch (op) {
		case STORE_SET:
			sys = flags;
			v->keywords = kw;
			break;
		case STORE_ADD:
			sys |= flags;
			v->keywords |= kw;
			break;
		case STORE_REMOVE:
			sys &= ~flags;
			v->keywords &= ~kw;
			break;
		}
		v->flags = (v->flags & ~PT_F_SYSTEM) | sys;
	}
	imap_sync(s, 0);
	for (size_t i = 0; i < nidx; i++) {
		size_t si = imap_view_store_index(s, idx[i]);
		if (si == (size_t)-1 || silent)
			continue;
		const struct pt_msg_info *m = s->mbx->info(s->mb, si);
		struct imap_view_msg *v = &s->view[idx[i]];
		v->flags = m->flags;
		v->keywords = m->keywords;
		struct pt_strbuf b = { 0 };
		imap_append_flags(s, &b, v->flags, v->keywords);
		if (!b.oom) {
			if (uid)
				imap_untagged(s, "%zu FETCH (UID %u FLAGS %s)", idx[i] + 1, v->uid, b.p);
			else
				imap_untagged(s, "%zu FETCH (FLAGS %s)", idx[i] + 1, b.p);
		}
		pt_strbuf_free(&b);
	}
	free(idx);
	/* Messages another session expunged are skipped and the rest is
	 * stored: OK, as Dovecot answers (RFC 2180 §4.2.1 allows NO too, but
	 * clients take a NO for a failure of the whole command). */
	imap_completed(s, tag, NULL, "Store");
}
