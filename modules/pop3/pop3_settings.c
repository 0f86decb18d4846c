/* The pop3 module's parameters (Dovecot's names where it has them) and the
 * settings snapshot sessions read, shared by reference count so a reload
 * never pulls a string from under a live session. */
#include <stdlib.h>
#include <string.h>

#include "postern/config.h"
#include "postern/sasl.h"
#include "pop3.h"

static int
validate_uidl_format(const char *v, char *err, size_t errlen)
{
	return pop3_uidl_format_check(v, err, errlen);
}

const struct pt_param pop3_params[] = {
	{ "pop3_listen", PT_HOSTPORT_LIST, "110", NULL,
	  "POP3 listener (STLS offered when a certificate is set): [ADDR:]PORT list, empty = off", 0, 0 },
	{ "pop3s_listen", PT_HOSTPORT_LIST, "995", NULL,
	  "POP3 over implicit TLS (RFC 8314): [ADDR:]PORT list, empty = off", 0, 0 },
	{ "pop3_uidl_format", PT_STR, "%08Xu%08Xv", validate_uidl_format,
	  "UIDL of a message, as Dovecot: %u UID, %v UIDVALIDITY, optional width and X (hex), e.g. %08Xu%08Xv", 0, 0 },
	{ "pop3_login_timeout", PT_TIME, "60s", NULL,
	  "total time allowed from connect to login (however the client trickles input); then the connection is closed", 1, 3600 },
	{ "pop3_autologout", PT_TIME, "10m", NULL,
	  "idle time after login before the session ends without deleting anything (RFC 1939: at least 10m)",
	  600, 86400 },
	{ "pop3_no_flag_updates", PT_BOOL, "no", NULL,
	  "yes: RETR does not mark messages \\Seen (Dovecot's pop3_no_flag_updates)", 0, 0 },
	{ 0 },
};

static struct pop3_settings *live;

struct pop3_settings *
pop3_settings_new(const struct pt_config *c)
{
	struct pop3_settings *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->refs = 1;
	s->uidl_format = strdup(pt_conf_str(c, "pop3_uidl_format"));
	if (s->uidl_format == NULL) {
		free(s);
		return NULL;
	}
	s->login_timeout_ms = (unsigned)pt_conf_int(c, "pop3_login_timeout") * 1000u;
	s->autologout_ms = (unsigned)pt_conf_int(c, "pop3_autologout") * 1000u;
	s->no_flag_updates = pt_conf_bool(c, "pop3_no_flag_updates");
	s->plaintext_disabled = pt_conf_bool(c, "disable_plaintext_auth");
	s->userip_max = pt_conf_int(c, "mail_max_userip_connections");
	s->mech_plain = pt_sasl_mech_enabled(c, PT_SASL_PLAIN);
	s->mech_login = pt_sasl_mech_enabled(c, PT_SASL_LOGIN);
	return s;
}

struct pop3_settings *
pop3_settings_get(void)
{
	if (live)
		live->refs++;
	return live;
}

void
pop3_settings_put(struct pop3_settings *s)
{
	if (s == NULL || --s->refs > 0)
		return;
	free(s->uidl_format);
	free(s);
}

void
pop3_settings_install(struct pop3_settings *s)
{
	pop3_settings_put(live);
	live = s;
}
