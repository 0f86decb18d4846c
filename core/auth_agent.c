/* The auth agent: a small process forked by the master that keeps its
 * privileges (so PAM and /etc/shadow work as root) while the network-facing
 * worker runs unprivileged. It only answers password checks, one
 * SOCK_SEQPACKET message each way:
 *   request  'Q' u32 id  user NUL password NUL service NUL rip NUL
 *   reply    'R' u32 id  i8 result  why NUL  [proxy NUL]   (proxy: a good
 *            login's destination "HOST[:PORT]", passdb proxy=y host=)
 * and exits when the worker side is closed or the master dies. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "loader.h"
#include "passdb.h"
#include "postern/log.h"
#include "postern/module.h"
#include "process.h"
#include "proctitle.h"

#define AGENT_THREADS 4

int pt_auth_default_agent_fd = -1;

int
pt_auth_wire_request_encode(uint32_t id, const struct pt_passdb_req *r, unsigned char *buf, size_t cap)
{
	const char *f[4] = { r->user, r->password, r->service ? r->service : "",
	                     r->rip ? r->rip : "" };
	size_t o = 5;

	if (cap < 5 || !r->user || !r->password)
		return -1;
	buf[0] = 'Q';
	memcpy(buf + 1, &id, 4);
	for (int i = 0; i < 4; i++) {
		size_t n = strlen(f[i]) + 1;
		if (o + n > cap || o + n > PT_AUTH_WIRE_MAX)
			return -1;
		memcpy(buf + o, f[i], n);
		o += n;
	}
	return (int)o;
}

/* In place: the strings point into buf. Exactly four NUL-terminated
 * fields, nothing after them. */
int
pt_auth_wire_request_decode(unsigned char *buf, size_t len, uint32_t *id, struct pt_passdb_req *r)
{
	const char *f[4];
	size_t o = 5;

	if (len < 5 + 4 || len > PT_AUTH_WIRE_MAX || buf[0] != 'Q')
		return -1;
	memcpy(id, buf + 1, 4);
	for (int i = 0; i < 4; i++) {
		unsigned char *nul = memchr(buf + o, '\0', len - o);
		if (!nul)
			return -1;
		f[i] = (const char *)buf + o;
		o = (size_t)(nul - buf) + 1;
	}
	if (o != len)
		return -1;
	r->user = f[0];
	r->password = f[1];
	r->service = f[2];
	r->rip = f[3];
	return 0;
}

int
pt_auth_wire_reply_encode_proxy(uint32_t id, int result, const char *why, const char *proxy,
                                unsigned char *buf, size_t cap)
{
	size_t n = strlen(why ? why : ""), pn = strlen(proxy ? proxy : "");

	if (n > 255)
		n = 255;
	if (pn > PT_AUTH_PROXY_MAX - 1 || cap < 6 + n + 1 + (pn ? pn + 1 : 0) || result < -1 || result > 1)
		return -1;
	buf[0] = 'R';
	memcpy(buf + 1, &id, 4);
	buf[5] = (unsigned char)(signed char)result;
	memcpy(buf + 6, why ? why : "", n);
	buf[6 + n] = '\0';
	if (pn == 0)
		return (int)(7 + n);
	memcpy(buf + 7 + n, proxy, pn);
	buf[7 + n + pn] = '\0';
	return (int)(8 + n + pn);
}

int
pt_auth_wire_reply_encode(uint32_t id, int result, const char *why, unsigned char *buf, size_t cap)
{
	return pt_auth_wire_reply_encode_proxy(id, result, why, NULL, buf, cap);
}

int
pt_auth_wire_reply_decode_proxy(const unsigned char *buf, size_t len, uint32_t *id, int *result,
                                char *why, size_t whylen, char *proxy, size_t proxylen)
{
	if (len < 7 || len > 6 + 256 + PT_AUTH_PROXY_MAX || buf[0] != 'R' || buf[len - 1] != '\0')
		return -1;
	const unsigned char *nul = memchr(buf + 6, '\0', len - 6);
	size_t wl = (size_t)(nul - (buf + 6));
	if (wl > 255)
		return -1;
	/* Optional second string: the proxy destination of a good login. */
	if (nul != buf + len - 1 && (memchr(nul + 1, '\0', len - wl - 7) != buf + len - 1 ||
	                             len - wl - 8 > PT_AUTH_PROXY_MAX - 1))
		return -1;
	memcpy(id, buf + 1, 4);
	*result = (signed char)buf[5];
	if (*result < -1 || *result > 1)
		return -1;
	snprintf(why, whylen, "%s", (const char *)buf + 6);
	if (proxy && proxylen)
		snprintf(proxy, proxylen, "%s", nul != buf + len - 1 ? (const char *)nul + 1 : "");
	return 0;
}

int
pt_auth_wire_reply_decode(const unsigned char *buf, size_t len, uint32_t *id, int *result,
                          char *why, size_t whylen)
{
	return pt_auth_wire_reply_decode_proxy(buf, len, id, result, why, whylen, NULL, 0);
}

struct agent {
	int fd;
	char passdb[1024];
};

/* Each thread takes whole requests off the socket (SEQPACKET keeps them
 * apart), so one slow PAM conversation does not hold up the others. */
static void *
agent_thread(void *p)
{
	struct agent *a = p;
	unsigned char in[PT_AUTH_WIRE_MAX + 1], out[300 + PT_AUTH_PROXY_MAX];

	for (;;) {
		ssize_t n = recv(a->fd, in, sizeof in, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		uint32_t id;
		struct pt_passdb_req req;
		char why[200] = "", proxy[PT_AUTH_PROXY_MAX] = "";
		if (pt_auth_wire_request_decode(in, (size_t)n, &id, &req) < 0) {
			pt_log(PT_LOG_WARNING, "auth agent: malformed request (%zd bytes) ignored", n);
			OPENSSL_cleanse(in, sizeof in);
			continue;
		}
		int r = pt_passdb_check_proxy(a->passdb, &req, why, sizeof why, proxy, sizeof proxy);
		OPENSSL_cleanse(in, sizeof in);
		int len = pt_auth_wire_reply_encode_proxy(id, r, why, proxy, out, sizeof out);
		if (len > 0 && send(a->fd, out, (size_t)len, MSG_NOSIGNAL) < 0 && errno != EINTR)
			break;
	}
	return NULL;
}

static void
agent_main(const struct pt_config *conf, int fd, const char *passdb)
{
	static struct agent a;
	pthread_t th[AGENT_THREADS];
	int started = 0;

	pt_process_child_setup();
	pt_log_set_service("auth");
	pt_proctitle_set("auth");
	/* A passdb from a lookup module (passdb = ldap:FILE): the module
	 * registers its source in this process (PT_ROLE_AGENT). */
	struct pt_ctx ctx = { .conf = conf, .loop = NULL, .as_root = geteuid() == 0, .role = PT_ROLE_AGENT };
	if (pt_modules_init(&ctx) != 0) {
		pt_log(PT_LOG_FATAL, "auth agent: module initialisation failed");
		_exit(1);
	}
	a.fd = fd;
	snprintf(a.passdb, sizeof a.passdb, "%s", passdb);
	for (int i = 0; i < AGENT_THREADS; i++)
		if (pthread_create(&th[i], NULL, agent_thread, &a) == 0)
			started++;
	if (started == 0)
		agent_thread(&a);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	_exit(0);
}

pid_t
pt_auth_agent_spawn(const struct pt_config *conf, int *fd)
{
	int sv[2];
	char err[200];
	const char *passdb = pt_conf_str(conf, "passdb");

	if (pt_passdb_spec_check(passdb, err, sizeof err) < 0) {
		pt_log(PT_LOG_ERROR, "passdb: %s", err);
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		pt_log(PT_LOG_ERROR, "auth agent: socketpair: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		pt_log(PT_LOG_ERROR, "auth agent: fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		agent_main(conf, sv[1], passdb ? passdb : "pam");
	}
	close(sv[1]);
	*fd = sv[0];
	pt_auth_default_agent_fd = sv[0];
	return pid;
}
