/* Unit tests of the shared metrics table (core/metrics*.c): one handle per
 * name and labels, label escaping, histogram buckets, the OpenMetrics
 * text, a reader that survives a table written by a hostile process, and
 * a detached process whose old handles count into nothing. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics_int.h"

static char dir[64];
static int dirfd_;

static int
setup(void **state)
{
	(void)state;
	char err[256];
	snprintf(dir, sizeof dir, "/tmp/postern-test-metrics-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	dirfd_ = open(dir, O_RDONLY | O_DIRECTORY);
	if (pt_metrics_create(dirfd_, getuid(), getgid(), err, sizeof err) != 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlinkat(dirfd_, PT_METRICS_FILE, 0);
	close(dirfd_);
	rmdir(dir);
	return 0;
}

/* A fresh snapshot of the live table (no queue directory). */
static void
snap(struct pt_msnap *s)
{
	const struct pt_metrics_header *h = pt_metrics_table();
	assert_non_null(h);
	assert_int_equal(pt_msnap_take(h, (size_t)h->size, NULL, s), 0);
	pt_msnap_sort(s);
}

static const struct pt_msnap_item *
find(const struct pt_msnap *s, const char *name, const char *labels)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].name, name) == 0 && strcmp(s->v[i].labels, labels) == 0)
			return &s->v[i];
	return NULL;
}

static void
test_same_handle_and_counts(void **state)
{
	(void)state;
	struct pt_metric *a = pt_metric_counter("postern_t_hits", "hits", "svc", "smtpd", NULL);
	struct pt_metric *b = pt_metric_counter("postern_t_hits", "hits", "svc", "smtpd", NULL);
	struct pt_metric *c = pt_metric_counter("postern_t_hits", "hits", "svc", "imap", NULL);
	assert_ptr_equal(a, b);
	assert_ptr_not_equal(a, c);
	pt_metric_inc(a);
	pt_metric_add(b, 4);
	pt_metric_inc(c);
	/* The same name and labels as another type: not the counter's slot. */
	struct pt_metric *g = pt_metric_gauge("postern_t_hits", "hits", "svc", "smtpd", NULL);
	assert_ptr_not_equal(g, a);
	pt_metric_add(g, 100);
	struct pt_metric *open_ = pt_metric_gauge("postern_t_open", "open", NULL);
	pt_metric_add(open_, 3);
	pt_metric_add(open_, -5);
	struct pt_msnap s;
	snap(&s);
	assert_int_equal(pt_msnap_value(find(&s, "postern_t_hits", "svc=\"smtpd\"")), 5);
	assert_int_equal(pt_msnap_value(find(&s, "postern_t_hits", "svc=\"imap\"")), 1);
	assert_int_equal(pt_msnap_value(find(&s, "postern_t_open", "")), -2);
	pt_msnap_free(&s);
}

static void
test_label_escaping(void **state)
{
	(void)state;
	pt_metric_inc(pt_metric_counter("postern_t_rules", "r", "rule", "a \"q\" b\\c\nd\x01", NULL));
	struct pt_msnap s;
	snap(&s);
	assert_non_null(find(&s, "postern_t_rules", "rule=\"a \\\"q\\\" b\\\\c\\nd?\""));
	pt_msnap_free(&s);
	/* A value longer than the room is cut, still well formed. */
	char big[400];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	pt_metric_inc(pt_metric_counter("postern_t_long", "l", "k", big, NULL));
	snap(&s);
	int seen = 0;
	for (size_t i = 0; i < s.n; i++)
		if (strcmp(s.v[i].name, "postern_t_long") == 0) {
			size_t n = strlen(s.v[i].labels);
			assert_true(n < PT_METRICS_LABELS);
			assert_int_equal(s.v[i].labels[n - 1], '"');
			seen = 1;
		}
	assert_true(seen);
	pt_msnap_free(&s);
}

static void
test_histogram_and_openmetrics(void **state)
{
	(void)state;
	struct pt_metric *h = pt_metric_histogram("postern_t_delay_seconds", "delay", "transport", "local", NULL);
	pt_metric_observe(h, 0.003);
	pt_metric_observe(h, 0.003);
	pt_metric_observe(h, 2);
	pt_metric_observe(h, 9999);
	struct pt_msnap s;
	snap(&s);
	size_t len;
	char *text = pt_msnap_openmetrics(&s, &len);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	assert_non_null(strstr(text, "# TYPE postern_t_delay_seconds histogram\n"));
	assert_non_null(strstr(text, "postern_t_delay_seconds_bucket{transport=\"local\",le=\"0.001\"} 0\n"));
	assert_non_null(strstr(text, "postern_t_delay_seconds_bucket{transport=\"local\",le=\"0.005\"} 2\n"));
	assert_non_null(strstr(text, "postern_t_delay_seconds_bucket{transport=\"local\",le=\"2.5\"} 3\n"));
	assert_non_null(strstr(text, "postern_t_delay_seconds_bucket{transport=\"local\",le=\"300\"} 3\n"));
	assert_non_null(strstr(text, "postern_t_delay_seconds_bucket{transport=\"local\",le=\"+Inf\"} 4\n"));
	assert_non_null(strstr(text, "postern_t_delay_seconds_count{transport=\"local\"} 4\n"));
	assert_non_null(strstr(text, "postern_t_delay_seconds_sum{transport=\"local\"} 10001.006000\n"));
	assert_non_null(strstr(text, "# TYPE postern_t_hits counter\n# HELP postern_t_hits hits\n"));
	assert_non_null(strstr(text, "postern_t_hits_total{svc=\"smtpd\"} 5\n"));
	/* one TYPE per family, even with a gauge of the same name */
	const char *first = strstr(text, "# TYPE postern_t_hits ");
	assert_null(strstr(first + 1, "# TYPE postern_t_hits "));
	assert_true(len > 6 && strcmp(text + len - 6, "# EOF\n") == 0);
	free(text);
	pt_msnap_free(&s);
}

/* A worker (mail_owner) could scribble anything into the file: a reader
 * (root's postern stats) keeps only well-formed entries and never reads
 * outside the buffer. */
static void
test_hostile_table(void **state)
{
	(void)state;
	const struct pt_metrics_header *live = pt_metrics_table();
	size_t size = (size_t)live->size;
	char *copy = malloc(size);
	memcpy(copy, live, size);
	struct pt_metrics_header *h = (struct pt_metrics_header *)copy;
	struct pt_metric *slots = (struct pt_metric *)(copy + ((sizeof *h + 4095) & ~(size_t)4095));
	uint32_t used = atomic_load(&h->used);
	assert_true(used >= 3);
	memset(slots[0].name, 'A', sizeof slots[0].name);          /* no NUL: kept, cut, valid name chars */
	snprintf(slots[1].labels, sizeof slots[1].labels, "a=\"x\ny\"");  /* a raw newline: would break the text */
	snprintf(slots[2].name, sizeof slots[2].name, "bad name{");
	slots[2].type = 77;
	atomic_store(&h->used, 1000000);
	struct pt_msnap s;
	assert_int_equal(pt_msnap_take(copy, size, NULL, &s), 0);
	for (size_t i = 0; i < s.n; i++) {
		assert_true(strlen(s.v[i].name) < PT_METRICS_NAME);
		assert_null(strchr(s.v[i].labels, '\n'));
		assert_null(strchr(s.v[i].name, ' '));
	}
	size_t len;
	char *text = pt_msnap_openmetrics(&s, &len);
	assert_non_null(text);
	free(text);
	pt_msnap_free(&s);
	/* A short file or another magic is refused. */
	assert_int_equal(pt_msnap_take(copy, 100, NULL, &s), -1);
	memcpy(h->magic, "SOMETHING-ELSE!!", 16);
	assert_int_equal(pt_msnap_take(copy, size, NULL, &s), -1);
	free(copy);
}

static void
test_processes(void **state)
{
	(void)state;
	pt_metrics_proc_add(getpid(), "worker");
	struct pt_msnap s;
	snap(&s);
	/* the master (this process, added by create) and the same pid as worker */
	assert_int_equal(pt_msnap_value(find(&s, "postern_processes", "role=\"master\"")), 1);
	assert_int_equal(pt_msnap_value(find(&s, "postern_processes", "role=\"worker\"")), 1);
	assert_true(pt_msnap_value(find(&s, "postern_process_resident_bytes", "role=\"worker\"")) > 0);
	pt_msnap_free(&s);
	pt_metrics_proc_del(getpid());
	snap(&s);
	/* both entries had this pid: one went */
	int left = (find(&s, "postern_processes", "role=\"master\"") != NULL) +
	           (find(&s, "postern_processes", "role=\"worker\"") != NULL);
	assert_int_equal(left, 1);
	pt_msnap_free(&s);
}

/* Last: a detached process (a user's mail process) has no mapping of the
 * file any more; a handle it inherited counts into private memory. */
static void
test_detach(void **state)
{
	(void)state;
	struct pt_metric *a = pt_metric_counter("postern_t_hits", "hits", "svc", "smtpd", NULL);
	pt_metrics_detach();
	assert_null(pt_metrics_table());
	pt_metric_add(a, 1000);
	struct pt_metric *b = pt_metric_counter("postern_t_hits", "hits", "svc", "smtpd", NULL);
	pt_metric_inc(b);
	/* the file still says 5 */
	int fd = openat(dirfd_, PT_METRICS_FILE, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	assert_true(p != MAP_FAILED);
	struct pt_msnap s;
	assert_int_equal(pt_msnap_take(p, (size_t)st.st_size, NULL, &s), 0);
	assert_int_equal(pt_msnap_value(find(&s, "postern_t_hits", "svc=\"smtpd\"")), 5);
	pt_msnap_free(&s);
	munmap(p, (size_t)st.st_size);
	FILE *maps = fopen("/proc/self/maps", "r");
	char line[512];
	while (maps && fgets(line, sizeof line, maps))
		assert_null(strstr(line, dir));
	if (maps)
		fclose(maps);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_handle_and_counts),
		cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_histogram_and_openmetrics),
		cmocka_unit_test(test_hostile_table),
		cmocka_unit_test(test_processes),
		cmocka_unit_test(test_detach),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
