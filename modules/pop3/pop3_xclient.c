/* POP3 XCLIENT from a trusted front (Dovecot's pop3 proxy sends it): 
 * "XCLIENT ADDR=1.2.3.4 PORT=n [SESSION=...]" names the client the front
 * relays; believed only from login_trusted_networks, where the session
 * then logs, throttles and hands the mail process that address. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/conn.h"
#include "postern/log.h"
#include "pop3.h"

int
pop3_xclient(struct pt_conn *c, const char *arg, size_t arglen, const char *session_id)
{
	char buf[512], front[64];
	const char *addr = NULL;
	unsigned long port = 0;

	if (!pt_conn_peer_in(c, "login_trusted_networks"))
		return -1;
	if (arglen >= sizeof buf)
		return 0;
	memcpy(buf, arg, arglen);
	buf[arglen] = '\0';
	for (char *save = NULL, *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		if (strncasecmp(w, "ADDR=", 5) == 0)
			addr = w + 5;
		else if (strncasecmp(w, "PORT=", 5) == 0)
			port = strtoul(w + 5, NULL, 10);
	}
	snprintf(front, sizeof front, "%s", pt_conn_peer_addr(c));
	if (addr == NULL || !pt_conn_forwarded_client(c, "login_trusted_networks", addr,
	                                              port > 65535 ? 0 : (unsigned)port))
		return 0;
	pt_log_as("pop3-login", PT_LOG_INFO, "proxied by %s: rip=%s, rport=%lu, session=<%s>", front,
	          pt_conn_peer_addr(c), port, session_id);
	return 1;
}
