/* Who exists and where their mail lives: `userdb = passwd` (system users)
 * or `userdb = passwd-file:PATH` (Dovecot's format, virtual users), unless
 * a module registers its own userdb service. */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "postern/log.h"
#include "postern/services.h"
#include "runtime.h"
#include "userdb.h"

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
static long
resolve_id(const char *s, int is_group)
{
	if (s == NULL || *s == '\0')
		return -1;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (*end == '\0' && errno == 0 && v >= 0)
		return v;
	char buf[4096];
	if (is_group) {
		struct group gr, *res = NULL;
		if (getgrnam_r(s, &gr, buf, sizeof buf, &res) == 0 && res)
			return (long)gr.gr_gid;
	} else {
		struct passwd pw, *res = NULL;
		if (getpwnam_r(s, &pw, buf, sizeof buf, &res) == 0 && res)
			return (long)pw.pw_uid;
	}
	return -1;
}

int
pt_userdb_parse_line(const char *line, struct pt_user *out, char *err, size_t errlen)
{
	/* user:password:uid:gid:gecos:home:shell:extra */
	char copy[1024];
	if (strlen(line) >= sizeof copy) {
		snprintf(err, errlen, "line too long");
		return -1;
	}
	strcpy(copy, line);
	char *field[8] = { 0 };
	int nf = 0;
	char *p = copy;
	while (nf < 8) {
		field[nf++] = p;
		char *colon = strchr(p, ':');
		if (colon == NULL)
			break;
		*colon = '\0';
		p = colon + 1;
	}
	if (field[0] == NULL || field[0][0] == '\0') {
		snprintf(err, errlen, "missing user name");
		return -1;
	}
	if (strlen(field[0]) >= sizeof out->name) {
		snprintf(err, errlen, "user name too long");
		return -1;
	}
	snprintf(out->name, sizeof out->name, "%s", field[0]);
	const struct pt_config *c = pt_live_conf;
	long uid = resolve_id(nf > 2 ? field[2] : NULL, 0);
	long gid = resolve_id(nf > 3 ? field[3] : NULL, 1);
	if (nf > 2 && field[2][0] && uid < 0) {
		snprintf(err, errlen, "bad uid \"%s\"", field[2]);
		return -1;
	}
	if (nf > 3 && field[3][0] && gid < 0) {
		snprintf(err, errlen, "bad gid \"%s\"", field[3]);
		return -1;
	}
	if (uid < 0 && c)
		uid = resolve_id(pt_conf_str(c, "mail_uid"), 0);
	if (gid < 0 && c)
		gid = resolve_id(pt_conf_str(c, "mail_gid"), 1);
	/* Rootless: everything runs as the invoking user anyway. */
	out->uid = uid < 0 ? getuid() : (uid_t)uid;
	out->gid = gid < 0 ? getgid() : (gid_t)gid;
	snprintf(out->home, sizeof out->home, "%s", nf > 5 ? field[5] : "");
	return 0;
}

/* passwd-file userdb: the file is re-read when it changes, at most once a
 * second. */
static struct {
	pthread_mutex_t lock;
	char path[512];
	struct timespec mtime;
	off_t size;
	ino_t ino;
	time_t checked;
	struct pt_user *users;
	size_t n;
} pf = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void
passwd_file_reload(const char *path)
{
	struct stat st;
	time_t now = time(NULL);
	if (strcmp(pf.path, path) == 0 && pf.checked == now)
		return;
	pf.checked = now;
	if (stat(path, &st) != 0) {
		pt_log(PT_LOG_WARNING, "userdb passwd-file %s: %s", path, strerror(errno));
		return;
	}
	if (strcmp(pf.path, path) == 0 && st.st_mtim.tv_sec == pf.mtime.tv_sec &&
	    st.st_mtim.tv_nsec == pf.mtime.tv_nsec && st.st_size == pf.size && st.st_ino == pf.ino)
		return;
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		pt_log(PT_LOG_WARNING, "userdb passwd-file %s: %s", path, strerror(errno));
		return;
	}
	struct pt_user *users = NULL;
	size_t n = 0, cap = 0;
	char line[1024];
	int lineno = 0, bad = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		char *s = line;
		while (isspace((unsigned char)*s))
			s++;
		if (*s == '\0' || *s == '#')
			continue;
		struct pt_user u;
		char err[128];
		if (pt_userdb_parse_line(s, &u, err, sizeof err) != 0) {
			pt_log(PT_LOG_WARNING, "%s:%d: %s", path, lineno, err);
			bad++;
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			struct pt_user *nu = realloc(users, cap * sizeof *users);
			if (nu == NULL) {
				bad++;
				break;
			}
			users = nu;
		}
		users[n++] = u;
	}
	fclose(f);
	free(pf.users);
	pf.users = users;
	pf.n = n;
	snprintf(pf.path, sizeof pf.path, "%s", path);
	pf.mtime = st.st_mtim;
	pf.size = st.st_size;
	pf.ino = st.st_ino;
}

static int
lookup_passwd_file(const char *path, const char *user, struct pt_user *out)
{
	pthread_mutex_lock(&pf.lock);
	passwd_file_reload(path);
	int found = 0;
	for (size_t i = 0; i < pf.n; i++)
		if (strcmp(pf.users[i].name, user) == 0) {
			*out = pf.users[i];
			found = 1;
			break;
		}
	pthread_mutex_unlock(&pf.lock);
	return found;
}

int
pt_user_lookup(const char *user, struct pt_user *out)
{
	const struct pt_userdb_ops *ops = pt_service_get(PT_SVC_USERDB);
	if (ops)
		return ops->lookup(user, out);
	if (user == NULL || *user == '\0' || strlen(user) >= sizeof out->name)
		return 0;
	const char *spec = pt_live_conf ? pt_conf_str(pt_live_conf, "userdb") : "passwd";
	if (strncmp(spec, "passwd-file:", 12) == 0)
		return lookup_passwd_file(spec + 12, user, out);
	return lookup_system(user, out);
}
