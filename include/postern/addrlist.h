/* Qualification of header addresses in locally submitted mail, as
 * Postfix's cleanup does it (append_at_myorigin, append_dot_mydomain):
 * "To: alice" becomes "To: alice@example.org", "bob@host" becomes
 * "bob@host.example.org". Everything else of the field is kept byte for
 * byte: display names, quoted strings, comments, groups, folding. */
#ifndef POSTERN_ADDRLIST_H
#define POSTERN_ADDRLIST_H

#include <stddef.h>

#include "postern/strbuf.h"

struct pt_config;

struct pt_addr_qualify {
	const char *origin;  /* "@origin" after a local part alone; NULL/"" = none */
	const char *domain;  /* ".domain" after a domain without a dot; NULL/"" = none */
};

/* The values for conf: myorigin when append_at_myorigin is on, mydomain
 * when append_dot_mydomain is on. */
void pt_addr_qualify_init(struct pt_addr_qualify *q, const struct pt_config *conf);

/* One address-list field value (what follows the colon, folding kept):
 * appends it to out with every address qualified. Returns how many
 * addresses changed (0: out got an exact copy), or -1 out of memory. An
 * address the parser cannot read for certain (unbalanced quote, comment
 * or angle bracket, stray specials) is left as it is. */
int pt_addrlist_qualify(const char *value, size_t len, const struct pt_addr_qualify *q,
                        struct pt_strbuf *out);

/* The message's header section (LF or CR LF, up to its empty line or the
 * first line that is no field): From, Sender, Reply-To, To, Cc, Bcc (and
 * their Resent- forms), Apparently-To, Errors-To, Return-Receipt-To and
 * Disposition-Notification-To qualified. 0: nothing to change, out untouched;
 * 1: out holds the whole message rewritten; -1: out of memory. */
int pt_hdr_qualify(const char *msg, size_t len, const struct pt_addr_qualify *q, struct pt_strbuf *out);

/* pt_hdr_qualify with the values of the configuration this process
 * serves (modules: a session of a local_header_rewrite_clients client). */
int pt_hdr_qualify_local(const char *msg, size_t len, struct pt_strbuf *out);

#endif
