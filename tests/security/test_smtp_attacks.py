"""SMTP smuggling, kept as regression tests (issue #11: the attack that held).

tests/integration/test_smtp_smuggling.py sends twelve bare CR / bare LF
spellings of "end of data", each with a second transaction behind it. This
file adds the spellings it lacks (dot-stuffed and near-miss terminators,
the terminator split across TCP segments, and BDAT chunks carrying a
terminator), so that 21 variants are covered in all. Each carrier is sent
from outside mynetworks (127.0.0.2). With the default
smtpd_forbid_bare_newline = normalize each connection queues exactly one
message that holds the smuggled text as content; with = yes a bare CR or
LF gets 521 and nothing is queued. The smuggled recipient (bob) and the
smuggled sender never appear anywhere."""
import select
import socket
import time
import unittest

from harness import Server, wait_for
from test_smtp import HOST, MODS
from test_smtp_smuggling import SMUGGLED, VARIANTS

# (tag, segments): the bytes between "first part" and the smuggled
# transaction, sent as separate TCP segments with a pause between them.
EXTRA = [
    ("CRLF..CRLF", [b"\r\n..\r\n"]),              # dot-stuffed: a line holding "."
    ("CRLF.SP CRLF", [b"\r\n. \r\n"]),            # a dot and a space is text
    ("CRLF.TAB CRLF", [b"\r\n.\t\r\n"]),
    ("LF..LF", [b"\n..\n"]),
    ("CRLF LF.CRLF", [b"\r\n\n.\r\n"]),          # a bare LF right before the dot
    ("split LF | .LF", [b"\n", b".\n"]),          # each half in its own segment
    ("split CRLF. | LF", [b"\r\n.", b"\n"]),
]

BDAT_SMUGGLED = b"\r\n.\r\n" + SMUGGLED + b"\r\n.\r\n"


def bare(seq):
    """Does seq hold a CR or LF that is not part of a CRLF pair?"""
    rest = seq.replace(b"\r\n", b"")
    return b"\r" in rest or b"\n" in rest


class Client:
    def __init__(self, port, source="127.0.0.2"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(source, 0))
        self.f = self.sock.makefile("rb")

    def line(self):
        raw = self.f.readline()
        if not raw:
            raise EOFError("closed")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def reply(self):
        while True:
            l = self.line()
            if len(l) < 4 or l[3] != "-":
                return l

    def cmd(self, text):
        self.sock.sendall(text + b"\r\n")
        return self.reply()

    def rest(self):
        """Replies until QUIT's, a 421/521 or the connection's end."""
        out = []
        while True:
            try:
                out.append(self.line())
            except (EOFError, ConnectionResetError, socket.timeout):
                return out
            if out[-1].startswith(("221", "421", "521")):
                return out

    def close(self):
        self.sock.close()


def open_transaction(port, tag):
    c = Client(port)
    assert c.line().startswith("220 ")
    assert c.cmd(b"EHLO client2.example.com.ar").startswith("250 ")
    assert c.cmd(b"MAIL FROM:<carol@example.com.ar>") == "250 2.1.0 Ok"
    assert c.cmd(b"RCPT TO:<alice@example.com.ar>") == "250 2.1.5 Ok"
    return c


def send_carrier(port, tag, segments):
    c = open_transaction(port, tag)
    try:
        assert c.cmd(b"DATA").startswith("354 ")
        pieces = [b"Subject: carrier " + tag.encode() + b"\r\n\r\nfirst part"] + segments
        pieces.append(SMUGGLED + b"\r\n.\r\nQUIT\r\n")
        for piece in pieces:
            c.sock.sendall(piece)
            # A server that answers early (521) hangs up: read its reply
            # before more bytes make the kernel reset the connection.
            if select.select([c.sock], [], [], 0.1)[0]:
                break
        return c.rest()
    finally:
        c.close()


def send_bdat_carrier(port, tag, last_chunk_only):
    """BDAT has no terminator at all: a CRLF.CRLF and commands inside a
    chunk are content (RFC 3030)."""
    c = open_transaction(port, tag)
    try:
        head = b"Subject: carrier " + tag.encode() + b"\r\n\r\nfirst part"
        if last_chunk_only:
            chunk = head + BDAT_SMUGGLED
            c.sock.sendall(b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"QUIT\r\n")
        else:
            c.sock.sendall(b"BDAT %d\r\n" % len(head) + head)
            assert c.reply() == "250 2.0.0 Ok: %d bytes" % len(head)
            c.sock.sendall(b"BDAT %d LAST\r\n" % len(BDAT_SMUGGLED) + BDAT_SMUGGLED + b"QUIT\r\n")
        return c.rest()
    finally:
        c.close()


class SmugglingNormalize(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(modules=MODS, listeners=("smtpd",))
        cls.server.start()
        cls.port = cls.server.ports["smtpd"]

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def test_variants_counted(self):
        tags = [t for t, _ in VARIANTS] + [t for t, _ in EXTRA] + ["BDAT LAST", "BDAT two chunks"]
        self.assertEqual(len(set(tags)), len(tags))
        self.assertEqual(len(tags), 21)

    def test_each_carrier_is_one_message(self):
        sent = []
        for tag, segments in EXTRA:
            with self.subTest(variant=tag):
                replies = send_carrier(self.port, tag, segments)
                self.assertEqual(len(replies), 2, replies)
                self.assertRegex(replies[0], r"^250 2\.0\.0 Ok: queued as [0-9A-F]+$")
                self.assertEqual(replies[1], "221 2.0.0 Bye")
                sent.append("carrier " + tag)
        for tag, last_only in (("BDAT LAST", True), ("BDAT two chunks", False)):
            with self.subTest(variant=tag):
                replies = send_bdat_carrier(self.port, tag, last_only)
                self.assertEqual(len(replies), 2, replies)
                self.assertRegex(replies[0], r"^250 2\.0\.0 Ok: queued as [0-9A-F]+$")
                self.assertEqual(replies[1], "221 2.0.0 Bye")
                sent.append("carrier " + tag)
        wait_for(lambda: len(self.server.messages("alice")) == len(sent), what="every carrier delivered")
        got = self.server.messages("alice")
        self.assertEqual(sorted(m["Subject"] for m in got), sorted(sent))
        for m in got:
            self.assertIn("SMUGGLED-PAYLOAD", m.get_payload(), m["Subject"])
            self.assertIn("MAIL FROM:<evil@attacker.test>", m.get_payload(), m["Subject"])
        time.sleep(0.5)
        self.assertEqual(self.server.messages("bob"), [])
        log = self.server.log()
        self.assertNotIn("from=<evil@attacker.test>", log)
        self.assertEqual(log.count("(queue active)"), len(sent), log)


class SmugglingReject(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(modules=MODS, listeners=("smtpd",), conf="smtpd_forbid_bare_newline = yes\n")
        cls.server.start()
        cls.port = cls.server.ports["smtpd"]

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def test_bare_newlines_get_521(self):
        clean = []
        for tag, segments in EXTRA:
            with self.subTest(variant=tag):
                replies = send_carrier(self.port, tag, segments)
                if bare(b"".join(segments)):
                    self.assertEqual(replies, ["521 5.5.2 %s Error: bare <LF> received" % HOST])
                else:
                    self.assertRegex(replies[0], r"^250 2\.0\.0 Ok: queued as [0-9A-F]+$")
                    clean.append("carrier " + tag)
        self.assertEqual(len(clean), 3)
        wait_for(lambda: len(self.server.messages("alice")) == len(clean), what="the clean carriers")
        time.sleep(0.5)
        self.assertEqual(sorted(m["Subject"] for m in self.server.messages("alice")), sorted(clean))
        self.assertEqual(self.server.messages("bob"), [])
        self.assertNotIn("from=<evil@attacker.test>", self.server.log())


if __name__ == "__main__":
    unittest.main()
