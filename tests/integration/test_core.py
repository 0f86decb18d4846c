"""Core daemon: exactly the loaded modules' listeners, SIGHUP reload (a
broken config is refused while the old one keeps serving), SIGTERM stop
within a second, worker restart after a crash, the CLI's error contract,
privilege separation when root. Uses the test-only `hello` module."""
import os
import pwd
import signal
import socket
import subprocess
import time
import unittest

from harness import BIN, SANITIZE, TESTMODS, Server, free_port, wait_for, port_open, throwaway_user

HELLO = os.path.join(os.path.abspath(TESTMODS), "hello.so")


def listening_ports(pids):
    """TCP ports in LISTEN state held by any of pids (via /proc)."""
    inodes = set()
    for pid in pids:
        d = "/proc/%d/fd" % pid
        try:
            for fd in os.listdir(d):
                try:
                    link = os.readlink(os.path.join(d, fd))
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            pass
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:
                    ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def greet(port, send=None):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        f = s.makefile("rb")
        line = f.readline().decode()
        if send:
            s.sendall(send.encode())
            return line, f.readline().decode()
        return line


class HelloServer(Server):
    def __init__(self, greeting="one", **kw):
        self.hello_port = free_port()
        self.greeting = greeting
        super().__init__(modules=(), listeners=(), conf=self.hello_conf(greeting), **kw)

    def hello_conf(self, greeting, extra=""):
        return "module hello %s\nhello_listen = 127.0.0.1:%d\nhello_greeting = %s\n%s" % (
            HELLO, self.hello_port, greeting, extra)

    def start(self):
        return super().start(wait_port=self.hello_port)


class CoreDaemonTest(unittest.TestCase):
    def setUp(self):
        self.server = HelloServer()
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def test_opens_exactly_the_listeners_of_loaded_modules(self):
        pids = [self.server.pid] + self.server.children()
        self.assertEqual(listening_ports(pids), {self.server.hello_port})
        self.assertTrue(greet(self.server.hello_port).startswith("one"))

    def test_reload_applies_new_config_without_dropping_connections(self):
        s = socket.create_connection(("127.0.0.1", self.server.hello_port), timeout=5)
        f = s.makefile("rb")
        self.assertTrue(f.readline().decode().startswith("one"))
        self.server.write_conf(self.server.hello_conf("two"))
        self.server.reload()
        wait_for(lambda: greet(self.server.hello_port).startswith("two"), 10, what="new greeting")
        # The session opened before the reload still works.
        s.sendall(b"ping\r\n")
        self.assertEqual(f.readline(), b"echo ping\r\n")
        s.sendall(b"quit\r\n")
        self.assertEqual(f.readline(), b"bye\r\n")
        s.close()
        self.server.wait_log("reload: configuration reloaded")

    def test_broken_config_on_reload_is_refused_and_old_keeps_serving(self):
        self.server.write_conf(self.server.hello_conf("two", "hello_greting = oops\n"))
        self.server.reload()
        self.server.wait_log("reload refused")
        log = self.server.log()
        self.assertIn('unknown parameter "hello_greting" (did you mean "hello_greeting"?)', log)
        self.assertIn(self.server.conf_file + ":", log)
        self.assertTrue(greet(self.server.hello_port).startswith("one"))
        # A later good reload still works.
        self.server.write_conf(self.server.hello_conf("three"))
        self.server.reload()
        wait_for(lambda: greet(self.server.hello_port).startswith("three"), 10, what="reloaded greeting")

    def test_sigterm_stops_within_a_second(self):
        # an open idle connection must not hold the stop back
        s = socket.create_connection(("127.0.0.1", self.server.hello_port), timeout=5)
        s.recv(100)
        pids = [self.server.pid] + self.server.children()
        t0 = time.monotonic()
        self.assertEqual(self.server.stop(), 0)
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 3.0 if SANITIZE else 1.0)
        for p in pids:
            self.assertFalse(os.path.exists("/proc/%d/status" % p) and "zombie" not in open("/proc/%d/status" % p).read(),
                             "process %d survived" % p)
        self.assertFalse(port_open(self.server.hello_port))
        self.assertFalse(os.path.exists(self.server.path("run", "postern.pid")))
        s.close()

    def test_crashed_worker_is_restarted(self):
        kids = self.server.children()
        self.assertTrue(kids)
        for k in kids:
            os.kill(k, signal.SIGKILL)
        self.server.wait_log("restarting", 10)
        wait_for(lambda: set(self.server.children()) - set(kids), 10, what="new worker")
        wait_for(lambda: greet(self.server.hello_port).startswith("one"), 10, what="service back")

    def test_stop_and_reload_verbs_use_the_pid_file(self):
        self.server.write_conf(self.server.hello_conf("four"))
        r = self.server.cmd("reload", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: greet(self.server.hello_port).startswith("four"), 10, what="reload via verb")
        r = self.server.cmd("stop", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.server.proc.wait(5)
        self.assertEqual(self.server.proc.returncode, 0)

    def test_stop_works_with_a_broken_config_but_reload_refuses(self):
        self.server.write_conf(self.server.hello_conf("one", "hello_greting = oops\n"))
        r = self.server.cmd("reload", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"not reloading", r.stderr)
        r = self.server.cmd("stop", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b'unknown parameter "hello_greting"', r.stderr)
        self.server.proc.wait(5)

    def test_port_in_use_is_a_clear_error(self):
        other = HelloServer()
        self.addCleanup(other.cleanup)
        other.hello_port = self.server.hello_port  # the running server holds it
        other.write_conf(other.hello_conf("two"))
        r = subprocess.run([BIN, "run", "-c", other.conf_file], capture_output=True, timeout=20,
                           preexec_fn=other._preexec if other.run_user else None)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"cannot bind 127.0.0.1:%d (hello_listen): Address already in use" % self.server.hello_port,
                      r.stderr)
        self.assertTrue(greet(self.server.hello_port).startswith("one"))

    def test_second_instance_refused(self):
        r = subprocess.run([BIN, "run", "-c", self.server.conf_file], capture_output=True, timeout=20,
                           preexec_fn=self.server._preexec if self.server.run_user else None)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"already running", r.stderr)


class CliTest(unittest.TestCase):
    def setUp(self):
        self.server = HelloServer()
        self.addCleanup(self.server.cleanup)

    def run_cli(self, *args, env=None):
        e = dict(os.environ)
        e.pop("POSTERN_CONF", None)
        if env:
            e.update(env)
        return subprocess.run([BIN] + list(args), capture_output=True, timeout=30, env=e)

    def test_check_good_and_bad(self):
        r = self.run_cli("check", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.server.conf_file, "a") as f:
            f.write("mynetwork = 10.0.0.0/8\nmessage_size_limit = lots\n")
        r = self.run_cli("check", "-c", self.server.conf_file)
        self.assertEqual(r.returncode, 1)
        err = r.stderr.decode()
        n = len(open(self.server.conf_file).read().splitlines())
        self.assertIn('%s:%d: unknown parameter "mynetwork" (did you mean "mynetworks"?)' % (self.server.conf_file, n - 1), err)
        self.assertIn("%s:%d:" % (self.server.conf_file, n), err)
        self.assertEqual(len(err.strip().splitlines()), 2)

    def test_postern_conf_environment(self):
        r = self.run_cli("check", env={"POSTERN_CONF": self.server.conf_file})
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.run_cli("check", env={"POSTERN_CONF": "/nonexistent/postern.conf"})
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"/nonexistent/postern.conf", r.stderr)

    def test_config_values(self):
        r = self.run_cli("config", "-c", self.server.conf_file, "myhostname", "hello_greeting")
        self.assertEqual(r.returncode, 0, r.stderr)
        # like postconf: in the order asked
        self.assertEqual(r.stdout.decode().splitlines(),
                         ["myhostname = mail.example.com.ar", "hello_greeting = one"])
        r = self.run_cli("config", "-n", "-c", self.server.conf_file)
        out = r.stdout.decode()
        self.assertIn("mydomain = example.com.ar", out)
        self.assertNotIn("bounce_queue_lifetime", out)
        r = self.run_cli("config", "-c", self.server.conf_file)
        self.assertIn("bounce_queue_lifetime = ", r.stdout.decode())
        r = self.run_cli("config", "-c", self.server.conf_file, "nosuchparam")
        self.assertNotEqual(r.returncode, 0)

    def test_unknown_verb_and_option(self):
        for args in (["frobnicate"], ["--frob"], ["check", "--frob", "-c", self.server.conf_file],
                     ["run", "extra", "-c", self.server.conf_file], ["-c"]):
            r = self.run_cli(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(len(r.stderr.decode().strip().splitlines()), 1, (args, r.stderr))
            self.assertNotIn(b"Segmentation", r.stderr)

    def test_help(self):
        r = self.run_cli("--help")
        self.assertEqual(r.returncode, 0)
        for verb in (b"run", b"check", b"config", b"reload", b"stop", b"queue", b"sendmail"):
            self.assertIn(verb, r.stdout)


@unittest.skipUnless(os.geteuid() == 0, "privilege separation needs root")
class PrivilegeSeparationTest(unittest.TestCase):
    def setUp(self):
        self.OWNER = throwaway_user("ptown", system=True, cleanup=self.addCleanup)
        self.server = HelloServer(as_root=True)
        self.server.write_conf(self.server.hello_conf("root", "mail_owner = %s\n" % self.OWNER))
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def test_worker_runs_as_mail_owner(self):
        uid = pwd.getpwnam(self.OWNER).pw_uid
        worker = None
        for k in self.server.children():
            with open("/proc/%d/status" % k) as f:
                status = f.read()
            uids = [int(x) for x in status.split("Uid:")[1].splitlines()[0].split()]
            if all(u == uid for u in uids):
                worker = k
        self.assertIsNotNone(worker, "no child runs as mail_owner")
        # The worker serves the connection; the master stays root.
        with open("/proc/%d/status" % self.server.pid) as f:
            self.assertIn("Uid:\t0\t0\t0\t0", f.read())
        self.assertTrue(greet(self.server.hello_port).startswith("root"))

    def test_missing_mail_owner_refused(self):
        self.server.stop()
        self.server.write_conf(self.server.hello_conf("root", "mail_owner = no-such-user-xyz\n"))
        r = subprocess.run([BIN, "run", "-c", self.server.conf_file], capture_output=True, timeout=20)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b'mail_owner "no-such-user-xyz"', r.stderr)


if __name__ == "__main__":
    unittest.main()
