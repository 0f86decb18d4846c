"""SORT (RFC 5256) with SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267), and
THREAD=ORDEREDSUBJECT / THREAD=REFERENCES (RFC 5256) over a small folder
whose threads are worked out by hand from the RFC's steps, plus loops,
duplicate Message-IDs, bad syntax and imaplib's sort()/thread()."""
import email.utils
import os
import sys
import imaplib
import random
import re
import unittest

from imap_util import imap_server, login

# (headers, body): seq = position + 1; dates spread over the turn of 2024
FOLDER = [
    ("Message-ID: <a@x>\nSubject: Meeting\nFrom: Zed <zed@x>\nTo: bob@x\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n", "a"),
    ("Message-ID: <b@x>\nIn-Reply-To: <a@x>\nSubject: Re: Meeting\nFrom: alice@x\nTo: bob@x\nCc: zack@x\n"
     "Date: Tue, 2 Jan 2024 00:00:00 +0000\n", "bb"),
    ("Message-ID: <c@x>\nReferences: <a@x> <b@x>\nSubject: Re: Re: meeting\nFrom: \"Carl\" <carl@x>\nTo: aaron@x\n"
     "Date: Wed, 3 Jan 2024 00:00:00 +0000\n", "ccc"),
    ("Message-ID: <d@x>\nSubject: Lunch\nFrom: bob@x\nTo: bob@x\nDate: Sun, 31 Dec 2023 12:00:00 +0000\n", "dddd"),
    ("Message-ID: <e@x>\nReferences: <zz@x>\nSubject: Re: Lunch\nFrom: dave@x\nTo: bob@x\n"
     "Date: Fri, 5 Jan 2024 00:00:00 +0000\n", "e" * 50),
    ("Message-ID: <f@x>\nReferences: <a@x>\nSubject: Re: Meeting\nFrom: Alice Z <alice@y>\nTo: bob@x\n"
     "Date: Tue, 2 Jan 2024 12:00:00 +0100\n", "f" * 20),
    ("Subject: Other\nDate: Thu, 4 Jan 2024 00:00:00 +0000\n", "g"),
]


def ok(out):
    return out[-1].split(" ")[1] == "OK"


class Sort(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self)
        self.r = login(self.server)
        self.addCleanup(self.r.close)

    def fill(self, box, msgs):
        r = self.r
        self.assertTrue(ok(r.cmd("c", "CREATE %s" % box)))
        for i, (hdr, body) in enumerate(msgs):
            data = (hdr + "\n" + body + "\n").replace("\n", "\r\n").encode()
            # arrival one second apart, in order
            r.send('ap%d APPEND %s "01-Jan-2024 00:00:%02d +0000" {%d+}\r\n' % (i, box, i, len(data)))
            r.send(data + b"\r\n")
            self.assertTrue(ok(r.until_tag("ap%d" % i)))
        self.assertTrue(ok(r.cmd("s", "SELECT %s" % box)))

    def one(self, tag, cmd):
        out = self.r.cmd(tag, cmd)
        self.assertTrue(ok(out), out)
        self.assertEqual(len(out), 2, out)
        return out[0]

    def test_capabilities(self):
        caps = self.r.cmd("c", "CAPABILITY")[0].split()
        for c in ("SORT", "SORT=DISPLAY", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT", "ESORT"):
            self.assertIn(c, caps)

    def test_sort_keys(self):
        self.fill("s", FOLDER)
        cases = [
            ("(SUBJECT)", "4 5 1 2 3 6 7"),
            ("(DATE)", "4 1 2 6 3 7 5"),          # 6 is 11:00 UTC on the 2nd
            ("(REVERSE DATE)", "5 7 3 6 2 1 4"),
            ("(ARRIVAL)", "1 2 3 4 5 6 7"),
            ("(FROM)", "7 2 6 4 3 5 1"),          # no From sorts first; ties by sequence
            ("(DISPLAYFROM)", "7 6 2 4 3 5 1"),   # "Alice Z" < "alice@x" (space < @)
            ("(TO)", "7 3 1 2 4 5 6"),
            ("(CC)", "1 3 4 5 6 7 2"),
            ("(SUBJECT REVERSE DATE)", "5 4 3 6 2 1 7"),
            ("(REVERSE SUBJECT DATE)", "7 1 2 6 3 4 5"),
            ("(DISPLAYTO REVERSE ARRIVAL)", "7 3 6 5 4 2 1"),
        ]
        for i, (crit, want) in enumerate(cases):
            self.assertEqual(self.one("t%d" % i, "SORT %s UTF-8 ALL" % crit), "* SORT " + want, crit)
        # SIZE against the sizes FETCH tells
        sizes = {}
        for l in self.r.cmd("f", "FETCH 1:* RFC822.SIZE")[:-1]:
            p = l.split()
            sizes[int(p[1])] = int(p[4].rstrip(")"))
        want = sorted(sizes, key=lambda q: (sizes[q], q))
        self.assertEqual(self.one("sz", "SORT (SIZE) US-ASCII ALL"), "* SORT " + " ".join(map(str, want)))
        # search keys pick, UID SORT answers UIDs
        self.assertEqual(self.one("k", "SORT (DATE) UTF-8 SUBJECT meeting"), "* SORT 1 2 6 3")
        self.r.cmd("x", "STORE 1 +FLAGS (\\Deleted)")
        self.r.cmd("y", "EXPUNGE")
        self.assertEqual(self.one("u", "UID SORT (DATE) UTF-8 ALL"), "* SORT 4 2 6 3 7 5")
        self.assertEqual(self.one("v", "SORT (DATE) UTF-8 ALL"), "* SORT 3 1 5 2 6 4")
        self.assertEqual(self.one("w", "SORT (DATE) UTF-8 KEYWORD nosuch"), "* SORT")

    def test_esort(self):
        self.fill("e", FOLDER)
        self.assertEqual(self.one("a", "SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL"),
                         '* ESEARCH (TAG "a") MIN 4 MAX 5 ALL 4,1:2,6,3,7,5 COUNT 7')
        self.assertEqual(self.one("b", "UID SORT RETURN () (SUBJECT) UTF-8 ALL"),
                         '* ESEARCH (TAG "b") UID ALL 4:5,1:3,6:7')
        self.assertEqual(self.one("c", "SORT RETURN (COUNT) (DATE) UTF-8 DELETED"), '* ESEARCH (TAG "c") COUNT 0')
        self.assertTrue(self.r.cmd("d", "SORT RETURN (SAVE) (DATE) UTF-8 ALL")[-1].startswith("d BAD"))

    def test_sort_errors(self):
        self.fill("b", FOLDER[:2])
        for bad in ("SORT DATE UTF-8 ALL", "SORT () UTF-8 ALL", "SORT (REVERSE) UTF-8 ALL",
                    "SORT (DATE REVERSE) UTF-8 ALL", "SORT (BOGUS) UTF-8 ALL", "SORT (DATE) UTF-8",
                    "SORT (DATE)", "SORT (DATE) UTF-8 BOGUS", "SORT (REVERSE REVERSE DATE) UTF-8 ALL",
                    "THREAD BOGUS UTF-8 ALL", "THREAD REFERENCES UTF-8", "THREAD (REFERENCES) UTF-8 ALL"):
            out = self.r.cmd("b", bad)
            self.assertTrue(out[-1].startswith("b BAD"), (bad, out))
        for no in ("SORT (DATE) KOI8-R ALL", "THREAD REFERENCES KOI8-R ALL"):
            self.assertTrue(self.r.cmd("n", no)[-1].startswith("n NO [BADCHARSET"), no)
        self.r.cmd("u", "UNSELECT")
        self.assertTrue(self.r.cmd("z", "SORT (DATE) UTF-8 ALL")[-1].startswith("z BAD"))

    def test_thread_references(self):
        self.fill("t", FOLDER)
        # zz is missing: e's dummy parent goes, and e joins d by subject
        self.assertEqual(self.one("r", "THREAD REFERENCES UTF-8 ALL"), "* THREAD (4 5)(1 (2 3)(6))(7)")
        self.assertEqual(self.one("o", "THREAD ORDEREDSUBJECT UTF-8 ALL"), "* THREAD (4 5)(1 (2)(6)(3))(7)")
        self.assertEqual(self.one("q", "THREAD REFERENCES US-ASCII 1:3"), "* THREAD (1 2 3)")
        # a's dummy has one child: promoted
        self.assertEqual(self.one("q2", "THREAD REFERENCES UTF-8 2,3"), "* THREAD (2 3)")
        self.assertEqual(self.one("p", "UID THREAD ORDEREDSUBJECT UTF-8 SUBJECT lunch"), "* THREAD (4 5)")
        self.assertEqual(self.one("e", "THREAD REFERENCES UTF-8 DELETED"), "* THREAD")

    def test_thread_dummy_root_and_loops(self):
        msgs = [
            # two replies to a message we do not have: a dummy root keeps them
            ("Message-ID: <k1@x>\nReferences: <gone@x>\nSubject: Re: Gone\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n", "1"),
            ("Message-ID: <k2@x>\nReferences: <gone@x>\nSubject: Re: Gone\nDate: Tue, 2 Jan 2024 00:00:00 +0000\n", "2"),
            # each names the other as parent: no loop, the later link loses
            ("Message-ID: <l1@x>\nReferences: <l2@x>\nSubject: Loop\nDate: Wed, 3 Jan 2024 00:00:00 +0000\n", "3"),
            ("Message-ID: <l2@x>\nReferences: <l1@x>\nSubject: Loop\nDate: Thu, 4 Jan 2024 00:00:00 +0000\n", "4"),
            # its own parent
            ("Message-ID: <self@x>\nReferences: <self@x>\nSubject: Self\nDate: Fri, 5 Jan 2024 00:00:00 +0000\n", "5"),
            # a duplicate Message-ID is a message of its own
            ("Message-ID: <self@x>\nSubject: Dup\nDate: Sat, 6 Jan 2024 00:00:00 +0000\n", "6"),
            # a reference chain through missing messages, and an empty subject
            ("Message-ID: <m3@x>\nReferences: <m1@x> <m2@x>\nSubject:\nDate: Sun, 7 Jan 2024 00:00:00 +0000\n", "7"),
            ("Message-ID: <m4@x>\nReferences: <m1@x> <m2@x> <m3@x>\nDate: Mon, 8 Jan 2024 00:00:00 +0000\n", "8"),
        ]
        self.fill("l", msgs)
        self.assertEqual(self.one("r", "THREAD REFERENCES UTF-8 ALL"), "* THREAD ((1)(2))(4 3)(5)(6)(7 8)")


    def test_thread_subject_case_beyond_ascii(self):
        # Step 5 of REFERENCES joins a reply to the thread of its base
        # subject under i;unicode-casemap: "Über" and "über" are one.
        msgs = [
            ("Message-ID: <u1@x>\nSubject: =?UTF-8?Q?=C3=9Cber_alles?=\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n", "1"),
            ("Message-ID: <u2@x>\nSubject: Re: =?UTF-8?Q?=C3=BCber_ALLES?=\nDate: Tue, 2 Jan 2024 00:00:00 +0000\n", "2"),
            ("Message-ID: <u3@x>\nSubject: other\nDate: Wed, 3 Jan 2024 00:00:00 +0000\n", "3"),
        ]
        self.fill("u", msgs)
        self.assertEqual(self.one("r", "THREAD REFERENCES UTF-8 ALL"), "* THREAD (1 2)(3)")
        self.assertEqual(self.one("o", "THREAD ORDEREDSUBJECT UTF-8 ALL"), "* THREAD (1 2)(3)")


# ---- an independent model of RFC 5256, for a random threaded folder ----

def model_base_subject(s):
    """RFC 5256 2.1 on a plain ASCII subject: (base, is_reply)."""
    s = re.sub(r"[ \t\r\n]+", " ", s)
    reply = False
    blob = r"\[[^\[\]]*\][ \t]*"
    while True:
        while True:
            s = s.rstrip(" \t")
            if s.lower().endswith("(fwd)"):
                s, reply = s[:-5], True
                continue
            break
        while True:
            changed = False
            while True:
                if s[:1] in (" ", "\t") and s:
                    s, changed = s[1:], True
                    continue
                m = re.match(r"(%s)*(re|fwd?)[ \t]*(%s)?:" % (blob, blob), s, re.I)
                if m:
                    s, reply, changed = s[m.end():], True, True
                    continue
                break
            m = re.match(blob, s)
            if m and s[m.end():]:
                s, changed = s[m.end():], True
            if not changed:
                break
        if s.lower().startswith("[fwd:") and s.endswith("]"):
            s, reply = s[5:-1], True
            continue
        return s, reply


class Node:
    def __init__(self, msg=None):
        self.msg, self.parent, self.children = msg, None, []


def model_references(msgs):
    """msgs: dicts with seq, id, date, msgid, refs, subject. Thread text."""
    table = {}
    nodes = []

    def node(mid):
        if mid not in table:
            table[mid] = Node()
            nodes.append(table[mid])
        return table[mid]

    def ancestor(a, n):
        while n is not None:
            if n is a:
                return True
            n = n.parent
        return False

    def link(p, c):
        c.parent = p
        p.children.append(c)

    def unlink(c):
        if c.parent is not None:
            c.parent.children.remove(c)
            c.parent = None

    for m in msgs:
        c = node(m["msgid"]) if m["msgid"] else None
        if c is None or c.msg is not None:
            c = Node()
            nodes.append(c)
        c.msg = m
        prev = None
        for r in m["refs"]:
            n = node(r)
            if prev is not None and n.parent is None and n is not prev and not ancestor(n, prev):
                link(prev, n)
            prev = n
        unlink(c)
        if prev is not None and prev is not c and not ancestor(c, prev):
            link(prev, c)
    roots = [n for n in nodes if n.parent is None]

    def prune(level, root):
        out = []
        for n in level:
            n.children = prune(n.children, False)
            for ch in n.children:
                ch.parent = n
            if n.msg is None and not n.children:
                continue
            if n.msg is None and not (root and len(n.children) > 1):
                for ch in n.children:
                    ch.parent = n.parent
                out.extend(n.children)
                continue
            out.append(n)
        return out

    def first_msg(n):
        while n.msg is None:
            n = n.children[0]
        return n.msg

    def key(n):
        m = first_msg(n)
        return (m["date"], m["seq"])

    def sort_all(level):
        for n in level:
            n.children = sort_all(n.children)
        return sorted(level, key=key)

    roots = sort_all(prune(roots, True))
    subj = {}

    def subject_of(n):
        m = n.msg if n.msg is not None else first_msg(n)
        return model_base_subject(m["subject"])

    for n in roots:
        s, rep = subject_of(n)
        if not s:
            continue
        k = s.upper()
        if k not in subj:
            subj[k] = n
            continue
        t = subj[k]
        if (n.msg is None and t.msg is not None) or (n.msg is not None and t.msg is not None and
                                                      subject_of(t)[1] and not rep):
            subj[k] = n
    for n in list(roots):
        s, rep = subject_of(n)
        if not s:
            continue
        t = subj[s.upper()]
        if t is n:
            continue
        roots.remove(n)
        if t.msg is None and n.msg is None:
            for ch in n.children:
                link(t, ch)
            n.children = []
        elif t.msg is None:
            link(t, n)
        elif not subject_of(t)[1] and rep:
            link(t, n)
        else:
            d = Node()
            roots[roots.index(t)] = d
            link(d, t)
            link(d, n)
            subj[s.upper()] = d
    for n in roots:
        n.children = sort_all(n.children)

    def put(n):
        out = "" if n.msg is None else str(n.msg["id"])
        if len(n.children) == 1 and n.msg is not None:
            return out + " " + put(n.children[0])
        if n.children:
            out += (" " if out else "") + "".join("(%s)" % put(c) for c in n.children)
        return out

    return "".join("(%s)" % put(n) for n in roots)


def model_orderedsubject(msgs):
    order = sorted(msgs, key=lambda m: (model_base_subject(m["subject"])[0].upper(), m["date"], m["seq"]))
    threads = []
    for m in order:
        b = model_base_subject(m["subject"])[0].upper()
        if threads and threads[-1][0] == b:
            threads[-1][1].append(m)
        else:
            threads.append((b, [m]))
    threads.sort(key=lambda t: (t[1][0]["date"], t[1][0]["seq"]))
    out = ""
    for _, ms in threads:
        ids = [str(m["id"]) for m in ms]
        if len(ids) <= 2:
            out += "(%s)" % " ".join(ids)
        else:
            out += "(%s %s)" % (ids[0], "".join("(%s)" % i for i in ids[1:]))
    return out


class RandomThreads(unittest.TestCase):
    """A realistic threaded folder made at random (replies to replies,
    broken chains, In-Reply-To only, duplicate and missing Message-IDs,
    list tags, Re:/Fwd:/(fwd) forms, dates out of arrival order): the
    server's THREAD and SORT must equal the model of RFC 5256 above."""

    SUBJECTS = ["Meeting", "lunch plans", "[dev] Release 1.2", "Budget", "Re: Old topic", "Fwd: Photos",
                "[fwd: Joke]", "Hello (fwd)", "[ann] [dev] News", "status"]

    def setUp(self):
        self.server = imap_server(self)

    def test_against_model(self):
        for seed in (1, 2, 3, 4):
            self.run_seed(seed)

    def run_seed(self, seed):
        rng = random.Random(seed)
        # seed 4: many threads whose first message is lost (dummy roots,
        # several with the same subject to merge)
        lost = 0.6 if seed == 4 else 0.1
        msgs = []
        base = 1704067200   # 2024-01-01
        for i in range(70):
            m = {"seq": i + 1, "id": i + 1, "date": base + rng.randrange(0, 40) * 3600}
            m["msgid"] = "m%d.%d@x" % (seed, i) if rng.random() > 0.08 else None
            if m["msgid"] and msgs and rng.random() < 0.05:
                m["msgid"] = rng.choice([p["msgid"] for p in msgs if p["msgid"]] or [m["msgid"]])
            parent = rng.choice(msgs) if msgs and rng.random() < 0.65 else None
            if parent is None:
                m["refs"] = ["lost%d@x" % rng.randrange(8)] if rng.random() < lost else []
                m["subject"] = rng.choice(self.SUBJECTS)
                m["irt_only"] = False
            else:
                chain = parent["refs"] + ([parent["msgid"]] if parent["msgid"] else ["gone%d@x" % i])
                r = rng.random()
                if r < 0.15:
                    chain = chain[-1:]
                    m["irt_only"] = True
                else:
                    m["irt_only"] = False
                    if r < 0.3 and len(chain) > 2:
                        del chain[rng.randrange(len(chain) - 1)]
                m["refs"] = chain
                ps = model_base_subject(parent["subject"])[0]
                m["subject"] = rng.choice(["Re: " + ps, "RE: Re: " + ps, "Fwd: " + ps, ps + " (fwd)",
                                           "[dev] Re: " + ps, "Re[2]: " + ps, ps])
            msgs.append(m)
        box = "rt%d" % seed
        r = login(self.server)
        self.addCleanup(r.close)
        self.assertTrue(ok(r.cmd("c", "CREATE %s" % box)))
        for m in msgs:
            hdr = "From: u%d@x\r\nSubject: %s\r\nDate: %s\r\n" % (
                rng.randrange(9), m["subject"],
                email.utils.formatdate(m["date"], usegmt=True))
            if m["msgid"]:
                hdr += "Message-ID: <%s>\r\n" % m["msgid"]
            if m["refs"]:
                if m["irt_only"]:
                    hdr += "In-Reply-To: <%s>\r\n" % m["refs"][-1]
                else:
                    hdr += "References: %s\r\n" % "\r\n ".join("<%s>" % x for x in m["refs"])
            data = (hdr + "\r\nbody %d\r\n" % m["seq"]).encode()
            r.send("a APPEND %s {%d+}\r\n" % (box, len(data)))
            r.send(data + b"\r\n")
            self.assertTrue(ok(r.until_tag("a")))
        self.assertTrue(ok(r.cmd("s", "SELECT %s" % box)))
        out = r.cmd("t", "THREAD REFERENCES UTF-8 ALL")
        self.assertEqual(out[0], "* THREAD " + model_references(msgs), "seed %d" % seed)
        if os.environ.get("SHOW_THREADS"):
            print(out[0], file=sys.stderr)
        out = r.cmd("o", "THREAD ORDEREDSUBJECT UTF-8 ALL")
        self.assertEqual(out[0], "* THREAD " + model_orderedsubject(msgs), "seed %d" % seed)
        want = sorted(msgs, key=lambda m: (model_base_subject(m["subject"])[0].upper(), -m["date"], m["seq"]))
        out = r.cmd("s2", "SORT (SUBJECT REVERSE DATE) UTF-8 ALL")
        self.assertEqual(out[0], "* SORT " + " ".join(str(m["seq"]) for m in want), "seed %d" % seed)
        # imaplib, as a client calls them
        c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        try:
            c.login("alice", "secret")
            c.select(box)
            typ, data = c.thread("REFERENCES", "UTF-8", "ALL")
            self.assertEqual((typ, data[0].decode()), ("OK", model_references(msgs)))
            typ, data = c.sort("(DATE)", "UTF-8", "ALL")
            self.assertEqual(data[0].decode().split(),
                             [str(m["seq"]) for m in sorted(msgs, key=lambda m: (m["date"], m["seq"]))])
        finally:
            c.logout()


class DeepThread(unittest.TestCase):
    """A reply chain longer than the depth THREAD keeps (1000): the chain
    is cut there and goes on as a thread of its own, nothing deeper is
    walked; the 1200 messages go in with one MULTIAPPEND."""

    def test_chain_cut_at_depth(self):
        server = imap_server(self)
        r = login(server)
        self.addCleanup(r.close)
        self.assertTrue(ok(r.cmd("c", "CREATE deep")))
        n = 1200
        parts = []
        for i in range(n):
            hdr = "Message-ID: <d%d@x>\r\nDate: %s\r\n" % (i, email.utils.formatdate(1704067200 + i * 60, usegmt=True))
            if i:
                hdr += "In-Reply-To: <d%d@x>\r\n" % (i - 1)
            parts.append((hdr + "\r\n%d\r\n" % i).encode())
        cmd = b"m APPEND deep"
        for p in parts:
            cmd += b" {%d+}\r\n" % len(p) + p
        r.send(cmd + b"\r\n")
        self.assertTrue(ok(r.until_tag("m")))
        self.assertTrue(ok(r.cmd("s", "SELECT deep")))
        out = r.cmd("t", "THREAD REFERENCES UTF-8 ALL")
        self.assertTrue(ok(out), out[-1])
        want = "* THREAD (%s)(%s)" % (" ".join(str(i) for i in range(1, 1001)),
                                      " ".join(str(i) for i in range(1001, n + 1)))
        self.assertEqual(out[0], want)


if __name__ == "__main__":
    unittest.main()
