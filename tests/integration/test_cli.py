"""The command line: every verb (and sub-verb) that `postern --help` lists
answers --help and -h with its usage and exit status, exit 0, without a
config; `policy test`'s exit status for accept, reject, defer and "cannot
evaluate"; `postern user` for passwd-file users without uid/gid fields;
`postern queue list` columns with real queued messages (17-character IDs)."""
import os
import re
import smtplib
import subprocess
import time
import unittest

from harness import BIN, Server, wait_for

SUBVERBS = {"queue": ["list", "flush", "delete"], "map": ["check", "query"], "policy": ["test"],
            "auth": ["test"], "config": ["-n", "-d"]}


def run(*args, env=None):
    e = dict(os.environ)
    e["POSTERN_CONF"] = "/nonexistent/postern.conf"
    e.update(env or {})
    return subprocess.run([BIN] + list(args), capture_output=True, timeout=60, env=e)


def listed_verbs():
    """The verbs `postern --help` lists: the first word of each entry, and
    a word after " | " (reload | stop, user USER | auth test)."""
    r = run("--help")
    assert r.returncode == 0, r.stderr
    verbs = []
    for line in r.stdout.decode().splitlines():
        if not re.match(r"  [a-z]", line):
            continue
        for v in re.findall(r"(?:^  |\| )([a-z]+)", line):
            if v not in verbs:
                verbs.append(v)
    return verbs


class Help(unittest.TestCase):
    def test_verbs_listed(self):
        self.assertEqual(listed_verbs(), ["run", "check", "config", "reload", "stop", "queue", "sendmail", "map",
                                          "policy", "why", "stats", "user", "auth"])

    def assertHelp(self, verb, r, argv):
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, "%s: %s" % (argv, r.stderr.decode()))
        self.assertEqual(r.stderr, b"", argv)
        head = "\n".join(out.splitlines()[:2])
        self.assertIn("postern %s" % verb, head, argv)
        self.assertTrue(out.startswith("usage: postern "), argv)
        self.assertIn("Exit status:", out, argv)

    def test_every_verb_and_subverb_answers_help(self):
        for verb in listed_verbs():
            forms = [[verb, "--help"], [verb, "-h"], ["help", verb], ["-c", "/nonexistent", verb, "--help"]]
            for sub in SUBVERBS.get(verb, []):
                forms += [[verb, sub, "--help"], [verb, sub, "-h"]]
            for argv in forms:
                self.assertHelp(verb, run(*argv), argv)
        # Anywhere among the arguments, before "--".
        self.assertHelp("policy", run("policy", "test", "--client", "127.0.0.1", "--help"), "policy test ... --help")
        self.assertHelp("map", run("map", "check", "-t", "x", "-h"), "map check -t x -h")

    def test_policy_test_help_names_its_exit_codes(self):
        out = run("policy", "test", "--help").stdout.decode()
        for words in ("0 accepted", "1 rejected", "2 deferred", "3 nothing could be evaluated"):
            self.assertIn(words, out)

    def test_usage_errors_exit_2(self):
        for argv in (["nosuchverb"], ["check", "--bogus"], ["policy", "test", "--bogus"], ["queue", "bogus"],
                     ["map", "bogus", "x", "y"], ["user"], ["auth"], ["help", "nosuchverb"], ["why"]):
            r = run(*argv)
            self.assertEqual(r.returncode, 2, "%s: %s" % (argv, r.stderr.decode()))
            self.assertNotEqual(r.stderr, b"", argv)

    def test_readme_documents_exit_status(self):
        with open(os.path.join(os.path.dirname(BIN), "..", "..", "README.md")) as f:
            readme = f.read()
        section = readme[readme.index("### Exit status"):]
        section = section[:section.index("\n## ")]
        rows = [l for l in section.splitlines() if l.startswith("| `postern ")]
        for verb in listed_verbs():
            self.assertTrue([r for r in rows if re.match(r"\| `postern %s\b|.* / `%s\b" % (verb, verb), r)], verb)


POLICY = """return function(a)
  if a.sender == "bad@example.net" then return "REJECT go away" end
  if a.sender == "later@example.net" then return "DEFER_IF_PERMIT try later" end
  if a.sender == "hold@example.net" then return "HOLD" end
  if a.sender == "oops@example.net" then error("broken on purpose") end
  return "DUNNO"
end
"""


class PolicyExitStatus(unittest.TestCase):
    def setUp(self):
        self.server = Server(modules=("mbox", "restrict", "smtp"), listeners=("smtpd",))
        self.addCleanup(self.server.cleanup)
        lua = self.server.path("policy.lua")
        with open(lua, "w") as f:
            f.write(POLICY)
        os.chmod(lua, 0o644)
        self.server.write_conf("smtpd_sender_restrictions = check_lua_policy %s\n"
                               "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
                               "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n" % lua)

    def policy(self, *args, conf=None):
        return self.server.cmd("policy", "test", "-c", conf or self.server.conf_file, *args)

    def sender(self, s, client="127.0.0.1", rcpt="alice@example.com.ar"):
        return self.policy("--client", client, "--sender", s, "--recipient", rcpt)

    def test_exit_status_of_each_verdict(self):
        r = self.sender("good@example.net")
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        r = self.sender("hold@example.net")
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        r = self.sender("bad@example.net")
        self.assertEqual(r.returncode, 1, r.stdout.decode())
        self.assertIn("554 5.7.1", r.stdout.decode())
        r = self.sender("good@example.net", client="127.0.0.2", rcpt="x@elsewhere.test")
        self.assertEqual(r.returncode, 1, r.stdout.decode())
        self.assertIn("Relay access denied", r.stdout.decode())
        r = self.sender("later@example.net")
        self.assertEqual(r.returncode, 2, r.stdout.decode())
        self.assertIn("450 4.7.1", r.stdout.decode())
        # A Lua error defers (451 4.3.5), never accepts.
        r = self.sender("oops@example.net")
        self.assertEqual(r.returncode, 2, r.stdout.decode())
        self.assertIn("451 4.3.5", r.stdout.decode())

    def test_cannot_evaluate_is_3(self):
        bad = self.server.path("bad.conf")
        with open(self.server.conf_file) as f:
            text = f.read()
        with open(bad, "w") as f:
            f.write(text + "smtpd_helo_requird = yes\n")
        os.chmod(bad, 0o644)
        r = self.policy("--client", "127.0.0.1", "--recipient", "alice@example.com.ar", conf=bad)
        self.assertEqual(r.returncode, 3, r.stderr.decode())
        self.assertIn(b"smtpd_helo_required", r.stderr)
        norestrict = self.server.path("norestrict.conf")
        with open(norestrict, "w") as f:
            f.write(re.sub(r"(?m)^(module restrict|smtpd_\w+_restrictions.*)$", "", text))
        os.chmod(norestrict, 0o644)
        r = self.policy("--client", "127.0.0.1", "--recipient", "alice@example.com.ar", conf=norestrict)
        self.assertEqual(r.returncode, 3, r.stderr.decode())
        self.assertIn(b"restrict module is not loaded", r.stderr)
        r = self.policy("--script", self.server.path("no-such-script"))
        self.assertEqual(r.returncode, 3, r.stderr.decode())

    def test_script_exit_status(self):
        script = self.server.path("t.script")
        with open(script, "w") as f:
            f.write("client 127.0.0.1\nmail <good@example.net>\nrcpt <alice@example.com.ar>\n250\n")
        os.chmod(script, 0o644)
        r = self.policy("--script", script)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        with open(script, "a") as f:
            f.write("client 127.0.0.1\nmail <bad@example.net>\nrcpt <alice@example.com.ar>\n250\n")
        r = self.policy("--script", script)
        self.assertEqual(r.returncode, 1, r.stdout.decode() + r.stderr.decode())

    def test_usage_error_is_2(self):
        r = self.policy("--client", "127.0.0.1")
        self.assertEqual(r.returncode, 2)
        r = self.policy("--client", "not-an-ip", "--recipient", "a@b")
        self.assertEqual(r.returncode, 2)


class UserVerb(unittest.TestCase):
    def setUp(self):
        # The harness's passwd-file has no uid/gid fields: virtual users.
        self.server = Server(modules=("mbox",), listeners=())
        self.addCleanup(self.server.cleanup)

    def user(self, as_daemon_user=True):
        r = self.server.cmd("user", "-c", self.server.conf_file, "alice", as_daemon_user=as_daemon_user)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return dict(l.split("\t", 1) for l in r.stdout.decode().splitlines()[1:])

    def test_virtual_user_shows_mail_uid(self):
        self.server.write_conf("mail_uid = 4321\nmail_gid = 4322\n")
        f = self.user()
        self.assertEqual(f["uid"], "4321 (mail_uid = 4321: virtual user)")
        self.assertEqual(f["gid"], "4322 (mail_gid = 4322: virtual user)")

    def test_virtual_user_without_mail_uid_is_not_uid_0(self):
        f = self.user()
        uid = os.getuid() if not self.server.run_user else __import__("pwd").getpwnam(self.server.run_user).pw_uid
        self.assertEqual(f["uid"], "%d (virtual user, mail_uid not set: the server's own, rootless)" % uid)
        if os.geteuid() == 0:
            f = self.user(as_daemon_user=False)
            self.assertTrue(f["uid"].startswith("none (virtual user, and mail_uid is not set"), f["uid"])
            self.assertNotEqual(f["uid"].split()[0], "0")

    def test_user_with_uid_fields(self):
        with open(self.server.passwd_file, "a") as f:
            f.write("dave:{PLAIN}x:2001:2002::/home/dave::\n")
        r = self.server.cmd("user", "-c", self.server.conf_file, "dave")
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertIn("uid\t2001\ngid\t2002\n", r.stdout.decode())
        r = self.server.cmd("user", "-c", self.server.conf_file, "nosuchuser")
        self.assertEqual(r.returncode, 67)


class QueueList(unittest.TestCase):
    def test_columns_line_up_with_real_queue_ids(self):
        server = Server(modules=("mbox", "alias", "transport", "smtp"), listeners=("smtpd",))
        self.addCleanup(server.cleanup)
        tmap = server.path("transport")
        with open(tmap, "w") as f:
            f.write("wait.example.com.ar retry:4.4.1 held for the test\n")
        os.chmod(tmap, 0o644)
        server.write_conf("relay_domains = $mydestination\ntransport_maps = hash:%s\n" % tmap)
        server.start()
        with smtplib.SMTP("127.0.0.1", server.ports["smtpd"], timeout=30) as s:
            s.sendmail("carol@example.com.ar", ["a@wait.example.com.ar", "bb@wait.example.com.ar"],
                       "Subject: one\r\n\r\nbody\r\n")
            s.sendmail("", ["c@wait.example.com.ar"], "Subject: two\r\n\r\n" + "x" * 5000 + "\r\n")
        server.wait_log("status=deferred", timeout=20)

        def listing():
            out = server.cmd("queue", "list", "-c", server.conf_file).stdout.decode()
            return out if out.count("@wait.example.com.ar") == 3 else None
        out = wait_for(listing, 20, what="three queued recipients")
        lines = out.splitlines()
        header = lines[0]
        col = header.index("-Sender/Recipient-")
        size_end = header.index("--Size--") + len("--Size--")
        ids = []
        for l in lines[1:-1]:
            if not l.strip():
                continue
            m = re.match(r"([0-9A-F]{17})\*? ", l)
            if m:
                ids.append(m.group(1))
                self.assertEqual(l[size_end - 1], l.rstrip()[size_end - 1])    # size right-aligned
                self.assertTrue(l[:size_end].rstrip().endswith(tuple("0123456789")), l)
                self.assertNotEqual(l[col], " ", "sender not in the column:\n%s" % out)
                self.assertEqual(l[col - 1], " ", out)
            else:
                # A recipient, or a (reason) line: in the sender's column.
                self.assertEqual(len(l) - len(l.lstrip()), col, "not in column %d:\n%s" % (col, out))
        self.assertEqual(len(ids), 2, out)
        self.assertTrue(lines[-1].startswith("-- ") and "in 2 Requests" in lines[-1], out)


if __name__ == "__main__":
    unittest.main()
