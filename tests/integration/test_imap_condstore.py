"""CONDSTORE and QRESYNC (RFC 7162): RFC examples adapted, the mod-sequences
kept across a restart, a lost index and outside writers (Python's mailbox
rewriting the mbox, delivery through the daemon), flag changes of another
session reported with MODSEQ, STORE UNCHANGEDSINCE conflicts answered
with [MODIFIED], and a QRESYNC resync after another session's expunges
getting VANISHED (EARLIER) with the right UIDs. Raw lines through
imap_util.Raw, imaplib where a real client's view matters."""
import imaplib
import mailbox
import os
import re
import shutil
import unittest

from imap_util import POST_CAPS, deliver, imap_server, login, wait


def ok(out):
    return out[-1].split(" ")[1] == "OK"


def msg(i):
    return ("From: a@example.com\r\nSubject: m%d\r\nMessage-ID: <m%d@example.com>\r\n\r\nbody %d\r\n"
            % (i, i, i)).encode()


def highest(out):
    for l in out:
        m = re.search(r"\[HIGHESTMODSEQ (\d+)\]", l)
        if m:
            return int(m.group(1))
    raise AssertionError("no HIGHESTMODSEQ in %r" % out)


def uidvalidity(out):
    for l in out:
        m = re.search(r"\[UIDVALIDITY (\d+)\]", l)
        if m:
            return int(m.group(1))
    raise AssertionError(out)


def fetches(out):
    """{uid: (flags, modseq)} of the untagged FETCH lines that carry both."""
    got = {}
    for l in out:
        m = re.match(r"\* \d+ FETCH \((.*)\)$", l)
        if not m:
            continue
        body = m.group(1)
        u = re.search(r"UID (\d+)", body)
        ms = re.search(r"MODSEQ \((\d+)\)", body)
        fl = re.search(r"FLAGS \(([^)]*)\)", body)
        if u and ms:
            flags = fl.group(1).replace("\\Recent", "").replace("  ", " ").strip() if fl else None
            got[int(u.group(1))] = (flags, int(ms.group(1)))
    return got


class CondStore(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self)

    def session(self, user="alice"):
        r = login(self.server, user)
        self.addCleanup(r.close)
        return r

    def append(self, r, box, data, flags=""):
        r.send("ap APPEND %s %s{%d+}\r\n" % (box, flags + " " if flags else "", len(data)))
        r.send(data + b"\r\n")
        out = r.until_tag("ap")
        self.assertTrue(ok(out), out)

    def fill(self, r, box, n):
        self.assertTrue(ok(r.cmd("c0", "CREATE %s" % box)))
        for i in range(n):
            self.append(r, box, msg(i + 1))

    def modseqs(self, r, box_selected_set="1:*"):
        out = r.cmd("fm", "UID FETCH %s (MODSEQ)" % box_selected_set)
        self.assertTrue(ok(out), out)
        return {u: ms for u, (_, ms) in fetches(out).items()}

    # ---- capabilities, ENABLE, SELECT ----

    def test_capabilities(self):
        r = self.session()
        caps = r.cmd("c", "CAPABILITY")[0].split()[2:]
        self.assertEqual(" ".join(caps), POST_CAPS)
        self.assertIn("CONDSTORE", caps)
        self.assertIn("QRESYNC", caps)

    def test_enable(self):
        r = self.session()
        out = r.cmd("e1", "ENABLE CONDSTORE")
        self.assertEqual(out[0], "* ENABLED CONDSTORE")
        # QRESYNC implies CONDSTORE (already on: not named again)
        out = r.cmd("e2", "ENABLE QRESYNC CONDSTORE X-UNKNOWN")
        self.assertEqual(out[0], "* ENABLED QRESYNC")
        out = r.cmd("e3", "ENABLE QRESYNC")
        self.assertEqual(out[0], "* ENABLED")

    def test_select_reports_highestmodseq(self):
        r = self.session()
        self.fill(r, "box", 2)
        out = r.cmd("s", "SELECT box (CONDSTORE)")
        self.assertTrue(ok(out), out)
        h = highest(out)
        self.assertGreater(h, 0)
        out = r.cmd("x", "EXAMINE box")
        self.assertEqual(highest(out), h)
        out = r.cmd("st", "STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
        self.assertRegex(out[0], r"^\* STATUS INBOX \(HIGHESTMODSEQ \d+ MESSAGES 0\)$")
        # QRESYNC parameters need ENABLE QRESYNC first (RFC 7162 §3.2.5)
        out = r.cmd("q", "SELECT box (QRESYNC (1 1))")
        self.assertTrue(out[-1].startswith("q BAD"), out)
        out = r.cmd("q2", "SELECT box (BOGUS)")
        self.assertTrue(out[-1].startswith("q2 BAD"), out)

    # ---- FETCH MODSEQ / CHANGEDSINCE, STORE ----

    def test_fetch_changedsince_and_store(self):
        r = self.session()
        self.fill(r, "box", 3)
        out = r.cmd("s", "SELECT box")
        h0 = highest(out)
        ms = self.modseqs(r)
        self.assertEqual(sorted(ms), [1, 2, 3])
        self.assertTrue(all(0 < v <= h0 for v in ms.values()), (ms, h0))
        # the RFC 7162 §3.1.3 example shape: FLAGS and MODSEQ in the echo
        out = r.cmd("st", "STORE 2 +FLAGS (\\Seen)")
        self.assertTrue(ok(out), out)
        f = fetches(out)
        self.assertEqual(list(f), [2], out)
        self.assertEqual(f[2][0], "\\Seen")
        self.assertGreater(f[2][1], h0)
        # only what changed since h0
        out = r.cmd("f", "FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h0)
        self.assertEqual([l.replace(" \\Recent", "") for l in out if l.startswith("* ")],
                         ["* 2 FETCH (FLAGS (\\Seen) MODSEQ (%d))" % f[2][1]])
        out = r.cmd("f2", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % f[2][1])
        self.assertEqual([l for l in out if l.startswith("* ")], [])
        # a STORE that changes nothing keeps the mod-sequence
        r.cmd("st2", "STORE 2 +FLAGS.SILENT (\\Seen)")
        self.assertEqual(self.modseqs(r)[2], f[2][1])
        # .SILENT with CONDSTORE on still tells the MODSEQ (no FLAGS)
        out = r.cmd("st3", "STORE 3 +FLAGS.SILENT (\\Flagged)")
        self.assertRegex(out[0], r"^\* 3 FETCH \(UID 3 MODSEQ \((\d+)\)\)$")
        out = r.cmd("s2", "STATUS box (HIGHESTMODSEQ)")
        self.assertGreater(int(re.search(r"HIGHESTMODSEQ (\d+)", out[0]).group(1)), f[2][1])
        out = r.cmd("bad", "FETCH 1 (FLAGS) (CHANGEDSINCE x)")
        self.assertTrue(out[-1].startswith("bad BAD"), out)
        out = r.cmd("bad2", "UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)")
        self.assertTrue(out[-1].startswith("bad2 BAD"), out)   # QRESYNC not enabled

    def test_unchangedsince_conflict_gives_modified(self):
        a = self.session()
        self.fill(a, "box", 4)
        a.cmd("s", "SELECT box")
        ms = self.modseqs(a)
        b = self.session()
        b.cmd("s", "SELECT box")
        b.cmd("st", "STORE 2 +FLAGS (\\Answered)")
        # RFC 7162 §3.1.3 example 9: 2 changed since a looked -> MODIFIED
        top = max(ms.values())
        out = a.cmd("c", "STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % top)
        self.assertTrue(ok(out), out)
        self.assertIn("[MODIFIED 2]", out[-1])
        f = fetches(out)
        self.assertIn("\\Flagged", f[1][0])
        self.assertIn("\\Flagged", f[3][0])
        self.assertNotIn("\\Flagged", (f.get(2) or ("",))[0] or "")
        out = a.cmd("f", "FETCH 2 (FLAGS)")
        self.assertIn("\\Answered", out[0])
        self.assertNotIn("\\Flagged", out[0])
        # UID STORE names UIDs; UNCHANGEDSINCE 0 always fails
        out = a.cmd("c2", "UID STORE 2,4 (UNCHANGEDSINCE 0) FLAGS (\\Deleted)")
        self.assertIn("[MODIFIED 2,4]", out[-1])
        out = a.cmd("f2", "FETCH 2,4 (FLAGS)")
        self.assertFalse(any("\\Deleted" in l for l in out), out)
        # FLAGS x with UNCHANGEDSINCE as new as it gets: replaces them
        cur = self.modseqs(a, "2")[2]
        out = a.cmd("c3", "UID STORE 2 (UNCHANGEDSINCE %d) FLAGS (\\Draft)" % cur)
        self.assertNotIn("MODIFIED", out[-1])
        self.assertEqual(fetches(out)[2][0], "\\Draft")
        out = a.cmd("bad", "STORE 1 (UNCHANGEDSINCE -1) +FLAGS (\\Seen)")
        self.assertTrue(out[-1].startswith("bad BAD"), out)

    def test_other_session_store_reported_with_modseq(self):
        a = self.session()
        self.fill(a, "box", 3)
        out = a.cmd("e", "ENABLE CONDSTORE")
        out = a.cmd("s", "SELECT box")
        h0 = highest(out)
        b = self.session()
        b.cmd("s", "SELECT box")
        b.cmd("st", "STORE 3 +FLAGS (\\Seen $Work)")
        out = a.cmd("n", "NOOP")
        f = fetches(out)
        self.assertEqual(list(f), [3], out)
        self.assertEqual(f[3][0], "\\Seen $Work")
        self.assertGreater(f[3][1], h0)
        # HIGHESTMODSEQ only grows, and a later change is higher still
        b.cmd("st2", "STORE 1 +FLAGS (\\Flagged)")
        out = a.cmd("n2", "NOOP")
        self.assertGreater(fetches(out)[1][1], f[3][1])

    def test_search_modseq(self):
        r = self.session()
        self.fill(r, "box", 4)
        out = r.cmd("s", "SELECT box")
        h0 = highest(out)
        r.cmd("st", "STORE 2,4 +FLAGS (\\Seen)")
        m = max(self.modseqs(r, "2,4").values())
        out = r.cmd("q", "SEARCH MODSEQ %d" % (h0 + 1))
        self.assertEqual(out[0], "* SEARCH 2 4 (MODSEQ %d)" % m)
        out = r.cmd("q2", 'UID SEARCH MODSEQ "/flags/\\\\Seen" all %d' % (h0 + 1))
        self.assertEqual(out[0], "* SEARCH 2 4 (MODSEQ %d)" % m)
        out = r.cmd("q3", "SEARCH RETURN (ALL) MODSEQ %d" % (h0 + 1))
        self.assertEqual(out[0], '* ESEARCH (TAG "q3") ALL 2,4 MODSEQ %d' % m)
        out = r.cmd("q4", "SEARCH MODSEQ %d" % (m + 1))
        self.assertEqual(out[0], "* SEARCH")
        out = r.cmd("q6", "SORT (REVERSE SUBJECT) UTF-8 MODSEQ %d" % (h0 + 1))
        self.assertEqual(out[0], "* SORT 4 2 (MODSEQ %d)" % m)
        # a FETCH that sets \Seen tells the change's UID and MODSEQ (§3.1)
        out = " ".join(r.cmd("b", "FETCH 1 (BODY[TEXT])"))
        self.assertIn("FLAGS (\\Seen", out)
        self.assertGreater(int(re.search(r"UID 1 MODSEQ \((\d+)\)", out).group(1)), m)
        out = r.cmd("q5", "SEARCH MODSEQ x")
        self.assertTrue(out[-1].startswith("q5 BAD"), out)

    # ---- QRESYNC ----

    def test_qresync_resync_after_other_session_expunges(self):
        a = self.session()
        self.fill(a, "box", 8)
        a.cmd("e", "ENABLE QRESYNC")
        out = a.cmd("s", "SELECT box")
        uv, h0 = uidvalidity(out), highest(out)
        a.cmd("lo", "LOGOUT")
        # another session expunges 2, 5, 6 and changes 3's flags
        b = self.session()
        b.cmd("s", "SELECT box")
        b.cmd("d", "UID STORE 2,5:6 +FLAGS.SILENT (\\Deleted)")
        b.cmd("x", "EXPUNGE")
        b.cmd("f", "UID STORE 3 +FLAGS (\\Flagged)")
        b.cmd("lo", "LOGOUT")
        c = self.session()
        c.cmd("e", "ENABLE QRESYNC")
        out = c.cmd("s", "SELECT box (QRESYNC (%d %d 1:8))" % (uv, h0))
        self.assertTrue(ok(out), out)
        self.assertIn("* VANISHED (EARLIER) 2,5:6", out)
        f = fetches(out)
        self.assertEqual(sorted(f), [3], out)
        self.assertEqual(f[3][0], "\\Flagged")
        self.assertGreater(highest(out), h0)
        self.assertLess(out.index("* VANISHED (EARLIER) 2,5:6"),
                        [i for i, l in enumerate(out) if "FETCH" in l][0])
        # known-uids narrow both; without them all UIDs below UIDNEXT count
        out = c.cmd("s2", "SELECT box (QRESYNC (%d %d 1:4 (1:3 1:3)))" % (uv, h0))
        self.assertIn("* OK [CLOSED] Previous mailbox closed.", out)
        self.assertIn("* VANISHED (EARLIER) 2", out)
        out = c.cmd("s3", "EXAMINE box (QRESYNC (%d %d))" % (uv, h0))
        self.assertIn("* VANISHED (EARLIER) 2,5:6", out)
        # the UID FETCH form (RFC 7162 §3.2.6)
        out = c.cmd("f", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)
        self.assertIn("* VANISHED (EARLIER) 2,5:6", out)
        self.assertEqual(sorted(fetches(out)), [3])
        # a wrong UIDVALIDITY: a plain select, nothing resynced
        out = c.cmd("s4", "SELECT box (QRESYNC (%d %d 1:8))" % (uv + 1, h0))
        self.assertTrue(ok(out), out)
        self.assertFalse(any("VANISHED" in l or "FETCH" in l for l in out), out)

    def test_qresync_select_fetches_every_change_in_order(self):
        # SELECT lists the changed messages while it loads the view, up to
        # a bound (64); past it the view is walked. Both give every change,
        # in sequence order, with the known-uids filter applied.
        a = self.session()
        self.fill(a, "box", 90)
        a.cmd("e", "ENABLE QRESYNC")
        out = a.cmd("s", "SELECT box")
        uv, h0 = uidvalidity(out), highest(out)
        a.cmd("lo", "LOGOUT")
        for n, known in ((5, ""), (64, ""), (65, ""), (80, " 1:40")):
            b = self.session()
            b.cmd("s", "SELECT box")
            self.assertTrue(ok(b.cmd("f", "UID STORE 1:%d +FLAGS.SILENT (\\Flagged)" % n)))
            b.cmd("lo", "LOGOUT")
            c = self.session()
            c.cmd("e", "ENABLE QRESYNC")
            out = c.cmd("s", "SELECT box (QRESYNC (%d %d%s))" % (uv, h0, known))
            self.assertTrue(ok(out), out)
            want = list(range(1, (40 if known else n) + 1))
            got = [int(re.search(r"UID (\d+)", l).group(1)) for l in out if " FETCH " in l]
            self.assertEqual(got, want, (n, known))
            c.cmd("lo", "LOGOUT")

    def test_qresync_expunge_gives_vanished(self):
        a = self.session()
        self.fill(a, "box", 5)
        a.cmd("e", "ENABLE QRESYNC")
        a.cmd("s", "SELECT box")
        a.cmd("d", "STORE 2,4 +FLAGS.SILENT (\\Deleted)")
        out = a.cmd("x", "EXPUNGE")
        self.assertEqual([l for l in out if l.startswith("* ")], ["* VANISHED 2,4"])
        self.assertRegex(out[-1], r"^x OK \[HIGHESTMODSEQ \d+\] Expunge completed")
        h = highest(out[-1:])
        # UID EXPUNGE only the named ones
        a.cmd("d2", "UID STORE 1,3 +FLAGS.SILENT (\\Deleted)")
        out = a.cmd("x2", "UID EXPUNGE 3")
        self.assertEqual([l for l in out if l.startswith("* ")], ["* VANISHED 3"])
        self.assertGreater(highest(out[-1:]), h)
        # another session's expunge reaches us as VANISHED, not EXPUNGE
        b = self.session()
        b.cmd("s", "SELECT box")
        b.cmd("x", "EXPUNGE")
        out = a.cmd("n", "NOOP")
        self.assertIn("* VANISHED 1", out)
        self.assertFalse(any(l.endswith(" EXPUNGE") for l in out), out)
        out = a.cmd("f", "UID FETCH 1:* (UID)")
        self.assertEqual([l for l in out if l.startswith("* ")], ["* 1 FETCH (UID 5)"])

    # ---- persistence ----

    def state(self, r, box):
        out = r.cmd("s", "EXAMINE %s" % box)
        return uidvalidity(out), highest(out), self.modseqs(r)

    def test_survives_restart_and_lost_index(self):
        r = self.session()
        self.fill(r, "box", 4)
        r.cmd("s", "SELECT box")
        r.cmd("st", "STORE 1,3 +FLAGS (\\Seen)")
        before = self.state(r, "box")
        r.cmd("lo", "LOGOUT")
        self.server.stop()
        self.server.start()
        r = self.session()
        self.assertEqual(self.state(r, "box"), before)
        r.cmd("lo", "LOGOUT")
        # without the index, UIDVALIDITY stays (X-IMAPbase) and
        # HIGHESTMODSEQ still only grows: every message counts as changed
        self.server.stop()
        shutil.rmtree(os.path.join(self.server.dir, "home", "alice", "mail", ".imap"))
        self.server.start()
        r = self.session()
        uv, h, ms = self.state(r, "box")
        self.assertEqual(uv, before[0])
        self.assertGreater(h, before[1])
        self.assertEqual(sorted(ms), [1, 2, 3, 4])
        self.assertTrue(all(v > before[1] for v in ms.values()), (ms, before))
        out = r.cmd("f", "FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % before[1])
        self.assertEqual(len(fetches(out)), 0)   # no UID asked, no UID here
        self.assertEqual(len([l for l in out if "FETCH" in l]), 4)

    # ---- outside writers ----

    def test_external_writer_and_delivery(self):
        deliver(self.server, "alice@example.com.ar", subject="one", n_expected=1)
        deliver(self.server, "alice@example.com.ar", subject="two", n_expected=2)
        a = self.session()
        a.cmd("e", "ENABLE CONDSTORE")
        out = a.cmd("s", "SELECT INBOX")
        h0 = highest(out)
        ms0 = self.modseqs(a)
        self.assertEqual(sorted(ms0), [1, 2])
        # a delivery while the session is open: a new, higher modseq
        deliver(self.server, "alice@example.com.ar", subject="three", n_expected=3)
        self.assertTrue(wait(lambda: "* 3 EXISTS" in a.cmd("n", "NOOP")))
        ms1 = self.modseqs(a)
        self.assertGreater(ms1[3], h0)
        self.assertEqual(ms1[1], ms0[1])
        out = a.cmd("s2", "STATUS INBOX (HIGHESTMODSEQ)")
        h1 = int(re.search(r"HIGHESTMODSEQ (\d+)", out[0]).group(1))
        self.assertGreaterEqual(h1, ms1[3])
        # mailx-like: Python's mailbox rewrites the file, flagging message 2
        path = self.server.mbox_path("alice")
        st = os.stat(path)
        box = mailbox.mbox(path, create=False)
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
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, st.st_mode & 0o7777)
        out = a.cmd("n2", "NOOP")
        f = fetches(out)
        self.assertEqual(sorted(f), [2], out)
        self.assertIn("\\Seen", f[2][0])
        self.assertIn("\\Flagged", f[2][0])
        self.assertGreater(f[2][1], h1)
        out = a.cmd("f", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h1)
        self.assertEqual(sorted(fetches(out)), [2], out)
        ms2 = self.modseqs(a)
        self.assertEqual(ms2[1], ms0[1])
        self.assertEqual(ms2[3], ms1[3])

    def test_imaplib_client(self):
        c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        self.addCleanup(c.shutdown)
        c.login("alice", "secret")
        c.create("box")
        for i in range(3):
            c.append("box", None, None, msg(i + 1))
        typ, data = c.enable("QRESYNC")
        self.assertEqual(typ, "OK")
        typ, data = c.select("box")
        self.assertEqual(typ, "OK")
        typ, data = c.response("HIGHESTMODSEQ")
        h0 = int(data[0])
        typ, data = c.uid("STORE", "1:3", "+FLAGS.SILENT", "(\\Seen)")
        self.assertEqual(typ, "OK")
        typ, data = c.uid("FETCH", "1:*", "(FLAGS)", "(CHANGEDSINCE %d)" % h0)
        self.assertEqual(typ, "OK")
        self.assertEqual(len([d for d in data if d and b"MODSEQ" in d]), 3, data)


if __name__ == "__main__":
    unittest.main()
