/* IMAP before login, in the worker (as mail_owner, no mailbox access):
 * greeting, CAPABILITY, STARTTLS, ID, LOGIN and AUTHENTICATE through the
 * auth service, then the handoff to the user's mail process, which sends
 * the tagged OK. Replies are Dovecot's imap-login texts. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "postern/config.h"
#include "postern/conn.h"
#include "postern/event.h"
#include "postern/log.h"
#include "postern/sasl.h"
#include "postern/services.h"
#include "postern/session.h"
#include "imap.h"
#include "imap_id_trust.h"
#include "imap_parse.h"

#define LOGIN_MAX_BAD 10              /* Dovecot closes after this many BADs */
#define LOGIN_LITERAL_MAX 8192        /* credentials only before login */
#define LOGIN_HANDOFF_KEEP_S 600      /* a handoff record older than this is dropped */

struct imap_login {
	struct pt_conn *conn;
	struct pt_loop *loop;
	const char *service;
	struct imap_reader rd;
	int saw_capability;           /* the client asked CAPABILITY: plain "OK Logged in" */
	unsigned bad;
	unsigned failures;            /* failed logins so far (Dovecot's "N attempts") */
	int waiting;                  /* auth check or handoff under way: its
	                                 answer (from the loop) is owed to l */
	int gone;                     /* the conn closed; conn is NULL */
	int closing;
	struct pt_deferred reap;      /* the free, once gone and nothing owed */
	struct pt_sasl *sasl;
	enum pt_sasl_mech mech;
	int sasl_wait;                /* a "+ challenge" is out: next line is the response */
	char *tag;                    /* of the LOGIN / AUTHENTICATE in progress */
	char session_id[20];
	time_t handed_at;             /* in the handoff list since */
	int in_handed;                /* on the handoff list */
	struct imap_login *next, *prev; /* handoff list, newest first */
};

/* Logins handed to the core: kept only so that a failed handoff can
 * answer the client (the core restores our handlers then); dropped when
 * old, since success is never reported back. A busy front hands off
 * hundreds of logins a second, so every list operation is O(1) and the
 * sweep stops at the first record young enough to keep (the tail is the
 * oldest). */
static struct imap_login *handed, *handed_tail;

static void login_read(struct pt_conn *c);
static void login_close(struct pt_conn *c, const char *reason);
static const struct pt_conn_handlers login_handlers = { .on_read = login_read, .on_close = login_close };

static void
lsend(struct imap_login *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
lsend(struct imap_login *l, const char *fmt, ...)
{
	char small[1024], *buf = small;
	va_list ap, cp;

	if (l->gone)
		return;
	va_start(ap, fmt);
	va_copy(cp, ap);
	int n = vsnprintf(small, sizeof(small) - 2, fmt, ap);
	va_end(ap);
	/* A long tag (the line limit allows one) is echoed whole: a reply cut
	 * short would lose its status and not be a reply at all. */
	if (n >= 0 && (size_t)n > sizeof(small) - 3) {
		buf = malloc((size_t)n + 3);
		if (buf)
			vsnprintf(buf, (size_t)n + 1, fmt, cp);
	}
	va_end(cp);
	if (n < 0 || !buf)
		return;
	buf[n++] = '\r';
	buf[n++] = '\n';
	pt_conn_write(l->conn, buf, (size_t)n);
	if (buf != small)
		free(buf);
}

static int
plaintext_ok(const struct imap_login *l)
{
	if (imap_set.conf == NULL)
		return pt_conn_is_tls(l->conn);
	return pt_sasl_plaintext_allowed(imap_set.conf, pt_conn_is_tls(l->conn), pt_conn_peer_addr(l->conn),
	                                 pt_conn_local_addr(l->conn)) ||
	       pt_conn_trusted_front(l->conn);
}

static int
mech_on(enum pt_sasl_mech m)
{
	return imap_set.conf ? pt_sasl_mech_enabled(imap_set.conf, m) : m == PT_SASL_PLAIN;
}

static void
capabilities(const struct imap_login *l, char *out, size_t len)
{
	int tls_offer = pt_conn_tls_available(l->conn) && !pt_conn_is_tls(l->conn);

	snprintf(out, len, "IMAP4rev1 IMAP4rev2 SASL-IR ID ENABLE IDLE LITERAL+%s", tls_offer ? " STARTTLS" : "");
	if (!plaintext_ok(l)) {
		strncat(out, " LOGINDISABLED", len - strlen(out) - 1);
		return;
	}
	if (mech_on(PT_SASL_PLAIN))
		strncat(out, " AUTH=PLAIN", len - strlen(out) - 1);
	if (mech_on(PT_SASL_LOGIN))
		strncat(out, " AUTH=LOGIN", len - strlen(out) - 1);
}

static void
login_free(struct imap_login *l)
{
	pt_defer_cancel(l->loop, &l->reap);
	imap_reader_free(&l->rd);
	pt_sasl_free(l->sasl);
	free(l->tag);
	free(l);
}

static void
reap(struct pt_loop *loop, void *arg)
{
	(void)loop;
	login_free(arg);
}

/* Say goodbye: close once the queued replies are out. */
static void
close_after(struct imap_login *l)
{
	l->closing = 1;
	if (!l->gone)
		pt_conn_close_after_write(l->conn);
}

static void
handed_push(struct imap_login *l)
{
	l->handed_at = time(NULL);
	l->prev = NULL;
	l->next = handed;
	if (handed)
		handed->prev = l;
	else
		handed_tail = l;
	handed = l;
	l->in_handed = 1;
}

static void
handed_unlink(struct imap_login *l)
{
	if (!l->in_handed)
		return;
	if (l->prev)
		l->prev->next = l->next;
	else
		handed = l->next;
	if (l->next)
		l->next->prev = l->prev;
	else
		handed_tail = l->prev;
	l->next = l->prev = NULL;
	l->in_handed = 0;
}

static int
handed_has(const struct imap_login *l)
{
	return l->in_handed;
}

void
imap_login_stop(void)
{
	while (handed) {
		struct imap_login *h = handed;
		handed_unlink(h);
		login_free(h);
	}
}

static void
handed_sweep(void)
{
	time_t now = time(NULL);

	/* handed_at only grows towards the head (a clock stepped back makes
	 * a record look young: it waits for the next sweeps, no harm). */
	while (handed_tail && now - handed_tail->handed_at > LOGIN_HANDOFF_KEEP_S) {
		struct imap_login *h = handed_tail;
		handed_unlink(h);
		login_free(h);
	}
}

/* Dovecot's shape: 16 base64 characters from 12 random bytes. */
static void
new_session_id(char *out, size_t len)
{
	unsigned char r[12];

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		memset(r, 0, sizeof(r));
		memcpy(r, &ts.tv_nsec, sizeof(ts.tv_nsec) < sizeof(r) ? sizeof(ts.tv_nsec) : sizeof(r));
	}
	if (pt_base64_encode(r, sizeof(r), out, len) == (size_t)-1)
		snprintf(out, len, "-");
}

static void
bad_command(struct imap_login *l, const char *tag, const char *fmt, const char *a, const char *b)
{
	char text[300];

	snprintf(text, sizeof(text), fmt, a, b);
	lsend(l, "%s BAD %s", tag ? tag : "*", text);
	if (++l->bad >= LOGIN_MAX_BAD) {
		lsend(l, "* BYE Too many invalid IMAP commands.");
		close_after(l);
	}
}

/* ---- after the credentials ---- */

static void
handoff_failed(struct pt_conn *c, void *arg, const char *code, const char *why)
{
	struct imap_login *l = arg;

	if (!handed_has(l)) {
		/* Dropped meanwhile: nothing left to answer with. */
		if (strcmp(code, "CLOSED") != 0) {
			pt_conn_printf(c, "* BYE Internal error occurred.\r\n");
			pt_conn_close_after_write(c);
		}
		return;
	}
	handed_unlink(l);
	if (strcmp(code, "CLOSED") == 0) {
		/* The core frees the conn; our on_close is not called for it. */
		login_free(l);
		return;
	}
	pt_conn_set_handlers(c, &login_handlers, l);
	l->waiting = 0;
	if (strcmp(code, "LIMIT") == 0) {
		/* A core parameter (declared with the session handoff). */
		long long max = imap_set.conf ? pt_conf_int(imap_set.conf, "mail_max_userip_connections") : 10;
		lsend(l, "%s NO [LIMIT] Maximum number of connections from user+IP exceeded "
		      "(mail_max_userip_connections=%lld)", l->tag, max);
	} else {
		pt_log_as(l->service, PT_LOG_WARNING, "session %s: handoff failed: %s: %s", l->session_id, code,
		          why);
		lsend(l, "%s NO [UNAVAILABLE] Temporary authentication failure.", l->tag);
	}
	free(l->tag);
	l->tag = NULL;
	login_read(c);
}

static void
start_handoff(struct imap_login *l, const char *user)
{
	char blob[PT_SESSION_HANDOFF_MAX];
	size_t tl = strlen(l->tag);

	if (tl + 3 > sizeof(blob)) {
		lsend(l, "%s NO [UNAVAILABLE] Temporary authentication failure.", l->tag);
		return;
	}
	/* The post-login side answers the login: it needs the tag and
	 * whether the client already has the capability list. */
	memcpy(blob, l->tag, tl + 1);
	blob[tl + 1] = l->saw_capability ? '1' : '0';
	struct pt_session_info info = {
		.protocol = "imap",
		.user = user,
		.mech = pt_sasl_mech_name(l->mech),
		.session_id = l->session_id,
		.handoff = blob,
		.handoff_len = tl + 2,
	};
	imap_reader_free(&l->rd);
	pt_sasl_free(l->sasl);
	l->sasl = NULL;
	l->waiting = 1;
	handed_push(l);
	if (pt_session_handoff(l->conn, &info, handoff_failed, l) != 0) {
		handed_unlink(l);
		l->waiting = 0;
		lsend(l, "%s NO [UNAVAILABLE] Temporary authentication failure.", l->tag);
		free(l->tag);
		l->tag = NULL;
	}
}

static void
verified(void *arg, int result)
{
	struct imap_login *l = arg;
	char user[PT_SASL_USER_MAX + 1];

	l->waiting = 0;
	if (l->gone) {
		login_free(l);
		return;
	}
	snprintf(user, sizeof(user), "%s", l->sasl ? pt_sasl_user(l->sasl) : "");
	for (char *p = user; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (result == 1) {
		start_handoff(l, user);
		if (!l->waiting && !l->gone) {
			pt_conn_resume(l->conn);
			login_read(l->conn);
		}
		return;
	}
	if (result < 0) {
		pt_log_as(l->service, PT_LOG_WARNING, "Login failed: user=<%s>, method=%s, rip=%s, lip=%s: "
		          "temporary authentication failure, session=<%s>", user, pt_sasl_mech_name(l->mech),
		          pt_conn_peer_addr(l->conn), pt_conn_local_addr(l->conn), l->session_id);
		lsend(l, "%s NO [UNAVAILABLE] Temporary authentication failure.", l->tag);
	} else {
		/* Dovecot's shape, so that fail2ban's dovecot regex reads it too;
		 * one line per failed attempt (packaging/fail2ban counts them). */
		pt_log_as(l->service, PT_LOG_INFO, "Aborted login (auth failed, %u attempts): user=<%s>, method=%s, rip=%s, "
		          "lip=%s, session=<%s>", ++l->failures, user, pt_sasl_mech_name(l->mech), pt_conn_peer_addr(l->conn),
		          pt_conn_local_addr(l->conn), l->session_id);
		lsend(l, "%s NO [AUTHENTICATIONFAILED] Authentication failed.", l->tag);
	}
	pt_sasl_free(l->sasl);
	l->sasl = NULL;
	free(l->tag);
	l->tag = NULL;
	if (l->gone)
		return;
	pt_conn_resume(l->conn);
	login_read(l->conn);
}

static void
verify(struct imap_login *l, const char *user, const char *password)
{
	const struct pt_auth_ops *ops = pt_service_get(PT_SVC_AUTH);

	/* The answer comes from the loop, never inside verify (services.h). */
	if (ops == NULL || ops->verify == NULL ||
	    ops->verify(l->loop, user, password, "imap", pt_conn_peer_addr(l->conn), verified, l) != 0) {
		verified(l, -1);
		return;
	}
	l->waiting = 1;
	pt_conn_pause(l->conn);
}

static void
sasl_result(struct imap_login *l, enum pt_sasl_status st)
{
	switch (st) {
	case PT_SASL_CHALLENGE:
		l->sasl_wait = 1;
		lsend(l, "+ %s", pt_sasl_challenge(l->sasl));
		return;
	case PT_SASL_DONE:
		verify(l, pt_sasl_user(l->sasl), pt_sasl_password(l->sasl));
		return;
	case PT_SASL_CANCELLED:
		lsend(l, "%s BAD Authentication aborted by client.", l->tag);
		break;
	case PT_SASL_MALFORMED:
		lsend(l, "%s BAD Invalid base64 data in continued response", l->tag);
		break;
	case PT_SASL_FAILED:
		/* Same delay and throttle as a wrong password. */
		verify(l, "", "");
		return;
	}
	pt_sasl_free(l->sasl);
	l->sasl = NULL;
	free(l->tag);
	l->tag = NULL;
}

static void
cmd_login(struct imap_login *l, const char *tag, const struct imap_arg *a, size_t n)
{
	if (n != 2 || !imap_arg_is_string(&a[0]) || !imap_arg_is_string(&a[1])) {
		bad_command(l, tag, "Error in IMAP command %s: %s", "LOGIN", "Missing arguments.");
		return;
	}
	if (!plaintext_ok(l)) {
		lsend(l, "%s NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) "
		      "connections.", tag);
		return;
	}
	if (a[0].len > PT_SASL_USER_MAX || a[1].len > PT_SASL_PASS_MAX || memchr(a[0].s, 0, a[0].len) ||
	    memchr(a[1].s, 0, a[1].len)) {
		lsend(l, "%s NO [AUTHENTICATIONFAILED] Authentication failed.", tag);
		return;
	}
	/* LOGIN is PLAIN without the encoding: reuse the exchange so the
	 * user name comes from one place. */
	size_t ul = a[0].len, pl = a[1].len;
	unsigned char *raw = malloc(ul + pl + 2);
	char *b64 = malloc(((ul + pl + 2) / 3 + 1) * 4 + 1);
	l->tag = strdup(tag);
	l->sasl = pt_sasl_new(PT_SASL_PLAIN);
	l->mech = PT_SASL_PLAIN;
	if (raw == NULL || b64 == NULL || l->tag == NULL || l->sasl == NULL) {
		free(raw);
		free(b64);
		lsend(l, "%s NO [UNAVAILABLE] Temporary authentication failure.", tag);
		pt_sasl_free(l->sasl);
		l->sasl = NULL;
		free(l->tag);
		l->tag = NULL;
		return;
	}
	raw[0] = 0;
	memcpy(raw + 1, a[0].s, ul);
	raw[1 + ul] = 0;
	memcpy(raw + 2 + ul, a[1].s, pl);
	pt_base64_encode(raw, ul + pl + 2, b64, ((ul + pl + 2) / 3 + 1) * 4 + 1);
	explicit_bzero(raw, ul + pl + 2);
	free(raw);
	enum pt_sasl_status st = pt_sasl_start(l->sasl, b64, strlen(b64));
	explicit_bzero(b64, strlen(b64));
	free(b64);
	sasl_result(l, st);
}

static void
cmd_authenticate(struct imap_login *l, const char *tag, const struct imap_arg *a, size_t n)
{
	if (n < 1 || n > 2 || a[0].type != IMAP_ARG_ATOM || (n == 2 && !imap_arg_is_string(&a[1]))) {
		bad_command(l, tag, "Error in IMAP command %s: %s", "AUTHENTICATE", "Missing arguments.");
		return;
	}
	enum pt_sasl_mech m = pt_sasl_mech_parse(a[0].s);
	if (m == PT_SASL_NONE || !mech_on(m)) {
		lsend(l, "%s NO Unsupported authentication mechanism.", tag);
		return;
	}
	if (!plaintext_ok(l)) {
		lsend(l, "%s NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) "
		      "connections.", tag);
		return;
	}
	if (n == 2 && a[1].len > PT_SASL_RESPONSE_MAX) {
		lsend(l, "%s BAD Invalid base64 data in initial response", tag);
		return;
	}
	l->tag = strdup(tag);
	l->sasl = pt_sasl_new(m);
	l->mech = m;
	if (l->tag == NULL || l->sasl == NULL) {
		lsend(l, "%s NO [UNAVAILABLE] Temporary authentication failure.", tag);
		pt_sasl_free(l->sasl);
		l->sasl = NULL;
		free(l->tag);
		l->tag = NULL;
		return;
	}
	sasl_result(l, pt_sasl_start(l->sasl, n == 2 ? a[1].s : NULL, n == 2 ? a[1].len : 0));
}

static void
dispatch(struct imap_login *l, struct imap_command *cmd)
{
	const char *tag = cmd->tag, *name = cmd->name;
	char caps[256];

	if (strcasecmp(name, "CAPABILITY") == 0) {
		capabilities(l, caps, sizeof(caps));
		l->saw_capability = 1;
		lsend(l, "* CAPABILITY %s", caps);
		lsend(l, "%s OK Pre-login capabilities listed, post-login capabilities have more.", tag);
	} else if (strcasecmp(name, "NOOP") == 0) {
		lsend(l, "%s OK NOOP completed.", tag);
	} else if (strcasecmp(name, "LOGOUT") == 0) {
		lsend(l, "* BYE Logging out");
		lsend(l, "%s OK Logout completed.", tag);
		close_after(l);
	} else if (strcasecmp(name, "ID") == 0) {
		if (cmd->nargs != 1 || (cmd->args[0].type != IMAP_ARG_NIL && cmd->args[0].type != IMAP_ARG_LIST)) {
			bad_command(l, tag, "Error in IMAP command %s: %s", "ID", "Invalid parameters.");
			return;
		}
		imap_id_forwarded(l->conn, &cmd->args[0], l->service, l->session_id);
		lsend(l, "* ID (\"name\" \"Postern\")");
		lsend(l, "%s OK ID completed.", tag);
	} else if (strcasecmp(name, "STARTTLS") == 0) {
		if (pt_conn_is_tls(l->conn)) {
			bad_command(l, tag, "%s%s", "TLS is already active.", "");
			return;
		}
		if (!pt_conn_tls_available(l->conn)) {
			bad_command(l, tag, "%s%s", "TLS support isn't enabled.", "");
			return;
		}
		lsend(l, "%s OK Begin TLS negotiation now.", tag);
		if (l->gone)
			return;
		imap_reader_reset(&l->rd);
		l->saw_capability = 0;
		if (pt_conn_starttls(l->conn) != 0) {
			l->closing = 1;
			pt_conn_close(l->conn, "STARTTLS failed");
		}
	} else if (strcasecmp(name, "LOGIN") == 0) {
		cmd_login(l, tag, cmd->args, cmd->nargs);
	} else if (strcasecmp(name, "AUTHENTICATE") == 0) {
		cmd_authenticate(l, tag, cmd->args, cmd->nargs);
	} else {
		bad_command(l, tag, "Error in IMAP command %s: %s", name, "Unknown command.");
	}
}

static void
sasl_response(struct imap_login *l)
{
	const char *line;
	size_t len;
	int eol;
	int r = pt_conn_getline(l->conn, PT_SASL_RESPONSE_MAX + 2, &line, &len, &eol);

	if (r == 0)
		return;
	l->sasl_wait = 0;
	if (r < 0) {
		lsend(l, "%s BAD Authentication failed: response too long", l->tag);
		pt_sasl_free(l->sasl);
		l->sasl = NULL;
		free(l->tag);
		l->tag = NULL;
		return;
	}
	sasl_result(l, pt_sasl_step(l->sasl, line, len));
}

static void
login_read(struct pt_conn *c)
{
	struct imap_login *l = pt_conn_proto(c);

	/* A reply may close the conn under us (its output limit): gone. */
	while (!l->gone && !l->waiting && !l->closing) {
		if (l->sasl_wait) {
			sasl_response(l);
			if (l->sasl_wait)
				return; /* no complete line yet */
			continue;
		}
		size_t len, used = 0;
		const char *data = pt_conn_rbuf(c, &len);
		if (len == 0)
			return;
		enum imap_read ev = imap_reader_feed(&l->rd, data, len, &used);
		pt_conn_consume(c, used);
		char tag[64];
		switch (ev) {
		case IMAP_READ_MORE:
			return;
		case IMAP_READ_CONTINUE:
			lsend(l, "+ OK");
			break;
		case IMAP_READ_TOO_LONG:
			lsend(l, "* BAD Error in IMAP command received by server: Too long argument.");
			lsend(l, "* BYE Too long argument.");
			close_after(l);
			return;
		case IMAP_READ_LITERAL_TOO_BIG:
			imap_reader_tag(&l->rd, tag, sizeof(tag));
			imap_reader_reset(&l->rd);
			lsend(l, "%s NO [TOOBIG] Literal too large.", tag);
			break;
		case IMAP_READ_LITERAL_PLUS_TOO_BIG:
			imap_reader_tag(&l->rd, tag, sizeof(tag));
			lsend(l, "%s BAD [TOOBIG] Literal too large.", tag);
			lsend(l, "* BYE Too long argument.");
			close_after(l);
			return;
		case IMAP_READ_COMMAND: {
			struct imap_command cmd;
			if (l->rd.buf.len == 0) {
				imap_reader_reset(&l->rd); /* empty line: ignored, as Dovecot */
				break;
			}
			if (imap_command_parse(&l->rd, &cmd) != 0) {
				if (cmd.tag && cmd.name)
					bad_command(l, cmd.tag, "Error in IMAP command %s: %s", cmd.name, cmd.error);
				else
					bad_command(l, cmd.tag, "%s%s", "Error in IMAP command received by server.", "");
			} else {
				dispatch(l, &cmd);
			}
			imap_command_free(&cmd);
			break;
		}
		}
	}
}

static void
login_close(struct pt_conn *c, const char *reason)
{
	struct imap_login *l = pt_conn_proto(c);

	(void)reason;
	if (l == NULL)
		return;
	handed_unlink(l);
	l->gone = 1;
	l->conn = NULL;
	/* Our own code may be running below (a reply that hit the output
	 * limit closes the conn inside it): the free waits for the loop, or
	 * for the auth check's answer when one is owed. */
	if (!l->waiting)
		pt_defer(l->loop, &l->reap, reap, l);
}

void
imap_login_accept(struct pt_conn *c, const struct pt_listener *lst)
{
	struct imap_login *l = calloc(1, sizeof(*l));
	char caps[256];

	handed_sweep();
	if (l == NULL) {
		pt_conn_close(c, "out of memory");
		return;
	}
	l->conn = c;
	l->loop = pt_conn_loop(c);
	l->service = lst && lst->service ? lst->service : "imap-login";
	imap_reader_init(&l->rd, imap_set.max_line, LOGIN_LITERAL_MAX);
	new_session_id(l->session_id, sizeof(l->session_id));
	pt_conn_set_handlers(c, &login_handlers, l);
	pt_conn_set_timeout(c, imap_set.login_timeout_ms);
	/* A total deadline too: trickled input must not keep a pre-login
	 * session (and its slot) alive; the handoff clears it. */
	pt_conn_set_deadline(c, imap_set.login_timeout_ms);
	capabilities(l, caps, sizeof(caps));
	lsend(l, "* OK [CAPABILITY %s] Postern ready.", caps);
}
