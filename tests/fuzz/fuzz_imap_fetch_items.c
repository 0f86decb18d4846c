/* Fuzz the FETCH attribute parser: the input is one attribute atom and,
 * split at spaces, a parenthesised list of them (also as the modifier
 * list after FLAGS); both UID and plain. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_fetch.h"

#define FUZZ_ITEMS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
parse_both(const struct imap_arg *a, size_t n)
{
	for (int uid = 0; uid < 2; uid++) {
		struct imap_fetch_req r;
		char err[128];

		if (imap_fetch_parse(a, n, uid, &r, err, sizeof err) == 0) {
			/* Every parsed item has a reply name. */
			for (size_t i = 0; i < r.n; i++)
				if (!r.items[i].name || !r.items[i].name[0])
					abort();
			imap_fetch_req_free(&r);
		} else if (r.n != 0 || r.items || !err[0]) {
			abort();
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	struct imap_arg atom, list, items[FUZZ_ITEMS];
	size_t n = 0, start = 0;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	/* exact length: an atom may hold NUL bytes the parser must not trust */
	atom = (struct imap_arg){ .type = IMAP_ARG_ATOM, .s = text, .len = size };
	parse_both(&atom, 1);

	for (size_t i = 0; i <= size && n < FUZZ_ITEMS; i++) {
		if (i == size || text[i] == ' ') {
			text[i] = '\0';
			items[n++] = (struct imap_arg){ .type = IMAP_ARG_ATOM, .s = text + start,
			                                .len = i - start };
			start = i + 1;
		}
	}
	list = (struct imap_arg){ .type = IMAP_ARG_LIST, .list = items, .n = n };
	parse_both(&list, 1);
	/* The same list as FETCH modifiers (CHANGEDSINCE n VANISHED). */
	struct imap_arg two[2] = { { .type = IMAP_ARG_ATOM, .s = "FLAGS", .len = 5 }, list };
	parse_both(two, 2);
	free(text);
	return 0;
}
