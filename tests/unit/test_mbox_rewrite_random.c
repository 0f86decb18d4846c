/* Random mboxes (storage headers or none, CRLF lines, missing
 * empty lines and LFs, odd From lines) through a first open, expunges and
 * flag changes; the list a rewrite leaves in memory must equal a fresh
 * parse of the file it wrote, and the in-place and copying rewrites must
 * write the same bytes. MBOX_RANDOM_OUT=dir dumps the final files (to
 * compare with another tree). */
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

static uint64_t rng;
static uint32_t
rnd(uint32_t n)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng >> 33) % n;
}

static void
putb(struct pt_strbuf *b, const char *s)
{
	pt_strbuf_put(b, s, strlen(s));
}

static void
line(struct pt_strbuf *b, const char *s, int crlf)
{
	putb(b, s);
	putb(b, crlf ? "\r\n" : "\n");
}

static char *
gen(size_t *len)
{
	struct pt_strbuf b = { 0 };
	int crlf_box = rnd(4) == 0;
	size_t n = 1 + rnd(7);
	static const char *fields[] = {
		"Subject: s", "X-UID: 7", "Status: RO", "X-Status: F", "X-Keywords: foo bar",
		"Content-Length: 3", "X-Other: y", "Received: a\n\tcontinued", "Status: O",
		"X-Postern-Quoting: mboxrd", "From: x@y", "X-IMAP: 1 2",
	};
	for (size_t i = 0; i < n; i++) {
		int crlf = crlf_box || rnd(8) == 0;
		if (rnd(12) == 0 && i + 1 == n) {
			putb(&b, "From a@b  Sat Nov 28 06:53:10 2026");   /* no LF, EOF */
			break;
		}
		line(&b, "From a@b  Sat Nov 28 06:53:10 2026", crlf);
		size_t nf = rnd(5);
		for (size_t k = 0; k < nf; k++)
			line(&b, fields[rnd(sizeof fields / sizeof fields[0])], crlf && rnd(4));
		int last = i + 1 == n;
		if (last && rnd(6) == 0) {
			/* A header without its last LF at EOF. */
			putb(&b, "X-Last: nolf");
			break;
		}
		if (last && rnd(6) == 0)
			break;                            /* only a header */
		int e = rnd(10);
		if (e == 0)
			;                                 /* no empty line */
		else
			line(&b, "", crlf && e < 5);
		size_t nb = rnd(5);
		for (size_t k = 0; k < nb; k++) {
			static const char *bl[] = { "body", ">From q", "From odd body", "", "   ", "\xff\xff" };
			line(&b, bl[rnd(6)], crlf);
		}
		if (last && rnd(5) == 0) {
			putb(&b, "tail without lf");
			break;
		}
		if (!last && rnd(5) == 0)
			continue;                         /* no empty line before the next */
		line(&b, "", crlf && rnd(2));
	}
	*len = b.len;
	return b.p;
}

struct view {
	size_t n;
	struct pt_msg_info in[16];
	char *text[16];
	size_t tlen[16];
};

static void
view_take(struct pt_mbox *mb, struct view *v)
{
	v->n = ops->count(mb);
	assert_true(v->n <= 16);
	for (size_t i = 0; i < v->n; i++) {
		v->in[i] = *ops->info(mb, i);
		struct pt_msg_text t;
		struct pt_status st;
		assert_int_equal(ops->read(mb, v->in[i].uid, &t, &st), 0);
		v->text[i] = malloc(t.len + 1);
		memcpy(v->text[i], t.data, t.len);
		v->tlen[i] = t.len;
		ops->release(mb, &t);
	}
}

static void
view_free(struct view *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->text[i]);
	v->n = 0;
}

static int
view_cmp(const char *what, unsigned seed, const struct view *a, const struct view *b)
{
	int bad = 0;
	if (a->n != b->n) {
		printf("seed %u %s: count %zu vs %zu\n", seed, what, a->n, b->n);
		return 1;
	}
	for (size_t i = 0; i < a->n; i++) {
		if (a->in[i].uid != b->in[i].uid || a->in[i].size != b->in[i].size ||
		    (a->in[i].flags & PT_F_SYSTEM) != (b->in[i].flags & PT_F_SYSTEM) ||
		    a->tlen[i] != b->tlen[i] || memcmp(a->text[i], b->text[i], a->tlen[i]) != 0) {
			printf("seed %u %s: msg %zu uid %u/%u size %llu/%llu flags %x/%x len %zu/%zu\n", seed,
			       what, i, a->in[i].uid, b->in[i].uid, (unsigned long long)a->in[i].size,
			       (unsigned long long)b->in[i].size, a->in[i].flags, b->in[i].flags, a->tlen[i],
			       b->tlen[i]);
			bad = 1;
		}
		/* The size is the wire text's. */
		if (b->in[i].size != b->tlen[i]) {
			printf("seed %u %s: msg %zu size %llu but text %zu\n", seed, what, i,
			       (unsigned long long)b->in[i].size, b->tlen[i]);
			bad = 1;
		}
	}
	return bad;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	long n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	char *p = malloc((size_t)n + 1);
	*len = fread(p, 1, (size_t)n, fp);
	fclose(fp);
	return p;
}

static void
blank(char *p, size_t len)
{
	char *b = memmem(p, len, "X-IMAPbase: ", 12);
	if (b)
		for (b += 12; b < p + len && ((*b >= '0' && *b <= '9') || *b == ' '); b++)
			if (*b != ' ')
				*b = '#';
}

static void
reset(struct fx *f, const char *text, size_t len)
{
	char cmd[700];
	snprintf(cmd, sizeof cmd, "rm -rf '%s/.imap'", f->root);
	assert_int_equal(system(cmd), 0);
	FILE *fp = fopen(f->inbox, "wb");
	fwrite(text, 1, len, fp);
	fclose(fp);
}

static void
drop_index(struct fx *f)
{
	char cmd[700];
	snprintf(cmd, sizeof cmd, "rm -rf '%s/.imap'", f->root);
	assert_int_equal(system(cmd), 0);
}

/* One run: returns the final file (blanked) and counts mismatches. */
static char *
one(struct fx *f, unsigned seed, const char *text, size_t len, size_t *olen, int *bad, int same_session)
{
	reset(f, text, len);
	rng = seed * 7919ull + 1;
	(void)rnd(2);
	struct pt_status st;
	struct pt_mbox *mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	struct view v0 = { 0 }, v1 = { 0 }, v2 = { 0 };
	view_take(mb, &v0);
	if (same_session) {
		/* Changes on the records the first write left in memory. */
		size_t n = ops->count(mb);
		struct pt_flag_change ch[16];
		size_t nc = 0;
		for (size_t i = 0; i < n; i++)
			if (rnd(2))
				ch[nc++] = (struct pt_flag_change){ ops->info(mb, i)->uid, PT_F_FLAGGED | PT_F_DELETED,
					                            0, 0, 0 };
		if (nc)
			assert_int_equal(ops->change_flags(mb, ch, nc, &st), 0);
		uint32_t u = ops->count(mb) ? ops->info(mb, rnd((uint32_t)ops->count(mb)))->uid : 0;
		if (u && rnd(2))
			assert_int_equal(ops->expunge(mb, &u, 1, &st), 0);
		int ch2;
		assert_int_equal(ops->sync(mb, &ch2, &st), 0);
		view_free(&v0);
		view_take(mb, &v0);
	}
	ops->close(mb);
	/* The first open wrote: a fresh parse agrees. */
	drop_index(f);
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	view_take(mb, &v1);
	*bad += view_cmp("first write", seed, &v0, &v1);
	view_free(&v0);
	view_free(&v1);
	ops->close(mb);
	mb = ops->open(f->ms, "INBOX", 0, &st);
	size_t n = ops->count(mb);
	uint32_t gone[16];
	size_t ng = 0;
	struct pt_flag_change ch[16];
	size_t nc = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t u = ops->info(mb, i)->uid;
		if (rnd(3) == 0)
			gone[ng++] = u;
		else if (rnd(2) == 0)
			ch[nc++] = (struct pt_flag_change){ u, rnd(2) ? PT_F_SEEN | PT_F_FLAGGED : PT_F_ANSWERED,
				                            rnd(2) ? PT_F_SEEN : 0, 0, 0 };
	}
	if (nc)
		assert_int_equal(ops->change_flags(mb, ch, nc, &st), 0);
	if (ng)
		assert_int_equal(ops->expunge(mb, gone, ng, &st), 0);
	int changed;
	assert_int_equal(ops->sync(mb, &changed, &st), 0);
	view_take(mb, &v1);
	ops->close(mb);
	/* What the list said after the rewrite against the file. */
	drop_index(f);
	mb = ops->open(f->ms, "INBOX", 0, &st);
	assert_non_null(mb);
	view_take(mb, &v2);
	ops->close(mb);
	*bad += view_cmp("after expunge", seed, &v1, &v2);
	view_free(&v1);
	view_free(&v2);
	char *out = slurp(f->inbox, olen);
	blank(out, *olen);
	return out;
}

static void
test_random_rewrites(void **state)
{
	struct fx *f = *state;
	const char *e = getenv("MBOX_RANDOM_SEEDS");
	unsigned seeds = e ? (unsigned)atoi(e) : 300;
	const char *dir = getenv("MBOX_RANDOM_OUT");
	int bad = 0;
	for (unsigned seed = 1; seed <= seeds; seed++) {
		rng = seed;
		size_t len;
		char *text = gen(&len);
		size_t la, lb;
		ms_rewrite_copy_only = 1;
		char *a = one(f, seed, text, len, &la, &bad, seed & 1);
		ms_rewrite_copy_only = 0;
		char *b = one(f, seed, text, len, &lb, &bad, seed & 1);
		if (la != lb || memcmp(a, b, la) != 0) {
			printf("seed %u: copy and in-place differ\n", seed);
			bad++;
		}
		if (dir) {
			char p[600];
			snprintf(p, sizeof p, "%s/%u", dir, seed);
			FILE *fp = fopen(p, "wb");
			fwrite(a, 1, la, fp);
			fclose(fp);
			snprintf(p, sizeof p, "%s/%u.in", dir, seed);
			fp = fopen(p, "wb");
			fwrite(text, 1, len, fp);
			fclose(fp);
		}
		free(a);
		free(b);
		free(text);
	}
	printf("%d mismatches\n", bad);
	assert_int_equal(bad, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_random_rewrites, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
