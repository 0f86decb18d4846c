/* Unit tests for STORE against a store whose file another session changed
 * since our last sync (found by test_imap_stress.py): .SILENT still tells
 * flags others set meanwhile, and a message another session expunged is
 * neither echoed with stale flags nor stored (the rest is, answered OK as
 * Dovecot does; no EXPUNGE during STORE), and an absolute FLAGS is written even when
 * the list as last synced says the message has those flags already, and
 * -FLAGS of a keyword another session made since our sync removes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap/imap.h"

/* ---- a store: "file" is what is on disk now, "list" what the last sync
 * read (as the mbox store keeps it until the next sync) ---- */

struct pt_mbox {
	struct pt_msg_info file[16], list[16];
	size_t nfile, nlist;
	char kw[4][16];
	size_t nkw;                   /* known to the list */
	size_t nkw_file;              /* in the file (kw[] grows only) */
};

static struct pt_mbox box;

static size_t
find_in(const struct pt_msg_info *m, size_t n, uint32_t uid)
{
	for (size_t i = 0; i < n; i++)
		if (m[i].uid == uid)
			return i;
	return (size_t)-1;
}

/* Another process changing a message's flags right after our next sync
 * (between STORE's look at the folder and its write under the lock). */
static struct {
	int armed;
	uint32_t uid, flags;
} race;

static int
f_sync(struct pt_mbox *mb, int *changed, struct pt_status *st)
{
	(void)st;
	*changed = mb->nlist != mb->nfile || memcmp(mb->list, mb->file, mb->nfile * sizeof(mb->file[0])) != 0;
	memcpy(mb->list, mb->file, sizeof(mb->file));
	mb->nlist = mb->nfile;
	mb->nkw = mb->nkw_file;
	if (race.armed) {
		race.armed = 0;
		size_t i = find_in(mb->file, mb->nfile, race.uid);
		mb->file[i].flags = race.flags;
	}
	return 0;
}
static size_t f_count(const struct pt_mbox *mb) { return mb->nlist; }
static const struct pt_msg_info *f_info(const struct pt_mbox *mb, size_t i) { return &mb->list[i]; }
static size_t f_find(const struct pt_mbox *mb, uint32_t uid) { return find_in(mb->list, mb->nlist, uid); }
static uint32_t f_uidvalidity(const struct pt_mbox *mb) { (void)mb; return 77; }
static uint32_t f_uidnext(const struct pt_mbox *mb) { return mb->nfile ? mb->file[mb->nfile - 1].uid + 1 : 1; }
static size_t f_kwcount(const struct pt_mbox *mb) { return mb->nkw; }
static const char *f_kwname(const struct pt_mbox *mb, size_t i) { return i < mb->nkw ? mb->kw[i] : NULL; }
static void f_close(struct pt_mbox *mb) { (void)mb; }

static int
f_kwindex(struct pt_mbox *mb, const char *name, int create)
{
	for (size_t i = 0; i < mb->nkw; i++)
		if (strcmp(mb->kw[i], name) == 0)
			return (int)i;
	if (!create || mb->nkw_file == 4)
		return -1;
	snprintf(mb->kw[mb->nkw_file], sizeof(mb->kw[0]), "%s", name);
	mb->nkw = ++mb->nkw_file;
	return (int)mb->nkw - 1;
}

/* Applied to the file, as the mbox store does under its lock; the list
 * keeps what it said (the file moved, so the store keeps its snapshot). */
static int
f_change(struct pt_mbox *mb, const struct pt_flag_change *c, size_t n, struct pt_status *st)
{
	(void)st;
	for (size_t k = 0; k < n; k++) {
		size_t i = find_in(mb->file, mb->nfile, c[k].uid);
		if (i == (size_t)-1)
			continue;
		mb->file[i].flags = (mb->file[i].flags | c[k].add) & ~c[k].remove;
		mb->file[i].keywords = (mb->file[i].keywords | c[k].kw_add) & ~c[k].kw_remove;
		size_t j = find_in(mb->list, mb->nlist, c[k].uid);
		if (j != (size_t)-1) {
			mb->list[j].flags = mb->file[i].flags;
			mb->list[j].keywords = mb->file[i].keywords;
		}
	}
	return 0;
}

static int
f_set(struct pt_mbox *mb, const struct pt_flag_update *u, size_t n, struct pt_status *st)
{
	(void)st;
	for (size_t k = 0; k < n; k++) {
		size_t i = find_in(mb->file, mb->nfile, u[k].uid);
		if (i == (size_t)-1)
			continue;
		mb->file[i].flags = u[k].flags;
		mb->file[i].keywords = u[k].keywords;
		size_t j = find_in(mb->list, mb->nlist, u[k].uid);
		if (j != (size_t)-1) {
			mb->list[j].flags = mb->file[i].flags;
			mb->list[j].keywords = mb->file[i].keywords;
		}
	}
	return 0;
}

static const struct pt_mailbox_ops fops = {
	.sync = f_sync, .count = f_count, .info = f_info, .find = f_find, .uidvalidity = f_uidvalidity,
	.uidnext = f_uidnext, .keyword_count = f_kwcount, .keyword_name = f_kwname, .close = f_close,
	.keyword_index = f_kwindex, .change_flags = f_change, .set_flags = f_set,
};

static struct pt_strbuf out;
static struct imap_session sess;

static void
open_session(void)
{
	memset(&box, 0, sizeof(box));
	for (uint32_t u = 1; u <= 3; u++)
		box.file[box.nfile++] = (struct pt_msg_info){ .uid = u, .flags = 0 };
	int changed;
	f_sync(&box, &changed, NULL);
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

static void
close_session(void)
{
	sess.mb = NULL;   /* the fake box is static */
	imap_view_clear(&sess);
	pt_strbuf_free(&out);
}

/* "STORE set item (flag...)" through the command handler; what was said,
 * with the timing of the tagged OK cut. */
static const char *
store(int uid, const char *set, const char *item, const char *flag1, const char *flag2)
{
	static char copy[2048];
	struct imap_arg fl[2] = {
		{ .type = IMAP_ARG_ATOM, .s = flag1, .len = strlen(flag1) },
		{ .type = IMAP_ARG_ATOM, .s = flag2 ? flag2 : "", .len = flag2 ? strlen(flag2) : 0 },
	};
	struct imap_arg a[3] = {
		{ .type = IMAP_ARG_ATOM, .s = set, .len = strlen(set) },
		{ .type = IMAP_ARG_ATOM, .s = item, .len = strlen(item) },
		{ .type = IMAP_ARG_LIST, .list = fl, .n = flag2 ? 2 : 1 },
	};
	sess.cmd_uid = uid;
	imap_cmd_store(&sess, "t", a, 3, uid);
	snprintf(copy, sizeof(copy), "%s", out.p ? out.p : "");
	char *p = strstr(copy, " completed (");
	if (p)
		strcpy(p, " completed.\r\n");
	out.len = 0;
	if (out.p)
		out.p[0] = 0;
	return copy;
}

static void
test_plain_store_echoes(void **state)
{
	(void)state;
	open_session();
	assert_string_equal(store(0, "1:2", "+FLAGS", "\\Seen", NULL),
	                    "* 1 FETCH (FLAGS (\\Seen))\r\n* 2 FETCH (FLAGS (\\Seen))\r\nt OK Store completed.\r\n");
	assert_string_equal(store(0, "1", "-FLAGS.SILENT", "\\Seen", NULL), "t OK Store completed.\r\n");
	assert_string_equal(store(1, "2", "FLAGS", "\\Draft", "Junk"),
	                    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft Junk)\r\n"
	                    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft Junk \\*)] "
	                    "Flags permitted.\r\n"
	                    "* 2 FETCH (UID 2 FLAGS (\\Draft Junk))\r\nt OK Store completed.\r\n");
	assert_int_equal(box.file[1].flags, PT_F_DRAFT);
	assert_int_equal(box.file[1].keywords, 1);
	close_session();
}

static void
test_silent_tells_concurrent_change(void **state)
{
	(void)state;
	open_session();
	/* Another session flags message 2 while we store. */
	race.armed = 1;
	race.uid = 2;
	race.flags = PT_F_FLAGGED;
	assert_string_equal(store(0, "2", "+FLAGS.SILENT", "\\Seen", NULL),
	                    "* 2 FETCH (FLAGS (\\Flagged \\Seen))\r\nt OK Store completed.\r\n");
	assert_int_equal(box.file[1].flags, PT_F_FLAGGED | PT_F_SEEN);
	/* Nothing new since: nothing said. */
	assert_string_equal(store(0, "2", "-FLAGS.SILENT", "\\Seen", NULL), "t OK Store completed.\r\n");
	close_session();
}

static void
test_expunged_elsewhere_not_echoed(void **state)
{
	(void)state;
	open_session();
	/* Another session expunged message 2: the list still has it. */
	memmove(&box.file[1], &box.file[2], sizeof(box.file[0]));
	box.nfile = 2;
	assert_string_equal(store(0, "1:3", "+FLAGS", "\\Seen", NULL),
	                    "* 1 FETCH (FLAGS (\\Seen))\r\n* 3 FETCH (FLAGS (\\Seen))\r\n"
	                    "t OK Store completed.\r\n");
	/* It stays in the view (no EXPUNGE during STORE) until a NOOP. */
	assert_int_equal(sess.nview, 3);
	imap_sync(&sess, 1);
	assert_string_equal(out.p, "* 2 EXPUNGE\r\n");
	assert_int_equal(sess.nview, 2);
	close_session();
}

static void
test_uid_store_after_expunge_and_delivery(void **state)
{
	(void)state;
	open_session();
	memmove(&box.file[0], &box.file[1], 2 * sizeof(box.file[0]));
	box.nfile = 2;
	box.file[box.nfile++] = (struct pt_msg_info){ .uid = 9, .flags = PT_F_RECENT };
	assert_string_equal(store(1, "1:3", "FLAGS.SILENT", "\\Answered", NULL),
	                    "* 4 EXISTS\r\n* 1 RECENT\r\n"
	                    "t OK Store completed.\r\n");
	assert_int_equal(box.file[0].flags, PT_F_ANSWERED);
	assert_int_equal(box.file[1].flags, PT_F_ANSWERED);
	assert_int_equal(box.file[2].flags, PT_F_RECENT);
	close_session();
}

static void
test_absolute_store_over_concurrent_change(void **state)
{
	(void)state;
	open_session();
	assert_string_equal(store(0, "1", "+FLAGS.SILENT", "\\Seen", NULL), "t OK Store completed.\r\n");
	/* Another session clears it while we store: our list still says
	 * \Seen, so FLAGS (\Seen) looks like no change, but the file needs it. */
	race.armed = 1;
	race.uid = 1;
	race.flags = 0;
	assert_string_equal(store(0, "1", "FLAGS", "\\Seen", NULL),
	                    "* 1 FETCH (FLAGS (\\Seen))\r\nt OK Store completed.\r\n");
	assert_int_equal(box.file[0].flags, PT_F_SEEN);
	close_session();
}

static void
test_remove_keyword_made_elsewhere(void **state)
{
	(void)state;
	open_session();
	/* Another session made keyword Junk and set it on message 1. */
	snprintf(box.kw[box.nkw_file++], sizeof(box.kw[0]), "Junk");
	box.file[0].keywords = 1;
	assert_string_equal(store(0, "1", "-FLAGS", "Junk", NULL),
	                    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft Junk)\r\n"
	                    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft Junk \\*)] "
	                    "Flags permitted.\r\n"
	                    "* 1 FETCH (FLAGS (Junk))\r\n* 1 FETCH (FLAGS ())\r\nt OK Store completed.\r\n");
	assert_int_equal(box.file[0].keywords, 0);
	close_session();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_store_echoes),
		cmocka_unit_test(test_silent_tells_concurrent_change),
		cmocka_unit_test(test_expunged_elsewhere_not_echoed),
		cmocka_unit_test(test_uid_store_after_expunge_and_delivery),
		cmocka_unit_test(test_absolute_store_over_concurrent_change),
		cmocka_unit_test(test_remove_keyword_made_elsewhere),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
