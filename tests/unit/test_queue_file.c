/* Unit tests for the queue file format, durable storage, quarantine of
 * damaged files and the retry schedule. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue.h"

static void
make_sample(struct pt_qfile *q)
{
	memset(q, 0, sizeof *q);
	snprintf(q->id, sizeof q->id, "%s", "0A1B2C3D4E");
	q->sender = strdup("");
	q->arrival = 1795848790;
	q->next_retry = 1795849090;
	q->attempts = 3;
	q->submit_uid = 1000;
	q->client_name = strdup("client.example.com.ar");
	q->client_address = strdup("127.0.0.1");
	q->helo = strdup("odd\thelo with %percent\nand newline");
	q->protocol = strdup("ESMTP");
	q->sasl_username = NULL;
	q->envid = strdup("-");
	q->ret = NULL;
	assert_int_equal(pt_qfile_add_rcpt(q, "alice@example.com.ar", "sysadmin@example.com.ar", NULL), 0);
	assert_int_equal(pt_qfile_add_rcpt(q, "\"odd user\"@example.com.ar", "", "SUCCESS,FAILURE"), 0);
	q->rcpt[1].state = PT_QRCPT_PENDING;
	snprintf(q->rcpt[1].dsn, sizeof q->rcpt[1].dsn, "4.2.1");
	q->rcpt[1].reason = strdup("mailbox /var/mail/x is locked");
	q->rcpt[0].state = PT_QRCPT_DONE;
	/* The body contains what looks like records and the checksum line. */
	const char body[] = "Received: by x\nSubject: t\n\nM 5\nZ 0000000000000000\nR 0\t=a\n\n";
	q->len = sizeof body - 1;
	q->data = malloc(q->len + 1);
	memcpy(q->data, body, q->len + 1);
}

static void
assert_same(const struct pt_qfile *a, const struct pt_qfile *b)
{
	assert_string_equal(a->id, b->id);
	assert_string_equal(a->sender, b->sender);
	assert_int_equal(a->arrival, b->arrival);
	assert_int_equal(a->next_retry, b->next_retry);
	assert_int_equal(a->attempts, b->attempts);
	assert_int_equal(a->submit_uid, b->submit_uid);
	assert_string_equal(a->client_name, b->client_name);
	assert_string_equal(a->helo, b->helo);
	assert_null(b->sasl_username);
	assert_string_equal(a->envid, b->envid);
	assert_null(b->ret);
	assert_int_equal(a->nrcpt, b->nrcpt);
	for (size_t i = 0; i < a->nrcpt; i++) {
		assert_string_equal(a->rcpt[i].address, b->rcpt[i].address);
		if (a->rcpt[i].orig)
			assert_string_equal(a->rcpt[i].orig, b->rcpt[i].orig);
		else
			assert_null(b->rcpt[i].orig);
		if (a->rcpt[i].notify)
			assert_string_equal(a->rcpt[i].notify, b->rcpt[i].notify);
		else
			assert_null(b->rcpt[i].notify);
		assert_int_equal(a->rcpt[i].state, b->rcpt[i].state);
		assert_string_equal(a->rcpt[i].dsn, b->rcpt[i].dsn);
	}
	assert_string_equal(b->rcpt[1].reason, "mailbox /var/mail/x is locked");
	assert_null(b->rcpt[0].reason);
	assert_int_equal(a->len, b->len);
	assert_memory_equal(a->data, b->data, a->len);
}

static void
test_roundtrip(void **state)
{
	(void)state;
	struct pt_qfile q, r;
	char *img, err[200];
	size_t len;
	make_sample(&q);
	assert_int_equal(pt_qfile_encode(&q, &img, &len), 0);
	assert_int_equal(pt_qfile_decode(img, len, &r, err, sizeof err), 0);
	assert_same(&q, &r);
	assert_int_equal(pt_qfile_pending(&r), 1);

	struct pt_qfile d;
	assert_int_equal(pt_qfile_dup(&r, &d), 0);
	assert_same(&q, &d);
	pt_qfile_free(&d);
	pt_qfile_free(&r);
	free(img);
	pt_qfile_free(&q);
}

/* A file cut at any byte (a crash before the rename would leave one in
 * incoming/) must be refused, never half-read. */
static void
test_truncated_at_every_offset(void **state)
{
	(void)state;
	struct pt_qfile q, r;
	char *img, err[200];
	size_t len;
	make_sample(&q);
	assert_int_equal(pt_qfile_encode(&q, &img, &len), 0);
	for (size_t cut = 0; cut < len; cut++) {
		char *part = malloc(cut ? cut : 1);
		memcpy(part, img, cut);
		err[0] = 0;
		assert_int_equal(pt_qfile_decode(part, cut, &r, err, sizeof err), -1);
		assert_true(err[0] != 0);
		assert_null(r.data);
		assert_null(r.rcpt);
		free(part);
	}
	free(img);
	pt_qfile_free(&q);
}

static void
test_any_flipped_byte_detected(void **state)
{
	(void)state;
	struct pt_qfile q, r;
	char *img, err[200];
	size_t len;
	make_sample(&q);
	assert_int_equal(pt_qfile_encode(&q, &img, &len), 0);
	for (size_t i = 0; i < len; i++) {
		img[i] ^= 0x20;
		assert_int_equal(pt_qfile_decode(img, len, &r, err, sizeof err), -1);
		img[i] ^= 0x20;
	}
	assert_int_equal(pt_qfile_decode(img, len, &r, err, sizeof err), 0);
	pt_qfile_free(&r);
	free(img);
	pt_qfile_free(&q);
}

static void
test_garbage_refused(void **state)
{
	(void)state;
	struct pt_qfile r;
	char err[200];
	const char *bad[] = { "", "hello\n", "POSTERN-QUEUE 1\n", "POSTERN-QUEUE 2\nI ABCDEF\n",
		"POSTERN-QUEUE 1\nI ABCDEF\nZ 0000000000000000\n" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(pt_qfile_decode(bad[i], strlen(bad[i]), &r, err, sizeof err), -1);
		assert_true(strlen(err) > 0);
	}
	/* 1 MB of random bytes. */
	size_t n = 1 << 20;
	char *rnd = malloc(n);
	srand(7);
	for (size_t i = 0; i < n; i++)
		rnd[i] = (char)rand();
	memcpy(rnd, "POSTERN-QUEUE 1\n", 16);
	assert_int_equal(pt_qfile_decode(rnd, n, &r, err, sizeof err), -1);
	free(rnd);
}

static char tmpdir[64];

static int
setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/pt-qf-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int
teardown_dir(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static int
count_files(const char *sub)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", tmpdir, sub);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void
test_store_load_quarantine(void **state)
{
	(void)state;
	char err[256];
	assert_int_equal(pt_qdir_setup(tmpdir, (uid_t)-1, (gid_t)-1, err, sizeof err), 0);
	struct stat st;
	char path[256];
	snprintf(path, sizeof path, "%s/maildrop", tmpdir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 03733);
	assert_int_equal(st.st_gid, getegid());
	snprintf(path, sizeof path, "%s/incoming", tmpdir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	/* Setting up again over an existing layout is fine (restart). */
	assert_int_equal(pt_qdir_setup(tmpdir, (uid_t)-1, (gid_t)-1, err, sizeof err), 0);

	struct pt_qfile q, r;
	make_sample(&q);
	assert_int_equal(pt_qfile_store(tmpdir, PT_QDIR_DEFERRED, &q), 0);
	assert_int_equal(pt_qdir_sync(tmpdir, PT_QDIR_DEFERRED), 0);
	assert_int_equal(count_files(PT_QDIR_INCOMING), 0);
	assert_int_equal(count_files(PT_QDIR_DEFERRED), 1);
	assert_int_equal(pt_qfile_load(tmpdir, PT_QDIR_DEFERRED, q.id, &r, err, sizeof err), 0);
	assert_same(&q, &r);
	pt_qfile_free(&r);

	/* Rewrite with a changed status replaces the file atomically. */
	q.rcpt[1].state = PT_QRCPT_DONE;
	assert_int_equal(pt_qfile_store(tmpdir, PT_QDIR_DEFERRED, &q), 0);
	assert_int_equal(pt_qfile_load(tmpdir, PT_QDIR_DEFERRED, q.id, &r, err, sizeof err), 0);
	assert_int_equal(pt_qfile_pending(&r), 0);
	pt_qfile_free(&r);

	/* Damage it on disk: load reports, quarantine moves it aside. */
	snprintf(path, sizeof path, "%s/deferred/%s", tmpdir, q.id);
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "X", 1, 40), 1);
	close(fd);
	assert_int_equal(pt_qfile_load(tmpdir, PT_QDIR_DEFERRED, q.id, &r, err, sizeof err), -2);
	assert_non_null(strstr(err, "checksum"));
	assert_int_equal(pt_qfile_quarantine(tmpdir, PT_QDIR_DEFERRED, q.id), 0);
	assert_int_equal(count_files(PT_QDIR_DEFERRED), 0);
	assert_int_equal(count_files(PT_QDIR_CORRUPT), 1);

	/* Missing file: I/O error, not damage. */
	assert_int_equal(pt_qfile_load(tmpdir, PT_QDIR_ACTIVE, q.id, &r, err, sizeof err), -1);
	/* Path tricks are refused as ids. */
	assert_int_equal(pt_qfile_load(tmpdir, PT_QDIR_ACTIVE, "../../etc", &r, err, sizeof err), -2);

	/* A file whose name disagrees with its id is damage too. */
	assert_int_equal(pt_qfile_store(tmpdir, PT_QDIR_ACTIVE, &q), 0);
	char from[256], to[256];
	snprintf(from, sizeof from, "%s/active/%s", tmpdir, q.id);
	snprintf(to, sizeof to, "%s/active/ABCDEF", tmpdir);
	assert_int_equal(rename(from, to), 0);
	assert_int_equal(pt_qfile_load(tmpdir, PT_QDIR_ACTIVE, "ABCDEF", &r, err, sizeof err), -2);
	assert_int_equal(pt_qfile_remove(tmpdir, PT_QDIR_ACTIVE, "ABCDEF"), 0);
	assert_int_equal(count_files(PT_QDIR_ACTIVE), 0);

	/* Storing into a missing directory fails and leaves nothing behind. */
	assert_int_equal(pt_qfile_store(tmpdir, "nosuchdir", &q), -1);
	assert_int_equal(count_files(PT_QDIR_INCOMING), 0);
	pt_qfile_free(&q);
}

static void
test_qid_valid(void **state)
{
	(void)state;
	assert_true(pt_qid_valid("9F2EA102036"));
	assert_false(pt_qid_valid("9f2ea102036"));
	assert_false(pt_qid_valid("ABC"));
	assert_false(pt_qid_valid("../ABCDEF"));
	assert_false(pt_qid_valid("ABCDEF0123456789ABCDE"));
}

static void
test_backoff_schedule(void **state)
{
	(void)state;
	assert_int_equal(pt_queue_backoff(0, 300, 4000), 300);
	assert_int_equal(pt_queue_backoff(1, 300, 4000), 300);
	assert_int_equal(pt_queue_backoff(2, 300, 4000), 600);
	assert_int_equal(pt_queue_backoff(3, 300, 4000), 1200);
	assert_int_equal(pt_queue_backoff(4, 300, 4000), 2400);
	assert_int_equal(pt_queue_backoff(5, 300, 4000), 4000);
	assert_int_equal(pt_queue_backoff(500, 300, 4000), 4000);
	assert_int_equal(pt_queue_backoff(4000000000u, 300, 4000), 4000);
	/* Nonsense settings still give a sane positive delay. */
	assert_int_equal(pt_queue_backoff(3, 0, 0), 1);
	assert_int_equal(pt_queue_backoff(3, 500, 100), 500);
	assert_false(pt_queue_expired(1000, 1000 + 5 * 86400 - 1, 5 * 86400));
	assert_true(pt_queue_expired(1000, 1000 + 5 * 86400, 5 * 86400));
	assert_true(pt_queue_expired(1000, 1000, 0));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_truncated_at_every_offset),
		cmocka_unit_test(test_any_flipped_byte_detected),
		cmocka_unit_test(test_garbage_refused),
		cmocka_unit_test_setup_teardown(test_store_load_quarantine, setup_dir, teardown_dir),
		cmocka_unit_test(test_qid_valid),
		cmocka_unit_test(test_backoff_schedule),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
