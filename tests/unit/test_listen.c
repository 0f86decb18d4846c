/* Unit tests of listeners on 127.0.0.1: binding errors, reuse across
 * generations, inet_protocols, per-client and per-service connection
 * limits, stop, and an implicit-TLS listener with a real client. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "config_int.h"
#include "conn_int.h"
#include "net.h"
#include "testcert.h"

static const struct pt_param test_params[] = {
	{"test_listen", PT_HOSTPORT_LIST, "", NULL, "test listener", 0, 0},
	{NULL, 0, NULL, NULL, NULL, 0, 0},
};

static int accepted, closed_count, tls_at_accept;

static void
t_on_close(struct pt_conn *c, const char *reason)
{
	(void)c;
	(void)reason;
	closed_count++;
}

static void
t_on_read(struct pt_conn *c)
{
	size_t n;

	pt_conn_rbuf(c, &n);
	pt_conn_consume(c, n);
}

static const struct pt_conn_handlers t_handlers = {t_on_read, t_on_close, NULL};

static void
t_on_accept(struct pt_conn *c, const struct pt_listener *l)
{
	accepted++;
	tls_at_accept = pt_conn_is_tls(c);
	pt_conn_set_handlers(c, &t_handlers, NULL);
	pt_conn_printf(c, "220 %s tls=%d\r\n", l->service, pt_conn_is_tls(c));
}

static const struct pt_listener_decl plain_decl = {"test_listen", "testsvc", 0, t_on_accept};
static const struct pt_listener_decl tls_decl = {"test_listen", "testsvcs", 1, t_on_accept};

static unsigned
free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	close(fd);
	return ntohs(sin.sin_port);
}

static struct pt_config *
config_from(const char *fmt, ...)
{
	char text[2048];
	va_list ap;
	struct pt_config *c;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	c = pt_config_parse("test.conf", text, strlen(text));
	assert_non_null(c);
	assert_int_equal(pt_config_declare_core(c), 0);
	assert_int_equal(pt_config_declare(c, "test", test_params), 0);
	if (pt_config_finish(c) != 0) {
		for (int i = 0; i < pt_config_error_count(c); i++)
			print_error("%s\n", pt_config_error(c, i));
		fail();
	}
	return c;
}

/* From 127.0.0.<from> (0 = the kernel's choice, 127.0.0.1). */
static int
connect_from(unsigned port, unsigned from)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000000u | from)};
	struct timeval tv = {0, 300000};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (from)
		assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

static int
connect_to(unsigned port)
{
	return connect_from(port, 0);
}

static void
stop_timer(struct pt_loop *loop, void *arg)
{
	(void)arg;
	pt_loop_stop(loop);
}

static void
pump(struct pt_loop *loop, unsigned ms)
{
	pt_timer_add(loop, ms, stop_timer, NULL);
	pt_loop_run(loop);
}

/* What the server said before closing: the banner, "" on a bare close,
 * "(timeout)" when nothing came. */
static const char *
server_says(int fd, char *buf, size_t cap)
{
	ssize_t n = read(fd, buf, cap - 1);

	if (n < 0)
		return "(timeout)";
	buf[n] = '\0';
	return buf;
}

static void
test_open_error_names_address_param_and_reason(void **state)
{
	unsigned port = free_port();
	struct pt_config *c = config_from("test_listen = 127.0.0.1:%u\n", port);
	struct pt_listen_sock *socks = NULL;
	size_t n = 0;
	char err[256], want[256];
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int busy = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	(void)state;
	setsockopt(busy, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	assert_int_equal(bind(busy, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(listen(busy, 1), 0);
	assert_int_equal(pt_listen_open(c, &plain_decl, &socks, &n, NULL, 0, err, sizeof err), -1);
	snprintf(want, sizeof want, "cannot bind 127.0.0.1:%u (test_listen): Address already in use", port);
	assert_string_equal(err, want);
	assert_int_equal(n, 0);
	close(busy);
	pt_listen_close_all(socks, n);
	pt_config_free(c);
}

static void
test_open_reuse_and_protocols(void **state)
{
	unsigned port = free_port();
	struct pt_config *c = config_from("test_listen = 127.0.0.1:%u\n", port);
	struct pt_config *c6 = config_from("inet_protocols = ipv4\ntest_listen = [::1]:%u\n", port);
	struct pt_config *lo = config_from("inet_interfaces = loopback-only\ntest_listen = %u\n", port);
	struct pt_listen_sock *a = NULL, *b = NULL, *d = NULL;
	size_t na = 0, nb = 0, nd = 0;
	char err[256];
	int fd;

	(void)state;
	assert_int_equal(pt_listen_open(c, &plain_decl, &a, &na, NULL, 0, err, sizeof err), 0);
	assert_int_equal(na, 1);
	assert_string_equal(a[0].info.addr, "127.0.0.1");
	assert_int_equal(a[0].info.port, port);
	assert_string_equal(a[0].info.service, "testsvc");
	assert_string_equal(a[0].param, "test_listen");
	fd = a[0].fd;
	/* A new generation takes the same socket over instead of binding. */
	assert_int_equal(pt_listen_open(c, &plain_decl, &b, &nb, a, na, err, sizeof err), 0);
	assert_int_equal(nb, 1);
	assert_int_equal(b[0].fd, fd);
	assert_int_equal(a[0].fd, -1);
	pt_listen_close_all(a, na);
	/* An IPv6 address while inet_protocols = ipv4 is refused by name. */
	assert_int_equal(pt_listen_open(c6, &plain_decl, &d, &nd, NULL, 0, err, sizeof err), -1);
	assert_non_null(strstr(err, "inet_protocols"));
	assert_non_null(strstr(err, "test_listen"));
	assert_int_equal(nd, 0);
	pt_listen_close_all(b, nb);
	/* loopback-only: 127.0.0.1 and, when the host has IPv6, ::1. */
	assert_int_equal(pt_listen_open(lo, &plain_decl, &d, &nd, NULL, 0, err, sizeof err), 0);
	assert_true(nd == 1 || nd == 2);
	assert_string_equal(d[0].info.addr, "127.0.0.1");
	if (nd == 2)
		assert_string_equal(d[1].info.addr, "::1");
	pt_listen_close_all(d, nd);
	pt_config_free(c);
	pt_config_free(c6);
	pt_config_free(lo);
}

static void
test_client_connection_limit(void **state)
{
	unsigned port = free_port();
	struct pt_config *c = config_from("test_listen = 127.0.0.1:%u\nclient_connection_limit = 2\n"
	                                    "mynetworks = 192.0.2.0/24\n", port);
	struct pt_loop *loop = pt_loop_new();
	struct pt_listen_sock *socks = NULL;
	size_t n = 0;
	char err[256], buf[128];
	int fds[4];

	(void)state;
	accepted = closed_count = 0;
	assert_int_equal(pt_listen_open(c, &plain_decl, &socks, &n, NULL, 0, err, sizeof err), 0);
	assert_int_equal(pt_listen_start(loop, c, socks, n), 0);
	for (int i = 0; i < 3; i++)
		fds[i] = connect_to(port);
	pump(loop, 30);
	assert_int_equal(accepted, 2);
	assert_int_equal(pt_conn_count(), 2);
	assert_string_equal(server_says(fds[0], buf, sizeof buf), "220 testsvc tls=0\r\n");
	assert_string_equal(server_says(fds[1], buf, sizeof buf), "220 testsvc tls=0\r\n");
	/* The third is closed at once, without a greeting. */
	assert_string_equal(server_says(fds[2], buf, sizeof buf), "");
	/* A slot frees when a client leaves. */
	close(fds[0]);
	pump(loop, 30);
	assert_int_equal(closed_count, 1);
	assert_int_equal(pt_conn_count(), 1);
	fds[3] = connect_to(port);
	pump(loop, 30);
	assert_string_equal(server_says(fds[3], buf, sizeof buf), "220 testsvc tls=0\r\n");
	/* Stopped listeners accept nothing more. */
	pt_listen_stop(loop);
	fds[0] = connect_to(port);
	pump(loop, 30);
	assert_string_equal(server_says(fds[0], buf, sizeof buf), "(timeout)");
	pt_conn_close_all("shutdown");
	assert_int_equal(pt_conn_count(), 0);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	pt_listen_close_all(socks, n);
	pt_loop_free(loop);
	pt_config_free(c);
}

static void
test_service_connection_limit(void **state)
{
	unsigned port = free_port();
	struct pt_config *c = config_from("test_listen = 127.0.0.1:%u\nservice_connection_limit = 1\n"
	                                    "mynetworks_reserved_connections = 0\n", port);
	struct pt_loop *loop = pt_loop_new();
	struct pt_listen_sock *socks = NULL;
	size_t n = 0;
	char err[256], buf[128];
	int a, b;

	(void)state;
	accepted = 0;
	assert_int_equal(pt_listen_open(c, &plain_decl, &socks, &n, NULL, 0, err, sizeof err), 0);
	assert_int_equal(pt_listen_start(loop, c, socks, n), 0);
	a = connect_to(port);
	b = connect_to(port);
	pump(loop, 30);
	assert_int_equal(accepted, 1);
	assert_string_equal(server_says(a, buf, sizeof buf), "220 testsvc tls=0\r\n");
	assert_string_equal(server_says(b, buf, sizeof buf), "");
	pt_listen_stop(loop);
	pt_conn_close_all("shutdown");
	close(a);
	close(b);
	pt_listen_close_all(socks, n);
	pt_loop_free(loop);
	pt_config_free(c);
}

/* Issue #11 item 7: a flood from outside mynetworks takes at most
 * service_connection_limit - mynetworks_reserved_connections slots, and
 * mynetworks clients are not held to client_connection_limit. */
static void
test_mynetworks_reserve(void **state)
{
	unsigned port = free_port();
	struct pt_config *c = config_from("test_listen = 127.0.0.1:%u\nservice_connection_limit = 4\n"
	                                  "mynetworks_reserved_connections = 2\nclient_connection_limit = 1\n"
	                                  "mynetworks = 127.0.0.2/32\n", port);
	struct pt_loop *loop = pt_loop_new();
	struct pt_listen_sock *socks = NULL;
	size_t n = 0;
	char err[256], buf[128];
	int fds[6];

	(void)state;
	accepted = 0;
	assert_int_equal(pt_listen_open(c, &plain_decl, &socks, &n, NULL, 0, err, sizeof err), 0);
	assert_int_equal(pt_listen_start(loop, c, socks, n), 0);
	/* Outsiders: one each (client limit), two in all (4 - 2 reserved). */
	fds[0] = connect_from(port, 3);
	fds[1] = connect_from(port, 3);
	fds[2] = connect_from(port, 4);
	fds[3] = connect_from(port, 5);
	pump(loop, 30);
	assert_int_equal(accepted, 2);
	assert_string_equal(server_says(fds[0], buf, sizeof buf), "220 testsvc tls=0\r\n");
	assert_string_equal(server_says(fds[1], buf, sizeof buf), "");
	assert_string_equal(server_says(fds[2], buf, sizeof buf), "220 testsvc tls=0\r\n");
	assert_string_equal(server_says(fds[3], buf, sizeof buf), "");
	/* mynetworks: two from one address (no client limit), into the reserve. */
	fds[4] = connect_from(port, 2);
	fds[5] = connect_from(port, 2);
	pump(loop, 30);
	assert_int_equal(accepted, 4);
	assert_string_equal(server_says(fds[4], buf, sizeof buf), "220 testsvc tls=0\r\n");
	assert_string_equal(server_says(fds[5], buf, sizeof buf), "220 testsvc tls=0\r\n");
	assert_int_equal(pt_conn_count(), 4);
	pt_listen_stop(loop);
	pt_conn_close_all("shutdown");
	for (int i = 0; i < 6; i++)
		close(fds[i]);
	pt_listen_close_all(socks, n);
	pt_loop_free(loop);
	pt_config_free(c);
}

struct tls_client {
	unsigned port;
	char banner[128];
	int ok;
};

static void *
tls_client_main(void *arg)
{
	struct tls_client *tc = arg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = SSL_new(ctx);
	int fd = connect_to(tc->port);
	struct timeval tv = {5, 0};
	size_t n = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) == 1) {
		tc->ok = 1;
		while (n + 1 < sizeof tc->banner && SSL_read(ssl, tc->banner + n, 1) == 1)
			if (tc->banner[n++] == '\n')
				break;
		tc->banner[n] = '\0';
		SSL_shutdown(ssl);
	}
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	ERR_clear_error();
	return NULL;
}

static void
test_implicit_tls_listener(void **state)
{
	unsigned port = free_port();
	struct pt_config *c = config_from("test_listen = 127.0.0.1:%u\n", port);
	struct pt_loop *loop = pt_loop_new();
	struct pt_listen_sock *socks = NULL;
	struct tls_client tc = {.port = port};
	size_t n = 0;
	char err[256], *cert, *key;
	pthread_t t;

	(void)state;
	accepted = tls_at_accept = 0;
	make_cert(&cert, &key);
	assert_int_equal(pt_tls_configure_pem(cert, key, NULL, err, sizeof err), 0);
	assert_int_equal(pt_listen_open(c, &tls_decl, &socks, &n, NULL, 0, err, sizeof err), 0);
	assert_int_equal(socks[0].info.implicit_tls, 1);
	assert_int_equal(pt_listen_start(loop, c, socks, n), 0);
	assert_int_equal(pthread_create(&t, NULL, tls_client_main, &tc), 0);
	for (int i = 0; i < 200 && tc.banner[0] == '\0'; i++)
		pump(loop, 10);
	pump(loop, 10);
	pthread_join(t, NULL);
	assert_int_equal(tc.ok, 1);
	/* on_accept ran after the handshake: the greeting went out encrypted. */
	assert_int_equal(accepted, 1);
	assert_int_equal(tls_at_accept, 1);
	assert_string_equal(tc.banner, "220 testsvcs tls=1\r\n");
	pt_listen_stop(loop);
	pt_conn_close_all("shutdown");
	pt_listen_close_all(socks, n);
	pt_loop_free(loop);
	pt_config_free(c);
	pt_tls_clear();
	free(cert);
	free(key);
}

static void
test_implicit_tls_plaintext_client_is_dropped(void **state)
{
	unsigned port = free_port();
	struct pt_config *c = config_from("test_listen = 127.0.0.1:%u\n", port);
	struct pt_loop *loop = pt_loop_new();
	struct pt_listen_sock *socks = NULL;
	size_t n = 0;
	char err[256], buf[128], *cert, *key;
	int fd;

	(void)state;
	accepted = 0;
	make_cert(&cert, &key);
	assert_int_equal(pt_tls_configure_pem(cert, key, NULL, err, sizeof err), 0);
	assert_int_equal(pt_listen_open(c, &tls_decl, &socks, &n, NULL, 0, err, sizeof err), 0);
	assert_int_equal(pt_listen_start(loop, c, socks, n), 0);
	fd = connect_to(port);
	assert_int_equal(write(fd, "EHLO plain\r\n\r\n\r\n", 16), 16);
	pump(loop, 50);
	/* No protocol ever saw this client; its count is released. */
	assert_int_equal(accepted, 0);
	assert_int_equal(pt_conn_count(), 0);
	{
		/* A TLS alert, EOF or a reset: never a greeting. */
		ssize_t r = read(fd, buf, sizeof buf - 1);

		assert_true(r >= 0 || errno == ECONNRESET);
		buf[r > 0 ? r : 0] = '\0';
		assert_null(strstr(buf, "220"));
	}
	close(fd);
	pt_listen_stop(loop);
	pt_listen_close_all(socks, n);
	pt_loop_free(loop);
	pt_config_free(c);
	pt_tls_clear();
	free(cert);
	free(key);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_error_names_address_param_and_reason),
		cmocka_unit_test(test_open_reuse_and_protocols),
		cmocka_unit_test(test_client_connection_limit),
		cmocka_unit_test(test_service_connection_limit),
		cmocka_unit_test(test_mynetworks_reserve),
		cmocka_unit_test(test_implicit_tls_listener),
		cmocka_unit_test(test_implicit_tls_plaintext_client_is_dropped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
