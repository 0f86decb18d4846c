"""The ldap module against a real OpenLDAP server (Debian's slapd, started
here with a throwaway cn=config on a loopback port): aliases, the
transport map and the userdb/passdb from the directory; RFC 4515
escaping (injection attempts find nothing); the directory down gives
temporary failures only (4xx, NO [UNAVAILABLE], -ERR [SYS/TEMP], 454),
nothing bounced or lost, mail delivered once it is back; a directory that
accepts connections but never answers stalls nobody else; the cache
answers again without asking slapd, negative answers included."""
import imaplib
import os
import poplib
import smtplib
import socket
import ssl
import threading
import time
import unittest

from harness import MODULES, Server, free_port, wait_for
from slapd_fixture import (ADMIN_DN, ADMIN_PW, SUFFIX, Slapd, alias_ldif, slapd_available, transport_ldif,
                           user_ldif)

NO_MODULE = None if os.path.exists(os.path.join(MODULES, "ldap.so")) else \
    "the ldap module is not built (cmake -DPOSTERN_LDAP=OFF)"
WHY_NOT = NO_MODULE or slapd_available()
if WHY_NOT:
    print("\n*** test_ldap SKIPPED: %s ***\n" % WHY_NOT)

# "alicepw" as SHA512-CRYPT: slapd checks it at bind, the core checks it
# when the passdb reads the attribute (pass_attribute).
ALICE_HASH = "{CRYPT}$6$abcdefgh$Is3kZSztnMPZAznDT2TCAPxT9phlTw5Pdn18vOhvb7Xdi.wDEuVZcrX3YdfoOhgdEOLvVEE/l8Vev0nuc3Obx0"
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE

BASE_CF = """server_host = {uri}
search_base = {base}
bind = yes
bind_dn = {admin}
bind_pw = {adminpw}
timeout = {timeout}
cache_ttl = 60
cache_negative_ttl = {negttl}
"""


def send(port, rcpts, sender="carol@example.com.ar", subject="test"):
    msg = "From: %s\r\nSubject: %s\r\n\r\nbody\r\n" % (sender, subject)
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.ehlo("client.example.com.ar")
        return s.sendmail(sender, rcpts, msg)


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
class LdapTest(unittest.TestCase):
    timeout = 10   # a slow directory under load is not what these tests are about
    negttl = 30
    passdb = "users"
    as_root = True

    def setUp(self):
        # ldap last: its map type does not depend on the module order
        self.server = Server(modules=("mbox", "alias", "transport", "restrict", "smtp", "imap", "pop3", "ldap"),
                             users=(), as_root=self.as_root)
        self.addCleanup(self.server.cleanup)
        home = self.server.path("home")
        owner = self.server.mail_owner or self.server.run_user
        import pwd
        self.uid = pwd.getpwnam(owner).pw_uid
        data = (user_ldif("lalice", self.uid, ALICE_HASH, os.path.join(home, "lalice"))
                + user_ldif("lbob", self.uid, "bobpw", os.path.join(home, "lbob"))
                + alias_ldif("team", ["lalice", "lbob"])
                + alias_ldif("boss", ["lalice"])
                + transport_ldif("routed.example", "error:5.1.1 routed by the directory")
                + transport_ldif("blocked@example.com.ar", "REJECT blocked by the directory", ou="access"))
        for u in ("lalice", "lbob"):
            d = os.path.join(home, u, "mail")
            os.makedirs(d, exist_ok=True)
            os.chown(os.path.join(home, u), self.uid, -1)
            os.chown(d, self.uid, -1)
        # the directory's users share mail_owner's uid: their INBOXes are
        # created in the spool by that uid
        os.chmod(self.server.path("spool"), 0o1777)
        self.slapd = Slapd(data)
        self.addCleanup(self.slapd.cleanup)
        self.slapd.start()
        common = BASE_CF.format(uri=self.slapd.uri, base=SUFFIX, admin=ADMIN_DN, adminpw=ADMIN_PW,
                                timeout=self.timeout, negttl=self.negttl)
        self.cf = {}
        for name, extra in (
                ("aliases", "query_filter = (&(objectClass=nisMailAlias)(cn=%s))\n"
                            "result_attribute = rfc822MailMember\n"),
                ("transport", "query_filter = (&(objectClass=applicationProcess)(cn=%s))\n"
                              "result_attribute = description\nsearch_base = ou=transport," + SUFFIX + "\n"),
                ("access", "query_filter = (&(objectClass=applicationProcess)(cn=%s))\n"
                           "result_attribute = description\nsearch_base = ou=access," + SUFFIX + "\n"),
                ("users", "user_filter = (&(objectClass=posixAccount)(uid=%u))\n"),
                ("hashusers", "user_filter = (&(objectClass=posixAccount)(uid=%u))\n"
                              "pass_attribute = userPassword\n")):
            path = self.server.path("ldap-%s.cf" % name)
            with open(path, "w") as f:
                f.write(common + extra)
            # bind_pw inside: readable by root and mail_owner's group only
            os.chown(path, 0, pwd.getpwnam(owner).pw_gid)
            os.chmod(path, 0o640)
            self.cf[name] = path
        self.server.write_conf(
            "alias_maps = ldap:%s\n" % self.cf["aliases"]
            + "transport_maps = ldap:%s\n" % self.cf["transport"]
            + "relay_domains = routed.example\n"
            + "smtpd_recipient_restrictions = check_recipient_access ldap:%s, permit_mynetworks, "
              "reject_unauth_destination\n" % self.cf["access"]
            + "userdb = ldap:%s\n" % self.cf["users"]
            + "passdb = ldap:%s\n" % self.cf[self.passdb]
            + "auth_mechanisms = plain login\n"
            + "disable_plaintext_auth = no\nauth_failure_delay = 0\nauth_throttle = no\n"
            + "minimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n")
        self.server.start()
        self.smtp = self.server.ports["smtpd"]

    def rcpt(self, addr, port=None):
        with smtplib.SMTP("127.0.0.1", port or self.smtp, timeout=60) as s:
            s.ehlo("client.example.com.ar")
            s.mail("carol@example.com.ar")
            return s.rcpt(addr)

    def test_alias_from_ldap_expands(self):
        send(self.smtp, ["team@example.com.ar"], subject="to the team")
        try:
            self.server.wait_messages("lalice", 1, timeout=60)
        except AssertionError:
            print(self.server.log())
            raise
        self.assertEqual(self.server.messages("lalice")[0]["Subject"], "to the team")
        self.assertEqual(self.server.wait_messages("lbob", 1, timeout=60)[0]["Subject"], "to the team")

    def test_map_query_cli(self):
        r = self.server.cmd("map", "query", "ldap:" + self.cf["aliases"], "team")
        self.assertEqual((r.returncode, r.stdout), (0, b"lalice, lbob\n"), r.stderr)
        r = self.server.cmd("user", "lbob")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(("home\t%s\n" % self.server.path("home", "lbob")).encode(), r.stdout)
        self.assertIn(("uid\t%d\n" % self.uid).encode(), r.stdout)
        self.assertEqual(self.server.cmd("user", "*").returncode, 67)
        r = self.server.cmd("map", "query", "ldap:" + self.cf["aliases"], "*")
        self.assertEqual(r.returncode, 1, r.stderr)
        with open(self.cf["aliases"], "a") as f:
            f.write("bogus_setting = 1\n")
        r = self.server.cmd("check")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"ldap-aliases.cf:", r.stdout + r.stderr)
        self.assertIn(b'unknown setting "bogus_setting"', r.stdout + r.stderr)

    def test_unknown_user_rejected_at_rcpt(self):
        code, text = self.rcpt("nosuchuser@example.com.ar")
        self.assertEqual(code, 550, text)
        code, _ = self.rcpt("lbob@example.com.ar")
        self.assertEqual(code, 250)

    def test_injection_finds_nothing(self):
        for name in ("*", "*)(uid=*", "lalice)(|(uid=*", "*)(cn=*"):
            code, text = self.rcpt("\"%s\"@example.com.ar" % name)
            self.assertEqual(code // 100, 5, (name, code, text))
            self.assertIn("AUTHENTICATIONFAILED", self.imap_login(name, "alicepw"), name)
        # the filters that reached slapd carry the escaped value only
        self.assertEqual(self.slapd.searches("uid=*"), 0)

    def test_transport_map_from_ldap_routes(self):
        # relay_domains lets it in; the directory's route (error:) decides,
        # at RCPT already (restrict consults the routing)
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            send(self.smtp, ["x@routed.example"])
        self.assertIn("routed by the directory", str(cm.exception))

    def test_access_map_from_ldap(self):
        code, text = self.rcpt("blocked@example.com.ar")
        self.assertEqual(code, 554, text)
        self.assertIn(b"blocked by the directory", text)
        self.assertEqual(self.rcpt("lbob@example.com.ar")[0], 250)

    # ---- logins with the LDAP passdb ----

    def imap_login(self, user, password):
        c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        try:
            # a quoted string: the name reaches the server as typed
            c.login('"%s"' % user.replace("\\", "\\\\").replace('"', '\\"'), password)
            return "OK"
        except imaplib.IMAP4.error as e:
            return str(e)
        finally:
            try:
                c.logout()
            except Exception:
                c.shutdown()

    def pop3_login(self, user, password):
        c = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=60)
        try:
            c.user(user)
            c.pass_(password)
            return "OK"
        except poplib.error_proto as e:
            return e.args[0].decode()
        finally:
            try:
                c.quit()
            except Exception:
                c.close()

    def smtp_auth(self, user, password):
        with smtplib.SMTP("127.0.0.1", self.server.ports["submission"], timeout=60) as c:
            c.ehlo("client.example.com.ar")
            c.starttls(context=CTX)
            c.ehlo("client.example.com.ar")
            try:
                c.login(user, password)
                return 235
            except smtplib.SMTPAuthenticationError as e:
                return e.smtp_code

    def test_logins(self):
        self.assertEqual(self.imap_login("lbob", "bobpw"), "OK")
        self.assertEqual(self.imap_login("lalice", "alicepw"), "OK")
        self.assertIn("AUTHENTICATIONFAILED", self.imap_login("lbob", "wrong"))
        self.assertEqual(self.pop3_login("lbob", "bobpw"), "OK")
        self.assertTrue(self.pop3_login("lbob", "wrong").startswith("-ERR [AUTH]"))
        self.assertEqual(self.smtp_auth("lbob", "bobpw"), 235)
        self.assertEqual(self.smtp_auth("lbob", "wrong"), 535)
        for name in ("*", "*)(uid=*", "lbob)(|(uid=*", "lbob*"):
            self.assertIn("AUTHENTICATIONFAILED", self.imap_login(name, "bobpw"), name)
            self.assertEqual(self.smtp_auth(name, "bobpw"), 535, name)
        self.assertEqual(self.slapd.searches("uid=*"), 0)

    # ---- the directory down: temporary failures only ----

    def test_directory_down_tempfails_nothing_lost(self):
        # warm: "boss" is known to be an alias (cached) before slapd stops;
        # a login leaves a bind connection that the restart breaks
        self.assertEqual(self.rcpt("boss@example.com.ar")[0], 250)
        self.assertEqual(self.imap_login("lalice", "alicepw"), "OK")
        self.slapd.stop()
        code, text = self.rcpt("lbob@example.com.ar")
        self.assertEqual(code, 451, text)
        self.assertIn(b"4.3.0", text)
        self.assertIn("UNAVAILABLE", self.imap_login("lbob", "bobpw"))
        self.assertTrue(self.pop3_login("lbob", "bobpw").startswith("-ERR [SYS/TEMP]"))
        self.assertEqual(self.smtp_auth("lbob", "bobpw"), 454)
        # accepted (the alias is cached), then deferred while the
        # directory is away: never bounced
        send(self.smtp, ["boss@example.com.ar"], subject="while down")
        self.server.wait_log("status=deferred", timeout=30)
        time.sleep(2)
        self.assertEqual(self.server.messages("lalice"), [])
        self.assertNotIn("status=bounced", self.server.log())
        self.slapd.start()
        self.assertEqual(self.server.wait_messages("lalice", 1, timeout=60)[0]["Subject"], "while down")
        self.assertNotIn("status=bounced", self.server.log())
        self.assertEqual(self.imap_login("lbob", "bobpw"), "OK")
        self.assertEqual(self.imap_login("lalice", "alicepw"), "OK")
        self.assertEqual(self.rcpt("lbob@example.com.ar")[0], 250)

    # ---- the cache ----

    def test_negative_answers_cached(self):
        for _ in range(3):
            self.assertEqual(self.rcpt("nobody42@example.com.ar")[0], 550)
            self.assertEqual(self.rcpt("lbob@example.com.ar")[0], 250)
        time.sleep(0.5)
        self.assertEqual(self.slapd.searches("uid=nobody42"), 1)
        self.assertEqual(self.slapd.searches("uid=lbob"), 1)


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
class LdapHashTest(LdapTest):
    """passdb from a stored {SCHEME}hash attribute, checked by the core."""
    passdb = "hashusers"

    def test_logins(self):
        self.assertEqual(self.imap_login("lalice", "alicepw"), "OK")
        self.assertIn("AUTHENTICATIONFAILED", self.imap_login("lalice", "wrong"))
        self.assertIn("AUTHENTICATIONFAILED", self.imap_login("lbob", "bobpw"))  # no {SCHEME}: refused
        self.assertEqual(self.smtp_auth("lalice", "alicepw"), 235)
        self.assertIn("AUTHENTICATIONFAILED", self.imap_login("*)(uid=*", "alicepw"))


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
class LdapRootlessTest(LdapTest):
    """Rootless: password checks on the worker's pool threads, which may
    wait for the directory (the loop never does)."""
    as_root = False


for _name in ("test_alias_from_ldap_expands", "test_access_map_from_ldap", "test_map_query_cli", "test_unknown_user_rejected_at_rcpt", "test_injection_finds_nothing",
              "test_transport_map_from_ldap_routes", "test_directory_down_tempfails_nothing_lost",
              "test_negative_answers_cached"):
    setattr(LdapHashTest, _name, None)
for _name in ("test_alias_from_ldap_expands", "test_access_map_from_ldap", "test_map_query_cli",
              "test_transport_map_from_ldap_routes", "test_negative_answers_cached"):
    setattr(LdapRootlessTest, _name, None)


class Hang(threading.Thread):
    """A "directory" that accepts connections and never answers."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
class LdapTlsTest(unittest.TestCase):
    """StartTLS and ldaps:// with the server's certificate checked, and
    SASL EXTERNAL over ldapi:// (slapd reads only for bound users)."""

    def test_tls_and_sasl_external(self):
        slapd = Slapd(alias_ldif("team", ["lalice", "lbob"]))
        self.addCleanup(slapd.cleanup)
        slapd.start()
        server = Server(modules=("mbox", "alias", "smtp", "ldap"), users=())
        self.addCleanup(server.cleanup)
        common = ("search_base = ou=aliases,%s\nquery_filter = (&(objectClass=nisMailAlias)(cn=%%s))\n"
                  "result_attribute = rfc822MailMember\ntimeout = 5\n" % SUFFIX)
        bind = "bind = yes\nbind_dn = %s\nbind_pw = %s\n" % (ADMIN_DN, ADMIN_PW)
        cases = {
            "starttls": "server_host = %s\nstart_tls = yes\ntls_ca_cert_file = %s\n%s" % (slapd.uri, slapd.cert, bind),
            "ldaps": "server_host = %s\ntls_ca_cert_file = %s\n%s" % (slapd.tls_uri, slapd.cert, bind),
            # the certificate is not trusted: no answer, never an insecure one
            "untrusted": "server_host = %s\nstart_tls = yes\n%s" % (slapd.uri, bind),
            "external": "server_host = %s\nbind = sasl\n" % slapd.ldapi_uri,
            "anonymous": "server_host = %s\n" % slapd.uri,
        }
        want = {"starttls": 0, "ldaps": 0, "untrusted": 2, "external": 0, "anonymous": 1}
        for name, text in cases.items():
            path = server.path("%s.cf" % name)
            with open(path, "w") as f:
                f.write(common + text)
            r = server.cmd("map", "query", "ldap:" + path, "team")
            self.assertEqual(r.returncode, want[name], (name, r.stdout, r.stderr))
            if want[name] == 0:
                self.assertEqual(r.stdout, b"lalice, lbob\n", name)


@unittest.skipIf(NO_MODULE, NO_MODULE or "")
class LdapHangTest(unittest.TestCase):
    """A directory that hangs holds up only the sessions waiting for it."""

    def test_hanging_directory_stalls_nobody_else(self):
        hang = Hang()
        hang.start()
        self.addCleanup(hang.close)
        server = Server(modules=("ldap", "mbox", "smtp"), users=())
        self.addCleanup(server.cleanup)
        cf = server.path("hang.cf")
        with open(cf, "w") as f:
            f.write("server_host = ldap://127.0.0.1:%d\nsearch_base = dc=example,dc=test\ntimeout = 8\n" % hang.port)
        os.chmod(cf, 0o644)
        server.write_conf("userdb = ldap:%s\nrelay_domains = elsewhere.example\n" % cf)
        server.start()
        port = server.ports["smtpd"]
        result = {}

        def waiting():
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as s:
                s.ehlo("client.example.com.ar")
                s.mail("carol@elsewhere.example")
                result["code"] = s.rcpt("someone@example.com.ar")
                result["at"] = time.monotonic()

        t = threading.Thread(target=waiting)
        t.start()
        wait_for(lambda: hang.conns, timeout=30, what="the directory connection")
        # meanwhile, other sessions are served
        for _ in range(3):
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
                s.ehlo("client.example.com.ar")
                s.mail("carol@elsewhere.example")
                self.assertEqual(s.rcpt("x@elsewhere.example")[0], 250)
                self.assertEqual(s.noop()[0], 250)
        done_others = time.monotonic()
        self.assertNotIn("code", result, "the waiting RCPT ended before the others: nothing was shown")
        t.join(120)
        self.assertEqual(result["code"][0], 451, result)
        self.assertLess(done_others, result["at"])

    def test_timeout_searches_once(self):
        # a search that times out is a slow directory, not a broken
        # connection: it is not sent again on a new one
        hang = Hang()
        hang.start()
        self.addCleanup(hang.close)
        server = Server(modules=("ldap", "mbox", "smtp"), users=())
        self.addCleanup(server.cleanup)
        cf = server.path("hang.cf")
        with open(cf, "w") as f:
            f.write("server_host = ldap://127.0.0.1:%d\nsearch_base = dc=example,dc=test\n"
                    "query_filter = (cn=%%s)\nresult_attribute = mail\ntimeout = 2\n" % hang.port)
        os.chmod(cf, 0o644)
        r = server.cmd("map", "query", "ldap:" + cf, "team")
        self.assertNotIn(r.returncode, (0, 1), r)
        time.sleep(1)  # the accepting thread catches up with any late connection
        self.assertEqual(len(hang.conns), 1, r)


class LdapCheckTest(unittest.TestCase):
    def test_source_without_its_module(self):
        server = Server(modules=("mbox", "smtp"), users=())
        self.addCleanup(server.cleanup)
        server.write_conf("userdb = ldap:/nonexistent/users.cf\npassdb = ldap:/nonexistent/users.cf\n")
        r = server.cmd("check")
        self.assertEqual(r.returncode, 1, r)
        out = (r.stdout + r.stderr).decode()
        self.assertIn('userdb = ldap:/nonexistent/users.cf: no loaded module provides "ldap" (add `module ldap`)',
                      out)
        self.assertIn('passdb = ldap:', out)
