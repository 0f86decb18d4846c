/* Process titles for ps/top (Linux): "postern: master", "postern: worker",
 * "postern: imap [alice 192.0.2.7]", like Dovecot's verbose_proctitle. */
#ifndef POSTERN_PROCTITLE_H
#define POSTERN_PROCTITLE_H

/* First thing in main(), before argv or the environment is read: moves
 * the argument and environment strings to the heap (argv[], environ[] and
 * program_invocation_name are pointed at the copies) so that their
 * original area can hold a title later. Nothing visible changes until
 * pt_proctitle_set is called. */
void pt_proctitle_init(int argc, char **argv);

/* Title "postern: TEXT" (TEXT from fmt, unprintable bytes shown as '?',
 * cut to the space the area has) and the comm name "postern-WORD" (WORD:
 * the first word of TEXT; the kernel keeps 15 bytes) of the calling
 * thread. Without pt_proctitle_init, only the comm name changes. */
void pt_proctitle_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The per-user mail process: its title names the user and the session it
 * serves ("imap [alice 192.0.2.7]"), or how many ("imap [alice, 3
 * sessions]", "imap+pop3 [...]" when mixed). Each serve adds one, and its
 * handle removes it; the handle may be NULL (out of memory: the title
 * just misses that session). verbose 0 (verbose_proctitle = no): the
 * protocol alone, since every local user can read the titles. */
void pt_proctitle_mail_user(const char *user, int verbose);
void *pt_proctitle_session_add(const char *protocol, const char *peer);
void pt_proctitle_session_del(void *handle);

#endif
