/* mail_location: syntax check and INBOX path expansion (%u %n %d %h ~ %%),
 * refusal of user names that could leave the spool, bounded length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mbox/mbox.h"

static void
expand_ok(const char *loc, const char *name, const char *home, const char *want)
{
	struct pt_user u = { 0 };
	snprintf(u.name, sizeof u.name, "%s", name);
	snprintf(u.home, sizeof u.home, "%s", home);
	char out[4096];
	struct pt_status st = { 0 };
	assert_int_equal(mbox_inbox_path(loc, &u, out, sizeof out, &st), 0);
	assert_string_equal(out, want);
}

static void
expand_fails(const char *loc, const char *name, const char *home, int code, const char *dsn)
{
	struct pt_user u = { 0 };
	snprintf(u.name, sizeof u.name, "%s", name);
	snprintf(u.home, sizeof u.home, "%s", home);
	char out[4096];
	struct pt_status st = { 0 };
	assert_int_equal(mbox_inbox_path(loc, &u, out, sizeof out, &st), -1);
	assert_int_equal(st.code, code);
	assert_string_equal(st.dsn, dsn);
	assert_true(st.text[0] != '\0');
}

static void
test_expansion(void **state)
{
	(void)state;
	const char *def = "mbox:~/mail:INBOX=/var/mail/%u";
	expand_ok(def, "carol", "/home/carol", "/var/mail/carol");
	expand_ok("mbox:~/mail", "carol", "/home/carol", "/home/carol/mail/inbox");
	expand_ok("mbox:~/mail", "carol", "/home/carol/", "/home/carol/mail/inbox");
	expand_ok("mbox:%h/mail:INBOX=%h/in", "carol", "/home/c", "/home/c/in");
	expand_ok("mbox:~/m:INBOX=~/inbox", "carol", "/home/c", "/home/c/inbox");
	expand_ok("mbox:/srv/%d/%n:INBOX=/srv/%d/%n/in%%box", "bob@example.com.ar", "/x",
	          "/srv/example.com.ar/bob/in%box");
	expand_ok("mbox:/srv/%n:INBOX=/spool/%n_%d", "bob", "/x", "/spool/bob_");
	expand_ok("mbox:/m:INDEX=/i/%u:INBOX=/var/mail/%u:LAYOUT=fs", "a.b", "/x", "/var/mail/a.b");
	/* ~ only means home at the start. */
	expand_ok("mbox:/m:INBOX=/var/mail/x~%u", "z", "/h", "/var/mail/x~z");
}

static void
test_bad_user_names(void **state)
{
	(void)state;
	const char *def = "mbox:~/mail:INBOX=/var/mail/%u";
	expand_fails(def, "../etc", "/h", 550, "5.1.3");
	expand_fails(def, "a/b", "/h", 550, "5.1.3");
	expand_fails(def, ".hidden", "/h", 550, "5.1.3");
	expand_fails(def, "..", "/h", 550, "5.1.3");
	expand_fails(def, "", "/h", 550, "5.1.3");
	expand_fails(def, "a\nb", "/h", 550, "5.1.3");
	expand_fails(def, "@x", "/h", 550, "5.1.3");
	expand_fails("mbox:/m:INBOX=/s/%d", "a@..", "/h", 550, "5.1.3");
	/* No usable home for ~ / %h. */
	expand_fails("mbox:~/mail", "carol", "", 451, "4.3.5");
	expand_fails("mbox:%h/mail", "carol", "relative", 451, "4.3.5");
}

static void
test_length_is_bounded(void **state)
{
	(void)state;
	struct pt_user u = { "carol", 1, 1, "/home/carol", "" };
	char out[20];
	struct pt_status st = { 0 };
	assert_int_equal(mbox_inbox_path("mbox:~/mail:INBOX=/var/mail/%u", &u, out, sizeof out, &st),
	                 0);
	assert_int_equal(mbox_inbox_path("mbox:~/mail", &u, out, sizeof out, &st), -1);
	assert_int_equal(st.code, 451);
	assert_string_equal(st.dsn, "4.3.5");
	assert_non_null(strstr(st.text, "too long"));
	char big[5000];
	memset(big, 'a', sizeof big);
	memcpy(big, "mbox:/", 6);
	big[sizeof big - 1] = '\0';
	char out2[4096];
	assert_int_equal(mbox_inbox_path(big, &u, out2, sizeof out2, &st), -1);
}

static void
check_err(const char *loc, const char *needle)
{
	char err[256] = "";
	assert_int_equal(mbox_location_check(loc, err, sizeof err), -1);
	if (strstr(err, needle) == NULL)
		fail_msg("error for \"%s\" is \"%s\", expected to mention \"%s\"", loc, err, needle);
}

static void
test_location_check(void **state)
{
	(void)state;
	char err[256];
	assert_int_equal(mbox_location_check("mbox:~/mail:INBOX=/var/mail/%u", err, sizeof err), 0);
	assert_int_equal(mbox_location_check("mbox:/srv/mail", err, sizeof err), 0);
	assert_int_equal(mbox_location_check("mbox:%h/mail:INBOX=%h/x:INDEX=/i", err, sizeof err), 0);
	check_err("maildir:~/Maildir", "not an mbox location");
	check_err("", "not an mbox location");
	check_err(NULL, "not an mbox location");
	check_err("mbox:", "empty");
	check_err("mbox:mail", "absolute");
	check_err("mbox:~/mail:INBOX=var/mail/%u", "absolute");
	check_err("mbox:~/mail:INBOX=", "INBOX is empty");
	check_err("mbox:~/mail:INBOX=/var/mail/%x", "unknown variable %x");
	check_err("mbox:~/mail:INBOX=/var/mail/%", "lone %");
	check_err("mbox:~/mail:FOO=1", "unknown option FOO");
	check_err("mbox:~/mail:INBOX", "KEY=VALUE");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_expansion),
		cmocka_unit_test(test_bad_user_names),
		cmocka_unit_test(test_length_is_bounded),
		cmocka_unit_test(test_location_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
