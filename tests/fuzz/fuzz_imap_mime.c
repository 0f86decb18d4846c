/* libFuzzer target: any bytes as a message through the IMAP message
 * library: parse, ENVELOPE, BODY, BODYSTRUCTURE and every section kind of
 * the parts a message can have, BINARY of the numbered ones. Outputs must be balanced IMAP lists (a
 * literal's bytes skipped) and sections must come from the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_msg.h"

/* Parentheses outside quoted strings and literals balance. */
static void
check_balanced(const char *s, size_t len)
{
	long depth = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"') {
			for (i++; i < len && s[i] != '"'; i++)
				if (s[i] == '\\')
					i++;
			if (i >= len)
				abort();
		} else if (s[i] == '{') {
			char *end;
			unsigned long n = strtoul(s + i + 1, &end, 10);
			if (end[0] != '}' || end[1] != '\r' || end[2] != '\n')
				abort();
			i = (size_t)(end + 2 - s) + n;
		} else if (s[i] == '(') {
			depth++;
		} else if (s[i] == ')' && --depth < 0) {
			abort();
		}
	}
	if (depth != 0)
		abort();
}

static const char *const sections[] = { "", "HEADER", "TEXT", "HEADER.FIELDS (From Subject)",
	"HEADER.FIELDS.NOT (Content-Type)", "1", "1.MIME", "1.HEADER", "1.TEXT", "2", "2.MIME",
	"1.1", "1.2", "1.1.MIME", "2.1", "2.HEADER.FIELDS (To)", "1.1.1", "3", "3.1.2.MIME" };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size copy so that ASan sees any read past the end */
	char *copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	struct imap_msg *m = imap_msg_parse(copy, size);
	if (m == NULL) {
		free(copy);
		return 0;
	}
	struct pt_strbuf b = { 0 };
	imap_msg_envelope(m, &b);
	check_balanced(b.p, b.len);
	pt_strbuf_free(&b);
	for (int ext = 0; ext < 2; ext++) {
		imap_msg_bodystructure(m, ext, &b);
		check_balanced(b.p, b.len);
		pt_strbuf_free(&b);
	}
	for (size_t i = 0; i < sizeof sections / sizeof *sections; i++) {
		struct imap_section s;
		if (imap_section_parse(sections[i], strlen(sections[i]), &s) != 0)
			abort();
		imap_msg_section(m, &s, &b);
		/* whole-message, TEXT and numbered bodies are slices of the input */
		if (s.kind == IMAP_SEC_ALL && s.nparts == 0 && (b.len != size || memcmp(b.p, copy, size) != 0))
			abort();
		if (b.len > size + 2 && s.kind != IMAP_SEC_HEADER_FIELDS && s.kind != IMAP_SEC_HEADER_FIELDS_NOT)
			abort();
		pt_strbuf_free(&b);
		/* BINARY of part-number sections: the check agrees with the
		 * decode, and decoding never grows the body */
		if (s.kind == IMAP_SEC_ALL) {
			int known = imap_msg_binary(m, &s, NULL);
			if (imap_msg_binary(m, &s, &b) != known || (known == 0 && b.len > size))
				abort();
			pt_strbuf_free(&b);
		}
		imap_section_free(&s);
	}
	imap_msg_free(m);
	/* the same bytes as a section spec */
	struct imap_section s;
	if (imap_section_parse(copy, size, &s) == 0)
		imap_section_free(&s);
	free(copy);
	return 0;
}
