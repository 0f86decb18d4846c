/* Process titles (Linux). The kernel shows a process's command line by
 * reading the memory that held its argument strings at exec time (from
 * arg_start to arg_end, the environment strings following it), so a title
 * is written over that area; the strings themselves first move to the
 * heap, where argv[], environ[] and program_invocation_name then point,
 * so nothing that reads them later sees the title instead. The comm name
 * (top, pgrep, /proc/PID/status) is set with prctl. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "proctitle.h"

extern char **environ;

static struct {
	char *base;        /* the original argument area (argv[0]) */
	size_t len;        /* its bytes: argument strings + contiguous environment */
	char *argv_nul;    /* the NUL after the last argument: the kernel's arg_end - 1 */
	char *copy;        /* the strings' new home, for the life of the process */
} T;

static int
in_area(const char *p, const char *base, const char *end)
{
	return (uintptr_t)p >= (uintptr_t)base && (uintptr_t)p < (uintptr_t)end;
}

void
pt_proctitle_init(int argc, char **argv)
{
	if (T.base || argc < 1 || argv == NULL || argv[0] == NULL)
		return;
	/* Only the layout exec makes: every string right after the one
	 * before it. Anything else (argv built by a caller, an earlier
	 * rewrite) is left alone, and titles then only set the comm name. */
	char *base = argv[0], *end = base;
	for (int i = 0; i < argc; i++) {
		if (argv[i] != end)
			return;
		end = argv[i] + strlen(argv[i]) + 1;
	}
	char *argv_nul = end - 1;
	for (size_t i = 0; environ && environ[i] && environ[i] == end; i++)
		end = environ[i] + strlen(environ[i]) + 1;
	size_t len = (size_t)(end - base);
	char *copy = malloc(len);
	if (copy == NULL)
		return;
	memcpy(copy, base, len);
	for (int i = 0; i < argc; i++)
		argv[i] = copy + (argv[i] - base);
	for (size_t i = 0; environ && environ[i]; i++)
		if (in_area(environ[i], base, end))
			environ[i] = copy + (environ[i] - base);
	/* glibc keeps argv[0] for err(), error() and syslog's default ident. */
	if (in_area(program_invocation_name, base, end))
		program_invocation_name = copy + (program_invocation_name - base);
	if (in_area(program_invocation_short_name, base, end))
		program_invocation_short_name = copy + (program_invocation_short_name - base);
	T.base = base;
	T.len = len;
	T.argv_nul = argv_nul;
	T.copy = copy;
}

static void
set_title(const char *text)
{
	/* Control bytes (a user name from a passwd-file, say) would reach
	 * the terminal of whoever runs ps. */
	char clean[256];
	size_t n = 0;
	for (; text[n] && n < sizeof clean - 1; n++)
		clean[n] = ((unsigned char)text[n] < 0x20 || text[n] == 0x7f) ? '?' : text[n];
	clean[n] = '\0';

	/* comm: "postern-" and the first word; the kernel keeps 15 bytes.
	 * No space in it: tools split /proc/PID/stat at spaces. */
	char comm[32];
	size_t w = strcspn(clean, " [");
	snprintf(comm, sizeof comm, "postern-%.*s", (int)w, clean);
	prctl(PR_SET_NAME, comm, 0, 0, 0);

	if (T.base == NULL || T.len < 2)
		return;
	char title[300];
	int tl = snprintf(title, sizeof title, "postern: %s", clean);
	size_t k = tl < 0 ? 0 : (size_t)tl;
	if (k > T.len - 1)
		k = T.len - 1;
	memcpy(T.base, title, k);
	memset(T.base + k, 0, T.len - k);
	/* A title that ends before the old last argument's NUL would be
	 * shown followed by NULs up to there (ps: trailing blanks). The
	 * kernel reads the area as one NUL-terminated string instead when
	 * that last byte is not NUL (its rule for setproctitle). */
	if (T.base + k < T.argv_nul)
		*T.argv_nul = '.';
}

void
pt_proctitle_set(const char *fmt, ...)
{
	char text[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	set_title(text);
}

/* ---------- the mail process: who and from where ---------- */

struct session_title {
	struct session_title *next;
	char protocol[16];
	char peer[64];
};

static struct {
	int terse;                    /* verbose_proctitle = no */
	char user[128];
	char last_protocol[16];
	struct session_title *list;
} S;

static void
mail_title(void)
{
	size_t n = 0;
	for (struct session_title *s = S.list; s; s = s->next)
		n++;
	if (S.terse) {
		/* No user, no address: what any local user may see in ps. */
		pt_proctitle_set("%s", n ? S.list->protocol : S.last_protocol[0] ? S.last_protocol : "mail");
		return;
	}
	if (n == 0) {
		pt_proctitle_set("%s [%s]", S.last_protocol[0] ? S.last_protocol : "mail", S.user);
		return;
	}
	if (n == 1) {
		pt_proctitle_set("%s [%s %s]", S.list->protocol, S.user, S.list->peer);
		return;
	}
	/* Several sessions: the protocols among them, each once, in
	 * alphabetical order (the title does not change with who came first). */
	const char *names[8];
	size_t k = 0;
	for (struct session_title *s = S.list; s; s = s->next) {
		size_t i = 0;
		while (i < k && strcmp(names[i], s->protocol) < 0)
			i++;
		if ((i < k && strcmp(names[i], s->protocol) == 0) || k == sizeof names / sizeof names[0])
			continue;
		memmove(names + i + 1, names + i, (k - i) * sizeof names[0]);
		names[i] = s->protocol;
		k++;
	}
	char protos[64] = "";
	for (size_t i = 0; i < k; i++) {
		size_t l = strlen(protos);
		snprintf(protos + l, sizeof protos - l, "%s%s", i ? "+" : "", names[i]);
	}
	pt_proctitle_set("%s [%s, %zu sessions]", protos, S.user, n);
}

void
pt_proctitle_mail_user(const char *user, int verbose)
{
	S.terse = !verbose;
	snprintf(S.user, sizeof S.user, "%s", user ? user : "");
	mail_title();
}

void *
pt_proctitle_session_add(const char *protocol, const char *peer)
{
	struct session_title *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	snprintf(s->protocol, sizeof s->protocol, "%s", protocol ? protocol : "");
	snprintf(s->peer, sizeof s->peer, "%s", peer ? peer : "");
	snprintf(S.last_protocol, sizeof S.last_protocol, "%s", s->protocol);
	s->next = S.list;
	S.list = s;
	mail_title();
	return s;
}

void
pt_proctitle_session_del(void *handle)
{
	if (handle == NULL)
		return;
	for (struct session_title **pp = &S.list; *pp; pp = &(*pp)->next)
		if (*pp == handle) {
			*pp = (*pp)->next;
			free(handle);
			break;
		}
	mail_title();
}
