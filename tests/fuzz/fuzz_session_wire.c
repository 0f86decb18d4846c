/* libFuzzer target: the mail agent's and mail process's decoders of
 * session requests and replies; whatever they accept must re-encode to
 * the same message. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "session_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > PT_SESSION_WIRE_MAX + 16)
		return 0;
	unsigned char *buf = malloc(size ? size : 1);
	memcpy(buf, data, size);
	uint32_t id;
	struct pt_session_info info;
	if (pt_session_wire_request_decode(buf, size, &id, &info) == 0) {
		unsigned char out[PT_SESSION_WIRE_MAX];
		int n = pt_session_wire_request_encode(id, &info, out, sizeof out);
		if (n < 0 || (size_t)n != size || memcmp(out, data, size) != 0)
			abort();
	}
	struct pt_session_reply r;
	if (pt_session_wire_reply_decode(data, size, &r) == 0) {
		unsigned char out[512];
		int n = pt_session_wire_reply_encode(&r, out, sizeof out);
		if (n < 0 || (size_t)n != size || memcmp(out, data, size) != 0)
			abort();
	}
	free(buf);
	return 0;
}
