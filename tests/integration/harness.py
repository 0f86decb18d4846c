"""Integration-test harness: starts the real postern daemon on loopback
with a throwaway config, state directory and free ports, and stops it by
pid. Run as root, the daemon runs rootless as `nobody` by default (the
mode tests mostly want); Server(as_root=True) runs it privilege-separated.
"""
import atexit
import os
import pwd
import random
import re
import grp
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import mailbox

from fakedns import FakeDNS

SRC = os.environ.get("POSTERN_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("POSTERN_BIN") or os.path.join(SRC, "build", "bin", "postern")
MODULES = os.environ.get("POSTERN_MODULES") or os.path.join(os.path.dirname(BIN), "..", "modules")
TESTMODS = os.environ.get("POSTERN_TESTMODS") or os.path.join(os.path.dirname(BIN), "..", "testmods")
SANITIZE = os.environ.get("POSTERN_SANITIZE", "0") in ("1", "ON", "TRUE", "true")

def _world_reachable(path):
    """Can an unprivileged user (the daemon runs as nobody) read path?"""
    path = os.path.abspath(path)
    d = os.path.dirname(path)
    while d and d != "/":
        if not os.stat(d).st_mode & 0o001:
            return False
        d = os.path.dirname(d)
    return True


def _shareable_build():
    """A clone under /root is out of nobody's reach: run a copy of the
    binary and modules from a world-readable directory instead."""
    global BIN, MODULES, TESTMODS
    if os.geteuid() != 0 or _world_reachable(BIN):
        return
    # One copy per test process: ctest runs several at once, and a binary
    # cannot be rewritten while another test's daemon runs it.
    d = tempfile.mkdtemp(prefix="postern-build-")
    atexit.register(shutil.rmtree, d, True)
    for sub in ("bin", "modules", "testmods"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    shutil.copy2(BIN, os.path.join(d, "bin", "postern"))
    for src, sub in ((MODULES, "modules"), (TESTMODS, "testmods")):
        if os.path.isdir(src):
            for f in os.listdir(src):
                if f.endswith(".so"):
                    shutil.copy2(os.path.join(src, f), os.path.join(d, sub, f))
    for root, dirs, files in os.walk(d):
        os.chmod(root, 0o755)
    BIN = os.path.join(d, "bin", "postern")
    MODULES = os.path.join(d, "modules")
    TESTMODS = os.path.join(d, "testmods")


_shareable_build()

# How long the daemon may take to come up (ASan builds are slower).
START_TIMEOUT = 30 if SANITIZE else 10

_cert_cache = None


_given_ports = set()


def free_port(host="127.0.0.1"):
    """A port to listen on, below the kernel's ephemeral range (32768+):
    a port the kernel hands out with bind(0) can be taken as the source port
    of some client connection before the daemon binds it."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        port = random.randrange(15000, 32000)
        if port in _given_ports:
            continue
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    raise AssertionError("no free port found")


def test_cert():
    """A self-signed certificate for mail.example.com.ar, made once per run."""
    global _cert_cache
    if _cert_cache and all(os.path.exists(p) for p in _cert_cache):
        return _cert_cache
    d = tempfile.mkdtemp(prefix="postern-cert-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=mail.example.com.ar",
                    "-addext", "subjectAltName=DNS:mail.example.com.ar,DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    os.chmod(d, 0o755)
    os.chmod(key, 0o644)
    _cert_cache = (cert, key)
    return _cert_cache


_STARTED_KIND = {"worker": "worker", "local delivery agent": "local", "auth agent": "auth", "mail agent": "mail"}


def started_pids(log):
    """Kind ("worker", "local", "auth", "mail") -> pid of the processes the
    master started last, from its log: "started worker (pid N), ..." names
    every process of a generation (only the agents its modules need), and
    "started mail agent (pid N)" one restarted agent."""
    pids = {}
    for line in log.splitlines():
        _, sep, rest = line.partition(" started ")
        if not sep:
            continue
        found = re.findall(r"(worker|local delivery agent|auth agent|mail agent) \(pid (\d+)\)", rest)
        if not found or not rest.startswith(found[0][0]):
            continue
        if found[0][0] == "worker":
            pids = {}
        for kind, pid in found:
            pids[_STARTED_KIND[kind]] = int(pid)
    return pids


def throwaway_user(prefix="pt", home=None, create_home=False, system=False, groups=None, cleanup=None):
    """Create a system user with a random name that no machine has, and
    remove it again (through cleanup, a TestCase.addCleanup, or at exit).
    Tests never rely on users that merely happen to exist."""
    assert os.geteuid() == 0, "throwaway_user needs root"
    for _ in range(20):
        name = "%s%05d" % (prefix, random.randrange(100000))
        try:
            pwd.getpwnam(name)
            continue
        except KeyError:
            break
    argv = ["useradd", "-s", "/usr/sbin/nologin", "-U"]
    if system:
        argv.append("--system")
    if home:
        argv += ["-d", home]
    argv.append("-m" if create_home else "-M")
    if groups:
        argv += ["-G", ",".join(groups)]
    subprocess.run(argv + [name], check=True, capture_output=True)

    def remove():
        subprocess.run(["userdel", "-f", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)
    (cleanup or atexit.register)(remove)
    return name


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % what)


def port_ready(port, host="127.0.0.1"):
    """The worker answers (a greeting arrives), not just the master's
    listening socket accepting into its backlog."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect((host, port))
            return bool(s.recv(1))
    except OSError:
        return False


def port_open(port, host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect((host, port))
            return True
    except OSError:
        return False


class Server:
    """One postern instance.

    modules: module lines, in order. conf: extra config text appended.
    users: names put in the passwd-file userdb (password "secret" unless
    given as name:password). aliases: text of the aliases file (written to
    DIR/aliases; the alias module reads it through alias_maps).
    listeners: which *_listen parameters get a free port (others are empty).
    netns: a netns.NetNS the daemon runs in (the host of a multi-host
    topology); listen_addr: the address its listeners bind (default
    127.0.0.1; in a namespace, its veth address).
    """

    ALL_LISTENERS = ("smtpd", "submission", "smtps", "imap", "imaps", "pop3", "pop3s")

    def __init__(self, modules=("mbox", "smtp"), conf="", users=("alice", "bob", "carol"),
                 aliases=None, listeners=None, as_root=False, run_as=None, tls=True, name="postern",
                 netns=None, listen_addr="127.0.0.1"):
        self.netns = netns
        self.listen_addr = listen_addr
        self.dir = tempfile.mkdtemp(prefix="postern-test-")
        os.chmod(self.dir, 0o755)
        self.modules = list(modules)
        self.as_root = as_root
        self.proc = None
        self.ports = {}
        if listeners is None:
            listeners = self.ALL_LISTENERS
        for l in self.ALL_LISTENERS:
            self.ports[l] = free_port() if l in listeners else None
        for sub in ("spool", "home", "queue", "run"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.users = []
        lines = []
        for u in users:
            name_, _, pw = u.partition(":")
            self.users.append(name_)
            home = os.path.join(self.dir, "home", name_)
            os.makedirs(os.path.join(home, "mail"), exist_ok=True)
            lines.append("%s:{PLAIN}%s::::%s::" % (name_, pw or "secret", home))
        self.passwd_file = os.path.join(self.dir, "users")
        with open(self.passwd_file, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.aliases_file = os.path.join(self.dir, "aliases")
        with open(self.aliases_file, "w") as f:
            f.write(aliases if aliases is not None else "postmaster: alice\nsysadmin: alice, bob\n")
        # Names are the test's own: a hosts file naming only localhost, and
        # a DNS server that knows nothing (NXDOMAIN), whatever /etc/hosts and
        # /etc/resolv.conf of the machine say. A test's conf may override.
        self.hosts_file = os.path.join(self.dir, "hosts")
        with open(self.hosts_file, "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
        self.dns = FakeDNS()
        self.dns.start()
        self.log_file = os.path.join(self.dir, "maillog")
        self.conf_file = os.path.join(self.dir, "postern.conf")
        self.tls = tls
        self.extra_conf = conf
        # Who the daemon runs as. As root, mail_owner is a user made for
        # this server (the conf may still name another one): the default
        # "postern" need not exist on the machine running the suite.
        self.mail_owner = None
        if as_root:
            self.run_user = None
            self.mail_owner = throwaway_user("ptown", system=True)
        elif run_as:
            self.run_user = run_as
        elif os.geteuid() == 0:
            self.run_user = "nobody"
        else:
            self.run_user = None
        self.write_conf()
        if self.run_user:
            pw = pwd.getpwnam(self.run_user)
            for root, dirs, files in os.walk(self.dir):
                os.chown(root, pw.pw_uid, pw.pw_gid)
                for f in files:
                    os.chown(os.path.join(root, f), pw.pw_uid, pw.pw_gid)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def base_conf(self):
        c = []
        c.append("# written by tests/integration/harness.py")
        c.append("module_directory = %s" % os.path.abspath(MODULES))
        for m in self.modules:
            c.append("module %s" % m)
        c.append("myhostname = mail.example.com.ar")
        c.append("mydomain = example.com.ar")
        c.append("myorigin = $mydomain")
        c.append("mydestination = $myhostname, localhost.$mydomain, localhost, $mydomain")
        c.append("mynetworks = 127.0.0.1/32")
        c.append("inet_interfaces = loopback-only")
        c.append("queue_directory = %s" % self.path("queue"))
        c.append("pid_file = %s" % self.path("run", "postern.pid"))
        c.append("maillog_file = %s" % self.log_file)
        c.append("userdb = passwd-file:%s" % self.passwd_file)
        c.append("dns_servers = 127.0.0.1:%d" % self.dns.port)
        if "smtp" in self.modules:
            c.append("smtpd_hosts_file = %s" % self.hosts_file)
        if self.mail_owner:
            c.append("mail_owner = %s" % self.mail_owner)
        if "mbox" in self.modules:
            c.append("mail_location = mbox:%s/home/%%u/mail:INBOX=%s/spool/%%u" % (self.dir, self.dir))
        if "alias" in self.modules:
            c.append("alias_maps = hash:%s" % self.aliases_file)
            c.append("alias_database = hash:%s" % self.aliases_file)
        if self.tls:
            cert, key = test_cert()
            c.append("ssl_cert = <%s" % cert)
            c.append("ssl_key = <%s" % key)
        return c

    def listener_conf(self):
        c = []
        owners = {"smtpd": "smtp", "submission": "smtp", "smtps": "smtp", "imap": "imap", "imaps": "imap",
                  "pop3": "pop3", "pop3s": "pop3"}
        for l, port in self.ports.items():
            if owners[l] not in self.modules:
                continue
            c.append("%s_listen = %s" % (l, ("%s:%d" % (self.listen_addr, port)) if port else ""))
        return c

    def write_conf(self, extra=None):
        if extra is not None:
            self.extra_conf = extra
        text = "\n".join(self.base_conf() + self.listener_conf()) + "\n" + self.extra_conf + "\n"
        with open(self.conf_file, "w") as f:
            f.write(text)
        if getattr(self, "run_user", None):
            pw = pwd.getpwnam(self.run_user)
            os.chown(self.conf_file, pw.pw_uid, pw.pw_gid)

    def env(self):
        e = dict(os.environ)
        e["POSTERN_CONF"] = self.conf_file
        if SANITIZE:
            e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
            e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        return e

    def _preexec(self):
        if self.netns:
            self.netns.enter()  # as root, before dropping to run_user
        if self.run_user:
            pw = pwd.getpwnam(self.run_user)
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)

    def cmd(self, *args, input=None, check=False, timeout=60, as_daemon_user=True):
        """Run `postern ARGS -c CONF` and return the CompletedProcess."""
        argv = [BIN] + list(args)
        pre = self._preexec if (as_daemon_user and self.run_user) else None
        return subprocess.run(argv, input=input, capture_output=True, env=self.env(), check=check,
                              timeout=timeout, preexec_fn=pre)

    def start(self, wait_port=None):
        self.proc = subprocess.Popen([BIN, "run", "-c", self.conf_file], env=self.env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=self._preexec if (self.run_user or self.netns) else None)
        port = wait_port or self.ports.get("smtpd") if "smtp" in self.modules else wait_port
        end = time.time() + START_TIMEOUT
        while time.time() < end:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError("postern exited with %s at start:\n%s\n%s\nlog:\n%s" %
                                     (self.proc.returncode, out.decode(errors="replace"),
                                      err.decode(errors="replace"), self.log()))
            if port is None:
                if os.path.exists(self.path("run", "postern.pid")):
                    time.sleep(0.3)
                    return self
            elif self.port_ready(port):
                return self
            time.sleep(0.05)
        self.kill()
        raise AssertionError("postern did not come up within %ss; log:\n%s" % (START_TIMEOUT, self.log()))

    def port_ready(self, port):
        if self.netns:
            with self.netns.inside():
                return port_ready(port, self.listen_addr)
        return port_ready(port, self.listen_addr)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def reload(self):
        os.kill(self.proc.pid, signal.SIGHUP)

    def stop(self, timeout=10):
        """SIGTERM and wait; returns the exit status."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("postern did not stop within %ss" % timeout)
        self.proc.communicate()
        return self.proc.returncode

    def kill(self):
        """kill -9 the master and every process of its group of children."""
        if self.proc and self.proc.poll() is None:
            for child in self.children():
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait()
            self.proc.communicate()

    def children(self, pid=None):
        """pids of the descendants of the master."""
        pid = pid or self.pid
        out = []
        try:
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            return out
        for k in kids:
            out.append(k)
            out.extend(self.children(k))
        return out

    def log(self):
        try:
            with open(self.log_file, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, text, timeout=10):
        return wait_for(lambda: text in self.log(), timeout, what="log line %r" % text)

    def mbox_path(self, user):
        return self.path("spool", user)

    def messages(self, user):
        """Messages in user's INBOX (parsed with Python's mailbox.mbox)."""
        p = self.mbox_path(user)
        if not os.path.exists(p):
            return []
        box = mailbox.mbox(p, create=False)
        try:
            return [m for m in box]
        finally:
            box.close()

    def wait_messages(self, user, n, timeout=10):
        return wait_for(lambda: len(self.messages(user)) >= n and self.messages(user), timeout,
                        what="%d message(s) for %s" % (n, user))

    def cleanup(self):
        self.kill()
        self.dns.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def system_mail_user(server, prefix, cleanup):
    """For a privilege-separated server (as_root=True, users=()): a
    throwaway system user (password "secret") as its one passwd-file
    user, with a home and ~/mail it owns and a spool anyone may create a
    mailbox in, so delivery and the mail process run with a real uid.
    Returns the user's name; the caller writes passdb into the conf."""
    user = throwaway_user(prefix, cleanup=cleanup)
    pw = pwd.getpwnam(user)
    home = server.path("home", user)
    os.makedirs(os.path.join(home, "mail"), exist_ok=True)
    for d in (home, os.path.join(home, "mail")):
        os.chown(d, pw.pw_uid, pw.pw_gid)
    os.chmod(server.path("spool"), 0o1777)
    with open(server.passwd_file, "w") as f:
        f.write("%s:{PLAIN}secret:%d:%d::%s::\n" % (user, pw.pw_uid, pw.pw_gid, home))
    return user


class ServerTestCase:
    """Mixin: self.server started in setUp, stopped and removed in tearDown.
    Subclasses set server_args (dict) to pass to Server()."""

    server_args = {}

    def setUp(self):
        self.server = Server(**self.server_args)
        self.addCleanup(self.server.cleanup)
        self.server.start()
