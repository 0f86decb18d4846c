/* libFuzzer target: arbitrary bytes as a user's INBOX, then the mailbox
 * store opens it, reads every message, sets a flag and expunges one. No
 * crash, and every other message must still be there with the same wire
 * text after reopening (metadata writes never damage mail); the list in
 * brief (what SELECT reads) is info()'s at every step. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mbox/mbox.h"
#include "postern/mailbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static char location[256];
static char inbox[256];
static char idx[256];

static void
init(void)
{
	if (dir[0])
		return;
	snprintf(dir, sizeof dir, "/tmp/fuzz_mstore_XXXXXX");
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(location, sizeof location, "mbox:%s/mail:INBOX=%s/inbox.%%u", dir, dir);
	snprintf(inbox, sizeof inbox, "%s/inbox.f", dir);
	snprintf(idx, sizeof idx, "%s/mail/.imap/INBOX/postern.index", dir);
}

struct snap {
	uint32_t *uid;
	char **text;
	size_t *len;
	size_t n;
};

static void
take(const struct pt_mailbox_ops *ops, struct pt_mbox *mb, struct snap *s)
{
	s->n = ops->count(mb);
	s->uid = calloc(s->n + 1, sizeof *s->uid);
	s->text = calloc(s->n + 1, sizeof *s->text);
	s->len = calloc(s->n + 1, sizeof *s->len);
	for (size_t i = 0; i < s->n; i++) {
		const struct pt_msg_info *m = ops->info(mb, i);
		struct pt_msg_text t;
		struct pt_status st;
		s->uid[i] = m->uid;
		if (i && m->uid <= s->uid[i - 1])
			abort();
		if (ops->read(mb, m->uid, &t, &st) != 0) {
			fprintf(stderr, "read uid %u: %d %s\n", m->uid, st.code, st.text);
			abort();
		}
		if (t.len != m->size || t.hdr_len > t.len) {
			fprintf(stderr, "uid %u: size %zu != %llu (hdr %zu)\n", m->uid, t.len,
			        (unsigned long long)m->size, t.hdr_len);
			abort();
		}
		s->text[i] = malloc(t.len + 1);
		memcpy(s->text[i], t.data, t.len);
		s->len[i] = t.len;
		ops->release(mb, &t);
	}
}

static void
briefs_agree(const struct pt_mailbox_ops *ops, struct pt_mbox *mb)
{
	size_t n = ops->count(mb);
	struct pt_msg_brief *b = calloc(n + 1, sizeof *b);
	if (b == NULL)
		abort();
	ops->briefs(mb, 0, n, b);
	for (size_t i = 0; i < n; i++) {
		const struct pt_msg_info *m = ops->info(mb, i);
		if (b[i].uid != m->uid || b[i].flags != m->flags || b[i].keywords != m->keywords ||
		    b[i].modseq != m->modseq)
			abort();
	}
	free(b);
}

static void
drop(struct snap *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->text[i]);
	free(s->text);
	free(s->uid);
	free(s->len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init();
	unlink(idx);
	FILE *fp = fopen(inbox, "wb");
	if (fp == NULL)
		abort();
	fwrite(data, 1, size, fp);
	fclose(fp);
	const struct pt_mailbox_ops *ops = &mbox_store_ops;
	struct mbox_settings set = { location, 0, 1000, 300, (gid_t)-1, 0, 0 };
	struct pt_user u = { .name = "f", .uid = getuid(), .gid = getgid(), .home = "/nonexistent" };
	struct pt_status st;
	struct pt_mstore *ms = mbox_store_open_with(&set, &u, &st);
	if (ms == NULL)
		abort();
	struct pt_mbox *mb = ops->open(ms, "INBOX", 0, &st);
	if (mb == NULL)
		abort();
	struct snap before;
	take(ops, mb, &before);
	if (before.n) {
		struct pt_flag_update fu = { before.uid[0], PT_F_SEEN | PT_F_FLAGGED, 0 };
		if (ops->set_flags(mb, &fu, 1, &st) != 0)
			abort();
		uint32_t gone = before.uid[before.n / 2];
		if (ops->expunge(mb, &gone, 1, &st) != 0)
			abort();
		briefs_agree(ops, mb);
	}
	ops->close(mb);
	/* From the file alone, as another process would see it. */
	unlink(idx);
	mb = ops->open(ms, "INBOX", 0, &st);
	if (mb == NULL)
		abort();
	struct snap after;
	take(ops, mb, &after);
	if (before.n && after.n != before.n - 1)
		abort();
	for (size_t i = 0, j = 0; i < before.n; i++) {
		if (i == before.n / 2)
			continue;
		if (after.uid[j] != before.uid[i] || after.len[j] != before.len[i] ||
		    memcmp(after.text[j], before.text[i], before.len[i]) != 0)
			abort();
		if (j == 0 && i == 0 && (ops->info(mb, 0)->flags & PT_F_SYSTEM) !=
		                            (PT_F_SEEN | PT_F_FLAGGED))
			abort();
		j++;
	}
	ops->close(mb);
	/* From the index this time, a flag changed by another open. */
	mb = ops->open(ms, "INBOX", 0, &st);
	struct pt_mbox *other = ops->open(ms, "INBOX", 0, &st);
	if (mb == NULL || other == NULL)
		abort();
	briefs_agree(ops, mb);
	if (after.n) {
		struct pt_flag_change fc = { after.uid[after.n - 1], PT_F_ANSWERED, 0, 0, 0 };
		int changed;
		if (ops->change_flags(other, &fc, 1, &st) != 0 || ops->sync(mb, &changed, &st) != 0)
			abort();
		briefs_agree(ops, other);
		briefs_agree(ops, mb);
		if (!(ops->info(mb, after.n - 1)->flags & PT_F_ANSWERED))
			abort();
	}
	ops->close(other);
	ops->close(mb);
	drop(&before);
	drop(&after);
	ops->store_close(ms);
	return 0;
}
