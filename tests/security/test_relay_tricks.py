"""Open-relay address tricks from a client outside mynetworks (issue #11:
39 tricks, all held; kept here as regression tests).

The server runs the seed's restrictions with smtpd_relay_restrictions empty,
so reject_unauth_destination decides (Postfix's reference reply then is
"554 5.7.1 <addr>: Relay access denied"; with Debian's default relay
restrictions it would be 454). The client binds 127.0.0.2 (mynetworks is
127.0.0.1/32). relayhost points at a sink on loopback: anything queued for
a remote destination would connect there. Each trick gets its own
connection and the server's exact reply; DATA then finds no valid
recipient. Local addresses dressed up the same way (postmaster with and
without a domain, a source route ending in a local address) are accepted
and delivered locally, never relayed.

Where Postern differs from Postfix (both refuse): a trailing dot, an
address with a CR or NUL, or two @ get 501 5.1.3 (Postfix resolves some of
them and answers 554 5.7.1); IP literals of our own addresses are relay
attempts (Postfix treats [its own IP] as local)."""
import os
import re
import socket
import threading
import time
import unittest

from harness import Server, free_port, wait_for

HOST = "mail.example.com.ar"
DENIED = "554 5.7.1 <%s>: Relay access denied"
SYNTAX = "501 5.1.3 Bad recipient address syntax"

# address -> the address the reply shows (a source route is dropped).
RELAY = {
    "victim@other.test": None,
    "victim@OTHER.TEST": None,                                  # upper case domain
    "VICTIM@Other.Test": None,
    "victim%other.test@example.com.ar": None,                   # percent hack
    "victim%other.test@EXAMPLE.COM.AR": None,
    "victim%other.test@localhost": None,
    "victim%other.test@mail.example.com.ar": None,
    "victim%other.test": None,                                  # ... without a domain
    "victim%other.test@[127.0.0.1]": None,
    "other.test!victim@example.com.ar": None,                   # bang path
    "other.test!victim@localhost": None,
    "other.test!victim": None,
    "a.test!other.test!victim@example.com.ar": None,
    "@example.com.ar:victim@other.test": "victim@other.test",   # source route
    "@mail.example.com.ar,@example.com.ar:victim@other.test": "victim@other.test",
    '"victim@other.test"@example.com.ar': None,                 # quoted local part with @
    '"victim%other.test"@example.com.ar': None,
    '"other.test!victim"@example.com.ar': None,
    '"victim@other.test"': None,
    '"victim"@other.test': None,
    "victim@[192.0.2.1]": None,                                 # IP literals
    "victim@[127.0.0.1]": None,
    "victim@[IPv6:::1]": None,
    "victim@example.com.ar.other.test": None,                   # our name as a prefix
    "victim@localhost.other.test": None,
    "postmaster@other.test": None,
}
# With SMTPUTF8 declared, UTF-8 addresses are just addresses.
RELAY_UTF8 = ["victim@bücher.test", "víctim@other.test", "postmaster@bücher.test"]
MALFORMED = [
    "victim@other.test.",                                       # trailing dots
    "victim%other.test@mail.example.com.ar.",
    "victim@[192.0.2.1].",
    "alice@example.com.ar.",
    "victim@other.test@example.com.ar",                         # double @
    "victim@@other.test",
    "victim\\@other.test@example.com.ar",
    "victim@",                                                  # empty domain
    "@",
    "",
    "victim@.other.test",
    "victim@other.test\r",                                      # CR inside the address
    "victim@other.test\x00",                                    # NUL
    "victim@other.test,alice@example.com.ar",
    "victim@other.test(comment)",
]
# Accepted and delivered to alice (postmaster: alice in the aliases).
LOCAL = ["postmaster", "POSTMASTER", "postmaster@example.com.ar", "Postmaster@EXAMPLE.COM.AR",
         "@other.test:alice@example.com.ar"]


class Sink(threading.Thread):
    """Stands in for every remote MX (relayhost): counts connections."""

    def __init__(self):
        super().__init__(daemon=True)
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.connections = 0
        self.stopped = False

    def run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            try:
                c.sendall(b"554 5.7.1 sink: nothing may be relayed here\r\n")
            finally:
                c.close()

    def stop(self):
        self.stopped = True
        self.join(2)
        self.sock.close()


def start_server():
    sink = Sink()
    sink.start()
    s = Server(modules=("mbox", "alias", "transport", "restrict", "smtp"), listeners=("smtpd",))
    s.write_conf("\n".join([
        "smtpd_helo_required = yes",
        "smtpd_client_restrictions = permit_mynetworks",
        "smtpd_helo_restrictions = permit_mynetworks, reject_invalid_helo_hostname",
        "smtpd_relay_restrictions =",
        "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination",
        "relay_domains = $mydestination",
        "relayhost = [127.0.0.1]:%d" % sink.port,
        "smtputf8_enable = yes",
    ]) + "\n")
    s.start()
    return sink, s


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=("127.0.0.2", 0))
        self.f = self.sock.makefile("rb")
        self.banner = self.reply()

    def reply(self):
        while True:
            raw = self.f.readline()
            if not raw:
                raise EOFError("closed")
            l = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(l) < 4 or l[3] != "-":
                return l

    def cmd(self, text):
        if isinstance(text, str):
            text = text.encode("utf-8")
        self.sock.sendall(text + b"\r\n")
        return self.reply()

    def close(self):
        self.sock.close()


class RelayTricks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sink, cls.server = start_server()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        cls.sink.stop()

    def attempt(self, rcpt, utf8=False):
        """MAIL, RCPT rcpt, DATA, QUIT on a fresh connection from 127.0.0.2:
        the RCPT reply (and the DATA reply, which must refuse)."""
        c = Client(self.server.ports["smtpd"])
        self.addCleanup(c.close)
        self.assertEqual(c.banner, "220 %s ESMTP Postern" % HOST)
        self.assertTrue(c.cmd("EHLO client2.example.com.ar").startswith("250 "))
        self.assertEqual(c.cmd("MAIL FROM:<someone@example.com.ar>%s" % (" SMTPUTF8" if utf8 else "")),
                         "250 2.1.0 Ok")
        reply = c.cmd("RCPT TO:<%s>" % rcpt)
        self.assertEqual(c.cmd("DATA"), "554 5.5.1 Error: no valid recipients")
        self.assertEqual(c.cmd("QUIT"), "221 2.0.0 Bye")
        return reply

    def reject_logged(self, shown):
        pat = (r"NOQUEUE: reject: RCPT from \S+\[127\.0\.0\.2\]: 554 5\.7\.1 <%s>: Relay access denied; "
               r"from=<someone@example\.com\.ar> to=<%s> proto=ESMTP helo=<client2\.example\.com\.ar>"
               % (re.escape(shown), re.escape(shown)))
        wait_for(lambda: re.search(pat, self.server.log()), what="reject log line for %s" % shown)

    def test_relay_tricks_denied(self):
        for rcpt, shown in RELAY.items():
            with self.subTest(rcpt=rcpt):
                self.assertEqual(self.attempt(rcpt), DENIED % (shown or rcpt))
                self.reject_logged(shown or rcpt)

    def test_utf8_relay_tricks_denied(self):
        for rcpt in RELAY_UTF8:
            with self.subTest(rcpt=rcpt):
                self.assertEqual(self.attempt(rcpt, utf8=True), DENIED % rcpt)
                # Without SMTPUTF8 declared, refused before any routing.
                self.assertEqual(self.attempt(rcpt), "553 5.6.7 Must declare SMTPUTF8 to send unicode address")

    def test_malformed_addresses_refused(self):
        for rcpt in MALFORMED:
            with self.subTest(rcpt=rcpt):
                self.assertEqual(self.attempt(rcpt), SYNTAX)

    def test_line_breaks_inside_rcpt(self):
        """A bare LF or CR splitting one RCPT into two (normalize mode: a
        bare LF ends a command line) gives each part its own refusal."""
        for sep, want in ((b"\n", [DENIED % "victim@other.test", DENIED % "v2@other.test"]),
                          (b"\r", [SYNTAX])):
            with self.subTest(sep=sep):
                c = Client(self.server.ports["smtpd"])
                self.addCleanup(c.close)
                c.cmd("EHLO client2.example.com.ar")
                c.cmd("MAIL FROM:<someone@example.com.ar>")
                c.sock.sendall(b"RCPT TO:<victim@other.test>" + sep + b"RCPT TO:<v2@other.test>\r\n")
                got = [c.reply() for _ in want]
                self.assertEqual(got, want)
                self.assertEqual(c.cmd("DATA"), "554 5.5.1 Error: no valid recipients")

    def test_local_lookalikes_delivered_locally(self):
        for rcpt in LOCAL:
            with self.subTest(rcpt=rcpt):
                c = Client(self.server.ports["smtpd"])
                self.addCleanup(c.close)
                c.cmd("EHLO client2.example.com.ar")
                self.assertEqual(c.cmd("MAIL FROM:<someone@example.com.ar>"), "250 2.1.0 Ok")
                self.assertEqual(c.cmd("RCPT TO:<%s>" % rcpt), "250 2.1.5 Ok")
                self.assertTrue(c.cmd("DATA").startswith("354 "))
                self.assertRegex(c.cmd("Subject: local %s\r\n\r\nhello\r\n." % rcpt),
                                 r"^250 2\.0\.0 Ok: queued as [0-9A-F]+$")
                self.assertEqual(c.cmd("QUIT"), "221 2.0.0 Bye")
        msgs = self.server.wait_messages("alice", len(LOCAL))
        self.assertEqual(sorted(m["Subject"] for m in msgs), sorted("local " + r for r in LOCAL))
        for m in msgs:
            # Received from the outside client, whatever name it resolves to.
            self.assertRegex(" ".join(m["Received"].split()),
                             r"^from client2\.example\.com\.ar \(\S+ \[127\.0\.0\.2\]\) by %s " % re.escape(HOST))

    def tearDown(self):
        """After each group of tricks: the sink standing in for remote MXs
        saw nothing, the queue is empty again, and no delivery went
        anywhere but the local mailboxes."""
        queue = [self.server.path("queue", sub) for sub in ("incoming", "active", "deferred", "maildrop")]
        wait_for(lambda: all(os.listdir(d) == [] for d in queue), what="an empty queue")
        time.sleep(0.5)
        self.assertEqual(self.sink.connections, 0)
        log = self.server.log()
        for line in log.splitlines():
            m = re.search(r" relay=([^,]+),", line)
            if m:
                self.assertEqual(m.group(1), "local", line)
        self.assertNotRegex(log, r"to=<[^>]*(other|b\u00fccher)\.test>, relay=")
        self.assertNotIn("sink:", log)

class SinkControl(unittest.TestCase):
    """The detector works: the same mail from mynetworks (127.0.0.1, which
    may relay) is queued for other.test and reaches the sink."""

    def test_mynetworks_relay_reaches_the_sink(self):
        sink, server = start_server()
        self.addCleanup(sink.stop)
        self.addCleanup(server.cleanup)
        c = socket.create_connection(("127.0.0.1", server.ports["smtpd"]), timeout=20)
        self.addCleanup(c.close)
        c.sendall(b"EHLO client.example.com.ar\r\nMAIL FROM:<someone@example.com.ar>\r\n"
                  b"RCPT TO:<victim@other.test>\r\nDATA\r\n")
        f = c.makefile("rb")
        lines = []
        while not lines or not lines[-1].startswith(b"354"):
            lines.append(f.readline())
        self.assertIn(b"250 2.1.5 Ok\r\n", lines)
        c.sendall(b"Subject: relayed\r\n\r\nx\r\n.\r\nQUIT\r\n")
        self.assertTrue(f.readline().startswith(b"250 2.0.0 Ok: queued as "))
        wait_for(lambda: sink.connections > 0, 20, what="the relay attempt at the sink")


if __name__ == "__main__":
    unittest.main()
