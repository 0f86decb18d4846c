/* The front's login proxy (Dovecot's proxy=y host=): a login whose passdb
 * entry names another host is not served here. The worker (unprivileged,
 * on its loop) connects to that host's IMAP or POP3 port, optionally
 * STARTTLS or TLS with the certificate checked against proxy_tls_ca_file,
 * passes the client's address on (IMAP ID x-originating-ip, which a
 * Postern or Dovecot backend believes from login_trusted_networks), logs
 * in there with the user's own credentials (AUTHENTICATE PLAIN / AUTH
 * PLAIN), answers the client's login with the backend's answer and from
 * then on relays bytes both ways with bounded buffers and backpressure.
 * Before the relay starts, any failure hands the conn back to the
 * protocol as a temporary one (NO [UNAVAILABLE] / -ERR [SYS/TEMP]). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config_int.h"
#include "conn_int.h"
#include "net.h"
#include "postern/dns.h"
#include "postern/event.h"
#include "postern/log.h"
#include "postern/sasl.h"
#include "proxy.h"
#include "runtime.h"

#define RELAY_SAFETY_TIMEOUT_MS (24u * 3600u * 1000u)
#define BACKEND_LINE_MAX 8192

enum step {
	ST_CONNECT,      /* TCP connect under way */
	ST_GREETING,     /* waiting for "* OK" / "+OK" */
	ST_STARTTLS,     /* STARTTLS / STLS sent */
	ST_HANDSHAKE,    /* TLS to the backend */
	ST_LOGIN,        /* ID + AUTHENTICATE / AUTH sent */
	ST_SMTP_EHLO,    /* SMTP: our EHLO (before STARTTLS or XCLIENT) */
	ST_SMTP_XCLIENT, /* SMTP: XCLIENT sent, waiting for the new 220 */
	ST_SMTP_HELO,    /* SMTP: the client's EHLO name said again */
	ST_RELAY,
};

enum proto { P_IMAP, P_POP3, P_SMTP };

struct proxy {
	enum step step;
	int proto_imap;
	enum proto proto;
	int tls_done;                    /* TLS to the backend is up */
	int pop3_xclient_pending;        /* XCLIENT's answer comes before AUTH's */
	unsigned port;                   /* the host's port, once parsed */
	int dns_pending, dns_aaaa, orphan; /* a DNS answer is owed to p */
	char helo[256], client_name[256], myhostname[256];
	struct pt_loop *loop;
	struct pt_conn *client, *back;
	int fd;                          /* while connecting */
	int watched;
	struct pt_timer *timer;          /* connect+login timeout; deferred failure */
	char fail_why[200];
	pt_proxy_failed_fn *failed;
	void *arg;
	struct pt_conn_handlers saved_h;
	void *saved_proto;
	char *auth_b64;                  /* base64 of "\0user\0password"; wiped */
	char tag[200];                   /* the client's IMAP tag */
	char user[256], rip[64], lip[64], sid[64], mech[32], service[64], dest[300];
	unsigned rport, lport;
	int tls_mode;                    /* 0 no, 1 starttls, 2 yes */
	char host[256];
};

static SSL_CTX *client_ctx;
static char client_ctx_ca[4096];

static const char *
conf_str(const char *name, const char *def)
{
	if (pt_live_conf && pt_config_owner(pt_live_conf, name))
		return pt_conf_str(pt_live_conf, name);
	return def;
}

static long long
conf_int(const char *name, long long def)
{
	if (pt_live_conf && pt_config_owner(pt_live_conf, name))
		return pt_conf_int(pt_live_conf, name);
	return def;
}

static void
wipe_auth(struct proxy *p)
{
	if (p->auth_b64) {
		OPENSSL_cleanse(p->auth_b64, strlen(p->auth_b64));
		free(p->auth_b64);
		p->auth_b64 = NULL;
	}
}

static void
proxy_free(struct proxy *p)
{
	if (p->timer)
		pt_timer_cancel(p->loop, p->timer);
	p->timer = NULL;
	if (p->fd >= 0) {
		if (p->watched)
			pt_loop_unwatch(p->loop, p->fd);
		close(p->fd);
	}
	p->fd = -1;
	wipe_auth(p);
	/* A DNS answer still owed holds p (no cancel): it frees. */
	if (p->dns_pending)
		p->orphan = 1;
	else
		free(p);
}

/* ---------- the relay ---------- */


static void r_client_read(struct pt_conn *c) { struct proxy *p = pt_conn_proto(c); pt_conn_relay(c, p->back); }
static void r_back_read(struct pt_conn *b) { struct proxy *p = pt_conn_proto(b); pt_conn_relay(b, p->client); }

static void
r_client_drain(struct pt_conn *c)
{
	struct proxy *p = pt_conn_proto(c);
	if (p->back)
		pt_conn_resume(p->back);
}

static void
r_back_drain(struct pt_conn *b)
{
	struct proxy *p = pt_conn_proto(b);
	if (p->client)
		pt_conn_resume(p->client);
}

static void
r_client_close(struct pt_conn *c, const char *reason)
{
	struct proxy *p = pt_conn_proto(c);
	p->client = NULL;
	if (p->back) {
		pt_log_as(p->service, PT_LOG_INFO, "proxy: user=<%s>, rip=%s, backend=%s: disconnected by client (%s)",
		          p->user, p->rip, p->dest, reason ? reason : "eof");
		pt_conn_close_after_write(p->back);
	} else {
		proxy_free(p);
	}
}

static void
r_back_close(struct pt_conn *b, const char *reason)
{
	struct proxy *p = pt_conn_proto(b);
	if (p->client)
		pt_log_as(p->service, PT_LOG_INFO, "proxy: user=<%s>, rip=%s, backend=%s: disconnected by server (%s)",
		          p->user, p->rip, p->dest, reason ? reason : "eof");
	p->back = NULL;
	if (p->client)
		pt_conn_close_after_write(p->client);
	else
		proxy_free(p);
}

static const struct pt_conn_handlers relay_client_h = {
	.on_read = r_client_read, .on_close = r_client_close, .on_drain = r_client_drain,
};
static const struct pt_conn_handlers relay_back_h = {
	.on_read = r_back_read, .on_close = r_back_close, .on_drain = r_back_drain,
};

/* ---------- failure before the relay ---------- */

static const struct pt_conn_handlers login_back_h;
static void b_close_quiet(struct pt_conn *b, const char *reason) { (void)b; (void)reason; }
static const struct pt_conn_handlers dead_back_h = { .on_close = b_close_quiet };

/* Give the client back to its protocol with a temporary failure. */
static void
fail(struct proxy *p, const char *why)
{
	struct pt_conn *c = p->client;
	pt_proxy_failed_fn *failed = p->failed;
	void *arg = p->arg;

	pt_log_as(p->service, PT_LOG_WARNING, "proxy: user=<%s>, rip=%s, backend=%s: %s, session=<%s>", p->user,
	          p->rip, p->dest, why, p->sid);
	if (p->back) {
		struct pt_conn *b = p->back;
		p->back = NULL;
		pt_conn_set_handlers(b, &dead_back_h, NULL);
		pt_conn_close(b, "proxy login failed");
	}
	p->client = NULL;
	if (c) {
		pt_conn_set_handlers(c, &p->saved_h, p->saved_proto);
		pt_conn_resume(c);
	}
	proxy_free(p);
	if (c)
		failed(c, arg, "UNAVAILABLE", why);
}

static void
fail_timer(struct pt_loop *loop, void *arg)
{
	struct proxy *p = arg;
	(void)loop;
	p->timer = NULL;
	fail(p, p->fail_why[0] ? p->fail_why : "timed out");
}

/* Fail from the loop (never inside pt_proxy_start). */
static void
fail_later(struct proxy *p, const char *why)
{
	snprintf(p->fail_why, sizeof p->fail_why, "%s", why);
	if (p->timer)
		pt_timer_cancel(p->loop, p->timer);
	p->timer = pt_timer_add(p->loop, 0, fail_timer, p);
}

/* The client went away while the backend login was under way. */
static void
pending_client_close(struct pt_conn *c, const char *reason)
{
	struct proxy *p = pt_conn_proto(c);
	(void)reason;
	p->client = NULL;
	pt_conn_set_handlers(c, &p->saved_h, p->saved_proto);
	p->failed(c, p->arg, "CLOSED", "the client closed the connection");
	if (p->back) {
		struct pt_conn *b = p->back;
		p->back = NULL;
		pt_conn_set_handlers(b, &dead_back_h, NULL);
		pt_conn_close(b, "client gone");
	}
	proxy_free(p);
}

static const struct pt_conn_handlers pending_client_h = { .on_close = pending_client_close };

/* ---------- the backend dialog ---------- */

static void
start_relay(struct proxy *p, const char *reply)
{
	struct pt_conn *c = p->client, *b = p->back;

	if (p->timer)
		pt_timer_cancel(p->loop, p->timer);
	p->timer = NULL;
	wipe_auth(p);
	p->step = ST_RELAY;
	pt_conn_set_handlers(c, &relay_client_h, p);
	pt_conn_set_handlers(b, &relay_back_h, p);
	pt_conn_set_timeout(c, RELAY_SAFETY_TIMEOUT_MS);
	pt_conn_set_deadline(c, 0);
	pt_conn_set_timeout(b, RELAY_SAFETY_TIMEOUT_MS);
	pt_log_as(p->service, PT_LOG_INFO, "Login: user=<%s>, method=%s, rip=%s, lip=%s, proxy=%s%s, session=<%s>",
	          p->user, p->mech, p->rip, p->lip, p->dest,
	          pt_conn_is_tls(b) ? " (TLS)" : "", p->sid);
	pt_conn_write(c, reply, strlen(reply));
	/* What either side already sent goes on now. */
	pt_conn_relay(c, b);
	pt_conn_relay(b, c);
	pt_conn_resume(c);
	if (p->proto == P_SMTP)
		p->failed(c, p->arg, "OK", "");  /* the module lets go of c */
}

static void
send_login(struct proxy *p)
{
	char buf[2048];

	p->step = ST_LOGIN;
	if (p->proto_imap) {
		/* Dovecot's ID keys: a backend that trusts us logs the client. */
		snprintf(buf, sizeof buf,
		         "P1 ID (\"x-originating-ip\" \"%s\" \"x-originating-port\" \"%u\" \"x-connected-ip\" \"%s\" "
		         "\"x-connected-port\" \"%u\" \"x-session-id\" \"%s\")\r\n",
		         p->rip, p->rport, p->lip, p->lport, p->sid);
		pt_conn_write(p->back, buf, strlen(buf));
		pt_conn_printf(p->back, "P2 AUTHENTICATE PLAIN %s\r\n", p->auth_b64);
	} else {
		/* Dovecot's pop3 proxy: the client's address first (a host that
		 * does not know XCLIENT or us answers -ERR, and that is fine). */
		pt_conn_printf(p->back, "XCLIENT ADDR=%s PORT=%u SESSION=%s\r\n", p->rip, p->rport,
		               p->sid[0] ? p->sid : "-");
		pt_conn_printf(p->back, "AUTH PLAIN %s\r\n", p->auth_b64);
		p->pop3_xclient_pending = 1;
	}
	wipe_auth(p);
}

static void handshake_done(struct pt_conn *b, void *arg);

static SSL *
new_client_ssl(struct proxy *p, char *err, size_t errlen)
{
	const char *ca = conf_str("proxy_tls_ca_file", "");

	if (client_ctx == NULL || strcmp(ca, client_ctx_ca) != 0) {
		SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
		if (ctx == NULL) {
			snprintf(err, errlen, "TLS: out of memory");
			return NULL;
		}
		SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
		SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		int ok = ca[0] ? SSL_CTX_load_verify_locations(ctx, ca, NULL) : SSL_CTX_set_default_verify_paths(ctx);
		if (ok != 1) {
			snprintf(err, errlen, "TLS: cannot load proxy_tls_ca_file %s", ca);
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_free(client_ctx);
		client_ctx = ctx;
		snprintf(client_ctx_ca, sizeof client_ctx_ca, "%s", ca);
	}
	SSL *ssl = SSL_new(client_ctx);
	if (ssl == NULL) {
		snprintf(err, errlen, "TLS: out of memory");
		return NULL;
	}
	/* The certificate must name the host we were told to go to. */
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	struct in6_addr a6;
	struct in_addr a4;
	if (inet_pton(AF_INET, p->host, &a4) == 1 || inet_pton(AF_INET6, p->host, &a6) == 1) {
		X509_VERIFY_PARAM_set1_ip_asc(vp, p->host);
	} else {
		X509_VERIFY_PARAM_set1_host(vp, p->host, 0);
		SSL_set_tlsext_host_name(ssl, p->host);
	}
	return ssl;
}

static void
start_tls(struct proxy *p)
{
	char err[200];
	SSL *ssl = new_client_ssl(p, err, sizeof err);

	if (ssl == NULL) {
		fail(p, err);
		return;
	}
	p->step = ST_HANDSHAKE;
	pt_conn_tls_connect(p->back, ssl, handshake_done, p);
}

static int smtp_line(struct proxy *p, const char *line, size_t len);

/* One line from the backend during the login dialog. 1: read on; 0: the
 * dialog moved on (p may be gone). */
static int
backend_line(struct proxy *p, const char *line, size_t len)
{
	char reply[BACKEND_LINE_MAX + 256], why[300];

	if (p->proto == P_SMTP)
		return smtp_line(p, line, len);
	switch (p->step) {
	case ST_GREETING:
		if (p->proto_imap ? (len < 4 || strncasecmp(line, "* OK", 4) != 0)
		                  : (len < 3 || strncmp(line, "+OK", 3) != 0)) {
			fail(p, "unexpected greeting");
			return 0;
		}
		if (p->tls_mode == 1) {
			p->step = ST_STARTTLS;
			pt_conn_printf(p->back, p->proto_imap ? "P0 STARTTLS\r\n" : "STLS\r\n");
			return 1;
		}
		send_login(p);
		return 1;
	case ST_STARTTLS:
		if (p->proto_imap && len > 0 && line[0] == '*')
			return 1;
		if (p->proto_imap ? (len >= 5 && strncasecmp(line, "P0 OK", 5) == 0)
		                  : (len >= 3 && strncmp(line, "+OK", 3) == 0))
			start_tls(p);
		else
			fail(p, "STARTTLS refused by the backend");
		return 0;
	case ST_LOGIN:
		if (p->proto_imap) {
			if ((len > 0 && line[0] == '*') || (len >= 3 && strncmp(line, "P1 ", 3) == 0))
				return 1;   /* untagged data; ID's answer, whatever it was */
			if (len >= 5 && strncmp(line, "P2 ", 3) == 0 && strncasecmp(line + 3, "OK", 2) == 0) {
				snprintf(reply, sizeof reply, "%s %.*s\r\n", p->tag, (int)(len - 3), line + 3);
				start_relay(p, reply);
				return 0;
			}
			if (len >= 3 && strncmp(line, "P2 ", 3) == 0)
				snprintf(why, sizeof why, "backend refused the login: %.200s", line + 3);
			else if (len >= 1 && line[0] == '+')
				snprintf(why, sizeof why, "backend wants a continuation (no SASL-IR?)");
			else
				snprintf(why, sizeof why, "unexpected reply to the login: %.100s", line);
			fail(p, why);
			return 0;
		}
		if (p->pop3_xclient_pending) {
			p->pop3_xclient_pending = 0;
			return 1;
		}
		if (len >= 3 && strncmp(line, "+OK", 3) == 0) {
			start_relay(p, "+OK Logged in.\r\n");
			return 0;
		}
		snprintf(why, sizeof why, "backend refused the login: %.200s", line);
		fail(p, why);
		return 0;
	default:
		return 0;
	}
}

/* XCLIENT values are xtext (RFC 3461 section 4, as Postfix reads them). */
static void
xtext(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *in && o + 4 < outlen; in++) {
		unsigned char ch = (unsigned char)*in;
		if (ch < 0x21 || ch > 0x7e || ch == '+' || ch == '=')
			o += (size_t)snprintf(out + o, outlen - o, "+%02X", ch);
		else
			out[o++] = (char)ch;
	}
	out[o] = '\0';
}

static void
smtp_send_xclient(struct proxy *p)
{
	char name[300], helo[300], login[300];

	xtext(strcmp(p->client_name, "unknown") == 0 ? "[UNAVAILABLE]" : p->client_name, name, sizeof name);
	xtext(p->helo[0] ? p->helo : "[UNAVAILABLE]", helo, sizeof helo);
	xtext(p->user, login, sizeof login);
	p->step = ST_SMTP_XCLIENT;
	pt_conn_printf(p->back, "XCLIENT ADDR=%s PORT=%u NAME=%s HELO=%s LOGIN=%s\r\n", p->rip, p->rport, name,
	               helo, login);
}

/* SMTP replies from the submission host: greeting, EHLO, STARTTLS,
 * XCLIENT, EHLO again. Continuation lines ("250-") are skipped. */
static int
smtp_line(struct proxy *p, const char *line, size_t len)
{
	char why[300];
	int code = len >= 3 ? (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0') : 0;

	if (len < 3 || code < 200 || code > 599) {
		fail(p, "malformed SMTP reply");
		return 0;
	}
	if (len > 3 && line[3] == '-')
		return 1;
	switch (p->step) {
	case ST_GREETING:
		if (code != 220)
			break;
		p->step = ST_SMTP_EHLO;
		pt_conn_printf(p->back, "EHLO %s\r\n", p->myhostname);
		return 1;
	case ST_SMTP_EHLO:
		if (code != 250)
			break;
		if (p->tls_mode == 1 && !p->tls_done) {
			p->step = ST_STARTTLS;
			pt_conn_printf(p->back, "STARTTLS\r\n");
			return 1;
		}
		smtp_send_xclient(p);
		return 1;
	case ST_STARTTLS:
		if (code != 220)
			break;
		start_tls(p);
		return 0;
	case ST_SMTP_XCLIENT:
		if (code != 220)
			break;
		p->step = ST_SMTP_HELO;
		pt_conn_printf(p->back, "EHLO %s\r\n", p->helo[0] ? p->helo : p->myhostname);
		return 1;
	case ST_SMTP_HELO:
		if (code != 250)
			break;
		start_relay(p, "235 2.7.0 Authentication successful\r\n");
		return 0;
	default:
		return 0;
	}
	snprintf(why, sizeof why, "host answered: %.200s", line);
	fail(p, why);
	return 0;
}

static void
b_login_read(struct pt_conn *b)
{
	struct proxy *p = pt_conn_proto(b);
	const char *line;
	size_t len;
	int eol;

	for (;;) {
		if (p->step == ST_RELAY || p->step == ST_HANDSHAKE)
			return;
		int r = pt_conn_getline(b, BACKEND_LINE_MAX, &line, &len, &eol);
		if (r == 0)
			return;
		if (r < 0) {
			fail(p, "backend line too long");
			return;
		}
		char copy[BACKEND_LINE_MAX + 1];
		memcpy(copy, line, len);
		copy[len] = '\0';
		if (!backend_line(p, copy, len))
			return;
	}
}

static void
b_login_close(struct pt_conn *b, const char *reason)
{
	struct proxy *p = pt_conn_proto(b);
	char why[300];

	p->back = NULL;
	snprintf(why, sizeof why, "backend closed the connection (%s)", reason ? reason : "eof");
	fail(p, why);
}

static const struct pt_conn_handlers login_back_h = { .on_read = b_login_read, .on_close = b_login_close };

static void
handshake_done(struct pt_conn *b, void *arg)
{
	struct proxy *p = arg;
	(void)b;
	if (p->step != ST_HANDSHAKE)
		return;
	p->tls_done = 1;
	if (p->tls_mode == 2) {
		p->step = ST_GREETING;      /* implicit TLS: the greeting comes now */
	} else if (p->proto == P_SMTP) {
		p->step = ST_SMTP_EHLO;     /* RFC 3207: start over after TLS */
		pt_conn_printf(p->back, "EHLO %s\r\n", p->myhostname);
	} else {
		send_login(p);
	}
}

static void
timeout_fire(struct pt_loop *loop, void *arg)
{
	struct proxy *p = arg;
	(void)loop;
	p->timer = NULL;
	fail(p, "timed out (proxy_timeout)");
}

static void
connected(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	struct proxy *p = arg;
	int err = 0;
	socklen_t el = sizeof err;

	(void)events;
	pt_loop_unwatch(loop, fd);
	p->watched = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
		err = errno;
	if (err != 0) {
		char why[200];
		snprintf(why, sizeof why, "cannot connect: %s", strerror(err));
		fail(p, why);
		return;
	}
	p->fd = -1;
	p->back = pt_conn_new(loop, fd, NULL);
	if (p->back == NULL) {
		close(fd);
		fail(p, "out of memory");
		return;
	}
	/* A host that answers and hangs up with our input unread (LOGOUT
	 * with more pipelined behind it): its last lines still go out. */
	pt_conn_keep_last_words(p->back);
	pt_conn_set_handlers(p->back, &login_back_h, p);
	if (p->tls_mode == 2) {
		start_tls(p);
		return;
	}
	p->step = ST_GREETING;
}

/* A host name as DNS has them (LDAP's mailHost: mbox1.example.org). */
static int
host_name_ok(const char *h)
{
	size_t n = strlen(h);
	if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-')
		return 0;
	for (; *h; h++)
		if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') ||
		      *h == '.' || *h == '-'))
			return 0;
	return 1;
}

/* "HOST", "HOST:PORT", "[V6]:PORT", "V6" or a name (with a port): 0 with
 * ss filled for an address, 1 for a name (host and *port filled, the
 * caller asks DNS, never a blocking resolver), -1 when malformed. */
static int
parse_dest(const char *dest, unsigned defport, char *host, size_t hostlen, unsigned *portp,
           struct sockaddr_storage *ss, socklen_t *sl)
{
	char h[256];
	unsigned port = defport;
	const char *colon = strrchr(dest, ':');

	if (dest[0] == '[') {
		const char *close = strchr(dest, ']');
		if (!close || (size_t)(close - dest - 1) >= sizeof h)
			return -1;
		memcpy(h, dest + 1, (size_t)(close - dest - 1));
		h[close - dest - 1] = '\0';
		if (close[1] == ':')
			port = (unsigned)strtoul(close + 2, NULL, 10);
		else if (close[1] != '\0')
			return -1;
	} else if (colon && strchr(dest, ':') == colon) {
		if ((size_t)(colon - dest) >= sizeof h)
			return -1;
		memcpy(h, dest, (size_t)(colon - dest));
		h[colon - dest] = '\0';
		port = (unsigned)strtoul(colon + 1, NULL, 10);
	} else {
		snprintf(h, sizeof h, "%s", dest);
	}
	if (port == 0 || port > 65535)
		return -1;
	*portp = port;
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*sl = sizeof *s4;
	} else if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*sl = sizeof *s6;
	} else if (host_name_ok(h) && dest[0] != '[') {
		snprintf(host, hostlen, "%s", h);
		return 1;
	} else {
		return -1;
	}
	snprintf(host, hostlen, "%s", h);
	return 0;
}

static void
connect_addr(struct proxy *p, const struct sockaddr_storage *ss, socklen_t sl)
{
	p->fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0 || (connect(p->fd, (const struct sockaddr *)ss, sl) != 0 && errno != EINPROGRESS)) {
		char why[200];
		snprintf(why, sizeof why, "cannot connect: %s", strerror(errno));
		fail_later(p, why);
		return;
	}
	p->step = ST_CONNECT;
	if (pt_loop_watch(p->loop, p->fd, PT_EV_WRITE, connected, p) != 0) {
		fail_later(p, "cannot watch the socket");
		return;
	}
	p->watched = 1;
}

/* The host's address from DNS (A, then AAAA): the first one is used. */
static void
dns_done(void *arg, const struct pt_dns_answer *ans)
{
	struct proxy *p = arg;
	struct sockaddr_storage ss;
	socklen_t sl = 0;

	p->dns_pending = 0;
	if (p->orphan) {
		free(p);                 /* failed or abandoned while we asked */
		return;
	}
	for (size_t i = 0; ans->status == PT_DNS_OK && i < ans->n; i++) {
		if (ans->rr[i].type != PT_DNS_A && ans->rr[i].type != PT_DNS_AAAA)
			continue;
		char dest[300], host[256];
		unsigned port;
		snprintf(dest, sizeof dest, ans->rr[i].type == PT_DNS_AAAA ? "[%s]:%u" : "%s:%u", ans->rr[i].text,
		         p->port);
		if (parse_dest(dest, p->port, host, sizeof host, &port, &ss, &sl) == 0) {
			connect_addr(p, &ss, sl);
			return;
		}
	}
	if (!p->dns_aaaa && ans->status != PT_DNS_TEMPFAIL) {
		p->dns_aaaa = 1;
		if (pt_dns_query(p->loop, p->host, PT_DNS_AAAA, dns_done, p) == 0) {
			p->dns_pending = 1;
			return;
		}
	}
	char why[300];
	snprintf(why, sizeof why, "cannot resolve %s%s", p->host,
	         ans->status == PT_DNS_TEMPFAIL ? " (DNS temporary failure)" : "");
	fail(p, why);
}

/* Connect to dest (its port, else defport) from the loop; failures are
 * answered from the loop too. Takes c over (paused) either way. */
static void
proxy_connect(struct proxy *p, const char *dest, unsigned defport)
{
	struct sockaddr_storage ss;
	socklen_t sl = 0;

	pt_conn_get_handlers(p->client, &p->saved_h, &p->saved_proto);
	pt_conn_set_handlers(p->client, &pending_client_h, p);
	pt_conn_pause(p->client);
	int kind = parse_dest(dest, defport, p->host, sizeof p->host, &p->port, &ss, &sl);
	if (kind < 0) {
		fail_later(p, "bad host (ADDR, NAME, ADDR:PORT, NAME:PORT or [V6]:PORT)");
		return;
	}
	long long tmo = conf_int("proxy_timeout", 30);
	p->timer = pt_timer_add(p->loop, (uint64_t)(tmo > 0 ? tmo : 30) * 1000, timeout_fire, p);
	if (kind == 0) {
		connect_addr(p, &ss, sl);
		return;
	}
	p->step = ST_CONNECT;
	if (pt_dns_query(p->loop, p->host, PT_DNS_A, dns_done, p) != 0) {
		fail_later(p, "cannot start a DNS lookup");
		return;
	}
	p->dns_pending = 1;
}

static struct proxy *
proxy_new(struct pt_conn *c, enum proto proto, const char *user, const char *sid, const char *mech,
          const char *dest, pt_proxy_failed_fn *failed, void *arg)
{
	struct proxy *p = calloc(1, sizeof *p);
	if (p == NULL)
		return NULL;
	p->fd = -1;
	p->proto = proto;
	p->proto_imap = proto == P_IMAP;
	p->loop = pt_conn_loop(c);
	p->client = c;
	p->failed = failed;
	p->arg = arg;
	const char *tls = conf_str("proxy_tls", "no");
	p->tls_mode = strcmp(tls, "yes") == 0 ? 2 : strcmp(tls, "starttls") == 0 ? 1 : 0;
	snprintf(p->user, sizeof p->user, "%s", user);
	snprintf(p->rip, sizeof p->rip, "%s", pt_conn_peer_addr(c));
	snprintf(p->lip, sizeof p->lip, "%s", pt_conn_local_addr(c));
	p->rport = pt_conn_peer_port(c);
	p->lport = pt_conn_local_port(c);
	snprintf(p->sid, sizeof p->sid, "%s", sid ? sid : "");
	snprintf(p->mech, sizeof p->mech, "%s", mech ? mech : "");
	snprintf(p->dest, sizeof p->dest, "%s", dest);
	const struct pt_listener *l = pt_conn_listener(c);
	snprintf(p->service, sizeof p->service, "%s",
	         l && l->service ? l->service : proto == P_IMAP ? "imap-login" : proto == P_POP3 ? "pop3-login" : "smtpd");
	return p;
}

int
pt_proxy_start(struct pt_conn *c, const struct pt_session_info *info, const char *dest, const char *password,
               pt_proxy_failed_fn *failed, void *arg)
{
	int imap = strcmp(info->protocol, "imap") == 0;
	if (!imap && strcmp(info->protocol, "pop3") != 0)
		return -1;
	struct proxy *p = proxy_new(c, imap ? P_IMAP : P_POP3, info->user, info->session_id, info->mech, dest,
	                            failed, arg);
	if (p == NULL)
		return -1;
	/* The IMAP tag of the client's LOGIN leads the handoff blob. */
	if (imap) {
		size_t tl = info->handoff ? strnlen(info->handoff, info->handoff_len) : 0;
		if (tl == 0 || tl >= sizeof p->tag || tl == info->handoff_len) {
			free(p);
			return -1;
		}
		memcpy(p->tag, info->handoff, tl);
	}
	/* "\0user\0password" for PLAIN. */
	size_t ul = strlen(info->user), pl = strlen(password);
	size_t rawlen = ul + pl + 2, b64len = (rawlen + 2) / 3 * 4 + 1;
	unsigned char *raw = malloc(rawlen);
	p->auth_b64 = malloc(b64len);
	if (raw == NULL || p->auth_b64 == NULL) {
		free(raw);
		proxy_free(p);
		return -1;
	}
	raw[0] = 0;
	memcpy(raw + 1, info->user, ul);
	raw[1 + ul] = 0;
	memcpy(raw + 2 + ul, password, pl);
	pt_base64_encode(raw, rawlen, p->auth_b64, b64len);
	OPENSSL_cleanse(raw, rawlen);
	free(raw);
	proxy_connect(p, dest, (unsigned)conf_int(imap ? "proxy_imap_port" : "proxy_pop3_port", imap ? 143 : 110));
	return 0;
}

/* A port in dest is for IMAP/POP3 (Dovecot's port= / host=ADDR:PORT):
 * submission always goes to proxy_submission_port. */
static void
dest_host_only(const char *dest, char *out, size_t outlen)
{
	const char *colon = strrchr(dest, ':');
	if (dest[0] == '[') {
		const char *close = strchr(dest, ']');
		size_t n = close ? (size_t)(close - dest + 1) : strlen(dest);
		snprintf(out, outlen, "%.*s", (int)n, dest);
	} else if (colon && strchr(dest, ':') == colon) {
		snprintf(out, outlen, "%.*s", (int)(colon - dest), dest);
	} else if (colon) {
		snprintf(out, outlen, "[%s]", dest);   /* a bare IPv6 address */
	} else {
		snprintf(out, outlen, "%s", dest);
	}
}

int
pt_session_proxy_smtp(struct pt_conn *c, const struct pt_smtp_proxy_info *info,
                      void (*done)(struct pt_conn *c, void *arg, const char *code, const char *why), void *arg)
{
	if (c == NULL || info == NULL || info->user == NULL || info->dest == NULL || done == NULL)
		return -1;
	struct proxy *p = proxy_new(c, P_SMTP, info->user, NULL, "PLAIN", info->dest, done, arg);
	if (p == NULL)
		return -1;
	snprintf(p->helo, sizeof p->helo, "%s", info->helo ? info->helo : "");
	snprintf(p->client_name, sizeof p->client_name, "%s", info->client_name ? info->client_name : "unknown");
	snprintf(p->myhostname, sizeof p->myhostname, "%s", info->myhostname ? info->myhostname : "localhost");
	if (info->service)
		snprintf(p->service, sizeof p->service, "%s", info->service);
	char host[300], dest[320];
	dest_host_only(info->dest, host, sizeof host);
	unsigned port = (unsigned)conf_int("proxy_submission_port", 587);
	snprintf(dest, sizeof dest, "%s:%u", host, port);
	snprintf(p->dest, sizeof p->dest, "%s", dest);
	proxy_connect(p, dest, port);
	return 0;
}
