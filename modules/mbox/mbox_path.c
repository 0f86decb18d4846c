/* mail_location ("mbox:ROOT[:INBOX=PATH][:KEY=VALUE]…", Dovecot's syntax):
 * its syntax check and the expansion of a user's INBOX file path, refusing
 * user names that could point outside the spool. */
#include <stdio.h>
#include <string.h>

#include "mbox.h"

#define LOC_PARTS 8

struct location {
	char buf[4096];
	const char *root;
	const char *inbox;            /* NULL: ROOT/inbox */
};

static const char *const known_keys[] = { "INBOX", "INDEX", "CONTROL", "LAYOUT", NULL };

/* Check the %-variables and the absolute form of one path template. */
static int
template_check(const char *what, const char *t, char *err, size_t errlen)
{
	if (*t == '\0') {
		snprintf(err, errlen, "%s is empty", what);
		return -1;
	}
	if (t[0] != '/' && t[0] != '~' && strncmp(t, "%h", 2) != 0) {
		snprintf(err, errlen, "%s \"%s\" must be an absolute path (or start with ~ or %%h)",
		         what, t);
		return -1;
	}
	for (const char *p = t; *p; p++) {
		if (*p != '%')
			continue;
		p++;
		if (*p == '\0') {
			snprintf(err, errlen, "%s \"%s\" ends with a lone %%", what, t);
			return -1;
		}
		if (strchr("uhnd%", *p) == NULL) {
			snprintf(err, errlen, "%s \"%s\": unknown variable %%%c (known: %%u %%n %%d %%h %%%%)",
			         what, t, *p);
			return -1;
		}
	}
	return 0;
}

static int
location_parse(const char *s, struct location *loc, char *err, size_t errlen)
{
	if (strncmp(s, "mbox:", 5) != 0) {
		snprintf(err, errlen, "\"%s\" is not an mbox location (expected mbox:ROOT[:INBOX=PATH])",
		         s);
		return -1;
	}
	if (strlen(s + 5) >= sizeof loc->buf) {
		snprintf(err, errlen, "value is too long");
		return -1;
	}
	strcpy(loc->buf, s + 5);
	loc->root = loc->buf;
	loc->inbox = NULL;
	char *p = strchr(loc->buf, ':');
	if (p)
		*p++ = '\0';
	if (template_check("mail root", loc->root, err, errlen) != 0)
		return -1;
	while (p) {
		char *opt = p;
		p = strchr(p, ':');
		if (p)
			*p++ = '\0';
		char *eq = strchr(opt, '=');
		if (eq == NULL || eq == opt) {
			snprintf(err, errlen, "option \"%s\" is not KEY=VALUE", opt);
			return -1;
		}
		*eq = '\0';
		int known = 0;
		for (size_t i = 0; known_keys[i]; i++)
			if (strcmp(opt, known_keys[i]) == 0)
				known = 1;
		if (!known) {
			snprintf(err, errlen, "unknown option %s (known: INBOX, INDEX, CONTROL, LAYOUT)",
			         opt);
			return -1;
		}
		if (strcmp(opt, "INBOX") == 0) {
			if (template_check("INBOX", eq + 1, err, errlen) != 0)
				return -1;
			loc->inbox = eq + 1;
		}
	}
	return 0;
}

int
mbox_location_check(const char *location, char *err, size_t errlen)
{
	struct location loc;
	return location_parse(location ? location : "", &loc, err, errlen);
}

/* A user name becomes a file name: it must stay one path component inside
 * the spool directory. */
static int
user_name_ok(const char *name)
{
	if (name[0] == '\0' || name[0] == '.' || name[0] == '@')
		return 0;
	/* %n and %d are used as path components too. */
	const char *at = strchr(name, '@');
	if (at && at[1] == '.')
		return 0;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p == '/' || *p < 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

static int
put(char *out, size_t outlen, size_t *n, const char *s, size_t len)
{
	if (len >= outlen - *n)
		return -1;
	memcpy(out + *n, s, len);
	*n += len;
	out[*n] = '\0';
	return 0;
}

int
mbox_inbox_path(const char *location, const struct pt_user *user, char *out, size_t outlen,
                struct pt_status *st)
{
	struct location loc;
	char err[256];
	if (location_parse(location ? location : "", &loc, err, sizeof err) != 0) {
		pt_status_set(st, 451, "4.3.5", "mail_location: %s", err);
		return -1;
	}
	const char *name = user->name;
	if (!user_name_ok(name)) {
		/* The name itself may hold control bytes: keep it out of the text. */
		pt_status_set(st, 550, "5.1.3", "user name cannot be used as a mailbox file name");
		return -1;
	}
	const char *at = strchr(name, '@');
	size_t nlen = at ? (size_t)(at - name) : strlen(name);
	const char *domain = at ? at + 1 : "";
	const char *t = loc.inbox ? loc.inbox : loc.root;
	size_t n = 0;
	if (outlen == 0)
		return -1;
	out[0] = '\0';
	int rc = 0;
	for (const char *p = t; *p && rc == 0; p++) {
		const char *home = NULL;
		if (p == t && *p == '~' && (p[1] == '/' || p[1] == '\0'))
			home = user->home;
		else if (*p == '%' && p[1] == 'h')
			home = user->home, p++;
		if (home) {
			if (home[0] != '/') {
				pt_status_set(st, 451, "4.3.5",
				              "user %s has no home directory for mail_location", name);
				return -1;
			}
			size_t hl = strlen(home);
			while (hl > 1 && home[hl - 1] == '/')
				hl--;
			rc = put(out, outlen, &n, home, hl);
			continue;
		}
		if (*p != '%') {
			rc = put(out, outlen, &n, p, 1);
			continue;
		}
		p++;
		switch (*p) {
		case 'u': rc = put(out, outlen, &n, name, strlen(name)); break;
		case 'n': rc = put(out, outlen, &n, name, nlen); break;
		case 'd': rc = put(out, outlen, &n, domain, strlen(domain)); break;
		default: rc = put(out, outlen, &n, "%", 1); break;
		}
	}
	if (rc == 0 && loc.inbox == NULL)
		rc = put(out, outlen, &n, "/inbox", 6);
	if (rc != 0) {
		pt_status_set(st, 451, "4.3.5", "mailbox path for user %s is too long", name);
		return -1;
	}
	return 0;
}
