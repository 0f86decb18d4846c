/* IDLE (RFC 2177): "+ idling", then news as it happens, "* OK Still
 * here" every imap_idle_notify_interval, DONE ends it.
 *
 * News is heard through inotify: the folder's mbox (deliveries append,
 * other sessions rewrite flags or expunge in place) and the directory of
 * its index (a change saved only there); an mbox that does not exist yet
 * is awaited in its directory, then watched itself. One inotify instance serves
 * every session of the mail process (the kernel's per-user instance limit
 * is small), and a watch event queues one sync of each idling session
 * watching that file, so a delivery reaches the client as soon as the
 * writer is done. A sync that sees nothing new costs a stat.
 *
 * Without inotify (imap_idle_inotify = no, the watch limit reached, or a
 * network filesystem whose remote writers inotify cannot see) the folder
 * is checked every second as before; with it, still every 30 s, a safety
 * net for an event lost to a queue overflow. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "postern/conn.h"
#include "postern/event.h"
#include "postern/log.h"
#include "imap.h"

#define IDLE_POLL_MS 1000
#define IDLE_SAFETY_POLL_MS 30000

/* Mail process wide: the inotify instance and who watches what. */
struct idle_watch {
	int wd;
	struct imap_session *s;
	int is_dir;                   /* a directory (events carry names) */
	const char *only;             /* in it, only this name counts (NULL: any but *.tmp) */
};
static struct {
	int fd;                       /* -1 none yet, -2 unusable */
	struct pt_loop *loop;
	struct idle_watch *w;
	size_t n, cap;
	int warned;
} ino = { -1, NULL, NULL, 0, 0, 0 };

static struct pt_loop *
loop_of(struct imap_session *s)
{
	return s->conn ? pt_conn_loop(s->conn) : NULL;
}

static void idle_poll(struct pt_loop *loop, void *arg);

static void
poll_arm(struct imap_session *s, struct pt_loop *loop)
{
	if (s->idle_poll_timer)
		pt_timer_cancel(loop, s->idle_poll_timer);
	s->idle_poll_timer = pt_timer_add(loop, s->idle_nwd ? IDLE_SAFETY_POLL_MS : IDLE_POLL_MS,
	                                  idle_poll, s);
}

/* One check for news. Output still queued means a slow client: skip. */
static void
idle_check(struct imap_session *s)
{
	if (s->conn == NULL || pt_conn_pending_output(s->conn) < 65536)
		imap_sync(s, 1);
}

static void watches_drop(struct imap_session *s);
static void watches_arm(struct imap_session *s, struct pt_loop *loop);

static void
idle_wake(struct pt_loop *loop, void *arg)
{
	struct imap_session *s = arg;

	if (!s->idling || s->state == IMAP_LOGOUT)
		return;
	if (s->idle_rearm) {
		/* The mbox was created: watch the file itself from now on. */
		watches_drop(s);
		watches_arm(s, loop);
		poll_arm(s, loop);
	}
	idle_check(s);
}

/* A watch the kernel dropped (file deleted or replaced): forget it; the
 * session polls until its next IDLE arms new ones. */
static void
watch_lost(int wd)
{
	for (size_t i = 0; i < ino.n;) {
		if (ino.w[i].wd != wd) {
			i++;
			continue;
		}
		struct imap_session *s = ino.w[i].s;
		for (int k = 0; k < s->idle_nwd; k++)
			if (s->idle_wd[k] == wd) {
				s->idle_wd[k] = s->idle_wd[--s->idle_nwd];
				break;
			}
		if (s->idling && s->idle_nwd == 0 && ino.loop)
			poll_arm(s, ino.loop);
		ino.w[i] = ino.w[--ino.n];
	}
}

/* Whether an event in the index directory is a saved file (not the
 * temporary copy still being written, nor the header cache, a kept
 * SORT/THREAD answer or the index's check mark: those never change what a session must be told,
 * and a webmail saves them often). */
static int
dir_event_counts(const struct idle_watch *w, const struct inotify_event *ev)
{
	size_t len = ev->len ? strnlen(ev->name, ev->len) : 0;
	static const char hcache[] = "postern.hcache", answer[] = "postern.answer.",
	                  checked[] = "postern.checked";

	if (w->only)
		return len == strlen(w->only) && memcmp(ev->name, w->only, len) == 0;
	if ((len == sizeof hcache - 1 && memcmp(ev->name, hcache, len) == 0) ||
	    (len == sizeof checked - 1 && memcmp(ev->name, checked, len) == 0))
		return 0;
	if (len >= sizeof answer - 1 && memcmp(ev->name, answer, sizeof answer - 1) == 0)
		return 0;
	return len == 0 || !(len >= 4 && memcmp(ev->name + len - 4, ".tmp", 4) == 0);
}

static void
on_inotify(struct pt_loop *loop, int fd, unsigned events, void *arg)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	(void)events, (void)arg;
	for (;;) {
		ssize_t got = read(fd, buf, sizeof buf);
		if (got <= 0)
			return;   /* EAGAIN: drained */
		for (char *p = buf; p < buf + got;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			p += sizeof *ev + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				/* Events were lost: everyone looks. */
				for (size_t i = 0; i < ino.n; i++)
					pt_defer(loop, &ino.w[i].s->idle_wake, idle_wake, ino.w[i].s);
				continue;
			}
			for (size_t i = 0; i < ino.n; i++)
				if (ino.w[i].wd == ev->wd && (!ino.w[i].is_dir || dir_event_counts(&ino.w[i], ev)))
					pt_defer(loop, &ino.w[i].s->idle_wake, idle_wake, ino.w[i].s);
			if (ev->mask & IN_IGNORED)
				watch_lost(ev->wd);
		}
	}
}

/* Filesystems whose changes made on another host inotify never sees. */
static int
remote_fs(const char *path)
{
	struct statfs sf;

	if (statfs(path, &sf) != 0)
		return 0;
	switch ((unsigned long)sf.f_type) {
	case 0x6969UL:        /* NFS */
	case 0x517bUL:        /* SMB */
	case 0xff534d42UL:    /* CIFS */
	case 0xfe534d42UL:    /* SMB2 */
	case 0x65735546UL:    /* FUSE (sshfs, glusterfs...) */
	case 0x00c36400UL:    /* Ceph */
	case 0x47504653UL:    /* GPFS */
	case 0x0bd00bd0UL:    /* Lustre */
		return 1;
	default:
		return 0;
	}
}

static int
ino_ready(struct pt_loop *loop)
{
	if (ino.fd == -2 || (ino.fd >= 0 && ino.loop != loop))
		return 0;
	if (ino.fd >= 0)
		return 1;
	ino.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (ino.fd < 0) {
		pt_warn("imap: inotify unavailable (%s): IDLE polls every second", strerror(errno));
		ino.fd = -2;
		return 0;
	}
	if (pt_loop_watch(loop, ino.fd, PT_EV_READ, on_inotify, NULL) != 0) {
		close(ino.fd);
		ino.fd = -2;
		return 0;
	}
	ino.loop = loop;
	return 1;
}

static int
watch_add(struct imap_session *s, const char *path, uint32_t mask, int is_dir, const char *only)
{
	if (path == NULL || s->idle_nwd >= 2)
		return -1;
	if (ino.n == ino.cap) {
		size_t cap = ino.cap ? ino.cap * 2 : 8;
		struct idle_watch *w = realloc(ino.w, cap * sizeof(*w));
		if (w == NULL)
			return -1;
		ino.w = w;
		ino.cap = cap;
	}
	int wd = inotify_add_watch(ino.fd, path, mask);
	if (wd < 0) {
		if (errno == ENOSPC && !ino.warned) {
			pt_warn("imap(%s): inotify watch limit reached (fs.inotify.max_user_watches): "
			        "IDLE polls every second", s->user.name);
			ino.warned = 1;
		}
		return -1;
	}
	ino.w[ino.n++] = (struct idle_watch){ wd, s, is_dir, only };
	s->idle_wd[s->idle_nwd++] = wd;
	return 0;
}

/* A folder without its mbox yet (an INBOX nothing was delivered to):
 * watch the directory for the file to appear. */
static void
watch_creation(struct imap_session *s, const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[4096];

	if (slash == NULL || slash[1] == 0 || (size_t)(slash - path) >= sizeof dir)
		return;
	size_t n = slash == path ? 1 : (size_t)(slash - path);
	memcpy(dir, path, n);
	dir[n] = 0;
	if (watch_add(s, dir, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR, 1, slash + 1) == 0)
		s->idle_rearm = 1;
}

/* Watch the selected folder for this IDLE: the mbox (writes, truncation,
 * replacement) and its index directory (a saved index). */
static void
watches_arm(struct imap_session *s, struct pt_loop *loop)
{
	const char *path = s->mb && s->mbx->path ? s->mbx->path(s->mb) : NULL;

	s->idle_nwd = 0;
	s->idle_rearm = 0;
	if (!imap_set.idle_inotify || path == NULL || remote_fs(path) || !ino_ready(loop))
		return;
	if (watch_add(s, path, IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF, 0,
	              NULL) != 0) {
		if (errno == ENOENT)
			watch_creation(s, path);
		return;   /* without the mbox watch the index's is no use */
	}
	if (s->mbx->index_dir)
		watch_add(s, s->mbx->index_dir(s->mb), IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_ONLYDIR, 1,
		          NULL);
}

static void
watches_drop(struct imap_session *s)
{
	for (int k = 0; k < s->idle_nwd; k++) {
		int wd = s->idle_wd[k], others = 0;
		for (size_t i = 0; i < ino.n;) {
			if (ino.w[i].wd == wd && ino.w[i].s == s) {
				ino.w[i] = ino.w[--ino.n];
				continue;
			}
			others |= ino.w[i].wd == wd;
			i++;
		}
		/* The kernel gives one wd per inode and instance: it goes when
		 * the last session watching that file stops. */
		if (!others && ino.fd >= 0)
			inotify_rm_watch(ino.fd, wd);
	}
	s->idle_nwd = 0;
	s->idle_rearm = 0;
	if (ino.loop)
		pt_defer_cancel(ino.loop, &s->idle_wake);
}

static void
idle_poll(struct pt_loop *loop, void *arg)
{
	struct imap_session *s = arg;

	s->idle_poll_timer = NULL;
	idle_check(s);
	if (s->idling && s->state != IMAP_LOGOUT)
		poll_arm(s, loop);
}

static void
idle_notify(struct pt_loop *loop, void *arg)
{
	struct imap_session *s = arg;

	s->idle_timer = NULL;
	imap_untagged(s, "OK Still here");
	if (s->idling)
		s->idle_timer = pt_timer_add(loop, imap_set.idle_notify_ms, idle_notify, s);
}

void
imap_idle_stop(struct imap_session *s)
{
	struct pt_loop *loop = loop_of(s);

	if (loop && s->idle_timer)
		pt_timer_cancel(loop, s->idle_timer);
	if (loop && s->idle_poll_timer)
		pt_timer_cancel(loop, s->idle_poll_timer);
	s->idle_timer = s->idle_poll_timer = NULL;
	watches_drop(s);
	s->idling = 0;
}

void
imap_cmd_idle(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	struct pt_loop *loop = loop_of(s);

	(void)a, (void)uid;
	if (n != 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command IDLE: Unexpected arguments.");
		return;
	}
	free(s->idle_tag);
	s->idle_tag = strdup(tag);
	if (s->idle_tag == NULL) {
		imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
		return;
	}
	s->idling = 1;
	imap_write(s, "+ idling\r\n", 10);
	/* Watch first, then look: a delivery in between is not missed. */
	if (loop)
		watches_arm(s, loop);
	imap_sync(s, 1);
	if (loop) {
		poll_arm(s, loop);
		s->idle_timer = pt_timer_add(loop, imap_set.idle_notify_ms, idle_notify, s);
	}
}

void
imap_idle_line(struct imap_session *s, const char *line, size_t len)
{
	char *tag = s->idle_tag;

	s->idle_tag = NULL;
	imap_idle_stop(s);
	if (len == 4 && strncasecmp(line, "DONE", 4) == 0) {
		imap_sync(s, 1);
		imap_completed(s, tag ? tag : "*", NULL, "Idle");
	} else {
		imap_tagged(s, tag ? tag : "*", "BAD", "Expected DONE.");
	}
	free(tag);
}
