/* The outbound SMTP client as the queue sees it: recipients routed to
 * smtp:/relay: are collected per message attempt into a batch, delivered
 * per next hop (connection reuse, per-destination concurrency), and their
 * outcomes written back and logged Postfix-style. */
#ifndef POSTERN_RELAY_H
#define POSTERN_RELAY_H

#include <stddef.h>
#include <time.h>

#include "postern/event.h"
#include "postern/services.h"

struct pt_relay_batch;

/* Add recipient index i (address and original as given) routed by rt (kind
 * PT_ROUTE_SMTP) to *b, creating the batch on first use. 0 or -1 (ENOMEM). */
int pt_relay_batch_add(struct pt_relay_batch **b, size_t i, const char *address, const char *orig,
                       const struct pt_route *rt);
/* 1 when recipient index i is in the batch (its outcome is logged by the
 * client, not by the caller). b may be NULL. */
int pt_relay_batch_has(const struct pt_relay_batch *b, size_t i);

struct pt_relay_msg {
	const char *queue_id;
	const char *sender;           /* "" for <> */
	const char *data;             /* LF line ends; valid until done */
	size_t len;
	time_t arrival;
};
/* Deliver: st[i] of each collected recipient gets its outcome (code 0
 * sent, 4xx deferred, 5xx bounced; text quotes the remote reply), each
 * logged "ID: to=<..>, relay=host[ip]:port, ... status=..". done(arg) runs
 * on the loop once every recipient has one; never before return. */
void pt_relay_batch_start(struct pt_relay_batch *b, struct pt_loop *loop, const struct pt_relay_msg *msg,
                          struct pt_status *st, void (*done)(void *arg), void *arg);
void pt_relay_batch_free(struct pt_relay_batch *b);

/* Close cached idle connections (shutdown, tests). */
void pt_relay_close_idle(void);

#endif
