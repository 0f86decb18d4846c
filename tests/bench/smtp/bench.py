"""Side-by-side SMTP benchmark: Postfix (Debian's, configured here) and
Postern, both delivering to mbox files in /var/mail as root with the
seed's settings. Sends N x SIZE messages with smtp-source at several
concurrencies, times until every message is in the mailbox, and measures
PSS per idle SMTP connection; every configuration --runs times, the
servers alternating, medians in a Markdown table (also written to --out). Run as root through run.sh (`make bench`); not part of CI."""
import argparse
import os
import pwd
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

WORK = "/var/tmp/postern-bench"
PF_PORT, PT_PORT = 2526, 2525
HOST = "mail.example.com.ar"


def sh(*args, check=True, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise SystemExit("%s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r


def ensure_user(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        sh("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name)
        return pwd.getpwnam(name)


def mbox_count(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.startswith(b"From "))
    except FileNotFoundError:
        return 0


def reset_mbox(path):
    if os.path.exists(path):
        os.truncate(path, 0)


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("nothing listens on port %d" % port)


def tree_pss(pids):
    """Sum of PSS (KiB) of the given pids and all their descendants."""
    seen, todo, total = set(), list(pids), 0
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return total


def pids_of(pattern):
    r = sh("pgrep", "-f", pattern, check=False)
    return [int(x) for x in r.stdout.split()]


def idle_connection_cost(port, pids_fn, n):
    """PSS added per idle connection that got its banner and sent EHLO."""
    before = tree_pss(pids_fn())
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), 10)
        s.settimeout(30)
        conns.append(s)
    for s in conns:
        s.recv(1024)  # banner: the server took the session
        s.sendall(b"EHLO bench.example.com.ar\r\n")
    for s in conns:
        data = b""
        while not re.search(rb"^250 ", data, re.M):
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("server closed an idle connection during EHLO")
            data += chunk
    time.sleep(2)
    after = tree_pss(pids_fn())
    print("port %d: PSS %d KiB before, %d KiB with %d idle connections" % (port, before, after, n),
          file=sys.stderr, flush=True)
    for s in conns:
        s.close()
    return (after - before) / n


# ---------- Postfix ----------

def setup_postfix(users):
    if not os.path.exists("/etc/postfix/main.cf"):
        # Debian's "No configuration" install leaves none.
        open("/etc/postfix/main.cf", "w").close()
    aliases = os.path.join(WORK, "pf-aliases")
    with open(aliases, "w") as f:
        f.write("pffanout5: %s\n" % ", ".join(users[1:6]))
    sh("postalias", aliases)
    settings = {
        "myhostname": HOST, "mydomain": "example.com.ar", "myorigin": "$mydomain",
        "mydestination": "$myhostname, localhost.$mydomain, localhost, $mydomain",
        "inet_interfaces": "loopback-only", "mynetworks": "127.0.0.0/8",
        "alias_maps": "hash:" + aliases, "alias_database": "hash:" + aliases,
        "message_size_limit": "5120000", "mailbox_size_limit": "0", "smtpd_helo_required": "yes",
        "default_process_limit": "300", "smtpd_client_connection_count_limit": "0",
        "smtpd_client_connection_rate_limit": "0", "smtpd_client_message_rate_limit": "0",
        "maillog_file": os.path.join(WORK, "postfix.log"), "compatibility_level": "3.6",
    }
    sh("postconf", "-e", *["%s=%s" % kv for kv in settings.items()])
    # Listen on a side port only; keep port 25 free.
    sh("postconf", "-MX", "smtp/inet", check=False)
    sh("postconf", "-Me", "127.0.0.1:%d/inet=127.0.0.1:%d inet n - y - - smtpd" % (PF_PORT, PF_PORT))
    sh("postconf", "-Me", "postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd")
    sh("postfix", "stop", check=False)
    sh("postfix", "start")
    wait_port(PF_PORT)


def stop_postfix():
    sh("postfix", "stop", check=False)


# ---------- Postern ----------

def setup_postern(binary, modules, users, conf_extra=""):
    qdir = os.path.join(WORK, "queue")
    shutil.rmtree(qdir, ignore_errors=True)
    with open(os.path.join(WORK, "pt-users"), "w") as f:
        for u in users:
            pw = pwd.getpwnam(u)
            f.write("%s:{PLAIN}x:%d:%d::/nonexistent::\n" % (u, pw.pw_uid, pw.pw_gid))
    with open(os.path.join(WORK, "pt-aliases"), "w") as f:
        f.write("ptfanout5: %s\n" % ", ".join(users[1:6]))
    conf = os.path.join(WORK, "postern.conf")
    with open(conf, "w") as f:
        f.write("\n".join([
            "module_directory = %s" % modules,
            "module mbox", "module alias", "module smtp",
            "myhostname = %s" % HOST, "mydomain = example.com.ar", "myorigin = $mydomain",
            "mydestination = $myhostname, localhost.$mydomain, localhost, $mydomain",
            "inet_interfaces = loopback-only", "mynetworks = 127.0.0.0/8",
            "smtpd_listen = 127.0.0.1:%d" % PT_PORT, "submission_listen =", "smtps_listen =",
            "queue_directory = %s" % qdir, "pid_file = %s/postern.pid" % WORK,
            "maillog_file = %s/postern.log" % WORK,
            "userdb = passwd-file:%s/pt-users" % WORK,
            "mail_location = mbox:~/mail:INBOX=/var/mail/%u",
            "alias_maps = hash:%s/pt-aliases" % WORK,
            "message_size_limit = 5120000", "mailbox_size_limit = 0", "smtpd_helo_required = yes",
            # 200 idle sessions come from one address in the memory test.
            "client_connection_limit = 1000", "service_connection_limit = 2000",
            "mail_owner = postern", conf_extra, ""]))
    proc = subprocess.Popen([binary, "run", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(PT_PORT)
    return proc


def run_smtp_source(port, n, size, conc, rcpt):
    t0 = time.time()
    sh("smtp-source", "-s", str(conc), "-m", str(n), "-l", str(size), "-M", "bench.example.com.ar",
       "-f", "sender@example.com.ar", "-t", rcpt, "127.0.0.1:%d" % port)
    return time.time() - t0


def measure(port, n, size, conc, rcpt, mboxes):
    for m in mboxes:
        reset_mbox(m)
    accept = run_smtp_source(port, n, size, conc, rcpt)
    t0 = time.time() - accept
    end = time.time() + 600
    while any(mbox_count(m) < n for m in mboxes):
        if time.time() > end:
            raise SystemExit("timeout: %s has %s of %d" % (mboxes, [mbox_count(m) for m in mboxes], n))
        time.sleep(0.02)
    total = time.time() - t0
    print("port %d, %d x %d B to %s, concurrency %d: %.0f msgs/s end to end, %.0f accepted/s" %
          (port, n, size, rcpt, conc, n / total, n / accept), file=sys.stderr, flush=True)
    return n / total, n / accept


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def postfix_round(a, concs, pf_users):
    """One pass over every Postfix configuration, then the idle-memory test."""
    res = {}
    setup_postfix(pf_users)
    try:
        for c in ([] if a.skip_throughput else concs):
            res[("1", c)] = measure(PF_PORT, a.messages, a.size, c, "pfbench@example.com.ar", ["/var/mail/pfbench"])
        for c in ([] if a.skip_throughput else concs):
            res[("5", c)] = measure(PF_PORT, a.fanout_messages, a.size, c, "pffanout5@example.com.ar",
                                    ["/var/mail/%s" % u for u in pf_users[1:6]])
        # A fresh start: smtpd processes left idle by the runs above would
        # otherwise take the new sessions and hide their cost.
        stop_postfix()
        time.sleep(1)
        sh("postfix", "start")
        wait_port(PF_PORT)
        time.sleep(2)
        res["idle"] = idle_connection_cost(PF_PORT, lambda: pids_of("/usr/lib/postfix/sbin/master"), a.idle)
    finally:
        stop_postfix()
    return res


def postern_round(a, concs, pt_users):
    res = {}
    proc = setup_postern(a.postern, a.modules, pt_users)
    try:
        for c in ([] if a.skip_throughput else concs):
            res[("1", c)] = measure(PT_PORT, a.messages, a.size, c, "ptbench@example.com.ar", ["/var/mail/ptbench"])
        for c in ([] if a.skip_throughput else concs):
            res[("5", c)] = measure(PT_PORT, a.fanout_messages, a.size, c, "ptfanout5@example.com.ar",
                                    ["/var/mail/%s" % u for u in pt_users[1:6]])
        proc.terminate()
        proc.wait(30)
        proc = setup_postern(a.postern, a.modules, pt_users)
        time.sleep(2)
        res["idle"] = idle_connection_cost(PT_PORT, lambda: [proc.pid], a.idle)
    finally:
        proc.terminate()
        proc.wait(30)
    return res


def med(runs, key, i=None):
    vals = [r[key] if i is None else r[key][i] for r in runs]
    return statistics.median(vals), min(vals), max(vals)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--postern", required=True)
    ap.add_argument("--modules", required=True)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--conc", default="1,10,50")
    ap.add_argument("--idle", type=int, default=200)
    ap.add_argument("--fanout-messages", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3, help="rounds of every configuration; medians are reported")
    ap.add_argument("--out")
    ap.add_argument("--skip-throughput", action="store_true", help="only the idle-connection memory test")
    ap.add_argument("--before", metavar="BUILD_DIR",
                    help="also run this (older) Postern build in every round, after the other two, "
                         "and add a before/after table")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.py: run as root (it installs and configures Postfix)")
    os.makedirs(WORK, exist_ok=True)
    ensure_user("postern")
    pf_users = ["pfbench"] + ["pfb%d" % i for i in range(1, 6)]
    pt_users = ["ptbench"] + ["ptb%d" % i for i in range(1, 6)]
    for u in pf_users + pt_users:
        ensure_user(u)
    concs = [int(c) for c in a.conc.split(",")]

    # Rounds alternate the servers so that a change of machine load during
    # the bench hits both alike.
    pf_runs, pt_runs, before_runs, loads = [], [], [], []
    started = time.strftime("%Y-%m-%d %H:%M")
    for r in range(a.runs):
        print("round %d of %d, load %s" % (r + 1, a.runs, loadavg()), file=sys.stderr, flush=True)
        loads.append(loadavg())
        pf_runs.append(postfix_round(a, concs, pf_users))
        loads.append(loadavg())
        pt_runs.append(postern_round(a, concs, pt_users))
        loads.append(loadavg())
        if a.before:
            b = argparse.Namespace(**vars(a))
            b.postern = os.path.join(a.before, "bin", "postern")
            b.modules = os.path.join(a.before, "modules")
            before_runs.append(postern_round(b, concs, pt_users))
            loads.append(loadavg())

    one = [l[0] for l in loads]
    out = ["%s, %d rounds (Postfix then Postern each round); medians, per-round range in brackets;"
           " 1-minute load average %.2f-%.2f during the runs." % (started, a.runs, min(one), max(one)), ""]
    out.append("| workload | concurrency | Postfix msgs/s (accept) | Postern msgs/s (accept) | ratio |")
    out.append("| --- | --- | --- | --- | --- |")
    for kind, label in (("1", "1 recipient, %d x %d B" % (a.messages, a.size)),
                        ("5", "alias fan-out x5, %d x %d B" % (a.fanout_messages, a.size))):
        for c in ([] if a.skip_throughput else concs):
            p, pacc = med(pf_runs, (kind, c), 0), med(pf_runs, (kind, c), 1)[0]
            q, qacc = med(pt_runs, (kind, c), 0), med(pt_runs, (kind, c), 1)[0]
            ratios = [t[(kind, c)][0] / f[(kind, c)][0] for f, t in zip(pf_runs, pt_runs)]
            out.append("| %s | %d | %.0f [%.0f-%.0f] (%.0f) | %.0f [%.0f-%.0f] (%.0f) | %.2f [%.2f-%.2f] |" %
                       (label, c, p[0], p[1], p[2], pacc, q[0], q[1], q[2], qacc,
                        statistics.median(ratios), min(ratios), max(ratios)))
    out.append("")
    pf_idle, pt_idle = med(pf_runs, "idle"), med(pt_runs, "idle")
    out.append("| idle SMTP connections (after EHLO) | Postfix | Postern | ratio |")
    out.append("| --- | --- | --- | --- |")
    out.append("| PSS per connection, %d connections | %.0f KiB [%.0f-%.0f] | %.1f KiB [%.1f-%.1f] | 1/%.0f |" %
               (a.idle, pf_idle[0], pf_idle[1], pf_idle[2], pt_idle[0], pt_idle[1], pt_idle[2],
                pf_idle[0] / pt_idle[0] if pt_idle[0] > 0 else float("inf")))
    if before_runs and not a.skip_throughput:
        out.append("")
        out.append("| workload | concurrency | Postfix msgs/s | Postern before msgs/s | ratio before "
                   "| Postern after msgs/s | ratio after |")
        out.append("| --- | --- | --- | --- | --- | --- | --- |")
        for kind, label in (("1", "1 recipient, %d x %d B" % (a.messages, a.size)),
                            ("5", "alias fan-out x5, %d x %d B" % (a.fanout_messages, a.size))):
            for c in concs:
                p = med(pf_runs, (kind, c), 0)
                cells = ["%.0f [%.0f-%.0f]" % p]
                for runs in (before_runs, pt_runs):
                    q = med(runs, (kind, c), 0)
                    ratios = [t[(kind, c)][0] / f[(kind, c)][0] for f, t in zip(pf_runs, runs)]
                    cells.append("%.0f [%.0f-%.0f]" % q)
                    cells.append("%.2f [%.2f-%.2f]" % (statistics.median(ratios), min(ratios), max(ratios)))
                out.append("| %s | %d | %s |" % (label, c, " | ".join(cells)))
    text = "\n".join(out) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
