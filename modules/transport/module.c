/* The transport module's descriptor: transport_maps, relayhost and the
 * default transports, their checks, the routing service, and the
 * transports smtp and relay (the SMTP client, relay*.c), error, retry and
 * discard (transport_simple.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "postern/log.h"
#include "postern/module.h"
#include "postern/services.h"
#include "relay_int.h"
#include "transport.h"

static int transport_validate_relayhost(const char *value, char *err, size_t errlen);
static int transport_validate_default(const char *value, char *err, size_t errlen);
static int transport_validate_tls_level(const char *value, char *err, size_t errlen);

static const struct pt_param transport_params[] = {
	{ "transport_maps", PT_LIST, "", NULL,
	  "transport(5) tables: domain or address -> transport:nexthop", 0, 0 },
	{ "relayhost", PT_STR, "", transport_validate_relayhost,
	  "next hop for non-local mail: host, [host], host:port; empty = MX of the domain", 0, 0 },
	{ "default_transport", PT_STR, "smtp", transport_validate_default,
	  "transport[:nexthop] for mail to other domains (smtp, error, retry, discard, a module's)", 0, 0 },
	{ "relay_transport", PT_STR, "relay", transport_validate_default,
	  "transport[:nexthop] for mail to relay_domains", 0, 0 },
	/* The SMTP client's (relay*.c); Postfix's names and defaults. */
	{ "smtp_connect_timeout", PT_TIME, "30s", NULL, "SMTP client: time limit for a TCP connection", 1, 86400 },
	{ "smtp_helo_timeout", PT_TIME, "300s", NULL,
	  "SMTP client: time limit for the greeting and the EHLO/HELO reply", 1, 86400 },
	{ "smtp_mail_timeout", PT_TIME, "300s", NULL, "SMTP client: time limit for the MAIL FROM reply", 1, 86400 },
	{ "smtp_rcpt_timeout", PT_TIME, "300s", NULL, "SMTP client: time limit for each RCPT TO reply", 1, 86400 },
	{ "smtp_data_init_timeout", PT_TIME, "120s", NULL, "SMTP client: time limit for the DATA reply", 1, 86400 },
	{ "smtp_data_xfer_timeout", PT_TIME, "180s", NULL,
	  "SMTP client: time limit for progress while sending the message body", 1, 86400 },
	{ "smtp_data_done_timeout", PT_TIME, "600s", NULL,
	  "SMTP client: time limit for the reply to the end of the message", 1, 86400 },
	{ "smtp_starttls_timeout", PT_TIME, "300s", NULL,
	  "SMTP client: time limit for the STARTTLS reply and the TLS handshake", 1, 86400 },
	{ "smtp_rset_timeout", PT_TIME, "20s", NULL, "SMTP client: time limit for the RSET reply", 1, 86400 },
	{ "smtp_quit_timeout", PT_TIME, "300s", NULL, "SMTP client: time limit for the QUIT reply", 1, 86400 },
	{ "smtp_connection_cache_time_limit", PT_TIME, "2s", NULL,
	  "SMTP client: how long an idle connection is kept for the next message", 1, 3600 },
	{ "smtp_tls_security_level", PT_STR, "may", transport_validate_tls_level,
	  "SMTP client TLS: none, may (opportunistic STARTTLS) or encrypt (STARTTLS required)", 0, 0 },
	{ "smtp_helo_name", PT_STR, "$myhostname", NULL, "SMTP client: the name sent in EHLO/HELO", 0, 0 },
	{ "default_destination_concurrency_limit", PT_INT, "20", NULL,
	  "SMTP client: parallel connections per destination", 1, 1000 },
	{ 0 },
};

static int
transport_validate_relayhost(const char *value, char *err, size_t errlen)
{
	char host[256];
	unsigned port;
	if (!*value || transport_parse_nexthop(value, host, sizeof(host), &port) == 0)
		return 0;
	snprintf(err, errlen, "invalid relayhost \"%.100s\": expected host, [host], host:port or [host]:port",
	         value);
	return -1;
}

static int
transport_validate_default(const char *value, char *err, size_t errlen)
{
	struct pt_route r;
	if (transport_parse_result(value, "smtp", "example.com", "", &r) == 0)
		return 0;
	snprintf(err, errlen, "%s", r.nexthop + 6);   /* without "4.3.5 " */
	return -1;
}

static int
transport_validate_tls_level(const char *value, char *err, size_t errlen)
{
	enum relay_tls_level level;
	if (relay_tls_level_parse(value, &level) == 0)
		return 0;
	snprintf(err, errlen, "invalid smtp_tls_security_level \"%.60s\": expected none, may or encrypt", value);
	return -1;
}

static struct transport_conf *transport_live;

static void
transport_conf_free(struct transport_conf *c)
{
	if (!c)
		return;
	pt_map_list_close(c->maps);
	free(c);
}

static struct transport_conf *
transport_conf_build(const struct pt_config *conf)
{
	struct transport_conf *c = calloc(1, sizeof(*c));
	char err[400];
	if (!c) {
		pt_error("transport: out of memory");
		return NULL;
	}
	c->maps = pt_map_list_open(pt_conf_list(conf, "transport_maps"), PT_MAP_KEY_VALUE, "transport_maps", err,
	                           sizeof(err));
	if (!c->maps) {
		pt_error("%s", err);
		free(c);
		return NULL;
	}
	snprintf(c->default_transport, sizeof(c->default_transport), "%s",
	         pt_conf_str(conf, "default_transport"));
	snprintf(c->relay_transport, sizeof(c->relay_transport), "%s",
	         pt_conf_str(conf, "relay_transport"));
	snprintf(c->relayhost, sizeof(c->relayhost), "%s", pt_conf_str(conf, "relayhost"));
	snprintf(c->delim, sizeof(c->delim), "%s", pt_conf_str(conf, "recipient_delimiter"));
	return c;
}

static int
svc_route(const char *address, struct pt_route *out)
{
	if (!transport_live) {
		memset(out, 0, sizeof(*out));
		snprintf(out->transport, sizeof(out->transport), "retry");
		snprintf(out->nexthop, sizeof(out->nexthop), "4.3.0 transport module not configured");
		return -1;
	}
	return transport_route(transport_live, address, out);
}

static const struct pt_route_ops transport_ops = { svc_route };

/* May take minutes: the queue acknowledges the client first. */
static const struct pt_transport_ops smtp_ops = { PT_TRANSPORT_SLOW, relay_deliver };

static int
transport_init(struct pt_ctx *ctx)
{
	struct transport_conf *c = transport_conf_build(ctx->conf);
	if (!c)
		return -1;
	transport_live = c;
	struct relay_settings set;
	relay_settings_load(ctx->conf, &set);
	relay_configure(&set);
	if (pt_service_register(PT_SVC_ROUTE, &transport_ops) != 0 ||
	    pt_service_register(PT_SVC_TRANSPORT("smtp"), &smtp_ops) != 0 ||
	    pt_service_register(PT_SVC_TRANSPORT("relay"), &smtp_ops) != 0 ||
	    pt_service_register(PT_SVC_TRANSPORT("error"), &transport_error_ops) != 0 ||
	    pt_service_register(PT_SVC_TRANSPORT("retry"), &transport_retry_ops) != 0 ||
	    pt_service_register(PT_SVC_TRANSPORT("discard"), &transport_discard_ops) != 0) {
		pt_error("transport: too many services registered");
		return -1;
	}
	return 0;
}

static void
transport_stop(struct pt_ctx *ctx)
{
	(void)ctx;
	relay_close_idle();
	transport_conf_free(transport_live);
	transport_live = NULL;
}

static void
transport_check_report(void *arg, int is_error, const char *msg)
{
	if (is_error)
		pt_conf_error(arg, "transport_maps", "%s", msg);
	else
		pt_warn("%s", msg);
}

/* The transport a "transport[:nexthop]" value names must be one that a
 * loaded module provides (or local): otherwise the queue would defer
 * that mail forever ("unsupported transport"). 0, or -1 with err. */
static int
transport_name_check(const char *value, char *err, size_t errlen)
{
	struct pt_route r;
	if (transport_parse_result(value, "smtp", "example.com", "", &r) < 0) {
		snprintf(err, errlen, "%s", r.nexthop + 6);   /* without "4.3.5 " */
		return -1;
	}
	if (pt_transport_known(r.transport))
		return 0;
	char known[300];
	pt_transport_names(known, sizeof known);
	snprintf(err, errlen, "no loaded module provides transport \"%s\" (known: %s)", r.transport, known);
	return -1;
}

struct entry_check {
	const struct pt_config *conf;
};

static int
transport_check_entry(void *arg, const char *path, int line, const char *key, const char *value)
{
	struct entry_check *ec = arg;
	char err[512];
	if (transport_name_check(value, err, sizeof err) == 0)
		return 0;
	pt_conf_error(ec->conf, "transport_maps", "%s:%d: %s %s: %s", path, line, key, value, err);
	return 1;
}

/* `postern check`, start and reload: every transport map must exist and
 * parse, and every transport it names (as default_transport and
 * relay_transport) must be provided. A missing file is an error as at
 * routing time, where every recipient it would route is deferred. */
static int
transport_check(const struct pt_config *conf)
{
	const struct pt_list *l = pt_conf_list(conf, "transport_maps");
	struct entry_check ec = { conf };
	int bad = 0;
	for (size_t i = 0; i < l->n; i++) {
		char path[4096], err[300];
		if (pt_map_spec_path(l->v[i], path, sizeof(path), err, sizeof(err)) < 0) {
			pt_conf_error(conf, "transport_maps", "transport_maps: %s", err);
			bad = 1;
			continue;
		}
		if (access(path, F_OK) < 0) {
			pt_conf_error(conf, "transport_maps", "transport_maps: %s does not exist: routing would defer "
			              "every recipient until it does (create it; an empty file is a valid table)", path);
			bad = 1;
			continue;
		}
		if (pt_map_check_each(l->v[i], PT_MAP_KEY_VALUE, transport_check_report, (void *)conf, NULL,
		                      transport_check_entry, &ec) != 0)
			bad = 1;
	}
	static const char *const params[] = { "default_transport", "relay_transport" };
	for (size_t i = 0; i < 2; i++) {
		char err[512];
		if (transport_name_check(pt_conf_str(conf, params[i]), err, sizeof err) < 0) {
			pt_conf_error(conf, params[i], "%s = %s: %s", params[i], pt_conf_str(conf, params[i]), err);
			bad = 1;
		}
	}
	return bad ? -1 : 0;
}

/* What init registers, so that checks (which run before any init) know
 * which transports exist: pt_transport_known. */
static const char *const transport_provides[] = {
	PT_SVC_ROUTE, PT_SVC_TRANSPORT("smtp"), PT_SVC_TRANSPORT("relay"), PT_SVC_TRANSPORT("error"),
	PT_SVC_TRANSPORT("retry"), PT_SVC_TRANSPORT("discard"), NULL,
};

POSTERN_MODULE_EXPORT const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "transport",
	.depends = NULL,
	.params = transport_params,
	.listeners = NULL,
	/* Routing and the SMTP client in the worker; routing for policy tests. */
	.roles = PT_ROLE_WORKER | PT_ROLE_CLI,
	.init = transport_init,
	.stop = transport_stop,
	.check = transport_check,
	.provides = transport_provides,
};
