/* Internals of the outbound SMTP client (the transport module's "smtp" and
 * "relay" transports) shared by its files (relay*.c) and its unit tests: reply parser, body encoder, next-hop resolution, the
 * non-blocking client socket with TLS, sessions and destinations. */
#ifndef POSTERN_RELAY_INT_H
#define POSTERN_RELAY_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "postern/dns.h"
#include "postern/event.h"
#include "postern/config.h"
#include "postern/services.h"
#include "postern/transport.h"

/* ---- server replies (relay_reply.c) ---- */

#define RELAY_REPLY_TEXT_MAX 2048
#define RELAY_REPLY_LINE_MAX 1024

struct relay_reply {
	int code;                     /* 3 digits of the last line */
	char dsn[16];                 /* enhanced status of the first line, "" if none */
	char text[RELAY_REPLY_TEXT_MAX]; /* every line as received, '\n' between them */
	size_t len;
	unsigned nlines;
	/* parser state: the line being received */
	char line[RELAY_REPLY_LINE_MAX];
	size_t llen;
	int malformed;                /* a line did not start with a code */
};

void relay_reply_reset(struct relay_reply *r);
/* Take bytes of server output. 1: a complete reply is in r and *used bytes
 * were taken (the rest belongs to the next reply); 0: all of data was
 * taken, more is needed; -1: a line of the reply is not "DDD[ -]text"
 * (*used bytes taken, up to the end of the reply or of the bad line). */
int relay_reply_feed(struct relay_reply *r, const char *data, size_t len, size_t *used);
/* The reply on one line (lines joined with a space) as Postfix quotes it. */
void relay_reply_oneline(const struct relay_reply *r, char *out, size_t outlen);

/* What a server's EHLO reply offers. */
struct relay_ext {
	int pipelining, starttls, eightbitmime, smtputf8, size;
	unsigned long long size_limit;  /* 0 = none given */
};
void relay_ehlo_parse(const struct relay_reply *r, struct relay_ext *ext);

/* ---- message body (relay_encode.c) ---- */

struct relay_enc {
	size_t pos;                   /* next input byte */
	int bol;                      /* at the start of a line */
	int done;                     /* terminator written */
};
void relay_enc_init(struct relay_enc *e);
/* Encode the stored message (LF line ends) for DATA: every line end
 * becomes CRLF (a stored CRLF stays one, a bare CR counts as a line end),
 * a line starting with '.' gets another, and the end is "CRLF.CRLF" (the
 * CRLF only when the text does not end with a line end). Writes at most
 * cap bytes (cap >= 3), returns how many; e->done once the end is out. */
size_t relay_encode(struct relay_enc *e, const char *in, size_t len, char *out, size_t cap);
/* Bytes the encoded message will have (for SIZE=). */
unsigned long long relay_encoded_size(const char *in, size_t len);
/* 1 when any byte has the high bit set. */
int relay_is_8bit(const char *s, size_t len);

/* ---- next hops (relay_dest.c) ---- */

struct relay_addr {
	char host[256];               /* name as it appears in relay= */
	char ip[64];                  /* printable address */
	struct sockaddr_storage sa;
	socklen_t salen;
};

struct relay_mx {
	char name[256];
	unsigned pref;
};
/* MX records (other types ignored) by ascending preference, records of
 * equal preference in random order (rnd(arg) gives the randomness; NULL =
 * random()), duplicates dropped. Returns how many went to out (at most
 * cap); -1 when the domain publishes a null MX (RFC 7505). */
long relay_mx_order(const struct pt_dns_rr *rr, size_t n, struct relay_mx *out, size_t cap,
                    unsigned (*rnd)(void *arg), void *arg);

/* Addresses for nexthop ("[host]" or "host", port): an IP literal as is,
 * "[name]" by A then AAAA, "name" by MX (then A/AAAA of each exchange in
 * order), falling back to the name's own A/AAAA without MX records.
 * done runs on the loop (never before return) with the list, or n = 0 and
 * err filled (4xx try later, 5xx bounce). At most RELAY_MAX_ADDRS. */
#define RELAY_MAX_ADDRS 10
typedef void relay_resolve_fn(void *arg, const struct relay_addr *v, size_t n, const struct pt_status *err);
int relay_resolve(struct pt_loop *loop, const char *nexthop, unsigned port, relay_resolve_fn *done, void *arg);

/* ---- client socket (relay_io.c) ---- */

enum relay_io_event { RELAY_IO_CONNECTED, RELAY_IO_INPUT, RELAY_IO_DRAINED, RELAY_IO_TLS_DONE,
	RELAY_IO_EOF, RELAY_IO_ERROR };
struct relay_io;
/* The callback returns 1 when it freed io (the caller must not touch it). */
typedef int relay_io_fn(struct relay_io *io, enum relay_io_event ev, void *arg);

/* Start a non-blocking connect to a; NULL with errno on immediate failure. */
struct relay_io *relay_io_connect(struct pt_loop *loop, const struct relay_addr *a, relay_io_fn *cb, void *arg);
void relay_io_free(struct relay_io *io);
int relay_io_write(struct relay_io *io, const void *data, size_t len);
size_t relay_io_pending(const struct relay_io *io);
/* Buffered input: pointer and length; consume n bytes. */
const char *relay_io_rbuf(struct relay_io *io, size_t *len);
void relay_io_consume(struct relay_io *io, size_t n);
/* Begin a client TLS handshake (sni: server name or NULL); TLS_DONE or
 * ERROR follows. -1 when no TLS client context can be made. */
int relay_io_starttls(struct relay_io *io, const char *sni);
int relay_io_is_tls(const struct relay_io *io);
const char *relay_io_tls_version(const struct relay_io *io);
const char *relay_io_tls_cipher(const struct relay_io *io);
/* The reason of the last ERROR ("Connection refused", a TLS error). */
const char *relay_io_error(const struct relay_io *io);

/* ---- settings (relay.c) ---- */

enum relay_tls_level { RELAY_TLS_NONE, RELAY_TLS_MAY, RELAY_TLS_ENCRYPT };
struct relay_settings {
	unsigned connect_ms, helo_ms, mail_ms, rcpt_ms, data_init_ms, data_xfer_ms, data_done_ms;
	unsigned starttls_ms, rset_ms, quit_ms, cache_ms;
	enum relay_tls_level tls;
	char helo_name[256];
	unsigned concurrency;
};
/* From the module's parameters in c. */
void relay_settings_load(const struct pt_config *c, struct relay_settings *s);
/* "none", "may", "encrypt"; 0 or -1 (also smtp_tls_security_level's validator). */
int relay_tls_level_parse(const char *v, enum relay_tls_level *out);
/* The settings deliveries from now on use (module init, tests). */
void relay_configure(const struct relay_settings *s);

/* ---- the transport (relay.c) ---- */

/* pt_transport_ops.deliver of "smtp" and "relay". */
void relay_deliver(struct pt_loop *loop, const struct pt_transport_msg *msg, struct pt_transport_rcpt *rcpt,
                   size_t n, void (*done)(void *arg), void *arg);
/* Close cached idle connections (module stop, tests). */
void relay_close_idle(void);

/* ---- jobs, sessions and destinations (relay_job.c, relay_session.c,
 * relay.c; each calls only the ones before it by name) ---- */

struct relay_rcpt {
	const char *address;
	const char *orig;
	struct pt_status *out;        /* outcome goes here */
	int accepted;                 /* RCPT TO got 2xx in this transaction */
	int final;                    /* out holds the outcome */
	char relay[320];              /* "host[ip]:port" or "none" for the log */
};

struct relay_dest;

/* One message to one next hop. */
struct relay_job {
	struct relay_dest *dest;
	const char *queue_id, *sender, *data;
	size_t len;
	size_t nrcpt;
	struct relay_rcpt *rcpt;
	int need_8bit, need_utf8;
	struct timeval t_start, t_session, t_xfer;
	double t_before;
	void (*done)(struct relay_job *job);
	void *owner;
	struct relay_job *next;       /* destination's wait list */
};

struct relay_session;

/* What a session tells its destination (relay.c): handed over as data
 * so that sessions never call the destination code by name. */
struct relay_dest_ops {
	/* The session has no job: give it the next waiting one (1) or not (0). */
	int (*free_for_work)(struct relay_dest *d, struct relay_session *ss);
	void (*idle)(struct relay_dest *d, struct relay_session *ss);
	void (*unidle)(struct relay_dest *d, struct relay_session *ss);
	/* The session is gone. failed: it never got to a transaction and
	 * says why: waiting jobs share that fate when no other session is left. */
	void (*gone)(struct relay_dest *d, const struct pt_status *failed, const char *relay);
	/* A job a reused session could not start goes back to the front. */
	void (*requeue)(struct relay_dest *d, struct relay_job *job);
};

struct relay_dest {
	const struct relay_dest_ops *ops;
	struct pt_loop *loop;
	struct relay_settings set;    /* as of the latest job */
	char key[300];                /* "nexthop:port" */
	char nexthop[256];
	unsigned port;
	size_t nsessions;
	struct relay_session *idle;   /* cached connections */
	struct relay_job *wait, **wait_tail;
	struct relay_dest *next;
};

/* Session side (relay_session.c). */
struct relay_session *relay_session_new(struct pt_loop *loop, struct relay_dest *d, struct relay_job *job,
                                        const struct relay_settings *s);
/* Give an idle session a job: RSET, then the transaction. */
void relay_session_reuse(struct relay_session *ss, struct relay_job *job);
void relay_session_close(struct relay_session *ss);
/* The destination's idle list is linked through the sessions. */
struct relay_session *relay_session_next_idle(struct relay_session *ss);
void relay_session_set_next_idle(struct relay_session *ss, struct relay_session *next);

/* Jobs (relay_job.c). The job is finished (every recipient's outcome
 * set): log, hand back. */
void relay_job_finish(struct relay_job *job);
/* Recipient outcome helpers. */
void relay_rcpt_set(struct relay_rcpt *r, int code, const char *dsn, const char *relay, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* Every recipient not final yet gets this. */
void relay_job_fail_rest(struct relay_job *job, const struct pt_status *st, const char *relay);

#endif
