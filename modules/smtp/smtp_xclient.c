/* Fronts and mailbox hosts (README "Scaling out").
 *
 * Host side: Postfix's XCLIENT, only from smtpd_authorized_xclient_hosts.
 * "XCLIENT ADDR=1.2.3.4 PORT=n NAME=x HELO=y LOGIN=user" (values xtext,
 * [UNAVAILABLE] for unknown) replaces what this session knows of its
 * client: the address and name in logs, Received and policies, and the
 * SASL login that permit_sasl_authenticated trusts. The session starts
 * over with a new 220 greeting, as Postfix's does.
 *
 * Front side: after AUTH succeeded for a user whose passdb entry sends
 * them elsewhere, the core relays the session to that host's submission
 * port (pt_session_proxy_smtp, which speaks the XCLIENT above). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/conn.h"
#include "postern/log.h"
#include "postern/session.h"
#include "smtp_session.h"

#define XCLIENT_PARAM "smtpd_authorized_xclient_hosts"

static int
authorized(const struct smtp_session *s)
{
	return !s->local && s->conn && pt_conn_peer_in(s->conn, XCLIENT_PARAM);
}

const char *
smtp_xclient_ehlo_line(const struct smtp_session *s)
{
	return authorized(s) ? "250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN\r\n" : "";
}

/* xtext (RFC 3461 section 4) decoded in place; -1 when malformed or
 * when it decodes to a control character. */
static int
xtext_decode(char *v)
{
	char *o = v;
	for (char *p = v; *p; p++) {
		unsigned ch = (unsigned char)*p;
		if (ch == '+') {
			unsigned hi, lo;
			char h[3] = { p[1], p[1] ? p[2] : 0, 0 };
			if (!h[0] || !h[1] || sscanf(h, "%1x%1x", &hi, &lo) != 2)
				return -1;
			ch = hi * 16 + lo;
			p += 2;
		}
		if (ch < 0x20 || ch == 0x7f)
			return -1;
		*o++ = (char)ch;
	}
	*o = '\0';
	return 0;
}

static int
unavailable(const char *v)
{
	return strcasecmp(v, "[UNAVAILABLE]") == 0 || strcasecmp(v, "[TEMPUNAVAIL]") == 0;
}

void
smtp_xclient_command(struct smtp_session *s, const struct smtp_cmd *c)
{
	char buf[1024], front[64];
	char *addr = NULL, *port = NULL, *name = NULL, *helo = NULL, *login = NULL;
	int have_login = 0;

	if (!authorized(s)) {
		smtp_reply(s, "550 5.7.0 Error: insufficient authorization");
		return;
	}
	if (s->txn) {
		smtp_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if (c->arglen == 0 || c->arglen >= sizeof buf) {
		smtp_reply(s, "501 5.5.4 Syntax: XCLIENT attribute=value...");
		return;
	}
	memcpy(buf, c->arg, c->arglen);
	buf[c->arglen] = '\0';
	for (char *save = NULL, *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(w, '=');
		if (eq == NULL) {
			smtp_reply(s, "501 5.5.4 Bad XCLIENT attribute syntax: %.64s", w);
			return;
		}
		*eq++ = '\0';
		if (xtext_decode(eq) != 0) {
			smtp_reply(s, "501 5.5.4 Bad %.16s syntax in XCLIENT command", w);
			return;
		}
		if (strcasecmp(w, "ADDR") == 0)
			addr = eq;
		else if (strcasecmp(w, "PORT") == 0)
			port = eq;
		else if (strcasecmp(w, "NAME") == 0)
			name = eq;
		else if (strcasecmp(w, "HELO") == 0)
			helo = eq;
		else if (strcasecmp(w, "LOGIN") == 0) {
			login = eq;
			have_login = 1;
		} else if (strcasecmp(w, "PROTO") != 0 && strcasecmp(w, "DESTADDR") != 0 &&
		           strcasecmp(w, "DESTPORT") != 0) {
			smtp_reply(s, "501 5.5.4 Bad XCLIENT attribute name: %.32s", w);
			return;
		}
	}
	snprintf(front, sizeof front, "%s", pt_conn_peer_addr(s->conn));
	if (addr && !unavailable(addr)) {
		if (strncasecmp(addr, "IPV6:", 5) == 0)
			addr += 5;
		unsigned long pn = port && !unavailable(port) ? strtoul(port, NULL, 10) : 0;
		if (!pt_conn_forwarded_client(s->conn, XCLIENT_PARAM, addr, pn > 65535 ? 0 : (unsigned)pn)) {
			smtp_reply(s, "501 5.5.4 Bad ADDR syntax in XCLIENT command");
			return;
		}
	}
	(void)helo;  /* the client says EHLO again: that name is the one used */
	s->ok[SMTP_VERB_XCLIENT]++;
	smtp_session_restart(s, name && !unavailable(name) ? name : NULL);
	if (have_login) {
		free(s->sasl_username);
		s->sasl_username = NULL;
		if (login && *login && !unavailable(login)) {
			s->sasl_username = strdup(login);
			if (s->sasl_username)
				smtp_printable(s->sasl_username);
			s->sasl_method = "XCLIENT";
		}
	}
	pt_log_as(s->service, PT_LOG_INFO, "xclient from %s: client=%s[%s]%s%s", front, s->client_name,
	          s->client_addr, s->sasl_username ? ", sasl_username=" : "",
	          s->sasl_username ? s->sasl_username : "");
	smtp_reply(s, "220 %s", s->set->banner);
}

/* ---- front side ---- */

static void
proxied(struct pt_conn *c, void *arg, const char *code, const char *why)
{
	struct smtp_session *s = arg;

	(void)c;
	if (strcmp(code, "OK") == 0) {
		/* The host answered 235 through us; the session is its now. */
		s->ok[SMTP_VERB_AUTH]++;
		smtp_session_release(s);
		return;
	}
	if (strcmp(code, "CLOSED") == 0) {
		smtp_session_release(s);
		return;
	}
	if (!smtp_session_answered(s))
		return;
	pt_log_as(s->service, PT_LOG_WARNING, "%s[%s]: submission proxy: %s", s->client_name, s->client_addr, why);
	smtp_reply(s, "454 4.7.0 Temporary authentication failure: mailbox host unavailable");
	smtp_session_continue(s);
}

int
smtp_proxy_login(struct smtp_session *s, const char *user, const char *dest)
{
	struct pt_smtp_proxy_info info = {
		.user = user,
		.dest = dest,
		.helo = s->helo,
		.client_name = s->client_name,
		.myhostname = s->set->hostname,
		.service = s->service,
	};
	if (s->local || s->gone || pt_session_proxy_smtp(s->conn, &info, proxied, s) != 0)
		return 0;
	s->async = 1;
	return 1;
}
