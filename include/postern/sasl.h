/* Server side of SASL PLAIN (RFC 4616) and LOGIN, shared by SMTP AUTH
 * (RFC 4954), IMAP AUTHENTICATE (with SASL-IR) and POP3 AUTH: the protocol
 * module turns each challenge into "334 X" / "+ X" and hands every client
 * response line back; credentials then go to the PT_SVC_AUTH service. */
#ifndef POSTERN_SASL_H
#define POSTERN_SASL_H

#include <stddef.h>

struct pt_config;

#define PT_SASL_USER_MAX 255          /* authcid / authzid bytes */
#define PT_SASL_PASS_MAX 1024         /* password bytes */
#define PT_SASL_RESPONSE_MAX 4096     /* base64 characters in one response */

enum pt_sasl_mech { PT_SASL_NONE = 0, PT_SASL_PLAIN, PT_SASL_LOGIN };

enum pt_sasl_status {
	PT_SASL_CHALLENGE,  /* send pt_sasl_challenge(), read one response line */
	PT_SASL_DONE,       /* credentials ready: pt_sasl_user(), pt_sasl_password() */
	PT_SASL_CANCELLED,  /* client sent "*"; SMTP: 501 5.7.0 Authentication aborted */
	PT_SASL_MALFORMED,  /* not base64 or too long; Postfix+Dovecot answer
	                       "535 5.7.8 Error: authentication failed: " + pt_sasl_error()
	                       ("Invalid base64 data in continued response") */
	PT_SASL_FAILED,     /* decodable but unacceptable (no NUL, foreign authzid,
	                       NUL inside a name): answer as a failed login
	                       (SMTP 535 5.7.8, as for a wrong password) */
};

struct pt_sasl;

/* "PLAIN" / "login" (any case) -> mech; PT_SASL_NONE when unknown. */
enum pt_sasl_mech pt_sasl_mech_parse(const char *name);
const char *pt_sasl_mech_name(enum pt_sasl_mech m);       /* "PLAIN" */

/* One exchange. NULL for PT_SASL_NONE or out of memory. free wipes the
 * password from memory. */
struct pt_sasl *pt_sasl_new(enum pt_sasl_mech m);
void pt_sasl_free(struct pt_sasl *s);

/* Begin, with the initial response if the command carried one (NULL:
 * none; "=": an empty one, RFC 4954 / RFC 4959). */
enum pt_sasl_status pt_sasl_start(struct pt_sasl *s, const char *initial, size_t len);
/* A response line without its CRLF. feed() takes a piece of it (returns
 * PT_SASL_CHALLENGE while more may come, or an error status), step()
 * takes the last piece (possibly empty) and ends the line. */
enum pt_sasl_status pt_sasl_feed(struct pt_sasl *s, const char *data, size_t len);
enum pt_sasl_status pt_sasl_step(struct pt_sasl *s, const char *data, size_t len);

/* Base64 challenge to send after PT_SASL_CHALLENGE ("" = empty one). */
const char *pt_sasl_challenge(const struct pt_sasl *s);
/* After PT_SASL_DONE. authzid is "" when the client sent none (a non-empty
 * one must equal the user, otherwise the exchange FAILED). */
const char *pt_sasl_user(const struct pt_sasl *s);
const char *pt_sasl_password(const struct pt_sasl *s);
const char *pt_sasl_authzid(const struct pt_sasl *s);
/* Why MALFORMED / FAILED, for logs (never contains the password). */
const char *pt_sasl_error(const struct pt_sasl *s);

/* auth_mechanisms lists m. */
int pt_sasl_mech_enabled(const struct pt_config *c, enum pt_sasl_mech m);
/* Dovecot's disable_plaintext_auth: plaintext mechanisms are allowed when
 * it is off, over TLS, or when the client connects from the server's own
 * address (peer == local, "secured" in Dovecot's words). */
int pt_sasl_plaintext_allowed(const struct pt_config *c, int tls, const char *peer_addr,
                              const char *local_addr);

/* Base64 (RFC 4648, with padding). encode: writes a NUL-terminated string,
 * returns its length, or (size_t)-1 when out is too small. */
size_t pt_base64_encode(const void *in, size_t len, char *out, size_t outcap);
/* Strict incremental decoder: only the alphabet and final padding, no white
 * space, canonical trailing bits. feed: 0, -1 bad input, -2 out too small
 * (*outlen counts bytes written so far in out). final: 0 when the input
 * ended on a quantum boundary, -1 otherwise. */
struct pt_base64_dec {
	unsigned char q[4];
	int nq, npad, done, bad;
};
void pt_base64_dec_init(struct pt_base64_dec *d);
int pt_base64_dec_feed(struct pt_base64_dec *d, const char *in, size_t len,
                       unsigned char *out, size_t outcap, size_t *outlen);
int pt_base64_dec_final(const struct pt_base64_dec *d);
/* Whole buffer at once: 0 with *outlen, or -1. */
int pt_base64_decode(const char *in, size_t len, unsigned char *out, size_t outcap, size_t *outlen);

#endif
