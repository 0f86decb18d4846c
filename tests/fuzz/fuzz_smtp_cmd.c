/* libFuzzer target: an SMTP command line through the verb splitter and,
 * by verb, the path, ESMTP parameter, BDAT and HELO parsers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_cmd c;
	struct smtp_path p;
	struct smtp_mail_params mp;
	const char *rest, *w;
	size_t restlen;
	char bad[64], local[SMTP_PATH_MAX + 1];
	unsigned long long n;
	int last;
	/* A private copy without a terminator: reads past the end show up. */
	char *line = malloc(size ? size : 1);

	if (line == NULL)
		return 0;
	memcpy(line, data, size);
	smtp_parse_command(line, size, &c);
	if (c.arg + c.arglen > line + size && c.arglen)
		abort();
	switch (c.verb) {
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT: {
		size_t skip = c.verb == SMTP_VERB_MAIL ? 5 : 3;
		if (c.arglen >= skip &&
		    smtp_parse_path(c.arg + skip, c.arglen - skip, c.verb == SMTP_VERB_MAIL, &p, &rest, &restlen) == 0) {
			if (p.addrlen != strlen(p.addr) || p.addrlen > SMTP_PATH_MAX - 2)
				abort();
			smtp_path_local(&p, local, sizeof(local), 1);
			(void)smtp_path_domain(&p);
			if (c.verb == SMTP_VERB_MAIL)
				smtp_parse_mail_params(rest, restlen, &mp);
			else
				smtp_parse_rcpt_params(rest, restlen, bad, sizeof(bad));
		}
		break;
	}
	case SMTP_VERB_BDAT:
		smtp_parse_bdat(c.arg, c.arglen, &n, &last);
		break;
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
		if (smtp_parse_helo(c.arg, c.arglen, &w) > c.arglen)
			abort();
		break;
	default:
		(void)smtp_verb_name(c.verb);
		break;
	}
	free(line);
	return 0;
}
