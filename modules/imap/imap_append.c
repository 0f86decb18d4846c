/* APPEND (RFC 3501 §6.3.11) with UIDPLUS's APPENDUID: optional flag list
 * and date-time, the message as a literal (already read by the command
 * reader within imap_max_literal_size); TRYCREATE for a missing folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imap.h"
#include "imap_msg.h"

void
imap_cmd_append(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	struct pt_append msg = { 0 };
	struct pt_status st = { 0 };
	const char *kw[PT_KEYWORDS_MAX];
	size_t nkw = 0, i = 1;

	(void)uid;
	if (n < 2 || n > 4 || !imap_arg_is_string(&a[0])) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command APPEND: Invalid arguments.");
		return;
	}
	if (a[i].type == IMAP_ARG_LIST) {
		for (size_t k = 0; k < a[i].n; k++) {
			const struct imap_arg *f = &a[i].list[k];
			if (f->type != IMAP_ARG_ATOM && f->type != IMAP_ARG_NIL) {
				imap_tagged(s, tag, "BAD", "Error in IMAP command APPEND: Invalid flag.");
				return;
			}
			if (f->s[0] == '\\') {
				uint32_t bit = imap_system_flag(f->s);
				if (bit == 0) {
					imap_tagged(s, tag, "BAD", "Error in IMAP command APPEND: Invalid system flag %s",
					            strcasecmp(f->s, "\\Recent") == 0 ? "\\Recent" : "");
					return;
				}
				msg.flags |= bit;
			} else if (!imap_keyword_valid(f->s, f->len)) {
				imap_tagged(s, tag, "BAD", "Error in IMAP command APPEND: Invalid keyword.");
				return;
			} else if (nkw == PT_KEYWORDS_MAX) {
				imap_tagged(s, tag, "NO", "[LIMIT] Too many keywords (%d max)", PT_KEYWORDS_MAX);
				return;
			} else {
				kw[nkw++] = f->s;
			}
		}
		i++;
	}
	if (i < n && i + 1 < n) {
		time_t t;
		int tz;
		if (a[i].type != IMAP_ARG_STRING || imap_datetime_parse(a[i].s, a[i].len, &t, &tz) != 0) {
			imap_tagged(s, tag, "BAD", "Error in IMAP command APPEND: Invalid arguments.");
			return;
		}
		msg.internal_date = t;
		msg.tz_minutes = tz;
		i++;
	}
	if (i + 1 != n || (a[i].type != IMAP_ARG_LITERAL && a[i].type != IMAP_ARG_STRING)) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command APPEND: Invalid arguments.");
		return;
	}
	if (a[i].len == 0) {
		imap_tagged(s, tag, "NO", "Can't save a zero byte message.");
		return;
	}
	msg.data = a[i].s;
	msg.len = a[i].len;
	msg.keywords = nkw ? kw : NULL;
	msg.nkeywords = nkw;
	char *name = imap_mailbox_arg(&a[0]);
	if (name == NULL) {
		imap_mailbox_invalid(s, tag, "APPEND", &a[0]);
		return;
	}
	uint32_t uidvalidity = 0, newuid = 0;
	if (s->mbx->append(s->ms, name, &msg, 1, &uidvalidity, &newuid, &st) != 0) {
		free(name);
		if (strcmp(st.dsn, "NONEXISTENT") == 0)
			imap_tagged(s, tag, "NO", "[TRYCREATE] %s", st.text[0] ? st.text : "Mailbox doesn't exist");
		else
			imap_store_error(s, tag, &st);
		return;
	}
	free(name);
	char code[64];
	snprintf(code, sizeof(code), "APPENDUID %u %u", uidvalidity, newuid);
	imap_sync(s, 1);
	imap_completed(s, tag, code, "Append");
}
