/* libFuzzer target: access(5) action strings (what maps and Lua policies
 * return) through the parser and the reply formatter, plus the address
 * and HELO-name checks on the same bytes. A reply must never carry a
 * control character and always starts with a 4xx/5xx code. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "restrict/restrict.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct restrict_action a;
	char err[256], reply[600];
	if (restrict_action_parse((const char *)data, size, &a, err, sizeof err) == 0) {
		for (enum restrict_class cls = RESTRICT_CLASS_CLIENT; cls <= RESTRICT_CLASS_EOD; cls++) {
			restrict_action_reply(&a, cls, "subject@example.com", reply, sizeof reply);
			for (const char *p = reply; *p; p++)
				if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
					abort();
			if (reply[0] != '4' && reply[0] != '5')
				abort();
		}
		if (a.kind == RESTRICT_ACT_PREPEND && strchr(a.text, ':') == NULL)
			abort();
	}
	char *s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	char local[600], domain[600];
	int has;
	restrict_addr_split(s, local, sizeof local, domain, sizeof domain, &has);
	restrict_rcpt_is_authorized(s);
	restrict_addr_fqdn(s);
	restrict_helo_invalid(s);
	restrict_helo_fqdn(s);
	free(s);
	return 0;
}
