/* Unit tests of TLS: context loading (path / PEM text, key mismatch,
 * minimum version), STARTTLS with a real OpenSSL client in a thread
 * (including the plaintext-injection defense), large transfers that
 * leave decrypted data inside OpenSSL, handshake failure, TLS 1.3 session
 * tickets held back until the first answer. */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config_int.h"
#include "testcert.h"
#include "conn_int.h"
#include "net.h"

static char *cert_pem, *key_pem, *other_key_pem;

static int
setup(void **state)
{
	char *unused_cert;

	(void)state;
	make_cert(&cert_pem, &key_pem);
	make_cert(&unused_cert, &other_key_pem);
	free(unused_cert);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	pt_tls_clear();
	free(cert_pem);
	free(key_pem);
	free(other_key_pem);
	return 0;
}

static void
stop_timer(struct pt_loop *loop, void *arg)
{
	(void)arg;
	pt_loop_stop(loop);
}

static char *
write_temp(const char *text)
{
	char *path = strdup("/tmp/postern-test-tls-XXXXXX");
	int fd = mkstemp(path);
	size_t n = strlen(text);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	close(fd);
	return path;
}

/* ---------- context ---------- */

static void
test_configure_pem_text_and_paths(void **state)
{
	char err[512] = "";
	char *cp = write_temp(cert_pem), *kp = write_temp(key_pem);

	(void)state;
	assert_int_equal(pt_tls_configure_pem(cert_pem, key_pem, NULL, err, sizeof err), 0);
	assert_true(pt_tls_enabled());
	assert_int_equal(pt_tls_configure_pem(cp, kp, "TLSv1.3", err, sizeof err), 0);
	assert_int_equal(pt_tls_configure_pem(cert_pem, kp, "TLSv1.2", err, sizeof err), 0);
	pt_tls_clear();
	assert_false(pt_tls_enabled());
	unlink(cp);
	unlink(kp);
	free(cp);
	free(kp);
}

static void
test_configure_errors(void **state)
{
	char err[512];

	(void)state;
	assert_int_equal(pt_tls_configure_pem(cert_pem, key_pem, NULL, err, sizeof err), 0);
	/* A refused configuration keeps the previous context. */
	assert_int_equal(pt_tls_configure_pem(cert_pem, other_key_pem, NULL, err, sizeof err), -1);
	assert_non_null(strstr(err, "does not match"));
	assert_true(pt_tls_enabled());
	assert_int_equal(pt_tls_configure_pem(cert_pem, key_pem, "TLSv1", err, sizeof err), -1);
	assert_non_null(strstr(err, "ssl_min_protocol"));
	assert_int_equal(pt_tls_configure_pem(cert_pem, "", NULL, err, sizeof err), -1);
	assert_non_null(strstr(err, "ssl_key"));
	assert_int_equal(pt_tls_configure_pem("/nonexistent/cert.pem", key_pem, NULL, err, sizeof err), -1);
	assert_non_null(strstr(err, "ssl_cert: cannot load certificate from /nonexistent/cert.pem"));
	assert_int_equal(pt_tls_configure_pem("-----BEGIN CERTIFICATE-----\ngarbage\n", key_pem, NULL,
	                                      err, sizeof err), -1);
	assert_non_null(strstr(err, "inline PEM"));
	pt_tls_clear();
}

static struct pt_config *
config_from(const char *text)
{
	struct pt_config *c = pt_config_parse("test.conf", text, strlen(text));

	assert_non_null(c);
	assert_int_equal(pt_config_declare_core(c), 0);
	if (pt_config_finish(c) != 0) {
		for (int i = 0; i < pt_config_error_count(c); i++)
			print_error("%s\n", pt_config_error(c, i));
		fail();
	}
	return c;
}

static void
test_configure_from_config(void **state)
{
	char *cp = write_temp(cert_pem), *kp = write_temp(key_pem);
	char text[1024], err[512];
	struct pt_config *c;

	(void)state;
	c = config_from("myhostname = test.example\n");
	assert_int_equal(pt_tls_configure(c, err, sizeof err), 0);
	assert_false(pt_tls_enabled());  /* neither set: TLS off, no error */
	pt_config_free(c);
	snprintf(text, sizeof text, "myhostname = test.example\nssl_cert = %s\nssl_key = %s\n", cp, kp);
	c = config_from(text);
	assert_int_equal(pt_tls_configure(c, err, sizeof err), 0);
	assert_true(pt_tls_enabled());
	pt_config_free(c);
	snprintf(text, sizeof text, "myhostname = test.example\nssl_cert = %s\n", cp);
	c = config_from(text);
	assert_int_equal(pt_tls_configure(c, err, sizeof err), -1);
	assert_non_null(strstr(err, "ssl_key"));
	pt_config_free(c);
	pt_tls_clear();
	unlink(cp);
	unlink(kp);
	free(cp);
	free(kp);
}

/* ---------- a client in a thread ---------- */

struct client {
	int fd;
	int mode;              /* 0 STARTTLS dialogue, 1 bulk upload, 2 garbage handshake */
	size_t bulk;
	char banner[128];
	char ehlo_reply[256];
	char quit_reply[128];
	int handshake_ok;
	int clean_close;
	int quiet_check;       /* mode 0: look for server output before the first command */
	int early;             /* poll() saw input before the first command */
	int tickets;           /* session tickets seen by the client */
	int keep;              /* keep the first ticket's session in kept */
	SSL_SESSION *kept;
	SSL_SESSION *resume;   /* offer this session */
	int reused;            /* the handshake resumed it */
};

static int
count_ticket(SSL *ssl, SSL_SESSION *sess)
{
	struct client *cl = SSL_get_app_data(ssl);

	cl->tickets++;
	if (cl->keep && !cl->kept) {
		cl->kept = sess;
		return 1;  /* the reference is ours */
	}
	return 0;  /* not kept */
}

static size_t
read_line_plain(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, 1);

		if (r <= 0)
			break;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return n;
}

static size_t
read_line_tls(SSL *ssl, char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		int r = SSL_read(ssl, buf + n, 1);

		if (r <= 0)
			break;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return n;
}

static void *
client_main(void *arg)
{
	struct client *cl = arg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = NULL;

	if (write(cl->fd, "STARTTLS\r\nINJECTED\r\n", 20) != 20)
		goto out;
	read_line_plain(cl->fd, cl->banner, sizeof cl->banner);
	if (cl->mode == 2) {
		/* Not a ClientHello: the server's handshake must fail. */
		if (write(cl->fd, "GARBAGE GARBAGE GARBAGE\r\n", 25) != 25)
			goto out;
		char b[16];
		while (read(cl->fd, b, sizeof b) > 0)
			;
		goto out;
	}
	/* Tickets reach count_ticket only; a session in the internal store
	 * would be marked not resumable when this context goes. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, count_ticket);
	ssl = SSL_new(ctx);
	SSL_set_app_data(ssl, cl);
	SSL_set_fd(ssl, cl->fd);
	if (cl->resume)
		SSL_set_session(ssl, cl->resume);
	if (SSL_connect(ssl) != 1)
		goto out;
	cl->handshake_ok = 1;
	cl->reused = SSL_session_reused(ssl);
	if (cl->mode == 0) {
		if (cl->quiet_check) {
			struct pollfd p = {.fd = cl->fd, .events = POLLIN};

			cl->early = poll(&p, 1, 300);
		}
		SSL_write(ssl, "EHLO x\r\n", 8);
		read_line_tls(ssl, cl->ehlo_reply, sizeof cl->ehlo_reply);
		SSL_write(ssl, "QUIT\r\n", 6);
		read_line_tls(ssl, cl->quit_reply, sizeof cl->quit_reply);
		char b[16];
		cl->clean_close = SSL_read(ssl, b, sizeof b) == 0 &&
		                  SSL_get_error(ssl, 0) == SSL_ERROR_ZERO_RETURN;
	} else {
		char *data = malloc(cl->bulk);

		for (size_t i = 0; i < cl->bulk; i++)
			data[i] = (char)(i % 249);
		for (size_t off = 0; off < cl->bulk;) {
			/* 10000-byte records: the 64 KiB input buffer fills in the
			 * middle of the last one. */
			size_t chunk = cl->bulk - off < 10000 ? cl->bulk - off : 10000;
			int w = SSL_write(ssl, data + off, (int)chunk);

			if (w <= 0)
				break;
			off += (size_t)w;
		}
		free(data);
		/* Wait for the server's word that it got everything: no more
		 * bytes arrive meanwhile, so the tail that sits decrypted inside
		 * OpenSSL must be delivered without help from the socket. */
		read_line_tls(ssl, cl->quit_reply, sizeof cl->quit_reply);
		char b[256];
		while (SSL_read(ssl, b, sizeof b) > 0)
			;
	}
out:
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	shutdown(cl->fd, SHUT_RDWR);
	close(cl->fd);
	ERR_clear_error();
	return NULL;
}

/* ---------- the server side: a tiny STARTTLS protocol ---------- */

struct srv {
	struct pt_conn *c;
	char log[1024];
	size_t loglen;
	int closes;
	char reason[256];
	int tls_seen;
	int starttls_rc;
	size_t bulk_expected, received;
	unsigned long sum;
	size_t max_rlen;
	char version[32], cipher[64];
	int bits;
};

static void
logf_(struct srv *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	s->loglen += (size_t)vsnprintf(s->log + s->loglen, sizeof s->log - s->loglen, fmt, ap);
	va_end(ap);
}

static void
proto_on_read(struct pt_conn *c)
{
	struct srv *s = pt_conn_proto(c);
	const char *line;
	size_t len;
	int eol, r;

	if (pt_conn_is_tls(c) && !s->tls_seen) {
		s->tls_seen = 1;
		logf_(s, "TLS|");
		snprintf(s->version, sizeof s->version, "%s", pt_conn_tls_version(c));
		snprintf(s->cipher, sizeof s->cipher, "%s", pt_conn_tls_cipher(c));
		s->bits = pt_conn_tls_bits(c);
	}
	if (s->bulk_expected && s->tls_seen) {
		size_t n;
		const char *p = pt_conn_rbuf(c, &n);

		if (n > s->max_rlen)
			s->max_rlen = n;
		/* Hold input until the buffer is full, so decrypted records wait
		 * inside OpenSSL while the socket may be quiet. */
		if (n < PT_CONN_RBUF_MAX && s->received + n < s->bulk_expected)
			return;
		for (size_t i = 0; i < n; i++)
			s->sum += (unsigned char)p[i];
		s->received += n;
		pt_conn_consume(c, n);
		if (s->received == s->bulk_expected) {
			pt_conn_printf(c, "250 got it\r\n");
			pt_conn_close_after_write(c);
		}
		return;
	}
	while ((r = pt_conn_getline(c, 512, &line, &len, &eol)) != 0) {
		if (r < 0)
			continue;
		logf_(s, "%.*s|", (int)len, line);
		if (len == 8 && memcmp(line, "STARTTLS", 8) == 0) {
			pt_conn_printf(c, "220 2.0.0 Ready to start TLS\r\n");
			s->starttls_rc = pt_conn_starttls(c);
			assert_false(pt_conn_tls_available(c));
		} else if (len == 6 && memcmp(line, "EHLO x", 6) == 0) {
			pt_conn_printf(c, "250 %s %s %d\r\n", pt_conn_tls_version(c), pt_conn_tls_cipher(c),
			               pt_conn_tls_bits(c));
		} else if (len == 4 && memcmp(line, "QUIT", 4) == 0) {
			pt_conn_printf(c, "221 2.0.0 Bye\r\n");
			pt_conn_close_after_write(c);
			return;
		}
	}
}

static void
proto_on_close(struct pt_conn *c, const char *reason)
{
	struct srv *s = pt_conn_proto(c);

	s->closes++;
	snprintf(s->reason, sizeof s->reason, "%s", reason);
}

static const struct pt_conn_handlers proto = {proto_on_read, proto_on_close, NULL};

static void
run_dialogue(struct srv *s, struct client *cl)
{
	struct pt_loop *loop = pt_loop_new();
	int sv[2];
	pthread_t t;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	s->c = pt_conn_new(loop, sv[0], NULL);
	pt_conn_set_handlers(s->c, &proto, s);
	assert_true(pt_conn_tls_available(s->c));
	assert_false(pt_conn_is_tls(s->c));
	assert_null(pt_conn_tls_version(s->c));
	cl->fd = sv[1];
	assert_int_equal(pthread_create(&t, NULL, client_main, cl), 0);
	for (int i = 0; i < 300 && s->closes == 0; i++) {
		pt_timer_add(loop, 10, stop_timer, NULL);
		pt_loop_run(loop);
	}
	if (s->closes == 0)
		pt_conn_close(s->c, "test gave up");  /* lets the client thread end */
	pthread_join(t, NULL);
	assert_int_equal(s->closes, 1);
	pt_loop_free(loop);
}

static void
test_starttls_dialogue_discards_injected_plaintext(void **state)
{
	struct srv s = {0};
	struct client cl = {.mode = 0};
	char err[256];

	(void)state;
	assert_int_equal(pt_tls_configure_pem(cert_pem, key_pem, NULL, err, sizeof err), 0);
	run_dialogue(&s, &cl);
	assert_int_equal(s.starttls_rc, 0);
	/* "INJECTED" came in the same packet as STARTTLS: it never shows. */
	assert_string_equal(s.log, "STARTTLS|TLS|EHLO x|QUIT|");
	assert_null(strstr(s.log, "INJECTED"));
	assert_string_equal(cl.banner, "220 2.0.0 Ready to start TLS\r\n");
	assert_int_equal(cl.handshake_ok, 1);
	assert_string_equal(s.version, "TLSv1.3");
	assert_true(s.cipher[0] != '\0');
	assert_true(s.bits >= 128);
	assert_non_null(strstr(cl.ehlo_reply, "250 TLSv1.3 "));
	assert_string_equal(cl.quit_reply, "221 2.0.0 Bye\r\n");
	assert_int_equal(cl.clean_close, 1);  /* close_notify was sent */
	assert_string_equal(s.reason, "closed");
	pt_tls_clear();
}

/* After STARTTLS the client speaks first: the server writes nothing until
 * the first answer, and the TLS 1.3 session tickets go out in front of it
 * (a client that read the tickets in one thread while writing its first
 * command in another lost that command: imaplib2, offlineimap). */
static void
test_starttls_tickets_come_with_first_answer(void **state)
{
	struct srv s = {0};
	struct client cl = {.mode = 0, .quiet_check = 1};
	char err[256];

	(void)state;
	assert_int_equal(pt_tls_configure_pem(cert_pem, key_pem, NULL, err, sizeof err), 0);
	run_dialogue(&s, &cl);
	assert_int_equal(cl.handshake_ok, 1);
	assert_string_equal(s.version, "TLSv1.3");
	assert_int_equal(cl.early, 0);
	assert_non_null(strstr(cl.ehlo_reply, "250 TLSv1.3 "));
	assert_int_equal(cl.tickets, 2);  /* OpenSSL's default count, as before */
	assert_string_equal(cl.quit_reply, "221 2.0.0 Bye\r\n");
	pt_tls_clear();
}

/* A resumed handshake used up one ticket: one new ticket replaces it, as
 * OpenSSL sends itself after a resumption (not the full handshake's 2). */
static void
test_starttls_resumed_gets_one_ticket(void **state)
{
	struct srv s = {0}, s2 = {0};
	struct client cl = {.mode = 0, .keep = 1};
	struct client cl2 = {.mode = 0, .quiet_check = 1};
	char err[256];

	(void)state;
	assert_int_equal(pt_tls_configure_pem(cert_pem, key_pem, NULL, err, sizeof err), 0);
	run_dialogue(&s, &cl);
	assert_int_equal(cl.handshake_ok, 1);
	assert_int_equal(cl.reused, 0);
	assert_int_equal(cl.tickets, 2);
	assert_non_null(cl.kept);

	cl2.resume = cl.kept;
	run_dialogue(&s2, &cl2);
	assert_int_equal(cl2.handshake_ok, 1);
	assert_int_equal(cl2.reused, 1);
	assert_int_equal(cl2.early, 0);  /* still with the first answer */
	assert_non_null(strstr(cl2.ehlo_reply, "250 TLSv1.3 "));
	assert_int_equal(cl2.tickets, 1);
	assert_string_equal(cl2.quit_reply, "221 2.0.0 Bye\r\n");
	SSL_SESSION_free(cl.kept);
	pt_tls_clear();
}

static void
test_tls_bulk_input_with_full_buffer(void **state)
{
	struct srv s = {0};
	struct client cl = {.mode = 1, .bulk = 70000};
	unsigned long want = 0;
	char err[256];

	(void)state;
	for (size_t i = 0; i < cl.bulk; i++)
		want += (unsigned char)(char)(i % 249);
	s.bulk_expected = cl.bulk;
	assert_int_equal(pt_tls_configure_pem(cert_pem, key_pem, NULL, err, sizeof err), 0);
	run_dialogue(&s, &cl);
	assert_int_equal(s.received, cl.bulk);
	assert_string_equal(cl.quit_reply, "250 got it\r\n");
	assert_int_equal(s.sum, want);
	assert_int_equal(s.max_rlen, PT_CONN_RBUF_MAX);
	assert_string_equal(s.reason, "closed");
	pt_tls_clear();
}

static void
test_tls_handshake_failure_closes(void **state)
{
	struct srv s = {0};
	struct client cl = {.mode = 2};
	char err[256];

	(void)state;
	assert_int_equal(pt_tls_configure_pem(cert_pem, key_pem, NULL, err, sizeof err), 0);
	run_dialogue(&s, &cl);
	assert_string_equal(s.log, "STARTTLS|");
	assert_int_equal(strncmp(s.reason, "error: TLS handshake failed: ", 29), 0);
	pt_tls_clear();
}

static void
test_starttls_without_certificate(void **state)
{
	struct pt_loop *loop = pt_loop_new();
	struct srv s = {0};
	int sv[2];

	(void)state;
	pt_tls_clear();
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s.c = pt_conn_new(loop, sv[0], NULL);
	pt_conn_set_handlers(s.c, &proto, &s);
	assert_false(pt_conn_tls_available(s.c));
	assert_int_equal(pt_conn_starttls(s.c), -1);
	assert_int_equal(s.closes, 0);
	pt_conn_close(s.c, "done");
	close(sv[1]);
	pt_loop_free(loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_configure_pem_text_and_paths),
		cmocka_unit_test(test_configure_errors),
		cmocka_unit_test(test_configure_from_config),
		cmocka_unit_test(test_starttls_dialogue_discards_injected_plaintext),
		cmocka_unit_test(test_starttls_tickets_come_with_first_answer),
		cmocka_unit_test(test_starttls_resumed_gets_one_ticket),
		cmocka_unit_test(test_tls_bulk_input_with_full_buffer),
		cmocka_unit_test(test_tls_handshake_failure_closes),
		cmocka_unit_test(test_starttls_without_certificate),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
