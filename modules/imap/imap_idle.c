/* IDLE (RFC 2177): "+ idling", the folder checked every second for news
 * (deliveries append to the mbox; sync is a stat when nothing changed),
 * "* OK Still here" every imap_idle_notify_interval, DONE ends it. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/conn.h"
#include "postern/event.h"
#include "imap.h"

#define IDLE_POLL_MS 1000

static struct pt_loop *
loop_of(struct imap_session *s)
{
	return s->conn ? pt_conn_loop(s->conn) : NULL;
}

static void
idle_poll(struct pt_loop *loop, void *arg)
{
	struct imap_session *s = arg;

	s->idle_poll_timer = NULL;
	/* Output still queued means a slow client: skip a round. */
	if (s->conn == NULL || pt_conn_pending_output(s->conn) < 65536)
		imap_sync(s, 1);
	if (s->idling && s->state != IMAP_LOGOUT)
		s->idle_poll_timer = pt_timer_add(loop, IDLE_POLL_MS, idle_poll, s);
}

static void
idle_notify(struct pt_loop *loop, void *arg)
{
	struct imap_session *s = arg;

	s->idle_timer = NULL;
	imap_untagged(s, "OK Still here");
	if (s->idling)
		s->idle_timer = pt_timer_add(loop, imap_set.idle_notify_ms, idle_notify, s);
}

void
imap_idle_stop(struct imap_session *s)
{
	struct pt_loop *loop = loop_of(s);

	if (loop && s->idle_timer)
		pt_timer_cancel(loop, s->idle_timer);
	if (loop && s->idle_poll_timer)
		pt_timer_cancel(loop, s->idle_poll_timer);
	s->idle_timer = s->idle_poll_timer = NULL;
	s->idling = 0;
}

void
imap_cmd_idle(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	struct pt_loop *loop = loop_of(s);

	(void)a, (void)uid;
	if (n != 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command IDLE: Unexpected arguments.");
		return;
	}
	free(s->idle_tag);
	s->idle_tag = strdup(tag);
	if (s->idle_tag == NULL) {
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return;
	}
	s->idling = 1;
	imap_write(s, "+ idling\r\n", 10);
	imap_sync(s, 1);
	if (loop) {
		s->idle_poll_timer = pt_timer_add(loop, IDLE_POLL_MS, idle_poll, s);
		s->idle_timer = pt_timer_add(loop, imap_set.idle_notify_ms, idle_notify, s);
	}
}

void
imap_idle_line(struct imap_session *s, const char *line, size_t len)
{
	char *tag = s->idle_tag;

	s->idle_tag = NULL;
	imap_idle_stop(s);
	if (len == 4 && strncasecmp(line, "DONE", 4) == 0) {
		imap_sync(s, 1);
		imap_completed(s, tag ? tag : "*", NULL, "Idle");
	} else {
		imap_tagged(s, tag ? tag : "*", "BAD", "Expected DONE.");
	}
	free(tag);
}
