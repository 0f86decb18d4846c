"""Issue #11 item 13: lines starting with "From ", ">From ", ">>From "
come back octet for octet (mboxrd quoting in the mbox), over IMAP FETCH
BODY[] and POP3 RETR, with RFC822.SIZE / LIST counting those octets --
for SMTP delivery and for IMAP APPEND."""
import imaplib
import poplib
import re
import smtplib
import unittest

from harness import Server

BODY = ("From the start of a line\r\n>From quoted once\r\n>>From quoted twice\r\n"
        ">>>From thrice\r\nFrom\r\n>from lower\r\n> From spaced\r\nlast\r\n")
HEADER = "From: carol@example.com.ar\r\nTo: alice@example.com.ar\r\nSubject: %s\r\n\r\n"


class FromQuotingTest(unittest.TestCase):
    def setUp(self):
        self.server = Server(modules=("mbox", "smtp", "imap", "pop3"),
                             listeners=("smtpd", "imap", "pop3"))
        self.server.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n" % self.server.passwd_file)
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def fetch(self, c, uid):
        typ, data = c.uid("FETCH", str(uid), "(RFC822.SIZE BODY.PEEK[])")
        self.assertEqual(typ, "OK", data)
        size = int(re.search(rb"RFC822\.SIZE (\d+)", data[0][0]).group(1))
        return size, data[0][1]

    def test_smtp_delivery_and_append_round_trip(self):
        sent = (HEADER % "smtp") + BODY
        with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=20) as s:
            s.sendmail("carol@example.com.ar", ["alice@example.com.ar"], sent.encode())
        self.server.wait_messages("alice", 1)
        c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=20)
        self.addCleanup(c.logout)
        c.login("alice", "secret")
        appended = ((HEADER % "append") + BODY).encode()
        typ, data = c.append("INBOX", None, None, appended)
        self.assertEqual(typ, "OK", data)
        typ, data = c.select("INBOX")
        self.assertEqual(typ, "OK")
        typ, data = c.uid("SEARCH", "ALL")
        uids = [int(x) for x in data[0].split()]
        self.assertEqual(len(uids), 2)
        size, text = self.fetch(c, uids[0])
        # The SMTP server adds header fields (Received, Message-Id...);
        # the body is exactly what was sent.
        self.assertTrue(text.endswith(("\r\n\r\n" + BODY).encode()), text)
        self.assertEqual(size, len(text))
        size2, text2 = self.fetch(c, uids[1])
        self.assertEqual(text2, appended)
        self.assertEqual(size2, len(appended))
        # A flag change rewrites the message's storage headers: still exact.
        c.uid("STORE", "%d:%d" % (uids[0], uids[1]), "+FLAGS", "(\\Flagged)")
        self.assertEqual(self.fetch(c, uids[0]), (size, text))
        self.assertEqual(self.fetch(c, uids[1]), (size2, text2))
        # COPY keeps it too.
        c.create("Kept")
        typ, _ = c.uid("COPY", str(uids[1]), "Kept")
        self.assertEqual(typ, "OK")
        c.select("Kept")
        self.assertEqual(self.fetch(c, 1), (size2, text2))
        c.close()
        # POP3: the same octets (poplib undoes dot-stuffing), LIST agrees.
        p = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=20)
        p.user("alice")
        p.pass_("secret")
        listed = [int(x.split()[1]) for x in p.list()[1]]
        for i, want in ((1, text), (2, appended)):
            _, lines, _ = p.retr(i)
            got = b"\r\n".join(lines) + b"\r\n"
            self.assertEqual(got, want)
            self.assertEqual(listed[i - 1], len(want))
        p.quit()


if __name__ == "__main__":
    unittest.main()
