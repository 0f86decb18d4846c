/* Message content intake: the DATA decoder (end only on CRLF.CRLF,
 * dot-unstuffing, bare CR/LF policy), the BDAT CRLF->LF converter, and the
 * bounded message buffer both write into (size and header-size limits). */
#ifndef SMTP_DATA_H
#define SMTP_DATA_H

#include <stddef.h>

/* The stored message: LF line ends. Content bytes are counted against
 * limit even after storing stops, so the client can be told 552 at the
 * end; the header section (up to the first empty or non-header line) is
 * counted against header_limit. */
struct smtp_msgbuf {
	char *p;
	size_t len, cap;
	size_t limit;              /* content bytes allowed; 0 = no limit */
	size_t header_limit;       /* 0 = no limit */
	unsigned long long content;/* content bytes seen (stored or not) */
	size_t header_bytes;
	unsigned char hstate;      /* header-section scanner state */
	unsigned char in_header;
	unsigned char too_big, header_too_big, oom;
};

void smtp_msgbuf_init(struct smtp_msgbuf *b, size_t limit, size_t header_limit);
/* Trace headers (Received, PREPEND): stored, not counted or scanned. */
int smtp_msgbuf_put_trace(struct smtp_msgbuf *b, const char *s, size_t n);
/* Message content: counted, scanned, stored while within limits. */
void smtp_msgbuf_put(struct smtp_msgbuf *b, const char *s, size_t n);
/* 1 when the message must be refused (too big / header too big / OOM). */
int smtp_msgbuf_failed(const struct smtp_msgbuf *b);
/* Make sure the content ends with a line end (BDAT may not). */
void smtp_msgbuf_finish(struct smtp_msgbuf *b);
void smtp_msgbuf_free(struct smtp_msgbuf *b);
/* Cap on the bytes all message buffers of the process hold (0 = none);
 * a buffer that would cross it fails like an allocation failure. */
void smtp_msgbuf_set_budget(size_t limit);
size_t smtp_msgbuf_buffered(void);

/* smtpd_forbid_bare_newline: normalize (also "no") or yes (reject).
 * LOCAL (sendmail -bs): a bare LF is a line end like CR LF, so "." LF ends
 * the message -- the local user is the only author of the stream, there is
 * no other hop to smuggle past. */
enum smtp_bare_policy { SMTP_BARE_NORMALIZE = 0, SMTP_BARE_REJECT = 1, SMTP_BARE_LOCAL = 2 };

struct smtp_data_dec {
	unsigned char state;
	unsigned char policy;
};
enum smtp_data_status {
	SMTP_DATA_MORE = 0,        /* all input used, message not complete */
	SMTP_DATA_END,             /* CRLF.CRLF seen; *used counts its bytes */
	SMTP_DATA_BARE,            /* bare CR or LF under SMTP_BARE_REJECT */
};

void smtp_data_init(struct smtp_data_dec *d, enum smtp_bare_policy policy);
/* Decode in[0..n): content goes to out; *used = bytes consumed (all of
 * them unless the message ended or was refused). Input may be split at
 * any byte: the state carries over. */
enum smtp_data_status smtp_data_feed(struct smtp_data_dec *d, const char *in, size_t n,
                                     size_t *used, struct smtp_msgbuf *out);

/* BDAT chunks: binary, no dot-unstuffing; CRLF stored as LF, even when the
 * CR ends one chunk and the LF starts the next. */
struct smtp_bdat_conv {
	unsigned char pending_cr;
};
void smtp_bdat_feed(struct smtp_bdat_conv *c, const char *in, size_t n, struct smtp_msgbuf *out);
/* After the LAST chunk: a CR left pending is content. */
void smtp_bdat_finish(struct smtp_bdat_conv *c, struct smtp_msgbuf *out);

#endif
