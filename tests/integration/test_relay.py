"""The outbound SMTP client end to end: transport routes smtp:[127.0.0.1]:PORT
and smtp:domain:PORT (MX through a fake DNS server) deliver to a second SMTP
server on loopback (aiosmtpd, or a scripted server in this file that counts
connections and can misbehave); a next hop that is down is deferred and
delivered after `postern queue flush`; 5xx gives the sender a DSN quoting
the remote reply; STARTTLS (may/encrypt), refusal of data injected after
the STARTTLS 220, PIPELINING, SIZE, connection reuse and the concurrency
limit."""
import os
import socket
import ssl
import smtplib
import struct
import threading
import time
import unittest

from fakedns import FakeDNS, encode_name
from harness import Server, free_port, test_cert, wait_for

# python3-aiosmtpd is a test dependency (scripts/deps.sh): missing, the
# suite fails here rather than skipping.
from aiosmtpd.controller import Controller


# ---------------------------------------------------------------- helpers

class Lines:
    """Line reader over a socket that can be swapped for its TLS wrapper."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def readline(self, timeout=30):
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def has_line_within(self, seconds):
        """True when another line arrives within seconds (pipelining)."""
        if b"\n" in self.buf:
            return True
        self.sock.settimeout(seconds)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not d:
            return False
        self.buf += d
        return True


class FakeSMTP:
    """A scripted SMTP server on 127.0.0.1 in threads.

    ext: EHLO keywords. tls: offer STARTTLS. rcpt_reply(addr) -> reply line
    or None for 250. inject: send pipelined data after the STARTTLS 220.
    """

    def __init__(self, ext=("PIPELINING", "SIZE 10240000", "8BITMIME"), tls=False, rcpt_reply=None,
                 inject=False, port=None, stall=None, ehlo_reply=None, dot_reply=None):
        self.stall = stall        # "GREETING" or a verb: never answer it
        self.ehlo_reply = ehlo_reply
        self.dot_reply = dot_reply
        self.ext = list(ext)
        self.tls = tls
        self.rcpt_reply = rcpt_reply
        self.inject = inject
        self.connections = 0
        self.active = 0
        self.max_active = 0
        self.messages = []        # (mail_from_line, [rcpt], data bytes, tls?)
        self.commands = []        # every command line, in order
        self.pipelined = []       # per MAIL: did RCPT follow without waiting?
        self.lock = threading.Lock()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port or 0))
        self.port = self.lsock.getsockname()[1]
        self.lsock.listen(50)
        self.stopped = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def stop(self):
        self.stopped = True
        try:
            self.lsock.close()
        except OSError:
            pass

    def accept_loop(self):
        while not self.stopped:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        socks = [c]
        try:
            self.session(c, socks)
        except (EOFError, OSError, ssl.SSLError):
            pass
        finally:
            with self.lock:
                self.active -= 1
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass

    def session(self, c, socks):
        r = Lines(c)
        send = lambda s: r.sock.sendall(s.encode() if isinstance(s, str) else s)
        if self.stall == "GREETING":
            time.sleep(30)
            return
        send("220 fake.example ESMTP\r\n")
        is_tls = False
        mail, rcpts = None, []
        while True:
            line = r.readline().decode(errors="replace").rstrip("\r\n")
            with self.lock:
                self.commands.append(line)
            verb = line.split(" ", 1)[0].upper()
            if verb == self.stall:
                time.sleep(30)
                return
            if verb == "EHLO" and self.ehlo_reply:
                send(self.ehlo_reply + "\r\n")
            elif verb == "EHLO":
                ext = ["fake.example"] + self.ext + (["STARTTLS"] if self.tls and not is_tls else [])
                send("".join("250%s%s\r\n" % ("-" if i < len(ext) - 1 else " ", e) for i, e in enumerate(ext)))
            elif verb == "HELO":
                send("250 fake.example\r\n")
            elif verb == "STARTTLS" and self.tls and not is_tls:
                if self.inject:
                    send("220 2.0.0 Ready to start TLS\r\n250 2.0.0 injected\r\n")
                else:
                    send("220 2.0.0 Ready to start TLS\r\n")
                cert, key = test_cert()
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(cert, key)
                tc = ctx.wrap_socket(r.sock, server_side=True)
                socks.append(tc)
                r = Lines(tc)
                is_tls = True
            elif verb == "MAIL":
                mail, rcpts = line, []
                if "PIPELINING" in self.ext:
                    self.pipelined.append(r.has_line_within(0.5))
                send("250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                addr = line.split(":", 1)[1].strip().strip("<>")
                rep = self.rcpt_reply(addr) if self.rcpt_reply else None
                if rep:
                    send(rep + "\r\n")
                else:
                    rcpts.append(addr)
                    send("250 2.1.5 Ok\r\n")
            elif verb == "DATA":
                if not rcpts:
                    send("554 5.5.1 Error: no valid recipients\r\n")
                    continue
                send("354 End data with <CR><LF>.<CR><LF>\r\n")
                data = b""
                while True:
                    l = r.readline()
                    if l == b".\r\n":
                        break
                    data += l[1:] if l.startswith(b".") else l
                if self.dot_reply:
                    send(self.dot_reply + "\r\n")
                    continue
                with self.lock:
                    self.messages.append((mail, rcpts, data, is_tls))
                send("250 2.0.0 Ok: queued as FAKE%d\r\n" % len(self.messages))
            elif verb == "RSET":
                mail, rcpts = None, []
                send("250 2.0.0 Ok\r\n")
            elif verb == "QUIT":
                send("221 2.0.0 Bye\r\n")
                return
            else:
                send("502 5.5.2 Error: command not recognized\r\n")


def mx_rdata(pref, name):
    return struct.pack("!H", pref) + encode_name(name)


def send(port, rcpts, sender="carol@example.com.ar", subject="test", body="body\r\n"):
    msg = ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" % (sender, ", ".join(rcpts), subject, body)).encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example.com.ar")
        s.sendmail(sender, rcpts, msg)


# ------------------------------------------------------------------ tests

class RelayTest(unittest.TestCase):
    def start(self, transport, conf=""):
        self.server = Server(modules=("mbox", "alias", "transport", "smtp"), users=("alice", "bob", "carol"))
        self.addCleanup(self.server.cleanup)
        self.map = self.server.path("transport")
        with open(self.map, "w") as f:
            f.write(transport)
        st = os.stat(self.server.dir)
        os.chown(self.map, st.st_uid, st.st_gid)
        self.server.write_conf("relay_domains = $mydestination\ntransport_maps = hash:%s\n%s\n" % (self.map, conf))
        self.server.start()
        self.port = self.server.ports["smtpd"]

    def fake(self, **kw):
        f = FakeSMTP(**kw)
        self.addCleanup(f.stop)
        return f

    def queue_list(self):
        return self.server.cmd("queue", "list", "-c", self.server.conf_file).stdout.decode()

    def flush(self):
        out = self.server.cmd("queue", "flush", "-c", self.server.conf_file)
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_delivers_exact_content_to_aiosmtpd_with_starttls(self):
        got = []

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                got.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                            session.ssl is not None))
                return "250 2.0.0 Ok: queued as AIO1"

        cert, key = test_cert()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        port = free_port()
        ctl = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx)
        ctl.start()
        self.addCleanup(ctl.stop)
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % port)
        body = ("line one\r\n.leading dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n" +
                "x" * 900 + "\r\n\r\nlast line\r\n")
        send(self.port, ["x@relay.example.com.ar", "y@relay.example.com.ar"], subject="exact", body=body)
        wait_for(lambda: got, 30, what="message at aiosmtpd")
        mail_from, rcpts, content, tls = got[0]
        self.assertEqual(mail_from, "carol@example.com.ar")
        self.assertEqual(sorted(rcpts), ["x@relay.example.com.ar", "y@relay.example.com.ar"])
        self.assertTrue(tls, "STARTTLS was offered (level may) but not used")
        # The Received header the server added, then the message as sent
        # (with the Message-Id and Date a client on this host did not give,
        # as Postfix's cleanup adds them), the body untouched.
        self.assertTrue(content.startswith(b"Received: "), content[:200])
        self.assertIn(b"\r\nSubject: exact\r\nMessage-Id: <", content)
        self.assertTrue(content.endswith(b"\r\n\r\n" + body.encode()), content[-300:])
        self.assertNotIn(b"\n", content.replace(b"\r\n", b""))
        log = self.server.wait_log("status=sent (250 2.0.0 Ok: queued as AIO1)", timeout=20)
        log = self.server.log()
        self.assertRegex(log, r"to=<x@relay\.example\.com\.ar>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, "
                              r"delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=2\.0\.0, "
                              r"status=sent \(250 2\.0\.0 Ok: queued as AIO1\)" % port)
        self.assertIn("TLS connection established to 127.0.0.1[127.0.0.1]:%d" % port, log)
        wait_for(lambda: "Mail queue is empty" in self.queue_list(), 10, what="empty queue")

    def test_alias_with_remote_member_is_forwarded_and_relayed(self):
        f = self.fake()
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % f.port)
        with open(self.server.aliases_file, "a") as a:
            a.write("team: alice, friend@relay.example.com.ar\n")
        time.sleep(1.1)  # the alias map is re-read at most once a second
        send(self.port, ["team@example.com.ar"], subject="to the team", body="hello team\r\n")
        self.server.wait_messages("alice", 1)
        wait_for(lambda: f.messages, 30, what="forwarded copy at the next hop")
        mail_from, rcpts, data, _ = f.messages[0]
        self.assertIn("carol@example.com.ar", mail_from)
        self.assertEqual(rcpts, ["friend@relay.example.com.ar"])
        self.assertIn(b"Delivered-To: team@example.com.ar\r\n", data)
        self.assertIn(b"hello team", data)
        self.server.wait_log("status=sent (250", timeout=20)
        self.assertRegex(self.server.log(), r"to=<friend@relay\.example\.com\.ar>, orig_to=<team@example\.com\.ar>, "
                                            r"relay=local, .*status=sent \(forwarded as [0-9A-F]+\)")

    def test_down_next_hop_deferred_then_flushed(self):
        port = free_port()
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % port)
        send(self.port, ["x@relay.example.com.ar"], subject="while down")
        self.server.wait_log("status=deferred (connect to 127.0.0.1[127.0.0.1]:%d: Connection refused)" % port,
                             timeout=20)
        self.assertIn("relay=none", self.server.log())
        listing = wait_for(lambda: "x@relay.example.com.ar" in self.queue_list() and self.queue_list(), 10,
                           what="queue listing")
        self.assertIn("Connection refused", listing)
        fake = self.fake(port=port)
        self.flush()
        wait_for(lambda: fake.messages, 30, what="delivery after flush")
        self.assertIn(b"Subject: while down", fake.messages[0][2])
        wait_for(lambda: "Mail queue is empty" in self.queue_list(), 10, what="empty queue")
        # Nothing bounced to the sender.
        self.assertEqual(self.server.messages("carol"), [])

    def test_5xx_bounces_with_remote_reply_quoted(self):
        fake = self.fake(rcpt_reply=lambda a: "550 5.1.1 <%s>: Recipient address rejected: User unknown" % a
                         if a.startswith("nobody") else None)
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port)
        send(self.port, ["nobody@relay.example.com.ar", "ok@relay.example.com.ar"], subject="half wrong")
        bounce = self.server.wait_messages("carol", 1, timeout=30)[0].as_string()
        self.assertIn("host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <nobody@relay.example.com.ar>: Recipient "
                      "address rejected: User unknown (in reply to RCPT TO command)", bounce.replace("\n ", " "))
        self.assertIn("5.1.1", bounce)
        wait_for(lambda: fake.messages, 10, what="the good recipient's copy")
        self.assertEqual(fake.messages[0][1], ["ok@relay.example.com.ar"])
        log = self.server.log()
        self.assertIn("to=<nobody@relay.example.com.ar>, relay=127.0.0.1[127.0.0.1]:%d" % fake.port, log)
        self.assertIn("dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1", log)
        self.assertNotIn("nobody@relay.example.com.ar", self.queue_list())

    def test_4xx_rcpt_is_deferred(self):
        fake = self.fake(rcpt_reply=lambda a: "450 4.2.0 <%s>: Recipient address rejected: Greylisted" % a)
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port)
        send(self.port, ["grey@relay.example.com.ar"], subject="greylisted")
        self.server.wait_log("status=deferred (host 127.0.0.1[127.0.0.1] said: 450 4.2.0", timeout=20)
        self.assertIn("grey@relay.example.com.ar", self.queue_list())
        self.assertEqual(self.server.messages("carol"), [])

    def test_encrypt_defers_server_without_starttls(self):
        fake = self.fake(tls=False)
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port,
                   conf="smtp_tls_security_level = encrypt")
        send(self.port, ["x@relay.example.com.ar"], subject="must be encrypted")
        self.server.wait_log("status=deferred (TLS is required, but was not offered by host "
                             "127.0.0.1[127.0.0.1])", timeout=20)
        self.assertEqual(fake.messages, [])
        self.assertNotIn("MAIL", " ".join(fake.commands))
        self.assertIn("x@relay.example.com.ar", self.queue_list())

    def test_encrypt_uses_tls_when_offered(self):
        fake = self.fake(tls=True)
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port,
                   conf="smtp_tls_security_level = encrypt")
        send(self.port, ["x@relay.example.com.ar"], subject="encrypted")
        wait_for(lambda: fake.messages, 30, what="delivery over TLS")
        self.assertTrue(fake.messages[0][3])
        # EHLO again after the handshake (RFC 3207).
        self.assertEqual([c.split(" ")[0] for c in fake.commands[:3]], ["EHLO", "STARTTLS", "EHLO"])

    def test_none_level_stays_plaintext(self):
        fake = self.fake(tls=True)
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port, conf="smtp_tls_security_level = none")
        send(self.port, ["x@relay.example.com.ar"], subject="plain")
        wait_for(lambda: fake.messages, 30, what="delivery")
        self.assertFalse(fake.messages[0][3])
        self.assertNotIn("STARTTLS", fake.commands)

    def test_data_injected_after_starttls_is_refused(self):
        fake = self.fake(tls=True, inject=True)
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port)
        send(self.port, ["x@relay.example.com.ar"], subject="injection")
        self.server.wait_log("status=deferred (host 127.0.0.1[127.0.0.1] sent", timeout=20)
        self.assertIn("after its 220 reply to STARTTLS", self.server.log())
        time.sleep(0.3)
        self.assertEqual(fake.messages, [])
        self.assertIn("x@relay.example.com.ar", self.queue_list())

    def test_pipelining_and_size(self):
        fake = self.fake(ext=("PIPELINING", "SIZE 10240000", "8BITMIME"))
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port)
        send(self.port, ["a@relay.example.com.ar", "b@relay.example.com.ar"], subject="pipelined",
             body="caf\u00e9\r\n")
        wait_for(lambda: fake.messages, 30, what="delivery")
        self.assertEqual(fake.pipelined, [True])
        mail = fake.messages[0][0]
        self.assertRegex(mail, r"^MAIL FROM:<carol@example\.com\.ar> SIZE=\d+ BODY=8BITMIME$")
        size = int(mail.split("SIZE=")[1].split()[0])
        self.assertEqual(size, len(fake.messages[0][2]))
        cmds = [c.split(":")[0] for c in fake.commands]
        self.assertEqual(cmds[cmds.index("MAIL FROM"):cmds.index("MAIL FROM") + 4],
                         ["MAIL FROM", "RCPT TO", "RCPT TO", "DATA"])

    def test_without_pipelining_waits_for_each_reply(self):
        fake = self.fake(ext=("8BITMIME",))
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port)
        send(self.port, ["a@relay.example.com.ar"], subject="lockstep")
        wait_for(lambda: fake.messages, 30, what="delivery")
        self.assertEqual(fake.messages[0][0], "MAIL FROM:<carol@example.com.ar>")

    def test_over_server_size_bounces(self):
        fake = self.fake(ext=("PIPELINING", "SIZE 200"))
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port)
        send(self.port, ["big@relay.example.com.ar"], subject="too big", body="z" * 500 + "\r\n")
        bounce = self.server.wait_messages("carol", 1, timeout=30)[0].as_string().replace("\n ", " ")
        self.assertIn("exceeds size limit 200 of server 127.0.0.1[127.0.0.1]", bounce)
        self.assertIn("5.3.4", bounce)
        self.assertEqual(fake.messages, [])

    def test_connection_reuse_and_concurrency_limit(self):
        port = free_port()
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % port,
                   conf="default_destination_concurrency_limit = 1\nsmtp_connection_cache_time_limit = 5s")
        for i in range(3):
            send(self.port, ["r%d@relay.example.com.ar" % i], subject="queued %d" % i)
        wait_for(lambda: self.server.log().count("status=deferred (connect to") >= 3, 30, what="3 deferrals")
        fake = self.fake(port=port)
        self.flush()
        wait_for(lambda: len(fake.messages) == 3, 30, what="3 deliveries")
        self.assertEqual(fake.connections, 1)
        self.assertEqual(fake.max_active, 1)
        # RSET between the messages on the reused connection.
        verbs = [c.split(" ")[0].split(":")[0].upper() for c in fake.commands]
        self.assertEqual(verbs.count("RSET"), 2)
        self.assertEqual(verbs.count("EHLO"), 1)
        # A message a moment later reuses the cached connection too.
        send(self.port, ["later@relay.example.com.ar"], subject="later")
        wait_for(lambda: len(fake.messages) == 4, 30, what="4th delivery")
        self.assertEqual(fake.connections, 1)

    def test_greeting_timeout_deferred(self):
        fake = self.fake(stall="GREETING")
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port, conf="smtp_helo_timeout = 1s")
        send(self.port, ["x@relay.example.com.ar"], subject="silent server")
        self.server.wait_log("status=deferred (conversation with 127.0.0.1[127.0.0.1] timed out while "
                             "receiving the initial server greeting)", timeout=20)
        self.assertIn("x@relay.example.com.ar", self.queue_list())

    def test_client_is_answered_before_a_slow_next_hop(self):
        # The message is durable in the queue and acknowledged first; the
        # relay attempt runs afterwards, however long the next hop takes.
        fake = self.fake(stall="GREETING")
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port, conf="smtp_helo_timeout = 300s")
        t0 = time.monotonic()
        send(self.port, ["x@relay.example.com.ar"], subject="slow hop")
        self.assertLess(time.monotonic() - t0, 30)  # not the 300 s the next hop may take
        self.assertIn("x@relay.example.com.ar", self.queue_list())
        wait_for(lambda: fake.connections >= 1, 10, what="relay attempt")

    def test_rcpt_timeout_deferred(self):
        fake = self.fake(ext=("8BITMIME",), stall="RCPT")
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port, conf="smtp_rcpt_timeout = 1s")
        send(self.port, ["x@relay.example.com.ar"], subject="slow rcpt")
        self.server.wait_log("status=deferred (conversation with 127.0.0.1[127.0.0.1] timed out while "
                             "sending RCPT TO)", timeout=20)
        self.assertIn("x@relay.example.com.ar", self.queue_list())

    def test_connect_timeout_deferred(self):
        # A listener whose accept queue is full drops further SYNs: the
        # connection attempt hangs until smtp_connect_timeout.
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(0)
        port = ls.getsockname()[1]
        fillers = []
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        self.addCleanup(lambda: [x.close() for x in fillers + [ls]])
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % port, conf="smtp_connect_timeout = 1s")
        t0 = time.time()
        send(self.port, ["x@relay.example.com.ar"], subject="black hole")
        self.server.wait_log("status=deferred (connect to 127.0.0.1[127.0.0.1]:%d: Connection timed out)" % port,
                             timeout=20)
        self.assertLess(time.time() - t0, 15)

    def test_ehlo_rejected_falls_back_to_helo(self):
        fake = self.fake(ehlo_reply="502 5.5.2 Error: command not recognized")
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port)
        send(self.port, ["x@relay.example.com.ar"], subject="old server")
        wait_for(lambda: fake.messages, 30, what="delivery after HELO")
        self.assertEqual([c.split(" ")[0] for c in fake.commands[:2]], ["EHLO", "HELO"])
        self.assertEqual(fake.commands[1], "HELO mail.example.com.ar")
        # Nothing from EHLO may be used: no SIZE=, no pipelining.
        self.assertEqual(fake.messages[0][0], "MAIL FROM:<carol@example.com.ar>")

    def test_end_of_data_5xx_bounces(self):
        fake = self.fake(dot_reply="554 5.7.1 Message rejected as spam")
        self.start("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % fake.port)
        send(self.port, ["x@relay.example.com.ar"], subject="spammy")
        bounce = self.server.wait_messages("carol", 1, timeout=30)[0].as_string().replace("\n ", " ")
        self.assertIn("host 127.0.0.1[127.0.0.1] said: 554 5.7.1 Message rejected as spam (in reply to end of "
                      "DATA command)", bounce)

    def test_mx_lookup_through_fake_dns(self):
        fake = self.fake()
        dns = FakeDNS({("remote.test", 15): [mx_rdata(20, "mx2.remote.test"), mx_rdata(10, "mx1.remote.test")],
                       ("mx1.remote.test", 1): [socket.inet_aton("127.0.0.1")],
                       ("mx1.remote.test", 28): [],
                       ("mx2.remote.test", 1): [socket.inet_aton("127.0.0.2")],
                       ("mx2.remote.test", 28): []})
        dns.start()
        self.addCleanup(dns.stop)
        self.start("remote.test smtp:remote.test:%d\n" % fake.port, conf="relay_domains = $mydestination, remote.test, gone.test\n"
                   "dns_servers = 127.0.0.1:%d" % dns.port)
        send(self.port, ["someone@remote.test"], subject="via MX")
        wait_for(lambda: fake.messages, 30, what="delivery via MX")
        self.assertIn(("remote.test", 15), dns.queries)
        self.assertIn(("mx1.remote.test", 1), dns.queries)
        self.server.wait_log("relay=mx1.remote.test[127.0.0.1]:%d" % fake.port, timeout=10)

    def test_nxdomain_bounces(self):
        dns = FakeDNS({})
        dns.start()
        self.addCleanup(dns.stop)
        self.start("gone.test smtp:gone.test\n", conf="relay_domains = $mydestination, remote.test, gone.test\n"
                   "dns_servers = 127.0.0.1:%d" % dns.port)
        send(self.port, ["x@gone.test"], subject="to nowhere")
        bounce = self.server.wait_messages("carol", 1, timeout=30)[0].as_string().replace("\n ", " ")
        self.assertIn("Host or domain name not found. Name service error for name=gone.test type=MX", bounce)


if __name__ == "__main__":
    unittest.main()
