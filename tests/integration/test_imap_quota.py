"""QUOTA (RFC 9208), the STORAGE resource from mailbox_size_limit. The
limit holds for each mbox file alone (as Postfix's local enforces it), so
each folder is its own quota root named as the folder: GETQUOTAROOT and
GETQUOTA tell that, SETQUOTA is refused (the administrator's parameter),
APPEND/COPY/MOVE past the limit answer NO [OVERQUOTA] and change nothing,
delivery keeps its 552 5.2.2, STATUS DELETED-STORAGE counts \\Deleted."""
import os
import re
import smtplib
import unittest

from imap_util import POST_CAPS, imap_server, login, deliver

LIMIT = 20480  # octets: 20 units of 1024


def msg(i, pad=0):
    return ("From: a@example.com\r\nSubject: q%d\r\n\r\nbody %d %s\r\n" % (i, i, "x" * pad)).encode()


def ok(out):
    return out[-1].split(" ")[1] == "OK"


class Quota(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self, conf="mailbox_size_limit = %d\nmessage_size_limit = 10240\n" % LIMIT)

    def session(self):
        r = login(self.server)
        self.addCleanup(r.close)
        return r

    def append(self, r, box, data, tag="ap"):
        r.send("%s APPEND %s {%d+}\r\n" % (tag, box, len(data)))
        r.send(data + b"\r\n")
        return r.until_tag(tag)

    def storage(self, r, root):
        out = r.cmd("gq", "GETQUOTA %s" % root)
        self.assertTrue(ok(out), out)
        m = re.match(r"\* QUOTA (\S+) \(STORAGE (\d+) (\d+)\)$", out[0])
        self.assertIsNotNone(m, out)
        return int(m.group(2)), int(m.group(3))

    def file_size(self, user, box):
        path = self.server.mbox_path(user) if box == "INBOX" else self.server.path("home", user, "mail", box)
        return os.path.getsize(path)

    def test_capability(self):
        r = self.session()
        caps = r.cmd("c", "CAPABILITY")[0].split()[2:]
        self.assertEqual(" ".join(caps), POST_CAPS)
        self.assertIn("QUOTA", caps)
        self.assertIn("QUOTA=RES-STORAGE", caps)
        # SETQUOTA is not supported: no QUOTASET
        self.assertNotIn("QUOTASET", caps)

    def test_roots_per_folder(self):
        r = self.session()
        self.assertTrue(ok(r.cmd("c", "CREATE Lists")))
        self.assertTrue(ok(self.append(r, "Lists", msg(1, 3000))))
        out = r.cmd("r", "GETQUOTAROOT Lists")
        self.assertEqual(out[0], "* QUOTAROOT Lists Lists")
        self.assertRegex(out[1], r"^\* QUOTA Lists \(STORAGE \d+ 20\)$")
        self.assertTrue(ok(out), out)
        used, limit = self.storage(r, "Lists")
        self.assertEqual(limit, LIMIT // 1024)
        self.assertGreaterEqual(used * 1024, 3000)
        self.assertLess(used, 6)
        # INBOX is its own root: a missing or empty INBOX uses nothing
        out = r.cmd("r2", "GETQUOTAROOT inbox")
        self.assertEqual(out[0], "* QUOTAROOT INBOX INBOX")
        self.assertEqual(out[1], "* QUOTA INBOX (STORAGE 0 20)")
        # a folder name that is no folder is no root
        out = r.cmd("g", "GETQUOTA nosuch")
        self.assertTrue(out[-1].startswith("g NO [NONEXISTENT]"), out)
        out = r.cmd("g2", 'GETQUOTA ""')
        self.assertTrue(out[-1].startswith("g2 NO"), out)
        out = r.cmd("r3", "GETQUOTAROOT nosuch")
        self.assertTrue(out[-1].startswith("r3 NO [NONEXISTENT]"), out)
        # syntax
        self.assertTrue(r.cmd("b", "GETQUOTAROOT")[-1].startswith("b BAD"))
        self.assertTrue(r.cmd("b2", "GETQUOTA")[-1].startswith("b2 BAD"))

    def test_usage_follows_file(self):
        r = self.session()
        self.assertTrue(ok(r.cmd("c", "CREATE f")))
        for i in range(3):
            self.assertTrue(ok(self.append(r, "f", msg(i, 2000))))
        used, _ = self.storage(r, "f")
        # the file's size, rounded up to whole units
        self.assertEqual(used, -(-self.file_size("alice", "f") // 1024))

    def test_setquota_refused(self):
        r = self.session()
        out = r.cmd("s", "SETQUOTA INBOX (STORAGE 100)")
        self.assertTrue(out[-1].startswith("s NO [NOPERM]"), out)
        self.assertTrue(r.cmd("s2", "SETQUOTA INBOX")[-1].startswith("s2 BAD"))
        self.assertEqual(r.cmd("r", "GETQUOTAROOT INBOX")[1], "* QUOTA INBOX (STORAGE 0 20)")

    def test_append_over_quota(self):
        r = self.session()
        self.assertTrue(ok(r.cmd("c", "CREATE full")))
        n = 0
        while True:
            out = self.append(r, "full", msg(n, 6000), tag="a%d" % n)
            if not ok(out):
                break
            n += 1
            self.assertLess(n, 10)
        self.assertTrue(out[-1].startswith("a%d NO [OVERQUOTA]" % n), out)
        self.assertEqual(n, 3)
        size = self.file_size("alice", "full")
        self.assertLessEqual(size, LIMIT)
        st = r.cmd("st", "STATUS full (MESSAGES)")
        self.assertEqual(st[0], "* STATUS full (MESSAGES 3)")
        used, limit = self.storage(r, "full")
        self.assertLessEqual(used, limit)
        # MULTIAPPEND: all or nothing
        a, b = msg(90, 10), msg(91, 6000)
        r.send("m APPEND full {%d+}\r\n" % len(a))
        r.send(a + b" {%d+}\r\n" % len(b))
        r.send(b + b"\r\n")
        out = r.until_tag("m")
        self.assertTrue(out[-1].startswith("m NO [OVERQUOTA]"), out)
        self.assertEqual(self.file_size("alice", "full"), size)

    def test_copy_move_over_quota(self):
        r = self.session()
        for box in ("src", "dst"):
            self.assertTrue(ok(r.cmd("c", "CREATE %s" % box)))
        for i in range(3):
            self.assertTrue(ok(self.append(r, "src", msg(i, 6000))))
        self.assertTrue(ok(self.append(r, "dst", msg(9, 6000))))
        size = self.file_size("alice", "dst")
        self.assertTrue(ok(r.cmd("s", "SELECT src")))
        out = r.cmd("cp", "COPY 1:3 dst")
        self.assertTrue(out[-1].startswith("cp NO [OVERQUOTA]"), out)
        out = r.cmd("mv", "UID MOVE 1:3 dst")
        self.assertTrue(out[-1].startswith("mv NO [OVERQUOTA]"), out)
        self.assertFalse(any("EXPUNGE" in l for l in out), out)
        self.assertEqual(self.file_size("alice", "dst"), size)
        self.assertEqual(r.cmd("st", "STATUS dst (MESSAGES)")[0], "* STATUS dst (MESSAGES 1)")
        out = r.cmd("f", "FETCH 1:* (UID)")
        self.assertEqual(len([l for l in out if l.startswith("* ")]), 3)
        # one fits
        self.assertTrue(ok(r.cmd("cp2", "COPY 1 dst")))

    def test_delivery_over_quota_552(self):
        r = self.session()
        for i in range(3):
            deliver(self.server, "alice@example.com.ar", subject="d%d" % i, body="y" * 6000 + "\r\n")
        self.server.wait_messages("alice", 3)
        with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=20) as c:
            c.ehlo("client.example")
            c.mail("sender@example.com")
            c.rcpt("alice@example.com.ar")
            code, text = c.data("Subject: big\r\n\r\n" + "z" * 6000 + "\r\n")
        self.assertEqual(code, 552, text)
        self.assertIn(b"5.2.2", text)
        used, limit = self.storage(r, "INBOX")
        self.assertLessEqual(used, limit)
        self.assertGreater(used, 15)

    def test_status_deleted_storage(self):
        r = self.session()
        self.assertTrue(ok(r.cmd("c", "CREATE d")))
        for i in range(3):
            self.assertTrue(ok(self.append(r, "d", msg(i, 1500))))
        self.assertEqual(r.cmd("s0", "STATUS d (DELETED-STORAGE)")[0], "* STATUS d (DELETED-STORAGE 0)")
        self.assertTrue(ok(r.cmd("s", "SELECT d")))
        self.assertTrue(ok(r.cmd("st", "STORE 1:2 +FLAGS.SILENT (\\Deleted)")))
        out = r.cmd("s1", "STATUS d (MESSAGES DELETED-STORAGE)")
        want = -(-(len(msg(0, 1500)) + len(msg(1, 1500))) // 1024)
        self.assertEqual(out[0], "* STATUS d (MESSAGES 3 DELETED-STORAGE %d)" % want)
        self.assertTrue(ok(r.cmd("e", "EXPUNGE")))
        self.assertEqual(r.cmd("s2", "STATUS d (DELETED-STORAGE)")[0], "* STATUS d (DELETED-STORAGE 0)")


class NoLimit(unittest.TestCase):
    def test_no_root_without_limit(self):
        server = imap_server(self, conf="mailbox_size_limit = 0\n")
        r = login(server)
        self.addCleanup(r.close)
        out = r.cmd("r", "GETQUOTAROOT INBOX")
        self.assertEqual(out[0], "* QUOTAROOT INBOX")
        self.assertTrue(ok(out), out)
        self.assertFalse(any(l.startswith("* QUOTA ") for l in out), out)
        self.assertTrue(r.cmd("g", "GETQUOTA INBOX")[-1].startswith("g NO"))


if __name__ == "__main__":
    unittest.main()
