/* Logging: Postfix-shaped lines "postern/SERVICE[PID]: text" to
 * maillog_file, syslog (mail facility) or stderr. */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

enum pt_log_level { PT_LOG_DEBUG, PT_LOG_INFO, PT_LOG_WARNING, PT_LOG_ERROR, PT_LOG_FATAL };

/* Service part of the tag for this process/thread, e.g. "smtpd" gives
 * "postern/smtpd[PID]" (postern: syslog_name). A service with a '/' is a
 * whole tag: "postern/submission/smtpd" (a listener's syslog_name). */
void pt_log_set_service(const char *service);
void pt_log(enum pt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, with an explicit service tag for one line. */
void pt_log_as(const char *service, enum pt_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define pt_info(...) pt_log(PT_LOG_INFO, __VA_ARGS__)
#define pt_warn(...) pt_log(PT_LOG_WARNING, __VA_ARGS__)
#define pt_error(...) pt_log(PT_LOG_ERROR, __VA_ARGS__)

#endif
