"""IMAP behaviours an external compliance suite (Dovecot's imaptest scripts)
checks, pinned in our own words: each test names the script whose check it
mirrors. Tests marked FAILS-ON-POSTERN failed against main when written
(Dovecot 2.3 passes the same script); "Fixed, was FAILS-ON-POSTERN" ones
now pass and guard the fix."""
import re
import unittest

from imap_util import Raw, imap_server, login


def append(r, tag, box, msg, flags=""):
    data = msg.replace("\n", "\r\n").encode()
    r.send("%s APPEND %s %s{%d+}\r\n" % (tag, box, flags + " " if flags else "", len(data)))
    r.send(data + b"\r\n")
    out = r.until_tag(tag)
    assert out[-1].startswith(tag + " OK"), out
    return out


def ok(out):
    return out[-1].split(" ")[1] == "OK"


class Compliance(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self)

    def session(self):
        r = login(self.server)
        self.addCleanup(r.close)
        return r

    def fill(self, r, box, msgs):
        out = r.cmd("c0", "CREATE %s" % box)
        self.assertTrue(ok(out), out)
        for i, m in enumerate(msgs):
            append(r, "ap%d" % i, box, m)

    # Fixed, was FAILS-ON-POSTERN (imaptest: expunge). The other session still has the
    # message in its view: Dovecot answers OK with the FETCH data until the
    # EXPUNGE is sent to it at NOOP; Postern answers NO [EXPUNGEISSUED].
    def test_fetch_of_message_expunged_by_other_session_still_answers(self):
        a, b = self.session(), self.session()
        self.fill(a, "cbox", ["Subject: one\n\nfirst\n", "Subject: two\n\nsecond\n"])
        self.assertTrue(ok(a.cmd("s1", "SELECT cbox")))
        self.assertTrue(ok(b.cmd("s2", "SELECT cbox")))
        uid = re.search(r"UID (\d+)", a.cmd("f1", "FETCH 2 UID")[0]).group(1)
        self.assertTrue(ok(a.cmd("st", "STORE 2 FLAGS (\\Deleted)")))
        self.assertIn("* 2 EXPUNGE", a.cmd("ex", "EXPUNGE"))
        out = b.cmd("f2", "FETCH 2 UID")
        self.assertEqual(out[-1].split(" ")[1], "OK", out)
        self.assertIn("* 2 FETCH (UID %s)" % uid, out)
        # its text is gone: NIL (RFC 2180 4.1.3), still OK (lead's decision)
        out = b.cmd("f3", "FETCH 2 (RFC822.SIZE BODY.PEEK[])")
        self.assertEqual(out[-1].split(" ")[1], "OK", out)
        self.assertTrue(re.match(r"\* 2 FETCH \(RFC822.SIZE \d+ BODY\[\] NIL\)$", out[0]), out)
        self.assertIn("* 2 EXPUNGE", b.cmd("n", "NOOP"))

    # RFC 2180 4.4: COPY of a message another session expunged (not yet
    # announced here) may fail with NO; it must not claim the target is
    # missing (TRYCREATE) nor copy part of the set. The EXPUNGE comes with it.
    def test_copy_of_message_expunged_by_other_session(self):
        a, b = self.session(), self.session()
        self.fill(a, "xbox", ["Subject: one\n\nfirst\n", "Subject: two\n\nsecond\n"])
        self.assertTrue(ok(a.cmd("c1", "CREATE xdst")))
        self.assertTrue(ok(a.cmd("s1", "SELECT xbox")))
        self.assertTrue(ok(b.cmd("s2", "SELECT xbox")))
        self.assertTrue(ok(a.cmd("st", "STORE 2 FLAGS (\\Deleted)")))
        self.assertIn("* 2 EXPUNGE", a.cmd("ex", "EXPUNGE"))
        out = b.cmd("cp", "COPY 1:2 xdst")
        self.assertTrue(out[-1].startswith("cp NO [EXPUNGEISSUED]"), out)
        self.assertIn("* 2 EXPUNGE", out)
        self.assertIn("* STATUS xdst (MESSAGES 0)", b.cmd("sx", "STATUS xdst (MESSAGES)"))
        out = b.cmd("cp2", "COPY 1 xdst")
        self.assertTrue(ok(out), out)
        self.assertIn("* STATUS xdst (MESSAGES 1)", b.cmd("sy", "STATUS xdst (MESSAGES)"))

    # Fixed, was FAILS-ON-POSTERN (imaptest: fetch-envelope, message 5). An empty
    # Sender: or Reply-To: header counts as absent, so the envelope repeats
    # From there (RFC 3501 7.4.2).
    def test_envelope_empty_sender_and_reply_to_default_to_from(self):
        r = self.session()
        self.fill(r, "ebox", ["Date: Sat, 01 Feb 2007 01:02:03 +0200\nFrom: user@domain (Real Name)\n"
                              "Sender: \nReply-To: \n\nbody\n"])
        r.cmd("s", "SELECT ebox")
        out = r.cmd("f", "FETCH 1 ENVELOPE")
        frm = '(("Real Name" NIL "user" "domain"))'
        self.assertEqual(out[0], '* 1 FETCH (ENVELOPE ("Sat, 01 Feb 2007 01:02:03 +0200" NIL %s %s %s '
                                 'NIL NIL NIL NIL NIL))' % (frm, frm, frm))

    # Fixed, was FAILS-ON-POSTERN (imaptest: nil). NIL where an astring is expected is
    # the string "NIL": SEARCH SUBJECT NIL, SEARCH BODY nil, LIST "" NIL.
    def test_nil_as_search_string_and_list_pattern(self):
        r = self.session()
        self.fill(r, "nbox", ["Subject: NIL\n\nnil\n", "Subject: other\n\nother\n"])
        r.cmd("s", "SELECT nbox")
        out = r.cmd("a1", "SEARCH SUBJECT NIL")
        self.assertEqual(out, ["* SEARCH 1", out[-1]])
        self.assertTrue(ok(out), out)
        out = r.cmd("a2", "SEARCH BODY nil")
        self.assertEqual(out[0], "* SEARCH 1")
        self.assertTrue(ok(r.cmd("a3", 'LIST "" NIL')))

    # imaptest IMAP-NOTES: the atom NIL is an astring wherever one is
    # taken: a mailbox called NIL works for every mailbox command (and is
    # sent back quoted, as an atom NIL would read as nil), and a keyword
    # NIL is kept.
    def test_nil_as_mailbox_name_and_keyword(self):
        r = self.session()
        self.assertTrue(ok(r.cmd("c", "CREATE NIL")))
        out = r.cmd("l", 'LIST "" NIL')
        self.assertIn('* LIST (\\HasNoChildren) "/" "NIL"', out)
        append(r, "a", "NIL", "Subject: n\n\nbody\n", "(NIL \\Seen)")
        self.assertTrue(ok(r.cmd("su", "SUBSCRIBE NIL")))
        self.assertIn('* LSUB () "/" "NIL"', r.cmd("ls", 'LSUB "" NIL'))
        self.assertIn('* STATUS "NIL" (MESSAGES 1)', r.cmd("st", "STATUS NIL (MESSAGES)"))
        out = r.cmd("s", "SELECT NIL")
        self.assertTrue(ok(out), out)
        self.assertIn("* 1 EXISTS", out)
        self.assertTrue(ok(r.cmd("k", "STORE 1 +FLAGS (NIL)")))
        self.assertEqual(r.cmd("sk", "SEARCH KEYWORD NIL")[0], "* SEARCH 1")
        self.assertTrue(ok(r.cmd("cp", "COPY 1 NIL")))
        self.assertTrue(ok(r.cmd("un", "UNSELECT")))
        self.assertTrue(ok(r.cmd("rn", "RENAME NIL nil2")))
        out = r.cmd("e", "EXAMINE nil2")
        self.assertIn("* 2 EXISTS", out)
        line = [l for l in r.cmd("f", "FETCH 1:2 FLAGS") if "FETCH" in l]
        self.assertEqual(len(line), 2, line)
        for l in line:
            self.assertIn("NIL", re.search(r"FLAGS \(([^)]*)\)", l).group(1).split(), l)
        self.assertTrue(ok(r.cmd("r2", "RENAME nil2 NIL")))
        self.assertTrue(ok(r.cmd("d", "DELETE NIL")))
        self.assertFalse(ok(r.cmd("s2", "SELECT NIL")))
        # LOGIN takes NIL as a user name / password: a failed login, not BAD
        raw = Raw(self.server.ports["imap"])
        self.addCleanup(raw.close)
        raw.line()
        self.assertEqual(raw.cmd("l1", "LOGIN NIL NIL")[-1].split(" ")[1], "NO")
        self.assertEqual(raw.cmd("l2", "LOGIN alice NIL")[-1].split(" ")[1], "NO")

    # Fixed, was FAILS-ON-POSTERN (imaptest: search-addresses, message 3). Comments and
    # spaces inside an address are not part of it: FROM user-from@domain.org
    # finds <user-from (comment)@ (comment) domain.org>.
    def test_search_from_matches_address_written_with_comments(self):
        r = self.session()
        self.fill(r, "abox", ["From: user-from@domain.org\n\nb1\n",
                              "From: <user-from (comment)@ (comment) domain.org>\n\nb2\n",
                              "From: someone@else.org\n\nb3\n"])
        r.cmd("s", "SELECT abox")
        self.assertEqual(r.cmd("a", "SEARCH FROM user-from@domain.org")[0], "* SEARCH 1 2")

    # Fixed, was FAILS-ON-POSTERN (imaptest: store, last block). Two sessions changing
    # different flags of one message: neither change may be lost.
    def test_two_sessions_flag_changes_merge(self):
        a, b = self.session(), self.session()
        self.fill(a, "fbox", ["Subject: x\n\nbody\n"])
        a.cmd("s1", "SELECT fbox")
        b.cmd("s2", "SELECT fbox")
        self.assertTrue(ok(a.cmd("t1", "STORE 1 FLAGS (\\Seen)")))
        b.cmd("c0", "CHECK")
        self.assertTrue(ok(a.cmd("t2", "STORE 1 +FLAGS (\\Draft)")))
        self.assertTrue(ok(b.cmd("t3", "STORE 1 -FLAGS (\\Seen)")))
        a.cmd("c1", "CHECK")
        b.cmd("c2", "CHECK")
        for r, tag in ((a, "f1"), (b, "f2")):
            line = [l for l in r.cmd(tag, "FETCH 1 FLAGS") if "FLAGS" in l][-1]
            flags = set(re.search(r"FLAGS \(([^)]*)\)", line).group(1).split()) - {"\\Recent"}
            self.assertEqual(flags, {"\\Draft"}, line)

    # imaptest: store, with keywords. Each session adds a keyword it makes
    # new and removes one the other may not have seen set: nothing is lost,
    # and the other session is told at its next sync.
    def test_two_sessions_keyword_changes_merge(self):
        a, b = self.session(), self.session()
        self.fill(a, "kbox", ["Subject: x\n\nbody\n"])
        a.cmd("s1", "SELECT kbox")
        b.cmd("s2", "SELECT kbox")
        self.assertTrue(ok(a.cmd("t1", "STORE 1 +FLAGS (ka NIL)")))
        self.assertTrue(ok(b.cmd("t2", "STORE 1 +FLAGS.SILENT (kb)")))
        self.assertTrue(ok(b.cmd("t3", "STORE 1 -FLAGS.SILENT (ka)")))
        out = a.cmd("n", "NOOP")
        self.assertTrue([l for l in out if l.startswith("* 1 FETCH (FLAGS (")], out)
        for r, tag in ((a, "f1"), (b, "f2")):
            line = [l for l in r.cmd(tag, "FETCH 1 FLAGS") if "FLAGS" in l][-1]
            flags = set(re.search(r"FLAGS \(([^)]*)\)", line).group(1).split()) - {"\\Recent"}
            self.assertEqual(flags, {"NIL", "kb"}, line)

    # Fixed, was FAILS-ON-POSTERN (imaptest: subscribe). LSUB with % lists a parent
    # whose children are subscribed but itself is not, flagged \Noselect
    # (RFC 3501 6.3.9).
    def test_lsub_percent_shows_unsubscribed_parent_as_noselect(self):
        r = self.session()
        for i, box in enumerate(("sb/", "sb/test", "sb/test2/", "sb/test2/test")):
            self.assertTrue(ok(r.cmd("c%d" % i, "CREATE %s" % box)))
        self.assertTrue(ok(r.cmd("u1", "SUBSCRIBE sb/test")))
        self.assertTrue(ok(r.cmd("u2", "SUBSCRIBE sb/test2/test")))
        out = r.cmd("l", 'LSUB "" sb/%')
        self.assertIn('* LSUB () "/" sb/test', out)
        self.assertIn('* LSUB (\\Noselect) "/" sb/test2', out)
        self.assertFalse([l for l in out if "sb/test2/test" in l], out)
        # a subscribed parent is listed as itself, once; * needs no parents
        self.assertTrue(ok(r.cmd("u3", "SUBSCRIBE sb/test2")))
        out = r.cmd("l2", 'LSUB "" sb/%')
        self.assertEqual([l for l in out if l.startswith("* ")],
                         ['* LSUB () "/" sb/test', '* LSUB () "/" sb/test2'])
        out = r.cmd("l3", 'LSUB "" sb/*')
        self.assertEqual(sorted(l for l in out if l.startswith("* ")),
                         ['* LSUB () "/" sb/test', '* LSUB () "/" sb/test2', '* LSUB () "/" sb/test2/test'])

    # Passes (imaptest: move): COPYUID comes untagged before the EXPUNGE,
    # and a MOVE into the selected mailbox itself gives the message a new UID.
    def test_move_copyuid_before_expunge(self):
        r = self.session()
        self.fill(r, "mbox1", ["Subject: a\n\na\n", "Subject: b\n\nb\n"])
        self.assertTrue(ok(r.cmd("c", "CREATE mbox2")))
        r.cmd("s", "SELECT mbox1")
        out = r.cmd("m", "MOVE 1 mbox2")
        self.assertTrue(ok(out), out)
        i = [n for n, l in enumerate(out) if l.startswith("* OK [COPYUID ")]
        self.assertEqual(len(i), 1, out)
        self.assertLess(i[0], out.index("* 1 EXPUNGE"))
        uid = re.search(r"UID (\d+)", r.cmd("f", "FETCH 1 UID")[0]).group(1)
        out = r.cmd("m2", "MOVE 1 mbox1")
        m = re.search(r"\[COPYUID \d+ (\d+) (\d+)\]", " ".join(out))
        self.assertEqual(m.group(1), uid)
        self.assertNotEqual(m.group(2), uid)
        self.assertIn("* 1 EXPUNGE", out)
        self.assertIn("* 1 EXISTS", out)

    # Fixed, was FAILS-ON-POSTERN (issue 15). '[' is an ATOM-CHAR: only a
    # FETCH attribute (BODY[...], BINARY[...]) has section syntax, so a
    # mailbox name with '[' is an atom like any other.
    def test_bracket_in_mailbox_name(self):
        r = self.session()
        out = r.cmd("c", "CREATE a[b")
        self.assertTrue(ok(out), out)
        out = r.cmd("l", 'LIST "" a[b%')
        self.assertIn('* LIST (\\HasNoChildren) "/" a[b', out)
        self.assertTrue(ok(out), out)
        out = r.cmd("s", "SELECT a[b")
        self.assertTrue(ok(out), out)
        self.assertIn("* 0 EXISTS", out)
        out = r.cmd("st", "STATUS a[b (MESSAGES)")
        self.assertIn("* STATUS a[b (MESSAGES 0)", out)
        out = r.cmd("d", "DELETE a[b")
        self.assertTrue(ok(out), out)
        # '&' starts a modified UTF-7 shift and "'+,-" is no base64: the
        # name is not valid mUTF-7 (Dovecot's answer, a NO, not a BAD)
        out = r.cmd("a2", "SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}")
        self.assertTrue(out[-1].startswith("a2 NO "), out)
        self.assertIn("not valid mUTF-7", out[-1])
        out = r.cmd("a3", "CREATE !#$&'+,-.0123456789:;<=>?@^_`|[}")
        self.assertTrue(out[-1].startswith("a3 NO "), out)
        # without the '&' the same characters make a fine name
        out = r.cmd("a4", "CREATE !#$'+,-.0123456789:;<=>?@^_`|[}")
        self.assertTrue(ok(out), out)
        out = r.cmd("a5", "SELECT !#$'+,-.0123456789:;<=>?@^_`|[}")
        self.assertTrue(ok(out), out)
        # the section syntax is untouched
        out = r.cmd("a6", "SELECT a[b")
        self.assertTrue(out[-1].startswith("a6 NO "), out)

    # Fixed, was FAILS-ON-POSTERN (issue 15). 4294967295 is a number, not
    # "*": with UIDs 1-3 it names nothing, and only "*" means the largest.
    def test_max_number_is_not_star(self):
        r = self.session()
        self.fill(r, "nbox", ["Subject: %d\n\nx\n" % i for i in range(3)])
        out = r.cmd("s", "SELECT nbox")
        self.assertIn("* OK [UIDNEXT 4] Predicted next UID", out)
        self.assertEqual(r.cmd("u1", "UID SEARCH UID 4:4294967295")[0], "* SEARCH")
        self.assertEqual(r.cmd("u2", "UID SEARCH UID 4294967295")[0], "* SEARCH")
        out = r.cmd("u3", "UID FETCH 4:4294967295 (UID)")
        self.assertEqual(len(out), 1, out)
        self.assertTrue(ok(out), out)
        self.assertEqual(r.cmd("u4", "UID SEARCH UID 4:*")[0], "* SEARCH 3")
        self.assertEqual(r.cmd("u5", "UID SEARCH UID 2:4294967295")[0], "* SEARCH 2 3")
        self.assertEqual(r.cmd("u6", "SEARCH 4294967295")[0], "* SEARCH")
        self.assertEqual(r.cmd("u7", "SEARCH 2:4294967295")[0], "* SEARCH 2 3")
        out = r.cmd("u8", "UID STORE 4294967295 +FLAGS (\\Seen)")
        self.assertEqual(len(out), 1, out)
        self.assertTrue(ok(out), out)
        # a sequence number past the last message is still an error
        out = r.cmd("f", "FETCH 4294967295 (UID)")
        self.assertTrue(out[-1].startswith("f BAD"), out)
        out = r.cmd("f2", "FETCH 3:* (UID)")
        self.assertIn("* 3 FETCH (UID 3)", out)

    # Fixed, was FAILS-ON-POSTERN (issue 15; imaptest stress). STORE over a
    # set where another session expunged some: the rest is flagged and the
    # answer is OK, as Dovecot gives (RFC 2180 4.2.1 allows either).
    def test_store_with_messages_expunged_by_other_session(self):
        a, b = self.session(), self.session()
        self.fill(a, "sxbox", ["Subject: %d\n\nx\n" % i for i in range(4)])
        self.assertTrue(ok(a.cmd("s1", "SELECT sxbox")))
        self.assertTrue(ok(b.cmd("s2", "SELECT sxbox")))
        self.assertTrue(ok(a.cmd("st", "STORE 1,3 +FLAGS (\\Deleted)")))
        a.cmd("ex", "EXPUNGE")
        out = b.cmd("bs", "STORE 1:3 +FLAGS (\\Deleted)")
        self.assertTrue(ok(out), out)
        self.assertIn("* 2 FETCH (FLAGS (\\Deleted))", out)
        self.assertFalse([l for l in out if "EXPUNGE" in l], out)
        out = b.cmd("n", "NOOP")
        self.assertEqual([l for l in out if "EXPUNGE" in l], ["* 1 EXPUNGE", "* 2 EXPUNGE"])
        a.cmd("n2", "NOOP")
        self.assertIn("\\Deleted", a.cmd("f", "FETCH 1 FLAGS")[0])

    # COPY and MOVE stay all or nothing (RFC 3501 6.4.7: a failed COPY
    # leaves the target as it was; Dovecot rolls back the same way): when
    # another session expunged one of the set, nothing is copied or moved
    # and the answer is NO [EXPUNGEISSUED], also when our view already
    # knew (after a FETCH that may not announce the EXPUNGE).
    def test_copy_move_all_or_nothing_with_expunged(self):
        a, b = self.session(), self.session()
        self.fill(a, "mxbox", ["Subject: %d\n\nx\n" % i for i in range(5)])
        self.assertTrue(ok(a.cmd("c1", "CREATE mxdst")))
        self.assertTrue(ok(a.cmd("s1", "SELECT mxbox")))
        self.assertTrue(ok(b.cmd("s2", "SELECT mxbox")))
        for verb, gone in (("COPY", 2), ("MOVE", 4)):
            self.assertTrue(ok(a.cmd("st", "UID STORE %d +FLAGS (\\Deleted)" % gone)))
            a.cmd("ex", "EXPUNGE")
            b.cmd("f", "FETCH 1:* FLAGS")   # syncs without EXPUNGE
            out = b.cmd("cm", "%s 1:* mxdst" % verb)
            self.assertTrue(out[-1].startswith("cm NO [EXPUNGEISSUED]"), out)
            self.assertIn("* STATUS mxdst (MESSAGES 0)", b.cmd("x", "STATUS mxdst (MESSAGES)"))
        out = b.cmd("mv2", "MOVE 1:2 mxdst")
        self.assertTrue(ok(out), out)
        self.assertIn("* STATUS mxdst (MESSAGES 2)", b.cmd("x", "STATUS mxdst (MESSAGES)"))

if __name__ == "__main__":
    unittest.main()
