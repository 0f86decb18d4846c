/* libFuzzer target: POP3 command lines through the parser, the argument
 * splitter and number parser, the UIDL formatter (the input as a format)
 * and dot-stuffing with the TOP cut (the input as a message). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/pop3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct pop3_cmd c;
	const char *w[3];
	size_t wl[3], nw;
	uint32_t v;

	pop3_parse_command(in, size, &c);
	if (c.arg < in || c.arg + c.arglen > in + size || strlen(c.name) >= sizeof(c.name))
		abort();
	nw = pop3_split_args(c.arg, c.arglen, w, wl, 2);
	for (size_t i = 0; i < nw && i < 2; i++) {
		if (w[i] < c.arg || w[i] + wl[i] > c.arg + c.arglen || wl[i] == 0)
			abort();
		(void)pop3_parse_number(w[i], wl[i], &v);
	}

	/* As a pop3_uidl_format value: check and expansion agree. */
	char fmt[256], err[256], out[POP3_UIDL_MAX];
	size_t fl = size < sizeof(fmt) - 1 ? size : sizeof(fmt) - 1;
	memcpy(fmt, in, fl);
	fmt[fl] = 0;
	if (pop3_uidl_format_check(fmt, err, sizeof(err)) == 0 &&
	    pop3_uidl_format(fmt, 12345, 67890, out, sizeof(out)) == (size_t)-1)
		abort();

	/* As a message: stuffed output has no line starting with a lone dot
	 * that was not doubled, and TOP never ends past the data. */
	char *buf = malloc(size * 2 + 2);
	size_t o = 0, i = 0;
	int bol = 1;
	if (buf == NULL)
		return 0;
	while (i < size) {
		size_t n = 0, used = pop3_dot_stuff(in + i, size - i, buf + o, size * 2 + 2 - o, &n, &bol);
		if (used == 0 && n == 0)
			abort();
		i += used;
		o += n;
	}
	if (o > size * 2)
		abort();
	size_t hdr = size ? (size_t)data[0] % (size + 1) : 0;
	if (pop3_top_end(in, size, hdr, size ? data[size - 1] : 0) > size)
		abort();
	free(buf);
	return 0;
}
