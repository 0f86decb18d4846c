/* Test-only module: a transport named "filedrop", proving that a
 * transport is a module. A transport map entry "domain filedrop:TAG"
 * writes each recipient's copy to $filedrop_directory/QUEUEID.N (headers
 * X-Filedrop-To and X-Filedrop-Nexthop first); the tag "fail" refuses
 * with 550 5.7.1 instead. The files are written on a pool thread, as a
 * transport that blocks must. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "postern/fdio.h"
#include "postern/event.h"
#include "postern/module.h"
#include "postern/transport.h"

static char directory[1024];

struct drop {
	const struct pt_transport_msg *msg;
	struct pt_transport_rcpt *rcpt;
	size_t n;
	void (*done)(void *arg);
	void *arg;
};

static void
drop_one(const struct pt_transport_msg *msg, struct pt_transport_rcpt *r, size_t i)
{
	if (strcmp(r->nexthop, "fail") == 0) {
		pt_status_set(&r->st, 550, "5.7.1", "filedrop: refused by the transport map");
		return;
	}
	if (!directory[0]) {
		pt_status_set(&r->st, 451, "4.3.5", "filedrop: filedrop_directory is not set");
		return;
	}
	char path[1200], head[800];
	snprintf(path, sizeof path, "%s/%s.%zu", directory, msg->queue_id, i);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int hl = snprintf(head, sizeof head, "X-Filedrop-To: %s\nX-Filedrop-Nexthop: %s\n", r->address, r->nexthop);
	if (fd < 0 || pt_write_all(fd, head, (size_t)hl) != 0 || pt_write_all(fd, msg->data, msg->len) != 0 ||
	    fsync(fd) != 0) {
		pt_status_set(&r->st, 451, "4.3.0", "filedrop: cannot write %s: %s", path, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(path);
		}
		return;
	}
	close(fd);
	pt_status_set(&r->st, 0, "2.0.0", "dropped in %s", path);
}

static void
drop_work(void *arg)
{
	struct drop *d = arg;
	for (size_t i = 0; i < d->n; i++)
		drop_one(d->msg, &d->rcpt[i], i);
}

/* On the loop again: log each outcome, then tell the queue. */
static void
drop_done(void *arg)
{
	struct drop *d = arg;
	double delays[4] = { difftime(time(NULL), d->msg->arrival), 0, 0, 0 };
	for (size_t i = 0; i < d->n; i++)
		pt_delivery_log("filedrop", d->msg->queue_id, d->rcpt[i].address, d->rcpt[i].orig, "none", delays,
		                &d->rcpt[i].st);
	void (*done)(void *) = d->done;
	void *done_arg = d->arg;
	free(d);
	done(done_arg);
}

static void
drop_later(struct pt_loop *loop, void *arg)
{
	(void)loop;
	drop_done(arg);
}

static void
filedrop_deliver(struct pt_loop *loop, const struct pt_transport_msg *msg, struct pt_transport_rcpt *rcpt, size_t n,
                 void (*done)(void *arg), void *arg)
{
	struct drop *d = malloc(sizeof *d);
	if (!d) {
		for (size_t i = 0; i < n; i++)
			pt_status_set(&rcpt[i].st, 451, "4.3.0", "filedrop: out of memory");
		done(arg); /* nothing to wait with; the queue holds its own reference */
		return;
	}
	*d = (struct drop){ msg, rcpt, n, done, arg };
	if (pt_work_submit(loop, drop_work, drop_done, d) == 0)
		return;
	/* No pool: write here, answer from the loop all the same. */
	drop_work(d);
	if (!pt_timer_add(loop, 0, drop_later, d))
		drop_done(d);
}

static const struct pt_transport_ops filedrop_ops = { 0, filedrop_deliver };

static int
filedrop_init(struct pt_ctx *ctx)
{
	snprintf(directory, sizeof directory, "%s", pt_conf_str(ctx->conf, "filedrop_directory"));
	return pt_service_register(PT_SVC_TRANSPORT("filedrop"), &filedrop_ops);
}

static const struct pt_param params[] = {
	{ .name = "filedrop_directory", .type = PT_STR, .def = "", .doc = "where the filedrop transport writes" },
	{ 0 },
};

/* Listed so that config checks (before any init) know the transport. */
static const char *const filedrop_provides[] = { PT_SVC_TRANSPORT("filedrop"), NULL };

__attribute__((visibility("default"))) const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "filedrop",
	.params = params,
	.roles = PT_ROLE_WORKER,
	.init = filedrop_init,
	.provides = filedrop_provides,
};
