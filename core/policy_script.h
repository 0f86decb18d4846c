/* Scripted policy sessions for `postern policy test --script FILE`: a
 * file admins keep beside their config and run in CI. Format, one item a
 * line (# comments, blank lines ignored):
 *   client ADDR [NAME]     start a session from ADDR (name default "unknown")
 *   helo NAME              HELO/EHLO argument
 *   sasl USER              the session authenticated as USER ("sasl" alone: not)
 *   mail <ADDR>            MAIL FROM (<> for the null sender)
 *   rcpt <ADDR>            RCPT TO
 *   NNN [text]             expected reply to the command just above: the
 *                          actual reply must start with this line
 * A command without an expected line must not be refused. */
#ifndef POSTERN_POLICY_SCRIPT_H
#define POSTERN_POLICY_SCRIPT_H

#include <stddef.h>

enum pt_pscript_op { PT_PSCRIPT_CLIENT, PT_PSCRIPT_HELO, PT_PSCRIPT_SASL, PT_PSCRIPT_MAIL,
	PT_PSCRIPT_RCPT };

struct pt_pscript_step {
	enum pt_pscript_op op;
	int line;
	char arg[520];                /* address, name (brackets removed) */
	char arg2[256];               /* client: host name */
	int has_expect;
	int expect_line;
	char expect[520];
};

/* Parse a script. 0 with *steps (malloc'd, free()) and *n; -1 with
 * "LINE: reason" in err. */
int pt_policy_script_parse(const char *text, size_t len, struct pt_pscript_step **steps,
                           size_t *n, char *err, size_t errlen);

#endif
