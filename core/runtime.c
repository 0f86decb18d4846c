/* Building a usable config: syntax, the core's and the modules'
 * parameter tables, resolution, module checks. */
#include <stdio.h>

#include "config_int.h"
#include "loader.h"
#include "passdb.h"
#include "runtime.h"

const struct pt_config *pt_live_conf;

/* Core parameter tables that live beside the code using them. */
static void
extra_declare(struct pt_config *c)
{
	pt_config_declare(c, "core", pt_auth_params);
}

static struct pt_config *
load(const char *path, const char *text, size_t len, int checks)
{
	struct pt_config *c = pt_config_parse(path, text, len);
	if (c == NULL)
		return NULL;
	/* Go on after syntax errors: one `postern check` lists every problem. */
	pt_config_declare_core(c);
	extra_declare(c);
	pt_modules_load(c);
	if (pt_config_finish(c) == 0 && checks)
		pt_modules_check(c);
	return c;
}

struct pt_config *
pt_runtime_load_text(const char *path, const char *text, size_t len)
{
	return load(path, text, len, 1);
}

struct pt_config *
pt_runtime_load(const char *path)
{
	return load(path, NULL, 0, 1);
}

struct pt_config *
pt_runtime_load_params(const char *path)
{
	return load(path, NULL, 0, 0);
}

int
pt_runtime_print_errors(const struct pt_config *c, FILE *out)
{
	int n = pt_config_error_count(c);
	for (int i = 0; i < n; i++)
		fprintf(out, "%s\n", pt_config_error(c, i));
	return n;
}
