/* Internals shared by the message library's files (imap_mime.c and the
 * ENVELOPE, BODYSTRUCTURE, section and SEARCH code): the part tree and
 * header-field helpers. Not for the rest of the module. */
#ifndef POSTERN_IMAP_MSG_INT_H
#define POSTERN_IMAP_MSG_INT_H

#include <stddef.h>

#include "imap_msg.h"
#include "postern/header.h"

#define IMAP_MSG_MAX_DEPTH 32
#define IMAP_MSG_MAX_PARTS 1000
#define IMAP_PARAMS_MAX 32

enum imap_part_kind {
	IMAP_PART_LEAF,      /* a basic body */
	IMAP_PART_MULTI,     /* a multipart type with children */
	IMAP_PART_MESSAGE,   /* message/rfc822: child is the embedded message */
};

/* One node. Offsets are into imap_msg.data. A "message" node (the root or
 * the child of a MESSAGE part) has the message's header and body; other
 * nodes have their MIME header and body. */
struct imap_part {
	size_t hdr_off, hdr_len;   /* header incl. its empty line */
	size_t body_off, body_len;
	size_t lines;              /* LFs in the body */
	enum imap_part_kind kind;
	int plain;                 /* malformed or too deep: shown as text/plain */
	int digest_child;          /* default type message/rfc822 (in multipart/digest) */
	int child, next;           /* indexes into parts, -1 none */
	int nchildren;
};

struct imap_msg {
	const char *data;
	size_t len;
	struct imap_part *parts;
	size_t nparts, cap;
};

/* First field called name in a part's header, unfolded and trimmed into
 * out; 1 found, 0 not. */
int imap_part_header(const struct imap_msg *m, const struct imap_part *p, const char *name,
                     struct pt_strbuf *out);

/* A Content-Type / Content-Disposition value: type (and subtype) lower
 * case, parameters with lower-case names in order. Strings are owned. */
struct imap_ctype {
	char *type, *subtype;
	struct { char *name, *value; } param[IMAP_PARAMS_MAX];
	size_t nparams;
};
/* 0, or -1 when the value has no valid type (with_subtype: "a/b"). */
int imap_ctype_parse(const char *v, size_t len, int with_subtype, struct imap_ctype *ct);
const char *imap_ctype_param(const struct imap_ctype *ct, const char *name);
void imap_ctype_free(struct imap_ctype *ct);
/* The part's effective Content-Type (defaults applied, "plain" honoured). */
void imap_part_ctype(const struct imap_msg *m, const struct imap_part *p, struct imap_ctype *ct);

/* ASCII case-insensitive compare of n bytes / of a counted string to a C string. */
int imap_ascii_casecmp_n(const char *a, const char *b, size_t n);
int imap_ascii_caseeq(const char *a, size_t alen, const char *b);

/* An IMAP string: NIL for NULL, quoted when it can be, else a literal. */
void imap_msg_put_nstring(struct pt_strbuf *out, const char *s, size_t len);
/* An address list header value (unfolded) as SEARCH sees it: each address
 * as "Name <local@domain>" (the name from the phrase or an old-style
 * comment), groups as "name: ...;", comments and stray spaces gone. */
void imap_msg_address_text(const char *v, size_t len, struct pt_strbuf *out);

/* The first address of an address list: its mailbox (local part) and
 * its display form (the decoded name, else local@domain), appended. */
void imap_msg_first_address(const char *v, size_t len, struct pt_strbuf *mailbox, struct pt_strbuf *display);

/* Decode RFC 2047 encoded words of a header value into UTF-8 text
 * (utf-8, us-ascii, iso-8859-1; other charsets left raw). */
void imap_msg_decode_header(const char *v, size_t len, struct pt_strbuf *out);
/* A part's body with its Content-Transfer-Encoding undone (quoted-
 * printable, base64; others as they are) and ISO-8859-1 text as UTF-8. */
void imap_msg_decode_body(const struct imap_msg *m, const struct imap_part *p,
                          struct pt_strbuf *out);

/* ENVELOPE of a message node. */
void imap_msg_envelope_part(const struct imap_msg *m, const struct imap_part *p,
                            struct pt_strbuf *out);

/* A base64 digit's value, or -1; the 64th digit is '/' in MIME (RFC 2045)
 * and ',' in modified UTF-7 mailbox names (RFC 3501 §5.1.3). */
static inline int
imap_b64val(unsigned char c, unsigned char last)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	return c == last ? 63 : -1;
}

#endif
