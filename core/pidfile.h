/* The master's pid file, queue lock and reload answer, shared by the
 * master (core/master.c) and the reload/stop verbs (core/signal_cli.c). */
#ifndef POSTERN_PIDFILE_H
#define POSTERN_PIDFILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The pid holding queue_directory's lock (the master), 0 when none. */
pid_t pt_pid_queue_master(const char *qdir);
void pt_pid_split_path(const char *path, char *dir, size_t dirlen, char *base, size_t baselen);
/* The pid file's directory, only when root may trust it; -1 with *why. */
int pt_pid_open_dir(const char *dir, const char **why);
pid_t pt_pid_read_at(int dirfd, const char *base);
/* PIDFILE.reload: the master's answer to the last SIGHUP. */
void pt_pid_reload_answer_name(char *out, size_t len, const char *pid_base);

#endif
