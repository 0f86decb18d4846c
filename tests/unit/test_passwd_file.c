/* Unit tests for the passwd-file parser and its cache: good lines, missing
 * fields, virtual users, comments, bad lines reported as FILE:LINE, file
 * changes picked up, truncation at every offset. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "passwd_file.h"

static struct pt_passwd_file *
parse(const char *text)
{
	struct pt_passwd_file *f = pt_passwd_file_parse("users", text, strlen(text));
	assert_non_null(f);
	return f;
}

static void
test_good_lines(void **state)
{
	(void)state;
	struct pt_passwd_file *f = parse(
		"alice:{PLAIN}pw1:1001:1002:Alice A:/home/alice:/bin/sh:userdb_mail=mbox:~/m\n"
		"bob:{SHA512-CRYPT}$6$salt$hash:1003:1003::/home/bob::\n");
	assert_int_equal(pt_passwd_file_error_count(f), 0);
	assert_int_equal(pt_passwd_file_count(f), 2);
	const struct pt_passwd_entry *e = pt_passwd_file_find(f, "alice");
	assert_non_null(e);
	assert_string_equal(e->user, "alice");
	assert_string_equal(e->password, "{PLAIN}pw1");
	assert_int_equal(e->uid, 1001);
	assert_int_equal(e->gid, 1002);
	assert_string_equal(e->gecos, "Alice A");
	assert_string_equal(e->home, "/home/alice");
	assert_string_equal(e->shell, "/bin/sh");
	assert_string_equal(e->extra, "userdb_mail=mbox:~/m");  /* later colons stay */
	assert_int_equal(e->line, 1);
	e = pt_passwd_file_find(f, "BOB");  /* %Lu: names match in any case */
	assert_non_null(e);
	assert_string_equal(e->user, "bob");
	assert_string_equal(e->home, "/home/bob");
	assert_string_equal(e->extra, "");
	assert_null(pt_passwd_file_find(f, "carol"));
	assert_null(pt_passwd_file_find(f, "alic"));
	pt_passwd_file_free(f);
}

static void
test_missing_fields_virtual(void **state)
{
	(void)state;
	struct pt_passwd_file *f = parse(
		"v1:{PLAIN}x\n"
		"v2:{PLAIN}y:::::\n"
		"v3:{PLAIN}z::::/srv/mail/v3\n"
		"nopass\n"
		"emptypass::2000:2000\n"
		"named:{PLAIN}n:vmail:mail\n");
	assert_int_equal(pt_passwd_file_error_count(f), 0);
	assert_int_equal(pt_passwd_file_count(f), 6);
	const struct pt_passwd_entry *e = pt_passwd_file_find(f, "v1");
	assert_int_equal(e->uid, -1);
	assert_int_equal(e->gid, -1);
	assert_string_equal(e->home, "");
	e = pt_passwd_file_find(f, "v2");
	assert_int_equal(e->uid, -1);
	assert_string_equal(e->password, "{PLAIN}y");
	e = pt_passwd_file_find(f, "v3");
	assert_int_equal(e->uid, -1);
	assert_string_equal(e->home, "/srv/mail/v3");
	e = pt_passwd_file_find(f, "nopass");
	assert_null(e->password);  /* userdb-only entry: never logs in */
	e = pt_passwd_file_find(f, "emptypass");
	assert_null(e->password);
	assert_int_equal(e->uid, 2000);
	e = pt_passwd_file_find(f, "named");
	assert_int_equal(e->uid, PT_PASSWD_ID_NAME);
	assert_string_equal(e->uid_name, "vmail");
	assert_int_equal(e->gid, PT_PASSWD_ID_NAME);
	assert_string_equal(e->gid_name, "mail");
	pt_passwd_file_free(f);
}

static void
test_comments_blank_crlf(void **state)
{
	(void)state;
	struct pt_passwd_file *f = parse(
		"# users of the demo\r\n"
		"\r\n"
		"   \t\n"
		"  # indented comment\n"
		"alice:{PLAIN}a\r\n"
		"bob:{PLAIN}b");  /* no final newline */
	assert_int_equal(pt_passwd_file_error_count(f), 0);
	assert_int_equal(pt_passwd_file_count(f), 2);
	assert_string_equal(pt_passwd_file_find(f, "alice")->password, "{PLAIN}a");
	assert_int_equal(pt_passwd_file_find(f, "alice")->line, 5);
	assert_string_equal(pt_passwd_file_find(f, "bob")->password, "{PLAIN}b");
	pt_passwd_file_free(f);

	f = parse("");
	assert_int_equal(pt_passwd_file_count(f), 0);
	assert_int_equal(pt_passwd_file_error_count(f), 0);
	pt_passwd_file_free(f);
}

static void
test_bad_lines(void **state)
{
	(void)state;
	char longname[100], longline[PT_PASSWD_LINE_MAX + 100];
	memset(longname, 'n', 80);
	longname[80] = '\0';
	memset(longline, 'x', sizeof longline - 1);
	longline[sizeof longline - 1] = '\0';
	longline[0] = 'l';
	longline[1] = ':';

	char text[PT_PASSWD_LINE_MAX + 1000];
	snprintf(text, sizeof text,
	         ":{PLAIN}x\n"                         /* 1 empty user */
	         "good1:{PLAIN}g\n"                    /* 2 */
	         "u2:{PLAIN}x:12a:1\n"                 /* 3 bad uid */
	         "u3:{PLAIN}x:0:100\n"                 /* 4 root uid */
	         "u4:{PLAIN}x:100:0\n"                 /* 5 root gid */
	         "u5:{SHA1}abc\n"                      /* 6 unknown scheme */
	         "u6:{PLAIN}x:1:1::home/rel\n"         /* 7 relative home */
	         "u 7:{PLAIN}x\n"                      /* 8 space in name */
	         "%s:{PLAIN}x\n"                       /* 9 name too long */
	         "GOOD1:{PLAIN}dup\n"                  /* 10 duplicate (case) */
	         "u8:{PLAIN}x:root\n"                  /* 11 root by name */
	         "u9:{SHA512-CRYPT}$5$a$b\n"           /* 12 wrong prefix */
	         "u10:{PLAIN}x:1:2x\n"                 /* 13 bad gid */
	         "%s\n"                                /* 14 overlong line */
	         "good2:{PLAIN}h:5000:5000::/home/g2\n", /* 15 */
	         longname, longline);
	struct pt_passwd_file *f = parse(text);
	assert_int_equal(pt_passwd_file_count(f), 2);
	assert_non_null(pt_passwd_file_find(f, "good1"));
	assert_string_equal(pt_passwd_file_find(f, "good1")->password, "{PLAIN}g");  /* first wins */
	assert_non_null(pt_passwd_file_find(f, "good2"));
	static const char *const want[] = {
		"users:1: empty user name",
		"users:3: user u2: bad uid '12a'",
		"users:4: user u3: uid 0 (root) is not allowed",
		"users:5: user u4: gid 0 (root) is not allowed",
		"users:6: user u5: unknown password scheme {SHA1}",
		"users:7: user u6: home must be an absolute path",
		"users:8: user name contains white space",
		"users:9: user name longer than 63 bytes",
		"users:10: duplicate user GOOD1 (first at line 2)",
		"users:11: user u8: uid 0 (root) is not allowed",
		"users:12: user u9: {SHA512-CRYPT} hash must start with $6$",
		"users:13: user u10: bad gid '2x'",
		"users:14: line longer than 8192 bytes",
	};
	assert_int_equal(pt_passwd_file_error_count(f), (int)(sizeof want / sizeof want[0]));
	for (int i = 0; i < pt_passwd_file_error_count(f); i++) {
		const char *got = pt_passwd_file_error(f, i);
		if (strncmp(got, want[i], strlen(want[i])) != 0)
			fail_msg("error %d: got \"%s\", want \"%s...\"", i, got, want[i]);
	}
	assert_null(pt_passwd_file_error(f, 99));
	pt_passwd_file_free(f);
}

static void
test_nul_and_control(void **state)
{
	(void)state;
	static const char text[] = "a:{PLAIN}x\nb\0c:{PLAIN}y\nd:{PLAIN}p\x01q\ne:{PLAIN}z\n";
	struct pt_passwd_file *f = pt_passwd_file_parse("users", text, sizeof text - 1);
	assert_int_equal(pt_passwd_file_count(f), 2);
	assert_int_equal(pt_passwd_file_error_count(f), 2);
	assert_string_equal(pt_passwd_file_error(f, 0), "users:2: NUL byte in line");
	assert_string_equal(pt_passwd_file_error(f, 1), "users:3: user d: password contains a control character");
	assert_null(pt_passwd_file_find(f, "b"));
	assert_non_null(pt_passwd_file_find(f, "e"));
	pt_passwd_file_free(f);
}

/* Cut anywhere, the parser still returns only whole, valid entries and
 * errors that name real lines. */
static void
test_truncated_every_offset(void **state)
{
	(void)state;
	static const char text[] =
		"# comment\nalice:{PLAIN}pw:1000:1000::/home/alice::\nbob:{CRYPT}$6$s$h\n"
		"bad:{NOPE}x\ncarol:{PLAIN}c:::::/v/carol\n";
	size_t len = sizeof text - 1;
	for (size_t k = 0; k <= len; k++) {
		struct pt_passwd_file *f = pt_passwd_file_parse("users", text, k);
		assert_non_null(f);
		assert_true(pt_passwd_file_count(f) <= 3);
		for (size_t i = 0; i < pt_passwd_file_count(f); i++) {
			const struct pt_passwd_entry *e = pt_passwd_file_entry(f, i);
			assert_true(e->line >= 2 && e->line <= 5);
			assert_true(strlen(e->user) > 0);
		}
		for (int i = 0; i < pt_passwd_file_error_count(f); i++)
			assert_true(strncmp(pt_passwd_file_error(f, i), "users:", 6) == 0);
		pt_passwd_file_free(f);
	}
}

static void
write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void
test_load_and_cache(void **state)
{
	(void)state;
	char dir[] = "/tmp/pt-passwd-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof path, "%s/users", dir);

	struct pt_passwd_file *f = pt_passwd_file_load(path);
	assert_true(pt_passwd_file_unreadable(f));
	assert_int_equal(pt_passwd_file_error_count(f), 1);
	char want[300];
	snprintf(want, sizeof want, "%s: cannot read: No such file or directory", path);
	assert_string_equal(pt_passwd_file_error(f, 0), want);
	pt_passwd_file_free(f);

	struct pt_passwd_rec rec;
	assert_int_equal(pt_passwd_file_lookup(path, "alice", &rec), -1);
	write_file(path, "alice:{PLAIN}one:1000:1000::/home/alice\n");
	assert_int_equal(pt_passwd_file_lookup(path, "alice", &rec), 1);
	assert_string_equal(rec.password, "{PLAIN}one");
	assert_true(rec.has_password);
	assert_int_equal(rec.uid, 1000);
	assert_string_equal(rec.home, "/home/alice");
	assert_int_equal(pt_passwd_file_lookup(path, "bob", &rec), 0);

	/* A changed file (other size) is re-read on the next lookup. */
	write_file(path, "alice:{PLAIN}second\nbob:{PLAIN}b:::::\n");
	assert_int_equal(pt_passwd_file_lookup(path, "alice", &rec), 1);
	assert_string_equal(rec.password, "{PLAIN}second");
	assert_int_equal(rec.uid, -1);
	assert_int_equal(pt_passwd_file_lookup(path, "bob", &rec), 1);

	f = pt_passwd_file_load(path);
	assert_false(pt_passwd_file_unreadable(f));
	assert_int_equal(pt_passwd_file_count(f), 2);
	pt_passwd_file_free(f);

	unlink(path);
	assert_int_equal(pt_passwd_file_lookup(path, "alice", &rec), -1);
	/* A directory is not a passwd-file. */
	f = pt_passwd_file_load(dir);
	assert_true(pt_passwd_file_unreadable(f));
	pt_passwd_file_free(f);
	rmdir(dir);
	pt_passwd_file_cache_clear();
}

/* Dovecot's extra fields: key=value and bare flags, case-insensitive
 * keys, no prefix match (host vs hostname), values cut to the buffer. */
static void
test_extra_fields(void **state)
{
	(void)state;
	char v[16];
	const char *x = " proxy=y  HOST=10.1.0.2\tuserdb_host=10.9.9.9 nologin hostname=other port=1143";

	assert_int_equal(pt_passwd_extra_get(x, "host", v, sizeof v), 1);
	assert_string_equal(v, "10.1.0.2");
	assert_int_equal(pt_passwd_extra_get(x, "userdb_host", v, sizeof v), 1);
	assert_string_equal(v, "10.9.9.9");
	assert_int_equal(pt_passwd_extra_get(x, "nologin", v, sizeof v), 1);
	assert_string_equal(v, "");
	assert_int_equal(pt_passwd_extra_get(x, "hostn", v, sizeof v), 0);
	assert_int_equal(pt_passwd_extra_get(x, "user", v, sizeof v), 0);
	assert_int_equal(pt_passwd_extra_get("", "host", v, sizeof v), 0);
	assert_int_equal(pt_passwd_extra_get(NULL, "host", v, sizeof v), 0);
	assert_int_equal(pt_passwd_extra_get("host=0123456789abcdefghij", "host", v, sizeof v), 1);
	assert_string_equal(v, "0123456789abcde");
	assert_true(pt_passwd_extra_flag(x, "proxy"));
	assert_true(pt_passwd_extra_flag(x, "nologin"));
	assert_true(pt_passwd_extra_flag("proxy", "proxy"));
	assert_true(pt_passwd_extra_flag("proxy=YES", "proxy"));
	assert_false(pt_passwd_extra_flag("proxy=n", "proxy"));
	assert_false(pt_passwd_extra_flag("proxy_maybe=y", "proxy"));
	assert_false(pt_passwd_extra_flag("host=x", "proxy"));

	/* The eighth field keeps its spaces and colons ([v6]:port). */
	const char *text = "alice:{PLAIN}x:::::: proxy host=[fd00::2]:143\n";
	struct pt_passwd_file *f = pt_passwd_file_parse("t", text, strlen(text));
	const struct pt_passwd_entry *e = pt_passwd_file_find(f, "alice");
	assert_non_null(e);
	assert_int_equal(pt_passwd_extra_get(e->extra, "host", v, sizeof v), 1);
	assert_string_equal(v, "[fd00::2]:143");
	pt_passwd_file_free(f);

	/* A proxied user the front could not send anywhere is refused at
	 * load (served here, they would see an empty mailbox). */
	const char *bad = "a:{PLAIN}x:::::: proxy\n"
	                  "b:{PLAIN}x:::::: proxy=y host=mail_2.example.com\n"
	                  "c:{PLAIN}x:::::: proxy=y host=10.0.0.1:0\n"
	                  "d:{PLAIN}x:::::: proxy=y host=10.0.0.1 port=x\n"
	                  "e:{PLAIN}x:::::: proxy=y host=[fd00::1\n"
	                  "f:{PLAIN}x:::::: proxy=y host=10.0.0.1 port=1143\n"
	                  "g:{PLAIN}x:::::: proxy=y host=[fd00::1]:993\n"
	                  "h:{PLAIN}x:::::: proxy=n\n"
	                  "i:{PLAIN}x:::::: host=mail2.example.com\n"
	                  "j:{PLAIN}x:::::: proxy=y host=mbox1.example.org:1143\n";
	f = pt_passwd_file_parse("t", bad, strlen(bad));
	assert_int_equal(pt_passwd_file_error_count(f), 5);
	assert_non_null(strstr(pt_passwd_file_error(f, 0), "t:1: user a: proxy without host="));
	assert_non_null(strstr(pt_passwd_file_error(f, 1), "neither an IP address nor a host name"));
	assert_non_null(strstr(pt_passwd_file_error(f, 2), "bad proxy port 0"));
	assert_non_null(strstr(pt_passwd_file_error(f, 3), "bad proxy port x"));
	assert_non_null(strstr(pt_passwd_file_error(f, 4), "bad host="));
	assert_int_equal(pt_passwd_file_count(f), 5);
	assert_non_null(pt_passwd_file_find(f, "j"));
	assert_non_null(pt_passwd_file_find(f, "f"));
	assert_non_null(pt_passwd_file_find(f, "g"));
	assert_non_null(pt_passwd_file_find(f, "h"));
	assert_non_null(pt_passwd_file_find(f, "i"));
	pt_passwd_file_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_lines),
		cmocka_unit_test(test_missing_fields_virtual),
		cmocka_unit_test(test_comments_blank_crlf),
		cmocka_unit_test(test_bad_lines),
		cmocka_unit_test(test_nul_and_control),
		cmocka_unit_test(test_truncated_every_offset),
		cmocka_unit_test(test_load_and_cache),
		cmocka_unit_test(test_extra_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
