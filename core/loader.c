/* Module loader. A module is one .so exporting one descriptor; we refuse it
 * with a sentence naming the module and what is wrong before anything
 * starts: wrong ABI, other build, missing symbol, missing dependency. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_int.h"
#include "config_priv.h"
#include "config_raw.h"
#include "loader.h"
#include "net.h"
#include "passdb.h"

#define MAX_MODULES 32

struct loaded {
	const struct pt_module *mod;
	void *handle;
	char path[PATH_MAX];
};

static struct loaded loaded[MAX_MODULES];
static size_t nloaded;

size_t
pt_modules_count(void)
{
	return nloaded;
}

const struct pt_module *
pt_modules_get(size_t i)
{
	return i < nloaded ? loaded[i].mod : NULL;
}

const struct pt_module *
pt_modules_find(const char *name)
{
	for (size_t i = 0; i < nloaded; i++)
		if (strcmp(loaded[i].mod->name, name) == 0)
			return loaded[i].mod;
	return NULL;
}

/* Where NAME.so lives: the module line's PATH, else module_directory; when
 * module_directory is left at its default and the module is not there, the
 * build tree beside the running binary (build/bin/../modules) is tried, so
 * `make run` and tests need no install step. */
static void
module_path(const struct pt_config *c, size_t i, char *out, size_t outlen)
{
	const char *name = pt_config_module_name(c, i);
	const char *explicit = pt_config_module_path(c, i);
	if (explicit) {
		snprintf(out, outlen, "%s", explicit);
		return;
	}
	const char *dir = pt_config_raw(c, "module_directory");
	if (dir) {
		snprintf(out, outlen, "%s/%s.so", dir, name);
		return;
	}
	snprintf(out, outlen, "%s/%s.so", POSTERN_MODULE_DIR, name);
	if (access(out, F_OK) == 0)
		return;
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash == NULL)
		return;
	*slash = '\0';
	char alt[PATH_MAX + 64];
	int n2 = snprintf(alt, sizeof alt, "%s/../modules/%s.so", exe, name);
	if (n2 > 0 && (size_t)n2 < outlen && access(alt, F_OK) == 0)
		memcpy(out, alt, (size_t)n2 + 1);
}

/* " (did you mean \"smtp\"?)" when the directory of path holds a
 * module whose name is a near miss of name; "" otherwise. */
static const char *
module_hint(const char *path, const char *name, char *out, size_t outlen)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	out[0] = '\0';
	if (slash == NULL || (size_t)(slash - path) >= sizeof dir)
		return out;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	DIR *d = opendir(dir);
	if (d == NULL)
		return out;
	int best = 3;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n < 4 || n > 68 || strcmp(e->d_name + n - 3, ".so") != 0)
			continue;
		char cand[66];
		memcpy(cand, e->d_name, n - 3);
		cand[n - 3] = '\0';
		int dist = pt_cfg_distance(name, cand);
		if (dist < best) {
			best = dist;
			snprintf(out, outlen, " (did you mean \"%s\"?)", cand);
		}
	}
	closedir(d);
	return out;
}

static int
check_descriptor(struct pt_config *c, int line, const char *name, const char *path,
                 const struct pt_module *m)
{
	if (m->abi != POSTERN_ABI) {
		pt_config_add_error(c, line, "module %s (%s): built for module ABI %u, this postern has ABI %u; rebuild the module",
		                    name, path, (unsigned)m->abi, (unsigned)POSTERN_ABI);
		return -1;
	}
	if (m->build_sig == NULL || strcmp(m->build_sig, POSTERN_BUILD_SIG) != 0) {
		pt_config_add_error(c, line, "module %s (%s): build signature \"%s\" does not match postern's \"%s\"; rebuild the module",
		                    name, path, m->build_sig ? m->build_sig : "(none)", POSTERN_BUILD_SIG);
		return -1;
	}
	if (m->name == NULL || strcmp(m->name, name) != 0) {
		pt_config_add_error(c, line, "module %s (%s): the file is the module \"%s\", not \"%s\"",
		                    name, path, m->name ? m->name : "(unnamed)", name);
		return -1;
	}
	if (m->roles == 0 || (m->roles & ~PT_ROLE_ALL) != 0) {
		pt_config_add_error(c, line, "module %s (%s): declares no valid process roles (0x%x); rebuild the module",
		                    name, path, m->roles);
		return -1;
	}
	if (m->listeners && m->listeners->param && !(m->roles & PT_ROLE_WORKER)) {
		pt_config_add_error(c, line, "module %s (%s): has listeners but does not run in the worker (PT_ROLE_WORKER)",
		                    name, path);
		return -1;
	}
	return 0;
}

/* Does m declare the service name among those it provides? */
static int
provides(const struct pt_module *m, const char *service)
{
	for (const char *const *p = m->provides; p && *p; p++)
		if (strcmp(*p, service) == 0)
			return 1;
	return 0;
}

int
pt_modules_load(struct pt_config *c)
{
	const char *dir = pt_config_raw(c, "module_directory");
	if (dir && strchr(dir, '$')) {
		pt_config_add_error(c, pt_config_raw_line(c, "module_directory"),
		                    "module_directory cannot use $name expansion (modules are found before parameters are resolved)");
		return 1;
	}
	int errors = 0;
	struct loaded next[MAX_MODULES];
	int lines[MAX_MODULES];
	size_t n = 0;
	size_t count = pt_config_module_count(c);

	for (size_t i = 0; i < count; i++) {
		const char *name = pt_config_module_name(c, i);
		int line = pt_config_module_line(c, i);
		if (n == MAX_MODULES) {
			pt_config_add_error(c, line, "module %s: too many modules (at most %d)", name, MAX_MODULES);
			errors++;
			break;
		}
		int dup = 0;
		for (size_t j = 0; j < n; j++)
			if (strcmp(next[j].mod->name, name) == 0)
				dup = 1;
		if (dup)
			continue; /* the parser already reported the duplicate line */
		char path[PATH_MAX];
		module_path(c, i, path, sizeof path);
		void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (h == NULL) {
			const char *why = dlerror();
			char hint[128] = "";
			if (access(path, F_OK) != 0) {
				const char *err = strerror(errno);
				if (pt_config_module_path(c, i) == NULL)
					module_hint(path, name, hint, sizeof hint);
				pt_config_add_error(c, line, "module %s: cannot load %s: %s%s", name, path, err, hint);
			} else
				pt_config_add_error(c, line, "module %s: cannot load %s: %s", name, path, why ? why : "unknown error");
			errors++;
			pt_config_module_failed(c, i);
			continue;
		}
		dlerror();
		const struct pt_module *m = dlsym(h, POSTERN_MODULE_SYMBOL);
		if (m == NULL) {
			pt_config_add_error(c, line, "module %s (%s): no \"%s\" symbol: not a Postern module",
			                    name, path, POSTERN_MODULE_SYMBOL);
			errors++;
			pt_config_module_failed(c, i);
			dlclose(h);
			continue;
		}
		if (check_descriptor(c, line, name, path, m) != 0) {
			errors++;
			pt_config_module_failed(c, i);
			dlclose(h);
			continue;
		}
		next[n].mod = m;
		next[n].handle = h;
		snprintf(next[n].path, sizeof next[n].path, "%s", path);
		lines[n] = line;
		n++;
	}

	for (size_t i = 0; i < n; i++) {
		const char *const *dep = next[i].mod->depends;
		for (; dep && *dep; dep++) {
			int found = 0;
			for (size_t j = 0; j < n; j++)
				if (j != i && provides(next[j].mod, *dep))
					found = 1;
			if (!found) {
				pt_config_add_error(c, lines[i], "module %s needs the %s service, which no loaded module "
				                    "provides (add the `module` line of one that does)",
				                    next[i].mod->name, *dep);
				errors++;
			}
		}
	}

	/* Order: providers of what a module needs first, otherwise file
	 * order; a cycle is an error. */
	struct loaded ordered[MAX_MODULES];
	size_t nordered = 0;
	int placed[MAX_MODULES] = { 0 };
	for (int progress = 1; progress && nordered < n;) {
		progress = 0;
		for (size_t i = 0; i < n; i++) {
			if (placed[i])
				continue;
			int ready = 1;
			for (const char *const *dep = next[i].mod->depends; dep && *dep; dep++)
				for (size_t j = 0; j < n; j++)
					if (!placed[j] && j != i && provides(next[j].mod, *dep))
						ready = 0;
			if (ready) {
				ordered[nordered++] = next[i];
				placed[i] = 1;
				progress = 1;
			}
		}
	}
	if (nordered < n) {
		for (size_t i = 0; i < n; i++)
			if (!placed[i]) {
				pt_config_add_error(c, lines[i], "module %s: circular module dependency", next[i].mod->name);
				errors++;
			}
	}

	for (size_t i = 0; i < nordered; i++)
		if (ordered[i].mod->params && pt_config_declare(c, ordered[i].mod->name, ordered[i].mod->params) != 0)
			errors++;

	/* Handles stay open for the life of the process: dlopen of an
	 * already loaded path returns the same handle, so reload is cheap.
	 * The modules that loaded are listed even when others failed, so
	 * their checks still run (`postern check` reports everything); such
	 * a config is never served, and a reload that refuses it puts the
	 * live list back (pt_modules_restore). */
	memcpy(loaded, ordered, nordered * sizeof *ordered);
	nloaded = nordered;
	return errors;
}

/* Only the modules that declare the process's role: the others' code
 * never runs here (restrict's Lua never in a root agent). */
int
pt_modules_init(struct pt_ctx *ctx)
{
	for (size_t i = 0; i < nloaded; i++)
		if ((loaded[i].mod->roles & ctx->role) && loaded[i].mod->init && loaded[i].mod->init(ctx) != 0)
			return -1;
	return 0;
}

int
pt_module_loaded(const char *name)
{
	for (size_t i = 0; i < nloaded; i++)
		if (strcmp(loaded[i].mod->name, name) == 0)
			return 1;
	return 0;
}

/* Does `protocols` (Dovecot's line) list proto? Empty: every protocol of
 * a loaded module is on. */
static int
protocol_listed(const struct pt_config *c, const char *proto)
{
	const struct pt_list *p = pt_conf_list(c, "protocols");
	if (p == NULL || p->n == 0)
		return 1;
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i], proto) == 0)
			return 1;
	return 0;
}

int
pt_protocol_enabled(const struct pt_config *c, const char *module)
{
	const struct pt_module *m = pt_modules_find(module);
	return m == NULL || m->protocol == NULL || protocol_listed(c, m->protocol);
}

static int
serves_protocol(const char *proto)
{
	for (size_t i = 0; i < nloaded; i++)
		if (loaded[i].mod->protocol && strcmp(loaded[i].mod->protocol, proto) == 0)
			return 1;
	return 0;
}

/* "imap and pop3": the protocols of the loaded modules, for messages. */
static const char *
protocols_known(char *out, size_t len)
{
	size_t n = 0, k = 0, total = 0;
	out[0] = '\0';
	for (size_t i = 0; i < nloaded; i++)
		total += loaded[i].mod->protocol != NULL;
	for (size_t i = 0; i < nloaded && n < len; i++) {
		const char *pr = loaded[i].mod->protocol;
		if (pr == NULL)
			continue;
		k++;
		n += (size_t)snprintf(out + n, len - n, "%s%s", k == 1 ? "" : k == total ? " and " : ", ", pr);
	}
	if (total == 0)
		snprintf(out, len, "the protocols of mail-access modules (none is loaded)");
	return out;
}

void
pt_modules_stop(struct pt_ctx *ctx)
{
	for (size_t i = nloaded; i-- > 0;)
		if ((loaded[i].mod->roles & ctx->role) && loaded[i].mod->stop)
			loaded[i].mod->stop(ctx);
}

int
pt_modules_check(const struct pt_config *c)
{
	int failed = 0;
	for (size_t i = 0; i < nloaded; i++)
		if (loaded[i].mod->check && loaded[i].mod->check(c) != 0)
			failed++;
	/* An explicit `protocols = imap pop3` promises those services: each
	 * word must be the protocol of a loaded module. */
	failed += pt_listen_check(c);
	failed += pt_auth_sources_check(c);
	const struct pt_list *p = pt_conf_isset(c, "protocols") ? pt_conf_list(c, "protocols") : NULL;
	for (size_t i = 0; p && i < p->n; i++) {
		const char *w = p->v[i];
		if (strcmp(w, "none") == 0 || serves_protocol(w))
			continue;
		const struct pt_module *m = pt_modules_find(w);
		if (m) {
			char known[256];
			pt_conf_error(c, "protocols", "\"%s\": module %s serves its listeners whenever it is "
			              "loaded; protocols switches only %s", w, w, protocols_known(known, sizeof known));
		} else {
			pt_conf_error(c, "protocols", "protocols lists %s, but no `module %s` line loads it", w, w);
		}
		failed++;
	}
	return failed;
}

/* The master keeps the module list of the live config; a reload that loads
 * a broken config must not leave the list of the refused one behind. */
static struct loaded saved[MAX_MODULES];
static size_t nsaved;

void
pt_modules_save(void)
{
	memcpy(saved, loaded, nloaded * sizeof *loaded);
	nsaved = nloaded;
}

void
pt_modules_restore(void)
{
	memcpy(loaded, saved, nsaved * sizeof *saved);
	nloaded = nsaved;
}
