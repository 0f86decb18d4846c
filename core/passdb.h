/* Core-internal side of authentication: the PT_SVC_AUTH service, the
 * blocking password check it runs off the loop (passwd-file or PAM with a
 * shadow fallback), the privileged auth agent, password schemes and the
 * per-address failure throttle. */
#ifndef POSTERN_PASSDB_H
#define POSTERN_PASSDB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "postern/config.h"

/* Parameters of this subsystem (disable_plaintext_auth, auth_mechanisms,
 * auth_failure_delay, auth_throttle, auth_max_waiting_per_address, passdb); the core declares the table
 * next to its own. */
extern const struct pt_param pt_auth_params[];

/* Register PT_SVC_AUTH for this process (the worker calls it at start and
 * again after a reload; values are copied). 0, or -1 with a log line. */
int pt_auth_init(const struct pt_config *conf);
/* Checks go to the auth agent on fd (from pt_auth_agent_spawn) instead of
 * a pool thread; -1 = back to in-process checks. The fd must stay open. */
void pt_auth_set_agent_fd(int fd);
/* Stop: pending checks are answered -1 (temporary) and timers cancelled. */
void pt_auth_shutdown(void);

/* Fork the auth agent: a small process that keeps the master's privileges
 * (root can read /etc/shadow, PAM can run) and only answers
 * (user, password, service, rip) -> result over a SOCK_SEQPACKET
 * socketpair. *fd is the worker's end (close-on-exec is cleared so a
 * forked worker inherits it). The agent exits when every copy of *fd is
 * closed or the master dies. Returns the pid, or -1 with a log line. */
pid_t pt_auth_agent_spawn(const struct pt_config *conf, int *fd);

/* The agent's wire format (tests and the service's client side). Requests
 * and replies are single SOCK_SEQPACKET messages; decode refuses anything
 * that is not exactly one well-formed message. */
#define PT_AUTH_WIRE_MAX 2048
struct pt_passdb_req;
int pt_auth_wire_request_encode(uint32_t id, const struct pt_passdb_req *r, unsigned char *buf, size_t cap);
int pt_auth_wire_request_decode(unsigned char *buf, size_t len, uint32_t *id, struct pt_passdb_req *r);
int pt_auth_wire_reply_encode(uint32_t id, int result, const char *why, unsigned char *buf, size_t cap);
int pt_auth_wire_reply_decode(const unsigned char *buf, size_t len, uint32_t *id, int *result,
                              char *why, size_t whylen);
/* The same with the proxy destination of a good login ("" = none). */
#define PT_AUTH_PROXY_MAX 300
int pt_auth_wire_reply_encode_proxy(uint32_t id, int result, const char *why, const char *proxy,
                                    unsigned char *buf, size_t cap);
int pt_auth_wire_reply_decode_proxy(const unsigned char *buf, size_t len, uint32_t *id, int *result,
                                    char *why, size_t whylen, char *proxy, size_t proxylen);
/* Set by pt_auth_agent_spawn in the master; a worker forked afterwards
 * inherits it and pt_auth_init uses it. */
extern int pt_auth_default_agent_fd;

/* Settings without a config (pt_auth_init calls this; tests too). */
int pt_auth_configure(const char *passdb, uint64_t failure_delay_ms, int throttle);
/* Logins from one client address that may wait in line at once
 * (auth_max_waiting_per_address; pt_auth_init sets it). */
void pt_auth_set_line_max(size_t n);
/* Clock and timers the service uses; tests swap in a fake clock and record
 * the delays asked for. NULL restores the event loop's. */
struct pt_loop;
struct pt_timer;
struct pt_auth_hooks {
	uint64_t (*now)(struct pt_loop *loop);
	struct pt_timer *(*timer_add)(struct pt_loop *loop, uint64_t ms,
	                              void (*cb)(struct pt_loop *, void *), void *arg);
	void (*timer_cancel)(struct pt_loop *loop, struct pt_timer *t);
};
void pt_auth_set_hooks(const struct pt_auth_hooks *h);
/* The live throttle (NULL before init), for tests and diagnostics. */
struct pt_throttle *pt_auth_throttle(void);

/* ---- the blocking check (pool thread, agent or CLI) ---- */
struct pt_passdb_req {
	const char *user, *password, *service, *rip;
};
/* 1 ok, 0 bad user or password, -1 temporary failure. why gets a reason
 * for the log ("unknown user", "password mismatch", ...), never the
 * password. spec is the passdb value: "pam" or "passwd-file:PATH". */
int pt_passdb_check(const char *spec, const struct pt_passdb_req *req, char *why, size_t whylen);
/* The same, and for a good login whose passdb entry says so (Dovecot's
 * extra fields `proxy=y host=ADDR [port=N]`, or `host=ADDR:PORT`), the
 * destination the front proxies it to: "HOST", "HOST:PORT" or
 * "[V6]:PORT" into proxy ("" = served here). proxy may be NULL. */
int pt_passdb_check_proxy(const char *spec, const struct pt_passdb_req *req, char *why, size_t whylen,
                          char *proxy, size_t proxylen);

/* The login whose answer is being delivered right now: valid only inside
 * the auth service's done() callback of a good login (the session
 * hand-off and the submission proxy read it there), else NULL. The
 * password is kept only for a login that is proxied, to log in at the
 * backend with it, and wiped when done() returns. */
struct pt_auth_login {
	const char *user, *password, *proxy;
};
const struct pt_auth_login *pt_auth_current_login(void);
/* `postern check`, start and reload, once the modules are loaded: a
 * passdb/userdb "TYPE:FILE" needs the module of that TYPE (ldap:FILE,
 * `module ldap`). Errors reported on the config; their number. */
int pt_auth_sources_check(const struct pt_config *c);
/* Validates a passdb value; -1 with a reason. */
int pt_passdb_spec_check(const char *spec, char *err, size_t errlen);

/* The credential cache of lookup-module sources (passdb_cache.c), used
 * by the check above with the source's cache_ttl/cache_negative_ttl.
 * Keyed by an HMAC (per-process random key) of spec, user and password;
 * the password itself is never kept. lookup: 1 a remembered good login
 * (proxy filled), 0 a remembered refusal of this very password (why
 * filled), -2 nothing remembered (ask the source). store: result 1 or 0
 * remembered for ttl_s seconds (0 = not at all). */
int pt_passdb_cache_lookup(const char *spec, const struct pt_passdb_req *req, char *why, size_t whylen,
                           char *proxy, size_t proxylen);
void pt_passdb_cache_store(const char *spec, const struct pt_passdb_req *req, int result, const char *why,
                           const char *proxy, unsigned ttl_s);
void pt_passdb_cache_flush(void);
size_t pt_passdb_cache_count(void);

/* PAM service "postern" (conversation answers the password; the libpam
 * failure delay is disabled: the loop's timer applies its own). Falls back
 * to /etc/shadow + crypt(3) when PAM itself cannot run. Same results. */
int pt_pam_verify(const char *pam_service, const struct pt_passdb_req *req, char *why, size_t whylen);
int pt_shadow_verify(const char *user, const char *password, char *why, size_t whylen);

/* ---- password schemes ---- */
enum pt_pwscheme { PT_PWS_SHA512_CRYPT = 1, PT_PWS_SHA256_CRYPT, PT_PWS_BLF_CRYPT,
	PT_PWS_CRYPT, PT_PWS_PLAIN };
/* "{SCHEME}hash" (no braces = {CRYPT}): 0 when well formed, else -1 and err. */
int pt_pwscheme_check(const char *stored, enum pt_pwscheme *id, char *err, size_t errlen);
/* 1 match, 0 mismatch, -1 stored value unusable. Constant time in the
 * secret's contents. */
int pt_pwscheme_verify(const char *stored, const char *password);
/* Spends the time of a real check (unknown users answer as slowly). */
void pt_pwscheme_dummy_verify(const char *password);           /* SHA512-CRYPT cost */
void pt_pwscheme_dummy_verify_system(const char *password);    /* yescrypt cost */
const char *pt_pwscheme_name(enum pt_pwscheme id);
/* Constant-time equality (lengths are not secret); the counter lets tests
 * prove the comparisons go through it. */
int pt_ct_equal(const void *a, size_t alen, const void *b, size_t blen);
unsigned long pt_ct_compare_count(void);

/* ---- failure throttle (clock passed in: tests use a fake one) ---- */
#define PT_THROTTLE_EXPIRE_MS (60u * 60 * 1000)
struct pt_throttle;
struct pt_throttle *pt_throttle_new(size_t max_entries);
void pt_throttle_free(struct pt_throttle *t);
/* How long to hold an attempt from addr before checking it: 0 with no
 * recent failure, then 2, 4, 8 and at most 15 s as failures add up.
 * IPv6 clients count per /64. */
uint64_t pt_throttle_delay_ms(struct pt_throttle *t, const char *addr, uint64_t now_ms);
void pt_throttle_failure(struct pt_throttle *t, const char *addr, uint64_t now_ms);
void pt_throttle_success(struct pt_throttle *t, const char *addr, uint64_t now_ms);
unsigned pt_throttle_failures(struct pt_throttle *t, const char *addr, uint64_t now_ms);
size_t pt_throttle_size(const struct pt_throttle *t);
/* The key an address is counted under (IPv4 as is, IPv6 as its /64). */
#define PT_THROTTLE_KEYLEN 48
void pt_throttle_key(const char *addr, char key[PT_THROTTLE_KEYLEN]);

/* Log-safe copy of a user name: printable ASCII, others as '?', at most
 * 64 bytes. */
void pt_auth_log_name(const char *in, char *out, size_t outlen);

#endif
