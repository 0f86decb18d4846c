/* Unit tests for the config syntax pass, module lines, $expansion,
 * `< file` values, errors, core defaults, accessors and `postern config`. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config_int.h"

static int
reject_forbidden(const char *v, char *err, size_t errlen)
{
	if (strcmp(v, "forbidden") == 0) {
		snprintf(err, errlen, "that word is not allowed");
		return -1;
	}
	return 0;
}

static const struct pt_param test_params[] = {
	{"t_str", PT_STR, "plain", reject_forbidden, "a string", 0, 0},
	{"t_bool", PT_BOOL, "no", NULL, "a flag", 0, 0},
	{"t_int", PT_INT, "7", NULL, "a number", 0, 0},
	{"t_bounded", PT_INT, "5", NULL, "a bounded number", 1, 10},
	{"t_size", PT_SIZE, "10k", NULL, "a size", 0, 0},
	{"t_time", PT_TIME, "5m", NULL, "a time", 0, 0},
	{"t_list", PT_LIST, "a, b c", NULL, "a list", 0, 0},
	{"t_cidrs", PT_CIDR_LIST, "127.0.0.0/8 [::1]/128", NULL, "networks", 0, 0},
	{"t_listen", PT_HOSTPORT_LIST, "2525", NULL, "listen", 0, 0},
	{"t_path", PT_PATH, "/tmp/x", NULL, "a path", 0, 0},
	{"t_ref", PT_STR, "", NULL, "another string", 0, 0},
	{"t_ref2", PT_STR, "", NULL, "another string", 0, 0},
	{"t_ref3", PT_STR, "", NULL, "another string", 0, 0},
	{"smtpd_helo_required", PT_BOOL, "no", NULL, "", 0, 0},
	{"smtpd_helo_restrictions", PT_LIST, "", NULL, "", 0, 0},
	{"smtpd_sender_restrictions", PT_LIST, "", NULL, "", 0, 0},
	{"smtpd_recipient_restrictions", PT_LIST, "", NULL, "", 0, 0},
	{"mailbox_size_limit", PT_SIZE, "51200000", NULL, "", 0, 0},
	{"mail_location", PT_STR, "mbox:~/mail:INBOX=/var/mail/%u", NULL, "", 0, 0},
	{"alias_maps", PT_LIST, "hash:/etc/aliases", NULL, "", 0, 0},
	{"transport_maps", PT_LIST, "", NULL, "", 0, 0},
	{NULL, 0, NULL, NULL, NULL, 0, 0},
};

static char tmpdir[64];

static struct pt_config *
load(const char *text)
{
	struct pt_config *c = pt_config_parse("t.cf", text, strlen(text));

	assert_non_null(c);
	assert_int_equal(pt_config_declare_core(c), 0);
	assert_int_equal(pt_config_declare(c, "test", test_params), 0);
	pt_config_finish(c);
	return c;
}

static void
print_errors(const struct pt_config *c)
{
	for (int i = 0; i < pt_config_error_count(c); i++)
		fprintf(stderr, "  error %d: %s\n", i, pt_config_error(c, i));
}

/* The config's errors are exactly these, in this order. */
static void
expect_errors(const struct pt_config *c, ...)
{
	va_list ap;
	int i = 0;
	const char *want;

	va_start(ap, c);
	while ((want = va_arg(ap, const char *)) != NULL) {
		if (i >= pt_config_error_count(c) || strcmp(pt_config_error(c, i), want) != 0) {
			print_errors(c);
			fprintf(stderr, "  wanted %d: %s\n", i, want);
			fail();
		}
		i++;
	}
	va_end(ap);
	if (i != pt_config_error_count(c)) {
		print_errors(c);
		fail_msg("expected %d errors, got %d", i, pt_config_error_count(c));
	}
}

static void
expect_clean(const struct pt_config *c)
{
	expect_errors(c, NULL);
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *
tmp_path(const char *name)
{
	static char buf[4][256];
	static int k;
	char *p = buf[k++ % 4];

	snprintf(p, 256, "%s/%s", tmpdir, name);
	return p;
}

static char *
dump(const struct pt_config *c, int only_set, char **names, int n, int *rc)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	int r;

	assert_non_null(f);
	r = pt_config_dump(c, f, only_set, names, n);
	fclose(f);
	if (rc)
		*rc = r;
	return out;
}

/* ---- syntax ---- */

static void
test_basic_syntax(void **state)
{
	(void)state;
	struct pt_config *c = load(
		"# a comment\n"
		"\n"
		"   \t\n"
		"t_str   =   hello world  \n"
		"  # an indented comment\n"
		"t_ref = a # not a comment\n"
		"t_ref2=\n"
		"t_ref3 = x=y\r\n");

	expect_clean(c);
	assert_string_equal(pt_conf_str(c, "t_str"), "hello world");
	assert_int_equal(pt_conf_line(c, "t_str"), 4);
	assert_string_equal(pt_conf_str(c, "t_ref"), "a # not a comment");
	assert_string_equal(pt_conf_str(c, "t_ref2"), "");
	assert_int_equal(pt_conf_isset(c, "t_ref2"), 1);
	assert_string_equal(pt_conf_str(c, "t_ref3"), "x=y");
	assert_int_equal(pt_conf_isset(c, "t_bool"), 0);
	assert_int_equal(pt_conf_line(c, "t_bool"), 0);
	assert_string_equal(pt_conf_file(c), "t.cf");
	pt_config_free(c);
}

static void
test_continuation(void **state)
{
	(void)state;
	struct pt_config *c = load(
		"t_list = one,\n"
		"    two\n"
		"# comment between\n"
		"\n"
		"\tthree   \n"
		"t_str = x\n");

	expect_clean(c);
	assert_string_equal(pt_conf_str(c, "t_list"), "one, two three");
	assert_int_equal(pt_conf_line(c, "t_list"), 1);
	assert_int_equal(pt_conf_list(c, "t_list")->n, 3);
	assert_string_equal(pt_conf_list(c, "t_list")->v[2], "three");
	assert_int_equal(pt_conf_line(c, "t_str"), 6);
	pt_config_free(c);
}

static void
test_continuation_first(void **state)
{
	(void)state;
	struct pt_config *c = load("# header\n  t_str = x\n   more\nt_int = 3\n");

	expect_errors(c, "t.cf:2: continuation line (starts with white space) before any parameter", NULL);
	assert_int_equal(pt_conf_int(c, "t_int"), 3);
	pt_config_free(c);
}

static void
test_missing_equals(void **state)
{
	(void)state;
	struct pt_config *c = load("t_str = ok\nmynetworks 10.0.0.0/8\n= value\nbad name = 1\nt-int = 2\n");

	expect_errors(c,
		"t.cf:2: missing '=' after parameter name \"mynetworks 10.0.0.0/8\"",
		"t.cf:3: missing parameter name before '='",
		"t.cf:4: bad parameter name \"bad name\" (use letters, digits and _)",
		"t.cf:5: bad parameter name \"t-int\" (use letters, digits and _)",
		NULL);
	assert_string_equal(pt_conf_str(c, "t_str"), "ok");
	assert_int_equal(pt_conf_isset(c, "mynetworks"), 0);
	pt_config_free(c);
}

static void
test_duplicate_setting(void **state)
{
	(void)state;
	struct pt_config *c = load("t_int = 1\nt_str = a\nt_int = 2\n");

	expect_clean(c);
	assert_int_equal(pt_conf_int(c, "t_int"), 2);
	assert_int_equal(pt_conf_line(c, "t_int"), 3);
	pt_config_free(c);
}

static void
test_module_lines(void **state)
{
	(void)state;
	struct pt_config *c = load("module mbox\nt_str = x\nmodule\tsmtp  /opt/smtp.so\nmodule_directory = /m\n");

	expect_clean(c);
	assert_int_equal(pt_config_module_count(c), 2);
	assert_string_equal(pt_config_module_name(c, 0), "mbox");
	assert_null(pt_config_module_path(c, 0));
	assert_int_equal(pt_config_module_line(c, 0), 1);
	assert_string_equal(pt_config_module_name(c, 1), "smtp");
	assert_string_equal(pt_config_module_path(c, 1), "/opt/smtp.so");
	assert_int_equal(pt_config_module_line(c, 1), 3);
	assert_null(pt_config_module_name(c, 2));
	assert_string_equal(pt_conf_str(c, "module_directory"), "/m");
	pt_config_free(c);
}

static void
test_module_errors(void **state)
{
	(void)state;
	struct pt_config *c = load(
		"module smtp\n"
		"module Smtp\n"
		"module\n"
		"module a b c\n"
		"module smtp /x.so\n"
		"module = x\n"
		"module im-ap\n");

	expect_errors(c,
		"t.cf:2: bad module name \"Smtp\" (use a-z, 0-9 and _)",
		"t.cf:3: missing module name (expected: module NAME [PATH])",
		"t.cf:4: too many words in module line (expected: module NAME [PATH])",
		"t.cf:5: module \"smtp\" is loaded twice (lines 1 and 5)",
		"t.cf:6: unknown parameter \"module\" (did you mean \"module_directory\"?)",
		"t.cf:7: bad module name \"im-ap\" (use a-z, 0-9 and _)",
		NULL);
	assert_int_equal(pt_config_module_count(c), 1);
	pt_config_free(c);
}

static void
test_unknown_did_you_mean(void **state)
{
	(void)state;
	struct pt_config *c = load(
		"mynetwork = 10.0.0.0/8\n"
		"zzzzzzzzzzzz = 1\n"
		"message_size = 1\n"
		"myhostnmae = x\n"
		"myhostname_extra = y\n");

	expect_errors(c,
		"t.cf:1: unknown parameter \"mynetwork\" (did you mean \"mynetworks\"?)",
		"t.cf:2: unknown parameter \"zzzzzzzzzzzz\"",
		"t.cf:3: unknown parameter \"message_size\" (did you mean \"message_size_limit\"?)",
		"t.cf:4: unknown parameter \"myhostnmae\" (did you mean \"myhostname\"?)",
		"t.cf:5: unknown parameter \"myhostname_extra\" (did you mean \"myhostname\"?)",
		NULL);
	pt_config_free(c);
}

static void
test_all_errors_collected(void **state)
{
	(void)state;
	struct pt_config *c = load(
		"t_int = x\n"
		"bogus\n"
		"t_bool = maybe\n"
		"nosuch = 1\n"
		"t_str = $nope\n");

	expect_errors(c,
		"t.cf:1: invalid value for t_int: \"x\" is not a whole number",
		"t.cf:2: missing '=' after parameter name \"bogus\"",
		"t.cf:3: invalid value for t_bool: \"maybe\" is not a boolean (use yes or no)",
		"t.cf:4: unknown parameter \"nosuch\"",
		"t.cf:5: unknown parameter \"nope\" in $expansion",
		NULL);
	pt_config_free(c);
}

/* ---- expansion ---- */

static void
test_expansion(void **state)
{
	(void)state;
	struct pt_config *c = load(
		"myhostname = mail.example.com.ar\n"
		"t_str = [$myhostname] ${mydomain}x $$HOME $$$mydomain\n"
		"t_ref = $t_ref2/end\n"
		"t_ref2 = ${t_ref3}-mid\n"
		"t_ref3 = start\n"
		"relay_domains = $mydestination\n");

	expect_clean(c);
	assert_string_equal(pt_conf_str(c, "t_str"), "[mail.example.com.ar] example.com.arx $HOME $example.com.ar");
	assert_string_equal(pt_conf_str(c, "t_ref"), "start-mid/end");
	assert_string_equal(pt_conf_str(c, "mydomain"), "example.com.ar");
	assert_string_equal(pt_conf_str(c, "myorigin"), "mail.example.com.ar");
	assert_string_equal(pt_conf_str(c, "relay_domains"),
		"mail.example.com.ar, localhost.example.com.ar, localhost");
	assert_int_equal(pt_conf_list(c, "relay_domains")->n, 3);
	assert_string_equal(pt_conf_str(c, "pid_file"), "/var/spool/postern/pid/master.pid");
	pt_config_free(c);
}

static void
test_expansion_conditional(void **state)
{
	(void)state;
	struct pt_config *c = load(
		"t_ref3 = set\n"
		"t_str = [${t_ref3?yes $t_ref3}][${t_ref3:no}][${t_ref2?yes}][${t_ref2:no ${t_ref3}}]\n");

	expect_clean(c);
	assert_string_equal(pt_conf_str(c, "t_str"), "[yes set][][][no set]");
	pt_config_free(c);
}

static void
test_expansion_loop(void **state)
{
	(void)state;
	struct pt_config *c = load("t_ref = x $t_ref2\nt_ref2 = $t_ref3\nt_ref3 = ${t_ref}\nt_str = $t_ref\n");

	expect_errors(c, "t.cf:1: parameter expansion loop: t_ref -> t_ref2 -> t_ref3 -> t_ref", NULL);
	assert_string_equal(pt_conf_str(c, "t_ref"), "");
	assert_string_equal(pt_conf_str(c, "t_str"), "");
	pt_config_free(c);

	c = load("t_ref = $t_ref\n");
	expect_errors(c, "t.cf:1: parameter expansion loop: t_ref -> t_ref", NULL);
	pt_config_free(c);

	/* A loop through a default is reported at the line that closes it. */
	c = load("queue_directory = $pid_file\n");
	expect_errors(c, "t.cf:1: parameter expansion loop: queue_directory -> pid_file -> queue_directory", NULL);
	pt_config_free(c);
}

static void
test_expansion_errors(void **state)
{
	(void)state;
	struct pt_config *c = load(
		"t_str = $mynetwork\n"
		"t_ref = ${undeclared_thing}\n"
		"t_ref2 = cost $ 5\n"
		"t_ref3 = ${t_str\n"
		"t_list = ${}\n"
		"t_path = ${t_str!x}\n"
		"t_int = $\n");

	expect_errors(c,
		"t.cf:1: unknown parameter \"mynetwork\" in $expansion (did you mean \"mynetworks\"?)",
		"t.cf:2: unknown parameter \"undeclared_thing\" in $expansion",
		"t.cf:3: '$' not followed by a parameter name in the value of t_ref2 (write $$ for a literal $)",
		"t.cf:4: missing '}' after '${' in the value of t_ref3",
		"t.cf:5: bad ${...} in the value of t_list (expected ${name}, ${name?text} or ${name:text})",
		"t.cf:6: bad ${...} in the value of t_path (expected ${name}, ${name?text} or ${name:text})",
		"t.cf:7: '$' not followed by a parameter name in the value of t_int (write $$ for a literal $)",
		NULL);
	pt_config_free(c);
}

static void
test_expansion_limits(void **state)
{
	(void)state;
	/* 120 parameters chained p0 = $p1 ... : deeper than 100. */
	static struct pt_param chain[122];
	static char names[121][8], defs[121][8];
	struct pt_config *c;
	char *text;
	size_t len = 0;

	for (int i = 0; i < 120; i++) {
		snprintf(names[i], sizeof names[i], "p%d", i);
		snprintf(defs[i], sizeof defs[i], "$p%d", i + 1);
		chain[i] = (struct pt_param){names[i], PT_STR, i == 119 ? "end" : defs[i], NULL, "", 0, 0};
	}
	chain[120] = (struct pt_param){0};
	c = pt_config_parse("t.cf", "p0 = $p1\n", 9);
	pt_config_declare_core(c);
	pt_config_declare(c, "chain", chain);
	assert_int_not_equal(pt_config_finish(c), 0);
	assert_non_null(strstr(pt_config_error(c, 0), "nests deeper than 100 levels"));
	assert_int_equal(strncmp(pt_config_error(c, 0), "t.cf:", 5), 0);
	pt_config_free(c);

	/* Five levels of 16 references to a 17-byte value: 17 x 16^4 bytes,
	 * over 1 MiB only at the last level. */
	text = malloc(4096);
	len += (size_t)sprintf(text, "t_ref3 = 0123456789abcdefg\n");
	len += (size_t)sprintf(text + len, "t_ref2 = %s\n",
		"$t_ref3$t_ref3$t_ref3$t_ref3$t_ref3$t_ref3$t_ref3$t_ref3"
		"$t_ref3$t_ref3$t_ref3$t_ref3$t_ref3$t_ref3$t_ref3$t_ref3");
	len += (size_t)sprintf(text + len, "t_ref = %s\n",
		"$t_ref2$t_ref2$t_ref2$t_ref2$t_ref2$t_ref2$t_ref2$t_ref2"
		"$t_ref2$t_ref2$t_ref2$t_ref2$t_ref2$t_ref2$t_ref2$t_ref2");
	len += (size_t)sprintf(text + len, "t_str = %s\n",
		"$t_ref$t_ref$t_ref$t_ref$t_ref$t_ref$t_ref$t_ref$t_ref$t_ref$t_ref$t_ref$t_ref$t_ref$t_ref$t_ref");
	len += (size_t)sprintf(text + len, "t_list = %s\n",
		"$t_str$t_str$t_str$t_str$t_str$t_str$t_str$t_str$t_str$t_str$t_str$t_str$t_str$t_str$t_str$t_str");
	c = load(text);
	expect_errors(c, "t.cf:5: the value of t_list is longer than 1 MiB after expansion", NULL);
	assert_string_equal(pt_conf_str(c, "t_list"), "");
	assert_int_equal(strlen(pt_conf_str(c, "t_str")), 17 * 16 * 16 * 16);
	pt_config_free(c);
	free(text);
}

/* ---- `< file` ---- */

static void
test_include_file(void **state)
{
	(void)state;
	char text[1024];
	struct pt_config *c;
	char *out;
	char *names[] = {"ssl_cert", "ssl_key"};

	write_file(tmp_path("cert.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
	snprintf(text, sizeof text, "ssl_cert = <%s\nssl_key = <  %s\n", tmp_path("cert.pem"), tmp_path("cert.pem"));
	c = load(text);
	expect_clean(c);
	assert_string_equal(pt_conf_str(c, "ssl_cert"),
		"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
	assert_string_equal(pt_conf_str(c, "ssl_key"), pt_conf_str(c, "ssl_cert"));
	out = dump(c, 0, names, 2, NULL);
	snprintf(text, sizeof text, "ssl_cert = <%s\nssl_key = <  %s\n", tmp_path("cert.pem"), tmp_path("cert.pem"));
	assert_string_equal(out, text);
	free(out);
	pt_config_free(c);
}

static void
test_include_file_errors(void **state)
{
	(void)state;
	char text[1024], want[2][512];
	struct pt_config *c;
	FILE *f;

	f = fopen(tmp_path("big.pem"), "w");
	assert_non_null(f);
	for (int i = 0; i < 1024 * 1024 / 64 + 1; i++)
		fprintf(f, "%063d\n", i);
	fclose(f);
	snprintf(text, sizeof text, "ssl_cert = < /nonexistent/dovecot.pem\nssl_key = <%s\nt_str = <\nt_ref = < %s\n",
		tmp_path("big.pem"), tmpdir);
	c = load(text);
	snprintf(want[0], sizeof want[0], "t.cf:2: cannot read %s: file too large (over 1 MiB)", tmp_path("big.pem"));
	snprintf(want[1], sizeof want[1], "t.cf:4: cannot read %s: is a directory", tmpdir);
	expect_errors(c,
		"t.cf:1: cannot read /nonexistent/dovecot.pem: No such file or directory",
		want[0],
		"t.cf:3: missing file name after '<' in the value of t_str",
		want[1],
		NULL);
	assert_string_equal(pt_conf_str(c, "ssl_cert"), "");
	pt_config_free(c);

	c = load("ssl_cert = < /dev/null\n");
	expect_errors(c, "t.cf:1: cannot read /dev/null: not a regular file", NULL);
	pt_config_free(c);
}

/* ---- limits and files ---- */

static void
test_limits(void **state)
{
	(void)state;
	size_t n = 70 * 1024;
	char *text = malloc(n + 64);
	struct pt_config *c;

	/* One physical line over 64 KiB. */
	memcpy(text, "t_str = ", 8);
	memset(text + 8, 'a', n);
	strcpy(text + 8 + n, "\nt_int = 4\n");
	c = load(text);
	expect_errors(c, "t.cf:1: line too long (over 65536 bytes)", NULL);
	assert_int_equal(pt_conf_int(c, "t_int"), 4);
	assert_string_equal(pt_conf_str(c, "t_str"), "plain");
	pt_config_free(c);

	/* A logical line over 64 KiB made of short continuation lines. */
	{
		size_t len = 0;
		char *t2 = malloc(200 * 1024);

		len += (size_t)sprintf(t2, "t_str = x\n");
		for (int i = 0; i < 2000; i++)
			len += (size_t)sprintf(t2 + len, " %050d\n", i);
		sprintf(t2 + len, "t_int = 5\n");
		c = load(t2);
		expect_errors(c, "t.cf:1: line too long (over 65536 bytes)", NULL);
		assert_int_equal(pt_conf_int(c, "t_int"), 5);
		pt_config_free(c);
		free(t2);
	}
	free(text);

	c = pt_config_parse("big.cf", "x", (size_t)16 * 1024 * 1024 + 1);
	expect_errors(c, "big.cf: file too large (over 16 MiB)", NULL);
	pt_config_free(c);

	c = pt_config_parse("t.cf", "t_str = a\0b\nt_int = 1\n", 22);
	pt_config_declare_core(c);
	pt_config_declare(c, "test", test_params);
	pt_config_finish(c);
	expect_errors(c, "t.cf:1: NUL byte in line", NULL);
	assert_int_equal(pt_conf_int(c, "t_int"), 1);
	pt_config_free(c);
}

static void
test_parse_from_file(void **state)
{
	(void)state;
	struct pt_config *c;

	write_file(tmp_path("main.cf"), "module mbox\nt_int = 9\n");
	c = pt_config_parse(tmp_path("main.cf"), NULL, 0);
	pt_config_declare_core(c);
	pt_config_declare(c, "test", test_params);
	assert_int_equal(pt_config_finish(c), 0);
	assert_int_equal(pt_conf_int(c, "t_int"), 9);
	assert_string_equal(pt_conf_file(c), tmp_path("main.cf"));
	assert_string_equal(pt_config_module_name(c, 0), "mbox");
	pt_config_free(c);

	c = pt_config_parse("/nonexistent/postern.conf", NULL, 0);
	expect_errors(c, "/nonexistent/postern.conf: cannot open: No such file or directory", NULL);
	pt_config_free(c);
}

/* ---- declarations ---- */

static void
test_declare_errors(void **state)
{
	(void)state;
	static const struct pt_param dup[] = {
		{"myhostname", PT_STR, "", NULL, "", 0, 0},
		{"bad name", PT_STR, "", NULL, "", 0, 0},
		{"t_badtype", (enum pt_type)99, "", NULL, "", 0, 0},
		{NULL, 0, NULL, NULL, NULL, 0, 0},
	};
	static const struct pt_param bad_defaults[] = {
		{"t_baddef", PT_INT, "lots", NULL, "", 0, 0},
		{"t_badref", PT_STR, "$nothing_here", NULL, "", 0, 0},
		{"t_badval", PT_STR, "forbidden", reject_forbidden, "", 0, 0},
		{NULL, 0, NULL, NULL, NULL, 0, 0},
	};
	struct pt_config *c = pt_config_parse("t.cf", "", 0);

	pt_config_declare_core(c);
	assert_int_equal(pt_config_declare(c, "smtp", dup), -1);
	assert_int_equal(pt_config_declare(c, "mod", bad_defaults), 0);
	assert_string_equal(pt_config_owner(c, "myhostname"), "core");
	assert_string_equal(pt_config_owner(c, "t_baddef"), "mod");
	assert_null(pt_config_owner(c, "t_badtype"));
	assert_null(pt_config_owner(c, "nothing"));
	assert_int_equal(pt_config_finish(c), 6);
	expect_errors(c,
		"t.cf:0: parameter \"myhostname\" is declared by both core and smtp",
		"t.cf:0: bad declaration of parameter \"bad name\" by smtp",
		"t.cf:0: bad declaration of parameter \"t_badtype\" by smtp",
		"t.cf:0: unknown parameter \"nothing_here\" in $expansion (in the default of t_badref, declared by mod)",
		"t.cf:0: invalid default for t_baddef (declared by mod): \"lots\" is not a whole number",
		"t.cf:0: invalid default for t_badval (declared by mod): that word is not allowed",
		NULL);
	pt_config_free(c);
}

/* ---- core parameters ---- */

static void
test_core_defaults(void **state)
{
	(void)state;
	struct pt_config *c = load("");
	const char *host;

	expect_clean(c);
	host = pt_conf_str(c, "myhostname");
	assert_non_null(strchr(host, '.'));
	assert_string_equal(pt_conf_str(c, "mydomain"), strchr(host, '.') + 1);
	assert_string_equal(pt_conf_str(c, "myorigin"), host);
	assert_int_equal(pt_conf_list(c, "mydestination")->n, 3);
	assert_string_equal(pt_conf_list(c, "mydestination")->v[0], host);
	assert_string_equal(pt_conf_list(c, "mydestination")->v[2], "localhost");
	assert_string_equal(pt_conf_str(c, "queue_directory"), "/var/spool/postern");
	assert_string_equal(pt_conf_str(c, "maillog_file"), "");
	assert_string_equal(pt_conf_str(c, "mynetworks_style"), "host");
	assert_int_equal(pt_conf_int(c, "message_size_limit"), 10240000);
	assert_int_equal(pt_conf_int(c, "maximal_queue_lifetime"), 5 * 86400);
	assert_int_equal(pt_conf_int(c, "minimal_backoff_time"), 300);
	assert_int_equal(pt_conf_int(c, "maximal_backoff_time"), 4000);
	assert_int_equal(pt_conf_int(c, "delay_warning_time"), 0);
	assert_int_equal(pt_conf_int(c, "service_connection_limit"), 1000);
	assert_int_equal(pt_conf_int(c, "client_connection_limit"), 50);
	assert_int_equal(pt_conf_int(c, "worker_threads"), 4);
	assert_int_equal(pt_conf_bool(c, "smtputf8_enable"), 1);
	assert_int_equal(pt_conf_bool(c, "soft_bounce"), 0);
	assert_string_equal(pt_conf_str(c, "userdb"), "passwd");
	assert_string_equal(pt_conf_str(c, "passdb"), "pam");
	assert_string_equal(pt_conf_str(c, "mail_name"), "Postern");
	assert_string_equal(pt_conf_str(c, "ssl_min_protocol"), "TLSv1.2");
	assert_string_equal(pt_conf_str(c, "inet_interfaces"), "all");
	assert_int_equal(pt_conf_list(c, "notify_classes")->n, 2);
	assert_true(strlen(pt_conf_str(c, "module_directory")) > 0);
	pt_config_free(c);

	c = load("myhostname = gateway\n");
	assert_string_equal(pt_conf_str(c, "mydomain"), "localdomain");
	pt_config_free(c);
}

static void
test_myorigin_file(void **state)
{
	(void)state;
	char text[512], want[512];
	struct pt_config *c;
	char *out, *names[] = {"myorigin"};

	write_file(tmp_path("mailname"), "  example.com.ar  \nignored\n");
	snprintf(text, sizeof text, "myorigin = %s\nt_str = user@$myorigin\n", tmp_path("mailname"));
	c = load(text);
	expect_clean(c);
	assert_string_equal(pt_conf_str(c, "myorigin"), "example.com.ar");
	assert_string_equal(pt_conf_str(c, "t_str"), "user@example.com.ar");
	out = dump(c, 0, names, 1, NULL);
	snprintf(want, sizeof want, "myorigin = %s\n", tmp_path("mailname"));
	assert_string_equal(out, want);
	free(out);
	pt_config_free(c);

	write_file(tmp_path("empty"), "\n");
	snprintf(text, sizeof text, "myorigin = %s\n\nmyorigin = /nonexistent/mailname\n", tmp_path("empty"));
	c = load(text);
	expect_errors(c, "t.cf:3: cannot read /nonexistent/mailname: No such file or directory", NULL);
	pt_config_free(c);
	snprintf(text, sizeof text, "myorigin = %s\n", tmp_path("empty"));
	c = load(text);
	snprintf(want, sizeof want, "t.cf:1: %s is empty (myorigin needs a domain on its first line)", tmp_path("empty"));
	expect_errors(c, want, NULL);
	pt_config_free(c);
}

static void
test_core_validators(void **state)
{
	(void)state;
	struct pt_config *c = load(
		"mynetworks = subnet\n"
		"inet_interfaces = 127.0.0.1, [::1]\n"
		"inet_protocols = ipv4\n"
		"passdb = passwd-file:/etc/postern/users\n"
		"userdb = passwd-file:/etc/postern/users\n"
		"ssl_min_protocol = TLSv1.3\n");

	expect_clean(c);
	assert_string_equal(pt_conf_str(c, "mynetworks"), "subnet");
	assert_int_equal(pt_conf_list(c, "inet_interfaces")->n, 2);
	pt_config_free(c);

	c = load("mynetworks = 127.0.0.0/8, [::1]/128 10.0.0.0/8\ninet_interfaces = loopback-only\n");
	expect_clean(c);
	assert_int_equal(pt_conf_list(c, "mynetworks")->n, 3);
	pt_config_free(c);

	c = load(
		"mynetworks = 10.0.0.0/33\n"
		"mynetworks_style = nets\n"
		"inet_interfaces = localhost\n"
		"inet_protocols = ipv5\n"
		"passdb = ldap\n"
		"userdb = passwd-file:\n"
		"ssl_min_protocol = SSLv3\n"
		"worker_threads = 0\n"
		"queue_directory =\n"
		"notify_classes = resource, spam\n"
		"mynetworks_style = host\n");
	expect_errors(c,
		"t.cf:1: invalid value for mynetworks: bad address or network \"10.0.0.0/33\"",
		"t.cf:3: invalid value for inet_interfaces: \"localhost\" is not all, loopback-only or an IP address",
		"t.cf:4: invalid value for inet_protocols: \"ipv5\" is not all, ipv4 or ipv6",
		"t.cf:5: invalid value for passdb: \"ldap\" is not pam, passwd-file:PATH or a module's TYPE:FILE (ldap:FILE)",
		"t.cf:6: invalid value for userdb: \"passwd-file:\" is not passwd, passwd-file:PATH or a module's TYPE:FILE (ldap:FILE)",
		"t.cf:7: invalid value for ssl_min_protocol: \"SSLv3\" is not TLSv1.2 or TLSv1.3",
		"t.cf:8: invalid value for worker_threads: 0 is below the minimum 1",
		"t.cf:9: invalid value for queue_directory: empty path",
		"t.cf:10: invalid value for notify_classes: \"spam\" is not a notify class (bounce, 2bounce, data, delay, policy, protocol, resource, software)",
		NULL);
	pt_config_free(c);

	c = load("inet_interfaces = all 127.0.0.1\n");
	expect_errors(c, "t.cf:1: invalid value for inet_interfaces: \"all\" must be the only item", NULL);
	pt_config_free(c);
}

/* The seed's main.cf and dovecot settings, in one Postern file. */
static void
test_seed_sample(void **state)
{
	(void)state;
	char text[4096], want[512];
	struct pt_config *c;

	write_file(tmp_path("mailname"), "example.com.ar\n");
	write_file(tmp_path("dovecot.pem"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
	write_file(tmp_path("key.pem"), "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
	snprintf(text, sizeof text,
		"# Postern: the LFCE tutorial's Postfix + Dovecot setup\n"
		"module mbox\n"
		"module alias\n"
		"module transport\n"
		"module restrict\n"
		"module smtp\n"
		"\n"
		"myhostname = mail.example.com.ar\n"
		"myorigin = %s\n"
		"mydestination = $myhostname, localhost.$mydomain, localhost, example.com.ar\n"
		"transport_maps = hash:/etc/postfix/transport\n"
		"alias_maps = hash:/etc/aliases\n"
		"mynetworks = subnet\n"
		"relay_domains = $mydestination\n"
		"inet_interfaces = all\n"
		"mailbox_size_limit = 51200000\n"
		"message_size_limit = 5120000\n"
		"\n"
		"# Restrictions\n"
		"smtpd_helo_required = yes\n"
		"smtpd_helo_restrictions = permit_mynetworks, reject_invalid_helo_hostname\n"
		"smtpd_sender_restrictions = permit_mynetworks, reject_unknown_sender_domain\n"
		"smtpd_recipient_restrictions = permit_mynetworks,\n"
		"    reject_unauth_destination\n"
		"\n"
		"# Dovecot\n"
		"mail_location = mbox:~/mail:INBOX=/var/mail/%%u\n"
		"mail_privileged_group = mail\n"
		"ssl_cert = <%s\n"
		"ssl_key = <%s\n",
		tmp_path("mailname"), tmp_path("dovecot.pem"), tmp_path("key.pem"));
	c = load(text);
	expect_clean(c);
	assert_int_equal(pt_config_module_count(c), 5);
	assert_string_equal(pt_conf_str(c, "myorigin"), "example.com.ar");
	assert_int_equal(pt_conf_list(c, "relay_domains")->n, 4);
	assert_string_equal(pt_conf_list(c, "relay_domains")->v[1], "localhost.example.com.ar");
	assert_int_equal(pt_conf_int(c, "message_size_limit"), 5120000);
	assert_int_equal(pt_conf_int(c, "mailbox_size_limit"), 51200000);
	assert_int_equal(pt_conf_bool(c, "smtpd_helo_required"), 1);
	assert_int_equal(pt_conf_list(c, "smtpd_recipient_restrictions")->n, 2);
	assert_int_equal(pt_conf_line(c, "smtpd_recipient_restrictions"), 23);
	assert_string_equal(pt_conf_str(c, "mail_location"), "mbox:~/mail:INBOX=/var/mail/%u");
	assert_non_null(strstr(pt_conf_str(c, "ssl_key"), "PRIVATE KEY"));
	{
		char *out = dump(c, 1, NULL, 0, NULL);

		snprintf(want, sizeof want, "ssl_cert = <%s\n", tmp_path("dovecot.pem"));
		assert_non_null(strstr(out, want));
		assert_non_null(strstr(out, "relay_domains = mail.example.com.ar, localhost.example.com.ar, localhost, example.com.ar\n"));
		assert_null(strstr(out, "BEGIN"));
		free(out);
	}
	pt_config_free(c);
}

/* ---- dump ---- */

static void
test_dump(void **state)
{
	(void)state;
	struct pt_config *c = load("t_size = 1m\nt_str = $t_ref3 x\nt_ref3 = y\nt_ref2 =\n");
	char *out, *names[] = {"t_str", "nosuch", "t_int"};
	int rc;

	expect_clean(c);
	out = dump(c, 1, NULL, 0, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "t_ref2 =\nt_ref3 = y\nt_size = 1m\nt_str = y x\n");
	free(out);

	out = dump(c, 0, names, 3, &rc);
	assert_int_equal(rc, 1);
	assert_string_equal(out, "t_str = y x\nt_int = 7\n");
	free(out);

	out = dump(c, 0, NULL, 0, &rc);
	assert_int_equal(rc, 0);
	/* Every declared parameter, sorted. */
	{
		int lines = 0;
		const char *prev = NULL;

		for (char *p = out; *p; p = strchr(p, '\n') + 1) {
			if (prev != NULL)
				assert_true(strncmp(prev, p, strcspn(p, " ")) < 0);
			prev = p;
			lines++;
		}
		assert_int_equal(lines, 61 + 21); /* core parameters + the test table */
	}
	assert_non_null(strstr(out, "\nt_bool = no\n"));
	assert_non_null(strstr(out, "\nrelay_domains =\n"));
	assert_non_null(strstr(out, "\npid_file = /var/spool/postern/pid/master.pid\n"));
	free(out);
	pt_config_free(c);
}

/* ---- per-listener settings ---- */

static struct pt_config *
load_listeners(const char *text)
{
	struct pt_config *c = pt_config_parse("t.cf", text, strlen(text));

	assert_non_null(c);
	assert_int_equal(pt_config_declare_core(c), 0);
	assert_int_equal(pt_config_declare(c, "test", test_params), 0);
	pt_config_declare_listener(c, "smtpd");
	pt_config_declare_listener(c, "submission");
	pt_config_declare_listener_param(c, "smtpd_helo_required");
	pt_config_declare_listener_param(c, "smtpd_recipient_restrictions");
	pt_config_declare_listener_param(c, "t_bounded");
	pt_config_declare_listener_param(c, "t_ref");
	pt_config_declare_listener_default(c, "submission", "smtpd_helo_required", "yes");
	/* A module that is not loaded: its built-in value is left out. */
	pt_config_declare_listener_default(c, "submission", "t_absent", "x");
	pt_config_finish(c);
	pt_config_finish_listeners(c);
	return c;
}

static void
test_listener_views(void **state)
{
	(void)state;
	struct pt_config *c = load_listeners("t_ref = base\nt_str = $t_ref!\nsubmission.t_ref = sub\n"
	                                     "submission.t_bounded = 3\nsmtpd_recipient_restrictions = a\n");
	const struct pt_config *v;

	expect_clean(c);
	v = pt_conf_listener(c, "submission");
	assert_ptr_not_equal(v, c);
	assert_ptr_equal(pt_conf_listener(c, "smtpd"), c);   /* nothing of its own */
	assert_ptr_equal(pt_conf_listener(c, "nosuch"), c);
	assert_ptr_equal(pt_conf_listener(v, "submission"), v);
	assert_string_equal(pt_conf_listener_name(c, 0), "submission");
	assert_null(pt_conf_listener_name(c, 1));
	assert_true(pt_config_listener_known(c, "smtpd"));
	assert_false(pt_config_listener_known(c, "imap"));
	/* The listener's values, the file's for the rest; $name expands to
	 * the listener's value, as a Postfix service with -o sees it. */
	assert_string_equal(pt_conf_str(v, "t_ref"), "sub");
	assert_string_equal(pt_conf_str(v, "t_str"), "sub!");
	assert_string_equal(pt_conf_str(c, "t_str"), "base!");
	assert_int_equal(pt_conf_int(v, "t_bounded"), 3);
	assert_int_equal(pt_conf_int(c, "t_bounded"), 5);
	assert_true(pt_conf_bool(v, "smtpd_helo_required"));
	assert_false(pt_conf_bool(c, "smtpd_helo_required"));
	assert_string_equal(pt_conf_list(v, "smtpd_recipient_restrictions")->v[0], "a");
	assert_int_equal(pt_conf_line(v, "t_ref"), 3);
	assert_string_equal(pt_conf_file(v), "t.cf");

	/* A view's errors go to the file's config, at the override's line,
	 * once. */
	pt_conf_error(v, "t_ref", "bad %d", 1);
	pt_conf_error(v, "t_ref", "bad %d", 1);
	expect_errors(c, "t.cf:3: bad 1", NULL);

	/* postern config: the listener's values after the file's, in the
	 * file's syntax; -n: only its lines; one LISTENER.PARAM by name. */
	{
		int rc;
		char *out = dump(c, 1, NULL, 0, &rc);
		char *names[] = {"submission.smtpd_helo_required", "smtpd.t_ref", "imap.t_ref", "submission.nosuch"};

		assert_int_equal(rc, 0);
		assert_non_null(strstr(out, "t_str = base!\nsubmission.t_bounded = 3\nsubmission.t_ref = sub\n"));
		assert_null(strstr(out, "submission.smtpd_helo_required"));
		free(out);
		out = dump(c, 0, NULL, 0, &rc);
		assert_non_null(strstr(out, "\nsubmission.smtpd_helo_required = yes\n"));
		assert_null(strstr(out, "t_absent"));
		free(out);
		out = dump(c, 0, names, 4, &rc);
		assert_int_equal(rc, 1);
		assert_string_equal(out, "submission.smtpd_helo_required = yes\nsmtpd.t_ref = base\n");
		free(out);
	}
	pt_config_free(c);
}

static void
test_listener_errors(void **state)
{
	(void)state;
	struct pt_config *c = load_listeners("submission.t_bounded = 11\nimap.t_ref = x\nsubmission.t_int = 1\n"
	                                     "submission.t_refx = 1\n.t_ref = 1\nSub.t_ref = 1\n"
	                                     "submission.t_ref = $nosuch\nt_bounded = 12\n");
	static const char *const want[] = {
		"t.cf:1: invalid value for t_bounded: ",
		"t.cf:2: unknown listener \"imap\" in imap.t_ref (listeners with per-listener settings: smtpd, submission)",
		"t.cf:3: t_int cannot be set per listener (submission.t_int)",
		"t.cf:4: unknown parameter \"t_refx\" in submission.t_refx (did you mean \"t_ref\"?)",
		"t.cf:5: bad name \".t_ref\"",
		"t.cf:6: bad name \"Sub.t_ref\"",
		"t.cf:7: unknown parameter \"nosuch\" in $expansion",
		"t.cf:8: invalid value for t_bounded: ",
	};

	if (pt_config_error_count(c) != (int)(sizeof want / sizeof want[0]))
		print_errors(c);
	assert_int_equal(pt_config_error_count(c), sizeof want / sizeof want[0]);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		if (strncmp(pt_config_error(c, (int)i), want[i], strlen(want[i])) != 0) {
			print_errors(c);
			fail_msg("error %zu: wanted %s", i, want[i]);
		}
	pt_config_free(c);
}

static void
test_conf_error_hook(void **state)
{
	(void)state;
	struct pt_config *c = load("t_int = 1\n\nt_str = x\n");

	expect_clean(c);
	pt_conf_error(c, "t_str", "t_str %s needs t_int > %d", "x", 1);
	pt_conf_error(c, "t_bool", "default used");
	expect_errors(c, "t.cf:3: t_str x needs t_int > 1", "t.cf: default used", NULL);
	assert_int_equal(pt_config_error_count(c), 2);
	assert_null(pt_config_error(c, 2));
	pt_config_free(c);
}

/* ---- programming errors abort ---- */

static int
dies_with_abort(void (*fn)(const struct pt_config *), const struct pt_config *c)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		if (freopen("/dev/null", "w", stderr) == NULL)
			_exit(2);
		fn(c);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void
ask_undeclared(const struct pt_config *c)
{
	(void)pt_conf_str(c, "no_such_parameter");
}

static void
ask_wrong_type(const struct pt_config *c)
{
	(void)pt_conf_int(c, "t_str");
}

static void
ask_cidrs_of_string(const struct pt_config *c)
{
	(void)pt_conf_cidrs(c, "mynetworks");
}

static void
test_accessor_aborts(void **state)
{
	(void)state;
	struct pt_config *c = load("");

	assert_true(dies_with_abort(ask_undeclared, c));
	assert_true(dies_with_abort(ask_wrong_type, c));
	assert_true(dies_with_abort(ask_cidrs_of_string, c));
	pt_config_free(c);
}

static void
test_too_many_errors(void **state)
{
	(void)state;
	char *text = malloc(3000 * 10 + 1);
	struct pt_config *c;

	text[0] = '\0';
	for (int i = 0; i < 3000; i++)
		strcat(text, "garbage\n");
	c = load(text);
	assert_int_equal(pt_config_error_count(c), 1001);
	assert_string_equal(pt_config_error(c, 999), "t.cf:1000: missing '=' after parameter name \"garbage\"");
	assert_string_equal(pt_config_error(c, 1000), "t.cf: too many errors, stopping after 1000");
	pt_config_free(c);
	free(text);
}

static int
setup(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/test_config.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic_syntax),
		cmocka_unit_test(test_continuation),
		cmocka_unit_test(test_continuation_first),
		cmocka_unit_test(test_missing_equals),
		cmocka_unit_test(test_duplicate_setting),
		cmocka_unit_test(test_module_lines),
		cmocka_unit_test(test_module_errors),
		cmocka_unit_test(test_unknown_did_you_mean),
		cmocka_unit_test(test_all_errors_collected),
		cmocka_unit_test(test_expansion),
		cmocka_unit_test(test_expansion_conditional),
		cmocka_unit_test(test_expansion_loop),
		cmocka_unit_test(test_expansion_errors),
		cmocka_unit_test(test_expansion_limits),
		cmocka_unit_test(test_include_file),
		cmocka_unit_test(test_include_file_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_parse_from_file),
		cmocka_unit_test(test_declare_errors),
		cmocka_unit_test(test_core_defaults),
		cmocka_unit_test(test_myorigin_file),
		cmocka_unit_test(test_core_validators),
		cmocka_unit_test(test_seed_sample),
		cmocka_unit_test(test_dump),
		cmocka_unit_test(test_listener_views),
		cmocka_unit_test(test_listener_errors),
		cmocka_unit_test(test_conf_error_hook),
		cmocka_unit_test(test_accessor_aborts),
		cmocka_unit_test(test_too_many_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
