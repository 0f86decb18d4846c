"""Issue #11 item 7, slowloris: before the fix every timeout restarted on
each byte, so one byte every few seconds held an SMTP command line, DATA,
a STARTTLS handshake or an IMAP/POP3 pre-login forever, and a flood took
every connection slot from the LAN. Now (short deadlines in this config):

- smtpd_per_request_deadline: smtpd_timeout limits a whole command line;
- smtpd_min_data_rate: DATA trickling below it is cut with Postfix's
  421 4.4.2 ... Error: timeout exceeded;
- smtpd_starttls_timeout bounds the whole handshake;
- imap_login_timeout / pop3_login_timeout bound the whole pre-login;
- mynetworks_reserved_connections keeps slots for mynetworks clients, so
  mail from the LAN (127.0.0.1 here) is delivered during a flood from
  127.0.0.2-11.

Clients only bind 127.0.0.N source addresses."""
import select
import smtplib
import socket
import time
import unittest

from harness import Server

DEADLINE = 3          # smtpd_timeout, *_login_timeout, smtpd_starttls_timeout
CUT_WITHIN = 9        # generous: the deadline plus a loaded machine's slack
CONF = """
smtpd_timeout = {d}s
smtpd_starttls_timeout = {d}s
smtpd_envelope_deadline = 6s
smtpd_client_name_timeout = 0
imap_login_timeout = {d}s
pop3_login_timeout = {d}s
service_connection_limit = 100
mynetworks_reserved_connections = 20
client_connection_limit = 40
""".format(d=DEADLINE)


def trickle(sock, data, period=1.0, limit=30):
    """Send data one byte per period until the server closes the socket;
    returns (seconds until closed, everything the server said)."""
    got, start, i = b"", time.monotonic(), 0
    sock.setblocking(False)
    next_send = start
    while time.monotonic() - start < limit:
        now = time.monotonic()
        if now >= next_send:
            try:
                sock.send(data[i % len(data):i % len(data) + 1])
            except OSError:
                break
            i += 1
            next_send = now + period
        r, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        if r:
            try:
                chunk = sock.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
    return time.monotonic() - start, got


def read_until(sock, end, timeout=10):
    sock.settimeout(timeout)
    buf = b""
    while end not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


class Slowloris(unittest.TestCase):
    def setUp(self):
        self.server = Server(modules=("mbox", "smtp", "imap", "pop3"), listeners=("smtpd", "imap", "pop3"))
        self.addCleanup(self.server.cleanup)
        self.server.write_conf("passdb = passwd-file:%s\n%s" % (self.server.passwd_file, CONF))
        self.server.start()

    def connect(self, port, source="127.0.0.2"):
        s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        self.addCleanup(s.close)
        return s

    def test_trickled_smtp_command_line_is_cut(self):
        s = self.connect(self.server.ports["smtpd"])
        self.assertTrue(read_until(s, b"\r\n").startswith(b"220 "))
        took, said = trickle(s, b"EHLO a-very-long-and-slow-client-name.example\r\n")
        print("\ntrickled SMTP command line cut after %.1fs: %r" % (took, said))
        self.assertLess(took, CUT_WITHIN)
        self.assertIn(b"421 4.4.2 mail.example.com.ar Error: timeout exceeded", said)

    def test_complete_smtp_commands_cannot_hold_the_envelope(self):
        # Whole NOOP lines, each within smtpd_timeout: the envelope
        # deadline (6 s to DATA) still ends it.
        s = self.connect(self.server.ports["smtpd"])
        read_until(s, b"\r\n")
        took, said = trickle(s, b"NOOP\r\n", period=0.3)
        print("\nNOOPs every 0.3 s cut after %.1fs" % took)
        self.assertGreater(took, 5)
        self.assertLess(took, 6 + CUT_WITHIN - DEADLINE)
        self.assertIn(b"421 4.4.2 mail.example.com.ar Error: timeout exceeded", said)

    def test_data_below_min_rate_is_cut(self):
        s = self.connect(self.server.ports["smtpd"], source="127.0.0.1")
        read_until(s, b"\r\n")
        s.sendall(b"EHLO client.example\r\nMAIL FROM:<carol@example.com.ar>\r\nRCPT TO:<alice@example.com.ar>\r\n"
                  b"DATA\r\n")
        self.assertIn(b"354 ", read_until(s, b"354 "))
        # 1 byte/s buys 2 ms a byte at smtpd_min_data_rate = 500 B/s.
        took, said = trickle(s, b"Subject: slow\r\n\r\nbody line\r\n")
        print("\nDATA at 1 byte/s cut after %.1fs: %r" % (took, said))
        self.assertLess(took, CUT_WITHIN)
        self.assertIn(b"421 4.4.2 mail.example.com.ar Error: timeout exceeded", said)
        self.server.wait_log("timeout after DATA")
        self.assertEqual(self.server.messages("alice"), [])

    def test_starttls_handshake_trickle_is_cut(self):
        s = self.connect(self.server.ports["smtpd"])
        read_until(s, b"\r\n")
        s.sendall(b"EHLO client.example\r\n")
        read_until(s, b"250 ")
        s.sendall(b"STARTTLS\r\n")
        self.assertIn(b"220 ", read_until(s, b"\r\n"))
        # The start of a TLS 1.2 ClientHello record, a byte a second.
        took, said = trickle(s, bytes.fromhex("1603010200010001fc0303") + b"\0" * 600)
        print("\ntrickled STARTTLS handshake cut after %.1fs" % took)
        self.assertLess(took, CUT_WITHIN)

    def test_imap_and_pop3_prelogin_is_cut(self):
        for proto, cmd in (("imap", b"a NOOP\r\n"), ("pop3", b"CAPA\r\n")):
            s = self.connect(self.server.ports[proto])
            read_until(s, b"\r\n")
            # Complete, valid commands twice a second: never idle, but
            # never logged in either.
            took, said = trickle(s, cmd, period=0.1)
            print("\n%s pre-login with commands every 0.1 s cut after %.1fs" % (proto, took))
            self.assertGreater(took, DEADLINE - 0.5)
            self.assertLess(took, CUT_WITHIN)

    def test_logged_in_sessions_outlive_the_prelogin_deadline(self):
        import imaplib
        import poplib
        imap = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=10)
        pop = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=10)
        imap.login("alice", "secret")
        pop.user("bob")
        pop.pass_("secret")
        for _ in range(3 * DEADLINE):
            time.sleep(1)
            self.assertEqual(imap.noop()[0], "OK")
            self.assertTrue(pop.noop().startswith(b"+OK"))
        imap.logout()
        pop.quit()

    def test_flood_cannot_take_the_lan_slots(self):
        port = self.server.ports["smtpd"]
        flood, refused = [], 0
        # 300 connections from 127.0.0.2-11 (30 each): 80 get a slot
        # (100 - 20 reserved), the rest are refused at once.
        for i in range(300):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                             source_address=("127.0.0.%d" % (2 + i % 10), 0))
            except OSError:
                refused += 1
                continue
            flood.append(s)
        try:
            time.sleep(0.5)
            r, _, _ = select.select(flood, [], [], 0)
            for s in r:
                try:
                    if not s.recv(4096):
                        refused += 1
                except OSError:
                    refused += 1
            held = len(flood) - refused
            # Every flood connection trickles a byte a second meanwhile.
            start = time.monotonic()
            alive = list(flood)
            delivered_in = None
            while alive and time.monotonic() - start < 20:
                for s in list(alive):
                    try:
                        s.send(b"X")
                    except OSError:
                        alive.remove(s)
                if delivered_in is None and time.monotonic() - start > 1:
                    t = time.monotonic()
                    with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=("127.0.0.1", 0)) as c:
                        c.sendmail("carol@example.com.ar", ["alice@example.com.ar"],
                                   b"Subject: from the LAN\r\n\r\nduring the flood\r\n")
                    self.server.wait_messages("alice", 1)
                    delivered_in = time.monotonic() - t
                r, _, _ = select.select(alive, [], [], 1.0)
                for s in r:
                    try:
                        if not s.recv(4096):
                            alive.remove(s)
                    except OSError:
                        alive.remove(s)
            took = time.monotonic() - start
        finally:
            for s in flood:
                s.close()
        print("\nflood: 300 connections, %d held by the server, LAN mail delivered in %.2fs, "
              "the last flood connection cut after %.1fs of trickling" % (held, delivered_in or -1, took))
        self.assertLessEqual(held, 80)
        self.assertIsNotNone(delivered_in)
        self.assertLess(delivered_in, 5)
        self.assertEqual(alive, [])
        self.assertLess(took, CUT_WITHIN + 2)
        self.assertIn("mynetworks_reserved_connections", self.server.log())


if __name__ == "__main__":
    unittest.main()
