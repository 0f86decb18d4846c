/* The SMTP client's host name, found as Postfix finds it: the hosts file
 * (smtpd_hosts_file), then
 * a PTR lookup whose answer must resolve back to the client's address
 * (forward-confirmed), else "unknown". Never blocks the loop. */
#ifndef SMTP_CLIENT_NAME_H
#define SMTP_CLIENT_NAME_H

#include <stddef.h>

struct pt_loop;
struct smtp_name_lookup;

#define SMTP_NAME_MAX 256

/* name: forward-confirmed name or "unknown" (Postfix's client_name);
 * reverse: the PTR name whether or not it confirmed, or "unknown"
 * (reverse_client_name). Both are valid only during the call. */
typedef void smtp_name_cb(void *arg, const char *name, const char *reverse);

/* Start finding the name of addr. Returns a handle, and cb runs once,
 * later, from the loop, even when the answer is known at once (a
 * hosts-file answer, a disabled lookup); or NULL (out of memory) and cb
 * never runs. timeout_ms 0: no lookup, "unknown".
 * hosts_file: the hosts(5) file asked before DNS; NULL or "": DNS only. */
struct smtp_name_lookup *smtp_client_name_start(struct pt_loop *loop, const char *addr, const char *hosts_file,
                                                unsigned timeout_ms, smtp_name_cb *cb, void *arg);
/* The caller no longer wants the answer (its session ended): cb is not
 * called; the handle frees itself once its DNS queries are back. */
void smtp_client_name_cancel(struct smtp_name_lookup *l);

/* hosts(5) text: the first name listed for addr (compared as an address,
 * so "::1" and "0:0::1" match). 1 found, 0 not. */
int smtp_hosts_name(const char *text, size_t len, const char *addr, char *out, size_t outlen);
/* Does hosts(5) text list addr for name (any of its names, any case)? */
int smtp_hosts_has(const char *text, size_t len, const char *name, const char *addr);
/* A PTR answer usable as a client name: a valid host name (letters,
 * digits, '-', '_', dots; labels 1-63, at most 255) that is not an
 * address in disguise (Postfix refuses numeric names). */
int smtp_client_name_valid(const char *name);
/* Same address, textually different forms allowed (IPv4-mapped IPv6 too). */
int smtp_addr_equal(const char *a, const char *b);

#endif
