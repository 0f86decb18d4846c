/* The worker <-> mail agent <-> mail process messages of post-login
 * sessions (format in session_int.h): pure encode/decode, no I/O. */
#include <stdio.h>
#include <string.h>

#include "session_int.h"

static int
put_str(unsigned char *buf, size_t cap, size_t *o, const char *s, size_t max)
{
	size_t n = strlen(s ? s : "");
	if (n >= max || *o + n + 1 > cap)
		return -1;
	memcpy(buf + *o, s ? s : "", n);
	buf[*o + n] = '\0';
	*o += n + 1;
	return 0;
}

/* A NUL-terminated field of at most max-1 bytes starting at *o. */
static const char *
get_str(unsigned char *buf, size_t len, size_t *o, size_t max)
{
	if (*o >= len)
		return NULL;
	unsigned char *nul = memchr(buf + *o, '\0', len - *o);
	if (nul == NULL || (size_t)(nul - (buf + *o)) >= max)
		return NULL;
	const char *s = (const char *)buf + *o;
	*o = (size_t)(nul - buf) + 1;
	return s;
}

/* The protocol names a service ("session:" + it): a plain word only. */
static int
protocol_ok(const char *p)
{
	if (p == NULL || *p == '\0')
		return 0;
	for (; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return 0;
	return 1;
}

int
pt_session_wire_request_encode(uint32_t id, const struct pt_session_info *info,
                               unsigned char *buf, size_t cap)
{
	if (cap > PT_SESSION_WIRE_MAX)
		cap = PT_SESSION_WIRE_MAX;
	if (info == NULL || !protocol_ok(info->protocol) || info->user == NULL ||
	    info->user[0] == '\0' || info->handoff_len > PT_SESSION_HANDOFF_MAX ||
	    (info->handoff_len > 0 && info->handoff == NULL) || info->peer_port > 65535 ||
	    info->local_port > 65535 || cap < 12)
		return -1;
	uint16_t pp = (uint16_t)info->peer_port, lp = (uint16_t)info->local_port;
	uint16_t hl = (uint16_t)info->handoff_len;
	buf[0] = PT_SW_REQUEST;
	memcpy(buf + 1, &id, 4);
	buf[5] = info->tls ? 1 : 0;
	memcpy(buf + 6, &pp, 2);
	memcpy(buf + 8, &lp, 2);
	memcpy(buf + 10, &hl, 2);
	size_t o = 12;
	if (put_str(buf, cap, &o, info->protocol, PT_SESSION_PROTO_MAX) < 0 ||
	    put_str(buf, cap, &o, info->user, PT_SESSION_NAME_MAX) < 0 ||
	    put_str(buf, cap, &o, info->mech, PT_SESSION_MECH_MAX) < 0 ||
	    put_str(buf, cap, &o, info->session_id, PT_SESSION_ID_MAX) < 0 ||
	    put_str(buf, cap, &o, info->peer_addr, PT_SESSION_ADDR_MAX) < 0 ||
	    put_str(buf, cap, &o, info->local_addr, PT_SESSION_ADDR_MAX) < 0)
		return -1;
	if (o + hl > cap)
		return -1;
	if (hl)
		memcpy(buf + o, info->handoff, hl);
	return (int)(o + hl);
}

int
pt_session_wire_request_decode(unsigned char *buf, size_t len, uint32_t *id,
                               struct pt_session_info *info)
{
	if (len < 12 || len > PT_SESSION_WIRE_MAX || buf[0] != PT_SW_REQUEST || buf[5] > 1)
		return -1;
	uint16_t pp, lp, hl;
	memcpy(id, buf + 1, 4);
	memcpy(&pp, buf + 6, 2);
	memcpy(&lp, buf + 8, 2);
	memcpy(&hl, buf + 10, 2);
	if (hl > PT_SESSION_HANDOFF_MAX)
		return -1;
	size_t o = 12;
	const char *proto = get_str(buf, len, &o, PT_SESSION_PROTO_MAX);
	const char *user = get_str(buf, len, &o, PT_SESSION_NAME_MAX);
	const char *mech = get_str(buf, len, &o, PT_SESSION_MECH_MAX);
	const char *sid = get_str(buf, len, &o, PT_SESSION_ID_MAX);
	const char *peer = get_str(buf, len, &o, PT_SESSION_ADDR_MAX);
	const char *local = get_str(buf, len, &o, PT_SESSION_ADDR_MAX);
	if (!proto || !user || !mech || !sid || !peer || !local || !protocol_ok(proto) || !user[0] ||
	    len - o != hl)
		return -1;
	memset(info, 0, sizeof *info);
	info->protocol = proto;
	info->user = user;
	info->mech = mech;
	info->session_id = sid;
	info->peer_addr = peer;
	info->local_addr = local;
	info->peer_port = pp;
	info->local_port = lp;
	info->tls = buf[5];
	info->handoff = hl ? buf + o : NULL;
	info->handoff_len = hl;
	return 0;
}

int
pt_session_wire_reply_encode(const struct pt_session_reply *r, unsigned char *buf, size_t cap)
{
	if (r->ok) {
		int32_t pid = (int32_t)r->pid;
		if (cap < 9 || r->pid <= 0)
			return -1;
		buf[0] = PT_SW_OK;
		memcpy(buf + 1, &r->id, 4);
		memcpy(buf + 5, &pid, 4);
		return 9;
	}
	size_t o = 5;
	if (cap < 5 || r->code[0] == '\0')
		return -1;
	buf[0] = PT_SW_FAIL;
	memcpy(buf + 1, &r->id, 4);
	if (put_str(buf, cap, &o, r->code, sizeof r->code) < 0 ||
	    put_str(buf, cap, &o, r->reason, sizeof r->reason) < 0)
		return -1;
	return (int)o;
}

int
pt_session_wire_reply_decode(const unsigned char *buf, size_t len, struct pt_session_reply *r)
{
	memset(r, 0, sizeof *r);
	if (len < 5)
		return -1;
	memcpy(&r->id, buf + 1, 4);
	if (buf[0] == PT_SW_OK) {
		int32_t pid;
		if (len != 9)
			return -1;
		memcpy(&pid, buf + 5, 4);
		if (pid <= 0)
			return -1;
		r->ok = 1;
		r->pid = (pid_t)pid;
		return 0;
	}
	if (buf[0] != PT_SW_FAIL)
		return -1;
	/* Decode from a copy: the strings are copied into r anyway. */
	unsigned char tmp[5 + sizeof r->code + sizeof r->reason];
	if (len > sizeof tmp)
		return -1;
	memcpy(tmp, buf, len);
	size_t o = 5;
	const char *code = get_str(tmp, len, &o, sizeof r->code);
	const char *reason = get_str(tmp, len, &o, sizeof r->reason);
	if (!code || !reason || !code[0] || o != len)
		return -1;
	snprintf(r->code, sizeof r->code, "%s", code);
	snprintf(r->reason, sizeof r->reason, "%s", reason);
	return 0;
}

int
pt_session_wire_type(const unsigned char *buf, size_t len)
{
	return len > 0 ? buf[0] : 0;
}
