/* The worker <-> delivery agent messages: small typed records in one
 * SOCK_SEQPACKET datagram each; the message itself follows the request in
 * the datagram when small, else travels as a memfd. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "queue.h"

#define REQ_MAGIC 0x50544151u  /* "PTAQ" */
#define RESP_MAGIC 0x50544152u /* "PTAR" */
#define NULLSTR 0xffffffffu
#define MAX_ITEMS 4096

struct enc {
	char *p;
	size_t len, cap;
	int over;
};

static void
put(struct enc *e, const void *s, size_t n)
{
	if (e->over || n > e->cap - e->len) {
		e->over = 1;
		return;
	}
	memcpy(e->p + e->len, s, n);
	e->len += n;
}

static void
put_u32(struct enc *e, uint32_t v)
{
	put(e, &v, sizeof v);
}

static void
put_u64(struct enc *e, uint64_t v)
{
	put(e, &v, sizeof v);
}

static void
put_str(struct enc *e, const char *s)
{
	if (!s) {
		put_u32(e, NULLSTR);
		return;
	}
	size_t n = strlen(s);
	if (n >= NULLSTR) {
		e->over = 1;
		return;
	}
	put_u32(e, (uint32_t)n);
	put(e, s, n);
}

struct dec {
	const char *p;
	size_t left;
	int bad;
};

static void
get(struct dec *d, void *out, size_t n)
{
	if (d->bad || n > d->left) {
		d->bad = 1;
		memset(out, 0, n);
		return;
	}
	memcpy(out, d->p, n);
	d->p += n;
	d->left -= n;
}

static uint32_t
get_u32(struct dec *d)
{
	uint32_t v;
	get(d, &v, sizeof v);
	return v;
}

static uint64_t
get_u64(struct dec *d)
{
	uint64_t v;
	get(d, &v, sizeof v);
	return v;
}

/* A string: its bytes may not contain NUL (it would silently truncate). */
static char *
get_str(struct dec *d)
{
	uint32_t n = get_u32(d);
	if (d->bad || n == NULLSTR)
		return NULL;
	if (n > d->left || memchr(d->p, 0, n)) {
		d->bad = 1;
		return NULL;
	}
	char *s = malloc((size_t)n + 1);
	if (!s) {
		d->bad = 1;
		return NULL;
	}
	memcpy(s, d->p, n);
	s[n] = 0;
	d->p += n;
	d->left -= n;
	return s;
}

static void
get_fixed(struct dec *d, char *out, size_t cap)
{
	char *s = get_str(d);
	out[0] = 0;
	if (!s)
		return;
	if (strlen(s) >= cap)
		d->bad = 1;
	else
		memcpy(out, s, strlen(s) + 1);
	free(s);
}

ssize_t
pt_agent_req_encode(const struct pt_agent_req *r, char *buf, size_t cap)
{
	struct enc e = { buf, 0, cap, 0 };
	if (r->n > MAX_ITEMS)
		return -1;
	put_u32(&e, REQ_MAGIC);
	put_u32(&e, r->seq);
	put_str(&e, r->queue_id);
	put_str(&e, r->sender);
	put_u64(&e, (uint64_t)r->arrival);
	put_u64(&e, r->len);
	put_u32(&e, (uint32_t)r->n);
	for (size_t i = 0; i < r->n; i++) {
		const struct pt_agent_item *it = &r->item[i];
		put_u32(&e, (uint32_t)it->kind);
		put_str(&e, it->recipient);
		put_str(&e, it->orig);
		put_str(&e, it->user.name);
		put_u32(&e, (uint32_t)it->user.uid);
		put_u32(&e, (uint32_t)it->user.gid);
		put_str(&e, it->user.home);
		put_str(&e, it->target);
		put_str(&e, it->owner);
	}
	return e.over ? -1 : (ssize_t)e.len;
}

void
pt_agent_req_free(struct pt_agent_req *r)
{
	free(r->queue_id);
	free(r->sender);
	for (size_t i = 0; r->item && i < r->n; i++) {
		free(r->item[i].recipient);
		free(r->item[i].orig);
		free(r->item[i].target);
		free(r->item[i].owner);
	}
	free(r->item);
	memset(r, 0, sizeof *r);
}

int
pt_agent_req_decode(const char *buf, size_t len, struct pt_agent_req *r)
{
	struct dec d = { buf, len, 0 };
	memset(r, 0, sizeof *r);
	if (get_u32(&d) != REQ_MAGIC)
		return -1;
	r->seq = get_u32(&d);
	r->queue_id = get_str(&d);
	r->sender = get_str(&d);
	r->arrival = (int64_t)get_u64(&d);
	r->len = get_u64(&d);
	uint32_t n = get_u32(&d);
	if (d.bad || n == 0 || n > MAX_ITEMS || !r->queue_id || !r->sender)
		goto bad;
	r->item = calloc(n, sizeof *r->item);
	if (!r->item)
		goto bad;
	r->n = n;
	for (size_t i = 0; i < n && !d.bad; i++) {
		struct pt_agent_item *it = &r->item[i];
		it->kind = (int)get_u32(&d);
		it->recipient = get_str(&d);
		it->orig = get_str(&d);
		get_fixed(&d, it->user.name, sizeof it->user.name);
		it->user.uid = (uid_t)get_u32(&d);
		it->user.gid = (gid_t)get_u32(&d);
		get_fixed(&d, it->user.home, sizeof it->user.home);
		it->target = get_str(&d);
		it->owner = get_str(&d);
		if (!it->recipient)
			d.bad = 1;
		if (it->kind == PT_AGENT_MAILBOX && !it->user.name[0])
			d.bad = 1;
		if ((it->kind == PT_AGENT_FILE || it->kind == PT_AGENT_COMMAND) && !it->target)
			d.bad = 1;
		if (it->kind < PT_AGENT_MAILBOX || it->kind > PT_AGENT_COMMAND)
			d.bad = 1;
	}
	/* Nothing may follow the request but the message itself, whole. */
	if (d.bad || (d.left != 0 && d.left != r->len))
		goto bad;
	if (d.left != 0)
		r->data = buf + (len - d.left);
	return 0;
bad:
	pt_agent_req_free(r);
	return -1;
}

ssize_t
pt_agent_resp_encode(const struct pt_agent_resp *r, char *buf, size_t cap)
{
	struct enc e = { buf, 0, cap, 0 };
	if (r->n > MAX_ITEMS)
		return -1;
	put_u32(&e, RESP_MAGIC);
	put_u32(&e, r->seq);
	put_u32(&e, (uint32_t)r->n);
	for (size_t i = 0; i < r->n; i++) {
		put_u32(&e, (uint32_t)r->st[i].code);
		put_str(&e, r->st[i].dsn);
		put_str(&e, r->st[i].text);
	}
	return e.over ? -1 : (ssize_t)e.len;
}

void
pt_agent_resp_free(struct pt_agent_resp *r)
{
	free(r->st);
	memset(r, 0, sizeof *r);
}

int
pt_agent_resp_decode(const char *buf, size_t len, struct pt_agent_resp *r)
{
	struct dec d = { buf, len, 0 };
	memset(r, 0, sizeof *r);
	if (get_u32(&d) != RESP_MAGIC)
		return -1;
	r->seq = get_u32(&d);
	uint32_t n = get_u32(&d);
	if (d.bad || n > MAX_ITEMS)
		return -1;
	r->st = calloc(n ? n : 1, sizeof *r->st);
	if (!r->st)
		return -1;
	r->n = n;
	for (size_t i = 0; i < n && !d.bad; i++) {
		uint32_t code = get_u32(&d);
		if (code != 0 && (code < 200 || code > 599))
			d.bad = 1;
		r->st[i].code = (int)code;
		get_fixed(&d, r->st[i].dsn, sizeof r->st[i].dsn);
		get_fixed(&d, r->st[i].text, sizeof r->st[i].text);
	}
	if (d.bad || d.left != 0) {
		pt_agent_resp_free(r);
		return -1;
	}
	return 0;
}

int
pt_agent_send(int sock, const char *buf, size_t len, int fd)
{
	struct iovec iov = { (void *)buf, len };
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr mh = { 0 };
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (fd >= 0) {
		memset(&ctl, 0, sizeof ctl);
		mh.msg_control = ctl.b;
		mh.msg_controllen = sizeof ctl.b;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof fd);
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if ((size_t)n != len) {
			errno = EMSGSIZE;
			return -1;
		}
		return 0;
	}
}

ssize_t
pt_agent_recv(int sock, char *buf, size_t cap, int *fd)
{
	struct iovec iov = { buf, cap };
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int) * 4)];
	} ctl;
	struct msghdr mh = { 0 };
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.b;
	mh.msg_controllen = sizeof ctl.b;
	*fd = -1;
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
			/* One fd per message; extras are closed, never leaked. */
			if (*fd < 0)
				*fd = f;
			else
				close(f);
		}
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		errno = EMSGSIZE;
		return -1;
	}
	return n;
}
