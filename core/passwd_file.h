/* Dovecot's passwd-file format, shared by the passdb and the userdb:
 *   user:{SCHEME}hash:uid:gid:gecos:home:shell:extra fields
 * Trailing fields may be left out; an empty uid/gid means a virtual user
 * (mail_uid / mail_gid apply). '#' comments and blank lines are skipped. */
#ifndef POSTERN_PASSWD_FILE_H
#define POSTERN_PASSWD_FILE_H

#include <stddef.h>

#define PT_PASSWD_USER_MAX 63      /* fits struct pt_user.name */
#define PT_PASSWD_LINE_MAX 8192
#define PT_PASSWD_ID_NAME (-2)      /* uid/gid given as a user/group name */

struct pt_passwd_entry {
	const char *user;
	const char *password;          /* "{SCHEME}hash", or NULL: no passdb entry */
	long long uid, gid;            /* -1 = not given (virtual user),
	                                  PT_PASSWD_ID_NAME = a name in uid_name */
	const char *uid_name, *gid_name; /* "" unless given as names */
	const char *gecos, *home, *shell, *extra; /* "" when absent */
	int line;
};

struct pt_passwd_file;

/* Parse text (path only names it in messages). Bad lines are skipped and
 * reported as "PATH:LINE: message"; the good ones stay usable, as Dovecot
 * does, so one typo does not lock every user out. Never NULL except out of
 * memory. */
struct pt_passwd_file *pt_passwd_file_parse(const char *path, const char *text, size_t len);
/* Read and parse path; a file that cannot be read is one error "PATH: ...". */
struct pt_passwd_file *pt_passwd_file_load(const char *path);
void pt_passwd_file_free(struct pt_passwd_file *f);

size_t pt_passwd_file_count(const struct pt_passwd_file *f);
const struct pt_passwd_entry *pt_passwd_file_entry(const struct pt_passwd_file *f, size_t i);
/* Case-insensitive (Dovecot's auth_username_format = %Lu). NULL if absent. */
const struct pt_passwd_entry *pt_passwd_file_find(const struct pt_passwd_file *f, const char *user);
int pt_passwd_file_error_count(const struct pt_passwd_file *f);
const char *pt_passwd_file_error(const struct pt_passwd_file *f, int i);
/* 1 when the file failed to open or read (no entries at all). */
int pt_passwd_file_unreadable(const struct pt_passwd_file *f);

/* Dovecot's extra fields (the text after the seventh colon): white-space
 * separated `key=value` or bare `key` (a flag, as `proxy` or `nologin`).
 * Keys compare case-insensitively. 1 when key is there (val gets its value,
 * "" for a bare flag, cut to vallen), 0 when absent. */
int pt_passwd_extra_get(const char *extra, const char *key, char *val, size_t vallen);
/* A yes/no extra field: present bare or with y, yes, 1, true (any case). */
int pt_passwd_extra_flag(const char *extra, const char *key);

/* A copy of one entry that outlives the cache lock. */
struct pt_passwd_rec {
	char user[PT_PASSWD_USER_MAX + 1];
	char password[1280];
	int has_password;
	long long uid, gid;
	char uid_name[33], gid_name[33];
	char home[256];
	char extra[512];
};

/* Thread-safe lookup through a per-path cache that re-reads the file when
 * its inode, size or mtime changes (errors are logged once per load).
 * 1 found, 0 no such user, -1 file unreadable. */
int pt_passwd_file_lookup(const char *path, const char *user, struct pt_passwd_rec *out);
/* Drop every cached file (tests, shutdown). */
void pt_passwd_file_cache_clear(void);

#endif
