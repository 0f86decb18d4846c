/* Alias expansion: recursion through alias_maps and :include: files with
 * loop detection, duplicate suppression and owner- aliases. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alias.h"
#include "postern/address.h"
#include "postern/fdio.h"
#include "postern/log.h"

/* Aliases and their :include: files may name /files and |commands only
 * when they belong to root, or to us in rootless mode. */
static int
alias_owner_trusted(uid_t owner)
{
	return owner == 0 || owner == geteuid();
}

static char *
alias_lower_dup(const char *s)
{
	char *d = strdup(s);
	if (d)
		for (char *p = d; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	return d;
}

static int
alias_lookup_one(const struct alias_conf *conf, const char *name, char **value, uid_t *owner)
{
	int temp = 0;
	*value = pt_map_list_lookup(conf->maps, name, &temp, owner);
	if (*value)
		return 1;
	return temp ? -1 : 0;
}

int
alias_lookup(const struct alias_conf *conf, const char *name, char **value, uid_t *owner)
{
	uid_t dummy;
	if (!owner)
		owner = &dummy;
	int rc = alias_lookup_one(conf, name, value, owner);
	if (rc != 0)
		return rc;
	/* user+tag: try "user" (the first delimiter character found) */
	size_t base = pt_local_base_len(name, conf->delim);
	if (base == 0)
		return 0;
	char *b = strndup(name, base);
	if (!b)
		return -1;
	rc = alias_lookup_one(conf, b, value, owner);
	free(b);
	return rc;
}

struct alias_walk {
	const struct alias_conf *conf;
	alias_emit_fn *emit;
	void *arg;
	struct pt_status *st;
	const char *stack[ALIAS_MAX_DEPTH + 1]; /* names (and include paths) being expanded */
	int depth;
	char **seen;                  /* emitted targets and expanded aliases */
	size_t nseen, capseen;
	size_t ntargets;
	int rc;                       /* 0, -1 temporary, -2 permanent */
};

/* State of one value being walked: the trust of the file it came from
 * and the owner- alias in force. */
struct alias_frame {
	struct alias_walk *w;
	int trusted;
	const char *owner;
};

/* 1 when key was seen before (and remember it otherwise); -1 no memory. */
static int
alias_seen(struct alias_walk *w, char kind, const char *text)
{
	size_t tl = strlen(text);
	for (size_t i = 0; i < w->nseen; i++)
		if (w->seen[i][0] == kind && strcmp(w->seen[i] + 1, text) == 0)
			return 1;
	if (w->nseen == w->capseen) {
		size_t nc = w->capseen ? w->capseen * 2 : 16;
		char **ns = realloc(w->seen, nc * sizeof(*ns));
		if (!ns)
			return -1;
		w->seen = ns;
		w->capseen = nc;
	}
	char *k = malloc(tl + 2);
	if (!k)
		return -1;
	k[0] = kind;
	memcpy(k + 1, text, tl + 1);
	w->seen[w->nseen++] = k;
	return 0;
}

static int
alias_fail(struct alias_walk *w, int rc, int code, const char *dsn, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Record the first failure; returns 1 so the walk stops. */
static int
alias_fail(struct alias_walk *w, int rc, int code, const char *dsn, const char *fmt, ...)
{
	if (!w->rc) {
		char text[256];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(text, sizeof(text), fmt, ap);
		va_end(ap);
		pt_status_set(w->st, code, dsn, "%s", text);
		w->rc = rc;
	}
	return 1;
}

/* An include file's text and owner, read through one descriptor so the
 * owner checked is the owner of what was read. 0 or -1 (errno). */
static int
alias_read_include(const char *path, char **text, size_t *len, uid_t *owner)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > ALIAS_MAX_INCLUDE) {
		int e = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
		close(fd);
		errno = e;
		return -1;
	}
	/* Bounded again while reading: the file may grow meanwhile. */
	if (pt_read_all(fd, ALIAS_MAX_INCLUDE, text, len) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	*owner = st.st_uid;
	return 0;
}

static int
alias_emit_target(struct alias_frame *f, enum pt_alias_target kind, const char *text)
{
	struct alias_walk *w = f->w;
	int s = alias_seen(w, (char)('0' + kind), text);
	if (s < 0)
		return alias_fail(w, -1, 451, "4.3.0", "%s", "out of memory");
	if (s)
		return 0;
	if (++w->ntargets > ALIAS_MAX_TARGETS)
		return alias_fail(w, -2, 550, "5.3.0", "%s", "alias expansion produces too many recipients");
	w->emit(w->arg, text, kind, f->owner);
	return 0;
}

static int alias_expand_value(struct alias_walk *w, const char *value, int trusted,
                              const char *owner);

static int
alias_on_stack(const struct alias_walk *w, const char *name)
{
	for (int i = 0; i < w->depth; i++)
		if (strcmp(w->stack[i], name) == 0)
			return 1;
	return 0;
}

/* The owner- alias for name, if the maps have one ("owner-NAME"). */
static char *
alias_owner_of(struct alias_walk *w, const char *name)
{
	size_t n = strlen(name);
	char *key = malloc(n + 7), *v = NULL;
	if (!key)
		return NULL;
	memcpy(key, "owner-", 6);
	memcpy(key + 6, name, n + 1);
	if (alias_lookup_one(w->conf, key, &v, &(uid_t){0}) == 1) {
		free(v);
		return key;
	}
	free(key);
	return NULL;
}

/* Expand name (an alias found with value) one level deeper. */
static int
alias_descend(struct alias_walk *w, const char *name, const char *value, uid_t file_owner,
              const char *owner)
{
	if (w->depth >= ALIAS_MAX_DEPTH)
		return alias_fail(w, -2, 554, "5.4.6", "mail forwarding loop: alias nesting too deep at \"%s\"", name);
	char *own = alias_owner_of(w, name);
	w->stack[w->depth++] = name;
	int stop = alias_expand_value(w, value, alias_owner_trusted(file_owner), own ? own : owner);
	w->depth--;
	free(own);
	return stop;
}

static int
alias_do_address(struct alias_frame *f, const char *text)
{
	struct alias_walk *w = f->w;
	if (text[0] == '\\') {
		/* "\user": the user's own mailbox, no further aliasing */
		char *n = alias_lower_dup(text + 1);
		if (!n)
			return alias_fail(w, -1, 451, "4.3.0", "%s", "out of memory");
		int stop = *n ? alias_emit_target(f, PT_ALIAS_ADDRESS, n) : 0;
		free(n);
		return stop;
	}
	const char *at = strrchr(text, '@');
	if (at && !pt_domain_is_local(at + 1))
		return alias_emit_target(f, PT_ALIAS_ADDRESS, text);
	char *name = at ? strndup(text, (size_t)(at - text)) : strdup(text);
	if (!name)
		return alias_fail(w, -1, 451, "4.3.0", "%s", "out of memory");
	for (char *p = name; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	int stop = 0;
	if (!*name) {
		/* "@domain" alone names nobody */
	} else if (w->depth > 0 && strcmp(w->stack[w->depth - 1], name) == 0) {
		/* user1: user1, user2 -- the alias naming itself is the user */
		stop = alias_emit_target(f, PT_ALIAS_ADDRESS, name);
	} else if (alias_on_stack(w, name)) {
		stop = alias_fail(w, -2, 554, "5.4.6", "mail forwarding loop for %s", name);
	} else {
		char *value = NULL;
		uid_t owner = (uid_t)-1;
		int rc = alias_lookup(w->conf, name, &value, &owner);
		if (rc < 0) {
			stop = alias_fail(w, -1, 451, "4.3.0", "alias database unavailable while expanding %s", name);
		} else if (rc == 0) {
			stop = alias_emit_target(f, PT_ALIAS_ADDRESS, name);
		} else {
			int s = alias_seen(w, 'A', name);
			if (s < 0)
				stop = alias_fail(w, -1, 451, "4.3.0", "%s", "out of memory");
			else if (!s)
				stop = alias_descend(w, name, value, owner, f->owner);
			free(value);
		}
	}
	free(name);
	return stop;
}

static int
alias_do_include(struct alias_frame *f, const char *path)
{
	struct alias_walk *w = f->w;
	if (!f->trusted)
		return alias_fail(w, -2, 550, "5.7.1", "mail to :include: file %s is restricted "
		                  "(the alias file is not owned by root)", path);
	if (path[0] != '/')
		return alias_fail(w, -2, 550, "5.3.5", ":include: needs an absolute path: %s", path);
	if (alias_on_stack(w, path))
		return alias_fail(w, -2, 554, "5.4.6", "mail forwarding loop through :include:%s", path);
	if (w->depth >= ALIAS_MAX_DEPTH)
		return alias_fail(w, -2, 554, "5.4.6", "mail forwarding loop: nesting too deep at :include:%s", path);
	int s = alias_seen(w, 'I', path);
	if (s)
		return s < 0 ? alias_fail(w, -1, 451, "4.3.0", "%s", "out of memory") : 0;

	char *text = NULL, *value = NULL;
	size_t len;
	uid_t owner;
	if (alias_read_include(path, &text, &len, &owner) < 0) {
		pt_log(PT_LOG_WARNING, "alias: cannot read include file %s: %s", path, strerror(errno));
		return alias_fail(w, -1, 451, "4.3.0", "cannot read include file %s: %s", path,
		                  strerror(errno));
	}
	value = alias_include_text(text, len);
	free(text);
	if (!value)
		return alias_fail(w, -1, 451, "4.3.0", "%s", "out of memory");
	w->stack[w->depth++] = path;
	int stop = alias_expand_value(w, value, alias_owner_trusted(owner), f->owner);
	w->depth--;
	free(value);
	return stop;
}

static int
alias_on_target(void *arg, enum pt_alias_target kind, const char *text)
{
	struct alias_frame *f = arg;
	switch (kind) {
	case PT_ALIAS_ADDRESS:
		return alias_do_address(f, text);
	case PT_ALIAS_INCLUDE:
		return alias_do_include(f, text);
	case PT_ALIAS_FILE:
	case PT_ALIAS_COMMAND:
		if (!f->trusted)
			return alias_fail(f->w, -2, 550, "5.7.1",
			                  kind == PT_ALIAS_FILE
			                  ? "mail to file %s is restricted (the alias file is not owned by root)"
			                  : "mail to command \"%s\" is restricted (the alias file is not owned by root)",
			                  text);
		return alias_emit_target(f, kind, text);
	}
	return 0;
}

static int
alias_expand_value(struct alias_walk *w, const char *value, int trusted, const char *owner)
{
	struct alias_frame f = { w, trusted, owner };
	if (alias_parse_value(value, alias_on_target, &f) < 0 && !w->rc)
		alias_fail(w, -1, 451, "4.3.0", "%s", "out of memory");
	return w->rc != 0;
}

int
alias_expand(const struct alias_conf *conf, const char *local, alias_emit_fn *emit, void *arg,
             struct pt_status *st)
{
	char *value = NULL;
	uid_t owner = (uid_t)-1;
	int rc = alias_lookup(conf, local, &value, &owner);
	if (rc < 0) {
		pt_status_set(st, 451, "4.3.0", "alias database unavailable");
		return -1;
	}
	if (rc == 0)
		return 0;
	struct alias_walk w = { .conf = conf, .emit = emit, .arg = arg, .st = st };
	char *name = alias_lower_dup(local);
	if (name && alias_seen(&w, 'A', name) == 0)
		alias_descend(&w, name, value, owner, NULL);
	else if (!w.rc)
		alias_fail(&w, -1, 451, "4.3.0", "%s", "out of memory");
	free(value);
	free(name);
	for (size_t i = 0; i < w.nseen; i++)
		free(w.seen[i]);
	free(w.seen);
	if (w.rc == -2)
		pt_log(PT_LOG_WARNING, "alias %s: %s", local, st->text);
	return w.rc ? w.rc : 1;
}

int
alias_exists(const struct alias_conf *conf, const char *local)
{
	char *value = NULL;
	int rc = alias_lookup(conf, local, &value, NULL);
	free(value);
	return rc;
}
