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
        t = [up.append(message(i)) for i in range(args.appends)]
        r["append"] = statistics.median(t) * 1000
        r["append_mean"] = statistics.mean(t) * 1000
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
        t0 = time.time()
        base = up.n
        out = b""
        for i in range(args.burst):
            text = message(20000 + i)
            out += b"p%d APPEND INBOX {%d+}\r\n%s\r\n" % (i, len(text), text)
        up.send(out)
        up.until(b"p%d" % (args.burst - 1))
        r["burst"] = time.time() - t0
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
    print("| messages x %d B | %s |" % (args.size, " | ".join(
        "%s %s" % (nm, col) for nm in names
        for col in ("APPEND ms", "APPEND ms (selected elsewhere)", "NOOP there ms",
                    "%d pipelined s" % args.burst))))
    print("|---|%s" % ("---|" * 4 * len(servers)))
    for n in sizes:
        cells = []
        for s in servers:
            x = res[(s, n)]
            cells += ["%.2f" % x["append"], "%.2f" % x["append_sel"], "%.2f" % x["noop_sel"],
                      "%.2f" % x["burst"]]
        print("| %d | %s |" % (n, " | ".join(cells)))


if __name__ == "__main__":
    main()
