"""The transport map end to end (modules mbox, alias, transport, smtp):
the seed's `.example.com.ar local:` delivers subdomain mail locally,
error: routes bounce with their text, discard: drops, an smtp: route
with no outbound client yet is deferred (kept), never lost; map edits
apply without a reload."""
import os
import smtplib
import time
import unittest

from harness import Server, wait_for

TRANSPORT = """# the seed's transport map
example.com.ar    local:
.example.com.ar    local:
gone.example.com.ar    error:5.1.1 this domain is gone
junk.example.com.ar    discard:
"""


def send(port, rcpts, sender="carol@example.com.ar", subject="test"):
    msg = "From: %s\r\nSubject: %s\r\n\r\nbody\r\n" % (sender, subject)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example.com.ar")
        return s.sendmail(sender, rcpts, msg)


class TransportTest(unittest.TestCase):
    def setUp(self):
        self.server = Server(modules=("mbox", "alias", "transport", "smtp"), users=("alice", "bob", "carol"))
        self.map = self.server.path("transport")
        self.write_map(TRANSPORT)
        self.server.write_conf("relay_domains = $mydestination\ntransport_maps = hash:%s\n" % self.map)
        self.addCleanup(self.server.cleanup)
        self.server.start()
        self.port = self.server.ports["smtpd"]

    def write_map(self, text):
        tmp = self.map + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        st = os.stat(self.server.dir)
        os.chown(tmp, st.st_uid, st.st_gid)
        os.rename(tmp, self.map)

    def test_subdomain_delivered_locally(self):
        send(self.port, ["alice@sub.example.com.ar", "bob@deep.sub.example.com.ar"], subject="via transport")
        self.assertEqual(self.server.wait_messages("alice", 1)[0]["Subject"], "via transport")
        self.assertEqual(self.server.wait_messages("bob", 1)[0]["Subject"], "via transport")

    def test_error_route_bounces_with_its_text(self):
        send(self.port, ["someone@gone.example.com.ar"], subject="to nowhere")
        bounce = self.server.wait_messages("carol", 1, timeout=20)[0].as_string()
        self.assertIn("5.1.1", bounce)
        self.assertIn("this domain is gone", bounce)

    def test_discard_route(self):
        send(self.port, ["x@junk.example.com.ar", "alice@example.com.ar"], subject="partly discarded")
        self.server.wait_messages("alice", 1)
        self.server.wait_log("to=<x@junk.example.com.ar>")
        time.sleep(0.5)
        self.assertEqual(self.server.messages("carol"), [])

    def test_smtp_route_without_client_is_deferred_not_lost(self):
        self.write_map(TRANSPORT + "relay.example.com.ar smtp:[127.0.0.1]:9\n")
        time.sleep(1.1)
        send(self.port, ["x@relay.example.com.ar"], subject="for the next hop")
        self.server.wait_log("status=deferred", timeout=20)
        time.sleep(0.5)
        self.assertEqual(self.server.messages("carol"), [])
        queue = self.server.cmd("queue", "list", "-c", self.server.conf_file)
        self.assertIn("x@relay.example.com.ar", queue.stdout.decode())

    def test_map_edit_applies_without_reload(self):
        send(self.port, ["alice@sub.example.com.ar"], subject="before")
        self.server.wait_messages("alice", 1)
        self.write_map(TRANSPORT + ".sub.example.com.ar error:5.7.1 subdomain closed\n")
        time.sleep(1.1)
        send(self.port, ["alice@x.sub.example.com.ar"], subject="after")
        bounce = wait_for(lambda: self.server.messages("carol"), 20, what="bounce")[0].as_string()
        self.assertIn("subdomain closed", bounce)
        self.assertEqual(len(self.server.messages("alice")), 1)

    def test_map_check_verb(self):
        out = self.server.cmd("map", "check", self.map)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("4 entries, no errors", out.stdout.decode())
        out = self.server.cmd("map", "query", self.map, "SUB.example.com.ar")
        self.assertEqual(out.returncode, 1)
        out = self.server.cmd("map", "query", self.map, ".EXAMPLE.com.ar")
        self.assertEqual((out.returncode, out.stdout.decode()), (0, "local:\n"))
        out = self.server.cmd("map", self.map)
        self.assertIn("no postmap step", out.stdout.decode())


if __name__ == "__main__":
    unittest.main()
