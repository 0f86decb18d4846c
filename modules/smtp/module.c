/* The smtp module's descriptor: its parameters (Postfix names and
 * defaults), the three listeners (smtpd, submission, implicit-TLS smtps)
 * and the settings snapshot sessions read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/config.h"
#include "postern/log.h"
#include "postern/module.h"
#include "smtp.h"

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

static const struct pt_param smtp_params[] = {
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
	  "idle time before 421 4.4.2 timeout exceeded", 1, 86400 },
	{ "header_size_limit", PT_SIZE, "102400", NULL,
	  "largest message header section; more is refused with 552 5.3.4 after DATA", 0, 0 },
	{ "smtpd_forbid_bare_newline", PT_STR, "normalize", validate_bare_newline,
	  "bare CR/LF in DATA: normalize (a line end, never the end of DATA), yes (521 and disconnect), no (= normalize)", 0, 0 },
	{ "smtpd_tls_security_level", PT_STR, "may", validate_tls_level,
	  "STARTTLS: none (not offered), may (offered), encrypt (required before MAIL)", 0, 0 },
	{ "smtpd_tls_auth_only", PT_BOOL, "yes", NULL,
	  "offer AUTH only over TLS", 0, 0 },
	{ "disable_vrfy_command", PT_BOOL, "no", NULL,
	  "VRFY gets 502 (yes) or a 252 that neither confirms nor denies (no)", 0, 0 },
	{ 0 },
};

static const struct pt_listener_decl smtp_listeners[] = {
	{ "smtpd_listen", "smtpd", 0, smtp_session_accept },
	{ "submission_listen", "submission", 0, smtp_session_accept },
	{ "smtps_listen", "smtps", 1, smtp_session_accept },
	{ 0 },
};

static int
smtp_configure(struct pt_ctx *ctx)
{
	struct smtp_settings *s = smtp_settings_new(ctx->conf);

	if (s == NULL) {
		pt_error("smtp: out of memory");
		return -1;
	}
	smtp_settings_install(s);
	return 0;
}

static void
smtp_stop(struct pt_ctx *ctx)
{
	(void)ctx;
	/* Sessions still open keep their own reference. */
	smtp_settings_install(NULL);
}

POSTERN_MODULE_EXPORT const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "smtp",
	.depends = NULL,
	.params = smtp_params,
	.listeners = smtp_listeners,
	.init = smtp_configure,
	.reload = smtp_configure,
	.stop = smtp_stop,
	.check = NULL,
};
