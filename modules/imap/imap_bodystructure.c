/* BODY and BODYSTRUCTURE (RFC 3501 §7.4.2): the MIME tree of a parsed
 * message written as IMAP lists, with type names upper case as Dovecot
 * writes them and the extension data (MD5, disposition, language,
 * location) for BODYSTRUCTURE. */
#include <string.h>

#include "imap_msg_int.h"

static void
put_upper(struct pt_strbuf *out, const char *s)
{
	char small[128];
	size_t n = strlen(s);
	if (n >= sizeof small) {
		imap_msg_put_nstring(out, s, n); /* a name this long is not worth folding */
		return;
	}
	for (size_t i = 0; i < n; i++)
		small[i] = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 32) : s[i];
	imap_msg_put_nstring(out, small, n);
}

/* ("NAME" "value" ...) or NIL; text/plain gets its default charset. */
static void
put_params(struct pt_strbuf *out, const struct imap_ctype *ct, int default_charset)
{
	if (ct->nparams == 0 && !default_charset) {
		pt_strbuf_put(out, "NIL", 3);
		return;
	}
	pt_strbuf_put(out, "(", 1);
	int first = 1;
	if (default_charset) {
		pt_strbuf_puts(out, "\"CHARSET\" \"us-ascii\"");
		first = 0;
	}
	for (size_t i = 0; i < ct->nparams; i++) {
		if (!first)
			pt_strbuf_put(out, " ", 1);
		first = 0;
		put_upper(out, ct->param[i].name);
		pt_strbuf_put(out, " ", 1);
		imap_msg_put_nstring(out, ct->param[i].value, strlen(ct->param[i].value));
	}
	pt_strbuf_put(out, ")", 1);
}

/* A header's unfolded value as an nstring (NIL when absent). */
static void
put_header_nstring(const struct imap_msg *m, const struct imap_part *p, const char *name,
                   struct pt_strbuf *out)
{
	struct pt_strbuf v = { 0 };
	if (imap_part_header(m, p, name, &v))
		imap_msg_put_nstring(out, v.p, v.len);
	else
		pt_strbuf_put(out, "NIL", 3);
	pt_strbuf_free(&v);
}

/* disposition, language, location: what both kinds of part end with. */
static void
put_ext_tail(const struct imap_msg *m, const struct imap_part *p, struct pt_strbuf *out)
{
	struct pt_strbuf v = { 0 };
	struct imap_ctype d;
	pt_strbuf_put(out, " ", 1);
	if (imap_part_header(m, p, "content-disposition", &v) && imap_ctype_parse(v.p, v.len, 0, &d) == 0) {
		pt_strbuf_put(out, "(", 1);
		put_upper(out, d.type);
		pt_strbuf_put(out, " ", 1);
		put_params(out, &d, 0);
		pt_strbuf_put(out, ")", 1);
		imap_ctype_free(&d);
	} else {
		pt_strbuf_put(out, "NIL", 3);
	}
	pt_strbuf_free(&v);

	/* Content-Language: "en, de" -> ("en" "de") */
	pt_strbuf_put(out, " ", 1);
	int n = 0;
	if (imap_part_header(m, p, "content-language", &v)) {
		size_t i = 0;
		while (i < v.len) {
			while (i < v.len && (v.p[i] == ',' || v.p[i] == ' ' || v.p[i] == '\t'))
				i++;
			size_t s = i;
			while (i < v.len && v.p[i] != ',' && v.p[i] != ' ' && v.p[i] != '\t')
				i++;
			if (i > s) {
				pt_strbuf_put(out, n ? " " : "(", 1);
				imap_msg_put_nstring(out, v.p + s, i - s);
				n++;
			}
		}
	}
	pt_strbuf_puts(out, n ? ")" : "NIL");
	pt_strbuf_free(&v);

	pt_strbuf_put(out, " ", 1);
	put_header_nstring(m, p, "content-location", out);
}

static void
put_part(const struct imap_msg *m, const struct imap_part *p, int extended, struct pt_strbuf *out)
{
	struct imap_ctype ct;
	imap_part_ctype(m, p, &ct);
	const char *type = ct.type ? ct.type : "text", *subtype = ct.subtype ? ct.subtype : "plain";
	pt_strbuf_put(out, "(", 1);
	if (p->kind == IMAP_PART_MULTI) {
		for (int c = p->child; c >= 0; c = m->parts[c].next)
			put_part(m, &m->parts[c], extended, out);
		pt_strbuf_put(out, " ", 1);
		put_upper(out, subtype);
		if (extended) {
			pt_strbuf_put(out, " ", 1);
			put_params(out, &ct, 0);
			put_ext_tail(m, p, out);
		}
		pt_strbuf_put(out, ")", 1);
		imap_ctype_free(&ct);
		return;
	}
	int is_text = strcmp(type, "text") == 0;
	put_upper(out, type);
	pt_strbuf_put(out, " ", 1);
	put_upper(out, subtype);
	pt_strbuf_put(out, " ", 1);
	put_params(out, &ct, is_text && strcmp(subtype, "plain") == 0 && imap_ctype_param(&ct, "charset") == NULL);
	pt_strbuf_put(out, " ", 1);
	put_header_nstring(m, p, "content-id", out);
	pt_strbuf_put(out, " ", 1);
	put_header_nstring(m, p, "content-description", out);
	pt_strbuf_put(out, " ", 1);
	struct pt_strbuf enc = { 0 };
	if (imap_part_header(m, p, "content-transfer-encoding", &enc) && enc.len > 0)
		put_upper(out, enc.p);
	else
		pt_strbuf_puts(out, "\"7BIT\"");
	pt_strbuf_free(&enc);
	pt_strbuf_printf(out, " %zu", p->body_len);
	if (p->kind == IMAP_PART_MESSAGE) {
		const struct imap_part *inner = &m->parts[p->child];
		pt_strbuf_put(out, " ", 1);
		imap_msg_envelope_part(m, inner, out);
		pt_strbuf_put(out, " ", 1);
		put_part(m, inner, extended, out);
		pt_strbuf_printf(out, " %zu", p->lines);
	} else if (is_text) {
		pt_strbuf_printf(out, " %zu", p->lines);
	}
	if (extended) {
		pt_strbuf_put(out, " ", 1);
		put_header_nstring(m, p, "content-md5", out);
		put_ext_tail(m, p, out);
	}
	pt_strbuf_put(out, ")", 1);
	imap_ctype_free(&ct);
}

void
imap_msg_bodystructure(const struct imap_msg *m, int extended, struct pt_strbuf *out)
{
	put_part(m, &m->parts[0], extended, out);
}
