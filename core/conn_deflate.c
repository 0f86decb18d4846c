/* A connection's deflate layer (IMAP COMPRESS=DEFLATE, RFC 4978): raw
 * deflate (no zlib header, 32 KiB window) both ways, with zlib. Input:
 * compressed bytes wait in a small buffer of their own and are inflated
 * only into the room the conn's input buffer has, so what a client's
 * small stream inflates to is bounded by that buffer and by the
 * protocol's line and literal limits, like plain input (a decompression
 * bomb stops where plain input would). Output: compressed as written,
 * flushed with Z_SYNC_FLUSH when the conn sends (the end of a response
 * burst), so every reply reaches the client whole. */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "conn_int.h"

#define ZIN_MIN (16 * 1024)

struct pt_zstream {
	z_stream in, out;
	unsigned char *ibuf;          /* compressed input not yet inflated */
	size_t icap, ipos, ilen;
	int more_out;                 /* the last inflate filled its room: zlib may hold more */
	int dirty;                    /* output compressed but not yet flushed */
	int in_ok, out_ok;
};

struct pt_zstream *
pt_zstream_new(const void *initial, size_t n)
{
	struct pt_zstream *z = calloc(1, sizeof *z);
	if (z == NULL)
		return NULL;
	z->icap = n > ZIN_MIN ? n : ZIN_MIN;
	z->ibuf = malloc(z->icap);
	if (z->ibuf == NULL || inflateInit2(&z->in, -15) != Z_OK) {
		free(z->ibuf);
		free(z);
		return NULL;
	}
	z->in_ok = 1;
	if (deflateInit2(&z->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		pt_zstream_free(z);
		return NULL;
	}
	z->out_ok = 1;
	if (n > 0)
		memcpy(z->ibuf, initial, n);
	z->ilen = n;
	return z;
}

void
pt_zstream_free(struct pt_zstream *z)
{
	if (z == NULL)
		return;
	if (z->in_ok)
		inflateEnd(&z->in);
	if (z->out_ok)
		deflateEnd(&z->out);
	free(z->ibuf);
	free(z);
}

int
pt_zstream_in_pending(const struct pt_zstream *z)
{
	return z->ilen > 0 || z->more_out;
}

char *
pt_zstream_in_room(struct pt_zstream *z, size_t *room)
{
	if (z->ilen == 0)
		z->ipos = 0;
	else if (z->ipos > 0) {
		memmove(z->ibuf, z->ibuf + z->ipos, z->ilen);
		z->ipos = 0;
	}
	*room = z->icap - z->ilen;
	return (char *)z->ibuf + z->ilen;
}

void
pt_zstream_in_added(struct pt_zstream *z, size_t n)
{
	z->ilen += n;
}

ssize_t
pt_zstream_inflate(struct pt_zstream *z, char *out, size_t room)
{
	if (room == 0)
		return 0;
	z->in.next_in = z->ibuf + z->ipos;
	z->in.avail_in = (uInt)z->ilen;
	z->in.next_out = (unsigned char *)out;
	z->in.avail_out = room > UINT32_MAX ? UINT32_MAX : (uInt)room;
	int r = inflate(&z->in, Z_SYNC_FLUSH);
	size_t used = z->ilen - z->in.avail_in;
	size_t made = (size_t)(z->in.next_out - (unsigned char *)out);
	z->ipos += used;
	z->ilen -= used;
	z->more_out = z->in.avail_out == 0;
	/* The client's stream never ends while the connection lasts
	 * (RFC 4978): an end or garbage is an error, as is a stall with
	 * input left (nothing made, nothing taken). */
	if (r == Z_STREAM_END || (r != Z_OK && r != Z_BUF_ERROR))
		return -1;
	if (made == 0 && used == 0 && z->ilen > 0 && z->ilen == z->icap)
		return -1;
	return (ssize_t)made;
}

int
pt_zstream_deflate(struct pt_zstream *z, const void *data, size_t len, int flush,
                   int (*put)(void *arg, const void *p, size_t n), void *arg)
{
	unsigned char chunk[16384];

	if (len == 0 && !(flush && z->dirty))
		return 0;
	z->out.next_in = (unsigned char *)(uintptr_t)data;
	z->out.avail_in = (uInt)len;
	z->dirty = 1;
	do {
		z->out.next_out = chunk;
		z->out.avail_out = sizeof chunk;
		if (deflate(&z->out, flush ? Z_SYNC_FLUSH : Z_NO_FLUSH) == Z_STREAM_ERROR)
			return -1;
		size_t n = sizeof chunk - z->out.avail_out;
		if (n > 0 && put(arg, chunk, n) != 0)
			return -1;
	} while (z->out.avail_out == 0 || z->out.avail_in > 0);
	if (flush)
		z->dirty = 0;
	return 0;
}

int
pt_zstream_dirty(const struct pt_zstream *z)
{
	return z->dirty;
}
