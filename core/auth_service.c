/* The PT_SVC_AUTH service: a password check that never blocks the loop.
 * Hashing runs on a pool thread, or in the auth agent when one was
 * spawned; a client with recent failures waits before its check, and a
 * failure is answered only after auth_failure_delay. Unknown users and
 * wrong passwords look the same from outside; the log tells them apart.
 *
 * Attempts wait in line: one at a time per client address (and, from
 * addresses with recent failures, one at a time per user name), each in
 * line until its answer is out. Parallel connections therefore cannot
 * multiply guesses: an address gets at most one answer per
 * auth_failure_delay plus its throttle hold, while other addresses are
 * not slowed. A failure is answered auth_failure_delay after its check
 * began, whatever the check cost, so an unknown user and a wrong
 * password are answered at the same instant. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config_int.h"
#include "passdb.h"
#include "postern/event.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/record.h"
#include "postern/sasl.h"
#include "postern/services.h"

#define THROTTLE_ENTRIES 10000
/* Attempts from one address that may wait in line (default of
 * auth_max_waiting_per_address); more are failed (after the usual delay,
 * no check) without joining it, so clients that hang up while waiting
 * cannot pile up requests. */
#define LINE_MAX_PER_ADDR 32
#define OUT_OF_LINE "\001"

enum req_state { RS_LINE, RS_HOLD, RS_CHECK, RS_QUEUED, RS_SENT, RS_DELAY, RS_ANSWER };

struct auth_req {
	struct auth_req *next, **prevp;   /* all live requests */
	struct pt_loop *loop;
	enum req_state state;
	struct pt_timer *timer;
	struct pt_deferred answer;        /* RS_ANSWER: done() is due */
	uint32_t id;
	int result;
	int refused;                      /* decided without a check (oversize) */
	int user_line;                    /* also in line behind its user name */
	uint64_t check_start;             /* the failure answer is due from here */
	void (*done)(void *arg, int result);
	void *arg;
	char passdb[1024];
	char user[PT_SASL_USER_MAX + 1];
	char password[PT_SASL_PASS_MAX + 1];
	char service[32];
	char rip[64];
	char akey[PT_THROTTLE_KEYLEN];    /* the address as the throttle counts it */
	char why[200];
	char proxy[PT_AUTH_PROXY_MAX];    /* a good login's backend, "" = here */
	unsigned char wire[PT_AUTH_WIRE_MAX];
	int wirelen;
};

static uint64_t real_now(struct pt_loop *loop) { return pt_loop_now(loop); }

static const struct pt_auth_hooks real_hooks = { real_now, pt_timer_add, pt_timer_cancel };

static struct {
	char passdb[1024];
	uint64_t failure_delay_ms;
	int throttle_on;
	struct pt_throttle *throttle;
	const struct pt_auth_hooks *hooks;
	int agent_fd;
	struct pt_loop *agent_loop;
	int agent_dead;
	uint32_t next_id;
	struct auth_req *reqs;            /* newest first */
	int draining;                     /* shutdown: nobody leaves the line */
	size_t line_max;                  /* auth_max_waiting_per_address */
} A = { .passdb = "pam", .failure_delay_ms = 2000, .throttle_on = 1, .hooks = &real_hooks,
        .agent_fd = -1, .line_max = LINE_MAX_PER_ADDR };

static void
req_link(struct auth_req *r)
{
	r->next = A.reqs;
	if (A.reqs)
		A.reqs->prevp = &r->next;
	A.reqs = r;
	r->prevp = &A.reqs;
}

static void
req_free(struct auth_req *r)
{
	*r->prevp = r->next;
	if (r->next)
		r->next->prevp = r->prevp;
	OPENSSL_clear_free(r, sizeof *r);
}

static void
req_wipe_secret(struct auth_req *r)
{
	OPENSSL_cleanse(r->password, sizeof r->password);
	OPENSSL_cleanse(r->wire, sizeof r->wire);
}

/* The login being answered (pt_auth_current_login): set around done(). */
static const struct pt_auth_login *current_login;

const struct pt_auth_login *
pt_auth_current_login(void)
{
	return current_login;
}

const char *
pt_auth_proxy_dest(void)
{
	return current_login && current_login->proxy && current_login->proxy[0] ? current_login->proxy : NULL;
}

static void delay_over(struct pt_loop *loop, void *p);
static void line_wake(const char *akey, const char *user, int user_line);

static void
deliver(struct pt_loop *loop, void *p)
{
	struct auth_req *r = p;
	void (*done)(void *, int) = r->done;
	void *arg = r->arg;
	int result = r->result, user_line = r->user_line;
	char akey[PT_THROTTLE_KEYLEN], user[PT_SASL_USER_MAX + 1];

	(void)loop;
	memcpy(akey, r->akey, sizeof akey);
	memcpy(user, r->user, sizeof user);
	if (result == 1) {
		/* The hand-off inside done() reads the login (and, for a
		 * proxied one, its password) from here; it ends with done(). */
		struct pt_auth_login cur = { r->user, r->password, r->proxy };
		current_login = &cur;
		done(arg, result);
		current_login = NULL;
		req_free(r);
	} else {
		req_free(r);
		done(arg, result);
	}
	/* Out of line: the next attempt from this address (or for this
	 * user) may go. */
	line_wake(akey, user, user_line);
	OPENSSL_cleanse(user, sizeof user);
}

/* The answer is known. It goes out from the loop, never inside
 * auth_verify (the service rule, services.h), however it was decided. */
static void
answer(struct auth_req *r)
{
	r->state = RS_ANSWER;
	pt_defer(r->loop, &r->answer, deliver, r);
}

static void
delay_over(struct pt_loop *loop, void *p)
{
	struct auth_req *r = p;
	(void)loop;
	r->timer = NULL;
	answer(r);
}

/* The check is over: log, count, and answer (a failure after the delay). */
static void
check_finished(struct auth_req *r)
{
	char name[80];
	uint64_t now = A.hooks->now(r->loop);

	/* A proxied login keeps its password for the backend's login, until
	 * the answer is delivered (req_free wipes the request). */
	if (r->result == 1 && r->proxy[0])
		OPENSSL_cleanse(r->wire, sizeof r->wire);
	else
		req_wipe_secret(r);
	pt_auth_log_name(r->user, name, sizeof name);
	pt_metric_inc(pt_metric_counter("postern_logins", "password checks per protocol and result",
	                                "protocol", r->service[0] ? r->service : "-", "result",
	                                r->result == 1 ? "ok" : r->result < 0 ? "tempfail" : "failed", NULL));
	/* Every login (IMAP, POP3, SMTP AUTH) is checked here: one record
	 * each, with the user name and why it failed, never the password. */
	pt_record_login(r->service, name, r->rip, r->result,
	                r->why[0] ? r->why : r->result < 0 ? "internal error" : "password mismatch");
	if (r->result == 1) {
		if (A.throttle_on)
			pt_throttle_success(A.throttle, r->rip, now);
		answer(r);
		return;
	}
	if (r->result < 0) {
		pt_log(PT_LOG_WARNING, "auth temporary failure: user=<%s>, rip=%s, service=%s: %s",
		       name, r->rip, r->service, r->why[0] ? r->why : "internal error");
		answer(r);
		return;
	}
	pt_log(PT_LOG_WARNING, "auth failed: user=<%s>, rip=%s, service=%s: %s",
	       name, r->rip, r->service, r->why[0] ? r->why : "password mismatch");
	if (A.throttle_on)
		pt_throttle_failure(A.throttle, r->rip, now);
	/* Due auth_failure_delay after the check began, not after it ended:
	 * what the check cost (an unknown user's path, a slower hash) does
	 * not show in the answer's timing. */
	uint64_t spent = now > r->check_start ? now - r->check_start : 0;
	r->state = RS_DELAY;
	r->timer = A.hooks->timer_add(r->loop, spent < A.failure_delay_ms ? A.failure_delay_ms - spent : 0,
	                              delay_over, r);
	if (!r->timer)
		answer(r);
}

static void
pool_work(void *p)
{
	struct auth_req *r = p;
	struct pt_passdb_req q = { r->user, r->password, r->service, r->rip };
	r->result = pt_passdb_check_proxy(r->passdb, &q, r->why, sizeof r->why, r->proxy, sizeof r->proxy);
}

static void
pool_done(void *p)
{
	check_finished(p);
}

/* ---- talking to the agent ---- */

static void agent_io(struct pt_loop *loop, int fd, unsigned events, void *arg);

static void
agent_fail_all(const char *why)
{
	for (struct auth_req *r = A.reqs, *next; r; r = next) {
		next = r->next;
		if (r->state == RS_QUEUED || r->state == RS_SENT) {
			r->result = -1;
			snprintf(r->why, sizeof r->why, "%s", why);
			r->state = RS_CHECK;
			check_finished(r);
		}
	}
}

static void
agent_lost(const char *why)
{
	if (!A.agent_dead)
		pt_log(PT_LOG_ERROR, "auth agent: %s; password checks fail until restart", why);
	A.agent_dead = 1;
	if (A.agent_loop)
		pt_loop_unwatch(A.agent_loop, A.agent_fd);
	agent_fail_all("auth agent unavailable");
}

/* Sends queued requests in order; 1 when some must wait for POLLOUT. */
static int
agent_flush(void)
{
	/* Oldest first: the list is newest-first, so find the tail each time. */
	for (;;) {
		struct auth_req *oldest = NULL;
		for (struct auth_req *r = A.reqs; r; r = r->next)
			if (r->state == RS_QUEUED)
				oldest = r;
		if (!oldest)
			return 0;
		ssize_t n = send(A.agent_fd, oldest->wire, (size_t)oldest->wirelen,
		                 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		if (n < 0 && errno == EINTR)
			continue;
		OPENSSL_cleanse(oldest->wire, sizeof oldest->wire);
		if (n < 0) {
			agent_lost(strerror(errno));
			return 0;
		}
		oldest->state = RS_SENT;
	}
}

static void
agent_watch(void)
{
	int waiting = agent_flush();
	if (!A.agent_dead)
		pt_loop_watch(A.agent_loop, A.agent_fd, PT_EV_READ | (waiting ? PT_EV_WRITE : 0),
		              agent_io, NULL);
}

static void
agent_io(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	unsigned char buf[512 + PT_AUTH_PROXY_MAX];
	(void)loop;
	(void)arg;

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			agent_lost(n == 0 ? "connection closed" : strerror(errno));
			return;
		}
		uint32_t id;
		int result;
		char why[200], proxy[PT_AUTH_PROXY_MAX];
		if (pt_auth_wire_reply_decode_proxy(buf, (size_t)n, &id, &result, why, sizeof why, proxy,
		                                    sizeof proxy) < 0) {
			pt_log(PT_LOG_WARNING, "auth agent: malformed reply ignored");
			continue;
		}
		for (struct auth_req *r = A.reqs; r; r = r->next)
			if (r->state == RS_SENT && r->id == id) {
				r->result = result;
				snprintf(r->why, sizeof r->why, "%s", why);
				snprintf(r->proxy, sizeof r->proxy, "%s", result == 1 ? proxy : "");
				r->state = RS_CHECK;
				check_finished(r);
				break;
			}
	}
	if (events & PT_EV_ERROR) {
		agent_lost("connection error");
		return;
	}
	agent_watch();
}

static void
start_check(struct auth_req *r)
{
	r->state = RS_CHECK;
	r->check_start = A.hooks->now(r->loop);
	if (A.agent_fd >= 0 && (A.agent_loop == NULL || A.agent_loop == r->loop)) {
		if (A.agent_dead) {
			r->result = -1;
			snprintf(r->why, sizeof r->why, "auth agent unavailable");
			check_finished(r);
			return;
		}
		struct pt_passdb_req q = { r->user, r->password, r->service, r->rip };
		r->id = ++A.next_id;
		r->wirelen = pt_auth_wire_request_encode(r->id, &q, r->wire, sizeof r->wire);
		/* r->password stays until the answer: a proxied login needs it. */
		if (r->wirelen < 0) {
			r->result = 0;
			snprintf(r->why, sizeof r->why, "request too long");
			check_finished(r);
			return;
		}
		A.agent_loop = r->loop;
		r->state = RS_QUEUED;
		agent_watch();
		return;
	}
	if (pt_work_submit(r->loop, pool_work, pool_done, r) != 0) {
		r->result = -1;
		snprintf(r->why, sizeof r->why, "cannot queue the check");
		check_finished(r);
	}
}

static void
hold_over(struct pt_loop *loop, void *p)
{
	struct auth_req *r = p;
	(void)loop;
	r->timer = NULL;
	if (r->refused) {
		r->state = RS_CHECK;
		r->check_start = A.hooks->now(r->loop);
		check_finished(r);
		return;
	}
	start_check(r);
}

/* ---- the line ---- */

/* May r go? Not while an older attempt from its address is live, nor
 * (when r is in its user's line) an older one in that user's line. */
static int
line_clear(const struct auth_req *r)
{
	for (const struct auth_req *o = r->next; o; o = o->next) {
		if (strcmp(o->akey, r->akey) == 0 && strcmp(o->akey, OUT_OF_LINE) != 0)
			return 0;
		if (r->user_line && o->user_line && strcasecmp(o->user, r->user) == 0)
			return 0;
	}
	return 1;
}

/* Leave the line: the throttle's hold for the address, then the check. */
static void
line_leave(struct auth_req *r)
{
	uint64_t hold = 0;

	if (A.throttle_on)
		hold = pt_throttle_delay_ms(A.throttle, r->rip, A.hooks->now(r->loop));
	if (hold > 0) {
		r->state = RS_HOLD;
		r->timer = A.hooks->timer_add(r->loop, hold, hold_over, r);
		if (r->timer)
			return;
	}
	hold_over(r->loop, r);
}

/* Someone with these keys left: start whoever is now first in line. */
static void
line_wake(const char *akey, const char *user, int user_line)
{
	struct auth_req *r, *first;

	if (A.draining)
		return;
	do {
		first = NULL;
		/* Oldest first: the list is newest first. */
		for (r = A.reqs; r; r = r->next)
			if (r->state == RS_LINE &&
			    (strcmp(r->akey, akey) == 0 ||
			     (user_line && r->user_line && strcasecmp(r->user, user) == 0)) &&
			    line_clear(r))
				first = r;
		if (first) {
			first->state = RS_HOLD;  /* out of the line before anything can answer */
			line_leave(first);
		}
	} while (first);
}

static int
auth_verify(struct pt_loop *loop, const char *user, const char *password, const char *service,
            const char *client_address, void (*done)(void *arg, int result), void *arg)
{
	if (!loop || !done)
		return -1;
	struct auth_req *r = OPENSSL_zalloc(sizeof *r);
	if (!r)
		return -1;
	r->loop = loop;
	r->done = done;
	r->arg = arg;
	snprintf(r->passdb, sizeof r->passdb, "%s", A.passdb);
	snprintf(r->service, sizeof r->service, "%s", service ? service : "");
	snprintf(r->rip, sizeof r->rip, "%s", client_address ? client_address : "");
	req_link(r);

	size_t ul = user ? strlen(user) : 0, pl = password ? strlen(password) : 0;
	int oversize = ul > PT_SASL_USER_MAX || pl > PT_SASL_PASS_MAX;
	if (user)
		memcpy(r->user, user, ul > PT_SASL_USER_MAX ? PT_SASL_USER_MAX : ul);
	if (password && !oversize)
		memcpy(r->password, password, pl);

	if (oversize) {
		/* Still answered as a plain failure, after the same waits. */
		r->result = 0;
		r->refused = 1;
		snprintf(r->why, sizeof r->why, "user name or password too long");
	}
	pt_throttle_key(r->rip, r->akey);
	size_t waiting = 0;
	for (struct auth_req *o = r->next; o; o = o->next)
		waiting += strcmp(o->akey, r->akey) == 0;
	if (waiting >= A.line_max) {
		r->result = 0;
		r->refused = 1;
		snprintf(r->why, sizeof r->why, "too many attempts waiting from this address");
		snprintf(r->akey, sizeof r->akey, OUT_OF_LINE);
		r->state = RS_HOLD;
		hold_over(loop, r);
		return 0;
	}
	/* A guesser's addresses queue per user name too; a clean address
	 * (the user at home) does not wait behind them. */
	r->user_line = A.throttle_on && pt_throttle_failures(A.throttle, r->rip, A.hooks->now(loop)) > 0;
	r->state = RS_LINE;
	if (line_clear(r))
		line_leave(r);
	return 0;
}

static const struct pt_auth_ops auth_ops = { auth_verify };

int
pt_auth_configure(const char *passdb, uint64_t failure_delay_ms, int throttle)
{
	char err[200];

	if (pt_passdb_spec_check(passdb, err, sizeof err) < 0) {
		pt_log(PT_LOG_ERROR, "passdb: %s", err);
		return -1;
	}
	snprintf(A.passdb, sizeof A.passdb, "%s", passdb ? passdb : "pam");
	/* A (re)configured service forgets the credentials it remembered. */
	pt_passdb_cache_flush();
	A.failure_delay_ms = failure_delay_ms;
	A.throttle_on = throttle;
	if (!A.throttle && !(A.throttle = pt_throttle_new(THROTTLE_ENTRIES))) {
		pt_log(PT_LOG_ERROR, "auth: out of memory");
		return -1;
	}
	if (A.agent_fd < 0 && pt_auth_default_agent_fd >= 0)
		A.agent_fd = pt_auth_default_agent_fd;
	return pt_service_register(PT_SVC_AUTH, &auth_ops);
}

int
pt_auth_init(const struct pt_config *conf)
{
	/* Until pt_auth_params is declared with the core's table, the
	 * documented defaults apply (asking for an undeclared name aborts). */
	int declared = pt_config_owner(conf, "auth_failure_delay") != NULL;
	pt_auth_set_line_max(declared && pt_config_owner(conf, "auth_max_waiting_per_address")
	                     ? (size_t)pt_conf_int(conf, "auth_max_waiting_per_address") : LINE_MAX_PER_ADDR);
	return pt_auth_configure(pt_conf_str(conf, "passdb"),
	                         declared ? (uint64_t)pt_conf_int(conf, "auth_failure_delay") * 1000 : 2000,
	                         declared ? pt_conf_bool(conf, "auth_throttle") : 1);
}

void
pt_auth_set_line_max(size_t n)
{
	A.line_max = n ? n : 1;
}

void
pt_auth_set_agent_fd(int fd)
{
	if (A.agent_loop && A.agent_fd >= 0 && !A.agent_dead)
		pt_loop_unwatch(A.agent_loop, A.agent_fd);
	/* Checks in flight on the old agent would never be answered. */
	agent_fail_all("auth agent replaced");
	A.agent_fd = fd;
	A.agent_loop = NULL;
	A.agent_dead = 0;
}

void
pt_auth_set_hooks(const struct pt_auth_hooks *h)
{
	A.hooks = h ? h : &real_hooks;
}

struct pt_throttle *
pt_auth_throttle(void)
{
	return A.throttle;
}

void
pt_auth_shutdown(void)
{
	/* Pool checks still running own their request; they finish later. */
	A.draining = 1;
	for (struct auth_req *r = A.reqs, *next; r; r = next) {
		next = r->next;
		if (r->state == RS_CHECK || r->state == RS_ANSWER)
			continue;
		if (r->timer)
			A.hooks->timer_cancel(r->loop, r->timer);
		r->timer = NULL;
		r->result = -1;
		answer(r);
	}
	if (A.agent_loop && A.agent_fd >= 0 && !A.agent_dead)
		pt_loop_unwatch(A.agent_loop, A.agent_fd);
	A.agent_loop = NULL;
	A.draining = 0;
}
