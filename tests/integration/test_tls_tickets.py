"""TLS 1.3 session tickets go out in front of the first answer after the
handshake, never on their own at its end.

Why: after STARTTLS the client speaks first. Tickets sent at the end of
the handshake reach it while it writes its first command, and a client
that reads in one thread and writes in another loses that command when
its write falls into OpenSSL's processing of a ticket: SSL_write reports
success, yet not a byte reaches the socket (OpenSSL 3.0 is not safe for
concurrent use of one SSL object; Python's ssl module releases the GIL
around both calls). imaplib2 does exactly that: after STARTTLS its reader
thread polls the socket, wakes on the tickets and blocks in SSL_read while
the caller's thread sends CAPABILITY; offlineimap then waits forever for
the answer (the sporadic hang of test_imap_clients_offlineimap's STARTTLS
sync: the client's socket had sent exactly the bytes up to its TLS
Finished). Tickets in front of an answer reach a client that is waiting
for it and writes nothing, which is also when implicit TLS clients see
them (with the greeting).
"""
import select
import socket
import ssl
import threading
import time
import unittest

from harness import Server

TIMEOUT = 10


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def read_line(sock):
    b = b""
    while not b.endswith(b"\n"):
        c = sock.recv(1)   # byte by byte: nothing of the TLS stream is taken
        if not c:
            raise AssertionError("connection closed after %r" % b)
        b += c
    return b


def read_until(t, tag):
    data = b""
    while tag not in data:
        c = t.recv(65536)
        if not c:
            raise AssertionError("connection closed after %r" % data)
        data += c
    return data


class TlsTickets(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(modules=("mbox", "smtp", "imap", "pop3"),
                            listeners=("smtpd", "imap", "imaps", "pop3"))
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def plain(self, service, dialogue):
        """Connect to service and run the plaintext part: dialogue is a list
        of (line to send or None, prefix of the reply line that ends it)."""
        s = socket.create_connection(("127.0.0.1", self.server.ports[service]), timeout=TIMEOUT)
        self.addCleanup(s.close)
        for send, until in dialogue:
            if send:
                s.sendall(send)
            while not read_line(s).startswith(until):
                pass
        return s

    def imap_starttls(self, ctx=None, session=None):
        s = self.plain("imap", [(None, b"* OK"), (b"a STARTTLS\r\n", b"a OK")])
        t = (ctx or client_ctx()).wrap_socket(s, server_hostname="127.0.0.1", session=session)
        self.addCleanup(t.close)
        return t

    def assert_quiet(self, t, what):
        # Tickets sent with the handshake would be in the socket by now.
        self.assertEqual(select.select([t], [], [], 0.5)[0], [], "%s: the server wrote before the first command" % what)
        self.assertEqual(t.pending(), 0, what)

    def test_starttls_server_waits_for_first_command(self):
        t = self.imap_starttls()
        self.assert_quiet(t, "IMAP")
        t.sendall(b"b CAPABILITY\r\n")
        self.assertIn(b"b OK", read_until(t, b"b OK"))

        s = self.plain("pop3", [(None, b"+OK"), (b"STLS\r\n", b"+OK")])
        t = client_ctx().wrap_socket(s, server_hostname="127.0.0.1")
        self.addCleanup(t.close)
        self.assert_quiet(t, "POP3")
        t.sendall(b"CAPA\r\n")
        self.assertIn(b"\r\n.\r\n", read_until(t, b"\r\n.\r\n"))

        s = self.plain("smtpd", [(None, b"220 "), (b"EHLO client.example.com.ar\r\n", b"250 "),
                                 (b"STARTTLS\r\n", b"220 ")])
        t = client_ctx().wrap_socket(s, server_hostname="127.0.0.1")
        self.addCleanup(t.close)
        self.assert_quiet(t, "SMTP")
        t.sendall(b"EHLO client.example.com.ar\r\n")
        self.assertIn(b"250 ", read_until(t, b"250 "))

    def test_tickets_still_issued_and_resumable(self):
        """The tickets come with the first answer, and a second connection
        resumes with one."""
        ctx = client_ctx()
        t = self.imap_starttls(ctx)
        t.sendall(b"b CAPABILITY\r\n")
        read_until(t, b"b OK")
        self.assertTrue(t.session.has_ticket)
        t2 = self.imap_starttls(ctx, session=t.session)
        t2.sendall(b"c CAPABILITY\r\n")
        read_until(t2, b"c OK")
        self.assertTrue(t2.session_reused)

        # implicit TLS: the tickets come with the greeting
        s = socket.create_connection(("127.0.0.1", self.server.ports["imaps"]), timeout=TIMEOUT)
        self.addCleanup(s.close)
        t3 = client_ctx().wrap_socket(s, server_hostname="127.0.0.1")
        self.addCleanup(t3.close)
        self.assertTrue(read_until(t3, b"\r\n").startswith(b"* OK"))
        self.assertTrue(t3.session.has_ticket)

    def test_resumption_gets_one_ticket(self):
        """A full handshake brings OpenSSL's 2 tickets; a resumed one used
        up one ticket and gets 1 new one, as OpenSSL itself sends after a
        resumption (not 2 more on every resumed connection)."""
        ctx = client_ctx()
        if not hasattr(ctx, "_msg_callback"):
            self.skipTest("this Python cannot count handshake messages")
        tickets = []

        def on_message(conn, direction, version, content_type, msg_type, data):
            if (direction == "read" and content_type == ssl._TLSContentType.HANDSHAKE and
                    msg_type == ssl._TLSMessageType.NEWSESSION_TICKET):
                tickets.append(msg_type)
        ctx._msg_callback = on_message

        # The tickets come in front of the answer: all seen once it is read.
        t = self.imap_starttls(ctx)
        t.sendall(b"b CAPABILITY\r\n")
        read_until(t, b"b OK")
        self.assertFalse(t.session_reused)
        self.assertEqual(len(tickets), 2, "full handshake")
        del tickets[:]
        t2 = self.imap_starttls(ctx, session=t.session)
        t2.sendall(b"c CAPABILITY\r\n")
        read_until(t2, b"c OK")
        self.assertTrue(t2.session_reused)
        self.assertEqual(len(tickets), 1, "resumed handshake")

        # implicit TLS, tickets with the greeting: the same counts
        del tickets[:]
        s = socket.create_connection(("127.0.0.1", self.server.ports["imaps"]), timeout=TIMEOUT)
        self.addCleanup(s.close)
        t3 = ctx.wrap_socket(s, server_hostname="127.0.0.1", session=t2.session)
        self.addCleanup(t3.close)
        self.assertTrue(read_until(t3, b"\r\n").startswith(b"* OK"))
        self.assertTrue(t3.session_reused)
        self.assertEqual(len(tickets), 1, "resumed implicit TLS handshake")

    def test_reader_thread_client_after_starttls(self):
        """imaplib2's pattern: a reader thread blocks in recv while another
        thread writes the first command. When the client's message callback
        (Python's private hook, run inside OpenSSL's processing of each
        handshake message) sees a ticket before that command went out, it
        holds the reader there for a moment and the command is written in
        that window: the window in which offlineimap's CAPABILITY was lost,
        made wide, so that a server that sends tickets at the end of the
        handshake fails every round instead of now and then."""
        for round in range(5):
            window = threading.Event()
            sent = threading.Event()
            ctx = client_ctx()
            if hasattr(ctx, "_msg_callback"):
                def on_message(conn, direction, version, content_type, msg_type, data):
                    if (direction == "read" and not sent.is_set() and
                            msg_type == ssl._TLSMessageType.NEWSESSION_TICKET):
                        window.set()
                        time.sleep(0.3)
                ctx._msg_callback = on_message
            t = self.imap_starttls(ctx)
            t.settimeout(None)   # blocking, as imaplib2's socket
            got = []

            def reader():
                try:
                    got.append(t.recv(65536))
                except OSError as e:
                    got.append(repr(e).encode())
            th = threading.Thread(target=reader, daemon=True)
            th.start()
            window.wait(0.3)
            sent.set()
            t.sendall(b"b CAPABILITY\r\n")
            th.join(TIMEOUT)
            if th.is_alive():
                t.shutdown(socket.SHUT_RDWR)   # frees the reader
                th.join(TIMEOUT)
                self.fail("round %d: no answer to the first command after STARTTLS" % round)
            self.assertTrue(got[0].startswith(b"* CAPABILITY "), got[0])


if __name__ == "__main__":
    unittest.main()
