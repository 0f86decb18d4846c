"""Process roles: the master starts only the agents the loaded modules
need (the local delivery agent for a module that runs there, the mail
agent for imap/pop3, the auth agent as root for a module whose sessions
check passwords), per generation; and a module's init runs only in its
declared roles: restrict's Lua policies are loaded in the worker, never in
the root delivery agent, the mail agent or a user's mail process, nor by
`sendmail -bs` (which applies no restrictions); `postern policy test`
started as root runs them as mail_owner."""
import imaplib
import os
import pwd
import smtplib
import subprocess
import unittest

from harness import BIN, TESTMODS, Server, free_port, started_pids, system_mail_user, wait_for

HELLO = os.path.join(os.path.abspath(TESTMODS), "hello.so")


def generations(server):
    return server.log().count(" started worker (pid ")


def processes(server, n=1):
    """Kinds of the processes the master started for its n-th generation,
    once exactly those (and the master) exist."""
    wait_for(lambda: generations(server) >= n, 10, what="generation %d started" % n)
    pids = started_pids(server.log())
    # An old generation drains; the restrict check's child has exited.
    wait_for(lambda: sorted(server.children()) == sorted(pids.values()), 10,
             what="only the processes of generation %d (%s) alive, not %s" % (n, pids, server.children()))
    return set(pids)


class AgentsRootlessTest(unittest.TestCase):
    def start(self, modules, conf="", listeners=("smtpd",), **kw):
        s = Server(modules=modules, conf=conf, listeners=listeners, **kw)
        self.addCleanup(s.cleanup)
        s.start()
        return s

    def test_smtp_mbox_worker_and_delivery_agent(self):
        s = self.start(("mbox", "smtp"))
        self.assertEqual(processes(s), {"worker", "local"})
        with smtplib.SMTP("127.0.0.1", s.ports["smtpd"], timeout=30) as c:
            c.sendmail("carol@example.com.ar", ["alice@example.com.ar"], b"Subject: one\r\n\r\nbody\r\n")
        s.wait_messages("alice", 1)

    def test_no_delivery_module_no_delivery_agent(self):
        s = self.start(("smtp", "transport"))
        self.assertEqual(processes(s), {"worker"})
        # Local mail is kept and deferred with the reason, not lost.
        with smtplib.SMTP("127.0.0.1", s.ports["smtpd"], timeout=30) as c:
            c.sendmail("carol@example.com.ar", ["alice@example.com.ar"], b"Subject: kept\r\n\r\nbody\r\n")
        s.wait_log("no local delivery (no loaded module delivers")
        listing = s.cmd("queue", "list").stdout.decode()
        self.assertIn("alice@example.com.ar", listing)

    def test_imap_starts_the_mail_agent(self):
        s = self.start(("mbox", "smtp", "imap"), listeners=("smtpd", "imap"))
        self.assertEqual(processes(s), {"worker", "local", "mail"})

    def test_pop3_alone_with_its_mailbox(self):
        s = self.start(("mbox", "pop3"), listeners=("pop3",))
        self.assertEqual(processes(s), {"worker", "local", "mail"})

    def test_protocol_module_only(self):
        s = Server(modules=(), listeners=(), conf="module hello %s\nhello_listen = 127.0.0.1:%d\n" % (HELLO, free_port()))
        self.addCleanup(s.cleanup)
        s.start()
        self.assertEqual(processes(s), {"worker"})

    def test_reload_with_imap_added_starts_the_mail_agent(self):
        s = self.start(("mbox", "smtp"))
        self.assertEqual(processes(s), {"worker", "local"})
        s.modules.append("imap")
        s.ports["imap"] = None
        s.write_conf()
        s.reload()
        self.assertEqual(processes(s, 2), {"worker", "local", "mail"})
        s.modules.remove("imap")
        s.write_conf()
        s.reload()
        self.assertEqual(processes(s, 3), {"worker", "local"})


@unittest.skipUnless(os.geteuid() == 0, "privilege separation needs root")
class AgentsRootTest(unittest.TestCase):
    def test_smtp_mbox(self):
        s = Server(modules=("mbox", "smtp"), listeners=("smtpd",), as_root=True)
        self.addCleanup(s.cleanup)
        s.start()
        # smtp's sessions offer AUTH: the auth agent reads the password db.
        self.assertEqual(processes(s), {"worker", "local", "auth"})

    def test_all_agents(self):
        s = Server(modules=("mbox", "smtp", "imap"), listeners=("smtpd", "imap"), as_root=True)
        self.addCleanup(s.cleanup)
        s.start()
        self.assertEqual(processes(s), {"worker", "local", "auth", "mail"})

    def test_no_password_checks_no_auth_agent(self):
        s = Server(modules=(), listeners=(), as_root=True,
                   conf="module hello %s\nhello_listen = 127.0.0.1:%d\n" % (HELLO, free_port()))
        self.addCleanup(s.cleanup)
        s.start()
        self.assertEqual(processes(s), {"worker"})


POLICY = """postern.log("role-probe loaded")
return function(a) return "DUNNO" end
"""


@unittest.skipUnless(os.geteuid() == 0, "privilege separation needs root")
class RootRunsNoLuaTest(unittest.TestCase):
    """The policy logs a line as it loads (the line carries the pid): the
    worker loads it; the root agents and the user's mail process never do,
    even after a delivery and a login made them do their work."""

    def test_policy_loaded_only_in_the_worker(self):
        s = Server(modules=("mbox", "smtp", "restrict", "imap"), listeners=("smtpd", "imap"), as_root=True,
                   users=())
        self.addCleanup(s.cleanup)
        user = system_mail_user(s, "ptrl", self.addCleanup)
        policy = s.path("probe.lua")
        with open(policy, "w") as f:
            f.write(POLICY)
        os.chmod(policy, 0o644)
        s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n"
                     "smtpd_recipient_restrictions = check_lua_policy %s, permit_mynetworks, "
                     "reject_unauth_destination\n" % (s.passwd_file, policy))
        s.start()
        with smtplib.SMTP("127.0.0.1", s.ports["smtpd"], timeout=30) as c:
            c.sendmail("carol@example.com.ar", ["%s@example.com.ar" % user], b"Subject: probe\r\n\r\nbody\r\n")
        s.wait_messages(user, 1)
        imap = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=30)
        self.addCleanup(imap.logout)
        imap.login(user, "secret")
        self.assertEqual(imap.select("INBOX")[1], [b"1"])
        pids = started_pids(s.log())
        mail_procs = s.children(pids["mail"])
        self.assertEqual(len(mail_procs), 1)
        loaded_in = {int(line.split("[", 1)[1].split("]", 1)[0])
                     for line in s.log().splitlines() if "role-probe loaded" in line}
        self.assertIn(pids["worker"], loaded_in)
        for kind in ("local", "auth", "mail"):
            self.assertNotIn(pids[kind], loaded_in, kind)
        self.assertNotIn(mail_procs[0], loaded_in)
        self.assertNotIn(s.pid, loaded_in)


def probe_pids(server):
    """pids of the processes that loaded the probe policy (from the log)."""
    return {int(line.split("[", 1)[1].split("]", 1)[0])
            for line in server.log().splitlines() if "role-probe loaded" in line}


@unittest.skipUnless(os.geteuid() == 0, "needs root")
class CommandsAsRootTest(unittest.TestCase):
    def setUp(self):
        self.s = Server(modules=("mbox", "smtp", "restrict"), listeners=("smtpd",), as_root=True)
        self.addCleanup(self.s.cleanup)
        policy = self.s.path("probe.lua")
        with open(policy, "w") as f:
            f.write(POLICY)
        os.chmod(policy, 0o644)
        self.s.write_conf("smtpd_recipient_restrictions = check_lua_policy %s, permit_mynetworks, "
                          "reject_unauth_destination\n" % policy)

    def test_sendmail_bs_loads_no_policy(self):
        open(self.s.log_file, "a").close()   # sendmail logs only to a log it may write
        p = subprocess.Popen([BIN, "sendmail", "-bs"], env=self.s.env(), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(b"EHLO me\r\nQUIT\r\n", timeout=60)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn(b"221 ", out)
        # The session logged to the mail log as root; the policy did not.
        self.assertIn("[%d]" % p.pid, self.s.log())
        self.assertNotIn(p.pid, probe_pids(self.s))

    def test_sendmail_and_mailq_run_no_module_checks(self):
        """Plain sendmail and mailq read a few parameters: they neither
        compile the policies nor run their self-tests (which `postern
        check` and the server do), so a policy file gone missing stops
        `postern check` but not local mail submission."""
        self.s.start()
        self.s.write_conf("smtpd_recipient_restrictions = check_lua_policy %s, permit_mynetworks, "
                          "reject_unauth_destination\n" % self.s.path("gone.lua"))
        r = subprocess.run([BIN, "check", "-c", self.s.conf_file], env=self.s.env(), capture_output=True,
                           timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(b"gone.lua", r.stdout + r.stderr)
        r = subprocess.run([BIN, "sendmail", "-t", "-i"], env=self.s.env(), capture_output=True, timeout=60,
                           input=b"To: alice@example.com.ar\nSubject: no checks\n\nbody\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run([BIN, "queue", "list", "-c", self.s.conf_file], env=self.s.env(),
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.s.wait_log("from=<root@example.com.ar>, size=")   # picked up and queued

    def test_policy_test_runs_as_mail_owner(self):
        owner = pwd.getpwnam(self.s.mail_owner)
        p = subprocess.Popen([BIN, "policy", "test", "-v", "-c", self.s.conf_file, "--script", "-"],
                             env=self.s.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is None and p.kill())

        def uids():
            with open("/proc/%d/status" % p.pid) as f:
                return [int(x) for x in f.read().split("Uid:")[1].splitlines()[0].split()]
        # Policies loaded, it waits for the script on stdin: as mail_owner.
        wait_for(lambda: uids() == [owner.pw_uid] * 4, 20, what="policy test running as mail_owner")
        out, err = p.communicate(b"client 127.0.0.1\nrcpt <victim@other.test>\n250\n", timeout=60)
        self.assertEqual(p.returncode, 0, out + err)
        self.assertIn(b"checks, 0 failed", out)
        self.assertIn(b"role-probe loaded", err)


if __name__ == "__main__":
    unittest.main()
