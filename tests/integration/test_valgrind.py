"""No leaks and no memory errors in the daemon's steady state: the master,
the worker and the delivery agent run under valgrind while mail flows
(SMTP, restrictions, alias fan-out, mbox delivery), then stop on SIGTERM;
and the same for the mail agent and a user's mail process while IMAP and
POP3 sessions read, flag, search, copy and expunge.
Skipped in the sanitizer build (valgrind and ASan do not mix)."""
import glob
import imaplib
import os
import poplib
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import unittest
import zlib

from harness import BIN, SANITIZE, Server, port_open, wait_for


@unittest.skipIf(SANITIZE, "the ASan build is checked by ASan itself")
class ValgrindTest(unittest.TestCase):
    def start(self, s):
        logdir = tempfile.mkdtemp(prefix="postern-vg-")
        os.chmod(logdir, 0o777)
        self.addCleanup(shutil.rmtree, logdir, True)
        cmd = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect",
               "--errors-for-leak-kinds=definite,indirect", "--trace-children=yes",
               "--log-file=%s/vg-%%p.log" % logdir, BIN, "run", "-c", s.conf_file]
        p = subprocess.Popen(cmd, preexec_fn=s._preexec if s.run_user else None, env=dict(s.env(), POSTERN_STOP_GRACE_MS="60000"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        return p, logdir

    def check_logs(self, logdir, at_least):
        logs = glob.glob(os.path.join(logdir, "vg-*.log"))
        self.assertGreaterEqual(len(logs), at_least)
        for path in logs:
            with open(path) as f:
                text = f.read()
            m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
            self.assertIsNotNone(m, path)
            self.assertEqual(m.group(1), "0", text[-4000:])
            self.assertNotRegex(text, r"definitely lost: [1-9]", text[-4000:])
            self.assertNotRegex(text, r"indirectly lost: [1-9]", text[-4000:])

    def test_imap_and_pop3_sessions(self):
        s = Server(modules=("mbox", "smtp", "imap", "pop3"), listeners=("smtpd", "imap", "pop3"))
        self.addCleanup(s.cleanup)
        s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n" % s.passwd_file)
        p, logdir = self.start(s)
        wait_for(lambda: port_open(s.ports["smtpd"]) and port_open(s.ports["imap"]), 120,
                 what="daemon under valgrind")
        with smtplib.SMTP("127.0.0.1", s.ports["smtpd"], timeout=120) as c:
            for i in range(4):
                c.sendmail("carol@example.com.ar", ["alice@example.com.ar"],
                           b"Subject: m%d\r\nFrom: Carol <carol@example.com.ar>\r\nContent-Type: multipart/mixed;"
                           b" boundary=b\r\n\r\n--b\r\n\r\npart %d\r\n--b--\r\n" % (i, i))
        wait_for(lambda: len(s.messages("alice")) >= 4, 120, what="deliveries")
        imap = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=120)
        imap.login("alice", "secret")
        self.assertEqual(imap.select("INBOX")[0], "OK")
        typ, data = imap.fetch("1:*", "(UID FLAGS ENVELOPE BODYSTRUCTURE BODY[1] BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertEqual(typ, "OK")
        self.assertEqual(imap.store("1", "+FLAGS", "(\\Deleted $label1)")[0], "OK")
        self.assertEqual(imap.search(None, "TEXT", "part")[0], "OK")
        self.assertEqual(imap.create("Archive/2026")[0], "OK")
        self.assertEqual(imap.copy("2:3", "Archive/2026")[0], "OK")
        self.assertEqual(imap.expunge()[0], "OK")
        self.assertEqual(imap.append("Archive/2026", None, None, b"Subject: a\r\n\r\nappended\r\n")[0], "OK")
        self.assertEqual(imap.getquotaroot("Archive/2026")[0], "OK")
        self.assertEqual(imap.status("Archive/2026", "(DELETED-STORAGE SIZE)")[0], "OK")
        imap.logout()
        # a compressed session (COMPRESS=DEFLATE): the zlib streams of both
        # directions are freed with the conn
        with socket.create_connection(("127.0.0.1", s.ports["imap"]), timeout=120) as sock:
            f = sock.makefile("rb")
            f.readline()
            sock.sendall(b"l LOGIN alice secret\r\n")
            while not f.readline().startswith(b"l OK"):
                pass
            sock.sendall(b"z COMPRESS DEFLATE\r\n")
            self.assertEqual(f.readline(), b"z OK Begin compression.\r\n")
            co, do = zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15)
            sock.sendall(co.compress(b"s SELECT INBOX\r\nf FETCH 1:* BODY.PEEK[]\r\no LOGOUT\r\n") +
                         co.flush(zlib.Z_SYNC_FLUSH))
            got = do.decompress(f.read())
            self.assertIn(b"o OK", got)
        pop = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=120)
        pop.user("alice")
        pop.pass_("secret")
        self.assertEqual(pop.stat()[0], 3)
        pop.retr(1)
        pop.uidl()
        pop.dele(2)
        pop.quit()
        wait_for(lambda: len(s.messages("alice")) == 2, 120, what="POP3 expunge")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(120), 0)
        # master, worker, delivery agent, mail agent, one or more mail processes
        self.check_logs(logdir, 5)

    def test_no_leaks_or_errors_while_serving(self):
        s = Server(modules=("mbox", "alias", "transport", "restrict", "smtp"),
                   conf="smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n")
        self.addCleanup(s.cleanup)
        logdir = tempfile.mkdtemp(prefix="postern-vg-")
        os.chmod(logdir, 0o777)
        self.addCleanup(shutil.rmtree, logdir, True)
        cmd = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect",
               "--errors-for-leak-kinds=definite,indirect", "--trace-children=yes",
               "--log-file=%s/vg-%%p.log" % logdir, BIN, "run", "-c", s.conf_file]
        p = subprocess.Popen(cmd, preexec_fn=s._preexec if s.run_user else None, env=dict(s.env(), POSTERN_STOP_GRACE_MS="60000"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        wait_for(lambda: port_open(s.ports["smtpd"]), 120, what="daemon under valgrind")
        for i in range(10):
            with smtplib.SMTP("127.0.0.1", s.ports["smtpd"], timeout=120) as c:
                c.ehlo("client.example.com.ar")
                c.sendmail("carol@example.com.ar", ["sysadmin@example.com.ar", "bob@example.com.ar"],
                           b"Subject: t\r\n\r\nhello %d\r\n" % i)
        wait_for(lambda: len(s.messages("bob")) >= 10, 120, what="deliveries")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(120), 0)
        logs = glob.glob(os.path.join(logdir, "vg-*.log"))
        self.assertGreaterEqual(len(logs), 3, "master, worker and delivery agent each leave a report")
        for path in logs:
            with open(path) as f:
                text = f.read()
            m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
            self.assertIsNotNone(m, path)
            self.assertEqual(m.group(1), "0", text[-4000:])
            self.assertNotRegex(text, r"definitely lost: [1-9]", text[-4000:])
            self.assertNotRegex(text, r"indirectly lost: [1-9]", text[-4000:])


if __name__ == "__main__":
    unittest.main()
