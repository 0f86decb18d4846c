"""mbsync (Debian's isync 1.4) against the real daemon: a full two-way
sync, Far = Postern over IMAP, Near = a Maildir, in plain IMAP, STARTTLS
and IMAPS with the certificate verified against the test's CA.

Each round compares the two sides whole: the same messages (by
Message-ID), the same flags (Maildir letters S F R D for \\Seen \\Flagged
\\Answered \\Draft) and the same bytes (mbsync stores LF line ends in the
Maildir and adds an X-TUID header to each message it propagates, which is
taken out before comparing). Rounds: the first pull of a folder with
flags and a subfolder; local flag changes, a local deletion and a new
local message pushed up; changes another session makes (STORE, EXPUNGE,
APPEND through imaplib) pulled down.

isync 1.4 uses COMPRESS=DEFLATE, UIDPLUS and LITERAL+ when offered (the
log below shows them) but neither CONDSTORE nor QRESYNC (isync plans them
for a later version): it reads UID FLAGS of the whole folder each time.
Nor does it look at SPECIAL-USE attributes; with `Patterns *` it creates
a Maildir for every folder it is shown, so the folders the daemon creates
at login (imap_special_use ...:create/subscribe) appear on the near side
after the first sync.
"""
import os
import re
import unittest

from clients_util import (client_server, home, imap, message, need, run, seed, server_state, test_ca)
from harness import test_cert

SPECIAL = ("imap_special_use = Drafts:\\Drafts:subscribe Sent:\\Sent:subscribe Trash:\\Trash:subscribe "
           "Junk:\\Junk:create Archive:\\Archive:create\n")
LETTERS = {"\\Seen": "S", "\\Flagged": "F", "\\Answered": "R", "\\Draft": "D"}


def strip_tuid(data):
    """mbsync 1.4 marks each message it copies, on whichever side it
    stores it, with an X-TUID header (to find it again without UIDPLUS)."""
    return re.sub(rb"(?m)^X-TUID: [^\r\n]*\r?\n", b"", data, count=1)


def letters(flags):
    return "".join(sorted(LETTERS[f] for f in flags if f in LETTERS))


@need("mbsync")
class Mbsync(unittest.TestCase):
    def setUp(self):
        self.server = client_server(self, conf=SPECIAL)
        self.home = home(self)
        self.mail = os.path.join(self.home, "Mail")
        os.makedirs(self.mail)

    def config(self, mode, cafile=None):
        port = self.server.ports["imaps" if mode == "IMAPS" else "imap"]
        text = ("IMAPAccount postern\nHost 127.0.0.1\nPort %d\nUser alice\nPass secret\nSSLType %s\n"
                "CertificateFile %s\nSystemCertificates no\nTimeout 20\n\n"
                "IMAPStore far\nAccount postern\n\n"
                "MaildirStore near\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\n"
                "Channel all\nFar :far:\nNear :near:\nPatterns *\nCreate Both\nExpunge Both\n"
                "Remove None\nSyncState *\n"
                % (port, mode, cafile or test_ca()[0], self.mail, self.mail))
        self.rc = os.path.join(self.home, ".mbsyncrc")
        with open(self.rc, "w") as f:
            f.write(text)

    def sync(self, ok=True):
        p = run(["mbsync", "-D", "-c", self.rc, "-a"], self.home, ok=ok)
        return p.returncode, (p.stdout + p.stderr).decode(errors="replace")

    def local_state(self, box):
        """{Message-ID: (Maildir flag letters, bytes without X-TUID)}"""
        d = os.path.join(self.mail, box)
        out = {}
        for sub in ("new", "cur"):
            for name in os.listdir(os.path.join(d, sub)):
                with open(os.path.join(d, sub, name), "rb") as f:
                    data = f.read()
                data = strip_tuid(data)
                mid = re.search(rb"(?mi)^Message-ID: *(\S+)", data).group(1).decode()
                flags = name.partition(":2,")[2]
                self.assertNotIn(mid, out, "duplicate in Maildir %s" % box)
                out[mid] = ("".join(sorted(flags)), data)
        return out

    def assert_same(self, box):
        """Both sides hold the same messages, flags and bytes."""
        far = server_state(self.server, box)
        near = self.local_state(box)
        self.assertEqual(sorted(far), sorted(near), box)
        for mid, (flags, data) in far.items():
            self.assertEqual(near[mid][0], letters(flags), "%s %s" % (box, mid))
            self.assertEqual(near[mid][1], strip_tuid(data).replace(b"\r\n", b"\n"), "%s %s" % (box, mid))
        return far

    def find(self, box, mid):
        for sub in ("new", "cur"):
            d = os.path.join(self.mail, box, sub)
            for name in os.listdir(d):
                with open(os.path.join(d, name), "rb") as f:
                    if ("Message-ID: %s" % mid).encode() in f.read():
                        return os.path.join(d, name)
        raise AssertionError("%s not in %s" % (mid, box))

    def scenario(self, mode):
        flags = [None, "(\\Seen)", "(\\Flagged)", "(\\Seen \\Answered)", "(\\Draft)", "(\\Seen \\Flagged)",
                 None, "(\\Seen $Label1)"]
        inbox = [(message(i), flags[i]) for i in range(8)]
        seed(self.server, "INBOX", inbox)
        seed(self.server, "Lists/dev", [(message(20 + i, "[dev] topic %d" % i), None) for i in range(3)])
        self.config(mode)

        # 1. the first pull
        rc, log = self.sync()
        far = self.assert_same("INBOX")
        self.assertEqual(len(far), 8)
        self.assertEqual(far["<c7@example.com>"][0], {"\\Seen", "$Label1"})
        self.assertEqual(len(self.assert_same("Lists/dev")), 3)
        # the special-use folders the daemon created at login are synced too
        for box in ("Drafts", "Sent", "Trash", "Junk", "Archive"):
            self.assertTrue(os.path.isdir(os.path.join(self.mail, box, "cur")), box)
        self.assertEqual(">>> 1 STARTTLS" in log, mode == "STARTTLS")
        self.assertRegex(log, r">>> \d+ COMPRESS DEFLATE")   # mbsync takes it; the rest goes compressed

        # 2. local changes pushed up: a flag, a deletion (T = trashed,
        # expunged by Expunge Both) and a new message
        p = self.find("INBOX", "<c0@example.com>")
        os.rename(p, p.rsplit(":2,", 1)[0] + ":2,FS")
        p = self.find("INBOX", "<c3@example.com>")
        os.rename(p, p.rsplit(":2,", 1)[0] + ":2,RST")
        new = message(100, "written locally").replace(b"\r\n", b"\n")
        with open(os.path.join(self.mail, "INBOX", "cur", "1700000000.1.local:2,S"), "wb") as f:
            f.write(new)
        self.sync()
        far = self.assert_same("INBOX")
        self.assertEqual(far["<c0@example.com>"][0], {"\\Flagged", "\\Seen"})
        self.assertNotIn("<c3@example.com>", far)
        self.assertEqual(far["<c100@example.com>"][0], {"\\Seen"})
        self.assertEqual(strip_tuid(far["<c100@example.com>"][1]), new.replace(b"\n", b"\r\n"))
        self.assertEqual(len(far), 8)

        # 3. another session changes the server side; the next sync pulls it
        c = imap(self.server)
        try:
            c.select("INBOX")
            typ, data = c.uid("SEARCH", "HEADER", "Message-ID", "c1@example.com")
            self.assertEqual(typ, "OK")
            c.uid("STORE", data[0].decode(), "-FLAGS", "(\\Seen)")
            typ, data = c.uid("SEARCH", "HEADER", "Message-ID", "c2@example.com")
            c.uid("STORE", data[0].decode(), "+FLAGS", "(\\Answered \\Seen)")
            typ, data = c.uid("SEARCH", "HEADER", "Message-ID", "c4@example.com")
            c.uid("STORE", data[0].decode(), "+FLAGS", "(\\Deleted)")
            self.assertEqual(c.expunge()[0], "OK")
            self.assertEqual(c.append("INBOX", "(\\Flagged)", None, message(101, "from another session"))[0], "OK")
            self.assertEqual(c.append("Lists/dev", None, None, message(102, "[dev] late"))[0], "OK")
        finally:
            c.logout()
        self.sync()
        far = self.assert_same("INBOX")
        self.assertEqual(len(far), 8)
        self.assertEqual(far["<c1@example.com>"][0], set())
        self.assertEqual(far["<c2@example.com>"][0], {"\\Flagged", "\\Answered", "\\Seen"})
        self.assertNotIn("<c4@example.com>", far)
        self.assertEqual(self.local_state("INBOX")["<c101@example.com>"][0], "F")
        self.assertEqual(len(self.assert_same("Lists/dev")), 4)

        # 4. nothing changed: a sync changes nothing on either side
        before = (server_state(self.server, "INBOX"), self.local_state("INBOX"))
        rc, log = self.sync()
        self.assertEqual((server_state(self.server, "INBOX"), self.local_state("INBOX")), before)
        self.assertEqual(re.findall(r">>> \d+ (?:APPEND|UID STORE|EXPUNGE)", log), [])
        return log

    def test_plain(self):
        self.scenario("None")

    def test_starttls(self):
        self.scenario("STARTTLS")

    def test_imaps(self):
        self.scenario("IMAPS")

    def test_folder_names_big_message_local_folder(self):
        """Folder names with [ ] space and modified UTF-7 go both ways; a
        big message with 8-bit text and long lines arrives byte for byte;
        a folder made on the near side is created on the server (Create
        Both) with its message."""
        names = ["a[b", "x]y", "sp ace", "B&APw-ro"]   # B&APw-ro: "Büro" in modified UTF-7
        for i, name in enumerate(names):
            seed(self.server, name, [(message(40 + i, "in %s" % name), "(\\Seen)")])
        text = ("Gr\u00fc\u00dfe aus M\u00fcnchen, \u00e9t\u00e9 \u2603 " * 40 + "\r\n") * 400
        big = message(60, "big", extra="Content-Type: text/plain; charset=utf-8\r\n"
                      "Content-Transfer-Encoding: 8bit\r\n", body=text).decode().encode("utf-8")
        self.assertGreater(len(big), 500000)
        seed(self.server, "INBOX", [(big, None)])
        local = os.path.join(self.mail, "Local", "proj")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(local, sub))
        mine = message(61, "local folder").replace(b"\r\n", b"\n")
        with open(os.path.join(local, "new", "1700000000.2.local"), "wb") as f:
            f.write(mine)
        self.config("IMAPS")
        self.sync()
        for name in names:
            self.assertEqual(len(self.assert_same(name)), 1, name)
        far = self.assert_same("INBOX")
        self.assertEqual(far["<c60@example.com>"][1], big)
        far = self.assert_same("Local/proj")
        self.assertEqual(strip_tuid(far["<c61@example.com>"][1]), mine.replace(b"\n", b"\r\n"))
        c = imap(self.server)
        try:
            typ, data = c.list('""', "*")
            self.assertIn(b'(\\HasNoChildren) "/" Local/proj', data)
            self.assertIn(b'(\\HasNoChildren) "/" a[b', data)
        finally:
            c.logout()
        rc, log = self.sync()
        self.assertEqual(re.findall(r">>> \d+ (?:APPEND|UID STORE|EXPUNGE|CREATE)", log), [])

    def test_untrusted_certificate_refused(self):
        """The CA file is really used: a server certificate it did not
        sign makes mbsync give up before logging in."""
        self.config("IMAPS", cafile=test_cert()[0])
        rc, log = self.sync(ok=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("certificate", log.lower())
        self.assertNotIn("AUTHENTICATE", log)


if __name__ == "__main__":
    unittest.main()
