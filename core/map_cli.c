/* `postern map check FILE` and `postern map query FILE KEY`: postmap -q
 * for the text maps Postern reads directly, and a word for admins who
 * still type postmap/postalias. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "map.h"

static void
map_cli_usage(FILE *out)
{
	fputs("usage: postern map check [-a|-m] FILE\n"
	      "       postern map query [-a|-m] FILE KEY\n"
	      "FILE is hash:PATH, texthash:PATH or a path; -a: aliases(5) syntax (name: value),\n"
	      "-m: map syntax (key value); default: guessed from the file.\n"
	      "query prints the value and exits 0, or exits 1 when KEY is absent\n"
	      "(2 when the file has errors).\n", out);
}

static void
map_cli_report(void *arg, int is_error, const char *msg)
{
	(void)arg;
	(void)is_error;
	fprintf(stderr, "%s\n", msg);
}

/* aliases(5) when the first entry looks like "name:" or "\"name\":". */
static enum pt_map_format
map_cli_guess(const char *spec)
{
	char path[4096], err[300];
	if (pt_map_spec_path(spec, path, sizeof(path), err, sizeof(err)) < 0)
		return PT_MAP_KEY_VALUE;
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	if (strncmp(base, "aliases", 7) == 0)
		return PT_MAP_ALIASES;
	char *text;
	size_t len;
	if (pt_map_read_file(path, &text, &len) < 0)
		return PT_MAP_KEY_VALUE;
	enum pt_map_format fmt = PT_MAP_KEY_VALUE;
	const char *p = text;
	while (p < text + len) {
		const char *nl = memchr(p, '\n', (size_t)(text + len - p));
		const char *end = nl ? nl : text + len;
		if (p < end && *p != '#' && *p != ' ' && *p != '\t' && *p != '\r') {
			size_t tok = strcspn(p, " \t\r\n");
			if (*p == '"' || (tok > 0 && p[tok - 1] == ':') ||
			    (p + tok < end && memchr(p + tok, ':', 1 + strspn(p + tok, " \t")) != NULL))
				fmt = PT_MAP_ALIASES;
			break;
		}
		p = end + 1;
	}
	free(text);
	return fmt;
}

static int
map_cli_check(const char *spec, enum pt_map_format fmt, int quiet)
{
	size_t n = 0;
	int errors = pt_map_check(spec, fmt, map_cli_report, NULL, &n);
	if (errors != 0) {
		if (!quiet && errors > 0)
			fprintf(stderr, "postern map: %s: %d error%s; the server keeps using the last good "
			        "version\n", spec, errors, errors == 1 ? "" : "s");
		return 1;
	}
	if (!quiet)
		printf("%s: %zu entr%s, no errors (%s syntax)\n", spec, n, n == 1 ? "y" : "ies",
		       fmt == PT_MAP_ALIASES ? "aliases(5)" : "key value");
	return 0;
}

static int
map_cli_query(const char *spec, enum pt_map_format fmt, const char *key)
{
	char path[4096], err[300];
	if (pt_map_spec_path(spec, path, sizeof(path), err, sizeof(err)) < 0) {
		fprintf(stderr, "postern map: %s\n", err);
		return 2;
	}
	char *text;
	size_t len;
	if (pt_map_read_file(path, &text, &len) < 0) {
		fprintf(stderr, "postern map: %s: cannot open: %s\n", path, strerror(errno));
		return 2;
	}
	int nerr;
	struct pt_map_table *t = pt_map_table_parse(path, text, len, fmt, map_cli_report, NULL, &nerr);
	free(text);
	if (!t)
		return 2;
	const char *v = pt_map_table_get(t, key);
	if (v)
		printf("%s\n", v);
	pt_map_table_free(t);
	return v ? 0 : 1;
}

/* postmap/postalias habits: nothing to compile, say how to check. */
static int
map_cli_habit(const char *tool, const char *spec)
{
	printf("postern reads %s directly: no %s step and no .db file are needed.\n"
	       "Changes are picked up within a second, without a reload; a file with errors\n"
	       "is refused and the last good version stays in use.\n"
	       "  check it:     postern map check %s\n"
	       "  look up KEY:  postern map query %s KEY\n",
	       spec, tool, spec, spec);
	return map_cli_check(spec, map_cli_guess(spec), 0);
}

int
pt_cmd_map(const char *conf, int argc, char **argv)
{
	(void)conf;
	/* argv[0] is the verb itself */
	argc--;
	argv++;
	if (argc < 1) {
		map_cli_usage(stderr);
		return 2;
	}
	const char *sub = argv[0];
	if (strcmp(sub, "check") != 0 && strcmp(sub, "query") != 0) {
		if ((strcmp(sub, "postmap") == 0 || strcmp(sub, "postalias") == 0) && argc == 2)
			return map_cli_habit(sub, argv[1]);
		if (argc == 1 && sub[0] != '-')
			return map_cli_habit(strstr(sub, "alias") ? "postalias" : "postmap", sub);
		fprintf(stderr, "postern map: unknown command \"%s\" (use check or query)\n", sub);
		return 2;
	}
	int force = -1, i = 1;
	for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		if (strcmp(argv[i], "-a") == 0)
			force = PT_MAP_ALIASES;
		else if (strcmp(argv[i], "-m") == 0)
			force = PT_MAP_KEY_VALUE;
		else {
			fprintf(stderr, "postern map: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	int want = strcmp(sub, "check") == 0 ? 1 : 2;
	if (argc - i != want) {
		fprintf(stderr, "postern map: %s needs %s\n", sub, want == 1 ? "FILE" : "FILE KEY");
		return 2;
	}
	const char *spec = argv[i];
	enum pt_map_format fmt = force >= 0 ? (enum pt_map_format)force : map_cli_guess(spec);
	if (want == 1)
		return map_cli_check(spec, fmt, 0);
	return map_cli_query(spec, fmt, argv[i + 1]);
}
