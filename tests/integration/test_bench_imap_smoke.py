"""Keeps tests/bench/imap/bench.py from rotting: its --smoke mode (60
messages, one round, a few seconds) must run every phase and print every
row. It measures nothing worth reading and asserts no figure: the
benchmark itself is `tests/bench/imap/run.sh` (see tests/bench/RESULTS.md).
The side-by-side run needs Dovecot (scripts/deps.sh bench) and is skipped
without it; the Postern-only run needs nothing more than the build."""
import os
import subprocess
import sys
import unittest

import harness

BENCH = os.path.join(harness.SRC, "tests", "bench", "imap", "bench.py")
DOVECOT = ("/usr/sbin/dovecot", "/usr/lib/dovecot/imap", "/usr/lib/dovecot/pop3", "/usr/lib/dovecot/dovecot-lda")

ROWS = ("first LOGIN+SELECT", "LOGIN+SELECT again (warm", "FETCH 1:*", "SEARCH BODY", "SEARCH HEADER Message-ID",
        "SEARCH FROM", "SORT (ARRIVAL)", "SORT (SUBJECT)", "SORT (FROM)", "THREAD REFERENCES",
        "STORE 1:60 +FLAGS.SILENT", "SELECT INBOX (QRESYNC", "POP3 cold", "IDLE: writer's close",
        "IDLE: writer's first write", "PSS per idle IMAP session")


def dovecot_usable():
    return all(os.access(p, os.X_OK) for p in DOVECOT)


@unittest.skipUnless(os.geteuid() == 0, "the bench runs the servers as root")
class BenchSmoke(unittest.TestCase):
    def run_smoke(self, servers):
        user = harness.throwaway_user("ptb", cleanup=self.addCleanup)
        owner = harness.throwaway_user("ptm", system=True, cleanup=self.addCleanup)
        # Dovecot's internal and login users are the test's own too: a
        # fresh machine has no dovecot/dovenull unless its package made them.
        dovecot = [harness.throwaway_user(p, system=True, cleanup=self.addCleanup) for p in ("ptdi", "ptdl")]
        r = subprocess.run([sys.executable, BENCH, "--postern", harness.BIN, "--modules", harness.MODULES,
                            "--smoke", "--servers", servers, "--user", user, "--mail-owner", owner,
                            "--dovecot-users", ",".join(dovecot)],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        for row in ROWS:
            self.assertIn("| " + row, r.stdout, "row missing:\n" + r.stdout)
        return r.stdout

    def test_postern_alone(self):
        self.run_smoke("postern")

    @unittest.skipUnless(dovecot_usable(), "Dovecot missing: scripts/deps.sh bench")
    def test_side_by_side(self):
        out = self.run_smoke("dovecot,postern")
        # Both servers answered the same SORT/THREAD/SEARCH on the threaded folder.
        self.assertIn("Answers compared with Dovecot's", out)
        self.assertNotIn("differs", out)


if __name__ == "__main__":
    unittest.main()
