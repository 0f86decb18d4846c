/* Header address qualification (include/postern/addrlist.h). The field
 * value is cut into RFC 5322 lexical tokens (atoms, quoted strings,
 * comments, domain literals, specials, white space with folding); the
 * address list is then read from the tokens: mailboxes split at commas,
 * a group's name ends at its colon and the group at its semicolon, a
 * mailbox's address is the part in angle brackets when it has them (after
 * a source route's colon) or else the whole mailbox. Only an address that
 * reads as local-part [@ domain] is touched, and only by inserting text
 * after its last token, so comments and spacing stay where they were. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/addrlist.h"
#include "postern/config.h"
#include "postern/header.h"
#include "runtime.h"
#include "postern/strbuf.h"

enum tok_type { T_WS, T_ATOM, T_QUOTED, T_LITERAL, T_COMMENT, T_SPECIAL };

struct tok {
	enum tok_type type;
	char c;              /* T_SPECIAL: which */
	size_t s, e;         /* bytes [s, e) of the value */
};

struct toks {
	struct tok *v;
	size_t n, cap;
	int cut;             /* an unterminated quote, comment or literal ends the list */
};

static int
is_special(unsigned char c)
{
	return strchr("()<>[]:;@\\,.\"", c) != NULL && c != '\0';
}

static int
is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int
push(struct toks *t, enum tok_type type, char c, size_t s, size_t e)
{
	if (t->n == t->cap) {
		struct tok *v = pt_array_grow(t->v, &t->cap, sizeof *v, 32);
		if (v == NULL)
			return -1;
		t->v = v;
	}
	t->v[t->n++] = (struct tok){ type, c, s, e };
	return 0;
}

/* The end of a run delimited by close (with backslash escapes) starting
 * after its opener at i; nesting counts for comments. len when open. */
static size_t
delimited_end(const char *v, size_t len, size_t i, char open, char close)
{
	int depth = 1;
	while (i < len) {
		char c = v[i];
		if (c == '\\') {
			i += 2;
			continue;
		}
		i++;
		if (c == close && --depth == 0)
			return i;
		if (open && c == open)
			depth++;
	}
	return len + 1;
}

static int
tokenize(const char *v, size_t len, struct toks *t)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)v[i];
		size_t s = i;
		enum tok_type type;
		if (is_ws(c)) {
			while (i < len && is_ws((unsigned char)v[i]))
				i++;
			type = T_WS;
		} else if (c == '"' || c == '(' || c == '[') {
			size_t e = c == '"' ? delimited_end(v, len, i + 1, 0, '"')
			         : c == '(' ? delimited_end(v, len, i + 1, '(', ')')
			                    : delimited_end(v, len, i + 1, 0, ']');
			if (e > len) {
				t->cut = 1;
				return 0;
			}
			i = e;
			type = c == '"' ? T_QUOTED : c == '(' ? T_COMMENT : T_LITERAL;
		} else if (is_special(c)) {
			i++;
			type = T_SPECIAL;
		} else {
			while (i < len && !is_ws((unsigned char)v[i]) && !is_special((unsigned char)v[i]))
				i++;
			type = T_ATOM;
		}
		if (push(t, type, type == T_SPECIAL ? (char)c : 0, s, i) != 0)
			return -1;
	}
	return 0;
}

/* What an address needs: an insertion point and its text. */
struct edit {
	size_t at;
	int dot;             /* 1: ".domain", 0: "@origin" */
};

struct edits {
	struct edit *v;
	size_t n, cap;
};

static int
add_edit(struct edits *ed, size_t at, int dot)
{
	if (ed->n == ed->cap) {
		struct edit *v = pt_array_grow(ed->v, &ed->cap, sizeof *v, 8);
		if (v == NULL)
			return -1;
		ed->v = v;
	}
	ed->v[ed->n++] = (struct edit){ at, dot };
	return 0;
}

static int
is_spec(const struct tok *k, char c)
{
	return k->type == T_SPECIAL && k->c == c;
}

/* Tokens [s, e) are one address (addr-spec). Reads local-part [@ domain]
 * over the tokens that are neither white space nor comments, and notes
 * what it lacks. */
static int
qualify_addr(const struct toks *t, size_t s, size_t e, const struct pt_addr_qualify *q, struct edits *ed)
{
	enum { WORD, AFTER_WORD, DOMAIN, AFTER_DATOM, AFTER_LITERAL, BAD } st = WORD;
	size_t last = 0, datoms = 0;
	int any = 0;
	for (size_t i = s; i < e && st != BAD; i++) {
		const struct tok *k = &t->v[i];
		if (k->type == T_WS || k->type == T_COMMENT)
			continue;
		any = 1;
		last = k->e;
		switch (st) {
		case WORD:
			st = k->type == T_ATOM || k->type == T_QUOTED ? AFTER_WORD : BAD;
			break;
		case AFTER_WORD:
			st = is_spec(k, '.') ? WORD : is_spec(k, '@') ? DOMAIN : BAD;
			break;
		case DOMAIN:
			if (k->type == T_ATOM) {
				datoms++;
				st = AFTER_DATOM;
			} else {
				st = k->type == T_LITERAL && datoms == 0 ? AFTER_LITERAL : BAD;
			}
			break;
		case AFTER_DATOM:
			st = is_spec(k, '.') ? DOMAIN : BAD;
			break;
		default:
			st = BAD;
			break;
		}
	}
	if (!any)
		return 0;
	if (st == AFTER_WORD && q->origin && q->origin[0])
		return add_edit(ed, last, 0);
	if (st == AFTER_DATOM && datoms == 1 && q->domain && q->domain[0])
		return add_edit(ed, last, 1);
	return 0;
}

/* One mailbox, tokens [s, e): the angle-bracketed part when there is one
 * (angle_s..angle_e, a source route's "@a,@b:" dropped), else all. */
static int
qualify_mailbox(const struct toks *t, size_t s, size_t e, int angle, size_t as, size_t ae,
                const struct pt_addr_qualify *q, struct edits *ed)
{
	if (!angle)
		return qualify_addr(t, s, e, q, ed);
	for (size_t i = as; i < ae; i++)
		if (is_spec(&t->v[i], ':'))
			as = i + 1;
	return qualify_addr(t, as, ae, q, ed);
}

int
pt_addrlist_qualify(const char *value, size_t len, const struct pt_addr_qualify *q, struct pt_strbuf *out)
{
	struct toks t = { 0 };
	struct edits ed = { 0 };
	int rc = -1;
	if (tokenize(value, len, &t) != 0)
		goto done;
	size_t seg = 0, as = 0, ae = 0;
	int in_angle = 0, angle = 0, junk = 0;
	for (size_t i = 0; i <= t.n; i++) {
		/* The end of the value ends the last mailbox, unless a quote,
		 * comment or angle bracket was left open: then it is unread. */
		int end = i == t.n;
		if (end && (t.cut || in_angle))
			break;
		const struct tok *k = end ? NULL : &t.v[i];
		if (!end && k->type != T_SPECIAL)
			continue;
		if (!end && in_angle) {
			if (k->c == '>') {
				in_angle = 0;
				angle = 1;
				ae = i;
			} else if (k->c == '<') {
				junk = 1;
			}
			continue;
		}
		char c = end ? ',' : k->c;
		if (c == ',' || c == ';' || c == ':') {
			/* A colon outside angle brackets ends a group's name: what
			 * came before it is no address. */
			if (c != ':' && !junk && qualify_mailbox(&t, seg, i, angle, as, ae, q, &ed) != 0)
				goto done;
			seg = i + 1;
			angle = junk = 0;
		} else if (c == '<') {
			if (angle)
				junk = 1;
			in_angle = 1;
			as = i + 1;
		} else if (c == '>') {
			junk = 1;
		} else if (angle && c != '.') {
			/* Specials after "<...>" other than white space or comments
			 * make the mailbox unreadable ('.' is the obsolete
			 * "phrase." display names, harmless before the bracket). */
			junk = 1;
		}
	}
	size_t copied = 0;
	for (size_t i = 0; i < ed.n; i++) {
		pt_strbuf_put(out, value + copied, ed.v[i].at - copied);
		if (ed.v[i].dot) {
			pt_strbuf_put(out, ".", 1);
			pt_strbuf_puts(out, q->domain);
		} else {
			pt_strbuf_put(out, "@", 1);
			pt_strbuf_puts(out, q->origin);
		}
		copied = ed.v[i].at;
	}
	pt_strbuf_put(out, value + copied, len - copied);
	rc = out->oom ? -1 : (int)(ed.n > 0x7fffffff ? 0x7fffffff : ed.n);
done:
	free(t.v);
	free(ed.v);
	return rc;
}

static int
is_address_field(const struct pt_hdr_field *f)
{
	/* Postfix cleanup's address headers (the originator and recipient
	 * fields, and the old notification ones that name an address). */
	static const char *const names[] = { "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Apparently-To",
		"Errors-To", "Return-Receipt-To", "Disposition-Notification-To", NULL };
	const char *name = f->name;
	size_t n = f->name_len;
	/* Resent-From, Resent-To, ...: the same addresses, for a resend. */
	if (n > 7 && strncasecmp(name, "Resent-", 7) == 0) {
		name += 7;
		n -= 7;
	}
	for (int i = 0; names[i]; i++)
		if (strlen(names[i]) == n && strncasecmp(name, names[i], n) == 0)
			return 1;
	return 0;
}

int
pt_hdr_qualify(const char *msg, size_t len, const struct pt_addr_qualify *q, struct pt_strbuf *out)
{
	if ((!q->origin || !q->origin[0]) && (!q->domain || !q->domain[0]))
		return 0;
	struct pt_hdr_iter it;
	struct pt_hdr_field f;
	struct pt_strbuf val = { 0 };
	size_t copied = 0;
	int changed = 0, oom = 0;
	pt_hdr_iter_init(&it, msg, len, 1);
	while (pt_hdr_next(&it, &f)) {
		if (!is_address_field(&f))
			continue;
		val.len = 0;
		int n = pt_addrlist_qualify(f.value, f.value_len, q, &val);
		if (n < 0) {
			oom = 1;
			break;
		}
		if (n == 0)
			continue;
		size_t at = (size_t)(f.value - msg);
		pt_strbuf_put(out, msg + copied, at - copied);
		pt_strbuf_put(out, val.p, val.len);
		copied = at + f.value_len;
		changed = 1;
	}
	pt_strbuf_free(&val);
	if (oom)
		return -1;
	if (!changed)
		return 0;
	pt_strbuf_put(out, msg + copied, len - copied);
	return out->oom ? -1 : 1;
}

void
pt_addr_qualify_init(struct pt_addr_qualify *q, const struct pt_config *conf)
{
	q->origin = conf && pt_conf_bool(conf, "append_at_myorigin") ? pt_conf_str(conf, "myorigin") : NULL;
	q->domain = conf && pt_conf_bool(conf, "append_dot_mydomain") ? pt_conf_str(conf, "mydomain") : NULL;
}

int
pt_hdr_qualify_local(const char *msg, size_t len, struct pt_strbuf *out)
{
	struct pt_addr_qualify q;
	pt_addr_qualify_init(&q, pt_live_conf);
	return pt_hdr_qualify(msg, len, &q, out);
}
