/* i;unicode-casemap (RFC 5051), the default comparator of IMAP's
 * I18NLEVEL=1 (RFC 5255): strings compare, and are searched, as their
 * "titlecased canonicalized UTF-8" forms -- each code point replaced by
 * its simple titlecase mapping, then by its full (canonical and
 * compatibility) decomposition, again on each resulting code point, as
 * UnicodeData.txt gives them. So U+FB01 (the fi ligature) = "FI" = "fi",
 * U+00E9 (e acute) = "E" U+0301, and the three sigmas are one; U+00DF
 * (sharp s) stays itself (it has no simple mapping).
 *
 * Input is UTF-8. An octet that does not start a well-formed sequence
 * (overlong, surrogate, past U+10FFFF, cut short) stands for itself and is
 * not changed -- RFC 5051 would compare the whole string by octets then;
 * keeping the valid rest case-insensitive is what a searcher expects (and
 * Dovecot does likewise). Pure ASCII maps to ASCII uppercase, so those
 * answers are i;ascii-casemap's. Work is bounded per input octet (a form
 * is at most UCM_MAX_FORM octets). */
#ifndef POSTERN_UNICODE_CASEMAP_H
#define POSTERN_UNICODE_CASEMAP_H

#include <stddef.h>

#include "postern/strbuf.h"

/* Appends the canonical form of s[0..len) to out (NUL-terminated). */
void pt_casemap_fold(const char *s, size_t len, struct pt_strbuf *out);
/* b's text replaced by its canonical form, in place when it is ASCII
 * (no allocation); b keeps its buffer for reuse either way. */
void pt_casemap_fold_buf(struct pt_strbuf *b);
/* Octet order of the canonical forms of a and b: <0, 0 or >0 (a form
 * that is a prefix of the other first). Allocates nothing. */
int pt_casemap_cmp(const char *a, size_t alen, const char *b, size_t blen);
/* 1 when the canonical form of needle occurs in that of hay (an empty
 * needle always does), else 0; linear in hay + needle. 0 too when out of
 * memory for a needle of more than 256 canonical octets. */
int pt_casemap_contains(const char *hay, size_t hlen, const char *needle, size_t nlen);
/* A needle folded and its search table built once, for searching many
 * texts (SEARCH: every message of a folder): pt_casemap_needle_in gives
 * pt_casemap_contains's answer. init: 0, or -1 out of memory (n is then
 * empty and must not be searched with); free releases it. */
struct pt_casemap_needle {
	char *form;
	size_t len;      /* 0: the empty needle, found everywhere */
	size_t *fail;
};
int pt_casemap_needle_init(struct pt_casemap_needle *n, const char *needle, size_t nlen);
void pt_casemap_needle_free(struct pt_casemap_needle *n);
int pt_casemap_needle_in(const struct pt_casemap_needle *n, const char *hay, size_t hlen);

#endif
