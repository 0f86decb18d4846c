/* `postern map check FILE` and `postern map query FILE KEY`: postmap -q
 * for the text maps Postern reads directly, and a word for admins who
 * still type postmap/postalias. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "config_int.h"
#include "map.h"
#include "postern/transport.h"
#include "runtime.h"

static void
map_cli_usage(FILE *out)
{
	fputs("usage: postern map check [-a|-m|-t] FILE | postern map query [-a|-m] FILE KEY\n"
	      "(postern map --help: the options and the exit status)\n", out);
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

/* Transport names are the loaded modules' (postern/transport.h): the
 * config's module lines say which, so -t and the files named by
 * transport_maps are checked against them. */
static int
map_cli_transport_entry(void *arg, const char *path, int line, const char *key, const char *value)
{
	int *unknown = arg;
	size_t tl = strcspn(value, ":");
	char name[64];
	if (tl == 0)
		return 0;           /* ":nexthop": the default transport's */
	if (tl >= sizeof name || strcspn(value, " \t") < tl) {
		fprintf(stderr, "%s:%d: %s %s: invalid transport name\n", path, line, key, value);
		(*unknown)++;
		return 1;
	}
	for (size_t i = 0; i < tl; i++)
		name[i] = (char)tolower((unsigned char)value[i]);
	name[tl] = '\0';
	if (pt_transport_known(name))
		return 0;
	char known[300];
	pt_transport_names(known, sizeof known);
	fprintf(stderr, "%s:%d: %s %s: no loaded module provides transport \"%s\" (known: %s)\n", path,
	        line, key, value, name, known);
	(*unknown)++;
	return 1;
}

/* Is spec one of the config's transport_maps (the same file)? */
static int
map_cli_is_transport_map(const struct pt_config *c, const char *spec)
{
	char path[4096], other[4096], err[300];
	struct stat a, b;
	if (c == NULL || pt_config_owner(c, "transport_maps") == NULL ||
	    pt_map_spec_path(spec, path, sizeof path, err, sizeof err) < 0 || stat(path, &a) < 0)
		return 0;
	const struct pt_list *l = pt_conf_list(c, "transport_maps");
	for (size_t i = 0; i < l->n; i++)
		if (pt_map_spec_path(l->v[i], other, sizeof other, err, sizeof err) == 0 &&
		    stat(other, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			return 1;
	return 0;
}

static int
map_cli_check(const char *spec, enum pt_map_format fmt, int quiet, int transport)
{
	size_t n = 0;
	int unknown = 0;
	int errors = pt_map_check_each(spec, fmt, map_cli_report, NULL, &n,
	                               transport ? map_cli_transport_entry : NULL, &unknown);
	if (errors != 0) {
		if (!quiet && errors > unknown)
			fprintf(stderr, "postern map: %s: %d error%s; the server keeps using the last good "
			        "version\n", spec, errors, errors == 1 ? "" : "s");
		else if (!quiet && errors > 0)
			fprintf(stderr, "postern map: %s: %d error%s: mail routed there would wait in the queue "
			        "(\"unsupported transport\")\n", spec, errors, errors == 1 ? "" : "s");
		return 1;
	}
	if (!quiet)
		printf("%s: %zu entr%s, no errors (%s)\n", spec, n, n == 1 ? "y" : "ies",
		       fmt == PT_MAP_ALIASES ? "aliases(5) syntax"
		       : transport ? "key value syntax, transports known" : "key value syntax");
	return 0;
}

/* A lookup module's map (ldap:FILE): asked through the module, which
 * this verb may wait for. 0 found (printed), 1 not found, 2 trouble. */
static int
map_cli_query_module(const char *spec, enum pt_map_format fmt, const char *key)
{
	char err[300];
	struct pt_map *m = pt_map_open(spec, fmt, err, sizeof err);
	if (!m) {
		fprintf(stderr, "postern map: %s\n", err);
		return 2;
	}
	pt_map_set_may_block(1);
	int tempfail = 0;
	char *v = pt_map_lookup(m, key, &tempfail, NULL);
	pt_map_close(m);
	if (v)
		printf("%s\n", v);
	else if (tempfail)
		fprintf(stderr, "postern map: %s: lookup failed (temporary)\n", spec);
	free(v);
	return v ? 0 : tempfail ? 2 : 1;
}

static int
map_cli_query(const char *spec, enum pt_map_format fmt, const char *key)
{
	char path[4096], err[300];
	char mtype[32];
	const char *marg;
	if (pt_map_spec_module(spec, mtype, sizeof mtype, &marg))
		return map_cli_query_module(spec, fmt, key);
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
	return map_cli_check(spec, map_cli_guess(spec), 0, 0);
}

int
pt_cmd_map(const char *conf, int argc, char **argv)
{
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
	int force = -1, transport = 0, i = 1;
	for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		if (strcmp(argv[i], "-a") == 0)
			force = PT_MAP_ALIASES;
		else if (strcmp(argv[i], "-m") == 0)
			force = PT_MAP_KEY_VALUE;
		else if (strcmp(argv[i], "-t") == 0 && strcmp(sub, "check") == 0)
			transport = 1;
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
	if (transport && force == PT_MAP_ALIASES) {
		fprintf(stderr, "postern map: -t is a key value table: not with -a\n");
		return 2;
	}
	if (want == 2) {
		/* A module's map type (ldap:FILE) is known once the config's
		 * modules are loaded (their code, nothing run). */
		struct pt_config *mc = NULL;
		if (strchr(spec, ':') && spec[0] != '/')
			mc = pt_runtime_load_params(conf);
		enum pt_map_format fmt = force >= 0 ? (enum pt_map_format)force : map_cli_guess(spec);
		int rc = map_cli_query(spec, fmt, argv[i + 1]);
		pt_config_free(mc);
		return rc;
	}
	/* The config (its parameters and module lines, nothing run) tells
	 * which transports exist and which files are transport tables; an
	 * aliases file (-a: newaliases) is never one. */
	struct pt_config *c = force == PT_MAP_ALIASES ? NULL : pt_runtime_load_params(conf);
	if (transport && (c == NULL || pt_config_module_count(c) == 0)) {
		if (c && pt_config_error_count(c) > 0)
			fprintf(stderr, "%s\n", pt_config_error(c, 0));
		fprintf(stderr, "postern map: -t: the transports are those of the modules %s loads, "
		        "and it loads none\n", conf);
		pt_config_free(c);
		return 1;
	}
	if (!transport)
		transport = map_cli_is_transport_map(c, spec);
	enum pt_map_format fmt = force >= 0 ? (enum pt_map_format)force
	                         : transport ? PT_MAP_KEY_VALUE : map_cli_guess(spec);
	int rc = map_cli_check(spec, fmt, 0, transport);
	pt_config_free(c);
	return rc;
}
