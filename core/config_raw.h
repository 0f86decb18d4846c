/* Raw (unexpanded) value of a parameter as the file sets it, for the few
 * values needed before parameters can be resolved (module_directory).
 * NULL when the file does not set it. */
#ifndef POSTERN_CONFIG_RAW_H
#define POSTERN_CONFIG_RAW_H

struct pt_config;

const char *pt_config_raw(const struct pt_config *c, const char *name);
int pt_config_raw_line(const struct pt_config *c, const char *name);

#endif
