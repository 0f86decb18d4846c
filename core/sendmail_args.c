/* The sendmail command line (the flags cron, mailx and scripts use) and
 * the clean-up of a locally submitted message: line ends, the lone-dot
 * terminator, Bcc removal, -t recipients, missing From/Date/Message-Id. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/header.h"
#include "postern/strbuf.h"
#include "sendmail.h"

static int __attribute__((format(printf, 2, 3)))
usage_error(struct pt_sm_opts *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(o->err, sizeof o->err, fmt, ap);
	va_end(ap);
	return PT_EX_USAGE;
}

static int
push(char ***v, size_t *n, const char *s, size_t len)
{
	char **nv = realloc(*v, (*n + 1) * sizeof *nv);
	if (!nv)
		return -1;
	*v = nv;
	nv[*n] = strndup(s, len);
	if (!nv[*n])
		return -1;
	(*n)++;
	return 0;
}

/* Recipients on the command line may be comma-separated lists. */
static int
add_rcpt_arg(struct pt_sm_opts *o, const char *arg)
{
	return pt_sendmail_parse_addresses(arg, &o->rcpt, &o->nrcpt);
}

int
pt_sendmail_parse(int argc, char **argv, struct pt_sm_opts *o)
{
	memset(o, 0, sizeof *o);
	for (int i = 1; i < argc; i++)
		if (strpbrk(argv[i], "\r\n"))
			return usage_error(o, "illegal character (CR or LF) in argument %d", i);
	int i = 1;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (a[0] != '-' || a[1] == 0)
			break;
		/* getopt-style: flags may be grouped, a value is the rest of the
		 * word or the next word (-f addr, -faddr, -FCronDaemon). */
		for (const char *p = a + 1; *p; p++) {
			char c = *p;
			const char *val = NULL;
			if (strchr("BCFNRVXfrhLoObeAqd", c)) {
				if (p[1]) {
					val = p + 1;
				} else if (c == 'q') {
					val = "";
				} else if (i + 1 < argc) {
					val = argv[++i];
				} else {
					return usage_error(o, "option -%c requires a value", c);
				}
			}
			switch (c) {
			case 't':
				o->extract = 1;
				break;
			case 'i':
				o->ignore_dots = 1;
				break;
			case 'v':
				o->verbose = 1;
				break;
			case 'n': case 'm': case 'U': case 'G': case '8':
				break;
			case 'f': case 'r':
				o->sender = val;
				break;
			case 'F':
				o->fullname = val;
				break;
			case 'C':
				o->conf = val;
				break;
			case 'B':
				if (strcasecmp(val, "8BITMIME") != 0 && strcasecmp(val, "7BIT") != 0)
					return usage_error(o, "-B: unknown body type %s", val);
				o->body = val;
				break;
			case 'N':
				o->notify = val;
				break;
			case 'R':
				o->ret = val;
				break;
			case 'V':
				o->envid = val;
				break;
			case 'o':
				/* -oi is -i; -oem, -odi, -oXvalue: sendmail options
				 * that do not apply here. */
				if (strcmp(val, "i") == 0)
					o->ignore_dots = 1;
				break;
			case 'e': case 'd': case 'X': case 'h': case 'L': case 'O': case 'A':
				break;
			case 'q':
				o->mode = PT_SM_FLUSH;
				break;
			case 'b':
				switch (val[0]) {
				case 'm':
					o->mode = PT_SM_DELIVER;
					break;
				case 's':
					o->mode = PT_SM_SMTP;
					break;
				case 'p':
					o->mode = PT_SM_MAILQ;
					break;
				case 'i':
					o->mode = PT_SM_NEWALIASES;
					break;
				case 'd':
					return usage_error(o, "-bd: daemon mode is `postern run`");
				default:
					return usage_error(o, "-b%s: unsupported mode", val);
				}
				if (val[0] && val[1])
					return usage_error(o, "-b%s: unsupported mode", val);
				break;
			default:
				return usage_error(o, "unknown option -%c", c);
			}
			if (val)
				break;
		}
	}
	for (; i < argc; i++)
		if (add_rcpt_arg(o, argv[i]) != 0)
			return usage_error(o, "out of memory");
	return 0;
}

void
pt_sendmail_opts_free(struct pt_sm_opts *o)
{
	for (size_t i = 0; i < o->nrcpt; i++)
		free(o->rcpt[i]);
	free(o->rcpt);
	o->rcpt = NULL;
	o->nrcpt = 0;
}

/* ---------- address lists ---------- */

static void
trim(const char **s, size_t *n)
{
	while (*n && isspace((unsigned char)**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n && isspace((unsigned char)(*s)[*n - 1]))
		(*n)--;
}

int
pt_sendmail_parse_addresses(const char *value, char ***v, size_t *n)
{
	size_t cap = strlen(value) + 1;
	char *plain = malloc(cap), *angle = malloc(cap);
	size_t np = 0, na = 0;
	int quote = 0, comment = 0, in_angle = 0, have_angle = 0, rc = 0;
	if (!plain || !angle) {
		free(plain);
		free(angle);
		return -1;
	}
	for (const char *p = value;; p++) {
		char c = *p;
		if (c == 0 || (!quote && !comment && !in_angle && (c == ',' || c == ';'))) {
			const char *s = have_angle ? angle : plain;
			size_t len = have_angle ? na : np;
			trim(&s, &len);
			/* Source routes <@a,@b:user@x>: only the mailbox counts. */
			if (have_angle && len && s[0] == '@') {
				const char *colon = memchr(s, ':', len);
				if (colon) {
					len -= (size_t)(colon + 1 - s);
					s = colon + 1;
				}
			}
			if (len && push(v, n, s, len) != 0) {
				rc = -1;
				break;
			}
			np = na = 0;
			have_angle = 0;
			if (c == 0)
				break;
			continue;
		}
		if (comment) {
			if (c == '\\' && p[1])
				p++;
			else if (c == '(')
				comment++;
			else if (c == ')')
				comment--;
			continue;
		}
		if (quote) {
			if (c == '\\' && p[1]) {
				(in_angle ? angle : plain)[in_angle ? na++ : np++] = c;
				c = *++p;
			} else if (c == '"') {
				quote = 0;
			}
			(in_angle ? angle : plain)[in_angle ? na++ : np++] = c;
			continue;
		}
		if (c == '"') {
			quote = 1;
			(in_angle ? angle : plain)[in_angle ? na++ : np++] = c;
		} else if (c == '(') {
			comment = 1;
		} else if (c == '<' && !in_angle) {
			in_angle = 1;
			have_angle = 1;
			na = 0;
		} else if (c == '>' && in_angle) {
			in_angle = 0;
		} else if (c == ':' && !in_angle) {
			/* "group:" opens a group: its name is not an address. */
			np = 0;
		} else if (in_angle) {
			angle[na++] = c;
		} else {
			plain[np++] = c;
		}
	}
	free(plain);
	free(angle);
	return rc;
}

/* ---------- message preparation ---------- */

/* A display name goes in a quoted string when it has specials. */
static void
put_display_name(struct pt_strbuf *o, const char *name)
{
	int special = strpbrk(name, "()<>[]:;@\\,.\"") != NULL;
	if (!special) {
		pt_strbuf_puts(o, name);
		return;
	}
	pt_strbuf_put(o, "\"", 1);
	for (const char *p = name; *p; p++) {
		if (*p == '"' || *p == '\\')
			pt_strbuf_put(o, "\\", 1);
		pt_strbuf_put(o, p, 1);
	}
	pt_strbuf_put(o, "\"", 1);
}

char *
pt_sendmail_prepare(const char *in, size_t len, const struct pt_sm_prep *p, size_t *outlen,
                    char ***rcpt, size_t *nrcpt)
{
	/* 1. Line ends and the terminator. */
	struct pt_strbuf t = { 0 };
	pt_strbuf_put(&t, "", 0);
	size_t pos = 0;
	int first = 1;
	while (pos < len) {
		const char *nl = memchr(in + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - in) : len;
		size_t l = end - pos;
		if (l && in[pos + l - 1] == '\r')
			l--;
		if (!p->ignore_dots && l == 1 && in[pos] == '.')
			break;
		if (!(first && l >= 5 && memcmp(in + pos, "From ", 5) == 0)) {
			pt_strbuf_put(&t, in + pos, l);
			pt_strbuf_put(&t, "\n", 1);
		}
		first = 0;
		pos = nl ? end + 1 : len;
	}
	if (t.oom) {
		free(t.p);
		return NULL;
	}

	/* 2. Headers: keep, drop Bcc, note what exists, collect -t addresses. */
	struct pt_strbuf o = { 0 };
	int have_from = 0, have_date = 0, have_msgid = 0;
	struct pt_hdr_iter it;
	struct pt_hdr_field f;
	pt_hdr_iter_init(&it, t.p, t.len, 1);
	while (pt_hdr_next(&it, &f)) {
		int is_bcc = pt_hdr_name_is(&f, "bcc");
		int is_to = pt_hdr_name_is(&f, "to") || pt_hdr_name_is(&f, "cc");
		have_from |= pt_hdr_name_is(&f, "from");
		have_date |= pt_hdr_name_is(&f, "date");
		have_msgid |= pt_hdr_name_is(&f, "message-id");
		if (p->extract && (is_bcc || is_to)) {
			char *val = strndup(f.value, f.value_len);
			if (!val || pt_sendmail_parse_addresses(val, rcpt, nrcpt) != 0)
				o.oom = 1;
			free(val);
		}
		if (!is_bcc)
			pt_strbuf_put(&o, f.raw, f.raw_len);
	}
	const char *s = t.p + pt_hdr_section_len(&it), *e = t.p + t.len;
	if (!have_from && p->from_addr) {
		pt_strbuf_puts(&o, "From: ");
		if (p->fullname && p->fullname[0]) {
			put_display_name(&o, p->fullname);
			pt_strbuf_puts(&o, " <");
			pt_strbuf_puts(&o, p->from_addr);
			pt_strbuf_puts(&o, ">\n");
		} else {
			pt_strbuf_puts(&o, p->from_addr);
			pt_strbuf_puts(&o, "\n");
		}
	}
	if (!have_date) {
		char date[64];
		struct tm tm;
		localtime_r(&p->now, &tm);
		strftime(date, sizeof date, "Date: %a, %d %b %Y %H:%M:%S %z (%Z)\n", &tm);
		pt_strbuf_puts(&o, date);
	}
	if (!have_msgid) {
		char id[512];
		snprintf(id, sizeof id, "Message-Id: <%s@%s>\n", p->msgid_local ? p->msgid_local : "local",
		         p->myhostname ? p->myhostname : "localhost");
		pt_strbuf_puts(&o, id);
	}
	/* 3. Body: after the empty line, or from the first non-header line
	 * (which then needs the empty line put in front of it). */
	if (s < e && *s == '\n') {
		pt_strbuf_put(&o, s, (size_t)(e - s));
	} else {
		pt_strbuf_put(&o, "\n", 1);
		pt_strbuf_put(&o, s, (size_t)(e - s));
	}
	free(t.p);
	if (o.oom) {
		free(o.p);
		return NULL;
	}
	*outlen = o.len;
	return o.p;
}
