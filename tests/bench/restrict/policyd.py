"""A small Postfix policy daemon (SMTPD_POLICY_README's protocol: name=value
lines, a blank line, answer `action=...` and a blank line) with the logic of
policy.lua, for Postfix's check_policy_service in the restrict bench.
Usage: policyd.py PORT. Prints `requests=N` when terminated."""
import ipaddress
import signal
import socket
import socketserver
import sys
import threading
import time

BLOCKED = {"spammer@example.net"}
OFFICE = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "2001:db8::/32")]
counters = {}        # key -> [count, expiry], shared across connections as postern.counter_incr
lock = threading.Lock()
requests = 0


def counter_incr(key, ttl):
    now = time.monotonic()
    with lock:
        c = counters.get(key)
        if c is None or c[1] <= now:
            c = counters[key] = [0, now + ttl]
        c[0] += 1
        return c[0]


def in_office(addr):
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in OFFICE)


def decide(a):
    if a.get("sender", "").lower() in BLOCKED:
        return "REJECT blocked"
    if in_office(a.get("client_address", "")):
        return "OK"
    if counter_incr("rcpt:" + a.get("client_address", ""), 60) > 100000000:
        return "DEFER slow down"
    return "DUNNO"


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        global requests
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        attrs = {}
        for line in self.rfile:
            line = line.rstrip(b"\r\n")
            if line:
                name, _, value = line.decode("utf-8", "replace").partition("=")
                attrs[name] = value
                continue
            action = decide(attrs) if attrs.get("request") == "smtpd_access_policy" else "DUNNO"
            with lock:
                requests += 1
            self.wfile.write(("action=%s\n\n" % action).encode())
            attrs = {}


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    srv = Server(("127.0.0.1", int(sys.argv[1])), Handler)

    def stop(*_):
        print("requests=%d" % requests, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
