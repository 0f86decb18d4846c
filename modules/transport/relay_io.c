/* The SMTP client's socket: a non-blocking connect, buffered input and
 * output, and a non-blocking OpenSSL client handshake for STARTTLS, all
 * driven by the worker's event loop. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "relay_int.h"

#define RBUF_MAX (64 * 1024)
#define WBUF_MAX (1024 * 1024)

struct relay_io {
	struct pt_loop *loop;
	int fd;
	SSL *ssl;
	int connecting, handshaking;
	int ssl_read_wants_write, ssl_write_wants_read;
	unsigned watched;
	char *rbuf;
	size_t rlen;
	char *wbuf;
	size_t wlen, woff, wcap;
	relay_io_fn *cb;
	void *arg;
	char err[256];
};

static SSL_CTX *client_ctx;

static SSL_CTX *
tls_client_ctx(void)
{
	if (client_ctx)
		return client_ctx;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return NULL;
	/* Opportunistic and mandatory-unauthenticated TLS alike (Postfix's may
	 * and encrypt levels): the channel is encrypted, the peer is not
	 * verified. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	client_ctx = ctx;
	return ctx;
}

static void
set_err(struct relay_io *io, const char *s)
{
	snprintf(io->err, sizeof io->err, "%s", s);
}

static void
set_tls_err(struct relay_io *io, const char *what, int sslerr)
{
	unsigned long e = ERR_get_error();
	char buf[200] = "";
	if (e)
		ERR_error_string_n(e, buf, sizeof buf);
	else if (sslerr == SSL_ERROR_SYSCALL)
		snprintf(buf, sizeof buf, "%s", errno ? strerror(errno) : "lost connection");
	else if (sslerr == SSL_ERROR_ZERO_RETURN)
		snprintf(buf, sizeof buf, "connection closed by peer");
	else
		snprintf(buf, sizeof buf, "SSL error %d", sslerr);
	ERR_clear_error();
	snprintf(io->err, sizeof io->err, "%s: %s", what, buf);
}

static void io_event(struct pt_loop *loop, int fd, unsigned events, void *arg);

static void
io_update(struct relay_io *io)
{
	unsigned want = PT_EV_READ;
	if (io->connecting || io->ssl_read_wants_write || io->wlen > io->woff)
		want |= PT_EV_WRITE;
	if (io->handshaking)
		want = PT_EV_READ | (io->ssl_write_wants_read ? 0 : PT_EV_WRITE);
	if (want != io->watched) {
		pt_loop_watch(io->loop, io->fd, want, io_event, io);
		io->watched = want;
	}
}

struct relay_io *
relay_io_connect(struct pt_loop *loop, const struct relay_addr *a, relay_io_fn *cb, void *arg)
{
	if (!a->salen) {
		errno = EAFNOSUPPORT;
		return NULL;
	}
	int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	/* Whole commands and pipelined groups go out in one write each: Nagle
	 * would only hold the next group back for a delayed ACK. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (const struct sockaddr *)&a->sa, a->salen) != 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	struct relay_io *io = calloc(1, sizeof *io);
	if (io)
		io->rbuf = malloc(RBUF_MAX);
	if (!io || !io->rbuf) {
		if (io)
			free(io);
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	io->loop = loop;
	io->fd = fd;
	io->cb = cb;
	io->arg = arg;
	io->connecting = 1;
	io_update(io);
	return io;
}

void
relay_io_free(struct relay_io *io)
{
	if (!io)
		return;
	pt_loop_unwatch(io->loop, io->fd);
	if (io->ssl) {
		/* One close_notify attempt; nobody waits for the answer. */
		if (!io->handshaking)
			SSL_shutdown(io->ssl);
		SSL_free(io->ssl);
		ERR_clear_error();
	}
	close(io->fd);
	free(io->rbuf);
	free(io->wbuf);
	free(io);
}

int
relay_io_write(struct relay_io *io, const void *data, size_t len)
{
	if (io->woff && io->woff == io->wlen)
		io->woff = io->wlen = 0;
	if (io->wlen + len > io->wcap) {
		if (io->woff) {
			memmove(io->wbuf, io->wbuf + io->woff, io->wlen - io->woff);
			io->wlen -= io->woff;
			io->woff = 0;
		}
		if (io->wlen + len > io->wcap) {
			size_t cap = io->wcap ? io->wcap : 4096;
			while (cap < io->wlen + len)
				cap *= 2;
			if (cap > WBUF_MAX)
				return -1;
			char *b = realloc(io->wbuf, cap);
			if (!b)
				return -1;
			io->wbuf = b;
			io->wcap = cap;
		}
	}
	memcpy(io->wbuf + io->wlen, data, len);
	io->wlen += len;
	if (!io->connecting && !io->handshaking)
		io_update(io);
	return 0;
}

size_t
relay_io_pending(const struct relay_io *io)
{
	return io->wlen - io->woff;
}

const char *
relay_io_rbuf(struct relay_io *io, size_t *len)
{
	*len = io->rlen;
	return io->rbuf;
}

void
relay_io_consume(struct relay_io *io, size_t n)
{
	if (n >= io->rlen) {
		io->rlen = 0;
		return;
	}
	memmove(io->rbuf, io->rbuf + n, io->rlen - n);
	io->rlen -= n;
}

int
relay_io_is_tls(const struct relay_io *io)
{
	return io->ssl && !io->handshaking;
}

const char *
relay_io_tls_version(const struct relay_io *io)
{
	return relay_io_is_tls(io) ? SSL_get_version(io->ssl) : NULL;
}

const char *
relay_io_tls_cipher(const struct relay_io *io)
{
	return relay_io_is_tls(io) ? SSL_get_cipher_name(io->ssl) : NULL;
}

const char *
relay_io_error(const struct relay_io *io)
{
	return io->err[0] ? io->err : "lost connection";
}

/* 1 when io is gone (the callback freed it). */
static int
emit(struct relay_io *io, enum relay_io_event ev)
{
	return io->cb(io, ev, io->arg);
}

static int
handshake_step(struct relay_io *io)
{
	ERR_clear_error();
	int rc = SSL_connect(io->ssl);
	if (rc == 1) {
		io->handshaking = 0;
		io->ssl_write_wants_read = 0;
		io_update(io);
		return emit(io, RELAY_IO_TLS_DONE);
	}
	int e = SSL_get_error(io->ssl, rc);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		io->ssl_write_wants_read = e == SSL_ERROR_WANT_READ;
		io_update(io);
		return 0;
	}
	set_tls_err(io, "TLS handshake failed", e);
	return emit(io, RELAY_IO_ERROR);
}

int
relay_io_starttls(struct relay_io *io, const char *sni)
{
	SSL_CTX *ctx = tls_client_ctx();
	if (!ctx || io->ssl)
		return -1;
	io->ssl = SSL_new(ctx);
	if (!io->ssl || SSL_set_fd(io->ssl, io->fd) != 1) {
		SSL_free(io->ssl);
		io->ssl = NULL;
		return -1;
	}
	if (sni && sni[0])
		SSL_set_tlsext_host_name(io->ssl, sni);
	SSL_set_connect_state(io->ssl);
	io->handshaking = 1;
	io->ssl_write_wants_read = 0;
	io_update(io);
	return 0;
}

/* Write what is queued. 0 ok (maybe partial), -1 error (io->err set). */
static int
flush_out(struct relay_io *io)
{
	while (io->woff < io->wlen) {
		size_t n = io->wlen - io->woff;
		if (io->ssl) {
			ERR_clear_error();
			int w = SSL_write(io->ssl, io->wbuf + io->woff, n > 65536 ? 65536 : (int)n);
			if (w <= 0) {
				int e = SSL_get_error(io->ssl, w);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					return 0;
				set_tls_err(io, "TLS write error", e);
				return -1;
			}
			io->woff += (size_t)w;
		} else {
			ssize_t w = send(io->fd, io->wbuf + io->woff, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					return 0;
				set_err(io, strerror(errno));
				return -1;
			}
			io->woff += (size_t)w;
		}
	}
	io->woff = io->wlen = 0;
	return 0;
}

/* Read what is there. 1 new data, 0 none, -1 error, -2 EOF. */
static int
fill_in(struct relay_io *io)
{
	int got = 0;
	io->ssl_read_wants_write = 0;
	while (io->rlen < RBUF_MAX) {
		if (io->ssl) {
			ERR_clear_error();
			int r = SSL_read(io->ssl, io->rbuf + io->rlen, (int)(RBUF_MAX - io->rlen));
			if (r <= 0) {
				int e = SSL_get_error(io->ssl, r);
				if (e == SSL_ERROR_WANT_READ)
					break;
				if (e == SSL_ERROR_WANT_WRITE) {
					io->ssl_read_wants_write = 1;
					break;
				}
				if (e == SSL_ERROR_ZERO_RETURN)
					return got ? 1 : -2;
				set_tls_err(io, "TLS read error", e);
				return got ? 1 : -1;
			}
			io->rlen += (size_t)r;
			got = 1;
		} else {
			ssize_t r = recv(io->fd, io->rbuf + io->rlen, RBUF_MAX - io->rlen, 0);
			if (r < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					break;
				set_err(io, strerror(errno));
				return got ? 1 : -1;
			}
			if (r == 0)
				return got ? 1 : -2;
			io->rlen += (size_t)r;
			got = 1;
		}
	}
	return got;
}

static void
io_event(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	(void)loop;
	(void)fd;
	struct relay_io *io = arg;
	if (io->connecting) {
		int e = 0;
		socklen_t el = sizeof e;
		if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
			e = errno;
		if (e == 0 && !(events & (PT_EV_WRITE | PT_EV_ERROR)))
			return;
		if (e == 0 && (events & PT_EV_ERROR))
			e = ECONNREFUSED;
		if (e) {
			set_err(io, strerror(e));
			emit(io, RELAY_IO_ERROR);
			return;
		}
		io->connecting = 0;
		io_update(io);
		if (emit(io, RELAY_IO_CONNECTED))
			return;
		return;
	}
	if (io->handshaking) {
		handshake_step(io);
		return;
	}
	size_t before = relay_io_pending(io);
	if (before && flush_out(io) != 0) {
		emit(io, RELAY_IO_ERROR);
		return;
	}
	if (before && relay_io_pending(io) == 0) {
		io_update(io);
		if (emit(io, RELAY_IO_DRAINED))
			return;
		if (io->handshaking)
			return;
	}
	int r = fill_in(io);
	if (r > 0) {
		if (emit(io, RELAY_IO_INPUT))
			return;
	} else if (r == -2) {
		emit(io, RELAY_IO_EOF);
		return;
	} else if (r < 0) {
		emit(io, RELAY_IO_ERROR);
		return;
	}
	io_update(io);
}
