/* The message body on the wire: stored LF line ends become CRLF, lines
 * starting with '.' are dot-stuffed, and the end is marked "CRLF.CRLF";
 * produced in pieces as the socket drains. */
#include <string.h>

#include "relay_int.h"

void
relay_enc_init(struct relay_enc *e)
{
	e->pos = 0;
	e->bol = 1;
	e->done = 0;
}

size_t
relay_encode(struct relay_enc *e, const char *in, size_t len, char *out, size_t cap)
{
	size_t w = 0;
	while (!e->done) {
		if (e->pos >= len) {
			/* The end: close an open last line, then the lone dot. */
			if (!e->bol) {
				if (cap - w < 2)
					break;
				out[w++] = '\r';
				out[w++] = '\n';
				e->bol = 1;
			}
			if (cap - w < 3)
				break;
			memcpy(out + w, ".\r\n", 3);
			w += 3;
			e->done = 1;
			break;
		}
		char c = in[e->pos];
		if (c == '\n' || c == '\r') {
			if (cap - w < 2)
				break;
			out[w++] = '\r';
			out[w++] = '\n';
			/* A stored CRLF is one line end, not two. */
			e->pos += (c == '\r' && e->pos + 1 < len && in[e->pos + 1] == '\n') ? 2 : 1;
			e->bol = 1;
			continue;
		}
		if (e->bol && c == '.') {
			if (cap - w < 2)
				break;
			out[w++] = '.';
			out[w++] = '.';
			e->pos++;
			e->bol = 0;
			continue;
		}
		/* A run of ordinary bytes up to the next line end. */
		if (cap - w < 1)
			break;
		size_t n = 0, room = cap - w;
		while (n < room && e->pos + n < len && in[e->pos + n] != '\n' && in[e->pos + n] != '\r')
			n++;
		memcpy(out + w, in + e->pos, n);
		w += n;
		e->pos += n;
		e->bol = 0;
	}
	return w;
}

unsigned long long
relay_encoded_size(const char *in, size_t len)
{
	struct relay_enc e;
	relay_enc_init(&e);
	char buf[4096];
	unsigned long long total = 0;
	while (!e.done)
		total += relay_encode(&e, in, len, buf, sizeof buf);
	/* SIZE= counts the message, not the terminating ".CRLF". */
	return total >= 3 ? total - 3 : 0;
}

int
relay_is_8bit(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] & 0x80)
			return 1;
	return 0;
}
