/* libFuzzer: queue file decoding (what a crash or a disk error could leave
 * in the queue directory, and what any user can drop into maildrop/), the
 * delivery agent's request/response decoders, and the re-encode round trip. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* FNV-1a 64, the queue file's checksum: lets the fuzzer reach the record
 * parser behind the checksum check. */
static uint64_t
fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void
decode_roundtrip(const char *buf, size_t len)
{
	struct pt_qfile q, r;
	char err[256];
	if (pt_qfile_decode(buf, len, &q, err, sizeof err) != 0)
		return;
	/* A file that decodes must survive encode + decode unchanged. */
	char *img;
	size_t ilen;
	if (pt_qfile_encode(&q, &img, &ilen) != 0)
		abort();
	if (pt_qfile_decode(img, ilen, &r, err, sizeof err) != 0)
		abort();
	if (r.nrcpt != q.nrcpt || r.len != q.len || memcmp(r.data, q.data, q.len) != 0 ||
	    strcmp(r.sender, q.sender) != 0)
		abort();
	pt_qfile_free(&r);
	free(img);
	pt_qfile_free(&q);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	decode_roundtrip((const char *)data, size);
	/* The same bytes as a body with a valid checksum appended. */
	char *sealed = malloc(size + 21);
	if (sealed) {
		memcpy(sealed, data, size);
		int n = snprintf(sealed + size, 21, "\nZ %016llx\n", (unsigned long long)fnv1a(data, size));
		decode_roundtrip(sealed, size + (size_t)n);
		free(sealed);
	}
	struct pt_agent_req req;
	if (pt_agent_req_decode((const char *)data, size, &req) == 0)
		pt_agent_req_free(&req);
	struct pt_agent_resp resp;
	if (pt_agent_resp_decode((const char *)data, size, &resp) == 0)
		pt_agent_resp_free(&resp);
	return 0;
}
