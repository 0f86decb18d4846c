/* The mbox module's descriptor: its parameters, the mail_location check,
 * and the mailstore service it registers for local delivery. */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/log.h"
#include "postern/mailbox.h"
#include "postern/module.h"
#include "postern/services.h"
#include "mbox.h"

static const struct pt_param mbox_params[] = {
	{ "mail_location", PT_STR, "mbox:~/mail:INBOX=/var/mail/%u", NULL,
	  "where mail is stored: mbox:ROOT[:INBOX=PATH] with %u %n %d %h ~", 0, 0 },
	{ "mailbox_size_limit", PT_SIZE, "51200000", NULL,
	  "largest size an mbox may grow to by delivery (0 = no limit)", 0, 0 },
	{ "mbox_lock_timeout", PT_TIME, "10s", NULL,
	  "how long delivery waits for the fcntl lock and the dotlock", 0, 86400 },
	{ "mbox_dotlock_stale_time", PT_TIME, "300s", NULL,
	  "a dotlock older than this is considered left by a dead process and removed (one whose recorded pid is dead on this host goes at once)", 0, 0 },
	{ "mbox_header_cache", PT_BOOL, "yes", NULL,
	  "keep the header fields IMAP reads most (ENVELOPE, SEARCH FROM/SUBJECT/HEADER, SORT, THREAD) in a cache file beside each folder's index (no: read them from the mbox every time)", 0, 0 },
	{ "mbox_flag_fsync", PT_BOOL, "no", NULL,
	  "fdatasync the flag log at every flag change (STORE, POP3 QUIT) so it survives a power loss too; without it a change survives a crash of Postern, not of the machine (as Dovecot's mail_fsync=optimized)", 0, 0 },
	{ "mbox_rewrite_copy_below", PT_SIZE, "64M", NULL,
	  "a rewrite of an mbox (X-UIDs at the first SELECT, flags written back) whose text only moves up and that spans at least this many bytes is done in place from a small journal: half the writes of the full recovery copy smaller ones keep. Both survive a crash of Postern, kill -9, a full disk and a power loss (the in-place rewrite syncs before it overwrites text not yet safely moved). Set it above the largest mbox to always copy", 0, 0 },
	{ 0 },
};

static const struct pt_mailstore_ops mbox_ops = { mbox_deliver };

/* mail_privileged_group names the group allowed to write the spool
 * directory (Debian: mail); a number is taken as a gid. */
static gid_t
privileged_gid(const char *name)
{
	if (name == NULL || *name == '\0')
		return (gid_t)-1;
	char *end;
	errno = 0;
	unsigned long v = strtoul(name, &end, 10);
	if (*end == '\0' && errno == 0)
		return (gid_t)v;
	struct group gr, *res = NULL;
	char buf[4096];
	if (getgrnam_r(name, &gr, buf, sizeof buf, &res) != 0 || res == NULL) {
		pt_warn("mail_privileged_group %s: no such group; dotlocks use the user's rights only",
		        name);
		return (gid_t)-1;
	}
	return gr.gr_gid;
}

static int
mbox_configure(struct pt_ctx *ctx)
{
	const struct pt_config *c = ctx->conf;
	struct mbox_settings s = {
		.mail_location = pt_conf_str(c, "mail_location"),
		.size_limit = (off_t)pt_conf_int(c, "mailbox_size_limit"),
		.lock_timeout_ms = (unsigned)pt_conf_int(c, "mbox_lock_timeout") * 1000u,
		.dotlock_stale_s = (unsigned)pt_conf_int(c, "mbox_dotlock_stale_time"),
		.flag_fsync = pt_conf_bool(c, "mbox_flag_fsync"),
		.rewrite_copy_below = (off_t)pt_conf_int(c, "mbox_rewrite_copy_below"),
		.priv_gid = privileged_gid(pt_conf_str(c, "mail_privileged_group")),
	};
	char err[256];
	if (mbox_location_check(s.mail_location, err, sizeof err) != 0) {
		pt_error("mail_location: %s", err);
		return -1;
	}
	mbox_settings_install(&s);
	mbox_store_settings_install(&s);
	mbox_header_cache_enable(pt_conf_bool(c, "mbox_header_cache"));
	return 0;
}

static int
mbox_init(struct pt_ctx *ctx)
{
	if (mbox_configure(ctx) != 0)
		return -1;
	if (pt_service_register(PT_SVC_MAILSTORE, &mbox_ops) != 0)
		return -1;
	/* IMAP/POP3 use it in the per-user mail process. */
	return pt_service_register(PT_SVC_MAILBOX, &mbox_store_ops);
}

static int
mbox_check(const struct pt_config *conf)
{
	char err[256];
	int rc = 0;
	if (mbox_location_check(pt_conf_str(conf, "mail_location"), err, sizeof err) != 0) {
		pt_conf_error(conf, "mail_location", "mail_location: %s", err);
		rc = -1;
	}
	/* Postfix's local(8) refuses to start on this; a warning is enough to
	 * explain the bounces (mail between the two sizes is accepted, then
	 * cannot be delivered). */
	long long mbox_limit = pt_conf_int(conf, "mailbox_size_limit");
	long long msg_limit = pt_conf_int(conf, "message_size_limit");
	if (mbox_limit != 0 && (msg_limit == 0 || mbox_limit < msg_limit)) {
		char msg[32] = "no limit";
		if (msg_limit != 0)
			snprintf(msg, sizeof msg, "%lld", msg_limit);
		pt_warn("%s:%d: mailbox_size_limit is smaller than message_size_limit (%lld < %s): "
		        "larger messages are accepted, then bounced", pt_conf_file(conf),
		        pt_conf_line(conf, "mailbox_size_limit"), mbox_limit, msg);
	}
	return rc;
}

/* Delivery into mailboxes, and the mailboxes themselves (IMAP, POP3). */
static const char *const mbox_provides[] = { PT_SVC_MAILSTORE, PT_SVC_MAILBOX, NULL };

POSTERN_MODULE_EXPORT const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "mbox",
	.depends = NULL,
	.params = mbox_params,
	.listeners = NULL,
	/* Appends in the delivery agent, the mailbox in mail processes. */
	.roles = PT_ROLE_DELIVERY | PT_ROLE_MAIL,
	.init = mbox_init,
	.stop = NULL,
	.check = mbox_check,
	.provides = mbox_provides,
};
