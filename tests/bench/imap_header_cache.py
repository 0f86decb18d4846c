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
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("imap_bench", os.path.join(HERE, "imap", "bench.py"))
b = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(b)
b.WORK = "/var/tmp/postern-bench/imapcache"
b.PORTS = {"dovecot": (22143, 22110), "postern": (23143, 23110)}

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


def timed(c, line):
    t0 = time.time()
    c.cmd(line)
    return time.time() - t0


def run(server, args, template, pw):
    b.fresh_mailbox(server, template, pw)
    proc = b.start_dovecot(pw, 4) if server == "dovecot" else b.start_postern(args.postern, args.modules, pw, 4)
    port = b.PORTS[server][0]
    rows = []
    try:
        t, c = b.login_select(port)
        rows.append(("first LOGIN+SELECT", t))
        seen = set()
        for key, line in STEPS:
            label = key + (" (again)" if key in seen else "")
            seen.add(key)
            rows.append((label, timed(c, line)))
        c.cmd("LOGOUT")
        c.close()
        # A new session: what was learnt must have been kept on disk.
        t, c = b.login_select(port)
        for key, line in STEPS[:2] + STEPS[5:]:
            rows.append((key + " (new session)", timed(c, line)))
        c.cmd("LOGOUT")
        c.close()
    finally:
        b.stop(proc)
    for k, v in rows:
        print("%s %-28s %.3f" % (server, k, v), file=sys.stderr, flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--postern", required=True)
    ap.add_argument("--modules", required=True)
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--size", type=int, default=4100)
    ap.add_argument("--only", choices=["dovecot", "postern"])
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
    for server in ("dovecot", "postern"):
        if a.only and server != a.only:
            continue
        res[server] = run(server, a, template, pw)
    print("| step | Dovecot 2.3 (s) | Postern (s) | ratio |")
    print("|---|---:|---:|---:|")
    d = res.get("dovecot")
    p = res.get("postern")
    for i in range(len((d or p))):
        k = (d or p)[i][0]
        dv = d[i][1] if d else float("nan")
        pv = p[i][1] if p else float("nan")
        print("| %s | %.3f | %.3f | %.1fx |" % (k, dv, pv, dv / pv if pv else 0))


if __name__ == "__main__":
    main()
