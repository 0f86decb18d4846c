/* IMAP FETCH and SEARCH: the FETCH attribute parser (macros, sections,
 * partials, malformed input, every prefix), and both commands run against
 * an in-memory store with replies captured (flags, \Seen, literals,
 * partials, UID variants, messages expunged meanwhile, charsets). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "net.h"
#include "postern/conn.h"
#include "postern/event.h"
#include "imap/imap.h"
#include "imap/imap_fetch.h"

/* ---- a tiny argument builder: atoms (BODY[...]<..> kept whole), quoted
 * strings and lists, as the command reader hands them over ---- */

#define ARGS_MAX 64
struct targs {
	struct imap_arg a[ARGS_MAX];
	size_t n;
	char buf[4096];
	size_t used;
	struct imap_arg pool[ARGS_MAX * 4];
	size_t npool;
};

static const char *
tok_list(struct targs *t, const char *p, struct imap_arg *out, size_t *n, size_t max, char close)
{
	*n = 0;
	while (*p) {
		while (*p == ' ')
			p++;
		if (*p == close || !*p)
			return *p ? p + 1 : p;
		assert_true(*n < max);
		struct imap_arg *a = &out[(*n)++];
		memset(a, 0, sizeof *a);
		if (*p == '(') {
			a->type = IMAP_ARG_LIST;
			a->list = &t->pool[t->npool];
			p = tok_list(t, p + 1, a->list, &a->n, ARGS_MAX, ')');
			t->npool += a->n;
			continue;
		}
		char *dst = t->buf + t->used;
		size_t len = 0;
		if (*p == '"') {
			a->type = IMAP_ARG_STRING;
			for (p++; *p && *p != '"'; p++)
				dst[len++] = *p;
			if (*p)
				p++;
		} else {
			int depth = 0;
			a->type = IMAP_ARG_ATOM;
			while (*p && (depth > 0 || (*p != ' ' && *p != close))) {
				if (*p == '[')
					depth++;
				else if (*p == ']')
					depth--;
				dst[len++] = *p++;
			}
		}
		dst[len] = '\0';
		a->s = dst;
		a->len = len;
		t->used += len + 1;
		if (a->type == IMAP_ARG_ATOM && strcmp(dst, "NIL") == 0)
			a->type = IMAP_ARG_NIL;
	}
	return p;
}

static void
targs_parse(struct targs *t, const char *line)
{
	memset(t, 0, sizeof *t);
	tok_list(t, line, t->a, &t->n, ARGS_MAX, '\0');
}

/* ---- the parser ---- */

static int
fparse(const char *line, int uid, struct imap_fetch_req *r, char *err, size_t errlen)
{
	struct targs t;

	targs_parse(&t, line);
	return imap_fetch_parse(t.a, t.n, uid, r, err, errlen);
}

static void
test_parse_macros(void **state)
{
	(void)state;
	struct imap_fetch_req r;
	char err[128];

	assert_int_equal(fparse("ALL", 0, &r, err, sizeof err), 0);
	assert_int_equal(r.n, 4);
	assert_int_equal(r.items[0].kind, IMAP_FI_FLAGS);
	assert_int_equal(r.items[1].kind, IMAP_FI_INTERNALDATE);
	assert_int_equal(r.items[2].kind, IMAP_FI_SIZE);
	assert_int_equal(r.items[3].kind, IMAP_FI_ENVELOPE);
	assert_true(r.needs_parse);
	assert_false(r.sets_seen);
	imap_fetch_req_free(&r);

	assert_int_equal(fparse("fast", 0, &r, err, sizeof err), 0);
	assert_int_equal(r.n, 3);
	assert_false(r.needs_text);
	imap_fetch_req_free(&r);

	assert_int_equal(fparse("FULL", 0, &r, err, sizeof err), 0);
	assert_int_equal(r.n, 5);
	assert_int_equal(r.items[4].kind, IMAP_FI_BODY);
	assert_string_equal(r.items[4].name, "BODY");
	imap_fetch_req_free(&r);

	/* Macros stand alone (RFC 3501 §6.4.5 grammar), not inside a list. */
	assert_int_equal(fparse("(ALL)", 0, &r, err, sizeof err), -1);
	assert_string_equal(err, "Unknown FETCH attribute ALL");
	assert_int_equal(r.n, 0);
}

static void
test_parse_uid_first_once(void **state)
{
	(void)state;
	struct imap_fetch_req r;
	char err[128];

	assert_int_equal(fparse("(FLAGS UID FLAGS)", 1, &r, err, sizeof err), 0);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.items[0].kind, IMAP_FI_UID);
	assert_int_equal(r.items[1].kind, IMAP_FI_FLAGS);
	assert_true(r.want_uid);
	assert_true(r.want_flags);
	imap_fetch_req_free(&r);

	assert_int_equal(fparse("RFC822.SIZE", 0, &r, err, sizeof err), 0);
	assert_int_equal(r.n, 1);
	assert_false(r.want_uid);
	assert_string_equal(r.items[0].name, "RFC822.SIZE");
	imap_fetch_req_free(&r);
}

static void
test_parse_sections(void **state)
{
	(void)state;
	struct imap_fetch_req r;
	char err[128];

	assert_int_equal(fparse("(BODY[] BODY.PEEK[HEADER.FIELDS (From To)]<0.100> body[1.2.mime])", 0,
	                        &r, err, sizeof err), 0);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.items[0].kind, IMAP_FI_SECTION);
	assert_string_equal(r.items[0].name, "BODY[]");
	assert_false(r.items[0].peek);
	assert_int_equal(r.items[0].sec.kind, IMAP_SEC_ALL);
	assert_int_equal(r.items[1].sec.kind, IMAP_SEC_HEADER_FIELDS);
	assert_int_equal(r.items[1].sec.nfields, 2);
	assert_true(r.items[1].peek);
	assert_true(r.items[1].partial);
	assert_int_equal(r.items[1].off, 0);
	assert_int_equal(r.items[1].count, 100);
	/* The reply names the section as asked, PEEK dropped, origin only. */
	assert_string_equal(r.items[1].name, "BODY[HEADER.FIELDS (FROM TO)]<0>");
	assert_string_equal(r.items[2].name, "BODY[1.2.MIME]");
	assert_int_equal(r.items[2].sec.kind, IMAP_SEC_MIME);
	assert_int_equal(r.items[2].sec.nparts, 2);
	assert_true(r.sets_seen);
	assert_true(r.needs_parse);
	imap_fetch_req_free(&r);

	/* Plain BODY[]/HEADER/TEXT need no MIME parse. */
	assert_int_equal(fparse("(BODY.PEEK[HEADER] BODY.PEEK[TEXT]<10.5>)", 0, &r, err, sizeof err), 0);
	assert_true(r.needs_text);
	assert_false(r.needs_parse);
	assert_false(r.sets_seen);
	assert_string_equal(r.items[1].name, "BODY[TEXT]<10>");
	imap_fetch_req_free(&r);
}

static void
test_parse_rfc822_seen_rules(void **state)
{
	(void)state;
	struct imap_fetch_req r;
	char err[128];

	assert_int_equal(fparse("RFC822.HEADER", 0, &r, err, sizeof err), 0);
	assert_false(r.sets_seen);
	assert_true(r.needs_text);
	imap_fetch_req_free(&r);
	assert_int_equal(fparse("RFC822.TEXT", 0, &r, err, sizeof err), 0);
	assert_true(r.sets_seen);
	imap_fetch_req_free(&r);
	assert_int_equal(fparse("RFC822", 0, &r, err, sizeof err), 0);
	assert_true(r.sets_seen);
	imap_fetch_req_free(&r);
	assert_int_equal(fparse("BODY.PEEK[]", 0, &r, err, sizeof err), 0);
	assert_false(r.sets_seen);
	imap_fetch_req_free(&r);
	/* BODY[] and BODY.PEEK[] together: one reply item, and it reads. */
	assert_int_equal(fparse("(BODY.PEEK[] BODY[])", 0, &r, err, sizeof err), 0);
	assert_int_equal(r.n, 1);
	assert_true(r.sets_seen);
	imap_fetch_req_free(&r);
}

static void
test_parse_errors(void **state)
{
	(void)state;
	static const struct {
		const char *line, *err;
	} bad[] = {
		{ "FOO", "Unknown FETCH attribute FOO" },
		{ "(FLAGS BODY.PEK[])", "Unknown FETCH attribute BODY.PEK[]" },
		{ "BODY[", "Invalid BODY[..] parameter: Missing ']'" },
		{ "BODY[HEADER.FIELDS (From]", "Invalid BODY[..] parameter: Missing ']'" },
		{ "BODY[]<0.0>", "Invalid BODY[..] parameter: Invalid partial" },
		{ "BODY[]<1>", "Invalid BODY[..] parameter: Invalid partial" },
		{ "BODY[]<a.b>", "Invalid BODY[..] parameter: Invalid partial" },
		{ "BODY[]<4294967296.1>", "Invalid BODY[..] parameter: Invalid partial" },
		{ "BODY[]<1.2", "Invalid BODY[..] parameter: Invalid partial" },
		{ "BODY[]x", "Invalid BODY[..] parameter: Invalid partial" },
		{ "BODY[XYZ]", "Invalid BODY[..] parameter: Unknown section name" },
		{ "BODY[0]", "Invalid BODY[..] parameter: Unknown section name" },
		{ "()", "Invalid arguments." },
		{ "(FLAGS (UID))", "Invalid arguments." },
		{ "(FLAGS \"UID\")", "Invalid arguments." },
		{ "\"FLAGS\"", "Invalid arguments." },
		{ "FLAGS UID", "Invalid arguments." },
		{ "", "Invalid arguments." },
		{ "NIL", "Invalid arguments." },
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct imap_fetch_req r;
		char err[128] = "";

		assert_int_equal(fparse(bad[i].line, i % 2, &r, err, sizeof err), -1);
		if (strcmp(err, bad[i].err) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", bad[i].line, err, bad[i].err);
		assert_int_equal(r.n, 0);
		assert_null(r.items);
	}
	/* Unprintable bytes in an unknown name are not echoed raw. */
	{
		struct imap_arg a = { .type = IMAP_ARG_ATOM, .s = "X\x01\xff", .len = 3 };
		struct imap_fetch_req r;
		char err[128];

		assert_int_equal(imap_fetch_parse(&a, 1, 0, &r, err, sizeof err), -1);
		assert_string_equal(err, "Unknown FETCH attribute X??");
	}
}

/* Every prefix of valid attributes: parses or fails cleanly, never reads
 * past the given length (ASan checks the copies are exact). */
static void
test_parse_every_prefix(void **state)
{
	(void)state;
	static const char *items[] = {
		"BODY.PEEK[HEADER.FIELDS.NOT (X-A \"Y]\")]<12.34>", "BODY[1.2.3.HEADER]",
		"RFC822.SIZE", "BODYSTRUCTURE", "BODY[2.TEXT]<0.1>", "INTERNALDATE",
	};

	for (size_t k = 0; k < sizeof items / sizeof items[0]; k++) {
		size_t len = strlen(items[k]);
		for (size_t cut = 0; cut <= len; cut++) {
			char *copy = malloc(cut + 1);
			struct imap_fetch_req r;
			char err[128];

			memcpy(copy, items[k], cut);
			copy[cut] = '\0';
			struct imap_arg a = { .type = IMAP_ARG_ATOM, .s = copy, .len = cut };
			int rc = imap_fetch_parse(&a, 1, 0, &r, err, sizeof err);
			assert_true(rc == 0 || rc == -1);
			if (cut == len)
				assert_int_equal(rc, 0);
			if (rc == 0)
				imap_fetch_req_free(&r);
			free(copy);
		}
	}
}

static void
test_parse_item_limit(void **state)
{
	(void)state;
	struct imap_arg list[200], arg = { .type = IMAP_ARG_LIST, .list = list, .n = 200 };
	char names[200][24];
	struct imap_fetch_req r;
	char err[128];

	for (size_t i = 0; i < 200; i++) {
		snprintf(names[i], sizeof names[i], "BODY.PEEK[%zu]", i + 1);
		list[i] = (struct imap_arg){ .type = IMAP_ARG_ATOM, .s = names[i], .len = strlen(names[i]) };
	}
	assert_int_equal(imap_fetch_parse(&arg, 1, 0, &r, err, sizeof err), -1);
	assert_string_equal(err, "Too many FETCH attributes");
	arg.n = 100;
	assert_int_equal(imap_fetch_parse(&arg, 1, 0, &r, err, sizeof err), 0);
	assert_int_equal(r.n, 100);
	imap_fetch_req_free(&r);
}

/* ---- an in-memory store behind pt_mailbox_ops ---- */

struct fmsg {
	uint32_t uid;
	uint32_t flags;
	uint64_t kw;
	const char *text;             /* CRLF wire form */
	int present;                  /* 0: expunged by "another session" */
};
static struct fmsg fstore[4];
static size_t nfstore;
static struct pt_msg_info finfo[4];
static unsigned freads, freleases, fset_calls;
static const char *fkeywords[] = { "$Important", "work" };

static const char MSG1[] =
	"From: Alice <alice@example.com>\r\n"
	"To: bob@example.com\r\n"
	"Subject: hello there\r\n"
	"Date: Sat, 28 Nov 2026 06:08:07 +0000\r\n"
	"Message-ID: <m1@example.com>\r\n"
	"\r\n"
	"Hello body\r\n"
	"line two\r\n";
static const char MSG2[] =
	"From: Carol <carol@example.org>\r\n"
	"To: alice@example.com\r\n"
	"Subject: report\r\n"
	"Date: Mon, 02 Mar 2026 10:00:00 +0100\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--XX\r\n"
	"Content-Type: text/plain; charset=us-ascii\r\n"
	"\r\n"
	"the text part\r\n"
	"--XX\r\n"
	"Content-Type: application/octet-stream\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"AAEC\r\n"
	"--XX--\r\n";
static const char MSG3[] =
	"From: bob@example.com\r\n"
	"Subject: third\r\n"
	"\r\n"
	"zebra\r\n";

static size_t
f_list_index(size_t i)
{
	/* the store's list holds only present messages */
	for (size_t j = 0, k = 0; j < nfstore; j++) {
		if (!fstore[j].present)
			continue;
		if (k++ == i)
			return j;
	}
	return (size_t)-1;
}

static uint32_t fexpunge_at_sync;   /* another session expunges this UID "now" */

static int
f_sync(struct pt_mbox *mb, int *changed, struct pt_status *st)
{
	(void)mb, (void)st;
	*changed = 0;
	for (size_t j = 0; j < nfstore; j++)
		if (fexpunge_at_sync && fstore[j].uid == fexpunge_at_sync)
			fstore[j].present = 0, *changed = 1;
	fexpunge_at_sync = 0;
	return 0;
}

static size_t
f_count(const struct pt_mbox *mb)
{
	size_t n = 0;
	(void)mb;
	for (size_t j = 0; j < nfstore; j++)
		n += fstore[j].present;
	return n;
}

static const struct pt_msg_info *
f_info(const struct pt_mbox *mb, size_t i)
{
	size_t j = f_list_index(i);
	(void)mb;
	assert_true(j != (size_t)-1);
	finfo[j].uid = fstore[j].uid;
	finfo[j].flags = fstore[j].flags;
	finfo[j].keywords = fstore[j].kw;
	finfo[j].size = strlen(fstore[j].text);
	finfo[j].internal_date = 1795846087 + (time_t)j * 86400; /* 2026-11-28 06:08:07 UTC */
	finfo[j].tz_minutes = j == 1 ? 60 : 0;
	return &finfo[j];
}

static size_t
f_find(const struct pt_mbox *mb, uint32_t uid)
{
	(void)mb;
	for (size_t j = 0, k = 0; j < nfstore; j++) {
		if (!fstore[j].present)
			continue;
		if (fstore[j].uid == uid)
			return k;
		k++;
	}
	return (size_t)-1;
}

static uint32_t f_uidvalidity(const struct pt_mbox *mb) { (void)mb; return 1234; }
static uint32_t f_uidnext(const struct pt_mbox *mb) { (void)mb; return 20; }
static size_t f_keyword_count(const struct pt_mbox *mb) { (void)mb; return 2; }

static const char *
f_keyword_name(const struct pt_mbox *mb, size_t i)
{
	(void)mb;
	return i < 2 ? fkeywords[i] : NULL;
}

static int
f_keyword_index(struct pt_mbox *mb, const char *name, int create)
{
	(void)mb, (void)create;
	for (int i = 0; i < 2; i++)
		if (strcasecmp(fkeywords[i], name) == 0)
			return i;
	return -1;
}

static int
f_read(struct pt_mbox *mb, uint32_t uid, struct pt_msg_text *out, struct pt_status *st)
{
	(void)mb;
	freads++;
	for (size_t j = 0; j < nfstore; j++) {
		if (fstore[j].uid != uid || !fstore[j].present)
			continue;
		const char *end = strstr(fstore[j].text, "\r\n\r\n");
		/* a copy, so ASan sees any read past the message */
		size_t len = strlen(fstore[j].text);
		char *copy = malloc(len ? len : 1);
		memcpy(copy, fstore[j].text, len);
		out->data = copy;
		out->len = len;
		out->hdr_len = end ? (size_t)(end - fstore[j].text) + 4 : len;
		out->priv = copy;
		return 0;
	}
	pt_status_set(st, 550, "", "Message expunged");
	return -1;
}

static void
f_release(struct pt_mbox *mb, struct pt_msg_text *t)
{
	(void)mb;
	free(t->priv);
	t->priv = NULL;
}

static int
f_set_flags(struct pt_mbox *mb, const struct pt_flag_update *u, size_t n, struct pt_status *st)
{
	(void)mb, (void)st;
	fset_calls++;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < nfstore; j++)
			if (fstore[j].uid == u[i].uid)
				fstore[j].flags = (fstore[j].flags & ~PT_F_SYSTEM) | u[i].flags,
				fstore[j].kw = u[i].keywords;
	return 0;
}

static const struct pt_mailbox_ops fops = {
	.sync = f_sync, .count = f_count, .info = f_info, .find = f_find,
	.uidvalidity = f_uidvalidity, .uidnext = f_uidnext, .keyword_count = f_keyword_count,
	.keyword_name = f_keyword_name, .keyword_index = f_keyword_index, .read = f_read,
	.release = f_release, .set_flags = f_set_flags,
};

struct fixture {
	struct imap_session s;
	struct pt_strbuf out;
	struct pt_msg_brief *view;   /* malloc'd: sync may grow it */
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	nfstore = 3;
	fstore[0] = (struct fmsg){ 3, PT_F_RECENT, 0, MSG1, 1 };
	fstore[1] = (struct fmsg){ 7, PT_F_RECENT | PT_F_FLAGGED, 2, MSG2, 1 };
	fstore[2] = (struct fmsg){ 9, PT_F_SEEN, 1, MSG3, 1 };
	freads = fset_calls = 0;
	fexpunge_at_sync = 0;
	f->view = calloc(4, sizeof *f->view);
	for (size_t j = 0; j < nfstore; j++)
		f->view[j] = (struct pt_msg_brief){ fstore[j].uid, fstore[j].flags, fstore[j].kw, 1 };
	f->s.state = IMAP_SELECTED;
	f->s.mbx = &fops;
	f->s.mb = (struct pt_mbox *)&fstore;  /* opaque to the code under test */
	f->s.selected = "INBOX";
	f->s.view = f->view;
	f->s.nview = 3;
	f->s.capview = 4;
	f->s.uid_seen_max = 9;
	f->s.nkeywords_sent = 2;
	f->s.uidvalidity = 1234;
	f->s.capture = &f->out;
	snprintf(f->s.user.name, sizeof f->s.user.name, "alice");
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	assert_null(f->s.cont);
	pt_strbuf_free(&f->out);
	free(f->s.view);
	free(f->s.ghosts);
	free(f);
	return 0;
}

/* Run one command line ("FETCH 1 FLAGS") and return the captured reply. */
static const char *
run(struct fixture *f, const char *line)
{
	struct targs t;
	int uid = strncmp(line, "UID ", 4) == 0;
	const char *rest = line + (uid ? 4 : 0);
	int fetch = strncmp(rest, "FETCH", 5) == 0;

	pt_strbuf_free(&f->out);
	memset(&f->out, 0, sizeof f->out);
	targs_parse(&t, rest + (fetch ? 5 : 6));
	if (fetch)
		imap_cmd_fetch(&f->s, "a1", t.a, t.n, uid);
	else
		imap_cmd_search(&f->s, "a1", t.a, t.n, uid);
	assert_false(f->out.oom);
	return f->out.p ? f->out.p : "";
}

static void
expect(const char *got, const char *want)
{
	if (strcmp(got, want) != 0)
		fail_msg("reply differs:\n--- got\n%s--- want\n%s", got, want);
}

#define OK_FETCH "a1 OK Fetch completed ("
/* Dovecot 2.3's answer when an item of a gone message was NIL or left out */
#define OK_EXPUNGED "a1 OK [EXPUNGEISSUED] Some messages were already expunged ("
#define OK_SEARCH "a1 OK Search completed ("

static void
expect_prefix_ok(const char *got, const char *body, const char *ok)
{
	size_t bl = strlen(body);

	if (strncmp(got, body, bl) != 0 || strncmp(got + bl, ok, strlen(ok)) != 0)
		fail_msg("reply differs:\n--- got\n%s--- want\n%s%s...", got, body, ok);
}

static void
test_fetch_flags_size_date_uid(void **state)
{
	struct fixture *f = *state;
	char want[1024];

	snprintf(want, sizeof want,
	         "* 1 FETCH (FLAGS (\\Recent) RFC822.SIZE %zu INTERNALDATE \"28-Nov-2026 06:08:07 +0000\")\r\n"
	         "* 2 FETCH (FLAGS (\\Flagged \\Recent work) RFC822.SIZE %zu INTERNALDATE \"29-Nov-2026 07:08:07 +0100\")\r\n",
	         strlen(MSG1), strlen(MSG2));
	expect_prefix_ok(run(f, "FETCH 1:2 (FLAGS RFC822.SIZE INTERNALDATE)"), want, OK_FETCH);
	assert_int_equal(freads, 0);   /* no text needed, none read */

	/* UID FETCH answers with UID first, even when not asked. */
	expect_prefix_ok(run(f, "UID FETCH 7:* FLAGS"),
	                 "* 2 FETCH (UID 7 FLAGS (\\Flagged \\Recent work))\r\n"
	                 "* 3 FETCH (UID 9 FLAGS (\\Seen $Important))\r\n", OK_FETCH);
	/* UIDs that do not exist: nothing, and OK. */
	expect_prefix_ok(run(f, "UID FETCH 4:6,100 FLAGS"), "", OK_FETCH);
	expect_prefix_ok(run(f, "FETCH 3 UID"), "* 3 FETCH (UID 9)\r\n", OK_FETCH);
}

static void
test_fetch_body_sets_seen(void **state)
{
	struct fixture *f = *state;
	const char *text = strstr(MSG1, "\r\n\r\n") + 4;
	char want[1024];

	snprintf(want, sizeof want, "* 1 FETCH (FLAGS (\\Seen \\Recent) BODY[TEXT] {%zu}\r\n%s)\r\n",
	         strlen(text), text);
	expect_prefix_ok(run(f, "FETCH 1 BODY[TEXT]"), want, OK_FETCH);
	assert_true(fstore[0].flags & PT_F_SEEN);
	assert_true(f->view[0].flags & PT_F_SEEN);
	assert_int_equal(fset_calls, 1);
	/* Already seen: no FLAGS, no store write. */
	snprintf(want, sizeof want, "* 1 FETCH (BODY[TEXT] {%zu}\r\n%s)\r\n", strlen(text), text);
	expect_prefix_ok(run(f, "FETCH 1 BODY[TEXT]"), want, OK_FETCH);
	assert_int_equal(fset_calls, 1);
	assert_int_equal(f->s.fetch_body_count, 2);
}

static void
test_fetch_seen_with_uid_and_flags_asked(void **state)
{
	struct fixture *f = *state;
	char want[1024];

	/* UID FETCH: the implicit FLAGS follows UID. */
	snprintf(want, sizeof want, "* 1 FETCH (UID 3 FLAGS (\\Seen \\Recent) RFC822 {%zu}\r\n%s)\r\n",
	         strlen(MSG1), MSG1);
	expect_prefix_ok(run(f, "UID FETCH 3 RFC822"), want, OK_FETCH);
	/* FLAGS asked: it shows the new state in its place, once. */
	size_t hl = (size_t)(strstr(MSG2, "\r\n\r\n") + 4 - MSG2);
	snprintf(want, sizeof want,
	         "* 2 FETCH (RFC822.SIZE %zu FLAGS (\\Flagged \\Seen \\Recent work) RFC822.HEADER {%zu}\r\n%.*s"
	         " RFC822.TEXT {%zu}\r\n%s)\r\n",
	         strlen(MSG2), hl, (int)hl, MSG2, strlen(MSG2) - hl, MSG2 + hl);
	expect_prefix_ok(run(f, "FETCH 2 (RFC822.SIZE FLAGS RFC822.HEADER RFC822.TEXT)"), want, OK_FETCH);
	assert_int_equal(f->s.fetch_hdr_count, 1);
}

static void
test_fetch_peek_and_readonly_leave_unseen(void **state)
{
	struct fixture *f = *state;

	run(f, "FETCH 1:2 (BODY.PEEK[] BODY.PEEK[TEXT] RFC822.HEADER)");
	assert_false(fstore[0].flags & PT_F_SEEN);
	assert_false(fstore[1].flags & PT_F_SEEN);
	assert_int_equal(fset_calls, 0);
	f->s.readonly = 1;
	const char *got = run(f, "FETCH 1 BODY[]");
	assert_null(strstr(got, "FLAGS"));
	assert_false(fstore[0].flags & PT_F_SEEN);
	assert_int_equal(fset_calls, 0);
}

static void
test_fetch_partial(void **state)
{
	struct fixture *f = *state;
	char want[1024];

	snprintf(want, sizeof want, "* 1 FETCH (BODY[]<6> {10}\r\n%.10s)\r\n", MSG1 + 6);
	expect_prefix_ok(run(f, "FETCH 1 BODY.PEEK[]<6.10>"), want, OK_FETCH);
	/* count beyond the end is cut; origin beyond the end gives "". */
	snprintf(want, sizeof want, "* 3 FETCH (BODY[TEXT]<3> {4}\r\nra\r\n BODY[]<5000> \"\")\r\n");
	expect_prefix_ok(run(f, "FETCH 3 (BODY.PEEK[TEXT]<3.100> BODY.PEEK[]<5000.10>)"), want, OK_FETCH);
}

static void
test_fetch_structure_and_sections(void **state)
{
	struct fixture *f = *state;
	const char *got;

	got = run(f, "FETCH 2 (BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[HEADER.FIELDS (Subject)])");
	assert_non_null(strstr(got, "* 2 FETCH (BODYSTRUCTURE (("));
	if (!strcasestr(got, "\"mixed\" (\"boundary\" \"XX\")")) fail_msg("%s", got);
	assert_non_null(strstr(got, " BODY[1] {13}\r\nthe text part "));
	assert_non_null(strstr(got, " BODY[HEADER.FIELDS (SUBJECT)] {19}\r\nSubject: report\r\n\r\n)\r\n"));
	got = run(f, "FETCH 1 ENVELOPE");
	assert_non_null(strstr(got, "* 1 FETCH (ENVELOPE (\"Sat, 28 Nov 2026 06:08:07 +0000\" \"hello there\" "
	                            "((\"Alice\" NIL \"alice\" \"example.com\"))"));
	/* A part that does not exist is empty, not an error. */
	expect_prefix_ok(run(f, "FETCH 3 BODY.PEEK[4]"), "* 3 FETCH (BODY[4] \"\")\r\n", OK_FETCH);
}

static void
test_fetch_errors(void **state)
{
	struct fixture *f = *state;

	expect(run(f, "FETCH 4 FLAGS"), "a1 BAD Error in IMAP command FETCH: Invalid messageset\r\n");
	expect(run(f, "FETCH 1:x FLAGS"), "a1 BAD Error in IMAP command FETCH: Invalid messageset\r\n");
	expect(run(f, "FETCH 1 FOO"), "a1 BAD Error in IMAP command FETCH: Unknown FETCH attribute FOO\r\n");
	expect(run(f, "UID FETCH 1"), "a1 BAD Error in IMAP command UID FETCH: Invalid arguments.\r\n");
	expect(run(f, "FETCH (FLAGS) 1"), "a1 BAD Error in IMAP command FETCH: Invalid arguments.\r\n");
	expect(run(f, "FETCH 1 (FLAGS) (X)"), "a1 BAD Error in IMAP command FETCH: Invalid fetch modifiers.\r\n");
	assert_int_equal(fset_calls, 0);
	f->s.state = IMAP_AUTH;
	expect(run(f, "FETCH 1 FLAGS"), "a1 BAD No mailbox selected.\r\n");
	expect(run(f, "SEARCH ALL"), "a1 BAD No mailbox selected.\r\n");
}

static void
test_fetch_expunged_meanwhile(void **state)
{
	struct fixture *f = *state;
	const char *got;

	fstore[1].present = 0;   /* another session expunged UID 7 */
	got = run(f, "FETCH 1:3 (UID BODY[TEXT])");
	assert_non_null(strstr(got, "* 1 FETCH (UID 3 FLAGS (\\Seen \\Recent) BODY[TEXT]"));
	assert_non_null(strstr(got, "* 3 FETCH (UID 9 BODY[TEXT] {7}\r\nzebra\r\n)\r\n"));
	/* its text is gone: NIL (RFC 2180 §4.1.3), and the command is OK */
	assert_non_null(strstr(got, "* 2 FETCH (UID 7 BODY[TEXT] NIL)\r\n"));
	/* no EXPUNGE during FETCH (RFC 3501 §7.4.1); the view keeps it */
	assert_null(strstr(got, "EXPUNGE\r\n"));
	assert_int_equal(f->s.nview, 3);
	assert_non_null(strstr(got, OK_EXPUNGED));
	/* structure items cannot be NIL: left out; nothing left, no line */
	expect_prefix_ok(run(f, "FETCH 2:3 (BODY.PEEK[HEADER]<0.3> ENVELOPE)"),
	                 "* 2 FETCH (BODY[HEADER]<0> NIL)\r\n", "");
	got = run(f, "FETCH 2 BODYSTRUCTURE");
	assert_true(strncmp(got, OK_EXPUNGED, strlen(OK_EXPUNGED)) == 0);
	/* Without its text, what the view knows is still answered, as Dovecot. */
	expect_prefix_ok(run(f, "FETCH 2 (UID FLAGS)"), "* 2 FETCH (UID 7 FLAGS (\\Flagged \\Recent work))\r\n",
	                 OK_FETCH);
	/* size and date of a message gone before this command are not known:
	 * left out, the rest answered */
	expect_prefix_ok(run(f, "FETCH 2:3 RFC822.SIZE"), "* 3 FETCH (RFC822.SIZE 48)\r\n", OK_EXPUNGED);
	expect_prefix_ok(run(f, "FETCH 2 (INTERNALDATE UID)"), "* 2 FETCH (UID 7)\r\n", OK_EXPUNGED);
	/* SEARCH knows nothing of it here (no size or date was ever seen):
	 * leaves it out, says so with [EXPUNGEISSUED], and does not expunge
	 * either. */
	got = run(f, "SEARCH ALL");
	assert_non_null(strstr(got, "* SEARCH 1 3\r\n"));
	assert_null(strstr(got, " EXPUNGE\r\n"));
	assert_non_null(strstr(got, " OK [EXPUNGEISSUED] Search completed"));
}

/* Expunged by the sync this very command runs: size and date come from
 * what the store knew just before. */
static void
test_fetch_expunged_at_sync_answers_from_before(void **state)
{
	struct fixture *f = *state;
	char want[256];

	fexpunge_at_sync = 7;
	snprintf(want, sizeof want, "* 2 FETCH (UID 7 RFC822.SIZE %zu INTERNALDATE \"29-Nov-2026 07:08:07 +0100\")\r\n",
	         strlen(MSG2));
	expect_prefix_ok(run(f, "FETCH 2 (UID RFC822.SIZE INTERNALDATE)"), want, OK_FETCH);
	assert_int_equal(f->s.nview, 3);
	/* its text is gone: NIL; size and date were kept from the earlier
	 * command's sync until the EXPUNGE goes out */
	snprintf(want, sizeof want, "* 2 FETCH (RFC822.SIZE %zu UID 7 INTERNALDATE \"29-Nov-2026 07:08:07 +0100\" "
	         "BODY[] NIL)\r\n", strlen(MSG2));
	expect_prefix_ok(run(f, "FETCH 2 (RFC822.SIZE UID INTERNALDATE BODY.PEEK[])"), want, OK_EXPUNGED);
	assert_non_null(imap_view_ghost(&f->s, 7));
	/* the EXPUNGE (a sync that may send it, as at NOOP) forgets it */
	imap_sync(&f->s, 1);
	assert_int_equal(f->s.nview, 2);
	assert_null(imap_view_ghost(&f->s, 7));
	assert_int_equal(f->s.nghosts, 0);
}

/* Text asked for a message the command's own sync finds expunged: body
 * sections NIL, size and date from before, the others in full, OK. */
static void
test_fetch_text_expunged_at_sync(void **state)
{
	struct fixture *f = *state;
	char want[256];
	const char *got;

	fexpunge_at_sync = 7;
	got = run(f, "FETCH 2:3 (RFC822.SIZE BODY.PEEK[TEXT])");
	snprintf(want, sizeof want, "* 2 FETCH (RFC822.SIZE %zu BODY[TEXT] NIL)\r\n", strlen(MSG2));
	assert_true(strncmp(got, want, strlen(want)) == 0);
	assert_non_null(strstr(got, "* 3 FETCH (RFC822.SIZE 48 BODY[TEXT] {7}\r\nzebra\r\n)\r\n"));
	assert_non_null(strstr(got, OK_EXPUNGED));
	assert_null(strstr(got, " EXPUNGE\r\n"));
}

static void
test_flags_changed_elsewhere_told(void **state)
{
	struct fixture *f = *state;

	/* Another session flagged UID 9: FETCH tells it (once). */
	fstore[2].flags |= PT_F_FLAGGED;
	const char *got = run(f, "FETCH 1 UID");
	expect_prefix_ok(got, "* 3 FETCH (FLAGS (\\Flagged \\Seen $Important))\r\n* 1 FETCH (UID 3)\r\n",
	                 OK_FETCH);
	expect_prefix_ok(run(f, "FETCH 1 UID"), "* 1 FETCH (UID 3)\r\n", OK_FETCH);
	/* and SEARCH sees the new state */
	fstore[0].flags |= PT_F_FLAGGED;
	expect_prefix_ok(run(f, "SEARCH FLAGGED"),
	                 "* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n* SEARCH 1 2 3\r\n", OK_SEARCH);
}

static void
test_search_basic(void **state)
{
	struct fixture *f = *state;

	expect_prefix_ok(run(f, "SEARCH ALL"), "* SEARCH 1 2 3\r\n", OK_SEARCH);
	expect_prefix_ok(run(f, "UID SEARCH ALL"), "* SEARCH 3 7 9\r\n", OK_SEARCH);
	expect_prefix_ok(run(f, "SEARCH FLAGGED"), "* SEARCH 2\r\n", OK_SEARCH);
	expect_prefix_ok(run(f, "SEARCH UNSEEN NOT FLAGGED"), "* SEARCH 1\r\n", OK_SEARCH);
	expect_prefix_ok(run(f, "SEARCH OR SEEN FLAGGED"), "* SEARCH 2 3\r\n", OK_SEARCH);
	expect_prefix_ok(run(f, "SEARCH KEYWORD work"), "* SEARCH 2\r\n", OK_SEARCH);
	expect_prefix_ok(run(f, "SEARCH KEYWORD nosuch"), "* SEARCH\r\n", OK_SEARCH);
	expect_prefix_ok(run(f, "UID SEARCH UID 4:9 RECENT"), "* SEARCH 7\r\n", OK_SEARCH);
	expect_prefix_ok(run(f, "SEARCH 2:*"), "* SEARCH 2 3\r\n", OK_SEARCH);
	/* flag keys never read a message */
	assert_int_equal(freads, 0);
}

static void
test_search_text_keys_load_lazily(void **state)
{
	struct fixture *f = *state;

	expect_prefix_ok(run(f, "SEARCH SUBJECT hello"), "* SEARCH 1\r\n", OK_SEARCH);
	assert_int_equal(freads, 3);
	expect_prefix_ok(run(f, "SEARCH CHARSET UTF-8 BODY zebra"), "* SEARCH 3\r\n", OK_SEARCH);
	expect_prefix_ok(run(f, "SEARCH charset us-ascii FROM carol"), "* SEARCH 2\r\n", OK_SEARCH);
	expect_prefix_ok(run(f, "UID SEARCH TEXT \"text part\""), "* SEARCH 7\r\n", OK_SEARCH);
	expect_prefix_ok(run(f, "SEARCH HEADER Message-ID m1@"), "* SEARCH 1\r\n", OK_SEARCH);
	/* NIL is plain text wherever SEARCH wants a string, lists included */
	expect_prefix_ok(run(f, "SEARCH SUBJECT NIL"), "* SEARCH\r\n", OK_SEARCH);
	expect_prefix_ok(run(f, "SEARCH OR (SUBJECT NIL) (BODY NIL)"), "* SEARCH\r\n", OK_SEARCH);
	expect_prefix_ok(run(f, "SEARCH NOT (FROM NIL)"), "* SEARCH 1 2 3\r\n", OK_SEARCH);
	freads = 0;
	/* a cheap key that fails first may spare the read, never more reads
	 * than messages */
	run(f, "SEARCH FLAGGED BODY text");
	assert_true(freads <= 3);
}

static void
test_search_errors(void **state)
{
	struct fixture *f = *state;

	expect(run(f, "SEARCH CHARSET KOI8-R ALL"), "a1 NO [BADCHARSET (US-ASCII UTF-8)] Unknown charset\r\n");
	expect(run(f, "SEARCH CHARSET UTF-8"), "a1 BAD Error in IMAP command SEARCH: Invalid arguments.\r\n");
	expect(run(f, "SEARCH"), "a1 BAD Error in IMAP command SEARCH: Missing SEARCH arguments.\r\n");
	const char *got = run(f, "UID SEARCH FOO");
	assert_true(strncmp(got, "a1 BAD Error in IMAP command UID SEARCH: ", 41) == 0);
	assert_null(strstr(got, "* SEARCH"));
}

/* ---- streaming over a real connection: a reply far beyond the conn's
 * output cap goes out in pieces as the client reads ---- */

#define BIG_N 100000
#define BIG_BOUND (256 * 1024 + 64 * 1024 + 4096)  /* high water + one chunk + a line */
static char *big_text;
static size_t big_len;
static const char small_text[] = "Subject: s\r\n\r\nx\r\n";
static struct pt_msg_info big_info;

static size_t b_count(const struct pt_mbox *mb) { (void)mb; return BIG_N; }
static const struct pt_msg_info *
b_info(const struct pt_mbox *mb, size_t i)
{
	(void)mb;
	big_info = (struct pt_msg_info){ .uid = (uint32_t)i + 1, .flags = PT_F_SEEN,
		.size = i == 0 ? big_len : strlen(small_text), .internal_date = 1795846087 };
	return &big_info;
}
static size_t
b_find(const struct pt_mbox *mb, uint32_t uid)
{
	(void)mb;
	return uid >= 1 && uid <= BIG_N ? uid - 1 : (size_t)-1;
}
static int
b_read(struct pt_mbox *mb, uint32_t uid, struct pt_msg_text *out, struct pt_status *st)
{
	(void)mb, (void)st;
	freads++;
	out->data = uid == 1 ? big_text : small_text;
	out->len = uid == 1 ? big_len : strlen(small_text);
	out->hdr_len = uid == 1 ? 4 : 14;
	out->priv = NULL;
	return 0;
}
static void b_release(struct pt_mbox *mb, struct pt_msg_text *t) { (void)mb, (void)t; freleases++; }
static size_t b_keyword_count(const struct pt_mbox *mb) { (void)mb; return 0; }

static const struct pt_mailbox_ops bops = {
	.sync = f_sync, .count = b_count, .info = b_info, .find = b_find,
	.uidvalidity = f_uidvalidity, .uidnext = f_uidnext, .keyword_count = b_keyword_count,
	.keyword_name = f_keyword_name, .keyword_index = f_keyword_index, .read = b_read,
	.release = b_release, .set_flags = f_set_flags,
};

struct stream_fixture {
	struct imap_session s;
	struct pt_loop *loop;
	int peer;
	int closed;
	size_t max_pending;
	unsigned drains;
};

static void
sf_note_pending(struct stream_fixture *sf)
{
	size_t p = pt_conn_pending_output(sf->s.conn);

	if (p > sf->max_pending)
		sf->max_pending = p;
}

static void sf_on_read(struct pt_conn *c) { (void)c; }
static void
sf_on_close(struct pt_conn *c, const char *reason)
{
	struct stream_fixture *sf = pt_conn_proto(c);

	(void)reason;
	sf->closed = 1;
	sf->s.conn = NULL;
}
/* What imap_session.c does on drain. */
static void
sf_on_drain(struct pt_conn *c)
{
	struct stream_fixture *sf = pt_conn_proto(c);

	sf->drains++;
	if (sf->s.cont) {
		sf->s.cont(&sf->s);
		sf_note_pending(sf);
	}
}
static const struct pt_conn_handlers sf_handlers = { sf_on_read, sf_on_close, sf_on_drain };

static void
sf_stop(struct pt_loop *loop, void *arg)
{
	(void)arg;
	pt_loop_stop(loop);
}

static int
stream_setup(void **state)
{
	struct stream_fixture *sf = calloc(1, sizeof *sf);
	int sv[2];

	if (!big_text) {
		/* 6 MB: more than the conn's 4 MB output cap in one literal */
		big_len = 6 * 1024 * 1024;
		big_text = malloc(big_len);
		memcpy(big_text, "A: b\r\n\r\n", 8);
		for (size_t i = 8; i < big_len; i++)
			big_text[i] = (i % 78 == 76) ? '\r' : (i % 78 == 77) ? '\n' : (char)('a' + i % 26);
	}
	freads = freleases = 0;
	sf->loop = pt_loop_new();
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	sf->s.conn = pt_conn_new(sf->loop, sv[0], NULL);
	assert_non_null(sf->s.conn);
	pt_conn_set_handlers(sf->s.conn, &sf_handlers, sf);
	sf->peer = sv[1];
	sf->s.state = IMAP_SELECTED;
	sf->s.mbx = &bops;
	sf->s.mb = (struct pt_mbox *)&bops;
	sf->s.selected = "INBOX";
	sf->s.uidvalidity = 1234;
	sf->s.view = calloc(BIG_N, sizeof *sf->s.view);
	for (size_t i = 0; i < BIG_N; i++)
		sf->s.view[i] = (struct pt_msg_brief){ (uint32_t)i + 1, PT_F_SEEN, 0, 1 };
	sf->s.nview = sf->s.capview = BIG_N;
	sf->s.uid_seen_max = BIG_N;
	*state = sf;
	return 0;
}

static int
stream_teardown(void **state)
{
	struct stream_fixture *sf = *state;

	if (sf->s.cont_free)
		sf->s.cont_free(&sf->s);
	if (sf->s.conn)
		pt_conn_close(sf->s.conn, "test over");
	close(sf->peer);
	pt_loop_free(sf->loop);
	free(sf->s.view);
	free(sf->s.ghosts);
	free(sf);
	return 0;
}

/* Read what the server sends until want ends a line, pumping the loop. */
static char *
stream_collect(struct stream_fixture *sf, const char *want, size_t *len)
{
	size_t cap = 16 * 1024 * 1024, n = 0;
	char *buf = malloc(cap + 1);

	for (int round = 0; round < 200000; round++) {
		ssize_t r;

		pt_timer_add(sf->loop, 1, sf_stop, NULL);
		pt_loop_run(sf->loop);
		while (n < cap && (r = recv(sf->peer, buf + n, cap - n, MSG_DONTWAIT)) > 0)
			n += (size_t)r;
		buf[n] = '\0';
		if (n > 2 && buf[n - 1] == '\n' && strstr(buf + (n > 200 ? n - 200 : 0), want))
			break;
		assert_false(sf->closed);
	}
	*len = n;
	return buf;
}

static void
test_stream_fetch_big_literal_and_many(void **state)
{
	struct stream_fixture *sf = *state;
	struct targs t;
	size_t len, expect_head;
	char head[64];

	targs_parse(&t, "1:* (UID BODY.PEEK[])");
	imap_cmd_fetch(&sf->s, "a1", t.a, t.n, 0);
	/* Not done in one go: it waits for the client, input paused. */
	assert_non_null(sf->s.cont);
	sf_note_pending(sf);
	char *out = stream_collect(sf, "a1 OK Fetch completed", &len);
	assert_null(sf->s.cont);
	assert_true(sf->drains > 10);
	/* never more queued than the high-water mark plus one piece */
	if (sf->max_pending > BIG_BOUND)
		fail_msg("queued %zu bytes at once", sf->max_pending);
	expect_head = (size_t)snprintf(head, sizeof head, "* 1 FETCH (UID 1 BODY[] {%zu}\r\n", big_len);
	assert_memory_equal(out, head, expect_head);
	assert_memory_equal(out + expect_head, big_text, big_len);
	const char *p = out + expect_head + big_len;
	assert_memory_equal(p, ")\r\n* 2 FETCH (UID 2 BODY[] {17}\r\n", 33);
	size_t fetches = 0;
	/* memmem with a length: ASan's strstr measures the rest every call */
	for (const char *q = out, *e = out + len; (q = memmem(q, (size_t)(e - q), " FETCH (UID ", 12)) != NULL; q++)
		fetches++;
	assert_int_equal(fetches, BIG_N);
	assert_non_null(strstr(out + len - 200, ")\r\na1 OK Fetch completed"));
	assert_int_equal(freads, BIG_N);
	assert_int_equal(freleases, BIG_N);
	free(out);
}

static void
test_stream_search_reply_in_pieces(void **state)
{
	struct stream_fixture *sf = *state;
	struct targs t;
	size_t len;

	targs_parse(&t, "ALL");
	imap_cmd_search(&sf->s, "a1", t.a, t.n, 1);
	assert_non_null(sf->s.cont);   /* 100000 UIDs: ~590 KB in one line */
	char *out = stream_collect(sf, "a1 OK Search completed", &len);
	assert_null(sf->s.cont);
	assert_true(sf->max_pending <= BIG_BOUND);
	assert_memory_equal(out, "* SEARCH 1 2 3 ", 15);
	assert_non_null(strstr(out, " 99999 100000\r\na1 OK Search completed"));
	assert_int_equal(freads, 0);
	free(out);
}

static void
test_stream_session_ends_midway(void **state)
{
	struct stream_fixture *sf = *state;
	struct targs t;

	targs_parse(&t, "1:* BODY.PEEK[]");
	imap_cmd_fetch(&sf->s, "a1", t.a, t.n, 0);
	assert_non_null(sf->s.cont);
	/* The session ends (client gone): its teardown frees our state and
	 * releases the message being sent; ASan checks nothing leaks. */
	sf->s.cont_free(&sf->s);
	assert_null(sf->s.cont);
	assert_null(sf->s.cont_state);
	assert_int_equal(freads, freleases);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_macros),
		cmocka_unit_test(test_parse_uid_first_once),
		cmocka_unit_test(test_parse_sections),
		cmocka_unit_test(test_parse_rfc822_seen_rules),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_parse_every_prefix),
		cmocka_unit_test(test_parse_item_limit),
		cmocka_unit_test_setup_teardown(test_fetch_flags_size_date_uid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_body_sets_seen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_seen_with_uid_and_flags_asked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_peek_and_readonly_leave_unseen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_structure_and_sections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_expunged_meanwhile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_expunged_at_sync_answers_from_before, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_text_expunged_at_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flags_changed_elsewhere_told, setup, teardown),
		cmocka_unit_test_setup_teardown(test_search_basic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_search_text_keys_load_lazily, setup, teardown),
		cmocka_unit_test_setup_teardown(test_search_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_fetch_big_literal_and_many, stream_setup, stream_teardown),
		cmocka_unit_test_setup_teardown(test_stream_search_reply_in_pieces, stream_setup, stream_teardown),
		cmocka_unit_test_setup_teardown(test_stream_session_ends_midway, stream_setup, stream_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
