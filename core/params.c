/* The core's parameter table: names, types, defaults and docs that follow
 * Postfix main.cf and Dovecot, plus the few values computed at finish. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_priv.h"

#ifndef POSTERN_MODULE_DIR
#define POSTERN_MODULE_DIR "/usr/local/lib/postern/modules"
#endif

static int
one_of(const char *v, const char *const *words, const char *what, char *err, size_t errlen)
{
	for (; *words; words++)
		if (strcmp(v, *words) == 0)
			return 0;
	snprintf(err, errlen, "\"%.200s\" is not %s", v, what);
	return -1;
}

static int
validate_mynetworks(const char *v, char *err, size_t errlen)
{
	static const char *const styles[] = {"subnet", "host", "class", NULL};
	struct pt_cidr_list l;

	for (size_t i = 0; styles[i]; i++)
		if (strcmp(v, styles[i]) == 0)
			return 0;
	if (pt_cidr_list_parse(v, &l, err, errlen) < 0)
		return -1;
	pt_cidr_list_free(&l);
	return 0;
}

/* A tag word: no white space, brackets or colon, which end a tag. */
static int
validate_syslog_name(const char *v, char *err, size_t errlen)
{
	size_t n = strlen(v);

	if (n == 0 || n > 48 || v[strcspn(v, " \t[]:")] != '\0' || v[0] == '/' || v[n - 1] == '/') {
		snprintf(err, errlen, "\"%.200s\" is not a log tag (1 to 48 characters, no white space, "
		         "[, ] or :, not starting or ending with /)", v);
		return -1;
	}
	return 0;
}

static int
validate_proxy_tls(const char *v, char *err, size_t errlen)
{
	static const char *const w[] = {"no", "starttls", "yes", NULL};

	return one_of(v, w, "no, starttls or yes", err, errlen);
}

static int
validate_mynetworks_style(const char *v, char *err, size_t errlen)
{
	static const char *const w[] = {"host", "subnet", "class", NULL};

	return one_of(v, w, "host, subnet or class", err, errlen);
}

static int
validate_inet_interfaces(const char *v, char *err, size_t errlen)
{
	struct pt_list l;
	int rc = 0;

	pt_cfg_split_list(v, &l);
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		const char *it = l.v[i];
		unsigned char bin[16];
		char addr[64];
		size_t n = strlen(it);

		if (strcmp(it, "all") == 0 || strcmp(it, "loopback-only") == 0)
			continue;
		if (n >= sizeof addr) {
			snprintf(err, errlen, "\"%.200s\" is not all, loopback-only or an IP address", it);
			rc = -1;
		} else if (n >= 3 && it[0] == '[' && it[n - 1] == ']') {
			memcpy(addr, it + 1, n - 2);
			addr[n - 2] = '\0';
		} else {
			snprintf(addr, sizeof addr, "%s", it);
		}
		if (rc == 0 && inet_pton(AF_INET, addr, bin) != 1 && inet_pton(AF_INET6, addr, bin) != 1) {
			snprintf(err, errlen, "\"%.200s\" is not all, loopback-only or an IP address", it);
			rc = -1;
		}
	}
	if (rc == 0 && l.n > 1) {
		for (size_t i = 0; i < l.n; i++) {
			if (strcmp(l.v[i], "all") == 0 || strcmp(l.v[i], "loopback-only") == 0) {
				snprintf(err, errlen, "\"%s\" must be the only item", l.v[i]);
				rc = -1;
				break;
			}
		}
	}
	pt_cfg_free_list(&l);
	return rc;
}

/* Dovecot's `protocols`: which mail-access protocols run. The words are
 * the protocols loaded modules declare; which ones exist is known only
 * once the modules are loaded (pt_modules_check), so here: names, and
 * "none" alone. SMTP is not in Dovecot's list, so a line pasted from
 * dovecot.conf never turns a module without a protocol off. */
static int
validate_protocols(const char *v, char *err, size_t errlen)
{
	struct pt_list l;
	int rc = 0;

	pt_cfg_split_list(v, &l);
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		const char *w = l.v[i];
		size_t ok = strspn(w, "abcdefghijklmnopqrstuvwxyz0123456789_-");
		if (w[ok] != '\0' || ok == 0) {
			snprintf(err, errlen, "\"%.200s\" is not a protocol name", w);
			rc = -1;
		} else if (strcmp(w, "none") == 0 && l.n > 1) {
			snprintf(err, errlen, "\"none\" cannot be listed with other protocols");
			rc = -1;
		}
	}
	pt_cfg_free_list(&l);
	return rc;
}

static int
validate_inet_protocols(const char *v, char *err, size_t errlen)
{
	struct pt_list l;
	int rc = 0;

	pt_cfg_split_list(v, &l);
	if (l.n == 0) {
		snprintf(err, errlen, "empty (use all, ipv4 or ipv6)");
		rc = -1;
	}
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		if (strcmp(l.v[i], "ipv4") != 0 && strcmp(l.v[i], "ipv6") != 0 &&
			!(strcmp(l.v[i], "all") == 0 && l.n == 1)) {
			snprintf(err, errlen, "\"%.200s\" is not all, ipv4 or ipv6", l.v[i]);
			rc = -1;
		}
	}
	pt_cfg_free_list(&l);
	return rc;
}

static int
validate_tls_version(const char *v, char *err, size_t errlen)
{
	static const char *const w[] = {"TLSv1.2", "TLSv1.3", NULL};

	return one_of(v, w, "TLSv1.2 or TLSv1.3", err, errlen);
}

/* "ldap:FILE": a lookup module's source. Whether the module is loaded is
 * checked once modules are (it is not yet while the file is parsed). */
static int
module_source(const char *v)
{
	size_t n = strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789");
	return n > 0 && v[n] == ':' && v[n + 1] != '\0';
}

static int
validate_userdb(const char *v, char *err, size_t errlen)
{
	if (strcmp(v, "passwd") == 0 || (strncmp(v, "passwd-file:", 12) == 0 && v[12] != '\0'))
		return 0;
	if (module_source(v))
		return 0;
	snprintf(err, errlen, "\"%.200s\" is not passwd, passwd-file:PATH or a module's TYPE:FILE (ldap:FILE)", v);
	return -1;
}

static int
validate_passdb(const char *v, char *err, size_t errlen)
{
	if (strcmp(v, "pam") == 0 || (strncmp(v, "passwd-file:", 12) == 0 && v[12] != '\0'))
		return 0;
	if (module_source(v))
		return 0;
	snprintf(err, errlen, "\"%.200s\" is not pam, passwd-file:PATH or a module's TYPE:FILE (ldap:FILE)", v);
	return -1;
}

static int
validate_notify_classes(const char *v, char *err, size_t errlen)
{
	static const char *const w[] = {"bounce", "2bounce", "data", "delay", "policy", "protocol",
		"resource", "software", NULL};
	struct pt_list l;
	int rc = 0;

	pt_cfg_split_list(v, &l);
	for (size_t i = 0; rc == 0 && i < l.n; i++)
		rc = one_of(l.v[i], w,
			"a notify class (bounce, 2bounce, data, delay, policy, protocol, resource, software)",
			err, errlen);
	pt_cfg_free_list(&l);
	return rc;
}

#define LIMIT_MAX 1000000000LL
#define TIME_MAX (100LL * 365 * 86400)

static const struct pt_param core_params[] = {
	{"module_directory", PT_PATH, POSTERN_MODULE_DIR, NULL,
		"where `module NAME` lines find NAME.so", 0, 0},
	{"myhostname", PT_STR, "", NULL,
		"this host's fully qualified name (default: from gethostname(), .localdomain added when it has no dot)", 0, 0},
	{"mydomain", PT_STR, "$myhostname", NULL,
		"this host's domain (default: $myhostname without its first label)", 0, 0},
	{"myorigin", PT_STR, "$myhostname", NULL,
		"domain added to unqualified sender addresses; a /path names a file whose first line is it (/etc/mailname)", 0, 0},
	{"append_at_myorigin", PT_BOOL, "yes", NULL,
		"locally submitted mail (sendmail, local_header_rewrite_clients): a header address without a domain "
		"(To: alice) gets @$myorigin", 0, 0},
	{"verbose_proctitle", PT_BOOL, "yes", NULL,
		"a user's mail process is titled with the user and the client address in ps "
		"(\"postern: imap [alice 192.0.2.7]\"); no: the protocol alone, for hosts whose local users "
		"should not see who logs in from where", 0, 0},
	{"append_dot_mydomain", PT_BOOL, "no", NULL,
		"locally submitted mail: a header address whose domain has no dot (bob@host) gets .$mydomain "
		"(Postfix's default is no since 3.0)", 0, 0},
	{"mydestination", PT_LIST, "$myhostname, localhost.$mydomain, localhost", NULL,
		"domains delivered locally", 0, 0},
	{"relay_domains", PT_LIST, "", NULL,
		"domains this host relays mail to", 0, 0},
	{"mynetworks", PT_STR, "", validate_mynetworks,
		"trusted client networks (CIDR list, /file items), or subnet/host/class; empty: per mynetworks_style", 0, 0},
	{"mynetworks_style", PT_STR, "host", validate_mynetworks_style,
		"trusted networks when mynetworks is empty: host, subnet or class", 0, 0},
	{"inet_interfaces", PT_LIST, "all", validate_inet_interfaces,
		"addresses to listen on: all, loopback-only or IP addresses", 0, 0},
	{"inet_protocols", PT_STR, "all", validate_inet_protocols,
		"IP versions to use: all, ipv4, ipv6", 0, 0},
	{"protocols", PT_LIST, "", validate_protocols,
		"mail-access protocols served (Dovecot's setting): protocols of loaded modules (imap, pop3), "
		"or none; empty: all of them", 0, 0},
	{"queue_directory", PT_PATH, "/var/spool/postern", NULL,
		"mail queue and private sockets", 0, 0},
	{"maillog_file", PT_PATH, "", NULL,
		"log file; empty: syslog (mail facility)", 0, 0},
	{"syslog_name", PT_STR, "postern", validate_syslog_name,
		"first part of the log tag (NAME/SERVICE[PID]); per listener like Postfix's -o syslog_name: "
		"postern/submission gives postern/submission/smtpd", 0, 0},
	{"mail_owner", PT_STR, "postern", NULL,
		"unprivileged user for network-facing processes", 0, 0},
	{"default_privs", PT_STR, "nobody", NULL,
		"user for deliveries to files and commands of root-owned aliases", 0, 0},
	{"mail_privileged_group", PT_STR, "mail", NULL,
		"group allowed to lock in /var/mail", 0, 0},
	{"ssl_cert", PT_STR, "", NULL,
		"PEM certificate chain; `< /path` reads the file", 0, 0},
	{"ssl_key", PT_STR, "", NULL,
		"PEM private key; `< /path` reads the file", 0, 0},
	{"ssl_min_protocol", PT_STR, "TLSv1.2", validate_tls_version,
		"oldest TLS version accepted: TLSv1.2 or TLSv1.3", 0, 0},
	{"pid_file", PT_PATH, "$queue_directory/pid/master.pid", NULL,
		"pid file of the running server", 0, 0},
	{"service_connection_limit", PT_INT, "1000", NULL,
		"concurrent connections per listener service", 1, LIMIT_MAX},
	{"client_connection_limit", PT_INT, "50", NULL,
		"concurrent connections per client address and service; 0 = no limit (mynetworks clients are exempt)", 0, LIMIT_MAX},
	{"mynetworks_reserved_connections", PT_INT, "100", NULL,
		"of service_connection_limit, connections only mynetworks clients may use (a flood from outside cannot take them)", 0, LIMIT_MAX},
	{"message_size_limit", PT_SIZE, "10240000", NULL,
		"largest message accepted, in bytes; 0 = no limit", 0, 0x7fffffffffffffffLL},
	{"recipient_delimiter", PT_STR, "", NULL,
		"characters separating user and extension (user+ext)", 0, 0},
	{"dns_servers", PT_LIST, "", NULL,
		"IP[:PORT] name servers; empty: /etc/resolv.conf", 0, 0},
	{"maximal_queue_lifetime", PT_TIME, "5d", NULL,
		"how long a deferred message is retried before it bounces", 0, TIME_MAX},
	{"bounce_queue_lifetime", PT_TIME, "5d", NULL,
		"how long a deferred bounce is retried", 0, TIME_MAX},
	{"minimal_backoff_time", PT_TIME, "300s", NULL,
		"shortest retry interval for deferred mail", 1, TIME_MAX},
	{"maximal_backoff_time", PT_TIME, "4000s", NULL,
		"longest retry interval for deferred mail", 1, TIME_MAX},
	{"queue_run_delay", PT_TIME, "300s", NULL,
		"interval between deferred queue scans", 1, TIME_MAX},
	{"delay_warning_time", PT_TIME, "0h", NULL,
		"warn the sender after mail is delayed this long; 0 = never", 0, TIME_MAX},
	{"userdb", PT_STR, "passwd", validate_userdb,
		"user database: passwd (system users), passwd-file:PATH, ldap:FILE or pgsql:FILE (modules ldap, pgsql)", 0, 0},
	{"passdb", PT_STR, "pam", validate_passdb,
		"password database: pam, passwd-file:PATH, ldap:FILE or pgsql:FILE (modules ldap, pgsql)", 0, 0},
	{"mail_uid", PT_STR, "", NULL,
		"user (name or number) owning mail of virtual users", 0, 0},
	{"mail_gid", PT_STR, "", NULL,
		"group (name or number) owning mail of virtual users", 0, 0},
	{"smtputf8_enable", PT_BOOL, "yes", NULL,
		"offer SMTPUTF8", 0, 0},
	{"worker_threads", PT_INT, "4", NULL,
		"pool threads for disk and authentication work", 1, 256},
	{"worker_watchdog_timeout", PT_TIME, "30s", NULL,
		"replace a worker whose event loop has not turned for this long; 0 = never", 0, 86400},
	{"soft_bounce", PT_BOOL, "no", NULL,
		"turn permanent (5xx) failures into temporary ones (testing)", 0, 0},
	{"notify_classes", PT_LIST, "resource, software", validate_notify_classes,
		"problems reported to the postmaster", 0, 0},
	{"2bounce_notice_recipient", PT_STR, "postmaster", NULL,
		"receives undeliverable bounces", 0, 0},
	{"bounce_notice_recipient", PT_STR, "postmaster", NULL,
		"receives bounce notices when notify_classes has bounce", 0, 0},
	{"double_bounce_sender", PT_STR, "double-bounce", NULL,
		"sender of postmaster notices; mail to it is discarded", 0, 0},
	{"mail_name", PT_STR, "Postern", NULL,
		"server name in the SMTP banner and in notices", 0, 0},
	{"metrics_listen", PT_HOSTPORT_LIST, "", NULL,
		"[ADDR:]PORT list where the worker serves OpenMetrics text at GET /metrics (e.g. 127.0.0.1:9154; "
		"a bare PORT listens on inet_interfaces); empty: off", 0, 0},
	{"mail_max_userip_connections", PT_INT, "10", NULL,
		"concurrent IMAP/POP3 sessions per user and client address after login (per worker); 0 = no limit", 0, LIMIT_MAX},
	{"proxy_imap_port", PT_INT, "143", NULL,
		"port of a mailbox host's IMAP server, for logins the passdb proxies (proxy=y host=) without a port", 1, 65535},
	{"proxy_pop3_port", PT_INT, "110", NULL,
		"port of a mailbox host's POP3 server, for proxied logins without a port", 1, 65535},
	{"proxy_submission_port", PT_INT, "587", NULL,
		"port of a mailbox host's submission server, for proxied SMTP AUTH logins (XCLIENT there)", 1, 65535},
	{"proxy_tls", PT_STR, "no", validate_proxy_tls,
		"TLS from the front to a mailbox host: no, starttls, or yes (implicit TLS: set the ports to 993/995)", 0, 0},
	{"proxy_tls_ca_file", PT_PATH, "", NULL,
		"CA certificates a mailbox host's certificate must chain to (empty: the system's); its name or IP "
		"must match the host field", 0, 0},
	{"proxy_timeout", PT_TIME, "30s", NULL,
		"time a proxied login may take at the mailbox host (connect, TLS, login)", 1, 3600},
	{"login_trusted_networks", PT_CIDR_LIST, "", NULL,
		"fronts whose IMAP ID x-originating-ip / POP3 XCLIENT ADDR is believed (logged as the client's address); disable_plaintext_auth does not apply to them", 0, 0},
	/* A string, not a path: empty (no record) is a valid setting. */
	{"decision_log_file", PT_STR, "$queue_directory/decisions/decisions.db", NULL,
		"decision record searched by `postern why` (SQLite, mode 0600, written by the worker as mail_owner); "
		"empty: keep none", 0, 0},
	{"decision_log_max_age", PT_TIME, "30d", NULL,
		"decision record events older than this are removed; 0 = keep them", 0, TIME_MAX},
	{"decision_log_max_size", PT_SIZE, "1g", NULL,
		"the decision record's oldest events are removed while it is larger; 0 = no limit", 0,
		0x7fffffffffffffffLL},
	{NULL, 0, NULL, NULL, NULL, 0, 0},
};

static int
hook_myhostname(struct pt_config *c, int isset, char **value, char **shown, char *err, size_t errlen)
{
	char host[256];

	(void)c;
	(void)shown;
	if (isset || **value != '\0')
		return 0;
	if (gethostname(host, sizeof host - 20) < 0 || host[0] == '\0') {
		snprintf(err, errlen, "cannot get the host name; set myhostname");
		return -1;
	}
	host[sizeof host - 20] = '\0';
	if (strchr(host, '.') == NULL)
		strcat(host, ".localdomain");
	free(*value);
	*value = strdup(host);
	if (*value == NULL)
		abort();
	return 0;
}

static int
hook_mydomain(struct pt_config *c, int isset, char **value, char **shown, char *err, size_t errlen)
{
	const char *dot = strchr(*value, '.');
	char *d;

	(void)c;
	(void)shown;
	(void)err;
	(void)errlen;
	/* The default expands to $myhostname; the domain is what follows its
	 * first label. */
	if (isset)
		return 0;
	d = strdup(dot && dot[1] ? dot + 1 : "localdomain");
	if (d == NULL)
		abort();
	free(*value);
	*value = d;
	return 0;
}

static int
hook_myorigin(struct pt_config *c, int isset, char **value, char **shown, char *err, size_t errlen)
{
	char why[256];
	size_t n, len;
	char *data;

	(void)c;
	(void)isset;
	if ((*value)[0] != '/')
		return 0;
	data = pt_cfg_read_file(*value, 64 * 1024, &len, why, sizeof why);
	if (data == NULL) {
		snprintf(err, errlen, "cannot read %.300s: %s", *value, why);
		return -1;
	}
	n = strcspn(data, "\r\n");
	data[n] = '\0';
	while (n > 0 && (data[n - 1] == ' ' || data[n - 1] == '\t'))
		data[--n] = '\0';
	if (n == 0 || strspn(data, " \t") == n) {
		snprintf(err, errlen, "%.300s is empty (myorigin needs a domain on its first line)", *value);
		free(data);
		return -1;
	}
	{
		const char *p = data + strspn(data, " \t");

		free(*shown);
		*shown = *value;
		*value = strdup(p);
		free(data);
		if (*value == NULL)
			abort();
	}
	return 0;
}

int
pt_config_declare_core(struct pt_config *c)
{
	int rc = pt_config_declare(c, "core", core_params);

	pt_cfg_set_hook(c, "myhostname", hook_myhostname);
	pt_cfg_set_hook(c, "mydomain", hook_mydomain);
	pt_cfg_set_hook(c, "myorigin", hook_myorigin);
	return rc;
}
