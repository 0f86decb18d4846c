/* The smtp module's settings snapshot: built from a validated config,
 * shared by reference count so that a reload never pulls strings from
 * under a session that is still running on the old values. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/config.h"
#include "smtp.h"

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
	if (!s->hostname || !s->banner || !s->recipient_delimiter) {
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
	s->header_limit = (size_t)pt_conf_int(c, "header_size_limit");
	s->size_limit = (size_t)pt_conf_int(c, "message_size_limit");
	bare = pt_conf_str(c, "smtpd_forbid_bare_newline");
	s->bare_reject = strcasecmp(bare, "yes") == 0;
	lvl = pt_conf_str(c, "smtpd_tls_security_level");
	s->tls_level = strcasecmp(lvl, "none") == 0 || *lvl == '\0' ? SMTP_TLS_NONE :
	               strcasecmp(lvl, "encrypt") == 0 ? SMTP_TLS_ENCRYPT : SMTP_TLS_MAY;
	s->tls_auth_only = pt_conf_bool(c, "smtpd_tls_auth_only");
	s->vrfy_disabled = pt_conf_bool(c, "disable_vrfy_command");
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
	free(s->recipient_delimiter);
	free(s);
}

void
smtp_settings_install(struct smtp_settings *s)
{
	smtp_settings_put(live);
	live = s;
}
