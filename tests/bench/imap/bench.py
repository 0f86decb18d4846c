"""Side-by-side IMAP/POP3 benchmark: Dovecot 2.3 (Debian's, configured
here in a throwaway directory) and Postern, both as root serving one user's
10 000-message mbox INBOX. Per round, each server freshly started on a
fresh copy of the mbox without indexes: first LOGIN+SELECT (cold: Dovecot
rewrites the mbox, both build their index), second LOGIN+SELECT (warm),
FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE) in that session, POP3
USER/PASS+STAT+UIDL, and PSS per idle IMAP connection (logged in, INBOX
selected); then the same PSS figure with a --small-messages folder (the
fixed cost of a session). Medians over --rounds, servers alternating, as a Markdown table
(also written to --out). Run as root through run.sh; not part of CI."""
import argparse
import importlib.util
import os
import pwd
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("smtp_bench", os.path.join(HERE, "..", "smtp", "bench.py"))
smtp_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(smtp_bench)
sh, ensure_user, tree_pss, wait_port = smtp_bench.sh, smtp_bench.ensure_user, smtp_bench.tree_pss, smtp_bench.wait_port

WORK = "/var/tmp/postern-bench/imap"
USER, PASSWORD = "ptbench", "benchpw"
PORTS = {"dovecot": (20143, 20110), "postern": (21143, 21110)}


# ---------- the mailbox ----------

def make_mbox(path, n, size):
    """n messages of about size bytes each (headers + body), as local(8)
    writes them."""
    body_line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\n"
    t0 = 1795846087
    with open(path, "w") as f:
        for i in range(n):
            when = t0 + i * 60
            hdr = ("Return-Path: <sender%d@example.com>\n"
                   "From: Sender %d <sender%d@example.com>\n"
                   "To: %s@example.com.ar\n"
                   "Subject: bench message %d\n"
                   "Date: %s\n"
                   "Message-ID: <bench.%d@example.com>\n"
                   "\n" % (i % 97, i % 97, i % 97, USER, i,
                           time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(when)), i))
            body = body_line * max(1, (size - len(hdr)) // len(body_line))
            f.write("From sender%d@example.com  %s\n" % (i % 97, time.strftime("%a %b %e %H:%M:%S %Y",
                                                                                 time.gmtime(when))))
            f.write(hdr + body + "\n")


class Imap:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), 60)
        self.f = self.sock.makefile("rb", buffering=1 << 16)
        self.f.readline()
        self.n = 0

    def cmd(self, line):
        """Run a command; returns the number of untagged lines."""
        self.n += 1
        tag = b"b%d" % self.n
        self.sock.sendall(tag + b" " + line.encode() + b"\r\n")
        count = 0
        while True:
            l = self.f.readline()
            if not l:
                raise SystemExit("IMAP server closed the connection during %r" % line)
            m = re.search(rb"\{(\d+)\}\r\n$", l)
            if m:
                self.f.read(int(m.group(1)))
                continue
            if l.startswith(tag + b" "):
                if not l.startswith(tag + b" OK"):
                    raise SystemExit("%s: %r" % (line, l))
                return count
            count += 1

    def close(self):
        self.sock.close()


def login_select(port):
    t0 = time.time()
    c = Imap(port)
    c.cmd("LOGIN %s %s" % (USER, PASSWORD))
    c.cmd("SELECT INBOX")
    return time.time() - t0, c


def pop3_stat_uidl(port, n):
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port), 60)
    f = s.makefile("rb", buffering=1 << 16)
    f.readline()
    for line in ("USER %s" % USER, "PASS %s" % PASSWORD, "STAT"):
        s.sendall(line.encode() + b"\r\n")
        r = f.readline()
        if not r.startswith(b"+OK"):
            raise SystemExit("POP3 %s: %r" % (line.split()[0], r))
    if not r.startswith(b"+OK %d " % n):
        raise SystemExit("POP3 STAT: %r (want %d messages)" % (r, n))
    s.sendall(b"UIDL\r\n")
    lines = 0
    r = f.readline()
    while True:
        r = f.readline()
        if r == b".\r\n":
            break
        lines += 1
    elapsed = time.time() - t0
    s.sendall(b"QUIT\r\n")
    f.readline()
    s.close()
    if lines != n:
        raise SystemExit("POP3 UIDL gave %d lines, want %d" % (lines, n))
    return elapsed


# ---------- the servers ----------

def write_users(path, pw):
    with open(path, "w") as f:
        f.write("%s:{PLAIN}%s:%d:%d::%s::\n" % (USER, PASSWORD, pw.pw_uid, pw.pw_gid, home_dir()))


def home_dir():
    return os.path.join(WORK, "home", USER)


def spool_dir(server):
    return os.path.join(WORK, "spool-" + server)


def fresh_mailbox(server, template, pw):
    """The mbox copy and an empty ~/mail (no index of either server)."""
    shutil.rmtree(os.path.join(WORK, "home"), ignore_errors=True)
    os.makedirs(os.path.join(home_dir(), "mail"))
    sp = spool_dir(server)
    shutil.rmtree(sp, ignore_errors=True)
    os.makedirs(sp)
    shutil.copyfile(template, os.path.join(sp, USER))
    for root, dirs, files in os.walk(os.path.join(WORK, "home")):
        os.chown(root, pw.pw_uid, pw.pw_gid)
    for p in (sp, os.path.join(sp, USER)):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chmod(os.path.join(sp, USER), 0o600)
    sh("sync")


def start_dovecot(pw, nconn):
    imap_port, pop3_port = PORTS["dovecot"]
    run = os.path.join(WORK, "dovecot-run")
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(run)
    users = os.path.join(WORK, "dovecot-users")
    write_users(users, pw)
    conf = os.path.join(WORK, "dovecot.conf")
    with open(conf, "w") as f:
        f.write("""# written by tests/bench/imap/bench.py
base_dir = %(run)s
state_dir = %(run)s/state
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
log_path = %(work)s/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = mbox:~/mail:INBOX=%(spool)s/%%u
mail_max_userip_connections = %(nconn)d
pop3_uidl_format = %%08Xu%%08Xv
passdb {
  driver = passwd-file
  args = %(users)s
}
userdb {
  driver = passwd-file
  args = %(users)s
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %(imap)d
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %(pop3)d
  }
  inet_listener pop3s {
    port = 0
  }
}
""" % {"run": run, "work": WORK, "spool": spool_dir("dovecot"), "users": users, "nconn": nconn + 10,
       "imap": imap_port, "pop3": pop3_port})
    proc = subprocess.Popen(["dovecot", "-F", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(imap_port)
    wait_port(pop3_port)
    return proc


def start_postern(binary, modules, pw, nconn):
    imap_port, pop3_port = PORTS["postern"]
    users = os.path.join(WORK, "postern-users")
    write_users(users, pw)
    conf = os.path.join(WORK, "postern.conf")
    with open(conf, "w") as f:
        f.write("\n".join([
            "# written by tests/bench/imap/bench.py",
            "module_directory = %s" % modules,
            "module mbox", "module imap", "module pop3",
            "myhostname = mail.example.com.ar", "inet_interfaces = loopback-only",
            "imap_listen = 127.0.0.1:%d" % imap_port, "imaps_listen =",
            "pop3_listen = 127.0.0.1:%d" % pop3_port, "pop3s_listen =",
            "queue_directory = %s/postern-queue" % WORK, "pid_file = %s/postern.pid" % WORK,
            "maillog_file = %s/postern.log" % WORK,
            "passdb = passwd-file:%s" % users, "userdb = passwd-file:%s" % users,
            "auth_failure_delay = 0s", "disable_plaintext_auth = no",
            "mail_location = mbox:~/mail:INBOX=%s/%%u" % spool_dir("postern"),
            "mail_max_userip_connections = %d" % (nconn + 10),
            "client_connection_limit = 1000", "service_connection_limit = 2000",
            "mail_owner = postern", ""]))
    proc = subprocess.Popen([binary, "run", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(imap_port)
        wait_port(pop3_port)
    except SystemExit:
        proc.kill()
        raise SystemExit("postern did not start: %s" % proc.communicate()[1].decode(errors="replace"))
    return proc


def stop(proc):
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        for p in [proc.pid]:
            os.kill(p, 9)
        proc.wait()


def idle_cost(port, pid, n):
    """PSS (KiB) added per idle IMAP connection, logged in with INBOX selected."""
    # One session first, so per-user processes both servers keep are counted once.
    _, first = login_select(port)
    time.sleep(1)
    before = tree_pss([pid])
    conns = [login_select(port)[1] for _ in range(n)]
    time.sleep(2)
    after = tree_pss([pid])
    for c in conns + [first]:
        c.close()
    return (after - before) / n


def small_round(server, args, template, pw):
    """PSS per idle connection with a small folder (after one cold SELECT)."""
    fresh_mailbox(server, template, pw)
    if server == "dovecot":
        proc = start_dovecot(pw, args.idle)
    else:
        proc = start_postern(args.postern, args.modules, pw, args.idle)
    imap_port = PORTS[server][0]
    try:
        _, c = login_select(imap_port)
        c.cmd("LOGOUT")
        c.close()
        kib = idle_cost(imap_port, proc.pid, args.idle)
    finally:
        stop(proc)
    print("%s: small idle_kib=%.4g" % (server, kib), file=sys.stderr, flush=True)
    return kib


def one_round(server, args, template, pw, n):
    fresh_mailbox(server, template, pw)
    if server == "dovecot":
        proc = start_dovecot(pw, args.idle)
    else:
        proc = start_postern(args.postern, args.modules, pw, args.idle)
    imap_port, pop3_port = PORTS[server]
    try:
        r = {}
        r["cold"], c = login_select(imap_port)
        c.cmd("LOGOUT")
        c.close()
        r["warm"], c = login_select(imap_port)
        t0 = time.time()
        got = c.cmd("FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)")
        r["fetch"] = time.time() - t0
        if got < n:
            raise SystemExit("%s: FETCH 1:* gave %d lines, want %d" % (server, got, n))
        c.cmd("LOGOUT")
        c.close()
        r["pop3"] = pop3_stat_uidl(pop3_port, n)
        r["idle_kib"] = idle_cost(imap_port, proc.pid, args.idle)
    finally:
        stop(proc)
    print("%s: %s" % (server, ", ".join("%s=%.4g" % kv for kv in r.items())), file=sys.stderr, flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--postern", required=True)
    ap.add_argument("--modules", required=True)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--size", type=int, default=4100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=20, help="idle IMAP connections for the memory figure")
    ap.add_argument("--small-messages", type=int, default=100,
                    help="folder size for the second idle-memory figure (0: skip)")
    ap.add_argument("--out")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.py: run as root (through run.sh)")
    os.makedirs(WORK, exist_ok=True)
    os.chmod(WORK, 0o755)
    os.chmod(os.path.dirname(WORK), 0o755)
    pw = ensure_user(USER)
    ensure_user("postern")
    sh("dovecot", "--version")
    template = os.path.join(WORK, "template.mbox")
    make_mbox(template, args.messages, args.size)
    res = {"dovecot": [], "postern": []}
    for _ in range(args.rounds):
        for server in ("dovecot", "postern"):
            res[server].append(one_round(server, args, template, pw, args.messages))
    if args.small_messages:
        small = os.path.join(WORK, "template-small.mbox")
        make_mbox(small, args.small_messages, args.size)
        for i in range(args.rounds):
            for server in ("dovecot", "postern"):
                res[server][i]["small_kib"] = small_round(server, args, small, pw)

    def med(server, key):
        return statistics.median(r[key] for r in res[server])

    def ratio(key):
        return statistics.median(d[key] / p[key] for d, p in zip(res["dovecot"], res["postern"]))

    version = sh("dovecot", "--version").stdout.strip()
    out = ["IMAP/POP3, %d messages x ~%d B in an mbox INBOX, Dovecot %s vs Postern, median of %d rounds; "
           "ratio = median of per-round Dovecot/Postern (higher: Postern better)" %
           (args.messages, args.size, version, args.rounds), "",
           "| operation | Dovecot | Postern | ratio |", "| --- | --- | --- | --- |"]
    for key, label in (("cold", "first LOGIN+SELECT (no index yet)"), ("warm", "second LOGIN+SELECT"),
                       ("fetch", "FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"),
                       ("pop3", "POP3 USER/PASS+STAT+UIDL")):
        out.append("| %s | %.1f ms | %.1f ms | %.2f |" % (label, med("dovecot", key) * 1000,
                                                          med("postern", key) * 1000, ratio(key)))
    out.append("| PSS per idle IMAP connection (%d, INBOX selected) | %.0f KiB | %.0f KiB | %.2f |" %
               (args.idle, med("dovecot", "idle_kib"), med("postern", "idle_kib"), ratio("idle_kib")))
    if args.small_messages:
        out.append("| PSS per idle IMAP connection (%d, INBOX of %d messages) | %.0f KiB | %.0f KiB | %.2f |" %
                   (args.idle, args.small_messages, med("dovecot", "small_kib"), med("postern", "small_kib"),
                    ratio("small_kib")))
    text = "\n".join(out) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
