#!/usr/bin/env python3
"""Issue #11 item 7, the figures: 10,000 slowloris connections from 40
addresses (127.0.0.2-41) against the SMTP listener, while a mynetworks
client (127.0.0.1) sends mail. Not run by ctest (minutes, 20,000 sockets).

Two runs:
  default limits  service_connection_limit 1000, client_connection_limit 50,
                  mynetworks_reserved_connections 100: the flood holds what
                  it may (900) and trickles a byte every 5 s; LAN mail is
                  timed from connect to delivery in the mbox.
  raised limits   service_connection_limit 12000, no per-client limit: all
                  10,000 are held idle; the worker's RSS growth / 10,000 is
                  the memory per idle connection.

Usage: python3 tests/stress/slowloris_flood.py [CONNECTIONS]
(as root or not; needs a build in build/). Raises its own RLIMIT_NOFILE;
the server inherits it."""
import os
import resource
import selectors
import smtplib
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Server  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
ADDRS = 40


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def sockets_of(pid):
    try:
        return sum(1 for fd in os.listdir("/proc/%d/fd" % pid)
                   if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"))
    except OSError:
        return 0


def flood(port, n):
    """Open n connections from 127.0.0.2..; returns the list of sockets."""
    socks = []
    for i in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.%d" % (2 + i % ADDRS), 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            s.setblocking(False)
            socks.append(s)
        except OSError:
            s.close()
        if i % 500 == 499:
            time.sleep(0.05)   # let the server's accept loop keep up
    return socks


def held(socks, wait=3.0):
    """Drain banners for a while; drop the sockets the server closed."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    closed = set()
    end = time.monotonic() + wait
    while time.monotonic() < end:
        for key, _ in sel.select(0.2):
            try:
                if not key.fileobj.recv(4096):
                    closed.add(key.fileobj)
                    sel.unregister(key.fileobj)
            except OSError:
                closed.add(key.fileobj)
                sel.unregister(key.fileobj)
    sel.close()
    for s in closed:
        s.close()
    return [s for s in socks if s not in closed]


def lan_mail(server, port, k):
    t0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=("127.0.0.1", 0)) as c:
        c.sendmail("carol@example.com.ar", ["alice@example.com.ar"],
                   b"Subject: LAN %d\r\n\r\nduring the flood\r\n" % k)
    acked = time.monotonic() - t0
    end = time.monotonic() + 30
    while len(server.messages("alice")) < k and time.monotonic() < end:
        time.sleep(0.01)
    return acked, time.monotonic() - t0


def run(label, conf, trickle):
    server = Server(modules=("mbox", "smtp"), listeners=("smtpd",), conf=conf)
    socks = []
    try:
        server.start()
        port = server.ports["smtpd"]
        time.sleep(0.5)
        kids = server.children()
        before = {p: rss_kib(p) for p in kids}
        t = time.monotonic()
        socks = flood(port, N)
        socks = held(socks)
        print("%s: %d connections opened from %d addresses in %.1fs, %d held by the server"
              % (label, N, ADDRS, time.monotonic() - t, len(socks)))
        worker = max(kids, key=sockets_of)
        grow_kib = rss_kib(worker) - before.get(worker, 0)
        if socks:
            print("%s: worker pid %d RSS %d KiB -> %d KiB: %.0f bytes per held connection"
                  % (label, worker, before.get(worker, 0), rss_kib(worker), grow_kib * 1024.0 / len(socks)))
        lat, dl = [], []
        for k in range(1, 6):
            if trickle:
                for s in socks:
                    try:
                        s.send(b"X")
                    except OSError:
                        pass
            a, d = lan_mail(server, port, k)
            lat.append(a)
            dl.append(d)
            time.sleep(1)
        print("%s: mynetworks mail during the flood: 250 after %s s (median %.3f), in the mbox after %s s "
              "(median %.3f, max %.3f)" % (label, " ".join("%.3f" % x for x in lat), statistics.median(lat),
                                           " ".join("%.3f" % x for x in dl), statistics.median(dl), max(dl)))
        refusals = server.log().count("mynetworks_reserved_connections")
        print("%s: refusal log lines (rate-limited): %d" % (label, refusals))
    finally:
        for s in socks:
            s.close()
        server.cleanup()


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 3 * N + 1000) if hard != resource.RLIM_INFINITY else 3 * N + 1000
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    if want < N + 200:
        sys.exit("RLIMIT_NOFILE hard limit %d is too low for %d connections" % (hard, N))
    common = "smtpd_client_name_timeout = 0\n"
    run("default limits", common, trickle=True)
    run("raised limits", common + "service_connection_limit = 12000\nclient_connection_limit = 0\n",
        trickle=False)


if __name__ == "__main__":
    main()
