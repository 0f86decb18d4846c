/* `postern stats`: the live metrics table ($queue_directory/metrics, made
 * by the running master) as a compact table, as JSON (--json) or as the
 * endpoint's OpenMetrics text (--openmetrics); --watch refreshes every
 * second with rates per second, like top on a terminal and as plain
 * lines when stdout is not one. Readable by root and mail_owner. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config_int.h"
#include "metrics_int.h"
#include "postern/fdio.h"
#include "runtime.h"

enum format { F_TABLE, F_JSON, F_OPENMETRICS };

struct view {
	char *buf;
	size_t size;
	char qdir[4096];
	char path[4200];
};

/* A copy, read afresh for every refresh: the file lives in a directory
 * mail_owner owns, and a mapping of a file someone else can truncate
 * would crash this (root's) process. */
static int
view_read(struct view *v)
{
	int fd = open(v->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			fprintf(stderr, "postern stats: %s does not exist: no server has run with this queue_directory\n",
			        v->path);
		else
			fprintf(stderr, "postern stats: cannot open %s: %s%s\n", v->path, strerror(errno),
			        errno == EACCES ? " (readable by root and mail_owner only)" : "");
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > (64 << 20)) {
		fprintf(stderr, "postern stats: %s is not a metrics table\n", v->path);
		close(fd);
		return -1;
	}
	char *buf = realloc(v->buf, (size_t)st.st_size);
	if (!buf) {
		close(fd);
		return -1;
	}
	v->buf = buf;
	ssize_t n = pt_read_full(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n < 0) {
		fprintf(stderr, "postern stats: cannot read %s: %s\n", v->path, strerror(errno));
		return -1;
	}
	v->size = (size_t)n;
	return 0;
}

static int
take(struct view *v, struct pt_msnap *s)
{
	if (view_read(v) != 0)
		return -1;
	if (pt_msnap_take(v->buf, v->size, v->qdir, s) != 0) {
		fprintf(stderr, "postern stats: %s is not a metrics table of this version\n", v->path);
		return -1;
	}
	pt_msnap_sort(s);
	return 0;
}

static int
master_running(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* k="v",k2="v2" shown as k=v k2=v2 (escapes undone). */
static void
labels_plain(const char *l, char *out, size_t room)
{
	size_t o = 0;
	for (; *l && o + 2 < room; l++) {
		if (*l == '"')
			continue;
		if (*l == ',' && l[-1] == '"') {
			out[o++] = ' ';
			continue;
		}
		if (*l == '\\' && l[1]) {
			l++;
			out[o++] = *l == 'n' ? ' ' : *l;
			continue;
		}
		out[o++] = *l;
	}
	out[o] = '\0';
}

static void
json_str(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* The labels as a JSON object. */
static void
json_labels(FILE *f, const char *l)
{
	fputc('{', f);
	int first = 1;
	while (*l) {
		const char *eq = strchr(l, '=');
		if (!eq || eq[1] != '"')
			break;
		if (!first)
			fputc(',', f);
		first = 0;
		json_str(f, l, (size_t)(eq - l));
		fputc(':', f);
		char val[PT_METRICS_LABELS];
		size_t o = 0;
		const char *p = eq + 2;
		for (; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1]) {
				p++;
				val[o++] = *p == 'n' ? '\n' : *p;
			} else {
				val[o++] = *p;
			}
		}
		val[o] = '\0';
		json_str(f, val, o);
		l = *p ? p + 1 : p;
		if (*l == ',')
			l++;
	}
	fputc('}', f);
}

static void
print_json(const struct pt_msnap *s)
{
	printf("{\"master_pid\":%" PRId64 ",\"running\":%s,\"started\":%" PRId64 ",\"time\":%lld,\"dropped\":%u,"
	       "\"metrics\":[",
	       s->master_pid, master_running((pid_t)s->master_pid) ? "true" : "false", s->started,
	       (long long)time(NULL), s->dropped);
	for (size_t i = 0; i < s->n; i++) {
		const struct pt_msnap_item *it = &s->v[i];
		printf("%s\n{\"name\":", i ? "," : "");
		json_str(stdout, it->name, sizeof it->name);
		printf(",\"type\":\"%s\",\"labels\":",
		       it->type == PT_MT_COUNTER ? "counter" : it->type == PT_MT_GAUGE ? "gauge" : "histogram");
		json_labels(stdout, it->labels);
		if (it->type != PT_MT_HISTOGRAM) {
			printf(",\"value\":%" PRId64 "}", pt_msnap_value(it));
			continue;
		}
		uint64_t cum = 0;
		printf(",\"buckets\":[");
		for (int k = 0; k <= PT_METRICS_BUCKETS; k++) {
			cum += it->v[k];
			if (k < PT_METRICS_BUCKETS)
				printf("%s{\"le\":%g,\"count\":%" PRIu64 "}", k ? "," : "", pt_metrics_bounds[k], cum);
			else
				printf(",{\"le\":\"+Inf\",\"count\":%" PRIu64 "}", cum);
		}
		printf("],\"count\":%" PRIu64 ",\"sum\":%.6f}", cum, (double)it->v[PT_METRICS_BUCKETS + 1] / 1e6);
	}
	printf("\n]}\n");
}

/* The value of the same metric in the previous snapshot, for rates. */
static const struct pt_msnap_item *
find_prev(const struct pt_msnap *prev, const struct pt_msnap_item *it)
{
	if (!prev)
		return NULL;
	for (size_t i = 0; i < prev->n; i++)
		if (strcmp(prev->v[i].name, it->name) == 0 && strcmp(prev->v[i].labels, it->labels) == 0)
			return &prev->v[i];
	return NULL;
}

static uint64_t
hist_count(const struct pt_msnap_item *it)
{
	uint64_t n = 0;
	for (int k = 0; k <= PT_METRICS_BUCKETS; k++)
		n += it->v[k];
	return n;
}

/* The bucket bound under which fraction q of the observations fell. */
static const char *
hist_quantile(const struct pt_msnap_item *it, double q, char *buf, size_t len)
{
	uint64_t n = hist_count(it), cum = 0;
	for (int k = 0; k < PT_METRICS_BUCKETS; k++) {
		cum += it->v[k];
		if (n && (double)cum >= q * (double)n) {
			snprintf(buf, len, "<=%gs", pt_metrics_bounds[k]);
			return buf;
		}
	}
	snprintf(buf, len, n ? ">%gs" : "-", pt_metrics_bounds[PT_METRICS_BUCKETS - 1]);
	return buf;
}

static void
print_table(const struct pt_msnap *s, const struct pt_msnap *prev, double dt, int clear)
{
	char when[64], up[32];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
	long long secs = s->started > 0 ? (long long)now - s->started : 0;
	snprintf(up, sizeof up, "%lldd %02lld:%02lld:%02lld", secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
	if (clear)
		fputs("\033[H\033[2J", stdout);
	printf("postern stats %s: master pid %" PRId64 " %s, up %s%s\n", when, s->master_pid,
	       master_running((pid_t)s->master_pid) ? "running" : "NOT RUNNING (last values)", up,
	       s->dropped ? " (table full: some metrics not kept)" : "");
	/* Columns as wide as this snapshot needs. */
	int wn = 6, wl = 6;
	for (size_t i = 0; i < s->n; i++) {
		char labels[PT_METRICS_LABELS];
		const char *name = strncmp(s->v[i].name, "postern_", 8) == 0 ? s->v[i].name + 8 : s->v[i].name;
		labels_plain(s->v[i].labels, labels, sizeof labels);
		if ((int)strlen(name) > wn)
			wn = (int)strlen(name);
		if ((int)strlen(labels) > wl)
			wl = (int)strlen(labels);
	}
	printf("%-*s %-*s %12s %9s\n", wn, "METRIC", wl, "LABELS", "VALUE", prev ? "RATE/s" : "");
	for (size_t i = 0; i < s->n; i++) {
		const struct pt_msnap_item *it = &s->v[i];
		const struct pt_msnap_item *old = find_prev(prev, it);
		const char *name = strncmp(it->name, "postern_", 8) == 0 ? it->name + 8 : it->name;
		char labels[PT_METRICS_LABELS], shown[64], rate[32] = "";
		labels_plain(it->labels, labels, sizeof labels);
		if (it->type == PT_MT_HISTOGRAM) {
			uint64_t n = hist_count(it);
			double sum = (double)it->v[PT_METRICS_BUCKETS + 1] / 1e6;
			char p50[24], p99[24];
			if (old && dt > 0)
				snprintf(rate, sizeof rate, "%.1f", (double)(n - hist_count(old)) / dt);
			printf("%-*s %-*s %12" PRIu64 " %9s  avg %.3fs p50 %s p99 %s\n", wn, name, wl, labels, n, rate,
			       n ? sum / (double)n : 0.0, hist_quantile(it, 0.5, p50, sizeof p50),
			       hist_quantile(it, 0.99, p99, sizeof p99));
			continue;
		}
		if (it->type == PT_MT_COUNTER && old && dt > 0)
			snprintf(rate, sizeof rate, "%.1f", (double)(it->v[0] - old->v[0]) / dt);
		snprintf(shown, sizeof shown, "%" PRId64, pt_msnap_value(it));
		printf("%-*s %-*s %12s %9s\n", wn, name, wl, labels, shown, rate);
	}
	fflush(stdout);
}

static void
usage(FILE *f)
{
	fputs("usage: postern stats [-c FILE] [--json | --openmetrics] [--watch [--count N]]\n"
	      "  live counters of the running server, from $queue_directory/metrics\n"
	      "  --json          one JSON document\n"
	      "  --openmetrics   the text the metrics_listen endpoint serves\n"
	      "  --watch         refresh every second with rates (plain lines when not a terminal)\n"
	      "  --count N       with --watch: stop after N refreshes\n",
	      f);
}

int
pt_cmd_stats(const char *conf, int argc, char **argv)
{
	enum format fmt = F_TABLE;
	int watch = 0;
	long count = -1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			fmt = F_JSON;
		} else if (strcmp(argv[i], "--openmetrics") == 0) {
			fmt = F_OPENMETRICS;
		} else if (strcmp(argv[i], "--watch") == 0 || strcmp(argv[i], "-w") == 0) {
			watch = 1;
		} else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
			char *end;
			count = strtol(argv[++i], &end, 10);
			if (*end || count < 1) {
				fprintf(stderr, "postern stats: --count needs a positive number\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "postern stats: unknown option %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (watch && fmt != F_TABLE) {
		fprintf(stderr, "postern stats: --watch shows the table only\n");
		return 2;
	}
	struct pt_config *c = pt_runtime_load_params(conf);
	if (c == NULL)
		return 1;
	if (pt_runtime_print_errors(c, stderr) > 0) {
		pt_config_free(c);
		return 1;
	}
	struct view v = { 0 };
	snprintf(v.qdir, sizeof v.qdir, "%s", pt_conf_str(c, "queue_directory"));
	pt_config_free(c);
	snprintf(v.path, sizeof v.path, "%s/%s", v.qdir, PT_METRICS_FILE);
	struct pt_msnap cur, prev = { 0 };
	int rc = 0, have_prev = 0, tty = isatty(STDOUT_FILENO);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long n = 0;; n++) {
		if (take(&v, &cur) != 0) {
			rc = 1;
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (fmt == F_JSON) {
			print_json(&cur);
		} else if (fmt == F_OPENMETRICS) {
			size_t len;
			char *text = pt_msnap_openmetrics(&cur, &len);
			if (!text || fwrite(text, 1, len, stdout) != len)
				rc = 1;
			free(text);
		} else {
			print_table(&cur, have_prev ? &prev : NULL, dt, watch && tty);
			if (watch && !tty)
				putchar('\n');
		}
		if (!have_prev && !watch && fmt == F_TABLE && !master_running((pid_t)cur.master_pid))
			fprintf(stderr, "postern stats: the master (pid %" PRId64 ") is not running: last values shown\n",
			        cur.master_pid);
		if (have_prev)
			pt_msnap_free(&prev);
		prev = cur;
		have_prev = 1;
		t0 = t1;
		if (!watch || (count > 0 && n + 1 >= count))
			break;
		struct timespec sec = { 1, 0 };
		while (nanosleep(&sec, &sec) != 0 && errno == EINTR)
			;
	}
	if (have_prev)
		pt_msnap_free(&prev);
	free(v.buf);
	return rc;
}
