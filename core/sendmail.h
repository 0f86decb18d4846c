/* Core-internal: the sendmail command line and local message preparation
 * (core/sendmail_args.c), used by core/sendmail.c and its tests. */
#ifndef POSTERN_SENDMAIL_H
#define POSTERN_SENDMAIL_H

#include <stddef.h>
#include <time.h>

/* sysexits.h values the callers (cron, mailx, scripts) understand. */
#define PT_EX_OK 0
#define PT_EX_USAGE 64
#define PT_EX_DATAERR 65
#define PT_EX_NOUSER 67
#define PT_EX_UNAVAILABLE 69
#define PT_EX_SOFTWARE 70
#define PT_EX_CANTCREAT 73
#define PT_EX_IOERR 74
#define PT_EX_TEMPFAIL 75

enum pt_sm_mode { PT_SM_DELIVER = 0, PT_SM_SMTP, PT_SM_MAILQ, PT_SM_NEWALIASES, PT_SM_FLUSH };

struct pt_sm_opts {
	enum pt_sm_mode mode;
	int extract;                  /* -t */
	int ignore_dots;              /* -i, -oi */
	const char *sender;           /* -f / -r ADDR, NULL = invoking user */
	const char *fullname;         /* -F NAME */
	const char *conf;             /* -C FILE */
	const char *body;             /* -B 8BITMIME / 7BIT */
	const char *notify, *ret, *envid; /* -N, -R, -V */
	int verbose;                  /* -v */
	char **rcpt;                  /* recipients from arguments (split at commas) */
	size_t nrcpt;
	char err[256];
};

/* Parse argv (argv[0] is the program or verb name). 0, or PT_EX_USAGE with
 * a one-line reason in o->err (also for CR or LF in any argument). */
int pt_sendmail_parse(int argc, char **argv, struct pt_sm_opts *o);
void pt_sendmail_opts_free(struct pt_sm_opts *o);

/* Append the addresses of an address-list header value ("A <a@x>, b@y
 * (c), group: d@z;") to *v. 0 or -1 (out of memory). */
int pt_sendmail_parse_addresses(const char *value, char ***v, size_t *n);

struct pt_sm_prep {
	const char *from_addr;        /* envelope sender, for a missing From: */
	const char *fullname;         /* -F or the passwd name, may be NULL */
	const char *myhostname;       /* Message-Id domain */
	const char *msgid_local;      /* left side of a new Message-Id */
	time_t now;
	int ignore_dots;              /* 0: a line "." ends the message */
	int extract;                  /* collect To/Cc/Bcc addresses */
};

/* Turn what the user typed into the message we queue: CRLF -> LF, cut at
 * a lone "." unless ignore_dots, drop a leading mbox "From " line, remove
 * Bcc:, add From:/Date:/Message-Id: when missing. With extract, the To,
 * Cc and Bcc addresses are appended to *rcpt. Returns malloc'd text. */
char *pt_sendmail_prepare(const char *in, size_t len, const struct pt_sm_prep *p, size_t *outlen,
                          char ***rcpt, size_t *nrcpt);

#endif
