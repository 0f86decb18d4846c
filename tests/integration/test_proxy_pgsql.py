"""Scaling out with PostgreSQL as the directory: a front, two mailbox
hosts and the database server, each in its own network namespace
(netns.py), and a client in a fifth:

    client --- front --- host1 (alice, carol)
                    |--- host2 (bob)
                    \\--- db   (Debian's postgres, pgsql_fixture.py)

The front's passdb/userdb are `pgsql:` (password_query returns the hash
and the user's host, proxy = yes) and its transport map is a query on the
same users table (result_format smtp:[%s]:PORT), as is its
relay_recipient_maps. Through the front: mail
to users on both hosts lands on the right one; IMAP and POP3 logins reach
the right host and see that mailbox; a wrong password or an injection
attempt stays at the front; the database stopped mid-test gives
temporary errors (451 at RCPT, NO [UNAVAILABLE], -ERR [SYS/TEMP]), mail
accepted meanwhile is deferred (its route cannot be looked up), and once
the database is back everything resumes and that mail reaches the right
host, once: nothing lost or misrouted.

Skipped, loudly, where the kernel refuses namespaces or PostgreSQL or the
module is missing."""
import imaplib
import os
import poplib
import signal
import smtplib
import time
import unittest
import uuid

import netns
from harness import MODULES, SANITIZE, Server, free_port, wait_for
from pgsql_fixture import PASSWORD_QUERY, USER_QUERY, Postgres, pgsql_available, user_row

TIMEOUT = 60 if SANITIZE else 30
NO_MODULE = None if os.path.exists(os.path.join(MODULES, "pgsql.so")) else \
    "the pgsql module is not built (cmake -DPOSTERN_PGSQL=OFF or no libpq-dev)"
WHY_NOT = NO_MODULE or pgsql_available() or netns.unavailable_reason()
if WHY_NOT:
    print("\n*** test_proxy_pgsql SKIPPED: %s ***\n" % WHY_NOT, flush=True)

COMMON = "auth_failure_delay = 0s\nauth_throttle = no\nsmtpd_client_name_timeout = 0\nauth_mechanisms = plain login\n"


def message(rcpt, subject):
    return ("From: sender@example.net\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.net>\r\n\r\n"
            "body of %s\r\n" % (rcpt, subject, uuid.uuid4().hex, subject))


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
class PgsqlFront(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.topo = netns.Topology()
        cls.servers = []
        cls.pg = None
        try:
            cls._build()
        except BaseException:
            cls._teardown()
            raise

    @classmethod
    def _build(cls):
        t = cls.topo
        for role in ("client", "front", "host1", "host2", "db"):
            t.add(role)
        cls.client_ip, cls.front_ip = t.link("client", "front")
        cls.front_ip1, cls.host1_ip = t.link("front", "host1")
        cls.front_ip2, cls.host2_ip = t.link("front", "host2")
        cls.front_ipdb, cls.db_ip = t.link("front", "db")

        ports = {l: free_port() for l in ("smtpd", "imap", "pop3")}
        cls.ports = ports
        cls.hosts = {}
        for name, ip, front_side, users in (("host1", cls.host1_ip, cls.front_ip1, ("alice", "carol", "dave")),
                                            ("host2", cls.host2_ip, cls.front_ip2, ("bob",))):
            s = Server(modules=("mbox", "smtp", "imap", "pop3"), users=users, listeners=tuple(ports),
                       netns=t.hosts[name], listen_addr=ip)
            s.ports.update(ports)
            s.write_conf("passdb = passwd-file:%s\n%slogin_trusted_networks = %s/32\n"
                         "smtpd_authorized_xclient_hosts = %s/32\n"
                         % (s.passwd_file, COMMON, front_side, front_side))
            cls.servers.append(s)
            cls.hosts[name] = s

        cls.pg = Postgres(netns=t.hosts["db"], addr=cls.db_ip)
        cls.pg.start()
        cls.pg.sql(user_row("alice", "{PLAIN}secret", host=cls.host1_ip)
                   + user_row("carol", "{PLAIN}secret", host=cls.host1_ip)
                   + user_row("dave", "{PLAIN}secret", host=cls.host1_ip)
                   + user_row("bob", "{PLAIN}secret", host=cls.host2_ip))

        f = Server(modules=("mbox", "transport", "restrict", "smtp", "imap", "pop3", "pgsql"), users=(),
                   listeners=("smtpd", "imap", "pop3"), netns=t.hosts["front"], listen_addr=cls.front_ip)
        users_cf, transport_cf = f.path("pgsql-users.cf"), f.path("pgsql-transport.cf")
        common = dict(timeout=3, cache_ttl=60, cache_negative_ttl=5, retry_max=1)
        with open(users_cf, "w") as fh:
            fh.write(cls.pg.cf_text(password_query=PASSWORD_QUERY, user_query=USER_QUERY, proxy="yes", **common))
        with open(transport_cf, "w") as fh:
            fh.write(cls.pg.cf_text(query="SELECT host FROM users WHERE name = '%u' AND host <> '' AND active",
                                    result_format="smtp:[%%s]:%d" % ports["smtpd"], domain="example.com.ar",
                                    **dict(common, cache_ttl=0)))
        # Recipient validation at the front (relay_recipient_maps): a row
        # for the user is OK, anyone else 550, the database down 451.
        rcpt_cf = f.path("pgsql-rcpt.cf")
        with open(rcpt_cf, "w") as fh:
            fh.write(cls.pg.cf_text(query="SELECT 'OK' FROM users WHERE name = '%u' AND active",
                                    domain="example.com.ar", **common))
        for p in (users_cf, transport_cf, rcpt_cf):
            os.chmod(p, 0o644)   # a throwaway database's password
        f.write_conf("passdb = pgsql:%s\nuserdb = pgsql:%s\n%s"
                     "mydestination = front.example.net\nrelay_domains = example.com.ar\n"
                     "transport_maps = pgsql:%s\ndisable_plaintext_auth = no\n"
                     "relay_recipient_maps = pgsql:%s\n"
                     "proxy_imap_port = %d\nproxy_pop3_port = %d\nproxy_timeout = 10s\n"
                     "minimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n"
                     % (users_cf, users_cf, COMMON, transport_cf, rcpt_cf, ports["imap"], ports["pop3"]))
        cls.front = f
        cls.servers.append(f)
        for s in cls.servers:
            s.start()

    @classmethod
    def _teardown(cls):
        for s in cls.servers:
            s.cleanup()
        if cls.pg:
            cls.pg.cleanup()
        cls.topo.close()

    @classmethod
    def tearDownClass(cls):
        cls._teardown()

    # ---- clients, from the client's namespace ----

    def smtp(self):
        with self.topo.hosts["client"].inside():
            return smtplib.SMTP(self.front_ip, self.front.ports["smtpd"], timeout=TIMEOUT)

    def send(self, rcpt, subject):
        with self.smtp() as c:
            c.ehlo("client.example.net")
            c.sendmail("sender@example.net", [rcpt], message(rcpt, subject))

    def rcpt(self, addr):
        with self.smtp() as c:
            c.ehlo("client.example.net")
            c.mail("sender@example.net")
            return c.rcpt(addr)

    def imap_login(self, user, password, search=None):
        with self.topo.hosts["client"].inside():
            c = imaplib.IMAP4(self.front_ip, self.front.ports["imap"], timeout=TIMEOUT)
        try:
            try:
                c.login('"%s"' % user.replace("\\", "\\\\").replace('"', '\\"'), password)
            except imaplib.IMAP4.error as e:
                return str(e)
            if search is None:
                return "OK"
            c.select("INBOX")
            return c.search(None, "SUBJECT", search)[1][0].split()
        finally:
            try:
                c.logout()
            except Exception:
                c.shutdown()

    def pop3_login(self, user, password):
        with self.topo.hosts["client"].inside():
            p = poplib.POP3(self.front_ip, self.front.ports["pop3"], timeout=TIMEOUT)
        try:
            p.user(user)
            p.pass_(password)
            n = p.stat()[0]
            return [b"\n".join(p.top(i, 0)[1]) for i in range(1, n + 1)]
        except poplib.error_proto as e:
            return e.args[0].decode()
        finally:
            try:
                p.quit()
            except Exception:
                p.close()

    def subjects(self, host, user):
        return [m["Subject"] for m in self.hosts[host].messages(user)]

    def wait_subject(self, host, user, subject):
        wait_for(lambda: subject in self.subjects(host, user), TIMEOUT,
                 what="%r in %s's mbox on %s" % (subject, user, host))

    # ---- the tests ----

    def test_mail_and_logins_reach_each_users_host(self):
        s1, s2 = "to-alice-" + uuid.uuid4().hex[:8], "to-bob-" + uuid.uuid4().hex[:8]
        self.send("alice@example.com.ar", s1)
        self.send("bob@example.com.ar", s2)
        self.wait_subject("host1", "alice", s1)
        self.wait_subject("host2", "bob", s2)
        self.assertEqual(self.hosts["host1"].messages("bob"), [])
        self.assertEqual(self.hosts["host2"].messages("alice"), [])
        # IMAP: each sees their own host's mailbox, not the other's mail
        self.assertTrue(self.imap_login("alice", "secret", s1))
        self.assertEqual(self.imap_login("alice", "secret", s2), [])
        self.assertTrue(self.imap_login("bob", "secret", s2))
        self.front.wait_log("proxy=%s" % self.host1_ip)
        self.front.wait_log("proxy=%s" % self.host2_ip)
        self.hosts["host1"].wait_log("proxied by %s: rip=%s" % (self.front_ip1, self.client_ip))
        # POP3 through the front: bob's host, bob's message
        tops = self.pop3_login("bob", "secret")
        self.assertIsInstance(tops, list, tops)
        self.assertTrue(any(s2.encode() in t for t in tops))
        self.hosts["host2"].wait_log("user=<bob>, method=PLAIN, rip=%s" % self.client_ip)

    def test_wrong_password_and_injection_stay_at_the_front(self):
        before = {n: len(h.log()) for n, h in self.hosts.items()}
        self.assertIn("AUTHENTICATIONFAILED", self.imap_login("alice", "wrong"))
        self.assertIsInstance(self.pop3_login("bob", "wrong"), str)
        for name in ("'; DROP TABLE users; --", "' OR '1'='1", "alice' --", "*)(uid=*"):
            self.assertIn("AUTHENTICATIONFAILED", self.imap_login(name, "secret"), name)
            self.assertEqual(self.rcpt("\"%s\"@example.com.ar" % name)[0], 550, name)
        self.front.wait_log("auth failed: user=<alice>")
        for n, h in self.hosts.items():
            new = [l for l in h.log()[before[n]:].splitlines()
                   if "login" in l.lower() or "auth" in l or "proxied by" in l]
            self.assertEqual(new, [], n)
        self.assertEqual(self.pg.sql("SELECT count(*) FROM users;").strip(), "4")
        self.assertGreater(self.pg.statements("$1 = '''; drop table users; --'"), 0)

    def test_user_cli_shows_the_host(self):
        r = self.front.cmd("user", "bob")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(("host\t%s\n" % self.host2_ip).encode(), r.stdout)
        r = self.front.cmd("map", "query", "pgsql:" + self.front.path("pgsql-transport.cf"), "alice@example.com.ar")
        self.assertEqual(r.stdout, ("smtp:[%s]:%d\n" % (self.host1_ip, self.ports["smtpd"])).encode(), r.stderr)

    def test_zz_database_down_tempfails_then_resumes(self):
        # dave is known to the front's smtpd (cached), not to its queue
        # manager; carol was never looked up: nothing about her is cached
        self.assertEqual(self.rcpt("dave@example.com.ar")[0], 250)
        queued = "queued-" + uuid.uuid4().hex[:8]
        self.pg.stop()
        # the route's answer is kept a second (cache_ttl = 0 in the
        # transport map): the queued mail asks the database again
        time.sleep(1.5)
        try:
            # accepted, then held: its route cannot be looked up
            self.send("dave@example.com.ar", queued)
            self.front.wait_log("status=deferred", timeout=TIMEOUT)
            self.assertEqual(self.hosts["host1"].messages("dave"), [])
            code, text = self.rcpt("carol@example.com.ar")
            self.assertEqual(code, 451, text)
            self.assertIn(b"4.3.0", text)
            self.assertIn("UNAVAILABLE", self.imap_login("carol", "secret"))
            self.assertIn("[SYS/TEMP]", self.pop3_login("carol", "secret"))
            self.assertIn("UNAVAILABLE", self.imap_login("nosuchuser", "secret"))
        finally:
            self.pg.start()
        subj = "after-" + uuid.uuid4().hex[:8]
        wait_for(lambda: self.rcpt("carol@example.com.ar")[0] == 250, TIMEOUT, what="RCPT accepted again")
        self.send("carol@example.com.ar", subj)
        self.wait_subject("host1", "carol", subj)
        self.assertEqual(self.hosts["host2"].messages("carol"), [])
        self.assertTrue(self.imap_login("carol", "secret", subj))
        # the mail that waited reaches dave's host, once
        self.wait_subject("host1", "dave", queued)
        self.assertEqual(self.subjects("host1", "dave").count(queued), 1)
        self.assertEqual(self.hosts["host2"].messages("dave"), [])
        for h in list(self.hosts.values()) + [self.front]:
            self.assertNotIn("status=bounced", h.log())

    def test_zzz_clean_stop(self):
        """The front (pool threads, connections, cache) stops cleanly: exit
        0, and under ASan + UBSan no leak or error on its stderr."""
        proc = self.front.proc
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        text = err.decode(errors="replace")
        self.assertEqual(proc.returncode, 0, text)
        self.assertNotIn("Sanitizer", text)
        self.assertNotIn("runtime error", text)


if __name__ == "__main__":
    unittest.main()
