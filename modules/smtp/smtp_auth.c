/* SMTP AUTH (RFC 4954) with PLAIN and LOGIN: when it is offered, the
 * checks before an exchange, the 334 challenges, and the password check
 * through the auth service (off the loop; failures wait
 * auth_failure_delay and the per-address throttle). Replies and warnings
 * are Postfix's with Dovecot SASL; a password never reaches a log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/conn.h"
#include "postern/log.h"
#include "postern/sasl.h"
#include "postern/services.h"
#include "smtp_client_name.h"
#include "smtp_session.h"

#define AUTH_SERVICE_NAME "smtp"

static const struct pt_auth_ops *
auth_ops(void)
{
	const struct pt_auth_ops *ops = pt_service_get(PT_SVC_AUTH);

	return ops && ops->verify ? ops : NULL;
}

/* AUTH exists on this server at all (Postfix: smtpd_sasl_auth_enable). */
static int
auth_enabled(const struct smtp_session *s)
{
	return s->set->sasl_enable && !s->local && (s->set->mech_plain || s->set->mech_login) && auth_ops() != NULL;
}

/* Dovecot's disable_plaintext_auth: PLAIN and LOGIN only over TLS or
 * when the client is this host talking to itself. */
static int
plaintext_allowed(const struct smtp_session *s)
{
	return pt_conn_is_tls(s->conn) || !s->set->plaintext_disabled ||
	       smtp_addr_equal(s->client_addr, pt_conn_local_addr(s->conn));
}

static int
mech_enabled(const struct smtp_session *s, enum pt_sasl_mech m)
{
	return (m == PT_SASL_PLAIN && s->set->mech_plain) || (m == PT_SASL_LOGIN && s->set->mech_login);
}

const char *
smtp_auth_ehlo_line(const struct smtp_session *s, char *buf, size_t len)
{
	if (!auth_enabled(s) || (s->set->tls_auth_only && !pt_conn_is_tls(s->conn)) ||
	    !plaintext_allowed(s))
		return "";
	snprintf(buf, len, "250-AUTH%s%s\r\n", s->set->mech_plain ? " PLAIN" : "",
	         s->set->mech_login ? " LOGIN" : "");
	return buf;
}

size_t
smtp_auth_line_limit(const struct smtp_session *s)
{
	size_t sasl = PT_SASL_RESPONSE_MAX + 2;

	return s->set->line_limit > sasl ? s->set->line_limit : sasl;
}

void
smtp_auth_abort(struct smtp_session *s)
{
	pt_sasl_free(s->sasl);
	s->sasl = NULL;
	if (s->state == SS_AUTH)
		s->state = SS_CMD;
}

static const char *
method_name(const struct smtp_session *s)
{
	return pt_sasl_mech_name((enum pt_sasl_mech)s->auth_state);
}

/* Postfix: "warning: NAME[IP]: SASL PLAIN authentication failed: WHY, sasl_username=U" */
static void
log_failure(struct smtp_session *s, const char *method, const char *why)
{
	char user[PT_SASL_USER_MAX + 1] = "";

	if (s->sasl)
		snprintf(user, sizeof(user), "%s", pt_sasl_user(s->sasl));
	smtp_printable(user);
	pt_log_as(s->service, PT_LOG_WARNING, "%s[%s]: SASL %s authentication failed: %s, sasl_username=%s",
	          s->client_name, s->client_addr, method, why, user[0] ? user : "(unavailable)");
}

static void
auth_fail(struct smtp_session *s, const char *why)
{
	log_failure(s, method_name(s), why);
	smtp_auth_abort(s);
	smtp_reply(s, "535 5.7.8 Error: authentication failed: %s", why);
}

/* The check is over: 1 good, 0 bad, -1 temporary failure. */
static void
auth_result(struct smtp_session *s, int result)
{
	if (result == 1) {
		char *user = strdup(pt_sasl_user(s->sasl));
		if (user == NULL) {
			smtp_auth_abort(s);
			smtp_reply(s, "454 4.7.0 Temporary authentication failure: out of memory");
			return;
		}
		smtp_printable(user);
		/* A front: this user's mail host takes the session (XCLIENT). */
		const char *dest = pt_auth_proxy_dest();
		if (dest) {
			smtp_auth_abort(s);
			int started = smtp_proxy_login(s, user, dest);
			free(user);
			if (!started)
				smtp_reply(s, "454 4.7.0 Temporary authentication failure: mailbox host unavailable");
			return;
		}
		free(s->sasl_username);
		s->sasl_username = user;
		s->sasl_method = method_name(s);
		s->ok[SMTP_VERB_AUTH]++;
		smtp_auth_abort(s);
		smtp_reply(s, "235 2.7.0 Authentication successful");
		return;
	}
	if (result < 0) {
		log_failure(s, method_name(s), "temporary failure");
		smtp_auth_abort(s);
		smtp_reply(s, "454 4.7.0 Temporary authentication failure: Internal error occurred. "
		           "Refer to server log for more information.");
		return;
	}
	/* A response that decoded but made no sense (no NUL, a foreign
	 * authzid) looks like a wrong password from outside; the log says. */
	const char *why = s->sasl ? pt_sasl_error(s->sasl) : "";
	log_failure(s, method_name(s), why && *why ? why : "authentication failure");
	smtp_auth_abort(s);
	smtp_reply(s, "535 5.7.8 Error: authentication failed: authentication failure");
}

static void
auth_verified(void *arg, int result)
{
	struct smtp_session *s = arg;

	if (!smtp_session_answered(s))
		return;
	auth_result(s, result);
	smtp_session_continue(s);
}

/* Hand the credentials to the auth service; reading pauses until the
 * answer (which comes after auth_failure_delay when it is a no). */
static void
auth_verify(struct smtp_session *s, const char *user, const char *password)
{
	const struct pt_auth_ops *ops = auth_ops();

	if (ops == NULL ||
	    ops->verify(s->loop, user, password, AUTH_SERVICE_NAME, s->client_addr, auth_verified, s) != 0) {
		auth_result(s, -1);
		return;
	}
	s->async = 1;
	pt_conn_pause(s->conn);
}

static void
auth_step_result(struct smtp_session *s, enum pt_sasl_status st, int initial)
{
	switch (st) {
	case PT_SASL_CHALLENGE:
		s->state = SS_AUTH;
		smtp_reply(s, "334 %s", pt_sasl_challenge(s->sasl));
		return;
	case PT_SASL_DONE:
		s->state = SS_CMD;
		auth_verify(s, pt_sasl_user(s->sasl), pt_sasl_password(s->sasl));
		return;
	case PT_SASL_CANCELLED:
		s->state = SS_CMD;
		pt_log_as(s->service, PT_LOG_WARNING, "%s[%s]: SASL %s authentication aborted",
		          s->client_name, s->client_addr, method_name(s));
		smtp_auth_abort(s);
		smtp_reply(s, "501 5.7.0 Authentication aborted");
		return;
	case PT_SASL_MALFORMED:
		s->state = SS_CMD;
		/* Dovecot names the initial response apart from later ones. */
		if (initial && strcmp(pt_sasl_error(s->sasl), "Invalid base64 data in continued response") == 0)
			auth_fail(s, "Invalid base64 data in initial response");
		else
			auth_fail(s, pt_sasl_error(s->sasl));
		return;
	case PT_SASL_FAILED:
		s->state = SS_CMD;
		/* Same waits and throttling as a wrong password: no user. */
		auth_verify(s, "", "");
		return;
	}
}

/* "AUTH mechanism [initial-response]" */
void
smtp_auth_command(struct smtp_session *s, const struct smtp_cmd *c)
{
	char mech[32], initial[PT_SASL_RESPONSE_MAX + 1];
	const char *p = c->arg, *end = c->arg + c->arglen;
	size_t ml, il = 0;
	int have_initial = 0;

	if (s->set->helo_required && s->helo == NULL) {
		smtp_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (!auth_enabled(s)) {
		smtp_reply(s, "503 5.5.1 Error: authentication not enabled");
		return;
	}
	if (s->txn) {
		smtp_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if (s->set->tls_auth_only && !pt_conn_is_tls(s->conn)) {
		/* Postfix's text with RFC 4954 section 4's meaning. */
		smtp_reply(s, "504 5.5.4 Encryption required for requested authentication mechanism");
		return;
	}
	if (s->sasl_username) {
		smtp_reply(s, "503 5.5.1 Error: already authenticated");
		return;
	}
	/* The argument is not NUL-terminated: walk it by its length. */
	const char *q = p;
	while (q < end && *q != ' ')
		q++;
	ml = (size_t)(q - p);
	while (q < end && *q == ' ')
		q++;
	if (q < end) {
		const char *r = q;
		while (r < end && *r != ' ')
			r++;
		il = (size_t)(r - q);
		have_initial = 1;
		while (r < end && *r == ' ')
			r++;
		if (r < end || il > PT_SASL_RESPONSE_MAX) {
			smtp_reply(s, "501 5.5.4 Syntax: AUTH mechanism");
			return;
		}
	}
	if (ml == 0) {
		smtp_reply(s, "501 5.5.4 Syntax: AUTH mechanism");
		return;
	}
	snprintf(mech, sizeof(mech), "%.*s", (int)(ml < sizeof(mech) - 1 ? ml : sizeof(mech) - 1), p);
	enum pt_sasl_mech m = pt_sasl_mech_parse(mech);
	if (m == PT_SASL_NONE || !mech_enabled(s, m)) {
		smtp_printable(mech);
		log_failure(s, mech, "Invalid authentication mechanism");
		smtp_reply(s, "535 5.7.8 Error: authentication failed: Invalid authentication mechanism");
		return;
	}
	if (!plaintext_allowed(s)) {
		smtp_reply(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		return;
	}
	s->sasl = pt_sasl_new(m);
	if (s->sasl == NULL) {
		smtp_reply(s, "451 4.3.0 Error: insufficient system resources");
		return;
	}
	s->auth_state = (unsigned char)m;
	if (have_initial) {
		memcpy(initial, q, il);
		initial[il] = 0;
	}
	auth_step_result(s, pt_sasl_start(s->sasl, have_initial ? initial : NULL, il), 1);
}

void
smtp_auth_response(struct smtp_session *s, const char *line, size_t len, int rc)
{
	s->state = SS_CMD;
	if (s->sasl == NULL)
		return;
	if (rc < 0) {
		auth_fail(s, "response too long");
		return;
	}
	auth_step_result(s, pt_sasl_step(s->sasl, line, len), 0);
}
