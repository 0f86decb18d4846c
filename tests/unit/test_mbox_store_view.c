/* The mailbox store's per-open list without its own copy: the list stays
 * as of the last sync while another open expunges or changes flags (read,
 * set_flags and expunge in between), \Recent per open, info() answers held
 * together, the index mapped and shared by opens (and after a delivery),
 * a damaged or old-format index ignored, and the index's briefs. */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#ifdef __SANITIZE_ADDRESS__
/* The ASan runtime's count (its allocator bypasses mallinfo). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#include "mbox/mbox.h"
#include "mbox/mbox_store.h"
#include "postern/mailbox.h"

#include "mstore_fixture.h"

static void
deliver(struct fx *f, const char *data)
{
	struct pt_delivery d = { "Q1", "sender@example.com", "u1@example.com", NULL, &f->u, data,
		strlen(data), time(NULL) };
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_int_equal(st.code, 0);
}

/* n messages as a local delivery agent writes them (no X-UID yet). */
static void
write_mbox(const char *path, unsigned n)
{
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	for (unsigned i = 0; i < n; i++)
		fprintf(fp,
		        "From s%u@example.com  Sat Nov 28 06:53:10 2026\n"
		        "From: s%u@example.com\nSubject: message %u\n\nbody %u\n\n",
		        i, i, i, i);
	fclose(fp);
}

static size_t
heap_in_use(void)
{
#ifdef __SANITIZE_ADDRESS__
	return __sanitizer_get_current_allocated_bytes();
#else
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
#endif
}

static int
can_read(struct pt_mbox *mb, uint32_t uid, struct pt_status *st)
{
	struct pt_msg_text t;
	if (ops->read(mb, uid, &t, st) != 0)
		return 0;
	ops->release(mb, &t);
	return 1;
}

/* Another open expunges and changes flags: this open's list (count,
 * info, find, \Recent) stays as of its sync through a read, a flag change
 * and a failed read, and moves at the next sync. */
static void
test_list_stays_until_sync(void **state)
{
	struct fx *f = *state;
	deliver(f, "Subject: 1\n\none\n");
	deliver(f, "Subject: 2\n\ntwo\n");
	deliver(f, "Subject: 3\n\nthree\n");
	struct pt_status st;
	int changed;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	struct pt_mbox *b = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	assert_non_null(b);
	for (size_t i = 0; i < 3; i++) {
		assert_true(ops->info(a, i)->flags & PT_F_RECENT);
		assert_false(ops->info(b, i)->flags & PT_F_RECENT);
	}
	uint32_t two = 2;
	assert_int_equal(ops->expunge(b, &two, 1, &st), 0);
	struct pt_flag_update u1 = { 1, PT_F_ANSWERED, 0 };
	assert_int_equal(ops->set_flags(b, &u1, 1, &st), 0);
	assert_int_equal(ops->sync(b, &changed, &st), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(ops->count(b), 2);

	/* a has not synced: same three messages. */
	assert_true(can_read(a, 3, &st));
	assert_int_equal(ops->count(a), 3);
	assert_int_equal(ops->info(a, 1)->uid, 2);
	assert_int_equal(ops->find(a, 2), 1);
	assert_int_equal(ops->info(a, 0)->flags, PT_F_RECENT);
	assert_false(can_read(a, 2, &st));
	assert_string_equal(st.dsn, "NONEXISTENT");
	struct pt_flag_update u3 = { 3, PT_F_SEEN, 0 };
	assert_int_equal(ops->set_flags(a, &u3, 1, &st), 0);
	assert_int_equal(ops->count(a), 3);
	assert_int_equal(ops->info(a, 2)->flags, PT_F_SEEN | PT_F_RECENT);
	assert_int_equal(ops->info(a, 1)->uid, 2);
	assert_int_equal(ops->uidnext(a), 4);

	assert_int_equal(ops->sync(a, &changed, &st), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(ops->count(a), 2);
	assert_int_equal(ops->find(a, 2), (size_t)-1);
	assert_int_equal(ops->info(a, 0)->flags, PT_F_ANSWERED | PT_F_RECENT);
	assert_int_equal(ops->info(a, 1)->flags, PT_F_SEEN | PT_F_RECENT);
	assert_int_equal(ops->sync(a, &changed, &st), 0);
	assert_int_equal(changed, 0);

	/* Only this open's own change: its list is the folder's again. */
	struct pt_flag_update u3b = { 3, PT_F_SEEN | PT_F_FLAGGED, 0 };
	assert_int_equal(ops->set_flags(a, &u3b, 1, &st), 0);
	assert_null(a->snap);
	assert_int_equal(ops->info(a, 1)->flags, PT_F_SEEN | PT_F_FLAGGED | PT_F_RECENT);
	assert_int_equal(ops->sync(b, &changed, &st), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(ops->info(b, 1)->flags, PT_F_SEEN | PT_F_FLAGGED);
	ops->close(a);
	ops->close(b);
}

/* A read-only open keeps seeing \Recent where no read-write open took
 * it yet, and its list too stays put through another open's expunge. */
static void
test_readonly_recent_and_list(void **state)
{
	struct fx *f = *state;
	deliver(f, "Subject: 1\n\none\n");
	deliver(f, "Subject: 2\n\ntwo\n");
	struct pt_status st;
	int changed;
	struct pt_mbox *ro = ops->open(f->ms, "INBOX", 1, &st);
	assert_non_null(ro);
	assert_true(ops->info(ro, 0)->flags & PT_F_RECENT);
	assert_true(ops->info(ro, 1)->flags & PT_F_RECENT);
	struct pt_mbox *rw = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(rw);
	uint32_t one = 1;
	assert_int_equal(ops->expunge(rw, &one, 1, &st), 0);
	assert_true(can_read(ro, 2, &st));
	assert_int_equal(ops->count(ro), 2);
	assert_true(ops->info(ro, 1)->flags & PT_F_RECENT);
	assert_int_equal(ops->sync(ro, &changed, &st), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(ops->count(ro), 1);
	assert_int_equal(ops->info(ro, 0)->uid, 2);
	assert_false(ops->info(ro, 0)->flags & PT_F_RECENT);
	ops->close(ro);
	ops->close(rw);
}

/* info() answers are copies: a caller may hold several at once. */
static void
test_info_answers_held_together(void **state)
{
	struct fx *f = *state;
	deliver(f, "Subject: 1\n\none\n");
	deliver(f, "Subject: 2\n\ntwo\n");
	deliver(f, "Subject: 3\n\nthree\n");
	struct pt_status st;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	const struct pt_msg_info *p0 = ops->info(a, 0), *p1 = ops->info(a, 1), *p2 = ops->info(a, 2);
	assert_true(can_read(a, 2, &st));
	assert_int_equal(p0->uid, 1);
	assert_int_equal(p1->uid, 2);
	assert_int_equal(p2->uid, 3);
	assert_true(p0->size > 0 && p0->internal_date > 0);
	assert_null(ops->info(a, 3));
	ops->close(a);
}

/* Opens of an indexed folder map the index instead of copying the list:
 * the heap grows by far less than a record per message, and neither
 * writes the unchanged folder; after a delivery that one open wrote, the
 * next open's sync maps the new index too. */
static void
test_index_mapped_by_opens(void **state)
{
	struct fx *f = *state;
	enum { N = 3000 };
	write_mbox(f->inbox, N);
	struct pt_status st;
	int changed;
	struct pt_mbox *first = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(first);
	assert_int_equal(ops->count(first), N);
	assert_null(first->f.map);       /* parsed, UIDs written */
	assert_true(first->f.cap == first->f.n);
	ops->close(first);
	char idx[700];
	snprintf(idx, sizeof idx, "%s/.imap/INBOX/postern.index", f->root);
	struct stat mb0, ix0, mb1, ix1;
	assert_int_equal(stat(f->inbox, &mb0), 0);
	assert_int_equal(stat(idx, &ix0), 0);

	size_t before = heap_in_use();
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	struct pt_mbox *b = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	assert_non_null(b);
	size_t grown = heap_in_use() - before;
	assert_non_null(a->f.map);
	assert_non_null(b->f.map);
	/* Nothing to write: the same index file (one set of shared pages)
	 * and an untouched mbox (other opens need not reload). */
	assert_int_equal(stat(f->inbox, &mb1), 0);
	assert_int_equal(stat(idx, &ix1), 0);
	assert_true(mb1.st_mtim.tv_sec == mb0.st_mtim.tv_sec &&
	            mb1.st_mtim.tv_nsec == mb0.st_mtim.tv_nsec);
	assert_int_equal(ix1.st_ino, ix0.st_ino);
	assert_null(a->snap);
	/* The old per-open list and copy: (96 + 40) B a message each. */
	print_message("heap per open of %d messages: %zu B\n", N, grown / 2);
	assert_true(grown / 2 < 4096 + (size_t)N * 2);
	assert_int_equal(ops->info(b, N - 1)->uid, N);
	assert_false(ops->info(b, N - 1)->flags & PT_F_RECENT);

	deliver(f, "Subject: new\n\nnew\n");
	assert_int_equal(ops->sync(a, &changed, &st), 0);
	assert_int_equal(changed, 2);   /* only a new message at the end */
	assert_int_equal(ops->count(a), N + 1);
	assert_true(ops->info(a, N)->flags & PT_F_RECENT);
	assert_int_equal(ops->sync(b, &changed, &st), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(ops->count(b), N + 1);
	assert_non_null(b->f.map);
	assert_false(ops->info(b, N)->flags & PT_F_RECENT);
	assert_int_equal(ops->info(b, N)->uid, N + 1);
	/* Flags change in the mapping (a private copy of one page). */
	struct pt_flag_update u = { 5, PT_F_SEEN, 0 };
	assert_int_equal(ops->set_flags(b, &u, 1, &st), 0);
	assert_int_equal(ops->info(b, 4)->flags, PT_F_SEEN);
	assert_int_equal(ops->sync(a, &changed, &st), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(ops->info(a, 4)->flags, PT_F_SEEN);
	ops->close(a);
	ops->close(b);
}

/* A damaged index, or one in the old format, is parsed around: same
 * UIDs, nothing mapped. */
static void
test_bad_index_ignored(void **state)
{
	struct fx *f = *state;
	write_mbox(f->inbox, 50);
	struct pt_status st;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	uint32_t v = ops->uidvalidity(a);
	uint32_t gone = 7;
	assert_int_equal(ops->expunge(a, &gone, 1, &st), 0);
	ops->close(a);
	char idx[700];
	snprintf(idx, sizeof idx, "%s/.imap/INBOX/postern.index", f->root);
	struct stat sb;
	assert_int_equal(stat(idx, &sb), 0);
	FILE *fp = fopen(idx, "r+b");
	assert_non_null(fp);
	fseek(fp, sb.st_size - 20, SEEK_SET);
	fputc(0x55, fp);
	fclose(fp);
	for (int round = 0; round < 2; round++) {
		a = ops->open(f->ms, "INBOX", 0, &st);
		assert_non_null(a);
		assert_null(a->f.map);
		assert_int_equal(ops->count(a), 49);
		assert_int_equal(ops->info(a, 6)->uid, 8);
		assert_int_equal(ops->uidvalidity(a), v);
		ops->close(a);
		/* Then the previous format's magic on a good file. */
		fp = fopen(idx, "r+b");
		assert_non_null(fp);
		fputs("PTIDX002", fp);
		fclose(fp);
	}
}

/* The index's check mark (postern.checked) lets a process skip the pass
 * over an index another process wrote or checked; a mark that is not
 * intact is no such licence: an index damaged in place (its identity,
 * inode, size and mtime, kept) is checked again and parsed around. A
 * child writes index and mark, so this process has checked nothing. */
static void
test_check_mark_not_intact(void **state)
{
	struct fx *f = *state;
	write_mbox(f->inbox, 50);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct pt_status st;
		struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
		int ok = a != NULL && ops->count(a) == 50;
		ops->close(a);
		_exit(ok ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	char idx[700], mark[700];
	snprintf(idx, sizeof idx, "%s/.imap/INBOX/postern.index", f->root);
	snprintf(mark, sizeof mark, "%s/.imap/INBOX/postern.checked", f->root);
	struct stat sb, mb;
	assert_int_equal(stat(idx, &sb), 0);
	if (stat(mark, &mb) != 0)
		skip();   /* no boot id here: no mark */
	/* A record's byte changed, the file's identity restored. */
	int fd = open(idx, O_RDWR);
	assert_true(fd >= 0);
	unsigned char c;
	assert_int_equal(pread(fd, &c, 1, sb.st_size - 20), 1);
	c ^= 0x55;
	assert_int_equal(pwrite(fd, &c, 1, sb.st_size - 20), 1);
	close(fd);
	struct timespec ts[2] = { sb.st_atim, sb.st_mtim };
	assert_int_equal(utimensat(AT_FDCWD, idx, ts, 0), 0);
	/* The mark's boot id damaged. */
	fd = open(mark, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "X", 1, 10), 1);
	close(fd);
	struct pt_status st;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	assert_null(a->f.map);           /* parsed, not mapped */
	assert_int_equal(ops->count(a), 50);
	assert_int_equal(ops->info(a, 49)->uid, 50);
	ops->close(a);
}

/* A record's byte changed in place, the file's size and mtime put back
 * (as the folder's owner can). */
static void
doctor_index(const char *idx)
{
	struct stat sb;
	assert_int_equal(stat(idx, &sb), 0);
	int fd = open(idx, O_RDWR);
	assert_true(fd >= 0);
	unsigned char c;
	assert_int_equal(pread(fd, &c, 1, sb.st_size - 20), 1);
	c ^= 0x55;
	assert_int_equal(pwrite(fd, &c, 1, sb.st_size - 20), 1);
	close(fd);
	struct timespec ts[2] = { sb.st_atim, sb.st_mtim };
	assert_int_equal(utimensat(AT_FDCWD, idx, ts, 0), 0);
}

/* Opened in a child (no knowledge of this process's): 1 when the index
 * was believed (mapped), 0 when it was parsed around. */
static int
child_maps(struct fx *f)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct pt_status st;
		struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
		int ok = a != NULL && ops->count(a) == 50 && ops->info(a, 49)->uid == 50;
		int mapped = a != NULL && a->f.map != NULL;
		ops->close(a);
		_exit(!ok ? 2 : mapped);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 2);
	return WEXITSTATUS(status);
}

/* The index's owner can change it in place and put its size and mtime
 * back, and write postern.checked: neither makes a load skip the checks
 * of the records it then trusts. The ctime (which only root can set)
 * is part of the identity, in this process's knowledge and in the mark,
 * and a mark rewritten to name the doctored file fails its HMAC. */
static void
test_mark_not_forgeable(void **state)
{
	struct fx *f = *state;
	write_mbox(f->inbox, 50);
	char idx[700], mark[700];
	snprintf(idx, sizeof idx, "%s/.imap/INBOX/postern.index", f->root);
	snprintf(mark, sizeof mark, "%s/.imap/INBOX/postern.checked", f->root);
	struct pt_status st;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	ops->close(a);
	struct stat mb;
	if (stat(mark, &mb) != 0)
		skip();   /* no boot id here: no mark */
	assert_int_equal(child_maps(f), 1);   /* a good mark is believed */
	a = ops->open(f->ms, "INBOX", 0, &st);   /* known to this process too */
	assert_non_null(a->f.map);
	ops->close(a);

	/* Changed in place: this process no longer knows it (the open
	 * parses around it and saves a good index), nor does the mark. */
	doctor_index(idx);
	a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	assert_null(a->f.map);
	assert_int_equal(ops->count(a), 50);
	ops->close(a);
	doctor_index(idx);
	assert_int_equal(child_maps(f), 0);

	/* Again, with the mark rewritten to name the doctored file. Its
	 * layout: magic 8, boot id 40, then dev, ino, size, mtime s/ns,
	 * ctime s/ns (8 bytes each), dirty, not_old, HMAC 32. */
	a = ops->open(f->ms, "INBOX", 0, &st);   /* saves a good index again */
	ops->close(a);
	doctor_index(idx);
	struct stat sb;
	assert_int_equal(stat(idx, &sb), 0);
	assert_int_equal(stat(mark, &mb), 0);
	assert_int_equal(mb.st_size, 152);
	int64_t id[7] = { (int64_t)sb.st_dev,        (int64_t)sb.st_ino,        (int64_t)sb.st_size,
		          (int64_t)sb.st_mtim.tv_sec, (int64_t)sb.st_mtim.tv_nsec, (int64_t)sb.st_ctim.tv_sec,
		          (int64_t)sb.st_ctim.tv_nsec };
	int fd = open(mark, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, id, sizeof id, 48), (ssize_t)sizeof id);
	close(fd);
	assert_int_equal(child_maps(f), 0);
}

/* The list in brief (what SELECT reads of every message) equals info()
 * for each message; *from_index: how many came from the index's briefs
 * rather than the records. */
static void
briefs_match(struct pt_mbox *mb, size_t *from_index)
{
	size_t n = ops->count(mb);
	struct pt_msg_brief *out = calloc(n + 1, sizeof *out), *tmp = calloc(n + 1, sizeof *tmp);
	unsigned char *got = calloc(n + 1, 1);
	assert_non_null(out);
	assert_non_null(tmp);
	assert_non_null(got);
	ops->briefs(mb, 0, n, out);
	for (size_t i = 0; i < n; i++) {
		const struct pt_msg_info *m = ops->info(mb, i);
		assert_int_equal(out[i].uid, m->uid);
		assert_int_equal(out[i].flags, m->flags);
		assert_int_equal(out[i].keywords, m->keywords);
		assert_int_equal(out[i].modseq, m->modseq);
	}
	ms_index_briefs(&mb->f, 0, n, tmp, got);
	*from_index = 0;
	for (size_t i = 0; i < n; i++)
		*from_index += got[i];
	free(out);
	free(tmp);
	free(got);
}

/* SELECT reads the index's briefs of records no one changed since the
 * load, and the records of those a flag change, the flag log, a
 * keyword, \Recent or a delivery changed; an index of the previous
 * format (no briefs) still loads. */
static void
test_briefs_are_the_list(void **state)
{
	struct fx *f = *state;
	enum { N = 3000 };
	write_mbox(f->inbox, N);
	struct pt_status st;
	int changed;
	size_t got;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	ops->close(a);

	a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	assert_non_null(a->f.brief);
	briefs_match(a, &got);
	assert_int_equal(got, N);
	/* Another open changes a flag and a keyword: its own list... */
	struct pt_mbox *b = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(b);
	int kw = ops->keyword_index(b, "$Label1", 1);
	assert_true(kw >= 0);
	struct pt_flag_change c[2] = { { 5, PT_F_SEEN, 0, 0, 0 }, { 2000, 0, 0, 1ull << kw, 0 } };
	assert_int_equal(ops->change_flags(b, c, 2, &st), 0);
	briefs_match(b, &got);
	assert_int_equal(got, N - 2);
	assert_int_equal(ops->info(b, 4)->flags, PT_F_SEEN);
	/* ...and this one's after its sync. */
	assert_int_equal(ops->sync(a, &changed, &st), 0);
	assert_int_equal(changed, 1);
	briefs_match(a, &got);
	assert_int_equal(ops->info(a, 1999)->keywords, 1ull << kw);
	/* A flag alone goes to the flag log: an open replays it over the
	 * index's records. */
	struct pt_flag_change c2 = { 77, PT_F_FLAGGED, 0, 0, 0 };
	assert_int_equal(ops->change_flags(b, &c2, 1, &st), 0);
	struct pt_mbox *d = ops->open(f->ms, "INBOX", 1, &st);
	assert_non_null(d);
	briefs_match(d, &got);
	assert_int_equal(got, N - 1);
	assert_int_equal(ops->info(d, 76)->flags, PT_F_FLAGGED);
	ops->close(d);
	ops->close(a);
	ops->close(b);

	/* Written into the mbox and the index: a new open has it all in
	 * brief. */
	a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	briefs_match(a, &got);
	assert_int_equal(got, N);
	assert_int_equal(ops->info(a, 4)->flags, PT_F_SEEN);
	ops->close(a);

	/* A delivery: \Recent for the first read-write open, by state for a
	 * read-only one. */
	deliver(f, "Subject: new\n\nnew\n");
	struct pt_mbox *ro = ops->open(f->ms, "INBOX", 1, &st);
	assert_non_null(ro);
	briefs_match(ro, &got);
	assert_true(ops->info(ro, N)->flags & PT_F_RECENT);
	a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	briefs_match(a, &got);
	assert_true(ops->info(a, N)->flags & PT_F_RECENT);
	assert_false(ops->info(a, 0)->flags & PT_F_RECENT);
	ops->close(ro);

	/* The previous format: loaded (not parsed), read through the
	 * records. */
	uint32_t v = ops->uidvalidity(a);
	assert_int_equal(ms_index_save_as(&a->f, MS_INDEX_OLD), 0);
	ops->close(a);
	a = ops->open(f->ms, "INBOX", 1, &st);
	assert_non_null(a);
	assert_non_null(a->f.map);
	assert_null(a->f.brief);
	assert_int_equal(ops->count(a), N + 1);
	assert_int_equal(ops->uidvalidity(a), v);
	briefs_match(a, &got);
	assert_int_equal(got, 0);
	assert_int_equal(ops->info(a, 4)->flags, PT_F_SEEN);
	ops->close(a);

	/* A brief that is not its record's (checksum right) is refused at a
	 * load that checks the index: written by a child, so this process
	 * has not checked it, and without its mark. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct pt_mbox *w = ops->open(f->ms, "INBOX", 1, &st);
		_exit(w != NULL && ms_index_save_as(&w->f, MS_INDEX_SKEWED) == 0 ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	char mark[700];
	snprintf(mark, sizeof mark, "%s/.imap/INBOX/postern.checked", f->root);
	unlink(mark);
	a = ops->open(f->ms, "INBOX", 1, &st);
	assert_non_null(a);
	assert_null(a->f.map);   /* parsed around */
	briefs_match(a, &got);
	assert_false(ops->info(a, 0)->flags & PT_F_FLAGGED);
	ops->close(a);
}

/* MS_PLAIN (a parsed header a rewrite need not read) is this process's
 * word only: an index never carries it, so no later open trusts a header
 * it did not parse itself. */
static void
test_plain_only_in_memory(void **state)
{
	struct fx *f = *state;
	enum { N = 40 };
	write_mbox(f->inbox, N);
	struct pt_status st;
	struct mbox_lock lk;
	int ch;
	for (int round = 0; round < 2; round++) {
		/* First parsed (every header plain), then from the index the
		 * first round saved. */
		struct ms_folder mf;
		memset(&mf, 0, sizeof mf);
		assert_int_equal(ms_folder_init(&mf, f->root, "INBOX", f->inbox, &f->s, &st), 0);
		assert_int_equal(ms_folder_lock(&mf, &lk, 0, &st), 0);
		assert_int_equal(ms_folder_load(&mf, &ch, &st), 0);
		ms_folder_unlock(&mf, &lk);
		assert_int_equal(mf.n, N);
		size_t plain = 0;
		for (size_t i = 0; i < mf.n; i++)
			plain += (mf.m[i].state & MS_PLAIN) != 0;
		assert_int_equal(plain, round == 0 ? N : 0);
		if (round == 0) {
			assert_null(mf.map);
			assert_int_equal(ms_index_save(&mf), 0);
			for (size_t i = 0; i < mf.n; i++)
				assert_false(mf.m[i].state & MS_PLAIN);
		} else {
			assert_non_null(mf.map);
		}
		ms_folder_free(&mf);
	}
	/* The write of a read-write open (the index's records: headers
	 * read) gives UIDs 1..N. */
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	assert_int_equal(ops->count(a), N);
	assert_int_equal(ops->info(a, N - 1)->uid, N);
	ops->close(a);
}

/* The append log's batch layout (mbox_store_index.c), to doctor one. */
struct t_state {
	uint64_t dev, ino, size;
	int64_t mtime_s, mtime_ns;
};
struct t_head {
	char magic[8];
	struct t_state pre, post;
	uint32_t uidvalidity, pre_n, pre_uidnext, uidnext;
	uint32_t nrec, kwbytes, base_ok, pad;
	uint64_t highest_modseq;
	uint64_t sum;
};
struct t_rec {
	uint64_t at;
	struct ms_msg r;
};

/* The log's one batch with the keyword name "Forged" added, its last
 * record's UID set to uid; the checksum made right. */
static void
doctor_tail(const char *path, const char *orig, size_t olen, uint32_t uid)
{
	struct t_head h;
	assert_true(olen >= sizeof h);
	memcpy(&h, orig, sizeof h);
	assert_memory_equal(h.magic, "PTTAIL01", 8);
	size_t kwpad = (h.kwbytes + 7u) & ~7u;
	assert_int_equal(olen, sizeof h + kwpad + h.nrec * sizeof(struct t_rec));
	struct pt_strbuf b = { 0 };
	pt_strbuf_put(&b, &h, sizeof h);
	pt_strbuf_put(&b, orig + sizeof h, h.kwbytes);
	pt_strbuf_put(&b, "Forged", 7);
	h.kwbytes += 7;
	static const char zeros[8];
	pt_strbuf_put(&b, zeros, (8 - h.kwbytes % 8) % 8);
	size_t at = b.len;
	pt_strbuf_put(&b, orig + sizeof h + kwpad, h.nrec * sizeof(struct t_rec));
	struct t_rec last;
	memcpy(&last, b.p + at + (h.nrec - 1) * sizeof last, sizeof last);
	last.r.info.uid = uid;
	memcpy(b.p + at + (h.nrec - 1) * sizeof last, &last, sizeof last);
	h.sum = ms_sum64(0x7461696cull, b.p + sizeof h, b.len - sizeof h);
	memcpy(b.p, &h, sizeof h);
	assert_false(b.oom);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(b.p, 1, b.len, fp), b.len);
	fclose(fp);
	pt_strbuf_free(&b);
}

static int
has_keyword(const struct pt_mbox *mb, const char *name)
{
	for (size_t i = 0; i < mb->f.nkw; i++)
		if (strcmp(mb->f.kw[i], name) == 0)
			return 1;
	return 0;
}

/* A batch of the append log that a load refuses (a record with UID 0)
 * adds none of its keyword names to the folder's table; the same batch
 * with a sound record is taken, names and all. */
static void
test_refused_tail_batch_adds_no_keyword(void **state)
{
	struct fx *f = *state;
	write_mbox(f->inbox, 5);
	struct pt_status st;
	int changed;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	ops->close(a);
	a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	deliver(f, "Subject: new\n\nnew\n");
	assert_int_equal(ops->sync(a, &changed, &st), 0);
	assert_int_equal(ops->count(a), 6);
	ops->close(a);
	char tail[700];
	snprintf(tail, sizeof tail, "%s/.imap/INBOX/postern.tail", f->root);
	FILE *fp = fopen(tail, "rb");
	assert_non_null(fp);
	char orig[65536];
	size_t olen = fread(orig, 1, sizeof orig, fp);
	fclose(fp);
	for (int sound = 1; sound >= 0; sound--) {
		doctor_tail(tail, orig, olen, sound ? 6 : 0);
		/* A child: this process holds what it wrote in its own memory. */
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct pt_mbox *b = ops->open(f->ms, "INBOX", 1, &st);
			_exit(b == NULL ? 3 : ops->count(b) == 6 && has_keyword(b, "Forged") ? 1 : 0);
		}
		int ws;
		assert_int_equal(waitpid(pid, &ws, 0), pid);
		assert_true(WIFEXITED(ws));
		assert_int_equal(WEXITSTATUS(ws), sound ? 1 : 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_list_stays_until_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_recent_and_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_info_answers_held_together, setup, teardown),
		cmocka_unit_test_setup_teardown(test_index_mapped_by_opens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_index_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_mark_not_intact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_briefs_are_the_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mark_not_forgeable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plain_only_in_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_tail_batch_adds_no_keyword, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
