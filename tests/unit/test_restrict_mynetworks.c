/* Unit tests for mynetworks: CIDR lists (IPv4, IPv6, IPv4-mapped
 * clients), /file items, mynetworks_style host/subnet/class, and the
 * seed's `mynetworks = subnet` taken as a style with a warning. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "restrict/restrict.h"

static int
match(const struct pt_cidr_list *l, const char *addr)
{
	struct sockaddr_storage ss;
	assert_int_equal(restrict_sockaddr_parse(addr, &ss), 0);
	return restrict_mynetworks_match(l, (struct sockaddr *)&ss);
}

static void
test_cidr_list(void **state)
{
	(void)state;
	struct pt_cidr_list l;
	int warn;
	char err[256];
	assert_int_equal(restrict_mynetworks_build("127.0.0.1/32, 10.0.0.0/8 [::1]/128 [2001:db8::]/32",
	                                           1, "host", &l, &warn, err, sizeof err), 0);
	assert_int_equal(warn, 0);
	assert_true(match(&l, "127.0.0.1"));
	assert_false(match(&l, "127.0.0.2"));
	assert_true(match(&l, "10.200.1.1"));
	assert_false(match(&l, "11.0.0.1"));
	assert_true(match(&l, "::1"));
	assert_false(match(&l, "::2"));
	assert_true(match(&l, "2001:db8:1::5"));
	assert_false(match(&l, "2001:db9::5"));
	/* a dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d */
	assert_true(match(&l, "::ffff:127.0.0.1"));
	assert_false(match(&l, "::ffff:127.0.0.2"));
	pt_cidr_list_free(&l);

	/* bad items are refused with the item named */
	assert_int_equal(restrict_mynetworks_build("127.0.0.1/33", 1, "host", &l, &warn, err,
	                                           sizeof err), -1);
	assert_int_equal(restrict_mynetworks_build("10.0.0.0/8 bogus", 1, "host", &l, &warn, err,
	                                           sizeof err), -1);
	assert_int_equal(restrict_mynetworks_build("subnet 10.0.0.0/8", 1, "host", &l, &warn, err,
	                                           sizeof err), -1);
	/* set to empty: nobody is trusted */
	assert_int_equal(restrict_mynetworks_build("", 1, "host", &l, &warn, err, sizeof err), 0);
	assert_int_equal(l.n, 0);
	assert_false(match(&l, "127.0.0.1"));
	pt_cidr_list_free(&l);
}

static void
test_file_items(void **state)
{
	(void)state;
	char path[] = "/tmp/test_mynetworks.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char text[] = "# trusted\n192.0.2.0/24\n[2001:db8::1]/128 # one host\n";
	assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
	close(fd);
	char value[200];
	snprintf(value, sizeof value, "127.0.0.1/32 %s", path);
	struct pt_cidr_list l;
	int warn;
	char err[256];
	assert_int_equal(restrict_mynetworks_build(value, 1, "host", &l, &warn, err, sizeof err), 0);
	assert_true(match(&l, "192.0.2.77"));
	assert_true(match(&l, "2001:db8::1"));
	assert_false(match(&l, "2001:db8::2"));
	assert_true(match(&l, "127.0.0.1"));
	pt_cidr_list_free(&l);
	unlink(path);
	/* a missing file is an error, not an empty list */
	assert_int_equal(restrict_mynetworks_build(value, 1, "host", &l, &warn, err, sizeof err), -1);
}

static void
test_styles(void **state)
{
	(void)state;
	struct pt_cidr_list l;
	int warn;
	char err[256];
	/* unset mynetworks: mynetworks_style decides; host = the addresses */
	assert_int_equal(restrict_mynetworks_build("", 0, "host", &l, &warn, err, sizeof err), 0);
	assert_int_equal(warn, 0);
	assert_true(match(&l, "127.0.0.1"));
	assert_false(match(&l, "127.0.0.2"));
	pt_cidr_list_free(&l);
	/* subnet: lo is 127.0.0.0/8 */
	assert_int_equal(restrict_mynetworks_build("", 0, "subnet", &l, &warn, err, sizeof err), 0);
	assert_true(match(&l, "127.0.0.2"));
	assert_true(match(&l, "127.255.0.1"));
	assert_false(match(&l, "128.0.0.1"));
	pt_cidr_list_free(&l);
	/* class: 127 is class A -> /8 */
	assert_int_equal(restrict_mynetworks_build("", 0, "class", &l, &warn, err, sizeof err), 0);
	assert_true(match(&l, "127.1.2.3"));
	pt_cidr_list_free(&l);
	/* the seed's `mynetworks = subnet`: a style, with a warning */
	assert_int_equal(restrict_mynetworks_build("subnet", 1, "host", &l, &warn, err, sizeof err), 0);
	assert_int_equal(warn, 1);
	assert_true(match(&l, "127.0.0.2"));
	pt_cidr_list_free(&l);
	assert_int_equal(restrict_mynetworks_build(" host ", 1, "subnet", &l, &warn, err, sizeof err), 0);
	assert_int_equal(warn, 1);
	assert_false(match(&l, "127.0.0.2"));
	pt_cidr_list_free(&l);
	assert_int_equal(restrict_mynetworks_style("bogus", &l, err, sizeof err), -1);
}

static void
test_sockaddr_parse(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	assert_int_equal(restrict_sockaddr_parse("192.0.2.1", &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(restrict_sockaddr_parse("[::1]", &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(restrict_sockaddr_parse("IPv6:2001:db8::1", &ss), 0);
	assert_int_equal(restrict_sockaddr_parse("300.1.1.1", &ss), -1);
	assert_int_equal(restrict_sockaddr_parse("host.example", &ss), -1);
	assert_int_equal(restrict_sockaddr_parse(NULL, &ss), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cidr_list),
		cmocka_unit_test(test_file_items),
		cmocka_unit_test(test_styles),
		cmocka_unit_test(test_sockaddr_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
