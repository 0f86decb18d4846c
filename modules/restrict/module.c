/* The restrict module's descriptor: Postfix's smtpd_*_restrictions
 * parameters and Lua policy limits, `postern check` validation, and the
 * restriction service the smtp module asks at each stage. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "postern/log.h"
#include "postern/map.h"
#include "postern/module.h"
#include "postern/services.h"
#include "restrict.h"


static void
apply_limits(const struct pt_config *c)
{
	struct restrict_lua_limits lim = {
		.memory = (size_t)pt_conf_int(c, "lua_policy_memory_limit"),
		.instructions = pt_conf_int(c, "lua_policy_instruction_limit"),
		.time_ms = pt_conf_int(c, "lua_policy_time_limit") * 1000,
	};
	restrict_lua_set_limits(&lim);
}

static void
warn_style(const struct restrict_setup *s, const struct pt_config *c)
{
	if (s->style_warning)
		pt_warn("%s:%d: mynetworks = %s names a mynetworks_style; using mynetworks_style = %s "
		        "(write mynetworks_style = %s, or list networks in mynetworks)",
		        pt_conf_file(c), pt_conf_line(c, "mynetworks"), pt_conf_str(c, "mynetworks"),
		        pt_conf_str(c, "mynetworks"), pt_conf_str(c, "mynetworks"));
}

static int
svc_evaluate(struct pt_loop *loop, const struct pt_policy_request *req,
             void (*done)(void *arg, const struct pt_verdict *v), void *arg)
{
	return restrict_evaluate(NULL, loop, req, done, arg);
}

static const struct pt_restrict_ops restrict_ops = { svc_evaluate };

static int
restrict_init(struct pt_ctx *ctx)
{
	apply_limits(ctx->conf);
	struct restrict_setup *s = restrict_setup_build(ctx->conf, 1);
	if (s == NULL) {
		pt_error("restrict: the restriction lists cannot be set up");
		return -1;
	}
	warn_style(s, ctx->conf);
	/* Each listener with values of its own (submission's built-in
	 * smtpd_relay_restrictions...) evaluates its own chains. */
	struct restrict_setup *per[RESTRICT_MAX_LISTENERS] = { NULL };
	const char *name;
	size_t n = 0;
	for (; n < RESTRICT_MAX_LISTENERS && (name = pt_conf_listener_name(ctx->conf, n)) != NULL; n++) {
		per[n] = restrict_setup_build(pt_conf_listener(ctx->conf, name), 1);
		if (per[n] == NULL) {
			pt_error("restrict: the restriction lists of listener %s cannot be set up", name);
			while (n > 0)
				restrict_setup_unref(per[--n]);
			restrict_setup_unref(s);
			return -1;
		}
	}
	restrict_set_live_setup(s);
	restrict_set_listener_setup(NULL, NULL);
	for (size_t i = 0; i < n; i++)
		restrict_set_listener_setup(pt_conf_listener_name(ctx->conf, i), per[i]);
	pt_service_register(PT_SVC_RESTRICT, &restrict_ops);
	return 0;
}

static void
restrict_stop(struct pt_ctx *ctx)
{
	(void)ctx;
	restrict_set_live_setup(NULL);
	restrict_lua_shutdown();
}

/* Policy code runs in a child process: the master runs every module's
 * check at start and at each reload, as root, and must not execute a
 * policy itself. As root the child drops to mail_owner (the user the
 * policies run as in the worker); a CPU limit backs up the Lua budgets. */
#define CHECK_CPU_SECONDS 60
#define CHECK_REPORT_MAX (64 * 1024)

static int
drop_to_mail_owner(const struct pt_config *c)
{
	if (geteuid() != 0)
		return 0;
	const struct passwd *pw = getpwnam(pt_conf_str(c, "mail_owner"));
	if (pw == NULL)
		pw = getpwnam("nobody");  /* the master refuses to run anyway */
	if (pw == NULL || pw->pw_uid == 0)
		return -1;
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
		return -1;
	return setuid(0) == 0 ? -1 : 0;
}

/* Child: one line "LIST ITEM message" per refused policy. */
static void
validate_in_child(const struct pt_config *c, const struct restrict_setup *s, int fd)
{
	struct rlimit cpu = { CHECK_CPU_SECONDS, CHECK_CPU_SECONDS };
	setrlimit(RLIMIT_CPU, &cpu);
	if (drop_to_mail_owner(c) < 0) {
		dprintf(fd, "-1 0 cannot drop privileges to mail_owner to run the policy\n");
		_exit(1);
	}
	for (int l = 0; l < RL_COUNT; l++) {
		const struct restrict_chain *ch = &s->chains[l];
		for (size_t i = 0; i < ch->n; i++) {
			if (ch->v[i].kind != RI_CHECK_LUA_POLICY)
				continue;
			char err[512];
			if (restrict_lua_validate(ch->v[i].arg, err, sizeof err) < 0) {
				for (char *p = err; *p; p++)
					if (*p == '\n' || *p == '\r')
						*p = ' ';
				dprintf(fd, "%d %zu %s\n", l, i, err);
			}
		}
	}
	_exit(0);
}

static int
validate_policies(const struct pt_config *c, const struct restrict_setup *s)
{
	int any = 0;
	for (int l = 0; l < RL_COUNT; l++)
		for (size_t i = 0; i < s->chains[l].n; i++)
			any |= s->chains[l].v[i].kind == RI_CHECK_LUA_POLICY;
	if (!any)
		return 0;
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		pt_conf_error(c, "smtpd_recipient_restrictions", "cannot check Lua policies: %s",
		              strerror(errno));
		return 1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		pt_conf_error(c, "smtpd_recipient_restrictions", "cannot check Lua policies: %s",
		              strerror(errno));
		return 1;
	}
	if (pid == 0) {
		close(fds[0]);
		validate_in_child(c, s, fds[1]);
	}
	close(fds[1]);
	char *buf = malloc(CHECK_REPORT_MAX + 1);
	size_t len = 0;
	for (;;) {
		char tmp[4096];
		ssize_t n = read(fds[0], tmp, sizeof tmp);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (buf != NULL && len + (size_t)n <= CHECK_REPORT_MAX) {
			memcpy(buf + len, tmp, (size_t)n);
			len += (size_t)n;
		}
	}
	close(fds[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	int errors = 0;
	if (buf != NULL) {
		buf[len] = '\0';
		for (char *line = buf, *nl; *line; line = nl + 1) {
			if ((nl = strchr(line, '\n')) == NULL)
				break;
			*nl = '\0';
			int l = -1;
			size_t i = 0;
			int off = 0;
			if (sscanf(line, "%d %zu %n", &l, &i, &off) < 2)
				continue;
			errors++;
			if (l >= 0 && l < RL_COUNT && i < s->chains[l].n)
				pt_conf_error(c, s->chains[l].param, "check_lua_policy %s: %s",
				              s->chains[l].v[i].arg, line + off);
			else
				pt_conf_error(c, "smtpd_recipient_restrictions", "%s", line + off);
		}
		free(buf);
	}
	if (errors == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		pt_conf_error(c, "smtpd_recipient_restrictions",
		              "the Lua policy check did not finish (%s %d)",
		              WIFSIGNALED(status) ? "signal" : "exit status",
		              WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		errors++;
	}
	return errors;
}

/* Does b run a Lua policy that a does not? (A listener's chains are
 * mostly the file's: its policies were run already.) */
static int
has_other_policies(const struct restrict_setup *a, const struct restrict_setup *b)
{
	for (int l = 0; l < RL_COUNT; l++)
		for (size_t i = 0; i < b->chains[l].n; i++) {
			const struct restrict_item *it = &b->chains[l].v[i];
			int known = 0;
			if (it->kind != RI_CHECK_LUA_POLICY)
				continue;
			for (int k = 0; k < RL_COUNT && !known; k++)
				for (size_t j = 0; j < a->chains[k].n && !known; j++)
					known = a->chains[k].v[j].kind == RI_CHECK_LUA_POLICY &&
					        strcmp(a->chains[k].v[j].arg, it->arg) == 0;
			if (!known)
				return 1;
		}
	return 0;
}

struct map_report_ctx {
	const struct pt_config *conf;
	const char *param;
	int errors;
};

static void
map_report(void *arg, int is_error, const char *msg)
{
	struct map_report_ctx *m = arg;
	if (is_error) {
		pt_conf_error(m->conf, m->param, "%s", msg);
		m->errors++;
	} else {
		pt_warn("%s", msg);
	}
}

static int
item_map_in(const struct restrict_setup *s, const char *spec)
{
	for (int l = 0; s && l < RL_COUNT; l++)
		for (size_t i = 0; i < s->chains[l].n; i++)
			if (s->chains[l].v[i].arg && strcmp(s->chains[l].v[i].arg, spec) == 0)
				return 1;
	return 0;
}

static int
word_in(const struct pt_list *l, const char *w)
{
	for (size_t i = 0; l && i < l->n; i++)
		if (strcmp(l->v[i], w) == 0)
			return 1;
	return 0;
}

/* The contents of every map a list item or a map parameter names. A
 * missing file is an error here as at lookup time, where it answers
 * "try again later" to every client the item sees.
 * done: for a listener's view, the file's config and setup, whose maps
 * were read already (a big map is not read once per listener). */
static int
check_maps(const struct pt_config *c, const struct restrict_setup *s, const struct pt_config *done_conf,
           const struct restrict_setup *done)
{
	struct map_report_ctx m = { c, NULL, 0 };
	for (int l = 0; l < RL_COUNT; l++)
		for (size_t i = 0; i < s->chains[l].n; i++) {
			const struct restrict_item *it = &s->chains[l].v[i];
			if (it->arg == NULL || it->kind == RI_CHECK_LUA_POLICY || it->kind == RI_REJECT_RBL_CLIENT ||
			    item_map_in(done, it->arg))
				continue;
			m.param = s->chains[l].param;
			pt_map_check(it->arg, PT_MAP_KEY_VALUE, map_report, &m, NULL);
		}
	static const char *const params[] = { "smtpd_sender_login_maps", "lua_policy_maps" };
	for (size_t p = 0; p < sizeof params / sizeof params[0]; p++) {
		const struct pt_list *l = pt_conf_list(c, params[p]);
		const struct pt_list *seen = done_conf ? pt_conf_list(done_conf, params[p]) : NULL;
		m.param = params[p];
		for (size_t i = 0; l && i < l->n; i++) {
			char path[1024], why[256];
			if (!word_in(seen, l->v[i]) && pt_map_spec_path(l->v[i], path, sizeof path, why, sizeof why) == 0)
				pt_map_check(l->v[i], PT_MAP_KEY_VALUE, map_report, &m, NULL);
		}
	}
	return m.errors;
}

/* Validate everything a reload would build, without touching the live
 * state: list syntax, map specs, mynetworks, and each Lua policy compiled
 * and run against its own tests in a scratch state, in a child process. */
static int
restrict_check(const struct pt_config *c)
{
	apply_limits(c);
	struct restrict_setup *s = restrict_setup_build(c, 0);
	if (s == NULL)
		return 1;
	warn_style(s, c);
	/* The items that parsed are checked even when others did not. */
	int errors = s->check_errors + check_maps(c, s, NULL, NULL) + validate_policies(c, s);
	/* The same for each listener's own chains; their errors name the
	 * override's line (and one the file's chains have is not repeated). */
	const char *name;
	for (size_t i = 0; (name = pt_conf_listener_name(c, i)) != NULL; i++) {
		const struct pt_config *v = pt_conf_listener(c, name);
		struct restrict_setup *ls = restrict_setup_build(v, 0);
		if (ls == NULL) {
			errors++;
			continue;
		}
		errors += ls->check_errors + check_maps(v, ls, c, s);
		if (has_other_policies(s, ls))
			errors += validate_policies(v, ls);
		restrict_setup_unref(ls);
	}
	restrict_setup_unref(s);
	return errors ? 1 : 0;
}

POSTERN_MODULE_EXPORT const struct pt_module postern_module = {
	.abi = POSTERN_ABI,
	.build_sig = POSTERN_BUILD_SIG,
	.name = "restrict",
	.depends = NULL,
	.params = restrict_params,
	.listeners = NULL,
	/* Lua and policy maps only where SMTP is served (as mail_owner) and in
	 * `postern policy test`: never in a root process. */
	.roles = PT_ROLE_WORKER | PT_ROLE_CLI,
	.init = restrict_init,
	.stop = restrict_stop,
	.check = restrict_check,
	.listener_params = restrict_listener_params,
};
