"""The seed tutorial end to end in one daemon: the seed's restrictions,
mail to the alias sysadmin through SMTP, read by alice over IMAP (STARTTLS
and IMAPS) and by bob over POP3 (STLS and POP3S); both protocols see the
same store (POP3 UIDL = IMAP UID + UIDVALIDITY, flags set over IMAP are
in the mbox), and an outside client cannot relay."""
import imaplib
import os
import poplib
import smtplib
import ssl
import unittest

from harness import Server

SEED_CONF = """
smtpd_helo_required = yes
smtpd_helo_restrictions = permit_mynetworks, reject_invalid_helo_hostname
smtpd_sender_restrictions = permit_mynetworks, reject_unknown_sender_domain
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
message_size_limit = 5120000
mailbox_size_limit = 51200000
disable_plaintext_auth = yes
"""

BODY = "Subject: seed flow\r\nFrom: carol@example.com.ar\r\nTo: sysadmin@example.com.ar\r\n\r\n" \
       "hello admins\r\nFrom the seed\r\n.dot line\r\n"


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class SeedFlowTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(modules=("mbox", "alias", "transport", "restrict", "smtp", "imap", "pop3"))
        cls.server.write_conf(SEED_CONF + "passdb = passwd-file:%s\n" % cls.server.passwd_file)
        try:
            cls.server.start()
        except Exception:
            cls.server.cleanup()
            raise
        with smtplib.SMTP("127.0.0.1", cls.server.ports["smtpd"], timeout=20) as s:
            s.ehlo("client.example.com.ar")
            refused = s.sendmail("carol@example.com.ar", ["sysadmin@example.com.ar"], BODY)
            assert not refused, refused
        cls.server.wait_messages("alice", 1)
        cls.server.wait_messages("bob", 1)

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def imap_fetch(self, imap):
        imap.login("alice", "secret")
        typ, data = imap.select("INBOX")
        self.assertEqual(typ, "OK")
        self.assertEqual(data, [b"1"])
        typ, data = imap.uid("FETCH", "1:*", "(UID RFC822.SIZE BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        meta, body = data[0]
        self.assertIn(b"RFC822.SIZE %d" % len(body), meta)
        imap.logout()
        return meta, body

    def test_imap_starttls_and_imaps_read_the_alias_delivery(self):
        imap = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=20)
        imap.starttls(ssl_context=tls_ctx())
        meta, body = self.imap_fetch(imap)
        self.assertIn(b"hello admins\r\nFrom the seed\r\n.dot line\r\n", body)
        self.assertIn(b"Delivered-To: sysadmin@example.com.ar\r\n", body)
        self.assertNotIn(b"X-UID", body)
        self.assertNotIn(b"\r\r", body)
        imaps = imaplib.IMAP4_SSL("127.0.0.1", self.server.ports["imaps"], ssl_context=tls_ctx(), timeout=20)
        meta2, body2 = self.imap_fetch(imaps)
        self.assertEqual(body, body2)
        self.assertEqual(meta, meta2)

    def pop_read(self, pop):
        pop.user("bob")
        pop.pass_("secret")
        count, size = pop.stat()
        self.assertEqual(count, 1)
        resp, lines, octets = pop.retr(1)
        self.assertTrue(resp.startswith(b"+OK"))
        uidl = pop.uidl(1).split()[-1]
        pop.quit()
        return b"\r\n".join(lines) + b"\r\n", size, uidl

    def test_pop3_stls_and_pop3s_read_the_alias_delivery(self):
        pop = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=20)
        pop.stls(context=tls_ctx())
        text, size, uidl = self.pop_read(pop)
        self.assertEqual(len(text), size)
        self.assertIn(b"hello admins\r\nFrom the seed\r\n.dot line\r\n", text)
        pops = poplib.POP3_SSL("127.0.0.1", self.server.ports["pop3s"], context=tls_ctx(), timeout=20)
        text2, size2, uidl2 = self.pop_read(pops)
        self.assertEqual((text, size, uidl), (text2, size2, uidl2))

    def test_pop3_and_imap_agree_on_the_same_mailbox(self):
        imap = imaplib.IMAP4_SSL("127.0.0.1", self.server.ports["imaps"], ssl_context=tls_ctx(), timeout=20)
        imap.login("bob", "secret")
        typ, data = imap.select("INBOX")
        self.assertEqual(typ, "OK")
        typ, data = imap.response("UIDVALIDITY")
        uidvalidity = int(data[0])
        typ, data = imap.fetch("1", "(UID RFC822.SIZE)")
        meta = data[0].decode()
        uid = int(meta.split("UID ")[1].split()[0].rstrip(")"))
        size = int(meta.split("RFC822.SIZE ")[1].split()[0].rstrip(")"))
        typ, _ = imap.store("1", "+FLAGS", "(\\Flagged)")
        self.assertEqual(typ, "OK")
        imap.logout()
        pop = poplib.POP3_SSL("127.0.0.1", self.server.ports["pop3s"], context=tls_ctx(), timeout=20)
        pop.user("bob")
        pop.pass_("secret")
        self.assertEqual(pop.uidl(1).split()[-1].decode(), "%08x%08x" % (uid, uidvalidity))
        self.assertEqual(int(pop.list(1).split()[-1]), size)
        pop.quit()
        with open(self.server.mbox_path("bob"), "rb") as f:
            mbox = f.read()
        self.assertIn(b"X-Status: F", mbox)

    def test_outside_client_cannot_relay_or_log_in_in_plaintext(self):
        s = smtplib.SMTP(timeout=20, source_address=("127.0.0.2", 0))
        s.connect("127.0.0.1", self.server.ports["smtpd"])
        s.ehlo("outside.example.net")
        s.mail("alice@example.com.ar")
        code, msg = s.rcpt("victim@example.org")
        self.assertEqual(code, 454, msg)  # Debian's default smtpd_relay_restrictions
        self.assertIn(b"Relay access denied", msg)
        s.quit()
        imap = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=20)
        imap.sock.close()
        import socket
        sock = socket.create_connection(("127.0.0.1", self.server.ports["imap"]), timeout=20,
                                        source_address=("127.0.0.2", 0))
        greeting = sock.recv(4096)
        self.assertIn(b"LOGINDISABLED", greeting)
        sock.sendall(b"a1 LOGIN alice secret\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            reply += sock.recv(4096)
        self.assertTrue(reply.startswith(b"a1 NO [PRIVACYREQUIRED]"), reply)
        sock.close()


if __name__ == "__main__":
    unittest.main()
