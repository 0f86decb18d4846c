"""Aliases end to end against the real daemon (modules mbox, alias, smtp):
the seed's sysadmin alias reaches both mailboxes, a new alias line works
within 2 s without a reload, a: b + b: a bounces instead of looping,
user+tag, and /file and |command destinations of a trusted alias file."""
import os
import smtplib
import time
import unittest

from harness import Server, wait_for

ALIASES = """# aliases(5) as the seed writes them
postmaster: alice
sysadmin: alice, bob
user1: user1, user2
a: b
b: a
"""


def send(port, rcpts, sender="carol@example.com.ar", subject="test", body="hello\n"):
    msg = "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" % (sender, ", ".join(rcpts), subject, body)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example.com.ar")
        return s.sendmail(sender, rcpts, msg)


def subjects(server, user):
    return [m["Subject"] for m in server.messages(user)]


class AliasTest(unittest.TestCase):
    def setUp(self):
        self.server = Server(modules=("mbox", "alias", "smtp"),
                             users=("alice", "bob", "carol", "user1", "user2"),
                             aliases=ALIASES, conf="recipient_delimiter = +\n")
        self.addCleanup(self.server.cleanup)
        self.server.start()
        self.port = self.server.ports["smtpd"]

    def write_aliases(self, text):
        """Replace the aliases file as an editor would (new file, rename)."""
        path = self.server.aliases_file
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        st = os.stat(path)
        os.chown(tmp, st.st_uid, st.st_gid)
        os.rename(tmp, path)

    def test_sysadmin_reaches_both_mailboxes(self):
        send(self.port, ["sysadmin@example.com.ar"], subject="to sysadmin")
        for user in ("alice", "bob"):
            msgs = self.server.wait_messages(user, 1)
            self.assertEqual(msgs[0]["Subject"], "to sysadmin")
            self.assertEqual(msgs[0]["X-Original-To"], "sysadmin@example.com.ar")
        self.server.wait_log("orig_to=<sysadmin@example.com.ar>")

    def test_alias_naming_itself_delivers_to_both(self):
        send(self.port, ["user1@example.com.ar"], subject="user1 list")
        self.assertEqual(self.server.wait_messages("user1", 1)[0]["Subject"], "user1 list")
        self.assertEqual(self.server.wait_messages("user2", 1)[0]["Subject"], "user1 list")
        time.sleep(0.5)
        self.assertEqual(len(self.server.messages("user1")), 1)

    def test_recipient_delimiter(self):
        send(self.port, ["sysadmin+alerts@example.com.ar"], subject="tagged")
        self.server.wait_messages("alice", 1)
        self.server.wait_messages("bob", 1)

    def test_new_alias_line_within_two_seconds(self):
        send(self.port, ["sysadmin@example.com.ar"], subject="warm up")
        self.server.wait_messages("alice", 1)
        def rcpt_code():
            # a fresh session each time: smtpd slows down after rejections
            with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
                s.ehlo("client.example.com.ar")
                s.mail("carol@example.com.ar")
                return s.rcpt("team@example.com.ar")[0]
        self.assertEqual(rcpt_code(), 550)
        self.write_aliases(ALIASES + "team: carol, bob\n")
        start = time.time()
        # no reload, no postalias: poll RCPT until the new line answers
        while rcpt_code() != 250:
            self.assertLess(time.time() - start, 2.0, "new alias not seen within 2 s")
            time.sleep(0.1)
        elapsed = time.time() - start
        self.assertLess(elapsed, 2.0)
        send(self.port, ["team@example.com.ar"], subject="team mail")
        self.assertEqual(self.server.wait_messages("carol", 1)[0]["Subject"], "team mail")
        self.server.wait_messages("bob", 2)
        self.server.wait_log("%s: reloaded, 6 entries" % self.server.aliases_file)

    def test_broken_aliases_keep_the_old_table(self):
        send(self.port, ["sysadmin@example.com.ar"], subject="before")
        self.server.wait_messages("alice", 1)
        self.write_aliases(ALIASES + "this line is broken\n")
        time.sleep(1.1)
        send(self.port, ["sysadmin@example.com.ar"], subject="still works")
        self.server.wait_messages("alice", 2)
        self.server.wait_messages("bob", 2)
        self.server.wait_log("%s:7: need name: value pair" % self.server.aliases_file)

    def test_alias_loop_bounces(self):
        send(self.port, ["a@example.com.ar"], subject="loop me")
        bounce = self.server.wait_messages("carol", 1, timeout=20)[0]
        text = bounce.as_string()
        self.assertIn("mail forwarding loop", text)
        self.assertIn("5.4.6", text)
        self.assertEqual(len(self.server.messages("carol")), 1)

    def test_file_and_command_destinations(self):
        out_file = self.server.path("archive.mbox")
        pipe_out = self.server.path("pipe.out")
        self.write_aliases(ALIASES + 'archive: %s\npipe: "|cat > %s; echo \\"$SENDER\\" >> %s"\n'
                           % (out_file, pipe_out, pipe_out))
        time.sleep(1.1)
        send(self.port, ["archive@example.com.ar", "pipe@example.com.ar"], subject="special",
             sender="carol@example.com.ar")
        wait_for(lambda: os.path.exists(out_file) and os.path.getsize(out_file) > 0, 20, what="file delivery")
        def piped():
            if not os.path.exists(pipe_out):
                return False
            with open(pipe_out) as f:
                return "carol@example.com.ar" in f.read()
        wait_for(piped, 20, what="command delivery")
        with open(out_file) as f:
            text = f.read()
        self.assertTrue(text.startswith("From carol@example.com.ar  "))
        self.assertIn("Subject: special\n", text)
        self.assertTrue(text.endswith("\n\n"))
        with open(pipe_out) as f:
            self.assertIn("Subject: special", f.read())


if __name__ == "__main__":
    unittest.main()
