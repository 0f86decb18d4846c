"""Issue #11 item 1: a local user must not reach another user's mail over
IMAP through symlinks in her own mail directory (or in the spool), and her
mail process must not carry mail_privileged_group while it opens folders.

As root, privilege-separated, with throwaway users bob and eve and a
throwaway group in the role of Debian's "mail": the spool is root:GROUP
2775, so a spool file is user:GROUP 0660 and only the group may make
dotlocks there -- the setting where a mail process that keeps the group
for its whole life reads, forges and deletes every user's mail."""
import grp
import hashlib
import imaplib
import os
import pwd
import re
import time
import unittest

from harness import Server, throwaway_user
from imap_util import deliver

TIMEOUT = 20


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@unittest.skipUnless(os.geteuid() == 0, "needs root: throwaway users and privilege separation")
class MailboxIsolationTest(unittest.TestCase):
    def setUp(self):
        self.bob = throwaway_user("ptbob", cleanup=self.addCleanup)
        self.eve = throwaway_user("pteve", cleanup=self.addCleanup)
        # Its own group plays "mail"; nobody is a member.
        self.privgrp = throwaway_user("ptmail", cleanup=self.addCleanup)
        self.priv_gid = grp.getgrnam(self.privgrp).gr_gid
        self.server = Server(modules=("mbox", "smtp", "imap"), users=(), as_root=True,
                             listeners=("smtpd", "imap"))
        self.addCleanup(self.server.cleanup)
        lines = []
        for u in (self.bob, self.eve):
            pw = pwd.getpwnam(u)
            home = self.server.path("home", u)
            os.makedirs(os.path.join(home, "mail"), exist_ok=True)
            os.chown(home, pw.pw_uid, pw.pw_gid)
            os.chown(os.path.join(home, "mail"), pw.pw_uid, pw.pw_gid)
            lines.append("%s:{PLAIN}secret:%d:%d::%s::" % (u, pw.pw_uid, pw.pw_gid, home))
        with open(self.server.passwd_file, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.spool = self.server.path("spool")
        os.chown(self.spool, 0, self.priv_gid)
        os.chmod(self.spool, 0o2775)
        self.server.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n"
                               "mail_privileged_group = %s\nsmtpd_client_name_timeout = 0\n"
                               % (self.server.passwd_file, self.privgrp))
        self.server.start()
        deliver(self.server, "%s@example.com.ar" % self.bob, "for bob only", "bob's secret\r\n")
        deliver(self.server, "%s@example.com.ar" % self.eve, "for eve", "eve's own\r\n")
        self.server.wait_messages(self.bob, 1, TIMEOUT)
        self.server.wait_messages(self.eve, 1, TIMEOUT)
        self.bob_box = os.path.join(self.spool, self.bob)
        st = os.stat(self.bob_box)
        # The setting of the attack: bob's file is readable by the group.
        self.assertEqual((st.st_gid, st.st_mode & 0o777), (self.priv_gid, 0o660))
        self.eve_mail = self.server.path("home", self.eve, "mail")
        self.before = digest(self.bob_box)

    def as_eve(self, fn, *args):
        """Run fn in a child process as eve (she plants her own links)."""
        pw = pwd.getpwnam(self.eve)
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
                fn(*args)
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(status, 0, "as eve: %s%r failed" % (fn.__name__, args))

    def login(self):
        c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=TIMEOUT)
        c.login(self.eve, "secret")
        self.addCleanup(self.logout, c)
        return c

    @staticmethod
    def logout(c):
        try:
            c.logout()
        except Exception:
            pass

    def assert_no(self, resp, what):
        typ, data = resp
        self.assertEqual(typ, "NO", "%s answered %s %r" % (what, typ, data))

    def assert_bob_untouched(self):
        self.assertEqual(digest(self.bob_box), self.before, "bob's spool file changed")
        self.assertEqual(len(self.server.messages(self.bob)), 1)

    def listed(self, c, pattern="*"):
        typ, data = c.list('""', pattern)
        self.assertEqual(typ, "OK")
        names = []
        for d in data:
            if d is None:
                continue
            m = re.search(rb'"?([^" ]+)"?$', d)
            names.append(m.group(1).decode())
        return names

    def attack_folder(self, c, folder, copy=True):
        """Everything a client can do to a folder name: all refused."""
        msg = b"From: eve\r\nSubject: forged\r\n\r\nforged by eve\r\n"
        self.assert_no(c.select(folder), "SELECT %s" % folder)
        self.assert_no(c.select(folder, readonly=True), "EXAMINE %s" % folder)
        self.assert_no(c.status(folder, "(MESSAGES UIDNEXT)"), "STATUS %s" % folder)
        self.assert_no(c.append(folder, None, None, msg), "APPEND %s" % folder)
        self.assert_no(c.create(folder + "/sub"), "CREATE %s/sub" % folder)
        self.assert_no(c.rename(folder, "stolen%d" % int(time.time() * 1000)), "RENAME %s" % folder)
        self.assert_no(c.delete(folder), "DELETE %s" % folder)
        if copy:
            # COPY out of eve's own INBOX into the folder.
            typ, data = c.select("INBOX")
            self.assertEqual(typ, "OK", data)
            self.assert_no(c.copy("1", folder), "COPY 1 %s" % folder)
            c.close()
        self.assert_bob_untouched()

    def test_symlinked_spool_directory(self):
        self.as_eve(os.symlink, self.spool, os.path.join(self.eve_mail, "spool"))
        c = self.login()
        self.assertNotIn("spool", self.listed(c))
        self.assertEqual(self.listed(c, "spool/*"), [])
        self.attack_folder(c, "spool/%s" % self.bob)
        self.attack_folder(c, "spool")

    def test_symlink_to_bobs_file(self):
        self.as_eve(os.symlink, self.bob_box, os.path.join(self.eve_mail, "bobbox"))
        c = self.login()
        self.assertNotIn("bobbox", self.listed(c))
        self.attack_folder(c, "bobbox")
        # The symlink is eve's and stays; it was never followed.
        self.assertTrue(os.path.islink(os.path.join(self.eve_mail, "bobbox")))

    def test_symlink_to_etc(self):
        self.as_eve(os.symlink, "/etc", os.path.join(self.eve_mail, "etc"))
        c = self.login()
        names = self.listed(c)
        self.assertFalse([n for n in names if n.startswith("etc")], names)
        self.assert_no(c.select("etc/passwd", readonly=True), "EXAMINE etc/passwd")
        self.assert_no(c.status("etc/passwd", "(MESSAGES)"), "STATUS etc/passwd")

    def test_symlink_in_the_middle(self):
        def plant():
            os.mkdir(os.path.join(self.eve_mail, "a"))
            os.symlink(self.spool, os.path.join(self.eve_mail, "a", "b"))
        self.as_eve(plant)
        c = self.login()
        names = self.listed(c)
        self.assertIn("a", names)
        self.assertFalse([n for n in names if n.startswith("a/b")], names)
        self.attack_folder(c, "a/b/%s" % self.bob)

    def test_mail_root_itself_a_symlink(self):
        def plant():
            os.rename(self.eve_mail, self.eve_mail + ".old")
            os.symlink(self.spool, self.eve_mail)
        self.as_eve(plant)
        c = self.login()
        self.assertEqual(self.listed(c), ["INBOX"])
        # (Her INBOX's index lives under the root too: she broke it for
        # herself, so no COPY from it here.)
        self.attack_folder(c, self.bob, copy=False)

    def test_inbox_replaced_in_the_spool(self):
        """Where eve could write the spool (1777), she could make her INBOX
        name a symlink or a hard link to bob's file: both refused."""
        eve_box = os.path.join(self.spool, self.eve)
        os.rename(eve_box, eve_box + ".orig")
        os.symlink(self.bob_box, eve_box)
        c = self.login()
        self.assert_no(c.select("INBOX"), "SELECT INBOX (symlink)")
        self.assert_no(c.status("INBOX", "(MESSAGES)"), "STATUS INBOX (symlink)")
        self.assert_no(c.append("INBOX", None, None, b"Subject: x\r\n\r\nx\r\n"), "APPEND INBOX")
        self.logout(c)
        os.unlink(eve_box)
        os.link(self.bob_box, eve_box)
        c = self.login()
        self.assert_no(c.select("INBOX"), "SELECT INBOX (hard link)")
        self.assert_no(c.select("INBOX", readonly=True), "EXAMINE INBOX (hard link)")
        os.unlink(eve_box)
        os.rename(eve_box + ".orig", eve_box)
        self.assert_bob_untouched()

    def mail_process_creds(self):
        text = self.server.log()
        pids = re.findall(r"user=<%s>, method=PLAIN, .*?mpid=(\d+)" % self.eve, text)
        self.assertTrue(pids, "no mpid logged for eve")
        with open("/proc/%s/status" % pids[-1]) as f:
            status = f.read()
        gids = [int(x) for x in re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()]
        groups = [int(x) for x in re.search(r"^Groups:\s*(.*)$", status, re.M).group(1).split()]
        return gids, groups

    def test_mail_process_holds_no_privileged_group(self):
        c = self.login()
        typ, data = c.select("INBOX")
        self.assertEqual(typ, "OK")
        # A write that needs the dotlock in the group-only spool works...
        typ, _ = c.append("INBOX", None, None, b"From: eve\r\nSubject: own\r\n\r\nmine\r\n")
        self.assertEqual(typ, "OK")
        typ, _ = c.store("1", "+FLAGS", "\\Deleted")
        self.assertEqual(typ, "OK")
        typ, _ = c.expunge()
        self.assertEqual(typ, "OK")
        # ...and while idle, the group is neither effective, nor the file
        # system gid, nor a supplementary group (Gid: real eff saved fs).
        self.server.wait_log("user=<%s>, method=PLAIN" % self.eve)
        gids, groups = self.mail_process_creds()
        eve_gid = pwd.getpwnam(self.eve).pw_gid
        self.assertEqual((gids[0], gids[1], gids[3]), (eve_gid, eve_gid, eve_gid), gids)
        self.assertNotIn(self.priv_gid, groups)
        self.assertEqual(os.listdir(self.spool).count(self.eve + ".lock"), 0)
        self.assertFalse([n for n in os.listdir(self.spool) if ".lock" in n])
        self.assert_bob_untouched()


if __name__ == "__main__":
    unittest.main()
