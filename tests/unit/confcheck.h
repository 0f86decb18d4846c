/* Shared by unit tests that check config errors: does any error of c
 * contain needle? (Prints them all when none does, to show why.) */
#ifndef POSTERN_TEST_CONFCHECK_H
#define POSTERN_TEST_CONFCHECK_H

#include <stdio.h>
#include <string.h>

#include "config_int.h"

static inline int
has_error(const struct pt_config *c, const char *needle)
{
	for (int i = 0; i < pt_config_error_count(c); i++)
		if (strstr(pt_config_error(c, i), needle))
			return 1;
	for (int i = 0; i < pt_config_error_count(c); i++)
		fprintf(stderr, "  error: %s\n", pt_config_error(c, i));
	return 0;
}

#endif
