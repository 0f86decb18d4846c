"""kill -9 in the middle of a stream of sends, then restart: every message
that got 250 is in the mailbox, none is truncated, the mbox parses; also
with deliveries deferred (so acknowledged mail sits in queue files) at
the moment of the crash."""
import fcntl
import os
import smtplib
import threading
import time
import unittest

from harness import Server, wait_for


def body_for(token):
    return "".join("%s line %03d %s\r\n" % (token, k, "y" * 60) for k in range(60)) + "END %s\r\n" % token


class CrashTest(unittest.TestCase):
    def setUp(self):
        self.server = Server(modules=("mbox", "alias", "smtp"),
                             conf="mbox_lock_timeout = 1s\nminimal_backoff_time = 1s\n"
                                  "maximal_backoff_time = 2s\nqueue_run_delay = 1s\n")
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def stream(self, rcpts, stop, acked, errors, n):
        """Send until stop is set; record tokens the server acknowledged."""
        i = 0
        while not stop.is_set():
            token = "t%d-%05d" % (n, i)
            i += 1
            try:
                with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=30) as c:
                    c.ehlo("client.example.com.ar")
                    msg = "Subject: %s\r\n\r\n%s" % (token, body_for(token))
                    c.sendmail("carol@example.com.ar", rcpts, msg.encode())
                    acked.append(token)
            except (OSError, smtplib.SMTPException):
                if not stop.is_set():
                    time.sleep(0.01)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    def crash_during_stream(self, rcpts, hold_lock_on=None):
        stop = threading.Event()
        acked, errors = [], []
        lock_file = None
        if hold_lock_on:
            # Deliveries to this mailbox are deferred: acknowledged mail
            # then lives only in queue files when the crash comes.
            path = self.server.mbox_path(hold_lock_on)
            open(path, "a").close()
            pw = os.stat(self.server.path("spool"))
            os.chown(path, pw.st_uid, pw.st_gid)
            os.chmod(path, 0o600)
            lock_file = open(path, "r+")
            fcntl.lockf(lock_file, fcntl.LOCK_EX)
        threads = [threading.Thread(target=self.stream, args=(rcpts, stop, acked, errors, n)) for n in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) >= 20, timeout=60, what="20 acknowledged messages")
        time.sleep(0.3)
        self.server.kill()  # SIGKILL to the master and every child at once
        stop.set()
        for t in threads:
            t.join()
        if lock_file:
            fcntl.lockf(lock_file, fcntl.LOCK_UN)
            lock_file.close()
        self.assertEqual(errors, [])
        self.server.start()
        return acked

    def check_mailbox(self, user, acked):
        def complete():
            msgs = self.server.messages(user)
            return set(acked) <= {m["Subject"] for m in msgs} and msgs
        msgs = wait_for(complete, timeout=60, what="every acknowledged message in %s's mailbox" % user)
        for m in msgs:
            token = m["Subject"]
            self.assertIsNotNone(token)
            self.assertEqual(m.get_payload(), body_for(token).replace("\r\n", "\n"), token)
        return msgs

    def test_kill9_during_fast_path_deliveries(self):
        acked = self.crash_during_stream(["alice@example.com.ar"])
        self.check_mailbox("alice", acked)

    def test_kill9_with_deliveries_in_the_queue(self):
        acked = self.crash_during_stream(["sysadmin@example.com.ar"], hold_lock_on="bob")
        self.check_mailbox("alice", acked)
        self.check_mailbox("bob", acked)
        # Nothing is left behind once everything is delivered.
        wait_for(lambda: "Mail queue is empty" in self.server.cmd("queue", "list").stdout.decode(),
                 timeout=30, what="empty queue")
        self.assertEqual(os.listdir(self.server.path("queue", "incoming")), [])


if __name__ == "__main__":
    unittest.main()
