/* A job's recipients and their outcomes: set, fail the rest, and the
 * finish that logs each one (as Postfix's smtp(8)) and hands the job
 * back. Used by sessions and destinations alike. */
#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>

#include "relay_int.h"

void
relay_rcpt_set(struct relay_rcpt *r, int code, const char *dsn, const char *relay, const char *fmt, ...)
{
	char text[sizeof r->out->text];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	pt_status_set(r->out, code, dsn, "%s", text);
	snprintf(r->relay, sizeof r->relay, "%s", relay ? relay : "none");
	r->final = 1;
}

void
relay_job_fail_rest(struct relay_job *job, const struct pt_status *st, const char *relay)
{
	for (size_t i = 0; i < job->nrcpt; i++)
		if (!job->rcpt[i].final)
			relay_rcpt_set(&job->rcpt[i], st->code, st->dsn, relay, "%s", st->text);
}

static double
secs(const struct timeval *a, const struct timeval *b)
{
	if (!a->tv_sec || !b->tv_sec)
		return 0;
	double d = (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_usec - a->tv_usec) / 1e6;
	return d < 0 ? 0 : d;
}

void
relay_job_finish(struct relay_job *job)
{
	struct timeval now;
	gettimeofday(&now, NULL);
	/* delays=a/b/c/d: before the queue manager, waiting for a session,
	 * connection setup, transmission (as Postfix). */
	double d[4] = { job->t_before, 0, 0, 0 };
	if (job->t_session.tv_sec) {
		d[1] = secs(&job->t_start, &job->t_session);
		if (job->t_xfer.tv_sec) {
			d[2] = secs(&job->t_session, &job->t_xfer);
			d[3] = secs(&job->t_xfer, &now);
		} else {
			d[2] = secs(&job->t_session, &now);
		}
	} else {
		d[1] = secs(&job->t_start, &now);
	}
	for (size_t i = 0; i < job->nrcpt; i++) {
		struct relay_rcpt *r = &job->rcpt[i];
		if (!r->final)
			relay_rcpt_set(r, 451, "4.3.0", "none", "delivery attempt ended without an outcome");
		pt_delivery_log("smtp", job->queue_id, r->address, r->orig, r->relay, d, r->out);
	}
	job->done(job);
}
