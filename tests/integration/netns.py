"""Multi-host topologies on one machine: network namespaces joined by veth
links, each host a separate Postern instance (harness.Server(netns=...)).

Everything here is the test's own: namespaces with random names
("ptNNNNNN-front"), veth pairs created inside them, addresses from a
private 10.x range that exist only inside those namespaces. The machine's
own interfaces, addresses and routes are never touched. Topology.close()
removes it all (deleting a namespace destroys its veth ends), and runs
from the test's cleanup even when the test fails.

A test's own sockets reach a namespace through `with ns.inside(): ...`:
the calling thread enters the namespace (setns), creates and connects its
socket, and comes back; the socket stays in the namespace it was made in.
"""
import contextlib
import ctypes
import os
import random
import subprocess

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: " + os.strerror(e))


def _ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), capture_output=True, text=True, check=check)


def unavailable_reason():
    """None when this machine lets us make namespaces, else why not (the
    kernel or the container refuses: the tests then skip, loudly)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    except OSError as e:
        return "unshare: %s" % e
    if r.returncode != 0:
        return "the kernel refuses network namespaces (unshare -n: %s)" % r.stderr.strip()
    name = "ptprobe%06d" % random.randrange(10 ** 6)
    r = _ip("netns", "add", name, check=False)
    if r.returncode != 0:
        return "ip netns add fails: %s" % r.stderr.strip()
    _ip("netns", "del", name, check=False)
    return None


class NetNS:
    """One named network namespace with its loopback up."""

    def __init__(self, name):
        self.name = name
        _ip("netns", "add", name)
        self.path = os.path.join(NETNS_DIR, name)
        _ip("-n", name, "link", "set", "lo", "up")

    def run(self, *argv, check=True):
        return subprocess.run(["ip", "netns", "exec", self.name] + list(argv), capture_output=True,
                              text=True, check=check)

    def enter(self):
        """In a child before exec (preexec_fn): move into the namespace."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def inside(self):
        """The calling thread works in this namespace for the block."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            self.enter()
            try:
                yield self
            finally:
                _setns(own)
        finally:
            os.close(own)

    def delete(self):
        _ip("netns", "del", self.name, check=False)


class Topology:
    """Named namespaces and point-to-point veth links between them."""

    def __init__(self):
        self.tag = "pt%06d" % random.randrange(10 ** 6)
        # 10.(100..199).(0..255).0/24 per topology, one /30 per link.
        self.net = (random.randrange(100, 200), random.randrange(0, 256))
        self.hosts = {}
        self.nlinks = 0

    def add(self, role):
        ns = NetNS("%s-%s" % (self.tag, role))
        self.hosts[role] = ns
        return ns

    def link(self, a, b):
        """veth between namespaces a and b; returns (addr in a, addr in b)."""
        n = self.nlinks
        self.nlinks += 1
        base = n * 4
        addr_a = "10.%d.%d.%d" % (self.net[0], self.net[1], base + 1)
        addr_b = "10.%d.%d.%d" % (self.net[0], self.net[1], base + 2)
        va, vb = "%sv%da" % (self.tag, n), "%sv%db" % (self.tag, n)
        na, nb = self.hosts[a].name, self.hosts[b].name
        # Made inside namespace a, its peer moved to b at once: neither end
        # ever exists in the machine's own namespace.
        _ip("-n", na, "link", "add", va, "type", "veth", "peer", "name", vb, "netns", nb)
        _ip("-n", na, "addr", "add", addr_a + "/30", "dev", va)
        _ip("-n", nb, "addr", "add", addr_b + "/30", "dev", vb)
        _ip("-n", na, "link", "set", va, "up")
        _ip("-n", nb, "link", "set", vb, "up")
        return addr_a, addr_b

    def close(self):
        for ns in self.hosts.values():
            ns.delete()
        self.hosts = {}
