"""BINARY (RFC 3516, issue 15): FETCH BINARY[part]<partial>, BINARY.PEEK,
BINARY.SIZE with base64 and quoted-printable undone, literal8 (~{n}) for
decoded data holding NUL, [UNKNOWN-CTE] for an encoding not known, APPEND
with a literal8 (binary content with NULs); BODY/BODYSTRUCTURE unchanged."""
import base64
import re
import unittest

from imap_util import POST_CAPS, Raw, imap_server, login, strip_timing

PAYLOAD = bytes(range(256)) * 3          # NULs and every other octet
QP_TEXT = "caf\u00e9 na\u00efve = equal, long line"

MIME = ("From: a@example.com\r\nTo: b@example.com\r\nSubject: binary\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
        "preamble\r\n--XX\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        "caf=C3=A9 na=C3=AFve =3D equal,=\r\n long line\r\n"
        "--XX\r\n"
        "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + "\r\n".join(re.findall(".{1,76}", base64.b64encode(PAYLOAD).decode())) + "\r\n"
        "--XX\r\n"
        "Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
        "begin 644 x\r\nend\r\n"
        "--XX\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "plain 7bit\r\n"
        "--XX--\r\n")


class Binary(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self)
        self.r = login(self.server)
        self.addCleanup(self.r.close)
        data = MIME.encode()
        self.r.send("a APPEND INBOX {%d}\r\n" % len(data))
        self.assertTrue(self.r.line().startswith("+"))
        self.r.send(data + b"\r\n")
        out = self.r.until_tag("a")
        self.assertTrue(out[-1].startswith("a OK"), out)
        self.r.cmd("s", "SELECT INBOX")

    def fetch_literal(self, tag, cmd):
        """Send cmd; returns (head line, literal bytes, rest lines)."""
        self.r.send("%s %s\r\n" % (tag, cmd))
        head = self.r.line()
        m = re.search(r"(~?)\{(\d+)\}$", head)
        self.assertIsNotNone(m, head)
        data = self.r.read_bytes(int(m.group(2)))
        rest = self.r.until_tag(tag)
        return head, data, rest

    def test_capability(self):
        out = self.r.cmd("c", "CAPABILITY")
        self.assertEqual(out[0], "* CAPABILITY " + POST_CAPS)
        self.assertIn(" BINARY ", " %s " % out[0])

    def test_base64_part_literal8(self):
        head, data, rest = self.fetch_literal("f", "FETCH 1 (BINARY.PEEK[2])")
        self.assertEqual(head, "* 1 FETCH (BINARY[2] ~{%d}" % len(PAYLOAD))
        self.assertEqual(data, PAYLOAD)
        self.assertEqual(rest[0], ")")
        self.assertTrue(rest[-1].startswith("f OK"), rest)

    def test_qp_part_plain_literal(self):
        head, data, rest = self.fetch_literal("f", "FETCH 1 (BINARY.PEEK[1])")
        want = QP_TEXT.encode()
        self.assertEqual(head, "* 1 FETCH (BINARY[1] {%d}" % len(want))
        self.assertEqual(data, want)

    def test_partial(self):
        head, data, rest = self.fetch_literal("f", "FETCH 1 (BINARY.PEEK[2]<10.20>)")
        self.assertEqual(head, "* 1 FETCH (BINARY[2]<10> {20}")
        self.assertEqual(data, PAYLOAD[10:30])

    def test_size(self):
        out = self.r.cmd("z", "FETCH 1 (BINARY.SIZE[2] BINARY.SIZE[1] BINARY.SIZE[4])")
        self.assertEqual(out[0], "* 1 FETCH (BINARY.SIZE[2] %d BINARY.SIZE[1] %d BINARY.SIZE[4] 10)"
                         % (len(PAYLOAD), len(QP_TEXT.encode())))
        self.assertTrue(out[-1].startswith("z OK"), out)

    def test_unknown_cte(self):
        out = self.r.cmd("u", "FETCH 1 (BINARY.PEEK[3])")
        self.assertEqual(strip_timing(out[-1]), "u NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding.")
        out = self.r.cmd("v", "FETCH 1 (BINARY.SIZE[3])")
        self.assertTrue(out[-1].startswith("v NO [UNKNOWN-CTE]"), out)
        # BODY of the same part is served as it is.
        out = self.r.cmd("w", "FETCH 1 (BODY.PEEK[3])")
        self.assertTrue(out[-1].startswith("w OK"), out)

    def test_bad_sections(self):
        for t, sec in (("b1", "BINARY[HEADER]"), ("b2", "BINARY[1.MIME]"), ("b3", "BINARY.SIZE[1]<0.5>"),
                       ("b4", "BINARY[1"), ("b5", "BINARY[TEXT]")):
            out = self.r.cmd(t, "FETCH 1 (%s)" % sec)
            self.assertTrue(out[-1].startswith(t + " BAD"), (sec, out))

    def test_seen(self):
        self.r.cmd("p", "FETCH 1 (BINARY.PEEK[4])")
        out = self.r.cmd("q", "FETCH 1 (FLAGS)")
        self.assertNotIn("\\Seen", out[0])
        head, data, rest = self.fetch_literal("x", "FETCH 1 (BINARY[4])")
        self.assertEqual(data, b"plain 7bit")
        out = self.r.cmd("y", "FETCH 1 (FLAGS)")
        self.assertIn("\\Seen", out[0])

    def test_whole_message_and_bodystructure_unchanged(self):
        head, data, rest = self.fetch_literal("f", "FETCH 1 (BINARY.PEEK[])")
        self.assertEqual(head, "* 1 FETCH (BINARY[] {%d}" % len(MIME))
        self.assertEqual(data, MIME.encode())
        out = self.r.cmd("g", "FETCH 1 (BODYSTRUCTURE)")
        self.assertIn('("APPLICATION" "OCTET-STREAM" NIL NIL NIL "BASE64" 1050 ', out[0])
        self.assertIn('"X-UUENCODE"', out[0])


class AppendLiteral8(unittest.TestCase):
    def setUp(self):
        self.server = imap_server(self)
        self.r = login(self.server)
        self.addCleanup(self.r.close)

    def test_append_literal8_nul(self):
        body = b"From: a@example.com\r\nSubject: nul\r\nContent-Type: application/octet-stream\r\n" \
               b"Content-Transfer-Encoding: binary\r\n\r\nab\x00cd\x00\x01\xfe end\r\n"
        self.r.send("a APPEND INBOX (\\Seen) ~{%d}\r\n" % len(body))
        self.assertTrue(self.r.line().startswith("+"))
        self.r.send(body + b"\r\n")
        out = self.r.until_tag("a")
        self.assertTrue(out[-1].startswith("a OK [APPENDUID"), out)
        # non-synchronizing literal8 too
        self.r.send(b"b APPEND INBOX ~{%d+}\r\n" % len(body) + body + b"\r\n")
        out = self.r.until_tag("b")
        self.assertTrue(out[-1].startswith("b OK [APPENDUID"), out)
        self.r.cmd("s", "SELECT INBOX")
        for n in (1, 2):
            self.r.send("f FETCH %d (BINARY.PEEK[1] BINARY.SIZE[1])\r\n" % n)
            head = self.r.line()
            m = re.search(r"BINARY\[1\] ~\{(\d+)\}$", head)
            self.assertIsNotNone(m, head)
            data = self.r.read_bytes(int(m.group(1)))
            self.assertEqual(data, b"ab\x00cd\x00\x01\xfe end\r\n")
            rest = self.r.until_tag("f")
            self.assertEqual(rest[0], " BINARY.SIZE[1] %d)" % len(data))
        # BODY[] never carries a NUL: Dovecot's 0x80 in its place.
        self.r.send("g FETCH 1 (BODY.PEEK[TEXT])\r\n")
        head = self.r.line()
        m = re.search(r"\{(\d+)\}$", head)
        self.assertFalse(head.endswith("~{%s}" % m.group(1)), head)
        data = self.r.read_bytes(int(m.group(1)))
        self.assertNotIn(b"\x00", data)
        self.assertEqual(data, b"ab\x80cd\x80\x01\xfe end\r\n")
        self.r.until_tag("g")


if __name__ == "__main__":
    unittest.main()
