"""kill -9 in the middle of a stream of sends, then restart: every message
that got 250 is in the mailbox, none is truncated, the mbox parses; also
with deliveries deferred (so acknowledged mail sits in queue files) at
the moment of the crash. kill -9 of one agent restarts only that agent:
the worker keeps its sessions. A worker whose loop stops turning is
replaced by the watchdog, and the mail it acknowledged is delivered."""
import fcntl
import imaplib
import os
import re
import signal
import smtplib
import socket
import threading
import time
import unittest

import harness
from harness import SANITIZE, Server, system_mail_user, wait_for


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


def started_pids(server):
    """Role -> pid of the processes the master started last (log order)."""
    return harness.started_pids(server.log())


def banner(port, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        return s.makefile("rb").readline()


def send(server, rcpt, subject):
    with smtplib.SMTP("127.0.0.1", server.ports["smtpd"], timeout=30) as c:
        c.sendmail("carol@example.com.ar", [rcpt], ("Subject: %s\r\n\r\nbody %s\r\n" % (subject, subject)).encode())


class AgentRestartTest(unittest.TestCase):
    """kill -9 of one agent restarts that agent alone: an IMAP session and
    an SMTP transaction in progress carry on, and mail is delivered again
    within seconds; repeated kills never back off towards 30 s."""

    def setUp(self):
        self.server = Server(modules=("mbox", "smtp", "imap"), listeners=("smtpd", "imap"),
                             conf="minimal_backoff_time = 300s\nqueue_run_delay = 300s\n")
        self.addCleanup(self.server.cleanup)
        self.server.write_conf(self.server.extra_conf + "passdb = passwd-file:%s\nauth_failure_delay = 0s\n"
                               % self.server.passwd_file)
        self.server.start()

    def test_local_agent_killed_during_sessions(self):
        s = self.server
        send(s, "alice@example.com.ar", "before")
        s.wait_messages("alice", 1)
        imap = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=30)
        imap.login("alice", "secret")
        self.assertEqual(imap.select("INBOX")[1], [b"1"])
        smtp = smtplib.SMTP("127.0.0.1", s.ports["smtpd"], timeout=30)
        smtp.ehlo("client.example.com.ar")
        smtp.mail("carol@example.com.ar")
        smtp.rcpt("alice@example.com.ar")
        before = started_pids(s)
        os.kill(before["local"], signal.SIGKILL)
        s.wait_log("restarting the local delivery agent in")
        after = wait_for(lambda: started_pids(s)["local"] != before["local"] and started_pids(s), 10,
                         what="a new local delivery agent")
        # Nothing else was restarted.
        self.assertEqual({k: v for k, v in after.items() if k != "local"},
                         {k: v for k, v in before.items() if k != "local"})
        self.assertNotIn("restarting worker processes", s.log())
        # The SMTP transaction finishes; the IMAP session never noticed.
        code, _ = smtp.data(b"Subject: during\r\n\r\nsent across the restart\r\n")
        self.assertEqual(code, 250)
        smtp.quit()
        self.assertEqual(imap.noop()[0], "OK")
        send(s, "alice@example.com.ar", "after")
        # Within seconds, though minimal_backoff_time is 300 s: a new agent
        # retries what waited for it.
        msgs = s.wait_messages("alice", 3, timeout=10)
        self.assertEqual(sorted(m["Subject"] for m in msgs), ["after", "before", "during"])
        typ, data = imap.noop()
        self.assertEqual(typ, "OK")
        typ, data = imap.fetch("3", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertEqual(typ, "OK")
        self.assertIn(b"Subject:", data[0][1])
        imap.logout()

    def test_repeated_kills_keep_a_short_backoff(self):
        s = self.server
        for i in range(6):
            old = started_pids(s)["local"]
            os.kill(old, signal.SIGKILL)
            t0 = time.monotonic()
            wait_for(lambda: started_pids(s)["local"] != old, 15, what="local agent restart %d" % i)
            self.assertLess(time.monotonic() - t0, 12)
        delays = [int(d) for d in re.findall(r"restarting the local delivery agent in (\d+) ms", s.log())]
        self.assertEqual(len(delays), 6)
        self.assertLessEqual(max(delays), 5000)
        send(s, "bob@example.com.ar", "still delivering")
        s.wait_messages("bob", 1)

    def test_mail_agent_killed(self):
        s = self.server
        before = started_pids(s)
        os.kill(before["mail"], signal.SIGKILL)
        wait_for(lambda: started_pids(s)["mail"] != before["mail"], 10, what="a new mail agent")
        self.assertEqual(started_pids(s)["worker"], before["worker"])
        # The worker hands new logins to the new agent.
        imap = wait_for(lambda: self.login("bob"), 10, what="a login through the new mail agent")
        self.assertEqual(imap.select("INBOX")[0], "OK")
        imap.logout()

    def login(self, user):
        imap = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=30)
        try:
            imap.login(user, "secret")
            return imap
        except imaplib.IMAP4.error:
            imap.shutdown()
            return None


@unittest.skipUnless(os.geteuid() == 0, "needs root")
class AuthAgentRestartTest(unittest.TestCase):
    """As root the auth agent checks passwords: killed, it comes back and
    the worker sends it new logins; open sessions carry on."""

    def test_auth_agent_killed(self):
        s = Server(modules=("mbox", "smtp", "imap"), listeners=("smtpd", "imap"), as_root=True, users=())
        self.addCleanup(s.cleanup)
        user = system_mail_user(s, "ptaa", self.addCleanup)
        s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n" % s.passwd_file)
        s.start()
        imap = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=30)
        imap.login(user, "secret")
        imap.select("INBOX")
        before = started_pids(s)
        os.kill(before["auth"], signal.SIGKILL)
        wait_for(lambda: started_pids(s)["auth"] != before["auth"], 10, what="a new auth agent")
        self.assertEqual(imap.noop()[0], "OK")
        other = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=30)
        self.assertEqual(other.login(user, "secret")[0], "OK")
        other.logout()
        imap.logout()
        self.assertEqual(started_pids(s)["worker"], before["worker"])


class WatchdogTest(unittest.TestCase):
    """A worker whose event loop stops turning (SIGSTOP stands in for a
    handler that never returns) is replaced after worker_watchdog_timeout;
    mail it acknowledged (queued: alice's mailbox was locked) is delivered."""

    TIMEOUT = 6 if SANITIZE else 3

    def test_stalled_worker_is_replaced(self):
        s = Server(modules=("mbox", "smtp"), listeners=("smtpd",),
                   conf="worker_watchdog_timeout = %ds\nmbox_lock_timeout = 1s\nminimal_backoff_time = 1s\n"
                        "maximal_backoff_time = 2s\nqueue_run_delay = 1s\n" % self.TIMEOUT)
        self.addCleanup(s.cleanup)
        s.start()
        path = s.mbox_path("alice")
        open(path, "a").close()
        st = os.stat(s.path("spool"))
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, 0o600)
        with open(path, "r+") as lock:
            fcntl.lockf(lock, fcntl.LOCK_EX)
            for i in range(5):
                send(s, "alice@example.com.ar", "acked %d" % i)
            worker = started_pids(s)["worker"]
            os.kill(worker, signal.SIGSTOP)
            t0 = time.monotonic()
            fcntl.lockf(lock, fcntl.LOCK_UN)
        try:
            s.wait_log("worker %d stuck for" % worker, self.TIMEOUT + 10)
            line = wait_for(lambda: banner(s.ports["smtpd"], 2), self.TIMEOUT + (30 if SANITIZE else 10), 0.2,
                            what="a banner from a new worker")
        finally:
            try:
                os.kill(worker, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.assertTrue(line.startswith(b"220 "), line)
        self.assertLess(time.monotonic() - t0, self.TIMEOUT + (30 if SANITIZE else 10))
        self.assertNotEqual(started_pids(s)["worker"], worker)
        self.assertRegex(s.log(), r"worker %d stuck for \d+s, replacing" % worker)
        want = {"acked %d" % i for i in range(5)}
        msgs = wait_for(lambda: want <= {m["Subject"] for m in s.messages("alice")} and s.messages("alice"), 30,
                        what="every acknowledged message delivered")
        # A delivery the agent made while the stalled worker could not hear
        # its answer is made again: a duplicate, never a loss.
        self.assertEqual({m["Subject"] for m in msgs}, want)

    def test_parameter_documented(self):
        s = Server(modules=("mbox", "smtp"), listeners=("smtpd",))
        self.addCleanup(s.cleanup)
        r = s.cmd("config", "-d", "worker_watchdog_timeout")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"30s", r.stdout)


if __name__ == "__main__":
    unittest.main()
