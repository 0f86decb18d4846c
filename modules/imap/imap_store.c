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

	/* STORE set (UNCHANGEDSINCE n) item flags (RFC 7162 §3.1.3) */
	const struct imap_arg *set = &a[0];
	int cond = 0;
	uint64_t unchangedsince = 0;
	if (n >= 4 && a[1].type == IMAP_ARG_LIST) {
		const struct imap_arg *m = &a[1];
		if (m->n != 2 || m->list[0].type != IMAP_ARG_ATOM || m->list[1].type != IMAP_ARG_ATOM ||
		    strcasecmp(m->list[0].s, "UNCHANGEDSINCE") != 0 ||
		    imap_modseq_parse(m->list[1].s, m->list[1].len, 1, &unchangedsince) != 0) {
			imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid modifiers.", cmd);
			return;
		}
		cond = 1;
		a++;                      /* a[1] the item, as without it */
		n--;
	}
	if (n < 3 || set->type != IMAP_ARG_ATOM || a[1].type != IMAP_ARG_ATOM) {
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
	if (imap_resolve_set(s, set->s, set->len, uid, &idx, &nidx) != 0) {
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
	if (cond && s->mbx->change_flags_cond == NULL) {
		free(idx);
		imap_tagged(s, tag, "NO", "[CANNOT] No mod-sequences in this mailbox.");
		return;
	}
	if (cond)
		imap_condstore_on(s);   /* an enabling command (RFC 7162 §3.1) */
	/* UNCHANGEDSINCE goes as changes too: FLAGS x is +x and -the rest,
	 * checked against the file's mod-sequences under the store's lock. */
	int relative = cond || (op != STORE_SET && s->mbx->change_flags != NULL);
	unsigned char *refused = NULL;
	size_t *which = NULL;         /* change k is for idx[which[k]] */
	if (cond && nidx && ((refused = calloc(nidx, 1)) == NULL || (which = calloc(nidx, sizeof(*which))) == NULL)) {
		free(refused);
		free(idx);
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return;
	}
	struct pt_flag_update *u = NULL;
	struct pt_flag_change *c = NULL;
	if (nidx && (relative ? (c = calloc(nidx, sizeof(*c))) == NULL : (u = calloc(nidx, sizeof(*u))) == NULL)) {
		free(refused);
		free(which);
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
			c[nu].add = op != STORE_REMOVE ? flags : 0;
			c[nu].remove = op == STORE_REMOVE ? flags : op == STORE_SET ? ~flags & PT_F_SYSTEM : 0;
			c[nu].kw_add = op != STORE_REMOVE ? kw : 0;
			c[nu].kw_remove = op == STORE_REMOVE ? kw : op == STORE_SET ? ~kw : 0;
			if (which)
				which[nu] = i;
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
	if (nu > 0 && cond)
		rc = s->mbx->change_flags_cond(s->mb, c, nu, unchangedsince, refused, &st);
	else if (nu > 0)
		rc = relative ? s->mbx->change_flags(s->mb, c, nu, &st) : s->mbx->set_flags(s->mb, u, nu, &st);
	free(c);
	/* Per view entry (idx order): refused by UNCHANGEDSINCE. */
	unsigned char *failed = NULL;
	if (rc == 0 && cond && nidx && (failed = calloc(nidx, 1)) != NULL)
		for (size_t k = 0; k < nu; k++)
			failed[which[k]] = refused[k];
	free(refused);
	free(which);
	if (rc != 0 || (cond && nidx && failed == NULL)) {
		if (rc == 0)
			pt_status_set(&st, 451, "SERVERBUG", "Out of memory");
		free(failed);
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
		struct pt_msg_brief *v = &s->view[idx[i]];
		uint32_t sys = v->flags & PT_F_SYSTEM;
		if (failed && failed[i])
			continue;
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
		/* Our own change's mod-sequence: not news for the sync. */
		size_t si = imap_view_store_index(s, idx[i]);
		if (si != (size_t)-1 && s->mbx->info(s->mb, si)->modseq > v->modseq)
			v->modseq = s->mbx->info(s->mb, si)->modseq;
	}
	imap_sync(s, 0);
	imap_sync_these(s, idx, nidx);
	struct pt_strbuf modified = { 0 };
	for (size_t i = 0; i < nidx; i++) {
		size_t si = imap_view_store_index(s, idx[i]);
		if (failed && failed[i]) {
			/* [MODIFIED] names it by UID or number, as the set did. */
			if (modified.len)
				pt_strbuf_put(&modified, ",", 1);
			pt_strbuf_printf(&modified, "%u", uid ? s->view[idx[i]].uid : (uint32_t)(idx[i] + 1));
			continue;
		}
		/* With CONDSTORE on, the new MODSEQ is told even for .SILENT
		 * (RFC 7162 §3.1.3). */
		if (si == (size_t)-1 || (silent && !s->condstore))
			continue;
		const struct pt_msg_info *m = s->mbx->info(s->mb, si);
		struct pt_msg_brief *v = &s->view[idx[i]];
		v->flags = m->flags;
		v->keywords = m->keywords;
		if (m->modseq > v->modseq)
			v->modseq = m->modseq;
		struct pt_strbuf b = { 0 };
		imap_append_flags(s, &b, v->flags, v->keywords);
		if (!b.oom && s->condstore) {
			if (silent)
				imap_untagged(s, "%zu FETCH (UID %u MODSEQ (%llu))", idx[i] + 1, v->uid,
				              (unsigned long long)v->modseq);
			else
				imap_untagged(s, "%zu FETCH (UID %u FLAGS %s MODSEQ (%llu))", idx[i] + 1, v->uid, b.p,
				              (unsigned long long)v->modseq);
		} else if (!b.oom) {
			if (uid)
				imap_untagged(s, "%zu FETCH (UID %u FLAGS %s)", idx[i] + 1, v->uid, b.p);
			else
				imap_untagged(s, "%zu FETCH (FLAGS %s)", idx[i] + 1, b.p);
		}
		pt_strbuf_free(&b);
	}
	free(idx);
	free(failed);
	/* Messages another session expunged are skipped and the rest is
	 * stored: OK, as Dovecot answers (RFC 2180 §4.2.1 allows NO too, but
	 * clients take a NO for a failure of the whole command). */
	if (modified.len && !modified.oom) {
		struct pt_strbuf code = { 0 };
		pt_strbuf_printf(&code, "MODIFIED %s", modified.p);
		imap_completed(s, tag, code.oom ? NULL : code.p, "Conditional store");
		pt_strbuf_free(&code);
	} else {
		imap_completed(s, tag, NULL, "Store");
	}
	pt_strbuf_free(&modified);
}
