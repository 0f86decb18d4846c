/* Address rules every module applies the same way. */
#ifndef POSTERN_ADDRESS_H
#define POSTERN_ADDRESS_H

#include <stddef.h>

/* recipient_delimiter (Postfix): "user+tag" falls back to "user" when no
 * lookup knows "user+tag" itself. Returns the length of the base name
 * ("user") when local has an extension, else 0: no delimiters set, none
 * in local, or local starts with one (no base to fall back to). Any
 * character of delimiters starts an extension. */
size_t pt_local_base_len(const char *local, const char *delimiters);

#endif
