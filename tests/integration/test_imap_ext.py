"""IMAP extensions beyond IMAP4rev1 (issue 15), each against its RFC's
examples and edge cases: ESEARCH (RFC 4731), SEARCHRES (RFC 5182),
STATUS=SIZE (RFC 8438), MULTIAPPEND (RFC 3502), LITERAL+ without LITERAL-
(RFC 7888), LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE
and CREATE-SPECIAL-USE (RFC 6154). Raw lines through imap_util.Raw, and
imaplib where a real client's view matters."""
import datetime
import imaplib
import re
import subprocess
import unittest

from imap_util import POST_CAPS, imap_server, login, strip_timing


def ok(out):
    return out[-1].split(" ")[1] == "OK"


def untagged(out):
    return [l for l in out if l.startswith("* ")]


def msg(i, size_pad=0):
    return ("From: a@example.com\r\nSubject: m%d\r\n\r\nbody %d%s\r\n" % (i, i, "x" * size_pad)).encode()


class Ext(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self)

    def session(self):
        r = login(self.server)
        self.addCleanup(r.close)
        return r

    def append(self, r, box, data, tag="ap", flags=""):
        r.send("%s APPEND %s %s{%d+}\r\n" % (tag, box, flags + " " if flags else "", len(data)))
        r.send(data + b"\r\n")
        out = r.until_tag(tag)
        self.assertTrue(ok(out), out)
        return out

    def fill(self, r, box, n):
        self.assertTrue(ok(r.cmd("c0", "CREATE %s" % box)))
        for i in range(n):
            self.append(r, box, msg(i + 1, i * 10))

    # ---- capabilities ----

    def test_capabilities(self):
        r = self.session()
        caps = r.cmd("c", "CAPABILITY")[0].split()[2:]
        self.assertEqual(" ".join(caps), POST_CAPS)
        for c in ("ESEARCH", "SEARCHRES", "STATUS=SIZE", "MULTIAPPEND", "LITERAL+"):
            self.assertIn(c, caps)
        # RFC 7888 §5: never both; LITERAL+ already allows what LITERAL-
        # clients send (non-synchronizing literals of any size)
        self.assertNotIn("LITERAL-", caps)

    def test_literal_plus_of_any_size(self):
        r = self.session()
        self.assertTrue(ok(r.cmd("c", "CREATE big")))
        data = msg(1, 10000)
        out = self.append(r, "big", data)
        self.assertIn("APPENDUID", out[-1])
        out = r.cmd("s", "STATUS big (MESSAGES SIZE)")
        self.assertIn("* STATUS big (MESSAGES 1 SIZE %d)" % len(data), out)

    # ---- STATUS=SIZE ----

    def test_status_size(self):
        r = self.session()
        self.fill(r, "sz", 3)
        total = sum(len(msg(i + 1, i * 10)) for i in range(3))
        out = r.cmd("s", "STATUS sz (SIZE)")
        self.assertEqual(out[0], "* STATUS sz (SIZE %d)" % total)
        out = r.cmd("s2", "status sz (messages size uidnext)")
        self.assertEqual(out[0], "* STATUS sz (MESSAGES 3 SIZE %d UIDNEXT 4)" % total)
        self.assertTrue(ok(r.cmd("c", "CREATE empty")))
        self.assertEqual(r.cmd("s3", "STATUS empty (SIZE)")[0], "* STATUS empty (SIZE 0)")
        self.assertTrue(r.cmd("s4", "STATUS sz (SIZE BOGUS)")[-1].startswith("s4 BAD"))
        self.assertTrue(r.cmd("s5", "STATUS nosuch (SIZE)")[-1].startswith("s5 NO [NONEXISTENT]"))

    # ---- ESEARCH (RFC 4731) ----

    def test_esearch_return_options(self):
        r = self.session()
        self.fill(r, "es", 5)
        r.cmd("s", "SELECT es")
        r.cmd("st", "STORE 2,4,5 +FLAGS (\\Seen)")
        # RFC 4731 §3.1's examples, our data: seen 2 4 5
        out = r.cmd("A282", "SEARCH RETURN (MIN COUNT) SEEN")
        self.assertEqual(out[0], '* ESEARCH (TAG "A282") MIN 2 COUNT 3')
        out = r.cmd("A283", "SEARCH RETURN () SEEN")
        self.assertEqual(out[0], '* ESEARCH (TAG "A283") ALL 2,4:5')
        out = r.cmd("A284", "SEARCH RETURN (MIN MAX ALL COUNT) UNSEEN")
        self.assertEqual(out[0], '* ESEARCH (TAG "A284") MIN 1 MAX 3 ALL 1,3 COUNT 2')
        out = r.cmd("A285", "UID SEARCH RETURN (MIN MAX) 1:5")
        self.assertEqual(out[0], '* ESEARCH (TAG "A285") UID MIN 1 MAX 5')
        out = r.cmd("A286", "SEARCH RETURN (MIN MAX COUNT ALL) KEYWORD nosuch")
        self.assertEqual(out[0], '* ESEARCH (TAG "A286") COUNT 0')
        out = r.cmd("A287", "SEARCH RETURN (ALL) DELETED")
        self.assertEqual(out[0], '* ESEARCH (TAG "A287")')
        out = r.cmd("A288", "SEARCH RETURN (count) CHARSET UTF-8 ALL")
        self.assertEqual(out[0], '* ESEARCH (TAG "A288") COUNT 5')
        # without RETURN: the plain SEARCH reply
        self.assertEqual(r.cmd("A289", "SEARCH SEEN")[0], "* SEARCH 2 4 5")
        for bad in ("SEARCH RETURN (FOO) ALL", "SEARCH RETURN MIN ALL", "SEARCH RETURN (MIN)",
                    "SEARCH RETURN"):
            out = r.cmd("b", bad)
            self.assertTrue(out[-1].startswith("b BAD"), (bad, out))
            self.assertFalse(untagged(out), out)

    def test_esearch_with_imaplib(self):
        c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        self.addCleanup(c.logout)
        c.login("alice", "secret")
        c.create("esi")
        for i in range(3):
            c.append("esi", None, None, msg(i + 1))
        c.select("esi")
        typ, data = c.uid("SEARCH", "RETURN", "(ALL COUNT)", "ALL")
        self.assertEqual(typ, "OK")
        # imaplib files the untagged ESEARCH under its own name
        line = c.untagged_responses.pop("ESEARCH")[0].decode()
        self.assertTrue(re.match(r'\(TAG "\w+"\) UID ALL 1:3 COUNT 3$', line), line)

    # ---- SEARCHRES (RFC 5182) ----

    def test_searchres_save_and_use(self):
        r = self.session()
        self.fill(r, "sr", 6)
        self.assertTrue(ok(r.cmd("c", "CREATE srdst")))
        r.cmd("s", "SELECT sr")
        r.cmd("st", "STORE 1,3,6 +FLAGS (\\Flagged)")
        # SAVE alone: no untagged result at all
        out = r.cmd("A1", "SEARCH RETURN (SAVE) FLAGGED")
        self.assertEqual(len(out), 1, out)
        self.assertTrue(ok(out))
        out = r.cmd("A2", "FETCH $ (UID)")
        self.assertEqual(untagged(out), ["* 1 FETCH (UID 1)", "* 3 FETCH (UID 3)", "* 6 FETCH (UID 6)"])
        out = r.cmd("A3", "UID FETCH $ (FLAGS)")
        self.assertEqual(len(untagged(out)), 3, out)
        # "$" as a search key, with and without UID, combined with others
        self.assertEqual(r.cmd("A4", "SEARCH $ 2:5")[0], "* SEARCH 3")
        self.assertEqual(r.cmd("A5", "UID SEARCH UID $")[0], "* SEARCH 1 3 6")
        self.assertEqual(r.cmd("A6", "SEARCH NOT $")[0], "* SEARCH 2 4 5")
        self.assertEqual(r.cmd("A7", "SEARCH OR $ 2")[0], "* SEARCH 1 2 3 6")
        # STORE and COPY through "$"
        out = r.cmd("A8", "STORE $ +FLAGS (\\Seen)")
        self.assertTrue(ok(out), out)
        self.assertEqual(r.cmd("A9", "SEARCH SEEN")[0], "* SEARCH 1 3 6")
        out = r.cmd("A10", "COPY $ srdst")
        self.assertTrue(ok(out), out)
        self.assertIn("COPYUID", out[-1])
        self.assertIn("MESSAGES 3", r.cmd("A11", "STATUS srdst (MESSAGES)")[0])
        # SAVE with MIN and MAX keeps only those (§2.4); also ESEARCH sent
        out = r.cmd("A12", "SEARCH RETURN (SAVE MIN MAX) ALL")
        self.assertEqual(out[0], '* ESEARCH (TAG "A12") MIN 1 MAX 6')
        self.assertEqual(r.cmd("A13", "SEARCH $")[0], "* SEARCH 1 6")
        out = r.cmd("A14", "SEARCH RETURN (SAVE MIN) ALL")
        self.assertEqual(r.cmd("A15", "SEARCH $")[0], "* SEARCH 1")
        out = r.cmd("A16", "SEARCH RETURN (SAVE COUNT) SEEN")
        self.assertEqual(out[0], '* ESEARCH (TAG "A16") COUNT 3')
        self.assertEqual(r.cmd("A17", "SEARCH $")[0], "* SEARCH 1 3 6")
        # an expunged message leaves "$"
        r.cmd("A18", "STORE 3 +FLAGS (\\Deleted)")
        r.cmd("A19", "EXPUNGE")
        self.assertEqual(r.cmd("A20", "UID SEARCH $")[0], "* SEARCH 1 6")
        # a failed SEARCH ... SAVE empties it; FETCH $ of nothing is OK
        self.assertTrue(r.cmd("A21", "SEARCH RETURN (SAVE) FOO")[-1].startswith("A21 BAD"))
        out = r.cmd("A22", "FETCH $ (UID)")
        self.assertEqual(len(out), 1, out)
        self.assertTrue(ok(out), out)
        # a new selection starts with "$" empty
        r.cmd("A23", "SEARCH RETURN (SAVE) ALL")
        r.cmd("A24", "SELECT sr")
        self.assertEqual(r.cmd("A25", "SEARCH $")[0], "* SEARCH")
        # "$" is a set on its own only
        self.assertTrue(r.cmd("A26", "FETCH $,1 (UID)")[-1].startswith("A26 BAD"))

    def test_searchres_pipelined(self):
        """RFC 5182 §2.1's example: SAVE and its use sent together."""
        r = self.session()
        self.fill(r, "pp", 4)
        r.cmd("s", "SELECT pp")
        r.send("a UID SEARCH RETURN (SAVE) 2:3\r\nb UID FETCH $ (UID)\r\n")
        out = r.until_tag("a") + r.until_tag("b")
        self.assertEqual(untagged(out), ["* 2 FETCH (UID 2)", "* 3 FETCH (UID 3)"])

    # ---- MULTIAPPEND (RFC 3502) ----

    def test_multiappend(self):
        r = self.session()
        self.assertTrue(ok(r.cmd("c", "CREATE ma")))
        m1, m2, m3 = msg(1), msg(2, 50), msg(3, 5)
        r.send("A003 APPEND ma (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {%d}\r\n" % len(m1))
        self.assertTrue(r.line().startswith("+"))
        r.send(m1 + b" (\\Flagged kw1) {%d}\r\n" % len(m2))
        self.assertTrue(r.line().startswith("+"))
        r.send(m2 + b" {%d+}\r\n" % len(m3) + m3 + b"\r\n")
        out = r.until_tag("A003")
        self.assertTrue(ok(out), out)
        m = re.search(r"\[APPENDUID (\d+) 1:3\]", out[-1])
        self.assertTrue(m, out)
        r.cmd("s", "SELECT ma")
        out = r.cmd("f", "FETCH 1:3 (FLAGS INTERNALDATE RFC822.SIZE)")
        # the date's instant is kept (shown in the server's zone)
        m = re.match(r'\* 1 FETCH \(FLAGS \(\\Seen \\Recent\) INTERNALDATE "([^"]+)" RFC822.SIZE %d\)'
                     % len(m1), out[0])
        self.assertTrue(m, out)
        when = datetime.datetime.strptime(m.group(1).strip(), "%d-%b-%Y %H:%M:%S %z")
        self.assertEqual(when.timestamp(), datetime.datetime(1994, 2, 8, 5, 52, 25,
                                                             tzinfo=datetime.timezone.utc).timestamp())
        self.assertTrue(re.match(r"\* 2 FETCH \(FLAGS \(\\Flagged \\Recent kw1\) INTERNALDATE .* RFC822.SIZE %d\)"
                                 % len(m2), out[1]), out)
        self.assertEqual(r.cmd("b", "FETCH 3 BODY.PEEK[]")[1:2], [m3.decode().split("\r\n")[0]])

    def test_multiappend_all_or_nothing(self):
        r = self.session()
        self.assertTrue(ok(r.cmd("c", "CREATE mb")))
        m1 = msg(1)
        # a zero-length second message: NO, the first is not kept either
        r.send(b"a APPEND mb {%d+}\r\n" % len(m1) + m1 + b" {0+}\r\n\r\n")
        out = r.until_tag("a")
        self.assertTrue(out[-1].startswith("a NO"), out)
        # a bad flag in the third: BAD, nothing appended
        r.send(b"b APPEND mb {%d+}\r\n" % len(m1) + m1 + b" {%d+}\r\n" % len(m1) + m1 +
               b" (\\Bogus) {%d+}\r\n" % len(m1) + m1 + b"\r\n")
        out = r.until_tag("b")
        self.assertTrue(out[-1].startswith("b BAD"), out)
        # a bad date
        r.send(b'c APPEND mb {%d+}\r\n' % len(m1) + m1 + b' "31-Foo-2020 00:00:00 +0000" {%d+}\r\n'
               % len(m1) + m1 + b"\r\n")
        self.assertTrue(r.until_tag("c")[-1].startswith("c BAD"))
        # a missing message after flags
        r.send(b"d APPEND mb {%d+}\r\n" % len(m1) + m1 + b" (\\Seen)\r\n")
        self.assertTrue(r.until_tag("d")[-1].startswith("d BAD"))
        self.assertEqual(r.cmd("s", "STATUS mb (MESSAGES)")[0], "* STATUS mb (MESSAGES 0)")
        # nonexistent target: TRYCREATE, nothing created
        r.send(b"e APPEND nosuch {%d+}\r\n" % len(m1) + m1 + b" {%d+}\r\n" % len(m1) + m1 + b"\r\n")
        self.assertTrue(r.until_tag("e")[-1].startswith("e NO [TRYCREATE]"))

    def test_append_with_imaplib_still_works(self):
        c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        self.addCleanup(c.logout)
        c.login("alice", "secret")
        c.create("one")
        typ, data = c.append("one", "(\\Seen)", imaplib.Time2Internaldate(0), msg(1))
        self.assertEqual(typ, "OK")
        self.assertIn(b"APPENDUID", data[0])


class ListExt(unittest.TestCase):
    """LIST-EXTENDED, LIST-STATUS, SPECIAL-USE with the default
    imap_special_use (attributes only, nothing created)."""

    def setUp(self):
        self.server = imap_server(self)

    def session(self):
        r = login(self.server)
        self.addCleanup(r.close)
        return r

    def mk(self, r, *boxes):
        for i, b in enumerate(boxes):
            out = r.cmd("mk%d" % i, "CREATE %s" % b)
            self.assertTrue(ok(out), out)

    def test_default_creates_nothing(self):
        r = self.session()
        out = r.cmd("l", 'LIST "" *')
        self.assertEqual(untagged(out), ['* LIST (\\HasNoChildren) "/" INBOX'])

    def test_special_use_attributes(self):
        r = self.session()
        self.mk(r, "Sent", "Trash", "Drafts", "Junk", "Archive", "Other")
        out = r.cmd("l", 'LIST "" *')
        for line in ('* LIST (\\HasNoChildren \\Sent) "/" Sent', '* LIST (\\HasNoChildren \\Trash) "/" Trash',
                     '* LIST (\\HasNoChildren \\Drafts) "/" Drafts', '* LIST (\\HasNoChildren \\Junk) "/" Junk',
                     '* LIST (\\HasNoChildren \\Archive) "/" Archive', '* LIST (\\HasNoChildren) "/" Other'):
            self.assertIn(line, out)
        # RFC 6154 §5.1's selection option: only the special-use folders
        out = r.cmd("l2", 'LIST (SPECIAL-USE) "" *')
        self.assertEqual(sorted(untagged(out)), sorted([
            '* LIST (\\HasNoChildren \\Archive) "/" Archive', '* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
            '* LIST (\\HasNoChildren \\Junk) "/" Junk', '* LIST (\\HasNoChildren \\Sent) "/" Sent',
            '* LIST (\\HasNoChildren \\Trash) "/" Trash']))
        out = r.cmd("l3", 'LIST "" % RETURN (SPECIAL-USE)')
        self.assertIn('* LIST (\\HasNoChildren \\Sent) "/" Sent', out)
        self.assertTrue(ok(out))

    def test_create_special_use(self):
        r = self.session()
        # RFC 6154 §5.2's example
        out = r.cmd("t1", "CREATE MySpecial (USE (\\Drafts \\Sent))")
        self.assertTrue(ok(out), out)
        out = r.cmd("t2", 'LIST "" MySpecial')
        self.assertEqual(untagged(out), ['* LIST (\\HasNoChildren \\Drafts \\Sent) "/" MySpecial'])
        out = r.cmd("t3", "CREATE Foo (USE (\\Bogus))")
        self.assertTrue(out[-1].startswith("t3 NO [USEATTR]"), out)
        self.assertEqual(untagged(r.cmd("t4", 'LIST "" Foo')), [])
        self.assertTrue(r.cmd("t5", "CREATE Foo (FOO (\\Sent))")[-1].startswith("t5 BAD"))
        self.assertTrue(r.cmd("t6", "CREATE Foo (USE)")[-1].startswith("t6 BAD"))
        # the use follows a rename, children too, and goes with a delete
        # (an mbox folder has no children: the parent is a directory)
        self.assertTrue(ok(r.cmd("t7", "CREATE Par/Kid (USE (\\Junk))")))
        self.assertTrue(ok(r.cmd("t8", "RENAME MySpecial Renamed")))
        self.assertTrue(ok(r.cmd("t8b", "RENAME Par Par2")))
        out = r.cmd("t9", 'LIST "" *')
        self.assertIn('* LIST (\\HasNoChildren \\Drafts \\Sent) "/" Renamed', out)
        self.assertIn('* LIST (\\HasNoChildren \\Junk) "/" Par2/Kid', out)
        self.assertFalse([l for l in out if "MySpecial" in l], out)
        self.assertTrue(ok(r.cmd("t10", "DELETE Par2/Kid")))
        self.assertTrue(ok(r.cmd("t11", "CREATE Par2/Kid")))
        self.assertIn('* LIST (\\HasNoChildren) "/" Par2/Kid', r.cmd("t12", 'LIST "" Par2/Kid'))
        # a fresh session sees it (kept by the store)
        r2 = self.session()
        self.assertIn('* LIST (\\HasNoChildren \\Drafts \\Sent) "/" Renamed', r2.cmd("t13", 'LIST "" Renamed'))

    def test_list_extended_subscribed(self):
        r = self.session()
        # RFC 5258 §5's folders, roughly
        self.mk(r, "Fruit/Apple", "Fruit/Banana", "Fruit/Peach", "Tofu", "Vegetable/Broccoli", "Vegetable/Corn")
        for b in ("Fruit/Banana", "Fruit/Peach", "Vegetable", "Vegetable/Broccoli"):
            self.assertTrue(ok(r.cmd("s", "SUBSCRIBE %s" % b)))
        self.assertTrue(ok(r.cmd("d", "DELETE Fruit/Peach")))
        out = r.cmd("A02", 'LIST (SUBSCRIBED) "" "*"')
        self.assertEqual(sorted(untagged(out)), sorted([
            '* LIST (\\HasNoChildren \\Subscribed) "/" Fruit/Banana',
            '* LIST (\\NonExistent \\Subscribed) "/" Fruit/Peach',
            '* LIST (\\Noselect \\HasChildren \\Subscribed) "/" Vegetable',
            '* LIST (\\HasNoChildren \\Subscribed) "/" Vegetable/Broccoli']))
        out = r.cmd("A03", 'LIST () "" "%" RETURN (CHILDREN SUBSCRIBED)')
        # (an mbox parent is a directory: \\Noselect)
        self.assertIn('* LIST (\\Noselect \\HasChildren) "/" Fruit', out)
        self.assertIn('* LIST (\\HasNoChildren) "/" Tofu', out)
        self.assertIn('* LIST (\\Noselect \\HasChildren \\Subscribed) "/" Vegetable', out)
        out = r.cmd("A04", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
        self.assertEqual(sorted(untagged(out)), sorted([
            '* LIST (\\Noselect \\HasChildren) "/" Fruit ("CHILDINFO" ("SUBSCRIBED"))',
            '* LIST (\\Noselect \\HasChildren \\Subscribed) "/" Vegetable ("CHILDINFO" ("SUBSCRIBED"))']))
        # a parent that is neither a folder nor subscribed
        self.assertTrue(ok(r.cmd("s2", "SUBSCRIBE Ghost/Child")))
        out = r.cmd("A05", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "G%"')
        self.assertEqual(untagged(out), ['* LIST (\\NonExistent) "/" Ghost ("CHILDINFO" ("SUBSCRIBED"))'])
        # CHILDINFO only for a subscribed descendant the pattern does not
        # match itself (RFC 5258 3.5): Vegetable/Broccoli is listed instead
        out = r.cmd("A05b", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "Veg*"')
        self.assertEqual(sorted(untagged(out)), sorted([
            '* LIST (\\Noselect \\HasChildren \\Subscribed) "/" Vegetable',
            '* LIST (\\HasNoChildren \\Subscribed) "/" Vegetable/Broccoli']))
        out = r.cmd("A05c", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" (Fruit Fruit/Banana Fruit/Peach)')
        self.assertEqual(untagged(out), ['* LIST (\\HasNoChildren \\Subscribed) "/" Fruit/Banana',
                                         '* LIST (\\NonExistent \\Subscribed) "/" Fruit/Peach'])
        # several patterns, each folder once
        out = r.cmd("A06", 'LIST "" (Tofu "Fruit/*" Tofu)')
        self.assertEqual(untagged(out), ['* LIST (\\HasNoChildren) "/" Fruit/Apple',
                                         '* LIST (\\HasNoChildren) "/" Fruit/Banana',
                                         '* LIST (\\HasNoChildren) "/" Tofu'])
        out = r.cmd("A07", 'LIST (REMOTE) "" Tofu')
        self.assertEqual(untagged(out), ['* LIST (\\HasNoChildren) "/" Tofu'])
        # the delimiter question still answers with extended syntax
        self.assertEqual(untagged(r.cmd("A08", 'LIST () "" ""')), ['* LIST (\\Noselect) "/" ""'])
        for bad in ('LIST (RECURSIVEMATCH) "" %', 'LIST (BOGUS) "" %', 'LIST "" % RETURN (BOGUS)',
                    'LIST "" % RETURN', 'LIST "" () ', 'LIST "" % RETURN (STATUS)',
                    'LIST "" % RETURN (STATUS (BOGUS))', 'LIST (SUBSCRIBED)', 'LIST "" % FOO (CHILDREN)'):
            out = r.cmd("b", bad)
            self.assertTrue(out[-1].startswith("b BAD"), (bad, out))

    def test_list_status(self):
        r = self.session()
        self.mk(r, "St1", "St2/", "St3")
        data = msg(1)
        r.send("a APPEND St1 {%d+}\r\n" % len(data))
        r.send(data + b"\r\n")
        self.assertTrue(ok(r.until_tag("a")))
        self.assertTrue(ok(r.cmd("d", "DELETE St3")))
        # RFC 5819 §2's example: STATUS right after each LIST line,
        # none for a \Noselect folder
        out = r.cmd("A01", 'LIST "" % RETURN (STATUS (MESSAGES UNSEEN SIZE))')
        lines = untagged(out)
        i = lines.index('* LIST (\\HasNoChildren) "/" St1')
        self.assertEqual(lines[i + 1], "* STATUS St1 (MESSAGES 1 UNSEEN 1 SIZE %d)" % len(data))
        i = lines.index('* LIST (\\HasNoChildren) "/" INBOX')
        self.assertEqual(lines[i + 1], "* STATUS INBOX (MESSAGES 0 UNSEEN 0 SIZE 0)")
        i = lines.index('* LIST (\\Noselect \\HasNoChildren) "/" St2')
        self.assertFalse(lines[i + 1:i + 2] and lines[i + 1].startswith("* STATUS St2"), lines)
        self.assertFalse([l for l in lines if "St3" in l])
        # with subscriptions: a \NonExistent one gets no STATUS
        r.cmd("s", "SUBSCRIBE Gone")
        out = r.cmd("A02", 'LIST (SUBSCRIBED) "" * RETURN (STATUS (MESSAGES))')
        self.assertEqual(untagged(out), ['* LIST (\\NonExistent \\Subscribed) "/" Gone'])

    def test_imaplib_list_status(self):
        c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        self.addCleanup(c.logout)
        c.login("alice", "secret")
        c.create("Sent")
        typ, data = c._simple_command("LIST", '""', "*", "RETURN", "(SPECIAL-USE STATUS (MESSAGES))")
        self.assertEqual(typ, "OK")
        lists = [l.decode() for l in c.untagged_responses.pop("LIST")]
        self.assertIn('(\\HasNoChildren \\Sent) "/" Sent', lists)
        status = [l.decode() for l in c.untagged_responses.pop("STATUS")]
        self.assertIn("Sent (MESSAGES 0)", status)


class SpecialUseAuto(unittest.TestCase):
    """imap_special_use with auto = create / subscribe (Dovecot's
    mailbox { auto }): made at login, seen by clients that look for them."""

    CONF = ("imap_special_use = Drafts:\\Drafts:subscribe, Sent:\\Sent:subscribe "
            "Trash:\\Trash:create Spam:\\Junk Archive/2026:\\Archive:subscribe\n")

    def setUp(self):
        self.server = imap_server(self, conf=self.CONF)

    def test_created_and_subscribed_at_login(self):
        r = login(self.server)
        self.addCleanup(r.close)
        out = r.cmd("l", 'LIST "" *')
        self.assertIn('* LIST (\\HasNoChildren \\Drafts) "/" Drafts', out)
        self.assertIn('* LIST (\\HasNoChildren \\Sent) "/" Sent', out)
        self.assertIn('* LIST (\\HasNoChildren \\Trash) "/" Trash', out)
        self.assertIn('* LIST (\\HasNoChildren \\Archive) "/" Archive/2026', out)
        self.assertFalse([l for l in out if "Spam" in l], out)   # auto = no
        out = r.cmd("ls", 'LSUB "" *')
        self.assertEqual(sorted(untagged(out)), ['* LSUB () "/" Archive/2026', '* LSUB () "/" Drafts',
                                                 '* LSUB () "/" Sent'])
        # an UNSUBSCRIBE stands at the next login; a DELETEd one comes back
        self.assertTrue(ok(r.cmd("u", "UNSUBSCRIBE Sent")))
        self.assertTrue(ok(r.cmd("d", "DELETE Trash")))
        r2 = login(self.server)
        self.addCleanup(r2.close)
        self.assertNotIn('* LSUB () "/" Sent', r2.cmd("ls", 'LSUB "" Sent'))
        self.assertIn('* LIST (\\HasNoChildren \\Trash) "/" Trash', r2.cmd("l", 'LIST "" Trash'))
        # the special-use selection as a client looking for them sends it
        c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        self.addCleanup(c.logout)
        c.login("alice", "secret")
        typ, data = c._simple_command("LIST", "(SPECIAL-USE)", '""', "*")
        lists = sorted(l.decode() for l in c.untagged_responses.pop("LIST"))
        self.assertEqual(lists, ['(\\HasNoChildren \\Archive) "/" Archive/2026', '(\\HasNoChildren \\Drafts) "/" Drafts',
                                 '(\\HasNoChildren \\Sent) "/" Sent', '(\\HasNoChildren \\Trash) "/" Trash'])

    def test_bad_config_refused(self):
        for bad in ("Sent:\\Bogus", "Sent", "INBOX:\\Sent", "Sent:\\Sent:sometimes", ":\\Sent"):
            s = imap_server(self, conf="imap_special_use = %s\n" % bad, start=False)
            p = s.cmd("check", "-c", s.conf_file)
            self.assertNotEqual(p.returncode, 0, (bad, p.stdout, p.stderr))
            self.assertIn(b"imap_special_use", p.stdout + p.stderr)
        s = imap_server(self, conf=self.CONF, start=False)
        p = s.cmd("check", "-c", s.conf_file)
        self.assertEqual(p.returncode, 0, (p.stdout, p.stderr))


class RealClient(unittest.TestCase):
    """curl (a real IMAP client: logs in, SELECTs the URL's mailbox, sends
    a custom command and prints the untagged replies) over what clients
    look for: special-use folders, SORT, THREAD, ESEARCH."""

    def test_curl(self):
        server = imap_server(self, conf="imap_special_use = Sent:\\Sent:subscribe Trash:\\Trash:create\n")
        r = login(server)
        self.addCleanup(r.close)
        self.assertTrue(ok(r.cmd("c", "CREATE box")))
        for i in range(3):
            data = ("Subject: s%d\r\nDate: Mon, %d Jan 2024 00:00:00 +0000\r\nMessage-ID: <m%d@x>\r\n%s\r\nx\r\n"
                    % (3 - i, 3 - i, i, "References: <m0@x>\r\n" if i else "")).encode()
            r.send("a APPEND box {%d+}\r\n" % len(data))
            r.send(data + b"\r\n")
            self.assertTrue(ok(r.until_tag("a")))

        def curl(path, cmd):
            p = subprocess.run(["curl", "-sS", "--max-time", "30", "-u", "alice:secret", "-X", cmd,
                                "imap://127.0.0.1:%d/%s" % (server.ports["imap"], path)],
                               capture_output=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            return p.stdout.decode().splitlines()

        self.assertEqual(curl("", 'LIST (SPECIAL-USE) "" *'),
                         ['* LIST (\\HasNoChildren \\Sent) "/" Sent', '* LIST (\\HasNoChildren \\Trash) "/" Trash'])
        self.assertEqual(curl("box", "SORT (DATE) UTF-8 ALL"), ["* SORT 3 2 1"])
        self.assertEqual(curl("box", "THREAD REFERENCES UTF-8 ALL"), ["* THREAD (1 (3)(2))"])
        out = curl("box", "SEARCH RETURN (MIN MAX COUNT) ALL")
        self.assertEqual(len(out), 1, out)
        self.assertTrue(re.match(r'\* ESEARCH \(TAG "[^"]+"\) MIN 1 MAX 3 COUNT 3$', out[0]), out)


if __name__ == "__main__":
    unittest.main()
