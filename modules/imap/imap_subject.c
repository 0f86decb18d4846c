/* RFC 5256 §2.1 base subject extraction (SORT SUBJECT, THREAD) and the
 * i;unicode-casemap comparison (RFC 5051, I18NLEVEL=1's default) the SORT
 * and THREAD keys use. */
#include <string.h>

#include "imap_msg_int.h"
#include "postern/unicode_casemap.h"

static int
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static unsigned char
ascii_upper(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? (unsigned char)(c - 32) : c;
}

int
imap_casemap_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	return pt_casemap_cmp(a, alen, b, blen);
}

/* The subj-leader words are ABNF literals: ASCII case-insensitive. */
static int
ascii_casemap_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;

	for (size_t i = 0; i < n; i++) {
		unsigned char x = ascii_upper((unsigned char)a[i]), y = ascii_upper((unsigned char)b[i]);
		if (x != y)
			return x < y ? -1 : 1;
	}
	return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Whether s[p..end) starts with word (ASCII case-insensitive). */
static int
starts_ci(const char *s, size_t p, size_t end, const char *word)
{
	size_t n = strlen(word);

	return end - p >= n && ascii_casemap_cmp(s + p, n, word, n) == 0;
}

/* subj-blob = "[" *BLOBCHAR "]" *WSP at p: its end, or 0 when none. */
static size_t
blob_end(const char *s, size_t p, size_t end)
{
	if (p >= end || s[p] != '[')
		return 0;
	size_t q = p + 1;
	while (q < end && s[q] != '[' && s[q] != ']')
		q++;
	if (q >= end || s[q] != ']')
		return 0;
	q++;
	while (q < end && is_wsp(s[q]))
		q++;
	return q;
}

/* subj-leader's subj-refwd part after any blobs: *subj-blob ("re" /
 * "fw" ["d"]) *WSP [subj-blob] ":" at p; its end, or 0. */
static size_t
refwd_end(const char *s, size_t p, size_t end)
{
	size_t q;

	while ((q = blob_end(s, p, end)) != 0)
		p = q;
	if (starts_ci(s, p, end, "re"))
		p += 2;
	else if (starts_ci(s, p, end, "fwd"))
		p += 3;
	else if (starts_ci(s, p, end, "fw"))
		p += 2;
	else
		return 0;
	while (p < end && is_wsp(s[p]))
		p++;
	if ((q = blob_end(s, p, end)) != 0)
		p = q;
	return p < end && s[p] == ':' ? p + 1 : 0;
}

void
imap_base_subject(const char *v, size_t len, struct pt_strbuf *out, int *reply)
{
	struct pt_strbuf dec = { 0 };
	int is_reply = 0;

	/* (1) encoded words to UTF-8; runs of white space to one space */
	imap_msg_decode_header(v, len, &dec);
	size_t start = 0, end = 0;
	for (size_t i = 0; i < dec.len; i++) {
		char c = dec.p[i];
		if (c == '\t' || c == '\r' || c == '\n')
			c = ' ';
		if (c == ' ' && end > 0 && dec.p[end - 1] == ' ')
			continue;
		dec.p[end++] = c;
	}
	const char *s = dec.p ? dec.p : "";
	for (;;) {
		/* (2) trailing "(fwd)" and white space */
		for (;;) {
			while (end > start && is_wsp(s[end - 1]))
				end--;
			if (end - start >= 5 && ascii_casemap_cmp(s + end - 5, 5, "(fwd)", 5) == 0) {
				end -= 5;
				is_reply = 1;
				continue;
			}
			break;
		}
		/* (3)-(5) leading subj-leader, then a subj-blob that is not all */
		for (int changed = 1; changed;) {
			changed = 0;
			for (;;) {
				size_t q;
				if (start < end && is_wsp(s[start])) {
					start++;
					changed = 1;
				} else if ((q = refwd_end(s, start, end)) != 0) {
					start = q;
					is_reply = 1;
					changed = 1;
				} else {
					break;
				}
			}
			size_t q = blob_end(s, start, end);
			if (q != 0 && q < end) {
				start = q;
				changed = 1;
			}
		}
		/* (6) "[fwd: ... ]" around the whole: strip and start over */
		if (end - start >= 6 && starts_ci(s, start, end, "[fwd:") && s[end - 1] == ']') {
			start += 5;
			end--;
			is_reply = 1;
			continue;
		}
		break;
	}
	pt_strbuf_put(out, s + start, end - start);
	pt_strbuf_puts(out, "");
	pt_strbuf_free(&dec);
	if (reply)
		*reply = is_reply;
}
