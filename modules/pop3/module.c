/* The pop3 module's descriptor: parameters, the POP3 and POP3S listeners
 * (pre-login side, in the worker) and, in a user's mail process, the
 * "session:pop3" service that serves the transaction state. */
#include <string.h>

#include "postern/log.h"
#include "postern/mailbox.h"
#include "postern/module.h"
#include "postern/services.h"
#include "postern/session.h"
#include "pop3.h"

/* Whichever module serves mailboxes (mbox today). */
static const char *const pop3_depends[] = { PT_SVC_MAILBOX, NULL };
static const char *const pop3_provides[] = { "session:pop3", NULL };

static const struct pt_listener_decl pop3_listeners[] = {
	{ "pop3_listen", "pop3-login", 0, pop3_login_accept },
	{ "pop3s_listen", "pop3-login", 1, pop3_login_accept },
	{ 0 },
};

static const struct pt_session_ops pop3_session_ops = { pop3_session_start };

static int
pop3_configure(struct pt_ctx *ctx)
{
	struct pop3_settings *s = pop3_settings_new(ctx->conf);

	if (s == NULL) {
		pt_error("pop3: out of memory");
		return -1;
	}
	pop3_settings_install(s);
	if (ctx->role == PT_ROLE_MAIL &&
	    pt_service_register("session:pop3", &pop3_session_ops) != 0) {
		pt_error("pop3: cannot register the session:pop3 service");
		return -1;
	}
	return 0;
}

static void
pop3_stop(struct pt_ctx *ctx)
{
	(void)ctx;
	/* Sessions still open keep their own reference. */
	pop3_settings_install(NULL);
}

POSTERN_MODULE_EXPORT const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "pop3",
	.depends = pop3_depends,
	.params = pop3_params,
	.listeners = pop3_listeners,
	/* Login in the worker, the session in the user's mail process. */
	.roles = PT_ROLE_WORKER | PT_ROLE_MAIL | PT_ROLE_AUTH,
	.init = pop3_configure,
	.stop = pop3_stop,
	.check = NULL,
	.provides = pop3_provides,
	.protocol = "pop3",
};
