/* Worker side of post-login sessions: after a login the protocol hands its
 * conn to pt_session_handoff(); the mail agent starts (or reuses) the
 * user's mail process and the conn becomes a byte relay between the
 * client (TLS stays here) and that process, with backpressure both ways. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_int.h"
#include "config_int.h"
#include "net.h"
#include "passdb.h"
#include "proxy.h"
#include "postern/event.h"
#include "postern/log.h"
#include "postern/session.h"
#include "queue.h"
#include "runtime.h"
#include "session_int.h"

/* Stop reading one side while the other has this much queued. */
/* Idle timeouts are the mail process's business; this only reaps a relay
 * whose both ends went silent for a day. */
#define PROXY_SAFETY_TIMEOUT_MS (24u * 3600u * 1000u)

enum handoff_state { HANDOFF_PENDING, HANDOFF_PROXY };

struct handoff {
	enum handoff_state state;
	uint32_t id;
	struct pt_conn *client, *mail;
	int sock;                        /* our stream end while pending */
	void (*failed)(struct pt_conn *c, void *arg, const char *code, const char *why);
	void *arg;
	struct pt_conn_handlers saved_h;
	void *saved_proto;
	struct pt_timer *fail_timer;     /* deferred failure (limit, no agent) */
	char fail_code[16], fail_why[200];
	char user[PT_SESSION_NAME_MAX], rip[PT_SESSION_ADDR_MAX], lip[PT_SESSION_ADDR_MAX];
	char mech[PT_SESSION_MECH_MAX], sid[PT_SESSION_ID_MAX], service[64];
	int tls;
	struct handoff *prev, *next;
};

static struct {
	struct pt_loop *loop;
	int fd;
	int watched;
	uint32_t next_id;
	struct handoff *head;
	size_t count;
} S = { .fd = -1 };

static void handoff_fail(struct handoff *h, const char *code, const char *why);

static void
handoff_unlink_free(struct handoff *h)
{
	if (h->prev)
		h->prev->next = h->next;
	else
		S.head = h->next;
	if (h->next)
		h->next->prev = h->prev;
	S.count--;
	if (h->sock >= 0)
		close(h->sock);
	free(h);
}

size_t
pt_session_count(void)
{
	return S.count;
}

/* ---------- the relay ---------- */


static void
proxy_client_read(struct pt_conn *c)
{
	struct handoff *h = pt_conn_proto(c);
	pt_conn_relay(c, h->mail);
}

static void
proxy_mail_read(struct pt_conn *m)
{
	struct handoff *h = pt_conn_proto(m);
	pt_conn_relay(m, h->client);
}

static void
proxy_client_drain(struct pt_conn *c)
{
	struct handoff *h = pt_conn_proto(c);
	if (h->mail)
		pt_conn_resume(h->mail);
}

static void
proxy_mail_drain(struct pt_conn *m)
{
	struct handoff *h = pt_conn_proto(m);
	if (h->client)
		pt_conn_resume(h->client);
}

static void
proxy_client_close(struct pt_conn *c, const char *reason)
{
	struct handoff *h = pt_conn_proto(c);
	(void)reason;
	h->client = NULL;
	if (h->mail)
		pt_conn_close_after_write(h->mail);
	else
		handoff_unlink_free(h);
}

static void
proxy_mail_close(struct pt_conn *m, const char *reason)
{
	struct handoff *h = pt_conn_proto(m);
	(void)reason;
	h->mail = NULL;
	if (h->client)
		pt_conn_close_after_write(h->client);
	else
		handoff_unlink_free(h);
}

static const struct pt_conn_handlers client_handlers = {
	.on_read = proxy_client_read, .on_close = proxy_client_close, .on_drain = proxy_client_drain,
};
static const struct pt_conn_handlers mail_handlers = {
	.on_read = proxy_mail_read, .on_close = proxy_mail_close, .on_drain = proxy_mail_drain,
};

static void
handoff_start_proxy(struct handoff *h, pid_t mpid)
{
	struct pt_conn *m = pt_conn_new(S.loop, h->sock, NULL);
	if (m == NULL) {
		handoff_fail(h, "UNAVAILABLE", "out of memory");
		return;
	}
	h->sock = -1;
	h->mail = m;
	h->state = HANDOFF_PROXY;
	/* A mail process that exits right after its last answer: that answer
	 * still reaches the client. */
	pt_conn_keep_last_words(m);
	pt_conn_set_handlers(m, &mail_handlers, h);
	pt_conn_set_handlers(h->client, &client_handlers, h);
	pt_conn_set_timeout(h->client, PROXY_SAFETY_TIMEOUT_MS);
	pt_conn_set_deadline(h->client, 0);  /* the pre-login deadline is met */
	pt_log_as(h->service, PT_LOG_INFO, "Login: user=<%s>, method=%s, rip=%s, lip=%s, mpid=%ld%s, session=<%s>",
	          h->user, h->mech, h->rip, h->lip, (long)mpid,
	          h->tls ? ", TLS" : strcmp(h->rip, h->lip) == 0 ? ", secured" : "", h->sid);
	/* What the client pipelined after its login goes first. */
	pt_conn_relay(h->client, m);
	if (pt_conn_pending_output(m) < PT_RELAY_HIGH_WATER)
		pt_conn_resume(h->client);
}

/* ---------- pending handoffs ---------- */

/* The client went away while the agent was still answering. */
static void
pending_client_close(struct pt_conn *c, const char *reason)
{
	struct handoff *h = pt_conn_proto(c);
	(void)reason;
	if (h->fail_timer)
		pt_timer_cancel(S.loop, h->fail_timer);
	h->fail_timer = NULL;
	h->client = NULL;
	pt_conn_set_handlers(c, &h->saved_h, h->saved_proto);
	h->failed(c, h->arg, "CLOSED", "the client closed the connection");
	/* The agent's reply still comes: keep the record until then, unless
	 * it never went out. */
	if (h->fail_code[0])
		handoff_unlink_free(h);
}

static const struct pt_conn_handlers pending_handlers = { .on_close = pending_client_close };

static void
handoff_fail(struct handoff *h, const char *code, const char *why)
{
	struct pt_conn *c = h->client;
	void (*failed)(struct pt_conn *, void *, const char *, const char *) = h->failed;
	void *arg = h->arg;
	char code_copy[16], why_copy[256];
	snprintf(code_copy, sizeof code_copy, "%s", code);
	snprintf(why_copy, sizeof why_copy, "%s", why);
	if (c != NULL) {
		pt_conn_set_handlers(c, &h->saved_h, h->saved_proto);
		pt_conn_resume(c);
	}
	handoff_unlink_free(h);
	if (c != NULL)
		failed(c, arg, code_copy, why_copy);
}

static void
fail_timer_fire(struct pt_loop *loop, void *arg)
{
	struct handoff *h = arg;
	(void)loop;
	h->fail_timer = NULL;
	handoff_fail(h, h->fail_code, h->fail_why);
}

static void
defer_fail(struct handoff *h, const char *code, const char *why)
{
	snprintf(h->fail_code, sizeof h->fail_code, "%s", code);
	snprintf(h->fail_why, sizeof h->fail_why, "%s", why);
	h->fail_timer = pt_timer_add(S.loop, 0, fail_timer_fire, h);
}

static struct handoff *
handoff_find(uint32_t id)
{
	for (struct handoff *h = S.head; h; h = h->next)
		if (h->state == HANDOFF_PENDING && h->id == id && !h->fail_code[0])
			return h;
	return NULL;
}

static void agent_close(void);

static void
agent_readable(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	(void)loop;
	(void)events;
	(void)arg;
	char buf[PT_SESSION_WIRE_MAX];
	for (;;) {
		int rfd = -1;
		ssize_t n = pt_agent_recv(fd, buf, sizeof buf, &rfd);
		if (rfd >= 0)
			close(rfd);  /* replies carry no fd */
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && errno == EMSGSIZE)
			continue;
		if (n <= 0) {
			pt_log(PT_LOG_ERROR, "mail agent: connection lost%s%s", n < 0 ? ": " : "",
			       n < 0 ? strerror(errno) : "");
			agent_close();
			return;
		}
		struct pt_session_reply r;
		if (pt_session_wire_reply_decode((unsigned char *)buf, (size_t)n, &r) != 0) {
			pt_log(PT_LOG_WARNING, "mail agent: malformed reply (%zd bytes) ignored", n);
			continue;
		}
		struct handoff *h = handoff_find(r.id);
		if (h == NULL)
			continue;
		if (h->client == NULL) {
			handoff_unlink_free(h);  /* client gone: closing our end ends it */
		} else if (r.ok) {
			handoff_start_proxy(h, r.pid);
		} else {
			pt_log_as(h->service, PT_LOG_WARNING, "Login failed: user=<%s>, rip=%s: %s: %s", h->user,
			          h->rip, r.code, r.reason);
			handoff_fail(h, r.code, r.reason);
		}
		if (S.fd < 0)
			return;
	}
}

/* The agent is gone: nothing pending will be answered. */
static void
agent_close(void)
{
	if (S.fd >= 0) {
		if (S.watched)
			pt_loop_unwatch(S.loop, S.fd);
		close(S.fd);
	}
	S.fd = -1;
	S.watched = 0;
	for (struct handoff *h = S.head, *next; h; h = next) {
		next = h->next;
		if (h->state != HANDOFF_PENDING || h->fail_code[0])
			continue;
		if (h->client == NULL)
			handoff_unlink_free(h);
		else
			defer_fail(h, "UNAVAILABLE", "the mail agent is not running");
	}
}

void
pt_session_set_agent(struct pt_loop *loop, int fd)
{
	if (S.fd >= 0 && S.fd != fd)
		agent_close();
	S.loop = loop;
	S.fd = fd;
	S.watched = 0;
	if (fd < 0)
		return;
	int flags = fcntl(fd, F_GETFL);
	if (flags >= 0)
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	if (pt_loop_watch(loop, fd, PT_EV_READ, agent_readable, NULL) == 0)
		S.watched = 1;
}

static long long
userip_limit(void)
{
	if (pt_live_conf && pt_config_owner(pt_live_conf, "mail_max_userip_connections"))
		return pt_conf_int(pt_live_conf, "mail_max_userip_connections");
	return 10;
}

static size_t
userip_count(const char *user, const char *rip)
{
	size_t n = 0;
	for (struct handoff *h = S.head; h; h = h->next)
		if (strcmp(h->user, user) == 0 && strcmp(h->rip, rip) == 0)
			n++;
	return n;
}

int
pt_session_handoff(struct pt_conn *c, const struct pt_session_info *info,
                   void (*failed)(struct pt_conn *c, void *arg, const char *code, const char *why),
                   void *arg)
{
	if (c == NULL || info == NULL || failed == NULL || info->protocol == NULL || info->user == NULL ||
	    info->user[0] == '\0' || strlen(info->user) >= PT_SESSION_NAME_MAX ||
	    info->handoff_len > PT_SESSION_HANDOFF_MAX)
		return -1;
	struct pt_loop *loop = pt_conn_loop(c);
	if (S.loop == NULL)
		S.loop = loop;
	/* A login the passdb sends elsewhere (proxy=y host=): no mail process
	 * here, the front relays it to that host (proxy.c). */
	const struct pt_auth_login *cur = pt_auth_current_login();
	if (cur && cur->proxy && cur->proxy[0] && strcmp(cur->user, info->user) == 0)
		return pt_proxy_start(c, info, cur->proxy, cur->password, failed, arg);
	struct handoff *h = calloc(1, sizeof *h);
	if (h == NULL)
		return -1;
	h->sock = -1;
	h->client = c;
	h->failed = failed;
	h->arg = arg;
	h->tls = pt_conn_is_tls(c);
	snprintf(h->user, sizeof h->user, "%s", info->user);
	snprintf(h->rip, sizeof h->rip, "%s", pt_conn_peer_addr(c));
	snprintf(h->lip, sizeof h->lip, "%s", pt_conn_local_addr(c));
	snprintf(h->mech, sizeof h->mech, "%s", info->mech ? info->mech : "");
	snprintf(h->sid, sizeof h->sid, "%s", info->session_id ? info->session_id : "");
	const struct pt_listener *l = pt_conn_listener(c);
	if (l && l->service)
		snprintf(h->service, sizeof h->service, "%s", l->service);
	else
		snprintf(h->service, sizeof h->service, "%s-login", info->protocol);

	/* Encode before anything changes: a bad request fails right here. */
	struct pt_session_info wi = *info;
	wi.mech = h->mech;
	wi.session_id = h->sid;
	wi.peer_addr = h->rip;
	wi.local_addr = h->lip;
	wi.peer_port = pt_conn_peer_port(c);
	wi.local_port = pt_conn_local_port(c);
	wi.tls = h->tls;
	unsigned char buf[PT_SESSION_WIRE_MAX];
	h->id = ++S.next_id;
	int len = pt_session_wire_request_encode(h->id, &wi, buf, sizeof buf);
	if (len < 0) {
		free(h);
		return -1;
	}
	long long max = userip_limit();
	size_t live = userip_count(h->user, h->rip);

	h->next = S.head;
	if (S.head)
		S.head->prev = h;
	S.head = h;
	S.count++;
	pt_conn_get_handlers(c, &h->saved_h, &h->saved_proto);
	pt_conn_set_handlers(c, &pending_handlers, h);
	pt_conn_pause(c);

	if (max > 0 && (long long)live >= max) {
		pt_log_as(h->service, PT_LOG_WARNING,
		          "Login refused: user=<%s>, rip=%s: Maximum number of connections from user+IP exceeded (mail_max_userip_connections=%lld)",
		          h->user, h->rip, max);
		defer_fail(h, "LIMIT", "Maximum number of connections from user+IP exceeded");
		return 0;
	}
	if (S.fd < 0) {
		defer_fail(h, "UNAVAILABLE", "the mail agent is not running");
		return 0;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		defer_fail(h, "UNAVAILABLE", strerror(errno));
		return 0;
	}
	h->sock = sv[0];
	if (pt_agent_send(S.fd, (const char *)buf, (size_t)len, sv[1]) != 0) {
		int e = errno;
		close(sv[1]);
		pt_log(PT_LOG_ERROR, "mail agent: cannot send a session: %s", strerror(e));
		defer_fail(h, "UNAVAILABLE", e == EAGAIN ? "the mail agent is overloaded" : strerror(e));
		return 0;
	}
	close(sv[1]);
	return 0;
}
