/* IMAP ID from a trusted front (Dovecot's proxy protocol): the front's
 * ID ("x-originating-ip" "1.2.3.4" "x-originating-port" "N" ...) names the
 * client it relays; believed only from login_trusted_networks. */
#ifndef POSTERN_IMAP_ID_TRUST_H
#define POSTERN_IMAP_ID_TRUST_H

#include "imap_arg.h"

struct pt_conn;

/* The ID command's argument (a list of key/value strings, or NIL). When
 * the peer is trusted and names the client's address, the conn reports
 * that address from now on and a line says so. */
void imap_id_forwarded(struct pt_conn *c, const struct imap_arg *arg, const char *service,
                       const char *session_id);

#endif
