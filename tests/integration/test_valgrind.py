"""No leaks and no memory errors in the daemon's steady state: the master,
the worker and the delivery agent run under valgrind while mail flows
(SMTP, restrictions, alias fan-out, mbox delivery), then stop on SIGTERM.
Skipped in the sanitizer build (valgrind and ASan do not mix)."""
import glob
import os
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
import unittest

from harness import BIN, SANITIZE, Server, port_open, wait_for


@unittest.skipIf(SANITIZE, "the ASan build is checked by ASan itself")
@unittest.skipUnless(shutil.which("valgrind"), "valgrind not installed")
class ValgrindTest(unittest.TestCase):
    def test_no_leaks_or_errors_while_serving(self):
        s = Server(modules=("mbox", "alias", "transport", "restrict", "smtp"),
                   conf="smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n")
        self.addCleanup(s.cleanup)
        logdir = tempfile.mkdtemp(prefix="postern-vg-")
        os.chmod(logdir, 0o777)
        self.addCleanup(shutil.rmtree, logdir, True)
        cmd = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect",
               "--errors-for-leak-kinds=definite,indirect", "--trace-children=yes",
               "--log-file=%s/vg-%%p.log" % logdir, BIN, "run", "-c", s.conf_file]
        p = subprocess.Popen(cmd, preexec_fn=s._preexec if s.run_user else None, env=s.env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        wait_for(lambda: port_open(s.ports["smtpd"]), 120, what="daemon under valgrind")
        for i in range(10):
            with smtplib.SMTP("127.0.0.1", s.ports["smtpd"], timeout=120) as c:
                c.ehlo("client.example.com.ar")
                c.sendmail("carol@example.com.ar", ["sysadmin@example.com.ar", "bob@example.com.ar"],
                           b"Subject: t\r\n\r\nhello %d\r\n" % i)
        wait_for(lambda: len(s.messages("bob")) >= 10, 120, what="deliveries")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(120), 0)
        logs = glob.glob(os.path.join(logdir, "vg-*.log"))
        self.assertGreaterEqual(len(logs), 3, "master, worker and delivery agent each leave a report")
        for path in logs:
            with open(path) as f:
                text = f.read()
            m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
            self.assertIsNotNone(m, path)
            self.assertEqual(m.group(1), "0", text[-4000:])
            self.assertNotRegex(text, r"definitely lost: [1-9]", text[-4000:])
            self.assertNotRegex(text, r"indirectly lost: [1-9]", text[-4000:])


if __name__ == "__main__":
    unittest.main()
