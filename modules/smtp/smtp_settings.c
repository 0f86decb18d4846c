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
	{ "smtpd_sasl_auth_required", PT_BOOL, "no", NULL,
	  "MAIL FROM only after AUTH (530 5.7.0 Authentication required, RFC 4954 section 6): what the "
	  "submission and smtps listeners use (RFC 6409)", 0, 0 },
	{ "smtpd_sasl_authenticated_header", PT_BOOL, "no", NULL,
	  "name the authenticated user in the Received header (Authenticated sender: USER)", 0, 0 },
	{ "smtpd_authorized_xclient_hosts", PT_CIDR_LIST, "", NULL,
	  "fronts allowed XCLIENT (Postfix's: ADDR, PORT, NAME, HELO, LOGIN of the client they relay)", 0, 0 },
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
	{ "relay_recipient_maps", PT_LIST, "", NULL,
	  "tables of the valid addresses in relay_domains (user@domain, or @domain for all of one domain); "
	  "others get 550 5.1.1 at RCPT (User unknown in relay recipient table); empty = accept all", 0, 0 },
	{ 0 },
};

/* What one listener may override (`submission.smtpd_... = ...`): every
 * parameter a session reads through its settings, but the listen
 * addresses and the buffer budget that all sessions share. */
const char *const smtp_listener_params[] = {
	"smtpd_banner", "smtpd_helo_required", "smtpd_recipient_limit", "smtpd_line_length_limit",
	"smtpd_hard_error_limit", "smtpd_soft_error_limit", "smtpd_error_sleep_time", "smtpd_timeout",
	"smtpd_per_request_deadline", "smtpd_min_data_rate", "smtpd_starttls_timeout",
	"smtpd_envelope_deadline", "header_size_limit", "smtpd_forbid_bare_newline",
	"smtpd_tls_security_level", "smtpd_tls_auth_only", "smtpd_sasl_auth_enable",
	"smtpd_sasl_auth_required", "smtpd_sasl_authenticated_header", "smtpd_client_name_timeout",
	"smtpd_hosts_file", "local_header_rewrite_clients", "always_add_missing_headers",
	"disable_vrfy_command", NULL,
};

/* Debian's master.cf submission and smtps entries as built-in values
 * (conf/postern.conf spells them out): TLS, then AUTH, then anything;
 * nothing else for a client that has not logged in. The restriction
 * lists are the restrict module's, applied when it is loaded. */
#define USER_LISTENER(l) \
	{ l, "syslog_name", "postern/" l }, \
	{ l, "smtpd_tls_security_level", "encrypt" }, \
	{ l, "smtpd_sasl_auth_enable", "yes" }, \
	{ l, "smtpd_sasl_auth_required", "yes" }, \
	{ l, "smtpd_client_restrictions", "" }, \
	{ l, "smtpd_helo_restrictions", "" }, \
	{ l, "smtpd_sender_restrictions", "" }, \
	{ l, "smtpd_relay_restrictions", "permit_sasl_authenticated, reject" }, \
	{ l, "smtpd_recipient_restrictions", "" }
const struct pt_listener_setting smtp_listener_defaults[] = {
	USER_LISTENER("submission"),
	USER_LISTENER("smtps"),
	{ 0 },
};

static struct smtp_settings *live;
/* Listeners with values of their own (pt_conf_listener). */
#define SMTP_MAX_LISTENERS 8
static struct {
	char name[32];
	struct smtp_settings *set;
} live_listener[SMTP_MAX_LISTENERS];

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
	/* Postfix's tag: syslog_name/smtpd, postern/submission/smtpd. */
	if (asprintf(&s->log_tag, "%s/smtpd", pt_conf_str(c, "syslog_name")) < 0)
		s->log_tag = NULL;
	if (!s->hostname || !s->banner || !s->recipient_delimiter || !s->rewrite_clients || !s->hosts_file ||
	    !s->log_tag) {
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
	s->auth_required = pt_conf_bool(c, "smtpd_sasl_auth_required");
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

struct smtp_settings *
smtp_settings_for(const char *listener)
{
	for (size_t i = 0; listener != NULL && i < SMTP_MAX_LISTENERS; i++)
		if (live_listener[i].set != NULL && strcmp(live_listener[i].name, listener) == 0) {
			live_listener[i].set->refs++;
			return live_listener[i].set;
		}
	return smtp_settings_get();
}

int
smtp_settings_install_conf(const struct pt_config *c)
{
	struct smtp_settings *g = smtp_settings_new(c), *per[SMTP_MAX_LISTENERS] = { NULL };
	const char *name;
	size_t n = 0;

	if (g == NULL)
		return -1;
	for (size_t i = 0; (name = pt_conf_listener_name(c, i)) != NULL && n < SMTP_MAX_LISTENERS; i++) {
		per[n] = smtp_settings_new(pt_conf_listener(c, name));
		if (per[n] == NULL || strlen(name) >= sizeof live_listener[0].name) {
			smtp_settings_put(per[n]);
			while (n > 0)
				smtp_settings_put(per[--n]);
			smtp_settings_put(g);
			return -1;
		}
		n++;
	}
	smtp_settings_install(g);
	for (size_t i = 0; i < SMTP_MAX_LISTENERS; i++) {
		smtp_settings_put(live_listener[i].set);
		live_listener[i].set = NULL;
		live_listener[i].name[0] = '\0';
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(live_listener[i].name, sizeof live_listener[i].name, "%s", pt_conf_listener_name(c, i));
		live_listener[i].set = per[i];
	}
	return 0;
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
	free(s->log_tag);
	free(s);
}

void
smtp_settings_install(struct smtp_settings *s)
{
	smtp_settings_put(live);
	live = s;
	if (s == NULL)
		for (size_t i = 0; i < SMTP_MAX_LISTENERS; i++) {
			smtp_settings_put(live_listener[i].set);
			live_listener[i].set = NULL;
		}
	smtp_msgbuf_set_budget(s ? s->buffer_limit : 0);
}
