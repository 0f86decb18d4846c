/* The smtp module's parameters (Postfix names and defaults) and the
 * settings snapshot built from them: shared by reference count so that a
 * reload never pulls strings from under a session still running on the
 * old values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/config.h"
#include "postern/sasl.h"
#include "smtp_headers.h"
#include "smtp.h"
#include "smtp_data.h"

static int
validate_bare_newline(const char *v, char *err, size_t errlen)
{
	if (strcasecmp(v, "normalize") == 0 || strcasecmp(v, "yes") == 0 || strcasecmp(v, "no") == 0)
		return 0;
	snprintf(err, errlen, "must be normalize, yes or no");
	return -1;
}

static int
validate_tls_level(const char *v, char *err, size_t errlen)
{
	if (strcasecmp(v, "none") == 0 || strcasecmp(v, "may") == 0 || strcasecmp(v, "encrypt") == 0 ||
	    *v == '\0')
		return 0;
	snprintf(err, errlen, "must be none, may or encrypt");
	return -1;
}

static int
validate_rewrite_clients(const char *v, char *err, size_t errlen)
{
	return smtp_rewrite_clients_check(v, err, errlen);
}

const struct pt_param smtp_params[] = {
	{ "smtpd_listen", PT_HOSTPORT_LIST, "25", NULL,
	  "SMTP (MX) listener: [ADDR:]PORT list, empty = off", 0, 0 },
	{ "submission_listen", PT_HOSTPORT_LIST, "587", NULL,
	  "message submission listener (RFC 6409): [ADDR:]PORT list, empty = off", 0, 0 },
	{ "smtps_listen", PT_HOSTPORT_LIST, "465", NULL,
	  "submission over implicit TLS (RFC 8314): [ADDR:]PORT list, empty = off", 0, 0 },
	{ "smtpd_banner", PT_STR, "$myhostname ESMTP $mail_name", NULL,
	  "text after 220 in the greeting", 0, 0 },
	{ "smtpd_helo_required", PT_BOOL, "no", NULL,
	  "require HELO/EHLO before MAIL, RCPT, DATA, BDAT", 0, 0 },
	{ "smtpd_recipient_limit", PT_INT, "1000", NULL,
	  "most recipients accepted per message (452 4.5.3 beyond)", 1, 1000000 },
	{ "smtpd_line_length_limit", PT_INT, "2048", NULL,
	  "longest SMTP command line in bytes (RFC 5321 asks at least 512)", 512, 65536 },
	{ "smtpd_hard_error_limit", PT_INT, "20", NULL,
	  "errors without delivering mail before the server disconnects (421 4.7.0)", 1, 100000 },
	{ "smtpd_soft_error_limit", PT_INT, "10", NULL,
	  "errors after which each error reply is delayed by smtpd_error_sleep_time", 0, 100000 },
	{ "smtpd_error_sleep_time", PT_TIME, "1s", NULL,
	  "delay of error replies past smtpd_soft_error_limit (never blocks other clients)", 0, 600 },
	{ "smtpd_timeout", PT_TIME, "300s", NULL,
	  "time limit to receive a command line (with smtpd_per_request_deadline, the whole line; else "
	  "between reads) before 421 4.4.2 timeout exceeded", 1, 86400 },
	{ "smtpd_per_request_deadline", PT_BOOL, "yes", NULL,
	  "smtpd_timeout and smtpd_starttls_timeout limit a whole request (a command line, a TLS handshake), "
	  "not each read: a client trickling bytes cannot hold the session (Postfix 3.7; default yes here)", 0, 0 },
	{ "smtpd_min_data_rate", PT_INT, "500", NULL,
	  "with smtpd_per_request_deadline, each DATA/BDAT byte received extends the deadline by "
	  "1/smtpd_min_data_rate s, never beyond smtpd_timeout from now; 0 = no minimum (bytes/s)", 0, 1000000000 },
	{ "smtpd_starttls_timeout", PT_TIME, "300s", NULL,
	  "time limit for the TLS handshake after STARTTLS (the whole handshake)", 1, 86400 },
	{ "smtpd_envelope_deadline", PT_TIME, "300s", NULL,
	  "total time from the greeting, or from the end of the previous message, until DATA or BDAT starts; "
	  "then 421 4.4.2 timeout exceeded (0 = no limit)", 0, 86400 },
	{ "smtpd_message_buffer_limit", PT_SIZE, "1g", NULL,
	  "memory all sessions together may hold for messages being received; beyond it 451 4.3.0 (0 = no limit)", 0, 0 },
	{ "header_size_limit", PT_SIZE, "102400", NULL,
	  "largest message header section; more is refused with 552 5.3.4 after DATA", 0, 0 },
	{ "smtpd_forbid_bare_newline", PT_STR, "normalize", validate_bare_newline,
	  "bare CR/LF in DATA: normalize (a line end, never the end of DATA), yes (521 and disconnect), no (= normalize)", 0, 0 },
	{ "smtpd_tls_security_level", PT_STR, "may", validate_tls_level,
	  "STARTTLS: none (not offered), may (offered), encrypt (required before MAIL)", 0, 0 },
	{ "smtpd_tls_auth_only", PT_BOOL, "yes", NULL,
	  "offer AUTH only over TLS", 0, 0 },
	{ "smtpd_sasl_auth_enable", PT_BOOL, "yes", NULL,
	  "offer SMTP AUTH (RFC 4954) with the auth_mechanisms, checked against passdb", 0, 0 },
	{ "smtpd_sasl_authenticated_header", PT_BOOL, "no", NULL,
	  "name the authenticated user in the Received header (Authenticated sender: USER)", 0, 0 },
	{ "smtpd_client_name_timeout", PT_TIME, "3s", NULL,
	  "longest wait for the client's reverse DNS name before the banner; 0 = no lookup (unknown)", 0, 60 },
	{ "smtpd_hosts_file", PT_STR, "/etc/hosts", NULL,
	  "hosts(5) file asked for the client's name before DNS (the resolver's \"files dns\" order); "
	  "empty = DNS only", 0, 0 },
	{ "local_header_rewrite_clients", PT_STR, "permit_inet_interfaces", validate_rewrite_clients,
	  "clients whose mail gets missing Date:, Message-Id: and From: headers added and its header addresses "
	  "qualified (append_at_myorigin): permit_inet_interfaces (this host), permit_sasl_authenticated, "
	  "static:all; empty = none", 0, 0 },
	{ "always_add_missing_headers", PT_BOOL, "no", NULL,
	  "add missing Date:, Message-Id: and From: headers to mail from every client", 0, 0 },
	{ "disable_vrfy_command", PT_BOOL, "no", NULL,
	  "VRFY gets 502 (yes) or a 252 that neither confirms nor denies (no)", 0, 0 },
	{ 0 },
};

static struct smtp_settings *live;

struct smtp_settings *
smtp_settings_new(const struct pt_config *c)
{
	struct smtp_settings *s = calloc(1, sizeof(*s));
	const char *bare, *lvl;

	if (s == NULL)
		return NULL;
	s->refs = 1;
	s->hostname = strdup(pt_conf_str(c, "myhostname"));
	s->banner = strdup(pt_conf_str(c, "smtpd_banner"));
	s->recipient_delimiter = strdup(pt_conf_str(c, "recipient_delimiter"));
	s->rewrite_clients = strdup(pt_conf_str(c, "local_header_rewrite_clients"));
	s->hosts_file = strdup(pt_conf_str(c, "smtpd_hosts_file"));
	if (!s->hostname || !s->banner || !s->recipient_delimiter || !s->rewrite_clients || !s->hosts_file) {
		smtp_settings_put(s);
		return NULL;
	}
	s->helo_required = pt_conf_bool(c, "smtpd_helo_required");
	s->rcpt_limit = (unsigned)pt_conf_int(c, "smtpd_recipient_limit");
	s->line_limit = (size_t)pt_conf_int(c, "smtpd_line_length_limit");
	s->hard_errors = (unsigned)pt_conf_int(c, "smtpd_hard_error_limit");
	s->soft_errors = (unsigned)pt_conf_int(c, "smtpd_soft_error_limit");
	s->error_sleep_ms = (unsigned)pt_conf_int(c, "smtpd_error_sleep_time") * 1000u;
	s->timeout_ms = (unsigned)pt_conf_int(c, "smtpd_timeout") * 1000u;
	s->per_request_deadline = pt_conf_bool(c, "smtpd_per_request_deadline");
	s->min_data_rate = (unsigned)pt_conf_int(c, "smtpd_min_data_rate");
	s->starttls_timeout_ms = (unsigned)pt_conf_int(c, "smtpd_starttls_timeout") * 1000u;
	s->envelope_deadline_ms = (unsigned)pt_conf_int(c, "smtpd_envelope_deadline") * 1000u;
	s->header_limit = (size_t)pt_conf_int(c, "header_size_limit");
	s->size_limit = (size_t)pt_conf_int(c, "message_size_limit");
	s->buffer_limit = (size_t)pt_conf_int(c, "smtpd_message_buffer_limit");
	bare = pt_conf_str(c, "smtpd_forbid_bare_newline");
	s->bare_reject = strcasecmp(bare, "yes") == 0;
	lvl = pt_conf_str(c, "smtpd_tls_security_level");
	s->tls_level = strcasecmp(lvl, "none") == 0 || *lvl == '\0' ? SMTP_TLS_NONE :
	               strcasecmp(lvl, "encrypt") == 0 ? SMTP_TLS_ENCRYPT : SMTP_TLS_MAY;
	s->tls_auth_only = pt_conf_bool(c, "smtpd_tls_auth_only");
	s->sasl_enable = pt_conf_bool(c, "smtpd_sasl_auth_enable");
	s->mech_plain = pt_sasl_mech_enabled(c, PT_SASL_PLAIN);
	s->mech_login = pt_sasl_mech_enabled(c, PT_SASL_LOGIN);
	s->plaintext_disabled = pt_conf_bool(c, "disable_plaintext_auth");
	s->auth_header = pt_conf_bool(c, "smtpd_sasl_authenticated_header");
	s->name_timeout_ms = (unsigned)pt_conf_int(c, "smtpd_client_name_timeout") * 1000u;
	s->vrfy_disabled = pt_conf_bool(c, "disable_vrfy_command");
	s->always_add_headers = pt_conf_bool(c, "always_add_missing_headers");
	s->smtputf8 = pt_conf_bool(c, "smtputf8_enable");
	return s;
}

struct smtp_settings *
smtp_settings_get(void)
{
	live->refs++;
	return live;
}

void
smtp_settings_put(struct smtp_settings *s)
{
	if (s == NULL || --s->refs > 0)
		return;
	free(s->hostname);
	free(s->banner);
	free(s->hosts_file);
	free(s->recipient_delimiter);
	free(s->rewrite_clients);
	free(s);
}

void
smtp_settings_install(struct smtp_settings *s)
{
	smtp_settings_put(live);
	live = s;
	smtp_msgbuf_set_budget(s ? s->buffer_limit : 0);
}
