"""curl (libcurl's IMAP and POP3) against the real daemon: LIST, LIST
(SPECIAL-USE) of the folders created at login, EXAMINE, FETCH by URL,
SEARCH, SORT and THREAD as custom requests (-X), APPEND by upload, POP3
LIST, UIDL and RETR; over imaps://, imap:// with STARTTLS (--ssl-reqd)
and pop3s://, with the certificate checked against the test's CA
(--cacert; no --insecure anywhere)."""
import re
import unittest

from clients_util import client_server, home, imap, message, need, run, seed, test_ca
from harness import test_cert

SPECIAL = ("imap_special_use = Drafts:\\Drafts:subscribe Sent:\\Sent:subscribe Trash:\\Trash:subscribe "
           "Junk:\\Junk:create Archive:\\Archive:create\n")


@need("curl")
class Curl(unittest.TestCase):
    def setUp(self):
        self.server = client_server(self, conf=SPECIAL)
        self.home = home(self)
        self.msgs = [message(i, extra="X-Seq: %d\r\n" % i,
                             body="line %d\r\n.starts with a dot\r\nFrom the mbox side\r\n" % i) for i in range(6)]
        flags = [None, "(\\Seen)", "(\\Flagged)", None, "(\\Seen \\Answered)", None]
        seed(self.server, "INBOX", list(zip(self.msgs, flags)))

    def curl(self, url, *args, ok=True, cafile=None):
        p = run(["curl", "-sS", "--max-time", "20", "--cacert", cafile or test_ca()[0], "-u", "alice:secret"]
                + list(args) + [url], self.home, ok=ok)
        return p.stdout if ok else p

    def imaps(self, path=""):
        return "imaps://127.0.0.1:%d/%s" % (self.server.ports["imaps"], path)

    def test_list_and_special_use(self):
        out = self.curl(self.imaps()).decode()
        names = re.findall(r'^\* LIST \([^)]*\) "/" (\S+)\r?$', out, re.M)
        self.assertEqual(sorted(names), ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"], out)
        out = self.curl(self.imaps(), "-X", 'LIST (SPECIAL-USE) "" "*"').decode()
        uses = dict((m.group(2), m.group(1)) for m in re.finditer(r'^\* LIST \(\\HasNoChildren (\\\w+)\) "/" (\S+)\r?$',
                                                                  out, re.M))
        self.assertEqual(uses, {"Archive": "\\Archive", "Drafts": "\\Drafts", "Junk": "\\Junk",
                                "Sent": "\\Sent", "Trash": "\\Trash"}, out)
        out = self.curl(self.imaps(), "-X", 'LSUB "" "*"').decode()
        self.assertEqual(sorted(re.findall(r'"/" (\S+)\r?$', out, re.M)), ["Drafts", "Sent", "Trash"], out)

    def test_examine_fetch_search(self):
        out = self.curl(self.imaps("INBOX"), "-X", "EXAMINE INBOX").decode()
        self.assertIn("* 6 EXISTS", out)
        self.assertIn("[UIDNEXT 7]", out)
        self.assertIn("[PERMANENTFLAGS ()]", out)
        out = self.curl(self.imaps("INBOX"), "-X", "FETCH 1:* (FLAGS)").decode()
        self.assertEqual(self.flags(out), ["", "\\Seen", "\\Flagged", "", "\\Answered \\Seen", ""])
        # a message by URL: the bytes as appended (dot and From lines
        # intact); curl fetches BODY[] (not .PEEK), which sets \Seen
        for uid in (1, 4, 6):
            self.assertEqual(self.curl(self.imaps("INBOX;UID=%d" % uid)), self.msgs[uid - 1])
        self.assertEqual(self.curl(self.imaps("INBOX;UID=3;SECTION=HEADER.FIELDS%20(SUBJECT)")),
                         b"Subject: message 2\r\n\r\n")
        out = self.curl(self.imaps("INBOX"), "-X", "FETCH 1:* (FLAGS)").decode()
        self.assertEqual(self.flags(out), ["\\Seen", "\\Seen", "\\Flagged \\Seen", "\\Seen", "\\Answered \\Seen",
                                           "\\Seen"])
        self.assertIn("* SEARCH 3", self.curl(self.imaps("INBOX?SUBJECT%20%22message%202%22")).decode())
        self.assertIn("* SEARCH 1 2 4 5 6", self.curl(self.imaps("INBOX"), "-X", "UID SEARCH UNFLAGGED").decode())
        out = self.curl(self.imaps("INBOX"), "-X", "SEARCH RETURN (MIN MAX COUNT) HEADER X-Seq 4").decode()
        self.assertIn("* ESEARCH (TAG", out)
        self.assertIn("MIN 5 MAX 5 COUNT 1", out)
        # Date: headers 10:00 .. 10:05; the same internal date (appended in
        # one second) ties, and ties go by sequence number even in REVERSE
        self.assertIn("* SORT 6 5 4 3 2 1", self.curl(self.imaps("INBOX"), "-X", "SORT (REVERSE DATE) UTF-8 ALL").decode())
        self.assertIn("* THREAD (1)(2)(3)(4)(5)(6)",
                      self.curl(self.imaps("INBOX"), "-X", "THREAD REFERENCES UTF-8 ALL").decode())
        # the \Seen flags curl's fetches set are the server's, for everyone
        c = imap(self.server)
        try:
            c.select("INBOX", readonly=True)
            self.assertEqual(c.search(None, "SEEN")[1], [b"1 2 3 4 5 6"])
        finally:
            c.logout()

    @staticmethod
    def flags(out):
        """Flags of each "* n FETCH (FLAGS (...))" line in order, sorted."""
        return [" ".join(sorted(f.split())) for f in re.findall(r"\* \d+ FETCH \(FLAGS \(([^)]*)\)\)", out)]

    def test_starttls_and_upload(self):
        """APPEND by upload over imap:// with STARTTLS required, read
        back byte for byte."""
        up = message(50, "uploaded by curl")
        path = self.home + "/up.eml"
        with open(path, "wb") as f:
            f.write(up)
        url = "imap://127.0.0.1:%d/" % self.server.ports["imap"]
        self.curl(url + "Sent", "--ssl-reqd", "-T", path)
        self.assertEqual(self.curl(url + "Sent;UID=1", "--ssl-reqd"), up)
        # curl uploads with APPEND "Sent" (\Seen) {n}
        self.assertIn("* STATUS Sent (MESSAGES 1 UNSEEN 0)",
                      self.curl(url, "--ssl-reqd", "-X", "STATUS Sent (MESSAGES UNSEEN)").decode())

    def test_pop3(self):
        url = "pop3s://127.0.0.1:%d/" % self.server.ports["pop3s"]
        out = self.curl(url).decode()
        self.assertEqual([l.split() for l in out.splitlines()],
                         [[str(i + 1), str(len(m))] for i, m in enumerate(self.msgs)])
        uidl = self.curl(url, "-X", "UIDL").decode().split()
        self.assertEqual(len(uidl), 12)
        self.assertEqual(len(set(uidl[1::2])), 6)
        # RETR undoes the dot-stuffing: the original bytes
        for n in (1, 6):
            self.assertEqual(self.curl(url + str(n)), self.msgs[n - 1])
        # plain pop3:// with STLS
        url = "pop3://127.0.0.1:%d/" % self.server.ports["pop3"]
        self.assertEqual(self.curl(url + "3", "--ssl-reqd"), self.msgs[2])
        # curl's RETR and LIST leave the maildrop as it was
        c = imap(self.server)
        try:
            self.assertEqual(c.select("INBOX", readonly=True)[1], [b"6"])
        finally:
            c.logout()

    def test_untrusted_certificate_refused(self):
        p = self.curl(self.imaps(), ok=False, cafile=test_cert()[0])
        self.assertEqual(p.returncode, 60, p.stderr)   # peer certificate cannot be authenticated


if __name__ == "__main__":
    unittest.main()
