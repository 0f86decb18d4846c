"""The smtp module with the restrict module loaded: verdicts at each stage
become the replies (smtpd_delay_reject: HELO refusals show at RCPT), the
local-recipient check still applies, mynetworks may relay, an outside
client may not, and rejections are logged the Postfix way."""
import os
import shutil
import socket
import tempfile
import time
import unittest

from harness import Server, wait_for
from test_smtp import HOST, MODS, Raw, message

CONF = """smtpd_helo_required = yes
smtpd_helo_restrictions = permit_mynetworks, reject_invalid_helo_hostname
smtpd_relay_restrictions =
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
"""


def connect(port, source):
    sock = socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(source, 0))
    c = Raw(0, sock=sock)
    assert c.line() == "220 %s ESMTP Postern" % HOST
    return c


class SmtpWithRestrict(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        mods = tuple(m for m in MODS if m != "smtp") + ("restrict", "smtp")
        cls.server = Server(modules=mods, conf=CONF)
        cls.server.start()
        cls.port = cls.server.ports["smtpd"]

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def conn(self, source):
        c = connect(self.port, source)
        self.addCleanup(c.close)
        return c

    def test_invalid_helo_rejected_at_rcpt(self):
        c = self.conn("127.0.0.2")
        self.assertEqual(c.cmd("HELO bad..host"), "250 %s" % HOST)
        self.assertEqual(c.cmd("MAIL FROM:<someone@example.com.ar>"), "250 2.1.0 Ok")
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"),
                         "501 5.5.2 <bad..host>: Helo command rejected: Invalid name")
        line = ("NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 501 5.5.2 <bad..host>: Helo command "
                "rejected: Invalid name; from=<someone@example.com.ar> to=<alice@example.com.ar> "
                "proto=SMTP helo=<bad..host>")
        self.server.wait_log(line)
        # One line per reject, naming the rule that decided.
        self.assertEqual(self.server.log().count(line), 1)
        self.assertIn(line + " rule=reject_invalid_helo_hostname", self.server.log())

    def test_outside_client_cannot_relay(self):
        c = self.conn("127.0.0.2")
        c.send("EHLO client2.example.com.ar\r\n")
        c.reply()
        c.cmd("MAIL FROM:<someone@example.com.ar>")
        self.assertEqual(c.cmd("RCPT TO:<victim@other.test>"), "554 5.7.1 <victim@other.test>: Relay access denied")
        # The local-recipient check stays on with restrict loaded.
        self.assertEqual(c.cmd("RCPT TO:<nosuchuser@example.com.ar>"),
                         "550 5.1.1 <nosuchuser@example.com.ar>: Recipient address rejected: "
                         "User unknown in local recipient table")
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "250 2.1.5 Ok")
        self.assertTrue(c.cmd("DATA").startswith("354 "))
        c.send(message("via restrict") + ".\r\n")
        self.assertTrue(c.line().startswith("250 2.0.0 Ok: queued as "))
        wait_for(lambda: any(m["Subject"] == "via restrict" for m in self.server.messages("alice")),
                 what="message accepted through restrict")

    def test_mynetworks_may_relay(self):
        c = self.conn("127.0.0.1")
        c.send("EHLO client.example.com.ar\r\n")
        c.reply()
        c.cmd("MAIL FROM:<alice@example.com.ar>")
        self.assertEqual(c.cmd("RCPT TO:<friend@other.test>"), "250 2.1.5 Ok")
        self.assertEqual(c.cmd("RSET"), "250 2.0.0 Ok")

    def test_helo_required_still_enforced(self):
        c = self.conn("127.0.0.2")
        self.assertEqual(c.cmd("MAIL FROM:<someone@example.com.ar>"), "503 5.5.1 Error: send HELO/EHLO first")


class SmtpVerdictActions(unittest.TestCase):
    """DISCARD accepts and delivers nothing; PREPEND adds its header after
    the Received line."""

    @classmethod
    def setUpClass(cls):
        cls.mapdir = tempfile.mkdtemp(prefix="postern-smtp-map-")
        os.chmod(cls.mapdir, 0o755)
        path = os.path.join(cls.mapdir, "sender_access")
        with open(path, "w") as f:
            f.write("discard@example.com.ar DISCARD\ntagged@example.com.ar PREPEND X-Tagged: yes\n")
        os.chmod(path, 0o644)
        mods = tuple(m for m in MODS if m != "smtp") + ("restrict", "smtp")
        cls.server = Server(modules=mods, conf="smtpd_sender_restrictions = check_sender_access hash:%s\n" % path)
        cls.server.start()
        cls.port = cls.server.ports["smtpd"]

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        shutil.rmtree(cls.mapdir, ignore_errors=True)

    def send(self, sender, subject):
        c = connect(self.port, "127.0.0.1")
        self.addCleanup(c.close)
        c.send("EHLO client.example.com.ar\r\n")
        c.reply()
        self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender), "250 2.1.0 Ok")
        self.assertEqual(c.cmd("RCPT TO:<carol@example.com.ar>"), "250 2.1.5 Ok")
        self.assertTrue(c.cmd("DATA").startswith("354 "))
        c.send(message(subject) + ".\r\n")
        r = c.line()
        self.assertTrue(r.startswith("250 2.0.0 Ok: queued as "), r)
        return r.split()[-1]

    def test_prepend(self):
        self.send("tagged@example.com.ar", "prepended")
        m = wait_for(lambda: [x for x in self.server.messages("carol") if x["Subject"] == "prepended"],
                     what="prepended message")[0]
        self.assertEqual(m["X-Tagged"], "yes")
        keys = [k.lower() for k in m.keys()]
        self.assertLess(keys.index("received"), keys.index("x-tagged"))

    def test_discard(self):
        qid = self.send("discard@example.com.ar", "discarded")
        self.server.wait_log("%s: discard: END-OF-MESSAGE" % qid)
        self.send("someone@example.com.ar", "kept")
        wait_for(lambda: any(x["Subject"] == "kept" for x in self.server.messages("carol")), what="kept")
        time.sleep(0.3)
        self.assertFalse(any(x["Subject"] == "discarded" for x in self.server.messages("carol")))


if __name__ == "__main__":
    unittest.main()
