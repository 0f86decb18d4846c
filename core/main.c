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
	      "  why [ID] [--from A] [--to A] [--client IP] [--since T] [--rejected] [--login U] [--json]\n"
	      "                      why mail was accepted, refused or delivered (the decision record)\n"
	      "  stats [--json|--openmetrics] [--watch]   live counters of the running server\n"
	      "  user USER | auth test USER [PASSWORD]   look up a user, test a password\n"
	      "\n"
	      "Every verb takes -c FILE; POSTERN_CONF names the config too (default " DEFAULT_CONF ").\n"
	      "`postern VERB --help` (or -h, or `postern help VERB`) explains a verb and its exit status.\n"
	      "Exit status: 0 success, 1 failure or a finding (errors, not found, refused),\n"
	      "2 usage error (unknown verb or option, missing argument); some verbs add\n"
	      "their own (policy test, user, auth, sendmail: see their --help).\n",
	      out);
}

/* Each verb's --help: what it does and its exit status (README's
 * "Command line" and "Exit status" say the same). */
static const char help_run[] =
	"usage: postern run [-c FILE]\n"
	"Run the server in the foreground until SIGTERM (a graceful stop). SIGHUP reloads\n"
	"the configuration, maps and Lua policies without dropping connections; a\n"
	"configuration with errors is refused and the running one kept.\n"
	"Exit status: 0 stopped by SIGTERM; 1 could not start (configuration errors, each\n"
	"as FILE:LINE: on stderr, a port that cannot be bound, another master serving the\n"
	"queue); 2 usage error.\n";
static const char help_check[] =
	"usage: postern check [-c FILE]\n"
	"Validate everything the server would load and report every error found, in one\n"
	"run, as FILE:LINE: message on stderr: parameters (unknown names with \"did you\n"
	"mean\", bad values), module lines, restriction lists (every bad item), map\n"
	"contents (alias, transport and access maps; a missing file is an error, as at\n"
	"delivery time; transport names no loaded module provides), Lua policies and\n"
	"their tests, and listeners that would collide on one address and port.\n"
	"Exit status: 0 no errors; 1 errors found; 2 usage error.\n";
static const char help_config[] =
	"usage: postern config [-c FILE] [-n] [-l LISTENER] [NAME...]\n"
	"       postern config [-c FILE] -d [NAME...]\n"
	"Print effective parameter values as \"name = value\", like postconf, then each\n"
	"listener's own values as \"LISTENER.NAME = value\"; -n: only those the file\n"
	"sets; -l submission: the values that listener uses; -d: each parameter's\n"
	"default, owner and meaning.\n"
	"Exit status: 0 printed; 1 the configuration has errors or a NAME is unknown;\n"
	"2 usage error (also an unknown LISTENER).\n";
static const char help_signal[] =
	"usage: postern reload [-c FILE]\n"
	"       postern stop [-c FILE]\n"
	"Signal the running server (the master holding queue_directory's lock): reload\n"
	"checks the configuration, sends SIGHUP and waits for the master's answer (what\n"
	"systemctl reload runs); stop sends SIGTERM (even with a broken configuration)\n"
	"and waits up to 10 seconds for the master to exit.\n"
	"Exit status: 0 reloaded (the new configuration is in use) or stopped; 1 no\n"
	"server is running, the configuration has errors, the master refused the reload\n"
	"(its reason printed, the old configuration kept) or did not stop; 2 usage error.\n";
static const char help_stats[] =
	"usage: postern stats [-c FILE] [--json | --openmetrics] [--watch [--count N]]\n"
	"The live counters of the running server, from $queue_directory/metrics:\n"
	"connections, restriction decisions by rule, deliveries per transport, the\n"
	"queue, logins, Lua calls, TLS versions, memory per process. --json: one JSON\n"
	"document; --openmetrics: what metrics_listen serves; --watch: refresh every\n"
	"second with rates (plain blocks when not a terminal), N times with --count.\n"
	"Exit status: 0 printed; 1 no table (no server has run) or unreadable; 2 usage error.\n";
static const char help_queue[] =
	"usage: postern queue list | flush | delete ID  [-c FILE]\n"
	"list: the queued messages (active ones marked *), as mailq; flush: ask the server\n"
	"to retry deferred mail now; delete ID: remove one message.\n"
	"Exit status: 0 done; 1 the queue cannot be read, no server runs (flush), no such\n"
	"message (delete), or the configuration has errors; 2 usage error (an invalid ID).\n";
static const char help_sendmail[] =
	"usage: postern sendmail [-t] [-i] [-oi] [-f ADDR] [-F NAME] [-bs|-bp|-bi|-q] [-C FILE] [RCPT...]\n"
	"Submit a message read from stdin, as sendmail(8) does (also when the binary is\n"
	"called sendmail, mailq or newaliases); the server picks it up from the maildrop.\n"
	"Exit status: as sendmail's (sysexits.h): 0 accepted; 64 usage error; 65 bad\n"
	"message data; 75 temporary failure (queue not set up, configuration errors).\n";
static const char help_map[] =
	"usage: postern map check [-a|-m|-t] FILE  [-c FILE]\n"
	"       postern map query [-a|-m] FILE KEY\n"
	"FILE is hash:PATH, texthash:PATH or a path. -a: aliases(5) syntax (name: value);\n"
	"-m: map syntax (key value); default: guessed from the file. -t: a transport(5)\n"
	"table, whose transport names must be ones the config's modules provide (also\n"
	"checked for a file that the config's transport_maps names).\n"
	"Exit status: check: 0 no errors, 1 errors (each as FILE:LINE: on stderr);\n"
	"query: 0 KEY found (its value printed), 1 KEY absent, 2 the file cannot be read\n"
	"or has errors; 2 also for usage errors.\n";
static const char help_policy[] =
	"usage: postern policy test [-c FILE] [-v] [--listener NAME] --client IP [--client-name NAME]\n"
	"                           [--helo H] [--sender A] --recipient A [--sasl-user U]\n"
	"       postern policy test [-c FILE] [-v] [--listener NAME] --script FILE\n"
	"Evaluate the restriction lists (Lua policies included) as the server would and\n"
	"print each rule's verdict and the final reply; --listener submission: the lists\n"
	"that listener uses; --script runs the sessions of a file and compares each reply\n"
	"with the one expected. -v: also the log lines.\n"
	"Exit status: 0 accepted (also HOLD, DISCARD, WARN), 1 rejected (5xx),\n"
	"2 deferred (4xx: DEFER, a failing lookup or Lua policy, a timeout);\n"
	"--script: 0 every check passed, 1 some failed; 3 nothing could be evaluated\n"
	"(configuration errors, the restrict module not loaded, a script file that\n"
	"cannot be read or parsed); 2 also for usage errors (stderr says which).\n";
static const char help_why[] =
	"usage: postern why [-c FILE] [QUEUEID | MESSAGE-ID] [--from ADDR] [--to ADDR]\n"
	"                   [--client IP] [--since WHEN] [--until WHEN] [--rejected]\n"
	"                   [--login USER] [--limit N] [--json]\n"
	"Tell from the decision record (decision_log_file) what Postern decided and why:\n"
	"SMTP transactions (client, HELO, sender, each recipient with its reply and the\n"
	"rule that decided, the restriction trace), deliveries (where each copy went,\n"
	"the remote reply) and logins, newest first; --json for scripts. ADDR:\n"
	"user@domain, user or user@ (any domain), @domain, <>; --to also matches the\n"
	"address before alias expansion. WHEN: now, today, yesterday, 2h, 30m, 3d, 1w,\n"
	"YYYY-MM-DD[ HH:MM[:SS]][Z], @EPOCH (--until is exclusive). At most 50 events\n"
	"(--limit N, 0 for all). Without a record, a QUEUEID is looked up in maillog_file.\n"
	"Exit status: 0 something matched; 1 nothing did; 2 usage error, configuration\n"
	"errors, or no record (nor log) to read.\n";
static const char help_user[] =
	"usage: postern user [-c FILE] USER\n"
	"Look USER up in the userdb, as doveadm user: uid, gid and home, and where the\n"
	"ids of a virtual user (passwd-file without them) come from (mail_uid, mail_gid).\n"
	"Exit status: 0 found; 67 no such user; 75 temporary failure (userdb unreadable);\n"
	"1 configuration errors; 2 usage error.\n";
static const char help_auth[] =
	"usage: postern auth test [-c FILE] USER [PASSWORD]\n"
	"Check USER's password against the passdb, as doveadm auth test (the password is\n"
	"read from the terminal without echo, or a line of stdin, when not given).\n"
	"Exit status: 0 authenticated; 77 authentication failed; 75 temporary failure;\n"
	"1 configuration errors; 2 usage error.\n";

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
	const char *help;
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
	{ "run", cmd_run, help_run },
	{ "check", pt_cmd_check, help_check },
	{ "config", pt_cmd_config, help_config },
	{ "reload", cmd_reload, help_signal },
	{ "stop", cmd_stop, help_signal },
	{ "queue", pt_cmd_queue, help_queue },
	{ "sendmail", pt_cmd_sendmail, help_sendmail },
	{ "map", pt_cmd_map, help_map },
	{ "policy", pt_cmd_policy, help_policy },
	{ "why", pt_cmd_why, help_why },
	{ "stats", pt_cmd_stats, help_stats },
	{ "user", pt_cmd_user, help_user },
	{ "auth", pt_cmd_auth, help_auth },
};

static const struct verb *
find_verb(const char *name)
{
	for (size_t v = 0; v < sizeof verbs / sizeof verbs[0]; v++)
		if (strcmp(verbs[v].name, name) == 0)
			return &verbs[v];
	return NULL;
}

/* --help or -h among a verb's arguments (before "--"), so that a sub-verb
 * answers too: `postern policy test --help`. sendmail's flags are its own
 * (a recipient may look like anything, -h N is a hop count): only a first
 * --help, or a lone -h (which lacks its N), counts. */
static int
wants_help(const char *verb, int argc, char **argv)
{
	if (strcmp(verb, "sendmail") == 0)
		return (argc > 1 && strcmp(argv[1], "--help") == 0) || (argc == 2 && strcmp(argv[1], "-h") == 0);
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	return 0;
}

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
		if (i + 1 >= argc) {
			usage(stdout);
			return 0;
		}
		const struct verb *v = find_verb(argv[i + 1]);
		if (v == NULL || i + 2 < argc) {
			fprintf(stderr, "postern help: %s \"%s\" (see postern --help)\n",
			        v == NULL ? "unknown verb" : "one verb, not", v == NULL ? argv[i + 1] : argv[i + 2]);
			return 2;
		}
		fputs(v->help, stdout);
		return 0;
	}
	const struct verb *v = find_verb(verb);
	if (v == NULL) {
		fprintf(stderr, "postern: unknown verb \"%s\" (see postern --help)\n", verb);
		return 2;
	}
	int vargc = argc - i;
	char **vargv = argv + i;
	if (wants_help(verb, vargc, vargv)) {
		fputs(v->help, stdout);
		return 0;
	}
	/* sendmail keeps its own flags (-C FILE, -c is not sendmail's). */
	if (strcmp(verb, "sendmail") != 0) {
		vargc = take_conf_option(vargc, vargv, &conf);
		if (vargc < 0) {
			fprintf(stderr, "postern %s: option -c needs a FILE\n", verb);
			return 2;
		}
	}
	return v->fn(conf, vargc, vargv);
}
