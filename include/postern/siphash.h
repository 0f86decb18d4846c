/* SipHash-2-4 (Aumasson & Bernstein): a keyed hash for tables whose keys
 * come from mail (SORT and THREAD keys): without the key, no one can
 * choose strings that all land in one bucket. */
#ifndef POSTERN_SIPHASH_H
#define POSTERN_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

struct pt_sip {
	uint64_t v[4];
	uint64_t tail;                 /* bytes not yet in a full word */
	size_t len;                    /* bytes so far */
};

void pt_sip_init(struct pt_sip *s, const uint8_t key[16]);
void pt_sip_update(struct pt_sip *s, const void *p, size_t n);
uint64_t pt_sip_final(struct pt_sip *s);
uint64_t pt_siphash(const uint8_t key[16], const void *p, size_t n);

/* The key of this process for hash tables (random, made at first use;
 * its children keep it: nothing shows a hash value outside). */
const uint8_t *pt_table_key(void);
/* pt_siphash under pt_table_key() of the NUL-terminated s. */
uint64_t pt_table_hash(const char *s);

#endif
