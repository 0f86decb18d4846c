"""Postfix cleanup's qualification of header addresses in locally submitted
mail (append_at_myorigin = yes, append_dot_mydomain = no as in Postfix 3):
`mail -s x alice` (bsd-mailx through sendmail), `sendmail`, `sendmail -bs`
and SMTP clients that local_header_rewrite_clients names get "To: alice"
as alice@$myorigin, so an IMAP client's ENVELOPE no longer shows
alice@MISSING_DOMAIN; display names, quoted commas, comments and groups
stay as written; mail from an outside SMTP client is left as sent."""
import imaplib
import os
import re
import smtplib
import subprocess
import tempfile
import unittest

from harness import BIN, Server

ORIGIN = "example.com.ar"   # the harness's myorigin ($mydomain)


def raw_header(msg, name):
    """Every value of field name, unfolded as written (email.message keeps
    the raw text of a field)."""
    return [v for k, v in msg.items() if k.lower() == name.lower()]


class QualifyTest(unittest.TestCase):
    def setUp(self):
        self.s = Server(modules=("mbox", "smtp", "imap"), listeners=("smtpd", "imap"))
        self.addCleanup(self.s.cleanup)
        self.s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\ndisable_plaintext_auth = no\n"
                          % self.s.passwd_file)
        self.s.start()
        self.bindir = tempfile.mkdtemp(prefix="postern-bin-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.bindir]))
        self.sendmail = os.path.join(self.bindir, "sendmail")
        os.symlink(os.path.abspath(BIN), self.sendmail)

    def envelope_to(self, user="alice", n=1):
        """The To part of the n-th message's IMAP ENVELOPE (RFC 3501 7.4.2)."""
        c = imaplib.IMAP4("127.0.0.1", self.s.ports["imap"], timeout=30)
        try:
            c.login(user, "secret")
            c.select("INBOX", readonly=True)
            typ, data = c.fetch(str(n), "(ENVELOPE)")
            self.assertEqual(typ, "OK")
            env = data[0].decode() if isinstance(data[0], bytes) else data[0][0].decode()
            return env
        finally:
            c.logout()

    def test_mailx_to_bare_user(self):
        """The report's case: bsd-mailx writes "To: alice"."""
        mailrc = os.path.join(self.bindir, "mailrc")
        with open(mailrc, "w") as f:
            f.write("set sendmail=%s\n" % self.sendmail)
        r = subprocess.run(["mail", "-s", "x", "alice"], input=b"hi\n", capture_output=True,
                           env=dict(self.s.env(), MAILRC=mailrc), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.s.wait_messages("alice", 1)[0]
        self.assertEqual(raw_header(m, "To"), ["alice@" + ORIGIN])
        env = self.envelope_to()
        self.assertIn('((NIL NIL "alice" "%s"))' % ORIGIN, env)
        self.assertNotIn("MISSING_DOMAIN", env)

    def test_sendmail_tricky_lists(self):
        msg = (b"From: The Boss <root>\n"
               b"To: alice, \"Smith, Bob\" <bob>, carol (Carol, in copy)\n"
               b"Cc: Team: alice,\n  bob@host;, undisclosed-recipients:;\n"
               b"Reply-To: <@relay.example:bob>\n"
               b"Subject: alice, bob\n"
               b"\n"
               b"To: alice in the body stays\n")
        r = subprocess.run([self.sendmail, "-i", "alice"], input=msg, capture_output=True,
                           env=self.s.env(), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.s.wait_messages("alice", 1)[0]
        self.assertEqual(raw_header(m, "From"), ["The Boss <root@%s>" % ORIGIN])
        self.assertEqual(raw_header(m, "To"),
                         ['alice@%s, "Smith, Bob" <bob@%s>, carol@%s (Carol, in copy)' % (ORIGIN, ORIGIN, ORIGIN)])
        # append_dot_mydomain = no (Postfix 3's default): bob@host stays.
        self.assertEqual(raw_header(m, "Cc"),
                         ["Team: alice@%s,\n  bob@host;, undisclosed-recipients:;" % ORIGIN])
        self.assertEqual(raw_header(m, "Reply-To"), ["<@relay.example:bob@%s>" % ORIGIN])
        self.assertEqual(raw_header(m, "Subject"), ["alice, bob"])
        self.assertIn("To: alice in the body stays", m.get_payload())
        env = self.envelope_to()
        self.assertIn('("Smith, Bob" NIL "bob" "%s")' % ORIGIN, env)

    def test_append_dot_mydomain_and_off(self):
        conf = self.s.path("client.conf")
        with open(self.s.conf_file) as f:
            base = f.read()
        with open(conf, "w") as f:
            f.write(base + "append_dot_mydomain = yes\n")
        r = subprocess.run([self.sendmail, "-C", conf, "-i", "alice"], input=b"To: alice, bob@host\n\nx\n",
                           capture_output=True, env=self.s.env(), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.s.wait_messages("alice", 1)[0]
        self.assertEqual(raw_header(m, "To"), ["alice@%s, bob@host.%s" % (ORIGIN, ORIGIN)])
        with open(conf, "w") as f:
            f.write(base + "append_at_myorigin = no\n")
        r = subprocess.run([self.sendmail, "-C", conf, "-i", "alice"], input=b"To: alice, bob@host\n\nx\n",
                           capture_output=True, env=self.s.env(), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.s.wait_messages("alice", 2)[1]
        self.assertEqual(raw_header(m, "To"), ["alice, bob@host"])

    def test_sendmail_bs(self):
        dialogue = (b"HELO me\r\nMAIL FROM:<root>\r\nRCPT TO:<alice>\r\nDATA\r\n"
                    b"To: alice\r\nSubject: bs\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        r = subprocess.run([self.sendmail, "-bs"], input=dialogue, capture_output=True, env=self.s.env(),
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.s.wait_messages("alice", 1)[0]
        self.assertEqual(raw_header(m, "To"), ["alice@" + ORIGIN])

    def smtp(self, source, body):
        c = smtplib.SMTP(timeout=30, source_address=(source, 0))
        c.connect("127.0.0.1", self.s.ports["smtpd"])
        c.ehlo("client.example.com.ar")
        c.sendmail("carol@example.com.ar", ["alice@example.com.ar"], body)
        c.quit()

    def test_smtp_local_client_qualified_outside_client_untouched(self):
        body = b"From: carol\r\nTo: alice, Bob <bob>\r\nSubject: s\r\n\r\nbody\r\n"
        # This host's client (permit_inet_interfaces: it connects from the
        # address it reaches).
        self.smtp("127.0.0.1", body)
        m = self.s.wait_messages("alice", 1)[0]
        self.assertEqual(raw_header(m, "To"), ["alice@%s, Bob <bob@%s>" % (ORIGIN, ORIGIN)])
        self.assertEqual(raw_header(m, "From"), ["carol@" + ORIGIN])
        # Not named by local_header_rewrite_clients: left exactly as sent.
        self.smtp("127.0.0.2", body)
        m = self.s.wait_messages("alice", 2)[1]
        self.assertEqual(raw_header(m, "To"), ["alice, Bob <bob>"])
        self.assertEqual(raw_header(m, "From"), ["carol"])
        env = self.envelope_to(n=2)
        self.assertTrue(re.search(r'\(NIL NIL "alice" (NIL|"MISSING_DOMAIN")\)', env), env)


if __name__ == "__main__":
    unittest.main()
