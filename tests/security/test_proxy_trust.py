"""Issue #16: a mailbox host believes the client address a front passes on
(IMAP ID x-originating-ip, POP3 XCLIENT, SMTP XCLIENT) -- and the SMTP
XCLIENT LOGIN, which stands in for AUTH. A client that is not a front
must not use them to hide its address from logs and the auth throttle,
or to log in without a password: only login_trusted_networks (IMAP/POP3)
and smtpd_authorized_xclient_hosts (SMTP) are believed.

Each attack runs against a host that trusts another network (it must
change nothing) and against one that trusts this client (the mechanism
works, so the refusal is the trust check and not a missing feature)."""
import poplib
import smtplib
import socket
import unittest

from harness import Server

SPOOF = "203.0.113.9"
CLIENT = "127.0.0.7"


def make(trusted):
    s = Server(modules=("mbox", "smtp", "imap", "pop3"), listeners=("smtpd", "imap", "pop3"))
    s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\nauth_mechanisms = plain login\n"
                 "smtpd_client_name_timeout = 0\ndisable_plaintext_auth = no\n"
                 "login_trusted_networks = %s\nsmtpd_authorized_xclient_hosts = %s\n"
                 % (s.passwd_file, trusted, trusted))
    return s


class Untrusted(unittest.TestCase):
    TRUSTED = "192.0.2.0/24"

    def setUp(self):
        self.server = make(self.TRUSTED)
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def imap_spoofed_failure(self):
        # imaplib has no source address: a raw socket bound to CLIENT.
        s = socket.create_connection(("127.0.0.1", self.server.ports["imap"]), 10, (CLIENT, 0))
        f = s.makefile("rb")
        f.readline()
        s.sendall(b'a ID ("x-originating-ip" "%s" "x-originating-port" "4711")\r\n' % SPOOF.encode())
        while not f.readline().startswith(b"a "):
            pass
        s.sendall(b"b LOGIN alice wrong\r\n")
        while True:
            line = f.readline()
            if line.startswith(b"b ") or not line:
                break
        s.close()
        return line

    def test_imap_id(self):
        line = self.imap_spoofed_failure()
        self.assertIn(b"AUTHENTICATIONFAILED", line)
        self.server.wait_log("user=<alice>")
        log = self.server.log()
        self.assertNotIn(SPOOF, log)
        self.assertIn("rip=%s" % CLIENT, log)

    def test_pop3_xclient(self):
        p = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=10)
        try:
            with self.assertRaises(poplib.error_proto) as e:
                p._shortcmd("XCLIENT ADDR=%s PORT=4711" % SPOOF)
            self.assertIn(b"Unknown command", e.exception.args[0])
            p.user("alice")
            with self.assertRaises(poplib.error_proto):
                p.pass_("wrong")
        finally:
            p.close()
        self.server.wait_log("user=<alice>")
        self.assertNotIn(SPOOF, self.server.log())

    def test_smtp_xclient(self):
        with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=10) as c:
            c.ehlo("x.example.net")
            self.assertNotIn("xclient", c.esmtp_features)
            code, _ = c.docmd("XCLIENT", "ADDR=%s LOGIN=alice" % SPOOF)
            self.assertEqual(code, 550)
            # Still the same unauthenticated client: no AUTH was done.
            c.ehlo("x.example.net")
            self.assertEqual(c.docmd("MAIL", "FROM:<a@example.net>")[0], 250)
        self.assertNotIn(SPOOF, self.server.log())
        self.assertNotIn("sasl_username=alice", self.server.log())


class Trusted(Untrusted):
    """The same client, now a trusted front: each mechanism takes effect."""
    TRUSTED = "%s/32" % CLIENT

    def test_imap_id(self):
        self.imap_spoofed_failure()
        self.server.wait_log("proxied by %s: rip=%s" % (CLIENT, SPOOF))
        self.server.wait_log("rip=%s" % SPOOF)

    def test_pop3_xclient(self):
        s = socket.create_connection(("127.0.0.1", self.server.ports["pop3"]), 10, (CLIENT, 0))
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"XCLIENT ADDR=%s PORT=4711\r\n" % SPOOF.encode())
        self.assertTrue(f.readline().startswith(b"+OK"))
        s.close()
        self.server.wait_log("proxied by %s: rip=%s" % (CLIENT, SPOOF))

    def test_smtp_xclient(self):
        with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=10,
                          source_address=(CLIENT, 0)) as c:
            c.ehlo("front.example.net")
            self.assertIn("xclient", c.esmtp_features)
            code, _ = c.docmd("XCLIENT", "ADDR=%s NAME=laptop.example.net LOGIN=alice" % SPOOF)
            self.assertEqual(code, 220)
        self.server.wait_log("xclient from %s: client=laptop.example.net[%s], sasl_username=alice"
                             % (CLIENT, SPOOF))


class PlaintextTrust(unittest.TestCase):
    """disable_plaintext_auth does not apply to a trusted front (as in
    Dovecot), and only to it."""

    def setUp(self):
        self.server = Server(modules=("mbox", "smtp", "imap", "pop3"), listeners=("smtpd", "imap", "pop3"))
        self.server.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n"
                               "smtpd_client_name_timeout = 0\nlogin_trusted_networks = %s/32\n"
                               % (self.server.passwd_file, CLIENT))
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def login(self, source, proto):
        s = socket.create_connection(("127.0.0.1", self.server.ports[proto]), 10, (source, 0))
        f = s.makefile("rb")
        try:
            f.readline()
            if proto == "imap":
                s.sendall(b"a LOGIN alice secret\r\n")
                while True:
                    line = f.readline()
                    if line.startswith(b"a ") or not line:
                        return line
            s.sendall(b"USER alice\r\n")
            first = f.readline()
            if not first.startswith(b"+OK"):
                return first
            s.sendall(b"PASS secret\r\n")
            return f.readline()
        finally:
            s.close()

    def test_plaintext_only_for_the_trusted_front(self):
        self.assertIn(b"PRIVACYREQUIRED", self.login("127.0.0.8", "imap"))
        self.assertTrue(self.login(CLIENT, "imap").startswith(b"a OK"))
        self.assertTrue(self.login("127.0.0.8", "pop3").startswith(b"-ERR"))
        self.assertTrue(self.login(CLIENT, "pop3").startswith(b"+OK"))


if __name__ == "__main__":
    unittest.main()
