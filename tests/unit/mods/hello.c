/* Test-only module: a listener that greets with hello_greeting and echoes
 * lines back, so core tests can check listeners, reload and stop without
 * any real protocol module. */
#include <stdlib.h>
#include <string.h>

#include "postern/conn.h"
#include "postern/log.h"
#include "postern/module.h"

static const char *greeting = "hello";
static int init_count;

static void
hello_read(struct pt_conn *c)
{
	const char *line;
	size_t len;
	int eol;
	int rc;
	while ((rc = pt_conn_getline(c, 512, &line, &len, &eol)) != 0) {
		if (rc < 0) {
			pt_conn_printf(c, "error: line too long\r\n");
			continue;
		}
		if (len == 4 && memcmp(line, "quit", 4) == 0) {
			pt_conn_printf(c, "bye\r\n");
			pt_conn_close_after_write(c);
			return;
		}
		pt_conn_printf(c, "echo %.*s\r\n", (int)len, line);
	}
}

static void
hello_close(struct pt_conn *c, const char *reason)
{
	(void)c;
	(void)reason;
}

static const struct pt_conn_handlers handlers = { .on_read = hello_read, .on_close = hello_close };

static void
hello_accept(struct pt_conn *c, const struct pt_listener *l)
{
	(void)l;
	pt_conn_set_handlers(c, &handlers, NULL);
	pt_conn_printf(c, "%s (init %d)\r\n", greeting, init_count);
}

static int
hello_init(struct pt_ctx *ctx)
{
	greeting = pt_conf_str(ctx->conf, "hello_greeting");
	init_count++;
	return 0;
}

static const struct pt_param params[] = {
	{ .name = "hello_listen", .type = PT_HOSTPORT_LIST, .def = "", .doc = "test listener" },
	{ .name = "hello_greeting", .type = PT_STR, .def = "hello", .doc = "first line sent" },
	{ 0 },
};

static const struct pt_listener_decl listeners[] = {
	{ .param = "hello_listen", .service = "hello", .implicit_tls = 0, .on_accept = hello_accept },
	{ 0 },
};

static const char *const provides[] = { "hello", NULL };

__attribute__((visibility("default"))) const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "hello",
	.params = params,
	.listeners = listeners,
	.roles = PT_ROLE_WORKER | PT_ROLE_CLI,
	.init = hello_init,
	/* A service for needdep's dependency test (nothing is registered). */
	.provides = provides,
	/* `protocols` switches it like imap and pop3: the core knows it
	 * only by this name. */
	.protocol = "hello",
};
