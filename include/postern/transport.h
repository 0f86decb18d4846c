/* Transports: how the queue delivers recipients that routing (the
 * `route` service: transport_maps, default_transport, relay_transport)
 * sent to a transport by name. A module provides a transport by
 * registering its ops under PT_SVC_TRANSPORT(name) in init(); the queue
 * looks every one up by name ("smtp" for smtp:[host]:port) and hands each
 * its recipients in one deliver call per message.
 * "local" is a provider like the others, the core's own (the link to the
 * root delivery agent, registered when the queue starts, after the
 * modules: a module cannot replace it). Its recipients are not the
 * envelope's: the queue first expands aliases and looks users up, and
 * gives it one pt_transport_rcpt per resulting target (a user's mailbox,
 * a /file, a |command), described by `detail`; the queue folds the
 * targets' outcomes back into the recipients' (bounces, retries). */
#ifndef POSTERN_TRANSPORT_H
#define POSTERN_TRANSPORT_H

#include <stddef.h>
#include <time.h>

#include "postern/services.h"

struct pt_loop;

/* Service name of a transport, for literals: PT_SVC_TRANSPORT("smtp"). */
#define PT_SVC_TRANSPORT(name) "transport/" name

/* The message, shared by every recipient of one call. */
struct pt_transport_msg {
	const char *queue_id;
	const char *sender;           /* envelope sender, "" for <> */
	const char *data;             /* LF line ends; valid until done runs */
	size_t len;
	time_t arrival;               /* for the delays= of the log line */
};

struct pt_transport_rcpt {
	const char *address;          /* recipient */
	const char *orig;             /* as the client gave it, or NULL */
	const char *nexthop;          /* routing's nexthop ("[host]:port",
	                                 error text, ...), "" for the default */
	const void *detail;           /* what routing resolved beyond the
	                                 nexthop, in the router's own type: set
	                                 only for the core's local targets;
	                                 NULL for every transport routed by name */
	struct pt_status st;          /* the outcome, set by the transport:
	                                 0 sent, 4xx deferred, 5xx bounced */
};

/* The transport may take minutes (a remote server): the queue makes the
 * message durable and answers the client before calling deliver. */
#define PT_TRANSPORT_SLOW 1u

struct pt_transport_ops {
	unsigned flags;               /* PT_TRANSPORT_* */
	/* Deliver msg to rcpt[0..n) (their nexthops may differ). Runs in the
	 * worker, on its loop, unprivileged: never block (a blocking
	 * transport uses pt_work_submit). Sets every rcpt[i].st and logs each
	 * outcome (pt_delivery_log), then runs done(arg) on the loop, once,
	 * never before deliver returns. msg and rcpt stay valid until then. */
	void (*deliver)(struct pt_loop *loop, const struct pt_transport_msg *msg, struct pt_transport_rcpt *rcpt,
	                size_t n, void (*done)(void *arg), void *arg);
};

/* The provider of transport `name`, or NULL when no loaded module has it. */
const struct pt_transport_ops *pt_transport_get(const char *name);

/* Config checks, before any module's init: 1 when `name` is "local" (the
 * core's, registered when the queue starts) or a loaded module lists
 * PT_SVC_TRANSPORT(name) among the services it provides (so a module that
 * registers a transport lists it there too). */
int pt_transport_known(const char *name);
/* "local, smtp, relay, ..." (those names) into out, for messages; returns
 * how many there are. */
size_t pt_transport_names(char *out, size_t len);

/* The delivery log line, as Postfix's delivery agents write it, under
 * service (the syslog tag: "smtp", "error", ...):
 * "ID: to=<to>[, orig_to=<orig>], relay=RELAY, delay=T, delays=a/b/c/d,
 * dsn=X.Y.Z, status=sent|deferred|bounced (text)". delays: seconds
 * before the queue manager, waiting for a connection, connection setup,
 * transmission. */
void pt_delivery_log(const char *service, const char *queue_id, const char *to, const char *orig,
                     const char *relay, const double delays[4], const struct pt_status *st);

#endif
