#!/usr/bin/env python3
"""`postern why` over a decision record of a million events (issue 14).

A Postern server (the integration harness, rootless) creates the store
with its own schema and is stopped; the script then fills it with N
events spread over 30 days, shaped like a small site's traffic: SMTP
transactions (mostly accepted, some refused by the seed's rules, each
with a restriction trace), deliveries (a fifth of them through an alias,
sender back-filled as the writer does) and logins. 2000 senders on 50
domains, 500 local users; bob and alice among them. Then it times
`postern why` (the binary, --json to /dev/null, wall clock, median of 5)
for the questions an admin asks. Prints a Markdown table; no assertion
on the figures (the machine is shared).

--fold: the layout of a busy server (schema 3, core/record.c): every
accepted transaction's deliveries (one per recipient, 50-800 ms after it)
folded into its row, as when they share the writer's batch, instead of
deliveries of their own; the events counted include the folded ones.

--compare OTHER/bin/postern: before and after on the same events. The
other (older) build creates the store (schema 2), it is filled, and a
copy is given the dlv column (as the writer migrates a schema-2 store);
each question is asked of the original by the other build and of the
copy by this one, in turn.

  python3 tests/bench/why_bench.py [--events 1000000] [--batch 1] [--fold] [--compare BIN] [--keep]
"""
import argparse
import os
import random
import sqlite3
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
from harness import Server, wait_for  # noqa: E402

DOMAIN = "example.com.ar"
TRACE = ("RCPT <{rcpt}>:\n  smtpd_helo_restrictions: permit_mynetworks -> no decision\n"
         "  smtpd_helo_restrictions: reject_invalid_helo_hostname -> no decision\n"
         "  smtpd_sender_restrictions: reject_unknown_sender_domain -> no decision\n"
         "  smtpd_recipient_restrictions: permit_mynetworks -> no decision\n"
         "  smtpd_recipient_restrictions: reject_unauth_destination -> no decision\n")


def split(a):
    local, _, dom = a.rpartition("@")
    return local.lower(), dom.lower()


US, RS = "\x1f", "\x1e"


def rcpts(rows):
    """event.rcpts: (role, address, reply, rule) as the writer joins them."""
    return RS.join("%d%s%s%s%s%s%s" % (role, US, a, US, reply or "", US, rule or "") for role, a, reply, rule in rows)


def addr_terms(role, address):
    local, dom = split(address)
    return ["%s=%s@%s" % (role, local, dom), "%s@%s" % (role, dom)]


def fold_text(deliveries):
    """event.dlv: (id, delay, outcome, service, relay, dsn, reply, rcpts rows) joined as the writer does."""
    return "\x1c".join(US.join([str(did), struct.pack(">d", delay).hex()] +
                               ["" if v is None else "=" + v for v in fields] + [rcpts(rows)])
                      for did, delay, fields, rows in deliveries)


def fill(db, n, seed=14, batch=1, fold=False):
    """n events as the writer stores them (core/record.c, record_db.c): id =
    ts * 4096 + sequence, addresses in rcpts, search terms as posting lists
    of `batch` events (1: one event per batch, the writer's lot at this
    rate -- a million events in 30 days is one every 2.6 s -- and the
    largest term table)."""
    rnd = random.Random(seed)
    others = ["u%d@d%d.example.net" % (i, i % 50) for i in range(1999)]
    locals_ = ["carol"] + ["user%d" % i for i in range(497)]
    # bob sends 1% of the mail and alice gets 2%: their question has answers.
    pick_sender = lambda: "bob@%s" % DOMAIN if rnd.random() < 0.01 else rnd.choice(others)
    pick_user = lambda: "alice" if rnd.random() < 0.02 else "bob" if rnd.random() < 0.01 else rnd.choice(locals_)
    now = int(time.time() * 1000)
    span = 30 * 86400 * 1000
    c = sqlite3.connect(db)
    c.execute("PRAGMA synchronous=OFF")
    # A schema-2 store (--compare) has no dlv column.
    has_dlv = any(r[1] == "dlv" for r in c.execute("PRAGMA table_info(event)"))
    ev_rows, term_rows, pending = [], [], {}
    first = None
    t0 = time.time()
    i = 0
    while i < n:
        ts = now - span + (span * i) // n
        eid = ts * 4096 + i % 4096
        first = first if first is not None else eid
        qid = "%017X" % (0x6B159C0000000000 + i)
        r = rnd.random()
        client = "192.0.2.%d" % rnd.randrange(1, 255)
        terms = []
        step = 1
        if fold and 0.60 <= r < 0.95:
            r = 0  # the deliveries are folded into the transactions
        if r < 0.45:
            sender = pick_sender()
            rc = ["%s@%s" % (pick_user(), DOMAIN) for _ in range(rnd.choice((1, 1, 1, 2)))]
            dlv = None
            if fold:
                folded = []
                for k, x in enumerate(rc):
                    rows = [(2, x, None, None)]
                    if rnd.random() < 0.2:
                        rows.append((3, "sysadmin@%s" % DOMAIN, None, None))
                        terms += addr_terms("o", "sysadmin@%s" % DOMAIN)
                    terms += addr_terms("r", x)
                    folded.append(((ts + rnd.randrange(50, 800)) * 4096 + (i + 1 + k) % 4096, 0.3,
                                   ("delivered", "local", "local", "2.0.0", "delivered to mailbox"), rows))
                dlv = fold_text(folded)
                step += len(rc)
            ev_rows.append((eid, ts, "smtp", "accepted", "smtpd", qid, "<%d@mx.example.net>" % i, client,
                            "mx.example.net", "mx.example.net", sender, None, "END-OF-MESSAGE", None,
                            "250 2.0.0 Ok: queued as " + qid, None, None, 4000, None, 0,
                            "".join(TRACE.format(rcpt=x) for x in rc),
                            rcpts([(1, sender, None, None)] + [(2, x, "250 2.1.5 Ok", None) for x in rc]), dlv))
            terms += addr_terms("s", sender) + ["c=" + client]
            for x in rc:
                terms += addr_terms("r", x)
        elif r < 0.60:
            sender = pick_sender()
            x = "victim%d@other%d.test" % (rnd.randrange(1000), rnd.randrange(100))
            reply = "554 5.7.1 <%s>: Relay access denied" % x
            ev_rows.append((eid, ts, "smtp", "rejected", "smtpd", None, None, client, "unknown",
                            "spam.example.org", sender, None, "RCPT", "reject_unauth_destination", reply, None,
                            None, None, None, 1, TRACE.format(rcpt=x),
                            rcpts([(1, sender, None, None), (2, x, reply, "reject_unauth_destination")]), None))
            terms += addr_terms("s", sender) + addr_terms("r", x) + ["c=" + client, "x"]
        elif r < 0.95:
            sender = pick_sender()
            to = "%s@%s" % (pick_user(), DOMAIN)
            rows = [(2, to, None, None)]
            terms += addr_terms("r", to) + addr_terms("s", sender)
            if rnd.random() < 0.2:
                orig = "sysadmin@%s" % DOMAIN
                rows.append((3, orig, None, None))
                terms += addr_terms("o", orig)
            ev_rows.append((eid, ts, "delivery", "delivered", "local", qid, "<%d@mx.example.net>" % i, None,
                            None, None, sender, None, None, None, "delivered to mailbox", "local", "2.0.0",
                            None, 0.01, 0, None, rcpts(rows), None))
        else:
            user = pick_user()
            ok = rnd.random() < 0.8
            ev_rows.append((eid, ts, "login", "ok" if ok else "failed", rnd.choice(("imap", "pop3", "smtp")),
                            None, None, client, None, None, None, user, None, None,
                            None if ok else "password mismatch", None, None, None, None, 0, None, None, None))
            terms += ["c=" + client, "u=" + user.lower()]
        for t in terms:
            pending.setdefault(t, []).append(eid)
        i += step
        if i % batch == 0 or i >= n:
            for t, ids in pending.items():
                term_rows.append((t, max(ids), "[%s]" % ",".join(str(x) for x in sorted(set(ids)))))
            pending = {}
        if len(ev_rows) >= 50000 or i >= n:
            with c:
                if has_dlv:
                    c.executemany("INSERT INTO event(id, ts, kind, outcome, service, queue_id, message_id, client,"
                                  " client_name, helo, sender, user, stage, rule, reply, relay, dsn, size, delay,"
                                  " refused, trace, rcpts, dlv) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                  ev_rows)
                else:
                    c.executemany("INSERT INTO event(id, ts, kind, outcome, service, queue_id, message_id, client,"
                                  " client_name, helo, sender, user, stage, rule, reply, relay, dsn, size, delay,"
                                  " refused, trace, rcpts) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                  [r[:-1] for r in ev_rows])
                c.executemany("INSERT INTO term(t, last, evs) VALUES(?,?,?)", term_rows)
            ev_rows, term_rows = [], []
            print("  %d events (%.0f s)" % (i, time.time() - t0), file=sys.stderr, end="\r")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.commit()
    c.close()
    print(file=sys.stderr)
    return first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000000)
    ap.add_argument("--batch", type=int, default=1, help="events per writer batch (posting lists)")
    ap.add_argument("--fold", action="store_true", help="deliveries folded into their transactions' rows")
    ap.add_argument("--compare", help="an older build's bin/postern: before and after on the same events")
    ap.add_argument("--keep", action="store_true", help="leave the server directory for inspection")
    args = ap.parse_args()
    if args.compare and args.fold:
        raise SystemExit("--compare: the older build reads no folded rows")
    this_bin = harness.BIN
    if args.compare:
        harness.BIN = os.path.abspath(args.compare)
        harness.MODULES = os.path.join(os.path.dirname(harness.BIN), "..", "modules")
    server = Server(modules=("mbox", "smtp"))
    try:
        server.start()
        db = server.path("queue", "decisions", "decisions.db")
        wait_for(lambda: os.path.exists(db), what="the decision record")
        server.stop()
        t = time.time()
        first = fill(db, args.events, batch=args.batch, fold=args.fold)
        fill_s = time.time() - t
        size = os.path.getsize(db)
        # The queue id and message id of an accepted transaction near the middle.
        with sqlite3.connect(db) as c:
            mid_qid, mid = c.execute("SELECT queue_id, message_id FROM event WHERE id >= ? AND kind = 'smtp'"
                                     " AND message_id IS NOT NULL ORDER BY id LIMIT 1",
                                     (first + (int(time.time() * 1000) * 4096 - first) // 2,)).fetchone()
        questions = [
            ("--from bob --to alice --since yesterday", ["--from", "bob", "--to", "alice", "--since", "yesterday"]),
            ("--from bob --to alice (30 days, 50 newest)", ["--from", "bob", "--to", "alice"]),
            ("QUEUEID", [mid_qid]),
            ("MESSAGE-ID", [mid]),
            ("--to sysadmin@ --since yesterday", ["--to", "sysadmin@", "--since", "yesterday"]),
            ("--client 192.0.2.7 --since 2h", ["--client", "192.0.2.7", "--since", "2h"]),
            ("--rejected --since yesterday", ["--rejected", "--since", "yesterday"]),
            ("--login alice", ["--login", "alice"]),
            ("--from @d7.example.net --since 3d", ["--from", "@d7.example.net", "--since", "3d"]),
            ("--since yesterday --until today", ["--since", "yesterday", "--until", "today"]),
        ]
        with sqlite3.connect(db) as c:
            rows = c.execute("SELECT count(*) FROM event").fetchone()[0]
        print("decision record: %d events in %d rows (%d per batch%s), %.0f MB, filled in %.0f s\n" %
              (args.events, rows, args.batch, ", deliveries folded" if args.fold else "", size / 1e6, fill_s))
        runs = [("", lambda q: server.cmd("why", "--json", *q))]
        if args.compare:
            # The copy, migrated as the writer would, read by this build.
            db3 = db + ".schema3"
            subprocess.run(["cp", "--sparse=always", db, db3], check=True)
            with sqlite3.connect(db3) as c:
                c.execute("ALTER TABLE event ADD COLUMN dlv TEXT")
                c.execute("PRAGMA user_version = 3")
            conf3 = server.conf_file + ".schema3"
            with open(server.conf_file) as f, open(conf3, "w") as g:
                g.write(f.read() + "\ndecision_log_file = %s\n" % db3)
            env3 = dict(server.env(), POSTERN_CONF=conf3)
            runs = [("before: ", runs[0][1]),
                    ("after: ", lambda q: subprocess.run([this_bin, "why", "--json"] + q, capture_output=True,
                                                         env=env3, timeout=60))]
        if args.compare:
            # Both builds must see the same window: "2h" and "3d" fixed now.
            now = int(time.time())
            fixed = {"2h": "@%d" % (now - 7200), "3d": "@%d" % (now - 3 * 86400)}
            questions = [(label, [fixed.get(a, a) for a in q]) for label, q in questions]
        print("| question | events shown | median s | max s |")
        print("| --- | --- | --- | --- |")
        for label, q in questions:
            times, shown = {k: [] for k, _ in runs}, {}
            for _ in range(5):
                for name, run in runs:
                    t = time.time()
                    r = run(q)
                    times[name].append(time.time() - t)
                    if r.returncode not in (0, 1):
                        raise SystemExit("why %s failed: %s" % (q, r.stderr.decode()))
                    shown[name] = r.stdout
            if len(runs) == 2 and shown["before: "] != shown["after: "]:
                raise SystemExit("why %s: the two builds answer differently" % q)
            for name, _ in runs:
                print("| %s`postern why %s` | %d | %.3f | %.3f |" % (name, label, shown[name].count(b'"kind"'),
                                                                     statistics.median(times[name]),
                                                                     max(times[name])))
    finally:
        if args.keep:
            server.kill()
            print("kept %s" % server.dir, file=sys.stderr)
        else:
            server.cleanup()


if __name__ == "__main__":
    main()
