/* Mailbox locking in Debian Policy 11.6 order: an fcntl write lock on the
 * open mbox, then the PATH.lock dotlock (made by link() so it works on
 * every file system), released in reverse. Where the spool directory is
 * only writable by mail_privileged_group, the dotlock is made with that
 * group as this thread's fsgid. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "postern/log.h"
#include "mbox.h"

static long long
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Short, slightly growing sleeps: a lock is usually held for one write +
 * fsync (a few ms); the jitter keeps waiters from waking in step. */
static void
backoff(unsigned *step)
{
	unsigned ms = 2u + *step * 3u + (unsigned)(now_ms() % 3);
	if (ms > 50)
		ms = 50;
	(*step)++;
	struct timespec ts = { 0, (long)ms * 1000000L };
	nanosleep(&ts, NULL);
}

gid_t
mbox_fsgid_enter(gid_t gid)
{
	/* The raw syscall changes only the calling thread's credentials (the
	 * glibc set*gid wrappers would broadcast to every thread). */
	gid_t prev = (gid_t)syscall(SYS_setfsgid, gid);
	gid_t cur = (gid_t)syscall(SYS_setfsgid, (gid_t)-1);
	if (cur != gid) {
		syscall(SYS_setfsgid, prev);
		return (gid_t)-1;
	}
	return prev;
}

void
mbox_fsgid_leave(gid_t saved)
{
	if (saved != (gid_t)-1)
		syscall(SYS_setfsgid, saved);
}

static int
fcntl_lock(struct mbox_lock *lk, long long deadline)
{
	unsigned step = 0;
	lk->ofd = 1;
	for (;;) {
		struct flock fl;
		memset(&fl, 0, sizeof fl);
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		/* An OFD lock belongs to this open file, so threads of one
		 * process exclude each other too; it conflicts with the classic
		 * fcntl locks other programs take. */
		int rc = fcntl(lk->fd, lk->ofd ? F_OFD_SETLK : F_SETLK, &fl);
		if (rc == 0)
			return 0;
		if (errno == EINVAL && lk->ofd) {
			lk->ofd = 0;
			continue;
		}
		if (errno != EAGAIN && errno != EACCES && errno != EINTR)
			return -1;
		if (now_ms() >= deadline) {
			errno = EAGAIN;
			return -1;
		}
		backoff(&step);
	}
}

static void
fcntl_unlock(struct mbox_lock *lk)
{
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_UNLCK;
	fl.l_whence = SEEK_SET;
	fcntl(lk->fd, lk->ofd ? F_OFD_SETLK : F_SETLK, &fl);
}

/* Create the unique temporary file the dotlock is linked from. */
static int
dotlock_temp(struct mbox_lock *lk, const struct mbox_settings *s, char *tmp, size_t tmplen,
             struct pt_status *st)
{
	static unsigned counter;
	unsigned c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
	int n = snprintf(tmp, tmplen, "%s.%ld.%ld.%u", lk->dotlock, (long)getpid(),
	                 (long)syscall(SYS_gettid), c);
	if (n < 0 || (size_t)n >= tmplen) {
		pt_status_set(st, 451, "4.3.5", "cannot create dotlock %s: path too long", lk->dotlock);
		return -1;
	}
	for (;;) {
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd >= 0) {
			char pid[32];
			int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
			/* The pid is informational only: a short write is harmless. */
			if (write(fd, pid, (size_t)len) < 0) {
			}
			close(fd);
			return 0;
		}
		if ((errno == EACCES || errno == EPERM) && !lk->dotlock_privileged &&
		    s->priv_gid != (gid_t)-1) {
			gid_t saved = mbox_fsgid_enter(s->priv_gid);
			if (saved != (gid_t)-1) {
				/* Stay in the group until the lock is taken and
				 * the temporary file is gone; mbox_lock restores. */
				lk->dotlock_privileged = 1;
				lk->saved_fsgid = saved;
				continue;
			}
			errno = EACCES;
		}
		pt_status_set(st, 450, "4.2.0", "cannot create dotlock %s: %s", lk->dotlock,
		              strerror(errno));
		return -1;
	}
}

static int
dotlock_take(struct mbox_lock *lk, const struct mbox_settings *s, long long deadline,
             struct pt_status *st)
{
	char tmp[sizeof lk->dotlock + 64];
	if (dotlock_temp(lk, s, tmp, sizeof tmp, st) != 0)
		return -1;
	unsigned step = 0;
	int rc = -1;
	for (;;) {
		struct stat sb;
		int lerr = link(tmp, lk->dotlock) == 0 ? 0 : errno;
		/* link() can report failure after succeeding (NFS): the link
		 * count of our own file is the truth. */
		if (stat(tmp, &sb) == 0 && sb.st_nlink == 2) {
			rc = 0;
			break;
		}
		if (lerr != EEXIST) {
			pt_status_set(st, 450, "4.2.0", "cannot create dotlock %s: %s", lk->dotlock,
			              strerror(lerr ? lerr : EIO));
			break;
		}
		if (lstat(lk->dotlock, &sb) == 0 && s->dotlock_stale_s > 0 &&
		    time(NULL) - sb.st_mtime > (time_t)s->dotlock_stale_s) {
			/* A holder that died; a live one refreshes or finishes
			 * long before. */
			if (unlink(lk->dotlock) == 0)
				pt_warn("removed stale dotlock %s (%lld seconds old)", lk->dotlock,
				        (long long)(time(NULL) - sb.st_mtime));
			continue;
		}
		if (now_ms() >= deadline) {
			pt_status_set(st, 450, "4.2.0", "mailbox is locked: dotlock %s exists",
			              lk->dotlock);
			break;
		}
		backoff(&step);
	}
	unlink(tmp);
	return rc;
}

int
mbox_lock(struct mbox_lock *lk, int fd, const char *path, const struct mbox_settings *s,
          struct pt_status *st)
{
	memset(lk, 0, sizeof *lk);
	lk->fd = fd;
	lk->saved_fsgid = (gid_t)-1;
	long long deadline = now_ms() + s->lock_timeout_ms;
	int n = snprintf(lk->dotlock, sizeof lk->dotlock, "%s.lock", path);
	if (n < 0 || (size_t)n >= sizeof lk->dotlock) {
		pt_status_set(st, 451, "4.3.5", "mailbox path %s is too long for a dotlock", path);
		return -1;
	}
	if (fcntl_lock(lk, deadline) != 0) {
		if (errno == EAGAIN)
			pt_status_set(st, 450, "4.2.0", "mailbox is locked: fcntl lock held (waited %us)",
			              (s->lock_timeout_ms + 999) / 1000);
		else
			pt_status_set(st, 450, "4.2.0", "unable to lock for exclusive access: %s",
			              strerror(errno));
		return -1;
	}
	int rc = dotlock_take(lk, s, deadline, st);
	if (lk->dotlock_privileged)
		mbox_fsgid_leave(lk->saved_fsgid);
	if (rc != 0) {
		fcntl_unlock(lk);
		return -1;
	}
	lk->dotlocked = 1;
	return 0;
}

void
mbox_unlock(struct mbox_lock *lk, const struct mbox_settings *s)
{
	if (lk->dotlocked) {
		if (lk->dotlock_privileged) {
			gid_t saved = mbox_fsgid_enter(s->priv_gid);
			unlink(lk->dotlock);
			mbox_fsgid_leave(saved);
		} else if (unlink(lk->dotlock) != 0 && errno != ENOENT) {
			pt_warn("cannot remove dotlock %s: %s", lk->dotlock, strerror(errno));
		}
		lk->dotlocked = 0;
	}
	fcntl_unlock(lk);
}
