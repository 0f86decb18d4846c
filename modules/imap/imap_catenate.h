/* CATENATE (RFC 4469): APPEND of a message put together from TEXT
 * literals and IMAP URLs (RFC 5092) naming messages or parts of them in
 * the logged-in user's own folders on this server. No URLAUTH: a URL to
 * anything else is refused with [BADURL url]. imap_catenate.c. */
#ifndef POSTERN_IMAP_CATENATE_H
#define POSTERN_IMAP_CATENATE_H

#include <stddef.h>
#include <stdint.h>

#include "imap.h"

/* A parsed URL to one message or part. */
struct imap_url {
	char *mailbox;                /* UTF-8; NULL: the selected folder (";UID=n") */
	uint32_t uidvalidity;         /* 0: not given */
	uint32_t uid;
	char *section;                /* decoded section text; NULL: the whole message */
	int partial;                  /* ;PARTIAL=offset[.length] given */
	uint64_t offset, length;      /* length 0: to the end */
};

/* Who and where "this server" is, for an absolute imap:// URL: its
 * user part (if any) must be user, its host one of the names (NULL
 * entries skipped, case-insensitive; an IPv6 address may be bracketed),
 * its port (if any) port or 143/993. */
struct imap_url_self {
	const char *user;
	const char *hosts[4];
	unsigned port;
};

/* 0 with out filled (free with imap_url_free), or -1: not a URL to a
 * message (or part) of this user on this server. */
int imap_url_parse(const char *url, size_t len, const struct imap_url_self *self, struct imap_url *out);
void imap_url_free(struct imap_url *u);

/* Folders opened for one APPEND's URLs, shared by its messages. */
struct imap_cat_cache;
void imap_cat_cache_free(struct imap_session *s, struct imap_cat_cache *c);

/* Whether list (the items of CATENATE's parenthesized list) is well
 * formed: TEXT literal / URL astring, at least one. */
int imap_catenate_valid(const struct imap_arg *list, size_t n);
/* Append the message list describes to out. 0, or -1 with the tagged NO
 * sent ([BADURL url] for a URL that names nothing readable, [TOOBIG]
 * beyond max bytes). *cache is created on first need. */
int imap_catenate_build(struct imap_session *s, const char *tag, const struct imap_arg *list, size_t n,
                        size_t max, struct imap_cat_cache **cache, struct pt_strbuf *out);

#endif
