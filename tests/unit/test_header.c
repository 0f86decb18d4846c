/* Unit tests of the header iterator (include/postern/header.h): folded
 * fields, CR LF, the end of the section in both modes, names, unfolding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postern/header.h"

#define S(x) x, sizeof(x) - 1

/* "name=value|" per field, then "@offset". */
static void
walk(const char *m, size_t len, int strict, const char *want)
{
	struct pt_hdr_iter it;
	struct pt_hdr_field f;
	struct pt_strbuf out = { 0 };
	pt_hdr_iter_init(&it, m, len, strict);
	while (pt_hdr_next(&it, &f)) {
		pt_strbuf_put(&out, f.name, f.name_len);
		pt_strbuf_puts(&out, "=");
		pt_strbuf_put(&out, f.value, f.value_len);
		pt_strbuf_puts(&out, "|");
		assert_ptr_equal(f.raw, f.name);
	}
	pt_strbuf_printf(&out, "@%zu", pt_hdr_section_len(&it));
	assert_string_equal(out.p, want);
	pt_strbuf_free(&out);
}

static void
test_fields_and_end(void **state)
{
	(void)state;
	walk(S("A: 1\nB:2\n\nbody\n"), 0, "A= 1|B=2|@9");
	walk(S("A: 1\r\nB: x\r\n y\r\n\r\nbody"), 0, "A= 1|B= x\r\n y|@16");
	walk(S("A: 1\nB: 2"), 1, "A= 1|B= 2|@9");
	walk(S("\nbody\n"), 1, "@0");
	walk(S(""), 0, "@0");
	/* obs-optional: white space before the colon is not the name's */
	walk(S("Subject : x\n\n"), 1, "Subject= x|@12");
}

static void
test_non_field_lines(void **state)
{
	(void)state;
	/* stored mail: skipped; a submission: the body starts there */
	walk(S("A: 1\nnot a field\nB: 2\n\n"), 0, "A= 1|B= 2|@22");
	walk(S("A: 1\nnot a field\nB: 2\n\n"), 1, "A= 1|@5");
	walk(S("Bad Name: 1\n"), 1, "@0");
	walk(S("Bad Name: 1\n"), 0, "Bad Name= 1|@12");
	walk(S(" leading: fold\nA: 1\n"), 1, "@0");
}

static void
test_names_and_unfold(void **state)
{
	(void)state;
	struct pt_hdr_iter it;
	struct pt_hdr_field f;
	pt_hdr_iter_init(&it, S("message-ID: \t<a@b>\n  (c)\n"), 1);
	assert_int_equal(pt_hdr_next(&it, &f), 1);
	assert_true(pt_hdr_name_is(&f, "Message-Id"));
	assert_false(pt_hdr_name_is(&f, "Message"));
	struct pt_strbuf out = { 0 };
	pt_hdr_unfold(f.value, f.value_len, &out);
	assert_string_equal(out.p, "<a@b>  (c)");
	pt_strbuf_free(&out);
	pt_hdr_unfold(" \r\n ", 4, &out);
	assert_string_equal(out.p, "");
	pt_strbuf_free(&out);
	assert_int_equal(pt_hdr_next(&it, &f), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields_and_end),
		cmocka_unit_test(test_non_field_lines),
		cmocka_unit_test(test_names_and_unfold),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
