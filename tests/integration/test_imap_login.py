"""IMAP before and at login: greeting and capabilities on 143 and 993,
STARTTLS, LOGIN and AUTHENTICATE (PLAIN with and without SASL-IR, LOGIN,
cancel), bad passwords, LOGINDISABLED for a plaintext client that is not
local, Dovecot's reply texts, the BAD limit, literals, the per user+IP
limit, the log lines, and (as root) the mail process running as the user."""
import base64
import imaplib
import os
import pwd
import re
import ssl
import unittest

from harness import Server, throwaway_user, wait_for
from imap_util import POST_CAPS, Raw, imap_server, strip_timing

PRE = "IMAP4rev1 IMAP4rev2 SASL-IR ID ENABLE IDLE LITERAL+"


def b64(s):
    return base64.b64encode(s.encode()).decode()


class PreLogin(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        class ClassScope:
            addCleanup = cls.addClassCleanup
        cls.server = imap_server(ClassScope, conf="auth_mechanisms = plain login")

    def raw(self, **kw):
        r = Raw(self.server.ports["imap"], **kw)
        self.addCleanup(r.close)
        return r

    def test_greeting_and_capability(self):
        r = self.raw()
        self.assertEqual(r.line(), "* OK [CAPABILITY %s STARTTLS AUTH=PLAIN AUTH=LOGIN] Postern ready." % PRE)
        self.assertEqual(r.cmd("a1", "CAPABILITY"),
                         ["* CAPABILITY %s STARTTLS AUTH=PLAIN AUTH=LOGIN" % PRE,
                          "a1 OK Pre-login capabilities listed, post-login capabilities have more."])
        self.assertEqual(r.cmd("a2", "NOOP"), ["a2 OK NOOP completed."])
        self.assertEqual(r.cmd("a3", 'ID ("name" "test")'), ['* ID ("name" "Postern")', "a3 OK ID completed."])
        self.assertEqual(r.cmd("a4", "ENABLE CONDSTORE")[-1][:6], "a4 BAD")
        self.assertEqual(r.cmd("a5", "FROB"), ["a5 BAD Error in IMAP command FROB: Unknown command."])
        self.assertEqual(r.cmd("a6", "SELECT INBOX"), ["a6 BAD Error in IMAP command SELECT: Unknown command."])
        self.assertEqual(r.cmd("a7", "LOGOUT"), ["* BYE Logging out", "a7 OK Logout completed."])
        self.assertTrue(r.closed())

    def test_starttls_then_login(self):
        r = self.raw()
        r.line()
        self.assertEqual(r.cmd("s1", "STARTTLS"), ["s1 OK Begin TLS negotiation now."])
        r.wrap()
        self.assertEqual(r.cmd("s2", "CAPABILITY")[0], "* CAPABILITY %s AUTH=PLAIN AUTH=LOGIN" % PRE)
        self.assertEqual(r.cmd("s3", "STARTTLS"), ["s3 BAD TLS is already active."])
        # The client saw CAPABILITY: untagged list, then a plain OK.
        self.assertEqual(r.cmd("s4", "LOGIN alice secret"), ["* CAPABILITY " + POST_CAPS, "s4 OK Logged in"])
        self.assertEqual(strip_timing(r.cmd("s5", "LOGOUT")[-1]), "s5 OK Logout completed.")

    def test_imaps_login_without_capability(self):
        r = Raw(self.server.ports["imaps"], tls=True)
        self.addCleanup(r.close)
        self.assertEqual(r.line(), "* OK [CAPABILITY %s AUTH=PLAIN AUTH=LOGIN] Postern ready." % PRE)
        self.assertEqual(r.cmd("b1", "LOGIN bob secret"), ["b1 OK [CAPABILITY %s] Logged in" % POST_CAPS])
        out = r.cmd("b2", "CAPABILITY")
        self.assertEqual(out[0], "* CAPABILITY " + POST_CAPS)
        self.assertEqual(strip_timing(out[1]), "b2 OK Capability completed.")

    def test_imaplib_143_starttls_and_993(self):
        m = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        m.starttls(ssl_context=ssl._create_unverified_context())
        self.assertEqual(m.login("alice", "secret")[0], "OK")
        self.assertEqual(m.logout()[0], "BYE")
        m = imaplib.IMAP4_SSL("127.0.0.1", self.server.ports["imaps"],
                              ssl_context=ssl._create_unverified_context())
        self.assertEqual(m.login("carol", "secret")[0], "OK")
        m.logout()

    def test_authenticate_plain_sasl_ir(self):
        r = self.raw()
        r.line()
        self.assertEqual(r.cmd("p1", "AUTHENTICATE PLAIN " + b64("\0alice\0secret")),
                         ["p1 OK [CAPABILITY %s] Logged in" % POST_CAPS])

    def test_authenticate_plain_continuation_and_cancel(self):
        r = self.raw()
        r.line()
        r.send("p1 AUTHENTICATE PLAIN\r\n")
        self.assertEqual(r.line(), "+ ")
        r.send("*\r\n")
        self.assertEqual(r.line(), "p1 BAD Authentication aborted by client.")
        r.send("p2 AUTHENTICATE PLAIN\r\n")
        self.assertEqual(r.line(), "+ ")
        r.send(b64("\0alice\0wrong") + "\r\n")
        self.assertEqual(r.line(), "p2 NO [AUTHENTICATIONFAILED] Authentication failed.")
        r.send("p3 AUTHENTICATE PLAIN\r\n")
        self.assertEqual(r.line(), "+ ")
        r.send(b64("\0alice\0secret") + "\r\n")
        self.assertEqual(r.line(), "p3 OK [CAPABILITY %s] Logged in" % POST_CAPS)

    def test_authenticate_login_mech(self):
        m = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        steps = iter([b"bob", b"secret"])
        typ, _ = m.authenticate("LOGIN", lambda challenge: next(steps))
        self.assertEqual(typ, "OK")
        m.logout()

    def test_bad_password_and_unknown_user(self):
        r = self.raw()
        r.line()
        self.assertEqual(r.cmd("x1", "LOGIN alice wrong-pass-xyz"),
                         ["x1 NO [AUTHENTICATIONFAILED] Authentication failed."])
        self.assertEqual(r.cmd("x2", "LOGIN nosuchuser whatever"),
                         ["x2 NO [AUTHENTICATIONFAILED] Authentication failed."])
        self.assertEqual(r.cmd("x3", "AUTHENTICATE FOO"), ["x3 NO Unsupported authentication mechanism."])
        # The connection still works for a good login.
        self.assertEqual(r.cmd("x4", "LOGIN alice secret")[-1], "x4 OK [CAPABILITY %s] Logged in" % POST_CAPS)
        log = self.server.log()
        self.assertRegex(log, r"imap-login.*user=<alice>.*rip=127\.0\.0\.1")
        self.assertRegex(log, r"imap-login.*user=<nosuchuser>")
        self.assertNotIn("wrong-pass-xyz", log)

    def test_literals(self):
        r = self.raw()
        r.line()
        r.send("l1 LOGIN {5}\r\n")
        self.assertEqual(r.line(), "+ OK")
        r.send("alice {6}\r\n")
        self.assertEqual(r.line(), "+ OK")
        r.send("secret\r\n")
        self.assertEqual(r.line(), "l1 OK [CAPABILITY %s] Logged in" % POST_CAPS)

    def test_literal_plus_and_pipelining(self):
        r = self.raw()
        r.line()
        r.send("n1 NOOP\r\nn2 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\nn3 NAMESPACE\r\n")
        self.assertEqual(r.line(), "n1 OK NOOP completed.")
        self.assertEqual(r.line(), "n2 OK [CAPABILITY %s] Logged in" % POST_CAPS)
        self.assertEqual(r.line(), '* NAMESPACE (("" "/")) NIL NIL')
        self.assertEqual(strip_timing(r.line()), "n3 OK Namespace completed.")

    def test_too_many_bad_commands(self):
        r = self.raw()
        r.line()
        for i in range(9):
            self.assertEqual(r.cmd("t%d" % i, "BOGUS"), ["t%d BAD Error in IMAP command BOGUS: Unknown command." % i])
        r.send("t9 BOGUS\r\n")
        self.assertEqual(r.line(), "t9 BAD Error in IMAP command BOGUS: Unknown command.")
        self.assertEqual(r.line(), "* BYE Too many invalid IMAP commands.")
        self.assertTrue(r.closed())

    def test_line_too_long(self):
        r = self.raw()
        r.line()
        r.send("a NOOP " + "x" * 70000 + "\r\n")
        self.assertEqual(r.line(), "* BAD Error in IMAP command received by server: Too long argument.")
        self.assertEqual(r.line(), "* BYE Too long argument.")
        self.assertTrue(r.closed())

    def test_syntax_error_without_tag(self):
        r = self.raw()
        r.line()
        r.send("+\r\n")
        self.assertEqual(r.line(), "* BAD Error in IMAP command received by server.")


class PlaintextRefused(unittest.TestCase):
    """From 127.0.0.2 to a listener on 127.0.0.1 the client is not local:
    disable_plaintext_auth (default yes) hides AUTH= and refuses LOGIN."""

    def setUp(self):
        self.server = imap_server(self)

    def test_logindisabled(self):
        r = Raw(self.server.ports["imap"], source="127.0.0.2")
        self.addCleanup(r.close)
        self.assertEqual(r.line(), "* OK [CAPABILITY %s STARTTLS LOGINDISABLED] Postern ready." % PRE)
        self.assertEqual(r.cmd("a1", "LOGIN alice secret"),
                         ["a1 NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure "
                          "(SSL/TLS) connections."])
        self.assertEqual(r.cmd("a2", "AUTHENTICATE PLAIN " + b64("\0alice\0secret"))[0][:23],
                         "a2 NO [PRIVACYREQUIRED]")
        # After STARTTLS the same client may log in.
        self.assertEqual(r.cmd("a3", "STARTTLS"), ["a3 OK Begin TLS negotiation now."])
        r.wrap()
        self.assertEqual(r.cmd("a4", "CAPABILITY")[0], "* CAPABILITY %s AUTH=PLAIN" % PRE)
        self.assertEqual(r.cmd("a5", "LOGIN alice secret")[-1], "a5 OK Logged in")


class UserIpLimit(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self, conf="mail_max_userip_connections = 1")

    def test_limit(self):
        r1 = Raw(self.server.ports["imap"])
        self.addCleanup(r1.close)
        r1.line()
        self.assertEqual(r1.cmd("a", "LOGIN alice secret")[-1][:4], "a OK")
        r2 = Raw(self.server.ports["imap"])
        self.addCleanup(r2.close)
        r2.line()
        self.assertEqual(r2.cmd("b", "LOGIN alice secret"),
                         ["b NO [LIMIT] Maximum number of connections from user+IP exceeded "
                          "(mail_max_userip_connections=1)"])
        # Another user is not affected; the refused connection stays usable.
        self.assertEqual(r2.cmd("c", "LOGIN bob secret")[-1][:4], "c OK")


class LogLines(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self)

    def test_login_and_disconnect_lines(self):
        r = Raw(self.server.ports["imap"])
        r.line()
        r.cmd("a", "LOGIN alice secret")
        r.cmd("b", "LOGOUT")
        r.close()
        self.server.wait_log("Disconnected: Logged out")
        log = self.server.log()
        self.assertRegex(log, r"imap-login\[\d+\]: Login: user=<alice>, method=PLAIN, rip=127\.0\.0\.1, "
                              r"lip=127\.0\.0\.1, mpid=\d+, secured, session=<[^>]+>")
        self.assertRegex(log, r"imap\(alice\)<\d+><[^>]+>: Disconnected: Logged out in=\d+ out=\d+ deleted=0 "
                              r"expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0")


@unittest.skipUnless(os.geteuid() == 0, "needs root")
class RootMailProcess(unittest.TestCase):
    """Privilege-separated server: the mail process runs as the user."""

    def setUp(self):
        self.USER = throwaway_user("ptimap", home="/nonexistent", cleanup=self.addCleanup)
        pw = pwd.getpwnam(self.USER)
        self.server = Server(modules=("mbox", "smtp", "imap"), listeners=("smtpd", "imap"), as_root=True,
                             users=())
        self.addCleanup(self.server.cleanup)
        home = self.server.path("home", self.USER)
        os.makedirs(os.path.join(home, "mail"), exist_ok=True)
        for d in (home, os.path.join(home, "mail")):
            os.chown(d, pw.pw_uid, pw.pw_gid)
        with open(self.server.passwd_file, "w") as f:
            f.write("%s:{PLAIN}secret:%d:%d::%s::\n" % (self.USER, pw.pw_uid, pw.pw_gid, home))
        self.server.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\nmail_owner = nobody\n"
                               % self.server.passwd_file)
        self.uid = pw.pw_uid
        self.server.start()

    def test_mail_process_runs_as_user(self):
        r = Raw(self.server.ports["imap"])
        self.addCleanup(r.close)
        r.line()
        self.assertEqual(r.cmd("a", "LOGIN %s secret" % self.USER)[-1][:4], "a OK")
        line = wait_for(lambda: re.search(r"Login: user=<%s>.*mpid=(\d+)" % self.USER, self.server.log()))
        mpid = int(line.group(1))
        with open("/proc/%d/status" % mpid) as f:
            status = f.read()
        uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups()
        self.assertEqual(set(int(u) for u in uids), {self.uid})


if __name__ == "__main__":
    unittest.main()
