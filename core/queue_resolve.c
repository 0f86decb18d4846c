/* Recipient resolution for one attempt: routing, alias expansion (local
 * users, /file and |command members, remote members to forward), user
 * lookup with recipient_delimiter; transports routed by name get their
 * recipients (queue_transport.c). Then one copy per mailbox / file /
 * command, Delivered-To loop detection, and the targets left go to the
 * "local" transport, looked up like any other. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/address.h"
#include "postern/header.h"
#include "queue_msg.h"
#include "postern/strbuf.h"

/* The recipient's outcome is decided here (its targets, if any, count too). */
static void __attribute__((format(printf, 5, 6)))
decide(struct qmsg *m, size_t i, int code, const char *dsn, const char *fmt, ...)
{
	char text[sizeof m->rr[i].st.text];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	pt_status_set(&m->rr[i].st, code, dsn, "%s", text);
	m->rr[i].how = RCPT_DECIDED;
}

static struct target *
target_add(struct qmsg *m, size_t rcpt, enum target_kind kind, const char *final)
{
	if (m->nt == m->cap) {
		struct target *t = pt_array_grow(m->t, &m->cap, sizeof *t, 8);
		if (!t)
			return NULL;
		m->t = t;
	}
	struct target *t = &m->t[m->nt];
	memset(t, 0, sizeof *t);
	t->rcpt = rcpt;
	t->envelope = m->q.rcpt[rcpt].address;
	t->kind = kind;
	t->state = TARGET_PENDING;
	t->final = strdup(final);
	if (!t->final)
		return NULL;
	m->nt++;
	return t;
}

/* Targets from `from` on are dropped (an expansion that failed half way). */
static void
targets_truncate(struct qmsg *m, size_t from)
{
	for (size_t k = from; k < m->nt; k++) {
		free(m->t[k].final);
		free(m->t[k].target);
		free(m->t[k].owner);
	}
	m->nt = from;
}

static void
split_address(const char *addr, char *local, size_t llen, const char **domain)
{
	const char *at = strrchr(addr, '@');
	size_t n = at ? (size_t)(at - addr) : strlen(addr);
	if (n >= llen)
		n = llen - 1;
	for (size_t i = 0; i < n; i++)
		local[i] = (char)tolower((unsigned char)addr[i]);
	local[n] = 0;
	*domain = at ? at + 1 : "";
}

/* A local name to its mailbox owner; recipient_delimiter extensions fall
 * back to the base name. */
static int
lookup_user(const char *local, struct pt_user *u)
{
	int rc = pt_user_lookup(local, u);
	if (rc == 0) {
		char base[256];
		size_t n = pt_local_base_len(local, pt_qs.delimiter);
		if (n > 0 && n < sizeof base) {
			memcpy(base, local, n);
			base[n] = 0;
			rc = pt_user_lookup(base, u);
		}
	}
	return rc;
}

static int
is_local_domain(const char *domain)
{
	return !domain[0] || pt_domain_is_local(domain);
}

/* The mailbox target for a local name, or the reason there is none. */
static void
resolve_user(struct qmsg *m, size_t i, const char *local, const char *final)
{
	struct pt_user u;
	int rc = lookup_user(local, &u);
	if (rc < 0) {
		decide(m, i, 451, "4.3.0", "temporary failure in user lookup for \"%s\"", local);
		return;
	}
	struct target *t = target_add(m, i, TARGET_MAILBOX, final);
	if (!t) {
		decide(m, i, 451, "4.3.0", "out of memory");
		return;
	}
	if (rc == 0) {
		/* A target, not the recipient's status: several targets may
		 * share the recipient, and only each one knows its fate. */
		pt_status_set(&t->st, 550, "5.1.1", "unknown user: \"%s\"", local);
		t->state = TARGET_DONE;
		return;
	}
	t->user = u;
}

struct expand_ctx {
	struct qmsg *m;
	size_t rcpt;
	const char *address;
};

static void
alias_emit(void *arg, const char *target, enum pt_alias_target kind, const char *owner)
{
	struct expand_ctx *x = arg;
	struct qmsg *m = x->m;
	if (kind == PT_ALIAS_FILE || kind == PT_ALIAS_COMMAND) {
		struct target *t = target_add(m, x->rcpt, kind == PT_ALIAS_FILE ? TARGET_FILE : TARGET_COMMAND,
		                              x->address);
		if (t) {
			t->target = strdup(target);
			t->owner = owner ? strdup(owner) : NULL;
			if (!t->target) {
				pt_status_set(&t->st, 451, "4.3.0", "out of memory");
				t->state = TARGET_DONE;
			}
		}
		return;
	}
	if (kind != PT_ALIAS_ADDRESS)
		return;
	char local[256];
	const char *domain;
	split_address(target, local, sizeof local, &domain);
	char *final = pt_queue_qualify(target, pt_qs.myorigin);
	if (!final)
		return;
	if (is_local_domain(domain)) {
		resolve_user(m, x->rcpt, local, final);
	} else {
		/* As Postfix's local(8): a remote alias member leaves in a new
		 * message (made at outcome time) that routing then relays. */
		struct target *t = target_add(m, x->rcpt, TARGET_FORWARD, final);
		if (t) {
			t->state = TARGET_FORWARD_PENDING;
			t->target = strdup(final);
			t->owner = owner && owner[0] ? pt_queue_qualify(owner, pt_qs.myorigin) : NULL;
			if (!t->target) {
				pt_status_set(&t->st, 451, "4.3.0", "out of memory");
				t->state = TARGET_DONE;
			}
		}
	}
	free(final);
}

static void
resolve_local(struct qmsg *m, size_t i)
{
	const struct pt_qrcpt *r = &m->q.rcpt[i];
	char local[256];
	const char *domain;
	split_address(r->address, local, sizeof local, &domain);
	char *final = pt_queue_qualify(r->address, pt_qs.myorigin);
	if (!final) {
		decide(m, i, 451, "4.3.0", "out of memory");
		return;
	}
	const struct pt_alias_ops *al = r->state == PT_QRCPT_RESOLVED ? NULL : pt_service_get(PT_SVC_ALIAS);
	if (al && al->expand) {
		struct expand_ctx x = { m, i, final };
		struct pt_status st = { 0 };
		size_t before = m->nt;
		int rc = al->expand(local, alias_emit, &x, &st);
		if (rc == -1) {
			targets_truncate(m, before);
			decide(m, i, 451, st.dsn[0] ? st.dsn : "4.3.0", "%s",
			       st.text[0] ? st.text : "alias database unavailable");
		} else if (rc == -2) {
			decide(m, i, 550, st.dsn[0] ? st.dsn : "5.4.6", "%s", st.text[0] ? st.text : "mail forwarding loop");
		} else if (rc == 0) {
			resolve_user(m, i, local, final);
		} else if (m->nt == before) {
			decide(m, i, 0, "2.0.0", "alias expands to nothing");
		}
	} else {
		resolve_user(m, i, local, final);
	}
	free(final);
}

static void
resolve_rcpt(struct qmsg *m, size_t i)
{
	const struct pt_qrcpt *r = &m->q.rcpt[i];
	const struct pt_route_ops *ro = pt_service_get(PT_SVC_ROUTE);
	char local[256];
	const char *domain;
	split_address(r->address, local, sizeof local, &domain);
	if (r->state == PT_QRCPT_RESOLVED || !ro || !ro->route) {
		if (is_local_domain(domain))
			resolve_local(m, i);
		else
			decide(m, i, 550, "5.1.2", "mail for %s is not deliverable here: no relay transport", domain);
		return;
	}
	struct pt_route rt;
	memset(&rt, 0, sizeof rt);
	if (ro->route(r->address, &rt) < 0) {
		decide(m, i, 451, "4.3.0", "transport table lookup failure");
		return;
	}
	if (strcmp(rt.transport, "local") == 0) {
		resolve_local(m, i);
		return;
	}
	/* Any other transport is a module's (postern/transport.h). Without
	 * it the mail waits, as Postfix's does for an unknown transport. */
	const struct pt_transport_ops *ops = pt_transport_get(rt.transport);
	if (!ops || !ops->deliver)
		decide(m, i, 450, "4.3.5", "unsupported transport \"%s\"", rt.transport);
	else if (qtransport_add(m, i, ops, rt.nexthop) != 0)
		decide(m, i, 451, "4.3.0", "out of memory");
}

/* "Delivered-To: addr" among the headers means we delivered it before:
 * another delivery would loop. */
static int
already_delivered_to(const char *data, size_t len, const char *addr)
{
	struct pt_hdr_iter it;
	struct pt_hdr_field f;
	int found = 0;
	pt_hdr_iter_init(&it, data, len, 0);
	while (!found && pt_hdr_next(&it, &f)) {
		if (!pt_hdr_name_is(&f, "Delivered-To"))
			continue;
		struct pt_strbuf v = { 0 };
		pt_hdr_unfold(f.value, f.value_len, &v);
		found = v.p && strcasecmp(v.p, addr) == 0;
		pt_strbuf_free(&v);
	}
	return found;
}

/* An earlier target t duplicates: the same mailbox (still to deliver),
 * or the same /file or |command. */
static int
same_destination(const struct target *o, const struct target *t)
{
	if (o->kind != t->kind || o->state == TARGET_DUPLICATE)
		return 0;
	if (t->kind == TARGET_MAILBOX)
		return o->state == TARGET_PENDING && strcmp(o->user.name, t->user.name) == 0;
	return o->target && t->target && strcmp(o->target, t->target) == 0;
}

void
qresolve_all(struct qmsg *m)
{
	for (size_t i = 0; i < m->q.nrcpt; i++) {
		m->rr[i].how = RCPT_BY_TARGETS;
		int st = m->q.rcpt[i].state;
		if (st == PT_QRCPT_PENDING || st == PT_QRCPT_RESOLVED)
			resolve_rcpt(m, i);
	}
	/* One copy per mailbox / file / command, and loop detection. */
	for (size_t i = 0; i < m->nt; i++) {
		struct target *t = &m->t[i];
		if (t->state != TARGET_PENDING)
			continue;
		for (size_t k = 0; k < i; k++)
			if (same_destination(&m->t[k], t)) {
				t->state = TARGET_DUPLICATE;
				break;
			}
		if (t->state != TARGET_PENDING)
			continue;
		/* Delivered-To names the recipient before alias expansion (as
		 * Postfix's local(8) writes it), so a loop shows at either level. */
		const char *envelope_rcpt = m->q.rcpt[t->rcpt].address;
		const char *looped = already_delivered_to(m->q.data, m->q.len, t->final) ? t->final
		                     : already_delivered_to(m->q.data, m->q.len, envelope_rcpt) ? envelope_rcpt : NULL;
		if (looped) {
			pt_status_set(&t->st, 554, "5.4.6", "mail forwarding loop for %s", looped);
			t->state = TARGET_DONE;
		}
	}
	/* Mailboxes, files and commands: the local transport's (the core's
	 * own, so never missing while the queue runs). */
	const struct pt_transport_ops *local = pt_transport_get("local");
	for (size_t i = 0; i < m->nt; i++) {
		struct target *t = &m->t[i];
		if (t->state != TARGET_PENDING)
			continue;
		if (!local || !local->deliver) {
			pt_status_set(&t->st, 450, "4.3.5", "unsupported transport \"local\"");
			t->state = TARGET_DONE;
		} else if (qtransport_add_target(m, i, local) != 0) {
			pt_status_set(&t->st, 451, "4.3.0", "out of memory");
			t->state = TARGET_DONE;
		}
	}
}
