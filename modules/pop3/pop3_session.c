/* POP3 after login, in the user's mail process (RFC 1939 TRANSACTION and
 * UPDATE states): the INBOX through the mailbox service, a message list
 * fixed at login, RETR/TOP streamed dot-stuffed one chunk at a time, and
 * at QUIT the DELE'd messages expunged and retrieved ones marked \Seen.
 * A session that ends without QUIT changes nothing. Replies are Dovecot's. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "postern/conn.h"
#include "postern/log.h"
#include "postern/mailbox.h"
#include "postern/services.h"
#include "postern/session.h"
#include "pop3.h"

/* Output queued ahead of the client before streaming waits for a drain:
 * bounds a session's memory to about one chunk plus this. */
#define SEND_HIGH_WATER (64 * 1024)
#define SEND_CHUNK (16 * 1024)

struct pop3_msg {
	uint32_t uid;
	uint64_t size;
	unsigned char deleted;
	unsigned char retrieved;      /* RETR'd: gets \Seen at QUIT */
};

struct pop3_session {
	struct pt_conn *conn;
	struct pop3_settings *set;
	struct pt_user user;
	char svc[96];                 /* log tag "pop3(USER)" */
	char session_id[32];
	const struct pt_mailbox_ops *mbx;
	struct pt_mstore *ms;
	struct pt_mbox *mb;
	uint32_t uidvalidity;
	struct pop3_msg *msgs;
	size_t nmsgs, ndeleted;
	uint64_t total_size, deleted_size;

	/* the message being sent (RETR / TOP) */
	int sending;
	struct pt_msg_text text;
	size_t pos, end;
	int bol;
	int top;                      /* counts toward top= rather than retr= */

	unsigned bad;
	int gone, depth, closing, in_send;
	unsigned top_count, retr_count, del_count;
	uint64_t top_bytes, retr_bytes;
};

static void session_input(struct pop3_session *s);

static void
reply(struct pop3_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply(struct pop3_session *s, const char *fmt, ...)
{
	char buf[600];
	va_list ap;

	if (s->gone)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pt_conn_printf(s->conn, "%s\r\n", buf);
}

static void
close_with(struct pop3_session *s, const char *text)
{
	reply(s, "%s", text);
	s->closing = 1;
	if (!s->gone)
		pt_conn_close_after_write(s->conn);
}

static void
log_disconnect(struct pop3_session *s, const char *why)
{
	pt_log_as(s->svc, PT_LOG_INFO,
	          "Disconnected: %s top=%u/%" PRIu64 ", retr=%u/%" PRIu64 ", del=%u/%zu, size=%" PRIu64
	          ", session=<%s>",
	          why, s->top_count, s->top_bytes, s->retr_count, s->retr_bytes, s->del_count, s->nmsgs,
	          s->total_size, s->session_id);
}

static void
stop_sending(struct pop3_session *s)
{
	if (s->sending) {
		s->mbx->release(s->mb, &s->text);
		memset(&s->text, 0, sizeof(s->text));
		s->sending = 0;
	}
}

static void
session_free(struct pop3_session *s)
{
	stop_sending(s);
	if (s->mb)
		s->mbx->close(s->mb);
	if (s->ms)
		s->mbx->store_close(s->ms);
	free(s->msgs);
	pop3_settings_put(s->set);
	free(s);
}

static void
session_release(struct pop3_session *s)
{
	if (s->gone && s->depth == 0)
		session_free(s);
}

/* ---- streaming a message ---- */

/* Queue more of the message while the client keeps up; the rest goes out
 * from on_drain. Returns 1 when the message is completely queued. */
static int
send_more(struct pop3_session *s)
{
	char buf[SEND_CHUNK];

	s->in_send = 1;
	while (s->sending && !s->gone && pt_conn_pending_output(s->conn) < SEND_HIGH_WATER) {
		size_t out = 0;
		size_t used = pop3_dot_stuff(s->text.data + s->pos, s->end - s->pos, buf, sizeof(buf), &out,
		                             &s->bol);
		s->pos += used;
		if (s->top)
			s->top_bytes += out;
		else
			s->retr_bytes += out;
		if (out > 0 && pt_conn_write(s->conn, buf, out) != 0)
			break;
		if (s->pos >= s->end) {
			/* RFC 1939: the terminating line follows a CRLF. */
			reply(s, "%s.", s->bol ? "" : "\r\n");
			stop_sending(s);
		}
	}
	s->in_send = 0;
	return !s->sending;
}

static void
on_drain(struct pt_conn *c)
{
	struct pop3_session *s = pt_conn_proto(c);

	if (!s->sending || s->in_send)
		return;
	s->depth++;
	int done = send_more(s);
	s->depth--;
	if (done && !s->gone)
		session_input(s);       /* commands pipelined behind it */
	else
		session_release(s);
}

/* ---- message numbers ---- */

/* Resolve a message-number argument; replies and returns NULL when it
 * does not name a live message. */
static struct pop3_msg *
get_msg(struct pop3_session *s, const char *arg, size_t len, uint32_t *num)
{
	uint32_t n;
	int r = pop3_parse_number(arg, len, &n);

	if (r == -1) {
		s->bad++;
		reply(s, "-ERR Invalid message number: %.*s", (int)(len > 40 ? 40 : len), arg);
		return NULL;
	}
	if (r == -2) {
		s->bad++;
		reply(s, "-ERR Message number too large: %.*s", (int)(len > 40 ? 40 : len), arg);
		return NULL;
	}
	if (n == 0 || n > s->nmsgs) {
		reply(s, "-ERR There's no message %" PRIu32 ".", n);
		return NULL;
	}
	if (s->msgs[n - 1].deleted) {
		reply(s, "-ERR Message is deleted.");
		return NULL;
	}
	*num = n;
	return &s->msgs[n - 1];
}

/* ---- commands ---- */

static void
cmd_stat(struct pop3_session *s)
{
	reply(s, "+OK %zu %" PRIu64, s->nmsgs - s->ndeleted, s->total_size - s->deleted_size);
}

static void
cmd_list(struct pop3_session *s, const char **w, const size_t *wl, size_t nw)
{
	struct pop3_msg *m;
	uint32_t n;

	if (nw > 0) {
		if ((m = get_msg(s, w[0], wl[0], &n)) != NULL)
			reply(s, "+OK %" PRIu32 " %" PRIu64, n, m->size);
		return;
	}
	reply(s, "+OK %zu messages:", s->nmsgs - s->ndeleted);
	for (size_t i = 0; i < s->nmsgs && !s->gone; i++)
		if (!s->msgs[i].deleted)
			pt_conn_printf(s->conn, "%zu %" PRIu64 "\r\n", i + 1, s->msgs[i].size);
	reply(s, ".");
}

static void
cmd_uidl(struct pop3_session *s, const char **w, const size_t *wl, size_t nw)
{
	char uidl[POP3_UIDL_MAX];
	struct pop3_msg *m;
	uint32_t n;

	if (nw > 0) {
		if ((m = get_msg(s, w[0], wl[0], &n)) == NULL)
			return;
		if (pop3_uidl_format(s->set->uidl_format, m->uid, s->uidvalidity, uidl, sizeof(uidl)) == (size_t)-1)
			snprintf(uidl, sizeof(uidl), "%08x%08x", m->uid, s->uidvalidity);
		reply(s, "+OK %" PRIu32 " %s", n, uidl);
		return;
	}
	reply(s, "+OK");
	for (size_t i = 0; i < s->nmsgs && !s->gone; i++) {
		if (s->msgs[i].deleted)
			continue;
		if (pop3_uidl_format(s->set->uidl_format, s->msgs[i].uid, s->uidvalidity, uidl, sizeof(uidl)) ==
		    (size_t)-1)
			snprintf(uidl, sizeof(uidl), "%08x%08x", s->msgs[i].uid, s->uidvalidity);
		pt_conn_printf(s->conn, "%zu %s\r\n", i + 1, uidl);
	}
	reply(s, ".");
}

/* Open the message for sending; replies on failure. */
static int
open_text(struct pop3_session *s, struct pop3_msg *m)
{
	struct pt_status st;
	int changed;

	memset(&st, 0, sizeof(st));
	if (s->mbx->read(s->mb, m->uid, &s->text, &st) != 0) {
		/* The store may only need to catch up with the file. */
		memset(&st, 0, sizeof(st));
		if (s->mbx->sync(s->mb, &changed, &st) != 0 ||
		    s->mbx->read(s->mb, m->uid, &s->text, &st) != 0) {
			pt_log_as(s->svc, PT_LOG_ERROR, "RETR of UID %" PRIu32 " failed: %s", m->uid, st.text);
			if (s->mbx->find(s->mb, m->uid) == (size_t)-1)
				reply(s, "-ERR Message was expunged by another session.");
			else
				reply(s, "-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.");
			return -1;
		}
	}
	s->sending = 1;
	s->pos = 0;
	s->bol = 1;
	return 0;
}

static void
cmd_retr(struct pop3_session *s, const char **w, const size_t *wl, size_t nw)
{
	struct pop3_msg *m;
	uint32_t n;
	char line[64];

	if (nw == 0) {
		s->bad++;
		reply(s, "-ERR Invalid message number: ");
		return;
	}
	if ((m = get_msg(s, w[0], wl[0], &n)) == NULL || open_text(s, m) != 0)
		return;
	s->end = s->text.len;
	s->top = 0;
	s->retr_count++;
	/* The size announced is what LIST said, and what the store sends. */
	snprintf(line, sizeof(line), "+OK %zu octets", s->text.len);
	s->retr_bytes += strlen(line) + 2;
	reply(s, "%s", line);
	m->retrieved = 1;
	send_more(s);
}

static void
cmd_top(struct pop3_session *s, const char **w, const size_t *wl, size_t nw)
{
	struct pop3_msg *m;
	uint32_t n, lines;

	if (nw == 0) {
		s->bad++;
		reply(s, "-ERR Invalid message number: ");
		return;
	}
	if ((m = get_msg(s, w[0], wl[0], &n)) == NULL)
		return;
	if (nw < 2 || pop3_parse_number(w[1], wl[1], &lines) != 0) {
		s->bad++;
		reply(s, "-ERR Invalid size: %.*s", nw < 2 ? 0 : (int)(wl[1] > 40 ? 40 : wl[1]),
		      nw < 2 ? "" : w[1]);
		return;
	}
	if (open_text(s, m) != 0)
		return;
	s->end = pop3_top_end(s->text.data, s->text.len, s->text.hdr_len, lines);
	s->top = 1;
	s->top_count++;
	s->top_bytes += 5;
	reply(s, "+OK");
	send_more(s);
}

static void
cmd_dele(struct pop3_session *s, const char **w, const size_t *wl, size_t nw)
{
	struct pop3_msg *m;
	uint32_t n;

	if (nw == 0) {
		s->bad++;
		reply(s, "-ERR Invalid message number: ");
		return;
	}
	if ((m = get_msg(s, w[0], wl[0], &n)) == NULL)
		return;
	m->deleted = 1;
	s->ndeleted++;
	s->deleted_size += m->size;
	reply(s, "+OK Marked to be deleted.");
}

static void
cmd_rset(struct pop3_session *s)
{
	for (size_t i = 0; i < s->nmsgs; i++) {
		s->msgs[i].deleted = 0;
		s->msgs[i].retrieved = 0;
	}
	s->ndeleted = 0;
	s->deleted_size = 0;
	reply(s, "+OK");
}

/* The UPDATE state: \Seen for what was retrieved (unless
 * pop3_no_flag_updates), then the expunge of what was deleted. Any
 * failure: nothing is expunged, and the client hears it. */
static int
update_mailbox(struct pop3_session *s, struct pt_status *st)
{
	struct pt_flag_update *fu = NULL;
	struct pt_flag_change *fc = NULL;
	uint32_t *uids = NULL;
	size_t nfu = 0, nuids = 0;
	int changed, r = -1;

	if (s->ndeleted == 0 && (s->set->no_flag_updates || s->retr_count == 0))
		return 0;
	if (s->mbx->sync(s->mb, &changed, st) != 0)
		return -1;
	fu = calloc(s->nmsgs ? s->nmsgs : 1, sizeof(*fu));
	fc = calloc(s->nmsgs ? s->nmsgs : 1, sizeof(*fc));
	uids = calloc(s->nmsgs ? s->nmsgs : 1, sizeof(*uids));
	if (fu == NULL || fc == NULL || uids == NULL) {
		pt_status_set(st, 451, "", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < s->nmsgs; i++) {
		const struct pop3_msg *m = &s->msgs[i];
		if (m->deleted) {
			uids[nuids++] = m->uid;
			continue;
		}
		if (!m->retrieved || s->set->no_flag_updates)
			continue;
		size_t idx = s->mbx->find(s->mb, m->uid);
		if (idx == (size_t)-1)
			continue;
		const struct pt_msg_info *inf = s->mbx->info(s->mb, idx);
		if (inf->flags & PT_F_SEEN)
			continue;
		fu[nfu].uid = m->uid;
		fu[nfu].flags = (inf->flags & PT_F_SYSTEM) | PT_F_SEEN;
		fu[nfu].keywords = inf->keywords;
		fc[nfu].uid = m->uid;
		fc[nfu].add = PT_F_SEEN;
		nfu++;
	}
	/* As a change, not a whole new state: an IMAP session of another
	 * process may have set flags since our sync. */
	if (nfu > 0 && (s->mbx->change_flags ? s->mbx->change_flags(s->mb, fc, nfu, st) :
	                                       s->mbx->set_flags(s->mb, fu, nfu, st)) != 0)
		goto out;
	if (nuids > 0 && s->mbx->expunge(s->mb, uids, nuids, st) != 0)
		goto out;
	s->del_count = (unsigned)nuids;
	r = 0;
out:
	free(fu);
	free(fc);
	free(uids);
	return r;
}

static void
cmd_quit(struct pop3_session *s)
{
	struct pt_status st;

	memset(&st, 0, sizeof(st));
	if (update_mailbox(s, &st) != 0) {
		pt_log_as(s->svc, PT_LOG_ERROR, "QUIT: mailbox update failed: %s", st.text);
		log_disconnect(s, "Storage error during logout.");
		close_with(s, st.dsn[0] && strcmp(st.dsn, "INUSE") == 0 ?
		           "-ERR [IN-USE] Mailbox is locked, nothing was deleted." :
		           "-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.");
		return;
	}
	log_disconnect(s, "Logged out");
	close_with(s, "+OK Logging out.");
}

static void
dispatch(struct pop3_session *s, const char *line, size_t len)
{
	struct pop3_cmd c;
	const char *w[3];
	size_t wl[3], nw;

	pop3_parse_command(line, len, &c);
	nw = pop3_split_args(c.arg, c.arglen, w, wl, 2);
	if (nw > 2)
		nw = 2;
	switch (c.verb) {
	case POP3_CAPA:
		reply(s, "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n.");
		break;
	case POP3_STAT:
		cmd_stat(s);
		break;
	case POP3_LIST:
		cmd_list(s, w, wl, nw);
		break;
	case POP3_UIDL:
		cmd_uidl(s, w, wl, nw);
		break;
	case POP3_RETR:
		cmd_retr(s, w, wl, nw);
		break;
	case POP3_TOP:
		cmd_top(s, w, wl, nw);
		break;
	case POP3_DELE:
		cmd_dele(s, w, wl, nw);
		break;
	case POP3_RSET:
		cmd_rset(s);
		break;
	case POP3_NOOP:
		reply(s, "+OK");
		break;
	case POP3_QUIT:
		cmd_quit(s);
		break;
	default:
		s->bad++;
		reply(s, "-ERR Unknown command: %s", c.name);
		break;
	}
	if (s->bad >= POP3_SESSION_BAD_MAX && !s->closing) {
		log_disconnect(s, "Too many bad commands.");
		close_with(s, "-ERR Too many bad commands.");
	}
}

static void
session_input(struct pop3_session *s)
{
	s->depth++;
	while (!s->gone && !s->closing && !s->sending) {
		const char *line;
		size_t len;
		int eol, rc = pt_conn_getline(s->conn, POP3_LINE_MAX, &line, &len, &eol);

		if (rc == 0)
			break;
		if (rc < 0) {
			log_disconnect(s, "Input line too long.");
			close_with(s, "-ERR Input line too long.");
			break;
		}
		dispatch(s, line, len);
	}
	s->depth--;
	session_release(s);
}

static void
on_read(struct pt_conn *c)
{
	session_input(pt_conn_proto(c));
}

static void
on_close(struct pt_conn *c, const char *reason)
{
	struct pop3_session *s = pt_conn_proto(c);

	/* RFC 1939 section 6: no QUIT, no UPDATE state: nothing deleted. */
	if (!s->closing)
		log_disconnect(s, reason && strcmp(reason, "timeout") == 0 ? "Inactivity." :
		               "Connection closed.");
	s->gone = 1;
	s->conn = NULL;
	stop_sending(s);
	session_release(s);
}

static const struct pt_conn_handlers session_handlers = { on_read, on_close, on_drain };

/* The fixed message list of this session: numbered 1..n as of login. */
static int
take_snapshot(struct pop3_session *s)
{
	size_t n = s->mbx->count(s->mb);

	s->msgs = calloc(n ? n : 1, sizeof(*s->msgs));
	if (s->msgs == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const struct pt_msg_info *inf = s->mbx->info(s->mb, i);
		s->msgs[i].uid = inf->uid;
		s->msgs[i].size = inf->size;
		s->total_size += inf->size;
	}
	s->nmsgs = n;
	s->uidvalidity = s->mbx->uidvalidity(s->mb);
	return 0;
}

static int
open_maildrop(struct pop3_session *s, struct pt_status *st)
{
	int changed;

	s->ms = s->mbx->store_open(&s->user, st);
	if (s->ms == NULL)
		return -1;
	s->mb = s->mbx->open(s->ms, "INBOX", 0, st);
	if (s->mb == NULL)
		return -1;
	if (s->mbx->sync(s->mb, &changed, st) != 0)
		return -1;
	if (take_snapshot(s) != 0) {
		pt_status_set(st, 451, "", "out of memory");
		return -1;
	}
	return 0;
}

void
pop3_session_start(struct pt_conn *c, const struct pt_session_info *info, const struct pt_user *user)
{
	struct pop3_session *s = calloc(1, sizeof(*s));
	struct pt_status st;

	if (s == NULL || (s->set = pop3_settings_get()) == NULL) {
		free(s);
		pt_conn_printf(c, "-ERR [SYS/TEMP] Out of memory.\r\n");
		pt_conn_close_after_write(c);
		return;
	}
	s->conn = c;
	s->user = *user;
	snprintf(s->svc, sizeof(s->svc), "pop3(%s)", user->name);
	for (char *p = s->svc; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	snprintf(s->session_id, sizeof(s->session_id), "%s", info && info->session_id ? info->session_id : "");
	pt_conn_set_handlers(c, &session_handlers, s);
	pt_conn_set_timeout(c, s->set->autologout_ms);
	s->mbx = pt_service_get(PT_SVC_MAILBOX);
	memset(&st, 0, sizeof(st));
	s->depth++;
	if (s->mbx == NULL) {
		pt_status_set(&st, 451, "", "no mailbox service (module mbox not loaded)");
		goto fail;
	}
	if (open_maildrop(s, &st) != 0)
		goto fail;
	reply(s, "+OK Logged in.");
	s->depth--;
	/* Commands the client pipelined behind PASS came along. */
	session_input(s);
	return;
fail:
	pt_log_as(s->svc, PT_LOG_ERROR, "Couldn't open INBOX: %s, session=<%s>", st.text, s->session_id);
	s->closing = 1;
	if (strcmp(st.dsn, "INUSE") == 0)
		reply(s, "-ERR [IN-USE] Couldn't open INBOX: %s", st.text);
	else
		reply(s, "-ERR [SYS/TEMP] Couldn't open INBOX: Internal error occurred. "
		      "Refer to server log for more information.");
	if (!s->gone)
		pt_conn_close_after_write(c);
	s->depth--;
	session_release(s);
}
