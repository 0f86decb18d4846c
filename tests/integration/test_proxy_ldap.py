"""A front whose users are in LDAP (Debian's slapd, started here): the
passdb binds as the user and, with `proxy = yes` in its .cf, sends each
good login to the user's mailHost -- Dovecot's ldap passdb with
proxy=y host=. Two mailbox hosts on 127.0.0.1 (their own passwd-files);
IMAP and POP3 through the front reach the right one; a wrong password or
an injection attempt never reaches a host; `postern user` on the front
shows the directory's host."""
import os
import poplib
import socket
import unittest
import uuid
import smtplib

from harness import MODULES, SANITIZE, Server, wait_for
from slapd_fixture import ADMIN_DN, ADMIN_PW, SUFFIX, Slapd, slapd_available, user_ldif

NO_MODULE = None if os.path.exists(os.path.join(MODULES, "ldap.so")) else \
    "the ldap module is not built (cmake -DPOSTERN_LDAP=OFF)"
WHY_NOT = NO_MODULE or slapd_available()
if WHY_NOT:
    print("\n*** test_proxy_ldap SKIPPED: %s ***\n" % WHY_NOT)

TIMEOUT = 30 if SANITIZE else 10
COMMON = "auth_failure_delay = 0s\nsmtpd_client_name_timeout = 0\ndisable_plaintext_auth = no\n"


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
class LdapFront(unittest.TestCase):

    def setUp(self):
        # Two mailbox hosts, each with one user; the same IMAP/POP3 ports
        # cannot be shared on one address, so each user's mailHost names
        # its host by address and the directory's port field is not used:
        # the hosts listen on 127.0.0.2 and 127.0.0.3 with equal ports.
        self.hosts = {}
        ports = None
        for name, addr, user in (("host1", "127.0.0.2", "lalice"), ("host2", "127.0.0.3", "lbob")):
            s = Server(modules=("mbox", "smtp", "imap", "pop3"), users=(user + ":pw-" + user,),
                       listeners=("smtpd", "imap", "pop3"), listen_addr=addr)
            if ports is None:
                ports = dict(s.ports)
            s.ports.update(ports)
            s.write_conf("passdb = passwd-file:%s\n%slogin_trusted_networks = 127.0.0.1/32\n"
                         % (s.passwd_file, COMMON))
            self.addCleanup(s.cleanup)
            self.hosts[name] = s
        self.ports = ports
        self.slapd = Slapd(user_ldif("lalice", 5000, "pw-lalice", "/nonexistent", mail_host="127.0.0.2")
                           + user_ldif("lbob", 5001, "pw-lbob", "/nonexistent", mail_host="127.0.0.3"))
        self.addCleanup(self.slapd.cleanup)
        self.slapd.start()
        self.front = Server(modules=("mbox", "smtp", "imap", "pop3", "ldap"), users=(),
                            listeners=("smtpd", "imap", "pop3"))
        self.addCleanup(self.front.cleanup)
        cf = self.front.path("ldap-users.cf")
        with open(cf, "w") as f:
            f.write("server_host = %s\nsearch_base = %s\nbind = yes\nbind_dn = %s\nbind_pw = %s\n"
                    "timeout = 5\nuser_filter = (&(objectClass=posixAccount)(uid=%%u))\nproxy = yes\n"
                    % (self.slapd.uri, SUFFIX, ADMIN_DN, ADMIN_PW))
        os.chmod(cf, 0o644)   # a throwaway directory's admin password
        self.front.write_conf("passdb = ldap:%s\nuserdb = ldap:%s\n%s"
                              "proxy_imap_port = %d\nproxy_pop3_port = %d\nproxy_timeout = 5s\n"
                              % (cf, cf, COMMON, ports["imap"], ports["pop3"]))
        for s in self.hosts.values():
            s.start()
        self.front.start()

    def deliver(self, host, user, subject):
        msg = "From: s@example.net\r\nSubject: %s\r\n\r\nbody\r\n" % subject
        with smtplib.SMTP(host.listen_addr, host.ports["smtpd"], timeout=TIMEOUT) as c:
            c.sendmail("s@example.net", [user + "@example.com.ar"], msg)
        wait_for(lambda: any(m["Subject"] == subject for m in host.messages(user)), TIMEOUT, what="delivery")

    def imap(self, user, password, subject=None):
        s = socket.create_connection(("127.0.0.1", self.front.ports["imap"]), TIMEOUT)
        f = s.makefile("rb")
        out = []
        try:
            f.readline()
            s.sendall(b"a LOGIN \"%s\" \"%s\"\r\n" % (user.encode(), password.encode()))
            while True:
                line = f.readline()
                out.append(line)
                if line.startswith(b"a ") or not line:
                    break
            if subject and line.startswith(b"a OK"):
                s.sendall(b"b SELECT INBOX\r\nc SEARCH SUBJECT %s\r\n" % subject.encode())
                while True:
                    line = f.readline()
                    out.append(line)
                    if line.startswith(b"c ") or not line:
                        break
            return b"".join(out)
        finally:
            s.close()

    def test_logins_reach_the_directory_host(self):
        s1, s2 = "l1-" + uuid.uuid4().hex[:8], "l2-" + uuid.uuid4().hex[:8]
        self.deliver(self.hosts["host1"], "lalice", s1)
        self.deliver(self.hosts["host2"], "lbob", s2)
        got = self.imap("lalice", "pw-lalice", s1)
        self.assertIn(b"a OK", got)
        self.assertRegex(got, rb"\* SEARCH \d")
        got = self.imap("lbob", "pw-lbob", s1)          # lbob's host has no s1
        self.assertIn(b"a OK", got)
        self.assertIn(b"* SEARCH\r\n", got)
        self.front.wait_log("proxy=127.0.0.2")
        self.front.wait_log("proxy=127.0.0.3")
        p = poplib.POP3("127.0.0.1", self.front.ports["pop3"], timeout=TIMEOUT)
        try:
            p.user("lbob")
            self.assertTrue(p.pass_("pw-lbob").startswith(b"+OK"))
            self.assertEqual(p.stat()[0], 1)
            p.quit()
        finally:
            p.close()

    def test_wrong_password_and_injection_stay_at_the_front(self):
        self.assertIn(b"AUTHENTICATIONFAILED", self.imap("lalice", "wrong"))
        self.assertIn(b"AUTHENTICATIONFAILED", self.imap("*)(uid=*", "pw-lalice"))
        for s in self.hosts.values():
            self.assertNotIn("Login", s.log())
            self.assertNotIn("auth", s.log())

    def test_user_cli_shows_the_host(self):
        r = self.front.cmd("user", "-c", self.front.conf_file, "lbob")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"host\t127.0.0.3\n", r.stdout)


if __name__ == "__main__":
    unittest.main()
