/* SEARCH and UID SEARCH (RFC 3501 §6.4.4, §7.2.5): charset check, keys
 * compiled by the message library, evaluated over the session's view; a
 * message's text is read only when a key needs it. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/conn.h"
#include "postern/log.h"
#include "imap.h"
#include "imap_msg.h"

/* The "* SEARCH" line of a huge folder can pass the conn's output cap
 * (4 MB: some 600 000 numbers); it goes out in pieces, as FETCH does. */
#define SEARCH_HIGH_WATER (256 * 1024)
#define SEARCH_CHUNK (64 * 1024)

struct search_reply {
	char *tag;
	struct pt_strbuf out;
	size_t pos;
	const char *what;             /* "Search", "Sort", "Thread" */
	int expunged;                 /* s->search_expunged of its evaluation */
};

/* One message's lazily loaded text, for imap_search_msg.load. */
struct search_load {
	struct imap_session *s;
	uint32_t uid;
	int gone;                     /* expunged by another session: no text */
	int missed;                   /* its text was wanted but is gone */
	int tried;
	int have_text;
	struct pt_msg_text text;
	struct imap_msg *parsed;
};

static const struct imap_msg *
search_load_msg(void *arg)
{
	struct search_load *l = arg;
	struct pt_status st = { 0 };

	if (l->tried)
		return l->parsed;
	l->tried = 1;
	if (l->gone) {
		l->missed = 1;
		return NULL;
	}
	if (l->s->mbx->read(l->s->mb, l->uid, &l->text, &st) != 0) {
		/* Expunged since the command's sync: as a gone one. */
		if (strcmp(st.dsn, "NONEXISTENT") == 0 || l->s->mbx->find(l->s->mb, l->uid) == (size_t)-1)
			l->missed = 1;
		else
			pt_warn("imap(%s): SEARCH could not read UID %u: %s", l->s->user.name, l->uid, st.text);
		return NULL;
	}
	l->have_text = 1;
	l->parsed = imap_msg_parse(l->text.data, l->text.len);
	return l->parsed;
}

static int
search_load_header(void *arg, const char **hdr, size_t *len)
{
	struct search_load *l = arg;
	struct pt_status st = { 0 };

	if (l->s->mbx->header_fields == NULL || l->gone)
		return 0;   /* (a gone one: search_load_msg notes the miss) */
	return l->s->mbx->header_fields(l->s->mb, l->uid, hdr, len, &st) == 1;
}

static void
search_load_done(struct search_load *l)
{
	imap_msg_free(l->parsed);
	if (l->have_text)
		l->s->mbx->release(l->s->mb, &l->text);
	l->parsed = NULL;
	l->have_text = 0;
	l->tried = 0;
}

static int
search_keyword_bit(void *arg, const char *name)
{
	struct imap_session *s = arg;

	return s->mbx->keyword_index(s->mb, name, 0);
}

static void args_free(struct imap_arg *c, size_t n);

/* A copy of the argument tree with NIL as the atom "NIL": every string
 * in SEARCH is an astring, so NIL there is just text (SUBJECT NIL), as
 * Dovecot and imaptest's "nil" script have it. Freed with args_free. */
static struct imap_arg *
args_nil_as_atom(const struct imap_arg *a, size_t n)
{
	struct imap_arg *c = calloc(n ? n : 1, sizeof *c);

	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		c[i] = a[i];
		if (a[i].type == IMAP_ARG_NIL) {
			c[i].type = IMAP_ARG_ATOM;
			c[i].s = "NIL";
			c[i].len = 3;
		} else if (a[i].type == IMAP_ARG_LIST) {
			c[i].list = args_nil_as_atom(a[i].list, a[i].n);
			if (!c[i].list) {
				args_free(c, i);
				return NULL;
			}
		}
	}
	return c;
}

static void
args_free(struct imap_arg *c, size_t n)
{
	if (!c)
		return;
	for (size_t i = 0; i < n; i++)
		if (c[i].type == IMAP_ARG_LIST)
			args_free(c[i].list, c[i].n);
	free(c);
}

static int
charset_known(const struct imap_arg *a)
{
	if (!imap_arg_is_string(a))
		return 0;
	return strcasecmp(a->s, "US-ASCII") == 0 || strcasecmp(a->s, "UTF-8") == 0;
}

static void
reply_free(struct search_reply *r)
{
	if (!r)
		return;
	pt_strbuf_free(&r->out);
	free(r->tag);
	free(r);
}

/* Queue the reply until done (1) or until the client must read (0). */
static int
reply_step(struct imap_session *s, struct search_reply *r)
{
	while (r->pos < r->out.len) {
		size_t n = r->out.len - r->pos;

		if (s->conn && pt_conn_pending_output(s->conn) > SEARCH_HIGH_WATER)
			return 0;
		if (n > SEARCH_CHUNK)
			n = SEARCH_CHUNK;
		imap_write(s, r->out.p + r->pos, n);
		r->pos += n;
	}
	/* No EXPUNGE here: the numbers just sent must stay valid (§7.4.1). */
	imap_sync(s, 0);
	/* A message another session expunged whose text a key needed could
	 * not be judged: OK [EXPUNGEISSUED] (RFC 5530's own example), as
	 * FETCH answers for a text it no longer has. */
	imap_completed(s, r->tag, r->expunged ? "EXPUNGEISSUED" : NULL, r->what ? r->what : "Search");
	return 1;
}

static void
search_cont(struct imap_session *s)
{
	struct search_reply *r = s->cont_state;

	if (!r || !reply_step(s, r))
		return;
	s->cont = NULL;
	s->cont_free = NULL;
	s->cont_state = NULL;
	reply_free(r);
	if (s->conn)
		pt_conn_resume(s->conn);
}

static void
search_cont_free(struct imap_session *s)
{
	reply_free(s->cont_state);
	s->cont = NULL;
	s->cont_free = NULL;
	s->cont_state = NULL;
}

static int
search_saved(void *arg, uint32_t uid)
{
	struct imap_session *s = arg;
	size_t lo = 0, hi = s->nsaved;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->saved[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->nsaved && s->saved[lo] == uid;
}

const struct pt_msg_info *
imap_view_info(struct imap_session *s, size_t vi)
{
	/* The store's list and the view agree but for what a sync has yet
	 * to tell: the same index first, saving a search by UID. */
	if (vi < s->mbx->count(s->mb)) {
		const struct pt_msg_info *in = s->mbx->info(s->mb, vi);
		if (in != NULL && in->uid == s->view[vi].uid)
			return in;
	}
	size_t si = s->mbx->find(s->mb, s->view[vi].uid);
	return si == (size_t)-1 ? NULL : s->mbx->info(s->mb, si);
}

int
imap_search_eval(struct imap_session *s, const char *tag, const char *cmd, const struct imap_arg *args,
                 size_t nargs, size_t **hits, size_t *nhits)
{
	struct imap_search *keys;
	struct imap_search_env env = { 0 };
	char err[160] = "";

	*hits = NULL;
	*nhits = 0;
	s->search_expunged = 0;
	if (nargs == 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Missing SEARCH arguments.", cmd);
		return -1;
	}
	struct imap_arg *keyargs = args_nil_as_atom(args, nargs);
	if (!keyargs) {
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return -1;
	}
	keys = imap_search_parse(keyargs, nargs, err, sizeof err);
	args_free(keyargs, nargs);
	if (!keys) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: %s", cmd, err[0] ? err : "Invalid arguments.");
		return -1;
	}
	s->search_modseq = imap_search_has_modseq(keys);
	if (s->search_modseq)
		imap_condstore_on(s);   /* an enabling command (RFC 7162 §3.1) */
	/* Current flags and new mail count; the view keeps expunged ones. */
	imap_sync(s, 0);
	env.max_seq = (uint32_t)s->nview;
	env.max_uid = s->nview ? s->view[s->nview - 1].uid : 0;
	env.keyword_bit = search_keyword_bit;
	env.saved = search_saved;
	env.arg = s;
	size_t *v = s->nview ? malloc(s->nview * sizeof(*v)) : NULL;
	if (s->nview && v == NULL) {
		imap_search_free(keys);
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return -1;
	}
	/* A Message-ID every match must hold: the store's index of ids names
	 * the candidates (ascending UIDs), the rest cannot match. */
	const char *idkey;
	size_t idlen, ncand = 0, ci = 0;
	uint32_t *cand = NULL;
	int use_cand = s->mbx->msgid_candidates != NULL && imap_search_msgid(keys, &idkey, &idlen) &&
	               s->mbx->msgid_candidates(s->mb, idkey, idlen, &cand, &ncand) == 1;
	size_t n = 0;
	for (size_t i = 0; i < s->nview; i++) {
		if (use_cand) {
			while (ci < ncand && cand[ci] < s->view[i].uid)
				ci++;
			/* Not the store's candidate: left out, unless another
			 * session expunged it (judged below as without the
			 * index: the store no longer lists it). */
			if ((ci == ncand || cand[ci] != s->view[i].uid) &&
			    !(s->nghosts && imap_view_ghost(s, s->view[i].uid) != NULL))
				continue;
		}
		const struct pt_msg_info *info = imap_view_info(s, i);
		struct search_load load = { .s = s, .uid = s->view[i].uid };
		struct imap_search_msg msg;

		/* Expunged by another session but still in our view (until we
		 * may say EXPUNGE): judged on what the store last said of it,
		 * as FETCH answers its UID, FLAGS, size and date; a key that
		 * needs its text cannot match and makes the reply OK
		 * [EXPUNGEISSUED]. Nothing known of it at all: left out (RFC
		 * 2180 §4.1.3), said the same way. */
		if (info == NULL) {
			info = imap_view_ghost(s, s->view[i].uid);
			if (info == NULL) {
				s->search_expunged = 1;
				continue;
			}
			load.gone = 1;
		}
		msg.seq = (uint32_t)(i + 1);
		msg.info = info;
		msg.load = search_load_msg;
		msg.load_header = search_load_header;
		msg.arg = &load;
		if (imap_search_match(keys, &env, &msg))
			v[n++] = i;
		if (load.missed)
			s->search_expunged = 1;
		search_load_done(&load);
	}
	free(cand);
	imap_search_free(keys);
	*hits = v;
	*nhits = n;
	return 0;
}

void
imap_search_reply(struct imap_session *s, const char *tag, struct pt_strbuf *out, const char *what)
{
	struct search_reply *r = calloc(1, sizeof *r);

	if (!r || !(r->tag = strdup(tag)) || out->oom) {
		if (r)
			free(r->tag);
		free(r);
		pt_strbuf_free(out);
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return;
	}
	r->out = *out;
	memset(out, 0, sizeof(*out));
	r->what = what;
	r->expunged = s->search_expunged;
	if (reply_step(s, r)) {
		reply_free(r);
		return;
	}
	s->cont = search_cont;
	s->cont_free = search_cont_free;
	s->cont_state = r;
	if (s->conn)
		pt_conn_pause(s->conn);
}

/* RETURN options (RFC 4731 ESEARCH, RFC 5182 SAVE). */
enum { RET_MIN = 1, RET_MAX = 2, RET_ALL = 4, RET_COUNT = 8, RET_SAVE = 16 };

static void
saved_clear(struct imap_session *s)
{
	free(s->saved);
	s->saved = NULL;
	s->nsaved = 0;
}

/* "RETURN (MIN MAX ...)" into RET_* bits; -1 on an unknown option. */
static int
parse_return(const struct imap_arg *list, unsigned *ret)
{
	static const struct {
		const char *name;
		unsigned bit;
	} opts[] = { { "MIN", RET_MIN }, { "MAX", RET_MAX }, { "ALL", RET_ALL }, { "COUNT", RET_COUNT },
		     { "SAVE", RET_SAVE } };

	*ret = 0;
	if (list->type != IMAP_ARG_LIST)
		return -1;
	for (size_t i = 0; i < list->n; i++) {
		size_t k;
		for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
			if (list->list[i].type == IMAP_ARG_ATOM && strcasecmp(list->list[i].s, opts[k].name) == 0)
				break;
		if (k == sizeof(opts) / sizeof(opts[0]))
			return -1;
		*ret |= opts[k].bit;
	}
	/* "RETURN ()" is RETURN (ALL) (RFC 4731 §3.1) */
	if (*ret == 0)
		*ret = RET_ALL;
	return 0;
}

/* Keep the result as "$": the matches, or only the MIN and/or MAX one
 * when those were asked (RFC 5182 §2.4). uids ascending. */
static void
save_result(struct imap_session *s, unsigned ret, const uint32_t *uids, size_t n)
{
	saved_clear(s);
	if (n == 0)
		return;
	uint32_t *v = malloc(n * sizeof(*v));
	if (v == NULL)
		return;
	size_t k = 0;
	if (ret & (RET_MIN | RET_MAX)) {
		if (ret & RET_MIN)
			v[k++] = uids[0];
		if ((ret & RET_MAX) && !(k == 1 && n == 1))
			v[k++] = uids[n - 1];
	} else {
		memcpy(v, uids, n * sizeof(*v));
		k = n;
	}
	s->saved = v;
	s->nsaved = k;
}

void
imap_cmd_search(struct imap_session *s, const char *tag, const struct imap_arg *args, size_t nargs,
                int uid)
{
	const char *cmd = uid ? "UID SEARCH" : "SEARCH";
	struct search_reply *r;
	size_t skip = 0;
	unsigned ret = 0;
	int esearch = 0;

	if (s->state != IMAP_SELECTED || !s->mb) {
		imap_tagged(s, tag, "BAD", "No mailbox selected.");
		return;
	}
	if (nargs > 0 && args[0].type == IMAP_ARG_ATOM && strcasecmp(args[0].s, "RETURN") == 0) {
		if (nargs < 2 || parse_return(&args[1], &ret) != 0) {
			imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid RETURN options.", cmd);
			return;
		}
		esearch = 1;
		skip = 2;
	} else if (s->rev2) {
		/* RFC 9051 §6.4.4: no RETURN is RETURN (ALL), answered ESEARCH */
		esearch = 1;
		ret = RET_ALL;
	}
	if (nargs > skip && args[skip].type == IMAP_ARG_ATOM && strcasecmp(args[skip].s, "CHARSET") == 0) {
		if (nargs < skip + 3) {
			if (ret & RET_SAVE)
				saved_clear(s);
			imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid arguments.", cmd);
			return;
		}
		if (!charset_known(&args[skip + 1])) {
			if (ret & RET_SAVE)
				saved_clear(s);
			imap_tagged(s, tag, "NO", "[BADCHARSET (US-ASCII UTF-8)] Unknown charset");
			return;
		}
		skip += 2;
	}
	if (nargs <= skip) {
		if (ret & RET_SAVE)
			saved_clear(s);
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Missing SEARCH arguments.", cmd);
		return;
	}
	size_t *hitidx = NULL, nhits = 0;
	if (imap_search_eval(s, tag, cmd, args + skip, nargs - skip, &hitidx, &nhits) != 0) {
		/* A failed SEARCH ... SAVE leaves "$" empty (RFC 5182 §2.1). */
		if (ret & RET_SAVE)
			saved_clear(s);
		return;
	}
	r = calloc(1, sizeof *r);
	if (r)
		r->expunged = s->search_expunged;
	uint32_t *hits = nhits ? malloc(nhits * sizeof(*hits)) : NULL;
	uint32_t *hit_uids = nhits && (ret & RET_SAVE) ? malloc(nhits * sizeof(*hit_uids)) : NULL;
	if (!r || !(r->tag = strdup(tag)) || (nhits && !hits) || ((ret & RET_SAVE) && nhits && !hit_uids)) {
		if (r)
			free(r->tag);
		free(r);
		free(hits);
		free(hit_uids);
		free(hitidx);
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return;
	}
	/* SEARCH MODSEQ: the highest mod-sequence of what matched (§3.1.5). */
	uint64_t top = 0;
	for (size_t i = 0; s->search_modseq && i < nhits; i++)
		if (s->view[hitidx[i]].modseq > top)
			top = s->view[hitidx[i]].modseq;
	for (size_t i = 0; i < nhits; i++) {
		if (hit_uids)
			hit_uids[i] = s->view[hitidx[i]].uid;
		hits[i] = uid ? s->view[hitidx[i]].uid : (uint32_t)(hitidx[i] + 1);
	}
	free(hitidx);
	if (ret & RET_SAVE)
		save_result(s, ret, hit_uids, nhits);
	free(hit_uids);
	if (!esearch) {
		pt_strbuf_puts(&r->out, "* SEARCH");
		for (size_t i = 0; i < nhits; i++)
			pt_strbuf_printf(&r->out, " %u", hits[i]);
		if (top)
			pt_strbuf_printf(&r->out, " (MODSEQ %llu)", (unsigned long long)top);
		pt_strbuf_puts(&r->out, "\r\n");
	} else if (ret != RET_SAVE) {
		/* RFC 4731 §3.1: MIN/MAX/ALL only when something matched,
		 * COUNT always; nothing at all for SAVE alone (RFC 5182). */
		pt_strbuf_printf(&r->out, "* ESEARCH (TAG \"%s\")%s", tag, uid ? " UID" : "");
		if ((ret & RET_MIN) && nhits)
			pt_strbuf_printf(&r->out, " MIN %u", hits[0]);
		if ((ret & RET_MAX) && nhits)
			pt_strbuf_printf(&r->out, " MAX %u", hits[nhits - 1]);
		if ((ret & RET_ALL) && nhits) {
			pt_strbuf_puts(&r->out, " ALL ");
			imap_seqset_format(hits, nhits, &r->out);
		}
		if (ret & RET_COUNT)
			pt_strbuf_printf(&r->out, " COUNT %zu", nhits);
		if (top)
			pt_strbuf_printf(&r->out, " MODSEQ %llu", (unsigned long long)top);
		pt_strbuf_puts(&r->out, "\r\n");
	}
	free(hits);
	if (r->out.oom) {
		reply_free(r);
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return;
	}
	if (reply_step(s, r)) {
		reply_free(r);
		return;
	}
	s->cont = search_cont;
	s->cont_free = search_cont_free;
	s->cont_state = r;
	if (s->conn)
		pt_conn_pause(s->conn);
}
