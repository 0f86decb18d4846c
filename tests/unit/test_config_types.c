/* Unit tests for config value types: bool, int, size, time, bounds, lists,
 * PT_PATH, CIDR lists (parse, files, matching) and [ADDR:]PORT lists. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_int.h"

static int
no_port_25(const char *v, char *err, size_t errlen)
{
	if (strcmp(v, "127.0.0.1:25") == 0) {
		snprintf(err, errlen, "port 25 is reserved here");
		return -1;
	}
	return 0;
}

static const struct pt_param params[] = {
	{"v_bool", PT_BOOL, "no", NULL, "", 0, 0},
	{"v_int", PT_INT, "0", NULL, "", 0, 0},
	{"v_bounded", PT_INT, "5", NULL, "", -3, 10},
	{"v_size", PT_SIZE, "0", NULL, "", 0, 0},
	{"v_size_bounded", PT_SIZE, "1k", NULL, "", 512, 1048576},
	{"v_time", PT_TIME, "0", NULL, "", 0, 0},
	{"v_time_bounded", PT_TIME, "1m", NULL, "", 10, 3600},
	{"v_list", PT_LIST, "", NULL, "", 0, 0},
	{"v_cidrs", PT_CIDR_LIST, "", NULL, "", 0, 0},
	{"v_listen", PT_HOSTPORT_LIST, "", no_port_25, "", 0, 0},
	{"v_path", PT_PATH, "/var/x", NULL, "", 0, 0},
	{"v_optpath", PT_PATH, "", NULL, "", 0, 0},
	{NULL, 0, NULL, NULL, NULL, 0, 0},
};

static char tmpdir[64];

/* Finishes "NAME = VALUE"; returns the config; *err gets the one error
 * message with its "t.cf:1: invalid value for NAME: " prefix removed. */
static struct pt_config *
set(const char *name, const char *value, const char **err)
{
	char text[8192];
	struct pt_config *c;
	int n = snprintf(text, sizeof text, "%s = %s\n", name, value);

	c = pt_config_parse("t.cf", text, (size_t)n);
	pt_config_declare(c, "types", params);
	pt_config_finish(c);
	*err = NULL;
	if (pt_config_error_count(c) > 0) {
		char prefix[128];

		assert_int_equal(pt_config_error_count(c), 1);
		snprintf(prefix, sizeof prefix, "t.cf:1: invalid value for %s: ", name);
		if (strncmp(pt_config_error(c, 0), prefix, strlen(prefix)) != 0)
			fail_msg("unexpected error: %s", pt_config_error(c, 0));
		*err = pt_config_error(c, 0) + strlen(prefix);
	}
	return c;
}

static void
good_num(const char *name, const char *value, long long want)
{
	const char *err;
	struct pt_config *c = set(name, value, &err);

	if (err != NULL)
		fail_msg("%s = %s: %s", name, value, err);
	assert_int_equal(pt_conf_int(c, name), want);
	pt_config_free(c);
}

static void
bad(const char *name, const char *value, const char *want)
{
	const char *err;
	struct pt_config *c = set(name, value, &err);

	if (err == NULL)
		fail_msg("%s = %s accepted", name, value);
	if (strcmp(err, want) != 0)
		fail_msg("%s = %s: got \"%s\", want \"%s\"", name, value, err, want);
	pt_config_free(c);
}

static void
test_bool(void **state)
{
	static const char *const yes[] = {"yes", "YES", "true", "True", "on", "1"};
	static const char *const no[] = {"no", "No", "false", "FALSE", "off", "0"};
	const char *err;

	(void)state;
	for (size_t i = 0; i < 6; i++) {
		struct pt_config *c = set("v_bool", yes[i], &err);

		assert_null(err);
		assert_int_equal(pt_conf_bool(c, "v_bool"), 1);
		pt_config_free(c);
		c = set("v_bool", no[i], &err);
		assert_null(err);
		assert_int_equal(pt_conf_bool(c, "v_bool"), 0);
		pt_config_free(c);
	}
	bad("v_bool", "maybe", "\"maybe\" is not a boolean (use yes or no)");
	bad("v_bool", "", "\"\" is not a boolean (use yes or no)");
	bad("v_bool", "yes please", "\"yes please\" is not a boolean (use yes or no)");
	bad("v_bool", "2", "\"2\" is not a boolean (use yes or no)");
}

static void
test_int(void **state)
{
	(void)state;
	good_num("v_int", "0", 0);
	good_num("v_int", "42", 42);
	good_num("v_int", "-17", -17);
	good_num("v_int", "+8", 8);
	good_num("v_int", "9223372036854775807", 9223372036854775807LL);
	good_num("v_int", "-9223372036854775808", -9223372036854775807LL - 1);
	bad("v_int", "12x", "\"12x\" is not a whole number");
	bad("v_int", "", "\"\" is not a whole number");
	bad("v_int", "0x10", "\"0x10\" is not a whole number");
	bad("v_int", "1 2", "\"1 2\" is not a whole number");
	bad("v_int", "-", "\"-\" is not a whole number");
	bad("v_int", "10k", "\"10k\" is not a whole number");
	bad("v_int", "9223372036854775808", "\"9223372036854775808\" is out of range");
	bad("v_int", "99999999999999999999999", "\"99999999999999999999999\" is out of range");
	bad("v_int", "-9223372036854775809", "\"-9223372036854775809\" is out of range");
}

static void
test_size(void **state)
{
	(void)state;
	good_num("v_size", "10240000", 10240000);
	good_num("v_size", "0", 0);
	good_num("v_size", "10k", 10240);
	good_num("v_size", "10K", 10240);
	good_num("v_size", "10m", 10485760);
	good_num("v_size", "10MB", 10485760);
	good_num("v_size", "2g", 2147483648LL);
	good_num("v_size", "7b", 7);
	bad("v_size", "10q", "\"10q\" is not a size (bytes, or a number with k, m or g)");
	bad("v_size", "k", "\"k\" is not a size (bytes, or a number with k, m or g)");
	bad("v_size", "-1", "\"-1\" is not a size (bytes, or a number with k, m or g)");
	bad("v_size", "1.5m", "\"1.5m\" is not a size (bytes, or a number with k, m or g)");
	bad("v_size", "10 m", "\"10 m\" is not a size (bytes, or a number with k, m or g)");
	bad("v_size", "9999999999999g", "\"9999999999999g\" is out of range");
	bad("v_size", "99999999999999999999", "\"99999999999999999999\" is out of range");
	bad("v_size", "99999999999999999999k", "\"99999999999999999999k\" is out of range");
}

static void
test_time(void **state)
{
	(void)state;
	good_num("v_time", "300", 300);
	good_num("v_time", "300s", 300);
	good_num("v_time", "5m", 300);
	good_num("v_time", "1h", 3600);
	good_num("v_time", "0h", 0);
	good_num("v_time", "5d", 432000);
	good_num("v_time", "2w", 1209600);
	bad("v_time", "5x", "\"5x\" is not a time (a number with s, m, h, d or w)");
	bad("v_time", "5ms", "\"5ms\" is not a time (a number with s, m, h, d or w)");
	bad("v_time", "h", "\"h\" is not a time (a number with s, m, h, d or w)");
	bad("v_time", "-5s", "\"-5s\" is not a time (a number with s, m, h, d or w)");
	bad("v_time", "", "\"\" is not a time (a number with s, m, h, d or w)");
	bad("v_time", "99999999999999999w", "\"99999999999999999w\" is out of range");
}

static void
test_bounds(void **state)
{
	(void)state;
	good_num("v_bounded", "-3", -3);
	good_num("v_bounded", "10", 10);
	bad("v_bounded", "-4", "-4 is below the minimum -3");
	bad("v_bounded", "11", "11 is above the maximum 10");
	good_num("v_size_bounded", "1m", 1048576);
	bad("v_size_bounded", "2m", "2097152 is above the maximum 1048576");
	bad("v_size_bounded", "100", "100 is below the minimum 512");
	good_num("v_time_bounded", "1h", 3600);
	bad("v_time_bounded", "2h", "7200 is above the maximum 3600");
	bad("v_time_bounded", "5s", "5 is below the minimum 10");
}

static void
test_list(void **state)
{
	const char *err;
	struct pt_config *c;
	const struct pt_list *l;

	(void)state;
	c = set("v_list", "permit_mynetworks,reject_unauth_destination ,, \t check_lua_policy  /x.lua,", &err);
	assert_null(err);
	l = pt_conf_list(c, "v_list");
	assert_int_equal(l->n, 4);
	assert_string_equal(l->v[0], "permit_mynetworks");
	assert_string_equal(l->v[1], "reject_unauth_destination");
	assert_string_equal(l->v[2], "check_lua_policy");
	assert_string_equal(l->v[3], "/x.lua");
	pt_config_free(c);

	c = set("v_list", ", ,", &err);
	assert_null(err);
	assert_int_equal(pt_conf_list(c, "v_list")->n, 0);
	pt_config_free(c);
}

static void
test_path(void **state)
{
	const char *err;
	struct pt_config *c = set("v_path", "relative/dir", &err);

	(void)state;
	assert_null(err);
	assert_string_equal(pt_conf_str(c, "v_path"), "relative/dir");
	pt_config_free(c);
	bad("v_path", "", "empty path");
	/* Empty is "off" for a path whose default is empty (maillog_file). */
	c = set("v_optpath", "", &err);
	assert_null(err);
	pt_config_free(c);
}

/* ---- CIDR ---- */

static void
cidr_ok(const char *s, int family, int prefix, const char *addr)
{
	struct pt_cidr n;
	unsigned char want[16] = {0};

	if (pt_cidr_parse(s, &n) != 0)
		fail_msg("refused %s", s);
	assert_int_equal(n.family, family);
	assert_int_equal(n.prefix, prefix);
	assert_int_equal(inet_pton(family, addr, want), 1);
	assert_memory_equal(n.addr, want, family == AF_INET ? 4 : 16);
}

static void
test_cidr_parse(void **state)
{
	static const char *const bad_items[] = {
		"", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/abc", "10.0.0.0/8/8",
		"10.0.0.0/0008", "10.0.0", "10.0.0.256", "localhost", "[10.0.0.1", "[::1]]/128", "[]",
		"::1/12a", "fe80::1%eth0", "10.1.2.3/8", "[2001:db8::1]/32", " 10.0.0.1", "1.2.3.4 ",
	};
	struct pt_cidr n;

	(void)state;
	cidr_ok("10.0.0.0/8", AF_INET, 8, "10.0.0.0");
	cidr_ok("192.168.1.7", AF_INET, 32, "192.168.1.7");
	cidr_ok("0.0.0.0/0", AF_INET, 0, "0.0.0.0");
	cidr_ok("::1", AF_INET6, 128, "::1");
	cidr_ok("[::1]", AF_INET6, 128, "::1");
	cidr_ok("[::1]/128", AF_INET6, 128, "::1");
	cidr_ok("[2001:db8::]/32", AF_INET6, 32, "2001:db8::");
	cidr_ok("2001:db8::/32", AF_INET6, 32, "2001:db8::");
	cidr_ok("::/0", AF_INET6, 0, "::");
	cidr_ok("[127.0.0.1]/32", AF_INET, 32, "127.0.0.1");
	for (size_t i = 0; i < sizeof bad_items / sizeof *bad_items; i++)
		if (pt_cidr_parse(bad_items[i], &n) == 0)
			fail_msg("accepted \"%s\"", bad_items[i]);
}

static struct sockaddr_storage
sa(const char *addr)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof ss);
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
	}
	return ss;
}

static int
match(const char *net, const char *addr)
{
	struct pt_cidr n;
	struct sockaddr_storage ss = sa(addr);

	assert_int_equal(pt_cidr_parse(net, &n), 0);
	return pt_cidr_match(&n, (struct sockaddr *)&ss);
}

static void
test_cidr_match(void **state)
{
	(void)state;
	assert_true(match("10.0.0.0/8", "10.255.1.2"));
	assert_false(match("10.0.0.0/8", "11.0.0.1"));
	assert_true(match("192.168.1.0/25", "192.168.1.127"));
	assert_false(match("192.168.1.0/25", "192.168.1.128"));
	assert_true(match("192.168.1.7", "192.168.1.7"));
	assert_false(match("192.168.1.7", "192.168.1.8"));
	assert_true(match("0.0.0.0/0", "8.8.8.8"));
	assert_false(match("0.0.0.0/0", "::1"));
	assert_true(match("[::1]/128", "::1"));
	assert_false(match("[::1]/128", "::2"));
	assert_true(match("[2001:db8::]/32", "2001:db8:ffff::1"));
	assert_false(match("[2001:db8::]/32", "2001:db9::1"));
	assert_true(match("2001:db8:80::/41", "2001:db8:ff::1"));
	assert_false(match("2001:db8:80::/41", "2001:db8:7f::1"));
	assert_false(match("::/0", "127.0.0.1"));
	/* IPv4 clients on a dual-stack socket. */
	assert_true(match("127.0.0.0/8", "::ffff:127.0.0.5"));
	assert_false(match("127.0.0.0/8", "::ffff:128.0.0.5"));
	assert_false(match("127.0.0.0/8", "::127.0.0.5"));
	assert_int_equal(pt_cidr_match(NULL, NULL), 0);
}

static void
test_cidr_list(void **state)
{
	char path[128], text[256];
	const char *err;
	struct pt_config *c;
	const struct pt_cidr_list *l;
	struct sockaddr_storage a1 = sa("172.16.5.5"), a2 = sa("2001:db8::9"), a3 = sa("8.8.8.8");
	FILE *f;

	(void)state;
	snprintf(path, sizeof path, "%s/networks", tmpdir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("# trusted\n172.16.0.0/12 [2001:db8::]/32 # lab\n\n  192.0.2.1\n", f);
	fclose(f);
	snprintf(text, sizeof text, "127.0.0.0/8, [::1]/128 %s", path);
	c = set("v_cidrs", text, &err);
	assert_null(err);
	l = pt_conf_cidrs(c, "v_cidrs");
	assert_int_equal(l->n, 5);
	assert_int_equal(l->v[4].prefix, 32);
	assert_true(pt_cidr_list_match(l, (struct sockaddr *)&a1));
	assert_true(pt_cidr_list_match(l, (struct sockaddr *)&a2));
	assert_false(pt_cidr_list_match(l, (struct sockaddr *)&a3));
	pt_config_free(c);

	c = set("v_cidrs", "", &err);
	assert_null(err);
	assert_int_equal(pt_conf_cidrs(c, "v_cidrs")->n, 0);
	pt_config_free(c);

	bad("v_cidrs", "10.0.0.0/8 10.0.0.0/33", "bad address or network \"10.0.0.0/33\"");
	bad("v_cidrs", "::/129", "bad address or network \"::/129\"");
	bad("v_cidrs", "mail.example.com", "bad address or network \"mail.example.com\"");
	bad("v_cidrs", "10.1.2.3/8", "\"10.1.2.3/8\" has host bits set (did you mean \"10.0.0.0/8\"?)");
	bad("v_cidrs", "[2001:db8::1]/32", "\"[2001:db8::1]/32\" has host bits set (did you mean \"[2001:db8::]/32\"?)");
	bad("v_cidrs", "/nonexistent/networks", "cannot read /nonexistent/networks: No such file or directory");

	f = fopen(path, "w");
	fputs("10.0.0.0/8\n\n10.0.0.300\n", f);
	fclose(f);
	{
		char want[256];

		snprintf(want, sizeof want, "%s:3: bad address or network \"10.0.0.300\"", path);
		bad("v_cidrs", path, want);
		f = fopen(path, "w");
		fputs("10.0.0.0/8 /etc/other\n", f);
		fclose(f);
		snprintf(want, sizeof want, "%s:1: file \"/etc/other\" named inside a file (not allowed)", path);
		bad("v_cidrs", path, want);
	}

	/* The helper modules use directly. */
	{
		struct pt_cidr_list out;
		char e[256];

		assert_int_equal(pt_cidr_list_parse("10.0.0.0/8 [::1]", &out, e, sizeof e), 0);
		assert_int_equal(out.n, 2);
		pt_cidr_list_free(&out);
		assert_int_equal(pt_cidr_list_parse("10.0.0.0/8 nope", &out, e, sizeof e), -1);
		assert_string_equal(e, "bad address or network \"nope\"");
		assert_int_equal(out.n, 0);
		assert_null(out.v);
	}
}

/* ---- [ADDR:]PORT ---- */

static void
test_hostport(void **state)
{
	const char *err;
	struct pt_config *c;
	const struct pt_hostport_list *l;

	(void)state;
	c = set("v_listen", "2525, 127.0.0.1:2587 [::1]:10143 [127.0.0.2]:10110,0.0.0.0:65535", &err);
	assert_null(err);
	l = pt_conf_hostports(c, "v_listen");
	assert_int_equal(l->n, 5);
	assert_string_equal(l->v[0].host, "");
	assert_int_equal(l->v[0].port, 2525);
	assert_string_equal(l->v[1].host, "127.0.0.1");
	assert_int_equal(l->v[1].port, 2587);
	assert_string_equal(l->v[2].host, "::1");
	assert_int_equal(l->v[2].port, 10143);
	assert_string_equal(l->v[3].host, "127.0.0.2");
	assert_int_equal(l->v[4].port, 65535);
	pt_config_free(c);

	c = set("v_listen", "", &err);
	assert_null(err);
	assert_int_equal(pt_conf_hostports(c, "v_listen")->n, 0);
	pt_config_free(c);

	bad("v_listen", "0", "\"0\": bad port \"0\" (1 to 65535)");
	bad("v_listen", "65536", "\"65536\": bad port \"65536\" (1 to 65535)");
	bad("v_listen", "smtp", "\"smtp\": bad port \"smtp\" (1 to 65535)");
	bad("v_listen", "127.0.0.1:", "\"127.0.0.1:\": bad port \"\" (1 to 65535)");
	bad("v_listen", "127.0.0.1:-1", "\"127.0.0.1:-1\": bad port \"-1\" (1 to 65535)");
	bad("v_listen", "1 2 localhost:2525",
		"\"localhost:2525\": \"localhost\" is not an IP address (host names are not allowed)");
	bad("v_listen", "::1:2525", "\"::1:2525\": write IPv6 addresses in brackets, as [ADDRESS]:PORT");
	bad("v_listen", "[::1]", "\"[::1]\": expected [ADDRESS]:PORT");
	bad("v_listen", "[::1]2525", "\"[::1]2525\": expected [ADDRESS]:PORT");
	bad("v_listen", "[mail]:2525", "\"[mail]:2525\": \"mail\" is not an IP address");
	bad("v_listen", ":2525", "\":2525\": missing address before ':'");
	/* The validator sees the value after conversion succeeded. */
	bad("v_listen", "127.0.0.1:25", "port 25 is reserved here");
}

static int
setup(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/test_config_types.XXXXXX");
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
		cmocka_unit_test(test_bool),
		cmocka_unit_test(test_int),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_cidr_parse),
		cmocka_unit_test(test_cidr_match),
		cmocka_unit_test(test_cidr_list),
		cmocka_unit_test(test_hostport),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
