/* `postern user USER` and `postern auth test USER [PASSWORD]`: what
 * `doveadm user` and `doveadm auth test` show, for the admin's checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "config_int.h"
#include "passdb.h"
#include "passwd_file.h"
#include "postern/sasl.h"
#include "postern/services.h"
#include "runtime.h"

/* sysexits.h values doveadm uses. */
#define EXIT_NOUSER 67
#define EXIT_TEMPFAIL 75
#define EXIT_NOPERM 77

static struct pt_config *
load_conf(const char *path)
{
	struct pt_config *c = pt_runtime_load(path);
	if (!c) {
		fprintf(stderr, "postern: out of memory\n");
		return NULL;
	}
	if (pt_runtime_print_errors(c, stderr) > 0) {
		pt_config_free(c);
		return NULL;
	}
	pt_live_conf = c;
	return c;
}

/* How a passwd-file entry without a uid (or gid) field gets one: the
 * userdb's rule (userdb.c), told instead of shown as a bare number. */
static void
print_virtual_id(const struct pt_config *c, const char *field, unsigned long id, const char *param)
{
	const char *set = pt_conf_str(c, param);
	if (*set)
		printf("%s\t%lu (%s = %s: virtual user)\n", field, id, param, set);
	else if (geteuid() == 0 && strcmp(field, "uid") == 0)
		printf("%s\tnone (virtual user, and %s is not set: as root, delivery and "
		       "IMAP/POP3 logins for this user are refused)\n", field, param);
	else if (geteuid() == 0)
		printf("%s\t%lu (virtual user, %s not set: the server's own group, root's)\n", field, id, param);
	else
		printf("%s\t%lu (virtual user, %s not set: the server's own, rootless)\n", field, id, param);
}

int
pt_cmd_user(const char *conf, int argc, char **argv)
{
	struct pt_user u;

	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: postern user USER\n");
		return 2;
	}
	struct pt_config *c = load_conf(conf);
	if (!c)
		return 1;
	memset(&u, 0, sizeof u);
	int r = pt_user_lookup(argv[1], &u);
	int rc = 0;
	/* passwd-file lines may leave uid and gid out (virtual users). */
	struct pt_passwd_rec rec;
	const char *spec = pt_conf_str(c, "userdb");
	int from_file = r > 0 && pt_service_get(PT_SVC_USERDB) == NULL && strncmp(spec, "passwd-file:", 12) == 0 &&
	                pt_passwd_file_lookup(spec + 12, argv[1], &rec) > 0;
	if (r > 0) {
		printf("field\tvalue\nuser\t%s\n", u.name);
		if (from_file && rec.uid == -1)
			print_virtual_id(c, "uid", (unsigned long)u.uid, "mail_uid");
		else
			printf("uid\t%lu\n", (unsigned long)u.uid);
		if (from_file && rec.gid == -1)
			print_virtual_id(c, "gid", (unsigned long)u.gid, "mail_gid");
		else
			printf("gid\t%lu\n", (unsigned long)u.gid);
		printf("home\t%s\n", u.home);
		if (u.host[0])
			printf("host\t%s\n", u.host);
	} else if (r == 0) {
		fprintf(stderr, "userdb lookup: user %s doesn't exist\n", argv[1]);
		rc = EXIT_NOUSER;
	} else {
		fprintf(stderr, "userdb lookup failed for %s (temporary failure)\n", argv[1]);
		rc = EXIT_TEMPFAIL;
	}
	pt_live_conf = NULL;
	pt_config_free(c);
	return rc;
}

/* The password from the terminal without echo, or one line of stdin when
 * it is not a terminal (scripts). */
static int
read_password(char *buf, size_t cap)
{
	struct termios old, quiet;
	int tty = isatty(STDIN_FILENO);

	if (tty) {
		fputs("Password: ", stderr);
		fflush(stderr);
		if (tcgetattr(STDIN_FILENO, &old) == 0) {
			quiet = old;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
		} else {
			tty = 0;
		}
	}
	char *got = fgets(buf, (int)cap, stdin);
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	if (!got)
		return -1;
	buf[strcspn(buf, "\r\n")] = '\0';
	return 0;
}

int
pt_cmd_auth(const char *conf, int argc, char **argv)
{
	char password[PT_SASL_PASS_MAX + 2];
	char why[200];

	if (argc < 3 || argc > 4 || strcmp(argv[1], "test") != 0 || argv[2][0] == '-') {
		fprintf(stderr, "usage: postern auth test USER [PASSWORD]\n");
		return 2;
	}
	struct pt_config *c = load_conf(conf);
	if (!c)
		return 1;
	const char *user = argv[2];
	if (argc == 4) {
		snprintf(password, sizeof password, "%s", argv[3]);
	} else if (read_password(password, sizeof password) < 0) {
		fprintf(stderr, "postern auth: no password given\n");
		pt_config_free(c);
		return 2;
	}
	struct pt_passdb_req req = { user, password, "doveadm", "" };
	char proxy[PT_AUTH_PROXY_MAX] = "";
	int r = pt_passdb_check_proxy(pt_conf_str(c, "passdb"), &req, why, sizeof why, proxy, sizeof proxy);
	OPENSSL_cleanse(password, sizeof password);
	char name[80];
	pt_auth_log_name(user, name, sizeof name);
	int rc;
	if (r > 0) {
		printf("passdb: %s auth succeeded\n", name);
		rc = 0;
	} else if (r == 0) {
		printf("passdb: %s auth failed\n", name);
		rc = EXIT_NOPERM;
	} else {
		printf("passdb: %s auth failed (temporary failure: %s)\n", name, why);
		rc = EXIT_TEMPFAIL;
	}
	printf("extra fields:\n  user=%s\n", name);
	/* doveadm auth test shows the proxy fields a front acts on. */
	if (r > 0 && proxy[0])
		printf("  proxy\n  host=%s\n", proxy);
	/* The reason tells unknown users from wrong passwords: root only. */
	if (r == 0 && why[0] && geteuid() == 0)
		fprintf(stderr, "postern auth: %s\n", why);
	pt_live_conf = NULL;
	pt_config_free(c);
	return rc;
}
