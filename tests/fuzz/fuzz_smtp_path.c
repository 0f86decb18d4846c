/* libFuzzer target: RFC 5321 path parsing (with and without <>), the
 * unquoting of local parts, and the invariants of a parsed path. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_path p;
	const char *rest;
	size_t restlen;
	char local[SMTP_PATH_MAX + 1];
	char *s = malloc(size ? size : 1);

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	for (int allow_null = 0; allow_null < 2; allow_null++) {
		if (smtp_parse_path(s, size, allow_null, &p, &rest, &restlen) != 0)
			continue;
		if (rest < s || rest + restlen != s + size)
			abort();
		if (p.is_null && (!allow_null || p.addrlen != 0))
			abort();
		if (p.addrlen != strlen(p.addr) || p.local_len > p.addrlen)
			abort();
		/* Nothing that could end a line or a header survives parsing. */
		if (memchr(p.addr, '\r', p.addrlen) || memchr(p.addr, '\n', p.addrlen))
			abort();
		if (p.has_domain && p.addr[p.local_len] != '@')
			abort();
		if (p.utf8 && !smtp_utf8_valid((const unsigned char *)p.addr, p.addrlen))
			abort();
		int n = smtp_path_local(&p, local, sizeof(local), 0);
		if (n >= 0 && (size_t)n != strlen(local))
			abort();
		/* Re-parsing the canonical form gives the same address. */
		if (!p.is_null) {
			struct smtp_path q;
			char again[SMTP_PATH_MAX + 3];
			size_t l = (size_t)snprintf(again, sizeof(again), "<%s>", p.addr);
			if (smtp_parse_path(again, l, 0, &q, NULL, NULL) != 0 || strcmp(q.addr, p.addr) != 0)
				abort();
		}
	}
	free(s);
	return 0;
}
