/* BODY[section] (RFC 3501 §6.4.5): parsing the section text and cutting
 * the section's octets out of a parsed message. */
#include <stdlib.h>
#include <string.h>

#include "imap_msg_int.h"

static int
kw(const char *s, size_t len, size_t p, const char *word)
{
	size_t n = strlen(word);
	return len - p >= n && imap_ascii_casecmp_n(s + p, word, n) == 0;
}

static int
is_atom_char(unsigned char c)
{
	return c > ' ' && c < 0x7f && strchr("(){%*\"\\]", c) == NULL;
}

/* "(" name *(SP name) ")" to the end of the text. */
static int
parse_fields(const char *s, size_t len, size_t p, struct imap_section *out)
{
	if (p >= len || s[p] != ' ')
		return -1;
	p++;
	if (p >= len || s[p] != '(')
		return -1;
	p++;
	for (;;) {
		struct pt_strbuf name = { 0 };
		if (p < len && s[p] == '"') {
			p++;
			while (p < len && s[p] != '"') {
				if (s[p] == '\\' && p + 1 < len)
					p++;
				pt_strbuf_put(&name, &s[p], 1);
				p++;
			}
			if (p >= len) {
				pt_strbuf_free(&name);
				return -1;
			}
			p++;
		} else {
			size_t a = p;
			while (p < len && is_atom_char((unsigned char)s[p]))
				p++;
			pt_strbuf_put(&name, s + a, p - a);
		}
		if (name.len == 0 || name.oom || out->nfields >= IMAP_SECTION_FIELDS
		    || memchr(name.p, ':', name.len) != NULL || memchr(name.p, '\0', name.len) != NULL) {
			pt_strbuf_free(&name);
			return -1;
		}
		out->fields[out->nfields++] = name.p;
		if (p < len && s[p] == ' ') {
			p++;
			continue;
		}
		if (p < len && s[p] == ')' && p + 1 == len)
			return 0;
		return -1;
	}
}

/* HEADER, HEADER.FIELDS[.NOT] (...), TEXT, and (after a part number) MIME. */
static int
parse_text(const char *s, size_t len, size_t p, int after_part, struct imap_section *out)
{
	if (kw(s, len, p, "HEADER.FIELDS.NOT")) {
		out->kind = IMAP_SEC_HEADER_FIELDS_NOT;
		return parse_fields(s, len, p + 17, out);
	}
	if (kw(s, len, p, "HEADER.FIELDS")) {
		out->kind = IMAP_SEC_HEADER_FIELDS;
		return parse_fields(s, len, p + 13, out);
	}
	if (kw(s, len, p, "HEADER") && len - p == 6) {
		out->kind = IMAP_SEC_HEADER;
		return 0;
	}
	if (kw(s, len, p, "TEXT") && len - p == 4) {
		out->kind = IMAP_SEC_TEXT;
		return 0;
	}
	if (after_part && kw(s, len, p, "MIME") && len - p == 4) {
		out->kind = IMAP_SEC_MIME;
		return 0;
	}
	return -1;
}

int
imap_section_parse(const char *s, size_t len, struct imap_section *out)
{
	memset(out, 0, sizeof *out);
	out->kind = IMAP_SEC_ALL;
	if (len == 0)
		return 0;
	size_t p = 0;
	int rc;
	if (s[0] >= '1' && s[0] <= '9') {
		for (;;) {
			uint64_t v = 0;
			if (p >= len || s[p] < '1' || s[p] > '9' || out->nparts >= IMAP_SECTION_DEPTH)
				goto bad;
			while (p < len && s[p] >= '0' && s[p] <= '9') {
				v = v * 10 + (uint64_t)(s[p] - '0');
				if (v > 0xffffffffu)
					goto bad;
				p++;
			}
			out->part[out->nparts++] = (unsigned)v;
			if (p == len)
				return 0;
			if (s[p] != '.')
				goto bad;
			p++;
			if (p < len && (s[p] < '0' || s[p] > '9'))
				break;
		}
		rc = parse_text(s, len, p, 1, out);
	} else {
		rc = parse_text(s, len, p, 0, out);
	}
	if (rc == 0)
		return 0;
bad:
	imap_section_free(out);
	return -1;
}

void
imap_section_free(struct imap_section *sec)
{
	for (size_t i = 0; i < sec->nfields; i++)
		free(sec->fields[i]);
	sec->nfields = 0;
}

/* Header fields of a block whose names are (or, with not, are not) in
 * the list, then the empty line. */
static void
put_fields(const struct imap_msg *m, const struct imap_part *p, const struct imap_section *sec,
           int not, struct pt_strbuf *out)
{
	struct pt_hdr_iter it;
	struct pt_hdr_field f;
	pt_hdr_iter_init(&it, m->data + p->hdr_off, p->hdr_len, 0);
	while (pt_hdr_next(&it, &f)) {
		int listed = 0;
		for (size_t i = 0; i < sec->nfields && !listed; i++)
			listed = pt_hdr_name_is(&f, sec->fields[i]);
		if (listed == not)
			continue;
		pt_strbuf_put(out, f.raw, f.raw_len);
		if (f.raw[f.raw_len - 1] != '\n')
			pt_strbuf_put(out, "\r\n", 2); /* the last line of a header-only message */
	}
	pt_strbuf_put(out, "\r\n", 2);
}

static void
put_range(const struct imap_msg *m, size_t off, size_t len, struct pt_strbuf *out)
{
	pt_strbuf_put(out, m->data + off, len);
}

/* Child number k (1-based) of a multipart node, or NULL. */
static const struct imap_part *
nth_child(const struct imap_msg *m, const struct imap_part *p, unsigned k)
{
	if (p->kind != IMAP_PART_MULTI || k == 0)
		return NULL;
	int c = p->child;
	for (unsigned i = 1; c >= 0 && i < k; i++)
		c = m->parts[c].next;
	return c >= 0 ? &m->parts[c] : NULL;
}

/* Part k of a message node: a child of its multipart body, or for a
 * single-part message part 1 is the message itself seen as its body. */
static const struct imap_part *
message_part(const struct imap_msg *m, const struct imap_part *msg, unsigned k)
{
	if (msg->kind == IMAP_PART_MULTI)
		return nth_child(m, msg, k);
	return k == 1 ? msg : NULL;
}

/* The node a section's part numbers name, NULL when there is none. */
static const struct imap_part *
section_part(const struct imap_msg *m, const struct imap_section *sec)
{
	const struct imap_part *p = &m->parts[0];
	for (size_t i = 0; i < sec->nparts && p != NULL; i++) {
		if (i == 0)
			p = message_part(m, p, sec->part[i]);
		else if (p->kind == IMAP_PART_MESSAGE)
			p = message_part(m, &m->parts[p->child], sec->part[i]);
		else
			p = nth_child(m, p, sec->part[i]);
	}
	return p;
}

int
imap_msg_binary(const struct imap_msg *m, const struct imap_section *sec, struct pt_strbuf *out)
{
	const struct imap_part *p = sec->nparts ? section_part(m, sec) : NULL;

	if (sec->nparts == 0 || p == NULL || p->kind != IMAP_PART_LEAF) {
		/* The whole message, a part that is not there (""), or a
		 * multipart / message part: no encoding of its own to undo
		 * (RFC 2045 allows only 7bit, 8bit, binary there). */
		if (out != NULL) {
			if (sec->nparts == 0)
				put_range(m, 0, m->len, out);
			else if (p != NULL)
				put_range(m, p->body_off, p->body_len, out);
			if (out->p == NULL)
				pt_strbuf_put(out, "", 0);
		}
		return 0;
	}
	struct pt_strbuf enc = { 0 };
	int have = imap_part_header(m, p, "content-transfer-encoding", &enc);
	/* An empty value counts as none given (7bit). */
	int rc = imap_cte_decode(have && enc.len ? enc.p : NULL, have ? enc.len : 0,
	                         m->data + p->body_off, p->body_len, out);
	pt_strbuf_free(&enc);
	return rc;
}

void
imap_msg_section(const struct imap_msg *m, const struct imap_section *sec, struct pt_strbuf *out)
{
	const struct imap_part *p = section_part(m, sec);
	if (p == NULL) {
		pt_strbuf_put(out, "", 0);
		return;
	}
	/* HEADER and TEXT of a numbered part are those of the message it holds */
	const struct imap_part *msg = p;
	if (sec->nparts > 0 && sec->kind != IMAP_SEC_ALL && sec->kind != IMAP_SEC_MIME) {
		if (p->kind != IMAP_PART_MESSAGE) {
			pt_strbuf_put(out, "", 0);
			return;
		}
		msg = &m->parts[p->child];
	}
	switch (sec->kind) {
	case IMAP_SEC_ALL:
		if (sec->nparts == 0)
			put_range(m, 0, m->len, out);
		else
			put_range(m, p->body_off, p->body_len, out);
		break;
	case IMAP_SEC_MIME:
		put_range(m, p->hdr_off, p->hdr_len, out);
		break;
	case IMAP_SEC_HEADER:
		put_range(m, msg->hdr_off, msg->hdr_len, out);
		break;
	case IMAP_SEC_TEXT:
		put_range(m, msg->body_off, msg->body_len, out);
		break;
	case IMAP_SEC_HEADER_FIELDS:
	case IMAP_SEC_HEADER_FIELDS_NOT:
		put_fields(m, msg, sec, sec->kind == IMAP_SEC_HEADER_FIELDS_NOT, out);
		break;
	}
	if (out->p == NULL)
		pt_strbuf_put(out, "", 0);
}

int
imap_msg_section_exists(const struct imap_msg *m, const struct imap_section *sec)
{
	if (sec->nparts == 0)
		return 1;
	const struct imap_part *p = section_part(m, sec);
	if (p == NULL)
		return 0;
	/* HEADER / TEXT of a numbered part need a message there */
	if (sec->kind != IMAP_SEC_ALL && sec->kind != IMAP_SEC_MIME)
		return p->kind == IMAP_PART_MESSAGE;
	return 1;
}
