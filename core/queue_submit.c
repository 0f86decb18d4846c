/* pt_queue_submit (services.h): a message an SMTP client has finished
 * sending becomes a queue file image and an attempt the client waits on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "postern/header.h"
#include "postern/log.h"
#include "queue_int.h"

static char *
dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* "ID: message-id=<...>" as Postfix's cleanup logs it: admins follow a
 * message from the sender's Message-Id to the queue id. */
static void
log_message_id(const struct pt_qfile *q)
{
	struct pt_hdr_iter it;
	struct pt_hdr_field f;
	pt_hdr_iter_init(&it, q->data, q->len, 0);
	while (pt_hdr_next(&it, &f)) {
		if (!pt_hdr_name_is(&f, "Message-ID"))
			continue;
		struct pt_strbuf v = { 0 };
		pt_hdr_unfold(f.value, f.value_len, &v);
		pt_log_as("cleanup", PT_LOG_INFO, "%s: message-id=%.*s", q->id, (int)(v.len > 500 ? 500 : v.len),
		          v.p ? v.p : "");
		pt_strbuf_free(&v);
		return;
	}
}

int
pt_queue_submit(struct pt_loop *loop, const char *queue_id, const struct pt_envelope *env,
                const char *data, size_t len,
                void (*done)(void *arg, const struct pt_status *st, const char *queue_id), void *arg)
{
	(void)loop;
	struct pt_qfile q;
	memset(&q, 0, sizeof q);
	q.submit_uid = (uid_t)-1;
	/* A draining generation (after a reload) still takes the messages its
	 * open sessions finish; only its queue runs have stopped. */
	if (!pt_qs.loop || !env || env->nrcpt == 0 || !queue_id || !pt_qid_valid(queue_id))
		return -1;
	snprintf(q.id, sizeof q.id, "%s", queue_id);
	q.arrival = time(NULL);
	q.sender = strdup(env->sender ? env->sender : "");
	q.client_name = dup_or_null(env->client_name);
	q.client_address = dup_or_null(env->client_address);
	q.helo = dup_or_null(env->helo);
	q.protocol = dup_or_null(env->protocol);
	q.sasl_username = dup_or_null(env->sasl_username);
	q.envid = dup_or_null(env->envid);
	q.ret = dup_or_null(env->ret);
	q.data = malloc(len + 1);
	q.len = len;
	if (!q.sender || !q.data)
		goto oom;
	memcpy(q.data, data, len);
	q.data[len] = 0;
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct pt_envelope_rcpt *r = &env->rcpt[i];
		if (!r->address || pt_qfile_add_rcpt(&q, r->address, r->orig ? r->orig : r->address, r->notify) != 0)
			goto oom;
	}
	log_message_id(&q);
	pt_log_as("qmgr", PT_LOG_INFO, "%s: from=<%s>, size=%zu, nrcpt=%zu (queue active)", q.id, q.sender, q.len,
	          q.nrcpt);
	/* On -1 the manager freed q and done never runs. */
	return pt_qmgr_submit(&q, done, arg);
oom:
	pt_qfile_free(&q);
	return -1;
}
