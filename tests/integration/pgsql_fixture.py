"""A throwaway PostgreSQL server for tests: Debian's postgres binaries
(/usr/lib/postgresql/*/bin: initdb, postgres) run directly on a data
directory made here, as a throwaway user (postgres refuses root), on a
port of its own -- on loopback, or on a veth address inside a network
namespace (netns.py). Never the system's cluster, never pg_ctlcluster.
Stopped by pid; the user and the directory go at cleanup.

Reusable pieces for other tests (logins, benchmarks, proxy topologies):
  pgsql_available()          None, or why not (skip loudly)
  Postgres(netns=, addr=)    .start() .stop() .cleanup() .sql(text)
                             .statements(needle) (the server's statement
                             log: how many lookups reached it)
                             .cf_text(**settings) (a pgsql:FILE's lines)
  SCHEMA, user_row(), alias_row(), transport_row(): the tables README's
  "Scaling out" documents, and rows for them.
"""
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from harness import free_port, throwaway_user, wait_for

APP_USER = "postern"
APP_PASSWORD = "pgsecret"
DBNAME = "mail"

# The tables README's "Scaling out" expects (any other shape works too:
# the queries are the site's own).
SCHEMA = """
CREATE TABLE users (
    name     text PRIMARY KEY,      -- login name / local part, lower case
    password text,                  -- {SCHEME}hash ({CRYPT}$6$..., {PLAIN}x)
    uid      integer,
    gid      integer,
    home     text,
    host     text NOT NULL DEFAULT '',  -- mailbox host; '' = this machine
    active   boolean NOT NULL DEFAULT true
);
CREATE TABLE aliases (
    alias text NOT NULL,            -- the local part (alias_maps keys)
    goto  text NOT NULL             -- one row per member
);
CREATE INDEX aliases_alias ON aliases (alias);
CREATE TABLE transport (
    key       text PRIMARY KEY,     -- user@domain or domain
    transport text NOT NULL         -- smtp:[host]:port, error:..., ...
);
CREATE TABLE access (
    key    text PRIMARY KEY,
    action text NOT NULL
);
GRANT SELECT ON users, aliases, transport, access TO %s;
""" % APP_USER

# The queries of README's worked example, for these tables.
PASSWORD_QUERY = ("SELECT name AS user, password, host FROM users "
                  "WHERE name = '%u' AND active")
USER_QUERY = "SELECT name AS user, uid, gid, home, host FROM users WHERE name = '%u' AND active"
ALIAS_QUERY = "SELECT goto FROM aliases WHERE alias = '%s'"
TRANSPORT_QUERY = "SELECT transport FROM transport WHERE key = '%s'"
ACCESS_QUERY = "SELECT action FROM access WHERE key = '%s'"


def _bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return os.path.dirname(found[-1]) if found else None


def pgsql_available():
    """None when a PostgreSQL server can be started here, else why not."""
    if os.geteuid() != 0:
        return "the PostgreSQL fixture needs root (a throwaway user runs the server)"
    b = _bindir()
    if not b or not os.path.exists(os.path.join(b, "initdb")):
        return "/usr/lib/postgresql/*/bin/postgres missing (scripts/deps.sh test installs postgresql)"
    if not shutil.which("psql"):
        return "psql missing (scripts/deps.sh test installs postgresql)"
    return None


def q(value):
    """An SQL literal for the fixture's own setup statements (psql runs
    them as text; the module under test never builds SQL like this)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def user_row(name, password, uid=None, gid=None, home="", host="", active=True):
    return ("INSERT INTO users (name, password, uid, gid, home, host, active) VALUES (%s, %s, %s, %s, %s, %s, %s);\n"
            % (q(name), q(password), q(uid), q(gid if gid is not None else uid), q(home), q(host), q(active)))


def alias_row(alias, members):
    return "".join("INSERT INTO aliases VALUES (%s, %s);\n" % (q(alias), q(m)) for m in members)


def transport_row(key, transport):
    return "INSERT INTO transport VALUES (%s, %s);\n" % (q(key), q(transport))


def access_row(key, action):
    return "INSERT INTO access VALUES (%s, %s);\n" % (q(key), q(action))


class Postgres:
    def __init__(self, netns=None, addr="127.0.0.1", port=None):
        self.netns = netns
        self.addr = addr
        self.bindir = _bindir()
        self._cleanups = []
        self.user = throwaway_user("ptpg", cleanup=self._cleanups.append)
        pw = pwd.getpwnam(self.user)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.dir = tempfile.mkdtemp(prefix="postern-pg-")
        os.chmod(self.dir, 0o755)
        os.chown(self.dir, self.uid, self.gid)
        self.data = os.path.join(self.dir, "data")
        self.sock = self.dir               # the unix socket: setup only
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.port = port or free_port()
        self.proc = None
        self.log = None
        pwfile = os.path.join(self.dir, "pw")
        with open(pwfile, "w") as f:
            f.write("adminsecret\n")
        os.chown(pwfile, self.uid, self.gid)
        r = subprocess.run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "admin",
                            "--pwfile", pwfile, "-E", "UTF8", "--locale=C",
                            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"],
                           capture_output=True, text=True, preexec_fn=self._as_user, cwd=self.dir)
        if r.returncode != 0:
            self.cleanup()
            raise RuntimeError("initdb: " + r.stdout + r.stderr)
        os.unlink(pwfile)
        # initdb allows TCP from 127.0.0.1 and ::1 only; in a namespace
        # the clients are on the server's own link (a /30 veth).
        with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
            f.write("host all all samenet scram-sha-256\n")
        self.created = False

    def _as_user(self):
        os.setgroups([])
        os.setgid(self.gid)
        os.setuid(self.uid)

    def _preexec(self):
        if self.netns:
            self.netns.enter()      # as root, before becoming the user
        self._as_user()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self):
        self.log = open(self.log_path, "a")
        os.chown(self.log_path, self.uid, self.gid)
        # log_statement: each query the module sends is logged with its
        # parameters, so a test can count what reached the server.
        argv = [os.path.join(self.bindir, "postgres"), "-D", self.data, "-p", str(self.port),
                "-k", self.sock, "-h", self.addr,
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "shared_buffers=16MB", "-c", "max_connections=60",
                "-c", "log_statement=all", "-c", "log_min_messages=warning",
                "-c", "log_line_prefix=%p ", "-c", "logging_collector=off"]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, preexec_fn=self._preexec,
                                     cwd=self.dir)
        wait_for(self._ready, timeout=60, what="postgres accepting connections")
        if not self.created:
            self.psql("CREATE ROLE %s LOGIN PASSWORD %s;\nCREATE DATABASE %s OWNER admin;\n"
                      % (APP_USER, q(APP_PASSWORD), DBNAME), db="postgres")
            self.sql(SCHEMA)
            self.created = True

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("postgres exited with %s:\n%s" % (self.proc.returncode, self.read_log()))
        r = subprocess.run(["psql", "-X", "-h", self.sock, "-p", str(self.port), "-U", "admin", "-d", "postgres",
                            "-c", "SELECT 1"], capture_output=True, text=True)
        return r.returncode == 0

    def psql(self, text, db=DBNAME):
        r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.sock,
                            "-p", str(self.port), "-U", "admin", "-d", db],
                           input=text, capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError("psql: %s\n%s" % (r.stderr, text))
        return r.stdout

    def sql(self, text):
        """Run SQL as the admin in the mail database; its output (rows
        '|'-separated)."""
        return self.psql(text)

    def stop(self):
        """A fast shutdown (SIGINT): sessions are cut, as a crash or a
        restart does to the module's connections."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None

    def read_log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def statements(self, needle=""):
        """Parameter lines the server logged so far containing needle:
        one per parameterised query that reached it (psql's own setup
        statements have none)."""
        return sum(1 for line in self.read_log().splitlines()
                   if "DETAIL:  parameters:" in line and needle in line)

    def cf_text(self, **settings):
        """The lines of a pgsql:FILE for this server, plus settings (e.g.
        query=..., password_query=...); cache_ttl etc. may be given."""
        lines = ["hosts = inet:%s:%d" % (self.addr, self.port), "dbname = %s" % DBNAME,
                 "user = %s" % APP_USER, "password = %s" % APP_PASSWORD]
        for k, v in settings.items():
            lines.append("%s = %s" % (k, v))
        return "\n".join(lines) + "\n"

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        for c in reversed(self._cleanups):
            c()
        self._cleanups = []
