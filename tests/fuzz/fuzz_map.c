/* libFuzzer target: the map file parser in both syntaxes (postmap's
 * "key value" and postalias's "name: value"), then lookups of its keys. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int fmt = 0; fmt < 2; fmt++) {
		int nerr;
		struct pt_map_table *t = pt_map_table_parse("fuzz", (const char *)data, size,
		                                            fmt ? PT_MAP_ALIASES : PT_MAP_KEY_VALUE,
		                                            NULL, NULL, &nerr);
		if (t) {
			/* every first word of a line is a candidate key */
			char key[64];
			size_t k = 0;
			for (size_t i = 0; i <= size; i++) {
				char c = i < size ? (char)data[i] : '\n';
				if (c == '\n' || c == ' ' || c == ':' || k + 1 == sizeof(key)) {
					key[k] = 0;
					const char *v = pt_map_table_get(t, key);
					if (v)
						(void)strlen(v);
					k = 0;
				} else if (c) {
					key[k++] = c;
				}
			}
			pt_map_table_free(t);
		} else if (nerr <= 0) {
			abort();  /* refused without saying why */
		}
	}
	return 0;
}
