"""Login security shared by IMAP and POP3 through the auth service (issue:
authentication): a failed login is answered only after auth_failure_delay,
repeated failures from one address are throttled harder (the tenth waits
while a fresh address does not), every failure is logged with user and
address, and no password ever reaches the log."""
import socket
import threading
import time
import unittest

from harness import Server


def line(sock):
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


class LoginCase(unittest.TestCase):
    conf = ""

    def setUp(self):
        self.server = Server(modules=("mbox", "smtp", "imap", "pop3"),
                             listeners=("smtpd", "imap", "pop3"))
        self.addCleanup(self.server.cleanup)
        self.server.write_conf("passdb = passwd-file:%s\n%s" % (self.server.passwd_file, self.conf))
        self.server.start()

    def imap_login(self, user, password, source="127.0.0.1"):
        s = socket.create_connection(("127.0.0.1", self.server.ports["imap"]), timeout=60,
                                     source_address=(source, 0))
        self.addCleanup(s.close)
        self.assertTrue(line(s).startswith(b"* OK"))
        t = time.monotonic()
        s.sendall(b"a1 LOGIN %s %s\r\n" % (user.encode(), password.encode()))
        r = line(s)
        return r, time.monotonic() - t

    def pop_login(self, user, password):
        s = socket.create_connection(("127.0.0.1", self.server.ports["pop3"]), timeout=60)
        self.addCleanup(s.close)
        self.assertTrue(line(s).startswith(b"+OK"))
        s.sendall(b"USER %s\r\n" % user.encode())
        self.assertTrue(line(s).startswith(b"+OK"))
        t = time.monotonic()
        s.sendall(b"PASS %s\r\n" % password.encode())
        r = line(s)
        return r, time.monotonic() - t


class FailureDelay(LoginCase):
    conf = "auth_failure_delay = 1s\nauth_throttle = no\n"

    def test_failures_wait_and_look_alike_successes_do_not_wait(self):
        r, t = self.imap_login("alice", "Wrong-pass-7")
        self.assertEqual(r, b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
        self.assertGreaterEqual(t, 0.9)
        r, t = self.imap_login("nosuchuser", "Wrong-pass-8")
        self.assertEqual(r, b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
        self.assertGreaterEqual(t, 0.9)
        r, t = self.pop_login("alice", "Wrong-pass-9")
        self.assertEqual(r, b"-ERR [AUTH] Authentication failed.\r\n")
        self.assertGreaterEqual(t, 0.9)
        r, t = self.pop_login("nosuchuser", "Wrong-pass-10")
        self.assertEqual(r, b"-ERR [AUTH] Authentication failed.\r\n")
        r, t = self.imap_login("alice", "secret")
        self.assertTrue(r.startswith(b"a1 OK"), r)
        self.assertLess(t, 0.9)
        log = self.server.log()
        for user in ("alice", "nosuchuser"):
            self.assertRegex(log, r"imap-login.*user=<%s>.*rip=127\.0\.0\.1" % user)
            self.assertRegex(log, r"pop3-login.*user=<%s>.*rip=127\.0\.0\.1" % user)
        for pw in ("Wrong-pass-7", "Wrong-pass-8", "Wrong-pass-9", "Wrong-pass-10", "secret"):
            self.assertNotIn(pw, log)


class Throttle(LoginCase):
    conf = "auth_failure_delay = 0s\n"

    def test_tenth_imap_failure_from_one_address_waits(self):
        _, first = self.imap_login("alice", "nope")
        # Eight more failures at once (each may already be held a little).
        socks = []
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", self.server.ports["imap"]), timeout=60)
            self.addCleanup(s.close)
            self.assertTrue(line(s).startswith(b"* OK"))
            socks.append(s)
        for s in socks:
            s.sendall(b"a1 LOGIN alice nope\r\n")
        for s in socks:
            self.assertIn(b"AUTHENTICATIONFAILED", line(s))
        fresh = {}

        def other_address():
            fresh["t"] = self.imap_login("alice", "nope", source="127.0.0.2")[1]
        th = threading.Thread(target=other_address)
        th.start()
        r, tenth = self.imap_login("alice", "nope")
        th.join()
        self.assertIn(b"AUTHENTICATIONFAILED", r)
        print("\nIMAP throttle: first failure %.3fs, tenth %.3fs, fresh address %.3fs"
              % (first, tenth, fresh["t"]))
        self.assertGreater(tenth, 5 * max(first, 0.2))
        self.assertGreater(tenth, 5 * max(fresh["t"], 0.2))


if __name__ == "__main__":
    unittest.main()
