"""STARTTLS command injection (CVE-2011-0411 style; RFC 3207 sec. 4.2,
RFC 3501 sec. 6.2.1, RFC 2595 sec. 4): text a client pipelines behind
STARTTLS / STLS in plaintext must be thrown away, never executed as if it
had come over TLS. For SMTP, IMAP and POP3 the injected commands would log
in or open a transaction; after the handshake the first reply must answer
what was sent over TLS, the injected login must not have happened (and
must not be in the log), and the session then works normally.
tests/integration/test_smtp_tls.py keeps the basic SMTP case; this file
keeps all three protocols."""
import socket
import ssl
import time
import unittest

from harness import Server
from lines import Lines

HOST = "mail.example.com.ar"
# The log line of a successful login (checked to match a real one below).
IMAP_LOGIN = r"imap-login\[\d+\]: Login: user=<%s>"
POP3_LOGIN = r"pop3-login\[\d+\]: Login: user=<%s>"


def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def read_line(sock):
    """One CRLF line, a byte at a time: nothing beyond it may be buffered
    here, since the TLS handshake starts right after it."""
    b = b""
    while not b.endswith(b"\r\n"):
        ch = sock.recv(1)
        if not ch:
            raise EOFError("closed after %r" % b)
        b += ch
    return b[:-2].decode("utf-8", "replace")


class TlsLines(Lines):
    """After the handshake: one command a send, CRLF added."""

    def __init__(self, sock):
        super().__init__(ctx().wrap_socket(sock, server_hostname=HOST))

    def send(self, text):
        super().send(text + "\r\n")


class Injection(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        s = Server(modules=("mbox", "smtp", "imap", "pop3"), listeners=("smtpd", "imap", "pop3"))
        s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\nsmtpd_helo_required = yes\n" % s.passwd_file)
        s.start()
        cls.server = s

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def connect(self, service):
        sock = socket.create_connection(("127.0.0.1", self.server.ports[service]), timeout=15)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.addCleanup(sock.close)
        return sock

    def starttls(self, service, greeting, command, injected, reply):
        """Greeting, then command + injected in one segment; the plaintext
        reply; then TLS."""
        sock = self.connect(service)
        self.assertRegex(read_line(sock), greeting)
        if service == "smtpd":
            sock.sendall(b"EHLO client.example.com.ar\r\n")
            while True:
                l = read_line(sock)
                if l[3] == " ":
                    break
        sock.sendall(command + injected)
        self.assertEqual(read_line(sock), reply)
        t = TlsLines(sock)
        self.addCleanup(t.close)
        return t

    def assert_no_login(self, who):
        time.sleep(0.3)
        self.assertNotRegex(self.server.log(), who)

    # ---- SMTP ----

    def test_smtp_injected_transaction_discarded(self):
        inject = (b"MAIL FROM:<injected@attacker.test>\r\nRCPT TO:<bob@example.com.ar>\r\nDATA\r\n"
                  b"Subject: injected\r\n\r\nINJECTED\r\n.\r\nQUIT\r\n")
        t = self.starttls("smtpd", r"^220 ", b"STARTTLS\r\n", inject, "220 2.0.0 Ready to start TLS")
        # The session starts over: HELO first, no transaction exists.
        t.send("MAIL FROM:<carol@example.com.ar>")
        self.assertEqual(t.line(), "503 5.5.1 Error: send HELO/EHLO first")
        t.send("EHLO client.example.com.ar")
        lines = [t.line()]
        while lines[-1][3] == "-":
            lines.append(t.line())
        self.assertEqual(lines[0], "250-%s" % HOST)
        self.assertNotIn("250-STARTTLS", lines)
        t.send("RCPT TO:<bob@example.com.ar>")
        self.assertEqual(t.line(), "503 5.5.1 Error: need MAIL command")
        t.send("STARTTLS")
        self.assertEqual(t.line(), "554 5.5.1 Error: TLS already active")
        t.send("QUIT")
        self.assertEqual(t.line(), "221 2.0.0 Bye")
        time.sleep(0.5)
        self.assertEqual(self.server.messages("bob"), [])
        self.assertNotIn("injected@attacker.test", self.server.log())

    # ---- IMAP ----

    def test_imap_injected_login_discarded(self):
        t = self.starttls("imap", r"^\* OK \[CAPABILITY .*STARTTLS.*\] Postern ready\.$", b"a STARTTLS\r\n",
                          b"b LOGIN bob secret\r\nc SELECT INBOX\r\n", "a OK Begin TLS negotiation now.")
        # Not logged in: SELECT is unknown before login, and nothing answers b or c.
        t.send("d SELECT INBOX")
        self.assertEqual(t.line(), "d BAD Error in IMAP command SELECT: Unknown command.")
        self.assert_no_login(IMAP_LOGIN % "bob")
        t.send("e CAPABILITY")
        caps = t.line()
        self.assertTrue(caps.startswith("* CAPABILITY IMAP4rev1 "), caps)
        self.assertNotIn("STARTTLS", caps)
        self.assertEqual(t.line(), "e OK Pre-login capabilities listed, post-login capabilities have more.")
        t.send("f STARTTLS")
        self.assertEqual(t.line(), "f BAD TLS is already active.")
        # The session still works, over TLS.
        t.send("g LOGIN carol secret")
        while True:
            l = t.line()
            if l.startswith("g "):
                break
        self.assertTrue(l.startswith("g OK"), l)
        self.server.wait_log("Login: user=<carol>")
        self.assertRegex(self.server.log(), IMAP_LOGIN % "carol")

    # ---- POP3 ----

    def test_pop3_injected_login_discarded(self):
        t = self.starttls("pop3", r"^\+OK Postern ready\.$", b"STLS\r\n", b"USER alice\r\nPASS secret\r\n",
                          "+OK Begin TLS negotiation now.")
        # The injected USER was dropped: PASS alone has no user.
        t.send("PASS secret")
        self.assertEqual(t.line(), "-ERR No username given.")
        t.send("STAT")
        self.assertEqual(t.line(), "-ERR Unknown command: STAT")
        self.assert_no_login(POP3_LOGIN % "alice")
        t.send("STLS")
        self.assertEqual(t.line(), "-ERR TLS is already active.")
        t.send("USER alice")
        self.assertEqual(t.line(), "+OK")
        t.send("PASS secret")
        self.assertEqual(t.line(), "+OK Logged in.")
        self.server.wait_log("Login: user=<alice>")
        self.assertRegex(self.server.log(), POP3_LOGIN % "alice")
        t.send("QUIT")
        self.assertTrue(t.line().startswith("+OK"))

    # ---- injected text in its own segment, right behind the command ----

    def test_injection_in_a_second_segment_never_runs(self):
        """The second segment may be read with the first (discarded) or
        after the switch (then it is garbage to TLS, and the handshake
        fails): the injected login never happens either way."""
        for service, greeting, cmd, inject, who in (
                ("imap", r"^\* OK ", b"a STARTTLS\r\n", b"b LOGIN bob secret\r\n", IMAP_LOGIN % "bob"),
                ("pop3", r"^\+OK ", b"STLS\r\n", b"USER bob\r\nPASS secret\r\n", POP3_LOGIN % "bob"),
                ("smtpd", r"^220 ", b"STARTTLS\r\n", b"MAIL FROM:<injected2@attacker.test>\r\n",
                 r"injected2@attacker\.test")):
            with self.subTest(service=service):
                sock = self.connect(service)
                self.assertRegex(read_line(sock), greeting)
                if service == "smtpd":
                    sock.sendall(b"EHLO client.example.com.ar\r\n")
                    while read_line(sock)[3] != " ":
                        pass
                sock.sendall(cmd)
                sock.sendall(inject)
                read_line(sock)
                try:
                    t = TlsLines(sock)
                    t.send({"imap": "z NOOP", "pop3": "CAPA", "smtpd": "NOOP"}[service])
                    first = t.line()
                    self.assertIn(first, ("z OK NOOP completed.", "+OK", "250 2.0.0 Ok"))
                    t.close()
                except (ssl.SSLError, OSError, EOFError):
                    pass
                self.assert_no_login(who)
        # and the server still serves
        sock = self.connect("imap")
        self.assertRegex(read_line(sock), r"^\* OK ")


if __name__ == "__main__":
    unittest.main()
