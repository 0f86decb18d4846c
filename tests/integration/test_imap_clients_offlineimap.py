"""offlineimap (Debian's offlineimap3) against the real daemon: IMAP to
Maildir, then a second sync after changes on both sides (a local flag,
a local deletion, a new local message; another session's STORE, EXPUNGE
and APPEND), over IMAPS and STARTTLS with the certificate checked against
the test's CA (sslcacertfile; Python's check of the IP address in the
certificate).

After each sync the two sides must hold the same messages (by
Message-ID), the same flags (Maildir letters S F R D) and the same bytes
(offlineimap writes LF line ends into the Maildir and sends CRLF).
This offlineimap uses UIDPLUS (APPENDUID) to learn the UID of what it
uploads (no X-OfflineIMAP header is added), and reads FLAGS UID
INTERNALDATE of every message each time: no CONDSTORE or QRESYNC.
"""
import os
import re
import unittest

from clients_util import client_server, home, imap, message, need, run, seed, server_state, test_ca

LETTERS = {"\\Seen": "S", "\\Flagged": "F", "\\Answered": "R", "\\Draft": "D"}


def letters(flags):
    return "".join(sorted(LETTERS[f] for f in flags if f in LETTERS))


@need("offlineimap")
class OfflineImap(unittest.TestCase):
    def setUp(self):
        self.server = client_server(self, conf="imap_special_use = Sent:\\Sent:subscribe Trash:\\Trash:subscribe\n")
        self.home = home(self)
        self.mail = os.path.join(self.home, "Mail")

    def config(self, tls):
        port = self.server.ports["imaps" if tls == "imaps" else "imap"]
        text = ("[general]\naccounts = a\nmetadata = %s/meta\n\n"
                "[Account a]\nlocalrepository = L\nremoterepository = R\n\n"
                "[Repository L]\ntype = Maildir\nlocalfolders = %s\n\n"
                "[Repository R]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = %d\n"
                "remoteuser = alice\nremotepass = secret\nssl = %s\nstarttls = %s\nsslcacertfile = %s\n"
                % (self.home, self.mail, port, "yes" if tls == "imaps" else "no",
                   "yes" if tls == "starttls" else "no", test_ca()[0]))
        self.rc = os.path.join(self.home, ".offlineimaprc")
        with open(self.rc, "w") as f:
            f.write(text)

    def sync(self, debug=True):
        # -d imap shows the protocol but also makes offlineimap single-threaded
        argv = ["offlineimap", "-c", self.rc, "-o", "-u", "basic"] + (["-d", "imap"] if debug else [])
        # A hang fails with what the client said before it (clients_util.run).
        # The sporadic wait after STARTTLS that offlineimap once showed here
        # was imaplib2 losing its first command to a race with the server's
        # TLS 1.3 session tickets: the server now sends those in front of
        # its first answer (test_tls_tickets).
        p = run(argv, self.home, timeout=50)
        log = (p.stdout + p.stderr).decode(errors="replace")
        # offlineimap reports errors in its log and still exits 0
        self.assertNotRegex(log, r"(?m)^ERROR|Traceback", log[-4000:])
        return log

    def local_state(self, box):
        d = os.path.join(self.mail, box)
        out = {}
        for sub in ("new", "cur"):
            for name in os.listdir(os.path.join(d, sub)):
                with open(os.path.join(d, sub, name), "rb") as f:
                    data = f.read()
                mid = re.search(rb"(?mi)^Message-ID: *(\S+)", data).group(1).decode()
                self.assertNotIn(mid, out)
                out[mid] = ("".join(sorted(name.partition(":2,")[2])), data, os.path.join(d, sub, name))
        return out

    def assert_same(self, box):
        far = server_state(self.server, box)
        near = self.local_state(box)
        self.assertEqual(sorted(far), sorted(near), box)
        for mid, (flags, data) in far.items():
            self.assertEqual(near[mid][0], letters(flags), "%s %s" % (box, mid))
            self.assertEqual(near[mid][1], data.replace(b"\r\n", b"\n"), "%s %s" % (box, mid))
        return far

    def scenario(self, tls):
        flags = [None, "(\\Seen)", "(\\Flagged)", "(\\Seen \\Answered)", "(\\Draft)", None]
        seed(self.server, "INBOX", [(message(i), flags[i]) for i in range(6)])
        seed(self.server, "work", [(message(30 + i, "work %d" % i), "(\\Seen)") for i in range(2)])
        self.config(tls)
        log = self.sync()
        self.assertEqual(len(self.assert_same("INBOX")), 6)
        self.assertEqual(len(self.assert_same("work")), 2)
        for box in ("Sent", "Trash"):   # created by the daemon at login
            self.assertTrue(os.path.isdir(os.path.join(self.mail, box, "cur")), box)
        self.assertEqual("STARTTLS" in log, tls == "starttls")

        # changes on both sides between two syncs
        near = self.local_state("INBOX")
        p = near["<c0@example.com>"][2]
        os.rename(p, os.path.join(self.mail, "INBOX", "cur", os.path.basename(p).split(":2,")[0] + ":2,FS"))
        os.unlink(near["<c3@example.com>"][2])
        new = message(100, "written locally").replace(b"\r\n", b"\n")
        with open(os.path.join(self.mail, "INBOX", "new", "1700000000.1.local"), "wb") as f:
            f.write(new)
        # a folder made on the Maildir side (offlineimap creates it on the server)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(self.mail, "proj", sub))
        mine = message(103, "in a local folder").replace(b"\r\n", b"\n")
        with open(os.path.join(self.mail, "proj", "cur", "1700000000.2.local:2,S"), "wb") as f:
            f.write(mine)
        c = imap(self.server)
        try:
            c.select("INBOX")
            typ, data = c.uid("SEARCH", "HEADER", "Message-ID", "c1@example.com")
            c.uid("STORE", data[0].decode(), "-FLAGS", "(\\Seen)")
            typ, data = c.uid("SEARCH", "HEADER", "Message-ID", "c5@example.com")
            c.uid("STORE", data[0].decode(), "+FLAGS", "(\\Answered)")
            typ, data = c.uid("SEARCH", "HEADER", "Message-ID", "c4@example.com")
            c.uid("STORE", data[0].decode(), "+FLAGS", "(\\Deleted)")
            self.assertEqual(c.expunge()[0], "OK")
            self.assertEqual(c.append("INBOX", "(\\Flagged \\Seen)", None, message(101, "from another session"))[0], "OK")
            self.assertEqual(c.append("work", None, None, message(102, "late work"))[0], "OK")
        finally:
            c.logout()
        log = self.sync()
        self.assertRegex(log, r"writer > b'\w+ APPEND INBOX")
        far = self.assert_same("INBOX")
        self.assertEqual(sorted(far), sorted("<c%d@example.com>" % i for i in (0, 1, 2, 5, 100, 101)))
        self.assertEqual(far["<c0@example.com>"][0], {"\\Flagged", "\\Seen"})
        self.assertEqual(far["<c1@example.com>"][0], set())
        self.assertEqual(far["<c5@example.com>"][0], {"\\Answered"})
        self.assertEqual(far["<c101@example.com>"][0], {"\\Flagged", "\\Seen"})
        self.assertEqual(far["<c100@example.com>"][1], new.replace(b"\n", b"\r\n"))
        self.assertEqual(len(self.assert_same("work")), 3)
        self.assertEqual(server_state(self.server, "proj"), {"<c103@example.com>": ({"\\Seen"}, mine.replace(b"\n", b"\r\n"))})

        # a third sync with nothing changed writes nothing anywhere
        log = self.sync()
        self.assertEqual(re.findall(r"writer > b'\w+ (?:APPEND|UID STORE|EXPUNGE)", log), [])
        self.assert_same("INBOX")

    def test_parallel_connections(self):
        """maxconnections = 4: offlineimap syncs folders in threads over
        four sessions of the same user at once, both ways."""
        boxes = ["p%d" % i for i in range(8)]
        for i, box in enumerate(boxes):
            seed(self.server, box, [(message(200 + 10 * i + j, "%s %d" % (box, j)), "(\\Seen)" if j % 2 else None)
                                    for j in range(6)])
        self.config("imaps")
        with open(self.rc, "a") as f:
            f.write("maxconnections = 4\n")
        logins = self.server.log().count("Login: user=<alice>")
        self.sync(debug=False)
        self.assertGreater(self.server.log().count("Login: user=<alice>") - logins, 1)
        for box in boxes:
            self.assertEqual(len(self.assert_same(box)), 6, box)
        # a new message in every local folder, pushed over the parallel sessions
        for i, box in enumerate(boxes):
            with open(os.path.join(self.mail, box, "new", "1700000001.%d.local" % i), "wb") as f:
                f.write(message(300 + i, "local %s" % box).replace(b"\r\n", b"\n"))
        self.sync(debug=False)
        for box in boxes:
            self.assertEqual(len(self.assert_same(box)), 7, box)

    def test_imaps(self):
        self.scenario("imaps")

    def test_starttls(self):
        self.scenario("starttls")


if __name__ == "__main__":
    unittest.main()
