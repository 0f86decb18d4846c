/* ENVELOPE (RFC 3501 §7.4.2): the header fields a client lists mail by,
 * with RFC 5322 address lists split into (name adl mailbox host) and
 * groups as start/end markers. Text stays as sent (encoded words too). */
#include <string.h>

#include "imap_msg_int.h"

/* ---- address lists ---- */

enum tok_type { T_END, T_WORD, T_QUOTED, T_SPECIAL };
struct tok {
	enum tok_type type;
	char c;                 /* T_SPECIAL */
	const char *s;          /* T_WORD: raw; T_QUOTED: raw inside the quotes */
	size_t len;
	int space_before;
};

struct lexer {
	const char *s;
	size_t len, p;
	const char *comment;    /* the last comment seen, for "addr (Name)" */
	size_t comment_len;
};

static int
is_word_char(unsigned char c)
{
	if (c <= ' ' || c == 0x7f)
		return 0;
	switch (c) {
	case '(': case ')': case '<': case '>': case ',': case ';': case ':': case '@':
	case '"': case '[': case ']':
		return 0;
	default:
		return 1;
	}
}

static struct tok
next_tok(struct lexer *lx)
{
	struct tok t = { 0 };
	for (;;) {
		while (lx->p < lx->len && (lx->s[lx->p] == ' ' || lx->s[lx->p] == '\t'
		       || lx->s[lx->p] == '\r' || lx->s[lx->p] == '\n')) {
			lx->p++;
			t.space_before = 1;
		}
		if (lx->p >= lx->len || lx->s[lx->p] != '(')
			break;
		size_t start = ++lx->p;
		int depth = 1;
		while (lx->p < lx->len) {
			char c = lx->s[lx->p];
			if (c == '\\' && lx->p + 1 < lx->len)
				lx->p++;
			else if (c == '(')
				depth++;
			else if (c == ')' && --depth == 0)
				break;
			lx->p++;
		}
		lx->comment = lx->s + start;
		lx->comment_len = lx->p - start;
		if (lx->p < lx->len)
			lx->p++;
		t.space_before = 1;
	}
	if (lx->p >= lx->len) {
		t.type = T_END;
		return t;
	}
	char c = lx->s[lx->p];
	if (c == '"') {
		size_t start = ++lx->p;
		while (lx->p < lx->len && lx->s[lx->p] != '"') {
			if (lx->s[lx->p] == '\\' && lx->p + 1 < lx->len)
				lx->p++;
			lx->p++;
		}
		t.type = T_QUOTED;
		t.s = lx->s + start;
		t.len = lx->p - start;
		if (lx->p < lx->len)
			lx->p++;
		return t;
	}
	if (c == '[') {
		/* a domain literal is one word */
		size_t start = lx->p;
		while (lx->p < lx->len && lx->s[lx->p] != ']')
			lx->p++;
		if (lx->p < lx->len)
			lx->p++;
		t.type = T_WORD;
		t.s = lx->s + start;
		t.len = lx->p - start;
		return t;
	}
	if (!is_word_char((unsigned char)c)) {
		lx->p++;
		t.type = T_SPECIAL;
		t.c = c;
		return t;
	}
	size_t start = lx->p;
	while (lx->p < lx->len && is_word_char((unsigned char)lx->s[lx->p]))
		lx->p++;
	t.type = T_WORD;
	t.s = lx->s + start;
	t.len = lx->p - start;
	return t;
}

static void
put_unquoted(struct pt_strbuf *b, const struct tok *t)
{
	if (t->type != T_QUOTED) {
		pt_strbuf_put(b, t->s, t->len);
		return;
	}
	size_t run = 0;
	for (size_t i = 0; i < t->len; i++) {
		if (t->s[i] == '\\' && i + 1 < t->len) {
			pt_strbuf_put(b, t->s + run, i - run);
			run = ++i;
		}
	}
	pt_strbuf_put(b, t->s + run, t->len - run);
}

struct addr {
	struct pt_strbuf name, adl, mailbox, host;
	int has_name;
};

static void
put_addr(struct pt_strbuf *out, struct addr *a)
{
	pt_strbuf_put(out, "(", 1);
	imap_msg_put_nstring(out, a->has_name && a->name.len ? a->name.p : NULL, a->name.len);
	pt_strbuf_put(out, " ", 1);
	imap_msg_put_nstring(out, a->adl.len ? a->adl.p : NULL, a->adl.len);
	pt_strbuf_put(out, " ", 1);
	/* an empty part would read as a group marker: fill it as Dovecot does */
	if (a->mailbox.len)
		imap_msg_put_nstring(out, a->mailbox.p, a->mailbox.len);
	else
		pt_strbuf_puts(out, "\"MISSING_MAILBOX\"");
	pt_strbuf_put(out, " ", 1);
	if (a->host.len)
		imap_msg_put_nstring(out, a->host.p, a->host.len);
	else
		pt_strbuf_puts(out, "\"MISSING_DOMAIN\"");
	pt_strbuf_put(out, ")", 1);
}

/* Words up to '@', '>' or a list separator, glued (dot-atoms, quoted local parts). */
static struct tok
glue_words(struct lexer *lx, struct tok t, struct pt_strbuf *b, const char *stops)
{
	while (t.type == T_WORD || t.type == T_QUOTED
	       || (t.type == T_SPECIAL && strchr(stops, t.c) == NULL)) {
		if (t.type == T_SPECIAL)
			pt_strbuf_put(b, &t.c, 1);
		else
			put_unquoted(b, &t);
		t = next_tok(lx);
	}
	return t;
}

/* "<[@route:]local@domain>" after the '<'; returns the token after '>'. */
static struct tok
angle_addr(struct lexer *lx, struct addr *a)
{
	struct tok t = next_tok(lx);
	if (t.type == T_SPECIAL && t.c == '@') {
		/* obs-route: "@a,@b:" */
		pt_strbuf_put(&a->adl, "@", 1);
		t = next_tok(lx);
		while (t.type != T_END && !(t.type == T_SPECIAL && (t.c == ':' || t.c == '>'))) {
			if (t.type == T_SPECIAL)
				pt_strbuf_put(&a->adl, &t.c, 1);
			else
				put_unquoted(&a->adl, &t);
			t = next_tok(lx);
		}
		if (t.type == T_SPECIAL && t.c == ':')
			t = next_tok(lx);
	}
	t = glue_words(lx, t, &a->mailbox, "@>,;:<");
	if (t.type == T_SPECIAL && t.c == '@')
		t = glue_words(lx, next_tok(lx), &a->host, ">,;:<@");
	while (t.type != T_END && !(t.type == T_SPECIAL && t.c == '>'))
		t = next_tok(lx);
	if (t.type != T_END)
		t = next_tok(lx);
	return t;
}

/* What an address list is turned into: the ENVELOPE form or the plain
 * text SEARCH compares against. group: a group's start (name) or, with
 * name NULL, its end. */
struct addr_sink {
	void (*addr)(struct addr_sink *k, struct addr *a);
	void (*group)(struct addr_sink *k, const char *name, size_t len);
	struct pt_strbuf *out;
	int any;
};

/* walk_address_list's buffers, emptied (not freed) between addresses
 * and calls: FETCH ENVELOPE of a 100k folder walks some 400 000 lists,
 * and six mallocs and frees an address cost more than the parse. One
 * walk at a time (no sink walks again). */
static struct pt_strbuf w_phrase, w_local;
static struct addr w_addr;

static void
scratch_reset(struct pt_strbuf *b)
{
	/* A buffer a huge value grew is let go, not kept. */
	if (b->cap > 65536) {
		pt_strbuf_free(b);
		memset(b, 0, sizeof *b);
	}
	b->len = 0;
	b->oom = 0;
	if (b->p != NULL)
		b->p[0] = '\0';
}

static void
addr_clear(struct addr *a)
{
	scratch_reset(&a->name);
	scratch_reset(&a->adl);
	scratch_reset(&a->mailbox);
	scratch_reset(&a->host);
	a->has_name = 0;
}

static void
walk_address_list(struct addr_sink *k, const char *v, size_t len)
{
	struct lexer lx = { v, len, 0, NULL, 0 };
	struct tok t = next_tok(&lx);
	int in_group = 0;
	size_t guard = 0;
	struct addr a = w_addr;
	memset(&w_addr, 0, sizeof w_addr);   /* held by this walk */
	addr_clear(&a);
	while (t.type != T_END && guard++ < len + 1) {
		if (t.type == T_SPECIAL && t.c == ',') {
			t = next_tok(&lx);
			continue;
		}
		if (t.type == T_SPECIAL && t.c == ';') {
			if (in_group) {
				k->group(k, NULL, 0);
				in_group = 0;
			}
			t = next_tok(&lx);
			continue;
		}
		/* a phrase, or the local part of a bare addr-spec */
		struct pt_strbuf phrase = w_phrase, local = w_local;
		memset(&w_phrase, 0, sizeof w_phrase);
		memset(&w_local, 0, sizeof w_local);
		scratch_reset(&phrase);
		scratch_reset(&local);
		lx.comment = NULL;
		int words = 0;
		while (t.type == T_WORD || t.type == T_QUOTED
		       || (t.type == T_SPECIAL && strchr("<>:;,@", t.c) == NULL)) {
			if (t.type == T_SPECIAL) {
				pt_strbuf_put(&local, &t.c, 1);
				pt_strbuf_put(&phrase, &t.c, 1);
			} else {
				if (words && t.space_before)
					pt_strbuf_put(&phrase, " ", 1);
				put_unquoted(&phrase, &t);
				put_unquoted(&local, &t);
			}
			words++;
			t = next_tok(&lx);
		}
		if (t.type == T_SPECIAL && t.c == ':' && !in_group) {
			k->group(k, phrase.len ? phrase.p : "", phrase.len);
			in_group = 1;
			t = next_tok(&lx);
		} else if (t.type == T_SPECIAL && t.c == '<') {
			if (phrase.len) {
				pt_strbuf_put(&a.name, phrase.p, phrase.len);
				a.has_name = 1;
			}
			t = angle_addr(&lx, &a);
			k->addr(k, &a);
		} else if (words > 0 || (t.type == T_SPECIAL && t.c == '@')) {
			pt_strbuf_put(&a.mailbox, local.p ? local.p : "", local.len);
			if (t.type == T_SPECIAL && t.c == '@')
				t = glue_words(&lx, next_tok(&lx), &a.host, "<>,;:@");
			if (lx.comment != NULL) {
				/* "user@host (Full Name)": the old way of naming */
				pt_hdr_unfold(lx.comment, lx.comment_len, &a.name);
				a.has_name = 1;
			}
			k->addr(k, &a);
		} else {
			t = next_tok(&lx); /* a stray special: skipped */
		}
		w_phrase = phrase;
		w_local = local;
		addr_clear(&a);
	}
	w_addr = a;
	if (in_group)
		k->group(k, NULL, 0);
}

static void
env_open(struct addr_sink *k)
{
	if (!k->any)
		pt_strbuf_put(k->out, "(", 1);
	k->any = 1;
}

static void
env_addr(struct addr_sink *k, struct addr *a)
{
	env_open(k);
	put_addr(k->out, a);
}

static void
env_group(struct addr_sink *k, const char *name, size_t len)
{
	env_open(k);
	if (name == NULL) {
		pt_strbuf_puts(k->out, "(NIL NIL NIL NIL)");
		return;
	}
	pt_strbuf_puts(k->out, "(NIL NIL ");
	imap_msg_put_nstring(k->out, name, len);
	pt_strbuf_puts(k->out, " NIL)");
}

/* Append the ENVELOPE address list for a header value, or NIL. */
static void
put_address_list(struct pt_strbuf *out, const char *v, size_t len)
{
	struct addr_sink k = { env_addr, env_group, out, 0 };
	walk_address_list(&k, v, len);
	pt_strbuf_puts(out, k.any ? ")" : "NIL");
}

static void
text_sep(struct addr_sink *k)
{
	if (k->any)
		pt_strbuf_put(k->out, ", ", 2);
	k->any = 1;
}

static void
text_addr(struct addr_sink *k, struct addr *a)
{
	text_sep(k);
	if (a->has_name && a->name.len) {
		pt_strbuf_put(k->out, a->name.p, a->name.len);
		pt_strbuf_put(k->out, " ", 1);
	}
	pt_strbuf_put(k->out, "<", 1);
	if (a->mailbox.len)
		pt_strbuf_put(k->out, a->mailbox.p, a->mailbox.len);
	if (a->host.len) {
		pt_strbuf_put(k->out, "@", 1);
		pt_strbuf_put(k->out, a->host.p, a->host.len);
	}
	pt_strbuf_put(k->out, ">", 1);
}

static void
text_group(struct addr_sink *k, const char *name, size_t len)
{
	if (name == NULL) {
		pt_strbuf_put(k->out, ";", 1);
		return;
	}
	text_sep(k);
	k->any = 0; /* the first member follows the ':' without a comma */
	pt_strbuf_put(k->out, name, len);
	pt_strbuf_put(k->out, ": ", 2);
}

void
imap_msg_address_text(const char *v, size_t len, struct pt_strbuf *out)
{
	struct addr_sink k = { text_addr, text_group, out, 0 };
	walk_address_list(&k, v, len);
}

/* SORT keys (RFC 5256 FROM/TO/CC, RFC 5957 DISPLAYFROM/DISPLAYTO): the
 * first address of the list. */
struct first_sink {
	struct addr_sink k;
	struct pt_strbuf *mailbox, *display;
	int done;
};

static void
first_addr(struct addr_sink *k, struct addr *a)
{
	struct first_sink *f = (struct first_sink *)k;

	if (f->done)
		return;
	f->done = 1;
	if (a->mailbox.len)
		pt_strbuf_put(f->mailbox, a->mailbox.p, a->mailbox.len);
	if (f->display == NULL)
		return;   /* not asked for (SORT FROM: no decoding of the name) */
	if (a->has_name && a->name.len) {
		imap_msg_decode_header(a->name.p, a->name.len, f->display);
	} else {
		if (a->mailbox.len)
			pt_strbuf_put(f->display, a->mailbox.p, a->mailbox.len);
		if (a->host.len) {
			pt_strbuf_put(f->display, "@", 1);
			pt_strbuf_put(f->display, a->host.p, a->host.len);
		}
	}
}

static void
first_group(struct addr_sink *k, const char *name, size_t len)
{
	(void)k, (void)name, (void)len;
}

void
imap_msg_first_address(const char *v, size_t len, struct pt_strbuf *mailbox, struct pt_strbuf *display)
{
	struct first_sink f = { { first_addr, first_group, NULL, 0 }, mailbox, display, 0 };

	walk_address_list(&f.k, v, len);
}

/* ---- the envelope ---- */

enum { E_DATE, E_SUBJECT, E_FROM, E_SENDER, E_REPLY_TO, E_TO, E_CC, E_BCC,
	E_IN_REPLY_TO, E_MESSAGE_ID, E_COUNT };
static const char *const env_names[E_COUNT] = { "date", "subject", "from", "sender",
	"reply-to", "to", "cc", "bcc", "in-reply-to", "message-id" };

static int
value_blank(const struct pt_hdr_field *f)
{
	for (size_t i = 0; i < f->value_len; i++) {
		char c = f->value[i];
		if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
			return 0;
	}
	return 1;
}

/* Which envelope field a header field is (E_COUNT: none): by length
 * first, one compare at most, not ten per field. */
static int
env_field(const struct pt_hdr_field *f)
{
	int c = (unsigned char)f->name[0] | 0x20, i;
	switch (f->name_len) {
	case 2: i = c == 't' ? E_TO : c == 'c' ? E_CC : E_COUNT; break;
	case 3: i = E_BCC; break;
	case 4: i = c == 'f' ? E_FROM : E_DATE; break;
	case 6: i = E_SENDER; break;
	case 7: i = E_SUBJECT; break;
	case 8: i = E_REPLY_TO; break;
	case 10: i = E_MESSAGE_ID; break;
	case 11: i = E_IN_REPLY_TO; break;
	default: i = E_COUNT; break;
	}
	return i < E_COUNT && pt_hdr_name_is(f, env_names[i]) ? i : E_COUNT;
}

/* The unfolded value, reused across fields and messages. */
static struct pt_strbuf env_value;

void
imap_msg_envelope_part(const struct imap_msg *m, const struct imap_part *p, struct pt_strbuf *out)
{
	struct pt_hdr_field found[E_COUNT];
	int have[E_COUNT] = { 0 };
	struct pt_hdr_iter it;
	struct pt_hdr_field f;
	pt_hdr_iter_init(&it, m->data + p->hdr_off, p->hdr_len, 0);
	while (pt_hdr_next(&it, &f)) {
		int i = env_field(&f);
		if (i == E_COUNT || have[i])
			continue;
		/* an empty Sender:/Reply-To: names nobody, so from stands in as
		 * if it were missing (Dovecot agrees) */
		if ((i == E_SENDER || i == E_REPLY_TO) && value_blank(&f))
			continue;
		found[i] = f;
		have[i] = 1;
	}
	pt_strbuf_put(out, "(", 1);
	for (int i = 0; i < E_COUNT; i++) {
		if (i > 0)
			pt_strbuf_put(out, " ", 1);
		int src = i;
		/* RFC 3501: sender and reply-to default to from */
		if ((i == E_SENDER || i == E_REPLY_TO) && !have[i])
			src = E_FROM;
		if (!have[src]) {
			pt_strbuf_put(out, "NIL", 3);
			continue;
		}
		struct pt_strbuf v = env_value;
		memset(&env_value, 0, sizeof env_value);
		scratch_reset(&v);
		pt_hdr_unfold(found[src].value, found[src].value_len, &v);
		if (i >= E_FROM && i <= E_BCC)
			put_address_list(out, v.p, v.len);
		else
			imap_msg_put_nstring(out, v.p, v.len);
		if (v.oom)
			out->oom = 1;
		env_value = v;
	}
	pt_strbuf_put(out, ")", 1);
}

void
imap_msg_envelope(const struct imap_msg *m, struct pt_strbuf *out)
{
	imap_msg_envelope_part(m, &m->parts[0], out);
}
