"""Post-login sessions (the Dovecot login/mail split) through the test-only
sessecho module: the worker logs in, the mail agent hands the session to
the user's mail process, and the worker relays bytes."""
import os
import re
import socket
import ssl
import subprocess
import time
import unittest
import uuid
import grp
import pwd

from harness import SANITIZE, TESTMODS, Server, free_port, wait_for, test_cert

SESSECHO = os.path.join(os.path.abspath(TESTMODS), "sessecho.so")
TIMEOUT = 20 if SANITIZE else 8


class EchoServer(Server):
    def __init__(self, extra="", users=("alice", "bob", "carol"), **kw):
        self.echo_port = free_port()
        self.echos_port = free_port()
        self.echo_extra = extra
        super().__init__(modules=("mbox",), listeners=(), users=users, **kw)
        self.write_conf(self.echo_conf())

    def echo_conf(self):
        return ("module sessecho %s\nsessecho_listen = 127.0.0.1:%d\nsessechos_listen = 127.0.0.1:%d\n"
                "passdb = passwd-file:%s\n%s\n" % (SESSECHO, self.echo_port, self.echos_port, self.passwd_file,
                                                   self.echo_extra))

    def start(self):
        return super().start(wait_port=self.echo_port)


class Client:
    def __init__(self, port, tls=False):
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
        self.sock = s
        self.f = s.makefile("rb")
        self.greeting = self.line()

    def line(self):
        return self.f.readline().decode().rstrip("\r\n")

    def send(self, text):
        self.sock.sendall(text.encode())

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def login(self, user, password="secret"):
        return self.cmd("LOGIN %s %s" % (user, password))

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass


def fields(ok_line):
    """'OK tag1 uid=1 gid=2 groups=2,3 pid=9 peer=127.0.0.1 tls=0' -> dict"""
    d = {}
    for part in ok_line.split()[2:]:
        k, _, v = part.partition("=")
        d[k] = v
    return d


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


class SessionRootlessTest(unittest.TestCase):
    def setUp(self):
        self.server = EchoServer(extra="mail_max_userip_connections = 2")
        self.addCleanup(self.server.cleanup)
        self.server.start()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def client(self, tls=False):
        c = Client(self.server.echos_port if tls else self.server.echo_port, tls=tls)
        self.clients.append(c)
        self.assertEqual(c.greeting, "* SESSECHO ready")
        return c

    def daemon_ids(self):
        if self.server.run_user:
            pw = pwd.getpwnam(self.server.run_user)
            return pw.pw_uid, pw.pw_gid
        return os.getuid(), os.getgid()

    def test_login_runs_in_a_mail_process_as_the_daemon_user_and_echoes(self):
        c = self.client()
        ok = c.login("alice")
        self.assertTrue(ok.startswith("OK tag1 "), ok)
        f = fields(ok)
        uid, gid = self.daemon_ids()
        self.assertEqual(int(f["uid"]), uid)
        self.assertEqual(int(f["gid"]), gid)
        self.assertEqual(f["peer"], "127.0.0.1")
        self.assertEqual(f["tls"], "0")
        mpid = int(f["pid"])
        self.assertIn(mpid, self.server.children())
        self.assertEqual(c.cmd("hello there"), "ECHO hello there")
        self.assertEqual(c.cmd("QUIT"), "BYE")
        self.server.wait_log("sessecho-login[")
        log = self.server.log()
        self.assertRegex(log, r"sessecho-login\[\d+\]: Login: user=<alice>, method=PLAIN, rip=127\.0\.0\.1, "
                              r"lip=127\.0\.0\.1, mpid=%d, secured, session=<[0-9a-f]+>" % mpid)
        self.server.wait_log("sessecho(alice)[%d]: Disconnected" % mpid)

    def test_input_pipelined_after_login_reaches_the_mail_process(self):
        c = self.client()
        c.send("LOGIN alice secret\r\none\r\ntwo\r\nQUIT\r\n")
        self.assertTrue(c.line().startswith("OK tag1"))
        self.assertEqual([c.line(), c.line(), c.line()], ["ECHO one", "ECHO two", "BYE"])

    def test_implicit_tls(self):
        c = self.client(tls=True)
        ok = c.login("alice")
        self.assertTrue(ok.startswith("OK tag1"), ok)
        self.assertEqual(fields(ok)["tls"], "1")
        self.assertEqual(c.cmd("x" * 5000), "ECHO " + "x" * 5000)
        self.assertEqual(c.cmd("QUIT"), "BYE")
        self.server.wait_log(", TLS, session=<")

    def test_large_transfer_both_ways_with_backpressure(self):
        c = self.client()
        self.assertTrue(c.login("alice").startswith("OK"))
        line = "y" * 60000
        n = 60  # ~3.6 MB each way: more than any buffer on the way
        import threading
        t = threading.Thread(target=lambda: c.send((line + "\r\n") * n))
        t.start()
        for i in range(n):
            self.assertEqual(c.line(), "ECHO " + line, "line %d" % i)
        t.join()
        self.assertEqual(c.cmd("QUIT"), "BYE")

    def test_one_mail_process_per_user(self):
        a1, a2, b = self.client(), self.client(), self.client()
        p1 = int(fields(a1.login("alice"))["pid"])
        p2 = int(fields(a2.login("alice"))["pid"])
        pb = int(fields(b.login("bob"))["pid"])
        self.assertEqual(p1, p2)
        self.assertNotEqual(p1, pb)
        self.assertEqual(a1.cmd("QUIT"), "BYE")
        time.sleep(0.3)
        self.assertTrue(pid_alive(p1), "the process still serves a2")
        self.assertEqual(a2.cmd("still here"), "ECHO still here")
        self.assertEqual(a2.cmd("QUIT"), "BYE")
        wait_for(lambda: not pid_alive(p1), TIMEOUT, what="alice's mail process to exit")
        self.assertTrue(pid_alive(pb))
        b.close()
        wait_for(lambda: not pid_alive(pb), TIMEOUT, what="bob's mail process to exit")

    def test_userip_limit(self):
        a1, a2, a3 = self.client(), self.client(), self.client()
        self.assertTrue(a1.login("alice").startswith("OK"))
        self.assertTrue(a2.login("alice").startswith("OK"))
        r = a3.login("alice")
        self.assertTrue(r.startswith("NO [LIMIT]"), r)
        # The refused session stays in the worker and can log in as another.
        self.assertTrue(a3.login("bob").startswith("OK"))
        self.assertEqual(a3.cmd("after"), "ECHO after")
        a1.cmd("QUIT")
        self.server.wait_log("Login refused: user=<alice>")
        # A slot frees once a session ends.
        a4 = self.client()
        wait_for(lambda: a4.login("alice").startswith("OK"), TIMEOUT, what="a freed slot")

    def test_wrong_password_stays_on_the_worker(self):
        c = self.client()
        self.assertEqual(c.login("alice", "wrong"), "NO bad")
        self.assertTrue(c.cmd("nonsense").startswith("BAD"))
        self.assertTrue(c.login("alice").startswith("OK"))

    def test_many_quick_sessions_of_one_user_never_hang(self):
        # Sessions opened and closed back to back, from several clients at
        # once, race the idle process's retire request: each must still be
        # served (a lost one would hang until the client timeout).
        import threading
        errors = []

        def run(k):
            try:
                for i in range(15):
                    c = Client(self.server.echo_port)
                    ok = c.login("carol")
                    if not ok.startswith("OK"):
                        errors.append("%d/%d: %s" % (k, i, ok))
                    elif c.cmd("n%d" % i) != "ECHO n%d" % i:
                        errors.append("%d/%d: no echo" % (k, i))
                    # Wait for the end (EOF): only then is the slot free.
                    if c.cmd("QUIT") != "BYE" or c.f.readline() != b"":
                        errors.append("%d/%d: no clean end" % (k, i))
                    c.close()
            except Exception as e:  # a hang shows up as a socket timeout
                errors.append("%d: %r" % (k, e))

        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # mail_max_userip_connections = 2 here: two clients never exceed it.
        self.assertEqual(errors, [])
        self.assertGreater(self.server.log().count("Login: user=<carol>"), 29)

    def test_reload_keeps_an_open_session(self):
        c = self.client()
        ok = c.login("alice")
        mpid = int(fields(ok)["pid"])
        self.server.reload()
        self.server.wait_log("reload: configuration reloaded")
        time.sleep(0.5)
        self.assertEqual(c.cmd("after reload"), "ECHO after reload")
        self.assertTrue(pid_alive(mpid))
        # The new generation serves new logins.
        d = self.client()
        self.assertTrue(d.login("bob").startswith("OK"))
        self.assertEqual(c.cmd("QUIT"), "BYE")

    def test_stop_leaves_nothing_running(self):
        c, d = self.client(), self.client()
        self.assertTrue(c.login("alice").startswith("OK"))
        self.assertTrue(d.login("bob").startswith("OK"))
        procs = [self.server.pid] + self.server.children()
        self.assertGreaterEqual(len(procs), 6)  # master, worker, local, agent, 2 mail
        self.assertEqual(self.server.stop(), 0)
        wait_for(lambda: not any(pid_alive(p) for p in procs), TIMEOUT, what="every process to exit")
        self.assertEqual(c.f.readline(), b"")


@unittest.skipUnless(os.geteuid() == 0, "needs root: creates system users and runs the daemon as root")
class SessionRootTest(unittest.TestCase):
    def setUp(self):
        tag = uuid.uuid4().hex[:8]
        self.users = ["pt%s%s" % (n, tag) for n in ("a", "b")]
        self.group = "ptg%s" % tag
        subprocess.run(["groupadd", self.group], check=True, capture_output=True)
        self.addCleanup(subprocess.run, ["groupdel", self.group], capture_output=True)
        for u in self.users:
            subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", u], check=True, capture_output=True)
            self.addCleanup(subprocess.run, ["userdel", u], capture_output=True)
        self.gid = grp.getgrnam(self.group).gr_gid
        # userdb = passwd (system users): root is uid 0 there, which only
        # the mail agent can refuse; a passwd-file line with uid 0 is
        # refused when the file is read.
        self.server = EchoServer(users=(), as_root=True,
                                 extra="mail_privileged_group = %s\nmail_owner = nobody\nuserdb = passwd" % self.group)
        self.addCleanup(self.server.cleanup)
        lines = []
        for u in self.users:
            pw = pwd.getpwnam(u)
            lines.append("%s:{PLAIN}secret:%d:%d::%s::" % (u, pw.pw_uid, pw.pw_gid, self.server.dir))
        lines.append("root:{PLAIN}secret::::%s::" % self.server.dir)
        lines.append("rooty:{PLAIN}secret:0:0::%s::" % self.server.dir)
        with open(self.server.passwd_file, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.server.start()

    def test_mail_processes_run_as_each_user_with_the_privileged_group_saved_only(self):
        pids = []
        for u in self.users:
            c = Client(self.server.echo_port)
            ok = c.login(u)
            self.assertTrue(ok.startswith("OK tag1"), ok)
            f = fields(ok)
            pw = pwd.getpwnam(u)
            self.assertEqual(int(f["uid"]), pw.pw_uid)
            self.assertEqual(int(f["gid"]), pw.pw_gid)
            self.assertNotEqual(int(f["uid"]), 0)
            # mail_privileged_group is only the saved gid (raised around
            # the INBOX dotlock), never a supplementary group (issue #11).
            self.assertNotIn(str(self.gid), f["groups"].split(","))
            self.assertNotIn("0", f["groups"].split(","))
            with open("/proc/%s/status" % f["pid"]) as st:
                gids = re.search(r"^Gid:\s+(.*)$", st.read(), re.M).group(1).split()
            self.assertEqual([int(g) for g in gids], [pw.pw_gid, pw.pw_gid, self.gid, pw.pw_gid])
            pids.append(int(f["pid"]))
            self.assertEqual(c.cmd("hi"), "ECHO hi")
            c.close()
        self.assertNotEqual(pids[0], pids[1])

    def test_uid_0_is_refused(self):
        c = Client(self.server.echo_port)
        r = c.login("root")
        self.assertTrue(r.startswith("NO [UNAVAILABLE]"), r)
        self.server.wait_log("refusing to run a mail process as uid 0 for root")
        self.assertEqual(c.login("rooty"), "NO bad")
        # The connection is still the worker's.
        self.assertTrue(c.login(self.users[0]).startswith("OK"))
        c.close()
        self.assertNotIn("sessecho(root)", self.server.log())


if __name__ == "__main__":
    unittest.main()
