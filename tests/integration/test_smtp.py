"""SMTP server replies, one test per reply, with raw sockets, Python's
smtplib and swaks against the real daemon (modules mbox, alias, smtp):
banner, EHLO keywords, HELO/EHLO syntax, MAIL/RCPT/DATA/RSET/NOOP/QUIT/
VRFY/HELP, sequence errors, relay and unknown-user refusals, SIZE and
actual size limits, address syntax, ESMTP options, PIPELINING, BDAT,
SMTPUTF8, line length, recipient and header limits, error limits with
delays, idle timeout, the Received header and Postfix-shaped log lines."""
import os
import re
import smtplib
import socket
import subprocess
import time
import unittest

from harness import Server, free_port, wait_for

HOST = "mail.example.com.ar"
MODS = ("mbox", "alias", "smtp")


class Raw:
    """A line-level SMTP client over a plain socket (or a wrapped one)."""

    def __init__(self, port, host="127.0.0.1", timeout=15, sock=None):
        self.sock = sock or socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.f = self.sock.makefile("rb")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        """(code, [text lines]) of one possibly multi-line reply."""
        lines = []
        while True:
            raw = self.f.readline()
            if not raw:
                raise EOFError("connection closed; got %r" % lines)
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), lines

    def line(self):
        """The text of a single-line reply, e.g. '250 2.0.0 Ok'."""
        code, lines = self.reply()
        return lines[-1]

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def closed(self, timeout=5):
        """True when the server has closed the connection."""
        self.sock.settimeout(timeout)
        try:
            return self.f.read(1) == b""
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def session(port, helo="EHLO client.example.com.ar"):
    c = Raw(port)
    assert c.line().startswith("220 ")
    if helo:
        c.send(helo + "\r\n")
        c.reply()
    return c


def message(subject="test", body="hello\r\n", extra=""):
    return ("From: Carol <carol@example.com.ar>\r\nTo: alice@example.com.ar\r\n"
            "Subject: %s\r\n%s\r\n%s" % (subject, extra, body))


class SmtpReplies(unittest.TestCase):
    """One shared server with the reference configuration."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(modules=MODS, conf="message_size_limit = 5120000\n"
                            "relay_domains = relay.example\n")
        cls.server.start()
        cls.port = cls.server.ports["smtpd"]

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def conn(self, helo="EHLO client.example.com.ar"):
        c = session(self.port, helo)
        self.addCleanup(c.close)
        return c

    def test_banner(self):
        c = Raw(self.port)
        self.addCleanup(c.close)
        self.assertEqual(c.line(), "220 %s ESMTP Postern" % HOST)

    def test_submission_listener(self):
        c = Raw(self.server.ports["submission"])
        self.addCleanup(c.close)
        self.assertEqual(c.line(), "220 %s ESMTP Postern" % HOST)
        self.assertEqual(c.cmd("QUIT"), "221 2.0.0 Bye")
        self.server.wait_log("postern/submission/smtpd[")

    def test_ehlo_keywords(self):
        c = self.conn(helo=None)
        c.send("EHLO client.example.com.ar\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250)
        self.assertEqual([l[4:] for l in lines],
                         [HOST, "PIPELINING", "SIZE 5120000", "STARTTLS", "ENHANCEDSTATUSCODES",
                          "8BITMIME", "SMTPUTF8", "CHUNKING"])

    def test_helo(self):
        c = self.conn(helo=None)
        self.assertEqual(c.cmd("HELO client.example.com.ar"), "250 %s" % HOST)

    def test_helo_ehlo_without_argument(self):
        c = self.conn(helo=None)
        self.assertEqual(c.cmd("EHLO"), "501 Syntax: EHLO hostname")
        self.assertEqual(c.cmd("HELO"), "501 Syntax: HELO hostname")

    def test_mail_rcpt_data_replies_and_delivery(self):
        c = self.conn()
        self.assertEqual(c.cmd("MAIL FROM:<carol@example.com.ar>"), "250 2.1.0 Ok")
        self.assertEqual(c.cmd("RCPT TO:<bob@example.com.ar>"), "250 2.1.5 Ok")
        self.assertEqual(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>")
        c.send(message("replies", "..a line that started with a dot\r\nlast\r\n") + ".\r\n")
        r = c.line()
        m = re.match(r"^250 2\.0\.0 Ok: queued as ([0-9A-F]+)$", r)
        self.assertTrue(m, r)
        qid = m.group(1)
        self.assertEqual(c.cmd("QUIT"), "221 2.0.0 Bye")
        self.assertTrue(c.closed())
        msgs = self.server.wait_messages("bob", 1)
        msg = [x for x in msgs if x["Subject"] == "replies"][0]
        rec = msg.get_all("Received")[0]
        self.assertRegex(rec, r"^from client\.example\.com\.ar \(localhost \[127\.0\.0\.1\]\)\s+by %s "
                         r"\(Postern\) with ESMTP id %s\s+for <bob@example\.com\.ar>; " % (re.escape(HOST), qid))
        self.assertIn(".a line that started with a dot\n", msg.get_payload())
        self.assertNotIn("..a line", msg.get_payload())
        self.server.wait_log("%s: client=localhost[127.0.0.1]" % qid)
        self.server.wait_log("disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")
        self.assertIn("connect from localhost[127.0.0.1]", self.server.log())

    def test_smtplib_sendmail(self):
        with smtplib.SMTP("127.0.0.1", self.port, timeout=15) as s:
            s.ehlo("client.example.com.ar")
            self.assertTrue(s.has_extn("pipelining"))
            self.assertEqual(s.esmtp_features["size"], "5120000")
            refused = s.sendmail("carol@example.com.ar", ["alice@example.com.ar"],
                                 message("smtplib").encode())
            self.assertEqual(refused, {})
        msgs = self.server.wait_messages("alice", 1)
        self.assertTrue(any(m["Subject"] == "smtplib" for m in msgs))

    def test_swaks(self):
        out = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.port, "--from", "carol@example.com.ar",
                              "--to", "carol@example.com.ar", "--helo", "swaks.example", "--header",
                              "Subject: swaks"], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("<-  250 2.0.0 Ok: queued as", out.stdout)
        self.assertIn("<-  221 2.0.0 Bye", out.stdout)
        msgs = self.server.wait_messages("carol", 1)
        self.assertTrue(any(m["Subject"] == "swaks" for m in msgs))

    def test_swaks_pipelining(self):
        out = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.port, "--pipeline", "--from",
                              "carol@example.com.ar", "--to", "alice@example.com.ar,nosuchuser@example.com.ar",
                              "--header", "Subject: swaks pipelined"],
                             capture_output=True, text=True, timeout=60)
        self.assertIn("550 5.1.1 <nosuchuser@example.com.ar>: Recipient address rejected: "
                      "User unknown in local recipient table", out.stdout)
        self.assertIn("250 2.0.0 Ok: queued as", out.stdout)

    def test_rset_noop_quit(self):
        c = self.conn()
        self.assertEqual(c.cmd("MAIL FROM:<carol@example.com.ar>"), "250 2.1.0 Ok")
        self.assertEqual(c.cmd("RSET"), "250 2.0.0 Ok")
        # RSET forgot the transaction.
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "503 5.5.1 Error: need MAIL command")
        self.assertEqual(c.cmd("NOOP"), "250 2.0.0 Ok")
        self.assertEqual(c.cmd("RSET x"), "501 5.5.4 Syntax: RSET")
        self.assertEqual(c.cmd("QUIT"), "221 2.0.0 Bye")
        self.assertTrue(c.closed())

    def test_vrfy_never_confirms(self):
        c = self.conn()
        self.assertEqual(c.cmd("VRFY alice"), "252 2.0.0 alice")
        self.assertEqual(c.cmd("VRFY nosuchuser"), "252 2.0.0 nosuchuser")
        self.assertEqual(c.cmd("VRFY"), "501 5.5.4 Syntax: VRFY address")

    def test_help(self):
        c = self.conn()
        r = c.cmd("HELP")
        self.assertTrue(r.startswith("214 2.0.0 "), r)
        for verb in ("EHLO", "MAIL", "RCPT", "DATA", "BDAT", "STARTTLS"):
            self.assertIn(verb, r)
        self.assertNotIn("AUTH", r)  # not offered before TLS (smtpd_tls_auth_only)

    def test_unknown_command(self):
        c = self.conn()
        self.assertEqual(c.cmd("FOO bar"), "500 5.5.2 Error: command not recognized")
        self.assertEqual(c.cmd("ETRN example.com.ar"), "500 5.5.2 Error: command not recognized")
        self.assertEqual(c.cmd("AUTH PLAIN"), "504 5.5.4 Encryption required for requested authentication mechanism")

    def test_need_mail(self):
        c = self.conn()
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "503 5.5.1 Error: need MAIL command")

    def test_need_rcpt(self):
        c = self.conn()
        self.assertEqual(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command")

    def test_nested_mail(self):
        c = self.conn()
        self.assertEqual(c.cmd("MAIL FROM:<carol@example.com.ar>"), "250 2.1.0 Ok")
        self.assertEqual(c.cmd("MAIL FROM:<carol@example.com.ar>"), "503 5.5.1 Error: nested MAIL command")

    def test_no_valid_recipients(self):
        c = self.conn()
        c.cmd("MAIL FROM:<carol@example.com.ar>")
        self.assertTrue(c.cmd("RCPT TO:<nosuchuser@example.com.ar>").startswith("550 "))
        self.assertEqual(c.cmd("DATA"), "554 5.5.1 Error: no valid recipients")

    def test_unknown_local_user(self):
        c = self.conn()
        c.cmd("MAIL FROM:<alice@example.com.ar>")
        self.assertEqual(c.cmd("RCPT TO:<nosuchuser@example.com.ar>"),
                         "550 5.1.1 <nosuchuser@example.com.ar>: Recipient address rejected: "
                         "User unknown in local recipient table")
        self.assertEqual(c.cmd("RCPT TO:<nosuchuser>"),
                         "550 5.1.1 <nosuchuser>: Recipient address rejected: "
                         "User unknown in local recipient table")
        self.server.wait_log("NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 "
                             "<nosuchuser@example.com.ar>: Recipient address rejected: User unknown in "
                             "local recipient table; from=<alice@example.com.ar> "
                             "to=<nosuchuser@example.com.ar> proto=ESMTP helo=<client.example.com.ar>")

    def test_relay_access_denied(self):
        c = self.conn()
        c.cmd("MAIL FROM:<someone@example.com.ar>")
        self.assertEqual(c.cmd("RCPT TO:<victim@other.test>"), "554 5.7.1 <victim@other.test>: Relay access denied")
        self.assertEqual(c.cmd("RCPT TO:<victim@[192.0.2.1]>"), "554 5.7.1 <victim@[192.0.2.1]>: Relay access denied")
        self.assertEqual(c.cmd("RCPT TO:<@example.com.ar:victim@other.test>"),
                         "554 5.7.1 <victim@other.test>: Relay access denied")
        # relay_domains (and their subdomains) are accepted without a user check.
        self.assertEqual(c.cmd("RCPT TO:<anyone@relay.example>"), "250 2.1.5 Ok")
        self.assertEqual(c.cmd("RCPT TO:<anyone@sub.relay.example>"), "250 2.1.5 Ok")

    def test_local_recipient_forms(self):
        c = self.conn()
        c.cmd("MAIL FROM:<>")
        for rcpt in ("alice@localhost", "alice", "Alice@EXAMPLE.COM.AR", "alice@mail.example.com.ar",
                     "postmaster", "Postmaster@example.com.ar", "\"alice\"@example.com.ar"):
            self.assertEqual(c.cmd("RCPT TO:<%s>" % rcpt), "250 2.1.5 Ok", rcpt)

    def test_alias_recipient(self):
        c = self.conn()
        c.cmd("MAIL FROM:<carol@example.com.ar>")
        self.assertEqual(c.cmd("RCPT TO:<sysadmin@example.com.ar>"), "250 2.1.5 Ok")

    def test_size_parameter(self):
        c = self.conn()
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com.ar> SIZE=5120001"),
                         "552 5.3.4 Message size exceeds fixed limit")
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com.ar> SIZE=5120000"), "250 2.1.0 Ok")
        self.server.wait_log("NOQUEUE: reject: MAIL from localhost[127.0.0.1]: 552 5.3.4 Message size exceeds "
                             "fixed limit; from=<alice@example.com.ar> proto=ESMTP helo=<client.example.com.ar>")
        c.cmd("RSET")
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com.ar> SIZE=12x"), "501 5.5.4 Bad message size syntax")

    def test_message_too_big(self):
        c = self.conn()
        c.cmd("MAIL FROM:<alice@example.com.ar>")
        c.cmd("RCPT TO:<carol@example.com.ar>")
        self.assertEqual(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>")
        line = "x" * 998 + "\r\n"
        c.send(message("too big", line * 5300) + ".\r\n")
        self.assertEqual(c.line(), "552 5.3.4 Error: message file too big")
        self.assertEqual(c.cmd("NOOP"), "250 2.0.0 Ok")
        self.assertEqual(c.cmd("QUIT"), "221 2.0.0 Bye")
        self.server.wait_log("queue file size limit exceeded")
        time.sleep(0.5)
        self.assertFalse(any(m["Subject"] == "too big" for m in self.server.messages("carol")))

    def test_bad_address_syntax(self):
        c = self.conn()
        self.assertEqual(c.cmd("MAIL FROM:<a@@example.com>"), "501 5.1.7 Bad sender address syntax")
        self.assertEqual(c.cmd("MAIL FROM:<unterminated@example.com"), "501 5.1.7 Bad sender address syntax")
        self.assertEqual(c.cmd("MAIL alice@example.com"), "501 5.5.4 Syntax: MAIL FROM:<address>")
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com.ar>"), "250 2.1.0 Ok")
        self.assertEqual(c.cmd("RCPT TO:<al ice@example.com.ar>"), "501 5.1.3 Bad recipient address syntax")
        self.assertEqual(c.cmd("RCPT TO:<>"), "501 5.1.3 Bad recipient address syntax")
        self.assertEqual(c.cmd("RCPT alice"), "501 5.5.4 Syntax: RCPT TO:<address>")
        # Postfix tolerates a space after the colon.
        self.assertEqual(c.cmd("RCPT TO: <alice@example.com.ar>"), "250 2.1.5 Ok")

    def test_unsupported_options(self):
        c = self.conn()
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com.ar> FOO=BAR"), "555 5.5.4 Unsupported option: FOO=BAR")
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com.ar> BODY=BINARYMIME"),
                         "555 5.5.4 Unsupported option: BODY=BINARYMIME")
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com.ar> RET=HDRS"), "555 5.5.4 Unsupported option: RET=HDRS")
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com.ar> BODY=8BITMIME"), "250 2.1.0 Ok")
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar> NOTIFY=NEVER"),
                         "555 5.5.4 Unsupported option: NOTIFY=NEVER")

    def test_smtputf8(self):
        c = self.conn()
        self.assertEqual(c.cmd("MAIL FROM:<j\u00f6rg@example.com.ar>"),
                         "553 5.6.7 Must declare SMTPUTF8 to send unicode address")
        self.assertEqual(c.cmd("MAIL FROM:<j\u00f6rg@example.com.ar> SMTPUTF8 BODY=8BITMIME"), "250 2.1.0 Ok")
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "250 2.1.5 Ok")
        self.assertEqual(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>")
        c.send(message("utf8 \u00fc", "gr\u00fc\u00dfe\r\n") + ".\r\n")
        self.assertTrue(c.line().startswith("250 2.0.0 Ok: queued as "))
        c.cmd("QUIT")
        p = self.server.mbox_path("alice")

        def content():
            if not os.path.exists(p):
                return b""
            with open(p, "rb") as f:
                return f.read()
        wait_for(lambda: "gr\u00fc\u00dfe".encode() in content(), what="utf-8 message")
        self.assertIn(b"with UTF8SMTP id", content())

    def test_line_too_long(self):
        c = self.conn()
        self.assertEqual(c.cmd("NOOP " + "x" * 3000), "500 5.5.0 Error: line too long")
        self.assertEqual(c.cmd("NOOP"), "250 2.0.0 Ok")

    def test_pipelining(self):
        c = self.conn(helo=None)
        c.send("EHLO client.example.com.ar\r\nMAIL FROM:<carol@example.com.ar>\r\n"
               "RCPT TO:<nosuchuser@example.com.ar>\r\nRCPT TO:<alice@example.com.ar>\r\nDATA\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.line(), "250 2.1.0 Ok")
        self.assertTrue(c.line().startswith("550 5.1.1 "))
        self.assertEqual(c.line(), "250 2.1.5 Ok")
        self.assertEqual(c.line(), "354 End data with <CR><LF>.<CR><LF>")
        c.send(message("pipelined") + ".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        self.assertTrue(c.line().startswith("250 2.0.0 Ok: queued as "))
        self.assertEqual(c.line(), "250 2.0.0 Ok")
        self.assertEqual(c.line(), "250 2.0.0 Ok")
        self.assertEqual(c.line(), "221 2.0.0 Bye")
        msgs = self.server.wait_messages("alice", 1)
        wait_for(lambda: any(m["Subject"] == "pipelined" for m in self.server.messages("alice")),
                 what="pipelined message")

    def test_bdat(self):
        c = self.conn()
        c.cmd("MAIL FROM:<carol@example.com.ar>")
        c.cmd("RCPT TO:<bob@example.com.ar>")
        part1 = b"Subject: chunked\r\nFrom: carol@example.com.ar\r"
        part2 = b"\n\r\nline one\r\n.line two starts with a dot\r\n"
        c.send(b"BDAT %d\r\n" % len(part1) + part1)
        self.assertEqual(c.line(), "250 2.0.0 Ok: %d bytes" % len(part1))
        c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
        self.assertTrue(c.line().startswith("250 2.0.0 Ok: queued as "))
        c.cmd("QUIT")
        wait_for(lambda: any(m["Subject"] == "chunked" for m in self.server.messages("bob")), what="BDAT message")
        m = [m for m in self.server.messages("bob") if m["Subject"] == "chunked"][0]
        # No dot-unstuffing in BDAT; CRLF stored as LF.
        self.assertEqual(m.get_payload(), "line one\n.line two starts with a dot\n")

    def test_bdat_errors(self):
        c = self.conn()
        # A refused chunk is still read in full: the session stays in sync.
        c.send("BDAT 5 LAST\r\nNOOP\n")
        self.assertEqual(c.line(), "503 5.5.1 Error: need RCPT command")
        self.assertEqual(c.cmd("NOOP"), "250 2.0.0 Ok")
        c.cmd("MAIL FROM:<carol@example.com.ar>")
        c.cmd("RCPT TO:<bob@example.com.ar>")
        c.send("BDAT 3\r\nabc")
        self.assertEqual(c.line(), "250 2.0.0 Ok: 3 bytes")
        self.assertEqual(c.cmd("DATA"), "503 5.5.1 Error: DATA after BDAT")
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "503 5.5.1 Error: RCPT after BDAT")
        self.assertEqual(c.cmd("RSET"), "250 2.0.0 Ok")
        self.assertEqual(c.cmd("BDAT x"), "501 5.5.4 Syntax: BDAT count [LAST]")
        self.assertTrue(c.closed())

    def test_bdat_too_big(self):
        c = self.conn()
        c.cmd("MAIL FROM:<carol@example.com.ar>")
        c.cmd("RCPT TO:<bob@example.com.ar>")
        chunk = b"Subject: bdat big\r\n\r\n" + b"y" * 5200000
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        self.assertEqual(c.line(), "552 5.3.4 Error: message file too big")
        self.assertEqual(c.cmd("NOOP"), "250 2.0.0 Ok")

    def test_starttls_advertised_and_refused_twice(self):
        import ssl
        c = self.conn()
        self.assertEqual(c.cmd("STARTTLS"), "220 2.0.0 Ready to start TLS")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        t = Raw(0, sock=ctx.wrap_socket(c.sock, server_hostname=HOST))
        self.addCleanup(t.close)
        t.send("EHLO client.example.com.ar\r\n")
        code, lines = t.reply()
        self.assertEqual(code, 250)
        self.assertNotIn("250-STARTTLS", lines)
        self.assertEqual(t.cmd("STARTTLS"), "554 5.5.1 Error: TLS already active")


class SmtpLimits(unittest.TestCase):
    """Limits: smtpd_helo_required, recipients, header size, errors, timeout."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(modules=MODS, conf="smtpd_helo_required = yes\nsmtpd_recipient_limit = 2\n"
                            "header_size_limit = 2048\nsmtpd_hard_error_limit = 5\n"
                            "smtpd_soft_error_limit = 2\nsmtpd_error_sleep_time = 1s\nsmtpd_timeout = 2s\n")
        cls.server.start()
        cls.port = cls.server.ports["smtpd"]

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def conn(self, helo="EHLO client.example.com.ar"):
        c = session(self.port, helo)
        self.addCleanup(c.close)
        return c

    def test_helo_required(self):
        c = self.conn(helo=None)
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com.ar>"), "503 5.5.1 Error: send HELO/EHLO first")
        self.assertEqual(c.cmd("HELO client.example.com.ar"), "250 %s" % HOST)
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com.ar>"), "250 2.1.0 Ok")

    def test_too_many_recipients(self):
        c = self.conn()
        c.cmd("MAIL FROM:<carol@example.com.ar>")
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "250 2.1.5 Ok")
        self.assertEqual(c.cmd("RCPT TO:<bob@example.com.ar>"), "250 2.1.5 Ok")
        self.assertEqual(c.cmd("RCPT TO:<carol@example.com.ar>"), "452 4.5.3 Error: too many recipients")

    def test_header_size_limit(self):
        c = self.conn()
        c.cmd("MAIL FROM:<carol@example.com.ar>")
        c.cmd("RCPT TO:<carol@example.com.ar>")
        c.cmd("DATA")
        headers = "".join("X-Filler-%d: %s\r\n" % (i, "z" * 60) for i in range(60))
        c.send(message("big header", "body\r\n", extra=headers) + ".\r\n")
        self.assertEqual(c.line(), "552 5.3.4 Error: message header size exceeds limit")
        self.assertEqual(c.cmd("NOOP"), "250 2.0.0 Ok")
        time.sleep(0.3)
        self.assertFalse(any(m["Subject"] == "big header" for m in self.server.messages("carol")))

    def test_error_limits(self):
        c = self.conn()
        times = []
        for i in range(5):
            t0 = time.time()
            self.assertEqual(c.cmd("BOGUS%d" % i), "500 5.5.2 Error: command not recognized")
            times.append(time.time() - t0)
        # Errors beyond smtpd_soft_error_limit (2) wait smtpd_error_sleep_time.
        self.assertLess(max(times[:2]), 0.5, times)
        self.assertGreaterEqual(min(times[2:]), 0.9, times)
        self.assertEqual(c.line(), "421 4.7.0 %s Error: too many errors" % HOST)
        self.assertTrue(c.closed())

    def test_error_sleep_does_not_block_others(self):
        c = self.conn()
        for i in range(3):
            c.send("BOGUS\r\n")
        # While c's replies sleep, another client is served at once.
        time.sleep(0.2)
        t0 = time.time()
        d = self.conn()
        self.assertEqual(d.cmd("NOOP"), "250 2.0.0 Ok")
        self.assertLess(time.time() - t0, 0.5)

    def test_idle_timeout(self):
        c = self.conn()
        t0 = time.time()
        self.assertEqual(c.line(), "421 4.4.2 %s Error: timeout exceeded" % HOST)
        self.assertGreaterEqual(time.time() - t0, 1.5)
        self.assertTrue(c.closed())
        self.server.wait_log("timeout after ")


class SmtpMessageBufferLimit(unittest.TestCase):
    """smtpd_message_buffer_limit: what all sessions hold for messages being
    received together; beyond it DATA gets 451 and the room comes back."""

    def setUp(self):
        self.server = Server(modules=MODS, conf="smtpd_message_buffer_limit = 64k\n")
        self.addCleanup(self.server.cleanup)
        self.server.start()
        self.port = self.server.ports["smtpd"]

    def test_over_budget_is_temporary_and_released(self):
        c = session(self.port, "EHLO client.example.com.ar")
        self.addCleanup(c.close)
        c.cmd("MAIL FROM:<alice@example.com.ar>")
        c.cmd("RCPT TO:<carol@example.com.ar>")
        self.assertEqual(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>")
        c.send(message("large", ("y" * 78 + "\r\n") * 1500) + ".\r\n")  # ~120 KB
        self.assertEqual(c.line(), "451 4.3.0 Error: insufficient system resources")
        # The session goes on, and so does everyone else's mail.
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.com.ar>"), "250 2.1.0 Ok")
        c.cmd("RCPT TO:<carol@example.com.ar>")
        self.assertEqual(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>")
        c.send(message("small", "fits\r\n") + ".\r\n")
        self.assertTrue(c.line().startswith("250 2.0.0 Ok: queued as "))
        subjects = [m["Subject"] for m in self.server.wait_messages("carol", 1)]
        self.assertEqual(subjects, ["small"])


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6) as t:
            t.bind(("::1", 0))
        return True
    except OSError:
        return False


@unittest.skipUnless(have_ipv6(), "no IPv6 loopback on this machine")
class SmtpIPv6(unittest.TestCase):
    def test_v6_listener_delivers_and_logs_the_v6_client(self):
        server = Server(modules=MODS)
        self.addCleanup(server.cleanup)
        p6 = free_port("::1")
        server.write_conf("smtpd_listen = 127.0.0.1:%d, [::1]:%d\n" % (server.ports["smtpd"], p6))
        server.start()
        with smtplib.SMTP("::1", p6, timeout=30) as c:
            self.assertEqual(c.ehlo("client.example.com.ar")[0], 250)
            c.sendmail("carol@example.com.ar", ["alice@example.com.ar"], b"Subject: over v6\r\n\r\nhi\r\n")
        self.assertEqual(server.wait_messages("alice", 1)[0]["Subject"], "over v6")
        self.assertIn("[::1]", server.log())


class SmtpVrfyDisabled(unittest.TestCase):
    def test_vrfy_disabled(self):
        server = Server(modules=MODS, conf="disable_vrfy_command = yes\nsmtpd_tls_security_level = none\n")
        self.addCleanup(server.cleanup)
        server.start()
        c = session(server.ports["smtpd"], helo=None)
        self.addCleanup(c.close)
        c.send("EHLO client.example.com.ar\r\n")
        code, lines = c.reply()
        self.assertNotIn("250-STARTTLS", lines)
        self.assertEqual(c.cmd("STARTTLS"), "502 5.5.1 Error: command not implemented")
        self.assertEqual(c.cmd("VRFY alice"), "502 5.5.1 VRFY command is disabled")


class SmtpIdleMemory(unittest.TestCase):
    """200 idle SMTP connections after EHLO cost the server little memory:
    at most 1/20 of Postfix's 1.25 MiB PSS per connection (reference)."""

    def pss_kib(self, server):
        total = 0
        for pid in [server.pid] + server.children():
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        return total

    def test_idle_connection_memory(self):
        server = Server(modules=MODS, conf="client_connection_limit = 1000\n")
        self.addCleanup(server.cleanup)
        server.start()
        port = server.ports["smtpd"]
        warm = [session(port) for _ in range(20)]
        for c in warm:
            c.close()
        time.sleep(0.3)
        before = self.pss_kib(server)
        conns = [session(port) for _ in range(200)]
        self.addCleanup(lambda: [c.close() for c in conns])
        for c in conns[:5]:
            self.assertEqual(c.cmd("NOOP"), "250 2.0.0 Ok")
        time.sleep(0.3)
        per_conn = (self.pss_kib(server) - before) * 1024 / 200
        print("\nidle SMTP connection: %.0f bytes PSS each" % per_conn)
        self.assertLess(per_conn, 1.25 * 1024 * 1024 / 20)


if __name__ == "__main__":
    unittest.main()
