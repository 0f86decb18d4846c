"""IDLE on a big folder (issue 15): a delivery reaching an idling session
must cost that session the new mail, not the folder. It used to rewrite
the folder's whole index (postern.index, 112 bytes a message) at every
delivery and walk the whole view before the EXISTS went out; now the new
records go to the append log beside the index (postern.tail) and the
view only grows.

Pinned here on a folder of 3,000 messages with two sessions idling on
it: over several deliveries through SMTP the index file stays the same
file (inode, size, mtime) and the log grows by one small batch per
delivery; both sessions see every new message with the same UID and
MODSEQ, and exactly one of them got its \\Recent; a new session, and
one after a restart of the daemon, see the same UIDs, flags, MODSEQs
and HIGHESTMODSEQ, without \\Recent; the mbox itself carries the X-UIDs
(a lost index and log give back the same UIDs)."""
import mailbox
import os
import re
import time
import unittest

from harness import Server
from imap_util import Raw, deliver

BIG = 3000
DELIVERIES = 6


class IdleScale(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        s = Server(modules=("mbox", "smtp", "imap"), listeners=("smtpd", "imap"))
        s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n"
                     "smtpd_client_name_timeout = 0\n" % s.passwd_file)
        self.addCleanup(s.cleanup)
        s.start()
        self.server = s
        # the first message through SMTP makes the mbox with its owner;
        # the rest written straight into it (the daemon is idle)
        deliver(s, "alice@example.com.ar", subject="first", n_expected=1)
        self.box = s.mbox_path("alice")
        with open(self.box, "ab") as f:
            for i in range(BIG - 1):
                f.write(b"From old@example.com Thu Jan  1 00:00:00 2026\n"
                        b"From: old@example.com\nSubject: old %d\n\nold body %d\n\n" % (i, i))
        idxdir = os.path.join(s.dir, "home", "alice", "mail", ".imap", "INBOX")
        self.index = os.path.join(idxdir, "postern.index")
        self.tail = os.path.join(idxdir, "postern.tail")

    def session(self):
        r = Raw(self.server.ports["imap"], timeout=30)
        r.line()
        self.assertTrue(r.cmd("L", "LOGIN alice secret")[-1].startswith("L OK"))
        self.assertTrue(r.cmd("E", "ENABLE CONDSTORE")[-1].startswith("E OK"))
        self.addCleanup(r.close)
        return r

    def select(self, r):
        out = r.cmd("S", "SELECT INBOX")
        self.assertTrue(out[-1].startswith("S OK"), out)
        n = max(int(m.group(1)) for m in (re.match(r"\* (\d+) EXISTS", l) for l in out) if m)
        hms = int(re.search(r"HIGHESTMODSEQ (\d+)", " ".join(out)).group(1))
        return n, hms

    def fetch(self, r, first):
        """{uid: (flags, modseq)} of messages first:*, \\Recent kept."""
        out = r.cmd("F", "FETCH %d:* (UID FLAGS MODSEQ)" % first)
        self.assertTrue(out[-1].startswith("F OK"), out)
        got = {}
        for l in out:
            m = re.match(r"\* \d+ FETCH \(.*UID (\d+)", l)
            if m:
                flags = frozenset(re.search(r"FLAGS \(([^)]*)\)", l).group(1).split())
                got[int(m.group(1))] = (flags, int(re.search(r"MODSEQ \((\d+)\)", l).group(1)))
        return got

    def index_id(self):
        st = os.stat(self.index)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def tail_size(self):
        try:
            return os.stat(self.tail).st_size
        except FileNotFoundError:
            return 0

    def wait_exists(self, r, n):
        end = time.time() + 20
        while time.time() < end:
            m = re.match(r"\* (\d+) EXISTS", r.line())
            if m and int(m.group(1)) >= n:
                return
        self.fail("no EXISTS %d" % n)

    def idle(self, r):
        r.send("i IDLE\r\n")
        self.assertEqual(r.line(), "+ idling")

    def done(self, r):
        r.send("DONE\r\n")
        out = r.until_tag("i")
        self.assertTrue(out[-1].startswith("i OK"), out)

    def test_deliveries_into_big_idling_folder(self):
        a, b = self.session(), self.session()
        self.assertEqual(self.select(a)[0], BIG)
        self.assertEqual(self.select(b)[0], BIG)
        before = self.index_id()
        self.idle(a)
        self.idle(b)
        grow = []
        for k in range(DELIVERIES):
            t0 = self.tail_size()
            deliver(self.server, "alice@example.com.ar", subject="idle %d" % k)
            self.wait_exists(a, BIG + k + 1)
            self.wait_exists(b, BIG + k + 1)
            # the index file is neither replaced nor rewritten; the log
            # grows by one small batch (the new record, the first one's)
            self.assertEqual(self.index_id(), before, "delivery %d rewrote the index" % k)
            grow.append(self.tail_size() - t0)
        self.assertTrue(all(0 < g < 2048 for g in grow), grow)
        self.done(a)
        self.done(b)
        seen_a, seen_b = self.fetch(a, BIG + 1), self.fetch(b, BIG + 1)
        self.assertEqual(len(seen_a), DELIVERIES)
        strip = lambda d: {u: (f - {"\\Recent"}, q) for u, (f, q) in d.items()}
        self.assertEqual(strip(seen_a), strip(seen_b))
        uids = sorted(seen_a)
        self.assertEqual(uids, list(range(uids[0], uids[0] + DELIVERIES)))
        # \Recent: each new message to exactly one of the two sessions
        for u in uids:
            n_recent = ("\\Recent" in seen_a[u][0]) + ("\\Recent" in seen_b[u][0])
            self.assertEqual(n_recent, 1, "UID %d: %s / %s" % (u, seen_a[u], seen_b[u]))
        # mod-sequences: one per delivery, increasing
        mods = [seen_a[u][1] for u in uids]
        self.assertEqual(mods, sorted(set(mods)))
        hms = self.select(a)[1]
        self.assertGreaterEqual(hms, mods[-1])
        want = strip(seen_a)
        # a new session: the same, and \Recent is gone for good
        c = self.session()
        self.assertEqual(self.select(c), (BIG + DELIVERIES, hms))
        self.assertEqual(self.fetch(c, BIG + 1), want)
        old = self.fetch(c, 1)
        # the mbox carries the UIDs itself
        box = mailbox.mbox(self.box, create=False)
        self.assertEqual([int(m["X-UID"].split()[0]) for m in box][-DELIVERIES:], uids)
        for r in (a, b, c):
            r.cmd("o", "LOGOUT")
        # a restart: index, append log and mbox give the same list back
        self.server.stop()
        self.server.start()
        d = self.session()
        self.assertEqual(self.select(d), (BIG + DELIVERIES, hms))
        self.assertEqual(self.fetch(d, 1), old)
        out = d.cmd("U", "STATUS INBOX (UIDNEXT)")
        self.assertIn("UIDNEXT %d" % (uids[-1] + 1), " ".join(out))
        # one more delivery after the restart continues the log's chain
        deliver(self.server, "alice@example.com.ar", subject="after restart")
        self.idle(d)
        self.wait_exists(d, BIG + DELIVERIES + 1)
        self.done(d)
        last = self.fetch(d, BIG + DELIVERIES + 1)
        self.assertEqual(list(last), [uids[-1] + 1])
        self.assertIn("\\Recent", list(last.values())[0][0])
        self.assertGreater(list(last.values())[0][1], hms)
        d.cmd("o", "LOGOUT")
        # index and log lost: the UIDs come back from the mbox
        self.server.stop()
        os.unlink(self.index)
        if os.path.exists(self.tail):
            os.unlink(self.tail)
        self.server.start()
        e = self.session()
        self.assertEqual(self.select(e)[0], BIG + DELIVERIES + 1)
        self.assertEqual(sorted(self.fetch(e, 1)), sorted(old) + [uids[-1] + 1])
        e.cmd("o", "LOGOUT")


if __name__ == "__main__":
    unittest.main()
