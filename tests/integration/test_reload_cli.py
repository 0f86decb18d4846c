"""`postern reload` (what systemd's ExecReload runs) waits for the master's
answer: exit 0 once the new configuration is in use, exit 1 with the
reason when the master refuses it (here: a new listener on a port another
process holds, which the verb's own check cannot see), and exit 1 without
signalling when the file does not validate. The refused reload leaves the
old configuration serving."""
import os
import socket
import time
import unittest

from harness import SANITIZE, Server

TIMEOUT = 30 if SANITIZE else 10


class ReloadVerb(unittest.TestCase):
    as_root = False

    def setUp(self):
        self.server = Server(modules=("mbox", "smtp"), as_root=self.as_root)
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def test_good_reload_exits_0_when_done(self):
        self.server.write_conf("smtpd_banner = $myhostname ESMTP reloaded-%d\n" % id(self))
        r = self.server.cmd("reload", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        # Synchronous: the new generation already answers.
        self.assertIn("reload: configuration reloaded", self.server.log())
        self.assertIn(b"reloaded-%d" % id(self), self.greeting())

    def greeting(self):
        s = socket.create_connection(("127.0.0.1", self.server.ports["smtpd"]), timeout=TIMEOUT)
        try:
            return s.recv(512)
        finally:
            s.close()

    def test_refused_by_the_master_exits_1_with_the_reason(self):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        self.server.write_conf("submission_listen = 127.0.0.1:%d\n" % port)
        # The verb's own check passes (it does not bind) ...
        r = self.server.cmd("check", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        # ... the master cannot open the listener and refuses.
        r = self.server.cmd("reload", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 1, (r.stdout, r.stderr))
        self.assertIn("reload refused", r.stderr.decode())
        self.assertIn("reload refused", self.server.log())
        # The old configuration still serves.
        self.assertTrue(self.greeting().startswith(b"220 "))
        self.assertIsNone(self.server.proc.poll())

    def test_invalid_file_exits_1_without_signalling(self):
        self.server.write_conf("smtpd_helo_requird = yes\n")
        r = self.server.cmd("reload", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 1)
        self.assertIn("smtpd_helo_requird", r.stderr.decode())
        time.sleep(0.3)
        self.assertNotIn("reload: reading", self.server.log())

    def test_not_running_exits_1(self):
        self.server.stop()
        r = self.server.cmd("reload", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not running", r.stderr.decode())


@unittest.skipUnless(os.geteuid() == 0, "privilege separation needs root")
class ReloadVerbAsRoot(ReloadVerb):
    """The same as root: the answer file sits in the root-only pid
    directory, and the verb trusts only a file of root's there."""
    as_root = True


if __name__ == "__main__":
    unittest.main()
