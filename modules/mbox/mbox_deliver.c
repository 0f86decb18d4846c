/* Local delivery into an mbox: open the user's INBOX safely, lock, append
 * a group of messages with few writes and one fsync, and on any failure
 * truncate back so that no partial message is ever left behind. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "postern/fdio.h"
#include "postern/log.h"
#include "mbox.h"

#define OPEN_ATTEMPTS 4

struct target {
	const char *path;
	const char *user;
};

/* Prefix a failure with the mailbox and user, as Postfix's local(8) words
 * it, and give every delivery of the group the same fate. */
static void
fail_range(const struct target *t, struct pt_status *st, size_t from, size_t n,
           const struct pt_status *why)
{
	for (size_t i = from; i < n; i++)
		pt_status_set(&st[i], why->code, why->dsn, "cannot update mailbox %s for user %s. %s",
		              t->path, t->user, why->text);
}

static void
errno_status(struct pt_status *why, int err, const char *what)
{
	if (err == EFBIG || err == EDQUOT)
		pt_status_set(why, 552, "5.2.2", "%s: %s", what, strerror(err));
	else if (err == ENOSPC)
		pt_status_set(why, 452, "4.3.1", "%s: %s", what, strerror(err));
	else
		pt_status_set(why, 451, "4.3.0", "%s: %s", what, strerror(err ? err : EIO));
}

static int
dir_of(const char *path, char *dir, size_t len)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL || (size_t)(slash - path) >= len)
		return -1;
	size_t n = slash == path ? 1 : (size_t)(slash - path);
	memcpy(dir, path, n);
	dir[n] = '\0';
	return 0;
}

static uid_t
current_fsuid(void)
{
	/* An invalid id changes nothing and returns the current fsuid. */
	return (uid_t)syscall(SYS_setfsuid, (uid_t)-1);
}

/* Create the INBOX file; the spool directory must exist already. */
static int
create_mailbox(const char *path, const struct pt_user *u, const struct mbox_settings *s,
               const struct stat *dsb, struct pt_status *why)
{
	int group_mode = (dsb->st_mode & S_ISGID) ||
	                 (s->priv_gid != (gid_t)-1 && dsb->st_gid == s->priv_gid);
	mode_t mode = group_mode ? 0660 : 0600;
	int flags = O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
	int fd = open(path, flags, mode);
	int privileged = 0;
	if (fd < 0 && (errno == EACCES || errno == EPERM) && s->priv_gid != (gid_t)-1) {
		/* /var/mail is root:mail 2775: the user creates its file only
		 * with the mail group's help. */
		gid_t saved = mbox_fsgid_enter(s->priv_gid);
		if (saved != (gid_t)-1) {
			fd = open(path, flags, mode);
			int e = errno;
			mbox_fsgid_leave(saved);
			errno = e;
			privileged = 1;
		} else {
			errno = EACCES;
		}
	}
	if (fd < 0) {
		if (errno != EEXIST)
			pt_status_set(why, 450, "4.2.0", "cannot create mailbox: %s", strerror(errno));
		return -1;
	}
	/* Root creates the file for the user; group mode gives it the spool's
	 * group (mail) so that the mail group's tools can lock and read it. */
	struct stat sb;
	uid_t want_uid = geteuid() == 0 ? u->uid : (uid_t)-1;
	gid_t want_gid = group_mode ? dsb->st_gid : (geteuid() == 0 ? u->gid : (gid_t)-1);
	if (fstat(fd, &sb) == 0 &&
	    ((want_uid != (uid_t)-1 && sb.st_uid != want_uid) ||
	     (want_gid != (gid_t)-1 && sb.st_gid != want_gid)) &&
	    fchown(fd, want_uid, want_gid) != 0 && want_uid != (uid_t)-1 && sb.st_uid != want_uid) {
		pt_status_set(why, 450, "4.2.0", "cannot give the new mailbox to the user: %s",
		              strerror(errno));
		close(fd);
		/* Remove the empty file with the rights that created it. */
		gid_t saved = privileged ? mbox_fsgid_enter(s->priv_gid) : (gid_t)-1;
		unlink(path);
		mbox_fsgid_leave(saved);
		return -1;
	}
	/* The umask must not decide who may read the mail. */
	fchmod(fd, mode);
	return fd;
}

/* Open (or create) the mailbox for appending and check it is a plain file
 * of this user. Returns the fd, or -1 with why filled; *created tells
 * whether the directory entry is new (it needs a directory fsync). The fd
 * is also readable (*readable) when the file's mode allows: the last byte
 * is checked through it instead of a second open by name per delivery. */
static int
open_mailbox(const char *path, const struct pt_user *u, const struct mbox_settings *s,
             int *created, int *readable, struct pt_status *why)
{
	char dir[4096];
	struct stat dsb, sb;
	*created = 0;
	if (dir_of(path, dir, sizeof dir) != 0) {
		pt_status_set(why, 451, "4.3.5", "mailbox path is not absolute");
		return -1;
	}
	if (stat(dir, &dsb) != 0) {
		pt_status_set(why, 450, "4.2.0", "mail spool directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(dsb.st_mode)) {
		pt_status_set(why, 450, "4.2.0", "mail spool directory %s: %s", dir,
		              strerror(ENOTDIR));
		return -1;
	}
	int fd = -1;
	for (int attempt = 0; fd < 0 && attempt < OPEN_ATTEMPTS; attempt++) {
		/* O_NONBLOCK: a FIFO planted in the spool must not hang us. */
		fd = open(path, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0 && errno == EACCES)
			fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd >= 0)
			break;
		if (errno == ELOOP) {
			pt_status_set(why, 450, "4.2.0", "mailbox is a symbolic link");
			return -1;
		}
		if (errno != ENOENT) {
			pt_status_set(why, 450, "4.2.0", "cannot open mailbox: %s", strerror(errno));
			return -1;
		}
		fd = create_mailbox(path, u, s, &dsb, why);
		if (fd >= 0)
			*created = 1;
		else if (errno != EEXIST)
			return -1;
	}
	if (fd < 0) {
		pt_status_set(why, 450, "4.2.0", "cannot open mailbox: it keeps changing");
		return -1;
	}
	if (fstat(fd, &sb) != 0) {
		pt_status_set(why, 450, "4.2.0", "cannot stat mailbox: %s", strerror(errno));
		goto fail;
	}
	if (!S_ISREG(sb.st_mode)) {
		pt_status_set(why, 450, "4.2.0", "mailbox is not a regular file");
		goto fail;
	}
	if (sb.st_nlink > 1) {
		pt_status_set(why, 450, "4.2.0", "mailbox has %lu hard links",
		              (unsigned long)sb.st_nlink);
		goto fail;
	}
	/* Privileged (root, or running with the user's fsuid): only the
	 * user's own file. Rootless, every mailbox belongs to us anyway. */
	if ((geteuid() == 0 || current_fsuid() != geteuid()) && sb.st_uid != u->uid) {
		pt_status_set(why, 450, "4.2.0", "mailbox is owned by uid %lu, not by the user",
		              (unsigned long)sb.st_uid);
		goto fail;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
		pt_status_set(why, 450, "4.2.0", "cannot use mailbox: %s", strerror(errno));
		goto fail;
	}
	*readable = (fl & O_ACCMODE) == O_RDWR;
	return fd;
fail:
	close(fd);
	return -1;
}

/* While we waited for the lock, the name may have been renamed or
 * replaced: appending to an orphan would lose the mail. */
static int
still_same_file(int fd, const char *path)
{
	struct stat a, b;
	return fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/* A created mailbox's name is durable once its directory is synced. */
static int
fsync_parent(const char *path)
{
	char dir[4096];
	return dir_of(path, dir, sizeof dir) == 0 ? pt_fsync_dir(dir) : -1;
}

struct planned {
	struct pt_strbuf buf;
	off_t start, end;             /* file offsets of the message (with a
	                                 leading repair LF for the first) */
	int write;                    /* 1: part of this group's append */
};

/* Append the planned messages in order (after the repair LF). Returns
 * the bytes of what made it whole; *err is set when a message did not
 * (the caller cuts the file back to that message's start). */
static size_t
append_all(int fd, const char *lf, const struct planned *p, size_t n, int *err)
{
	size_t total = 0;
	*err = 0;
	if (lf) {
		if (pt_write_all(fd, lf, 1) != 0) {
			*err = errno;
			return 0;
		}
		total = 1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!p[i].write)
			continue;
		if (pt_write_all(fd, p[i].buf.p, p[i].buf.len) != 0) {
			*err = errno;
			break;
		}
		total += p[i].buf.len;
	}
	return total;
}

static void
deliver_locked(const struct target *t, int fd, int readable, const struct mbox_settings *s,
               struct mbox_lock *lk, const struct pt_delivery *d, size_t n, struct pt_status *st,
               int created)
{
	struct stat sb;
	struct pt_status why;
	if (fstat(fd, &sb) != 0) {
		errno_status(&why, errno, "cannot stat mailbox");
		fail_range(t, st, 0, n, &why);
		return;
	}
	off_t size0 = sb.st_size;
	char last = '\n';
	if (size0 > 0 && readable) {
		/* A damaged mbox without a final LF: start our From_ line on a
		 * line of its own. */
		if (pread(fd, &last, 1, size0 - 1) != 1)
			last = '\n';
	} else if (size0 > 0) {
		/* A write-only fd (the mode denies us reading): read by name. */
		struct stat rsb;
		int rfd = open(t->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (rfd < 0 || fstat(rfd, &rsb) != 0 || rsb.st_ino != sb.st_ino ||
		    rsb.st_dev != sb.st_dev || pread(rfd, &last, 1, size0 - 1) != 1)
			last = '\n';
		if (rfd >= 0)
			close(rfd);
	}
	struct planned *p = calloc(n, sizeof *p);
	if (p == NULL) {
		pt_status_set(&why, 451, "4.3.0", "out of memory");
		fail_range(t, st, 0, n, &why);
		return;
	}
	const char *lf = last != '\n' ? "\n" : NULL;
	off_t pos = size0 + (lf ? 1 : 0);
	size_t nwrite = 0;
	for (size_t i = 0; i < n; i++) {
		if (d[i].user == NULL || strcmp(d[i].user->name, d[0].user->name) != 0) {
			pt_status_set(&why, 451, "4.3.5", "delivery group mixes users");
			fail_range(t, st, i, i + 1, &why);
			continue;
		}
		if (mbox_format(&d[i], &p[i].buf) != 0) {
			pt_status_set(&why, 451, "4.3.0", "out of memory");
			fail_range(t, st, i, i + 1, &why);
			continue;
		}
		if (s->size_limit > 0 && (off_t)p[i].buf.len > s->size_limit - pos) {
			/* Postfix's words for the same limit (it enforces it as
			 * RLIMIT_FSIZE); the file stays untouched for it. */
			pt_status_set(&why, 552, "5.2.2", "error writing message: %s", strerror(EFBIG));
			fail_range(t, st, i, i + 1, &why);
			pt_strbuf_free(&p[i].buf);
			continue;
		}
		p[i].start = nwrite == 0 ? size0 : pos;
		pos += (off_t)p[i].buf.len;
		p[i].end = pos;
		p[i].write = 1;
		nwrite++;
	}
	if (nwrite == 0) {
		free(p);
		return;
	}
	int err;
	size_t wrote = 0;
	if (mbox_append_begin(lk, size0, pos) != 0) {
		/* Without the record a death mid-append would leave a partial
		 * message: write nothing. */
		err = errno ? errno : EIO;
		for (size_t i = 0; i < n; i++)
			if (p[i].write) {
				errno_status(&why, err, "cannot record the append in the dotlock");
				fail_range(t, st, i, i + 1, &why);
				pt_strbuf_free(&p[i].buf);
			}
		free(p);
		return;
	}
	wrote = append_all(fd, lf, p, n, &err);
	off_t keep = size0 + (off_t)wrote;
	size_t first_bad = n;
	if (err) {
		/* Keep whole messages only: cut at the start of the first one
		 * that did not fully make it. */
		for (size_t i = 0; i < n; i++)
			if (p[i].write && p[i].end > keep) {
				first_bad = i;
				keep = p[i].start;
				break;
			}
		errno_status(&why, err, "error writing message");
	}
	if (first_bad < n && ftruncate(fd, keep) != 0)
		pt_error("cannot truncate mailbox %s back to %lld bytes: %s", t->path,
		         (long long)keep, strerror(errno));
	/* fdatasync covers the appended data and the size; a new file's name
	 * needs the directory synced as well. */
	int sync_err = 0;
	if ((created ? fsync(fd) : fdatasync(fd)) != 0)
		sync_err = errno;
	else if (created && fsync_parent(t->path) != 0)
		sync_err = errno;
	if (sync_err) {
		/* Nothing of this group is known to be durable. */
		errno_status(&why, sync_err, "error writing message (fsync)");
		if (ftruncate(fd, size0) != 0 || fdatasync(fd) != 0)
			pt_error("cannot truncate mailbox %s back to %lld bytes: %s", t->path,
			         (long long)size0, strerror(errno));
		first_bad = 0;
	}
	mbox_append_end(lk);
	for (size_t i = 0; i < n; i++) {
		if (!p[i].write) {
			pt_strbuf_free(&p[i].buf);
			continue;
		}
		if (i >= first_bad)
			fail_range(t, st, i, i + 1, &why);
		else
			pt_status_set(&st[i], 0, "2.0.0", "delivered to mailbox");
		pt_strbuf_free(&p[i].buf);
	}
	free(p);
}

void
mbox_deliver_with(const struct mbox_settings *s, const struct pt_delivery *d, size_t n,
                  struct pt_status *st)
{
	if (n == 0)
		return;
	if (d[0].user == NULL) {
		for (size_t i = 0; i < n; i++)
			pt_status_set(&st[i], 451, "4.3.5", "delivery without a mailbox owner");
		return;
	}
	char path[4096];
	struct pt_status why;
	struct target t = { path, d[0].user->name };
	if (mbox_inbox_path(s->mail_location, d[0].user, path, sizeof path, &why) != 0) {
		for (size_t i = 0; i < n; i++)
			st[i] = why;
		return;
	}
	for (int attempt = 0; attempt < OPEN_ATTEMPTS; attempt++) {
		int created, readable;
		int fd = open_mailbox(path, d[0].user, s, &created, &readable, &why);
		if (fd < 0) {
			fail_range(&t, st, 0, n, &why);
			return;
		}
		struct mbox_lock lk;
		if (mbox_lock(&lk, fd, path, s, &why) != 0) {
			close(fd);
			fail_range(&t, st, 0, n, &why);
			return;
		}
		if (!still_same_file(fd, path)) {
			mbox_unlock(&lk, s);
			close(fd);
			continue;
		}
		deliver_locked(&t, fd, readable, s, &lk, d, n, st, created);
		mbox_unlock(&lk, s);
		close(fd);
		return;
	}
	pt_status_set(&why, 450, "4.2.0", "mailbox was replaced while waiting for the lock");
	fail_range(&t, st, 0, n, &why);
}

static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static char live_location[4096] = "mbox:~/mail:INBOX=/var/mail/%u";
static struct mbox_settings live = { .mail_location = live_location,
	                              .size_limit = 51200000,
	                              .lock_timeout_ms = 10000,
	                              .dotlock_stale_s = 300,
	                              .priv_gid = (gid_t)-1,
	                              .rewrite_copy_below = 64 << 20 };

void
mbox_settings_install(const struct mbox_settings *s)
{
	pthread_mutex_lock(&live_mu);
	live = *s;
	snprintf(live_location, sizeof live_location, "%s", s->mail_location);
	live.mail_location = live_location;
	pthread_mutex_unlock(&live_mu);
}

void
mbox_deliver(const struct pt_delivery *d, size_t n, struct pt_status *st)
{
	/* A reload may install new settings meanwhile: work on a copy. */
	char location[sizeof live_location];
	pthread_mutex_lock(&live_mu);
	struct mbox_settings s = live;
	memcpy(location, live_location, sizeof location);
	pthread_mutex_unlock(&live_mu);
	s.mail_location = location;
	mbox_deliver_with(&s, d, n, st);
}
