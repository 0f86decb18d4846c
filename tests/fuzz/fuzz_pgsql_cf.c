/* libFuzzer target for the pgsql module's config parser and query
 * templates: any bytes parse without a crash or leak, every error names
 * the file; for a template that compiles, the values of any key are
 * nparams strings inside the buffer they were given. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgsql/pgsql_int.h"

static char path[64];

static void
report(void *arg, int is_error, const char *msg)
{
	(void)arg;
	(void)is_error;
	if (strncmp(msg, path, strlen(path)) != 0)
		abort();
}

static void
check_query(const struct pqt *q, const char *key)
{
	if (q->nparams > PQT_MAX_PARAMS)
		abort();
	char buf[4400];
	const char *vals[PQT_MAX_PARAMS];
	int rc = pqt_values(q, key, buf, sizeof buf, vals);
	if (rc == 1)
		for (size_t i = 0; i < q->nparams; i++)
			if (!vals[i] || vals[i] < buf || vals[i] >= buf + sizeof buf)
				abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!path[0]) {
		snprintf(path, sizeof path, "/tmp/fuzz_pgsql_cf.%ld", (long)getpid());
	}
	/* the template compiler straight: up to the first NUL is the
	 * template, the rest a key */
	const char *nul = memchr(data, 0, size);
	if (nul) {
		char *tmpl = strndup((const char *)data, (size_t)(nul - (const char *)data));
		char *key = strndup(nul + 1, size - (size_t)(nul - (const char *)data) - 1);
		struct pqt q;
		char why[300];
		if (tmpl && key && pqt_compile(tmpl, &q, why, sizeof why) == 0) {
			check_query(&q, key);
			pqt_free(&q);
		}
		char out[512];
		if (tmpl && key)
			(void)pqt_format(tmpl, key, out, sizeof out);
		free(tmpl);
		free(key);
		return 0;
	}
	FILE *f = fopen(path, "w");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	struct pcf cf;
	pcf_load(path, &cf, report, NULL);
	if (cf.have_query)
		check_query(&cf.query, "user@sub.example.org");
	if (cf.have_user_query)
		check_query(&cf.user_query, "user");
	(void)pcf_domain_ok(&cf, "user@example.org");
	pcf_free(&cf);
	unlink(path);
	return 0;
}
