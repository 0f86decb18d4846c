/* Process plumbing shared by the master and the children it forks. */
#ifndef POSTERN_PROCESS_H
#define POSTERN_PROCESS_H

#include <sys/types.h>

/* In a freshly forked child of the master: default signal dispositions,
 * empty signal mask (the master blocks signals for its signalfd), and
 * SIGTERM when the master dies. */
void pt_process_child_setup(void);
/* Drop to user (and its group, no supplementary groups) for good.
 * 0 ok, -1 with errno. No-op when not root. */
int pt_process_drop_privileges(uid_t uid, gid_t gid);

#endif
