/* Test-only module with a listener but no worker role: the loader must
 * refuse it (accepted connections are handled in the worker). */
#include <stddef.h>

#include "postern/module.h"

static void
nowork_accept(struct pt_conn *c, const struct pt_listener *l)
{
	(void)c;
	(void)l;
}

static const struct pt_param params[] = {
	{ .name = "nowork_listen", .type = PT_HOSTPORT_LIST, .def = "", .doc = "test listener" },
	{ 0 },
};

static const struct pt_listener_decl listeners[] = {
	{ .param = "nowork_listen", .service = "nowork", .implicit_tls = 0, .on_accept = nowork_accept },
	{ 0 },
};

__attribute__((visibility("default"))) const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "nowork",
	.params = params,
	.listeners = listeners,
	.roles = PT_ROLE_MAIL,
};
