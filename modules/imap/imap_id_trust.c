/* IMAP ID x-originating-ip from a trusted front (imap_id_trust.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/conn.h"
#include "postern/log.h"
#include "imap_id_trust.h"

void
imap_id_forwarded(struct pt_conn *c, const struct imap_arg *arg, const char *service, const char *session_id)
{
	const char *ip = NULL, *port = NULL;
	char front[64];

	if (arg == NULL || arg->type != IMAP_ARG_LIST)
		return;
	for (size_t i = 0; i + 1 < arg->n; i += 2) {
		const struct imap_arg *k = &arg->list[i], *v = &arg->list[i + 1];
		if (!imap_arg_is_string(k) || !imap_arg_is_string(v) || v->type == IMAP_ARG_NIL)
			continue;
		if (strcasecmp(k->s, "x-originating-ip") == 0)
			ip = v->s;
		else if (strcasecmp(k->s, "x-originating-port") == 0)
			port = v->s;
	}
	if (ip == NULL || strlen(ip) > 45)
		return;
	unsigned long pn = 0;
	if (port) {
		char *end;
		pn = strtoul(port, &end, 10);
		if (*end != '\0' || pn > 65535)
			pn = 0;
	}
	snprintf(front, sizeof front, "%s", pt_conn_peer_addr(c));
	if (pt_conn_forwarded_client(c, "login_trusted_networks", ip, (unsigned)pn))
		pt_log_as(service, PT_LOG_INFO, "proxied by %s: rip=%s, rport=%lu, session=<%s>", front,
		          pt_conn_peer_addr(c), pn, session_id ? session_id : "");
}
