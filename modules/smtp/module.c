/* The smtp module's descriptor: its parameters (Postfix names and
 * defaults), the three listeners (smtpd, submission, implicit-TLS smtps)
 * and the settings snapshot sessions read. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "postern/config.h"
#include "postern/log.h"
#include "postern/map.h"
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
	if (ctx->role == PT_ROLE_WORKER) {
		const struct pt_list *l = pt_conf_list(ctx->conf, "relay_recipient_maps");
		char err[400];

		warn_no_tls(ctx->conf);
		/* Only the worker's sessions check recipients of relay_domains
		 * (sendmail -bs is a local user, who may send anywhere). */
		if (l->n > 0) {
			smtp_relay_recipient_maps = pt_map_list_open(l, PT_MAP_KEY_VALUE, "relay_recipient_maps",
			                                             err, sizeof err);
			if (smtp_relay_recipient_maps == NULL) {
				pt_error("%s", err);
				return -1;
			}
		}
	}
	pt_service_register(PT_SVC_LOCAL_SMTP, &local_smtp);
	return 0;
}

static void
smtp_stop(struct pt_ctx *ctx)
{
	(void)ctx;
	/* Sessions still open keep their own reference. */
	smtp_settings_install(NULL);
	pt_map_list_close(smtp_relay_recipient_maps);
	smtp_relay_recipient_maps = NULL;
}

static void
smtp_check_report(void *arg, int is_error, const char *msg)
{
	if (is_error)
		pt_conf_error(arg, "relay_recipient_maps", "%s", msg);
	else
		pt_warn("%s", msg);
}

/* `postern check`, start and reload: every relay_recipient_maps table
 * must exist and parse (a module's type: its config file, checked by the
 * module). A missing file would answer 451 for every recipient of
 * relay_domains, so it is refused here as transport_maps does. */
static int
smtp_check(const struct pt_config *conf)
{
	const struct pt_list *l = pt_conf_list(conf, "relay_recipient_maps");
	int bad = 0;

	for (size_t i = 0; i < l->n; i++) {
		char path[4096], err[300];

		if (pt_map_spec_path(l->v[i], path, sizeof path, err, sizeof err) < 0) {
			pt_conf_error(conf, "relay_recipient_maps", "relay_recipient_maps: %s", err);
			bad = 1;
			continue;
		}
		if (access(path, F_OK) < 0) {
			pt_conf_error(conf, "relay_recipient_maps", "relay_recipient_maps: %s does not exist: every "
			              "recipient in relay_domains would get 451 until it does", path);
			bad = 1;
			continue;
		}
		if (pt_map_check(l->v[i], PT_MAP_KEY_VALUE, smtp_check_report, (void *)conf, NULL) != 0)
			bad = 1;
	}
	if (l->n > 0 && pt_conf_list(conf, "relay_domains")->n == 0)
		pt_warn("relay_recipient_maps is set but relay_domains is empty: the maps are never consulted");
	return bad ? -1 : 0;
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
	.check = smtp_check,
	.listener_params = smtp_listener_params,
	.listener_defaults = smtp_listener_defaults,
};
