"""mutt (2.2) against the real daemon, driven in batch: its keystrokes
come from `-e 'push ...'` on its command line, it runs on a pseudo
terminal of its own (it is a full-screen program) and its IMAP
conversation is read from its debug log (-d 5).

- Over IMAPS with the certificate checked against the test's CA
  (ssl_ca_certificates_file; an unverifiable one would make mutt ask the
  user, which a batch run cannot answer): tag by pattern and delete,
  copy to another folder (a server-side UID COPY), flag; the result is
  checked on the server with imaplib.
- A CONDSTORE/QRESYNC resync by a real client: mutt with a header cache
  and imap_qresync opens INBOX, another session (imaplib) then changes
  flags, expunges and appends, and mutt's next open over STARTTLS asks
  only for what changed (UID FETCH ... (CHANGEDSINCE m VANISHED)); what
  mutt then sees -- every message it pipes out, the ones it counts as
  flagged -- must be the server's state.
- POP3 over pop3s: UIDL, RETR of every message, DELE of one.

mutt threads and sorts on its own side (sort=threads below): it has no
setting to use the server's SORT or THREAD, and the log shows it sends
neither.
"""
import os
import re
import unittest

from clients_util import client_server, home, imap, message, need, run_pty, seed, server_state, test_ca


@need("mutt")
class Mutt(unittest.TestCase):
    def setUp(self):
        self.server = client_server(self, conf="imap_special_use = Archive:\\Archive:create Trash:\\Trash:create\n")
        self.home = home(self)
        self.out = os.path.join(self.home, "piped")
        os.makedirs(self.out)
        self.save = os.path.join(self.home, "save.sh")
        with open(self.save, "w") as f:
            f.write('#!/bin/sh\nn=$(ls "%s" | wc -l)\nexec cat > "%s/$(printf %%03d $n)"\n' % (self.out, self.out))
        os.chmod(self.save, 0o755)

    def muttrc(self, url, qresync=False):
        text = ("set imap_user=alice\nset imap_pass=secret\n"
                "set ssl_ca_certificates_file=%s\nset certificate_file=%s/certs\n"
                "set ssl_force_tls=yes\nset ssl_verify_host=yes\n"
                "set folder=%s\nset spoolfile=+INBOX\nset record=\"\"\nset postponed=\"\"\n"
                "set mail_check=600\nset timeout=600\nset imap_keepalive=600\n"
                "set confirmappend=no\nset confirmcreate=no\nset delete=yes\nset quit=yes\nset move=no\n"
                "set wait_key=no\nset beep=no\nset sort=threads\nset pipe_split=yes\nset pipe_decode=no\nset pipe_sep=\"\"\n"
                % (test_ca()[0], self.home, url))
        if qresync:
            text += "set header_cache=%s/hcache\nset imap_condstore=yes\nset imap_qresync=yes\n" % self.home
        path = os.path.join(self.home, "muttrc")
        with open(path, "w") as f:
            f.write(text)
        return path

    def mutt(self, rc, keys):
        log = os.path.join(self.home, ".muttdebug0")
        if os.path.exists(log):
            os.unlink(log)
        status, screen = run_pty(["mutt", "-n", "-F", rc, "-d", "5", "-e", 'push "%s"' % keys], self.home)
        with open(log, errors="replace") as f:
            debug = f.read()
        self.assertEqual(status, 0, screen[-2000:])
        # the commands mutt sent, tag and all
        sent = re.findall(r"\] \d+> (a\d+ .*)", debug)
        self.assertTrue(sent, debug[-3000:])
        return sent, debug

    def piped(self):
        out = []
        for name in sorted(os.listdir(self.out)):
            with open(os.path.join(self.out, name), "rb") as f:
                out.append(f.read())
        return out

    def test_tag_delete_copy_flag(self):
        subjects = ["keep 0", "delete me 1", "keep 2", "delete me 3", "to archive 4", "keep 5"]
        msgs = [message(i, subjects[i]) for i in range(6)]
        seed(self.server, "INBOX", [(m, None) for m in msgs])
        rc = self.muttrc("imaps://127.0.0.1:%d/" % self.server.ports["imaps"])
        sent, debug = self.mutt(rc, "<tag-pattern>~s delete<enter><tag-prefix><delete-message>"
                                    "<untag-pattern>~A<enter>"
                                    "<tag-pattern>~s archive<enter><tag-prefix><copy-message>=Archive<enter>"
                                    "<untag-pattern>~A<enter>"
                                    "<tag-pattern>~s keep.2<enter><tag-prefix><flag-message>"
                                    "<sync-mailbox><quit>")
        inbox = server_state(self.server, "INBOX")
        self.assertEqual(sorted(inbox), ["<c%d@example.com>" % i for i in (0, 2, 4, 5)])
        self.assertIn("\\Flagged", inbox["<c2@example.com>"][0])
        self.assertNotIn("\\Flagged", inbox["<c0@example.com>"][0])
        for i in (0, 2, 4, 5):
            self.assertEqual(inbox["<c%d@example.com>" % i][1], msgs[i])
        archive = server_state(self.server, "Archive")
        self.assertEqual(list(archive), ["<c4@example.com>"])
        self.assertEqual(archive["<c4@example.com>"][1], msgs[4])
        # a server-side copy and an expunge, no SORT or THREAD asked for
        self.assertTrue(any(re.match(r"a\d+ UID COPY \d+ \"?Archive\"?$", s) for s in sent), sent)
        self.assertTrue(any(re.match(r"a\d+ (UID )?EXPUNGE", s) for s in sent), sent)
        self.assertFalse(any(re.match(r"a\d+ (UID )?(SORT|THREAD)\b", s) for s in sent), sent)
        self.assertIn("* OK [CAPABILITY", debug)   # it spoke to the IMAPS port, TLS first

    def test_pop3(self):
        """mutt -f pops://: every message read (RETR) byte for byte, one
        deleted by pattern (DELE at QUIT), the rest left on the server."""
        msgs = [message(i, "pop %d%s" % (i, " drop" if i == 2 else "")) for i in range(4)]
        seed(self.server, "INBOX", [(m, None) for m in msgs])
        rc = os.path.join(self.home, "muttrc-pop")
        with open(rc, "w") as f:
            # folder: a local directory, so mutt asks nothing at start
            f.write("set pop_user=alice\nset pop_pass=secret\nset ssl_ca_certificates_file=%s\n"
                    "set certificate_file=%s/certs\nset ssl_force_tls=yes\nset folder=%s\n"
                    "set record=\"\"\nset postponed=\"\"\nset mail_check=600\nset delete=yes\nset quit=yes\n"
                    "set move=no\nset wait_key=no\nset beep=no\nset pipe_split=yes\nset pipe_sep=\"\"\n"
                    % (test_ca()[0], self.home, self.home))
        log = os.path.join(self.home, ".muttdebug0")
        status, screen = run_pty(["mutt", "-n", "-F", rc, "-d", "5", "-f",
                                  "pops://127.0.0.1:%d/" % self.server.ports["pop3s"], "-e",
                                  'push "<tag-pattern>~A<enter><tag-prefix><pipe-message>%s<enter>'
                                  '<untag-pattern>~A<enter><tag-pattern>~s drop<enter><tag-prefix><delete-message>'
                                  '<quit>"' % self.save], self.home)
        self.assertEqual(status, 0, screen[-2000:])
        with open(log, errors="replace") as f:
            sent = re.findall(r"\] \d+> (.*)", f.read())
        self.assertIn("UIDL", sent)
        self.assertIn("DELE 3", sent)
        self.assertEqual(sorted(self.piped()), sorted(m.replace(b"\r\n", b"\n") for m in msgs))
        left = server_state(self.server, "INBOX")
        self.assertEqual(sorted(left), ["<c0@example.com>", "<c1@example.com>", "<c3@example.com>"])
        self.assertEqual(left["<c3@example.com>"][1], msgs[3])

    def test_qresync_resync_after_other_session(self):
        msgs = [message(i) for i in range(8)]
        flags = [None, "(\\Seen)", "(\\Flagged)", None, "(\\Seen \\Flagged)", None, None, "(\\Answered)"]
        seed(self.server, "INBOX", list(zip(msgs, flags)))
        rc = self.muttrc("imap://127.0.0.1:%d/" % self.server.ports["imap"], qresync=True)
        pipe_all = "<tag-pattern>~A<enter><tag-prefix><pipe-message>%s<enter><untag-pattern>~A<enter>" % self.save
        sent, debug = self.mutt(rc, pipe_all + "<quit>")
        self.assertIn("STARTTLS", " ".join(sent))
        self.assertTrue(any("ENABLE QRESYNC" in s for s in sent) or "ENABLED QRESYNC" in debug, sent)
        self.assertEqual(sorted(self.piped()), sorted(m.replace(b"\r\n", b"\n") for m in msgs))
        for name in os.listdir(self.out):
            os.unlink(os.path.join(self.out, name))

        # another session: flags both ways, an expunge, a new message
        c = imap(self.server)
        try:
            c.select("INBOX")

            def uid(i):
                return c.uid("SEARCH", "HEADER", "Message-ID", "c%d@example.com" % i)[1][0].decode()
            c.uid("STORE", uid(0), "+FLAGS", "(\\Flagged)")
            c.uid("STORE", uid(2), "-FLAGS", "(\\Flagged)")
            c.uid("STORE", uid(3), "+FLAGS", "(\\Deleted)")
            c.uid("STORE", uid(6), "+FLAGS", "(\\Deleted)")
            self.assertEqual(c.expunge()[0], "OK")
            self.assertEqual(c.append("INBOX", "(\\Flagged)", None, message(20, "new from elsewhere"))[0], "OK")
        finally:
            c.logout()
        server = server_state(self.server, "INBOX")
        flagged = sorted(mid for mid, (f, _) in server.items() if "\\Flagged" in f)
        self.assertEqual(flagged, ["<c0@example.com>", "<c20@example.com>", "<c4@example.com>"])

        sent, debug = self.mutt(rc, pipe_all + "<tag-pattern>~F<enter><tag-prefix><copy-message>=Flagged<enter>"
                                    "<quit>")
        # the resync: only changes since the cached HIGHESTMODSEQ, expunges
        # as VANISHED (EARLIER), headers fetched for the new message only
        self.assertTrue(any(re.search(r"UID FETCH \S+ \(FLAGS\) \(CHANGEDSINCE \d+ VANISHED\)", s) for s in sent), sent)
        self.assertRegex(debug, r"\* VANISHED \(EARLIER\) \S*")
        heads = [s for s in sent if "BODY.PEEK[HEADER.FIELDS" in s]
        self.assertEqual(len(heads), 1, heads)
        self.assertRegex(heads[0], r"FETCH 7 \(")
        # what mutt sees is the server's state
        self.assertEqual(sorted(self.piped()), sorted(d.replace(b"\r\n", b"\n") for _, d in server.values()))
        self.assertEqual(sorted(server_state(self.server, "Flagged")), flagged)


if __name__ == "__main__":
    unittest.main()
