/* Internal interface of the pop3 module: settings, the command parser and
 * UIDL formatter (pop3_parse.c), the pre-login side in the worker
 * (pop3_login.c) and the post-login side in the user's mail process
 * (pop3_session.c). Shared by the module's files, unit tests and fuzzers. */
#ifndef POP3_H
#define POP3_H

#include <stddef.h>
#include <stdint.h>

#include "postern/config.h"
#include "postern/session.h"

struct pt_conn;
struct pt_listener;

/* RFC 2449 asks for 255 octets per command line; clients send more
 * (long SASL responses), so allow more before calling it abuse. */
#define POP3_LINE_MAX 1024
/* Pre-login commands that fail before the session closes (Dovecot's
 * login processes allow 3), and the same after login (Dovecot: 20). */
#define POP3_LOGIN_BAD_MAX 3
#define POP3_SESSION_BAD_MAX 20
#define POP3_UIDL_MAX 128

struct pop3_settings {
	int refs;
	unsigned login_timeout_ms;
	unsigned autologout_ms;
	int no_flag_updates;
	int plaintext_disabled;    /* disable_plaintext_auth (Dovecot's meaning) */
	long long userip_max;      /* mail_max_userip_connections, for the IN-USE reply */
	char *uidl_format;
	int mech_plain, mech_login;
};

extern const struct pt_param pop3_params[];

struct pop3_settings *pop3_settings_new(const struct pt_config *conf);
struct pop3_settings *pop3_settings_get(void);  /* live, reference taken */
void pop3_settings_put(struct pop3_settings *s);
void pop3_settings_install(struct pop3_settings *s); /* takes the reference */

/* ---- command parsing (pop3_parse.c) ---- */
enum pop3_verb {
	POP3_UNKNOWN = 0,
	POP3_CAPA, POP3_USER, POP3_PASS, POP3_AUTH, POP3_STLS, POP3_QUIT, POP3_APOP,
	POP3_STAT, POP3_LIST, POP3_UIDL, POP3_RETR, POP3_TOP, POP3_DELE, POP3_RSET, POP3_NOOP,
	POP3_LAST,
};

struct pop3_cmd {
	enum pop3_verb verb;
	char name[16];         /* the keyword as sent, upper-cased, cut to fit */
	const char *arg;       /* after the first space; not NUL-terminated */
	size_t arglen;
};

/* Split one command line (without its line end). Keywords are
 * case-insensitive (RFC 1939); a line without a keyword gives
 * POP3_UNKNOWN with an empty name. */
void pop3_parse_command(const char *line, size_t len, struct pop3_cmd *out);

/* pop3_xclient.c: "XCLIENT ADDR=.. PORT=.." from login_trusted_networks.
 * -1 the peer is not trusted (an unknown command then); 0 nothing usable;
 * 1 the conn reports the relayed client's address from now on. */
int pop3_xclient(struct pt_conn *c, const char *arg, size_t arglen, const char *session_id);
const char *pop3_verb_name(enum pop3_verb v);

/* A message number or count argument: digits only, no sign, fits in
 * uint32. Returns 0 with *out, -1 when not a number, -2 when too large. */
int pop3_parse_number(const char *s, size_t len, uint32_t *out);
/* Split arg into at most max space-separated words (empty words between
 * repeated spaces are skipped). Returns the number of words, or max + 1
 * when there are more. */
size_t pop3_split_args(const char *arg, size_t len, const char **w, size_t *wl, size_t max);

/* Dovecot's pop3_uidl_format: %u UID, %v UIDVALIDITY (also %{uid},
 * %{uidvalidity}) in decimal, with an optional zero-pad width and X for
 * hex (lower-case digits, as Dovecot prints them: %08Xu -> 0000001a);
 * %% is a '%'. check: 0 ok, -1 with a
 * reason. format: writes the UIDL (NUL-terminated), returns its length,
 * or (size_t)-1 when the format is bad or out too small. */
int pop3_uidl_format_check(const char *fmt, char *err, size_t errlen);
size_t pop3_uidl_format(const char *fmt, uint32_t uid, uint32_t uidvalidity, char *out, size_t cap);

/* ---- the two sides ---- */
void pop3_login_accept(struct pt_conn *conn, const struct pt_listener *l);
void pop3_session_start(struct pt_conn *c, const struct pt_session_info *info,
                        const struct pt_user *user);

/* Dot-stuffer for RETR/TOP: copies src into dst doubling a '.' that
 * starts a line. *bol says whether the next byte starts a line (kept
 * across calls). Writes at most cap bytes and returns how many of src
 * were used (*outlen: bytes written). */
size_t pop3_dot_stuff(const char *src, size_t len, char *dst, size_t cap, size_t *outlen, int *bol);

/* Where TOP's output ends: the header section plus the first lines body
 * lines of a message of len bytes whose header section is hdr_len. */
size_t pop3_top_end(const char *data, size_t len, size_t hdr_len, uint32_t lines);

#endif
