/* `postern policy test` (evaluate the restriction lists as the server
 * would, against the live config, one request or a scripted file of
 * sessions) and `postern why QUEUEID` (the decision trace of a message,
 * from the mail log). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config_int.h"
#include "loader.h"
#include "log_int.h"
#include "policy_script.h"
#include "postern/event.h"
#include "postern/fdio.h"
#include "postern/module.h"
#include "postern/services.h"
#include "process.h"
#include "runtime.h"

#define EVAL_TIMEOUT_MS 60000
/* Exit status of policy test: 0 accept, 1 reject, 2 defer (and usage
 * errors, as every verb); nothing could be evaluated: */
#define EXIT_CANNOT_EVALUATE 3
#define SCRIPT_FILE_MAX (16 * 1024 * 1024)

struct policy_env {
	struct pt_config *conf;
	struct pt_loop *loop;
	const struct pt_restrict_ops *ops;
	struct pt_ctx ctx;
};

struct answer {
	int done, waiting, timed_out;
	struct pt_verdict v;
	char *trace;
	struct pt_loop *loop;
};

static void
on_verdict(void *arg, const struct pt_verdict *v)
{
	struct answer *a = arg;
	a->done = 1;
	a->v = *v;
	a->v.trace = NULL;
	a->trace = strdup(v->trace ? v->trace : "");
	if (a->waiting)
		pt_loop_stop(a->loop);
}

static void
on_timeout(struct pt_loop *loop, void *arg)
{
	struct answer *a = arg;
	a->timed_out = 1;
	pt_loop_stop(loop);
}

/* Evaluate one request; the answer comes from the loop (services.h). On
 * a timeout the answer struct is left behind on purpose: a late callback
 * may still write to it before the process exits. */
static struct answer *
ask(struct policy_env *env, const struct pt_policy_request *req)
{
	struct answer *a = calloc(1, sizeof *a);
	if (a == NULL)
		return NULL;
	a->loop = env->loop;
	if (env->ops->evaluate(env->loop, req, on_verdict, a) != 0) {
		/* Refused (out of memory): no answer is coming. */
		a->done = 1;
		a->v.kind = PT_VERDICT_DEFER;
		snprintf(a->v.reply, sizeof a->v.reply, "451 4.3.0 Error: out of memory");
		snprintf(a->v.rule, sizeof a->v.rule, "internal");
		a->trace = strdup("");
	}
	if (!a->done) {
		a->waiting = 1;
		struct pt_timer *t = pt_timer_add(env->loop, EVAL_TIMEOUT_MS, on_timeout, a);
		pt_loop_run(env->loop);
		if (!a->timed_out)
			pt_timer_cancel(env->loop, t);
		if (!a->done) {
			a->v.kind = PT_VERDICT_DEFER;
			snprintf(a->v.reply, sizeof a->v.reply, "451 4.4.3 Error: evaluation timed out");
			snprintf(a->v.rule, sizeof a->v.rule, "timeout");
		}
	}
	return a;
}

static void
answer_free(struct answer *a)
{
	if (a && !a->timed_out) {
		free(a->trace);
		free(a);
	}
}

/* Policies run as the worker runs them, as mail_owner: no root process
 * runs Lua or opens a policy map, and a file the worker cannot read
 * fails here too. */
static int
become_mail_owner(const struct pt_config *c)
{
	const char *owner = pt_conf_str(c, "mail_owner");
	struct passwd pw, *res = NULL;
	char buf[4096];
	if (getpwnam_r(owner, &pw, buf, sizeof buf, &res) != 0 || res == NULL || pw.pw_uid == 0) {
		fprintf(stderr, "postern policy: mail_owner \"%s\" is not a user other than root; as root the "
		        "policies run as mail_owner\n", owner);
		return -1;
	}
	if (pt_process_drop_privileges(pw.pw_uid, pw.pw_gid) != 0) {
		fprintf(stderr, "postern policy: cannot become mail_owner %s: %s\n", owner, strerror(errno));
		return -1;
	}
	return 0;
}

static int
env_open(struct policy_env *env, const char *conf, int verbose)
{
	memset(env, 0, sizeof *env);
	env->conf = pt_runtime_load(conf);
	if (env->conf == NULL) {
		fprintf(stderr, "postern: out of memory\n");
		return -1;
	}
	if (pt_runtime_print_errors(env->conf, stderr) > 0) {
		pt_config_free(env->conf);
		env->conf = NULL;   /* env_close frees what is left */
		return -1;
	}
	pt_live_conf = env->conf;
	/* Reject and policy log lines would repeat what is printed. */
	if (!verbose)
		pt_log_open("/dev/null");
	if (geteuid() == 0 && become_mail_owner(env->conf) != 0)
		return -1;
	env->loop = pt_loop_new();
	env->ctx = (struct pt_ctx){ .conf = env->conf, .loop = env->loop, .as_root = geteuid() == 0,
		.role = PT_ROLE_CLI };
	if (env->loop == NULL || pt_modules_init(&env->ctx) != 0) {
		fprintf(stderr, "postern policy: module initialisation failed\n");
		return -1;
	}
	env->ops = pt_service_get(PT_SVC_RESTRICT);
	if (env->ops == NULL || env->ops->evaluate == NULL) {
		fprintf(stderr, "postern policy: the restrict module is not loaded "
		        "(add \"module restrict\" to %s)\n", conf);
		return -1;
	}
	return 0;
}

static void
env_close(struct policy_env *env)
{
	if (env->loop)
		pt_modules_stop(&env->ctx);
	pt_live_conf = NULL;
	if (env->conf)
		pt_config_free(env->conf);
	if (env->loop)
		pt_loop_free(env->loop);
}

/* One SMTP session as the server sees it. */
struct session {
	char client[64], client_name[256], helo[520], sasl[520], sender[520];
	struct sockaddr_storage sa;
	int have_sa, have_mail;
};

static int
session_client(struct session *s, const char *addr, const char *name)
{
	memset(s, 0, sizeof *s);
	snprintf(s->client, sizeof s->client, "%s", addr);
	snprintf(s->client_name, sizeof s->client_name, "%s", name && *name ? name : "unknown");
	struct sockaddr_in *in = (struct sockaddr_in *)&s->sa;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&s->sa;
	if (inet_pton(AF_INET, addr, &in->sin_addr) == 1)
		in->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1)
		in6->sin6_family = AF_INET6;
	else
		return -1;
	s->have_sa = 1;
	return 0;
}

/* --listener: the listener whose chains apply (NULL: the file's). */
static const char *policy_listener;

static void
fill(const struct session *s, enum pt_stage stage, const char *rcpt, struct pt_policy_request *r)
{
	memset(r, 0, sizeof *r);
	r->stage = stage;
	r->listener = policy_listener;
	r->protocol_name = "ESMTP";
	r->client_address = s->client;
	r->client_name = s->client_name;
	r->reverse_client_name = s->client_name;
	r->helo_name = s->helo;
	r->sender = s->sender;
	r->recipient = rcpt ? rcpt : "";
	r->queue_id = "";
	r->sasl_username = s->sasl;
	r->sasl_method = s->sasl[0] ? "PLAIN" : "";
	r->encryption_protocol = "";
	r->encryption_cipher = "";
	r->recipient_count = 0;
	r->client_sa = s->have_sa ? (const struct sockaddr *)&s->sa : NULL;
}

static const char *
accept_reply(enum pt_stage st)
{
	switch (st) {
	case PT_STAGE_CONNECT: return "220";
	case PT_STAGE_MAIL: return "250 2.1.0 Ok";
	case PT_STAGE_RCPT: return "250 2.1.5 Ok";
	default: return "250";
	}
}

static int
exit_code(const struct pt_verdict *v)
{
	return v->kind == PT_VERDICT_REJECT ? 1 : v->kind == PT_VERDICT_DEFER ? 2 : 0;
}

static const char *
verdict_reply(const struct pt_verdict *v, enum pt_stage st)
{
	return (v->kind == PT_VERDICT_REJECT || v->kind == PT_VERDICT_DEFER) ? v->reply : accept_reply(st);
}

/* Print a trace indented, without its "result:" line. */
static void
print_trace(const char *trace)
{
	for (const char *t = trace; t && *t;) {
		const char *nl = strchr(t, '\n');
		size_t len = nl ? (size_t)(nl - t) : strlen(t);
		if (strncmp(t, "result: ", 8) != 0)
			printf("  %.*s\n", (int)len, t);
		t += len + (nl != NULL);
	}
}

static int
single_test(struct policy_env *env, const char *client, const char *client_name, const char *helo,
            const char *sender, const char *rcpt, const char *sasl)
{
	struct session s;
	if (session_client(&s, client, client_name) < 0) {
		fprintf(stderr, "postern policy test: --client %s is not an IP address\n", client);
		return 2;
	}
	snprintf(s.helo, sizeof s.helo, "%s", helo ? helo : "");
	snprintf(s.sender, sizeof s.sender, "%s", sender ? sender : "");
	snprintf(s.sasl, sizeof s.sasl, "%s", sasl ? sasl : "");
	static const enum pt_stage stages[] = { PT_STAGE_CONNECT, PT_STAGE_HELO, PT_STAGE_MAIL,
		PT_STAGE_RCPT };
	static const char *const names[] = { "CONNECT", "HELO", "MAIL", "RCPT" };
	for (size_t i = 0; i < 4; i++) {
		if (stages[i] == PT_STAGE_HELO && s.helo[0] == '\0')
			continue;
		struct pt_policy_request req;
		fill(&s, stages[i], stages[i] == PT_STAGE_RCPT ? rcpt : NULL, &req);
		struct answer *a = ask(env, &req);
		if (a == NULL) {
			fprintf(stderr, "postern policy test: out of memory\n");
			return 2;
		}
		int has_lists = a->trace && strchr(a->trace, ':') && strncmp(a->trace, "result:", 7) != 0;
		if (has_lists || stages[i] == PT_STAGE_RCPT) {
			printf("%s%s%s%s:\n", names[i], stages[i] == PT_STAGE_RCPT ? " TO:<" : "",
			       stages[i] == PT_STAGE_RCPT ? rcpt : "", stages[i] == PT_STAGE_RCPT ? ">" : "");
			print_trace(a->trace);
		}
		int rc = exit_code(&a->v);
		if (rc != 0 || stages[i] == PT_STAGE_RCPT) {
			printf("result: %s%s%s%s\n", verdict_reply(&a->v, stages[i]),
			       a->v.rule[0] ? " (rule " : "", a->v.rule, a->v.rule[0] ? ")" : "");
			if (a->v.kind == PT_VERDICT_HOLD || a->v.kind == PT_VERDICT_DISCARD)
				printf("note: the message would be %s\n",
				       a->v.kind == PT_VERDICT_HOLD ? "held" : "discarded");
			if (a->v.prepend[0])
				printf("prepend: %s\n", a->v.prepend);
			answer_free(a);
			return rc;
		}
		answer_free(a);
	}
	return 0;
}

static int
script_check(struct policy_env *env, const struct session *s, enum pt_stage st, const char *rcpt,
             const struct pt_pscript_step *step, const char *file, int *failed)
{
	struct pt_policy_request req;
	fill(s, st, rcpt, &req);
	struct answer *a = ask(env, &req);
	if (a == NULL)
		return -1;
	const char *got = verdict_reply(&a->v, st);
	int ok;
	if (step->has_expect)
		ok = strncmp(got, step->expect, strlen(step->expect)) == 0;
	else
		ok = exit_code(&a->v) == 0;
	if (ok) {
		printf("ok   %s:%d: %s\n", file, step->line, got);
	} else {
		(*failed)++;
		printf("FAIL %s:%d: expected %s%s, got %s%s%s%s\n", file,
		       step->has_expect ? step->expect_line : step->line,
		       step->has_expect ? "" : "no refusal", step->has_expect ? step->expect : "", got,
		       a->v.rule[0] ? " (rule " : "", a->v.rule, a->v.rule[0] ? ")" : "");
		print_trace(a->trace);
	}
	answer_free(a);
	return 0;
}

static char *
read_script(const char *path, size_t *len)
{
	int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return NULL;
	char *buf = NULL;
	int rc = pt_read_all(fd, SCRIPT_FILE_MAX, &buf, len);
	int e = errno;
	if (fd != STDIN_FILENO)
		close(fd);
	errno = e;
	return rc == 0 ? buf : NULL;
}

static int
script_test(struct policy_env *env, const char *file)
{
	size_t len;
	char *text = read_script(file, &len);
	if (text == NULL) {
		fprintf(stderr, "postern policy test: %s: %s\n", file, strerror(errno));
		return EXIT_CANNOT_EVALUATE;
	}
	struct pt_pscript_step *steps;
	size_t n;
	char err[300];
	int rc = pt_policy_script_parse(text, len, &steps, &n, err, sizeof err);
	free(text);
	if (rc < 0) {
		fprintf(stderr, "%s:%s\n", file, err);
		return EXIT_CANNOT_EVALUATE;
	}
	struct session s;
	memset(&s, 0, sizeof s);
	int failed = 0, checks = 0;
	for (size_t i = 0; i < n; i++) {
		const struct pt_pscript_step *st = &steps[i];
		switch (st->op) {
		case PT_PSCRIPT_CLIENT:
			if (session_client(&s, st->arg, st->arg2) < 0) {
				fprintf(stderr, "%s:%d: %s is not an IP address\n", file, st->line, st->arg);
				free(steps);
				return EXIT_CANNOT_EVALUATE;
			}
			checks++;
			script_check(env, &s, PT_STAGE_CONNECT, NULL, st, file, &failed);
			break;
		case PT_PSCRIPT_HELO:
			snprintf(s.helo, sizeof s.helo, "%s", st->arg);
			checks++;
			script_check(env, &s, PT_STAGE_HELO, NULL, st, file, &failed);
			break;
		case PT_PSCRIPT_SASL:
			snprintf(s.sasl, sizeof s.sasl, "%s", st->arg);
			break;
		case PT_PSCRIPT_MAIL:
			snprintf(s.sender, sizeof s.sender, "%s", st->arg);
			checks++;
			script_check(env, &s, PT_STAGE_MAIL, NULL, st, file, &failed);
			break;
		case PT_PSCRIPT_RCPT:
			checks++;
			script_check(env, &s, PT_STAGE_RCPT, st->arg, st, file, &failed);
			break;
		}
	}
	free(steps);
	printf("%d checks, %d failed\n", checks, failed);
	return failed ? 1 : 0;
}

static void
policy_usage(void)
{
	fprintf(stderr, "usage: postern policy test [-c FILE] [-v] [--listener NAME] --client IP "
	        "[--client-name NAME] [--helo H] [--sender A] --recipient A [--sasl-user U]\n"
	        "       postern policy test [-c FILE] [-v] [--listener NAME] --script FILE\n"
	        "(postern policy --help: exit status 0 accept, 1 reject, 2 defer, 3 cannot evaluate)\n");
}

int
pt_cmd_policy(const char *conf, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "test") != 0) {
		if (argc >= 2)
			fprintf(stderr, "postern policy: unknown subcommand %s\n", argv[1]);
		policy_usage();
		return 2;
	}
	const char *client = NULL, *client_name = NULL, *helo = NULL, *sender = NULL;
	const char *rcpt = NULL, *sasl = NULL, *script = NULL, *listener = NULL;
	int verbose = 0;
	for (int i = 2; i < argc; i++) {
		const char **slot = NULL;
		if (strcmp(argv[i], "--client") == 0)
			slot = &client;
		else if (strcmp(argv[i], "--client-name") == 0)
			slot = &client_name;
		else if (strcmp(argv[i], "--helo") == 0)
			slot = &helo;
		else if (strcmp(argv[i], "--sender") == 0)
			slot = &sender;
		else if (strcmp(argv[i], "--recipient") == 0)
			slot = &rcpt;
		else if (strcmp(argv[i], "--sasl-user") == 0)
			slot = &sasl;
		else if (strcmp(argv[i], "--script") == 0)
			slot = &script;
		else if (strcmp(argv[i], "--listener") == 0)
			slot = &listener;
		else if (strcmp(argv[i], "-v") == 0) {
			verbose = 1;
			continue;
		} else {
			fprintf(stderr, "postern policy test: unknown option %s\n", argv[i]);
			return 2;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "postern policy test: option %s needs a value\n", argv[i]);
			return 2;
		}
		*slot = argv[++i];
	}
	if (script == NULL && (client == NULL || rcpt == NULL)) {
		fprintf(stderr, "postern policy test: --client and --recipient are required (or --script FILE)\n");
		return 2;
	}
	if (script && (client || rcpt || helo || sender || sasl)) {
		fprintf(stderr, "postern policy test: --script takes the sessions from the file only\n");
		return 2;
	}
	struct policy_env env;
	if (env_open(&env, conf, verbose) < 0) {
		env_close(&env);
		return EXIT_CANNOT_EVALUATE;
	}
	if (listener && !pt_config_listener_known(env.conf, listener)) {
		fprintf(stderr, "postern policy test: unknown listener %s (the *_listen name without _listen: "
		        "smtpd, submission, smtps)\n", listener);
		env_close(&env);
		return 2;
	}
	/* The chains of that listener: its own values, else the file's. */
	policy_listener = listener;
	if (listener)
		printf("listener: %s\n", listener);
	int rc = script ? script_test(&env, script)
	         : single_test(&env, client, client_name, helo, sender, rcpt, sasl);
	fflush(stdout);
	env_close(&env);
	return rc;
}
