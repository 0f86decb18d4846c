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
import threading
import time
import unittest

from harness import Server, free_port, wait_for
from slapd_fixture import (ADMIN_DN, ADMIN_PW, SUFFIX, Slapd, alias_ldif, slapd_available, transport_ldif,
                           user_ldif)

WHY_NOT = slapd_available()
if WHY_NOT:
    print("\n*** test_ldap SKIPPED: %s ***\n" % WHY_NOT)

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
    timeout = 3
    negttl = 30

    def setUp(self):
        self.server = Server(modules=("ldap", "mbox", "alias", "transport", "smtp", "imap", "pop3"),
                             users=(), as_root=True)
        self.addCleanup(self.server.cleanup)
        home = self.server.path("home")
        owner = self.server.mail_owner
        import pwd
        self.uid = pwd.getpwnam(owner).pw_uid
        data = (user_ldif("lalice", self.uid, "{PLAIN}alicepw", os.path.join(home, "lalice"))
                + user_ldif("lbob", self.uid, "bobpw", os.path.join(home, "lbob"))
                + alias_ldif("team", ["lalice", "lbob"])
                + alias_ldif("boss", ["lalice"])
                + transport_ldif("routed.example", "error:5.1.1 routed by the directory"))
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
                              "result_attribute = description\n"),
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
            + "userdb = ldap:%s\n" % self.cf["users"]
            + "passdb = ldap:%s\n" % self.cf["users"]
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

    def test_unknown_user_rejected_at_rcpt(self):
        code, text = self.rcpt("nosuchuser@example.com.ar")
        self.assertEqual(code, 550, text)
        code, _ = self.rcpt("lbob@example.com.ar")
        self.assertEqual(code, 250)

    def test_injection_finds_nothing(self):
        for name in ("*", "*)(uid=*", "lalice)(|(uid=*", "*)(cn=*"):
            code, text = self.rcpt("\"%s\"@example.com.ar" % name)
            self.assertEqual(code // 100, 5, (name, code, text))
            with self.assertRaises(imaplib.IMAP4.error):
                c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
                try:
                    c.login(name, "alicepw")
                finally:
                    c.shutdown()
        # the filters that reached slapd carry the escaped value only
        self.assertEqual(self.slapd.searches("uid=*"), 0)

    def test_transport_map_from_ldap_routes(self):
        # relay_domains lets it in; the directory's route (error:) decides
        send(self.smtp, ["x@routed.example"])
        self.server.wait_log("routed by the directory", timeout=30)
