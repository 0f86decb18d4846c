"""IMAP folder commands: CREATE / DELETE / RENAME, a hierarchy mapped to
directories, LIST with '*' and '%' and a reference, LSUB and
(UN)SUBSCRIBE, STATUS, modified UTF-7 names on the wire, UIDVALIDITY
kept across sessions and restarts and changed by delete + create."""
import os
import re
import unittest

from imap_util import Raw, deliver, imap_server, login, strip_timing


def st(lines):
    return [strip_timing(l) for l in lines]


class Folders(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self)

    def client(self):
        r = login(self.server)
        self.addCleanup(r.close)
        return r

    def uidvalidity(self, r, name):
        out = r.cmd("u", "STATUS %s (UIDVALIDITY)" % name)
        return int(re.search(r"UIDVALIDITY (\d+)", out[0]).group(1))

    def test_create_list_hierarchy(self):
        r = self.client()
        self.assertEqual(st(r.cmd("a", "LIST \"\" \"\"")), ['* LIST (\\Noselect) "/" ""', "a OK List completed."])
        self.assertEqual(st(r.cmd("b", "CREATE Work/Projects/2026")), ["b OK Create completed."])
        self.assertEqual(st(r.cmd("c", "CREATE Lists")), ["c OK Create completed."])
        self.assertEqual(st(r.cmd("d", "CREATE Lists")), ["d NO [ALREADYEXISTS] Mailbox already exists"])
        self.assertEqual(st(r.cmd("e", "CREATE inbox")), ["e NO [ALREADYEXISTS] Mailbox already exists"])
        out = st(r.cmd("f", 'LIST "" "*"'))
        self.assertEqual(out, ['* LIST (\\HasNoChildren) "/" INBOX',
                               '* LIST (\\HasNoChildren) "/" Lists',
                               '* LIST (\\Noselect \\HasChildren) "/" Work',
                               '* LIST (\\Noselect \\HasChildren) "/" Work/Projects',
                               '* LIST (\\HasNoChildren) "/" Work/Projects/2026',
                               "f OK List completed."])
        self.assertEqual(st(r.cmd("g", 'LIST "" "%"')), ['* LIST (\\HasNoChildren) "/" INBOX',
                                                         '* LIST (\\HasNoChildren) "/" Lists',
                                                         '* LIST (\\Noselect \\HasChildren) "/" Work',
                                                         "g OK List completed."])
        self.assertEqual(st(r.cmd("h", 'LIST "Work/" "%"')),
                         ['* LIST (\\Noselect \\HasChildren) "/" Work/Projects', "h OK List completed."])
        self.assertEqual(st(r.cmd("i", 'LIST "" "work/*"')), ["i OK List completed."])
        self.assertEqual(st(r.cmd("j", 'LIST "" "inbox"')), ['* LIST (\\HasNoChildren) "/" INBOX',
                                                             "j OK List completed."])
        # The hierarchy lives in directories under the mail root.
        home = self.server.path("home", "alice", "mail")
        self.assertTrue(os.path.isfile(os.path.join(home, "Work", "Projects", "2026")))
        self.assertIn("* 0 EXISTS", st(r.cmd("k", "SELECT Work/Projects/2026")))
        self.assertEqual(r.cmd("l", "SELECT Work")[-1][:4], "l NO")

    def test_delete_and_rename(self):
        r = self.client()
        r.cmd("a", "CREATE Old/Child")
        self.assertEqual(st(r.cmd("b", "RENAME Old New")), ["b OK Rename completed."])
        out = st(r.cmd("c", 'LIST "" "*"'))
        self.assertIn('* LIST (\\HasNoChildren) "/" New/Child', out)
        self.assertFalse([l for l in out if "Old" in l])
        self.assertEqual(st(r.cmd("d", "DELETE New/Child")), ["d OK Delete completed."])
        self.assertEqual(st(r.cmd("e", "DELETE INBOX")), ["e NO INBOX can't be deleted."])
        self.assertEqual(r.cmd("f", "DELETE Nope")[0][:4], "f NO")
        self.assertEqual(r.cmd("g", "RENAME Nope Other")[0][:4], "g NO")
        self.assertEqual(r.cmd("h", "RENAME New INBOX")[0][:4], "h NO")

    def test_rename_inbox_moves_messages(self):
        deliver(self.server, "alice@example.com.ar", n_expected=1)
        deliver(self.server, "alice@example.com.ar", n_expected=2)
        r = self.client()
        self.assertEqual(st(r.cmd("a", "RENAME INBOX Saved")), ["a OK Rename completed."])
        self.assertEqual(r.cmd("b", "STATUS Saved (MESSAGES)")[0], "* STATUS Saved (MESSAGES 2)")
        self.assertEqual(r.cmd("c", "STATUS INBOX (MESSAGES)")[0], "* STATUS INBOX (MESSAGES 0)")

    def test_subscriptions(self):
        r = self.client()
        r.cmd("a", "CREATE Lists/debian")
        self.assertEqual(st(r.cmd("b", "SUBSCRIBE Lists/debian")), ["b OK Subscribe completed."])
        r.cmd("c", "SUBSCRIBE INBOX")
        out = st(r.cmd("d", 'LSUB "" "*"'))
        self.assertEqual(out[-1], "d OK Lsub completed.")
        self.assertEqual(sorted(out[:-1]), ['* LSUB () "/" INBOX', '* LSUB () "/" Lists/debian'])
        self.assertEqual(st(r.cmd("e", "UNSUBSCRIBE Lists/debian")), ["e OK Unsubscribe completed."])
        self.assertEqual(st(r.cmd("f", 'LSUB "" "Lists/*"')), ["f OK Lsub completed."])
        # Subscriptions survive a new session.
        r2 = self.client()
        self.assertEqual(st(r2.cmd("g", 'LSUB "" "%"')), ['* LSUB () "/" INBOX', "g OK Lsub completed."])

    def test_status(self):
        deliver(self.server, "alice@example.com.ar", n_expected=1)
        r = self.client()
        out = st(r.cmd("a", "STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)"))
        self.assertRegex(out[0], r"^\* STATUS INBOX \(MESSAGES 1 RECENT 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)$")
        self.assertEqual(out[1], "a OK Status completed.")
        self.assertEqual(r.cmd("b", "STATUS INBOX (FROB)")[0][:5], "b BAD")
        self.assertEqual(r.cmd("c", "STATUS nosuch (MESSAGES)")[0][:4], "c NO")

    def test_modified_utf7_names(self):
        r = self.client()
        # "Entwürfe" and a name with a space and '&'.
        self.assertEqual(st(r.cmd("a", "CREATE Entw&APw-rfe")), ["a OK Create completed."])
        self.assertEqual(st(r.cmd("b", 'CREATE "Tom &- Jerry"')), ["b OK Create completed."])
        out = st(r.cmd("c", 'LIST "" "*"'))
        self.assertIn('* LIST (\\HasNoChildren) "/" Entw&APw-rfe', out)
        self.assertIn('* LIST (\\HasNoChildren) "/" "Tom &- Jerry"', out)
        # UTF-8 on disk.
        home = self.server.path("home", "alice", "mail")
        self.assertTrue(os.path.exists(os.path.join(home, "Entwürfe")))
        # not valid mUTF-7: NO as Dovecot answers (a name, not a syntax error)
        self.assertEqual(r.cmd("d", "CREATE Bad&-name&Zm9v")[0], "d NO Mailbox name is not valid mUTF-7")
        self.assertIn("* 0 EXISTS", st(r.cmd("e", "SELECT Entw&APw-rfe")))

    def test_uidvalidity_persists_and_changes(self):
        r = self.client()
        r.cmd("a", "CREATE Box")
        v1 = self.uidvalidity(r, "Box")
        v_inbox = self.uidvalidity(r, "INBOX")
        r.cmd("b", "LOGOUT")
        r2 = self.client()
        self.assertEqual(self.uidvalidity(r2, "Box"), v1)
        r2.cmd("c", "LOGOUT")
        self.server.stop()
        self.server.start(wait_port=self.server.ports["imap"])
        r3 = self.client()
        self.assertEqual(self.uidvalidity(r3, "Box"), v1)
        self.assertEqual(self.uidvalidity(r3, "INBOX"), v_inbox)
        r3.cmd("d", "DELETE Box")
        r3.cmd("e", "CREATE Box")
        self.assertNotEqual(self.uidvalidity(r3, "Box"), v1)

    def test_append_trycreate_then_create(self):
        r = self.client()
        msg = "Subject: x\r\n\r\ny\r\n"
        r.send("a APPEND Later {%d+}\r\n%s\r\n" % (len(msg), msg))
        self.assertEqual(r.until_tag("a"), ["a NO [TRYCREATE] Mailbox doesn't exist: Later"])
        r.cmd("b", "CREATE Later")
        r.send("c APPEND Later {%d+}\r\n%s\r\n" % (len(msg), msg))
        self.assertRegex(strip_timing(r.until_tag("c")[-1]), r"^c OK \[APPENDUID \d+ 1\] Append completed\.$")


if __name__ == "__main__":
    unittest.main()
