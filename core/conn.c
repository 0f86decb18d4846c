/* Client connections: non-blocking socket I/O with optional TLS, bounded
 * input/output buffers allocated only while they hold data (an idle conn
 * is just this struct), line reading, idle timeouts and safe closing. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conn_int.h"
#include "net.h"
#include "config_int.h"
#include "postern/metrics.h"
#include "runtime.h"

#define RBUF_INITIAL 4096
#define RBUF_MIN_FREE 1024
#define WBUF_INITIAL 1024

enum tls_state {
	TLS_NONE,
	TLS_WAIT_FLUSH,    /* STARTTLS: sending the last plaintext reply */
	TLS_HANDSHAKE,
	TLS_ON,
};

struct pt_conn {
	struct pt_loop *loop;
	int fd;
	const struct pt_listener *listener;
	struct pt_conn_handlers h;
	void *proto;

	union {
		struct sockaddr sa;
		struct sockaddr_in sin;
		struct sockaddr_in6 sin6;
	} peer;
	char peer_addr[INET6_ADDRSTRLEN];
	char local_addr[INET6_ADDRSTRLEN];
	unsigned short peer_port, local_port;

	/* Input: rlen bytes at rbuf + rpos; scan = bytes known to hold no LF. */
	char *rbuf;
	size_t rcap, rpos, rlen, scan;
	/* Output: wlen bytes at wbuf + wpos; plain_len of them still go out
	 * unencrypted before a STARTTLS handshake. */
	char *wbuf;
	size_t wcap, wpos, wlen, plain_len;

	unsigned timeout_ms;
	uint64_t last_read;
	uint64_t deadline;             /* loop time the conn ends by; 0 = none */
	struct pt_timer *idle_timer;   /* serves the idle timeout and the deadline */
	struct pt_timer *kick_timer;

	SSL *ssl;
	enum tls_state tls;
	unsigned hs_want;          /* events the handshake waits for */
	unsigned tickets_due;      /* TLS 1.3 session tickets held for the first answer */
	void (*tls_done)(struct pt_conn *c, void *arg);
	void *tls_done_arg;

	void (*release)(struct pt_conn *c, void *arg);
	void *release_arg;

	unsigned watched;          /* events registered with the loop */
	int busy;                  /* core frames using the conn: defer free */
	unsigned closed : 1;
	unsigned paused : 1;
	unsigned close_after_write : 1;
	unsigned discard_line : 1;
	unsigned read_wants_write : 1;
	unsigned write_wants_read : 1;
	unsigned eof_pending : 1;      /* TLS close_notify came with data */
	unsigned origin_tls : 1;       /* relayed: the client's side is TLS */
	unsigned relayed : 1;          /* relayed: no STARTTLS here */
	unsigned trusted_front : 1;    /* the socket's peer is in login_trusted_networks */
	unsigned peer_gone : 1;        /* the peer hung up: output is dropped, input still read */
	unsigned last_words : 1;       /* opt-in: a peer that hangs up is read to the end (relay) */
	struct pt_zstream *z;          /* COMPRESS=DEFLATE: the deflate layer */

	struct pt_conn *prev, *next;   /* open connections */
};

static struct pt_conn *open_head;
static size_t open_count;

static void conn_update(struct pt_conn *c);
static void conn_frame_end(struct pt_conn *c);
static void conn_flush(struct pt_conn *c);
static void conn_read(struct pt_conn *c);
static void conn_handshake(struct pt_conn *c);

/* Input already read from the socket but not yet in rbuf: records
 * OpenSSL holds, compressed bytes not yet inflated. */
static int
conn_pending_in(const struct pt_conn *c)
{
	return (c->tls == TLS_ON && SSL_pending(c->ssl) > 0) || (c->z && pt_zstream_in_pending(c->z));
}

static void
conn_free(struct pt_conn *c)
{
	if (c->ssl)
		SSL_free(c->ssl);
	pt_zstream_free(c->z);
	free(c->rbuf);
	free(c->wbuf);
	free(c);
}

/* Leave a core frame: free the conn if it closed meanwhile. Returns 1
 * when the conn is gone. */
static int
conn_leave(struct pt_conn *c)
{
	if (--c->busy == 0 && c->closed) {
		conn_free(c);
		return 1;
	}
	return 0;
}

static void
conn_close_now(struct pt_conn *c, const char *reason)
{
	if (c->closed)
		return;
	c->closed = 1;
	if (c->prev)
		c->prev->next = c->next;
	else
		open_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	open_count--;
	if (c->idle_timer)
		pt_timer_cancel(c->loop, c->idle_timer);
	if (c->kick_timer)
		pt_timer_cancel(c->loop, c->kick_timer);
	c->idle_timer = c->kick_timer = NULL;
	if (c->watched)
		pt_loop_unwatch(c->loop, c->fd);
	c->watched = 0;
	if (c->ssl && c->tls == TLS_ON) {
		/* Best effort close_notify; the socket is non-blocking. */
		ERR_clear_error();
		SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	close(c->fd);
	c->fd = -1;
	c->busy++;
	if (c->h.on_close)
		c->h.on_close(c, reason);
	/* After on_close: the release hook may free what pt_conn_listener()
	 * points at. */
	if (c->release)
		c->release(c, c->release_arg);
	conn_leave(c);
}

void
pt_conn_close(struct pt_conn *c, const char *reason)
{
	conn_close_now(c, reason ? reason : "closed");
}

static void
conn_close_errno(struct pt_conn *c, int err)
{
	char reason[128];

	snprintf(reason, sizeof reason, "error: %s", strerror(err));
	conn_close_now(c, reason);
}

static void
conn_close_tls(struct pt_conn *c, const char *what, int sslerr)
{
	char reason[300], why[200];

	pt_tls_error_text(why, sizeof why);
	if (!why[0]) {
		if (sslerr == SSL_ERROR_SYSCALL && errno)
			snprintf(why, sizeof why, "%s", strerror(errno));
		else
			snprintf(why, sizeof why, "connection closed by peer");
	}
	snprintf(reason, sizeof reason, "error: %s: %s", what, why);
	conn_close_now(c, reason);
}

static void
ignore_sigpipe_once(void)
{
	static int done;
	struct sigaction sa;

	/* OpenSSL writes with write(2): a reset peer must not kill us. Only
	 * the default disposition is changed; a chosen handler stays. */
	if (done)
		return;
	done = 1;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = SIG_IGN;
		sigaction(SIGPIPE, &sa, NULL);
	}
}

static void
sockaddr_text(const struct sockaddr *sa, char *buf, size_t len, unsigned short *port)
{
	buf[0] = '\0';
	*port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s->sin_addr, buf, (socklen_t)len);
		*port = ntohs(s->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;

		/* A v4-mapped peer is shown as plain IPv4, as Postfix does. */
		if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr))
			inet_ntop(AF_INET, &s->sin6_addr.s6_addr[12], buf, (socklen_t)len);
		else
			inet_ntop(AF_INET6, &s->sin6_addr, buf, (socklen_t)len);
		*port = ntohs(s->sin6_port);
	} else if (sa->sa_family == AF_UNIX) {
		snprintf(buf, len, "local");
	}
}

static void
conn_io(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	struct pt_conn *c = arg;

	(void)loop;
	(void)fd;
	c->busy++;
	if (events & PT_EV_ERROR) {
		int err = 0;
		socklen_t len = sizeof err;
		char b;

		/* A peer that exits with our input unread resets the socket,
		 * but what it wrote before is still queued (a mail process's
		 * last "* BYE"): read that first, before a write to the dead
		 * peer fails; the reset then shows as the end of the stream.
		 * Only on conns that asked for it (pt_conn_keep_last_words):
		 * a client that resets is not served the rest of its input. */
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) {
			if (!c->last_words || c->paused || c->tls == TLS_HANDSHAKE ||
			    recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
				conn_close_errno(c, err);
			else
				conn_read(c);
		}
	}
	if (!c->closed && c->tls == TLS_HANDSHAKE) {
		conn_handshake(c);
	} else if (!c->closed) {
		if ((events & (PT_EV_WRITE | PT_EV_ERROR)) || c->write_wants_read)
			conn_flush(c);
		if (!c->closed && ((events & (PT_EV_READ | PT_EV_ERROR)) || c->read_wants_write))
			conn_read(c);
		if (!c->closed)
			conn_flush(c);
	}
	conn_frame_end(c);
	conn_leave(c);
}

/* Register exactly the events the conn waits for now; unregister while it
 * waits for nothing, so a paused conn costs no wakeups. */
static void
conn_update(struct pt_conn *c)
{
	unsigned want = 0;

	if (c->closed)
		return;
	if (c->tls == TLS_HANDSHAKE) {
		want = c->hs_want;
	} else {
		if (c->wlen > 0 || c->close_after_write || c->tls == TLS_WAIT_FLUSH || (c->z && pt_zstream_dirty(c->z)))
			want |= c->write_wants_read ? PT_EV_READ : PT_EV_WRITE;
		if (!c->paused && !c->close_after_write && c->tls != TLS_WAIT_FLUSH &&
		    c->rlen < PT_CONN_RBUF_MAX)
			want |= c->read_wants_write ? PT_EV_WRITE : PT_EV_READ;
	}
	if (want != c->watched) {
		if (want == 0)
			pt_loop_unwatch(c->loop, c->fd);
		else if (pt_loop_watch(c->loop, c->fd, want, conn_io, c) < 0)
			want = 0;
		c->watched = want;
	}
}

static void conn_kick(struct pt_conn *c);

/* End of a core frame: give an emptied input buffer back, make sure
 * input OpenSSL already decrypted gets read, register events. */
static void
conn_frame_end(struct pt_conn *c)
{
	if (c->closed)
		return;
	if (c->rlen == 0 && c->rbuf) {
		free(c->rbuf);
		c->rbuf = NULL;
		c->rcap = c->rpos = c->scan = 0;
	}
	if (!c->paused && !c->close_after_write && c->rlen < PT_CONN_RBUF_MAX && conn_pending_in(c))
		conn_kick(c);
	conn_update(c);
}

static void
conn_kick_fire(struct pt_loop *loop, void *arg)
{
	struct pt_conn *c = arg;

	(void)loop;
	c->kick_timer = NULL;
	c->busy++;
	if (!c->paused && c->tls != TLS_HANDSHAKE && c->tls != TLS_WAIT_FLUSH) {
		if (conn_pending_in(c) && c->rlen < PT_CONN_RBUF_MAX)
			conn_read(c);
		else if (c->rlen > 0 && c->h.on_read)
			c->h.on_read(c);
		if (!c->closed)
			conn_flush(c);
	}
	conn_frame_end(c);
	conn_leave(c);
}

/* Deliver buffered input on the next loop round (resume, TLS records
 * that OpenSSL holds although the socket is quiet). */
static void
conn_kick(struct pt_conn *c)
{
	if (!c->kick_timer && !c->closed)
		c->kick_timer = pt_timer_add(c->loop, 0, conn_kick_fire, c);
}

/* When the idle timeout or the deadline falls due next; 0 = never. */
static uint64_t
conn_due(const struct pt_conn *c)
{
	uint64_t due = c->timeout_ms ? c->last_read + c->timeout_ms : 0;

	if (c->deadline && (due == 0 || c->deadline < due))
		due = c->deadline;
	return due;
}

static void conn_idle_fire(struct pt_loop *loop, void *arg);

static void
conn_arm(struct pt_conn *c)
{
	uint64_t now = pt_loop_now(c->loop), due = conn_due(c);

	if (c->idle_timer)
		pt_timer_cancel(c->loop, c->idle_timer);
	c->idle_timer = NULL;
	if (due)
		c->idle_timer = pt_timer_add(c->loop, due > now ? due - now : 0, conn_idle_fire, c);
}

static void
conn_idle_fire(struct pt_loop *loop, void *arg)
{
	struct pt_conn *c = arg;
	uint64_t due = conn_due(c);

	c->idle_timer = NULL;
	if (due && pt_loop_now(loop) >= due) {
		conn_close_now(c, "timeout");
		return;
	}
	/* Reads only move last_read; the timer re-arms for the rest. */
	conn_arm(c);
}

struct pt_conn *
pt_conn_new(struct pt_loop *loop, int fd, const struct pt_listener *l)
{
	struct pt_conn *c;
	struct sockaddr_storage ss;
	socklen_t len;
	int flags, one = 1;

	ignore_sigpipe_once();
	c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		free(c);
		return NULL;
	}
	c->loop = loop;
	c->fd = fd;
	c->listener = l;
	c->last_read = pt_loop_now(loop);
	len = sizeof ss;
	memset(&ss, 0, sizeof ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (len > sizeof c->peer)
			len = sizeof c->peer;
		memcpy(&c->peer, &ss, len);
		sockaddr_text((struct sockaddr *)&ss, c->peer_addr, sizeof c->peer_addr, &c->peer_port);
	}
	len = sizeof ss;
	memset(&ss, 0, sizeof ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		sockaddr_text((struct sockaddr *)&ss, c->local_addr, sizeof c->local_addr, &c->local_port);
	if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

	c->next = open_head;
	if (open_head)
		open_head->prev = c;
	open_head = c;
	open_count++;
	conn_update(c);
	return c;
}

void
pt_conn_set_handlers(struct pt_conn *c, const struct pt_conn_handlers *h, void *proto)
{
	if (h)
		c->h = *h;
	else
		memset(&c->h, 0, sizeof c->h);
	c->proto = proto;
}

void *
pt_conn_proto(struct pt_conn *c)
{
	return c->proto;
}

struct pt_loop *
pt_conn_loop(struct pt_conn *c)
{
	return c->loop;
}

const char *
pt_conn_peer_addr(const struct pt_conn *c)
{
	return c->peer_addr;
}

unsigned
pt_conn_peer_port(const struct pt_conn *c)
{
	return c->peer_port;
}

const struct sockaddr *
pt_conn_peer_sa(const struct pt_conn *c)
{
	return &c->peer.sa;
}

const char *
pt_conn_local_addr(const struct pt_conn *c)
{
	return c->local_addr;
}

unsigned
pt_conn_local_port(const struct pt_conn *c)
{
	return c->local_port;
}

const struct pt_listener *
pt_conn_listener(const struct pt_conn *c)
{
	return c->listener;
}

void
pt_conn_get_handlers(const struct pt_conn *c, struct pt_conn_handlers *h, void **proto)
{
	*h = c->h;
	*proto = c->proto;
}

void
pt_conn_set_origin(struct pt_conn *c, const char *peer_addr, unsigned peer_port,
                   const char *local_addr, unsigned local_port, int tls)
{
	snprintf(c->peer_addr, sizeof c->peer_addr, "%s", peer_addr ? peer_addr : "");
	snprintf(c->local_addr, sizeof c->local_addr, "%s", local_addr ? local_addr : "");
	c->peer_port = (unsigned short)peer_port;
	c->local_port = (unsigned short)local_port;
	memset(&c->peer, 0, sizeof c->peer);
	if (peer_addr && inet_pton(AF_INET, peer_addr, &c->peer.sin.sin_addr) == 1) {
		c->peer.sin.sin_family = AF_INET;
		c->peer.sin.sin_port = htons((unsigned short)peer_port);
	} else if (peer_addr && inet_pton(AF_INET6, peer_addr, &c->peer.sin6.sin6_addr) == 1) {
		c->peer.sin6.sin6_family = AF_INET6;
		c->peer.sin6.sin6_port = htons((unsigned short)peer_port);
	} else {
		c->peer.sa.sa_family = AF_UNSPEC;
	}
	c->origin_tls = tls ? 1 : 0;
	c->relayed = 1;
}

void
pt_conn_keep_last_words(struct pt_conn *c)
{
	c->last_words = 1;
}

void
pt_conn_set_release(struct pt_conn *c, void (*release)(struct pt_conn *c, void *arg), void *arg)
{
	c->release = release;
	c->release_arg = arg;
}

size_t
pt_conn_memory(const struct pt_conn *c)
{
	return sizeof *c + (c->rbuf ? c->rcap : 0) + (c->wbuf ? c->wcap : 0);
}

size_t
pt_conn_count(void)
{
	return open_count;
}

void
pt_conn_close_all(const char *reason)
{
	while (open_head)
		conn_close_now(open_head, reason ? reason : "shutdown");
}

/* Make room for at least RBUF_MIN_FREE bytes (or whatever the limit
 * leaves); returns the free space at the end of the buffer. */
static size_t
rbuf_space(struct pt_conn *c)
{
	if (c->rlen >= PT_CONN_RBUF_MAX)
		return 0;
	if (!c->rbuf) {
		c->rbuf = malloc(RBUF_INITIAL);
		if (!c->rbuf)
			return 0;
		c->rcap = RBUF_INITIAL;
		c->rpos = c->rlen = c->scan = 0;
	}
	if (c->rpos > 0 && c->rcap - c->rpos - c->rlen < RBUF_MIN_FREE) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen);
		c->rpos = 0;
	}
	if (c->rcap - c->rlen < RBUF_MIN_FREE && c->rcap < PT_CONN_RBUF_MAX) {
		size_t n = c->rcap * 2 > PT_CONN_RBUF_MAX ? PT_CONN_RBUF_MAX : c->rcap * 2;
		char *nb = realloc(c->rbuf, n);

		if (nb) {
			c->rbuf = nb;
			c->rcap = n;
		}
	}
	return c->rcap - c->rpos - c->rlen;
}

/* recv() through the deflate layer: inflate what is buffered, reading
 * the socket only when that makes nothing. Like recv: > 0 plain bytes,
 * 0 end of stream, -1 with errno (EAGAIN; EPROTO for a broken stream). */
static ssize_t
conn_zrecv(struct pt_conn *c, char *p, size_t space)
{
	for (;;) {
		ssize_t made = pt_zstream_inflate(c->z, p, space);
		if (made != 0) {
			if (made < 0)
				errno = EPROTO;
			return made < 0 ? -1 : made;
		}
		size_t room;
		char *in = pt_zstream_in_room(c->z, &room);
		ssize_t n = room ? recv(c->fd, in, room, 0) : -1;
		if (room == 0)
			errno = EPROTO;
		if (n <= 0)
			return n;
		pt_zstream_in_added(c->z, (size_t)n);
	}
}

/* Read what the socket (or OpenSSL) has, then hand it to on_read. */
static void
conn_read(struct pt_conn *c)
{
	size_t got = 0;

	c->read_wants_write = 0;
	if (c->paused || c->close_after_write || c->tls == TLS_WAIT_FLUSH || c->tls == TLS_HANDSHAKE)
		return;
	if (c->kick_timer && c->rlen > 0 && c->h.on_read) {
		/* A resume still owes the protocol input a pause held back: it
		 * goes first, or an end of stream right behind it (pipelined
		 * commands, then close) would close the conn over it. */
		pt_timer_cancel(c->loop, c->kick_timer);
		c->kick_timer = NULL;
		c->h.on_read(c);
		if (c->closed || c->paused || c->close_after_write)
			return;
	}
	for (;;) {
		size_t space = rbuf_space(c);
		char *p = c->rbuf + c->rpos + c->rlen;
		ssize_t n;

		if (space == 0)
			break;
		if (c->ssl) {
			int r, e;

			ERR_clear_error();
			r = SSL_read(c->ssl, p, space > INT32_MAX ? INT32_MAX : (int)space);
			if (r > 0) {
				c->rlen += (size_t)r;
				got += (size_t)r;
				continue;  /* drain what OpenSSL holds while there is room */
			}
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ)
				break;
			if (e == SSL_ERROR_WANT_WRITE) {
				c->read_wants_write = 1;
				break;
			}
			if (e == SSL_ERROR_ZERO_RETURN) {
				n = 0;
				c->eof_pending = 1;
			} else {
				if (got == 0) {
					conn_close_tls(c, "TLS read", e);
					return;
				}
				break;  /* deliver what came; the error returns next time */
			}
		} else {
			n = c->z ? conn_zrecv(c, p, space) : recv(c->fd, p, space, 0);
			if (n > 0) {
				c->rlen += (size_t)n;
				got += (size_t)n;
				break;  /* level-triggered: one read per wakeup is fair */
			}
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				break;
			if (n < 0) {
				if (got == 0) {
					conn_close_errno(c, errno);
					return;
				}
				break;
			}
		}
		/* End of stream: deliver what arrived first; send what is queued. */
		if (got > 0)
			break;
		conn_flush(c);
		if (!c->closed)
			conn_close_now(c, "eof");
		return;
	}
	if (got == 0)
		return;
	c->last_read = pt_loop_now(c->loop);
	if (c->h.on_read)
		c->h.on_read(c);
	if (c->eof_pending && !c->closed) {
		conn_flush(c);
		if (!c->closed)
			conn_close_now(c, "eof");
	}
}

/* Start the server handshake once the plaintext before it is out. */
static void
conn_start_handshake(struct pt_conn *c)
{
	c->ssl = pt_tls_new_ssl(c->fd);
	if (!c->ssl) {
		char why[200];

		pt_tls_error_text(why, sizeof why);
		conn_close_now(c, "error: TLS unavailable");
		return;
	}
	/* TLS 1.3 session tickets are not sent at the end of the handshake
	 * but in front of the first answer (conn_flush). After STARTTLS the
	 * client speaks first: tickets sent at once reach it while it writes
	 * its first command, and a client that reads in one thread and writes
	 * in another (imaplib2, offlineimap) loses that command when the
	 * write falls into its TLS library's processing of a ticket. In front
	 * of an answer they reach a client that is waiting for it. */
	c->tickets_due = (unsigned)SSL_get_num_tickets(c->ssl);
	SSL_set_num_tickets(c->ssl, 0);
	c->tls = TLS_HANDSHAKE;
	c->hs_want = PT_EV_READ;
	conn_handshake(c);
}

/* Handshakes per service and TLS version ("failed": none agreed). */
static void
count_handshake(const struct pt_conn *c, const char *version)
{
	const char *svc = c->listener && c->listener->service ? c->listener->service : "-";
	pt_metric_inc(pt_metric_counter("postern_tls_handshakes", "inbound TLS handshakes per version",
	                                "service", svc, "version", version, NULL));
}

static void
conn_handshake(struct pt_conn *c)
{
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		void (*done)(struct pt_conn *, void *) = c->tls_done;

		c->tls = TLS_ON;
		count_handshake(c, SSL_get_version(c->ssl));
		c->hs_want = 0;
		c->discard_line = 0;
		c->tls_done = NULL;
		c->last_read = pt_loop_now(c->loop);
		if (done)
			done(c, c->tls_done_arg);
		else if (c->h.on_read)
			c->h.on_read(c);
		/* The client may have sent its first command in the same flight. */
		if (!c->closed)
			conn_flush(c);
		if (!c->closed)
			conn_read(c);
		if (!c->closed)
			conn_flush(c);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		c->hs_want = PT_EV_READ;
	else if (e == SSL_ERROR_WANT_WRITE)
		c->hs_want = PT_EV_WRITE;
	else {
		count_handshake(c, "failed");
		conn_close_tls(c, "TLS handshake failed", e);
	}
}

void
pt_conn_tls_accept(struct pt_conn *c, void (*done)(struct pt_conn *c, void *arg), void *arg)
{
	c->tls_done = done;
	c->tls_done_arg = arg;
	c->busy++;
	conn_start_handshake(c);
	conn_frame_end(c);
	conn_leave(c);
}

int
pt_conn_peer_in(const struct pt_conn *c, const char *param)
{
	if (c->closed || !pt_live_conf || !param || !pt_config_owner(pt_live_conf, param))
		return 0;
	const struct pt_cidr_list *l = pt_conf_cidrs(pt_live_conf, param);
	return l && l->n > 0 && pt_cidr_list_match(l, &c->peer.sa);
}

int
pt_conn_forwarded_client(struct pt_conn *c, const char *trusted_param, const char *addr, unsigned port)
{
	if (!addr || port > 65535 || !pt_conn_peer_in(c, trusted_param))
		return 0;
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;
	memset(&s4, 0, sizeof s4);
	memset(&s6, 0, sizeof s6);
	if (inet_pton(AF_INET, addr, &s4.sin_addr) == 1) {
		s4.sin_family = AF_INET;
		s4.sin_port = htons((uint16_t)port);
		memcpy(&c->peer.sin, &s4, sizeof s4);
	} else if (inet_pton(AF_INET6, addr, &s6.sin6_addr) == 1) {
		s6.sin6_family = AF_INET6;
		s6.sin6_port = htons((uint16_t)port);
		memcpy(&c->peer.sin6, &s6, sizeof s6);
	} else {
		return 0;
	}
	if (strcmp(trusted_param, "login_trusted_networks") == 0)
		c->trusted_front = 1;
	sockaddr_text(&c->peer.sa, c->peer_addr, sizeof c->peer_addr, &c->peer_port);
	return 1;
}

int
pt_conn_trusted_front(const struct pt_conn *c)
{
	return c->trusted_front || pt_conn_peer_in(c, "login_trusted_networks");
}

void
pt_conn_tls_connect(struct pt_conn *c, SSL *ssl, void (*done)(struct pt_conn *c, void *arg), void *arg)
{
	/* Whatever the server sent in plaintext before the handshake (after
	 * its STARTTLS answer) is not trusted as if it came through TLS. */
	c->rpos = c->rlen = c->scan = 0;
	c->ssl = ssl;
	if (SSL_set_fd(ssl, c->fd) != 1) {
		c->busy++;
		conn_close_now(c, "error: TLS unavailable");
		conn_leave(c);
		return;
	}
	SSL_set_connect_state(ssl);
	c->relayed = 1;  /* no STARTTLS answered on this side either */
	c->tls_done = done;
	c->tls_done_arg = arg;
	c->tls = TLS_HANDSHAKE;
	c->hs_want = PT_EV_WRITE;
	c->busy++;
	conn_handshake(c);
	conn_frame_end(c);
	conn_leave(c);
}

/* Send queued output until the socket is full. Runs on_drain when the
 * buffer empties, closes when close_after_write is due, and starts a
 * pending STARTTLS handshake once its plaintext reply is out. */
static int wbuf_put(void *arg, const void *data, size_t len);

/* A write to a peer that hung up (EPIPE, ECONNRESET) while what it wrote
 * before is still queued here: a mail process that read the whole of a
 * command, answered "* BYE" and exited while the worker relayed the next
 * bytes. Its socket shows no error then, only a hang-up, so the flush
 * came first. The output can never arrive: drop it, deliver the input,
 * and let the end of the stream close the conn. Only on conns that asked
 * for it (pt_conn_keep_last_words): a client that pipelines commands and
 * hangs up is closed on the failed write, its input not run unanswered.
 * Returns 1 when it did. */
static int
conn_peer_left_words(struct pt_conn *c, int err)
{
	char b;

	if (!c->last_words || (err != EPIPE && err != ECONNRESET) || c->peer_gone || c->close_after_write ||
	    c->tls != TLS_NONE || c->z || recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
		return 0;
	c->peer_gone = 1;
	free(c->wbuf);
	c->wbuf = NULL;
	c->wcap = c->wpos = c->wlen = 0;
	/* The buffer is empty, if unsent: on_drain as after a send. An owner
	 * that paused this conn (or the other side of a relay) until then
	 * resumes it; a paused conn would otherwise watch nothing and wait
	 * for a resume that never comes. */
	if (c->h.on_drain)
		c->h.on_drain(c);
	if (!c->closed)
		conn_read(c);  /* a conn still paused reads on resume */
	return 1;
}

static void
conn_flush(struct pt_conn *c)
{
	int sent = 0;

	c->write_wants_read = 0;
	/* The end of a response burst: what the deflate layer holds goes out. */
	if (c->z && pt_zstream_dirty(c->z) && pt_zstream_deflate(c->z, NULL, 0, 1, wbuf_put, c) != 0) {
		if (!c->closed)
			conn_close_now(c, "error: compression failed");
		return;
	}
	if (c->tickets_due && c->tls == TLS_ON && c->wlen > 0) {
		/* Queued now, written by the SSL_write below ahead of the data
		 * (not TLS 1.3: nothing to send after the handshake). A resumed
		 * handshake replaces the one ticket it used: one new ticket, as
		 * OpenSSL sends itself after a resumption. */
		unsigned n = c->tickets_due;

		if (n > 1 && SSL_session_reused(c->ssl))
			n = 1;
		if (SSL_version(c->ssl) == TLS1_3_VERSION)
			for (unsigned i = 0; i < n; i++)
				SSL_new_session_ticket(c->ssl);
		c->tickets_due = 0;
	}
	while (!c->closed && c->wlen > 0 && c->tls != TLS_HANDSHAKE) {
		const char *p = c->wbuf + c->wpos;
		size_t want = c->wlen;
		ssize_t n;

		if (c->tls == TLS_ON) {
			int r, e;

			ERR_clear_error();
			r = SSL_write(c->ssl, p, want > INT32_MAX ? INT32_MAX : (int)want);
			if (r <= 0) {
				e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE)
					return;
				if (e == SSL_ERROR_WANT_READ) {
					c->write_wants_read = 1;
					return;
				}
				conn_close_tls(c, "TLS write", e);
				return;
			}
			n = r;
		} else {
			if (c->tls == TLS_WAIT_FLUSH)
				want = want < c->plain_len ? want : c->plain_len;
			if (want == 0)
				break;
			n = send(c->fd, p, want, MSG_NOSIGNAL);
			if (n < 0 && errno == ENOTSOCK)
				n = write(c->fd, p, want);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					return;
				if (conn_peer_left_words(c, errno))
					return;
				conn_close_errno(c, errno);
				return;
			}
			if (c->tls == TLS_WAIT_FLUSH)
				c->plain_len -= (size_t)n;
		}
		c->wpos += (size_t)n;
		c->wlen -= (size_t)n;
		sent = 1;
	}
	if (c->closed || c->tls == TLS_HANDSHAKE)
		return;
	if (c->wlen == 0 && c->wbuf) {
		free(c->wbuf);
		c->wbuf = NULL;
		c->wcap = c->wpos = 0;
	}
	if (c->tls == TLS_WAIT_FLUSH) {
		if (c->plain_len == 0)
			conn_start_handshake(c);
		return;
	}
	if (c->wlen == 0 && c->close_after_write) {
		conn_close_now(c, "closed");
		return;
	}
	if (c->wlen == 0 && sent && c->h.on_drain)
		c->h.on_drain(c);
}

int
pt_conn_write(struct pt_conn *c, const void *data, size_t len)
{
	if (c->closed)
		return -1;
	if (len == 0 || c->peer_gone)
		return 0;
	if (c->busy == 0 && c->wlen == 0 && c->tls == TLS_NONE && !c->z && !c->close_after_write && !c->h.on_drain) {
		/* Outside a frame (an answer that waited on a lookup or on a
		 * delivery) the socket is almost always writable: sending now
		 * saves three epoll_ctl calls and a loop round per reply. Not
		 * for conns with on_drain, which expect it after a buffered
		 * send. Errors and the rest go the buffered way. */
		ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			data = (const char *)data + n;
			len -= (size_t)n;
			if (len == 0)
				return 0;
		}
	}
	if (c->z) {
		/* Compressed now, sent (after a sync flush) when the frame ends;
		 * one write is held to the same limit as without compression. */
		if (len > PT_CONN_WBUF_MAX) {
			conn_close_now(c, "error: output limit exceeded");
			return -1;
		}
		if (pt_zstream_deflate(c->z, data, len, 0, wbuf_put, c) != 0) {
			if (!c->closed)
				conn_close_now(c, "error: compression failed");
			return -1;
		}
		if (c->busy == 0)
			conn_update(c);
		return 0;
	}
	if (wbuf_put(c, data, len) != 0)
		return -1;
	/* Inside a core frame the frame flushes when the protocol returns;
	 * otherwise the loop sends it when the socket is writable. */
	if (c->busy == 0)
		conn_update(c);
	return 0;
}

/* Queue len bytes in the output buffer: 0, or -1 with the conn closed
 * (output limit, out of memory). */
static int
wbuf_put(void *arg, const void *data, size_t len)
{
	struct pt_conn *c = arg;

	if (len > PT_CONN_WBUF_MAX || c->wlen > PT_CONN_WBUF_MAX - len) {
		conn_close_now(c, "error: output limit exceeded");
		return -1;
	}
	if (c->wpos + c->wlen + len > c->wcap) {
		if (c->wpos > 0 && c->wlen + len <= c->wcap) {
			memmove(c->wbuf, c->wbuf + c->wpos, c->wlen);
			c->wpos = 0;
		} else {
			size_t n = c->wcap ? c->wcap : WBUF_INITIAL;
			char *nb;

			while (n < c->wlen + len)
				n *= 2;
			if (n > PT_CONN_WBUF_MAX)
				n = PT_CONN_WBUF_MAX;
			if (c->wpos > 0) {
				memmove(c->wbuf, c->wbuf + c->wpos, c->wlen);
				c->wpos = 0;
			}
			nb = realloc(c->wbuf, n);
			if (!nb) {
				conn_close_now(c, "error: out of memory");
				return -1;
			}
			c->wbuf = nb;
			c->wcap = n;
		}
	}
	memcpy(c->wbuf + c->wpos + c->wlen, data, len);
	c->wlen += len;
	return 0;
}

int
pt_conn_printf(struct pt_conn *c, const char *fmt, ...)
{
	char small[512], *buf = small;
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n >= sizeof small) {
		buf = malloc((size_t)n + 1);
		if (!buf)
			return -1;
		va_start(ap, fmt);
		vsnprintf(buf, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	r = pt_conn_write(c, buf, (size_t)n);
	if (buf != small)
		free(buf);
	return r;
}

size_t
pt_conn_pending_output(const struct pt_conn *c)
{
	return c->wlen;
}

void
pt_conn_close_after_write(struct pt_conn *c)
{
	if (c->closed)
		return;
	c->close_after_write = 1;
	if (c->busy == 0)
		conn_update(c);
}

int
pt_conn_getline(struct pt_conn *c, size_t max, const char **line, size_t *len, int *eol)
{
	for (;;) {
		char *data, *lf;
		size_t n;

		if (c->closed || c->rlen == 0)
			return 0;
		data = c->rbuf + c->rpos;
		n = c->rlen;
		lf = memchr(data + c->scan, '\n', n - c->scan);
		if (c->discard_line) {
			/* The rest of a line already reported as too long. */
			pt_conn_consume(c, lf ? (size_t)(lf - data) + 1 : n);
			if (!lf)
				return 0;
			c->discard_line = 0;
			continue;
		}
		if (lf) {
			size_t l = (size_t)(lf - data);
			int e = 1;

			if (l > 0 && data[l - 1] == '\r') {
				l--;
				e = 2;
			}
			if (l > max) {
				pt_conn_consume(c, (size_t)(lf - data) + 1);
				return -1;
			}
			data[l] = '\0';  /* CR or LF: lets callers use C string functions */
			*line = data;
			*len = l;
			*eol = e;
			pt_conn_consume(c, l + (size_t)e);
			return 1;
		}
		c->scan = n;
		/* No LF yet: too long already, or can never fit the buffer. */
		if (n >= PT_CONN_RBUF_MAX || n - 1 > max || (n - 1 == max && data[n - 1] != '\r')) {
			pt_conn_consume(c, n);
			c->discard_line = 1;
			return -1;
		}
		return 0;
	}
}

const char *
pt_conn_rbuf(struct pt_conn *c, size_t *len)
{
	*len = c->closed ? 0 : c->rlen;
	return c->rbuf ? c->rbuf + c->rpos : "";
}

void
pt_conn_consume(struct pt_conn *c, size_t n)
{
	if (n > c->rlen)
		n = c->rlen;
	c->rpos += n;
	c->rlen -= n;
	c->scan = c->scan > n ? c->scan - n : 0;
	if (c->rlen == 0)
		c->rpos = c->scan = 0;
	/* The pointer from getline stays valid: the buffer is only compacted
	 * or freed after on_read returns. Outside a frame, reopen reading. */
	if (c->busy == 0 && !c->closed)
		conn_update(c);
}

void
pt_conn_pause(struct pt_conn *c)
{
	if (c->closed || c->paused)
		return;
	c->paused = 1;
	if (c->busy == 0)
		conn_update(c);
}

void
pt_conn_resume(struct pt_conn *c)
{
	if (c->closed || !c->paused)
		return;
	c->paused = 0;
	/* Time spent waiting on the server is not the client's idle time. */
	c->last_read = pt_loop_now(c->loop);
	if (c->rlen > 0 || conn_pending_in(c))
		conn_kick(c);
	if (c->busy == 0)
		conn_update(c);
}

void
pt_conn_set_timeout(struct pt_conn *c, unsigned ms)
{
	if (c->closed)
		return;
	c->timeout_ms = ms;
	c->last_read = pt_loop_now(c->loop);
	conn_arm(c);
}

void
pt_conn_set_deadline(struct pt_conn *c, unsigned ms)
{
	if (c->closed)
		return;
	c->deadline = ms ? pt_loop_now(c->loop) + ms : 0;
	conn_arm(c);
}

int
pt_conn_starttls(struct pt_conn *c)
{
	if (c->closed || c->relayed || c->ssl || c->tls != TLS_NONE || !pt_tls_enabled())
		return -1;
	/* Everything read so far came in plaintext: none of it may be taken
	 * as if it had come through the TLS session (CVE-2011-0411 class). */
	c->rpos = c->rlen = c->scan = 0;
	c->discard_line = 0;
	c->plain_len = c->wlen;
	c->tls = TLS_WAIT_FLUSH;
	if (c->busy == 0)
		conn_update(c);
	return 0;
}

int
pt_conn_compress(struct pt_conn *c)
{
	if (c->closed || c->z || c->ssl || c->tls != TLS_NONE)
		return -1;
	/* The client compresses from the byte after its command's line: what
	 * is buffered beyond it is the stream's start. */
	c->z = pt_zstream_new(c->rbuf ? c->rbuf + c->rpos : NULL, c->rlen);
	if (c->z == NULL)
		return -1;
	c->rpos = c->rlen = c->scan = 0;
	c->discard_line = 0;
	if (pt_zstream_in_pending(c->z))
		conn_kick(c);
	if (c->busy == 0)
		conn_update(c);
	return 0;
}

int
pt_conn_is_compressed(const struct pt_conn *c)
{
	return c->z != NULL;
}

int
pt_conn_tls_available(const struct pt_conn *c)
{
	return !c->closed && !c->relayed && !c->ssl && c->tls == TLS_NONE && pt_tls_enabled();
}

int
pt_conn_is_tls(const struct pt_conn *c)
{
	return c->tls == TLS_ON || c->origin_tls;
}

const char *
pt_conn_tls_version(const struct pt_conn *c)
{
	return c->tls == TLS_ON ? SSL_get_version(c->ssl) : NULL;
}

const char *
pt_conn_tls_cipher(const struct pt_conn *c)
{
	return c->tls == TLS_ON ? SSL_get_cipher_name(c->ssl) : NULL;
}

int
pt_conn_tls_bits(const struct pt_conn *c)
{
	return c->tls == TLS_ON ? SSL_get_cipher_bits(c->ssl, NULL) : 0;
}

void
pt_conn_relay(struct pt_conn *from, struct pt_conn *to)
{
	size_t n;
	const char *data = pt_conn_rbuf(from, &n);
	if (n == 0)
		return;
	if (to == NULL) {
		pt_conn_consume(from, n);
		return;
	}
	if (pt_conn_write(to, data, n) < 0)
		return;
	pt_conn_consume(from, n);
	if (pt_conn_pending_output(to) >= PT_RELAY_HIGH_WATER)
		pt_conn_pause(from);
}
