"""The transport map end to end (modules mbox, alias, transport, smtp):
the seed's `.example.com.ar local:` delivers subdomain mail locally,
error: routes bounce with their text, discard: drops, an smtp: route
whose next hop does not answer is deferred (kept), never lost; map edits
apply without a reload. A transport is a module: the test-only
`filedrop` module (tests/unit/mods/filedrop.c) adds a transport the map
routes to; without it loaded, its mail waits in the queue. `local` is a
transport found by name like the others, and the core's own: the
test-only `badlocal` module, which registers a `local` that refuses
everything, is replaced and local mail (aliases too) is delivered."""
import os
import smtplib
import time
import unittest

from harness import TESTMODS, Server, wait_for

FILEDROP = os.path.join(os.path.abspath(TESTMODS), "filedrop.so")
BADLOCAL = os.path.join(os.path.abspath(TESTMODS), "badlocal.so")

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


class TransportModuleTest(unittest.TestCase):
    """A transport provided by a module, routed by the transport map."""

    MAP = "example.com.ar local:\ndrop.example.com.ar filedrop:box1\nrefuse.example.com.ar filedrop:fail\n"

    def start(self, with_module, tmap_text=MAP):
        self.server = Server(modules=("mbox", "alias", "transport", "smtp"), users=("alice", "bob", "carol"))
        self.addCleanup(self.server.cleanup)
        self.drop = self.server.path("drop")
        os.mkdir(self.drop)
        st = os.stat(self.server.dir)
        os.chown(self.drop, st.st_uid, st.st_gid)
        self.tmap = tmap = self.server.path("transport")
        self.write_map(tmap_text)
        conf = "relay_domains = $mydestination\ntransport_maps = hash:%s\n" % tmap
        if with_module:
            conf += "module filedrop %s\nfiledrop_directory = %s\n" % (FILEDROP, self.drop)
        self.server.write_conf(conf)
        self.server.start()
        self.port = self.server.ports["smtpd"]

    def write_map(self, text):
        st = os.stat(self.server.dir)
        with open(self.tmap + ".new", "w") as f:
            f.write(text)
        os.chown(self.tmap + ".new", st.st_uid, st.st_gid)
        os.rename(self.tmap + ".new", self.tmap)

    def dropped(self):
        return sorted(os.listdir(self.drop))

    def test_module_transport_delivers_its_recipients(self):
        self.start(with_module=True)
        send(self.port, ["x@drop.example.com.ar", "y@drop.example.com.ar", "alice@example.com.ar"],
             subject="through a module")
        self.assertEqual(self.server.wait_messages("alice", 1)[0]["Subject"], "through a module")
        files = wait_for(lambda: len(self.dropped()) == 2 and self.dropped(), 20, what="two dropped copies")
        texts = []
        for name in files:
            with open(os.path.join(self.drop, name)) as f:
                texts.append(f.read())
        self.assertEqual(sorted(t.splitlines()[0] for t in texts),
                         ["X-Filedrop-To: x@drop.example.com.ar", "X-Filedrop-To: y@drop.example.com.ar"])
        for t in texts:
            self.assertIn("X-Filedrop-Nexthop: box1\n", t)
            self.assertIn("Subject: through a module", t)
        self.server.wait_log("to=<y@drop.example.com.ar>, relay=none", timeout=20)
        self.assertRegex(self.server.log(), r"filedrop.*to=<x@drop\.example\.com\.ar>, relay=none, .*status=sent \(dropped in ")
        # Nothing is left in the queue.
        wait_for(lambda: not os.listdir(self.server.path("queue", "active")) and
                 not os.listdir(self.server.path("queue", "deferred")), 20, what="an empty queue")

    def test_module_transport_refusal_bounces(self):
        self.start(with_module=True)
        send(self.port, ["z@refuse.example.com.ar"], subject="refused by the module")
        bounce = self.server.wait_messages("carol", 1, timeout=20)[0].as_string()
        self.assertIn("5.7.1", bounce)
        self.assertIn("filedrop: refused by the transport map", bounce)
        self.assertEqual(self.dropped(), [])

    def test_without_the_module_mail_waits(self):
        # A transport no loaded module provides is a config error (check,
        # start and reload refuse it); a map edited under a running server
        # takes effect without a reload, and then the mail waits.
        self.start(with_module=False, tmap_text="example.com.ar local:\n")
        self.write_map(self.MAP)
        r = self.server.cmd("check", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b'transport:2: drop.example.com.ar filedrop:box1: no loaded module provides transport "filedrop"',
                      r.stderr)
        time.sleep(1.2)
        send(self.port, ["x@drop.example.com.ar"], subject="no transport yet")
        self.server.wait_log('unsupported transport "filedrop"', timeout=20)
        time.sleep(0.5)
        self.assertEqual(self.server.messages("carol"), [])
        queue = self.server.cmd("queue", "list", "-c", self.server.conf_file)
        self.assertIn("x@drop.example.com.ar", queue.stdout.decode())


if __name__ == "__main__":
    unittest.main()


class LocalTransportTest(unittest.TestCase):
    """`local` routed by the map is the core's provider, whatever a module
    registers under that name."""

    def test_module_cannot_replace_local(self):
        self.server = Server(modules=("mbox", "alias", "transport", "smtp"), users=("alice", "bob", "carol"))
        self.addCleanup(self.server.cleanup)
        st = os.stat(self.server.dir)
        tmap = self.server.path("transport")
        with open(tmap, "w") as f:
            f.write("example.com.ar local:\n.example.com.ar local:\n")
        os.chown(tmap, st.st_uid, st.st_gid)
        self.server.write_conf("relay_domains = $mydestination\ntransport_maps = hash:%s\nmodule badlocal %s\n"
                               % (tmap, BADLOCAL))
        self.server.start()
        # A user through the map's subdomain entry, and an alias fan-out.
        send(self.server.ports["smtpd"], ["alice@sub.example.com.ar", "sysadmin@example.com.ar"],
             subject="past a module posing as local")
        # alice once: the alias's copy for her is the same mailbox.
        self.assertEqual(self.server.wait_messages("alice", 1)[0]["Subject"], "past a module posing as local")
        self.assertEqual(self.server.wait_messages("bob", 1)[0]["Subject"], "past a module posing as local")
        self.server.wait_log("to=<bob@example.com.ar>, orig_to=<sysadmin@example.com.ar>, relay=local")
        log = self.server.log()
        self.assertIn('a module registered the transport "local": the core\'s delivery agent link replaces it', log)
        self.assertRegex(log, r"to=<alice@sub\.example\.com\.ar>, relay=local, .*status=sent \(delivered to mailbox\)")
        self.assertNotIn("badlocal: refused", log)
        time.sleep(0.5)
        self.assertEqual(len(self.server.messages("alice")), 1)
        self.assertEqual(self.server.messages("carol"), [])  # no bounce
