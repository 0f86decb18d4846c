/* Core-internal networking: listening sockets (bound by the master, so a
 * root master can take ports < 1024 before the worker drops privileges),
 * accepting in the worker, connection objects, TLS contexts. */
#ifndef POSTERN_NET_H
#define POSTERN_NET_H

#include <stddef.h>

#include "postern/conn.h"
#include "postern/config.h"
#include "postern/event.h"
#include "postern/module.h"

struct pt_listen_sock {
	int fd;
	struct pt_listener info;              /* service, implicit_tls, addr, port */
	const struct pt_listener_decl *decl;  /* owner module's declaration */
	char param[48];                       /* e.g. "smtpd_listen" */
};

/* A listener's name: its parameter without "_listen" ("submission"). */
void pt_listener_name(const char *param, char *out, size_t len);

/* Bind every [ADDR:]PORT of decl->param (a PT_HOSTPORT_LIST); an item
 * without ADDR binds each inet_interfaces address ("all" = 0.0.0.0 and ::,
 * "loopback-only" = 127.0.0.1 and ::1). Appends to *socks (realloc'd).
 * Sockets are non-blocking, SO_REUSEADDR, IPV6_V6ONLY, listen backlog 511.
 * `reuse` (may be NULL): sockets of a previous generation; one with the
 * same address+port is moved over instead of binding again (reload).
 * Returns 0, or -1 with a sentence in err ("cannot bind 127.0.0.1:25
 * (smtpd_listen): Address already in use"). */
int pt_listen_open(const struct pt_config *conf, const struct pt_listener_decl *decl,
                   struct pt_listen_sock **socks, size_t *nsocks,
                   struct pt_listen_sock *reuse, size_t nreuse,
                   char *err, size_t errlen);
void pt_listen_close_all(struct pt_listen_sock *socks, size_t n);
/* Config check: every address and port the loaded modules' listeners
 * would bind, as pt_listen_open expands them; two that bind(2) would not
 * let coexist (the same one, or an address beside the wildcard of its
 * family) are an error on the later parameter's line. Returns the count. */
int pt_listen_check(const struct pt_config *conf);

/* Worker side: start accepting on socks. Each accepted connection gets a
 * pt_conn (TLS handshake first when implicit_tls) and then decl->on_accept.
 * Enforces service_connection_limit (per listener service) and
 * client_connection_limit (per client address): over a limit the socket is
 * closed right away with a log line. */
int pt_listen_start(struct pt_loop *loop, const struct pt_config *conf,
                    struct pt_listen_sock *socks, size_t n);
/* Stop accepting (graceful stop / old generation after reload). */
void pt_listen_stop(struct pt_loop *loop);
/* Number of open client connections in this process. */
size_t pt_conn_count(void);
/* Close every connection now (on_close "shutdown"). */
void pt_conn_close_all(const char *reason);

/* TLS: server context from ssl_cert / ssl_key (a path, or PEM text from a
 * `< file` value), TLS 1.2 minimum. 0 ok or when neither is set (TLS then
 * unavailable: STARTTLS not offered), -1 with a reason in err. Replaces
 * the context used for new handshakes (reload). */
int pt_tls_configure(const struct pt_config *conf, char *err, size_t errlen);
int pt_tls_enabled(void);

/* Wrap an fd as a connection (tests use socketpairs). */
struct pt_conn *pt_conn_new(struct pt_loop *loop, int fd, const struct pt_listener *l);

/* Buffer limits: input buffer holds at most this much unconsumed data (the
 * read side pauses beyond it); output beyond the limit closes. */
#define PT_CONN_RBUF_MAX (64 * 1024)
#define PT_CONN_WBUF_MAX (4 * 1024 * 1024)

#endif
