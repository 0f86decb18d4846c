/* QUOTA (RFC 9208) with the STORAGE resource: GETQUOTAROOT, GETQUOTA,
 * SETQUOTA (refused: the limit is mailbox_size_limit, the administrator's).
 * The store enforces mailbox_size_limit on each folder's file alone, so
 * each folder is its own quota root, named as the folder; without a limit
 * a folder has no quota root. Usage and limit go out in units of 1024
 * octets: usage rounded up, the limit down, so a client never believes
 * there is room the store would refuse. */
#include <stdlib.h>
#include <string.h>

#include "imap.h"
#include "imap_msg.h"


/* "* QUOTA root (STORAGE used limit)" */
static void
send_quota(struct imap_session *s, const char *root, uint64_t used, uint64_t limit)
{
	struct pt_strbuf b = { 0 };

	pt_strbuf_puts(&b, "QUOTA ");
	imap_append_mailbox_name(&b, root);
	pt_strbuf_printf(&b, " (STORAGE %llu %llu)", (unsigned long long)((used + 1023) / 1024),
	                 (unsigned long long)(limit / 1024));
	if (!b.oom)
		imap_untagged(s, "%s", b.p);
	pt_strbuf_free(&b);
}

static int
quota_of(struct imap_session *s, const char *name, uint64_t *used, uint64_t *limit, struct pt_status *st)
{
	if (s->mbx->quota == NULL) {
		*used = *limit = 0;
		return 0;
	}
	return s->mbx->quota(s->ms, name, used, limit, st);
}

void
imap_cmd_getquotaroot(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	struct pt_status st = { 0 };
	uint64_t used = 0, limit = 0;

	(void)uid;
	if (n != 1 || !imap_arg_is_string(&a[0])) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command GETQUOTAROOT: Invalid arguments.");
		return;
	}
	char *name = imap_mailbox_arg(&a[0]);
	if (name == NULL) {
		imap_mailbox_invalid(s, tag, "GETQUOTAROOT", &a[0]);
		return;
	}
	if (quota_of(s, name, &used, &limit, &st) != 0) {
		free(name);
		imap_store_error(s, tag, &st);
		return;
	}
	struct pt_strbuf b = { 0 };
	pt_strbuf_puts(&b, "QUOTAROOT ");
	imap_append_mailbox_name(&b, name);
	if (limit > 0) {
		pt_strbuf_puts(&b, " ");
		imap_append_mailbox_name(&b, name);
	}
	if (!b.oom)
		imap_untagged(s, "%s", b.p);
	pt_strbuf_free(&b);
	if (limit > 0)
		send_quota(s, name, used, limit);
	free(name);
	imap_sync(s, 1);
	imap_completed(s, tag, NULL, "Getquotaroot");
}

void
imap_cmd_getquota(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	struct pt_status st = { 0 };
	uint64_t used = 0, limit = 0;

	(void)uid;
	if (n != 1 || !imap_arg_is_string(&a[0])) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command GETQUOTA: Invalid arguments.");
		return;
	}
	/* A root is named as its folder: any other name is no root. */
	char *name = imap_mailbox_arg(&a[0]);
	if (name == NULL || quota_of(s, name, &used, &limit, &st) != 0 || limit == 0) {
		free(name);
		imap_tagged(s, tag, "NO", "[NONEXISTENT] Quota root does not exist");
		return;
	}
	send_quota(s, name, used, limit);
	free(name);
	imap_sync(s, 1);
	imap_completed(s, tag, NULL, "Getquota");
}

/* SETQUOTA root (RESOURCE LIMIT ...): QUOTASET is not advertised; the
 * syntax is still checked so a malformed command gets BAD as elsewhere. */
void
imap_cmd_setquota(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	(void)uid;
	if (n != 2 || !imap_arg_is_string(&a[0]) || a[1].type != IMAP_ARG_LIST) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command SETQUOTA: Invalid arguments.");
		return;
	}
	imap_tagged(s, tag, "NO", "[NOPERM] Quota can be changed only by the administrator (mailbox_size_limit)");
}
