/* Folder commands: SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE,
 * UNSUBSCRIBE, LIST, LSUB, STATUS, NAMESPACE. Names are modified UTF-7
 * on the wire and UTF-8 in the store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/log.h"
#include "imap.h"
#include "imap_msg.h"

/* Whether [s, s+n) is well-formed UTF-8 (no overlongs, no surrogates). */
static int
utf8_valid(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		size_t k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 9;
		if (k == 9 || i + k >= n + (k == 0) || (k == 1 && c < 0xc2) || (k == 3 && c > 0xf4))
			return 0;
		for (size_t j = 1; j <= k; j++)
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
		if ((k == 2 && c == 0xe0 && s[i + 1] < 0xa0) || (k == 2 && c == 0xed && s[i + 1] >= 0xa0) ||
		    (k == 3 && c == 0xf0 && s[i + 1] < 0x90) || (k == 3 && c == 0xf4 && s[i + 1] >= 0x90))
			return 0;
		i += k + 1;
	}
	return 1;
}

/* A mailbox name or pattern from the wire into UTF-8: modified UTF-7
 * (RFC 3501 §5.1.3), or for a session that enabled IMAP4rev2 UTF-8 as
 * it is (RFC 9051 §5.1: rev2 names are UTF-8). 0, or -1 when invalid. */
static int
name_decode(const char *s, size_t len, struct pt_strbuf *out)
{
	if (!imap_names_utf8)
		return imap_utf7_decode(s, len, out);
	if (!utf8_valid((const unsigned char *)s, len))
		return -1;
	pt_strbuf_put(out, s, len);
	return 0;
}

char *
imap_mailbox_arg(const struct imap_arg *a)
{
	struct pt_strbuf b = { 0 };

	if (!imap_arg_is_string(a) || memchr(a->s, 0, a->len))
		return NULL;
	if (a->len == 5 && strncasecmp(a->s, "INBOX", 5) == 0)
		return strdup("INBOX");
	if (name_decode(a->s, a->len, &b) != 0 || b.oom) {
		pt_strbuf_free(&b);
		return NULL;
	}
	if (b.p == NULL)
		return strdup("");
	/* "inbox/x" names INBOX's child: INBOX is case-insensitive. */
	if (b.len > 6 && strncasecmp(b.p, "INBOX/", 6) == 0)
		memcpy(b.p, "INBOX", 5);
	return b.p;
}

void
imap_append_mailbox_name(struct pt_strbuf *out, const char *name)
{
	struct pt_strbuf e = { 0 };

	if (imap_names_utf8)
		imap_append_astring(out, name, strlen(name));
	else if (imap_utf7_encode(name, strlen(name), &e) == 0 && !e.oom && e.p)
		imap_append_astring(out, e.p, e.len);
	else
		imap_append_astring(out, name, strlen(name));
	pt_strbuf_free(&e);
}

void
imap_mailbox_invalid(struct imap_session *s, const char *tag, const char *cmd, const struct imap_arg *a)
{
	/* A string that does not decode is a name no folder can have: NO, as
	 * Dovecot answers; anything else is a syntax error. */
	if (imap_arg_is_string(a))
		imap_tagged(s, tag, "NO", imap_names_utf8 ? "Mailbox name is not valid UTF-8" :
		                                            "Mailbox name is not valid mUTF-7");
	else
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid mailbox name.", cmd);
}

/* The one mailbox argument of cmd, decoded; NULL with BAD already sent. */
static char *
one_name(struct imap_session *s, const char *tag, const char *cmd, const struct imap_arg *a, size_t n)
{
	if (n != 1) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: Invalid arguments.", cmd);
		return NULL;
	}
	char *name = imap_mailbox_arg(&a[0]);
	if (name == NULL)
		imap_mailbox_invalid(s, tag, cmd, &a[0]);
	return name;
}

/* The end of a folder command: the store's error, or sync and OK. */
static void
folder_done(struct imap_session *s, const char *tag, int rc, const struct pt_status *st, const char *what)
{
	if (rc != 0) {
		imap_store_error(s, tag, st);
		return;
	}
	imap_sync(s, 1);
	imap_completed(s, tag, NULL, what);
}

/* ---- SELECT / EXAMINE ---- */

static void list_one_name(struct imap_session *s, const char *name);

static void
select_list_line(struct imap_session *s, const char *name)
{
	list_one_name(s, name);
}

static void
select_common(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int readonly)
{
	const char *cmd = readonly ? "EXAMINE" : "SELECT";
	struct pt_status st = { 0 };
	struct imap_qresync q = { 0 };
	char err[80];

	/* SELECT name [(CONDSTORE) | (QRESYNC (...))] (RFC 7162) */
	if (n == 2 && imap_select_params(s, &a[1], &q, err, sizeof(err)) != 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command %s: %s", cmd, err);
		return;
	}
	char *name = one_name(s, tag, cmd, a, n == 2 ? 1 : n);
	if (name == NULL)
		return;
	if (q.condstore)
		s->condstore = 1;
	if (s->state == IMAP_SELECTED) {
		imap_view_clear(s);
		/* RFC 7162 §3.2.11: the old mailbox's updates end here. */
		imap_untagged(s, "OK [CLOSED] Previous mailbox closed.");
	}
	struct pt_mbox *mb = s->mbx->open(s->ms, name, readonly, &st);
	int changed = 0;
	if (mb != NULL && s->mbx->sync(mb, &changed, &st) != 0) {
		s->mbx->close(mb);
		mb = NULL;
	}
	if (mb == NULL) {
		free(name);
		imap_store_error(s, tag, &st);
		return;
	}
	s->mb = mb;
	s->selected = name;
	s->readonly = readonly;
	s->state = IMAP_SELECTED;
	struct imap_view_sums sums;
	/* A QRESYNC for this folder lists what changed on the way. */
	if (imap_view_load_since(s, &sums, q.qresync, q.modseq) != 0) {
		imap_view_clear(s);
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return;
	}
	imap_send_flags(s);
	size_t recent = sums.recent, first_unseen = sums.first_unseen;
	imap_untagged(s, "%zu EXISTS", s->nview);
	if (s->rev2) {
		/* RFC 9051 §6.3.2: no RECENT, no UNSEEN code; the folder's LIST
		 * line instead (its name as the server spells it). */
		select_list_line(s, s->selected);
	} else {
		imap_untagged(s, "%zu RECENT", recent);
		if (first_unseen)
			imap_untagged(s, "OK [UNSEEN %zu] First unseen.", first_unseen);
	}
	imap_untagged(s, "OK [UIDVALIDITY %u] UIDs valid", s->uidvalidity);
	imap_untagged(s, "OK [UIDNEXT %u] Predicted next UID", s->mbx->uidnext(s->mb));
	/* Every folder keeps mod-sequences: never NOMODSEQ. */
	/* The view's highest came with the load. */
	uint64_t hms = imap_highest_modseq_above(s, sums.modseq);
	imap_untagged(s, "OK [HIGHESTMODSEQ %llu] Highest", (unsigned long long)hms);
	imap_qresync_select(s, &q, &sums);
	imap_completed(s, tag, readonly ? "READ-ONLY" : "READ-WRITE", readonly ? "Examine" : "Select");
}

void
imap_cmd_select(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	(void)uid;
	select_common(s, tag, a, n, 0);
}

void
imap_cmd_examine(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	(void)uid;
	select_common(s, tag, a, n, 1);
}

/* ---- CREATE / DELETE / RENAME / SUBSCRIBE ---- */

/* CREATE name [(USE (\Sent ...))] (RFC 6154 §3, CREATE-SPECIAL-USE):
 * the attributes in canonical spelling, space separated, into use; 0, or
 * -1 with the reply sent. */
static int
create_params(struct imap_session *s, const char *tag, const struct imap_arg *p, char *use, size_t uselen)
{
	use[0] = 0;
	if (p->type != IMAP_ARG_LIST || p->n != 2 || p->list[0].type != IMAP_ARG_ATOM ||
	    strcasecmp(p->list[0].s, "USE") != 0 || p->list[1].type != IMAP_ARG_LIST) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command CREATE: Invalid arguments.");
		return -1;
	}
	const struct imap_arg *l = &p->list[1];
	size_t len = 0;
	for (size_t i = 0; i < l->n; i++) {
		const char *canon = l->list[i].type == IMAP_ARG_ATOM ? imap_special_attr(l->list[i].s, l->list[i].len) :
		                                                       NULL;
		if (canon == NULL) {
			imap_tagged(s, tag, "NO", "[USEATTR] Unsupported special-use attribute");
			return -1;
		}
		if (strstr(use, canon))
			continue;
		size_t cl = strlen(canon);
		if (len + cl + 2 > uselen) {
			imap_tagged(s, tag, "NO", "[USEATTR] Too many special-use attributes");
			return -1;
		}
		if (len)
			use[len++] = ' ';
		memcpy(use + len, canon, cl + 1);
		len += cl;
	}
	return 0;
}

void
imap_cmd_create(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	struct pt_status st = { 0 };
	char use[128] = "";

	(void)uid;
	if (n == 2 && create_params(s, tag, &a[1], use, sizeof(use)) != 0)
		return;
	char *name = one_name(s, tag, "CREATE", a, n == 2 ? 1 : n);
	if (name == NULL)
		return;
	if (name[0] == 0 || strcmp(name, "INBOX") == 0) {
		imap_tagged(s, tag, "NO", name[0] ? "[ALREADYEXISTS] Mailbox already exists" :
		                                    "[CANNOT] Invalid mailbox name");
		free(name);
		return;
	}
	if (use[0] && s->mbx->set_special_use == NULL) {
		free(name);
		imap_tagged(s, tag, "NO", "[USEATTR] Special-use attributes not supported by this store");
		return;
	}
	int rc = s->mbx->create(s->ms, name, &st);
	if (rc == 0 && use[0] && s->mbx->set_special_use(s->ms, name, use, &st) != 0) {
		/* Not half done: the folder goes again when its use cannot be kept. */
		struct pt_status st2 = { 0 };
		(void)s->mbx->remove(s->ms, name, &st2);
		rc = -1;
	}
	free(name);
	folder_done(s, tag, rc, &st, "Create");
}

/* A folder's recorded special use (CREATE ... USE) follows it through
 * DELETE (forgotten) and RENAME (moved, with its children's); the
 * configured ones stay with their configured names. */
static void
special_use_follow(struct imap_session *s, const char *from, const char *to)
{
	if (s->mbx->special_uses == NULL || s->mbx->set_special_use == NULL)
		return;
	struct imap_special_table *t = imap_special_load(s, 0);
	size_t flen = strlen(from);
	for (size_t i = 0; t != NULL && i < imap_special_count(t); i++) {
		const char *name = imap_special_name(t, i), *use = imap_special_use(t, i);
		struct pt_status st = { 0 };
		if (strncmp(name, from, flen) != 0 || (name[flen] != 0 && name[flen] != '/'))
			continue;
		if (s->mbx->set_special_use(s->ms, name, NULL, &st) != 0 || to == NULL)
			continue;
		struct pt_strbuf nn = { 0 };
		pt_strbuf_printf(&nn, "%s%s", to, name + flen);
		if (!nn.oom)
			(void)s->mbx->set_special_use(s->ms, nn.p, use, &st);
		pt_strbuf_free(&nn);
	}
	imap_special_free(t);
}

void
imap_cmd_delete(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	struct pt_status st = { 0 };

	(void)uid;
	char *name = one_name(s, tag, "DELETE", a, n);
	if (name == NULL)
		return;
	if (strcmp(name, "INBOX") == 0) {
		free(name);
		imap_tagged(s, tag, "NO", "INBOX can't be deleted.");
		return;
	}
	if (s->selected && strcmp(s->selected, name) == 0)
		imap_view_clear(s); /* the selection goes with it */
	int rc = s->mbx->remove(s->ms, name, &st);
	if (rc == 0)
		special_use_follow(s, name, NULL);
	/* RFC 9051 §7.1 has a code of its own for a \Noselect parent
	 * that cannot go while it has children. */
	if (rc != 0 && s->rev2 && strcmp(st.dsn, "CANNOT") == 0 && strstr(st.text, "has children"))
		snprintf(st.dsn, sizeof(st.dsn), "%s", "HASCHILDREN");
	free(name);
	folder_done(s, tag, rc, &st, "Delete");
}

void
imap_cmd_rename(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	struct pt_status st = { 0 };

	(void)uid;
	if (n != 2) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command RENAME: Invalid arguments.");
		return;
	}
	char *from = imap_mailbox_arg(&a[0]), *to = imap_mailbox_arg(&a[1]);
	if (from == NULL || to == NULL) {
		imap_mailbox_invalid(s, tag, "RENAME", from == NULL ? &a[0] : &a[1]);
		free(from);
		free(to);
		return;
	}
	if (to[0] == 0 || strcmp(to, "INBOX") == 0) {
		imap_tagged(s, tag, "NO", to[0] ? "[ALREADYEXISTS] Target mailbox already exists" :
		                                  "[CANNOT] Invalid mailbox name");
		free(from);
		free(to);
		return;
	}
	int rc = s->mbx->rename(s->ms, from, to, &st);
	if (rc == 0 && strcmp(from, "INBOX") != 0)
		special_use_follow(s, from, to);
	free(from);
	free(to);
	folder_done(s, tag, rc, &st, "Rename");
}

static void
subscribe(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int on)
{
	const char *cmd = on ? "SUBSCRIBE" : "UNSUBSCRIBE";
	struct pt_status st = { 0 };

	char *name = one_name(s, tag, cmd, a, n);
	if (name == NULL)
		return;
	int rc = s->mbx->subscribe(s->ms, name, on, &st);
	free(name);
	folder_done(s, tag, rc, &st, on ? "Subscribe" : "Unsubscribe");
}

void
imap_cmd_subscribe(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	(void)uid;
	subscribe(s, tag, a, n, 1);
}

void
imap_cmd_unsubscribe(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n,
                     int uid)
{
	(void)uid;
	subscribe(s, tag, a, n, 0);
}

/* ---- LIST / LSUB ---- */

/* RFC 3501 §6.3.8: '*' matches anything, '%' anything but the separator.
 * The set of pattern positions still alive is carried along the name (an
 * NFA), so the cost is pattern length x name length: backtracking took
 * exponential time on LIST "" "*a*a*a...*ab" against a long name and hung
 * the user's mail process. Runs of wildcards are one wildcard first (a
 * '*' among them wins), which keeps the live set within twice the
 * characters read. */
static int
wild_match(const char *pat, const char *name)
{
	size_t plen = strlen(pat), m = 0;
	unsigned char stack[3 * 128];
	unsigned char *mem = plen + 1 <= 128 ? stack : malloc(3 * (plen + 1));
	if (!mem)
		return 0;
	char *p = (char *)mem;
	unsigned char *cur = mem + plen + 1, *next = cur + plen + 1;
	for (size_t i = 0; i < plen; i++) {
		int wild = pat[i] == '*' || pat[i] == '%';
		if (wild && m > 0 && (p[m - 1] == '*' || p[m - 1] == '%')) {
			if (pat[i] == '*')
				p[m - 1] = '*';
			continue;
		}
		p[m++] = pat[i];
	}
	/* cur[i]: pattern position i is live. A live wildcard may also match
	 * nothing, so its successor is live too. hi bounds the live positions:
	 * each character moves a position by at most one, the closure by one
	 * more (no two wildcards follow each other now). */
	memset(cur, 0, m + 1);
	cur[0] = 1;
	if (m > 0 && (p[0] == '*' || p[0] == '%'))
		cur[1] = 1;
	size_t hi = m < 1 ? m : 1;
	int result = 0;
	for (const char *c = name;; c++) {
		if (*c == 0) {
			result = hi == m && cur[m];
			break;
		}
		size_t nhi = hi + 2 < m ? hi + 2 : m;
		memset(next, 0, nhi + 1);
		int any = 0;
		for (size_t i = 0; i <= hi && i < m; i++) {
			if (!cur[i])
				continue;
			if (p[i] == '*' || (p[i] == '%' && *c != '/'))
				next[i] = 1;
			else if (p[i] != '*' && p[i] != '%' && p[i] == *c)
				next[i + 1] = 1;
			else
				continue;
			any = 1;
		}
		if (!any)
			break;
		for (size_t i = 0; i < nhi; i++)
			if (next[i] && (p[i] == '*' || p[i] == '%'))
				next[i + 1] = 1;
		hi = nhi;
		unsigned char *t = cur;
		cur = next;
		next = t;
	}
	if (mem != stack)
		free(mem);
	return result;
}

static int
name_match(const char *pat, const char *name)
{
	/* INBOX is matched case-insensitively (RFC 3501 §5.1). */
	if (strncasecmp(pat, "INBOX", 5) == 0 && strncmp(name, "INBOX", 5) == 0 &&
	    (pat[5] == 0 || pat[5] == '/' || pat[5] == '*' || pat[5] == '%')) {
		return wild_match(pat + 5, name + 5);
	}
	return wild_match(pat, name);
}

struct list_run {
	struct imap_session *s;
	const char *pattern;          /* UTF-8, reference prepended */
	int lsub;
	int matched;
	char **subs;                  /* LSUB: every subscribed name */
	size_t nsubs, cap;
	int oom;
};

/* "* LIST (attrs) "/" name [extended]": extra holds further attributes
 * ("\\Subscribed \\Sent"), ext the extended data, each may be "". */
static void
emit_line_ext(struct imap_session *s, const char *what, unsigned attrs, const char *extra, const char *name,
              const char *ext)
{
	struct pt_strbuf b = { 0 };
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ PT_MB_NOSELECT, "\\Noselect" },       { PT_MB_NOINFERIORS, "\\NoInferiors" },
		{ PT_MB_HASCHILDREN, "\\HasChildren" }, { PT_MB_HASNOCHILDREN, "\\HasNoChildren" },
		{ PT_MB_MARKED, "\\Marked" },           { PT_MB_UNMARKED, "\\Unmarked" },
		{ PT_MB_NONEXISTENT, "\\NonExistent" },
	};
	int first = 1;

	pt_strbuf_printf(&b, "%s (", what);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(attrs & names[i].bit))
			continue;
		if (!first)
			pt_strbuf_puts(&b, " ");
		pt_strbuf_puts(&b, names[i].name);
		first = 0;
	}
	if (extra[0])
		pt_strbuf_printf(&b, "%s%s", first ? "" : " ", extra);
	pt_strbuf_puts(&b, ") \"/\" ");
	imap_append_mailbox_name(&b, name);
	if (ext[0])
		pt_strbuf_printf(&b, " %s", ext);
	if (!b.oom)
		imap_untagged(s, "%s", b.p);
	pt_strbuf_free(&b);
}

static void
emit_line(struct imap_session *s, const char *what, unsigned attrs, const char *name)
{
	emit_line_ext(s, what, attrs, "", name, "");
}

static void
lsub_collect(void *arg, const char *name)
{
	struct list_run *r = arg;

	if (r->oom)
		return;
	if (r->nsubs == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 16;
		char **v = realloc(r->subs, cap * sizeof(*v));
		if (v == NULL) {
			r->oom = 1;
			return;
		}
		r->subs = v;
		r->cap = cap;
	}
	if ((r->subs[r->nsubs] = strdup(name)) == NULL) {
		r->oom = 1;
		return;
	}
	r->nsubs++;
}

static int
subscribed(const struct list_run *r, const char *name)
{
	for (size_t i = 0; i < r->nsubs; i++)
		if (strcmp(r->subs[i], name) == 0)
			return 1;
	return 0;
}

/* Subscribed names matching the pattern; with '%' also each unsubscribed
 * parent that matches where a subscribed descendant does not, flagged
 * \Noselect, once (RFC 3501 6.3.9: "foo/%" shows foo/bar for a
 * subscribed foo/bar/baz). */
static void
lsub_emit_all(struct list_run *r)
{
	int pct = strchr(r->pattern, '%') != NULL;
	char **shown = NULL;
	size_t nshown = 0;

	for (size_t i = 0; i < r->nsubs; i++) {
		const char *name = r->subs[i];
		if (name_match(r->pattern, name)) {
			r->matched++;
			emit_line(r->s, "LSUB", 0, name);
			continue;
		}
		if (!pct)
			continue;
		for (const char *sl = strchr(name, '/'); sl != NULL; sl = strchr(sl + 1, '/')) {
			char *parent = strndup(name, (size_t)(sl - name));
			if (parent == NULL)
				break;
			int seen = subscribed(r, parent);
			for (size_t k = 0; !seen && k < nshown; k++)
				seen = strcmp(shown[k], parent) == 0;
			char **v = NULL;
			if (!seen && name_match(r->pattern, parent) &&
			    (v = realloc(shown, (nshown + 1) * sizeof(*v))) != NULL) {
				shown = v;
				shown[nshown++] = parent;
				r->matched++;
				emit_line(r->s, "LSUB", PT_MB_NOSELECT, parent);
				continue;
			}
			free(parent);
		}
	}
	for (size_t k = 0; k < nshown; k++)
		free(shown[k]);
	free(shown);
}

/* ---- LSUB ---- */

void
imap_cmd_lsub(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	struct pt_status st = { 0 };

	(void)uid;
	if (n != 2 || !imap_arg_is_string(&a[0]) || !imap_arg_is_string(&a[1])) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command LSUB: Invalid arguments.");
		return;
	}
	struct pt_strbuf ref = { 0 }, pat = { 0 }, full = { 0 };
	if (name_decode(a[0].s, a[0].len, &ref) != 0 || name_decode(a[1].s, a[1].len, &pat) != 0) {
		pt_strbuf_free(&ref);
		pt_strbuf_free(&pat);
		/* A pattern no name can match in its encoding: nothing listed. */
		imap_completed(s, tag, NULL, "Lsub");
		return;
	}
	/* A pattern starting with the separator is absolute. */
	if (!(pat.len > 0 && pat.p[0] == '/') && ref.len > 0)
		pt_strbuf_put(&full, ref.p, ref.len);
	if (pat.len > 0)
		pt_strbuf_put(&full, pat.p, pat.len);
	pt_strbuf_puts(&full, "");
	struct list_run r = { .s = s, .pattern = full.p ? full.p : "", .lsub = 1 };
	int rc = s->mbx->subscriptions(s->ms, lsub_collect, &r, &st);
	if (rc == 0 && r.oom) {
		rc = -1;
		pt_status_set(&st, 451, "SERVERBUG", "Out of memory");
	} else if (rc == 0) {
		lsub_emit_all(&r);
	}
	for (size_t i = 0; i < r.nsubs; i++)
		free(r.subs[i]);
	free(r.subs);
	pt_strbuf_free(&full);
	pt_strbuf_free(&ref);
	pt_strbuf_free(&pat);
	if (rc != 0) {
		imap_store_error(s, tag, &st);
		return;
	}
	imap_sync(s, 1);
	imap_completed(s, tag, NULL, "Lsub");
}

/* ---- LIST, with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819) and
 * SPECIAL-USE (RFC 6154) ---- */

enum {
	SEL_SUBSCRIBED = 1, SEL_REMOTE = 2, SEL_RECURSIVE = 4, SEL_SPECIAL = 8,
	RET_SUBSCRIBED = 1, RET_CHILDREN = 2, RET_STATUS = 4, RET_SPECIAL = 8,
};

struct folder_list {
	char **name;
	unsigned *attrs;
	size_t n, cap;
	int oom;
};

static void
folders_add(void *arg, const char *name, unsigned attrs)
{
	struct folder_list *l = arg;

	if (l->oom)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		char **nv = realloc(l->name, cap * sizeof(*nv));
		if (nv != NULL)
			l->name = nv;
		unsigned *av = nv ? realloc(l->attrs, cap * sizeof(*av)) : NULL;
		if (nv == NULL || av == NULL) {
			l->oom = 1;
			return;
		}
		l->attrs = av;
		l->cap = cap;
	}
	if ((l->name[l->n] = strdup(name)) == NULL) {
		l->oom = 1;
		return;
	}
	l->attrs[l->n++] = attrs;
}

static void
folders_free(struct folder_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->name[i]);
	free(l->name);
	free(l->attrs);
}

static long
folders_find(const struct folder_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->name[i], name) == 0)
			return (long)i;
	return -1;
}

static void
subs_collect(void *arg, const char *name)
{
	folders_add(arg, name, 0);
}

struct list_req {
	unsigned sel, ret;
	const struct imap_arg *status_items;
	char **pats;                   /* UTF-8, reference prepended */
	size_t npats;
};

static int
any_match(const struct list_req *q, const char *name)
{
	for (size_t i = 0; i < q->npats; i++)
		if (name_match(q->pats[i], name))
			return 1;
	return 0;
}

/* RECURSIVEMATCH's CHILDINFO (RFC 5258 §3.5): a strict descendant of
 * name in l (the subscribed names) that no pattern matches itself. */
static int
has_descendant(const struct list_req *q, const struct folder_list *l, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < l->n; i++)
		if (strncmp(l->name[i], name, len) == 0 && l->name[i][len] == '/' && !any_match(q, l->name[i]))
			return 1;
	return 0;
}

/* "(SUBSCRIBED RECURSIVEMATCH)" / "RETURN (STATUS (MESSAGES))": 0 or -1. */
static int
parse_list_opts(const struct imap_arg *l, int ret, struct list_req *q)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct imap_arg *o = &l->list[i];
		if (o->type != IMAP_ARG_ATOM)
			return -1;
		if (strcasecmp(o->s, "SUBSCRIBED") == 0)
			ret ? (q->ret |= RET_SUBSCRIBED) : (q->sel |= SEL_SUBSCRIBED);
		else if (strcasecmp(o->s, "SPECIAL-USE") == 0)
			ret ? (q->ret |= RET_SPECIAL) : (q->sel |= SEL_SPECIAL);
		else if (!ret && strcasecmp(o->s, "REMOTE") == 0)
			q->sel |= SEL_REMOTE;
		else if (!ret && strcasecmp(o->s, "RECURSIVEMATCH") == 0)
			q->sel |= SEL_RECURSIVE;
		else if (ret && strcasecmp(o->s, "CHILDREN") == 0)
			q->ret |= RET_CHILDREN;
		else if (ret && strcasecmp(o->s, "STATUS") == 0 && i + 1 < l->n &&
		         l->list[i + 1].type == IMAP_ARG_LIST && !q->status_items) {
			char bad[64];
			if (!imap_status_items_valid(&l->list[i + 1], bad, sizeof(bad)))
				return -1;
			q->ret |= RET_STATUS;
			q->status_items = &l->list[++i];
		} else
			return -1;
	}
	/* RECURSIVEMATCH needs another selection option (RFC 5258 §3.1). */
	if ((q->sel & SEL_RECURSIVE) && !(q->sel & (SEL_SUBSCRIBED | SEL_SPECIAL)))
		return -1;
	return 0;
}

static void
list_req_free(struct list_req *q)
{
	for (size_t i = 0; i < q->npats; i++)
		free(q->pats[i]);
	free(q->pats);
}

/* One mailbox of the reply: its LIST line and, for LIST-STATUS, the
 * STATUS line after it (selectable folders only). */
static void
list_one(struct imap_session *s, const struct list_req *q, const char *name, unsigned attrs, int subscribed,
         const char *use, int childinfo)
{
	struct pt_strbuf extra = { 0 };

	if (subscribed && (q->ret & RET_SUBSCRIBED || q->sel & SEL_SUBSCRIBED))
		pt_strbuf_puts(&extra, "\\Subscribed");
	/* Special-use attributes go out in every LIST (RFC 6154 §2 lets
	 * the server, Dovecot does). */
	if (use[0])
		pt_strbuf_printf(&extra, "%s%s", extra.len ? " " : "", use);
	pt_strbuf_puts(&extra, "");
	emit_line_ext(s, "LIST", attrs, extra.p ? extra.p : "", name,
	              childinfo ? "(\"CHILDINFO\" (\"SUBSCRIBED\"))" : "");
	pt_strbuf_free(&extra);
	if ((q->ret & RET_STATUS) && !(attrs & (PT_MB_NOSELECT | PT_MB_NONEXISTENT))) {
		struct pt_status st = { 0 };
		/* A folder that vanished meanwhile just has no STATUS. */
		(void)imap_status_send(s, name, q->status_items, &st);
	}
}

void
imap_cmd_list(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	struct list_req q = { 0 };
	struct pt_status st = { 0 };
	struct folder_list all = { 0 }, subs = { 0 };
	struct imap_special_table *special = NULL;
	size_t i = 0;

	(void)uid;
	/* LIST [(selection)] reference (pattern | (patterns)) [RETURN (options)] */
	if (n > 0 && a[0].type == IMAP_ARG_LIST) {
		if (parse_list_opts(&a[0], 0, &q) != 0)
			goto bad;
		i++;
	}
	if (n < i + 2 || !imap_arg_is_string(&a[i]))
		goto bad;
	const struct imap_arg *ref_arg = &a[i], *pat_arg = &a[i + 1];
	i += 2;
	if (pat_arg->type == IMAP_ARG_LIST) {
		if (pat_arg->n == 0)
			goto bad;
		for (size_t k = 0; k < pat_arg->n; k++)
			if (!imap_arg_is_string(&pat_arg->list[k]))
				goto bad;
	} else if (!imap_arg_is_string(pat_arg)) {
		goto bad;
	}
	if (i < n) {
		if (i + 2 != n || a[i].type != IMAP_ARG_ATOM || strcasecmp(a[i].s, "RETURN") != 0 ||
		    a[i + 1].type != IMAP_ARG_LIST || parse_list_opts(&a[i + 1], 1, &q) != 0)
			goto bad;
	}

	const struct imap_arg *pv = pat_arg->type == IMAP_ARG_LIST ? pat_arg->list : pat_arg;
	size_t npv = pat_arg->type == IMAP_ARG_LIST ? pat_arg->n : 1;
	struct pt_strbuf ref = { 0 };
	if (name_decode(ref_arg->s, ref_arg->len, &ref) != 0) {
		/* A reference no name can have in its encoding: nothing listed. */
		pt_strbuf_free(&ref);
		imap_completed(s, tag, NULL, "List");
		return;
	}
	/* LIST "" "": the hierarchy delimiter and root (RFC 3501 §6.3.8). */
	if (npv == 1 && pv[0].len == 0) {
		pt_strbuf_free(&ref);
		imap_untagged(s, "LIST (\\Noselect) \"/\" \"\"");
		imap_sync(s, 1);
		imap_completed(s, tag, NULL, "List");
		return;
	}
	q.pats = calloc(npv, sizeof(*q.pats));
	if (q.pats == NULL) {
		pt_strbuf_free(&ref);
		goto oom;
	}
	for (size_t k = 0; k < npv; k++) {
		struct pt_strbuf pat = { 0 }, full = { 0 };
		if (pv[k].len == 0 || name_decode(pv[k].s, pv[k].len, &pat) != 0) {
			pt_strbuf_free(&pat);
			continue;   /* matches nothing */
		}
		/* A pattern starting with the separator is absolute. */
		if (!(pat.len > 0 && pat.p[0] == '/') && ref.len > 0)
			pt_strbuf_put(&full, ref.p, ref.len);
		pt_strbuf_put(&full, pat.p, pat.len);
		pt_strbuf_free(&pat);
		if (full.oom || full.p == NULL) {
			pt_strbuf_free(&full);
			pt_strbuf_free(&ref);
			goto oom;
		}
		q.pats[q.npats++] = full.p;
	}
	pt_strbuf_free(&ref);

	if (s->mbx->list(s->ms, folders_add, &all, &st) != 0)
		goto store_error;
	if ((q.sel & SEL_SUBSCRIBED || q.ret & RET_SUBSCRIBED) &&
	    s->mbx->subscriptions(s->ms, subs_collect, &subs, &st) != 0)
		goto store_error;
	if (all.oom || subs.oom || (special = imap_special_load(s, 1)) == NULL)
		goto oom;

	if (q.sel & SEL_SUBSCRIBED) {
		/* Subscribed names (also of folders that do not exist:
		 * \NonExistent), in the store's order first, then the rest. */
		for (size_t k = 0; k < all.n; k++) {
			const char *nm = all.name[k];
			int sub = folders_find(&subs, nm) >= 0;
			int kids = (q.sel & SEL_RECURSIVE) && has_descendant(&q, &subs, nm);
			if (!any_match(&q, nm) || (!sub && !kids))
				continue;
			const char *use = imap_special_of(special, nm);
			if ((q.sel & SEL_SPECIAL) && !use[0] && !kids)
				continue;
			list_one(s, &q, nm, all.attrs[k], sub, use, kids);
		}
		for (size_t k = 0; k < subs.n; k++) {
			const char *nm = subs.name[k];
			if (folders_find(&all, nm) >= 0 || !any_match(&q, nm) || folders_find(&subs, nm) < (long)k)
				continue;
			list_one(s, &q, nm, PT_MB_NONEXISTENT, 1, "",
			         (q.sel & SEL_RECURSIVE) && has_descendant(&q, &subs, nm));
		}
		/* RECURSIVEMATCH: a matching parent that is neither a folder
		 * nor subscribed, over subscribed descendants. */
		if (q.sel & SEL_RECURSIVE) {
			struct folder_list shown = { 0 };
			for (size_t k = 0; k < subs.n; k++) {
				if (any_match(&q, subs.name[k]))
					continue;   /* listed itself: no CHILDINFO for its parents */
				for (const char *sl = strchr(subs.name[k], '/'); sl != NULL; sl = strchr(sl + 1, '/')) {
					char *nm = strndup(subs.name[k], (size_t)(sl - subs.name[k]));
					if (nm != NULL && folders_find(&all, nm) < 0 && folders_find(&subs, nm) < 0 &&
					    folders_find(&shown, nm) < 0 && any_match(&q, nm)) {
						folders_add(&shown, nm, 0);
						list_one(s, &q, nm, PT_MB_NONEXISTENT, 0, "", 1);
					}
					free(nm);
				}
			}
			folders_free(&shown);
		}
	} else {
		for (size_t k = 0; k < all.n; k++) {
			const char *nm = all.name[k];
			if (!any_match(&q, nm))
				continue;
			const char *use = imap_special_of(special, nm);
			if ((q.sel & SEL_SPECIAL) && !use[0])
				continue;
			list_one(s, &q, nm, all.attrs[k], folders_find(&subs, nm) >= 0, use, 0);
		}
	}
	imap_special_free(special);
	folders_free(&all);
	folders_free(&subs);
	list_req_free(&q);
	imap_sync(s, 1);
	imap_completed(s, tag, NULL, "List");
	return;

bad:
	list_req_free(&q);
	imap_tagged(s, tag, "BAD", "Error in IMAP command LIST: Invalid arguments.");
	return;
oom:
	pt_status_set(&st, 451, "SERVERBUG", "Out of memory");
store_error:
	imap_special_free(special);
	folders_free(&all);
	folders_free(&subs);
	list_req_free(&q);
	imap_store_error(s, tag, &st);
}

/* The LIST line of one folder with its current attributes (IMAP4rev2
 * SELECT/EXAMINE, RFC 9051 §6.3.2). Nothing when it cannot be listed. */
static void
list_one_name(struct imap_session *s, const char *name)
{
	struct folder_list all = { 0 };
	struct pt_status st = { 0 };

	if (s->mbx->list(s->ms, folders_add, &all, &st) != 0 || all.oom) {
		folders_free(&all);
		return;
	}
	long k = folders_find(&all, name);
	if (k >= 0) {
		struct imap_special_table *t = imap_special_load(s, 1);
		const char *use = t ? imap_special_of(t, name) : "";
		emit_line_ext(s, "LIST", all.attrs[k], use ? use : "", name, "");
		imap_special_free(t);
	}
	folders_free(&all);
}

/* ---- STATUS ---- */

static const char *const status_items[] = { "MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN",
	                                    "SIZE", "DELETED-STORAGE", "DELETED", "HIGHESTMODSEQ" };
#define NSTATUS_ITEMS (sizeof(status_items) / sizeof(status_items[0]))

int
imap_status_items_valid(const struct imap_arg *list, char *bad, size_t badlen)
{
	if (list->type != IMAP_ARG_LIST || list->n == 0) {
		snprintf(bad, badlen, "%s", "");
		return 0;
	}
	for (size_t i = 0; i < list->n; i++) {
		const struct imap_arg *it = &list->list[i];
		size_t k;
		for (k = 0; k < NSTATUS_ITEMS; k++)
			if (it->type == IMAP_ARG_ATOM && strcasecmp(it->s, status_items[k]) == 0)
				break;
		if (k == NSTATUS_ITEMS) {
			snprintf(bad, badlen, "%s", it->type == IMAP_ARG_ATOM ? it->s : "");
			return 0;
		}
	}
	return 1;
}

int
imap_status_send(struct imap_session *s, const char *name, const struct imap_arg *list,
                 struct pt_status *st)
{
	struct pt_mbox_status ms = { 0 };

	if (s->mbx->status(s->ms, name, &ms, st) != 0)
		return -1;
	struct pt_strbuf b = { 0 };
	pt_strbuf_puts(&b, "STATUS ");
	imap_append_mailbox_name(&b, name);
	pt_strbuf_puts(&b, " (");
	for (size_t i = 0; i < list->n; i++) {
		const char *item = list->list[i].s;
		size_t k = 0;
		while (k + 1 < NSTATUS_ITEMS && strcasecmp(item, status_items[k]) != 0)
			k++;
		/* SIZE: the sum of RFC822.SIZE (RFC 8438), 64 bits */
		uint64_t v = k == 0 ? ms.messages : k == 1 ? ms.recent : k == 2 ? ms.uidnext :
		             k == 3 ? ms.uidvalidity : k == 4 ? ms.unseen : k == 5 ? ms.size :
		             k == 6 ? (ms.deleted_size + 1023) / 1024 :
		             k == 7 ? ms.deleted :   /* DELETED: IMAP4rev2 (RFC 9051 §6.3.11) */
		             ms.highestmodseq ? ms.highestmodseq : 1;
		pt_strbuf_printf(&b, "%s%s %llu", i ? " " : "", status_items[k], (unsigned long long)v);
	}
	pt_strbuf_puts(&b, ")");
	if (!b.oom)
		imap_untagged(s, "%s", b.p);
	pt_strbuf_free(&b);
	return 0;
}

void
imap_cmd_status(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	struct pt_status st = { 0 };
	char bad[64];

	(void)uid;
	if (n != 2 || a[1].type != IMAP_ARG_LIST || a[1].n == 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command STATUS: Invalid arguments.");
		return;
	}
	if (!imap_status_items_valid(&a[1], bad, sizeof(bad))) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command STATUS: Invalid status item %s", bad);
		return;
	}
	char *name = imap_mailbox_arg(&a[0]);
	if (name == NULL) {
		imap_mailbox_invalid(s, tag, "STATUS", &a[0]);
		return;
	}
	for (size_t i = 0; i < a[1].n; i++)
		if (strcasecmp(a[1].list[i].s, "HIGHESTMODSEQ") == 0)
			imap_condstore_on(s);   /* an enabling command (RFC 7162 §3.1) */
	int rc = imap_status_send(s, name, &a[1], &st);
	free(name);
	if (rc != 0) {
		imap_store_error(s, tag, &st);
		return;
	}
	imap_sync(s, 1);
	imap_completed(s, tag, NULL, "Status");
}

void
imap_cmd_namespace(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	(void)a, (void)uid;
	if (n != 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command NAMESPACE: Unexpected arguments.");
		return;
	}
	imap_untagged(s, "NAMESPACE ((\"\" \"/\")) NIL NIL");
	imap_sync(s, 1);
	imap_completed(s, tag, NULL, "Namespace");
}
