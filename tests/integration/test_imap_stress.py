"""IMAP + POP3 concurrency stress: six IMAP sessions of one user run a seeded
random mix of commands on two folders while SMTP delivers and POP3 deletes;
each session checks what it is told against a model built from the
responses alone (RFC 3501 EXISTS/EXPUNGE/UID rules, flags, immutable
bodies) and at the end against a fresh session. POSTERN_STRESS_SEEDS
(comma list), POSTERN_STRESS_SECONDS and POSTERN_STRESS_CLIENTS override
the fixed run.

Every tagged NO or BAD counts as a failed command, except exactly the
answers Dovecot 2.3 gives to the same race (checked against its source
and a live dovecot-imapd): NO [EXPUNGEISSUED] to COPY/MOVE of a set
another session expunged part of (nothing copied or moved, the EXPUNGEs
told with it), and for the folder the sessions delete and create again,
[NONEXISTENT], [ALREADYEXISTS] and [TRYCREATE]. STORE and FETCH of such
sets answer OK (FETCH with [EXPUNGEISSUED], as Dovecot). Each seed ends
with "N commands, F failed" and fails unless F is 0."""
import os
import random
import re
import select
import signal
import smtplib
import socket
import subprocess
import threading
import time
import unittest
from collections import deque

from harness import SANITIZE, Server

SEEDS = [int(x) for x in os.environ.get("POSTERN_STRESS_SEEDS", "20261128").split(",")]
SECONDS = float(os.environ.get("POSTERN_STRESS_SECONDS", "20"))
NCLIENTS = int(os.environ.get("POSTERN_STRESS_CLIENTS", "6"))
TIMEOUT = 60 if SANITIZE else 30
SYSFLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]
KEYWORDS = ["$Work", "Junk", "kw1", "$$odd", "NIL"]
# Made now and then, so sessions grow the keyword table concurrently.
RARE_KEYWORDS = ["k%02d" % i for i in range(20)]
FOLDERS = ["INBOX", "Other"]
# Deleted and created again while others copy and append to it (never
# selected: its UIDVALIDITY changes under a session, which ends it).
TMP = "Tmp"
TRYCREATE = ("[TRYCREATE]",)
NO_EXPUNGE_CMDS = ("FETCH", "STORE", "SEARCH", "UID FETCH", "UID STORE", "UID SEARCH")


class StressFailure(AssertionError):
    pass


# ---- response parsing (literals inline as {n}\r\n<n bytes>) ----

def parse_value(buf, i):
    while i < len(buf) and buf[i:i + 1] == b" ":
        i += 1
    c = buf[i:i + 1]
    if c == b"(":
        out, i = [], i + 1
        while True:
            while buf[i:i + 1] == b" ":
                i += 1
            if buf[i:i + 1] == b")":
                return out, i + 1
            if i >= len(buf):
                raise ValueError("unterminated list")
            v, i = parse_value(buf, i)
            out.append(v)
    if c == b'"':
        out, i = bytearray(), i + 1
        while buf[i:i + 1] != b'"':
            if i >= len(buf):
                raise ValueError("unterminated string")
            if buf[i:i + 1] == b"\\":
                i += 1
            out += buf[i:i + 1]
            i += 1
        return bytes(out), i + 1
    if c == b"{":
        m = re.match(rb"\{(\d+)\}\r\n", buf[i:])
        if not m:
            raise ValueError("bad literal at %d" % i)
        n = int(m.group(1))
        j = i + m.end()
        if j + n > len(buf):
            raise ValueError("short literal")
        return buf[j:j + n], j + n
    j, depth = i, 0
    while j < len(buf):
        ch = buf[j:j + 1]
        if ch == b"[":
            depth += 1
        elif ch == b"]":
            depth -= 1
        elif depth == 0 and ch in (b" ", b"(", b")"):
            break
        j += 1
    if j == i:
        raise ValueError("empty atom at %d in %r" % (i, buf[:200]))
    atom = buf[i:j].decode()
    return (None if atom == "NIL" else atom), j


def parse_fetch(buf):
    items, i = parse_value(buf, 0)
    if not isinstance(items, list) or len(items) % 2:
        raise ValueError("odd FETCH list")
    return {items[k].upper(): items[k + 1] for k in range(0, len(items), 2)}


def expand_set(text):
    out = []
    for part in text.split(","):
        if ":" in part:
            a, b = part.split(":")
            a, b = int(a), int(b)
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


def seqset(nums):
    return ",".join(str(n) for n in nums)


class Shared:
    """What all sessions agree on: a message's bytes never change; UIDs
    seen expunged never come back; highest UID known per folder."""

    def __init__(self):
        self.lock = threading.Lock()
        self.immutable = {}     # (folder, uidvalidity, uid, item) -> value
        self.expunged = {}      # (folder, uidvalidity, uid) -> order in which it was seen expunged
        self.max_uid = {}       # (folder, uidvalidity) -> uid
        self.max_modseq = {}    # (folder, uidvalidity) -> HIGHESTMODSEQ seen (RFC 7162: never back)
        self.nil_bodies = set()
        self.recent = {}        # key -> the read-write session that saw it \Recent

    def same(self, key, value, what):
        with self.lock:
            old = self.immutable.setdefault(key, value)
        if old != value:
            raise StressFailure("%s of %s changed: %r -> %r" % (what, key, old[:300], value[:300]))

    def saw_modseq(self, folder, uidv, ms):
        with self.lock:
            k = (folder, uidv)
            if ms > self.max_modseq.get(k, 0):
                self.max_modseq[k] = ms

    def saw_uid(self, folder, uidv, uid):
        with self.lock:
            k = (folder, uidv)
            if uid > self.max_uid.get(k, 0):
                self.max_uid[k] = uid


class Client:
    def __init__(self, name, port, shared, rng):
        self.name = name
        self.shared = shared
        self.rng = rng
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        self.log = deque(maxlen=int(os.environ.get("POSTERN_STRESS_HISTORY", "30")))
        self.ntag = 0
        self.folder = None
        self.readonly = False
        self.uidvalidity = None
        self.uidnext = {}           # folder -> last UIDNEXT seen at SELECT
        self.modseq = {}            # (folder, uidvalidity, uid) -> last MODSEQ told
        self.seq = []               # index = seq-1: [uid or None, set(flags) or None]
        self.cmd = None
        self.born = 0
        self.stats = {}
        self.failed = []            # (command, tagged answer) of each failed command
        self.sent = None            # the running command's text, for the failure list
        self.nonpeek = False
        self.greeting = self.line()

    # ---- wire ----
    def fail(self, why):
        raise StressFailure("%s: %s" % (self.name, why))

    def send(self, data, same_command=False):
        """same_command: more of the running command (IDLE's DONE): what
        comes after it may have been sent by the server before, so the
        entries it tells of are no younger than the command's start."""
        if isinstance(data, str):
            data = data.encode()
        self.log.append("C: " + repr(data[:160])[2:-1])
        if not same_command:
            with self.shared.lock:
                self.born = len(self.shared.expunged)
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            self.fail("server closed the connection; buffered %r" % self.buf[:200])
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def response(self):
        """One response with its literals inline."""
        out = self.line()
        while True:
            m = re.search(rb"\{(\d+)\}$", out)
            if not m:
                break
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]
            out += self.line()
        self.log.append("S: " + repr(out[:160])[2:-1])
        return out

    def tag(self):
        self.ntag += 1
        self.stats["commands"] = self.stats.get("commands", 0) + 1
        return "%s%d" % (self.name, self.ntag)

    def until_tag(self, tag, allow_no=()):
        """Handle untagged responses; return (status, text, untagged list).
        A BAD, or a NO whose code is not in allow_no (the answers Dovecot
        gives there too), is a failed command: counted, and the run goes on."""
        got = []
        while True:
            r = self.response()
            if r.startswith(tag.encode() + b" "):
                rest = r[len(tag) + 1:].decode(errors="replace")
                status, _, text = rest.partition(" ")
                if status == "BAD" or (status == "NO" and not any(text.startswith(a) for a in allow_no)):
                    self.stats["failed"] = self.stats.get("failed", 0) + 1
                    self.failed.append((self.sent or self.cmd, rest))
                    self.log.append("-- counted as a failed command")
                elif status == "NO":
                    code = text.split("]")[0] + "]"
                    self.stats[code] = self.stats.get(code, 0) + 1
                elif status != "OK":
                    self.fail("tagged answer neither OK, NO nor BAD: %s" % rest)
                return status, text, got
            if r.startswith(b"+"):
                self.fail("unexpected continuation %r" % r)
            self.untagged(r)
            got.append(r)

    def run(self, text, allow_no=()):
        self.cmd = " ".join(text.split()[:2]).upper() if text.upper().startswith("UID ") else \
            text.split()[0].upper()
        t = self.tag()
        self.sent = text
        self.send("%s %s\r\n" % (t, text))
        try:
            return self.until_tag(t, allow_no)
        finally:
            self.cmd = None
            self.sent = None

    # ---- model ----
    def key(self, uid, item):
        return (self.folder, self.uidvalidity, uid, item)

    def check_order(self, idx):
        uid = self.seq[idx][0]
        for j in range(idx - 1, -1, -1):
            if self.seq[j][0] is not None:
                if self.seq[j][0] >= uid:
                    self.fail("UID %d at seq %d not above UID %d at seq %d" % (uid, idx + 1, self.seq[j][0], j + 1))
                break
        for j in range(idx + 1, len(self.seq)):
            if self.seq[j][0] is not None:
                if self.seq[j][0] <= uid:
                    self.fail("UID %d at seq %d not below UID %d at seq %d" % (uid, idx + 1, self.seq[j][0], j + 1))
                break

    def untagged(self, r):
        m = re.match(rb"\* (\d+) (EXISTS|EXPUNGE|RECENT|FETCH)\b ?", r)
        if m:
            n, what = int(m.group(1)), m.group(2).decode()
            self.stats[what] = self.stats.get(what, 0) + 1
            if what == "EXISTS":
                if n < len(self.seq):
                    self.fail("EXISTS %d below %d without EXPUNGE" % (n, len(self.seq)))
                # An entry is born no earlier than this command was sent:
                # a UID seen expunged before that cannot be in it.
                self.seq.extend([None, None, self.born] for _ in range(n - len(self.seq)))
            elif what == "EXPUNGE":
                if self.cmd in NO_EXPUNGE_CMDS:
                    self.fail("EXPUNGE during %s" % self.cmd)
                if not 1 <= n <= len(self.seq):
                    self.fail("EXPUNGE %d outside 1..%d" % (n, len(self.seq)))
                uid = self.seq.pop(n - 1)[0]
                if uid is not None:
                    with self.shared.lock:
                        self.shared.expunged.setdefault((self.folder, self.uidvalidity, uid),
                                                        len(self.shared.expunged))
            elif what == "RECENT":
                if n > len(self.seq):
                    self.fail("RECENT %d above EXISTS %d" % (n, len(self.seq)))
            else:
                self.fetch(n, r[m.end():])
            return
        m = re.match(rb"\* OK \[(UIDVALIDITY|UIDNEXT|HIGHESTMODSEQ) (\d+)\]", r)
        if m:
            setattr(self, "_sel_" + m.group(1).decode().lower(), int(m.group(2)))
            return
        if r.startswith(b"* BYE") and self.cmd != "LOGOUT":
            self.fail("unexpected BYE: %r" % r)
        if r.startswith(b"* BAD") or r.startswith(b"* NO"):
            self.fail("untagged %r" % r)

    def fetch(self, n, body):
        if not 1 <= n <= len(self.seq):
            self.fail("FETCH for seq %d outside 1..%d" % (n, len(self.seq)))
        try:
            it = parse_fetch(body)
        except (ValueError, IndexError) as e:
            self.fail("unparsable FETCH %r: %s" % (body[:200], e))
        ent = self.seq[n - 1]
        if "UID" in it:
            uid = int(it["UID"])
            if ent[0] is None:
                with self.shared.lock:
                    when = self.shared.expunged.get((self.folder, self.uidvalidity, uid))
                if when is not None and when < ent[2]:
                    self.fail("new message at seq %d has UID %d, expunged before" % (n, uid))
                ent[0] = uid
                self.check_order(n - 1)
                self.shared.saw_uid(self.folder, self.uidvalidity, uid)
            elif ent[0] != uid:
                self.fail("FETCH seq %d says UID %d, model has %d" % (n, uid, ent[0]))
        if "FLAGS" in it:
            fl = it["FLAGS"]
            if not isinstance(fl, list):
                self.fail("FLAGS not a list: %r" % fl)
            ent[1] = set("NIL" if f is None else f for f in fl) - {"\\Recent"}
            if "\\Recent" in fl and not self.readonly and ent[0] is not None:
                # \Recent goes to one read-write session only (RFC 3501 2.3.2).
                with self.shared.lock:
                    first = self.shared.recent.setdefault(self.key(ent[0], "recent"), self.name)
                if first != self.name:
                    self.fail("UID %d is \\Recent here and in %s" % (ent[0], first))
        uid = ent[0]
        if "MODSEQ" in it and uid is not None:
            # RFC 7162: a message's mod-sequence only grows
            ms = it["MODSEQ"]
            if not isinstance(ms, list) or len(ms) != 1 or not ms[0].isdigit() or int(ms[0]) == 0:
                self.fail("bad MODSEQ %r" % ms)
            k = (self.folder, self.uidvalidity, uid)
            if int(ms[0]) < self.modseq.get(k, 0):
                self.fail("MODSEQ of UID %d went back: %s < %d" % (uid, ms[0], self.modseq[k]))
            self.modseq[k] = int(ms[0])
        body_v = it.get("BODY[]", "absent")
        if body_v is None:
            with self.shared.lock:
                self.shared.nil_bodies.add((self.folder, self.uidvalidity, uid))
        elif body_v != "absent":
            if "RFC822.SIZE" in it and int(it["RFC822.SIZE"]) != len(body_v):
                self.fail("RFC822.SIZE %s but BODY[] has %d octets (seq %d)" % (it["RFC822.SIZE"], len(body_v), n))
            if uid is not None:
                self.shared.same(self.key(uid, "BODY"), body_v, "BODY[]")
        if body_v not in (None, "absent") and self.nonpeek and not self.readonly:
            if "FLAGS" in it:
                if "\\Seen" not in ent[1]:
                    self.fail("FETCH BODY[] of seq %d answered FLAGS without \\Seen" % n)
            elif ent[1] is not None and "\\Seen" not in ent[1]:
                self.fail("FETCH BODY[] set \\Seen on seq %d without telling FLAGS" % n)
        if uid is not None:
            head, text = it.get("BODY[HEADER]"), it.get("BODY[TEXT]")
            if head is not None and text is not None:
                self.shared.same(self.key(uid, "BODY"), head + text, "BODY[HEADER] + BODY[TEXT]")
            part = it.get("BODY[]<0>")
            if part is not None:
                whole = self.shared.immutable.get(self.key(uid, "BODY"))
                if whole is not None and whole[:len(part)] != part:
                    self.fail("BODY[]<0.%d> of UID %d is not the start of BODY[]" % (len(part), uid))
            for item in ("RFC822.SIZE", "INTERNALDATE", "ENVELOPE", "BODYSTRUCTURE"):
                if item in it and it[item] is not None:
                    self.shared.same(self.key(uid, item), repr(it[item]).encode(), item)

    # ---- commands ----
    def login(self):
        st, text, _ = self.run("LOGIN alice secret")

    def select(self, folder, examine=False):
        with self.shared.lock:
            before = dict(self.shared.max_uid)
            before_ms = dict(self.shared.max_modseq)
        self._sel_uidvalidity = self._sel_uidnext = self._sel_highestmodseq = None
        self.seq = []
        self.folder = folder
        self.uidvalidity = None
        st, text, _ = self.run("%s %s" % ("EXAMINE" if examine else "SELECT", folder))
        self.readonly = examine
        uv, un = self._sel_uidvalidity, self._sel_uidnext
        if uv is None or un is None:
            self.fail("SELECT without UIDVALIDITY/UIDNEXT")
        self.uidvalidity = uv
        prev = self.uidnext.get((folder, uv), 0)
        if un < prev:
            self.fail("UIDNEXT went back from %d to %d in %s" % (prev, un, folder))
        self.uidnext[(folder, uv)] = un
        top = before.get((folder, uv), 0)
        if un <= top:
            self.fail("UIDNEXT %d of %s not above UID %d seen before the SELECT" % (un, folder, top))
        hm = self._sel_highestmodseq
        if hm is None:
            self.fail("SELECT without HIGHESTMODSEQ")
        if hm < before_ms.get((folder, uv), 0):
            self.fail("HIGHESTMODSEQ of %s went back: %d < %d" % (folder, hm, before_ms[(folder, uv)]))
        self.shared.saw_modseq(folder, uv, hm)

    def known(self):
        return [i for i, e in enumerate(self.seq) if e[0] is not None]

    def pick_seqs(self, star=True):
        n = len(self.seq)
        if n == 0:
            return None
        r = self.rng.random()
        if r < 0.2 and star:
            return "1:*"
        k = self.rng.randint(1, min(4, n))
        return seqset(sorted(self.rng.sample(range(1, n + 1), k)))

    def pick_uids(self, star=True):
        known = [e[0] for e in self.seq if e[0] is not None]
        if not known and not star:
            return None
        if not known or (star and self.rng.random() < 0.1):
            return "1:*"
        k = self.rng.randint(1, min(4, len(known)))
        uids = sorted(self.rng.sample(known, k))
        if self.rng.random() < 0.2:
            uids.append(uids[-1] + 100000)   # a UID that does not exist is no error
        return seqset(uids)

    def pick_flags(self):
        fl = self.rng.sample(SYSFLAGS, self.rng.randint(0, 2)) + self.rng.sample(KEYWORDS, self.rng.randint(0, 2))
        if self.rng.random() < 0.05:
            fl.append(self.rng.choice(RARE_KEYWORDS))
        if not fl:
            fl = [self.rng.choice(SYSFLAGS)]
        # \Deleted rarely, or everything disappears at once.
        if "\\Deleted" in fl and self.rng.random() < 0.5:
            fl.remove("\\Deleted")
            fl = fl or ["\\Seen"]
        return fl

    def op_fetch(self):
        uid = self.rng.random() < 0.5
        s = self.pick_uids() if uid else self.pick_seqs()
        if s is None:
            return
        items = self.rng.choice(["(UID FLAGS)", "(FLAGS)", "(UID RFC822.SIZE BODY.PEEK[])", "(ENVELOPE UID)",
                                 "(BODYSTRUCTURE FLAGS)", "(RFC822.SIZE INTERNALDATE UID FLAGS)",
                                 "(UID FLAGS RFC822.SIZE BODY.PEEK[] ENVELOPE BODYSTRUCTURE)",
                                 "(UID BODY[])", "(UID BODY.PEEK[HEADER] BODY.PEEK[TEXT])",
                                 "(UID BODY.PEEK[]<0.%d>)" % self.rng.randint(1, 400)])
        self.nonpeek = "BODY[]" in items
        try:
            self.run("%sFETCH %s %s" % ("UID " if uid else "", s, items))
        finally:
            self.nonpeek = False

    def op_store(self):
        if self.readonly:
            return
        uid = self.rng.random() < 0.4
        s = self.pick_uids() if uid else self.pick_seqs()
        if s is None:
            return
        op = self.rng.choice(["+", "+", "-", "-", ""])
        silent = self.rng.random() < 0.3
        fl = self.pick_flags()
        if uid:
            uids = set(expand_set(s.replace("*", str(max([e[0] or 0 for e in self.seq] + [0])))))
            targets = [i for i, e in enumerate(self.seq) if e[0] in uids]
            if s == "1:*":
                targets = list(range(len(self.seq)))
        else:
            targets = [x - 1 for x in expand_set(s.replace("*", str(len(self.seq))))]
        tuids = [self.seq[i][0] for i in targets]
        st, text, got = self.run("%sSTORE %s %sFLAGS%s (%s)" % ("UID " if uid else "", s, op,
                                                              ".SILENT" if silent else "", " ".join(fl)))
        want = set(fl)
        if silent and st == "OK":
            for i, u in zip(targets, tuids):
                # No EXPUNGE during STORE: entry i is still the target (its
                # UID may have been learned from a FETCH in the reply).
                e = self.seq[i]
                if (u is not None and e[0] != u) or e[1] is None:
                    continue
                if op == "+":
                    e[1] |= want
                elif op == "-":
                    e[1] -= want
                else:
                    e[1] = set(want)
            return
        if silent or st != "OK":
            return
        # The last FETCH for each target is the echo of this STORE (a sync
        # before it may tell what others changed earlier).
        seen = set()
        for r in reversed(got):
            m = re.match(rb"\* (\d+) FETCH ", r)
            if not m:
                continue
            n = int(m.group(1))
            if n in seen or (n - 1) not in targets:
                continue
            seen.add(n)
            it = parse_fetch(r[m.end():])
            have = set("NIL" if f is None else f for f in it.get("FLAGS", [])) - {"\\Recent"}
            if op == "+" and not want <= have:
                self.fail("STORE +FLAGS %s echoed %s for seq %d" % (want, have, n))
            if op == "-" and want & have:
                self.fail("STORE -FLAGS %s echoed %s for seq %d" % (want, have, n))
            if op == "" and want != have:
                self.fail("STORE FLAGS %s echoed %s for seq %d" % (want, have, n))
            if uid and "UID" not in it:
                self.fail("UID STORE echo without UID")
        # A target another session expunged is skipped, still OK (as
        # Dovecot answers): no echo, and it must be gone by the end.
        for i in targets:
            if i + 1 in seen:
                continue
            if self.seq[i][0] is None:
                continue
            with self.shared.lock:
                self.shared.nil_bodies.add((self.folder, self.uidvalidity, self.seq[i][0]))

    def op_search(self):
        uid = self.rng.random() < 0.5
        crit = self.rng.choice(["ALL", "DELETED", "UNSEEN", "KEYWORD Junk", "FLAGGED", "NOT DELETED",
                                "SUBJECT stress", "LARGER 100", "OR SEEN ANSWERED"])
        st, text, got = self.run("%sSEARCH %s" % ("UID " if uid else "", crit))
        res = []
        for r in got:
            if r.startswith(b"* SEARCH"):
                res = [int(x) for x in r[8:].split()]
        if uid:
            known = set(e[0] for e in self.seq if e[0] is not None)
            if any(e[0] is None for e in self.seq):
                return
            bad = [u for u in res if u not in known]
            if bad:
                self.fail("UID SEARCH returned UIDs %s not in the view" % bad)
            if crit == "ALL":
                self.search_all_left_out(known - set(res))
        else:
            bad = [n for n in res if not 1 <= n <= len(self.seq)]
            if bad:
                self.fail("SEARCH returned seqs %s outside 1..%d" % (bad, len(self.seq)))
            if res != sorted(set(res)):
                self.fail("SEARCH result not ascending and unique: %s" % res)
            if crit == "ALL":
                self.search_all_left_out(set(self.seq[n - 1][0] for n in range(1, len(self.seq) + 1)
                                             if n not in res))

    def search_all_left_out(self, uids):
        """SEARCH ALL may leave out what another session expunged (RFC
        2180 4.1): such a message must be gone in the end."""
        if None in uids:
            uids.discard(None)
        with self.shared.lock:
            for u in uids:
                self.shared.nil_bodies.add((self.folder, self.uidvalidity, u))

    def message(self):
        n = self.rng.randint(0, 10 ** 9)
        body = "line %d\r\n" % n
        if self.rng.random() < 0.3:
            body += "From the start of a line\r\n>From quoted\r\n"
        body += "x" * self.rng.randint(0, 2000) + "\r\n"
        if self.rng.random() < 0.02:
            # Big enough that FETCH BODY[] goes out in pieces.
            body += ("%s\r\n" % ("z" * 98)) * self.rng.randint(1000, 3000)
        return ("From: stress@example.com.ar\r\nTo: alice@example.com.ar\r\nSubject: stress %s %d\r\n"
                "Message-ID: <%d.%s@example.com.ar>\r\n\r\n%s" % (self.name, n, n, self.name, body)).encode()

    def op_append(self):
        folder = self.rng.choice(FOLDERS)
        msg = self.message()
        fl = self.pick_flags() if self.rng.random() < 0.6 else []
        flags = "(%s) " % " ".join(fl) if fl else ""
        t = self.tag()
        self.cmd = "APPEND"
        self.sent = "APPEND %s %s{%d}" % (folder, flags, len(msg))
        if self.rng.random() < 0.5:
            self.send(b"%s APPEND %s %s{%d+}\r\n" % (t.encode(), folder.encode(), flags.encode(), len(msg)) +
                      msg + b"\r\n")
        else:
            self.send("%s APPEND %s %s{%d}\r\n" % (t, folder, flags, len(msg)))
            while True:
                r = self.response()
                if r.startswith(b"+"):
                    break
                if r.startswith(t.encode()):
                    self.fail("APPEND refused: %r" % r)
                self.untagged(r)
            self.send(msg + b"\r\n", same_command=True)
        st, text, _ = self.until_tag(t)
        self.cmd = self.sent = None
        if st != "OK":
            return   # counted as failed
        m = re.match(r"\[APPENDUID (\d+) (\d+)\]", text)
        if not m:
            self.fail("APPEND without APPENDUID: %s" % text)
        uv, uid = int(m.group(1)), int(m.group(2))
        with self.shared.lock:
            if (folder, uv, uid) in self.shared.expunged:
                self.fail("APPENDUID %d reuses an expunged UID" % uid)
            old = self.shared.immutable.get((folder, uv, uid, "BODY"))
        # mboxrd quoting: "From " and ">From " lines come back as sent.
        self.shared.same((folder, uv, uid, "BODY"), msg, "BODY[]")
        self.shared.saw_uid(folder, uv, uid)

    def op_copy(self, move):
        if move and self.readonly:
            return
        uid = self.rng.random() < 0.5
        s = self.pick_uids() if uid else self.pick_seqs()
        if s is None:
            return
        dest = FOLDERS[1] if self.folder == FOLDERS[0] else FOLDERS[0]
        # Never 1:* here: copying whole folders back and forth doubles them.
        s = self.pick_uids(star=False) if uid else self.pick_seqs(star=False)
        if s is None:
            return
        st, text, got = self.run("%s%s %s %s" % ("UID " if uid else "", "MOVE" if move else "COPY", s, dest),
                                 allow_no=("[EXPUNGEISSUED]",))
        self.expungeissued_told(st, text, got)
        for r in got + [b"* OK " + text.encode()]:
            m = re.search(rb"\[COPYUID (\d+) ([\d:,]+) ([\d:,]+)\]", r)
            if m:
                uv = int(m.group(1))
                src, dst = expand_set(m.group(2).decode()), expand_set(m.group(3).decode())
                if len(src) != len(dst):
                    self.fail("COPYUID sets differ in size: %r" % r)
                for a, b in zip(src, dst):
                    body = self.shared.immutable.get(self.key(a, "BODY"))
                    if body is not None:
                        self.shared.same((dest, uv, b, "BODY"), body, "BODY[] (copied)")
                    self.shared.saw_uid(dest, uv, b)

    def expungeissued_told(self, st, text, got):
        """COPY/MOVE's NO [EXPUNGEISSUED] is only for a set that holds a
        message another session expunged, and (as Dovecot) its EXPUNGE
        comes with the NO."""
        if st == "NO" and text.startswith("[EXPUNGEISSUED]") and \
                not any(re.match(rb"\* \d+ EXPUNGE", r) for r in got):
            self.fail("NO [EXPUNGEISSUED] without an EXPUNGE: %s" % text)

    def op_tmp(self):
        r = self.rng.random()
        if r < 0.15:
            self.run("DELETE %s" % TMP, allow_no=("[NONEXISTENT]",))
        elif r < 0.3:
            self.run("CREATE %s" % TMP, allow_no=("[ALREADYEXISTS]",))
        elif r < 0.55:
            st, text, got = self.run("STATUS %s (MESSAGES UIDNEXT UIDVALIDITY)" % TMP, allow_no=("[NONEXISTENT]",))
        elif r < 0.8 and self.seq:
            s = self.pick_seqs(star=False)
            st, text, got = self.run("COPY %s %s" % (s, TMP), allow_no=TRYCREATE + ("[EXPUNGEISSUED]",))
            self.expungeissued_told(st, text, got)
        else:
            msg = self.message()
            t = self.tag()
            self.cmd = "APPEND"
            self.sent = "APPEND %s {%d+}" % (TMP, len(msg))
            self.send(b"%s APPEND %s {%d+}\r\n" % (t.encode(), TMP.encode(), len(msg)) + msg + b"\r\n")
            self.until_tag(t, allow_no=TRYCREATE)
            self.cmd = self.sent = None

    def op_status(self):
        folder = self.rng.choice(FOLDERS)
        with self.shared.lock:
            before = dict(self.shared.max_uid)
            before_ms = dict(self.shared.max_modseq)
        st, text, got = self.run("STATUS %s (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT HIGHESTMODSEQ)" % folder)
        for r in got:
            m = re.match(rb'\* STATUS "?(\w+)"? \(MESSAGES (\d+) UIDNEXT (\d+) UIDVALIDITY (\d+) UNSEEN (\d+) '
                         rb'RECENT (\d+) HIGHESTMODSEQ (\d+)\)$', r)
            if m:
                msgs, un, uv = int(m.group(2)), int(m.group(3)), int(m.group(4))
                hm = int(m.group(7))
                if hm < before_ms.get((folder, uv), 0):
                    self.fail("STATUS HIGHESTMODSEQ of %s went back: %d < %d" % (folder, hm, before_ms[(folder, uv)]))
                self.shared.saw_modseq(folder, uv, hm)
                top = before.get((folder, uv), 0)
                if un <= top:
                    self.fail("STATUS UIDNEXT %d of %s not above UID %d seen before" % (un, folder, top))
                if int(m.group(5)) > msgs or int(m.group(6)) > msgs:
                    self.fail("STATUS counts above MESSAGES: %r" % r)
                return
        self.fail("no STATUS line for %s" % folder)

    def op_expunge(self):
        if self.readonly:
            return
        if self.rng.random() < 0.5:
            self.run("EXPUNGE")
        else:
            s = self.pick_uids()
            self.run("UID EXPUNGE %s" % s)

    def op_close(self):
        self.run("CLOSE" if not self.readonly and self.rng.random() < 0.7 else "UNSELECT")
        self.folder = None
        self.seq = []
        self.select(self.rng.choice(FOLDERS), examine=self.rng.random() < 0.1)

    def op_reconnect(self):
        """LOGOUT and a new connection: sessions come and go."""
        self.run("LOGOUT")
        self.sock.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        self.buf = b""
        self.folder = None
        self.seq = []
        self.log.append("-- reconnected")
        self.line()
        self.login()
        self.select(self.rng.choice(FOLDERS))

    def op_idle(self):
        t = self.tag()
        self.cmd = self.sent = "IDLE"
        self.send("%s IDLE\r\n" % t)
        while True:
            r = self.response()
            if r.startswith(b"+"):
                break
            self.untagged(r)
        end = time.time() + self.rng.uniform(0.1, 1.2)
        while time.time() < end:
            ready, _, _ = select.select([self.sock], [], [], max(0, end - time.time()))
            if ready or b"\r\n" in self.buf:
                r = self.response()
                if not r.startswith(b"* OK Still here"):
                    self.untagged(r)
        # Updates told during IDLE may still be in flight when DONE goes.
        self.send("DONE\r\n", same_command=True)
        self.until_tag(t)
        self.cmd = self.sent = None

    def step(self):
        r = self.rng.random()
        if self.folder is None:
            self.select(self.rng.choice(FOLDERS))
        elif len(self.seq) > 60 and not self.readonly and r < 0.2:
            # Keep folders small: delete the oldest few.
            self.run("STORE 1:10 +FLAGS.SILENT (\\Deleted)")
            for e in self.seq[:10]:
                if e[1] is not None:
                    e[1].add("\\Deleted")
            self.run("EXPUNGE")
        elif r < 0.22:
            self.op_fetch()
        elif r < 0.42:
            self.op_store()
        elif r < 0.50:
            self.op_search()
        elif r < 0.60:
            self.op_append()
        elif r < 0.66:
            self.op_copy(move=False)
        elif r < 0.72:
            self.op_copy(move=True)
        elif r < 0.79:
            self.op_expunge()
        elif r < 0.84:
            self.op_close()
        elif r < 0.88:
            self.select(self.rng.choice(FOLDERS), examine=self.rng.random() < 0.15)
            if self.rng.random() < 0.7 and self.seq:
                self.run("FETCH 1:* (UID FLAGS)")
        elif r < 0.90:
            self.run(self.rng.choice(["NOOP", "CHECK"]))
        elif r < 0.925:
            self.op_tmp()
        elif r < 0.95:
            self.op_status()
        elif r < 0.99:
            self.op_idle()
        else:
            self.op_reconnect()

    def history(self):
        return "\n".join("    " + l for l in self.log)


def deliverer(port, stop, errors, rng, name="smtp"):
    """Deliveries come from another process (the local delivery agent)
    than the sessions: the races between processes are here."""
    n = 0
    while not stop.is_set():
        n += 1
        body = "delivered %d\r\n" % n + ("From here on\r\n" if n % 3 == 0 else "") + "y" * rng.randint(0, 3000)
        if rng.random() < 0.03:
            body += "\r\n" + ("w" * 76 + "\r\n") * rng.randint(1000, 4000)
        msg = ("From: smtp@example.com.ar\r\nTo: alice@example.com.ar\r\nSubject: stress %s %d\r\n"
               "Message-ID: <%s%d@example.com.ar>\r\n\r\n%s\r\n" % (name, n, name, n, body))
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as c:
                c.sendmail("smtp@example.com.ar", ["alice@example.com.ar"], msg)
        except Exception as e:   # noqa: BLE001 - reported, not swallowed
            errors.append("smtp delivery %d: %r" % (n, e))
            return
        stop.wait(rng.uniform(0.05, 0.5))


def pop3_line(sock, buf):
    while b"\r\n" not in buf[0]:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("pop3 closed")
        buf[0] += chunk
    line, _, buf[0] = buf[0].partition(b"\r\n")
    return line


def pop3_multi(sock, buf):
    out = []
    while True:
        l = pop3_line(sock, buf)
        if l == b".":
            return out
        out.append(l)


def pop3er(port, stop, errors, rng, log):
    """POP3 sessions now and then: LIST/UIDL (a UIDL always names the same
    size; one deleted at QUIT never comes back), RETR (size as LIST said),
    DELE, sometimes RSET or a pause while IMAP works, QUIT."""
    n = 0
    sizes, deleted = {}, set()
    while not stop.is_set():
        stop.wait(rng.uniform(1.0, 2.5))
        if stop.is_set():
            return
        n += 1
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
                buf = [b""]

                def cmd(text, multi=False):
                    s.sendall(text.encode() + b"\r\n")
                    l = pop3_line(s, buf)
                    log.append("pop3 %d: %s -> %s" % (n, text, l[:100]))
                    if multi and l.startswith(b"+OK"):
                        return l, pop3_multi(s, buf)
                    return l, None
                greet = pop3_line(s, buf)
                if not greet.startswith(b"+OK"):
                    raise AssertionError("greeting %r" % greet)
                cmd("USER alice")
                l, _ = cmd("PASS secret")
                if not l.startswith(b"+OK"):
                    raise AssertionError("PASS: %r" % l)
                l, lst = cmd("LIST", multi=True)
                if not l.startswith(b"+OK"):
                    raise AssertionError("LIST: %r" % l)
                l, uidl = cmd("UIDL", multi=True)
                if not l.startswith(b"+OK") or len(uidl) != len(lst):
                    raise AssertionError("UIDL: %r %r" % (l, uidl))
                ids = {}
                for a, b in zip(lst, uidl):
                    num, size = a.split()
                    num2, uid = b.split()
                    if num != num2:
                        raise AssertionError("LIST/UIDL numbering differs: %r %r" % (a, b))
                    if uid in deleted:
                        raise AssertionError("UIDL %r deleted at an earlier QUIT is back" % uid)
                    if sizes.setdefault(uid, int(size)) != int(size):
                        raise AssertionError("UIDL %r was %d octets, now %s" % (uid, sizes[uid], size))
                    ids[int(num)] = uid
                dele = set()
                for _ in range(rng.randint(0, 3)):
                    if not lst:
                        break
                    k = rng.randint(1, len(lst))
                    if k not in dele and rng.random() < 0.6:
                        l, text = cmd("RETR %d" % k, multi=True)
                        if l == b"-ERR Message was expunged by another session.":
                            continue   # an IMAP session was quicker: fair
                        if not l.startswith(b"+OK"):
                            raise AssertionError("RETR: %r" % l)
                        got = sum(len(x) + 2 for x in text)
                        # dot-stuffing adds one octet per line starting with "."
                        got -= sum(1 for x in text if x.startswith(b".."))
                        if got != int(lst[k - 1].split()[1]):
                            raise AssertionError("RETR %d: %d octets, LIST said %r" % (k, got, lst[k - 1]))
                    l, _ = cmd("DELE %d" % k)
                    if k in dele:
                        if l != b"-ERR Message is deleted.":
                            raise AssertionError("second DELE: %r" % l)
                    elif not l.startswith(b"+OK"):
                        raise AssertionError("DELE: %r" % l)
                    dele.add(k)
                if rng.random() < 0.15:
                    l, _ = cmd("RSET")
                    dele = set()
                if rng.random() < 0.3:
                    stop.wait(rng.uniform(0.2, 1.0))
                if rng.random() < 0.1:
                    continue   # no QUIT: nothing changes
                l, _ = cmd("QUIT")
                if not l.startswith(b"+OK"):
                    raise AssertionError("QUIT: %r" % l)
                deleted.update(ids[k] for k in dele)
        except Exception as e:   # noqa: BLE001
            errors.append("pop3 session %d: %r\n%s" % (n, e, "\n".join(list(log)[-15:])))
            return


class Stress(unittest.TestCase):
    def start_server(self):
        s = Server(modules=("mbox", "smtp", "imap", "pop3"), listeners=("smtpd", "imap", "pop3"))
        s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\nauth_mechanisms = plain login\n"
                     "smtpd_client_name_timeout = 0\nmail_max_userip_connections = 40\n" % s.passwd_file)
        self.addCleanup(s.cleanup)
        s.start()
        return s

    def test_stress(self):
        for seed in SEEDS:
            with self.subTest(seed=seed):
                self.run_seed(seed)

    def run_seed(self, seed):
        server = self.start_server()
        shared = Shared()
        setup = Client("s", server.ports["imap"], shared, random.Random(seed))
        setup.login()
        setup.run("CREATE Other")
        for i in range(4):
            setup.op_append()
        setup.run("LOGOUT")
        setup.sock.close()

        stop = threading.Event()
        errors = []
        pop_log = deque(maxlen=40)
        failures = []
        clients = []
        for k in range(NCLIENTS):
            c = Client("c%d" % k, server.ports["imap"], shared, random.Random(seed * 100 + k))
            c.login()
            c.select("INBOX")
            clients.append(c)
        self.clients = clients

        def work(c):
            try:
                while not stop.is_set():
                    c.step()
            except (StressFailure, OSError, ValueError, EOFError, IndexError, KeyError) as e:
                failures.append((c, e))
                stop.set()

        threads = [threading.Thread(target=work, args=(c,)) for c in clients]
        for d in range(2):
            threads.append(threading.Thread(target=deliverer, args=(server.ports["smtpd"], stop, errors,
                                                                     random.Random(seed + 10 + d), "smtp%d" % d)))
        threads.append(threading.Thread(target=pop3er, args=(server.ports["pop3"], stop, errors,
                                                              random.Random(seed + 2), pop_log)))
        for t in threads:
            t.start()
        stop.wait(SECONDS)
        stop.set()
        for t in threads:
            t.join(TIMEOUT * 2)
        self.report(seed, server, failures, errors)

        # Quiet now: every session syncs, then must agree with a fresh one.
        try:
            for c in clients:
                if c.folder != "INBOX" or c.readonly:
                    c.select("INBOX")
                if c.seq:
                    c.run("FETCH 1:* (UID FLAGS)")
            # Every flag known to every session; now each changes some in
            # turn and the others must learn it all at their NOOP.
            for rnd in range(3):
                for c in clients:
                    c.op_store()
                    if c.rng.random() < 0.3:
                        c.op_append()
            for c in clients:
                c.run("NOOP")
            fresh = Client("f", server.ports["imap"], shared, random.Random(0))
            fresh.login()
            truth = {}
            for folder in FOLDERS:
                fresh.select(folder)
                if fresh.seq:
                    fresh.run("FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[])")
                truth[folder] = [tuple(e[0:1]) + (frozenset(e[1]),) for e in fresh.seq]
                if any(e[0] is None or e[1] is None for e in fresh.seq):
                    fresh.fail("fresh FETCH 1:* left messages without UID or FLAGS")
            for c in clients:
                want = truth["INBOX"]
                if len(c.seq) != len(want):
                    c.fail("after NOOP: %d messages, a fresh session sees %d" % (len(c.seq), len(want)))
                for i, (e, w) in enumerate(zip(c.seq, want)):
                    if e[0] is not None and e[0] != w[0]:
                        c.fail("after NOOP: seq %d is UID %d, fresh session says %d" % (i + 1, e[0], w[0]))
                    if e[1] is not None and frozenset(e[1]) != w[1]:
                        c.fail("after NOOP: UID %d flags %s, fresh session says %s" % (w[0], sorted(e[1]),
                                                                                    sorted(w[1])))
            # A message told with BODY[] NIL or left out of SEARCH ALL (expunged
            # elsewhere) must be gone now.
            for folder in FOLDERS:
                uids = set(w[0] for w in truth[folder])
                back = [k for k in shared.nil_bodies if k[0] == folder and k[2] in uids]
                if back:
                    fresh.fail("messages treated as expunged (BODY[] NIL, not in SEARCH ALL) still exist: %s"
                               % back)
            boxes = server.messages("alice")
            if len(boxes) != len(truth["INBOX"]):
                fresh.fail("INBOX file parses as %d messages, IMAP shows %d" % (len(boxes), len(truth["INBOX"])))
        except (StressFailure, OSError, ValueError, EOFError) as e:
            failures.append((locals().get("c") or fresh, e))
        self.report(seed, server, failures, errors)
        if os.environ.get("POSTERN_STRESS_VERBOSE"):
            for c in clients:
                print("%s: %s; %d of %d final flags known" % (c.name, c.stats, sum(1 for e in c.seq if e[1] is not None),
                                                            len(c.seq)))
            print("INBOX %d, Other %d messages; %d treated as expunged" % (len(truth["INBOX"]), len(truth["Other"]),
                                                                        len(shared.nil_bodies)))
        for c in clients:
            c.run("LOGOUT")
            c.sock.close()
        fresh.sock.close()
        self.check_log(seed, server)
        self.summary(seed, [setup] + clients + [fresh], assert_none=True)

    def summary(self, seed, sessions, assert_none=False):
        """"N commands, F failed" for the seed; the failed ones listed."""
        total = sum(c.stats.get("commands", 0) for c in sessions)
        failed = [(c.name, cmd, ans) for c in sessions for cmd, ans in c.failed]
        line = "stress seed %d: %d commands, %d failed" % (seed, total, len(failed))
        print(line, flush=True)
        allowed = {}
        for c in sessions:
            for k, v in c.stats.items():
                if k.startswith("["):
                    allowed[k] = allowed.get(k, 0) + v
        if allowed:
            print("  answered NO as Dovecot does: %s" % ", ".join("%s %d" % kv for kv in sorted(allowed.items())),
                  flush=True)
        if assert_none and failed:
            self.fail(line + "\n" + "\n".join("  %s: %s -> %s" % f for f in failed[:40]))
        return line, failed

    def report(self, seed, server, failures, errors):
        if not failures and not errors:
            return
        msg = ["stress seed %d (rerun: POSTERN_STRESS_SEEDS=%d)" % (seed, seed)]
        line, failed = self.summary(seed, getattr(self, "clients", []))
        msg.append(line)
        msg.extend("  %s: %s -> %s" % f for f in failed[:20])
        for c, e in failures:
            msg.append("%s: %s\n  last commands/responses:\n%s" % (c.name, e, c.history()))
        msg.extend(errors)
        dump = os.environ.get("POSTERN_STRESS_DUMP")
        if dump:
            with open(dump, "w") as f:
                for c in self.clients:
                    f.write("==== %s\n%s\n" % (c.name, c.history()))
        log = server.log()
        msg.append("server log tail:\n" + "\n".join(log.splitlines()[-20:]))
        self.fail("\n".join(msg))

    def check_log(self, seed, server):
        server.proc.send_signal(signal.SIGTERM)
        try:
            out, err = server.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            self.fail("seed %d: postern did not stop" % seed)
        text = server.log() + err.decode(errors="replace")
        bad = [l for l in text.splitlines()
               if re.search(r"AddressSanitizer|runtime error|LeakSanitizer|killed by signal (?!15\b)|exited with status [1-9]"
                            r"|panic|assert|abort", l, re.I)]
        self.assertFalse(bad, "seed %d: server log reports a crash:\n%s" % (seed, "\n".join(bad[:20])))


class ExpungedElsewhere(unittest.TestCase):
    """What the stress allows, pinned to Dovecot 2.3.19's answers (mbox,
    tried live): commands on a set of which another session expunged
    part, before this one has been told."""

    def setUp(self):
        self.server = Server(modules=("mbox", "smtp", "imap"), listeners=("imap",))
        self.server.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n" % self.server.passwd_file)
        self.addCleanup(self.server.cleanup)
        self.server.start()
        self.a = self.client("a")
        self.b = self.client("b")
        self.n = 0

    def client(self, name):
        c = Client(name, self.server.ports["imap"], Shared(), random.Random(1))
        self.addCleanup(c.sock.close)
        c.login()
        return c

    def scenario(self, cmd):
        """A folder of 5; b expunges 2 and 4; a (not told) runs cmd."""
        self.n += 1
        box = "S%d" % self.n
        self.a.run("CREATE %s" % box)
        self.a.run("CREATE %sdst" % box)
        for i in range(5):
            m = "Subject: m%d\r\n\r\nbody %d\r\n" % (i, i)
            t = self.a.tag()
            self.a.send("%s APPEND %s {%d+}\r\n%s\r\n" % (t, box, len(m), m))
            self.a.until_tag(t)
        self.a.select(box)
        self.a.run("FETCH 1:* (UID FLAGS)")
        self.b.select(box)
        self.b.run("STORE 2,4 +FLAGS.SILENT (\\Deleted)")
        self.b.run("EXPUNGE")
        return self.a.run(cmd.replace("DST", box + "dst"), allow_no=("[EXPUNGEISSUED]",))

    def expunges(self, got):
        return [r for r in got if re.match(rb"\* \d+ EXPUNGE$", r)]

    def test_fetch(self):
        st, text, got = self.scenario("FETCH 1:5 (UID FLAGS BODY.PEEK[])")
        self.assertEqual(st, "OK")
        self.assertTrue(text.startswith("[EXPUNGEISSUED] Some messages were already expunged ("), text)
        self.assertIn(b"* 2 FETCH (UID 2 FLAGS (\\Recent) BODY[] NIL)", got)
        self.assertEqual(self.expunges(got), [])
        st, text, got = self.scenario("UID FETCH 1:5 (FLAGS)")
        self.assertEqual((st, text.split(" (")[0]), ("OK", "Fetch completed"))

    def test_store(self):
        for cmd in ("STORE 1:5 +FLAGS (\\Seen)", "UID STORE 1:5 +FLAGS (\\Seen)"):
            st, text, got = self.scenario(cmd)
            self.assertEqual((st, text.split(" (")[0]), ("OK", "Store completed"))
            self.assertEqual(len([r for r in got if b"FETCH" in r]), 3, got)

    def test_copy_move(self):
        for cmd in ("COPY 1:5 DST", "UID COPY 1:5 DST", "MOVE 1:5 DST", "UID MOVE 2:3 DST"):
            st, text, got = self.scenario(cmd)
            self.assertEqual(st, "NO", cmd)
            self.assertTrue(text.startswith("[EXPUNGEISSUED] Some of the requested messages no longer exist ("),
                            (cmd, text))
            self.assertEqual(len(self.expunges(got)), 2, (cmd, got))
            self.assertEqual([e[0] for e in self.a.seq], [1, 3, 5])
            dst = "S%ddst" % self.n
            st, text, got = self.a.run("STATUS %s (MESSAGES)" % dst)
            self.assertEqual(got[0], b"* STATUS %s (MESSAGES 0)" % dst.encode())
        # a set without the gone ones is copied
        st, text, got = self.scenario("COPY 1 DST")
        self.assertEqual(st, "OK")
        self.assertTrue(text.startswith("[COPYUID "), text)
        self.assertEqual(self.a.failed, [])


class Pop3WithImap(unittest.TestCase):
    """What the stress found to hold, pinned down: a POP3 session beside
    IMAP sessions of the same user (one mail process serves both)."""

    def test_interplay(self):
        server = Server(modules=("mbox", "smtp", "imap", "pop3"), listeners=("smtpd", "imap", "pop3"))
        server.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\nsmtpd_client_name_timeout = 0\n"
                          % server.passwd_file)
        self.addCleanup(server.cleanup)
        server.start()
        for i in range(4):
            with smtplib.SMTP("127.0.0.1", server.ports["smtpd"], timeout=TIMEOUT) as c:
                c.sendmail("a@example.com.ar", ["alice@example.com.ar"], "Subject: m%d\r\n\r\nbody %d\r\n" % (i, i))
        server.wait_messages("alice", 4)
        shared = Shared()
        imap = Client("i", server.ports["imap"], shared, random.Random(1))
        self.addCleanup(imap.sock.close)
        imap.login()
        imap.select("INBOX")
        imap.run("FETCH 1:* (UID FLAGS)")
        pop = socket.create_connection(("127.0.0.1", server.ports["pop3"]), timeout=TIMEOUT)
        self.addCleanup(pop.close)
        buf = [b""]

        def cmd(text, multi=False):
            pop.sendall(text.encode() + b"\r\n")
            l = pop3_line(pop, buf)
            return (l, pop3_multi(pop, buf)) if multi and l.startswith(b"+OK") else (l, None)
        pop3_line(pop, buf)
        cmd("USER alice")
        self.assertEqual(cmd("PASS secret")[0], b"+OK Logged in.")
        self.assertTrue(cmd("RETR 1", multi=True)[0].startswith(b"+OK"))
        self.assertEqual(cmd("DELE 2")[0], b"+OK Marked to be deleted.")
        # IMAP expunges message 3 while POP3 still lists it.
        st, text, got = imap.run("STORE 3 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(got, [])
        st, text, got = imap.run("EXPUNGE")
        self.assertEqual(got, [b"* 3 EXPUNGE"])
        self.assertEqual(cmd("RETR 3", multi=True)[0], b"-ERR Message was expunged by another session.")
        l, lst = cmd("LIST", multi=True)
        self.assertEqual(l, b"+OK 3 messages:")
        # Nothing changes until QUIT: the IMAP session hears nothing.
        self.assertEqual(imap.run("NOOP")[2], [])
        self.assertEqual(cmd("QUIT")[0], b"+OK Logging out.")
        # DELE'd message 2 gone, RETR'd message 1 \Seen (given at QUIT).
        st, text, got = imap.run("NOOP")
        self.assertEqual(got, [b"* 2 EXPUNGE", b"* 1 FETCH (FLAGS (\\Seen \\Recent))"])
        self.assertEqual([e[0] for e in imap.seq], [1, 4])
        fresh = Client("f", server.ports["imap"], shared, random.Random(2))
        self.addCleanup(fresh.sock.close)
        fresh.login()
        fresh.select("INBOX")
        st, text, got = fresh.run("FETCH 1:* (UID FLAGS)")
        self.assertEqual(got, [b"* 1 FETCH (UID 1 FLAGS (\\Seen))", b"* 2 FETCH (UID 4 FLAGS ())"])


if __name__ == "__main__":
    unittest.main()
