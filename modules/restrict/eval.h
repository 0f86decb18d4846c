/* One evaluation in progress, shared by eval.c (the walk over the lists)
 * and the item files (items.c, items_dns.c) that decide each step. */
#ifndef RESTRICT_EVAL_H
#define RESTRICT_EVAL_H

#include <sys/socket.h>

#include "postern/event.h"
#include "restrict.h"

enum item_result { R_NEXT, R_PERMIT, R_REJECT, R_PENDING };

struct restrict_eval {
	struct restrict_setup *s;
	struct pt_loop *loop;
	struct pt_policy_request req; /* strings point into strs */
	char *strs;
	struct sockaddr_storage sa;
	int have_sa;
	void (*done)(void *arg, const struct pt_verdict *v);
	void *arg;
	struct pt_deferred answer;    /* done() is owed from the loop */

	enum restrict_list order[RL_COUNT];
	int norder, oi;
	size_t ii;
	int in_run;                   /* guards against resuming inside run() */
	int resumed;                  /* an item finished while in_run */
	enum item_result resumed_result;
	int warn_next;                /* warn_if_reject seen */
	int hold, discard;
	int final_done;               /* implicit unlisted-recipient check ran */

	char reply[512];              /* R_REJECT: the reply line */
	char note[600];               /* extra words for the trace line */
	char rule[160];               /* rule to report, when not the item name */
	char defer_if_permit[512];
	char defer_if_reject[512];
	struct pt_verdict v;
	struct pt_strbuf trace;

	/* An item whose map answer was pending (a lookup module's,
	 * postern/map.h) runs again from this timer; since when. */
	struct pt_timer *lookup_timer;
	uint64_t lookup_since;

	/* Scratch for the asynchronous DNS items (items_dns.c). */
	int dns_step;
	int dns_found, dns_tempfail;
	char dns_name[300];
	char dns_extra[300];
};

/* Decide one item: R_PENDING means the item will call
 * restrict_eval_item_done() later, on the loop. */
enum item_result restrict_item_eval(struct restrict_eval *e, const struct restrict_chain *ch,
                                    const struct restrict_item *it);
enum item_result restrict_item_dns(struct restrict_eval *e, const struct restrict_chain *ch,
                                   const struct restrict_item *it);
void restrict_eval_item_done(struct restrict_eval *e, enum item_result r);
/* Apply an access(5) action found by a map or a policy. */
enum item_result restrict_eval_action(struct restrict_eval *e, const struct restrict_chain *ch,
                                      const struct restrict_action *a);
/* What replies of ch's class name: "<x>" without the brackets. */
const char *restrict_eval_subject(const struct restrict_eval *e, enum restrict_class cls);
/* reject_*sender_login_mismatch (items_sasl.c). */
enum item_result restrict_item_sender_login(struct restrict_eval *e, const struct restrict_item *it);
/* The implicit smtpd_reject_unlisted_recipient check (and the VRFY one). */
enum item_result restrict_item_unlisted(struct restrict_eval *e, const char *class_name);

#endif
