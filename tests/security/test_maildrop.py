"""Issue #11 item 6: a message submitted with `postern sendmail` waits in
queue_directory/maildrop/ until the server picks it up (the server may be
down). Other local users must not be able to list that directory, open,
read, rename or remove the pending files, even knowing their names; the
names must not be guessable; and the server must still deliver the
message intact once it starts. Runs as root with throwaway users."""
import grp
import os
import pwd
import stat
import subprocess
import sys
import unittest

from harness import BIN, Server, throwaway_user, wait_for

# The throwaway users run Python too: the system one (a per-user install
# under /root would be out of their reach).
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

# Run by user B (the attacker) with the maildrop path and the names root
# sees in it: every attempt prints one line "what errno-name".
PROBE = r"""
import errno, os, sys
d = sys.argv[1]
names = sys.argv[2:]
def attempt(what, fn):
    try:
        fn()
        print(what, "OK")
    except OSError as e:
        print(what, errno.errorcode.get(e.errno, str(e.errno)))
attempt("listdir", lambda: os.listdir(d))
attempt("opendir", lambda: os.close(os.open(d, os.O_RDONLY | os.O_DIRECTORY)))
for n in names:
    p = os.path.join(d, n)
    attempt("read " + n, lambda: open(p, "rb").read())
    attempt("write " + n, lambda: os.close(os.open(p, os.O_WRONLY)))
    attempt("unlink " + n, lambda: os.unlink(p))
    attempt("rename " + n, lambda: os.rename(p, os.path.join(d, "stolen")))
    attempt("link " + n, lambda: os.link(p, os.path.join("/tmp", "pt-stolen-%d" % os.getpid())))
"""


def as_user(name, umask=None):
    pw = pwd.getpwnam(name)

    def pre():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
        if umask is not None:
            os.umask(umask)
    return pre


@unittest.skipUnless(os.geteuid() == 0, "needs root: throwaway users and a privilege-separated daemon")
class MaildropPrivacyTest(unittest.TestCase):
    def setUp(self):
        self.alice = throwaway_user("ptma", cleanup=self.addCleanup)
        self.eve = throwaway_user("ptme", cleanup=self.addCleanup)
        s = Server(modules=("mbox", "smtp"), users=(), as_root=True, listeners=("smtpd",))
        self.addCleanup(s.cleanup)
        self.server = s
        pw = pwd.getpwnam(self.alice)
        home = s.path("home", self.alice)
        os.makedirs(os.path.join(home, "mail"), exist_ok=True)
        for d in (home, os.path.join(home, "mail")):
            os.chown(d, pw.pw_uid, pw.pw_gid)
        with open(s.passwd_file, "w") as f:
            f.write("%s:{PLAIN}secret:%d:%d::%s::\n" % (self.alice, pw.pw_uid, pw.pw_gid, home))
        os.chmod(s.path("spool"), 0o1777)
        self.maildrop = s.path("queue", "maildrop")
        # A first start makes the queue directories; then the server stays
        # down so that submissions wait in the maildrop.
        s.start()
        s.stop()

    def sendmail(self, user, body, umask=0):
        """sendmail run by user (umask 0: the worst a careless user does)."""
        return subprocess.run([BIN, "sendmail", "-i", self.alice], input=body, capture_output=True,
                              env=self.server.env(), timeout=60, preexec_fn=as_user(user, umask))

    def test_pending_submission_private_until_delivered(self):
        body = b"Subject: payroll\n\nthe secret figures: 4242\n"
        r = self.sendmail(self.alice, body)
        self.assertEqual(r.returncode, 0, r.stderr)
        names = os.listdir(self.maildrop)
        self.assertEqual(len(names), 1, names)
        name = names[0]

        # eve is told the name (more than guessing could ever give her).
        r = subprocess.run([PY, "-c", PROBE, self.maildrop, name], capture_output=True,
                           timeout=60, preexec_fn=as_user(self.eve))
        self.assertEqual(r.returncode, 0, r.stderr)
        results = dict(line.rsplit(" ", 1) for line in r.stdout.decode().splitlines())
        self.assertEqual(results, {
            "listdir": "EACCES", "opendir": "EACCES",
            "read " + name: "EACCES", "write " + name: "EACCES",
            "unlink " + name: "EPERM", "rename " + name: "EPERM", "link " + name: "EPERM",
        })
        self.assertEqual(os.listdir(self.maildrop), [name])

        # The directory: mail_owner's, setgid to its private group, sticky,
        # writable but not listable by others.
        owner = pwd.getpwnam(self.server.mail_owner)
        st = os.stat(self.maildrop)
        self.assertEqual((st.st_uid, st.st_gid), (owner.pw_uid, owner.pw_gid))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o3733)
        # The file: alice's (who sent it), mail_owner's group may read it,
        # nobody else may.
        st = os.stat(os.path.join(self.maildrop, name))
        self.assertEqual(st.st_uid, pwd.getpwnam(self.alice).pw_uid)
        self.assertEqual(st.st_gid, owner.pw_gid)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        # A name nobody can guess: 128 random bits, not a time stamp.
        self.assertRegex(name, r"^[0-9a-f]{32}$")

        # The server starts and delivers the message intact.
        self.server.start()
        m = self.server.wait_messages(self.alice, 1)[0]
        self.assertEqual(m["Subject"], "payroll")
        self.assertEqual(m.get_payload(), "the secret figures: 4242\n")
        self.assertIn("(Postern, from userid %d)" % pwd.getpwnam(self.alice).pw_uid, m["Received"])
        wait_for(lambda: os.listdir(self.maildrop) == [], what="maildrop emptied")

    def test_names_are_random(self):
        """Submissions made one after the other by the same user share no
        name prefix worth guessing from (the old names were time stamps)."""
        for i in range(4):
            r = self.sendmail(self.alice, b"Subject: n%d\n\nx\n" % i)
            self.assertEqual(r.returncode, 0, r.stderr)
        names = sorted(os.listdir(self.maildrop))
        self.assertEqual(len(names), 4)
        for n in names:
            self.assertRegex(n, r"^[0-9a-f]{32}$")
        # Random names share about one leading hex digit; time stamps share many.
        prefix = os.path.commonprefix(names)
        self.assertLess(len(prefix), 8, names)

    def test_old_maildrop_mode_is_repaired_at_start(self):
        """A maildrop left by an older version (01733, files 0644) becomes
        private at the next start, and its pending files still flow."""
        os.chown(self.maildrop, 0, 0)
        os.chmod(self.maildrop, 0o1733)
        os.chown(self.maildrop, pwd.getpwnam(self.server.mail_owner).pw_uid, 0)
        self.server.start()
        st = os.stat(self.maildrop)
        owner = pwd.getpwnam(self.server.mail_owner)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o3733)
        self.assertEqual(st.st_gid, owner.pw_gid)
        r = self.sendmail(self.alice, b"Subject: after repair\n\nhello\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.server.wait_messages(self.alice, 1)[0]
        self.assertEqual(m["Subject"], "after repair")

    def test_submission_refused_into_a_maildrop_others_could_read(self):
        """If the maildrop is not set up (no setgid group: the server could
        not read a private file), sendmail says so instead of writing a
        file everyone can read."""
        os.chmod(self.maildrop, 0o1733)
        r = self.sendmail(self.alice, b"Subject: x\n\ny\n")
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn(b"maildrop", r.stderr)
        self.assertEqual(os.listdir(self.maildrop), [])

    def test_no_setgid_program_with_the_servers_group(self):
        """The design rests on this: a file eve makes in the setgid maildrop
        gets mail_owner's group, but the kernel never lets her (not a
        member) make it setgid, so she cannot run anything with that group
        and read others' pending mail through it."""
        r = subprocess.run([PY, "-c", r"""
import os, sys
p = os.path.join(sys.argv[1], "tool")
os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o2755))
os.chmod(p, 0o2755)
""", self.maildrop], capture_output=True, timeout=60, preexec_fn=as_user(self.eve))
        self.assertEqual(r.returncode, 0, r.stderr)
        st = os.stat(os.path.join(self.maildrop, "tool"))
        self.assertEqual(st.st_gid, pwd.getpwnam(self.server.mail_owner).pw_gid)
        self.assertEqual(st.st_mode & stat.S_ISGID, 0)

    def test_shared_group_is_reported(self):
        """The maildrop's group may read pending files: a start with
        another member in mail_owner's group says so in the log."""
        group = grp.getgrgid(pwd.getpwnam(self.server.mail_owner).pw_gid).gr_name
        subprocess.run(["usermod", "-a", "-G", group, self.eve], check=True, capture_output=True)
        self.server.start()
        self.server.wait_log("queue: group %s also has the member %s, who can read pending sendmail "
                             "submissions in maildrop/" % (group, self.eve))

    def test_junk_in_the_maildrop_is_removed(self):
        """What eve leaves in the maildrop (a symlink to a file only the
        server may read, a fifo, a directory, a file the server cannot
        read) is removed with a warning, and alice's mail still flows."""
        r = subprocess.run([PY, "-c", r"""
import os, sys
d = sys.argv[1]
os.symlink(os.path.join(sys.argv[2], "maildrop"), os.path.join(d, "link"))
os.mkfifo(os.path.join(d, "fifo"))
os.mkdir(os.path.join(d, "dir"))
fd = os.open(os.path.join(d, "private"), os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"x")
os.close(fd)
""", self.maildrop, self.server.path("queue")], capture_output=True, timeout=60,
            preexec_fn=as_user(self.eve))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(os.listdir(self.maildrop)), ["dir", "fifo", "link", "private"])
        self.server.start()
        r = self.sendmail(self.alice, b"Subject: after junk\n\nhello\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.server.wait_messages(self.alice, 1)[0]
        self.assertEqual(m["Subject"], "after junk")
        wait_for(lambda: os.listdir(self.maildrop) == [], what="maildrop emptied")
        log = self.server.log()
        uid = pwd.getpwnam(self.eve).pw_uid
        self.assertIn("pickup: link from uid %d: a symbolic link; removed" % uid, log)
        self.assertIn("pickup: private from uid %d: not readable by the server; removed" % uid, log)
        self.assertIn("pickup: fifo from uid %d: not a plain file of a reasonable size; removed" % uid, log)
        self.assertIn("pickup: dir from uid %d: not a plain file of a reasonable size; removed" % uid, log)


if __name__ == "__main__":
    unittest.main()
