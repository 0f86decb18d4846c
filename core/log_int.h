/* Core-internal logging setup: where lines go. Before pt_log_open runs,
 * lines go to stderr. */
#ifndef POSTERN_LOG_INT_H
#define POSTERN_LOG_INT_H

/* maillog_file: "" = syslog (mail facility), "stderr" or "/dev/stderr" =
 * standard error, else a file opened for append. 0 ok, -1 (errno). */
int pt_log_open(const char *maillog_file);
void pt_log_close(void);
/* Tag of this process's lines when no handler retagged the thread
 * ("master", "worker", "local"). */
void pt_log_set_default_service(const char *service);
/* syslog_name: the first part of every tag ("postern"). */
void pt_log_set_name(const char *name);

#endif
