/* `postern reload` and `postern stop`: signal the master that holds
 * queue_directory's lock; reload waits for its answer (what systemctl
 * reload runs), stop for its exit. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "postern/event.h"
#include "cli.h"
#include "config_int.h"
#include "pidfile.h"
#include "runtime.h"

/* Gone, or a zombie waiting for its parent to reap it (a server started
 * by a supervisor that has not collected it yet has stopped all the same). */
static int
process_gone(pid_t pid)
{
	if (kill(pid, 0) != 0)
		return 1;
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return 1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *paren = strrchr(buf, ')');
	return paren && paren[1] == ' ' && paren[2] == 'Z';
}

/* The master's last reload answer (write_reload_answer), "" when none.
 * As root only a file of root's counts, as for the pid file. */
static void
read_reload_answer(int dirfd, const char *pid_base, char *out, size_t len)
{
	char name[300];
	pt_pid_reload_answer_name(name, sizeof name, pid_base);
	out[0] = '\0';
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	ssize_t n = -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (geteuid() != 0 || st.st_uid == 0))
		n = read(fd, out, len - 1);
	close(fd);
	out[n > 0 ? n : 0] = '\0';
	out[strcspn(out, "\n")] = '\0';
}

/* After the SIGHUP: the answer to this process's signal. Two signals sent
 * at once may merge into one reload, answered to the other sender: an
 * answer that is not ours, followed by none for us within a few seconds,
 * covered our signal too. 0 reloaded, 1 refused or no answer. */
#define RELOAD_WAIT_MS 60000
#define RELOAD_MERGED_MS 3000

static int
wait_reload_answer(int dirfd, const char *pid_base, const char *before)
{
	char got[700], other[700] = "";
	uint64_t start = pt_mono_ms(), other_at = 0;
	for (;;) {
		read_reload_answer(dirfd, pid_base, got, sizeof got);
		char *end = NULL;
		long from = strtol(got, &end, 10);
		const char *text = end && *end == ' ' ? end + 1 : NULL;
		if (text && from == (long)getpid())
			break;
		if (text && strcmp(got, before) != 0 && strcmp(got, other) != 0) {
			snprintf(other, sizeof other, "%s", got);
			other_at = pt_mono_ms();
		}
		if (other_at && pt_mono_ms() - other_at >= RELOAD_MERGED_MS) {
			snprintf(got, sizeof got, "%s", other);
			break;
		}
		if (pt_mono_ms() - start >= RELOAD_WAIT_MS) {
			fprintf(stderr, "postern: no answer from the master within %d seconds; see the log\n",
			        RELOAD_WAIT_MS / 1000);
			return 1;
		}
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	const char *text = strchr(got, ' ') + 1;
	if (strcmp(text, "ok") == 0)
		return 0;
	fprintf(stderr, "postern: reload %s\n", text);
	return 1;
}

int
pt_cmd_signal(const char *conf, int sig)
{
	struct pt_config *c = pt_runtime_load(conf);
	if (c == NULL)
		return 1;
	int errors = pt_runtime_print_errors(c, stderr);
	/* A broken config must not keep an admin from stopping the server;
	 * a reload would only be refused by it. */
	if (errors > 0 && sig != SIGTERM) {
		fprintf(stderr, "postern: not reloading: fix the configuration first\n");
		pt_config_free(c);
		return 1;
	}
	char path[512], qdir[512];
	snprintf(path, sizeof path, "%s", pt_conf_str(c, "pid_file"));
	snprintf(qdir, sizeof qdir, "%s", pt_conf_str(c, "queue_directory"));
	pt_config_free(c);
	/* The master is the process holding the queue's lock: the pid file
	 * (which a compromised mail_owner may have written) only names a
	 * candidate, and a pid that does not hold the lock is never signalled. */
	pid_t pid = pt_pid_queue_master(qdir);
	pid_t filed = 0;
	int dfd = -1;
	char base[256] = "";
	if (path[0] != '\0') {
		char dir[512];
		const char *why = NULL;
		pt_pid_split_path(path, dir, sizeof dir, base, sizeof base);
		dfd = pt_pid_open_dir(dir, &why);
		if (dfd >= 0)
			filed = pt_pid_read_at(dfd, base);
		else if (errno != ENOENT)
			fprintf(stderr, "postern: ignoring pid_file %s: its directory cannot be trusted: %s\n", path, why);
	}
	if (pid <= 0) {
		fprintf(stderr, "postern: not running (no master holds queue_directory %s)\n", qdir);
		if (dfd >= 0)
			close(dfd);
		return 1;
	}
	if (filed > 0 && filed != pid)
		fprintf(stderr, "postern: %s names pid %ld, which is not the master; the master is pid %ld\n", path,
		        (long)filed, (long)pid);
	char before[700] = "";
	if (sig == SIGHUP && dfd >= 0)
		read_reload_answer(dfd, base, before, sizeof before);
	if (kill(pid, sig) != 0) {
		fprintf(stderr, "postern: cannot signal pid %ld: %s\n", (long)pid, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return 1;
	}
	if (sig == SIGHUP) {
		int rc = dfd >= 0 ? wait_reload_answer(dfd, base, before) : 0;
		if (dfd >= 0)
			close(dfd);
		return rc;
	}
	if (dfd >= 0)
		close(dfd);
	if (sig != SIGTERM)
		return 0;
	for (int i = 0; i < 100; i++) {
		if (process_gone(pid))
			return 0;
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	fprintf(stderr, "postern: pid %ld did not stop within 10 seconds\n", (long)pid);
	return 1;
}

