"""IMAP4rev2 (RFC 9051, issue 15): advertised beside IMAP4rev1, selected by
ENABLE IMAP4rev2, and the behaviour differences of Appendix E for such a
session: no \\Recent flag and no RECENT response, SELECT without UNSEEN but
with its LIST line, SEARCH answered in ESEARCH form, STATUS DELETED and
SIZE, mailbox names in UTF-8, and the folded-in extensions (BINARY, $,
LIST-EXTENDED \\NonExistent/\\Subscribed, NAMESPACE, UNSELECT, MOVE,
UIDPLUS, LITERAL+ which covers LITERAL-); a rev1 session is unchanged."""
import re
import unittest

from imap_util import POST_CAPS, Raw, deliver, imap_server, login, strip_timing


def st(lines):
    return [strip_timing(l) for l in lines]


class Rev2(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self)
        for i in range(3):
            deliver(self.server, "alice@example.com.ar", subject="m%d" % i)
        self.server.wait_messages("alice", 3)

    def client(self, rev2=True):
        r = login(self.server)
        self.addCleanup(r.close)
        if rev2:
            out = r.cmd("e", "ENABLE IMAP4rev2")
            self.assertEqual(st(out), ["* ENABLED IMAP4rev2", "e OK Enabled completed."])
        return r

    def test_capabilities(self):
        self.assertIn(" IMAP4rev2 ", " %s " % POST_CAPS)
        r = Raw(self.server.ports["imap"])
        self.addCleanup(r.close)
        greet = r.line()
        self.assertIn("IMAP4rev1 IMAP4rev2 ", greet)
        out = r.cmd("c", "CAPABILITY")
        self.assertTrue(out[0].startswith("* CAPABILITY IMAP4rev1 IMAP4rev2 "), out)
        r = self.client(rev2=False)
        out = r.cmd("c", "CAPABILITY")
        self.assertEqual(out[0], "* CAPABILITY " + POST_CAPS)
        for cap in ("BINARY", "ESEARCH", "SEARCHRES", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE",
                    "NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE", "IDLE", "ENABLE", "SASL-IR",
                    "CHILDREN", "STATUS=SIZE", "LITERAL+"):
            self.assertIn(" %s " % cap, " %s " % out[0], cap)
        # RFC 7888 §4: LITERAL- is not offered beside LITERAL+ (its superset).
        self.assertNotIn("LITERAL-", out[0])

    def test_enable_twice_and_unknown(self):
        r = self.client()
        self.assertEqual(st(r.cmd("f", "ENABLE IMAP4rev2 X-UNKNOWN")), ["* ENABLED", "f OK Enabled completed."])

    def test_select_lines(self):
        old = self.client(rev2=False)
        lines = st(old.cmd("s", "EXAMINE INBOX"))
        self.assertIn("* 3 RECENT", lines)
        self.assertTrue(any(l.startswith("* OK [UNSEEN 1]") for l in lines), lines)
        r = self.client()
        lines = st(r.cmd("s", "SELECT INBOX"))
        self.assertFalse(any("RECENT" in l for l in lines), lines)
        self.assertFalse(any("UNSEEN" in l for l in lines), lines)
        self.assertIn("* 3 EXISTS", lines)
        self.assertIn('* LIST (\\HasNoChildren) "/" INBOX', lines)
        self.assertTrue(any(l.startswith("* OK [UIDVALIDITY ") for l in lines), lines)
        self.assertTrue(any(l.startswith("* OK [UIDNEXT 4]") for l in lines), lines)
        self.assertTrue(any(l.startswith("* FLAGS (") for l in lines), lines)
        self.assertTrue(any(l.startswith("* OK [PERMANENTFLAGS (") for l in lines), lines)
        self.assertEqual(lines[-1], "s OK [READ-WRITE] Select completed.")
        # This session took \Recent, but a rev2 client never sees it.
        out = r.cmd("f", "FETCH 1:* (FLAGS)")
        self.assertEqual(out[:3], ["* 1 FETCH (FLAGS ())", "* 2 FETCH (FLAGS ())", "* 3 FETCH (FLAGS ())"])
        self.assertNotIn("Recent", " ".join(r.cmd("g", "STORE 1 +FLAGS (\\Seen)")))

    def test_new_mail_without_recent(self):
        r = self.client()
        r.cmd("s", "SELECT INBOX")
        deliver(self.server, "alice@example.com.ar", subject="new")
        self.server.wait_messages("alice", 4)
        out = st(r.cmd("n", "NOOP"))
        self.assertEqual(out, ["* 4 EXISTS", "n OK NOOP completed."])
        r.send("i IDLE\r\n")
        self.assertEqual(r.line(), "+ idling")
        deliver(self.server, "alice@example.com.ar", subject="newer")
        r.sock.settimeout(10)
        self.assertEqual(r.line(), "* 5 EXISTS")
        r.send("DONE\r\n")
        self.assertEqual(strip_timing(r.line()), "i OK Idle completed.")

    def test_search_is_esearch(self):
        r = self.client()
        r.cmd("s", "SELECT INBOX")
        self.assertEqual(st(r.cmd("a", "SEARCH ALL")), ['* ESEARCH (TAG "a") ALL 1:3', "a OK Search completed."])
        self.assertEqual(r.cmd("b", "UID SEARCH ALL")[0], '* ESEARCH (TAG "b") UID ALL 1:3')
        self.assertEqual(r.cmd("c", "UID SEARCH DELETED")[0], '* ESEARCH (TAG "c") UID')
        self.assertEqual(r.cmd("d", "SEARCH RETURN (COUNT) ALL")[0], '* ESEARCH (TAG "d") COUNT 3')
        # SEARCHRES "$"
        out = st(r.cmd("e", "SEARCH RETURN (SAVE) SUBJECT m1"))
        self.assertEqual(out, ["e OK Search completed."])
        self.assertEqual(r.cmd("f", "FETCH $ (UID)")[0], "* 2 FETCH (UID 2)")
        # a rev1 session keeps "* SEARCH"
        old = self.client(rev2=False)
        old.cmd("s", "EXAMINE INBOX")
        self.assertEqual(old.cmd("a", "SEARCH ALL")[0], "* SEARCH 1 2 3")

    def test_status_deleted_size(self):
        r = self.client()
        r.cmd("s", "SELECT INBOX")
        r.cmd("d", "STORE 1:2 +FLAGS.SILENT (\\Deleted)")
        r.cmd("u", "UNSELECT")
        out = r.cmd("t", "STATUS INBOX (MESSAGES DELETED SIZE UIDNEXT)")
        m = re.match(r"\* STATUS INBOX \(MESSAGES 3 DELETED 2 SIZE (\d+) UIDNEXT 4\)$", out[0])
        self.assertIsNotNone(m, out)
        self.assertGreater(int(m.group(1)), 0)
        self.assertTrue(out[-1].startswith("t OK"), out)

    def test_list_nonexistent_subscribed(self):
        r = self.client()
        r.cmd("a", "CREATE Work")
        r.cmd("b", "SUBSCRIBE Work")
        r.cmd("c", "SUBSCRIBE Gone")
        out = r.cmd("l", 'LIST (SUBSCRIBED) "" "*"')
        self.assertIn('* LIST (\\HasNoChildren \\Subscribed) "/" Work', out)
        self.assertIn('* LIST (\\NonExistent \\Subscribed) "/" Gone', out)
        out = r.cmd("m", 'LIST "" "*" RETURN (STATUS (MESSAGES DELETED))')
        self.assertIn("* STATUS INBOX (MESSAGES 3 DELETED 0)", out)
        # LSUB and CHECK left RFC 9051 but are still answered.
        self.assertTrue(r.cmd("n", 'LSUB "" "*"')[-1].startswith("n OK"))
        r.cmd("s", "SELECT INBOX")
        self.assertTrue(r.cmd("o", "CHECK")[-1].startswith("o OK"))
        out = r.cmd("p", "NAMESPACE")
        self.assertEqual(out[0], '* NAMESPACE (("" "/")) NIL NIL')
        # RFC 9051's HASCHILDREN for a \Noselect parent with children
        r.cmd("q", "CREATE par/kid")
        self.assertEqual(strip_timing(r.cmd("r", "DELETE par")[-1]),
                         "r NO [HASCHILDREN] Mailbox has children, delete them first")

    def test_utf8_mailbox_names(self):
        r = self.client()
        name = "Entw\u00fcrfe"
        data = name.encode()
        r.send(b"a CREATE {%d+}\r\n%s\r\n" % (len(data), data))
        self.assertTrue(r.until_tag("a")[-1].startswith("a OK"))
        r.send(b'b LIST "" "Entw*"\r\n')
        head = r.line()
        self.assertEqual(head, '* LIST (\\HasNoChildren) "/" {%d}' % len(data))
        self.assertEqual(r.read_bytes(len(data)), data)
        self.assertTrue(r.until_tag("b")[-1].startswith("b OK"))
        # mUTF-7 is not decoded any more: "&APw-" is a name of its own
        self.assertTrue(r.cmd("c", 'SELECT "Entw&APw-rfe"')[-1].startswith("c NO"))
        # invalid UTF-8 is refused
        r.send(b'd CREATE "bad\xffname"\r\n')
        self.assertEqual(strip_timing(r.until_tag("d")[-1]), "d NO Mailbox name is not valid UTF-8")
        # a rev1 session sees the same folder in modified UTF-7
        old = self.client(rev2=False)
        self.assertIn('* LIST (\\HasNoChildren) "/" Entw&APw-rfe', old.cmd("l", 'LIST "" "Entw*"'))

    def test_binary_unselect_move_uidplus_literal_plus(self):
        r = self.client()
        r.cmd("s", "SELECT INBOX")
        out = r.cmd("b", "FETCH 1 (BINARY.SIZE[1])")
        self.assertTrue(re.match(r"\* 1 FETCH \(BINARY\.SIZE\[1\] \d+\)$", out[0]), out)
        r.cmd("c", "CREATE Dst")
        out = st(r.cmd("m", "MOVE 3 Dst"))
        self.assertTrue(out[0].startswith("* OK [COPYUID "), out)
        self.assertEqual(out[1], "* 3 EXPUNGE")
        self.assertTrue(st(r.cmd("u", "UNSELECT"))[-1].startswith("u OK"))
        # LITERAL- (in rev2) is covered by LITERAL+: non-synchronizing
        # literals of any size, 4096 and beyond.
        msg = b"Subject: big\r\n\r\n" + b"x" * 5000 + b"\r\n"
        r.send(b"a APPEND Dst {%d+}\r\n%s\r\n" % (len(msg), msg))
        out = r.until_tag("a")
        self.assertTrue(out[-1].startswith("a OK [APPENDUID "), out)


if __name__ == "__main__":
    unittest.main()
