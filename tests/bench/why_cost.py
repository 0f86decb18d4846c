#!/usr/bin/env python3
"""What the decision record costs: the same Postern (rootless, the
integration harness, mbox delivery with fsync) with the record on
(decision_log_file default) and off (decision_log_file empty), rounds
alternating. smtp-source (package postfix) sends N x 4 KB messages, one
connection per message, at each concurrency; a round ends when every
message is in the mailbox (end to end). Prints msgs/s medians and the
per-round ratio on/off. No assertion (a shared machine).

--cpu measures what throughput cannot resolve here: CPU time per message.
Each round reads utime+stime of every thread of every process of each
server from /proc (live processes, and what the master reaped), sends
the messages, waits for the mailbox and for the writer's next batch
(RECORD_FLUSH_MS), and reads them again. Per round: microseconds of CPU
per message of the whole server with the record on and off, and of the
writer thread ("record") alone. The difference on - off includes the
loop thread's share (copying each event); the writer thread's figure is
exact but leaves the loop thread out.

  python3 tests/bench/why_cost.py [--messages 2000] [--rounds 5] [--conc 1,10]
  python3 tests/bench/why_cost.py --cpu [--messages 2000] [--rounds 7] [--conc 1,10]

--cpu --baseline OTHER/bin/postern adds a third server, record on, from
another build (its modules beside it): the writer thread of both builds
measured in the same rounds (order rotating), for a before/after.

--postfix is the benchmark of issue 3 (tests/bench/smtp/bench.py: root,
/var/mail, the seed's settings) with three servers per round: Postfix,
Postern with the record, Postern without (decision_log_file =), the two
Postern runs alternating which goes first. Run as root after
`scripts/deps.sh bench` (or tests/bench/smtp/run.sh once).

  python3 tests/bench/why_cost.py --postfix [--messages 3000] [--rounds 5] [--conc 1,10]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import Server, wait_for  # noqa: E402


def count(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.startswith(b"From "))
    except FileNotFoundError:
        return 0


def round_(server, n, conc):
    box = server.mbox_path("alice")
    if os.path.exists(box):
        os.truncate(box, 0)
    t = time.time()
    subprocess.run(["/usr/sbin/smtp-source", "-s", str(conc), "-m", str(n), "-l", "4096", "-c",
                    "-f", "bench@example.com.ar", "-t", "alice@example.com.ar",
                    "127.0.0.1:%d" % server.ports["smtpd"]], check=True, capture_output=True)
    wait_for(lambda: count(box) >= n, timeout=600, interval=0.02, what="%d messages" % n)
    return n / (time.time() - t)


def cpu(pid):
    """Seconds of CPU of each thread of pid, by thread name."""
    out = {}
    hz = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            st = f.read()
        name = st[st.index("(") + 1:st.rindex(")")]
        fields = st[st.rindex(")") + 2:].split()
        out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / hz
    return out


def tree(pid):
    """pid and its descendants."""
    out = [pid]
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                for k in f.read().split():
                    out += tree(int(k))
    except OSError:
        pass
    return out


def tree_cpu(pid):
    """(seconds of CPU of the whole server, of its "record" threads): every
    live thread of every process from schedstat (nanoseconds; ticks are
    10 ms, too coarse here), plus the children the processes reaped."""
    hz = os.sysconf("SC_CLK_TCK")
    total = rec = 0.0
    for p in tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            # cutime cstime: fields 16-17 of proc(5).
            total += (int(fields[13]) + int(fields[14])) / hz
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/schedstat" % (p, t)) as f:
                    ns = int(f.read().split()[0]) / 1e9
                with open("/proc/%d/task/%s/comm" % (p, t)) as f:
                    if f.read().strip() == "record":
                        rec += ns
                total += ns
        except (OSError, ValueError):
            pass
    return total, rec


def cpu_mode(args):
    import harness
    servers = {}
    try:
        kinds = [("on", ""), ("off", "decision_log_file =\n")]
        if args.baseline:
            kinds.append(("base", ""))
        for name, conf in kinds:
            bin_, mods = harness.BIN, harness.MODULES
            if name == "base":
                harness.BIN = os.path.abspath(args.baseline)
                harness.MODULES = os.path.join(os.path.dirname(harness.BIN), "..", "modules")
            try:
                s = Server(modules=("mbox", "smtp"), listeners=("smtpd",), users=("alice",), tls=False)
                s.write_conf("smtpd_helo_required = yes\nmessage_size_limit = 10240000\n" + conf)
                s.start()
            finally:
                harness.BIN, harness.MODULES = bin_, mods
            servers[name] = s
        # A first batch creates the store and warms both servers up.
        for s in servers.values():
            round_(s, 200, 2)
        time.sleep(1.5)
        base_cols = " baseline on us/msg | baseline writer us/msg | baseline writer / server off |" \
            if args.baseline else ""
        print("| concurrency | record on us/msg | record off us/msg | on - off | writer thread us/msg "
              "| writer / server off |" + base_cols)
        print("| --- | --- | --- | --- | --- | --- |" + (" --- | --- | --- |" if args.baseline else ""))
        sys.stdout.flush()
        for conc in [int(c) for c in args.conc.split(",")]:
            per = {"on": [], "off": [], "base": []}
            writer, diffs, bwriter = [], [], []
            names = list(servers)
            for r in range(args.rounds):
                # Each server first, second (and third) in turn.
                order = names[r % len(names):] + names[:r % len(names)] if len(names) > 2 else \
                    (("on", "off") if r % 2 == 0 else ("off", "on"))
                got = {}
                for name in order:
                    s = servers[name]
                    before = tree_cpu(s.pid)
                    round_(s, args.messages, conc)
                    time.sleep(1.2)  # the writer's batch of these messages
                    after = tree_cpu(s.pid)
                    got[name] = ((after[0] - before[0]) * 1e6 / args.messages,
                                 (after[1] - before[1]) * 1e6 / args.messages)
                per["on"].append(got["on"][0])
                per["off"].append(got["off"][0])
                writer.append(got["on"][1])
                diffs.append(got["on"][0] - got["off"][0])
                if "base" in got:
                    per["base"].append(got["base"][0])
                    bwriter.append(got["base"][1])
                print("  conc %d round %d: on %.0f us/msg (writer %.1f), off %.0f us/msg%s" %
                      (conc, r + 1, got["on"][0], got["on"][1], got["off"][0],
                       ", baseline %.0f us/msg (writer %.1f)" % got["base"] if "base" in got else ""),
                      file=sys.stderr, flush=True)
            m = statistics.median
            extra = ""
            if bwriter:
                extra = " %.0f [%.0f-%.0f] | %.1f [%.1f-%.1f] | %.1f%% |" % (
                    m(per["base"]), min(per["base"]), max(per["base"]), m(bwriter), min(bwriter), max(bwriter),
                    100 * m(bwriter) / m(per["off"]))
            print("| %d | %.0f [%.0f-%.0f] | %.0f [%.0f-%.0f] | %+.0f [%+.0f..%+.0f] | %.1f [%.1f-%.1f] | %.1f%% |%s" %
                  (conc, m(per["on"]), min(per["on"]), max(per["on"]), m(per["off"]), min(per["off"]),
                   max(per["off"]), m(diffs), min(diffs), max(diffs), m(writer), min(writer), max(writer),
                   100 * m(writer) / m(per["off"]), extra))
            sys.stdout.flush()
    finally:
        for s in servers.values():
            s.cleanup()


def postfix_mode(args):
    sys.path.insert(0, os.path.join(HERE, "smtp"))
    import bench  # noqa: E402 (tests/bench/smtp/bench.py)
    build = os.path.abspath(os.path.join(HERE, "..", "..", "build"))
    binary = os.environ.get("POSTERN_BIN") or os.path.join(build, "bin", "postern")
    modules = os.path.join(os.path.dirname(binary), "..", "modules")
    os.makedirs(bench.WORK, exist_ok=True)
    bench.ensure_user("postern")
    pf_users = ["pfbench"] + ["pfb%d" % i for i in range(1, 6)]
    pt_users = ["ptbench"] + ["ptb%d" % i for i in range(1, 6)]
    for u in pf_users + pt_users:
        bench.ensure_user(u)
    concs = [int(c) for c in args.conc.split(",")]
    rates = {(name, c): [] for name in ("postfix", "on", "off") for c in concs}
    ratios = {c: [] for c in concs}
    loads = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for r in range(args.rounds):
        loads.append(os.getloadavg()[0])
        bench.setup_postfix(pf_users)
        try:
            for c in concs:
                rates[("postfix", c)].append(bench.measure(bench.PF_PORT, args.messages, 4096, c,
                                                           "pfbench@example.com.ar", ["/var/mail/pfbench"])[0])
        finally:
            bench.stop_postfix()
        got = {}
        # What Postfix left to the disk is not the next server's cost.
        os.sync()
        time.sleep(3)
        for name in (("on", "off") if r % 2 == 0 else ("off", "on")):
            proc = bench.setup_postern(binary, modules, pt_users,
                                       "" if name == "on" else "decision_log_file =")
            try:
                for c in concs:
                    got[(name, c)] = bench.measure(bench.PT_PORT, args.messages, 4096, c,
                                                   "ptbench@example.com.ar", ["/var/mail/ptbench"])[0]
            finally:
                proc.terminate()
                proc.wait(30)
            os.sync()
            time.sleep(3)
        for c in concs:
            for name in ("on", "off"):
                rates[(name, c)].append(got[(name, c)])
            ratios[c].append(got[("on", c)] / got[("off", c)])
    loads.append(os.getloadavg()[0])
    m = statistics.median
    print("%s, %d rounds of %d x 4 KB messages per concurrency; medians, per-round range in brackets;"
          " 1-minute load average %.1f-%.1f" % (started, args.rounds, args.messages, min(loads), max(loads)))
    print()
    print("| concurrency | Postfix msgs/s | Postern record on | Postern record off | on/off per round |")
    print("| --- | --- | --- | --- | --- |")
    for c in concs:
        cells = ["%.0f [%.0f-%.0f]" % (m(v), min(v), max(v)) for v in
                 (rates[("postfix", c)], rates[("on", c)], rates[("off", c)])]
        print("| %d | %s | %.3f [%.3f-%.3f] |" % (c, " | ".join(cells), m(ratios[c]), min(ratios[c]),
                                                 max(ratios[c])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--conc", default="1,10")
    ap.add_argument("--control", action="store_true",
                    help="record on in both servers (an A/A run: the noise floor of the ratio)")
    ap.add_argument("--cpu", action="store_true", help="CPU time per message instead of msgs/s")
    ap.add_argument("--baseline", help="--cpu: another build's bin/postern, record on, measured alongside")
    ap.add_argument("--postfix", action="store_true",
                    help="side by side with Postfix (tests/bench/smtp), record on and off; root")
    args = ap.parse_args()
    if args.cpu:
        return cpu_mode(args)
    if args.postfix:
        return postfix_mode(args)
    servers = {}
    try:
        for name, conf in (("on", ""), ("off", "" if args.control else "decision_log_file =\n")):
            s = Server(modules=("mbox", "smtp"), listeners=("smtpd",), users=("alice",), tls=False)
            s.write_conf("smtpd_helo_required = yes\nmessage_size_limit = 10240000\n" + conf)
            s.start()
            servers[name] = s
        print("| concurrency | record on msgs/s | record off msgs/s | on/off median [min-max] |")
        print("| --- | --- | --- | --- |")
        for conc in [int(c) for c in args.conc.split(",")]:
            rates = {"on": [], "off": []}
            ratios = []
            for r in range(args.rounds):
                order = ("on", "off") if r % 2 == 0 else ("off", "on")
                got = {name: round_(servers[name], args.messages, conc) for name in order}
                for name in got:
                    rates[name].append(got[name])
                ratios.append(got["on"] / got["off"])
            print("| %d | %.0f | %.0f | %.3f [%.3f-%.3f] |" % (conc, statistics.median(rates["on"]),
                  statistics.median(rates["off"]), statistics.median(ratios), min(ratios), max(ratios)))
            sys.stdout.flush()
        db = servers["on"].path("queue", "decisions", "decisions.db")
        print("\nrecord after the runs: %.1f MB" % (os.path.getsize(db) / 1e6))
        usage = {}
        for name in ("on", "off"):
            worker = int(re.findall(r"started worker \(pid (\d+)\)", servers[name].log())[-1])
            usage[name] = cpu(worker)
        on, off = usage["on"], usage["off"]
        rec = on.get("record", 0)
        print("worker CPU, same messages: record off %.2f s; record on %.2f s outside the writer thread"
              " (%+.1f%%) + %.2f s in it" % (sum(off.values()), sum(on.values()) - rec,
                                            100 * (sum(on.values()) - rec - sum(off.values())) / sum(off.values()),
                                            rec))
    finally:
        for s in servers.values():
            s.cleanup()


if __name__ == "__main__":
    main()
