/* Server-side SASL PLAIN / LOGIN state machine and the base64 codec it
 * speaks, reused by the smtp, imap and pop3 modules. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "postern/config.h"
#include "postern/sasl.h"

/* ---- base64 ---- */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t
pt_base64_encode(const void *in, size_t len, char *out, size_t outcap)
{
	const unsigned char *p = in;
	size_t need = (len + 2) / 3 * 4, o = 0;

	if (len > ((size_t)-1 / 4) * 3 - 3 || outcap < need + 1)
		return (size_t)-1;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

void
pt_base64_dec_init(struct pt_base64_dec *d)
{
	memset(d, 0, sizeof *d);
}

int
pt_base64_dec_feed(struct pt_base64_dec *d, const char *in, size_t len,
                   unsigned char *out, size_t outcap, size_t *outlen)
{
	*outlen = 0;
	for (size_t i = 0; i < len && !d->bad; i++) {
		unsigned char c = (unsigned char)in[i];
		if (d->done) {
			d->bad = 1;  /* anything after the padded end */
			break;
		}
		if (c == '=') {
			/* "xx==" or "xxx=": padding starts at the third or fourth place */
			if (d->nq < 2 || (d->npad == 1 && d->nq != 3)) {
				d->bad = 1;
				break;
			}
			d->npad++;
			d->q[d->nq++] = 0;
		} else {
			int v = b64_value(c);
			if (v < 0 || d->npad) {
				d->bad = 1;
				break;
			}
			d->q[d->nq++] = (unsigned char)v;
		}
		if (d->nq < 4)
			continue;
		unsigned v = (unsigned)d->q[0] << 18 | (unsigned)d->q[1] << 12 |
		             (unsigned)d->q[2] << 6 | d->q[3];
		int nout = 3 - d->npad;
		/* Bits past the last byte must be zero: one encoding per input. */
		if ((d->npad == 1 && (v & 0xff)) || (d->npad == 2 && (v & 0xffff))) {
			d->bad = 1;
			break;
		}
		if (*outlen + (size_t)nout > outcap)
			return -2;
		out[(*outlen)++] = (unsigned char)(v >> 16);
		if (nout > 1)
			out[(*outlen)++] = (unsigned char)(v >> 8);
		if (nout > 2)
			out[(*outlen)++] = (unsigned char)v;
		d->nq = 0;
		if (d->npad)
			d->done = 1;
	}
	return d->bad ? -1 : 0;
}

int
pt_base64_dec_final(const struct pt_base64_dec *d)
{
	return d->bad || d->nq != 0 ? -1 : 0;
}

int
pt_base64_decode(const char *in, size_t len, unsigned char *out, size_t outcap, size_t *outlen)
{
	struct pt_base64_dec d;

	pt_base64_dec_init(&d);
	if (pt_base64_dec_feed(&d, in, len, out, outcap, outlen) < 0)
		return -1;
	return pt_base64_dec_final(&d);
}

/* ---- the exchange ---- */

enum sasl_state { ST_START, ST_PLAIN_RESPONSE, ST_LOGIN_USER, ST_LOGIN_PASS, ST_END };

/* Decoded PLAIN message: authzid NUL authcid NUL passwd. */
#define DECODED_MAX (2 * PT_SASL_USER_MAX + PT_SASL_PASS_MAX + 2)

struct pt_sasl {
	enum pt_sasl_mech mech;
	enum sasl_state state;
	enum pt_sasl_status result;      /* sticky once DONE or an error */
	const char *challenge;
	const char *error;
	struct pt_base64_dec dec;
	size_t rawlen;                   /* characters of the current line */
	int star;                        /* line began with "*" */
	size_t dlen;
	unsigned char decoded[DECODED_MAX + 1];
	char user[PT_SASL_USER_MAX + 1];
	char authzid[PT_SASL_USER_MAX + 1];
	char password[PT_SASL_PASS_MAX + 1];
};

static const char *const mech_names[] = { "", "PLAIN", "LOGIN" };

enum pt_sasl_mech
pt_sasl_mech_parse(const char *name)
{
	if (!name)
		return PT_SASL_NONE;
	for (int m = PT_SASL_PLAIN; m <= PT_SASL_LOGIN; m++)
		if (strcasecmp(name, mech_names[m]) == 0)
			return (enum pt_sasl_mech)m;
	return PT_SASL_NONE;
}

const char *
pt_sasl_mech_name(enum pt_sasl_mech m)
{
	return m >= PT_SASL_PLAIN && m <= PT_SASL_LOGIN ? mech_names[m] : "";
}

struct pt_sasl *
pt_sasl_new(enum pt_sasl_mech m)
{
	if (m != PT_SASL_PLAIN && m != PT_SASL_LOGIN)
		return NULL;
	struct pt_sasl *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->mech = m;
	s->state = ST_START;
	s->challenge = "";
	s->error = "";
	pt_base64_dec_init(&s->dec);
	return s;
}

void
pt_sasl_free(struct pt_sasl *s)
{
	if (!s)
		return;
	OPENSSL_cleanse(s, sizeof *s);
	free(s);
}

static enum pt_sasl_status
finish(struct pt_sasl *s, enum pt_sasl_status st, const char *why)
{
	s->state = ST_END;
	s->result = st;
	s->error = why;
	s->challenge = "";
	OPENSSL_cleanse(s->decoded, sizeof s->decoded);
	if (st != PT_SASL_DONE)
		OPENSSL_cleanse(s->password, sizeof s->password);
	return st;
}

static void
line_reset(struct pt_sasl *s)
{
	pt_base64_dec_init(&s->dec);
	s->rawlen = 0;
	s->star = 0;
	OPENSSL_cleanse(s->decoded, s->dlen);
	s->dlen = 0;
}

static int
name_ok(const unsigned char *p, size_t n)
{
	if (n == 0 || n > PT_SASL_USER_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return 0;
	return 1;
}

/* PLAIN: exactly two NULs; a NUL anywhere else would let one name pass for
 * another further down (C strings), so it is refused. */
static enum pt_sasl_status
plain_message(struct pt_sasl *s)
{
	const unsigned char *m = s->decoded;
	size_t n = s->dlen;
	const unsigned char *nul1 = memchr(m, '\0', n);
	if (!nul1)
		return finish(s, PT_SASL_FAILED, "PLAIN response without NUL separators");
	const unsigned char *nul2 = memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - m));
	if (!nul2)
		return finish(s, PT_SASL_FAILED, "PLAIN response with one NUL separator");
	if (memchr(nul2 + 1, '\0', n - (size_t)(nul2 + 1 - m)))
		return finish(s, PT_SASL_FAILED, "NUL inside the PLAIN password");
	size_t zlen = (size_t)(nul1 - m), ulen = (size_t)(nul2 - nul1 - 1);
	size_t plen = n - (size_t)(nul2 + 1 - m);
	if (!name_ok(nul1 + 1, ulen))
		return finish(s, PT_SASL_FAILED, "PLAIN user name empty, too long or with control characters");
	if (zlen && !name_ok(m, zlen))
		return finish(s, PT_SASL_FAILED, "PLAIN authorization identity too long or with control characters");
	if (plen > PT_SASL_PASS_MAX)
		return finish(s, PT_SASL_FAILED, "PLAIN password too long");
	memcpy(s->user, nul1 + 1, ulen);
	s->user[ulen] = '\0';
	memcpy(s->authzid, m, zlen);
	s->authzid[zlen] = '\0';
	memcpy(s->password, nul2 + 1, plen);
	s->password[plen] = '\0';
	/* Acting for another user needs master users, which Postern has not. */
	if (zlen && strcmp(s->authzid, s->user) != 0)
		return finish(s, PT_SASL_FAILED, "authorization identity differs from the user");
	return finish(s, PT_SASL_DONE, "");
}

static enum pt_sasl_status
line_complete(struct pt_sasl *s)
{
	const unsigned char *m = s->decoded;
	size_t n = s->dlen;

	switch (s->state) {
	case ST_PLAIN_RESPONSE:
		return plain_message(s);
	case ST_LOGIN_USER:
		if (memchr(m, '\0', n) || !name_ok(m, n))
			return finish(s, PT_SASL_FAILED, "LOGIN user name empty, too long, or with NUL or control characters");
		memcpy(s->user, m, n);
		s->user[n] = '\0';
		s->state = ST_LOGIN_PASS;
		s->challenge = "UGFzc3dvcmQ6";  /* "Password:" */
		line_reset(s);
		return PT_SASL_CHALLENGE;
	case ST_LOGIN_PASS:
		if (memchr(m, '\0', n))
			return finish(s, PT_SASL_FAILED, "NUL inside the LOGIN password");
		if (n > PT_SASL_PASS_MAX)
			return finish(s, PT_SASL_FAILED, "LOGIN password too long");
		memcpy(s->password, m, n);
		s->password[n] = '\0';
		return finish(s, PT_SASL_DONE, "");
	default:
		return finish(s, PT_SASL_FAILED, "response out of sequence");
	}
}

enum pt_sasl_status
pt_sasl_feed(struct pt_sasl *s, const char *data, size_t len)
{
	size_t got;

	if (s->state == ST_END)
		return s->result;
	if (s->state == ST_START)
		return finish(s, PT_SASL_FAILED, "response before start");
	if (len == 0)
		return PT_SASL_CHALLENGE;
	if (len > PT_SASL_RESPONSE_MAX || s->rawlen + len > PT_SASL_RESPONSE_MAX)
		return finish(s, PT_SASL_MALFORMED, "response too long");
	if (s->rawlen == 0 && data[0] == '*') {
		s->star = 1;
		s->rawlen = 1;
		data++;
		len--;
	}
	if (s->star && len > 0)
		return finish(s, PT_SASL_MALFORMED, "Invalid base64 data in continued response");
	s->rawlen += len;
	int r = pt_base64_dec_feed(&s->dec, data, len, s->decoded + s->dlen,
	                           DECODED_MAX - s->dlen, &got);
	s->dlen += got;
	if (r == -2)
		return finish(s, PT_SASL_MALFORMED, "response too long");
	if (r < 0)
		return finish(s, PT_SASL_MALFORMED, "Invalid base64 data in continued response");
	return PT_SASL_CHALLENGE;
}

enum pt_sasl_status
pt_sasl_step(struct pt_sasl *s, const char *data, size_t len)
{
	enum pt_sasl_status st = pt_sasl_feed(s, data, len);

	if (st != PT_SASL_CHALLENGE)
		return st;
	if (s->star)
		return finish(s, PT_SASL_CANCELLED, "cancelled by the client");
	if (pt_base64_dec_final(&s->dec) < 0)
		return finish(s, PT_SASL_MALFORMED, "Invalid base64 data in continued response");
	return line_complete(s);
}

enum pt_sasl_status
pt_sasl_start(struct pt_sasl *s, const char *initial, size_t len)
{
	if (s->state != ST_START)
		return finish(s, PT_SASL_FAILED, "started twice");
	s->state = s->mech == PT_SASL_PLAIN ? ST_PLAIN_RESPONSE : ST_LOGIN_USER;
	if (!initial) {
		s->challenge = s->mech == PT_SASL_PLAIN ? "" : "VXNlcm5hbWU6"; /* "Username:" */
		return PT_SASL_CHALLENGE;
	}
	if (len == 1 && initial[0] == '=')
		len = 0;  /* "=": an initial response that is empty */
	return pt_sasl_step(s, initial, len);
}

const char *
pt_sasl_challenge(const struct pt_sasl *s)
{
	return s->challenge;
}

const char *
pt_sasl_user(const struct pt_sasl *s)
{
	return s->result == PT_SASL_DONE ? s->user : "";
}

const char *
pt_sasl_password(const struct pt_sasl *s)
{
	return s->result == PT_SASL_DONE ? s->password : "";
}

const char *
pt_sasl_authzid(const struct pt_sasl *s)
{
	return s->result == PT_SASL_DONE ? s->authzid : "";
}

const char *
pt_sasl_error(const struct pt_sasl *s)
{
	return s->error;
}

/* ---- policy shared by the protocols ---- */

int
pt_sasl_mech_enabled(const struct pt_config *c, enum pt_sasl_mech m)
{
	const struct pt_list *l = pt_conf_list(c, "auth_mechanisms");

	for (size_t i = 0; l && i < l->n; i++)
		if (pt_sasl_mech_parse(l->v[i]) == m && m != PT_SASL_NONE)
			return 1;
	return 0;
}

/* Normalizes "::ffff:1.2.3.4" and "1.2.3.4" to the same bytes. */
static int
addr_bytes(const char *s, unsigned char out[16])
{
	struct in_addr a4;
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (!s)
		return -1;
	if (inet_pton(AF_INET, s, &a4) == 1) {
		memcpy(out, mapped, 12);
		memcpy(out + 12, &a4, 4);
		return 0;
	}
	return inet_pton(AF_INET6, s, out) == 1 ? 0 : -1;
}

int
pt_sasl_plaintext_allowed(const struct pt_config *c, int tls, const char *peer_addr,
                          const char *local_addr)
{
	unsigned char a[16], b[16];

	if (!pt_conf_bool(c, "disable_plaintext_auth") || tls)
		return 1;
	return addr_bytes(peer_addr, a) == 0 && addr_bytes(local_addr, b) == 0 &&
	       memcmp(a, b, 16) == 0;
}
