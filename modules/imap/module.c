/* The imap module's descriptor: its parameters (Dovecot names), the
 * imap-login listeners (143 with STARTTLS, 993 with implicit TLS) and the
 * post-login session service it registers in the user's mail process. */
#include <stdio.h>
#include <string.h>

#include "postern/config.h"
#include "postern/log.h"
#include "postern/mailbox.h"
#include "postern/module.h"
#include "imap.h"

/* The value is checked word by word as PT_LIST splits it. */
static int
imap_validate_special_use(const char *value, char *err, size_t errlen)
{
	char word[600];
	size_t n = 0;
	const char *p = value;

	while (*p) {
		p += strspn(p, ", \t");
		size_t len = strcspn(p, ", \t");
		if (len == 0)
			break;
		if (len >= sizeof(word)) {
			snprintf(err, errlen, "special-use item too long");
			return -1;
		}
		memcpy(word, p, len);
		word[len] = 0;
		p += len;
		if (++n > IMAP_SPECIAL_MAX) {
			snprintf(err, errlen, "more than %d special-use folders", IMAP_SPECIAL_MAX);
			return -1;
		}
		if (imap_special_parse(word, NULL) != 0) {
			snprintf(err, errlen, "bad special-use item '%.100s' (want NAME:\\Sent[:no|create|subscribe])",
			         word);
			return -1;
		}
	}
	return 0;
}

static const struct pt_param imap_params[] = {
	{ "imap_listen", PT_HOSTPORT_LIST, "143", NULL,
	  "IMAP listener (STARTTLS offered when ssl_cert is set): [ADDR:]PORT list, empty = off", 0, 0 },
	{ "imaps_listen", PT_HOSTPORT_LIST, "993", NULL,
	  "IMAP over implicit TLS: [ADDR:]PORT list, empty = off", 0, 0 },
	{ "imap_max_line_length", PT_SIZE, "64k", NULL,
	  "longest IMAP command line (literals not counted); longer closes the connection", 1024, 16777216 },
	{ "imap_max_literal_size", PT_SIZE, "$message_size_limit", NULL,
	  "largest literal (APPEND message) accepted; 0 = 50m", 0, 0 },
	{ "imap_idle_notify_interval", PT_TIME, "2m", NULL,
	  "how often an idling client gets \"* OK Still here\"", 1, 86400 },
	{ "imap_login_timeout", PT_TIME, "60s", NULL,
	  "total time allowed from connect to login (however the client trickles input); the connection is then closed", 1, 86400 },
	{ "imap_special_use", PT_LIST,
	  "Drafts:\\Drafts Sent:\\Sent Trash:\\Trash Junk:\\Junk Archive:\\Archive", imap_validate_special_use,
	  "special-use folders (RFC 6154) as NAME:\\USE[:AUTO] items, AUTO one of no, create, subscribe "
	  "(Dovecot's mailbox { special_use, auto }): created (and subscribed) at login when missing", 0, 0 },
	{ "imap_autologout", PT_TIME, "30m", NULL,
	  "idle time after login before \"* BYE Disconnected for inactivity.\" (RFC 3501: at least 30m)",
	  1, 604800 },
	{ 0 },
};

static const struct pt_listener_decl imap_listeners[] = {
	{ "imap_listen", "imap-login", 0, imap_login_accept },
	{ "imaps_listen", "imap-login", 1, imap_login_accept },
	{ 0 },
};

/* Whichever module serves mailboxes (mbox today). */
static const char *const imap_depends[] = { PT_SVC_MAILBOX, NULL };
static const char *const imap_provides[] = { "session:imap", NULL };

static int
imap_configure(struct pt_ctx *ctx)
{
	long long lit = pt_conf_int(ctx->conf, "imap_max_literal_size");

	imap_set.conf = ctx->conf;
	imap_set.max_line = (size_t)pt_conf_int(ctx->conf, "imap_max_line_length");
	imap_set.max_literal = lit > 0 ? (size_t)lit : (size_t)50 * 1024 * 1024;
	imap_set.idle_notify_ms = (unsigned)pt_conf_int(ctx->conf, "imap_idle_notify_interval") * 1000u;
	imap_set.login_timeout_ms = (unsigned)pt_conf_int(ctx->conf, "imap_login_timeout") * 1000u;
	imap_set.autologout_ms = (unsigned)pt_conf_int(ctx->conf, "imap_autologout") * 1000u;
	const struct pt_list *su = pt_conf_list(ctx->conf, "imap_special_use");
	imap_set.nspecial = 0;
	for (size_t i = 0; su != NULL && i < su->n && imap_set.nspecial < IMAP_SPECIAL_MAX; i++)
		if (imap_special_parse(su->v[i], &imap_set.special[imap_set.nspecial]) == 0)
			imap_set.nspecial++;
	return 0;
}

static int
imap_init(struct pt_ctx *ctx)
{
	if (imap_configure(ctx) != 0)
		return -1;
	if (ctx->role == PT_ROLE_MAIL &&
	    pt_service_register("session:imap", &imap_session_ops) != 0) {
		pt_error("imap: cannot register the session service");
		return -1;
	}
	return 0;
}

static void
imap_stop(struct pt_ctx *ctx)
{
	(void)ctx;
	imap_login_stop();
}

POSTERN_MODULE_EXPORT const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "imap",
	.depends = imap_depends,
	.params = imap_params,
	.listeners = imap_listeners,
	/* Login in the worker, the session in the user's mail process. */
	.roles = PT_ROLE_WORKER | PT_ROLE_MAIL | PT_ROLE_AUTH,
	.init = imap_init,
	.stop = imap_stop,
	.check = NULL,
	.provides = imap_provides,
	.protocol = "imap",
};
