"""The pgsql module against a real PostgreSQL server (Debian's postgres,
started here by pgsql_fixture.py on a loopback port as a throwaway user):
aliases, the transport and access maps, the userdb and passdb from the
database; every key a query parameter (injection attempts find nothing
and the tables are still there); the database down gives temporary
failures only (451 4.3.0, NO [UNAVAILABLE], -ERR [SYS/TEMP], 454),
nothing bounced or lost, mail delivered once it is back; a restarted
server is reconnected to; a server that accepts and never answers stalls
nobody else; the cache answers again without asking, negative answers
included; `postern check` reports FILE:LINE problems."""
import imaplib
import os
import poplib
import pwd
import smtplib
import socket
import ssl
import threading
import time
import unittest

from harness import MODULES, Server, wait_for
from pgsql_fixture import (ACCESS_QUERY, ALIAS_QUERY, PASSWORD_QUERY, TRANSPORT_QUERY, USER_QUERY, Postgres,
                           access_row, alias_row, pgsql_available, transport_row, user_row)

NO_MODULE = None if os.path.exists(os.path.join(MODULES, "pgsql.so")) else \
    "the pgsql module is not built (cmake -DPOSTERN_PGSQL=OFF or no libpq-dev)"
WHY_NOT = NO_MODULE or pgsql_available()
if WHY_NOT:
    print("\n*** test_pgsql SKIPPED: %s ***\n" % WHY_NOT)

# "alicepw" as SHA512-CRYPT, checked by the core
ALICE_HASH = "{CRYPT}$6$abcdefgh$Is3kZSztnMPZAznDT2TCAPxT9phlTw5Pdn18vOhvb7Xdi.wDEuVZcrX3YdfoOhgdEOLvVEE/l8Vev0nuc3Obx0"
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE
INJECTIONS = ("'; DROP TABLE users; --", "' OR '1'='1", "lbob' --", "*)(uid=*", "lbob%", "%", "x" * 300, "x" * 2000)


def send(port, rcpts, sender="carol@example.com.ar", subject="test"):
    msg = "From: %s\r\nSubject: %s\r\n\r\nbody\r\n" % (sender, subject)
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.ehlo("client.example.com.ar")
        return s.sendmail(sender, rcpts, msg)


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
class PgsqlTest(unittest.TestCase):
    negttl = 30
    as_root = True

    def setUp(self):
        # pgsql last: its map type does not depend on the module order
        self.server = Server(modules=("mbox", "alias", "transport", "restrict", "smtp", "imap", "pop3", "pgsql"),
                             users=(), as_root=self.as_root)
        self.addCleanup(self.server.cleanup)
        home = self.server.path("home")
        owner = self.server.mail_owner or self.server.run_user
        self.uid = pwd.getpwnam(owner).pw_uid
        for u in ("lalice", "lbob"):
            d = os.path.join(home, u, "mail")
            os.makedirs(d, exist_ok=True)
            os.chown(os.path.join(home, u), self.uid, -1)
            os.chown(d, self.uid, -1)
        os.chmod(self.server.path("spool"), 0o1777)
        self.pg = Postgres()
        self.addCleanup(self.pg.cleanup)
        self.pg.start()
        self.pg.sql(user_row("lalice", ALICE_HASH, self.uid, home=os.path.join(home, "lalice"))
                    + user_row("lbob", "{PLAIN}bobpw", self.uid, home=os.path.join(home, "lbob"))
                    + user_row("gone", "{PLAIN}gonepw", self.uid, home=os.path.join(home, "lbob"), active=False)
                    + alias_row("team", ["lalice", "lbob"])
                    + alias_row("boss", ["lalice"])
                    + transport_row("routed.example", "error:5.1.1 routed by the database")
                    + access_row("blocked@example.com.ar", "REJECT blocked by the database"))
        common = dict(timeout=3, cache_ttl=60, cache_negative_ttl=self.negttl, retry_max=1)
        self.cf = {}
        for name, extra in (("aliases", dict(query=ALIAS_QUERY)),
                            ("transport", dict(query=TRANSPORT_QUERY)),
                            ("access", dict(query=ACCESS_QUERY)),
                            ("users", dict(user_query=USER_QUERY, password_query=PASSWORD_QUERY))):
            path = self.server.path("pgsql-%s.cf" % name)
            with open(path, "w") as f:
                f.write(self.pg.cf_text(**dict(common, **extra)))
            # the database password inside: root and mail_owner's group only
            os.chown(path, 0, pwd.getpwnam(owner).pw_gid)
            os.chmod(path, 0o640)
            self.cf[name] = path
        self.server.write_conf(
            "alias_maps = pgsql:%s\n" % self.cf["aliases"]
            + "transport_maps = pgsql:%s\n" % self.cf["transport"]
            + "relay_domains = routed.example\n"
            + "smtpd_recipient_restrictions = check_recipient_access pgsql:%s, permit_mynetworks, "
              "reject_unauth_destination\n" % self.cf["access"]
            + "userdb = pgsql:%s\n" % self.cf["users"]
            + "passdb = pgsql:%s\n" % self.cf["users"]
            + "auth_mechanisms = plain login\n"
            + "disable_plaintext_auth = no\nauth_failure_delay = 0\nauth_throttle = no\n"
            + "minimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n")
        self.server.start()
        self.smtp = self.server.ports["smtpd"]

    def rcpt(self, addr):
        with smtplib.SMTP("127.0.0.1", self.smtp, timeout=60) as s:
            s.ehlo("client.example.com.ar")
            s.mail("carol@example.com.ar")
            return s.rcpt(addr)

    def imap_login(self, user, password):
        c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        try:
            # a quoted string: the name reaches the server as typed
            c.login('"%s"' % user.replace("\\", "\\\\").replace('"', '\\"'), password)
            return "OK"
        except imaplib.IMAP4.error as e:
            return str(e)
        finally:
            try:
                c.logout()
            except Exception:
                c.shutdown()

    def pop3_login(self, user, password):
        c = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=60)
        try:
            c.user(user)
            c.pass_(password)
            return "OK"
        except poplib.error_proto as e:
            return e.args[0].decode()
        finally:
            try:
                c.quit()
            except Exception:
                c.close()

    def smtp_auth(self, user, password):
        with smtplib.SMTP("127.0.0.1", self.server.ports["submission"], timeout=60) as c:
            c.ehlo("client.example.com.ar")
            c.starttls(context=CTX)
            c.ehlo("client.example.com.ar")
            try:
                c.login(user, password)
                return 235
            except smtplib.SMTPAuthenticationError as e:
                return e.smtp_code

    def users_intact(self):
        self.assertEqual(self.pg.sql("SELECT count(*) FROM users;").strip(), "3")
        self.assertEqual(self.pg.sql("SELECT count(*) FROM aliases;").strip(), "3")

    # ---- maps ----

    def test_alias_from_pgsql_expands(self):
        send(self.smtp, ["team@example.com.ar"], subject="to the team")
        self.assertEqual(self.server.wait_messages("lalice", 1, timeout=60)[0]["Subject"], "to the team")
        self.assertEqual(self.server.wait_messages("lbob", 1, timeout=60)[0]["Subject"], "to the team")

    def test_map_query_and_check_cli(self):
        r = self.server.cmd("map", "query", "pgsql:" + self.cf["aliases"], "team")
        self.assertEqual((r.returncode, r.stdout), (0, b"lalice, lbob\n"), r.stderr)
        r = self.server.cmd("map", "query", "pgsql:" + self.cf["aliases"], "TEAM")
        self.assertEqual((r.returncode, r.stdout), (0, b"lalice, lbob\n"), r.stderr)
        r = self.server.cmd("map", "query", "pgsql:" + self.cf["aliases"], "nosuch")
        self.assertEqual(r.returncode, 1, r.stderr)
        r = self.server.cmd("user", "lbob")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(("home\t%s\n" % self.server.path("home", "lbob")).encode(), r.stdout)
        self.assertIn(("uid\t%d\n" % self.uid).encode(), r.stdout)
        self.assertEqual(self.server.cmd("user", "gone").returncode, 67)
        self.assertEqual(self.server.cmd("check").returncode, 0)
        # a bad placeholder and an unknown setting, each at its line
        with open(self.cf["aliases"], "a") as f:
            f.write("bogus_setting = 1\nresult_format = %q\n")
        lines = open(self.cf["aliases"]).read().count("\n")
        r = self.server.cmd("check")
        out = (r.stdout + r.stderr).decode()
        self.assertEqual(r.returncode, 1, out)
        self.assertIn('pgsql-aliases.cf:%d: unknown setting "bogus_setting"' % (lines - 1), out)
        self.assertIn("pgsql-aliases.cf:%d: result_format: bad %% sequence" % lines, out)
        # a query splicing the key into a longer literal is refused
        with open(self.cf["access"], "a") as f:
            f.write("query = SELECT action FROM access WHERE key = '%u@example.com.ar'\n")
        r = self.server.cmd("check")
        self.assertIn("pgsql-access.cf:", (r.stdout + r.stderr).decode())
        self.assertIn("cannot be a parameter", (r.stdout + r.stderr).decode())
        # a passdb file without password_query
        with open(self.cf["transport"]) as f:
            text = f.read()
        with open(self.cf["users"], "w") as f:
            f.write(text)
        r = self.server.cmd("check")
        out = (r.stdout + r.stderr).decode()
        self.assertIn("password_query is not set", out)
        self.assertIn("user_query is not set", out)

    def test_connection_settings_and_limits(self):
        def query(text, key):
            path = self.server.path("extra.cf")
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o644)
            return self.server.cmd("map", "query", "pgsql:" + path, key)
        conn = ("dbname = mail\nuser = postern\npassword = pgsecret\ntimeout = 3\nquery = %s\n" % ALIAS_QUERY)
        # the first host refuses: the next one in the list answers
        from harness import free_port
        r = query("hosts = inet:127.0.0.1:%d, 127.0.0.1:%d\n%s" % (free_port(), self.pg.port, conn), "team")
        self.assertEqual((r.returncode, r.stdout), (0, b"lalice, lbob\n"), r.stderr)
        # a libpq connection string instead
        r = query("connect = host=127.0.0.1 port=%d dbname=mail user=postern password=pgsecret\n"
                  "query = %s\n" % (self.pg.port, ALIAS_QUERY), "team")
        self.assertEqual((r.returncode, r.stdout), (0, b"lalice, lbob\n"), r.stderr)
        # result_format on each value; more values than expansion_limit:
        # an error (temporary), never half a list
        base = "hosts = 127.0.0.1:%d\n%s" % (self.pg.port, conn)
        r = query(base + "result_format = %s@example.com.ar\n", "team")
        self.assertEqual(r.stdout, b"lalice@example.com.ar, lbob@example.com.ar\n", r.stderr)
        r = query(base + "expansion_limit = 1\n", "team")
        self.assertEqual((r.returncode, r.stdout), (2, b""), r.stderr)
        r = query(base + "expansion_limit = 1\n", "boss")
        self.assertEqual((r.returncode, r.stdout), (0, b"lalice\n"), r.stderr)
        # domain: only user@listed-domain keys are looked up
        r = query(base + "domain = example.com.ar\n", "team")
        self.assertEqual(r.returncode, 1, r.stderr)
        # a wrong database password: a temporary failure, not "not found"
        r = query(base.replace("pgsecret", "wrong"), "team")
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_unknown_user_rejected_at_rcpt(self):
        code, text = self.rcpt("nosuchuser@example.com.ar")
        self.assertEqual(code, 550, text)
        self.assertEqual(self.rcpt("gone@example.com.ar")[0], 550)
        self.assertEqual(self.rcpt("lbob@example.com.ar")[0], 250)

    def test_transport_map_from_pgsql_routes(self):
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            send(self.smtp, ["x@routed.example"])
        self.assertIn("routed by the database", str(cm.exception))

    def test_access_map_from_pgsql(self):
        code, text = self.rcpt("blocked@example.com.ar")
        self.assertEqual(code, 554, text)
        self.assertIn(b"blocked by the database", text)
        self.assertEqual(self.rcpt("lbob@example.com.ar")[0], 250)

    # ---- injection: every key is one parameter value ----

    def test_injection_finds_nothing(self):
        for name in INJECTIONS:
            code, text = self.rcpt("\"%s\"@example.com.ar" % name.replace('"', ''))
            self.assertEqual(code // 100, 5, (name, code, text))
            self.assertIn("AUTHENTICATIONFAILED", self.imap_login(name, "bobpw"), name)
            self.assertTrue(self.pop3_login(name, "bobpw").startswith("-ERR"), name)
            self.assertEqual(self.smtp_auth(name, "bobpw") // 100, 5, name)
        # a NUL inside the name (POP3 USER, raw): refused, never a query
        # for a shortened "lbob"
        with socket.create_connection(("127.0.0.1", self.server.ports["pop3"]), 30) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"USER lbob\x00' OR '1'='1\r\n")
            f.readline()
            s.sendall(b"PASS bobpw\r\n")
            self.assertTrue(f.readline().startswith(b"-ERR"))
        self.users_intact()
        # the statements carried the names as parameters, doubled quotes
        # and all, and no other statement ran
        self.assertGreater(self.pg.statements("= '''; drop table users; --'"), 0)
        log = self.pg.read_log()
        self.assertNotIn("DROP TABLE users", log.split("GRANT SELECT")[-1])

    # ---- logins with the SQL passdb ----

    def test_logins(self):
        self.assertEqual(self.imap_login("lbob", "bobpw"), "OK")
        self.assertEqual(self.imap_login("lalice", "alicepw"), "OK")
        self.assertIn("AUTHENTICATIONFAILED", self.imap_login("lbob", "wrong"))
        self.assertIn("AUTHENTICATIONFAILED", self.imap_login("gone", "gonepw"))
        self.assertEqual(self.pop3_login("lbob", "bobpw"), "OK")
        self.assertTrue(self.pop3_login("lbob", "wrong").startswith("-ERR [AUTH]"))
        self.assertEqual(self.smtp_auth("lbob", "bobpw"), 235)
        self.assertEqual(self.smtp_auth("lbob", "wrong"), 535)

    # ---- the database down: temporary failures only ----

    def test_database_down_tempfails_nothing_lost(self):
        # warm: "boss" is known to be an alias (cached) before it stops
        self.assertEqual(self.rcpt("boss@example.com.ar")[0], 250)
        self.assertEqual(self.imap_login("lalice", "alicepw"), "OK")
        self.pg.stop()
        code, text = self.rcpt("lbob@example.com.ar")
        self.assertEqual(code, 451, text)
        self.assertIn(b"4.3.0", text)
        self.assertIn("UNAVAILABLE", self.imap_login("lbob", "bobpw"))
        self.assertTrue(self.pop3_login("lbob", "bobpw").startswith("-ERR [SYS/TEMP]"))
        self.assertEqual(self.smtp_auth("lbob", "bobpw"), 454)
        # lalice's row (and her checked password, in the core's credential
        # cache) are remembered for cache_ttl: her login still works, and
        # another password is checked against that row and refused
        self.assertEqual(self.imap_login("lalice", "alicepw"), "OK")
        self.assertIn("AUTHENTICATIONFAILED", self.imap_login("lalice", "otherpw"))
        # never an accept of an unknown user, never a login
        self.assertEqual(self.rcpt("nosuchuser@example.com.ar")[0], 451)
        self.assertIn("UNAVAILABLE", self.imap_login("nosuch", "x"))
        # accepted (the alias is cached), then deferred while the
        # database is away: never bounced
        send(self.smtp, ["boss@example.com.ar"], subject="while down")
        self.server.wait_log("status=deferred", timeout=30)
        time.sleep(2)
        self.assertEqual(self.server.messages("lalice"), [])
        self.assertNotIn("status=bounced", self.server.log())
        self.pg.start()
        self.assertEqual(self.server.wait_messages("lalice", 1, timeout=60)[0]["Subject"], "while down")
        self.assertNotIn("status=bounced", self.server.log())
        wait_for(lambda: self.imap_login("lbob", "bobpw") == "OK", timeout=30, what="logins again")
        self.assertEqual(self.imap_login("lalice", "alicepw"), "OK")
        self.assertEqual(self.rcpt("lbob@example.com.ar")[0], 250)

    def test_restarted_server_reconnected(self):
        # connections are open (pooled) and warm
        self.assertEqual(self.rcpt("lbob@example.com.ar")[0], 250)
        self.assertEqual(self.imap_login("lbob", "bobpw"), "OK")
        self.pg.stop()
        self.pg.start()
        # the old connections are dead; nothing was asked meanwhile, so
        # the first lookups go through on new ones, no 4xx
        self.assertEqual(self.rcpt("lalice@example.com.ar")[0], 250)
        self.assertEqual(self.imap_login("lalice", "alicepw"), "OK")
        self.assertEqual(self.rcpt("nosuchuser2@example.com.ar")[0], 550)

    def test_terminated_sessions_reconnected(self):
        """The server ends the module's sessions (pg_terminate_backend: the
        FATAL 57P01 a shutdown sends too): the next lookups go through on
        new connections, never a 4xx."""
        self.pg.sql("".join(user_row("fresh%d" % i, "{PLAIN}x", self.uid, home=self.server.path("home", "lbob"))
                            for i in range(5)))
        for i in range(5):
            self.assertEqual(self.rcpt("lbob@example.com.ar")[0], 250)
            self.pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'postern';")
            time.sleep(0.2)
            for who, want in (("fresh%d" % i, 250), ("nosuch%d" % i, 550)):
                code, text = self.rcpt("%s@example.com.ar" % who)
                self.assertEqual(code, want, (i, who, text))

    # ---- the cache ----

    def test_cache_and_negative_entries(self):
        # each RCPT asks the alias map and the userdb: the first round
        # reaches the server, the next ones are answered by the cache
        self.assertEqual(self.rcpt("nobody42@example.com.ar")[0], 550)
        self.assertEqual(self.rcpt("lbob@example.com.ar")[0], 250)
        time.sleep(0.5)
        neg, pos = self.pg.statements("$1 = 'nobody42'"), self.pg.statements("$1 = 'lbob'")
        self.assertGreater(neg, 0)
        self.assertGreater(pos, 0)
        for _ in range(3):
            self.assertEqual(self.rcpt("nobody42@example.com.ar")[0], 550)
            self.assertEqual(self.rcpt("lbob@example.com.ar")[0], 250)
        time.sleep(0.5)
        self.assertEqual(self.pg.statements("$1 = 'nobody42'"), neg)
        self.assertEqual(self.pg.statements("$1 = 'lbob'"), pos)
        # a row added now is not seen while the negative entry lasts
        self.pg.sql(alias_row("nobody42", ["lbob"]))
        self.assertEqual(self.rcpt("nobody42@example.com.ar")[0], 550)


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
class PgsqlShortTtlTest(PgsqlTest):
    """cache_negative_ttl = 2: a negative entry expires, the new row is
    found."""
    negttl = 2

    def test_negative_entry_expires(self):
        self.assertEqual(self.rcpt("nobody43@example.com.ar")[0], 550)
        self.pg.sql(alias_row("nobody43", ["lbob"]))
        wait_for(lambda: self.rcpt("nobody43@example.com.ar")[0] == 250, timeout=30, what="the new alias")
        self.assertGreaterEqual(self.pg.statements("$1 = 'nobody43'"), 2)


@unittest.skipIf(WHY_NOT, WHY_NOT or "")
class PgsqlRootlessTest(PgsqlTest):
    """Rootless: password checks on the worker's pool threads, which may
    wait for the database (the loop never does)."""
    as_root = False


for _name in [n for n in dir(PgsqlTest) if n.startswith("test_")]:
    setattr(PgsqlShortTtlTest, _name, None)
for _name in ("test_alias_from_pgsql_expands", "test_access_map_from_pgsql", "test_map_query_and_check_cli",
              "test_connection_settings_and_limits", "test_terminated_sessions_reconnected",
              "test_transport_map_from_pgsql_routes", "test_cache_and_negative_entries",
              "test_restarted_server_reconnected"):
    setattr(PgsqlRootlessTest, _name, None)


class Hang(threading.Thread):
    """A "database" that accepts connections and never answers."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@unittest.skipIf(NO_MODULE, NO_MODULE or "")
class PgsqlHangTest(unittest.TestCase):
    """A database that hangs holds up only the sessions waiting for it."""

    def test_hanging_database_stalls_nobody_else(self):
        hang = Hang()
        hang.start()
        self.addCleanup(hang.close)
        server = Server(modules=("pgsql", "mbox", "smtp"), users=())
        self.addCleanup(server.cleanup)
        cf = server.path("hang.cf")
        with open(cf, "w") as f:
            f.write("hosts = inet:127.0.0.1:%d\ndbname = mail\nuser = x\npassword = y\ntimeout = 10\n"
                    "user_query = %s\n" % (hang.port, USER_QUERY))
        os.chmod(cf, 0o644)
        server.write_conf("userdb = pgsql:%s\nrelay_domains = elsewhere.example\n" % cf)
        server.start()
        port = server.ports["smtpd"]
        result = {}

        def waiting():
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as s:
                s.ehlo("client.example.com.ar")
                s.mail("carol@elsewhere.example")
                result["code"] = s.rcpt("someone@example.com.ar")
                result["at"] = time.monotonic()

        t = threading.Thread(target=waiting)
        t.start()
        wait_for(lambda: hang.conns, timeout=30, what="the database connection")
        for _ in range(3):
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
                s.ehlo("client.example.com.ar")
                s.mail("carol@elsewhere.example")
                self.assertEqual(s.rcpt("x@elsewhere.example")[0], 250)
                self.assertEqual(s.noop()[0], 250)
        done_others = time.monotonic()
        self.assertNotIn("code", result, "the waiting RCPT ended before the others: nothing was shown")
        t.join(120)
        self.assertEqual(result["code"][0], 451, result)
        self.assertLess(done_others, result["at"])


class PgsqlCheckTest(unittest.TestCase):
    def test_source_without_its_module(self):
        server = Server(modules=("mbox", "smtp"), users=())
        self.addCleanup(server.cleanup)
        server.write_conf("userdb = pgsql:/nonexistent/users.cf\n")
        r = server.cmd("check")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn('no loaded module provides "pgsql" (add `module pgsql`)', (r.stdout + r.stderr).decode())


if __name__ == "__main__":
    unittest.main()
