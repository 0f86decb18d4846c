/* Mailbox locking in Debian Policy 11.6 order: an fcntl write lock on the
 * open mbox, then the NAME.lock dotlock (made by link() so it works on
 * every file system), released in reverse. Where the spool directory is
 * only writable by mail_privileged_group, the dotlock is made with that
 * group as this thread's fsgid, and only for as long as the dotlock calls
 * take.
 *
 * The dotlock says who holds it, as liblockfile's do: the first line is
 * the holder's pid (what liblockfile and procmail read), then "host NAME".
 * A lock whose holder is gone (same host, kill(pid, 0) says ESRCH) is
 * stale at once; others only after mbox_dotlock_stale_time.
 *
 * It also carries the append record: before appending, the writer adds
 * "append START END" (the mbox size before and after) and syncs it. A
 * writer killed mid-append leaves the record in its lock; whoever takes
 * the mailbox next removes the stale lock, finds the record and cuts the
 * file back to START unless it is exactly END long (the append finished).
 * So truncate-on-failure holds even when the writer cannot run it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "postern/event.h"
#include "postern/log.h"
#include "mbox.h"

/* Leftover temporary files are looked for at most this often (a spool
 * directory can be large), and always after a dead holder's lock. */
#define TEMP_SCAN_INTERVAL 60


/* Short, slightly growing sleeps: a lock is usually held for one write +
 * fsync (a few ms); the jitter keeps waiters from waking in step. */
static void
backoff(unsigned *step)
{
	unsigned ms = 2u + *step * 3u + (unsigned)((long long)pt_mono_ms() % 3);
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
		if ((long long)pt_mono_ms() >= deadline) {
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

static const char *
host_name(void)
{
	static char name[sizeof ((struct utsname *)0)->nodename];
	static int done;
	if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
		struct utsname u;
		char tmp[sizeof name];
		snprintf(tmp, sizeof tmp, "%s", uname(&u) == 0 ? u.nodename : "");
		/* Several threads may race here: they all write the same bytes. */
		memcpy(name, tmp, sizeof name);
		__atomic_store_n(&done, 1, __ATOMIC_RELEASE);
	}
	return name;
}

/* Is the process pid on this machine gone? (EPERM: it lives, as another
 * user.) */
static int
pid_dead(long pid)
{
	return pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* What a dotlock's content says. */
struct lockinfo {
	long pid;                     /* 0: none recorded */
	int other_host;               /* made on another machine */
	int has_rec;
	long long rec_start, rec_end;
};

static void
lockinfo_parse(const char *buf, struct lockinfo *li)
{
	memset(li, 0, sizeof *li);
	char *end;
	long pid = strtol(buf, &end, 10);
	if (end != buf && (*end == '\n' || *end == '\0') && pid > 0)
		li->pid = pid;
	for (const char *p = buf; *p;) {
		if (strncmp(p, "host ", 5) == 0) {
			const char *h = host_name();
			size_t hl = strlen(h);
			li->other_host = !(strncmp(p + 5, h, hl) == 0 && (p[5 + hl] == '\n' || p[5 + hl] == '\0'));
		} else if (strncmp(p, "append ", 7) == 0) {
			long long a, b;
			if (sscanf(p + 7, "%lld %lld", &a, &b) == 2 && a >= 0 && b >= a) {
				li->has_rec = 1;
				li->rec_start = a;
				li->rec_end = b;
			}
		}
		const char *nl = strchr(p, '\n');
		if (nl == NULL)
			break;
		p = nl + 1;
	}
}

/* Read the existing dotlock (at most a few hundred bytes) and its stat. */
static int
lock_read(struct mbox_lock *lk, struct lockinfo *li, struct stat *sb)
{
	int fd = openat(lk->dfd, lk->dotname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		/* Unreadable (or a symlink): only its age can tell. */
		memset(li, 0, sizeof *li);
		return fstatat(lk->dfd, lk->dotname, sb, AT_SYMLINK_NOFOLLOW);
	}
	char buf[512];
	ssize_t n = fstat(fd, sb) == 0 ? pread(fd, buf, sizeof buf - 1, 0) : -1;
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	lockinfo_parse(buf, li);
	return 0;
}

/* Remove NAME.lock.PID.TID.N files of processes that died between making
 * their temporary file and removing it. */
static void
temps_cleanup(struct mbox_lock *lk)
{
	int fd = openat(lk->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	size_t pl = strlen(lk->dotname);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		if (strncmp(n, lk->dotname, pl) != 0 || n[pl] != '.')
			continue;
		/* Exactly three numbers: anything else is not ours. */
		const char *p = n + pl + 1;
		long pid = 0;
		int parts = 0, ok = 1;
		while (ok && *p) {
			char *end;
			long v = strtol(p, &end, 10);
			if (end == p || *p == '-' || *p == '+' || (*end != '.' && *end != '\0'))
				ok = 0;
			if (parts++ == 0)
				pid = v;
			p = *end ? end + 1 : end;
		}
		if (ok && parts == 3 && pid_dead(pid) && unlinkat(dirfd(d), n, 0) == 0)
			pt_warn("removed %s left by dead process %ld", n, pid);
	}
	closedir(d);
}

/* Create the unique temporary file the dotlock is linked from, holding
 * the pid and host lines; its fd stays open (the append record goes into
 * it once it is the lock). */
static int
dotlock_temp(struct mbox_lock *lk, const struct mbox_settings *s, char *tmp, size_t tmplen,
             struct pt_status *st)
{
	static unsigned counter;
	unsigned c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
	int n = snprintf(tmp, tmplen, "%s.%ld.%ld.%u", lk->dotname, (long)getpid(),
	                 (long)syscall(SYS_gettid), c);
	if (n < 0 || (size_t)n >= tmplen || (size_t)n > 255) {
		pt_status_set(st, 451, "4.3.5", "cannot create dotlock %s: name too long", lk->dotlock);
		return -1;
	}
	for (;;) {
		int fd = openat(lk->dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd >= 0) {
			char info[64 + sizeof ((struct utsname *)0)->nodename];
			int len = snprintf(info, sizeof info, "%ld\nhost %s\n", (long)getpid(), host_name());
			if (len < 0 || (size_t)len >= sizeof info)
				len = snprintf(info, sizeof info, "%ld\n", (long)getpid());
			/* A short write only loses the early staleness check. */
			if (write(fd, info, (size_t)len) != len)
				len = 0;
			lk->lockfd = fd;
			lk->rec_base = (size_t)len;
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
	char tmp[sizeof lk->dotname + 64];
	if (dotlock_temp(lk, s, tmp, sizeof tmp, st) != 0)
		return -1;
	static long long last_scan;
	int scan = 0;
	unsigned step = 0;
	int rc = -1;
	for (;;) {
		struct stat sb;
		int lerr = linkat(lk->dfd, tmp, lk->dfd, lk->dotname, 0) == 0 ? 0 : errno;
		/* link() can report failure after succeeding (NFS): the link
		 * count of our own file is the truth. */
		if (fstat(lk->lockfd, &sb) == 0 && sb.st_nlink == 2) {
			rc = 0;
			break;
		}
		if (lerr != EEXIST) {
			pt_status_set(st, 450, "4.2.0", "cannot create dotlock %s: %s", lk->dotlock,
			              strerror(lerr ? lerr : EIO));
			break;
		}
		struct lockinfo li;
		if (lock_read(lk, &li, &sb) == 0) {
			long long age = (long long)(time(NULL) - sb.st_mtime);
			int dead = li.pid && !li.other_host && pid_dead(li.pid);
			if (dead || (s->dotlock_stale_s > 0 && age > (long long)s->dotlock_stale_s)) {
				/* Only the lock we judged: a new holder's stays. */
				struct stat now;
				if (fstatat(lk->dfd, lk->dotname, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
				    now.st_ino == sb.st_ino && now.st_dev == sb.st_dev &&
				    unlinkat(lk->dfd, lk->dotname, 0) == 0) {
					if (dead)
						pt_warn("removed dotlock %s of dead process %ld", lk->dotlock, li.pid);
					else
						pt_warn("removed stale dotlock %s (%lld seconds old)", lk->dotlock, age);
					if (li.has_rec) {
						lk->rec_found = 1;
						lk->rec_start = (off_t)li.rec_start;
						lk->rec_end = (off_t)li.rec_end;
						lk->rec_pid = li.pid;
					}
					scan = 1;
				}
				continue;
			}
		}
		if ((long long)pt_mono_ms() >= deadline) {
			pt_status_set(st, 450, "4.2.0", "mailbox is locked: dotlock %s exists",
			              lk->dotlock);
			break;
		}
		backoff(&step);
	}
	unlinkat(lk->dfd, tmp, 0);
	long long now = (long long)pt_mono_ms() / 1000;
	long long last = __atomic_load_n(&last_scan, __ATOMIC_RELAXED);
	if (rc == 0 && (scan || now - last >= TEMP_SCAN_INTERVAL)) {
		__atomic_store_n(&last_scan, now, __ATOMIC_RELAXED);
		temps_cleanup(lk);
	}
	if (rc != 0) {
		close(lk->lockfd);
		lk->lockfd = -1;
	}
	return rc;
}

/* A dead writer's append record: cut its partial append. */
static void
apply_record(struct mbox_lock *lk)
{
	struct stat sb;
	if (!lk->rec_found || fstat(lk->fd, &sb) != 0)
		return;
	lk->rec_found = 0;
	if (sb.st_size <= lk->rec_start || sb.st_size == lk->rec_end)
		return;
	if (ftruncate(lk->fd, lk->rec_start) != 0 || fdatasync(lk->fd) != 0) {
		pt_error("mailbox %.*s: cannot cut the append interrupted by process %ld: %s",
		         (int)(strlen(lk->dotlock) - 5), lk->dotlock, lk->rec_pid, strerror(errno));
		return;
	}
	pt_warn("mailbox %.*s: removed %lld bytes of an append interrupted by the death of process %ld",
	        (int)(strlen(lk->dotlock) - 5), lk->dotlock,
	        (long long)(sb.st_size - lk->rec_start), lk->rec_pid);
}

static void
lock_reset(struct mbox_lock *lk, int fd)
{
	memset(lk, 0, sizeof *lk);
	lk->fd = fd;
	lk->dfd = -1;
	lk->lockfd = -1;
	lk->saved_fsgid = (gid_t)-1;
}

static void
lock_release_dir(struct mbox_lock *lk)
{
	if (lk->dfd_owned && lk->dfd >= 0)
		close(lk->dfd);
	lk->dfd = -1;
	lk->dfd_owned = 0;
}

/* lk is reset, dfd set (owned or borrowed). */
static int
lock_common(struct mbox_lock *lk, const char *name, const char *path,
            const struct mbox_settings *s, struct pt_status *st)
{
	long long deadline = (long long)pt_mono_ms() + s->lock_timeout_ms;
	int n = snprintf(lk->dotlock, sizeof lk->dotlock, "%s.lock", path);
	int m = snprintf(lk->dotname, sizeof lk->dotname, "%s.lock", name);
	if (n < 0 || (size_t)n >= sizeof lk->dotlock || m < 0 || (size_t)m >= sizeof lk->dotname) {
		pt_status_set(st, 451, "4.3.5", "mailbox path %s is too long for a dotlock", path);
		lock_release_dir(lk);
		return -1;
	}
	if (fcntl_lock(lk, deadline) != 0) {
		if (errno == EAGAIN)
			pt_status_set(st, 450, "4.2.0", "mailbox is locked: fcntl lock held (waited %us)",
			              (s->lock_timeout_ms + 999) / 1000);
		else
			pt_status_set(st, 450, "4.2.0", "unable to lock for exclusive access: %s",
			              strerror(errno));
		lock_release_dir(lk);
		return -1;
	}
	int rc = dotlock_take(lk, s, deadline, st);
	if (lk->dotlock_privileged)
		mbox_fsgid_leave(lk->saved_fsgid);
	if (rc != 0) {
		fcntl_unlock(lk);
		lock_release_dir(lk);
		return -1;
	}
	lk->dotlocked = 1;
	apply_record(lk);
	return 0;
}

int
mbox_lock_at(struct mbox_lock *lk, int fd, int dirfd, const char *name, const char *path,
             const struct mbox_settings *s, struct pt_status *st)
{
	lock_reset(lk, fd);
	lk->dfd = dirfd;
	return lock_common(lk, name, path, s, st);
}

int
mbox_lock(struct mbox_lock *lk, int fd, const char *path, const struct mbox_settings *s,
          struct pt_status *st)
{
	lock_reset(lk, fd);
	const char *slash = strrchr(path, '/');
	char dir[4096];
	const char *name = path;
	int dfd = AT_FDCWD;
	if (slash) {
		size_t dl = slash == path ? 1 : (size_t)(slash - path);
		if (dl >= sizeof dir) {
			pt_status_set(st, 451, "4.3.5", "mailbox path %s is too long for a dotlock", path);
			return -1;
		}
		memcpy(dir, path, dl);
		dir[dl] = '\0';
		name = slash + 1;
		/* Readable for the leftover scan; a spool we may not list is
		 * still fine for the lock itself. */
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0)
			dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			pt_status_set(st, 450, "4.2.0", "cannot open mailbox directory %s: %s", dir,
			              strerror(errno));
			return -1;
		}
		lk->dfd = dfd;
		lk->dfd_owned = 1;
	}
	lk->dfd = dfd;
	return lock_common(lk, name, path, s, st);
}

int
mbox_append_begin(struct mbox_lock *lk, off_t start, off_t end)
{
	if (!lk->dotlocked || lk->lockfd < 0) {
		errno = EBADF;
		return -1;
	}
	char rec[96];
	int n = snprintf(rec, sizeof rec, "append %lld %lld\n", (long long)start, (long long)end);
	/* Durable before the first byte of the append is written. */
	if (pwrite(lk->lockfd, rec, (size_t)n, (off_t)lk->rec_base) != n ||
	    fdatasync(lk->lockfd) != 0)
		return -1;
	lk->recording = 1;
	return 0;
}

void
mbox_append_end(struct mbox_lock *lk)
{
	/* No sync needed: a record that comes back after a crash is harmless
	 * when the file is exactly its END long. */
	if (lk->recording && lk->lockfd >= 0 && ftruncate(lk->lockfd, (off_t)lk->rec_base) != 0)
		pt_warn("cannot clear the append record in %s: %s", lk->dotlock, strerror(errno));
	lk->recording = 0;
}

void
mbox_unlock(struct mbox_lock *lk, const struct mbox_settings *s)
{
	if (lk->dotlocked) {
		/* Remove only our own lock (a stale-lock breaker may have put
		 * another in its place). */
		struct stat a, b;
		int ours = lk->lockfd < 0 ||
		           (fstat(lk->lockfd, &a) == 0 &&
		            fstatat(lk->dfd, lk->dotname, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
		            a.st_ino == b.st_ino && a.st_dev == b.st_dev);
		if (!ours) {
			pt_warn("dotlock %s was replaced while held", lk->dotlock);
		} else if (lk->dotlock_privileged) {
			gid_t saved = mbox_fsgid_enter(s->priv_gid);
			unlinkat(lk->dfd, lk->dotname, 0);
			mbox_fsgid_leave(saved);
		} else if (unlinkat(lk->dfd, lk->dotname, 0) != 0 && errno != ENOENT) {
			pt_warn("cannot remove dotlock %s: %s", lk->dotlock, strerror(errno));
		}
		lk->dotlocked = 0;
	}
	if (lk->lockfd >= 0)
		close(lk->lockfd);
	lk->lockfd = -1;
	lk->recording = 0;
	fcntl_unlock(lk);
	lock_release_dir(lk);
}
