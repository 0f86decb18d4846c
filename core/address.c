/* Address rules shared by core and modules (include/postern/address.h). */
#include <string.h>

#include "postern/address.h"

size_t
pt_local_base_len(const char *local, const char *delimiters)
{
	if (!delimiters || !*delimiters)
		return 0;
	size_t n = strcspn(local, delimiters);
	return n > 0 && local[n] ? n : 0;
}
