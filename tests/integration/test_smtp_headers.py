"""Postfix cleanup's repair of bare messages: mail from a client on this
host (local_header_rewrite_clients = permit_inet_interfaces, the default)
that lacks Date:, Message-Id: or From: gets them, as in the seed's
transcripts; an outside client's mail is left as sent unless
always_add_missing_headers = yes."""
import smtplib
import unittest

from harness import Server

BARE = b"Subject: bare\r\n\r\nno date, no id, no from\r\n"


class HeadersTest(unittest.TestCase):
    def server(self, conf=""):
        s = Server(modules=("mbox", "smtp"), listeners=("smtpd",))
        self.addCleanup(s.cleanup)
        s.write_conf(conf)
        s.start()
        return s

    def send(self, s, source, body=BARE):
        c = smtplib.SMTP(timeout=30, source_address=(source, 0))
        c.connect("127.0.0.1", s.ports["smtpd"])
        c.ehlo("client.example.com.ar")
        c.sendmail("carol@example.com.ar", ["alice@example.com.ar"], body)
        c.quit()

    def test_local_client_gets_the_missing_fields(self):
        s = self.server()
        self.send(s, "127.0.0.1")
        m = s.wait_messages("alice", 1)[0]
        self.assertEqual(m["From"], "carol@example.com.ar")
        self.assertIsNotNone(m["Date"])
        self.assertRegex(m["Message-Id"], r"^<\d{14}\.[0-9A-F]+@mail\.example\.com\.ar>$")
        self.assertEqual(m.get_payload(), "no date, no id, no from\n")
        self.assertIsNone(m["To"])

    def test_present_fields_are_kept(self):
        s = self.server()
        self.send(s, "127.0.0.1", b"From: Bob <bob@example.com.ar>\r\nDate: Sat, 1 Jan 2000 00:00:00 +0000\r\n"
                                  b"Message-Id: <x@y>\r\n\r\nbody\r\n")
        m = s.wait_messages("alice", 1)[0]
        self.assertEqual(m.get_all("From"), ["Bob <bob@example.com.ar>"])
        self.assertEqual(m.get_all("Date"), ["Sat, 1 Jan 2000 00:00:00 +0000"])
        self.assertEqual(m.get_all("Message-Id"), ["<x@y>"])

    def test_outside_client_is_left_alone(self):
        s = self.server()
        self.send(s, "127.0.0.2")
        m = s.wait_messages("alice", 1)[0]
        self.assertIsNone(m["Date"])
        self.assertIsNone(m["Message-Id"])
        self.assertIsNone(m["From"])

    def test_always_add_missing_headers(self):
        s = self.server("always_add_missing_headers = yes\n")
        self.send(s, "127.0.0.2")
        m = s.wait_messages("alice", 1)[0]
        self.assertIsNotNone(m["Date"])
        self.assertIsNotNone(m["Message-Id"])

    def test_empty_rewrite_clients_and_bad_values(self):
        s = self.server("local_header_rewrite_clients =\n")
        self.send(s, "127.0.0.1")
        m = s.wait_messages("alice", 1)[0]
        self.assertIsNone(m["Message-Id"])
        s.write_conf("local_header_rewrite_clients = permit_mynetworks\n")
        r = s.cmd("check")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b'"permit_mynetworks" is not supported', r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
