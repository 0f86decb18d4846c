"""IMAP after login against mail delivered by SMTP: SELECT/EXAMINE with
Dovecot's exact lines, STORE and keywords (persisting across sessions
and a restart), EXPUNGE / UID EXPUNGE / CLOSE / UNSELECT, APPEND, COPY and
MOVE with UIDPLUS codes, two sessions on one mailbox (EXPUNGE only where
RFC 3501 allows), IDLE with a delivery, the simple commands, autologout."""
import calendar
import email.utils
import imaplib
import re
import time
import unittest

from imap_util import POST_CAPS, Raw, deliver, imap_server, login, strip_timing, wait


def st(lines):
    return [strip_timing(l) for l in lines]


class Session(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self, conf="imap_idle_notify_interval = 2s")
        for i in range(3):
            deliver(self.server, "alice@example.com.ar", subject="m%d" % i)
        self.server.wait_messages("alice", 3)

    def client(self, user="alice"):
        r = login(self.server, user)
        self.addCleanup(r.close)
        return r

    def select_lines(self, r, tag="s"):
        return st(r.cmd(tag, "SELECT INBOX"))

    def test_select_exact(self):
        r = self.client()
        out = self.select_lines(r)
        self.assertEqual(out[0], "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)")
        self.assertEqual(out[1], "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] "
                                 "Flags permitted.")
        self.assertEqual(out[2:5], ["* 3 EXISTS", "* 3 RECENT", "* OK [UNSEEN 1] First unseen."])
        self.assertRegex(out[5], r"^\* OK \[UIDVALIDITY \d+\] UIDs valid$")
        self.assertEqual(out[6], "* OK [UIDNEXT 4] Predicted next UID")
        # RFC 7162 §3.1.2.1: every SELECT of a CONDSTORE server tells it
        self.assertRegex(out[7], r"^\* OK \[HIGHESTMODSEQ [1-9]\d*\] Highest$")
        self.assertEqual(out[8:], ["s OK [READ-WRITE] Select completed."])
        # \Recent went to the first session only.
        r2 = self.client()
        self.assertIn("* 0 RECENT", self.select_lines(r2))

    def test_examine_and_readonly(self):
        r = self.client()
        out = st(r.cmd("e", "EXAMINE INBOX"))
        self.assertIn("* OK [PERMANENTFLAGS ()] Read-only mailbox.", out)
        self.assertEqual(out[-1], "e OK [READ-ONLY] Examine completed.")
        self.assertEqual(r.cmd("f", "STORE 1 +FLAGS (\\Seen)"), ["f NO Mailbox is read-only."])
        self.assertEqual(r.cmd("g", "EXPUNGE"), ["g NO Mailbox is read-only."])
        # Selecting another mailbox closes the first one.
        out = st(r.cmd("h", "SELECT INBOX"))
        self.assertEqual(out[0], "* OK [CLOSED] Previous mailbox closed.")
        self.assertEqual(out[-1], "h OK [READ-WRITE] Select completed.")

    def test_selected_state_required(self):
        r = self.client()
        for c in ("FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "EXPUNGE", "CLOSE", "UNSELECT", "COPY 1 x",
                  "UID FETCH 1 FLAGS", "CHECK", "MOVE 1 x", "SEARCH ALL"):
            self.assertEqual(r.cmd("x", c), ["x BAD No mailbox selected."], c)
        self.assertEqual(r.cmd("y", "FROB"), ["y BAD Error in IMAP command FROB: Unknown command."])
        self.assertEqual(r.cmd("y", "UID FROB 1"), ["y BAD Error in IMAP command UID: Unknown command."])

    def test_simple_commands(self):
        r = self.client()
        self.assertEqual(st(r.cmd("a", "CAPABILITY")), ["* CAPABILITY " + POST_CAPS, "a OK Capability completed."])
        self.assertEqual(st(r.cmd("b", "NOOP")), ["b OK NOOP completed."])
        self.assertEqual(st(r.cmd("c", "ID NIL")), ['* ID ("name" "Postern")', "c OK ID completed."])
        self.assertEqual(st(r.cmd("d", "ENABLE CONDSTORE")), ["* ENABLED CONDSTORE", "d OK Enabled completed."])
        self.assertEqual(st(r.cmd("d2", "ENABLE UTF8=ACCEPT")), ["* ENABLED", "d2 OK Enabled completed."])
        self.assertEqual(st(r.cmd("e", "NAMESPACE")), ['* NAMESPACE (("" "/")) NIL NIL', "e OK Namespace completed."])
        self.select_lines(r)
        self.assertEqual(st(r.cmd("f", "CHECK")), ["f OK Check completed."])
        self.assertEqual(st(r.cmd("g", "UNSELECT")), ["g OK Unselect completed."])
        self.assertEqual(r.cmd("h", "CHECK"), ["h BAD No mailbox selected."])
        self.assertEqual(st(r.cmd("i", "LOGOUT")), ["* BYE Logging out", "i OK Logout completed."])
        self.assertTrue(r.closed())

    def test_store_variants(self):
        r = self.client()
        self.select_lines(r)
        self.assertEqual(st(r.cmd("a", "STORE 1 +FLAGS (\\Seen)")),
                         ["* 1 FETCH (FLAGS (\\Seen \\Recent))", "a OK Store completed."])
        self.assertEqual(st(r.cmd("b", "STORE 1:2 FLAGS (\\Flagged \\Draft)")),
                         ["* 1 FETCH (FLAGS (\\Flagged \\Draft \\Recent))",
                          "* 2 FETCH (FLAGS (\\Flagged \\Draft \\Recent))", "b OK Store completed."])
        self.assertEqual(st(r.cmd("c", "STORE 2 -FLAGS.SILENT (\\Draft)")), ["c OK Store completed."])
        self.assertEqual(st(r.cmd("d", "UID STORE 3 +FLAGS \\Answered")),
                         ["* 3 FETCH (UID 3 FLAGS (\\Answered \\Recent))", "d OK Store completed."])
        self.assertEqual(r.cmd("e", "STORE 1 +FLAGS (\\Recent)")[0][:5], "e BAD")
        self.assertEqual(r.cmd("f", "STORE 9 +FLAGS (\\Seen)")[0][:5], "f BAD")
        self.assertEqual(st(r.cmd("g", "UID STORE 99 +FLAGS (\\Seen)")), ["g OK Store completed."])
        out = st(r.cmd("h", "FETCH 1:3 FLAGS"))
        self.assertEqual(out[:3], ["* 1 FETCH (FLAGS (\\Flagged \\Draft \\Recent))",
                                   "* 2 FETCH (FLAGS (\\Flagged \\Recent))",
                                   "* 3 FETCH (FLAGS (\\Answered \\Recent))"])

    def test_keywords_persist_across_sessions_and_restart(self):
        r = self.client()
        self.select_lines(r)
        out = st(r.cmd("k", "STORE 1 +FLAGS ($$hello NIL Junk)"))
        self.assertEqual(out[0], "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $$hello NIL Junk)")
        self.assertEqual(out[1], "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $$hello NIL "
                                 "Junk \\*)] Flags permitted.")
        self.assertEqual(out[2:], ["* 1 FETCH (FLAGS (\\Recent $$hello NIL Junk))", "k OK Store completed."])
        r.cmd("z", "LOGOUT")
        r2 = self.client()
        out = self.select_lines(r2)
        self.assertEqual(out[0], "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $$hello NIL Junk)")
        self.assertEqual(st(r2.cmd("f", "FETCH 1 FLAGS"))[0], "* 1 FETCH (FLAGS ($$hello NIL Junk))")
        r2.cmd("z", "LOGOUT")
        self.server.stop()
        self.server.start(wait_port=self.server.ports["imap"])
        r3 = self.client()
        self.select_lines(r3)
        self.assertEqual(st(r3.cmd("f", "FETCH 1 FLAGS"))[0], "* 1 FETCH (FLAGS ($$hello NIL Junk))")
        st(r3.cmd("g", "STORE 1 -FLAGS (NIL)"))
        self.assertEqual(st(r3.cmd("h", "FETCH 1 FLAGS"))[0], "* 1 FETCH (FLAGS ($$hello Junk))")

    def test_keyword_limit(self):
        r = self.client()
        self.select_lines(r)
        for i in range(0, 64, 16):
            kws = " ".join("kw%02d" % k for k in range(i, i + 16))
            self.assertEqual(st(r.cmd("a", "STORE 1 +FLAGS.SILENT (%s)" % kws))[-1], "a OK Store completed.")
        out = st(r.cmd("b", "NOOP"))
        self.assertEqual(out, ["b OK NOOP completed."])
        self.assertEqual(r.cmd("c", "STORE 2 +FLAGS (one-too-many)"),
                         ["c NO [LIMIT] Too many keywords in this mailbox (64 max)"])
        # Existing keywords still work; removing an unknown one is no error.
        self.assertEqual(st(r.cmd("d", "STORE 2 +FLAGS.SILENT (kw63)"))[-1], "d OK Store completed.")
        self.assertEqual(st(r.cmd("e", "STORE 2 -FLAGS.SILENT (nosuch)"))[-1], "e OK Store completed.")
        # The table is full: PERMANENTFLAGS no longer offers \*.
        out = st(r.cmd("f", "SELECT INBOX"))
        self.assertTrue(out[2].startswith("* OK [PERMANENTFLAGS (\\Answered"), out[2])
        self.assertTrue(out[2].endswith(" kw63)] Flags permitted."), out[2])

    def test_expunge_close_unselect(self):
        r = self.client()
        self.select_lines(r)
        r.cmd("a", "STORE 1,3 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(st(r.cmd("b", "EXPUNGE")), ["* 3 EXPUNGE", "* 1 EXPUNGE", "b OK Expunge completed."])
        self.assertEqual(st(r.cmd("c", "FETCH 1 UID"))[0], "* 1 FETCH (UID 2)")
        deliver(self.server, "alice@example.com.ar", subject="m3")
        deliver(self.server, "alice@example.com.ar", subject="m4")
        out = st(r.cmd("d", "NOOP"))
        # The one left was \Recent already: 1 + 2 new.
        self.assertEqual(out[:2], ["* 3 EXISTS", "* 3 RECENT"])
        r.cmd("e", "STORE 1:3 +FLAGS.SILENT (\\Deleted)")
        # UID EXPUNGE removes only the named \Deleted messages.
        self.assertEqual(st(r.cmd("f", "UID EXPUNGE 4")), ["* 2 EXPUNGE", "f OK Expunge completed."])
        # UNSELECT does not expunge; CLOSE does, silently.
        self.assertEqual(st(r.cmd("g", "UNSELECT")), ["g OK Unselect completed."])
        self.assertIn("* 2 EXISTS", self.select_lines(r, "h"))
        self.assertEqual(st(r.cmd("i", "CLOSE")), ["i OK Close completed."])
        self.assertIn("* 0 EXISTS", self.select_lines(r, "j"))

    def test_append_uidplus(self):
        r = self.client()
        msg = "From: a@b\r\nSubject: appended\r\n\r\nhello\r\n"
        r.send('a APPEND INBOX (\\Seen $Work) "05-Jan-2026 10:20:30 +0100" {%d}\r\n' % len(msg))
        self.assertEqual(r.line(), "+ OK")
        r.send(msg + "\r\n")
        out = st(r.until_tag("a"))
        self.assertRegex(out[-1], r"^a OK \[APPENDUID \d+ 4\] Append completed\.$")
        r.send('b APPEND INBOX {%d+}\r\n%s\r\n' % (len(msg), msg))
        self.assertRegex(st(r.until_tag("b"))[-1], r"^b OK \[APPENDUID \d+ 5\] Append completed\.$")
        r.send("c APPEND nosuch {%d+}\r\n%s\r\n" % (len(msg), msg))
        self.assertEqual(r.until_tag("c"), ["c NO [TRYCREATE] Mailbox doesn't exist: nosuch"])
        self.select_lines(r)
        out = st(r.cmd("d", "UID FETCH 4 (FLAGS INTERNALDATE BODY.PEEK[])"))
        self.assertIn("FLAGS (\\Seen \\Recent $Work)", out[0])
        # The same instant, in whatever zone the server shows it.
        m = re.search(r'INTERNALDATE "([^"]+)"', out[0])
        self.assertIsNotNone(m, out[0])
        shown = email.utils.parsedate_to_datetime(m.group(1).replace("-", " ", 2))
        self.assertEqual(shown.timestamp(), calendar.timegm((2026, 1, 5, 9, 20, 30)))

    def test_copy_and_move(self):
        r = self.client()
        r.cmd("a", "CREATE Archive")
        self.select_lines(r)
        r.cmd("b", "STORE 2 +FLAGS.SILENT (\\Flagged kw1)")
        out = st(r.cmd("c", "COPY 2:3 Archive"))
        self.assertRegex(out[-1], r"^c OK \[COPYUID \d+ 2:3 1:2\] Copy completed\.$")
        self.assertEqual(st(r.cmd("d", "COPY 1 Nowhere")), ["d NO [TRYCREATE] Mailbox doesn't exist: Nowhere"])
        out = st(r.cmd("e", "UID MOVE 1,3 Archive"))
        self.assertRegex(out[0], r"^\* OK \[COPYUID \d+ 1,3 3:4\] Moved UIDs\.$")
        self.assertEqual(out[1:], ["* 3 EXPUNGE", "* 1 EXPUNGE", "e OK Move completed."])
        self.assertEqual(st(r.cmd("f", "FETCH 1 (UID FLAGS)"))[0], "* 1 FETCH (UID 2 FLAGS (\\Flagged \\Recent kw1))")
        out = st(r.cmd("g", "STATUS Archive (MESSAGES UIDNEXT)"))
        self.assertEqual(out[0], "* STATUS Archive (MESSAGES 4 UIDNEXT 5)")
        out = st(r.cmd("h", "EXAMINE Archive"))
        self.assertIn("* 4 EXISTS", out)
        self.assertEqual(st(r.cmd("i", "UID FETCH 1 FLAGS"))[0], "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent kw1))")

    def test_two_sessions_expunge_visibility(self):
        a = self.client()
        b = self.client()
        self.select_lines(a, "s1")
        self.select_lines(b, "s2")
        a.cmd("x", "STORE 2 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(st(a.cmd("y", "EXPUNGE")), ["* 2 EXPUNGE", "y OK Expunge completed."])
        # No EXPUNGE during FETCH, STORE, SEARCH, even as UID variants.
        out = st(b.cmd("f", "FETCH 1:3 UID"))
        self.assertFalse([l for l in out if re.match(r"^\* \d+ EXPUNGE$", l)], out)
        self.assertEqual(out[0], "* 1 FETCH (UID 1)")
        out = st(b.cmd("g", "UID STORE 1 +FLAGS (\\Seen)"))
        self.assertFalse([l for l in out if re.match(r"^\* \d+ EXPUNGE$", l)], out)
        out = st(b.cmd("h", "SEARCH ALL"))
        self.assertFalse([l for l in out if re.match(r"^\* \d+ EXPUNGE$", l)], out)
        out = st(b.cmd("i", "NOOP"))
        self.assertEqual(out, ["* 2 EXPUNGE", "i OK NOOP completed."])
        # Flag changes of one session reach the other at its next command.
        a.cmd("j", "STORE 1 +FLAGS.SILENT (\\Answered)")
        out = st(b.cmd("k", "NOOP"))
        self.assertEqual(len(out), 2, out)
        self.assertRegex(out[0], r"^\* 1 FETCH \(FLAGS \(.*\\Answered.*\)\)$")
        self.assertEqual(out[1], "k OK NOOP completed.")

    def test_idle_push(self):
        r = self.client()
        self.select_lines(r)
        r.send("i IDLE\r\n")
        self.assertEqual(r.line(), "+ idling")
        deliver(self.server, "alice@example.com.ar", subject="pushed")
        self.assertEqual(r.line(), "* 4 EXISTS")
        self.assertEqual(r.line(), "* 4 RECENT")
        self.assertEqual(r.line(), "* OK Still here")
        r.send("DONE\r\n")
        self.assertEqual(strip_timing(r.line()), "i OK Idle completed.")
        r.send("j IDLE\r\nnot done\r\n")
        self.assertEqual(r.line(), "+ idling")
        self.assertEqual(r.line(), "j BAD Expected DONE.")

    def test_imaplib_roundtrip(self):
        m = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        m.login("alice", "secret")
        typ, data = m.select("INBOX")
        self.assertEqual((typ, data), ("OK", [b"3"]))
        typ, data = m.uid("SEARCH", None, "ALL")
        self.assertEqual(data, [b"1 2 3"])
        m.store("1", "+FLAGS", "\\Deleted")
        typ, data = m.expunge()
        self.assertEqual(data, [b"1"])
        m.logout()


class Autologout(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self, conf="imap_autologout = 2s")

    def test_bye_for_inactivity(self):
        r = login(self.server)
        self.addCleanup(r.close)
        r.sock.settimeout(10)
        self.assertEqual(r.line(), "* BYE Disconnected for inactivity.")
        self.assertTrue(r.closed())
        self.server.wait_log("Disconnected: Disconnected for inactivity")


class LongLine(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self, conf="imap_max_line_length = 2k")

    def test_line_too_long_after_login(self):
        r = login(self.server)
        self.addCleanup(r.close)
        self.assertEqual(st(r.cmd("a", "NOOP")), ["a OK NOOP completed."])
        r.send("b NOOP " + "x" * 3000 + "\r\n")
        self.assertEqual(r.line(), "* BAD Error in IMAP command received by server: Too long argument.")
        self.assertEqual(r.line(), "* BYE Too long argument.")
        self.assertTrue(r.closed())
        self.server.wait_log("Disconnected: Too long argument")


class BigLiteral(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self, conf="imap_max_literal_size = 2k")

    def test_toobig(self):
        r = login(self.server)
        self.addCleanup(r.close)
        self.assertEqual(r.cmd("a", "APPEND INBOX {5000}"), ["a NO [TOOBIG] Literal too large."])
        self.assertEqual(st(r.cmd("b", "NOOP")), ["b OK NOOP completed."])
        r.send("c APPEND INBOX {5000+}\r\n")
        self.assertEqual(r.line(), "c BAD [TOOBIG] Literal too large.")
        self.assertEqual(r.line(), "* BYE Too long argument.")
        self.assertTrue(r.closed())


if __name__ == "__main__":
    unittest.main()
