"""A mailbox host counts each connection from a front against
client_connection_limit under the front's address. When the session
takes the client's address the front passes on (IMAP ID
x-originating-ip, POP3/SMTP XCLIENT ADDR from a trusted front), closing
it must still take the count off the front's address: otherwise every
proxied login leaves one behind, and after client_connection_limit
logins (50 by default) the host refuses the front for good -- every user
of that host locked out by ordinary use. Here the limit is 3 and a
dozen logins and XCLIENT sessions go through one after the other."""
import smtplib
import socket
import unittest

from harness import SANITIZE, Server

TIMEOUT = 30 if SANITIZE else 10
COMMON = "auth_failure_delay = 0s\nsmtpd_client_name_timeout = 0\ndisable_plaintext_auth = no\n"
ROUNDS = 12
CLIENT = "127.0.0.5"      # the client of the front, as the host learns it


class FrontConnectionCount(unittest.TestCase):

    def setUp(self):
        self.host = Server(modules=("mbox", "smtp", "imap", "pop3"), users=("alice",),
                           listeners=("smtpd", "imap", "pop3"))
        # the front (127.0.0.1) outside mynetworks: the limit applies to it
        self.host.write_conf("passdb = passwd-file:%s\n%slogin_trusted_networks = 127.0.0.1/32\n"
                             "smtpd_authorized_xclient_hosts = 127.0.0.1/32\nmynetworks = 127.0.0.9/32\n"
                             "client_connection_limit = 3\n" % (self.host.passwd_file, COMMON))
        self.addCleanup(self.host.cleanup)
        self.front = Server(modules=("mbox", "smtp", "imap", "pop3"), users=(), listeners=("imap", "pop3"))
        with open(self.front.passwd_file, "w") as f:
            f.write("alice:{PLAIN}secret:::::: proxy=y host=127.0.0.1\n")
        self.front.write_conf("passdb = passwd-file:%s\n%sproxy_pop3_port = %d\nproxy_imap_port = %d\n"
                              "proxy_timeout = 5s\n"
                              % (self.front.passwd_file, COMMON, self.host.ports["pop3"], self.host.ports["imap"]))
        self.addCleanup(self.front.cleanup)
        self.host.start()
        self.front.start(wait_port=self.front.ports["imap"])

    def dialog(self, port, lines):
        """From CLIENT (not the front's address, so the host's session
        changes address): send each line, read up to the line starting
        with its end mark (or -ERR); the whole answer."""
        s = socket.create_connection(("127.0.0.1", port), TIMEOUT, source_address=(CLIENT, 0))
        f = s.makefile("rb")
        out = [f.readline()]
        try:
            for line, last in lines:
                s.sendall(line)
                while True:
                    got = f.readline()
                    out.append(got)
                    if not got or got.startswith(last) or got.startswith(b"-ERR"):
                        break
            return b"".join(out)
        finally:
            f.close()
            s.close()

    def test_imap_logins_through_the_front(self):
        for i in range(ROUNDS):
            got = self.dialog(self.front.ports["imap"], [(b"a LOGIN alice secret\r\n", b"a "),
                                                              (b"b LOGOUT\r\n", b"b ")])
            self.assertIn(b"a OK", got, i)
        self.host.wait_log("rip=" + CLIENT)
        self.assertNotIn("Connection concurrency limit exceeded", self.host.log())

    def test_pop3_logins_through_the_front(self):
        for i in range(ROUNDS):
            got = self.dialog(self.front.ports["pop3"], [(b"USER alice\r\n", b"+OK"),
                                                              (b"PASS secret\r\n", b"+OK"), (b"QUIT\r\n", b"+OK")])
            self.assertEqual(got.count(b"+OK"), 4, (i, got))
        self.assertNotIn("Connection concurrency limit exceeded", self.host.log())

    def test_smtp_xclient_sessions(self):
        for i in range(ROUNDS):
            with smtplib.SMTP("127.0.0.1", self.host.ports["smtpd"], timeout=TIMEOUT) as c:
                c.ehlo("front.example.net")
                code, text = c.docmd("XCLIENT", "ADDR=192.0.2.%d NAME=[UNAVAILABLE]" % (i + 1))
                self.assertEqual(code, 220, (i, text))
        self.assertNotIn("Connection concurrency limit exceeded", self.host.log())


if __name__ == "__main__":
    unittest.main()
