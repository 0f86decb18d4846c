/* A parsed IMAP command argument (RFC 3501 §4, §9): what the command
 * reader (imap_parse.c) produces and the commands, FETCH and SEARCH
 * consume. Strings are NUL-terminated copies owned by the command. */
#ifndef POSTERN_IMAP_ARG_H
#define POSTERN_IMAP_ARG_H

#include <stddef.h>

enum imap_arg_type {
	IMAP_ARG_ATOM,     /* atom, number, sequence set, flag (\Seen), "*"-ish;
	                      also a FETCH attribute with its section such as
	                      BODY.PEEK[HEADER.FIELDS (From To)]<0.100>, kept as
	                      one atom text exactly as sent */
	IMAP_ARG_STRING,   /* quoted string (unescaped) */
	IMAP_ARG_LITERAL,  /* {n} / {n+} / ~{n} / ~{n+} literal: len bytes, may hold NULs */
	IMAP_ARG_NIL,      /* the atom NIL */
	IMAP_ARG_LIST,     /* ( ... ) */
};

struct imap_arg {
	enum imap_arg_type type;
	const char *s;                /* ATOM/STRING/LITERAL: text, NUL-terminated */
	size_t len;
	struct imap_arg *list;        /* LIST: children */
	size_t n;
};

/* An astring argument as text (ATOM, STRING or LITERAL). The atom NIL is
 * an astring too, the string "NIL" as sent (a mailbox, password, keyword or
 * search string may be called that); where an nstring is wanted, test for
 * IMAP_ARG_NIL first. */
static inline int
imap_arg_is_string(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_STRING || a->type == IMAP_ARG_LITERAL ||
	       a->type == IMAP_ARG_NIL;
}

#endif
