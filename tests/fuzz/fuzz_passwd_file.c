/* libFuzzer target for the passwd-file parser: any bytes parse without a
 * crash or leak, every entry is valid and findable, every error names a
 * line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "passwd_file.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pt_passwd_file *f = pt_passwd_file_parse("fuzz", (const char *)data, size);
	if (!f)
		return 0;
	for (size_t i = 0; i < pt_passwd_file_count(f); i++) {
		const struct pt_passwd_entry *e = pt_passwd_file_entry(f, i);
		size_t ul = strlen(e->user);
		if (ul == 0 || ul > PT_PASSWD_USER_MAX || strchr(e->user, ':') || strchr(e->user, '\n'))
			abort();
		if (e->uid == 0 || e->gid == 0 || e->uid < PT_PASSWD_ID_NAME || e->gid < PT_PASSWD_ID_NAME)
			abort();
		if (*e->home && e->home[0] != '/')
			abort();
		if (pt_passwd_file_find(f, e->user) != e)
			abort();
		if (e->line < 1)
			abort();
	}
	for (int i = 0; i < pt_passwd_file_error_count(f); i++)
		if (strncmp(pt_passwd_file_error(f, i), "fuzz:", 5) != 0)
			abort();
	pt_passwd_file_free(f);
	return 0;
}
