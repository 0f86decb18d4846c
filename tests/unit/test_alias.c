/* Unit tests for the alias module: aliases(5) values, the seed's expansion
 * rules, loops, owner- aliases, user+tag, :include:, trust of special
 * destinations, and /file and |command delivery. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alias/alias.h"
#include "config_int.h"
#include "runtime.h"

static char tmpdir[256];
static struct pt_config *conf;

/* ---- helpers ---- */

struct got {
	int n;
	char item[64][300];           /* "A:name", "F:/path", "C:cmd", "I:path"; owner as " <o>" */
};

static void
collect_target(void *arg, const char *target, enum pt_alias_target kind, const char *owner)
{
	struct got *g = arg;
	static const char k[] = "AFCI";
	if (g->n < 64)
		snprintf(g->item[g->n], sizeof(g->item[0]), "%c:%s%s%s", k[kind], target,
		         owner ? " " : "", owner ? owner : "");
	g->n++;
}

static int
walk_collect(void *arg, enum pt_alias_target kind, const char *text)
{
	collect_target(arg, text, kind, NULL);
	return 0;
}

static void
write_file(const char *name, const char *text, char *path, size_t pathlen)
{
	snprintf(path, pathlen, "%s/%s", tmpdir, name);
	char tmp[600];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static struct pt_map_list *
one_map(const char *spec)
{
	char *v[1] = { (char *)spec };
	struct pt_list l = { 1, v };
	char err[256];
	struct pt_map_list *ml = pt_map_list_open(&l, PT_MAP_ALIASES, "alias_maps", err, sizeof(err));
	assert_non_null(ml);
	return ml;
}

static struct alias_conf *
make_conf(const char *aliases_text, const char *delim)
{
	char path[400], spec[410];
	write_file("aliases", aliases_text, path, sizeof(path));
	snprintf(spec, sizeof(spec), "hash:%s", path);
	struct alias_conf *c = calloc(1, sizeof(*c));
	c->maps = one_map(spec);
	snprintf(c->delim, sizeof(c->delim), "%s", delim ? delim : "");
	c->command_time_limit = 10;
	c->privs_uid = 65534;
	c->privs_gid = 65534;
	return c;
}

static void
free_conf(struct alias_conf *c)
{
	pt_map_list_close(c->maps);
	free(c);
}

static int
expand(struct alias_conf *c, const char *local, struct got *g, struct pt_status *st)
{
	memset(g, 0, sizeof(*g));
	memset(st, 0, sizeof(*st));
	return alias_expand(c, local, collect_target, g, st);
}

static const char seed_aliases[] =
	"# the seed's examples\n"
	"sysadmin: gacanepa, jdoe\n"
	"user1: user1, user2\n"
	"user3: user2\n"
	"team: sysadmin, carol@example.com.ar, sysadmin\n"
	"dup: alice, alice, ALICE, alice@EXAMPLE.com.ar, \\alice\n"
	"remote: friend@elsewhere.test, Friend@elsewhere.test\n"
	"a: b\n"
	"b: a\n"
	"selfish: selfish\n"
	"indirect: c\n"
	"c: d, c\n"
	"d: indirect\n"
	"list: alice, bob\n"
	"owner-list: listadmin\n"
	"outer: list, carol\n"
	"diamond: left, right\n"
	"left: shared\n"
	"right: shared\n"
	"shared: x, y\n"
	"backslash: \\backslash, other\n";

/* ---- value parsing ---- */

static void
test_parse_value(void **state)
{
	(void)state;
	struct got g = { 0 };
	assert_int_equal(alias_parse_value(
		"gacanepa, jdoe  carol,,<dave@x.test>, /var/log/all.mbox, "
		"|\"/usr/bin/prog with spaces\", \"|/bin/cat -n\" , |/bin/echo a b, "
		":include:/etc/mail/list, :INCLUDE: /other, \\root, <>, \"a b\"@x.test",
		walk_collect, &g), 0);
	assert_int_equal(g.n, 12);
	assert_string_equal(g.item[0], "A:gacanepa");
	assert_string_equal(g.item[1], "A:jdoe");
	assert_string_equal(g.item[2], "A:carol");
	assert_string_equal(g.item[3], "A:dave@x.test");
	assert_string_equal(g.item[4], "F:/var/log/all.mbox");
	assert_string_equal(g.item[5], "C:/usr/bin/prog with spaces");
	assert_string_equal(g.item[6], "C:/bin/cat -n");
	assert_string_equal(g.item[7], "C:/bin/echo a b");
	assert_string_equal(g.item[8], "I:/etc/mail/list");
	assert_string_equal(g.item[9], "I:/other");
	assert_string_equal(g.item[10], "A:\\root");
	assert_string_equal(g.item[11], "A:a b@x.test");
}

static int
stop_at_second(void *arg, enum pt_alias_target kind, const char *text)
{
	(void)kind;
	(void)text;
	return ++*(int *)arg == 2 ? 7 : 0;
}

static void
test_parse_value_stops_and_truncations(void **state)
{
	(void)state;
	int n = 0;
	assert_int_equal(alias_parse_value("a, b, c", stop_at_second, &n), 7);
	assert_int_equal(n, 2);
	/* every prefix of a tricky value is walked without harm */
	const char *v = "x, |\"a \\\" b\", \"q,\" , :include:/p, </f>, \\y";
	char buf[128];
	for (size_t cut = 0; cut <= strlen(v); cut++) {
		memcpy(buf, v, cut);
		buf[cut] = 0;
		struct got g = { 0 };
		assert_int_equal(alias_parse_value(buf, walk_collect, &g), 0);
		assert_true(g.n <= 6);
	}
	struct got g = { 0 };
	alias_parse_value(v, walk_collect, &g);
	assert_int_equal(g.n, 6);
	assert_string_equal(g.item[1], "C:a \" b");
	assert_string_equal(g.item[2], "A:q,");
}

static void
test_include_text(void **state)
{
	(void)state;
	const char *t = "# members\nalice\n\n  bob, carol\n#x\ndave";
	char *v = alias_include_text(t, strlen(t));
	assert_string_equal(v, "alice,bob, carol,dave");
	free(v);
	v = alias_include_text("", 0);
	assert_string_equal(v, "");
	free(v);
}

/* ---- expansion ---- */

static void
test_seed_examples(void **state)
{
	(void)state;
	struct alias_conf *c = make_conf(seed_aliases, NULL);
	struct got g;
	struct pt_status st;
	/* sysadmin: gacanepa, jdoe -> both */
	assert_int_equal(expand(c, "sysadmin", &g, &st), 1);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.item[0], "A:gacanepa");
	assert_string_equal(g.item[1], "A:jdoe");
	/* user1: user1, user2 -> the user itself and user2, no loop */
	assert_int_equal(expand(c, "user1", &g, &st), 1);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.item[0], "A:user1");
	assert_string_equal(g.item[1], "A:user2");
	/* user3: user2 -> only user2 */
	assert_int_equal(expand(c, "user3", &g, &st), 1);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.item[0], "A:user2");
	/* not an alias */
	assert_int_equal(expand(c, "gacanepa", &g, &st), 0);
	assert_int_equal(g.n, 0);
	assert_int_equal(alias_exists(c, "sysadmin"), 1);
	assert_int_equal(alias_exists(c, "SysAdmin"), 1);
	assert_int_equal(alias_exists(c, "nobody-here"), 0);
	free_conf(c);
}

static void
test_recursion_and_duplicates(void **state)
{
	(void)state;
	struct alias_conf *c = make_conf(seed_aliases, NULL);
	struct got g;
	struct pt_status st;
	/* nested aliases, a local-domain address is a local name, repeats once */
	assert_int_equal(expand(c, "team", &g, &st), 1);
	assert_int_equal(g.n, 3);
	assert_string_equal(g.item[0], "A:gacanepa");
	assert_string_equal(g.item[1], "A:jdoe");
	assert_string_equal(g.item[2], "A:carol");
	assert_int_equal(expand(c, "dup", &g, &st), 1);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.item[0], "A:alice");
	/* remote addresses pass through as written, once */
	assert_int_equal(expand(c, "remote", &g, &st), 1);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.item[0], "A:friend@elsewhere.test");
	/* an alias reached twice is expanded once */
	assert_int_equal(expand(c, "diamond", &g, &st), 1);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.item[0], "A:x");
	assert_string_equal(g.item[1], "A:y");
	/* \name stops aliasing */
	assert_int_equal(expand(c, "backslash", &g, &st), 1);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.item[0], "A:backslash");
	assert_string_equal(g.item[1], "A:other");
	/* an alias that is only itself */
	assert_int_equal(expand(c, "selfish", &g, &st), 1);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.item[0], "A:selfish");
	free_conf(c);
}

static void
test_loops(void **state)
{
	(void)state;
	struct alias_conf *c = make_conf(seed_aliases, NULL);
	struct got g;
	struct pt_status st;
	/* a: b, b: a bounces instead of looping */
	assert_int_equal(expand(c, "a", &g, &st), -2);
	assert_int_equal(st.code, 554);
	assert_string_equal(st.dsn, "5.4.6");
	assert_string_equal(st.text, "mail forwarding loop for a");
	/* a longer cycle through a self-reference still loops */
	assert_int_equal(expand(c, "indirect", &g, &st), -2);
	assert_string_equal(st.dsn, "5.4.6");
	free_conf(c);

	/* a chain deeper than the limit */
	char text[4096] = "";
	for (int i = 0; i < ALIAS_MAX_DEPTH + 5; i++) {
		char line[64];
		snprintf(line, sizeof(line), "n%d: n%d\n", i, i + 1);
		strcat(text, line);
	}
	c = make_conf(text, NULL);
	assert_int_equal(expand(c, "n0", &g, &st), -2);
	assert_string_equal(st.dsn, "5.4.6");
	free_conf(c);

	/* too many targets */
	size_t cap = 40000, len = 0;
	char *big = malloc(cap);
	len += (size_t)snprintf(big + len, cap - len, "huge: ");
	for (int i = 0; i < ALIAS_MAX_TARGETS + 10; i++)
		len += (size_t)snprintf(big + len, cap - len, "u%d,", i);
	snprintf(big + len, cap - len, "\n");
	c = make_conf(big, NULL);
	free(big);
	assert_int_equal(expand(c, "huge", &g, &st), -2);
	assert_string_equal(st.dsn, "5.3.0");
	free_conf(c);
}

static void
test_owner_aliases(void **state)
{
	(void)state;
	struct alias_conf *c = make_conf(seed_aliases, NULL);
	struct got g;
	struct pt_status st;
	assert_int_equal(expand(c, "list", &g, &st), 1);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.item[0], "A:alice owner-list");
	assert_string_equal(g.item[1], "A:bob owner-list");
	/* the owner applies inside the list only */
	assert_int_equal(expand(c, "outer", &g, &st), 1);
	assert_int_equal(g.n, 3);
	assert_string_equal(g.item[0], "A:alice owner-list");
	assert_string_equal(g.item[2], "A:carol");
	assert_int_equal(expand(c, "sysadmin", &g, &st), 1);
	assert_string_equal(g.item[0], "A:gacanepa");
	free_conf(c);
}

static void
test_recipient_delimiter(void **state)
{
	(void)state;
	struct alias_conf *c = make_conf("sysadmin: gacanepa, jdoe\nsysadmin+urgent: pager\n", "+-");
	struct got g;
	struct pt_status st;
	assert_int_equal(expand(c, "sysadmin+lists", &g, &st), 1);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.item[0], "A:gacanepa");
	assert_int_equal(expand(c, "sysadmin-x", &g, &st), 1);
	assert_int_equal(g.n, 2);
	/* an exact user+tag entry wins over the base */
	assert_int_equal(expand(c, "sysadmin+urgent", &g, &st), 1);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.item[0], "A:pager");
	assert_int_equal(expand(c, "alice+tag", &g, &st), 0);
	assert_int_equal(alias_exists(c, "sysadmin+foo"), 1);
	free_conf(c);

	/* without recipient_delimiter, user+tag is just a name */
	c = make_conf("sysadmin: gacanepa\n", NULL);
	assert_int_equal(expand(c, "sysadmin+lists", &g, &st), 0);
	free_conf(c);
}

static void
test_special_destinations_and_include(void **state)
{
	(void)state;
	char inc[400], inc2[400], text[2000];
	write_file("members", "# list members\nalice\nbob, sysadmin\n|/bin/true\n", inc, sizeof(inc));
	write_file("loopy", ":include:LOOPY\n", inc2, sizeof(inc2));
	/* make loopy include itself */
	snprintf(text, sizeof(text), ":include:%s\n", inc2);
	write_file("loopy", text, inc2, sizeof(inc2));
	snprintf(text, sizeof(text),
	         "sysadmin: gacanepa, jdoe\n"
	         "archive: /var/spool/archive.mbox, \"|/usr/bin/logger -t mail\"\n"
	         "members: :include:%s\n"
	         "loopy: :include:%s\n"
	         "missing: :include:%s/no-such-file\n"
	         "relative: :include:members\n", inc, inc2, tmpdir);
	struct alias_conf *c = make_conf(text, NULL);
	struct got g;
	struct pt_status st;
	/* the alias file belongs to us (root or the rootless user): honoured */
	assert_int_equal(expand(c, "archive", &g, &st), 1);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.item[0], "F:/var/spool/archive.mbox");
	assert_string_equal(g.item[1], "C:/usr/bin/logger -t mail");
	assert_int_equal(expand(c, "members", &g, &st), 1);
	assert_int_equal(g.n, 5);
	assert_string_equal(g.item[0], "A:alice");
	assert_string_equal(g.item[1], "A:bob");
	assert_string_equal(g.item[2], "A:gacanepa");
	assert_string_equal(g.item[3], "A:jdoe");
	assert_string_equal(g.item[4], "C:/bin/true");
	assert_int_equal(expand(c, "loopy", &g, &st), -2);
	assert_string_equal(st.dsn, "5.4.6");
	assert_int_equal(expand(c, "missing", &g, &st), -1);
	assert_int_equal(st.code, 451);
	assert_non_null(strstr(st.text, "No such file or directory"));
	assert_int_equal(expand(c, "relative", &g, &st), -2);
	assert_string_equal(st.dsn, "5.3.5");

	if (geteuid() == 0) {
		/* an include file owned by someone else may name addresses only */
		assert_int_equal(chown(inc, 65534, 65534), 0);
		assert_int_equal(expand(c, "members", &g, &st), -2);
		assert_int_equal(st.code, 550);
		assert_string_equal(st.dsn, "5.7.1");
		assert_string_equal(st.text, "mail to command \"/bin/true\" is restricted "
		                    "(the alias file is not owned by root)");
		write_file("members", "alice\n", inc, sizeof(inc));
		assert_int_equal(chown(inc, 65534, 65534), 0);
		assert_int_equal(expand(c, "members", &g, &st), 1);
		assert_string_equal(g.item[0], "A:alice");
		/* the same for the alias file itself */
		assert_int_equal(chown(pt_map_path(pt_map_list_get(c->maps, 0)), 65534, 65534), 0);
		assert_int_equal(pt_map_refresh(pt_map_list_get(c->maps, 0)), 1);
		assert_int_equal(expand(c, "archive", &g, &st), -2);
		assert_string_equal(st.dsn, "5.7.1");
		assert_string_equal(st.text, "mail to file /var/spool/archive.mbox is restricted "
		                    "(the alias file is not owned by root)");
		assert_int_equal(expand(c, "members", &g, &st), -2);
		assert_string_equal(st.dsn, "5.7.1");
		assert_int_equal(expand(c, "sysadmin", &g, &st), 1);
	}
	free_conf(c);
	unlink(inc);
	unlink(inc2);
}

static void
test_unavailable_map_is_temporary(void **state)
{
	(void)state;
	char spec[400];
	snprintf(spec, sizeof(spec), "hash:%s/not-there", tmpdir);
	struct alias_conf c = { 0 };
	c.maps = one_map(spec);
	struct got g;
	struct pt_status st;
	assert_int_equal(expand(&c, "sysadmin", &g, &st), -1);
	assert_int_equal(st.code, 451);
	assert_int_equal(alias_exists(&c, "sysadmin"), -1);
	pt_map_list_close(c.maps);
}

/* ---- delivery to /file and |command ---- */

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

static struct pt_delivery
delivery(const char *sender, const char *data)
{
	struct pt_delivery d = {
		.queue_id = "4F2A1B", .sender = sender, .recipient = "archive@example.com.ar",
		.orig_recipient = "Archive@example.com.ar", .data = data, .len = strlen(data),
		.arrival = 1764310087,
	};
	return d;
}

static void
make_box_dir(char *dir, size_t len)
{
	/* world-writable: when the tests run as root, delivery runs as nobody */
	snprintf(dir, len, "%s/box", tmpdir);
	mkdir(dir, 01777);
	assert_int_equal(chmod(dir, 01777), 0);
}

static void
test_deliver_file(void **state)
{
	(void)state;
	struct alias_conf *c = make_conf("x: y\n", NULL);
	char dir[400], path[500], want[2048];
	make_box_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/archive.mbox", dir);
	unlink(path);
	struct pt_delivery d = delivery("carol@example.com.ar",
	                                "Subject: hi\n\nFrom here on\nbody without newline");
	struct pt_status st = { 0 };
	alias_deliver_special(c, &d, PT_ALIAS_FILE, path, &st);
	assert_int_equal(st.code, 0);
	snprintf(want, sizeof(want), "delivered to file: %s", path);
	assert_string_equal(st.text, want);
	d.sender = "";
	d.data = "Subject: two\n\nsecond\n";
	d.len = strlen(d.data);
	alias_deliver_special(c, &d, PT_ALIAS_FILE, path, &st);
	assert_int_equal(st.code, 0);

	char *got = slurp(path);
	assert_non_null(got);
	/* From_ line with two spaces, envelope headers, >From quoting, blank
	 * line after each message */
	assert_true(strncmp(got, "From carol@example.com.ar  ", 27) == 0);
	const char *rest = strchr(got, '\n') + 1;
	assert_true(strncmp(rest,
		"Return-Path: <carol@example.com.ar>\n"
		"X-Original-To: Archive@example.com.ar\n"
		"Delivered-To: archive@example.com.ar\n"
		"Subject: hi\n\n>From here on\nbody without newline\n\n"
		"From MAILER-DAEMON  ", 180) == 0);
	assert_non_null(strstr(rest, "Return-Path: <>\n"));
	assert_non_null(strstr(rest, "\n\nsecond\n\n"));
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);

	/* errors: a missing directory is permanent, a directory is refused */
	char bad[600];
	snprintf(bad, sizeof(bad), "%s/no/such/dir", tmpdir);
	alias_deliver_special(c, &d, PT_ALIAS_FILE, bad, &st);
	assert_int_equal(st.code, 550);
	assert_string_equal(st.dsn, "5.2.0");
	assert_non_null(strstr(st.text, "No such file or directory"));
	alias_deliver_special(c, &d, PT_ALIAS_FILE, dir, &st);
	assert_true(st.code >= 500);
	alias_deliver_special(c, &d, PT_ALIAS_FILE, "relative/path", &st);
	assert_int_equal(st.code, 550);
	/* a symlink is not followed */
	char link[600];
	snprintf(link, sizeof(link), "%s/link.mbox", dir);
	unlink(link);
	assert_int_equal(symlink(path, link), 0);
	alias_deliver_special(c, &d, PT_ALIAS_FILE, link, &st);
	assert_true(st.code >= 400);
	unlink(link);
	unlink(path);
	free_conf(c);
}

static void
test_deliver_command(void **state)
{
	(void)state;
	struct alias_conf *c = make_conf("x: y\n", NULL);
	char dir[400], out[500], cmd[1200], pwned[500], want[4096];
	make_box_dir(dir, sizeof(dir));
	snprintf(out, sizeof(out), "%s/cmd.out", dir);
	snprintf(pwned, sizeof(pwned), "%s/pwned", dir);
	unlink(out);
	unlink(pwned);
	/* the envelope reaches the command only through the environment */
	char sender[2048];
	snprintf(sender, sizeof(sender), "$(touch %s)`touch %s`@evil.test", pwned, pwned);
	struct pt_delivery d = delivery(sender, "Subject: pipe\n\nline\n");
	snprintf(cmd, sizeof(cmd),
	         "printf '%%s|%%s|%%s|%%s|%%s\\n' \"$SENDER\" \"$RECIPIENT\" \"$ORIGINAL_RECIPIENT\" "
	         "\"$LOCAL\" \"$DOMAIN\" > %s; cat >> %s", out, out);
	struct pt_status st = { 0 };
	alias_deliver_special(c, &d, PT_ALIAS_COMMAND, cmd, &st);
	assert_int_equal(st.code, 0);
	char *got = slurp(out);
	assert_non_null(got);
	snprintf(want, sizeof(want), "%s|archive@example.com.ar|Archive@example.com.ar|archive|"
	         "example.com.ar\nFrom ", sender);
	assert_true(strncmp(got, want, strlen(want)) == 0);
	assert_non_null(strstr(got, "Delivered-To: archive@example.com.ar\nSubject: pipe\n\nline\n"));
	assert_int_equal(access(pwned, F_OK), -1);

	/* EX_TEMPFAIL is temporary, other codes permanent with the output */
	alias_deliver_special(c, &d, PT_ALIAS_COMMAND, "exit 75", &st);
	assert_int_equal(st.code, 450);
	assert_string_equal(st.dsn, "4.3.0");
	alias_deliver_special(c, &d, PT_ALIAS_COMMAND, "echo no such list; exit 1", &st);
	assert_int_equal(st.code, 550);
	assert_string_equal(st.dsn, "5.3.0");
	assert_string_equal(st.text, "Command died with status 1: \"echo no such list; exit 1\". "
	                    "Command output: no such list");
	alias_deliver_special(c, &d, PT_ALIAS_COMMAND, "exit 67", &st);
	assert_string_equal(st.dsn, "5.1.1");
	alias_deliver_special(c, &d, PT_ALIAS_COMMAND, "kill -9 $$", &st);
	assert_int_equal(st.code, 450);
	assert_non_null(strstr(st.text, "signal 9"));

	/* a command that never reads a large message still succeeds */
	size_t big = 2 * 1024 * 1024;
	char *data = malloc(big + 1);
	memset(data, 'x', big);
	for (size_t i = 70; i < big; i += 71)
		data[i] = '\n';
	data[big] = 0;
	struct pt_delivery dbig = delivery("a@b.test", data);
	alias_deliver_special(c, &dbig, PT_ALIAS_COMMAND, "exit 0", &st);
	assert_int_equal(st.code, 0);
	free(data);

	/* the time limit kills the command and its children */
	c->command_time_limit = 1;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	alias_deliver_special(c, &d, PT_ALIAS_COMMAND, "sleep 30 & sleep 30", &st);
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_int_equal(st.code, 550);
	assert_string_equal(st.text, "Command time limit exceeded: \"sleep 30 & sleep 30\"");
	assert_true(b.tv_sec - a.tv_sec < 5);
	unlink(out);
	free_conf(c);
}

static int
setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_alias.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	chmod(tmpdir, 0755);
	static const char text[] = "mydestination = example.com.ar, localhost\n";
	conf = pt_config_parse("test.conf", text, sizeof(text) - 1);
	if (!conf || pt_config_declare_core(conf) != 0 || pt_config_finish(conf) != 0)
		return -1;
	pt_live_conf = conf;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	pt_live_conf = NULL;
	pt_config_free(conf);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_value),
		cmocka_unit_test(test_parse_value_stops_and_truncations),
		cmocka_unit_test(test_include_text),
		cmocka_unit_test(test_seed_examples),
		cmocka_unit_test(test_recursion_and_duplicates),
		cmocka_unit_test(test_loops),
		cmocka_unit_test(test_owner_aliases),
		cmocka_unit_test(test_recipient_delimiter),
		cmocka_unit_test(test_special_destinations_and_include),
		cmocka_unit_test(test_unavailable_map_is_temporary),
		cmocka_unit_test(test_deliver_file),
		cmocka_unit_test(test_deliver_command),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
