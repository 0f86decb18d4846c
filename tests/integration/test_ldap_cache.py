"""The credential cache of the ldap passdb (core/passdb_cache.c) against a
real slapd: a repeated login with the same password is answered without
asking the directory (no bind: slapd's log counts them, and it still
succeeds with slapd stopped); any other password goes to the directory
(never refused from the cache: a changed password works at once, a new
one while the directory is down is a temporary failure); the old password
stops working after cache_ttl; a refused password is remembered for
cache_negative_ttl; `postern reload` forgets everything."""
import imaplib
import os
import pwd
import subprocess
import time
import unittest

from harness import MODULES, Server, wait_for
from slapd_fixture import ADMIN_DN, ADMIN_PW, SUFFIX, Slapd, slapd_available, user_ldif

NO_MODULE = None if os.path.exists(os.path.join(MODULES, "ldap.so")) else \
    "the ldap module is not built (cmake -DPOSTERN_LDAP=OFF)"
WHY_NOT = NO_MODULE or slapd_available()
if WHY_NOT:
    print("\n*** test_ldap_cache SKIPPED: %s ***\n" % WHY_NOT)

# "alicepw" as SHA512-CRYPT (the stored-hash passdb checks it in the core)
ALICE_HASH = "{CRYPT}$6$abcdefgh$Is3kZSztnMPZAznDT2TCAPxT9phlTw5Pdn18vOhvb7Xdi.wDEuVZcrX3YdfoOhgdEOLvVEE/l8Vev0nuc3Obx0"
TTL = 5
NEGATIVE_TTL = 3


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
class LdapCredentialCacheTest(unittest.TestCase):
    as_root = True
    pass_attribute = False

    def setUp(self):
        self.server = Server(modules=("mbox", "imap", "ldap"), users=(), as_root=self.as_root)
        self.addCleanup(self.server.cleanup)
        owner = self.server.mail_owner or self.server.run_user
        uid = pwd.getpwnam(owner).pw_uid
        home = self.server.path("home")
        data = (user_ldif("calice", uid, ALICE_HASH, os.path.join(home, "calice"))
                + user_ldif("cbob", uid, "bobpw", os.path.join(home, "cbob")))
        for u in ("calice", "cbob"):
            os.makedirs(os.path.join(home, u, "mail"), exist_ok=True)
            os.chown(os.path.join(home, u), uid, -1)
            os.chown(os.path.join(home, u, "mail"), uid, -1)
        os.chmod(self.server.path("spool"), 0o1777)
        self.slapd = Slapd(data)
        self.addCleanup(self.slapd.cleanup)
        self.slapd.start()
        cf = self.server.path("ldap-users.cf")
        with open(cf, "w") as f:
            f.write("server_host = %s\nsearch_base = %s\nbind = yes\nbind_dn = %s\nbind_pw = %s\n"
                    "timeout = 10\ncache_ttl = %d\ncache_negative_ttl = %d\n"
                    "user_filter = (&(objectClass=posixAccount)(uid=%%u))\n"
                    % (self.slapd.uri, SUFFIX, ADMIN_DN, ADMIN_PW, TTL, NEGATIVE_TTL)
                    + ("pass_attribute = userPassword\n" if self.pass_attribute else ""))
        os.chown(cf, 0, pwd.getpwnam(owner).pw_gid)
        os.chmod(cf, 0o640)
        self.server.write_conf("userdb = ldap:%s\npassdb = ldap:%s\n" % (cf, cf)
                               + "disable_plaintext_auth = no\nauth_failure_delay = 0\nauth_throttle = no\n")
        self.server.start()

    def login(self, user, password):
        """OK, AUTHENTICATIONFAILED or UNAVAILABLE (the response code)."""
        c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=60)
        try:
            c.login(user, password)
            return "OK"
        except imaplib.IMAP4.error as e:
            for code in ("AUTHENTICATIONFAILED", "UNAVAILABLE"):
                if code in str(e):
                    return code
            return str(e)
        finally:
            try:
                c.logout()
            except Exception:
                c.shutdown()

    def binds(self, user):
        """Binds as the user's entry slapd logged so far."""
        time.sleep(0.3)  # slapd's stats line follows its answer
        needle = 'BIND dn="uid=%s,' % user
        with open(self.slapd.log_path, errors="replace") as f:
            # one line per request (a good one logs its mech= line too)
            return sum(1 for line in f if needle in line and " method=" in line)

    def set_password(self, user, password):
        ldif = ("dn: uid=%s,ou=people,%s\nchangetype: modify\nreplace: userPassword\nuserPassword: %s\n"
                % (user, SUFFIX, password))
        subprocess.run(["ldapmodify", "-x", "-H", self.slapd.uri, "-D", ADMIN_DN, "-w", ADMIN_PW],
                       input=ldif, text=True, check=True, capture_output=True)

    def test_repeated_login_asks_nothing(self):
        self.assertEqual(self.login("cbob", "bobpw"), "OK")
        self.assertEqual(self.binds("cbob"), 1)
        for _ in range(3):
            self.assertEqual(self.login("cbob", "bobpw"), "OK")
        self.assertEqual(self.binds("cbob"), 1)
        # within cache_ttl the answer stands with the directory down (as
        # Dovecot's auth cache); any other password needs the directory
        self.slapd.stop()
        self.assertEqual(self.login("cbob", "bobpw"), "OK")
        self.assertEqual(self.login("cbob", "maybe-new"), "UNAVAILABLE")
        self.assertEqual(self.login("calice", "alicepw"), "UNAVAILABLE")
        # after it, the directory down is a temporary failure again
        time.sleep(TTL + 1)
        self.assertEqual(self.login("cbob", "bobpw"), "UNAVAILABLE")
        self.assertIn("auth temporary failure: user=<cbob>", self.server.log())

    def test_password_change(self):
        self.assertEqual(self.login("cbob", "bobpw"), "OK")
        self.set_password("cbob", "newbobpw")
        # the new password is never refused from the cache: it works at once
        self.assertEqual(self.login("cbob", "newbobpw"), "OK")
        # the old one is remembered as good until cache_ttl is over
        self.assertEqual(self.login("cbob", "bobpw"), "OK")
        time.sleep(TTL + 1)
        self.assertEqual(self.login("cbob", "bobpw"), "AUTHENTICATIONFAILED")
        self.assertEqual(self.login("cbob", "newbobpw"), "OK")

    def test_refused_password_remembered(self):
        self.assertEqual(self.login("cbob", "guess1"), "AUTHENTICATIONFAILED")
        before = self.binds("cbob")
        for _ in range(3):
            self.assertEqual(self.login("cbob", "guess1"), "AUTHENTICATIONFAILED")
        self.assertEqual(self.binds("cbob"), before)
        self.assertIn("password mismatch (cached)", self.server.log())
        # the good password is not refused by the remembered bad one
        self.assertEqual(self.login("cbob", "bobpw"), "OK")
        self.assertEqual(self.login("nosuchuser", "x"), "AUTHENTICATIONFAILED")
        self.slapd.stop()
        self.assertEqual(self.login("cbob", "guess1"), "AUTHENTICATIONFAILED")
        self.assertEqual(self.login("nosuchuser", "x"), "AUTHENTICATIONFAILED")
        self.assertEqual(self.login("cbob", "guess2"), "UNAVAILABLE")
        time.sleep(NEGATIVE_TTL + 1)
        self.assertEqual(self.login("cbob", "guess1"), "UNAVAILABLE")

    def test_reload_forgets(self):
        self.assertEqual(self.login("cbob", "bobpw"), "OK")
        self.slapd.stop()
        self.assertEqual(self.login("cbob", "bobpw"), "OK")
        r = self.server.cmd("reload", as_daemon_user=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.server.wait_log("configuration reloaded", timeout=30)
        # the new generation starts with nothing remembered
        wait_for(lambda: self.login("cbob", "bobpw") == "UNAVAILABLE", timeout=30,
                 what="a login after the reload asks the (stopped) directory")
        self.slapd.start()
        # (the directory's failure is remembered for a second)
        wait_for(lambda: self.login("cbob", "bobpw") == "OK", timeout=30, what="login with slapd back")


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
class LdapCredentialCacheRootlessTest(LdapCredentialCacheTest):
    """Rootless: the checks, and so the cache, in the worker's pool threads."""
    as_root = False


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
class LdapHashCacheTest(LdapCredentialCacheTest):
    """A stored {SCHEME}hash (pass_attribute): a remembered login skips the
    search and the hash."""
    pass_attribute = True

    def test_repeated_login_asks_nothing(self):
        self.assertEqual(self.login("calice", "alicepw"), "OK")
        searches = self.slapd.searches("uid=calice")
        self.assertEqual(self.login("calice", "alicepw"), "OK")
        self.assertEqual(self.slapd.searches("uid=calice"), searches)
        self.slapd.stop()
        self.assertEqual(self.login("calice", "alicepw"), "OK")
        # the entry with its hash is in the ldap module's cache: a
        # different password is checked against it, directory down or not
        self.assertEqual(self.login("calice", "other"), "AUTHENTICATIONFAILED")


for _name in ("test_password_change", "test_refused_password_remembered", "test_reload_forgets"):
    setattr(LdapHashCacheTest, _name, None)
