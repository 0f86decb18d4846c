/* Raw parameter values as written in the file, before resolution: what the
 * loader needs to find modules before their parameters are declared. */
#include "config_priv.h"
#include "config_raw.h"

const char *
pt_config_raw(const struct pt_config *c, const char *name)
{
	const struct pt_cfg_slot *s = pt_cfg_find(c, name);
	return s ? s->raw : NULL;
}

int
pt_config_raw_line(const struct pt_config *c, const char *name)
{
	const struct pt_cfg_slot *s = pt_cfg_find(c, name);
	return s ? s->line : 0;
}
