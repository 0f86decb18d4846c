"""SMTP smuggling end to end: every bare CR / bare LF spelling of "end of
data" is sent with a second, smuggled transaction behind it. With the
default smtpd_forbid_bare_newline = normalize exactly one message arrives
(holding the smuggled text as content) and the smuggled recipient gets
nothing; with = yes the client gets 521 and nothing is delivered."""
import time
import unittest

from harness import Server, wait_for
from test_smtp import HOST, MODS, Raw

VARIANTS = [
    ("LF.LF", b"\n.\n"),
    ("CR.CR", b"\r.\r"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("CRLF.CR", b"\r\n.\r"),
    ("CR.LF", b"\r.\n"),
    ("CR.CRLF", b"\r.\r\n"),
    ("LF.CR", b"\n.\r"),
    ("CRLF.CRCRLF", b"\r\n.\r\r\n"),
    ("CRLF NUL.CRLF", b"\r\n\0.\r\n"),
    ("CRLF.NUL CRLF", b"\r\n.\0\r\n"),
    ("CRLF.CR NUL LF", b"\r\n.\r\0\n"),
]

SMUGGLED = (b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<bob@example.com.ar>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nSMUGGLED-PAYLOAD\r\n")


def send_variant(port, tag, seq):
    """One DATA transaction carrying seq + a smuggled transaction; returns
    the replies after the 354 (until QUIT's or the connection's end)."""
    c = Raw(port)
    try:
        assert c.line().startswith("220 ")
        c.send(b"EHLO client.example.com.ar\r\n")
        c.reply()
        assert c.cmd("MAIL FROM:<carol@example.com.ar>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<alice@example.com.ar>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        body = (b"Subject: carrier " + tag.encode() + b"\r\n\r\nfirst part" + seq + SMUGGLED +
                b"\r\n.\r\nQUIT\r\n")
        c.send(body)
        replies = []
        while True:
            try:
                replies.append(c.line())
            except (EOFError, ConnectionResetError):
                break
            if replies[-1].startswith(("221", "421", "521")):
                break
        return replies
    finally:
        c.close()


class SmugglingNormalize(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(modules=MODS)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def test_every_variant_is_one_message(self):
        port = self.server.ports["smtpd"]
        for tag, seq in VARIANTS:
            with self.subTest(variant=tag):
                replies = send_variant(port, tag, seq)
                self.assertEqual(len(replies), 2, replies)
                self.assertTrue(replies[0].startswith("250 2.0.0 Ok: queued as "), replies)
                self.assertEqual(replies[1], "221 2.0.0 Bye")
        wait_for(lambda: len(self.server.messages("alice")) == len(VARIANTS), what="all carriers")
        subjects = sorted(m["Subject"] for m in self.server.messages("alice"))
        self.assertEqual(subjects, sorted("carrier " + t for t, _ in VARIANTS))
        for m in self.server.messages("alice"):
            self.assertIn("SMUGGLED-PAYLOAD", m.get_payload(), m["Subject"])
        time.sleep(0.5)
        # The smuggled recipient never got a message, and there was one
        # queued message per connection only.
        self.assertEqual(self.server.messages("bob"), [])
        self.assertNotIn("evil@attacker.test>, size", self.server.log())


class SmugglingReject(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(modules=MODS, conf="smtpd_forbid_bare_newline = yes\n")
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def test_bare_newlines_get_521(self):
        port = self.server.ports["smtpd"]
        clean = [(t, s) for t, s in VARIANTS if b"\r\n" == s.replace(b"\0", b"")[:2] and
                 b"\n" not in s.replace(b"\r\n", b"") and b"\r" not in s.replace(b"\r\n", b"")]
        for tag, seq in VARIANTS:
            with self.subTest(variant=tag):
                replies = send_variant(port, tag, seq)
                if (tag, seq) in clean:
                    self.assertTrue(replies[0].startswith("250 2.0.0 Ok: queued as "), replies)
                else:
                    self.assertEqual(replies, ["521 5.5.2 %s Error: bare <LF> received" % HOST])
        time.sleep(0.5)
        self.assertEqual(self.server.messages("bob"), [])
        got = sorted(m["Subject"] for m in self.server.messages("alice"))
        self.assertEqual(got, sorted("carrier " + t for t, _ in clean))

    def test_bare_lf_in_command(self):
        c = Raw(self.server.ports["smtpd"])
        self.addCleanup(c.close)
        c.line()
        c.send("NOOP\n")
        self.assertEqual(c.line(), "521 5.5.2 %s Error: bare <LF> received" % HOST)
        self.assertTrue(c.closed())


if __name__ == "__main__":
    unittest.main()
