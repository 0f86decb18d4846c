/* mbox delivery in a temporary spool: file creation and mode, group
 * commit, size limit and truncation on write failure, refusal of links and
 * odd files, fcntl/dotlock contention, privileged-group dotlocks (as root),
 * and 100 concurrent deliveries that must parse back intact. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mbox/mbox.h"

/* A forked helper outlives a failed assertion in the parent at most this
 * long (it would otherwise block on its pipe forever). */
#define CHILD_WATCHDOG_S 60

struct fixture {
	char dir[64];
	char path[512];
	char location[1024];
	struct mbox_settings s;
	struct pt_user u;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_mbox_XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	chmod(f->dir, 0755);
	snprintf(f->location, sizeof f->location, "mbox:%s/home:INBOX=%s/%%u", f->dir, f->dir);
	snprintf(f->path, sizeof f->path, "%s/u1", f->dir);
	f->s = (struct mbox_settings){ f->location, 0, 2000, 300, (gid_t)-1, 0, 0 };
	f->u = (struct pt_user){ "u1", getuid(), getgid(), "", "" };
	snprintf(f->u.home, sizeof f->u.home, "%s", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static int
is_root(void)
{
	return geteuid() == 0;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	if (fp == NULL) {
		*len = 0;
		return NULL;
	}
	char *buf = NULL;
	size_t cap = 0, n = 0;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			buf = realloc(buf, cap + 1);
		}
		size_t r = fread(buf + n, 1, cap - n, fp);
		if (r == 0)
			break;
		n += r;
	}
	fclose(fp);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static void
spit(const char *path, const char *data, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
}

static struct pt_delivery
delivery(const struct fixture *f, const char *data)
{
	return (struct pt_delivery){ "Q1", "s@example.com.ar", "u1@example.com.ar",
		                     "alias@example.com.ar", &f->u, data, strlen(data), 1795846087 };
}

static struct pt_strbuf
formatted(const struct pt_delivery *d)
{
	struct pt_strbuf b = { 0 };
	assert_int_equal(mbox_format(d, &b), 0);
	return b;
}

static size_t
count_messages(const char *buf, size_t len)
{
	struct mbox_reader r;
	mbox_reader_init(&r, NULL, NULL);
	mbox_reader_feed(&r, buf, len);
	mbox_reader_finish(&r);
	assert_int_equal(r.junk, 0);
	return r.count;
}

/* Names in the spool other than the mailbox itself: lock and temporary
 * files must never be left behind. */
static int
spool_leftovers(const struct fixture *f)
{
	DIR *d = opendir(f->dir);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "u1"))
			n++;
	closedir(d);
	return n;
}

static void
assert_status(const struct pt_status *st, int code, const char *dsn, const char *needle)
{
	if (st->code != code || strcmp(st->dsn, dsn) != 0 || strstr(st->text, needle) == NULL)
		fail_msg("status %d %s \"%s\", expected %d %s with \"%s\"", st->code, st->dsn, st->text,
		         code, dsn, needle);
}

static void
test_new_mailbox_mode_and_bytes(void **state)
{
	struct fixture *f = *state;
	mode_t old = umask(0277); /* the umask must not decide the mode */
	struct pt_delivery d = delivery(f, "Subject: hi\n\nFrom me\n");
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	umask(old);
	assert_status(&st, 0, "2.0.0", "delivered to mailbox");
	struct stat sb;
	assert_int_equal(lstat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	assert_int_equal(sb.st_uid, getuid());
	size_t len;
	char *got = slurp(f->path, &len);
	struct pt_strbuf want = formatted(&d);
	assert_int_equal(len, want.len);
	assert_memory_equal(got, want.p, len);
	assert_non_null(strstr(got, "\n\n>From me\n\n"));
	assert_int_equal(spool_leftovers(f), 0);
	free(got);
	pt_strbuf_free(&want);
}

static void
test_group_commit(void **state)
{
	struct fixture *f = *state;
	struct pt_delivery d[3] = { delivery(f, "S: 1\n\none\n"), delivery(f, "S: 2\n\ntwo"),
		                    delivery(f, "") };
	struct pt_status st[3];
	mbox_deliver_with(&f->s, d, 3, st);
	for (int i = 0; i < 3; i++)
		assert_status(&st[i], 0, "2.0.0", "delivered");
	mbox_deliver_with(&f->s, d, 2, st);
	struct pt_strbuf want = { 0 };
	for (int i = 0; i < 5; i++)
		assert_int_equal(mbox_format(&d[i % 3], &want), 0);
	size_t len;
	char *got = slurp(f->path, &len);
	assert_int_equal(len, want.len);
	assert_memory_equal(got, want.p, len);
	assert_int_equal(count_messages(got, len), 5);
	free(got);
	pt_strbuf_free(&want);
}

static void
test_damaged_mbox_gets_a_line_end(void **state)
{
	struct fixture *f = *state;
	const char *old = "From x  Sat Nov 28 06:08:07 2026\nS: 0\n\ncut off";
	spit(f->path, old, 0600);
	struct pt_delivery d = delivery(f, "S: 1\n\nnew\n");
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_int_equal(st.code, 0);
	size_t len;
	char *got = slurp(f->path, &len);
	struct pt_strbuf m = formatted(&d);
	assert_int_equal(len, strlen(old) + 1 + m.len);
	assert_memory_equal(got, old, strlen(old));
	assert_int_equal(got[strlen(old)], '\n');
	assert_memory_equal(got + strlen(old) + 1, m.p, m.len);
	assert_int_equal(count_messages(got, len), 2);
	free(got);
	pt_strbuf_free(&m);
}

/* A mailbox whose mode denies reading (the fd is then write-only and the
 * last byte cannot be checked): the message is still appended whole. */
static void
test_write_only_mailbox_takes_mail(void **state)
{
	struct fixture *f = *state;
	const char *old = "From x  Sat Nov 28 06:08:07 2026\nS: 0\n\nold\n";
	spit(f->path, old, 0200);
	chmod(f->path, 0200);
	struct pt_delivery d = delivery(f, "S: 1\n\nnew\n");
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_int_equal(st.code, 0);
	chmod(f->path, 0600);
	size_t len;
	char *got = slurp(f->path, &len);
	struct pt_strbuf m = formatted(&d);
	assert_int_equal(len, strlen(old) + m.len);
	assert_memory_equal(got, old, strlen(old));
	assert_memory_equal(got + strlen(old), m.p, m.len);
	free(got);
	pt_strbuf_free(&m);
}

static void
test_mailbox_size_limit(void **state)
{
	struct fixture *f = *state;
	const char *old = "From x  Sat Nov 28 06:08:07 2026\nS: 0\n\nold\n\n";
	spit(f->path, old, 0600);
	struct pt_delivery d = delivery(f, "S: 1\n\nnew\n");
	struct pt_strbuf m = formatted(&d);
	struct pt_status st;
	f->s.size_limit = (off_t)(strlen(old) + m.len - 1);
	mbox_deliver_with(&f->s, &d, 1, &st);
	char want[600];
	snprintf(want, sizeof want,
	         "cannot update mailbox %s for user u1. error writing message: File too large",
	         f->path);
	assert_status(&st, 552, "5.2.2", want);
	assert_string_equal(st.text, want);
	size_t len;
	char *got = slurp(f->path, &len);
	assert_string_equal(got, old);
	free(got);
	/* Exactly at the limit is allowed. */
	f->s.size_limit = (off_t)(strlen(old) + m.len);
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_int_equal(st.code, 0);
	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_size, f->s.size_limit);
	pt_strbuf_free(&m);
}

static void
test_size_limit_in_the_middle_of_a_group(void **state)
{
	struct fixture *f = *state;
	char big[4000];
	memset(big, 'x', sizeof big);
	memcpy(big, "S: big\n\n", 8);
	big[sizeof big - 1] = '\0';
	struct pt_delivery d[3] = { delivery(f, "S: 1\n\none\n"), delivery(f, big),
		                    delivery(f, "S: 3\n\nthree\n") };
	struct pt_strbuf m0 = formatted(&d[0]), m2 = formatted(&d[2]);
	f->s.size_limit = (off_t)(m0.len + m2.len + 100);
	struct pt_status st[3];
	mbox_deliver_with(&f->s, d, 3, st);
	assert_int_equal(st[0].code, 0);
	assert_status(&st[1], 552, "5.2.2", "File too large");
	assert_int_equal(st[2].code, 0);
	size_t len;
	char *got = slurp(f->path, &len);
	assert_int_equal(len, m0.len + m2.len);
	assert_memory_equal(got, m0.p, m0.len);
	assert_memory_equal(got + m0.len, m2.p, m2.len);
	free(got);
	pt_strbuf_free(&m0);
	pt_strbuf_free(&m2);
}

/* Deliver in a child whose RLIMIT_FSIZE stops the file at limit bytes;
 * the statuses come back through a pipe. */
static void
deliver_with_fsize_limit(struct fixture *f, struct pt_delivery *d, size_t n, rlim_t limit,
                         struct pt_status *st)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(CHILD_WATCHDOG_S);
		close(p[0]);
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit rl = { limit, limit };
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(3);
		mbox_deliver_with(&f->s, d, n, st);
		ssize_t w = write(p[1], st, n * sizeof *st);
		_exit(w == (ssize_t)(n * sizeof *st) ? 0 : 4);
	}
	close(p[1]);
	size_t want = n * sizeof *st, got = 0;
	while (got < want) {
		ssize_t r = read(p[0], (char *)st + got, want - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(p[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(got, want);
}

static void
test_write_failure_truncates_to_whole_messages(void **state)
{
	struct fixture *f = *state;
	const char *old = "From x  Sat Nov 28 06:08:07 2026\nS: 0\n\nold\n\n";
	spit(f->path, old, 0600);
	char body[3000];
	memset(body, 'y', sizeof body);
	memcpy(body, "S: 2\n\n", 6);
	body[sizeof body - 1] = '\0';
	struct pt_delivery d[3] = { delivery(f, "S: 1\n\none\n"), delivery(f, body),
		                    delivery(f, "S: 3\n\nthree\n") };
	struct pt_strbuf m0 = formatted(&d[0]), m1 = formatted(&d[1]);
	struct pt_status st[3];
	/* The kernel stops the append half way through the second message. */
	deliver_with_fsize_limit(f, d, 3, strlen(old) + m0.len + m1.len / 2, st);
	assert_int_equal(st[0].code, 0);
	assert_status(&st[1], 552, "5.2.2", "error writing message: File too large");
	assert_status(&st[2], 552, "5.2.2", "error writing message: File too large");
	size_t len;
	char *got = slurp(f->path, &len);
	assert_int_equal(len, strlen(old) + m0.len);
	assert_memory_equal(got, old, strlen(old));
	assert_memory_equal(got + strlen(old), m0.p, m0.len);
	assert_int_equal(count_messages(got, len), 2);
	free(got);
	/* Cut inside the first message: the file is exactly as before. */
	deliver_with_fsize_limit(f, d, 3, len + 10, st);
	for (int i = 0; i < 3; i++)
		assert_int_equal(st[i].code, 552);
	char *again = slurp(f->path, &len);
	assert_int_equal(len, strlen(old) + m0.len);
	free(again);
	assert_int_equal(spool_leftovers(f), 0);
	pt_strbuf_free(&m0);
	pt_strbuf_free(&m1);
}

static void
test_symlink_refused(void **state)
{
	struct fixture *f = *state;
	char target[600];
	snprintf(target, sizeof target, "%s/target", f->dir);
	spit(target, "precious\n", 0600);
	assert_int_equal(symlink(target, f->path), 0);
	struct pt_delivery d = delivery(f, "S: 1\n\nx\n");
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_status(&st, 450, "4.2.0", "symbolic link");
	assert_non_null(strstr(st.text, f->path));
	size_t len;
	char *got = slurp(target, &len);
	assert_string_equal(got, "precious\n");
	free(got);
	/* A dangling symlink is not followed to create a file either. */
	unlink(target);
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_status(&st, 450, "4.2.0", "symbolic link");
	assert_int_equal(access(target, F_OK), -1);
}

static void
test_hard_link_refused(void **state)
{
	struct fixture *f = *state;
	char other[600];
	snprintf(other, sizeof other, "%s/other", f->dir);
	spit(f->path, "From x  Sat Nov 28 06:08:07 2026\n\n", 0600);
	assert_int_equal(link(f->path, other), 0);
	struct pt_delivery d = delivery(f, "S: 1\n\nx\n");
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_status(&st, 450, "4.2.0", "2 hard links");
	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_size, 34);
}

static void
test_odd_files_refused(void **state)
{
	struct fixture *f = *state;
	struct pt_delivery d = delivery(f, "S: 1\n\nx\n");
	struct pt_status st;
	/* A FIFO would block an open for writing: refused without hanging. */
	assert_int_equal(mkfifo(f->path, 0600), 0);
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_int_equal(st.code, 450);
	assert_string_equal(st.dsn, "4.2.0");
	unlink(f->path);
	assert_int_equal(mkdir(f->path, 0700), 0);
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_status(&st, 450, "4.2.0", "Is a directory");
	rmdir(f->path);
}

static void
test_missing_spool_directory(void **state)
{
	struct fixture *f = *state;
	char loc[600];
	snprintf(loc, sizeof loc, "mbox:/x:INBOX=%s/nonexistent/%%u", f->dir);
	f->s.mail_location = loc;
	struct pt_delivery d = delivery(f, "S: 1\n\nx\n");
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_status(&st, 450, "4.2.0", "mail spool directory");
	assert_non_null(strstr(st.text, "No such file or directory"));
	struct stat sb;
	char dir[600];
	snprintf(dir, sizeof dir, "%s/nonexistent", f->dir);
	assert_int_equal(stat(dir, &sb), -1);
}

static void
test_bad_user_name(void **state)
{
	struct fixture *f = *state;
	struct pt_user bad = f->u;
	snprintf(bad.name, sizeof bad.name, "../u1");
	struct pt_delivery d = delivery(f, "S: 1\n\nx\n");
	d.user = &bad;
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_int_equal(st.code, 550);
	assert_string_equal(st.dsn, "5.1.3");
	assert_int_equal(spool_leftovers(f), 0);
	assert_int_equal(access(f->path, F_OK), -1);
}

static void
test_group_with_another_user(void **state)
{
	struct fixture *f = *state;
	struct pt_user other = f->u;
	snprintf(other.name, sizeof other.name, "u2");
	struct pt_delivery d[2] = { delivery(f, "S: 1\n\nx\n"), delivery(f, "S: 2\n\ny\n") };
	d[1].user = &other;
	struct pt_status st[2];
	mbox_deliver_with(&f->s, d, 2, st);
	assert_int_equal(st[0].code, 0);
	assert_int_equal(st[1].code, 451);
	size_t len;
	char *got = slurp(f->path, &len);
	assert_int_equal(count_messages(got, len), 1);
	free(got);
}

static long long
ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
test_fcntl_lock_contention(void **state)
{
	struct fixture *f = *state;
	spit(f->path, "", 0600);
	int go[2], done[2];
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(done), 0);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(CHILD_WATCHDOG_S);
		/* Another program (say, a mail reader) holds a classic lock. */
		int fd = open(f->path, O_RDWR);
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		char c = fcntl(fd, F_SETLK, &fl) == 0 ? 'k' : 'e';
		if (write(go[1], &c, 1) != 1 || read(done[0], &c, 1) != 1)
			_exit(1);
		_exit(0);
	}
	char c;
	assert_int_equal(read(go[0], &c, 1), 1);
	assert_int_equal(c, 'k');
	f->s.lock_timeout_ms = 300;
	struct pt_delivery d = delivery(f, "S: 1\n\nx\n");
	struct pt_status st;
	long long t0 = ms_now();
	mbox_deliver_with(&f->s, &d, 1, &st);
	long long took = ms_now() - t0;
	assert_status(&st, 450, "4.2.0", "mailbox is locked");
	assert_true(took >= 300 && took < 3000);
	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_size, 0);
	assert_int_equal(spool_leftovers(f), 0);
	/* Once released, delivery goes through. */
	assert_int_equal(write(done[1], "x", 1), 1);
	int status;
	waitpid(pid, &status, 0);
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_int_equal(st.code, 0);
	close(go[0]);
	close(go[1]);
	close(done[0]);
	close(done[1]);
}

static void
test_dotlock_contention_and_stale_dotlock(void **state)
{
	struct fixture *f = *state;
	char lock[600];
	snprintf(lock, sizeof lock, "%s.lock", f->path);
	/* A live holder (our parent) on this machine. */
	char live[32];
	snprintf(live, sizeof live, "%ld\n", (long)getppid());
	spit(lock, live, 0644);
	f->s.lock_timeout_ms = 200;
	struct pt_delivery d = delivery(f, "S: 1\n\nx\n");
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_status(&st, 450, "4.2.0", "mailbox is locked");
	assert_non_null(strstr(st.text, "dotlock"));
	assert_int_equal(access(lock, F_OK), 0); /* a live holder's lock stays */
	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_size, 0);
	/* Older than mbox_dotlock_stale_time: a dead holder's, removed. */
	struct timespec old[2] = { { time(NULL) - 1000, 0 }, { time(NULL) - 1000, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, lock, old, 0), 0);
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_int_equal(st.code, 0);
	assert_int_equal(access(lock, F_OK), -1);
	assert_int_equal(spool_leftovers(f), 0);
}


/* The pid of a process that existed and is gone now. */
static long
dead_pid(void)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);
	return (long)pid;
}

static const char *
node(void)
{
	static struct utsname u;
	uname(&u);
	return u.nodename;
}

/* Issue #11 item 10: a dead holder's lock must not block the mailbox for
 * mbox_dotlock_stale_time. */
static void
test_dotlock_of_dead_pid_taken_at_once(void **state)
{
	struct fixture *f = *state;
	char lock[600], body[128];
	snprintf(lock, sizeof lock, "%s.lock", f->path);
	snprintf(body, sizeof body, "%ld\nhost %s\n", dead_pid(), node());
	spit(lock, body, 0644);
	/* A fresh lock: only the pid can tell it is stale. */
	f->s.lock_timeout_ms = 10000;
	struct pt_delivery d = delivery(f, "S: 1\n\nx\n");
	struct pt_status st;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	mbox_deliver_with(&f->s, &d, 1, &st);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_status(&st, 0, "2.0.0", "delivered");
	/* Far below the 10 s lock timeout (generous for a loaded machine). */
	assert_true(t1.tv_sec - t0.tv_sec < 5);
	assert_int_equal(access(lock, F_OK), -1);
	assert_int_equal(spool_leftovers(f), 0);
	/* A bare pid (liblockfile's format) counts too. */
	snprintf(body, sizeof body, "%ld\n", dead_pid());
	spit(lock, body, 0644);
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_status(&st, 0, "2.0.0", "delivered");
	/* Another machine's pid says nothing about this one's processes. */
	snprintf(body, sizeof body, "%ld\nhost other-%s\n", dead_pid(), node());
	spit(lock, body, 0644);
	f->s.lock_timeout_ms = 200;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_status(&st, 450, "4.2.0", "mailbox is locked");
	assert_int_equal(access(lock, F_OK), 0);
	unlink(lock);
}

/* Temporary link sources of dead processes go; a live one's stay. */
static void
test_dotlock_temps_of_dead_pids_removed(void **state)
{
	struct fixture *f = *state;
	char dead[600], alive[600], other[600];
	snprintf(dead, sizeof dead, "%s.lock.%ld.%ld.7", f->path, dead_pid(), 99L);
	snprintf(alive, sizeof alive, "%s.lock.%ld.1.1", f->path, (long)getppid());
	snprintf(other, sizeof other, "%s.lock.x.1.1", f->path);
	spit(dead, "1\n", 0644);
	spit(alive, "1\n", 0644);
	spit(other, "1\n", 0644);
	char lock[600], body[128];
	snprintf(lock, sizeof lock, "%s.lock", f->path);
	snprintf(body, sizeof body, "%ld\nhost %s\n", dead_pid(), node());
	spit(lock, body, 0644);
	struct pt_delivery d = delivery(f, "S: 1\n\nx\n");
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_status(&st, 0, "2.0.0", "delivered");
	assert_int_equal(access(dead, F_OK), -1);
	assert_int_equal(access(alive, F_OK), 0);
	assert_int_equal(access(other, F_OK), 0);
	unlink(alive);
	unlink(other);
}

/* Issue #11 item 4: a writer killed mid-append (simulated: its record in
 * its lock, half a message in the file) leaves nothing partial behind;
 * the next locker cuts the file back to the recorded start. */
static void
test_append_cut_after_writer_death(void **state)
{
	struct fixture *f = *state;
	struct pt_delivery d = delivery(f, "Subject: whole\n\nfirst\n");
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_status(&st, 0, "2.0.0", "delivered");
	size_t len0;
	char *before = slurp(f->path, &len0);
	/* The dead writer: record [len0, len0 + 5000), wrote 1234 bytes. */
	char lock[600], body[256];
	snprintf(lock, sizeof lock, "%s.lock", f->path);
	snprintf(body, sizeof body, "%ld\nhost %s\nappend %zu %zu\n", dead_pid(), node(), len0,
	         len0 + 5000);
	spit(lock, body, 0644);
	int fd = open(f->path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	char half[1234];
	memset(half, 'y', sizeof half);
	memcpy(half, "From partial  Sat Nov 28 06:08:07 2026\nSubject: cut", 51);
	assert_int_equal(write(fd, half, sizeof half), (ssize_t)sizeof half);
	close(fd);
	struct pt_delivery d2 = delivery(f, "Subject: next\n\nsecond\n");
	mbox_deliver_with(&f->s, &d2, 1, &st);
	assert_status(&st, 0, "2.0.0", "delivered");
	size_t len;
	char *got = slurp(f->path, &len);
	struct pt_strbuf m2 = formatted(&d2);
	assert_int_equal(len, len0 + m2.len);
	assert_memory_equal(got, before, len0);
	assert_memory_equal(got + len0, m2.p, m2.len);
	assert_int_equal(count_messages(got, len), 2);
	assert_int_equal(spool_leftovers(f), 0);
	free(got);
	pt_strbuf_free(&m2);
	/* An append that did finish (the file is exactly END long) stays. */
	got = slurp(f->path, &len);
	snprintf(body, sizeof body, "%ld\nhost %s\nappend %zu %zu\n", dead_pid(), node(),
	         len0, len);
	spit(lock, body, 0644);
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_status(&st, 0, "2.0.0", "delivered");
	size_t len2;
	char *after = slurp(f->path, &len2);
	assert_true(len2 > len);
	assert_memory_equal(after, got, len);
	assert_int_equal(count_messages(after, len2), 3);
	free(after);
	free(got);
	free(before);
}

/* The record a live writer leaves while appending: begin syncs it into
 * the lock, end clears it. */
static void
test_append_record_in_lock(void **state)
{
	struct fixture *f = *state;
	spit(f->path, "", 0600);
	int fd = open(f->path, O_RDWR);
	struct mbox_lock lk;
	struct pt_status st;
	assert_int_equal(mbox_lock(&lk, fd, f->path, &f->s, &st), 0);
	char lock[600];
	snprintf(lock, sizeof lock, "%s.lock", f->path);
	size_t len;
	char *s = slurp(lock, &len);
	char want[128];
	snprintf(want, sizeof want, "%ld\nhost %s\n", (long)getpid(), node());
	assert_string_equal(s, want);
	free(s);
	assert_int_equal(mbox_append_begin(&lk, 10, 20), 0);
	s = slurp(lock, &len);
	assert_non_null(strstr(s, "\nappend 10 20\n"));
	free(s);
	mbox_append_end(&lk);
	s = slurp(lock, &len);
	assert_string_equal(s, want);
	free(s);
	mbox_unlock(&lk, &f->s);
	close(fd);
	assert_int_equal(access(lock, F_OK), -1);
}

static void
test_owner_checked_as_root(void **state)
{
	struct fixture *f = *state;
	if (!is_root()) {
		skip();
		return;
	}
	spit(f->path, "", 0600);
	assert_int_equal(chown(f->path, 12345, 12345), 0);
	struct pt_delivery d = delivery(f, "S: 1\n\nx\n");
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_status(&st, 450, "4.2.0", "owned by uid 12345");
}

static void
test_root_creates_the_file_for_the_user(void **state)
{
	struct fixture *f = *state;
	if (!is_root()) {
		skip();
		return;
	}
	struct pt_user u = { "u1", 12345, 12346, "/nonexistent", "" };
	struct pt_delivery d = delivery(f, "S: 1\n\nx\n");
	d.user = &u;
	struct pt_status st;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_int_equal(st.code, 0);
	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_uid, 12345);
	assert_int_equal(sb.st_gid, 12346);
	assert_int_equal(sb.st_mode & 07777, 0600);
	unlink(f->path);
	/* A spool group-owned by mail_privileged_group (Debian: root:mail
	 * 2775): the file is 0660 with that group. */
	assert_int_equal(chown(f->dir, 0, 4242), 0);
	f->s.priv_gid = 4242;
	mbox_deliver_with(&f->s, &d, 1, &st);
	assert_int_equal(st.code, 0);
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_uid, 12345);
	assert_int_equal(sb.st_gid, 4242);
	assert_int_equal(sb.st_mode & 07777, 0660);
}

/* Run deliveries in a child that acts as user 65534 on the file system,
 * as a delivery process switched to the recipient would. */
static int
deliver_as_nobody(struct fixture *f, gid_t priv, int *code)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(CHILD_WATCHDOG_S);
		close(p[0]);
		syscall(SYS_setfsgid, 65534);
		syscall(SYS_setfsuid, 65534);
		struct pt_user u = { "u1", 65534, 65534, "/nonexistent", "" };
		struct pt_delivery d = delivery(f, "S: 1\n\nx\n");
		d.user = &u;
		f->s.priv_gid = priv;
		struct pt_status st;
		mbox_deliver_with(&f->s, &d, 1, &st);
		if (st.code)
			fprintf(stderr, "child: %d %s %s\n", st.code, st.dsn, st.text);
		_exit(write(p[1], &st.code, sizeof st.code) == sizeof st.code ? 0 : 1);
	}
	close(p[1]);
	ssize_t r = read(p[0], code, sizeof *code);
	close(p[0]);
	int status;
	waitpid(pid, &status, 0);
	return r == sizeof *code && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void
test_privileged_group_for_dotlock(void **state)
{
	struct fixture *f = *state;
	if (!is_root()) {
		skip();
		return;
	}
	/* /var/mail shape: root:G 2775, the user not in G. */
	assert_int_equal(chown(f->dir, 0, 4242), 0);
	assert_int_equal(chmod(f->dir, 02775), 0);
	int code = -1;
	/* Without mail_privileged_group the user cannot create anything. */
	assert_int_equal(deliver_as_nobody(f, (gid_t)-1, &code), 0);
	assert_int_equal(code, 450);
	assert_int_equal(access(f->path, F_OK), -1);
	/* With it, the file is created and dotlocked via the group. */
	assert_int_equal(deliver_as_nobody(f, 4242, &code), 0);
	assert_int_equal(code, 0);
	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_uid, 65534);
	assert_int_equal(sb.st_gid, 4242);
	assert_int_equal(sb.st_mode & 07777, 0660);
	/* The file exists now: only the dotlock needs the group. */
	assert_int_equal(deliver_as_nobody(f, 4242, &code), 0);
	assert_int_equal(code, 0);
	assert_int_equal(deliver_as_nobody(f, (gid_t)-1, &code), 0);
	assert_int_equal(code, 450);
	assert_int_equal(spool_leftovers(f), 0);
	size_t len;
	char *got = slurp(f->path, &len);
	assert_int_equal(count_messages(got, len), 2);
	free(got);
}

#define PROCS 4
#define THREADS 5
#define PER_THREAD 5

struct worker {
	struct fixture *f;
	int proc, thread;
	int failures;
};

static void
concurrent_body(char *buf, size_t len, int proc, int thread, int k)
{
	snprintf(buf, len,
	         "Subject: m %d-%d-%d\nStatus: RO\n\nFrom the body of %d-%d-%d\nline two\n"
	         "From  again\n", proc, thread, k, proc, thread, k);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	for (int k = 0; k < PER_THREAD; k++) {
		char body[200];
		concurrent_body(body, sizeof body, w->proc, w->thread, k);
		struct pt_delivery d = delivery(w->f, body);
		struct pt_status st;
		mbox_deliver_with(&w->f->s, &d, 1, &st);
		if (st.code != 0)
			w->failures++;
	}
	return NULL;
}

struct seen {
	const char *buf;
	char ids[PROCS][THREADS][PER_THREAD];
	int bad;
};

static int
check_message(void *arg, const struct mbox_msg *m)
{
	struct seen *s = arg;
	int p, t, k;
	const char *text = s->buf + m->hdr_off;
	const char *subj = strstr(text, "Subject: m ");
	if (subj == NULL || subj > s->buf + m->end ||
	    sscanf(subj, "Subject: m %d-%d-%d", &p, &t, &k) != 3 || p < 0 || p >= PROCS || t < 0 ||
	    t >= THREADS || k < 0 || k >= PER_THREAD) {
		s->bad++;
		return 0;
	}
	s->ids[p][t][k]++;
	/* The whole message text, byte for byte. */
	char body[200], want[400];
	concurrent_body(body, sizeof body, p, t, k);
	struct pt_strbuf b = { 0 };
	mbox_format_body(body, strlen(body), &b);
	size_t split = mbox_header_end(b.p, b.len);
	int n = snprintf(want, sizeof want,
	                 "Return-Path: <s@example.com.ar>\nX-Original-To: alias@example.com.ar\n"
	                 "Delivered-To: u1@example.com.ar\n%.*s%s%.*s", (int)split, b.p,
	                 MBOX_RD_MARKER, (int)(b.len - split), b.p + split);
	pt_strbuf_free(&b);
	if ((off_t)n != m->end - m->hdr_off || memcmp(text, want, (size_t)n) != 0)
		s->bad++;
	return 0;
}

static void
test_100_concurrent_deliveries(void **state)
{
	struct fixture *f = *state;
	f->s.lock_timeout_ms = 30000;
	pid_t pids[PROCS];
	for (int p = 0; p < PROCS; p++) {
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0) {
			alarm(CHILD_WATCHDOG_S);
			pthread_t th[THREADS];
			struct worker w[THREADS];
			for (int t = 0; t < THREADS; t++) {
				w[t] = (struct worker){ f, p, t, 0 };
				pthread_create(&th[t], NULL, worker_main, &w[t]);
			}
			int fails = 0;
			for (int t = 0; t < THREADS; t++) {
				pthread_join(th[t], NULL);
				fails += w[t].failures;
			}
			_exit(fails ? 1 : 0);
		}
	}
	for (int p = 0; p < PROCS; p++) {
		int status;
		assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	size_t len;
	char *got = slurp(f->path, &len);
	struct seen s;
	memset(&s, 0, sizeof s);
	s.buf = got;
	off_t junk;
	assert_int_equal(mbox_parse(got, len, check_message, &s, &junk), 0);
	assert_int_equal(junk, 0);
	assert_int_equal(s.bad, 0);
	int total = 0;
	for (int p = 0; p < PROCS; p++)
		for (int t = 0; t < THREADS; t++)
			for (int k = 0; k < PER_THREAD; k++) {
				assert_int_equal(s.ids[p][t][k], 1);
				total++;
			}
	assert_int_equal(total, 100);
	assert_int_equal(count_messages(got, len), 100);
	assert_int_equal(spool_leftovers(f), 0);
	free(got);
}

static void
test_service_uses_installed_settings(void **state)
{
	struct fixture *f = *state;
	mbox_settings_install(&f->s);
	struct pt_delivery d = delivery(f, "S: 1\n\nx\n");
	struct pt_status st;
	mbox_deliver(&d, 1, &st);
	assert_int_equal(st.code, 0);
	assert_int_equal(access(f->path, F_OK), 0);
	mbox_deliver(&d, 0, &st); /* an empty group is a no-op */
}

int
main(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_new_mailbox_mode_and_bytes),
		T(test_group_commit),
		T(test_damaged_mbox_gets_a_line_end),
		T(test_write_only_mailbox_takes_mail),
		T(test_mailbox_size_limit),
		T(test_size_limit_in_the_middle_of_a_group),
		T(test_write_failure_truncates_to_whole_messages),
		T(test_symlink_refused),
		T(test_hard_link_refused),
		T(test_odd_files_refused),
		T(test_missing_spool_directory),
		T(test_bad_user_name),
		T(test_group_with_another_user),
		T(test_fcntl_lock_contention),
		T(test_dotlock_contention_and_stale_dotlock),
		T(test_dotlock_of_dead_pid_taken_at_once),
		T(test_dotlock_temps_of_dead_pids_removed),
		T(test_append_cut_after_writer_death),
		T(test_append_record_in_lock),
		T(test_owner_checked_as_root),
		T(test_root_creates_the_file_for_the_user),
		T(test_privileged_group_for_dotlock),
		T(test_100_concurrent_deliveries),
		T(test_service_uses_installed_settings),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
