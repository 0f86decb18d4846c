"""Attacks on the process tree and its files (issue #11, items 3, 5, 12):

- kill -9 of the master must take every child with it (the worker used to
  survive as root: the uid change cleared its parent-death signal), and a
  new master on the same config must bind and take mail at once;
- mail_owner owns the queue directory, so it can plant things in it: root
  must never write through a link it planted (pid file), nor signal a pid
  it wrote (postern stop / reload);
- one queue directory has one master: a second `postern run` with its own
  pid file exits with the running master's pid and changes nothing.
"""
import imaplib
import os
import pwd
import shutil
import signal
import smtplib
import subprocess
import time
import unittest

from harness import BIN, SANITIZE, Server, system_mail_user, wait_for

# How long children may take to follow a killed master (generous under ASan).
GONE_WITHIN = 10 if SANITIZE else 2


def alive(pid):
    """Running (not a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def as_user(name):
    pw = pwd.getpwnam(name)

    def pre():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return pre


def sleeper(test):
    """A process of the test's own that a forged pid file may name."""
    p = subprocess.Popen(["sleep", "600"])

    def end():
        p.kill()
        p.wait()
    test.addCleanup(end)
    return p


def root_user_server(test, modules=("mbox", "smtp", "imap", "pop3"), conf=""):
    """A privilege-separated server whose one mail user is a throwaway
    system user (so delivery and its mail process run with a real uid)."""
    s = Server(modules=modules, as_root=True, users=())
    test.addCleanup(s.cleanup)
    user = system_mail_user(s, "ptpa", test.addCleanup)
    s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n%s" % (s.passwd_file, conf))
    return s, user


def send(server, rcpt, subject):
    with smtplib.SMTP("127.0.0.1", server.ports["smtpd"], timeout=30) as c:
        c.sendmail("carol@example.com.ar", [rcpt + "@example.com.ar"],
                   ("Subject: %s\r\n\r\nbody of %s\r\n" % (subject, subject)).encode())


class MasterKill9(unittest.TestCase):
    """kill -9 of the master alone (not its children, as harness.kill
    does): every child follows, the ports are free, and a new master on
    the same config serves at once."""

    def check(self, server, user):
        server.start()
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
        imap.login(user, "secret")
        imap.select("INBOX")
        # A mail process now exists too (the mail agent's child).
        wait_for(lambda: len(server.children()) >= (5 if server.as_root else 4), 10,
                 what="worker, agents and a mail process")
        kids = server.children()
        os.kill(server.pid, signal.SIGKILL)
        server.proc.wait()
        t0 = time.monotonic()
        try:
            wait_for(lambda: not any(alive(k) for k in kids), GONE_WITHIN, 0.02,
                     what="every child of the killed master to exit")
        finally:
            left = [k for k in kids if alive(k)]
            for k in left:
                os.kill(k, signal.SIGKILL)
            # Only now: a surviving child would hold the output pipes open.
            server.proc.communicate()
        self.assertEqual(left, [])
        took = time.monotonic() - t0
        try:
            imap.logout()
        except (OSError, imaplib.IMAP4.error, EOFError):
            pass
        # Same config, same ports, same queue: up again and taking mail.
        server.start()
        send(server, user, "after the crash")
        server.wait_messages(user, 1)
        return took

    def test_rootless(self):
        s = Server(modules=("mbox", "smtp", "imap", "pop3"))
        self.addCleanup(s.cleanup)
        s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n" % s.passwd_file)
        self.check(s, "alice")

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_privilege_separated(self):
        s, user = root_user_server(self)
        self.check(s, user)


class OneQueueOneMaster(unittest.TestCase):
    """A second master with its own pid file and ports but the same
    queue_directory is refused before it touches anything."""

    def second(self, first):
        other = Server(modules=("mbox", "smtp"), listeners=("smtpd",))
        self.addCleanup(other.cleanup)
        other.write_conf("queue_directory = %s\n" % first.path("queue"))
        qdir = first.path("queue")
        before = {n: os.lstat(os.path.join(qdir, n)) for n in os.listdir(qdir)}
        st = os.stat(qdir)
        r = subprocess.run([BIN, "run", "-c", other.conf_file], capture_output=True, timeout=30,
                           env=other.env(), preexec_fn=other._preexec if other.run_user else None)
        self.assertEqual(r.returncode, 1, r.stderr)
        err = r.stderr.decode()
        self.assertIn("already running", err)
        self.assertIn("pid %d" % first.pid, err)
        self.assertIn(qdir, err)
        # Nothing changed: owner and mode of the queue, its entries, no pid
        # file, no log, and the first master still serves.
        after = os.stat(qdir)
        self.assertEqual((after.st_uid, after.st_gid, after.st_mode), (st.st_uid, st.st_gid, st.st_mode))
        now = {n: os.lstat(os.path.join(qdir, n)) for n in os.listdir(qdir)}
        self.assertEqual(sorted(now), sorted(before))
        for n in now:
            self.assertEqual((now[n].st_uid, now[n].st_mode), (before[n].st_uid, before[n].st_mode), n)
        self.assertFalse(os.path.exists(other.path("run", "postern.pid")))
        self.assertEqual(other.log(), "")
        send(first, "alice", "first still serves")
        first.wait_messages("alice", 1)

    def test_rootless(self):
        first = Server(modules=("mbox", "smtp"), listeners=("smtpd",))
        self.addCleanup(first.cleanup)
        first.start()
        self.second(first)

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_as_root_with_another_mail_owner(self):
        first = Server(modules=("mbox", "smtp"), listeners=("smtpd",), as_root=True)
        self.addCleanup(first.cleanup)
        first.start()
        # Its own throwaway mail_owner: the one a chown would have given the queue.
        other = Server(modules=("mbox", "smtp"), listeners=("smtpd",), as_root=True)
        self.addCleanup(other.cleanup)
        other.write_conf("queue_directory = %s\n" % first.path("queue"))
        st = os.stat(first.path("queue"))
        r = subprocess.run([BIN, "run", "-c", other.conf_file], capture_output=True, timeout=30, env=other.env())
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("already running: the master with pid %d" % first.pid, r.stderr.decode())
        after = os.stat(first.path("queue"))
        self.assertEqual((after.st_uid, after.st_gid), (st.st_uid, st.st_gid))
        self.assertEqual(after.st_uid, pwd.getpwnam(first.mail_owner).pw_uid)
        self.assertFalse(os.path.exists(other.path("run", "postern.pid")))

    def test_after_the_master_is_gone_a_new_one_starts(self):
        first = Server(modules=("mbox", "smtp"), listeners=("smtpd",))
        self.addCleanup(first.cleanup)
        first.start()
        first.stop()
        first.start()
        send(first, "alice", "second life")
        first.wait_messages("alice", 1)


@unittest.skipUnless(os.geteuid() == 0, "needs root")
class PidFileAttacks(unittest.TestCase):
    """mail_owner owns $queue_directory and so, with the default pid_file,
    once owned pid/ too: root must not write through its links nor signal
    the pid it writes."""

    def setUp(self):
        self.server = Server(modules=("mbox", "smtp"), listeners=("smtpd",), as_root=True,
                             conf="pid_file = $queue_directory/pid/master.pid\n")
        self.addCleanup(self.server.cleanup)
        self.owner = self.server.mail_owner
        pw = pwd.getpwnam(self.owner)
        self.qdir = self.server.path("queue")
        self.piddir = os.path.join(self.qdir, "pid")
        self.pidfile = os.path.join(self.piddir, "master.pid")
        # The layout an older version left: queue and pid/ are mail_owner's.
        os.makedirs(self.piddir, exist_ok=True)
        for d in (self.qdir, self.piddir):
            os.chown(d, pw.pw_uid, pw.pw_gid)
        self.victim = self.server.path("victim")
        with open(self.victim, "w") as f:
            f.write("precious\n")
        self.victim_proc = sleeper(self)

    def as_owner(self, code):
        r = subprocess.run(["python3", "-c", code], preexec_fn=as_user(self.owner), capture_output=True,
                           cwd="/")
        return r

    def plant(self, directory):
        """As mail_owner: a link where root writes its temporary file, and
        the test's sleeping process as the master's pid."""
        r = self.as_owner(
            "import os\n"
            "d = %r\n"
            "for n in ('master.pid.tmp', 'master.pid'):\n"
            "    try: os.unlink(os.path.join(d, n))\n"
            "    except FileNotFoundError: pass\n"
            "os.symlink(%r, os.path.join(d, 'master.pid.tmp'))\n"
            "open(os.path.join(d, 'master.pid'), 'w').write('%d\\n')\n"
            % (directory, self.victim, self.victim_proc.pid))
        self.assertEqual(r.returncode, 0, r.stderr)

    def start_server(self):
        self.server.start()
        # Started on the master's own start: the pid file names it.
        wait_for(lambda: os.path.exists(self.pidfile), 10, what="pid file")

    def assert_victims_intact(self):
        with open(self.victim) as f:
            self.assertEqual(f.read(), "precious\n")
        self.assertTrue(alive(self.victim_proc.pid), "the planted pid was signalled")

    def test_start_writes_no_link_and_takes_pid_dir_back(self):
        self.plant(self.piddir)
        self.start_server()
        self.assert_victims_intact()
        st = os.lstat(self.piddir)
        self.assertEqual(st.st_uid, 0)
        self.assertEqual(st.st_mode & 0o022, 0)
        st = os.lstat(self.pidfile)
        self.assertTrue(st.st_mode & 0o170000 == 0o100000 and st.st_uid == 0)
        with open(self.pidfile) as f:
            self.assertEqual(int(f.read()), self.server.pid)
        # mail_owner can no longer write there.
        r = self.as_owner("open(%r, 'w')" % os.path.join(self.piddir, "x"))
        self.assertNotEqual(r.returncode, 0)

    def test_swapped_pid_dir_is_not_trusted_by_stop_or_reload(self):
        self.start_server()
        # mail_owner owns the queue directory: it can move pid/ aside and
        # put its own in its place, naming the test's sleeping process.
        r = self.as_owner("import os\nos.rename(%r, %r)\nos.mkdir(%r, 0o755)\n"
                          % (self.piddir, self.piddir + ".old", self.piddir))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.plant(self.piddir)
        # SIGUSR2 (queue flush) would end the sleeper as surely as SIGHUP.
        r = self.server.cmd("queue", "flush", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.server.wait_log("flush requested")
        self.assert_victims_intact()
        r = self.server.cmd("reload", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.server.wait_log("reload: configuration reloaded")
        self.assert_victims_intact()
        r = self.server.cmd("stop", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.server.proc.wait(10)
        self.assert_victims_intact()
        self.assertEqual(self.server.proc.returncode, 0)

    def test_stop_without_a_master_signals_nothing(self):
        self.plant(self.piddir)
        # Even a root-owned pid file naming the sleeper is not enough: the
        # pid must hold the queue's lock.
        r = self.server.cmd("stop", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"not running", r.stderr)
        r = self.server.cmd("reload", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 1)
        self.assert_victims_intact()
        shutil.chown(self.piddir, "root", "root")
        os.chmod(self.piddir, 0o755)
        os.unlink(os.path.join(self.piddir, "master.pid"))
        with open(self.pidfile, "w") as f:
            f.write("%d\n" % self.victim_proc.pid)
        r = self.server.cmd("stop", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 1)
        self.assert_victims_intact()

    def test_pid_file_in_a_directory_of_another_user_is_refused(self):
        other = os.path.join(self.server.dir, "ownerrun")
        os.makedirs(other)
        shutil.chown(other, self.owner, self.owner)
        self.server.write_conf("pid_file = %s/master.pid\n" % other)
        r = subprocess.run([BIN, "run", "-c", self.server.conf_file], capture_output=True, timeout=30,
                           env=self.server.env())
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"cannot use the directory of pid_file", r.stderr)
        self.assertEqual(os.listdir(other), [])


if __name__ == "__main__":
    unittest.main()
