/* Unit tests for the IMAP session's view sync against an in-memory store:
 * EXISTS/RECENT for new mail, EXPUNGE only when allowed and numbered as
 * RFC 3501 §7.4.1 wants, FETCH FLAGS for changes, keyword table growth,
 * UIDVALIDITY change, sequence/UID set resolution. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap/imap.h"

/* ---- a store with a fixed message list the test edits directly ---- */

struct pt_mbox {
	struct pt_msg_info m[300];
	size_t n;
	uint32_t uidvalidity;
	char kw[8][16];
	size_t nkw;
};

static struct pt_mbox box;

static int
f_sync(struct pt_mbox *mb, int *changed, struct pt_status *st)
{
	(void)mb, (void)st;
	*changed = 1;
	return 0;
}
static size_t f_count(const struct pt_mbox *mb) { return mb->n; }
static const struct pt_msg_info *f_info(const struct pt_mbox *mb, size_t i) { return &mb->m[i]; }
static size_t
f_find(const struct pt_mbox *mb, uint32_t uid)
{
	for (size_t i = 0; i < mb->n; i++)
		if (mb->m[i].uid == uid)
			return i;
	return (size_t)-1;
}
static uint32_t f_uidvalidity(const struct pt_mbox *mb) { return mb->uidvalidity; }
static uint32_t f_uidnext(const struct pt_mbox *mb) { return mb->n ? mb->m[mb->n - 1].uid + 1 : 1; }
static size_t f_kwcount(const struct pt_mbox *mb) { return mb->nkw; }
static const char *f_kwname(const struct pt_mbox *mb, size_t i) { return i < mb->nkw ? mb->kw[i] : NULL; }
static void f_close(struct pt_mbox *mb) { (void)mb; }

static const struct pt_mailbox_ops fops = {
	.sync = f_sync, .count = f_count, .info = f_info, .find = f_find, .uidvalidity = f_uidvalidity,
	.uidnext = f_uidnext, .keyword_count = f_kwcount, .keyword_name = f_kwname, .close = f_close,
};

static void
add(uint32_t uid, uint32_t flags)
{
	box.m[box.n].uid = uid;
	box.m[box.n].flags = flags;
	box.m[box.n].keywords = 0;
	box.n++;
}

static void
drop(uint32_t uid)
{
	size_t i = f_find(&box, uid);
	memmove(&box.m[i], &box.m[i + 1], (box.n - i - 1) * sizeof(box.m[0]));
	box.n--;
}

static struct pt_strbuf out;
static struct imap_session sess;

static void
open_session(void)
{
	memset(&box, 0, sizeof(box));
	box.uidvalidity = 1234;
	for (uint32_t u = 1; u <= 5; u++)
		add(u, u <= 2 ? PT_F_SEEN : PT_F_RECENT);
	pt_strbuf_free(&out);
	memset(&sess, 0, sizeof(sess));
	sess.capture = &out;
	sess.mbx = &fops;
	sess.mb = &box;
	sess.state = IMAP_SELECTED;
	struct imap_view_sums sums;
	assert_int_equal(imap_view_load(&sess, &sums), 0);
	sess.nkeywords_sent = box.nkw;
}

static const char *
said(void)
{
	static char copy[4096];
	snprintf(copy, sizeof(copy), "%s", out.p ? out.p : "");
	out.len = 0;
	if (out.p)
		out.p[0] = 0;
	return copy;
}

static void
close_session(void)
{
	sess.mb = NULL; /* the fake box is static */
	imap_view_clear(&sess);
	pt_strbuf_free(&out);
}

static void
test_nothing_changed(void **state)
{
	(void)state;
	open_session();
	imap_sync(&sess, 1);
	assert_string_equal(said(), "");
	close_session();
}

static void
test_new_mail(void **state)
{
	(void)state;
	open_session();
	add(6, PT_F_RECENT);
	add(7, 0);
	imap_sync(&sess, 0);
	assert_string_equal(said(), "* 7 EXISTS\r\n* 4 RECENT\r\n");
	assert_int_equal(imap_view_seq(&sess, 7), 7);
	close_session();
}

static void
test_expunge_only_when_allowed(void **state)
{
	(void)state;
	open_session();
	drop(2);
	drop(4);
	imap_sync(&sess, 0); /* FETCH, STORE, SEARCH */
	assert_string_equal(said(), "");
	assert_int_equal(sess.nview, 5);
	assert_int_equal(imap_view_store_index(&sess, 1), (size_t)-1);
	imap_sync(&sess, 1); /* NOOP: numbered as each EXPUNGE renumbers */
	assert_string_equal(said(), "* 2 EXPUNGE\r\n* 3 EXPUNGE\r\n");
	assert_int_equal(sess.nview, 3);
	assert_int_equal(imap_view_seq(&sess, 5), 3);
	close_session();
}

static void
test_expunged_last_is_not_new(void **state)
{
	(void)state;
	open_session();
	drop(5);
	imap_sync(&sess, 1);
	assert_string_equal(said(), "* 5 EXPUNGE\r\n");
	imap_sync(&sess, 1);
	assert_string_equal(said(), "");
	add(6, 0);
	imap_sync(&sess, 1);
	assert_string_equal(said(), "* 5 EXISTS\r\n* 2 RECENT\r\n");
	close_session();
}

static void
test_flag_changes(void **state)
{
	(void)state;
	open_session();
	box.m[0].flags |= PT_F_FLAGGED;
	imap_sync(&sess, 0);
	assert_string_equal(said(), "* 1 FETCH (FLAGS (\\Flagged \\Seen))\r\n");
	sess.cmd_uid = 1;
	box.m[2].flags |= PT_F_DELETED;
	imap_sync(&sess, 0);
	assert_string_equal(said(), "* 3 FETCH (UID 3 FLAGS (\\Deleted \\Recent))\r\n");
	sess.cmd_uid = 0;
	/* A new keyword: the table is announced before the FETCH uses it. */
	strcpy(box.kw[0], "$Work");
	box.nkw = 1;
	box.m[1].keywords = 1;
	imap_sync(&sess, 0);
	assert_string_equal(said(), "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n"
	                            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)] "
	                            "Flags permitted.\r\n"
	                            "* 2 FETCH (FLAGS (\\Seen $Work))\r\n");
	close_session();
}

static void
test_uidvalidity_change(void **state)
{
	(void)state;
	open_session();
	box.uidvalidity++;
	imap_sync(&sess, 1);
	assert_string_equal(said(), "* BYE Mailbox UIDVALIDITY changed\r\n");
	assert_int_equal(sess.state, IMAP_LOGOUT);
	close_session();
}

static void
set_is(const char *set, int uid, int rc, const char *want)
{
	size_t *idx = NULL, n = 0;
	char got[256] = "";

	assert_int_equal(imap_resolve_set(&sess, set, strlen(set), uid, &idx, &n), rc);
	for (size_t i = 0; i < n; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%zu", i ? "," : "", idx[i]);
	assert_string_equal(got, want);
	free(idx);
}

/* The view is kept per session: exact at SELECT, grown by an eighth for
 * new mail, never doubled (16 B a message of slack on a big folder). */
static void
test_view_has_no_doubling_slack(void **state)
{
	(void)state;
	open_session();
	close_session();
	memset(&box, 0, sizeof(box));
	box.uidvalidity = 1234;
	for (uint32_t u = 1; u <= 200; u++)
		add(u, PT_F_SEEN);
	memset(&sess, 0, sizeof(sess));
	sess.capture = &out;
	sess.mbx = &fops;
	sess.mb = &box;
	sess.state = IMAP_SELECTED;
	struct imap_view_sums sums;
	assert_int_equal(imap_view_load(&sess, &sums), 0);
	assert_int_equal(sess.nview, 200);
	assert_int_equal(sess.capview, 200);
	add(201, PT_F_RECENT);
	imap_sync(&sess, 1);
	assert_non_null(strstr(said(), "* 201 EXISTS"));
	assert_int_equal(sess.nview, 201);
	assert_in_range(sess.capview, 201, 200 + 200 / 8 + 64);
	assert_int_equal(sess.view[200].uid, 201);
	close_session();
}

/* A QRESYNC SELECT: the load lists the entries changed since the
 * client's MODSEQ (so no second walk), or says it could not keep them. */
static void
test_load_lists_changed_since(void **state)
{
	(void)state;
	memset(&box, 0, sizeof(box));
	box.uidvalidity = 1234;
	for (uint32_t u = 1; u <= 300; u++) {
		add(u, PT_F_SEEN);
		box.m[u - 1].modseq = u % 7 == 0 ? 50 + u : 3;
	}
	memset(&sess, 0, sizeof(sess));
	sess.capture = &out;
	sess.mbx = &fops;
	sess.mb = &box;
	sess.state = IMAP_SELECTED;
	struct imap_view_sums sums;
	assert_int_equal(imap_view_load_since(&sess, &sums, 1, 3), 0);
	assert_int_equal(sums.collected, 1);
	assert_int_equal(sums.over, 0);
	assert_int_equal(sums.nsince, 300 / 7);
	for (size_t k = 0; k < sums.nsince; k++)
		assert_int_equal(sums.since_idx[k], 7 * (k + 1) - 1);
	assert_int_equal(sums.modseq, 50 + 294);
	close_session();
	memset(&sess, 0, sizeof(sess));
	sess.capture = &out;
	sess.mbx = &fops;
	sess.mb = &box;
	sess.state = IMAP_SELECTED;
	/* Everything changed: more than it keeps. */
	assert_int_equal(imap_view_load_since(&sess, &sums, 1, 2), 0);
	assert_int_equal(sums.over, 1);
	assert_int_equal(sums.nsince, IMAP_SINCE_MAX);
	close_session();
	memset(&sess, 0, sizeof(sess));
	sess.capture = &out;
	sess.mbx = &fops;
	sess.mb = &box;
	sess.state = IMAP_SELECTED;
	assert_int_equal(imap_view_load(&sess, &sums), 0);
	assert_int_equal(sums.collected, 0);
	assert_int_equal(sums.nsince, 0);
	close_session();
}

/* A view of 2 MiB or more takes another allocation (huge pages): it
 * must load, grow and free like a small one. */
static struct pt_msg_info big_one;
static size_t big_n;
static size_t f_big_count(const struct pt_mbox *mb) { (void)mb; return big_n; }
static const struct pt_msg_info *
f_big_info(const struct pt_mbox *mb, size_t i)
{
	(void)mb;
	big_one.uid = (uint32_t)i + 1;
	big_one.flags = PT_F_SEEN;
	big_one.modseq = i + 1;
	return &big_one;
}

static void
test_big_view(void **state)
{
	(void)state;
	struct pt_mailbox_ops bops = fops;
	bops.count = f_big_count;
	bops.info = f_big_info;
	big_n = 100000;
	memset(&box, 0, sizeof(box));
	box.uidvalidity = 1234;
	memset(&sess, 0, sizeof(sess));
	sess.capture = &out;
	sess.mbx = &bops;
	sess.mb = &box;
	sess.state = IMAP_SELECTED;
	struct imap_view_sums sums;
	assert_int_equal(imap_view_load(&sess, &sums), 0);
	assert_int_equal(sess.nview, big_n);
	assert_int_equal((uintptr_t)sess.view % ((uintptr_t)2 << 20), 0);
	assert_int_equal(sess.view[big_n - 1].uid, big_n);
	assert_int_equal(sums.modseq, big_n);
	assert_int_equal(imap_view_seq(&sess, 77777), 77777);
	assert_int_equal(imap_view_lower(&sess, 99999), 99998);
	close_session();
}

static void
test_resolve_set(void **state)
{
	(void)state;
	open_session();
	set_is("1:3", 0, 0, "0,1,2");
	set_is("5,1", 0, 0, "0,4");
	set_is("*", 0, 0, "4");
	set_is("4:*", 0, 0, "3,4");
	set_is("6", 0, -1, "");
	set_is("2:6", 0, -1, "");
	set_is("x", 0, -1, "");
	/* UIDs that do not exist are ignored (RFC 3501 §6.4.8). */
	drop(3);
	imap_sync(&sess, 1);
	said();
	set_is("1:100", 1, 0, "0,1,2,3");
	set_is("3", 1, 0, "");
	set_is("*", 1, 0, "3");
	set_is("9:*", 1, 0, "3");
	close_session();
	open_session();
	while (box.n)
		drop(box.m[0].uid);
	imap_sync(&sess, 1);
	said();
	set_is("1", 0, -1, "");
	set_is("*", 0, -1, "");
	set_is("1:*", 1, 0, "");
	close_session();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing_changed),        cmocka_unit_test(test_new_mail),
		cmocka_unit_test(test_expunge_only_when_allowed), cmocka_unit_test(test_expunged_last_is_not_new),
		cmocka_unit_test(test_flag_changes),           cmocka_unit_test(test_uidvalidity_change),
		cmocka_unit_test(test_resolve_set),            cmocka_unit_test(test_view_has_no_doubling_slack),
		cmocka_unit_test(test_load_lists_changed_since), cmocka_unit_test(test_big_view),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
