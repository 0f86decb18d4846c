/* The session's view of the selected folder and its sync with the store:
 * what changed since the client was last told (EXPUNGE where RFC 3501
 * §7.4.1 allows it, EXISTS/RECENT, FETCH FLAGS), and sequence sets
 * resolved against that view. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "postern/conn.h"
#include "postern/log.h"
#include "imap.h"
#include "imap_msg.h"

/* A view this big (about 87k messages) is written in one go at SELECT
 * in a process that is often new: its 4 KiB pages cost a fault each
 * (about 1 ms of a 100k folder's SELECT in a VM), so it starts on a
 * huge page boundary and its whole 2 MiB spans are asked for as huge
 * pages. Only spans it fills: no page beyond what it uses. */
#define VIEW_HUGE ((size_t)2 << 20)

static void *
view_alloc(size_t len)
{
	void *p;

	if (len < VIEW_HUGE)
		return malloc(len);
	if (posix_memalign(&p, VIEW_HUGE, len) != 0)
		return NULL;
	/* A kernel without transparent huge pages says no: 4 KiB pages. */
	(void)madvise(p, len & ~(VIEW_HUGE - 1), MADV_HUGEPAGE);
	return p;
}

static int
view_reserve(struct imap_session *s, size_t n)
{
	if (n <= s->capview)
		return 0;
	/* Exact at SELECT, then by an eighth: a big folder's view is kept
	 * per session, so doubling's slack would cost up to 16 B a message. */
	size_t cap = s->capview + s->capview / 8 + 64;
	if (cap < n)
		cap = n;
	struct pt_msg_brief *v = s->view == NULL ? view_alloc(cap * sizeof(*v)) :
	                                            realloc(s->view, cap * sizeof(*v));
	if (v == NULL)
		return -1;
	s->view = v;
	s->capview = cap;
	return 0;
}

void
imap_view_clear(struct imap_session *s)
{
	if (s->mb)
		s->mbx->close(s->mb);
	s->mb = NULL;
	free(s->selected);
	s->selected = NULL;
	free(s->view);
	s->view = NULL;
	s->nview = s->capview = 0;
	free(s->ghosts);
	s->ghosts = NULL;
	s->nghosts = 0;
	free(s->saved);
	s->saved = NULL;
	s->nsaved = 0;
	s->nkeywords_sent = 0;
	s->uidvalidity = 0;
	s->uid_seen_max = 0;
	s->readonly = 0;
	if (s->state == IMAP_SELECTED)
		s->state = IMAP_AUTH;
}

int
imap_view_load(struct imap_session *s, struct imap_view_sums *sums)
{
	return imap_view_load_since(s, sums, 0, 0);
}

/* Entries per bulk read: a chunk is summed while it is in the cache. */
#define VIEW_CHUNK 4096

int
imap_view_load_since(struct imap_session *s, struct imap_view_sums *sums, int collect, uint64_t since)
{
	size_t n = s->mbx->count(s->mb);

	memset(sums, 0, sizeof(*sums));
	sums->collected = collect;
	if (view_reserve(s, n) != 0)
		return -1;
	for (size_t c = 0; c < n; c += VIEW_CHUNK) {
		size_t e = n - c < VIEW_CHUNK ? n : c + VIEW_CHUNK;
		if (s->mbx->briefs != NULL)
			s->mbx->briefs(s->mb, c, e - c, &s->view[c]);
		else
			for (size_t i = c; i < e; i++) {
				const struct pt_msg_info *m = s->mbx->info(s->mb, i);
				s->view[i].uid = m->uid;
				s->view[i].flags = m->flags;
				s->view[i].keywords = m->keywords;
				s->view[i].modseq = m->modseq;
			}
		/* A big folder's view is written once here: what SELECT says
		 * of it is counted on the way, not in more passes. */
		for (size_t i = c; i < e; i++) {
			const struct pt_msg_brief *m = &s->view[i];
			if (m->flags & PT_F_RECENT)
				sums->recent++;
			if (!sums->first_unseen && !(m->flags & PT_F_SEEN))
				sums->first_unseen = i + 1;
			if (m->modseq > sums->modseq)
				sums->modseq = m->modseq;
			if (collect && m->modseq > since) {
				if (sums->nsince < IMAP_SINCE_MAX)
					sums->since_idx[sums->nsince++] = i;
				else
					sums->over = 1;
			}
		}
	}
	s->nview = n;
	s->uid_seen_max = n ? s->view[n - 1].uid : 0;
	s->uidvalidity = s->mbx->uidvalidity(s->mb);
	return 0;
}

static size_t
ghost_find(const struct imap_session *s, uint32_t uid)
{
	size_t lo = 0, hi = s->nghosts;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->ghosts[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const struct pt_msg_info *
imap_view_ghost(const struct imap_session *s, uint32_t uid)
{
	size_t g = ghost_find(s, uid);

	return g < s->nghosts && s->ghosts[g].uid == uid ? &s->ghosts[g] : NULL;
}

void
imap_view_remove(struct imap_session *s, size_t idx)
{
	if (idx >= s->nview)
		return;
	size_t g = ghost_find(s, s->view[idx].uid);
	if (g < s->nghosts && s->ghosts[g].uid == s->view[idx].uid) {
		memmove(&s->ghosts[g], &s->ghosts[g + 1], (s->nghosts - g - 1) * sizeof(s->ghosts[0]));
		s->nghosts--;
	}
	memmove(&s->view[idx], &s->view[idx + 1], (s->nview - idx - 1) * sizeof(s->view[0]));
	s->nview--;
}

size_t
imap_view_store_index(const struct imap_session *s, size_t idx)
{
	if (idx >= s->nview || s->mb == NULL)
		return (size_t)-1;
	/* Mostly the view is the store's list, entry for entry: one look
	 * instead of a search of a big folder. */
	if (idx < s->mbx->count(s->mb) && s->mbx->info(s->mb, idx)->uid == s->view[idx].uid)
		return idx;
	return s->mbx->find(s->mb, s->view[idx].uid);
}

uint32_t
imap_view_seq(const struct imap_session *s, uint32_t uid)
{
	size_t lo = 0, hi = s->nview;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->view[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->nview && s->view[lo].uid == uid ? (uint32_t)(lo + 1) : 0;
}

static void
send_fetch_flags(struct imap_session *s, size_t idx)
{
	struct pt_strbuf b = { 0 };

	imap_append_flags(s, &b, s->view[idx].flags, s->view[idx].keywords);
	if (b.oom) {
		pt_strbuf_free(&b);
		return;
	}
	if (s->condstore)
		/* RFC 7162 §3.1.4: a flag change carries its MODSEQ (and the
		 * UID, which QRESYNC clients key their caches on). */
		imap_untagged(s, "%zu FETCH (UID %u FLAGS %s MODSEQ (%llu))", idx + 1, s->view[idx].uid, b.p,
		              (unsigned long long)s->view[idx].modseq);
	else if (s->cmd_uid)
		imap_untagged(s, "%zu FETCH (UID %u FLAGS %s)", idx + 1, s->view[idx].uid, b.p);
	else
		imap_untagged(s, "%zu FETCH (FLAGS %s)", idx + 1, b.p);
	pt_strbuf_free(&b);
}

static size_t
count_recent(const struct imap_session *s)
{
	size_t r = 0;

	for (size_t i = 0; i < s->nview; i++)
		if (s->view[i].flags & PT_F_RECENT)
			r++;
	return r;
}

/* After a sync that may not send EXPUNGE: keep what pre (the store's
 * list before it) said of view entries that just lost their message. */
static void
keep_ghosts(struct imap_session *s, const struct pt_msg_info *pre, size_t npre)
{
	size_t p = 0;

	for (size_t i = 0; i < s->nview; i++) {
		uint32_t uid = s->view[i].uid;
		if (s->mbx->find(s->mb, uid) != (size_t)-1 || imap_view_ghost(s, uid) != NULL)
			continue;
		while (p < npre && pre[p].uid < uid)
			p++;
		if (p == npre || pre[p].uid != uid)
			continue;
		struct pt_msg_info *g = realloc(s->ghosts, (s->nghosts + 1) * sizeof(*g));
		if (g == NULL)
			return;   /* FETCH then leaves its size and date out */
		s->ghosts = g;
		size_t at = ghost_find(s, uid);
		memmove(&g[at + 1], &g[at], (s->nghosts - at) * sizeof(*g));
		g[at] = pre[p];
		s->nghosts++;
	}
}

void
imap_sync(struct imap_session *s, int allow_expunge)
{
	struct pt_status st = { 0 };
	int changed = 0;

	if (s->mb == NULL)
		return;
	/* Nothing new in the store and the view is its list: nothing to
	 * tell, and no walk over a big folder's view for every command. */
	if (s->mbx->uptodate != NULL && s->nghosts == 0 && s->mbx->count(s->mb) == s->nview &&
	    s->mbx->keyword_count(s->mb) == s->nkeywords_sent && s->mbx->uptodate(s->mb))
		return;
	/* The view is the store's list (same messages, flags told): if the
	 * store only adds messages at the end, only those are news. */
	size_t nstore = s->mbx->count(s->mb);
	int in_step = s->nghosts == 0 && nstore == s->nview;
	/* Without EXPUNGE, a message gone meanwhile stays in the view: what
	 * the store knew of it is copied first (the store forgets it). */
	size_t npre = allow_expunge ? 0 : nstore;
	struct pt_msg_info *pre = npre ? malloc(npre * sizeof(*pre)) : NULL;
	for (size_t i = 0; pre != NULL && i < npre; i++)
		pre[i] = *s->mbx->info(s->mb, i);
	int rc = s->mbx->sync(s->mb, &changed, &st);
	int appended = rc == 0 && changed == 2 && in_step;
	if (rc == 0 && pre != NULL && changed && !appended)
		keep_ghosts(s, pre, npre);
	free(pre);
	if (rc != 0) {
		pt_warn("imap(%s): sync of %s failed: %s", s->user.name, s->selected ? s->selected : "?",
		        st.text);
		return;
	}
	if (s->mbx->uidvalidity(s->mb) != s->uidvalidity) {
		/* Someone replaced the folder under us: the client's UIDs mean
		 * nothing any more (RFC 3501 §2.3.1.1). */
		imap_untagged(s, "BYE Mailbox UIDVALIDITY changed");
		s->state = IMAP_LOGOUT;
		if (s->conn)
			pt_conn_close_after_write(s->conn);
		return;
	}
	if (s->mbx->keyword_count(s->mb) != s->nkeywords_sent)
		imap_send_flags(s);

	if (allow_expunge && !appended) {
		/* QRESYNC: one VANISHED with the UIDs instead (RFC 7162 §3.2.10). */
		uint32_t *gone = NULL;
		size_t ngone = 0;
		size_t i = 0;
		while (i < s->nview) {
			if (s->mbx->find(s->mb, s->view[i].uid) == (size_t)-1) {
				if (s->qresync) {
					uint32_t *g = realloc(gone, (ngone + 1) * sizeof(*g));
					if (g == NULL) {
						i++;      /* told at a later sync */
						continue;
					}
					gone = g;
					gone[ngone++] = s->view[i].uid;
				} else {
					imap_untagged(s, "%zu EXPUNGE", i + 1);
				}
				imap_view_remove(s, i);
			} else {
				i++;
			}
		}
		imap_vanished_send(s, gone, ngone, 0);
		free(gone);
	}
	for (size_t i = 0; !appended && i < s->nview; i++) {
		const struct pt_msg_info *m = imap_view_info(s, i);
		if (m == NULL)
			continue;
		if (m->flags != s->view[i].flags || m->keywords != s->view[i].keywords ||
		    (s->condstore && m->modseq > s->view[i].modseq)) {
			s->view[i].flags = m->flags;
			s->view[i].keywords = m->keywords;
			if (m->modseq > s->view[i].modseq)
				s->view[i].modseq = m->modseq;
			send_fetch_flags(s, i);
		} else if (m->modseq > s->view[i].modseq) {
			s->view[i].modseq = m->modseq;
		}
	}
	/* UIDs only grow: what is above the highest one ever shown is new
	 * (an expunged last message must not come back as new). */
	uint32_t last = s->uid_seen_max;
	size_t n = s->mbx->count(s->mb), added = 0;
	for (size_t j = appended ? s->nview : 0; j < n; j++) {
		const struct pt_msg_info *m = s->mbx->info(s->mb, j);
		if (m->uid <= last)
			continue;
		if (view_reserve(s, s->nview + 1) != 0)
			break;
		s->view[s->nview].uid = m->uid;
		s->view[s->nview].flags = m->flags;
		s->view[s->nview].keywords = m->keywords;
		s->view[s->nview].modseq = m->modseq;
		s->nview++;
		last = s->uid_seen_max = m->uid;
		added++;
	}
	if (added) {
		imap_untagged(s, "%zu EXISTS", s->nview);
		if (!s->rev2)   /* RFC 9051 removed RECENT */
			imap_untagged(s, "%zu RECENT", count_recent(s));
	}
}

/* After a flag change of ours (STORE): the store's list has those
 * messages' merged state (another session's change of other flags
 * kept), which the view may not. Tell what differs, for these only. */
void
imap_sync_these(struct imap_session *s, const size_t *idx, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		size_t i = idx[k];
		size_t j = imap_view_store_index(s, i);
		if (j == (size_t)-1)
			continue;
		const struct pt_msg_info *m = s->mbx->info(s->mb, j);
		if (m->flags != s->view[i].flags || m->keywords != s->view[i].keywords) {
			s->view[i].flags = m->flags;
			s->view[i].keywords = m->keywords;
			if (m->modseq > s->view[i].modseq)
				s->view[i].modseq = m->modseq;
			send_fetch_flags(s, i);
		}
	}
}

size_t
imap_view_lower(const struct imap_session *s, uint64_t uid)
{
	size_t lo = 0, hi = s->nview;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->view[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int
range_lo_cmp(const void *a, const void *b)
{
	const struct imap_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

int
imap_resolve_set(const struct imap_session *s, const char *set, size_t len, int uid, size_t **idx,
                 size_t *n)
{
	struct imap_seqset ss;

	*idx = NULL;
	*n = 0;
	if (len == 1 && set[0] == '$') {
		/* The saved search result (RFC 5182), by UID in either form;
		 * empty is fine, and so are UIDs expunged since. */
		size_t *out = s->nsaved ? malloc(s->nsaved * sizeof(*out)) : NULL;
		size_t k = 0;
		if (s->nsaved && out == NULL)
			return -1;
		for (size_t i = 0; i < s->nsaved; i++) {
			uint32_t q = imap_view_seq(s, s->saved[i]);
			if (q)
				out[k++] = q - 1;
		}
		*idx = out;
		*n = k;
		return 0;
	}
	if (imap_seqset_parse(set, len, &ss) != 0)
		return -1;
	uint32_t star = uid ? (s->nview ? s->view[s->nview - 1].uid : 0) : (uint32_t)s->nview;
	if (!uid) {
		/* Sequence numbers must exist (RFC 3501 §6.4.8 only forgives
		 * UIDs); "*" in an empty folder names nothing that exists. */
		for (size_t i = 0; i < ss.n; i++) {
			uint64_t lo = ss.r[i].lo == IMAP_SEQ_STAR ? star : ss.r[i].lo;
			uint64_t hi = ss.r[i].hi == IMAP_SEQ_STAR ? star : ss.r[i].hi;
			if (lo == 0 || hi == 0 || lo > s->nview || hi > s->nview) {
				imap_seqset_free(&ss);
				return -1;
			}
		}
	}
	/* The ranges as view index ranges, ascending and disjoint: the work
	 * follows the size of the answer, not of the folder. */
	size_t k = 0;
	for (size_t i = 0; i < ss.n; i++) {
		uint64_t lo = ss.r[i].lo == IMAP_SEQ_STAR ? star : ss.r[i].lo;
		uint64_t hi = ss.r[i].hi == IMAP_SEQ_STAR ? star : ss.r[i].hi;
		if (lo > hi) {
			uint64_t t = lo;
			lo = hi;
			hi = t;
		}
		size_t a, b;              /* [a, b) of the view */
		if (uid) {
			a = imap_view_lower(s, lo);
			b = hi >= UINT32_MAX ? s->nview : imap_view_lower(s, hi + 1);
		} else {
			a = lo ? (size_t)lo - 1 : 0;
			b = hi < s->nview ? (size_t)hi : s->nview;
		}
		if (a < b)
			ss.r[k++] = (struct imap_range){ a, b };
	}
	qsort(ss.r, k, sizeof(*ss.r), range_lo_cmp);
	size_t m = 0, total = 0;
	for (size_t i = 0; i < k; i++) {
		if (m && ss.r[i].lo <= ss.r[m - 1].hi) {
			if (ss.r[i].hi > ss.r[m - 1].hi)
				ss.r[m - 1].hi = ss.r[i].hi;
		} else {
			ss.r[m++] = ss.r[i];
		}
	}
	for (size_t i = 0; i < m; i++)
		total += (size_t)(ss.r[i].hi - ss.r[i].lo);
	size_t *out = total ? malloc(total * sizeof(*out)) : NULL;
	if (total && out == NULL) {
		imap_seqset_free(&ss);
		return -1;
	}
	size_t o = 0;
	for (size_t i = 0; i < m; i++)
		for (uint64_t j = ss.r[i].lo; j < ss.r[i].hi; j++)
			out[o++] = (size_t)j;
	imap_seqset_free(&ss);
	*idx = out;
	*n = o;
	return 0;
}
