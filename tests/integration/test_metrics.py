"""Live metrics (issue #14): real traffic through a real server, then the
counters read twice, from `postern stats --json` (the shared table under
queue_directory) and from the OpenMetrics endpoint (metrics_listen, parsed
by Debian's python3-prometheus-client), must have moved by exactly what the
traffic did: accepted mail, rejects by named rules, an alias fan-out, a
relay deferred by a loopback server answering 450, a bounce, good and bad
IMAP/POP3/SMTP AUTH logins, a connection refused by client_connection_limit,
Lua policy calls with an error and a budget overrun, TLS handshakes. Also:
the counters survive a reload, two servers never share them, `--watch`
prints plain lines into a pipe, the endpoint answers only GET /metrics,
and a user's mail process holds no mapping of the table."""
import base64
import imaplib
import json
import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
import unittest
import urllib.error
import urllib.request

import pwd

from harness import BIN, Server, free_port, started_pids, system_mail_user, wait_for
from test_relay import FakeSMTP

from prometheus_client.openmetrics.parser import text_string_to_metric_families

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE

POLICY = """\
return function(a)
  if a.sender == "loop@example.com.ar" then
    while true do end
  end
  if a.sender == "spam@example.com.ar" then
    return "REJECT no spam here"
  end
  return "DUNNO"
end
"""


def key(name, labels):
    return (name, tuple(sorted(labels.items())))


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fake = FakeSMTP(rcpt_reply=lambda a: "450 4.2.0 <%s>: Recipient address rejected: Greylisted" % a
                            if a.startswith("grey") else "550 5.1.1 <%s>: Recipient address rejected: User unknown" % a)
        cls.mport = free_port()
        s = cls.server = Server(modules=("mbox", "alias", "transport", "restrict", "smtp", "imap", "pop3"))
        policy = s.path("policy.lua")
        with open(policy, "w") as f:
            f.write(POLICY)
        tmap = s.path("transport")
        with open(tmap, "w") as f:
            f.write("relay.example.com.ar smtp:[127.0.0.1]:%d\n" % cls.fake.port)
        st = os.stat(s.dir)
        for p in (policy, tmap):
            os.chown(p, st.st_uid, st.st_gid)
        cls.policy = policy
        s.write_conf("\n".join([
            "passdb = passwd-file:%s" % s.passwd_file,
            "auth_mechanisms = plain login",
            "auth_failure_delay = 0s",
            "smtpd_client_name_timeout = 0",
            "relay_domains = relay.example.com.ar",
            "transport_maps = hash:%s" % tmap,
            "smtpd_relay_restrictions =",
            "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, check_lua_policy %s"
            % policy,
            "lua_policy_instruction_limit = 100000",
            "lua_policy_time_limit = 2s",
            "client_connection_limit = 3",
            "metrics_listen = 127.0.0.1:%d" % cls.mport,
        ]) + "\n")
        s.start()
        wait_for(lambda: os.path.exists(s.path("queue", "metrics")), 10, what="the metrics table")

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        cls.fake.stop()

    # ---- reading ----

    def stats_json(self, server=None):
        server = server or self.server
        r = server.cmd("stats", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        self.assertTrue(doc["running"])
        out = {}
        for m in doc["metrics"]:
            if m["type"] == "histogram":
                out[key(m["name"] + "_count", m["labels"])] = m["count"]
                out[key(m["name"] + "_sum", m["labels"])] = m["sum"]
            else:
                out[key(m["name"] + ("_total" if m["type"] == "counter" else ""), m["labels"])] = m["value"]
        return out

    def scrape(self, path="/metrics", method="GET"):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.mport, path), method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()

    def endpoint(self):
        status, headers, text = self.scrape()
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("application/openmetrics-text"), headers)
        self.assertTrue(text.endswith("# EOF\n"))
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name.endswith("_bucket") or s.name.endswith("_created"):
                    continue
                out[key(s.name, s.labels)] = s.value
        return out

    def read_both(self):
        """The table through both readers; they must agree (scrapes of the
        endpoint itself aside: reading it counts a connection)."""
        a = self.stats_json()
        b = self.endpoint()
        c = self.stats_json()
        self.assertEqual(a.keys() - {k for k in a if k[0].startswith("postern_connections")},
                         b.keys() - {k for k in b if k[0].startswith("postern_connections")})
        for k in a:
            if k[0].startswith(("postern_process", "postern_start", "postern_queue_oldest")) or \
                    dict(k[1]).get("service") == "metrics":
                continue
            if k[0].endswith("_sum"):
                self.assertAlmostEqual(a[k], b[k], places=3, msg=k)
            else:
                self.assertEqual(a[k], c[k], k)  # nothing moved meanwhile
                self.assertEqual(a[k], b[k], k)
        return a

    @staticmethod
    def delta(before, after):
        d = {}
        for k, v in after.items():
            if k[0].startswith(("postern_process", "postern_start", "postern_queue_oldest")) or k[0].endswith("_sum"):
                continue
            if dict(k[1]).get("service") == "metrics":
                continue  # the scrapes themselves
            n = v - before.get(k, 0)
            if n:
                d[k] = n
        return d

    # ---- traffic ----

    def smtp(self, source="127.0.0.1", port=None):
        c = smtplib.SMTP("127.0.0.1", port or self.server.ports["smtpd"], timeout=30, source_address=(source, 0))
        c.ehlo("client.example.com.ar")
        return c

    def wait_delivery_lines(self, n, since):
        wait_for(lambda: len(re.findall(r"status=(sent|deferred|bounced)", self.server.log()[since:])) >= n, 30,
                 what="%d delivery log lines" % n)

    def test_counters_move_exactly(self):
        s = self.server
        before = self.read_both()
        logpos = len(s.log())
        msg = "Subject: metrics\r\n\r\nbody\r\n"

        # Inside mynetworks: four accepted messages, one fanned out to two
        # mailboxes, one deferred by the relay (450), one bounced by it (550).
        c = self.smtp()
        c.sendmail("carol@example.com.ar", ["alice@example.com.ar"], msg)
        c.sendmail("carol@example.com.ar", ["sysadmin@example.com.ar"], msg)
        c.sendmail("carol@example.com.ar", ["grey@relay.example.com.ar"], msg)
        c.sendmail("carol@example.com.ar", ["gone@relay.example.com.ar"], msg)
        c.quit()
        # alice, alice+bob, the relay's deferral, the bounce, the bounce
        # notice delivered to carol: six delivery lines.
        self.wait_delivery_lines(6, logpos)
        s.wait_messages("carol", 1)

        # Outside mynetworks: rejects by named rules and the Lua policy.
        c = self.smtp("127.0.0.2")
        c.mail("someone@example.com.ar")
        self.assertEqual(c.rcpt("victim@other.test")[0], 554)           # reject_unauth_destination
        self.assertEqual(c.rcpt("nosuchuser@example.com.ar")[0], 550)   # lua DUNNO, then unlisted
        c.rset()
        c.mail("spam@example.com.ar")
        self.assertEqual(c.rcpt("alice@example.com.ar")[0], 554)        # lua REJECT
        c.rset()
        c.mail("loop@example.com.ar")
        self.assertEqual(c.rcpt("alice@example.com.ar"), (451, b"4.3.5 Server configuration problem"))
        c.rset()
        c.sendmail("someone@example.com.ar", ["bob@example.com.ar"], msg)  # lua DUNNO, accepted
        c.quit()
        s.wait_messages("bob", 2)

        # client_connection_limit = 3: the fourth connection is refused.
        held = [socket.create_connection(("127.0.0.1", s.ports["smtpd"]), timeout=10,
                                         source_address=("127.0.0.3", 0)) for _ in range(3)]
        for h in held:
            self.assertTrue(h.recv(200).startswith(b"220"))
        fourth = socket.create_connection(("127.0.0.1", s.ports["smtpd"]), timeout=10,
                                          source_address=("127.0.0.3", 0))
        fourth.settimeout(10)
        self.assertNotIn(b"220 ", fourth.recv(200))
        fourth.close()
        for h in held:
            h.close()

        # Logins, good then bad (a failure slows the next attempt from the
        # same address): IMAP, POP3, SMTP AUTH after STARTTLS.
        m = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=30)
        m.login("alice", "secret")
        m.logout()
        p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=30)
        p.user("alice")
        p.pass_("secret")
        p.quit()
        c = smtplib.SMTP("127.0.0.1", s.ports["submission"], timeout=30)
        c.starttls(context=CTX)
        c.login("alice", "secret")
        c.quit()
        m = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=30)
        with self.assertRaises(imaplib.IMAP4.error):
            m.login("alice", "wrong")
        m.logout()
        p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=30)
        p.user("alice")
        with self.assertRaises(poplib.error_proto):
            p.pass_("wrong")
        p.quit()
        c = smtplib.SMTP("127.0.0.1", s.ports["submission"], timeout=30)
        c.starttls(context=CTX)
        # one attempt (smtplib's login() would try a second mechanism)
        self.assertEqual(c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0wrong").decode())[0], 535)
        c.quit()

        # The mailbox shows a message a moment before the worker hears of
        # it and counts: wait for its log line (the seventh) instead.
        self.wait_delivery_lines(7, logpos)

        def settled():
            now = self.stats_json()
            return all(v == 0 for k, v in now.items() if k[0] == "postern_connections_open"
                       and dict(k[1]).get("service") != "metrics")
        wait_for(settled, 10, what="every connection closed")
        after = self.read_both()
        d = self.delta(before, after)

        def L(svc):
            return "127.0.0.1:%d" % s.ports[svc]
        lua = self.policy
        want = {
            key("postern_smtpd_messages_total", {"service": "smtpd", "result": "accepted"}): 5,
            key("postern_smtpd_decisions_total", {"stage": "RCPT", "result": "accept", "rule": "permit_mynetworks"}): 4,
            key("postern_smtpd_decisions_total", {"stage": "RCPT", "result": "accept", "rule": "none"}): 1,
            key("postern_smtpd_decisions_total", {"stage": "RCPT", "result": "reject",
                                                  "rule": "reject_unauth_destination"}): 1,
            key("postern_smtpd_decisions_total", {"stage": "RCPT", "result": "reject",
                                                  "rule": "smtpd_reject_unlisted_recipient"}): 1,
            key("postern_smtpd_decisions_total", {"stage": "RCPT", "result": "reject",
                                                  "rule": "%s:6" % lua}): 1,
            key("postern_smtpd_decisions_total", {"stage": "RCPT", "result": "defer",
                                                  "rule": "%s:3" % lua}): 1,
            key("postern_smtpd_decisions_total", {"stage": "DATA", "result": "accept", "rule": "none"}): 5,
            key("postern_smtpd_decisions_total", {"stage": "END-OF-MESSAGE", "result": "accept", "rule": "none"}): 5,
            key("postern_deliveries_total", {"transport": "local", "status": "sent"}): 5,
            key("postern_queue_messages", {"queue": "deferred"}): 1,
            key("postern_deliveries_total", {"transport": "smtp", "status": "deferred"}): 1,
            key("postern_deliveries_total", {"transport": "smtp", "status": "bounced"}): 1,
            key("postern_delivery_delay_seconds_count", {"transport": "local"}): 5,
            key("postern_lua_calls_total", {"policy": lua}): 4,
            key("postern_lua_errors_total", {"policy": lua}): 1,
            key("postern_lua_budget_overruns_total", {"policy": lua}): 1,
            key("postern_connections_total", {"service": "smtpd", "listener": L("smtpd")}): 6,
            key("postern_connections_refused_total", {"service": "smtpd", "listener": L("smtpd"),
                                                      "limit": "client_connection_limit"}): 1,
            key("postern_connections_total", {"service": "imap-login", "listener": L("imap")}): 2,
            key("postern_connections_total", {"service": "pop3-login", "listener": L("pop3")}): 2,
            key("postern_connections_total", {"service": "submission", "listener": L("submission")}): 2,
            key("postern_tls_handshakes_total", {"service": "submission", "version": "TLSv1.3"}): 2,
            key("postern_logins_total", {"protocol": "imap", "result": "ok"}): 1,
            key("postern_logins_total", {"protocol": "imap", "result": "failed"}): 1,
            key("postern_logins_total", {"protocol": "pop3", "result": "ok"}): 1,
            key("postern_logins_total", {"protocol": "pop3", "result": "failed"}): 1,
            key("postern_logins_total", {"protocol": "smtp", "result": "ok"}): 1,
            key("postern_logins_total", {"protocol": "smtp", "result": "failed"}): 1,
        }
        self.assertEqual(d, want, "\ngot:  %s\nwant: %s" % (sorted(d.items()), sorted(want.items())))
        # the deferred message waits in the queue; the gauges say so
        self.assertEqual(after[key("postern_queue_messages", {"queue": "deferred"})], 1)
        self.assertGreaterEqual(after[key("postern_queue_oldest_age_seconds", {})], 0)
        for role in ("master", "worker", "delivery"):
            self.assertGreater(after[key("postern_process_resident_bytes", {"role": role})], 100000, role)

        # A reload starts a new generation: nothing is lost, counting goes on.
        r = s.cmd("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        s.wait_log("reload: configuration reloaded")
        c = self.smtp()
        c.sendmail("carol@example.com.ar", ["alice@example.com.ar"], msg)
        c.quit()
        wait_for(lambda: self.stats_json()[key("postern_deliveries_total",
                                               {"transport": "local", "status": "sent"})]
                 == after[key("postern_deliveries_total", {"transport": "local", "status": "sent"})] + 1,
                 20, what="the delivery after the reload")
        again = self.read_both()
        d = self.delta(after, again)
        d = {k: v for k, v in d.items() if k[0] != "postern_connections_open"}
        self.assertEqual(d, {
            key("postern_reloads_total", {}): 1,
            key("postern_smtpd_messages_total", {"service": "smtpd", "result": "accepted"}): 1,
            key("postern_smtpd_decisions_total", {"stage": "RCPT", "result": "accept", "rule": "permit_mynetworks"}): 1,
            key("postern_smtpd_decisions_total", {"stage": "DATA", "result": "accept", "rule": "none"}): 1,
            key("postern_smtpd_decisions_total", {"stage": "END-OF-MESSAGE", "result": "accept", "rule": "none"}): 1,
            key("postern_deliveries_total", {"transport": "local", "status": "sent"}): 1,
            key("postern_delivery_delay_seconds_count", {"transport": "local"}): 1,
            key("postern_connections_total", {"service": "smtpd", "listener": L("smtpd")}): 1,
        })

    def test_two_servers_do_not_share(self):
        other = Server(modules=("mbox", "smtp"))
        self.addCleanup(other.cleanup)
        other.start()
        wait_for(lambda: os.path.exists(other.path("queue", "metrics")), 10, what="the second table")
        mine = self.stats_json()
        c = self.smtp(port=other.ports["smtpd"])
        c.sendmail("carol@example.com.ar", ["alice@example.com.ar"], "Subject: x\r\n\r\nx\r\n")
        c.quit()
        other.wait_messages("alice", 1)
        k = key("postern_smtpd_messages_total", {"service": "smtpd", "result": "accepted"})
        wait_for(lambda: self.stats_json(other).get(k) == 1, 10, what="the second server's count")
        self.assertEqual(self.stats_json().get(k), mine.get(k))

    def test_watch_plain_lines_into_a_pipe(self):
        r = self.server.cmd("stats", "--watch", "--count", "2", timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertNotIn("\033", out)
        self.assertEqual(out.count("postern stats "), 2, out)
        self.assertEqual(out.count("RATE/s"), 1, out)  # rates from the second refresh on
        self.assertRegex(out, r"\nsmtpd_messages +service=smtpd result=accepted +\d+ +\d+\.\d\n")

    def test_table_and_errors(self):
        r = self.server.cmd("stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("METRIC", r.stdout.decode())
        self.assertRegex(r.stdout.decode(), r"\nlogins +protocol=\w+ result=\w+ +\d+")
        r = self.server.cmd("stats", "--bogus")
        self.assertEqual(r.returncode, 2)
        r = self.server.cmd("stats", "--openmetrics")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(list(text_string_to_metric_families(r.stdout.decode())))

    def test_endpoint_http(self):
        for path in ("/", "/metrics/x", "/other"):
            with self.assertRaises(urllib.error.HTTPError) as e:
                self.scrape(path)
            self.assertEqual(e.exception.code, 404, path)
        with self.assertRaises(urllib.error.HTTPError) as e:
            self.scrape(method="POST")
        self.assertEqual(e.exception.code, 405)
        status, headers, body = self.scrape(method="HEAD")
        self.assertEqual((status, body), (200, ""))
        self.assertGreater(int(headers["Content-Length"]), 100)
        status, _, body = self.scrape("/metrics?x=1")
        self.assertEqual(status, 200)
        # An oversized request head is answered 431 and closed.
        with socket.create_connection(("127.0.0.1", self.mport), timeout=10) as c:
            c.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000)
            self.assertTrue(c.recv(100).startswith(b"HTTP/1.1 431"))
        # curl, the admin's tool
        if shutil.which("curl"):
            r = subprocess.run(["curl", "-sf", "http://127.0.0.1:%d/metrics" % self.mport], capture_output=True,
                               timeout=20)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(r.stdout.endswith(b"# EOF\n"))
            self.assertIn(b"# TYPE postern_smtpd_messages counter", r.stdout)

    def test_mail_process_has_no_mapping(self):
        s = self.server
        m = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=30)
        self.addCleanup(m.logout)
        m.login("bob", "secret")
        m.select("INBOX")
        table = os.path.realpath(s.path("queue", "metrics"))

        def maps(pid):
            try:
                with open("/proc/%d/maps" % pid) as f:
                    return f.read()
            except OSError:
                return ""
        kids = set(s.children(s.pid))
        grandchildren = [p for c in kids for p in s.children(c)]
        self.assertTrue(grandchildren, "no mail process found")
        self.assertIn(table, maps(s.pid))
        for p in grandchildren:
            self.assertFalse(table in maps(p), "mail process %d maps the table" % p)


@unittest.skipUnless(os.geteuid() == 0, "privilege separation needs root")
class RootMetrics(unittest.TestCase):
    """As root: the table is root's, readable by mail_owner's group only;
    a user's mail process (running as that user) has no mapping of it, and
    its login is counted in the worker all the same."""

    def test_owner_and_mail_process(self):
        s = Server(modules=("mbox", "smtp", "imap"), as_root=True, users=())
        self.addCleanup(s.cleanup)
        user = system_mail_user(s, "ptmx", self.addCleanup)
        s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\n" % s.passwd_file)
        s.start()
        table = s.path("queue", "metrics")
        wait_for(lambda: os.path.exists(table), 10, what="the metrics table")
        st = os.stat(table)
        owner = pwd.getpwnam(s.mail_owner)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777), (0, owner.pw_gid, 0o640))

        def stats(as_user):
            pw = pwd.getpwnam(as_user)

            def drop():
                os.setgroups([])
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
            return subprocess.run([BIN, "stats", "--json", "-c", s.conf_file], capture_output=True, timeout=30,
                                  preexec_fn=drop)
        # mail_owner may read; another user may not
        os.chmod(s.conf_file, 0o644)
        r = stats(s.mail_owner)
        self.assertEqual(r.returncode, 0, r.stderr)
        k = [m for m in json.loads(r.stdout)["metrics"] if m["name"] == "postern_logins"]
        self.assertEqual(k, [])
        r = stats("nobody")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"readable by root and mail_owner only", r.stderr)

        imap = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=30)
        self.addCleanup(imap.logout)
        imap.login(user, "secret")
        imap.select("INBOX")
        pids = started_pids(s.log())
        mail_procs = s.children(pids["mail"])
        self.assertEqual(len(mail_procs), 1)
        uid = pwd.getpwnam(user).pw_uid
        with open("/proc/%d/status" % mail_procs[0]) as f:
            self.assertIn("Uid:\t%d\t" % uid, f.read())
        real = os.path.realpath(table)
        with open("/proc/%d/maps" % mail_procs[0]) as f:
            self.assertFalse(real in f.read(), "the user's mail process maps the table")
        with open("/proc/%d/maps" % pids["worker"]) as f:
            self.assertIn(real, f.read())
        r = s.cmd("stats", "--json")
        got = {(m["labels"].get("protocol"), m["labels"].get("result")): m["value"]
               for m in json.loads(r.stdout)["metrics"] if m["name"] == "postern_logins"}
        self.assertEqual(got, {("imap", "ok"): 1})
        roles = {m["labels"]["role"]: m["value"] for m in json.loads(r.stdout)["metrics"]
                 if m["name"] == "postern_processes"}
        self.assertEqual(roles.get("mail"), 1, roles)
        self.assertEqual(roles.get("auth"), 1, roles)


if __name__ == "__main__":
    unittest.main()
