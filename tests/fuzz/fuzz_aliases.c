/* libFuzzer target: aliases(5) right-hand sides (destinations, quoting,
 * |commands, :include:) and :include: file text. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alias/alias.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
check_target(void *arg, enum pt_alias_target kind, const char *text)
{
	size_t *n = arg;
	if (!*text || kind > PT_ALIAS_INCLUDE)
		abort();      /* empty destinations are never reported */
	if (kind == PT_ALIAS_FILE && text[0] != '/')
		abort();
	(*n)++;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *value = malloc(size + 1);
	if (!value)
		return 0;
	memcpy(value, data, size);
	value[size] = 0;
	size_t n = 0;
	alias_parse_value(value, check_target, &n);
	char *inc = alias_include_text((const char *)data, size);
	if (inc) {
		alias_parse_value(inc, check_target, &n);
		free(inc);
	}
	free(value);
	return 0;
}
