/* COMPRESS=DEFLATE (RFC 4978). The deflate layer is the connection's
 * (pt_conn_compress): in the user's mail process the conn carries the
 * client's bytes as they come out of TLS in the worker, so on the wire
 * TLS wraps the compressed stream, as the RFC orders. Every limit on
 * input (line length, literal size) counts inflated bytes. */
#include <string.h>
#include <strings.h>

#include "postern/conn.h"
#include "imap.h"

void
imap_cmd_compress(struct imap_session *s, const char *tag, const struct imap_arg *a, size_t n, int uid)
{
	(void)uid;
	if (n != 1 || a[0].type != IMAP_ARG_ATOM) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command COMPRESS: Invalid arguments.");
		return;
	}
	if (strcasecmp(a[0].s, "DEFLATE") != 0) {
		imap_tagged(s, tag, "BAD", "Error in IMAP command COMPRESS: Unknown compression mechanism.");
		return;
	}
	if (s->conn == NULL || pt_conn_is_compressed(s->conn)) {
		imap_tagged(s, tag, "NO", "[COMPRESSIONACTIVE] Compression already active.");
		return;
	}
	/* The OK goes out uncompressed; everything after it compressed. */
	imap_tagged(s, tag, "OK", "Begin compression.");
	if (pt_conn_compress(s->conn) != 0)
		pt_conn_close(s->conn, "error: cannot start compression");
}
