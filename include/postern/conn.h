/* A client connection: non-blocking socket, optional TLS, bounded input and
 * output buffers, an idle timeout. Protocol modules read lines or raw bytes
 * from the input buffer in their on_read callback and queue replies. */
#ifndef POSTERN_CONN_H
#define POSTERN_CONN_H

#include <stddef.h>
#include <sys/socket.h>

struct pt_conn;
struct pt_loop;

struct pt_listener {
	const char *service;          /* from pt_listener_decl */
	char name[32];                /* listener name: its *_listen parameter
	                                 without "_listen" ("submission") */
	int implicit_tls;
	char addr[64];                /* printable local address it is bound to */
	unsigned port;
};

/* Callbacks a protocol sets on its connection (pt_conn_set_handlers). */
struct pt_conn_handlers {
	/* New input is buffered (or a TLS handshake finished). Consume what is
	 * complete; what is left stays for the next call. */
	void (*on_read)(struct pt_conn *c);
	/* Peer closed, I/O error, or idle timeout (reason says which). The
	 * protocol frees its state; the core frees the conn afterwards. */
	void (*on_close)(struct pt_conn *c, const char *reason);
	/* Output buffer drained (optional): lets a sender stream more. */
	void (*on_drain)(struct pt_conn *c);
};

void pt_conn_set_handlers(struct pt_conn *c, const struct pt_conn_handlers *h, void *proto);
void *pt_conn_proto(struct pt_conn *c);
struct pt_loop *pt_conn_loop(struct pt_conn *c);

/* Peer and local address: "127.0.0.1", "::1"; port numbers; sockaddr. */
const char *pt_conn_peer_addr(const struct pt_conn *c);
unsigned pt_conn_peer_port(const struct pt_conn *c);
const struct sockaddr *pt_conn_peer_sa(const struct pt_conn *c);
const char *pt_conn_local_addr(const struct pt_conn *c);
unsigned pt_conn_local_port(const struct pt_conn *c);
const struct pt_listener *pt_conn_listener(const struct pt_conn *c);

/* The peer is a front we trust (its address is in the CIDR list parameter
 * trusted_param: login_trusted_networks, smtpd_authorized_xclient_hosts)
 * and told us its client's address (IMAP ID x-originating-ip, XCLIENT
 * ADDR): from now on the conn reports that address and port (logs, the
 * auth throttle, policies). 1 done; 0 refused (peer not trusted, addr not
 * a numeric address), nothing changed. */
int pt_conn_forwarded_client(struct pt_conn *c, const char *trusted_param, const char *addr, unsigned port);
/* 1 when the peer's (socket) address is in the CIDR list parameter. */
int pt_conn_peer_in(const struct pt_conn *c, const char *param);
/* 1 when the peer is a front in login_trusted_networks (also after it
 * named its client with pt_conn_forwarded_client): Dovecot ignores
 * disable_plaintext_auth for those, and so do the IMAP and POP3 logins. */
int pt_conn_trusted_front(const struct pt_conn *c);

/* Input. getline: 1 with *line and *len (without CRLF or LF; *eol tells which
 * ending it had: 2 = CRLF, 1 = bare LF), 0 when no complete line is
 * buffered, -1 when a line exceeds max bytes (the partial line is dropped
 * up to its end, so the caller can reply and go on). */
int pt_conn_getline(struct pt_conn *c, size_t max, const char **line, size_t *len, int *eol);
/* Raw access: pointer to buffered input and its length; consume n bytes. */
const char *pt_conn_rbuf(struct pt_conn *c, size_t *len);
void pt_conn_consume(struct pt_conn *c, size_t n);
/* Stop / restart delivering on_read (while a reply waits on async work);
 * the kernel then holds the peer's data (backpressure). */
void pt_conn_pause(struct pt_conn *c);
void pt_conn_resume(struct pt_conn *c);

/* Output: queued, sent when writable. -1 when the output limit is hit
 * (the conn is then closed). */
int pt_conn_write(struct pt_conn *c, const void *data, size_t len);
int pt_conn_printf(struct pt_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
size_t pt_conn_pending_output(const struct pt_conn *c);
/* Close after the queued output is sent. */
void pt_conn_close_after_write(struct pt_conn *c);
/* Close now (on_close runs with reason). */
void pt_conn_close(struct pt_conn *c, const char *reason);

/* Idle timeout in ms (0 = none): on_close("timeout") fires when nothing
 * arrives for that long. Reset by every read. */
void pt_conn_set_timeout(struct pt_conn *c, unsigned ms);
/* Total deadline ms from now (0 = none): on_close("timeout") fires when it
 * passes, however the peer trickles input meanwhile (reads never move it;
 * a slowloris client cannot hold a pre-login phase open). Independent of
 * the idle timeout; setting it again replaces it. */
void pt_conn_set_deadline(struct pt_conn *c, unsigned ms);

/* TLS. starttls: flush queued output, DISCARD every input byte buffered so
 * far (plaintext pipelined after STARTTLS must never be read as if it came
 * through TLS), then handshake; on_read is called once it completes with
 * nothing buffered; failure closes the conn. Returns -1 when no cert/key
 * is configured (reply 454 then). */
int pt_conn_starttls(struct pt_conn *c);
int pt_conn_tls_available(const struct pt_conn *c);
int pt_conn_is_tls(const struct pt_conn *c);
/* "TLSv1.3" and "TLS_AES_256_GCM_SHA384" and key bits, or NULL/0 without TLS. */
const char *pt_conn_tls_version(const struct pt_conn *c);
const char *pt_conn_tls_cipher(const struct pt_conn *c);
int pt_conn_tls_bits(const struct pt_conn *c);

/* Compression (IMAP COMPRESS=DEFLATE, RFC 4978): from this call on, the
 * peer's bytes are raw deflate and what is written is compressed. Output
 * queued before (the OK that agrees) goes out as it is; input buffered
 * after the current command is already the start of the compressed
 * stream. -1 when already compressing, on a TLS-terminating conn (only a
 * relayed conn, TLS being outside it), or out of memory. */
int pt_conn_compress(struct pt_conn *c);
int pt_conn_is_compressed(const struct pt_conn *c);

#endif
