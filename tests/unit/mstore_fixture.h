/* Shared fixture of the mailbox-store unit tests: a temporary spool and
 * home for user u1 (the current uid) and the store opened on them. */
#ifndef POSTERN_TEST_MSTORE_FIXTURE_H
#define POSTERN_TEST_MSTORE_FIXTURE_H

static const struct pt_mailbox_ops *ops = &mbox_store_ops;

#ifndef MSTORE_TMP
#define MSTORE_TMP "/tmp"
#endif

struct fx {
	char dir[64];
	char location[512];
	char inbox[512];
	char root[512];
	struct mbox_settings s;
	struct pt_user u;
	struct pt_mstore *ms;
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	/* MSTORE_TMP: a test whose crash cases sync hundreds of times can
	 * ask for memory-backed files (its crashes are simulated, no sync
	 * is what makes them safe); /tmp where that is not writable. */
	const char *base = MSTORE_TMP;
	if (access(base, W_OK) != 0)
		base = "/tmp";
	snprintf(f->dir, sizeof f->dir, "%s/test_mstore_XXXXXX", base); /* mkdtemp template */
	if (mkdtemp(f->dir) == NULL)
		return -1;
	char p[600];
	snprintf(p, sizeof p, "%s/spool", f->dir);
	mkdir(p, 0755);
	snprintf(p, sizeof p, "%s/home", f->dir);
	mkdir(p, 0755);
	snprintf(p, sizeof p, "%s/home/u1", f->dir);
	mkdir(p, 0755);
	snprintf(f->location, sizeof f->location, "mbox:%s/home/%%u/mail:INBOX=%s/spool/%%u", f->dir,
	         f->dir);
	snprintf(f->inbox, sizeof f->inbox, "%s/spool/u1", f->dir);
	snprintf(f->root, sizeof f->root, "%s/home/u1/mail", f->dir);
	f->s = (struct mbox_settings){ f->location, 0, 2000, 300, (gid_t)-1, 1, 0 };
	f->u = (struct pt_user){ "u1", getuid(), getgid(), "", "" };
	snprintf(f->u.home, sizeof f->u.home, "%s/home/u1", f->dir);
	struct pt_status st;
	f->ms = mbox_store_open_with(&f->s, &f->u, &st);
	if (f->ms == NULL)
		return -1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	ops->store_close(f->ms);
	char cmd[200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

#endif
