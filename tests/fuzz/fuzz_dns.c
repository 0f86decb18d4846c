/* libFuzzer target: the DNS response parser (names with compression,
 * every record type we read), with and without a question to match. */
#include <stddef.h>
#include <stdint.h>

#include "dns_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum pt_dns_type types[] = { PT_DNS_A, PT_DNS_AAAA, PT_DNS_MX, PT_DNS_TXT,
		PT_DNS_PTR, PT_DNS_CNAME };
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct pt_dns_answer a;
		int rc, tc;
		if (pt_dns_parse_response(data, size, i & 1 ? "mx.test" : NULL, types[i], &a, &rc,
		                          &tc) == 0) {
			if (a.status == PT_DNS_OK && (a.n == 0 || !a.rr))
				__builtin_trap();
			for (size_t k = 0; k < a.n; k++)
				if (a.rr[k].type != types[i])
					__builtin_trap();
			pt_dns_answer_free(&a);
		}
	}
	return 0;
}
