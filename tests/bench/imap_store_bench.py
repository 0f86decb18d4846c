"""Issue 15 rows for the store: first LOGIN+SELECT of a big mbox without
index (cold), LOGIN+SELECT again (warm), STORE 1:1000 +FLAGS.SILENT (\\Seen)
and a QRESYNC resync (SELECT INBOX (QRESYNC (v m))) after 10 flag changes
and 10 expunges made by another session; Dovecot 2.3 and Postern side by
side on the same pristine mbox (100k x 4 KB by default). Reuses the set-up
of tests/bench/imap/bench.py (Dovecot's throwaway config, Postern's) in
its own directory and ports, so it can run beside that benchmark. Run as
root: python3 tests/bench/imap_store_bench.py --postern build/bin/postern
--modules build/modules [--messages N] [--rounds R]. Not part of CI."""
import argparse
import importlib.util
import os
import re
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("imap_bench", os.path.join(HERE, "imap", "bench.py"))
ib = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ib)
ib.WORK = "/var/tmp/postern-bench/imapstore"
ib.PORTS = {"dovecot": {"imap": 20243, "pop3": 20210},
            "postern": {"imap": 21243, "pop3": 21210, "smtp": 21225}}


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), 120)
        self.f = self.sock.makefile("rb", buffering=1 << 16)
        self.f.readline()
        self.n = 0

    def cmd(self, line):
        """Run a command; returns (seconds, untagged lines)."""
        self.n += 1
        tag = b"s%d" % self.n
        t0 = time.time()
        self.sock.sendall(tag + b" " + line.encode() + b"\r\n")
        lines = []
        while True:
            l = self.f.readline()
            if not l:
                raise SystemExit("server closed the connection during %r" % line)
            m = re.search(rb"\{(\d+)\}\r\n$", l)
            if m:
                self.f.read(int(m.group(1)))
                continue
            if l.startswith(tag + b" "):
                el = time.time() - t0
                if not l.startswith(tag + b" OK"):
                    raise SystemExit("%s: %r" % (line, l))
                return el, lines
            lines.append(l)

    def close(self):
        try:
            self.cmd("LOGOUT")
        except SystemExit:
            pass
        self.sock.close()


def login(port):
    c = Client(port)
    c.cmd("LOGIN %s %s" % (ib.USER, ib.PASSWORD))
    return c


def code(lines, name):
    for l in lines:
        m = re.search(rb"\[" + name.encode() + rb" (\d+)\]", l)
        if m:
            return int(m.group(1))
    raise SystemExit("no %s in %r" % (name, lines[:5]))


def one_round(server, args, template, pw):
    ib.fresh_mailbox(server, template, pw)
    proc = ib.start_dovecot(pw, 4) if server == "dovecot" else \
        ib.start_postern(args.postern, args.modules, pw, 4)
    port = ib.PORTS[server]["imap"]
    ib.SERVER["pid"] = proc.pid
    r = {}
    try:
        mark = ib.cpu_mark()
        t0 = time.time()
        c = login(port)
        c.cmd("SELECT INBOX")
        r["cold"] = time.time() - t0
        r["cold_cpu"] = ib.cpu_since(mark)
        c.close()
        warm = []
        for _ in range(3):
            t0 = time.time()
            c = login(port)
            c.cmd("SELECT INBOX")
            warm.append(time.time() - t0)
            c.close()
        r["warm"] = min(warm)
        c = login(port)
        c.cmd("SELECT INBOX")
        stores = [c.cmd("STORE %d:%d +FLAGS.SILENT (\\Seen)" % (k * 1000 + 1, k * 1000 + 1000))[0]
                  for k in range(3)]
        r["store"] = statistics.median(stores)
        c.close()
        # QRESYNC: the client's state, then another session's changes.
        a = login(port)
        a.cmd("ENABLE QRESYNC")
        _, lines = a.cmd("SELECT INBOX")
        validity, hms = code(lines, "UIDVALIDITY"), code(lines, "HIGHESTMODSEQ")
        a.close()
        b = login(port)
        b.cmd("SELECT INBOX")
        n = args.messages
        b.cmd("STORE %s +FLAGS.SILENT (\\Flagged)" % ",".join(str(n // 2 + 7 * i) for i in range(10)))
        b.cmd("STORE %s +FLAGS.SILENT (\\Deleted)" % ",".join(str(n // 3 + 5 * i) for i in range(10)))
        b.cmd("EXPUNGE")
        b.close()
        a = login(port)
        a.cmd("ENABLE QRESYNC")
        t, lines = a.cmd("SELECT INBOX (QRESYNC (%d %d))" % (validity, hms))
        r["qresync"] = t
        fetches = sum(1 for l in lines if b" FETCH " in l)
        vanished = [l for l in lines if l.startswith(b"* VANISHED")]
        r["qr_fetch"] = fetches
        r["qr_vanished"] = vanished[0].split()[-1].count(b",") + 1 if vanished else 0
        a.close()
    finally:
        ib.stop(proc)
    print("%s: %s" % (server, ", ".join("%s=%.4g" % kv for kv in r.items())), file=sys.stderr, flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--postern", required=True)
    ap.add_argument("--modules", required=True)
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--size", type=int, default=4100)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", choices=("dovecot", "postern"))
    args = ap.parse_args()
    os.makedirs(ib.WORK, exist_ok=True)
    pw = ib.ensure_user(ib.USER)
    ib.ensure_user("postern")
    template = os.path.join(ib.WORK, "template-%d-%d.mbox" % (args.messages, args.size))
    if not os.path.exists(template):
        ib.make_mbox(template, args.messages, args.size)
    servers = [args.only] if args.only else ["dovecot", "postern"]
    res = {s: [] for s in servers}
    for _ in range(args.rounds):
        for s in servers:
            res[s].append(one_round(s, args, template, pw))
    rows = [("first LOGIN+SELECT (no index)", "cold"),
            ("its server CPU", "cold_cpu"), ("LOGIN+SELECT (warm)", "warm"),
            ("STORE 1000 +FLAGS.SILENT (\\Seen)", "store"),
            ("SELECT (QRESYNC) after 10 flag changes + 10 expunges", "qresync")]
    print("| %d x %d B | %s |" % (args.messages, args.size, " | ".join(servers)))
    print("|---|%s" % ("---|" * len(servers)))
    for label, key in rows:
        print("| %s | %s |" % (label, " | ".join("%.4f" % statistics.median(x[key] for x in res[s])
                                                  for s in servers)))
    for s in servers:
        print("%s QRESYNC answer: %d FETCH, VANISHED ranges %d" %
              (s, res[s][-1]["qr_fetch"], res[s][-1]["qr_vanished"]))


if __name__ == "__main__":
    main()
