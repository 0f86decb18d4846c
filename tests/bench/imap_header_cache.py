"""Header cache (issue 15): the big-folder rows that read message headers
(FETCH ENVELOPE, SEARCH HEADER/FROM, SORT, THREAD), Dovecot 2.3 and Postern
side by side on one 100k x 4 KB mbox. Reuses tests/bench/imap/bench.py's
servers and mbox maker, in its own directory and ports so it can run beside
that bench. Run as root: python3 tests/bench/imap_header_cache.py
--postern build/bin/postern --modules build/modules [--n 100000]. Not CI."""
import argparse
import importlib.util
import os
import pwd
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("imap_bench", os.path.join(HERE, "imap", "bench.py"))
b = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(b)
b.WORK = "/var/tmp/postern-bench/imapcache"
b.PORTS = {"dovecot": {"imap": 22143, "pop3": 22110},
           "postern": {"imap": 23143, "pop3": 23110, "smtp": 23025}}

STEPS = [
    ("search_msgid", "SEARCH HEADER Message-ID <bench.77777@example.com>"),
    ("search_from", "SEARCH FROM sender42"),
    ("fetch_env", "FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"),
    ("search_msgid", "SEARCH HEADER Message-ID <bench.77777@example.com>"),
    ("search_from", "SEARCH FROM sender42"),
    ("sort_arrival", "SORT (ARRIVAL) UTF-8 ALL"),
    ("sort_subject", "SORT (SUBJECT) UTF-8 ALL"),
    ("sort_from", "SORT (FROM) UTF-8 ALL"),
    ("thread", "THREAD REFERENCES UTF-8 ALL"),
    ("fetch_hf", "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (From Subject Date)])"),
]


def cpu_of(pid):
    """CPU seconds (user+system) of a process, or 0 when it is gone."""
    try:
        f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def session_pid(kind, root):
    """The session's process under the server root (Dovecot's imap,
    Postern's mail process), newest first; others may run the same user."""
    name = "imap" if kind == "dovecot" else "postern-imap"
    parent, comm = {}, {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open("/proc/%s/stat" % d).read()
            except OSError:
                continue
            comm[int(d)] = st[st.index("(") + 1:st.rindex(")")]
            parent[int(d)] = int(st.rsplit(")", 1)[1].split()[1])

    def under(p):
        while p > 1:
            if p == root:
                return True
            p = parent.get(p, 0)
        return False
    found = [p for p, c in comm.items() if c == name and under(p)]
    return max(found) if found else 0


def timed(c, line, pid):
    c0 = cpu_of(pid)
    t0 = time.time()
    c.cmd(line)
    return time.time() - t0, cpu_of(pid) - c0


def run(server, args, template, pw):
    kind = "dovecot" if server == "dovecot" else "postern"
    b.fresh_mailbox(kind, template, pw)
    if kind == "dovecot":
        proc = b.start_dovecot(pw, 4)
    elif server == "postern-before":
        proc = b.start_postern(args.before + "/bin/postern", args.before + "/modules", pw, 4)
    else:
        proc = b.start_postern(args.postern, args.modules, pw, 4)
    port = b.PORTS[kind]["imap"]
    rows = []
    try:
        t, c = b.login_select(port)
        pid = session_pid(kind, proc.pid)
        rows.append(("first LOGIN+SELECT", (t, 0.0)))
        seen = set()
        for key, line in STEPS:
            label = key + (" (again)" if key in seen else "")
            seen.add(key)
            rows.append((label, timed(c, line, pid)))
        c.cmd("LOGOUT")
        c.close()
        time.sleep(1)
        # A new session: what was learnt must have been kept on disk.
        t, c = b.login_select(port)
        pid = session_pid(kind, proc.pid)
        for key, line in STEPS[:2] + STEPS[5:]:
            rows.append((key + " (new session)", timed(c, line, pid)))
        c.cmd("LOGOUT")
        c.close()
    finally:
        b.stop(proc)
    for k, (w, cp) in rows:
        print("%s %-28s %.3f cpu %.2f" % (server, k, w, cp), file=sys.stderr, flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--postern", required=True)
    ap.add_argument("--modules", required=True)
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--size", type=int, default=4100)
    ap.add_argument("--before", help="build dir of Postern before the cache, run as a third column")
    ap.add_argument("--only", choices=["dovecot", "postern-before", "postern"])
    a = ap.parse_args()
    os.makedirs(b.WORK, exist_ok=True)
    os.chmod(b.WORK, 0o755)
    os.chmod(os.path.dirname(b.WORK), 0o755)
    pw = b.ensure_user(b.USER)
    b.ensure_user("postern")
    template = os.path.join(b.WORK, "mbox-%d-%d" % (a.n, a.size))
    if not os.path.exists(template):
        b.make_mbox(template + ".tmp", a.n, a.size)
        os.rename(template + ".tmp", template)
    res = {}
    servers = ["dovecot"] + (["postern-before"] if a.before else []) + ["postern"]
    for server in servers:
        if a.only and server != a.only:
            continue
        res[server] = run(server, a, template, pw)
    cols = [x for x in servers if x in res]
    print("| step (wall s; cpu s of the session process) | " + " | ".join(cols) + " | Dovecot / Postern |")
    print("|---|" + "---:|" * (len(cols) + 1))
    first = res[cols[0]]
    for i in range(len(first)):
        cells = ["%.3f (%.2f)" % res[x][i][1] for x in cols]
        ratio = ""
        if "dovecot" in res and "postern" in res and res["postern"][i][1][0] > 0:
            ratio = "%.1fx" % (res["dovecot"][i][1][0] / res["postern"][i][1][0])
        print("| %s | %s | %s |" % (first[i][0], " | ".join(cells), ratio))

if __name__ == "__main__":
    main()
