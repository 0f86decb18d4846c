/* Live metrics: counters, gauges and histograms that every process of one
 * server instance adds to in one shared table (a file the master maps
 * before it forks: $queue_directory/metrics), read by `postern stats`
 * and the OpenMetrics endpoint (metrics_listen) without asking any
 * process. Per-user mail processes have no mapping at all: what they
 * do is counted in the worker, where logins happen.
 *
 * A metric is a family name plus label pairs. Register it once (at init,
 * or on first use for labels known only then, such as a rule name) and
 * keep the handle: an increment is then one relaxed atomic add. Without
 * a table (CLI verbs, tests, a table that is full) a handle still works
 * and counts into a private dummy, so callers never check for NULL. */
#ifndef POSTERN_METRICS_H
#define POSTERN_METRICS_H

#include <stdint.h>

struct pt_metric;

/* name: OpenMetrics family name ("postern_smtpd_connections", counters
 * without the _total suffix, which the exporter adds); help: one line;
 * then label name/value pairs (const char *), ending with NULL. Values
 * are escaped here and cut to fit the table's label room. The same name
 * and labels give the same handle, in every process of the instance and
 * across reloads. */
struct pt_metric *pt_metric_counter(const char *name, const char *help, ...)
	__attribute__((sentinel));
struct pt_metric *pt_metric_gauge(const char *name, const char *help, ...)
	__attribute__((sentinel));
/* Buckets: a fixed set for latencies in seconds, 1 ms to 5 minutes. */
struct pt_metric *pt_metric_histogram(const char *name, const char *help, ...)
	__attribute__((sentinel));

/* Counters and gauges: add (a gauge may go down: negative delta). */
void pt_metric_add(struct pt_metric *m, int64_t delta);
#define pt_metric_inc(m) pt_metric_add((m), 1)
/* Gauges: set. */
void pt_metric_set(struct pt_metric *m, int64_t value);
/* Histograms: one observation (seconds). */
void pt_metric_observe(struct pt_metric *m, double value);

#endif
