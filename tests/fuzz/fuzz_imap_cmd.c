/* libFuzzer target: bytes through the IMAP command reader, split where
 * the first byte says, every framed command parsed; the argument tree
 * must be consistent (lengths, terminators, nesting) and nothing leaks. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_args(const struct imap_arg *a, size_t n, int depth)
{
	if (depth > IMAP_ARG_DEPTH_MAX + 1)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (a[i].type == IMAP_ARG_LIST) {
			check_args(a[i].list, a[i].n, depth + 1);
			continue;
		}
		if (a[i].s == NULL || a[i].s[a[i].len] != 0)
			abort();
		if (a[i].type != IMAP_ARG_LITERAL && strlen(a[i].s) != a[i].len)
			abort();
	}
}

static void
feed(struct imap_reader *r, const char *p, size_t len)
{
	while (len > 0) {
		size_t used = 0;
		enum imap_read ev = imap_reader_feed(r, p, len, &used);
		if (used > len)
			abort();
		p += used;
		len -= used;
		if (ev == IMAP_READ_MORE) {
			if (len != 0)
				abort();
			return;
		}
		if (ev == IMAP_READ_COMMAND) {
			struct imap_command cmd;
			if (imap_command_parse(r, &cmd) == 0) {
				if (cmd.tag == NULL || cmd.name == NULL)
					abort();
				check_args(cmd.args, cmd.nargs, 0);
			}
			imap_command_free(&cmd);
		} else if (ev != IMAP_READ_CONTINUE) {
			char tag[64];
			imap_reader_tag(r, tag, sizeof(tag));
			if (strlen(tag) == 0)
				abort();
			imap_reader_reset(r);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_reader r;

	if (size == 0)
		return 0;
	/* Small limits so the fuzzer reaches them. */
	imap_reader_init(&r, 256, 512);
	size_t cut = data[0] % size;
	const char *p = (const char *)data + 1;
	size_t len = size - 1;
	if (cut > len)
		cut = len;
	feed(&r, p, cut);
	feed(&r, p + cut, len - cut);
	imap_reader_free(&r);
	return 0;
}
