"""A pre-login client that pipelines commands and never reads the answers.

Every pre-login command (IMAP NOOP, POP3 CAPA, SMTP NOOP) queues a reply;
a client that keeps sending and never reads makes the output buffer grow
until the connection hits its output limit and is closed -- inside the
reply call, while the login code is still walking the input it read. The
session must survive being closed under its own feet (no use after free:
the worker must not crash and must keep serving others). Run under ASan
(.ci/run) a use after free aborts the worker; in any build a crash shows as
a worker that is gone."""
import os
import socket
import time
import unittest

from harness import Server, wait_for
from imap_util import imap_server

CHUNK = 64 * 1024


def flood(port, command, limit_bytes=48 << 20, seconds=30):
    """Send command lines without reading until the server closes the
    connection (or limit_bytes / seconds pass). Returns bytes sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    # A small receive window: the server's output piles up on its side.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    block = command * (CHUNK // len(command))
    sent = 0
    end = time.time() + seconds
    s.settimeout(2)
    try:
        while sent < limit_bytes and time.time() < end:
            try:
                sent += s.send(block)
            except socket.timeout:
                continue
    except OSError:
        pass  # reset: the server closed the connection, as it should
    finally:
        s.close()
    return sent


def worker_pids(server):
    return set(server.children())


class OutputFlood(unittest.TestCase):
    def check_survives(self, server, port, command, greeting):
        before = worker_pids(server)
        self.assertTrue(before)
        sent = flood(port, command)
        self.assertGreater(sent, 0)
        # The same workers still run (none crashed and was replaced) and
        # the service still answers.
        time.sleep(0.5)
        self.assertTrue(before <= worker_pids(server),
                        "a worker died: %s -> %s\n%s" % (before, worker_pids(server), server.log()[-3000:]))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            self.assertTrue(c.makefile("rb").readline().startswith(greeting))

    def test_imap_login(self):
        s = imap_server(self)
        self.check_survives(s, s.ports["imap"], b"a NOOP\r\n", b"* OK")

    def test_pop3_login(self):
        s = Server(modules=("mbox", "pop3"), listeners=("pop3",))
        self.addCleanup(s.cleanup)
        s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n" % s.passwd_file)
        s.start()
        self.check_survives(s, s.ports["pop3"], b"CAPA\r\n", b"+OK")

    def test_smtp(self):
        s = Server(modules=("mbox", "smtp"), listeners=("smtpd",))
        self.addCleanup(s.cleanup)
        s.start()
        self.check_survives(s, s.ports["smtpd"], b"NOOP\r\n", b"220")


if __name__ == "__main__":
    unittest.main()
