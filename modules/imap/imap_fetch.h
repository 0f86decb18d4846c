/* FETCH attributes as parsed from the command (imap_fetch_parse.c) and
 * rendered per message (imap_fetch.c); split out so the parser has its own
 * unit test and fuzzer. */
#ifndef POSTERN_IMAP_FETCH_H
#define POSTERN_IMAP_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "imap_arg.h"
#include "imap_msg.h"

enum imap_fetch_kind {
	IMAP_FI_UID,
	IMAP_FI_FLAGS,
	IMAP_FI_INTERNALDATE,
	IMAP_FI_SIZE,                 /* RFC822.SIZE */
	IMAP_FI_ENVELOPE,
	IMAP_FI_BODY,                 /* BODY without a section: non-extended structure */
	IMAP_FI_BODYSTRUCTURE,
	IMAP_FI_SECTION,              /* BODY[...] / BODY.PEEK[...] */
	IMAP_FI_RFC822,               /* = BODY[] */
	IMAP_FI_RFC822_HEADER,        /* = BODY.PEEK[HEADER] */
	IMAP_FI_RFC822_TEXT,          /* = BODY[TEXT] */
	IMAP_FI_BINARY,               /* BINARY[part] / BINARY.PEEK[part] (RFC 3516): decoded */
	IMAP_FI_BINARY_SIZE,          /* BINARY.SIZE[part]: octets BINARY[part] would give */
	IMAP_FI_MODSEQ,               /* RFC 7162 */
};

struct imap_fetch_item {
	enum imap_fetch_kind kind;
	struct imap_section sec;      /* SECTION, BINARY, BINARY_SIZE */
	int peek;                     /* BODY.PEEK[...], BINARY.PEEK[...] */
	int partial;                  /* <off.count> given */
	uint32_t off, count;
	char *name;                   /* the name in the reply: "BODY[HEADER]<0>" */
};

struct imap_fetch_req {
	struct imap_fetch_item *items;
	size_t n;
	int want_uid;                 /* UID is among items */
	int want_flags;               /* FLAGS is among items */
	int needs_text;               /* some item needs the message's octets */
	int needs_parse;              /* some item needs its MIME structure */
	int sets_seen;                /* some item sets \Seen (non-PEEK body) */
	int want_modseq;              /* MODSEQ is among items */
	/* Modifiers (RFC 7162): (CHANGEDSINCE n [VANISHED]) */
	int has_changedsince, vanished;
	uint64_t changedsince;
};

/* Parse FETCH's attribute argument(s): what follows the sequence set (a
 * macro, one attribute, or a parenthesised list). uid: UID FETCH (UID is
 * then always part of the reply, first). 0, or -1 with err set to the text
 * that follows "Error in IMAP command FETCH: ". out is empty on failure. */
int imap_fetch_parse(const struct imap_arg *args, size_t nargs, int uid,
                     struct imap_fetch_req *out, char *err, size_t errlen);
void imap_fetch_req_free(struct imap_fetch_req *r);
/* Add UID and MODSEQ to r unless there (CONDSTORE: a FETCH that sets
 * \Seen reports both, RFC 7162 §3.1). 0 or -1. */
int imap_fetch_add_modseq(struct imap_fetch_req *r);

#endif
