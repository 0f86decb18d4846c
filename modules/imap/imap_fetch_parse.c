/* FETCH attribute parser (RFC 3501 §6.4.5): macros, simple attributes,
 * BODY[section]<partial> and BODY.PEEK, into the list imap_fetch.c renders. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_fetch.h"

/* A command line is bounded by the reader; this only bounds the per-item
 * section state (an imap_section is about 800 bytes). */
#define FETCH_ITEMS_MAX 128

static void
fetch_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int
name_is(const char *s, size_t len, const char *name)
{
	return strlen(name) == len && strncasecmp(s, name, len) == 0;
}

static struct imap_fetch_item *
req_add(struct imap_fetch_req *r, enum imap_fetch_kind kind)
{
	struct imap_fetch_item *it, *items;

	if (r->n >= FETCH_ITEMS_MAX)
		return NULL;
	items = realloc(r->items, (r->n + 1) * sizeof *items);
	if (!items)
		return NULL;
	r->items = items;
	it = &r->items[r->n++];
	memset(it, 0, sizeof *it);
	it->kind = kind;
	return it;
}

static int
req_has(const struct imap_fetch_req *r, enum imap_fetch_kind kind)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->items[i].kind == kind)
			return 1;
	return 0;
}

/* The reply name of a simple attribute. */
static const char *
simple_name(enum imap_fetch_kind kind)
{
	switch (kind) {
	case IMAP_FI_UID: return "UID";
	case IMAP_FI_FLAGS: return "FLAGS";
	case IMAP_FI_INTERNALDATE: return "INTERNALDATE";
	case IMAP_FI_SIZE: return "RFC822.SIZE";
	case IMAP_FI_ENVELOPE: return "ENVELOPE";
	case IMAP_FI_BODY: return "BODY";
	case IMAP_FI_BODYSTRUCTURE: return "BODYSTRUCTURE";
	case IMAP_FI_RFC822: return "RFC822";
	case IMAP_FI_RFC822_HEADER: return "RFC822.HEADER";
	case IMAP_FI_RFC822_TEXT: return "RFC822.TEXT";
	case IMAP_FI_MODSEQ: return "MODSEQ";
	case IMAP_FI_SECTION:
	case IMAP_FI_BINARY:
	case IMAP_FI_BINARY_SIZE: break;
	}
	return NULL;
}

static int
add_simple(struct imap_fetch_req *r, enum imap_fetch_kind kind, char *err, size_t errlen)
{
	struct imap_fetch_item *it;

	if (req_has(r, kind))     /* asked twice: answered once */
		return 0;
	it = req_add(r, kind);
	if (!it) {
		fetch_err(err, errlen, "Too many FETCH attributes");
		return -1;
	}
	it->name = strdup(simple_name(kind));
	if (!it->name) {
		r->n--;
		fetch_err(err, errlen, "Out of memory");
		return -1;
	}
	return 0;
}

/* Index of the ']' closing the section that starts at s[0] (just after
 * '['): field lists "(From To)" and quoted names may not close it. */
static size_t
section_end(const char *s, size_t len)
{
	int depth = 0, quoted = 0;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (quoted) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '"')
				quoted = 0;
		} else if (c == '"') {
			quoted = 1;
		} else if (c == '(') {
			depth++;
		} else if (c == ')') {
			if (depth > 0)
				depth--;
		} else if (c == ']' && depth == 0) {
			return i;
		}
	}
	return len;
}

/* "<digits>" as a 32-bit number; 0 ok. */
static int
parse_u32(const char *s, size_t len, uint32_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 10)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* "<off.count>" after the section; count is an nz-number. */
static int
parse_partial(const char *s, size_t len, uint32_t *off, uint32_t *count)
{
	const char *dot;

	if (len < 5 || s[0] != '<' || s[len - 1] != '>')
		return -1;
	s++;
	len -= 2;
	dot = memchr(s, '.', len);
	if (!dot)
		return -1;
	if (parse_u32(s, (size_t)(dot - s), off) < 0 ||
	    parse_u32(dot + 1, len - (size_t)(dot - s) - 1, count) < 0 || *count == 0)
		return -1;
	return 0;
}

/* The reply name: BODY[<section, keywords upper-cased>]<off>; quoted
 * field names are echoed as sent. */
static char *
section_name(const char *prefix, const char *sec, size_t len, int partial, uint32_t off)
{
	size_t plen = strlen(prefix), cap = len + plen + 32;
	char *name = malloc(cap), *p;
	int quoted = 0;

	if (!name)
		return NULL;
	p = name;
	memcpy(p, prefix, plen);
	p += plen;
	for (size_t i = 0; i < len; i++) {
		char c = sec[i];

		if (quoted) {
			if (c == '\\' && i + 1 < len)
				*p++ = sec[i++];
			else if (c == '"')
				quoted = 0;
		} else if (c == '"') {
			quoted = 1;
		} else if (c >= 'a' && c <= 'z') {
			c = (char)(c - 'a' + 'A');
		}
		*p++ = c;
	}
	*p++ = ']';
	if (partial)
		p += snprintf(p, cap - (size_t)(p - name), "<%u>", off);
	*p = '\0';
	return name;
}

/* BODY[...], BODY.PEEK[...], and (RFC 3516) BINARY[part], BINARY.PEEK[part],
 * BINARY.SIZE[part]: a binary section is part numbers only. */
static int
add_section(struct imap_fetch_req *r, const char *s, size_t len, char *err, size_t errlen)
{
	static const struct {
		const char *word;
		enum imap_fetch_kind kind;
		int peek;
		const char *reply;
	} forms[] = {
		{ "BODY.PEEK[", IMAP_FI_SECTION, 1, "BODY[" },
		{ "BODY[", IMAP_FI_SECTION, 0, "BODY[" },
		{ "BINARY.PEEK[", IMAP_FI_BINARY, 1, "BINARY[" },
		{ "BINARY.SIZE[", IMAP_FI_BINARY_SIZE, 1, "BINARY.SIZE[" },
		{ "BINARY[", IMAP_FI_BINARY, 0, "BINARY[" },
	};
	struct imap_fetch_item *it;
	struct imap_section sec;
	size_t skip = 0, end, f;
	int peek;
	uint32_t off = 0, count = 0;
	int partial;
	char *name;

	for (f = 0; f < sizeof forms / sizeof forms[0]; f++) {
		skip = strlen(forms[f].word);
		if (len >= skip && strncasecmp(s, forms[f].word, skip) == 0)
			break;
	}
	if (f == sizeof forms / sizeof forms[0]) {
		fetch_err(err, errlen, "Invalid arguments.");
		return -1;
	}
	peek = forms[f].peek;
	s += skip;
	len -= skip;
	end = section_end(s, len);
	if (end == len) {
		fetch_err(err, errlen, "Invalid BODY[..] parameter: Missing ']'");
		return -1;
	}
	partial = end + 1 < len;
	if (partial && forms[f].kind == IMAP_FI_BINARY_SIZE) {
		fetch_err(err, errlen, "Invalid BINARY.SIZE[..] parameter: Unexpected partial");
		return -1;
	}
	if (partial && parse_partial(s + end + 1, len - end - 1, &off, &count) < 0) {
		fetch_err(err, errlen, "Invalid BODY[..] parameter: Invalid partial");
		return -1;
	}
	memset(&sec, 0, sizeof sec);
	if (imap_section_parse(s, end, &sec) < 0 ||
	    (forms[f].kind != IMAP_FI_SECTION && sec.kind != IMAP_SEC_ALL)) {
		imap_section_free(&sec);
		fetch_err(err, errlen, forms[f].kind == IMAP_FI_SECTION ?
		          "Invalid BODY[..] parameter: Unknown section name" :
		          "Invalid BINARY[..] parameter: Invalid part number");
		return -1;
	}
	name = section_name(forms[f].reply, s, end, partial, off);
	if (!name) {
		imap_section_free(&sec);
		fetch_err(err, errlen, "Out of memory");
		return -1;
	}
	/* The same name twice is answered once; BODY[] with BODY.PEEK[] reads. */
	for (size_t i = 0; i < r->n; i++) {
		if (r->items[i].kind == forms[f].kind && strcmp(r->items[i].name, name) == 0 &&
		    r->items[i].count == count) {
			r->items[i].peek &= peek;
			imap_section_free(&sec);
			free(name);
			return 0;
		}
	}
	it = req_add(r, forms[f].kind);
	if (!it) {
		imap_section_free(&sec);
		free(name);
		fetch_err(err, errlen, "Too many FETCH attributes");
		return -1;
	}
	it->sec = sec;
	it->peek = peek;
	it->partial = partial;
	it->off = off;
	it->count = count;
	it->name = name;
	return 0;
}

static int
add_item(struct imap_fetch_req *r, const char *s, size_t len, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		enum imap_fetch_kind kind;
	} simple[] = {
		{ "UID", IMAP_FI_UID },
		{ "FLAGS", IMAP_FI_FLAGS },
		{ "INTERNALDATE", IMAP_FI_INTERNALDATE },
		{ "RFC822.SIZE", IMAP_FI_SIZE },
		{ "ENVELOPE", IMAP_FI_ENVELOPE },
		{ "BODY", IMAP_FI_BODY },
		{ "BODYSTRUCTURE", IMAP_FI_BODYSTRUCTURE },
		{ "RFC822", IMAP_FI_RFC822 },
		{ "RFC822.HEADER", IMAP_FI_RFC822_HEADER },
		{ "RFC822.TEXT", IMAP_FI_RFC822_TEXT },
		{ "MODSEQ", IMAP_FI_MODSEQ },
	};

	for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
		if (name_is(s, len, simple[i].name))
			return add_simple(r, simple[i].kind, err, errlen);
	if ((len >= 5 && strncasecmp(s, "BODY[", 5) == 0) ||
	    (len >= 10 && strncasecmp(s, "BODY.PEEK[", 10) == 0) ||
	    (len >= 7 && strncasecmp(s, "BINARY[", 7) == 0) ||
	    (len >= 12 && strncasecmp(s, "BINARY.PEEK[", 12) == 0) ||
	    (len >= 12 && strncasecmp(s, "BINARY.SIZE[", 12) == 0))
		return add_section(r, s, len, err, errlen);
	/* Quote the name only as far as it is printable and short. */
	{
		char shown[64];
		size_t n = 0;

		for (size_t i = 0; i < len && n < sizeof shown - 1; i++)
			shown[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
		shown[n] = '\0';
		fetch_err(err, errlen, "Unknown FETCH attribute %s", shown);
	}
	return -1;
}

static int
add_macro(struct imap_fetch_req *r, const char *s, size_t len, char *err, size_t errlen)
{
	static const enum imap_fetch_kind fast[] = { IMAP_FI_FLAGS, IMAP_FI_INTERNALDATE,
		IMAP_FI_SIZE };
	int full = name_is(s, len, "FULL");

	if (!full && !name_is(s, len, "ALL") && !name_is(s, len, "FAST"))
		return 1;
	for (size_t i = 0; i < 3; i++)
		if (add_simple(r, fast[i], err, errlen) < 0)
			return -1;
	if (!name_is(s, len, "FAST") && add_simple(r, IMAP_FI_ENVELOPE, err, errlen) < 0)
		return -1;
	if (full && add_simple(r, IMAP_FI_BODY, err, errlen) < 0)
		return -1;
	return 0;
}

static void
req_summarise(struct imap_fetch_req *r)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct imap_fetch_item *it = &r->items[i];

		switch (it->kind) {
		case IMAP_FI_UID:
			r->want_uid = 1;
			break;
		case IMAP_FI_FLAGS:
			r->want_flags = 1;
			break;
		case IMAP_FI_INTERNALDATE:
		case IMAP_FI_SIZE:
			break;
		case IMAP_FI_MODSEQ:
			r->want_modseq = 1;
			break;
		case IMAP_FI_ENVELOPE:
		case IMAP_FI_BODY:
		case IMAP_FI_BODYSTRUCTURE:
			r->needs_text = r->needs_parse = 1;
			break;
		case IMAP_FI_SECTION:
			r->needs_text = 1;
			if (it->sec.nparts > 0 || (it->sec.kind != IMAP_SEC_ALL &&
			    it->sec.kind != IMAP_SEC_HEADER && it->sec.kind != IMAP_SEC_TEXT))
				r->needs_parse = 1;
			if (!it->peek)
				r->sets_seen = 1;
			break;
		case IMAP_FI_RFC822:
		case IMAP_FI_RFC822_TEXT:
			r->needs_text = 1;
			r->sets_seen = 1;
			break;
		case IMAP_FI_RFC822_HEADER:
			r->needs_text = 1;
			break;
		case IMAP_FI_BINARY:
		case IMAP_FI_BINARY_SIZE:
			r->needs_text = 1;
			if (it->sec.nparts > 0)
				r->needs_parse = 1;
			if (it->kind == IMAP_FI_BINARY && !it->peek)
				r->sets_seen = 1;
			break;
		}
	}
}

/* "(CHANGEDSINCE n [VANISHED])" in any order; VANISHED only with UID
 * FETCH and CHANGEDSINCE (RFC 7162 §3.2.6). */
static int
parse_modifiers(const struct imap_arg *m, int uid, struct imap_fetch_req *out, char *err, size_t errlen)
{
	if (m->type != IMAP_ARG_LIST || m->n == 0) {
		fetch_err(err, errlen, "Invalid arguments.");
		return -1;
	}
	for (size_t i = 0; i < m->n; i++) {
		const struct imap_arg *x = &m->list[i];
		if (x->type == IMAP_ARG_ATOM && name_is(x->s, x->len, "CHANGEDSINCE") && !out->has_changedsince &&
		    i + 1 < m->n && m->list[i + 1].type == IMAP_ARG_ATOM) {
			const struct imap_arg *v = &m->list[++i];
			uint64_t n = 0;
			int ok = v->len > 0 && v->len <= 19;
			for (size_t c = 0; ok && c < v->len; c++) {
				ok = v->s[c] >= '0' && v->s[c] <= '9';
				n = n * 10 + (uint64_t)(v->s[c] - '0');
			}
			if (!ok || n > 0x7fffffffffffffffull) {
				fetch_err(err, errlen, "Invalid CHANGEDSINCE modseq.");
				return -1;
			}
			out->has_changedsince = 1;
			out->changedsince = n;
		} else if (x->type == IMAP_ARG_ATOM && name_is(x->s, x->len, "VANISHED") && uid && !out->vanished) {
			out->vanished = 1;
		} else {
			fetch_err(err, errlen, "Invalid fetch modifiers.");
			return -1;
		}
	}
	if (out->vanished && !out->has_changedsince) {
		fetch_err(err, errlen, "VANISHED can only be used with CHANGEDSINCE");
		return -1;
	}
	return 0;
}

int
imap_fetch_add_modseq(struct imap_fetch_req *r)
{
	if (add_simple(r, IMAP_FI_UID, NULL, 0) < 0 || add_simple(r, IMAP_FI_MODSEQ, NULL, 0) < 0)
		return -1;
	r->want_uid = r->want_modseq = 1;
	return 0;
}

int
imap_fetch_parse(const struct imap_arg *args, size_t nargs, int uid,
                 struct imap_fetch_req *out, char *err, size_t errlen)
{
	const struct imap_arg *a;
	int rc = 0;

	memset(out, 0, sizeof *out);
	if (nargs < 1 || nargs > 2 || !args) {
		fetch_err(err, errlen, "Invalid arguments.");
		return -1;
	}
	if (nargs == 2 && parse_modifiers(&args[1], uid, out, err, errlen) != 0)
		return -1;
	a = &args[0];
	if (uid && add_simple(out, IMAP_FI_UID, err, errlen) < 0)
		return -1;
	if (a->type == IMAP_ARG_ATOM) {
		rc = add_macro(out, a->s, a->len, err, errlen);
		if (rc > 0)
			rc = add_item(out, a->s, a->len, err, errlen);
	} else if (a->type == IMAP_ARG_LIST && a->n > 0) {
		for (size_t i = 0; i < a->n && rc == 0; i++) {
			if (a->list[i].type != IMAP_ARG_ATOM) {
				fetch_err(err, errlen, "Invalid arguments.");
				rc = -1;
			} else {
				rc = add_item(out, a->list[i].s, a->list[i].len, err, errlen);
			}
		}
	} else {
		fetch_err(err, errlen, "Invalid arguments.");
		rc = -1;
	}
	/* CHANGEDSINCE implies MODSEQ (RFC 7162 §3.1.4.1). */
	if (rc == 0 && out->has_changedsince && !req_has(out, IMAP_FI_MODSEQ) &&
	    add_simple(out, IMAP_FI_MODSEQ, err, errlen) < 0)
		rc = -1;
	if (rc < 0) {
		imap_fetch_req_free(out);
		return -1;
	}
	req_summarise(out);
	return 0;
}

void
imap_fetch_req_free(struct imap_fetch_req *r)
{
	for (size_t i = 0; i < r->n; i++) {
		if (r->items[i].kind == IMAP_FI_SECTION || r->items[i].kind == IMAP_FI_BINARY ||
		    r->items[i].kind == IMAP_FI_BINARY_SIZE)
			imap_section_free(&r->items[i].sec);
		free(r->items[i].name);
	}
	free(r->items);
	memset(r, 0, sizeof *r);
}
