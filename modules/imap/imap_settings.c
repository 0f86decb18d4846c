/* The imap module's live settings (filled by module.c from the config);
 * the defaults here serve unit tests and fuzzers that load no config. */
#include "imap.h"

struct imap_settings imap_set = {
	.conf = NULL,
	.max_line = 65536,
	.max_literal = 50u * 1024 * 1024,
	.idle_notify_ms = 120000,
	.idle_inotify = 1,
	.login_timeout_ms = 60000,
	.autologout_ms = 1800000,
};
