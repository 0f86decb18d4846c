/* CONDSTORE and QRESYNC (RFC 7162): enabling, HIGHESTMODSEQ, VANISHED
 * and the resync part of SELECT/EXAMINE (QRESYNC ...). The mod-sequences
 * themselves come from the store (pt_msg_info.modseq, highest_modseq),
 * which keeps them in its index across restarts and outside writers.
 *
 * VANISHED (EARLIER) names the UIDs of the client's known set (or
 * 1:UIDNEXT-1) expunged after its mod-sequence, from the store's list of
 * expunges (vanished_since; kept in its index across restarts). When
 * the store does not reach back that far (a lost index, a client older
 * than the list) it names every UID of the set that is no longer there,
 * which RFC 7162 §3.2.5.1/§3.2.6 allows (the client ignores UIDs it
 * never had). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap.h"
#include "imap_msg.h"

int
imap_condstore_enable(struct imap_session *s, const char *name, struct pt_strbuf *enabled)
{
	if (strcasecmp(name, "CONDSTORE") == 0) {
		if (!s->condstore)
			pt_strbuf_puts(enabled, " CONDSTORE");
		s->condstore = 1;
		return 1;
	}
	if (strcasecmp(name, "QRESYNC") == 0) {
		/* QRESYNC implies CONDSTORE (RFC 7162 §3.2.3). */
		if (!s->qresync)
			pt_strbuf_puts(enabled, " QRESYNC");
		s->qresync = s->condstore = 1;
		return 1;
	}
	return 0;
}

void
imap_condstore_on(struct imap_session *s)
{
	if (s->condstore)
		return;
	s->condstore = 1;
	if (s->mb != NULL)
		imap_untagged(s, "OK [HIGHESTMODSEQ %llu] Highest", (unsigned long long)imap_highest_modseq(s));
}

uint64_t
imap_highest_modseq_above(const struct imap_session *s, uint64_t view_max)
{
	if (s->mb == NULL || s->mbx->highest_modseq == NULL)
		return 1;
	uint64_t h = s->mbx->highest_modseq(s->mb);
	/* Never below what this session has shown of a message. */
	if (view_max > h)
		h = view_max;
	return h ? h : 1;
}

uint64_t
imap_highest_modseq(const struct imap_session *s)
{
	uint64_t m = 0;
	for (size_t i = 0; i < s->nview; i++)
		if (s->view[i].modseq > m)
			m = s->view[i].modseq;
	return imap_highest_modseq_above(s, m);
}

const char *
imap_modseq_code(struct imap_session *s, char *buf, size_t len)
{
	if (!s->qresync || s->mb == NULL)
		return NULL;
	snprintf(buf, len, "HIGHESTMODSEQ %llu", (unsigned long long)imap_highest_modseq(s));
	return buf;
}

int
imap_modseq_parse(const char *s, size_t len, int zero_ok, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	/* mod-sequence-value: 63 bits (RFC 7162 §7). */
	if (v > 0x7fffffffffffffffull || (v == 0 && !zero_ok))
		return -1;
	*out = v;
	return 0;
}

void
imap_vanished_send(struct imap_session *s, const uint32_t *uids, size_t n, int earlier)
{
	struct pt_strbuf b = { 0 };

	if (n == 0)
		return;
	imap_seqset_format(uids, n, &b);
	if (!b.oom && b.p)
		imap_untagged(s, "VANISHED %s%s", earlier ? "(EARLIER) " : "", b.p);
	pt_strbuf_free(&b);
}

static void
range_put(struct pt_strbuf *b, uint64_t lo, uint64_t hi)
{
	if (b->len)
		pt_strbuf_put(b, ",", 1);
	if (lo == hi)
		pt_strbuf_printf(b, "%llu", (unsigned long long)lo);
	else
		pt_strbuf_printf(b, "%llu:%llu", (unsigned long long)lo, (unsigned long long)hi);
}

static int
range_cmp(const void *a, const void *b)
{
	const struct imap_range *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

int
imap_vanished_earlier(struct imap_session *s, const char *set, size_t len)
{
	return imap_vanished_since(s, set, len, 0);
}

int
imap_vanished_since(struct imap_session *s, const char *set, size_t len, uint64_t modseq)
{
	struct imap_seqset ss = { 0 };
	uint32_t next = s->mbx->uidnext(s->mb);
	uint64_t top = next > 1 ? (uint64_t)next - 1 : 0;

	if (set != NULL) {
		if (imap_seqset_parse(set, len, &ss) != 0)
			return -1;
	} else {
		ss.r = malloc(sizeof *ss.r);
		if (ss.r == NULL)
			return 0;
		ss.r[0].lo = 1;
		ss.r[0].hi = top;
		ss.n = top ? 1 : 0;
	}
	/* "*" is the last UID there is; nothing above UIDNEXT-1 ever was. */
	size_t k = 0;
	for (size_t i = 0; i < ss.n; i++) {
		uint64_t lo = ss.r[i].lo == IMAP_SEQ_STAR ? top : ss.r[i].lo;
		uint64_t hi = ss.r[i].hi == IMAP_SEQ_STAR ? top : ss.r[i].hi;
		if (lo > hi) {
			uint64_t t = lo;
			lo = hi;
			hi = t;
		}
		if (hi > top)
			hi = top;
		if (lo == 0)
			lo = 1;
		if (lo <= hi)
			ss.r[k++] = (struct imap_range){ lo, hi };
	}
	ss.n = k;
	qsort(ss.r, ss.n, sizeof *ss.r, range_cmp);
	/* Disjoint and ascending. */
	k = 0;
	for (size_t i = 0; i < ss.n; i++) {
		if (k && ss.r[i].lo <= ss.r[k - 1].hi + 1) {
			if (ss.r[i].hi > ss.r[k - 1].hi)
				ss.r[k - 1].hi = ss.r[i].hi;
		} else {
			ss.r[k++] = ss.r[i];
		}
	}
	ss.n = k;
	/* Only what the store knows was expunged since modseq, when it
	 * knows that far back. */
	uint32_t *gone = NULL;
	size_t ngone = 0;
	if (modseq > 0 && s->mbx->vanished_since != NULL &&
	    s->mbx->vanished_since(s->mb, modseq, &gone, &ngone) == 0) {
		struct imap_range *both = ngone ? malloc((ss.n + ngone) * sizeof *both) : NULL;
		size_t nb = 0, a = 0, g = 0;
		if (ngone && both == NULL) {
			free(gone);
			imap_seqset_free(&ss);
			return 0;
		}
		while (a < ss.n && g < ngone) {
			uint64_t lo = ss.r[a].lo > gone[2 * g] ? ss.r[a].lo : gone[2 * g];
			uint64_t hi = ss.r[a].hi < gone[2 * g + 1] ? ss.r[a].hi : gone[2 * g + 1];
			if (lo <= hi && nb && lo <= both[nb - 1].hi + 1)
				both[nb - 1].hi = hi;     /* one range: "3:5", not "3:4,5" */
			else if (lo <= hi)
				both[nb++] = (struct imap_range){ lo, hi };
			if (ss.r[a].hi < gone[2 * g + 1])
				a++;
			else
				g++;
		}
		free(gone);
		free(ss.r);
		ss.r = both;
		ss.n = nb;
	}
	struct pt_strbuf b = { 0 };
	for (size_t i = 0; i < ss.n; i++) {
		uint64_t lo = ss.r[i].lo, hi = ss.r[i].hi;
		size_t v = imap_view_lower(s, lo);   /* the UIDs still there */
		while (lo <= hi) {
			uint64_t stop = v < s->nview && s->view[v].uid <= hi ? (uint64_t)s->view[v].uid - 1 : hi;
			if (stop >= lo)
				range_put(&b, lo, stop);
			lo = stop + 2;        /* past the existing UID (or past hi) */
			v++;
		}
	}
	if (!b.oom && b.len)
		imap_untagged(s, "VANISHED (EARLIER) %s", b.p);
	pt_strbuf_free(&b);
	imap_seqset_free(&ss);
	return 0;
}

int
imap_select_params(struct imap_session *s, const struct imap_arg *list, struct imap_qresync *q,
                   char *err, size_t errlen)
{
	memset(q, 0, sizeof *q);
	if (list->type != IMAP_ARG_LIST) {
		snprintf(err, errlen, "Invalid arguments.");
		return -1;
	}
	for (size_t i = 0; i < list->n; i++) {
		const struct imap_arg *p = &list->list[i];
		if (p->type == IMAP_ARG_ATOM && strcasecmp(p->s, "CONDSTORE") == 0) {
			q->condstore = 1;
			continue;
		}
		if (p->type != IMAP_ARG_ATOM || strcasecmp(p->s, "QRESYNC") != 0) {
			snprintf(err, errlen, "Unknown select parameter.");
			return -1;
		}
		/* QRESYNC (uidvalidity modseq [known-uids [(seqs uids)]]) */
		if (!s->qresync) {
			snprintf(err, errlen, "QRESYNC not enabled.");
			return -1;
		}
		const struct imap_arg *a = i + 1 < list->n ? &list->list[++i] : NULL;
		uint64_t v;
		if (a == NULL || a->type != IMAP_ARG_LIST || a->n < 2 || a->n > 4 ||
		    a->list[0].type != IMAP_ARG_ATOM || a->list[1].type != IMAP_ARG_ATOM ||
		    imap_modseq_parse(a->list[0].s, a->list[0].len, 0, &v) != 0 || v > UINT32_MAX ||
		    imap_modseq_parse(a->list[1].s, a->list[1].len, 0, &q->modseq) != 0) {
			snprintf(err, errlen, "Invalid QRESYNC parameters.");
			return -1;
		}
		q->uidvalidity = (uint32_t)v;
		struct imap_seqset ss;
		size_t at = 2;
		if (a->n > at && a->list[at].type == IMAP_ARG_ATOM) {
			if (imap_seqset_parse(a->list[at].s, a->list[at].len, &ss) != 0) {
				snprintf(err, errlen, "Invalid QRESYNC known-uids.");
				return -1;
			}
			imap_seqset_free(&ss);
			q->known = a->list[at].s;
			q->known_len = a->list[at].len;
			at++;
		}
		/* The sequence match data only narrows what a server without
		 * known expunges would send: checked, not needed here. */
		if (a->n > at) {
			const struct imap_arg *m = &a->list[at];
			int ok = m->type == IMAP_ARG_LIST && m->n == 2 && m->list[0].type == IMAP_ARG_ATOM &&
			         m->list[1].type == IMAP_ARG_ATOM && at + 1 == a->n;
			for (size_t j = 0; ok && j < 2; j++) {
				ok = imap_seqset_parse(m->list[j].s, m->list[j].len, &ss) == 0;
				if (ok)
					imap_seqset_free(&ss);
			}
			if (!ok) {
				snprintf(err, errlen, "Invalid QRESYNC sequence match data.");
				return -1;
			}
		}
		q->qresync = 1;
	}
	return 0;
}

void
imap_qresync_select(struct imap_session *s, const struct imap_qresync *q, const struct imap_view_sums *sums)
{
	if (!q->qresync || q->uidvalidity != s->uidvalidity)
		return;
	struct imap_seqset known = { 0 };
	int have_known = q->known && imap_seqset_parse(q->known, q->known_len, &known) == 0;
	uint32_t star = s->nview ? s->view[s->nview - 1].uid : 0;
	imap_vanished_since(s, q->known, q->known_len, q->modseq);
	/* The load's list of changed entries, when it kept all of them. */
	int listed = sums != NULL && sums->collected && !sums->over;
	size_t nwalk = listed ? sums->nsince : s->nview;
	for (size_t k = 0; k < nwalk; k++) {
		size_t i = listed ? sums->since_idx[k] : k;
		if (i >= s->nview)
			break;
		const struct pt_msg_brief *v = &s->view[i];
		if (v->modseq <= q->modseq || (have_known && !imap_seqset_contains(&known, v->uid, star)))
			continue;
		struct pt_strbuf b = { 0 };
		imap_append_flags(s, &b, v->flags, v->keywords);
		if (!b.oom)
			imap_untagged(s, "%zu FETCH (UID %u FLAGS %s MODSEQ (%llu))", i + 1, v->uid, b.p,
			              (unsigned long long)v->modseq);
		pt_strbuf_free(&b);
	}
	if (have_known)
		imap_seqset_free(&known);
}
