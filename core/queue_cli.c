/* `postern queue list | flush | delete ID` (and mailq): read the queue
 * files directly, signal the server to retry now. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "config_int.h"
#include "queue.h"
#include "runtime.h"

static struct pt_config *
load(const char *path)
{
	struct pt_config *c = pt_runtime_load_params(path);
	if (c && pt_runtime_print_errors(c, stderr) > 0) {
		pt_config_free(c);
		return NULL;
	}
	return c;
}

struct listing {
	size_t requests;
	unsigned long long bytes;
	int errors;
	int idw;                      /* width of the ID column (with the '*') */
};

/* Columns as mailq's: ID (marked * while active), size, arrival time,
 * then sender and, under it, the recipients, all starting in one column
 * whatever the IDs' length (ours are 17 characters). */
#define SIZE_W 8
#define TIME_W 20
#define RCPT_COL(idw) ((idw) + 1 + SIZE_W + 1 + TIME_W + 1)

static void
print_entry(const struct pt_qfile *q, int active, struct listing *l)
{
	char when[32];
	struct tm tm;
	localtime_r(&q->arrival, &tm);
	strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);
	char idcol[32];
	snprintf(idcol, sizeof idcol, "%s%s", q->id, active ? "*" : "");
	printf("%-*s %*zu %-*s %s\n", l->idw, idcol, SIZE_W, q->len, TIME_W, when,
	       q->sender[0] ? q->sender : "MAILER-DAEMON");
	const char *last = NULL;
	for (size_t i = 0; i < q->nrcpt; i++) {
		const struct pt_qrcpt *r = &q->rcpt[i];
		if (r->state != PT_QRCPT_PENDING && r->state != PT_QRCPT_RESOLVED)
			continue;
		if (r->reason && (!last || strcmp(last, r->reason) != 0)) {
			printf("%*s(%s)\n", RCPT_COL(l->idw), "", r->reason);
			last = r->reason;
		}
		printf("%*s%s\n", RCPT_COL(l->idw), "", r->address);
	}
	printf("\n");
	l->requests++;
	l->bytes += q->len;
}

/* The longest queue ID in sub (names only: cheap), so the columns fit. */
static void
widest_id(const char *qdir, const char *sub, int *w)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", qdir, sub);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)))
		if (pt_qid_valid(e->d_name) && (int)strlen(e->d_name) + 1 > *w)
			*w = (int)strlen(e->d_name) + 1;
	closedir(d);
}

static void
list_dir(const char *qdir, const char *sub, struct listing *l)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", qdir, sub);
	DIR *d = opendir(path);
	if (!d && errno == ENOENT)
		return; /* the server has not made its queue yet: nothing queued */
	if (!d) {
		fprintf(stderr, "postern queue: cannot read %s: %s\n", path, strerror(errno));
		l->errors++;
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!pt_qid_valid(e->d_name))
			continue;
		struct pt_qfile q;
		char err[256];
		int rc = pt_qfile_load(qdir, sub, e->d_name, &q, err, sizeof err);
		if (rc == -1 && errno == ENOENT)
			continue; /* delivered while we looked */
		if (rc != 0) {
			printf("%-*s (unreadable: %s)\n\n", l->idw, e->d_name, err);
			continue;
		}
		print_entry(&q, strcmp(sub, PT_QDIR_ACTIVE) == 0, l);
		pt_qfile_free(&q);
	}
	closedir(d);
}

static int
queue_list(const char *qdir)
{
	struct listing l = { 0 };
	l.idw = 10;                   /* "-Queue ID-" */
	widest_id(qdir, PT_QDIR_ACTIVE, &l.idw);
	widest_id(qdir, PT_QDIR_DEFERRED, &l.idw);
	/* Header first, like mailq; an empty queue says so instead. */
	char *buf = NULL;
	size_t blen = 0;
	FILE *mem = open_memstream(&buf, &blen);
	if (!mem)
		return 1;
	FILE *saved = stdout;
	stdout = mem;
	list_dir(qdir, PT_QDIR_ACTIVE, &l);
	list_dir(qdir, PT_QDIR_DEFERRED, &l);
	fflush(mem);
	stdout = saved;
	fclose(mem);
	if (l.requests == 0) {
		if (!l.errors)
			printf("Mail queue is empty\n");
	} else {
		printf("-Queue ID-%.*s --Size-- ----Arrival Time---- -Sender/Recipient-------\n",
		       l.idw - 10, "----------------------");
		fputs(buf, stdout);
		printf("-- %llu Kbytes in %zu Request%s.\n", (l.bytes + 1023) / 1024, l.requests,
		       l.requests == 1 ? "" : "s");
	}
	free(buf);
	return l.errors ? 1 : 0;
}

static int
queue_delete(const char *qdir, const char *id)
{
	if (!pt_qid_valid(id)) {
		fprintf(stderr, "postern queue: invalid queue id \"%s\"\n", id);
		return 2;
	}
	const char *subs[] = { PT_QDIR_ACTIVE, PT_QDIR_DEFERRED };
	int found = 0;
	for (size_t i = 0; i < 2; i++) {
		if (pt_qfile_remove(qdir, subs[i], id) == 0)
			found = 1;
		else if (errno != ENOENT) {
			fprintf(stderr, "postern queue: cannot remove %s/%s: %s\n", subs[i], id, strerror(errno));
			return 1;
		}
	}
	if (!found) {
		fprintf(stderr, "postern queue: %s: no such message in the queue\n", id);
		return 1;
	}
	printf("postern queue: %s: removed\n", id);
	return 0;
}

int
pt_cmd_queue(const char *conf, int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "postern queue: usage: postern queue list | flush | delete ID\n");
		return 2;
	}
	const char *sub = argv[1];
	int want = strcmp(sub, "delete") == 0 ? 3 : 2;
	if (strcmp(sub, "list") != 0 && strcmp(sub, "flush") != 0 && strcmp(sub, "delete") != 0) {
		fprintf(stderr, "postern queue: unknown command \"%s\" (use list, flush or delete ID)\n", sub);
		return 2;
	}
	if (argc != want) {
		fprintf(stderr, "postern queue: usage: postern queue %s\n", want == 3 ? "delete ID" : sub);
		return 2;
	}
	if (strcmp(sub, "flush") == 0)
		return pt_cmd_signal(conf, SIGUSR2);
	struct pt_config *c = load(conf);
	if (!c)
		return 1;
	char qdir[PATH_MAX];
	snprintf(qdir, sizeof qdir, "%s", pt_conf_str(c, "queue_directory"));
	pt_config_free(c);
	return strcmp(sub, "list") == 0 ? queue_list(qdir) : queue_delete(qdir, argv[2]);
}
