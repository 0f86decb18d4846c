"""COMPRESS=DEFLATE (RFC 4978) through a raw socket wrapper with Python's
zlib (imaplib has no COMPRESS): raw deflate both ways, the server's OK
uncompressed and everything after it compressed, commands pipelined right
behind COMPRESS, a large FETCH, IDLE, TLS outside the compressed stream
(imaps and STARTTLS), a second COMPRESS, unknown mechanisms, and a
client's decompression bomb that meets the line limit and ends the
session cleanly."""
import socket
import ssl
import time
import unittest
import zlib

from imap_util import POST_CAPS, Raw, deliver, imap_server, login


class ZSock:
    """A socket that deflates what is sent (Z_SYNC_FLUSH per send) and
    inflates what arrives; counts the bytes on the wire."""

    def __init__(self, sock):
        self.sock = sock
        self.co = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.do = zlib.decompressobj(-15)
        self.wire_in = 0

    def sendall(self, data):
        self.sock.sendall(self.co.compress(data) + self.co.flush(zlib.Z_SYNC_FLUSH))

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self, n):
        while True:
            raw = self.sock.recv(n)
            if not raw:
                return b""
            self.wire_in += len(raw)
            out = self.do.decompress(raw)
            if out:
                return out

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        self.sock.close()


def compress_on(r, tag="z"):
    out = r.cmd(tag, "COMPRESS DEFLATE")
    assert out == ["%s OK Begin compression." % tag], out
    r.sock = ZSock(r.sock)
    # what came behind the OK in the same read is already compressed
    r.buf = r.sock.do.decompress(r.buf)
    return r


def message(size):
    body = "".join("line %06d of a long and rather repetitive message body\r\n" % i for i in range(size // 60))
    return ("From: a@example.com\r\nSubject: big\r\n\r\n" + body).encode()


class Compress(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self, conf="imap_max_line_length = 65536\n")

    def session(self):
        r = login(self.server)
        self.addCleanup(r.close)
        return r

    def test_capability_after_login_only(self):
        r = Raw(self.server.ports["imap"])
        self.addCleanup(r.close)
        self.assertNotIn("COMPRESS=DEFLATE", r.line())
        out = r.cmd("p", "COMPRESS DEFLATE")
        self.assertFalse(out[-1].startswith("p OK"), out)
        out = r.cmd("L", "LOGIN alice secret")
        self.assertTrue(out[-1].startswith("L OK"), out)
        caps = r.cmd("c", "CAPABILITY")[0].split()[2:]
        self.assertEqual(" ".join(caps), POST_CAPS)
        self.assertIn("COMPRESS=DEFLATE", caps)

    def test_commands_and_large_fetch(self):
        r = compress_on(self.session())
        self.assertEqual(r.cmd("n", "NOOP")[-1][:4], "n OK")
        self.assertEqual(r.cmd("c", "CAPABILITY")[0], "* CAPABILITY " + POST_CAPS)
        data = message(3 * 1024 * 1024)
        r.send(b"a APPEND INBOX {%d}\r\n" % len(data))
        self.assertTrue(r.line().startswith("+"))
        r.send(data + b"\r\n")
        out = r.until_tag("a")
        self.assertTrue(out[-1].startswith("a OK"), out)
        self.assertTrue(r.cmd("s", "SELECT INBOX")[-1].startswith("s OK"))
        before = r.sock.wire_in
        r.send("f FETCH 1 (RFC822.SIZE BODY.PEEK[])\r\n")
        head = r.line()
        self.assertTrue(head.startswith("* 1 FETCH (RFC822.SIZE %d BODY[] {%d}" % (len(data), len(data))), head)
        self.assertEqual(r.read_bytes(len(data)), data)
        self.assertEqual(r.line(), ")")
        self.assertTrue(r.line().startswith("f OK"))
        # it was compressed on the wire: repetitive text shrinks a lot
        self.assertLess(r.sock.wire_in - before, len(data) // 4)
        self.assertTrue(r.cmd("o", "LOGOUT")[-1].startswith("o OK"))

    def test_pipelined_behind_compress(self):
        r = self.session()
        # the client compresses from the byte after COMPRESS's CRLF; what
        # the server already buffered must be inflated, not read as text
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
        tail = co.compress(b"n1 NOOP\r\nn2 LIST \"\" INBOX\r\n") + co.flush(zlib.Z_SYNC_FLUSH)
        r.send(b"z COMPRESS DEFLATE\r\n" + tail)
        self.assertEqual(r.line(), "z OK Begin compression.")
        z = ZSock(r.sock)
        z.co = co
        r.sock = z
        r.buf = z.do.decompress(r.buf)
        self.assertTrue(r.until_tag("n1")[-1].startswith("n1 OK"))
        out = r.until_tag("n2")
        self.assertIn('* LIST (\\HasNoChildren) "/" INBOX', out)

    def test_second_compress_and_bad_mechanisms(self):
        r = self.session()
        self.assertTrue(r.cmd("b1", "COMPRESS LZ4")[-1].startswith("b1 BAD"))
        self.assertTrue(r.cmd("b2", "COMPRESS")[-1].startswith("b2 BAD"))
        self.assertTrue(r.cmd("b3", "COMPRESS DEFLATE X")[-1].startswith("b3 BAD"))
        compress_on(r)
        out = r.cmd("z2", "COMPRESS DEFLATE")
        self.assertEqual(out, ["z2 NO [COMPRESSIONACTIVE] Compression already active."])
        self.assertTrue(r.cmd("b4", "COMPRESS FOO")[-1].startswith("b4 BAD"))
        self.assertTrue(r.cmd("n", "NOOP")[-1].startswith("n OK"))

    def test_idle(self):
        r = compress_on(self.session())
        self.assertTrue(r.cmd("s", "SELECT INBOX")[-1].startswith("s OK"))
        r.send("i IDLE\r\n")
        self.assertTrue(r.line().startswith("+ "))
        deliver(self.server, "alice@example.com.ar", subject="while idling")
        r.sock.settimeout(15)
        seen = []
        while True:
            l = r.line()
            seen.append(l)
            if l == "* 1 EXISTS":
                break
        r.send("DONE\r\n")
        self.assertTrue(r.until_tag("i")[-1].startswith("i OK"), seen)
        out = r.cmd("f", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertIn("Subject: while idling", "\n".join(out))

    def test_literal_limit_counts_inflated(self):
        r = compress_on(self.session())
        out = r.cmd("a", "APPEND INBOX {999999999999}")
        self.assertTrue(out[-1].startswith("a NO [TOOBIG]"), out)
        self.assertTrue(r.cmd("n", "NOOP")[-1].startswith("n OK"))

    def bomb(self, r, mib):
        """mib MiB of one byte and no line end, about 1 KiB each on the wire."""
        co = r.sock.co
        chunk = b"a" * (1 << 20)
        wire = co.compress(b"x NOOP ") + b"".join(co.compress(chunk) for _ in range(mib))
        wire += co.flush(zlib.Z_SYNC_FLUSH)
        self.assertLess(len(wire), mib * 2048)
        try:
            r.sock.send_raw(wire)
        except OSError:
            pass  # the server may already have said BYE and closed
        lines = []
        try:
            while True:
                lines.append(r.line())
        except (EOFError, OSError):
            pass  # closed, or reset over the input it did not read
        return lines

    def test_bomb(self):
        # the inflated line meets imap_max_line_length (64 KiB here): BYE
        r = compress_on(self.session())
        lines = self.bomb(r, 2)
        self.assertEqual(lines, ["* BAD Error in IMAP command received by server: Too long argument.",
                                 "* BYE Too long argument."])
        # 64 MiB (64 KiB on the wire): the session ends the same way, the
        # server reads no further than the limit, and lives on
        r = compress_on(self.session())
        self.bomb(r, 64)
        self.server.wait_log("Too long argument")
        r2 = compress_on(self.session())
        self.assertTrue(r2.cmd("n", "NOOP")[-1].startswith("n OK"))

    def test_garbage_stream_closes(self):
        r = compress_on(self.session())
        r.sock.send_raw(b"\xff\xff\xff\xff not deflate at all\r\n")
        self.assertTrue(r.closed(timeout=10))
        r2 = self.session()
        self.assertTrue(r2.cmd("n", "NOOP")[-1].startswith("n OK"))


class CompressTLS(unittest.TestCase):
    """On the wire TLS carries the compressed stream (RFC 4978 §4)."""

    def setUp(self):
        self.server = imap_server(self)

    def check(self, r):
        self.assertTrue(r.cmd("L", "LOGIN alice secret")[-1].startswith("L OK"))
        compress_on(r)
        data = message(200 * 1024)
        r.send(b"a APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
        self.assertTrue(r.until_tag("a")[-1].startswith("a OK"))
        self.assertTrue(r.cmd("s", "SELECT INBOX")[-1].startswith("s OK"))
        r.send("f FETCH 1 BODY.PEEK[]\r\n")
        self.assertTrue(r.line().startswith("* 1 FETCH (BODY[] {%d}" % len(data)))
        self.assertEqual(r.read_bytes(len(data)), data)
        self.assertEqual(r.line(), ")")
        self.assertTrue(r.line().startswith("f OK"))
        self.assertTrue(r.cmd("o", "LOGOUT")[-1].startswith("o OK"))

    def test_imaps(self):
        r = Raw(self.server.ports["imaps"], tls=True)
        self.addCleanup(r.close)
        r.line()
        self.check(r)

    def test_starttls(self):
        r = Raw(self.server.ports["imap"])
        self.addCleanup(r.close)
        r.line()
        self.assertTrue(r.cmd("t", "STARTTLS")[-1].startswith("t OK"))
        r.wrap()
        self.check(r)


if __name__ == "__main__":
    unittest.main()
