/* The transports that need no connection, as Postfix's error(8) and
 * discard(8): "error" bounces with its nexthop text ("5.1.1 gone" keeps
 * its status, plain text is 5.0.0), "retry" defers with it, "discard"
 * says sent. Outcomes are reported on the next loop turn. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "postern/event.h"
#include "transport.h"

struct simple_call {
	void (*done)(void *arg);
	void *arg;
};

static void
simple_fire(struct pt_loop *loop, void *arg)
{
	(void)loop;
	struct simple_call *c = arg;
	c->done(c->arg);
	free(c);
}

/* "5.1.1 text" -> dsn "5.1.1" and "text" when the status class matches. */
static const char *
split_dsn(const char *t, char cls, char *dsn, size_t dsnlen)
{
	const char *sp = strchr(t, ' ');
	if (t[0] == cls && t[1] == '.' && sp && (size_t)(sp - t) < dsnlen) {
		memcpy(dsn, t, (size_t)(sp - t));
		dsn[sp - t] = 0;
		return sp + 1;
	}
	return t;
}

static void
simple_deliver(const char *name, struct pt_loop *loop, const struct pt_transport_msg *msg,
               struct pt_transport_rcpt *rcpt, size_t n, void (*done)(void *arg), void *arg)
{
	double d[4] = { difftime(time(NULL), msg->arrival), 0, 0, 0 };
	if (d[0] < 0)
		d[0] = 0;
	for (size_t i = 0; i < n; i++) {
		struct pt_transport_rcpt *r = &rcpt[i];
		const char *text = r->nexthop ? r->nexthop : "";
		char dsn[8] = "5.0.0";
		if (name[0] == 'e') {
			text = split_dsn(text, '5', dsn, sizeof dsn);
			pt_status_set(&r->st, 550, dsn, "%s", text[0] ? text : "delivery refused by transport table");
		} else if (name[0] == 'r') {
			pt_status_set(&r->st, 450, "4.0.0", "%s", text[0] ? text : "delivery temporarily suspended");
		} else {
			pt_status_set(&r->st, 0, "2.0.0", "discarded%s%s", text[0] ? ": " : "", text);
		}
		pt_delivery_log(name, msg->queue_id, r->address, r->orig, "none", d, &r->st);
	}
	struct simple_call *c = malloc(sizeof *c);
	if (!c || !pt_timer_add(loop, 0, simple_fire, c)) {
		free(c);
		done(arg); /* no memory to wait: the queue holds its own reference */
		return;
	}
	c->done = done;
	c->arg = arg;
}

static void
error_deliver(struct pt_loop *loop, const struct pt_transport_msg *msg, struct pt_transport_rcpt *rcpt, size_t n,
              void (*done)(void *arg), void *arg)
{
	simple_deliver("error", loop, msg, rcpt, n, done, arg);
}

static void
retry_deliver(struct pt_loop *loop, const struct pt_transport_msg *msg, struct pt_transport_rcpt *rcpt, size_t n,
              void (*done)(void *arg), void *arg)
{
	simple_deliver("retry", loop, msg, rcpt, n, done, arg);
}

static void
discard_deliver(struct pt_loop *loop, const struct pt_transport_msg *msg, struct pt_transport_rcpt *rcpt,
                size_t n, void (*done)(void *arg), void *arg)
{
	simple_deliver("discard", loop, msg, rcpt, n, done, arg);
}

const struct pt_transport_ops transport_error_ops = { 0, error_deliver };
const struct pt_transport_ops transport_retry_ops = { 0, retry_deliver };
const struct pt_transport_ops transport_discard_ops = { 0, discard_deliver };
