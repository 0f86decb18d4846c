"""Issue 15, APPEND into a big folder: milliseconds per APPEND into an
INBOX of 1k / 10k / 50k messages (4 KB each), Dovecot 2.3 and Postern side
by side on the same pristine mbox. Per size: a first LOGIN+SELECT builds
each server's index, then one session APPENDs --appends messages one at a
time (each waits for its OK; median and the mean), then the same again
while a second session has INBOX selected and runs NOOP after each APPEND
(it sees and takes the new message: the "folder selected" case of the
issue), then a pipelined MULTIAPPEND-free burst of --burst APPENDs (total
seconds, as a migration tool sends them). Reuses the set-up of
tests/bench/imap/bench.py (Dovecot's throwaway config, Postern's) in its
own directory and ports. Run as root:
python3 tests/bench/imap_append_bench.py --postern build/bin/postern
--modules build/modules [--sizes 1000,10000,50000] [--only postern]
[--label NAME]. Not part of CI."""
import argparse
import importlib.util
import os
import re
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("imap_bench", os.path.join(HERE, "imap", "bench.py"))
ib = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ib)
ib.WORK = "/var/tmp/postern-bench/imapappend"
ib.PORTS = {"dovecot": (20343, 20310), "postern": (21343, 21310)}


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), 300)
        self.f = self.sock.makefile("rb", buffering=1 << 16)
        self.f.readline()
        self.n = 0

    def send(self, data):
        self.sock.sendall(data)

    def until(self, tag):
        while True:
            l = self.f.readline()
            if not l:
                raise SystemExit("server closed the connection")
            m = re.search(rb"\{(\d+)\}\r\n$", l)
            if m:
                self.f.read(int(m.group(1)))
                continue
            if l.startswith(tag + b" "):
                if not l.startswith(tag + b" OK"):
                    raise SystemExit("%r" % l)
                return l

    def cmd(self, line):
        self.n += 1
        tag = b"c%d" % self.n
        t0 = time.time()
        self.send(tag + b" " + line + b"\r\n")
        self.until(tag)
        return time.time() - t0

    def append(self, text):
        self.n += 1
        tag = b"c%d" % self.n
        t0 = time.time()
        # synchronising literal: works on both servers
        self.send(tag + b" APPEND INBOX {%d}\r\n" % len(text))
        l = self.f.readline()
        if not l.startswith(b"+"):
            raise SystemExit("APPEND refused: %r" % l)
        self.send(text + b"\r\n")
        self.until(tag)
        return time.time() - t0

    def close(self):
        try:
            self.cmd(b"LOGOUT")
        except (SystemExit, OSError):
            pass
        self.sock.close()


def login(port):
    c = Client(port)
    c.cmd(b"LOGIN %s %s" % (ib.USER.encode(), ib.PASSWORD.encode()))
    return c


def message(i):
    body = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n" * 52
    return (b"From: Uploader <up%d@example.com>\r\nTo: %s@example.com.ar\r\n"
            b"Subject: uploaded %d\r\nMessage-ID: <up.%d@example.com>\r\n\r\n" %
            (i, ib.USER.encode(), i, i)) + body


def tree_cpu(pid):
    """CPU seconds (user + system) of pid and its descendants so far: the
    server's own cost, steadier than wall time on a busy machine."""
    kids, cpu = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(st[1]), []).append(int(d))
        cpu[int(d)] = (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo.extend(kids.get(p, []))
    return total


def index_id():
    """The index file's identity: a rename reuses inode numbers, so with
    its mtime."""
    try:
        st = os.stat(os.path.join(ib.home_dir(), "mail", ".imap", "INBOX", "postern.index"))
        return (st.st_ino, st.st_mtime_ns)
    except OSError:
        return None


def start_postern(args, pw):
    """bench.py's Postern, without the default 50 MB mailbox_size_limit
    (a 50k x 4 KB INBOX is past it)."""
    proc = ib.start_postern(args.postern, args.modules, pw, 4)
    ib.stop(proc)
    conf = os.path.join(ib.WORK, "postern.conf")
    with open(conf, "a") as f:
        f.write("mailbox_size_limit = 0\n")
    proc = subprocess.Popen([args.postern, "run", "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ib.wait_port(ib.PORTS["postern"][0])
    return proc


def one_size(server, args, n, pw):
    template = os.path.join(ib.WORK, "template-%d-%d.mbox" % (n, args.size))
    if not os.path.exists(template):
        ib.make_mbox(template, n, args.size)
    ib.fresh_mailbox(server, template, pw)
    proc = ib.start_dovecot(pw, 4) if server == "dovecot" else start_postern(args, pw)
    port = ib.PORTS[server][0]
    r = {}
    try:
        c = login(port)
        c.cmd(b"SELECT INBOX")
        c.close()
        up = login(port)
        cpu0, t, writes, last = tree_cpu(proc.pid), [], 0, index_id()
        for i in range(args.appends):
            t.append(up.append(message(i)))
            now = index_id()
            writes += now != last
            last = now
        r["append"] = statistics.median(t) * 1000
        r["append_mean"] = statistics.mean(t) * 1000
        r["append_cpu"] = (tree_cpu(proc.pid) - cpu0) / args.appends * 1000
        r["index_writes"] = writes if server == "postern" else 0
        sel = login(port)
        sel.cmd(b"SELECT INBOX")
        t, tn = [], []
        for i in range(args.appends):
            t.append(up.append(message(10000 + i)))
            tn.append(sel.cmd(b"NOOP"))
        r["append_sel"] = statistics.median(t) * 1000
        r["noop_sel"] = statistics.median(tn) * 1000
        sel.close()
        # pipelined: every APPEND sent at once (LITERAL+ where offered,
        # else one literal at a time is what a client must do: skip)
        cpu0 = tree_cpu(proc.pid)
        t0 = time.time()
        base = up.n
        out = b""
        for i in range(args.burst):
            text = message(20000 + i)
            out += b"p%d APPEND INBOX {%d+}\r\n%s\r\n" % (i, len(text), text)
        up.send(out)
        up.until(b"p%d" % (args.burst - 1))
        r["burst"] = time.time() - t0
        r["burst_cpu"] = (tree_cpu(proc.pid) - cpu0) / args.burst * 1000
        up.n = base
        up.close()
    finally:
        ib.stop(proc)
    print("%s %d: %s" % (server, n, ", ".join("%s=%.4g" % kv for kv in r.items())),
          file=sys.stderr, flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--postern", required=True)
    ap.add_argument("--modules", required=True)
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--size", type=int, default=4100)
    ap.add_argument("--appends", type=int, default=100)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--only", choices=("dovecot", "postern"))
    ap.add_argument("--label", default="postern")
    args = ap.parse_args()
    os.makedirs(ib.WORK, exist_ok=True)
    pw = ib.ensure_user(ib.USER)
    ib.ensure_user("postern")
    servers = [args.only] if args.only else ["dovecot", "postern"]
    sizes = [int(x) for x in args.sizes.split(",")]
    res = {(s, n): one_size(s, args, n, pw) for n in sizes for s in servers}
    names = [args.label if s == "postern" else s for s in servers]
    cols = (("APPEND ms", "append", "%.2f"), ("server CPU ms/APPEND", "append_cpu", "%.2f"),
            ("APPEND ms, selected elsewhere", "append_sel", "%.2f"),
            ("NOOP there ms", "noop_sel", "%.2f"),
            ("%d pipelined s" % args.burst, "burst", "%.2f"),
            ("pipelined CPU ms/APPEND", "burst_cpu", "%.2f"))
    print("| server | messages x %d B | %s | index rewrites in %d APPENDs |" % (
        args.size, " | ".join(c[0] for c in cols), args.appends))
    print("|---|---|%s---|" % ("---|" * len(cols)))
    for n in sizes:
        for s, nm in zip(servers, names):
            x = res[(s, n)]
            print("| %s | %d | %s | %s |" % (nm, n, " | ".join(fmt % x[k] for _, k, fmt in cols),
                                            x["index_writes"] if s == "postern" else "-"))


if __name__ == "__main__":
    main()
