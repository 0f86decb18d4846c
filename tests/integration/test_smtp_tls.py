"""SMTP over TLS: STARTTLS (reply, session reset, no second STARTTLS),
STARTTLS command injection (plaintext pipelined behind STARTTLS is thrown
away, never answered as if it came over TLS), the Received header's TLS
clause and ESMTPS, implicit TLS on smtps_listen, smtpd_tls_security_level
= encrypt, and smtplib/swaks with STARTTLS."""
import smtplib
import socket
import ssl
import subprocess
import unittest

from harness import Server, wait_for
from test_smtp import HOST, MODS, Raw, message


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class SmtpTls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(modules=MODS, conf="smtpd_helo_required = yes\n")
        cls.server.start()
        cls.port = cls.server.ports["smtpd"]

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def starttls(self, pipelined=b""):
        c = Raw(self.port)
        self.addCleanup(c.close)
        self.assertTrue(c.line().startswith("220 "))
        c.send("EHLO client.example.com.ar\r\n")
        code, lines = c.reply()
        self.assertIn("250-STARTTLS", lines)
        c.send(b"STARTTLS\r\n" + pipelined)
        self.assertEqual(c.line(), "220 2.0.0 Ready to start TLS")
        t = Raw(0, sock=client_ctx().wrap_socket(c.sock, server_hostname=HOST))
        self.addCleanup(t.close)
        return t

    def test_starttls_resets_session(self):
        t = self.starttls()
        # HELO/EHLO is needed again after TLS (smtpd_helo_required = yes).
        self.assertEqual(t.cmd("MAIL FROM:<carol@example.com.ar>"), "503 5.5.1 Error: send HELO/EHLO first")
        t.send("EHLO client.example.com.ar\r\n")
        code, lines = t.reply()
        self.assertEqual(code, 250)
        self.assertNotIn("250-STARTTLS", lines)
        self.assertEqual(t.cmd("STARTTLS"), "554 5.5.1 Error: TLS already active")
        self.assertEqual(t.cmd("MAIL FROM:<carol@example.com.ar>"), "250 2.1.0 Ok")
        self.assertEqual(t.cmd("RCPT TO:<alice@example.com.ar>"), "250 2.1.5 Ok")
        self.assertTrue(t.cmd("DATA").startswith("354 "))
        t.send(message("over tls") + ".\r\n")
        self.assertTrue(t.line().startswith("250 2.0.0 Ok: queued as "))
        t.cmd("QUIT")
        m = wait_for(lambda: [x for x in self.server.messages("alice") if x["Subject"] == "over tls"],
                     what="message sent over TLS")
        rec = " ".join(m[0].get_all("Received")[0].split())
        self.assertRegex(rec, r"^from client\.example\.com\.ar \(localhost \[127\.0\.0\.1\]\) "
                         r"\(using TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)\) "
                         r"by %s \(Postern\) with ESMTPS id [0-9A-F]+ for <alice@example\.com\.ar>; " % HOST)

    def test_starttls_in_transaction_refused(self):
        c = Raw(self.port)
        self.addCleanup(c.close)
        c.line()
        c.send("EHLO client.example.com.ar\r\n")
        c.reply()
        c.cmd("MAIL FROM:<carol@example.com.ar>")
        self.assertEqual(c.cmd("STARTTLS"), "503 5.5.1 Error: MAIL transaction in progress")
        self.assertEqual(c.cmd("STARTTLS now"), "501 5.5.4 Syntax: STARTTLS")

    def test_starttls_injection(self):
        # The classic injection: commands in the same packet as STARTTLS.
        t = self.starttls(pipelined=b"MAIL FROM:<injected@attacker.test>\r\nRCPT TO:<alice@example.com.ar>\r\n")
        # The first reply over TLS answers what was sent over TLS.
        t.send("EHLO after.tls\r\n")
        code, lines = t.reply()
        self.assertEqual(code, 250, lines)
        self.assertEqual(lines[0], "250-%s" % HOST)
        # No transaction exists: the injected MAIL was discarded.
        self.assertEqual(t.cmd("RCPT TO:<alice@example.com.ar>"), "503 5.5.1 Error: need MAIL command")
        self.assertEqual(t.cmd("NOOP"), "250 2.0.0 Ok")

    def test_smtplib_starttls(self):
        with smtplib.SMTP("127.0.0.1", self.port, timeout=15) as s:
            s.ehlo("client.example.com.ar")
            s.starttls(context=client_ctx())
            s.ehlo("client.example.com.ar")
            self.assertFalse(s.has_extn("starttls"))
            self.assertEqual(s.sendmail("carol@example.com.ar", ["bob@example.com.ar"],
                                        message("smtplib tls").encode()), {})
        msgs = self.server.wait_messages("bob", 1)
        self.assertTrue(any(m["Subject"] == "smtplib tls" for m in msgs))

    def test_swaks_starttls(self):
        out = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.port, "-tls", "--from",
                              "carol@example.com.ar", "--to", "carol@example.com.ar", "--header",
                              "Subject: swaks tls"], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("<-  220 2.0.0 Ready to start TLS", out.stdout)
        self.assertIn("250 2.0.0 Ok: queued as", out.stdout)

    def test_implicit_tls_smtps(self):
        port = self.server.ports["smtps"]
        raw = socket.create_connection(("127.0.0.1", port), timeout=15)
        t = Raw(0, sock=client_ctx().wrap_socket(raw, server_hostname=HOST))
        self.addCleanup(t.close)
        self.assertEqual(t.line(), "220 %s ESMTP Postern" % HOST)
        t.send("EHLO client.example.com.ar\r\n")
        code, lines = t.reply()
        self.assertEqual(code, 250)
        self.assertNotIn("250-STARTTLS", lines)
        self.assertEqual(t.cmd("STARTTLS"), "554 5.5.1 Error: TLS already active")
        self.server.wait_log("postern/smtps/smtpd[")


class SmtpTlsRequired(unittest.TestCase):
    def test_encrypt_level(self):
        server = Server(modules=MODS, conf="smtpd_tls_security_level = encrypt\n")
        self.addCleanup(server.cleanup)
        server.start()
        c = Raw(server.ports["smtpd"])
        self.addCleanup(c.close)
        c.line()
        c.send("EHLO client.example.com.ar\r\n")
        c.reply()
        self.assertEqual(c.cmd("MAIL FROM:<carol@example.com.ar>"), "530 5.7.0 Must issue a STARTTLS command first")
        self.assertEqual(c.cmd("STARTTLS"), "220 2.0.0 Ready to start TLS")
        t = Raw(0, sock=client_ctx().wrap_socket(c.sock, server_hostname=HOST))
        self.addCleanup(t.close)
        t.send("EHLO client.example.com.ar\r\n")
        t.reply()
        self.assertEqual(t.cmd("MAIL FROM:<carol@example.com.ar>"), "250 2.1.0 Ok")


if __name__ == "__main__":
    unittest.main()
