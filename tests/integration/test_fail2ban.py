"""fail2ban: the shipped filter (packaging/fail2ban/filter.d/postern.conf)
over a log the real daemon wrote counts exactly the failed SMTP AUTH, IMAP
LOGIN/AUTHENTICATE and POP3 PASS/AUTH attempts this test caused, each with
the client address it came from (several 127.0.0.x sources), and nothing
of the noise around them: successful logins, an unknown SASL mechanism,
ordinary mail, a relay refusal, bad commands, the auth worker's own line
and POP3's per-connection summary. The same through syslog (the
package's default, maillog_file empty): the lines the server sends to
/dev/log carry the tag postern/SERVICE[PID] (postern/submission/smtpd
for the submission listener), as Postfix's do, and the
filter counts them the same. Also checks the jail is shipped off."""
import base64
import collections
import configparser
import ctypes
import imaplib
import os
import poplib
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest

from harness import SANITIZE, SRC, Server, wait_for

TIMEOUT = 30 if SANITIZE else 10
FILTER = os.path.join(SRC, "packaging", "fail2ban", "filter.d", "postern.conf")
JAIL = os.path.join(SRC, "packaging", "fail2ban", "jail.d", "postern.conf")
COMMON = "/etc/fail2ban/filter.d/common.conf"


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class IMAPFrom(imaplib.IMAP4):
    """imaplib from a chosen loopback source address."""

    def __init__(self, port, source):
        self._source = source
        super().__init__("127.0.0.1", port, timeout=TIMEOUT)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


class POP3From(poplib.POP3):
    """poplib from a chosen loopback source address."""

    def __init__(self, port, source):
        self._source = source
        super().__init__("127.0.0.1", port, timeout=TIMEOUT)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


@unittest.skipUnless(shutil.which("fail2ban-regex") and os.path.exists(COMMON),
                     "fail2ban not installed (scripts/deps.sh test installs it)")
class Fail2banFilter(unittest.TestCase):
    def setUp(self):
        self.failures = collections.Counter()   # ip -> failed attempts caused

    def start(self, server_class=Server, extra=""):
        self.server = server_class(modules=("mbox", "smtp", "imap", "pop3"))
        self.addCleanup(self.server.cleanup)
        # No delay and no per-address throttle: the test makes a dozen
        # failures in a row and only counts them.
        self.server.write_conf("passdb = passwd-file:%s\nauth_mechanisms = plain login\n"
                               "auth_failure_delay = 0s\nauth_throttle = no\n"
                               "disable_plaintext_auth = no\nsmtpd_client_name_timeout = 0\n%s"
                               % (self.server.passwd_file, extra))
        self.server.start()

    # ---- what the test does -------------------------------------------------
    def smtp(self, source):
        c = smtplib.SMTP("127.0.0.1", self.server.ports["submission"], timeout=TIMEOUT,
                         source_address=(source, 0))
        c.ehlo("client.example.com.ar")
        c.starttls(context=tls_context())
        c.ehlo("client.example.com.ar")
        return c

    def smtp_fail(self, source, user, mech):
        with self.smtp(source) as c:
            c.user, c.password = user, "wrong-" + user
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                c.auth(mech, getattr(c, "auth_" + mech.lower()), initial_response_ok=True)
        self.failures[source] += 1

    def imap_fail(self, source, user, times=1):
        im = IMAPFrom(self.server.ports["imap"], source)
        for i in range(times):
            with self.assertRaises(imaplib.IMAP4.error):
                im.login(user, "wrong-%d" % i)
            self.failures[source] += 1
        im.logout()

    def pop3_fail(self, source, user, times=1):
        p = POP3From(self.server.ports["pop3"], source)
        for i in range(times):
            if i % 2 == 0:
                p.user(user)
                with self.assertRaises(poplib.error_proto):
                    p.pass_("wrong-%d" % i)
            else:
                token = base64.b64encode(("\0%s\0wrong-%d" % (user, i)).encode()).decode()
                with self.assertRaises(poplib.error_proto):
                    p._shortcmd("AUTH PLAIN " + token)
            self.failures[source] += 1
        p.quit()

    def noise(self, source):
        # Successful logins on all three protocols.
        with self.smtp(source) as c:
            c.login("alice", "secret")
            c.sendmail("alice@example.com.ar", ["bob@example.com.ar"], "Subject: ok\r\n\r\nfine\r\n")
        im = IMAPFrom(self.server.ports["imap"], source)
        im.login("alice", "secret")
        im.select("INBOX")
        im.logout()
        p = POP3From(self.server.ports["pop3"], source)
        p.user("bob")
        p.pass_("secret")
        p.stat()
        p.quit()
        # A mechanism the server does not offer: a client's mistake.
        with self.smtp(source) as c:
            code, _ = c.docmd("AUTH", "CRAM-MD5")
            self.assertEqual(code, 535)
        # Plain SMTP: a delivery, a relay refusal, a bad command.
        with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=TIMEOUT,
                          source_address=(source, 0)) as c:
            c.ehlo("client.example.com.ar")
            c.sendmail("someone@example.net", ["carol@example.com.ar"], "Subject: hi\r\n\r\nhi\r\n")
            c.mail("someone@example.net")
            code, _ = c.rcpt("victim@elsewhere.example")
            self.assertGreaterEqual(code, 500)
            c.rset()
            c.docmd("FROB")
        im = IMAPFrom(self.server.ports["imap"], source)
        im.noop()
        im.send(b"x1 FROB\r\n")
        self.assertIn(b"x1 BAD", im.readline())
        im.logout()

    # ---- fail2ban-regex ------------------------------------------------------
    def regex(self, text=None):
        # The filter includes common.conf from its own directory, as it
        # does installed in /etc/fail2ban/filter.d.
        d = tempfile.mkdtemp(prefix="postern-f2b-")
        self.addCleanup(shutil.rmtree, d, True)
        os.makedirs(os.path.join(d, "filter.d"))
        shutil.copy(FILTER, os.path.join(d, "filter.d", "postern.conf"))
        os.symlink(COMMON, os.path.join(d, "filter.d", "common.conf"))
        log = os.path.join(d, "mail.log")
        with open(log, "w") as f:
            f.write(self.server.log() if text is None else text)
        r = subprocess.run(["fail2ban-regex", "-o", "ip", log, os.path.join(d, "filter.d", "postern.conf")],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return collections.Counter(line.strip() for line in r.stdout.splitlines() if line.strip())

    def make_failures(self):
        self.smtp_fail("127.0.0.2", "alice", "PLAIN")
        self.smtp_fail("127.0.0.2", "alice", "LOGIN")
        self.smtp_fail("127.0.0.2", "nosuchuser", "PLAIN")
        self.imap_fail("127.0.0.3", "alice", times=2)
        self.imap_fail("127.0.0.3", "nosuchuser")
        self.pop3_fail("127.0.0.4", "bob", times=3)
        self.smtp_fail("127.0.0.5", "carol", "LOGIN")
        self.imap_fail("127.0.0.5", "carol")
        self.pop3_fail("127.0.0.5", "carol")
        self.noise("127.0.0.6")
        self.noise("127.0.0.2")

    @staticmethod
    def all_logged(log):
        """Every failure (and POP3's close summaries) is in the log."""
        return (log.count("SASL ") >= 6 and log.count("Aborted login (auth failed") == 4 and
                log.count("Authentication failed (attempt") == 4 and log.count("Disconnected (auth failed") == 2)

    def test_counts_exactly_the_failed_logins(self):
        self.start()
        self.make_failures()
        wait_for(lambda: self.all_logged(self.server.log()), TIMEOUT, what="all failures logged")
        got = self.regex()
        self.assertEqual(dict(got), dict(self.failures), self.server.log())
        self.assertEqual(sum(got.values()), 12)
        # The worker's auth line and the noise were there and not counted.
        log = self.server.log()
        for text in ("auth failed: user=<alice>", "Invalid authentication mechanism",
                     "Relay access denied", "Login: user=<alice>", "Login: user=<bob>"):
            self.assertIn(text, log)

    @unittest.skipUnless(os.geteuid() == 0, "a private /dev for the server's /dev/log needs root")
    def test_syslog_lines_count_the_same(self):
        box = SyslogBox(self)
        self.start(box.server_class(), "maillog_file =\n")
        self.make_failures()
        wait_for(lambda: self.all_logged(box.text()), TIMEOUT, what="all failures sent to /dev/log")
        text = box.text()
        for tag in ("postern/submission/smtpd[", "postern/smtpd[", "postern/imap-login[", "postern/pop3-login[",
                    "postern/master["):
            self.assertIn(tag, text)
        self.assertEqual(dict(self.regex(text)), dict(self.failures), text)

    def test_jail_shipped_disabled(self):
        cp = configparser.ConfigParser(interpolation=None)
        cp.read(JAIL)
        self.assertEqual(cp["postern"]["enabled"].strip(), "false")
        self.assertEqual(cp["postern"]["filter"].strip(), "postern")


class SyslogBox:
    """A /dev/log of the test's own: the server runs in a private mount
    namespace whose /dev is a directory holding the few device nodes it
    uses (bound from the real ones) and a datagram socket this test reads.
    Received lines are kept as rsyslog writes them ("DATE HOST TAG: text")."""

    MS_REC, MS_PRIVATE, MS_BIND = 0x4000, 0x40000, 0x1000
    CLONE_NEWNS = 0x20000

    def __init__(self, test):
        self.dir = tempfile.mkdtemp(prefix="postern-devlog-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        os.chmod(self.dir, 0o755)
        for node in ("null", "zero", "random", "urandom", "full", "tty"):
            open(os.path.join(self.dir, node), "w").close()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.path.join(self.dir, "log"))
        os.chmod(os.path.join(self.dir, "log"), 0o666)
        self.sock.settimeout(0.2)
        self.lines = []
        self.stopped = False
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()
        test.addCleanup(self.close)

    def read(self):
        while not self.stopped:
            try:
                data = self.sock.recv(65536).decode(errors="replace")
            except socket.timeout:
                continue
            except OSError:
                return
            # "<PRI>Mmm dd hh:mm:ss TAG[PID]: text"
            if data.startswith("<") and ">" in data:
                data = data[data.index(">") + 1:]
            self.lines.append(data[:15] + " testhost" + data[15:].rstrip("\n"))

    def text(self):
        return "".join(line + "\n" for line in list(self.lines))

    def close(self):
        self.stopped = True
        self.thread.join(5)
        self.sock.close()

    def enter(self):
        """In the server's child before exec (as root): /dev becomes self.dir."""
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
        def check(rc, what):
            if rc != 0:
                raise OSError(ctypes.get_errno(), what)
        check(libc.unshare(self.CLONE_NEWNS), "unshare")
        check(libc.mount(None, b"/", None, self.MS_REC | self.MS_PRIVATE, None), "mount --make-rprivate /")
        for node in ("null", "zero", "random", "urandom", "full", "tty"):
            check(libc.mount(("/dev/" + node).encode(), os.path.join(self.dir, node).encode(), None,
                             self.MS_BIND, None), "bind /dev/" + node)
        check(libc.mount(self.dir.encode(), b"/dev", None, self.MS_BIND, None), "bind over /dev")

    def server_class(self):
        box = self

        class SyslogServer(Server):
            def _preexec(self):
                box.enter()
                super()._preexec()
        return SyslogServer


if __name__ == "__main__":
    unittest.main()
