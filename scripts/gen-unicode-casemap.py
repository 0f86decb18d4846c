#!/usr/bin/env python3
"""Generates core/unicode_casemap_data.c, the tables of i;unicode-casemap
(RFC 5051), from the Unicode Character Database's UnicodeData.txt (Debian
package unicode-data).

Usage: scripts/gen-unicode-casemap.py [UnicodeData.txt] > core/unicode_casemap_data.c

The canonical form of a code point: its simple titlecase mapping (field
14) when it has one, then, when that has a decomposition (field 5,
canonical or compatibility), the canonical forms of the decomposition's
code points in turn, else that code point. Hangul syllables decompose
algorithmically (Unicode chapter 3.12); the C code does that, not a table.

The tables: for each code point whose canonical form is not itself, that
form as UTF-8 in one blob. Found by a two-level lookup: stage1[cp >> SHIFT]
names a block of 1 << SHIFT entries (blocks with equal contents shared),
each entry 0 (the code point is its own form) or 1 + an index into map[],
map[i] = offset << 8 | length into blob[].

The module is also the Python model of the comparator the tests use
(canon(), fold()).
"""
import hashlib
import sys

DEFAULT = "/usr/share/unicode/UnicodeData.txt"
SHIFT = 7
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3


def load(path=DEFAULT):
    """(title, decomp): dicts code point -> code point / list of them."""
    title, decomp = {}, {}
    with open(path, encoding="ascii") as f:
        for line in f:
            fld = line.rstrip("\n").split(";")
            if len(fld) != 15:
                raise SystemExit("%s: odd line: %r" % (path, line))
            cp = int(fld[0], 16)
            if fld[5]:
                parts = fld[5].split()
                if parts[0].startswith("<"):
                    parts = parts[1:]
                decomp[cp] = [int(p, 16) for p in parts]
            if fld[14]:
                t = int(fld[14], 16)
                if t != cp:
                    title[cp] = t
    return title, decomp


def hangul(cp):
    """The conjoining jamo of a precomposed Hangul syllable."""
    s = cp - HANGUL_FIRST
    lead, vowel, trail = 0x1100 + s // 588, 0x1161 + (s % 588) // 28, s % 28
    return [lead, vowel] + ([0x11A7 + trail] if trail else [])


def canon(cp, title, decomp, depth=0):
    """The canonical form of one code point: a list of code points."""
    if depth > 32:
        raise SystemExit("U+%04X: mapping does not end" % cp)
    t = cp
    while t in title:                 # a titlecase form is its own titlecase
        t = title[t]
        depth += 1
        if depth > 32:
            raise SystemExit("U+%04X: titlecase does not end" % cp)
    if t in decomp:
        out = []
        for c in decomp[t]:
            out += canon(c, title, decomp, depth + 1)
        return out
    if HANGUL_FIRST <= t <= HANGUL_LAST:
        return hangul(t)
    return [t]


def utf8_units(data):
    """Code points of UTF-8 bytes, each bad octet as itself (a negative
    number -octet, so that it never equals a code point)."""
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b < 0x80:
            yield b
            i += 1
            continue
        need = 1 if 0xC2 <= b <= 0xDF else 2 if 0xE0 <= b <= 0xEF else 3 if 0xF0 <= b <= 0xF4 else 0
        seq = data[i:i + need + 1]
        cp = None
        if need and len(seq) == need + 1:
            try:
                # Python's decoder refuses overlongs, surrogates and
                # past U+10FFFF, as the C one does
                cp = ord(seq.decode("utf-8"))
            except UnicodeDecodeError:
                pass
        if cp is None:
            yield -b
            i += 1
        else:
            yield cp
            i += need + 1


def fold(data, title, decomp):
    """The canonical form (bytes) of UTF-8 bytes: bad octets kept as they are."""
    out = bytearray()
    for u in utf8_units(data):
        if u < 0:
            out.append(-u)
        else:
            for c in canon(u, title, decomp):
                out += chr(c).encode("utf-8", "surrogatepass")
    return bytes(out)


def c_array(name, ctype, values, per_line, fmt):
    lines = ["static const %s %s[%d] = {" % (ctype, name, len(values))]
    for i in range(0, len(values), per_line):
        lines.append("\t" + ", ".join(fmt % v for v in values[i:i + per_line]) + ",")
    lines.append("};")
    return "\n".join(lines)


def generate(path=DEFAULT):
    title, decomp = load(path)
    # ASCII is the C fast path: only a-z change, to A-Z.
    for c in range(0x80):
        want = [c - 32] if 0x61 <= c <= 0x7A else [c]
        if canon(c, title, decomp) != want:
            raise SystemExit("U+%04X: ASCII form is not ASCII uppercase" % c)
    forms = {}
    for cp in sorted(set(title) | set(decomp)):
        if cp < 0x80 or HANGUL_FIRST <= cp <= HANGUL_LAST:
            continue
        f = canon(cp, title, decomp)
        if f != [cp]:
            forms[cp] = "".join(chr(c) for c in f).encode("utf-8", "surrogatepass")
    blob = bytearray()
    where = {}
    maps = []
    index = {}
    for cp in sorted(forms):
        b = forms[cp]
        if not b:
            raise SystemExit("U+%04X: empty form" % cp)
        if b not in where:
            # a form that is a tail of the blob so far is shared
            at = blob.find(b)
            if at < 0:
                at = len(blob)
                blob += b
            if len(b) > 255 or at >= 1 << 24:
                raise SystemExit("U+%04X: form too long for the table" % cp)
            where[b] = len(maps)
            maps.append(at << 8 | len(b))
        index[cp] = where[b] + 1
    if len(maps) + 1 > 0xFFFF:
        raise SystemExit("too many forms for 16-bit entries")
    nblocks = (0x10FFFF >> SHIFT) + 1
    size = 1 << SHIFT
    blocks, stage1, seen = [], [], {}
    for blk in range(nblocks):
        entries = tuple(index.get((blk << SHIFT) + k, 0) for k in range(size))
        if entries not in seen:
            seen[entries] = len(blocks)
            blocks.append(entries)
        stage1.append(seen[entries])
    if len(blocks) > 256:
        raise SystemExit("too many blocks for 8-bit stage1")
    stage2 = [e for b in blocks for e in b]
    maxlen = max(m & 0xFF for m in maps)
    out = []
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    out.append("/* Generated by scripts/gen-unicode-casemap.py from UnicodeData.txt: do not")
    out.append(" * edit. i;unicode-casemap (RFC 5051) forms of the code points that are not")
    out.append(" * their own (%d, %d distinct, %d octets; %d blocks of %d)."
               % (len(forms), len(maps), len(blob), len(blocks), size))
    out.append(" * UnicodeData.txt sha256 %s */" % digest)
    out.append("#include <stdint.h>")
    out.append("")
    out.append('#include "unicode_casemap_int.h"')
    out.append("")
    out.append("#if UCM_SHIFT != %d || UCM_MAX_FORM < %d" % (SHIFT, maxlen))
    out.append('#error "unicode_casemap_int.h does not match the generated tables"')
    out.append("#endif")
    out.append("")
    out.append(c_array("stage1", "uint8_t", stage1, 16, "%d"))
    out.append("")
    out.append(c_array("stage2", "uint16_t", stage2, 16, "%d"))
    out.append("")
    out.append(c_array("maps", "uint32_t", maps, 8, "0x%08x"))
    out.append("")
    out.append(c_array("blob", "uint8_t", list(blob), 16, "0x%02x"))
    out.append("")
    out.append("const uint8_t *const ucm_stage1 = stage1;")
    out.append("const uint16_t *const ucm_stage2 = stage2;")
    out.append("const uint32_t *const ucm_maps = maps;")
    out.append("const uint8_t *const ucm_blob = blob;")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(generate(sys.argv[1] if len(sys.argv) > 1 else DEFAULT))
