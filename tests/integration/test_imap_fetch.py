"""IMAP FETCH through the wire: every FETCH item, partials, PEEK against
\\Seen, multipart BODYSTRUCTURE, storage headers hidden, a message larger
than the output buffer streamed, no EXPUNGE during FETCH. The mailbox is
written as an mbox file (what local delivery or Dovecot leaves there);
the server runs the mbox, smtp and imap modules."""
import email.utils
import imaplib
import os
import pwd
import re
import socket
import time
import unittest

from harness import Server

PASSWORD = "secret"


def mbox_from_line(sender, when):
    return "From %s  %s\n" % (sender, time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(when)))


def write_mbox(server, user, messages):
    """messages: list of (text with LF line ends, internal date as epoch
    seconds). Writes the user's INBOX the way Postfix's local(8) does
    (From_ line, '>From ' quoting, an empty line after each)."""
    out = []
    for text, when in messages:
        out.append(mbox_from_line("sender@example.com", when))
        for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
            if line.startswith("From "):
                line = ">" + line
            out.append(line + "\n")
        out.append("\n")
    path = server.mbox_path(user)
    with open(path, "w", newline="") as f:
        f.write("".join(out))
    if server.run_user:
        pw = pwd.getpwnam(server.run_user)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o600)


def wire(text):
    """What FETCH BODY[] must give back for text stored with LF ends."""
    return text.replace("\n", "\r\n").encode()


def imap_server(test):
    s = Server(modules=("mbox", "smtp", "imap"), listeners=("smtpd", "imap"))
    s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n" % s.passwd_file)
    test.addCleanup(s.cleanup)
    return s


# ---- a small IMAP client that keeps the server's bytes as they came ----

def tokenize(buf, pos=0, end_char=None):
    """IMAP data -> nested lists of bytes/None; BODY[...]<n> stays one atom."""
    out = []
    n = len(buf)
    while pos < n:
        c = buf[pos:pos + 1]
        if c == b" ":
            pos += 1
            continue
        if c in (b"\r", b"\n"):
            pos += 1
            continue
        if c == b"(":
            sub, pos = tokenize(buf, pos + 1, b")")
            out.append(sub)
            continue
        if c == b")":
            return out, pos + 1
        if c == b'"':
            pos += 1
            val = bytearray()
            while buf[pos:pos + 1] != b'"':
                if buf[pos:pos + 1] == b"\\":
                    pos += 1
                val += buf[pos:pos + 1]
                pos += 1
            out.append(bytes(val))
            pos += 1
            continue
        if c == b"{":
            close = buf.index(b"}", pos)
            size = int(buf[pos + 1:close])
            start = close + 3  # "}\r\n"
            out.append(buf[start:start + size])
            pos = start + size
            continue
        start = pos
        depth = 0
        while pos < n:
            ch = buf[pos:pos + 1]
            if ch == b"[":
                depth += 1
            elif ch == b"]":
                depth -= 1
            elif depth == 0 and ch in (b" ", b")", b"\r", b"\n"):
                break
            pos += 1
        atom = buf[start:pos]
        out.append(None if atom == b"NIL" else atom)
    return out, pos


class Client:
    def __init__(self, port, user="alice", login=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.f = self.sock.makefile("rb")
        self.greeting = self.f.readline()
        self.n = 0
        if login:
            _, tagged = self.cmd("LOGIN %s %s" % (user, PASSWORD))
            assert " OK " in tagged, tagged

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def read_response(self):
        """One response with its literals inlined, as bytes."""
        data = bytearray()
        while True:
            line = self.f.readline()
            if not line:
                raise AssertionError("connection closed; got %r" % bytes(data))
            data += line
            m = re.search(rb"\{(\d+)\+?\}\r\n$", line)
            if not m:
                return bytes(data)
            data += self.f.read(int(m.group(1)))

    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def tag(self):
        self.n += 1
        return "t%d" % self.n

    def cmd(self, line):
        """Run one command: (untagged responses, tagged line as str)."""
        tag = self.tag()
        self.send("%s %s" % (tag, line))
        return self.collect(tag)

    def collect(self, tag):
        untagged = []
        while True:
            r = self.read_response()
            if r.startswith(tag.encode() + b" "):
                return untagged, r.decode(errors="replace").rstrip("\r\n")
            untagged.append(r)

    def fetch(self, seqset, items, uid=False):
        """{seq: {NAME: value}} for the FETCH replies, and the tagged line."""
        untagged, tagged = self.cmd("%sFETCH %s %s" % ("UID " if uid else "", seqset, items))
        return parse_fetches(untagged), tagged, untagged


def parse_fetches(untagged):
    res = {}
    for r in untagged:
        m = re.match(rb"\* (\d+) FETCH ", r)
        if not m:
            continue
        toks, _ = tokenize(r, m.end())
        att = toks[0]
        d = {}
        for i in range(0, len(att), 2):
            d[att[i].decode()] = att[i + 1]
        res.setdefault(int(m.group(1)), {}).update(d)
    return res


# ---- the messages ----

T0 = 1795846087  # Sat, 28 Nov 2026 06:08:07 UTC

SIMPLE = ("Return-Path: <alice@example.com>\n"
          "From: Alice Example <alice@example.com>\n"
          "To: Bob <bob@example.com>, carol@example.org\n"
          "Cc: team@example.com\n"
          "Subject: Lunch plans\n"
          "Date: Sat, 28 Nov 2026 06:08:07 +0000\n"
          "Message-ID: <lunch.1@example.com>\n"
          "\n"
          "Shall we meet at noon?\n"
          "From here it is a short walk.\n"
          "-- \nAlice\n")
SIMPLE_WIRE = wire(SIMPLE.replace("\nFrom here", "\n>From here"))

MULTI = ("From: Carol <carol@example.org>\n"
         "To: alice@example.com\n"
         "Subject: =?UTF-8?Q?Report_f=C3=BCr_Q3?=\n"
         "Date: Mon, 02 Mar 2026 10:00:00 +0100\n"
         "MIME-Version: 1.0\n"
         "Content-Type: multipart/mixed; boundary=\"outer\"\n"
         "\n"
         "This is a multi-part message in MIME format.\n"
         "--outer\n"
         "Content-Type: multipart/alternative; boundary=\"inner\"\n"
         "\n"
         "--inner\n"
         "Content-Type: text/plain; charset=utf-8\n"
         "Content-Transfer-Encoding: quoted-printable\n"
         "\n"
         "Numbers f=C3=BCr Q3 attached.\n"
         "--inner\n"
         "Content-Type: text/html; charset=utf-8\n"
         "\n"
         "<p>Numbers attached.</p>\n"
         "--inner--\n"
         "--outer\n"
         "Content-Type: application/pdf; name=\"q3.pdf\"\n"
         "Content-Disposition: attachment; filename=\"q3.pdf\"\n"
         "Content-Transfer-Encoding: base64\n"
         "\n"
         "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K\n"
         "--outer--\n")

# As Dovecot leaves a message in the mbox: storage headers that IMAP hides.
DOVECOT_STORED = ("From: bob@example.com\n"
                  "To: alice@example.com\n"
                  "Subject: stored by dovecot\n"
                  "Date: Sun, 29 Nov 2026 08:00:00 +0000\n"
                  "Status: O\n"
                  "X-Status: \n"
                  "X-Keywords:                                                   \n"
                  "X-UID: 3                                                      \n"
                  "Content-Length: 12\n"
                  "\n"
                  "hello again\n")
DOVECOT_WIRE = wire("From: bob@example.com\n"
                    "To: alice@example.com\n"
                    "Subject: stored by dovecot\n"
                    "Date: Sun, 29 Nov 2026 08:00:00 +0000\n"
                    "\n"
                    "hello again\n")


def local_internaldate(y, mo, d, h, mi, sec):
    """INTERNALDATE of a wall-clock time in this process's time zone (the
    daemon's: it inherits the environment, TZ included)."""
    t = time.mktime((y, mo, d, h, mi, sec, 0, 0, -1))
    off = time.localtime(t).tm_gmtoff // 60
    sign = "+" if off >= 0 else "-"
    return ("%02d-%s-%04d %02d:%02d:%02d %s%02d%02d" % (
        d, "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()[mo - 1], y, h, mi, sec,
        sign, abs(off) // 60, abs(off) % 60)).encode()


class FetchTest(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self)
        write_mbox(self.server, "alice", [(SIMPLE, T0), (MULTI, T0 + 3600), (DOVECOT_STORED, T0 + 86400)])
        self.server.start()
        self.c = self.client()
        untagged, tagged = self.c.cmd("SELECT INBOX")
        self.assertIn("OK [READ-WRITE]", tagged)
        self.assertIn(b"* 3 EXISTS\r\n", untagged)

    def client(self):
        c = Client(self.server.ports["imap"])
        self.addCleanup(c.close)
        return c

    def assertOkFetch(self, tagged):
        self.assertRegex(tagged, r"^t\d+ OK Fetch completed")

    def test_flags_uid_size_internaldate(self):
        res, tagged, raw = self.c.fetch("1:3", "(UID FLAGS RFC822.SIZE INTERNALDATE)")
        self.assertOkFetch(tagged)
        self.assertEqual(sorted(res), [1, 2, 3])
        self.assertEqual([res[i]["UID"] for i in (1, 2, 3)], [b"1", b"2", b"3"])
        self.assertEqual(res[1]["FLAGS"], [b"\\Recent"])
        self.assertEqual(res[1]["RFC822.SIZE"], str(len(SIMPLE_WIRE)).encode())
        # From_ line dates carry no zone: they are the server's local time
        # (as Postfix local(8) writes them), shown with its offset then.
        self.assertEqual(res[1]["INTERNALDATE"], local_internaldate(2026, 11, 28, 6, 8, 7))
        self.assertEqual(res[2]["INTERNALDATE"], local_internaldate(2026, 11, 28, 7, 8, 7))
        # The reply keeps the order asked, INTERNALDATE quoted.
        self.assertRegex(raw[0], rb'^\* 1 FETCH \(UID 1 FLAGS \(\\Recent\) RFC822\.SIZE \d+ '
                                 rb'INTERNALDATE "' + re.escape(res[1]["INTERNALDATE"]) + rb'"\)\r\n$')

    def test_macros(self):
        res, tagged, _ = self.c.fetch("1", "ALL")
        self.assertOkFetch(tagged)
        self.assertEqual(set(res[1]), {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"})
        res, _, _ = self.c.fetch("1", "FAST")
        self.assertEqual(set(res[1]), {"FLAGS", "INTERNALDATE", "RFC822.SIZE"})
        res, _, _ = self.c.fetch("2", "FULL")
        self.assertEqual(set(res[2]), {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"})

    def test_body_is_exactly_the_message(self):
        res, tagged, _ = self.c.fetch("1:3", "(BODY.PEEK[] RFC822.SIZE)")
        self.assertOkFetch(tagged)
        self.assertEqual(res[1]["BODY[]"], SIMPLE_WIRE)
        self.assertEqual(res[2]["BODY[]"], wire(MULTI))
        for i in (1, 2, 3):
            self.assertEqual(int(res[i]["RFC822.SIZE"]), len(res[i]["BODY[]"]))

    def test_storage_headers_hidden(self):
        res, _, _ = self.c.fetch("3", "(BODY.PEEK[] BODY.PEEK[HEADER] RFC822.SIZE)")
        self.assertEqual(res[3]["BODY[]"], DOVECOT_WIRE)
        for h in (b"X-UID", b"X-IMAPbase", b"Status:", b"X-Keywords", b"Content-Length"):
            self.assertNotIn(h, res[3]["BODY[HEADER]"])
        self.assertEqual(int(res[3]["RFC822.SIZE"]), len(DOVECOT_WIRE))

    def test_header_text_and_rfc822_items(self):
        hdr, _, text = SIMPLE_WIRE.partition(b"\r\n\r\n")
        res, tagged, _ = self.c.fetch("1", "(BODY.PEEK[HEADER] BODY.PEEK[TEXT] RFC822.HEADER)")
        self.assertOkFetch(tagged)
        self.assertEqual(res[1]["BODY[HEADER]"], hdr + b"\r\n\r\n")
        self.assertEqual(res[1]["BODY[TEXT]"], text)
        self.assertEqual(res[1]["RFC822.HEADER"], hdr + b"\r\n\r\n")
        self.assertNotIn("FLAGS", res[1])  # nothing here sets \Seen
        res, _, _ = self.c.fetch("1", "RFC822.TEXT")
        self.assertEqual(res[1]["RFC822.TEXT"], text)
        self.assertEqual(res[1]["FLAGS"], [b"\\Seen", b"\\Recent"])
        res, _, _ = self.c.fetch("2", "RFC822")
        self.assertEqual(res[2]["RFC822"], wire(MULTI))
        self.assertIn(b"\\Seen", res[2]["FLAGS"])

    def test_header_fields_echo_their_list(self):
        res, tagged, raw = self.c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (FROM Subject)])")
        self.assertOkFetch(tagged)
        self.assertIn(b"BODY[HEADER.FIELDS (FROM SUBJECT)] {", raw[0])
        self.assertEqual(res[1]["BODY[HEADER.FIELDS (FROM SUBJECT)]"],
                         b"From: Alice Example <alice@example.com>\r\nSubject: Lunch plans\r\n\r\n")
        res, _, _ = self.c.fetch("1", "BODY.PEEK[HEADER.FIELDS.NOT (Return-Path To Cc Date Message-ID)]")
        self.assertEqual(res[1]["BODY[HEADER.FIELDS.NOT (RETURN-PATH TO CC DATE MESSAGE-ID)]"],
                         b"From: Alice Example <alice@example.com>\r\nSubject: Lunch plans\r\n\r\n")

    def test_partials(self):
        full = SIMPLE_WIRE
        res, tagged, raw = self.c.fetch("1", "(BODY.PEEK[]<0.10> BODY.PEEK[TEXT]<4.5>)")
        self.assertOkFetch(tagged)
        self.assertIn(b"BODY[]<0> {10}\r\n", raw[0])
        self.assertEqual(res[1]["BODY[]<0>"], full[:10])
        self.assertEqual(res[1]["BODY[TEXT]<4>"], full.partition(b"\r\n\r\n")[2][4:9])
        res, _, _ = self.c.fetch("1", "BODY.PEEK[]<%d.100>" % (len(full) - 3))
        self.assertEqual(res[1]["BODY[]<%d>" % (len(full) - 3)], full[-3:])
        res, _, _ = self.c.fetch("1", "BODY.PEEK[]<100000.5>")
        self.assertEqual(res[1]["BODY[]<100000>"], b"")
        res, _, _ = self.c.fetch("1", "FLAGS")
        self.assertEqual(res[1]["FLAGS"], [b"\\Recent"])  # PEEK left it unseen

    def test_peek_leaves_unseen_non_peek_sets_seen(self):
        res, _, raw = self.c.fetch("2", "BODY.PEEK[TEXT]")
        self.assertNotIn("FLAGS", res[2])
        res, _, _ = self.c.fetch("2", "FLAGS")
        self.assertEqual(res[2]["FLAGS"], [b"\\Recent"])
        res, tagged, raw = self.c.fetch("2", "BODY[TEXT]")
        self.assertOkFetch(tagged)
        # As Dovecot: the changed flags come in the same FETCH, first.
        self.assertTrue(raw[0].startswith(b"* 2 FETCH (FLAGS (\\Seen \\Recent) BODY[TEXT] {"), raw[0])
        # Second read: already seen, no FLAGS.
        res, _, _ = self.c.fetch("2", "BODY[TEXT]")
        self.assertNotIn("FLAGS", res[2])
        # UID FETCH: UID first, then the flags.
        res, _, raw = self.c.fetch("1", "BODY[]", uid=True)
        self.assertTrue(raw[0].startswith(b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) BODY[] {"), raw[0])
        # Persisted: a new session sees \Seen (and no longer \Recent).
        c2 = self.client()
        c2.cmd("SELECT INBOX")
        res, _, _ = c2.fetch("1:3", "FLAGS")
        self.assertEqual(res[1]["FLAGS"], [b"\\Seen"])
        self.assertEqual(res[2]["FLAGS"], [b"\\Seen"])
        self.assertEqual(res[3]["FLAGS"], [])

    def test_examine_does_not_set_seen(self):
        c2 = self.client()
        _, tagged = c2.cmd("EXAMINE INBOX")
        self.assertIn("READ-ONLY", tagged)
        res, tagged, _ = c2.fetch("1", "BODY[]")
        self.assertOkFetch(tagged)
        self.assertNotIn("FLAGS", res[1])
        res, _, _ = self.c.fetch("1", "FLAGS")
        self.assertNotIn(b"\\Seen", res[1]["FLAGS"])

    def test_envelope(self):
        res, _, _ = self.c.fetch("1", "ENVELOPE")
        env = res[1]["ENVELOPE"]
        self.assertEqual(env[0], b"Sat, 28 Nov 2026 06:08:07 +0000")
        self.assertEqual(env[1], b"Lunch plans")
        self.assertEqual(env[2], [[b"Alice Example", None, b"alice", b"example.com"]])  # from
        self.assertEqual(env[3], env[2])  # sender defaults to from
        self.assertEqual(env[4], env[2])  # reply-to defaults to from
        self.assertEqual(env[5], [[b"Bob", None, b"bob", b"example.com"],
                                  [None, None, b"carol", b"example.org"]])
        self.assertEqual(env[6], [[None, None, b"team", b"example.com"]])
        self.assertIsNone(env[7])  # bcc
        self.assertIsNone(env[8])  # in-reply-to
        self.assertEqual(env[9], b"<lunch.1@example.com>")

    def test_multipart_bodystructure_and_parts(self):
        res, tagged, _ = self.c.fetch("2", "(BODYSTRUCTURE BODY)")
        self.assertOkFetch(tagged)
        bs = res[2]["BODYSTRUCTURE"]
        # (alternative-part pdf-part "mixed" (params) ...)
        self.assertEqual(bs[2].lower(), b"mixed")
        self.assertIn([b"boundary", b"outer"], [[p.lower() if i == 0 else p for i, p in enumerate(bs[3][j:j + 2])]
                                               for j in range(0, len(bs[3]), 2)])
        alt = bs[0]
        self.assertEqual(alt[2].lower(), b"alternative")
        self.assertEqual([x.lower() for x in alt[0][:2]], [b"text", b"plain"])
        self.assertEqual(alt[0][5].lower(), b"quoted-printable")
        self.assertEqual([x.lower() for x in alt[1][:2]], [b"text", b"html"])
        pdf = bs[1]
        self.assertEqual([x.lower() for x in pdf[:2]], [b"application", b"pdf"])
        self.assertEqual(pdf[5].lower(), b"base64")
        # the CRLF before the boundary belongs to the boundary (RFC 2046)
        self.assertEqual(int(pdf[6]), len(b"JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K"))
        # BODY is the non-extended form: same tree without extension data.
        body = res[2]["BODY"]
        self.assertEqual(body[2].lower(), b"mixed")
        self.assertEqual(len(body), 3)
        res, _, _ = self.c.fetch("2", "(BODY.PEEK[1.1] BODY.PEEK[1.2] BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[3])")
        self.assertEqual(res[2]["BODY[1.1]"], b"Numbers f=C3=BCr Q3 attached.")
        self.assertEqual(res[2]["BODY[1.2]"], b"<p>Numbers attached.</p>")
        self.assertEqual(res[2]["BODY[2]"], b"JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K")
        self.assertTrue(res[2]["BODY[2.MIME]"].startswith(b"Content-Type: application/pdf; name=\"q3.pdf\"\r\n"))
        self.assertTrue(res[2]["BODY[2.MIME]"].endswith(b"\r\n\r\n"))
        self.assertEqual(res[2]["BODY[3]"], b"")

    def test_errors(self):
        _, tagged = self.c.cmd("FETCH 4 FLAGS")
        self.assertRegex(tagged, r"^t\d+ BAD Error in IMAP command FETCH: Invalid messageset$")
        _, tagged = self.c.cmd("FETCH 1 (FLAGS FOO)")
        self.assertRegex(tagged, r"^t\d+ BAD Error in IMAP command FETCH: Unknown FETCH attribute FOO$")
        _, tagged = self.c.cmd("FETCH 1 BODY[]<0.0>")
        self.assertRegex(tagged, r"^t\d+ BAD Error in IMAP command FETCH: Invalid BODY\[\.\.\] parameter")
        _, tagged = self.c.cmd("FETCH 1")
        self.assertRegex(tagged, r"^t\d+ BAD Error in IMAP command FETCH: Invalid arguments\.$")
        # UIDs that do not exist are no error.
        res, tagged, raw = self.c.fetch("99:120", "FLAGS", uid=True)
        self.assertOkFetch(tagged)
        self.assertEqual(raw, [])
        # The session goes on.
        res, tagged, _ = self.c.fetch("1", "UID")
        self.assertOkFetch(tagged)

    def test_imaplib_client(self):
        m = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        m.login("alice", PASSWORD)
        typ, _ = m.select("INBOX")
        self.assertEqual(typ, "OK")
        typ, data = m.fetch("1:2", "(RFC822.SIZE BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        self.assertEqual(data[0][1], SIMPLE_WIRE)
        self.assertEqual(data[2][1], wire(MULTI))
        typ, data = m.uid("FETCH", "2", "(FLAGS)")
        self.assertEqual(typ, "OK")
        self.assertIn(b"UID 2", data[0])
        m.logout()


class FetchLargeTest(unittest.TestCase):
    """Replies larger than the connection's output buffer (4 MB) stream."""

    def setUp(self):
        self.server = imap_server(self)
        line = "0123456789" * 7 + "\n"
        self.big = ("From: big@example.com\nSubject: big\n\n" + line * (6 * 1024 * 1024 // len(line)))
        small = "From: a@example.com\nSubject: s%d\n\n" + "x" * 900 + "\n"
        msgs = [(self.big, T0)] + [(small % i, T0 + i) for i in range(1, 3001)]
        write_mbox(self.server, "alice", msgs)
        self.server.start()
        self.c = Client(self.server.ports["imap"])
        self.addCleanup(self.c.close)
        untagged, tagged = self.c.cmd("SELECT INBOX")
        self.assertIn(b"* 3001 EXISTS\r\n", untagged)

    def test_big_message_and_many_messages(self):
        # Pipelined with a NOOP: its reply must come after the whole FETCH.
        self.c.send("f1 FETCH 1 BODY.PEEK[]")
        self.c.send("f2 NOOP")
        untagged, tagged = self.c.collect("f1")
        self.assertRegex(tagged, r"^f1 OK Fetch completed")
        res = parse_fetches(untagged)
        self.assertEqual(res[1]["BODY[]"], wire(self.big))
        _, tagged = self.c.collect("f2")
        self.assertRegex(tagged, r"^f2 OK")
        # 3001 messages x ~1 KB, read slowly: all arrive, in order.
        self.c.send("f3 FETCH 2:* (UID BODY.PEEK[TEXT])")
        time.sleep(0.5)
        untagged, tagged = self.c.collect("f3")
        self.assertRegex(tagged, r"^f3 OK Fetch completed")
        seqs = [int(re.match(rb"\* (\d+) FETCH", r).group(1)) for r in untagged]
        self.assertEqual(seqs, list(range(2, 3002)))
        self.assertEqual(parse_fetches(untagged[-1:])[3001]["BODY[TEXT]"], b"x" * 900 + b"\r\n")


class NoExpungeDuringFetchTest(unittest.TestCase):
    def test_other_session_expunge_reported_only_later(self):
        server = imap_server(self)
        write_mbox(server, "alice", [(SIMPLE, T0), (MULTI, T0 + 1), (DOVECOT_STORED, T0 + 2)])
        server.start()
        a = Client(server.ports["imap"])
        b = Client(server.ports["imap"])
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        a.cmd("SELECT INBOX")
        b.cmd("SELECT INBOX")
        _, tagged = b.cmd("STORE 2 +FLAGS (\\Deleted)")
        self.assertIn(" OK ", tagged)
        untagged, tagged = b.cmd("EXPUNGE")
        self.assertIn(b"* 2 EXPUNGE\r\n", untagged)
        # a still numbers 3 messages and gets no EXPUNGE during FETCH. What
        # is known without the text is still answered (as Dovecot).
        untagged, tagged = a.cmd("FETCH 1:3 (UID FLAGS)")
        self.assertFalse([r for r in untagged if r.endswith(b"EXPUNGE\r\n")], untagged)
        res = parse_fetches(untagged)
        self.assertEqual([res[i]["UID"] for i in (1, 2, 3)], [b"1", b"2", b"3"])
        self.assertRegex(tagged, r"^t\d+ OK Fetch completed")
        # Its text is gone: NIL for it, the others in full, OK (RFC 2180
        # §4.1.3; the lead's decision, see imap_fetch.c).
        untagged, tagged = a.cmd("FETCH 1:3 (UID BODY.PEEK[TEXT])")
        self.assertFalse([r for r in untagged if r.endswith(b"EXPUNGE\r\n")], untagged)
        self.assertIn(b"* 2 FETCH (UID 2 BODY[TEXT] NIL)\r\n", untagged)
        res = parse_fetches(untagged)
        self.assertEqual(res[3]["BODY[TEXT]"], b"hello again\r\n")
        # Dovecot 2.3's words for it
        self.assertRegex(tagged, r"^t\d+ OK \[EXPUNGEISSUED\] Some messages were already expunged \(")
        # SEARCH judges it on what is known, as FETCH answers its UID and
        # FLAGS (test_imap_search.ExpungedMeanwhileTest for text keys).
        untagged, tagged = a.cmd("SEARCH ALL")
        self.assertIn(b"* SEARCH 1 2 3\r\n", untagged)
        self.assertFalse([r for r in untagged if r.endswith(b"EXPUNGE\r\n")], untagged)
        untagged, tagged = a.cmd("NOOP")
        self.assertIn(b"* 2 EXPUNGE\r\n", untagged)
        res, tagged, _ = a.fetch("1:2", "UID")
        self.assertEqual([res[1]["UID"], res[2]["UID"]], [b"1", b"3"])


if __name__ == "__main__":
    unittest.main()
