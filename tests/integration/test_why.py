"""`postern why` over the decision record, with real traffic: an accepted
message, one refused by each seed rule (reject_unauth_destination,
reject_unknown_sender_domain, reject_invalid_helo_hostname,
smtpd_helo_required, message_size_limit), an alias fan-out, a relay
deferred by a loopback next hop answering 450, and good and bad IMAP,
POP3 and SMTP AUTH logins. Then the admin's questions -- by queue id,
Message-ID, --from/--to (also before alias expansion), --client,
--since/--until, --rejected, --login, --json parsed -- each answer
checked; the same with maillog_file = stderr. Also: the log stays as
quiet as Postfix's for accepted mail, no password reaches the record,
the store is mode 0600, a kill -9 mid-batch corrupts nothing older, and
retention by age and by size."""
import base64
import imaplib
import json
import os
import poplib
import re
import shutil
import smtplib
import socket
import sqlite3
import stat
import struct
import threading
import time
import unittest

from fakedns import FakeDNS
from harness import Server, free_port, system_mail_user, wait_for

DOMAIN = "example.com.ar"
PASS = {"alice": "Alice-pw-4417", "bob": "Bob-pw-8821", "carol": "Carol-pw-1290"}
WRONG = "Wrong-pw-5530"


class Deferring(threading.Thread):
    """A next hop on loopback that answers every RCPT 450 (greylisting),
    after `delay` seconds."""

    def __init__(self, delay=0):
        super().__init__(daemon=True)
        self.delay = delay
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = free_port()
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stopped = False

    def run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        f = c.makefile("rb")
        try:
            c.sendall(b"220 grey.test ESMTP\r\n")
            for raw in f:
                verb = raw[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    c.sendall(b"250 grey.test\r\n")
                elif verb == b"RCPT":
                    time.sleep(self.delay)
                    c.sendall(b"450 4.2.0 Greylisted, come back later\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    break
                elif verb == b"DATA":
                    c.sendall(b"554 5.5.1 no valid recipients\r\n")
                else:
                    c.sendall(b"250 ok\r\n")
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


class Smtp:
    """A raw client bound to a source address (127.0.0.2 is outside mynetworks)."""

    def __init__(self, port, source="127.0.0.2"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0))
        self.f = self.sock.makefile("rb")
        self.line()

    def line(self):
        while True:
            raw = self.f.readline()
            if not raw:
                raise EOFError
            t = raw.decode(errors="replace").rstrip("\r\n")
            if len(t) < 4 or t[3] != "-":
                return t

    def cmd(self, text):
        self.sock.sendall((text + "\r\n").encode())
        return self.line()

    def data(self, body):
        r = self.cmd("DATA")
        assert r.startswith("354"), r
        self.sock.sendall(body.replace("\n", "\r\n").encode() + b"\r\n.\r\n")
        return self.line()

    def close(self):
        try:
            self.cmd("QUIT")
        except (OSError, EOFError):
            pass
        self.sock.close()


def make_server(**kw):
    return Server(modules=("mbox", "alias", "restrict", "transport", "smtp", "imap", "pop3"),
                  users=["%s:%s" % u for u in PASS.items()], **kw)


class WhyBase:
    """Traffic once per class, then one question per test."""

    log_to_stderr = False

    @classmethod
    def setUpClass(cls):
        cls.dns = FakeDNS({
            (DOMAIN, "MX"): ["10 mail.%s" % DOMAIN],
            ("mail.%s" % DOMAIN, "A"): ["127.0.0.1"],
        }, zones=(DOMAIN,))
        cls.dns.start()
        cls.next_hop = Deferring()
        cls.next_hop.start()
        cls.server = make_server()
        cls.tmap = cls.server.path("transport")
        with open(cls.tmap, "w") as f:
            f.write("relay.%s smtp:[127.0.0.1]:%d\n" % (DOMAIN, cls.next_hop.port))
        conf = [
            "smtpd_helo_required = yes",
            "smtpd_helo_restrictions = permit_mynetworks, reject_invalid_helo_hostname",
            "smtpd_sender_restrictions = permit_mynetworks, reject_unknown_sender_domain",
            "smtpd_relay_restrictions =",
            "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination",
            "message_size_limit = 50000",
            "relay_domains = relay.%s" % DOMAIN,
            "transport_maps = hash:%s" % cls.tmap,
            "dns_servers = 127.0.0.1:%d" % cls.dns.port,
            "passdb = passwd-file:%s" % cls.server.passwd_file,
            "auth_mechanisms = plain login",
            "auth_failure_delay = 0s",
            "auth_throttle = no",
            "disable_plaintext_auth = no",
            "smtpd_tls_auth_only = no",
        ]
        if cls.log_to_stderr:
            conf.append("maillog_file = stderr")
        cls.server.write_conf("\n".join(conf))
        st = os.stat(cls.server.dir)
        for p in (cls.tmap, cls.server.conf_file):
            os.chown(p, st.st_uid, st.st_gid)
        cls.server.start()
        if cls.log_to_stderr:
            # Nobody else reads the daemon's stderr: keep the pipe drained.
            cls.stderr_lines = []
            proc = cls.server.proc

            def drain():
                for raw in proc.stderr:
                    cls.stderr_lines.append(raw.decode(errors="replace"))
            threading.Thread(target=drain, daemon=True).start()
        cls.port = cls.server.ports["smtpd"]
        cls.drive()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        cls.next_hop.stop()
        cls.dns.stop()

    @classmethod
    def drive(cls):
        port = cls.port
        # Accepted from outside mynetworks.
        c = Smtp(port)
        assert c.cmd("EHLO client.example.net").startswith("250")
        assert c.cmd("MAIL FROM:<bob@%s>" % DOMAIN).startswith("250")
        assert c.cmd("RCPT TO:<alice@%s>" % DOMAIN).startswith("250")
        r = c.data("Subject: accepted\nMessage-ID: <why-accepted@test>\n\nhello alice\n")
        assert r.startswith("250 2.0.0 Ok: queued as "), r
        cls.accepted_id = r.split()[-1]
        # Alias fan-out: sysadmin -> alice, bob.
        assert c.cmd("MAIL FROM:<bob@%s>" % DOMAIN).startswith("250")
        assert c.cmd("RCPT TO:<sysadmin@%s>" % DOMAIN).startswith("250")
        r = c.data("Subject: fan-out\nMessage-ID: <why-fanout@test>\n\nto the admins\n")
        assert r.startswith("250"), r
        cls.fanout_id = r.split()[-1]
        # reject_unauth_destination.
        assert c.cmd("MAIL FROM:<bob@%s>" % DOMAIN).startswith("250")
        cls.relay_reply = c.cmd("RCPT TO:<victim@other.test>")
        assert cls.relay_reply.startswith("554 5.7.1"), cls.relay_reply
        c.cmd("RSET")
        # reject_unknown_sender_domain.
        assert c.cmd("MAIL FROM:<ghost@nonexistent.test>").startswith("250")
        cls.sender_reply = c.cmd("RCPT TO:<carol@%s>" % DOMAIN)
        assert cls.sender_reply.startswith("450 4.1.8"), cls.sender_reply
        c.cmd("RSET")
        # message_size_limit (the SIZE the client announces).
        cls.size_reply = c.cmd("MAIL FROM:<big@%s> SIZE=900000" % DOMAIN)
        assert cls.size_reply.startswith("552 5.3.4"), cls.size_reply
        c.close()
        # reject_invalid_helo_hostname.
        c = Smtp(port)
        assert c.cmd("HELO bad..host").startswith("250")
        assert c.cmd("MAIL FROM:<carol@%s>" % DOMAIN).startswith("250")
        cls.helo_reply = c.cmd("RCPT TO:<alice@%s>" % DOMAIN)
        assert cls.helo_reply.startswith("501 5.5.2"), cls.helo_reply
        c.close()
        # smtpd_helo_required, from another address.
        c = Smtp(port, source="127.0.0.3")
        cls.nohelo_reply = c.cmd("MAIL FROM:<rude@%s>" % DOMAIN)
        assert cls.nohelo_reply.startswith("503 5.5.1"), cls.nohelo_reply
        c.close()
        # A Message-ID with a terminal escape sequence (and a C1 CSI).
        c = Smtp(port)
        assert c.cmd("EHLO esc.example.net").startswith("250")
        assert c.cmd("MAIL FROM:<bob@%s>" % DOMAIN).startswith("250")
        assert c.cmd("RCPT TO:<carol@%s>" % DOMAIN).startswith("250")
        c.sock.sendall(b"DATA\r\n")
        assert c.line().startswith("354")
        c.sock.sendall(b"Subject: esc\r\nMessage-ID: <esc\x1b[31m\xc2\x9b2J@test>\r\n\r\nx\r\n.\r\n")
        r = c.line()
        assert r.startswith("250"), r
        cls.esc_id = r.split()[-1]
        c.close()
        # A relay the next hop defers (from mynetworks).
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
            s.sendmail("carol@%s" % DOMAIN, ["grey@relay.%s" % DOMAIN],
                       "Subject: relay\r\nMessage-ID: <why-relay@test>\r\n\r\nfar away\r\n")
        # Logins: good and bad, IMAP, POP3, SMTP AUTH.
        im = imaplib.IMAP4("127.0.0.1", cls.server.ports["imap"])
        try:
            im.login("alice", WRONG)
        except imaplib.IMAP4.error:
            pass
        im.login("alice", PASS["alice"])
        im.logout()
        p = poplib.POP3("127.0.0.1", cls.server.ports["pop3"])
        p.user("bob")
        try:
            p.pass_(WRONG)
        except poplib.error_proto:
            pass
        p.quit()
        p = poplib.POP3("127.0.0.1", cls.server.ports["pop3"])
        p.user("bob")
        p.pass_(PASS["bob"])
        p.quit()
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
            s.ehlo("me.example.net")
            # One PLAIN attempt each (login() would try LOGIN after a failed PLAIN).
            code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0carol\0" + WRONG.encode()).decode())
            assert code == 535, code
            code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0carol\0" + PASS["carol"].encode()).decode())
            assert code == 235, code
        # Local submission (sendmail), picked up from the maildrop.
        r = cls.server.cmd("sendmail", "-f", "dave@%s" % DOMAIN, "carol@%s" % DOMAIN,
                           input=b"Subject: local\nMessage-ID: <why-local@test>\n\nfrom the shell\n")
        assert r.returncode == 0, r.stderr
        # Everything delivered or deferred, and written (batches every 200 ms).
        wait_for(lambda: cls.why_json("--to", "grey@relay.%s" % DOMAIN, check=False) and any(
            e["kind"] == "delivery" for e in cls.why_json("--to", "grey@relay.%s" % DOMAIN)),
            timeout=30, what="the deferred relay in the record")
        wait_for(lambda: len(cls.why_json("--to", "sysadmin@", check=False)) >= 3, timeout=20,
                 what="the fan-out deliveries in the record")
        wait_for(lambda: len(cls.why_json("--login", "carol", check=False)) >= 2, timeout=20,
                 what="the logins in the record")
        wait_for(lambda: len(cls.why_json("<why-local@test>", check=False)) >= 2, timeout=20,
                 what="the local submission in the record")

    @classmethod
    def why(cls, *args):
        return cls.server.cmd("why", *args)

    @classmethod
    def why_json(cls, *args, check=True):
        r = cls.why("--json", *args)
        if r.returncode not in (0, 1):
            if check:
                raise AssertionError("why %s: %s" % (args, r.stderr.decode()))
            return []
        return json.loads(r.stdout.decode())

    def kinds(self, events):
        return sorted((e["kind"], e["outcome"]) for e in events)

    # ---- the questions ----

    def test_queue_id_tells_the_story(self):
        r = self.why(self.accepted_id)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertIn("SMTP %s: accepted" % self.accepted_id, out)
        self.assertIn("client unknown[127.0.0.2] on smtpd, HELO client.example.net", out)
        self.assertIn("from <bob@%s>" % DOMAIN, out)
        self.assertIn("to <alice@%s>: 250 2.1.5 Ok" % DOMAIN, out)
        self.assertIn("250 2.0.0 Ok: queued as %s" % self.accepted_id, out)
        self.assertIn("delivery %s: delivered" % self.accepted_id, out)
        self.assertIn("status 2.0.0: delivered to mailbox", out)
        # Newest first: the delivery follows the transaction that began first.
        self.assertLess(out.index("delivery %s" % self.accepted_id), out.index("SMTP %s" % self.accepted_id))
        ev = self.why_json(self.accepted_id)
        self.assertEqual(self.kinds(ev), [("delivery", "delivered"), ("smtp", "accepted")])
        smtp = [e for e in ev if e["kind"] == "smtp"][0]
        self.assertEqual(smtp["message_id"], "<why-accepted@test>")
        self.assertEqual(smtp["client"], "127.0.0.2")
        self.assertEqual(smtp["recipients"][0]["address"], "alice@%s" % DOMAIN)
        self.assertTrue(any("reject_unauth_destination -> no decision" in t for t in smtp["trace"]), smtp["trace"])

    def test_message_id_with_or_without_brackets(self):
        for mid in ("<why-accepted@test>", "why-accepted@test"):
            ev = self.why_json(mid)
            self.assertEqual(self.kinds(ev), [("delivery", "delivered"), ("smtp", "accepted")], mid)
            self.assertTrue(all(e["queue_id"] == self.accepted_id for e in ev))

    def test_from_bob_to_alice_since_yesterday(self):
        ev = self.why_json("--from", "bob", "--to", "alice", "--since", "yesterday")
        # The message to alice, its delivery, and alice's copy of the
        # fan-out (bob's copy and the refusals are someone else's story).
        got = sorted((e["kind"], e["queue_id"]) for e in ev)
        self.assertEqual(got, sorted([("smtp", self.accepted_id), ("delivery", self.accepted_id),
                                      ("delivery", self.fanout_id)]))
        for e in ev:
            self.assertEqual(e["sender"], "bob@%s" % DOMAIN)
        r = self.why("--from", "bob", "--to", "alice", "--since", "yesterday")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stdout.decode().count("\n\n"), 3)

    def test_to_before_alias_expansion(self):
        for q in ("sysadmin@", "sysadmin", "sysadmin@%s" % DOMAIN, "SysAdmin@%s" % DOMAIN.upper()):
            ev = self.why_json("--to", q)
            smtp = [e for e in ev if e["kind"] == "smtp"]
            deliveries = sorted(r["address"] for e in ev if e["kind"] == "delivery"
                                for r in e["recipients"] if r["role"] == "to")
            self.assertEqual(len(smtp), 1, q)
            self.assertEqual(smtp[0]["queue_id"], self.fanout_id)
            self.assertEqual(deliveries, ["alice@%s" % DOMAIN, "bob@%s" % DOMAIN], q)
            for e in ev:
                if e["kind"] == "delivery":
                    self.assertIn({"address": "sysadmin@%s" % DOMAIN, "role": "orig_to", "reply": None,
                                   "rule": None}, e["recipients"])
        out = self.why("--to", "sysadmin@").stdout.decode()
        self.assertIn("to <alice@%s> (sent to <sysadmin@%s>)" % (DOMAIN, DOMAIN), out)
        self.assertIn("to <bob@%s> (sent to <sysadmin@%s>)" % (DOMAIN, DOMAIN), out)

    def test_rejected_by_each_seed_rule(self):
        ev = self.why_json("--rejected", "--since", "2h")
        rules = {}
        for e in ev:
            for r in e["recipients"]:
                if r["rule"] and not r["reply"].startswith("2"):
                    rules[r["rule"]] = r["reply"]
            if e["rule"]:
                rules[e["rule"]] = e["reply"]
        self.assertEqual(rules.get("reject_unauth_destination"), self.relay_reply)
        self.assertEqual(rules.get("reject_unknown_sender_domain"), self.sender_reply)
        self.assertEqual(rules.get("reject_invalid_helo_hostname"), self.helo_reply)
        self.assertEqual(rules.get("smtpd_helo_required"), self.nohelo_reply)
        self.assertEqual(rules.get("message_size_limit"), self.size_reply)
        outcomes = {e["rule"] or e["recipients"][-1]["rule"]: e["outcome"] for e in ev}
        self.assertEqual(outcomes["reject_unauth_destination"], "rejected")
        self.assertEqual(outcomes["reject_unknown_sender_domain"], "deferred")
        self.assertEqual(outcomes["message_size_limit"], "rejected")
        # No accepted mail among them.
        self.assertFalse(any(e["outcome"] == "accepted" for e in ev))
        text = self.why("--rejected").stdout.decode()
        self.assertIn("to <victim@other.test>: %s (rule reject_unauth_destination)" % self.relay_reply, text)
        self.assertIn("MAIL: %s (rule smtpd_helo_required)" % self.nohelo_reply, text)
        self.assertIn("MAIL: %s (rule message_size_limit)" % self.size_reply, text)

    def test_local_submission(self):
        ev = self.why_json("--from", "dave", "--to", "carol@%s" % DOMAIN)
        self.assertEqual(self.kinds(ev), [("delivery", "delivered"), ("smtp", "accepted")])
        pickup = [e for e in ev if e["kind"] == "smtp"][0]
        self.assertEqual(pickup["service"], "pickup")
        self.assertEqual(pickup["message_id"], "<why-local@test>")
        self.assertTrue(pickup["client_name"].startswith("local uid "), pickup)
        self.assertEqual(ev[0]["queue_id"], ev[1]["queue_id"])

    def test_control_characters_never_reach_the_terminal(self):
        r = self.why(self.esc_id)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(b"\x1b", r.stdout)
        self.assertNotIn(b"\xc2\x9b", r.stdout)
        self.assertIn(b"Message-ID <esc?[31m?2J@test>", r.stdout)
        ev = self.why_json(self.esc_id)
        self.assertEqual(ev[0]["message_id"], "<esc?[31m?2J@test>")

    def test_client(self):
        ev = self.why_json("--client", "127.0.0.3")
        self.assertEqual(len(ev), 1)
        self.assertEqual(ev[0]["rule"], "smtpd_helo_required")
        self.assertEqual(ev[0]["sender"], "rude@%s" % DOMAIN)
        self.assertIsNone(ev[0]["helo"])
        helo = [e for e in self.why_json("--client", "127.0.0.2") if e["helo"] == "bad..host"]
        self.assertEqual(len(helo), 1)
        self.assertEqual(helo[0]["recipients"][0]["rule"], "reject_invalid_helo_hostname")
        self.assertEqual(self.why("--client", "127.0.0.99").returncode, 1)

    def test_deferred_relay_with_remote_reply(self):
        ev = self.why_json("--to", "grey@relay.%s" % DOMAIN)
        d = [e for e in ev if e["kind"] == "delivery"]
        self.assertTrue(d)
        self.assertEqual(d[0]["outcome"], "deferred")
        self.assertEqual(d[0]["service"], "smtp")
        self.assertIn("450 4.2.0 Greylisted, come back later", d[0]["reply"])
        self.assertEqual(d[0]["sender"], "carol@%s" % DOMAIN)
        self.assertEqual(d[0]["message_id"], "<why-relay@test>")
        out = self.why("--to", "grey@relay.%s" % DOMAIN).stdout.decode()
        self.assertIn("deferred", out)
        self.assertIn("by smtp, relay 127.0.0.1[127.0.0.1]", out)

    def test_logins(self):
        for user, service in (("alice", "imap"), ("bob", "pop3"), ("carol", "smtp")):
            ev = self.why_json("--login", user)
            got = sorted((e["service"], e["outcome"]) for e in ev)
            self.assertEqual(got, [(service, "failed"), (service, "ok")], user)
            failed = [e for e in ev if e["outcome"] == "failed"][0]
            self.assertEqual(failed["reply"], "password mismatch")
            self.assertEqual(failed["client"], "127.0.0.1")
        out = self.why("--login", "ALICE").stdout.decode()
        self.assertIn("login imap for alice from 127.0.0.1: failed (password mismatch)", out)
        self.assertIn("login imap for alice from 127.0.0.1: ok", out)

    def test_time_window(self):
        self.assertEqual(self.why("--until", "yesterday").returncode, 1)
        self.assertEqual(self.why("--since", "2099-01-01").returncode, 1)
        now = len(self.why_json("--since", "@%d" % (time.time() - 7200)))
        self.assertEqual(now, len(self.why_json("--since", "2h", "--limit", "0")))
        self.assertGreater(now, 10)
        r = self.why("--since", "last tuesday")
        self.assertEqual(r.returncode, 2)
        self.assertIn("is not a time", r.stderr.decode())

    def test_no_password_in_the_record_and_mode_0600(self):
        d = self.server.path("queue", "decisions")
        self.assertEqual(stat.S_IMODE(os.stat(d).st_mode), 0o700)
        blob = b""
        for name in os.listdir(d):
            p = os.path.join(d, name)
            self.assertEqual(stat.S_IMODE(os.stat(p).st_mode) & 0o077, 0, name)
            with open(p, "rb") as f:
                blob += f.read()
        for pw in list(PASS.values()) + [WRONG]:
            self.assertNotIn(pw.encode(), blob)

    def test_log_is_quiet_for_accepted_mail(self):
        log = "".join(self.stderr_lines) if self.log_to_stderr else self.server.log()
        self.assertNotIn("policy: ", log)
        self.assertNotIn("trace=[", log)
        self.assertNotIn("DATA from", log)
        self.assertNotIn("END-OF-MESSAGE from", log)
        self.assertIn("NOQUEUE: reject: RCPT from unknown[127.0.0.2]: %s; from=<bob@%s> to=<victim@other.test> "
                      "proto=ESMTP helo=<client.example.net> rule=reject_unauth_destination"
                      % (self.relay_reply, DOMAIN), log)
        lines = [l for l in log.splitlines() if self.accepted_id in l]
        # client=, message-id, queue active, delivery, removed: Postfix's five.
        self.assertEqual(len(lines), 5, "\n".join(lines))


class WhyLogFile(WhyBase, unittest.TestCase):
    pass


class WhyLogStderr(WhyBase, unittest.TestCase):
    """maillog_file = stderr: nothing in a log file, nothing lost for why."""
    log_to_stderr = True

    def test_no_log_file(self):
        self.assertFalse(os.path.exists(self.server.log_file) and os.path.getsize(self.server.log_file))


class CrashAndRetention(unittest.TestCase):
    def setUp(self):
        self.server = make_server()
        self.addCleanup(self.server.cleanup)
        self.db = self.server.path("queue", "decisions", "decisions.db")

    def send(self, n, tag):
        with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=20) as s:
            for i in range(n):
                s.sendmail("%s@%s" % (tag, DOMAIN), ["alice@%s" % DOMAIN], "Subject: %s %d\r\n\r\nx\r\n" % (tag, i))

    def count(self, tag):
        r = self.server.cmd("why", "--from", tag, "--json", "--limit", "0")
        return len([e for e in json.loads(r.stdout.decode() or "[]") if e["kind"] == "smtp"])

    def test_kill_9_mid_batch_keeps_older_records(self):
        self.server.start()
        self.send(20, "before")
        wait_for(lambda: self.count("before") == 20, timeout=20, what="20 records")
        stop = threading.Event()
        errors = []

        def flood():
            while not stop.is_set():
                try:
                    self.send(5, "during")
                except (OSError, smtplib.SMTPException) as e:
                    errors.append(e)
                    time.sleep(0.05)
        t = threading.Thread(target=flood, daemon=True)
        t.start()
        for round_ in range(4):
            time.sleep(0.7)
            pid = int(re.findall(r"started worker \(pid (\d+)\)", self.server.log())[-1])
            os.kill(pid, 9)
            wait_for(lambda: len(re.findall(r"started worker \(pid (\d+)\)", self.server.log())) > round_ + 1,
                     timeout=20, what="a new worker")
        stop.set()
        t.join(30)
        # Then the whole server, mid-flight.
        self.server.kill()
        with sqlite3.connect(self.db) as c:
            self.assertEqual(c.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        self.server.start()
        self.assertEqual(self.count("before"), 20)
        self.send(3, "after")
        wait_for(lambda: self.count("after") == 3, timeout=20, what="records after the crashes")
        with sqlite3.connect(self.db) as c:
            self.assertEqual(c.execute("PRAGMA integrity_check").fetchone()[0], "ok")

    def test_off_falls_back_to_the_log(self):
        self.server.write_conf(self.server.extra_conf + "\ndecision_log_file =\n")
        self.server.start()
        with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=20) as s:
            code, text = s.sendmail("x@%s" % DOMAIN, ["alice@%s" % DOMAIN], "Subject: x\r\n\r\nx\r\n") or (0, b"")
        qid = re.findall(r"(\w+): client=", self.server.log())[-1]
        self.server.wait_log("%s: removed" % qid)
        r = self.server.cmd("why", qid)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("decision_log_file is empty", r.stderr.decode())
        self.assertIn("%s: to=<alice@%s>" % (qid, DOMAIN), r.stdout.decode())
        self.assertFalse(os.path.exists(os.path.dirname(self.db)))
        self.assertEqual(self.server.cmd("why", "--from", "x").returncode, 2)

    def fake_events(self, n, ts_ms, tag, trace_len=0):
        # As the writer stores them (core/record_db.c): the id is the time
        # times 4096, the sender is in rcpts and in the posting lists.
        c = sqlite3.connect(self.db)
        sender = "%s@%s" % (tag, DOMAIN)
        with c:
            ids = []
            for i in range(n):
                eid = (ts_ms + i) * 4096
                c.execute("INSERT INTO event(id, ts, kind, outcome, service, client, sender, trace, rcpts) "
                          "VALUES(?, ?, 'smtp', 'accepted', 'smtpd', '192.0.2.1', ?, ?, ?)",
                          (eid, ts_ms + i, sender, "x" * trace_len, "1\x1f%s\x1f\x1f" % sender))
                ids.append(eid)
            for t in ("s=%s" % sender.lower(), "s@%s" % DOMAIN):
                c.execute("INSERT INTO term(t, last, evs) VALUES(?, ?, ?)", (t, ids[-1], json.dumps(ids)))
        c.close()

    def test_max_age_removes_old_events(self):
        self.server.start()
        wait_for(lambda: os.path.exists(self.db), what="the record")
        self.server.stop()
        now = int(time.time() * 1000)
        self.fake_events(3, now - 40 * 86400 * 1000, "ancient")
        self.fake_events(2, now - 10 * 86400 * 1000, "recent")
        self.assertEqual(self.count("ancient"), 3)
        self.server.start()
        wait_for(lambda: self.count("ancient") == 0, timeout=20, what="the old events removed")
        self.assertEqual(self.count("recent"), 2)
        self.server.wait_log("3 old event(s) removed")

    def test_max_size_removes_oldest_events(self):
        self.server.write_conf(self.server.extra_conf + "\ndecision_log_max_size = 256k\n")
        self.server.start()
        wait_for(lambda: os.path.exists(self.db), what="the record")
        self.server.stop()
        now = int(time.time() * 1000)
        self.fake_events(1500, now - 3600 * 1000, "old", trace_len=1000)
        self.fake_events(5, now - 60 * 1000, "new", trace_len=1000)
        self.assertGreater(os.path.getsize(self.db), 1024 * 1024)
        self.server.start()

        def used():
            with sqlite3.connect(self.db) as c:
                pages, free, size = (c.execute("PRAGMA %s" % p).fetchone()[0]
                                     for p in ("page_count", "freelist_count", "page_size"))
                return (pages - free) * size
        wait_for(lambda: used() <= 256 * 1024, timeout=20, what="the record under 256k")
        self.assertEqual(self.count("new"), 5)
        self.assertLess(self.count("old"), 1500)


def py_terms(role, address):
    """The search terms of an address as core/record_db.c makes them."""
    letter = "s" if role == 1 else "o" if role == 3 else "r"
    a = address
    if len(a) >= 2 and a[0] == "<" and a[-1] == ">":
        a = a[1:-1]
    at = a.rfind("@")
    local, dom = (a[:at], a[at + 1:]) if at >= 0 else (a, "")
    local, dom = local[:255].lower(), dom[:255].lower()
    return [t for t in ("%s=%s@%s" % (letter, local, dom), "%s@%s" % (letter, dom)) if len(t) < 600]


def unfold(db):
    """The store as the writer kept it before schema 3: each folded delivery
    (event.dlv) a row of its own, with its own id, and the posting lists
    made again from every row (no delivery's terms on its transaction)."""
    c = sqlite3.connect(db)
    folded = 0
    with c:
        for qid, mid, sender, dlv in c.execute("SELECT queue_id, message_id, sender, dlv FROM event"
                                               " WHERE dlv IS NOT NULL").fetchall():
            for d in dlv.split("\x1c"):
                p = d.split("\x1f", 7)
                f = [None if x == "" else x[1:] for x in p[2:7]]
                delay = struct.unpack(">d", bytes.fromhex(p[1]))[0]
                c.execute("INSERT INTO event(id, ts, kind, outcome, service, queue_id, message_id, sender, relay,"
                          " dsn, reply, delay, refused, rcpts) VALUES(?, ?, 'delivery', ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                          " 0, ?)", (int(p[0]), int(p[0]) // 4096, f[0], f[1], qid, mid, sender, f[2], f[3], f[4],
                                     delay, p[7]))
                folded += 1
        c.execute("UPDATE event SET dlv = NULL")
        c.execute("DELETE FROM term")
        post = {}
        for eid, kind, client, user, sender, refused, rc in c.execute(
                "SELECT id, kind, client, user, sender, refused, rcpts FROM event").fetchall():
            terms = []
            for a in rc.split("\x1e") if rc else []:
                role, addr = a.split("\x1f")[:2]
                terms += py_terms(int(role), addr)
            if kind == "delivery" and sender is not None:
                terms += py_terms(1, sender)
            if client:
                terms.append("c=" + client)
            if user is not None:
                terms.append("u=" + user.lower())
            if kind == "smtp" and refused > 0:
                terms.append("x")
            for t in terms:
                post.setdefault(t, set()).add(eid)
        for t, ids in post.items():
            c.execute("INSERT INTO term(t, last, evs) VALUES(?, ?, ?)", (t, max(ids), json.dumps(sorted(ids))))
    c.close()
    return folded


class FoldedRows(unittest.TestCase):
    """One row per message (schema 3): a delivery written in the batch of
    its transaction is folded into the transaction's row. `postern why`
    must answer every question exactly as it did when each delivery had a
    row of its own: the same questions are asked of the store as written
    and of the same store unfolded (each folded delivery made a row again,
    as the writer of schema 2 kept it), outputs compared byte for byte --
    queue ids, Message-IDs, --from, --to (alias, domain, any-domain forms),
    --client, --rejected, time windows cutting between a transaction and
    its folded delivery, --limit across folded rows, text and --json. A
    delivery of a later batch (a slow next hop) keeps its own row. Then
    the unfolded store made schema 2 (dlv dropped): read as it is, and
    migrated by the server without losing an event."""

    @classmethod
    def setUpClass(cls):
        cls.dns = FakeDNS({(DOMAIN, "MX"): ["10 mail.%s" % DOMAIN], ("mail.%s" % DOMAIN, "A"): ["127.0.0.1"]},
                          zones=(DOMAIN,))
        cls.dns.start()
        cls.next_hop = Deferring(delay=1.5)
        cls.next_hop.start()
        cls.server = make_server()
        tmap = cls.server.path("transport")
        with open(tmap, "w") as f:
            f.write("relay.%s smtp:[127.0.0.1]:%d\n" % (DOMAIN, cls.next_hop.port))
        cls.server.write_conf("\n".join([
            "smtpd_relay_restrictions =",
            "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination",
            "relay_domains = relay.%s" % DOMAIN,
            "transport_maps = hash:%s" % tmap,
            "dns_servers = 127.0.0.1:%d" % cls.dns.port,
        ]))
        st = os.stat(cls.server.dir)
        for p in (tmap, cls.server.conf_file):
            os.chown(p, st.st_uid, st.st_gid)
        cls.server.start()
        cls.db = cls.server.path("queue", "decisions", "decisions.db")
        cls.drive()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        cls.next_hop.stop()
        cls.dns.stop()

    @classmethod
    def why_json(cls, *args):
        r = cls.server.cmd("why", "--json", *args)
        return json.loads(r.stdout.decode()) if r.returncode in (0, 1) else []

    @classmethod
    def pair(cls, tag):
        """A slow transaction (1.5 s from MAIL to its end) and a quick one
        that begins 0.5 s after it and ends first: the slow one's delivery
        is newer than the quick one's transaction and delivery, its row
        older than theirs."""
        port = cls.server.ports["smtpd"]

        def slow():
            c = Smtp(port, source="127.0.0.1")
            assert c.cmd("EHLO slow.example.net").startswith("250")
            assert c.cmd("MAIL FROM:<%s-slow@%s>" % (tag, DOMAIN)).startswith("250")
            time.sleep(1.5)
            assert c.cmd("RCPT TO:<alice@%s>" % DOMAIN).startswith("250")
            assert c.data("Subject: slow\nMessage-ID: <%s-slow@test>\n\nslow\n").startswith("250")
            c.close()
        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.5)
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
            s.sendmail("%s-fast@%s" % (tag, DOMAIN), ["alice@%s" % DOMAIN],
                       "Subject: fast\r\nMessage-ID: <%s-fast@test>\r\n\r\nfast\r\n" % tag)
        t.join(30)
        wait_for(lambda: len(cls.why_json("--from", tag + "-slow")) == 2 and len(cls.why_json(
            "--from", tag + "-fast")) == 2, timeout=20, what="the pair in the record")

    @classmethod
    def drive(cls):
        port = cls.server.ports["smtpd"]
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
            s.sendmail("bob@%s" % DOMAIN, ["alice@%s" % DOMAIN], "Subject: a\r\nMessage-ID: <fold-a@test>\r\n\r\na\r\n")
            s.sendmail("bob@%s" % DOMAIN, ["sysadmin@%s" % DOMAIN, "carol@%s" % DOMAIN],
                       "Subject: b\r\nMessage-ID: <fold-b@test>\r\n\r\nb\r\n")
            # Its delivery attempt comes 1.5 s later: another batch.
            s.sendmail("carol@%s" % DOMAIN, ["grey@relay.%s" % DOMAIN],
                       "Subject: r\r\nMessage-ID: <fold-relay@test>\r\n\r\nr\r\n")
        c = Smtp(port)
        assert c.cmd("EHLO client.example.net").startswith("250")
        assert c.cmd("MAIL FROM:<bob@%s>" % DOMAIN).startswith("250")
        assert c.cmd("RCPT TO:<alice@%s>" % DOMAIN).startswith("250")
        assert c.cmd("RCPT TO:<victim@other.test>").startswith("554")
        assert c.data("Subject: c\nMessage-ID: <fold-c@test>\n\nc\n").startswith("250")
        c.close()
        # The slow delivery must share its transaction's batch: the batch
        # may close between the two, so up to three tries.
        for i in range(3):
            cls.tag = "pair%d" % i
            cls.pair(cls.tag)
            with sqlite3.connect(cls.db) as c:
                if c.execute("SELECT count(*) FROM event WHERE sender = ? AND dlv IS NOT NULL",
                             ("%s-slow@%s" % (cls.tag, DOMAIN),)).fetchone()[0]:
                    break
        wait_for(lambda: any(e["kind"] == "delivery" for e in cls.why_json("--to", "grey@relay.%s" % DOMAIN)),
                 timeout=30, what="the deferred relay in the record")
        cls.server.stop()
        with sqlite3.connect(cls.db) as c:
            cls.folded_rows = c.execute("SELECT count(*) FROM event WHERE dlv IS NOT NULL").fetchone()[0]
            cls.slow_folded = c.execute("SELECT count(*) FROM event WHERE sender = ? AND dlv IS NOT NULL",
                                        ("%s-slow@%s" % (cls.tag, DOMAIN),)).fetchone()[0]
            cls.relay_rows = c.execute("SELECT count(*) FROM event WHERE kind = 'delivery' AND"
                                       " rcpts LIKE '%grey@relay%'").fetchone()[0]
            cls.times = sorted({t // 1000 for (t,) in c.execute("SELECT ts FROM event")} |
                               {int(x.split("\x1f")[0]) // 4096000 for (d,) in c.execute(
                                   "SELECT dlv FROM event WHERE dlv IS NOT NULL") for x in d.split("\x1c")})

    def questions(self):
        qs = []
        with sqlite3.connect(self.db) as c:
            for qid, mid in c.execute("SELECT queue_id, message_id FROM event WHERE kind = 'smtp'"
                                      " AND queue_id IS NOT NULL"):
                qs += [[qid], [mid], [mid.strip("<>")]]
        for a in (["--from", "bob"], ["--from", "@%s" % DOMAIN], ["--to", "alice"], ["--to", "alice@"],
                  ["--to", "sysadmin@"], ["--to", "SysAdmin@%s" % DOMAIN.upper()], ["--to", "@%s" % DOMAIN],
                  ["--to", "carol@%s" % DOMAIN], ["--to", "grey@relay.%s" % DOMAIN], ["--to", "victim"],
                  ["--from", "bob", "--to", "alice"], ["--from", self.tag + "-slow"], ["--client", "127.0.0.2"],
                  ["--client", "127.0.0.1", "--to", "alice"], ["--rejected"], ["--to", "<>"],
                  ["--since", "@%d" % self.times[0]]):
            for lim in ([], ["--limit", "1"], ["--limit", "2"], ["--limit", "3"], ["--limit", "0"]):
                qs.append(a + lim)
        # Every second boundary of the traffic: some cut between a
        # transaction and its folded delivery.
        for s in range(self.times[0], self.times[-1] + 2):
            for a in (["--since", "@%d" % s], ["--until", "@%d" % s], ["--to", "alice", "--since", "@%d" % s],
                      ["--from", self.tag + "-slow", "--until", "@%d" % s],
                      ["--from", self.tag + "-slow", "--since", "@%d" % s],
                      ["--since", "@%d" % s, "--limit", "2"], ["--until", "@%d" % s, "--limit", "3"]):
                qs.append(a)
        return qs

    def answers(self, qs):
        out = []
        for q in qs:
            for fmt in ([], ["--json"]):
                r = self.server.cmd("why", *(q + fmt))
                out.append((q + fmt, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode()))
        return out

    def test_same_answers_as_a_row_per_event(self):
        self.assertGreaterEqual(self.folded_rows, 4)
        self.assertEqual(self.slow_folded, 1, "the slow delivery never shared its transaction's batch")
        self.assertEqual(self.relay_rows, 1)
        # The slow one's delivery is newer than the quick transaction.
        ev = self.why_json("--to", "alice", "--since", "@%d" % self.times[0], "--limit", "0")
        order = [(e["kind"], e["sender"].split("@")[0]) for e in ev if e["sender"].startswith(self.tag)]
        self.assertEqual(order, [("delivery", self.tag + "-slow"), ("delivery", self.tag + "-fast"),
                                 ("smtp", self.tag + "-fast"), ("smtp", self.tag + "-slow")])
        self.assertEqual([e["ts"] for e in ev], sorted((e["ts"] for e in ev), reverse=True))
        # A window that cuts between the slow transaction and its delivery.
        smtp, dlv = ([e["ts"] for e in ev if e["sender"] == "%s-slow@%s" % (self.tag, DOMAIN) and e["kind"] == k]
                     for k in ("smtp", "delivery"))
        cut = int(smtp[0]) + 1
        self.assertLessEqual(cut, dlv[0])
        self.assertEqual([e["kind"] for e in self.why_json("--from", self.tag + "-slow", "--since", "@%d" % cut)],
                         ["delivery"])
        self.assertEqual([e["kind"] for e in self.why_json("--from", self.tag + "-slow", "--until", "@%d" % cut)],
                         ["smtp"])
        # --limit counts events: the first two of a folded row.
        r = self.server.cmd("why", "--json", "--from", self.tag + "-slow", "--limit", "1")
        self.assertEqual([e["kind"] for e in json.loads(r.stdout.decode())], ["delivery"])
        self.assertIn("only the newest 1 shown", r.stderr.decode())

        qs = self.questions()
        folded = self.answers(qs)
        saved = self.db + ".folded"
        shutil.copy(self.db, saved)
        self.assertGreaterEqual(unfold(self.db), 6)
        unfolded = self.answers(qs)
        for a, b in zip(folded, unfolded):
            self.assertEqual(a, b)
        self.assertTrue(any(rc == 0 for _, rc, _, _ in folded))

        # Schema 2: the same store without dlv, read as it is.
        with sqlite3.connect(self.db) as c:
            c.execute("ALTER TABLE event DROP COLUMN dlv")
            c.execute("PRAGMA user_version = 2")
        self.assertEqual(self.answers(qs), unfolded)
        # Migrated when the server opens it: every event still there.
        self.server.start()
        wait_for(lambda: sqlite3.connect(self.db).execute("PRAGMA user_version").fetchone()[0] == 3,
                 what="the store migrated")
        self.server.stop()
        with sqlite3.connect(self.db) as c:
            self.assertEqual(c.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        self.assertEqual(self.answers(qs), unfolded)


@unittest.skipUnless(os.geteuid() == 0, "privilege separation needs root")
class PrivilegeSeparated(unittest.TestCase):
    """As root the worker writes the record as mail_owner: the file is
    mail_owner's, mode 0600; root's `postern why` reads it (as its owner),
    another user's is refused."""

    def test_owner_and_readers(self):
        s = Server(modules=("mbox", "smtp"), listeners=("smtpd",), as_root=True, users=())
        self.addCleanup(s.cleanup)
        user = system_mail_user(s, "ptwhy", self.addCleanup)
        s.start()
        with smtplib.SMTP("127.0.0.1", s.ports["smtpd"], timeout=20) as c:
            c.sendmail("root-test@%s" % DOMAIN, ["%s@%s" % (user, DOMAIN)], "Subject: x\r\n\r\nx\r\n")
        db = s.path("queue", "decisions", "decisions.db")

        def story():
            r = s.cmd("why", "--from", "root-test", "--json", as_daemon_user=False)
            return r.returncode == 0 and json.loads(r.stdout.decode())
        ev = wait_for(lambda: (lambda e: e if e and len(e) >= 2 else None)(story()), timeout=20,
                      what="the message and its delivery")
        self.assertEqual(sorted(e["kind"] for e in ev), ["delivery", "smtp"])
        st = os.stat(db)
        import pwd
        self.assertEqual(st.st_uid, pwd.getpwnam(s.mail_owner).pw_uid)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        for name in os.listdir(os.path.dirname(db)):
            self.assertEqual(os.stat(os.path.join(os.path.dirname(db), name)).st_uid, st.st_uid, name)
        # Another user (the recipient) cannot read it.
        pw = pwd.getpwnam(user)

        def as_user():
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
        import subprocess
        from harness import BIN
        r = subprocess.run([BIN, "why", "-c", s.conf_file, "--from", "root-test"], capture_output=True,
                           env=s.env(), preexec_fn=as_user, timeout=30)
        self.assertEqual(r.returncode, 2, r.stdout)
        self.assertEqual(r.stdout, b"")
        self.assertIn(b"Permission denied (the decision record is for root and mail_owner)", r.stderr)


if __name__ == "__main__":
    unittest.main()
