/* Unit tests for maps: postmap/postalias syntax, case folding, FILE:LINE
 * errors, live reload semantics and the million-entry load time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log_int.h"
#include "map.h"
#include "postern/config.h"

static char tmpdir[256];

struct reports {
	int n, errors;
	char msg[16][600];
};

static void
collect(void *arg, int is_error, const char *msg)
{
	struct reports *r = arg;
	if (r->n < 16)
		snprintf(r->msg[r->n], sizeof(r->msg[0]), "%s", msg);
	r->n++;
	r->errors += is_error;
}

static struct pt_map_table *
parse(const char *text, enum pt_map_format fmt, struct reports *r)
{
	memset(r, 0, sizeof(*r));
	int nerr = -1;
	struct pt_map_table *t = pt_map_table_parse("F", text, strlen(text), fmt, collect, r, &nerr);
	assert_int_equal(nerr, r->errors);
	return t;
}

static void
write_file(const char *path, const char *text)
{
	/* write a new file and rename it over: what editors and admins do */
	char tmp[600];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static void
test_key_value_basics(void **state)
{
	(void)state;
	struct reports r;
	struct pt_map_table *t = parse(
		"# transport map of the seed\n"
		"example.com.ar    local:\n"
		".example.com.ar\tlocal:\n"
		"\n"
		"   # indented comment\n"
		"Big.Example   smtp:[Relay.Example]:2525   \n"
		"crlf.example smtp:crlf\r\n"
		"spaces   error:5.1.1 no such   user here\n", PT_MAP_KEY_VALUE, &r);
	assert_non_null(t);
	assert_int_equal(r.n, 0);
	assert_int_equal(pt_map_table_count(t), 5);
	assert_string_equal(pt_map_table_get(t, "example.com.ar"), "local:");
	assert_string_equal(pt_map_table_get(t, ".example.com.ar"), "local:");
	/* keys fold (Postfix lowercases them), values keep their case */
	assert_string_equal(pt_map_table_get(t, "big.example"), "smtp:[Relay.Example]:2525");
	assert_string_equal(pt_map_table_get(t, "BIG.EXAMPLE"), "smtp:[Relay.Example]:2525");
	assert_string_equal(pt_map_table_get(t, "crlf.example"), "smtp:crlf");
	assert_string_equal(pt_map_table_get(t, "spaces"), "error:5.1.1 no such   user here");
	assert_int_equal(pt_map_table_line(t, "big.example"), 6);
	assert_null(pt_map_table_get(t, "example.com"));
	assert_null(pt_map_table_get(t, "sub.example.com.ar"));
	assert_null(pt_map_table_get(t, ""));
	pt_map_table_free(t);
}

static void
test_continuation_lines(void **state)
{
	(void)state;
	struct reports r;
	struct pt_map_table *t = parse(
		"key1 first\n"
		"  second\n"
		"# a comment between does not end the entry\n"
		"\tthird\n"
		"key2 v\n", PT_MAP_KEY_VALUE, &r);
	assert_non_null(t);
	assert_string_equal(pt_map_table_get(t, "key1"), "first second third");
	assert_string_equal(pt_map_table_get(t, "key2"), "v");
	assert_int_equal(pt_map_table_line(t, "key1"), 1);
	pt_map_table_free(t);

	/* a key whose value starts on the continuation line */
	t = parse("lonely\n   value\n", PT_MAP_KEY_VALUE, &r);
	assert_non_null(t);
	assert_string_equal(pt_map_table_get(t, "lonely"), "value");
	pt_map_table_free(t);
}

static void
test_errors_have_file_line(void **state)
{
	(void)state;
	struct reports r;
	struct pt_map_table *t = parse(
		"  starts indented\n"
		"good value\n"
		"novalue\n"
		"also good\n", PT_MAP_KEY_VALUE, &r);
	assert_null(t);
	assert_int_equal(r.errors, 2);
	assert_string_equal(r.msg[0], "F:1: continuation line without a preceding entry");
	assert_non_null(strstr(r.msg[1], "F:3: expected format: key whitespace value"));

	char nul[] = "a b\nc\0d e\n";
	memset(&r, 0, sizeof(r));
	int nerr;
	t = pt_map_table_parse("F", nul, sizeof(nul) - 1, PT_MAP_KEY_VALUE, collect, &r, &nerr);
	assert_null(t);
	assert_int_equal(nerr, 1);
	assert_string_equal(r.msg[0], "F:2: NUL byte in line");
}

static void
test_duplicates_warn_and_keep_first(void **state)
{
	(void)state;
	struct reports r;
	struct pt_map_table *t = parse("a first\nA second\n", PT_MAP_KEY_VALUE, &r);
	assert_non_null(t);
	assert_int_equal(r.errors, 0);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.msg[0], "F:2: warning: duplicate entry \"A\" ignored (first at line 1)");
	assert_string_equal(pt_map_table_get(t, "a"), "first");
	assert_int_equal(pt_map_table_count(t), 1);
	pt_map_table_free(t);
}

static void
test_aliases_syntax(void **state)
{
	(void)state;
	struct reports r;
	struct pt_map_table *t = parse(
		"# /etc/aliases\n"
		"postmaster:    root\n"
		"sysadmin: gacanepa, jdoe\n"
		"user1: user1, user2\n"
		"Team : alice,\n"
		"   bob,\n"
		"\tcarol\n"
		"\"a b\": x\n"
		"\"q\\\"uote:d\": y\n"
		"prog: |\"/usr/bin/prog with spaces\"\n", PT_MAP_ALIASES, &r);
	assert_non_null(t);
	assert_int_equal(r.n, 0);
	assert_string_equal(pt_map_table_get(t, "postmaster"), "root");
	assert_string_equal(pt_map_table_get(t, "sysadmin"), "gacanepa, jdoe");
	assert_string_equal(pt_map_table_get(t, "user1"), "user1, user2");
	assert_string_equal(pt_map_table_get(t, "team"), "alice, bob, carol");
	assert_string_equal(pt_map_table_get(t, "a b"), "x");
	assert_string_equal(pt_map_table_get(t, "q\"uote:d"), "y");
	assert_string_equal(pt_map_table_get(t, "prog"), "|\"/usr/bin/prog with spaces\"");
	pt_map_table_free(t);

	t = parse("nocolon value\n"
	          ": novalue\n"
	          "empty:\n"
	          "\"open: x\n"
	          "ok: fine\n", PT_MAP_ALIASES, &r);
	assert_null(t);
	assert_int_equal(r.errors, 4);
	assert_string_equal(r.msg[0], "F:1: need name: value pair, got \"nocolon value\"");
	assert_string_equal(r.msg[1], "F:2: empty alias name");
	assert_string_equal(r.msg[2], "F:3: alias \"empty\" has no value");
	assert_string_equal(r.msg[3], "F:4: unterminated quoted alias name");
}

/* Every prefix of a valid file parses without harm, and the entries it
 * holds are a prefix of the full file's. */
static void
test_every_truncation(void **state)
{
	(void)state;
	const char *text = "a: b, c\n  d\n\"x y\": z # not a comment\n# c\nlast: |cmd\n";
	size_t len = strlen(text);
	for (size_t cut = 0; cut <= len; cut++) {
		int nerr;
		struct pt_map_table *t = pt_map_table_parse("F", text, cut, PT_MAP_ALIASES, NULL,
		                                            NULL, &nerr);
		if (t) {
			const char *a = pt_map_table_get(t, "a");
			if (a)
				assert_true(strncmp("b, c d", a, strlen(a)) == 0);
			pt_map_table_free(t);
		} else {
			assert_true(nerr > 0);
		}
	}
}

static void
test_spec_parsing(void **state)
{
	(void)state;
	char path[256], err[256];
	assert_int_equal(pt_map_spec_path("hash:/etc/postfix/transport", path, sizeof(path), err,
	                                  sizeof(err)), 0);
	assert_string_equal(path, "/etc/postfix/transport");
	assert_int_equal(pt_map_spec_path("texthash:/etc/aliases", path, sizeof(path), err,
	                                  sizeof(err)), 0);
	assert_string_equal(path, "/etc/aliases");
	assert_int_equal(pt_map_spec_path("/etc/aliases", path, sizeof(path), err, sizeof(err)), 0);
	assert_string_equal(path, "/etc/aliases");
	assert_int_equal(pt_map_spec_path("proxy:hash:/x", path, sizeof(path), err, sizeof(err)), 0);
	assert_string_equal(path, "/x");
	assert_int_equal(pt_map_spec_path("rel/a:b", path, sizeof(path), err, sizeof(err)), 0);
	assert_string_equal(path, "rel/a:b");
	assert_int_equal(pt_map_spec_path("pcre:/etc/x", path, sizeof(path), err, sizeof(err)), -1);
	assert_string_equal(err, "unsupported map type \"pcre\" in \"pcre:/etc/x\" (supported: hash, texthash, and a loaded module's, e.g. ldap with `module ldap`)");
	assert_int_equal(pt_map_spec_path("hash:", path, sizeof(path), err, sizeof(err)), -1);
	assert_string_equal(err, "map \"hash:\" names no file");
	char errb[256];
	assert_null(pt_map_open("regexp:/x", PT_MAP_KEY_VALUE, errb, sizeof(errb)));
}

/* ---- map types provided by modules ---- */

static int fake_opened;
static void *
fake_open(const char *arg, enum pt_map_format fmt, char *err, size_t errlen)
{
	(void)fmt;
	if (strcmp(arg, "/bad.cf") == 0) {
		snprintf(err, errlen, "bad config");
		return NULL;
	}
	fake_opened++;
	return strdup(arg);
}
static void
fake_close(void *h)
{
	fake_opened--;
	free(h);
}
/* "slow" is not at hand: pending, as a loop thread must get it */
static char *
fake_lookup(void *h, const char *key, int *tempfail)
{
	(void)h;
	*tempfail = 0;
	if (strcmp(key, "slow") == 0) {
		if (!pt_map_may_block()) {
			pt_map_note_pending();
			*tempfail = 1;
			return NULL;
		}
		return strdup("waited");
	}
	return strcmp(key, "k") == 0 ? strdup("v") : NULL;
}
static int
fake_check(const char *arg, pt_map_report_fn *report, void *rarg)
{
	(void)arg;
	report(rarg, 1, "fake: checked");
	return 1;
}
static const struct pt_map_type_ops fake_ops = { fake_open, fake_close, fake_lookup, fake_check, NULL, NULL, NULL };

static void
count_report(void *arg, int is_error, const char *msg)
{
	(void)is_error;
	(void)msg;
	(*(int *)arg)++;
}

static void
test_module_map_type(void **state)
{
	(void)state;
	char err[256], path[256];
	assert_null(pt_map_open("fake:/x.cf", PT_MAP_KEY_VALUE, err, sizeof err));   /* not registered */
	assert_int_equal(pt_map_type_register("fake", &fake_ops), 0);
	assert_int_equal(pt_map_spec_path("fake:/x.cf", path, sizeof path, err, sizeof err), 0);
	assert_string_equal(path, "/x.cf");
	assert_null(pt_map_open("fake:/bad.cf", PT_MAP_KEY_VALUE, err, sizeof err));
	assert_string_equal(err, "bad config");
	struct pt_map *m = pt_map_open("proxy:fake:/x.cf", PT_MAP_KEY_VALUE, err, sizeof err);
	assert_non_null(m);
	assert_int_equal(fake_opened, 1);
	int tf = 9;
	uid_t owner = 0;
	char *v = pt_map_lookup(m, "k", &tf, &owner);
	assert_string_equal(v, "v");
	free(v);
	assert_int_equal(tf, 0);
	assert_int_equal(owner, (uid_t)-1);   /* no file owner: no /file or |command rights */
	assert_null(pt_map_lookup(m, "none", &tf, NULL));
	assert_int_equal(tf, 0);
	unsigned long p0 = pt_map_pending_count();
	v = pt_map_lookup(m, "slow", &tf, NULL);    /* no loop on this thread: it may wait */
	assert_string_equal(v, "waited");
	free(v);
	assert_int_equal(pt_map_pending_count(), p0);
	pt_map_set_may_block(0);                     /* as on a loop thread */
	assert_null(pt_map_lookup(m, "slow", &tf, NULL));
	assert_int_equal(tf, 1);
	assert_int_equal(pt_map_pending_count(), p0 + 1);
	pt_map_set_may_block(1);
	v = pt_map_lookup(m, "slow", &tf, NULL);
	pt_map_set_may_block(0);
	assert_string_equal(v, "waited");
	free(v);
	assert_string_equal(pt_map_path(m), "/x.cf");
	assert_int_equal(pt_map_refresh(m), 0);
	pt_map_close(m);
	assert_int_equal(fake_opened, 0);
	int n = 0;
	assert_int_equal(pt_map_check("fake:/x.cf", PT_MAP_KEY_VALUE, count_report, &n, NULL), 1);
	assert_int_equal(n, 1);
	/* no passdb/userdb in these ops */
	assert_null(pt_map_source_get("fake:/x.cf", 1, err, sizeof err));
	assert_string_equal(err, "map type fake offers no userdb");
	/* file maps are untouched by the registry */
	assert_int_equal(pt_map_spec_path("hash:/etc/aliases", path, sizeof path, err, sizeof err), 0);
}

static char *
read_all(const char *path)
{
	char *text;
	size_t len;
	if (pt_map_read_file(path, &text, &len) < 0)
		return strdup("");
	return text;
}

static void
test_live_map_reload(void **state)
{
	(void)state;
	char path[300], logpath[300], spec[310];
	snprintf(path, sizeof(path), "%s/transport", tmpdir);
	snprintf(logpath, sizeof(logpath), "%s/log", tmpdir);
	snprintf(spec, sizeof(spec), "hash:%s", path);
	assert_int_equal(pt_log_open(logpath), 0);

	write_file(path, "example.com.ar local:\n");
	char err[256];
	struct pt_map *m = pt_map_open(spec, PT_MAP_KEY_VALUE, err, sizeof(err));
	assert_non_null(m);
	assert_string_equal(pt_map_path(m), path);
	int tf = -1;
	uid_t owner = (uid_t)-1;
	char *v = pt_map_lookup(m, "EXAMPLE.com.AR", &tf, &owner);
	assert_string_equal(v, "local:");
	assert_int_equal(tf, 0);
	assert_int_equal(owner, geteuid());
	free(v);
	assert_null(pt_map_lookup(m, "other", &tf, NULL));
	assert_int_equal(tf, 0);

	/* a new line is picked up by the next lookup a second later, no reload */
	write_file(path, "example.com.ar local:\nnew.example smtp:[127.0.0.1]:2525\n");
	struct timespec ts = { 1, 100 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	v = pt_map_lookup(m, "new.example", &tf, NULL);
	assert_string_equal(v, "smtp:[127.0.0.1]:2525");
	free(v);
	assert_int_equal(pt_map_count(m), 2);

	/* a broken new file keeps the old contents and logs FILE:LINE */
	write_file(path, "example.com.ar local:\nbroken\n");
	assert_int_equal(pt_map_refresh(m), -1);
	v = pt_map_lookup(m, "new.example", &tf, NULL);
	assert_string_equal(v, "smtp:[127.0.0.1]:2525");
	assert_int_equal(tf, 0);
	free(v);
	char *log = read_all(logpath);
	char want[400];
	snprintf(want, sizeof(want), "%s:2: expected format: key whitespace value", path);
	assert_non_null(strstr(log, want));
	assert_non_null(strstr(log, "keeping the previous contents"));
	free(log);
	/* unchanged broken file: nothing new to do */
	assert_int_equal(pt_map_refresh(m), -1);

	/* fixed: swapped in */
	write_file(path, "example.com.ar local:\nfixed.example discard:\n");
	assert_int_equal(pt_map_refresh(m), 1);
	v = pt_map_lookup(m, "fixed.example", &tf, NULL);
	assert_string_equal(v, "discard:");
	free(v);
	assert_null(pt_map_lookup(m, "new.example", &tf, NULL));
	assert_int_equal(pt_map_refresh(m), 0);

	/* deleted: the old contents stay */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(pt_map_refresh(m), -1);
	v = pt_map_lookup(m, "fixed.example", &tf, NULL);
	assert_string_equal(v, "discard:");
	free(v);
	pt_map_close(m);
	pt_log_close();
	unlink(logpath);
}

static void
test_missing_file_is_temporary(void **state)
{
	(void)state;
	char path[300], spec[310], err[256];
	snprintf(path, sizeof(path), "%s/aliases-late", tmpdir);
	snprintf(spec, sizeof(spec), "texthash:%s", path);
	unlink(path);
	struct pt_map *m = pt_map_open(spec, PT_MAP_ALIASES, err, sizeof(err));
	assert_non_null(m);
	int tf = 0;
	assert_null(pt_map_lookup(m, "root", &tf, NULL));
	assert_int_equal(tf, 1);
	write_file(path, "root: admin\n");
	assert_int_equal(pt_map_refresh(m), 1);
	char *v = pt_map_lookup(m, "root", &tf, NULL);
	assert_string_equal(v, "admin");
	assert_int_equal(tf, 0);
	free(v);
	pt_map_close(m);
	unlink(path);
}

/* A list of maps answers from the first that has the key; an unreadable
 * map makes a miss temporary but does not hide a later map's answer. */
static void
test_map_list_order_and_tempfail(void **state)
{
	(void)state;
	char p1[300], p2[300], s1[310], s2[310], s3[310], err[400];
	snprintf(p1, sizeof(p1), "%s/list-one", tmpdir);
	snprintf(p2, sizeof(p2), "%s/list-two", tmpdir);
	write_file(p1, "a first\n");
	write_file(p2, "a second\nb only-two\n");
	snprintf(s1, sizeof(s1), "hash:%s", p1);
	snprintf(s2, sizeof(s2), "hash:%s", p2);
	snprintf(s3, sizeof(s3), "hash:%s/list-missing", tmpdir);
	char *v3[] = { s1, s3, s2 };
	struct pt_list specs = { 3, v3 };
	struct pt_map_list *l = pt_map_list_open(&specs, PT_MAP_KEY_VALUE, "transport_maps", err, sizeof(err));
	assert_non_null(l);
	assert_int_equal(pt_map_list_count(l), 3);
	assert_string_equal(pt_map_path(pt_map_list_get(l, 2)), p2);
	assert_null(pt_map_list_get(l, 3));
	int tf = 1;
	char *v = pt_map_list_lookup(l, "A", &tf, NULL);
	assert_string_equal(v, "first");
	assert_int_equal(tf, 0);
	free(v);
	v = pt_map_list_lookup(l, "b", &tf, NULL);
	assert_string_equal(v, "only-two");
	assert_int_equal(tf, 0);
	free(v);
	assert_null(pt_map_list_lookup(l, "c", &tf, NULL));
	assert_int_equal(tf, 1); /* the missing file might have had it */
	pt_map_list_close(l);

	char bad[] = "nosuchtype:/x";
	char *vb[] = { s1, bad };
	struct pt_list badspecs = { 2, vb };
	assert_null(pt_map_list_open(&badspecs, PT_MAP_KEY_VALUE, "alias_maps", err, sizeof(err)));
	assert_non_null(strstr(err, "alias_maps: "));
	unlink(p1);
	unlink(p2);
}

static void
test_check_counts(void **state)
{
	(void)state;
	char path[300], spec[310];
	snprintf(path, sizeof(path), "%s/chk", tmpdir);
	snprintf(spec, sizeof(spec), "hash:%s", path);
	write_file(path, "a: b\nc: d\n");
	struct reports r = { 0 };
	size_t n = 0;
	assert_int_equal(pt_map_check(spec, PT_MAP_ALIASES, collect, &r, &n), 0);
	assert_int_equal(n, 2);
	write_file(path, "a b\n");
	assert_int_equal(pt_map_check(spec, PT_MAP_ALIASES, collect, &r, &n), 1);
	assert_int_equal(n, 0);
	unlink(path);
	memset(&r, 0, sizeof(r));
	assert_int_equal(pt_map_check(spec, PT_MAP_ALIASES, collect, &r, &n), 1);
	assert_non_null(strstr(r.msg[0], "cannot open: No such file or directory"));
}

struct seen {
	int n;
	char line[8][300];
};

/* Complains about values starting with "bad". */
static int
judge(void *arg, const char *path, int line, const char *key, const char *value)
{
	struct seen *s = arg;
	const char *base = strrchr(path, '/');
	if (s->n < 8)
		snprintf(s->line[s->n], sizeof(s->line[0]), "%s:%d %s=%s", base ? base + 1 : path, line, key, value);
	s->n++;
	return strncmp(value, "bad", 3) == 0;
}

/* pt_map_check_each: every entry that parsed reaches the callback, in file
 * order, also when other lines have errors; its count adds to the result. */
static void
test_check_each_entry(void **state)
{
	(void)state;
	char path[300], spec[310];
	snprintf(path, sizeof(path), "%s/each", tmpdir);
	snprintf(spec, sizeof(spec), "hash:%s", path);
	write_file(path, "B.example good:x\nbroken\nc.example bad:y\n# note\nd.example\n  continued:z\n");
	struct reports r = { 0 };
	struct seen seen = { 0 };
	size_t n = 99;
	assert_int_equal(pt_map_check_each(spec, PT_MAP_KEY_VALUE, collect, &r, &n, judge, &seen), 2);
	assert_int_equal(r.errors, 1);
	assert_non_null(strstr(r.msg[0], "each:2:"));
	assert_int_equal(n, 0);    /* a file with errors has no usable entries */
	assert_int_equal(seen.n, 3);
	assert_string_equal(seen.line[0], "each:1 b.example=good:x");
	assert_string_equal(seen.line[1], "each:3 c.example=bad:y");
	assert_string_equal(seen.line[2], "each:5 d.example=continued:z");
	unlink(path);
}

static void
test_million_entries(void **state)
{
	(void)state;
	const size_t n = 1000000;
	size_t cap = n * 64, len = 0;
	char *text = malloc(cap);
	assert_non_null(text);
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(text + len, cap - len, "User%zu.Example.COM smtp:[10.0.%zu.%zu]\n",
		                        i, (i >> 8) & 255, i & 255);
	char path[300], spec[310], err[256];
	snprintf(path, sizeof(path), "%s/big", tmpdir);
	snprintf(spec, sizeof(spec), "hash:%s", path);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	free(text);

	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	struct pt_map *m = pt_map_open(spec, PT_MAP_KEY_VALUE, err, sizeof(err));
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_non_null(m);
	double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	printf("map: 1,000,000 entries (%zu bytes) loaded in %.3f s\n", len, secs);
	assert_int_equal(pt_map_count(m), n);

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (size_t i = 0; i < n; i += 7) {
		char key[64], want[64];
		snprintf(key, sizeof(key), "user%zu.example.com", i);
		snprintf(want, sizeof(want), "smtp:[10.0.%zu.%zu]", (i >> 8) & 255, i & 255);
		int tf;
		char *v = pt_map_lookup(m, key, &tf, NULL);
		assert_non_null(v);
		assert_string_equal(v, want);
		free(v);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	printf("map: %zu lookups in %.3f s\n", n / 7 + 1, secs);
	int tf;
	assert_null(pt_map_lookup(m, "user1000000.example.com", &tf, NULL));
	pt_map_close(m);
	unlink(path);
}

static int
setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_map.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	return rmdir(tmpdir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_value_basics),
		cmocka_unit_test(test_continuation_lines),
		cmocka_unit_test(test_errors_have_file_line),
		cmocka_unit_test(test_duplicates_warn_and_keep_first),
		cmocka_unit_test(test_aliases_syntax),
		cmocka_unit_test(test_every_truncation),
		cmocka_unit_test(test_spec_parsing),
		cmocka_unit_test(test_module_map_type),
		cmocka_unit_test(test_live_map_reload),
		cmocka_unit_test(test_missing_file_is_temporary),
		cmocka_unit_test(test_map_list_order_and_tempfail),
		cmocka_unit_test(test_check_counts),
		cmocka_unit_test(test_check_each_entry),
		cmocka_unit_test(test_million_entries),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
