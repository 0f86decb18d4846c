"""The SMTP client's name (Postfix's client_name / reverse_client_name):
/etc/hosts for 127.0.0.1, otherwise PTR then a forward lookup that must
list the address, against a fake DNS server on loopback; "unknown" when
either fails or the lookup outlasts smtpd_client_name_timeout, without
holding up other clients."""
import socket
import threading
import time
import unittest

from fakedns import FakeDNS
from harness import Server, wait_for


PTR, A = 12, 1
RECORDS = {
    ("9.0.0.127.in-addr.arpa", PTR): ["client9.example.test"],
    ("client9.example.test", A): ["127.0.0.9"],
    ("10.0.0.127.in-addr.arpa", PTR): ["liar.example.test"],
    ("liar.example.test", A): ["192.0.2.1"],
    ("12.0.0.127.in-addr.arpa", PTR): ["1.2.3.4"],
}


class Session:
    def __init__(self, port, source):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0))
        self.f = self.sock.makefile("rb")
        t = time.monotonic()
        self.banner = self.line()
        self.banner_wait = time.monotonic() - t

    def line(self):
        return self.f.readline().decode().rstrip("\r\n")

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        while True:
            ln = self.line()
            if len(ln) < 4 or ln[3] != "-":
                return ln

    def close(self):
        try:
            self.cmd("QUIT")
        except OSError:
            pass
        self.sock.close()


class ClientNames(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dns = FakeDNS(RECORDS)
        cls.dns.start()
        cls.server = Server(modules=("mbox", "restrict", "smtp"), conf=(
            "dns_servers = 127.0.0.1:%d\n"
            "mynetworks = 192.0.2.0/24\n"
            "smtpd_client_restrictions = reject_unknown_reverse_client_hostname\n"
            "smtpd_recipient_restrictions = reject_unknown_client_hostname\n" % cls.dns.port))
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        cls.dns.stop()

    def session(self, source):
        s = Session(self.server.ports["smtpd"], source)
        self.addCleanup(s.close)
        self.assertTrue(s.banner.startswith("220 "), s.banner)
        self.assertEqual(s.cmd("EHLO client.example.test")[:3], "250")
        self.assertEqual(s.cmd("MAIL FROM:<someone@example.test>"), "250 2.1.0 Ok")
        return s

    def test_hosts_file_names_localhost(self):
        s = self.session("127.0.0.1")
        self.assertEqual(s.cmd("RCPT TO:<bob@example.com.ar>"), "250 2.1.5 Ok")
        self.server.wait_log("connect from localhost[127.0.0.1]")
        # /etc/hosts answered: the fake DNS was never asked about 127.0.0.1.
        self.assertNotIn(("1.0.0.127.in-addr.arpa", PTR), self.dns.queries)

    def test_forward_confirmed_name(self):
        s = self.session("127.0.0.9")
        self.assertEqual(s.cmd("RCPT TO:<bob@example.com.ar>"), "250 2.1.5 Ok")
        self.assertEqual(s.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>")
        r = s.cmd("Subject: named\r\n\r\nx\r\n.")
        self.assertTrue(r.startswith("250 2.0.0 Ok: queued as "), r)
        self.server.wait_log("connect from client9.example.test[127.0.0.9]")
        self.server.wait_log("client=client9.example.test[127.0.0.9]")
        msg = [m for m in self.server.wait_messages("bob", 1) if m["Subject"] == "named"][0]
        self.assertIn("(client9.example.test [127.0.0.9])", msg["Received"])

    def test_name_that_does_not_confirm(self):
        s = self.session("127.0.0.10")
        # The reverse name exists (client chain passes), the confirmed one not.
        self.assertEqual(s.cmd("RCPT TO:<bob@example.com.ar>"),
                         "450 4.7.25 Client host rejected: cannot find your hostname, [127.0.0.10]")
        self.server.wait_log("warning: hostname liar.example.test does not resolve to address 127.0.0.10")
        self.server.wait_log("connect from unknown[127.0.0.10]")

    def test_no_ptr_and_numeric_ptr(self):
        for source in ("127.0.0.11", "127.0.0.12"):
            s = self.session(source)
            self.assertEqual(s.cmd("RCPT TO:<bob@example.com.ar>"),
                             "450 4.7.25 Client host rejected: cannot find your reverse hostname, [%s]" % source)
            self.server.wait_log("connect from unknown[%s]" % source)
        # A PTR that is an address is not looked up forward.
        self.assertNotIn(("1.2.3.4", A), self.dns.queries)


class HostsFile(unittest.TestCase):
    """smtpd_hosts_file names clients before DNS; empty turns it off."""

    def test_hosts_file_then_dns_only(self):
        server = Server(modules=("mbox", "smtp"))
        self.addCleanup(server.cleanup)
        with open(server.hosts_file, "a") as f:
            f.write("127.0.0.5 named5.example.test named5\n")
        server.start()
        s = Session(server.ports["smtpd"], "127.0.0.5")
        s.close()
        server.wait_log("connect from named5.example.test[127.0.0.5]")
        self.assertNotIn(("5.0.0.127.in-addr.arpa", PTR), server.dns.queries)
        # Off: the same address is asked of DNS (which knows nothing).
        server.write_conf("smtpd_hosts_file =\n")
        server.reload()
        server.wait_log("reload", timeout=10)

        def unknown():
            s = Session(server.ports["smtpd"], "127.0.0.5")
            s.close()
            return "connect from unknown[127.0.0.5]" in server.log()
        wait_for(unknown, 10, interval=0.3, what="127.0.0.5 unknown once the hosts file is off")
        self.assertIn(("5.0.0.127.in-addr.arpa", PTR), server.dns.queries)


class SlowDNS(unittest.TestCase):
    def test_timeout_gives_unknown_and_holds_no_one_else(self):
        dns = FakeDNS(silent=True)
        dns.start()
        self.addCleanup(dns.stop)
        server = Server(modules=("mbox", "smtp"), conf="dns_servers = 127.0.0.1:%d\n"
                        "smtpd_client_name_timeout = 1s\n" % dns.port)
        self.addCleanup(server.cleanup)
        server.start()
        port = server.ports["smtpd"]
        slow = {}

        def connect_slow():
            s = Session(port, "127.0.0.13")
            slow["wait"], slow["banner"] = s.banner_wait, s.banner
            s.close()
        th = threading.Thread(target=connect_slow)
        th.start()
        time.sleep(0.1)
        fast = Session(port, "127.0.0.1")
        fast.close()
        th.join()
        print("\nbanner wait: dead DNS %.2fs (timeout 1s), /etc/hosts client meanwhile %.3fs"
              % (slow["wait"], fast.banner_wait))
        self.assertTrue(slow["banner"].startswith("220 "), slow["banner"])
        self.assertGreaterEqual(slow["wait"], 0.9)
        self.assertLess(fast.banner_wait, slow["wait"] / 3)
        server.wait_log("connect from unknown[127.0.0.13]")
        self.assertIn(("13.0.0.127.in-addr.arpa", PTR), dns.queries)


if __name__ == "__main__":
    unittest.main()
