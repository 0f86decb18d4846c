"""`make run`'s demo (scripts/run-demo.sh): it starts on 127.0.0.1:2525,
prints how to try it, and the alias sysadmin reaches alice and bob."""
import os
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
        if port_open(2525) or port_open(2587):
            self.skipTest("ports 2525/2587 are taken on this machine")
        self.run_dir = tempfile.mkdtemp(prefix="postern-demo-")
        self.addCleanup(shutil.rmtree, self.run_dir, True)
        env = dict(os.environ, POSTERN_RUN_DIR=self.run_dir, POSTERN_BIN=BIN, POSTERN_MODULES=MODULES)
        self.out = open(os.path.join(self.run_dir, "..", os.path.basename(self.run_dir) + ".out"), "w+")
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
        self.out.seek(0)
        text = self.out.read()
        self.assertIn("swaks --server 127.0.0.1:2525", text)
        self.assertIn("openssl s_client", text)
        r = subprocess.run(["swaks", "--server", "127.0.0.1:2525", "--from", "carol@example.com.ar",
                            "--to", "sysadmin@example.com.ar", "--body", "demo body"],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        for user in ("alice", "bob"):
            path = os.path.join(self.run_dir, "mail", user)
            wait_for(lambda: b"demo body" in read(path), 10, what="demo mail for " + user)


if __name__ == "__main__":
    unittest.main()
