"""The restrict module in the running server, from a client outside
mynetworks (bound to 127.0.0.2, mynetworks = 127.0.0.1/32): the seed's
four rules each refuse the bad case and accept a control, every open-relay
address trick fails, Lua policy outcomes reach the client (custom text,
451 4.3.5 on error, a runaway policy stopped within its budget while
another client is served, no io/os.execute), a broken policy on reload
keeps the old one, and `postern policy test` / `postern why` work against
the live config. DNS answers come from a fake server on loopback."""
import os
import socket
import threading
import time
import unittest

from fakedns import FakeDNS
from harness import Server, wait_for

HOST = "mail.example.com.ar"


class Client:
    def __init__(self, port, source="127.0.0.2", timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        self.f = self.sock.makefile("rb")
        self.banner = self.line()

    def line(self):
        while True:
            raw = self.f.readline()
            if not raw:
                raise EOFError("connection closed")
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(text) < 4 or text[3] != "-":
                return text

    def cmd(self, text):
        self.sock.sendall((text + "\r\n").encode())
        return self.line()

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
        self.sock.close()


POLICY_V1 = """-- test policy (version 1)
return function(a)
  if a.sender == "custom@example.com.ar" then
    return "REJECT Custom policy text"
  end
  if a.sender == "error@example.com.ar" then
    error("deliberate failure")
  end
  if a.sender == "loop@example.com.ar" then
    while true do end
  end
  if a.sender == "exec@example.com.ar" then
    os.execute("touch /tmp/postern-pwned")
    return "OK"
  end
  if a.sender == "io@example.com.ar" then
    io.open("/etc/passwd")
    return "OK"
  end
  if a.sender == "version@example.com.ar" then
    return "REJECT version one"
  end
  return "DUNNO"
end, {
  { request = { sender = "custom@example.com.ar" }, expect = "REJECT Custom policy text" },
  { request = { sender = "x@example.com.ar" }, expect = "DUNNO" },
}
"""


class RestrictIntegration(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dns = FakeDNS({
            ("example.com.ar", "MX"): ["10 mail.example.com.ar"],
            ("mail.example.com.ar", "A"): ["127.0.0.1"],
            ("known.test", "A"): ["192.0.2.1"],
            ("2.0.0.127.rbl.test", "A"): ["127.0.0.2"],
            ("2.0.0.127.rbl.test", "TXT"): ["listed for testing"],
        }, zones=("example.com.ar", "known.test", "rbl.test"))
        cls.dns.start()
        cls.server = Server(modules=("mbox", "alias", "restrict", "smtp"), conf="")
        cls.policy = cls.server.path("policy.lua")
        cls.write_policy(POLICY_V1)
        cls.server.write_conf("\n".join([
            "smtpd_helo_required = yes",
            "smtpd_helo_restrictions = permit_mynetworks, reject_invalid_helo_hostname",
            "smtpd_sender_restrictions = permit_mynetworks, reject_unknown_sender_domain",
            "smtpd_relay_restrictions =",
            "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, "
            "check_lua_policy %s" % cls.policy,
            "dns_servers = 127.0.0.1:%d" % cls.dns.port,
            "lua_policy_instruction_limit = 1000000",
            "lua_policy_time_limit = 2s",
        ]))
        cls.server.start()
        cls.port = cls.server.ports["smtpd"]

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        cls.dns.stop()

    @classmethod
    def write_policy(cls, text):
        tmp = cls.policy + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        if cls.server.run_user:
            import pwd
            pw = pwd.getpwnam(cls.server.run_user)
            os.chown(tmp, pw.pw_uid, pw.pw_gid)
        os.rename(tmp, cls.policy)

    def client(self, source="127.0.0.2"):
        c = Client(self.port, source)
        self.addCleanup(c.close)
        return c

    def session(self, helo="client2.example.com.ar", sender="someone@example.com.ar", source="127.0.0.2"):
        c = self.client(source)
        self.assertTrue(c.cmd("EHLO %s" % helo).startswith("250"))
        self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender), "250 2.1.0 Ok")
        return c

    # ---- the seed's four rules ----

    def test_rule1_helo_required(self):
        c = self.client()
        self.assertEqual(c.cmd("MAIL FROM:<someone@example.com.ar>"), "503 5.5.1 Error: send HELO/EHLO first")
        self.assertEqual(c.cmd("HELO client2.example.com.ar"), "250 %s" % HOST)
        self.assertEqual(c.cmd("MAIL FROM:<someone@example.com.ar>"), "250 2.1.0 Ok")

    def test_rule2_invalid_helo(self):
        cases = {
            "bad..host": "501 5.5.2 <bad..host>: Helo command rejected: Invalid name",
            "-bad.example.com.ar": "501 5.5.2 <-bad.example.com.ar>: Helo command rejected: Invalid name",
            "bad!host": "501 5.5.2 <bad!host>: Helo command rejected: Invalid name",
            "[999.1.1.1]": "501 5.5.2 <[999.1.1.1]>: Helo command rejected: invalid ip address",
        }
        for helo, want in cases.items():
            c = self.client()
            self.assertEqual(c.cmd("HELO %s" % helo), "250 %s" % HOST)     # smtpd_delay_reject
            self.assertEqual(c.cmd("MAIL FROM:<someone@example.com.ar>"), "250 2.1.0 Ok")
            self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), want)
        for helo in ("bad_host.example.com.ar", "1.2.3.4", "localhost", "[127.0.0.2]"):
            c = self.client()
            c.cmd("HELO %s" % helo)
            c.cmd("MAIL FROM:<someone@example.com.ar>")
            self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "250 2.1.5 Ok", helo)
        # from mynetworks the bad HELO passes (permit_mynetworks first)
        c = self.client("127.0.0.1")
        c.cmd("HELO bad..host")
        c.cmd("MAIL FROM:<someone@example.com.ar>")
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "250 2.1.5 Ok")
        self.server.wait_log("NOQUEUE: reject: RCPT from ")
        self.server.wait_log(": 501 5.5.2 <bad..host>: Helo command rejected: Invalid name; "
                             "from=<someone@example.com.ar> to=<alice@example.com.ar> proto=SMTP "
                             "helo=<bad..host> rule=reject_invalid_helo_hostname")

    def test_rule3_unknown_sender_domain(self):
        c = self.session(sender="someone@nonexistent.test")
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"),
                         "450 4.1.8 <someone@nonexistent.test>: Sender address rejected: Domain not found")
        self.assertEqual(c.cmd("RSET"), "250 2.0.0 Ok")
        for sender in ("someone@known.test", "someone@example.com.ar", "", "nodomain"):
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender), "250 2.1.0 Ok")
            self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "250 2.1.5 Ok", sender)
            self.assertEqual(c.cmd("RSET"), "250 2.0.0 Ok")
        # our own domain is never looked up; unknown domains are
        self.assertIn(("nonexistent.test", 15), self.dns.queries)
        self.assertNotIn(("example.com.ar", 15), [q for q in self.dns.queries if q[0] == "example.com.ar"])
        # from mynetworks: accepted
        c = self.session(sender="someone@nonexistent.test", source="127.0.0.1")
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "250 2.1.5 Ok")

    def test_rule4_relay(self):
        c = self.session()
        self.assertEqual(c.cmd("RCPT TO:<victim@other.test>"), "554 5.7.1 <victim@other.test>: Relay access denied")
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "250 2.1.5 Ok")
        c = self.session(source="127.0.0.1")
        self.assertEqual(c.cmd("RCPT TO:<victim@other.test>"), "250 2.1.5 Ok")
        self.server.wait_log("rule=reject_unauth_destination")

    def test_relay_tricks(self):
        tricks = [
            "victim@other.test", "victim@OTHER.TEST", "victim@other.test.",
            "victim%other.test@example.com.ar", "victim%other.test@EXAMPLE.COM.AR",
            "other.test!victim@example.com.ar", "@example.com.ar:victim@other.test",
            "@mail.example.com.ar,@example.com.ar:victim@other.test",
            "\"victim@other.test\"@example.com.ar", "\"victim%other.test\"@example.com.ar",
            "victim@other.test@example.com.ar", "victim%other.test", "other.test!victim",
            "victim@[192.0.2.1]", "victim%other.test@mail.example.com.ar.",
        ]
        c = self.session()
        for t in tricks:
            reply = c.cmd("RCPT TO:<%s>" % t)
            self.assertFalse(reply.startswith("2"), "relay trick accepted: %s -> %s" % (t, reply))
            self.assertTrue(reply[:3] in ("554", "501", "550", "553", "504"), "%s -> %s" % (t, reply))
        # and the session is still usable for a real recipient
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "250 2.1.5 Ok")

    # ---- Lua policy outcomes ----

    def test_lua_custom_reject_text(self):
        c = self.session(sender="custom@example.com.ar")
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"),
                         "554 5.7.1 <alice@example.com.ar>: Recipient address rejected: Custom policy text")
        self.server.wait_log("rule=%s:4" % self.policy)

    def test_lua_error_is_451(self):
        c = self.session(sender="error@example.com.ar")
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "451 4.3.5 Server configuration problem")
        self.server.wait_log("lua policy %s:7: deliberate failure" % self.policy)

    def test_lua_sandbox(self):
        for sender, line in (("exec@example.com.ar", 13), ("io@example.com.ar", 17)):
            c = self.session(sender=sender)
            self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "451 4.3.5 Server configuration problem")
            self.server.wait_log("lua policy %s:%d:" % (self.policy, line))
        self.assertFalse(os.path.exists("/tmp/postern-pwned"))

    def test_lua_runaway_bounded_while_others_served(self):
        result = {}

        def runaway():
            c = Client(self.port)
            try:
                c.cmd("EHLO client2.example.com.ar")
                c.cmd("MAIL FROM:<loop@example.com.ar>")
                t0 = time.time()
                result["reply"] = c.cmd("RCPT TO:<alice@example.com.ar>")
                result["secs"] = time.time() - t0
            finally:
                c.close()

        th = threading.Thread(target=runaway)
        th.start()
        # another client is served meanwhile, within the budget's bound
        t0 = time.time()
        c = self.session()
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "250 2.1.5 Ok")
        other = time.time() - t0
        th.join(30)
        self.assertEqual(result.get("reply"), "451 4.3.5 Server configuration problem")
        self.assertLess(result["secs"], 5.0)
        self.assertLess(other, 5.0)
        self.server.wait_log("instruction budget exceeded")

    def test_lua_reload_keeps_old(self):
        c = self.session(sender="version@example.com.ar")
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"),
                         "554 5.7.1 <alice@example.com.ar>: Recipient address rejected: version one")
        try:
            # a version that does not compile, then SIGHUP: refused
            self.write_policy(POLICY_V1.replace("version one", "version two").replace("end, {", "{"))
            self.server.reload()
            self.server.wait_log("reload refused")
            time.sleep(1.2)        # past the worker's once-a-second file check too
            c = self.session(sender="version@example.com.ar")
            self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"),
                             "554 5.7.1 <alice@example.com.ar>: Recipient address rejected: version one")
            self.server.wait_log("new version refused, the previous one stays in use")
            # one that fails its own tests: refused as well
            self.write_policy(POLICY_V1.replace("version one", "version three").replace(
                'expect = "DUNNO"', 'expect = "OK"'))
            time.sleep(1.2)
            c = self.session(sender="version@example.com.ar")
            self.assertIn("version one", c.cmd("RCPT TO:<alice@example.com.ar>"))
            # a good new version is picked up when the file changes
            self.write_policy(POLICY_V1.replace("version one", "version four"))
            time.sleep(1.2)
            c = self.session(sender="version@example.com.ar")
            self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"),
                             "554 5.7.1 <alice@example.com.ar>: Recipient address rejected: version four")
        finally:
            self.write_policy(POLICY_V1)

    # ---- the admin's tools against the live config ----

    def test_policy_test_cli(self):
        r = self.server.cmd("policy", "test", "-c", self.server.conf_file, "--client", "127.0.0.2",
                            "--helo", "client2.example.com.ar", "--sender", "someone@example.com.ar",
                            "--recipient", "victim@other.test")
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 1, out + r.stderr.decode())
        self.assertIn("smtpd_recipient_restrictions: reject_unauth_destination -> reject: "
                      "554 5.7.1 <victim@other.test>: Relay access denied", out)
        self.assertIn("result: 554 5.7.1 <victim@other.test>: Relay access denied (rule reject_unauth_destination)",
                      out)
        r = self.server.cmd("policy", "test", "-c", self.server.conf_file, "--client", "127.0.0.1",
                            "--recipient", "victim@other.test")
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        r = self.server.cmd("policy", "test", "-c", self.server.conf_file, "--client", "127.0.0.2",
                            "--sender", "someone@nonexistent.test", "--recipient", "alice@example.com.ar")
        self.assertEqual(r.returncode, 2, r.stdout.decode() + r.stderr.decode())
        self.assertIn("450 4.1.8 <someone@nonexistent.test>: Sender address rejected: Domain not found",
                      r.stdout.decode())
        script = self.server.path("policy.tests")
        with open(script, "w") as f:
            f.write("client 127.0.0.2\nhelo bad..host\nmail <someone@example.com.ar>\n"
                    "rcpt <alice@example.com.ar>\n501 5.5.2 <bad..host>: Helo command rejected: Invalid name\n"
                    "client 127.0.0.2\nhelo ok.example.com.ar\nmail <custom@example.com.ar>\n"
                    "rcpt <alice@example.com.ar>\n554 5.7.1 <alice@example.com.ar>: Recipient address rejected: "
                    "Custom policy text\n"
                    "client 127.0.0.1\nrcpt <victim@other.test>\n250\n")
        os.chmod(script, 0o644)
        r = self.server.cmd("policy", "test", "-c", self.server.conf_file, "--script", script)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        self.assertIn("10 checks, 0 failed", r.stdout.decode())
        with open(script, "a") as f:
            f.write("client 127.0.0.2\nmail <a@example.com.ar>\nrcpt <victim@other.test>\n250\n")
        r = self.server.cmd("policy", "test", "-c", self.server.conf_file, "--script", script)
        self.assertEqual(r.returncode, 1)
        self.assertIn("FAIL %s:17: expected 250, got 554 5.7.1" % script, r.stdout.decode())

    def test_why(self):
        c = self.session()
        self.assertEqual(c.cmd("RCPT TO:<alice@example.com.ar>"), "250 2.1.5 Ok")
        self.assertEqual(c.cmd("RCPT TO:<bob@example.com.ar>"), "250 2.1.5 Ok")
        self.assertTrue(c.cmd("DATA").startswith("354"))
        c.sock.sendall(b"Subject: why\r\n\r\nbody\r\n.\r\n")
        reply = c.line()
        self.assertTrue(reply.startswith("250 2.0.0 Ok: queued as "), reply)
        qid = reply.split()[-1]
        wait_for(lambda: "%s: removed" % qid in self.server.log() or "status=sent" in self.server.log(),
                 timeout=15, what="delivery")
        # The trace is in the decision record, not in the log.
        wait_for(lambda: self.server.cmd("why", "-c", self.server.conf_file, qid).returncode == 0, timeout=10,
                 what="the transaction in the decision record")
        r = self.server.cmd("why", "-c", self.server.conf_file, qid)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        self.assertIn("SMTP %s: accepted" % qid, out)
        self.assertIn("to <alice@example.com.ar>: 250 2.1.5 Ok", out)
        self.assertIn("to <bob@example.com.ar>: 250 2.1.5 Ok", out)
        self.assertIn("RCPT <bob@example.com.ar>:", out)
        self.assertIn("smtpd_recipient_restrictions: check_lua_policy %s -> no decision" % self.policy, out)
        self.assertNotIn("policy: RCPT", self.server.log())
        r = self.server.cmd("why", "-c", self.server.conf_file, "NOSUCHID0")
        self.assertEqual(r.returncode, 1)


class RestrictDefaults(unittest.TestCase):
    """Debian's default smtpd_relay_restrictions defer relaying (454), and
    the seed's `mynetworks = subnet` is accepted with a warning."""

    def test_default_relay_is_454(self):
        server = Server(modules=("mbox", "alias", "restrict", "smtp"), conf="")
        self.addCleanup(server.cleanup)
        server.write_conf("smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n")
        server.start()
        c = Client(server.ports["smtpd"])
        self.addCleanup(c.close)
        c.cmd("EHLO client2.example.com.ar")
        c.cmd("MAIL FROM:<someone@example.com.ar>")
        self.assertEqual(c.cmd("RCPT TO:<victim@other.test>"), "454 4.7.1 <victim@other.test>: Relay access denied")

    def test_subnet_style_warning(self):
        server = Server(modules=("mbox", "alias", "restrict", "smtp"), conf="")
        self.addCleanup(server.cleanup)
        with open(server.conf_file) as f:
            text = f.read().replace("mynetworks = 127.0.0.1/32", "mynetworks = subnet")
        with open(server.conf_file, "w") as f:
            f.write(text)
        r = server.cmd("check", "-c", server.conf_file)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertIn("mynetworks = subnet names a mynetworks_style", r.stderr.decode())
        # subnet: 127.0.0.2 is inside lo's 127.0.0.0/8, so it may relay
        server.start()
        c = Client(server.ports["smtpd"])
        self.addCleanup(c.close)
        c.cmd("EHLO client2.example.com.ar")
        c.cmd("MAIL FROM:<someone@example.com.ar>")
        self.assertEqual(c.cmd("RCPT TO:<friend@other.test>"), "250 2.1.5 Ok")
        server.wait_log("names a mynetworks_style")


if __name__ == "__main__":
    unittest.main()
