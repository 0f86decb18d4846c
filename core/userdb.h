/* Core-internal: the passwd-file line parser of the default userdb. */
#ifndef POSTERN_USERDB_H
#define POSTERN_USERDB_H

#include <stddef.h>

#include "postern/services.h"

int pt_userdb_parse_line(const char *line, struct pt_user *out, char *err, size_t errlen);

#endif
