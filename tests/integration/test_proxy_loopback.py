"""The login proxy without network namespaces: a front and a mailbox host
as two Postern instances on 127.0.0.1, so the relay is tested on every
machine (test_proxy.py has the multi-host topology). The passdb's
host=ADDR:PORT form; commands pipelined behind the login; a message much
larger than the relay's buffers fetched intact through the front; the
client hanging up mid-login; the host going away mid-session."""
import poplib
import smtplib
import socket
import threading
import time
import unittest
import uuid

from harness import SANITIZE, Server, wait_for

TIMEOUT = 30 if SANITIZE else 10
COMMON = "auth_failure_delay = 0s\nsmtpd_client_name_timeout = 0\ndisable_plaintext_auth = no\n"


class LoopbackProxy(unittest.TestCase):

    def setUp(self):
        self.host = Server(modules=("mbox", "smtp", "imap", "pop3"),
                           users=("alice", "carol", "dave:other", "frank"),
                           listeners=("smtpd", "imap", "pop3"))
        self.host.write_conf("passdb = passwd-file:%s\n%slogin_trusted_networks = 127.0.0.1/32\n"
                             % (self.host.passwd_file, COMMON))
        self.addCleanup(self.host.cleanup)
        self.front = Server(modules=("mbox", "smtp", "imap", "pop3"), users=(),
                            listeners=("smtpd", "imap", "pop3"))
        with open(self.front.passwd_file, "w") as f:
            # alice: the IMAP port in the record (it applies to whatever
            # protocol logs in); carol: the front's proxy_*_port.
            f.write("alice:{PLAIN}secret:::::: proxy=y host=127.0.0.1:%d\n" % self.host.ports["imap"])
            f.write("carol:{PLAIN}secret:::::: proxy host=127.0.0.1\n")
            # dave: the host has another password; erin: a host that never speaks.
            f.write("dave:{PLAIN}secret:::::: proxy host=127.0.0.1\n")
            self.silent = socket.socket()
            self.silent.bind(("127.0.0.1", 0))
            self.silent.listen(8)
            self.addCleanup(self.silent.close)
            f.write("erin:{PLAIN}secret:::::: proxy host=127.0.0.1:%d\n" % self.silent.getsockname()[1])
            # frank: the host by name, as LDAP's mailHost gives it; gina: a
            # name DNS does not know.
            f.write("frank:{PLAIN}secret:::::: proxy host=mbox1.example.org port=%d\n" % self.host.ports["imap"])
            f.write("gina:{PLAIN}secret:::::: proxy host=nowhere.example.org\n")
        self.front.write_conf("passdb = passwd-file:%s\n%sproxy_pop3_port = %d\nproxy_imap_port = %d\n"
                              "proxy_timeout = 1s\n"
                              % (self.front.passwd_file, COMMON, self.host.ports["pop3"], self.host.ports["imap"]))
        self.addCleanup(self.front.cleanup)
        # The front's own test DNS server (harness.FakeDNS) names the host.
        self.front.dns.records[("mbox1.example.org", 1)] = ["127.0.0.1"]
        self.front.dns.zones = ("example.org",)
        self.host.start()
        self.front.start()

    def deliver(self, subject, body="hello\r\n", user="alice"):
        rcpt = user + "@example.com.ar"
        msg = ("From: s@example.net\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" % (rcpt, subject, body))
        with smtplib.SMTP("127.0.0.1", self.host.ports["smtpd"], timeout=TIMEOUT) as c:
            c.sendmail("s@example.net", [rcpt], msg)
        wait_for(lambda: any(m["Subject"] == subject for m in self.host.messages(user)), TIMEOUT,
                 what="delivery")

    def raw(self, port):
        s = socket.create_connection(("127.0.0.1", port), TIMEOUT)
        return s, s.makefile("rb")

    def until_tag(self, f, tag):
        lines = []
        while True:
            line = f.readline()
            if not line:
                raise AssertionError("connection closed; got %r" % lines)
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def test_pipelined_after_login(self):
        subj = "pipe-" + uuid.uuid4().hex[:8]
        self.deliver(subj)
        s, f = self.raw(self.front.ports["imap"])
        try:
            f.readline()
            s.sendall(b"a LOGIN alice secret\r\nb SELECT INBOX\r\nc SEARCH SUBJECT %s\r\nd LOGOUT\r\n"
                      % subj.encode())
            self.assertTrue(self.until_tag(f, b"a")[-1].startswith(b"a OK"))
            self.assertTrue(self.until_tag(f, b"b")[-1].startswith(b"b OK"))
            got = self.until_tag(f, b"c")
            self.assertTrue(got[-1].startswith(b"c OK"))
            self.assertTrue(any(l.startswith(b"* SEARCH ") and len(l.split()) > 2 for l in got), got)
            self.assertTrue(self.until_tag(f, b"d")[-1].startswith(b"d OK"))
        finally:
            s.close()
        self.front.wait_log("proxy=127.0.0.1:%d" % self.host.ports["imap"])

    def test_host_last_words_reach_the_client(self):
        """LOGOUT with much more input pipelined behind it: the host
        answers, hangs up with that input unread (a reset) while the front
        still writes it; the host's last lines still reach the client."""
        for _ in range(3):
            s, f = self.raw(self.front.ports["imap"])
            try:
                f.readline()
                s.sendall(b"a LOGIN alice secret\r\n")
                self.assertTrue(self.until_tag(f, b"a")[-1].startswith(b"a OK"))
                flood = b"d LOGOUT\r\n" + b"e NOOP\r\n" * 200000

                def push():
                    try:
                        s.sendall(flood)
                    except OSError:
                        pass
                t = threading.Thread(target=push)
                t.start()
                got = self.until_tag(f, b"d")
                t.join(TIMEOUT)
                self.assertTrue(any(l.startswith(b"* BYE") for l in got), got)
                self.assertTrue(got[-1].startswith(b"d OK"), got)
            finally:
                s.close()

    def test_large_message_through_the_relay(self):
        """8 MiB, far beyond the relay's 64 KiB high-water mark, read
        slowly so backpressure must hold the host back."""
        subj = "big-" + uuid.uuid4().hex[:8]
        line = (uuid.uuid4().hex * 2 + "\r\n")
        body = line * (8 * 1024 * 1024 // len(line))
        self.deliver(subj, body)
        s, f = self.raw(self.front.ports["imap"])
        try:
            f.readline()
            s.sendall(b"a LOGIN alice secret\r\nb SELECT INBOX\r\n")
            self.until_tag(f, b"a")
            self.until_tag(f, b"b")
            s.sendall(b"c FETCH * BODY.PEEK[TEXT]\r\n")
            head = f.readline()
            self.assertIn(b"{", head)
            n = int(head[head.rindex(b"{") + 1:head.rindex(b"}")])
            got = bytearray()
            time.sleep(0.5)       # let the buffers fill up first
            while len(got) < n:
                chunk = f.read(min(65536, n - len(got)))
                if not chunk:
                    break
                got += chunk
            self.assertEqual(len(got), n)
            self.assertEqual(bytes(got), body.encode())
            self.assertTrue(self.until_tag(f, b"c")[-1].startswith(b"c OK"))
        finally:
            s.close()

    def test_pop3_by_proxy_port(self):
        subj = "pop-" + uuid.uuid4().hex[:8]
        self.deliver(subj, user="carol")
        p = poplib.POP3("127.0.0.1", self.front.ports["pop3"], timeout=TIMEOUT)
        try:
            p.user("carol")
            self.assertTrue(p.pass_("secret").startswith(b"+OK"))
            self.assertGreaterEqual(p.stat()[0], 1)
            p.quit()
        finally:
            p.close()
        self.front.wait_log("proxy=127.0.0.1")

    def test_cli_shows_the_proxy_fields(self):
        """postern auth test / postern user show where a login goes, as
        doveadm auth test / doveadm user do."""
        r = self.front.cmd("auth", "-c", self.front.conf_file, "test", "alice", "secret")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("  proxy\n  host=127.0.0.1:%d\n" % self.host.ports["imap"], r.stdout.decode())
        r = self.front.cmd("user", "-c", self.front.conf_file, "carol")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("host\t127.0.0.1\n", r.stdout.decode())
        r = self.front.cmd("auth", "-c", self.front.conf_file, "test", "alice", "wrong")
        self.assertNotIn("host=", r.stdout.decode())

    def login_reply(self, user):
        s, f = self.raw(self.front.ports["imap"])
        try:
            f.readline()
            s.sendall(b"a LOGIN %s secret\r\n" % user.encode())
            return self.until_tag(f, b"a")[-1]
        finally:
            s.close()

    def test_host_refuses_the_password(self):
        """Front and host disagree: a temporary error, never the host's
        session, and the front says why."""
        self.assertTrue(self.login_reply("dave").startswith(b"a NO [UNAVAILABLE]"))
        self.front.wait_log("backend refused the login")

    def test_host_by_name(self):
        self.assertTrue(self.login_reply("frank").startswith(b"a OK"))
        self.front.wait_log("proxy=mbox1.example.org:%d" % self.host.ports["imap"])
        self.assertTrue(self.login_reply("gina").startswith(b"a NO [UNAVAILABLE]"))
        self.front.wait_log("cannot resolve nowhere.example.org")

    def test_silent_host_times_out(self):
        self.assertTrue(self.login_reply("erin").startswith(b"a NO [UNAVAILABLE]"))
        self.front.wait_log("timed out (proxy_timeout)")

    def test_client_gone_during_backend_login(self):
        """The client hangs up right after LOGIN: nothing leaks, the
        front keeps serving."""
        for _ in range(5):
            s, f = self.raw(self.front.ports["imap"])
            f.readline()
            s.sendall(b"a LOGIN alice secret\r\n")
            s.close()
        s, f = self.raw(self.front.ports["imap"])
        try:
            f.readline()
            s.sendall(b"a LOGIN alice secret\r\n")
            self.assertTrue(self.until_tag(f, b"a")[-1].startswith(b"a OK"))
        finally:
            s.close()

    def test_host_gone_mid_session(self):
        s, f = self.raw(self.front.ports["imap"])
        try:
            f.readline()
            s.sendall(b"a LOGIN alice secret\r\n")
            self.assertTrue(self.until_tag(f, b"a")[-1].startswith(b"a OK"))
            self.host.kill()
            # The front closes the client's side too.
            s.settimeout(TIMEOUT)
            while f.readline():
                pass
        finally:
            s.close()
        self.front.wait_log("disconnected by server")
        self.assertEqual(self.front.stop(), 0)


if __name__ == "__main__":
    unittest.main()
