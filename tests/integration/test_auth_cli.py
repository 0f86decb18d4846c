"""`postern auth test` and `postern user` against a passwd-file whose
hashes are made here by mkpasswd and openssl passwd (every scheme), and,
as root, a throwaway system user through PAM."""
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import BIN

PASSWORDS = {
    "sha512": "Sha512-pw",
    "sha256": "Sha256 pw",
    "blf": "blf:pw!",
    "yes": "yescrypt-pw",
    "osslsha": "openssl-6",
    "ossl5": "openssl-5",
    "md5": "openssl-1",
    "plain": "plain-pw",
}


def mkpasswd(method, pw):
    return subprocess.run(["mkpasswd", "-m", method, pw], check=True, capture_output=True,
                          text=True).stdout.strip()


def openssl_passwd(flag, pw):
    return subprocess.run(["openssl", "passwd", flag, pw], check=True, capture_output=True,
                          text=True).stdout.strip()


class AuthCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="postern-authcli-")
        p = PASSWORDS
        lines = [
            "# made by the test",
            "sha512:{SHA512-CRYPT}%s:2001:2001::/home/sha512" % mkpasswd("sha-512", p["sha512"]),
            "sha256:{SHA256-CRYPT}%s:2002:2002::/home/sha256" % mkpasswd("sha-256", p["sha256"]),
            "blf:{BLF-CRYPT}%s:2003:2003::/home/blf" % mkpasswd("bcrypt", p["blf"]),
            "yes:{CRYPT}%s:2004:2004::/home/yes" % mkpasswd("yescrypt", p["yes"]),
            "osslsha:{SHA512-CRYPT}%s" % openssl_passwd("-6", p["osslsha"]),
            "ossl5:{SHA256-CRYPT}%s" % openssl_passwd("-5", p["ossl5"]),
            "md5:{CRYPT}%s" % openssl_passwd("-1", p["md5"]),
            "plain:{PLAIN}%s::::/var/vmail/plain" % p["plain"],
            "broken:{NOPE}zzz",
        ]
        cls.users = os.path.join(cls.dir, "users")
        with open(cls.users, "w") as f:
            f.write("\n".join(lines) + "\n")
        cls.conf = os.path.join(cls.dir, "postern.conf")
        with open(cls.conf, "w") as f:
            f.write("passdb = passwd-file:%s\nuserdb = passwd-file:%s\nmail_uid = 5000\nmail_gid = 5001\n"
                    % (cls.users, cls.users))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def postern(self, *args, input=None, conf=None):
        return subprocess.run([BIN, "-c", conf or self.conf] + list(args), input=input,
                              capture_output=True, text=True, timeout=60)

    def test_every_scheme(self):
        for user, pw in PASSWORDS.items():
            with self.subTest(user=user):
                r = self.postern("auth", "test", user, pw)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertEqual(r.stdout, "passdb: %s auth succeeded\nextra fields:\n  user=%s\n" % (user, user))
                r = self.postern("auth", "test", user, pw + "x")
                self.assertEqual(r.returncode, 77, r.stdout + r.stderr)
                self.assertEqual(r.stdout, "passdb: %s auth failed\nextra fields:\n  user=%s\n" % (user, user))

    def test_unknown_user_same_answer(self):
        bad = self.postern("auth", "test", "plain", "wrong")
        unknown = self.postern("auth", "test", "nosuchuser", "wrong")
        self.assertEqual(unknown.returncode, bad.returncode)
        self.assertEqual(unknown.stdout.replace("nosuchuser", "U"), bad.stdout.replace("plain", "U"))
        # A bad line never authenticates, whatever is typed.
        self.assertEqual(self.postern("auth", "test", "broken", "zzz").returncode, 77)

    def test_password_prompt_from_stdin(self):
        r = self.postern("auth", "test", "sha512", input=PASSWORDS["sha512"] + "\n")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.postern("auth", "test", "sha512", input="nope\n")
        self.assertEqual(r.returncode, 77)
        r = self.postern("auth", "test", "sha512", input="")
        self.assertEqual(r.returncode, 2)

    def test_user(self):
        r = self.postern("user", "sha512")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "field\tvalue\nuser\tsha512\nuid\t2001\ngid\t2001\nhome\t/home/sha512\n")
        # Virtual user: mail_uid / mail_gid, and the output says so.
        r = self.postern("user", "plain")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("uid\t5000 (mail_uid = 5000: virtual user)\n", r.stdout)
        self.assertIn("gid\t5001 (mail_gid = 5001: virtual user)\n", r.stdout)
        self.assertIn("home\t/var/vmail/plain\n", r.stdout)
        r = self.postern("user", "nosuchuser")
        self.assertEqual(r.returncode, 67)
        self.assertIn("user nosuchuser doesn't exist", r.stderr)

    def test_usage(self):
        for args in (["user"], ["user", "a", "b"], ["auth"], ["auth", "check", "u", "p"],
                     ["auth", "test"], ["auth", "test", "u", "p", "extra"]):
            with self.subTest(args=args):
                r = self.postern(*args)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_bad_passdb(self):
        conf = os.path.join(self.dir, "bad.conf")
        with open(conf, "w") as f:
            f.write("passdb = passwd-file:%s/missing\n" % self.dir)
        r = self.postern("auth", "test", "sha512", "x", conf=conf)
        self.assertEqual(r.returncode, 75, r.stdout + r.stderr)
        self.assertIn("temporary failure", r.stdout)


@unittest.skipUnless(os.geteuid() == 0, "not root: PAM test with a throwaway system user skipped")
class AuthPamCliTest(unittest.TestCase):
    def setUp(self):
        self.user = "ptcli%d" % (os.getpid() % 100000)
        subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", self.user], check=True,
                       capture_output=True)
        self.addCleanup(subprocess.run, ["userdel", self.user], capture_output=True)
        subprocess.run(["chpasswd"], input="%s:Pam-pw-42\n" % self.user, text=True, check=True)
        self.dir = tempfile.mkdtemp(prefix="postern-authpam-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.conf = os.path.join(self.dir, "postern.conf")
        with open(self.conf, "w") as f:
            f.write("passdb = pam\nuserdb = passwd\n")

    def postern(self, *args):
        return subprocess.run([BIN, "-c", self.conf] + list(args), capture_output=True, text=True, timeout=60)

    def test_pam_user(self):
        r = self.postern("auth", "test", self.user, "Pam-pw-42")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.postern("auth", "test", self.user, "Pam-pw-43")
        self.assertEqual(r.returncode, 77, r.stdout + r.stderr)
        r = self.postern("user", self.user)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("user\t%s\n" % self.user, r.stdout)


if __name__ == "__main__":
    unittest.main()
