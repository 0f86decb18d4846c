/* The in-place rewrite (mbox_store_rewrite.c): the first write of a
 * pristine mbox gives the same bytes as the copying rewrite; a process
 * that dies at any step of it (also in the middle of a write), or a full
 * disk at any step, leaves a folder whose next open ends with exactly
 * those bytes; mail appended after such a crash stays; a damaged journal
 * is kept aside, never applied. */
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

#define MSTORE_TMP "/dev/shm"   /* hundreds of syncs per crash case */
#include "mstore_fixture.h"

static char *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	if (fp == NULL) {
		*len = 0;
		return NULL;
	}
	fseek(fp, 0, SEEK_END);
	long n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	char *p = malloc((size_t)n + 1);
	*len = fread(p, 1, (size_t)n, fp);
	p[*len] = '\0';
	fclose(fp);
	return p;
}

static void
put(const char *path, const char *p, size_t n)
{
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(p, 1, n, fp), n);
	fclose(fp);
}

/* A pristine mbox as local delivery writes it (no storage headers), with
 * the odd shapes a rewrite must keep: Content-Length, a header without a
 * body, a body quoting From, a big message, and a header section whose
 * last line has no LF before the next From_ line. */
static int with_status;        /* Status/X-Status lines in some headers */
static int with_odd;           /* 0xFF bytes and long runs of spaces in bodies */
static int with_bytes;         /* lines of mixed space runs and high bytes */

static char *
pristine(size_t n, size_t *len)
{
	struct pt_strbuf b = { 0 };
	for (size_t i = 0; i < n; i++) {
		char line[256];
		snprintf(line, sizeof line,
		         "From sender%zu@example.com  Sat Nov 28 06:%02zu:%02zu 2026\n"
		         "Return-Path: <sender%zu@example.com>\nSubject: message %zu\n"
		         "Message-ID: <%zu@example.com>\n",
		         i % 7, (i / 60) % 60, i % 60, i % 7, i, i);
		pt_strbuf_put(&b, line, strlen(line));
		/* Storage headers a reader honours and the rewrite moves: in
		 * the middle of a header (what follows moves down a little),
		 * and last. */
		if (with_status && i % 11 == 4 && i > 0)
			pt_strbuf_put(&b, "Status: O\nX-Mailer: t\n", 22);
		if (with_status && i % 11 == 7)
			pt_strbuf_put(&b, "X-Status: F\n", 12);
		if (i % 13 == 5) {
			pt_strbuf_put(&b, "Content-Length: 6\n\nshort\n\n", 26);
			continue;
		}
		if (i % 17 == 3) {
			pt_strbuf_put(&b, "\n", 1);
			continue;
		}
		pt_strbuf_put(&b, "\n", 1);
		size_t lines = 3 + (i * 7919) % 40 + (i == n / 2 ? 3000 : 0);
		for (size_t k = 0; k < lines; k++) {
			if (with_odd && k == 1) {
				/* What the journal's literal encoding escapes. */
				char odd[400];
				memset(odd, ' ', sizeof odd);
				odd[0] = odd[5] = (char)0xff;
				odd[sizeof odd - 1] = '\n';
				pt_strbuf_put(&b, odd, sizeof odd);
			}
			if (with_bytes && k < 3) {
				/* runs of every length of spaces and 0xFF
				 * bytes, next to each other and at line ends. */
				static const unsigned char alpha[] = { ' ', 0xff, 'a', 0x00, 0x80, '\t', 0xfe, ' ' };
				size_t m = 1 + (i * 31 + k * 7) % 700;
				for (size_t q = 0; q < m; q++) {
					size_t pick = (i * 131 + k * 17 + q * (q % 5 + 1)) % 97;
					unsigned char c = pick < 60 ? ' ' : alpha[pick % 8];
					pt_strbuf_put(&b, (const char *)&c, 1);
				}
				pt_strbuf_put(&b, "\n", 1);
			}
			snprintf(line, sizeof line, "%sbody line %zu of message %zu %.*s\n",
			         k == 2 ? ">From " : "", k, i, (int)(k % 50), "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
			pt_strbuf_put(&b, line, strlen(line));
		}
		pt_strbuf_put(&b, "\n", 1);
	}
	assert_false(b.oom);
	*len = b.len;
	return b.p;
}

/* The UIDVALIDITY in X-IMAPbase comes from a counter each try moves on,
 * the last UID there from mail added since: blank both to compare. */
static void
blank_validity(char *p, size_t len)
{
	char *b = memmem(p, len, "X-IMAPbase: ", 12);
	assert_non_null(b);
	for (b += 12; (*b >= '0' && *b <= '9') || *b == ' '; b++)
		if (*b != ' ')
			*b = '#';
}

/* The inbox holds want (elen bytes), validity blanked. */
static void
inbox_is(struct fx *f, const char *want, size_t elen)
{
	size_t glen;
	char *got = slurp(f->inbox, &glen);
	blank_validity(got, glen);
	assert_int_equal(glen, elen);
	assert_memory_equal(got, want, elen);
	free(got);
}

static char *
journal_path(struct fx *f, const char *suffix)
{
	static char p[700];
	snprintf(p, sizeof p, "%s/.imap/INBOX/postern.rewrite%s", f->root, suffix);
	return p;
}

/* Start again from the pristine text and no index. */
static void
reset(struct fx *f, const char *text, size_t len)
{
	char cmd[700];
	snprintf(cmd, sizeof cmd, "rm -rf '%s/.imap'", f->root);
	assert_int_equal(system(cmd), 0);
	put(f->inbox, text, len);
}

static size_t
open_count(struct fx *f)
{
	struct pt_status st;
	struct pt_mbox *mb = ops->open(f->ms, "INBOX", 0, &st);
	if (mb == NULL)
		return (size_t)-1;
	size_t n = ops->count(mb);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ops->info(mb, i)->uid, i + 1);
	ops->close(mb);
	return n;
}

static int fault_at = -1, fault_what, faults_asked;
/* The module's literal budget; the tests run without literals (every
 * run moved, every sync rule at work) unless they say otherwise. */
static size_t lit_default;

static int
hook(int step)
{
	faults_asked = step + 1;
	return step == fault_at ? fault_what : MS_FAULT_NONE;
}

/* The rewrite through the copy and in place: the same bytes. Returns
 * the expected text (validity blanked). */
static char *
expected(struct fx *f, const char *text, size_t len, size_t n, size_t *elen)
{
	reset(f, text, len);
	ms_rewrite_copy_only = 1;
	assert_int_equal(open_count(f), n);
	ms_rewrite_copy_only = 0;
	char *want = slurp(f->inbox, elen);
	blank_validity(want, *elen);
	reset(f, text, len);
	ms_rewrite_fault = hook;
	fault_at = -1;
	faults_asked = 0;
	assert_int_equal(open_count(f), n);
	ms_rewrite_fault = NULL;
	/* It really went the in-place way, and left no journal. */
	assert_true(faults_asked > (ms_rewrite_lit_max ? 2 : 10));
	assert_int_equal(access(journal_path(f, ""), F_OK), -1);
	size_t glen;
	char *got = slurp(f->inbox, &glen);
	blank_validity(got, glen);
	assert_int_equal(glen, *elen);
	assert_memory_equal(got, want, glen);
	free(got);
	return want;
}

static void
test_same_bytes_as_copy(void **state)
{
	struct fx *f = *state;
	size_t len, elen;
	char *text = pristine(400, &len);
	char *want = expected(f, text, len, 400, &elen);
	assert_true(elen > len);
	/* A second open changes nothing. */
	assert_int_equal(open_count(f), 400);
	size_t glen;
	char *got = slurp(f->inbox, &glen);
	blank_validity(got, glen);
	assert_memory_equal(got, want, elen);
	free(got);
	free(want);
	free(text);
}

/* Storage headers already there (Status, X-Status): kept fields that
 * move down by a few bytes are still above their old place after the
 * first message, so the rewrite stays in place; the result is the
 * copying rewrite's, and crashes at every step end there too. */
static void
test_storage_headers_in_place(void **state)
{
	struct fx *f = *state;
	with_status = 1;
	size_t len, elen;
	char *text = pristine(150, &len);
	char *want = expected(f, text, len, 150, &elen);
	assert_non_null(memmem(want, elen, "X-Status: F", 11));
	free(want);
	free(text);
	with_status = 0;
}

/* A field of the first message that would move down (its Status line is
 * dropped from the middle, nothing before it grew): the copying rewrite
 * does it, same result. */
static void
test_moves_down_takes_the_copy(void **state)
{
	struct fx *f = *state;
	const char text[] = "From a@b  Sat Nov 28 06:53:10 2026\nSubject: one\nStatus: O\n"
	                    "X-Mailer: a long line that moves down\n\nbody one\n\n"
	                    "From a@b  Sat Nov 28 06:53:11 2026\nSubject: two\n\nbody two\n";
	reset(f, text, sizeof text - 1);
	ms_rewrite_copy_only = 1;
	assert_int_equal(open_count(f), 2);
	ms_rewrite_copy_only = 0;
	size_t elen;
	char *want = slurp(f->inbox, &elen);
	blank_validity(want, elen);
	reset(f, text, sizeof text - 1);
	ms_rewrite_fault = hook;
	faults_asked = 0;
	fault_at = -1;
	assert_int_equal(open_count(f), 2);
	ms_rewrite_fault = NULL;
	assert_int_equal(faults_asked, 0);
	inbox_is(f, want, elen);
	free(want);
}

/* mbox_rewrite_copy_below: a region smaller than it keeps the full
 * recovery copy (which also survives a power loss), one at least as big
 * goes in place; both give the same bytes. */
static void
test_copy_below_threshold(void **state)
{
	struct fx *f = *state;
	size_t len, elen;
	char *text = pristine(120, &len);
	char *want = expected(f, text, len, 120, &elen);
	for (int big = 0; big <= 1; big++) {
		struct pt_status st;
		ops->store_close(f->ms);
		f->s.rewrite_copy_below = big ? (off_t)len : (off_t)len + 1;
		f->ms = mbox_store_open_with(&f->s, &f->u, &st);
		assert_non_null(f->ms);
		reset(f, text, len);
		ms_rewrite_fault = hook;
		fault_at = -1;
		faults_asked = 0;
		assert_int_equal(open_count(f), 120);
		ms_rewrite_fault = NULL;
		if (big)
			assert_true(faults_asked > 10);
		else
			assert_int_equal(faults_asked, 0);
		inbox_is(f, want, elen);
	}
	f->s.rewrite_copy_below = 0;
	free(want);
	free(text);
}

/* The child opens the folder and dies at step k (MS_FAULT_EXIT: before
 * the step; HALF: in the middle of a chunk's write). 1: it died, 0: the
 * rewrite finished first. */
static int
crash_at(struct fx *f, int k, int what)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fault_at = k;
		fault_what = what;
		ms_rewrite_fault = hook;
		struct pt_status st;
		struct pt_mbox *mb = ops->open(f->ms, "INBOX", 0, &st);
		if (mb)
			ops->close(mb);
		_exit(3);
	}
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFEXITED(ws));
	return WEXITSTATUS(ws) == 0;
}

static void
check_result(struct fx *f, const char *want, size_t elen, size_t n)
{
	assert_int_equal(open_count(f), n);
	inbox_is(f, want, elen);
	assert_int_equal(access(journal_path(f, ""), F_OK), -1);
	assert_int_equal(access(journal_path(f, ".tmp"), F_OK), -1);
}

static void
crash_everywhere(struct fx *f, int what, int min_steps)
{
	size_t len, elen;
	char *text = pristine(120, &len);
	char *want = expected(f, text, len, 120, &elen);
	int steps = faults_asked, died = 0;
	assert_true(steps > min_steps);
	/* Every step of the rewrite (a HALF only cuts the chunk writes). */
	for (int k = 0; k <= steps; k++) {
		reset(f, text, len);
		int d = crash_at(f, k, what);
		if (what == MS_FAULT_EXIT)
			assert_int_equal(d, k < steps);
		died += d;
		check_result(f, want, elen, 120);
	}
	assert_true(died >= (what == MS_FAULT_EXIT ? steps : 10));
	free(want);
	free(text);
}

static void
test_crash_at_every_step(void **state)
{
	crash_everywhere(*state, MS_FAULT_EXIT, 20);
}

static void
test_crash_in_every_write(void **state)
{
	crash_everywhere(*state, MS_FAULT_HALF, 20);
}

static void
test_crash_in_every_write_storage_headers(void **state)
{
	with_status = 1;
	crash_everywhere(*state, MS_FAULT_HALF, 20);
	with_status = 0;
}

static const char *
other_boot(void)
{
	return "00000000-0000-4000-8000-000000000000";
}

/* A power cut at any step, every write of the process on the disk but
 * the journal as last synced (the unlink of a finished one lost too):
 * the recovery in the next boot goes back to the synced frontier and
 * must find the sources of what it redoes intact; a finished rewrite's
 * journal that comes back changes nothing. */
static void
power_cut_everywhere(struct fx *f)
{
	size_t len, elen;
	char *text = pristine(120, &len);
	char *want = expected(f, text, len, 120, &elen);
	int steps = faults_asked;
	for (int what = MS_FAULT_EXIT; what <= MS_FAULT_HALF; what++) {
		/* Cut writes at every third step (the suite's time limit). */
		for (int k = 0; k < steps; k += what == MS_FAULT_HALF ? 3 : 1) {
			reset(f, text, len);
			int d = crash_at(f, k, what);
			if (what == MS_FAULT_EXIT)
				assert_true(d);
			ms_rewrite_boot = other_boot;
			check_result(f, want, elen, 120);
			ms_rewrite_boot = ms_boot_id;
		}
	}
	free(want);
	free(text);
}

static void
test_power_cut_at_every_step(void **state)
{
	power_cut_everywhere(*state);
}

static void
test_power_cut_with_literals(void **state)
{
	ms_rewrite_lit_max = 6000;
	power_cut_everywhere(*state);
	ms_rewrite_lit_max = 0;
}


/* a power cut that also loses mbox writes. The hook keeps the
 * mbox as it was when the journal last recorded a sync (state or synced
 * frontier changed since the step before: the mbox was synced then), and
 * at the crash step puts back, page by page, that image or the current
 * text (writeback in any order, none or some of the writes since the
 * sync on the disk); the next boot's recovery must end with the same
 * bytes. */
static struct fx *pc_fx;
static char *pc_snap;
static size_t pc_snap_len;
static uint64_t pc_key = UINT64_MAX, pc_rng;
static int pc_mode;            /* 0: no page since the sync; 1: random pages */

static uint64_t
pc_journal_key(void)
{
	int fd = open(journal_path(pc_fx, ""), O_RDONLY);
	if (fd < 0)
		return UINT64_MAX;
	uint64_t best_seq = 0, key = UINT64_MAX;
	for (int i = 0; i < 2; i++) {
		uint64_t sl[4];
		if (pread(fd, sl, sizeof sl, 512 + i * 256) == (ssize_t)sizeof sl && sl[0] > best_seq) {
			best_seq = sl[0];
			key = sl[1] << 56 ^ sl[3];      /* state, synced */
		}
	}
	close(fd);
	return key;
}

static int
pc_hook(int step)
{
	faults_asked = step + 1;
	uint64_t key = pc_journal_key();
	if (key != UINT64_MAX && key != pc_key) {
		free(pc_snap);
		pc_snap = slurp(pc_fx->inbox, &pc_snap_len);
		pc_key = key;
	}
	if (step != fault_at)
		return MS_FAULT_NONE;
	if (pc_snap) {
		size_t clen;
		char *cur = slurp(pc_fx->inbox, &clen);
		for (size_t at = 0; at < clen && at < pc_snap_len; at += 4096) {
			size_t n = clen - at < 4096 ? clen - at : 4096;
			if (n > pc_snap_len - at)
				n = pc_snap_len - at;
			pc_rng = pc_rng * 6364136223846793005ull + 1442695040888963407ull;
			if (pc_mode == 0 || (pc_rng >> 40) & 1)
				memcpy(cur + at, pc_snap + at, n);
		}
		put(pc_fx->inbox, cur, clen);
		free(cur);
	}
	return MS_FAULT_EXIT;
}

static void
pc_crash_at(struct fx *f, int k)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pc_fx = f;
		pc_snap = NULL;
		pc_key = UINT64_MAX;
		pc_rng = (uint64_t)k * 977 + 13;
		fault_at = k;
		ms_rewrite_fault = pc_hook;
		struct pt_status st;
		struct pt_mbox *mb = ops->open(f->ms, "INBOX", 0, &st);
		if (mb)
			ops->close(mb);
		_exit(3);
	}
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFEXITED(ws));
}

static void
power_cut_losing_pages(struct fx *f)
{
	size_t len, elen;
	char *text = pristine(120, &len);
	char *want = expected(f, text, len, 120, &elen);
	int steps = faults_asked;
	for (pc_mode = 0; pc_mode <= 1; pc_mode++) {
		for (int k = 0; k < steps; k++) {
			reset(f, text, len);
			pc_crash_at(f, k);
			ms_rewrite_boot = other_boot;
			check_result(f, want, elen, 120);
			ms_rewrite_boot = ms_boot_id;
		}
	}
	free(want);
	free(text);
}


/* Literals of mixed space runs (1 to hundreds), 0xFF, NUL and
 * other high bytes, all of the text in the journal: a crash at every
 * step (the recovery decodes the journal) ends with the same bytes. */
static void
test_literals_any_bytes(void **state)
{
	ms_rewrite_lit_max = lit_default;
	with_bytes = 1;
	crash_everywhere(*state, MS_FAULT_EXIT, 3);
	ms_rewrite_lit_max = 6000;
	crash_everywhere(*state, MS_FAULT_HALF, 3);
	with_bytes = 0;
	ms_rewrite_lit_max = 0;
}

static void
test_power_cut_losing_pages(void **state)
{
	power_cut_losing_pages(*state);
	ms_rewrite_lit_max = 6000;
	power_cut_losing_pages(*state);
	ms_rewrite_lit_max = lit_default;
	power_cut_losing_pages(*state);
	ms_rewrite_lit_max = 0;
}

static const char *
no_boot(void)
{
	return NULL;
}

/* No boot id (no /proc): the recovery could not tell a crash from a
 * reboot, so the copying rewrite is used; same bytes. */
static void
test_no_boot_id_takes_the_copy(void **state)
{
	struct fx *f = *state;
	size_t len, elen;
	char *text = pristine(120, &len);
	char *want = expected(f, text, len, 120, &elen);
	reset(f, text, len);
	ms_rewrite_boot = no_boot;
	ms_rewrite_fault = hook;
	fault_at = -1;
	faults_asked = 0;
	assert_int_equal(open_count(f), 120);
	ms_rewrite_fault = NULL;
	ms_rewrite_boot = ms_boot_id;
	assert_int_equal(faults_asked, 0);
	inbox_is(f, want, elen);
	free(want);
	free(text);
}

/* One big message whose body moves up by the few bytes of its storage
 * headers: in place that is a chunk (and a sync) every few bytes, so
 * the copying rewrite does it; same bytes. */
static void
test_small_shift_takes_the_copy(void **state)
{
	struct fx *f = *state;
	struct pt_strbuf b = { 0 };
	const char *head = "From a@b  Sat Nov 28 06:53:10 2026\nSubject: big\n\n";
	pt_strbuf_put(&b, head, strlen(head));
	while (b.len < 4 * 1024 * 1024)
		pt_strbuf_put(&b, "a body line of the one big message in this folder\n", 51);
	assert_false(b.oom);
	reset(f, b.p, b.len);
	ms_rewrite_copy_only = 1;
	assert_int_equal(open_count(f), 1);
	ms_rewrite_copy_only = 0;
	size_t elen;
	char *want = slurp(f->inbox, &elen);
	blank_validity(want, elen);
	reset(f, b.p, b.len);
	ms_rewrite_fault = hook;
	fault_at = -1;
	faults_asked = 0;
	assert_int_equal(open_count(f), 1);
	ms_rewrite_fault = NULL;
	assert_int_equal(faults_asked, 0);
	inbox_is(f, want, elen);
	/* Within the literal budget the journal takes the 4 MB (a second
	 * copy, as the copying rewrite makes, but no sync per few bytes)
	 * and it stays in place; beyond it, the copy again. */
	for (int within = 1; within >= 0; within--) {
		ms_rewrite_lit_max = within ? lit_default : 1024 * 1024;
		reset(f, b.p, b.len);
		ms_rewrite_fault = hook;
		fault_at = -1;
		faults_asked = 0;
		assert_int_equal(open_count(f), 1);
		ms_rewrite_fault = NULL;
		ms_rewrite_lit_max = 0;
		if (within)
			assert_true(faults_asked > 0 && faults_asked < 20);
		else
			assert_int_equal(faults_asked, 0);
		inbox_is(f, want, elen);
	}
	free(want);
	pt_strbuf_free(&b);
}

/* The runs moved least (the front of a folder whose messages all grow)
 * go into the journal as literals: same bytes, fewer steps (syncs and
 * chunks) than moving them. */
static void
test_literals_same_bytes(void **state)
{
	struct fx *f = *state;
	size_t len, elen, elen2;
	char *text = pristine(400, &len);
	char *want = expected(f, text, len, 400, &elen);
	int moved = faults_asked;
	ms_rewrite_lit_max = lit_default;
	char *want2 = expected(f, text, len, 400, &elen2);
	ms_rewrite_lit_max = 0;
	assert_int_equal(elen2, elen);
	assert_memory_equal(want2, want, elen);
	assert_true(faults_asked < moved / 2);
	int all = faults_asked;
	/* A budget for only part of them: literals and moves. */
	ms_rewrite_lit_max = 6000;
	char *want3 = expected(f, text, len, 400, &elen2);
	ms_rewrite_lit_max = 0;
	assert_memory_equal(want3, want, elen);
	assert_true(faults_asked < moved && faults_asked > all);
	free(want3);
	free(want2);
	free(want);
	free(text);
}

/* Literals and moves in one rewrite: a crash or a power cut at every
 * step still ends with the same bytes; so does a rewrite whose literals
 * (all of the text) hold 0xFF bytes and runs of hundreds of spaces. */
static void
test_crash_everywhere_with_literals(void **state)
{
	ms_rewrite_lit_max = 6000;
	crash_everywhere(*state, MS_FAULT_EXIT, 20);
	crash_everywhere(*state, MS_FAULT_HALF, 20);
	ms_rewrite_lit_max = lit_default;
	with_odd = 1;
	crash_everywhere(*state, MS_FAULT_EXIT, 3);
	with_odd = 0;
	ms_rewrite_lit_max = 0;
}


/* A full disk (or any write error) at each step: the open fails or
 * not, nothing is lost, and the next open ends with the same bytes. */
static void
enospc_everywhere(struct fx *f, int min_steps)
{
	size_t len, elen;
	char *text = pristine(120, &len);
	char *want = expected(f, text, len, 120, &elen);
	int k;
	for (k = 0;; k++) {
		reset(f, text, len);
		fault_at = k;
		fault_what = MS_FAULT_ENOSPC;
		faults_asked = 0;
		ms_rewrite_fault = hook;
		struct pt_status st;
		struct pt_mbox *mb = ops->open(f->ms, "INBOX", 0, &st);
		ms_rewrite_fault = NULL;
		if (mb)
			ops->close(mb);
		if (faults_asked <= k) {
			assert_non_null(mb);
			break;
		}
		check_result(f, want, elen, 120);
	}
	assert_true(k > min_steps);
	free(want);
	free(text);
}

static void
test_enospc_at_every_step(void **state)
{
	enospc_everywhere(*state, 20);
}

/* the same with literals in the journal (all of the moved
 * text, then a mix). */
static void
test_enospc_with_literals(void **state)
{
	ms_rewrite_lit_max = lit_default;
	enospc_everywhere(*state, 3);
	ms_rewrite_lit_max = 6000;
	enospc_everywhere(*state, 10);
	ms_rewrite_lit_max = 0;
}

/* Mail a delivery agent appends after the crash (it breaks the dead
 * process's lock) stays behind the finished rewrite. */
static void
test_append_after_crash(void **state)
{
	struct fx *f = *state;
	size_t len, elen;
	char *text = pristine(120, &len);
	char *want = expected(f, text, len, 120, &elen);
	int steps[] = { 0, 1, 2, 3, 4, 5, 8, 30, 60 };
	for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
		reset(f, text, len);
		assert_true(crash_at(f, steps[s], MS_FAULT_EXIT));
		const char *data = "Subject: late\n\nlate body\n";
		struct pt_delivery d = { "Q1", "sender@example.com", "u1@example.com", NULL, &f->u, data,
			strlen(data), time(NULL) };
		struct pt_status st;
		mbox_deliver_with(&f->s, &d, 1, &st);
		assert_int_equal(st.code, 0);
		assert_int_equal(open_count(f), 121);
		size_t glen;
		char *got = slurp(f->inbox, &glen);
		blank_validity(got, glen);
		assert_true(glen > elen);
		assert_memory_equal(got, want, elen);
		assert_non_null(memmem(got + elen, glen - elen, "late body", 9));
		assert_null(memmem(got + elen, glen - elen, "message 119", 11));
		free(got);
		assert_int_equal(access(journal_path(f, ""), F_OK), -1);
	}
	free(want);
	free(text);
}

/* A journal that is not for this file (or damaged) is kept aside. */
static void
test_foreign_journal_kept_aside(void **state)
{
	struct fx *f = *state;
	size_t len, elen;
	char *text = pristine(50, &len);
	char *want = expected(f, text, len, 50, &elen);
	/* A journal of another rewrite of this folder (then the file was
	 * replaced by another program). */
	reset(f, text, len);
	assert_true(crash_at(f, 10, MS_FAULT_EXIT));
	size_t jlen;
	char *journal = slurp(journal_path(f, ""), &jlen);
	assert_non_null(journal);
	put(f->inbox, "", 0);
	unlink(f->inbox);
	put(f->inbox, text, len);
	assert_int_equal(open_count(f), 50);
	assert_int_equal(access(journal_path(f, ""), F_OK), -1);
	size_t glen;
	char *got = slurp(f->inbox, &glen);
	blank_validity(got, glen);
	assert_memory_equal(got, want, elen);
	free(got);
	/* A damaged one: kept aside, the file untouched by it. */
	put(journal_path(f, ""), journal, jlen / 2);
	assert_int_equal(open_count(f), 50);
	assert_int_equal(access(journal_path(f, ""), F_OK), -1);
	free(journal);
	free(want);
	free(text);
}

/* The journal's checksum (its on-disk format: a journal left by an
 * older version must still be read). */
static uint64_t
jsum(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 14695981039346656037ull;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		h = (h ^ w) * 1099511628211ull;
		h ^= h >> 29;
	}
	for (; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ull;
	return h;
}

#define J_HEAD_SUM 88                  /* offsetof(struct j_head, sum) */
#define J_SLOT_SUM 80                  /* offsetof(struct j_slot, sum) */

enum { G_STATE, G_LIVE_LOW, G_LIVE_ABOVE_SYNCED, G_SYNCED_HIGH, G_NPIECES, G_DATA_LEN, G_N };

/* A journal whose checksums hold but whose values cannot be: kept
 * aside, the mbox not touched by it. */
static void
test_garbled_journal_kept_aside(void **state)
{
	struct fx *f = *state;
	size_t len;
	char *text = pristine(50, &len);
	reset(f, text, len);
	assert_true(crash_at(f, 10, MS_FAULT_EXIT));
	size_t jlen, mlen;
	char *journal = slurp(journal_path(f, ""), &jlen);
	char *mbox = slurp(f->inbox, &mlen);
	assert_non_null(journal);
	assert_true(jlen > 1024);
	char idxdir[700];
	snprintf(idxdir, sizeof idxdir, "%s/.imap/INBOX", f->root);
	for (int g = 0; g < G_N; g++) {
		char *j = malloc(jlen);
		memcpy(j, journal, jlen);
		int64_t off0, new_end;
		memcpy(&off0, j + 32, 8);
		memcpy(&new_end, j + 48, 8);
		if (g == G_NPIECES || g == G_DATA_LEN) {
			uint64_t v = g == G_NPIECES ? 1ull << 40 : 1ull << 50;
			memcpy(j + (g == G_NPIECES ? 56 : 72), &v, 8);
			uint64_t h = jsum(j, J_HEAD_SUM);
			memcpy(j + J_HEAD_SUM, &h, 8);
		}
		for (int s = 0; s < 2 && g < G_NPIECES; s++) {
			char *sl = j + 4096 + s * 4096;
			uint64_t st = 7;
			int64_t live, synced;
			memcpy(&synced, sl + 24, 8);
			if (g == G_STATE)
				memcpy(sl + 8, &st, 8);
			live = g == G_LIVE_LOW ? off0 - 1 : g == G_LIVE_ABOVE_SYNCED ? synced + 1 : 0;
			if (g == G_LIVE_LOW || g == G_LIVE_ABOVE_SYNCED)
				memcpy(sl + 16, &live, 8);
			if (g == G_SYNCED_HIGH) {
				synced = new_end + 4096;
				memcpy(sl + 24, &synced, 8);
			}
			uint64_t h = jsum(sl, J_SLOT_SUM);
			memcpy(sl + J_SLOT_SUM, &h, 8);
		}
		put(f->inbox, mbox, mlen);
		put(journal_path(f, ""), j, jlen);
		free(j);
		char cmd[800];
		snprintf(cmd, sizeof cmd, "rm -f '%s'/postern.rewrite.[0-9]*", idxdir);
		assert_int_equal(system(cmd), 0);
		struct ms_folder mf;
		memset(&mf, 0, sizeof mf);
		mf.path = f->inbox;
		mf.idxdir = idxdir;
		mf.fd = open(f->inbox, O_RDWR | O_CLOEXEC);
		assert_true(mf.fd >= 0);
		struct pt_status st;
		assert_int_equal(ms_rewrite_recover(&mf, &st), 0);
		close(mf.fd);
		assert_int_equal(access(journal_path(f, ""), F_OK), -1);
		snprintf(cmd, sizeof cmd, "ls '%s'/postern.rewrite.[0-9]* >/dev/null 2>&1", idxdir);
		assert_int_equal(system(cmd), 0);
		size_t glen;
		char *got = slurp(f->inbox, &glen);
		assert_int_equal(glen, mlen);
		assert_memory_equal(got, mbox, mlen);
		free(got);
	}
	free(mbox);
	free(journal);
	free(text);
}

/* A journal of version 1 (both progress slots in one sector), left by an
 * older Postern at any step, is still finished with the same bytes. */
static void
test_version1_journal_finished(void **state)
{
	struct fx *f = *state;
	size_t len, elen;
	char *text = pristine(120, &len);
	char *want = expected(f, text, len, 120, &elen);
	int steps = faults_asked, seen = 0;
	for (int k = 0; k < steps; k += 2) {
		reset(f, text, len);
		if (!crash_at(f, k, MS_FAULT_EXIT))
			continue;
		size_t jlen;
		char *j2 = slurp(journal_path(f, ""), &jlen);
		if (j2 != NULL && jlen >= 3 * 4096) {
			size_t dlen = jlen - 3 * 4096;
			char *j1 = calloc(1, 1024 + dlen);
			assert_non_null(j1);
			memcpy(j1, j2, J_HEAD_SUM + 8);
			assert_memory_equal(j1, "PTREWRITE2\n", 11);
			memcpy(j1, "PTREWRITE1\n", 11);
			uint64_t h = jsum(j1, J_HEAD_SUM);
			memcpy(j1 + J_HEAD_SUM, &h, 8);
			memcpy(j1 + 512, j2 + 4096, 256);
			memcpy(j1 + 768, j2 + 2 * 4096, 256);
			memcpy(j1 + 1024, j2 + 3 * 4096, dlen);
			put(journal_path(f, ""), j1, 1024 + dlen);
			free(j1);
			seen++;
		}
		free(j2);
		check_result(f, want, elen, 120);
	}
	assert_true(seen > 3);
	free(want);
	free(text);
}

int
main(void)
{
	lit_default = ms_rewrite_lit_max;
	ms_rewrite_lit_max = 0;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_same_bytes_as_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_storage_headers_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_below_threshold, setup, teardown),
		cmocka_unit_test_setup_teardown(test_moves_down_takes_the_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_at_every_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_in_every_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_in_every_write_storage_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_cut_at_every_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_boot_id_takes_the_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_small_shift_takes_the_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_literals_same_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_everywhere_with_literals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_cut_with_literals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_cut_losing_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_literals_any_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc_at_every_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc_with_literals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_after_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_journal_kept_aside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbled_journal_kept_aside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_version1_journal_finished, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
