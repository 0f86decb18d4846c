/* IMAP after login, in the user's mail process: the answer to the login,
 * the command loop (reader, dispatch, UID prefix, selected-state checks),
 * the simple commands, autologout and the Disconnected log line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "postern/conn.h"
#include "postern/event.h"
#include "postern/log.h"
#include "postern/session.h"
#include "imap.h"
#include "imap_msg.h"
#include "imap_parse.h"

#define SESSION_MAX_BAD 20

struct imap_conn {
	struct imap_session s;        /* first: handlers get it back by cast */
	struct imap_reader rd;
	struct pt_loop *loop;
	struct pt_timer *autologout;
	uint64_t last_input;
	const char *end_reason;
	int closing;
};

enum { NEED_AUTH = 0, NEED_SELECTED = 1 };

struct cmd_entry {
	const char *name;
	imap_cmd_fn *fn;
	int need;
	int uid_ok;                   /* may follow UID */
	int no_expunge;               /* RFC 3501 §7.4.1: no EXPUNGE responses */
};

static imap_cmd_fn cmd_capability, cmd_noop, cmd_check, cmd_logout, cmd_id, cmd_enable, cmd_close, cmd_unselect,
	cmd_expunge;

static const struct cmd_entry commands[] = {
	{ "CAPABILITY", cmd_capability, NEED_AUTH, 0, 0 },
	{ "NOOP", cmd_noop, NEED_AUTH, 0, 0 },
	{ "LOGOUT", cmd_logout, NEED_AUTH, 0, 0 },
	{ "ID", cmd_id, NEED_AUTH, 0, 0 },
	{ "ENABLE", cmd_enable, NEED_AUTH, 0, 0 },
	{ "NAMESPACE", imap_cmd_namespace, NEED_AUTH, 0, 0 },
	{ "SELECT", imap_cmd_select, NEED_AUTH, 0, 0 },
	{ "EXAMINE", imap_cmd_examine, NEED_AUTH, 0, 0 },
	{ "CREATE", imap_cmd_create, NEED_AUTH, 0, 0 },
	{ "DELETE", imap_cmd_delete, NEED_AUTH, 0, 0 },
	{ "RENAME", imap_cmd_rename, NEED_AUTH, 0, 0 },
	{ "SUBSCRIBE", imap_cmd_subscribe, NEED_AUTH, 0, 0 },
	{ "UNSUBSCRIBE", imap_cmd_unsubscribe, NEED_AUTH, 0, 0 },
	{ "LIST", imap_cmd_list, NEED_AUTH, 0, 0 },
	{ "LSUB", imap_cmd_lsub, NEED_AUTH, 0, 0 },
	{ "STATUS", imap_cmd_status, NEED_AUTH, 0, 0 },
	{ "APPEND", imap_cmd_append, NEED_AUTH, 0, 0 },
	{ "IDLE", imap_cmd_idle, NEED_AUTH, 0, 0 },
	{ "CHECK", cmd_check, NEED_SELECTED, 0, 0 },
	{ "CLOSE", cmd_close, NEED_SELECTED, 0, 0 },
	{ "UNSELECT", cmd_unselect, NEED_SELECTED, 0, 0 },
	{ "EXPUNGE", cmd_expunge, NEED_SELECTED, 1, 0 },
	{ "STORE", imap_cmd_store, NEED_SELECTED, 1, 1 },
	{ "COPY", imap_cmd_copy, NEED_SELECTED, 1, 0 },
	{ "MOVE", imap_cmd_move, NEED_SELECTED, 1, 0 },
	{ "FETCH", imap_cmd_fetch, NEED_SELECTED, 1, 1 },
	{ "SEARCH", imap_cmd_search, NEED_SELECTED, 1, 1 },
	{ "SORT", imap_cmd_sort, NEED_SELECTED, 1, 1 },
	{ "THREAD", imap_cmd_thread, NEED_SELECTED, 1, 1 },
	{ "COMPRESS", imap_cmd_compress, NEED_AUTH, 0, 0 },
	{ "GETQUOTA", imap_cmd_getquota, NEED_AUTH, 0, 0 }, { "GETQUOTAROOT", imap_cmd_getquotaroot, NEED_AUTH, 0, 0 }, { "SETQUOTA", imap_cmd_setquota, NEED_AUTH, 0, 0 },
};

static void session_input(struct imap_conn *ic);

int imap_names_utf8;


/* ---- simple commands ---- */

static void
cmd_capability(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	(void)a, (void)n, (void)uid;
	imap_untagged(s, "CAPABILITY " IMAP_CAPS_POSTLOGIN);
	imap_sync(s, 1);
	imap_completed(s, tag, NULL, "Capability");
}

static void
cmd_noop(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	(void)a, (void)n, (void)uid;
	imap_sync(s, 1);
	imap_completed(s, tag, NULL, "NOOP");
}

/* CHECK: every change is durable when made (fsync'd mbox), so only sync. */
static void
cmd_check(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	(void)a, (void)n, (void)uid;
	imap_sync(s, 1);
	imap_completed(s, tag, NULL, "Check");
}

static void
cmd_logout(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	struct imap_conn *ic = (struct imap_conn *)s;

	(void)a, (void)n, (void)uid;
	imap_untagged(s, "BYE Logging out");
	imap_completed(s, tag, NULL, "Logout");
	ic->end_reason = "Logged out";
	s->state = IMAP_LOGOUT;
	ic->closing = 1;
	if (s->conn)
		pt_conn_close_after_write(s->conn);
}

static void
cmd_id(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	(void)uid;
	if (n != 1 || (a[0].type != IMAP_ARG_NIL && a[0].type != IMAP_ARG_LIST)) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command ID: Invalid parameters.");
		return;
	}
	imap_untagged(s, "ID (\"name\" \"Postern\")");
	imap_sync(s, 1);
	imap_completed(s, tag, NULL, "ID");
}

static void
cmd_enable(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	(void)uid;
	if (n == 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command ENABLE: Missing arguments.");
		return;
	}
	/* IMAP4rev2 (RFC 9051 §6.3.1), CONDSTORE and QRESYNC
	 * (imap_condstore.c); unknown names are ignored (RFC 5161). ENABLED
	 * lists only what this command newly enabled. */
	struct pt_strbuf en = { 0 };
	for (size_t i = 0; i < n; i++) {
		if (a[i].type != IMAP_ARG_ATOM)
			continue;
		if (strcasecmp(a[i].s, "IMAP4rev2") == 0) {
			if (!s->rev2)
				pt_strbuf_puts(&en, " IMAP4rev2");
			s->rev2 = 1;
		} else {
			imap_condstore_enable(s, a[i].s, &en);
		}
	}
	imap_untagged(s, "ENABLED%s", en.p && !en.oom ? en.p : "");
	pt_strbuf_free(&en);
	imap_completed(s, tag, NULL, "Enabled");
}

int
imap_expunge_view(struct imap_session *s, const size_t *idx, size_t n, int silent, struct pt_status *st)
{
	uint32_t *uids;

	if (n == 0)
		return 0;
	uids = calloc(n, sizeof(*uids));
	if (uids == NULL) {
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		uids[i] = s->view[idx[i]].uid;
	int rc = s->mbx->expunge(s->mb, uids, n, st);
	if (rc == 0) {
		/* Highest first so that each sequence number is still right. */
		for (size_t i = n; i-- > 0;) {
			if (!silent && !s->qresync)
				imap_untagged(s, "%zu EXPUNGE", idx[i] + 1);
			imap_view_remove(s, idx[i]);
		}
		if (!silent && s->qresync)
			imap_vanished_send(s, uids, n, 0);   /* RFC 7162 §3.2.10 */
		s->expunged += (unsigned)n;
	}
	free(uids);
	return rc;
}

void
imap_store_error(struct imap_session *s, const char *tag, const struct pt_status *st)
{
	const char *code = st->dsn[0] && strchr(st->dsn, '.') == NULL ? st->dsn :
	                   st->code >= 500 ? "" : "UNAVAILABLE";
	const char *text = st->text[0] ? st->text : "Internal error occurred.";

	if (*code)
		imap_tagged(s, tag, "NO", "[%s] %s", code, text);
	else
		imap_tagged(s, tag, "NO", "%s", text);
}

/* The \Deleted messages among idx (or all of the view when idx is NULL). */
static int
deleted_in(struct imap_session *s, const size_t *idx, size_t n, size_t **out, size_t *nout)
{
	size_t total = idx ? n : s->nview, k = 0;
	size_t *v = total ? malloc(total * sizeof(*v)) : NULL;

	if (total && v == NULL)
		return -1;
	for (size_t i = 0; i < total; i++) {
		size_t j = idx ? idx[i] : i;
		size_t si = imap_view_store_index(s, j);
		if (si == (size_t)-1)
			continue;
		if (s->mbx->info(s->mb, si)->flags & PT_F_DELETED)
			v[k++] = j;
	}
	*out = v;
	*nout = k;
	return 0;
}

static void
cmd_expunge(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	size_t *set = NULL, nset = 0, *del = NULL, ndel = 0;
	struct pt_status st = { 0 };

	if (uid && (n != 1 || a[0].type != IMAP_ARG_ATOM)) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command UID EXPUNGE: Invalid arguments.");
		return;
	}
	if (!uid && n != 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command EXPUNGE: Unexpected arguments.");
		return;
	}
	if (s->readonly) {
		imap_tagged(s, tag, "NO", "Mailbox is read-only.");
		return;
	}
	imap_sync(s, 1);
	if (uid && imap_resolve_set(s, a[0].s, a[0].len, 1, &set, &nset) != 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command UID EXPUNGE: Invalid uidset");
		return;
	}
	if (deleted_in(s, uid ? set : NULL, nset, &del, &ndel) != 0) {
		free(set);
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return;
	}
	free(set);
	if (imap_expunge_view(s, del, ndel, 0, &st) != 0) {
		free(del);
		imap_store_error(s, tag, &st);
		return;
	}
	free(del);
	imap_sync(s, 1);
	char code[48];
	imap_completed(s, tag, imap_modseq_code(s, code, sizeof(code)), "Expunge");
}

static void
cmd_close(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	size_t *del = NULL, ndel = 0;
	struct pt_status st = { 0 };

	(void)a, (void)uid;
	if (n != 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command CLOSE: Unexpected arguments.");
		return;
	}
	if (!s->readonly) {
		/* Expunged silently (RFC 3501 §6.4.2); a failure still closes. */
		int changed = 0;
		s->mbx->sync(s->mb, &changed, &st);
		if (deleted_in(s, NULL, 0, &del, &ndel) == 0 && ndel > 0 &&
		    imap_expunge_view(s, del, ndel, 1, &st) != 0)
			pt_warn("imap(%s): CLOSE could not expunge %s: %s", s->user.name, s->selected, st.text);
		free(del);
	}
	imap_view_clear(s);
	imap_completed(s, tag, NULL, "Close");
}

static void
cmd_unselect(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	(void)a, (void)uid;
	if (n != 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command UNSELECT: Unexpected arguments.");
		return;
	}
	imap_view_clear(s);
	imap_completed(s, tag, NULL, "Unselect");
}

/* ---- dispatch ---- */

static const struct cmd_entry *
find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcasecmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void
bad(struct imap_conn *ic, const char *tag, const char *fmt, const char *a, const char *b)
{
	struct imap_session *s = &ic->s;
	char text[300];

	snprintf(text, sizeof(text), fmt, a, b);
	imap_tagged(s, tag ? tag : "*", "BAD", "%s", text);
	if (++s->bad_commands >= SESSION_MAX_BAD) {
		imap_untagged(s, "BYE Too many invalid IMAP commands.");
		ic->end_reason = "Too many invalid IMAP commands";
		ic->closing = 1;
		if (s->conn)
			pt_conn_close_after_write(s->conn);
	}
}

static void
run_command(struct imap_conn *ic, struct imap_command *cmd)
{
	struct imap_session *s = &ic->s;
	const struct imap_arg *args = cmd->args;
	size_t nargs = cmd->nargs;
	const char *name = cmd->name;
	int uid = 0;

	s->cmd_start_ms = pt_mono_ms();
	s->cmd_uid = 0;
	if (strcasecmp(name, "UID") == 0) {
		if (nargs < 1 || args[0].type != IMAP_ARG_ATOM) {
			bad(ic, cmd->tag, "Error in IMAP command %s: %s", "UID", "Missing command.");
			return;
		}
		name = args[0].s;
		args++;
		nargs--;
		uid = 1;
	}
	const struct cmd_entry *e = find_command(name);
	imap_cmd_fn *fn = e ? e->fn : NULL;
	if (fn == NULL || (uid && !e->uid_ok)) {
		bad(ic, cmd->tag, "Error in IMAP command %s: %s", uid ? "UID" : name, "Unknown command.");
		return;
	}
	if (e->need == NEED_SELECTED && s->state != IMAP_SELECTED) {
		bad(ic, cmd->tag, "%s%s", "No mailbox selected.", "");
		return;
	}
	s->cmd_uid = uid;
	imap_names_utf8 = s->rev2;
	fn(s, cmd->tag, args, nargs, uid);
	imap_names_utf8 = 0;
}

static void
finish(struct imap_conn *ic)
{
	struct imap_session *s = &ic->s;

	pt_log_as("imap", PT_LOG_INFO,
	          "imap(%s)<%ld><%s>: Disconnected: %s in=%llu out=%llu deleted=%u expunged=%u trashed=0 "
	          "hdr_count=%u hdr_bytes=%llu body_count=%u body_bytes=%llu",
	          s->user.name, (long)getpid(), s->session_id, ic->end_reason ? ic->end_reason : "Connection closed",
	          s->bytes_in, s->bytes_out, s->deleted, s->expunged, s->fetch_hdr_count, s->fetch_hdr_bytes,
	          s->fetch_body_count, s->fetch_body_bytes);
	if (s->cont_free)
		s->cont_free(s);
	imap_idle_stop(s);
	if (ic->autologout)
		pt_timer_cancel(ic->loop, ic->autologout);
	imap_view_clear(s);
	if (s->ms)
		s->mbx->store_close(s->ms);
	free(s->idle_tag);
	imap_reader_free(&ic->rd);
	free(ic);
}

static void
session_input(struct imap_conn *ic)
{
	struct imap_session *s = &ic->s;
	struct pt_conn *c = s->conn;

	while (!ic->closing && s->cont == NULL && s->state != IMAP_LOGOUT) {
		if (s->idling) {
			const char *line;
			size_t len;
			int eol;
			int r = pt_conn_getline(c, 1024, &line, &len, &eol);
			if (r == 0)
				return;
			if (r < 0) {
				imap_idle_line(s, "", 0);
				continue;
			}
			s->bytes_in += len + (size_t)eol;
			imap_idle_line(s, line, len);
			continue;
		}
		size_t len, used = 0;
		const char *data = pt_conn_rbuf(c, &len);
		if (len == 0)
			return;
		enum imap_read ev = imap_reader_feed(&ic->rd, data, len, &used);
		pt_conn_consume(c, used);
		s->bytes_in += used;
		char tag[64];
		switch (ev) {
		case IMAP_READ_MORE:
			return;
		case IMAP_READ_CONTINUE:
			imap_write(s, "+ OK\r\n", 6);
			break;
		case IMAP_READ_TOO_LONG:
			imap_untagged(s, "BAD Error in IMAP command received by server: Too long argument.");
			imap_untagged(s, "BYE Too long argument.");
			ic->end_reason = "Too long argument";
			ic->closing = 1;
			pt_conn_close_after_write(c);
			return;
		case IMAP_READ_LITERAL_TOO_BIG:
			imap_reader_tag(&ic->rd, tag, sizeof(tag));
			imap_reader_reset(&ic->rd);
			imap_tagged(s, tag, "NO", "[TOOBIG] Literal too large.");
			break;
		case IMAP_READ_LITERAL_PLUS_TOO_BIG:
			imap_reader_tag(&ic->rd, tag, sizeof(tag));
			imap_tagged(s, tag, "BAD", "[TOOBIG] Literal too large.");
			imap_untagged(s, "BYE Too long argument.");
			ic->end_reason = "Too long argument";
			ic->closing = 1;
			pt_conn_close_after_write(c);
			return;
		case IMAP_READ_COMMAND: {
			struct imap_command cmd;
			if (ic->rd.buf.len == 0) {
				imap_reader_reset(&ic->rd);
				break;
			}
			if (imap_command_parse(&ic->rd, &cmd) != 0) {
				if (cmd.tag && cmd.name)
					bad(ic, cmd.tag, "Error in IMAP command %s: %s", cmd.name, cmd.error);
				else
					bad(ic, cmd.tag, "%s%s", "Error in IMAP command received by server.", "");
			} else {
				run_command(ic, &cmd);
			}
			imap_command_free(&cmd);
			break;
		}
		}
	}
}

static void
on_read(struct pt_conn *c)
{
	struct imap_conn *ic = pt_conn_proto(c);

	ic->last_input = pt_loop_now(ic->loop);
	session_input(ic);
}

static void
on_drain(struct pt_conn *c)
{
	struct imap_conn *ic = pt_conn_proto(c);

	if (ic->s.cont == NULL)
		return;
	ic->s.cont(&ic->s);
	if (ic->s.cont == NULL)
		session_input(ic);
}

static void
on_close(struct pt_conn *c, const char *reason)
{
	struct imap_conn *ic = pt_conn_proto(c);

	(void)reason;
	finish(ic);
}

static const struct pt_conn_handlers session_handlers = { .on_read = on_read, .on_close = on_close,
	                                                     .on_drain = on_drain };

static void
autologout_check(struct pt_loop *loop, void *arg)
{
	struct imap_conn *ic = arg;
	uint64_t now = pt_loop_now(loop), idle = now - ic->last_input;

	ic->autologout = NULL;
	if (idle >= imap_set.autologout_ms && ic->s.cont == NULL) {
		imap_untagged(&ic->s, "BYE Disconnected for inactivity.");
		ic->end_reason = "Disconnected for inactivity";
		ic->closing = 1;
		pt_conn_close_after_write(ic->s.conn);
		return;
	}
	uint64_t left = idle >= imap_set.autologout_ms ? 1000 : imap_set.autologout_ms - idle;
	ic->autologout = pt_timer_add(loop, left, autologout_check, ic);
}

static void
session_start(struct pt_conn *c, const struct pt_session_info *info, const struct pt_user *user)
{
	struct imap_conn *ic = calloc(1, sizeof(*ic));
	char tag[PT_SESSION_HANDOFF_MAX + 1] = "*";
	int saw_capability = 0;
	struct pt_status st = { 0 };

	if (info->handoff && info->handoff_len > 1) {
		const char *h = info->handoff;
		size_t tl = strnlen(h, info->handoff_len);
		if (tl > 0 && tl < info->handoff_len) {
			memcpy(tag, h, tl);
			tag[tl] = 0;
			saw_capability = tl + 1 < info->handoff_len && h[tl + 1] == '1';
		}
	}
	if (ic == NULL) {
		pt_conn_printf(c, "%s NO [UNAVAILABLE] Temporary authentication failure.\r\n", tag);
		pt_conn_close_after_write(c);
		return;
	}
	struct imap_session *s = &ic->s;
	s->conn = c;
	s->state = IMAP_AUTH;
	s->user = *user;
	snprintf(s->session_id, sizeof(s->session_id), "%s", info->session_id ? info->session_id : "");
	ic->loop = pt_conn_loop(c);
	ic->last_input = pt_loop_now(ic->loop);
	imap_reader_init(&ic->rd, imap_set.max_line, imap_set.max_literal);
	pt_conn_set_handlers(c, &session_handlers, ic);
	pt_conn_set_timeout(c, 0); /* autologout_check says BYE first */
	s->mbx = pt_service_get(PT_SVC_MAILBOX);
	if (s->mbx)
		s->ms = s->mbx->store_open(user, &st);
	if (s->mbx == NULL || s->ms == NULL) {
		pt_error("imap(%s): cannot open the mail store: %s", user->name,
		         s->mbx ? st.text : "no mailbox service");
		imap_tagged(s, tag, "NO", "[UNAVAILABLE] Temporary authentication failure.");
		ic->end_reason = "Mail store unavailable";
		ic->closing = 1;
		pt_conn_close_after_write(c);
		return;
	}
	/* Dovecot's auto = create / subscribe: configured special-use
	 * folders exist before the client's first LIST. */
	imap_special_autocreate(s);
	s->cmd_start_ms = pt_mono_ms();
	if (saw_capability) {
		imap_untagged(s, "CAPABILITY " IMAP_CAPS_POSTLOGIN);
		imap_tagged(s, tag, "OK", "Logged in");
	} else {
		imap_tagged(s, tag, "OK", "[CAPABILITY " IMAP_CAPS_POSTLOGIN "] Logged in");
	}
	ic->autologout = pt_timer_add(ic->loop, imap_set.autologout_ms, autologout_check, ic);
	/* Commands pipelined after the login were relayed first. */
	session_input(ic);
}

const struct pt_session_ops imap_session_ops = { .start = session_start };
