"""Dovecot's `protocols` setting: pasted from the seed's dovecot.conf it
keeps meaning what it meant there (imap/pop3 listeners on or off), never
turns SMTP off, and promises nothing that no module line loads. The core
knows the protocols only from the loaded modules' descriptors (the
test-only hello module declares one too), and imap/pop3 need the mailbox
service, whichever module provides it."""
import os
import unittest

from harness import TESTMODS, Server, free_port, port_open, wait_for

HELLO = os.path.join(os.path.abspath(TESTMODS), "hello.so")


class ProtocolsTest(unittest.TestCase):
    def server(self, modules, conf):
        s = Server(modules=modules)
        self.addCleanup(s.cleanup)
        s.write_conf(conf)
        return s

    def test_listed_protocols_listen_and_the_others_stay_closed(self):
        s = self.server(("mbox", "smtp", "imap", "pop3"), "protocols = imap\n")
        s.start()
        wait_for(lambda: port_open(s.ports["imap"]), 10, what="imap port")
        self.assertTrue(port_open(s.ports["imaps"]))
        self.assertTrue(port_open(s.ports["smtpd"]))
        self.assertFalse(port_open(s.ports["pop3"]))
        self.assertFalse(port_open(s.ports["pop3s"]))

    def test_seed_line_with_both_modules_is_accepted(self):
        s = self.server(("mbox", "smtp", "imap", "pop3"), "protocols = imap pop3\n")
        r = s.cmd("check")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_listed_protocol_without_its_module_is_an_error(self):
        s = self.server(("mbox", "smtp", "imap"), "protocols = imap pop3\n")
        r = s.cmd("check")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"protocols lists pop3, but no `module pop3` line loads it", r.stdout + r.stderr)
        self.assertIn(b"postern.conf:", r.stdout + r.stderr)

    def test_smtp_and_unknown_words_are_refused(self):
        for value, text in (("smtp imap", b'"smtp": module smtp serves its listeners whenever it is loaded; '
                                          b'protocols switches only imap'),
                            ("imap gopher", b"protocols lists gopher, but no `module gopher` line loads it"),
                            ("imap none", b'"none" cannot be listed with other protocols'),
                            ("IMAP", b'"IMAP" is not a protocol name')):
            s = self.server(("mbox", "smtp", "imap"), "protocols = %s\n" % value)
            r = s.cmd("check")
            self.assertEqual(r.returncode, 1, value)
            self.assertIn(text, r.stdout + r.stderr)

    def test_none_closes_imap_and_pop3_but_not_smtp(self):
        s = self.server(("mbox", "smtp", "imap", "pop3"), "protocols = none\n")
        s.start()
        self.assertTrue(port_open(s.ports["smtpd"]))
        for l in ("imap", "imaps", "pop3", "pop3s"):
            self.assertFalse(port_open(s.ports[l]), l)


    def test_mail_access_needs_the_mailbox_service(self):
        for proto in ("imap", "pop3"):
            s = self.server(("smtp", proto), "")
            r = s.cmd("check")
            self.assertEqual(r.returncode, 1, proto)
            self.assertIn(b"module %s needs the mailbox service, which no loaded module provides" %
                          proto.encode(), r.stdout + r.stderr)

    def test_a_protocol_the_core_never_heard_of(self):
        port = free_port()
        conf = "module hello %s\nhello_listen = 127.0.0.1:%d\n" % (HELLO, port)
        s = self.server(("mbox", "smtp", "imap"), conf + "protocols = imap hello\n")
        self.assertEqual(s.cmd("check").returncode, 0)
        s.start()
        wait_for(lambda: port_open(port), 10, what="hello port")
        s.stop()
        s.write_conf(conf + "protocols = imap\n")
        s.start()
        self.assertTrue(port_open(s.ports["imap"]))
        self.assertFalse(port_open(port))


if __name__ == "__main__":
    unittest.main()
