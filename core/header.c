/* Header field iteration (include/postern/header.h), shared by the IMAP
 * message parser, the SMTP header repair, sendmail and bounces. */
#include <string.h>

#include "postern/header.h"

void
pt_hdr_iter_init(struct pt_hdr_iter *it, const char *hdr, size_t len, int strict)
{
	it->start = it->p = hdr;
	it->end = hdr + len;
	it->strict = strict;
}

/* End of the line at p (after its LF, or end). */
static const char *
line_end(const char *p, const char *end)
{
	const char *lf = memchr(p, '\n', (size_t)(end - p));
	return lf ? lf + 1 : end;
}

/* The name before the colon at p..colon (obs-optional white space before
 * the colon allowed), or 0 when there is none. Strict: only printable
 * ASCII without spaces makes a name (RFC 5322 ftext). */
static size_t
field_name_len(const char *p, const char *colon, int strict)
{
	const char *ne = colon;
	while (ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
		ne--;
	for (const char *c = p; strict && c < ne; c++)
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 127)
			return 0;
	return (size_t)(ne - p);
}

int
pt_hdr_next(struct pt_hdr_iter *it, struct pt_hdr_field *f)
{
	for (;;) {
		if (it->p >= it->end)
			return 0;
		const char *start = it->p;
		if (*start == '\n' || (*start == '\r' && start + 1 < it->end && start[1] == '\n'))
			return 0; /* the empty line */
		const char *e = line_end(start, it->end);
		/* continuation lines belong to this field */
		while (e < it->end && (*e == ' ' || *e == '\t'))
			e = line_end(e, it->end);
		/* Stored mail is read as IMAP clients expect: the colon may even
		 * sit on a continuation line. A submission's field has it on its
		 * first line. */
		const char *scope = it->strict ? line_end(start, it->end) : e;
		const char *colon = memchr(start, ':', (size_t)(scope - start));
		size_t nlen = colon && *start != ' ' && *start != '\t' ? field_name_len(start, colon, it->strict) : 0;
		if (nlen == 0) {
			if (it->strict)
				return 0; /* the body starts here */
			it->p = e;
			continue; /* not a field: skipped */
		}
		it->p = e;
		f->name = start;
		f->name_len = nlen;
		f->raw = start;
		f->raw_len = (size_t)(e - start);
		const char *ve = e;
		if (ve > colon + 1 && ve[-1] == '\n')
			ve--;
		if (ve > colon + 1 && ve[-1] == '\r')
			ve--;
		f->value = colon + 1;
		f->value_len = (size_t)(ve - (colon + 1));
		return 1;
	}
}

size_t
pt_hdr_section_len(const struct pt_hdr_iter *it)
{
	return (size_t)(it->p - it->start);
}

int
pt_hdr_name_is(const struct pt_hdr_field *f, const char *name)
{
	size_t n = strlen(name);
	if (n != f->name_len)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char a = (unsigned char)f->name[i], b = (unsigned char)name[i];
		if (a >= 'A' && a <= 'Z')
			a = (unsigned char)(a + 32);
		if (b >= 'A' && b <= 'Z')
			b = (unsigned char)(b + 32);
		if (a != b)
			return 0;
	}
	return 1;
}

void
pt_hdr_unfold(const char *v, size_t len, struct pt_strbuf *out)
{
	size_t a = 0, b = len;
	while (a < b && (v[a] == ' ' || v[a] == '\t' || v[a] == '\r' || v[a] == '\n'))
		a++;
	while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t' || v[b - 1] == '\r' || v[b - 1] == '\n'))
		b--;
	size_t run = a;
	for (size_t i = a; i < b; i++) {
		if (v[i] == '\r' || v[i] == '\n') {
			pt_strbuf_put(out, v + run, i - run);
			run = i + 1;
		}
	}
	pt_strbuf_put(out, v + run, b - run);
	if (out->p == NULL)
		pt_strbuf_put(out, "", 0);
}
