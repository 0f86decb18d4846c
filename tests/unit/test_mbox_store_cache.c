/* The store's header cache (mbox_store_cache.c, postern.hcache): which
 * fields it gives and in what form, that a second open is answered from
 * the file, that a message changed by another writer is read again, and
 * that a truncated, corrupt or garbage cache file (and a symlink in its
 * place) is ignored and rebuilt, never trusted. */
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
deliver(struct fx *f, const char *data)
{
	struct pt_delivery d = { "Q1", "sender@example.com", "u1@example.com", NULL, &f->u, data,
		strlen(data), time(NULL) };
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_int_equal(st.code, 0);
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

static void
put(const char *path, const char *data, size_t len)
{
	unlink(path);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	if (len)
		assert_int_equal(fwrite(data, 1, len, fp), len);
	fclose(fp);
}

static const char *const msgs[] = {
	"Received: from x by y\nFrom: A <a@example.com>\nX-Other: 1\nSubject: first\n  folded on\n"
	"To: b@example.com\nTo: c@example.com\nMessage-ID: <m1@example.com>\n\nbody 1\n",
	"from: lower@example.com\nSUBJECT: aaa\nDate: Mon, 7 Dec 2026 10:00:00 +0000\n"
	"References: <m1@example.com>\n <m0@example.com>\n\nbody 2\n",
	"X-Only: nothing cached\n\nbody 3\n",
};
static const char *const want[] = {
	"From: A <a@example.com>\r\nSubject: first\r\n  folded on\r\nTo: b@example.com\r\n"
	"To: c@example.com\r\nMessage-ID: <m1@example.com>\r\n\r\n",
	"from: lower@example.com\r\nSUBJECT: aaa\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
	"References: <m1@example.com>\r\n <m0@example.com>\r\n\r\n",
	"\r\n",
};

static char *
fields(struct pt_mbox *mb, uint32_t uid)
{
	const char *h;
	size_t len;
	struct pt_status st;
	assert_int_equal(ops->header_fields(mb, uid, &h, &len, &st), 1);
	char *copy = malloc(len + 1);
	memcpy(copy, h, len);
	copy[len] = '\0';
	return copy;
}

static void
check_all(struct fx *f, const char *const *expect)
{
	struct pt_status st;
	struct pt_mbox *mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->count(mb), 3);
	for (uint32_t uid = 1; uid <= 3; uid++) {
		char *got = fields(mb, uid);
		assert_string_equal(got, expect[uid - 1]);
		free(got);
		/* Asked again: the same, from what this open learnt. */
		got = fields(mb, uid);
		assert_string_equal(got, expect[uid - 1]);
		free(got);
	}
	ops->close(mb);
}

static void
cache_file(struct fx *f, char *out, size_t len)
{
	snprintf(out, len, "%s/.imap/INBOX/postern.hcache", f->root);
}

/* Subject "aaa" of message 2 becomes "zzz" in the mbox, same length: the
 * message's identity as the cache keeps it (sizes, From_ date, UID) does
 * not change, so what comes back tells whether the cache answered. */
static void
edit_in_place(struct fx *f)
{
	size_t len;
	char *text = slurp(f->inbox, &len);
	char *p = strstr(text, "SUBJECT: aaa");
	assert_non_null(p);
	memcpy(p + 9, "zzz", 3);
	int fd = open(f->inbox, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, p + 9, 3, p + 9 - text), 3);
	close(fd);
	free(text);
}

static void
test_fields_cached_and_reused(void **state)
{
	struct fx *f = *state;
	for (size_t i = 0; i < 3; i++)
		deliver(f, msgs[i]);
	check_all(f, want);
	char path[700];
	cache_file(f, path, sizeof path);
	struct stat sb;
	assert_int_equal(lstat(path, &sb), 0);
	assert_true(S_ISREG(sb.st_mode));
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* A new open answers from the file. */
	edit_in_place(f);
	check_all(f, want);
	/* Without the file the message is read: the edit shows. */
	unlink(path);
	const char *edited[3] = { want[0], NULL, want[2] };
	char buf[512];
	snprintf(buf, sizeof buf, "%s", want[1]);
	memcpy(strstr(buf, "aaa"), "zzz", 3);
	edited[1] = buf;
	check_all(f, edited);
}

/* Another writer changes message 2 (its size changes), appends one and
 * this store expunges message 1: message 3's record stays good, 2 is
 * read again, the new one learnt. */
static void
test_outside_changes(void **state)
{
	struct fx *f = *state;
	for (size_t i = 0; i < 3; i++)
		deliver(f, msgs[i]);
	check_all(f, want);
	size_t len;
	char *text = slurp(f->inbox, &len);
	char *p = strstr(text, "SUBJECT: aaa");
	assert_non_null(p);
	/* "aaa" -> "bbbb": the rest of the file moves by one octet. */
	struct pt_strbuf nb = { 0 };
	pt_strbuf_put(&nb, text, (size_t)(p - text) + 9);
	pt_strbuf_puts(&nb, "bbbb");
	pt_strbuf_put(&nb, p + 12, len - (size_t)(p + 12 - text));
	put(f->inbox, nb.p, nb.len);
	pt_strbuf_free(&nb);
	free(text);
	deliver(f, "Subject: fourth\n\nbody 4\n");
	struct pt_status st;
	struct pt_mbox *mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->count(mb), 4);
	char *got = fields(mb, 2);
	assert_non_null(strstr(got, "SUBJECT: bbbb\r\n"));
	free(got);
	got = fields(mb, 4);
	assert_string_equal(got, "Subject: fourth\r\n\r\n");
	free(got);
	uint32_t one = 1;
	assert_int_equal(ops->expunge(mb, &one, 1, &st), 0);
	int changed;
	assert_int_equal(ops->sync(mb, &changed, &st), 0);
	got = fields(mb, 3);
	assert_string_equal(got, want[2]);
	free(got);
	ops->close(mb);
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	assert_int_equal(ops->count(mb), 3);
	got = fields(mb, 2);
	assert_non_null(strstr(got, "SUBJECT: bbbb\r\n"));
	free(got);
	ops->close(mb);
}

/* Truncations, flipped octets, garbage and a symlink: each is ignored
 * (the edit in the mbox shows, so nothing stale was served) and a good
 * file is written again. */
static void
test_corrupt_cache_ignored(void **state)
{
	struct fx *f = *state;
	for (size_t i = 0; i < 3; i++)
		deliver(f, msgs[i]);
	check_all(f, want);
	char path[700];
	cache_file(f, path, sizeof path);
	size_t good_len;
	char *good = slurp(path, &good_len);
	assert_non_null(good);
	assert_true(good_len > 40);
	edit_in_place(f);
	const char *edited[3] = { want[0], NULL, want[2] };
	char buf[512];
	snprintf(buf, sizeof buf, "%s", want[1]);
	memcpy(strstr(buf, "aaa"), "zzz", 3);
	edited[1] = buf;
	srand(15);
	char *bad = malloc(good_len + 64);
	for (int round = 0; round < 300; round++) {
		size_t n = good_len;
		memcpy(bad, good, good_len);
		if (round < 40) {
			n = (size_t)rand() % good_len;            /* truncated */
		} else if (round < 240) {
			int flips = 1 + rand() % 4;               /* flipped octets */
			for (int k = 0; k < flips; k++)
				bad[(size_t)rand() % good_len] ^= (char)(1 + rand() % 255);
		} else if (round < 280) {
			for (size_t k = 8; k < n; k++)            /* garbage, right magic */
				bad[k] = (char)rand();
		} else {
			n = good_len + (size_t)(rand() % 64);     /* grown */
			for (size_t k = good_len; k < n; k++)
				bad[k] = (char)rand();
		}
		if (memcmp(bad, good, n < good_len ? n : good_len) == 0 && n == good_len)
			continue;
		put(path, bad, n);
		check_all(f, edited);
		/* Rebuilt: a sound file again, serving the edited text. */
		size_t l;
		char *now = slurp(path, &l);
		assert_non_null(now);
		assert_memory_equal(now, "PTHC0001", 8);
		free(now);
	}
	/* A symlink in its place is not followed, and is replaced. */
	char target[760];
	snprintf(target, sizeof target, "%s/elsewhere", f->dir);
	put(target, good, good_len);
	unlink(path);
	assert_int_equal(symlink(target, path), 0);
	check_all(f, edited);
	struct stat sb;
	assert_int_equal(lstat(path, &sb), 0);
	assert_true(S_ISREG(sb.st_mode));
	size_t tl;
	char *t = slurp(target, &tl);
	assert_int_equal(tl, good_len);
	assert_memory_equal(t, good, good_len);
	free(t);
	free(bad);
	free(good);
}

/* What the cache keeps of a header: the cached fields only, exactly. */
static void
test_extract(void **state)
{
	(void)state;
	struct pt_strbuf b = { 0 };
	const char *h = "Subject: x\r\nX-A: y\r\nfrom: z\r\n\r\n";
	assert_int_equal(ms_cache_extract(h, strlen(h), &b), 0);
	assert_int_equal(b.len, strlen("Subject: x\r\nfrom: z\r\n\r\n"));
	assert_memory_equal(b.p, "Subject: x\r\nfrom: z\r\n\r\n", b.len);
	pt_strbuf_free(&b);
	/* A last field without its line end is left to a full read. */
	memset(&b, 0, sizeof b);
	assert_int_equal(ms_cache_extract("Subject: x", 10, &b), -1);
	pt_strbuf_free(&b);
	/* Too big to keep. */
	struct pt_strbuf big = { 0 };
	pt_strbuf_puts(&big, "References: ");
	for (int i = 0; i < 2000; i++)
		pt_strbuf_puts(&big, "<abc@example.com>\r\n ");
	pt_strbuf_puts(&big, "<z@z>\r\n\r\n");
	memset(&b, 0, sizeof b);
	assert_int_equal(ms_cache_extract(big.p, big.len, &b), -1);
	pt_strbuf_free(&b);
	pt_strbuf_free(&big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fields_cached_and_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outside_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_cache_ignored, setup, teardown),
		cmocka_unit_test(test_extract),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
