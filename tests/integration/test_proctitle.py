"""Process titles: every process of a running server says what it is in
ps (/proc/PID/cmdline) and top (/proc/PID/comm), as Dovecot's
verbose_proctitle does: "postern: master", "postern: worker", "postern:
delivery", "postern: auth", "postern: mail-agent", and a user's mail
process "postern: imap [alice 127.0.0.5]" with the user and client
address, rootless and privilege-separated as root. The environment the
title overwrites is still what the processes read (the pipe delivery of
an alias sees the variables it should)."""
import imaplib
import os
import poplib
import socket
import subprocess
import unittest

from harness import BIN, Server, port_ready, started_pids, system_mail_user, wait_for


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read()


def comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().rstrip("\n")


def title(pid):
    """The title as ps shows it, after checking it is one string with
    nothing after its NUL (no padding ps would show as blanks)."""
    raw = cmdline(pid)
    assert raw.endswith(b"\0") and raw.count(b"\0") == 1, raw
    return raw[:-1].decode()


class FromIMAP(imaplib.IMAP4):
    """An IMAP client connecting from a chosen loopback address."""

    def __init__(self, port, source):
        self._source = source
        super().__init__("127.0.0.1", port, timeout=30)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


class FromPOP3(poplib.POP3):
    def __init__(self, port, source):
        self._source = source
        super().__init__("127.0.0.1", port, timeout=30)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


class TitleMixin:
    def mail_children(self, s, known):
        """pids of the mail agent's children (the per-user mail processes)."""
        return [p for p in s.children(known["mail"])]

    def check_daemon(self, s, expect_roles):
        wait_for(lambda: set(started_pids(s.log())) == set(expect_roles), 10, what="processes started")
        pids = started_pids(s.log())
        want = {"worker": "worker", "local": "delivery", "auth": "auth", "mail": "mail-agent"}
        # The titles are set right after fork: wait until the last one is.
        wait_for(lambda: all(title(pids[k]) == "postern: " + want[k] for k in pids), 10,
                 what="titles of %s" % pids)
        self.assertEqual(title(s.pid), "postern: master")
        self.assertEqual(comm(s.pid), "postern-master")
        for kind, pid in pids.items():
            self.assertEqual(title(pid), "postern: " + want[kind])
            self.assertEqual(comm(pid), ("postern-" + want[kind])[:15])
        return pids

    def check_sessions(self, s, pids, alice, bob):
        imap = FromIMAP(s.ports["imap"], "127.0.0.5")
        self.addCleanup(lambda: imap.state == "LOGOUT" or imap.shutdown())
        imap.login(alice, "secret")
        imap.select("INBOX")
        wait_for(lambda: len(self.mail_children(s, pids)) == 1, 10, what="alice's mail process")
        (a_pid,) = self.mail_children(s, pids)
        wait_for(lambda: title(a_pid) == "postern: imap [%s 127.0.0.5]" % alice, 10,
                 what="alice's title, not %r" % title(a_pid))
        self.assertEqual(comm(a_pid), "postern-imap")

        pop = FromPOP3(s.ports["pop3"], "127.0.0.7")
        pop.user(bob)
        pop.pass_("secret")
        wait_for(lambda: len(self.mail_children(s, pids)) == 2, 10, what="bob's mail process")
        (b_pid,) = [p for p in self.mail_children(s, pids) if p != a_pid]
        wait_for(lambda: title(b_pid) == "postern: pop3 [%s 127.0.0.7]" % bob, 10,
                 what="bob's title, not %r" % title(b_pid))
        self.assertEqual(comm(b_pid), "postern-pop3")
        pop.quit()

        # A second IMAP session of alice's shares her process: the title
        # says how many it serves, and goes back when one ends.
        imap2 = FromIMAP(s.ports["imap"], "127.0.0.9")
        imap2.login(alice, "secret")
        wait_for(lambda: title(a_pid) == "postern: imap [%s, 2 sessions]" % alice, 10,
                 what="two sessions, not %r" % title(a_pid))
        # And POP3 beside IMAP: both protocols named, in alphabetical order.
        pop2 = FromPOP3(s.ports["pop3"], "127.0.0.9")
        pop2.user(alice)
        pop2.pass_("secret")
        wait_for(lambda: title(a_pid) == "postern: imap+pop3 [%s, 3 sessions]" % alice, 10,
                 what="three sessions, not %r" % title(a_pid))
        pop2.quit()
        imap2.logout()
        wait_for(lambda: title(a_pid) == "postern: imap [%s 127.0.0.5]" % alice, 10,
                 what="one session again, not %r" % title(a_pid))
        imap.logout()
        # Pre-login sessions live in the worker, whose title stays.
        self.assertEqual(title(pids["worker"]), "postern: worker")


class RootlessTitlesTest(TitleMixin, unittest.TestCase):
    def test_every_process_titled(self):
        s = Server(modules=("mbox", "smtp", "alias", "imap", "pop3"), listeners=("smtpd", "imap", "pop3"),
                   conf="disable_plaintext_auth = no\n")
        self.addCleanup(s.cleanup)
        s.write_conf(s.extra_conf + "passdb = passwd-file:%s\nauth_failure_delay = 0s\n" % s.passwd_file)
        s.start()
        pids = self.check_daemon(s, {"worker", "local", "mail"})
        self.check_sessions(s, pids, "alice", "bob")

    def test_terse_titles(self):
        """verbose_proctitle = no: ps shows the protocol, not who logs in
        from where."""
        s = Server(modules=("mbox", "smtp", "alias", "imap", "pop3"), listeners=("smtpd", "imap", "pop3"),
                   conf="disable_plaintext_auth = no\nverbose_proctitle = no\n")
        self.addCleanup(s.cleanup)
        s.write_conf(s.extra_conf + "passdb = passwd-file:%s\nauth_failure_delay = 0s\n" % s.passwd_file)
        s.start()
        pids = self.check_daemon(s, {"worker", "local", "mail"})
        imap = FromIMAP(s.ports["imap"], "127.0.0.5")
        self.addCleanup(lambda: imap.state == "LOGOUT" or imap.shutdown())
        imap.login("alice", "secret")
        imap.select("INBOX")
        wait_for(lambda: len(self.mail_children(s, pids)) == 1, 10, what="alice's mail process")
        (a_pid,) = self.mail_children(s, pids)
        wait_for(lambda: title(a_pid) == "postern: imap", 10, what="terse title, not %r" % title(a_pid))
        self.assertNotIn(b"alice", cmdline(a_pid))
        self.assertNotIn(b"127.0.0.5", cmdline(a_pid))
        imap.logout()

    def test_config_path_survives_the_title(self):
        """The title overwrites the memory that held the arguments and the
        environment: the config path the master rereads on SIGHUP, from
        -c or from POSTERN_CONF, must have moved first."""
        for how in ("argument", "environment"):
            with self.subTest(how=how):
                s = Server(modules=("mbox", "smtp"), listeners=("smtpd",))
                self.addCleanup(s.cleanup)
                if how == "argument":
                    s.start()
                else:
                    # POSTERN_CONF alone names the config (Server.env sets it).
                    s.proc = subprocess.Popen([BIN, "run"], env=s.env(), stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL,
                                              preexec_fn=s._preexec if s.run_user else None)
                    wait_for(lambda: port_ready(s.ports["smtpd"]), 30, what="server up")
                self.assertEqual(title(s.pid), "postern: master")
                s.reload()
                s.wait_log("reload: reading %s" % s.conf_file)
                s.wait_log("reload: configuration reloaded")


@unittest.skipUnless(os.geteuid() == 0, "needs root")
class RootTitlesTest(TitleMixin, unittest.TestCase):
    def test_every_process_titled_as_root(self):
        s = Server(modules=("mbox", "smtp", "imap", "pop3"), listeners=("smtpd", "imap", "pop3"),
                   as_root=True, users=(), conf="disable_plaintext_auth = no\n")
        self.addCleanup(s.cleanup)
        alice = system_mail_user(s, "ptta", self.addCleanup)
        # A second system user beside the first (system_mail_user writes one).
        with open(s.passwd_file) as f:
            first = f.read()
        bob = system_mail_user(s, "pttb", self.addCleanup)
        with open(s.passwd_file) as f:
            second = f.read()
        with open(s.passwd_file, "w") as f:
            f.write(first + second)
        s.write_conf(s.extra_conf + "passdb = passwd-file:%s\nauth_failure_delay = 0s\n" % s.passwd_file)
        s.start()
        pids = self.check_daemon(s, {"worker", "local", "auth", "mail"})
        self.check_sessions(s, pids, alice, bob)


if __name__ == "__main__":
    unittest.main()
