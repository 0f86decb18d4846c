"""Per-listener settings (`LISTENER.PARAM = value`, Postfix's master.cf -o)
with the shipped conf/postern.conf as the config under test: only the
paths, ports and users a test must own are appended after it (a later line
wins, as in main.cf), plus mynetworks = 127.0.0.1/32 so that a client on
127.0.0.5 is outside it.

An authenticated user from outside mynetworks sends through submission
(and smtps) to an outside domain, relayed to an SMTP sink on loopback;
the same session before AUTH is refused; port 25 keeps the file's chains.
The listener's log tag (postern/submission/smtpd), `postern policy test
--listener`, `postern config -l`, FILE:LINE errors for bad overrides and
a reload that keeps (and changes) them."""
import os
import smtplib
import ssl
import threading
import unittest

from harness import Server, SRC, free_port, wait_for

# python3-aiosmtpd is a test dependency (scripts/deps.sh).
from aiosmtpd.controller import Controller

SHIPPED = os.path.join(SRC, "conf", "postern.conf")
OUTSIDE = "127.0.0.5"     # not in mynetworks = 127.0.0.1/32
MODULES = ("mbox", "alias", "transport", "restrict", "smtp", "imap", "pop3")  # the shipped lines
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


class Sink:
    """The next hop for example.net: keeps every envelope it is given."""

    def __init__(self):
        self.envelopes = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 Ok: kept"


class ShippedServer(Server):
    """The harness's daemon, whose config is conf/postern.conf followed by
    the test's paths, ports and users."""

    # What the harness writes that a test must own; the shipped file's
    # identity (myhostname, mydomain, mydestination) matches the harness's.
    OWN = ("module_directory", "queue_directory", "pid_file", "maillog_file", "userdb", "dns_servers",
           "smtpd_hosts_file", "mail_owner", "mail_location", "alias_maps", "alias_database", "ssl_cert",
           "ssl_key", "mynetworks", "inet_interfaces")

    def base_conf(self):
        with open(SHIPPED) as f:
            shipped = f.read().rstrip("\n")
        own = [l for l in super().base_conf() if l.split(" ", 1)[0] in self.OWN]
        return [shipped, "", "# ---- appended by the test: its own paths, ports and users ----",
                "myorigin = $mydomain"] + own


def reply(r):
    return "%d %s" % (r[0], r[1].decode())


def banner(port):
    c = smtplib.SMTP(timeout=30)
    try:
        return reply(c.connect("127.0.0.1", port))
    finally:
        c.close()


class ListenerOverrides(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sink = Sink()
        cls.sink_port = free_port()
        cls.controller = Controller(cls.sink, hostname="127.0.0.1", port=cls.sink_port)
        cls.controller.start()
        cls.server = ShippedServer(modules=MODULES, listeners=("smtpd", "submission", "smtps"))
        cls.transport = cls.server.path("transport")
        with open(cls.transport, "w") as f:
            f.write("example.net smtp:[127.0.0.1]:%d\n" % cls.sink_port)
        os.chmod(cls.transport, 0o644)
        cls.test_conf = ("passdb = passwd-file:%s\ntransport_maps = hash:%s\nauth_failure_delay = 0s\n"
                         % (cls.server.passwd_file, cls.transport))
        cls.server.write_conf(cls.test_conf)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        cls.server.cleanup()
        cls.controller.stop()
        assert rc == 0, "postern exited with %s" % rc

    def connect(self, listener, tls=True, source=OUTSIDE):
        port = self.server.ports[listener]
        if listener == "smtps":
            c = smtplib.SMTP_SSL("127.0.0.1", port, context=CTX, timeout=30, source_address=(source, 0))
        else:
            c = smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0))
        self.addCleanup(self._quit, c)
        c.ehlo("client.example.com.ar")
        if tls and listener != "smtps":
            c.starttls(context=CTX)
            c.ehlo("client.example.com.ar")
        return c

    @staticmethod
    def _quit(c):
        try:
            c.quit()
        except (smtplib.SMTPException, OSError):
            pass

    def relayed(self, rcpt, subject):
        def found():
            with self.sink.lock:
                return [e for e in self.sink.envelopes if rcpt in e[1] and subject.encode() in e[2]]
        return wait_for(found, 30, what="%s relayed to the sink" % rcpt)[0]

    def send_authenticated(self, listener, rcpt, subject):
        c = self.connect(listener)
        # The same session before AUTH: nothing but AUTH.
        self.assertEqual(reply(c.docmd("MAIL", "FROM:<alice@example.com.ar>")),
                         "530 5.7.0 Authentication required")
        self.assertEqual(reply(c.docmd("RCPT", "TO:<%s>" % rcpt)), "503 5.5.1 Error: need MAIL command")
        c.login("alice", "secret")
        # Any address as the sender, any domain as the recipient.
        self.assertEqual(reply(c.docmd("MAIL", "FROM:<someone@elsewhere.example.org>")), "250 2.1.0 Ok")
        self.assertEqual(reply(c.docmd("RCPT", "TO:<%s>" % rcpt)), "250 2.1.5 Ok")
        code, text = c.data(("Subject: %s\r\n\r\nhello from outside mynetworks\r\n" % subject).encode())
        self.assertEqual(code, 250, text)
        qid = text.decode().rsplit(" ", 1)[1]
        env = self.relayed(rcpt, subject)
        self.assertEqual(env[0], "someone@elsewhere.example.org")
        return qid

    def test_submission_authenticated_user_relays_from_outside_mynetworks(self):
        qid = self.send_authenticated("submission", "friend@example.net", "via submission")
        # Postfix's shape for a service with -o syslog_name=postfix/submission.
        self.server.wait_log("postern/submission/smtpd[")
        self.server.wait_log("%s: client=unknown[%s], sasl_method=PLAIN, sasl_username=alice" % (qid, OUTSIDE))
        line = [l for l in self.server.log().splitlines() if "%s: client=" % qid in l][0]
        self.assertIn(" postern/submission/smtpd[", line)

    def test_smtps_authenticated_user_relays(self):
        qid = self.send_authenticated("smtps", "pal@example.net", "via smtps")
        line = wait_for(lambda: [l for l in self.server.log().splitlines() if "%s: client=" % qid in l],
                        what="client line")[0]
        self.assertIn(" postern/smtps/smtpd[", line)

    def test_submission_without_tls_or_auth_refused(self):
        c = self.connect("submission", tls=False)
        self.assertEqual(reply(c.docmd("MAIL", "FROM:<alice@example.com.ar>")),
                         "530 5.7.0 Must issue a STARTTLS command first")
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")),
                         "504 5.5.4 Encryption required for requested authentication mechanism")

    def test_port25_keeps_the_files_chains(self):
        c = self.connect("smtpd", tls=False)
        self.assertEqual(reply(c.docmd("MAIL", "FROM:<x@example.com.ar>")), "250 2.1.0 Ok")
        # The default smtpd_relay_restrictions' defer_unauth_destination.
        self.assertEqual(reply(c.docmd("RCPT", "TO:<friend@example.net>")),
                         "454 4.7.1 <friend@example.net>: Relay access denied")
        self.server.wait_log("postern/smtpd[")
        line = wait_for(lambda: [l for l in self.server.log().splitlines()
                                 if "reject: RCPT from unknown[%s]" % OUTSIDE in l], what="reject line")[0]
        self.assertIn(" postern/smtpd[", line)

    def test_policy_test_listener(self):
        args = ["policy", "test", "-c", self.server.conf_file, "--client", OUTSIDE,
                "--sender", "alice@example.com.ar", "--recipient", "friend@example.net"]
        r = self.server.cmd(*(args + ["--listener", "submission", "--sasl-user", "alice"]))
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        self.assertIn("listener: submission", out)
        self.assertIn("smtpd_relay_restrictions: permit_sasl_authenticated -> permit", out)
        self.assertIn("result: 250 2.1.5 Ok (rule permit_sasl_authenticated)", out)
        r = self.server.cmd(*(args + ["--listener", "submission"]))
        self.assertEqual(r.returncode, 1, r.stdout.decode())
        self.assertIn("smtpd_relay_restrictions: reject -> reject", r.stdout.decode())
        # The file's chains (port 25): the relay is refused even after AUTH.
        r = self.server.cmd(*(args + ["--sasl-user", "alice"]))
        self.assertEqual(r.returncode, 1, r.stdout.decode())
        self.assertIn("Relay access denied (rule reject_unauth_destination)", r.stdout.decode())
        r = self.server.cmd(*(args + ["--listener", "imap"]))
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown listener imap", r.stderr.decode())

    def test_config_shows_listener_values(self):
        r = self.server.cmd("config", "-c", self.server.conf_file, "-l", "submission",
                            "smtpd_relay_restrictions", "smtpd_recipient_restrictions", "syslog_name")
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(r.stdout.decode(), "smtpd_relay_restrictions = permit_sasl_authenticated, reject\n"
                                            "smtpd_recipient_restrictions =\n"
                                            "syslog_name = postern/submission\n")
        r = self.server.cmd("config", "-c", self.server.conf_file, "-n")
        out = r.stdout.decode()
        self.assertIn("\nsmtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n", out)
        self.assertIn("\nsubmission.smtpd_relay_restrictions = permit_sasl_authenticated, reject\n", out)
        self.assertIn("\nsmtps.syslog_name = postern/smtps\n", out)
        r = self.server.cmd("config", "-c", self.server.conf_file, "smtpd.syslog_name", "smtps.smtpd_tls_security_level")
        self.assertEqual(r.stdout.decode(), "smtpd.syslog_name = postern\nsmtps.smtpd_tls_security_level = encrypt\n")


class OverrideErrors(unittest.TestCase):
    """A bad override is an error at its line, found by `postern check`
    and refused by a reload (the running config stays)."""

    def setUp(self):
        self.server = ShippedServer(modules=MODULES, listeners=("smtpd", "submission"))
        self.addCleanup(self.server.cleanup)
        self.base = "passdb = passwd-file:%s\nauth_failure_delay = 0s\ntransport_maps =\n" % self.server.passwd_file
        self.server.write_conf(self.base)

    def lines_of(self, *texts):
        with open(self.server.conf_file) as f:
            lines = f.read().splitlines()
        return [lines.index(t) + 1 for t in texts]

    def test_check_reports_file_line(self):
        bad = ("imap.smtpd_banner = x", "submission.queue_directory = /tmp", "submission.smtpd_tls_security_level = always",
               "submission.smtpd_relay_restrictons = reject")
        self.server.write_conf(self.base + "\n".join(bad) + "\n")
        r = self.server.cmd("check", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 1)
        err = r.stderr.decode()
        cf = self.server.conf_file
        n = self.lines_of(*bad)
        self.assertIn("%s:%d: unknown listener \"imap\" in imap.smtpd_banner (listeners with per-listener "
                      "settings: smtpd, submission, smtps)" % (cf, n[0]), err)
        self.assertIn("%s:%d: queue_directory cannot be set per listener" % (cf, n[1]), err)
        self.assertIn("%s:%d: invalid value for smtpd_tls_security_level: must be none, may or encrypt" % (cf, n[2]), err)
        self.assertIn("%s:%d: unknown parameter \"smtpd_relay_restrictons\" in submission.smtpd_relay_restrictons "
                      "(did you mean \"smtpd_relay_restrictions\"?)" % (cf, n[3]), err)
        self.assertEqual(len(err.strip().splitlines()), 4, err)
        # A restriction list is checked by the restrict module, per listener.
        bad = "submission.smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destinaton"
        self.server.write_conf(self.base + bad + "\n")
        r = self.server.cmd("check", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 1)
        self.assertIn("%s:%d: " % (cf, self.lines_of(bad)[0]), r.stderr.decode())
        self.assertIn("reject_unauth_destinaton", r.stderr.decode())

    def test_reload_keeps_and_changes_overrides(self):
        self.server.start()
        port = self.server.ports["submission"]

        self.assertEqual(banner(port), "220 mail.example.com.ar ESMTP Postern")
        self.server.write_conf(self.base + "submission.smtpd_banner = $myhostname submission here\n")
        self.server.reload()

        wait_for(lambda: banner(port) == "220 mail.example.com.ar submission here", 20,
                 what="the new submission banner")
        # The built-in values are still there after the reload: no MAIL
        # before TLS and AUTH, on a session of the new generation.
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
            c.ehlo("client.example.com.ar")
            self.assertEqual(reply(c.docmd("MAIL", "FROM:<a@example.com.ar>")),
                             "530 5.7.0 Must issue a STARTTLS command first")
            c.starttls(context=CTX)
            c.ehlo("client.example.com.ar")
            self.assertEqual(reply(c.docmd("MAIL", "FROM:<a@example.com.ar>")),
                             "530 5.7.0 Authentication required")
        # Port 25 keeps the file's banner.
        self.assertEqual(banner(self.server.ports["smtpd"]), "220 mail.example.com.ar ESMTP Postern")
        # A broken override is refused: the running values stay.
        self.server.write_conf(self.base + "submission.smtpd_banner = $myhostname submission here\n"
                               "submission.smtpd_tls_security_level = always\n")
        self.server.reload()
        self.server.wait_log("smtpd_tls_security_level")
        self.assertEqual(banner(port), "220 mail.example.com.ar submission here")
        self.assertIsNone(self.server.proc.poll())
        # A clean stop (under ASan: no leak of the listener views).
        self.assertEqual(self.server.stop(), 0, self.server.log())


if __name__ == "__main__":
    unittest.main()
