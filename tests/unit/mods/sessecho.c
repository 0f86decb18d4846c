/* Test-only module for the post-login session handoff: a line protocol
 * that logs in through the auth service in the worker, hands the session
 * to the user's mail process, and there reports who it runs as and echoes
 * lines back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "postern/conn.h"
#include "postern/event.h"
#include "postern/log.h"
#include "postern/module.h"
#include "postern/services.h"
#include "postern/session.h"

/* ---------- pre-login, in the worker ---------- */

struct pre {
	struct pt_conn *c;
	int authing;       /* a password check is out */
	int closed;        /* the conn closed while it was */
	char user[128];
};

static void pre_read(struct pt_conn *c);
static void pre_close(struct pt_conn *c, const char *reason);
static const struct pt_conn_handlers pre_handlers = { .on_read = pre_read, .on_close = pre_close };

static struct pre *
pre_attach(struct pt_conn *c)
{
	struct pre *p = calloc(1, sizeof *p);
	if (p == NULL) {
		pt_conn_close(c, "out of memory");
		return NULL;
	}
	p->c = c;
	pt_conn_set_handlers(c, &pre_handlers, p);
	return p;
}

static void
handoff_failed(struct pt_conn *c, void *arg, const char *code, const char *why)
{
	(void)arg;
	if (strcmp(code, "CLOSED") == 0)
		return;
	if (pre_attach(c) == NULL)
		return;
	pt_conn_printf(c, "NO [%s] %s\r\n", code, why);
}

static void
auth_done(void *arg, int result)
{
	struct pre *p = arg;
	struct pt_conn *c = p->c;
	p->authing = 0;
	if (p->closed) {
		free(p);
		return;
	}
	if (result != 1) {
		pt_conn_printf(c, result == 0 ? "NO bad\r\n" : "NO [UNAVAILABLE] try later\r\n");
		pt_conn_resume(c);
		return;
	}
	char sid[24], user[128];
	snprintf(sid, sizeof sid, "%08lx%04x", (unsigned long)random(), (unsigned)getpid() & 0xffff);
	snprintf(user, sizeof user, "%s", p->user);
	struct pt_session_info info = {
		.protocol = "sessecho", .user = user, .mech = "PLAIN", .session_id = sid,
		.handoff = "tag1", .handoff_len = 4,
	};
	/* Pre-login state ends here; failed() makes a new one. */
	free(p);
	pt_conn_set_handlers(c, NULL, NULL);
	if (pt_session_handoff(c, &info, handoff_failed, NULL) != 0) {
		if (pre_attach(c) != NULL) {
			pt_conn_printf(c, "NO [UNAVAILABLE] handoff refused\r\n");
			pt_conn_resume(c);
		}
	}
}

static void
pre_read(struct pt_conn *c)
{
	struct pre *p = pt_conn_proto(c);
	const char *line;
	size_t len;
	int eol, rc;
	while (!p->authing && (rc = pt_conn_getline(c, 1024, &line, &len, &eol)) != 0) {
		char user[128], pass[128];
		if (rc < 0) {
			pt_conn_printf(c, "BAD line too long\r\n");
			continue;
		}
		if (strcmp(line, "QUIT") == 0) {
			pt_conn_printf(c, "BYE\r\n");
			pt_conn_close_after_write(c);
			return;
		}
		if (sscanf(line, "LOGIN %127s %127s", user, pass) != 2) {
			pt_conn_printf(c, "BAD expected LOGIN user password\r\n");
			continue;
		}
		const struct pt_auth_ops *ops = pt_service_get(PT_SVC_AUTH);
		if (ops == NULL || ops->verify == NULL) {
			pt_conn_printf(c, "NO [UNAVAILABLE] no auth service\r\n");
			continue;
		}
		snprintf(p->user, sizeof p->user, "%s", user);
		p->authing = 1;
		/* What follows the LOGIN line waits in the buffer: after a
		 * successful login it belongs to the mail process. */
		pt_conn_pause(c);
		if (ops->verify(pt_conn_loop(c), user, pass, "sessecho", pt_conn_peer_addr(c), auth_done, p) != 0) {
			p->authing = 0;
			pt_conn_resume(c);
			pt_conn_printf(c, "NO [UNAVAILABLE] auth refused\r\n");
		}
		return;
	}
}

static void
pre_close(struct pt_conn *c, const char *reason)
{
	struct pre *p = pt_conn_proto(c);
	(void)reason;
	if (p == NULL)
		return;
	if (p->authing)
		p->closed = 1;  /* auth_done frees it */
	else
		free(p);
}

static void
sessecho_accept(struct pt_conn *c, const struct pt_listener *l)
{
	(void)l;
	if (pre_attach(c) != NULL)
		pt_conn_printf(c, "* SESSECHO ready\r\n");
}

/* ---------- post-login, in the user's mail process ---------- */

static void
mail_read(struct pt_conn *c)
{
	const char *line;
	size_t len;
	int eol, rc;
	while ((rc = pt_conn_getline(c, 65536, &line, &len, &eol)) != 0) {
		if (rc < 0)
			continue;
		if (strcmp(line, "QUIT") == 0) {
			pt_conn_printf(c, "BYE\r\n");
			pt_conn_close_after_write(c);
			return;
		}
		pt_conn_printf(c, "ECHO %s\r\n", line);
	}
}

static void
mail_close(struct pt_conn *c, const char *reason)
{
	(void)c;
	pt_log(PT_LOG_INFO, "Disconnected: %s", reason);
}

static const struct pt_conn_handlers mail_handlers = { .on_read = mail_read, .on_close = mail_close };

static void
sessecho_start(struct pt_conn *c, const struct pt_session_info *info, const struct pt_user *user)
{
	gid_t groups[256];
	int n = getgroups(256, groups);
	char list[2048] = "";
	size_t o = 0;
	for (int i = 0; i < n && o < sizeof list - 16; i++)
		o += (size_t)snprintf(list + o, sizeof list - o, "%s%ld", i ? "," : "", (long)groups[i]);
	(void)user;
	pt_conn_set_handlers(c, &mail_handlers, NULL);
	pt_conn_printf(c, "OK %.*s uid=%ld gid=%ld groups=%s pid=%ld peer=%s tls=%d\r\n", (int)info->handoff_len,
	               (const char *)info->handoff, (long)getuid(), (long)getgid(), list, (long)getpid(),
	               pt_conn_peer_addr(c), pt_conn_is_tls(c));
}

static const struct pt_session_ops session_ops = { .start = sessecho_start };

static int
sessecho_init(struct pt_ctx *ctx)
{
	if (ctx->role == PT_ROLE_MAIL)
		pt_service_register("session:sessecho", &session_ops);
	return 0;
}

static const struct pt_param params[] = {
	{ .name = "sessecho_listen", .type = PT_HOSTPORT_LIST, .def = "", .doc = "test listener (plaintext)" },
	{ .name = "sessechos_listen", .type = PT_HOSTPORT_LIST, .def = "", .doc = "test listener (implicit TLS)" },
	{ 0 },
};

static const struct pt_listener_decl listeners[] = {
	{ .param = "sessecho_listen", .service = "sessecho-login", .implicit_tls = 0, .on_accept = sessecho_accept },
	{ .param = "sessechos_listen", .service = "sessecho-login", .implicit_tls = 1, .on_accept = sessecho_accept },
	{ 0 },
};

__attribute__((visibility("default"))) const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "sessecho",
	.params = params,
	.listeners = listeners,
	.roles = PT_ROLE_WORKER | PT_ROLE_MAIL,
	.init = sessecho_init,
};
