/* RFC 5322 header fields of a message or MIME part, one at a time, on
 * LF or CR LF line ends. A field runs over its continuation lines. */
#ifndef POSTERN_HEADER_H
#define POSTERN_HEADER_H

#include <stddef.h>

#include "postern/strbuf.h"

struct pt_hdr_iter {
	const char *start, *p, *end;
	/* 0: a line that is no field is skipped (reading stored mail);
	 * 1: it ends the header section, as the empty line does (Postfix
	 *    cleanup on a submission: what follows is body). */
	int strict;
};
struct pt_hdr_field {
	const char *name;   size_t name_len;   /* "Subject" (no space before the colon) */
	const char *value;  size_t value_len;  /* after ':', folding kept, no line end */
	const char *raw;    size_t raw_len;    /* the whole field incl. its line end */
};

void pt_hdr_iter_init(struct pt_hdr_iter *it, const char *hdr, size_t len, int strict);
/* The next field: 1, or 0 at the end of the header section. */
int pt_hdr_next(struct pt_hdr_iter *it, struct pt_hdr_field *f);
/* After pt_hdr_next returned 0: bytes of the header section, that is the
 * offset of its empty line (or of the line that ended it), or len. */
size_t pt_hdr_section_len(const struct pt_hdr_iter *it);
/* The field's name is name (ASCII, any case). */
int pt_hdr_name_is(const struct pt_hdr_field *f, const char *name);
/* Append a value unfolded (CR and LF dropped) and trimmed at both ends;
 * out holds at least "" afterwards. */
void pt_hdr_unfold(const char *v, size_t len, struct pt_strbuf *out);

#endif
