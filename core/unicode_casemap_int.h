/* The tables scripts/gen-unicode-casemap.py generates into
 * core/unicode_casemap_data.c: stage1[cp >> UCM_SHIFT] is a block of
 * stage2, stage2[block << UCM_SHIFT | cp & mask] is 0 (the code point is
 * its own form) or 1 + i, maps[i] = offset << 8 | length of its form's
 * UTF-8 in blob. */
#ifndef POSTERN_UNICODE_CASEMAP_INT_H
#define POSTERN_UNICODE_CASEMAP_INT_H

#include <stdint.h>

#define UCM_SHIFT 7
#define UCM_MAX_FORM 64      /* octets of the longest form (U+FDFA's: 33) */

extern const uint8_t *const ucm_stage1;
extern const uint16_t *const ucm_stage2;
extern const uint32_t *const ucm_maps;
extern const uint8_t *const ucm_blob;

#endif
