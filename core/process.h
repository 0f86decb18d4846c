/* Process plumbing shared by the master and the children it forks. */
#ifndef POSTERN_PROCESS_H
#define POSTERN_PROCESS_H

#include <sys/types.h>

/* In a freshly forked child of the master: default signal dispositions,
 * empty signal mask (the master blocks signals for its signalfd), SIGTERM
 * when the parent dies, and none of the master's listening sockets,
 * control sockets or queue lock. */
void pt_process_child_setup(void);
/* Ask for SIGTERM when the parent dies, and exit at once if it already
 * has. The kernel clears that request on every uid or gid change (also
 * setfsuid), so a child calls this again after switching users. */
void pt_process_watch_parent(void);
/* Drop to user (and its group, no supplementary groups) for good.
 * 0 ok, -1 with errno. No-op when not root. */
int pt_process_drop_privileges(uid_t uid, gid_t gid);

#endif
