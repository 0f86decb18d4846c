/* The mailbox store on mbox in a temporary tree: Dovecot-written input,
 * UIDs and metadata written back, \Recent, flags and keywords, two opens
 * of one folder, delivery while open, expunge, append, folders, names,
 * subscriptions, STATUS, crash recovery and odd files. */
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mbox/mbox.h"
#include "mbox/mbox_store.h"
#include "postern/mailbox.h"

#include "mstore_fixture.h"

static void
put_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	fwrite(text, 1, strlen(text), fp);
	fclose(fp);
}

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

static off_t
fsize(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? sb.st_size : -1;
}

static void
deliver(struct fx *f, const char *data)
{
	struct pt_delivery d = { "Q1", "sender@example.com", "u1@example.com", NULL, &f->u, data,
		strlen(data), time(NULL) };
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_int_equal(st.code, 0);
}

static char *
read_msg(struct pt_mbox *mb, uint32_t uid, size_t *len)
{
	struct pt_msg_text t;
	struct pt_status st;
	assert_int_equal(ops->read(mb, uid, &t, &st), 0);
	char *copy = malloc(t.len + 1);
	memcpy(copy, t.data, t.len);
	copy[t.len] = '\0';
	*len = t.len;
	ops->release(mb, &t);
	return copy;
}

/* A hand-written mbox as Dovecot 2.3 leaves it (reference §3.4). */
static const char dovecot_sample[] =
	"From carol@example.com.ar  Sat Nov 28 06:53:10 2026\n"
	"Return-Path: <carol@example.com.ar>\n"
	"Subject: one\n"
	"X-IMAPbase: 1795846111 0000000004 $$hello NIL\n"
	"X-UID: 1                                       \n"
	"Status: RO\n"
	"X-Keywords: $$hello NIL\n"
	"\n"
	"body one\n"
	">From quoted line\n"
	"\n"
	"From root@example.com.ar  Sat Nov 28 06:53:11 2026\n"
	"Subject: two\n"
	"X-UID: 2                                                  \n"
	"Status: O\n"
	"X-Status: AF\n"
	"Content-Length: 9\n"
	"\n"
	"body two\n"
	"\n"
	"From someone@example.com.ar  Sat Nov 28 06:53:13 2026\n"
	"Subject: four\n"
	"X-UID: 4                                                  \n"
	"\n"
	"body four\n"
	"\n";

static void
test_dovecot_sample(void **state)
{
	struct fx *f = *state;
	put_file(f->inbox, dovecot_sample);
	off_t size0 = fsize(f->inbox);
	struct pt_status st;
	struct pt_mbox *mb = ops->open(f->ms, "inbox", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->uidvalidity(mb), 1795846111u);
	assert_int_equal(ops->uidnext(mb), 5);
	assert_int_equal(ops->count(mb), 3);
	const struct pt_msg_info *m1 = ops->info(mb, 0), *m2 = ops->info(mb, 1),
	                         *m3 = ops->info(mb, 2);
	assert_int_equal(m1->uid, 1);
	assert_int_equal(m2->uid, 2);
	assert_int_equal(m3->uid, 4);
	assert_int_equal(m1->flags, PT_F_SEEN);
	assert_int_equal(m2->flags, PT_F_ANSWERED | PT_F_FLAGGED);
	/* No 'O': recent for this first read-write open. */
	assert_int_equal(m3->flags, PT_F_RECENT);
	assert_int_equal(ops->keyword_count(mb), 2);
	assert_string_equal(ops->keyword_name(mb, 0), "$$hello");
	assert_string_equal(ops->keyword_name(mb, 1), "NIL");
	assert_int_equal(m1->keywords, 3);
	assert_int_equal(ops->find(mb, 4), 2);
	assert_int_equal(ops->find(mb, 3), (size_t)-1);
	struct tm tm = { .tm_year = 126, .tm_mon = 10, .tm_mday = 28, .tm_hour = 6, .tm_min = 53,
		.tm_sec = 10, .tm_isdst = -1 };
	assert_int_equal(m1->internal_date, mktime(&tm));
	size_t len;
	char *w = read_msg(mb, 1, &len);
	assert_string_equal(w, "Return-Path: <carol@example.com.ar>\r\nSubject: one\r\n\r\n"
	                       "body one\r\n>From quoted line\r\n");
	assert_int_equal(m1->size, len);
	free(w);
	w = read_msg(mb, 2, &len);
	assert_string_equal(w, "Subject: two\r\n\r\nbody two\r\n");
	assert_int_equal(m2->size, len);
	free(w);
	ops->close(mb);
	/* 'O' went into the padding: the file did not grow. */
	assert_int_equal(fsize(f->inbox), size0);
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->info(mb, 2)->flags, 0);
	assert_int_equal(ops->uidvalidity(mb), 1795846111u);
	ops->close(mb);
}

static void
test_new_mbox_gets_uids_and_recent_once(void **state)
{
	struct fx *f = *state;
	deliver(f, "Subject: a\n\nA\n");
	deliver(f, "Subject: b\n\nFrom here\n");
	deliver(f, "Subject: c\n\nC\n");
	struct pt_status st;
	struct pt_mbox *ro = ops->open(f->ms, "INBOX", 1, &st);
	assert_non_null(ro);
	assert_int_equal(ops->count(ro), 3);
	/* EXAMINE shows \Recent without taking it. */
	assert_true(ops->info(ro, 0)->flags & PT_F_RECENT);
	uint32_t v = ops->uidvalidity(ro);
	ops->close(ro);
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	assert_int_equal(ops->uidvalidity(a), v);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(ops->info(a, i)->uid, i + 1);
		assert_true(ops->info(a, i)->flags & PT_F_RECENT);
	}
	size_t len;
	char *w = read_msg(a, 2, &len);
	/* mboxrd: the body line comes back as it was sent. */
	assert_non_null(strstr(w, "\r\n\r\nFrom here\r\n"));
	assert_null(strstr(w, "X-Postern-Quoting"));
	assert_null(strstr(w, "X-UID"));
	free(w);
	struct pt_mbox *b = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(b);
	assert_int_equal(ops->count(b), 3);
	assert_false(ops->info(b, 0)->flags & PT_F_RECENT);
	ops->close(b);
	/* Still recent for the session that took it. */
	int changed;
	assert_int_equal(ops->sync(a, &changed, &st), 0);
	assert_true(ops->info(a, 2)->flags & PT_F_RECENT);
	ops->close(a);
	size_t flen;
	char *text = slurp(f->inbox, &flen);
	assert_non_null(strstr(text, "X-IMAPbase: "));
	assert_non_null(strstr(text, " 0000000003\n"));
	assert_non_null(strstr(text, "X-UID: 3 "));
	free(text);
}

static void
test_delivery_while_open_and_two_sessions(void **state)
{
	struct fx *f = *state;
	deliver(f, "Subject: a\n\nA\n");
	struct pt_status st;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	struct pt_mbox *b = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	assert_non_null(b);
	int changed;
	assert_int_equal(ops->sync(a, &changed, &st), 0);
	assert_int_equal(changed, 0);
	deliver(f, "Subject: b\n\nB\n");
	assert_int_equal(ops->sync(a, &changed, &st), 0);
	assert_int_equal(changed, 2);   /* only a new message at the end */
	assert_int_equal(ops->count(a), 2);
	assert_int_equal(ops->info(a, 1)->uid, 2);
	int k1 = ops->keyword_index(a, "$$hello", 1), k2 = ops->keyword_index(a, "NIL", 1);
	assert_true(k1 >= 0 && k2 >= 0);
	struct pt_flag_update u = { 1, PT_F_SEEN | PT_F_FLAGGED, (1ull << k1) | (1ull << k2) };
	assert_int_equal(ops->set_flags(a, &u, 1, &st), 0);
	assert_int_equal(ops->info(a, 0)->flags & PT_F_SYSTEM, PT_F_SEEN | PT_F_FLAGGED);
	/* The other session sees the change at its next sync. */
	assert_int_equal(ops->sync(b, &changed, &st), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(ops->count(b), 2);
	assert_int_equal(ops->info(b, 0)->flags & PT_F_SYSTEM, PT_F_SEEN | PT_F_FLAGGED);
	int bk = ops->keyword_index(b, "NIL", 0);
	assert_true(bk >= 0);
	assert_true(ops->info(b, 0)->keywords & (1ull << bk));
	uint32_t gone = 1;
	assert_int_equal(ops->expunge(b, &gone, 1, &st), 0);
	assert_int_equal(ops->sync(a, &changed, &st), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(ops->count(a), 1);
	assert_int_equal(ops->info(a, 0)->uid, 2);
	uint32_t v = ops->uidvalidity(a);
	ops->close(a);
	ops->close(b);
	struct pt_mbox *c = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(c);
	assert_int_equal(ops->uidvalidity(c), v);
	assert_int_equal(ops->count(c), 1);
	assert_int_equal(ops->info(c, 0)->uid, 2);
	assert_int_equal(ops->uidnext(c), 3);
	size_t len;
	char *w = read_msg(c, 2, &len);
	assert_string_equal(w + len - 13, "Subject: b\r\n\r\nB\r\n" + 4);
	free(w);
	ops->close(c);
	size_t flen;
	char *text = slurp(f->inbox, &flen);
	/* X-IMAPbase moved to the new first message with the keywords. */
	assert_non_null(strstr(text, "X-IMAPbase: "));
	assert_non_null(strstr(text, " 0000000002 $$hello NIL\n"));
	free(text);
}

/* Relative changes from two opens with stale lists: each applies to the
 * file's state under the lock, so neither undoes the other (keywords too);
 * an absolute set_flags from a stale list would have. */
static void
test_change_flags_merges(void **state)
{
	struct fx *f = *state;
	deliver(f, "Subject: a\n\nA\n");
	deliver(f, "Subject: b\n\nB\n");
	struct pt_status st;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	struct pt_mbox *b = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	assert_non_null(b);
	int ka = ops->keyword_index(a, "ka", 1);
	struct pt_flag_update set = { 1, PT_F_SEEN, 1ull << ka };
	assert_int_equal(ops->set_flags(a, &set, 1, &st), 0);
	/* b's open wrote since a's sync: the reload must keep the keyword a
	 * just made for this change */
	assert_int_equal(ops->info(a, 0)->keywords, 1ull << ka);
	int changed;
	assert_int_equal(ops->sync(b, &changed, &st), 0);
	int kb = ops->keyword_index(b, "kb", 1);
	assert_true(kb >= 0 && kb != ka);
	/* a adds \Draft; b, not synced since, removes \Seen and ka, adds kb */
	struct pt_flag_change ca = { 1, PT_F_DRAFT, 0, 0, 0 };
	assert_int_equal(ops->change_flags(a, &ca, 1, &st), 0);
	assert_int_equal(ops->info(a, 0)->flags & PT_F_SYSTEM, PT_F_SEEN | PT_F_DRAFT);
	struct pt_flag_change cb[2] = { { 1, 0, PT_F_SEEN, 1ull << kb, 1ull << ka },
	                                { 99, PT_F_SEEN, 0, 0, 0 } };  /* gone: skipped */
	assert_int_equal(ops->change_flags(b, cb, 2, &st), 0);
	/* b's list has the merged state of what it changed at once */
	assert_int_equal(ops->info(b, 0)->flags & PT_F_SYSTEM, PT_F_DRAFT);
	assert_int_equal(ops->info(b, 0)->keywords, 1ull << kb);
	assert_int_equal(ops->info(b, 1)->flags & PT_F_SYSTEM, 0);
	/* a learns b's change at its next sync */
	assert_int_equal(ops->sync(a, &changed, &st), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(ops->info(a, 0)->flags & PT_F_SYSTEM, PT_F_DRAFT);
	assert_int_equal(ops->keyword_index(a, "kb", 0), kb);
	assert_int_equal(ops->info(a, 0)->keywords, 1ull << kb);
	ops->close(a);
	ops->close(b);
	/* and it is what the file says */
	char idx[700];
	snprintf(idx, sizeof idx, "%s/.imap/INBOX/postern.index", f->root);
	unlink(idx);
	struct pt_mbox *c = ops->open(f->ms, "INBOX", 1, &st);
	assert_non_null(c);
	assert_int_equal(ops->info(c, 0)->flags & PT_F_SYSTEM, PT_F_DRAFT);
	assert_int_equal(ops->info(c, 0)->keywords, 1ull << ops->keyword_index(c, "kb", 0));
	/* read-only opens refuse */
	assert_int_equal(ops->change_flags(c, &ca, 1, &st), -1);
	ops->close(c);
}

static void
test_keywords_persist(void **state)
{
	struct fx *f = *state;
	deliver(f, "Subject: a\n\nA\n");
	struct pt_status st;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	int k = ops->keyword_index(a, "$$hello", 1), n = ops->keyword_index(a, "NIL", 1);
	assert_int_equal(ops->keyword_index(a, "bad keyword", 1), -1);
	struct pt_flag_update u = { 1, PT_F_DRAFT | PT_F_DELETED | PT_F_ANSWERED,
		(1ull << k) | (1ull << n) };
	assert_int_equal(ops->set_flags(a, &u, 1, &st), 0);
	ops->close(a);
	char idx[700];
	snprintf(idx, sizeof idx, "%s/.imap/INBOX/postern.index", f->root);
	unlink(idx);                  /* from the mbox alone */
	a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	assert_int_equal(ops->info(a, 0)->flags, PT_F_DRAFT | PT_F_DELETED | PT_F_ANSWERED);
	k = ops->keyword_index(a, "$$hello", 0);
	n = ops->keyword_index(a, "NIL", 0);
	assert_true(k >= 0 && n >= 0);
	assert_int_equal(ops->info(a, 0)->keywords, (1ull << k) | (1ull << n));
	ops->close(a);
}

static void
test_append(void **state)
{
	struct fx *f = *state;
	struct pt_status st;
	const char *m1 = "Subject: x\r\n\r\nline\r\nFrom me\r\n";
	const char *kw[] = { "$Forwarded" };
	struct pt_append ap[2] = {
		{ m1, strlen(m1), PT_F_SEEN, kw, 1, 1795846111, 0 },
		{ "Subject: y\n\nbody\n", 17, 0, NULL, 0, 0, 0 },
	};
	uint32_t v, uids[2];
	assert_int_equal(ops->append(f->ms, "Sent", ap, 2, &v, uids, &st), -1);
	assert_string_equal(st.dsn, "NONEXISTENT");
	assert_string_equal(st.text, "Mailbox doesn't exist: Sent");
	assert_int_equal(ops->create(f->ms, "Sent", &st), 0);
	assert_int_equal(ops->append(f->ms, "Sent", ap, 2, &v, uids, &st), 0);
	assert_int_equal(uids[0], 1);
	assert_int_equal(uids[1], 2);
	assert_int_equal(ops->append(f->ms, "Sent", ap + 1, 1, &v, uids, &st), 0);
	assert_int_equal(uids[0], 3);
	struct pt_mbox *mb = ops->open(f->ms, "Sent", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->uidvalidity(mb), v);
	assert_int_equal(ops->count(mb), 3);
	assert_int_equal(ops->info(mb, 0)->flags & PT_F_SYSTEM, PT_F_SEEN);
	assert_int_equal(ops->info(mb, 0)->internal_date, 1795846111);
	int k = ops->keyword_index(mb, "$Forwarded", 0);
	assert_true(k >= 0);
	assert_int_equal(ops->info(mb, 0)->keywords, 1ull << k);
	size_t len;
	char *w = read_msg(mb, 1, &len);
	assert_string_equal(w, m1);
	assert_int_equal(ops->info(mb, 0)->size, len);
	free(w);
	w = read_msg(mb, 3, &len);
	assert_string_equal(w, "Subject: y\r\n\r\nbody\r\n");
	free(w);
	ops->close(mb);
	/* INBOX is created by an append when missing. */
	assert_int_equal(ops->append(f->ms, "INBOX", ap + 1, 1, &v, uids, &st), 0);
	assert_int_equal(uids[0], 1);
}

static void
test_names(void **state)
{
	struct fx *f = *state;
	struct pt_status st;
	const char *bad[] = { "", "a//b", "/a", "a/", ".hidden", "a/../b", "..", "a/.b", "x\001y",
		"x.lock", "a/postern.index" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (strcmp(bad[i], "a/") == 0)
			continue;     /* valid for create (a directory) */
		assert_int_equal(ops->create(f->ms, bad[i], &st), -1);
		assert_string_equal(st.text, "Invalid mailbox name");
		assert_null(ops->open(f->ms, bad[i], 0, &st));
	}
	char longname[300];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	assert_int_equal(ops->create(f->ms, longname, &st), -1);
	assert_string_equal(st.text, "Invalid mailbox name");
	assert_int_equal(ops->create(f->ms, "inBox", &st), -1);
	assert_string_equal(st.dsn, "ALREADYEXISTS");
	assert_null(ops->open(f->ms, "nothere", 0, &st));
	assert_string_equal(st.text, "Mailbox doesn't exist: nothere");
	assert_string_equal(st.dsn, "NONEXISTENT");
	assert_true(st.code >= 500);
}

struct listing {
	char text[2048];
};

static void
on_list(void *arg, const char *name, unsigned attrs)
{
	struct listing *l = arg;
	size_t n = strlen(l->text);
	snprintf(l->text + n, sizeof l->text - n, "%s:%s%s%s;", name,
	         attrs & PT_MB_NOSELECT ? "N" : "", attrs & PT_MB_HASCHILDREN ? "C" : "",
	         attrs & PT_MB_HASNOCHILDREN ? "c" : "");
}

static void
on_sub(void *arg, const char *name)
{
	struct listing *l = arg;
	size_t n = strlen(l->text);
	snprintf(l->text + n, sizeof l->text - n, "%s;", name);
}

static void
test_folders(void **state)
{
	struct fx *f = *state;
	struct pt_status st;
	assert_int_equal(ops->create(f->ms, "a/b", &st), 0);
	assert_int_equal(ops->create(f->ms, "Trash", &st), 0);
	assert_int_equal(ops->create(f->ms, "d/", &st), 0);
	assert_int_equal(ops->create(f->ms, "Trash", &st), -1);
	assert_string_equal(st.dsn, "ALREADYEXISTS");
	assert_string_equal(st.text, "Mailbox already exists");
	assert_int_equal(ops->create(f->ms, "Trash/x", &st), -1);
	struct listing l = { "" };
	assert_int_equal(ops->list(f->ms, on_list, &l, &st), 0);
	assert_string_equal(l.text, "INBOX:c;Trash:c;a:NC;a/b:c;d:Nc;");
	assert_int_equal(ops->remove(f->ms, "INBOX", &st), -1);
	assert_int_equal(ops->remove(f->ms, "a", &st), -1);
	assert_int_equal(ops->remove(f->ms, "nothere", &st), -1);
	assert_string_equal(st.dsn, "NONEXISTENT");
	struct pt_mbox_status s1, s2;
	assert_int_equal(ops->status(f->ms, "Trash", &s1, &st), 0);
	assert_int_equal(ops->remove(f->ms, "Trash", &st), 0);
	assert_int_equal(ops->create(f->ms, "Trash", &st), 0);
	assert_int_equal(ops->status(f->ms, "Trash", &s2, &st), 0);
	assert_true(s2.uidvalidity > s1.uidvalidity);
	assert_int_equal(ops->rename(f->ms, "a", "c/e", &st), 0);
	assert_int_equal(ops->rename(f->ms, "nothere", "zz", &st), -1);
	assert_string_equal(st.dsn, "NONEXISTENT");
	assert_int_equal(ops->rename(f->ms, "d", "Trash", &st), -1);
	assert_string_equal(st.dsn, "ALREADYEXISTS");
	memset(&l, 0, sizeof l);
	ops->list(f->ms, on_list, &l, &st);
	assert_string_equal(l.text, "INBOX:c;Trash:c;c:NC;c/e:NC;c/e/b:c;d:Nc;");
	assert_int_equal(ops->remove(f->ms, "d", &st), 0);
	assert_int_equal(ops->subscribe(f->ms, "Trash", 1, &st), 0);
	assert_int_equal(ops->subscribe(f->ms, "c/e/b", 1, &st), 0);
	assert_int_equal(ops->subscribe(f->ms, "Trash", 1, &st), 0);
	assert_int_equal(ops->subscribe(f->ms, "c/e/b", 0, &st), 0);
	memset(&l, 0, sizeof l);
	ops->subscriptions(f->ms, on_sub, &l, &st);
	assert_string_equal(l.text, "Trash;");
	char p[700];
	snprintf(p, sizeof p, "%s/.subscriptions", f->root);
	size_t len;
	char *text = slurp(p, &len);
	assert_string_equal(text, "Trash\n");
	free(text);
}

static void
test_rename_inbox_and_status(void **state)
{
	struct fx *f = *state;
	deliver(f, "Subject: a\n\nA\n");
	deliver(f, "Subject: b\n\nB\n");
	struct pt_status st;
	struct pt_mbox_status s;
	assert_int_equal(ops->status(f->ms, "INBOX", &s, &st), 0);
	assert_int_equal(s.messages, 2);
	assert_int_equal(s.recent, 2);
	assert_int_equal(s.unseen, 2);
	assert_int_equal(s.first_unseen_seq, 1);
	assert_int_equal(s.uidnext, 3);
	assert_true(s.size > 20);
	/* STATUS did not take \Recent. */
	assert_int_equal(ops->status(f->ms, "INBOX", &s, &st), 0);
	assert_int_equal(s.recent, 2);
	assert_int_equal(ops->rename(f->ms, "INBOX", "old", &st), 0);
	struct pt_mbox *mb = ops->open(f->ms, "old", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->count(mb), 2);
	ops->close(mb);
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->count(mb), 0);
	/* UIDs in the emptied INBOX do not start over. */
	assert_int_equal(ops->uidnext(mb), 3);
	ops->close(mb);
	deliver(f, "Subject: c\n\nC\n");
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_int_equal(ops->count(mb), 1);
	assert_int_equal(ops->info(mb, 0)->uid, 3);
	ops->close(mb);
}

static void
test_crash_recovery(void **state)
{
	struct fx *f = *state;
	deliver(f, "Subject: a\n\nA\n");
	deliver(f, "Subject: b\n\nB\n");
	struct pt_status st;
	struct pt_mbox *mb = ops->open(f->ms, "INBOX", 0, &st);
	ops->close(mb);
	size_t len;
	char *orig = slurp(f->inbox, &len);
	/* A rewrite from the second message was cut short: the recovery copy
	 * is complete, the mbox holds half of the new text. */
	char *second = strstr(orig + 1, "\nFrom ") + 1;
	long long off = (long long)(second - orig), rlen = (long long)(len - (size_t)off);
	char rec[700];
	snprintf(rec, sizeof rec, "%s/.imap/INBOX/postern.recover", f->root);
	struct stat sb;
	stat(f->inbox, &sb);
	FILE *fp = fopen(rec, "wb");
	fprintf(fp, "PTRECOVER1 %lld %lld %lld %llu\n", off, rlen, rlen - 10,
	        (unsigned long long)sb.st_ino);
	fwrite(second, 1, (size_t)rlen, fp);
	fclose(fp);
	int fd = open(f->inbox, O_WRONLY);
	assert_int_equal(pwrite(fd, "From garbage half wr", 20, off), 20);
	assert_int_equal(ftruncate(fd, off + 20), 0);
	close(fd);
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->count(mb), 2);
	assert_int_equal(ops->info(mb, 1)->uid, 2);
	ops->close(mb);
	size_t len2;
	char *now = slurp(f->inbox, &len2);
	assert_int_equal(len2, len);
	assert_memory_equal(now, orig, len);
	assert_int_equal(access(rec, F_OK), -1);
	free(now);
	free(orig);
}

static void
test_odd_files(void **state)
{
	struct fx *f = *state;
	struct pt_status st;
	/* Junk before the first From_ line stays untouched. */
	put_file(f->inbox, "junk line\nmore junk\n\nFrom a@b  Sat Nov 28 06:53:10 2026\n"
	                   "Subject: x\n\nbody\n\nFrom a@b  Sat Nov 28 06:53:11 2026\nno blank line\n");
	struct pt_mbox *mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->count(mb), 2);
	size_t len;
	char *w = read_msg(mb, 2, &len);
	assert_string_equal(w, "no blank line\r\n");
	free(w);
	ops->close(mb);
	char *text = slurp(f->inbox, &len);
	assert_memory_equal(text, "junk line\nmore junk\n\nFrom a@b", 29);
	free(text);
	/* CRLF mbox: CRLF stays CRLF on the wire. */
	put_file(f->inbox, "From a@b  Sat Nov 28 06:53:10 2026\r\nSubject: x\r\n\r\nbody\r\n");
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->count(mb), 1);
	w = read_msg(mb, ops->info(mb, 0)->uid, &len);
	assert_int_equal(ops->info(mb, 0)->size, len);
	assert_null(strstr(w, "\r\r"));
	free(w);
	ops->close(mb);
	/* Empty and non-mbox files: no messages, bytes kept. */
	put_file(f->inbox, "");
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->count(mb), 0);
	ops->close(mb);
	put_file(f->inbox, "\x7f" "ELF binary stuff\n\0\0");
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->count(mb), 0);
	ops->close(mb);
	assert_int_equal(fsize(f->inbox), 18);
	/* A corrupt index is rebuilt silently. */
	deliver(f, "Subject: a\n\nA\n");
	mb = ops->open(f->ms, "INBOX", 0, &st);
	uint32_t uid = ops->info(mb, 0)->uid;
	ops->close(mb);
	char idx[700];
	snprintf(idx, sizeof idx, "%s/.imap/INBOX/postern.index", f->root);
	put_file(idx, "PTIDX002garbage");
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->count(mb), 1);
	assert_int_equal(ops->info(mb, 0)->uid, uid);
	ops->close(mb);
}

/* Flags fit the X-UID padding (file size unchanged); twenty long
 * keywords do not, and the rewrite keeps every message intact. */
static void
test_padding_then_rewrite(void **state)
{
	struct fx *f = *state;
	deliver(f, "Subject: a\n\nA\n");
	deliver(f, "Subject: b\n\nB\n");
	struct pt_status st;
	struct pt_mbox *mb = ops->open(f->ms, "INBOX", 0, &st);
	size_t l1, l2;
	char *w1 = read_msg(mb, 1, &l1), *w2 = read_msg(mb, 2, &l2);
	off_t size0 = fsize(f->inbox);
	struct pt_flag_update u = { 2, PT_F_SEEN | PT_F_ANSWERED | PT_F_FLAGGED, 0 };
	assert_int_equal(ops->set_flags(mb, &u, 1, &st), 0);
	assert_int_equal(fsize(f->inbox), size0);
	uint64_t all = 0;
	for (int i = 0; i < 20; i++) {
		char name[40];
		snprintf(name, sizeof name, "keyword_number_%02d_long", i);
		int k = ops->keyword_index(mb, name, 1);
		assert_true(k >= 0);
		all |= 1ull << k;
	}
	u.keywords = all;
	assert_int_equal(ops->set_flags(mb, &u, 1, &st), 0);
	assert_true(fsize(f->inbox) > size0);
	ops->close(mb);
	char idx[700];
	snprintf(idx, sizeof idx, "%s/.imap/INBOX/postern.index", f->root);
	unlink(idx);
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_int_equal(ops->count(mb), 2);
	assert_int_equal(ops->info(mb, 1)->keywords, all);
	assert_int_equal(ops->info(mb, 1)->flags, PT_F_SEEN | PT_F_ANSWERED | PT_F_FLAGGED);
	size_t n1, n2;
	char *x1 = read_msg(mb, 1, &n1), *x2 = read_msg(mb, 2, &n2);
	assert_string_equal(x1, w1);
	assert_string_equal(x2, w2);
	free(w1);
	free(w2);
	free(x1);
	free(x2);
	ops->close(mb);
}

/* Expunging the message that carried the only empty line before an
 * odd-looking From_ line must not merge its neighbours (found by fuzzing). */
static void
test_expunge_keeps_boundaries(void **state)
{
	struct fx *f = *state;
	put_file(f->inbox, "From a@b  Sat Nov 28 06:53:10 2026\nSubject: 1\n\nx\n"
	                   "From a@b  Sat Nov 28 06:53:11 2026\nSubject: 2\n\ny\n\n"
	                   "From odd line\nSubject: 3\n\nz\n");
	struct pt_status st;
	struct pt_mbox *mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->count(mb), 3);
	uint32_t u = 2;
	assert_int_equal(ops->expunge(mb, &u, 1, &st), 0);
	ops->close(mb);
	char idx[700];
	snprintf(idx, sizeof idx, "%s/.imap/INBOX/postern.index", f->root);
	unlink(idx);
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_int_equal(ops->count(mb), 2);
	size_t len;
	char *w = read_msg(mb, 1, &len);
	assert_string_equal(w, "Subject: 1\r\n\r\nx\r\n");
	free(w);
	w = read_msg(mb, 3, &len);
	assert_string_equal(w, "Subject: 3\r\n\r\nz\r\n");
	free(w);
	ops->close(mb);
}

static void
test_big_message_and_external_rewrite(void **state)
{
	struct fx *f = *state;
	/* A message larger than the reader's chunk. */
	size_t big = 700 * 1024;
	char *data = malloc(big + 32);
	strcpy(data, "Subject: big\n\n");
	size_t n = strlen(data);
	while (n < big) {
		memcpy(data + n, "0123456789abcdefghijklmnopqrstuvwxyz\n", 37);
		n += 37;
	}
	data[n] = '\0';
	deliver(f, "Subject: a\n\nA\n");
	deliver(f, data);
	deliver(f, "Subject: c\n\nC\n");
	struct pt_status st;
	struct pt_mbox *mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_int_equal(ops->count(mb), 3);
	size_t len;
	char *w = read_msg(mb, 2, &len);
	assert_int_equal(len, ops->info(mb, 1)->size);
	free(w);
	uint32_t u = 1;
	assert_int_equal(ops->expunge(mb, &u, 1, &st), 0);
	int changed;
	ops->sync(mb, &changed, &st);
	assert_int_equal(ops->count(mb), 2);
	/* Another program rewrites the file (same size, new content). */
	size_t flen;
	char *text = slurp(f->inbox, &flen);
	char *subj = strstr(text, "Subject: c");
	subj[9] = 'Z';
	sleep(0);
	put_file(f->inbox, text);
	struct timespec ts[2] = { { 0, UTIME_NOW }, { time(NULL) + 5, 0 } };
	utimensat(AT_FDCWD, f->inbox, ts, 0);
	assert_int_equal(ops->sync(mb, &changed, &st), 0);
	assert_int_equal(ops->count(mb), 2);
	assert_int_equal(ops->info(mb, 1)->uid, 3);
	w = read_msg(mb, 3, &len);
	assert_non_null(strstr(w, "Subject: Z"));
	free(w);
	ops->close(mb);
	free(text);
	free(data);
}


/* Issue #11 item 13: bodies with "From ", ">From ", ">>From " lines come
 * back octet for octet, delivered or APPENDed, through a metadata rewrite
 * too, with RFC822.SIZE the size of what is read; an mboxo message
 * written by another program (no marker) is served as stored, its size
 * unchanged. */
static void
test_from_lines_round_trip(void **state)
{
	struct fx *f = *state;
	/* An older message first: mboxo, as Postfix local(8) wrote it. */
	FILE *fp = fopen(f->inbox, "w");
	assert_non_null(fp);
	fputs("From a@b  Sat Nov 28 06:08:07 2026\nSubject: old\n\n>From quoted by mboxo\n"
	      ">>From as sent\n\n", fp);
	fclose(fp);
	const char *sent = "Subject: rt\r\n\r\nFrom a\r\n>From b\r\n>>From c\r\n>>>From d\r\n"
	                   ">from e\r\n> From f\r\nFrom\r\n";
	/* The delivered copy (LF in the store, as SMTP's CRLF is stored). */
	char lf[256];
	size_t o = 0;
	for (const char *p = sent; *p; p++)
		if (*p != '\r')
			lf[o++] = *p;
	lf[o] = '\0';
	deliver(f, lf);
	char delivered[512];
	snprintf(delivered, sizeof delivered,
	         "Return-Path: <sender@example.com>\r\nDelivered-To: u1@example.com\r\n%s", sent);
	struct pt_status st;
	struct pt_append ap = { .data = sent, .len = strlen(sent) };
	uint32_t v, uid;
	assert_int_equal(ops->append(f->ms, "INBOX", &ap, 1, &v, &uid, &st), 0);
	struct pt_mbox *mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->count(mb), 3);
	size_t len;
	char *w = read_msg(mb, 1, &len);
	assert_string_equal(w, "Subject: old\r\n\r\n>From quoted by mboxo\r\n>>From as sent\r\n");
	assert_int_equal(ops->info(mb, 0)->size, len);
	free(w);
	for (uint32_t u = 2; u <= 3; u++) {
		w = read_msg(mb, u, &len);
		/* Delivery adds its envelope lines in front, nothing else. */
		assert_string_equal(w, u == 2 ? delivered : sent);
		assert_int_equal(ops->info(mb, u - 1)->size, len);
		free(w);
	}
	/* A flag change rewrites the storage headers: still exact. */
	struct pt_flag_update up[3] = { { 1, PT_F_SEEN, 0 }, { 2, PT_F_FLAGGED, 0 },
		                        { 3, PT_F_ANSWERED, 0 } };
	assert_int_equal(ops->set_flags(mb, up, 3, &st), 0);
	ops->close(mb);
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	for (uint32_t u = 2; u <= 3; u++) {
		w = read_msg(mb, u, &len);
		/* Delivery adds its envelope lines in front, nothing else. */
		assert_string_equal(w, u == 2 ? delivered : sent);
		assert_int_equal(ops->info(mb, u - 1)->size, len);
		free(w);
	}
	w = read_msg(mb, 1, &len);
	assert_string_equal(w, "Subject: old\r\n\r\n>From quoted by mboxo\r\n>>From as sent\r\n");
	free(w);
	ops->close(mb);
}

/* The flag log (lazy flag writes): a change is in the log, not the mbox,
 * until the open closes; a crash after the mbox write but before the log
 * went (simulated by putting the old log back) must not bring an old
 * change back, not even after a second change of the same message made
 * the mbox look as the first record expected (the void record is dropped
 * from the log before a new one goes in). */
static void
copy_file(const char *from, const char *to)
{
	size_t n;
	char *p = slurp(from, &n);
	assert_non_null(p);
	FILE *fp = fopen(to, "wb");
	assert_non_null(fp);
	fwrite(p, 1, n, fp);
	fclose(fp);
	free(p);
}

static int
mbox_has(struct fx *f, const char *text)
{
	size_t n;
	char *p = slurp(f->inbox, &n);
	int has = p && strstr(p, text) != NULL;
	free(p);
	return has;
}

static void
test_flag_log_crash_windows(void **state)
{
	struct fx *f = *state;
	deliver(f, "Subject: a\n\nA\n");
	deliver(f, "Subject: b\n\nB\n");
	char log[700], saved[720];
	snprintf(log, sizeof log, "%s/.imap/INBOX/postern.flags", f->root);
	snprintf(saved, sizeof saved, "%s.saved", log);
	struct pt_status st;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	struct pt_flag_change seen = { 1, PT_F_SEEN, 0, 0, 0 };
	assert_int_equal(ops->change_flags(a, &seen, 1, &st), 0);
	/* in the log, not in the mbox; another open sees it */
	assert_true(fsize(log) > 0);
	assert_false(mbox_has(f, "Status: R"));
	struct pt_mbox *b = ops->open(f->ms, "INBOX", 1, &st);
	assert_non_null(b);
	assert_int_equal(ops->info(b, 0)->flags & PT_F_SYSTEM, PT_F_SEEN);
	ops->close(b);
	/* crash right after the close wrote the mbox: the log is back */
	copy_file(log, saved);
	ops->close(a);
	assert_true(mbox_has(f, "Status: RO"));
	assert_int_equal(fsize(log), -1);
	assert_int_equal(rename(saved, log), 0);
	/* the second change takes \Seen away again (the mbox then looks as
	 * the old record expected) */
	a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	assert_int_equal(ops->info(a, 0)->flags & PT_F_SYSTEM, PT_F_SEEN);
	struct pt_flag_change unseen = { 1, 0, PT_F_SEEN, 0, 0 };
	assert_int_equal(ops->change_flags(a, &unseen, 1, &st), 0);
	copy_file(log, saved);
	ops->close(a);
	assert_false(mbox_has(f, "Status: RO"));
	assert_int_equal(rename(saved, log), 0);
	/* and another crash at the same place: \Seen stays off */
	a = ops->open(f->ms, "INBOX", 1, &st);
	assert_non_null(a);
	assert_int_equal(ops->info(a, 0)->flags & PT_F_SYSTEM, 0);
	ops->close(a);
	/* a damaged log (torn append) is ignored, not fatal */
	FILE *fp = fopen(log, "ab");
	assert_non_null(fp);
	fputs("PTFLgarbage", fp);
	fclose(fp);
	a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	assert_int_equal(ops->info(a, 0)->flags & PT_F_SYSTEM, 0);
	assert_int_equal(ops->change_flags(a, &seen, 1, &st), 0);
	ops->close(a);
	a = ops->open(f->ms, "INBOX", 1, &st);
	assert_int_equal(ops->info(a, 0)->flags & PT_F_SYSTEM, PT_F_SEEN);
	ops->close(a);
	assert_true(mbox_has(f, "Status: RO"));
}

/* Expunged UIDs with their mod-sequences survive in the index, in ranges. */
static void
test_vanished_list(void **state)
{
	struct fx *f = *state;
	for (int i = 0; i < 6; i++)
		deliver(f, "Subject: x\n\nX\n");
	struct pt_status st;
	struct pt_mbox *a = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(a);
	uint64_t h0 = ops->highest_modseq(a);
	uint32_t gone1[] = { 2, 3 }, gone2[] = { 5 };
	assert_int_equal(ops->expunge(a, gone1, 2, &st), 0);
	int ch;
	assert_int_equal(ops->sync(a, &ch, &st), 0);
	uint64_t h1 = ops->highest_modseq(a);
	assert_int_equal(ops->expunge(a, gone2, 1, &st), 0);
	assert_int_equal(ops->sync(a, &ch, &st), 0);
	ops->close(a);
	a = ops->open(f->ms, "INBOX", 1, &st);
	uint32_t *r;
	size_t n;
	assert_int_equal(ops->vanished_since(a, h0, &r, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(r[0], 2);
	assert_int_equal(r[1], 3);
	assert_int_equal(r[2], 5);
	assert_int_equal(r[3], 5);
	free(r);
	assert_int_equal(ops->vanished_since(a, h1, &r, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(r[0], 5);
	free(r);
	/* older than the list: unknown */
	assert_int_equal(ops->vanished_since(a, 1, &r, &n), -1);
	ops->close(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dovecot_sample, setup, teardown),
		cmocka_unit_test_setup_teardown(test_from_lines_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_mbox_gets_uids_and_recent_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delivery_while_open_and_two_sessions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keywords_persist, setup, teardown),
		cmocka_unit_test_setup_teardown(test_change_flags_merges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append, setup, teardown),
		cmocka_unit_test_setup_teardown(test_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_folders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename_inbox_and_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_recovery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_odd_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_padding_then_rewrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expunge_keeps_boundaries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_message_and_external_rewrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flag_log_crash_windows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vanished_list, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
