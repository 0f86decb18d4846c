"""SMTP AUTH (RFC 4954) end to end: submission (587, STARTTLS) and smtps
(465, implicit TLS), PLAIN and LOGIN good and bad with Postfix's replies,
relay after AUTH only, the Received header and log lines, passwd-file
schemes made here with mkpasswd/openssl, PAM with a throwaway system user
(as root), and the per-address throttle measured."""
import base64
import os
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import unittest

from harness import Server

B64 = lambda s: base64.b64encode(s.encode() if isinstance(s, str) else s).decode()
PLAIN = lambda user, pw: B64("\0%s\0%s" % (user, pw))
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


def reply(r):
    """(code, b'text') -> 'code text' (last line of a multi-line reply)."""
    return "%d %s" % (r[0], r[1].decode().splitlines()[-1] if r[1] else "")


def auth_server(conf="", modules=("mbox", "alias", "smtp"), **kw):
    s = Server(modules=modules, **kw)
    s.write_conf("passdb = passwd-file:%s\nauth_mechanisms = plain login\nauth_failure_delay = 0s\n%s"
                 % (s.passwd_file, conf))
    if s.run_user:
        import pwd
        pw = pwd.getpwnam(s.run_user)
        os.chown(s.conf_file, pw.pw_uid, pw.pw_gid)
    return s


class AuthCase(unittest.TestCase):
    conf = ""
    modules = ("mbox", "alias", "smtp")

    def setUp(self):
        self.server = auth_server(self.conf, self.modules)
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def smtp(self, listener="submission", tls=True, source=None):
        port = self.server.ports[listener]
        if listener == "smtps":
            c = smtplib.SMTP_SSL("127.0.0.1", port, context=CTX, timeout=30,
                                 source_address=(source, 0) if source else None)
        else:
            c = smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0) if source else None)
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


class Submission(AuthCase):
    def test_no_auth_offered_without_tls(self):
        c = self.smtp(tls=False)
        self.assertFalse(c.has_extn("auth"), c.esmtp_features)
        self.assertTrue(c.has_extn("starttls"))
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN " + PLAIN("alice", "secret"))),
                         "504 5.5.4 Encryption required for requested authentication mechanism")
        self.assertEqual(reply(c.docmd("MAIL", "FROM:<alice@example.com.ar>")),
                         "530 5.7.0 Must issue a STARTTLS command first")

    def test_auth_offered_after_starttls(self):
        c = self.smtp()
        self.assertEqual(c.esmtp_features.get("auth", "").strip(), "PLAIN LOGIN")
        lines = c.ehlo_resp.decode().splitlines()
        self.assertIn("AUTH PLAIN LOGIN", lines)
        # Postfix's order: STARTTLS (gone now), AUTH, ENHANCEDSTATUSCODES.
        self.assertEqual(lines[lines.index("AUTH PLAIN LOGIN") + 1], "ENHANCEDSTATUSCODES")

    def test_plain_initial_response_good_and_bad(self):
        c = self.smtp()
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN " + PLAIN("alice", "wrong"))),
                         "535 5.7.8 Error: authentication failed: authentication failure")
        # An unknown user gets exactly the same answer.
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN " + PLAIN("nosuchuser", "secret"))),
                         "535 5.7.8 Error: authentication failed: authentication failure")
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN " + PLAIN("alice", "secret"))),
                         "235 2.7.0 Authentication successful")
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN " + PLAIN("alice", "secret"))),
                         "503 5.5.1 Error: already authenticated")

    def test_plain_with_challenge(self):
        c = self.smtp()
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN")), "334 ")
        self.assertEqual(reply(c.docmd(PLAIN("bob", "secret"))), "235 2.7.0 Authentication successful")

    def test_login_good_and_bad(self):
        c = self.smtp()
        self.assertEqual(reply(c.docmd("AUTH", "LOGIN")), "334 VXNlcm5hbWU6")
        self.assertEqual(reply(c.docmd(B64("carol"))), "334 UGFzc3dvcmQ6")
        self.assertEqual(reply(c.docmd(B64("bad-guess"))),
                         "535 5.7.8 Error: authentication failed: authentication failure")
        # LOGIN with the user name as initial response (RFC 4954 allows it).
        self.assertEqual(reply(c.docmd("AUTH", "LOGIN " + B64("carol"))), "334 UGFzc3dvcmQ6")
        self.assertEqual(reply(c.docmd(B64("secret"))), "235 2.7.0 Authentication successful")

    def test_smtplib_login(self):
        for mech in ("PLAIN", "LOGIN"):
            c = self.smtp()
            c.user, c.password = "alice", "secret"
            code, text = c.auth(mech, getattr(c, "auth_" + mech.lower()))
            self.assertEqual(code, 235, text)

    def test_protocol_errors(self):
        c = self.smtp()
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN")), "334 ")
        self.assertEqual(reply(c.docmd("*")), "501 5.7.0 Authentication aborted")
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN")), "334 ")
        self.assertEqual(reply(c.docmd("not base64!")),
                         "535 5.7.8 Error: authentication failed: Invalid base64 data in continued response")
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN a=b=")),
                         "535 5.7.8 Error: authentication failed: Invalid base64 data in initial response")
        self.assertEqual(reply(c.docmd("AUTH", "CRAM-MD5")),
                         "535 5.7.8 Error: authentication failed: Invalid authentication mechanism")
        self.assertEqual(reply(c.docmd("AUTH", "")), "501 5.5.4 Syntax: AUTH mechanism")
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN x y")), "501 5.5.4 Syntax: AUTH mechanism")
        # Decodable but not a PLAIN message: a failed login, not a crash.
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN " + B64("no separators"))),
                         "535 5.7.8 Error: authentication failed: authentication failure")
        # The session still works after all that.
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN " + PLAIN("alice", "secret"))),
                         "235 2.7.0 Authentication successful")

    def test_auth_inside_transaction(self):
        c = self.smtp()
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN " + PLAIN("alice", "secret")))[:3], "235")
        self.assertEqual(reply(c.docmd("MAIL", "FROM:<alice@example.com.ar>")), "250 2.1.0 Ok")
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN " + PLAIN("alice", "secret"))),
                         "503 5.5.1 Error: MAIL transaction in progress")

    def test_pipelined_commands_wait_for_the_check(self):
        # AUTH and MAIL in one packet: MAIL is read only after the 235.
        c = self.smtp()
        c.send(("AUTH PLAIN %s\r\nMAIL FROM:<alice@example.com.ar>\r\n" % PLAIN("alice", "secret")).encode())
        self.assertEqual(reply(c.getreply()), "235 2.7.0 Authentication successful")
        self.assertEqual(reply(c.getreply()), "250 2.1.0 Ok")

    def test_responses_split_at_every_byte(self):
        c = self.smtp()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def trickle(text):
            for b in text.encode():
                c.sock.sendall(bytes([b]))
                time.sleep(0.002)
            return reply(c.getreply())
        self.assertEqual(trickle("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6")
        self.assertEqual(trickle(B64("alice") + "\r\n"), "334 UGFzc3dvcmQ6")
        self.assertEqual(trickle(B64("secret") + "\r\n"), "235 2.7.0 Authentication successful")

    def test_auth_required_then_relay(self):
        c = self.smtp()
        self.assertEqual(reply(c.docmd("MAIL", "FROM:<alice@example.com.ar>")),
                         "530 5.7.0 Authentication required")
        c.login("alice", "secret")
        self.assertEqual(reply(c.docmd("MAIL", "FROM:<alice@example.com.ar>")), "250 2.1.0 Ok")
        self.assertEqual(reply(c.docmd("RCPT", "TO:<friend@remote.test>")), "250 2.1.5 Ok")
        self.assertEqual(reply(c.docmd("RCPT", "TO:<bob@example.com.ar>")), "250 2.1.5 Ok")
        code, text = c.data(b"Subject: relayed\r\n\r\nhello\r\n")
        self.assertEqual(code, 250, text)
        self.assertRegex(text.decode(), r"^2\.0\.0 Ok: queued as [0-9A-F]+$")
        qid = text.decode().rsplit(" ", 1)[1]
        self.server.wait_log("%s: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=alice" % qid)
        msg = self.server.wait_messages("bob", 1)[0]
        rec = " ".join(msg.get_all("Received")[0].split())
        self.assertRegex(rec, r"^from client\.example\.com\.ar \(localhost \[127\.0\.0\.1\]\) \(using TLSv1\.[23] "
                              r"with cipher \S+ \(\d+/\d+ bits\)\) by mail\.example\.com\.ar \(Postern\) with "
                              r"ESMTPSA id %s;" % qid)
        self.assertNotIn("Authenticated sender", str(msg))

    def test_port25_relay_refused_before_auth_permitted_after(self):
        c = self.smtp("smtpd")
        self.assertEqual(reply(c.docmd("MAIL", "FROM:<alice@example.com.ar>")), "250 2.1.0 Ok")
        self.assertEqual(reply(c.docmd("RCPT", "TO:<friend@remote.test>")),
                         "554 5.7.1 <friend@remote.test>: Relay access denied")
        self.assertEqual(reply(c.docmd("RSET")), "250 2.0.0 Ok")
        c.login("bob", "secret")
        self.assertEqual(reply(c.docmd("MAIL", "FROM:<bob@example.com.ar>")), "250 2.1.0 Ok")
        self.assertEqual(reply(c.docmd("RCPT", "TO:<friend@remote.test>")), "250 2.1.5 Ok")

    def test_port25_mail_needs_no_auth(self):
        # Port 25 without STARTTLS: MAIL needs no AUTH there.
        c = self.smtp("smtpd", tls=False)
        self.assertFalse(c.has_extn("auth"))
        self.assertEqual(reply(c.docmd("MAIL", "FROM:<x@example.com.ar>")), "250 2.1.0 Ok")

    def test_failures_logged_without_password(self):
        c = self.smtp()
        c.docmd("AUTH", "PLAIN " + PLAIN("alice", "Guess-One-77"))
        c.docmd("AUTH", "LOGIN")
        c.docmd(B64("nosuchuser"))
        c.docmd(B64("Guess-Two-88"))
        c.docmd("AUTH", "PLAIN")
        c.docmd("*")
        self.server.wait_log("warning: localhost[127.0.0.1]: SASL PLAIN authentication failed: "
                             "authentication failure, sasl_username=alice")
        self.server.wait_log("warning: localhost[127.0.0.1]: SASL LOGIN authentication failed: "
                             "authentication failure, sasl_username=nosuchuser")
        self.server.wait_log("warning: localhost[127.0.0.1]: SASL PLAIN authentication aborted")
        log = self.server.log()
        for secret in ("Guess-One-77", "Guess-Two-88", B64("Guess-Two-88"), PLAIN("alice", "Guess-One-77")):
            self.assertNotIn(secret, log)
        self.assertIn("connect from localhost[127.0.0.1]", log)

    def test_disconnect_counters(self):
        c = self.smtp()
        c.docmd("AUTH", "PLAIN " + PLAIN("alice", "bad"))
        c.docmd("AUTH", "PLAIN " + PLAIN("alice", "secret"))
        c.quit()
        self.server.wait_log("disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 auth=1/2 quit=1 "
                             "commands=5/6")


class Smtps(AuthCase):
    def test_implicit_tls_smtplib(self):
        c = self.smtp("smtps")
        self.assertEqual(c.esmtp_features.get("auth", "").strip(), "PLAIN LOGIN")
        self.assertFalse(c.has_extn("starttls"))
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            c.sendmail("alice@example.com.ar", ["bob@example.com.ar"], b"Subject: x\r\n\r\nx\r\n")
        self.assertEqual(cm.exception.smtp_code, 530)
        c.login("alice", "secret")
        refused = c.sendmail("alice@example.com.ar", ["bob@example.com.ar", "far@remote.test"],
                             b"Subject: over 465\r\n\r\nbody\r\n")
        self.assertEqual(refused, {})
        msg = self.server.wait_messages("bob", 1)[0]
        self.assertEqual(msg["Subject"], "over 465")
        self.assertIn("with ESMTPSA id", " ".join(msg["Received"].split()))
        self.server.wait_log("postern/smtps/smtpd[")


class AuthenticatedHeader(AuthCase):
    conf = "smtpd_sasl_authenticated_header = yes\n"

    def test_authenticated_sender_in_received(self):
        c = self.smtp()
        c.login("carol", "secret")
        c.sendmail("carol@example.com.ar", ["bob@example.com.ar"], b"Subject: hdr\r\n\r\nx\r\n")
        msg = self.server.wait_messages("bob", 1)[0]
        lines = msg["Received"].splitlines()
        self.assertTrue(lines[1].strip().startswith("(using TLSv1."), lines)
        self.assertEqual(lines[2].strip(), "(Authenticated sender: carol)")
        self.assertTrue(lines[3].strip().startswith("by mail.example.com.ar (Postern) with ESMTPSA id "), lines)


class RestrictChains(AuthCase):
    """permit_sasl_authenticated and reject_sender_login_mismatch through
    the restrict module; 127.0.0.1 is not in mynetworks here."""
    modules = ("mbox", "alias", "restrict", "smtp")

    def setUp(self):
        self.server = auth_server(modules=self.modules)
        logins = self.server.path("sender_logins")
        with open(logins, "w") as f:
            f.write("alice@example.com.ar alice\nshared@example.com.ar alice, bob\n@club.test carol\n")
        self.server.write_conf(self.server.extra_conf + (
            "mynetworks = 192.0.2.0/24\n"
            "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination\n"
            "smtpd_sender_login_maps = hash:%s\n"
            "smtpd_sender_restrictions = reject_sender_login_mismatch\n" % logins))
        if self.server.run_user:
            import pwd
            pw = pwd.getpwnam(self.server.run_user)
            os.chown(self.server.conf_file, pw.pw_uid, pw.pw_gid)
            os.chown(logins, pw.pw_uid, pw.pw_gid)
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def rcpt(self, c, sender, rcpt="bob@example.com.ar"):
        c.rset()
        self.assertEqual(reply(c.docmd("MAIL", "FROM:<%s>" % sender)), "250 2.1.0 Ok")
        return reply(c.docmd("RCPT", "TO:<%s>" % rcpt))

    def test_permit_sasl_authenticated(self):
        c = self.smtp("smtpd")
        self.assertEqual(self.rcpt(c, "nobody@example.com.ar", "far@remote.test"),
                         "554 5.7.1 <far@remote.test>: Relay access denied")
        c.rset()
        c.login("carol", "secret")
        self.assertEqual(self.rcpt(c, "x@club.test", "far@remote.test"), "250 2.1.5 Ok")

    def test_sender_login_mismatch(self):
        c = self.smtp("smtpd")
        # Not logged in: an owned address is refused, others pass.
        self.assertEqual(self.rcpt(c, "alice@example.com.ar"),
                         "553 5.7.1 <alice@example.com.ar>: Sender address rejected: not logged in as owner")
        self.assertEqual(self.rcpt(c, "someone@example.com.ar"), "250 2.1.5 Ok")
        c.rset()
        c.login("bob", "secret")
        self.assertEqual(self.rcpt(c, "alice@example.com.ar"),
                         "553 5.7.1 <alice@example.com.ar>: Sender address rejected: not owned by user bob")
        self.assertEqual(self.rcpt(c, "SHARED@example.com.ar"), "250 2.1.5 Ok")
        self.assertEqual(self.rcpt(c, "someone@example.com.ar"),
                         "553 5.7.1 <someone@example.com.ar>: Sender address rejected: not owned by user bob")
        self.assertEqual(self.rcpt(c, "x@club.test"),
                         "553 5.7.1 <x@club.test>: Sender address rejected: not owned by user bob")
        # The null sender (bounces) is never checked.
        self.assertEqual(self.rcpt(c, ""), "250 2.1.5 Ok")
        self.server.wait_log("NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 553 5.7.1 <alice@example.com.ar>: "
                             "Sender address rejected: not owned by user bob;")

    def test_policy_test_cli_with_sasl_user(self):
        r = self.server.cmd("policy", "test", "-c", self.server.conf_file, "--client", "127.0.0.1",
                            "--sender", "alice@example.com.ar", "--recipient", "bob@example.com.ar",
                            "--sasl-user", "alice")
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        r = self.server.cmd("policy", "test", "-c", self.server.conf_file, "--client", "127.0.0.1",
                            "--sender", "alice@example.com.ar", "--recipient", "bob@example.com.ar",
                            "--sasl-user", "carol")
        self.assertEqual(r.returncode, 1, r.stdout.decode() + r.stderr.decode())
        self.assertIn(b"not owned by user carol", r.stdout)

    def test_missing_login_maps_is_a_config_error(self):
        bad = self.server.path("bad.conf")
        with open(self.server.conf_file) as f:
            text = f.read().replace("smtpd_sender_login_maps", "#smtpd_sender_login_maps")
        with open(bad, "w") as f:
            f.write(text)
        r = self.server.cmd("check", "-c", bad)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"reject_sender_login_mismatch needs smtpd_sender_login_maps", r.stdout + r.stderr)


def mkpasswd(method, pw):
    return subprocess.run(["mkpasswd", "-m", method, pw], check=True, capture_output=True,
                          text=True).stdout.strip()


def openssl_passwd(flag, pw):
    return subprocess.run(["openssl", "passwd", flag, pw], check=True, capture_output=True,
                          text=True).stdout.strip()


class Schemes(AuthCase):
    """Every passwd-file scheme through SMTP AUTH, hashes made here."""

    def setUp(self):
        self.server = auth_server()
        self.pw = {"sha512": "Sha512 pw", "sha256": "Sha256:pw", "blf": "blf-pw!", "yes": "yescrypt-pw",
                   "ossl6": "openssl-6", "ossl5": "openssl-5"}
        home = self.server.path("home")
        lines = [
            "sha512:{SHA512-CRYPT}%s::::%s/sha512::" % (mkpasswd("sha-512", self.pw["sha512"]), home),
            "sha256:{SHA256-CRYPT}%s::::%s/sha256::" % (mkpasswd("sha-256", self.pw["sha256"]), home),
            "blf:{BLF-CRYPT}%s::::%s/blf::" % (mkpasswd("bcrypt", self.pw["blf"]), home),
            "yes:{CRYPT}%s::::%s/yes::" % (mkpasswd("yescrypt", self.pw["yes"]), home),
            "ossl6:{SHA512-CRYPT}%s::::%s/ossl6::" % (openssl_passwd("-6", self.pw["ossl6"]), home),
            "ossl5:{SHA256-CRYPT}%s::::%s/ossl5::" % (openssl_passwd("-5", self.pw["ossl5"]), home),
        ]
        with open(self.server.passwd_file, "a") as f:
            f.write("\n".join(lines) + "\n")
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def test_each_scheme(self):
        c = self.smtp()
        for user, pw in sorted(self.pw.items()):
            with self.subTest(user=user):
                self.assertEqual(reply(c.docmd("AUTH", "PLAIN " + PLAIN(user, pw + "x"))),
                                 "535 5.7.8 Error: authentication failed: authentication failure")
                self.assertEqual(reply(c.docmd("AUTH", "PLAIN " + PLAIN(user, pw))),
                                 "235 2.7.0 Authentication successful")
                c.docmd("RSET")
                # A fresh session for the next user.
                c = self.smtp()


@unittest.skipUnless(os.geteuid() == 0, "not root: SMTP AUTH through PAM with a throwaway system user skipped")
class Pam(unittest.TestCase):
    def setUp(self):
        self.user = "ptsmtp%d" % (os.getpid() % 100000)
        subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", self.user], check=True,
                       capture_output=True)
        self.addCleanup(subprocess.run, ["userdel", self.user], capture_output=True)
        subprocess.run(["chpasswd"], input="%s:Pam-smtp-42\n" % self.user, text=True, check=True)
        self.server = Server(modules=("mbox", "smtp"), as_root=True)
        self.server.write_conf("passdb = pam\nauth_failure_delay = 0s\n")
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def test_pam_login(self):
        c = smtplib.SMTP("127.0.0.1", self.server.ports["submission"], timeout=30)
        c.ehlo("client.example.com.ar")
        c.starttls(context=CTX)
        c.ehlo("client.example.com.ar")
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN " + PLAIN(self.user, "Pam-smtp-43"))),
                         "535 5.7.8 Error: authentication failed: authentication failure")
        self.assertEqual(reply(c.docmd("AUTH", "PLAIN " + PLAIN(self.user, "Pam-smtp-42"))),
                         "235 2.7.0 Authentication successful")
        c.quit()


class Throttle(AuthCase):
    """auth_failure_delay = 0s, so what a client waits is the per-address
    throttle alone: 127.0.0.1 fails three times, then its fourth attempt is
    timed against the first and against a fresh address. (Attempts from
    one address wait in line, each taking its hold -- 2, 4, 8, 15 s -- so
    more failures would only make the test slower.)"""
    conf = "smtpd_tls_auth_only = no\ndisable_plaintext_auth = no\n"

    def timed_bad_auth(self, source=None):
        c = self.smtp(tls=False, source=source)
        t = time.monotonic()
        r = reply(c.docmd("AUTH", "PLAIN " + PLAIN("alice", "nope")))
        elapsed = time.monotonic() - t
        self.assertEqual(r, "535 5.7.8 Error: authentication failed: authentication failure")
        return elapsed

    def test_fourth_failure_waits_longer(self):
        first = self.timed_bad_auth()
        # Two more failures at once: they wait in line, held 2 s and 4 s.
        conns = [self.smtp(tls=False) for _ in range(2)]
        for c in conns:
            c.send(("AUTH PLAIN %s\r\n" % PLAIN("alice", "nope")).encode())
        for c in conns:
            self.assertEqual(c.getreply()[0], 535)
        results = {}

        def fresh():
            results["fresh"] = self.timed_bad_auth("127.0.0.2")
        th = threading.Thread(target=fresh)
        th.start()
        fourth = self.timed_bad_auth()
        th.join()
        print("\nthrottle: first failure %.3fs, fourth %.3fs, fresh address meanwhile %.3fs"
              % (first, fourth, results["fresh"]))
        self.assertGreater(fourth, 5 * max(first, 0.2))
        self.assertGreater(fourth, 5 * max(results["fresh"], 0.2))


if __name__ == "__main__":
    unittest.main()
