/* Internals of the restrict module shared by its files (not an ABI: only
 * this module and its unit tests include it). */
#ifndef RESTRICT_H
#define RESTRICT_H

#include <stddef.h>
#include <sys/socket.h>

#include "postern/config.h"
#include "postern/services.h"
#include "postern/strbuf.h"

struct pt_loop;
struct pt_map;

/* snprintf into an array where cutting a long value short is intended
 * (reply lines, trace notes); using the result silences the truncation
 * warning for exactly these calls. */
#define RS_SNPRINTF(buf, ...) ((void)(snprintf((buf), sizeof(buf), __VA_ARGS__) < 0))

/* The parameter table (params.c), declared by module.c and by tests. */
extern const struct pt_param restrict_params[];
/* Those one listener may override (submission.smtpd_relay_restrictions). */
extern const char *const restrict_listener_params[];

/* ---- access(5) actions: action.c ---- */
enum restrict_act {
	RESTRICT_ACT_DUNNO, RESTRICT_ACT_OK, RESTRICT_ACT_REJECT, RESTRICT_ACT_DEFER,
	RESTRICT_ACT_DEFER_IF_REJECT, RESTRICT_ACT_DEFER_IF_PERMIT, RESTRICT_ACT_WARN,
	RESTRICT_ACT_INFO, RESTRICT_ACT_PREPEND, RESTRICT_ACT_HOLD, RESTRICT_ACT_DISCARD,
};
#define RESTRICT_TEXT_MAX 400
struct restrict_action {
	enum restrict_act kind;
	int code;                     /* REJECT/DEFER family: 4NN or 5NN */
	char dsn[12];                 /* "5.7.1"; "" = the class default */
	char text[RESTRICT_TEXT_MAX + 1]; /* reply text / header / log text */
};
/* Parse an access(5) action (what a map or a Lua policy returns). 0, or
 * -1 with a one-line reason in err: the caller then answers 451 4.3.5. */
int restrict_action_parse(const char *s, size_t len, struct restrict_action *out,
                          char *err, size_t errlen);

/* ---- what a reply talks about: one per restriction list ---- */
enum restrict_class { RESTRICT_CLASS_CLIENT, RESTRICT_CLASS_HELO, RESTRICT_CLASS_SENDER,
	RESTRICT_CLASS_RECIPIENT, RESTRICT_CLASS_DATA, RESTRICT_CLASS_EOD };
/* "Client host", "Helo command", "Sender address", ... */
const char *restrict_class_name(enum restrict_class cls);

/* ---- addresses and host names: address.c ---- */
/* Split an envelope address into its (unquoted) local part and domain,
 * dropping an RFC 5321 source route (@a,@b:) and one trailing dot of the
 * domain. The domain is lower-cased. *has_domain tells whether there was
 * an '@'. -1 when it is malformed (unbalanced quotes, too long). */
int restrict_addr_split(const char *addr, char *local, size_t locallen, char *domain,
                        size_t domainlen, int *has_domain);
/* Is this recipient one we may accept from anybody (a final destination
 * or a relay domain), after undoing every sender-specified routing trick
 * (percent hack, bang path, quoted or second '@')? 1 yes, 0 no. */
int restrict_rcpt_is_authorized(const char *addr);
/* Postfix valid_hostname()/valid_hostaddr() for HELO arguments:
 * 0 valid, 1 invalid name, 2 invalid address literal. */
int restrict_helo_invalid(const char *helo);
/* Fully qualified: a valid name with a dot, or an address literal. */
int restrict_helo_fqdn(const char *helo);
/* An address's domain has a dot and a valid name (or is a literal). */
int restrict_addr_fqdn(const char *addr);

/* ---- mynetworks: mynetworks.c ---- */
/* Build the trusted networks from mynetworks / mynetworks_style values.
 * mynetworks may name a style (host, subnet, class): *style_warning is
 * then set. 0, or -1 with a reason in err. */
int restrict_mynetworks_build(const char *mynetworks, int mynetworks_set, const char *style,
                              struct pt_cidr_list *out, int *style_warning,
                              char *err, size_t errlen);
/* The networks that a style gives on this host's interfaces. */
int restrict_mynetworks_style(const char *style, struct pt_cidr_list *out, char *err, size_t errlen);
/* Match, treating an IPv4-mapped IPv6 client (::ffff:a.b.c.d) as IPv4. */
int restrict_mynetworks_match(const struct pt_cidr_list *nets, const struct sockaddr *sa);
/* Parse a printable address into a sockaddr_storage; 0 or -1. */
int restrict_sockaddr_parse(const char *addr, struct sockaddr_storage *ss);

/* ---- restriction lists: chain.c ---- */
enum restrict_item_kind {
	RI_PERMIT, RI_REJECT, RI_DEFER, RI_WARN_IF_REJECT, RI_PERMIT_MYNETWORKS,
	RI_PERMIT_SASL_AUTHENTICATED, RI_REJECT_INVALID_HELO, RI_REJECT_NON_FQDN_HELO,
	RI_REJECT_UNKNOWN_HELO, RI_REJECT_UNKNOWN_SENDER_DOMAIN, RI_REJECT_NON_FQDN_SENDER,
	RI_REJECT_NON_FQDN_RECIPIENT, RI_REJECT_UNKNOWN_RECIPIENT_DOMAIN,
	RI_REJECT_UNAUTH_DESTINATION, RI_DEFER_UNAUTH_DESTINATION, RI_PERMIT_AUTH_DESTINATION,
	RI_REJECT_UNAUTH_PIPELINING, RI_REJECT_UNLISTED_RECIPIENT,
	RI_REJECT_UNKNOWN_CLIENT_HOSTNAME, RI_REJECT_UNKNOWN_REVERSE_CLIENT_HOSTNAME,
	RI_REJECT_RBL_CLIENT, RI_CHECK_CLIENT_ACCESS, RI_CHECK_HELO_ACCESS,
	RI_CHECK_SENDER_ACCESS, RI_CHECK_RECIPIENT_ACCESS, RI_CHECK_LUA_POLICY,
	RI_REJECT_SENDER_LOGIN_MISMATCH, RI_REJECT_KNOWN_SENDER_LOGIN_MISMATCH,
	RI_REJECT_AUTH_SENDER_LOGIN_MISMATCH, RI_REJECT_UNAUTH_SENDER_LOGIN_MISMATCH,
};
struct restrict_lua_slot;
struct restrict_item {
	enum restrict_item_kind kind;
	const char *name;             /* as Postfix spells it */
	char *arg;                    /* map spec, Lua path, RBL domain, or NULL */
	struct pt_map *map;           /* check_*_access */
	struct restrict_lua_slot *lua;/* check_lua_policy */
};
enum restrict_list { RL_CLIENT, RL_HELO, RL_SENDER, RL_RELAY, RL_RECIPIENT, RL_DATA,
	RL_EOD, RL_COUNT };
struct restrict_chain {
	const char *param;            /* "smtpd_recipient_restrictions" */
	enum restrict_class cls;
	size_t n;
	struct restrict_item *v;
};
/* Everything an evaluation needs, built from one config; replaced as a
 * whole on reload (evaluations in flight keep theirs by reference). */
struct restrict_setup {
	int refs;
	struct restrict_chain chains[RL_COUNT];
	struct pt_cidr_list mynetworks;
	int delay_reject;
	int reject_unlisted_recipient;
	int style_warning;            /* mynetworks named a style */
	struct pt_map_list *login_maps; /* smtpd_sender_login_maps (items_sasl.c) */
	struct pt_map_list *lua_maps; /* lua_policy_maps */
	int check_errors;             /* built without open_resources: the
	                                 problems reported (what parsed is kept) */
};
/* Parse one restriction list value. Unknown items and missing arguments
 * are errors (0 / -1 with err naming every bad item, "; " between them;
 * the good items stay in ch, which the caller frees either way).
 * open_resources: open maps and Lua policies (off for syntax-only checks). */
int restrict_chain_parse(struct restrict_chain *ch, const struct pt_list *words,
                         int open_resources, char *err, size_t errlen);
void restrict_chain_free(struct restrict_chain *ch);
/* Build from a config; NULL after reporting every problem through
 * pt_conf_error (c is then the config being checked). Without
 * open_resources (`postern check`) the setup comes back even then, with
 * what parsed and check_errors > 0, so its Lua policies are still tried. */
struct restrict_setup *restrict_setup_build(const struct pt_config *c, int open_resources);
void restrict_setup_ref(struct restrict_setup *s);
/* smtpd_sender_login_maps for the *_sender_login_mismatch items
 * (items_sasl.c): 0, or -1 with errors through pt_conf_error. */
int restrict_login_maps_open(struct restrict_setup *s, const struct pt_config *c, int open_resources);
void restrict_login_maps_close(struct restrict_setup *s);
void restrict_setup_unref(struct restrict_setup *s);
/* The map a Lua policy names by spec: one of lua_policy_maps, of the
 * check_*_access items or of smtpd_sender_login_maps of setup s (the same
 * file, whatever the type prefix), or NULL. */
struct pt_map *restrict_setup_find_map(struct restrict_setup *s, const char *spec);

/* ---- evaluation: eval.c ---- */
/* Evaluate with setup s (the live one when NULL). With a loop, done runs
 * later from it (the service rule, services.h), even for a verdict known
 * at once; without one (unit tests, self-tests, which have no DNS or
 * yielding Lua) before return. 0, or -1 (out of memory: done never runs). */
int restrict_evaluate(struct restrict_setup *s, struct pt_loop *loop,
                      const struct pt_policy_request *req,
                      void (*done)(void *arg, const struct pt_verdict *v), void *arg);
/* The setup evaluations use (module.c owns it); setting NULL also drops
 * the listeners'. */
struct restrict_setup *restrict_live_setup(void);
void restrict_set_live_setup(struct restrict_setup *s);
/* A listener's own setup (built from pt_conf_listener), taking over the
 * reference; NULL listener drops them all. Evaluations of a request for
 * another listener use the live setup. */
#define RESTRICT_MAX_LISTENERS 8
void restrict_set_listener_setup(const char *listener, struct restrict_setup *s);
struct restrict_setup *restrict_listener_setup(const char *listener);
/* Reply text for an action of the access(5) family in a list's class. */
void restrict_action_reply(const struct restrict_action *a, enum restrict_class cls,
                           const char *subject, char *out, size_t outlen);
const char *restrict_stage_name(enum pt_stage st);  /* "RCPT", "MAIL", ... */

/* ---- Lua policies: lua_policy.c ---- */
struct restrict_lua_limits {
	size_t memory;                /* bytes per state */
	long long instructions;       /* per call */
	long long time_ms;            /* per call, wall clock while running */
};
void restrict_lua_set_limits(const struct restrict_lua_limits *lim);
/* Load (or share) the policy at path; a file that does not compile or
 * fails its tests is refused: NULL with the reason in err. */
struct restrict_lua_slot *restrict_lua_open(const char *path, char *err, size_t errlen);
void restrict_lua_close(struct restrict_lua_slot *slot);
/* Load path into a scratch state and drop it (postern check). */
int restrict_lua_validate(const char *path, char *err, size_t errlen);
/* Force a look at the file now (tests): 1 swapped, 0 unchanged, -1 refused. */
int restrict_lua_check_file(struct restrict_lua_slot *slot);
/* Outcome of a call: an action, or an error ("451 4.3.5" + where). */
struct restrict_lua_result {
	int error;                    /* 1: reply 451 4.3.5, see where/why */
	struct restrict_action action;
	char where[160];              /* "policy.lua:12" */
	char why[256];
};
typedef void restrict_lua_done(void *arg, const struct restrict_lua_result *r);
/* Call the policy with req's attributes; done runs before return or later
 * on loop (after a DNS lookup). */
void restrict_lua_call(struct restrict_lua_slot *slot, struct pt_loop *loop,
                       const struct pt_policy_request *req, restrict_lua_done *done, void *arg);
/* Free every policy state (module stop, tests). */
void restrict_lua_shutdown(void);

/* ---- counters shared by every policy of the process: counters.c ---- */
/* Add delta to key (created with value 0, expiring ttl seconds after its
 * creation); returns the new value, or -1 when the table is full. now is
 * seconds (time(NULL)). set: 0 or -1 (full). */
long long restrict_counter_add(const char *key, long long delta, long long ttl, long long now);
/* 1 found (*value, *created), 0 absent or expired. */
int restrict_counter_get(const char *key, long long now, long long *value, long long *created);
int restrict_counter_set(const char *key, long long value, long long ttl, long long now);
void restrict_counter_del(const char *key);
void restrict_counters_clear(void);
void restrict_counters_clear_prefix(const char *prefix);
size_t restrict_counters_count(void);
#define RESTRICT_COUNTERS_MAX 100000

/* Traces are cut at this size: a diagnosis aid, never a failure. */
#define RESTRICT_TRACE_MAX (64 * 1024)
/* Log a reject the way Postfix smtpd does, plus " rule=RULE". */
void restrict_log_reject(const struct pt_policy_request *req, const struct pt_verdict *v,
                         const char *prefix);
/* Log a HOLD or DISCARD verdict as Postfix does (accepts log nothing). */
void restrict_log_accept(const struct pt_policy_request *req, const struct pt_verdict *v);

#endif
