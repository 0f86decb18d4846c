/* Local SMTP submission: `sendmail -bs`. The CLI serves one SMTP dialogue
 * on the invoking user's stdin/stdout with the protocol module that
 * registers PT_SVC_LOCAL_SMTP (the smtp module: the same parser and DATA
 * decoder as the network listeners), in Postfix's stand-alone mode
 * (smtpd -S): the client is the local user, so no restriction lists, no
 * relay or recipient checks, no AUTH, no STARTTLS. Accepted messages go to
 * the sink the CLI passes (the maildrop), not to the queue. */
#ifndef POSTERN_SUBMIT_H
#define POSTERN_SUBMIT_H

#include <stddef.h>

#include "postern/services.h"

struct pt_conn;
struct pt_loop;

#define PT_SVC_LOCAL_SMTP "local-smtp"

/* Where a locally submitted message goes. submit has pt_queue_submit's
 * contract: 0 and done runs later on the loop (never before submit
 * returns), or -1 and done never runs. The envelope and data are copied
 * before return. */
struct pt_local_sink {
	int (*submit)(void *sink, struct pt_loop *loop, const char *queue_id,
	              const struct pt_envelope *env, const char *data, size_t len,
	              void (*done)(void *arg, const struct pt_status *st, const char *queue_id),
	              void *arg);
	void *sink;
};

struct pt_local_smtp_ops {
	/* Serve a dialogue on c (a plaintext local stream; the conn's handlers
	 * become the session's) until c closes. sink must outlive the
	 * conn. 0, or -1 (out of memory: c is closed). */
	int (*start)(struct pt_conn *c, const struct pt_local_sink *sink);
};

#endif
