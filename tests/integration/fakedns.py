"""A tiny authoritative UDP DNS server on 127.0.0.1 for the tests, so no test
depends on the machine's resolver. records[(name, type)] = [rdata], type a
name ("A", "PTR", "MX", "TXT", "AAAA") or a number; rdata text ("10 mx.test"
for MX) or raw bytes. Names under one of `zones` without the asked record
answer NODATA, the rest NXDOMAIN. silent=True reads queries, never answers."""
import socket
import struct
import threading

TYPES = {"A": 1, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def rdata(qtype, r):
    if isinstance(r, bytes):
        return r
    if qtype == 1:
        return socket.inet_aton(r)
    if qtype == 28:
        return socket.inet_pton(socket.AF_INET6, r)
    if qtype == 15:
        pref, host = r.split()
        return struct.pack("!H", int(pref)) + encode_name(host)
    if qtype == 16:
        return bytes([len(r)]) + r.encode()
    return encode_name(r)


class FakeDNS(threading.Thread):
    def __init__(self, records=None, zones=(), silent=False):
        super().__init__(daemon=True)
        self.records = {(n.lower(), TYPES.get(t, t)): v for (n, t), v in (records or {}).items()}
        self.zones = zones
        self.silent = silent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.queries = []

    def answer(self, q):
        off, labels = 12, []
        while q[off]:
            labels.append(q[off + 1:off + 1 + q[off]].decode(errors="replace"))
            off += 1 + q[off]
        qtype = struct.unpack("!H", q[off + 1:off + 3])[0]
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        rrs = self.records.get((name, qtype), [])
        known = any(k[0] == name for k in self.records) or any(
            name == z or name.endswith("." + z) for z in self.zones)
        rcode = 0 if rrs or known else 3
        body = b""
        for r in rrs:
            rd = rdata(qtype, r)
            body += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 60, len(rd)) + rd
        return q[:2] + struct.pack("!HHHHH", 0x8180 | rcode, 1, len(rrs), 0, 0) + q[12:off + 5] + body

    def run(self):
        while not self.stopped:
            try:
                data, addr = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = self.answer(data)
                if not self.silent:
                    self.sock.sendto(reply, addr)
            except Exception:
                pass

    def stop(self):
        self.stopped = True
        if self.is_alive() and threading.current_thread() is not self:
            self.join(2)
        self.sock.close()
