/* SEARCH (RFC 3501 §6.4.4): the keys compiled into a tree once, then
 * evaluated per message. Text keys compare case-insensitively (by
 * i;unicode-casemap, RFC 5051) against decoded header and body text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_msg_int.h"
#include "postern/unicode_casemap.h"

#define SEARCH_MAX_DEPTH 64

enum node_kind {
	N_ALL, N_AND, N_OR, N_NOT,
	N_FLAG,       /* flags & mask == mask */
	N_KEYWORD,    /* str: keyword name */
	N_LARGER, N_SMALLER,
	N_SEQ, N_UID,
	N_SAVED,      /* "$" (RFC 5182): the saved result, by UID */
	N_HEADER,     /* field, str (empty: has the field) */
	N_BODY, N_TEXT,
	N_DATE,       /* on INTERNALDATE */
	N_SENTDATE,   /* on Date: */
	N_MODSEQ,     /* RFC 7162: modseq >= num */
};
enum { D_BEFORE, D_ON, D_SINCE };

struct node {
	enum node_kind kind;
	uint32_t mask;
	uint64_t num;
	long day;
	int date_op;
	int addr;     /* N_HEADER from FROM/TO/CC/BCC: compare the addresses */
	int cached;   /* N_HEADER: field is in the store's header cache */
	int alnum;    /* str is ASCII letters and digits only (addr_cannot_match) */
	char *field, *str;
	size_t slen;
	/* N_HEADER, N_BODY, N_TEXT: str is ASCII; str folded and its table
	 * built once for the whole folder (cm_ok: else per text). */
	int ascii, cm_ok;
	struct pt_casemap_needle cm;
	struct imap_seqset set;
	struct node **kids;
	size_t nkids;
};

struct imap_search {
	struct node *root;
};

static void
node_free(struct node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->field);
	free(n->str);
	if (n->cm_ok)
		pt_casemap_needle_free(&n->cm);
	imap_seqset_free(&n->set);
	free(n);
}

static int all_ascii(const char *p, size_t n);

/* What every comparison with str needs, once per search. */
static void
needle_prepare(struct node *n)
{
	n->ascii = all_ascii(n->str, n->slen);
	n->cm_ok = pt_casemap_needle_init(&n->cm, n->str, n->slen) == 0;
}

static struct node *
node_new(enum node_kind kind)
{
	struct node *n = calloc(1, sizeof *n);
	if (n != NULL)
		n->kind = kind;
	return n;
}

static int
add_kid(struct node *n, struct node *k)
{
	struct node **kids = realloc(n->kids, (n->nkids + 1) * sizeof *kids);
	if (kids == NULL)
		return -1;
	n->kids = kids;
	n->kids[n->nkids++] = k;
	return 0;
}

struct parser {
	char *err;
	size_t errlen;
};

static void
fail(struct parser *ps, const char *fmt, const char *arg)
{
	if (ps->errlen == 0)
		return;
	snprintf(ps->err, ps->errlen, fmt, arg);
}

static const char *
arg_text(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_LIST ? "(" : a->type == IMAP_ARG_NIL ? "NIL" : a->s;
}

/* The next argument as text (astring), or NULL with "Missing argument". */
static const struct imap_arg *
take_string(struct parser *ps, const struct imap_arg *args, size_t n, size_t *i)
{
	if (*i >= n || !imap_arg_is_string(&args[*i])) {
		fail(ps, "%s", "Missing argument");
		return NULL;
	}
	return &args[(*i)++];
}

static char *
dup_mem(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d != NULL) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static struct node *parse_key(struct parser *ps, const struct imap_arg *args, size_t n, size_t *i,
                              int depth);

/* Keys until the end of args, ANDed. */
static struct node *
parse_all(struct parser *ps, const struct imap_arg *args, size_t n, int depth)
{
	if (n == 0) {
		fail(ps, "%s", "Missing argument");
		return NULL;
	}
	struct node *and = node_new(N_AND);
	if (and == NULL) {
		fail(ps, "%s", "Out of memory");
		return NULL;
	}
	size_t i = 0;
	while (i < n) {
		struct node *k = parse_key(ps, args, n, &i, depth);
		if (k == NULL || add_kid(and, k) != 0) {
			if (k != NULL)
				fail(ps, "%s", "Out of memory");
			node_free(k);
			node_free(and);
			return NULL;
		}
	}
	return and;
}

static const struct { const char *name; uint32_t mask; int set; } flag_keys[] = {
	{ "ANSWERED", PT_F_ANSWERED, 1 }, { "DELETED", PT_F_DELETED, 1 },
	{ "DRAFT", PT_F_DRAFT, 1 }, { "FLAGGED", PT_F_FLAGGED, 1 },
	{ "SEEN", PT_F_SEEN, 1 }, { "RECENT", PT_F_RECENT, 1 },
	{ "UNANSWERED", PT_F_ANSWERED, 0 }, { "UNDELETED", PT_F_DELETED, 0 },
	{ "UNDRAFT", PT_F_DRAFT, 0 }, { "UNFLAGGED", PT_F_FLAGGED, 0 },
	{ "UNSEEN", PT_F_SEEN, 0 }, { "OLD", PT_F_RECENT, 0 },
};
static const struct { const char *name; const char *field; int addr; } header_keys[] = {
	{ "BCC", "bcc", 1 }, { "CC", "cc", 1 }, { "FROM", "from", 1 }, { "SUBJECT", "subject", 0 },
	{ "TO", "to", 1 },
};
static const struct { const char *name; enum node_kind kind; int op; } date_keys[] = {
	{ "BEFORE", N_DATE, D_BEFORE }, { "ON", N_DATE, D_ON }, { "SINCE", N_DATE, D_SINCE },
	{ "SENTBEFORE", N_SENTDATE, D_BEFORE }, { "SENTON", N_SENTDATE, D_ON },
	{ "SENTSINCE", N_SENTDATE, D_SINCE },
};

static struct node *
negate(struct node *k)
{
	struct node *n = node_new(N_NOT);
	if (n == NULL || add_kid(n, k) != 0) {
		node_free(n);
		node_free(k);
		return NULL;
	}
	return n;
}

static struct node *
parse_key(struct parser *ps, const struct imap_arg *args, size_t n, size_t *i, int depth)
{
	if (depth > SEARCH_MAX_DEPTH) {
		fail(ps, "%s", "Search query too deeply nested");
		return NULL;
	}
	if (*i >= n) {
		fail(ps, "%s", "Missing argument");
		return NULL;
	}
	const struct imap_arg *a = &args[(*i)++];
	if (a->type == IMAP_ARG_LIST)
		return parse_all(ps, a->list, a->n, depth + 1);
	if (a->type != IMAP_ARG_ATOM) {
		fail(ps, "Unknown argument %s", arg_text(a));
		return NULL;
	}
	const char *k = a->s;
	struct node *nd = NULL;
	const struct imap_arg *s;

	if (strcasecmp(k, "ALL") == 0)
		return node_new(N_ALL);
	for (size_t f = 0; f < sizeof flag_keys / sizeof *flag_keys; f++) {
		if (strcasecmp(k, flag_keys[f].name) == 0) {
			if ((nd = node_new(N_FLAG)) == NULL)
				goto oom;
			nd->mask = flag_keys[f].mask;
			return flag_keys[f].set ? nd : negate(nd);
		}
	}
	if (strcasecmp(k, "NEW") == 0) {
		/* RECENT UNSEEN */
		struct node *and = node_new(N_AND), *r = node_new(N_FLAG), *seen = node_new(N_FLAG);
		if (and == NULL || r == NULL || seen == NULL) {
			node_free(and); node_free(r); node_free(seen);
			goto oom;
		}
		r->mask = PT_F_RECENT;
		seen->mask = PT_F_SEEN;
		struct node *unseen = negate(seen);
		if (unseen == NULL || add_kid(and, r) != 0) {
			node_free(and); node_free(r); node_free(unseen);
			goto oom;
		}
		if (add_kid(and, unseen) != 0) {
			node_free(and); node_free(unseen);
			goto oom;
		}
		return and;
	}
	if (strcasecmp(k, "KEYWORD") == 0 || strcasecmp(k, "UNKEYWORD") == 0) {
		if ((s = take_string(ps, args, n, i)) == NULL)
			return NULL;
		if ((nd = node_new(N_KEYWORD)) == NULL || (nd->str = dup_mem(s->s, s->len)) == NULL)
			goto oom;
		return k[0] == 'K' || k[0] == 'k' ? nd : negate(nd);
	}
	for (size_t h = 0; h < sizeof header_keys / sizeof *header_keys; h++) {
		if (strcasecmp(k, header_keys[h].name) == 0) {
			if ((s = take_string(ps, args, n, i)) == NULL)
				return NULL;
			if ((nd = node_new(N_HEADER)) == NULL
			    || (nd->field = dup_mem(header_keys[h].field, strlen(header_keys[h].field))) == NULL
			    || (nd->str = dup_mem(s->s, s->len)) == NULL)
				goto oom;
			nd->slen = s->len;
			nd->addr = header_keys[h].addr;
			nd->cached = pt_header_cached(nd->field, strlen(nd->field));
			nd->alnum = s->len > 0;
			for (size_t c = 0; c < s->len; c++)
				if (!((s->s[c] >= 'a' && s->s[c] <= 'z') || (s->s[c] >= 'A' && s->s[c] <= 'Z') ||
				      (s->s[c] >= '0' && s->s[c] <= '9')))
					nd->alnum = 0;
			needle_prepare(nd);
			return nd;
		}
	}
	if (strcasecmp(k, "HEADER") == 0) {
		const struct imap_arg *f;
		if ((f = take_string(ps, args, n, i)) == NULL || (s = take_string(ps, args, n, i)) == NULL)
			return NULL;
		if ((nd = node_new(N_HEADER)) == NULL || (nd->field = dup_mem(f->s, f->len)) == NULL
		    || (nd->str = dup_mem(s->s, s->len)) == NULL)
			goto oom;
		nd->slen = s->len;
		nd->cached = pt_header_cached(f->s, f->len);
		needle_prepare(nd);
		return nd;
	}
	if (strcasecmp(k, "BODY") == 0 || strcasecmp(k, "TEXT") == 0) {
		if ((s = take_string(ps, args, n, i)) == NULL)
			return NULL;
		if ((nd = node_new(strcasecmp(k, "BODY") == 0 ? N_BODY : N_TEXT)) == NULL
		    || (nd->str = dup_mem(s->s, s->len)) == NULL)
			goto oom;
		nd->slen = s->len;
		needle_prepare(nd);
		return nd;
	}
	for (size_t d = 0; d < sizeof date_keys / sizeof *date_keys; d++) {
		if (strcasecmp(k, date_keys[d].name) == 0) {
			time_t t;
			if ((s = take_string(ps, args, n, i)) == NULL)
				return NULL;
			if (imap_date_parse(s->s, s->len, &t) != 0) {
				fail(ps, "Invalid search date parameter: %s", s->s);
				return NULL;
			}
			if ((nd = node_new(date_keys[d].kind)) == NULL)
				goto oom;
			nd->day = (long)(t / 86400);
			nd->date_op = date_keys[d].op;
			return nd;
		}
	}
	if (strcasecmp(k, "LARGER") == 0 || strcasecmp(k, "SMALLER") == 0) {
		if ((s = take_string(ps, args, n, i)) == NULL)
			return NULL;
		uint64_t v = 0;
		int ok = s->len > 0 && s->len <= 19;
		for (size_t c = 0; ok && c < s->len; c++) {
			ok = s->s[c] >= '0' && s->s[c] <= '9';
			v = v * 10 + (uint64_t)(s->s[c] - '0');
		}
		if (!ok) {
			fail(ps, "Invalid search number parameter: %s", s->s);
			return NULL;
		}
		if ((nd = node_new(k[0] == 'L' || k[0] == 'l' ? N_LARGER : N_SMALLER)) == NULL)
			goto oom;
		nd->num = v;
		return nd;
	}
	if (strcasecmp(k, "MODSEQ") == 0) {
		/* MODSEQ ["/flags/\\Seen" priv|shared|all] n: every flag's
		 * mod-sequence is the message's here. */
		if (*i + 1 < n && args[*i].type != IMAP_ARG_ATOM) {
			const struct imap_arg *name = &args[(*i)++];
			const struct imap_arg *type = &args[(*i)++];
			if (!imap_arg_is_string(name) || strncasecmp(name->s, "/flags/", 7) != 0 ||
			    type->type != IMAP_ARG_ATOM || (strcasecmp(type->s, "priv") != 0 &&
			    strcasecmp(type->s, "shared") != 0 && strcasecmp(type->s, "all") != 0)) {
				fail(ps, "%s", "Invalid MODSEQ entry");
				return NULL;
			}
		}
		if ((s = take_string(ps, args, n, i)) == NULL)
			return NULL;
		uint64_t v = 0;
		int ok = s->type == IMAP_ARG_ATOM && s->len > 0 && s->len <= 19;
		for (size_t c = 0; ok && c < s->len; c++) {
			ok = s->s[c] >= '0' && s->s[c] <= '9';
			v = v * 10 + (uint64_t)(s->s[c] - '0');
		}
		if (!ok || v > 0x7fffffffffffffffull) {
			fail(ps, "%s", "Invalid MODSEQ value");
			return NULL;
		}
		if ((nd = node_new(N_MODSEQ)) == NULL)
			goto oom;
		nd->num = v;
		return nd;
	}
	if (strcasecmp(k, "NOT") == 0) {
		struct node *c = parse_key(ps, args, n, i, depth + 1);
		if (c == NULL)
			return NULL;
		if ((nd = negate(c)) == NULL)
			goto oom;
		return nd;
	}
	if (strcasecmp(k, "OR") == 0) {
		struct node *x = parse_key(ps, args, n, i, depth + 1);
		if (x == NULL)
			return NULL;
		struct node *y = parse_key(ps, args, n, i, depth + 1);
		if (y == NULL) {
			node_free(x);
			return NULL;
		}
		if ((nd = node_new(N_OR)) == NULL || add_kid(nd, x) != 0) {
			node_free(x);
			node_free(y);
			goto oom;
		}
		if (add_kid(nd, y) != 0) {
			node_free(y);
			goto oom;
		}
		return nd;
	}
	if (strcasecmp(k, "UID") == 0) {
		if (*i >= n || args[*i].type != IMAP_ARG_ATOM) {
			fail(ps, "%s", "Missing argument");
			return NULL;
		}
		s = &args[(*i)++];
		if ((nd = node_new(s->len == 1 && s->s[0] == '$' ? N_SAVED : N_UID)) == NULL)
			goto oom;
		if (nd->kind == N_SAVED)
			return nd;
		if (imap_seqset_parse(s->s, s->len, &nd->set) != 0) {
			node_free(nd);
			fail(ps, "Invalid uidset: %s", s->s);
			return NULL;
		}
		return nd;
	}
	if (k[0] == '$' && k[1] == 0) {
		if ((nd = node_new(N_SAVED)) == NULL)
			goto oom;
		return nd;
	}
	if ((k[0] >= '0' && k[0] <= '9') || k[0] == '*') {
		if ((nd = node_new(N_SEQ)) == NULL)
			goto oom;
		if (imap_seqset_parse(k, a->len, &nd->set) == 0)
			return nd;
		node_free(nd);
		nd = NULL;
	}
	fail(ps, "Unknown argument %s", k);
	return NULL;
oom:
	node_free(nd);
	fail(ps, "%s", "Out of memory");
	return NULL;
}

struct imap_search *
imap_search_parse(const struct imap_arg *args, size_t n, char *err, size_t errlen)
{
	struct parser ps = { err, errlen };
	if (errlen > 0)
		err[0] = '\0';
	struct imap_search *s = calloc(1, sizeof *s);
	if (s == NULL) {
		fail(&ps, "%s", "Out of memory");
		return NULL;
	}
	if ((s->root = parse_all(&ps, args, n, 0)) == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

void
imap_search_free(struct imap_search *s)
{
	if (s == NULL)
		return;
	node_free(s->root);
	free(s);
}

static int
node_needs_text(const struct node *n)
{
	if (n->kind == N_HEADER || n->kind == N_BODY || n->kind == N_TEXT || n->kind == N_SENTDATE)
		return 1;
	for (size_t i = 0; i < n->nkids; i++)
		if (node_needs_text(n->kids[i]))
			return 1;
	return 0;
}

static int
node_has_modseq(const struct node *n)
{
	if (n->kind == N_MODSEQ)
		return 1;
	for (size_t i = 0; i < n->nkids; i++)
		if (node_has_modseq(n->kids[i]))
			return 1;
	return 0;
}

int
imap_search_has_modseq(const struct imap_search *s)
{
	return node_has_modseq(s->root);
}

static int
all_ascii(const char *p, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		if (w & 0x8080808080808080ull)
			return 0;
	}
	for (; i < n; i++)
		if ((unsigned char)p[i] & 0x80)
			return 0;
	return 1;
}

static int
node_msgid(const struct node *n, const char **key, size_t *len)
{
	if (n->kind == N_HEADER && !n->addr && strcasecmp(n->field, "message-id") == 0 && n->slen >= 2 &&
	    n->str[0] == '<' && n->str[n->slen - 1] == '>' && memchr(n->str, '>', n->slen - 1) == NULL &&
	    all_ascii(n->str, n->slen)) {
		*key = n->str;
		*len = n->slen;
		return 1;
	}
	if (n->kind != N_AND)
		return 0;
	for (size_t i = 0; i < n->nkids; i++)
		if (node_msgid(n->kids[i], key, len))
			return 1;
	return 0;
}

int
imap_search_msgid(const struct imap_search *s, const char **key, size_t *len)
{
	return node_msgid(s->root, key, len);
}

int
imap_search_needs_text(const struct imap_search *s)
{
	return node_needs_text(s->root);
}

/* ---- evaluation ---- */

struct match_ctx {
	const struct imap_search_env *env;
	const struct imap_search_msg *msg;
	const struct imap_msg *m;
	int loaded;
	struct pt_strbuf body;   /* decoded bodies, once */
	int body_ready;
	int body_ascii;          /* -1 not known yet, else all_ascii(body) */
	/* The cached fields as a message of one header (load_header). */
	int hloaded;
	struct imap_part hpart;
	struct imap_msg hmsg;
};

static const struct imap_msg *ctx_msg(struct match_ctx *c);

/* The message to read cached fields from: the cached header section when
 * the store has it, else the whole message. */
static const struct imap_msg *
ctx_header(struct match_ctx *c)
{
	if (!c->hloaded) {
		const char *h;
		size_t len;
		c->hloaded = -1;
		if (c->msg->load_header != NULL && c->msg->load_header(c->msg->arg, &h, &len) == 1) {
			memset(&c->hpart, 0, sizeof c->hpart);
			c->hpart.hdr_len = len;
			c->hpart.body_off = len;
			c->hpart.child = c->hpart.next = -1;
			c->hmsg.data = h;
			c->hmsg.len = len;
			c->hmsg.parts = &c->hpart;
			c->hmsg.nparts = c->hmsg.cap = 1;
			c->hloaded = 1;
		}
	}
	return c->hloaded == 1 ? &c->hmsg : ctx_msg(c);
}

static const struct imap_msg *
ctx_msg(struct match_ctx *c)
{
	if (!c->loaded) {
		c->loaded = 1;
		c->m = c->msg->load != NULL ? c->msg->load(c->msg->arg) : NULL;
	}
	return c->m;
}

static int
fold(int ch)
{
	return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
}

/* ASCII folding as a table, and the Horspool shifts of the last needle
 * (the same needle comes once per message of the folder). */
static unsigned char fold_tab[256];
static char hs_needle[256];
static size_t hs_len;
static size_t hs_shift[256];

static void
horspool_prepare(const char *needle, size_t nlen)
{
	if (fold_tab['A'] == 0)
		for (int c = 0; c < 256; c++)
			fold_tab[c] = (unsigned char)fold(c);
	/* Kept by content (a later command's string may lie at the same
	 * address); a longer needle is prepared each time. */
	if (hs_len == nlen && memcmp(hs_needle, needle, nlen) == 0)
		return;
	for (int c = 0; c < 256; c++)
		hs_shift[c] = nlen;
	for (size_t i = 0; i + 1 < nlen; i++)
		hs_shift[fold_tab[(unsigned char)needle[i]]] = nlen - 1 - i;
	hs_len = 0;
	if (nlen <= sizeof hs_needle) {
		memcpy(hs_needle, needle, nlen);
		hs_len = nlen;
	}
}

/* needle (3 octets or more) in hay, ASCII case folded, by Horspool (it
 * skips up to the needle's length per step: SEARCH BODY's no-hit scan of
 * a folder looked at every octet twice): 1 or 0; -1 once it has compared
 * more than a few times hay's length, so that a hostile needle ("b" and
 * a's over a's) is handed to the linear scan. */
static int
contains_ascii(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
	horspool_prepare(needle, nlen);
	const unsigned char *h = (const unsigned char *)hay, *nd = (const unsigned char *)needle;
	unsigned char last = fold_tab[nd[nlen - 1]];
	size_t budget = 4 * hlen + 64, work = 0;
	for (size_t pos = 0; pos + nlen <= hlen;) {
		unsigned char c = fold_tab[h[pos + nlen - 1]];
		if (c == last) {
			size_t k = nlen - 1;
			while (k > 0 && fold_tab[h[pos + k - 1]] == fold_tab[nd[k - 1]])
				k--;
			if (k == 0)
				return 1;
			work += nlen - k;
			if (work > budget)
				return -1;
		}
		pos += hs_shift[c];
	}
	return 0;
}

/* n's needle in hay by i;unicode-casemap, by its table built once. */
static int
casemap_in(const struct node *n, const char *hay, size_t hlen)
{
	return n->cm_ok ? pt_casemap_needle_in(&n->cm, hay, hlen) : pt_casemap_contains(hay, hlen, n->str, n->slen);
}

/* n's needle in hay by i;unicode-casemap (RFC 5051, I18NLEVEL=1); an
 * empty needle is found. An ASCII needle found ASCII-folded is found
 * under the casemap too, and over ASCII text the two agree: only a miss
 * in text with other characters (a ligature "fi", an "A" inside
 * "\u00c5") needs the casemap's own scan. The casemap's scan (KMP,
 * linear) also serves a needle too short for Horspool and one Horspool
 * gave up on. hay_ascii, when not NULL, keeps all_ascii(hay) for the
 * next needle over the same text (-1: not known yet); text known not to
 * be ASCII goes to the casemap's scan at once, as a miss would. */
static int
contains_ci(const char *hay, size_t hlen, const struct node *n, int *hay_ascii)
{
	if (n->slen == 0)
		return 1;
	if (hay == NULL)
		return 0;
	if (n->slen < 3 || !n->ascii || (hay_ascii != NULL && *hay_ascii == 0))
		return casemap_in(n, hay, hlen);
	int r = hlen >= n->slen ? contains_ascii(hay, hlen, n->str, n->slen) : 0;
	if (r != 0)
		return r > 0 || casemap_in(n, hay, hlen);
	int ascii = hay_ascii != NULL && *hay_ascii > 0 ? 1 : all_ascii(hay, hlen);
	if (hay_ascii != NULL)
		*hay_ascii = ascii;
	return !ascii && casemap_in(n, hay, hlen);
}

/* Decoded text of every leaf part, and for text also embedded headers. */
static void
collect_bodies(const struct imap_msg *m, const struct imap_part *p, struct pt_strbuf *out, int depth)
{
	if (depth > IMAP_MSG_MAX_DEPTH * 2)
		return;
	if (p->kind == IMAP_PART_MULTI) {
		for (int c = p->child; c >= 0; c = m->parts[c].next)
			collect_bodies(m, &m->parts[c], out, depth + 1);
	} else if (p->kind == IMAP_PART_MESSAGE) {
		const struct imap_part *inner = &m->parts[p->child];
		imap_msg_decode_header(m->data + inner->hdr_off, inner->hdr_len, out);
		collect_bodies(m, inner, out, depth + 1);
	} else {
		imap_msg_decode_body(m, p, out);
		pt_strbuf_put(out, "\n", 1);
	}
}

static int
is_alnum(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* [s, s+n) in [hay, hay+hlen), ASCII case folded; hay short. Each
 * octet compared is taken from *budget: -1 when it runs out first. */
static int
has_run_ci(const char *hay, size_t hlen, const char *s, size_t n, size_t *budget)
{
	for (size_t i = 0; i + n <= hlen; i++) {
		size_t k = 0;
		while (k < n && fold((unsigned char)hay[i + k]) == fold((unsigned char)s[k]))
			k++;
		if (*budget <= k + 1)
			return -1;
		*budget -= k + 1;
		if (k == n)
			return 1;
	}
	return 0;
}

/* FROM/TO/CC/BCC compare the address text imap_msg_address_text makes,
 * costly to make for every message of a folder. For a value of plain
 * atoms (letters, digits, "-_+", white space, "<>@."; no quotes,
 * comments, escapes, encoded words, lists or groups) that text is its
 * words in order with white space dropped or kept and separators added
 * between them (never letters or digits): each run of letters and digits
 * of the text lies within the value with its white space dropped, and so
 * does each such run of the needle if it is to match. 1 when one is not
 * there (no match), 0 when the full comparison must decide (also for a
 * needle without letters or digits). */
static int
addr_cannot_match(const char *v, size_t len, const struct node *n)
{
	char buf[512];
	size_t k = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)v[i];
		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
			continue;
		int ok = is_alnum(ch) || ch == '<' || ch == '>' || ch == '@' || ch == '.' || ch == '-' ||
		         ch == '_' || ch == '+';
		if (!ok || k == sizeof buf)
			return 0;
		buf[k++] = (char)ch;
	}
	if (n->alnum)
		return !contains_ci(buf, k, n, NULL);
	/* A bounded look (a needle of thousands of runs, "a a a ...", made it
	 * O(needle x buf) per field of every message): past it, the full
	 * comparison decides. A run longer than buf cannot be in it. */
	size_t budget = 4 * sizeof buf;
	for (size_t i = 0; i < n->slen;) {
		if (!is_alnum((unsigned char)n->str[i])) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < n->slen && is_alnum((unsigned char)n->str[j]))
			j++;
		int r = j - i > k ? 0 : has_run_ci(buf, k, n->str + i, j - i, &budget);
		if (r == 0)
			return 1;
		if (r < 0)
			return 0;
		i = j;
	}
	return 0;
}

static int
match_header(const struct imap_msg *m, const struct node *n)
{
	struct pt_hdr_iter it;
	struct pt_hdr_field f;
	const struct imap_part *root = &m->parts[0];
	pt_hdr_iter_init(&it, m->data + root->hdr_off, root->hdr_len, 0);
	while (pt_hdr_next(&it, &f)) {
		if (!pt_hdr_name_is(&f, n->field))
			continue;
		if (n->slen == 0)
			return 1;
		if (!n->addr) {
			/* One line and no encoded word: unfolding only trims and
			 * decoding copies, so compare in place (no copies: this
			 * runs once per message of the folder). */
			size_t a = 0, b = f.value_len;
			const char *v = f.value;
			while (a < b && (v[a] == ' ' || v[a] == '\t'))
				a++;
			while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
				b--;
			int plain = memchr(v + a, '\r', b - a) == NULL && memchr(v + a, '\n', b - a) == NULL;
			for (size_t k = a; plain && k + 1 < b; k++)
				plain = !(v[k] == '=' && v[k + 1] == '?');
			if (plain) {
				if (contains_ci(v + a, b - a, n, NULL))
					return 1;
				continue;
			}
		}
		if (n->addr && addr_cannot_match(f.value, f.value_len, n))
			continue;
		struct pt_strbuf raw = { 0 }, dec = { 0 };
		pt_hdr_unfold(f.value, f.value_len, &raw);
		if (n->addr && raw.len) {
			/* FROM etc. name addresses, not header text: comments and
			 * folding spaces inside one are no part of it (Dovecot
			 * compares the same way; HEADER FROM stays textual) */
			struct pt_strbuf t = { 0 };
			imap_msg_address_text(raw.p, raw.len, &t);
			pt_strbuf_free(&raw);
			raw = t;
		}
		imap_msg_decode_header(raw.p, raw.len, &dec);
		int hit = contains_ci(dec.p, dec.len, n, NULL);
		pt_strbuf_free(&raw);
		pt_strbuf_free(&dec);
		if (hit)
			return 1;
	}
	return 0;
}

/* The day number of t in a zone east of UTC by tz minutes. */
static long
local_day(time_t t, int tz)
{
	long long s = (long long)t + tz * 60LL;
	long long d = s / 86400;
	if (s % 86400 < 0)
		d--;
	return (long)d;
}

static int
date_cmp(long day, const struct node *n)
{
	switch (n->date_op) {
	case D_BEFORE: return day < n->day;
	case D_ON: return day == n->day;
	default: return day >= n->day;
	}
}

static int
eval(const struct node *n, struct match_ctx *c)
{
	const struct pt_msg_info *info = c->msg->info;
	const struct imap_msg *m;
	switch (n->kind) {
	case N_ALL:
		return 1;
	case N_AND:
		for (size_t i = 0; i < n->nkids; i++)
			if (!eval(n->kids[i], c))
				return 0;
		return 1;
	case N_OR:
		return eval(n->kids[0], c) || eval(n->kids[1], c);
	case N_NOT:
		return !eval(n->kids[0], c);
	case N_FLAG:
		return (info->flags & n->mask) == n->mask;
	case N_KEYWORD: {
		int bit = c->env->keyword_bit != NULL ? c->env->keyword_bit(c->env->arg, n->str) : -1;
		return bit >= 0 && bit < 64 && (info->keywords >> bit & 1u);
	}
	case N_MODSEQ:
		return info->modseq >= n->num;
	case N_LARGER:
		return info->size > n->num;
	case N_SMALLER:
		return info->size < n->num;
	case N_SEQ:
		return imap_seqset_contains(&n->set, c->msg->seq, c->env->max_seq);
	case N_UID:
		return imap_seqset_contains(&n->set, info->uid, c->env->max_uid);
	case N_SAVED:
		return c->env->saved != NULL && c->env->saved(c->env->arg, info->uid);
	case N_DATE:
		return date_cmp(local_day(info->internal_date, info->tz_minutes), n);
	case N_SENTDATE: {
		if ((m = ctx_header(c)) == NULL)
			return 0;
		struct pt_strbuf v = { 0 };
		time_t t;
		int tz, ok = imap_part_header(m, &m->parts[0], "date", &v)
		             && imap_rfc822_date_parse(v.p, v.len, &t, &tz) == 0;
		pt_strbuf_free(&v);
		return ok && date_cmp(local_day(t, tz), n);
	}
	case N_HEADER:
		if ((m = n->cached ? ctx_header(c) : ctx_msg(c)) == NULL)
			return 0;
		return match_header(m, n);
	case N_BODY:
	case N_TEXT:
		if ((m = ctx_msg(c)) == NULL)
			return 0;
		if (!c->body_ready) {
			collect_bodies(m, &m->parts[0], &c->body, 0);
			c->body_ready = 1;
		}
		if (contains_ci(c->body.p, c->body.len, n, &c->body_ascii))
			return 1;
		if (n->kind == N_TEXT) {
			struct pt_strbuf h = { 0 };
			imap_msg_decode_header(m->data + m->parts[0].hdr_off, m->parts[0].hdr_len, &h);
			int hit = contains_ci(h.p, h.len, n, NULL);
			pt_strbuf_free(&h);
			return hit;
		}
		return 0;
	}
	return 0;
}

int
imap_search_match(const struct imap_search *s, const struct imap_search_env *env,
                  const struct imap_search_msg *msg)
{
	struct match_ctx c = { .env = env, .msg = msg, .body_ascii = -1 };
	int r = eval(s->root, &c);
	pt_strbuf_free(&c.body);
	return r;
}
