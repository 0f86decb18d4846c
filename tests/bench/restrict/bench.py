"""Cost per RCPT of the restriction lists in the running server: the same
pipelined RCPT stream from an outside client (127.0.0.2) against three
configs — the relay default only (baseline), a 5-rule chain, and the chain
plus a Lua policy — and the difference per RCPT. Not part of CI: run
`tests/bench/restrict/run.sh [BUILD_DIR]` on an idle machine; use a
release build (sanitizers multiply the figures)."""
import argparse
import os
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))

from harness import Server  # noqa: E402

CHAIN = """smtpd_helo_restrictions = permit_mynetworks, reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname
smtpd_sender_restrictions = permit_mynetworks, reject_non_fqdn_sender
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = reject_non_fqdn_recipient
"""

POLICY = """-- a typical small policy: block list, per-client counter, CIDR test
local blocked = { ["spammer@example.net"] = true }
local office = { "192.0.2.0/24", "2001:db8::/32" }
return function(a)
  if blocked[a.sender:lower()] then return "REJECT blocked" end
  if postern.cidr_match(a.client_address, office) then return "OK" end
  local n = postern.counter_incr("rcpt:" .. a.client_address, 60)
  if n > 100000000 then return "DEFER slow down" end
  return "DUNNO"
end
"""


def run_stream(port, nrcpt, batch=100):
    s = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=("127.0.0.2", 0))
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line:
                raise EOFError
            if line[3:4] != b"-":
                return line

    reply()
    s.sendall(b"EHLO client2.example.com.ar\r\n")
    reply()
    s.sendall(b"MAIL FROM:<someone@example.com.ar>\r\n")
    reply()
    t0 = time.perf_counter()
    sent = 0
    while sent < nrcpt:
        n = min(batch, nrcpt - sent)
        s.sendall(b"RCPT TO:<alice@example.com.ar>\r\n" * n)
        for _ in range(n):
            r = reply()
            if not r.startswith(b"250"):
                raise SystemExit("unexpected reply %r" % r)
        sent += n
    dt = time.perf_counter() - t0
    s.sendall(b"QUIT\r\n")
    s.close()
    return dt


def measure(conf, nrcpt, rounds):
    server = Server(modules=("mbox", "alias", "restrict", "smtp"), conf="")
    try:
        extra = conf.replace("@POLICY@", server.path("policy.lua"))
        with open(server.path("policy.lua"), "w") as f:
            f.write(POLICY)
        os.chmod(server.path("policy.lua"), 0o644)
        server.write_conf(extra + "\nsmtpd_recipient_limit = %d\n" % (nrcpt + 10))
        server.start()
        run_stream(server.ports["smtpd"], 200)              # warm up
        times = [run_stream(server.ports["smtpd"], nrcpt) for _ in range(rounds)]
        return statistics.median(times) / nrcpt * 1e6
    finally:
        server.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rcpt", type=int, default=900)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    base = measure("smtpd_recipient_restrictions =\n", args.rcpt, args.rounds)
    chain = measure(CHAIN, args.rcpt, args.rounds)
    lua = measure(CHAIN + "smtpd_recipient_restrictions = reject_non_fqdn_recipient, "
                  "check_lua_policy @POLICY@\n", args.rcpt, args.rounds)
    print("| config | µs per RCPT (median of %d x %d) | added |" % (args.rounds, args.rcpt))
    print("|---|---|---|")
    print("| relay default only | %.1f | |" % base)
    print("| 5-rule chain | %.1f | %+.1f |" % (chain, chain - base))
    print("| 5-rule chain + Lua policy | %.1f | %+.1f (Lua: %+.1f) |" % (lua, lua - base, lua - chain))


if __name__ == "__main__":
    main()
