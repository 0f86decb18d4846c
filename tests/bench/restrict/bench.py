"""Cost per RCPT of the restriction lists, Postern against Postfix: the same
client sends, from outside mynetworks (127.0.0.2), many transactions of
many pipelined RCPTs each (MAIL, R x RCPT to distinct listed recipients,
RSET) to three configurations of each server — the relay default only
(baseline), a 5-rule smtpd_recipient_restrictions, and a policy alone
(Postfix: check_policy_service to policyd.py; Postern: check_lua_policy
with the same logic, policy.lua) — and reports medians of several rounds
and the difference to the baseline per RCPT. Rounds interleave all six
servers so that a change of machine load hits them alike. Not part of CI:
run through tests/bench/restrict/run.sh (as root for the Postfix side) on
a quiet machine with a release build."""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))

from harness import Server, free_port  # noqa: E402

WORK = "/var/tmp/postern-bench/restrict"
MARK = "postfix-rbench"      # syslog_name of our Postfix services: finds leftovers
SENDER = b"someone@example.com.ar"
BLOCKED_RCPT = "blocked@example.com.ar"

# The five rules, word for word the same on both servers.
CHAIN5 = ["reject_non_fqdn_recipient", "reject_non_fqdn_sender", "reject_invalid_helo_hostname",
          "reject_non_fqdn_helo_hostname", "check_recipient_access hash:%s"]


def sh(*args, check=True):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit("%s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("nothing listens on port %d" % port)


class Client:
    """One SMTP session from 127.0.0.2, replies read line by line."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=("127.0.0.2", 0))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")
        self.expect(b"220")
        self.s.sendall(b"EHLO client2.example.com.ar\r\n")
        self.expect(b"250")

    def reply(self):
        while True:
            line = self.f.readline()
            if not line:
                raise SystemExit("server closed the session")
            if line[3:4] != b"-":
                return line

    def expect(self, code):
        r = self.reply()
        if not r.startswith(code):
            raise SystemExit("expected %s, got %r" % (code.decode(), r))
        return r

    def transaction(self, sender, rcpts):
        """MAIL, the RCPTs and RSET in one write; the RCPT replies."""
        self.s.sendall(b"MAIL FROM:<" + sender + b">\r\n" +
                       b"".join(b"RCPT TO:<" + r + b">\r\n" for r in rcpts) + b"RSET\r\n")
        self.expect(b"250")
        replies = [self.reply() for _ in rcpts]
        self.expect(b"250")
        return replies

    def close(self):
        try:
            self.s.sendall(b"QUIT\r\n")
        except OSError:
            pass
        self.s.close()


def recipients(n):
    return [b"r%03d@example.com.ar" % i for i in range(n)]


def aliases_text(n):
    return "".join("r%03d: alice\n" % i for i in range(n)) + "blocked: alice\n"


def run_round(port, messages, rcpts):
    """Seconds per RCPT over MESSAGES transactions, session setup excluded."""
    c = Client(port)
    try:
        t0 = time.perf_counter()
        for _ in range(messages):
            for r in c.transaction(SENDER, rcpts):
                if not r.startswith(b"250"):
                    raise SystemExit("port %d: unexpected RCPT reply %r" % (port, r))
        return (time.perf_counter() - t0) / (messages * len(rcpts))
    finally:
        c.close()


def check_rules_apply(port, kind):
    """The configuration really is in the path: its rules reject their case."""
    c = Client(port)
    try:
        if kind == "chain":
            r = c.transaction(SENDER, [BLOCKED_RCPT.encode()])[0]
        elif kind == "policy":
            r = c.transaction(b"spammer@example.net", [b"r000@example.com.ar"])[0]
        else:
            r = c.transaction(SENDER, [BLOCKED_RCPT.encode()])[0]
            if not r.startswith(b"250"):
                raise SystemExit("port %d (baseline) rejects %r" % (port, r))
            return
        if not r.startswith(b"5"):
            raise SystemExit("port %d (%s): the rule did not reject: %r" % (port, kind, r))
    finally:
        c.close()


# ---------- Postfix: three smtpd services in master.cf, one policy daemon ----------

class Postfix:
    def __init__(self, nrcpt):
        self.ports = {}
        self.was_running = sh("postfix", "status", check=False).returncode == 0
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK)
        with open(os.path.join(WORK, "aliases"), "w") as f:
            f.write(aliases_text(nrcpt))
        sh("postalias", os.path.join(WORK, "aliases"))
        with open(os.path.join(WORK, "access"), "w") as f:
            f.write("%s REJECT\n" % BLOCKED_RCPT)
        sh("postmap", os.path.join(WORK, "access"))
        self.policy_port = free_port()
        self.policyd = subprocess.Popen([sys.executable, os.path.join(HERE, "policyd.py"), str(self.policy_port)],
                                        stdout=subprocess.PIPE, text=True)
        if self.policyd.stdout.readline().strip() != "ready":
            raise SystemExit("policyd.py did not start")
        if not os.path.exists("/etc/postfix/main.cf"):
            open("/etc/postfix/main.cf", "w").close()   # Debian's "No configuration" install
        # main.cf: only settings tests/bench/smtp sets to the same values;
        # everything of this bench is -o on its own services.
        sh("postconf", "-e", "myhostname=mail.example.com.ar", "mydomain=example.com.ar",
           "myorigin=$mydomain", "mydestination=$myhostname, localhost.$mydomain, localhost, $mydomain",
           "inet_interfaces=loopback-only", "compatibility_level=3.6",
           "maillog_file=/var/tmp/postern-bench/postfix.log")
        sh("postconf", "-Me", "postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd")
        self.remove_services()
        access = os.path.join(WORK, "access")
        rules = {
            "base": None,
            "chain": ",".join(CHAIN5) % access,
            "policy": "check_policy_service,inet:127.0.0.1:%d" % self.policy_port,
        }
        # Our transactions end in RSET, so nothing is ever delivered and
        # cleanup's flow control (in_flow_delay) would stall every message
        # by 1 s once its tokens run out: a cleanup of our own without it.
        sh("postconf", "-Me", "rbench-cleanup/unix=rbench-cleanup unix n - n - 0 cleanup "
           "-o syslog_name=%s-cleanup -o in_flow_delay=0" % MARK)
        for kind, rr in rules.items():
            port = free_port()
            opts = ["-o syslog_name=%s-%s" % (MARK, kind), "-o mynetworks=127.0.0.1/32",
                    "-o alias_maps=hash:%s/aliases" % WORK, "-o smtpd_recipient_limit=1000",
                    # Recipients are validated against the aliases only, as
                    # Postern's: the default proxy:unix:passwd.byname goes
                    # through NSS, whose systemd module costs ~0.7 ms per
                    # unknown name here (several userdb paths tried).
                    "-o local_recipient_maps=hash:%s/aliases" % WORK,
                    "-o cleanup_service_name=rbench-cleanup"]
            if rr:
                opts.append("-o smtpd_recipient_restrictions=%s" % rr.replace(" ", ","))
            sh("postconf", "-Me", "127.0.0.1:%d/inet=127.0.0.1:%d inet n - n - - smtpd %s" %
               (port, port, " ".join(opts)))
            self.ports[kind] = port
        sh("postfix", "reload" if self.was_running else "start")
        for p in self.ports.values():
            wait_port(p)

    @staticmethod
    def remove_services():
        for line in sh("postconf", "-M", check=False).stdout.splitlines():
            if MARK in line:
                f = line.split()
                sh("postconf", "-MX", "%s/%s" % (f[0], f[1]), check=False)

    def close(self):
        self.remove_services()
        sh("postfix", "reload" if self.was_running else "stop", check=False)
        self.policyd.terminate()
        out = self.policyd.communicate(timeout=10)[0]
        return int(out.split("requests=")[1]) if "requests=" in out else -1


# ---------- Postern: three servers from the integration harness ----------

def postern_server(kind, nrcpt, lua_policy):
    s = Server(modules=("mbox", "alias", "restrict", "smtp"), aliases=aliases_text(nrcpt),
               listeners=("smtpd",), tls=False)
    access = s.path("access")
    with open(access, "w") as f:
        f.write("%s REJECT\n" % BLOCKED_RCPT)
    shutil.copy(lua_policy, s.path("policy.lua"))
    for p in (access, s.path("policy.lua")):
        os.chmod(p, 0o644)
    conf = "smtpd_recipient_limit = 1000\n"
    if kind == "chain":
        conf += "smtpd_recipient_restrictions = %s\n" % (", ".join(CHAIN5) % access)
    elif kind == "policy":
        conf += "smtpd_recipient_restrictions = check_lua_policy %s\n" % s.path("policy.lua")
    s.write_conf(conf)
    s.start()
    return s


def lua_call_cost(binary, policy, calls, runs):
    vals = []
    for _ in range(runs):
        out = sh(binary, policy, str(calls)).stdout
        vals.append(float(out.split("|")[2].split()[0]))
    return vals


def fmt_range(v):
    return "%.1f [%.1f-%.1f]" % (statistics.median(v), min(v), max(v))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100, help="transactions per round")
    ap.add_argument("--rcpt", type=int, default=100, help="RCPTs per transaction")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--lua-call-bench", help="lua_call_bench binary (run.sh builds it)")
    ap.add_argument("--lua-calls", type=int, default=500000)
    ap.add_argument("--skip-postfix", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    policy = os.path.join(HERE, "policy.lua")
    if not a.skip_postfix and os.geteuid() != 0:
        print("bench.py: not root, Postfix side skipped", file=sys.stderr)
        a.skip_postfix = True
    rcpts = recipients(a.rcpt)
    kinds = ("base", "chain", "policy")
    started = time.strftime("%Y-%m-%d %H:%M")
    loads = [os.getloadavg()[0]]

    lua = lua_call_cost(a.lua_call_bench, policy, a.lua_calls, 5) if a.lua_call_bench else None
    pf, pt, pf_requests = None, [], -1
    targets = []        # (server, kind, port)
    try:
        if not a.skip_postfix:
            pf = Postfix(a.rcpt)
            targets += [("postfix", k, pf.ports[k]) for k in kinds]
        for k in kinds:
            s = postern_server(k, a.rcpt, policy)
            pt.append(s)
            targets.append(("postern", k, s.ports["smtpd"]))
        for srv, k, port in targets:
            check_rules_apply(port, k)
            run_round(port, max(1, a.messages // 5), rcpts)       # warm up: processes, caches
        res = {(srv, k): [] for srv, k, _ in targets}
        for r in range(a.rounds):
            for srv, k, port in targets:
                res[(srv, k)].append(run_round(port, a.messages, rcpts) * 1e6)
            loads.append(os.getloadavg()[0])
            print("round %d of %d done, load %.2f" % (r + 1, a.rounds, loads[-1]), file=sys.stderr, flush=True)
    finally:
        for s in pt:
            s.cleanup()
        if pf:
            pf_requests = pf.close()
    if pf:
        # One policy request per RCPT: Postfix neither skipped nor cached any.
        want = 1 + max(1, a.messages // 5) * a.rcpt + a.rounds * a.messages * a.rcpt  # check, warm-up, rounds
        note = "policy daemon requests: %d (expected %d)" % (pf_requests, want)
        print(note, file=sys.stderr)
        if pf_requests != want:
            raise SystemExit("bench.py: " + note)

    out = ["%s, %d rounds x %d transactions x %d RCPTs per configuration, client 127.0.0.2 "
           "(outside mynetworks); medians [range]; added = median of the per-round differences "
           "to the baseline; 1-minute load %.2f-%.2f." %
           (started, a.rounds, a.messages, a.rcpt, min(loads), max(loads)), ""]
    labels = {"base": "relay default only (baseline)", "chain": "5-rule smtpd_recipient_restrictions",
              "policy": "policy (Postfix: check_policy_service to policyd.py; Postern: check_lua_policy)"}
    if pf:
        out.append("| configuration | Postfix µs/RCPT | Postfix added | Postern µs/RCPT | Postern added | added, Postfix/Postern |")
        out.append("| --- | --- | --- | --- | --- | --- |")
    else:
        out.append("| configuration | Postern µs/RCPT | Postern added |")
        out.append("| --- | --- | --- |")
    for k in kinds:
        cells = [labels[k]]
        added = {}
        for srv in (("postfix", "postern") if pf else ("postern",)):
            # Paired: each round's configurations ran back to back, so the
            # difference within a round is freer of load drift.
            diffs = [x - b for x, b in zip(res[(srv, k)], res[(srv, "base")])]
            added[srv] = statistics.median(diffs)
            cells += [fmt_range(res[(srv, k)]), "" if k == "base" else "%+.1f [%+.1f..%+.1f]" %
                      (added[srv], min(diffs), max(diffs))]
        if pf:
            cells.append("" if k == "base" else
                         ("%.1f" % (added["postfix"] / added["postern"]) if added["postern"] > 0 else "n/a"))
        out.append("| " + " | ".join(cells) + " |")
    if lua:
        out.append("")
        out.append("| in process, no SMTP (lua_call_bench) | µs per check_lua_policy call |")
        out.append("| --- | --- |")
        out.append("| policy.lua, %d calls, 5 runs | %s |" % (a.lua_calls, fmt_range(lua)))
    text = "\n".join(out) + "\n"
    print(text)
    if a.out:
        try:
            os.makedirs(os.path.dirname(a.out), exist_ok=True)
            with open(a.out, "w") as f:
                f.write(text)
        except OSError as e:
            print("bench.py: %s: %s" % (a.out, e), file=sys.stderr)


if __name__ == "__main__":
    main()
