"""CATENATE (RFC 4469, issue 15): APPEND of a message put together from
TEXT literals (synchronizing, LITERAL+, BINARY's literal8) and IMAP URLs
(RFC 5092) to messages or parts in the user's own folders on this server:
the RFC's examples, [BADURL url] for every URL that names nothing of this
user here (another user, another host, a UID or UIDVALIDITY that does not
match, a section not in the message, a folder name climbing out of the
store, URLAUTH), MULTIAPPEND all or nothing, [TOOBIG] past
imap_max_literal_size and [OVERQUOTA] past mailbox_size_limit."""
import datetime
import re
import unittest

from imap_util import POST_CAPS, imap_server, login

BOUNDARY = "------------030308070208000400050907"
DRAFT = ("From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
         "Subject: afternoon meeting\r\n"
         "To: mooch@owatagu.siam.edu.example\r\n"
         "Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: multipart/mixed; boundary=\"%s\"\r\n"
         "\r\n"
         "--%s\r\n"
         "Content-Type: text/plain; charset=us-ascii\r\n"
         "Content-Transfer-Encoding: 7bit\r\n"
         "\r\n"
         "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
         "--%s\r\n"
         "Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
         "Content-Transfer-Encoding: base64\r\n"
         "\r\n"
         "AAECAwQFBgcICQ==\r\n"
         "--%s--\r\n") % ((BOUNDARY,) * 4)
FORWARDED = ("From: Joe Mooch <mooch@OWaTaGu.siam.EDU.example>\r\n"
             "Subject: Re: afternoon meeting\r\n"
             "To: foobar@Blurdybloop.example\r\n"
             "\r\n"
             "3:30 is fine with me.\r\n")


def ok(out):
    return out[-1].split(" ")[1] == "OK"


class Base(unittest.TestCase):
    conf = ""

    def setUp(self):
        self.server = imap_server(self, conf=self.conf)
        self.r = self.session()

    def session(self, user="alice"):
        r = login(self.server, user)
        self.addCleanup(r.close)
        return r

    def send_cmd(self, r, tag, parts):
        """parts: text pieces and ("lit", data, mode) with mode "sync"
        (wait for the continuation), "plus" ({n+}) or "lit8" (~{n+})."""
        out = []
        for p in parts:
            if isinstance(p, tuple):
                _, data, mode = p
                if mode == "sync":
                    r.send(b"{%d}\r\n" % len(data))
                    l = r.line()
                    self.assertTrue(l.startswith("+"), l)
                else:
                    r.send(b"%s{%d+}\r\n" % (b"~" if mode == "lit8" else b"", len(data)))
                r.send(data)
            else:
                r.send(p.encode() if isinstance(p, str) else p)
        r.send(b"\r\n")
        out += r.until_tag(tag)
        return out

    def append(self, r, box, data, flags=""):
        r.send("ap APPEND %s %s{%d+}\r\n" % (box, flags and flags + " ", len(data)))
        r.send(data.encode() if isinstance(data, str) else data)
        r.send(b"\r\n")
        out = r.until_tag("ap")
        m = re.match(r"ap OK \[APPENDUID (\d+) (\d+)\]", out[-1])
        self.assertIsNotNone(m, out)
        return int(m.group(1)), int(m.group(2))

    def count(self, r, box):
        out = r.cmd("st", "STATUS %s (MESSAGES)" % box)
        return int(re.search(r"MESSAGES (\d+)", out[0]).group(1))

    def body(self, r, box, uid, item="BODY.PEEK[]"):
        r.cmd("ex", "EXAMINE %s" % box)
        r.send("f UID FETCH %d (%s)\r\n" % (uid, item))
        head = r.line()
        m = re.search(r"\{(\d+)\}$", head)
        self.assertIsNotNone(m, head)
        data = r.read_bytes(int(m.group(1)))
        out = r.until_tag("f")
        self.assertTrue(out[-1].startswith("f OK"), out)
        return data



class Cat(Base):
    # ---- RFC 4469 §5 examples ----

    def test_capability(self):
        out = self.r.cmd("c", "CAPABILITY")
        self.assertEqual(out[0], "* CAPABILITY " + POST_CAPS)
        self.assertIn(" CATENATE ", " %s " % POST_CAPS)

    def test_rfc_example_forward_draft(self):
        """The first example: a draft rebuilt from the header and first
        part of one message, a boundary, a whole other message."""
        r = self.r
        self.assertTrue(ok(r.cmd("c", "CREATE Drafts")))
        uv, u1 = self.append(r, "Drafts", DRAFT)
        uv2, u2 = self.append(r, "Drafts", FORWARDED)
        self.assertEqual(uv, uv2)
        base = "/Drafts;UIDVALIDITY=%d/;UID=%d" % (uv, u1)
        t1 = ("\r\n--%s\r\n" % BOUNDARY).encode()
        t3 = ("\r\n--%s--\r\n" % BOUNDARY).encode()
        out = self.send_cmd(r, "A003", [
            "A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL \"%s/;section=HEADER\" TEXT " % base,
            ("lit", t1, "sync"),
            " URL \"%s/;section=1.MIME\" URL \"%s/;section=1\" TEXT " % (base, base),
            ("lit", t1, "sync"),
            " URL \"/Drafts;UIDVALIDITY=%d/;UID=%d\" TEXT " % (uv, u2),
            ("lit", t3, "sync"),
            ")"])
        m = re.match(r"A003 OK \[APPENDUID (\d+) (\d+)\]", out[-1])
        self.assertIsNotNone(m, out)
        self.assertEqual(int(m.group(1)), uv)
        new = int(m.group(2))
        self.assertEqual(new, u2 + 1)
        hdr = self.body(r, "Drafts", u1, "BODY.PEEK[HEADER]")
        mime = self.body(r, "Drafts", u1, "BODY.PEEK[1.MIME]")
        part1 = self.body(r, "Drafts", u1, "BODY.PEEK[1]")
        whole2 = self.body(r, "Drafts", u2)
        want = hdr + t1 + mime + part1 + t1 + whole2 + t3
        self.assertEqual(self.body(r, "Drafts", new), want)
        out = r.cmd("fl", "UID FETCH %d (FLAGS)" % new)
        self.assertIn("\\Draft", out[0])
        self.assertIn("$MDNSent", out[0])
        self.assertIn("\\Seen", out[0])
        # and it parses as the multipart it is
        out = r.cmd("bs", "UID FETCH %d (BODYSTRUCTURE)" % new)
        self.assertEqual(out[0].count('("TEXT" "PLAIN"'), 2, out)
        self.assertIn('"MIXED" ("BOUNDARY" "%s")' % BOUNDARY, out[0])

    def test_rfc_example_badurl(self):
        """The second example: a URL to a message expunged meanwhile fails
        the whole APPEND with [BADURL url] (the URL itself, no quotes)."""
        r = self.r
        uv, u1 = self.append(r, "INBOX", DRAFT)
        r.cmd("s", "SELECT INBOX")
        r.cmd("d", "UID STORE %d +FLAGS.SILENT (\\Deleted)" % u1)
        r.cmd("e", "EXPUNGE")
        r.cmd("c", "CREATE Drafts")
        url = "/INBOX;UIDVALIDITY=%d/;UID=%d/;section=1.5.9" % (uv, u1)
        text = b"Message-ID: <419399E1.6000505@caernarvon.example>\r\n\r\n"
        out = self.send_cmd(r, "A003", [
            "A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (TEXT ",
            ("lit", text, "sync"), " URL \"%s\" TEXT " % url, ("lit", b"\r\n--x--\r\n", "sync"), ")"])
        self.assertTrue(out[-1].startswith("A003 NO [BADURL %s] " % url), out)
        self.assertEqual(self.count(r, "Drafts"), 0)

    def test_multiappend_catenate(self):
        """RFC 4469 with MULTIAPPEND (RFC 3502): several messages, some
        catenated, one APPENDUID range; LITERAL+ literals."""
        r = self.r
        uv, u1 = self.append(r, "INBOX", DRAFT)
        r.cmd("c", "CREATE Sent")
        plain = b"Subject: plain\r\n\r\nplain body\r\n"
        out = self.send_cmd(r, "m", [
            "m APPEND Sent (\\Seen) CATENATE (URL \"/INBOX;UIDVALIDITY=%d/;UID=%d\") " % (uv, u1),
            "CATENATE (TEXT ", ("lit", b"Subject: two\r\n\r\n", "plus"),
            " URL \"/INBOX/;UID=%d/;SECTION=1\") " % u1,
            ("lit", plain, "plus")])
        m = re.match(r"m OK \[APPENDUID (\d+) (\d+):(\d+)\]", out[-1])
        self.assertIsNotNone(m, out)
        a, b = int(m.group(2)), int(m.group(3))
        self.assertEqual(b - a, 2)
        self.assertEqual(self.body(r, "Sent", a), self.body(r, "INBOX", u1))
        part1 = self.body(r, "INBOX", u1, "BODY.PEEK[1]")
        # (the store ends every message with a line end)
        self.assertEqual(self.body(r, "Sent", a + 1), b"Subject: two\r\n\r\n" + part1 + b"\r\n")
        self.assertEqual(self.body(r, "Sent", b), plain)
        out = r.cmd("fl", "UID FETCH %d:%d (FLAGS)" % (a, b))
        self.assertIn("\\Seen", out[0])

    def test_multiappend_all_or_nothing(self):
        r = self.r
        uv, u1 = self.append(r, "INBOX", DRAFT)
        r.cmd("c", "CREATE Sent")
        for bad_last in (True, False):
            parts = ["x APPEND Sent ", ("lit", b"Subject: a\r\n\r\na\r\n", "plus"),
                     " CATENATE (URL \"/INBOX;UIDVALIDITY=%d/;UID=%d\")" % (uv, u1)]
            bad = " CATENATE (TEXT {3+}\r\nabc URL \"/INBOX;UIDVALIDITY=%d/;UID=%d\")" % (uv, u1 + 7)
            parts = parts + [bad] if bad_last else [parts[0], bad.lstrip() + " "] + parts[1:]
            out = self.send_cmd(r, "x", parts)
            self.assertTrue(out[-1].startswith("x NO [BADURL "), out)
            self.assertEqual(self.count(r, "Sent"), 0)

    def test_relative_and_absolute_urls(self):
        r = self.r
        uv, u1 = self.append(r, "INBOX", DRAFT)
        r.cmd("c", "CREATE Out")
        port = self.server.ports["imap"]
        want_text = self.body(r, "INBOX", u1, "BODY.PEEK[TEXT]")
        r.cmd("s", "SELECT INBOX")
        for url in (";UID=%d/;SECTION=TEXT" % u1,                       # the selected folder
                    "imap://alice@127.0.0.1/INBOX;UIDVALIDITY=%d/;UID=%d/;section=text" % (uv, u1),
                    "imap://alice;AUTH=*@127.0.0.1:%d/INBOX/;UID=%d/;SECTION=TEXT" % (port, u1),
                    "imap://127.0.0.1/%%49NBOX/;UID=%d/;SECTION=TEXT" % u1,  # %-escaped name
                    "/inbox/;UID=%d/;SECTION=TEXT" % u1):
            r.cmd("s", "SELECT INBOX")
            out = r.cmd("a", "APPEND Out CATENATE (URL \"%s\")" % url)
            m = re.match(r"a OK \[APPENDUID \d+ (\d+)\]", out[-1])
            self.assertIsNotNone(m, (url, out))
            self.assertEqual(self.body(r, "Out", int(m.group(1))), want_text, url)
        # ;PARTIAL=offset.length (RFC 5092)
        out = r.cmd("a", "APPEND Out CATENATE (URL \"/INBOX/;UID=%d/;SECTION=TEXT/;PARTIAL=2.10\")" % u1)
        m = re.match(r"a OK \[APPENDUID \d+ (\d+)\]", out[-1])
        self.assertIsNotNone(m, out)
        self.assertEqual(self.body(r, "Out", int(m.group(1))), want_text[2:12] + b"\r\n")

    def test_bad_urls(self):
        r = self.r
        uv, u1 = self.append(r, "INBOX", DRAFT)
        r.cmd("c", "CREATE Out")
        r.cmd("c", "CREATE Sub/Inner")
        uvs, us = self.append(r, "Sub/Inner", FORWARDED)
        # bob has a message at UID 1 in his INBOX
        b = self.session("bob")
        buv, bu = self.append(b, "INBOX", FORWARDED)
        port = self.server.ports["imap"]
        bad = [
            "imap://bob@127.0.0.1/INBOX;UIDVALIDITY=%d/;UID=%d" % (buv, bu),    # another user
            "imap://bob;AUTH=*@127.0.0.1/INBOX/;UID=%d" % bu,
            "imap://alice@mail.example.net/INBOX/;UID=%d" % u1,                # another host
            "imap://alice@127.0.0.1:%d/INBOX/;UID=%d" % (port + 1 if port + 1 not in (143, 993) else port + 2, u1),
            "/INBOX;UIDVALIDITY=%d/;UID=%d" % (uv, u1 + 5),                    # no such UID
            "/INBOX;UIDVALIDITY=%d/;UID=%d" % (uv + 1, u1),                    # stale UIDVALIDITY
            "/INBOX;UIDVALIDITY=%d/;UID=%d/;SECTION=3" % (uv, u1),             # no part 3
            "/INBOX;UIDVALIDITY=%d/;UID=%d/;SECTION=1.5.9" % (uv, u1),
            "/INBOX/;UID=%d/;SECTION=1.HEADER" % u1,                            # part 1 holds no message
            "/INBOX/;UID=%d/;SECTION=NOSUCH" % u1,
            "/NoSuchFolder/;UID=1",
            "/../bob/INBOX/;UID=%d" % bu,                                       # climbing out
            "/Sub/../../bob/INBOX/;UID=%d" % bu,
            "/%%2E%%2E/bob/INBOX/;UID=%d" % bu,
            "/Sub/%%2e%%2e/Sub/Inner/;UID=%d" % us,
            "/.imap/INBOX/;UID=1",
            "/Sub//Inner/;UID=%d" % us,
            "/INBOX%%00x/;UID=%d" % u1,
            "/INBOX/;UID=%d/;URLAUTH=anonymous:internal:91354a473744909de610943775f92038" % u1,  # URLAUTH
            "/INBOX;EXPIRE=2030-01-01T00:00:00Z/;UID=%d" % u1,
            "/INBOX?SUBJECT%%20x",                                              # a search, not a message
            "/INBOX",                                                           # a folder, not a message
            "/INBOX/;UID=0",
            "/INBOX/;UID=4294967296",
            ";UID=%d" % u1,                                                     # relative, nothing selected
            "pop://alice@127.0.0.1/1",
            "file:///etc/passwd",
            "",
        ]
        for url in bad:
            out = r.cmd("a", "APPEND Out CATENATE (URL \"%s\")" % url)
            self.assertTrue(out[-1].startswith("a NO [BADURL "), (url, out))
            self.assertNotIn("\r", out[-1])
            code = out[-1][len("a NO [BADURL "):].split("]")[0]
            if url and "%00" not in url:
                self.assertEqual(code, url)
        self.assertEqual(self.count(r, "Out"), 0)
        self.assertEqual(self.count(b, "INBOX"), 1)
        # the reasons, in Dovecot's words where it has the case
        for url, why in (("/INBOX;UIDVALIDITY=%d/;UID=%d" % (uv, u1 + 5), "Message not found"),
                         ("/INBOX;UIDVALIDITY=%d/;UID=%d" % (uv + 1, u1), "Invalid UIDVALIDITY"),
                         ("/NoSuchFolder/;UID=1", "Mailbox doesn't exist: NoSuchFolder"),
                         (";UID=1", "Mailbox-relative IMAP URL, but no mailbox selected")):
            out = r.cmd("a", "APPEND Out CATENATE (URL \"%s\")" % url)
            self.assertTrue(out[-1].startswith("a NO [BADURL %s] %s (" % (url, why)), out)
        # the good forms of those work
        for url in ("/Sub/Inner/;UID=%d" % us, "/INBOX;UIDVALIDITY=%d/;UID=%d/;SECTION=2" % (uv, u1)):
            self.assertTrue(ok(r.cmd("a", "APPEND Out CATENATE (URL \"%s\")" % url)), url)
        self.assertEqual(self.count(r, "Out"), 2)

    def test_syntax(self):
        r = self.r
        for args in ("CATENATE ()", "CATENATE (TEXT \"quoted\")", "CATENATE (FOO \"x\")",
                     "CATENATE (URL)", "CATENATE (TEXT)", "CATENATE TEXT"):
            out = r.cmd("b", "APPEND INBOX %s" % args)
            self.assertTrue(out[-1].startswith("b BAD "), (args, out))
        # BAD before any URL is looked at
        out = self.send_cmd(r, "b", ["b APPEND INBOX CATENATE (URL \"/INBOX/;UID=99\") CATENATE (BAD x)"])
        self.assertTrue(out[-1].startswith("b BAD "), out)
        self.assertEqual(self.count(r, "INBOX"), 0)
        # missing target: TRYCREATE
        r.cmd("c", "CREATE Src")
        uv, u = self.append(r, "Src", FORWARDED)
        out = r.cmd("t", "APPEND NoSuch CATENATE (URL \"/Src/;UID=%d\")" % u)
        self.assertTrue(out[-1].startswith("t NO [TRYCREATE]"), out)

    def test_date_and_literal8(self):
        """A date-time before CATENATE; a literal8 TEXT part with NULs
        (BINARY, RFC 3516) stored as sent."""
        r = self.r
        hdr = ("Subject: bin\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
               "Content-Transfer-Encoding: binary\r\n\r\n")
        uv, u = self.append(r, "INBOX", hdr + "x\r\n")
        payload = b"a\x00b\x00\x01\xff end\r\n"
        out = self.send_cmd(r, "a", [
            "a APPEND INBOX (\\Flagged) \"05-Dec-2026 10:11:12 +0100\" CATENATE (URL \"/INBOX/;UID=%d/;SECTION=HEADER\" TEXT " % u,
            ("lit", payload, "lit8"), ")"])
        m = re.match(r"a OK \[APPENDUID \d+ (\d+)\]", out[-1])
        self.assertIsNotNone(m, out)
        new = int(m.group(1))
        self.assertEqual(self.body(r, "INBOX", new, "BINARY.PEEK[1]"), payload)
        out = r.cmd("i", "UID FETCH %d (INTERNALDATE FLAGS)" % new)
        # the same instant, in whatever zone the store shows it
        m = re.search(r'INTERNALDATE "([^"]+)"', out[0])
        when = datetime.datetime.strptime(m.group(1).strip(), "%d-%b-%Y %H:%M:%S %z")
        self.assertEqual(when, datetime.datetime(2026, 12, 5, 9, 11, 12, tzinfo=datetime.timezone.utc))
        self.assertIn("\\Flagged", out[0])

    def test_empty_result(self):
        out = self.send_cmd(self.r, "z", ["z APPEND INBOX CATENATE (TEXT ", ("lit", b"", "plus"), ")"])
        self.assertTrue(out[-1].startswith("z NO "), out)
        self.assertEqual(self.count(self.r, "INBOX"), 0)


class CatLimits(Base):
    """[TOOBIG] past imap_max_literal_size for the put-together message;
    [OVERQUOTA] past mailbox_size_limit (nothing written either way)."""
    conf = "imap_max_literal_size = 8192\nmailbox_size_limit = 40000\n"

    def test_toobig(self):
        r = self.r
        uv, u = self.append(r, "INBOX", "Subject: big\r\n\r\n" + "y" * 5000 + "\r\n")
        r.cmd("c", "CREATE Out")
        url = "/INBOX/;UID=%d" % u
        self.assertTrue(ok(r.cmd("a", "APPEND Out CATENATE (URL \"%s\")" % url)))
        out = r.cmd("a", "APPEND Out CATENATE (URL \"%s\" URL \"%s\")" % (url, url))
        self.assertTrue(out[-1].startswith("a NO [TOOBIG]"), out)
        # the same inside a MULTIAPPEND: the good first message is not kept
        out = r.cmd("a", "APPEND Out CATENATE (URL \"%s\") CATENATE (URL \"%s\" TEXT {1+}\r\nz URL \"%s\")"
                  % (url, url, url))
        self.assertTrue(out[-1].startswith("a NO [TOOBIG]"), out)
        self.assertEqual(self.count(r, "Out"), 1)

    def test_overquota(self):
        r = self.r
        uv, u = self.append(r, "INBOX", "Subject: big\r\n\r\n" + "y" * 7000 + "\r\n")
        r.cmd("c", "CREATE Out")
        url = "/INBOX/;UID=%d" % u
        n = 0
        while True:
            out = r.cmd("a%d" % n, "APPEND Out CATENATE (URL \"%s\")" % url)
            if not ok(out):
                break
            n += 1
            self.assertLess(n, 10)
        self.assertTrue(out[-1].startswith("a%d NO [OVERQUOTA]" % n), out)
        self.assertEqual(self.count(r, "Out"), n)


if __name__ == "__main__":
    unittest.main()
