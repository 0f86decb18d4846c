/* Core-internal glue between connections, listeners and TLS contexts
 * (not part of the module ABI). */
#ifndef POSTERN_CONN_INT_H
#define POSTERN_CONN_INT_H

#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "postern/conn.h"

/* Server-side TLS handshake on a fresh connection (implicit TLS). done()
 * runs once it succeeds, before any on_read; on failure the conn closes
 * with "error: TLS handshake failed: ..." (and done() never runs). */
void pt_conn_tls_accept(struct pt_conn *c, void (*done)(struct pt_conn *c, void *arg), void *arg);

/* Client-side TLS on an outbound conn (the proxy to a backend): ssl is
 * taken over (freed with the conn), input buffered so far is dropped, and
 * done() runs once the handshake succeeded; failure closes the conn. */
void pt_conn_tls_connect(struct pt_conn *c, SSL *ssl, void (*done)(struct pt_conn *c, void *arg), void *arg);

/* A peer that hangs up (a failed write, a reset) with its last output
 * still unread here: read and deliver that output to the end of the
 * stream, dropping what is written to the peer meanwhile, instead of
 * closing at once. For the worker's relay to a mail process, whose last
 * answer ("* BYE") must reach the client; off by default, so an Internet
 * client that hangs up is not served the rest of its input. */
void pt_conn_keep_last_words(struct pt_conn *c);

/* Called once when the conn closes, before on_close (listener counts). */
void pt_conn_set_release(struct pt_conn *c, void (*release)(struct pt_conn *c, void *arg), void *arg);

/* The handlers and protocol state set now (the session handoff puts them
 * back when no mail process takes the conn). */
void pt_conn_get_handlers(const struct pt_conn *c, struct pt_conn_handlers *h, void **proto);

/* A conn relayed from another process (a mail process behind the worker):
 * report the original client's addresses and TLS state instead of the
 * local socket's. pt_conn_tls_available() is 0 on such a conn. */
void pt_conn_set_origin(struct pt_conn *c, const char *peer_addr, unsigned peer_port,
                        const char *local_addr, unsigned local_port, int tls);

/* Byte relays (the session handoff to a mail process, the login proxy
 * to a mailbox host): what from has read goes to to (dropped when to is
 * NULL: that side is gone); from pauses while to has high_water bytes
 * or more waiting, and the owner resumes it from to's on_drain. */
#define PT_RELAY_HIGH_WATER (64 * 1024)
void pt_conn_relay(struct pt_conn *from, struct pt_conn *to);

/* Bytes of heap the conn holds now: struct, buffers (not OpenSSL's). */
size_t pt_conn_memory(const struct pt_conn *c);

/* TLS context (tls.c). cert and key are each a path or PEM text (value
 * starting with "-----BEGIN"); min_proto "TLSv1.2" or "TLSv1.3" (NULL =
 * TLSv1.2). Replaces the context for new handshakes; 0 or -1 + err. */
int pt_tls_configure_pem(const char *cert, const char *key, const char *min_proto,
                         char *err, size_t errlen);
/* A server SSL for fd from the current context, or NULL without one. */
SSL *pt_tls_new_ssl(int fd);
/* Drop the context (tests, shutdown); TLS becomes unavailable. */
void pt_tls_clear(void);
/* The first queued OpenSSL error as text ("" when none); clears the queue. */
const char *pt_tls_error_text(char *buf, size_t len);

/* The deflate layer under a conn (conn_deflate.c, zlib). new: both
 * directions set up, initial (n bytes) the compressed input already
 * received. Input: in_room/in_added fill its buffer from the socket,
 * inflate makes up to room plain bytes (-1: broken stream), in_pending
 * says whether inflate may make more without new input. Output: deflate
 * passes compressed bytes to put (flush: Z_SYNC_FLUSH, dirty: something
 * awaits it). */
struct pt_zstream;
struct pt_zstream *pt_zstream_new(const void *initial, size_t n);
void pt_zstream_free(struct pt_zstream *z);
char *pt_zstream_in_room(struct pt_zstream *z, size_t *room);
void pt_zstream_in_added(struct pt_zstream *z, size_t n);
ssize_t pt_zstream_inflate(struct pt_zstream *z, char *out, size_t room);
int pt_zstream_in_pending(const struct pt_zstream *z);
int pt_zstream_deflate(struct pt_zstream *z, const void *data, size_t len, int flush,
                       int (*put)(void *arg, const void *p, size_t n), void *arg);
int pt_zstream_dirty(const struct pt_zstream *z);

#endif
