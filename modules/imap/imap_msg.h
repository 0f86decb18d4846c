/* The IMAP module's message library: MIME structure, ENVELOPE,
 * BODYSTRUCTURE, BODY[section] extraction, SEARCH, sequence sets, dates
 * and modified UTF-7 mailbox names. Pure functions over a message's wire
 * form (CRLF line ends, as struct pt_msg_text gives it); no I/O. */
#ifndef POSTERN_IMAP_MSG_H
#define POSTERN_IMAP_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "postern/mailbox.h"
#include "postern/strbuf.h"
#include "imap_arg.h"

/* ---- imap_seqset.c: "1:3,5,7:*" ---- */

/* "*" is kept apart from every number: 4294967295 is a valid UID that
 * names only itself, not the largest. */
#define IMAP_SEQ_STAR ((uint64_t)UINT32_MAX + 1)
struct imap_seqset {
	struct imap_range { uint64_t lo, hi; } *r; /* lo <= hi after star resolution */
	size_t n;
};
/* 0, or -1 (syntax: empty, 0, junk). "*" is kept as IMAP_SEQ_STAR. */
int imap_seqset_parse(const char *s, size_t len, struct imap_seqset *out);
/* v in the set, with "*" meaning star (the largest seq/uid in the folder). */
int imap_seqset_contains(const struct imap_seqset *set, uint32_t v, uint32_t star);
void imap_seqset_free(struct imap_seqset *set);
/* Format ascending values as a compact set ("1:3,7") for COPYUID etc. */
void imap_seqset_format(const uint32_t *v, size_t n, struct pt_strbuf *out);

/* ---- imap_subject.c: SORT / THREAD (RFC 5256) ---- */

/* The base subject of a Subject: value (RFC 5256 §2.1: encoded words
 * decoded, "Re:", "Fwd:", "[blob]" leaders, "(fwd)" trailers and
 * "[fwd: ...]" wrappers removed), appended to out (NUL-terminated);
 * *reply (may be NULL) tells whether anything reply-like was removed. */
void imap_base_subject(const char *v, size_t len, struct pt_strbuf *out, int *reply);
/* i;unicode-casemap (RFC 5051): the octet order of the two strings'
 * canonical forms (postern/unicode_casemap.h); ASCII as i;ascii-casemap. */
int imap_casemap_cmp(const char *a, size_t alen, const char *b, size_t blen);

/* ---- imap_date.c ---- */

/* date-time "17-Jul-1996 02:44:25 -0700" (APPEND; day may be " 7"):
 * 0 with *t (UTC) and *tz_minutes, or -1. */
int imap_datetime_parse(const char *s, size_t len, time_t *t, int *tz_minutes);
/* date "1-Feb-1994" (SEARCH): 0 with *t = that day 00:00 UTC, or -1. */
int imap_date_parse(const char *s, size_t len, time_t *t);
/* "17-Jul-1996 02:44:25 -0700" (INTERNALDATE, without quotes). */
void imap_datetime_format(time_t t, int tz_minutes, char out[32]);
/* RFC 5322 Date: header value -> time (for SENTBEFORE etc.); -1 unparsable. */
int imap_rfc822_date_parse(const char *s, size_t len, time_t *t, int *tz_minutes);

/* ---- imap_utf7.c: mailbox names (RFC 3501 §5.1.3) ---- */

/* modified UTF-7 -> UTF-8 / UTF-8 -> modified UTF-7. 0, or -1 when the
 * input is not valid in its encoding. */
int imap_utf7_decode(const char *in, size_t len, struct pt_strbuf *out);
int imap_utf7_encode(const char *in, size_t len, struct pt_strbuf *out);

/* ---- imap_mime.c: structure of one message ---- */

struct imap_msg;   /* parsed structure; points into the text, no copy */
/* NULL only when out of memory. Any byte sequence parses (malformed MIME
 * degrades to text/plain); nesting depth and part count are bounded. */
struct imap_msg *imap_msg_parse(const char *data, size_t len);
void imap_msg_free(struct imap_msg *m);

/* ENVELOPE / BODY / BODYSTRUCTURE as IMAP text ("(...)"), appended. */
void imap_msg_envelope(const struct imap_msg *m, struct pt_strbuf *out);
void imap_msg_bodystructure(const struct imap_msg *m, int extended, struct pt_strbuf *out);

/* A BODY[...] section: "", "HEADER", "TEXT", "1.2", "1.2.MIME",
 * "HEADER.FIELDS (From To)", "1.HEADER.FIELDS.NOT (X)". */
enum imap_section_kind { IMAP_SEC_ALL, IMAP_SEC_HEADER, IMAP_SEC_HEADER_FIELDS,
	IMAP_SEC_HEADER_FIELDS_NOT, IMAP_SEC_TEXT, IMAP_SEC_MIME };
#define IMAP_SECTION_DEPTH 32
#define IMAP_SECTION_FIELDS 64
struct imap_section {
	unsigned part[IMAP_SECTION_DEPTH];
	size_t nparts;
	enum imap_section_kind kind;
	char *fields[IMAP_SECTION_FIELDS]; /* owned, freed by imap_section_free */
	size_t nfields;
};
/* Parse the text between '[' and ']'. 0, or -1 (syntax). */
int imap_section_parse(const char *s, size_t len, struct imap_section *out);
void imap_section_free(struct imap_section *sec);
/* The section's octets (a part that does not exist gives ""), appended. */
void imap_msg_section(const struct imap_msg *m, const struct imap_section *sec,
                      struct pt_strbuf *out);
/* Whether the part a section names is in the message (a CATENATE URL to
 * one that is not is refused; FETCH answers "" for it). */
int imap_msg_section_exists(const struct imap_msg *m, const struct imap_section *sec);

/* BINARY[part] (RFC 3516; sec holds part numbers only): the part's body
 * with its Content-Transfer-Encoding undone (a multipart or message part
 * as it is, the empty section the whole message), appended to out (NULL:
 * only check). 0, or -1 when the part's encoding is unknown. */
int imap_msg_binary(const struct imap_msg *m, const struct imap_section *sec, struct pt_strbuf *out);

/* ---- imap_search.c: SEARCH keys (RFC 3501 §6.4.4) ---- */

struct imap_search;
/* What evaluation needs to know about one message. */
struct imap_search_msg {
	uint32_t seq;
	const struct pt_msg_info *info;
	/* Parsed message, loaded on first need (header/body keys); NULL when
	 * it cannot be read (the key then does not match). */
	const struct imap_msg *(*load)(void *arg);
	void *arg;
	/* The fields pt_header_cached() names, as a header section (the
	 * store's header_fields), for keys on those fields only: 1 with
	 * *hdr, else load() is used. May be NULL. */
	int (*load_header)(void *arg, const char **hdr, size_t *len);
};
struct imap_search_env {
	uint32_t max_seq, max_uid;    /* for "*" */
	/* keyword bit in the folder, -1 when unknown (KEYWORD x never
	 * matches, UNKEYWORD x always does) */
	int (*keyword_bit)(void *arg, const char *name);
	void *arg;
	/* whether uid is in the saved result "$" (RFC 5182); NULL = empty */
	int (*saved)(void *arg, uint32_t uid);
};
/* Compile the keys (args after "SEARCH" and an optional "CHARSET x",
 * which the caller checked: US-ASCII and UTF-8 only). NULL with err set
 * for a syntax error ("Unknown argument FOO"). */
struct imap_search *imap_search_parse(const struct imap_arg *args, size_t n,
                                      char *err, size_t errlen);
/* 1 match, 0 no. */
int imap_search_match(const struct imap_search *s, const struct imap_search_env *env,
                      const struct imap_search_msg *msg);
/* Whether any key needs the message text (else load() is never called). */
int imap_search_needs_text(const struct imap_search *s);
/* Whether a MODSEQ key is used (the reply then tells the highest). */
int imap_search_has_modseq(const struct imap_search *s);
/* An id "<...>" (no other '>') every match must hold in a Message-ID
 * field (a HEADER Message-ID key ANDed at the top): 1 with *key, *len
 * (the search's own string), else 0. The store's index of ids can then
 * name the candidates. */
int imap_search_msgid(const struct imap_search *s, const char **key, size_t *len);
void imap_search_free(struct imap_search *s);

#endif
