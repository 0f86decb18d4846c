/* Who exists and where their mail lives: `userdb = passwd` (system users),
 * `userdb = passwd-file:PATH` (Dovecot's format, virtual users) or
 * `userdb = TYPE:ARG` from a lookup module (ldap:FILE, map.h), unless a
 * module registers its own userdb service. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "passwd_file.h"
#include "postern/map.h"
#include "postern/log.h"
#include "postern/services.h"
#include "runtime.h"

static int
lookup_system(const char *user, struct pt_user *out)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int rc = getpwnam_r(user, &pw, buf, sizeof buf, &res);
	if (rc != 0 && rc != ENOENT && rc != ESRCH)
		return -1;
	if (res == NULL)
		return 0;
	snprintf(out->name, sizeof out->name, "%s", pw.pw_name);
	out->uid = pw.pw_uid;
	out->gid = pw.pw_gid;
	snprintf(out->home, sizeof out->home, "%s", pw.pw_dir);
	return 1;
}

/* A uid/gid given as a number or a name; -1 when empty or unknown. */
static long long
resolve_id(const char *s, int is_group)
{
	if (s == NULL || *s == '\0')
		return -1;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (*end == '\0' && errno == 0 && v >= 0)
		return v;
	char buf[4096];
	if (is_group) {
		struct group gr, *res = NULL;
		if (getgrnam_r(s, &gr, buf, sizeof buf, &res) == 0 && res)
			return (long long)gr.gr_gid;
	} else {
		struct passwd pw, *res = NULL;
		if (getpwnam_r(s, &pw, buf, sizeof buf, &res) == 0 && res)
			return (long long)pw.pw_uid;
	}
	return -1;
}

/* An id from the file (number or name), else mail_uid / mail_gid (virtual
 * users), else the running user's: rootless mode runs as one user anyway. */
static long long
entry_id(long long id, const char *name, const char *param, int is_group)
{
	if (id == PT_PASSWD_ID_NAME)
		id = resolve_id(name, is_group);
	if (id < 0 && pt_live_conf)
		id = resolve_id(pt_conf_str(pt_live_conf, param), is_group);
	if (id < 0)
		id = is_group ? (long long)getgid() : (long long)getuid();
	return id;
}

static int
lookup_passwd_file(const char *path, const char *user, struct pt_user *out)
{
	struct pt_passwd_rec rec;
	int rc = pt_passwd_file_lookup(path, user, &rec);
	if (rc <= 0)
		return rc;
	snprintf(out->name, sizeof out->name, "%s", rec.user);
	out->uid = (uid_t)entry_id(rec.uid, rec.uid_name, "mail_uid", 0);
	out->gid = (gid_t)entry_id(rec.gid, rec.gid_name, "mail_gid", 1);
	snprintf(out->home, sizeof out->home, "%s", rec.home);
	/* Dovecot: a userdb field in the passdb line carries the userdb_ prefix. */
	if (!pt_passwd_extra_get(rec.extra, "host", out->host, sizeof out->host))
		pt_passwd_extra_get(rec.extra, "userdb_host", out->host, sizeof out->host);
	return 1;
}

/* A lookup module's source (ldap:FILE). On an event loop it answers from
 * its cache or "temporary failure, pending" (the rule in map.h). */
static int
lookup_module(const char *spec, const char *user, struct pt_user *out)
{
	char err[200];
	struct pt_map_source *src = pt_map_source_get(spec, 1, err, sizeof err);
	if (!src) {
		pt_log(PT_LOG_ERROR, "userdb: %s", err);
		return -1;
	}
	memset(out, 0, sizeof *out);
	out->uid = (uid_t)-1;
	out->gid = (gid_t)-1;
	int rc = pt_map_source_userdb(src, user, out);
	if (rc == 1) {
		if (out->uid == (uid_t)-1)
			out->uid = (uid_t)entry_id(-1, NULL, "mail_uid", 0);
		if (out->gid == (gid_t)-1)
			out->gid = (gid_t)entry_id(-1, NULL, "mail_gid", 1);
	}
	return rc;
}

int
pt_user_lookup(const char *user, struct pt_user *out)
{
	const struct pt_userdb_ops *ops = pt_service_get(PT_SVC_USERDB);
	if (out)
		out->host[0] = '\0';  /* a source without the field: mail is here */
	if (ops)
		return ops->lookup(user, out);
	if (user == NULL || *user == '\0' || strlen(user) >= sizeof out->name)
		return 0;
	const char *spec = pt_live_conf ? pt_conf_str(pt_live_conf, "userdb") : "passwd";
	if (strncmp(spec, "passwd-file:", 12) == 0)
		return lookup_passwd_file(spec + 12, user, out);
	if (strcmp(spec, "passwd") != 0)
		return lookup_module(spec, user, out);
	return lookup_system(user, out);
}
