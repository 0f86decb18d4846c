"""Lazy flag writes (issue 15): STORE puts a flag change into the flag log
beside the index at once and into the mbox's Status/X-Status headers at
the next write of the file (EXPUNGE, the close of a read-write open, ...).
Pinned here: a kill -9 of the whole daemon right after STORE loses no
change; an outside writer appending to the mbox keeps both its message
and the pending change; one rewriting the file wins for the message it
changed and for no other; POP3 sees and keeps IMAP's pending changes; the
mbox holds them once the session is gone. Also QRESYNC's VANISHED
(EARLIER) exact across a restart (the expunged UIDs are kept with their
mod-sequences), and the superset again once that list is lost."""
import mailbox
import os
import poplib
import re
import shutil
import unittest

from harness import Server, wait_for
from imap_util import deliver, login

TIMEOUT = 20


def ok(out):
    return out[-1].split(" ")[1] == "OK"


def flags_of(out):
    """{seq: set of flags} from untagged FETCH lines with FLAGS."""
    got = {}
    for l in out:
        m = re.match(r"\* (\d+) FETCH \(.*FLAGS \(([^)]*)\)", l)
        if m:
            got[int(m.group(1))] = set(m.group(2).split()) - {"\\Recent"}
    return got


def code(out, name):
    for l in out:
        m = re.search(r"\[%s (\d+)\]" % name, l)
        if m:
            return int(m.group(1))
    raise AssertionError("no %s in %r" % (name, out))


class LazyFlags(unittest.TestCase):
    def setUp(self):
        s = Server(modules=("mbox", "smtp", "imap", "pop3"), listeners=("smtpd", "imap", "pop3"))
        s.write_conf("passdb = passwd-file:%s\nauth_mechanisms = plain login\n"
                     "auth_failure_delay = 0s\nsmtpd_client_name_timeout = 0\n" % s.passwd_file)
        self.addCleanup(s.cleanup)
        s.start()
        self.server = s
        for i in range(3):
            deliver(s, "alice@example.com.ar", subject="m%d" % (i + 1), n_expected=i + 1)
        self.box = s.mbox_path("alice")
        self.idx = os.path.join(s.dir, "home", "alice", "mail", ".imap", "INBOX")

    def session(self):
        r = login(self.server, "alice")
        self.addCleanup(r.close)
        return r

    def mbox_headers(self):
        """Per message (file order): {Status, X-Status} as the file says."""
        box = mailbox.mbox(self.box, create=False)
        try:
            return [(m.get("Subject"), m.get("Status", ""), m.get("X-Status", "")) for m in box]
        finally:
            box.close()

    def flags(self, r, tag="f"):
        out = r.cmd(tag, "FETCH 1:* (FLAGS)")
        self.assertTrue(ok(out), out)
        return flags_of(out)

    def test_store_is_lazy_and_survives_kill9(self):
        r = self.session()
        self.assertTrue(ok(r.cmd("s", "SELECT INBOX")))
        before = os.stat(self.box)
        self.assertTrue(ok(r.cmd("st", "STORE 1 +FLAGS.SILENT (\\Flagged)")))
        self.assertTrue(ok(r.cmd("st2", "STORE 2 +FLAGS.SILENT (\\Answered \\Seen)")))
        # the mbox is not written by STORE: the change is in the log
        after = os.stat(self.box)
        self.assertEqual((before.st_size, before.st_mtime_ns), (after.st_size, after.st_mtime_ns))
        self.assertTrue(os.path.exists(os.path.join(self.idx, "postern.flags")))
        self.assertNotIn("F", self.mbox_headers()[0][2])
        # no chance to write anything more: every process killed
        self.server.kill()
        self.server.start()
        r = self.session()
        self.assertTrue(ok(r.cmd("s", "SELECT INBOX")))
        f = self.flags(r)
        self.assertEqual(f[1], {"\\Flagged"})
        self.assertEqual(f[2], {"\\Answered", "\\Seen"})
        self.assertEqual(f[3], set())
        r.cmd("lo", "LOGOUT")
        # the session's close wrote them into the mbox, where mail(1) or
        # mutt read them, and the log is gone
        wait_for(lambda: "F" in self.mbox_headers()[0][2], TIMEOUT, what="X-Status: F in the mbox")
        h = self.mbox_headers()
        self.assertIn("A", h[1][2])
        self.assertIn("R", h[1][1])
        wait_for(lambda: not os.path.exists(os.path.join(self.idx, "postern.flags")), TIMEOUT,
                 what="the flag log removed")

    def test_outside_append_keeps_pending_change(self):
        a = self.session()
        self.assertTrue(ok(a.cmd("s", "SELECT INBOX")))
        self.assertTrue(ok(a.cmd("st", "STORE 1 +FLAGS.SILENT (\\Flagged)")))
        # an outside program appends under the mbox lock (dotlock+fcntl)
        st = os.stat(self.box)
        box = mailbox.mbox(self.box, create=False)
        box.lock()
        try:
            box.add(mailbox.mboxMessage("From: x@example.com\nSubject: outside\n\nhi\n"))
            box.flush()
        finally:
            box.unlock()
            box.close()
        os.chown(self.box, st.st_uid, st.st_gid)
        out = a.cmd("n", "NOOP")
        self.assertIn("* 4 EXISTS", out)
        b = self.session()
        self.assertTrue(ok(b.cmd("s", "SELECT INBOX")))
        f = self.flags(b)
        self.assertEqual(f[1], {"\\Flagged"})
        self.assertEqual(f[4], set())
        b.cmd("lo", "LOGOUT")
        a.cmd("lo", "LOGOUT")
        wait_for(lambda: "F" in self.mbox_headers()[0][2], TIMEOUT, what="X-Status: F in the mbox")
        self.assertEqual([h[0] for h in self.mbox_headers()], ["m1", "m2", "m3", "outside"])

    def test_outside_rewrite_wins_only_where_it_changed(self):
        a = self.session()
        self.assertTrue(ok(a.cmd("s", "SELECT INBOX")))
        self.assertTrue(ok(a.cmd("st", "STORE 1 +FLAGS.SILENT (\\Flagged)")))
        self.assertTrue(ok(a.cmd("st2", "STORE 2 +FLAGS.SILENT (\\Answered)")))
        # an outside program (mutt-like) rewrites the file, marking
        # message 2 read and flagged from what the file said (it never saw
        # our \Answered)
        st = os.stat(self.box)
        box = mailbox.mbox(self.box, create=False)
        box.lock()
        try:
            keys = box.keys()
            m = box[keys[1]]
            m.add_flag("RF")
            box[keys[1]] = m
            box.flush()
        finally:
            box.unlock()
            box.close()
        os.chown(self.box, st.st_uid, st.st_gid)
        os.chmod(self.box, st.st_mode & 0o7777)
        b = self.session()
        self.assertTrue(ok(b.cmd("s", "SELECT INBOX")))
        f = self.flags(b)
        self.assertEqual(f[1], {"\\Flagged"})               # ours, untouched there
        self.assertEqual(f[2], {"\\Seen", "\\Flagged"})     # theirs
        out = a.cmd("n", "NOOP")
        self.assertEqual(flags_of(out).get(2), {"\\Seen", "\\Flagged"}, out)
        b.cmd("lo", "LOGOUT")
        a.cmd("lo", "LOGOUT")
        wait_for(lambda: "F" in self.mbox_headers()[0][2], TIMEOUT, what="X-Status: F in the mbox")
        self.assertNotIn("A", self.mbox_headers()[1][2])

    def test_pop3_sees_and_keeps_pending_changes(self):
        a = self.session()
        self.assertTrue(ok(a.cmd("s", "SELECT INBOX")))
        self.assertTrue(ok(a.cmd("st", "STORE 1 +FLAGS.SILENT (\\Flagged)")))
        self.assertTrue(ok(a.cmd("st2", "STORE 3 +FLAGS.SILENT (\\Deleted)")))
        p = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=TIMEOUT)
        p.user("alice")
        p.pass_("secret")
        self.assertEqual(p.stat()[0], 3)
        p.retr(2)
        p.quit()
        # POP3 marked 2 read at QUIT, keeping IMAP's pending \Flagged
        out = a.cmd("n", "NOOP")
        self.assertEqual(flags_of(out).get(2), {"\\Seen"}, out)
        f = self.flags(a)
        self.assertEqual(f[1], {"\\Flagged"})
        self.assertEqual(f[3], {"\\Deleted"})
        a.cmd("lo", "LOGOUT")
        wait_for(lambda: "F" in self.mbox_headers()[0][2], TIMEOUT, what="X-Status: F in the mbox")
        h = self.mbox_headers()
        self.assertIn("R", h[1][1])
        self.assertIn("D", h[2][2])


class ExactVanished(unittest.TestCase):
    def setUp(self):
        s = Server(modules=("mbox", "smtp", "imap"), listeners=("smtpd", "imap"))
        s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n" % s.passwd_file)
        self.addCleanup(s.cleanup)
        s.start()
        self.server = s

    def session(self):
        r = login(self.server, "alice")
        self.addCleanup(r.close)
        return r

    def test_vanished_exact_across_restart(self):
        r = self.session()
        self.assertTrue(ok(r.cmd("c", "CREATE box")))
        for i in range(10):
            data = b"Subject: m%d\r\n\r\nbody\r\n" % i
            r.send("ap APPEND box {%d+}\r\n" % len(data))
            r.send(data + b"\r\n")
            self.assertTrue(ok(r.until_tag("ap")))
        r.cmd("e", "ENABLE QRESYNC")
        out = r.cmd("s", "SELECT box")
        uv, h0 = code(out, "UIDVALIDITY"), code(out, "HIGHESTMODSEQ")
        r.cmd("d", "UID STORE 3:4 +FLAGS.SILENT (\\Deleted)")
        out = r.cmd("x", "EXPUNGE")
        h1 = code(out, "HIGHESTMODSEQ")
        r.cmd("d2", "UID STORE 7 +FLAGS.SILENT (\\Deleted)")
        out = r.cmd("x2", "EXPUNGE")
        h2 = code(out, "HIGHESTMODSEQ")
        self.assertLess(h0, h1)
        self.assertLess(h1, h2)
        r.cmd("lo", "LOGOUT")
        self.server.stop()
        self.server.start()
        c = self.session()
        c.cmd("e", "ENABLE QRESYNC")
        # only what was expunged since the client's mod-sequence
        out = c.cmd("s", "SELECT box (QRESYNC (%d %d))" % (uv, h1))
        self.assertTrue(ok(out), out)
        self.assertEqual([l for l in out if l.startswith("* VANISHED")], ["* VANISHED (EARLIER) 7"])
        out = c.cmd("s2", "SELECT box (QRESYNC (%d %d))" % (uv, h0))
        self.assertEqual([l for l in out if l.startswith("* VANISHED")], ["* VANISHED (EARLIER) 3:4,7"])
        out = c.cmd("s3", "SELECT box (QRESYNC (%d %d))" % (uv, h2))
        self.assertEqual([l for l in out if l.startswith("* VANISHED")], [])
        # known-uids narrow it further
        out = c.cmd("s4", "SELECT box (QRESYNC (%d %d 1:3))" % (uv, h0))
        self.assertEqual([l for l in out if l.startswith("* VANISHED")], ["* VANISHED (EARLIER) 3"])
        out = c.cmd("f", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h1)
        self.assertEqual([l for l in out if l.startswith("* VANISHED")], ["* VANISHED (EARLIER) 7"])
        c.cmd("lo", "LOGOUT")
        # the list lost with the index: every missing UID again (a
        # superset RFC 7162 allows), never fewer
        self.server.stop()
        shutil.rmtree(os.path.join(self.server.dir, "home", "alice", "mail", ".imap"))
        self.server.start()
        c = self.session()
        c.cmd("e", "ENABLE QRESYNC")
        out = c.cmd("s", "SELECT box (QRESYNC (%d %d))" % (uv, h1))
        self.assertEqual([l for l in out if l.startswith("* VANISHED")], ["* VANISHED (EARLIER) 3:4,7"])


if __name__ == "__main__":
    unittest.main()
