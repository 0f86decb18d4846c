/* The module ABI: the one descriptor every module exports, checked right
 * after dlopen. Modules include only headers from include/postern/. */
#ifndef POSTERN_MODULE_H
#define POSTERN_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "postern/config.h"

/* Bump when any struct or function in include/postern/ changes shape. */
#define POSTERN_ABI 8

/* Catches modules built by another compiler model or against other headers. */
#define POSTERN_STR_(x) #x
#define POSTERN_STR(x) POSTERN_STR_(x)
#define POSTERN_BUILD_SIG \
	"abi=" POSTERN_STR(POSTERN_ABI) ",ptr=" POSTERN_STR(__SIZEOF_POINTER__) \
	",long=" POSTERN_STR(__SIZEOF_LONG__)

/* Name of the one symbol a module .so exports. */
#define POSTERN_MODULE_SYMBOL "postern_module"

struct pt_ctx;
struct pt_conn;
struct pt_listener;

/* A listening service: the parameter naming its [ADDR:]PORT list, its
 * default, whether the socket speaks TLS from the first byte (smtps, imaps,
 * pop3s), and the handler that takes each accepted connection. */
struct pt_listener_decl {
	const char *param;            /* e.g. "smtpd_listen" (declared in params) */
	const char *service;          /* log name, e.g. "smtpd", "imap-login" */
	int implicit_tls;             /* 1: TLS handshake before any byte */
	void (*on_accept)(struct pt_conn *conn, const struct pt_listener *l);
};

/* A module's built-in value of a parameter for one of its listeners (the
 * file's `LISTENER.PARAM = value` line replaces it): what Debian's
 * master.cf spells for submission with -o. */
struct pt_listener_setting {
	const char *listener;         /* "submission": the *_listen name without _listen */
	const char *param;
	const char *value;
};

/* Process roles: the processes a module's code runs in. The loader calls
 * a module's init and stop only in the roles it declares; ctx->role says
 * which one is running. The master starts an agent only when a loaded
 * module needs it (see each role). */
#define PT_ROLE_WORKER   0x01u /* network sessions and the queue, as mail_owner;
                                  a module with listeners must run here */
#define PT_ROLE_DELIVERY 0x02u /* the local delivery agent (root when
                                  privilege-separated): started when a module
                                  runs here */
#define PT_ROLE_MAIL     0x04u /* a user's mail process (post-login IMAP/POP3,
                                  as the user): the mail agent starts when a
                                  module with listeners runs here */
#define PT_ROLE_CLI      0x08u /* postern policy test (as mail_owner when
                                  started as root) */
#define PT_ROLE_SENDMAIL 0x10u /* sendmail -bs: the local user's SMTP
                                  session, as that user */
#define PT_ROLE_AUTH     0x20u /* not a place to run: the module's sessions
                                  check passwords, so as root the master
                                  starts the auth agent (no module code) */
#define PT_ROLE_AGENT    0x40u /* the auth and mail agents (root when
                                  privilege-separated): a lookup module whose
                                  passdb/userdb source (map.h) they consult
                                  runs here; no sessions, no listeners */
#define PT_ROLE_ALL      0x7fu

struct pt_module {
	uint32_t abi;                 /* POSTERN_ABI */
	const char *build_sig;        /* POSTERN_BUILD_SIG */
	const char *name;             /* "smtp"; must equal the module line */
	/* Services (services.h names, e.g. PT_SVC_MAILBOX) it needs from
	 * another module, NULL-terminated, or NULL. The loader refuses the
	 * module when no loaded module provides one (naming both) and inits
	 * the providers first. */
	const char *const *depends;
	const struct pt_param *params;/* terminated by {0}, or NULL */
	const struct pt_listener_decl *listeners; /* terminated by {0}, or NULL */
	unsigned roles;               /* PT_ROLE_* bits, at least one */
	/* init: after the config is valid, in each process of the module's
	 * roles; reads parameters, registers services. Non-zero = refuse to
	 * start, with a message already logged. stop: graceful shutdown of
	 * that process. A reload never calls a module: it starts a new
	 * generation of processes, whose init reads the new config. */
	int (*init)(struct pt_ctx *ctx);
	void (*stop)(struct pt_ctx *ctx);
	/* Validate cross-parameter rules at `postern check` / reload time,
	 * before anything is swapped in. Report with pt_conf_error(). Runs
	 * wherever a config is loaded (the master as root, every postern verb)
	 * whatever the roles: no policy code in-process. */
	int (*check)(const struct pt_config *conf);
	/* Services it registers in init (what other modules' depends name),
	 * NULL-terminated, or NULL. */
	const char *const *provides;
	/* The mail-access protocol it serves ("imap"): `protocols` switches
	 * its listeners on and off. NULL: they open whenever it is loaded. */
	const char *protocol;
	/* Per-listener settings: this module's parameters that one listener
	 * may override (`submission.smtpd_relay_restrictions = ...`, read
	 * through pt_conf_listener), NULL-terminated, or NULL. A module that
	 * names any makes its own listeners take such lines. */
	const char *const *listener_params;
	/* Built-in listener values, terminated by {0}, or NULL. */
	const struct pt_listener_setting *listener_defaults;
};

/* Modules are built with hidden visibility; only the descriptor is
 * exported. Use: POSTERN_MODULE_EXPORT const struct pt_module postern_module = {...}; */
#define POSTERN_MODULE_EXPORT __attribute__((visibility("default")))

/* What the core hands to module hooks. */
struct pt_ctx {
	const struct pt_config *conf; /* the live config */
	struct pt_loop *loop;         /* this process's event loop */
	int as_root;                  /* master started as root */
	unsigned role;                /* the PT_ROLE_* of this process */
};

#endif
