/* APPEND (RFC 3501 §6.3.11) and MULTIAPPEND (RFC 3502) with UIDPLUS's
 * APPENDUID: per message an optional flag list and date-time, then the
 * message (a literal, already read by the command reader within
 * imap_max_literal_size) or CATENATE (RFC 4469) with the parts to put
 * together; all messages go to the store in one call, so they are
 * appended all or none. TRYCREATE for a missing folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imap.h"
#include "imap_catenate.h"
#include "imap_msg.h"

/* Whether a[i] a[i+1] are "CATENATE (...)". */
static int
is_catenate(const struct imap_arg *a, size_t n, size_t i)
{
	return i + 1 < n && a[i].type == IMAP_ARG_ATOM && strcasecmp(a[i].s, "CATENATE") == 0 &&
	       a[i + 1].type == IMAP_ARG_LIST;
}

/* One message's arguments from a[*i]: flags, date, text (or the
 * CATENATE list, then in *cat, checked but not yet resolved). 0 with *i
 * past them, or -1 with the reply sent. kw holds PT_KEYWORDS_MAX names. */
static int
parse_one(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, size_t *i,
          struct pt_append *msg, const char **kw, const struct imap_arg **cat)
{
	size_t nkw = 0;

	memset(msg, 0, sizeof(*msg));
	*cat = NULL;
	if (*i < n && a[*i].type == IMAP_ARG_LIST) {
		for (size_t k = 0; k < a[*i].n; k++) {
			const struct imap_arg *f = &a[*i].list[k];
			if (f->type != IMAP_ARG_ATOM && f->type != IMAP_ARG_NIL) {
				imap_tagged(s, tag, "BAD", "Error in IMAP command APPEND: Invalid flag.");
				return -1;
			}
			if (f->s[0] == '\\') {
				uint32_t bit = imap_system_flag(f->s);
				if (bit == 0) {
					imap_tagged(s, tag, "BAD", "Error in IMAP command APPEND: Invalid system flag %s",
					            strcasecmp(f->s, "\\Recent") == 0 ? "\\Recent" : "");
					return -1;
				}
				msg->flags |= bit;
			} else if (!imap_keyword_valid(f->s, f->len)) {
				imap_tagged(s, tag, "BAD", "Error in IMAP command APPEND: Invalid keyword.");
				return -1;
			} else if (nkw == PT_KEYWORDS_MAX) {
				imap_tagged(s, tag, "NO", "[LIMIT] Too many keywords (%d max)", PT_KEYWORDS_MAX);
				return -1;
			} else {
				kw[nkw++] = f->s;
			}
		}
		(*i)++;
	}
	/* A date-time is a quoted string followed by the message. */
	if (*i + 1 < n && a[*i].type == IMAP_ARG_STRING &&
	    (a[*i + 1].type == IMAP_ARG_LITERAL || a[*i + 1].type == IMAP_ARG_STRING || is_catenate(a, n, *i + 1))) {
		time_t t;
		int tz;
		if (imap_datetime_parse(a[*i].s, a[*i].len, &t, &tz) != 0) {
			imap_tagged(s, tag, "BAD", "Error in IMAP command APPEND: Invalid arguments.");
			return -1;
		}
		msg->internal_date = t;
		msg->tz_minutes = tz;
		(*i)++;
	}
	msg->keywords = nkw ? kw : NULL;
	msg->nkeywords = nkw;
	if (is_catenate(a, n, *i)) {
		if (!imap_catenate_valid(a[*i + 1].list, a[*i + 1].n)) {
			imap_tagged(s, tag, "BAD", "Error in IMAP command APPEND: Invalid CATENATE arguments.");
			return -1;
		}
		*cat = &a[*i + 1];
		*i += 2;
		return 0;
	}
	if (*i >= n || (a[*i].type != IMAP_ARG_LITERAL && a[*i].type != IMAP_ARG_STRING)) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command APPEND: Invalid arguments.");
		return -1;
	}
	if (a[*i].len == 0) {
		imap_tagged(s, tag, "NO", "Can't save a zero byte message.");
		return -1;
	}
	msg->data = a[*i].s;
	msg->len = a[*i].len;
	(*i)++;
	return 0;
}

void
imap_cmd_append(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	struct pt_status st = { 0 };
	struct pt_append *msgs = NULL;
	const char **kw = NULL;
	const struct imap_arg **cats = NULL;
	struct pt_strbuf *built = NULL;
	struct imap_cat_cache *cache = NULL;
	uint32_t *uids = NULL;
	size_t nmsgs = 0, cap = 0, i = 1;
	char *name = NULL;

	(void)uid;
	if (n < 2 || !imap_arg_is_string(&a[0])) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command APPEND: Invalid arguments.");
		return;
	}
	/* Every message parsed before anything is written: a bad one
	 * anywhere leaves the folder as it was (RFC 3502). */
	while (i < n) {
		if (nmsgs == cap) {
			size_t ncap = cap ? cap * 2 : 1;
			struct pt_append *m = realloc(msgs, ncap * sizeof(*m));
			if (m != NULL)
				msgs = m;
			const char **k = m ? realloc(kw, ncap * PT_KEYWORDS_MAX * sizeof(*k)) : NULL;
			if (k != NULL)
				kw = k;
			const struct imap_arg **c = k ? realloc(cats, ncap * sizeof(*c)) : NULL;
			if (m == NULL || k == NULL || c == NULL) {
				imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
				goto out;
			}
			cats = c;
			cap = ncap;
		}
		if (parse_one(s, tag, a, n, &i, &msgs[nmsgs], kw + nmsgs * PT_KEYWORDS_MAX, &cats[nmsgs]) != 0)
			goto out;
		nmsgs++;
	}
	/* kw may have moved while growing: point each message at its names. */
	for (size_t k = 0; k < nmsgs; k++)
		if (msgs[k].keywords)
			msgs[k].keywords = kw + k * PT_KEYWORDS_MAX;
	name = imap_mailbox_arg(&a[0]);
	if (name == NULL) {
		imap_mailbox_invalid(s, tag, "APPEND", &a[0]);
		goto out;
	}
	uids = calloc(nmsgs, sizeof(*uids));
	built = calloc(nmsgs, sizeof(*built));
	if (uids == NULL || built == NULL) {
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		goto out;
	}
	/* CATENATE messages put together now that the whole command is known
	 * to be well formed (a BAD anywhere comes before any BADURL); a bad
	 * URL or a result too big fails the command, appending nothing. */
	for (size_t k = 0; k < nmsgs; k++) {
		if (cats[k] == NULL)
			continue;
		if (imap_catenate_build(s, tag, cats[k]->list, cats[k]->n, imap_set.max_literal, &cache,
		                        &built[k]) != 0)
			goto out;
		if (built[k].len == 0) {
			imap_tagged(s, tag, "NO", "Can't save a zero byte message.");
			goto out;
		}
		msgs[k].data = built[k].p;
		msgs[k].len = built[k].len;
	}
	/* Done reading: the source folders close before the target is locked. */
	imap_cat_cache_free(s, cache);
	cache = NULL;
	uint32_t uidvalidity = 0;
	if (s->mbx->append(s->ms, name, msgs, nmsgs, &uidvalidity, uids, &st) != 0) {
		if (strcmp(st.dsn, "NONEXISTENT") == 0)
			imap_tagged(s, tag, "NO", "[TRYCREATE] %s", st.text[0] ? st.text : "Mailbox doesn't exist");
		else
			imap_store_error(s, tag, &st);
		goto out;
	}
	struct pt_strbuf code = { 0 };
	pt_strbuf_printf(&code, "APPENDUID %u ", uidvalidity);
	imap_seqset_format(uids, nmsgs, &code);
	imap_sync(s, 1);
	imap_completed(s, tag, code.oom ? NULL : code.p, "Append");
	pt_strbuf_free(&code);
out:
	imap_cat_cache_free(s, cache);
	if (built != NULL)
		for (size_t k = 0; k < nmsgs; k++)
			pt_strbuf_free(&built[k]);
	free(built);
	free(cats);
	free(name);
	free(uids);
	free(msgs);
	free(kw);
}
