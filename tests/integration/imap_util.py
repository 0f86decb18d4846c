"""Helpers shared by the IMAP integration tests: a server with mbox, smtp
and imap, a raw line client that shows the server's bytes as they come,
delivery through SMTP."""
import smtplib
import socket
import ssl
import time

from harness import Server

POST_CAPS = ("IMAP4rev1 IMAP4rev2 SASL-IR ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=ORDEREDSUBJECT "
             "LITERAL+ NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN MULTIAPPEND CATENATE BINARY "
             "ESEARCH ESORT SEARCHRES STATUS=SIZE LIST-EXTENDED LIST-STATUS SPECIAL-USE CREATE-SPECIAL-USE QUOTA QUOTA=RES-STORAGE COMPRESS=DEFLATE CONDSTORE QRESYNC I18NLEVEL=1")


def imap_server(test, conf="", listeners=("smtpd", "imap", "imaps"), start=True, **kw):
    s = Server(modules=("mbox", "smtp", "imap"), listeners=listeners, **kw)
    s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n%s\n" % (s.passwd_file, conf))
    test.addCleanup(s.cleanup)
    if start:
        s.start()
    return s


def deliver(server, rcpt, subject="hello", body="body line\r\n", n_expected=None):
    with smtplib.SMTP("127.0.0.1", server.ports["smtpd"], timeout=20) as c:
        c.sendmail("sender@example.com", [rcpt],
                   "From: sender@example.com\r\nSubject: %s\r\n\r\n%s" % (subject, body))
    user = rcpt.split("@")[0]
    if n_expected:
        server.wait_messages(user, n_expected)


class Raw:
    """Line-oriented IMAP client that returns the server's lines verbatim."""

    def __init__(self, port, host="127.0.0.1", tls=False, source=None, timeout=15):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        if tls:
            self.wrap()
        self.buf = b""

    def wrap(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed; buffered %r" % self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode(errors="replace")

    def read_bytes(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def until_tag(self, tag):
        """Lines up to and including the tagged reply."""
        out = []
        while True:
            l = self.line()
            out.append(l)
            if l.startswith(tag + " "):
                return out

    def cmd(self, tag, text):
        self.send("%s %s\r\n" % (tag, text))
        return self.until_tag(tag)

    def closed(self, timeout=5):
        """True when the server closes the connection (after what is buffered)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, ssl.SSLError):
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def strip_timing(line):
    """'a OK Select completed (0.001 + 0.000 secs).' -> 'a OK Select completed.'"""
    i = line.find(" (")
    if i >= 0 and line.endswith(" secs)."):
        return line[:i] + "."
    return line


def login(server, user="alice", password="secret"):
    r = Raw(server.ports["imap"])
    r.line()
    out = r.cmd("L1", "LOGIN %s %s" % (user, password))
    assert out[-1].startswith("L1 OK"), out
    return r


def wait(pred, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False
