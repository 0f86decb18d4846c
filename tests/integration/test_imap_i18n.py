"""I18NLEVEL=1 (RFC 5255) through imaplib: SEARCH, SORT and THREAD compare
by i;unicode-casemap (RFC 5051). Subjects and names are non-ASCII, RFC 2047
encoded or raw UTF-8; the expected answers come from a Python model of the
comparator (scripts/gen-unicode-casemap.py's, over UnicodeData.txt when
unicode-data is installed, else over Python's own unicodedata), and a few
are also spelled out by hand. ASCII answers stay those of i;ascii-casemap."""
import email.header
import importlib.util
import imaplib
import os
import re
import sys
import time
import unittest

from imap_util import imap_server

SRC = os.environ.get("POSTERN_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = "/usr/share/unicode/UnicodeData.txt"


def load_model():
    spec = importlib.util.spec_from_file_location("gen_casemap", os.path.join(SRC, "scripts", "gen-unicode-casemap.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    if os.path.exists(DATA):
        title, decomp = gen.load(DATA)
    else:
        # Python's tables: its full titlecase where it is one character
        # stands for the simple mapping (all this test's text is such)
        import unicodedata
        print("note: %s missing, the model uses Python's unicodedata" % DATA, file=sys.stderr)
        title, decomp = {}, {}
        for c in range(0x30000):
            ch = chr(c)
            t = ch.title()
            if len(t) == 1 and t != ch:
                title[c] = ord(t)
            d = unicodedata.decomposition(ch)
            if d:
                decomp[c] = [int(x, 16) for x in d.split() if not x.startswith("<")]
    return lambda s: gen.fold(s.encode() if isinstance(s, str) else s, title, decomp)


FOLD = load_model()


def enc(text):
    """An RFC 2047 encoded word of text (UTF-8, base64)."""
    return email.header.Header(text, "utf-8").encode()


def dec(value):
    """The text of a header value with encoded words."""
    return str(email.header.make_header(email.header.decode_header(value)))


# (Subject as sent, its decoded text, From display name, From address, body)
MSGS = [
    (enc("Grüße aus Köln"), "Grüße aus Köln", enc("Jürgen Müller"), "juergen@example.org", "Hallo"),
    ("ΟΔΌΣ στο σπίτι", "ΟΔΌΣ στο σπίτι", "Ölaf", "olaf@example.org", "Γεια σου"),
    ("=?ISO-8859-1?Q?=C9clair_=E0_la_cr=E8me?=", "Éclair à la crème", enc("émile"), "emile@example.org", "Miam"),
    ("ﬁnance report", "ﬁnance report", "Zoë", "zoe@example.org", "Numbers"),
    ("plain ascii Subject", "plain ascii Subject", "alice", "alice@example.org", "Nothing special"),
    ("Straße", "Straße", "STRASSE", "strasse@example.org", "Größe: 42"),
    ("İstanbul trip", "İstanbul trip", "ılgaz", "ilgaz@example.org", "Yol"),
    ("_underscore first?", "_underscore first?", "bob", "bob@example.org", "x"),
    ("apple", "apple", "Émile", "emile2@example.org", "y"),
    ("éclair", "éclair", "ZOË", "zoe2@example.org", "z"),
    ("Ärger", "Ärger", "Ülrich", "ulrich@example.org", "a"),
    ("Re: ärger", "ärger", "ülrich", "ulrich2@example.org", "b"),
]


def message(i, subj, name, addr, body):
    from_ = '"%s" <%s>' % (name, addr) if not name.startswith("=?") else "%s <%s>" % (name, addr)
    text = ("From: %s\r\nTo: someone@example.org\r\nSubject: %s\r\n"
            "Date: Mon, %d Jan 2024 10:00:00 +0000\r\nMessage-ID: <m%d@example.org>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n%s\r\n" % (from_, subj, i + 1, i, body))
    return text.encode("utf-8")


class I18nLevel1(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.holder = unittest.TestCase()
        cls.server = imap_server(cls.holder)
        c = imaplib.IMAP4("127.0.0.1", cls.server.ports["imap"])
        c.login("alice", "secret")
        for i, m in enumerate(MSGS):
            typ, _ = c.append("INBOX", None, imaplib.Time2Internaldate(1700000000 + i), message(i, m[0], m[2], m[3], m[4]))
            assert typ == "OK"
        c.logout()

    @classmethod
    def tearDownClass(cls):
        cls.holder.doCleanups()

    def setUp(self):
        self.c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        self.c.login("alice", "secret")
        self.addCleanup(self.c.logout)
        typ, _ = self.c.select("INBOX")
        self.assertEqual(typ, "OK")

    def search(self, key, text):
        self.c.literal = text.encode("utf-8")
        typ, data = self.c.search("UTF-8", key)
        self.assertEqual(typ, "OK", (key, text, data))
        return [int(x) for x in data[0].split()]

    def model_search(self, field, text):
        needle = FOLD(text)
        return [i + 1 for i, m in enumerate(MSGS) if needle in FOLD(m[field])]

    def test_capability(self):
        typ, data = self.c.capability()
        self.assertIn(b"I18NLEVEL=1", data[0].split())

    def test_search_subject(self):
        cases = {
            "grüße": [1], "GRÜßE": [1], "KÖLN": [1], "köln": [1], "gruesse": [],
            "οδός": [2], "ΣΤΟ ΣΠΊΤΙ": [2], "στο σπιτι": [],   # the accent is part of the letter
            "ÉCLAIR": [3, 10], "éclair": [3, 10], "CRÈME": [3],
            "FINANCE": [4], "ﬁnance": [4], "fi": [4, 8],      # 8: "_underscore FIrst"
            "straße": [6], "STRASSE": [], "ss": [],
            "i̇stanbul": [7], "istanbul": [],
            "ärger": [11, 12], "ÄRGER": [11, 12],
            "PLAIN ASCII": [5], "subject": [5],
        }
        for text, want in cases.items():
            got = self.search("SUBJECT", text)
            self.assertEqual(got, want, text)
            self.assertEqual(got, self.model_search(1, text), text)

    def test_search_from_body_text(self):
        self.assertEqual(self.search("FROM", "MÜLLER"), [1])
        self.assertEqual(self.search("FROM", "jürgen müller"), [1])
        self.assertEqual(self.search("FROM", "zoë"), [4, 10])
        self.assertEqual(self.search("FROM", "ÜLRICH"), [11, 12])
        # dotless i is I; so "ILGAZ" finds it, and so does "ilgaz@" by its address
        self.assertEqual(self.search("FROM", "ILGAZ"), [7])
        self.assertEqual(self.search("BODY", "GRÖSSE"), [])
        self.assertEqual(self.search("BODY", "größe"), [6])
        self.assertEqual(self.search("BODY", "ΓΕΙΑ"), [2])
        self.assertEqual(self.search("TEXT", "köln"), [1])
        self.c.literal = "οδός".encode()
        typ, data = self.c.search("UTF-8", "HEADER", "Subject")
        self.assertEqual(data[0].split(), [b"2"])

    def test_search_ascii_unchanged(self):
        # no charset at all, ASCII keys: i;ascii-casemap's answers
        typ, data = self.c.search(None, "SUBJECT", '"ASCII subject"')
        self.assertEqual(data[0].split(), [b"5"])
        typ, data = self.c.search(None, "FROM", "BOB")
        self.assertEqual(data[0].split(), [b"8"])
        typ, data = self.c.search(None, "SUBJECT", "APPLE")
        self.assertEqual(data[0].split(), [b"9"])

    def sort(self, crit):
        typ, data = self.c.sort("(%s)" % crit, "UTF-8", "ALL")
        self.assertEqual(typ, "OK", data)
        return [int(x) for x in data[0].split()]

    def test_sort_subject(self):
        # base subjects (RFC 5256: "Re: " goes), by canonical form, ties by number
        keys = [(FOLD(re.sub(r"^Re: ", "", m[1])), i + 1) for i, m in enumerate(MSGS)]
        want = [n for _, n in sorted(keys)]
        self.assertEqual(self.sort("SUBJECT"), want)
        # by hand: é between e and f, Ä after ASCII, ligature as "FI", Greek last
        got = self.sort("SUBJECT")
        self.assertLess(got.index(9), got.index(3))      # APPLE < E U+0301CLAIR
        self.assertLess(got.index(3), got.index(4))      # E U+0301... < FINANCE
        self.assertLess(got.index(11), got.index(8))     # A U+0308RGER < _UNDERSCORE (0x41 < 0x5F)
        self.assertEqual(got[-1], 2)
        self.assertEqual(self.sort("REVERSE SUBJECT"), list(reversed(
            [n for _, n in sorted(keys, key=lambda k: (k[0], -k[1]))])))

    def test_sort_displayfrom(self):
        keys = [(FOLD(dec(m[2])), i + 1) for i, m in enumerate(MSGS)]
        self.assertEqual(self.sort("DISPLAYFROM"), [n for _, n in sorted(keys)])
        got = self.sort("DISPLAYFROM")
        # "Zoë" and "ZOË" are equal: by number
        self.assertLess(got.index(4), got.index(10))
        self.assertEqual(abs(got.index(4) - got.index(10)), 1)
        # "émile" and "Émile" too
        self.assertEqual(abs(got.index(3) - got.index(9)), 1)

    def test_sort_from(self):
        # FROM sorts by the first address's mailbox: all ASCII here
        keys = [(FOLD(m[3].split("@")[0]), i + 1) for i, m in enumerate(MSGS)]
        self.assertEqual(self.sort("FROM"), [n for _, n in sorted(keys)])

    def test_thread_groups_subjects_by_casemap(self):
        for alg in ("ORDEREDSUBJECT", "REFERENCES"):
            typ, data = self.c.thread(alg, "UTF-8", "ALL")
            self.assertEqual(typ, "OK")
            line = data[0].decode()
            # "Ärger" and "Re: ärger" are one thread; "éclair" and
            # "Éclair à la crème" are not (other base subjects)
            self.assertRegex(line, r"\(11 12\)", (alg, line))
            self.assertNotRegex(line, r"\(3 10\)|\(10 3\)", (alg, line))


class CasemapFastPaths(unittest.TestCase):
    """The ASCII shortcuts in front of the casemap: an ASCII needle over
    text with other characters (a Kelvin sign is a K, a fullwidth '<' is
    a '<' after decomposition), and the Message-ID index of the header
    cache, which must not leave out an id that matches only under the
    casemap, in the session that built the cache or in a new one."""

    def setUp(self):
        self.server = imap_server(self)
        c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        c.login("alice", "secret")
        ids = ["<\u212aelvin@example.org>", "<kelvin@example.org>", "<other@example.org>",
               "\uff1ckelvin@example.org>"]
        for i, mid in enumerate(ids):
            text = ("From: a@example.org\r\nSubject: s%d\r\nMessage-ID: %s\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n\r\nbody \u212aelvin %d\r\n" % (i, mid, i))
            typ, _ = c.append("INBOX", None, None, text.encode("utf-8"))
            self.assertEqual(typ, "OK")
        c.logout()

    def session(self):
        c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        c.login("alice", "secret")
        c.select("INBOX")
        return c

    def ids(self, c, *key):
        typ, data = c.search(None, *key)
        self.assertEqual(typ, "OK", data)
        return [int(x) for x in data[0].split()]

    def test_ascii_needles_under_the_casemap(self):
        want = [1, 2, 4]
        self.assertEqual([i + 1 for i, m in enumerate(["\u212aelvin", "kelvin", "other", "\uff1ckelvin"])
                          if FOLD("<KELVIN@example.org>") in FOLD("<" + m + "@example.org>"
                                                                 if not m.startswith("\uff1c") else m + "@example.org>")],
                         want, "the model")
        cache = self.server.path("home", "alice", "mail", ".imap", "INBOX", "postern.hcache")
        for round_ in ("first session", "new session with the cache on disk"):
            c = self.session()
            self.assertEqual(self.ids(c, "HEADER", "Message-ID", '"<KELVIN@example.org>"'), want, round_)
            self.assertEqual(self.ids(c, "HEADER", "Message-ID", '"<kelvin@example.org>"'), want, round_)
            self.assertEqual(self.ids(c, "BODY", "KELVIN"), [1, 2, 3, 4], round_)
            self.assertEqual(self.ids(c, "BODY", '"kelvin 2"'), [3], round_)
            c.logout()
            deadline = time.time() + 10
            while not os.path.exists(cache) and time.time() < deadline:
                time.sleep(0.05)
            self.assertTrue(os.path.exists(cache))


if __name__ == "__main__":
    unittest.main()
