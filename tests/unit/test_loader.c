/* Module loader: a good module, wrong ABI, other build, missing symbol,
 * missing dependency, dependency order, wrong name, missing file, process
 * roles (hooks run only in a declared role, a module without roles or a
 * listener outside the worker is refused). The test
 * modules live in tests/unit/mods/ and are built only for tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config_int.h"
#include "confcheck.h"
#include "loader.h"
#include "postern/module.h"
#include "postern/services.h"
#include "runtime.h"

static const char *
testmods(void)
{
	const char *d = getenv("POSTERN_TESTMODS");
	return d ? d : "build/testmods";
}

/* Build a config from lines where "@" stands for the test module dir. */
static struct pt_config *
load(const char *fmt)
{
	char text[4096];
	char *o = text;
	for (const char *p = fmt; *p && o < text + sizeof text - 256; p++) {
		if (*p == '@')
			o += sprintf(o, "%s", testmods());
		else
			*o++ = *p;
	}
	*o = '\0';
	struct pt_config *c = pt_runtime_load_text("test.conf", text, strlen(text));
	assert_non_null(c);
	return c;
}

static void
test_good_module(void **state)
{
	(void)state;
	struct pt_config *c = load("module hello @/hello.so\nhello_greeting = hi there\n");
	assert_int_equal(pt_config_error_count(c), 0);
	assert_non_null(pt_modules_find("hello"));
	assert_string_equal(pt_conf_str(c, "hello_greeting"), "hi there");
	assert_string_equal(pt_config_owner(c, "hello_greeting"), "hello");
	pt_config_free(c);
}

static void
test_wrong_abi(void **state)
{
	(void)state;
	struct pt_config *c = load("module badabi @/badabi.so\n");
	assert_true(has_error(c, "test.conf:1: module badabi"));
	char want[80];
	snprintf(want, sizeof want, "built for module ABI %d, this postern has ABI %d", POSTERN_ABI + 41,
	         POSTERN_ABI);
	assert_true(has_error(c, want));
	pt_config_free(c);
}

static void
test_wrong_build(void **state)
{
	(void)state;
	struct pt_config *c = load("module badsig @/badsig.so\n");
	assert_true(has_error(c, "module badsig"));
	assert_true(has_error(c, "build signature"));
	pt_config_free(c);
}

static void
test_missing_symbol(void **state)
{
	(void)state;
	struct pt_config *c = load("\nmodule nosym @/nosym.so\n");
	assert_true(has_error(c, "test.conf:2: module nosym"));
	assert_true(has_error(c, "not a Postern module"));
	pt_config_free(c);
}

static void
test_missing_dependency(void **state)
{
	(void)state;
	struct pt_config *c = load("module needdep @/needdep.so\n");
	assert_true(has_error(c, "test.conf:1: module needdep needs the hello service, which no loaded module provides"));
	pt_config_free(c);
}

static void
test_dependency_order(void **state)
{
	(void)state;
	struct pt_config *c = load("module needdep @/needdep.so\nmodule hello @/hello.so\n");
	assert_int_equal(pt_config_error_count(c), 0);
	assert_int_equal(pt_modules_count(), 2);
	assert_string_equal(pt_modules_get(0)->name, "hello");
	assert_string_equal(pt_modules_get(1)->name, "needdep");
	assert_int_equal(pt_conf_int(c, "needdep_value"), 7);
	pt_config_free(c);
}

static void
test_wrong_name(void **state)
{
	(void)state;
	struct pt_config *c = load("module other @/hello.so\n");
	assert_true(has_error(c, "the file is the module \"hello\", not \"other\""));
	pt_config_free(c);
}

static void
test_missing_file(void **state)
{
	(void)state;
	struct pt_config *c = load("module ghost @/ghost.so\n");
	assert_true(has_error(c, "module ghost: cannot load"));
	pt_config_free(c);
}

static void
test_params_of_unloaded_module_unknown(void **state)
{
	(void)state;
	struct pt_config *c = load("hello_greeting = hi\n");
	assert_true(has_error(c, "unknown parameter \"hello_greeting\""));
	pt_config_free(c);
}

static void
test_duplicate_module(void **state)
{
	(void)state;
	struct pt_config *c = load("module hello @/hello.so\nmodule hello @/hello.so\n");
	assert_true(has_error(c, "hello"));
	assert_true(pt_config_error_count(c) > 0);
	pt_config_free(c);
}

static void
test_hooks_run_in_order(void **state)
{
	(void)state;
	struct pt_config *c = load("module hello @/hello.so\n");
	assert_int_equal(pt_config_error_count(c), 0);
	struct pt_ctx ctx = { .conf = c, .role = PT_ROLE_CLI };
	assert_int_equal(pt_modules_init(&ctx), 0);
	pt_modules_stop(&ctx);
	pt_config_free(c);
}

/* What tests/unit/mods/roletest.c counts. */
struct roletest_counts {
	int inits, stops;
	unsigned last_role;
};

static void
test_hooks_run_only_in_declared_roles(void **state)
{
	(void)state;
	struct pt_config *c = load("module hello @/hello.so\nmodule roletest @/roletest.so\n");
	assert_int_equal(pt_config_error_count(c), 0);
	/* roletest declares delivery and mail: not the worker, nor the CLI */
	struct pt_ctx worker = { .conf = c, .role = PT_ROLE_WORKER };
	assert_int_equal(pt_modules_init(&worker), 0);
	pt_modules_stop(&worker);
	struct pt_ctx cli = { .conf = c, .role = PT_ROLE_CLI };
	assert_int_equal(pt_modules_init(&cli), 0);
	pt_modules_stop(&cli);
	assert_null(pt_service_get("test:roletest"));
	struct pt_ctx mail = { .conf = c, .role = PT_ROLE_MAIL };
	assert_int_equal(pt_modules_init(&mail), 0);
	const struct roletest_counts *n = pt_service_get("test:roletest");
	assert_non_null(n);
	assert_int_equal(n->inits, 1);
	assert_int_equal(n->last_role, PT_ROLE_MAIL);
	pt_modules_stop(&mail);
	assert_int_equal(n->stops, 1);
	struct pt_ctx delivery = { .conf = c, .role = PT_ROLE_DELIVERY };
	assert_int_equal(pt_modules_init(&delivery), 0);
	pt_modules_stop(&delivery);
	assert_int_equal(n->inits, 2);
	assert_int_equal(n->stops, 2);
	assert_int_equal(n->last_role, PT_ROLE_DELIVERY);
	/* a stop in a role it did not start in is not its either */
	pt_modules_stop(&worker);
	assert_int_equal(n->stops, 2);
	pt_config_free(c);
}

static void
test_module_without_roles_refused(void **state)
{
	(void)state;
	struct pt_config *c = load("module noroles @/noroles.so\n");
	assert_true(has_error(c, "test.conf:1: module noroles"));
	assert_true(has_error(c, "declares no valid process roles"));
	pt_config_free(c);
}

static void
test_listener_outside_worker_refused(void **state)
{
	(void)state;
	struct pt_config *c = load("module nowork @/nowork.so\n");
	assert_true(has_error(c, "module nowork"));
	assert_true(has_error(c, "has listeners but does not run in the worker"));
	pt_config_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_module),
		cmocka_unit_test(test_wrong_abi),
		cmocka_unit_test(test_wrong_build),
		cmocka_unit_test(test_missing_symbol),
		cmocka_unit_test(test_missing_dependency),
		cmocka_unit_test(test_dependency_order),
		cmocka_unit_test(test_wrong_name),
		cmocka_unit_test(test_hooks_run_only_in_declared_roles),
		cmocka_unit_test(test_module_without_roles_refused),
		cmocka_unit_test(test_listener_outside_worker_refused),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_params_of_unloaded_module_unknown),
		cmocka_unit_test(test_duplicate_module),
		cmocka_unit_test(test_hooks_run_in_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
