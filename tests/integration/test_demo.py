"""`make run`'s demo (scripts/run-demo.sh): it starts on 127.0.0.1:2525,
prints how to try it, the alias sysadmin reaches alice and bob, and they
read it over IMAPS and POP3 on the demo ports."""
import imaplib
import os
import poplib
import ssl
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import BIN, MODULES, SRC, port_open, wait_for


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


class DemoTest(unittest.TestCase):
    def setUp(self):
        if any(port_open(p) for p in (2525, 2587, 10143, 10993, 10110, 10995)):
            self.skipTest("a demo port (2525 2587 10143 10993 10110 10995) is taken on this machine")
        self.run_dir = tempfile.mkdtemp(prefix="postern-demo-")
        self.addCleanup(shutil.rmtree, self.run_dir, True)
        env = dict(os.environ, POSTERN_RUN_DIR=self.run_dir, POSTERN_BIN=BIN, POSTERN_MODULES=MODULES)
        # O_APPEND, and read through a path of its own: a seek on the
        # child's descriptor would move the offset the demo writes at.
        self.out = open(os.path.join(self.run_dir, "..", os.path.basename(self.run_dir) + ".out"), "a")
        self.addCleanup(os.unlink, self.out.name)
        self.addCleanup(self.out.close)
        self.proc = subprocess.Popen([os.path.join(SRC, "scripts", "run-demo.sh")], env=env,
                                     stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)
        self.addCleanup(self.stop)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)

    def test_demo_starts_prints_help_and_delivers(self):
        wait_for(lambda: port_open(2525), 30, what="demo SMTP port")
        text = read(self.out.name).decode(errors="replace")
        self.assertIn("swaks --server 127.0.0.1:2525", text)
        self.assertIn("openssl s_client", text)
        r = subprocess.run(["swaks", "--server", "127.0.0.1:2525", "--from", "carol@example.com.ar",
                            "--to", "sysadmin@example.com.ar", "--body", "demo body"],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        for user in ("alice", "bob"):
            path = os.path.join(self.run_dir, "mail", user)
            wait_for(lambda: b"demo body" in read(path), 10, what="demo mail for " + user)
        self.assertIn("imaps://127.0.0.1:10993", text)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        imap = imaplib.IMAP4_SSL("127.0.0.1", 10993, ssl_context=ctx, timeout=20)
        imap.login("alice", "password")
        imap.select("INBOX")
        typ, data = imap.fetch("1", "(BODY.PEEK[TEXT])")
        self.assertIn(b"demo body", data[0][1])
        imap.logout()
        pop = poplib.POP3("127.0.0.1", 10110, timeout=20)
        pop.user("bob")
        pop.pass_("password")
        self.assertIn(b"demo body", b"\n".join(pop.retr(1)[1]))
        pop.quit()


if __name__ == "__main__":
    unittest.main()
