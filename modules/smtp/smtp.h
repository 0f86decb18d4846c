/* The smtp module's shared pieces: settings taken from the config (shared,
 * reference-counted, so a reload never pulls strings from under a live
 * session) and the session entry point the listeners call. */
#ifndef SMTP_H
#define SMTP_H

#include <stddef.h>

#include "postern/config.h"
#include "postern/module.h"

struct pt_conn;
struct pt_listener;

enum smtp_tls_level { SMTP_TLS_NONE, SMTP_TLS_MAY, SMTP_TLS_ENCRYPT };

struct smtp_settings {
	int refs;
	char *hostname;            /* myhostname */
	char *banner;              /* smtpd_banner, expanded */
	char *recipient_delimiter; /* characters that start an address extension */
	int helo_required;
	unsigned rcpt_limit;
	size_t line_limit;         /* smtpd_line_length_limit */
	unsigned hard_errors, soft_errors;
	unsigned error_sleep_ms;
	unsigned timeout_ms;
	int per_request_deadline;  /* smtpd_per_request_deadline */
	unsigned min_data_rate;    /* smtpd_min_data_rate, bytes/s; 0 = none */
	unsigned starttls_timeout_ms;  /* smtpd_starttls_timeout */
	unsigned envelope_deadline_ms; /* smtpd_envelope_deadline, 0 = none */
	size_t header_limit;       /* header_size_limit */
	size_t buffer_limit;       /* smtpd_message_buffer_limit */
	size_t size_limit;         /* message_size_limit, 0 = none */
	int bare_reject;           /* smtpd_forbid_bare_newline = yes */
	enum smtp_tls_level tls_level;
	int tls_auth_only;         /* smtpd_tls_auth_only: AUTH only over TLS */
	int sasl_enable;           /* smtpd_sasl_auth_enable */
	int mech_plain, mech_login;/* auth_mechanisms */
	int plaintext_disabled;    /* disable_plaintext_auth (Dovecot's meaning) */
	int auth_header;           /* smtpd_sasl_authenticated_header */
	unsigned name_timeout_ms;  /* smtpd_client_name_timeout, 0 = no lookup */
	char *hosts_file;          /* smtpd_hosts_file, "" = DNS only */
	int vrfy_disabled;
	int smtputf8;              /* smtputf8_enable */
	char *rewrite_clients;     /* local_header_rewrite_clients */
	int always_add_headers;    /* always_add_missing_headers */
	int auth_required;         /* smtpd_sasl_auth_required: MAIL needs AUTH */
	char *log_tag;             /* "syslog_name/smtpd" (log.h: a whole tag) */
};

/* The module's parameter table (declared through the descriptor). */
extern const struct pt_param smtp_params[];

/* Per-listener settings (module.c's descriptor). */
extern const char *const smtp_listener_params[];
extern const struct pt_listener_setting smtp_listener_defaults[];

/* Build settings from a validated config (NULL on out of memory). */
struct smtp_settings *smtp_settings_new(const struct pt_config *conf);
/* The live settings, with a reference taken; and dropping one. */
struct smtp_settings *smtp_settings_get(void);
void smtp_settings_put(struct smtp_settings *s);
/* Replace the live settings (takes over the caller's reference); NULL
 * also drops every listener's. */
void smtp_settings_install(struct smtp_settings *s);
/* The settings of a listener ("submission"): its own when the config has
 * a view for it, else the live ones; with a reference taken. */
struct smtp_settings *smtp_settings_for(const char *listener);
/* Build and install the live settings and every listener's from c; -1
 * (out of memory) leaves the old ones. */
int smtp_settings_install_conf(const struct pt_config *c);

/* relay_recipient_maps of the running generation (module.c), NULL when
 * empty (every recipient of relay_domains is accepted) or outside the
 * worker. */
struct pt_map_list;
extern struct pt_map_list *smtp_relay_recipient_maps;

/* Listener hook: start a session on a fresh connection. */
void smtp_session_accept(struct pt_conn *conn, const struct pt_listener *l);

/* The PT_SVC_LOCAL_SMTP entry: a `sendmail -bs` session on conn. */
struct pt_local_sink;
int smtp_session_local(struct pt_conn *conn, const struct pt_local_sink *sink);

/* Bytes of session state while idle (memory budget check in tests). */
size_t smtp_session_idle_size(void);

#endif
