/* The postern command: git-style verbs over one config file. Also answers
 * to the names sendmail, mailq and newaliases. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config_int.h"
#include "proctitle.h"
#include "runtime.h"

#define DEFAULT_CONF "/etc/postern/postern.conf"


static void
usage(FILE *out)
{
	fputs("usage: postern [-c FILE] VERB [ARGS]\n"
	      "\n"
	      "  run                 run the server in the foreground (SIGHUP reloads, SIGTERM stops)\n"
	      "  check               validate config, modules, maps and policies (exit 1 on errors)\n"
	      "  config [-n] [-l LISTENER] [NAME...]  print effective parameter values (-n: only those set;\n"
	      "                         -l: as that listener uses them)\n"
	      "  config -d [NAME...]  print each parameter's default and meaning\n"
	      "  reload | stop       signal the running server\n"
	      "  queue list|flush|delete ID   manage the mail queue (mailq = queue list)\n"
	      "  sendmail [FLAGS] [RCPT...]   sendmail-compatible mail submission\n"
	      "  map check FILE | map query FILE KEY   validate or query a map file\n"
	      "  policy test --client IP [--helo H] [--sender A] --recipient A [--sasl-user U]\n"
	      "                      show how the restriction chains decide\n"
	      "  why QUEUEID         print the decision trace of a message\n"
	      "  stats [--json|--openmetrics] [--watch]   live counters of the running server\n"
	      "  user USER | auth test USER [PASSWORD]   look up a user, test a password\n"
	      "\n"
	      "Every verb takes -c FILE; POSTERN_CONF names the config too (default " DEFAULT_CONF ").\n",
	      out);
}

/* Remove "-c FILE" (anywhere before a "--") from argv; returns the new argc
 * or -1 when -c lacks its argument. */
static int
take_conf_option(int argc, char **argv, const char **conf)
{
	int out = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			while (i < argc)
				argv[out++] = argv[i++];
			break;
		}
		if (strcmp(argv[i], "-c") == 0) {
			if (i + 1 >= argc)
				return -1;
			*conf = argv[++i];
			continue;
		}
		if (strncmp(argv[i], "-c", 2) == 0 && argv[i][2] != '\0' && argv[i][1] == 'c') {
			*conf = argv[i] + 2;
			continue;
		}
		argv[out++] = argv[i];
	}
	argv[out] = NULL;
	return out;
}

static int
no_more_args(const char *verb, int argc, char **argv)
{
	if (argc > 1) {
		if (argv[1][0] == '-')
			fprintf(stderr, "postern %s: unknown option %s\n", verb, argv[1]);
		else
			fprintf(stderr, "postern %s: unexpected argument %s\n", verb, argv[1]);
		return 0;
	}
	return 1;
}

int
pt_cmd_check(const char *conf, int argc, char **argv)
{
	if (!no_more_args("check", argc, argv))
		return 2;
	struct pt_config *c = pt_runtime_load(conf);
	if (c == NULL) {
		fprintf(stderr, "postern: out of memory\n");
		return 1;
	}
	int n = pt_runtime_print_errors(c, stderr);
	pt_config_free(c);
	return n ? 1 : 0;
}

int
pt_cmd_config(const char *conf, int argc, char **argv)
{
	int only_set = 0, doc = 0;
	const char *listener = NULL;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-n") == 0)
			only_set = 1;
		else if (strcmp(argv[i], "-l") == 0 && i + 1 < argc)
			listener = argv[++i];
		else if (strcmp(argv[i], "-d") == 0)
			doc = 1;
		else if (strcmp(argv[i], "--markdown") == 0)
			doc = 2;
		else if (strcmp(argv[i], "--man") == 0)
			doc = 3;
		else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else {
			fprintf(stderr, "postern config: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	struct pt_config *c = pt_runtime_load(conf);
	if (c == NULL)
		return 1;
	if (pt_runtime_print_errors(c, stderr) > 0) {
		pt_config_free(c);
		return 1;
	}
	if (listener && !pt_config_listener_known(c, listener)) {
		fprintf(stderr, "postern config: unknown listener %s\n", listener);
		pt_config_free(c);
		return 2;
	}
	/* -l: the values that listener's sessions use (its view). */
	int rc = doc ? pt_config_doc(c, stdout, doc - 1, argv + i, argc - i)
	             : pt_config_dump(listener ? pt_conf_listener(c, listener) : c, stdout, only_set,
	                              argv + i, argc - i);
	pt_config_free(c);
	return rc;
}

struct verb {
	const char *name;
	int (*fn)(const char *conf, int argc, char **argv);
};

static int cmd_reload(const char *conf, int argc, char **argv)
{
	if (!no_more_args("reload", argc, argv))
		return 2;
	return pt_cmd_signal(conf, SIGHUP);
}

static int cmd_stop(const char *conf, int argc, char **argv)
{
	if (!no_more_args("stop", argc, argv))
		return 2;
	return pt_cmd_signal(conf, SIGTERM);
}

static int cmd_run(const char *conf, int argc, char **argv)
{
	if (!no_more_args("run", argc, argv))
		return 2;
	return pt_cmd_run(conf, argc, argv);
}

static const struct verb verbs[] = {
	{ "run", cmd_run },
	{ "check", pt_cmd_check },
	{ "config", pt_cmd_config },
	{ "reload", cmd_reload },
	{ "stop", cmd_stop },
	{ "queue", pt_cmd_queue },
	{ "sendmail", pt_cmd_sendmail },
	{ "map", pt_cmd_map },
	{ "policy", pt_cmd_policy },
	{ "why", pt_cmd_why },
	{ "stats", pt_cmd_stats },
	{ "user", pt_cmd_user },
	{ "auth", pt_cmd_auth },
};

int
main(int argc, char **argv)
{
	/* Before anything reads argv or the environment (`run` titles its processes). */
	pt_proctitle_init(argc, argv);
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	int rc = pt_sendmail_personality(base, argc, argv);
	if (rc >= 0)
		return rc;

	const char *conf = getenv("POSTERN_CONF");
	if (conf == NULL || *conf == '\0')
		conf = DEFAULT_CONF;
	/* Options before the verb: only -c, -h/--help, --version. */
	int i = 1;
	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			conf = argv[i + 1];
			i += 2;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--version") == 0) {
			puts("postern " POSTERN_VERSION);
			return 0;
		} else if (strcmp(argv[i], "-c") == 0) {
			fprintf(stderr, "postern: option -c needs a FILE\n");
			return 2;
		} else {
			fprintf(stderr, "postern: unknown option %s (see postern --help)\n", argv[i]);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	const char *verb = argv[i];
	if (strcmp(verb, "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t v = 0; v < sizeof verbs / sizeof verbs[0]; v++) {
		if (strcmp(verbs[v].name, verb) != 0)
			continue;
		int vargc = argc - i;
		char **vargv = argv + i;
		/* sendmail keeps its own flags (-C FILE, -c is not sendmail's). */
		if (strcmp(verb, "sendmail") != 0) {
			vargc = take_conf_option(vargc, vargv, &conf);
			if (vargc < 0) {
				fprintf(stderr, "postern %s: option -c needs a FILE\n", verb);
				return 2;
			}
		}
		if (vargc > 1 && (strcmp(vargv[1], "--help") == 0 || strcmp(vargv[1], "-h") == 0)) {
			usage(stdout);
			return 0;
		}
		return verbs[v].fn(conf, vargc, vargv);
	}
	fprintf(stderr, "postern: unknown verb \"%s\" (see postern --help)\n", verb);
	return 2;
}
