/* libFuzzer target: arbitrary text through the whole config pipeline
 * (syntax, module lines, core + a small extra table, finish, dump, free). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config_int.h"

static int
fuzz_validator(const char *v, char *err, size_t errlen)
{
	if (strchr(v, '!') != NULL) {
		snprintf(err, errlen, "no '!' here");
		return -1;
	}
	return 0;
}

static const struct pt_param extra[] = {
	{"f_str", PT_STR, "$myhostname x", fuzz_validator, "", 0, 0},
	{"f_bool", PT_BOOL, "yes", NULL, "", 0, 0},
	{"f_int", PT_INT, "3", NULL, "", -5, 5},
	{"f_size", PT_SIZE, "1m", NULL, "", 0, 0},
	{"f_time", PT_TIME, "1h", NULL, "", 0, 0},
	{"f_list", PT_LIST, "a b, c", NULL, "", 0, 0},
	{"f_cidrs", PT_CIDR_LIST, "127.0.0.0/8 [::1]/128", NULL, "", 0, 0},
	{"f_listen", PT_HOSTPORT_LIST, "25 [::1]:26", NULL, "", 0, 0},
	{"f_path", PT_PATH, "/x", NULL, "", 0, 0},
	{NULL, 0, NULL, NULL, NULL, 0, 0},
};

static FILE *devnull;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pt_config *c;

	if (devnull == NULL)
		devnull = fopen("/dev/null", "w");
	c = pt_config_parse("fuzz.cf", (const char *)data, size);
	if (c == NULL)
		return 0;
	pt_config_declare_core(c);
	pt_config_declare(c, "fuzz", extra);
	pt_config_finish(c);
	for (int i = 0; i < pt_config_error_count(c); i++)
		fputs(pt_config_error(c, i), devnull);
	for (size_t i = 0; i < pt_config_module_count(c); i++)
		fprintf(devnull, "%s %s %d\n", pt_config_module_name(c, i),
			pt_config_module_path(c, i) ? pt_config_module_path(c, i) : "-", pt_config_module_line(c, i));
	if (devnull != NULL) {
		pt_config_dump(c, devnull, 0, NULL, 0);
		pt_config_dump(c, devnull, 1, NULL, 0);
	}
	/* Accessors must hold up whatever the errors were. */
	fprintf(devnull, "%s %d %lld %zu %zu %zu\n", pt_conf_str(c, "f_str"), pt_conf_bool(c, "f_bool"),
		pt_conf_int(c, "f_size"), pt_conf_list(c, "f_list")->n, pt_conf_cidrs(c, "f_cidrs")->n,
		pt_conf_hostports(c, "f_listen")->n);
	pt_config_free(c);
	return 0;
}
