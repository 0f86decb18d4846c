/* CATENATE (RFC 4469) for APPEND: the parts of a CATENATE list checked
 * and put together, and the IMAP URLs (RFC 5092) they may name:
 *   /Mailbox[;UIDVALIDITY=n]/;UID=m[/;SECTION=s][/;PARTIAL=o[.l]]
 *   imap://[user[;AUTH=x]@]host[:port]/... the same on this server
 *   ;UID=m[...]   a message of the selected folder
 * Only the logged-in user's folders on this server (no URLAUTH, no other
 * user's or server's URL); a folder is opened read-only for the command
 * (no \Recent taken), the message read as FETCH BODY.PEEK[section] would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/config.h"
#include "imap.h"
#include "imap_catenate.h"
#include "imap_msg.h"

/* ---- URL parsing ---- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* %XX decoded into a malloc'd NUL-terminated string; NULL when a %
 * escape is broken or decodes to a control character (NUL included). */
static char *
pct_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	size_t k = 0;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%') {
			int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
			int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				goto bad;
			c = (unsigned char)(hi * 16 + lo);
			i += 2;
		}
		if (c < 0x20 || c == 0x7f)
			goto bad;
		out[k++] = (char)c;
	}
	out[k] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

/* nz-number (RFC 3501): 1..4294967295 without leading zeros. */
static int
nz_number(const char *s, size_t n, uint32_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 10 || s[0] == '0')
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int
number64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 19)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* A folder name from a URL: well-formed UTF-8, no empty, "." or ".."
 * component (the store refuses dot names too; this keeps a URL from ever
 * reaching it with a path-like name). */
static int
mailbox_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t comp = 0;
	int dots = 0;

	if (*p == '\0')
		return 0;
	while (*p) {
		if (*p == '/') {
			if (comp == 0 || comp == (size_t)dots)
				return 0;
			comp = 0;
			dots = 0;
			p++;
			continue;
		}
		size_t len = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
		if (len == 0 || (len == 2 && *p < 0xc2))
			return 0;
		for (size_t k = 1; k < len; k++)
			if ((p[k] & 0xc0) != 0x80)
				return 0;
		if (*p == '.')
			dots++;
		comp++;
		p += len;
	}
	/* a last component of only dots ("a/..") */
	return comp > 0 && comp != (size_t)dots;
}

static int
host_is_self(const char *h, size_t n, const struct imap_url_self *self)
{
	if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
		h++;
		n -= 2;
	}
	for (size_t i = 0; i < sizeof self->hosts / sizeof self->hosts[0]; i++) {
		const char *x = self->hosts[i];
		if (x && *x && strlen(x) == n && strncasecmp(x, h, n) == 0)
			return 1;
	}
	return 0;
}

/* "imap://" iserver: the user (if given) must be self->user, the host and
 * port this server's. *p moves to the '/' after it. */
static int
parse_server(const char **p, const char *end, const struct imap_url_self *self)
{
	const char *s = *p, *slash = memchr(s, '/', (size_t)(end - s));
	const char *at = NULL;

	if (slash == NULL)
		return -1;
	for (const char *q = s; q < slash; q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		const char *semi = memchr(s, ';', (size_t)(at - s));
		const char *uend = semi ? semi : at;
		if (semi != NULL && (at - semi < 7 || strncasecmp(semi, ";AUTH=", 6) != 0))
			return -1;
		if (uend > s) {
			char *user = pct_decode(s, (size_t)(uend - s));
			int same = user && self->user && strcmp(user, self->user) == 0;
			free(user);
			if (!same)
				return -1;
		} else if (semi == NULL) {
			return -1;   /* "@host": no user and no AUTH */
		}
		s = at + 1;
	}
	const char *hend = slash, *colon = NULL;
	if (*s == '[') {
		const char *rb = memchr(s, ']', (size_t)(slash - s));
		if (rb == NULL)
			return -1;
		hend = rb + 1;
		if (hend < slash) {
			if (*hend != ':')
				return -1;
			colon = hend;
		}
	} else {
		colon = memchr(s, ':', (size_t)(slash - s));
		if (colon)
			hend = colon;
	}
	if (!host_is_self(s, (size_t)(hend - s), self))
		return -1;
	if (colon != NULL) {
		uint32_t port;
		if (nz_number(colon + 1, (size_t)(slash - colon - 1), &port) != 0 ||
		    (port != self->port && port != 143 && port != 993))
			return -1;
	}
	*p = slash;
	return 0;
}

void
imap_url_free(struct imap_url *u)
{
	free(u->mailbox);
	free(u->section);
	memset(u, 0, sizeof(*u));
}

int
imap_url_parse(const char *url, size_t len, const struct imap_url_self *self, struct imap_url *out)
{
	const char *p = url, *end = url + len;

	memset(out, 0, sizeof(*out));
	/* No search (?), fragment, NUL or space: not a message URL. */
	for (size_t i = 0; i < len; i++)
		if (url[i] == '?' || url[i] == '#' || (unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
			return -1;
	if (len >= 7 && strncasecmp(p, "imap://", 7) == 0) {
		p += 7;
		if (parse_server(&p, end, self) != 0)
			return -1;
	}
	if (p < end && *p == '/') {
		/* The folder runs to the first ';' (not a URL character of a
		 * name); "/INBOX/;UID=1" has its '/' before ";UID" as separator. */
		p++;
		const char *semi = memchr(p, ';', (size_t)(end - p));
		if (semi == NULL)
			return -1;
		const char *mend = semi;
		if (mend > p && mend[-1] == '/' && (size_t)(end - semi) >= 5 && strncasecmp(semi, ";UID=", 5) == 0)
			mend--;
		out->mailbox = pct_decode(p, (size_t)(mend - p));
		if (out->mailbox == NULL || !mailbox_ok(out->mailbox))
			goto bad;
		p = semi;
	}
	/* ;NAME=value parameters, each but the first after a '/', in order:
	 * UIDVALIDITY (with a folder), UID, SECTION, PARTIAL. Anything else
	 * (URLAUTH's EXPIRE / ACCESS / URLAUTH among them) is refused. */
	int stage = 0;   /* 1 UIDVALIDITY, 2 UID, 3 SECTION, 4 PARTIAL seen */
	while (p < end) {
		if (*p != ';')
			goto bad;
		const char *v = p + 1, *next = memchr(v, ';', (size_t)(end - v));
		const char *tend = next ? next : end;
		if (next != NULL) {
			if (tend[-1] != '/')
				goto bad;
			tend--;
		}
		const char *eq = memchr(v, '=', (size_t)(tend - v));
		if (eq == NULL)
			goto bad;
		size_t nlen = (size_t)(eq - v), vlen = (size_t)(tend - eq - 1);
		const char *val = eq + 1;
		if (nlen == 11 && strncasecmp(v, "UIDVALIDITY", 11) == 0 && stage == 0 && out->mailbox) {
			if (nz_number(val, vlen, &out->uidvalidity) != 0)
				goto bad;
			/* UIDVALIDITY and ";UID" are separated by '/' */
			if (next == NULL || next[-1] != '/')
				goto bad;
			stage = 1;
		} else if (nlen == 3 && strncasecmp(v, "UID", 3) == 0 && stage < 2) {
			if (nz_number(val, vlen, &out->uid) != 0)
				goto bad;
			stage = 2;
		} else if (nlen == 7 && strncasecmp(v, "SECTION", 7) == 0 && stage == 2) {
			out->section = pct_decode(val, vlen);
			if (out->section == NULL || vlen == 0)
				goto bad;
			stage = 3;
		} else if (nlen == 7 && strncasecmp(v, "PARTIAL", 7) == 0 && (stage == 2 || stage == 3)) {
			const char *dot = memchr(val, '.', vlen);
			if (number64(val, dot ? (size_t)(dot - val) : vlen, &out->offset) != 0)
				goto bad;
			if (dot && (number64(dot + 1, (size_t)(val + vlen - dot - 1), &out->length) != 0 ||
			            out->length == 0 || dot[1] == '0'))
				goto bad;
			out->partial = 1;
			stage = 4;
		} else {
			goto bad;
		}
		p = next ? next : end;
	}
	if (stage < 2)
		goto bad;
	return 0;
bad:
	imap_url_free(out);
	return -1;
}

/* ---- resolution ---- */

#define CAT_CACHE_MAX 8

struct imap_cat_cache {
	struct { char *name; struct pt_mbox *mb; } f[CAT_CACHE_MAX];
	size_t n;
};

void
imap_cat_cache_free(struct imap_session *s, struct imap_cat_cache *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++) {
		s->mbx->close(c->f[i].mb);
		free(c->f[i].name);
	}
	free(c);
}

/* The folder called name, opened read-only once per command. */
static struct pt_mbox *
cache_open(struct imap_session *s, struct imap_cat_cache **cp, const char *name)
{
	struct pt_status st = { 0 };
	struct imap_cat_cache *c = *cp;

	if (c == NULL && (c = *cp = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->f[i].name, name) == 0)
			return c->f[i].mb;
	if (c->n == CAT_CACHE_MAX) {
		/* More folders than that in one command: reuse the oldest slot. */
		s->mbx->close(c->f[0].mb);
		free(c->f[0].name);
		memmove(&c->f[0], &c->f[1], (CAT_CACHE_MAX - 1) * sizeof(c->f[0]));
		c->n--;
	}
	char *copy = strdup(name);
	struct pt_mbox *mb = copy ? s->mbx->open(s->ms, name, 1, &st) : NULL;
	if (mb == NULL) {
		free(copy);
		return NULL;
	}
	c->f[c->n].name = copy;
	c->f[c->n].mb = mb;
	c->n++;
	return mb;
}

/* The octets url names, appended to out: 0, or -1 when it names nothing
 * this user can read here (why in err, in Dovecot's words where it has
 * the case). */
static int
url_fetch(struct imap_session *s, const char *url, size_t len, struct imap_cat_cache **cache,
          struct pt_strbuf *out, char *err, size_t errlen)
{
	struct imap_url_self self = { .user = s->user.name, .hosts = { "localhost", NULL, NULL, NULL } };
	struct imap_url u;
	struct pt_status st = { 0 };

	if (imap_set.conf != NULL)
		self.hosts[1] = pt_conf_str(imap_set.conf, "myhostname");
	if (s->conn != NULL) {
		self.hosts[2] = pt_conn_local_addr(s->conn);
		self.port = pt_conn_local_port(s->conn);
	}
	if (imap_url_parse(url, len, &self, &u) != 0) {
		snprintf(err, errlen, "Invalid IMAP URL: not a message of this user on this server");
		return -1;
	}
	const char *name = u.mailbox;
	if (name == NULL)
		name = s->state == IMAP_SELECTED ? s->selected : NULL;
	struct pt_mbox *mb = name ? cache_open(s, cache, name) : NULL;
	if (mb == NULL || (u.uidvalidity != 0 && u.uidvalidity != s->mbx->uidvalidity(mb))) {
		if (name == NULL)
			snprintf(err, errlen, "Mailbox-relative IMAP URL, but no mailbox selected");
		else if (mb == NULL)
			snprintf(err, errlen, "Mailbox doesn't exist: %s", name);
		else
			snprintf(err, errlen, "Invalid UIDVALIDITY");
		imap_url_free(&u);
		return -1;
	}
	struct pt_msg_text t;
	if (s->mbx->read(mb, u.uid, &t, &st) != 0) {
		snprintf(err, errlen, "Message not found");
		imap_url_free(&u);
		return -1;
	}
	snprintf(err, errlen, "Message part not found");
	int rc = -1;
	struct pt_strbuf part = { 0 };
	const char *data = t.data;
	size_t dlen = t.len;
	struct imap_msg *m = NULL;
	struct imap_section sec;
	int have_sec = 0;
	if (u.section != NULL) {
		if (imap_section_parse(u.section, strlen(u.section), &sec) != 0)
			goto out;
		have_sec = 1;
		m = imap_msg_parse(t.data, t.len);
		if (m == NULL || !imap_msg_section_exists(m, &sec))
			goto out;
		imap_msg_section(m, &sec, &part);
		if (part.oom)
			goto out;
		data = part.p;
		dlen = part.len;
	}
	if (u.partial) {
		uint64_t off = u.offset < dlen ? u.offset : dlen;
		uint64_t n = dlen - off;
		if (u.length != 0 && u.length < n)
			n = u.length;
		data += off;
		dlen = (size_t)n;
	}
	pt_strbuf_put(out, data, dlen);
	rc = 0;
out:
	if (have_sec)
		imap_section_free(&sec);
	imap_msg_free(m);
	pt_strbuf_free(&part);
	s->mbx->release(mb, &t);
	imap_url_free(&u);
	return rc;
}

int
imap_catenate_valid(const struct imap_arg *list, size_t n)
{
	if (n == 0 || n % 2 != 0)
		return 0;
	for (size_t i = 0; i < n; i += 2) {
		if (list[i].type != IMAP_ARG_ATOM)
			return 0;
		if (strcasecmp(list[i].s, "TEXT") == 0) {
			if (list[i + 1].type != IMAP_ARG_LITERAL)
				return 0;
		} else if (strcasecmp(list[i].s, "URL") == 0) {
			if (!imap_arg_is_string(&list[i + 1]))
				return 0;
		} else {
			return 0;
		}
	}
	return 1;
}

/* [BADURL url]: the URL as sent, but any octet a response code may not
 * hold (']', controls, 8-bit) %-escaped so it stays one URL. */
static void
bad_url(struct imap_session *s, const char *tag, const char *url, size_t len, const char *why)
{
	struct pt_strbuf b = { 0 };
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)url[i];
		if (c <= 0x20 || c >= 0x7f || c == ']')
			pt_strbuf_printf(&b, "%%%02X", c);
		else
			pt_strbuf_put(&b, &url[i], 1);
	}
	if (b.oom || b.len > 1024) {
		b.len = 0;
		pt_strbuf_puts(&b, "/");
	}
	/* The code and the reason, with Dovecot's timing. */
	struct pt_strbuf code = { 0 };
	pt_strbuf_printf(&code, "BADURL %s", b.p && !b.oom ? b.p : "/");
	imap_tagged_timed(s, tag, "NO", code.oom ? "BADURL /" : code.p, why);
	pt_strbuf_free(&code);
	pt_strbuf_free(&b);
}

int
imap_catenate_build(struct imap_session *s, const char *tag, const struct imap_arg *list, size_t n,
                    size_t max, struct imap_cat_cache **cache, struct pt_strbuf *out)
{
	for (size_t i = 0; i < n; i += 2) {
		const struct imap_arg *v = &list[i + 1];
		if (strcasecmp(list[i].s, "TEXT") == 0) {
			pt_strbuf_put(out, v->s, v->len);
		} else {
			char why[600];
			if (url_fetch(s, v->s, v->len, cache, out, why, sizeof why) != 0) {
				bad_url(s, tag, v->s, v->len, why);
				return -1;
			}
		}
		if (out->len > max) {
			imap_tagged_timed(s, tag, "NO", "TOOBIG", "Message too large");
			return -1;
		}
		if (out->oom) {
			imap_tagged(s, tag, "NO", "[SERVERBUG] Out of memory.");
			return -1;
		}
	}
	return 0;
}
