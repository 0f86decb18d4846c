/* The mailbox service (PT_SVC_MAILBOX): a user's folders on mbox as
 * Dovecot lays them out (INBOX in the spool, the rest as files under the
 * mail root, directories for hierarchy, .subscriptions, .imap/ for our
 * index), folder operations, STATUS and APPEND, and the ops table. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mbox_store.h"

static pthread_mutex_t set_mu = PTHREAD_MUTEX_INITIALIZER;
static char set_location[MS_PATH_MAX] = "mbox:~/mail:INBOX=/var/mail/%u";
static struct mbox_settings set_live = { .mail_location = set_location,
	                                  .lock_timeout_ms = 10000,
	                                  .dotlock_stale_s = 300,
	                                  .priv_gid = (gid_t)-1,
	                                  .rewrite_copy_below = 64 << 20 };

void
mbox_store_settings_install(const struct mbox_settings *s)
{
	pthread_mutex_lock(&set_mu);
	set_live = *s;
	snprintf(set_location, sizeof set_location, "%s", s->mail_location);
	set_live.mail_location = set_location;
	pthread_mutex_unlock(&set_mu);
}

int
ms_name_check(const char *name, char *out, size_t outlen, struct pt_status *st)
{
	size_t len = name ? strlen(name) : 0;
	if (len == 0 || len > MS_NAME_MAX || len >= outlen)
		goto bad;
	const char *p = name;
	for (;;) {
		const char *e = strchr(p, '/');
		size_t cl = e ? (size_t)(e - p) : strlen(p);
		/* Dot names are ours (.imap, .subscriptions) or dangerous;
		 * NAME.lock is a dotlock, postern.* our index files. */
		if (cl == 0 || p[0] == '.' || (cl >= 5 && strncmp(p + cl - 5, ".lock", 5) == 0) ||
		    (cl >= 8 && strncmp(p, "postern.", 8) == 0))
			goto bad;
		for (size_t i = 0; i < cl; i++)
			if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
				goto bad;
		if (e == NULL)
			break;
		p = e + 1;
	}
	memcpy(out, name, len + 1);
	if (strncasecmp(out, "INBOX", 5) == 0 && (out[5] == '\0' || out[5] == '/'))
		memcpy(out, "INBOX", 5);
	return 0;
bad:
	pt_status_set(st, 550, "CANNOT", "Invalid mailbox name");
	return -1;
}

int
ms_name_path(const struct pt_mstore *ms, const char *name, char *out, size_t outlen)
{
	int n = strcmp(name, "INBOX") == 0 ? snprintf(out, outlen, "%s", ms->inbox)
	                                    : snprintf(out, outlen, "%s/%s", ms->root, name);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

struct pt_mstore *
mbox_store_open_with(const struct mbox_settings *s, const struct pt_user *user,
                     struct pt_status *st)
{
	char loc[MS_PATH_MAX], inbox[MS_PATH_MAX], root[MS_PATH_MAX];
	snprintf(loc, sizeof loc, "%s", s->mail_location ? s->mail_location : "");
	/* ROOT is the location's first part: expand it as if it were a
	 * location without INBOX= (which yields ROOT/inbox). */
	char rootloc[MS_PATH_MAX + 8];
	const char *t = strncmp(loc, "mbox:", 5) == 0 ? loc + 5 : "";
	size_t tl = strcspn(t, ":");
	snprintf(rootloc, sizeof rootloc, "mbox:%.*s", (int)tl, t);
	if (mbox_inbox_path(loc, user, inbox, sizeof inbox, st) != 0 ||
	    mbox_inbox_path(rootloc, user, root, sizeof root, st) != 0)
		return NULL;
	root[strlen(root) - strlen("/inbox")] = '\0';
	/* Strings after the struct, at their length: one store per session. */
	size_t ll = strlen(loc) + 1, li = strlen(inbox) + 1, lr = strlen(root) + 1;
	struct pt_mstore *ms = calloc(1, sizeof *ms + ll + li + lr);
	if (ms == NULL) {
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return NULL;
	}
	ms->location = (char *)(ms + 1);
	ms->inbox = ms->location + ll;
	ms->root = ms->inbox + li;
	memcpy(ms->location, loc, ll);
	memcpy(ms->inbox, inbox, li);
	memcpy(ms->root, root, lr);
	ms->set = *s;
	ms->set.mail_location = ms->location;
	ms->user = *user;
	return ms;
}

static struct pt_mstore *
store_open(const struct pt_user *user, struct pt_status *st)
{
	char loc[MS_PATH_MAX];
	pthread_mutex_lock(&set_mu);
	struct mbox_settings s = set_live;
	memcpy(loc, set_location, sizeof loc);
	pthread_mutex_unlock(&set_mu);
	s.mail_location = loc;
	return mbox_store_open_with(&s, user, st);
}

static void
store_close(struct pt_mstore *ms)
{
	free(ms);
}

/* ---- LIST ---- */

struct names {
	char **v;
	unsigned *attrs;
	size_t n, cap;
};

static int
names_add(struct names *l, const char *name, unsigned attrs)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		char **v = realloc(l->v, cap * sizeof *v);
		if (v == NULL)
			return -1;
		l->v = v;
		unsigned *a = realloc(l->attrs, cap * sizeof *a);
		if (a == NULL)
			return -1;
		l->attrs = a;
		l->cap = cap;
	}
	if ((l->v[l->n] = strdup(name)) == NULL)
		return -1;
	l->attrs[l->n++] = attrs;
	return 0;
}

static int
visible_entry(const char *d)
{
	size_t l = strlen(d);
	return d[0] != '.' && !(l >= 5 && strcmp(d + l - 5, ".lock") == 0) &&
	       strncmp(d, "postern.", 8) != 0;
}

/* Walk the open directory dfd (the folder prefix "prefix"; closed here);
 * returns whether anything visible was found. Symbolic links are neither
 * listed nor followed: no folder leaves the mail root through one. */
static int
walk(int dfd, const char *prefix, struct names *l, int depth)
{
	DIR *d = depth > 32 ? NULL : fdopendir(dfd);
	if (d == NULL) {
		close(dfd);
		return 0;
	}
	int any = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (!visible_entry(de->d_name))
			continue;
		char name[MS_NAME_MAX * 2 + 2];
		if (snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "/" : "", de->d_name) >
		    MS_NAME_MAX)
			continue;
		struct stat sb;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		int top_inbox = *prefix == '\0' && strcasecmp(de->d_name, "INBOX") == 0;
		if (S_ISDIR(sb.st_mode)) {
			int sub = openat(dirfd(d), de->d_name,
			                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			size_t at = l->n;
			if (!top_inbox && names_add(l, name, PT_MB_NOSELECT) != 0) {
				if (sub >= 0)
					close(sub);
				break;
			}
			int kids = sub >= 0 ? walk(sub, top_inbox ? "INBOX" : name, l, depth + 1) : 0;
			if (!top_inbox)
				l->attrs[at] |= kids ? PT_MB_HASCHILDREN : PT_MB_HASNOCHILDREN;
			else if (kids)
				l->attrs[0] = (l->attrs[0] & ~PT_MB_HASNOCHILDREN) | PT_MB_HASCHILDREN;
			any = 1;
		} else if (S_ISREG(sb.st_mode) && !top_inbox) {
			if (names_add(l, name, PT_MB_HASNOCHILDREN) != 0)
				break;
			any = 1;
		}
	}
	closedir(d);
	return any;
}

static int
cmp_idx(const void *a, const void *b, void *arg)
{
	char **v = arg;
	return strcmp(v[*(const size_t *)a], v[*(const size_t *)b]);
}

static int
store_list(struct pt_mstore *ms, void (*emit)(void *arg, const char *name, unsigned attrs),
           void *arg, struct pt_status *st)
{
	struct names l = { 0 };
	if (names_add(&l, "INBOX", PT_MB_HASNOCHILDREN) != 0) {
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return -1;
	}
	int rfd = open(ms->root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rfd >= 0)
		walk(rfd, "", &l, 0);
	size_t *order = malloc((l.n ? l.n : 1) * sizeof *order);
	if (order) {
		for (size_t i = 0; i < l.n; i++)
			order[i] = i;
		if (l.n > 1)
			qsort_r(order + 1, l.n - 1, sizeof *order, cmp_idx, l.v);
		for (size_t i = 0; i < l.n; i++)
			emit(arg, l.v[order[i]], l.attrs[order[i]]);
	}
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i]);
	free(l.v);
	free(l.attrs);
	free(order);
	if (order == NULL) {
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return -1;
	}
	return 0;
}

/* ---- CREATE / DELETE / RENAME ---- */

static int
rm_tree(const char *path)
{
	struct stat sb;
	if (lstat(path, &sb) != 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(sb.st_mode))
		return unlink(path);
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char sub[MS_PATH_MAX];
		if (snprintf(sub, sizeof sub, "%s/%s", path, de->d_name) >= (int)sizeof sub)
			continue;
		if (rm_tree(sub) != 0)
			rc = -1;
	}
	closedir(d);
	return rmdir(path) == 0 ? rc : -1;
}

/* Remove the index files of one folder (not its children's dirs). */
static void
drop_index(const struct pt_mstore *ms, const char *name)
{
	char p[MS_PATH_MAX + 64];
	/* The append log and the index's check mark go with it. */
	static const char *const files[] = { "postern.index", "postern.tail", "postern.checked" };
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(p, sizeof p, "%s/.imap/%s/%s", ms->root, name, files[i]);
		unlink(p);
	}
	snprintf(p, sizeof p, "%s/.imap/%s", ms->root, name);
	ms_cache_unlink(p);
	rmdir(p);
}

static int
errno_status(struct pt_status *st, const char *what)
{
	if (errno == EACCES || errno == EPERM)
		pt_status_set(st, 550, "NOPERM", "Permission denied");
	else if (errno == ENOSPC || errno == EDQUOT)
		pt_status_set(st, 452, "OVERQUOTA", "Not enough disk space");
	else
		pt_status_set(st, 451, "", "%s: %s", what, strerror(errno));
	return -1;
}

static int
store_create(struct pt_mstore *ms, const char *name, struct pt_status *st)
{
	char buf[MS_NAME_MAX + 2], norm[MS_NAME_MAX + 1], path[MS_PATH_MAX];
	size_t len = name ? strlen(name) : 0;
	int dir_only = len > 1 && name[len - 1] == '/';
	if (len >= sizeof buf) {
		pt_status_set(st, 550, "CANNOT", "Invalid mailbox name");
		return -1;
	}
	memcpy(buf, name ? name : "", len + 1);
	if (dir_only)
		buf[len - 1] = '\0';
	if (ms_name_check(buf, norm, sizeof norm, st) != 0 ||
	    ms_name_path(ms, norm, path, sizeof path) != 0)
		return -1;
	if (strcmp(norm, "INBOX") == 0) {
		pt_status_set(st, 550, "ALREADYEXISTS", "Mailbox already exists");
		return -1;
	}
	const char *leaf;
	struct pt_status why;
	int dfd = ms_dir_open(ms->root, norm, 1, &leaf, &why);
	if (dfd < 0) {
		if (strcmp(why.dsn, "NONEXISTENT") == 0)
			pt_status_set(st, 550, "CANNOT", "Mailbox %s: a parent is not a directory", norm);
		else
			*st = why;
		return -1;
	}
	struct stat sb;
	if (fstatat(dfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
		close(dfd);
		if (S_ISLNK(sb.st_mode))
			return ms_errno_status(ELOOP, norm, st);
		pt_status_set(st, 550, "ALREADYEXISTS", "Mailbox already exists");
		return -1;
	}
	if (dir_only) {
		int e = mkdirat(dfd, leaf, 0700) == 0 ? 0 : errno;
		close(dfd);
		errno = e;
		return e == 0 ? 0 : errno_status(st, "Cannot create mailbox");
	}
	/* A name used before must not bring its old UIDVALIDITY back. */
	drop_index(ms, norm);
	int fd = openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	close(dfd);
	if (fd < 0) {
		if (errno == EEXIST) {
			pt_status_set(st, 550, "ALREADYEXISTS", "Mailbox already exists");
			return -1;
		}
		return errno_status(st, "Cannot create mailbox");
	}
	close(fd);
	struct ms_folder f;
	int changed;
	if (ms_folder_init(&f, ms->root, norm, path, &ms->set, st) == 0) {
		ms_folder_load(&f, &changed, st);
		ms_folder_free(&f);
	}
	return 0;
}

static int
has_children(int dfd, const char *leaf)
{
	int fd = openat(dfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	struct dirent *de;
	int any = 0;
	while (!any && (de = readdir(d)) != NULL)
		any = visible_entry(de->d_name);
	closedir(d);
	return any;
}

static int
store_remove(struct pt_mstore *ms, const char *name, struct pt_status *st)
{
	char norm[MS_NAME_MAX + 1], path[MS_PATH_MAX];
	if (ms_name_check(name, norm, sizeof norm, st) != 0 ||
	    ms_name_path(ms, norm, path, sizeof path) != 0)
		return -1;
	if (strcmp(norm, "INBOX") == 0) {
		pt_status_set(st, 550, "CANNOT", "INBOX can't be deleted.");
		return -1;
	}
	const char *leaf;
	int dfd = ms_dir_open(ms->root, norm, 0, &leaf, st);
	if (dfd == -2)
		return ms_errno_status(ENOENT, norm, st);
	if (dfd < 0)
		return -1;
	struct stat sb;
	int rc = -1;
	if (fstatat(dfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
		ms_errno_status(errno, norm, st);
	} else if (S_ISLNK(sb.st_mode)) {
		ms_errno_status(ELOOP, norm, st);
	} else if (S_ISDIR(sb.st_mode)) {
		/* RFC 3501: a \Noselect name with children cannot go. */
		if (has_children(dfd, leaf))
			pt_status_set(st, 550, "CANNOT", "Mailbox has children, delete them first");
		else if (unlinkat(dfd, leaf, AT_REMOVEDIR) != 0)
			errno_status(st, "Cannot delete mailbox");
		else
			rc = 0;
	} else if (unlinkat(dfd, leaf, 0) != 0) {
		errno_status(st, "Cannot delete mailbox");
	} else {
		rc = 0;
	}
	close(dfd);
	if (rc == 0)
		drop_index(ms, norm);
	return rc;
}

/* INBOX renamed: its messages move to a new folder, INBOX stays, empty. */
static int
rename_inbox(struct pt_mstore *ms, const char *to, int dto, const char *leaf, struct pt_status *st)
{
	struct ms_folder f;
	if (ms_folder_init(&f, ms->root, "INBOX", ms->inbox, &ms->set, st) != 0)
		return -1;
	struct mbox_lock lk;
	int changed, rc = -1, out = -1;
	char *buf = NULL;
	if (ms_folder_lock(&f, &lk, 0, st) != 0)
		goto done;
	if (ms_folder_load(&f, &changed, st) != 0)
		goto unlock;
	if (f.fd >= 0 && f.writable && f.n && ms_folder_write(&f, st) != 0)
		goto unlock;
	out = openat(dto, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		if (errno == EEXIST)
			pt_status_set(st, 550, "ALREADYEXISTS", "Mailbox already exists");
		else
			errno_status(st, "Cannot create mailbox");
		goto unlock;
	}
	drop_index(ms, to);
	if (f.fd >= 0 && f.n) {
		struct stat sb;
		int64_t start = f.m[0].from_off;
		if (fstat(f.fd, &sb) != 0 || (buf = malloc(256 * 1024)) == NULL)
			goto fail;
		for (int64_t pos = start; pos < sb.st_size;) {
			ssize_t r = pread(f.fd, buf, 256 * 1024, pos);
			if (r <= 0)
				goto fail;
			for (ssize_t w = 0; w < r;) {
				ssize_t k = write(out, buf + w, (size_t)(r - w));
				if (k <= 0)
					goto fail;
				w += k;
			}
			pos += r;
		}
		if (fsync(out) != 0)
			goto fail;
		/* Only the messages go; bytes before the first one stay. */
		if (ftruncate(f.fd, start) != 0 || fsync(f.fd) != 0)
			goto fail;
	}
	rc = 0;
	goto unlock;
fail:
	errno_status(st, "Cannot move INBOX messages");
	unlinkat(dto, leaf, 0);
unlock:
	ms_folder_unlock(&f, &lk);
	if (rc == 0) {
		ms_shared_bump(&f);
		ms_folder_load(&f, &changed, st);
	}
done:
	if (out >= 0)
		close(out);
	free(buf);
	ms_folder_free(&f);
	return rc;
}

static int
store_rename(struct pt_mstore *ms, const char *from, const char *to, struct pt_status *st)
{
	char nf[MS_NAME_MAX + 1], nt[MS_NAME_MAX + 1], pf[MS_PATH_MAX], pto[MS_PATH_MAX];
	if (ms_name_check(from, nf, sizeof nf, st) != 0 || ms_name_check(to, nt, sizeof nt, st) != 0 ||
	    ms_name_path(ms, nf, pf, sizeof pf) != 0 || ms_name_path(ms, nt, pto, sizeof pto) != 0)
		return -1;
	if (strcmp(nt, "INBOX") == 0) {
		pt_status_set(st, 550, "ALREADYEXISTS", "Mailbox already exists");
		return -1;
	}
	size_t fl = strlen(nf);
	if (strncmp(nt, nf, fl) == 0 && nt[fl] == '/') {
		pt_status_set(st, 550, "CANNOT", "Can't rename mailbox under itself");
		return -1;
	}
	/* Both ends through directory fds opened without following a
	 * symlink; the source itself must not be one either. */
	const char *lf = NULL, *lt;
	int dfrom = -1;
	struct stat sb;
	if (strcmp(nf, "INBOX") != 0) {
		dfrom = ms_dir_open(ms->root, nf, 0, &lf, st);
		if (dfrom == -2)
			return ms_errno_status(ENOENT, nf, st);
		if (dfrom < 0)
			return -1;
		int e = fstatat(dfrom, lf, &sb, AT_SYMLINK_NOFOLLOW) != 0 ? errno
		        : S_ISLNK(sb.st_mode)                               ? ELOOP
		                                                            : 0;
		if (e != 0) {
			close(dfrom);
			return ms_errno_status(e, nf, st);
		}
	}
	int dto = ms_dir_open(ms->root, nt, 1, &lt, st);
	if (dto < 0) {
		if (dfrom >= 0)
			close(dfrom);
		return dto == -2 ? ms_errno_status(ENOENT, nt, st) : -1;
	}
	if (fstatat(dto, lt, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
		if (dfrom >= 0)
			close(dfrom);
		close(dto);
		pt_status_set(st, 550, "ALREADYEXISTS", "Mailbox already exists");
		return -1;
	}
	if (dfrom < 0) {
		int rc = rename_inbox(ms, nt, dto, lt, st);
		close(dto);
		return rc;
	}
	int rc = renameat(dfrom, lf, dto, lt);
	int e = errno;
	close(dfrom);
	close(dto);
	if (rc != 0) {
		errno = e;
		return errno_status(st, "Cannot rename mailbox");
	}
	/* The index (and the children's) moves along: same UIDVALIDITY. */
	char idx_from[MS_PATH_MAX + 8], it[MS_PATH_MAX + 8];
	snprintf(idx_from, sizeof idx_from, "%s/.imap/%s", ms->root, nf);
	snprintf(it, sizeof it, "%s/.imap/%s", ms->root, nt);
	rm_tree(it);
	if (ms_mkdirs(it, 0) == 0)
		rename(idx_from, it);
	return 0;
}

/* ---- subscriptions (Dovecot's ROOT/.subscriptions, one name a line) ---- */

static int
store_subscriptions(struct pt_mstore *ms, void (*emit)(void *arg, const char *name), void *arg,
                    struct pt_status *st)
{
	char path[MS_PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/.subscriptions", ms->root);
	FILE *fp = fopen(path, "r");
	if (fp == NULL) {
		if (errno == ENOENT)
			return 0;
		return errno_status(st, "Cannot read subscriptions");
	}
	char line[MS_NAME_MAX + 8];
	while (fgets(line, sizeof line, fp)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0])
			emit(arg, line);
	}
	fclose(fp);
	return 0;
}

static int
store_subscribe(struct pt_mstore *ms, const char *name, int on, struct pt_status *st)
{
	char norm[MS_NAME_MAX + 1];
	if (ms_name_check(name, norm, sizeof norm, st) != 0)
		return -1;
	char path[MS_PATH_MAX + 32], tmp[MS_PATH_MAX + 48];
	snprintf(path, sizeof path, "%s/.subscriptions", ms->root);
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
	if (ms_mkdirs(ms->root, 1) != 0)
		return errno_status(st, "Cannot write subscriptions");
	FILE *in = fopen(path, "r");
	FILE *out = fopen(tmp, "w");
	if (out == NULL) {
		if (in)
			fclose(in);
		return errno_status(st, "Cannot write subscriptions");
	}
	char line[MS_NAME_MAX + 8];
	int found = 0;
	while (in && fgets(line, sizeof line, in)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			continue;
		if (strcmp(line, norm) == 0) {
			if (found || !on)
				continue;
			found = 1;
		}
		fprintf(out, "%s\n", line);
	}
	if (in)
		fclose(in);
	if (on && !found)
		fprintf(out, "%s\n", norm);
	if (fflush(out) != 0 || fsync(fileno(out)) != 0) {
		fclose(out);
		unlink(tmp);
		return errno_status(st, "Cannot write subscriptions");
	}
	fclose(out);
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return errno_status(st, "Cannot write subscriptions");
	}
	return 0;
}

/* ---- special use (ROOT/.special-use: "USE<TAB>NAME" a line) ---- */

static int
store_special_uses(struct pt_mstore *ms, void (*emit)(void *arg, const char *name, const char *use),
                   void *arg, struct pt_status *st)
{
	char path[MS_PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/.special-use", ms->root);
	FILE *fp = fopen(path, "r");
	if (fp == NULL) {
		if (errno == ENOENT)
			return 0;
		return errno_status(st, "Cannot read special-use attributes");
	}
	char line[MS_NAME_MAX + 256];
	while (fgets(line, sizeof line, fp)) {
		line[strcspn(line, "\r\n")] = '\0';
		char *tab = strchr(line, '\t');
		if (tab == NULL || tab == line || tab[1] == '\0')
			continue;
		*tab = '\0';
		emit(arg, tab + 1, line);
	}
	fclose(fp);
	return 0;
}

static int
store_set_special_use(struct pt_mstore *ms, const char *name, const char *use, struct pt_status *st)
{
	char norm[MS_NAME_MAX + 1];
	if (ms_name_check(name, norm, sizeof norm, st) != 0)
		return -1;
	if (use != NULL && (strlen(use) > 200 || strpbrk(use, "\t\r\n") != NULL)) {
		pt_status_set(st, 550, "CANNOT", "Invalid special-use attributes");
		return -1;
	}
	char path[MS_PATH_MAX + 32], tmp[MS_PATH_MAX + 48];
	snprintf(path, sizeof path, "%s/.special-use", ms->root);
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
	if (ms_mkdirs(ms->root, 1) != 0)
		return errno_status(st, "Cannot write special-use attributes");
	FILE *in = fopen(path, "r");
	FILE *out = fopen(tmp, "w");
	if (out == NULL) {
		if (in)
			fclose(in);
		return errno_status(st, "Cannot write special-use attributes");
	}
	/* Every other folder's line is kept; this one's is replaced. */
	char line[MS_NAME_MAX + 256];
	while (in && fgets(line, sizeof line, in)) {
		line[strcspn(line, "\r\n")] = '\0';
		const char *tab = strchr(line, '\t');
		if (tab == NULL || strcmp(tab + 1, norm) == 0)
			continue;
		fprintf(out, "%s\n", line);
	}
	if (in)
		fclose(in);
	if (use != NULL && use[0])
		fprintf(out, "%s\t%s\n", use, norm);
	if (fflush(out) != 0 || fsync(fileno(out)) != 0) {
		fclose(out);
		unlink(tmp);
		return errno_status(st, "Cannot write special-use attributes");
	}
	fclose(out);
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return errno_status(st, "Cannot write special-use attributes");
	}
	return 0;
}

/* ---- STATUS / APPEND without a session's open ---- */

static int
store_status(struct pt_mstore *ms, const char *name, struct pt_mbox_status *out,
             struct pt_status *st)
{
	struct pt_mbox *mb = ms_mbox_open(ms, name, 1, st);
	if (mb == NULL)
		return -1;
	memset(out, 0, sizeof *out);
	out->messages = (uint32_t)ms_mbox_count(mb);
	for (size_t i = 0; i < out->messages; i++) {
		const struct pt_msg_info *m = ms_mbox_info(mb, i);
		if (m->flags & PT_F_RECENT)
			out->recent++;
		if (!(m->flags & PT_F_SEEN)) {
			if (out->unseen++ == 0)
				out->first_unseen_seq = (uint32_t)i + 1;
		}
		out->size += m->size;
		if (m->flags & PT_F_DELETED) {
			out->deleted_size += m->size;
			out->deleted++;
		}
	}
	out->uidnext = ms_mbox_uidnext(mb);
	out->uidvalidity = mb->f.uidvalidity;
	out->highestmodseq = ms_mbox_highest_modseq(mb);
	ms_mbox_close(mb);
	return 0;
}

static int
store_append(struct pt_mstore *ms, const char *name, const struct pt_append *msgs, size_t n,
             uint32_t *uidvalidity, uint32_t *uids, struct pt_status *st)
{
	char norm[MS_NAME_MAX + 1], path[MS_PATH_MAX];
	if (ms_name_check(name, norm, sizeof norm, st) != 0 ||
	    ms_name_path(ms, norm, path, sizeof path) != 0)
		return -1;
	int inbox = strcmp(norm, "INBOX") == 0;
	struct ms_folder f;
	if (ms_folder_init(&f, ms->root, norm, path, &ms->set, st) != 0)
		return -1;
	if (!inbox && ms_folder_exists(&f, st) != 0) {
		ms_folder_free(&f);
		return -1;
	}
	struct mbox_lock lk;
	int changed, rc = -1;
	if (ms_folder_lock(&f, &lk, inbox, st) != 0)
		goto out;
	if (f.fd < 0) {
		pt_status_set(st, 450, "", "Cannot create mailbox");
		goto unlock;
	}
	if (ms_folder_load(&f, &changed, st) != 0)
		goto unlock;
	rc = ms_folder_append(&f, &lk, msgs, n, uids, st);
	if (rc == 0 && uidvalidity)
		*uidvalidity = f.uidvalidity;
unlock:
	ms_folder_unlock(&f, &lk);
out:
	ms_folder_free(&f);
	return rc;
}

/* mailbox_size_limit holds for each mbox file alone (delivery and APPEND
 * refuse what would grow that file past it), so the quota of a folder is
 * its own file's size against the limit. A missing INBOX counts 0. */
static int
store_quota(struct pt_mstore *ms, const char *name, uint64_t *used, uint64_t *limit,
            struct pt_status *st)
{
	char norm[MS_NAME_MAX + 1], path[MS_PATH_MAX];
	if (ms_name_check(name, norm, sizeof norm, st) != 0 ||
	    ms_name_path(ms, norm, path, sizeof path) != 0)
		return -1;
	struct ms_folder f;
	if (ms_folder_init(&f, ms->root, norm, path, &ms->set, st) != 0)
		return -1;
	off_t size = 0;
	int rc = ms_folder_size(&f, &size, st);
	if (rc != 0 && strcmp(norm, "INBOX") == 0 && strcmp(st->dsn, "NONEXISTENT") == 0) {
		size = 0;
		rc = 0;
	}
	ms_folder_free(&f);
	if (rc != 0)
		return -1;
	*used = (uint64_t)size;
	*limit = ms->set.size_limit > 0 ? (uint64_t)ms->set.size_limit : 0;
	return 0;
}

const struct pt_mailbox_ops mbox_store_ops = {
	.store_open = store_open,
	.store_close = store_close,
	.list = store_list,
	.create = store_create,
	.remove = store_remove,
	.rename = store_rename,
	.subscribe = store_subscribe,
	.subscriptions = store_subscriptions,
	.status = store_status,
	.append = store_append,
	.open = ms_mbox_open,
	.close = ms_mbox_close,
	.sync = ms_mbox_sync,
	.count = ms_mbox_count,
	.info = ms_mbox_info,
	.find = ms_mbox_find,
	.uidvalidity = ms_mbox_uidvalidity,
	.uidnext = ms_mbox_uidnext,
	.keyword_count = ms_mbox_keyword_count,
	.keyword_name = ms_mbox_keyword_name,
	.keyword_index = ms_mbox_keyword_index,
	.read = ms_mbox_read,
	.release = ms_mbox_release,
	.set_flags = ms_mbox_set_flags,
	.expunge = ms_mbox_expunge,
	.path = ms_mbox_path,
	.change_flags = ms_mbox_change_flags,
	.special_uses = store_special_uses,
	.index_dir = ms_mbox_index_dir,
	.set_special_use = store_set_special_use,
	.quota = store_quota,
	.highest_modseq = ms_mbox_highest_modseq,
	.change_flags_cond = ms_mbox_change_flags_cond,
	.header_fields = ms_cache_header,
	.vanished_since = ms_mbox_vanished_since,
	.uptodate = ms_mbox_uptodate,
	.sort_key = ms_cache_sort_key,
	.sort_key_put = ms_cache_sort_key_put,
	.answer_get = ms_cache_answer_get,
	.answer_put = ms_cache_answer_put,
	.msgid_candidates = ms_cache_msgid,
	.briefs = ms_mbox_briefs,
};
