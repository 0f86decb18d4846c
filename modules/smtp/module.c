/* The smtp module's descriptor: its parameters (Postfix names and
 * defaults), the three listeners (smtpd, submission, implicit-TLS smtps)
 * and the settings snapshot sessions read. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "postern/config.h"
#include "postern/log.h"
#include "postern/module.h"
#include "postern/submit.h"
#include "smtp.h"

static const struct pt_listener_decl smtp_listeners[] = {
	{ "smtpd_listen", "smtpd", 0, smtp_session_accept },
	{ "submission_listen", "submission", 0, smtp_session_accept },
	{ "smtps_listen", "smtps", 1, smtp_session_accept },
	{ 0 },
};

/* `sendmail -bs` runs this module's sessions in the CLI. */
static const struct pt_local_smtp_ops local_smtp = { smtp_session_local };

/* encrypt without a certificate: nobody can send on that listener. Said
 * once per start or reload, by the worker. */
static void
warn_no_tls(const struct pt_config *c)
{
	if (*pt_conf_str(c, "ssl_cert") != '\0')
		return;
	for (const struct pt_listener_decl *d = smtp_listeners; d->param; d++) {
		char name[32];
		size_t n = strlen(d->param) - strlen("_listen");

		snprintf(name, sizeof name, "%.*s", (int)n, d->param);
		if (pt_conf_hostports(c, d->param)->n > 0 &&
		    strcasecmp(pt_conf_str(pt_conf_listener(c, name), "smtpd_tls_security_level"), "encrypt") == 0)
			pt_warn("%s: smtpd_tls_security_level = encrypt, but ssl_cert is empty: its clients cannot "
			        "send mail (set ssl_cert and ssl_key, or %s.smtpd_tls_security_level = may)", name, name);
	}
}

static int
smtp_configure(struct pt_ctx *ctx)
{
	if (smtp_settings_install_conf(ctx->conf) != 0) {
		pt_error("smtp: out of memory");
		return -1;
	}
	if (ctx->role == PT_ROLE_WORKER)
		warn_no_tls(ctx->conf);
	pt_service_register(PT_SVC_LOCAL_SMTP, &local_smtp);
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
	/* Sessions in the worker and in sendmail -bs; AUTH needs the auth
	 * agent. */
	.roles = PT_ROLE_WORKER | PT_ROLE_SENDMAIL | PT_ROLE_AUTH,
	.init = smtp_configure,
	.stop = smtp_stop,
	.check = NULL,
	.listener_params = smtp_listener_params,
	.listener_defaults = smtp_listener_defaults,
};
