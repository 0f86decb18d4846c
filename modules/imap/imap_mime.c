/* MIME structure of one message (RFC 2045/2046): headers, multipart
 * boundaries, message/rfc822 nesting, as a tree of offsets into the wire
 * form. Malformed input degrades to text/plain; depth and part count are
 * bounded so any byte sequence parses in linear-ish time. */
#include <stdlib.h>
#include <string.h>

#include "imap_msg_int.h"
#include "postern/strbuf.h"

static int
lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

int
imap_ascii_casecmp_n(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int d = lower((unsigned char)a[i]) - lower((unsigned char)b[i]);
		if (d != 0)
			return d;
	}
	return 0;
}

int
imap_ascii_caseeq(const char *a, size_t alen, const char *b)
{
	return strlen(b) == alen && imap_ascii_casecmp_n(a, b, alen) == 0;
}

/* ---- header fields ---- */

/* End of the line at p (after its LF, or end). */
static const char *
line_end(const char *p, const char *end)
{
	const char *lf = memchr(p, '\n', (size_t)(end - p));
	return lf ? lf + 1 : end;
}

int
imap_part_header(const struct imap_msg *m, const struct imap_part *p, const char *name,
                 struct pt_strbuf *out)
{
	struct pt_hdr_iter it;
	struct pt_hdr_field f;
	pt_hdr_iter_init(&it, m->data + p->hdr_off, p->hdr_len, 0);
	while (pt_hdr_next(&it, &f)) {
		if (pt_hdr_name_is(&f, name)) {
			pt_hdr_unfold(f.value, f.value_len, out);
			return 1;
		}
	}
	return 0;
}

/* ---- Content-Type ---- */

static int
is_tspecial_or_space(unsigned char c)
{
	if (c <= ' ' || c == 0x7f)
		return 1;
	switch (c) {
	case '(': case ')': case '<': case '>': case '@': case ',': case ';': case ':':
	case '\\': case '"': case '/': case '[': case ']': case '?': case '=':
		return 1;
	default:
		return 0;
	}
}

static void
skip_cfws(const char *v, size_t len, size_t *p)
{
	while (*p < len) {
		if (v[*p] == ' ' || v[*p] == '\t' || v[*p] == '\r' || v[*p] == '\n') {
			(*p)++;
		} else if (v[*p] == '(') {
			int depth = 0;
			while (*p < len) {
				if (v[*p] == '\\' && *p + 1 < len)
					(*p)++;
				else if (v[*p] == '(')
					depth++;
				else if (v[*p] == ')' && --depth == 0) {
					(*p)++;
					break;
				}
				(*p)++;
			}
		} else {
			return;
		}
	}
}

static char *
dup_lower(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		d[i] = (char)lower((unsigned char)s[i]);
	d[n] = '\0';
	return d;
}

static size_t
token(const char *v, size_t len, size_t p)
{
	while (p < len && !is_tspecial_or_space((unsigned char)v[p]))
		p++;
	return p;
}

int
imap_ctype_parse(const char *v, size_t len, int with_subtype, struct imap_ctype *ct)
{
	memset(ct, 0, sizeof *ct);
	size_t p = 0;
	skip_cfws(v, len, &p);
	size_t te = token(v, len, p);
	if (te == p)
		return -1;
	size_t ts = p;
	p = te;
	size_t ss = 0, se = 0;
	if (with_subtype) {
		skip_cfws(v, len, &p);
		if (p >= len || v[p] != '/')
			return -1;
		p++;
		skip_cfws(v, len, &p);
		ss = p;
		se = token(v, len, p);
		if (se == ss)
			return -1;
		p = se;
	}
	ct->type = dup_lower(v + ts, te - ts);
	ct->subtype = with_subtype ? dup_lower(v + ss, se - ss) : NULL;
	if (ct->type == NULL || (with_subtype && ct->subtype == NULL)) {
		imap_ctype_free(ct);
		return -1;
	}
	/* ; name=value ... — a broken parameter ends the list, the type stays */
	while (ct->nparams < IMAP_PARAMS_MAX) {
		skip_cfws(v, len, &p);
		if (p >= len || v[p] != ';')
			break;
		p++;
		skip_cfws(v, len, &p);
		size_t ns = p, ne = token(v, len, p);
		if (ne == ns)
			continue; /* ";;" or a trailing ';' */
		p = ne;
		skip_cfws(v, len, &p);
		if (p >= len || v[p] != '=')
			break;
		p++;
		skip_cfws(v, len, &p);
		struct pt_strbuf val = { 0 };
		if (p < len && v[p] == '"') {
			p++;
			while (p < len && v[p] != '"') {
				if (v[p] == '\\' && p + 1 < len)
					p++;
				if (v[p] != '\r' && v[p] != '\n')
					pt_strbuf_put(&val, &v[p], 1);
				p++;
			}
			if (p < len)
				p++;
		} else {
			/* lenient: real mail has "name=my file.pdf" unquoted */
			size_t vs = p;
			while (p < len && v[p] != ';' && v[p] != ' ' && v[p] != '\t' && v[p] != '\r' && v[p] != '\n')
				p++;
			pt_strbuf_put(&val, v + vs, p - vs);
		}
		pt_strbuf_put(&val, "", 0);
		char *name = dup_lower(v + ns, ne - ns);
		if (name == NULL || val.oom) {
			free(name);
			pt_strbuf_free(&val);
			break;
		}
		ct->param[ct->nparams].name = name;
		ct->param[ct->nparams].value = val.p;
		ct->nparams++;
	}
	return 0;
}

const char *
imap_ctype_param(const struct imap_ctype *ct, const char *name)
{
	for (size_t i = 0; i < ct->nparams; i++)
		if (strcmp(ct->param[i].name, name) == 0)
			return ct->param[i].value;
	return NULL;
}

void
imap_ctype_free(struct imap_ctype *ct)
{
	free(ct->type);
	free(ct->subtype);
	for (size_t i = 0; i < ct->nparams; i++) {
		free(ct->param[i].name);
		free(ct->param[i].value);
	}
	memset(ct, 0, sizeof *ct);
}

static void
ctype_default(struct imap_ctype *ct, int digest_child)
{
	memset(ct, 0, sizeof *ct);
	ct->type = dup_lower(digest_child ? "message" : "text", digest_child ? 7 : 4);
	ct->subtype = dup_lower(digest_child ? "rfc822" : "plain", digest_child ? 6 : 5);
}

void
imap_part_ctype(const struct imap_msg *m, const struct imap_part *p, struct imap_ctype *ct)
{
	struct pt_strbuf v = { 0 };
	if (p->plain) {
		ctype_default(ct, 0);
	} else if (!imap_part_header(m, p, "content-type", &v) || imap_ctype_parse(v.p, v.len, 1, ct) != 0) {
		ctype_default(ct, p->digest_child);
	}
	pt_strbuf_free(&v);
	if (ct->type == NULL || ct->subtype == NULL) {
		/* out of memory: an empty type is still safe to print */
		imap_ctype_free(ct);
	}
}

/* ---- parsing ---- */

static int
new_part(struct imap_msg *m)
{
	if (m->nparts >= IMAP_MSG_MAX_PARTS)
		return -1;
	if (m->nparts == m->cap) {
		struct imap_part *np = pt_array_grow(m->parts, &m->cap, sizeof *np, 8);
		if (np == NULL)
			return -2;
		m->parts = np;
	}
	struct imap_part *p = &m->parts[m->nparts];
	memset(p, 0, sizeof *p);
	p->child = p->next = -1;
	return (int)m->nparts++;
}

/* Split [off, off+len) into header (through the empty line) and body; a
 * block without an empty line is all header. */
static void
split_header(struct imap_msg *m, struct imap_part *p, size_t off, size_t len)
{
	const char *s = m->data + off, *end = s + len, *q = s;
	p->hdr_off = off;
	while (q < end) {
		if (*q == '\n' || (*q == '\r' && q + 1 < end && q[1] == '\n')) {
			const char *b = *q == '\n' ? q + 1 : q + 2;
			p->hdr_len = (size_t)(b - s);
			p->body_off = off + p->hdr_len;
			p->body_len = len - p->hdr_len;
			return;
		}
		q = line_end(q, end);
	}
	p->hdr_len = len;
	p->body_off = off + len;
	p->body_len = 0;
}

static size_t
count_lf(const char *s, size_t n)
{
	size_t c = 0;
	const char *e = s + n;
	while ((s = memchr(s, '\n', (size_t)(e - s))) != NULL) {
		c++;
		s++;
	}
	return c;
}

static int parse_node(struct imap_msg *m, int idx, int depth);

/* Is the line at s a delimiter of boundary b: "--b" then white space to
 * the line end, or "--b--" (close, *close set)? */
static int
is_delimiter(const char *s, const char *end, const char *b, size_t blen, int *close)
{
	if ((size_t)(end - s) < blen + 2 || s[0] != '-' || s[1] != '-' || memcmp(s + 2, b, blen) != 0)
		return 0;
	const char *q = s + 2 + blen;
	*close = 0;
	if (end - q >= 2 && q[0] == '-' && q[1] == '-') {
		*close = 1;
		q += 2;
	}
	while (q < end && (*q == ' ' || *q == '\t'))
		q++;
	if (*close)
		return 1; /* anything may follow the close delimiter on its line */
	return q == end || *q == '\n' || (*q == '\r' && q + 1 < end && q[1] == '\n') || *q == '\r';
}

/* Children of a multipart body; 0, or -1 when it has no delimiter at all
 * (then it is shown as text/plain). */
static int
parse_multipart(struct imap_msg *m, int idx, const char *boundary, int digest, int depth)
{
	size_t blen = strlen(boundary);
	const char *base = m->data;
	const char *s = base + m->parts[idx].body_off;
	const char *end = s + m->parts[idx].body_len;
	const char *q = s;
	const char *part_start = NULL; /* content after the last delimiter */
	int last = -1;
	while (q < end) {
		const char *le = line_end(q, end);
		int close;
		if (is_delimiter(q, le, boundary, blen, &close)) {
			if (part_start != NULL) {
				/* the line break before a delimiter belongs to it */
				const char *ce = q;
				if (ce > part_start && ce[-1] == '\n')
					ce--;
				if (ce > part_start && ce[-1] == '\r')
					ce--;
				int c = new_part(m);
				if (c == -2)
					return -2;
				if (c < 0)
					break;
				struct imap_part *cp = &m->parts[c];
				cp->digest_child = digest;
				split_header(m, cp, (size_t)(part_start - base), (size_t)(ce - part_start));
				if (last < 0)
					m->parts[idx].child = c;
				else
					m->parts[last].next = c;
				last = c;
				m->parts[idx].nchildren++;
				if (parse_node(m, c, depth + 1) == -2)
					return -2;
			}
			if (close) {
				part_start = NULL;
				break;
			}
			part_start = le;
		}
		q = le;
	}
	if (part_start != NULL && m->parts[idx].nchildren < IMAP_MSG_MAX_PARTS) {
		/* no close delimiter: the last part runs to the end */
		int c = new_part(m);
		if (c == -2)
			return -2;
		if (c >= 0) {
			struct imap_part *cp = &m->parts[c];
			cp->digest_child = digest;
			split_header(m, cp, (size_t)(part_start - base), (size_t)(end - part_start));
			if (last < 0)
				m->parts[idx].child = c;
			else
				m->parts[last].next = c;
			m->parts[idx].nchildren++;
			if (parse_node(m, c, depth + 1) == -2)
				return -2;
		}
	}
	return m->parts[idx].nchildren > 0 ? 0 : -1;
}

/* Fill in kind and children of node idx (header and body already set). */
static int
parse_node(struct imap_msg *m, int idx, int depth)
{
	struct imap_part *p = &m->parts[idx];
	p->lines = count_lf(m->data + p->body_off, p->body_len);
	struct imap_ctype ct;
	imap_part_ctype(m, p, &ct);
	int rc = 0;
	if (ct.type == NULL) {
		m->parts[idx].plain = 1;
		return 0;
	}
	if (strcmp(ct.type, "multipart") == 0) {
		const char *b = imap_ctype_param(&ct, "boundary");
		if (b == NULL || *b == '\0' || depth >= IMAP_MSG_MAX_DEPTH) {
			m->parts[idx].plain = 1;
		} else {
			m->parts[idx].kind = IMAP_PART_MULTI;
			rc = parse_multipart(m, idx, b, strcmp(ct.subtype, "digest") == 0, depth);
			if (rc == -1) {
				/* no delimiter: nothing to list, show the body as text */
				m->parts[idx].kind = IMAP_PART_LEAF;
				m->parts[idx].plain = 1;
				m->parts[idx].child = -1;
				rc = 0;
			}
		}
	} else if (strcmp(ct.type, "message") == 0 && strcmp(ct.subtype, "rfc822") == 0) {
		struct pt_strbuf enc = { 0 };
		int encoded = imap_part_header(m, p, "content-transfer-encoding", &enc)
		              && !imap_ascii_caseeq(enc.p, enc.len, "7bit")
		              && !imap_ascii_caseeq(enc.p, enc.len, "8bit")
		              && !imap_ascii_caseeq(enc.p, enc.len, "binary");
		pt_strbuf_free(&enc);
		int c;
		if (encoded || depth >= IMAP_MSG_MAX_DEPTH) {
			m->parts[idx].plain = 1; /* cannot look inside */
		} else if ((c = new_part(m)) >= 0) {
			p = &m->parts[idx];
			split_header(m, &m->parts[c], p->body_off, p->body_len);
			p->kind = IMAP_PART_MESSAGE;
			p->child = c;
			rc = parse_node(m, c, depth + 1);
		} else if (c == -2) {
			rc = -2;
		} else {
			m->parts[idx].plain = 1;
		}
	}
	imap_ctype_free(&ct);
	return rc;
}

struct imap_msg *
imap_msg_parse(const char *data, size_t len)
{
	struct imap_msg *m = calloc(1, sizeof *m);
	if (m == NULL)
		return NULL;
	m->data = data ? data : "";
	m->len = data ? len : 0;
	if (new_part(m) != 0) {
		imap_msg_free(m);
		return NULL;
	}
	split_header(m, &m->parts[0], 0, m->len);
	if (parse_node(m, 0, 0) == -2) {
		imap_msg_free(m);
		return NULL;
	}
	return m;
}

void
imap_msg_free(struct imap_msg *m)
{
	if (m == NULL)
		return;
	free(m->parts);
	free(m);
}

/* ---- IMAP strings ---- */

/* In one pass with the room reserved once: ENVELOPE writes ten to twenty
 * such strings per message. */
void
imap_msg_put_nstring(struct pt_strbuf *out, const char *s, size_t len)
{
	if (s == NULL) {
		pt_strbuf_put(out, "NIL", 3);
		return;
	}
	size_t quote = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' || c == '\n' || c == '\0' || c >= 0x80) {
			pt_strbuf_printf(out, "{%zu}\r\n", len);
			pt_strbuf_put(out, s, len);
			return;
		}
		quote += c == '"' || c == '\\';
	}
	if (pt_strbuf_reserve(out, len + quote + 2) != 0)
		return;
	char *o = out->p + out->len;
	*o++ = '"';
	if (quote == 0) {
		memcpy(o, s, len);
		o += len;
	} else {
		for (size_t i = 0; i < len; i++) {
			if (s[i] == '"' || s[i] == '\\')
				*o++ = '\\';
			*o++ = s[i];
		}
	}
	*o++ = '"';
	out->len = (size_t)(o - out->p);
	out->p[out->len] = '\0';
}
