"""SORT (RFC 5256) with SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267), and
THREAD=ORDEREDSUBJECT / THREAD=REFERENCES (RFC 5256) over a small folder
whose threads are worked out by hand from the RFC's steps, plus loops,
duplicate Message-IDs, bad syntax and imaplib's sort()/thread()."""
import imaplib
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


if __name__ == "__main__":
    unittest.main()
