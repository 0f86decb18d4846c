"""Local submission: `postern sendmail` and the binary called as sendmail /
mailq / newaliases; bsd-mailx (`mail -s test sysadmin`) and cron's flags;
mail submitted while the server is down flows once it starts."""
import os
import subprocess
import tempfile
import time
import unittest

from harness import BIN, Server, wait_for


class SendmailTest(unittest.TestCase):
    modules = ("mbox", "alias", "smtp")

    def setUp(self):
        self.server = Server(modules=self.modules)
        self.addCleanup(self.server.cleanup)
        self.server.start()
        self.bindir = tempfile.mkdtemp(prefix="postern-bin-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.bindir]))
        for name in ("sendmail", "mailq", "newaliases"):
            os.symlink(os.path.abspath(BIN), os.path.join(self.bindir, name))

    def run_as(self, name, args, input=b"", env=None):
        """Run the binary under one of its names, as root (the test user)."""
        e = self.server.env()
        if env:
            e.update(env)
        return subprocess.run([os.path.join(self.bindir, name)] + list(args), input=input,
                              capture_output=True, env=e, timeout=60)

    def test_mailx_to_alias(self):
        mailrc = os.path.join(self.bindir, "mailrc")
        with open(mailrc, "w") as f:
            f.write("set sendmail=%s\n" % os.path.join(self.bindir, "sendmail"))
        r = subprocess.run(["mail", "-s", "test", "sysadmin"], input=b"hi\n", capture_output=True,
                           env=dict(self.server.env(), MAILRC=mailrc), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        for user in ("alice", "bob"):
            m = self.server.wait_messages(user, 1)[0]
            self.assertEqual(m["Subject"], "test")
            self.assertEqual(m.get_payload(), "hi\n")
            self.assertIn("root@example.com.ar", m["From"])
            self.assertIsNotNone(m["Date"])
            self.assertIsNotNone(m["Message-Id"])
            self.assertIn("(Postern, from userid 0)", m["Received"])
        # The mailbox can show the message before the agent's answer is logged.
        self.server.wait_log("to=<alice@example.com.ar>, orig_to=<sysadmin>")
        log = self.server.log()
        self.assertRegex(log, r"postern/pickup\[\d+\]: [0-9A-F]+: uid=0 from=<root@example.com.ar>")
        self.assertEqual(os.listdir(self.server.path("queue", "maildrop")), [])

    @unittest.skipUnless(os.geteuid() == 0, "needs root to make a key file only root can read")
    def test_ordinary_user_sendmail_with_a_root_only_tls_key(self):
        """The shipped config reads the TLS key with `ssl_key = < FILE`, which
        only root may read; sendmail run by an ordinary user (cron, mailx)
        must still work, while `postern check` keeps reporting the file."""
        key = self.server.path("root-only.key")
        with open(key, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\n")
        os.chown(key, 0, 0)
        os.chmod(key, 0o600)
        conf = self.server.path("client.conf")
        with open(self.server.conf_file) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text + "ssl_key = < %s\n" % key)
        os.chmod(conf, 0o644)
        os.chmod(self.bindir, 0o755)
        r = subprocess.run([os.path.join(self.bindir, "sendmail"), "-C", conf, "-i", "alice"],
                           input=b"Subject: from nobody\n\nhello\n", capture_output=True,
                           env=self.server.env(), timeout=60, preexec_fn=self.server._preexec)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(b"cannot read", r.stderr)
        m = self.server.wait_messages("alice", 1)[0]
        self.assertEqual(m["Subject"], "from nobody")
        r = subprocess.run([BIN, "check", "-c", conf], capture_output=True, env=self.server.env(),
                           timeout=60, preexec_fn=self.server._preexec)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"cannot read %s: Permission denied" % key.encode(), r.stdout + r.stderr)

    def test_cron_flags(self):
        r = self.run_as("sendmail", ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "alice"],
                        input=b"Subject: Cron <root@host> run-parts\n\nsome output\n.\nmore\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.server.wait_messages("alice", 1)[0]
        self.assertEqual(m["From"], "CronDaemon <root@example.com.ar>")
        self.assertEqual(m.get_payload(), "some output\n.\nmore\n")  # -i: the dot is text

    def test_dot_ends_message_without_i(self):
        r = self.run_as("sendmail", ["alice"], input=b"Subject: dot\n\nbefore\n.\nafter\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.server.wait_messages("alice", 1)[0]
        self.assertEqual(m.get_payload(), "before\n")

    def test_t_extracts_and_removes_bcc(self):
        msg = (b"From: Alice <alice@example.com.ar>\nTo: bob@example.com.ar\n"
               b"Cc: \"C, arol\" <carol@example.com.ar>\nBcc: alice@example.com.ar\nSubject: t\n\nbody\n")
        r = self.run_as("sendmail", ["-t", "-i", "-f", "alice@example.com.ar"], input=msg)
        self.assertEqual(r.returncode, 0, r.stderr)
        for user in ("alice", "bob", "carol"):
            m = self.server.wait_messages(user, 1)[0]
            self.assertIsNone(m["Bcc"])
            self.assertEqual(m["From"], "Alice <alice@example.com.ar>")
            self.assertEqual(m["Return-Path"], "<alice@example.com.ar>")

    def test_postern_sendmail_verb_and_bounce_to_sender(self):
        r = self.server.cmd("sendmail", "-f", "carol@example.com.ar", "nosuchuser", input=b"Subject: x\n\nb\n",
                            as_daemon_user=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.server.wait_messages("carol", 1)[0]
        self.assertEqual(m["Subject"], "Undelivered Mail Returned to Sender")
        self.assertIn('unknown user: "nosuchuser"', m.as_string())

    def test_cr_lf_in_arguments_refused(self):
        for args in (["alice\nbcc: bob"], ["-f", "a@b\r", "alice"], ["-F", "x\ny", "alice"]):
            r = self.run_as("sendmail", args, input=b"Subject: x\n\nb\n")
            self.assertEqual(r.returncode, 64, args)
            self.assertIn("CR or LF", r.stderr.decode())
        r = self.run_as("sendmail", ["-Q", "alice"], input=b"x\n")
        self.assertEqual(r.returncode, 64)
        r = self.run_as("sendmail", [], input=b"Subject: x\n\nb\n")
        self.assertEqual(r.returncode, 64)
        self.assertIn("no recipients", r.stderr.decode())
        time.sleep(1.5)
        self.assertEqual(self.server.messages("alice"), [])

    def test_bs_smtp_dialogue(self):
        dialogue = (b"EHLO localhost\r\nMAIL FROM:<bob@example.com.ar>\r\nRCPT TO:<alice@example.com.ar>\r\n"
                    b"DATA\r\nSubject: bs\r\n\r\n..dotted\r\n.\r\nQUIT\r\n")
        r = self.run_as("sendmail", ["-bs"], input=dialogue)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertTrue(out.startswith("220 mail.example.com.ar ESMTP"), out)
        self.assertIn("250 2.0.0 Ok: queued", out)
        self.assertIn("221 2.0.0 Bye", out)
        m = self.server.wait_messages("alice", 1)[0]
        self.assertEqual(m["Subject"], "bs")
        self.assertEqual(m.get_payload(), ".dotted\n")
        self.assertEqual(m["Return-Path"], "<bob@example.com.ar>")

    def test_bs_long_body_line_kept(self):
        """A body line longer than any command line limit is content: it is
        delivered intact, never dropped behind a 250."""
        long_line = b"x" * 2990 + b"0123456789"
        dialogue = (b"EHLO localhost\r\nMAIL FROM:<bob@example.com.ar>\r\nRCPT TO:<alice@example.com.ar>\r\n"
                    b"DATA\r\nSubject: long\r\n\r\nbefore\r\n" + long_line + b"\r\nafter\r\n.\r\nQUIT\r\n")
        r = self.run_as("sendmail", ["-bs"], input=dialogue)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertIn("250 2.0.0 Ok: queued", out)
        m = self.server.wait_messages("alice", 1)[0]
        self.assertEqual(m.get_payload(), "before\n" + long_line.decode() + "\nafter\n")

    def test_bs_ehlo_lines_exact(self):
        r = self.run_as("sendmail", ["-bs"], input=b"EHLO client.example\r\nQUIT\r\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.endswith(b"\r\n"), r.stdout)
        lines = r.stdout.decode().split("\r\n")[:-1]
        self.assertTrue(lines[0].startswith("220 mail.example.com.ar ESMTP"), lines)
        self.assertEqual(lines[-1], "221 2.0.0 Bye")
        ehlo = lines[1:-1]
        self.assertEqual(ehlo[0], "250-mail.example.com.ar")
        for line in ehlo[:-1]:
            self.assertRegex(line, r"^250-[A-Za-z0-9]")
        self.assertRegex(ehlo[-1], r"^250 [A-Za-z0-9]")
        keywords = [line[4:].split(" ")[0] for line in ehlo[1:]]
        for k in ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"):
            self.assertIn(k, keywords)
        # Local submission: nothing to authenticate and nothing to encrypt.
        self.assertNotIn("AUTH", keywords)
        self.assertNotIn("STARTTLS", keywords)

    def test_bs_bare_lf_dialogue(self):
        """A user piping a dialogue with plain LF line ends (a script, a
        terminal) gets it served as before: "." LF ends the message."""
        dialogue = (b"HELO localhost\nMAIL FROM:<bob@example.com.ar>\nRCPT TO:<alice>\n"
                    b"DATA\nSubject: lf\n\n..dot\nbody\n.\nQUIT\n")
        r = self.run_as("sendmail", ["-bs"], input=dialogue)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertIn("250 2.0.0 Ok: queued", out)
        self.assertIn("221 2.0.0 Bye", out)
        m = self.server.wait_messages("alice", 1)[0]
        self.assertEqual(m["Subject"], "lf")
        self.assertEqual(m.get_payload(), ".dot\nbody\n")

    def test_bs_local_user_not_restricted(self):
        """As Postfix's stand-alone smtpd: the local user is no network
        client; relay and recipient checks do not apply (what cannot be
        delivered bounces, as with `sendmail ADDRESS`)."""
        dialogue = (b"EHLO localhost\r\nMAIL FROM:<>\r\nRCPT TO:<someone@elsewhere.example>\r\n"
                    b"RCPT TO:<nosuchuser>\r\nRSET\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nQUIT\r\n")
        r = self.run_as("sendmail", ["-bs"], input=dialogue)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.decode().split("\r\n")
        self.assertEqual(lines.count("250 2.1.5 Ok"), 2, lines)
        self.assertTrue(any(l.startswith("503 ") for l in lines), lines)  # no AUTH here

    def test_mailq_and_newaliases_names(self):
        r = self.run_as("mailq", [])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Mail queue is empty", r.stdout.decode())
        r = self.run_as("sendmail", ["-bp"])
        self.assertIn("Mail queue is empty", r.stdout.decode())
        r = self.run_as("newaliases", [])
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        self.assertIn("alias", r.stdout.decode())

    def test_submitted_while_down_flows_at_start(self):
        self.server.stop()
        r = self.run_as("sendmail", ["bob"], input=b"Subject: offline\n\nqueued while down\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        names = os.listdir(self.server.path("queue", "maildrop"))
        self.assertEqual(len(names), 1)
        # Private while it waits: ours, the server's group may read it, a
        # random name (tests/security/test_maildrop.py has the attacks).
        st = os.stat(self.server.path("queue", "maildrop", names[0]))
        self.assertEqual(st.st_mode & 0o777, 0o640)
        self.assertEqual(st.st_uid, os.getuid())
        self.assertEqual(st.st_gid, os.stat(self.server.path("queue", "maildrop")).st_gid)
        self.assertRegex(names[0], r"^[0-9a-f]{32}$")
        self.server.start()
        m = self.server.wait_messages("bob", 1)[0]
        self.assertEqual(m["Subject"], "offline")
        wait_for(lambda: os.listdir(self.server.path("queue", "maildrop")) == [], what="maildrop emptied")


class NoAliasModuleTest(unittest.TestCase):
    def test_newaliases_says_module_absent(self):
        server = Server(modules=("mbox", "smtp"))
        self.addCleanup(server.cleanup)
        r = server.cmd("sendmail", "-bi", as_daemon_user=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("alias module is not loaded", r.stdout.decode())

    def test_bs_without_smtp_module(self):
        """-bs is the smtp module's session: without it, a clear refusal
        (EX_UNAVAILABLE) and not a word on the SMTP channel."""
        server = Server(modules=("mbox",))
        self.addCleanup(server.cleanup)
        r = server.cmd("sendmail", "-bs", input=b"QUIT\r\n", as_daemon_user=False)
        self.assertEqual(r.returncode, 69, r.stderr)
        self.assertEqual(r.stdout, b"")
        self.assertIn("module smtp", r.stderr.decode())


@unittest.skipUnless(os.geteuid() == 0, "needs root")
class RootDefaultPidFileTest(unittest.TestCase):
    """As root with the default pid_file ($queue_directory/pid/master.pid,
    a directory the root master makes) the worker, running as mail_owner,
    still takes the queue lock and picks up locally submitted mail."""

    def test_sendmail_mail_leaves_maildrop(self):
        s = Server(modules=("mbox", "smtp"), as_root=True,
                   conf="pid_file = $queue_directory/pid/master.pid\nmail_owner = nobody\n")
        self.addCleanup(s.cleanup)
        s.start()
        r = subprocess.run([BIN, "sendmail", "-i", "alice"], input=b"Subject: root pid\n\nhi\n",
                           capture_output=True, env=s.env(), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Picked up and handed to the queue manager (delivery itself is not
        # the point here: these passwd-file users have no system uid).
        s.wait_log("(queue active)")
        self.assertRegex(s.log(), r"postern/pickup\[\d+\]: [0-9A-F]+: uid=0 from=<root@example.com.ar>")
        wait_for(lambda: os.listdir(s.path("queue", "maildrop")) == [], 10, what="empty maildrop")
        self.assertEqual(os.stat(s.path("queue", "pid")).st_uid, 0)


if __name__ == "__main__":
    unittest.main()
