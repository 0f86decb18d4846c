"""Issue #11 item 8: parallel connections must not multiply password
guesses. The failure delay is per client address; before the fix, 20
parallel connections from one address waited it out side by side and got
21 wrong-password answers in 20 s. Now attempts from one address wait in
line (core/auth_service.c), whatever the protocol: at most one answer per
auth_failure_delay, plus the throttle's growing hold. A good login from
another address during the flood is not slowed.

The flood mixes IMAP LOGIN, POP3 USER/PASS and SMTP AUTH PLAIN, which all
go through the same auth service, from 127.0.0.5; the good login comes
from 127.0.0.6 for the very user being guessed."""
import base64
import select
import socket
import threading
import time
import unittest

from harness import Server

FLOOD_SECONDS = 10
CONNECTIONS = 20
FAILURE_DELAY = 2      # auth_failure_delay (the default)
ATTACKER = "127.0.0.5"
GOOD = "127.0.0.6"


class Guesser:
    """One connection guessing alice's password over and over."""

    def __init__(self, proto, port, n):
        self.proto, self.n, self.buf, self.answers, self.state = proto, n, b"", [], "greet"
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(ATTACKER, 0))
        self.sock.setblocking(False)

    def guess(self):
        pw = b"Wrong-%d-%d" % (self.n, len(self.answers))
        if self.proto == "imap":
            self.sock.sendall(b"g LOGIN alice %s\r\n" % pw)
        elif self.proto == "pop3":
            self.sock.sendall(b"USER alice\r\nPASS %s\r\n" % pw)
        else:
            self.sock.sendall(b"AUTH PLAIN %s\r\n" % base64.b64encode(b"\0alice\0" + pw))
        self.state = "wait"

    def on_line(self, ln, now):
        """Returns False when the connection is of no more use."""
        if self.state == "greet":
            if self.proto == "smtp":
                if ln.startswith(b"220 "):
                    self.sock.sendall(b"EHLO flood.example\r\n")
                elif ln.startswith(b"250 "):
                    self.guess()
                return True
            self.guess()
            return True
        failed = (ln.startswith(b"g NO") or ln.startswith(b"-ERR") or ln.startswith(b"535"))
        if failed:
            self.answers.append(now)
            self.guess()
        elif ln.startswith(b"g OK") or ln.startswith(b"235"):
            raise AssertionError("a wrong password was accepted: %r" % ln)
        return not ln.startswith(b"421")

    def fileno(self):
        return self.sock.fileno()


class AuthRate(unittest.TestCase):
    def setUp(self):
        self.server = Server(modules=("mbox", "smtp", "imap", "pop3"), listeners=("submission", "imap", "pop3"))
        self.addCleanup(self.server.cleanup)
        self.server.write_conf("passdb = passwd-file:%s\n"
                               "auth_failure_delay = %ds\n"
                               # plaintext AUTH from 127.0.0.x without TLS, to keep the client simple
                               "disable_plaintext_auth = no\nsmtpd_tls_auth_only = no\n"
                               "submission_listen = 127.0.0.1:%d\n"
                               % (self.server.passwd_file, FAILURE_DELAY, self.server.ports["submission"]))
        self.server.start(wait_port=self.server.ports["imap"])

    def good_login(self, result):
        time.sleep(3)
        s = socket.create_connection(("127.0.0.1", self.server.ports["imap"]), timeout=30,
                                     source_address=(GOOD, 0))
        with s:
            f = s.makefile("rb")
            f.readline()
            t = time.monotonic()
            s.sendall(b"a LOGIN alice secret\r\n")
            result["reply"] = f.readline()
            result["t"] = time.monotonic() - t

    def test_parallel_guesses_wait_in_line(self):
        protos = [("imap", self.server.ports["imap"]), ("pop3", self.server.ports["pop3"]),
                  ("smtp", self.server.ports["submission"])]
        gs = [Guesser(*protos[i % 3], i) for i in range(CONNECTIONS)]
        good = {}
        th = threading.Thread(target=self.good_login, args=(good,))
        start = time.monotonic()
        th.start()
        live = list(gs)
        try:
            while live and time.monotonic() - start < FLOOD_SECONDS:
                r, _, _ = select.select(live, [], [], 0.2)
                for g in r:
                    try:
                        data = g.sock.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        live.remove(g)
                        continue
                    g.buf += data
                    while b"\r\n" in g.buf:
                        ln, g.buf = g.buf.split(b"\r\n", 1)
                        if not g.on_line(ln, time.monotonic() - start) and g in live:
                            live.remove(g)
        finally:
            th.join()
            for g in gs:
                g.sock.close()
        answers = sorted(a for g in gs for a in g.answers if a < FLOOD_SECONDS)
        bound = FLOOD_SECONDS // FAILURE_DELAY + 1
        print("\n%d parallel connections from %s for %ds: %d wrong-password answers (bound %d) at %s; "
              "good login from %s: %r in %.2fs" % (CONNECTIONS, ATTACKER, FLOOD_SECONDS, len(answers), bound,
                                                 ", ".join("%.1f" % a for a in answers), GOOD,
                                                 good.get("reply"), good.get("t", -1)))
        # One answer per auth_failure_delay at most (the hold makes it fewer).
        self.assertLessEqual(len(answers), bound)
        self.assertGreaterEqual(len(answers), 1)
        self.assertTrue(good["reply"].startswith(b"a OK"), good)
        self.assertLess(good["t"], 3.0)


if __name__ == "__main__":
    unittest.main()
