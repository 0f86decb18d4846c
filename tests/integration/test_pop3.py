"""POP3 and POP3S end to end: mail delivered over SMTP, read with Python's
poplib and raw sockets through the worker's pre-login side and the user's
mail process (110 + STLS, 995, USER/PASS, AUTH PLAIN, plaintext refused
from a non-local address, the transaction commands, UPDATE at QUIT only,
UIDLs from Dovecot's mbox metadata, pipelining, log lines)."""
import os
import poplib
import pwd
import re
import smtplib
import socket
import ssl
import subprocess
import time
import unittest
import uuid

from harness import SANITIZE, Server, wait_for

TIMEOUT = 30 if SANITIZE else 10
AUTH_FAILED = b"-ERR [AUTH] Authentication failed."
PLAINTEXT_DISABLED = b"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."

BODY = ("Hello Alice,\r\n"
        ".a line that starts with a dot\r\n"
        "..two dots\r\n"
        "From the start of a line\r\n"
        ".\r\n"
        "end\r\n")


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_server(**kw):
    s = Server(modules=("mbox", "smtp", "pop3"), **kw)
    s.write_conf("passdb = passwd-file:%s\nauth_mechanisms = plain login\nauth_failure_delay = 0s\n"
                 "smtpd_client_name_timeout = 0\n" % s.passwd_file)
    return s


def deliver(server, rcpt, subject, body=BODY):
    msg = ("From: sender@example.com.ar\r\nTo: %s\r\nSubject: %s\r\n"
           "Message-ID: <%s@example.com.ar>\r\n\r\n%s" % (rcpt, subject, uuid.uuid4().hex, body))
    with smtplib.SMTP("127.0.0.1", server.ports["smtpd"], timeout=TIMEOUT) as c:
        c.ehlo("client.example.com.ar")
        c.sendmail("sender@example.com.ar", [rcpt], msg)


class Raw:
    """A POP3 client on a socket, for what poplib cannot send."""

    def __init__(self, port, source=None, tls=False):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        if source:
            s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        if tls:
            s = tls_context().wrap_socket(s)
        self.sock = s
        self.f = s.makefile("rb")
        self.greeting = self.line()

    def line(self):
        return self.f.readline().rstrip(b"\r\n")

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def multi(self):
        lines = []
        while True:
            l = self.line()
            if l == b".":
                return lines
            lines.append(l)

    def starttls(self):
        r = self.cmd("STLS")
        self.f.close()
        self.sock = tls_context().wrap_socket(self.sock)
        self.f = self.sock.makefile("rb")
        return r

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass


class Pop3Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = make_server()
        cls.server.start()
        for i in range(3):
            deliver(cls.server, "alice@example.com.ar", "message %d" % (i + 1))
        cls.server.wait_messages("alice", 3, TIMEOUT)

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def pop(self, user="alice", password="secret", tls=None):
        if tls == "implicit":
            p = poplib.POP3_SSL("127.0.0.1", self.server.ports["pop3s"], context=tls_context(), timeout=TIMEOUT)
        else:
            p = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=TIMEOUT)
            if tls == "stls":
                self.assertEqual(p.stls(tls_context()), b"+OK Begin TLS negotiation now.")
        self.assertEqual(p.getwelcome(), b"+OK Postern ready.")
        self.assertEqual(p.user(user), b"+OK")
        self.assertEqual(p.pass_(password), b"+OK Logged in.")
        return p

    def test_capa_before_and_after_stls(self):
        p = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=TIMEOUT)
        caps = p.capa()
        for c in ("TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "STLS", "USER"):
            self.assertIn(c, caps)
        self.assertEqual(caps["SASL"], ["PLAIN", "LOGIN"])
        p.stls(tls_context())
        caps = p.capa()
        self.assertNotIn("STLS", caps)
        self.assertIn("USER", caps)
        self.assertEqual(p.quit(), b"+OK Logging out")

    def test_stls_login_stat_list_retr(self):
        p = self.pop(tls="stls")
        count, size = p.stat()
        self.assertEqual(count, 3)
        resp, listing, _ = p.list()
        self.assertEqual(resp, b"+OK 3 messages:")
        sizes = [int(l.split()[1]) for l in listing]
        self.assertEqual(sum(sizes), size)
        resp, lines, octets = p.retr(1)
        self.assertEqual(resp, b"+OK %d octets" % sizes[0])
        # poplib undoes the dot-stuffing; what it counts is the wire form.
        self.assertEqual(sum(len(l) + 2 for l in lines), sizes[0])
        text = b"\r\n".join(lines) + b"\r\n"
        # mboxrd: a "From " line comes back as sent (issue #11 item 13).
        self.assertTrue(text.endswith(BODY.encode()), text)
        self.assertIn(b"Subject: message 1", text)
        for hidden in (b"X-UID:", b"X-IMAPbase:", b"Status:", b"X-Status:"):
            self.assertNotIn(b"\n" + hidden, text)
        self.assertEqual(p.quit(), b"+OK Logging out.")
        self.server.wait_log("Disconnected: Logged out top=0/0, retr=1/")
        self.assertRegex(self.server.log(), r"pop3-login\[\d+\]: Login: user=<alice>, method=PLAIN, "
                                            r"rip=127\.0\.0\.1, lip=127\.0\.0\.1, mpid=\d+, TLS, session=<")

    def test_pop3s(self):
        p = self.pop(tls="implicit")
        self.assertEqual(p.stat()[0], 3)
        self.assertNotIn("STLS", p.capa())
        self.assertEqual(p.quit(), b"+OK Logging out.")

    def test_bad_password_and_unknown_user_look_the_same(self):
        for user, pw in (("alice", "wrong-pass-123"), ("nosuchuser", "secret")):
            p = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=TIMEOUT)
            p.user(user)
            with self.assertRaises(poplib.error_proto) as e:
                p.pass_(pw)
            self.assertEqual(e.exception.args[0], AUTH_FAILED)
            # The session goes on after a failure.
            self.assertEqual(p.user("alice"), b"+OK")
            self.assertEqual(p.pass_("secret"), b"+OK Logged in.")
            p.quit()
        self.server.wait_log("user=<nosuchuser>")
        log = self.server.log()
        self.assertRegex(log, r"pop3-login\[\d+\]: warning: Authentication failed \(attempt 1\): user=<alice>, "
                              r"method=PLAIN, rip=127\.0\.0\.1")
        self.assertNotIn("wrong-pass-123", log)

    def test_quit_after_failures_is_not_no_attempts(self):
        """QUIT after a failed PASS: the close summarises the failures; no
        'no auth attempts' line (fail2ban's aggressive dovecot filter
        would count it)."""
        p = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=TIMEOUT)
        p.user("quitter")
        with self.assertRaises(poplib.error_proto):
            p.pass_("wrong-pass-456")
        p.quit()
        self.server.wait_log("Disconnected (auth failed, 1 attempts): user=<quitter>")
        session = re.search(r"Disconnected \(auth failed, 1 attempts\): user=<quitter>.*session=<([^>]+)>",
                            self.server.log()).group(1)
        self.assertNotRegex(self.server.log(), r"no auth attempts\).*session=<%s>" % re.escape(session))

    def test_auth_plain_with_and_without_initial_response(self):
        c = Raw(self.server.ports["pop3"])
        self.assertEqual(c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA=="), b"+OK Logged in.")
        self.assertTrue(c.cmd("STAT").startswith(b"+OK 3 "))
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out.")
        c.close()
        c = Raw(self.server.ports["pop3"])
        self.assertEqual(c.cmd("AUTH PLAIN"), b"+ ")
        self.assertEqual(c.cmd("AGFsaWNlAHdyb25n"), AUTH_FAILED)
        self.assertEqual(c.cmd("AUTH PLAIN"), b"+ ")
        self.assertEqual(c.cmd("*"), b"-ERR Authentication aborted by client.")
        self.assertEqual(c.cmd("AUTH PLAIN"), b"+ ")
        self.assertEqual(c.cmd("AGFsaWNlAHNlY3JldA=="), b"+OK Logged in.")
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out.")
        c.close()

    def test_plaintext_refused_from_outside_until_tls(self):
        c = Raw(self.server.ports["pop3"], source="127.0.0.2")
        self.assertEqual(c.greeting, b"+OK Postern ready.")
        self.assertEqual(c.cmd("CAPA"), b"+OK")
        caps = c.multi()
        self.assertIn(b"STLS", caps)
        self.assertNotIn(b"USER", caps)
        self.assertFalse([x for x in caps if x.startswith(b"SASL")])
        self.assertEqual(c.cmd("USER alice"), PLAINTEXT_DISABLED)
        self.assertEqual(c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA=="), PLAINTEXT_DISABLED)
        self.assertEqual(c.starttls(), b"+OK Begin TLS negotiation now.")
        self.assertEqual(c.cmd("CAPA"), b"+OK")
        self.assertIn(b"USER", c.multi())
        self.assertEqual(c.cmd("USER alice"), b"+OK")
        self.assertEqual(c.cmd("PASS secret"), b"+OK Logged in.")
        self.assertEqual(c.cmd("QUIT"), b"+OK Logging out.")
        c.close()

    def test_uidl_stable_unique_and_from_the_mbox(self):
        p = self.pop()
        _, first, _ = p.uidl()
        p.quit()
        p = self.pop()
        _, second, _ = p.uidl()
        self.assertEqual(p.uidl(2), b"+OK " + second[1])
        p.quit()
        self.assertEqual(first, second)
        uidls = [l.split()[1] for l in first]
        self.assertEqual(len(set(uidls)), 3)
        # Dovecot's %08Xu%08Xv over the X-UID / X-IMAPbase the store keeps.
        with open(self.server.mbox_path("alice"), "rb") as f:
            data = f.read()
        base = re.search(rb"\nX-IMAPbase: (\d+) ", data)
        uids = [int(u) for u in re.findall(rb"\nX-UID: (\d+)", data)]
        self.assertIsNotNone(base)
        self.assertEqual(uidls, [b"%08x%08x" % (u, int(base.group(1))) for u in uids])
        for u in uidls:
            self.assertRegex(u, rb"^[0-9a-f]{16}$")

    def test_top_and_errors(self):
        c = Raw(self.server.ports["pop3"])
        c.cmd("USER alice")
        self.assertEqual(c.cmd("PASS secret"), b"+OK Logged in.")
        self.assertEqual(c.cmd("TOP 1 0"), b"+OK")
        head = c.multi()
        self.assertEqual(head[-1], b"")
        self.assertIn(b"Subject: message 1", head)
        self.assertEqual(c.cmd("TOP 1 2"), b"+OK")
        self.assertEqual(c.multi()[-2:], [b"Hello Alice,", b"..a line that starts with a dot"])
        self.assertEqual(c.cmd("RETR 9"), b"-ERR There's no message 9.")
        self.assertEqual(c.cmd("RETR abc"), b"-ERR Invalid message number: abc")
        self.assertEqual(c.cmd("XYZZY"), b"-ERR Unknown command: XYZZY")
        self.assertEqual(c.cmd("NOOP"), b"+OK")
        c.close()

    def test_pipelined_commands_answered_in_order(self):
        c = Raw(self.server.ports["pop3"])
        c.send("USER alice\r\nPASS secret\r\nSTAT\r\nLIST 1\r\nUIDL 1\r\nNOOP\r\nRSET\r\nQUIT\r\n")
        replies = [c.line() for _ in range(8)]
        self.assertEqual(replies[0], b"+OK")
        self.assertEqual(replies[1], b"+OK Logged in.")
        self.assertTrue(replies[2].startswith(b"+OK 3 "))
        self.assertTrue(replies[3].startswith(b"+OK 1 "))
        self.assertTrue(replies[4].startswith(b"+OK 1 "))
        self.assertEqual(replies[5:], [b"+OK", b"+OK", b"+OK Logging out."])
        c.close()


class Pop3DeleteTest(unittest.TestCase):
    def setUp(self):
        self.server = make_server()
        self.addCleanup(self.server.cleanup)
        self.server.start()
        for i in range(4):
            deliver(self.server, "bob@example.com.ar", "bob %d" % (i + 1))
        self.server.wait_messages("bob", 4, TIMEOUT)

    def pop(self):
        p = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=TIMEOUT)
        p.user("bob")
        self.assertEqual(p.pass_("secret"), b"+OK Logged in.")
        return p

    def subjects(self):
        return [m["Subject"] for m in self.server.messages("bob")]

    def test_dele_rset_quit_and_dropped_connection(self):
        p = self.pop()
        _, uidls, _ = p.uidl()
        self.assertEqual(p.dele(2), b"+OK Marked to be deleted.")
        with self.assertRaises(poplib.error_proto) as e:
            p.dele(2)
        self.assertEqual(e.exception.args[0], b"-ERR Message is deleted.")
        self.assertEqual(p.stat()[0], 3)
        self.assertEqual(p.rset(), b"+OK")
        self.assertEqual(p.stat()[0], 4)
        p.dele(1)
        p.dele(3)
        # Dropped without QUIT: nothing is deleted.
        p.sock.close()
        time.sleep(0.3)
        self.assertEqual(self.subjects(), ["bob 1", "bob 2", "bob 3", "bob 4"])
        p = self.pop()
        self.assertEqual(p.stat()[0], 4)
        p.dele(1)
        p.dele(3)
        self.assertEqual(p.quit(), b"+OK Logging out.")
        wait_for(lambda: self.subjects() == ["bob 2", "bob 4"], TIMEOUT, what="messages 1 and 3 expunged")
        p = self.pop()
        _, after, _ = p.uidl()
        # Renumbered 1..n, UIDLs kept.
        self.assertEqual([l.split()[1] for l in after], [uidls[1].split()[1], uidls[3].split()[1]])
        p.quit()
        self.server.wait_log("del=2/4")

    def test_retr_marks_seen_at_quit(self):
        p = self.pop()
        p.retr(1)
        p.quit()

        def seen():
            with open(self.server.mbox_path("bob"), "rb") as f:
                data = f.read()
            first = data.split(b"\n\n", 1)[0]
            return re.search(rb"\nStatus: R", first) is not None
        wait_for(seen, TIMEOUT, what="Status: R on message 1")

    def test_new_mail_waits_for_next_login(self):
        p = self.pop()
        deliver(self.server, "bob@example.com.ar", "bob 5")
        self.server.wait_messages("bob", 5, TIMEOUT)
        self.assertEqual(p.stat()[0], 4)
        with self.assertRaises(poplib.error_proto):
            p.retr(5)
        p.quit()
        p = self.pop()
        self.assertEqual(p.stat()[0], 5)
        p.quit()


class Pop3LimitTest(unittest.TestCase):
    def test_userip_limit_gives_in_use(self):
        server = make_server()
        self.addCleanup(server.cleanup)
        server.write_conf(server.extra_conf + "mail_max_userip_connections = 1\n")
        server.start(wait_port=server.ports["pop3"])
        first = Raw(server.ports["pop3"])
        self.addCleanup(first.close)
        first.cmd("USER alice")
        self.assertEqual(first.cmd("PASS secret"), b"+OK Logged in.")
        second = Raw(server.ports["pop3"])
        self.addCleanup(second.close)
        second.cmd("USER alice")
        self.assertEqual(second.cmd("PASS secret"),
                         b"-ERR [IN-USE] Maximum number of connections from user+IP exceeded "
                         b"(mail_max_userip_connections=1)")
        # Still the worker's session: it may try again once the first ends.
        self.assertEqual(first.cmd("QUIT"), b"+OK Logging out.")
        # The worker closes the client only once its relay has ended, and that
        # is when the session stops counting (the mail process's log line can
        # come earlier).
        self.assertEqual(first.f.read(), b"")
        second.cmd("USER alice")
        self.assertEqual(second.cmd("PASS secret"), b"+OK Logged in.")

    def test_bad_uidl_format_refused_by_check(self):
        server = make_server()
        self.addCleanup(server.cleanup)
        server.write_conf(server.extra_conf + "pop3_uidl_format = %08Xu%m\n")
        r = server.cmd("check")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr.decode(), r"postern\.conf:\d+: .*pop3_uidl_format.*unsupported variable %m")


DOVECOT_MBOX = (
    b"From carol@example.com.ar  Sat Nov 28 06:53:10 2026\n"
    b"Return-Path: <carol@example.com.ar>\n"
    b"Subject: first\n"
    b"X-IMAPbase: 1795848815 0000000012\n"
    b"X-UID: 10                                      \n"
    b"Status: RO\n"
    b"\n"
    b"one\n"
    b"\n"
    b"From root@example.com.ar  Sat Nov 28 06:53:11 2026\n"
    b"Subject: second\n"
    b"X-UID: 12                                                  \n"
    b"Status: O\n"
    b"\n"
    b"two\n"
    b"\n")


class Pop3DovecotMboxTest(unittest.TestCase):
    def setUp(self):
        self.server = make_server()
        self.addCleanup(self.server.cleanup)
        path = self.server.mbox_path("carol")
        with open(path, "wb") as f:
            f.write(DOVECOT_MBOX)
        if self.server.run_user:
            pw = pwd.getpwnam(self.server.run_user)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        os.chmod(path, 0o600)
        self.server.start()

    def test_big_message_streams_whole(self):
        # Bigger than a connection's output limit (4 MiB): sent in pieces.
        body = b"".join(b"%s line %06d of a big message\n" % (b"." if i % 3 == 0 else b"x", i)
                        for i in range(200000))
        with open(self.server.mbox_path("carol"), "ab") as f:
            f.write(b"From big@example.com.ar  Sat Nov 28 06:54:00 2026\nSubject: big\n\n" + body + b"\n")
        p = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=TIMEOUT)
        p.user("carol")
        self.assertEqual(p.pass_("secret"), b"+OK Logged in.")
        size = int(p.list(3).split()[2])
        self.assertGreater(size, 4 * 1024 * 1024)
        resp, lines, _ = p.retr(3)
        self.assertEqual(resp, b"+OK %d octets" % size)
        self.assertEqual(lines[:2], [b"Subject: big", b""])
        self.assertEqual(b"\n".join(lines[2:]) + b"\n", body)
        self.assertEqual(p.noop(), b"+OK")
        p.quit()

    def test_uids_from_dovecot_headers(self):
        p = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=TIMEOUT)
        p.user("carol")
        self.assertEqual(p.pass_("secret"), b"+OK Logged in.")
        _, uidls, _ = p.uidl()
        self.assertEqual(uidls, [b"1 0000000a6b0a7a6f", b"2 0000000c6b0a7a6f"])
        resp, lines, _ = p.retr(1)
        self.assertEqual(lines, [b"Return-Path: <carol@example.com.ar>", b"Subject: first", b"", b"one"])
        # LIST, STAT and RETR agree on the wire size (CRLF, no storage headers).
        self.assertEqual(resp, b"+OK %d octets" % sum(len(l) + 2 for l in lines))
        self.assertEqual(p.list(1), b"+OK 1 %d" % sum(len(l) + 2 for l in lines))
        p.quit()


@unittest.skipUnless(os.geteuid() == 0, "needs root: creates a system user and runs the daemon as root")
class Pop3RootTest(unittest.TestCase):
    def setUp(self):
        self.user = "ptp%s" % uuid.uuid4().hex[:8]
        subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", self.user], check=True,
                       capture_output=True)
        self.addCleanup(subprocess.run, ["userdel", self.user], capture_output=True)
        self.server = Server(modules=("mbox", "smtp", "pop3"), users=(), as_root=True)
        self.addCleanup(self.server.cleanup)
        pw = pwd.getpwnam(self.user)
        home = self.server.path("home", self.user)
        os.makedirs(os.path.join(home, "mail"), exist_ok=True)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        os.chown(os.path.join(home, "mail"), pw.pw_uid, pw.pw_gid)
        with open(self.server.passwd_file, "w") as f:
            f.write("%s:{PLAIN}secret:%d:%d::%s::\n" % (self.user, pw.pw_uid, pw.pw_gid, home))
        os.chmod(self.server.path("spool"), 0o1777)
        self.server.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\nmail_owner = nobody\n"
                               "smtpd_client_name_timeout = 0\n" % self.server.passwd_file)
        self.server.start()

    def test_mail_process_runs_as_the_user(self):
        deliver(self.server, "%s@example.com.ar" % self.user, "for the system user")
        self.server.wait_messages(self.user, 1, TIMEOUT)
        p = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=TIMEOUT)
        p.user(self.user)
        self.assertEqual(p.pass_("secret"), b"+OK Logged in.")
        self.server.wait_log("user=<%s>, method=PLAIN" % self.user)
        mpid = int(re.search(r"user=<%s>, method=PLAIN, .*?mpid=(\d+)" % self.user, self.server.log()).group(1))
        with open("/proc/%d/status" % mpid) as f:
            uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)", f.read(), re.M).groups()
        self.assertEqual(set(int(u) for u in uids), {pwd.getpwnam(self.user).pw_uid})
        self.assertEqual(p.stat()[0], 1)
        p.dele(1)
        self.assertEqual(p.quit(), b"+OK Logging out.")
        wait_for(lambda: self.server.messages(self.user) == [], TIMEOUT, what="the message expunged")
        st = os.stat(self.server.mbox_path(self.user))
        self.assertEqual(st.st_uid, pwd.getpwnam(self.user).pw_uid)


if __name__ == "__main__":
    unittest.main()
