#!/usr/bin/env python3
"""kill -9 stress (run by hand, not by ctest): rounds of kill -9 of one
random process of a running Postern (master, worker, local delivery agent,
auth agent, mail agent, a mail process) under mixed SMTP / IMAP / POP3
load. After each round it counts

  late      acknowledged (250) messages not yet in their mailbox after the
            round's drain (--drain seconds); at the end, after waiting up to
            400 s more, those still missing are lost (must be 0; a duplicate
            is allowed),
  corrupt   entries seen over IMAP or POP3 whose body is not exactly what
            was sent (truncated or garbled; must be 0),
  serve     seconds from the kill until SMTP greets, IMAP and POP3 log in
            again (must be < 2; a killed master is restarted by this script
            at once, as a supervisor would).

Usage (from the top of the tree, after `make`):
    python3 tests/stress/kill9.py [--rounds 50] [--root] [--seed N]
--root runs the daemon privilege-separated (needs root; throwaway users).
Exit status 0 when every round met the three bounds.
"""
import argparse
import imaplib
import os
import poplib
import pwd
import random
import re
import signal
import smtplib
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Server, started_pids, throwaway_user  # noqa: E402

SERVE_LIMIT = 2.0


def body_for(token):
    return "".join("%s line %03d %s\r\n" % (token, k, "z" * 50) for k in range(40)) + "END %s\r\n" % token


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kids(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Stress:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.acked = {}            # token -> recipient user
        self.corrupt = []          # (round, where, detail)
        self.round = 0
        self.pause = threading.Event()
        self.stop = threading.Event()
        self.idle = {}
        self.setup()

    def setup(self):
        a = self.args
        if a.root:
            self.users = [throwaway_user("ptst") for _ in range(3)]
            self.probe_user = throwaway_user("ptpr")
            s = Server(modules=("mbox", "alias", "smtp", "imap", "pop3"), as_root=True, users=(),
                       listeners=("smtpd", "imap", "pop3"))
            lines = []
            for u in self.users + [self.probe_user]:
                pw = pwd.getpwnam(u)
                home = s.path("home", u)
                os.makedirs(os.path.join(home, "mail"), exist_ok=True)
                for d in (home, os.path.join(home, "mail")):
                    os.chown(d, pw.pw_uid, pw.pw_gid)
                lines.append("%s:{PLAIN}secret:%d:%d::%s::" % (u, pw.pw_uid, pw.pw_gid, home))
            os.chmod(s.path("spool"), 0o1777)
            with open(s.passwd_file, "w") as f:
                f.write("\n".join(lines) + "\n")
        else:
            self.users = ["alice", "bob", "carol"]
            self.probe_user = "probe"
            s = Server(modules=("mbox", "alias", "smtp", "imap", "pop3"), listeners=("smtpd", "imap", "pop3"),
                       users=self.users + [self.probe_user])
        s.write_conf("passdb = passwd-file:%s\nauth_failure_delay = 0s\nauth_throttle = no\n"
                     "minimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n"
                     "mbox_lock_timeout = 2s\nmail_max_userip_connections = 0\n"
                     # 50 rounds put more than the default 50 MB into a mailbox
                     "mailbox_size_limit = 0\n"
                     "mbox_dotlock_stale_time = %s\n" % (s.passwd_file, a.dotlock_stale))
        self.server = s

    # ---------- load ----------

    def wait_if_paused(self, name):
        while self.pause.is_set() and not self.stop.is_set():
            self.idle[name] = True
            time.sleep(0.02)
        self.idle[name] = False

    def smtp_load(self, n):
        name = "smtp%d" % n
        i = 0
        while not self.stop.is_set():
            self.wait_if_paused(name)
            rcpt = self.users[(n + i) % len(self.users)]
            token = "k%d-%d-%06d" % (self.round, n, i)
            i += 1
            try:
                with smtplib.SMTP("127.0.0.1", self.server.ports["smtpd"], timeout=20) as c:
                    c.sendmail("stress@example.com.ar", ["%s@example.com.ar" % rcpt],
                               ("Subject: %s\r\n\r\n%s" % (token, body_for(token))).encode())
                with self.lock:
                    self.acked[token] = rcpt
            except (OSError, smtplib.SMTPException, EOFError):
                time.sleep(0.02)

    def check_body(self, where, raw):
        head, sep, body = raw.partition(b"\r\n\r\n")
        m = re.search(rb"^Subject: (\S+)", head, re.M)
        if not sep or not m:
            self.corrupt.append((self.round, where, raw[:120]))
            return
        token = m.group(1).decode()
        if body != body_for(token).encode():
            self.corrupt.append((self.round, where, "%s: %d bytes" % (token, len(body))))

    def imap_load(self, n):
        name = "imap%d" % n
        user = self.users[n % len(self.users)]
        seen = 0
        while not self.stop.is_set():
            self.wait_if_paused(name)
            try:
                c = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=20)
                c.login(user, "secret")
                typ, data = c.select("INBOX", readonly=True)
                count = int(data[0])
                if count > seen:
                    typ, data = c.fetch("%d:%d" % (seen + 1, count), "(BODY.PEEK[])")
                    for item in data:
                        if isinstance(item, tuple):
                            self.check_body("imap:" + user, item[1])
                    seen = count
                c.logout()
            except (OSError, imaplib.IMAP4.error, imaplib.IMAP4.abort, EOFError, ValueError):
                time.sleep(0.05)

    def pop3_load(self, n):
        name = "pop%d" % n
        user = self.users[(n + 1) % len(self.users)]
        seen = 0
        while not self.stop.is_set():
            self.wait_if_paused(name)
            try:
                c = poplib.POP3("127.0.0.1", self.server.ports["pop3"], timeout=20)
                c.user(user)
                c.pass_("secret")
                count = c.stat()[0]
                for k in range(seen + 1, count + 1):
                    resp, lines, octets = c.retr(k)
                    self.check_body("pop3:" + user, b"\r\n".join(lines) + b"\r\n")
                seen = max(seen, count)
                c.quit()
            except (OSError, poplib.error_proto, EOFError):
                time.sleep(0.05)

    # ---------- probes ----------

    def serving(self):
        s = self.server
        try:
            with socket.create_connection(("127.0.0.1", s.ports["smtpd"]), timeout=1) as k:
                if not k.makefile("rb").readline().startswith(b"220"):
                    return False
            # A user that gets no mail: a mailbox held by the load (or by a
            # stale dotlock, issue #11 item 10) does not count as down.
            c = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=1)
            c.login(self.probe_user, "secret")
            c.logout()
            p = poplib.POP3("127.0.0.1", s.ports["pop3"], timeout=1)
            p.user(self.probe_user)
            p.pass_("secret")
            p.quit()
            return True
        except (OSError, imaplib.IMAP4.error, imaplib.IMAP4.abort, poplib.error_proto, EOFError):
            return False

    def delivered(self):
        """token -> copies in the mailboxes, and entries that are damaged."""
        copies = {}
        bad = 0
        for u in self.users:
            try:
                with open(self.server.mbox_path(u), "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            for m in re.finditer(rb"^Subject: (k\S+)$", data, re.M):
                t = m.group(1).decode()
                copies[t] = copies.get(t, 0) + 1
        return copies, bad

    # ---------- rounds ----------

    def victims(self):
        s = self.server
        pids = started_pids(s.log())
        v = [("master", s.pid)] + [(r, p) for r, p in pids.items() if alive(p)]
        if "mail" in pids:
            for mp in kids(pids["mail"]):
                v.append(("mail process", mp))
        return v

    def kill_round(self):
        s = self.server
        while True:
            v = self.victims()
            # Each kind of process as likely as any other.
            role = self.rng.choice(sorted({r for r, _ in v}))
            pid = self.rng.choice([p for r, p in v if r == role])
            before = set(s.children())
            t0 = time.monotonic()
            try:
                os.kill(pid, signal.SIGKILL)
                break
            except ProcessLookupError:
                continue  # a mail process that just retired: pick again
        orphans = 0
        if role == "master":
            s.proc.wait()
            end = time.time() + 5
            while time.time() < end and any(alive(k) for k in before):
                time.sleep(0.01)
            left = [k for k in before if alive(k)]
            orphans = len(left)
            for k in left:
                os.kill(k, signal.SIGKILL)
            s.proc.communicate()
            s.start()
        while not self.serving():
            if time.monotonic() - t0 > 60:
                break
            time.sleep(0.01)
        return role, time.monotonic() - t0, orphans

    def drain(self, timeout=60):
        """Wait until every acknowledged token is in its mailbox."""
        end = time.time() + timeout
        while True:
            copies, _ = self.delivered()
            with self.lock:
                missing = [t for t in self.acked if t not in copies]
            if not missing or time.time() > end:
                return copies, missing
            time.sleep(0.2)

    def run(self):
        s = self.server
        s.start()
        threads = [threading.Thread(target=self.smtp_load, args=(n,), daemon=True) for n in range(3)]
        threads += [threading.Thread(target=self.imap_load, args=(n,), daemon=True) for n in range(2)]
        threads += [threading.Thread(target=self.pop3_load, args=(n,), daemon=True) for n in range(1)]
        for t in threads:
            t.start()
        ok = True
        rows = []
        print("round  victim                 serve(s)  orphans  acked  late  dup  corrupt", flush=True)
        for r in range(1, self.args.rounds + 1):
            self.round = r
            time.sleep(self.rng.uniform(1.0, 2.5))
            role, serve, orphans = self.kill_round()
            # Let the load go on a little on the restarted server, then
            # pause it and let the queue drain for the count.
            time.sleep(0.5)
            self.pause.set()
            time.sleep(0.3)
            copies, missing = self.drain(self.args.drain)
            with self.lock:
                acked = len(self.acked)
            dups = sum(1 for t in self.acked if copies.get(t, 0) > 1)
            corrupt = len([c for c in self.corrupt if c[0] == r])
            # Late deliveries (missing) are judged at the end.
            fine = corrupt == 0 and serve < SERVE_LIMIT and orphans == 0
            ok &= fine
            rows.append((r, role, serve, orphans, acked, len(missing), dups, corrupt))
            print("%5d  %-20s  %8.3f  %7d  %5d  %4d  %3d  %7d%s" % (r, role, serve, orphans, acked, len(missing),
                                                                  dups, corrupt, "" if fine else "  <--"),
                  flush=True)
            if missing:
                print("       missing: %s" % " ".join(sorted(missing)[:10]), flush=True)
            self.pause.clear()
        self.stop.set()
        for t in threads:
            t.join(30)
        # Late is not lost: wait out stale locks and retries before counting.
        copies, missing = self.drain(400)
        lost = len(missing)
        dups = sum(1 for t in self.acked if copies.get(t, 0) > 1)
        # A last look at every mailbox over IMAP: nothing damaged is listed.
        for u in self.users:
            c = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=30)
            c.login(u, "secret")
            typ, data = c.select("INBOX", readonly=True)
            if int(data[0]):
                typ, data = c.fetch("1:*", "(BODY.PEEK[])")
                for item in data:
                    if isinstance(item, tuple):
                        self.check_body("final imap:" + u, item[1])
            c.logout()
        final_corrupt = len([c for c in self.corrupt if c[1].startswith("final")])
        serves = [row[2] for row in rows]
        print("\nrounds %d, kills by victim: %s" % (len(rows), ", ".join(
            "%s %d" % (k, sum(1 for row in rows if row[1] == k)) for k in sorted({row[1] for row in rows}))))
        print("acknowledged %d, lost %d, duplicated %d, late after a round's %gs drain: %d round(s), "
              "corrupt seen %d (final IMAP pass %d)" % (len(self.acked), lost, dups, self.args.drain,
                                                       sum(1 for row in rows if row[5]), len(self.corrupt),
                                                       final_corrupt))
        if missing:
            print("lost: %s" % " ".join(sorted(missing)[:50]))
        print("serve time: max %.3f s, mean %.3f s; orphans %d" % (max(serves), sum(serves) / len(serves),
                                                                 sum(row[3] for row in rows)))
        for c in self.corrupt[:20]:
            print("corrupt: round %d %s %s" % c)
        ok &= final_corrupt == 0 and lost == 0
        s.stop()
        if not self.args.keep:
            s.cleanup()
        else:
            print("state kept in", s.dir)
        return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--root", action="store_true", help="privilege-separated (as root, throwaway users)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the state directory")
    ap.add_argument("--dotlock-stale", default="10s",
                    help="mbox_dotlock_stale_time (a killed agent's dotlock blocks its mailbox that long)")
    ap.add_argument("--drain", type=float, default=20, help="seconds each round waits for the queue to drain")
    args = ap.parse_args()
    if args.root and os.geteuid() != 0:
        ap.error("--root needs root")
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    print("seed %d" % args.seed)
    return Stress(args).run()


if __name__ == "__main__":
    sys.exit(main())
