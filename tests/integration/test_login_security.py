"""Login security shared by IMAP and POP3 through the auth service (issue:
authentication): a failed login is answered only after auth_failure_delay,
repeated failures from one address are throttled harder (the tenth waits
while a fresh address does not), every failure is logged with user and
address, and no password ever reaches the log."""
import imaplib
import os
import poplib
import re
import smtplib
import socket
import subprocess
import threading
import time
import unittest

from harness import Server


def line(sock):
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


class LoginCase(unittest.TestCase):
    conf = ""

    def setUp(self):
        self.server = Server(modules=("mbox", "smtp", "imap", "pop3"),
                             listeners=("smtpd", "imap", "pop3"))
        self.addCleanup(self.server.cleanup)
        self.server.write_conf("passdb = passwd-file:%s\n%s" % (self.server.passwd_file, self.conf))
        self.server.start()

    def imap_login(self, user, password, source="127.0.0.1"):
        s = socket.create_connection(("127.0.0.1", self.server.ports["imap"]), timeout=60,
                                     source_address=(source, 0))
        self.addCleanup(s.close)
        self.assertTrue(line(s).startswith(b"* OK"))
        t = time.monotonic()
        s.sendall(b"a1 LOGIN %s %s\r\n" % (user.encode(), password.encode()))
        r = line(s)
        return r, time.monotonic() - t

    def pop_login(self, user, password):
        s = socket.create_connection(("127.0.0.1", self.server.ports["pop3"]), timeout=60)
        self.addCleanup(s.close)
        self.assertTrue(line(s).startswith(b"+OK"))
        s.sendall(b"USER %s\r\n" % user.encode())
        self.assertTrue(line(s).startswith(b"+OK"))
        t = time.monotonic()
        s.sendall(b"PASS %s\r\n" % password.encode())
        r = line(s)
        return r, time.monotonic() - t


class FailureDelay(LoginCase):
    conf = "auth_failure_delay = 1s\nauth_throttle = no\n"

    def test_failures_wait_and_look_alike_successes_do_not_wait(self):
        r, t = self.imap_login("alice", "Wrong-pass-7")
        self.assertEqual(r, b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
        self.assertGreaterEqual(t, 0.9)
        r, t = self.imap_login("nosuchuser", "Wrong-pass-8")
        self.assertEqual(r, b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
        self.assertGreaterEqual(t, 0.9)
        r, t = self.pop_login("alice", "Wrong-pass-9")
        self.assertEqual(r, b"-ERR [AUTH] Authentication failed.\r\n")
        self.assertGreaterEqual(t, 0.9)
        r, t = self.pop_login("nosuchuser", "Wrong-pass-10")
        self.assertEqual(r, b"-ERR [AUTH] Authentication failed.\r\n")
        r, t = self.imap_login("alice", "secret")
        self.assertTrue(r.startswith(b"a1 OK"), r)
        self.assertLess(t, 0.9)
        log = self.server.log()
        for user in ("alice", "nosuchuser"):
            self.assertRegex(log, r"imap-login.*user=<%s>.*rip=127\.0\.0\.1" % user)
            self.assertRegex(log, r"pop3-login.*user=<%s>.*rip=127\.0\.0\.1" % user)
        for pw in ("Wrong-pass-7", "Wrong-pass-8", "Wrong-pass-9", "Wrong-pass-10", "secret"):
            self.assertNotIn(pw, log)


class Throttle(LoginCase):
    conf = "auth_failure_delay = 0s\n"

    def test_failures_from_one_address_wait_in_line(self):
        _, first = self.imap_login("alice", "nope")
        # Three more at once: they wait in line, each held longer after
        # the failure before it (2, 4, 8 s), never side by side.
        socks = []
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", self.server.ports["imap"]), timeout=60)
            self.addCleanup(s.close)
            self.assertTrue(line(s).startswith(b"* OK"))
            socks.append(s)
        t0 = time.monotonic()
        for s in socks:
            s.sendall(b"a1 LOGIN alice nope\r\n")
        fresh = {}

        def other_address():
            time.sleep(0.5)
            fresh["t"] = self.imap_login("alice", "nope", source="127.0.0.2")[1]
        th = threading.Thread(target=other_address)
        th.start()
        done = []
        for s in socks:
            self.assertIn(b"AUTHENTICATIONFAILED", line(s))
            done.append(time.monotonic() - t0)
        th.join()
        done.sort()
        print("\nIMAP throttle: first failure %.3fs, three in parallel answered at %s, fresh address %.3fs"
              % (first, ", ".join("%.1fs" % d for d in done), fresh["t"]))
        self.assertGreater(done[0], 1.5)
        self.assertGreater(done[2], 12)
        self.assertLess(fresh["t"], 1.5)


@unittest.skipUnless(os.geteuid() == 0, "not root: IMAP/POP3 logins through PAM with a throwaway system user skipped")
class Pam(unittest.TestCase):
    """passdb = pam, userdb = passwd: a system user delivered to by SMTP
    reads the mail over IMAP and POP3 with the password PAM checks; the
    mail process runs as that user."""

    def setUp(self):
        self.user = "ptimap%d" % (os.getpid() % 100000)
        self.server = Server(modules=("mbox", "smtp", "imap", "pop3"), as_root=True,
                             listeners=("smtpd", "imap", "pop3"))
        self.addCleanup(self.server.cleanup)
        home = self.server.path("home", self.user)
        subprocess.run(["useradd", "-m", "-d", home, "-N", "-s", "/usr/sbin/nologin", self.user],
                       check=True, capture_output=True)
        self.addCleanup(subprocess.run, ["userdel", self.user], capture_output=True)
        subprocess.run(["chpasswd"], input="%s:Pam-imap-42\n" % self.user, text=True, check=True)
        os.chmod(self.server.path("spool"), 0o1777)
        self.server.write_conf("passdb = pam\nuserdb = passwd\nauth_failure_delay = 0s\n")
        self.server.start()

    def test_pam_users_read_their_mail(self):
        with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=30) as c:
            c.sendmail("carol@example.com.ar", ["%s@example.com.ar" % self.user],
                       b"Subject: for pam\r\n\r\nhello pam\r\n")
        self.server.wait_messages(self.user, 1)
        imap = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=30)
        with self.assertRaises(imaplib.IMAP4.error):
            imap.login(self.user, "Pam-imap-43")
        imap.login(self.user, "Pam-imap-42")
        imap.select("INBOX")
        typ, data = imap.fetch("1", "(BODY.PEEK[TEXT])")
        self.assertEqual(data[0][1], b"hello pam\r\n")
        self.server.wait_log("Login: user=<%s>" % self.user)
        m = re.findall(r"imap-login\[\d+\]: Login: user=<%s>.*mpid=(\d+)" % self.user, self.server.log())
        self.assertTrue(m, self.server.log()[-2000:])
        with open("/proc/%s/status" % m[-1]) as f:
            uid = re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1)
        self.assertEqual(int(uid), os.stat(self.server.mbox_path(self.user)).st_uid)
        self.assertNotEqual(int(uid), 0)
        imap.logout()
        pop = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=30)
        pop.user(self.user)
        pop.pass_("Pam-imap-42")
        self.assertEqual(pop.stat()[0], 1)
        pop.quit()


if __name__ == "__main__":
    unittest.main()
