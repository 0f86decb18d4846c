"""relay_recipient_maps on a front (Postfix's parameter): for a domain in
relay_domains, a recipient the maps do not list is refused at RCPT with
550 5.1.1 (User unknown in relay recipient table) instead of being
accepted and bounced later; a listed one is relayed to the mailbox host
the transport map names. With the table in LDAP (Debian's slapd, started
here), the directory stopped gives 451 4.3.0 for every recipient, known
or not: never an accept of an unknown user, never a 550 for a known one.
Two mailbox hosts on 127.0.0.2 and 127.0.0.3 (same ports, as in
test_proxy_ldap.py)."""
import os
import smtplib
import time
import unittest
import uuid

from harness import MODULES, SANITIZE, Server, wait_for
from slapd_fixture import ADMIN_DN, ADMIN_PW, SUFFIX, Slapd, slapd_available, user_ldif

TIMEOUT = 30 if SANITIZE else 10
DOMAIN = "hosted.test"
COMMON = "smtpd_client_name_timeout = 0\nrecipient_delimiter = +\n"

NO_LDAP = None if os.path.exists(os.path.join(MODULES, "ldap.so")) else \
    "the ldap module is not built (cmake -DPOSTERN_LDAP=OFF)"
WHY_NOT_LDAP = NO_LDAP or slapd_available()
if WHY_NOT_LDAP:
    print("\n*** test_relay_recipients (ldap part) SKIPPED: %s ***\n" % WHY_NOT_LDAP)


class FrontBase:
    """A front relaying DOMAIN to two mailbox hosts; subclasses say where
    the relay recipient table lives (relay_maps_conf)."""
    front_modules = ("mbox", "transport", "smtp")

    def setUp(self):
        self.hosts = {}
        port = None
        for name, addr, user in (("host1", "127.0.0.2", "ralice"), ("host2", "127.0.0.3", "rbob")):
            s = Server(modules=("mbox", "smtp"), users=(user,), listeners=("smtpd",), listen_addr=addr)
            if port is None:
                port = s.ports["smtpd"]
            s.ports["smtpd"] = port
            s.write_conf("mydestination = $myhostname, %s\n%s" % (DOMAIN, COMMON))
            self.addCleanup(s.cleanup)
            self.hosts[name] = s
        self.front = Server(modules=self.front_modules, users=(), listeners=("smtpd",))
        self.addCleanup(self.front.cleanup)
        transport = self.front.path("transport")
        with open(transport, "w") as f:
            f.write("ralice@%s smtp:[127.0.0.2]:%d\nrbob@%s smtp:[127.0.0.3]:%d\n" % (DOMAIN, port, DOMAIN, port))
        os.chmod(transport, 0o644)
        # mynetworks: not the test client, so relaying elsewhere is refused
        self.front.write_conf("relay_domains = %s\ntransport_maps = hash:%s\nmynetworks = 127.0.0.9/32\n%s%s"
                              % (DOMAIN, transport, COMMON, self.relay_maps_conf()))
        for s in self.hosts.values():
            s.start()
        self.front.start()

    def rcpt(self, addr):
        with smtplib.SMTP("127.0.0.1", self.front.ports["smtpd"], timeout=TIMEOUT) as c:
            c.ehlo("client.example.net")
            c.mail("sender@example.net")
            return c.rcpt(addr)

    def send(self, rcpts, subject):
        msg = "From: sender@example.net\r\nSubject: %s\r\n\r\nbody\r\n" % subject
        with smtplib.SMTP("127.0.0.1", self.front.ports["smtpd"], timeout=TIMEOUT) as c:
            c.ehlo("client.example.net")
            return c.sendmail("sender@example.net", rcpts, msg)

    def test_known_relayed_to_its_host_unknown_refused_at_rcpt(self):
        s1, s2 = "r1-" + uuid.uuid4().hex[:8], "r2-" + uuid.uuid4().hex[:8]
        self.assertEqual(self.send(["ralice@%s" % DOMAIN], s1), {})
        self.assertEqual(self.send(["rbob+news@%s" % DOMAIN.upper()], s2), {})
        host1, host2 = self.hosts["host1"], self.hosts["host2"]
        wait_for(lambda: any(m["Subject"] == s1 for m in host1.messages("ralice")), TIMEOUT, what="host1")
        wait_for(lambda: any(m["Subject"] == s2 for m in host2.messages("rbob")), TIMEOUT, what="host2")
        self.assertFalse(any(m["Subject"] == s2 for m in host1.messages("ralice")))
        code, text = self.rcpt("nobody@%s" % DOMAIN)
        self.assertEqual(code, 550, text)
        self.assertEqual(text.decode(), "5.1.1 <nobody@%s>: Recipient address rejected: "
                         "User unknown in relay recipient table" % DOMAIN)
        # a name that only the extension makes known is not known
        self.assertEqual(self.rcpt("nobody+ralice@%s" % DOMAIN)[0], 550)
        self.front.wait_log("relay recipient table")
        # mail to other domains is unaffected: not ours to relay (554, or
        # restrict's default defer_unauth_destination: 454)
        self.assertIn(self.rcpt("someone@elsewhere.example")[0], (454, 554))


class HashFront(FrontBase, unittest.TestCase):

    def relay_maps_conf(self):
        p = self.front.path("relay_recipients")
        with open(p, "w") as f:
            f.write("ralice@%s OK\nrbob@%s OK\n@open.%s OK\n" % (DOMAIN, DOMAIN, DOMAIN))
        os.chmod(p, 0o644)
        return "relay_recipient_maps = hash:%s\n" % p

    def test_domain_wildcard(self):
        # relay_domains covers subdomains; "@open.hosted.test" lists all of one
        self.assertEqual(self.rcpt("anyone@open.%s" % DOMAIN)[0], 250)
        self.assertEqual(self.rcpt("anyone@closed.%s" % DOMAIN)[0], 550)


class EmptyMapsFront(FrontBase, unittest.TestCase):
    """Without relay_recipient_maps every address of relay_domains is
    accepted (Postfix's empty value); the transport map bounces later."""

    def relay_maps_conf(self):
        return ""

    def test_known_relayed_to_its_host_unknown_refused_at_rcpt(self):
        self.assertEqual(self.rcpt("nobody@%s" % DOMAIN)[0], 250)


class CheckRelayMaps(unittest.TestCase):

    def test_missing_table_is_an_error(self):
        s = Server(modules=("mbox", "transport", "smtp"), users=(), listeners=("smtpd",))
        self.addCleanup(s.cleanup)
        s.write_conf("relay_domains = %s\nrelay_recipient_maps = hash:%s\n"
                     % (DOMAIN, s.path("no-such-table")))
        r = s.cmd("check", "-c", s.conf_file)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(b"relay_recipient_maps", r.stdout + r.stderr)
        self.assertIn(b"does not exist", r.stdout + r.stderr)

    def test_bad_map_type_is_an_error(self):
        s = Server(modules=("mbox", "transport", "smtp"), users=(), listeners=("smtpd",))
        self.addCleanup(s.cleanup)
        s.write_conf("relay_domains = %s\nrelay_recipient_maps = nosuchtype:/x\n" % DOMAIN)
        r = s.cmd("check", "-c", s.conf_file)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(b"unsupported map type", r.stdout + r.stderr)


@unittest.skipIf(WHY_NOT_LDAP, WHY_NOT_LDAP or "")
class LdapFront(FrontBase, unittest.TestCase):
    front_modules = ("ldap", "mbox", "transport", "restrict", "smtp")

    def relay_maps_conf(self):
        self.slapd = Slapd(user_ldif("ralice", 5000, "pw", "/nonexistent", mail_host="127.0.0.2",
                                     mails=("ralice@%s" % DOMAIN,))
                           + user_ldif("rbob", 5001, "pw", "/nonexistent", mail_host="127.0.0.3",
                                       mails=("rbob@%s" % DOMAIN,)))
        self.addCleanup(self.slapd.cleanup)
        self.slapd.start()
        cf = self.front.path("ldap-relay-recipients.cf")
        # No cache: every RCPT asks the directory, so stopping it shows.
        with open(cf, "w") as f:
            f.write("server_host = %s\nsearch_base = %s\nbind = yes\nbind_dn = %s\nbind_pw = %s\n"
                    "timeout = 10\ncache_ttl = 0\ncache_negative_ttl = 0\n"
                    "query_filter = (&(objectClass=inetLocalMailRecipient)(mail=%%s))\nresult_attribute = uid\n"
                    % (self.slapd.uri, SUFFIX, ADMIN_DN, ADMIN_PW))
        os.chmod(cf, 0o644)   # a throwaway directory's admin password
        return "relay_recipient_maps = ldap:%s\n" % cf

    def test_directory_down_is_a_tempfail(self):
        self.assertEqual(self.rcpt("ralice@%s" % DOMAIN)[0], 250)
        self.assertEqual(self.rcpt("nobody@%s" % DOMAIN)[0], 550)
        self.slapd.stop()
        # cache_ttl = 0 still shares an answer for a second (ldap module)
        time.sleep(1.5)
        for addr in ("ralice@%s" % DOMAIN, "nobody@%s" % DOMAIN, "other-%s@%s" % (uuid.uuid4().hex[:6], DOMAIN)):
            code, text = self.rcpt(addr)
            self.assertEqual(code, 451, (addr, text))
            self.assertTrue(text.startswith(b"4.3.0 "), text)
        self.slapd.start()
        wait_for(lambda: self.rcpt("ralice@%s" % DOMAIN)[0] == 250, TIMEOUT, what="directory back")
        self.assertEqual(self.rcpt("nobody@%s" % DOMAIN)[0], 550)

    def test_injection_finds_nobody(self):
        for addr in ("*@%s" % DOMAIN, "\"*)(mail=*\"@%s" % DOMAIN):
            self.assertEqual(self.rcpt(addr)[0], 550, addr)


if __name__ == "__main__":
    unittest.main()
