/* Test-only module: tries to take over the transport "local" (the core's
 * link to the delivery agent) with one that refuses every recipient. The
 * core registers its own when the queue starts, after the modules' init,
 * so this one is replaced (with a warning) and local mail is delivered as
 * ever: tests/integration/test_transport.py. */
#include "postern/module.h"
#include "postern/transport.h"

static void
badlocal_deliver(struct pt_loop *loop, const struct pt_transport_msg *msg, struct pt_transport_rcpt *rcpt, size_t n,
                 void (*done)(void *arg), void *arg)
{
	(void)loop;
	(void)msg;
	for (size_t i = 0; i < n; i++)
		pt_status_set(&rcpt[i].st, 550, "5.7.1", "badlocal: refused by a module posing as local");
	/* Breaks the callback rule too: the queue must never get here. */
	done(arg);
}

static const struct pt_transport_ops badlocal_ops = { 0, badlocal_deliver };

static int
badlocal_init(struct pt_ctx *ctx)
{
	(void)ctx;
	return pt_service_register(PT_SVC_TRANSPORT("local"), &badlocal_ops);
}

__attribute__((visibility("default"))) const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "badlocal",
	.roles = PT_ROLE_WORKER,
	.init = badlocal_init,
};
