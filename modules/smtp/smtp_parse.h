/* SMTP command-line parsing: verbs, RFC 5321 paths, ESMTP MAIL/RCPT/BDAT
 * parameters. Pure functions over a line (no I/O, no allocation). */
#ifndef SMTP_PARSE_H
#define SMTP_PARSE_H

#include <stddef.h>

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO, SMTP_VERB_EHLO, SMTP_VERB_MAIL, SMTP_VERB_RCPT,
	SMTP_VERB_DATA, SMTP_VERB_BDAT, SMTP_VERB_RSET, SMTP_VERB_NOOP,
	SMTP_VERB_QUIT, SMTP_VERB_VRFY, SMTP_VERB_HELP, SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH, SMTP_VERB_ETRN, SMTP_VERB_EXPN, SMTP_VERB_XCLIENT,
	SMTP_VERB_COUNT
};

/* Lower-case name for the disconnect counters ("ehlo", "mail", ...). */
const char *smtp_verb_name(enum smtp_verb v);

struct smtp_cmd {
	enum smtp_verb verb;
	const char *arg;       /* after the verb and its spaces; "" if none */
	size_t arglen;         /* trailing white space removed */
};

/* Split a command line (without its line ending). Verbs are
 * case-insensitive; a verb must be followed by a space or the end. */
void smtp_parse_command(const char *line, size_t len, struct smtp_cmd *out);

/* RFC 5321 limit for a path (with the angle brackets): 256 octets. */
#define SMTP_PATH_MAX 256

struct smtp_path {
	char addr[SMTP_PATH_MAX + 1];  /* "local@domain" as given, "" for <> */
	size_t addrlen;
	size_t local_len;              /* bytes of addr before the '@' */
	int has_domain;
	int is_null;                   /* <> */
	int utf8;                      /* contains non-ASCII (needs SMTPUTF8) */
	int literal;                   /* domain is an [address-literal] */
};

/* Parse the text after "MAIL FROM:" / "RCPT TO:" (spaces after the colon
 * are tolerated as Postfix does). On success, *rest points at the ESMTP
 * parameters (spaces skipped) and 0 is returned; -1 on bad syntax.
 * allow_null: <> is valid (reverse-path). An address without angle
 * brackets is accepted when it has no spaces (strict_rfc821_envelopes=no). */
int smtp_parse_path(const char *s, size_t len, int allow_null, struct smtp_path *out,
                    const char **rest, size_t *restlen);

/* Unquote a local part ("a b"@x -> a b) into out, lower-cased when fold.
 * Returns the length, or -1 when it does not fit. */
int smtp_path_local(const struct smtp_path *p, char *out, size_t outlen, int fold);
/* Domain part, or "" without one. */
const char *smtp_path_domain(const struct smtp_path *p);

/* MAIL FROM parameters. */
enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };
struct smtp_mail_params {
	unsigned long long size;       /* SIZE=, 0 when absent */
	int has_size;
	enum smtp_body body;
	int smtputf8;
	char bad[64];                  /* the offending parameter, for replies */
};
enum smtp_param_result {
	SMTP_PARAM_OK = 0,
	SMTP_PARAM_UNSUPPORTED,        /* 555 5.5.4 Unsupported option: X */
	SMTP_PARAM_BAD_SIZE,           /* 501 5.5.4 Bad message size syntax */
	SMTP_PARAM_SYNTAX,             /* 501 5.5.4 Syntax error in parameters */
};
enum smtp_param_result smtp_parse_mail_params(const char *s, size_t len, struct smtp_mail_params *out);
/* RCPT TO parameters: none are supported (no DSN), so any is 555. */
enum smtp_param_result smtp_parse_rcpt_params(const char *s, size_t len, char *bad, size_t badlen);

/* "BDAT count [LAST]": 0 ok, -1 syntax. */
int smtp_parse_bdat(const char *s, size_t len, unsigned long long *count, int *last);

/* A HELO/EHLO argument we keep: printable ASCII (or UTF-8), no spaces. The
 * first word is taken (Postfix does); returns its length or 0 if empty. */
size_t smtp_parse_helo(const char *s, size_t len, const char **word);

/* UTF-8 well-formedness of a byte string (no overlongs, no surrogates). */
int smtp_utf8_valid(const unsigned char *s, size_t len);

#endif
