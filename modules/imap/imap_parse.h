/* The IMAP command reader: frames commands out of a byte stream split at
 * any point (lines, {n} and {n+} literals, ~{n} literal8s, limits), then parses a complete
 * command into its tag, name and arguments (imap_arg.h). */
#ifndef POSTERN_IMAP_PARSE_H
#define POSTERN_IMAP_PARSE_H

#include <stddef.h>

#include "postern/strbuf.h"
#include "imap_arg.h"

#define IMAP_ARG_DEPTH_MAX 16     /* nesting of ( ... ) */
#define IMAP_ARGS_MAX 10000       /* arguments in one command, all levels */

struct imap_reader {
	size_t max_line;              /* bytes of command text (literals excluded) */
	size_t max_literal;           /* bytes of one literal */
	struct pt_strbuf buf;         /* the command so far: text, literal data inline */
	size_t line_len;              /* bytes of the current line (text only) */
	size_t lit_left;              /* literal bytes still to come */
	int in_literal;
	int cr;                       /* a CR was the last text byte */
	struct imap_lit { size_t mark, data, len; int lit8; } *lits; /* '{' (or '~') offset, data offset */
	size_t nlits, caplits;
	size_t total;                 /* bytes of literals in this command */
};

enum imap_read {
	IMAP_READ_MORE,               /* everything consumed, no complete command */
	IMAP_READ_COMMAND,            /* a complete command: imap_command_parse() */
	IMAP_READ_CONTINUE,           /* a synchronizing literal: send "+ OK" first */
	IMAP_READ_TOO_LONG,           /* a line beyond max_line: reply BAD and close */
	IMAP_READ_LITERAL_TOO_BIG,    /* {n} beyond max_literal: tagged NO, command dropped */
	IMAP_READ_LITERAL_PLUS_TOO_BIG, /* {n+} beyond max_literal: close (RFC 7888 §4) */
};

struct imap_command {
	char *tag;
	char *name;                   /* as sent; compare case-insensitively */
	struct imap_arg *args;
	size_t nargs;
	char error[128];              /* why parsing failed (BAD text) */
};

void imap_reader_init(struct imap_reader *r, size_t max_line, size_t max_literal);
void imap_reader_free(struct imap_reader *r);
/* Forget the partial command (after TOO_BIG, or after a parsed command). */
void imap_reader_reset(struct imap_reader *r);
/* Whether a command has started (bytes buffered). */
int imap_reader_busy(const struct imap_reader *r);
/* Feed bytes; *used tells how many were taken. Stops at the first event:
 * the caller handles it and feeds the rest. */
enum imap_read imap_reader_feed(struct imap_reader *r, const char *data, size_t len, size_t *used);
/* The tag of the command being read (for replies to a refused literal),
 * copied into out ("*" when there is none yet). */
void imap_reader_tag(const struct imap_reader *r, char *out, size_t outlen);

/* Parse the command framed by the reader (after IMAP_READ_COMMAND). 0 ok;
 * -1 with cmd->error set (cmd->tag and cmd->name may still be set so a
 * BAD can name them; tag NULL when there was none). Resets the reader. */
int imap_command_parse(struct imap_reader *r, struct imap_command *cmd);
void imap_command_free(struct imap_command *cmd);
/* Free an argument array made by the parser. */
void imap_args_free(struct imap_arg *args, size_t n);

#endif
