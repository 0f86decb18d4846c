/* Parameters the restrict module owns: Postfix's smtpd_*_restrictions
 * names and defaults (Debian's smtpd_relay_restrictions), and the limits
 * of Lua policies. */
#include <stddef.h>

#include "restrict.h"

const struct pt_param restrict_params[] = {
	{ "smtpd_client_restrictions", PT_LIST, "", NULL,
	  "restrictions on the client's address and name", 0, 0 },
	{ "smtpd_helo_restrictions", PT_LIST, "", NULL,
	  "restrictions on the HELO/EHLO name", 0, 0 },
	{ "smtpd_sender_restrictions", PT_LIST, "", NULL,
	  "restrictions on the MAIL FROM address", 0, 0 },
	{ "smtpd_relay_restrictions", PT_LIST,
	  "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination", NULL,
	  "relay control at RCPT TO, evaluated before smtpd_recipient_restrictions", 0, 0 },
	{ "smtpd_recipient_restrictions", PT_LIST, "", NULL,
	  "restrictions at RCPT TO", 0, 0 },
	{ "smtpd_data_restrictions", PT_LIST, "", NULL,
	  "restrictions at DATA", 0, 0 },
	{ "smtpd_end_of_data_restrictions", PT_LIST, "", NULL,
	  "restrictions after the message content", 0, 0 },
	{ "smtpd_delay_reject", PT_BOOL, "yes", NULL,
	  "report client, HELO and sender rejections at RCPT TO", 0, 0 },
	{ "smtpd_reject_unlisted_recipient", PT_BOOL, "yes", NULL,
	  "reject RCPT TO for unknown users of local domains even without a restriction", 0, 0 },
	{ "smtpd_sender_login_maps", PT_LIST, "", NULL,
	  "owners of sender addresses (address  login[, login]) for reject_*sender_login_mismatch", 0, 0 },
	{ "lua_policy_maps", PT_LIST, "", NULL,
	  "maps postern.map_lookup may query besides the check_*_access and login maps "
	  "(opened with the configuration)", 0, 0 },
	{ "lua_policy_memory_limit", PT_SIZE, "8m", NULL,
	  "memory cap of each check_lua_policy state", 65536, 1LL << 32 },
	{ "lua_policy_instruction_limit", PT_INT, "1000000", NULL,
	  "Lua VM instructions one policy call may run", 1000, 1000000000 },
	{ "lua_policy_time_limit", PT_TIME, "1s", NULL,
	  "wall clock time one policy call may run (DNS waits excluded)", 1, 3600 },
	{ 0 },
};

/* Every restriction list and what decides how they apply: Debian's
 * master.cf gives submission and smtps their own. */
const char *const restrict_listener_params[] = {
	"smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_sender_restrictions",
	"smtpd_relay_restrictions", "smtpd_recipient_restrictions", "smtpd_data_restrictions",
	"smtpd_end_of_data_restrictions", "smtpd_delay_reject", "smtpd_reject_unlisted_recipient",
	"smtpd_sender_login_maps", NULL,
};
