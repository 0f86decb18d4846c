/* POP3 before login, in the worker (as mail_owner, no mailbox access):
 * greeting, CAPA, STLS (RFC 2595), USER/PASS and AUTH PLAIN/LOGIN
 * (RFC 5034) checked through the auth service, then the hand-off of the
 * connection to the user's mail process. Replies are Dovecot's. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "postern/conn.h"
#include "postern/event.h"
#include "postern/log.h"
#include "postern/sasl.h"
#include "postern/services.h"
#include "postern/session.h"
#include "pop3.h"

#define LOG_SERVICE "pop3-login"

#define MSG_AUTH_FAILED "-ERR [AUTH] Authentication failed."
#define MSG_PLAINTEXT_DISABLED \
	"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
#define MSG_TEMPFAIL "-ERR [SYS/TEMP] Temporary authentication failure."

enum login_state {
	LS_CMD,        /* reading commands */
	LS_SASL,       /* reading a SASL response line */
	LS_CLOSING,    /* goodbye queued */
};

struct pop3_login {
	struct pt_conn *conn;
	struct pt_loop *loop;
	struct pop3_settings *set;
	enum login_state state;
	char peer[64], local[64];
	char session_id[24];
	char *user;                   /* from USER */
	struct pt_sasl *sasl;
	enum pt_sasl_mech mech;
	const char *method;           /* of the check under way: "USER", "PLAIN", "LOGIN" */
	char auth_user[PT_SASL_USER_MAX + 1]; /* whose password is being checked */
	unsigned bad;                 /* invalid commands */
	unsigned failures;            /* failed logins */
	int async;                    /* a password check is running: its
	                                 answer (from the loop, services.h)
	                                 is owed to s, and frees s if gone */
	int gone;                     /* conn closed or handed off; conn NULL */
	int tls_started;
	struct pt_deferred reap;      /* the free, once gone and nothing owed */
};

static void login_input(struct pop3_login *s);

/* ---- helpers ---- */

static void
reply(struct pop3_login *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply(struct pop3_login *s, const char *fmt, ...)
{
	char buf[600];
	va_list ap;

	if (s->gone)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pt_conn_printf(s->conn, "%s\r\n", buf);
}

static void
close_with(struct pop3_login *s, const char *text)
{
	reply(s, "%s", text);
	s->state = LS_CLOSING;
	if (!s->gone)
		pt_conn_close_after_write(s->conn);
}

/* Printable ASCII only in logs (the name comes from the network). */
static void
printable(char *p)
{
	for (; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
}

static void
new_session_id(char out[24])
{
	unsigned char raw[12];

	if (getrandom(raw, sizeof(raw), GRND_NONBLOCK) != (ssize_t)sizeof(raw)) {
		/* Only a log correlation id: uniqueness is enough. */
		static unsigned counter;
		uint64_t t = (uint64_t)time(NULL);
		memcpy(raw, &t, 8);
		counter++;
		memcpy(raw + 8, &counter, 4);
	}
	pt_base64_encode(raw, sizeof(raw), out, 24);
}

/* Both addresses in one family's bytes, v4-mapped v6 folded to v4. */
static int
addr_key(const char *s, unsigned char out[16])
{
	struct in6_addr a6;
	struct in_addr a4;

	memset(out, 0, 16);
	if (inet_pton(AF_INET, s, &a4) == 1) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a4, 4);
		return 0;
	}
	if (inet_pton(AF_INET6, s, &a6) == 1) {
		memcpy(out, &a6, 16);
		return 0;
	}
	return -1;
}

/* Dovecot's disable_plaintext_auth: plaintext only over TLS or when the
 * client is this host talking to itself ("secured"), or a front in
 * login_trusted_networks (plaintext_allowed). */
static int
secured(const struct pop3_login *s)
{
	unsigned char a[16], b[16];

	return addr_key(s->peer, a) == 0 && addr_key(s->local, b) == 0 && memcmp(a, b, 16) == 0;
}

static int
plaintext_allowed(const struct pop3_login *s)
{
	return !s->set->plaintext_disabled || pt_conn_is_tls(s->conn) || secured(s) ||
	       pt_conn_trusted_front(s->conn);
}

static int
mech_enabled(const struct pop3_login *s, enum pt_sasl_mech m)
{
	return (m == PT_SASL_PLAIN && s->set->mech_plain) || (m == PT_SASL_LOGIN && s->set->mech_login);
}

static const struct pt_auth_ops *
auth_ops(void)
{
	const struct pt_auth_ops *ops = pt_service_get(PT_SVC_AUTH);

	return ops && ops->verify ? ops : NULL;
}

/* ---- state lifetime ---- */

static void
login_free(struct pop3_login *s)
{
	free(s->user);
	pt_sasl_free(s->sasl);
	pop3_settings_put(s->set);
	free(s);
}

static void
reap(struct pt_loop *loop, void *arg)
{
	(void)loop;
	login_free(arg);
}

/* The conn is no longer ours. Our handlers may be running below (a reply
 * that hit the output limit closes the conn inside it), so the free waits
 * for the loop; while a check is out its answer frees s instead. */
static void
login_gone(struct pop3_login *s)
{
	s->gone = 1;
	s->conn = NULL;
	if (!s->async)
		pt_defer(s->loop, &s->reap, reap, s);
}

static void
on_read(struct pt_conn *c)
{
	struct pop3_login *s = pt_conn_proto(c);

	s->tls_started = 0;
	login_input(s);
}

static void
on_close(struct pt_conn *c, const char *reason)
{
	struct pop3_login *s = pt_conn_proto(c);

	if (s->failures > 0) {
		char user[sizeof(s->auth_user)];
		snprintf(user, sizeof(user), "%s", s->auth_user);
		printable(user);
		pt_log_as(LOG_SERVICE, PT_LOG_INFO,
		          "Disconnected (auth failed, %u attempts): user=<%s>, rip=%s, lip=%s, session=<%s>",
		          s->failures, user, s->peer, s->local, s->session_id);
	} else if (reason && strcmp(reason, "timeout") == 0) {
		pt_log_as(LOG_SERVICE, PT_LOG_INFO, "Disconnected: Inactivity (no auth attempts): rip=%s, lip=%s, session=<%s>",
		          s->peer, s->local, s->session_id);
	}
	login_gone(s);
}

static const struct pt_conn_handlers login_handlers = { on_read, on_close, NULL };

/* While the core takes the conn over, nothing of ours may be touched. */
static void handed_read(struct pt_conn *c) { (void)c; }
static void handed_close(struct pt_conn *c, const char *reason) { (void)c; (void)reason; }
static const struct pt_conn_handlers handed_handlers = { handed_read, handed_close, NULL };

static struct pop3_login *
login_new(struct pt_conn *conn)
{
	struct pop3_login *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->set = pop3_settings_get();
	if (s->set == NULL) {
		free(s);
		return NULL;
	}
	s->conn = conn;
	s->loop = pt_conn_loop(conn);
	snprintf(s->peer, sizeof(s->peer), "%s", pt_conn_peer_addr(conn));
	snprintf(s->local, sizeof(s->local), "%s", pt_conn_local_addr(conn));
	new_session_id(s->session_id);
	s->state = LS_CMD;
	pt_conn_set_handlers(conn, &login_handlers, s);
	pt_conn_set_timeout(conn, s->set->login_timeout_ms);
	/* A total deadline too: trickled input must not keep a pre-login
	 * session (and its slot) alive; the handoff clears it. */
	pt_conn_set_deadline(conn, s->set->login_timeout_ms);
	return s;
}

void
pop3_login_accept(struct pt_conn *conn, const struct pt_listener *l)
{
	struct pop3_login *s;

	(void)l;
	s = login_new(conn);
	if (s == NULL) {
		pt_conn_printf(conn, "-ERR [SYS/TEMP] Out of memory.\r\n");
		pt_conn_close_after_write(conn);
		return;
	}
	reply(s, "+OK Postern ready.");
}

/* ---- the hand-off ---- */

/* No mail process took the session: the conn is ours again, with fresh
 * pre-login state. RFC 3206: IN-USE for too many sessions of this user,
 * SYS/TEMP for anything else (try again later). */
static void
handoff_failed(struct pt_conn *c, void *arg, const char *code, const char *why)
{
	struct pop3_login *s;

	(void)arg;
	(void)why; /* the core logged it */
	/* The client left while the mail process was being set up: the conn
	 * is closing, and there is nobody to answer. */
	if (code && strcmp(code, "CLOSED") == 0)
		return;
	s = login_new(c);
	if (s == NULL) {
		pt_conn_printf(c, "-ERR [SYS/TEMP] Out of memory.\r\n");
		pt_conn_close_after_write(c);
		return;
	}
	/* Dovecot's IMAP text for the limit, with RFC 3206's IN-USE: the
	 * user's maildrop is busy with other sessions from this address. */
	if (code && strcmp(code, "LIMIT") == 0)
		reply(s, "-ERR [IN-USE] Maximum number of connections from user+IP exceeded "
		      "(mail_max_userip_connections=%lld)", s->set->userip_max);
	else
		reply(s, "-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.");
	pt_conn_resume(c);
	login_input(s);
}

static void
login_succeeded(struct pop3_login *s, const char *user, const char *method)
{
	struct pt_session_info info;
	struct pt_conn *c = s->conn;
	char name[PT_SASL_USER_MAX + 1];

	snprintf(name, sizeof(name), "%s", user);
	printable(name);
	memset(&info, 0, sizeof(info));
	info.protocol = "pop3";
	info.user = user;
	/* The core logs "Login: user=<>, method=..." as Dovecot does, which
	 * names USER/PASS logins PLAIN. */
	info.mech = strcmp(method, "USER") == 0 ? "PLAIN" : method;
	info.session_id = s->session_id;
	/* The core owns the conn from here; our state goes first (its
	 * on_close is not called after a hand-off). */
	pt_conn_set_handlers(c, &handed_handlers, NULL);
	if (pt_session_handoff(c, &info, handoff_failed, NULL) != 0) {
		pt_conn_set_handlers(c, &login_handlers, s);
		pt_log_as(LOG_SERVICE, PT_LOG_WARNING, "Login failed: session hand-off refused: user=<%s>, rip=%s",
		          name, s->peer);
		reply(s, "-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.");
		return;
	}
	login_gone(s);
}

/* ---- password checks ---- */

static void
auth_done(struct pop3_login *s, int result)
{
	const char *method = s->method ? s->method : "USER";

	pt_sasl_free(s->sasl);
	s->sasl = NULL;
	if (result == 1) {
		char user[sizeof(s->auth_user)];
		snprintf(user, sizeof(user), "%s", s->auth_user);
		login_succeeded(s, user, method);
		return;
	}
	char user[sizeof(s->auth_user)];
	snprintf(user, sizeof(user), "%s", s->auth_user);
	printable(user);
	if (result < 0) {
		pt_log_as(LOG_SERVICE, PT_LOG_WARNING,
		          "Authentication temporarily failed: user=<%s>, method=%s, rip=%s, lip=%s, session=<%s>",
		          user, strcmp(method, "USER") == 0 ? "PLAIN" : method, s->peer, s->local, s->session_id);
		reply(s, "%s", MSG_TEMPFAIL);
		return;
	}
	s->failures++;
	pt_log_as(LOG_SERVICE, PT_LOG_WARNING,
	          "Authentication failed (attempt %u): user=<%s>, method=%s, rip=%s, lip=%s, session=<%s>",
	          s->failures, user, strcmp(method, "USER") == 0 ? "PLAIN" : method, s->peer, s->local,
	          s->session_id);
	reply(s, "%s", MSG_AUTH_FAILED);
}

static void
auth_verified(void *arg, int result)
{
	struct pop3_login *s = arg;

	s->async = 0;
	if (s->gone) {
		login_free(s);
		return;
	}
	auth_done(s, result);
	if (s->gone)
		return;
	pt_conn_resume(s->conn);
	login_input(s);
}

/* Input pauses until the answer: commands pipelined behind PASS must
 * wait for it (and after a success they belong to the mail process). */
static void
auth_verify(struct pop3_login *s, const char *user, const char *password, const char *method,
            int refuse)
{
	const struct pt_auth_ops *ops = auth_ops();

	snprintf(s->auth_user, sizeof(s->auth_user), "%s", user);
	/* A login refused before any check still takes the auth service's
	 * path (same delay, same throttle) with a user that cannot match. */
	if (refuse)
		user = password = "";
	s->method = method;
	if (ops == NULL || ops->verify(s->loop, user, password, "pop3", s->peer, auth_verified, s) != 0) {
		auth_done(s, -1);
		return;
	}
	s->async = 1;
	pt_conn_pause(s->conn);
}

/* ---- commands ---- */

static void
cmd_capa(struct pop3_login *s)
{
	char sasl[64] = "";
	int plain = plaintext_allowed(s);

	if (plain && (s->set->mech_plain || s->set->mech_login))
		snprintf(sasl, sizeof(sasl), "SASL%s%s\r\n", s->set->mech_plain ? " PLAIN" : "",
		         s->set->mech_login ? " LOGIN" : "");
	if (s->gone)
		return;
	pt_conn_printf(s->conn, "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n"
	               "AUTH-RESP-CODE\r\n%s%s%s.\r\n",
	               pt_conn_tls_available(s->conn) ? "STLS\r\n" : "", plain ? "USER\r\n" : "", sasl);
}

static int
bad_command(struct pop3_login *s, const char *text)
{
	if (++s->bad >= POP3_LOGIN_BAD_MAX) {
		pt_log_as(LOG_SERVICE, PT_LOG_INFO, "Disconnected: Too many bad commands: rip=%s, lip=%s, session=<%s>",
		          s->peer, s->local, s->session_id);
		close_with(s, "-ERR Too many invalid bad commands.");
		return -1;
	}
	reply(s, "%s", text);
	return 0;
}

static void
cmd_stls(struct pop3_login *s)
{
	if (pt_conn_is_tls(s->conn)) {
		reply(s, "-ERR TLS is already active.");
		return;
	}
	if (!pt_conn_tls_available(s->conn)) {
		reply(s, "-ERR TLS support isn't enabled.");
		return;
	}
	reply(s, "+OK Begin TLS negotiation now.");
	/* RFC 2595 section 4: forget what the client said in the clear. */
	free(s->user);
	s->user = NULL;
	if (pt_conn_starttls(s->conn) != 0) {
		close_with(s, "-ERR [SYS/TEMP] TLS initialization failed.");
		return;
	}
	s->tls_started = 1;
}

static void
cmd_user(struct pop3_login *s, const struct pop3_cmd *c)
{
	if (!plaintext_allowed(s)) {
		reply(s, "%s", MSG_PLAINTEXT_DISABLED);
		return;
	}
	if (c->arglen == 0 || c->arglen > PT_SASL_USER_MAX || memchr(c->arg, 0, c->arglen)) {
		bad_command(s, "-ERR No username given.");
		return;
	}
	free(s->user);
	s->user = strndup(c->arg, c->arglen);
	if (s->user == NULL) {
		reply(s, "-ERR [SYS/TEMP] Out of memory.");
		return;
	}
	reply(s, "+OK");
}

static void
cmd_pass(struct pop3_login *s, const struct pop3_cmd *c)
{
	char password[PT_SASL_PASS_MAX + 1];
	char *user;

	if (!plaintext_allowed(s)) {
		reply(s, "%s", MSG_PLAINTEXT_DISABLED);
		return;
	}
	if (s->user == NULL) {
		bad_command(s, "-ERR No username given.");
		return;
	}
	user = s->user;
	s->user = NULL;
	if (c->arglen > PT_SASL_PASS_MAX || memchr(c->arg, 0, c->arglen)) {
		/* Refused without a check, but answered as a wrong password. */
		auth_verify(s, user, "", "USER", 1);
		free(user);
		return;
	}
	memcpy(password, c->arg, c->arglen);
	password[c->arglen] = 0;
	auth_verify(s, user, password, "USER", 0);
	explicit_bzero(password, sizeof(password));
	free(user);
}

static void
sasl_result(struct pop3_login *s, enum pt_sasl_status st)
{
	const char *name = pt_sasl_mech_name(s->mech);

	switch (st) {
	case PT_SASL_CHALLENGE:
		s->state = LS_SASL;
		reply(s, "+ %s", pt_sasl_challenge(s->sasl));
		return;
	case PT_SASL_DONE:
		s->state = LS_CMD;
		auth_verify(s, pt_sasl_user(s->sasl), pt_sasl_password(s->sasl), name, 0);
		return;
	case PT_SASL_CANCELLED:
		s->state = LS_CMD;
		pt_sasl_free(s->sasl);
		s->sasl = NULL;
		reply(s, "-ERR Authentication aborted by client.");
		return;
	case PT_SASL_MALFORMED:
		s->state = LS_CMD;
		pt_log_as(LOG_SERVICE, PT_LOG_WARNING, "Authentication failed: %s: method=%s, rip=%s, lip=%s, session=<%s>",
		          pt_sasl_error(s->sasl), name, s->peer, s->local, s->session_id);
		reply(s, "-ERR [AUTH] %s.", pt_sasl_error(s->sasl));
		pt_sasl_free(s->sasl);
		s->sasl = NULL;
		return;
	case PT_SASL_FAILED:
		s->state = LS_CMD;
		/* Same wait and answer as a wrong password; the user named in
		 * the response still shows in the log. */
		{
			char user[PT_SASL_USER_MAX + 1];
			snprintf(user, sizeof(user), "%s", pt_sasl_user(s->sasl));
			auth_verify(s, user, "", name, 1);
		}
		return;
	}
}

/* "AUTH" lists the mechanisms; "AUTH mech [initial-response]" (RFC 5034). */
static void
cmd_auth(struct pop3_login *s, const struct pop3_cmd *c)
{
	const char *w[3];
	size_t wl[3], n = pop3_split_args(c->arg, c->arglen, w, wl, 2);
	char mech[32], initial[PT_SASL_RESPONSE_MAX + 1];

	if (n == 0) {
		int plain = plaintext_allowed(s);
		pt_conn_printf(s->conn, "+OK\r\n%s%s.\r\n", plain && s->set->mech_plain ? "PLAIN\r\n" : "",
		               plain && s->set->mech_login ? "LOGIN\r\n" : "");
		return;
	}
	if (n > 2 || (n == 2 && wl[1] > PT_SASL_RESPONSE_MAX)) {
		bad_command(s, "-ERR Invalid AUTH parameters.");
		return;
	}
	snprintf(mech, sizeof(mech), "%.*s", (int)(wl[0] < sizeof(mech) - 1 ? wl[0] : sizeof(mech) - 1), w[0]);
	enum pt_sasl_mech m = pt_sasl_mech_parse(mech);
	if (m == PT_SASL_NONE || !mech_enabled(s, m)) {
		reply(s, "-ERR [AUTH] Unsupported authentication mechanism.");
		return;
	}
	if (!plaintext_allowed(s)) {
		reply(s, "%s", MSG_PLAINTEXT_DISABLED);
		return;
	}
	s->sasl = pt_sasl_new(m);
	if (s->sasl == NULL) {
		reply(s, "-ERR [SYS/TEMP] Out of memory.");
		return;
	}
	s->mech = m;
	if (n == 2) {
		memcpy(initial, w[1], wl[1]);
		initial[wl[1]] = 0;
	}
	sasl_result(s, pt_sasl_start(s->sasl, n == 2 ? initial : NULL, n == 2 ? wl[1] : 0));
}

static void
dispatch(struct pop3_login *s, const char *line, size_t len)
{
	struct pop3_cmd c;

	pop3_parse_command(line, len, &c);
	switch (c.verb) {
	case POP3_CAPA:
		cmd_capa(s);
		break;
	case POP3_STLS:
		cmd_stls(s);
		break;
	case POP3_USER:
		cmd_user(s, &c);
		break;
	case POP3_PASS:
		cmd_pass(s, &c);
		break;
	case POP3_AUTH:
		cmd_auth(s, &c);
		break;
	case POP3_QUIT:
		/* After failed attempts the close writes their summary instead. */
		if (s->failures == 0)
			pt_log_as(LOG_SERVICE, PT_LOG_INFO,
			          "Aborted login (no auth attempts): rip=%s, lip=%s, session=<%s>", s->peer, s->local,
			          s->session_id);
		close_with(s, "+OK Logging out");
		break;
	default:
		if (strcmp(c.name, "XCLIENT") == 0) {
			int r = pop3_xclient(s->conn, c.arg, c.arglen, s->session_id);
			if (r >= 0) {
				snprintf(s->peer, sizeof(s->peer), "%s", pt_conn_peer_addr(s->conn));
				reply(s, r ? "+OK" : "-ERR Invalid XCLIENT parameters");
				break;
			}
		}
		{
			char text[64];
			snprintf(text, sizeof(text), "-ERR Unknown command: %s", c.name);
			bad_command(s, text);
		}
		break;
	}
}

static void
sasl_response(struct pop3_login *s, const char *line, size_t len, int rc)
{
	s->state = LS_CMD;
	if (s->sasl == NULL)
		return;
	if (rc < 0) {
		pt_sasl_free(s->sasl);
		s->sasl = NULL;
		reply(s, "-ERR [AUTH] Authentication failed.");
		return;
	}
	sasl_result(s, pt_sasl_step(s->sasl, line, len));
}

static void
login_input(struct pop3_login *s)
{
	while (!s->gone && !s->async && s->state != LS_CLOSING && !s->tls_started) {
		const char *line;
		size_t len;
		int eol, rc;

		if (s->state == LS_SASL) {
			rc = pt_conn_getline(s->conn, PT_SASL_RESPONSE_MAX + 2, &line, &len, &eol);
			if (rc == 0)
				break;
			sasl_response(s, line, len, rc);
			continue;
		}
		rc = pt_conn_getline(s->conn, POP3_LINE_MAX, &line, &len, &eol);
		if (rc == 0)
			break;
		if (rc < 0) {
			close_with(s, "-ERR Input line too long.");
			break;
		}
		dispatch(s, line, len);
	}
}
