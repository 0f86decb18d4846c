/* The shared metrics table (postern/metrics.h): its layout, the master's
 * side (create, record its children), and the readers' snapshot that
 * `postern stats` and the OpenMetrics endpoint print from. */
#ifndef POSTERN_METRICS_INT_H
#define POSTERN_METRICS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "postern/conn.h"
#include "postern/metrics.h"
#include "postern/module.h"

/* The file, in the queue directory (one per server instance). */
#define PT_METRICS_FILE "metrics"
#define PT_METRICS_MAGIC "POSTERN-METRICS2"
#define PT_METRICS_SLOTS 2048
#define PT_METRICS_PROCS 512
#define PT_METRICS_NAME 64
#define PT_METRICS_LABELS 192
#define PT_METRICS_HELP 112
#define PT_METRICS_VALUES 16
/* Histogram buckets (seconds): v[0..13] per bound, v[14] above the last
 * (+Inf), v[15] the sum in microseconds. */
#define PT_METRICS_BUCKETS 14
extern const double pt_metrics_bounds[PT_METRICS_BUCKETS];

enum pt_metric_type { PT_MT_COUNTER = 1, PT_MT_GAUGE, PT_MT_HISTOGRAM };

struct pt_metric {
	_Atomic uint32_t ready;          /* 1 once name..help are written */
	uint32_t type;                   /* enum pt_metric_type */
	char name[PT_METRICS_NAME];
	char labels[PT_METRICS_LABELS];  /* k="v",k2="v2", OpenMetrics-escaped */
	char help[PT_METRICS_HELP];
	_Atomic uint64_t v[PT_METRICS_VALUES];
};

struct pt_metrics_proc {
	_Atomic int32_t pid;             /* 0 = free */
	char role[28];
};

struct pt_metrics_header {
	char magic[16];
	uint32_t nslots, nprocs;
	uint64_t size;
	int64_t master_pid;
	int64_t started;                 /* unix time the master made the table */
	pthread_mutex_t lock;            /* registration only (robust, shared) */
	_Atomic uint32_t used;           /* slots handed out, never shrinks */
	_Atomic uint32_t dropped;        /* registrations refused: table full */
	struct pt_metrics_proc procs[PT_METRICS_PROCS];
};

/* The master, once, before any fork: create (replace) the file in the
 * queue directory open as qdirfd, owned by uid with group gid (mode 0640),
 * and map it into this process (inherited by every child). 0, or -1 with
 * a reason in err (the server then runs without metrics). */
int pt_metrics_create(int qdirfd, uid_t uid, gid_t gid, char *err, size_t errlen);
/* Drop this process's mapping (a per-user mail process: a user must not
 * write other users' or the server's counters). */
void pt_metrics_detach(void);
/* The process table for memory per role: the master records its children
 * (and itself), the mail agent the per-user mail processes. */
void pt_metrics_proc_add(pid_t pid, const char *role);
void pt_metrics_proc_del(pid_t pid);
/* The live mapping, or NULL. */
const struct pt_metrics_header *pt_metrics_table(void);

/* ---- readers ---- */
struct pt_msnap_item {
	int type;
	char name[PT_METRICS_NAME];
	char labels[PT_METRICS_LABELS];
	char help[PT_METRICS_HELP];
	uint64_t v[PT_METRICS_VALUES];
};
struct pt_msnap {
	struct pt_msnap_item *v;
	size_t n, cap;
	int64_t master_pid, started;
	uint32_t dropped;
};
/* Copy a table (a live mapping, or a file's mapping that anybody with
 * mail_owner's rights may have written: every field is checked) into
 * snap, then add what is computed at read time: queue sizes and oldest
 * age (qdir, NULL: none) and resident memory per process role. 0 / -1. */
int pt_msnap_take(const void *table, size_t size, const char *qdir, struct pt_msnap *snap);
void pt_msnap_free(struct pt_msnap *snap);
/* Sorted by name, then labels (stable output). */
void pt_msnap_sort(struct pt_msnap *snap);
/* OpenMetrics text (ends with "# EOF\n"); malloc'd, NULL out of memory. */
char *pt_msnap_openmetrics(const struct pt_msnap *snap, size_t *len);
/* A counter's or gauge's value as a signed number. */
int64_t pt_msnap_value(const struct pt_msnap_item *it);

/* The endpoint: a core listener the master binds like the protocols'. */
extern const struct pt_listener_decl pt_metrics_listener;

#endif
