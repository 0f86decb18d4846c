/* libFuzzer target: SEARCH. The input is a query (words, "strings",
 * parenthesised lists) then a NUL then a message; the query is compiled
 * and matched against the message with flags taken from the input. Dates
 * are parsed from the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_msg.h"

static void
args_free(struct imap_arg *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)a[i].s);
		if (a[i].type == IMAP_ARG_LIST)
			args_free(a[i].list, a[i].n);
	}
	free(a);
}

static char *
dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d != NULL) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* What the command reader would hand over, roughly: bounded depth. */
static size_t
build(const char *s, size_t len, size_t *p, int depth, struct imap_arg **out)
{
	struct imap_arg *a = NULL;
	size_t n = 0;
	while (*p < len) {
		char c = s[*p];
		if (c == ' ') {
			(*p)++;
			continue;
		}
		if (c == ')') {
			(*p)++;
			break;
		}
		struct imap_arg *na = realloc(a, (n + 1) * sizeof *a);
		if (na == NULL)
			break;
		a = na;
		struct imap_arg *x = &a[n++];
		memset(x, 0, sizeof *x);
		if (c == '(' && depth < 100) {
			(*p)++;
			x->type = IMAP_ARG_LIST;
			x->n = build(s, len, p, depth + 1, &x->list);
		} else if (c == '"') {
			size_t st = ++*p;
			while (*p < len && s[*p] != '"')
				(*p)++;
			x->type = IMAP_ARG_STRING;
			x->len = *p - st;
			x->s = dup_n(s + st, x->len);
			if (*p < len)
				(*p)++;
		} else {
			size_t st = *p;
			while (*p < len && s[*p] != ' ' && s[*p] != '(' && s[*p] != ')')
				(*p)++;
			if (*p == st)
				(*p)++;
			x->type = IMAP_ARG_ATOM;
			x->len = *p - st;
			x->s = dup_n(s + st, x->len);
		}
	}
	*out = a;
	return n;
}

static const struct imap_msg *
load(void *arg)
{
	return arg;
}

static int
keyword_bit(void *arg, const char *name)
{
	(void)arg;
	return (int)(strlen(name) % 70) - 3;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	const char *nul = memchr(s, '\0', size);
	size_t qlen = nul ? (size_t)(nul - s) : size;
	size_t mlen = nul ? size - qlen - 1 : 0;
	char *msg = malloc(mlen ? mlen : 1);
	if (msg == NULL)
		return 0;
	memcpy(msg, nul ? nul + 1 : "", mlen);

	struct imap_arg *args;
	size_t p = 0, n = build(s, qlen, &p, 0, &args);
	char err[128];
	struct imap_search *q = imap_search_parse(args, n, err, sizeof err);
	if (q == NULL && err[0] == '\0')
		abort(); /* a refusal always says why */
	if (q != NULL) {
		struct imap_msg *m = imap_msg_parse(msg, mlen);
		struct pt_msg_info info = { (uint32_t)size, (uint32_t)(size * 7) & 0x3f, size * 31,
			size, (time_t)size * 86399, (int)(size % 1500) - 750, size * 13 };
		struct imap_search_env env = { 5, 100, keyword_bit, NULL, NULL };
		struct imap_search_msg sm = { 3, &info, load, m, NULL };
		int r = imap_search_match(q, &env, &sm);
		if (r != 0 && r != 1)
			abort();
		(void)imap_search_needs_text(q);
		imap_search_free(q);
		imap_msg_free(m);
	}
	args_free(args, n);

	time_t t;
	int tz;
	char *q2 = dup_n(s, qlen);
	if (q2 != NULL) {
		if (imap_datetime_parse(q2, qlen, &t, &tz) == 0) {
			char out[32];
			time_t back;
			int tz2;
			imap_datetime_format(t, tz, out);
			if (imap_datetime_parse(out, strlen(out), &back, &tz2) != 0 || back != t || tz2 != tz)
				abort();
		}
		(void)imap_date_parse(q2, qlen, &t);
		(void)imap_rfc822_date_parse(q2, qlen, &t, &tz);
		free(q2);
	}
	free(msg);
	return 0;
}
