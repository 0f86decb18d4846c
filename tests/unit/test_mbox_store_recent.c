/* \Recent goes to at most one read-write open of a folder (RFC 3501
 * 2.3.2, RFC 9051 2.3.2): the ways two opens could both claim a message,
 * each pinned down. A second process is a fork (the in-process change
 * counter does not reach it, as it does not reach another mail process
 * of the same user). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mbox/mbox.h"
#include "mbox/mbox_store.h"
#include "postern/mailbox.h"

#include "mstore_fixture.h"

static int
deliver_rc(struct fx *f, const char *data)
{
	struct pt_delivery d = { "Q1", "sender@example.com", "u1@example.com", NULL, &f->u, data,
		strlen(data), time(NULL) };
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	return st.code;
}

static int
recent_of(struct pt_mbox *mb, uint32_t uid)
{
	size_t i = ops->find(mb, uid);
	assert_int_not_equal(i, (size_t)-1);
	return (ops->info(mb, i)->flags & PT_F_RECENT) != 0;
}

/* Another process takes \Recent of a message this open has loaded (a
 * STORE reloads the list without taking \Recent: that is the sync's
 * job) and rewrites its 'O' in place; then a delivery appends. The
 * file only grew since this open looked, but what it holds of the
 * older messages is stale: the next sync must not take the message
 * again. */
static void
test_other_process_took_then_delivery(void **state)
{
	struct fx *f = *state;
	assert_int_equal(deliver_rc(f, "Subject: one\n\n1\n"), 0);
	struct pt_status st;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	assert_true(recent_of(a, 1));
	assert_int_equal(deliver_rc(f, "Subject: two\n\n2\n"), 0);
	/* Loads message 2 (not 'O') into a's list without taking it. */
	struct pt_flag_change c = { .uid = 1, .add = PT_F_FLAGGED };
	assert_int_equal(ops->change_flags(a, &c, 1, &st), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct pt_mbox *b = ops->open(f->ms, "INBOX", 0, &st);
		int ok = b != NULL && ops->count(b) == 2 && recent_of(b, 2) && !recent_of(b, 1);
		ops->close(b);
		ok = ok && deliver_rc(f, "Subject: three\n\n3\n") == 0;
		_exit(ok ? 0 : 1);
	}
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	int changed;
	assert_int_equal(ops->sync(a, &changed, &st), 0);
	assert_int_equal(ops->count(a), 3);
	assert_true(recent_of(a, 1));
	assert_false(recent_of(a, 2));   /* the other process has it */
	assert_true(recent_of(a, 3));
	ops->close(a);
}

/* An open that shows \Recent by the messages' state (the file was not
 * writable for it) never took those messages: once it can write, it
 * owns only what it takes itself, and a message another open took in
 * between loses \Recent here. The file turning writable is simulated by
 * the open's own switch (the same branch of the sync). */
static void
test_writable_later_claims_only_what_it_takes(void **state)
{
	struct fx *f = *state;
	assert_int_equal(deliver_rc(f, "Subject: one\n\n1\n"), 0);
	assert_int_equal(deliver_rc(f, "Subject: two\n\n2\n"), 0);
	struct pt_status st;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 1, &st);
	assert_non_null(a);
	assert_true(recent_of(a, 1) && recent_of(a, 2));
	struct pt_mbox *b = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(b);
	assert_true(recent_of(b, 1) && recent_of(b, 2));
	a->readonly = 0;
	assert_int_equal(deliver_rc(f, "Subject: three\n\n3\n"), 0);
	int changed;
	assert_int_equal(ops->sync(a, &changed, &st), 0);
	assert_true(changed);
	assert_false(recent_of(a, 1));
	assert_false(recent_of(a, 2));
	assert_true(recent_of(a, 3));
	assert_int_equal(ops->sync(b, &changed, &st), 0);
	assert_true(recent_of(b, 1) && recent_of(b, 2));
	assert_false(recent_of(b, 3));
	ops->close(b);
	ops->close(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_other_process_took_then_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writable_later_claims_only_what_it_takes, setup,
		                                teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
