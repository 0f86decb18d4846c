/* Logging: one line per event, "postern/SERVICE[PID]: text", written with a
 * single write(2) on an O_APPEND descriptor so that lines of concurrent
 * processes and threads never interleave. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log_int.h"
#include "postern/fdio.h"
#include "postern/log.h"

enum sink { SINK_STDERR, SINK_FILE, SINK_SYSLOG };

static enum sink log_sink = SINK_STDERR;
static int log_fd = -1;
static char log_default_service[32] = "master";
/* Protocol handlers retag the thread they run on (one loop thread serves
 * smtpd, imap and pop3 sessions); other threads log as the process. */
static __thread char log_service[32];
/* syslog_name: the tag's first part. A service with a '/' in it is a
 * whole tag already (a listener's own syslog_name, "postern/submission/
 * smtpd"), as Postfix's syslog_name/service. */
static char log_name[64] = "postern";

void
pt_log_set_name(const char *name)
{
	snprintf(log_name, sizeof log_name, "%s", name && *name ? name : "postern");
}

void
pt_log_set_service(const char *service)
{
	snprintf(log_service, sizeof log_service, "%s", service ? service : "");
}

void
pt_log_set_default_service(const char *service)
{
	snprintf(log_default_service, sizeof log_default_service, "%s", service);
	log_service[0] = '\0';
}

int
pt_log_open(const char *maillog_file)
{
	pt_log_close();
	if (maillog_file == NULL || *maillog_file == '\0') {
		log_sink = SINK_SYSLOG;
		return 0;
	}
	if (strcmp(maillog_file, "stderr") == 0 || strcmp(maillog_file, "/dev/stderr") == 0) {
		log_sink = SINK_STDERR;
		return 0;
	}
	int fd = open(maillog_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	log_fd = fd;
	log_sink = SINK_FILE;
	return 0;
}

void
pt_log_close(void)
{
	if (log_sink == SINK_FILE && log_fd >= 0)
		close(log_fd);
	if (log_sink == SINK_SYSLOG)
		closelog();
	log_fd = -1;
	log_sink = SINK_STDERR;
}

static const char *
level_prefix(enum pt_log_level level)
{
	switch (level) {
	case PT_LOG_WARNING: return "warning: ";
	case PT_LOG_ERROR: return "error: ";
	case PT_LOG_FATAL: return "fatal: ";
	default: return "";
	}
}

/* The short host name, looked up once (a uname per line showed up in
 * profiles of the worker). */
static char log_host[64] = "localhost";
static pthread_once_t log_host_once = PTHREAD_ONCE_INIT;

static void
log_host_init(void)
{
	char h[64] = "";
	if (gethostname(h, sizeof h - 1) == 0 && h[0]) {
		h[strcspn(h, ".")] = '\0';
		memcpy(log_host, h, sizeof log_host);
	}
}

/* syslog's tag is the file line's (syslog_name/service, or a listener's
 * whole tag such as postern/submission/smtpd) with the pid, as Postfix's
 * "postfix/smtpd[PID]", so that pflogsumm, fail2ban and journalctl -t see
 * the service. openlog keeps the pointer: each tag is kept for the life
 * of the process, and openlog + syslog run under one lock so that threads
 * logging as different services cannot swap tags. */
#define SYSLOG_TAGS 32
#define SYSLOG_TAG_MAX 100
static pthread_mutex_t syslog_lock = PTHREAD_MUTEX_INITIALIZER;
static char syslog_tags[SYSLOG_TAGS][SYSLOG_TAG_MAX];
static size_t syslog_ntags;

/* A child forked while another thread held the lock would wait forever
 * at its first log line: fork takes it first. */
static void syslog_lock_take(void) { pthread_mutex_lock(&syslog_lock); }
static void syslog_lock_give(void) { pthread_mutex_unlock(&syslog_lock); }
static pthread_once_t syslog_atfork_once = PTHREAD_ONCE_INIT;

static void
syslog_atfork(void)
{
	pthread_atfork(syslog_lock_take, syslog_lock_give, syslog_lock_give);
}

static void
syslog_as(const char *service, int prio, const char *prefix, const char *text)
{
	char want[SYSLOG_TAG_MAX];
	pthread_once(&syslog_atfork_once, syslog_atfork);
	if (strchr(service, '/') != NULL)
		snprintf(want, sizeof want, "%s", service);
	else
		snprintf(want, sizeof want, "%s/%s", log_name, service);
	pthread_mutex_lock(&syslog_lock);
	const char *tag = "postern";
	size_t i = 0;
	while (i < syslog_ntags && strcmp(syslog_tags[i], want) != 0)
		i++;
	if (i == syslog_ntags && i < SYSLOG_TAGS)
		memcpy(syslog_tags[syslog_ntags++], want, sizeof want);
	if (i < syslog_ntags)
		tag = syslog_tags[i];
	openlog(tag, LOG_PID | LOG_NDELAY, LOG_MAIL);
	syslog(prio, "%s%s", prefix, text);
	pthread_mutex_unlock(&syslog_lock);
}

static void
log_emit(const char *service, enum pt_log_level level, const char *fmt, va_list ap)
{
	static int debug = -1;
	if (debug < 0)
		debug = getenv("POSTERN_DEBUG") != NULL;
	if (level == PT_LOG_DEBUG && !debug)
		return;

	char text[2048];
	int saved = errno;
	vsnprintf(text, sizeof text, fmt, ap);
	errno = saved;
	/* Control characters from peers must not forge log lines. */
	for (char *p = text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';

	if (log_sink == SINK_SYSLOG) {
		static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR, LOG_CRIT };
		syslog_as(service, prio[level], level_prefix(level), text);
	}

	char line[2300];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	char stamp[32];
	strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
	pthread_once(&log_host_once, log_host_init);
	int whole = strchr(service, '/') != NULL;
	int n = snprintf(line, sizeof line, "%s %s %s%s%s[%ld]: %s%s\n", stamp, log_host, whole ? "" : log_name,
	                 whole ? "" : "/", service, (long)getpid(), level_prefix(level), text);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line) {
		n = sizeof line - 1;
		line[n - 1] = '\n';
	}
	if (log_sink == SINK_FILE)
		(void)pt_write_all(log_fd, line, (size_t)n);
	if (log_sink == SINK_STDERR)
		(void)pt_write_all(2, line, (size_t)n);
}

void
pt_log(enum pt_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_emit(log_service[0] ? log_service : log_default_service, level, fmt, ap);
	va_end(ap);
}

void
pt_log_as(const char *service, enum pt_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_emit(service, level, fmt, ap);
	va_end(ap);
}
