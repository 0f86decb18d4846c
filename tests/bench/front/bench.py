"""Through a front (issue 16), side by side: logins per second and SMTP
end to end, on the network-namespace topology of the tests:

    client --- front --- host1 (half the users)
                 |  \\--- host2 (the other half)
                 \\----- dir (slapd; PostgreSQL for the pgsql rows)

host1 and host2 are Postern mailbox hosts (passwd-file users, mbox). On
the front, one after the other: Postern (passdb = ldap with proxy = yes,
transport_maps and relay_recipient_maps in LDAP) and Dovecot 2.3
(passdb ldap, auth_bind = yes, proxy=y host= from mailHost; the
high-performance login mode, service_count = 0) for IMAP, Postfix 3.7
(transport_maps and relay_recipient_maps = ldap:) for SMTP. Both fronts
proxy and relay to the same Postern hosts.

- logins: loadgen.py in the client namespace, C parallel clients each
  looping connect / LOGIN / LOGOUT for --seconds, users round-robin over
  --users (more users than logins in a second, so an answer shared for
  a second is no cache); with the cache off (Postern cache_ttl = 0,
  Dovecot auth_cache_size = 0) and on (60 s; a warm-up pass first).
- smtp: smtp-source in the client namespace, two runs at once (a user
  on host1, one on host2), N messages each; the time until every message
  is in the two hosts' mboxes.
- --only pgsql: the same logins with the users in PostgreSQL (Postern
  passdb = pgsql:, Dovecot passdb sql with dovecot-pgsql, its default
  pool); --pg-scheme picks {PLAIN} or {SHA512-CRYPT} passwords.
  --only pgsql-smtp: the SMTP run with transport_maps and
  relay_recipient_maps = pgsql: (Postern and Postfix). "skipped: no
  pgsql module" while build/modules/pgsql.so does not exist.

Run as root through run.sh; not part of CI. Prints a Markdown table (also
written to --out)."""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

import netns  # noqa: E402
import harness  # noqa: E402
from harness import Server, free_port, wait_for  # noqa: E402
import slapd_fixture  # noqa: E402
from slapd_fixture import ADMIN_DN, ADMIN_PW, SUFFIX, Slapd, transport_ldif, user_ldif  # noqa: E402

DOMAIN = "example.com.ar"
WORK = "/var/tmp/postern-bench-front"
COMMON = ("auth_failure_delay = 0s\nsmtpd_client_name_timeout = 0\nclient_connection_limit = 5000\n"
          "service_connection_limit = 10000\nmail_max_userip_connections = 1000\n")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(*args, check=True, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise SystemExit("%s failed (%d): %s %s" % (" ".join(args), r.returncode, r.stdout.strip(),
                                                     r.stderr.strip()))
    return r


def mbox_count(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.startswith(b"From "))
    except FileNotFoundError:
        return 0


def pw_value(scheme, pw):
    """The users table's password column for --pg-scheme: {PLAIN} (no
    hashing cost, as an LDAP bind's check is the directory's), or
    {SHA512-CRYPT} (5000 rounds: what a site's table usually holds;
    each login verifies it at the front, cache or not)."""
    if scheme == "plain":
        return "{PLAIN}" + pw
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return "{SHA512-CRYPT}" + crypt.crypt(pw, crypt.mksalt(crypt.METHOD_SHA512))


def tree_cpu(pid):
    """CPU seconds (user + system) of pid and its descendants, the exited
    children they reaped included."""
    tick = os.sysconf("SC_CLK_TCK")
    seen, todo, total = set(), [pid], 0
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo.extend(int(x) for x in f.read().split())
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


class NsSlapd(Slapd):
    """slapd_fixture's server, listening on an address of a namespace."""

    def __init__(self, data, ns, addr):
        # Equality indexes on what the fronts search by, as a directory
        # with users in it has (the fixture's database has none: each
        # search would read every entry). The mdb entry is CONFIG's last.
        saved = slapd_fixture.CONFIG
        slapd_fixture.CONFIG = saved + "olcDbIndex: objectClass,uid,mail,cn eq\n"
        try:
            super().__init__(data)
        finally:
            slapd_fixture.CONFIG = saved
        self.ns, self.addr = ns, addr

    @property
    def uri(self):
        return "ldap://%s:%d" % (self.addr, self.port)

    def start(self):
        self.log = open(self.log_path, "a")
        # -d 0: in the foreground, no per-operation log (it would cost slapd)
        self.proc = subprocess.Popen([slapd_fixture.SLAPD, "-h", self.uri + "/", "-F",
                                      os.path.join(self.dir, "slapd.d"), "-d", "0"],
                                     stdout=self.log, stderr=self.log, preexec_fn=self.ns.enter)

        def up():
            with self.ns.inside():
                return harness.port_open(self.port, self.addr)
        wait_for(up, timeout=20, what="slapd listening")


class Bench:
    def __init__(self, args):
        self.args = args
        self.cleanups = []
        self.results = []       # (what, server, mode, value, unit, detail)

    def cleanup(self):
        for c in reversed(self.cleanups):
            try:
                c()
            except Exception as e:  # keep tearing down
                log("cleanup: %s" % e)

    # ---- topology ----

    def build(self):
        a = self.args
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK, mode=0o755)
        t = self.topo = netns.Topology()
        self.cleanups.append(t.close)
        for role in ("client", "front", "host1", "host2", "dir"):
            t.add(role)
        self.client_ip, self.front_ip = t.link("client", "front")
        self.front_ip1, self.host1_ip = t.link("front", "host1")
        self.front_ip2, self.host2_ip = t.link("front", "host2")
        self.front_ipd, self.dir_ip = t.link("front", "dir")
        # Clients come from many addresses, as users do: Postern lets at
        # most 32 logins wait per client address (a guessing guard), and
        # one address for every client would measure that guard.
        self.sources = ["172.31.77.%d" % i for i in range(1, 65)]
        for src in self.sources:
            t.hosts["client"].run("ip", "addr", "add", src + "/32", "dev", "%sv0a" % t.tag)
        t.hosts["front"].run("ip", "route", "add", "172.31.77.0/24", "via", self.client_ip)
        self.users = [("fb%04d" % i, "pw-fb%04d" % i) for i in range(a.users)]
        self.home_of = {}
        # the mailbox hosts: same ports, each in its own namespace
        self.host_ports = {l: free_port() for l in ("smtpd", "imap")}
        self.hosts = {}
        for name, ip, front_side, part in (("host1", self.host1_ip, self.front_ip1, 0),
                                           ("host2", self.host2_ip, self.front_ip2, 1)):
            mine = [u for i, u in enumerate(self.users) if i % 2 == part]
            s = Server(modules=("mbox", "smtp", "imap"), users=["%s:%s" % u for u in mine],
                       listeners=("smtpd", "imap"), netns=t.hosts[name], listen_addr=ip)
            self.cleanups.append(s.cleanup)
            s.ports.update(self.host_ports)
            s.write_conf("passdb = passwd-file:%s\n%slogin_trusted_networks = %s/32\n"
                         "smtpd_authorized_xclient_hosts = %s/32\ndisable_plaintext_auth = no\n"
                         % (s.passwd_file, COMMON, front_side, front_side))
            s.start()
            self.hosts[name] = s
            for u, _ in mine:
                self.home_of[u] = (name, ip)
        # the directory
        ldif = ""
        for u, pw in self.users:
            ldif += user_ldif(u, 20000, pw, "/nonexistent", mail_host=self.home_of[u][1],
                              mails=("%s@%s" % (u, DOMAIN),))
            ldif += transport_ldif("%s@%s" % (u, DOMAIN), "smtp:[%s]:%d" % (self.home_of[u][1],
                                                                              self.host_ports["smtpd"]))
        self.slapd = NsSlapd(ldif, t.hosts["dir"], self.dir_ip)
        self.cleanups.append(self.slapd.cleanup)
        self.slapd.start()
        log("topology up: client %s, front %s, hosts %s %s, slapd %s, %d users"
            % (self.client_ip, self.front_ip, self.host1_ip, self.host2_ip, self.slapd.uri, len(self.users)))

    def ldap_cf(self, name, cache, extra):
        p = os.path.join(WORK, name)
        with open(p, "w") as f:
            f.write("server_host = %s\nsearch_base = %s\nbind = yes\nbind_dn = %s\nbind_pw = %s\ntimeout = 10\n"
                    "cache_ttl = %d\ncache_negative_ttl = %d\n%s"
                    % (self.slapd.uri, SUFFIX, ADMIN_DN, ADMIN_PW, 60 if cache else 0, 10 if cache else 0, extra))
        os.chmod(p, 0o644)   # the bench directory's throwaway admin password
        return p

    # ---- the fronts ----

    def start_postern_front(self, passdb_conf):
        f = Server(modules=("ldap", "pgsql", "mbox", "transport", "restrict", "smtp", "imap")
                   if "pgsql:" in passdb_conf else ("ldap", "mbox", "transport", "restrict", "smtp", "imap"),
                   users=(), listeners=("smtpd", "imap"), netns=self.topo.hosts["front"], listen_addr=self.front_ip)
        # the queue on the disk Postfix's is on (/tmp may be another file system)
        q = os.path.join(WORK, "pt-queue")
        shutil.rmtree(q, ignore_errors=True)
        os.makedirs(q)
        os.chown(q, *self.nobody())
        f.write_conf("%s%smydestination = front.example.net\nrelay_domains = %s\n"
                     "queue_directory = %s\n"
                     "proxy_imap_port = %d\nproxy_timeout = 10s\ndisable_plaintext_auth = no\n"
                     "smtp_tls_security_level = none\n"
                     % (passdb_conf, COMMON, DOMAIN, q, self.host_ports["imap"]))
        f.start()
        return f

    def nobody(self):
        import pwd
        pw = pwd.getpwnam("nobody")
        return pw.pw_uid, pw.pw_gid

    def postern_ldap_conf(self, cache):
        users = self.ldap_cf("pt-ldap-users.cf", cache,
                             "user_filter = (&(objectClass=posixAccount)(uid=%u))\nproxy = yes\n")
        transport = self.ldap_cf("pt-ldap-transport.cf", cache,
                                 "query_filter = (&(objectClass=applicationProcess)(cn=%s))\n"
                                 "result_attribute = description\n")
        rcpt = self.ldap_cf("pt-ldap-rcpt.cf", cache,
                            "query_filter = (&(objectClass=inetLocalMailRecipient)(mail=%s))\nresult_attribute = uid\n")
        return ("passdb = ldap:%s\nuserdb = ldap:%s\ntransport_maps = ldap:%s\nrelay_recipient_maps = ldap:%s\n"
                % (users, users, transport, rcpt))

    def start_dovecot(self, cache, passdb):
        d = os.path.join(WORK, "dovecot")
        shutil.rmtree(d, ignore_errors=True)
        for sub in ("run", "state"):
            os.makedirs(os.path.join(d, sub))
        self.dovecot_port = free_port()
        conf = os.path.join(d, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("""# tests/bench/front: Dovecot as an IMAP proxy front
base_dir = {d}/run
state_dir = {d}/state
instance_name = postern-bench-front
protocols = imap
listen = {ip}
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
mail_location = mbox:~/mail:INBOX=/var/mail/%u
auth_cache_size = {cache_size}
auth_cache_ttl = 60 s
auth_cache_negative_ttl = 10 s
default_client_limit = 10000
default_process_limit = 1000
passdb {{
  driver = {driver}
  args = {d}/passdb.conf.ext
}}
userdb {{
  driver = prefetch
}}
service imap-login {{
  inet_listener imap {{
    address = {ip}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  # the high-performance mode Dovecot documents for proxies
  service_count = 0
  process_min_avail = 2
  client_limit = 10000
}}
service anvil {{
  client_limit = 20000
}}
service auth {{
  client_limit = 20000
}}
""".format(d=d, ip=self.front_ip, port=self.dovecot_port, cache_size="10M" if cache else "0",
           driver="ldap" if passdb == "ldap" else "sql"))
        with open(os.path.join(d, "passdb.conf.ext"), "w") as f:
            if passdb == "ldap":
                f.write("uris = %s\ndn = %s\ndnpass = %s\nauth_bind = yes\nbase = %s\nscope = subtree\n"
                        "pass_filter = (&(objectClass=posixAccount)(uid=%%u))\n"
                        "pass_attrs = uid=user, mailHost=host, =proxy=y, =port=%d\n"
                        % (self.slapd.uri, ADMIN_DN, ADMIN_PW, SUFFIX, self.host_ports["imap"]))
            else:
                f.write(self.pg_dovecot_conf)
        os.chmod(os.path.join(d, "passdb.conf.ext"), 0o600)
        proc = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", conf], stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(d, "stderr"), "w"),
                                preexec_fn=self.topo.hosts["front"].enter)

        def up():
            if proc.poll() is not None:
                raise SystemExit("dovecot exited: %s\n%s" % (
                    open(os.path.join(d, "stderr")).read(), self.tail(os.path.join(d, "dovecot.log"))))
            with self.topo.hosts["front"].inside():
                return harness.port_ready(self.dovecot_port, self.front_ip)
        wait_for(up, timeout=30, what="dovecot listening")
        return proc

    @staticmethod
    def tail(path, n=30):
        try:
            with open(path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    @staticmethod
    def stop_proc(proc):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # ---- logins ----

    def load(self, port, seconds):
        userlist = ",".join("%s:%s" % u for u in self.users)
        r = self.topo.hosts["client"].run(
            sys.executable, os.path.join(HERE, "loadgen.py"), "--host", self.front_ip, "--port", str(port),
            "--clients", str(self.args.clients), "--seconds", str(seconds), "--users", userlist,
            "--sources", ",".join(self.sources))
        return json.loads(r.stdout.strip().splitlines()[-1])

    def one_login_run(self, label, server, cache, start):
        """Start the front (start() -> (port, root pid, stop)), warm the
        cache when on, one measured run; the rate and CPU per login of the
        front's processes and of the directory server."""
        if self.args.fresh_hosts:
            # The hosts too: a Postern login process keeps a record of
            # every login it handed off for 10 minutes and walks that
            # list at each accept (modules/imap/imap_login.c,
            # handed_sweep), so a host's cost per login grows with the
            # logins of the runs before; fresh hosts give every
            # (server, cache) run the same start.
            for h in self.hosts.values():
                h.stop()
                h.start()
        port, pid, stop, front_log = start(cache)
        try:
            if cache:
                # one pass over every user fills the cache (not counted)
                self.load(port, max(3.0, self.args.users / 150.0))
            cpu0, dcpu0 = tree_cpu(pid), tree_cpu(self.dir_pid())
            st = self.load(port, self.args.seconds)
            cpu1, dcpu1 = tree_cpu(pid), tree_cpu(self.dir_pid())
            if st["fail"] and self.args.verbose:
                lines = [l for l in front_log().splitlines(True) if "Login:" not in l and "Logged out" not in l]
                log("---- front log (not the good logins) ----\n%s" % "".join(lines[:40]))
        finally:
            stop()
        rate = st["ok"] / st["seconds"]
        per = lambda c: 1000.0 * c / st["ok"] if st["ok"] else float("nan")  # noqa: E731
        log("  %s %s cache=%s: %d ok, %d failed in %.1f s = %.0f logins/s; CPU/login: front %.2f ms, "
            "directory %.2f ms" % (label, server, "on" if cache else "off", st["ok"], st["fail"], st["seconds"],
                                   rate, per(cpu1 - cpu0), per(dcpu1 - dcpu0)))
        if st["fail"] and self.args.verbose:
            for name, h in self.hosts.items():
                log("---- %s log tail ----\n%s" % (name, "".join(h.log().splitlines(True)[-15:])))
        return rate, st["fail"], per(cpu1 - cpu0), per(dcpu1 - dcpu0)

    def login_rounds(self, label, starters):
        """--runs rounds; in each, every (server, cache) once, alternating,
        each on a freshly started front. One row per (server, cache)."""
        got = {}
        for _ in range(self.args.runs):
            for cache in (False, True):
                for server, start in starters:
                    got.setdefault((server, cache), []).append(self.one_login_run(label, server, cache, start))
        for cache in (False, True):
            for server, _ in starters:
                runs = got[(server, cache)]
                self.results.append((
                    "IMAP logins/s via the front, %s passdb" % label, server, "cache on" if cache else "cache off",
                    statistics.median(r[0] for r in runs), "logins/s",
                    "runs %s; %d failed; CPU/login: front %.2f ms, directory %.2f ms" % (
                        " ".join("%.0f" % r[0] for r in runs), sum(r[1] for r in runs),
                        statistics.median(r[2] for r in runs), statistics.median(r[3] for r in runs))))

    def postern_starter(self, conf_fn):
        def start(cache):
            f = self.start_postern_front(conf_fn(cache))
            return f.ports["imap"], f.pid, f.cleanup, f.log
        return start

    def dovecot_starter(self, passdb):
        def start(cache):
            d = self.start_dovecot(cache, passdb)
            return (self.dovecot_port, d.pid, lambda: self.stop_proc(d),
                    lambda: self.tail(os.path.join(WORK, "dovecot", "dovecot.log"), 200))
        return start

    def logins_ldap(self):
        self.dir_pid = lambda: self.slapd.proc.pid
        self.login_rounds("LDAP", [("Postern", self.postern_starter(self.postern_ldap_conf)),
                                   ("Dovecot 2.3", self.dovecot_starter("ldap"))])

    def pg_db(self):
        """The PostgreSQL server of the pgsql rows (started once): the
        users (host = their mailbox host) and a transport row per
        address, as the LDAP directory has them."""
        if getattr(self, "pg", None):
            return self.pg
        import pgsql_fixture as pg
        db = pg.Postgres(netns=self.topo.hosts["dir"], addr=self.dir_ip)
        self.cleanups.append(db.cleanup)
        db.start()
        # The fixture logs every statement (its tests count them); at
        # thousands of lookups a second that log would be most of the
        # server's work. A per-role setting outranks the command line's.
        db.psql("ALTER ROLE %s SET log_statement = 'none';\n" % pg.APP_USER, db="postgres")
        db.sql("".join(pg.user_row(u, pw_value(self.args.pg_scheme, pw), host=self.home_of[u][1])
                       + pg.transport_row("%s@%s" % (u, DOMAIN), "smtp:[%s]:%d" % (self.home_of[u][1],
                                                                                  self.host_ports["smtpd"]))
                       for u, pw in self.users))
        self.pg = db
        return db

    def logins_pgsql(self):
        if not os.path.exists(os.path.join(harness.MODULES, "pgsql.so")):
            print("skipped: no pgsql module", flush=True)
            self.results.append(("IMAP logins/s via the front, PostgreSQL passdb", "-", "-", None, "",
                                 "skipped: no pgsql module"))
            return
        # The users in PostgreSQL (tests/integration/pgsql_fixture.py) in
        # the dir namespace, Postern passdb = pgsql:, Dovecot passdb sql.
        import pgsql_fixture as pg
        db = self.pg_db()
        scheme = self.args.pg_scheme
        self.pg_dovecot_conf = (
            "driver = pgsql\nconnect = host=%s port=%d dbname=%s user=%s password=%s\n"
            "password_query = SELECT name AS user, password, host, 'y' AS proxy, %d AS port "
            "FROM users WHERE name = '%%u' AND active\n"
            % (self.dir_ip, db.port, pg.DBNAME, pg.APP_USER, pg.APP_PASSWORD, self.host_ports["imap"]))
        self.dir_pid = lambda: db.pid

        def conf(cache):
            cf = os.path.join(WORK, "pt-pgsql-users.cf")
            with open(cf, "w") as fh:
                fh.write(db.cf_text(password_query=pg.PASSWORD_QUERY, user_query=pg.USER_QUERY, proxy="yes",
                                    cache_ttl=60 if cache else 0, cache_negative_ttl=10 if cache else 0))
            os.chmod(cf, 0o644)
            return "passdb = pgsql:%s\nuserdb = pgsql:%s\n" % (cf, cf)
        self.login_rounds("PostgreSQL (%s)" % scheme, [("Postern", self.postern_starter(conf)),
                                         ("Dovecot 2.3", self.dovecot_starter("sql"))])

    # ---- SMTP end to end ----

    def smtp_source_both(self, port):
        a = self.args
        n = a.messages
        u1 = next(u for u, _ in self.users if self.home_of[u][0] == "host1")
        u2 = next(u for u, _ in self.users if self.home_of[u][0] == "host2")
        boxes = [self.hosts["host1"].mbox_path(u1), self.hosts["host2"].mbox_path(u2)]
        for b in boxes:
            if os.path.exists(b):
                os.truncate(b, 0)
        t0 = time.time()
        procs = [subprocess.Popen(["ip", "netns", "exec", self.topo.hosts["client"].name, "/usr/sbin/smtp-source",
                                   "-s", str(max(1, a.smtp_sessions // 2)), "-m", str(n), "-l", str(a.size),
                                   "-M", "client.example.net", "-f", "sender@example.net",
                                   "-t", "%s@%s" % (u, DOMAIN), "%s:%d" % (self.front_ip, port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for u in (u1, u2)]
        for p in procs:
            out, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit("smtp-source failed: %s" % err.decode(errors="replace"))
        accepted = time.time() - t0
        end = time.time() + 600
        while any(mbox_count(b) < n for b in boxes):
            if time.time() > end:
                raise SystemExit("timeout: %s of %d arrived" % ([mbox_count(b) for b in boxes], n))
            time.sleep(0.05)
        total = time.time() - t0
        got = [mbox_count(b) for b in boxes]
        return accepted, total, got

    def postern_pgsql_maps_conf(self):
        import pgsql_fixture as pg
        db = self.pg_db()
        paths = {}
        for name, text in (("transport", db.cf_text(query=pg.TRANSPORT_QUERY, cache_ttl=60)),
                           ("rcpt", db.cf_text(query="SELECT 'OK' FROM users WHERE name = '%u' AND active",
                                               domain=DOMAIN, cache_ttl=60))):
            paths[name] = os.path.join(WORK, "pt-pgsql-%s.cf" % name)
            with open(paths[name], "w") as fh:
                fh.write(text)
            os.chmod(paths[name], 0o644)   # the bench database's throwaway password
        return "transport_maps = pgsql:%s\nrelay_recipient_maps = pgsql:%s\n" % (paths["transport"], paths["rcpt"])

    def smtp_postern(self, engine="LDAP"):
        if engine == "LDAP":
            self.dir_pid = lambda: self.slapd.proc.pid
            conf = self.postern_ldap_conf(True)
        else:
            conf = self.postern_pgsql_maps_conf()
            self.dir_pid = lambda: self.pg.pid
        f = self.start_postern_front(conf)
        try:
            self.smtp_runs("Postern", f.ports["smtpd"], f.pid, engine)
        finally:
            f.cleanup()

    def smtp_runs(self, server, port, pid, engine="LDAP"):
        a = self.args
        totals, cpus = [], []
        for _ in range(a.runs):
            c0, d0 = tree_cpu(pid), tree_cpu(self.dir_pid())
            accepted, total, got = self.smtp_source_both(port)
            c1, d1 = tree_cpu(pid), tree_cpu(self.dir_pid())
            totals.append(total)
            cpus.append((1000.0 * (c1 - c0) / (2 * a.messages), 1000.0 * (d1 - d0) / (2 * a.messages)))
            log("  SMTP %s: 2 x %d messages accepted in %.2f s, all in the hosts' mboxes after %.2f s (%s); "
                "CPU/message: front %.2f ms, directory %.2f ms" % (server, a.messages, accepted, total, got, *cpus[-1]))
        med = statistics.median(totals)
        self.results.append(("SMTP through the front to 2 hosts (2 x %d msgs of %d B, %d sessions), %s maps"
                             % (a.messages, a.size, a.smtp_sessions, engine), server,
                             "cache_ttl 60" if server == "Postern" else "no cache (%s: tables have none)"
                             % ("ldap" if engine == "LDAP" else "pgsql"),
                             2 * a.messages / med, "msgs/s",
                             "end to end %s s; CPU/message: front %.2f ms, directory %.2f ms"
                             % (" ".join("%.2f" % t for t in totals), statistics.median(c[0] for c in cpus),
                                statistics.median(c[1] for c in cpus))))

    def smtp_postfix(self, engine="LDAP"):
        kind = "ldap" if engine == "LDAP" else "pgsql"
        if not os.path.exists("/usr/sbin/postfix") or not os.path.exists("/usr/lib/postfix/postfix-%s.so" % kind):
            self.results.append(("SMTP through the front", "Postfix 3.7", "-", None, "",
                                 "skipped: postfix or postfix-%s not installed" % kind))
            return
        backup = os.path.join(WORK, "etc-postfix.orig")
        shutil.copytree("/etc/postfix", backup, symlinks=True)

        def restore():
            sh("postfix", "stop", check=False)
            for name in ("main.cf", "master.cf"):
                p = os.path.join(backup, name)
                if os.path.exists(p):
                    shutil.copy2(p, os.path.join("/etc/postfix", name))
                else:
                    try:
                        os.unlink(os.path.join("/etc/postfix", name))
                    except FileNotFoundError:
                        pass
        self.cleanups.append(restore)
        if not os.path.exists("/etc/postfix/main.cf"):
            open("/etc/postfix/main.cf", "w").close()
        pf = {}
        for name, filt, attr, base in (("transport", "(&(objectClass=applicationProcess)(cn=%s))", "description",
                                        "ou=transport," + SUFFIX),
                                       ("rcpt", "(&(objectClass=inetLocalMailRecipient)(mail=%s))", "uid",
                                        "ou=people," + SUFFIX)):
            p = os.path.join(WORK, "pf-%s-%s.cf" % (kind, name))
            with open(p, "w") as f:
                f.write("server_host = %s\nsearch_base = %s\nquery_filter = %s\nresult_attribute = %s\n"
                        "bind = yes\nbind_dn = %s\nbind_pw = %s\nversion = 3\n"
                        % (self.slapd.uri, base, filt, attr, ADMIN_DN, ADMIN_PW))
            if kind == "pgsql":
                import pgsql_fixture as pg
                q = (pg.TRANSPORT_QUERY if name == "transport"
                     else "SELECT name FROM users WHERE name = '%u' AND active")
                with open(p, "w") as f:
                    f.write("hosts = inet:%s:%d\ndbname = %s\nuser = %s\npassword = %s\nquery = %s\n%s"
                            % (self.dir_ip, self.pg.port, pg.DBNAME, pg.APP_USER, pg.APP_PASSWORD, q,
                               "domain = %s\n" % DOMAIN if name == "rcpt" else ""))
            os.chmod(p, 0o640)
            pf[name] = p
        self.pf_port = free_port()
        settings = {
            "myhostname": "front.example.net", "mydestination": "front.example.net",
            "relay_domains": DOMAIN, "transport_maps": "%s:%s" % (kind, pf["transport"]),
            "relay_recipient_maps": "%s:%s" % (kind, pf["rcpt"]), "inet_interfaces": "all",
            "inet_protocols": "ipv4", "mynetworks": "127.0.0.0/8", "smtp_tls_security_level": "none",
            "default_process_limit": "300", "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0", "smtpd_client_message_rate_limit": "0",
            "maillog_file": os.path.join(WORK, "postfix.log"), "compatibility_level": "3.6",
            "smtputf8_enable": "no", "biff": "no",
        }
        sh("postconf", "-e", *["%s=%s" % kv for kv in settings.items()])
        sh("postconf", "-MX", "smtp/inet", check=False)
        sh("postconf", "-Me", "%s:%d/inet=%s:%d inet n - n - - smtpd"
           % (self.front_ip, self.pf_port, self.front_ip, self.pf_port))
        sh("postconf", "-Me", "postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd")
        # no chroot: the LDAP tables' files are outside /var/spool/postfix
        sh("postconf", "-F", "*/*/chroot = n")
        sh("postfix", "stop", check=False)
        sh("ip", "netns", "exec", self.topo.hosts["front"].name, "postfix", "start")

        def up():
            with self.topo.hosts["front"].inside():
                return harness.port_ready(self.pf_port, self.front_ip)
        wait_for(up, timeout=30, what="postfix listening")
        with open("/var/spool/postfix/pid/master.pid") as fh:
            master = int(fh.read().split()[0])
        try:
            self.smtp_runs("Postfix 3.7", self.pf_port, master, engine)
        finally:
            sh("postfix", "stop", check=False)

    # ---- report ----

    def table(self):
        a = self.args
        lines = ["| measure | server | mode | result | detail |", "| --- | --- | --- | ---: | --- |"]
        for what, server, mode, value, unit, detail in self.results:
            lines.append("| %s | %s | %s | %s | %s |" % (what, server, mode,
                                                         "-" if value is None else "%.0f %s" % (value, unit), detail))
        head = ("Through a front, %s UTC, %d users, %d parallel IMAP clients for %g s x %d runs (medians); "
                "load average before: %s"
                % (time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.started)), a.users, a.clients, a.seconds,
                   a.runs, self.load_before))
        return head + "\n\n" + "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=500, help="per host")
    ap.add_argument("--size", type=int, default=4000)
    ap.add_argument("--smtp-sessions", type=int, default=20)
    ap.add_argument("--only", choices=("logins", "smtp", "pgsql", "pgsql-smtp", "all"), default="all")
    ap.add_argument("--pg-scheme", choices=("plain", "sha512-crypt"), default="plain",
                    help="password column of the --only pgsql users")
    ap.add_argument("--no-fresh-hosts", dest="fresh_hosts", action="store_false",
                    help="keep the mailbox hosts running from run to run (the old method)")
    ap.add_argument("--out")
    ap.add_argument("--verbose", action="store_true", help="the hosts' log tails when logins fail")
    args = ap.parse_args()
    why = netns.unavailable_reason() or slapd_fixture.slapd_available()
    if why:
        raise SystemExit("front bench: %s" % why)
    b = Bench(args)
    b.started = time.time()
    with open("/proc/loadavg") as f:
        b.load_before = " ".join(f.read().split()[:3])
    try:
        b.build()
        if args.only in ("logins", "all"):
            b.logins_ldap()
        if args.only in ("pgsql", "all"):
            b.logins_pgsql()
        if args.only in ("smtp", "all"):
            b.dir_pid = lambda: b.slapd.proc.pid
            b.smtp_postern()
            b.smtp_postfix()
        if args.only in ("pgsql-smtp", "all"):
            if not os.path.exists(os.path.join(harness.MODULES, "pgsql.so")):
                print("skipped: no pgsql module", flush=True)
            else:
                b.smtp_postern("PostgreSQL")
                b.smtp_postfix("PostgreSQL")
    finally:
        b.cleanup()
    out = b.table()
    print(out)
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(out)


if __name__ == "__main__":
    main()
